"""test_transaction_reads.py: where explicit transactions run.

- BEGIN, then SET TRANSACTION READ ONLY as its own statement: the whole
  transaction runs on one replica (the proxy answers BEGIN itself and sends
  it with the next statement, which decides);
- BEGIN then a write: the primary, every statement;
- with transaction_reads: replica_until_write (a second proxy): reads run on
  a replica until the first write, which restarts the transaction on the
  primary; what it wrote is committed; an aborted transaction stays aborted.
"""
import os
import subprocess
import time

import psycopg

from sgtest import check, check_eq, dsn, fail, free_port, run_parts, table_name

BASE = int(os.environ["PGTEST_BASE_PORT"])
PRIMARY, REPLICAS = BASE, {BASE + 1, BASE + 2}
SESSION = os.environ.get("SG_POOL_MODE") == "session"


def port_of(conn):
    return conn.execute("select inet_server_port()").fetchone()[0]


def test_set_transaction_read_only():
    conn = psycopg.connect(dsn(), autocommit=False)  # psycopg sends BEGIN itself
    for _ in range(5):
        conn.execute("set transaction read only")
        ports = {port_of(conn) for _ in range(3)}
        check_eq(len(ports), 1, "one server for the whole transaction")
        expected = {PRIMARY} if SESSION else REPLICAS
        check(ports <= expected, "read-only transaction on %s" % sorted(expected), sorted(ports))
        try:
            conn.execute("create table sg_ro_never (a int)")
            fail("a write succeeded in a READ ONLY transaction")
        except psycopg.errors.ReadOnlySqlTransaction:
            pass
        conn.rollback()
    conn.close()


def test_begin_then_write():
    t = table_name("txr_rw")
    setup = psycopg.connect(dsn(), autocommit=True)
    setup.execute("create table %s (a int)" % t)
    conn = psycopg.connect(dsn(), autocommit=False)
    for i in range(5):
        conn.execute("insert into %s values (%%s)" % t, (i,))
        check_eq(port_of(conn), PRIMARY, "a read after a write in the transaction")
        conn.commit()
    check_eq(conn.execute("select count(*) from %s" % t).fetchone()[0], 5, "rows committed")
    conn.commit()
    conn.close()
    setup.execute("drop table %s" % t)
    setup.close()


def test_replica_until_write():
    if SESSION:
        print("  skipped in session pooling")
        return
    work = os.path.dirname(os.environ["SG_CONFIG"])
    listen = free_port()
    cfg = os.path.join(work, "until-write.yaml")
    with open(cfg, "w") as f:
        f.write("listen: 127.0.0.1:%d\npool: { mode: transaction, size: 5 }\n" % listen)
        f.write("auth: { method: trust }\nbackend: { user: postgres, password: postgres }\n")
        f.write("health: { interval: 100ms }\nlog: { level: debug }\n")
        f.write("routing: { transaction_reads: replica_until_write, read_your_writes_wait: 1s }\n")
        f.write("shards:\n  - name: s0\n    primary: 127.0.0.1:%d\n" % BASE)
        f.write("    replicas: [127.0.0.1:%d, 127.0.0.1:%d]\n" % (BASE + 1, BASE + 2))
    log = open(os.path.join(work, "until-write.log"), "w")
    proxy = subprocess.Popen([os.environ["SG_SHARDGATE"], "-c", cfg], stdout=log,
                             stderr=subprocess.STDOUT)
    t = table_name("txr_uw")
    try:
        other = "host=127.0.0.1 port=%d user=postgres dbname=app" % listen
        deadline = time.monotonic() + 10
        while True:
            try:
                conn = psycopg.connect(other, autocommit=False)
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    fail("the replica_until_write proxy did not start")
                time.sleep(0.1)
        conn.execute("create table %s (a int)" % t)
        conn.commit()
        # The new proxy's monitor must have seen the replicas, and they the table.
        probe = psycopg.connect(other, autocommit=True)
        deadline = time.monotonic() + 10
        while port_of(probe) not in REPLICAS or \
                probe.execute("select to_regclass(%s) is not null", (t,)).fetchone()[0] is False:
            if time.monotonic() > deadline:
                fail("the new proxy sent no read to a replica within 10 s")
            time.sleep(0.1)
        probe.close()
        for i in range(5):
            first = port_of(conn)
            check(first in REPLICAS, "reads before the first write on a replica", first)
            check_eq(port_of(conn), first, "the same replica for the transaction's reads")
            conn.execute("insert into %s values (%%s)" % t, (i,))
            check_eq(port_of(conn), PRIMARY, "after the first write: the primary")
            conn.commit()
        check_eq(conn.execute("select count(*) from %s" % t).fetchone()[0] >= 0, True, "read")
        conn.commit()
        with psycopg.connect(os.environ["PGTEST_DSN"], autocommit=True) as direct:
            check_eq(direct.execute("select count(*) from %s" % t).fetchone()[0], 5,
                     "rows committed through replica_until_write transactions")
        # An aborted transaction stays aborted: no restart on the primary.
        port_of(conn)
        try:
            conn.execute("select 1 / 0")
            fail("division by zero did not fail")
        except psycopg.errors.DivisionByZero:
            pass
        try:
            conn.execute("insert into %s values (99)" % t)
            fail("a write after an error in the transaction succeeded")
        except psycopg.errors.InFailedSqlTransaction:
            pass
        conn.rollback()
        conn.execute("drop table %s" % t)
        conn.commit()
        conn.close()
    finally:
        proxy.terminate()
        rc = proxy.wait(10)
        log.close()
        check_eq(rc, 0, "the replica_until_write proxy's exit status")


if __name__ == "__main__":
    run_parts([
        ("BEGIN then SET TRANSACTION READ ONLY", test_set_transaction_read_only),
        ("BEGIN then a write", test_begin_then_write),
        ("replica_until_write", test_replica_until_write),
    ])
