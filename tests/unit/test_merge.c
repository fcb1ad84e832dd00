/*
 * test_merge.c - Check suite for src/merge/ (planning a SELECT over several
 * shards and merging their rows).
 *
 * Plan tests state, per statement, the exact text the shards get and the
 * merge instructions (merge_plan_describe), or the reason for a refusal.
 * Merge tests build RowDescription and DataRow bodies byte by byte for two
 * or three sources, each source's rows in the order its shard would send
 * them, and compare what the merger gives the client with what PostgreSQL
 * 15 gives for the whole table (expected texts checked against a real
 * server: avg() scales, float output, numeric and timestamptz ordering).
 */
#include <check.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "merge/merge.h"
#include "merge/plan.h"

/* ---- plans ---- */

static const struct {
	const char *sql;
	const char *shard_sql; /* NULL: the statement as written */
	const char *plan;      /* merge_plan_describe() */
} plan_cases[] = {
    /* rows concatenated */
    {"SELECT id, name FROM users WHERE tenant = $1", NULL, "concat"},
    {"SELECT a FROM t UNION ALL SELECT a FROM u", NULL, "concat"},
    {"SELECT a FROM t UNION ALL (SELECT a FROM u UNION ALL SELECT a FROM v)", NULL, "concat"},
    {"SELECT a FROM t UNION SELECT a FROM u", NULL, "concat distinct"},
    {"SELECT DISTINCT a, b FROM t", NULL, "concat distinct"},
    {"SELECT DISTINCT ON (g) g, x FROM t", NULL, "concat distinct_on=[0]"},
    {"SELECT a FROM t LIMIT 5", NULL, "concat limit=5"},
    {"SELECT a FROM t OFFSET 5", "SELECT a FROM t", "concat offset=5"},
    {"SELECT a FROM t LIMIT $1 OFFSET 5", "SELECT a FROM t LIMIT ($1::int8 + 5)",
     "concat limit=$1 offset=5"},
    /* ORDER BY: positions, names, expressions, hidden columns */
    {"SELECT id FROM users ORDER BY 1 DESC", NULL, "ordered sort=[0 desc nulls first]"},
    {"SELECT id AS k, name FROM users ORDER BY k, name NULLS FIRST", NULL,
     "ordered sort=[0 asc nulls last, 1 asc nulls first]"},
    {"SELECT t.id, lower(name) FROM users t ORDER BY lower(name) DESC NULLS LAST, id", NULL,
     "ordered sort=[1 desc nulls last, 0 asc nulls last]"},
    {"SELECT x::text, y FROM t ORDER BY x", NULL, "ordered sort=[0 asc nulls last]"},
    {"SELECT id FROM users ORDER BY created_at, id",
     "SELECT id, created_at AS __sg_hidden_1 FROM users ORDER BY created_at, id",
     "ordered sort=[h0 asc nulls last, 0 asc nulls last] hidden=1"},
    {"SELECT id FROM t ORDER BY created_at DESC, lower(name)",
     "SELECT id, created_at AS __sg_hidden_1, lower(name) AS __sg_hidden_2 FROM t ORDER BY "
     "created_at DESC, lower(name)",
     "ordered sort=[h0 desc nulls first, h1 asc nulls last] hidden=2"},
    {"SELECT * FROM users ORDER BY 2", NULL, "ordered sort=[1 asc nulls last]"},
    {"SELECT a, *, b FROM t ORDER BY b, a", NULL,
     "ordered sort=[e0 asc nulls last, 0 asc nulls last]"},
    {"SELECT *, a + 1 AS x FROM t ORDER BY x NULLS FIRST", NULL,
     "ordered sort=[e0 asc nulls first]"},
    {"SELECT DISTINCT a, b FROM t ORDER BY b", NULL, "ordered sort=[1 asc nulls last] distinct"},
    {"SELECT DISTINCT ON (a) a, b FROM t ORDER BY a, c",
     "SELECT DISTINCT ON (a) a, b, c AS __sg_hidden_1 FROM t ORDER BY a, c",
     "ordered sort=[0 asc nulls last, h0 asc nulls last] distinct_on=[0] hidden=1"},
    /* LIMIT and OFFSET */
    {"SELECT * FROM users ORDER BY id LIMIT 10 OFFSET 20",
     "SELECT *, id AS __sg_hidden_1 FROM users ORDER BY id LIMIT 30",
     "ordered sort=[h0 asc nulls last] limit=10 offset=20 hidden=1"},
    {"SELECT id FROM users ORDER BY id LIMIT $1 OFFSET $2",
     "SELECT id FROM users ORDER BY id LIMIT ($1::int8 + COALESCE($2::int8, 0))",
     "ordered sort=[0 asc nulls last] limit=$1 offset=$2"},
    {"SELECT id FROM users ORDER BY id LIMIT 5 OFFSET $1",
     "SELECT id FROM users ORDER BY id LIMIT (5 + COALESCE($1::int8, 0))",
     "ordered sort=[0 asc nulls last] limit=5 offset=$1"},
    {"SELECT id FROM users ORDER BY id LIMIT ALL OFFSET 3", "SELECT id FROM users ORDER BY id",
     "ordered sort=[0 asc nulls last] offset=3"},
    {"SELECT id FROM users ORDER BY id LIMIT 9223372036854775807 OFFSET 10",
     "SELECT id FROM users ORDER BY id",
     "ordered sort=[0 asc nulls last] limit=9223372036854775807 offset=10"},
    {"SELECT id FROM users ORDER BY id LIMIT -1 OFFSET 2", NULL,
     "ordered sort=[0 asc nulls last] limit=-1 offset=2"},
    {"SELECT id FROM users ORDER BY id FETCH FIRST 4 ROWS ONLY", NULL,
     "ordered sort=[0 asc nulls last] limit=4"},
    {"SELECT a FROM t ORDER BY a OFFSET 2 ROWS FETCH FIRST 3 ROWS WITH TIES",
     "SELECT a FROM t ORDER BY a FETCH FIRST 5 ROWS WITH TIES",
     "ordered sort=[0 asc nulls last] limit=3 offset=2 with_ties"},
    {"WITH c AS (SELECT a FROM t) SELECT a FROM c ORDER BY a LIMIT 2 OFFSET 2",
     "WITH c AS (SELECT a FROM t) SELECT a FROM c ORDER BY a LIMIT 4",
     "ordered sort=[0 asc nulls last] limit=2 offset=2"},
    /* aggregates */
    {"SELECT count(*) FROM t", NULL, "aggregate results=[count:0]"},
    {"SELECT count(*) FROM t LIMIT 1", "SELECT count(*) FROM t",
     "aggregate results=[count:0] limit=1"},
    {"SELECT g, count(*), sum(x), avg(x), min(y), max(y) FROM t GROUP BY g ORDER BY 2 DESC "
     "LIMIT 3",
     "SELECT g, count(*), sum(x), sum(x) AS avg, min(y), max(y), count(x) AS __sg_hidden_1 FROM "
     "t GROUP BY g",
     "aggregate results=[group:0, count:1, sum:2, avg:3/6, min:4, max:5] group=[0] sort=[1 desc "
     "nulls first] limit=3"},
    {"SELECT pg_catalog.avg(x) FROM t",
     "SELECT pg_catalog.sum(x) AS avg, pg_catalog.count(x) AS __sg_hidden_1 FROM t",
     "aggregate results=[avg:0/1]"},
    {"SELECT avg(x) AS m FROM t GROUP BY g HAVING sum(x) > 10 AND count(*) <> 2 ORDER BY avg(y)",
     "SELECT sum(x) AS m, count(x) AS __sg_hidden_1, g AS __sg_hidden_2, count(*) AS "
     "__sg_hidden_3, sum(y) AS __sg_hidden_4, count(y) AS __sg_hidden_5 FROM t GROUP BY g",
     "aggregate results=[avg:0/1, h:sum:0, h:count:3, h:avg:4/5] group=[2] having=(r1 > '10' and "
     "r2 <> '2') sort=[h2 asc nulls last] hidden=3"},
    {"SELECT count(*) FROM t GROUP BY a, b",
     "SELECT count(*), a AS __sg_hidden_1, b AS __sg_hidden_2 FROM t GROUP BY a, b",
     "aggregate results=[count:0] group=[1,2]"},
    {"SELECT g, sum(x) FROM t GROUP BY 1 ORDER BY sum(x) DESC NULLS LAST",
     "SELECT g, sum(x) FROM t GROUP BY 1",
     "aggregate results=[group:0, sum:1] group=[0] sort=[1 desc nulls last]"},
    {"SELECT max(x) FROM t GROUP BY g HAVING max(x) IS NOT NULL OR NOT (min(x) <= -3)",
     "SELECT max(x), g AS __sg_hidden_1, min(x) AS __sg_hidden_2 FROM t GROUP BY g",
     "aggregate results=[max:0, h:min:2] group=[1] having=(r0 is not null or not r1 <= '-3') "
     "hidden=1"},
    {"SELECT g FROM t GROUP BY g HAVING 5 < count(*)",
     "SELECT g, count(*) AS __sg_hidden_1 FROM t GROUP BY g",
     "aggregate results=[group:0, h:count:1] group=[0] having=r1 > '5' hidden=1"},
    {"SELECT g, count(*) FROM t GROUP BY g HAVING count(*) > $1",
     "SELECT g, count(*) FROM t GROUP BY g",
     "aggregate results=[group:0, count:1] group=[0] having=r1 > $1"},
    {"SELECT g, count(*) AS n FROM t GROUP BY g ORDER BY n LIMIT 3 OFFSET 1",
     "SELECT g, count(*) AS n FROM t GROUP BY g",
     "aggregate results=[group:0, count:1] group=[0] sort=[1 asc nulls last] limit=3 offset=1"},
    {"SELECT DISTINCT g, count(*) FROM t GROUP BY g", "SELECT g, count(*) FROM t GROUP BY g",
     "aggregate results=[group:0, count:1] group=[0] distinct"},
    {"SELECT bool_and(b), every(b), bool_or(b) FROM t", NULL,
     "aggregate results=[bool_and:0, bool_and:1, bool_or:2]"},
    {"SELECT lower(name), count(*) FROM t GROUP BY lower(name) ORDER BY lower(name)",
     "SELECT lower(name), count(*) FROM t GROUP BY lower(name)",
     "aggregate results=[group:0, count:1] group=[0] sort=[0 asc nulls last]"},
    {"SELECT a, count(*) FILTER (WHERE b) FROM t GROUP BY a", NULL,
     "aggregate results=[group:0, count:1] group=[0]"},
    {"SELECT min(DISTINCT x), max(x) FROM t", NULL, "aggregate results=[min:0, max:1]"},
    {"SELECT a FROM t GROUP BY a", NULL, "aggregate results=[group:0] group=[0]"},
};

START_TEST(test_plan_table)
{
	const char *sql = plan_cases[_i].sql;
	char err[256], desc[512];
	merge_plan_t *p = merge_plan_build(sql, err, sizeof(err));
	ck_assert_msg(p != NULL, "planning \"%s\" failed: %s", sql, err);
	const char *want = plan_cases[_i].shard_sql ? plan_cases[_i].shard_sql : sql;
	ck_assert_msg(strcmp(merge_plan_shard_sql(p), want) == 0,
	              "shard SQL of \"%s\":\n  expected \"%s\"\n  got      \"%s\"", sql, want,
	              merge_plan_shard_sql(p));
	ck_assert_msg(p->rewritten == (plan_cases[_i].shard_sql != NULL),
	              "rewritten flag of \"%s\" is %d", sql, p->rewritten);
	merge_plan_describe(p, desc, sizeof(desc));
	ck_assert_msg(strcmp(desc, plan_cases[_i].plan) == 0,
	              "plan of \"%s\":\n  expected \"%s\"\n  got      \"%s\"", sql,
	              plan_cases[_i].plan, desc);
	merge_plan_free(p);
}
END_TEST

static const struct {
	const char *sql;
	const char *reason; /* a substring of the message */
} refusal_cases[] = {
    {"SELECT count(DISTINCT a) FROM t", "count(DISTINCT ...) over several shards is not supported"},
    {"SELECT sum(DISTINCT a) FROM t", "sum(DISTINCT ...) over several shards is not supported"},
    {"SELECT avg(DISTINCT a) FROM t", "avg(DISTINCT ...) over several shards is not supported"},
    {"SELECT string_agg(a, ',') FROM t", "aggregate string_agg() over several shards"},
    {"SELECT array_agg(a) FROM t GROUP BY b", "aggregate array_agg() over several shards"},
    {"SELECT stddev(a) FROM t", "aggregate stddev() over several shards"},
    {"SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY a) FROM t",
     "aggregate percentile_cont() over several shards"},
    {"SELECT sum(a ORDER BY b) FROM t", "aggregates with ORDER BY over several shards"},
    {"SELECT a, rank() OVER (ORDER BY a) FROM t",
     "window functions over several shards are not supported"},
    {"SELECT a FROM t ORDER BY row_number() OVER ()", "window functions over several shards"},
    {"SELECT a FROM t WINDOW w AS (ORDER BY a)", "window functions over several shards"},
    {"SELECT count(*) + 1 FROM t",
     "an aggregate inside an expression over several shards is not supported: count(*) + 1"},
    {"SELECT coalesce(sum(a), 0) FROM t", "aggregate inside an expression"},
    {"SELECT a FROM t GROUP BY a ORDER BY count(*) * 2", "aggregate inside an expression"},
    {"SELECT a, count(*) FROM t GROUP BY ROLLUP (a)", "GROUPING SETS, ROLLUP and CUBE"},
    {"SELECT a, count(*) FROM t GROUP BY CUBE (a, b)", "GROUPING SETS, ROLLUP and CUBE"},
    {"SELECT a, count(*) FROM t GROUP BY GROUPING SETS ((a), ())", "GROUPING SETS"},
    {"SELECT a, grouping(a) FROM t GROUP BY a", "GROUPING() over several shards"},
    {"SELECT a, count(*) FROM t GROUP BY DISTINCT a", "GROUP BY DISTINCT"},
    {"SELECT a FROM t INTERSECT SELECT a FROM u", "INTERSECT over several shards"},
    {"SELECT a FROM t EXCEPT SELECT a FROM u", "EXCEPT over several shards"},
    {"SELECT a FROM t UNION SELECT a FROM u ORDER BY a", "UNION with ORDER BY, LIMIT or OFFSET"},
    {"SELECT a FROM t UNION ALL SELECT a FROM u LIMIT 3", "UNION with ORDER BY, LIMIT or OFFSET"},
    {"SELECT count(*) FROM t UNION ALL SELECT count(*) FROM u",
     "UNION of queries with aggregates or GROUP BY"},
    {"SELECT a FROM t UNION ALL SELECT 1", "without FROM"},
    {"SELECT a FROM t UNION ALL (SELECT a FROM u UNION SELECT a FROM v)",
     "UNION (without ALL) inside UNION ALL"},
    {"SELECT DISTINCT a FROM t UNION ALL SELECT a FROM u", "UNION ALL of SELECT DISTINCT"},
    {"SELECT a FROM t ORDER BY a USING >", "ORDER BY ... USING over several shards"},
    {"SELECT a FROM t ORDER BY a COLLATE \"en_US\"", "COLLATE \"en_US\" over several shards"},
    {"SELECT a FROM t LIMIT 2 + 3", "LIMIT over several shards must be an integer constant"},
    {"SELECT a FROM t OFFSET (SELECT 1)", "OFFSET over several shards must be an integer constant"},
    {"SELECT *, count(*) FROM t GROUP BY id", "SELECT * with aggregates"},
    {"SELECT DISTINCT ON (a) a, count(*) FROM t GROUP BY a", "DISTINCT ON with aggregates"},
    {"SELECT a FROM t GROUP BY a HAVING a LIKE 'x%'", "HAVING over several shards supports only"},
    {"SELECT a FROM t GROUP BY a HAVING count(*) BETWEEN 1 AND 3", "HAVING over several shards"},
    {"SELECT a FROM t GROUP BY a HAVING 1 = 1", "HAVING over several shards"},
    {"SELECT a + 1 AS b, count(*) FROM t GROUP BY b",
     "GROUP BY \"b\" names an output column alias"},
    {"SELECT a, count(*) FROM t GROUP BY 3", "GROUP BY position 3 is not in select list"},
    {"SELECT a, count(*) FROM t GROUP BY 2", "aggregate functions are not allowed in GROUP BY"},
    {"SELECT a FROM t ORDER BY 3", "ORDER BY position 3 is not in select list"},
    {"SELECT DISTINCT a FROM t ORDER BY b",
     "for SELECT DISTINCT, ORDER BY expressions must appear in select list"},
    {"SELECT DISTINCT ON (a) a, b FROM t ORDER BY b",
     "SELECT DISTINCT ON expressions must match initial ORDER BY expressions"},
    {"SELECT a INTO new_t FROM t", "SELECT INTO over several shards"},
    {"VALUES (1), (2)", "VALUES over several shards"},
    {"INSERT INTO t VALUES (1)", "only a single SELECT can be merged"},
    {"SELECT 1; SELECT 2", "only a single SELECT can be merged"},
    {"SELEC 1", "cannot plan the statement over several shards: syntax error"},
    {"SELECT myschema.sum(a) FILTER (WHERE a > 0) FROM t", "aggregate sum() over several shards"},
};

START_TEST(test_refusal_table)
{
	const char *sql = refusal_cases[_i].sql;
	char err[256] = "";
	merge_plan_t *p = merge_plan_build(sql, err, sizeof(err));
	ck_assert_msg(p == NULL, "\"%s\" was planned (%s), expected a refusal", sql,
	              p ? merge_plan_shard_sql(p) : "");
	ck_assert_msg(strstr(err, refusal_cases[_i].reason) != NULL,
	              "refusal of \"%s\":\n  expected \"%s\"\n  got      \"%s\"", sql,
	              refusal_cases[_i].reason, err);
}
END_TEST

START_TEST(test_plan_tables_are_large_enough)
{
	ck_assert_int_ge((int)(sizeof(plan_cases) / sizeof(plan_cases[0])), 30);
	ck_assert_int_ge((int)(sizeof(refusal_cases) / sizeof(refusal_cases[0])), 30);
}
END_TEST

START_TEST(test_plan_shard_formats)
{
	char err[256];
	int16_t out[16];
	int n = -1;
	merge_plan_t *p =
	    merge_plan_build("SELECT id, name FROM t ORDER BY created_at", err, sizeof(err));
	ck_assert_ptr_nonnull(p);
	const int16_t two[] = {1, 0};
	ck_assert(merge_plan_shard_formats(p, 2, two, out, 16, &n));
	ck_assert_int_eq(n, 3); /* the hidden created_at in text */
	ck_assert_int_eq(out[0], 1);
	ck_assert_int_eq(out[1], 0);
	ck_assert_int_eq(out[2], 0);
	const int16_t one[] = {1};
	ck_assert(merge_plan_shard_formats(p, 1, one, out, 16, &n));
	ck_assert_int_eq(n, 1);
	ck_assert(merge_plan_shard_formats(p, 0, NULL, out, 16, &n));
	ck_assert_int_eq(n, 0);
	merge_plan_free(p);

	p = merge_plan_build("SELECT g, avg(x) FROM t GROUP BY g", err, sizeof(err));
	ck_assert_ptr_nonnull(p);
	const int16_t client[] = {1, 0};
	ck_assert(merge_plan_shard_formats(p, 2, client, out, 16, &n));
	ck_assert_int_eq(n, 3); /* g, sum(x) AS avg, hidden count(x) */
	ck_assert_int_eq(out[0], 1);
	ck_assert_int_eq(out[1], 0);
	ck_assert_int_eq(out[2], 0);
	ck_assert(!merge_plan_shard_formats(p, 3, (const int16_t[]){0, 0, 0}, out, 16, &n));
	merge_plan_free(p);
}
END_TEST

START_TEST(test_plan_error_buffer_untouched_on_success)
{
	char err[64] = "previous";
	merge_plan_t *p = merge_plan_build("SELECT 1 FROM t", err, sizeof(err));
	ck_assert_ptr_nonnull(p);
	ck_assert_str_eq(err, "");
	merge_plan_free(p);
	ck_assert_ptr_null(merge_plan_build(NULL, err, sizeof(err)));
	merge_plan_free(NULL);
}
END_TEST

/* ---- protocol bodies, byte by byte ---- */

enum {
	BOOL = 16,
	INT8 = 20,
	INT2 = 21,
	INT4 = 23,
	TEXT = 25,
	FLOAT4 = 700,
	FLOAT8 = 701,
	VARCHAR = 1043,
	DATE = 1082,
	TIMESTAMP = 1114,
	TIMESTAMPTZ = 1184,
	NUMERIC = 1700,
	UUID = 2950,
	JSONB = 3802,
};

typedef struct {
	uint8_t data[4096];
	size_t len;
} body_t;

static void put_u16(body_t *b, uint16_t v)
{
	b->data[b->len++] = (uint8_t)(v >> 8);
	b->data[b->len++] = (uint8_t)v;
}

static void put_u32(body_t *b, uint32_t v)
{
	put_u16(b, (uint16_t)(v >> 16));
	put_u16(b, (uint16_t)v);
}

static void put_bytes(body_t *b, const void *p, size_t n)
{
	ck_assert_uint_le(b->len + n, sizeof(b->data));
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

typedef struct {
	const char *name;
	uint32_t oid;
	int16_t format;
} col_t;

static body_t row_description(const col_t *cols, int n)
{
	body_t b = {.len = 0};
	put_u16(&b, (uint16_t)n);
	for (int i = 0; i < n; i++) {
		put_bytes(&b, cols[i].name, strlen(cols[i].name) + 1);
		put_u32(&b, 16384); /* table */
		put_u16(&b, (uint16_t)(i + 1));
		put_u32(&b, cols[i].oid);
		put_u16(&b, 0xFFFF); /* typlen */
		put_u32(&b, 0xFFFFFFFF);
		put_u16(&b, (uint16_t)cols[i].format);
	}
	return b;
}

/* A value of a DataRow: text (len -1: strlen), or raw bytes. */
typedef struct {
	const void *p; /* NULL: SQL NULL */
	int len;
} value_t;

static body_t data_row(const value_t *values, int n)
{
	body_t b = {.len = 0};
	put_u16(&b, (uint16_t)n);
	for (int i = 0; i < n; i++) {
		if (!values[i].p) {
			put_u32(&b, 0xFFFFFFFF);
			continue;
		}
		size_t len = values[i].len < 0 ? strlen(values[i].p) : (size_t)values[i].len;
		put_u32(&b, (uint32_t)len);
		put_bytes(&b, values[i].p, len);
	}
	return b;
}

#define T(s) ((value_t){(s), -1})
#define NUL  ((value_t){NULL, 0})

static value_t bin_i32(int32_t v, uint8_t *store)
{
	uint32_t u = (uint32_t)v;
	store[0] = (uint8_t)(u >> 24);
	store[1] = (uint8_t)(u >> 16);
	store[2] = (uint8_t)(u >> 8);
	store[3] = (uint8_t)u;
	return (value_t){store, 4};
}

static value_t bin_i64(int64_t v, uint8_t *store)
{
	bin_i32((int32_t)((uint64_t)v >> 32), store);
	bin_i32((int32_t)(uint32_t)v, store + 4);
	return (value_t){store, 8};
}

static value_t bin_f64(double v, uint8_t *store)
{
	int64_t bits;
	memcpy(&bits, &v, sizeof(bits));
	return bin_i64(bits, store);
}

/* ---- a merge under test ---- */

typedef struct {
	merge_plan_t *plan;
	merger_t *m;
	int n_sources;
	int n_cols;
} merge_t;

static merge_t start_params(const char *sql, int n_sources, int nparams, const char *const *values,
                            const int *lengths, const int *formats)
{
	char err[256];
	merge_t t = {.n_sources = n_sources};
	t.plan = merge_plan_build(sql, err, sizeof(err));
	ck_assert_msg(t.plan != NULL, "planning \"%s\" failed: %s", sql, err);
	t.m = merger_new(t.plan, n_sources, nparams, values, lengths, formats, err, sizeof(err));
	ck_assert_msg(t.m != NULL, "merger for \"%s\" failed: %s", sql, err);
	return t;
}

static merge_t start(const char *sql, int n_sources)
{
	return start_params(sql, n_sources, 0, NULL, NULL, NULL);
}

/* Every source describes the same columns. */
static void describe_all(merge_t *t, const col_t *cols, int n)
{
	char err[256];
	body_t desc = row_description(cols, n);
	for (int s = 0; s < t->n_sources; s++)
		ck_assert_msg(
		    merger_row_description(t->m, s, desc.data, desc.len, err, sizeof(err)),
		    "RowDescription of source %d refused: %s", s, err);
	t->n_cols = n;
}

#define COLS(...)                                                                                  \
	(const col_t[]){__VA_ARGS__}, (int)(sizeof((const col_t[]){__VA_ARGS__}) / sizeof(col_t))

static void push_values(merge_t *t, int source, const value_t *values, int n)
{
	char err[256];
	body_t row = data_row(values, n);
	ck_assert_msg(merger_push_row(t->m, source, row.data, row.len, err, sizeof(err)),
	              "row of source %d refused: %s", source, err);
}

#define ROW(t, source, ...)                                                                        \
	push_values(t, source, (const value_t[]){__VA_ARGS__},                                     \
	            (int)(sizeof((const value_t[]){__VA_ARGS__}) / sizeof(value_t)))

/* Pushes one single-column text row per value (NULL pointer: SQL NULL). */
static void push_column(merge_t *t, int source, const char *const *values, int n)
{
	for (int i = 0; i < n; i++)
		push_values(t, source, (const value_t[]){{values[i], -1}}, 1);
}

#define COLUMN(t, source, ...)                                                                     \
	push_column(t, source, (const char *const[]){__VA_ARGS__},                                 \
	            (int)(sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *)))

static void done_all(merge_t *t)
{
	for (int s = 0; s < t->n_sources; s++)
		merger_source_done(t->m, s);
}

static int32_t get_i32(const uint8_t *p)
{
	return (int32_t)(((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) |
	                 p[3]);
}

typedef enum { SHOW_TEXT, SHOW_BINARY_INT, SHOW_BINARY_FLOAT } show_t;

/* The rows ready now, "a|b;c|d", NULL shown as NULL. */
static const char *take_rows_as(merge_t *t, show_t show)
{
	static char out[8192];
	size_t used = 0;
	out[0] = '\0';
	const uint8_t *row;
	size_t len;
	for (int rows = 0; (row = merger_next_row(t->m, &len)); rows++) {
		ck_assert_uint_ge(len, 2);
		int n = (row[0] << 8) | row[1];
		size_t pos = 2;
		used += (size_t)snprintf(out + used, sizeof(out) - used, "%s", rows ? ";" : "");
		for (int c = 0; c < n; c++) {
			ck_assert_uint_ge(len, pos + 4);
			int32_t l = get_i32(row + pos);
			pos += 4;
			const char *sep = c ? "|" : "";
			if (l < 0) {
				used +=
				    (size_t)snprintf(out + used, sizeof(out) - used, "%sNULL", sep);
				continue;
			}
			ck_assert_uint_ge(len, pos + (size_t)l);
			const uint8_t *v = row + pos;
			if (show == SHOW_TEXT) {
				used += (size_t)snprintf(out + used, sizeof(out) - used, "%s%.*s",
				                         sep, l, (const char *)v);
			} else if (show == SHOW_BINARY_FLOAT && l == 8) {
				uint64_t bits = ((uint64_t)(uint32_t)get_i32(v) << 32) |
				                (uint32_t)get_i32(v + 4);
				double d;
				memcpy(&d, &bits, sizeof(d));
				used += (size_t)snprintf(out + used, sizeof(out) - used, "%s%g",
				                         sep, d);
			} else {
				int64_t x = l == 8   ? ((int64_t)get_i32(v) * 4294967296LL +
                                                      (uint32_t)get_i32(v + 4))
				            : l == 4 ? get_i32(v)
				            : l == 1 ? v[0]
				                     : -999;
				used += (size_t)snprintf(out + used, sizeof(out) - used, "%s%lld",
				                         sep, (long long)x);
			}
			pos += (size_t)l;
		}
		ck_assert_uint_eq(pos, len);
	}
	return out;
}

static const char *take_rows(merge_t *t)
{
	return take_rows_as(t, SHOW_TEXT);
}

static void finish(merge_t *t)
{
	merger_free(t->m);
	merge_plan_free(t->plan);
}

/* The client's RowDescription as "name:oid,name:oid". */
static const char *client_columns(merge_t *t)
{
	static char out[1024];
	size_t len, used = 0;
	const uint8_t *d = merger_client_row_description(t->m, &len);
	ck_assert_ptr_nonnull(d);
	int n = (d[0] << 8) | d[1];
	size_t pos = 2;
	out[0] = '\0';
	for (int c = 0; c < n; c++) {
		const char *name = (const char *)d + pos;
		pos += strlen(name) + 1;
		uint32_t oid = (uint32_t)get_i32(d + pos + 6);
		int16_t typlen = (int16_t)((d[pos + 10] << 8) | d[pos + 11]);
		used += (size_t)snprintf(out + used, sizeof(out) - used, "%s%s:%u/%d", c ? "," : "",
		                         name, oid, typlen);
		pos += 18;
	}
	ck_assert_uint_eq(pos, len);
	return out;
}

/* ---- ordered merges: typed comparisons ---- */

START_TEST(test_order_int8_asc)
{
	merge_t t = start("SELECT a FROM t ORDER BY a", 3);
	describe_all(&t, COLS({"a", INT8, 0}));
	COLUMN(&t, 0, "-9223372036854775808", "5", "10");
	COLUMN(&t, 1, "-1", "9", "9223372036854775807");
	COLUMN(&t, 2, "0");
	done_all(&t);
	ck_assert_str_eq(take_rows(&t), "-9223372036854775808;-1;0;5;9;10;9223372036854775807");
	ck_assert(merger_finished(t.m));
	ck_assert_uint_eq(merger_rows_out(t.m), 7);
	finish(&t);
}
END_TEST

START_TEST(test_order_two_keys_mixed_directions)
{
	merge_t t = start("SELECT a, b FROM t ORDER BY a DESC, b", 2);
	describe_all(&t, COLS({"a", INT4, 0}, {"b", TEXT, 0}));
	ROW(&t, 0, T("2"), T("b"));
	ROW(&t, 0, T("1"), T("a"));
	ROW(&t, 1, T("2"), T("a"));
	ROW(&t, 1, T("2"), T("c"));
	ROW(&t, 1, T("-1"), T("z"));
	done_all(&t);
	ck_assert_str_eq(take_rows(&t), "2|a;2|b;2|c;1|a;-1|z");
	finish(&t);
}
END_TEST

START_TEST(test_order_numeric_scales_and_specials)
{
	/* PostgreSQL: -Infinity -1.5 -0.0001 0 0.001 2.50 2.5 10 Infinity NaN */
	merge_t t = start("SELECT v FROM t ORDER BY v", 3);
	describe_all(&t, COLS({"v", NUMERIC, 0}));
	COLUMN(&t, 0, "-Infinity", "-0.0001", "2.50", "Infinity");
	COLUMN(&t, 1, "-1.5", "0", "2.5", "NaN");
	COLUMN(&t, 2, "0.001", "10");
	done_all(&t);
	ck_assert_str_eq(take_rows(&t), "-Infinity;-1.5;-0.0001;0;0.001;2.50;2.5;10;Infinity;NaN");
	finish(&t);
}
END_TEST

START_TEST(test_order_float_nan_infinity_desc)
{
	/* DESC puts NULLs first and NaN above Infinity; -0 = 0 */
	merge_t t = start("SELECT f FROM t ORDER BY f DESC", 2);
	describe_all(&t, COLS({"f", FLOAT8, 0}));
	COLUMN(&t, 0, "NaN", "3.25", "-0", "-Infinity");
	COLUMN(&t, 1, NULL, "Infinity", "1e+300", "0", "-1.5");
	done_all(&t);
	ck_assert_str_eq(take_rows(&t), "NULL;NaN;Infinity;1e+300;3.25;-0;0;-1.5;-Infinity");
	finish(&t);
}
END_TEST

START_TEST(test_order_text_c_collation)
{
	merge_t t = start("SELECT s FROM t ORDER BY s", 3);
	describe_all(&t, COLS({"s", VARCHAR, 0}));
	COLUMN(&t, 0, "B", "ab");
	COLUMN(&t, 1, "", "a", "\xc3\xa9");
	COLUMN(&t, 2, "a b");
	done_all(&t);
	ck_assert_str_eq(take_rows(&t), ";B;a;a b;ab;\xc3\xa9");
	finish(&t);
}
END_TEST

START_TEST(test_order_timestamptz_offsets_are_instants)
{
	/* Sources in different time zones: ordered by instant, not by text. */
	merge_t t = start("SELECT ts FROM t ORDER BY ts", 3);
	describe_all(&t, COLS({"ts", TIMESTAMPTZ, 0}));
	COLUMN(&t, 0, "-infinity", "2024-01-01 10:00:00+02", "2024-01-01 09:30:00+01");
	COLUMN(&t, 1, "0044-03-15 12:00:00+00 BC", "2024-01-01 07:00:00-01", "infinity");
	COLUMN(&t, 2, "2024-01-01 13:29:59.999999+05:30", "2024-01-01 08:00:00.5+00");
	done_all(&t);
	ck_assert_str_eq(take_rows(&t),
	                 "-infinity;0044-03-15 12:00:00+00 BC;2024-01-01 13:29:59.999999+05:30;"
	                 "2024-01-01 10:00:00+02;2024-01-01 07:00:00-01;2024-01-01 08:00:00.5+00;"
	                 "2024-01-01 09:30:00+01;infinity");
	finish(&t);
}
END_TEST

START_TEST(test_order_date_bc_and_infinity_desc)
{
	merge_t t = start("SELECT d FROM t ORDER BY d DESC", 2);
	describe_all(&t, COLS({"d", DATE, 0}));
	COLUMN(&t, 0, "infinity", "1999-12-31", "0001-12-31 BC");
	COLUMN(&t, 1, "2024-02-29", "0001-01-01", "-infinity");
	done_all(&t);
	ck_assert_str_eq(take_rows(&t),
	                 "infinity;2024-02-29;1999-12-31;0001-01-01;0001-12-31 BC;-infinity");
	finish(&t);
}
END_TEST

START_TEST(test_order_timestamp_without_zone)
{
	merge_t t = start("SELECT ts FROM t ORDER BY ts", 2);
	describe_all(&t, COLS({"ts", TIMESTAMP, 0}));
	COLUMN(&t, 0, "2023-12-31 23:59:59.9", "10000-01-01 00:00:00");
	COLUMN(&t, 1, "2024-01-01 00:00:00", "2024-01-01 00:00:00.000001");
	done_all(&t);
	ck_assert_str_eq(take_rows(&t), "2023-12-31 23:59:59.9;2024-01-01 00:00:00;"
	                                "2024-01-01 00:00:00.000001;10000-01-01 00:00:00");
	finish(&t);
}
END_TEST

START_TEST(test_order_uuid_and_bool)
{
	merge_t t = start("SELECT u FROM t ORDER BY u", 2);
	describe_all(&t, COLS({"u", UUID, 0}));
	COLUMN(&t, 0, "00000000-0000-0000-0000-000000000001",
	       "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
	COLUMN(&t, 1, "0fffffff-ffff-ffff-ffff-ffffffffffff",
	       "ffffffff-0000-0000-0000-000000000000");
	done_all(&t);
	ck_assert_str_eq(
	    take_rows(&t),
	    "00000000-0000-0000-0000-000000000001;0fffffff-ffff-ffff-ffff-ffffffffffff;"
	    "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11;ffffffff-0000-0000-0000-000000000000");
	finish(&t);

	t = start("SELECT b, n FROM t ORDER BY b, n", 2);
	describe_all(&t, COLS({"b", BOOL, 0}, {"n", INT4, 0}));
	ROW(&t, 0, T("f"), T("1"));
	ROW(&t, 0, T("t"), T("3"));
	ROW(&t, 1, T("f"), T("2"));
	ROW(&t, 1, T("t"), T("4"));
	ROW(&t, 1, NUL, T("5"));
	done_all(&t);
	ck_assert_str_eq(take_rows(&t), "f|1;f|2;t|3;t|4;NULL|5");
	finish(&t);
}
END_TEST

START_TEST(test_order_bpchar_ignores_padding)
{
	merge_t t = start("SELECT c, n FROM t ORDER BY c, n", 2);
	describe_all(&t, COLS({"c", 1042, 0}, {"n", INT4, 0}));
	ROW(&t, 0, T("a  "), T("1"));
	ROW(&t, 0, T("a  "), T("3"));
	ROW(&t, 1, T("a"), T("2"));
	ROW(&t, 1, T("a!"), T("0"));
	done_all(&t);
	ck_assert_str_eq(take_rows(&t), "a  |1;a|2;a  |3;a!|0");
	finish(&t);
}
END_TEST

START_TEST(test_nulls_first_and_last)
{
	merge_t t = start("SELECT a FROM t ORDER BY a ASC NULLS FIRST", 2);
	describe_all(&t, COLS({"a", INT4, 0}));
	COLUMN(&t, 0, NULL, "1", "3");
	COLUMN(&t, 1, NULL, "2");
	done_all(&t);
	ck_assert_str_eq(take_rows(&t), "NULL;NULL;1;2;3");
	finish(&t);

	t = start("SELECT a FROM t ORDER BY a DESC NULLS LAST", 2);
	describe_all(&t, COLS({"a", INT4, 0}));
	COLUMN(&t, 0, "3", "1", NULL);
	COLUMN(&t, 1, "2", NULL);
	done_all(&t);
	ck_assert_str_eq(take_rows(&t), "3;2;1;NULL;NULL");
	finish(&t);

	t = start("SELECT a FROM t ORDER BY a", 2); /* ASC: NULLS LAST by default */
	describe_all(&t, COLS({"a", INT4, 0}));
	COLUMN(&t, 0, "1", NULL);
	COLUMN(&t, 1, "0", "2");
	done_all(&t);
	ck_assert_str_eq(take_rows(&t), "0;1;2;NULL");
	finish(&t);
}
END_TEST

START_TEST(test_hidden_sort_column_is_stripped)
{
	merge_t t = start("SELECT id FROM t ORDER BY created_at DESC", 2);
	describe_all(&t, COLS({"id", INT4, 0}, {MERGE_HIDDEN_ALIAS "1", TIMESTAMPTZ, 0}));
	ck_assert_str_eq(client_columns(&t), "id:23/-1");
	ROW(&t, 0, T("1"), T("2024-05-01 00:00:00+00"));
	ROW(&t, 0, T("2"), T("2024-01-01 00:00:00+00"));
	ROW(&t, 1, T("3"), T("2024-03-01 00:00:00+00"));
	done_all(&t);
	ck_assert_str_eq(take_rows(&t), "1;3;2");
	finish(&t);
}
END_TEST

START_TEST(test_star_target_counted_from_end)
{
	merge_t t = start("SELECT *, a + 1 AS x FROM t ORDER BY x DESC", 2);
	describe_all(&t, COLS({"a", INT4, 0}, {"name", TEXT, 0}, {"x", INT4, 0}));
	ROW(&t, 0, T("9"), T("nine"), T("10"));
	ROW(&t, 0, T("1"), T("one"), T("2"));
	ROW(&t, 1, T("4"), T("four"), T("5"));
	done_all(&t);
	ck_assert_str_eq(take_rows(&t), "9|nine|10;4|four|5;1|one|2");
	ck_assert_str_eq(client_columns(&t), "a:23/-1,name:25/-1,x:23/-1");
	finish(&t);
}
END_TEST

/* ---- LIMIT and OFFSET ---- */

START_TEST(test_limit_offset_ordered)
{
	merge_t t = start("SELECT a FROM t ORDER BY a LIMIT 3 OFFSET 2", 2);
	describe_all(&t, COLS({"a", INT4, 0}));
	COLUMN(&t, 0, "1", "3", "5", "7", "9");
	COLUMN(&t, 1, "2", "4", "6");
	ck_assert(!merger_limit_reached(t.m));
	/* source 1 is not done: its next row could still be smaller than 7 */
	ck_assert_str_eq(take_rows(&t), "3;4;5");
	ck_assert(merger_limit_reached(t.m));
	ck_assert(merger_finished(t.m));
	ck_assert_uint_eq(merger_buffered(t.m, 0), 0); /* dropped once the limit is met */
	COLUMN(&t, 1, "8");                            /* late rows are accepted and dropped */
	ck_assert_uint_eq(merger_buffered(t.m, 1), 0);
	done_all(&t);
	ck_assert_str_eq(take_rows(&t), "");
	ck_assert_uint_eq(merger_rows_out(t.m), 3);
	finish(&t);
}
END_TEST

START_TEST(test_limit_offset_concat_counts_at_push)
{
	merge_t t = start("SELECT a FROM t LIMIT 2 OFFSET 1", 2);
	describe_all(&t, COLS({"a", INT4, 0}));
	COLUMN(&t, 0, "1"); /* skipped by OFFSET */
	ck_assert_str_eq(take_rows(&t), "");
	COLUMN(&t, 1, "2");
	ck_assert(!merger_limit_reached(t.m));
	COLUMN(&t, 0, "3");
	ck_assert(merger_limit_reached(t.m)); /* before the client took anything */
	COLUMN(&t, 1, "4");
	ck_assert_str_eq(take_rows(&t), "2;3");
	ck_assert(merger_finished(t.m));
	ck_assert_uint_eq(merger_rows_out(t.m), 2);
	finish(&t);
}
END_TEST

START_TEST(test_limit_zero_is_reached_at_once)
{
	merge_t t = start("SELECT a FROM t ORDER BY a LIMIT 0", 2);
	ck_assert(merger_limit_reached(t.m));
	describe_all(&t, COLS({"a", INT4, 0}));
	COLUMN(&t, 0, "1");
	ck_assert_str_eq(take_rows(&t), "");
	ck_assert(merger_finished(t.m));
	finish(&t);
}
END_TEST

START_TEST(test_limit_offset_text_params)
{
	const char *values[] = {"2", " 1 "};
	merge_t t =
	    start_params("SELECT a FROM t ORDER BY a LIMIT $1 OFFSET $2", 2, 2, values, NULL, NULL);
	describe_all(&t, COLS({"a", INT4, 0}));
	COLUMN(&t, 0, "10", "30");
	COLUMN(&t, 1, "20", "40");
	ck_assert_str_eq(take_rows(&t), "20;30");
	ck_assert(merger_limit_reached(t.m));
	finish(&t);
}
END_TEST

START_TEST(test_limit_offset_binary_and_null_params)
{
	uint8_t limit_raw[8], offset_raw[4];
	bin_i64(1, limit_raw);
	bin_i32(2, offset_raw);
	const char *values[] = {(const char *)limit_raw, (const char *)offset_raw};
	const int lengths[] = {8, 4};
	const int formats[] = {1, 1};
	merge_t t = start_params("SELECT a FROM t ORDER BY a LIMIT $1 OFFSET $2", 2, 2, values,
	                         lengths, formats);
	describe_all(&t, COLS({"a", INT4, 0}));
	COLUMN(&t, 0, "1", "3");
	COLUMN(&t, 1, "2", "4");
	done_all(&t);
	ck_assert_str_eq(take_rows(&t), "3");
	finish(&t);

	/* LIMIT NULL is no limit, as in PostgreSQL */
	const char *null_limit[] = {NULL, "1"};
	t = start_params("SELECT a FROM t ORDER BY a LIMIT $1 OFFSET $2", 2, 2, null_limit, NULL,
	                 NULL);
	describe_all(&t, COLS({"a", INT4, 0}));
	COLUMN(&t, 0, "1", "3");
	COLUMN(&t, 1, "2");
	done_all(&t);
	ck_assert_str_eq(take_rows(&t), "2;3");
	ck_assert(!merger_limit_reached(t.m));
	finish(&t);
}
END_TEST

START_TEST(test_limit_param_errors)
{
	char err[256];
	merge_plan_t *p =
	    merge_plan_build("SELECT a FROM t ORDER BY a LIMIT $1 OFFSET $2", err, sizeof(err));
	ck_assert_ptr_nonnull(p);
	const char *negative[] = {"5", "-1"};
	ck_assert_ptr_null(merger_new(p, 2, 2, negative, NULL, NULL, err, sizeof(err)));
	ck_assert_str_eq(err, "OFFSET must not be negative");
	const char *garbage[] = {"five", "1"};
	ck_assert_ptr_null(merger_new(p, 2, 2, garbage, NULL, NULL, err, sizeof(err)));
	ck_assert_str_eq(err, "invalid input syntax for type bigint: \"five\"");
	const char *one[] = {"5"};
	ck_assert_ptr_null(merger_new(p, 2, 1, one, NULL, NULL, err, sizeof(err)));
	ck_assert_str_eq(err, "OFFSET refers to parameter $2 but 1 were bound");
	merge_plan_free(p);
}
END_TEST

START_TEST(test_fetch_first_with_ties)
{
	merge_t t = start("SELECT a FROM t ORDER BY a FETCH FIRST 2 ROWS WITH TIES", 2);
	describe_all(&t, COLS({"a", INT4, 0}));
	COLUMN(&t, 0, "1", "2", "2", "3");
	COLUMN(&t, 1, "2", "4");
	ck_assert_str_eq(take_rows(&t), "1;2;2;2");
	ck_assert(merger_limit_reached(t.m)); /* 3 is not a tie */
	ck_assert_uint_eq(merger_rows_out(t.m), 4);
	finish(&t);
}
END_TEST

/* ---- streaming and backpressure ---- */

START_TEST(test_ordered_waits_for_every_unfinished_source)
{
	merge_t t = start("SELECT a FROM t ORDER BY a", 2);
	describe_all(&t, COLS({"a", INT4, 0}));
	COLUMN(&t, 0, "5");
	ck_assert_str_eq(take_rows(&t), ""); /* source 1 may still send a smaller row */
	ck_assert_uint_eq(merger_buffered(t.m, 0), 1);
	COLUMN(&t, 1, "3");
	ck_assert_str_eq(take_rows(&t), "3"); /* 5 waits for source 1's next row */
	ck_assert(!merger_finished(t.m));
	merger_source_done(t.m, 1);
	ck_assert_str_eq(take_rows(&t), "5");
	merger_source_done(t.m, 0);
	ck_assert(merger_finished(t.m));
	finish(&t);
}
END_TEST

START_TEST(test_ordered_streams_with_bounded_buffers)
{
	/* Source s holds s*ROWS .. s*ROWS+ROWS-1: the merge needs all of source 0
	 * first, while the caller would happily read sources 1 and 2 ahead. */
	enum { SOURCES = 3, ROWS = 500, THRESHOLD = 4 };
	merge_t t = start("SELECT a FROM t ORDER BY a", SOURCES);
	describe_all(&t, COLS({"a", INT4, 0}));
	int fed[SOURCES] = {0};
	int out = 0, last = -1, out_before_first_done = -1;
	size_t max_buffered = 0;
	bool all_done = false;
	while (!all_done) {
		all_done = true;
		for (int s = 0; s < SOURCES; s++) {
			if (fed[s] > ROWS)
				continue;
			all_done = false;
			/* The caller reads a source only while it holds few rows. */
			for (int burst = 0; burst < 2 && merger_buffered(t.m, s) < THRESHOLD;
			     burst++) {
				if (fed[s] == ROWS) {
					if (out_before_first_done < 0)
						out_before_first_done = out;
					merger_source_done(t.m, s);
					fed[s]++;
					break;
				}
				char value[16];
				snprintf(value, sizeof(value), "%d", s * ROWS + fed[s]++);
				COLUMN(&t, s, value);
				if (merger_buffered(t.m, s) > max_buffered)
					max_buffered = merger_buffered(t.m, s);
			}
		}
		const uint8_t *row;
		size_t len;
		while ((row = merger_next_row(t.m, &len))) {
			char value[16];
			ck_assert_uint_lt(len - 6, sizeof(value));
			memcpy(value, row + 6, len - 6);
			value[len - 6] = '\0';
			ck_assert_int_eq(atoi(value), last + 1); /* every value, in order */
			last++;
			out++;
		}
	}
	ck_assert_int_eq(out, SOURCES * ROWS);
	ck_assert_uint_eq(max_buffered, THRESHOLD); /* reached, never passed */
	/* rows went out while every source was still running */
	ck_assert_int_ge(out_before_first_done, ROWS - THRESHOLD);
	ck_assert(merger_finished(t.m));
	finish(&t);
}
END_TEST

START_TEST(test_concat_rows_flow_immediately)
{
	merge_t t = start("SELECT a FROM t", 2);
	describe_all(&t, COLS({"a", INT4, 0}));
	COLUMN(&t, 1, "7");
	ck_assert_uint_eq(merger_buffered(t.m, 1), 1);
	ck_assert_str_eq(take_rows(&t), "7");
	ck_assert_uint_eq(merger_buffered(t.m, 1), 0);
	COLUMN(&t, 0, "8");
	COLUMN(&t, 1, "9");
	ck_assert_str_eq(take_rows(&t), "8;9");
	ck_assert(!merger_finished(t.m));
	done_all(&t);
	ck_assert(merger_finished(t.m));
	finish(&t);
}
END_TEST

/* ---- aggregates ---- */

START_TEST(test_aggregates_without_group_by)
{
	merge_t t = start("SELECT count(*), sum(x), min(x), max(x), avg(x) FROM t", 3);
	describe_all(&t,
	             COLS({"count", INT8, 0}, {"sum", INT8, 0}, {"min", INT4, 0}, {"max", INT4, 0},
	                  {"avg", INT8, 0}, {MERGE_HIDDEN_ALIAS "1", INT8, 0}));
	ck_assert_str_eq(client_columns(&t),
	                 "count:20/-1,sum:20/-1,min:23/-1,max:23/-1,avg:1700/-1");
	ROW(&t, 0, T("2"), T("3"), T("1"), T("2"), T("3"), T("2"));
	ROW(&t, 1, T("0"), NUL, NUL, NUL, NUL, T("0"));
	ROW(&t, 2, T("1"), T("-7"), T("-7"), T("-7"), T("-7"), T("1"));
	ck_assert_str_eq(take_rows(&t), ""); /* nothing before every source is done */
	ck_assert_uint_eq(merger_buffered(t.m, 0), 0);
	done_all(&t);
	ck_assert_str_eq(take_rows(&t), "3|-4|-7|2|-1.3333333333333333");
	ck_assert(merger_finished(t.m));
	ck_assert_uint_eq(merger_rows_out(t.m), 1);
	finish(&t);
}
END_TEST

static const struct {
	uint32_t sum_oid;
	const char *sums[3];
	const char *counts[3];
	const char *avg; /* as PostgreSQL prints avg() over all the rows */
	const char *columns;
} avg_cases[] = {
    {INT8, {"1", "2", NULL}, {"1", "1", "0"}, "1.5000000000000000", "avg:1700/-1"},
    {INT8, {"3", "4", NULL}, {"2", "1", "0"}, "2.3333333333333333", "avg:1700/-1"},
    {INT8, {"0", NULL, NULL}, {"1", "0", "0"}, "0.00000000000000000000", "avg:1700/-1"},
    {INT8, {"-7", "0", NULL}, {"1", "1", "0"}, "-3.5000000000000000", "avg:1700/-1"},
    {INT8, {"100000", "200001", NULL}, {"1", "1", "0"}, "150000.500000000000", "avg:1700/-1"},
    {INT8, {"99999999", "2", NULL}, {"1", "2", "0"}, "33333333.666666666667", "avg:1700/-1"},
    {INT8,
     {"9223372036854775807", "9223372036854775807", NULL},
     {"1", "1", "0"},
     "9223372036854775807",
     "avg:1700/-1"},
    {NUMERIC, {"1.5", "2.25", NULL}, {"1", "1", "0"}, "1.8750000000000000", "avg:1700/-1"},
    {NUMERIC,
     {"0.00001", "0.00002", NULL},
     {"1", "1", "0"},
     "0.000015000000000000000000",
     "avg:1700/-1"},
    {NUMERIC,
     {"12345678901234567890", "1", NULL},
     {"1", "1", "0"},
     "6172839450617283946",
     "avg:1700/-1"},
    {NUMERIC, {"-0.5", NULL, NULL}, {"1", "0", "0"}, "-0.50000000000000000000", "avg:1700/-1"},
    {NUMERIC, {"NaN", "1", NULL}, {"1", "1", "0"}, "NaN", "avg:1700/-1"},
    {NUMERIC, {"Infinity", "1", NULL}, {"1", "1", "0"}, "Infinity", "avg:1700/-1"},
    {NUMERIC, {"Infinity", "-Infinity", NULL}, {"1", "1", "0"}, "NaN", "avg:1700/-1"},
    {NUMERIC, {NULL, NULL, NULL}, {"0", "0", "0"}, "NULL", "avg:1700/-1"},
    {FLOAT8, {"1", "2", NULL}, {"1", "1", "0"}, "1.5", "avg:701/8"},
    {FLOAT8, {"0.1", "0.2", NULL}, {"1", "1", "0"}, "0.15000000000000002", "avg:701/8"},
    {FLOAT4, {"1.5", "2", NULL}, {"1", "1", "0"}, "1.75", "avg:701/8"},
};

START_TEST(test_avg_matches_postgresql_text)
{
	merge_t t = start("SELECT avg(x) FROM t", 3);
	describe_all(&t,
	             COLS({"avg", avg_cases[_i].sum_oid, 0}, {MERGE_HIDDEN_ALIAS "1", INT8, 0}));
	ck_assert_str_eq(client_columns(&t), avg_cases[_i].columns);
	for (int s = 0; s < 3; s++)
		ROW(&t, s, ((value_t){avg_cases[_i].sums[s], -1}), T(avg_cases[_i].counts[s]));
	done_all(&t);
	ck_assert_str_eq(take_rows(&t), avg_cases[_i].avg);
	finish(&t);
}
END_TEST

static const struct {
	uint32_t oid;
	const char *sums[2];
	const char *sum;
} sum_cases[] = {
    /* sum(int8) is numeric: past bigint without loss */
    {NUMERIC, {"9223372036854775807", "9223372036854775807"}, "18446744073709551614"},
    {NUMERIC, {"1.50", "-3.125"}, "-1.625"},
    {NUMERIC, {"0.10", "-0.1"}, "0.00"},
    {NUMERIC, {"-99999999999999999999.5", "99999999999999999999"}, "-0.5"},
    {NUMERIC, {"NaN", "1"}, "NaN"},
    {INT8, {"9223372036854775806", "1"}, "9223372036854775807"},
    {INT8, {"-5", NULL}, "-5"},
    {INT8, {NULL, NULL}, "NULL"},
    {FLOAT8, {"0.1", "0.2"}, "0.30000000000000004"},
    {FLOAT8, {"1e+300", "1e+300"}, "2e+300"},
    {FLOAT8, {"1e+22", "0.000123"}, "1e+22"},
    {FLOAT8, {"-2.5e-07", "0"}, "-2.5e-07"},
    {FLOAT8, {"100000000000000", "1"}, "100000000000001"},
    {FLOAT8, {"Infinity", "-Infinity"}, "NaN"},
    /* a text exactly halfway to the next value is not PostgreSQL's output */
    {FLOAT8, {"1e+23", "0"}, "9.999999999999999e+22"},
    {FLOAT8, {"2.111096749485347e+16", "0"}, "2.1110967494853472e+16"},
    {FLOAT4, {"62970632", "0"}, "6.2970632e+07"},
    {FLOAT4, {"0.1", "0.2"}, "0.3"},
    {FLOAT4, {"1234567", "0"}, "1.234567e+06"},
};

START_TEST(test_sum_exact)
{
	merge_t t = start("SELECT sum(x) FROM t", 2);
	describe_all(&t, COLS({"sum", sum_cases[_i].oid, 0}));
	for (int s = 0; s < 2; s++)
		ROW(&t, s, ((value_t){sum_cases[_i].sums[s], -1}));
	done_all(&t);
	ck_assert_str_eq(take_rows(&t), sum_cases[_i].sum);
	finish(&t);
}
END_TEST

START_TEST(test_sum_bigint_overflow_is_an_error)
{
	char err[256];
	merge_t t = start("SELECT sum(x) FROM t", 2);
	describe_all(&t, COLS({"sum", INT8, 0}));
	ROW(&t, 0, T("9223372036854775807"));
	body_t row = data_row((const value_t[]){T("1")}, 1);
	ck_assert(!merger_push_row(t.m, 1, row.data, row.len, err, sizeof(err)));
	ck_assert_str_eq(err, "bigint out of range");
	ck_assert(merger_finished(t.m));
	ck_assert_str_eq(merger_error(t.m), "bigint out of range");
	finish(&t);
}
END_TEST

START_TEST(test_group_by_merges_equal_keys)
{
	/* 1.0 and 1.00 are one numeric group; the first text seen is kept */
	merge_t t = start("SELECT g, count(*), sum(x) FROM t GROUP BY g ORDER BY g", 2);
	describe_all(&t, COLS({"g", NUMERIC, 0}, {"count", INT8, 0}, {"sum", INT8, 0}));
	ROW(&t, 0, T("1.0"), T("2"), T("10"));
	ROW(&t, 0, T("2"), T("1"), T("5"));
	ROW(&t, 1, T("3"), T("1"), NUL);
	ROW(&t, 1, T("1.00"), T("3"), T("-1"));
	ROW(&t, 1, NUL, T("4"), T("4"));
	done_all(&t);
	ck_assert_str_eq(take_rows(&t), "1.0|5|9;2|1|5;3|1|NULL;NULL|4|4");
	finish(&t);
}
END_TEST

START_TEST(test_group_by_hidden_key_order_limit)
{
	merge_t t = start(
	    "SELECT count(*) AS n, max(v) FROM t GROUP BY g ORDER BY n DESC LIMIT 2 OFFSET 1", 2);
	describe_all(&t, COLS({"n", INT8, 0}, {"max", TEXT, 0}, {MERGE_HIDDEN_ALIAS "1", TEXT, 0}));
	ck_assert_str_eq(client_columns(&t), "n:20/-1,max:25/-1");
	ROW(&t, 0, T("3"), T("a3"), T("a"));
	ROW(&t, 0, T("1"), T("b1"), T("b"));
	ROW(&t, 0, T("2"), T("c2"), T("c"));
	ROW(&t, 1, T("5"), T("b5"), T("b"));
	ROW(&t, 1, T("1"), T("d1"), T("d"));
	done_all(&t);
	/* totals: b 6, a 3, c 2, d 1 */
	ck_assert_str_eq(take_rows(&t), "3|a3;2|c2");
	ck_assert(merger_limit_reached(t.m));
	finish(&t);
}
END_TEST

START_TEST(test_group_by_without_rows_gives_no_rows)
{
	merge_t t = start("SELECT g, count(*) FROM t GROUP BY g", 2);
	describe_all(&t, COLS({"g", INT4, 0}, {"count", INT8, 0}));
	done_all(&t);
	ck_assert_str_eq(take_rows(&t), "");
	ck_assert(merger_finished(t.m));
	finish(&t);
}
END_TEST

START_TEST(test_having_and_or)
{
	merge_t t = start("SELECT g, count(*) FROM t GROUP BY g "
	                  "HAVING count(*) > 2 AND max(x) < 100 OR g = 'z'",
	                  2);
	describe_all(&t,
	             COLS({"g", TEXT, 0}, {"count", INT8, 0}, {MERGE_HIDDEN_ALIAS "1", INT4, 0}));
	ck_assert_str_eq(client_columns(&t), "g:25/-1,count:20/-1");
	ROW(&t, 0, T("a"), T("2"), T("50"));
	ROW(&t, 0, T("b"), T("1"), T("500"));
	ROW(&t, 0, T("z"), T("1"), T("1000"));
	ROW(&t, 1, T("a"), T("1"), T("10"));
	ROW(&t, 1, T("b"), T("5"), T("20"));
	ROW(&t, 1, T("c"), T("3"), NUL);
	done_all(&t);
	/* a: 3 rows, max 50; b: max 500; z: by name; c: max NULL, unknown */
	ck_assert_str_eq(take_rows(&t), "a|3;z|1");
	finish(&t);
}
END_TEST

START_TEST(test_having_exact_and_three_valued)
{
	const char *values[] = {"2.5"};
	merge_t t = start_params("SELECT g FROM t GROUP BY g HAVING sum(x) >= $1", 2, 1, values,
	                         NULL, NULL);
	describe_all(&t, COLS({"g", TEXT, 0}, {MERGE_HIDDEN_ALIAS "1", INT8, 0}));
	ROW(&t, 0, T("a"), T("2"));
	ROW(&t, 1, T("a"), T("1"));
	ROW(&t, 1, T("b"), T("2"));
	ROW(&t, 1, T("c"), NUL);
	done_all(&t);
	ck_assert_str_eq(take_rows(&t), "a"); /* 3 >= 2.5; 2 < 2.5; NULL unknown */
	finish(&t);

	t = start("SELECT g FROM t GROUP BY g HAVING NOT (max(x) > 5) OR max(x) IS NULL", 1);
	describe_all(&t, COLS({"g", TEXT, 0}, {MERGE_HIDDEN_ALIAS "1", FLOAT8, 0}));
	ROW(&t, 0, T("low"), T("1.5"));
	ROW(&t, 0, T("high"), T("NaN"));
	ROW(&t, 0, T("none"), NUL);
	done_all(&t);
	ck_assert_str_eq(take_rows(&t), "low;none");
	finish(&t);
}
END_TEST

START_TEST(test_bool_aggregates)
{
	merge_t t = start("SELECT bool_and(b), bool_or(b), every(b) FROM t", 3);
	describe_all(&t, COLS({"bool_and", BOOL, 0}, {"bool_or", BOOL, 0}, {"every", BOOL, 0}));
	ROW(&t, 0, T("t"), T("f"), T("t"));
	ROW(&t, 1, T("f"), T("t"), T("t"));
	ROW(&t, 2, NUL, NUL, NUL);
	done_all(&t);
	ck_assert_str_eq(take_rows(&t), "f|t|t");
	finish(&t);
}
END_TEST

START_TEST(test_min_max_are_typed)
{
	merge_t t = start("SELECT min(ts), max(ts), min(n), max(n) FROM t", 2);
	describe_all(&t, COLS({"min", TIMESTAMPTZ, 0}, {"max", TIMESTAMPTZ, 0}, {"min", NUMERIC, 0},
	                      {"max", NUMERIC, 0}));
	ROW(&t, 0, T("2024-01-01 10:00:00+02"), T("2024-01-01 10:00:00+02"), T("10"), T("10"));
	ROW(&t, 1, T("2024-01-01 08:30:00+00"), T("2024-01-01 08:30:00+00"), T("9.5"), T("9.5"));
	done_all(&t);
	ck_assert_str_eq(take_rows(&t), "2024-01-01 10:00:00+02|2024-01-01 08:30:00+00|9.5|10");
	finish(&t);
}
END_TEST

/* ---- DISTINCT ---- */

START_TEST(test_distinct_concat_equal_values)
{
	merge_t t = start("SELECT DISTINCT v, f FROM t", 2);
	describe_all(&t, COLS({"v", NUMERIC, 0}, {"f", FLOAT8, 0}));
	ROW(&t, 0, T("1.0"), T("-0"));
	ROW(&t, 0, T("2"), NUL);
	ROW(&t, 1, T("1.00"), T("0"));
	ROW(&t, 1, T("3"), T("0"));
	ROW(&t, 1, T("2"), NUL);
	done_all(&t);
	ck_assert_str_eq(take_rows(&t), "1.0|-0;2|NULL;3|0");
	ck_assert_uint_eq(merger_rows_out(t.m), 3);
	finish(&t);
}
END_TEST

START_TEST(test_distinct_ordered)
{
	merge_t t = start("SELECT DISTINCT a, b FROM t ORDER BY a", 2);
	describe_all(&t, COLS({"a", INT4, 0}, {"b", TEXT, 0}));
	ROW(&t, 0, T("1"), T("x"));
	ROW(&t, 0, T("1"), T("y"));
	ROW(&t, 0, T("2"), T("x"));
	ROW(&t, 1, T("1"), T("x"));
	ROW(&t, 1, T("2"), T("x"));
	ROW(&t, 1, T("2"), T("z"));
	done_all(&t);
	ck_assert_str_eq(take_rows(&t), "1|x;1|y;2|x;2|z");
	finish(&t);
}
END_TEST

START_TEST(test_distinct_on_keeps_first_in_order)
{
	merge_t t = start("SELECT DISTINCT ON (g) g, x FROM t ORDER BY g, x DESC", 2);
	describe_all(&t, COLS({"g", TEXT, 0}, {"x", INT4, 0}));
	ROW(&t, 0, T("a"), T("5"));
	ROW(&t, 0, T("b"), T("1"));
	ROW(&t, 1, T("a"), T("9"));
	ROW(&t, 1, T("c"), T("2"));
	done_all(&t);
	ck_assert_str_eq(take_rows(&t), "a|9;b|1;c|2");
	finish(&t);
}
END_TEST

START_TEST(test_union_removes_duplicates_across_shards)
{
	merge_t t = start("SELECT a FROM t UNION SELECT a FROM u", 2);
	describe_all(&t, COLS({"a", INT4, 0}));
	COLUMN(&t, 0, "1", "2");
	COLUMN(&t, 1, "2", "3");
	done_all(&t);
	ck_assert_str_eq(take_rows(&t), "1;2;3");
	finish(&t);
}
END_TEST

START_TEST(test_distinct_after_aggregation)
{
	merge_t t = start("SELECT DISTINCT count(*) FROM t GROUP BY g", 2);
	describe_all(&t, COLS({"count", INT8, 0}, {MERGE_HIDDEN_ALIAS "1", TEXT, 0}));
	ROW(&t, 0, T("1"), T("a"));
	ROW(&t, 0, T("2"), T("b"));
	ROW(&t, 1, T("1"), T("b"));
	ROW(&t, 1, T("3"), T("c"));
	done_all(&t);
	ck_assert_str_eq(take_rows(&t), "1;3"); /* a 1, b 3, c 3 */
	finish(&t);
}
END_TEST

/* ---- binary format ---- */

START_TEST(test_binary_ints_ordered)
{
	uint8_t r[8][8];
	merge_t t = start("SELECT a, b FROM t ORDER BY a DESC, b", 2);
	describe_all(&t, COLS({"a", INT4, 1}, {"b", INT8, 1}));
	ROW(&t, 0, bin_i32(5, r[0]), bin_i64(1, r[1]));
	ROW(&t, 0, bin_i32(-3, r[2]), bin_i64(7, r[3]));
	ROW(&t, 1, bin_i32(100000, r[4]), bin_i64(2, r[5]));
	ROW(&t, 1, bin_i32(5, r[6]), bin_i64(-4294967296LL, r[7]));
	done_all(&t);
	ck_assert_str_eq(take_rows_as(&t, SHOW_BINARY_INT), "100000|2;5|-4294967296;5|1;-3|7");
	finish(&t);

	/* signed: a negative value of one shard before a positive one of another */
	t = start("SELECT a FROM t ORDER BY a", 2);
	describe_all(&t, COLS({"a", INT4, 1}));
	ROW(&t, 0, bin_i32(-5, r[0]));
	ROW(&t, 0, bin_i32(7, r[1]));
	ROW(&t, 1, bin_i32(-3, r[2]));
	ROW(&t, 1, bin_i32(2, r[3]));
	done_all(&t);
	ck_assert_str_eq(take_rows_as(&t, SHOW_BINARY_INT), "-5;-3;2;7");
	finish(&t);
}
END_TEST

START_TEST(test_binary_float_and_aggregates)
{
	uint8_t r[6][8];
	merge_t t = start("SELECT f FROM t ORDER BY f", 2);
	describe_all(&t, COLS({"f", FLOAT8, 1}));
	ROW(&t, 0, bin_f64(-1.5, r[0]));
	ROW(&t, 0, bin_f64(NAN, r[1]));
	ROW(&t, 1, bin_f64(2.0, r[2]));
	done_all(&t);
	ck_assert_str_eq(take_rows_as(&t, SHOW_BINARY_FLOAT), "-1.5;2;nan");
	finish(&t);

	t = start("SELECT count(*), sum(x) FROM t", 2);
	describe_all(&t, COLS({"count", INT8, 1}, {"sum", INT8, 1}));
	ROW(&t, 0, bin_i64(2, r[0]), bin_i64(-10, r[1]));
	ROW(&t, 1, bin_i64(3, r[2]), bin_i64(4, r[3]));
	done_all(&t);
	ck_assert_str_eq(take_rows_as(&t, SHOW_BINARY_INT), "5|-6");
	finish(&t);
}
END_TEST

START_TEST(test_binary_numeric_order_refused)
{
	char err[256];
	merge_t t = start("SELECT n FROM t ORDER BY n", 2);
	body_t desc = row_description((const col_t[]){{"n", NUMERIC, 1}}, 1);
	ck_assert(!merger_row_description(t.m, 0, desc.data, desc.len, err, sizeof(err)));
	ck_assert_str_eq(err, "ORDER BY a column of type 1700 in binary format over several shards "
	                      "is not supported");
	finish(&t);
}
END_TEST

/* ---- errors ---- */

START_TEST(test_mismatched_row_descriptions)
{
	char err[256];
	merge_t t = start("SELECT a FROM t ORDER BY a", 2);
	body_t int4 = row_description((const col_t[]){{"a", INT4, 0}}, 1);
	body_t int8 = row_description((const col_t[]){{"a", INT8, 0}}, 1);
	ck_assert(merger_row_description(t.m, 0, int4.data, int4.len, err, sizeof(err)));
	ck_assert(!merger_row_description(t.m, 1, int8.data, int8.len, err, sizeof(err)));
	ck_assert_str_eq(err, "the shards disagree on the result: column 1 is type 23 on one shard "
	                      "and 20 on another");
	finish(&t);

	t = start("SELECT a FROM t", 2);
	body_t two = row_description((const col_t[]){{"a", INT4, 0}, {"b", INT4, 0}}, 2);
	ck_assert(merger_row_description(t.m, 0, int4.data, int4.len, err, sizeof(err)));
	ck_assert(!merger_row_description(t.m, 1, two.data, two.len, err, sizeof(err)));
	ck_assert_str_eq(err, "the shards disagree on the result: 1 columns on one shard, 2 on "
	                      "another");
	finish(&t);

	t = start("SELECT a FROM t", 2);
	body_t binary = row_description((const col_t[]){{"a", INT4, 1}}, 1);
	ck_assert(merger_row_description(t.m, 0, int4.data, int4.len, err, sizeof(err)));
	ck_assert(!merger_row_description(t.m, 1, binary.data, binary.len, err, sizeof(err)));
	ck_assert_str_eq(err, "the shards disagree on the result: column 1 is in format 0 on one "
	                      "shard and 1 on another");
	finish(&t);
}
END_TEST

START_TEST(test_malformed_and_early_rows)
{
	char err[256];
	merge_t t = start("SELECT a FROM t", 2);
	body_t row = data_row((const value_t[]){T("1")}, 1);
	ck_assert(!merger_push_row(t.m, 0, row.data, row.len, err, sizeof(err)));
	ck_assert_str_eq(err, "a shard sent a row before its RowDescription");
	finish(&t);

	t = start("SELECT a FROM t", 1);
	describe_all(&t, COLS({"a", INT4, 0}));
	ck_assert(!merger_push_row(t.m, 0, row.data, row.len - 1, err, sizeof(err)));
	ck_assert_str_eq(err, "malformed DataRow from a shard");
	finish(&t);

	t = start("SELECT a FROM t", 1);
	describe_all(&t, COLS({"a", INT4, 0}));
	body_t wide = data_row((const value_t[]){T("1"), T("2")}, 2);
	ck_assert(!merger_push_row(t.m, 0, wide.data, wide.len, err, sizeof(err)));
	ck_assert_str_eq(err, "a shard sent a row of 2 columns, expected 1");
	finish(&t);

	t = start("SELECT a FROM t", 1);
	body_t bad_desc = row_description((const col_t[]){{"a", INT4, 0}}, 1);
	ck_assert(
	    !merger_row_description(t.m, 0, bad_desc.data, bad_desc.len - 3, err, sizeof(err)));
	ck_assert_str_eq(err, "malformed RowDescription from a shard");
	finish(&t);
}
END_TEST

START_TEST(test_unreadable_or_unsupported_sort_values)
{
	char err[256];
	merge_t t = start("SELECT ts FROM t ORDER BY ts", 1);
	describe_all(&t, COLS({"ts", TIMESTAMPTZ, 0}));
	body_t row = data_row((const value_t[]){T("Mon Jan 01 10:00:00 2024 PST")}, 1);
	ck_assert(!merger_push_row(t.m, 0, row.data, row.len, err, sizeof(err)));
	ck_assert_str_eq(err, "cannot compare timestamptz values from the shards: only the ISO "
	                      "DateStyle is supported");
	finish(&t);

	t = start("SELECT j FROM t ORDER BY j", 1);
	body_t desc = row_description((const col_t[]){{"j", JSONB, 0}}, 1);
	ck_assert(!merger_row_description(t.m, 0, desc.data, desc.len, err, sizeof(err)));
	ck_assert_str_eq(err,
	                 "ORDER BY a column of type 3802 over several shards is not supported");
	finish(&t);

	/* a column that is only passed through may be of any type */
	t = start("SELECT j, a FROM t ORDER BY a", 2);
	describe_all(&t, COLS({"j", JSONB, 0}, {"a", INT4, 0}));
	ROW(&t, 0, T("{\"k\": 2}"), T("2"));
	ROW(&t, 1, T("{\"k\": 1}"), T("1"));
	done_all(&t);
	ck_assert_str_eq(take_rows(&t), "{\"k\": 1}|1;{\"k\": 2}|2");
	finish(&t);
}
END_TEST

START_TEST(test_free_with_rows_still_held)
{
	/* everything held is freed (LeakSanitizer checks under ASan) */
	merge_t t = start("SELECT a FROM t ORDER BY a", 2);
	describe_all(&t, COLS({"a", INT4, 0}));
	COLUMN(&t, 0, "1", "2", "3");
	finish(&t);

	t = start("SELECT g, avg(x) FROM t GROUP BY g", 1);
	describe_all(&t,
	             COLS({"g", TEXT, 0}, {"avg", NUMERIC, 0}, {MERGE_HIDDEN_ALIAS "1", INT8, 0}));
	ROW(&t, 0, T("a"), T("1.5"), T("1"));
	finish(&t);
	merger_free(NULL);
}
END_TEST

static Suite *merge_suite(void)
{
	Suite *s = suite_create("merge");
	TCase *tc = tcase_create("plan");
	tcase_add_loop_test(tc, test_plan_table, 0,
	                    (int)(sizeof(plan_cases) / sizeof(plan_cases[0])));
	tcase_add_loop_test(tc, test_refusal_table, 0,
	                    (int)(sizeof(refusal_cases) / sizeof(refusal_cases[0])));
	tcase_add_test(tc, test_plan_tables_are_large_enough);
	tcase_add_test(tc, test_plan_shard_formats);
	tcase_add_test(tc, test_plan_error_buffer_untouched_on_success);
	suite_add_tcase(s, tc);

	tc = tcase_create("order");
	tcase_add_test(tc, test_order_int8_asc);
	tcase_add_test(tc, test_order_two_keys_mixed_directions);
	tcase_add_test(tc, test_order_numeric_scales_and_specials);
	tcase_add_test(tc, test_order_float_nan_infinity_desc);
	tcase_add_test(tc, test_order_text_c_collation);
	tcase_add_test(tc, test_order_timestamptz_offsets_are_instants);
	tcase_add_test(tc, test_order_date_bc_and_infinity_desc);
	tcase_add_test(tc, test_order_timestamp_without_zone);
	tcase_add_test(tc, test_order_uuid_and_bool);
	tcase_add_test(tc, test_order_bpchar_ignores_padding);
	tcase_add_test(tc, test_nulls_first_and_last);
	tcase_add_test(tc, test_hidden_sort_column_is_stripped);
	tcase_add_test(tc, test_star_target_counted_from_end);
	suite_add_tcase(s, tc);

	tc = tcase_create("limit");
	tcase_add_test(tc, test_limit_offset_ordered);
	tcase_add_test(tc, test_limit_offset_concat_counts_at_push);
	tcase_add_test(tc, test_limit_zero_is_reached_at_once);
	tcase_add_test(tc, test_limit_offset_text_params);
	tcase_add_test(tc, test_limit_offset_binary_and_null_params);
	tcase_add_test(tc, test_limit_param_errors);
	tcase_add_test(tc, test_fetch_first_with_ties);
	suite_add_tcase(s, tc);

	tc = tcase_create("streaming");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_ordered_waits_for_every_unfinished_source);
	tcase_add_test(tc, test_ordered_streams_with_bounded_buffers);
	tcase_add_test(tc, test_concat_rows_flow_immediately);
	suite_add_tcase(s, tc);

	tc = tcase_create("aggregate");
	tcase_add_test(tc, test_aggregates_without_group_by);
	tcase_add_loop_test(tc, test_avg_matches_postgresql_text, 0,
	                    (int)(sizeof(avg_cases) / sizeof(avg_cases[0])));
	tcase_add_loop_test(tc, test_sum_exact, 0, (int)(sizeof(sum_cases) / sizeof(sum_cases[0])));
	tcase_add_test(tc, test_sum_bigint_overflow_is_an_error);
	tcase_add_test(tc, test_group_by_merges_equal_keys);
	tcase_add_test(tc, test_group_by_hidden_key_order_limit);
	tcase_add_test(tc, test_group_by_without_rows_gives_no_rows);
	tcase_add_test(tc, test_having_and_or);
	tcase_add_test(tc, test_having_exact_and_three_valued);
	tcase_add_test(tc, test_bool_aggregates);
	tcase_add_test(tc, test_min_max_are_typed);
	suite_add_tcase(s, tc);

	tc = tcase_create("distinct");
	tcase_add_test(tc, test_distinct_concat_equal_values);
	tcase_add_test(tc, test_distinct_ordered);
	tcase_add_test(tc, test_distinct_on_keeps_first_in_order);
	tcase_add_test(tc, test_union_removes_duplicates_across_shards);
	tcase_add_test(tc, test_distinct_after_aggregation);
	suite_add_tcase(s, tc);

	tc = tcase_create("binary_and_errors");
	tcase_add_test(tc, test_binary_ints_ordered);
	tcase_add_test(tc, test_binary_float_and_aggregates);
	tcase_add_test(tc, test_binary_numeric_order_refused);
	tcase_add_test(tc, test_mismatched_row_descriptions);
	tcase_add_test(tc, test_malformed_and_early_rows);
	tcase_add_test(tc, test_unreadable_or_unsupported_sort_values);
	tcase_add_test(tc, test_free_with_rows_still_held);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(merge_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
