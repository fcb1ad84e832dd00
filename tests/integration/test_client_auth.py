"""test_client_auth.py: clients prove their password to the proxy.

Proxies are started with auth.method scram-sha-256 (the user's secret
given as a plain password, or as the SCRAM verifier PostgreSQL itself
stores) and md5 (a plain password, or an md5 hash). psql, psycopg and
asyncpg log in with the right password; a wrong password and an unknown
user both get 28P01 with the same message."""
import asyncio
import os
import subprocess
import time

import asyncpg
import psycopg

from sgtest import check, check_eq, direct_dsn, fail, free_port, run_parts

SHARDGATE = os.environ["SG_SHARDGATE"]
WORK = os.path.dirname(os.environ["SG_CONFIG"])
BASE = int(os.environ["PGTEST_BASE_PORT"])


def start_proxy(name, method, users):
    port = free_port()
    cfg = os.path.join(WORK, "client-auth-%s.yaml" % name)
    with open(cfg, "w") as f:
        f.write("listen: 127.0.0.1:%d\nworkers: 1\npool: { mode: transaction, size: 4 }\n" % port)
        f.write("auth:\n  method: %s\n  users:\n" % method)
        for user, password in users:
            f.write("    - { name: %s, password: '%s' }\n" % (user, password))
        f.write("backend: { user: postgres, password: postgres }\n")
        f.write("shards:\n  - name: s0\n    primary: 127.0.0.1:%d\n" % BASE)
    log = open(os.path.join(WORK, "client-auth-%s.log" % name), "w")
    proc = subprocess.Popen([SHARDGATE, "-c", cfg], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(port)]).returncode == 2:
        if time.monotonic() > deadline:
            fail("proxy %s did not start" % name)
        time.sleep(0.1)
    return proc, port, log


def stop_proxy(proc, log):
    proc.terminate()
    rc = proc.wait(10)
    log.close()
    check_eq(rc, 0, "the proxy's exit status")


def dsn_for(port, user, password):
    return "host=127.0.0.1 port=%d user=%s password=%s dbname=app" % (port, user, password)


def login_psycopg(port, user, password):
    with psycopg.connect(dsn_for(port, user, password), autocommit=True) as c:
        return c.execute("select 6 * 7").fetchone()[0]


async def login_asyncpg(port, user, password):
    c = await asyncpg.connect(host="127.0.0.1", port=port, user=user, password=password,
                              database="app")
    try:
        return await c.fetchval("select 6 * 7")
    finally:
        await c.close()


def login_psql(port, user, password):
    env = dict(os.environ, PGPASSWORD=password)
    r = subprocess.run(["psql", "-XAt", "-h", "127.0.0.1", "-p", str(port), "-U", user, "-d", "app",
                        "-c", "select 6 * 7"], env=env, capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else r.stderr


def expect_refused(port, user, password, what):
    try:
        login_psycopg(port, user, password)
        fail("%s: login succeeded" % what)
    except psycopg.OperationalError as e:
        msg = str(e)
        check("password authentication failed for user \"%s\"" % user in msg,
              "28P01 message for %s" % what, msg)
    try:
        asyncio.run(login_asyncpg(port, user, password))
        fail("%s: asyncpg login succeeded" % what)
    except asyncpg.InvalidPasswordError:
        pass
    out = login_psql(port, user, password)
    check("password authentication failed" in out, "psql refused for %s" % what, out)


def check_method(name, method, users, user, password):
    proc, port, log = start_proxy(name, method, users)
    try:
        check_eq(login_psycopg(port, user, password), 42, "%s: psycopg login" % name)
        check_eq(asyncio.run(login_asyncpg(port, user, password)), 42, "%s: asyncpg login" % name)
        check_eq(login_psql(port, user, password), "42", "%s: psql login" % name)
        expect_refused(port, user, password + "x", "%s, wrong password" % name)
        expect_refused(port, "nosuchuser", password, "%s, unknown user" % name)
        print("  %s: right password accepted by psycopg, asyncpg and psql; wrong password and "
              "unknown user refused with 28P01" % name)
    finally:
        stop_proxy(proc, log)


def test_scram_plain_password():
    check_method("scram-plain", "scram-sha-256", [("postgres", "s3cret")], "postgres", "s3cret")


def test_scram_stored_verifier():
    with psycopg.connect(direct_dsn(), autocommit=True) as c:
        verifier = c.execute("select rolpassword from pg_authid where rolname = 'postgres'").fetchone()[0]
    check(verifier.startswith("SCRAM-SHA-256$"), "a SCRAM verifier in pg_authid", verifier[:20])
    check_method("scram-verifier", "scram-sha-256", [("postgres", verifier)], "postgres", "postgres")


def test_md5():
    check_method("md5-plain", "md5", [("postgres", "m5pass")], "postgres", "m5pass")
    with psycopg.connect(direct_dsn(), autocommit=True) as c:
        stored = c.execute("select rolpassword from pg_authid where rolname = 'md5user'").fetchone()[0]
    check(stored.startswith("md5"), "an md5 hash in pg_authid", stored[:5])
    check_method("md5-hash", "md5", [("md5user", stored)], "md5user", "md5pass")


def test_passwd_verifier():
    r = subprocess.run([SHARDGATE, "passwd", "alice"], input="wonder-land9\n", capture_output=True,
                       text=True)
    check_eq(r.returncode, 0, "shardgate passwd exit status")
    line = r.stdout.strip()
    check(line.startswith('- { name: alice, password: "SCRAM-SHA-256$4096:'),
          "an auth.users entry with a SCRAM verifier", line)
    verifier = line.split('"')[1]
    check("wonder" not in line, "the password itself is not printed", line)
    check_method("passwd", "scram-sha-256", [("alice", verifier)], "alice", "wonder-land9")


if __name__ == "__main__":
    run_parts([
        ("shardgate passwd makes a verifier that logs in", test_passwd_verifier),
        ("scram-sha-256 with a plain password", test_scram_plain_password),
        ("scram-sha-256 with PostgreSQL's verifier", test_scram_stored_verifier),
        ("md5", test_md5),
    ])
