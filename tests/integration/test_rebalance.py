"""test_rebalance.py - `shardgate rebalance` moving rows online under two proxies.

One rebalance turns map OLD into NEW:
  rb_users (12 buckets, rb_orders co-located): from s0/s1 to s0/s1/s2, buckets 4, 5, 10, 11 move
  rb_events (range): keys from 5000 up split off s1 to s2
  rb_tenants (directory): tenant 'acme' moves from s0 to s2
while writers insert and update rows through both proxies and a reader reads them.
The CLI is killed (kill -9) during the copy and again during a cut-over (with the
proxies paused): then a statement on a moving key waits, one on a key that stays
does not, and apply run again completes. Afterwards: every acknowledged write is on
the shard NEW names, exactly once; verify passes; no client saw an error; no
replication slot, publication or subscription is left; a planted row makes verify
fail naming its unit; abort undoes a move that has not cut over.
"""
import os
import random
import subprocess
import sys
import tempfile
import threading
import time

import psycopg

sys.path.insert(0, os.path.dirname(__file__))
import sgtest  # noqa: E402

BASE = int(sgtest.env("PGTEST_BASE_PORT"))
SHARD_PORTS = {"s0": BASE, "s1": BASE + 3, "s2": BASE + 4}
MODE = sgtest.pool_mode()
BIN = sgtest.env("SG_SHARDGATE")
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUCKETS = 12
OLD_PLACEMENT = ["s0", "s1"] * 6
NEW_PLACEMENT = list(OLD_PLACEMENT)
for b in (4, 10):
    NEW_PLACEMENT[b] = "s2"  # from s0
for b in (5, 11):
    NEW_PLACEMENT[b] = "s2"  # from s1
MOVE2_PLACEMENT = list(NEW_PLACEMENT)
MOVE2_PLACEMENT[0] = "s1"  # for the abort test


def shard_dsn(shard):
    return "host=127.0.0.1 port=%d user=postgres password=postgres dbname=app" % SHARD_PORTS[shard]


def direct(shard):
    return psycopg.connect(shard_dsn(shard), autocommit=True)


def config(path, proxy_port, placement, ranges, pins):
    pin_text = ", ".join("%s: %s" % (k, v) for k, v in pins.items())
    with open(path, "w") as f:
        f.write("""listen: 127.0.0.1:%d
workers: 2
pool: { mode: %s, size: 10 }
timeouts: { wait: 5s, login: 10s }
log: { level: info }
health: { interval: 100ms, failures_to_open: 3, open_for: 1s }
auth: { method: trust }
admin: { users: [postgres] }
backend: { user: postgres, password: postgres, database: app }
shards:
  - { name: s0, primary: 127.0.0.1:%d }
  - { name: s1, primary: 127.0.0.1:%d }
  - { name: s2, primary: 127.0.0.1:%d }
default_shard: s0
tables:
  rb_users:  { key: id, strategy: hash, buckets: %d, placement: [%s] }
  rb_orders: { key: user_id, strategy: hash, colocate_with: rb_users }
  rb_events: { key: id, strategy: range, ranges: [%s] }
  rb_tenants:
    key: tenant_id
    type: text
    strategy: directory
    directory: { shard: s0, table: shardgate.directory, assign: s0, pinned: { %s } }
""" % (proxy_port, MODE, SHARD_PORTS["s0"], SHARD_PORTS["s1"], SHARD_PORTS["s2"], BUCKETS,
            ", ".join(placement), ranges, pin_text))


OLD_RANGES = "{ below: 1000, shard: s0 }, { shard: s1 }"
NEW_RANGES = "{ below: 1000, shard: s0 }, { below: 5000, shard: s1 }, { shard: s2 }"


def cleanup_shards():
    for shard in SHARD_PORTS:
        with direct(shard) as c:
            for (sub,) in c.execute("SELECT subname FROM pg_subscription "
                                    "WHERE subname LIKE 'shardgate_rb_%'").fetchall():
                c.execute("ALTER SUBSCRIPTION %s DISABLE" % sub)
                c.execute("ALTER SUBSCRIPTION %s SET (slot_name = NONE)" % sub)
                c.execute("DROP SUBSCRIPTION %s" % sub)
        with direct(shard) as c:
            for (pub,) in c.execute("SELECT pubname FROM pg_publication "
                                    "WHERE pubname LIKE 'shardgate_rb_%'").fetchall():
                c.execute("DROP PUBLICATION %s" % pub)
            c.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                      "WHERE slot_name LIKE 'shardgate_rb_%' AND NOT active")
            c.execute("DROP TABLE IF EXISTS rb_users, rb_orders, rb_events, rb_tenants")
            c.execute("DROP TABLE IF EXISTS shardgate.rebalance_units, "
                      "shardgate.rebalance_runs, shardgate.rebalance_marker")


def leftovers():
    found = []
    for shard in SHARD_PORTS:
        with direct(shard) as c:
            for q, what in (("SELECT subname FROM pg_subscription", "subscription"),
                            ("SELECT pubname FROM pg_publication", "publication"),
                            ("SELECT slot_name FROM pg_replication_slots", "slot")):
                for (name,) in c.execute(q).fetchall():
                    if name.startswith("shardgate_rb_"):
                        found.append("%s %s on %s" % (what, name, shard))
    return found


def create_tables():
    for shard in SHARD_PORTS:
        with direct(shard) as c:
            if shard == "s0":
                with open(os.path.join(ROOT, "sql", "directory.sql")) as f:
                    c.execute(f.read())
                c.execute("DELETE FROM shardgate.directory WHERE table_name = 'rb_tenants'")
            if shard == "s2":
                continue  # rebalance creates them there from the source's definition
            c.execute("CREATE TABLE rb_users (id bigint PRIMARY KEY, v int NOT NULL, note text)")
            c.execute("CREATE TABLE rb_orders (user_id bigint, id bigint, amount int, "
                      "PRIMARY KEY (user_id, id))")
            c.execute("CREATE TABLE rb_events (id bigint PRIMARY KEY, v int)")
            c.execute("CREATE TABLE rb_tenants (tenant_id text, id int, v int, "
                      "PRIMARY KEY (tenant_id, id))")


def Proxy(cfg, port, log):
    """A proxy running the map file cfg (which listens on port)."""
    return sgtest.OwnProxy(os.path.basename(log)[:-4], port=port, config_path=cfg)


class Worker(threading.Thread):
    """Writes (or reads) through one proxy until stopped; remembers what was
    acknowledged, every error, and the slowest statement."""

    def __init__(self, proxy, kind, ids, seed):
        super().__init__(daemon=True)
        self.proxy, self.kind, self.ids = proxy, kind, ids
        self.rand = random.Random(seed)
        self.stop = threading.Event()
        self.errors = []
        self.acked = {}      # user id -> v
        self.events = set()  # event ids
        self.tenant_rows = set()
        self.slowest = 0.0
        self.count = 0
        self.next_id = seed * 1000000

    def run(self):
        try:
            conn = psycopg.connect(self.proxy.dsn(), autocommit=True)
        except psycopg.Error as e:
            self.errors.append(str(e))
            return
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                self.step(conn)
            except psycopg.Error as e:
                self.errors.append("%s: %s" % (self.kind, e))
                time.sleep(0.05)
            self.slowest = max(self.slowest, time.monotonic() - t0)
            self.count += 1
        conn.close()

    def step(self, conn):
        r = self.rand.random()
        if self.kind == "reader":
            uid = self.rand.choice(self.ids)
            row = conn.execute("SELECT v FROM rb_users WHERE id = %s", (uid,)).fetchone()
            if row is None:
                self.errors.append("reader: user %d missing" % uid)
            return
        if r < 0.3:
            self.next_id += 1
            uid = self.next_id
            conn.execute("INSERT INTO rb_users (id, v, note) VALUES (%s, 1, 'new')", (uid,))
            self.acked[uid] = 1
        elif r < 0.7:
            uid = self.rand.choice(self.ids)
            v = conn.execute("UPDATE rb_users SET v = v + 1 WHERE id = %s RETURNING v",
                             (uid,)).fetchone()[0]
            self.acked[uid] = v
        elif r < 0.85:
            self.next_id += 1
            eid = 5000 + self.next_id % 1000000 + (self.next_id // 1000000) * 1000000
            conn.execute("INSERT INTO rb_events (id, v) VALUES (%s, 1)", (eid,))
            self.events.add(eid)
        else:
            self.next_id += 1
            tenant = "acme" if r < 0.93 else "zeta"
            conn.execute("INSERT INTO rb_tenants (tenant_id, id, v) VALUES (%s, %s, 1)",
                         (tenant, self.next_id))
            self.tenant_rows.add((tenant, self.next_id))


def shardgate(*args, env=None, check_rc=None):
    e = dict(os.environ)
    e.pop("SHARDGATE_FAILPOINT", None)
    if env:
        e.update(env)
    p = subprocess.run([BIN] + list(args), capture_output=True, text=True, env=e, timeout=300)
    if check_rc is not None and p.returncode != check_rc:
        sgtest.fail("shardgate %s: exit %d (expected %d)\nstdout:\n%s\nstderr:\n%s"
                    % (" ".join(args), p.returncode, check_rc, p.stdout[-3000:], p.stderr[-3000:]))
    return p


def main():
    work = tempfile.mkdtemp(prefix="sg-rebalance-")
    pa, pb = sgtest.free_port(), sgtest.free_port()
    old_a, old_b = os.path.join(work, "old-a.yaml"), os.path.join(work, "old-b.yaml")
    new = os.path.join(work, "new.yaml")
    move2 = os.path.join(work, "move2.yaml")
    config(old_a, pa, OLD_PLACEMENT, OLD_RANGES, {})
    config(old_b, pb, OLD_PLACEMENT, OLD_RANGES, {})
    config(new, pa, NEW_PLACEMENT, NEW_RANGES, {"acme": "s2"})
    config(move2, pa, MOVE2_PLACEMENT, NEW_RANGES, {"acme": "s2"})
    cleanup_shards()
    create_tables()
    proxy_a = Proxy(old_a, pa, os.path.join(work, "proxy-a.log"))
    proxy_b = Proxy(old_b, pb, os.path.join(work, "proxy-b.log"))
    proxies = ["--proxy", "127.0.0.1:%d" % pa, "--proxy", "127.0.0.1:%d" % pb]
    try:
        run_all(work, proxy_a, proxy_b, proxies, old_a, new, move2)
    finally:
        rc_a, rc_b = proxy_a.stop(), proxy_b.stop()
        if rc_a != 0 or rc_b != 0:
            sgtest.fail("proxies exited with %d and %d (logs in %s)" % (rc_a, rc_b, work))
        cleanup_shards()


def run_all(work, proxy_a, proxy_b, proxies, old, new, move2):
    # Initial rows, through a proxy (which places them by OLD).
    with psycopg.connect(proxy_a.dsn(), autocommit=True) as c:
        with c.cursor() as cur:
            cur.executemany("INSERT INTO rb_users (id, v, note) VALUES (%s, 0, 'seed')",
                            [(i,) for i in range(1, 2001)])
            cur.executemany("INSERT INTO rb_orders (user_id, id, amount) VALUES (%s, %s, 5)",
                            [(i, j) for i in range(1, 2001) for j in (1, 2)])
            cur.executemany("INSERT INTO rb_events (id, v) VALUES (%s, 0)",
                            [(i,) for i in range(0, 10000, 3)])
            cur.executemany("INSERT INTO rb_tenants (tenant_id, id, v) VALUES (%s, %s, 0)",
                            [(t, i) for t in ("acme", "zeta") for i in range(200)])
    shardgate("rebalance", "verify", "-c", old, check_rc=0)

    p = shardgate("rebalance", "plan", "-c", old, "--to", new, check_rc=0)
    for want in ("rb_users buckets 4,10 of 12: s0 -> s2", "rb_users buckets 5,11 of 12: s1 -> s2",
                 "rb_events keys [5000, +inf): s1 -> s2", "rb_tenants key acme: s0 -> s2",
                 "rb_orders: replica identity covers the key user_id"):
        sgtest.check(want in p.stdout, want, p.stdout, "plan output")
    p = shardgate("rebalance", "apply", "-c", old, "--to", new, "--dry-run", *proxies, check_rc=0)
    sgtest.check("CREATE PUBLICATION" in p.stdout and "REBALANCE SWITCH" in p.stdout,
                 "the SQL and proxy commands of every step", p.stdout[:2000], "--dry-run")
    sgtest.check_eq(leftovers(), [], "a dry run creates nothing")

    # Writers through both proxies (disjoint ids), a reader of the seeds.
    odd = list(range(1, 2001, 2))
    even = list(range(2, 2001, 2))
    workers = [Worker(proxy_a, "writer", odd, 1), Worker(proxy_b, "writer", even, 2),
               Worker(proxy_a, "reader", list(range(1, 2001)), 3),
               Worker(proxy_b, "reader", list(range(1, 2001)), 4)]
    for w in workers:
        w.start()
    time.sleep(0.5)

    # kill -9 during the copy, then during a cut-over (proxies paused).
    p = shardgate("rebalance", "apply", "-c", old, "--to", new, *proxies,
                  env={"SHARDGATE_FAILPOINT": "rebalance_copying"})
    sgtest.check(p.returncode == -9, -9, (p.returncode, p.stdout[-1500:], p.stderr[-1500:]),
                 "apply killed during the copy")
    p = shardgate("rebalance", "apply", "-c", old, "--to", new, *proxies,
                  env={"SHARDGATE_FAILPOINT": "rebalance_paused"})
    sgtest.check_eq(p.returncode, -9, "apply killed during the cut-over")
    state = proxy_a.admin("SHOW REBALANCE")[0]
    sgtest.check_eq(state[1], "paused", "proxy A still pauses the unit after the CLI died")
    unit = state[3]
    sgtest.note("paused unit: %s" % unit)
    # A proxy started now, with the map the rebalance began from, reads the
    # bookkeeping and holds the unit being cut over too.
    pc = sgtest.free_port()
    old_c = os.path.join(work, "old-c.yaml")
    config(old_c, pc, OLD_PLACEMENT, OLD_RANGES, {})
    proxy_c = Proxy(old_c, pc, os.path.join(work, "proxy-c.log"))
    state_c = proxy_c.admin("SHOW REBALANCE")[0]
    sgtest.check_eq((state_c[1], state_c[3]), ("paused", unit), "a proxy started during the cut-over")
    sgtest.check_eq(proxy_c.stop(), 0, "proxy C's exit")
    # The first unit moves buckets 4,10 (s0 -> s2): user 5 is in a bucket
    # that stays; find a moving one and a staying one by asking the proxy.
    moving = staying = None
    for uid in range(1, 200):
        route = "\n".join(r[0] for r in proxy_a.admin(
            "SHOW ROUTE SELECT * FROM rb_users WHERE id = %d" % uid))
        if "bucket 4 " in route or "bucket 10 " in route:
            moving = moving or uid
        elif "bucket 0 " in route:
            staying = staying or uid
    sgtest.check(moving and staying, "a moving and a staying user id", (moving, staying))
    with psycopg.connect(proxy_b.dsn(), autocommit=True) as c:
        c.execute("SET statement_timeout = '5s'")
        c.execute("UPDATE rb_users SET note = 'stays' WHERE id = %s", (staying,))
    done = {}

    def blocked_update():
        try:
            with psycopg.connect(proxy_b.dsn(), autocommit=True) as c:
                row = c.execute("UPDATE rb_users SET note = 'waited' WHERE id = %s RETURNING id",
                                (moving,)).fetchone()
                done["row"] = row
        except psycopg.Error as e:
            done["error"] = str(e)

    t = threading.Thread(target=blocked_update, daemon=True)
    t.start()
    waiting = 0
    for _ in range(100):
        waiting = int(proxy_b.admin("SHOW REBALANCE")[0][4])
        if waiting >= 1:
            break
        time.sleep(0.05)
    sgtest.check(waiting >= 1, "the update of a moving key waits", waiting)
    sgtest.check("row" not in done and "error" not in done, "not answered while paused", done)

    p = shardgate("rebalance", "apply", "-c", old, "--to", new, *proxies, check_rc=0)
    t.join(timeout=30)
    sgtest.check_eq(done.get("row"), (moving,), "the waiting update ran after the switch")
    time.sleep(0.5)
    for w in workers:
        w.stop.set()
    for w in workers:
        w.join(timeout=30)
    errors = [e for w in workers for e in w.errors]
    sgtest.check_eq(errors[:5], [], "client errors")
    sgtest.check(all(w.count > 10 for w in workers), "every worker ran", [w.count for w in workers])
    pauses = [line for line in p.stdout.splitlines() if '"phase":"switched"' in line]
    sgtest.note("units switched: %d; cut-over pauses: %s" % (len(pauses), [
        line.split('"detail":')[1].rstrip("}") for line in pauses]))
    sgtest.note("slowest statement seen by a client: %.0f ms (includes the pause held "
                "while the CLI was killed)" % (max(w.slowest for w in workers) * 1000))

    # Every acknowledged write, exactly once, where NEW puts it.
    shardgate("rebalance", "verify", "-c", new, check_rc=0)
    users = {}
    events = {}
    tenants = {}
    for shard in SHARD_PORTS:
        with direct(shard) as c:
            for uid, v in c.execute("SELECT id, v FROM rb_users").fetchall():
                sgtest.check(uid not in users, "user %d once" % uid, "also on %s" % shard)
                users[uid] = (v, shard)
            for (eid,) in c.execute("SELECT id FROM rb_events").fetchall():
                sgtest.check(eid not in events, "event %d once" % eid, "also on %s" % shard)
                events[eid] = shard
            for tid, i in c.execute("SELECT tenant_id, id FROM rb_tenants").fetchall():
                sgtest.check((tid, i) not in tenants, "tenant row once", (tid, i, shard))
                tenants[(tid, i)] = shard
    for w in workers:
        for uid, v in w.acked.items():
            sgtest.check(uid in users and users[uid][0] >= v, "user %d with v >= %d" % (uid, v),
                         users.get(uid))
        for eid in w.events:
            sgtest.check_eq(events.get(eid), "s2" if eid >= 5000 else events.get(eid),
                            "event %d" % eid)
        for row in w.tenant_rows:
            sgtest.check_eq(tenants.get(row), "s2" if row[0] == "acme" else "s0", str(row))
    sgtest.check_eq(len([u for u in range(1, 2001) if u in users]), 2000, "seed users")
    sgtest.check_eq(leftovers(), [], "replication objects left")
    with psycopg.connect(proxy_a.dsn(), autocommit=True) as c:
        n = c.execute("SELECT count(*) FROM rb_orders").fetchone()[0]
        sgtest.check_eq(n, 4000, "orders through the proxy after the move (no duplicates)")
        n = c.execute("SELECT count(*) FROM rb_tenants WHERE tenant_id = 'acme'").fetchone()[0]
        sgtest.check(n >= 200, ">= 200 acme rows", n)
    p = shardgate("rebalance", "apply", "-c", old, "--to", new, *proxies, check_rc=0)
    sgtest.check("already" in p.stdout, "a finished run is not run again", p.stdout)

    # A proxy restarted with the old file serves the map the rebalance reached.
    pd = sgtest.free_port()
    old_d = os.path.join(work, "old-d.yaml")
    config(old_d, pd, OLD_PLACEMENT, OLD_RANGES, {})
    proxy_d = Proxy(old_d, pd, os.path.join(work, "proxy-d.log"))
    try:
        sgtest.check_eq(proxy_d.admin("SHOW REBALANCE")[0][0],
                        proxy_a.admin("SHOW REBALANCE")[0][0], "map version after a restart")
        route = "\n".join(r[0] for r in proxy_d.admin(
            "SHOW ROUTE SELECT * FROM rb_users WHERE id = %d" % moving))
        sgtest.check("s2" in route, "user %d routed to s2" % moving, route)
        with psycopg.connect(proxy_d.dsn(), autocommit=True) as c:
            n = c.execute("SELECT count(*) FROM rb_orders").fetchone()[0]
            sgtest.check_eq(n, 4000, "orders through the restarted proxy")
    finally:
        sgtest.check_eq(proxy_d.stop(), 0, "proxy D's exit")

    # abort: a move that has not cut over is undone, nothing left behind.
    p = shardgate("rebalance", "apply", "-c", new, "--to", move2, *proxies,
                  env={"SHARDGATE_FAILPOINT": "rebalance_copying"})
    sgtest.check_eq(p.returncode, -9, "apply killed during the copy")
    sgtest.check(leftovers() != [], "a subscription while copying", leftovers())
    shardgate("rebalance", "abort", "-c", new, "--to", move2, *proxies, check_rc=0)
    sgtest.check_eq(leftovers(), [], "replication objects left after abort")
    shardgate("rebalance", "verify", "-c", new, check_rc=0)

    # A row planted on the wrong shard: verify fails and names its unit.
    uid = next(u for u in range(1, 2001) if users[u][1] == "s2")
    with direct("s0") as c:
        c.execute("INSERT INTO rb_users (id, v) VALUES (%s, 0)", (uid,))
    p = shardgate("rebalance", "verify", "-c", new)
    sgtest.check_eq(p.returncode, 1, "verify with a planted row")
    sgtest.check("rb_users" in p.stdout and "s0" in p.stdout, "the table and shard named",
                 p.stdout[-2000:])


if __name__ == "__main__":
    if MODE != "transaction":
        # Session pooling binds a session to one shard (README, "Limits"):
        # the writers here need every shard, so the test runs once, under
        # transaction pooling.
        print("ok (runs under transaction pooling only)")
        sys.exit(0)
    sgtest.run(main)
