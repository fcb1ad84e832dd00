/*
 * units.c - units of data movement between two shard maps (see units.h).
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rebalance/units.h"
#include "route/hash.h"

#define PHANTOM_NAME "(moving)"

static bool fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static bool fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return false;
}

void rb_sql_literal(char *out, size_t outlen, const char *text)
{
	size_t o = 0;
	if (outlen < 3) {
		if (outlen)
			out[0] = '\0';
		return;
	}
	out[o++] = '\'';
	for (const char *p = text; *p && o + 3 < outlen; p++) {
		if (*p == '\'')
			out[o++] = '\'';
		out[o++] = *p;
	}
	out[o++] = '\'';
	out[o] = '\0';
}

static size_t quote_ident(char *out, size_t outlen, const char *name, size_t len)
{
	size_t o = 0;
	if (outlen < 3)
		return 0;
	out[o++] = '"';
	for (size_t i = 0; i < len && o + 3 < outlen; i++) {
		if (name[i] == '"')
			out[o++] = '"';
		out[o++] = name[i];
	}
	out[o++] = '"';
	out[o] = '\0';
	return o;
}

void rb_sql_table(char *out, size_t outlen, const char *name)
{
	const char *dot = strchr(name, '.');
	if (!dot) {
		quote_ident(out, outlen, name, strlen(name));
		return;
	}
	size_t o = quote_ident(out, outlen, name, (size_t)(dot - name));
	if (o + 1 < outlen) {
		out[o++] = '.';
		quote_ident(out + o, outlen - o, dot + 1, strlen(dot + 1));
	}
}

/* The root of a table's co-location group. */
static int root_of(const config_t *cfg, int t)
{
	int r = cfg->tables[t].colocate_with;
	return r >= 0 ? r : t;
}

bool rb_unit_has_table(const config_t *cfg, const rb_unit_t *u, int t)
{
	return root_of(cfg, t) == u->table;
}

void rb_unit_free(rb_unit_t *u)
{
	free(u->buckets);
	for (int i = 0; i < u->n_keys; i++)
		free(u->keys[i]);
	free(u->keys);
	u->buckets = NULL;
	u->keys = NULL;
	u->n_buckets = u->n_keys = 0;
}

void rb_plan_free(rb_plan_t *plan)
{
	for (int i = 0; i < plan->n_units; i++)
		rb_unit_free(&plan->units[i]);
	free(plan->units);
	free(plan->advice);
	memset(plan, 0, sizeof(*plan));
}

static rb_unit_t *plan_add(rb_plan_t *plan)
{
	rb_unit_t *u = realloc(plan->units, sizeof(*u) * (size_t)(plan->n_units + 1));
	if (!u)
		return NULL;
	plan->units = u;
	u = &plan->units[plan->n_units++];
	memset(u, 0, sizeof(*u));
	u->rows = u->bytes = -1;
	return u;
}

/* ---- compatibility of two maps ---- */

static bool maps_compatible(const config_t *a, const config_t *b, char *err, size_t errlen)
{
	if (a->n_shards != b->n_shards)
		return fail(err, errlen,
			    "the maps list %d and %d shards: list the same shards in both (add a "
			    "new shard to the running map first, holding nothing, then rebalance)",
			    a->n_shards, b->n_shards);
	for (int s = 0; s < a->n_shards; s++)
		if (strcmp(a->shards[s].name, b->shards[s].name) != 0)
			return fail(err, errlen, "shard %d is %s in one map and %s in the other", s,
				    a->shards[s].name, b->shards[s].name);
	if (a->n_tables != b->n_tables)
		return fail(err, errlen, "the maps list %d and %d tables: a rebalance moves rows "
			    "of the same tables", a->n_tables, b->n_tables);
	for (int t = 0; t < a->n_tables; t++) {
		const cfg_table_t *x = &a->tables[t], *y = &b->tables[t];
		if (strcmp(x->name, y->name) != 0)
			return fail(err, errlen, "table %d is %s in one map and %s in the other", t,
				    x->name, y->name);
		if (x->strategy != y->strategy || strcmp(x->key, y->key) != 0 ||
		    x->key_type != y->key_type || x->colocate_with != y->colocate_with)
			return fail(err, errlen,
				    "table %s: key, type, strategy and colocate_with must stay the "
				    "same", x->name);
		if (x->strategy == STRATEGY_HASH &&
		    (y->buckets < x->buckets || y->buckets % x->buckets != 0))
			return fail(err, errlen,
				    "table %s: buckets %d -> %d: the bucket count may only be "
				    "multiplied (bucket r of N is buckets r, r+N, ... of k*N)",
				    x->name, x->buckets, y->buckets);
		if (x->strategy == STRATEGY_DIRECTORY &&
		    (x->directory_shard != y->directory_shard ||
		     strcmp(x->directory_table, y->directory_table) != 0))
			return fail(err, errlen, "table %s: the directory must stay where it is",
				    x->name);
	}
	return true;
}

/* ---- hash ---- */

static int cmp_int(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;
	return (x > y) - (x < y);
}

/* The fewest buckets to move so that every shard of NEW's placement holds
 * its share: advice text, or NULL when NEW already moves no more. */
static char *hash_advice(const config_t *cfg, const cfg_table_t *o, const cfg_table_t *n,
			 int moved)
{
	int B = n->buckets;
	int *place = malloc(sizeof(int) * (size_t)B);
	int *count = calloc((size_t)cfg->n_shards, sizeof(int));
	bool *used = calloc((size_t)cfg->n_shards, sizeof(bool));
	char *text = NULL;
	if (!place || !count || !used)
		goto out;
	int n_used = 0;
	for (int r = 0; r < B; r++) {
		if (!used[n->placement[r]])
			n_used++;
		used[n->placement[r]] = true;
	}
	for (int r = 0; r < B; r++) {
		place[r] = o->placement[r % o->buckets];
		if (!used[place[r]]) /* a shard NEW empties keeps nothing */
			place[r] = -1;
		else
			count[place[r]]++;
	}
	/* Each shard's share: B / n_used, one more for the B % n_used that
	 * hold the most already (they give away the fewest). */
	int fair = B / n_used, extra = B % n_used;
	int *share = calloc((size_t)cfg->n_shards, sizeof(int));
	if (!share)
		goto out;
	for (int s = 0; s < cfg->n_shards; s++)
		share[s] = used[s] ? fair : 0;
	for (int k = 0; k < extra; k++) {
		int best = -1;
		for (int s = 0; s < cfg->n_shards; s++)
			if (used[s] && share[s] == fair && (best < 0 || count[s] > count[best]))
				best = s;
		share[best]++;
	}
	/* Shards above their share give their highest buckets away. */
	for (int r = B - 1; r >= 0; r--) {
		int s = place[r];
		if (s >= 0 && count[s] > share[s]) {
			count[s]--;
			place[r] = -1;
		}
	}
	int min_moves = 0;
	for (int r = 0; r < B; r++) {
		if (place[r] >= 0)
			continue;
		int best = -1;
		for (int s = 0; s < cfg->n_shards; s++)
			if (used[s] && count[s] < share[s] &&
			    (best < 0 || share[s] - count[s] > share[best] - count[best]))
				best = s;
		place[r] = best;
		count[best]++;
		min_moves++;
	}
	free(share);
	if (min_moves >= moved)
		goto out;
	size_t cap = (size_t)B * (CONFIG_NAME_MAX + 2) + 256, len = 0;
	text = malloc(cap);
	if (!text)
		goto out;
	len += (size_t)snprintf(text + len, cap - len,
				"table %s: NEW moves %d buckets; this placement moves %d:\n"
				"  placement: [",
				n->name, moved, min_moves);
	for (int r = 0; r < B; r++)
		len += (size_t)snprintf(text + len, cap - len, "%s%s", r ? ", " : "",
					cfg->shards[place[r]].name);
	snprintf(text + len, cap - len, "]\n");
out:
	free(place);
	free(count);
	free(used);
	return text;
}

static bool plan_hash(const config_t *old, const config_t *new, int t, int batch,
		      rb_plan_t *plan, char *err, size_t errlen)
{
	const cfg_table_t *o = &old->tables[t], *n = &new->tables[t];
	int B = n->buckets, moved = 0;
	for (int src = 0; src < old->n_shards; src++) {
		for (int dst = 0; dst < old->n_shards; dst++) {
			if (src == dst)
				continue;
			rb_unit_t *u = NULL;
			for (int r = 0; r < B; r++) {
				if (o->placement[r % o->buckets] != src || n->placement[r] != dst)
					continue;
				moved++;
				if (u && batch > 0 && u->n_buckets >= batch)
					u = NULL;
				if (!u) {
					u = plan_add(plan);
					if (!u)
						return fail(err, errlen, "out of memory");
					*u = (rb_unit_t){.kind = RB_HASH, .table = t, .source = src,
							 .target = dst, .modulus = B, .rows = -1,
							 .bytes = -1};
					u->buckets = malloc(sizeof(int) * (size_t)B);
					if (!u->buckets)
						return fail(err, errlen, "out of memory");
				}
				u->buckets[u->n_buckets++] = r;
			}
		}
	}
	if (moved > 0 && !plan->advice)
		plan->advice = hash_advice(new, o, n, moved);
	return true;
}

/* ---- range ---- */

typedef struct {
	char **bounds; /* sorted, distinct */
	int n;
} bounds_t;

static bool bound_less(key_type_t type, const char *a, const char *b)
{
	key_value_t x, y;
	if (!key_value_parse(type, a, &x) || !key_value_parse(type, b, &y))
		return strcmp(a, b) < 0;
	return key_value_compare(type, &x, &y) < 0;
}

static bool bounds_add(bounds_t *b, key_type_t type, const char *text)
{
	int i = 0;
	while (i < b->n && bound_less(type, b->bounds[i], text))
		i++;
	if (i < b->n && !bound_less(type, text, b->bounds[i]))
		return true; /* already there */
	char **nb = realloc(b->bounds, sizeof(char *) * (size_t)(b->n + 1));
	if (!nb)
		return false;
	b->bounds = nb;
	memmove(&nb[i + 1], &nb[i], sizeof(char *) * (size_t)(b->n - i));
	nb[i] = strdup(text);
	if (!nb[i])
		return false;
	b->n++;
	return true;
}

static void bounds_free(bounds_t *b)
{
	for (int i = 0; i < b->n; i++)
		free(b->bounds[i]);
	free(b->bounds);
}

/* The shard of the keys from `lo` (NULL: from the lowest) up to the next
 * bound; -1 when no range holds them. */
static int range_shard_from(const cfg_table_t *t, const char *lo)
{
	if (!lo)
		return t->ranges[0].shard;
	for (int i = 0; i < t->n_ranges; i++) {
		const cfg_range_t *r = &t->ranges[i];
		if (!r->has_below || bound_less(t->key_type, lo, r->below))
			return r->shard;
	}
	return -1;
}

static bool bounds_of(const cfg_table_t *t, bounds_t *b)
{
	for (int i = 0; i < t->n_ranges; i++)
		if (t->ranges[i].has_below && !bounds_add(b, t->key_type, t->ranges[i].below))
			return false;
	return true;
}

static bool plan_range(const config_t *old, const config_t *new, int t, rb_plan_t *plan,
		       char *err, size_t errlen)
{
	const cfg_table_t *o = &old->tables[t], *n = &new->tables[t];
	bounds_t b = {0};
	if (!bounds_of(o, &b) || !bounds_of(n, &b)) {
		bounds_free(&b);
		return fail(err, errlen, "out of memory");
	}
	rb_unit_t *last = NULL;
	for (int i = 0; i <= b.n; i++) {
		const char *lo = i == 0 ? NULL : b.bounds[i - 1];
		const char *hi = i == b.n ? NULL : b.bounds[i];
		int src = range_shard_from(o, lo), dst = range_shard_from(n, lo);
		if (src == dst)
			continue;
		if (dst < 0) {
			fail(err, errlen,
			     "table %s: NEW gives keys from %s to %s no shard (they have rows on %s)",
			     n->name, lo ? lo : "-inf", hi ? hi : "+inf", old->shards[src].name);
			bounds_free(&b);
			return false;
		}
		if (src < 0)
			continue; /* no shard held them: no rows to move */
		if (last && last->source == src && last->target == dst && last->has_hi &&
		    lo && strcmp(last->hi, lo) == 0) {
			/* contiguous with the previous unit: extend it */
			last->has_hi = hi != NULL;
			snprintf(last->hi, sizeof(last->hi), "%s", hi ? hi : "");
			continue;
		}
		last = plan_add(plan);
		if (!last) {
			bounds_free(&b);
			return fail(err, errlen, "out of memory");
		}
		*last = (rb_unit_t){.kind = RB_RANGE, .table = t, .source = src, .target = dst,
				    .has_lo = lo != NULL, .has_hi = hi != NULL, .rows = -1,
				    .bytes = -1};
		snprintf(last->lo, sizeof(last->lo), "%s", lo ? lo : "");
		snprintf(last->hi, sizeof(last->hi), "%s", hi ? hi : "");
	}
	bounds_free(&b);
	return true;
}

/* ---- directory ---- */

static bool plan_directory(const config_t *old, const config_t *new, int t,
			   rb_directory_fn directory, void *arg, rb_plan_t *plan, char *err,
			   size_t errlen)
{
	const cfg_table_t *n = &new->tables[t];
	for (int i = 0; i < n->n_pins; i++) {
		const cfg_pin_t *pin = &n->pins[i];
		int now = directory ? directory(old, t, pin->key, arg, err, errlen) : -1;
		if (now == -2)
			return false;
		if (now < 0 || now == pin->shard)
			continue; /* not there yet (new rows go to the pin), or in place */
		rb_unit_t *u = plan_add(plan);
		if (!u)
			return fail(err, errlen, "out of memory");
		*u = (rb_unit_t){.kind = RB_DIRECTORY, .table = t, .source = now,
				 .target = pin->shard, .rows = -1, .bytes = -1};
		u->keys = malloc(sizeof(char *));
		if (!u->keys || !(u->keys[0] = strdup(pin->key)))
			return fail(err, errlen, "out of memory");
		u->n_keys = 1;
	}
	return true;
}

bool rb_plan_build(const config_t *old, const config_t *new, int batch, rb_directory_fn directory,
		   void *directory_arg, rb_plan_t *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	if (!maps_compatible(old, new, err, errlen))
		return false;
	for (int t = 0; t < new->n_tables; t++) {
		if (new->tables[t].colocate_with >= 0)
			continue; /* moves with its root */
		bool ok = true;
		switch (new->tables[t].strategy) {
		case STRATEGY_HASH:
			ok = plan_hash(old, new, t, batch, out, err, errlen);
			break;
		case STRATEGY_RANGE:
			ok = plan_range(old, new, t, out, err, errlen);
			break;
		case STRATEGY_DIRECTORY:
			ok = plan_directory(old, new, t, directory, directory_arg, out, err,
					    errlen);
			break;
		case STRATEGY_REFERENCE:
			break;
		}
		if (!ok) {
			rb_plan_free(out);
			return false;
		}
	}
	return true;
}

/* ---- specs ---- */

typedef struct {
	char *buf;
	size_t len, cap;
	bool failed;
} sbuf_t;

static void sb_printf(sbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf_t *b, const char *fmt, ...)
{
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int n = b->cap > b->len ? vsnprintf(b->buf + b->len, b->cap - b->len, fmt, ap) : -1;
		va_end(ap);
		if (n >= 0 && (size_t)n < b->cap - b->len) {
			b->len += (size_t)n;
			return;
		}
		size_t cap = b->cap ? b->cap * 2 : 256;
		if (n > 0 && cap < b->len + (size_t)n + 1)
			cap = b->len + (size_t)n + 1;
		char *nb = realloc(b->buf, cap);
		if (!nb) {
			b->failed = true;
			return;
		}
		b->buf = nb;
		b->cap = cap;
	}
}

static void sb_literal(sbuf_t *b, const char *text)
{
	char lit[600];
	rb_sql_literal(lit, sizeof(lit), text);
	sb_printf(b, "%s", lit);
}

static char *sb_take(sbuf_t *b)
{
	if (b->failed) {
		free(b->buf);
		return NULL;
	}
	return b->buf;
}

char *rb_unit_spec(const config_t *cfg, const rb_unit_t *u)
{
	sbuf_t b = {0};
	const char *table = cfg->tables[u->table].name;
	const char *src = cfg->shards[u->source].name, *dst = cfg->shards[u->target].name;
	switch (u->kind) {
	case RB_HASH:
		sb_printf(&b, "hash %s %d ", table, u->modulus);
		for (int i = 0; i < u->n_buckets; i++)
			sb_printf(&b, "%s%d", i ? "," : "", u->buckets[i]);
		sb_printf(&b, " %s %s", src, dst);
		break;
	case RB_RANGE:
		sb_printf(&b, "range %s ", table);
		if (u->has_lo)
			sb_literal(&b, u->lo);
		else
			sb_printf(&b, "-");
		sb_printf(&b, " ");
		if (u->has_hi)
			sb_literal(&b, u->hi);
		else
			sb_printf(&b, "-");
		sb_printf(&b, " %s %s", src, dst);
		break;
	case RB_DIRECTORY:
		sb_printf(&b, "directory %s %s %s", table, src, dst);
		for (int i = 0; i < u->n_keys; i++) {
			sb_printf(&b, " ");
			sb_literal(&b, u->keys[i]);
		}
		break;
	}
	return sb_take(&b);
}

/* Reads one word (up to a space) or a '...' literal; NULL at the end, and
 * NULL with *bad set for an unterminated literal. */
static char *next_token(const char **p, bool *quoted, bool *bad)
{
	const char *s = *p;
	while (*s == ' ')
		s++;
	*quoted = false;
	if (!*s)
		return NULL;
	sbuf_t b = {0};
	sb_printf(&b, "%s", "");
	if (*s == '\'') {
		*quoted = true;
		s++;
		for (;;) {
			if (!*s) {
				free(b.buf);
				*bad = true;
				return NULL; /* unterminated */
			}
			if (*s == '\'' && s[1] == '\'') {
				sb_printf(&b, "'");
				s += 2;
			} else if (*s == '\'') {
				s++;
				break;
			} else {
				sb_printf(&b, "%c", *s++);
			}
		}
	} else {
		while (*s && *s != ' ')
			sb_printf(&b, "%c", *s++);
	}
	*p = s;
	return sb_take(&b);
}

bool rb_unit_parse(const config_t *cfg, const char *spec, rb_unit_t *out, char *err,
		   size_t errlen)
{
	char **tok = NULL;
	bool *quoted = NULL;
	int n = 0;
	bool ok = false;
	memset(out, 0, sizeof(*out));
	out->rows = out->bytes = -1;
	for (const char *p = spec;;) {
		bool q, bad = false;
		char *t = next_token(&p, &q, &bad);
		if (bad)
			goto bad;
		if (!t)
			break;
		char **nt = realloc(tok, sizeof(char *) * (size_t)(n + 1));
		bool *nq = nt ? realloc(quoted, sizeof(bool) * (size_t)(n + 1)) : NULL;
		if (nt)
			tok = nt;
		if (nq)
			quoted = nq;
		if (!nt || !nq) {
			free(t);
			goto bad;
		}
		tok[n] = t;
		quoted[n++] = q;
	}
	if (n < 5)
		goto bad;
	bool dir = strcmp(tok[0], "directory") == 0;
	if (!dir && n != 6)
		goto bad;
	out->table = config_find_table(cfg, tok[1]);
	if (out->table < 0) {
		fail(err, errlen, "unit \"%s\": no table %s in the map", spec, tok[1]);
		goto done;
	}
	const cfg_table_t *t = &cfg->tables[out->table];
	if (t->colocate_with >= 0)
		goto bad; /* units name the root of a co-location group */
	int si = dir ? 2 : 4;
	out->source = config_find_shard(cfg, tok[si]);
	out->target = config_find_shard(cfg, tok[si + 1]);
	if (out->source < 0 || out->target < 0 || out->source == out->target) {
		fail(err, errlen, "unit \"%s\": bad shards %s -> %s", spec, tok[si], tok[si + 1]);
		goto done;
	}
	if (strcmp(tok[0], "hash") == 0) {
		out->kind = RB_HASH;
		char *end;
		long m = strtol(tok[2], &end, 10);
		if (*end || m < 1 || m > CONFIG_MAX_BUCKETS || t->strategy != STRATEGY_HASH)
			goto bad;
		out->modulus = (int)m;
		out->buckets = malloc(sizeof(int) * (size_t)m);
		if (!out->buckets)
			goto bad;
		for (const char *q = tok[3]; *q;) {
			long r = strtol(q, &end, 10);
			if (end == q || *q < '0' || *q > '9' || r < 0 || r >= m ||
			    out->n_buckets >= m || (*end && (*end != ',' || !end[1])))
				goto bad;
			out->buckets[out->n_buckets++] = (int)r;
			q = *end ? end + 1 : end;
		}
		if (out->n_buckets == 0)
			goto bad;
		qsort(out->buckets, (size_t)out->n_buckets, sizeof(int), cmp_int);
		for (int i = 1; i < out->n_buckets; i++)
			if (out->buckets[i] == out->buckets[i - 1])
				goto bad;
	} else if (strcmp(tok[0], "range") == 0) {
		out->kind = RB_RANGE;
		if (t->strategy != STRATEGY_RANGE)
			goto bad;
		key_value_t v;
		out->has_lo = quoted[2];
		out->has_hi = quoted[3];
		if ((!quoted[2] && strcmp(tok[2], "-") != 0) ||
		    (!quoted[3] && strcmp(tok[3], "-") != 0))
			goto bad;
		snprintf(out->lo, sizeof(out->lo), "%s", out->has_lo ? tok[2] : "");
		snprintf(out->hi, sizeof(out->hi), "%s", out->has_hi ? tok[3] : "");
		if ((out->has_lo && !key_value_parse(t->key_type, out->lo, &v)) ||
		    (out->has_hi && !key_value_parse(t->key_type, out->hi, &v)) ||
		    (out->has_lo && out->has_hi && !bound_less(t->key_type, out->lo, out->hi)))
			goto bad;
	} else if (dir) {
		out->kind = RB_DIRECTORY;
		if (t->strategy != STRATEGY_DIRECTORY)
			goto bad;
		out->keys = calloc((size_t)(n - 4), sizeof(char *));
		if (!out->keys)
			goto bad;
		for (int i = 4; i < n; i++) {
			if (!quoted[i])
				goto bad;
			out->keys[out->n_keys++] = tok[i];
			tok[i] = NULL;
		}
	} else {
		goto bad;
	}
	ok = true;
	goto done;
bad:
	fail(err, errlen, "unit \"%s\": not a unit of this map", spec);
done:
	for (int i = 0; i < n; i++)
		free(tok[i]);
	free(tok);
	free(quoted);
	if (!ok)
		rb_unit_free(out);
	return ok;
}

void rb_unit_describe(const config_t *cfg, const rb_unit_t *u, char *out, size_t outlen)
{
	const char *table = cfg->tables[u->table].name;
	const char *src = cfg->shards[u->source].name, *dst = cfg->shards[u->target].name;
	size_t o = 0;
	switch (u->kind) {
	case RB_HASH:
		o = (size_t)snprintf(out, outlen, "%s bucket%s ", table, u->n_buckets > 1 ? "s" : "");
		for (int i = 0; i < u->n_buckets && o < outlen; i++)
			o += (size_t)snprintf(out + o, outlen - o, "%s%d", i ? "," : "", u->buckets[i]);
		if (o < outlen)
			snprintf(out + o, outlen - o, " of %d: %s -> %s", u->modulus, src, dst);
		break;
	case RB_RANGE:
		snprintf(out, outlen, "%s keys [%s, %s): %s -> %s", table, u->has_lo ? u->lo : "-inf",
			 u->has_hi ? u->hi : "+inf", src, dst);
		break;
	case RB_DIRECTORY:
		o = (size_t)snprintf(out, outlen, "%s key%s ", table, u->n_keys > 1 ? "s" : "");
		for (int i = 0; i < u->n_keys && o < outlen; i++)
			o += (size_t)snprintf(out + o, outlen - o, "%s%s", i ? "," : "", u->keys[i]);
		if (o < outlen)
			snprintf(out + o, outlen - o, ": %s -> %s", src, dst);
		break;
	}
}

/* ---- the next map ---- */

void rb_config_free(config_t *c)
{
	if (!c)
		return;
	free(c->shards);
	for (int t = 0; t < c->n_tables; t++) {
		free(c->tables[t].placement);
		free(c->tables[t].ranges);
		free(c->tables[t].pins);
	}
	free(c->tables);
	free(c);
}

static bool copy_tables(const config_t *cfg, config_t *c)
{
	c->tables = calloc((size_t)cfg->n_tables ? (size_t)cfg->n_tables : 1, sizeof(cfg_table_t));
	if (!c->tables)
		return false;
	for (int t = 0; t < cfg->n_tables; t++) {
		const cfg_table_t *s = &cfg->tables[t];
		cfg_table_t *d = &c->tables[t];
		*d = *s;
		d->placement = NULL;
		d->ranges = NULL;
		d->pins = NULL;
		if (s->placement) {
			d->placement = malloc(sizeof(int) * (size_t)s->buckets);
			if (!d->placement)
				return false;
			memcpy(d->placement, s->placement, sizeof(int) * (size_t)s->buckets);
		}
		if (s->ranges) {
			d->ranges = malloc(sizeof(cfg_range_t) * (size_t)s->n_ranges);
			if (!d->ranges)
				return false;
			memcpy(d->ranges, s->ranges, sizeof(cfg_range_t) * (size_t)s->n_ranges);
		}
		if (s->pins) {
			d->pins = malloc(sizeof(cfg_pin_t) * (size_t)s->n_pins);
			if (!d->pins)
				return false;
			memcpy(d->pins, s->pins, sizeof(cfg_pin_t) * (size_t)s->n_pins);
		}
	}
	return true;
}

static bool apply_hash(config_t *c, const rb_unit_t *u, int to, char *err, size_t errlen)
{
	for (int t = 0; t < c->n_tables; t++) {
		if (root_of(c, t) != u->table)
			continue;
		cfg_table_t *tb = &c->tables[t];
		if (tb->buckets != u->modulus) {
			if (u->modulus % tb->buckets != 0)
				return fail(err, errlen,
					    "table %s has %d buckets here; the unit's %d is not a "
					    "multiple", tb->name, tb->buckets, u->modulus);
			int *p = malloc(sizeof(int) * (size_t)u->modulus);
			if (!p)
				return fail(err, errlen, "out of memory");
			for (int r = 0; r < u->modulus; r++)
				p[r] = tb->placement[r % tb->buckets];
			free(tb->placement);
			tb->placement = p;
			tb->buckets = u->modulus;
		}
		for (int i = 0; i < u->n_buckets; i++) {
			int r = u->buckets[i];
			if (tb->placement[r] != u->source && tb->placement[r] != u->target)
				return fail(err, errlen,
					    "table %s bucket %d is on %s here, not on %s: this map is "
					    "not the one the rebalance started from",
					    tb->name, r, c->shards[tb->placement[r]].name,
					    c->shards[u->source].name);
			tb->placement[r] = to;
		}
	}
	return true;
}

static bool apply_range(config_t *c, const rb_unit_t *u, int to, char *err, size_t errlen)
{
	cfg_table_t *tb = &c->tables[u->table];
	bounds_t b = {0};
	bool ok = bounds_of(tb, &b) && (!u->has_lo || bounds_add(&b, tb->key_type, u->lo)) &&
		  (!u->has_hi || bounds_add(&b, tb->key_type, u->hi));
	cfg_range_t *nr = ok ? calloc((size_t)b.n + 1, sizeof(cfg_range_t)) : NULL;
	if (!nr) {
		bounds_free(&b);
		return fail(err, errlen, "out of memory");
	}
	int n = 0;
	for (int i = 0; i <= b.n; i++) {
		const char *lo = i == 0 ? NULL : b.bounds[i - 1];
		const char *hi = i == b.n ? NULL : b.bounds[i];
		int shard = range_shard_from(tb, lo);
		bool inside = (!u->has_lo || (lo && !bound_less(tb->key_type, lo, u->lo))) &&
			      (!u->has_hi || (hi && !bound_less(tb->key_type, u->hi, hi)));
		if (inside) {
			if (shard != u->source && shard != u->target) {
				fail(err, errlen,
				     "table %s: keys from %s are on %s here, not on %s: this map is "
				     "not the one the rebalance started from",
				     tb->name, lo ? lo : "-inf", shard >= 0 ? c->shards[shard].name : "no shard",
				     c->shards[u->source].name);
				free(nr);
				bounds_free(&b);
				return false;
			}
			shard = to;
		}
		if (shard < 0) {
			if (hi) {
				fail(err, errlen, "table %s: the unit leaves keys from %s without a shard",
				     tb->name, lo ? lo : "-inf");
				free(nr);
				bounds_free(&b);
				return false;
			}
			break; /* keys above the last bound have no shard, as before */
		}
		if (n > 0 && nr[n - 1].shard == shard) {
			n--; /* same shard as the piece below: one range */
		}
		nr[n].shard = shard;
		nr[n].has_below = hi != NULL;
		snprintf(nr[n].below, sizeof(nr[n].below), "%s", hi ? hi : "");
		nr[n].line = tb->ranges[0].line;
		n++;
	}
	bounds_free(&b);
	free(tb->ranges);
	tb->ranges = nr;
	tb->n_ranges = n;
	return true;
}

static bool apply_directory(config_t *c, const rb_unit_t *u, int to, char *err, size_t errlen)
{
	(void)to;
	cfg_table_t *tb = &c->tables[u->table];
	cfg_pin_t *np = realloc(tb->pins, sizeof(cfg_pin_t) * (size_t)(tb->n_pins + u->n_keys));
	if (!np)
		return fail(err, errlen, "out of memory");
	tb->pins = np;
	for (int i = 0; i < u->n_keys; i++) {
		int j = 0;
		while (j < tb->n_pins && strcmp(tb->pins[j].key, u->keys[i]) != 0)
			j++;
		if (j == tb->n_pins) {
			memset(&tb->pins[j], 0, sizeof(tb->pins[j]));
			snprintf(tb->pins[j].key, sizeof(tb->pins[j].key), "%s", u->keys[i]);
			tb->n_pins++;
		}
		/* Also in the pause view: the phantom shard is no place for new
		 * keys (the view routes the moving keys by its callback). */
		tb->pins[j].shard = u->target;
	}
	return true;
}

bool rb_config_apply(const config_t *cfg, const rb_unit_t *u, bool phantom, config_t **out,
		     char *err, size_t errlen)
{
	config_t *c = malloc(sizeof(*c));
	if (!c)
		return fail(err, errlen, "out of memory");
	*c = *cfg;
	c->tables = NULL;
	c->shards = calloc((size_t)cfg->n_shards + 1, sizeof(cfg_shard_t));
	if (!c->shards || !copy_tables(cfg, c)) {
		c->n_tables = c->tables ? c->n_tables : 0;
		rb_config_free(c);
		return fail(err, errlen, "out of memory");
	}
	memcpy(c->shards, cfg->shards, sizeof(cfg_shard_t) * (size_t)cfg->n_shards);
	int to = u->target;
	if (phantom) {
		to = cfg->n_shards;
		c->shards[to] = cfg->shards[u->target];
		snprintf(c->shards[to].name, sizeof(c->shards[to].name), "%s", PHANTOM_NAME);
		c->n_shards = cfg->n_shards + 1;
	}
	bool ok = u->kind == RB_HASH    ? apply_hash(c, u, to, err, errlen)
		  : u->kind == RB_RANGE ? apply_range(c, u, to, err, errlen)
					: apply_directory(c, u, to, err, errlen);
	if (!ok) {
		rb_config_free(c);
		return false;
	}
	*out = c;
	return true;
}

/* ---- SQL ---- */

char *rb_unit_predicate(const config_t *cfg, const rb_unit_t *u, int t)
{
	const cfg_table_t *tb = &cfg->tables[t];
	char col[CONFIG_NAME_MAX * 2 + 4];
	quote_ident(col, sizeof(col), tb->key, strlen(tb->key));
	sbuf_t b = {0};
	switch (u->kind) {
	case RB_HASH: {
		char expr[512];
		if (!hash_sql_bucket_expr(tb->key_type, tb->key, u->modulus, expr, sizeof(expr)))
			return NULL;
		sb_printf(&b, "%s IN (", expr);
		for (int i = 0; i < u->n_buckets; i++)
			sb_printf(&b, "%s%d", i ? ", " : "", u->buckets[i]);
		sb_printf(&b, ")");
		break;
	}
	case RB_RANGE:
		if (u->has_lo) {
			sb_printf(&b, "%s >= ", col);
			sb_literal(&b, u->lo);
			sb_printf(&b, "::%s", key_type_name(tb->key_type));
		}
		if (u->has_lo && u->has_hi)
			sb_printf(&b, " AND ");
		if (u->has_hi) {
			sb_printf(&b, "%s < ", col);
			sb_literal(&b, u->hi);
			sb_printf(&b, "::%s", key_type_name(tb->key_type));
		}
		if (!u->has_lo && !u->has_hi)
			sb_printf(&b, "%s IS NOT NULL", col);
		break;
	case RB_DIRECTORY:
		sb_printf(&b, "%s::text IN (", col);
		for (int i = 0; i < u->n_keys; i++) {
			sb_printf(&b, "%s", i ? ", " : "");
			sb_literal(&b, u->keys[i]);
		}
		sb_printf(&b, ")");
		break;
	}
	return sb_take(&b);
}

/* FNV-1a, 64 bits. */
static void fnv(uint64_t *h, const void *data, size_t len)
{
	const unsigned char *p = data;
	for (size_t i = 0; i < len; i++) {
		*h ^= p[i];
		*h *= UINT64_C(0x100000001b3);
	}
}

static void fnv_str(uint64_t *h, const char *s)
{
	fnv(h, s, strlen(s) + 1);
}

static void fnv_int(uint64_t *h, int v)
{
	fnv(h, &v, sizeof(v));
}

void rb_map_digest(const config_t *cfg, char out[17])
{
	uint64_t h = UINT64_C(0xcbf29ce484222325);
	for (int s = 0; s < cfg->n_shards; s++)
		fnv_str(&h, cfg->shards[s].name);
	for (int t = 0; t < cfg->n_tables; t++) {
		const cfg_table_t *tb = &cfg->tables[t];
		fnv_str(&h, tb->name);
		fnv_str(&h, tb->key);
		fnv_int(&h, (int)tb->strategy);
		fnv_int(&h, (int)tb->key_type);
		fnv_int(&h, tb->colocate_with);
		fnv_int(&h, tb->directory_shard);
		fnv_str(&h, tb->directory_table);
		fnv_int(&h, tb->buckets);
		for (int r = 0; r < tb->buckets && tb->placement; r++)
			fnv_int(&h, tb->placement[r]);
		for (int i = 0; i < tb->n_ranges; i++) {
			fnv_int(&h, tb->ranges[i].shard);
			fnv_str(&h, tb->ranges[i].has_below ? tb->ranges[i].below : "\x01");
		}
		for (int i = 0; i < tb->n_pins; i++) {
			fnv_str(&h, tb->pins[i].key);
			fnv_int(&h, tb->pins[i].shard);
		}
	}
	snprintf(out, 17, "%016llx", (unsigned long long)h);
}
