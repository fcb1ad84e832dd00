/*
 * shard.c - from key facts and the shard map to target shards.
 */
#include "route/shard.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "route/hash.h"

int shardset_count(const shardset_t *s)
{
	int n = 0;
	for (int i = 0; i < CONFIG_MAX_SHARDS / 64; i++)
		n += __builtin_popcountll(s->bits[i]);
	return n;
}

int shardset_next(const shardset_t *s, int after)
{
	for (int i = after + 1; i < CONFIG_MAX_SHARDS; i++) {
		uint64_t word = s->bits[i / 64] >> (i % 64);
		if (word)
			return i + __builtin_ctzll(word);
		i |= 63; /* the rest of this word is empty */
	}
	return -1;
}

int shardset_first(const shardset_t *s)
{
	return shardset_next(s, -1);
}

static void shardset_and(shardset_t *a, const shardset_t *b)
{
	for (int i = 0; i < CONFIG_MAX_SHARDS / 64; i++)
		a->bits[i] &= b->bits[i];
}

static void shardset_or(shardset_t *a, const shardset_t *b)
{
	for (int i = 0; i < CONFIG_MAX_SHARDS / 64; i++)
		a->bits[i] |= b->bits[i];
}

keys_table_t *shard_key_tables(const config_t *config)
{
	size_t names = 0;
	for (int t = 0; t < config->n_tables; t++)
		names += sizeof(config->tables[t].name) + 1;
	keys_table_t *out = calloc(1, sizeof(*out) * (size_t)(config->n_tables + 1) + names);
	if (!out)
		return NULL;
	char *store = (char *)(out + config->n_tables + 1);
	for (int t = 0; t < config->n_tables; t++) {
		const cfg_table_t *table = &config->tables[t];
		const char *dot = strchr(table->name, '.');
		if (dot) {
			size_t n = (size_t)(dot - table->name);
			memcpy(store, table->name, n);
			store[n] = '\0';
			out[t].schema = store;
			store += n + 1;
			out[t].name = dot + 1;
		} else {
			out[t].name = table->name;
		}
		out[t].key = table->key[0] && table->strategy != STRATEGY_REFERENCE ? table->key
										    : NULL;
	}
	return out;
}

/* Every shard a table has rows on. */
static void table_shards(const config_t *config, const cfg_table_t *table, shardset_t *out)
{
	shardset_clear(out);
	switch (table->strategy) {
	case STRATEGY_HASH:
		for (int r = 0; r < table->buckets; r++)
			shardset_add(out, table->placement[r]);
		return;
	case STRATEGY_RANGE:
		for (int i = 0; i < table->n_ranges; i++)
			shardset_add(out, table->ranges[i].shard);
		return;
	default:
		for (int s = 0; s < config->n_shards; s++)
			shardset_add(out, s);
		return;
	}
}

/* The range holding a key value, -1 when none does. */
static int range_of(const cfg_table_t *table, const key_value_t *v)
{
	for (int i = 0; i < table->n_ranges; i++) {
		const cfg_range_t *r = &table->ranges[i];
		if (!r->has_below)
			return i;
		key_value_t below;
		if (!key_value_parse(table->key_type, r->below, &below))
			return -1;
		if (key_value_compare(table->key_type, v, &below) < 0)
			return i;
	}
	return -1;
}

int shard_of_text(const config_t *config, int t, const char *text, size_t len)
{
	const cfg_table_t *table = &config->tables[t];
	switch (table->strategy) {
	case STRATEGY_HASH: {
		int bucket;
		if (!hash_bucket_for_text_value(table->key_type, text, len, table->buckets,
						&bucket))
			return -1;
		return table->placement[bucket];
	}
	case STRATEGY_RANGE: {
		char copy[256];
		if (len >= sizeof(copy) || memchr(text, '\0', len))
			return -1;
		memcpy(copy, text, len);
		copy[len] = '\0';
		key_value_t v;
		if (!key_value_parse(table->key_type, copy, &v))
			return -1;
		int r = range_of(table, &v);
		return r < 0 ? -1 : table->ranges[r].shard;
	}
	case STRATEGY_DIRECTORY:
		return -2;
	default:
		return config->default_shard;
	}
}

/* Days from 1970-01-01 to 2000-01-01, PostgreSQL's epoch for binary times. */
#define PG_EPOCH_DAYS 10957

/* A binary time or date as text the range parser reads ("YYYY-MM-DD HH:MM:SS.ffffff[Z]"). */
static bool binary_time_text(key_type_t type, const uint8_t *bytes, size_t len, char *out,
			     size_t outlen)
{
	int64_t days, micros = 0;
	if (type == KEY_DATE) {
		if (len != 4)
			return false;
		days = (int32_t)buf_get_u32(bytes) + (int64_t)PG_EPOCH_DAYS;
	} else {
		if (len != 8)
			return false;
		int64_t us = (int64_t)(((uint64_t)buf_get_u32(bytes) << 32) | buf_get_u32(bytes + 4));
		days = us / 86400000000LL;
		micros = us % 86400000000LL;
		if (micros < 0) {
			micros += 86400000000LL;
			days--;
		}
		days += PG_EPOCH_DAYS;
	}
	/* civil_from_days (Howard Hinnant's algorithm). */
	int64_t z = days + 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t y = yoe + era * 400;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;
	int64_t d = doy - (153 * mp + 2) / 5 + 1;
	int64_t m = mp < 10 ? mp + 3 : mp - 9;
	if (m <= 2)
		y++;
	if (y < 1 || y > 9999)
		return false;
	if (type == KEY_DATE)
		snprintf(out, outlen, "%04d-%02d-%02d", (int)y, (int)m, (int)d);
	else
		snprintf(out, outlen, "%04d-%02d-%02d %02d:%02d:%02d.%06d%s", (int)y, (int)m,
			 (int)d, (int)(micros / 3600000000LL), (int)(micros / 60000000 % 60),
			 (int)(micros / 1000000 % 60), (int)(micros % 1000000),
			 type == KEY_TIMESTAMPTZ ? "Z" : "");
	return true;
}

int shard_of_binary(const config_t *config, int t, const uint8_t *bytes, size_t len)
{
	const cfg_table_t *table = &config->tables[t];
	switch (table->strategy) {
	case STRATEGY_HASH: {
		int bucket;
		if (!hash_bucket_for_binary_value(table->key_type, bytes, len, table->buckets,
						  &bucket))
			return -1;
		return table->placement[bucket];
	}
	case STRATEGY_RANGE: {
		char text[64];
		switch (table->key_type) {
		case KEY_SMALLINT:
		case KEY_INTEGER:
		case KEY_BIGINT: {
			int64_t v;
			if (len == 2)
				v = (int16_t)((bytes[0] << 8) | bytes[1]);
			else if (len == 4)
				v = (int32_t)buf_get_u32(bytes);
			else if (len == 8)
				v = (int64_t)(((uint64_t)buf_get_u32(bytes) << 32) |
					      buf_get_u32(bytes + 4));
			else
				return -1;
			snprintf(text, sizeof(text), "%lld", (long long)v);
			break;
		}
		case KEY_DATE:
		case KEY_TIMESTAMP:
		case KEY_TIMESTAMPTZ:
			if (!binary_time_text(table->key_type, bytes, len, text, sizeof(text)))
				return -1;
			break;
		case KEY_UUID:
			if (len != 16)
				return -1;
			for (int i = 0; i < 16; i++)
				snprintf(text + 2 * i, 3, "%02x", bytes[i]);
			break;
		default: /* text and varchar: the bytes themselves */
			return shard_of_text(config, t, (const char *)bytes, len);
		}
		return shard_of_text(config, t, text, strlen(text));
	}
	case STRATEGY_DIRECTORY:
		return -2;
	default:
		return config->default_shard;
	}
}

/* ---- evaluation of key constraints ---- */

typedef struct {
	const config_t *config;
	const keys_facts_t *facts;
	const shard_params_t *params;
	shard_directory_fn directory;
	void *directory_arg;
	shard_route_t *out;
	bool need_params; /* a $n decides and no parameters were given */
	bool lookup;      /* a directory key must be fetched (out->lookup_*) */
	bool insert;      /* looking up keys an INSERT brings */
} eval_t;

/* Notes a directory key to fetch (the first one wins). */
static void want_lookup(eval_t *e, int table, const char *key, size_t len)
{
	if (e->lookup)
		return;
	e->lookup = true;
	e->out->lookup_table = table;
	e->out->lookup_key = strndup(key, len);
	e->out->lookup_len = len;
	e->out->lookup_insert = e->insert;
}

/*
 * Adds to *set the shard of one key value. A value that is not of the
 * key's type adds every shard of the table: PostgreSQL will reject the
 * statement there with its own message. Returns false when the value is
 * not known yet (parameters missing, directory lookup).
 */
static bool add_value_text(eval_t *e, int t, const char *text, size_t len, bool binary,
			   shardset_t *set)
{
	const config_t *cfg = e->config;
	int shard = binary ? shard_of_binary(cfg, t, (const uint8_t *)text, len)
			   : shard_of_text(cfg, t, text, len);
	if (shard == -2) {
		if (binary) {
			/* Directory keys are text; a binary text value is its bytes. */
			if (cfg->tables[t].key_type != KEY_TEXT &&
			    cfg->tables[t].key_type != KEY_VARCHAR) {
				shardset_t all;
				table_shards(cfg, &cfg->tables[t], &all);
				shardset_or(set, &all);
				return true;
			}
		}
		shard = e->directory ? e->directory(t, text, len, e->directory_arg) : -1;
		if (shard < 0) {
			want_lookup(e, t, text, len);
			return false;
		}
	}
	if (shard < 0) {
		shardset_t all;
		table_shards(cfg, &cfg->tables[t], &all);
		shardset_or(set, &all);
		return true;
	}
	shardset_add(set, shard);
	return true;
}

/* Reads the elements of a text-format array literal '{a,b,"c d"}' one by one. */
static bool add_array_text(eval_t *e, int t, const char *text, size_t len, shardset_t *set)
{
	size_t i = 0;
	while (i < len && (text[i] == ' ' || text[i] == '\t'))
		i++;
	if (i >= len || text[i] != '{')
		return false;
	i++;
	char elem[256];
	bool ok = true;
	while (i < len && text[i] != '}') {
		while (i < len && (text[i] == ' ' || text[i] == ','))
			i++;
		if (i >= len || text[i] == '}')
			break;
		size_t n = 0;
		bool quoted = text[i] == '"';
		if (quoted) {
			i++;
			while (i < len && text[i] != '"') {
				if (text[i] == '\\' && i + 1 < len)
					i++;
				if (n < sizeof(elem))
					elem[n++] = text[i];
				i++;
			}
			i++;
		} else {
			while (i < len && text[i] != ',' && text[i] != '}') {
				if (n < sizeof(elem))
					elem[n++] = text[i];
				i++;
			}
			while (n > 0 && elem[n - 1] == ' ')
				n--;
			if (n == 4 && strncasecmp(elem, "null", 4) == 0)
				continue; /* NULL never equals a key */
		}
		if (n == sizeof(elem))
			return false;
		if (!add_value_text(e, t, elem, n, false, set))
			ok = false;
	}
	return ok;
}

/* Reads the elements of a binary one-dimensional array (array_send). */
static bool add_array_binary(eval_t *e, int t, const uint8_t *p, size_t len, shardset_t *set,
			     bool *bad)
{
	if (len < 12) {
		*bad = true;
		return true;
	}
	uint32_t ndim = buf_get_u32(p);
	if (ndim == 0)
		return true;
	if (ndim != 1 || len < 20) {
		*bad = true;
		return true;
	}
	uint32_t n = buf_get_u32(p + 12);
	size_t pos = 20;
	bool ok = true;
	for (uint32_t i = 0; i < n; i++) {
		if (pos + 4 > len) {
			*bad = true;
			return true;
		}
		int32_t elen = (int32_t)buf_get_u32(p + pos);
		pos += 4;
		if (elen < 0)
			continue;
		if ((size_t)elen > len - pos) {
			*bad = true;
			return true;
		}
		if (!add_value_text(e, t, (const char *)p + pos, (size_t)elen, true, set))
			ok = false;
		pos += (size_t)elen;
	}
	return ok;
}

/* Adds the shards of one value (literal, parameter, array). */
static bool add_value(eval_t *e, int t, const keys_value_t *v, shardset_t *set)
{
	const cfg_table_t *table = &e->config->tables[t];
	switch (v->kind) {
	case KV_NULL:
		return true; /* key = NULL matches nothing */
	case KV_LITERAL:
		if (v->array) {
			if (!add_array_text(e, t, v->text, strlen(v->text), set) && !e->lookup) {
				shardset_t all;
				table_shards(e->config, table, &all);
				shardset_or(set, &all);
			}
			return !e->lookup;
		}
		return add_value_text(e, t, v->text, strlen(v->text), false, set);
	case KV_PARAM: {
		const shard_params_t *p = e->params;
		if (!p) {
			e->need_params = true;
			return false;
		}
		if (v->param < 1 || v->param > p->n)
			break; /* PostgreSQL will complain about the parameter */
		int i = v->param - 1;
		if (!p->values[i])
			return true; /* NULL */
		const char *bytes = (const char *)p->values[i];
		size_t len = (size_t)p->lengths[i];
		bool binary = p->formats[i] == 1;
		if (v->array) {
			bool bad = false;
			bool ok = binary ? add_array_binary(e, t, p->values[i], len, set, &bad)
					 : add_array_text(e, t, bytes, len, set);
			if (!ok && e->lookup)
				return false;
			if (!ok || bad)
				break;
			return true;
		}
		return add_value_text(e, t, bytes, len, binary, set);
	}
	case KV_UNKNOWN:
		break;
	}
	shardset_t all;
	table_shards(e->config, table, &all);
	shardset_or(set, &all);
	return true;
}

/* A range condition on a range table: the shards of the overlapping ranges. */
static bool eval_range(eval_t *e, int t, const keys_cond_t *c, shardset_t *set)
{
	const cfg_table_t *table = &e->config->tables[t];
	table_shards(e->config, table, set);
	if (table->strategy != STRATEGY_RANGE)
		return true; /* hash and directory keys are not ordered by shard */
	key_value_t lo, hi;
	char lo_text[256], hi_text[256];
	const keys_value_t *bounds[2] = {c->has_lo ? &c->lo : NULL, c->has_hi ? &c->hi : NULL};
	char *texts[2] = {lo_text, hi_text};
	key_value_t *values[2] = {&lo, &hi};
	bool have[2] = {false, false};
	for (int b = 0; b < 2; b++) {
		const keys_value_t *v = bounds[b];
		if (!v)
			continue;
		const char *src = NULL;
		size_t len = 0;
		if (v->kind == KV_LITERAL && !v->array) {
			src = v->text;
			len = strlen(src);
		} else if (v->kind == KV_PARAM) {
			if (!e->params) {
				e->need_params = true;
				return false;
			}
			int i = v->param - 1;
			if (i < 0 || i >= e->params->n || !e->params->values[i])
				continue;
			if (e->params->formats[i] == 1)
				continue; /* binary bounds: every range (rare) */
			src = (const char *)e->params->values[i];
			len = (size_t)e->params->lengths[i];
		} else {
			continue;
		}
		if (len >= 256)
			continue;
		memcpy(texts[b], src, len);
		texts[b][len] = '\0';
		have[b] = key_value_parse(table->key_type, texts[b], values[b]);
	}
	shardset_clear(set);
	for (int i = 0; i < table->n_ranges; i++) {
		const cfg_range_t *r = &table->ranges[i];
		/* The range is [previous bound, r->below). */
		key_value_t below, prev;
		bool has_prev = i > 0 && key_value_parse(table->key_type, table->ranges[i - 1].below,
							  &prev);
		if (have[0] && r->has_below && key_value_parse(table->key_type, r->below, &below) &&
		    key_value_compare(table->key_type, &below, &lo) <= 0)
			continue; /* every key of the range is below lo */
		if (have[1] && has_prev) {
			int cmp = key_value_compare(table->key_type, &prev, &hi);
			if (cmp > 0 || (cmp == 0 && !c->hi_inclusive))
				continue; /* every key of the range is above hi */
		}
		shardset_add(set, r->shard);
	}
	return true;
}

/* The shards rel's table may have matching rows on, under condition ci. */
static bool eval_cond(eval_t *e, int t, int ci, shardset_t *set, int depth)
{
	const keys_facts_t *f = e->facts;
	const cfg_table_t *table = &e->config->tables[t];
	if (ci < 0 || ci >= f->n_conds || depth > 200) {
		table_shards(e->config, table, set);
		return true;
	}
	const keys_cond_t *c = &f->conds[ci];
	switch (c->kind) {
	case KC_NONE:
		shardset_clear(set);
		return true;
	case KC_IN: {
		shardset_clear(set);
		bool ok = true;
		for (int i = 0; i < c->n_values; i++)
			if (!add_value(e, t, &f->values[c->first_value + i], set))
				ok = false;
		return ok;
	}
	case KC_RANGE:
		return eval_range(e, t, c, set);
	case KC_AND:
	case KC_OR: {
		bool ok = true;
		if (c->kind == KC_AND)
			table_shards(e->config, table, set);
		else
			shardset_clear(set);
		for (int i = 0; i < c->n_children; i++) {
			shardset_t child;
			if (!eval_cond(e, t, f->children[c->first_child + i], &child, depth + 1))
				ok = false;
			if (c->kind == KC_AND)
				shardset_and(set, &child);
			else
				shardset_or(set, &child);
		}
		return ok;
	}
	case KC_ALL:
	default:
		table_shards(e->config, table, set);
		return true;
	}
}

/* ---- the statement ---- */

static bool is_sharded(const cfg_table_t *t)
{
	return t->strategy == STRATEGY_HASH || t->strategy == STRATEGY_RANGE ||
	       t->strategy == STRATEGY_DIRECTORY;
}

/* The co-location group of a table: its colocate_with root, or itself. */
static int colocation_group(const config_t *cfg, int t)
{
	return cfg->tables[t].colocate_with >= 0 ? cfg->tables[t].colocate_with : t;
}

static void refuse(shard_route_t *out, const char *sqlstate, const char *fmt, const char *a,
		   const char *b)
{
	out->status = SHARD_ROUTE_REFUSE;
	out->sqlstate = sqlstate;
	snprintf(out->message, sizeof(out->message), fmt, a ? a : "", b ? b : "");
}

/* Catalog and information-schema relations exist on every shard. */
static bool everywhere(const analyze_table_t *t)
{
	if (t->schema)
		return strcmp(t->schema, "pg_catalog") == 0 ||
		       strcmp(t->schema, "information_schema") == 0;
	return strncmp(t->name, "pg_", 3) == 0;
}

/* Union-find over rels joined on co-located keys. */
static int find_root(int *parent, int i)
{
	while (parent[i] != i) {
		parent[i] = parent[parent[i]];
		i = parent[i];
	}
	return i;
}

/* The shards of each VALUES row of an INSERT into a sharded table. */
static void route_insert(eval_t *e, int t, shard_route_t *out)
{
	const keys_facts_t *f = e->facts;
	const keys_insert_t *ins = &f->insert;
	const char *name = e->config->tables[t].name;
	const char *key = e->config->tables[t].key;
	if (ins->select || ins->default_values) {
		refuse(out, "0A000",
		       "INSERT into sharded table \"%s\" needs VALUES rows that give its key \"%s\" "
		       "(INSERT ... SELECT and DEFAULT VALUES are not routed)",
		       name, key);
		return;
	}
	if (!ins->has_columns) {
		refuse(out, "0A000",
		       "INSERT into sharded table \"%s\" needs a column list that names its key \"%s\"",
		       name, key);
		return;
	}
	if (ins->key_position < 0) {
		refuse(out, "0A000", "INSERT into sharded table \"%s\" must give its key \"%s\"",
		       name, key);
		return;
	}
	out->row_shard = malloc(sizeof(int) * (size_t)(ins->n_rows > 0 ? ins->n_rows : 1));
	if (!out->row_shard) {
		refuse(out, "53200", "out of memory routing an INSERT%s%s", NULL, NULL);
		return;
	}
	out->n_rows = ins->n_rows;
	e->insert = true;
	bool ok = true;
	for (int i = 0; i < ins->n_rows; i++) {
		const keys_value_t *v = &f->values[ins->first_row + i];
		if (v->kind == KV_UNKNOWN || v->kind == KV_NULL || v->array) {
			refuse(out, "0A000",
			       "the key \"%s\" of sharded table \"%s\" must be a constant or a "
			       "parameter in INSERT",
			       key, name);
			return;
		}
		shardset_t one;
		shardset_clear(&one);
		if (!add_value(e, t, v, &one)) {
			ok = false;
			out->row_shard[i] = -1;
			continue;
		}
		if (shardset_count(&one) != 1) {
			char text[96];
			snprintf(text, sizeof(text), "%.80s", v->kind == KV_LITERAL ? v->text : "$n");
			refuse(out, "22023",
			       "key value %s of table \"%s\" has no shard (not of the key's type, or "
			       "outside every range)",
			       text, name);
			return;
		}
		out->row_shard[i] = shardset_first(&one);
		shardset_add(&out->shards, out->row_shard[i]);
	}
	(void)ok;
}

void shard_stmt_info(const config_t *config, const analysis_t *analysis, shard_stmt_info_t *out)
{
	memset(out, 0, sizeof(*out));
	out->select = analysis->kind == ANALYZE_KIND_READ;
	out->n_statements = analysis->n_statements;
	for (int i = 0; i < analysis->n_tables; i++) {
		const analyze_table_t *at = &analysis->tables[i];
		if (at->cte_name || everywhere(at))
			continue;
		char qualified[CONFIG_NAME_MAX * 2 + 2];
		if (at->schema)
			snprintf(qualified, sizeof(qualified), "%s.%s", at->schema, at->name);
		int t = config_find_table(config, at->schema ? qualified : at->name);
		if (t < 0 && at->schema && strcmp(at->schema, "public") == 0)
			t = config_find_table(config, at->name);
		if (t < 0) {
			out->unlisted = true;
			snprintf(out->unlisted_name, sizeof(out->unlisted_name), "%s", at->name);
		} else if (config->tables[t].strategy == STRATEGY_REFERENCE && at->written) {
			out->reference_write = true;
		}
	}
}

void shard_route(const config_t *config, const shard_stmt_info_t *info, const keys_facts_t *facts,
		 bool reads, const shard_params_t *params, shard_directory_fn directory,
		 void *directory_arg, shard_route_t *out)
{
	memset(out, 0, sizeof(*out));
	out->status = SHARD_ROUTE_OK;
	out->lookup_table = -1;
	out->writes = !reads;
	eval_t e = {config, facts, params, directory, directory_arg, out, false, false, false};

	/* Tables that are not in the map live on the default shard. */
	bool unlisted = info->unlisted;
	const char *unlisted_name = info->unlisted_name;
	out->reference_write = info->reference_write;

	if (!facts || facts->parse_error || facts->truncated) {
		/* Nothing known about keys: the default shard, unless a
		 * sharded table is named (then every shard would be needed and
		 * the statement could not be merged safely). */
		int n_sharded = 0;
		for (int r = 0; facts && r < facts->n_rels; r++)
			n_sharded += is_sharded(&config->tables[facts->rels[r].table]);
		if (n_sharded) {
			refuse(out, "0A000",
			       "statement too complex for the proxy to find the shard of its sharded "
			       "tables%s%s; add a hint /* shardgate: shard=NAME */",
			       NULL, NULL);
			return;
		}
		shardset_add(&out->shards, config->default_shard);
		out->n_shards = 1;
		snprintf(out->message, sizeof(out->message), "default shard");
		return;
	}

	int n_rels = facts->n_rels;
	int *parent = malloc(sizeof(int) * (size_t)(n_rels > 0 ? n_rels : 1));
	shardset_t *sets = malloc(sizeof(shardset_t) * (size_t)(n_rels > 0 ? n_rels : 1));
	if (!parent || !sets) {
		free(parent);
		free(sets);
		refuse(out, "53200", "out of memory%s%s", NULL, NULL);
		return;
	}
	int first_sharded = -1;
	const char *other_name = NULL;
	bool several_groups = false;
	for (int r = 0; r < n_rels; r++) {
		parent[r] = r;
		int t = facts->rels[r].table;
		if (!is_sharded(&config->tables[t])) {
			shardset_clear(&sets[r]);
			continue;
		}
		out->sharded = true;
		if (first_sharded < 0) {
			first_sharded = r;
		} else if (colocation_group(config, t) !=
			   colocation_group(config, facts->rels[first_sharded].table)) {
			several_groups = true;
			other_name = config->tables[t].name;
		}
		if (!eval_cond(&e, t, facts->rels[r].cond, &sets[r], 0) && e.lookup)
			break;
	}
	for (int j = 0; j < facts->n_joins; j++) {
		int a = facts->joins[j].rel_a, b = facts->joins[j].rel_b;
		if (a < 0 || b < 0 || a >= n_rels || b >= n_rels)
			continue;
		int ta = facts->rels[a].table, tb = facts->rels[b].table;
		if (colocation_group(config, ta) != colocation_group(config, tb))
			continue;
		parent[find_root(parent, a)] = find_root(parent, b);
	}

	/* Rels joined on co-located keys share their rows' shards: the
	 * intersection. Separate groups each need all their shards. */
	shardset_t total;
	shardset_clear(&total);
	int n_components = 0;
	for (int r = 0; r < n_rels && !e.lookup; r++) {
		if (!is_sharded(&config->tables[facts->rels[r].table]) ||
		    find_root(parent, r) != r)
			continue;
		n_components++;
		shardset_t group;
		table_shards(config, &config->tables[facts->rels[r].table], &group);
		for (int q = 0; q < n_rels; q++)
			if (is_sharded(&config->tables[facts->rels[q].table]) &&
			    find_root(parent, q) == r)
				shardset_and(&group, &sets[q]);
		shardset_or(&total, &group);
	}

	/* An INSERT's rows each go to their own shard. */
	bool inserting = false;
	if (!e.lookup && facts->has_insert && facts->insert.rel >= 0 &&
	    facts->insert.rel < n_rels) {
		int t = facts->rels[facts->insert.rel].table;
		if (is_sharded(&config->tables[t])) {
			inserting = true;
			shardset_clear(&out->shards);
			route_insert(&e, t, out);
			if (out->status == SHARD_ROUTE_REFUSE)
				goto done;
			if (!e.lookup)
				total = out->shards;
		}
	}
	if (e.lookup) {
		out->status = SHARD_ROUTE_LOOKUP;
		goto done;
	}
	if (e.need_params) {
		out->status = SHARD_ROUTE_PARAMS;
		goto done;
	}

	int n_total = shardset_count(&total);
	if (!out->sharded) {
		shardset_clear(&out->shards);
		if (out->reference_write && !unlisted) {
			for (int s = 0; s < config->n_shards; s++)
				shardset_add(&out->shards, s);
			snprintf(out->message, sizeof(out->message),
				 "writes a reference table: every shard");
		} else if (out->reference_write) {
			refuse(out, "0A000",
			       "a statement that writes a reference table (a copy on every shard) "
			       "cannot also use table \"%s\", which lives only on the default shard%s",
			       unlisted_name, NULL);
			goto done;
		} else {
			shardset_add(&out->shards, config->default_shard);
			snprintf(out->message, sizeof(out->message),
				 unlisted ? "unsharded tables: default shard"
					  : "no sharded table: default shard");
		}
		out->n_shards = shardset_count(&out->shards);
		goto done;
	}
	if (n_total == 0) {
		/* No row can match (key = NULL, empty IN): any one shard
		 * answers with the right empty result. */
		shardset_add(&total, shardset_first(&sets[first_sharded]) >= 0
					 ? shardset_first(&sets[first_sharded])
					 : config->default_shard);
		n_total = 1;
	}
	if (out->reference_write) {
		refuse(out, "0A000",
		       "a statement that writes a reference table cannot also use sharded table "
		       "\"%s\"%s",
		       config->tables[facts->rels[first_sharded].table].name, NULL);
		goto done;
	}
	if (n_total > 1 && unlisted) {
		refuse(out, "0A000",
		       "table \"%s\" lives only on the default shard, but the statement also needs "
		       "sharded table \"%s\" on several shards",
		       unlisted_name, config->tables[facts->rels[first_sharded].table].name);
		goto done;
	}
	if (n_total > 1 && n_components > 1) {
		refuse(out, "0A000",
		       several_groups
			   ? "a join of sharded tables \"%s\" and \"%s\" that are not co-located "
			     "would need rows from several shards"
			   : "sharded table \"%s\" is used more than once without a join on its key "
			     "\"%s\": rows from several shards would be needed",
		       config->tables[facts->rels[first_sharded].table].name,
		       several_groups ? other_name
				      : config->tables[facts->rels[first_sharded].table].key);
		goto done;
	}
	if (n_total > 1 && info->n_statements > 1) {
		refuse(out, "0A000",
		       "a text of several statements that needs several shards is not supported; "
		       "send the statements one by one%s%s",
		       NULL, NULL);
		goto done;
	}
	if (facts->copy.present && n_total > 1) {
		/* The rows are split by key as they stream (net/fanout.c). */
		const keys_copy_t *cp = &facts->copy;
		int t = cp->rel >= 0 && cp->rel < n_rels ? facts->rels[cp->rel].table : -1;
		if (t < 0 || !is_sharded(&config->tables[t]) || info->n_statements > 1) {
			refuse(out, "0A000", "COPY into a sharded table must be the only statement%s%s",
			       NULL, NULL);
			goto done;
		}
		if (cp->key_position < 0) {
			refuse(out, "0A000",
			       "COPY into sharded table \"%s\" needs a column list that names its key "
			       "\"%s\"",
			       config->tables[t].name, config->tables[t].key);
			goto done;
		}
		if (cp->null_string && strlen(cp->null_string) >= sizeof(out->copy_null)) {
			refuse(out, "0A000", "COPY NULL string too long for the proxy%s%s", NULL, NULL);
			goto done;
		}
		out->copy = true;
		out->copy_table = t;
		out->copy_key_position = cp->key_position;
		out->copy_format = cp->format;
		out->copy_delimiter = cp->delimiter;
		out->copy_quote = cp->quote;
		out->copy_escape = cp->escape;
		out->copy_header = cp->header;
		out->copy_null_default = cp->null_string == NULL;
		if (cp->null_string)
			snprintf(out->copy_null, sizeof(out->copy_null), "%s", cp->null_string);
	}
	if (n_total > 1 && !reads && facts->update.sets_key) {
		refuse(out, "0A000",
		       "UPDATE of the shard key of table \"%s\" over several shards could move rows "
		       "between shards%s",
		       config->tables[facts->rels[first_sharded].table].name, NULL);
		goto done;
	}
	if (!reads && facts->update.sets_key && n_total == 1) {
		/* The new key must stay on the row's shard. */
		int t = facts->rels[first_sharded].table;
		shardset_t moved;
		shardset_clear(&moved);
		if (!add_value(&e, t, &facts->update.new_key, &moved) || shardset_count(&moved) != 1 ||
		    shardset_first(&moved) != shardset_first(&total)) {
			if (e.lookup) {
				out->status = SHARD_ROUTE_LOOKUP;
				goto done;
			}
			if (e.need_params) {
				out->status = SHARD_ROUTE_PARAMS;
				goto done;
			}
			refuse(out, "0A000",
			       "UPDATE of the shard key \"%s\" of table \"%s\" would move the row to "
			       "another shard; delete it and insert it again",
			       config->tables[t].key, config->tables[t].name);
			goto done;
		}
	}
	out->shards = total;
	out->n_shards = n_total;
	/* A SELECT is merged even when it calls a function that may write
	 * (it then runs on the primaries); other statements are writes. */
	out->merge = n_total > 1 && info->select;
	out->writes = !out->merge && !reads;
	if (n_total > 1 && !out->merge && !inserting && !out->copy &&
	    config->routing.multi_shard_writes == MULTI_WRITES_REFUSE) {
		refuse(out, "0A000",
		       "the write on table \"%s\" names no shard key, so it would run on every "
		       "shard, and routing.multi_shard_writes is refuse%s",
		       config->tables[facts->rels[first_sharded].table].name, NULL);
		goto done;
	}
	if (n_total == 1)
		snprintf(out->message, sizeof(out->message), "key pins shard %s",
			 config->shards[shardset_first(&total)].name);
	else
		snprintf(out->message, sizeof(out->message), "%s over %d shards",
			 inserting || out->copy ? "rows spread"
			 : out->merge		? "read merged"
						: "write",
			 n_total);
done:
	free(parent);
	free(sets);
}

void shard_route_free(shard_route_t *r)
{
	free(r->row_shard);
	free(r->lookup_key);
	r->row_shard = NULL;
	r->lookup_key = NULL;
}
