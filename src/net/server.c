/*
 * server.c - connections from the proxy to PostgreSQL servers: connect,
 * TLS when backend.tls asks for it (SSLRequest first), log in (trust,
 * password, md5, SCRAM-SHA-256), then relay.
 */
#include <errno.h>
#include <event2/event.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "health/health.h"
#include "net/io.h"
#include "net/net.h"
#include "net/tls.h"
#include "pool/pool.h"
#include "proto/proto.h"

/* PostgreSQL's messages can carry a 1 GB field; nothing larger is valid. */
#define SERVER_MAX_MESSAGE ((size_t)1 << 30)

/* AuthenticationRequest codes (protocol-message-formats). */
enum {
	AUTH_REQ_OK = 0,
	AUTH_REQ_PASSWORD = 3,
	AUTH_REQ_MD5 = 5,
	AUTH_REQ_SASL = 10,
	AUTH_REQ_SASL_CONTINUE = 11,
	AUTH_REQ_SASL_FINAL = 12
};

const char *server_state_name(server_state_t state)
{
	switch (state) {
	case SERVER_CONNECTING:
		return "connecting";
	case SERVER_LOGIN:
		return "login";
	case SERVER_IDLE:
		return "idle";
	case SERVER_ACTIVE:
		return "active";
	case SERVER_RESETTING:
		return "resetting";
	case SERVER_CLOSED:
		return "closed";
	}
	return "unknown";
}

static void server_on_read(evutil_socket_t fd, short what, void *arg);
static void server_on_write(evutil_socket_t fd, short what, void *arg);
static void server_on_timer(evutil_socket_t fd, short what, void *arg);

static bool open_socket(const cfg_address_t *address, int *fd_out, char *err, size_t errlen)
{
	struct addrinfo hints = {0}, *res = NULL;
	char port[16];
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	snprintf(port, sizeof(port), "%d", address->port);
	int rc = getaddrinfo(address->host, port, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "cannot resolve %s: %s", address->host, gai_strerror(rc));
		return false;
	}
	int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		freeaddrinfo(res);
		return false;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, res->ai_addr, res->ai_addrlen) < 0 && errno != EINPROGRESS) {
		snprintf(err, errlen, "connect: %s", strerror(errno));
		close(fd);
		freeaddrinfo(res);
		return false;
	}
	freeaddrinfo(res);
	*fd_out = fd;
	return true;
}

/*
 * Opens a new server connection for the pool. Returns NULL when it could
 * not even start (the pool is told through pool_on_server_closed()).
 */
server_t *server_connect(pool_t *pool)
{
	worker_t *w = pool->worker;
	char err[256];
	int fd;

	server_t *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->worker = w;
	s->pool = pool;
	s->id = ++w->next_id;
	s->fd = -1;
	s->state = SERVER_CONNECTING;
	s->tx_status = 'I';
	s->created_ms = net_now_ms();
	if (!open_socket(&pool->address, &fd, err, sizeof(err))) {
		log_warning("server_connect_failed", "\"server\":%llu,\"node\":\"%s:%d\",\"error\":\"%s\"",
			    (unsigned long long)s->id, pool->address.host, pool->address.port, err);
		snprintf(pool->last_error, sizeof(pool->last_error), "%s", err);
		free(s);
		return NULL;
	}
	s->fd = fd;
	s->all_next = w->servers;
	if (w->servers)
		w->servers->all_prev = s;
	w->servers = s;
	s->ev_read = event_new(w->base, fd, EV_READ | EV_PERSIST, server_on_read, s);
	s->ev_write = event_new(w->base, fd, EV_WRITE, server_on_write, s);
	s->ev_timer = evtimer_new(w->base, server_on_timer, s);
	if (!s->ev_read || !s->ev_write || !s->ev_timer) {
		server_free(s);
		return NULL;
	}
	struct timeval tv = io_timeval(w->config->timeouts.connect_ms);
	event_add(s->ev_timer, &tv);
	event_add(s->ev_write, NULL);
	return s;
}

/* Closes the connection now; memory is reclaimed after the callback. */
void server_close(server_t *s, const char *reason)
{
	if (s->state == SERVER_CLOSED)
		return;
	bool was_login = s->state == SERVER_CONNECTING || s->state == SERVER_LOGIN;
	log_event(was_login ? LOG_WARNING : LOG_DEBUG, "server_close",
		  "\"server\":%llu,\"node\":\"%s:%d\",\"reason\":\"%s\"", (unsigned long long)s->id,
		  s->pool->address.host, s->pool->address.port, reason);
	client_t *c = s->client;
	client_t *retry = NULL;
	bool served = c != NULL;
	if (s->fan) {
		c = NULL; /* a fan-out leg: the fan-out answers its client */
		fanout_on_leg_closed(s);
	} else if (c) {
		s->client = NULL;
		c->server = NULL;
		if (client_take_back_unit(c))
			retry = c;
		else
			client_on_server_lost(c, s->tx_status != 'I', relay_owed_syncs(s));
	}
	server_state_t was = s->state;
	s->state = SERVER_CLOSED;
	/* A failed login, or a connection lost under a client, counts
	 * against the node's circuit breaker. */
	if (was_login || served)
		health_report(s->pool->shard, s->pool->node, false);
	if (s->ev_read)
		event_del(s->ev_read);
	if (s->ev_write)
		event_del(s->ev_write);
	if (s->ev_timer)
		event_del(s->ev_timer);
	if (s->fd >= 0) {
		/* Terminate politely when we can; the socket may be broken. */
		if (was != SERVER_CONNECTING && s->tls != CONN_TLS_ASKED &&
		    s->tls != CONN_TLS_HANDSHAKE) {
			static const uint8_t terminate[5] = {'X', 0, 0, 0, 4};
			io_send_now(s->fd, s->ssl, terminate, sizeof(terminate));
		}
		tls_free(&s->ssl, false);
		close(s->fd);
		s->fd = -1;
	}
	if (s->scram) {
		auth_scram_client_clear(s->scram);
		free(s->scram);
		s->scram = NULL;
	}
	pool_on_server_closed(s, was);
	if (!s->in_free_list) {
		s->in_free_list = true;
		s->next = s->worker->free_servers;
		s->worker->free_servers = s;
		worker_schedule_reap(s->worker);
	}
	/* Now that the pool has forgotten this server, run the read again. */
	if (retry)
		client_process_input(retry);
}

void server_free(server_t *s)
{
	if (s->all_prev)
		s->all_prev->all_next = s->all_next;
	else if (s->worker->servers == s)
		s->worker->servers = s->all_next;
	if (s->all_next)
		s->all_next->all_prev = s->all_prev;
	if (s->ev_read)
		event_free(s->ev_read);
	if (s->ev_write)
		event_free(s->ev_write);
	if (s->ev_timer)
		event_free(s->ev_timer);
	tls_free(&s->ssl, false);
	if (s->fd >= 0)
		close(s->fd);
	relay_drop_stmts(s);
	relay_reset_pending(s);
	hashmap_destroy(&s->stmts);
	params_free(&s->params);
	buf_free(&s->in);
	buf_free(&s->out);
	free(s->pending);
	free(s->scram);
	free(s);
}

void server_flush(server_t *s)
{
	if (s->state == SERVER_CLOSED || s->state == SERVER_CONNECTING ||
	    s->tls == CONN_TLS_HANDSHAKE)
		return;
	if (!io_flush(s->fd, s->ssl, &s->out, s->ev_write))
		server_close(s, "write failed");
}

static void send_password(server_t *s, const char *password)
{
	proto_put_message(&s->out, 'p', password, strlen(password) + 1);
}

static const char *backend_password(const server_t *s)
{
	const char *p = s->worker->config->backend.password;
	return p ? p : "";
}

/* SASL: pick SCRAM-SHA-256 from the server's list and send client-first. */
static bool start_sasl(server_t *s, proto_reader_t *r)
{
	bool offered = false;
	const char *mech;
	size_t len;
	while (proto_read_cstr(r, &mech, &len) && len > 0)
		if (strcmp(mech, "SCRAM-SHA-256") == 0)
			offered = true;
	if (!offered)
		return false;
	s->scram = calloc(1, sizeof(*s->scram));
	if (!s->scram)
		return false;
	char first[AUTH_SCRAM_MESSAGE_MAX + 1];
	size_t used;
	if (!auth_scram_client_start(s->scram, NULL, backend_password(s), NULL, first,
				     sizeof(first), &used))
		return false;
	/* SASLInitialResponse: mechanism, Int32 length, data. */
	const char *name = "SCRAM-SHA-256";
	size_t body = strlen(name) + 1 + 4 + used;
	if (!buf_reserve(&s->out, body + 5))
		return false;
	buf_put_u8(&s->out, 'p');
	buf_put_u32(&s->out, (uint32_t)(body + 4));
	buf_put_cstr(&s->out, name);
	buf_put_u32(&s->out, (uint32_t)used);
	buf_put_bytes(&s->out, first, used);
	return true;
}

/* Handles one AuthenticationRequest during login; false fails the login. */
static bool handle_auth(server_t *s, const uint8_t *msg, size_t len, char *err, size_t errlen)
{
	proto_reader_t r;
	uint32_t code;
	proto_reader_init(&r, msg + 5, len - 5);
	if (!proto_read_u32(&r, &code)) {
		snprintf(err, errlen, "malformed authentication request");
		return false;
	}
	switch (code) {
	case AUTH_REQ_OK:
		if (s->scram && s->scram->state != AUTH_SCRAM_CLIENT_DONE) {
			snprintf(err, errlen, "server skipped SCRAM verification");
			return false;
		}
		return true;
	case AUTH_REQ_PASSWORD:
		send_password(s, backend_password(s));
		return true;
	case AUTH_REQ_MD5: {
		const uint8_t *salt;
		char answer[AUTH_MD5_LEN];
		if (!proto_read_bytes(&r, 4, &salt) ||
		    !auth_md5_password(s->pool->user, backend_password(s), salt, answer)) {
			snprintf(err, errlen, "md5 authentication failed");
			return false;
		}
		send_password(s, answer);
		return true;
	}
	case AUTH_REQ_SASL:
		if (!start_sasl(s, &r)) {
			snprintf(err, errlen, "server offers no supported SASL mechanism");
			return false;
		}
		return true;
	case AUTH_REQ_SASL_CONTINUE: {
		char final[AUTH_SCRAM_MESSAGE_MAX + 1];
		size_t used;
		if (!s->scram ||
		    !auth_scram_client_continue(s->scram, (const char *)msg + 9, len - 9, final,
						sizeof(final), &used)) {
			snprintf(err, errlen, "invalid SCRAM server-first-message");
			return false;
		}
		proto_put_message(&s->out, 'p', final, used);
		return true;
	}
	case AUTH_REQ_SASL_FINAL:
		if (!s->scram ||
		    !auth_scram_client_finish(s->scram, (const char *)msg + 9, len - 9)) {
			snprintf(err, errlen, "SCRAM server signature does not match");
			return false;
		}
		return true;
	default:
		snprintf(err, errlen, "unsupported authentication method %u", code);
		return false;
	}
}

/* Extracts the M field of an ErrorResponse for logs. */
static void error_message(const uint8_t *msg, size_t len, char *out, size_t outlen)
{
	proto_reader_t r;
	uint8_t field;
	const char *value;
	snprintf(out, outlen, "server error");
	proto_reader_init(&r, msg + 5, len - 5);
	while (proto_read_u8(&r, &field) && field != 0) {
		if (!proto_read_cstr(&r, &value, NULL))
			return;
		if (field == 'M')
			snprintf(out, outlen, "%s", value);
	}
}

/* One message during login; false when the connection must close. */
static bool login_message(server_t *s, uint8_t type, const uint8_t *msg, size_t len)
{
	char err[256], esc[512];
	switch (type) {
	case 'R':
		if (!handle_auth(s, msg, len, err, sizeof(err)))
			goto fail;
		return true;
	case 'S': {
		proto_reader_t r;
		const char *name, *value;
		proto_reader_init(&r, msg + 5, len - 5);
		if (proto_read_cstr(&r, &name, NULL) && proto_read_cstr(&r, &value, NULL))
			params_set(&s->params, name, value, 0);
		return true;
	}
	case 'K': {
		proto_reader_t r;
		proto_reader_init(&r, msg + 5, len - 5);
		if (!proto_read_u32(&r, &s->backend_pid) || !proto_read_u32(&r, &s->backend_key)) {
			snprintf(err, sizeof(err), "malformed BackendKeyData");
			goto fail;
		}
		return true;
	}
	case 'N':
		return true;
	case 'Z':
		if (s->scram) {
			auth_scram_client_clear(s->scram);
			free(s->scram);
			s->scram = NULL;
		}
		event_del(s->ev_timer);
		s->state = SERVER_IDLE;
		health_report(s->pool->shard, s->pool->node, true);
		log_debug("server_login", "\"server\":%llu,\"node\":\"%s:%d\",\"backend_pid\":%u",
			  (unsigned long long)s->id, s->pool->address.host, s->pool->address.port,
			  s->backend_pid);
		pool_on_server_ready(s);
		return true;
	case 'E':
		error_message(msg, len, err, sizeof(err));
		goto fail;
	default:
		snprintf(err, sizeof(err), "unexpected message %d during login", type);
		goto fail;
	}
fail:
	snprintf(s->pool->last_error, sizeof(s->pool->last_error), "%s", err);
	server_close(s, log_json_escape(esc, sizeof(esc), err));
	return false;
}

/* After a batch of server messages: return the server when its work is done. */
static void after_batch(server_t *s, bool saw_ready)
{
	client_t *c = s->client;
	if (s->fan) {
		if (s->state != SERVER_CLOSED)
			fanout_after_batch(s);
		return;
	}
	if (c)
		client_flush(c);
	if (s->state == SERVER_CLOSED || !saw_ready || s->pending_count != 0)
		return;
	if (c && c->state == CLIENT_LOGIN) {
		client_on_linked(c); /* login parameters are set: finish it */
		return;
	}
	if (c && c->checking) {
		client_finish_check(c);
		return;
	}
	if (c && c->switching) {
		client_finish_switch(c);
		return;
	}
	if (c && s->tx_status == 'I' && c->deferred_begin)
		client_end_transaction(c);
	const config_t *cfg = s->worker->config;
	if (c && cfg->pool.mode == POOL_TRANSACTION && s->tx_status == 'I' && !c->pinned) {
		if (c->capturing) {
			c->capturing = false;
			client_note_write_lsn(c, s->pool->shard, c->captured_lsn);
		}
		if (c->unit_writes && cfg->routing.read_your_writes &&
		    cfg->routing.read_write_split && cfg->shards[s->pool->shard].n_replicas > 0) {
			/* Where the write ended in the WAL: later reads go only to
			 * replicas that replayed it. The client already has its
			 * answer; only this server connection waits. */
			c->unit_writes = false;
			c->capturing = true;
			relay_send_lsn_query(s, "SELECT pg_catalog.pg_current_wal_insert_lsn()");
			server_flush(s);
			return;
		}
		log_debug("server_release", "\"client\":%llu,\"server\":%llu",
			  (unsigned long long)c->id, (unsigned long long)s->id);
		c->unit_writes = false;
		c->replaying = false;
		buf_free(&c->replay);
		client_release_server(c);
		client_process_input(c);
		return;
	}
	if (!c && s->state == SERVER_RESETTING) {
		if (s->tx_status == 'I')
			pool_release(s);
		else
			server_close(s, "reset left a transaction open");
	}
}

/* The login failed: clients waiting for this pool learn why (08006). */
static void login_failed(server_t *s, const char *err)
{
	char esc[512];
	snprintf(s->pool->last_error, sizeof(s->pool->last_error), "%s", err);
	server_close(s, log_json_escape(esc, sizeof(esc), err));
}

static void send_startup(server_t *s)
{
	proto_put_startup(&s->out, s->pool->user, s->pool->database, NULL, NULL, 0);
	server_flush(s);
}

/* Runs the TLS handshake with the server as far as the socket allows, then
 * sends the startup packet through it. */
static void continue_tls(server_t *s)
{
	char err[256], text[320], what[128];
	switch (tls_handshake(s->ssl, err, sizeof(err))) {
	case TLS_STEP_WANT_READ:
		return; /* the read event is persistent */
	case TLS_STEP_WANT_WRITE:
		if (!event_pending(s->ev_write, EV_WRITE, NULL))
			event_add(s->ev_write, NULL);
		return;
	case TLS_STEP_FAILED:
		snprintf(text, sizeof(text), "TLS handshake failed: %s", err);
		login_failed(s, text);
		return;
	case TLS_STEP_DONE:
		break;
	}
	s->tls = CONN_TLS_READY;
	tls_describe(s->ssl, what, sizeof(what));
	log_debug("server_tls", "\"server\":%llu,\"node\":\"%s:%d\",\"tls\":\"%s\"",
		  (unsigned long long)s->id, s->pool->address.host, s->pool->address.port, what);
	send_startup(s);
}

/*
 * The server's answer to our SSLRequest: one byte, 'S' (TLS follows) or
 * 'N' (plaintext only). Bytes after the 'S' came unencrypted before the
 * handshake and would be read as if they were encrypted (a man in the
 * middle could inject them: CVE-2021-23222), so they fail the login.
 */
static void answer_tls(server_t *s, const io_view_t *v)
{
	char err[256];
	uint8_t answer = v->data[0];
	backend_tls_t mode = tls_backend_mode();
	if (v->len > 1) {
		login_failed(s, "received unencrypted data after the SSL response");
		return;
	}
	io_keep(&s->in, v, v->len);
	if (answer == 'S') {
		if (!tls_server_begin(s, err, sizeof(err))) {
			login_failed(s, err);
			return;
		}
		continue_tls(s);
		return;
	}
	if (answer == 'N' && mode == BACKEND_TLS_PREFER) {
		s->tls = CONN_TLS_NONE;
		send_startup(s);
		return;
	}
	if (answer == 'N')
		snprintf(err, sizeof(err), "the server does not support TLS (backend.tls: %s)",
			 tls_backend_mode_name(mode));
	else
		snprintf(err, sizeof(err), "unexpected answer to the SSL request (byte %d)", answer);
	login_failed(s, err);
}

static void server_on_read(evutil_socket_t fd, short what, void *arg)
{
	server_t *s = arg;
	worker_t *w = s->worker;
	io_view_t v;
	(void)fd;
	(void)what;

	if (s->tls == CONN_TLS_HANDSHAKE) {
		continue_tls(s);
		return;
	}
	int rc = io_read(w, s->fd, s->ssl, &s->in, &v);
	if (rc == IO_AGAIN)
		return;
	if (rc != IO_OK) {
		server_close(s, rc == IO_EOF ? "server closed the connection" : "read failed");
		return;
	}
	if (s->tls == CONN_TLS_ASKED) {
		answer_tls(s, &v);
		return;
	}
	size_t pos = 0;
	bool saw_ready = false;
	while (s->state != SERVER_CLOSED) {
		uint8_t type;
		size_t total;
		frame_status_t st = proto_frame(v.data + pos, v.len - pos, SERVER_MAX_MESSAGE, &type,
						&total);
		if (st == FRAME_NEED_MORE)
			break;
		if (st != FRAME_OK) {
			server_close(s, frame_status_name(st));
			return;
		}
		const uint8_t *msg = v.data + pos;
		pos += total;
		if (s->state == SERVER_LOGIN) {
			if (!login_message(s, type, msg, total))
				return;
			continue;
		}
		if (type == 'Z')
			saw_ready = true;
		bool ok = s->fan && s->pending_count == 0
				  ? fanout_server_message(s, type, msg, total)
				  : relay_server_message(s, type, msg, total);
		if (!ok) {
			if (s->client)
				client_flush(s->client);
			server_close(s, "server terminated the session");
			return;
		}
	}
	io_keep(&s->in, &v, pos);
	if (s->state == SERVER_CLOSED)
		return;
	server_flush(s);
	after_batch(s, saw_ready);
}

static void server_on_write(evutil_socket_t fd, short what, void *arg)
{
	server_t *s = arg;
	(void)fd;
	(void)what;
	if (s->tls == CONN_TLS_HANDSHAKE) {
		continue_tls(s);
		return;
	}
	if (s->state == SERVER_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);
		if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err) {
			snprintf(s->pool->last_error, sizeof(s->pool->last_error),
				 "could not connect to %s:%d: %s", s->pool->address.host,
				 s->pool->address.port, strerror(err));
			server_close(s, strerror(err));
			return;
		}
		s->state = SERVER_LOGIN;
		if (tls_backend_mode() != BACKEND_TLS_DISABLE) {
			/* SSLRequest first (protocol-flow, "SSL Session Encryption"). */
			if (!buf_reserve(&s->out, 8)) {
				login_failed(s, "out of memory");
				return;
			}
			buf_put_u32(&s->out, 8);
			buf_put_u32(&s->out, PROTO_SSL_REQUEST);
			s->tls = CONN_TLS_ASKED;
		} else {
			proto_put_startup(&s->out, s->pool->user, s->pool->database, NULL, NULL, 0);
		}
		event_add(s->ev_read, NULL);
	}
	server_flush(s);
	if (s->fan) {
		fanout_on_server_drained(s); /* a COPY over several shards goes on */
		return;
	}
	/* The client may have stopped reading because our buffer was full. */
	if (s->client && buf_avail(&s->out) < IO_LOW_WATER)
		io_resume_read(s->client->ev_read, &s->client->read_paused);
}

static void server_on_timer(evutil_socket_t fd, short what, void *arg)
{
	server_t *s = arg;
	(void)fd;
	(void)what;
	if (s->state == SERVER_CONNECTING || s->state == SERVER_LOGIN) {
		snprintf(s->pool->last_error, sizeof(s->pool->last_error),
			 "timeout connecting to %s:%d", s->pool->address.host, s->pool->address.port);
		server_close(s, "connect timeout");
	}
}

static void cancel_on_event(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	buf_t *b = arg;
	if (buf_avail(b) > 0) {
		ssize_t n = send(fd, buf_head(b), buf_avail(b), MSG_NOSIGNAL);
		if (n > 0)
			buf_consume(b, (size_t)n);
	}
	/* Sent (or failed): PostgreSQL closes the cancel connection itself. */
	close(fd);
	buf_free(b);
	free(b);
}

/* Sends CancelRequest for the server's current query on a new connection. */
void server_send_cancel(server_t *s)
{
	char err[256];
	int fd;
	if (!open_socket(&s->pool->address, &fd, err, sizeof(err))) {
		log_warning("cancel_failed", "\"server\":%llu,\"error\":\"%s\"",
			    (unsigned long long)s->id, err);
		return;
	}
	buf_t *b = calloc(1, sizeof(*b));
	if (!b || !proto_put_cancel(b, s->backend_pid, s->backend_key)) {
		free(b);
		close(fd);
		return;
	}
	struct timeval tv = io_timeval(s->worker->config->timeouts.connect_ms);
	event_base_once(s->worker->base, fd, EV_WRITE, cancel_on_event, b, &tv);
	log_info("cancel_sent", "\"server\":%llu,\"backend_pid\":%u", (unsigned long long)s->id,
		 s->backend_pid);
}

void server_busy(server_t *s, bool busy)
{
	if (busy && s->busy_since_ms == 0) {
		s->busy_since_ms = net_now_ms();
	} else if (!busy && s->busy_since_ms) {
		int64_t took = net_now_ms() - s->busy_since_ms;
		int64_t slow = s->worker->config->slow_statement_ms;
		if (slow > 0 && took >= slow && s->pool)
			log_warning("slow_statement",
				    "\"request\":\"%llu.%llu\",\"client\":%llu,\"server\":%llu,"
				    "\"backend_pid\":%u,\"shard\":\"%s\",\"node\":%d,\"ms\":%lld",
				    s->client ? (unsigned long long)s->client->id : 0ULL,
				    s->client ? (unsigned long long)s->client->units : 0ULL,
				    s->client ? (unsigned long long)s->client->id : 0ULL,
				    (unsigned long long)s->id, s->backend_pid,
				    s->worker->config->shards[s->pool->shard].name, s->pool->node,
				    (long long)took);
		s->busy_since_ms = 0;
		s->timed_out = false;
	}
}

void server_check_timeout(server_t *s, int64_t now_ms, int64_t query_ms)
{
	if (query_ms <= 0 || s->busy_since_ms == 0 || s->timed_out || s->state != SERVER_ACTIVE ||
	    now_ms - s->busy_since_ms < query_ms)
		return;
	/* The server answers the cancel with 57014, which the client gets
	 * as the statement's error (its transaction, if any, is aborted). */
	s->timed_out = true;
	log_warning("query_timeout",
		    "\"server\":%llu,\"client\":%llu,\"shard\":%d,\"node\":%d,\"running_ms\":%lld",
		    (unsigned long long)s->id, s->client ? (unsigned long long)s->client->id : 0ULL,
		    s->pool ? s->pool->shard : -1, s->pool ? s->pool->node : -1,
		    (long long)(now_ms - s->busy_since_ms));
	server_send_cancel(s);
}
