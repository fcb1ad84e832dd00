"""test_rw_split.py: read/write splitting through the proxy, judged by where
each statement ran (inet_server_port() and pg_is_in_recovery()).

- reads spread over both replicas, none on the primary;
- every kind of write, locking clause, data-modifying CTE, writing function
  and every statement of a read-write transaction runs on the primary;
  BEGIN READ ONLY runs on a replica;
- a replica whose replay is paused stops getting reads, and gets them again
  once it has caught up; with both paused, reads go to the primary;
- read-your-writes: a read right after the same connection's write always
  sees it, and is still mostly served by replicas.

In session pooling every statement runs on the primary (documented), which
is what this test checks there.
"""
import os
import time

import psycopg

from sgtest import check, check_eq, direct_dsn, dsn, fail, run_parts, table_name

BASE = int(os.environ["PGTEST_BASE_PORT"])
PRIMARY, R1, R2 = BASE, BASE + 1, BASE + 2
SESSION = os.environ.get("SG_POOL_MODE") == "session"


def connect(autocommit=True):
    return psycopg.connect(dsn(), autocommit=autocommit)


def replica_dsn(port):
    return direct_dsn().replace("port=%d" % BASE, "port=%d" % port)


def where(conn, sql, params=None):
    """Runs sql (which must return inet_server_port() first) and returns the port."""
    return conn.execute(sql, params).fetchone()[0]


def wait_replicas_serving(conn, timeout=10):
    """Waits until both replicas take reads again (after a part that made
    them lag: eligibility comes back below half of the lag bounds)."""
    if SESSION:
        return
    deadline = time.monotonic() + timeout
    while not {R1, R2} <= set(read_ports(conn, 10)):
        if time.monotonic() > deadline:
            fail("the replicas did not take reads within %d s" % timeout)
        time.sleep(0.05)


def test_reads_spread_over_replicas():
    conn = connect(autocommit=True)
    wait_replicas_serving(conn)
    counts = {PRIMARY: 0, R1: 0, R2: 0}
    for _ in range(200):
        port, in_recovery = conn.execute("select inet_server_port(), pg_is_in_recovery()").fetchone()
        counts[port] += 1
        check_eq(in_recovery, port != PRIMARY, "pg_is_in_recovery() agrees with the port")
    print("  200 reads: primary %d, replica1 %d, replica2 %d" % (counts[PRIMARY], counts[R1], counts[R2]))
    if SESSION:
        check_eq(counts[PRIMARY], 200, "session pooling: every read on the primary")
        return
    check_eq(counts[PRIMARY], 0, "reads on the primary")
    for r in (R1, R2):
        check(60 <= counts[r] <= 140, "each replica takes 30-70% of the reads", counts)
    conn.close()


def test_writes_go_to_primary():
    t = table_name("rw_writes")
    conn = connect(autocommit=True)
    conn.execute("create table %s (id int primary key, v int)" % t)
    conn.execute("create sequence %s_seq" % t)
    conn.execute("create or replace function %s_fn() returns int language sql volatile "
                 "as 'select inet_server_port()'" % t)
    try:
        statements = [
            "insert into {t} values (1, 1), (2, 2) returning inet_server_port()",
            "update {t} set v = v + 1 where id = 1 returning inet_server_port()",
            "delete from {t} where id = 2 returning inet_server_port()",
            "with x as (update {t} set v = v + 1 where id = 1 returning id) "
            "select inet_server_port() from x",
            "with x as (select 1) select inet_server_port() from (select * from {t} for update) s",
            "select inet_server_port() from {t} for update",
            "select inet_server_port() from {t} for no key update",
            "select inet_server_port() from {t} for share",
            "select inet_server_port() from {t} for key share",
            "select inet_server_port() from {t} where id in (select id from {t} for update)",
            "select inet_server_port(), nextval('{t}_seq')",
            "select {t}_fn()",
            "/* a leading comment */ select inet_server_port() from {t} for update",
            "/* shardgate: primary */ select inet_server_port()",
        ]
        for sql in statements:
            sql = sql.format(t=t)
            port = where(conn, sql)
            check_eq(port, PRIMARY, "ran on the primary: " + sql)
        # Every statement of a read-write transaction, reads included.
        tx = connect(autocommit=False)
        for _ in range(5):
            check_eq(where(tx, "select inet_server_port()"), PRIMARY, "read inside a transaction")
            check_eq(where(tx, "update %s set v = v + 1 where id = 1 returning inet_server_port()" % t),
                     PRIMARY, "write inside a transaction")
            check_eq(where(tx, "select inet_server_port()"), PRIMARY, "read after a write in a transaction")
            tx.commit()
        tx.close()
        # BEGIN READ ONLY: a replica, for the whole transaction.
        ro = connect(autocommit=True)
        wait_replicas_serving(ro)
        for _ in range(4):
            with ro.transaction():
                ro.execute("set transaction read only")
                ports = {where(ro, "select inet_server_port()") for _ in range(3)}
            check_eq(len(ports), 1, "a transaction stays on one server")
        ports = set()
        for _ in range(6):
            cur = ro.execute("begin read only; select inet_server_port(); commit")
            cur.nextset()
            ports.add(cur.fetchone()[0])
        expected = {PRIMARY} if SESSION else {R1, R2}
        check(ports <= expected, "BEGIN READ ONLY runs on %s" % sorted(expected), sorted(ports))
        ro.close()
    finally:
        conn.execute("drop function %s_fn()" % t)
        conn.execute("drop sequence %s_seq" % t)
        conn.execute("drop table %s" % t)
        conn.close()


def pause(port, paused):
    with psycopg.connect(replica_dsn(port), autocommit=True) as c:
        c.execute("select pg_wal_replay_pause()" if paused else "select pg_wal_replay_resume()")


def generate_wal(megabytes):
    with psycopg.connect(direct_dsn(), autocommit=True) as c:
        t = table_name("rw_wal")
        c.execute("create table %s (pad text)" % t)
        c.execute("insert into %s select repeat('x', 1000) from generate_series(1, %d)"
                  % (t, megabytes * 1000))
        c.execute("drop table %s" % t)


def read_ports(conn, n):
    return [conn.execute("select inet_server_port()").fetchone()[0] for _ in range(n)]


def test_lagging_replica_is_skipped():
    if SESSION:
        print("  skipped in session pooling (no splitting)")
        return
    conn = connect(autocommit=True)
    wait_replicas_serving(conn)
    try:
        pause(R1, True)
        generate_wal(3)
        start = time.monotonic()
        while True:
            ports = read_ports(conn, 20)
            if R1 not in ports:
                break
            if time.monotonic() - start > 3:
                fail("replica with paused replay still gets reads after 3 s: %s" % ports)
            time.sleep(0.05)
        print("  lagging replica skipped after %.2f s" % (time.monotonic() - start))
        check(time.monotonic() - start < 1.5, "skipped within about 1 s", time.monotonic() - start)
        # The other replica replays the same burst of WAL: it may lag past
        # max_replica_lag for a moment too (then reads go to the primary).
        start = time.monotonic()
        while R2 not in read_ports(conn, 5) and time.monotonic() - start < 3:
            time.sleep(0.05)
        ports = read_ports(conn, 40)
        check(set(ports) == {R2}, "reads go to the other replica only (port %d)" % R2, ports)
        pause(R2, True)
        generate_wal(3)
        start = time.monotonic()
        while PRIMARY not in read_ports(conn, 10):
            if time.monotonic() - start > 3:
                fail("with both replicas lagging, reads did not move to the primary")
            time.sleep(0.05)
        check_eq(set(read_ports(conn, 20)), {PRIMARY}, "both replicas lagging: reads on the primary")
        pause(R1, False)
        pause(R2, False)
        start = time.monotonic()
        while not {R1, R2} <= set(read_ports(conn, 20)):
            if time.monotonic() - start > 5:
                fail("caught-up replicas did not get reads back within 5 s")
            time.sleep(0.05)
        print("  caught-up replicas back after %.2f s" % (time.monotonic() - start))
        check(time.monotonic() - start < 2.0, "back within about 1 s", time.monotonic() - start)
    finally:
        pause(R1, False)
        pause(R2, False)
        conn.close()


def test_read_your_writes():
    t = table_name("rw_ryw")
    conn = connect(autocommit=True)
    conn.execute("create table %s (id int primary key)" % t)
    try:
        if not SESSION:
            pause(R1, True)
            pause(R2, True)
        misses = 0
        for i in range(1000):
            conn.execute("insert into %s values (%%s)" % t, (i,))
            if conn.execute("select count(*) from %s where id = %%s" % t, (i,)).fetchone()[0] != 1:
                misses += 1
        check_eq(misses, 0, "reads that missed the row just written (replicas paused)")
        if not SESSION:
            pause(R1, False)
            pause(R2, False)
            wait_replicas_serving(conn)
        on_replica = 0
        for i in range(1000, 1300):
            conn.execute("insert into %s values (%%s)" % t, (i,))
            n, port = conn.execute("select count(*), inet_server_port() from %s where id = %%s" % t,
                                   (i,)).fetchone()
            check_eq(n, 1, "the row just written is read back")
            on_replica += port != PRIMARY
        print("  read-your-writes with replay running: %d of 300 reads on replicas" % on_replica)
        if not SESSION:
            check(on_replica > 150, "most reads after writes served by replicas", on_replica)
    finally:
        if not SESSION:
            pause(R1, False)
            pause(R2, False)
        conn.execute("drop table %s" % t)
        conn.close()


def main():
    run_parts([
        ("reads spread over replicas", test_reads_spread_over_replicas),
        ("writes go to the primary", test_writes_go_to_primary),
        ("lagging replica is skipped", test_lagging_replica_is_skipped),
        ("read your writes", test_read_your_writes),
    ])


if __name__ == "__main__":
    main()
