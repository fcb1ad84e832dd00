"""test_silent_clients.py - 20,000 connections that never say a word are dropped at the
login timeout, while a normal client goes on working.

A proxy of its own with timeouts.login 1s and max_client_conn 6000. Four waves of 5,000
TCP connections each send nothing; every one must be closed by the proxy (EOF or reset)
soon after a second, and a client running SELECT 1 in a loop meanwhile sees no error.
"""
import os
import resource
import socket
import sys
import threading
import time

import psycopg

sys.path.insert(0, os.path.dirname(__file__))
import sgtest  # noqa: E402

BASE = int(sgtest.env("PGTEST_BASE_PORT"))
WAVES, PER_WAVE = 4, 5000


def closed_by_peer(s, deadline):
    """Waits until the proxy closes s (True) or the deadline passes (False)."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        s.settimeout(left)
        try:
            if s.recv(4096) == b"":
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 3 * PER_WAVE + 2000) if hard != resource.RLIM_INFINITY else 3 * PER_WAVE
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    proxy = sgtest.OwnProxy("silent", """workers: 2
max_client_conn: 6000
pool: { mode: %s, size: 5 }
timeouts: { wait: 5s, login: 1s }
log: { level: warning }
auth: { method: trust }
backend: { user: postgres, password: postgres }
shards:
  - { name: s0, primary: 127.0.0.1:%d }
""" % (sgtest.pool_mode(), BASE))
    stop = threading.Event()
    normal = {"ok": 0, "errors": []}

    def normal_client():
        with proxy.connect() as c:
            while not stop.is_set():
                try:
                    c.execute("SELECT 1").fetchone()
                    normal["ok"] += 1
                except psycopg.Error as e:
                    normal["errors"].append(str(e))
                time.sleep(0.01)

    t = threading.Thread(target=normal_client, daemon=True)
    t.start()
    try:
        dropped = 0
        for wave in range(WAVES):
            socks = []
            t0 = time.monotonic()
            for _ in range(PER_WAVE):
                s = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
                socks.append(s)
            opened = time.monotonic() - t0
            deadline = time.monotonic() + 1.0 + 4.0  # login timeout plus slack
            still_open = [s for s in socks if not closed_by_peer(s, deadline)]
            took = time.monotonic() - t0
            for s in socks:
                s.close()
            sgtest.check_eq(len(still_open), 0, "silent connections still open in wave %d" % wave)
            dropped += len(socks)
            sgtest.note("wave %d: %d silent connections opened in %.1f s, all dropped %.1f s "
                        "after the first" % (wave, len(socks), opened, took))
        stop.set()
        t.join(timeout=10)
        sgtest.check_eq(dropped, WAVES * PER_WAVE, "silent connections dropped")
        sgtest.check_eq(normal["errors"][:3], [], "the normal client's errors")
        sgtest.check(normal["ok"] > 50, "the normal client kept running", normal["ok"])
        with proxy.connect() as c:
            sgtest.check_eq(c.execute("SELECT 2").fetchone()[0], 2, "a new client afterwards")
    finally:
        stop.set()
        sgtest.check_eq(proxy.stop(), 0, "the proxy's exit code")


if __name__ == "__main__":
    sgtest.run(main)
