/*
 * sharding.c - which shards a client's unit of work goes to.
 *
 * The unit is a simple Query, or extended-protocol messages through Sync.
 * Each statement it executes (the Query's text; each Bind with its
 * parameters) is routed by the shard map (route/shard.c). A unit whose
 * statements all land on one shard runs there through the ordinary relay;
 * one statement that needs several shards runs through a fan-out
 * (fanout.c); anything else is refused with 0A000 and a reason.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "net/net.h"
#include "pool/pool.h"
#include "proto/proto.h"
#include "route/directory.h"

#define FACTS_CACHE_MAX 10000
#define LOOKUPS_PER_UNIT 100000

bool sharding_active(const config_t *config)
{
	return config->n_tables > 0;
}

static void free_facts(const void *key, size_t len, void *value, void *arg)
{
	(void)key;
	(void)len;
	(void)arg;
	keys_free(value);
}

void sharding_free_worker(worker_t *w)
{
	if (w->facts.slots) {
		hashmap_foreach(&w->facts, free_facts, NULL);
		hashmap_destroy(&w->facts);
	}
	free(w->key_tables);
	w->key_tables = NULL;
}

/* The key facts of one statement text, cached per worker by exact text. */
static const keys_facts_t *facts_of(worker_t *w, const char *sql, size_t len)
{
	const config_t *cfg = w->config;
	if (!w->key_tables) {
		w->key_tables = shard_key_tables(cfg);
		if (!w->key_tables)
			return NULL;
	}
	if (!w->facts.slots && !hashmap_init(&w->facts, 1024))
		return NULL;
	keys_facts_t *f = hashmap_get(&w->facts, sql, len);
	if (f)
		return f;
	f = keys_extract(sql, len, w->key_tables, cfg->n_tables);
	if (!f)
		return NULL;
	if (w->facts.count >= FACTS_CACHE_MAX) {
		hashmap_foreach(&w->facts, free_facts, NULL);
		hashmap_destroy(&w->facts);
		if (!hashmap_init(&w->facts, 1024)) {
			keys_free(f);
			return NULL;
		}
	}
	if (!hashmap_put(&w->facts, sql, len, f)) {
		keys_free(f);
		return NULL;
	}
	return f;
}

static int directory_cb(int table, const char *key, size_t len, void *arg)
{
	return directory_cached(arg, table, key, len);
}

#define BIND_INLINE_PARAMS 16

/* A Bind's parameters; arrays inline for the common few, else on the heap. */
typedef struct {
	shard_params_t p;
	const uint8_t *values_inline[BIND_INLINE_PARAMS];
	int32_t lengths_inline[BIND_INLINE_PARAMS];
	int16_t formats_inline[BIND_INLINE_PARAMS];
	const uint8_t **values;
	int32_t *lengths;
	int16_t *formats;
} bind_params_t;

static void bind_params_free(bind_params_t *b)
{
	if (b->values != b->values_inline) {
		free(b->values);
		free(b->lengths);
		free(b->formats);
	}
	b->values = NULL;
	b->lengths = NULL;
	b->formats = NULL;
}

/* Parses a Bind body's parameters (values point into the body). */
static bool read_bind_params(const uint8_t *body, size_t len, bind_params_t *b)
{
	proto_reader_t r;
	proto_reader_init(&r, body, len);
	uint16_t n_formats, n_params;
	const uint8_t *fmt;
	b->values = NULL;
	b->lengths = NULL;
	b->formats = NULL;
	if (!proto_read_cstr(&r, NULL, NULL) || !proto_read_cstr(&r, NULL, NULL) ||
	    !proto_read_u16(&r, &n_formats) || !proto_read_bytes(&r, (size_t)n_formats * 2, &fmt) ||
	    !proto_read_u16(&r, &n_params) || (n_formats > 1 && n_formats != n_params))
		return false;
	if (n_params <= BIND_INLINE_PARAMS) {
		b->values = b->values_inline;
		b->lengths = b->lengths_inline;
		b->formats = b->formats_inline;
	} else {
		b->values = calloc(n_params, sizeof(*b->values));
		b->lengths = calloc(n_params, sizeof(*b->lengths));
		b->formats = calloc(n_params, sizeof(*b->formats));
		if (!b->values || !b->lengths || !b->formats)
			return false;
	}
	for (int i = 0; i < n_params; i++) {
		int32_t vlen;
		if (!proto_read_i32(&r, &vlen))
			return false;
		b->formats[i] = n_formats == 0   ? 0
				: n_formats == 1 ? (int16_t)buf_get_u16(fmt)
						 : (int16_t)buf_get_u16(fmt + 2 * i);
		b->lengths[i] = vlen < 0 ? 0 : vlen;
		b->values[i] = NULL;
		if (vlen >= 0 && !proto_read_bytes(&r, (size_t)vlen, &b->values[i]))
			return false;
	}
	b->p = (shard_params_t){n_params, b->values, b->lengths, b->formats};
	return true;
}

/* Gives the unit its own copy of the parameters (a fan-out keeps them). */
static bool keep_bind_params(unit_route_t *u, const bind_params_t *b)
{
	int n = b->p.n;
	u->param_values = malloc(sizeof(*u->param_values) * (size_t)(n ? n : 1));
	u->param_lengths = malloc(sizeof(*u->param_lengths) * (size_t)(n ? n : 1));
	u->param_formats = malloc(sizeof(*u->param_formats) * (size_t)(n ? n : 1));
	if (!u->param_values || !u->param_lengths || !u->param_formats)
		return false;
	memcpy(u->param_values, b->values, sizeof(*b->values) * (size_t)n);
	memcpy(u->param_lengths, b->lengths, sizeof(*b->lengths) * (size_t)n);
	memcpy(u->param_formats, b->formats, sizeof(*b->formats) * (size_t)n);
	u->params = (shard_params_t){n, u->param_values, u->param_lengths, u->param_formats};
	return true;
}

/*
 * Routes one statement text (with its Bind parameters, or none). Directory
 * keys the cache lacks are fetched here, blocking this worker for one
 * round trip each (see route/directory.h).
 */
static void route_statement(client_t *c, const char *sql, size_t len, const route_class_t *cls,
			    const shard_params_t *params, shard_route_t *out)
{
	worker_t *w = c->worker;
	const config_t *cfg = w->config;
	bool reads = cls->read;
	const shard_stmt_info_t *info = &cls->shard_info;
	const keys_facts_t *f = facts_of(w, sql, len);
	memset(out, 0, sizeof(*out));
	if (!f) {
		out->status = SHARD_ROUTE_REFUSE;
		out->sqlstate = "53200";
		snprintf(out->message, sizeof(out->message), "out of memory");
		return;
	}
	for (int i = 0; i < LOOKUPS_PER_UNIT; i++) {
		shard_route(cfg, info, f, reads, params, directory_cb, (void *)cfg, out);
		if (out->status == SHARD_ROUTE_OK && remap_must_wait(c, info, f, reads, params, out)) {
			shard_route_free(out);
			out->status = SHARD_ROUTE_PAUSED;
			return;
		}
		if (out->status != SHARD_ROUTE_LOOKUP)
			return;
		char err[256] = "";
		int shard = directory_fetch(cfg, c->login_pool->database, out->lookup_table,
					    out->lookup_key, out->lookup_len, out->lookup_insert, err,
					    sizeof(err));
		if (shard == -2 || (shard == -1 && !out->lookup_insert && !reads)) {
			size_t n = strlen(err);
			while (n > 0 && (err[n - 1] == '\n' || err[n - 1] == ' '))
				err[--n] = '\0';
			shard_route_free(out);
			out->status = SHARD_ROUTE_REFUSE;
			out->sqlstate = shard == -2 ? "08006" : "0A000";
			snprintf(out->message, sizeof(out->message), "%s",
				 shard == -2 ? err : "key not in the directory");
			return;
		}
		if (shard == -1) {
			/* A read of a key the directory does not know: no rows
			 * anywhere; any one shard gives the right empty answer. */
			shard_route_free(out);
			out->status = SHARD_ROUTE_OK;
			shardset_clear(&out->shards);
			shardset_add(&out->shards, cfg->default_shard);
			out->n_shards = 1;
			snprintf(out->message, sizeof(out->message), "key not in the directory");
			return;
		}
		shard_route_free(out);
	}
	out->status = SHARD_ROUTE_REFUSE;
	out->sqlstate = "54000";
	snprintf(out->message, sizeof(out->message), "too many directory keys in one statement");
}

void unit_route_free(unit_route_t *u)
{
	shard_route_free(&u->route);
	free(u->param_values);
	free(u->param_lengths);
	free(u->param_formats);
	free(u->bind_shards);
	u->bind_shards = NULL;
	u->param_values = NULL;
	u->param_lengths = NULL;
	u->param_formats = NULL;
}

static void unit_refuse(unit_route_t *u, const char *sqlstate, const char *message)
{
	u->kind = UNIT_ROUTE_REFUSE;
	snprintf(u->sqlstate, sizeof(u->sqlstate), "%s", sqlstate);
	snprintf(u->message, sizeof(u->message), "%s", message);
}

/*
 * Folds one routed statement into the unit's decision. Returns false when
 * the decision is final (a refusal).
 */
static bool unit_add(unit_route_t *u, shard_route_t *r, int n_executed)
{
	if (r->status == SHARD_ROUTE_REFUSE) {
		unit_refuse(u, r->sqlstate ? r->sqlstate : "0A000", r->message);
		return false;
	}
	if (r->status == SHARD_ROUTE_PAUSED) {
		u->kind = UNIT_ROUTE_PAUSE;
		return false;
	}
	int s = -1;
	if (r->status == SHARD_ROUTE_OK && r->n_shards == 1) {
		s = shardset_first(&r->shards); /* also an INSERT whose rows all go there */
	} else if (r->status == SHARD_ROUTE_OK) {
		if (n_executed == 1 && u->kind == UNIT_ROUTE_DEFAULT) {
			u->kind = UNIT_ROUTE_FANOUT;
			u->route = *r;
			memset(r, 0, sizeof(*r)); /* ownership of row_shard moves */
			snprintf(u->message, sizeof(u->message), "%s", u->route.message);
			return true;
		}
		unit_refuse(u, "0A000",
			    "a statement over several shards inside a pipeline of several "
			    "statements is not supported; send a Sync after it");
		return false;
	}
	if (u->bind_shards && u->n_binds < u->cap_binds)
		u->bind_shards[u->n_binds++] = s;
	if (s < 0)
		return true; /* not executed with parameters here: no constraint */
	if (u->kind == UNIT_ROUTE_DEFAULT) {
		u->kind = UNIT_ROUTE_SHARD;
		u->shard = s;
		snprintf(u->message, sizeof(u->message), "%s", r->message);
	} else if (u->kind == UNIT_ROUTE_SHARD && u->shard != s) {
		/* Statements of one pipeline on several shards: one
		 * transaction per shard, committed together (fanout.c). */
		u->kind = UNIT_ROUTE_PIPELINE;
		snprintf(u->message, sizeof(u->message), "pipeline over several shards");
	}
	return true;
}

void sharding_route_unit(client_t *c, const uint8_t *data, size_t len, const route_class_t *cls,
			 unit_route_t *u)
{
	const config_t *cfg = c->worker->config;
	memset(u, 0, sizeof(*u));
	u->kind = UNIT_ROUTE_DEFAULT;
	u->shard = cfg->default_shard;
	if (!sharding_active(cfg) || cls->hint_shard >= 0 || !cls->configured_tables)
		return;

	/* The executed statements: a Query's text; each Bind's statement. */
	int n_executed = 0;
	for (size_t pos = 0; pos < len;) {
		uint8_t type;
		size_t total;
		if (proto_frame(data + pos, len - pos, len, &type, &total) != FRAME_OK)
			break;
		if (type == 'B' || type == 'Q')
			n_executed++;
		pos += total;
	}
	if (n_executed > 1) {
		u->bind_shards = malloc(sizeof(int) * (size_t)n_executed);
		if (!u->bind_shards) {
			unit_refuse(u, "53200", "out of memory");
			return;
		}
		u->cap_binds = n_executed;
	}
	const char *unit_parse_name = NULL, *unit_parse_sql = NULL;
	size_t unit_parse_len = 0;
	const uint8_t *unit_parse_types = NULL;
	size_t unit_parse_types_len = 0;
	for (size_t pos = 0; pos < len;) {
		uint8_t type;
		size_t total;
		if (proto_frame(data + pos, len - pos, len, &type, &total) != FRAME_OK)
			break;
		proto_reader_t r;
		proto_reader_init(&r, data + pos + 5, total - 5);
		const char *sql, *name;
		size_t sql_len, name_len;
		shard_route_t route;
		if (type == 'Q') {
			if (!proto_read_cstr(&r, &sql, &sql_len))
				return;
			route_statement(c, sql, sql_len, cls, NULL, &route);
			u->replica_ok = cls->read;
			u->text = sql;
			u->text_len = sql_len;
			if (!unit_add(u, &route, n_executed)) {
				shard_route_free(&route);
				return;
			}
			shard_route_free(&route);
			return;
		}
		if (type == 'P') {
			uint16_t n_types;
			if (!proto_read_cstr(&r, &unit_parse_name, NULL) ||
			    !proto_read_cstr(&r, &unit_parse_sql, &unit_parse_len) ||
			    !proto_read_u16(&r, &n_types) ||
			    proto_reader_left(&r) != (size_t)n_types * 4)
				return; /* malformed: the relay refuses it */
			unit_parse_types = data + pos + 5 + r.pos - 2;
			unit_parse_types_len = 2 + (size_t)n_types * 4;
		}
		if (type == 'B') {
			const char *portal;
			if (!proto_read_cstr(&r, &portal, NULL) ||
			    !proto_read_cstr(&r, &name, &name_len))
				return;
			const uint8_t *types = NULL;
			size_t types_len = 0;
			route_class_t stmt_cls; /* this statement's own class */
			if (unit_parse_name && strcmp(unit_parse_name, name) == 0) {
				sql = unit_parse_sql;
				sql_len = unit_parse_len;
				types = unit_parse_types;
				types_len = unit_parse_types_len;
				client_classify_text(c, sql, sql_len, &stmt_cls);
			} else {
				stmt_t *st = name_len ? hashmap_get(&c->stmts, name, name_len)
						      : c->unnamed;
				if (!st)
					return; /* the server will say it does not exist */
				sql = st->query;
				sql_len = st->query_len;
				types = st->types;
				types_len = st->types_len;
				client_classify_stmt(c, st, &stmt_cls);
			}
			bind_params_t bind;
			if (!read_bind_params(data + pos + 5, total - 5, &bind)) {
				bind_params_free(&bind);
				return; /* malformed: the server answers it */
			}
			route_statement(c, sql, sql_len, &stmt_cls, &bind.p, &route);
			bool go_on = unit_add(u, &route, n_executed);
			shard_route_free(&route);
			if (u->kind == UNIT_ROUTE_FANOUT && !u->text) {
				u->text = sql;
				u->text_len = sql_len;
				u->types = types;
				u->types_len = types_len;
				u->bind = data + pos + 5;
				u->bind_len = total - 5;
				u->extended = true;
				u->replica_ok = stmt_cls.read;
				if (!keep_bind_params(u, &bind)) {
					bind_params_free(&bind);
					unit_refuse(u, "53200", "out of memory");
					return;
				}
			}
			bind_params_free(&bind);
			if (!go_on)
				return;
		}
		pos += total;
	}
}

/* Routes one Query or Bind message alone (a client in a transaction). */
void sharding_route_message(client_t *c, uint8_t type, const uint8_t *msg, size_t total,
			    const route_class_t *cls, unit_route_t *u)
{
	if (type == 'Q' || type == 'B') {
		sharding_route_unit(c, msg, total, cls, u);
		return;
	}
	memset(u, 0, sizeof(*u));
	u->kind = UNIT_ROUTE_DEFAULT;
	u->shard = c->worker->config->default_shard;
}
