/*
 * relay.c - what flows between a linked client and server connection.
 *
 * Every message the proxy sends a server that owes a response gets a
 * pending_t, in order (protocol-flow: responses come back in the order the
 * messages were sent; after an ErrorResponse in the extended protocol the
 * server skips everything up to Sync). The queue tells, for each server
 * message, whether it belongs to the client (relay it), to the proxy's own
 * messages (swallow it), and when a response the proxy answered by itself
 * (a ParseComplete for a statement the server already has) must be sent.
 *
 * In transaction pooling, named prepared statements are renamed: the
 * client's name maps to a worker-wide stmt_t, prepared on a server as
 * "_sg<id>" the first time a client of that server uses it, and kept in a
 * bounded per-server LRU.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/stats.h"
#include "health/health.h"
#include "net/net.h"
#include "pool/pool.h"
#include "proto/proto.h"

static pending_t *pending_at(server_t *s, int i)
{
	return &s->pending[(s->pending_head + i) % s->pending_cap];
}

static pending_t *pending_first(server_t *s)
{
	return s->pending_count ? pending_at(s, 0) : NULL;
}

static int64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static bool pending_push(server_t *s, pending_kind_t kind, pending_action_t action, uint8_t synth,
			 stmt_t *created)
{
	if (s->pending_count == s->pending_cap) {
		int cap = s->pending_cap ? s->pending_cap * 2 : 16;
		pending_t *ring = malloc(sizeof(pending_t) * (size_t)cap);
		if (!ring)
			return false;
		for (int i = 0; i < s->pending_count; i++)
			ring[i] = *pending_at(s, i);
		free(s->pending);
		s->pending = ring;
		s->pending_cap = cap;
		s->pending_head = 0;
	}
	pending_t *p = pending_at(s, s->pending_count);
	p->kind = (uint8_t)kind;
	p->action = (uint8_t)action;
	p->synth = synth;
	p->capture_lsn = false;
	p->error = NULL;
	p->created = created;
	p->unit_start_us = 0;
	if (action == ACTION_FORWARD) {
		if (!s->next_unit_start_us)
			s->next_unit_start_us = mono_us();
		if (kind == PENDING_QUERY || kind == PENDING_SYNC) {
			p->unit_start_us = s->next_unit_start_us;
			s->next_unit_start_us = 0;
		}
	}
	if (s->pending_count++ == 0)
		server_busy(s, true);
	return true;
}

static void pending_pop(server_t *s)
{
	pending_t *p = pending_at(s, 0);
	free(p->error);
	p->error = NULL;
	s->pending_head = (s->pending_head + 1) % s->pending_cap;
	if (--s->pending_count == 0)
		server_busy(s, false);
}

void relay_reset_pending(server_t *s)
{
	while (s->pending_count > 0)
		pending_pop(s);
	s->pending_head = 0;
	s->pending_count = 0;
	server_busy(s, false);
	s->next_unit_start_us = 0;
	s->unit_sqlstate[0] = '\0';
	s->skipping = false;
}

/* --- the per-server prepared statement cache --- */

static server_stmt_t *server_find_stmt(server_t *s, const stmt_t *st)
{
	return hashmap_get(&s->stmts, &st->id, sizeof(st->id));
}

static void lru_unlink(server_t *s, server_stmt_t *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		s->lru_head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		s->lru_tail = e->prev;
	e->prev = e->next = NULL;
}

static void lru_push_front(server_t *s, server_stmt_t *e)
{
	e->prev = NULL;
	e->next = s->lru_head;
	if (s->lru_head)
		s->lru_head->prev = e;
	s->lru_head = e;
	if (!s->lru_tail)
		s->lru_tail = e;
}

static void server_forget_stmt(server_t *s, server_stmt_t *e)
{
	lru_unlink(s, e);
	hashmap_remove(&s->stmts, &e->stmt->id, sizeof(e->stmt->id));
	stmt_unref(s->worker, e->stmt);
	free(e);
	s->n_stmts--;
}

static void stmt_server_name(const stmt_t *st, char *out, size_t outlen)
{
	snprintf(out, outlen, "_sg%llu", (unsigned long long)st->id);
}

/* Appends a Close of the statement and drops its CloseComplete. */
static void evict_oldest(server_t *s)
{
	server_stmt_t *e = s->lru_tail;
	char name[32];
	stmt_server_name(e->stmt, name, sizeof(name));
	size_t n = strlen(name) + 2;
	if (buf_reserve(&s->out, n + 5)) {
		buf_put_u8(&s->out, 'C');
		buf_put_u32(&s->out, (uint32_t)(n + 4));
		buf_put_u8(&s->out, 'S');
		buf_put_cstr(&s->out, name);
		pending_push(s, PENDING_CLOSE, ACTION_DROP, 0, NULL);
	}
	server_forget_stmt(s, e);
}

static void server_remember_stmt(server_t *s, stmt_t *st)
{
	int limit = s->worker->config->pool.prepared_statements;
	if (limit < 1)
		limit = 1;
	while (s->n_stmts >= limit && s->lru_tail)
		evict_oldest(s);
	server_stmt_t *e = calloc(1, sizeof(*e));
	if (!e)
		return;
	if (!hashmap_put(&s->stmts, &st->id, sizeof(st->id), e)) {
		free(e);
		return;
	}
	stmt_ref(st);
	e->stmt = st;
	lru_push_front(s, e);
	s->n_stmts++;
}

void relay_set_stmt(worker_t *w, stmt_t **slot, stmt_t *st)
{
	if (st)
		stmt_ref(st);
	if (*slot)
		stmt_unref(w, *slot);
	*slot = st;
}

void relay_drop_stmts(server_t *s)
{
	while (s->lru_head)
		server_forget_stmt(s, s->lru_head);
	relay_set_stmt(s->worker, &s->unnamed, NULL);
}

typedef struct {
	const stmt_t *stmt;
	const void *key;
	size_t key_len;
} find_name_t;

static void find_name(const void *key, size_t len, void *value, void *arg)
{
	find_name_t *f = arg;
	if (value == f->stmt && !f->key) {
		f->key = key;
		f->key_len = len;
	}
}

/*
 * A Parse that failed or was skipped created nothing: the server does not
 * have the statement, and a client's own Parse leaves its name free again.
 */
static void unregister_created(server_t *s, pending_t *p)
{
	if (!p->created)
		return;
	server_stmt_t *e = server_find_stmt(s, p->created);
	if (e)
		server_forget_stmt(s, e);
	client_t *c = s->client;
	if (c && p->action == ACTION_FORWARD) {
		/* The name comes from the client and may be long: remove it by
		 * the map's own copy of the key (read before the entry is freed). */
		find_name_t f = {p->created, NULL, 0};
		hashmap_foreach(&c->stmts, find_name, &f);
		if (f.key) {
			stmt_t *st = hashmap_remove(&c->stmts, f.key, f.key_len);
			if (st)
				stmt_unref(c->worker, st);
		}
	}
	p->created = NULL;
}

/* Appends Parse(_sg<id>, query, types) to the server's output. */
static bool put_parse(server_t *s, const stmt_t *st)
{
	char name[32];
	stmt_server_name(st, name, sizeof(name));
	size_t body = strlen(name) + 1 + st->query_len + 1 + st->types_len;
	if (!buf_reserve(&s->out, body + 5))
		return false;
	buf_put_u8(&s->out, 'P');
	buf_put_u32(&s->out, (uint32_t)(body + 4));
	buf_put_cstr(&s->out, name);
	buf_put_bytes(&s->out, st->query, st->query_len);
	buf_put_u8(&s->out, 0);
	buf_put_bytes(&s->out, st->types, st->types_len);
	return true;
}

/* Appends Parse("", query, types): the unnamed statement. */
static bool put_parse_unnamed(server_t *s, const stmt_t *st)
{
	size_t body = 1 + st->query_len + 1 + st->types_len;
	if (!buf_reserve(&s->out, body + 5))
		return false;
	buf_put_u8(&s->out, 'P');
	buf_put_u32(&s->out, (uint32_t)(body + 4));
	buf_put_u8(&s->out, 0);
	buf_put_bytes(&s->out, st->query, st->query_len);
	buf_put_u8(&s->out, 0);
	buf_put_bytes(&s->out, st->types, st->types_len);
	return true;
}

/*
 * In transaction pooling the client's unnamed statement may have been
 * parsed on another server connection (asyncpg parses in one Sync and
 * binds in the next): parse it here first.
 */
static bool ensure_unnamed(client_t *c, server_t *s)
{
	if (!c->unnamed || s->unnamed == c->unnamed)
		return true;
	if (!put_parse_unnamed(s, c->unnamed))
		return false;
	relay_set_stmt(c->worker, &s->unnamed, c->unnamed);
	return pending_push(s, PENDING_PARSE, ACTION_DROP, 0, NULL);
}

/* Makes sure the server has the statement before a Bind or Describe. */
static bool ensure_prepared(server_t *s, stmt_t *st)
{
	server_stmt_t *e = server_find_stmt(s, st);
	if (e) {
		lru_unlink(s, e);
		lru_push_front(s, e);
		return true;
	}
	if (!put_parse(s, st))
		return false;
	server_remember_stmt(s, st);
	return pending_push(s, PENDING_PARSE, ACTION_DROP, 0, st);
}

static void emit_synth(client_t *c, const pending_t *p)
{
	if (!c)
		return;
	buf_free(&c->replay); /* answered: no longer safe to run again */
	if (p->synth == 'E')
		proto_put_error(&c->out, "ERROR", "42P05", p->error ? p->error : "");
	else
		proto_put_empty(&c->out, p->synth);
}

/* Answers at once when nothing is owed before it, else queues it. */
static bool push_synth(server_t *s, pending_kind_t kind, uint8_t type)
{
	if (s->pending_count == 0) {
		pending_t p = {.synth = type};
		emit_synth(s->client, &p);
		return true;
	}
	return pending_push(s, kind, ACTION_SYNTH, type, NULL);
}

/*
 * A Parse that PostgreSQL would refuse (42P05: the name exists). The error
 * goes out in order, and the client's messages up to Sync are dropped, as
 * the server would skip them after an error.
 */
static bool refuse_duplicate(client_t *c, server_t *s, const char *name)
{
	char text[160];
	snprintf(text, sizeof(text), "prepared statement \"%s\" already exists", name);
	c->discarding = true;
	if (s->pending_count == 0) {
		buf_free(&c->replay);
		proto_put_error(&c->out, "ERROR", "42P05", text);
		return true;
	}
	if (!pending_push(s, PENDING_PARSE, ACTION_SYNTH, 'E', NULL))
		return false;
	pending_at(s, s->pending_count - 1)->error = strdup(text);
	return true;
}

static bool forward(server_t *s, const uint8_t *msg, size_t len)
{
	return buf_append(&s->out, msg, len);
}

/* Rewrites a message: `prefix` bytes of the original, then `name`, then the
 * original from `rest` on. */
static bool forward_renamed(server_t *s, uint8_t type, const uint8_t *body, size_t prefix,
			    const char *name, const uint8_t *rest, size_t rest_len)
{
	size_t n = prefix + strlen(name) + 1 + rest_len;
	if (!buf_reserve(&s->out, n + 5))
		return false;
	buf_put_u8(&s->out, type);
	buf_put_u32(&s->out, (uint32_t)(n + 4));
	buf_put_bytes(&s->out, body, prefix);
	buf_put_cstr(&s->out, name);
	buf_put_bytes(&s->out, rest, rest_len);
	return true;
}

static bool renaming(const client_t *c)
{
	return c->worker->config->pool.mode == POOL_TRANSACTION;
}

/* Parse: String name, String query, Int16 n, Int32[n] type OIDs. */
static bool relay_parse(client_t *c, server_t *s, const uint8_t *msg, size_t len)
{
	proto_reader_t r;
	const char *name, *query;
	size_t query_len;
	uint16_t n_types;
	const uint8_t *types;

	proto_reader_init(&r, msg + 5, len - 5);
	if (!proto_read_cstr(&r, &name, NULL) || !proto_read_cstr(&r, &query, &query_len) ||
	    !proto_read_u16(&r, &n_types) || proto_reader_left(&r) != (size_t)n_types * 4) {
		client_fatal(c, "08P01", "invalid Parse message");
		return false;
	}
	types = msg + 5 + r.pos - 2;
	if (!renaming(c))
		return forward(s, msg, len) && pending_push(s, PENDING_PARSE, ACTION_FORWARD, 0, NULL);

	size_t name_len = strlen(name);
	stmt_t *old = name_len ? hashmap_get(&c->stmts, name, name_len) : NULL;
	stmt_t *st = stmt_intern(c->worker, query, query_len, types, 2 + (size_t)n_types * 4);
	if (!st)
		return false;
	if (old && old == st && c->replaying) {
		/* The same unit again, after its replica failed: the name is
		 * the client's already. */
		stmt_unref(c->worker, st);
		stmt_unref(c->worker, hashmap_remove(&c->stmts, name, name_len));
		old = NULL;
		st = stmt_intern(c->worker, query, query_len, types, 2 + (size_t)n_types * 4);
		if (!st)
			return false;
	}
	if (old) {
		stmt_unref(c->worker, st);
		return refuse_duplicate(c, s, name);
	}
	if (name_len == 0) {
		relay_set_stmt(c->worker, &c->unnamed, st);
		relay_set_stmt(c->worker, &s->unnamed, st);
		stmt_unref(c->worker, st);
		return forward(s, msg, len) && pending_push(s, PENDING_PARSE, ACTION_FORWARD, 0, NULL);
	}
	if (!hashmap_put(&c->stmts, name, name_len, st)) {
		stmt_unref(c->worker, st);
		return false;
	}
	server_stmt_t *e = server_find_stmt(s, st);
	if (e) {
		lru_unlink(s, e);
		lru_push_front(s, e);
		return push_synth(s, PENDING_PARSE, '1');
	}
	if (!put_parse(s, st))
		return false;
	server_remember_stmt(s, st);
	return pending_push(s, PENDING_PARSE, ACTION_FORWARD, 0, st);
}

/* Bind: String portal, String statement, then formats and values. */
static bool relay_bind(client_t *c, server_t *s, const uint8_t *msg, size_t len)
{
	proto_reader_t r;
	const char *portal, *name;
	size_t name_len;

	proto_reader_init(&r, msg + 5, len - 5);
	if (!proto_read_cstr(&r, &portal, NULL) || !proto_read_cstr(&r, &name, &name_len)) {
		client_fatal(c, "08P01", "invalid Bind message");
		return false;
	}
	stmt_t *st = NULL;
	if (renaming(c) && name_len == 0 && !ensure_unnamed(c, s))
		return false;
	if (renaming(c) && name_len > 0)
		st = hashmap_get(&c->stmts, name, name_len);
	if (!st)
		return forward(s, msg, len) && pending_push(s, PENDING_BIND, ACTION_FORWARD, 0, NULL);
	if (!ensure_prepared(s, st))
		return false;
	char server_name[32];
	stmt_server_name(st, server_name, sizeof(server_name));
	size_t prefix = strlen(portal) + 1;
	return forward_renamed(s, 'B', msg + 5, prefix, server_name, msg + 5 + r.pos,
			       len - 5 - r.pos) &&
	       pending_push(s, PENDING_BIND, ACTION_FORWARD, 0, NULL);
}

/* Describe and Close: Byte1 'S' or 'P', String name. */
static bool relay_describe_or_close(client_t *c, server_t *s, uint8_t type, const uint8_t *msg,
				    size_t len)
{
	proto_reader_t r;
	uint8_t what;
	const char *name;
	size_t name_len;
	pending_kind_t kind = type == 'D' ? PENDING_DESCRIBE : PENDING_CLOSE;

	proto_reader_init(&r, msg + 5, len - 5);
	if (!proto_read_u8(&r, &what) || (what != 'S' && what != 'P') ||
	    !proto_read_cstr(&r, &name, &name_len) || proto_reader_left(&r) != 0) {
		client_fatal(c, "08P01", type == 'D' ? "invalid Describe message"
						     : "invalid Close message");
		return false;
	}
	if (what == 'S' && type == 'D' && renaming(c) && name_len == 0 && !ensure_unnamed(c, s))
		return false;
	if (what != 'S' || !renaming(c) || name_len == 0)
		return forward(s, msg, len) && pending_push(s, kind, ACTION_FORWARD, 0, NULL);

	stmt_t *st = hashmap_get(&c->stmts, name, name_len);
	if (type == 'C') {
		/* The server keeps its copy for other clients; closing a name
		 * that does not exist is not an error in PostgreSQL either. */
		if (st) {
			hashmap_remove(&c->stmts, name, name_len);
			stmt_unref(c->worker, st);
		}
		return push_synth(s, PENDING_CLOSE, '3');
	}
	if (!st)
		return forward(s, msg, len) && pending_push(s, kind, ACTION_FORWARD, 0, NULL);
	if (!ensure_prepared(s, st))
		return false;
	char server_name[32];
	stmt_server_name(st, server_name, sizeof(server_name));
	return forward_renamed(s, 'D', msg + 5, 1, server_name, NULL, 0) &&
	       pending_push(s, kind, ACTION_FORWARD, 0, NULL);
}

/*
 * Sends one client message to the linked server, recording the responses
 * it is owed. Returns false when the client was failed (and is closing).
 */
bool relay_client_message(client_t *c, uint8_t type, const uint8_t *msg, size_t len)
{
	server_t *s = c->server;
	bool extended = type == 'P' || type == 'B' || type == 'D' || type == 'E' || type == 'C';

	if (c->discarding && (extended || type == 'H'))
		return true; /* after the proxy's own error, as the server would */
	if (s->skipping && extended)
		return forward(s, msg, len); /* the server discards it until Sync */

	switch (type) {
	case 'Q':
		/* A simple query destroys the unnamed statement. */
		relay_set_stmt(c->worker, &s->unnamed, NULL);
		relay_set_stmt(c->worker, &c->unnamed, NULL);
		return forward(s, msg, len) && pending_push(s, PENDING_QUERY, ACTION_FORWARD, 0, NULL);
	case 'F':
		return forward(s, msg, len) && pending_push(s, PENDING_QUERY, ACTION_FORWARD, 0, NULL);
	case 'S':
		c->discarding = false;
		s->skipping = false;
		return forward(s, msg, len) && pending_push(s, PENDING_SYNC, ACTION_FORWARD, 0, NULL);
	case 'H':
	case 'd':
	case 'c':
	case 'f':
		return forward(s, msg, len);
	case 'E':
		return forward(s, msg, len) &&
		       pending_push(s, PENDING_EXECUTE, ACTION_FORWARD, 0, NULL);
	case 'P':
		return relay_parse(c, s, msg, len);
	case 'B':
		return relay_bind(c, s, msg, len);
	case 'D':
	case 'C':
		return relay_describe_or_close(c, s, type, msg, len);
	default: {
		char text[96];
		snprintf(text, sizeof(text), "invalid frontend message type %d", type);
		client_fatal(c, "08P01", text);
		return false;
	}
	}
}

static bool is_terminal(const pending_t *p, uint8_t type)
{
	switch ((pending_kind_t)p->kind) {
	case PENDING_QUERY:
	case PENDING_SYNC:
		return type == 'Z';
	case PENDING_PARSE:
		return type == '1' || type == 'E';
	case PENDING_BIND:
		return type == '2' || type == 'E';
	case PENDING_CLOSE:
		return type == '3' || type == 'E';
	case PENDING_DESCRIBE:
		return type == 'T' || type == 'n' || type == 'E';
	case PENDING_EXECUTE:
		return type == 'C' || type == 'I' || type == 's' || type == 'E';
	}
	return false;
}

/* After an extended-protocol error the server ignores messages up to the
 * next Sync: so do we, dropping what they owed (and what we would have
 * answered ourselves), exactly as PostgreSQL would not have answered. */
static void skip_to_sync(server_t *s)
{
	pending_t *p;
	while ((p = pending_first(s)) && p->kind != PENDING_SYNC) {
		unregister_created(s, p);
		pending_pop(s);
	}
	if (!p)
		s->skipping = true;
}

/* Records a ParameterStatus; the client's session follows the server's. */
static void note_parameter(server_t *s, const uint8_t *msg, size_t len)
{
	proto_reader_t r;
	const char *name, *value;
	proto_reader_init(&r, msg + 5, len - 5);
	if (!proto_read_cstr(&r, &name, NULL) || !proto_read_cstr(&r, &value, NULL))
		return;
	params_set(&s->params, name, value, 0);
	if (s->client && params_is_synced(name))
		params_set(&s->client->params, name, value, 0);
}

static void unref_client_stmt(const void *key, size_t len, void *value, void *arg)
{
	(void)key;
	(void)len;
	stmt_unref(arg, value);
}

/*
 * A client's DEALLOCATE ALL or DISCARD ALL ran on the server: every
 * statement the server had is gone (other clients' too, which the cache
 * re-prepares on demand), and so are the client's own names.
 */
static void note_command_complete(server_t *s, client_t *c, const uint8_t *msg, size_t len)
{
	const char *tag = (const char *)msg + 5;
	if (len < 6 || msg[len - 1] != '\0')
		return;
	if (strcmp(tag, "DEALLOCATE ALL") != 0 && strcmp(tag, "DISCARD ALL") != 0)
		return;
	relay_drop_stmts(s);
	if (c) {
		hashmap_foreach(&c->stmts, unref_client_stmt, c->worker);
		hashmap_destroy(&c->stmts);
	}
}

/* True for an ErrorResponse of severity FATAL or PANIC (the session ends). */
static bool error_is_fatal(const uint8_t *msg, size_t len)
{
	proto_reader_t r;
	uint8_t field;
	const char *value;
	proto_reader_init(&r, msg + 5, len - 5);
	while (proto_read_u8(&r, &field) && field != 0) {
		if (!proto_read_cstr(&r, &value, NULL))
			return false;
		if (field == 'V' || field == 'S')
			return strcmp(value, "FATAL") == 0 || strcmp(value, "PANIC") == 0;
	}
	return false;
}

/*
 * Handles one message from a server connection that has finished logging
 * in. Returns false when the server connection must be closed.
 */
bool relay_parse_lsn_row(const uint8_t *msg, size_t len, uint64_t *lsn)
{
	/* DataRow: Int16 1, Int32 length, the pg_lsn as text. */
	proto_reader_t r;
	uint16_t n;
	int32_t vlen;
	const uint8_t *value;
	char text[64];
	proto_reader_init(&r, msg + 5, len - 5);
	if (!proto_read_u16(&r, &n) || n != 1 || !proto_read_i32(&r, &vlen) || vlen <= 0 ||
	    vlen >= (int32_t)sizeof(text) || !proto_read_bytes(&r, (size_t)vlen, &value))
		return false;
	memcpy(text, value, (size_t)vlen);
	text[vlen] = '\0';
	return health_parse_lsn(text, lsn);
}

bool relay_server_message(server_t *s, uint8_t type, const uint8_t *msg, size_t len)
{
	client_t *c = s->client;
	pending_t *p = pending_first(s);
	bool relay = c && (!p || p->action == ACTION_FORWARD);

	switch (type) {
	case 'S':
		note_parameter(s, msg, len);
		if (relay)
			buf_append(&c->out, msg, len);
		return true;
	case 'N':
	case 'A':
		if (relay) {
			buf_append(&c->out, msg, len);
			buf_free(&c->replay);
		}
		return true;
	default:
		break;
	}

	if (!p) {
		/* Nothing owed: a server that speaks now is shutting down. */
		if (type == 'E') {
			if (c)
				buf_append(&c->out, msg, len);
			return false;
		}
		log_warning("server_unexpected_message", "\"server\":%llu,\"type\":%d",
			    (unsigned long long)s->id, type);
		return true;
	}

	if (type == 'D' && p->capture_lsn) {
		uint64_t lsn;
		if (c && relay_parse_lsn_row(msg, len, &lsn))
			c->captured_lsn = lsn;
		return true;
	}
	if (type == 'E' && c && buf_avail(&c->replay) > 0 && error_is_fatal(msg, len)) {
		/* The replica is going away before answering a read: close it,
		 * and the read runs again elsewhere (client_take_back_unit). */
		return false;
	}
	if (type == 'E' && p->action == ACTION_DROP) {
		/* A statement the proxy issued failed: the client's next
		 * extended message would fail anyway, so it learns why. */
		if (p->kind != PENDING_QUERY && c)
			buf_append(&c->out, msg, len);
		else
			log_warning("server_internal_error", "\"server\":%llu",
				    (unsigned long long)s->id);
	} else if (relay) {
		buf_append(&c->out, msg, len);
		buf_free(&c->replay); /* answered: no longer safe to run again */
	}

	if (type == 'E' && relay && !s->unit_sqlstate[0]) {
		proto_reader_t r;
		uint8_t field;
		const char *value;
		proto_reader_init(&r, msg + 5, len - 5);
		while (proto_read_u8(&r, &field) && field != 0 && proto_read_cstr(&r, &value, NULL))
			if (field == 'C') {
				snprintf(s->unit_sqlstate, sizeof(s->unit_sqlstate), "%s", value);
				break;
			}
		if (!s->unit_sqlstate[0])
			snprintf(s->unit_sqlstate, sizeof(s->unit_sqlstate), "XX000");
	}
	if (type == 'Z' && p->unit_start_us) {
		stats_statement(s->pool->shard, s->pool->node, s->pool->node == 0,
				mono_us() - p->unit_start_us, s->unit_sqlstate[0] ? s->unit_sqlstate : NULL);
		s->unit_sqlstate[0] = '\0';
	}
	if (type == 'Z' && len >= 6)
		s->tx_status = (char)msg[5];
	else if (type == 'C' && relay)
		note_command_complete(s, c, msg, len);

	if (!is_terminal(p, type))
		return true;
	bool failed = type == 'E';
	if (failed) {
		unregister_created(s, p);
		/* A failed or skipped Parse leaves the unnamed statement unknown. */
		relay_set_stmt(s->worker, &s->unnamed, NULL);
	}
	pending_kind_t kind = (pending_kind_t)p->kind;
	pending_pop(s);
	if (failed && kind != PENDING_QUERY && kind != PENDING_SYNC)
		skip_to_sync(s);
	while ((p = pending_first(s)) && p->action == ACTION_SYNTH) {
		emit_synth(c, p);
		pending_pop(s);
	}
	return true;
}

/* Quotes a parameter value as a SQL string literal. */
static bool append_literal(buf_t *b, const char *value)
{
	if (!buf_append(b, "'", 1))
		return false;
	for (const char *p = value; *p; p++) {
		if (*p == '\'' && !buf_append(b, "'", 1))
			return false;
		if (!buf_append(b, p, 1))
			return false;
	}
	return buf_append(b, "'", 1);
}

static bool valid_param_name(const char *name)
{
	if (!name[0] || strlen(name) > CONFIG_NAME_MAX)
		return false;
	for (const char *p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '_' || *p == '.'))
			return false;
	return true;
}

/*
 * Before a server serves client c: queues the SET and RESET statements
 * that make the server's session parameters equal the client's. Returns
 * true when something was queued (its responses are swallowed).
 */
bool relay_prepare_link(server_t *s, client_t *c)
{
	if (c->params.synced_fp == s->params.synced_fp)
		return false; /* the same synced parameters: nothing to set */
	buf_t sql = {0};
	for (int i = 0; i < c->params.n; i++) {
		const char *name = c->params.names[i], *value = c->params.values[i];
		bool extra = c->params.flags[i] & PARAM_EXTRA;
		if (!extra && !params_is_synced(name))
			continue;
		const char *have = params_get(&s->params, name);
		if (have && strcmp(have, value) == 0)
			continue;
		if (!valid_param_name(name))
			continue;
		buf_append(&sql, "SET ", 4);
		buf_append(&sql, name, strlen(name));
		buf_append(&sql, " TO ", 4);
		append_literal(&sql, value);
		buf_append(&sql, ";", 1);
		if (extra)
			params_set(&s->params, name, value, PARAM_EXTRA);
	}
	for (int i = s->params.n - 1; i >= 0; i--) {
		const char *name = s->params.names[i];
		if (!(s->params.flags[i] & PARAM_EXTRA) || params_get(&c->params, name))
			continue;
		if (valid_param_name(name)) {
			buf_append(&sql, "RESET ", 6);
			buf_append(&sql, name, strlen(name));
			buf_append(&sql, ";", 1);
		}
		params_remove(&s->params, name);
	}
	if (buf_avail(&sql) == 0) {
		buf_free(&sql);
		return false;
	}
	buf_append(&sql, "", 1);
	bool ok = relay_send_internal_query(s, (const char *)buf_head(&sql));
	buf_free(&sql);
	return ok;
}

bool relay_send_internal_query(server_t *s, const char *sql)
{
	/* Like any simple query, it destroys the unnamed statement. */
	relay_set_stmt(s->worker, &s->unnamed, NULL);
	return proto_put_query(&s->out, sql) && pending_push(s, PENDING_QUERY, ACTION_DROP, 0, NULL);
}

bool relay_send_refusal(server_t *s, const char *sqlstate, const char *message)
{
	/* The server raises the error itself, so that a transaction it
	 * runs fails exactly as PostgreSQL fails one. */
	buf_t sql = {0};
	static const char head[] = "DO $sg$BEGIN RAISE EXCEPTION USING ERRCODE = '";
	static const char middle[] = "', MESSAGE = '";
	static const char tail[] = "'; END$sg$"; /* with its NUL */
	buf_append(&sql, head, sizeof(head) - 1);
	for (const char *p = sqlstate; *p; p++)
		if ((*p >= '0' && *p <= '9') || (*p >= 'A' && *p <= 'Z'))
			buf_append(&sql, p, 1);
	buf_append(&sql, middle, sizeof(middle) - 1);
	for (const char *p = message; *p; p++) {
		char ch = *p == '$' ? '?' : *p;
		if (ch == '\'')
			buf_append(&sql, "'", 1);
		buf_append(&sql, &ch, 1);
	}
	buf_append(&sql, tail, sizeof(tail));
	relay_set_stmt(s->worker, &s->unnamed, NULL);
	bool ok = proto_put_query(&s->out, (const char *)buf_head(&sql)) &&
		  pending_push(s, PENDING_QUERY, ACTION_FORWARD, 0, NULL);
	buf_free(&sql);
	return ok;
}

bool relay_send_lsn_query(server_t *s, const char *sql)
{
	if (!relay_send_internal_query(s, sql))
		return false;
	pending_at(s, s->pending_count - 1)->capture_lsn = true;
	if (s->client)
		s->client->captured_lsn = 0;
	return true;
}

int relay_owed_syncs(server_t *s)
{
	int n = 0;
	for (int i = 0; i < s->pending_count; i++) {
		const pending_t *p = pending_at(s, i);
		if (p->action == ACTION_FORWARD && (p->kind == PENDING_SYNC || p->kind == PENDING_QUERY))
			n++;
	}
	return n;
}
