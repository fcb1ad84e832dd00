"""test_rebalance_verify.py: `shardgate rebalance verify -c FILE` finds every row
that is not on the shard the map gives it, and only those.

The test writes its own three-shard map (s0, s1, s2 of tests/cluster.sh) and
creates its own tables on every shard directly (the proxy is not involved):

  rv_users      hash on id, 8 buckets, placement [s2 s0 s1 s1 s2 s0 s0 s2]
                (not bucket mod 3, so a verify that ignored the placement fails)
  rv_orders     hash on user_id, co-located with rv_users
  rv_events     range on id: below 100 on s0, below 200 on s1, the rest on s2
  rv_tenants    directory on tenant_id (text), entries in shardgate.directory on s0
  rv_countries  reference: the same rows on every shard

Where a key's rows belong is computed by PostgreSQL itself, independently of
shardgate: the bucket of an id is the remainder r for which
satisfies_hash_partition() accepts it for a scratch PARTITION BY HASH table.

Then: the untouched layout verifies (exit 0, every table OK, the summary's
counts); each kind of misplaced row (a hash row, a range row, a NULL range
key, a tenant row away from its directory entry, a tenant without an entry,
a reference copy with one changed row) gives exit 1 and a MISMATCH line that
names the table, the unit and the shards, and exit 0 again once removed; a
mapped table that exists nowhere is an error (exit 2).
"""
import os
import re
import shutil
import subprocess
import tempfile
import traceback

import psycopg

from sgtest import check, check_eq, env, fail, note, run_parts

BASE = int(env("PGTEST_BASE_PORT"))
SHARDGATE = env("SG_SHARDGATE")
SHARDS = ["s0", "s1", "s2"]
PORTS = {"s0": BASE, "s1": BASE + 3, "s2": BASE + 4}
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

BUCKETS = 8
PLACEMENT = ["s2", "s0", "s1", "s1", "s2", "s0", "s0", "s2"]
RANGES = [(100, "s0"), (200, "s1"), (None, "s2")]
TENANTS = {"acme": "s0", "globex": "s1", "initech": "s2", "umbrella": "s1"}
COUNTRIES = [("de", "Germany"), ("fr", "France"), ("jp", "Japan"), ("br", "Brazil")]
TABLES = ["rv_users", "rv_orders", "rv_events", "rv_tenants", "rv_countries"]

USER_IDS = list(range(1, 61))
ORDER_USER_IDS = list(range(1, 31))  # two orders each
EVENT_IDS = list(range(0, 300, 7))

MAP = """\
listen: 127.0.0.1:1
backend: {{ user: postgres, password: postgres, database: app }}
shards:
  - name: s0
    primary: 127.0.0.1:{s0}
  - name: s1
    primary: 127.0.0.1:{s1}
  - name: s2
    primary: 127.0.0.1:{s2}
tables:
  rv_users: {{ key: id, strategy: hash, buckets: {buckets}, placement: [{placement}] }}
  rv_orders: {{ key: user_id, strategy: hash, colocate_with: rv_users }}
  rv_events:
    key: id
    strategy: range
    ranges: [ {{ below: 100, shard: s0 }}, {{ below: 200, shard: s1 }}, {{ shard: s2 }} ]
  rv_tenants:
    key: tenant_id
    type: text
    strategy: directory
    directory: {{ shard: s0, table: shardgate.directory }}
  rv_countries: {{ strategy: reference }}
{extra}"""

SCHEMA = """
DROP TABLE IF EXISTS rv_users, rv_orders, rv_events, rv_tenants, rv_countries, rv_hash_probe;
CREATE TABLE rv_users (id bigint PRIMARY KEY, name text);
CREATE TABLE rv_orders (user_id bigint, n int, amount numeric(10,2), PRIMARY KEY (user_id, n));
CREATE TABLE rv_events (id bigint, kind text);
CREATE TABLE rv_tenants (tenant_id text, n int);
CREATE TABLE rv_countries (code text PRIMARY KEY, name text);
"""

tmpdir = tempfile.mkdtemp(prefix="rv_")
map_path = os.path.join(tmpdir, "shardmap.yaml")
bucket_of = {}  # id -> bucket, by PostgreSQL's own hash partitioning


def connect(shard):
    return psycopg.connect("host=127.0.0.1 port=%d user=postgres password=postgres dbname=app"
                           % PORTS[shard], autocommit=True)


def write_map(path, extra=""):
    with open(path, "w") as f:
        f.write(MAP.format(buckets=BUCKETS, placement=", ".join(PLACEMENT), extra=extra, **PORTS))


def verify(path=None):
    """Runs the command; returns (exit code, combined output)."""
    p = subprocess.run([SHARDGATE, "rebalance", "verify", "-c", path or map_path],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def expect(code, patterns=(), absent=(), path=None, what=""):
    """Runs verify; fails unless it exits `code` and every regex of
    `patterns` matches a line of its output (and none of `absent` does)."""
    rc, out = verify(path)
    shown = "\n".join("    " + l for l in out.splitlines()[-60:])
    if rc != code:
        fail("%sverify: expected exit %d, got %d; output:\n%s" % (what, code, rc, shown))
    for pat in patterns:
        if not re.search(pat, out, re.M):
            fail("%sverify: expected a line matching /%s/; output:\n%s" % (what, pat, shown))
    for pat in absent:
        if re.search(pat, out, re.M):
            fail("%sverify: expected no line matching /%s/; output:\n%s" % (what, pat, shown))
    return out


def range_shard(key):
    for below, shard in RANGES:
        if below is None or key < below:
            return shard
    raise AssertionError("no range for %r" % key)


def other_shard(shard):
    return SHARDS[(SHARDS.index(shard) + 1) % len(SHARDS)]


def drop_all():
    """Drops the test's tables on every shard and its directory entries."""
    for s in SHARDS:
        with connect(s) as c:
            c.execute("DROP TABLE IF EXISTS rv_users, rv_orders, rv_events, rv_tenants, "
                      "rv_countries, rv_hash_probe")
            has_directory = c.execute(
                "SELECT to_regclass('shardgate.directory') IS NOT NULL").fetchone()[0]
            if s == "s0" and has_directory:
                c.execute("DELETE FROM shardgate.directory WHERE table_name = 'rv_tenants'")


def cleanup():
    drop_all()
    shutil.rmtree(tmpdir, ignore_errors=True)


def compute_buckets(conn, ids):
    """Bucket of each id: the REMAINDER of the PARTITION BY HASH (id bigint)
    partition, MODULUS BUCKETS, that PostgreSQL would put it in."""
    conn.execute("CREATE TABLE rv_hash_probe (id bigint) PARTITION BY HASH (id)")
    rows = conn.execute(
        "SELECT id, r FROM unnest(%s::bigint[]) id, generate_series(0, %s - 1) r "
        "WHERE satisfies_hash_partition('rv_hash_probe'::regclass, %s, r, id)",
        (ids, BUCKETS, BUCKETS)).fetchall()
    conn.execute("DROP TABLE rv_hash_probe")
    out = dict((int(i), int(r)) for i, r in rows)
    check_eq(sorted(out), sorted(ids), "every id has exactly one hash partition")
    return out


def setup():
    drop_all()
    conns = {s: connect(s) for s in SHARDS}
    try:
        for s in SHARDS:
            conns[s].execute(SCHEMA)
        with open(os.path.join(ROOT, "sql", "directory.sql")) as f:
            conns["s0"].execute(f.read())
        ids = USER_IDS + [1000 + i for i in range(200)]
        bucket_of.update(compute_buckets(conns["s0"], ids))
        for i in USER_IDS:
            conns[PLACEMENT[bucket_of[i]]].execute(
                "INSERT INTO rv_users VALUES (%s, %s)", (i, "user %d" % i))
        for i in ORDER_USER_IDS:
            for n in (1, 2):
                conns[PLACEMENT[bucket_of[i]]].execute(
                    "INSERT INTO rv_orders VALUES (%s, %s, %s)", (i, n, "%d.%02d" % (i, n)))
        for i in EVENT_IDS:
            conns[range_shard(i)].execute("INSERT INTO rv_events VALUES (%s, 'e')", (i,))
        for tenant, shard in TENANTS.items():
            conns["s0"].execute("INSERT INTO shardgate.directory (table_name, key, shard) "
                                "VALUES ('rv_tenants', %s, %s)", (tenant, shard))
            for n in range(3):
                conns[shard].execute("INSERT INTO rv_tenants VALUES (%s, %s)", (tenant, n))
        for s in SHARDS:
            for code, name in COUNTRIES:
                conns[s].execute("INSERT INTO rv_countries VALUES (%s, %s)", (code, name))
    finally:
        for c in conns.values():
            c.close()
    write_map(map_path)
    used = {PLACEMENT[bucket_of[i]] for i in USER_IDS}
    check_eq(sorted(used), SHARDS, "shards holding rv_users rows")


def expected_summary():
    units = (len({bucket_of[i] for i in USER_IDS}) + len({bucket_of[i] for i in ORDER_USER_IDS})
             + len({range_shard(i) for i in EVENT_IDS}) + len(TENANTS) + 1)
    rows = (len(USER_IDS) + 2 * len(ORDER_USER_IDS) + len(EVENT_IDS) + 3 * len(TENANTS)
            + len(COUNTRIES))
    return r"^verify: 5 tables, %d units, %d rows: OK$" % (units, rows)


def part_layout_verifies():
    expect(0, [expected_summary()] + [r"^%s: OK\b" % t for t in TABLES], [r"^MISMATCH", r"^ERROR"])


def plant(shard, sql, params):
    with connect(shard) as c:
        c.execute(sql, params)


def part_misplaced_hash_row():
    rid = next(i for i in range(1000, 1200) if PLACEMENT[bucket_of[i]] == "s1")
    b = bucket_of[rid]
    right, wrong = PLACEMENT[b], "s0"
    plant(wrong, "INSERT INTO rv_users VALUES (%s, 'planted')", (rid,))
    try:
        expect(1, [r"^MISMATCH rv_users bucket %d: 1 row on %s, the map puts bucket %d on %s$"
                   % (b, wrong, b, right), r"^verify: 1 mismatch \("],
               [r"^MISMATCH rv_orders", r"^rv_users: OK"], what="hash row on the wrong shard: ")
    finally:
        plant(wrong, "DELETE FROM rv_users WHERE id = %s", (rid,))
    expect(0, [expected_summary()], what="hash row removed: ")


def part_misplaced_colocated_row():
    # rv_orders has no placement of its own: it follows rv_users'.
    uid = next(i for i in range(1000, 1200) if PLACEMENT[bucket_of[i]] == "s0")
    b = bucket_of[uid]
    plant("s2", "INSERT INTO rv_orders VALUES (%s, 1, 1)", (uid,))
    try:
        expect(1, [r"^MISMATCH rv_orders bucket %d: 1 row on s2, the map puts bucket %d on s0$"
                   % (b, b)], [r"^MISMATCH rv_users"], what="co-located row: ")
    finally:
        plant("s2", "DELETE FROM rv_orders WHERE user_id = %s", (uid,))
    expect(0, [expected_summary()], what="co-located row removed: ")


def part_misplaced_range_row():
    check_eq(range_shard(150), "s1", "range of 150")
    plant("s0", "INSERT INTO rv_events VALUES (150, 'planted')", ())
    try:
        expect(1, [r"^MISMATCH rv_events range 1 \(from 100 below 200\): 1 row on s0, "
                   r"the map puts range 1 on s1$", r"^verify: 1 mismatch \("],
               what="range row on the wrong shard: ")
    finally:
        plant("s0", "DELETE FROM rv_events WHERE kind = 'planted'", ())
    expect(0, [expected_summary()], what="range row removed: ")


def part_null_range_key():
    plant("s2", "INSERT INTO rv_events VALUES (NULL, 'planted')", ())
    try:
        expect(1, [r"^MISMATCH rv_events NULL key: 1 row on s2, no map places a NULL key"],
               what="NULL range key: ")
    finally:
        plant("s2", "DELETE FROM rv_events WHERE kind = 'planted'", ())
    expect(0, [expected_summary()], what="NULL key removed: ")


def part_tenant_on_wrong_shard():
    check_eq(TENANTS["globex"], "s1", "directory entry of globex")
    plant("s2", "INSERT INTO rv_tenants VALUES ('globex', 99)", ())
    try:
        expect(1, [r"^MISMATCH rv_tenants key 'globex': 1 row on s2, "
                   r"the directory puts key 'globex' on s1$", r"^verify: 1 mismatch \("],
               what="tenant row away from its directory entry: ")
    finally:
        plant("s2", "DELETE FROM rv_tenants WHERE n = 99", ())
    expect(0, [expected_summary()], what="tenant row removed: ")


def part_tenant_without_entry():
    plant("s1", "INSERT INTO rv_tenants VALUES ('hooli', 1), ('hooli', 2)", ())
    try:
        expect(1, [r"^MISMATCH rv_tenants key 'hooli': 2 rows on s1, "
                   r"the directory shardgate\.directory has no entry for it$"],
               what="tenant without a directory entry: ")
    finally:
        plant("s1", "DELETE FROM rv_tenants WHERE tenant_id = 'hooli'", ())
    expect(0, [expected_summary()], what="tenant rows removed: ")


def part_reference_copy_differs():
    # Same row count everywhere: only the checksum can tell.
    plant("s2", "UPDATE rv_countries SET name = 'Nippon' WHERE code = 'jp'", ())
    try:
        out = expect(1, [r"^MISMATCH rv_countries: the copies differ: s0 4 rows checksum (\S+); "
                         r"s1 4 rows checksum \1; s2 4 rows checksum (?!\1\b)\S+$",
                         r"^verify: 1 mismatch \("],
                     what="reference copy with a changed row: ")
        note([l for l in out.splitlines() if l.startswith("MISMATCH")][0])
    finally:
        plant("s2", "UPDATE rv_countries SET name = 'Japan' WHERE code = 'jp'", ())
    expect(0, [expected_summary()], what="reference copy restored: ")


def part_missing_table_is_error():
    path = os.path.join(tmpdir, "missing.yaml")
    write_map(path, "  rv_nowhere: { key: id, strategy: hash, buckets: 4 }\n")
    expect(2, [r"^ERROR table rv_nowhere does not exist on any shard$", r"^verify: 1 error"],
           path=path, what="a mapped table that exists nowhere: ")


def main():
    try:
        setup()
    except Exception:
        traceback.print_exc()
        cleanup()
        fail("setting up the tables on the shards failed (see the traceback above)")
    run_parts([
        ("layout_verifies", part_layout_verifies),
        ("misplaced_hash_row", part_misplaced_hash_row),
        ("misplaced_colocated_row", part_misplaced_colocated_row),
        ("misplaced_range_row", part_misplaced_range_row),
        ("null_range_key", part_null_range_key),
        ("tenant_on_wrong_shard", part_tenant_on_wrong_shard),
        ("tenant_without_entry", part_tenant_without_entry),
        ("reference_copy_differs", part_reference_copy_differs),
        ("missing_table_is_error", part_missing_table_is_error),
        ("layout_still_verifies", part_layout_verifies),
    ], cleanup=cleanup)


if __name__ == "__main__":
    main()
