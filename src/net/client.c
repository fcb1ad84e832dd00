/*
 * client.c - connections from applications: startup, login, and the loop
 * that hands each message to a server connection.
 */
#include <errno.h>
#include <pthread.h>
#include <event2/event.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "core/stats.h"
#include "core/version.h"
#include "health/health.h"
#include "net/io.h"
#include "net/net.h"
#include "net/tls.h"
#include "pool/pool.h"
#include "route/authquery.h"
#include "proto/proto.h"

const char *client_state_name(client_state_t state)
{
	switch (state) {
	case CLIENT_STARTUP:
		return "startup";
	case CLIENT_AUTH:
		return "auth";
	case CLIENT_LOGIN:
		return "login";
	case CLIENT_IDLE:
		return "idle";
	case CLIENT_WAITING:
		return "waiting";
	case CLIENT_ACTIVE:
		return "active";
	case CLIENT_CLOSED:
		return "closed";
	}
	return "unknown";
}

static void client_on_read(evutil_socket_t fd, short what, void *arg);
static void client_on_write(evutil_socket_t fd, short what, void *arg);
static void classify_unit(client_t *c, const uint8_t *data, size_t len, route_class_t *cls,
			  size_t *unit_len);
static void fail_unit(client_t *c, const char *sqlstate, const char *message);
static void limits_leave(client_t *c);

static void list_add(worker_t *w, client_t *c)
{
	c->prev = NULL;
	c->next = w->clients;
	if (w->clients)
		w->clients->prev = c;
	w->clients = c;
	w->n_clients++;
}

static void list_remove(worker_t *w, client_t *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		w->clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->next = c->prev = NULL;
	w->n_clients--;
}

/* Sends an error before the connection is even a client (too many). */
static void refuse_socket(int fd, const char *sqlstate, const char *message)
{
	buf_t b = {0};
	if (proto_put_error(&b, "FATAL", sqlstate, message)) {
		ssize_t n = send(fd, buf_head(&b), buf_avail(&b), MSG_NOSIGNAL);
		(void)n;
	}
	buf_free(&b);
	close(fd);
}

void client_accept(worker_t *w, int fd, const char *addr)
{
	const config_t *cfg = w->config;
	if (atomic_load(&proxy.stopping)) {
		refuse_socket(fd, "57P03", "the proxy is shutting down");
		return;
	}
	if (atomic_fetch_add(&proxy.n_clients, 1) >= cfg->max_client_conn) {
		atomic_fetch_sub(&proxy.n_clients, 1);
		log_warning("client_refused", "\"reason\":\"max_client_conn\",\"addr\":\"%s\"", addr);
		refuse_socket(fd, "53300", "sorry, too many clients already (max_client_conn)");
		return;
	}
	client_t *c = calloc(1, sizeof(*c));
	if (!c) {
		atomic_fetch_sub(&proxy.n_clients, 1);
		close(fd);
		return;
	}
	c->worker = w;
	c->fd = fd;
	c->id = atomic_fetch_add(&proxy.next_client_id, 1) + 1;
	c->state = CLIENT_STARTUP;
	c->connect_ms = net_now_ms();
	c->last_active_ms = c->connect_ms;
	snprintf(c->addr, sizeof(c->addr), "%s", addr);
	c->ev_read = event_new(w->base, fd, EV_READ | EV_PERSIST, client_on_read, c);
	c->ev_write = event_new(w->base, fd, EV_WRITE, client_on_write, c);
	if (!c->ev_read || !c->ev_write) {
		if (c->ev_read)
			event_free(c->ev_read);
		if (c->ev_write)
			event_free(c->ev_write);
		free(c);
		atomic_fetch_sub(&proxy.n_clients, 1);
		close(fd);
		return;
	}
	list_add(w, c);
	event_add(c->ev_read, NULL);
	log_debug("client_accept", "\"client\":%llu,\"addr\":\"%s\"", (unsigned long long)c->id,
		  addr);
}

void client_flush(client_t *c)
{
	if (c->state == CLIENT_CLOSED || c->tls == CONN_TLS_HANDSHAKE)
		return;
	if (!io_flush(c->fd, c->ssl, &c->out, c->ev_write)) {
		client_close(c, "write failed");
		return;
	}
	/* Too much waiting for a slow reader: stop reading its server. */
	if (c->server && buf_avail(&c->out) > IO_HIGH_WATER)
		io_pause_read(c->server->ev_read, &c->server->read_paused);
}

/* Returns the linked server after the client goes away. */
static void detach_server(client_t *c)
{
	server_t *s = c->server;
	if (!s)
		return;
	c->server = NULL;
	s->client = NULL;
	bool clean = s->pending_count == 0 && s->tx_status == 'I' && !s->skipping &&
		     buf_avail(&s->out) == 0;
	if (!clean) {
		server_close(s, "client left during a transaction");
		return;
	}
	if (c->worker->config->pool.mode == POOL_SESSION || c->pinned) {
		/* Session state of the departed client must not reach the next. */
		for (int i = s->params.n - 1; i >= 0; i--)
			if (s->params.flags[i] & PARAM_EXTRA)
				params_remove(&s->params, s->params.names[i]);
		relay_drop_stmts(s);
		s->state = SERVER_RESETTING;
		relay_send_internal_query(s, "DISCARD ALL");
		server_flush(s);
		return;
	}
	pool_release(s);
}

void client_close(client_t *c, const char *reason)
{
	if (c->state == CLIENT_CLOSED)
		return;
	worker_t *w = c->worker;
	if (c->state == CLIENT_WAITING || (c->state == CLIENT_LOGIN && !c->server))
		pool_cancel_wait(c->pool, c);
	if (c->fan)
		fanout_abort(c);
	remap_forget(c);
	admin_forget(c);
	detach_server(c);
	limits_leave(c);
	c->state = CLIENT_CLOSED;
	if (c->logged_in)
		stats_clients(-1);
	if (c->logged_in)
		hashmap_remove(&w->clients_by_key, &c->cancel_pid, sizeof(c->cancel_pid));
	event_del(c->ev_read);
	event_del(c->ev_write);
	if (c->ev_timer)
		event_del(c->ev_timer);
	tls_free(&c->ssl, c->tls == CONN_TLS_READY);
	close(c->fd);
	c->fd = -1;
	list_remove(w, c);
	atomic_fetch_sub(&proxy.n_clients, 1);
	char esc[256], esc_reason[512];
	log_event(c->logged_in ? LOG_DEBUG : LOG_INFO, "client_close",
		  "\"client\":%llu,\"user\":\"%s\",\"reason\":\"%s\"", (unsigned long long)c->id,
		  log_json_escape(esc, sizeof(esc), c->user),
		  log_json_escape(esc_reason, sizeof(esc_reason), reason));
	c->in_free_list = true;
	c->next = w->free_clients;
	w->free_clients = c;
	worker_schedule_reap(w);
}

static void free_stmt_entry(const void *key, size_t len, void *value, void *arg)
{
	(void)key;
	(void)len;
	stmt_unref(arg, value);
}

void client_note_write_lsn(client_t *c, int shard, uint64_t lsn)
{
	if (!c->shard_lsns) {
		c->shard_lsns = calloc((size_t)c->worker->config->n_shards, sizeof(uint64_t));
		if (!c->shard_lsns)
			return;
	}
	if (lsn > c->shard_lsns[shard])
		c->shard_lsns[shard] = lsn;
}

void client_free(client_t *c)
{
	if (c->queried_password) {
		OPENSSL_cleanse(c->queried_password, strlen(c->queried_password));
		free(c->queried_password);
	}
	relay_set_stmt(c->worker, &c->unnamed, NULL);
	hashmap_foreach(&c->stmts, free_stmt_entry, c->worker);
	hashmap_destroy(&c->stmts);
	params_free(&c->params);
	if (c->ev_read)
		event_free(c->ev_read);
	if (c->ev_write)
		event_free(c->ev_write);
	if (c->ev_timer)
		event_free(c->ev_timer);
	buf_free(&c->in);
	buf_free(&c->out);
	buf_free(&c->replay);
	tls_free(&c->ssl, false);
	free(c->deferred_begin);
	free(c->shard_lsns);
	if (c->scram) {
		auth_scram_server_clear(c->scram);
		free(c->scram);
	}
	free(c);
}

void client_fatal(client_t *c, const char *sqlstate, const char *message)
{
	if (c->state == CLIENT_CLOSED)
		return;
	char esc[512];
	log_warning("client_error", "\"client\":%llu,\"sqlstate\":\"%s\",\"message\":\"%s\"",
		    (unsigned long long)c->id, sqlstate, log_json_escape(esc, sizeof(esc), message));
	/* In the middle of a TLS handshake no message can be sent: just close. */
	if (c->tls != CONN_TLS_HANDSHAKE) {
		proto_put_error(&c->out, "FATAL", sqlstate, message);
		/* Best effort: the connection closes right after. */
		if (buf_avail(&c->out) > 0)
			(void)io_flush(c->fd, c->ssl, &c->out, c->ev_write);
	}
	client_close(c, message);
}

void client_on_pool_error(client_t *c, const char *sqlstate, const char *message)
{
	if (c->fan) {
		fanout_on_pool_error(c, sqlstate, message);
		return;
	}
	if (c->state == CLIENT_WAITING && c->target.replica && strcmp(sqlstate, "08006") == 0) {
		/* Its unit is still unsent: a read the replica cannot take
		 * goes to the primary instead. */
		log_info("read_rerouted", "\"client\":%llu,\"shard\":%d,\"node\":%d",
			 (unsigned long long)c->id, c->target.shard, c->target.node);
		c->state = CLIENT_IDLE;
		c->force_primary = true;
		buf_free(&c->replay);
		client_process_input(c);
		return;
	}
	if (c->state == CLIENT_WAITING && !c->pinned &&
	    c->worker->config->pool.mode == POOL_TRANSACTION) {
		/* The unit was never sent: answer it with an error, as
		 * PostgreSQL answers a failed statement, and carry on. */
		route_class_t cls;
		size_t unit_len;
		classify_unit(c, buf_head(&c->in), buf_avail(&c->in), &cls, &unit_len);
		if (unit_len > 0) {
			buf_consume(&c->in, unit_len);
			c->state = CLIENT_IDLE;
			fail_unit(c, sqlstate, message);
			client_flush(c);
			client_process_input(c);
			return;
		}
	}
	client_fatal(c, sqlstate, message);
}

client_t *client_find_by_cancel(worker_t *w, uint32_t pid)
{
	return hashmap_get(&w->clients_by_key, &pid, sizeof(pid));
}

void client_release_server(client_t *c)
{
	server_t *s = c->server;
	c->server = NULL;
	s->client = NULL;
	c->state = CLIENT_IDLE;
	pool_release(s);
}

/* Sends AuthenticationOk, the session's parameters, BackendKeyData and
 * ReadyForQuery (protocol-flow, "Start-up"). */
static void finish_login(client_t *c)
{
	server_t *s = c->server;
	pool_t *pool = c->login_pool;
	if (s) {
		/* The server's values are the truth: normalized, or refused. */
		for (int i = 0; i < s->params.n; i++)
			if (!(s->params.flags[i] & PARAM_EXTRA))
				params_set(&c->params, s->params.names[i], s->params.values[i], 0);
		if (!pool->has_welcome) {
			for (int i = 0; i < s->params.n; i++)
				if (!(s->params.flags[i] & PARAM_EXTRA))
					params_set(&pool->welcome, s->params.names[i],
						   s->params.values[i], 0);
			pool->has_welcome = true;
		}
	}
	worker_t *w = c->worker;
	do {
		uint32_t r;
		RAND_bytes((unsigned char *)&r, sizeof(r));
		c->cancel_pid = ((uint32_t)w->index << 24) | (r & 0xffffff);
	} while (c->cancel_pid == 0 || client_find_by_cancel(w, c->cancel_pid));
	RAND_bytes((unsigned char *)&c->cancel_key, sizeof(c->cancel_key));
	hashmap_put(&w->clients_by_key, &c->cancel_pid, sizeof(c->cancel_pid), c);

	proto_put_auth_request(&c->out, 0, NULL, 0);
	for (int i = 0; i < c->params.n; i++)
		if (!(c->params.flags[i] & PARAM_EXTRA))
			proto_put_parameter_status(&c->out, c->params.names[i],
						   c->params.values[i]);
	proto_put_backend_key(&c->out, c->cancel_pid, c->cancel_key);
	proto_put_ready(&c->out, 'I');
	c->logged_in = true;
	stats_clients(+1);
	if (c->ev_timer)
		event_del(c->ev_timer);
	char esc[256];
	log_debug("client_login", "\"client\":%llu,\"user\":\"%s\",\"database\":\"%s\"",
		  (unsigned long long)c->id, log_json_escape(esc, sizeof(esc), c->user),
		  c->database);

	if (s && w->config->pool.mode == POOL_TRANSACTION) {
		client_release_server(c);
	} else {
		c->state = s ? CLIENT_ACTIVE : CLIENT_IDLE;
	}
	io_resume_read(c->ev_read, &c->read_paused);
	client_flush(c);
}

/* True when a new client can be welcomed with the pool's cached
 * parameters, without a round trip to a server. */
static bool can_welcome_from_cache(const client_t *c)
{
	const pool_t *pool = c->login_pool;
	if (!pool->has_welcome)
		return false;
	for (int i = 0; i < c->params.n; i++) {
		const char *name = c->params.names[i], *value = c->params.values[i];
		if (c->params.flags[i] & PARAM_EXTRA)
			continue;
		if (strcasecmp(name, "application_name") == 0) {
			for (const char *p = value; *p; p++)
				if (*p < 32 || *p > 126)
					return false;
			continue;
		}
		const char *have = params_get(&pool->welcome, name);
		if (!have || strcmp(have, value) != 0)
			return false;
	}
	return true;
}

/* Applies "-c name=value" and "--name=value" words of the options parameter. */
static void apply_options(client_t *c, const char *options)
{
	char copy[PROTO_STARTUP_MAX];
	snprintf(copy, sizeof(copy), "%s", options);
	char *save = NULL;
	bool expect_setting = false;
	for (char *word = strtok_r(copy, " \t", &save); word; word = strtok_r(NULL, " \t", &save)) {
		char *setting = NULL;
		if (expect_setting) {
			setting = word;
			expect_setting = false;
		} else if (strcmp(word, "-c") == 0) {
			expect_setting = true;
		} else if (strncmp(word, "-c", 2) == 0) {
			setting = word + 2;
		} else if (strncmp(word, "--", 2) == 0) {
			setting = word + 2;
		}
		char *eq = setting ? strchr(setting, '=') : NULL;
		if (!eq)
			continue;
		*eq = '\0';
		for (char *p = setting; *p; p++)
			if (*p == '-')
				*p = '_';
		params_set(&c->params, setting, eq + 1, params_is_synced(setting) ? 0 : PARAM_EXTRA);
	}
}

static bool handle_cancel(client_t *c, const proto_startup_t *st)
{
	int owner = (int)(st->cancel_pid >> 24);
	if (owner == c->worker->index) {
		client_t *target = client_find_by_cancel(c->worker, st->cancel_pid);
		if (target && target->cancel_key == st->cancel_key && target->server)
			server_send_cancel(target->server);
	} else {
		worker_route_cancel(st->cancel_pid, st->cancel_key);
	}
	client_close(c, "cancel request");
	return false;
}

/*
 * The node new clients log in through: the default shard's primary, or,
 * while the monitor sees none, a replica (reads keep working, writes fail
 * fast).
 */
static int login_node(const config_t *cfg)
{
	const health_snapshot_t *snap = health_acquire();
	int node = 0;
	if (snap && snap->version > 0 && cfg->default_shard < snap->n_shards &&
	    snap->shards[cfg->default_shard].primary_node < 0) {
		route_class_t cls;
		route_balance_t balance = {0};
		route_target_t t;
		route_class_init(&cls);
		if (route_choose(cfg, snap, &cls, cfg->default_shard, 0, &balance, NULL, NULL, &t) ==
		    ROUTE_OK)
			node = t.node;
	} else if (snap && snap->version > 0 && cfg->default_shard < snap->n_shards) {
		node = snap->shards[cfg->default_shard].primary_node;
	}
	health_release(snap);
	return node;
}

static bool continue_login(client_t *c);

/*
 * Connections per user and per database, across workers (max_user_conn,
 * max_db_conn). Touched at login and logout only, under one lock.
 */
static pthread_mutex_t limits_lock = PTHREAD_MUTEX_INITIALIZER;
static hashmap_t limit_counts; /* "u:<user>" or "d:<database>" -> count (as a pointer) */

static intptr_t count_add(const char *kind, const char *name, intptr_t delta)
{
	char key[CONFIG_NAME_MAX + 4];
	int n = snprintf(key, sizeof(key), "%s:%s", kind, name);
	intptr_t now = (intptr_t)hashmap_get(&limit_counts, key, (size_t)n) + delta;
	if (now <= 0)
		hashmap_remove(&limit_counts, key, (size_t)n);
	else
		hashmap_put(&limit_counts, key, (size_t)n, (void *)now);
	return now;
}

/* Counts the client in; false (nothing counted) when a limit is reached. */
static bool limits_enter(client_t *c, const char **which)
{
	const config_t *cfg = c->worker->config;
	if (cfg->max_user_conn <= 0 && cfg->max_db_conn <= 0)
		return true;
	bool ok = true;
	pthread_mutex_lock(&limits_lock);
	intptr_t users = count_add("u", c->user, 1);
	intptr_t dbs = count_add("d", c->database, 1);
	if (cfg->max_user_conn > 0 && users > cfg->max_user_conn) {
		ok = false;
		*which = "max_user_conn";
	} else if (cfg->max_db_conn > 0 && dbs > cfg->max_db_conn) {
		ok = false;
		*which = "max_db_conn";
	}
	if (!ok) {
		count_add("u", c->user, -1);
		count_add("d", c->database, -1);
	}
	pthread_mutex_unlock(&limits_lock);
	c->counted = ok;
	return ok;
}

static void limits_leave(client_t *c)
{
	if (!c->counted)
		return;
	pthread_mutex_lock(&limits_lock);
	count_add("u", c->user, -1);
	count_add("d", c->database, -1);
	pthread_mutex_unlock(&limits_lock);
	c->counted = false;
}

void client_free_limits(void)
{
	pthread_mutex_lock(&limits_lock);
	hashmap_destroy(&limit_counts);
	pthread_mutex_unlock(&limits_lock);
}

static const cfg_user_t *find_user(const config_t *cfg, const char *name)
{
	for (int i = 0; i < cfg->auth.n_users; i++)
		if (strcmp(cfg->auth.users[i].name, name) == 0)
			return &cfg->auth.users[i];
	return NULL;
}

/*
 * The user's stored password: from auth.users, else (auth.query) read from
 * the default shard's primary, once per login, and kept (then wiped) with
 * the client. A query that fails leaves the user unknown: the client gets
 * the usual 28P01, the log says why.
 */
static const char *user_password(client_t *c)
{
	const config_t *cfg = c->worker->config;
	const cfg_user_t *u = find_user(cfg, c->user);
	if (u)
		return u->password;
	if (!cfg->auth.query[0])
		return NULL;
	if (!c->password_queried) {
		char err[256], esc[300];
		c->password_queried = true;
		if (!auth_query_fetch(cfg, c->user, &c->queried_password, err, sizeof(err)))
			log_warning("auth_query_failed", "\"client\":%llu,\"error\":\"%s\"",
				    (unsigned long long)c->id, log_json_escape(esc, sizeof(esc), err));
	}
	return c->queried_password;
}

/* The same answer whether the user is unknown or the password wrong. */
static void auth_failed(client_t *c)
{
	char text[160];
	snprintf(text, sizeof(text), "password authentication failed for user \"%s\"", c->user);
	client_fatal(c, "28P01", text);
}

/*
 * The tls-server-end-point data of the client's TLS connection, which
 * SCRAM-SHA-256-PLUS binds the exchange to (RFC 5929); false without TLS
 * (or with a certificate whose signature names no single hash). out may
 * be NULL to ask only whether there is some.
 */
static bool client_channel_binding(const client_t *c, uint8_t *out, size_t *len)
{
	uint8_t data[AUTH_SCRAM_CBIND_MAX];
	size_t n = sizeof(data);
	if (c->tls != CONN_TLS_READY || !tls_server_end_point(c, data, &n))
		return false;
	if (out) {
		memcpy(out, data, n);
		*len = n;
	}
	return true;
}

/*
 * Asks for the password the configured method needs (protocol-flow,
 * "Start-up": AuthenticationMD5Password, or AuthenticationSASL offering
 * SCRAM-SHA-256; RFC 5802/7677).
 */
static bool begin_auth(client_t *c)
{
	const config_t *cfg = c->worker->config;
	c->state = CLIENT_AUTH;
	if (cfg->auth.method == AUTH_MD5) {
		RAND_bytes(c->md5_salt, sizeof(c->md5_salt));
		proto_put_auth_request(&c->out, 5, c->md5_salt, sizeof(c->md5_salt));
	} else if (client_channel_binding(c, NULL, NULL)) {
		/* Over TLS, channel binding first, as PostgreSQL lists them. */
		static const char mechanisms[] = "SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0";
		proto_put_auth_request(&c->out, 10, mechanisms, sizeof(mechanisms));
	} else {
		static const char mechanisms[] = "SCRAM-SHA-256\0";
		proto_put_auth_request(&c->out, 10, mechanisms, sizeof(mechanisms));
	}
	client_flush(c);
	return c->state != CLIENT_CLOSED;
}

/* The user's SCRAM secret: a stored verifier, one made from a plain
 * password, or a mock one (unknown user, or only an md5 hash stored). */
static void scram_secret(client_t *c, auth_scram_verifier_t *v)
{
	const char *pw = user_password(c);
	if (pw && strncmp(pw, "SCRAM-SHA-256$", 14) == 0 && auth_scram_parse_verifier(pw, v))
		return;
	if (pw && pw[0] && strncmp(pw, "md5", 3) != 0) {
		char text[AUTH_SCRAM_VERIFIER_MAX];
		uint8_t salt[AUTH_SCRAM_DEFAULT_SALT_LEN];
		/* A salt of the user's own, stable for the proxy's life. */
		for (size_t i = 0; i < sizeof(salt); i++)
			salt[i] = c->worker->mock_secret[i] ^ (uint8_t)c->user[i % strlen(c->user)];
		if (auth_scram_make_verifier(pw, AUTH_SCRAM_DEFAULT_ITERATIONS, salt, sizeof(salt),
					     text, sizeof(text)) &&
		    auth_scram_parse_verifier(text, v)) {
			OPENSSL_cleanse(text, sizeof(text));
			return;
		}
	}
	auth_scram_mock_verifier(c->user, c->worker->mock_secret, sizeof(c->worker->mock_secret),
				 AUTH_SCRAM_DEFAULT_ITERATIONS, v);
}

/* One PasswordMessage / SASLInitialResponse / SASLResponse ('p'). */
static bool handle_auth_message(client_t *c, uint8_t type, const uint8_t *msg, size_t len)
{
	const config_t *cfg = c->worker->config;
	if (type != 'p') {
		client_fatal(c, "08P01", "expected a password message");
		return false;
	}
	const uint8_t *body = msg + 5;
	size_t blen = len - 5;
	if (cfg->auth.method == AUTH_MD5) {
		const char *pw = user_password(c);
		char stored[AUTH_MD5_LEN] = "";
		bool known = false;
		if (pw && strncmp(pw, "md5", 3) == 0 && strlen(pw) == 35) {
			memcpy(stored, pw, AUTH_MD5_LEN);
			known = true;
		} else if (pw && pw[0] && strncmp(pw, "SCRAM-SHA-256$", 14) != 0) {
			known = auth_md5_hash_password(c->user, pw, stored);
		}
		if (!known) /* the same work for an unknown user */
			auth_md5_hash_password(c->user, "", stored);
		size_t n = blen > 0 && body[blen - 1] == '\0' ? blen - 1 : blen;
		bool ok = auth_md5_check_response(stored, c->md5_salt, (const char *)body, n);
		OPENSSL_cleanse(stored, sizeof(stored));
		if (!ok || !known) {
			auth_failed(c);
			return false;
		}
		return continue_login(c);
	}
	char out[AUTH_SCRAM_MESSAGE_MAX + 1];
	size_t used;
	if (!c->scram) {
		/* SASLInitialResponse: mechanism, Int32 length, client-first. */
		proto_reader_t r;
		const char *mechanism;
		int32_t data_len;
		const uint8_t *data;
		uint8_t cbind[AUTH_SCRAM_CBIND_MAX];
		size_t cbind_len = 0;
		bool bound = client_channel_binding(c, cbind, &cbind_len);
		proto_reader_init(&r, body, blen);
		bool read = proto_read_cstr(&r, &mechanism, NULL);
		bool plus = read && bound && strcmp(mechanism, "SCRAM-SHA-256-PLUS") == 0;
		if (!read || (!plus && strcmp(mechanism, "SCRAM-SHA-256") != 0) ||
		    !proto_read_i32(&r, &data_len) || data_len < 0 ||
		    !proto_read_bytes(&r, (size_t)data_len, &data)) {
			client_fatal(c, "08P01",
				     bound ? "invalid SASLInitialResponse (SCRAM-SHA-256-PLUS or "
					     "SCRAM-SHA-256 expected)"
					   : "invalid SASLInitialResponse (SCRAM-SHA-256 expected)");
			return false;
		}
		auth_scram_verifier_t v;
		scram_secret(c, &v);
		c->scram = calloc(1, sizeof(*c->scram));
		bool started =
		    c->scram &&
		    (bound ? auth_scram_server_start_tls(c->scram, &v, cbind, cbind_len, plus,
							 (const char *)data, (size_t)data_len, NULL,
							 out, sizeof(out), &used)
			   : auth_scram_server_start(c->scram, &v, (const char *)data,
						     (size_t)data_len, NULL, out, sizeof(out),
						     &used));
		OPENSSL_cleanse(&v, sizeof(v));
		if (!started) {
			/* PostgreSQL's words for a lost -PLUS (read_client_first_message). */
			bool downgrade = bound && !plus && data_len > 0 && data[0] == 'y';
			client_fatal(c, "08P01",
				     downgrade ? "SCRAM channel binding negotiation error: the client "
						 "supports channel binding but thinks the server does not"
					       : "invalid SCRAM client-first-message");
			return false;
		}
		proto_put_auth_request(&c->out, 11, out, used);
		client_flush(c);
		return c->state != CLIENT_CLOSED;
	}
	bool ok = false;
	if (!auth_scram_server_finish(c->scram, (const char *)body, blen, out, sizeof(out), &used,
				      &ok)) {
		client_fatal(c, "08P01", "invalid SCRAM client-final-message");
		return false;
	}
	auth_scram_server_clear(c->scram);
	free(c->scram);
	c->scram = NULL;
	if (!ok) {
		auth_failed(c);
		return false;
	}
	proto_put_auth_request(&c->out, 12, out, used);
	return continue_login(c);
}

/*
 * Runs the client's TLS handshake as far as the socket allows; it began
 * when the client was answered 'S', and its reads and writes come from the
 * client's own events.
 */
static void continue_tls(client_t *c)
{
	char err[256], reason[320], what[128];
	switch (tls_handshake(c->ssl, err, sizeof(err))) {
	case TLS_STEP_WANT_READ:
		return; /* the read event is persistent */
	case TLS_STEP_WANT_WRITE:
		if (!event_pending(c->ev_write, EV_WRITE, NULL))
			event_add(c->ev_write, NULL);
		return;
	case TLS_STEP_FAILED:
		snprintf(reason, sizeof(reason), "TLS handshake failed: %s", err);
		client_close(c, reason);
		return;
	case TLS_STEP_DONE:
		break;
	}
	c->tls = CONN_TLS_READY;
	tls_describe(c->ssl, what, sizeof(what));
	log_debug("client_tls", "\"client\":%llu,\"addr\":\"%s\",\"tls\":\"%s\"",
		  (unsigned long long)c->id, c->addr, what);
	/* The startup packet may have come with the handshake's last flight. */
	event_active(c->ev_read, EV_READ, 0);
}

/*
 * SSLRequest (protocol-flow, "SSL Session Encryption"): 'S' and the TLS
 * handshake when tls.mode is allow or require, else 'N' and the client goes
 * on in plaintext (or gives up). `trailing` bytes came after the request,
 * before any answer: a client must wait for the answer, and bytes taken in
 * plaintext now would be read as if they came through TLS (a man in the
 * middle could inject them: CVE-2021-23214), so they close the connection.
 */
static bool answer_ssl_request(client_t *c, size_t trailing)
{
	if (c->ssl_requested) {
		client_fatal(c, "08P01", "unexpected second SSLRequest");
		return false;
	}
	c->ssl_requested = true;
	if (!tls_offered_to_clients()) {
		buf_append(&c->out, "N", 1);
		client_flush(c);
		return c->state != CLIENT_CLOSED;
	}
	if (trailing > 0) {
		client_fatal(c, "08P01", "received unencrypted data after SSL request");
		return false;
	}
	buf_append(&c->out, "S", 1);
	client_flush(c);
	if (c->state == CLIENT_CLOSED)
		return false;
	/* The 'S' must be gone before the socket belongs to TLS. */
	if (buf_avail(&c->out) > 0 || !tls_client_begin(c)) {
		client_close(c, "could not start TLS");
		return false;
	}
	return true;
}

/* Handles one startup-phase packet; `trailing` bytes follow it in what was
 * read. False when the client is closed. */
static bool handle_startup(client_t *c, const uint8_t *packet, size_t len, size_t trailing)
{
	proto_startup_t st;
	startup_status_t rc = proto_parse_startup(packet, len, &st);
	if (rc != STARTUP_OK) {
		client_fatal(c, rc == STARTUP_BAD_VERSION ? "0A000" : "08P01",
			     startup_status_name(rc));
		return false;
	}
	if (st.code == PROTO_SSL_REQUEST)
		return answer_ssl_request(c, trailing);
	if (st.code == PROTO_GSSENC_REQUEST) {
		/* No GSSAPI encryption: 'N', and the client goes on. */
		buf_append(&c->out, "N", 1);
		client_flush(c);
		return c->state != CLIENT_CLOSED;
	}
	if (st.code == PROTO_CANCEL_REQUEST)
		return handle_cancel(c, &st);

	if (strlen(st.user) > CONFIG_NAME_MAX || strlen(st.database) > CONFIG_NAME_MAX) {
		client_fatal(c, "08P01", "user or database name too long");
		return false;
	}
	snprintf(c->user, sizeof(c->user), "%s", st.user);
	snprintf(c->database, sizeof(c->database), "%s", st.database);
	if (tls_required_of_clients() && c->tls != CONN_TLS_READY) {
		/* PostgreSQL: no pg_hba.conf entry for ... SSL off (28000). */
		client_fatal(c, "28000", "TLS is required (tls.mode: require)");
		return false;
	}
	const config_t *cfg = c->worker->config;
	for (int i = 0; i < st.n_params; i++) {
		const char *name = st.names[i], *value = st.values[i];
		if (strcmp(name, "replication") == 0) {
			if (strcmp(value, "false") != 0 && strcmp(value, "0") != 0 &&
			    strcmp(value, "off") != 0 && strcmp(value, "no") != 0) {
				client_fatal(c, "0A000",
					     "replication connections are not supported by shardgate");
				return false;
			}
			continue;
		}
		if (strcmp(name, "options") == 0) {
			apply_options(c, value);
			continue;
		}
		if (strncmp(name, "_pq_.", 5) == 0)
			continue; /* protocol extensions: none supported, none needed */
		params_set(&c->params, name, value, params_is_synced(name) ? 0 : PARAM_EXTRA);
	}
	const char *which = NULL;
	if (!limits_enter(c, &which)) {
		char text[200];
		snprintf(text, sizeof(text), "too many connections for %s \"%s\" (%s)",
			 strcmp(which, "max_user_conn") == 0 ? "role" : "database",
			 strcmp(which, "max_user_conn") == 0 ? c->user : c->database, which);
		client_fatal(c, "53300", text);
		return false;
	}
	if (cfg->auth.method != AUTH_TRUST)
		return begin_auth(c);
	return continue_login(c);
}

/* After authentication: the pool, the session's parameters, the welcome. */
static bool continue_login(client_t *c)
{
	const config_t *cfg = c->worker->config;
	if (admin_is_console(c->database)) {
		if (!admin_may_enter(cfg, c->user)) {
			char text[200];
			snprintf(text, sizeof(text),
				 "user \"%s\" may not use the admin console (admin.users)", c->user);
			client_fatal(c, "28000", text);
			return false;
		}
		/* The proxy answers this session itself: no server. */
		c->admin = true;
		params_set(&c->params, "server_version", "15.0 (shardgate " SHARDGATE_VERSION ")", 0);
		params_set(&c->params, "server_encoding", "UTF8", 0);
		params_set(&c->params, "client_encoding", "UTF8", 0);
		params_set(&c->params, "DateStyle", "ISO, MDY", 0);
		params_set(&c->params, "integer_datetimes", "on", 0);
		params_set(&c->params, "standard_conforming_strings", "on", 0);
		params_set(&c->params, "TimeZone", "UTC", 0);
		c->state = CLIENT_LOGIN;
		finish_login(c);
		return c->state != CLIENT_CLOSED;
	}
	const char *backend_user = cfg->backend.user[0] ? cfg->backend.user : c->user;
	const char *backend_db = c->database;
	c->login_pool = pool_get(c->worker, cfg->default_shard, login_node(cfg), backend_user,
				 backend_db);
	if (!c->login_pool) {
		client_fatal(c, "53200", "out of memory");
		return false;
	}
	c->pool = c->login_pool;
	/* Start from the server's parameters, then the client's own wishes. */
	if (c->login_pool->has_welcome) {
		params_t mine = c->params;
		memset(&c->params, 0, sizeof(c->params));
		params_copy(&c->params, &c->login_pool->welcome);
		params_copy(&c->params, &mine);
		params_free(&mine);
	}
	c->state = CLIENT_LOGIN;
	if (can_welcome_from_cache(c)) {
		finish_login(c);
		return c->state != CLIENT_CLOSED;
	}
	io_pause_read(c->ev_read, &c->read_paused);
	if (pool_acquire(c->login_pool, c))
		client_on_linked(c);
	return false; /* nothing more to read until logged in */
}


#define SHAPE_KEY_MAX 8192
#define SHAPES_MAX 10000

static void free_shape(const void *key, size_t len, void *value, void *arg)
{
	(void)key;
	(void)len;
	(void)arg;
	free(value);
}

void client_free_shapes(worker_t *w)
{
	hashmap_foreach(&w->shapes, free_shape, NULL);
	hashmap_destroy(&w->shapes);
}

/*
 * The route class of one statement text (NUL-terminated at len). A text
 * seen before is a cache hit. A text with literals is looked up by its
 * shape, so that `... WHERE aid = 42` and `... aid = 43` are analysed once:
 * a scan costs about a twentieth of a parse.
 */
static void classify_text(client_t *c, const char *sql, size_t len, route_class_t *out)
{
	worker_t *w = c->worker;
	const analysis_t *a = analyzer_lookup(w->analyzer, sql, len);
	if (a) {
		stats_route_cache(true);
		route_classify(w->config, a, params_is_synced, out);
		return;
	}
	/* Keys start with the tier that made them, so the two never meet. */
	char key[SHAPE_KEY_MAX];
	bool literals = false;
	size_t key_len = 0;
	if (len < SHAPE_KEY_MAX / 2) {
		key[0] = 'F';
		key_len = analyze_fast_shape_key(sql, len, key + 1, sizeof(key) - 1, &literals);
		if (!key_len) {
			key[0] = 'S';
			key_len = analyze_shape_key(sql, len, key + 1, sizeof(key) - 1, &literals);
		}
		if (key_len)
			key_len++;
	}
	if (key_len && literals) {
		route_class_t *known = hashmap_get(&w->shapes, key, key_len);
		if (known) {
			stats_route_cache(true);
			*out = *known;
			return;
		}
	}
	stats_route_cache(false);
	a = analyzer_get(w->analyzer, sql, len);
	if (!a) {
		route_class_unknown(out, "out of memory");
		return;
	}
	route_classify(w->config, a, params_is_synced, out);
	if (key_len && literals) {
		if (w->shapes.count >= SHAPES_MAX) {
			client_free_shapes(w);
			hashmap_init(&w->shapes, 1024);
		}
		route_class_t *copy = malloc(sizeof(*copy));
		if (copy) {
			*copy = *out;
			if (!hashmap_put(&w->shapes, key, key_len, copy))
				free(copy);
		}
	}
}

static void classify_stmt(client_t *c, stmt_t *st, route_class_t *out)
{
	if (!st->classified) {
		classify_text(c, st->query, st->query_len, &st->route_class);
		st->classified = true;
	}
	*out = st->route_class;
}

void client_classify_stmt(client_t *c, stmt_t *st, route_class_t *out)
{
	classify_stmt(c, st, out);
}

void client_classify_text(client_t *c, const char *sql, size_t len, route_class_t *out)
{
	classify_text(c, sql, len, out);
}

#define UNIT_MAX_PARSES 16

/*
 * The route class of the next unit of work in data[0..len): a simple
 * Query, or extended-protocol messages through Sync. *unit_len is the
 * unit's length when it is all there, else 0 (and the class is "write":
 * a read goes to a replica only when the whole unit is known to read).
 */
static void classify_unit(client_t *c, const uint8_t *data, size_t len, route_class_t *cls,
			  size_t *unit_len)
{
	const config_t *cfg = c->worker->config;
	const char *parsed[UNIT_MAX_PARSES];
	int n_parsed = 0;
	bool unnamed_parsed = false;
	size_t pos = 0;
	route_class_init(cls);
	*unit_len = 0;
	while (pos < len) {
		uint8_t type;
		size_t total;
		if (proto_frame(data + pos, len - pos, cfg->max_message_size, &type, &total) !=
		    FRAME_OK)
			break;
		proto_reader_t r;
		proto_reader_init(&r, data + pos + 5, total - 5);
		route_class_t one;
		const char *name, *query;
		size_t name_len, query_len;
		switch (type) {
		case 'Q':
			if (!proto_read_cstr(&r, &query, &query_len)) {
				route_class_unknown(cls, "malformed query");
				return;
			}
			classify_text(c, query, query_len, &one);
			route_class_merge(cls, &one);
			*unit_len = pos + total;
			return;
		case 'P':
			if (!proto_read_cstr(&r, &name, &name_len) ||
			    !proto_read_cstr(&r, &query, &query_len)) {
				route_class_unknown(cls, "malformed Parse");
				return;
			}
			classify_text(c, query, query_len, &one);
			route_class_merge(cls, &one);
			if (name_len == 0)
				unnamed_parsed = true;
			else if (n_parsed < UNIT_MAX_PARSES)
				parsed[n_parsed++] = name;
			break;
		case 'B': {
			const char *portal;
			if (!proto_read_cstr(&r, &portal, NULL) ||
			    !proto_read_cstr(&r, &name, &name_len)) {
				route_class_unknown(cls, "malformed Bind");
				return;
			}
			bool covered = name_len == 0 ? unnamed_parsed : false;
			for (int i = 0; i < n_parsed && !covered; i++)
				covered = strcmp(parsed[i], name) == 0;
			if (covered)
				break;
			stmt_t *st = name_len ? hashmap_get(&c->stmts, name, name_len) : c->unnamed;
			if (!st) {
				route_class_unknown(cls, "statement prepared in another unit");
				return;
			}
			classify_stmt(c, st, &one);
			route_class_merge(cls, &one);
			break;
		}
		case 'S':
			*unit_len = pos + total;
			return;
		case 'F':
			route_class_unknown(cls, "function call");
			*unit_len = pos + total;
			return;
		case 'X':
			route_class_unknown(cls, "terminate");
			return;
		default: /* Describe, Execute, Close, Flush, COPY data */
			break;
		}
		pos += total;
	}
	route_class_unknown(cls, "incomplete pipeline");
}

/* The pool of (shard, node) for this client's user and database. */
static pool_t *client_pool(client_t *c, int shard, int node)
{
	size_t n = sizeof(c->pools) / sizeof(c->pools[0]);
	for (size_t i = 0; i < n && c->pools[i]; i++)
		if (c->pools[i]->shard == shard && c->pools[i]->node == node)
			return c->pools[i];
	pool_t *p = pool_get(c->worker, shard, node, c->login_pool->user, c->login_pool->database);
	if (p) {
		memmove(&c->pools[1], &c->pools[0], (n - 1) * sizeof(c->pools[0]));
		c->pools[0] = p;
	}
	return p;
}

static int pool_load(int shard, int node, void *arg)
{
	pool_t *p = client_pool(arg, shard, node);
	return p ? p->n_active + p->n_waiting : 0;
}

/*
 * Chooses the pool for the next unit of work. Session pooling keeps one
 * server connection for the whole session, on the default shard's primary.
 */
static pool_t *route_unit(client_t *c, route_class_t cls, int shard, route_status_t *status)
{
	worker_t *w = c->worker;
	const config_t *cfg = w->config;
	*status = ROUTE_OK;
	c->unit_writes = false;
	c->txn_wrote = c->deferred_begin && !cls.read;
	if (cfg->pool.mode == POOL_SESSION) {
		c->target = (route_target_t){cfg->default_shard, 0, false, false, "session pooling"};
		return c->login_pool;
	}
	if (c->deferred_begin) {
		/* The first statement of a transaction the proxy began decides
		 * where the whole transaction runs. */
		if (cls.set_read_only) {
			cls.read = true;
			cls.reason = "read-only transaction";
		} else if (cls.read && cfg->routing.transaction_reads == TXN_READS_REPLICA_UNTIL_WRITE) {
			c->until_write = true;
			cls.reason = "transaction reads on a replica until its first write";
		} else {
			cls.read = false;
			if (!cls.pins)
				cls.reason = "read-write transaction";
		}
	}
	if (c->force_primary) {
		c->force_primary = false;
		if (cls.read) {
			cls.read = false;
			cls.reason = "read, replica behind the client's last write";
		}
	}
	if (cls.hint_shard >= 0)
		shard = cls.hint_shard;
	else if (shard < 0)
		shard = cfg->default_shard;
	const health_snapshot_t *snap = health_acquire();
	route_target_t t;
	*status = route_choose(cfg, snap, &cls, shard,
			       cfg->routing.read_your_writes ? client_write_lsn(c, shard) : 0,
			       &w->balance,
			       pool_load, c, &t);
	health_release(snap);
	if (*status != ROUTE_OK)
		return NULL;
	c->target = t;
	c->unit_writes = !cls.read;
	log_debug("route",
		  "\"client\":%llu,\"shard\":%d,\"node\":%d,\"replica\":%s,\"verify_lsn\":%s,"
		  "\"reason\":\"%s\"",
		  (unsigned long long)c->id, t.shard, t.node, t.replica ? "true" : "false",
		  t.verify_lsn ? "true" : "false", t.reason);
	if (cls.pins) {
		c->pin_next = true;
		log_info("client_pinned", "\"client\":%llu,\"reason\":\"%s\"",
			 (unsigned long long)c->id, cls.pin_reason);
	}
	return client_pool(c, t.shard, t.node);
}

/* Answers a unit that cannot run with an ErrorResponse and ReadyForQuery,
 * as PostgreSQL answers a failed statement: the session carries on. */
static void fail_unit(client_t *c, const char *sqlstate, const char *message)
{
	char esc[512];
	log_warning("unit_refused", "\"client\":%llu,\"sqlstate\":\"%s\",\"message\":\"%s\"",
		    (unsigned long long)c->id, sqlstate, log_json_escape(esc, sizeof(esc), message));
	proto_put_error(&c->out, "ERROR", sqlstate, message);
	proto_put_ready(&c->out, 'I');
}

/*
 * A server was linked for the client's next unit. Returns false when the
 * unit must wait: the replica is first asked whether it has replayed the
 * client's last write.
 */
static bool start_unit(client_t *c)
{
	server_t *s = c->server;
	c->units++;
	if (c->pin_next) {
		c->pin_next = false;
		c->pinned = true;
	}
	relay_prepare_link(s, c);
	if (c->target.verify_lsn) {
		c->checking = true;
		int64_t wait_ms = c->worker->config->routing.read_your_writes_wait_ms;
		if (wait_ms <= 0) {
			relay_send_lsn_query(s, "SELECT pg_catalog.pg_last_wal_replay_lsn()");
		} else {
			/* routing.read_your_writes_wait: the replica waits (in
			 * steps of 1 ms, bounded) until it has replayed the
			 * client's write, then answers its replay position. */
			char sql[512];
			snprintf(sql, sizeof(sql),
				 "WITH RECURSIVE w(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM w "
				 "WHERE i < %lld AND pg_catalog.pg_last_wal_replay_lsn() < "
				 "'%X/%X'::pg_catalog.pg_lsn AND "
				 "pg_catalog.pg_sleep(0.001)::text = '') "
				 "SELECT pg_catalog.pg_last_wal_replay_lsn() FROM (SELECT max(i) FROM w) "
				 "AS waited",
				 (long long)wait_ms,
				 (unsigned)(client_write_lsn(c, c->target.shard) >> 32),
				 (unsigned)(client_write_lsn(c, c->target.shard) & 0xffffffffu));
			relay_send_lsn_query(s, sql);
		}
		server_flush(s);
		return false;
	}
	/* After any check: a server sent elsewhere must not be left inside a
	 * transaction. */
	if (c->deferred_begin)
		relay_send_internal_query(s, c->deferred_begin);
	return true;
}

bool client_take_back_unit(client_t *c)
{
	if (buf_avail(&c->replay) == 0 || buf_avail(&c->out) > 0)
		return false;
	/* Put the unit back in front of whatever the client sent after it. */
	buf_t in = {0};
	if (!buf_append(&in, buf_head(&c->replay), buf_avail(&c->replay)) ||
	    !buf_append(&in, buf_head(&c->in), buf_avail(&c->in))) {
		buf_free(&in);
		return false;
	}
	buf_free(&c->in);
	c->in = in;
	buf_free(&c->replay);
	c->server = NULL;
	c->state = CLIENT_IDLE;
	c->checking = false;
	c->capturing = false;
	c->force_primary = true;
	c->replaying = true;
	log_info("read_retried", "\"client\":%llu,\"shard\":%d,\"node\":%d",
		 (unsigned long long)c->id, c->target.shard, c->target.node);
	return true;
}

void client_on_server_lost(client_t *c, bool in_transaction, int owed_syncs)
{
	if (c->state == CLIENT_CLOSED)
		return;
	c->server = NULL;
	buf_free(&c->replay);
	if (in_transaction || owed_syncs != 1 || c->pinned || c->state == CLIENT_LOGIN ||
	    c->worker->config->pool.mode == POOL_SESSION) {
		client_fatal(c, "08006", "server connection lost");
		return;
	}
	/* As PostgreSQL answers a failed statement: the session carries on. */
	c->state = CLIENT_IDLE;
	c->checking = false;
	c->capturing = false;
	c->discarding = false;
	fail_unit(c, "08006", "server connection lost while running the statement");
	client_flush(c);
}

void client_finish_switch(client_t *c)
{
	c->switching = false;
	c->force_primary = true;
	client_release_server(c);
	client_process_input(c);
}

/* The transaction the client was in has ended on its server. */
void client_end_transaction(client_t *c)
{
	free(c->deferred_begin);
	c->deferred_begin = NULL;
	c->until_write = false;
}

void client_finish_check(client_t *c)
{
	server_t *s = c->server;
	c->checking = false;
	c->target.verify_lsn = false;
	log_debug("replica_check", "\"client\":%llu,\"node\":%d,\"replay_lsn\":%llu,\"write_lsn\":%llu",
		  (unsigned long long)c->id, c->target.node, (unsigned long long)c->captured_lsn,
		  (unsigned long long)client_write_lsn(c, c->target.shard));
	if (c->captured_lsn < client_write_lsn(c, c->target.shard)) {
		/* Behind: this unit reads on the primary instead. */
		c->force_primary = true;
		client_release_server(c);
	} else if (c->deferred_begin) {
		relay_send_internal_query(s, c->deferred_begin);
	}
	client_process_input(c);
}

/* The text of a unit's only statement (a Query or an unnamed Parse). */
static bool unit_text(const uint8_t *data, size_t len, const char **text, size_t *text_len)
{
	size_t pos = 0;
	while (pos < len) {
		uint8_t type;
		size_t total;
		if (proto_frame(data + pos, len - pos, len, &type, &total) != FRAME_OK)
			return false;
		proto_reader_t r;
		const char *name;
		proto_reader_init(&r, data + pos + 5, total - 5);
		if (type == 'Q')
			return proto_read_cstr(&r, text, text_len);
		if (type == 'P')
			return proto_read_cstr(&r, &name, NULL) && name[0] == '\0' &&
			       proto_read_cstr(&r, text, text_len);
		pos += total;
	}
	return false;
}

/*
 * A unit that only says BEGIN: when reads may go to replicas, the proxy
 * answers it itself, as PostgreSQL would, and sends it with the next
 * unit, whose first statement decides where the transaction runs (SET
 * TRANSACTION READ ONLY: a replica). Returns false to route it normally.
 */
static bool defer_begin(client_t *c, const uint8_t *data, size_t len)
{
	const config_t *cfg = c->worker->config;
	const char *text;
	size_t text_len;
	/* Deferred when its first statement decides where the transaction
	 * runs: a replica, or the shard its keys name. */
	bool decides = (cfg->routing.read_write_split &&
			cfg->shards[cfg->default_shard].n_replicas > 0) ||
		       (sharding_active(cfg) && cfg->n_shards > 1);
	if (cfg->pool.mode != POOL_TRANSACTION || c->pinned || !decides ||
	    !unit_text(data, len, &text, &text_len))
		return false;
	const char *p = text;
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	if (strncasecmp(p, "begin", 5) != 0)
		return false; /* START TRANSACTION and commented forms: the primary */
	c->deferred_begin = strndup(text, text_len);
	if (!c->deferred_begin)
		return false;
	/* The answers PostgreSQL gives to each message of the unit. */
	size_t pos = 0;
	while (pos < len) {
		uint8_t type;
		size_t total;
		if (proto_frame(data + pos, len - pos, len, &type, &total) != FRAME_OK)
			break;
		switch (type) {
		case 'Q':
			proto_put_message(&c->out, 'C', "BEGIN", 6);
			proto_put_ready(&c->out, 'T');
			break;
		case 'P':
			proto_put_empty(&c->out, '1');
			break;
		case 'B':
			proto_put_empty(&c->out, '2');
			break;
		case 'D':
			if (total > 5 && data[pos + 5] == 'S') {
				static const uint8_t no_params[2] = {0, 0};
				proto_put_message(&c->out, 't', no_params, 2);
			}
			proto_put_empty(&c->out, 'n');
			break;
		case 'E':
			proto_put_message(&c->out, 'C', "BEGIN", 6);
			break;
		case 'C':
			proto_put_empty(&c->out, '3');
			break;
		case 'S':
			proto_put_ready(&c->out, 'T');
			break;
		default:
			break;
		}
		pos += total;
	}
	relay_set_stmt(c->worker, &c->unnamed, NULL);
	return true;
}

/*
 * An extended-protocol unit whose Sync has not arrived yet (a pipeline:
 * its client may wait for answers before it sends the rest) that names a
 * sharded table: its later statements may need other shards, so it runs
 * as a streamed fan-out (fanout_start_stream).
 */
static bool may_need_shards(client_t *c, const uint8_t *data, size_t len)
{
	const config_t *cfg = c->worker->config;
	if (!sharding_active(cfg) || cfg->n_shards < 2 || cfg->pool.mode != POOL_TRANSACTION ||
	    c->pinned || c->deferred_begin)
		return false;
	for (size_t pos = 0; pos < len;) {
		uint8_t type;
		size_t total;
		if (proto_frame(data + pos, len - pos, cfg->max_message_size, &type, &total) !=
		    FRAME_OK)
			return false;
		proto_reader_t r;
		proto_reader_init(&r, data + pos + 5, total - 5);
		route_class_t cls;
		const char *name, *query;
		size_t name_len, query_len;
		if (type == 'P' && proto_read_cstr(&r, NULL, NULL) &&
		    proto_read_cstr(&r, &query, &query_len)) {
			classify_text(c, query, query_len, &cls);
			if (cls.configured_tables && cls.hint_shard < 0)
				return true;
		} else if (type == 'B' && proto_read_cstr(&r, NULL, NULL) &&
			   proto_read_cstr(&r, &name, &name_len)) {
			stmt_t *st = name_len ? hashmap_get(&c->stmts, name, name_len) : c->unnamed;
			if (st) {
				classify_stmt(c, st, &cls);
				if (cls.configured_tables && cls.hint_shard < 0)
					return true;
			}
		} else if (type != 'D' && type != 'E' && type != 'C' && type != 'H') {
			return false;
		}
		pos += total;
	}
	return false;
}

/*
 * At the start of a unit inside a transaction (its server on one shard):
 * whether the unit needs another shard. A unit that stays is marked
 * checked (no per-message check); one that writes marks the transaction.
 */
static bool transaction_moves(client_t *c, const uint8_t *data, size_t len)
{
	size_t unit_len;
	route_class_t cls;
	classify_unit(c, data, len, &cls, &unit_len);
	if (unit_len == 0)
		return false; /* incomplete: checked message by message */
	if (!cls.read)
		c->txn_wrote = true;
	if (!cls.configured_tables || cls.hint_shard >= 0)
		return false;
	unit_route_t ur;
	sharding_route_unit(c, data, unit_len, &cls, &ur);
	if (ur.kind == UNIT_ROUTE_PAUSE) {
		unit_route_free(&ur);
		remap_park(c);
		return false;
	}
	bool moves = (ur.kind == UNIT_ROUTE_SHARD && ur.shard != c->server->pool->shard) ||
		     ur.kind == UNIT_ROUTE_PIPELINE;
	if (ur.kind == UNIT_ROUTE_SHARD && !moves)
		c->unit_checked = true;
	unit_route_free(&ur);
	return moves;
}

/*
 * Session pooling passes statements through under the client's names; the
 * shard check of a Bind still needs their texts, kept here.
 */
static void track_session_stmt(client_t *c, uint8_t type, const uint8_t *msg, size_t total)
{
	proto_reader_t r;
	const char *name;
	size_t name_len;
	uint8_t what;
	proto_reader_init(&r, msg + 5, total - 5);
	if (type == 'P')
		client_register_parse(c, msg + 5, total - 5, true, NULL, NULL);
	else if (type == 'C' && proto_read_u8(&r, &what) && what == 'S' &&
		 proto_read_cstr(&r, &name, &name_len))
		client_forget_stmt(c, name, name_len);
}

/*
 * A client that keeps its server (a transaction, a pinned session, session
 * pooling) sends a statement: it must belong on that server's shard. One
 * that needs another shard, or several, is refused by the server itself
 * (the transaction fails as PostgreSQL would fail it).
 */
static void check_transaction_shard(client_t *c, uint8_t type, const uint8_t *msg, size_t total)
{
	route_class_t cls;
	if (type == 'Q') {
		proto_reader_t r;
		const char *query;
		size_t query_len;
		proto_reader_init(&r, msg + 5, total - 5);
		if (!proto_read_cstr(&r, &query, &query_len))
			return;
		classify_text(c, query, query_len, &cls);
	} else {
		proto_reader_t r;
		const char *name;
		size_t name_len;
		proto_reader_init(&r, msg + 5, total - 5);
		if (!proto_read_cstr(&r, NULL, NULL) || !proto_read_cstr(&r, &name, &name_len))
			return;
		stmt_t *st = name_len ? hashmap_get(&c->stmts, name, name_len) : c->unnamed;
		if (!st)
			return;
		classify_stmt(c, st, &cls);
	}
	if (!cls.configured_tables || cls.hint_shard >= 0)
		return;
	unit_route_t ur;
	sharding_route_message(c, type, msg, total, &cls, &ur);
	if (ur.kind == UNIT_ROUTE_PAUSE) {
		unit_route_free(&ur);
		remap_park(c);
		return;
	}
	const config_t *cfg = c->worker->config;
	int here = c->server->pool->shard;
	char text[320];
	text[0] = '\0';
	if (ur.kind == UNIT_ROUTE_REFUSE)
		snprintf(text, sizeof(text), "%s", ur.message);
	else if (ur.kind == UNIT_ROUTE_FANOUT)
		snprintf(text, sizeof(text),
			 "a statement over several shards (%s) cannot run inside a transaction or a "
			 "session bound to shard %s",
			 ur.route.message, cfg->shards[here].name);
	else if (ur.kind == UNIT_ROUTE_SHARD && ur.shard != here)
		snprintf(text, sizeof(text),
			 "this statement needs shard %s, but the transaction (or session) runs on "
			 "shard %s; a transaction stays on one shard",
			 cfg->shards[ur.shard].name, cfg->shards[here].name);
	if (text[0]) {
		c->refusing = true;
		c->refusal_sent = false;
		snprintf(c->refusal_state, sizeof(c->refusal_state), "%s",
			 ur.kind == UNIT_ROUTE_REFUSE ? ur.sqlstate : "0A000");
		snprintf(c->refusal, sizeof(c->refusal), "%s", text);
	}
	unit_route_free(&ur);
}

/*
 * Runs the client's complete messages in data[0..len); returns how many
 * bytes it consumed. Stops early when it must wait for a server.
 */
static size_t run_messages(client_t *c, const uint8_t *data, size_t len)
{
	size_t pos = 0;
	const config_t *cfg = c->worker->config;
	/* While the proxy asks its own questions (the WAL position of the last
	 * write, a replica's replay position, a rollback before moving to the
	 * primary), the client's next unit waits, to be routed afterwards. */
	while (pos < len && c->state != CLIENT_CLOSED && !c->checking && !c->switching &&
	       !c->capturing && !c->rm_is_parked && !c->rm_waiting &&
	       (!c->fan || fanout_wants_input(c))) {
		if (c->fan) {
			/* A streamed pipeline takes the client's messages. */
			size_t used = fanout_feed(c, data + pos, len - pos);
			pos += used;
			if (used == 0 && c->fan)
				break;
			continue;
		}
		uint8_t type;
		size_t total;
		frame_status_t st;
		if (c->state == CLIENT_STARTUP) {
			st = proto_frame_startup(data + pos, len - pos, PROTO_STARTUP_MAX, &total);
		} else if (c->state == CLIENT_AUTH) {
			/* Before authentication, the stricter limit. */
			st = proto_frame(data + pos, len - pos, PROTO_STARTUP_MAX, &type, &total);
		} else if (c->state == CLIENT_LOGIN || c->state == CLIENT_WAITING) {
			break;
		} else {
			st = proto_frame(data + pos, len - pos, cfg->max_message_size, &type, &total);
		}
		if (st == FRAME_NEED_MORE)
			break;
		if (st != FRAME_OK) {
			char text[160];
			if (st == FRAME_TOO_LARGE)
				snprintf(text, sizeof(text),
					 "message of %u bytes exceeds the limit of %zu bytes",
					 buf_get_u32(data + pos + (c->state == CLIENT_STARTUP ? 0 : 1)),
					 c->state == CLIENT_STARTUP || c->state == CLIENT_AUTH
						 ? (size_t)PROTO_STARTUP_MAX
						 : cfg->max_message_size);
			else
				snprintf(text, sizeof(text), "invalid message length");
			client_fatal(c, "08P01", text);
			return pos;
		}
		const uint8_t *msg = data + pos;
		if (c->state == CLIENT_STARTUP) {
			pos += total;
			if (!handle_startup(c, msg, total, len - pos))
				return pos;
			continue;
		}
		if (c->state == CLIENT_AUTH) {
			pos += total;
			if (!handle_auth_message(c, type, msg, total))
				return pos;
			continue;
		}
		if (type == 'X') {
			client_close(c, "client terminated");
			return pos + total;
		}
		if (c->admin) {
			pos += total;
			if (!admin_message(c, type, msg, total))
				return pos;
			continue;
		}
		if (!c->server) {
			if (type == 'd' || type == 'c' || type == 'f' || type == 'H') {
				/* Outside COPY PostgreSQL ignores these too. */
				pos += total;
				continue;
			}
			if (atomic_load(&proxy.draining)) {
				client_fatal(c, "57P01",
					     "terminating connection due to administrator command (the "
					     "proxy is shutting down)");
				return pos;
			}
			size_t unit_len;
			route_status_t rs;
			route_class_t cls;
			classify_unit(c, data + pos, len - pos, &cls, &unit_len);
			if (unit_len == 0 && may_need_shards(c, data + pos, len - pos)) {
				/* An unfinished pipeline over sharded tables: run
				 * it as it comes, each statement on its shard. Not
				 * during a rebalance cut-over: its statements could
				 * not wait one by one. */
				if (remap_active(c->worker)) {
					remap_park(c);
					break;
				}
				if (!fanout_start_stream(c)) {
					client_fatal(c, "53200", "out of memory");
					return pos;
				}
				continue;
			}
			if (cls.bare_begin && unit_len > 0 && !c->deferred_begin &&
			    defer_begin(c, data + pos, unit_len)) {
				pos += unit_len;
				continue;
			}
			int shard = -1;
			if (unit_len > 0 && cls.configured_tables && sharding_active(cfg)) {
				unit_route_t ur;
				sharding_route_unit(c, data + pos, unit_len, &cls, &ur);
				if (ur.kind == UNIT_ROUTE_PAUSE) {
					/* A rebalance cut-over holds its rows: it
					 * waits, unread, until the map switched. */
					unit_route_free(&ur);
					remap_park(c);
					break;
				}
				if (ur.kind == UNIT_ROUTE_PIPELINE && c->deferred_begin) {
					ur.kind = UNIT_ROUTE_REFUSE;
					snprintf(ur.sqlstate, sizeof(ur.sqlstate), "0A000");
					snprintf(ur.message, sizeof(ur.message),
						 "a transaction stays on one shard: this pipeline's "
						 "statements need several");
				}
				if (ur.kind == UNIT_ROUTE_PIPELINE) {
					unit_route_free(&ur);
					if (!fanout_start_stream(c)) {
						client_fatal(c, "53200", "out of memory");
						return pos;
					}
					continue;
				}
				if (ur.kind == UNIT_ROUTE_FANOUT && c->deferred_begin &&
				    !ur.route.merge) {
					ur.kind = UNIT_ROUTE_REFUSE;
					snprintf(ur.sqlstate, sizeof(ur.sqlstate), "0A000");
					snprintf(ur.message, sizeof(ur.message),
						 "a write on several shards inside a transaction is not "
						 "supported (%s)",
						 ur.route.message);
				}
				if (ur.kind == UNIT_ROUTE_FANOUT) {
					char why[320];
					bool started = fanout_start(c, data + pos, unit_len, &ur, why,
								    sizeof(why));
					unit_route_free(&ur);
					pos += unit_len;
					if (!started)
						fail_unit(c, "0A000", why);
					continue;
				}
				if (ur.kind == UNIT_ROUTE_REFUSE && !c->deferred_begin) {
					fail_unit(c, ur.sqlstate, ur.message);
					unit_route_free(&ur);
					pos += unit_len;
					continue;
				}
				if (ur.kind == UNIT_ROUTE_REFUSE) {
					/* Inside a transaction the proxy began: the
					 * default shard's server fails it, so that
					 * the transaction is aborted there. */
					c->refusing = true;
					c->refusal_sent = false;
					snprintf(c->refusal_state, sizeof(c->refusal_state), "%s",
						 ur.sqlstate);
					snprintf(c->refusal, sizeof(c->refusal), "%s", ur.message);
					cls.read = false;
				} else if (ur.kind == UNIT_ROUTE_SHARD) {
					shard = ur.shard;
				}
				c->unit_checked = true;
				unit_route_free(&ur);
			}
			pool_t *pool = route_unit(c, cls, shard, &rs);
			if (pool && remap_shard_paused(pool->shard)) {
				/* PAUSE from the admin console: it waits for RESUME. */
				remap_park(c);
				break;
			}
			int limit = pool ? cfg->shards[pool->shard].max_concurrent : 0;
			if (limit > 0 && unit_len > 0 && pool_shard_active(pool->shard) >= limit) {
				/* A bulkhead: a saturated shard fails fast, the others
				 * are not held up by clients queueing for it. */
				char text[200];
				snprintf(text, sizeof(text),
					 "shard %s is saturated: %d statements run there "
					 "(shards[].max_concurrent)",
					 cfg->shards[pool->shard].name, limit);
				fail_unit(c, "53300", text);
				pos += unit_len;
				continue;
			}
			if (!pool) {
				char text[200];
				snprintf(text, sizeof(text),
					 "shard %s has no primary available",
					 cfg->shards[c->target.shard].name);
				if (rs == ROUTE_NO_PRIMARY && unit_len > 0) {
					fail_unit(c, "08006", text);
					pos += unit_len;
					continue;
				}
				client_fatal(c, rs == ROUTE_NO_PRIMARY ? "08006" : "53200",
					     rs == ROUTE_NO_PRIMARY ? text : "out of memory");
				return pos;
			}
			c->pool = pool;
			buf_free(&c->replay);
			if (c->target.replica && unit_len > 0)
				buf_append(&c->replay, data + pos, unit_len);
			if (!pool_acquire(pool, c)) {
				if (c->state != CLIENT_CLOSED)
					io_pause_read(c->ev_read, &c->read_paused);
				break;
			}
			c->state = CLIENT_ACTIVE;
			/* The unit was routed whole: its messages need no check. */
			c->unit_checked = unit_len > 0;
			if (!start_unit(c))
				break;
		}
		if (c->until_write && c->server->pending_count == 0 && c->server->tx_status == 'T' &&
		    (type == 'Q' || type == 'P' || type == 'B' || type == 'F')) {
			size_t unit_len;
			route_class_t cls;
			classify_unit(c, data + pos, len - pos, &cls, &unit_len);
			if (!cls.read && !cls.txn_end) {
				/* The transaction writes: it starts again on the
				 * primary (its reads so far saw the replica). */
				c->until_write = false;
				c->switching = true;
				relay_send_internal_query(c->server, "ROLLBACK");
				server_flush(c->server);
				break;
			}
		}
		if (c->server && !c->unit_checked && !c->refusing && !c->pinned &&
		    (type == 'Q' || type == 'P' || type == 'B') && sharding_active(cfg) &&
		    cfg->n_shards > 1 && cfg->pool.mode == POOL_TRANSACTION &&
		    c->server->pending_count == 0 && c->server->tx_status == 'T' &&
		    c->server->pool->node == 0 && transaction_moves(c, data + pos, len - pos)) {
			/* The transaction needs another shard too: it goes on
			 * over several (fanout.c), this server its first leg. */
			if (!fanout_start_txn(c, c->txn_wrote)) {
				client_fatal(c, "53200", "out of memory");
				return pos;
			}
			continue;
		}
		if (c->rm_is_parked)
			break;
		if (cfg->pool.mode == POOL_SESSION && sharding_active(cfg) && !c->refusing)
			track_session_stmt(c, type, msg, total);
		if (!c->refusing && !c->unit_checked && (type == 'Q' || type == 'B') &&
		    sharding_active(cfg)) {
			check_transaction_shard(c, type, msg, total);
			if (c->rm_is_parked)
				break;
		}
		if (c->refusing) {
			/* The unit's messages are dropped; the server's answer to
			 * the refusal answers them. */
			if (!c->refusal_sent) {
				c->refusal_sent = true;
				relay_send_refusal(c->server, c->refusal_state, c->refusal);
			}
			if (type == 'S' || type == 'Q') {
				c->refusing = false;
				c->unit_checked = false;
			}
			pos += total;
			continue;
		}
		if (type == 'S' || type == 'Q')
			c->unit_checked = false;
		if (!relay_client_message(c, type, msg, total))
			return pos + total;
		pos += total;
	}
	return pos;
}

void client_process_input(client_t *c)
{
	if (c->state == CLIENT_CLOSED || buf_avail(&c->in) == 0) {
		if (c->state != CLIENT_CLOSED && c->state != CLIENT_WAITING &&
		    c->state != CLIENT_LOGIN)
			io_resume_read(c->ev_read, &c->read_paused);
		return;
	}
	io_view_t v;
	io_view_buffer(&c->in, &v);
	size_t used = run_messages(c, v.data, v.len);
	if (c->state == CLIENT_CLOSED)
		return;
	io_keep(&c->in, &v, used);
	if (c->server)
		server_flush(c->server);
	client_flush(c);
	if (c->state == CLIENT_IDLE || c->state == CLIENT_ACTIVE)
		io_resume_read(c->ev_read, &c->read_paused);
}

/* Called when a server connection has been linked to the client. */
void client_on_linked(client_t *c)
{
	if (c->fan) {
		fanout_on_linked(c);
		return;
	}
	server_t *s = c->server;
	if (c->state == CLIENT_LOGIN) {
		if (!c->login_params_sent) {
			c->login_params_sent = true;
			if (relay_prepare_link(s, c)) {
				server_flush(s);
				return; /* finish when the SETs are answered */
			}
		}
		finish_login(c);
		if (c->state != CLIENT_CLOSED)
			client_process_input(c);
		return;
	}
	c->state = CLIENT_ACTIVE;
	if (!start_unit(c))
		return;
	client_process_input(c);
	if (c->server)
		server_flush(c->server);
}

static void client_on_read(evutil_socket_t fd, short what, void *arg)
{
	client_t *c = arg;
	(void)fd;
	(void)what;
	io_view_t v;
	if (c->tls == CONN_TLS_HANDSHAKE) {
		continue_tls(c);
		return;
	}
	int rc = io_read(c->worker, c->fd, c->ssl, &c->in, &v);
	if (rc == IO_AGAIN)
		return;
	c->last_active_ms = net_now_ms();
	if (rc != IO_OK) {
		client_close(c, rc == IO_EOF ? "client closed the connection" : "read failed");
		return;
	}
	size_t used = run_messages(c, v.data, v.len);
	if (c->state == CLIENT_CLOSED)
		return;
	io_keep(&c->in, &v, used);
	/* A message that is not complete yet must still fit the limit. */
	if (c->server) {
		server_flush(c->server);
		if (c->server && buf_avail(&c->server->out) > IO_HIGH_WATER)
			io_pause_read(c->ev_read, &c->read_paused);
	}
	client_flush(c);
}

static void client_on_write(evutil_socket_t fd, short what, void *arg)
{
	client_t *c = arg;
	(void)fd;
	(void)what;
	if (c->tls == CONN_TLS_HANDSHAKE) {
		continue_tls(c);
		return;
	}
	client_flush(c);
	if (c->state != CLIENT_CLOSED && c->fan && buf_avail(&c->out) < IO_LOW_WATER)
		fanout_resume(c);
	if (c->state != CLIENT_CLOSED && c->server && buf_avail(&c->out) < IO_LOW_WATER &&
	    c->server->state != SERVER_CLOSED)
		io_resume_read(c->server->ev_read, &c->server->read_paused);
}
