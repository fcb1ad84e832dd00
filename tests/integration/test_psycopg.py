"""test_psycopg.py: psycopg 3 through the proxy with prepare_threshold=0, so
every execute uses a named server-side prepared statement (Parse/Bind/Execute
with psycopg's own names _pg3_N, which the proxy renames in transaction
pooling).
"""
import threading
import time
from decimal import Decimal

import psycopg
from psycopg import errors

from sgtest import (Holders, check, check_eq, direct_dsn, dsn, fail, note, pool_mode,
                    run_parts, table_name)

MODE = pool_mode()


def connect(**kw):
    kw.setdefault("prepare_threshold", 0)
    kw.setdefault("autocommit", True)
    kw.setdefault("connect_timeout", 10)
    return psycopg.connect(dsn(), **kw)


def test_repeated_prepared(tables):
    t = table_name("pg_prep")
    tables.append(t)
    conn = connect()
    holders = Holders(conn, connect)
    conn.execute("create table %s (id int primary key, v text)" % t)
    pids = set()
    for i in range(200):
        holders.shuffle()
        kind = i % 5
        if kind == 0:
            r = conn.execute("select %s::int + %s::int, pg_backend_pid()", (i, 1000)).fetchone()
            check_eq(r[0], i + 1000, "iteration %d: sum" % i)
            pids.add(r[1])
        elif kind == 1:
            r = conn.execute("select %s::text || '-x', length(%s::text)", ("v%d" % i, "ab" * i)).fetchone()
            check_eq(r, ("v%d-x" % i, 2 * i), "iteration %d: text" % i)
        elif kind == 2:
            conn.execute("insert into " + t + " (id, v) values (%s, %s)", (i, "row %d" % i))
        elif kind == 3:
            r = conn.execute("select count(*), coalesce(sum(id), 0) from " + t + " where id <= %s",
                             (i,)).fetchone()
            ids = [j for j in range(i + 1) if j % 5 == 2]
            check_eq(r, (len(ids), sum(ids)), "iteration %d: count/sum" % i)
        else:
            r = conn.execute("select v from " + t + " where id = %s", (i - 2,)).fetchone()
            check_eq(r, ("row %d" % (i - 2),), "iteration %d: lookup" % i)
    holders.close()
    # The client's view: psycopg prepared its statements and reused them.
    check(len(conn._prepared._names) >= 5, ">= 5 prepared statements", conn._prepared._names,
          "psycopg's prepared statement cache")
    note("repeated prepared statements: 200 iterations, server pids seen %d" % len(pids))
    if MODE == "transaction":
        check(len(pids) >= 2, ">= 2 different server connections", len(pids),
              "the test should exercise statement renaming across server connections")
    else:
        check_eq(len(pids), 1, "session pooling: one server connection for the session")
    conn.close()


def test_executemany(tables):
    t = table_name("pg_many")
    tables.append(t)
    conn = connect()
    conn.execute("create table %s (id int, name text, amount numeric(12,2))" % t)
    rows = [(i, "name-%d" % i, Decimal(i) / 4) for i in range(1, 1001)]
    with conn.cursor() as cur:
        cur.executemany("insert into " + t + " values (%s, %s, %s)", rows)
    r = conn.execute("select count(*), sum(id), sum(amount), count(distinct name) from " + t).fetchone()
    check_eq(r, (1000, 500500, Decimal(500500) / 4, 1000), "executemany: count/sums")
    # executemany returning rows, in a transaction.
    conn2 = connect(autocommit=False)
    with conn2.cursor() as cur:
        cur.executemany("update " + t + " set amount = amount + %s where id = %s",
                        [(1, i) for i in range(1, 1001, 2)])
        check_eq(cur.rowcount, 500, "executemany update rowcount")
    conn2.commit()
    # Read back on the connection that wrote: read-your-writes is per
    # connection (another connection may read a replica that lags).
    r = conn2.execute("select sum(amount) from " + t).fetchone()[0]
    check_eq(r, Decimal(500500) / 4 + 500, "sum after executemany update")
    conn2.close()
    conn.close()


def test_copy(tables):
    t = table_name("pg_copy")
    tables.append(t)
    conn = connect()
    conn.execute("create table %s (id int, name text, note text)" % t)
    rows = [(i, "n\t%d" % i if i % 100 == 0 else "n%d" % i, None if i % 7 == 0 else "é✓%d" % i)
            for i in range(1, 10001)]
    with conn.cursor() as cur:
        with cur.copy("copy %s (id, name, note) from stdin" % t) as copy:
            for row in rows:
                copy.write_row(row)
        check_eq(cur.rowcount, 10000, "COPY FROM rowcount")
    r = conn.execute("select count(*), sum(id), count(note) from " + t).fetchone()
    check_eq(r, (10000, 50005000, 10000 - 10000 // 7), "after COPY FROM STDIN: count/sum/count(note)")
    back = []
    with conn.cursor() as cur:
        with cur.copy("copy (select id, name, note from %s order by id) to stdout" % t) as copy:
            copy.set_types(["int4", "text", "text"])
            for row in copy.rows():
                back.append(row)
    check_eq(len(back), len(rows), "COPY TO STDOUT row count")
    for a, b in zip(rows, back):
        if a != b:
            fail("COPY TO STDOUT content: expected %r, got %r" % (a, b))
    # Binary COPY in and out too.
    conn.execute("truncate " + t)
    with conn.cursor() as cur:
        with cur.copy("copy %s (id, name, note) from stdin (format binary)" % t) as copy:
            copy.set_types(["int4", "text", "text"])
            for row in rows:
                copy.write_row(row)
    with conn.cursor() as cur:
        with cur.copy("copy (select id, name, note from %s order by id) to stdout (format binary)"
                      % t) as copy:
            copy.set_types(["int4", "text", "text"])
            back = list(copy.rows())
    check(back == rows, "binary COPY round trip equal", "%d rows, first differing: %r" % (
        len(back), next(((a, b) for a, b in zip(rows, back) if a != b), None)))
    # The connection is fine after COPY.
    check_eq(conn.execute("select %s::int", (5,)).fetchone()[0], 5, "query after COPY")
    conn.close()


def test_big_result():
    conn = connect()
    n = 100000
    count = total = 0
    with conn.cursor() as cur:
        for row in cur.stream("select g, g::text, repeat('x', 20) from generate_series(1, %s) g",
                              (n,)):
            count += 1
            total += row[0]
            if row[1] != str(row[0]) or len(row[2]) != 20:
                fail("streamed row %r is wrong" % (row,))
    check_eq((count, total), (n, n * (n + 1) // 2), "streamed generate_series: count, sum")
    # The same, fetched all at once.
    rows = conn.execute("select g, g * 2::bigint from generate_series(1, %s) g", (n,)).fetchall()
    check_eq(len(rows), n, "fetchall row count")
    check_eq(sum(r[1] for r in rows), n * (n + 1), "fetchall sum")
    check(all(rows[i][0] == i + 1 for i in range(n)), "rows in order 1..n", "out of order rows")
    conn.close()


def test_error_in_transaction(tables):
    t = table_name("pg_err")
    tables.append(t)
    conn = connect(autocommit=False)
    conn.execute("create table %s (v int)" % t)
    conn.commit()
    conn.execute("insert into " + t + " values (%s)", (1,))
    try:
        conn.execute("select 1 / %s", (0,))
        fail("division by zero did not raise")
    except errors.DivisionByZero as e:
        check_eq(e.sqlstate, "22012", "SQLSTATE of division by zero")
    check_eq(conn.info.transaction_status, psycopg.pq.TransactionStatus.INERROR,
             "transaction status after the error")
    try:
        conn.execute("select 1")
        fail("a statement in an aborted transaction did not raise")
    except errors.InFailedSqlTransaction:
        pass
    conn.rollback()
    check_eq(conn.info.transaction_status, psycopg.pq.TransactionStatus.IDLE,
             "transaction status after ROLLBACK")
    check_eq(conn.execute("select %s::int * 3", (7,)).fetchone()[0], 21, "query after ROLLBACK")
    check_eq(conn.execute("select count(*) from " + t).fetchone()[0], 0,
             "rows of the rolled back transaction")
    conn.commit()
    # An error outside a transaction (autocommit) leaves the connection usable.
    c2 = connect()
    for i in range(5):
        try:
            c2.execute("select * from no_such_table_%d" % i)
            fail("select from a missing table did not raise")
        except errors.UndefinedTable:
            pass
        check_eq(c2.execute("select %s::int", (i,)).fetchone()[0], i, "query after error %d" % i)
    c2.close()
    conn.close()


def test_named_cursor():
    conn = connect(autocommit=False)
    n, batch = 1000, 128
    got = []
    batches = 0
    with conn.transaction():
        with conn.cursor("sg_named_cursor") as cur:
            cur.execute("select g, md5(g::text) from generate_series(1, %s) g order by g", (n,))
            while True:
                rows = cur.fetchmany(batch)
                if not rows:
                    break
                batches += 1
                check(len(rows) <= batch, "<= %d rows per batch" % batch, len(rows))
                got.extend(rows)
            # The cursor is visible on the server, in this transaction.
            names = [r[0] for r in conn.execute("select name from pg_cursors").fetchall()]
            check("sg_named_cursor" in names, "sg_named_cursor in pg_cursors", names)
    check_eq(len(got), n, "rows fetched through the named cursor")
    check_eq(batches, (n + batch - 1) // batch, "number of batches")
    check(all(got[i][0] == i + 1 for i in range(n)), "rows 1..n in order", got[:3])
    import hashlib
    check(all(r[1] == hashlib.md5(str(r[0]).encode()).hexdigest() for r in got),
          "md5 values right", "a wrong md5 value")
    # Iterating a named cursor (itersize) in a second transaction.
    with conn.transaction():
        with conn.cursor("sg_named_cursor2") as cur:
            cur.itersize = 300
            cur.execute("select g from generate_series(1, 2000) g")
            check_eq(sum(r[0] for r in cur), 2000 * 2001 // 2, "sum over an iterated named cursor")
    conn.commit()
    conn.close()


def test_listen_notify():
    if MODE != "session":
        note("LISTEN/NOTIFY: skipped in %s pooling (LISTEN is session state)" % MODE)
        return
    listener = connect()
    got = []
    listener.add_notify_handler(lambda n: got.append(n))
    listener.execute("listen sg_test_channel")
    lpid = listener.execute("select pg_backend_pid()").fetchone()[0]
    sender = connect()
    spid = sender.execute("select pg_backend_pid()").fetchone()[0]
    sender.execute("select pg_notify('sg_test_channel', %s)", ("hello 1",))
    sender.execute("notify sg_test_channel, 'hello 2'")
    deadline = time.monotonic() + 5
    while len(got) < 2 and time.monotonic() < deadline:
        listener.execute("select 1")
        time.sleep(0.05)
    check_eq([(n.channel, n.payload, n.pid) for n in got],
             [("sg_test_channel", "hello 1", spid), ("sg_test_channel", "hello 2", spid)],
             "notifications received")
    check(lpid != spid, "listener and sender on different backends", (lpid, spid))
    # Notifications arriving while the listener is idle, read by notifies().
    got2 = []

    def wait_one():
        for n in listener.notifies():
            got2.append(n)
            break

    th = threading.Thread(target=wait_one, daemon=True)
    th.start()
    time.sleep(0.3)
    sender.execute("notify sg_test_channel, 'idle'")
    th.join(5)
    check(not th.is_alive(), "notifies() returns the notification within 5 s",
          "still waiting (the proxy did not relay a NotificationResponse to an idle client)")
    check_eq([(n.channel, n.payload) for n in got2], [("sg_test_channel", "idle")],
             "notification delivered to an idle listener")
    listener.close()
    # The session state is not leaked: the next client is not listening.
    c = connect()
    r = c.execute("select count(*) from pg_listening_channels()").fetchone()[0]
    check_eq(r, 0, "channels listened to by a new client")
    c.close()
    sender.close()


def test_reported_parameters():
    direct = psycopg.connect(direct_dsn(), autocommit=True)
    default_tz = direct.execute("show timezone").fetchone()[0]
    direct.close()
    conn = connect()
    holders = Holders(conn, connect)
    check(default_tz != "Asia/Tokyo", "server default timezone not Asia/Tokyo", default_tz)
    conn.execute("set timezone = 'Asia/Tokyo'")
    conn.execute("set application_name = 'sg-test-app'")
    conn.execute("set datestyle = 'German, DMY'")
    conn.execute("set intervalstyle = 'iso_8601'")
    check_eq(conn.info.parameter_status("TimeZone"), "Asia/Tokyo", "ParameterStatus TimeZone")
    check_eq(conn.info.parameter_status("application_name"), "sg-test-app",
             "ParameterStatus application_name")
    pids = set()
    # 40 statements, more while they have all landed on one server connection
    # (which one serves a client depends on timing: the holders push it on).
    for i in range(200):
        if i >= 40 and (len(pids) >= 2 or MODE != "transaction"):
            break
        holders.shuffle()
        if i % 4 == 0:
            r = conn.execute("show timezone").fetchone()[0]
            check_eq(r, "Asia/Tokyo", "statement %d: show timezone" % i)
        elif i % 4 == 1:
            r = conn.execute("select current_setting('application_name'), pg_backend_pid()").fetchone()
            check_eq(r[0], "sg-test-app", "statement %d: application_name" % i)
            pids.add(r[1])
        elif i % 4 == 2:
            r = conn.execute("select %s::date::text, '1 day 2 hours'::interval::text, pg_backend_pid()",
                             ("2024-01-02",)).fetchone()
            check_eq(r[:2], ("02.01.2024", "P1DT2H"), "statement %d: DateStyle/IntervalStyle" % i)
            pids.add(r[2])
        else:
            r = conn.execute("select to_char(%s::timestamptz, 'HH24:MI TZ'), pg_backend_pid()",
                             ("2024-01-02 00:00:00+00",)).fetchone()
            check_eq(r[0], "09:00 JST", "statement %d: timestamptz shown in Asia/Tokyo" % i)
            pids.add(r[1])
    if MODE == "transaction":
        check(len(pids) >= 2, ">= 2 server connections used", len(pids),
              "replay of reported parameters should be exercised on several servers")
    # SET LOCAL lasts only for its transaction.
    conn.execute("begin")
    conn.execute("set local timezone = 'UTC'")
    check_eq(conn.execute("show timezone").fetchone()[0], "UTC", "SET LOCAL inside the transaction")
    conn.execute("commit")
    for i in range(6):
        holders.shuffle()
        check_eq(conn.execute("show timezone").fetchone()[0], "Asia/Tokyo",
                 "timezone after a SET LOCAL transaction committed (%d)" % i)
    # A SET in a rolled back transaction is undone.
    conn.execute("begin")
    conn.execute("set timezone = 'Europe/Paris'")
    conn.execute("rollback")
    for i in range(6):
        holders.shuffle()
        check_eq(conn.execute("show timezone").fetchone()[0], "Asia/Tokyo",
                 "timezone after a rolled back SET (%d)" % i)
    check_eq(conn.info.parameter_status("TimeZone"), "Asia/Tokyo",
             "ParameterStatus TimeZone after the rolled back SET")
    # Other clients do not see this client's settings.
    for i in range(10):
        other = connect()
        r = other.execute("select current_setting('TimeZone'), current_setting('application_name'),"
                          " current_setting('DateStyle')").fetchone()
        check(r[0] == default_tz and r[1] != "sg-test-app" and r[2] != "German, DMY",
              "defaults (%s, not sg-test-app, not German)" % default_tz, r,
              "settings seen by another client %d" % i)
        other.close()
    # RESET goes back to the default.
    conn.execute("reset timezone")
    for i in range(4):
        holders.shuffle()
        check_eq(conn.execute("show timezone").fetchone()[0], default_tz, "timezone after RESET")
    # A parameter given at connect time is kept too.
    c3 = connect(options="-c TimeZone=America/New_York", application_name="sg-startup")
    for i in range(6):
        holders.shuffle()
        r = c3.execute("select current_setting('TimeZone'), current_setting('application_name')").fetchone()
        check_eq(r, ("America/New_York", "sg-startup"), "startup parameters (%d)" % i)
    c3.close()
    holders.close()
    conn.close()


def test_threads():
    errors_seen = []
    results = {}
    queries = [
        ("select %s::int * 2, %s::text", lambda k, i: (k * 1000 + i, "t%d" % k),
         lambda k, i: (2 * (k * 1000 + i), "t%d" % k)),
        ("select %s::bigint + 1", lambda k, i: (i,), lambda k, i: (i + 1,)),
        ("select upper(%s::text), %s::int", lambda k, i: ("abc%d" % i, k),
         lambda k, i: ("ABC%d" % i, k)),
        ("select array_length(%s::int[], 1)", lambda k, i: ([1] * (i % 7 + 1),),
         lambda k, i: (i % 7 + 1,)),
    ]

    def worker(k):
        try:
            c = connect()
            # Each thread prepares the statements in a different order, so
            # psycopg's names (_pg3_0, _pg3_1, ...) mean different statements
            # on different client connections.
            order = queries[k % 4:] + queries[:k % 4]
            ok = 0
            for i in range(50):
                sql, args, want = order[i % len(order)]
                r = c.execute(sql, args(k, i)).fetchone()
                if r != want(k, i):
                    errors_seen.append("thread %d query %d (%s): expected %r, got %r"
                                       % (k, i, sql, want(k, i), r))
                    return
                ok += 1
            results[k] = ok
            c.close()
        except Exception as e:  # noqa
            errors_seen.append("thread %d: %s: %s" % (k, type(e).__name__, e))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(10)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    if errors_seen:
        fail("concurrent prepared statements: " + "; ".join(errors_seen[:5]))
    check_eq(sum(results.values()), 500, "queries answered correctly by 10 threads")


TABLES = []


def cleanup():
    with psycopg.connect(direct_dsn(), autocommit=True) as c:
        for t in TABLES:
            c.execute("drop table if exists " + t)


run_parts([
    ("repeated prepared statements", lambda: test_repeated_prepared(TABLES)),
    ("executemany", lambda: test_executemany(TABLES)),
    ("copy", lambda: test_copy(TABLES)),
    ("big result", test_big_result),
    ("error in transaction", lambda: test_error_in_transaction(TABLES)),
    ("named cursor", test_named_cursor),
    ("listen/notify", test_listen_notify),
    ("reported parameters", test_reported_parameters),
    ("threads", test_threads),
], cleanup)
