"""test_cancel.py: query cancellation through the proxy.

libpq's cancel (psycopg's conn.cancel()) opens a new connection and sends a
CancelRequest with the BackendKeyData the proxy gave at login; the proxy must
cancel the query running for that client, and nothing else.
"""
import random
import socket
import struct
import threading
import time

import psycopg
from psycopg import errors

from sgtest import check, check_eq, dsn, fail, host, note, pool_mode, port, run_parts

MODE = pool_mode()
CANCEL_CODE = 80877102


def connect(**kw):
    kw.setdefault("autocommit", True)
    kw.setdefault("connect_timeout", 10)
    return psycopg.connect(dsn(), **kw)


def worker_of(conn):
    # The proxy puts its worker number in the top byte of the process id.
    return conn.info.backend_pid >> 24


def cancel_later(conn, delay, box):
    def go():
        time.sleep(delay)
        box["sent"] = time.monotonic()
        try:
            conn.cancel()
        except Exception as e:  # noqa
            box["error"] = e
        box["returned"] = time.monotonic()
    th = threading.Thread(target=go, daemon=True)
    th.start()
    return th


def expect_canceled(conn, sql, what, simple=False):
    box = {}
    th = cancel_later(conn, 0.5, box)
    t0 = time.monotonic()
    try:
        if simple:
            # ClientCursor sends a parameterless statement as a simple Query.
            psycopg.ClientCursor(conn).execute(sql)
        else:
            conn.execute(sql)
        fail("%s: the query was not canceled (ran %.2fs)" % (what, time.monotonic() - t0))
    except errors.QueryCanceled as e:
        t1 = time.monotonic()
        check_eq(e.sqlstate, "57014", "%s: SQLSTATE" % what)
    th.join(5)
    if "error" in box:
        fail("%s: conn.cancel() raised %r" % (what, box["error"]))
    check("sent" in box, "cancel sent", box)
    latency = t1 - box["sent"]
    note("%s: canceled %.3fs after the cancel request (query ran %.3fs)" % (what, latency, t1 - t0))
    check(latency < 2.0, "cancel latency < 2 s", "%.3fs" % latency, what)


def part_cancel():
    conn = connect()
    expect_canceled(conn, "select pg_sleep(10)", "autocommit pg_sleep(10)")
    # The same connection still works, and is not in a transaction.
    check_eq(conn.execute("select 1 + 1").fetchone()[0], 2, "query after the cancel")
    check_eq(conn.info.transaction_status, psycopg.pq.TransactionStatus.IDLE, "status after cancel")
    # Again (a second cancel on the same connection works too).
    expect_canceled(conn, "select pg_sleep(10)", "second cancel")
    check_eq(conn.execute("select 'still here'").fetchone()[0], "still here", "query after 2nd cancel")
    # A simple-protocol Query, then a server-side prepared statement.
    expect_canceled(conn, "select pg_sleep(10)", "simple query", simple=True)
    c2 = connect(prepare_threshold=0)
    box = {}
    th = cancel_later(c2, 0.5, box)
    t0 = time.monotonic()
    try:
        c2.execute("select pg_sleep(%s::float8)", (10,))
        fail("prepared pg_sleep was not canceled")
    except errors.QueryCanceled:
        note("prepared statement canceled after %.3fs" % (time.monotonic() - t0))
        check(time.monotonic() - box.get("sent", 0) < 2.0, "< 2 s", time.monotonic() - box["sent"],
              "cancel latency of a prepared statement")
    th.join(5)
    check_eq(c2.execute("select %s::int", (3,)).fetchone()[0], 3, "prepared query after the cancel")
    c2.close()
    conn.close()


def part_cancel_in_transaction():
    conn = connect(autocommit=False)
    conn.execute("select 1")
    expect_canceled(conn, "select pg_sleep(10)", "pg_sleep in a transaction")
    check_eq(conn.info.transaction_status, psycopg.pq.TransactionStatus.INERROR,
             "transaction status after a cancel in a transaction")
    conn.rollback()
    check_eq(conn.execute("select 5").fetchone()[0], 5, "query after cancel + rollback")
    conn.commit()
    conn.close()


def send_cancel(pid, key):
    """A hand-made CancelRequest; returns what the proxy answered (bytes
    before it closed the connection) or raises on a timeout."""
    s = socket.create_connection((host(), port()), timeout=5)
    try:
        s.sendall(struct.pack("!IIII", 16, CANCEL_CODE, pid, key))
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return data
            data += chunk
    finally:
        s.close()


def part_wrong_key():
    conn = connect()
    pid = conn.info.backend_pid
    result = {}

    def run_query():
        t0 = time.monotonic()
        try:
            result["value"] = conn.execute("select pg_sleep(1), 'done'").fetchone()[1]
        except Exception as e:  # noqa
            result["error"] = e
        result["took"] = time.monotonic() - t0

    th = threading.Thread(target=run_query, daemon=True)
    th.start()
    time.sleep(0.3)
    # Wrong keys for the right process id, and an unknown process id.
    for _ in range(3):
        try:
            answer = send_cancel(pid, random.getrandbits(32))
        except socket.timeout:
            fail("the proxy did not close a CancelRequest connection within 5 s")
        check_eq(answer, b"", "the proxy's answer to a CancelRequest (PostgreSQL sends nothing)")
    send_cancel((pid ^ 0x00ABCDEF) or 1, random.getrandbits(32))
    send_cancel(0xFFFFFFFF, 0)
    th.join(10)
    check(not th.is_alive(), "pg_sleep(1) finished", "still running after 10 s")
    if "error" in result:
        fail("a cancel with a wrong key canceled the query: %r" % result["error"])
    check_eq(result.get("value"), "done", "result of pg_sleep(1) after wrong-key cancels")
    check(result["took"] >= 0.9, ">= 0.9 s", result["took"], "pg_sleep(1) ran in full")
    note("pg_sleep(1) with wrong-key cancels: completed in %.2fs" % result["took"])
    conn.close()


def part_cancel_idle():
    """A cancel for a client that runs nothing must not cancel anything,
    neither that client's next query nor another client's query."""
    a = connect()
    for _ in range(40):
        b = connect()
        if worker_of(b) == worker_of(a):
            break
        b.close()
    else:
        fail("could not get two clients on the same proxy worker")
    a.execute("select 1")  # in transaction pooling its server is now idle
    result = {}

    def run_b():
        try:
            result["b"] = b.execute("select pg_sleep(1), 'b done'").fetchone()[1]
        except Exception as e:  # noqa
            result["b"] = e

    th = threading.Thread(target=run_b, daemon=True)
    th.start()
    time.sleep(0.3)
    a.cancel()
    th.join(10)
    check_eq(result.get("b"), "b done", "another client's query after an idle client's cancel")
    time.sleep(0.2)
    check_eq(a.execute("select pg_sleep(0.3), 'a done'").fetchone()[1], "a done",
             "the idle client's next query after its own cancel")
    a.close()
    b.close()


def part_many_cancels():
    """Several clients, each canceled, at once."""
    conns = [connect() for _ in range(5)]
    out = [None] * len(conns)

    def run(i):
        t0 = time.monotonic()
        try:
            conns[i].execute("select pg_sleep(10)")
            out[i] = "not canceled"
        except errors.QueryCanceled:
            out[i] = time.monotonic() - t0
        except Exception as e:  # noqa
            out[i] = repr(e)

    ths = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(conns))]
    for th in ths:
        th.start()
    time.sleep(0.5)
    for c in conns:
        c.cancel()
    for th in ths:
        th.join(10)
    for i, r in enumerate(out):
        check(isinstance(r, float) and r < 3.0, "canceled within 3 s", r, "client %d" % i)
    for i, c in enumerate(conns):
        check_eq(c.execute("select %d" % i).fetchone()[0], i, "client %d after the cancel" % i)
        c.close()


run_parts([
    ("cancel a running query", part_cancel),
    ("cancel inside a transaction", part_cancel_in_transaction),
    ("wrong key does not cancel", part_wrong_key),
    ("cancel of an idle client", part_cancel_idle),
    ("five cancels at once", part_many_cancels),
])
