"""test_admin.py: the admin console (database "shardgate") read through psql.

- an admin user (admin.users: [postgres]) gets SHOW VERSION, SHOW SHARDS,
  SHOW NODES, SHOW CONFIG (secrets masked) and SHOW ROUTE <sql>, whose answer
  names the key's bucket and shard as PostgreSQL's hash puts it;
- a user not in admin.users is refused with 28000, and an unknown command
  gets 42601; the extended protocol gets 0A000;
- the console never touches a server: it answers with every shard down too
  (not tested here: the shards are shared) — SHOW NODES shows them up.
"""
import os
import subprocess

import psycopg

from sgtest import check, check_eq, env, fail, run_parts, sqlstate_of

PSQL = "/usr/lib/postgresql/15/bin/psql" if os.path.exists("/usr/lib/postgresql/15/bin/psql") else "psql"


def psql(sql, user="postgres"):
    out = subprocess.run([PSQL, "-X", "-A", "-F", "|", "-h", env("SG_HOST"), "-p", env("SG_PORT"),
                          "-U", user, "-d", "shardgate", "-c", sql],
                         capture_output=True, text=True, timeout=30)
    return out.returncode, out.stdout, out.stderr


def part_show_commands():
    rc, out, err = psql("SHOW VERSION")
    check(rc == 0 and "shardgate " in out, "a version", out + err)
    rc, out, err = psql("SHOW SHARDS")
    lines = out.splitlines()
    check_eq(lines[0], "shard|primary|replicas|max_concurrent|default", "SHOW SHARDS columns")
    check(lines[1].startswith("s0|127.0.0.1:") and lines[1].endswith("|yes"), "s0 the default",
          lines[1])
    check(lines[2].startswith("s1|"), "s1", lines[2])
    rc, out, err = psql("show nodes;")
    lines = out.splitlines()
    check_eq(lines[0], "shard|node|address|role|state|circuit|lag_bytes|lag_ms|last_check|"
             "last_error", "SHOW NODES columns")
    import re
    check(all(re.match(r"^s\d\|\d\|.*\|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\|", l)
              for l in lines[1:-1]), "every node checked, with a UTC time", out)
    check_eq(len(lines), 1 + 4 + 1, "four nodes and the row count")
    check("s0|0|" in out and "|primary|up|closed|" in out, "the s0 primary up", out)
    with psycopg.connect(env("SG_DSN"), autocommit=True) as c:
        for _ in range(5):
            c.execute("SELECT 1")
    rc, out, err = psql("SHOW STATS")
    lines = out.splitlines()
    check_eq(lines[0], "shard|node|address|statements_1m|errors_1m|p50_ms|p95_ms|p99_ms|"
             "statements|errors|wait_total_ms|wait_max_ms", "SHOW STATS columns")
    s0 = [l.split("|") for l in lines[1:-1] if l.startswith("s0|")]
    check_eq(len(s0), 3, "a row per node of s0 (primary and two replicas)")
    check(sum(int(r[3]) for r in s0) >= 5 and any(float(r[7]) > 0 for r in s0),
          "s0's nodes ran the statements in the last minute, with a p99", out)
    rc, out, err = psql("SHOW CONFIG")
    check(rc == 0 and "s0" in out, "the configuration", out + err)
    check("postgres" not in [l.strip() for l in out.splitlines() if "password" in l],
          "no password in SHOW CONFIG", out)
    check(not any("password" in l and "postgres" in l.split("password", 1)[1] for l in out.splitlines()),
          "the backend password masked", out)


def part_show_route():
    with psycopg.connect(env("PGTEST_DSN"), autocommit=True) as c:
        want = c.execute("SELECT (((hashint8extended(42, 8816678312871386365)::numeric + "
                         "5305509591434766563) % 18446744073709551616 + 18446744073709551616) "
                         "% 18446744073709551616) % 16").fetchone()[0]
    rc, out, err = psql("SHOW ROUTE SELECT * FROM sg_users WHERE id = 42")
    check(rc == 0, "SHOW ROUTE answers", err)
    check("sg_users.id = 42 -> bucket %d of 16 -> shard s%d" % (want, want % 2) in out,
          "the key's bucket and shard", out)
    rc, out, err = psql("SHOW ROUTE SELECT count(DISTINCT name) FROM sg_users")
    check("0A000" in out and "count(DISTINCT" in out, "the refusal and its reason", out)
    rc, out, err = psql("SHOW ROUTE SELECT 1")
    check("default shard" in out, "a statement without sharded tables", out)


def part_refusals():
    rc, out, err = psql("SHOW VERSION", user="trustuser")
    check(rc != 0 and "admin console" in err, "trustuser refused", err)
    try:
        psycopg.connect("host=%s port=%s user=trustuser dbname=shardgate" % (env("SG_HOST"),
                                                                             env("SG_PORT")))
        fail("a user outside admin.users got into the console")
    except psycopg.OperationalError as e:
        check("28000" in str(e) or "admin.users" in str(e), "28000", str(e))
    with psycopg.connect("host=%s port=%s user=postgres dbname=shardgate" % (env("SG_HOST"),
                                                                           env("SG_PORT")),
                         autocommit=True) as c:
        try:
            c.execute("SHOW TABLES")
            fail("an unknown command was accepted")
        except psycopg.Error as e:
            check_eq(sqlstate_of(e), "42601", "unknown command")
        try:
            c.execute("SHOW VERSION WHERE %s", (1,))
            fail("the extended protocol was accepted")
        except psycopg.Error as e:
            check_eq(sqlstate_of(e), "0A000", "extended protocol")
        rows = c.execute("SHOW VERSION").fetchall()
        check(rows and rows[0][0].startswith("shardgate "), "psycopg reads the result set", rows)


def rows_of(out):
    lines = out.splitlines()
    return lines[0].split("|"), [l.split("|") for l in lines[1:-1]]


def part_worker_commands():
    import threading
    import time
    from sgtest import dsn, pool_mode
    holder = psycopg.connect(dsn(), autocommit=True)
    holder.execute("BEGIN")
    pid = str(holder.execute("SELECT pg_backend_pid()").fetchone()[0])
    try:
        rc, out, err = psql("SHOW CLIENTS")
        cols, rows = rows_of(out)
        check_eq(cols, ["worker", "id", "user", "database", "address", "state", "server", "shard",
                        "node", "connected_s", "idle_ms"], "SHOW CLIENTS columns")
        mine = [r for r in rows if r[3] == "app" and r[6]]
        check(mine, "a client of database app holding a server", out)
        rc, out, err = psql("SHOW SERVERS")
        cols, rows = rows_of(out)
        check_eq(cols, ["worker", "id", "shard", "node", "address", "state", "client",
                        "backend_pid", "tx", "user", "age_s", "busy_ms"], "SHOW SERVERS columns")
        held = [r for r in rows if r[7] == pid]
        check(len(held) == 1 and held[0][2] == "s0" and held[0][8] == "T",
              "the held backend %s in a transaction on s0" % pid, out)
        client_id = held[0][6]
        check(any(r[1] == client_id and r[6] == held[0][1] for r in mine),
              "SHOW CLIENTS names the same server", (client_id, mine))
        rc, out, err = psql("SHOW POOLS")
        cols, rows = rows_of(out)
        check_eq(cols, ["worker", "shard", "node", "address", "user", "database", "active", "idle",
                        "connecting", "waiting", "max_wait_ms", "size"], "SHOW POOLS columns")
        check(any(r[1] == "s0" and r[2] == "0" and int(r[6]) >= 1 for r in rows),
              "an active s0 primary pool", out)
        rc, out, err = psql("KILL %s" % client_id)
        check(rc == 0 and "KILL" in out, "KILL answered", out + err)
        try:
            holder.execute("SELECT 1")
            fail("a killed client went on")
        except psycopg.Error:
            pass
        rc, out, err = psql("KILL 999999999")
        check(rc != 0 and "no client" in err, "KILL of an unknown client", err)
    finally:
        holder.close()
    if pool_mode() != "transaction":
        return  # sessions hold their servers: PAUSE would wait for them to end
    c = psycopg.connect(dsn(), autocommit=True)
    c.execute("SELECT 1")
    try:
        rc, out, err = psql("PAUSE s0")
        check(rc == 0 and "PAUSE" in out, "PAUSE s0 answered", out + err)
        got = {}
        t = threading.Thread(target=lambda: got.setdefault("v", c.execute("SELECT 7").fetchone()[0]))
        t.start()
        paused = False
        for _ in range(50):
            rc, out, err = psql("SHOW CLIENTS")
            if any(r[5] == "paused" for r in rows_of(out)[1]):
                paused = True
                break
            time.sleep(0.05)
        check(paused and "v" not in got, "the statement waits while s0 is paused", out)
    finally:
        rc, out, err = psql("RESUME s0")
    check(rc == 0 and "RESUME" in out, "RESUME s0 answered", out + err)
    t.join(timeout=10)
    check_eq(got.get("v"), 7, "the statement after RESUME")
    c.close()
    rc, out, err = psql("PAUSE nosuch")
    check(rc != 0 and "no shard" in err, "PAUSE of an unknown shard", err)


run_parts([
    ("show_commands", part_show_commands),
    ("worker_commands", part_worker_commands),
    ("show_route", part_show_route),
    ("refusals", part_refusals),
])
