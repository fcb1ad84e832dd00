"""test_extended_protocol.py: the extended query protocol through the proxy:
pipelines (many Parse/Bind/Execute before one Sync), errors inside a
pipeline, named prepared statements used across transactions (and so, in
transaction pooling, across server connections), Describe of a prepared
statement, DEALLOCATE, and SQL-level PREPARE/EXECUTE.

Where PostgreSQL's behaviour is subtle, the same steps are also run on a
direct connection to the s0 primary and the outcomes compared.
"""
import socket
import struct

import psycopg
from psycopg import errors

from sgtest import (Holders, check, check_eq, direct_dsn, dsn, fail, host, note, pool_mode,
                    port, run_parts, table_name)

MODE = pool_mode()
TABLES = []


def connect(conninfo=None, **kw):
    kw.setdefault("autocommit", True)
    kw.setdefault("connect_timeout", 10)
    return psycopg.connect(conninfo or dsn(), **kw)


def new_table(prefix, cols="id int, v text"):
    t = table_name(prefix)
    TABLES.append(t)
    with connect(direct_dsn()) as c:
        c.execute("drop table if exists %s" % t)
        c.execute("create table %s (%s)" % (t, cols))
    return t


def part_pipeline():
    t = new_table("ext_pipe")
    conn = connect()
    curs = []
    with conn.pipeline():
        for i in range(1, 11):
            c = conn.cursor()
            c.execute("insert into " + t + " values (%s, %s) returning id * 10", (i, "v%d" % i))
            curs.append(("ins", i, c))
            if i % 3 == 0:
                c = conn.cursor()
                c.execute("select count(*), sum(id) from " + t)
                curs.append(("sel", i, c))
        c = conn.cursor()
        c.execute("select string_agg(v, ',' order by id) from " + t + " where id <= %s", (3,))
        curs.append(("agg", 0, c))
    for kind, i, c in curs:
        if kind == "ins":
            check_eq(c.fetchone(), (i * 10,), "pipelined insert %d returning" % i)
        elif kind == "sel":
            # Statements before it in the same pipeline are visible to it.
            check_eq(c.fetchone(), (i, i * (i + 1) // 2), "pipelined select after %d inserts" % i)
        else:
            check_eq(c.fetchone(), ("v1,v2,v3",), "pipelined string_agg")
    check_eq(conn.execute("select count(*) from " + t).fetchone()[0], 10, "rows after the pipeline")
    # Several syncs in one pipeline, and prepared statements inside it.
    with conn.pipeline() as p:
        a = conn.cursor()
        a.execute("select %s::int * 2", (21,), prepare=True)
        p.sync()
        b = conn.cursor()
        b.execute("select %s::int * 2", (50,), prepare=True)
        c = conn.cursor()
        c.execute("delete from " + t + " where id > %s", (5,))
        p.sync()
        d = conn.cursor()
        d.execute("select count(*) from " + t)
    check_eq(a.fetchone()[0], 42, "pipeline with syncs: a")
    check_eq(b.fetchone()[0], 100, "pipeline with syncs: b")
    check_eq(c.rowcount, 5, "pipeline with syncs: delete rowcount")
    check_eq(d.fetchone()[0], 5, "pipeline with syncs: count")
    conn.close()


def pipeline_error_scenario(conninfo, t):
    """Runs the error scenario; returns a description of what happened."""
    conn = connect(conninfo)
    out = []
    c1 = c3 = None
    try:
        with conn.pipeline():
            c1 = conn.cursor()
            c1.execute("insert into " + t + " values (%s, %s)", (1, "before"))
            c2 = conn.cursor()
            c2.execute("select 1 / %s", (0,))
            c3 = conn.cursor()
            c3.execute("insert into " + t + " values (%s, %s)", (2, "after"))
        out.append("no error")
    except errors.DivisionByZero:
        out.append("DivisionByZero")
    except Exception as e:  # noqa
        out.append("other: %s" % type(e).__name__)
    out.append(conn.info.transaction_status.name)
    out.append(conn.execute("select count(*) from " + t).fetchone()[0])
    # After the failed pipeline the connection keeps working, in and out of
    # pipelines.
    out.append(conn.execute("select %s::int + 1", (1,)).fetchone()[0])
    # Errors separated by syncs: the segment before the error commits, the
    # one after it runs.
    try:
        with conn.pipeline() as p:
            conn.execute("insert into " + t + " values (%s, %s)", (10, "seg1"))
            p.sync()
            conn.execute("select 1 / %s", (0,))
            conn.execute("insert into " + t + " values (%s, %s)", (11, "seg2 aborted"))
            p.sync()
            conn.execute("insert into " + t + " values (%s, %s)", (12, "seg3"))
        out.append("no error")
    except errors.DivisionByZero:
        out.append("DivisionByZero")
    except Exception as e:  # noqa
        out.append("other: %s" % type(e).__name__)
    out.append(sorted(r[0] for r in conn.execute("select id from " + t).fetchall()))
    with conn.pipeline():
        x = conn.cursor()
        x.execute("select %s::text", ("fine",))
    out.append(x.fetchone()[0])
    conn.close()
    return out


def part_pipeline_error():
    t_proxy = new_table("ext_perr")
    t_direct = new_table("ext_perr_direct")
    got = pipeline_error_scenario(dsn(), t_proxy)
    want = pipeline_error_scenario(direct_dsn(), t_direct)
    note("pipeline error scenario: proxy %r, PostgreSQL %r" % (got, want))
    check_eq(got, want, "pipeline error scenario through the proxy vs. directly")
    # And the absolute facts, in case PostgreSQL itself misbehaved.
    check_eq(got[0], "DivisionByZero", "error raised by the failing pipeline")
    check_eq(got[2], 0, "rows after the failed pipeline (its implicit transaction rolled back)")
    check_eq(got[5], [10], "rows after the pipeline with syncs")


def part_prepared_across_transactions():
    t = new_table("ext_prep", "id int primary key, v int")
    conn = connect(autocommit=False)
    holders = Holders(conn, connect)
    pids = set()
    n = 0
    # 20 transactions, more while they have all used one server connection.
    while n < 20 or (len(pids) < 2 and MODE == "transaction" and n < 100):
        i = n
        n += 1
        holders.shuffle()
        conn.execute("insert into " + t + " values (%s, %s)", (i, i * i), prepare=True)
        r = conn.execute("select count(*), sum(v), pg_backend_pid() from " + t + " where id <= %s",
                         (i,), prepare=True).fetchone()
        check_eq(r[:2], (i + 1, sum(k * k for k in range(i + 1))), "transaction %d" % i)
        pids.add(r[2])
        conn.commit()
    holders.close()
    prepared = conn.execute("select count(*) from pg_prepared_statements").fetchone()[0]
    conn.commit()
    note("%d transactions with prepared statements: %d server connections, %d statements on the "
         "last one" % (n, len(pids), prepared))
    if MODE == "transaction":
        check(len(pids) >= 2, ">= 2 server connections", len(pids),
              "transactions should have used different server connections")
    else:
        check_eq(len(pids), 1, "session pooling: one server connection")
    check(prepared >= 1, ">= 1 prepared statement on the server", prepared)
    conn.close()


def part_describe():
    conn = connect()
    holders = Holders(conn, connect)
    pg = conn.pgconn
    res = pg.prepare(b"sg_desc_stmt", b"select $1::int4 as a, $2::text as b, now() as c", None)
    check_eq(res.status, psycopg.pq.ExecStatus.COMMAND_OK, "Parse of sg_desc_stmt (%r)"
             % res.error_message)
    for i in range(6):
        holders.shuffle()
        d = pg.describe_prepared(b"sg_desc_stmt")
        check_eq(d.status, psycopg.pq.ExecStatus.COMMAND_OK,
                 "Describe statement (%d): %r" % (i, d.error_message))
        check_eq([d.param_type(k) for k in range(d.nparams)], [23, 25], "parameter types")
        check_eq([d.fname(k) for k in range(d.nfields)], [b"a", b"b", b"c"], "column names")
        check_eq([d.ftype(k) for k in range(d.nfields)], [23, 25, 1184], "column types")
        r = pg.exec_prepared(b"sg_desc_stmt", [str(i).encode(), b"x"])
        check_eq(r.status, psycopg.pq.ExecStatus.TUPLES_OK, "execute sg_desc_stmt (%r)" % r.error_message)
        check_eq((r.get_value(0, 0), r.get_value(0, 1)), (str(i).encode(), b"x"), "result %d" % i)
    # Describe of a statement that does not exist: an error, like PostgreSQL.
    d = pg.describe_prepared(b"sg_no_such_stmt")
    check_eq(d.status, psycopg.pq.ExecStatus.FATAL_ERROR, "Describe of a missing statement")
    check_eq(d.error_field(psycopg.pq.DiagnosticField.SQLSTATE), b"26000",
             "SQLSTATE of Describe of a missing statement")
    # The cursor's description is known before fetching.
    cur = conn.cursor()
    cur.execute("select %s::int8 as big, %s::numeric(10,2) as num, %s::uuid as u",
                (1, 2, "00000000-0000-0000-0000-000000000001"), prepare=True)
    check_eq([(c.name, c.type_code) for c in cur.description],
             [("big", 20), ("num", 1700), ("u", 2950)], "cursor.description before fetch")
    check_eq(str(cur.fetchone()[2]), "00000000-0000-0000-0000-000000000001", "row after describe")
    holders.close()
    conn.close()


def part_unnamed_statement():
    """The unnamed prepared statement lives until the next unnamed Parse,
    across Syncs (asyncpg with statement_cache_size=0 relies on that: Parse
    and Describe, Sync, then Bind and Execute, Sync)."""
    conn = connect()
    holders = Holders(conn, connect)
    pg = conn.pgconn
    for i in range(8):
        res = pg.prepare(b"", ("select $1::int * 11 + %d" % i).encode(), None)
        check_eq(res.status, psycopg.pq.ExecStatus.COMMAND_OK,
                 "Parse of the unnamed statement (%d): %r" % (i, res.error_message))
        holders.shuffle()
        d = pg.describe_prepared(b"")
        check_eq(d.status, psycopg.pq.ExecStatus.COMMAND_OK,
                 "Describe of the unnamed statement after a Sync (%d): %r" % (i, d.error_message))
        check_eq(d.nparams, 1, "parameters of the unnamed statement")
        holders.shuffle()
        r = pg.exec_prepared(b"", [str(i).encode()])
        check_eq(r.status, psycopg.pq.ExecStatus.TUPLES_OK,
                 "Bind/Execute of the unnamed statement after a Sync (%d): %r" % (i, r.error_message))
        check_eq(r.get_value(0, 0), str(11 * i + i).encode(), "unnamed statement result (%d)" % i)
    holders.close()
    conn.close()


def part_deallocate():
    """DEALLOCATE ALL only drops the sending client's statements; other
    clients' statements keep working. (psycopg sends DEALLOCATE ALL itself
    after a ROLLBACK or a DROP when it has prepared statements.)"""
    b = connect(prepare_threshold=0)
    holders = Holders(b, connect, n=2)
    # `a` never prepares (prepare_threshold=None), so psycopg's own cache
    # is not confused by the DEALLOCATE ALL it runs.
    a = holders.conns[0]
    a.prepare_threshold = None
    q = "select %s::int * 3 /* ext_dealloc */"
    for i in range(3):
        check_eq(b.execute(q, (i,)).fetchone()[0], 3 * i, "b before DEALLOCATE (%d)" % i)
    for i in range(6):
        a.execute("deallocate all")
        holders.shuffle()
        check_eq(b.execute(q, (i,)).fetchone()[0], 3 * i,
                 "b after another client's DEALLOCATE ALL (%d)" % i)
    # psycopg's own DEALLOCATE ALL, after a ROLLBACK.
    c = connect(prepare_threshold=0)
    for i in range(4):
        c.execute("begin")
        check_eq(c.execute("select %s::int + 100 /* ext_rb */", (i,)).fetchone()[0], 100 + i,
                 "in a transaction (%d)" % i)
        c.execute("rollback")
        check_eq(c.execute("select %s::int + 100 /* ext_rb */", (i,)).fetchone()[0], 100 + i,
                 "after ROLLBACK (%d)" % i)
        check_eq(b.execute(q, (i,)).fetchone()[0], 3 * i,
                 "another client after a ROLLBACK + DEALLOCATE ALL (%d)" % i)
    c.close()
    holders.close()
    b.close()


def part_sql_prepare():
    """SQL-level PREPARE is session state: a later EXECUTE of the same
    client finds it, in any pool mode; other clients do not see it."""
    conn = connect()
    holders = Holders(conn, connect)
    conn.execute("prepare sg_sql_stmt (int) as select $1 * 7")
    for i in range(8):
        holders.shuffle()
        try:
            v = conn.execute("execute sg_sql_stmt (%d)" % i).fetchone()[0]
        except psycopg.Error as e:
            fail("EXECUTE of a statement PREPAREd earlier in the session (%d): %s: %s"
                 % (i, type(e).__name__, e))
        check_eq(v, 7 * i, "EXECUTE sg_sql_stmt(%d)" % i)
    other = connect()
    n = other.execute("select count(*) from pg_prepared_statements where name = 'sg_sql_stmt'").fetchone()[0]
    check_eq(n, 0, "another client sees the first client's SQL prepared statement")
    other.close()
    conn.execute("deallocate sg_sql_stmt")
    try:
        conn.execute("execute sg_sql_stmt (1)")
        fail("EXECUTE after DEALLOCATE did not fail")
    except errors.InvalidSqlStatementName:
        pass
    holders.close()
    conn.close()


class Raw:
    """A minimal raw-protocol client."""

    def __init__(self):
        self.s = socket.create_connection((host(), port()), timeout=5)
        body = struct.pack("!I", 196608) + b"user\0postgres\0database\0app\0\0"
        self.s.sendall(struct.pack("!I", len(body) + 4) + body)
        self.buf = b""
        self.until(b"Z")

    def send(self, t, body):
        self.s.sendall(t + struct.pack("!I", len(body) + 4) + body)

    def message(self):
        while True:
            if len(self.buf) >= 5:
                n = struct.unpack("!I", self.buf[1:5])[0]
                if len(self.buf) >= n + 1:
                    m = (self.buf[:1], self.buf[5:n + 1])
                    self.buf = self.buf[n + 1:]
                    return m
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError("closed")
            self.buf += chunk

    def until(self, t):
        out = []
        while True:
            m = self.message()
            out.append(m)
            if m[0] == t:
                return out

    def close(self):
        self.s.close()


def sqlstates(msgs):
    out = []
    for t, body in msgs:
        if t == b"E":
            for part in body.split(b"\0"):
                if part[:1] == b"C":
                    out.append(part[1:].decode())
    return out


def part_same_name_twice():
    """psycopg never prepares one name twice; with the raw protocol:
    PostgreSQL answers a second Parse of an existing name with 42P05."""
    results = {}
    for where in ("proxy", "direct"):
        if where == "proxy":
            r = Raw()
        else:
            # Direct: use libpq (the direct server wants a password).
            c = connect(direct_dsn())
            pg = c.pgconn
            a = pg.prepare(b"sg_twice", b"select 1", None)
            b = pg.prepare(b"sg_twice", b"select 2", None)
            st = psycopg.pq.ExecStatus
            results[where] = [st(a.status).name, (st(b.status).name, b.error_field(
                psycopg.pq.DiagnosticField.SQLSTATE))]
            c.close()
            continue
        r.send(b"P", b"sg_twice\0select 1\0\0\0")
        r.send(b"S", b"")
        m1 = r.until(b"Z")
        r.send(b"P", b"sg_twice\0select 2\0\0\0")
        r.send(b"S", b"")
        m2 = r.until(b"Z")
        # What does the name run now?
        r.send(b"B", b"\0sg_twice\0\0\0\0\0\0\0")
        r.send(b"E", b"\0\0\0\0\0")
        r.send(b"S", b"")
        m3 = r.until(b"Z")
        r.close()
        first = "COMMAND_OK" if not sqlstates(m1) else "FATAL_ERROR"
        second = ("FATAL_ERROR", sqlstates(m2)[0].encode()) if sqlstates(m2) else ("COMMAND_OK", None)
        results[where] = [first, second]
        rows = [body for t, body in m3 if t == b"D"]
        results["proxy_runs"] = rows[0][6:].decode() if rows else sqlstates(m3)
    note("same name twice: %r" % results)
    check_eq(results["proxy"], results["direct"], "second Parse of the same name: proxy vs. PostgreSQL")
    check_eq(results["proxy_runs"], "1", "the name still runs the first statement")


def cleanup():
    with connect(direct_dsn()) as c:
        c.execute("set lock_timeout = '5s'")
        for t in TABLES:
            c.execute("drop table if exists " + t)


run_parts([
    ("pipeline", part_pipeline),
    ("error inside a pipeline", part_pipeline_error),
    ("prepared statements across 20 transactions", part_prepared_across_transactions),
    ("describe a prepared statement", part_describe),
    ("unnamed statement across syncs", part_unnamed_statement),
    ("DEALLOCATE ALL and other clients", part_deallocate),
    ("SQL PREPARE/EXECUTE is session state", part_sql_prepare),
    ("same statement name prepared twice (raw protocol)", part_same_name_twice),
], cleanup)
