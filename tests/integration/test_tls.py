"""test_tls.py: TLS on both sides of the proxy.

A test CA, a server certificate for 127.0.0.1 and localhost, a second CA
that signed nothing, and a certificate for another host are made with the
openssl command in a temporary folder.

Clients (proxies of the test's own in front of the cluster's s0 primary):
under tls.mode require, psql, psycopg (sslmode=require and verify-full,
channel_binding=require: SCRAM-SHA-256-PLUS) and asyncpg log in over TLS and
run queries, large results and COPY included; plaintext gets FATAL 28000; a
wrong CA fails verify-full; bytes sent after SSLRequest before the answer
are refused (CVE-2021-23214); a raw SCRAM-SHA-256-PLUS exchange with the
right tls-server-end-point hash logs in, with a wrong one or a "y" flag it
is refused. Under tls.mode disable the proxy answers 'N': sslmode=require
fails, sslmode=prefer logs in without TLS. allow takes both.

Servers: a PostgreSQL of the test's own with ssl=on. backend.tls
verify-full and verify-ca log in over TLS (pg_stat_ssl says so), a wrong CA
fails, a certificate for another host fails verify-full but passes
verify-ca; require against the cluster's s0 (ssl off) fails with the
reason (08006), prefer falls back to plaintext there and uses TLS with the
own server, disable never does."""
import asyncio
import base64
import hashlib
import hmac
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import time

import asyncpg
import psycopg

import sgtest  # noqa: E402
from sgtest import check, check_eq, env, fail, free_port, note, run_parts

SHARDGATE = env("SG_SHARDGATE")
BASE = int(env("PGTEST_BASE_PORT"))
PGBIN = "/usr/lib/postgresql/15/bin"
PSQL = os.path.join(PGBIN, "psql")
PASSWORD = "postgres"  # the cluster's, and the proxies' auth.users entry

WORK = tempfile.mkdtemp(prefix="sg-tls-")
CA = os.path.join(WORK, "ca.crt")
OTHER_CA = os.path.join(WORK, "other-ca.crt")
CERT = os.path.join(WORK, "server.crt")
KEY = os.path.join(WORK, "server.key")
ELSEWHERE_CERT = os.path.join(WORK, "elsewhere.crt")
ELSEWHERE_KEY = os.path.join(WORK, "elsewhere.key")

# libpq reads these; the cluster's superuser password is the proxies' too.
os.environ["PGPASSWORD"] = PASSWORD
for name in ("PGSSLMODE", "PGSSLROOTCERT", "PGCHANNELBINDING", "PGHOST", "PGPORT"):
    os.environ.pop(name, None)

proxies = []
own_pg = {}


# --- certificates ------------------------------------------------------------------------

def openssl(*args):
    r = subprocess.run(["openssl"] + list(args), cwd=WORK, capture_output=True, text=True)
    if r.returncode != 0:
        fail("openssl %s failed: %s" % (" ".join(args), r.stderr))


def make_ca(name, subject):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "2",
            "-keyout", name + ".key", "-out", name + ".crt", "-subj", subject,
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")


def make_cert(name, cn, san):
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", name + ".key", "-out",
            name + ".csr", "-subj", "/CN=" + cn)
    with open(os.path.join(WORK, name + ".ext"), "w") as f:
        f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\n"
                "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n" % san)
    openssl("x509", "-req", "-sha256", "-days", "2", "-in", name + ".csr", "-CA", "ca.crt",
            "-CAkey", "ca.key", "-CAcreateserial", "-out", name + ".crt", "-extfile",
            name + ".ext")


def make_certificates():
    make_ca("ca", "/CN=shardgate test CA")
    make_ca("other-ca", "/CN=another CA")
    make_cert("server", "localhost", "IP:127.0.0.1,DNS:localhost")
    make_cert("elsewhere", "elsewhere.invalid", "DNS:elsewhere.invalid")
    for path in (KEY, ELSEWHERE_KEY):
        os.chmod(path, 0o600)


# --- proxies -----------------------------------------------------------------------------

class Proxy(sgtest.OwnProxy):
    """A proxy of the test's own (sgtest.OwnProxy: it waits for the port
    only, and some of these proxies are meant to fail every login), with
    debug logs, remembered for the final clean-up."""

    def __init__(self, name, yaml):
        self.name = name
        super().__init__(name, "workers: 2\nlog: { level: debug }\n" + yaml)
        proxies.append(self)

    def dsn(self, db="app", **extra):
        s = super().dsn(db).replace("connect_timeout=3", "connect_timeout=5")
        for k, v in extra.items():
            s += " %s=%s" % (k, v)
        return s

    def stop(self):
        rc = super().stop()
        if self in proxies:
            proxies.remove(self)
        check_eq(rc, 0, "proxy %s's exit status" % self.name)


def cluster_shard():
    return "shards:\n  - name: s0\n    primary: 127.0.0.1:%d\n" % BASE


def client_tls_yaml(mode):
    return ("tls: { mode: %s, cert: %s, key: %s }\n"
            "auth: { method: scram-sha-256, users: [ { name: postgres, password: %s } ] }\n"
            "backend: { user: postgres, password: %s, tls: disable }\n%s"
            % (mode, CERT, KEY, PASSWORD, PASSWORD, cluster_shard()))


# --- raw protocol ------------------------------------------------------------------------

SSL_REQUEST = struct.pack("!ii", 8, 80877103)
GSSENC_REQUEST = struct.pack("!ii", 8, 80877104)


def startup_packet(user="postgres", db="app"):
    body = struct.pack("!i", 196608) + b"user\0" + user.encode() + b"\0database\0" + \
        db.encode() + b"\0\0"
    return struct.pack("!i", len(body) + 4) + body


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError("connection closed after %d of %d bytes" % (len(data), n))
        data += chunk
    return data


def read_message(sock):
    head = recv_exact(sock, 5)
    length = struct.unpack("!i", head[1:])[0]
    return head[:1], recv_exact(sock, length - 4)


def error_fields(body):
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[part[:1].decode()] = part[1:].decode()
    return fields


def read_until_closed(sock):
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    return data


def tls_socket(port, cafile=CA):
    """A TCP connection to the proxy that asked for TLS and got it."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(SSL_REQUEST)
    answer = recv_exact(sock, 1)
    check_eq(answer, b"S", "the proxy's answer to SSLRequest under tls.mode require")
    ctx = ssl.create_default_context(cafile=cafile)
    return ctx.wrap_socket(sock, server_hostname="127.0.0.1")


def send_message(sock, kind, body):
    sock.sendall(kind + struct.pack("!i", len(body) + 4) + body)


def scram_plus_login(port, flag, tamper=False, mechanism=None):
    """SCRAM over TLS by hand: flag 'p' binds to the certificate (RFC 5929
    tls-server-end-point: SHA-256 of the DER certificate, which is signed
    with SHA-256), 'y' claims the server offers no channel binding; the
    mechanism named is the one that goes with the flag unless given.
    Returns ('ok', None) or ('error', fields of the ErrorResponse)."""
    sock = tls_socket(port)
    try:
        sock.sendall(startup_packet())
        kind, body = read_message(sock)
        check_eq(kind, b"R", "the first answer to the startup packet")
        code = struct.unpack("!i", body[:4])[0]
        mechanisms = [m for m in body[4:].split(b"\0") if m]
        check_eq((code, mechanisms), (10, [b"SCRAM-SHA-256-PLUS", b"SCRAM-SHA-256"]),
                 "AuthenticationSASL over TLS")
        cbind_data = hashlib.sha256(sock.getpeercert(binary_form=True)).digest()
        if tamper:
            cbind_data = bytes([cbind_data[0] ^ 1]) + cbind_data[1:]
        gs2 = b"p=tls-server-end-point,," if flag == "p" else flag.encode() + b",,"
        if mechanism is None:
            mechanism = b"SCRAM-SHA-256-PLUS" if flag == "p" else b"SCRAM-SHA-256"
        nonce = base64.b64encode(os.urandom(18))
        first_bare = b"n=,r=" + nonce
        first = gs2 + first_bare
        send_message(sock, b"p", mechanism + b"\0" + struct.pack("!i", len(first)) + first)
        kind, body = read_message(sock)
        if kind == b"E":
            return "error", error_fields(body)
        check_eq((kind, struct.unpack("!i", body[:4])[0]), (b"R", 11), "AuthenticationSASLContinue")
        server_first = body[4:]
        attrs = dict(a.split(b"=", 1) for a in server_first.split(b","))
        salted = hashlib.pbkdf2_hmac("sha256", PASSWORD.encode(), base64.b64decode(attrs[b"s"]),
                                     int(attrs[b"i"]))
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        stored_key = hashlib.sha256(client_key).digest()
        cbind_input = gs2 + (cbind_data if flag == "p" else b"")
        without_proof = b"c=" + base64.b64encode(cbind_input) + b",r=" + attrs[b"r"]
        auth_message = first_bare + b"," + server_first + b"," + without_proof
        signature = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        send_message(sock, b"p", without_proof + b",p=" + base64.b64encode(proof))
        while True:
            kind, body = read_message(sock)
            if kind == b"E":
                return "error", error_fields(body)
            if kind == b"R" and struct.unpack("!i", body[:4])[0] == 0:
                return "ok", None
    finally:
        sock.close()


# --- helpers -----------------------------------------------------------------------------

def psql(dsn, sql):
    r = subprocess.run([PSQL, "-XAt", "-d", dsn, "-c", sql], capture_output=True, text=True,
                       timeout=60)
    return r.returncode, r.stdout.strip(), r.stderr.strip()


def connect_error(dsn):
    """The message a failed psycopg connection gives; fails when it logs in."""
    try:
        psycopg.connect(dsn, autocommit=True).close()
    except psycopg.OperationalError as e:
        return str(e)
    fail("expected the connection to fail: %s" % dsn)


def count_events(proxy, event):
    return proxy.log_text().count('"event":"%s"' % event)


# --- clients -----------------------------------------------------------------------------

def test_require_logs_in_over_tls():
    p = Proxy("require", client_tls_yaml("require"))
    try:
        before = count_events(p, "client_tls")
        for extra in ({"sslmode": "require"},
                      {"sslmode": "verify-full", "sslrootcert": CA},
                      {"sslmode": "verify-full", "sslrootcert": CA, "channel_binding": "require"}):
            with psycopg.connect(p.dsn(**extra), autocommit=True) as c:
                check(c.pgconn.ssl_in_use, "TLS in use", c.pgconn.ssl_in_use, "psycopg %r" % extra)
                check_eq(c.execute("select 6 * 7").fetchone()[0], 42, "a query over TLS")
        # The name in the certificate's DNS entry works too.
        with psycopg.connect(p.dsn(sslmode="verify-full", sslrootcert=CA).replace(
                "host=127.0.0.1", "host=localhost"), autocommit=True) as c:
            check(c.pgconn.ssl_in_use, "TLS in use", False, "psycopg to localhost")
        rc, out, err = psql(p.dsn(sslmode="verify-full", sslrootcert=CA, channel_binding="require"),
                            "select 'through ' || 'tls'")
        check_eq((rc, out), (0, "through tls"), "psql sslmode=verify-full (stderr %r)" % err)
        check(count_events(p, "client_tls") - before >= 5, ">= 5 client_tls log events",
              count_events(p, "client_tls") - before)

        async def with_asyncpg():
            ctx = ssl.create_default_context(cafile=CA)
            c = await asyncpg.connect(host="127.0.0.1", port=p.port, user="postgres",
                                      password=PASSWORD, database="app", ssl=ctx)
            try:
                in_tls = c._transport.get_extra_info("ssl_object") is not None
                rows = await c.fetch("select g, md5(g::text) from generate_series(1, 500) g")
                return in_tls, len(rows), await c.fetchval("select $1::int + 1", 41)
            finally:
                await c.close()
        check_eq(asyncio.run(with_asyncpg()), (True, 500, 42), "asyncpg over TLS")
    finally:
        p.stop()


def der_of(pem_path):
    with open(pem_path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def test_certificate_reload():
    """SIGHUP (as RELOAD) loads a new certificate for the next connections;
    connections made before it go on."""
    make_cert("server2", "localhost", "IP:127.0.0.1,DNS:localhost")
    cert2, key2 = os.path.join(WORK, "server2.crt"), os.path.join(WORK, "server2.key")
    os.chmod(key2, 0o600)
    p = Proxy("reload", client_tls_yaml("require"))
    try:
        s = tls_socket(p.port)
        check(s.getpeercert(binary_form=True) == der_of(CERT), "the first certificate", "another")
        s.close()
        before = psycopg.connect(p.dsn(sslmode="verify-full", sslrootcert=CA), autocommit=True)
        with open(p.cfg) as f:
            text = f.read()
        with open(p.cfg, "w") as f:
            f.write(text.replace(CERT, cert2).replace(KEY, key2))
        p.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while count_events(p, "reloaded") == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        check(count_events(p, "reloaded") == 1, "a reloaded event", p.log_text()[-2000:])
        s = tls_socket(p.port)
        check(s.getpeercert(binary_form=True) == der_of(cert2), "the new certificate",
              "the old one")
        s.close()
        check_eq(before.execute("select 1").fetchone()[0], 1, "a connection from before")
        before.close()
        with psycopg.connect(p.dsn(sslmode="verify-full", sslrootcert=CA), autocommit=True) as c:
            check_eq(c.execute("select 2").fetchone()[0], 2, "a connection after")
        # A key that does not match is refused; the running certificate stays.
        with open(p.cfg, "w") as f:
            f.write(text.replace(KEY, key2))
        p.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while count_events(p, "reload_failed") == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        check(count_events(p, "reload_failed") == 1, "a refused reload", p.log_text()[-2000:])
        s = tls_socket(p.port)
        check(s.getpeercert(binary_form=True) == der_of(cert2), "the certificate kept",
              "another")
        s.close()
    finally:
        p.stop()


def test_require_refuses_plaintext():
    p = Proxy("require-plain", client_tls_yaml("require"))
    try:
        msg = connect_error(p.dsn(sslmode="disable"))
        check("TLS is required (tls.mode: require)" in msg, "the require message", msg)
        rc, out, err = psql(p.dsn(sslmode="disable"), "select 1")
        check(rc != 0 and "FATAL:  TLS is required (tls.mode: require)" in err,
              "psql: FATAL TLS is required", (rc, err))
        # The SQLSTATE, from the wire.
        sock = socket.create_connection(("127.0.0.1", p.port), timeout=5)
        sock.sendall(startup_packet())
        kind, body = read_message(sock)
        sock.close()
        fields = error_fields(body)
        check_eq((kind, fields.get("S"), fields.get("C")), (b"E", "FATAL", "28000"),
                 "plaintext startup under require")
        msg = connect_error(p.dsn(sslmode="verify-full", sslrootcert=OTHER_CA))
        check("certificate verify failed" in msg, "certificate verify failed", msg)
        msg = connect_error(p.dsn(sslmode="verify-full", sslrootcert=CA).replace(
            "user=postgres", "user=postgres password=wrong"))
        check("password authentication failed" in msg, "28P01 over TLS", msg)
    finally:
        p.stop()


def test_bytes_after_ssl_request_are_refused():
    p = Proxy("cve", client_tls_yaml("require"))
    try:
        # A startup packet pipelined behind SSLRequest: never 'S'.
        sock = socket.create_connection(("127.0.0.1", p.port), timeout=5)
        sock.sendall(SSL_REQUEST + startup_packet())
        data = read_until_closed(sock)
        sock.close()
        check(data[:1] == b"E" and b"received unencrypted data after SSL request" in data,
              "an ErrorResponse and the connection closed", data[:200])
        # GSSAPI encryption: 'N', then TLS still works on that connection.
        sock = socket.create_connection(("127.0.0.1", p.port), timeout=5)
        sock.sendall(GSSENC_REQUEST)
        check_eq(recv_exact(sock, 1), b"N", "the answer to GSSENCRequest")
        sock.sendall(SSL_REQUEST)
        check_eq(recv_exact(sock, 1), b"S", "SSLRequest after GSSENCRequest")
        sock.close()
        # A second SSLRequest inside TLS is a protocol violation.
        tsock = tls_socket(p.port)
        tsock.sendall(SSL_REQUEST)
        kind, body = read_message(tsock)
        tsock.close()
        check_eq((kind, error_fields(body).get("C")), (b"E", "08P01"), "a second SSLRequest")
        # The proxy serves the next client as usual.
        with psycopg.connect(p.dsn(sslmode="require"), autocommit=True) as c:
            check_eq(c.execute("select 1").fetchone()[0], 1, "a query after the refusals")
    finally:
        p.stop()


def test_channel_binding_is_checked():
    p = Proxy("cbind", client_tls_yaml("require"))
    try:
        check_eq(scram_plus_login(p.port, "p"), ("ok", None),
                 "SCRAM-SHA-256-PLUS with the certificate's hash")
        result, fields = scram_plus_login(p.port, "p", tamper=True)
        check_eq((result, fields and fields.get("C")), ("error", "08P01"),
                 "SCRAM-SHA-256-PLUS with a wrong hash")
        result, fields = scram_plus_login(p.port, "y")
        check(result == "error" and fields.get("C") == "08P01" and
              "channel binding negotiation" in fields.get("M", ""),
              "08P01 channel binding negotiation error for flag y over TLS", fields)
        check_eq(scram_plus_login(p.port, "n"), ("ok", None),
                 "SCRAM-SHA-256 without channel binding over TLS")
        # A flag that contradicts the mechanism chosen.
        for flag, mech in (("n", b"SCRAM-SHA-256-PLUS"), ("p", b"SCRAM-SHA-256")):
            result, fields = scram_plus_login(p.port, flag, mechanism=mech)
            check_eq((result, fields and fields.get("C")), ("error", "08P01"),
                     "gs2 flag %s with %s" % (flag, mech.decode()))
    finally:
        p.stop()


def test_large_transfers_over_tls():
    p = Proxy("bulk", client_tls_yaml("require"))
    table = "sg_tls_bulk_%d" % os.getpid()
    try:
        with psycopg.connect(p.dsn(sslmode="require"), autocommit=True) as c:
            check(c.pgconn.ssl_in_use, "TLS in use", False)
            rows = c.execute("select repeat(md5(g::text), 6000) from generate_series(1, 120) g"
                             ).fetchall()
            got = hashlib.md5("".join(r[0] for r in rows).encode()).hexdigest()
            want = c.execute("select md5(string_agg(repeat(md5(g::text), 6000), '' order by g)) "
                             "from generate_series(1, 120) g").fetchone()[0]
            check_eq(got, want, "md5 of a 23 MB result read over TLS")
            c.execute("drop table if exists %s" % table)
            c.execute("create table %s (i int, t text)" % table)
            line = "x" * 1000
            with c.cursor().copy("copy %s from stdin" % table) as cp:
                for i in range(20000):
                    cp.write("%d\t%s\n" % (i, line))
            check_eq(c.execute("select count(*), sum(length(t)), sum(i) from %s" % table).fetchone(),
                     (20000, 20000 * 1000, 20000 * 19999 // 2), "20 MB copied in over TLS")
            c.execute("drop table %s" % table)
    finally:
        p.stop()


def test_disable_answers_n():
    p = Proxy("disable", "tls: { mode: disable }\nbackend: { user: postgres, password: %s }\n%s"
              % (PASSWORD, cluster_shard()))
    try:
        sock = socket.create_connection(("127.0.0.1", p.port), timeout=5)
        sock.sendall(SSL_REQUEST)
        check_eq(recv_exact(sock, 1), b"N", "the answer to SSLRequest under tls.mode disable")
        sock.close()
        msg = connect_error(p.dsn(sslmode="require"))
        check("does not support SSL" in msg, "server does not support SSL", msg)
        with psycopg.connect(p.dsn(sslmode="prefer"), autocommit=True) as c:
            check_eq((c.pgconn.ssl_in_use, c.execute("select 1").fetchone()[0]), (False, 1),
                     "sslmode=prefer in plaintext")
    finally:
        p.stop()


def test_allow_takes_both():
    p = Proxy("allow", client_tls_yaml("allow"))
    try:
        for mode, want in (("disable", False), ("require", True)):
            with psycopg.connect(p.dsn(sslmode=mode), autocommit=True) as c:
                check_eq((c.pgconn.ssl_in_use, c.execute("select 2").fetchone()[0]), (want, 2),
                         "sslmode=%s under tls.mode allow" % mode)
    finally:
        p.stop()


# --- servers -----------------------------------------------------------------------------

def as_postgres(args, **kw):
    if os.geteuid() == 0:
        args = ["runuser", "-u", "postgres", "--"] + args
    return subprocess.run(args, capture_output=True, text=True, timeout=120, **kw)


def start_own_postgres():
    """A PostgreSQL 15 of the test's own with ssl=on and the test certificate."""
    folder = os.path.join(WORK, "pg")
    os.makedirs(folder)
    if os.geteuid() == 0:
        shutil.chown(WORK, "postgres")
        shutil.chown(folder, "postgres")
    pwfile = os.path.join(folder, "pw")
    with open(pwfile, "w") as f:
        f.write(PASSWORD + "\n")
    data = os.path.join(folder, "data")
    r = as_postgres([os.path.join(PGBIN, "initdb"), "-D", data, "-U", "postgres",
                     "--auth=scram-sha-256", "--pwfile=" + pwfile, "-E", "UTF8", "--locale=C"])
    if r.returncode != 0:
        fail("initdb failed: %s" % r.stderr)
    port = free_port()
    install_server_cert(data, CERT, KEY)
    with open(os.path.join(data, "postgresql.conf"), "a") as f:
        f.write("port = %d\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\n"
                "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n"
                "max_connections = 40\n" % (port, folder))
    r = as_postgres([os.path.join(PGBIN, "pg_ctl"), "-D", data, "-l",
                     os.path.join(folder, "postgres.log"), "-w", "-t", "60", "start"])
    if r.returncode != 0:
        fail("pg_ctl start failed: %s %s" % (r.stdout, r.stderr))
    own_pg.update(data=data, port=port)
    with psycopg.connect("host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=verify-full "
                         "sslrootcert=%s" % (port, CA)) as c:
        check(c.pgconn.ssl_in_use, "TLS straight to the own server", False)
    note("own PostgreSQL with ssl=on on port %d" % port)


def install_server_cert(data, cert, key):
    for src, dst in ((cert, "server.crt"), (key, "server.key")):
        path = os.path.join(data, dst)
        shutil.copyfile(src, path)
        os.chmod(path, 0o600)
        if os.geteuid() == 0:
            shutil.chown(path, "postgres")


def stop_own_postgres():
    if own_pg:
        as_postgres([os.path.join(PGBIN, "pg_ctl"), "-D", own_pg["data"], "-m", "fast", "-w",
                     "stop"])
        own_pg.clear()


def backend_proxy(name, tls, port, ca=None):
    backend = "backend: { user: postgres, password: %s, tls: %s%s }\n" % (
        PASSWORD, tls, ", ca_file: %s" % ca if ca else "")
    return Proxy(name, "auth: { method: trust }\ntimeouts: { connect: 2s }\n%sshards:\n"
                 "  - name: s0\n    primary: 127.0.0.1:%d\n" % (backend, port))


def server_ssl(proxy):
    """pg_stat_ssl.ssl of the server connection the proxy uses for us."""
    with psycopg.connect(proxy.dsn("postgres", sslmode="disable"), autocommit=True) as c:
        return c.execute("select ssl from pg_stat_ssl where pid = pg_backend_pid()").fetchone()[0]


def test_backend_verify_full():
    start_own_postgres()
    for mode in ("verify-full", "verify-ca"):
        p = backend_proxy("backend-" + mode, mode, own_pg["port"], CA)
        try:
            check_eq(server_ssl(p), True, "backend.tls: %s: the server connection's ssl" % mode)
            check(count_events(p, "server_tls") >= 1, "a server_tls log event", 0)
        finally:
            p.stop()
    p = backend_proxy("backend-wrong-ca", "verify-full", own_pg["port"], OTHER_CA)
    try:
        msg = connect_error(p.dsn("postgres"))
        check("could not connect to server" in msg and "certificate verify failed" in msg,
              "08006 with certificate verify failed", msg)
    finally:
        p.stop()


def test_backend_host_name_checked():
    if not own_pg:
        fail("the own PostgreSQL is not running (test_backend_verify_full failed)")
    install_server_cert(own_pg["data"], ELSEWHERE_CERT, ELSEWHERE_KEY)
    r = as_postgres([os.path.join(PGBIN, "pg_ctl"), "-D", own_pg["data"], "reload"])
    check_eq(r.returncode, 0, "pg_ctl reload (%s)" % r.stderr)
    time.sleep(0.5)
    try:
        p = backend_proxy("backend-elsewhere-full", "verify-full", own_pg["port"], CA)
        try:
            msg = connect_error(p.dsn("postgres"))
            check("IP address mismatch" in msg, "certificate verify failed: IP address mismatch",
                  msg)
        finally:
            p.stop()
        p = backend_proxy("backend-elsewhere-ca", "verify-ca", own_pg["port"], CA)
        try:
            check_eq(server_ssl(p), True, "verify-ca with a certificate for another host")
        finally:
            p.stop()
    finally:
        install_server_cert(own_pg["data"], CERT, KEY)
        as_postgres([os.path.join(PGBIN, "pg_ctl"), "-D", own_pg["data"], "reload"])


def test_backend_require_prefer_disable():
    p = backend_proxy("backend-require", "require", BASE)
    try:
        msg = connect_error(p.dsn())
        check("the server does not support TLS (backend.tls: require)" in msg,
              "the reason for the refusal", msg)
        # The SQLSTATE, from the wire (trust: the login goes straight to the pool).
        sock = socket.create_connection(("127.0.0.1", p.port), timeout=10)
        sock.sendall(startup_packet())
        kind, body = read_message(sock)
        sock.close()
        fields = error_fields(body)
        check_eq((kind, fields.get("C")), (b"E", "08006"), "a login the server cannot take")
        check("backend.tls: require" in fields.get("M", ""), "the reason in the message",
              fields.get("M"))
    finally:
        p.stop()
    p = backend_proxy("backend-prefer-plain", "prefer", BASE)
    try:
        check_eq(server_ssl(p), False, "prefer against a server without ssl")
    finally:
        p.stop()
    if own_pg:
        for mode, want in (("prefer", True), ("require", True), ("disable", False)):
            p = backend_proxy("backend-%s-own" % mode, mode, own_pg["port"])
            try:
                check_eq(server_ssl(p), want, "backend.tls: %s with a server with ssl" % mode)
            finally:
                p.stop()


def cleanup():
    for p in list(proxies):
        try:
            p.stop()
        except SystemExit:
            pass
    stop_own_postgres()
    shutil.rmtree(WORK, ignore_errors=True)


def main():
    make_certificates()
    run_parts([
        ("require_logs_in_over_tls", test_require_logs_in_over_tls),
        ("require_refuses_plaintext", test_require_refuses_plaintext),
        ("certificate_reload", test_certificate_reload),
        ("bytes_after_ssl_request_are_refused", test_bytes_after_ssl_request_are_refused),
        ("channel_binding_is_checked", test_channel_binding_is_checked),
        ("large_transfers_over_tls", test_large_transfers_over_tls),
        ("disable_answers_n", test_disable_answers_n),
        ("allow_takes_both", test_allow_takes_both),
        ("backend_verify_full", test_backend_verify_full),
        ("backend_host_name_checked", test_backend_host_name_checked),
        ("backend_require_prefer_disable", test_backend_require_prefer_disable),
    ], cleanup=cleanup)


if __name__ == "__main__":
    try:
        main()
    finally:
        cleanup()  # run_parts cleans up too; twice is harmless
