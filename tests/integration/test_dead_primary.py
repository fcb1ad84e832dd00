"""test_dead_primary.py: a shard whose primary cannot be reached.

A second proxy is started whose s0 primary is an address where nothing
listens (its replicas are the real ones). New clients still log in, reads
keep working on the replicas, and writes fail fast with SQLSTATE 08006
without ending the session."""
import os
import subprocess
import time

import psycopg

from sgtest import check, check_eq, fail, free_port, run_parts

BASE = int(os.environ["PGTEST_BASE_PORT"])
SHARDGATE = os.environ["SG_SHARDGATE"]
WORK = os.path.dirname(os.environ["SG_CONFIG"])


def test_dead_primary():
    listen, dead = free_port(), free_port()
    cfg = os.path.join(WORK, "dead-primary.yaml")
    with open(cfg, "w") as f:
        f.write("listen: 127.0.0.1:%d\n" % listen)
        f.write("pool: { mode: %s, size: 5 }\n" % os.environ.get("SG_POOL_MODE", "transaction"))
        f.write("auth: { method: trust }\nbackend: { user: postgres, password: postgres }\n")
        f.write("health: { interval: 100ms }\ntimeouts: { connect: 500ms }\n")
        f.write("shards:\n  - name: s0\n    primary: 127.0.0.1:%d\n" % dead)
        f.write("    replicas: [127.0.0.1:%d, 127.0.0.1:%d]\n" % (BASE + 1, BASE + 2))
    log = open(os.path.join(WORK, "dead-primary.log"), "w")
    proxy = subprocess.Popen([SHARDGATE, "-c", cfg], stdout=log, stderr=subprocess.STDOUT)
    try:
        dsn = "host=127.0.0.1 port=%d user=postgres dbname=app connect_timeout=5" % listen
        deadline = time.monotonic() + 10
        while True:
            try:
                conn = psycopg.connect(dsn, autocommit=True)
                break
            except psycopg.OperationalError as e:
                if time.monotonic() > deadline:
                    fail("could not log in through a proxy whose primary is down: %s" % e)
                time.sleep(0.2)
        session = os.environ.get("SG_POOL_MODE") == "session"
        if session:
            # One server connection per session, on the primary: nothing to serve.
            print("  session pooling: login works; statements need the primary")
            conn.close()
            return
        for _ in range(10):
            port, standby = conn.execute("select inet_server_port(), pg_is_in_recovery()").fetchone()
            check(standby and port in (BASE + 1, BASE + 2), "reads on a replica", (port, standby))
        for _ in range(3):
            t0 = time.monotonic()
            try:
                conn.execute("create table sg_never (a int)")
                fail("a write succeeded with no primary")
            except psycopg.Error as e:
                took = time.monotonic() - t0
                check_eq(e.sqlstate, "08006", "SQLSTATE of a write without primary")
                check(took < 1.0, "the write fails fast (< 1 s)", took)
        check_eq(conn.execute("select 41 + 1").fetchone()[0], 42, "the session carries on")
        print("  reads served by replicas; writes refused with 08006 in < 1 s")
        conn.close()
    finally:
        proxy.terminate()
        rc = proxy.wait(10)
        log.close()
        check_eq(rc, 0, "the proxy's exit status")


if __name__ == "__main__":
    run_parts([("dead primary", test_dead_primary)])
