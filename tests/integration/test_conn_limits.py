"""test_conn_limits.py: max_user_conn and max_db_conn.

A proxy with max_user_conn 2 and max_db_conn 3: a third connection of one
user gets 53300 naming the role, a fourth to one database 53300 naming the
database; other users and databases are unaffected; a closed connection
frees its place."""
import os
import subprocess
import time

import psycopg

from sgtest import check, check_eq, fail, free_port, run_parts

BASE = int(os.environ["PGTEST_BASE_PORT"])


def test_limits():
    work = os.path.dirname(os.environ["SG_CONFIG"])
    port = free_port()
    cfg = os.path.join(work, "conn-limits.yaml")
    with open(cfg, "w") as f:
        f.write("listen: 127.0.0.1:%d\nworkers: 2\nmax_user_conn: 2\nmax_db_conn: 3\n" % port)
        f.write("auth: { method: trust }\nbackend: { user: postgres, password: postgres }\n")
        f.write("shards:\n  - name: s0\n    primary: 127.0.0.1:%d\n" % BASE)
    log = open(os.path.join(work, "conn-limits.log"), "w")
    proc = subprocess.Popen([os.environ["SG_SHARDGATE"], "-c", cfg], stdout=log,
                            stderr=subprocess.STDOUT)
    conns = []
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(port)]).returncode == 2:
            if time.monotonic() > deadline:
                fail("the proxy did not start")
            time.sleep(0.1)

        def connect(user, db="app"):
            return psycopg.connect("host=127.0.0.1 port=%d user=%s dbname=%s" % (port, user, db),
                                   autocommit=True)

        def refused(user, db, fragment):
            try:
                connect(user, db).close()
                fail("connection of %s to %s was not refused" % (user, db))
            except psycopg.OperationalError as e:
                check(fragment in str(e), "53300 mentioning %s" % fragment, str(e))

        conns += [connect("postgres"), connect("postgres")]
        refused("postgres", "app", 'too many connections for role "postgres"')
        conns.append(connect("trustuser"))  # another user, same database: 3rd on app
        refused("pwuser", "app", 'too many connections for database "app"')
        other = connect("trustuser", "postgres")  # another database
        check_eq(other.execute("select 1").fetchone()[0], 1, "another database still works")
        other.close()
        conns.pop(0).close()
        time.sleep(0.2)
        c = connect("postgres")
        check_eq(c.execute("select 2").fetchone()[0], 2, "a freed place can be taken")
        conns.append(c)
        print("  max_user_conn and max_db_conn enforced with 53300; freed places reused")
    finally:
        for c in conns:
            c.close()
        proc.terminate()
        rc = proc.wait(10)
        log.close()
        check_eq(rc, 0, "the proxy's exit status")


if __name__ == "__main__":
    run_parts([("per-user and per-database limits", test_limits)])
