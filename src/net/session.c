/*
 * session.c - per-session state that must follow a client from one server
 * connection to the next: run-time parameters and prepared statements.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "net/net.h"
#include "proto/proto.h"

/*
 * The parameters PostgreSQL 15 reports with ParameterStatus (GUC_REPORT)
 * that a client can change. A server connection serves a client only after
 * these match what the client's session has (see relay_prepare_link).
 */
static const char *const synced_params[] = {"application_name", "client_encoding", "DateStyle",
					    "IntervalStyle",    "TimeZone",
					    "standard_conforming_strings"};

bool params_is_synced(const char *name)
{
	for (size_t i = 0; i < sizeof(synced_params) / sizeof(synced_params[0]); i++)
		if (strcasecmp(name, synced_params[i]) == 0)
			return true;
	return false;
}

/* Hash of one synced (name, value), the name folded to lower case. */
static uint64_t entry_hash(const char *name, const char *value, uint8_t flags)
{
	if (!(flags & PARAM_EXTRA) && !params_is_synced(name))
		return 0;
	uint64_t h = 0xcbf29ce484222325ULL;
	for (const char *c = name; *c; c++) {
		h ^= (uint8_t)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
		h *= 0x100000001b3ULL;
	}
	h ^= 0xff; /* separator: no (name, value) split aliases another */
	h *= 0x100000001b3ULL;
	for (const char *c = value; *c; c++) {
		h ^= (uint8_t)*c;
		h *= 0x100000001b3ULL;
	}
	/* Final mix so that XOR-combining entries does not cancel structure. */
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return h;
}

static int params_find(const params_t *p, const char *name)
{
	for (int i = 0; i < p->n; i++)
		if (strcasecmp(p->names[i], name) == 0)
			return i;
	return -1;
}

void params_set(params_t *p, const char *name, const char *value, uint8_t flags)
{
	int i = params_find(p, name);
	if (i >= 0) {
		uint64_t old = entry_hash(p->names[i], p->values[i], p->flags[i]);
		if (strcmp(p->values[i], value) != 0) {
			char *v = strdup(value);
			if (!v)
				return;
			free(p->values[i]);
			p->values[i] = v;
		}
		p->synced_fp ^= old;
		p->flags[i] = flags;
		p->synced_fp ^= entry_hash(p->names[i], p->values[i], flags);
		return;
	}
	if (p->n == p->cap) {
		int cap = p->cap ? p->cap * 2 : 16;
		char **names = realloc(p->names, sizeof(char *) * (size_t)cap);
		if (!names)
			return;
		p->names = names;
		char **values = realloc(p->values, sizeof(char *) * (size_t)cap);
		if (!values)
			return;
		p->values = values;
		uint8_t *fl = realloc(p->flags, (size_t)cap);
		if (!fl)
			return;
		p->flags = fl;
		p->cap = cap;
	}
	char *n = strdup(name), *v = strdup(value);
	if (!n || !v) {
		free(n);
		free(v);
		return;
	}
	p->names[p->n] = n;
	p->values[p->n] = v;
	p->flags[p->n] = flags;
	p->n++;
	p->synced_fp ^= entry_hash(n, v, flags);
}

const char *params_get(const params_t *p, const char *name)
{
	int i = params_find(p, name);
	return i >= 0 ? p->values[i] : NULL;
}

void params_remove(params_t *p, const char *name)
{
	int i = params_find(p, name);
	if (i < 0)
		return;
	p->synced_fp ^= entry_hash(p->names[i], p->values[i], p->flags[i]);
	free(p->names[i]);
	free(p->values[i]);
	p->n--;
	p->names[i] = p->names[p->n];
	p->values[i] = p->values[p->n];
	p->flags[i] = p->flags[p->n];
}

void params_copy(params_t *dst, const params_t *src)
{
	for (int i = 0; i < src->n; i++)
		params_set(dst, src->names[i], src->values[i], src->flags[i]);
}

void params_free(params_t *p)
{
	for (int i = 0; i < p->n; i++) {
		free(p->names[i]);
		free(p->values[i]);
	}
	free(p->names);
	free(p->values);
	free(p->flags);
	memset(p, 0, sizeof(*p));
}

/*
 * Finds or creates the worker's shared copy of a statement. The caller
 * owns one reference to the result.
 */
stmt_t *stmt_intern(worker_t *w, const char *query, size_t query_len, const uint8_t *types,
		    size_t types_len)
{
	size_t key_len = types_len + query_len;
	uint8_t *key = malloc(key_len ? key_len : 1);
	if (!key)
		return NULL;
	memcpy(key, types, types_len);
	memcpy(key + types_len, query, query_len);
	stmt_t *s = hashmap_get(&w->stmts, key, key_len);
	if (s) {
		free(key);
		s->refs++;
		return s;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		free(key);
		return NULL;
	}
	s->query = malloc(query_len + 1);
	if (!s->query || !hashmap_put(&w->stmts, key, key_len, s)) {
		free(s->query);
		free(s);
		free(key);
		return NULL;
	}
	memcpy(s->query, query, query_len);
	s->query[query_len] = '\0';
	s->query_len = query_len;
	s->key = key;
	s->key_len = key_len;
	s->types = key;
	s->types_len = types_len;
	s->id = ++w->next_stmt_id;
	s->refs = 1;
	return s;
}

void stmt_ref(stmt_t *s)
{
	s->refs++;
}

void stmt_unref(worker_t *w, stmt_t *s)
{
	if (--s->refs > 0)
		return;
	hashmap_remove(&w->stmts, s->key, s->key_len);
	free(s->key);
	free(s->query);
	free(s);
}

parse_reg_t client_register_parse(client_t *c, const uint8_t *body, size_t len, bool replace,
				  const char **name_out, stmt_t **existing)
{
	proto_reader_t r;
	const char *name, *query;
	size_t name_len, query_len;
	uint16_t n_types;
	proto_reader_init(&r, body, len);
	if (!proto_read_cstr(&r, &name, &name_len) || !proto_read_cstr(&r, &query, &query_len) ||
	    !proto_read_u16(&r, &n_types) || proto_reader_left(&r) != (size_t)n_types * 4)
		return PARSE_MALFORMED;
	if (name_out)
		*name_out = name;
	stmt_t *st = stmt_intern(c->worker, query, query_len, body + r.pos - 2,
				 2 + (size_t)n_types * 4);
	if (!st)
		return PARSE_NO_MEMORY;
	if (name_len == 0) {
		relay_set_stmt(c->worker, &c->unnamed, st);
		stmt_unref(c->worker, st);
		return PARSE_REGISTERED;
	}
	stmt_t *old = hashmap_get(&c->stmts, name, name_len);
	if (old && !replace) {
		if (existing)
			*existing = old;
		bool same = old == st;
		stmt_unref(c->worker, st);
		return same ? PARSE_SAME : PARSE_DUPLICATE;
	}
	if (old)
		client_forget_stmt(c, name, name_len);
	if (!hashmap_put(&c->stmts, name, name_len, st)) {
		stmt_unref(c->worker, st);
		return PARSE_NO_MEMORY;
	}
	return PARSE_REGISTERED;
}

void client_forget_stmt(client_t *c, const char *name, size_t len)
{
	stmt_t *old = len ? hashmap_remove(&c->stmts, name, len) : NULL;
	if (old)
		stmt_unref(c->worker, old);
}
