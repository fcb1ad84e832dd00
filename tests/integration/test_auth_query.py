"""test_auth_query.py - auth.query: verifiers fetched from the primary's pg_authid.

Roles made on the s0 primary, listed nowhere in the proxy's config:
- scram-sha-256: sg_aq_scram (stored as a SCRAM verifier) logs in through the proxy with its
  password, and fails with 28P01 with another, as does a role that does not exist (same
  message); psql and psycopg;
- md5: sg_aq_md5 (stored as an md5 hash) logs in with its password, and not with another;
- a user listed in auth.users still logs in from the config.
"""
import os
import subprocess
import sys

import psycopg

sys.path.insert(0, os.path.dirname(__file__))
import sgtest  # noqa: E402

BASE = int(sgtest.env("PGTEST_BASE_PORT"))
PSQL = "/usr/lib/postgresql/15/bin/psql"
QUERY = "SELECT rolname, rolpassword FROM pg_catalog.pg_authid WHERE rolname = $1"


def direct():
    return psycopg.connect("host=127.0.0.1 port=%d user=postgres password=postgres dbname=app"
                           % BASE, autocommit=True)


def proxy_for(method):
    return sgtest.OwnProxy("authq-" + method, """workers: 2
pool: { mode: %s, size: 5 }
log: { level: info }
auth:
  method: %s
  users: [ { name: sg_aq_listed, password: "listed-pw" } ]
  query: "%s"
backend: { user: postgres, password: postgres, database: app }
shards:
  - { name: s0, primary: 127.0.0.1:%d }
""" % (sgtest.pool_mode(), method, QUERY, BASE))


def login(proxy, user, password):
    return psycopg.connect("host=127.0.0.1 port=%d dbname=app user=%s password=%s "
                           "connect_timeout=5" % (proxy.port, user, password), autocommit=True)


def refused(proxy, user, password):
    try:
        login(proxy, user, password).close()
    except psycopg.OperationalError as e:
        return str(e)
    return None


def main():
    with direct() as d:
        d.execute("DROP ROLE IF EXISTS sg_aq_scram")
        d.execute("DROP ROLE IF EXISTS sg_aq_md5")
        d.execute("SET password_encryption = 'scram-sha-256'")
        d.execute("CREATE ROLE sg_aq_scram LOGIN PASSWORD 'scram-pw'")
        d.execute("SET password_encryption = 'md5'")
        d.execute("CREATE ROLE sg_aq_md5 LOGIN PASSWORD 'md5-pw'")
        d.execute("GRANT CONNECT ON DATABASE app TO sg_aq_scram, sg_aq_md5")
    try:
        p = proxy_for("scram-sha-256")
        try:
            with login(p, "sg_aq_scram", "scram-pw") as c:
                sgtest.check_eq(c.execute("SELECT 1").fetchone()[0], 1, "SCRAM via auth.query")
            wrong = refused(p, "sg_aq_scram", "nope")
            ghost = refused(p, "sg_aq_nobody", "nope")
            sgtest.check(wrong and "28P01" in wrong or "password authentication failed" in
                         (wrong or ""), "28P01 for a wrong password", wrong)
            sgtest.check_eq((ghost or "").replace("sg_aq_nobody", "X"),
                            (wrong or "").replace("sg_aq_scram", "X"),
                            "an unknown user gets the same answer as a wrong password")
            env = dict(os.environ, PGPASSWORD="scram-pw")
            out = subprocess.run([PSQL, "-X", "-At", "-h", "127.0.0.1", "-p", str(p.port), "-U",
                                  "sg_aq_scram", "-d", "app", "-c", "SELECT current_user"],
                                 capture_output=True, text=True, timeout=30, env=env)
            sgtest.check(out.returncode == 0 and out.stdout.strip() == "postgres",
                         "psql logs in (the backend user runs the statements)", out.stdout + out.stderr)
            with login(p, "sg_aq_listed", "listed-pw") as c:
                sgtest.check_eq(c.execute("SELECT 2").fetchone()[0], 2, "a listed user")
        finally:
            sgtest.check_eq(p.stop(), 0, "the scram proxy's exit code")
        p = proxy_for("md5")
        try:
            with login(p, "sg_aq_md5", "md5-pw") as c:
                sgtest.check_eq(c.execute("SELECT 3").fetchone()[0], 3, "md5 via auth.query")
            sgtest.check(refused(p, "sg_aq_md5", "nope"), "md5 with a wrong password refused",
                         None)
        finally:
            sgtest.check_eq(p.stop(), 0, "the md5 proxy's exit code")
    finally:
        with direct() as d:
            d.execute("DROP OWNED BY sg_aq_scram, sg_aq_md5")
            d.execute("DROP ROLE IF EXISTS sg_aq_scram")
            d.execute("DROP ROLE IF EXISTS sg_aq_md5")


if __name__ == "__main__":
    sgtest.run(main)
