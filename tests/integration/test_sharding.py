"""test_sharding.py: rows spread over shards by the shard map, read back and
merged through the proxy, judged against the shards themselves.

The map (tests/run-all.sh): sg_users hash on id (16 buckets over s0, s1),
sg_orders co-located with it, sg_typed and sg_big hash on id, sg_texts hash
on a text key, sg_uuids hash on a uuid key, sg_events range on id (below
1000 on s0, the rest on s1), sg_tenants directory on tenant_id, sg_countries
a reference table. Every table is created on both shards directly.

Where a row must live is computed by PostgreSQL itself: the bucket is the
SQL expression of route/hash.h (PostgreSQL's partition hash, proved equal
to PARTITION BY HASH by test_hash_compat), the shard is bucket mod 2.

In session pooling a client keeps one server on the default shard: the
test checks that a statement needing another shard is refused (0A000) and
that the default shard's keys still work.
"""
import os
import random
import threading
import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import psycopg

from sgtest import check, check_eq, direct_dsn, dsn, fail, note, run_parts, sqlstate_of

BASE = int(os.environ["PGTEST_BASE_PORT"])
SHARD_PORTS = [BASE, BASE + 3]
SESSION = os.environ.get("SG_POOL_MODE") == "session"

SEED = "8816678312871386365"
HASH_FN = {"bigint": "hashint8extended", "text": "hashtextextended", "uuid": "uuid_hash_extended"}


def bucket_sql(col, typ, buckets):
    return ("(((%s(%s, %s)::numeric + 5305509591434766563) %% 18446744073709551616 "
            "+ 18446744073709551616) %% 18446744073709551616) %% %d") % (
                HASH_FN[typ], col, SEED, buckets)


def shard_conn(i):
    return psycopg.connect(direct_dsn().replace("port=%d" % BASE, "port=%d" % SHARD_PORTS[i]),
                           autocommit=True)


def proxy(autocommit=True):
    return psycopg.connect(dsn(), autocommit=autocommit)


def simple(conn, sql):
    """Runs sql with the simple query protocol (libpq PQexec); returns rows as text."""
    res = conn.pgconn.exec_(sql.encode())
    if res.status not in (psycopg.pq.ExecStatus.COMMAND_OK, psycopg.pq.ExecStatus.TUPLES_OK):
        raise psycopg.errors.lookup(res.error_field(psycopg.pq.DiagnosticField.SQLSTATE).decode())(
            res.error_message.decode())
    return [tuple(None if res.get_value(r, c) is None else res.get_value(r, c).decode()
                  for c in range(res.nfields)) for r in range(res.ntuples)]


SCHEMA = """
DROP TABLE IF EXISTS sg_users, sg_orders, sg_typed, sg_big, sg_texts, sg_uuids, sg_events,
                     sg_tenants, sg_countries, sg_read_log;
CREATE TABLE sg_users (id bigint PRIMARY KEY, name text, score int CHECK (score < 1000000));
CREATE TABLE sg_orders (user_id bigint, id int, amount numeric(12,2), PRIMARY KEY (user_id, id));
CREATE TABLE sg_typed (id bigint PRIMARY KEY, i int, n numeric, f float8, t text,
                       ts timestamptz, d date, u uuid, b bool, g int);
CREATE TABLE sg_big (id bigint PRIMARY KEY, v int);
CREATE TABLE sg_texts (k text PRIMARY KEY, v int);
CREATE TABLE sg_uuids (u uuid PRIMARY KEY, v int);
CREATE TABLE sg_events (id bigint PRIMARY KEY, kind text);
CREATE TABLE sg_tenants (tenant_id text, n int, PRIMARY KEY (tenant_id, n));
CREATE TABLE sg_countries (code text PRIMARY KEY, name text);
CREATE TABLE sg_read_log (id bigint);
CREATE OR REPLACE FUNCTION sg_note_read(k bigint) RETURNS bigint LANGUAGE sql AS
  'INSERT INTO sg_read_log VALUES (k) RETURNING k';
"""


def setup():
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "..", "..", "sql", "directory.sql")) as f:
        directory_sql = f.read()
    for i in range(2):
        with shard_conn(i) as c:
            c.execute(SCHEMA)
            if i == 0:
                c.execute(directory_sql)
                c.execute("DELETE FROM shardgate.directory WHERE table_name = 'sg_tenants'")


def cleanup():
    for i in range(2):
        try:
            with shard_conn(i) as c:
                c.execute("DROP TABLE IF EXISTS sg_users, sg_orders, sg_typed, sg_big, sg_texts, "
                          "sg_uuids, sg_events, sg_tenants, sg_countries, sg_read_log")
                c.execute("DROP FUNCTION IF EXISTS sg_note_read(bigint)")
        except Exception as e:  # noqa
            print("cleanup: %s" % e)


def hash_shard_of(ids, typ="bigint", buckets=16):
    """{id: shard} by PostgreSQL's own hash (asked of shard s0)."""
    with shard_conn(0) as c:
        expr = bucket_sql("k", typ, buckets).replace("%", "%%")
        rows = c.execute("SELECT k, " + expr + " %% 2 FROM unnest(%s::" + typ + "[]) AS k",
                         (list(ids),)).fetchall()
    return {k: int(s) for k, s in rows}


def sync_replicas(timeout=30):
    """Waits until s0's replicas have replayed everything its primary wrote:
    reads on a new proxy connection may go to them (read-your-writes holds
    per connection only)."""
    import time
    with shard_conn(0) as c:
        lsn = c.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
    deadline = time.monotonic() + timeout
    for port in (BASE + 1, BASE + 2):
        with psycopg.connect(direct_dsn().replace("port=%d" % BASE, "port=%d" % port),
                             autocommit=True) as r:
            while r.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)).fetchone()[0] \
                    is not True:
                if time.monotonic() > deadline:
                    fail("replica on port %d did not replay %s within %d s" % (port, lsn, timeout))
                time.sleep(0.02)


def placed(table, col):
    """{key: [shards holding it]} by asking each shard directly."""
    out = {}
    for i in range(2):
        with shard_conn(i) as c:
            for (k,) in c.execute("SELECT %s FROM %s" % (col, table)):
                out.setdefault(k, []).append(i)
    return out


def expect_0a000(conn, sql, params=None, what=""):
    try:
        conn.execute(sql, params)
    except psycopg.Error as e:
        check_eq(sqlstate_of(e), "0A000", "%s: SQLSTATE of %r" % (what, sql))
        check(len(str(e)) > 20, "a message naming the reason", str(e), what)
        return str(e)
    fail("%s: %r was not refused" % (what, sql))


# ---- the parts ----

def part_insert_and_place():
    """1,000 rows through the proxy five ways; each lands where the map says."""
    keys = random.Random(7).sample(range(-10**12, 10**12), 1000)
    with proxy() as c:
        # 200 single-row INSERTs, simple protocol, literal keys.
        for k in keys[:200]:
            simple(c, "INSERT INTO sg_users (id, name, score) VALUES (%d, 'u%d', 1)" % (k, k))
        # 200 in multi-row INSERTs whose rows go to both shards (split).
        for i in range(200, 400, 10):
            rows = ", ".join("(%d, 'u%d', 2)" % (k, k) for k in keys[i:i + 10])
            got = simple(c, "INSERT INTO sg_users (id, name, score) VALUES %s RETURNING id" % rows)
            check_eq([int(r[0]) for r in got], keys[i:i + 10],
                     "RETURNING ids of a split multi-row INSERT, in VALUES order")
        # 200 single-row, extended protocol with parameters.
        for k in keys[400:600]:
            c.execute("INSERT INTO sg_users (id, name, score) VALUES (%s, %s, 3)", (k, "u%d" % k))
        # 200 in multi-row parameterized INSERTs (split, parameters renumbered).
        for i in range(600, 800, 25):
            chunk = keys[i:i + 25]
            values = ", ".join(["(%s, %s, 4)"] * len(chunk))
            params = [x for k in chunk for x in (k, "u%d" % k)]
            cur = c.execute("INSERT INTO sg_users (id, name, score) VALUES " + values, params)
            check_eq(cur.rowcount, 25, "row count of a split parameterized INSERT")
        # 200 by COPY FROM STDIN (text format), rows split by key as they stream.
        with c.cursor() as cur:
            with cur.copy("COPY sg_users (id, name, score) FROM STDIN") as cp:
                for k in keys[800:]:
                    cp.write_row((k, "u%d" % k, 5))
            check_eq(cur.rowcount, 200, "COPY row count over both shards")
    where = hash_shard_of(keys)
    got = placed("sg_users", "id")
    check_eq(len(got), 1000, "distinct keys on the shards")
    dup = [k for k, s in got.items() if len(s) != 1]
    check_eq(dup, [], "keys on more than one shard")
    wrong = [k for k, s in got.items() if s[0] != where[k]]
    check_eq(wrong, [], "keys on a shard the map does not name")
    counts = [sum(1 for s in got.values() if s[0] == i) for i in range(2)]
    note("rows per shard: s0 %d, s1 %d" % tuple(counts))
    check(min(counts) > 350, "both shards hold rows", counts)
    # Point reads by key, both protocols (a new connection: replicas first caught up).
    sync_replicas()
    with proxy() as c:
        for k in keys[::10]:
            check_eq(simple(c, "SELECT name FROM sg_users WHERE id = %d" % k), [("u%d" % k,)],
                     "simple point read of %d" % k)
            check_eq(c.execute("SELECT name FROM sg_users WHERE id = %s", (k,)).fetchall(),
                     [("u%d" % k,)], "extended point read of %d" % k)
        check_eq(c.execute("SELECT count(*) FROM sg_users").fetchone()[0], 1000,
                 "count(*) over both shards")
        got = c.execute("SELECT id FROM sg_users WHERE id = ANY(%s) ORDER BY id",
                        (keys[:40],)).fetchall()
        check_eq([r[0] for r in got], sorted(keys[:40]), "= ANY($1) over both shards")
        got = simple(c, "SELECT id FROM sg_users WHERE id IN (%s) OR id = %d ORDER BY id DESC" %
                     (",".join(str(k) for k in keys[40:60]), keys[60]))
        check_eq([int(r[0]) for r in got], sorted(keys[40:61], reverse=True), "IN ... OR ...")


def part_typed_keys():
    """Text and uuid keys: placed by PostgreSQL's hash of the type."""
    texts = ["", "a", "ä", "日本語", "x" * 300] + ["key-%d" % i for i in range(95)]
    uuids = [str(uuid.UUID(int=random.Random(i).getrandbits(128))) for i in range(100)]
    with proxy() as c:
        for t in texts:
            c.execute("INSERT INTO sg_texts (k, v) VALUES (%s, 1)", (t,))
        for u in uuids[:50]:
            simple(c, "INSERT INTO sg_uuids (u, v) VALUES ('%s', 1)" % u)
        for u in uuids[50:]:
            c.execute("INSERT INTO sg_uuids (u, v) VALUES (%s, 2)", (uuid.UUID(u),))
        for t in texts[:10]:
            check_eq(c.execute("SELECT v FROM sg_texts WHERE k = %s", (t,)).fetchall(), [(1,)],
                     "text key read %r" % t)
    # CSV COPY with keys that need quoting; binary COPY of uuid keys.
    csv_keys = ['a,b', 'say "hi"', 'line\nbreak', ' pad ', 'x' * 50]
    more_uuids = [uuid.UUID(int=random.Random(1000 + i).getrandbits(128)) for i in range(40)]
    with proxy() as c:
        with c.cursor() as cur:
            with cur.copy("COPY sg_texts (k, v) FROM STDIN WITH (FORMAT csv)") as cp:
                for t in csv_keys:
                    cp.write('"%s",7\n' % t.replace('"', '""'))
            with cur.copy("COPY sg_uuids (u, v) FROM STDIN WITH (FORMAT binary)") as cp:
                cp.set_types(["uuid", "int4"])
                for u in more_uuids:
                    cp.write_row((u, 3))
    texts += csv_keys
    uuids += [str(u) for u in more_uuids]
    where = hash_shard_of(texts, "text", 8)
    got = placed("sg_texts", "k")
    check_eq(sorted(got), sorted(texts), "text keys present")
    check_eq([k for k, s in got.items() if s != [where[k]]], [], "text keys misplaced")
    where = hash_shard_of(uuids, "uuid", 8)
    got = {str(k): s for k, s in placed("sg_uuids", "u").items()}
    check_eq(sorted(got), sorted(uuids), "uuid keys present")
    check_eq([k for k, s in got.items() if s != [where[uuid.UUID(k)] if uuid.UUID(k) in where
                                                   else where[k]]], [], "uuid keys misplaced")


def insert_five_ways(c, table, cols, rows):
    """Inserts rows (tuples matching cols) through the proxy connection c, a
    fifth each way: single-row simple, multi-row simple (split), single-row
    extended, multi-row extended (split), COPY text. (Reads that must see
    them use the same connection: read-your-writes is per connection.)"""
    n = len(rows)
    parts = [rows[i * n // 5:(i + 1) * n // 5] for i in range(5)]
    collist = ", ".join(cols)

    def lit(v):
        return str(v) if isinstance(v, int) else "'%s'" % str(v).replace("'", "''")
    if True:
        for r in parts[0]:
            simple(c, "INSERT INTO %s (%s) VALUES (%s)" % (table, collist, ", ".join(map(lit, r))))
        for i in range(0, len(parts[1]), 10):
            chunk = parts[1][i:i + 10]
            simple(c, "INSERT INTO %s (%s) VALUES %s" % (
                table, collist, ", ".join("(%s)" % ", ".join(map(lit, r)) for r in chunk)))
        one = "(%s)" % ", ".join(["%s"] * len(cols))
        for r in parts[2]:
            c.execute("INSERT INTO %s (%s) VALUES %s" % (table, collist, one), r)
        for i in range(0, len(parts[3]), 10):
            chunk = parts[3][i:i + 10]
            c.execute("INSERT INTO %s (%s) VALUES %s" % (table, collist, ", ".join([one] * len(chunk))),
                      [v for r in chunk for v in r])
        with c.cursor() as cur:
            with cur.copy("COPY %s (%s) FROM STDIN" % (table, collist)) as cp:
                for r in parts[4]:
                    cp.write_row(r)


def part_range_table():
    """1,000 rows of a range table, five ways; each on its range's shard."""
    ids = list(range(500, 1500))
    random.Random(3).shuffle(ids)
    with proxy() as c:
        insert_five_ways(c, "sg_events", ["id", "kind"], [(i, "e%d" % i) for i in ids])
        check_eq(c.execute("SELECT count(*) FROM sg_events WHERE id BETWEEN 990 AND 1009")
                 .fetchone()[0], 20, "BETWEEN across the range boundary")
        check_eq(c.execute("SELECT count(*) FROM sg_events WHERE id < 950").fetchone()[0], 450,
                 "id < 950 (one shard)")
        for i in (500, 999, 1000, 1499):
            check_eq(c.execute("SELECT kind FROM sg_events WHERE id = %s", (i,)).fetchone()[0],
                     "e%d" % i, "point read of %d" % i)
        check_eq(c.execute("SELECT count(*) FROM sg_events").fetchone()[0], 1000, "count(*)")
        try:
            simple(c, "INSERT INTO sg_events (id, kind) VALUES (1, 'a'), ('x', 'b')")
            fail("a key that is not a bigint was accepted")
        except psycopg.Error as e:
            check(sqlstate_of(e) == "22023" and "sg_events" in str(e) and "x" in str(e),
                  "22023 naming the table and the value", "%s %s" % (sqlstate_of(e), e))
    got = placed("sg_events", "id")
    check_eq(len(got), 1000, "range rows present")
    check_eq([k for k, s in got.items() if s != [0 if k < 1000 else 1]], [],
             "range rows on the wrong shard or on both")


def part_directory_table():
    """1,000 rows of 20 tenants, five ways; each on its tenant's directory shard."""
    tenants = ["tenant-%02d" % i for i in range(20)]
    rows = [(tenants[i % 20], i) for i in range(1000)]
    random.Random(5).shuffle(rows)
    with proxy() as c:
        insert_five_ways(c, "sg_tenants", ["tenant_id", "n"], rows)
        for t in tenants[:5]:
            check_eq(c.execute("SELECT count(*) FROM sg_tenants WHERE tenant_id = %s",
                               (t,)).fetchone()[0], 50, "rows of %s" % t)
        check_eq(c.execute("SELECT count(*) FROM sg_tenants").fetchone()[0], 1000, "count(*)")
    with shard_conn(0) as c:
        directory = dict(c.execute("SELECT key, shard FROM shardgate.directory "
                                   "WHERE table_name = 'sg_tenants'").fetchall())
    check_eq(sorted(directory), tenants, "directory entries")
    check(set(directory.values()) == {"s0", "s1"}, "round_robin uses both shards",
          sorted(set(directory.values())))
    got = {}
    for i in range(2):
        with shard_conn(i) as c:
            for t, n in c.execute("SELECT tenant_id, count(*) FROM sg_tenants GROUP BY 1"):
                got.setdefault(t, []).append((i, n))
    wrong = [t for t, s in got.items() if s != [(int(directory[t][1]), 50)]]
    check_eq(wrong, [], "tenant rows not all on their directory shard")
    # Two clients inserting the same new key at once: one entry, both rows there.
    barrier = threading.Barrier(2)
    errors = []

    def insert(n):
        try:
            with proxy() as c:
                barrier.wait()
                c.execute("INSERT INTO sg_tenants (tenant_id, n) VALUES ('tenant-new', %s)", (n,))
        except Exception as e:  # noqa
            errors.append(e)
    threads = [threading.Thread(target=insert, args=(n,)) for n in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check_eq(errors, [], "concurrent inserts of a new key")
    with shard_conn(0) as c:
        entries = c.execute("SELECT shard FROM shardgate.directory WHERE table_name = "
                            "'sg_tenants' AND key = 'tenant-new'").fetchall()
    check_eq(len(entries), 1, "directory entries for the new key")
    got = placed("sg_tenants", "tenant_id")
    check_eq(got.get("tenant-new"), [int(entries[0][0][1])] * 2, "both rows on the entry's shard")


def load_typed():
    rnd = random.Random(11)
    rows = []
    base = datetime(2024, 1, 1, tzinfo=timezone.utc)
    for i in range(2000):
        def maybe(v):
            return None if rnd.random() < 0.05 else v
        rows.append((i, maybe(rnd.randint(-1000, 1000)),
                     maybe(Decimal(rnd.randint(-10**8, 10**8)) / Decimal(10 ** rnd.randint(0, 6))),
                     maybe(rnd.choice([rnd.uniform(-1e6, 1e6), float("inf"), float("-inf"),
                                       float("nan")]) if rnd.random() < 0.05
                           else rnd.uniform(-1e6, 1e6)),
                     maybe(rnd.choice(["", "a", "B", "zz", "Ünï", "日本"]) + str(rnd.randint(0, 99))),
                     maybe(base + timedelta(seconds=rnd.randint(-10**8, 10**8))),
                     maybe(date(2000, 1, 1) + timedelta(days=rnd.randint(0, 20000))),
                     maybe(uuid.UUID(int=rnd.getrandbits(128))),
                     maybe(rnd.random() < 0.5), rnd.randint(0, 9)))
    with proxy() as c:
        with c.cursor() as cur:
            cur.executemany("INSERT INTO sg_typed (id, i, n, f, t, ts, d, u, b, g) VALUES "
                            "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", rows)
    # Ground truth: all rows in one table on s0, outside the shard map.
    with shard_conn(0) as c:
        c.execute("DROP TABLE IF EXISTS sg_typed_all")
        c.execute("CREATE TABLE sg_typed_all (LIKE sg_typed)")
        with c.cursor() as cur:
            cur.executemany("INSERT INTO sg_typed_all VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                            rows)


def part_merged_reads():
    load_typed()
    sync_replicas()
    queries = [
        "SELECT count(*), count(i), sum(i), min(i), max(i), avg(i) FROM {t}",
        "SELECT sum(n), min(n), max(n), avg(n) FROM {t}",
        "SELECT min(f), max(f), min(t), max(t), min(ts), max(ts), min(d), max(d) FROM {t}",
        "SELECT g, count(*), sum(i), avg(n), min(t) FROM {t} GROUP BY g ORDER BY g",
        "SELECT g, count(*) FROM {t} GROUP BY g HAVING count(*) > 195 ORDER BY g",
        "SELECT DISTINCT g FROM {t} ORDER BY g",
        "SELECT DISTINCT b FROM {t} ORDER BY b NULLS FIRST",
        "SELECT count(*) FROM {t} WHERE i > 0",
    ]
    for col in ["i", "n", "f", "t", "ts", "d", "u", "b"]:
        for direction in ["", " DESC", " NULLS FIRST", " DESC NULLS LAST"]:
            queries.append("SELECT id, %s FROM {t} ORDER BY %s%s, id LIMIT 25 OFFSET 7" %
                           (col, col, direction))
    queries.append("SELECT id FROM {t} ORDER BY t COLLATE \"C\", id LIMIT 5")
    with proxy() as c, shard_conn(0) as truth:
        c.execute("SET TIME ZONE 'UTC'")
        truth.execute("SET TIME ZONE 'UTC'")
        for q in queries:
            got = c.execute(q.format(t="sg_typed")).fetchall()
            want = truth.execute(q.format(t="sg_typed_all")).fetchall()
            if q.startswith("SELECT id, f") or "f)" in q:
                same = repr(got) == repr(want)
            else:
                same = got == want
            check(same, want[:5], got[:5], "merged result of %s" % q)
        # The same through the simple protocol (text results).
        for q in queries[:4]:
            got = simple(c, q.format(t="sg_typed"))
            want = simple(truth, q.format(t="sg_typed_all"))
            check_eq(got, want, "simple-protocol merge of %s" % q)
        # LIMIT and OFFSET as parameters.
        got = c.execute("SELECT id FROM sg_typed ORDER BY id DESC LIMIT %s OFFSET %s",
                        (10, 3)).fetchall()
        check_eq([r[0] for r in got], list(range(1996, 1986, -1)), "LIMIT $1 OFFSET $2")
    with shard_conn(0) as c:
        c.execute("DROP TABLE sg_typed_all")


def part_limit_bound():
    """LIMIT 10 over 1,000,000 rows: each shard produces at most 10."""
    for i in range(2):
        with shard_conn(i) as c:
            c.execute("INSERT INTO sg_big SELECT g, g %% 7 FROM generate_series(1, 1000000) g "
                      "WHERE %s %% 2 = %d" % (bucket_sql("g::bigint", "bigint", 4), i))
            c.execute("ANALYZE sg_big")
            c.execute("TRUNCATE sg_read_log")
    sync_replicas()
    with proxy() as c:
        got = c.execute("SELECT sg_note_read(id) FROM sg_big ORDER BY id LIMIT 10").fetchall()
        check_eq([r[0] for r in got], list(range(1, 11)), "the first 10 of 1,000,000")
        got = c.execute("SELECT id FROM sg_big ORDER BY id DESC LIMIT 3 OFFSET 2").fetchall()
        check_eq([r[0] for r in got], [999998, 999997, 999996], "DESC LIMIT 3 OFFSET 2")
        check_eq(c.execute("SELECT count(*), sum(v) FROM sg_big").fetchone(),
                 (1000000, sum(g % 7 for g in range(1, 1000001))), "count and sum of 1,000,000")
    evaluated = 0
    for i in range(2):
        with shard_conn(i) as c:
            evaluated += c.execute("SELECT count(*) FROM sg_read_log").fetchone()[0]
    note("rows the shards produced for LIMIT 10 over 1,000,000: %d" % evaluated)
    check(evaluated <= 20, "at most 10 rows per shard", evaluated, "LIMIT pushed down")


def part_joins_and_reference():
    with proxy() as c:
        c.execute("INSERT INTO sg_countries (code, name) VALUES ('DE', 'Germany'), ('FR', 'France')")
        for uid in (11, 12, 13, 14):
            c.execute("INSERT INTO sg_users (id, name) VALUES (%s, 'j') ON CONFLICT (id) DO NOTHING",
                      (uid,))
            for n in range(3):
                c.execute("INSERT INTO sg_orders (user_id, id, amount) VALUES (%s, %s, %s)",
                          (uid, n, Decimal("1.50") * (n + 1)))
        got = c.execute("SELECT u.id, sum(o.amount) FROM sg_users u JOIN sg_orders o "
                        "ON o.user_id = u.id WHERE u.id = %s GROUP BY u.id", (12,)).fetchall()
        check_eq(got, [(12, Decimal("9.00"))], "co-located join pinned to one shard")
        got = c.execute("SELECT count(*) FROM sg_users u JOIN sg_orders o ON o.user_id = u.id "
                        "WHERE u.id IN (11, 12, 13, 14)").fetchone()[0]
        check_eq(got, 12, "co-located join over both shards")
        got = c.execute("SELECT c.name FROM sg_users u JOIN sg_countries c ON c.code = 'DE' "
                        "WHERE u.id = 13").fetchall()
        check_eq(got, [("Germany",)], "join with a reference table")
    for i in range(2):
        with shard_conn(i) as c:
            check_eq(c.execute("SELECT count(*) FROM sg_countries").fetchone()[0], 2,
                     "reference rows on shard %d" % i)


def part_multi_shard_writes():
    with proxy() as c:
        ids = [101, 102, 103, 104, 105, 106, 107, 108]
        c.execute("INSERT INTO sg_users (id, name, score) VALUES " +
                  ", ".join("(%d, 'w', 10)" % i for i in ids))
        cur = c.execute("UPDATE sg_users SET score = score + 1 WHERE name = 'w'")
        check_eq(cur.rowcount, 8, "UPDATE over both shards: summed row count")
        # A write that fails on one shard changes no shard.
        where = hash_shard_of(ids)
        victim = [i for i in ids if where[i] == 1][0]
        with shard_conn(1) as s1:
            s1.execute("UPDATE sg_users SET score = 999990 WHERE id = %s", (victim,))
        try:
            c.execute("UPDATE sg_users SET score = score + 100 WHERE name = 'w'")
            fail("the UPDATE violating a CHECK on one shard succeeded")
        except psycopg.Error as e:
            check_eq(sqlstate_of(e), "23514", "SQLSTATE of the failed multi-shard UPDATE")
        got = placed("sg_users", "id")
        total = 0
        for i in range(2):
            with shard_conn(i) as s:
                total += s.execute("SELECT sum(score) FROM sg_users WHERE name = 'w'").fetchone()[0]
        check_eq(total, 7 * 11 + 999990, "scores after the failed UPDATE (none changed)")
        cur = c.execute("DELETE FROM sg_users WHERE name = 'w'")
        check_eq(cur.rowcount, 8, "DELETE over both shards")
        check(all(i not in got or True for i in ids), "", "")


def part_transactions():
    ids = sorted(hash_shard_of(range(200, 240)).items())
    on0 = [k for k, s in ids if s == 0]
    on1 = [k for k, s in ids if s == 1]
    with proxy(autocommit=False) as c:
        c.execute("INSERT INTO sg_users (id, name) VALUES (%s, 'tx')", (on1[0],))
        c.execute("INSERT INTO sg_users (id, name) VALUES (%s, 'tx')", (on1[1],))
        check_eq(c.execute("SELECT count(*) FROM sg_users WHERE id IN (%s, %s)",
                           (on1[0], on1[1])).fetchone()[0], 2, "reads inside the transaction")
        c.commit()
        # Reads on a second shard inside a transaction (simple and extended).
        c.execute("INSERT INTO sg_users (id, name) VALUES (%s, 'tx')", (on1[3],))
        with shard_conn(0) as s0:
            s0.execute("INSERT INTO sg_users (id, name) VALUES (%s, 'seen')", (on0[1],))
        check_eq(c.execute("SELECT name FROM sg_users WHERE id = %s", (on0[1],)).fetchall(),
                 [("seen",)], "a read on the second shard inside the transaction")
        check_eq(simple(c, "SELECT name FROM sg_users WHERE id = %d" % on1[3]), [("tx",)],
                 "the transaction's own write, after visiting another shard")
        c.commit()
        check_eq(sorted(placed("sg_users", "id").get(on1[3], [])), [1], "committed after the read")
        # A second shard's first write needs two-phase commit.
        c.execute("INSERT INTO sg_users (id, name) VALUES (%s, 'tx')", (on1[2],))
        msg = expect_0a000(c, "INSERT INTO sg_users (id, name) VALUES (%s, 'tx')", (on0[0],),
                           "second shard's write in a transaction")
        check("two_phase_commit" in msg, "a message naming two_phase_commit", msg)
        try:
            c.execute("SELECT 1")
            fail("a statement after the refused write was accepted")
        except psycopg.Error as e:
            check_eq(sqlstate_of(e), "25P02", "SQLSTATE after the failed statement")
        c.rollback()
    got = placed("sg_users", "id")
    check(on1[0] in got and on1[1] in got, "committed rows", sorted(got)[:5])
    check(on1[2] not in got and on0[0] not in got, "rolled-back rows absent", "present")


def part_refusals():
    with proxy() as c:
        reasons = [
            expect_0a000(c, "SELECT * FROM sg_users u, sg_typed t WHERE u.id = t.id",
                         what="join of tables that are not co-located"),
            expect_0a000(c, "SELECT id, row_number() OVER (ORDER BY id) FROM sg_users",
                         what="window function across shards"),
            expect_0a000(c, "SELECT count(DISTINCT name) FROM sg_users",
                         what="count(DISTINCT) across shards"),
            expect_0a000(c, "INSERT INTO sg_users VALUES (5000, 'x')",
                         what="INSERT without a column list"),
            expect_0a000(c, "INSERT INTO sg_users (id, name) SELECT id, name FROM sg_typed",
                         what="INSERT ... SELECT"),
        ]
        ids = sorted(hash_shard_of(range(300, 340)).items())
        a = [k for k, s in ids if s == 0][0]
        b = [k for k, s in ids if s == 1][0]
        c.execute("INSERT INTO sg_users (id, name) VALUES (%s, 'mv')", (a,))
        reasons.append(expect_0a000(c, "UPDATE sg_users SET id = %s WHERE id = %s", (b, a),
                                    "UPDATE moving a row to another shard"))
        c.execute("UPDATE sg_users SET id = %s WHERE id = %s", (a, a))  # same shard: fine
        for r in reasons:
            note("0A000: %s" % r.splitlines()[0])


def part_explain():
    """shardgate explain names the key, its bucket and shard, or the refusal."""
    import subprocess
    want = hash_shard_of([42])[42]
    out = subprocess.run([os.environ["SG_SHARDGATE"], "explain", "-c", os.environ["SG_CONFIG"],
                          "SELECT * FROM sg_users WHERE id = $1", "42"],
                         capture_output=True, text=True, timeout=30).stdout
    check("sg_users (hash on id)" in out, "the sharded table", out)
    check("shards:     s%d " % want in out, "target shard s%d" % want, out)
    out = subprocess.run([os.environ["SG_SHARDGATE"], "explain", "-c", os.environ["SG_CONFIG"],
                          "SELECT * FROM sg_users WHERE id = 42 OR id = 7"],
                         capture_output=True, text=True, timeout=30).stdout
    check("bucket" in out and "sg_users.id = 42" in out, "each key's bucket", out)
    out = subprocess.run([os.environ["SG_SHARDGATE"], "explain", "-c", os.environ["SG_CONFIG"],
                          "SELECT count(DISTINCT name) FROM sg_users"],
                         capture_output=True, text=True, timeout=30).stdout
    check("refused:    SQLSTATE 0A000: count(DISTINCT" in out, "the refusal", out)
    out = subprocess.run([os.environ["SG_SHARDGATE"], "explain", "-c", os.environ["SG_CONFIG"],
                          "SELECT name FROM sg_users ORDER BY name LIMIT 5 OFFSET 2"],
                         capture_output=True, text=True, timeout=30).stdout
    check("fan-out read" in out and "LIMIT 7" in out, "the merge and the per-shard LIMIT", out)


def part_asyncpg():
    """asyncpg: binary Bind parameters route, executemany over both shards, merged reads."""
    import asyncio
    import asyncpg
    from sgtest import asyncpg_args
    keys = list(range(700000, 700200))

    async def go():
        conn = await asyncpg.connect(**asyncpg_args())
        try:
            await conn.executemany("INSERT INTO sg_users (id, name, score) VALUES ($1, $2, 9)",
                                   [(k, "a%d" % k) for k in keys])
            for k in keys[:20]:
                got = await conn.fetchval("SELECT name FROM sg_users WHERE id = $1", k)
                check_eq(got, "a%d" % k, "asyncpg point read of %d" % k)
            got = await conn.fetchval("SELECT count(*) FROM sg_users WHERE score = 9")
            check_eq(got, 200, "asyncpg count over both shards")
            got = await conn.fetch("SELECT id FROM sg_users WHERE id = ANY($1::bigint[]) "
                                   "ORDER BY id DESC LIMIT 5", keys[:50])
            check_eq([r[0] for r in got], sorted(keys[:50], reverse=True)[:5],
                     "asyncpg = ANY($1) with a binary array, ordered and limited")
        finally:
            await conn.close()
    asyncio.run(go())
    where = hash_shard_of(keys)
    got = placed("sg_users", "id")
    check_eq([k for k in keys if got.get(k) != [where[k]]], [], "asyncpg rows misplaced")


def part_session_mode():
    """Session pooling: one server on the default shard for the session."""
    ids = sorted(hash_shard_of(range(400, 440)).items())
    on0 = [k for k, s in ids if s == 0]
    on1 = [k for k, s in ids if s == 1]
    with proxy() as c:
        c.execute("INSERT INTO sg_users (id, name) VALUES (%s, 'sess')", (on0[0],))
        check_eq(c.execute("SELECT name FROM sg_users WHERE id = %s", (on0[0],)).fetchone()[0],
                 "sess", "a default-shard key in session pooling")
        expect_0a000(c, "INSERT INTO sg_users (id, name) VALUES (%s, 'sess')", (on1[0],),
                     "another shard's key in session pooling")


def main():
    setup()
    if SESSION:
        run_parts([("session_mode", part_session_mode)], cleanup)
    run_parts([
        ("insert_and_place", part_insert_and_place),
        ("typed_keys", part_typed_keys),
        ("range_table", part_range_table),
        ("directory_table", part_directory_table),
        ("merged_reads", part_merged_reads),
        ("limit_bound", part_limit_bound),
        ("joins_and_reference", part_joins_and_reference),
        ("multi_shard_writes", part_multi_shard_writes),
        ("transactions", part_transactions),
        ("refusals", part_refusals),
        ("explain", part_explain),
        ("asyncpg", part_asyncpg),
    ], cleanup)


if __name__ == "__main__":
    main()
