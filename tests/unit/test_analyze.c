/*
 * test_analyze.c - Check suite for src/analyze/ (statement analysis and its cache).
 *
 * The classification table states, for each statement, the kind analyze.c
 * must give and whether analyze_is_read() must allow a replica with the
 * configuration's default write list and read_only_functions = my_ro_func,
 * app.safe_fn. Kinds follow PostgreSQL's own verdicts: what a hot standby
 * refuses ("cannot execute ... in a read-only transaction") is never a read.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analyze/analyze.h"

static const char *const default_writes[] = {
    "nextval",
    "setval",
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_advisory_xact_lock",
    "pg_advisory_xact_lock_shared",
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
    "pg_try_advisory_xact_lock",
    "pg_try_advisory_xact_lock_shared",
    "pg_advisory_unlock",
    "pg_advisory_unlock_shared",
    "pg_advisory_unlock_all",
    "lo_create",
    "lo_creat",
    "lo_import",
    "lo_unlink",
    "lo_put",
    "lo_from_bytea",
    "lowrite",
    "lo_truncate",
    "set_config",
    "txid_current",
    "pg_current_xact_id",
    "pg_notify",
};
static const char *const configured_read_only[] = {"my_ro_func", "app.safe_fn"};

#define N_WRITES    ((int)(sizeof(default_writes) / sizeof(default_writes[0])))
#define N_READ_ONLY ((int)(sizeof(configured_read_only) / sizeof(configured_read_only[0])))

static func_class_t config_classify(const char *schema, const char *name, void *arg)
{
	(void)arg;
	return analyze_default_function_class(schema, name, configured_read_only, N_READ_ONLY,
	                                      default_writes, N_WRITES);
}

static func_class_t writes_only_classify(const char *schema, const char *name, void *arg)
{
	(void)arg;
	return analyze_default_function_class(schema, name, NULL, 0, default_writes, N_WRITES);
}

static analysis_t *analyze_or_fail(const char *sql)
{
	analysis_t *a = NULL;
	ck_assert_msg(analyze_statement(sql, strlen(sql), &a), "out of memory analysing %s", sql);
	ck_assert_ptr_nonnull(a);
	return a;
}

#define K_READ  ANALYZE_KIND_READ
#define K_WRITE ANALYZE_KIND_WRITE
#define K_TXN   ANALYZE_KIND_TRANSACTION
#define K_SESS  ANALYZE_KIND_SESSION
#define K_UTIL  ANALYZE_KIND_UTILITY
#define K_EMPTY ANALYZE_KIND_EMPTY

static const struct {
	const char *sql;
	analyze_kind_t kind;
	bool read; /* analyze_is_read with config_classify */
} cases[] = {
    /* plain reads */
    {"SELECT 1", K_READ, true},
    {"select abalance from pgbench_accounts where aid = $1", K_READ, true},
    {"SELECT * FROM t WHERE id = $1 AND name = $2", K_READ, true},
    {"VALUES (1, 'a'), (2, 'b')", K_READ, true},
    {"TABLE accounts", K_READ, true},
    {"(SELECT 1)", K_READ, true},
    {"((SELECT a FROM t) UNION (SELECT b FROM u)) ORDER BY 1", K_READ, true},
    {"SELECT a FROM t UNION ALL SELECT a FROM u", K_READ, true},
    {"SELECT a FROM t INTERSECT SELECT a FROM u EXCEPT SELECT a FROM v", K_READ, true},
    {"SELECT * FROM t JOIN u USING (id) LEFT JOIN v ON v.id = t.id", K_READ, true},
    {"WITH x AS (SELECT * FROM t) SELECT * FROM x", K_READ, true},
    {"WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) "
     "SELECT * FROM r",
     K_READ, true},
    {"SELECT * FROM t WHERE id IN (SELECT id FROM u)", K_READ, true},
    {"SELECT EXISTS (SELECT 1 FROM t)", K_READ, true},
    {"SELECT * FROM LATERAL (SELECT 1) s", K_READ, true},
    {"SELECT count(*), sum(x), avg(x), min(x), max(x) FROM t GROUP BY y HAVING count(*) > 1",
     K_READ, true},
    {"SELECT now(), current_timestamp, random(), version()", K_READ, true},
    {"SELECT lower(name), upper(name), length(name), substr(name, 1, 2) FROM t", K_READ, true},
    {"SELECT coalesce(a, b), nullif(a, 0), greatest(a, b), least(a, b) FROM t", K_READ, true},
    {"SELECT extract(year FROM now()), date_trunc('day', now()), to_char(now(), 'YYYY')", K_READ,
     true},
    {"SELECT substring('abc' from 2), trim(' x '), 'x' AT TIME ZONE 'utc'", K_READ, true},
    {"SELECT jsonb_build_object('a', 1), json_agg(t), jsonb_agg(t) FROM t", K_READ, true},
    {"SELECT array_agg(x), string_agg(y, ',') FROM t", K_READ, true},
    {"SELECT * FROM generate_series(1, 10)", K_READ, true},
    {"SELECT pg_sleep(0.1)", K_READ, true},
    {"SELECT pg_is_in_recovery(), inet_server_port(), current_setting('work_mem')", K_READ, true},
    {"SELECT md5('x'), abs(-1), round(1.5)", K_READ, true},
    {"SELECT pg_catalog.now()", K_READ, true},
    {"SELECT row_number() OVER (PARTITION BY a ORDER BY b) FROM t", K_READ, true},
    {"SELECT CASE WHEN a > 1 THEN 'x' ELSE 'y' END FROM t", K_READ, true},
    {"SELECT $1::int + $2", K_READ, true},
    {"SELECT * FROM t WHERE name LIKE 'a%' ORDER BY id LIMIT 10 OFFSET 5", K_READ, true},
    {"SELECT 'shardgate; DELETE FROM t' AS s", K_READ, true},
    /* locking clauses, at every depth */
    {"SELECT * FROM t FOR UPDATE", K_WRITE, false},
    {"SELECT * FROM t FOR NO KEY UPDATE", K_WRITE, false},
    {"SELECT * FROM t FOR SHARE", K_WRITE, false},
    {"SELECT * FROM t FOR KEY SHARE", K_WRITE, false},
    {"SELECT * FROM t FOR UPDATE NOWAIT", K_WRITE, false},
    {"SELECT * FROM t FOR UPDATE SKIP LOCKED", K_WRITE, false},
    {"SELECT * FROM t FOR UPDATE OF t", K_WRITE, false},
    {"SELECT * FROM jobs WHERE id = $1 FOR NO KEY UPDATE", K_WRITE, false},
    {"SELECT * FROM (SELECT * FROM t FOR UPDATE) s", K_WRITE, false},
    {"SELECT * FROM (SELECT * FROM t FOR NO KEY UPDATE) s", K_WRITE, false},
    {"SELECT * FROM (SELECT * FROM t FOR SHARE) s", K_WRITE, false},
    {"SELECT * FROM (SELECT * FROM t FOR KEY SHARE) s", K_WRITE, false},
    {"SELECT * FROM u WHERE id IN (SELECT id FROM t FOR UPDATE)", K_WRITE, false},
    {"SELECT (SELECT a FROM t LIMIT 1 FOR SHARE)", K_WRITE, false},
    {"WITH x AS (SELECT * FROM t FOR UPDATE) SELECT * FROM x", K_WRITE, false},
    {"WITH x AS (SELECT * FROM t FOR NO KEY UPDATE) SELECT * FROM x", K_WRITE, false},
    {"WITH x AS (SELECT * FROM t FOR SHARE) SELECT * FROM x", K_WRITE, false},
    {"WITH x AS (SELECT * FROM t FOR KEY SHARE) SELECT * FROM x", K_WRITE, false},
    {"SELECT 1 UNION ALL (SELECT a FROM t FOR UPDATE)", K_WRITE, false},
    {"SELECT 1 UNION ALL (SELECT a FROM t FOR NO KEY UPDATE)", K_WRITE, false},
    {"(SELECT a FROM t FOR SHARE) UNION SELECT 2", K_WRITE, false},
    {"SELECT 1 UNION (SELECT a FROM t FOR KEY SHARE)", K_WRITE, false},
    {"WITH a AS (WITH b AS (SELECT * FROM t FOR UPDATE) SELECT * FROM b) SELECT * FROM a", K_WRITE,
     false},
    /* SELECT INTO */
    {"SELECT * INTO newtable FROM t", K_WRITE, false},
    {"SELECT a, b INTO TABLE archive FROM t WHERE a > 1", K_WRITE, false},
    {"SELECT * INTO TEMP scratch FROM t", K_SESS, false},
    /* data-modifying CTEs, nested */
    {"WITH x AS (UPDATE t SET a = 1 RETURNING *) SELECT * FROM x", K_WRITE, false},
    {"WITH x AS (INSERT INTO t VALUES (1) RETURNING id) SELECT id FROM x", K_WRITE, false},
    {"WITH x AS (DELETE FROM t WHERE a = 1 RETURNING *) SELECT count(*) FROM x", K_WRITE, false},
    {"WITH a AS (WITH b AS (DELETE FROM t RETURNING *) SELECT * FROM b) SELECT * FROM a", K_WRITE,
     false},
    {"WITH a AS (SELECT * FROM (WITH b AS (UPDATE t SET x = 1 RETURNING *) SELECT * FROM b) s) "
     "SELECT * FROM a",
     K_WRITE, false},
    {"SELECT * FROM u WHERE id IN (WITH d AS (DELETE FROM t RETURNING id) SELECT id FROM d)",
     K_WRITE, false},
    {"WITH moved AS (DELETE FROM queue WHERE id = 1 RETURNING *) INSERT INTO done SELECT * "
     "FROM moved",
     K_WRITE, false},
    /* writing functions (default write list) */
    {"SELECT nextval('s')", K_READ, false},
    {"SELECT setval('s', 10)", K_READ, false},
    {"SELECT pg_advisory_lock(1)", K_READ, false},
    {"SELECT pg_advisory_lock_shared(1)", K_READ, false},
    {"SELECT pg_try_advisory_lock(1)", K_READ, false},
    {"SELECT pg_advisory_xact_lock(1)", K_READ, false},
    {"SELECT pg_try_advisory_xact_lock_shared(1)", K_READ, false},
    {"SELECT pg_advisory_unlock(1)", K_READ, false},
    {"SELECT pg_advisory_unlock_all()", K_READ, false},
    {"SELECT lo_create(0)", K_READ, false},
    {"SELECT lo_creat(-1)", K_READ, false},
    {"SELECT lo_import('/tmp/x')", K_READ, false},
    {"SELECT lo_unlink(1234)", K_READ, false},
    {"SELECT lo_put(1234, 0, 'x')", K_READ, false},
    {"SELECT lo_from_bytea(0, 'x')", K_READ, false},
    {"SELECT lowrite(0, 'x')", K_READ, false},
    {"SELECT lo_truncate(0, 1)", K_READ, false},
    {"SELECT set_config('a.b', 'c', false)", K_READ, false},
    {"SELECT txid_current()", K_READ, false},
    {"SELECT pg_current_xact_id()", K_READ, false},
    {"SELECT pg_notify('ch', 'x')", K_READ, false},
    {"SELECT pg_catalog.nextval('s')", K_READ, false},
    {"SELECT id, nextval('s') FROM t WHERE id IN (SELECT id FROM u)", K_READ, false},
    {"SELECT * FROM t WHERE a = (SELECT max(b) FROM u WHERE c = setval('s', 1))", K_READ, false},
    {"SELECT my_user_func(1)", K_READ, false},
    {"SELECT my_ro_func(1)", K_READ, true},
    {"SELECT app.safe_fn()", K_READ, true},
    {"SELECT other.safe_fn()", K_READ, false},
    {"SELECT app.my_ro_func()", K_READ, true},
    {"SELECT public.now()", K_READ, false},
    {"SELECT * FROM my_set_returning_func()", K_READ, false},
    /* SHOW, EXPLAIN */
    {"SHOW work_mem", K_READ, true},
    {"SHOW ALL", K_READ, true},
    {"SHOW TRANSACTION ISOLATION LEVEL", K_READ, true},
    {"EXPLAIN SELECT * FROM t", K_READ, true},
    {"EXPLAIN (COSTS OFF) SELECT * FROM t", K_READ, true},
    {"EXPLAIN ANALYZE SELECT * FROM t", K_READ, true},
    {"EXPLAIN (ANALYZE, BUFFERS) SELECT * FROM t", K_READ, true},
    {"EXPLAIN UPDATE t SET a = 1", K_WRITE, false},
    {"EXPLAIN ANALYZE DELETE FROM t", K_WRITE, false},
    {"EXPLAIN ANALYZE SELECT * FROM t FOR UPDATE", K_WRITE, false},
    {"EXPLAIN SELECT nextval('s')", K_READ, false},
    {"EXPLAIN ANALYZE WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x", K_WRITE, false},
    {"EXPLAIN CREATE TABLE x AS SELECT 1", K_WRITE, false},
    /* COPY */
    {"COPY t TO STDOUT", K_READ, true},
    {"COPY t (a, b) TO STDOUT WITH (FORMAT csv)", K_READ, true},
    {"COPY (SELECT * FROM t WHERE a > 1) TO STDOUT", K_READ, true},
    {"COPY (SELECT nextval('s')) TO STDOUT", K_READ, false},
    {"COPY (DELETE FROM t RETURNING *) TO STDOUT", K_WRITE, false},
    {"COPY (UPDATE t SET a = 1 RETURNING *) TO STDOUT", K_WRITE, false},
    {"COPY (SELECT * FROM t FOR UPDATE) TO STDOUT", K_WRITE, false},
    {"COPY t FROM STDIN", K_WRITE, false},
    {"COPY t FROM STDIN WITH (FORMAT csv)", K_WRITE, false},
    {"COPY t TO '/tmp/t.csv'", K_WRITE, false},
    /* DML, DDL and other writes */
    {"INSERT INTO t VALUES (1)", K_WRITE, false},
    {"INSERT INTO t (a) SELECT a FROM u ON CONFLICT DO NOTHING", K_WRITE, false},
    {"UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2", K_WRITE, false},
    {"DELETE FROM t WHERE id = 1", K_WRITE, false},
    {"MERGE INTO t USING u ON t.id = u.id WHEN MATCHED THEN UPDATE SET a = u.a", K_WRITE, false},
    {"CREATE TABLE n (id int)", K_WRITE, false},
    {"CREATE TABLE n AS SELECT * FROM t", K_WRITE, false},
    {"ALTER TABLE t ADD COLUMN c int", K_WRITE, false},
    {"DROP TABLE t", K_WRITE, false},
    {"CREATE INDEX ON t (a)", K_WRITE, false},
    {"TRUNCATE t, u", K_WRITE, false},
    {"CALL my_proc(1)", K_WRITE, false},
    {"DO $$ BEGIN PERFORM 1; END $$", K_WRITE, false},
    {"LOCK TABLE t IN ACCESS EXCLUSIVE MODE", K_WRITE, false},
    {"VACUUM t", K_WRITE, false},
    {"ANALYZE t", K_WRITE, false},
    {"GRANT SELECT ON t TO bob", K_WRITE, false},
    {"REFRESH MATERIALIZED VIEW mv", K_WRITE, false},
    {"CHECKPOINT", K_WRITE, false},
    {"CREATE VIEW v AS SELECT 1", K_WRITE, false},
    {"DECLARE c CURSOR FOR SELECT * FROM t FOR UPDATE", K_WRITE, false},
    /* transaction control */
    {"BEGIN", K_TXN, false},
    {"BEGIN READ ONLY", K_TXN, false},
    {"START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ WRITE", K_TXN, false},
    {"COMMIT", K_TXN, false},
    {"END", K_TXN, false},
    {"ROLLBACK", K_TXN, false},
    {"ABORT", K_TXN, false},
    {"SAVEPOINT sp1", K_TXN, false},
    {"RELEASE SAVEPOINT sp1", K_TXN, false},
    {"ROLLBACK TO SAVEPOINT sp1", K_TXN, false},
    {"PREPARE TRANSACTION 'g1'", K_TXN, false},
    {"COMMIT PREPARED 'g1'", K_TXN, false},
    {"ROLLBACK PREPARED 'g1'", K_TXN, false},
    {"SET TRANSACTION READ ONLY", K_TXN, false},
    /* session state */
    {"SET search_path = app, public", K_SESS, false},
    {"SET statement_timeout TO 1000", K_SESS, false},
    {"SET SESSION work_mem = '64MB'", K_SESS, false},
    {"RESET work_mem", K_SESS, false},
    {"RESET ALL", K_SESS, false},
    {"SET ROLE admin", K_SESS, false},
    {"SET SESSION AUTHORIZATION bob", K_SESS, false},
    {"SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", K_SESS, false},
    {"SET LOCAL work_mem = '64MB'", K_UTIL, false},
    {"SET CONSTRAINTS ALL DEFERRED", K_UTIL, false},
    {"PREPARE q (int) AS SELECT * FROM t WHERE id = $1", K_SESS, false},
    {"EXECUTE q (1)", K_SESS, false},
    {"DEALLOCATE q", K_SESS, false},
    {"DEALLOCATE ALL", K_SESS, false},
    {"LISTEN ch", K_SESS, false},
    {"UNLISTEN *", K_SESS, false},
    {"NOTIFY ch, 'payload'", K_SESS, false},
    {"DISCARD ALL", K_SESS, false},
    {"CREATE TEMP TABLE tt (id int)", K_SESS, false},
    {"CREATE TEMPORARY TABLE tt AS SELECT 1", K_SESS, false},
    {"CREATE TEMP SEQUENCE ts", K_SESS, false},
    {"DECLARE c CURSOR WITH HOLD FOR SELECT * FROM t", K_SESS, false},
    {"DECLARE c CURSOR FOR SELECT * FROM t", K_READ, true},
    {"FETCH 10 FROM c", K_SESS, false},
    {"CLOSE c", K_SESS, false},
    {"LOAD 'auto_explain'", K_SESS, false},
    /* multi-statement strings */
    {"SELECT 1; SELECT 2", K_READ, true},
    {"select 1; update t set a = 1", K_WRITE, false},
    {"SELECT 1; SELECT nextval('s')", K_READ, false},
    {"BEGIN; SELECT 1; COMMIT", K_TXN, false},
    {"SET x.y = 1; SELECT 1", K_SESS, false},
    {"BEGIN; UPDATE t SET a = 1; COMMIT", K_WRITE, false},
    /* comments */
    {"/* ordinary comment */ SELECT 1", K_READ, true},
    {"-- leading line comment\nSELECT * FROM t", K_READ, true},
    {"/* a /* nested */ comment */ UPDATE t SET a = 1", K_WRITE, false},
    {"/* shardgate: primary */ SELECT 1", K_READ, true},
    {"SELECT 1 -- trailing", K_READ, true},
    /* odd and invalid input */
    {"", K_EMPTY, false},
    {"   \n\t  ", K_EMPTY, false},
    {"/* only a comment */", K_EMPTY, false},
    {";", K_EMPTY, false},
    {"SELEC 1", K_WRITE, false},
    {"SELECT * FROM", K_WRITE, false},
    {"SELECT 'unterminated", K_WRITE, false},
    {"garbage ~~~ !!!", K_WRITE, false},
};

START_TEST(test_classification_table)
{
	const char *sql = cases[_i].sql;
	analysis_t *a = analyze_or_fail(sql);
	ck_assert_msg(a->kind == cases[_i].kind, "\"%s\": expected kind %s, got %s", sql,
	              analyze_kind_name(cases[_i].kind), analyze_kind_name(a->kind));
	bool read = analyze_is_read(a, config_classify, NULL);
	ck_assert_msg(read == cases[_i].read, "\"%s\": expected is_read %d, got %d", sql,
	              cases[_i].read, read);
	/* A read is never a statement that needs the primary, and the reverse. */
	if (read)
		ck_assert_msg(!a->needs_primary, "\"%s\": read but needs_primary", sql);
	if (a->kind == ANALYZE_KIND_WRITE)
		ck_assert_msg(a->needs_primary, "\"%s\": write without needs_primary", sql);
	analyze_release(a);
}
END_TEST

START_TEST(test_table_has_enough_cases)
{
	size_t n = sizeof(cases) / sizeof(cases[0]);
	ck_assert_msg(n >= 120, "expected at least 120 classified statements, got %zu", n);
}
END_TEST

/* ---- details ---- */

static const analyze_table_t *find_table(const analysis_t *a, const char *schema, const char *name)
{
	for (int i = 0; i < a->n_tables; i++) {
		const analyze_table_t *t = &a->tables[i];
		if (strcmp(t->name, name) != 0)
			continue;
		if ((schema == NULL) != (t->schema == NULL))
			continue;
		if (schema && strcmp(schema, t->schema) != 0)
			continue;
		return t;
	}
	return NULL;
}

static bool has_function(const analysis_t *a, const char *schema, const char *name)
{
	for (int i = 0; i < a->n_functions; i++) {
		const analyze_function_t *f = &a->functions[i];
		if (strcmp(f->name, name) == 0 &&
		    ((!schema && !f->schema) ||
		     (schema && f->schema && !strcmp(schema, f->schema))))
			return true;
	}
	return false;
}

START_TEST(test_tables_read_and_written)
{
	analysis_t *a = analyze_or_fail("INSERT INTO app.orders (id) SELECT id FROM public.carts c "
	                                "JOIN items i ON i.cart = c.id");
	ck_assert_int_eq(a->n_tables, 3);
	const analyze_table_t *t = find_table(a, "app", "orders");
	ck_assert_ptr_nonnull(t);
	ck_assert(t->written);
	t = find_table(a, "public", "carts");
	ck_assert_ptr_nonnull(t);
	ck_assert(!t->written);
	t = find_table(a, NULL, "items");
	ck_assert_ptr_nonnull(t);
	ck_assert(!t->written);
	analyze_release(a);

	a = analyze_or_fail("UPDATE t SET a = (SELECT max(a) FROM t)");
	ck_assert_int_eq(a->n_tables, 1); /* one entry, written wins */
	ck_assert(a->tables[0].written);
	analyze_release(a);

	a = analyze_or_fail("TRUNCATE a, s.b");
	ck_assert(find_table(a, NULL, "a")->written);
	ck_assert(find_table(a, "s", "b")->written);
	analyze_release(a);

	a = analyze_or_fail("COPY t FROM STDIN");
	ck_assert(find_table(a, NULL, "t")->written);
	analyze_release(a);

	a = analyze_or_fail("COPY t TO STDOUT");
	ck_assert(!find_table(a, NULL, "t")->written);
	analyze_release(a);

	a = analyze_or_fail("MERGE INTO t USING u ON t.id = u.id WHEN MATCHED THEN DELETE");
	ck_assert(find_table(a, NULL, "t")->written);
	ck_assert(!find_table(a, NULL, "u")->written);
	analyze_release(a);

	a = analyze_or_fail("WITH d AS (DELETE FROM q RETURNING *) SELECT * FROM d JOIN r ON true");
	ck_assert(a->has_modifying_cte);
	ck_assert(find_table(a, NULL, "q")->written);
	ck_assert(find_table(a, NULL, "d")->cte_name);
	ck_assert(!find_table(a, NULL, "r")->cte_name);
	analyze_release(a);
}
END_TEST

START_TEST(test_functions_collected)
{
	analysis_t *a = analyze_or_fail("SELECT now(), s.f(x), lower(y), now() FROM t WHERE "
	                                "z IN (SELECT g(1)) AND pg_catalog.upper(w) = 'A'");
	ck_assert_int_eq(a->n_functions, 5); /* now() once */
	ck_assert(has_function(a, NULL, "now"));
	ck_assert(has_function(a, "s", "f"));
	ck_assert(has_function(a, NULL, "lower"));
	ck_assert(has_function(a, NULL, "g"));
	ck_assert(has_function(a, "pg_catalog", "upper"));
	analyze_release(a);

	a = analyze_or_fail("SELECT \"MixedCase\"(1), UPPERCASE(2)");
	ck_assert(has_function(a, NULL, "MixedCase"));
	ck_assert(has_function(a, NULL, "uppercase"));
	analyze_release(a);
}
END_TEST

START_TEST(test_unknown_function_is_write_until_listed)
{
	analysis_t *a = analyze_or_fail("SELECT my_ro_func(id) FROM t");
	ck_assert(a->kind == ANALYZE_KIND_READ);
	ck_assert(!analyze_is_read(a, writes_only_classify, NULL));
	ck_assert(analyze_is_read(a, config_classify, NULL));
	ck_assert(!analyze_is_read(a, NULL, NULL)); /* no lists: unknown */
	analyze_release(a);
}
END_TEST

START_TEST(test_default_function_class)
{
	const char *ro[] = {"f", "s.g"};
	const char *w[] = {"nextval", "s.h"};
	ck_assert_int_eq(analyze_default_function_class(NULL, "nextval", ro, 2, w, 2), FUNC_WRITES);
	ck_assert_int_eq(analyze_default_function_class("pg_catalog", "nextval", ro, 2, w, 2),
	                 FUNC_WRITES);
	ck_assert_int_eq(analyze_default_function_class(NULL, "NEXTVAL", ro, 2, w, 2), FUNC_WRITES);
	ck_assert_int_eq(analyze_default_function_class(NULL, "h", ro, 2, w, 2), FUNC_WRITES);
	ck_assert_int_eq(analyze_default_function_class("s", "h", ro, 2, w, 2), FUNC_WRITES);
	ck_assert_int_eq(analyze_default_function_class("t", "h", ro, 2, w, 2), FUNC_UNKNOWN);
	ck_assert_int_eq(analyze_default_function_class("x", "f", ro, 2, w, 2), FUNC_READ_ONLY);
	ck_assert_int_eq(analyze_default_function_class("s", "g", ro, 2, w, 2), FUNC_READ_ONLY);
	ck_assert_int_eq(analyze_default_function_class(NULL, "g", ro, 2, w, 2), FUNC_UNKNOWN);
	ck_assert_int_eq(analyze_default_function_class(NULL, "count", NULL, 0, NULL, 0),
	                 FUNC_READ_ONLY);
	ck_assert_int_eq(
	    analyze_default_function_class("pg_catalog", "jsonb_set", NULL, 0, NULL, 0),
	    FUNC_READ_ONLY);
	ck_assert_int_eq(analyze_default_function_class("public", "count", NULL, 0, NULL, 0),
	                 FUNC_UNKNOWN);
	ck_assert_int_eq(analyze_default_function_class(NULL, "nextval", NULL, 0, NULL, 0),
	                 FUNC_UNKNOWN);
	ck_assert_int_eq(analyze_default_function_class(NULL, "zzz_not_builtin", NULL, 0, NULL, 0),
	                 FUNC_UNKNOWN);
	/* the first and last built-ins are found: the list is sorted */
	ck_assert_int_eq(analyze_default_function_class(NULL, "abbrev", NULL, 0, NULL, 0),
	                 FUNC_READ_ONLY);
	ck_assert_int_eq(analyze_default_function_class(NULL, "xmlagg", NULL, 0, NULL, 0),
	                 FUNC_READ_ONLY);
	ck_assert_str_eq(func_class_name(FUNC_WRITES), "writes");
}
END_TEST

START_TEST(test_session_advisory_locks_flagged)
{
	analysis_t *a = analyze_or_fail("SELECT pg_advisory_lock(42)");
	ck_assert(a->takes_session_lock);
	analyze_release(a);
	a = analyze_or_fail("SELECT pg_try_advisory_lock_shared(1, 2)");
	ck_assert(a->takes_session_lock);
	analyze_release(a);
	a = analyze_or_fail("SELECT pg_catalog.pg_advisory_lock(1)");
	ck_assert(a->takes_session_lock);
	analyze_release(a);
	a = analyze_or_fail("SELECT pg_advisory_xact_lock(42)");
	ck_assert(!a->takes_session_lock);
	analyze_release(a);
	a = analyze_or_fail("SELECT pg_advisory_unlock_all()");
	ck_assert(!a->takes_session_lock);
	ck_assert(a->releases_session_lock);
	analyze_release(a);
	a = analyze_or_fail("SELECT myschema.pg_advisory_lock(1)");
	ck_assert(!a->takes_session_lock);
	analyze_release(a);
}
END_TEST

START_TEST(test_flags)
{
	analysis_t *a = analyze_or_fail("SELECT * FROM (SELECT * FROM t FOR KEY SHARE) s");
	ck_assert(a->has_locking_clause);
	analyze_release(a);
	a = analyze_or_fail("SELECT * INTO x FROM t");
	ck_assert(a->has_select_into);
	ck_assert(find_table(a, NULL, "x")->written);
	ck_assert(!find_table(a, NULL, "t")->written);
	analyze_release(a);
	a = analyze_or_fail("EXPLAIN ANALYZE SELECT 1");
	ck_assert(a->explain_analyze);
	analyze_release(a);
	a = analyze_or_fail("EXPLAIN (ANALYZE false) SELECT 1");
	ck_assert(!a->explain_analyze);
	analyze_release(a);
	a = analyze_or_fail("EXPLAIN SELECT 1");
	ck_assert(!a->explain_analyze);
	analyze_release(a);
	a = analyze_or_fail("INSERT INTO t VALUES (1)");
	ck_assert(!a->has_modifying_cte);
	analyze_release(a);
}
END_TEST

START_TEST(test_transaction_details)
{
	analysis_t *a =
	    analyze_or_fail("BEGIN ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE");
	ck_assert_int_eq(a->n_statements, 1);
	const analyze_txn_t *txn = &a->statements[0].txn;
	ck_assert_int_eq(txn->op, ANALYZE_TXN_BEGIN);
	ck_assert_int_eq(txn->access, ANALYZE_ACCESS_READ_ONLY);
	ck_assert_int_eq(txn->isolation, ANALYZE_ISOLATION_SERIALIZABLE);
	ck_assert(txn->deferrable);
	ck_assert(!a->needs_primary);
	analyze_release(a);

	a = analyze_or_fail("START TRANSACTION READ WRITE, ISOLATION LEVEL READ COMMITTED");
	txn = &a->statements[0].txn;
	ck_assert_int_eq(txn->op, ANALYZE_TXN_BEGIN);
	ck_assert_int_eq(txn->access, ANALYZE_ACCESS_READ_WRITE);
	ck_assert_int_eq(txn->isolation, ANALYZE_ISOLATION_READ_COMMITTED);
	analyze_release(a);

	a = analyze_or_fail("BEGIN");
	txn = &a->statements[0].txn;
	ck_assert_int_eq(txn->access, ANALYZE_ACCESS_DEFAULT);
	ck_assert_int_eq(txn->isolation, ANALYZE_ISOLATION_DEFAULT);
	analyze_release(a);

	a = analyze_or_fail("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY");
	txn = &a->statements[0].txn;
	ck_assert_int_eq(txn->op, ANALYZE_TXN_SET_TRANSACTION);
	ck_assert_int_eq(txn->access, ANALYZE_ACCESS_READ_ONLY);
	ck_assert_int_eq(txn->isolation, ANALYZE_ISOLATION_REPEATABLE_READ);
	analyze_release(a);

	a = analyze_or_fail("COMMIT AND CHAIN");
	ck_assert_int_eq(a->statements[0].txn.op, ANALYZE_TXN_COMMIT);
	ck_assert(a->statements[0].txn.chain);
	analyze_release(a);

	a = analyze_or_fail("ROLLBACK TO SAVEPOINT before_update");
	ck_assert_int_eq(a->statements[0].txn.op, ANALYZE_TXN_ROLLBACK_TO);
	ck_assert_str_eq(a->statements[0].txn.name, "before_update");
	analyze_release(a);

	a = analyze_or_fail("RELEASE sp");
	ck_assert_int_eq(a->statements[0].txn.op, ANALYZE_TXN_RELEASE);
	ck_assert_str_eq(a->statements[0].txn.name, "sp");
	analyze_release(a);

	a = analyze_or_fail("PREPARE TRANSACTION 'gid-1'");
	ck_assert_int_eq(a->statements[0].txn.op, ANALYZE_TXN_PREPARE);
	ck_assert_str_eq(a->statements[0].txn.name, "gid-1");
	ck_assert(a->needs_primary);
	analyze_release(a);

	a = analyze_or_fail("COMMIT PREPARED 'gid-1'");
	ck_assert_int_eq(a->statements[0].txn.op, ANALYZE_TXN_COMMIT_PREPARED);
	analyze_release(a);
	a = analyze_or_fail("ROLLBACK PREPARED 'gid-1'");
	ck_assert_int_eq(a->statements[0].txn.op, ANALYZE_TXN_ROLLBACK_PREPARED);
	analyze_release(a);
	a = analyze_or_fail("ABORT");
	ck_assert_int_eq(a->statements[0].txn.op, ANALYZE_TXN_ROLLBACK);
	ck_assert_str_eq(analyze_txn_op_name(a->statements[0].txn.op), "rollback");
	analyze_release(a);
}
END_TEST

START_TEST(test_session_details)
{
	analysis_t *a = analyze_or_fail("SET search_path TO app");
	ck_assert_int_eq(a->statements[0].session.op, ANALYZE_SESSION_SET);
	ck_assert_str_eq(a->statements[0].session.name, "search_path");
	ck_assert(!a->statements[0].session.is_local);
	analyze_release(a);

	a = analyze_or_fail("SET LOCAL statement_timeout = 0");
	ck_assert(a->kind == ANALYZE_KIND_UTILITY);
	ck_assert_int_eq(a->statements[0].session.op, ANALYZE_SESSION_SET);
	ck_assert(a->statements[0].session.is_local);
	analyze_release(a);

	a = analyze_or_fail("SET ROLE admin");
	ck_assert_str_eq(a->statements[0].session.name, "role");
	analyze_release(a);
	a = analyze_or_fail("SET SESSION AUTHORIZATION bob");
	ck_assert_str_eq(a->statements[0].session.name, "session_authorization");
	analyze_release(a);
	a = analyze_or_fail("RESET ALL");
	ck_assert_int_eq(a->statements[0].session.op, ANALYZE_SESSION_RESET_ALL);
	ck_assert_ptr_null(a->statements[0].session.name);
	analyze_release(a);
	a = analyze_or_fail("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY");
	ck_assert_int_eq(a->statements[0].session.default_access, ANALYZE_ACCESS_READ_ONLY);
	analyze_release(a);

	a = analyze_or_fail("PREPARE q AS UPDATE t SET a = 1");
	ck_assert_int_eq(a->statements[0].session.op, ANALYZE_SESSION_PREPARE);
	ck_assert_str_eq(a->statements[0].session.name, "q");
	analyze_release(a);
	a = analyze_or_fail("EXECUTE q");
	ck_assert_int_eq(a->statements[0].session.op, ANALYZE_SESSION_EXECUTE);
	ck_assert(a->needs_primary);
	analyze_release(a);
	a = analyze_or_fail("DEALLOCATE ALL");
	ck_assert_int_eq(a->statements[0].session.op, ANALYZE_SESSION_DEALLOCATE);
	ck_assert_ptr_null(a->statements[0].session.name);
	analyze_release(a);
	a = analyze_or_fail("LISTEN jobs");
	ck_assert_int_eq(a->statements[0].session.op, ANALYZE_SESSION_LISTEN);
	ck_assert_str_eq(a->statements[0].session.name, "jobs");
	ck_assert(a->needs_primary);
	analyze_release(a);
	a = analyze_or_fail("DISCARD TEMP");
	ck_assert_str_eq(a->statements[0].session.name, "temp");
	analyze_release(a);
	a = analyze_or_fail("CREATE TEMP TABLE tt (id int)");
	ck_assert_int_eq(a->statements[0].session.op, ANALYZE_SESSION_TEMP_OBJECT);
	ck_assert(a->needs_primary);
	ck_assert(find_table(a, NULL, "tt")->written);
	analyze_release(a);
	a = analyze_or_fail("DECLARE c CURSOR WITH HOLD FOR SELECT 1");
	ck_assert_int_eq(a->statements[0].session.op, ANALYZE_SESSION_DECLARE_HOLD);
	ck_assert(!a->needs_primary);
	analyze_release(a);
	a = analyze_or_fail("DECLARE c CURSOR WITH HOLD FOR SELECT * FROM t FOR UPDATE");
	ck_assert(a->needs_primary);
	analyze_release(a);
	ck_assert_str_eq(analyze_session_op_name(ANALYZE_SESSION_LISTEN), "listen");
}
END_TEST

START_TEST(test_multi_statement)
{
	const char *sql = "select 1; update t set a = 1; SHOW work_mem";
	analysis_t *a = analyze_or_fail(sql);
	ck_assert_int_eq(a->n_statements, 3);
	ck_assert_int_eq(a->n_statement_records, 3);
	ck_assert(a->kind == ANALYZE_KIND_WRITE);
	ck_assert(a->statements[0].kind == ANALYZE_KIND_READ);
	ck_assert(a->statements[1].kind == ANALYZE_KIND_WRITE);
	ck_assert(a->statements[2].kind == ANALYZE_KIND_READ);
	ck_assert_int_eq(a->statements[1].location, 9);
	ck_assert(find_table(a, NULL, "t")->written);
	analyze_release(a);

	a = analyze_or_fail("SELECT a FROM t; SELECT lower(b) FROM u;");
	ck_assert_int_eq(a->n_statements, 2);
	ck_assert(a->kind == ANALYZE_KIND_READ);
	ck_assert_int_eq(a->n_tables, 2);
	ck_assert(has_function(a, NULL, "lower"));
	ck_assert(analyze_is_read(a, config_classify, NULL));
	analyze_release(a);

	a = analyze_or_fail("BEGIN READ ONLY; SELECT 1; COMMIT");
	ck_assert(a->kind == ANALYZE_KIND_TRANSACTION);
	ck_assert_int_eq(a->statements[0].txn.access, ANALYZE_ACCESS_READ_ONLY);
	ck_assert_int_eq(a->statements[2].txn.op, ANALYZE_TXN_COMMIT);
	analyze_release(a);
}
END_TEST

START_TEST(test_hints)
{
	analysis_t *a = analyze_or_fail("/* shardgate: primary */ SELECT 1");
	ck_assert(a->hint.present);
	ck_assert(a->hint.primary);
	ck_assert_ptr_null(a->hint.shard);
	ck_assert_int_eq(a->hint.max_lag_ms, -1);
	ck_assert(a->kind == ANALYZE_KIND_READ);
	analyze_release(a);

	a = analyze_or_fail("SELECT * FROM t /* shardgate: shard=s1 */ WHERE id = 1");
	ck_assert(a->hint.present);
	ck_assert(!a->hint.primary);
	ck_assert_str_eq(a->hint.shard, "s1");
	analyze_release(a);

	a = analyze_or_fail("/* shardgate: max_lag=100ms */ SELECT 1");
	ck_assert_int_eq(a->hint.max_lag_ms, 100);
	analyze_release(a);
	a = analyze_or_fail("/*shardgate:max_lag=2s*/SELECT 1");
	ck_assert_int_eq(a->hint.max_lag_ms, 2000);
	analyze_release(a);
	a = analyze_or_fail("-- shardgate: shard=eu-2, max_lag=50ms\nSELECT 1");
	ck_assert_str_eq(a->hint.shard, "eu-2");
	ck_assert_int_eq(a->hint.max_lag_ms, 50);
	analyze_release(a);
	a = analyze_or_fail("/* app: checkout */ /* SHARDGATE: primary shard = s2 */ SELECT 1");
	ck_assert(a->hint.primary);
	ck_assert_str_eq(a->hint.shard, "s2");
	analyze_release(a);

	/* inside literals and quoted identifiers: not comments */
	a = analyze_or_fail("SELECT '/* shardgate: primary */'");
	ck_assert(!a->hint.present);
	ck_assert(!a->hint.primary);
	analyze_release(a);
	a = analyze_or_fail("SELECT $$ /* shardgate: shard=s9 */ $$, \"/* shardgate: primary */\" "
	                    "FROM t");
	ck_assert(!a->hint.present);
	analyze_release(a);
	a = analyze_or_fail("SELECT E'it\\'s /* shardgate: primary */'");
	ck_assert(!a->hint.present);
	analyze_release(a);

	/* malformed hints are ignored whole */
	a = analyze_or_fail("/* shardgate: max_lag=100 */ SELECT 1");
	ck_assert(!a->hint.present);
	ck_assert(a->hint.malformed);
	ck_assert_int_eq(a->hint.max_lag_ms, -1);
	analyze_release(a);
	a = analyze_or_fail("/* shardgate: replica_please shard=s1 */ SELECT 1");
	ck_assert(a->hint.malformed);
	ck_assert_ptr_null(a->hint.shard);
	analyze_release(a);
	a = analyze_or_fail("/* shardgate is great */ SELECT 1");
	ck_assert(!a->hint.present);
	ck_assert(!a->hint.malformed);
	analyze_release(a);

	/* a hint on an invalid statement is still read; the statement is a write */
	a = analyze_or_fail("/* shardgate: shard=s1 */ SELEC 1");
	ck_assert(a->parse_error);
	ck_assert_str_eq(a->hint.shard, "s1");
	analyze_release(a);
}
END_TEST

START_TEST(test_parse_errors)
{
	analysis_t *a = analyze_or_fail("SELEC 1");
	ck_assert(a->parse_error);
	ck_assert(a->kind == ANALYZE_KIND_WRITE);
	ck_assert(a->needs_primary);
	ck_assert_int_eq(a->n_statements, 0);
	ck_assert_ptr_nonnull(a->error_message);
	ck_assert_msg(strstr(a->error_message, "syntax error") != NULL, "got \"%s\"",
	              a->error_message);
	ck_assert_int_gt(a->error_cursor, 0);
	ck_assert(!analyze_is_read(a, config_classify, NULL));
	analyze_release(a);

	a = analyze_or_fail("");
	ck_assert(!a->parse_error);
	ck_assert_int_eq(a->n_statements, 0);
	ck_assert(a->kind == ANALYZE_KIND_EMPTY);
	analyze_release(a);

	/* The length given is what is analysed, not the C string. */
	const char *text = "SELECT 1; DELETE FROM t";
	ck_assert(analyze_statement(text, 8, &a));
	ck_assert(a->kind == ANALYZE_KIND_READ);
	analyze_release(a);
}
END_TEST

START_TEST(test_parameters)
{
	analysis_t *a =
	    analyze_or_fail("SELECT * FROM accounts WHERE aid = $1 AND bid IN ($2, $3)");
	ck_assert(!a->parse_error);
	ck_assert(analyze_is_read(a, config_classify, NULL));
	ck_assert(find_table(a, NULL, "accounts"));
	analyze_release(a);
	a = analyze_or_fail("UPDATE accounts SET abalance = abalance + $1 WHERE aid = $2");
	ck_assert(a->kind == ANALYZE_KIND_WRITE);
	ck_assert(find_table(a, NULL, "accounts")->written);
	analyze_release(a);
}
END_TEST

/* A flat operator chain nests one level per operator in the parse tree;
 * libpg_query recurses per level and overflows the stack at ~30000. */
START_TEST(test_deep_nesting_is_refused_not_crashing)
{
	size_t n = 100000;
	char *sql = malloc(8 + 2 * n + 1);
	ck_assert_ptr_nonnull(sql);
	strcpy(sql, "SELECT 1");
	for (size_t i = 0; i < n; i++)
		memcpy(sql + 8 + 2 * i, "+1", 2);
	sql[8 + 2 * n] = '\0';
	analysis_t *a = analyze_or_fail(sql);
	ck_assert(a->parse_error);
	ck_assert(a->kind == ANALYZE_KIND_WRITE);
	analyze_release(a);

	/* A long but flat statement is analysed normally. */
	size_t rows = 20000;
	char *big = malloc(64 + rows * 24);
	ck_assert_ptr_nonnull(big);
	size_t off = (size_t)sprintf(big, "SELECT * FROM t WHERE id IN (");
	for (size_t i = 0; i < rows; i++)
		off += (size_t)sprintf(big + off, "%s-%zu", i ? "," : "", i);
	strcpy(big + off, ") OR a = 1 OR a = 2");
	a = analyze_or_fail(big);
	ck_assert_msg(!a->parse_error, "flat statement refused: %s",
	              a->error_message ? a->error_message : "");
	ck_assert(a->kind == ANALYZE_KIND_READ);
	analyze_release(a);
	free(big);
	free(sql);
}
END_TEST

START_TEST(test_names)
{
	ck_assert_str_eq(analyze_kind_name(ANALYZE_KIND_READ), "read");
	ck_assert_str_eq(analyze_kind_name(ANALYZE_KIND_WRITE), "write");
	ck_assert_str_eq(analyze_kind_name(ANALYZE_KIND_TRANSACTION), "transaction");
	ck_assert_str_eq(analyze_kind_name(ANALYZE_KIND_SESSION), "session");
	ck_assert_str_eq(analyze_kind_name(ANALYZE_KIND_UTILITY), "utility");
	ck_assert_str_eq(analyze_kind_name(ANALYZE_KIND_EMPTY), "empty");
	ck_assert_str_eq(analyze_access_name(ANALYZE_ACCESS_READ_ONLY), "read_only");
	ck_assert_str_eq(analyze_isolation_name(ANALYZE_ISOLATION_SERIALIZABLE), "serializable");
}
END_TEST

/* ---- the cache ---- */

START_TEST(test_cache_hits_and_same_result)
{
	analyzer_t *an = analyzer_new(16);
	ck_assert_ptr_nonnull(an);
	const char *sql = "SELECT abalance FROM pgbench_accounts WHERE aid = $1";
	const analysis_t *first = analyzer_get(an, sql, strlen(sql));
	ck_assert_ptr_nonnull(first);
	ck_assert(first->kind == ANALYZE_KIND_READ);
	char copy[128];
	strcpy(copy, sql); /* same text at another address */
	const analysis_t *second = analyzer_get(an, copy, strlen(copy));
	ck_assert_ptr_eq(first, second);
	analyzer_stats_t stats;
	analyzer_stats(an, &stats);
	ck_assert_uint_eq(stats.misses, 1);
	ck_assert_uint_eq(stats.hits, 1);
	ck_assert_uint_eq(stats.entries, 1);
	ck_assert_uint_gt(stats.bytes, 0);

	/* One byte different is another statement. */
	const analysis_t *other =
	    analyzer_get(an, "SELECT abalance FROM pgbench_accounts WHERE aid = $2", strlen(sql));
	ck_assert_ptr_ne(other, first);
	analyzer_stats(an, &stats);
	ck_assert_uint_eq(stats.misses, 2);
	analyzer_free(an);
}
END_TEST

START_TEST(test_cache_eviction_bound)
{
	analyzer_t *an = analyzer_new(8);
	ck_assert_ptr_nonnull(an);
	char sql[64];
	for (int i = 0; i < 100; i++) {
		int n = snprintf(sql, sizeof(sql), "SELECT %d FROM t", i);
		const analysis_t *a = analyzer_get(an, sql, (size_t)n);
		ck_assert_ptr_nonnull(a);
		ck_assert(a->kind == ANALYZE_KIND_READ);
		analyzer_stats_t stats;
		analyzer_stats(an, &stats);
		ck_assert_uint_le(stats.entries, 8);
	}
	analyzer_stats_t stats;
	analyzer_stats(an, &stats);
	ck_assert_uint_eq(stats.entries, 8);
	ck_assert_uint_eq(stats.evictions, 92);
	ck_assert_uint_eq(stats.misses, 100);

	/* The 8 most recent are cached; touching 92 keeps it when 100 arrives. */
	int n = snprintf(sql, sizeof(sql), "SELECT %d FROM t", 92);
	analyzer_get(an, sql, (size_t)n);
	analyzer_stats(an, &stats);
	ck_assert_uint_eq(stats.hits, 1);
	n = snprintf(sql, sizeof(sql), "SELECT %d FROM t", 100);
	analyzer_get(an, sql, (size_t)n); /* evicts 93, the least recently used */
	n = snprintf(sql, sizeof(sql), "SELECT %d FROM t", 92);
	analyzer_get(an, sql, (size_t)n);
	analyzer_stats(an, &stats);
	ck_assert_uint_eq(stats.hits, 2);
	n = snprintf(sql, sizeof(sql), "SELECT %d FROM t", 93);
	analyzer_get(an, sql, (size_t)n);
	analyzer_stats(an, &stats);
	ck_assert_uint_eq(stats.hits, 2);
	ck_assert_uint_eq(stats.misses, 102);
	analyzer_free(an);
}
END_TEST

START_TEST(test_cache_retain_outlives_eviction)
{
	analyzer_t *an = analyzer_new(1);
	ck_assert_ptr_nonnull(an);
	const analysis_t *kept = analyzer_get(an, "UPDATE t SET a = 1", 18);
	analyze_retain(kept);
	analyzer_get(an, "SELECT 1", 8); /* evicts the UPDATE */
	analyzer_stats_t stats;
	analyzer_stats(an, &stats);
	ck_assert_uint_eq(stats.evictions, 1);
	ck_assert(kept->kind == ANALYZE_KIND_WRITE); /* still valid (ASan checks) */
	analyzer_free(an);
	ck_assert_int_eq(kept->n_tables, 1);
	analyze_release(kept);
}
END_TEST

START_TEST(test_cache_oversize_not_cached)
{
	analyzer_t *an = analyzer_new(4);
	ck_assert_ptr_nonnull(an);
	size_t len = ANALYZE_MAX_CACHED_LEN + 100;
	char *sql = malloc(len + 1);
	ck_assert_ptr_nonnull(sql);
	memset(sql, ' ', len);
	memcpy(sql, "SELECT 1", 8);
	sql[len] = '\0';
	const analysis_t *a = analyzer_get(an, sql, len);
	ck_assert_ptr_nonnull(a);
	ck_assert(a->kind == ANALYZE_KIND_READ);
	a = analyzer_get(an, sql, len);
	ck_assert_ptr_nonnull(a);
	analyzer_stats_t stats;
	analyzer_stats(an, &stats);
	ck_assert_uint_eq(stats.uncacheable, 2);
	ck_assert_uint_eq(stats.entries, 0);
	ck_assert_uint_eq(stats.hits, 0);
	analyzer_free(an);
	free(sql);
}
END_TEST

static Suite *analyze_suite(void)
{
	Suite *s = suite_create("analyze");
	TCase *tc = tcase_create("classification");
	tcase_add_loop_test(tc, test_classification_table, 0,
	                    (int)(sizeof(cases) / sizeof(cases[0])));
	tcase_add_test(tc, test_table_has_enough_cases);
	suite_add_tcase(s, tc);

	tc = tcase_create("details");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_tables_read_and_written);
	tcase_add_test(tc, test_functions_collected);
	tcase_add_test(tc, test_unknown_function_is_write_until_listed);
	tcase_add_test(tc, test_default_function_class);
	tcase_add_test(tc, test_session_advisory_locks_flagged);
	tcase_add_test(tc, test_flags);
	tcase_add_test(tc, test_transaction_details);
	tcase_add_test(tc, test_session_details);
	tcase_add_test(tc, test_multi_statement);
	tcase_add_test(tc, test_hints);
	tcase_add_test(tc, test_parse_errors);
	tcase_add_test(tc, test_parameters);
	tcase_add_test(tc, test_deep_nesting_is_refused_not_crashing);
	tcase_add_test(tc, test_names);
	suite_add_tcase(s, tc);

	tc = tcase_create("cache");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_cache_hits_and_same_result);
	tcase_add_test(tc, test_cache_eviction_bound);
	tcase_add_test(tc, test_cache_retain_outlives_eviction);
	tcase_add_test(tc, test_cache_oversize_not_cached);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(analyze_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
