"""test_replica_failure.py: a replica stopped under a read load.

Eight clients read through the proxy in a loop. One replica is stopped
(immediate shutdown): reads in flight on it are run again on the primary
(nothing had been answered yet), so at most those few can fail, and after
that none does. Started again, the replica takes reads once its circuit
breaker's probe succeeds. Runs last in the suite (it restarts a node)."""
import os
import subprocess
import threading
import time

import psycopg

from sgtest import check, dsn, fail, run_parts

BASE = int(os.environ["PGTEST_BASE_PORT"])
PRIMARY, R1, R2 = BASE, BASE + 1, BASE + 2
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SESSION = os.environ.get("SG_POOL_MODE") == "session"


def pg_ctl(*args):
    datadir = os.path.join(ROOT, ".cluster", str(BASE), "s0r1", "data")
    cmd = ["/usr/lib/postgresql/15/bin/pg_ctl", "-D", datadir, "-w", *args]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--"] + cmd
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


class Load:
    def __init__(self, n):
        self.stop = False
        self.events = []  # (time, port or exception name)
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.work, daemon=True) for _ in range(n)]

    def work(self):
        conn = psycopg.connect(dsn(), autocommit=True)
        while not self.stop:
            try:
                port = conn.execute("select inet_server_port()").fetchone()[0]
                item = port
            except psycopg.Error as e:
                item = type(e).__name__
                if conn.closed:
                    conn = psycopg.connect(dsn(), autocommit=True)
            with self.lock:
                self.events.append((time.monotonic(), item))
        conn.close()

    def since(self, t0):
        with self.lock:
            return [x for (t, x) in self.events if t >= t0]


def test_replica_stopped_mid_load():
    if SESSION:
        print("  skipped in session pooling (reads do not go to replicas)")
        return
    load = Load(8)
    for t in load.threads:
        t.start()
    try:
        time.sleep(1.0)
        before = load.since(0)
        check(R1 in before and R2 in before, "both replicas take reads before the stop",
              sorted(set(before), key=str))
        t_stop = time.monotonic()
        pg_ctl("stop", "-m", "immediate")
        time.sleep(2.0)
        during = load.since(t_stop)
        errors = [x for x in during if not isinstance(x, int)]
        settled = [x for x in load.since(t_stop + 0.5)]
        late_errors = [x for x in settled if not isinstance(x, int)]
        print("  after the stop: %d reads, %d errors (%s), %d errors after 0.5 s"
              % (len(during), len(errors), sorted(set(errors)), len(late_errors)))
        check(len(errors) <= 8, "at most the in-flight reads fail", len(errors))
        check(len(late_errors) == 0, "no error once the node is known down", late_errors[:5])
        check(R1 not in settled, "no read lands on the stopped replica", None)
        t_start = time.monotonic()
        pg_ctl("start", "-l", os.path.join(ROOT, ".cluster", str(BASE), "s0r1", "postgres.log"))
        deadline = t_start + 10
        while R1 not in load.since(t_start):
            if time.monotonic() > deadline:
                fail("the restarted replica got no reads within 10 s")
            time.sleep(0.1)
        print("  restarted replica takes reads again after %.2f s" % (time.monotonic() - t_start))
        errors_after = [x for x in load.since(t_start) if not isinstance(x, int)]
        check(not errors_after, "no errors after the restart", errors_after[:5])
    finally:
        load.stop = True
        for t in load.threads:
            t.join(5)
        try:
            pg_ctl("start", "-l", os.path.join(ROOT, ".cluster", str(BASE), "s0r1", "postgres.log"))
        except subprocess.CalledProcessError:
            pass  # already running


if __name__ == "__main__":
    run_parts([("replica stopped mid-load", test_replica_stopped_mid_load)])
