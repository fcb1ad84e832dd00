"""test_lifecycle.py - timeouts, RELOAD/SIGHUP and shutdown of a proxy of its own.

Each part starts its own proxy (on a free port, the runner's cluster behind it):
- timeouts.query: SELECT pg_sleep(5) with query: 1s fails with 57014 after about a second,
  the backend no longer runs it, and the connection goes on working;
- timeouts.idle_in_transaction and timeouts.client_idle close the connection (25P03, 57P05);
- RELOAD with a larger pool.size lets more transactions run at once; a broken file and a
  change that needs a restart are refused with the reason and the running config stays;
  SIGHUP reloads too;
- SIGTERM during a transaction: no new connection is accepted, the transaction commits,
  then the proxy exits 0; SIGINT exits at once (the open transaction is rolled back);
- SHUTDOWN from the admin console stops the proxy as SIGTERM does.
"""
import os
import signal
import sys
import time

import psycopg

sys.path.insert(0, os.path.dirname(__file__))
import sgtest  # noqa: E402

BASE = int(sgtest.env("PGTEST_BASE_PORT"))


def config_text(pool_size=20, timeouts="", extra=""):
    return """workers: 2
pool: { mode: %s, size: %d }
timeouts: { wait: 1s, login: 10s%s }
log: { level: info }
auth: { method: trust }
admin: { users: [postgres] }
backend: { user: postgres, password: postgres }
shards:
  - { name: s0, primary: 127.0.0.1:%d }
%s""" % (sgtest.pool_mode(), pool_size, timeouts, BASE, extra)


class Proxy(sgtest.OwnProxy):
    def __init__(self, name, **kw):
        super().__init__(name, config_text(**kw))

    def rewrite(self, listen_port=None, **kw):
        self.write(config_text(**kw), listen_port=listen_port)


def direct():
    return psycopg.connect("host=127.0.0.1 port=%d user=postgres password=postgres dbname=app"
                           % BASE, autocommit=True)


def sqlstate(e):
    return getattr(getattr(e, "diag", None), "sqlstate", None)


def part_query_timeout():
    p = Proxy("timeout", timeouts=", connect: 500ms, query: 1s")
    try:
        with p.connect() as c:
            t0 = time.monotonic()
            try:
                c.execute("SELECT pg_sleep(5) /* sg-timeout-probe */")
                sgtest.fail("pg_sleep(5) finished despite timeouts.query = 1s")
            except psycopg.Error as e:
                took = time.monotonic() - t0
                sgtest.check_eq(sqlstate(e), "57014", "the timed-out statement's SQLSTATE")
            sgtest.check(took < 3.5, "about 1 s", "%.1f s" % took, "time to 57014")
            sgtest.note("pg_sleep(5) cancelled after %.2f s" % took)
            with direct() as d:
                n = d.execute("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                              "AND query LIKE '%sg-timeout-probe%' AND pid <> pg_backend_pid()"
                              ).fetchone()[0]
            sgtest.check_eq(n, 0, "backends still running the cancelled statement")
            sgtest.check_eq(c.execute("SELECT 41 + 1").fetchone()[0], 42,
                            "the connection after a timeout")
        sgtest.check("query_timeout" in p.log_text(), "a query_timeout log line", "none")
    finally:
        sgtest.check_eq(p.stop(), 0, "the proxy's exit code (and ASan's verdict)")


def part_idle_timeouts():
    p = Proxy("idle", timeouts=", connect: 500ms, query: 1s, client_idle: 3s, "
              "idle_in_transaction: 1s")
    try:
        c = p.connect()
        c.execute("BEGIN")
        c.execute("SELECT 1")
        time.sleep(2.0)
        try:
            c.execute("SELECT 2")
            sgtest.fail("a transaction idle past idle_in_transaction went on")
        except psycopg.Error as e:
            sgtest.check("idle-in-transaction" in str(e), "idle-in-transaction", str(e))
        c.close()
        c = p.connect()
        c.execute("SELECT 1")
        time.sleep(1.5)
        c.execute("SELECT 1")  # activity resets the idle clock
        time.sleep(4.0)
        try:
            c.execute("SELECT 3")
            sgtest.fail("a session idle past client_idle went on")
        except psycopg.Error as e:
            sgtest.check("idle-session" in str(e), "idle-session", str(e))
        c.close()
    finally:
        sgtest.check_eq(p.stop(), 0, "the proxy's exit code (and ASan's verdict)")


def hold_transactions(p, n):
    """Opens n transactions at once; returns how many got a server."""
    conns, got = [], 0
    try:
        for _ in range(n):
            try:
                # Logging in may itself need a server (to learn its parameters).
                c = p.connect()
            except psycopg.Error:
                continue
            conns.append(c)
            try:
                c.execute("BEGIN")
                c.execute("SELECT pg_backend_pid()")
                got += 1
            except psycopg.Error:
                pass
    finally:
        for c in conns:
            try:
                c.execute("ROLLBACK")
            except psycopg.Error:
                pass
            c.close()
    return got


def part_reload():
    if sgtest.pool_mode() != "transaction":
        return  # a session holds its server whatever pool.size says
    p = Proxy("reload", pool_size=2)
    try:
        sgtest.check_eq(hold_transactions(p, 4), 2, "transactions at once with pool.size 2")
        p.rewrite(pool_size=5)
        sgtest.check_eq(p.admin("RELOAD"), "RELOAD", "RELOAD's answer")
        config = "\n".join(r[0] for r in p.admin("SHOW CONFIG"))
        sgtest.check("size 5," in config, "pool size 5 in SHOW CONFIG", config)
        sgtest.check_eq(hold_transactions(p, 4), 4, "transactions at once after RELOAD to 5")
        with open(p.cfg, "w") as f:
            f.write("listen: [unclosed\n")
        try:
            p.admin("RELOAD")
            sgtest.fail("RELOAD of a broken file succeeded")
        except psycopg.Error as e:
            sgtest.check(p.cfg + ":" in str(e) and "YAML" in str(e), "file:line: message", str(e))
        p.rewrite(pool_size=5, listen_port=p.port + 1)
        try:
            p.admin("RELOAD")
            sgtest.fail("RELOAD of a new listen address succeeded")
        except psycopg.Error as e:
            sgtest.check("listen" in str(e) and "restart" in str(e), "needs a restart", str(e))
        config = "\n".join(r[0] for r in p.admin("SHOW CONFIG"))
        sgtest.check("size 5," in config, "the running config kept", config)
        with p.connect() as c:
            sgtest.check_eq(c.execute("SELECT 1").fetchone()[0], 1, "serving after refusals")
        p.rewrite(pool_size=3)
        p.proc.send_signal(signal.SIGHUP)
        for _ in range(50):
            config = "\n".join(r[0] for r in p.admin("SHOW CONFIG"))
            if "size 3," in config:
                break
            time.sleep(0.1)
        sgtest.check("size 3," in config, "pool size 3 after SIGHUP", config)
        sgtest.check_eq(hold_transactions(p, 5), 3, "transactions at once after SIGHUP to 3")
    finally:
        sgtest.check_eq(p.stop(), 0, "the proxy's exit code (and ASan's verdict)")


def part_sigterm():
    with direct() as d:
        d.execute("CREATE TABLE IF NOT EXISTS sg_lifecycle (id int PRIMARY KEY)")
        d.execute("DELETE FROM sg_lifecycle")
    p = Proxy("sigterm", timeouts=", shutdown: 20s")
    c = p.connect()
    c.execute("BEGIN")
    c.execute("INSERT INTO sg_lifecycle VALUES (1)")
    idle = p.connect()
    p.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    sgtest.check(p.proc.poll() is None, "still running", p.proc.poll(),
                 "the proxy while a transaction runs")
    try:
        psycopg.connect(p.dsn(), connect_timeout=2).close()
        sgtest.fail("a new connection was accepted after SIGTERM")
    except psycopg.Error:
        pass
    try:
        idle.execute("SELECT 1")
        sgtest.fail("an idle session went on after SIGTERM")
    except psycopg.Error as e:
        sgtest.check("shutting down" in str(e) or "terminating" in str(e), "57P01", str(e))
    c.execute("INSERT INTO sg_lifecycle VALUES (2)")
    c.execute("COMMIT")
    rc = p.wait(timeout=20)
    sgtest.check_eq(rc, 0, "exit code after SIGTERM")
    with direct() as d:
        n = d.execute("SELECT count(*) FROM sg_lifecycle").fetchone()[0]
    sgtest.check_eq(n, 2, "rows of the transaction that ran through SIGTERM")
    c.close()
    idle.close()

    p = Proxy("sigint")
    c = p.connect()
    c.execute("BEGIN")
    c.execute("INSERT INTO sg_lifecycle VALUES (3)")
    t0 = time.monotonic()
    p.proc.send_signal(signal.SIGINT)
    rc = p.wait(timeout=20)
    sgtest.check_eq(rc, 0, "exit code after SIGINT")
    sgtest.check(time.monotonic() - t0 < 5, "at once", time.monotonic() - t0, "SIGINT exit")
    c.close()
    time.sleep(0.3)
    with direct() as d:
        n = d.execute("SELECT count(*) FROM sg_lifecycle WHERE id = 3").fetchone()[0]
        d.execute("DROP TABLE sg_lifecycle")
    sgtest.check_eq(n, 0, "the transaction open at SIGINT is rolled back")

    p = Proxy("shutdown")
    sgtest.check_eq(p.admin("SHUTDOWN"), "SHUTDOWN", "SHUTDOWN's answer")
    sgtest.check_eq(p.wait(timeout=20), 0, "exit code after SHUTDOWN")


if __name__ == "__main__":
    sgtest.run_parts([("query_timeout", part_query_timeout),
                      ("idle_timeouts", part_idle_timeouts),
                      ("reload", part_reload),
                      ("sigterm", part_sigterm)])
