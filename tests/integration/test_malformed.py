"""test_malformed.py: malformed protocol input, sent with raw sockets. Each
case must end in an ErrorResponse or a closed connection for that client
alone (never a hang, never a crash); after each case a normal client must
still work. At the end the proxy's log lines written during the test must
each be a JSON object with an "event", and the errors must be logged.
"""
import os
import random
import socket
import struct
import time

import psycopg

from sgtest import (check, check_eq, direct_dsn, dsn, fail, host, log_lines_since, log_offset,
                    note, parse_log_lines, pool_mode, port, run_parts, table_name)

MODE = pool_mode()
TIMEOUT = 5.0
PROTO_V3 = 196608
SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
LOG_START = log_offset()
TABLES = []


class Closed(Exception):
    pass


def sock():
    s = socket.create_connection((host(), port()), timeout=TIMEOUT)
    s.settimeout(TIMEOUT)
    return s


def startup_packet(user="postgres", database="app", version=PROTO_V3, **params):
    body = struct.pack("!I", version)
    items = [("user", user), ("database", database)] + list(params.items())
    for k, v in items:
        if v is None:
            continue
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def msg(t, body=b""):
    return t + struct.pack("!I", len(body) + 4) + body


class Reader:
    def __init__(self, s):
        self.s = s
        self.buf = b""

    def _fill(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no answer within %.1fs" % TIMEOUT)
            self.s.settimeout(left)
            try:
                chunk = self.s.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise Closed()
            self.buf += chunk

    def byte(self, deadline=None):
        deadline = deadline or time.monotonic() + TIMEOUT
        self._fill(1, deadline)
        b, self.buf = self.buf[:1], self.buf[1:]
        return b

    def message(self, deadline=None):
        """(type, body); raises Closed on EOF and socket.timeout on a hang."""
        deadline = deadline or time.monotonic() + TIMEOUT
        self._fill(5, deadline)
        t = self.buf[:1]
        n = struct.unpack("!I", self.buf[1:5])[0]
        if n < 4 or n > 1 << 24:
            fail("the proxy sent a message %r with a bad length %d" % (t, n))
        self._fill(n + 1, deadline)
        body = self.buf[5:n + 1]
        self.buf = self.buf[n + 1:]
        return t, body

    def until(self, types, deadline=None):
        """Reads messages until one of `types`; returns all read."""
        deadline = deadline or time.monotonic() + TIMEOUT
        out = []
        while True:
            t, body = self.message(deadline)
            out.append((t, body))
            if t in types:
                return out

    def eof(self, deadline=None):
        """True if the connection closes (after any messages) in time."""
        deadline = deadline or time.monotonic() + TIMEOUT
        try:
            while True:
                self.message(deadline)
        except Closed:
            return True
        except socket.timeout:
            return False


def error_fields(body):
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return fields


def expect_error_or_close(r, sqlstate, what, require_error=False):
    """The next thing is an ErrorResponse with `sqlstate` (and then the
    connection closes), or just a close. Never a hang, nothing else."""
    t0 = time.monotonic()
    try:
        t, body = r.message()
    except Closed:
        if require_error:
            fail("%s: expected an ErrorResponse %s, the connection was closed without one"
                 % (what, sqlstate))
        note("%s: connection closed without an ErrorResponse (%.3fs)" % (what, time.monotonic() - t0))
        return None
    except socket.timeout:
        fail("%s: expected ErrorResponse %s or a close within %.0fs, got nothing (hang)"
             % (what, sqlstate, TIMEOUT))
    if t != b"E":
        fail("%s: expected ErrorResponse %s or a close, got message %r %r" % (what, sqlstate, t, body[:80]))
    f = error_fields(body)
    check_eq(f.get("C"), sqlstate, "%s: SQLSTATE (message %r)" % (what, f.get("M")))
    check(f.get("S") in ("FATAL", "ERROR"), "severity FATAL or ERROR", f.get("S"), what)
    check(r.eof(), "the connection closed after the error", "still open after %.0fs" % TIMEOUT, what)
    note("%s: ErrorResponse %s %s %r (%.3fs)" % (what, f.get("S"), f.get("C"), f.get("M"),
                                                 time.monotonic() - t0))
    return f


def login(s=None):
    s = s or sock()
    s.sendall(startup_packet())
    r = Reader(s)
    try:
        msgs = r.until(b"ZE")
    except (Closed, socket.timeout) as e:
        fail("raw login: %r" % e)
    if msgs[-1][0] == b"E":
        fail("raw login failed: %r" % error_fields(msgs[-1][1]))
    types = [m[0] for m in msgs]
    check(types[0] == b"R" and b"K" in types, "AuthenticationOk ... BackendKeyData ... ReadyForQuery",
          types, "raw login")
    return s, r


def simple_query(s, r, sql):
    s.sendall(msg(b"Q", sql.encode() + b"\0"))
    msgs = r.until(b"Z")
    errs = [error_fields(b) for t, b in msgs if t == b"E"]
    if errs:
        fail("query %r failed: %r" % (sql, errs[0]))
    rows = []
    for t, body in msgs:
        if t == b"D":
            n = struct.unpack("!H", body[:2])[0]
            pos, row = 2, []
            for _ in range(n):
                ln = struct.unpack("!i", body[pos:pos + 4])[0]
                pos += 4
                if ln < 0:
                    row.append(None)
                else:
                    row.append(body[pos:pos + ln].decode())
                    pos += ln
            rows.append(tuple(row))
    return rows


def normal_client_works(after):
    try:
        with psycopg.connect(dsn(), autocommit=True, connect_timeout=10) as c:
            v = c.execute("select %s::int + 1", (41,)).fetchone()[0]
    except Exception as e:  # noqa
        fail("after %s: a normal client failed: %r" % (after, e))
    check_eq(v, 42, "after %s: a normal client's result" % after)


def case(name, fn):
    def run():
        fn()
        normal_client_works(name)
    return (name, run)


# --- the cases ---------------------------------------------------------------

def a_startup_too_long():
    s = sock()
    # Declares 20,000 bytes (limit 10,000); sends only the header and a bit.
    s.sendall(struct.pack("!II", 20000, PROTO_V3) + b"user\0postgres\0")
    expect_error_or_close(Reader(s), "08P01", "startup length 20000")
    s.close()


def b_startup_too_short():
    for n in (4, 0, 7):
        s = sock()
        s.sendall(struct.pack("!I", n) + b"\0\0\0\0")
        expect_error_or_close(Reader(s), "08P01", "startup length %d" % n)
        s.close()


def c_http_garbage():
    s = sock()
    s.sendall(b"GET / HTTP/1.1\r\n\r\n")
    expect_error_or_close(Reader(s), "08P01", "HTTP request before startup")
    s.close()
    # Short garbage that looks like a valid length, then more garbage.
    s = sock()
    s.sendall(struct.pack("!I", 40) + os.urandom(36))
    r = Reader(s)
    try:
        t, body = r.message()
        check_eq(t, b"E", "random startup body: ErrorResponse")
        check(r.eof(), "closed after the error", "still open", "random startup body")
    except Closed:
        pass
    except socket.timeout:
        fail("random startup body: no answer and no close within %.0fs" % TIMEOUT)
    s.close()


def d_protocol_2():
    s = sock()
    s.sendall(startup_packet(version=0x00020000))
    expect_error_or_close(Reader(s), "0A000", "protocol version 2.0", require_error=True)
    s.close()
    s = sock()
    s.sendall(startup_packet(version=0x00040000))
    expect_error_or_close(Reader(s), "0A000", "protocol version 4.0", require_error=True)
    s.close()


def e_length_3_after_login():
    s, r = login()
    s.sendall(b"Q" + struct.pack("!I", 3))
    expect_error_or_close(r, "08P01", "message length 3 after login", require_error=True)
    s.close()


def f_oversized_after_login():
    s, r = login()
    t0 = time.monotonic()
    s.sendall(b"Q" + struct.pack("!I", 104857600 + 4))  # 100 MiB, no body
    expect_error_or_close(r, "08P01", "100 MiB message after login", require_error=True)
    took = time.monotonic() - t0
    check(took < 2.0, "answered promptly (< 2 s)", "%.2fs" % took, "100 MiB message")
    s.close()


def g_unknown_type_after_login():
    s, r = login()
    s.sendall(msg(b"y", b"abc"))
    expect_error_or_close(r, "08P01", "unknown message type 'y'", require_error=True)
    s.close()
    # Unknown type after a valid query in the same packet.
    s, r = login()
    s.sendall(msg(b"Q", b"select 1\0") + msg(b"\x01", b""))
    msgs = []
    try:
        msgs = r.until(b"E")
    except Closed:
        fail("query then unknown type: closed before answering")
    types = [m[0] for m in msgs]
    check(b"D" in types or b"E" in types, "the query's answer and/or an error", types,
          "query then unknown type")
    f = error_fields(msgs[-1][1])
    check(f.get("C") == "08P01", "08P01", f, "query then unknown type")
    s.close()


def h_copy_abandoned():
    t = table_name("malf_copy")
    TABLES.append(t)
    with psycopg.connect(dsn(), autocommit=True) as c:
        c.execute("create table %s (id int, v text)" % t)
    for variant in ("close", "reset"):
        s, r = login()
        s.sendall(msg(b"Q", ("copy %s from stdin" % t).encode() + b"\0"))
        try:
            t_, body = r.message()
        except (Closed, socket.timeout) as e:
            fail("COPY FROM STDIN: no CopyInResponse: %r" % e)
        check_eq(t_, b"G", "answer to COPY FROM STDIN (CopyInResponse)")
        for i in range(1000):
            s.sendall(msg(b"d", ("%d\trow %d\n" % (i, i)).encode()))
        time.sleep(0.2)
        if variant == "reset":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        # The COPY never committed; the server connection does not stay
        # stuck in COPY either (it would hold the table's lock).
        deadline = time.monotonic() + 10
        with psycopg.connect(direct_dsn(), autocommit=True) as d:
            while True:
                busy = d.execute(
                    "select count(*) from pg_stat_activity where query ilike %s and state <> 'idle'"
                    " and pid <> pg_backend_pid()", ("copy %s from stdin%%" % t,)).fetchone()[0]
                if busy == 0:
                    break
                if time.monotonic() > deadline:
                    fail("abandoned COPY (%s): a server backend is still in the COPY after 10 s"
                         % variant)
                time.sleep(0.1)
            n = d.execute("select count(*) from " + t).fetchone()[0]
            check_eq(n, 0, "rows visible after an abandoned COPY (%s)" % variant)
        with psycopg.connect(dsn(), autocommit=True) as c:
            n = c.execute("select count(*) from " + t).fetchone()[0]
            check_eq(n, 0, "rows visible through the proxy after an abandoned COPY (%s)" % variant)
            c.execute("insert into %s values (1, 'x')" % t)
            check_eq(c.execute("select count(*) from " + t).fetchone()[0], 1, "table still usable")
            c.execute("truncate " + t)


def i_ssl_and_gss_requests():
    for code, name in ((SSL_REQUEST, "SSLRequest"), (GSSENC_REQUEST, "GSSENCRequest")):
        s = sock()
        s.sendall(struct.pack("!II", 8, code))
        r = Reader(s)
        try:
            b = r.byte()
        except (Closed, socket.timeout) as e:
            fail("%s: expected the single byte 'N', got %r" % (name, e))
        check_eq(b, b"N", "%s answer" % name)
        s, r = login(s)
        check_eq(simple_query(s, r, "select 'after %s'" % name),
                 [("after %s" % name,)], "query after %s + startup" % name)
        s.close()
    # GSSENCRequest, then SSLRequest, then startup (what libpq does with
    # gssencmode=prefer and sslmode=prefer).
    s = sock()
    s.sendall(struct.pack("!II", 8, GSSENC_REQUEST))
    r = Reader(s)
    check_eq(r.byte(), b"N", "GSSENCRequest answer")
    s.sendall(struct.pack("!II", 8, SSL_REQUEST))
    check_eq(r.byte(), b"N", "SSLRequest after GSSENCRequest answer")
    s2, r2 = login(s)
    check_eq(simple_query(s2, r2, "select 1"), [("1",)], "query after GSSENC+SSL requests")
    s.close()


def j_truncated_startup():
    for _ in range(5):
        s = sock()
        s.sendall(struct.pack("!II", 100, PROTO_V3) + b"user\0postgres\0database\0app\0" + b"x" * 16)
        time.sleep(0.05)
        s.close()
    # Truncated, but left open: closed by the login timeout at the latest;
    # here just check the proxy is not blocked by it meanwhile.
    s = sock()
    s.sendall(struct.pack("!II", 100, PROTO_V3) + b"user\0")
    normal_client_works("a truncated startup still open")
    s.close()


def k_silent_connections():
    socks = []
    for _ in range(200):
        try:
            socks.append(socket.create_connection((host(), port()), timeout=TIMEOUT))
        except OSError as e:
            fail("connecting 200 silent clients: %r" % e)
    for s in socks:
        s.close()


def l_garbage_after_login():
    rnd = random.Random(1234)
    for i in range(5):
        s, r = login()
        s.sendall(bytes(rnd.getrandbits(8) for _ in range(2000)))
        t0 = time.monotonic()
        try:
            while True:
                t, body = r.message()
                if t == b"E":
                    break
        except Closed:
            pass
        except socket.timeout:
            # Random bytes can form a valid message header waiting for a
            # huge body: that is allowed to wait (up to max_message_size).
            pass
        s.close()
        note("random bytes after login #%d: handled in %.2fs" % (i, time.monotonic() - t0))


def n_parse_type_count_lies():
    """A Parse over a sharded table (fanned out to every shard) that claims
    1,000 parameter types and carries none: refused, nothing read past it."""
    s, r = login()
    body = b"\0SELECT id FROM sg_users\0" + struct.pack("!H", 1000)
    bind = b"\0\0" + struct.pack("!HHH", 0, 0, 0)
    s.sendall(msg(b"P", body) + msg(b"B", bind) + msg(b"E", b"\0" + struct.pack("!I", 0)) +
              msg(b"S"))
    expect_error_or_close(r, "08P01", "Parse with a parameter count past its end")
    s.close()


def m_bad_startups():
    # No user: PostgreSQL answers 28000; the proxy must refuse it somehow.
    s = sock()
    s.sendall(startup_packet(user=None))
    r = Reader(s)
    try:
        t, body = r.message()
        check_eq(t, b"E", "startup without a user: ErrorResponse")
        note("startup without user: %r" % error_fields(body))
    except Closed:
        pass
    except socket.timeout:
        fail("startup without a user: no answer within %.0fs" % TIMEOUT)
    s.close()
    # Parameter list without its terminating NUL.
    body = struct.pack("!I", PROTO_V3) + b"user\0postgres\0database\0app"
    s = sock()
    s.sendall(struct.pack("!I", len(body) + 4) + body)
    expect_error_or_close(Reader(s), "08P01", "startup without terminator")
    s.close()
    # A database that does not exist: an error naming it, logged as JSON.
    s = sock()
    s.sendall(startup_packet(database='no_such_db_"quoted"'))
    r = Reader(s)
    try:
        msgs = r.until(b"EZ")
    except Closed:
        msgs = []
    except socket.timeout:
        fail("startup for a missing database: no answer within %.0fs" % TIMEOUT)
    errs = [error_fields(b) for t, b in msgs if t == b"E"]
    check(errs, "an ErrorResponse for a missing database", [m[0] for m in msgs])
    note("missing database: %s %r" % (errs[0].get("C"), errs[0].get("M")))
    s.close()


def check_log():
    time.sleep(0.3)
    lines = log_lines_since(LOG_START)
    objs, bad = parse_log_lines(lines)
    if bad:
        fail("%d proxy log line(s) written during this test are not valid JSON, e.g.:\n  %s"
             % (len(bad), "\n  ".join(b[:300] for b in bad[:3])))
    no_event = [o for o in objs if not isinstance(o.get("event"), str)]
    check(not no_event, "every log line has an \"event\"", no_event[:2])
    errors_logged = [o for o in objs if o.get("event") == "client_error"]
    states = sorted(set(str(o.get("sqlstate")) for o in errors_logged))
    note("%d log lines, %d client_error events, SQLSTATEs %s" % (len(objs), len(errors_logged), states))
    check("08P01" in states, "client_error events with sqlstate 08P01", states, "proxy log")
    check("0A000" in states, "a client_error event with sqlstate 0A000", states, "proxy log")


def cleanup():
    with psycopg.connect(direct_dsn(), autocommit=True) as c:
        c.execute("set lock_timeout = '5s'")
        for t in TABLES:
            c.execute("drop table if exists " + t)


run_parts([
    case("(a) startup length 20000", a_startup_too_long),
    case("(b) startup length < 8", b_startup_too_short),
    case("(c) garbage before startup", c_http_garbage),
    case("(d) protocol version 2.0", d_protocol_2),
    case("(e) length 3 after login", e_length_3_after_login),
    case("(f) 100 MiB message after login", f_oversized_after_login),
    case("(g) unknown message type after login", g_unknown_type_after_login),
    case("(h) abandoned COPY FROM STDIN", h_copy_abandoned),
    case("(i) SSLRequest and GSSENCRequest", i_ssl_and_gss_requests),
    case("(j) truncated startup", j_truncated_startup),
    case("(k) 200 silent connections", k_silent_connections),
    case("(l) random bytes after login", l_garbage_after_login),
    case("(m) bad startup packets", m_bad_startups),
    case("(n) Parse whose type count lies", n_parse_type_count_lies),
    ("proxy log is JSON lines", check_log),
], cleanup)
