"""test_many_clients.py: 1,000 clients connect to the proxy at once, each runs
one short query. Every client either succeeds or gets a clear error with
SQLSTATE 53300 (too many clients waiting / wait timeout); nothing else (no
reset connections, no hangs, no other errors).

Transaction pooling: a pool of 20 serves 1,000 short transactions well
within the 5 s wait, so all must succeed. Session pooling: a client holds a
server connection for its whole session, so some may get 53300; only the
accounting is asserted (and that at least 20 succeeded).
"""
import asyncio
import collections
import resource
import time

import asyncpg

from sgtest import asyncpg_args, check, check_eq, fail, note, pool_mode, run_parts

MODE = pool_mode()
N = 1000


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 4096) if hard != resource.RLIM_INFINITY else 4096
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < N + 100:
        fail("the test needs %d open files, the limit is %d" % (N + 100, soft))


async def one_client(k, start, stats):
    await start.wait()
    t0 = time.monotonic()
    conn = None
    try:
        conn = await asyncpg.connect(**asyncpg_args(timeout=30, ssl=False))
        v = await asyncio.wait_for(conn.fetchrow("select pg_sleep(0.01), $1::int", k), 30)
        if v[1] != k:
            return ("wrong", "client %d: expected %d, got %r" % (k, k, v[1]), time.monotonic() - t0)
        return ("ok", None, time.monotonic() - t0)
    except Exception as e:  # noqa
        state = getattr(e, "sqlstate", None)
        if state == "53300":
            return ("53300", str(e), time.monotonic() - t0)
        return ("other", "client %d: %s(%s) sqlstate=%s" % (k, type(e).__name__, e, state),
                time.monotonic() - t0)
    finally:
        if conn is not None:
            try:
                await asyncio.wait_for(conn.close(), 10)
            except Exception:  # noqa
                conn.terminate()


async def burst():
    start = asyncio.Event()
    stats = collections.Counter()
    tasks = [asyncio.ensure_future(one_client(k, start, stats)) for k in range(N)]
    await asyncio.sleep(0.1)
    t0 = time.monotonic()
    start.set()
    try:
        results = await asyncio.wait_for(asyncio.gather(*tasks), 90)
    except asyncio.TimeoutError:
        fail("1,000 clients did not all finish within 90 s (a hang)")
    took = time.monotonic() - t0
    kinds = collections.Counter(r[0] for r in results)
    note("%d clients in %.2fs: %d ok, %d got 53300, %d other errors, %d wrong results"
         % (N, took, kinds["ok"], kinds["53300"], kinds["other"], kinds["wrong"]))
    slowest = max(r[2] for r in results)
    note("slowest client: %.2fs" % slowest)
    samples = [r[1] for r in results if r[0] in ("other", "wrong")][:5]
    if samples:
        fail("clients failed with something other than 53300: %d; e.g. %s"
             % (kinds["other"] + kinds["wrong"], " | ".join(samples)))
    m53300 = [r[1] for r in results if r[0] == "53300"]
    if m53300:
        note("a 53300 message: %s" % m53300[0])
    check_eq(kinds["ok"] + kinds["53300"], N, "successes + 53300 errors")
    if MODE == "transaction":
        check_eq(kinds["ok"], N, "clients that succeeded in transaction pooling")
    else:
        check(kinds["ok"] >= 20, ">= 20 successes", kinds["ok"], "session pooling")


async def normal_client():
    conn = await asyncpg.connect(**asyncpg_args(timeout=15))
    try:
        check_eq(await conn.fetchval("select $1::int * 2", 21), 42, "a normal client afterwards")
    finally:
        await conn.close()


def part_burst():
    raise_fd_limit()
    asyncio.run(burst())


def part_after():
    # The pool may need a moment to reset session-mode servers.
    time.sleep(0.5)
    asyncio.run(normal_client())


run_parts([
    ("1000 clients at once", part_burst),
    ("a normal client afterwards", part_after),
])
