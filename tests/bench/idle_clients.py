#!/usr/bin/python3
"""Opens many idle PostgreSQL client connections and measures a proxy's memory.

    idle_clients.py --port 27600 --count 10000 --pid PROXY_PID [--host H] [--user U] [--db D]

Each connection sends a protocol 3.0 StartupMessage (no password: the proxy must use
trust) and reads until ReadyForQuery, then stays open and idle. With every connection
ready (or failed), the script waits a moment, reads the proxy's VmRSS and open file
count from /proc, sends Terminate on every connection and closes them all.

Prints key=value lines on stdout: requested, ready, failed, first_error,
seconds_to_open, rss_kib, proxy_fds. Exit status 0 even when some connections failed
(the caller reports the numbers); 2 on bad arguments.
"""

import argparse
import errno
import os
import selectors
import socket
import struct
import sys
import time

PROTOCOL_3_0 = 196608
IN_FLIGHT = 200  # connections being set up at once (stays well under listen backlogs)


def startup_message(user, database):
    body = struct.pack("!I", PROTOCOL_3_0)
    for key, value in (("user", user), ("database", database)):
        body += key.encode() + b"\0" + value.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def error_text(payload):
    """The severity, SQLSTATE and message of an ErrorResponse body."""
    fields = {}
    for part in payload.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return "%s %s: %s" % (fields.get("S", "?"), fields.get("C", "?"), fields.get("M", "?"))


class Conn:
    __slots__ = ("sock", "buf", "state")

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.state = "connecting"  # connecting -> startup -> ready | failed


def read_status(pid):
    rss_kib = None
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss_kib = int(line.split()[1])
    except OSError:
        pass
    try:
        fds = len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        fds = None
    return rss_kib, fds


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True, help="the proxy's process id")
    ap.add_argument("--user", default="postgres")
    ap.add_argument("--db", default="app")
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds to open them all")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds to wait before reading RSS")
    args = ap.parse_args()

    message = startup_message(args.user, args.db)
    sel = selectors.DefaultSelector()
    conns = []
    ready = failed = started = 0
    first_error = ""
    in_flight = 0
    t0 = time.monotonic()
    deadline = t0 + args.timeout

    def fail(c, why):
        nonlocal failed, first_error, in_flight
        if c.state in ("connecting", "startup"):
            in_flight -= 1
            try:
                sel.unregister(c.sock)
            except (KeyError, ValueError):
                pass
        c.state = "failed"
        failed += 1
        if not first_error:
            first_error = why
        c.sock.close()

    while ready + failed < args.count:
        now = time.monotonic()
        if now > deadline:
            break
        while in_flight < IN_FLIGHT and started < args.count:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            c = Conn(s)
            conns.append(c)
            started += 1
            in_flight += 1
            rc = s.connect_ex((args.host, args.port))
            if rc not in (0, errno.EINPROGRESS):
                fail(c, "connect: %s" % os.strerror(rc))
                continue
            sel.register(s, selectors.EVENT_WRITE, c)
        for key, _ in sel.select(timeout=min(1.0, max(0.0, deadline - now))):
            c = key.data
            if c.state == "connecting":
                err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    fail(c, "connect: %s" % os.strerror(err))
                    continue
                try:
                    c.sock.send(message)  # 40-odd bytes: fits any empty send buffer
                except OSError as e:
                    fail(c, "send startup: %s" % e)
                    continue
                c.state = "startup"
                sel.modify(c.sock, selectors.EVENT_READ, c)
                continue
            try:
                data = c.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError as e:
                fail(c, "recv: %s" % e)
                continue
            if not data:
                fail(c, "the proxy closed the connection during startup")
                continue
            c.buf += data
            while len(c.buf) >= 5 and c.state == "startup":
                kind = c.buf[0:1]
                (length,) = struct.unpack("!I", c.buf[1:5])
                if len(c.buf) < 1 + length:
                    break
                payload = c.buf[5 : 1 + length]
                c.buf = c.buf[1 + length :]
                if kind == b"R":
                    (code,) = struct.unpack("!I", payload[:4])
                    if code != 0:
                        fail(c, "the proxy asked for authentication (code %d); trust expected" % code)
                elif kind == b"E":
                    fail(c, error_text(payload))
                elif kind == b"Z":
                    c.state = "ready"
                    in_flight -= 1
                    ready += 1
                    sel.unregister(c.sock)
                # S (ParameterStatus), K (BackendKeyData), N (NoticeResponse): ignored
    seconds_to_open = time.monotonic() - t0
    for c in conns:
        if c.state in ("connecting", "startup"):
            fail(c, "timed out after %.0f s waiting for ReadyForQuery" % args.timeout)

    time.sleep(args.settle)
    rss_kib, fds = read_status(args.pid)

    terminate = b"X" + struct.pack("!I", 4)
    for c in conns:
        if c.state == "ready":
            try:
                c.sock.send(terminate)
            except OSError:
                pass
            c.sock.close()
    sel.close()

    print("requested=%d" % args.count)
    print("ready=%d" % ready)
    print("failed=%d" % failed)
    print("first_error=%s" % first_error.replace("\n", " "))
    print("seconds_to_open=%.1f" % seconds_to_open)
    print("rss_kib=%s" % ("" if rss_kib is None else rss_kib))
    print("proxy_fds=%s" % ("" if fds is None else fds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
