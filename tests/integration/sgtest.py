"""sgtest.py - small helpers shared by the Python integration tests.

The runner (tests/run-all.sh) gives every test these environment variables:
SG_DSN, SG_HOST, SG_PORT, SG_POOL_MODE, SG_PROXY_LOG, SG_CONFIG, SG_SHARDGATE,
PGTEST_DSN (direct to the s0 primary) and PGTEST_BASE_PORT.

A test is one process: exit 0 = pass, anything else = fail. On failure print
what was expected and what came instead (fail() and check() do that).
"""
import json
import os
import sys
import time
import traceback

_STARTED = time.monotonic()


def env(name, default=None):
    value = os.environ.get(name, default)
    if value is None:
        fail("environment variable %s is not set (run through tests/run-all.sh)" % name)
    return value


def dsn(**extra):
    """libpq conninfo to the proxy, with extra key=value pairs appended."""
    s = env("SG_DSN")
    for k, v in extra.items():
        s += " %s='%s'" % (k, str(v).replace("\\", "\\\\").replace("'", "\\'"))
    return s


def direct_dsn(**extra):
    """libpq conninfo straight to the s0 primary (bypassing the proxy)."""
    s = env("PGTEST_DSN")
    for k, v in extra.items():
        s += " %s='%s'" % (k, str(v).replace("\\", "\\\\").replace("'", "\\'"))
    return s


def host():
    return env("SG_HOST", "127.0.0.1")


def port():
    return int(env("SG_PORT"))


def pool_mode():
    return env("SG_POOL_MODE", "transaction")


def conninfo_dict(conninfo):
    """Parses the simple 'k=v k=v' conninfo the runner uses."""
    out = {}
    for word in conninfo.split():
        if "=" in word:
            k, v = word.split("=", 1)
            out[k] = v.strip("'")
    return out


def asyncpg_args(**extra):
    """Keyword arguments for asyncpg.connect() to the proxy."""
    d = conninfo_dict(env("SG_DSN"))
    args = dict(host=d.get("host", host()), port=int(d.get("port", port())),
                user=d.get("user", "postgres"), database=d.get("dbname", "app"))
    if "password" in d:
        args["password"] = d["password"]
    args.update(extra)
    return args


def table_name(prefix):
    """A table name unique per test, pool mode and process."""
    return "%s_%s_%d" % (prefix, pool_mode(), os.getpid())


_failures = []


def fail(msg):
    _failures.append(msg)
    print("FAIL: %s" % msg, flush=True)
    sys.exit(1)


def check(cond, expected, got, what=""):
    """Fails with 'expected X, got Y' unless cond holds."""
    if not cond:
        fail("%s%sexpected %r, got %r" % (what, ": " if what else "", expected, got))


def check_eq(got, expected, what=""):
    check(got == expected, expected, got, what)


def note(msg):
    print("  %s" % msg, flush=True)


def elapsed():
    return time.monotonic() - _STARTED


def run(main):
    """Runs main(), turning any uncaught exception into a failure with a
    traceback, and prints the total time."""
    try:
        main()
    except SystemExit:
        raise
    except BaseException:
        traceback.print_exc()
        fail("unexpected exception (see traceback above)")
    print("ok (%.1fs, pool mode %s)" % (elapsed(), pool_mode()), flush=True)
    sys.exit(0)


def run_parts(parts, cleanup=None):
    """Runs named parts [(name, fn), ...] one after the other. A failing
    part is reported and the others still run (so one proxy bug does not
    hide the rest); exit 1 at the end if any failed. SG_ONLY="a,b" runs
    only the parts so named (for debugging)."""
    only = [x for x in os.environ.get("SG_ONLY", "").split(",") if x]
    failed = []
    try:
        for name, fn in parts:
            if only and name not in only:
                continue
            t0 = time.monotonic()
            print("- %s" % name, flush=True)
            try:
                fn()
                note("ok (%.2fs)" % (time.monotonic() - t0))
            except SystemExit as e:
                if e.code not in (0, None):
                    failed.append((name, _failures[-1] if _failures else "exit %r" % e.code))
                    note("FAILED (%.2fs)" % (time.monotonic() - t0))
            except BaseException as e:
                traceback.print_exc()
                failed.append((name, "%s: %s" % (type(e).__name__, e)))
                print("FAIL: %s: unexpected exception (see traceback above)" % name, flush=True)
    finally:
        if cleanup:
            try:
                cleanup()
            except Exception as e:  # noqa
                print("cleanup failed: %s" % e, flush=True)
    if failed:
        # A recap, so that the end of the output (all the runner shows)
        # says what failed.
        print("FAILED %d part(s) (%.1fs, pool mode %s):" % (len(failed), elapsed(), pool_mode()))
        for name, why in failed:
            why = " ".join(str(why).split())
            print("  * %s: %s" % (name, why[:400]), flush=True)
        sys.exit(1)
    print("ok (%.1fs, pool mode %s)" % (elapsed(), pool_mode()), flush=True)
    sys.exit(0)


def log_offset():
    """Current size of the proxy's log, to read only what comes after."""
    try:
        return os.path.getsize(env("SG_PROXY_LOG"))
    except OSError:
        return 0


def log_lines_since(offset):
    """Raw lines of the proxy log written after `offset`."""
    with open(env("SG_PROXY_LOG"), "rb") as f:
        f.seek(offset)
        data = f.read()
    # A last line without its newline may still be being written.
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [l.decode("utf-8", "replace") for l in lines]


def parse_log_lines(lines):
    """json.loads every line; returns (objects, [bad lines])."""
    objs, bad = [], []
    for l in lines:
        try:
            o = json.loads(l)
            if not isinstance(o, dict):
                raise ValueError("not an object")
            objs.append(o)
        except ValueError:
            bad.append(l)
    return objs, bad


def sqlstate_of(exc):
    """SQLSTATE of a psycopg or asyncpg exception (None if it has none)."""
    s = getattr(exc, "sqlstate", None)
    if s:
        return s
    diag = getattr(exc, "diag", None)
    if diag is not None and getattr(diag, "sqlstate", None):
        return diag.sqlstate
    return None


class Holders:
    """Connections on the same proxy worker as `target` that, one at a time,
    take a server connection (BEGIN + a statement) and give it back, so that
    in transaction pooling the target's next transaction lands on another
    server connection than its previous one. A client only uses the server
    connections of its own proxy worker; the proxy puts its worker number in
    the top byte of the BackendKeyData process id, so holders on the same
    worker as `target` are picked (falling back to several on any worker).
    `connect` opens an autocommit psycopg connection to the proxy."""

    def __init__(self, target, connect, n=3):
        want = target.info.backend_pid >> 24
        self.conns, spare = [], []
        for _ in range(40):
            c = connect()
            if c.info.backend_pid >> 24 == want:
                self.conns.append(c)
                if len(self.conns) == n:
                    break
            else:
                spare.append(c)
        if len(self.conns) < n:
            self.conns += spare[:8]
            spare = spare[8:]
        for c in spare:
            c.close()
        self.open = [False] * len(self.conns)
        self.i = 0

    def shuffle(self):
        k = self.i % len(self.conns)
        self.i += 1
        c = self.conns[k]
        if self.open[k]:
            c.execute("commit")
            self.open[k] = False
        else:
            c.execute("begin")
            c.execute("select 1")
            self.open[k] = True

    def close(self):
        for k, c in enumerate(self.conns):
            if self.open[k]:
                c.execute("commit")
            c.close()


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class OwnProxy:
    """A proxy of the test's own, on a free port, with the configuration
    text `yaml` (its listen line is added: give everything else), or the
    file config_path as it is (listening on `port`). The runner's cluster
    is behind it; its log goes to a temporary file."""

    def __init__(self, name, yaml=None, port=None, config_path=None):
        import subprocess
        import tempfile
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="sg-%s-" % name)
        self.cfg = config_path or os.path.join(self.dir, name + ".yaml")
        self.log_path = os.path.join(self.dir, name + ".log")
        if not config_path:
            self.write(yaml)
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([env("SG_SHARDGATE"), "-c", self.cfg], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        import socket
        for _ in range(100):  # listening means started (whatever auth it wants)
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.1)
        if self.proc.poll() is None:
            self.proc.kill()  # never left behind
            self.proc.wait()
        fail("proxy %s did not start; its log:\n%s" % (name, self.log_text()))

    def write(self, yaml, listen_port=None):
        with open(self.cfg, "w") as f:
            f.write("listen: 127.0.0.1:%d\n%s" % (listen_port or self.port, yaml))

    def dsn(self, db="app"):
        return "host=127.0.0.1 port=%d user=postgres dbname=%s connect_timeout=3" % (self.port, db)

    def connect(self):
        import psycopg
        return psycopg.connect(self.dsn(), autocommit=True)

    def admin(self, sql):
        import psycopg
        with psycopg.connect(self.dsn("shardgate"), autocommit=True) as c:
            cur = c.execute(sql)
            return cur.fetchall() if cur.description else cur.statusmessage

    def wait(self, timeout=30):
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.log.close()

    def stop(self):
        """SIGINT, then the exit code (0 also means ASan found no leak)."""
        import signal
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        return self.wait()

    def log_text(self):
        with open(self.log_path) as f:
            return f.read()
