"""test_two_phase.py: writes over several shards with routing.two_phase_commit.

The test runs its own proxy (the runner's config with two_phase_commit: true,
on a free port), so that it can kill it at the worst moments:

- a multi-row INSERT over both shards commits on both; the shards keep no
  prepared transaction and no decision row;
- a statement that fails on one shard changes neither;
- the proxy dies after every shard prepared but before the decision was
  recorded (SHARDGATE_FAILPOINT=before_decision): after a restart the
  transaction is absent from both shards and nothing stays prepared;
- the proxy dies after recording the decision, before any COMMIT PREPARED
  (after_decision): after a restart the transaction is on both shards and
  nothing stays prepared.

Runs in transaction pooling only (session pooling keeps one shard).
"""
import os
import re
import subprocess
import time

import psycopg

from sgtest import check, check_eq, direct_dsn, env, fail, free_port, note, run_parts

BASE = int(os.environ["PGTEST_BASE_PORT"])
SHARD_PORTS = [BASE, BASE + 3]
SESSION = os.environ.get("SG_POOL_MODE") == "session"
PORT = free_port()


def shard_conn(i):
    return psycopg.connect(direct_dsn().replace("port=%d" % BASE, "port=%d" % SHARD_PORTS[i]),
                           autocommit=True)


def write_config():
    with open(env("SG_CONFIG")) as f:
        text = f.read()
    text = re.sub(r"(?m)^listen: .*$", "listen: 127.0.0.1:%d" % PORT, text)
    text = re.sub(r"(?m)^metrics: .*$", "", text)  # the runner's proxy has that port
    text = re.sub(r"(?m)^routing: \{", "routing: { two_phase_commit: true,", text)
    path = os.path.join(os.path.dirname(env("SG_PROXY_LOG")), "two_phase.yaml")
    with open(path, "w") as f:
        f.write(text)
    return path


class Proxy:
    def __init__(self, config, failpoint=None):
        envv = dict(os.environ)
        if failpoint:
            envv["SHARDGATE_FAILPOINT"] = failpoint
        self.log = open(os.path.join(os.path.dirname(env("SG_PROXY_LOG")), "two_phase.log"), "ab")
        self.p = subprocess.Popen([env("SG_SHARDGATE"), "-c", config], stdout=self.log,
                                  stderr=self.log, env=envv)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                psycopg.connect(self.dsn(), connect_timeout=1).close()
                return
            except psycopg.Error:
                time.sleep(0.1)
        fail("the two-phase proxy did not start")

    def dsn(self):
        return "host=127.0.0.1 port=%d user=postgres dbname=app" % PORT

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(2)
            self.p.wait(10)
        self.log.close()


def key_on(shard, start):
    """A key of sg_users on the given shard (bucket mod 2 as in the map)."""
    with shard_conn(0) as c:
        return c.execute(
            "SELECT k FROM generate_series(%s::bigint, %s + 1000) k WHERE "
            "(((hashint8extended(k, 8816678312871386365)::numeric + 5305509591434766563) "
            "%% 18446744073709551616 + 18446744073709551616) %% 18446744073709551616) %% 16 "
            "%% 2 = %s LIMIT 1", (start, start, shard)).fetchone()[0]


def rows(ids):
    found = []
    for i in range(2):
        with shard_conn(i) as c:
            found += [r[0] for r in c.execute("SELECT id FROM sg_users WHERE id = ANY(%s)",
                                              (list(ids),))]
    return sorted(found)


def prepared():
    out = []
    for i in range(2):
        with shard_conn(i) as c:
            out += [r[0] for r in c.execute("SELECT gid FROM pg_prepared_xacts WHERE gid LIKE 'sg\\_%%'")]
    return out


def decisions():
    with shard_conn(0) as c:
        return c.execute("SELECT count(*) FROM shardgate.decisions").fetchone()[0]


CONFIG = None


def setup():
    global CONFIG
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "..", "..", "sql", "two_phase.sql")) as f:
        sql = f.read()
    with shard_conn(0) as c:
        c.execute(sql)
    for i in range(2):
        with shard_conn(i) as c:
            c.execute("CREATE TABLE IF NOT EXISTS sg_users (id bigint PRIMARY KEY, name text, "
                      "score int CHECK (score < 1000000))")
    CONFIG = write_config()


def part_commit():
    a, b = key_on(0, 10**9), key_on(1, 10**9)
    px = Proxy(CONFIG)
    try:
        with psycopg.connect(px.dsn(), autocommit=True) as c:
            c.execute("INSERT INTO sg_users (id, name) VALUES (%s, '2pc'), (%s, '2pc')", (a, b))
    finally:
        px.stop()
    check_eq(rows([a, b]), sorted([a, b]), "rows on both shards")
    check_eq(prepared(), [], "prepared transactions left")
    check_eq(decisions(), 0, "decision rows left")


def part_failure():
    a, b = key_on(0, 2 * 10**9), key_on(1, 2 * 10**9)
    with shard_conn(1) as c:
        c.execute("INSERT INTO sg_users (id, name, score) VALUES (%s, 'f', 999999)", (b,))
    px = Proxy(CONFIG)
    try:
        with psycopg.connect(px.dsn(), autocommit=True) as c:
            c.execute("INSERT INTO sg_users (id, name, score) VALUES (%s, 'f', 1)", (a,))
            try:
                c.execute("UPDATE sg_users SET score = score + 10 WHERE name = 'f'")
                fail("the UPDATE violating a CHECK on one shard succeeded")
            except psycopg.errors.CheckViolation:
                pass
    finally:
        px.stop()
    with shard_conn(0) as c:
        check_eq(c.execute("SELECT score FROM sg_users WHERE id = %s", (a,)).fetchone()[0], 1,
                 "s0's row after the failed UPDATE")
    check_eq(prepared(), [], "prepared transactions left")


def part_transaction():
    """BEGIN; writes on both shards; COMMIT (and the same with ROLLBACK)."""
    a, b = key_on(0, 5 * 10**9), key_on(1, 5 * 10**9)
    c0, c1 = key_on(0, 6 * 10**9), key_on(1, 6 * 10**9)
    px = Proxy(CONFIG)
    try:
        with psycopg.connect(px.dsn()) as c:
            c.execute("INSERT INTO sg_users (id, name) VALUES (%s, 't')", (a,))
            c.execute("INSERT INTO sg_users (id, name) VALUES (%s, 't')", (b,))
            check_eq(c.execute("SELECT count(*) FROM sg_users WHERE id = %s", (a,)).fetchone()[0],
                     1, "own write visible inside the transaction")
            c.commit()
            c.execute("INSERT INTO sg_users (id, name) VALUES (%s, 't')", (c0,))
            c.execute("INSERT INTO sg_users (id, name) VALUES (%s, 't')", (c1,))
            c.rollback()
    finally:
        px.stop()
    check_eq(rows([a, b, c0, c1]), sorted([a, b]), "committed transaction present, rolled back absent")
    check_eq(prepared(), [], "prepared transactions left")
    check_eq(decisions(), 0, "decision rows left")


def crash(failpoint, expect_rows):
    start = {"before_decision": 3 * 10**9, "after_decision": 4 * 10**9}[failpoint]
    a, b = key_on(0, start), key_on(1, start)
    px = Proxy(CONFIG, failpoint)
    try:
        with psycopg.connect(px.dsn(), autocommit=True) as c:
            c.execute("INSERT INTO sg_users (id, name) VALUES (%s, 'x'), (%s, 'x')", (a, b))
        fail("the proxy answered although it should have died at %s" % failpoint)
    except psycopg.OperationalError:
        pass
    px.p.wait(10)
    check_eq(px.p.returncode, 70, "the proxy's exit status at the failpoint")
    px.log.close()
    left = prepared()
    check_eq(len(left), 2, "prepared transactions while the proxy is down")
    note("prepared while down: %s" % ", ".join(left))
    px = Proxy(CONFIG)  # recovery runs at start-up
    px.stop()
    check_eq(prepared(), [], "prepared transactions after recovery")
    check_eq(rows([a, b]), sorted([a, b]) if expect_rows else [],
             "the transaction after recovery (%s)" % failpoint)
    check_eq(decisions(), 0, "decision rows left after recovery")


def main():
    if SESSION:
        print("skipped in session pooling (one shard per session)")
        return
    setup()
    run_parts([
        ("commit", part_commit),
        ("failure_rolls_back", part_failure),
        ("transaction", part_transaction),
        ("crash_before_decision", lambda: crash("before_decision", False)),
        ("crash_after_decision", lambda: crash("after_decision", True)),
    ])


if __name__ == "__main__":
    main()
