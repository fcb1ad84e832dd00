"""test_bulkhead.py - one slow shard does not starve the others.

A proxy of its own: shards s0 and s1, s1 with max_concurrent: 4 and log.slow_statement 200ms.
Eight threads keep running pg_sleep(0.3) on s1 (through the shard hint), more than s1 admits:
- the statements over s1's limit fail fast with 53300 naming the shard (never wait);
- point queries on s0 all succeed while s1 is saturated (their p50/p99 before and during
  are printed: a report, not an assertion);
- each slow statement is logged as slow_statement with its request id and backend pid.
"""
import os
import sys
import threading
import time

import psycopg

sys.path.insert(0, os.path.dirname(__file__))
import sgtest  # noqa: E402

BASE = int(sgtest.env("PGTEST_BASE_PORT"))


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else 0.0


def point_queries(proxy, seconds):
    lat, errors = [], []
    with proxy.connect() as c:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t0 = time.monotonic()
            try:
                c.execute("SELECT 1").fetchone()
            except psycopg.Error as e:
                errors.append(str(e))
            lat.append(time.monotonic() - t0)
    return lat, errors


def main():
    if sgtest.pool_mode() != "transaction":
        print("ok (runs under transaction pooling only: sessions hold their servers)")
        return
    proxy = sgtest.OwnProxy("bulkhead", """workers: 2
pool: { mode: transaction, size: 10 }
timeouts: { wait: 5s, login: 10s }
log: { level: info, slow_statement: 200ms }
auth: { method: trust }
admin: { users: [postgres] }
backend: { user: postgres, password: postgres }
shards:
  - { name: s0, primary: 127.0.0.1:%d }
  - { name: s1, primary: 127.0.0.1:%d, max_concurrent: 4 }
""" % (BASE, BASE + 3))
    try:
        before, errors = point_queries(proxy, 2.0)
        sgtest.check_eq(errors, [], "s0 point queries before")
        stop = threading.Event()
        outcome = {"ok": 0, "saturated": 0, "other": []}
        lock = threading.Lock()

        def slow_load():
            with proxy.connect() as c:
                while not stop.is_set():
                    try:
                        c.execute("SELECT pg_sleep(0.3) /* shardgate: shard=s1 */")
                        key = "ok"
                    except psycopg.Error as e:
                        key = "saturated" if (e.diag.sqlstate == "53300" and "s1" in str(e)) \
                            else None
                        if key is None:
                            with lock:
                                outcome["other"].append(str(e))
                            continue
                        time.sleep(0.02)
                    with lock:
                        outcome[key] += 1

        threads = [threading.Thread(target=slow_load, daemon=True) for _ in range(8)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        during, errors = point_queries(proxy, 3.0)
        stop.set()
        for t in threads:
            t.join(timeout=10)
        sgtest.check_eq(errors, [], "s0 point queries while s1 is saturated")
        sgtest.check_eq(outcome["other"][:3], [], "other errors on s1")
        sgtest.check(outcome["ok"] > 0 and outcome["saturated"] > 0,
                     "some s1 statements ran and some were refused at the limit", outcome)
        sgtest.note("s0 point query latency before: p50 %.2f ms p99 %.2f ms (%d queries)" % (
            percentile(before, 0.5) * 1000, percentile(before, 0.99) * 1000, len(before)))
        sgtest.note("s0 point query latency during: p50 %.2f ms p99 %.2f ms (%d queries); "
                    "s1: %d ran, %d refused (53300)" % (
                        percentile(during, 0.5) * 1000, percentile(during, 0.99) * 1000,
                        len(during), outcome["ok"], outcome["saturated"]))
        log = proxy.log_text()
        slow = [line for line in log.splitlines() if '"slow_statement"' in line]
        sgtest.check(slow and '"request":"' in slow[0] and '"backend_pid":' in slow[0]
                     and '"shard":"s1"' in slow[0], "slow_statement lines with a request id",
                     slow[:2])
    finally:
        sgtest.check_eq(proxy.stop(), 0, "the proxy's exit code")


if __name__ == "__main__":
    sgtest.run(main)
