/*
 * test_keys.c - Check suite for src/analyze/keys.c (shard-key facts).
 *
 * The describe table states, for each statement, the exact keys_describe()
 * rendering of its facts with the tables below: every rel with its block,
 * flags and key constraint, the key joins, and the INSERT / UPDATE / COPY
 * facts. The other tests check the same facts field by field where the
 * rendering would hide a detail (value kinds, texts, inclusive bounds, COPY
 * characters), and the bounds: truncation, deep nesting, caps, output size.
 */
#include <check.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analyze/keys.h"

enum { T_USERS, T_ORDERS, T_ITEMS, T_ACCOUNTS, T_COUNTRIES, T_MIXED, T_EVENTS, N_TABLES };

static const keys_table_t tables[N_TABLES] = {
    [T_USERS] = {NULL, "users", "id"},
    [T_ORDERS] = {NULL, "orders", "user_id"},
    [T_ITEMS] = {NULL, "items", "user_id"},
    [T_ACCOUNTS] = {"app", "accounts", "account_id"},
    [T_COUNTRIES] = {NULL, "countries", NULL}, /* reference table */
    [T_MIXED] = {NULL, "MixedCase", "Key"},    /* created with quoted names */
    [T_EVENTS] = {"public", "events", "tenant_id"},
};

static keys_facts_t *extract(const char *sql)
{
	keys_facts_t *f = keys_extract(sql, strlen(sql), tables, N_TABLES);
	ck_assert_msg(f != NULL, "out of memory extracting %s", sql);
	return f;
}

static const char *describe(const keys_facts_t *f)
{
	static char out[8192];
	keys_describe(f, tables, out, sizeof(out));
	return out;
}

static const struct {
	const char *sql;
	const char *facts;
} cases[] = {
    /* ---- equality, reversed, parameters and casts looked through ---- */
    {"SELECT * FROM users WHERE id = 5", "users#0 block0: IN 5"},
    {"SELECT * FROM users WHERE 5 = id", "users#0 block0: IN 5"},
    {"SELECT * FROM users WHERE id = $1", "users#0 block0: IN $1"},
    {"SELECT * FROM users WHERE id = $1::bigint", "users#0 block0: IN $1"},
    {"SELECT * FROM users WHERE id = '42'::bigint", "users#0 block0: IN 42"},
    {"SELECT * FROM users WHERE id = CAST('x' AS text)", "users#0 block0: IN 'x'"},
    {"SELECT * FROM users WHERE id = int8 '5'", "users#0 block0: IN 5"},
    {"SELECT * FROM users WHERE id = -5", "users#0 block0: IN -5"},
    {"SELECT * FROM users WHERE id = -5::bigint", "users#0 block0: IN -5"},
    {"SELECT * FROM users WHERE id = -(-5)", "users#0 block0: IN 5"},
    {"SELECT * FROM users WHERE id = -1.5", "users#0 block0: IN -1.5"},
    {"SELECT * FROM users WHERE id = 10000000000", "users#0 block0: IN 10000000000"},
    {"SELECT * FROM users WHERE id = -2147483648", "users#0 block0: IN -2147483648"},
    /* ---- casts and constants that may change the value: KC_ALL ---- */
    {"SELECT * FROM users WHERE id = 4.7::int", "users#0 block0: ALL"},
    {"SELECT * FROM users WHERE id = 'abc'::varchar(2)", "users#0 block0: ALL"},
    {"SELECT * FROM users WHERE id = 'x' COLLATE \"C\"", "users#0 block0: ALL"},
    {"SELECT * FROM users WHERE id = B'101'", "users#0 block0: ALL"},
    /* ---- string constants after the lexer's unescaping ---- */
    {"SELECT * FROM users WHERE id = 'it''s'", "users#0 block0: IN 'it''s'"},
    {"SELECT * FROM users WHERE id = E'tab\\there'", "users#0 block0: IN 'tab\there'"},
    {"SELECT * FROM users WHERE id = U&'d\\0061t'", "users#0 block0: IN 'dat'"},
    {"SELECT * FROM users WHERE id = $$dollar$$", "users#0 block0: IN 'dollar'"},
    {"SELECT * FROM users WHERE id = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid",
     "users#0 block0: IN 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'"},
    {"SELECT * FROM users WHERE id = true", "users#0 block0: IN 'true'"},
    /* ---- NULL and IS NULL: shard keys are never NULL ---- */
    {"SELECT * FROM users WHERE id = NULL", "users#0 block0: NONE"},
    {"SELECT * FROM users WHERE id IS NULL", "users#0 block0: NONE"},
    {"SELECT * FROM users WHERE id IS NOT NULL", "users#0 block0: ALL"},
    {"SELECT * FROM users WHERE id IS NOT DISTINCT FROM 7", "users#0 block0: IN 7"},
    {"SELECT * FROM users WHERE id IS DISTINCT FROM 7", "users#0 block0: ALL"},
    /* ---- operators that do not constrain ---- */
    {"SELECT * FROM users WHERE id <> 5", "users#0 block0: ALL"},
    {"SELECT * FROM users WHERE id != 5", "users#0 block0: ALL"},
    {"SELECT * FROM users WHERE id LIKE '5%'", "users#0 block0: ALL"},
    /* ---- IN lists and = ANY ---- */
    {"SELECT * FROM users WHERE id IN (1, 2, 3)", "users#0 block0: IN (1, 2, 3)"},
    {"SELECT * FROM users WHERE id IN (1, NULL)", "users#0 block0: IN 1"},
    {"SELECT * FROM users WHERE id IN (NULL)", "users#0 block0: NONE"},
    {"SELECT * FROM users WHERE id IN (1, 2 + 3)", "users#0 block0: ALL"},
    {"SELECT * FROM users WHERE id NOT IN (1, 2)", "users#0 block0: ALL"},
    {"SELECT * FROM users WHERE id IN ($1, $2, 'x')", "users#0 block0: IN ($1, $2, 'x')"},
    {"SELECT * FROM users WHERE id = ANY(ARRAY[1, 2])", "users#0 block0: IN (1, 2)"},
    {"SELECT * FROM users WHERE id = ANY(ARRAY[$1, $2]::bigint[])", "users#0 block0: IN ($1, $2)"},
    {"SELECT * FROM users WHERE id = ANY($1)", "users#0 block0: IN ANY($1)"},
    {"SELECT * FROM users WHERE id = ANY($1::bigint[])", "users#0 block0: IN ANY($1)"},
    {"SELECT * FROM users WHERE id = ANY('{1,2,3}'::int[])", "users#0 block0: IN ANY('{1,2,3}')"},
    {"SELECT * FROM users WHERE id = ANY('{1,2,3}')", "users#0 block0: IN ANY('{1,2,3}')"},
    {"SELECT * FROM users WHERE id = ANY('{}'::int[])", "users#0 block0: NONE"},
    {"SELECT * FROM users WHERE id = ANY(ARRAY[]::int[])", "users#0 block0: NONE"},
    {"SELECT * FROM users WHERE id = ANY(NULL::int[])", "users#0 block0: NONE"},
    {"SELECT * FROM users WHERE id = ANY(ARRAY[1.5, 2]::int[])", "users#0 block0: ALL"},
    {"SELECT * FROM users WHERE id <> ANY($1)", "users#0 block0: ALL"},
    {"SELECT * FROM users WHERE id = ALL($1)", "users#0 block0: ALL"},
    /* ---- ranges ---- */
    {"SELECT * FROM users WHERE id BETWEEN 10 AND 20", "users#0 block0: RANGE [10,20]"},
    {"SELECT * FROM users WHERE id BETWEEN $1 AND $2", "users#0 block0: RANGE [$1,$2]"},
    {"SELECT * FROM users WHERE id NOT BETWEEN 10 AND 20", "users#0 block0: ALL"},
    {"SELECT * FROM users WHERE id BETWEEN SYMMETRIC 20 AND 10", "users#0 block0: ALL"},
    {"SELECT * FROM users WHERE id BETWEEN NULL AND 10", "users#0 block0: NONE"},
    {"SELECT * FROM users WHERE id < 10", "users#0 block0: RANGE (,10)"},
    {"SELECT * FROM users WHERE id <= 10", "users#0 block0: RANGE (,10]"},
    {"SELECT * FROM users WHERE id > 10", "users#0 block0: RANGE (10,)"},
    {"SELECT * FROM users WHERE id >= 10", "users#0 block0: RANGE [10,)"},
    {"SELECT * FROM users WHERE 10 < id", "users#0 block0: RANGE (10,)"},
    {"SELECT * FROM users WHERE 10 >= id", "users#0 block0: RANGE (,10]"},
    {"SELECT * FROM users WHERE id >= 10 AND id < 20",
     "users#0 block0: (RANGE [10,) AND RANGE (,20))"},
    /* ---- boolean structure ---- */
    {"SELECT * FROM users WHERE id = 5 OR id = 6", "users#0 block0: (IN 5 OR IN 6)"},
    {"SELECT * FROM users WHERE id = 5 OR name = 'x'", "users#0 block0: ALL"},
    {"SELECT * FROM users WHERE id = 5 AND name = 'x'", "users#0 block0: IN 5"},
    {"SELECT * FROM users WHERE (id = 1 OR id = 2) AND (id = 3 OR id = 4)",
     "users#0 block0: ((IN 1 OR IN 2) AND (IN 3 OR IN 4))"},
    {"SELECT * FROM users WHERE id = 1 AND (id = 2 AND (id = 3 AND name = 'x'))",
     "users#0 block0: (IN 1 AND IN 2 AND IN 3)"},
    {"SELECT * FROM users WHERE id = 1 OR (id = 2 OR (id = 3 OR id IS NULL))",
     "users#0 block0: (IN 1 OR IN 2 OR IN 3)"},
    {"SELECT * FROM users WHERE id = 1 AND id = NULL", "users#0 block0: NONE"},
    {"SELECT * FROM users WHERE NOT (id = 5)", "users#0 block0: ALL"},
    {"SELECT * FROM users WHERE id = 5 + 1", "users#0 block0: ALL"},
    {"SELECT * FROM users WHERE id = now()", "users#0 block0: ALL"},
    {"SELECT * FROM users WHERE id = other_col", "users#0 block0: ALL"},
    {"SELECT * FROM users WHERE id OPERATOR(pg_catalog.=) 5", "users#0 block0: IN 5"},
    /* ---- column resolution ---- */
    {"SELECT * FROM users u WHERE u.id = 5", "users(u)#0 block0: IN 5"},
    {"SELECT * FROM users AS u WHERE users.id = 5", "users(u)#0 block0: ALL"},
    {"SELECT * FROM public.users WHERE public.users.id = 5", "users#0 block0: IN 5"},
    {"SELECT * FROM users WHERE public.users.id = 5", "users#0 block0: IN 5"},
    {"SELECT * FROM users u(a, b) WHERE u.id = 5", "users(u)#0 block0: ALL"},
    /* ---- joins ---- */
    {"SELECT * FROM users u JOIN orders o ON o.user_id = u.id WHERE u.id = 5",
     "users(u)#0 block0: IN 5; orders(o)#1 block0: ALL; join #0=#1"},
    {"SELECT * FROM users u, orders o WHERE o.user_id = u.id AND o.user_id IN (1, 2)",
     "users(u)#0 block0: ALL; orders(o)#1 block0: IN (1, 2); join #0=#1"},
    {"SELECT * FROM users u JOIN orders o ON o.user_id = u.id OR o.user_id = 1",
     "users(u)#0 block0: ALL; orders(o)#1 block0: ALL"},
    {"SELECT * FROM orders o JOIN items i USING (user_id) WHERE user_id = 5",
     "orders(o)#0 block0: IN 5; items(i)#1 block0: IN 5; join #0=#1"},
    {"SELECT * FROM orders o LEFT JOIN items i USING (user_id) WHERE user_id = 5",
     "orders(o)#0 block0: ALL; items(i)#1 block0 nullable: ALL; join #0=#1 outer"},
    {"SELECT * FROM (orders JOIN items USING (user_id)) AS j WHERE j.user_id = 3",
     "orders#0 block0: IN 3; items#1 block0: IN 3; join #0=#1"},
    {"SELECT * FROM orders o JOIN items i ON i.user_id = o.user_id AND i.user_id = 9",
     "orders(o)#0 block0: ALL; items(i)#1 block0: IN 9; join #0=#1"},
    {"SELECT * FROM users u LEFT JOIN orders o ON o.user_id = u.id AND o.user_id = 3 WHERE u.id = "
     "3",
     "users(u)#0 block0: IN 3; orders(o)#1 block0 nullable: ALL; join #0=#1 outer"},
    {"SELECT * FROM users u LEFT JOIN orders o ON o.user_id = u.id WHERE o.user_id = 4",
     "users(u)#0 block0: ALL; orders(o)#1 block0 nullable: IN 4; join #0=#1 outer"},
    {"SELECT * FROM users u LEFT JOIN orders o ON o.user_id = u.id WHERE o.user_id IS NULL",
     "users(u)#0 block0: ALL; orders(o)#1 block0 nullable: ALL; join #0=#1 outer"},
    {"SELECT * FROM users u RIGHT JOIN orders o ON o.user_id = u.id WHERE u.id = 1 AND o.user_id = "
     "2",
     "users(u)#0 block0 nullable: IN 1; orders(o)#1 block0: IN 2; join #0=#1 outer"},
    {"SELECT * FROM users u FULL JOIN orders o ON o.user_id = u.id",
     "users(u)#0 block0 nullable: ALL; orders(o)#1 block0 nullable: ALL; join #0=#1 outer"},
    {"SELECT * FROM users u LEFT JOIN (orders o JOIN items i ON i.user_id = o.user_id) ON "
     "o.user_id = u.id",
     "users(u)#0 block0: ALL; orders(o)#1 block0 nullable: ALL; items(i)#2 block0 nullable: ALL; "
     "join #1=#2; join #0=#1 outer"},
    {"SELECT * FROM users u JOIN orders o ON true WHERE id = 1 AND user_id = 2",
     "users(u)#0 block0: IN 1; orders(o)#1 block0: IN 2"},
    /* ---- subqueries, set operations, CTEs ---- */
    {"SELECT * FROM users WHERE id IN (SELECT user_id FROM orders WHERE user_id = 3)",
     "users#0 block0: ALL; orders#1 block1 in block0: IN 3"},
    {"SELECT * FROM users u WHERE EXISTS (SELECT 1 FROM orders o WHERE o.user_id = u.id AND "
     "o.user_id = 8) AND u.id = 8",
     "users(u)#0 block0: IN 8; orders(o)#1 block1 in block0: IN 8"},
    {"SELECT * FROM users u WHERE id = 1 OR EXISTS (SELECT 1 FROM orders)",
     "users(u)#0 block0: ALL; orders#1 block1 in block0: ALL"},
    {"SELECT (SELECT count(*) FROM orders WHERE user_id = 2) FROM users WHERE id = 2",
     "users#0 block0: IN 2; orders#1 block1 in block0: IN 2"},
    {"SELECT * FROM (SELECT * FROM users WHERE id = 5) AS s WHERE s.id = 6",
     "users#0 block1 in block0: IN 5"},
    {"SELECT * FROM users WHERE id = 1 UNION ALL SELECT * FROM users WHERE id = 2",
     "users#0 block1 in block0: IN 1; users#1 block2 in block0: IN 2"},
    {"WITH o AS (SELECT * FROM orders WHERE user_id = 5) SELECT * FROM o JOIN users u ON u.id = "
     "o.user_id WHERE u.id = 5",
     "orders#0 block1 in block0: IN 5; users(u)#1 block0: IN 5"},
    {"WITH users AS (SELECT * FROM users WHERE id = 1) SELECT * FROM users WHERE id = 2",
     "users#0 block1 in block0: IN 1"},
    {"WITH RECURSIVE users AS (SELECT 1 UNION SELECT * FROM users) SELECT * FROM users", ""},
    {"WITH moved AS (DELETE FROM orders WHERE user_id = 4 RETURNING *) INSERT INTO items SELECT * "
     "FROM moved",
     "orders#0 block1 in block0 target: IN 4; items#1 block0 target: ALL; insert #1 nocols width=0 "
     "select"},
    /* ---- tables: unknown, reference, schemas, quoted names ---- */
    {"SELECT * FROM unknown_table WHERE id = 5", ""},
    {"SELECT * FROM countries c JOIN users u ON u.id = 1 WHERE c.code = 'DE'",
     "countries(c)#0 block0: ALL; users(u)#1 block0: IN 1"},
    {"SELECT * FROM app.accounts WHERE account_id = 'acc-1'", "app.accounts#0 block0: IN 'acc-1'"},
    {"SELECT * FROM accounts WHERE account_id = 'acc-1'", ""},
    {"SELECT * FROM other.users WHERE id = 5", ""},
    {"SELECT * FROM events WHERE tenant_id = 3", "public.events#0 block0: IN 3"},
    {"SELECT * FROM public.events WHERE tenant_id = 3", "public.events#0 block0: IN 3"},
    {"SELECT * FROM \"MixedCase\" WHERE \"Key\" = 1", "MixedCase#0 block0: IN 1"},
    {"SELECT * FROM MixedCase WHERE key = 1", ""},
    {"SELECT * FROM \"users\" WHERE \"ID\" = 1", "users#0 block0: ALL"},
    {"SELECT * FROM users WHERE id = 1; SELECT * FROM orders WHERE user_id = 2",
     "users#0 block0: IN 1; orders#1 block1 stmt1: IN 2"},
    /* ---- INSERT ---- */
    {"INSERT INTO users (id, name) VALUES (1, 'a')",
     "users#0 block0 target: ALL; insert #0 cols=2 key@0 rows=(1)"},
    {"INSERT INTO users (name, id) VALUES ('a', 1), ('b', 2), ('c', $1)",
     "users#0 block0 target: ALL; insert #0 cols=2 key@1 rows=(1, 2, $1)"},
    {"INSERT INTO users VALUES (1, 'a')",
     "users#0 block0 target: ALL; insert #0 nocols width=2 rows=(?)"},
    {"INSERT INTO users (name) VALUES ('a')",
     "users#0 block0 target: ALL; insert #0 cols=1 key@-1 rows=(?)"},
    {"INSERT INTO users (id) VALUES (DEFAULT), (1 + 1), (NULL), ('-7'::bigint)",
     "users#0 block0 target: ALL; insert #0 cols=1 key@0 rows=(?, ?, NULL, -7)"},
    {"INSERT INTO users (id) SELECT user_id FROM orders WHERE user_id = 3",
     "users#0 block0 target: ALL; orders#1 block1 in block0: IN 3; insert #0 cols=1 key@0 select"},
    {"INSERT INTO users DEFAULT VALUES",
     "users#0 block0 target: ALL; insert #0 nocols width=0 rows=(?) default"},
    {"INSERT INTO users (id) VALUES (1) ON CONFLICT (id) DO NOTHING",
     "users#0 block0 target: ALL; insert #0 cols=1 key@0 rows=(1) on_conflict"},
    {"INSERT INTO users (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET name = 'x' RETURNING id",
     "users#0 block0 target: ALL; insert #0 cols=1 key@0 rows=(1) on_conflict returning"},
    {"INSERT INTO users (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET id = excluded.id",
     "users#0 block0 target: ALL; insert #0 cols=1 key@0 rows=(1) on_conflict; set key=?"},
    {"INSERT INTO users (id) VALUES (1) LIMIT 1",
     "users#0 block0 target: ALL; insert #0 cols=1 key@0 select"},
    {"INSERT INTO unknown_table (id) VALUES (1)", ""},
    {"INSERT INTO countries (code) VALUES ('DE')",
     "countries#0 block0 target: ALL; insert #0 cols=1 key@-1 rows=(?)"},
    /* ---- UPDATE, DELETE, MERGE ---- */
    {"UPDATE users SET name = 'x' WHERE id = 5", "users#0 block0 target: IN 5"},
    {"UPDATE users SET id = 6 WHERE id = 5", "users#0 block0 target: IN 5; set key=6"},
    {"UPDATE users SET (name, id) = ('x', $2) WHERE id = $1",
     "users#0 block0 target: IN $1; set key=$2"},
    {"UPDATE users SET (name, id) = (SELECT 'x', 1) WHERE id = 1",
     "users#0 block0 target: IN 1; set key=?"},
    {"UPDATE users u SET name = 'x' FROM orders o WHERE o.user_id = u.id AND o.user_id = 5",
     "users(u)#0 block0 target: ALL; orders(o)#1 block0: IN 5; join #0=#1"},
    {"UPDATE users SET id = DEFAULT", "users#0 block0 target: ALL; set key=?"},
    {"DELETE FROM users WHERE id IN (1, 2)", "users#0 block0 target: IN (1, 2)"},
    {"DELETE FROM users u USING orders o WHERE o.user_id = u.id AND u.id = 5",
     "users(u)#0 block0 target: IN 5; orders(o)#1 block0: ALL; join #0=#1"},
    {"DELETE FROM users WHERE CURRENT OF c", "users#0 block0 target: ALL"},
    {"MERGE INTO users u USING orders o ON u.id = o.user_id WHEN MATCHED THEN UPDATE SET id = 5 "
     "WHEN NOT MATCHED THEN INSERT (id) VALUES (o.user_id)",
     "users(u)#0 block0 target: ALL; orders(o)#1 block0: ALL; join #0=#1 outer; set key=5"},
    /* ---- COPY ---- */
    {"COPY users FROM STDIN", "users#0 block0 target: ALL; copy #0 text delim='\t' null='\\N'"},
    {"COPY users (name, id) FROM STDIN WITH (FORMAT csv, HEADER, DELIMITER ';', NULL 'nil', QUOTE "
     "'''', ESCAPE '\\')",
     "users#0 block0 target: ALL; copy #0 cols=2 key@1 csv delim=';' null='nil' header quote='''' "
     "escape='\\'"},
    {"COPY users (id) FROM STDIN WITH (FORMAT binary)",
     "users#0 block0 target: ALL; copy #0 cols=1 key@0 binary"},
    {"COPY users FROM STDIN CSV HEADER",
     "users#0 block0 target: ALL; copy #0 csv delim=',' null='' header quote='\"' escape='\"'"},
    {"COPY users FROM STDIN WITH DELIMITER '|' NULL ''",
     "users#0 block0 target: ALL; copy #0 text delim='|' null=''"},
    {"COPY users (name) FROM STDIN (FORMAT csv, HEADER match, ENCODING 'LATIN1')",
     "users#0 block0 target: ALL; copy #0 cols=1 key@-1 csv delim=',' null='' header quote='\"' "
     "escape='\"' encoding='LATIN1'"},
    {"COPY users FROM '/tmp/file'", "users#0 block0 target: ALL"},
    {"COPY users TO STDOUT", "users#0 block0: ALL"},
    {"COPY (SELECT * FROM users WHERE id = 1) TO STDOUT", "users#0 block0: IN 1"},
    /* ---- utility statements, parse errors, odd shapes ---- */
    {"EXPLAIN SELECT * FROM users WHERE id = 1", "users#0 block0: IN 1"},
    {"SELECT * FROM users WHERE", "parse error"},
    {"SELECT * FROM users WHERE id = ANY(ARRAY[[1, 2], [3, 4]])", "users#0 block0: ALL"},
    {"SELECT * FROM users WHERE (id, name) = (1, 'x')", "users#0 block0: ALL"},
    {"TRUNCATE users", ""},
    {"SELECT * FROM users TABLESAMPLE SYSTEM (10) WHERE id = 3", "users#0 block0: IN 3"},
    {"SELECT * FROM users u, LATERAL (SELECT * FROM orders o WHERE o.user_id = u.id) x WHERE u.id "
     "= 2",
     "users(u)#0 block0: IN 2; orders(o)#1 block1 in block0: ALL"},
    /* ---- more resolution, scoping and statements ---- */
    {"SELECT * FROM orders, items WHERE user_id = 5", "orders#0 block0: ALL; items#1 block0: ALL"},
    {"SELECT * FROM users WHERE EXISTS (SELECT 1 FROM orders WHERE id = 5)",
     "users#0 block0: ALL; orders#1 block1 in block0: ALL"},
    {"SELECT * FROM users WHERE id::text = '5'", "users#0 block0: ALL"},
    {"SELECT * FROM users WHERE id = $1 OR id = $2", "users#0 block0: (IN $1 OR IN $2)"},
    {"SELECT * FROM users u LEFT JOIN orders o ON o.user_id = u.id WHERE o.user_id = 4 OR "
     "o.user_id IS NULL",
     "users(u)#0 block0: ALL; orders(o)#1 block0 nullable: ALL; join #0=#1 outer"},
    {"SELECT * FROM users WHERE id IS NULL OR id = 4", "users#0 block0: IN 4"},
    {"SELECT * FROM (WITH users AS (SELECT 1 AS id) SELECT * FROM users) s, users WHERE users.id = "
     "3",
     "users#0 block0: IN 3"},
    {"WITH u AS (UPDATE users SET id = 2 WHERE id = 1 RETURNING *) SELECT * FROM u",
     "users#0 block1 in block0 target: IN 1; set key=2"},
    {"UPDATE users SET id = 1; UPDATE orders SET user_id = 2",
     "users#0 block0 target: ALL; orders#1 block1 stmt1 target: ALL; set key=?"},
    {"UPDATE users SET (name, id) = (SELECT name, user_id FROM orders WHERE user_id = 1) WHERE id "
     "= 1",
     "users#0 block0 target: IN 1; orders#1 block1 in block0: IN 1; set key=?"},
    {"SELECT 1; INSERT INTO users (id) VALUES (3)",
     "users#0 block1 stmt1 target: ALL; insert #0 cols=1 key@0 rows=(3)"},
    {"SELECT * FROM app.accounts WHERE app.accounts.account_id = 'x'",
     "app.accounts#0 block0: IN 'x'"},
    {"SELECT * FROM app.accounts WHERE accounts.account_id = 'x'", "app.accounts#0 block0: IN 'x'"},
    {"SELECT * FROM app.accounts WHERE public.accounts.account_id = 'x'",
     "app.accounts#0 block0: ALL"},
    {"SELECT * FROM orders JOIN items USING (user_id), users WHERE users.id = user_id",
     "orders#0 block0: ALL; items#1 block0: ALL; users#2 block0: ALL; join #0=#2; join #0=#1"},
    {"PREPARE p AS SELECT * FROM users WHERE id = $1", "users#0 block0: IN $1"},
    {"SELECT * FROM users WHERE id = 1 FOR UPDATE", "users#0 block0: IN 1"},
    {"SELECT * FROM users WHERE id = 1 OR (id = 2 AND name = 'x')",
     "users#0 block0: (IN 1 OR IN 2)"},
    {"SELECT * FROM users WHERE id = 1 AND (id = 2 OR id = NULL)",
     "users#0 block0: (IN 1 AND IN 2)"},
    {"SELECT * FROM users WHERE id = 1 OR id = NULL", "users#0 block0: IN 1"},
    {"SELECT * FROM users WHERE id = NULL OR id IS NULL", "users#0 block0: NONE"},
    {"SELEC 1", "parse error"},
    {"SELECT * FROM users WHERE id = 'unterminated", "parse error"},
    {"SELECT 1; SELECT * FROM users WHERE", "parse error"},
    {"DELETE FROM orders WHERE user_id IN (SELECT id FROM users WHERE id = 3)",
     "orders#0 block0 target: ALL; users#1 block1 in block0: IN 3"},
    {"SELECT * FROM users WHERE id = 5 AND id IN (SELECT user_id FROM orders)",
     "users#0 block0: IN 5; orders#1 block1 in block0: ALL"},
    {"SELECT * FROM users u JOIN orders o ON o.user_id = u.id JOIN items i ON i.user_id = "
     "o.user_id WHERE u.id = 1",
     "users(u)#0 block0: IN 1; orders(o)#1 block0: ALL; items(i)#2 block0: ALL; join #0=#1; join "
     "#1=#2"},
    {"CREATE TABLE t AS SELECT * FROM users WHERE id = 9", "users#0 block0: IN 9"},
    {"SELECT * FROM users WHERE id = 007", "users#0 block0: IN 7"},
    {"SELECT * FROM users WHERE id = 1e3", "users#0 block0: IN 1e3"},
    {"SELECT * FROM users WHERE id = +5", "users#0 block0: IN 5"},
    {"SELECT * FROM users WHERE id IN (SELECT 1) OR id = 2", "users#0 block0: ALL"},
    {"INSERT INTO users (id) VALUES ((SELECT user_id FROM orders WHERE user_id = 4))",
     "users#0 block0 target: ALL; orders#1 block2 in block1: IN 4; insert #0 cols=1 key@0 "
     "rows=(?)"},
    {"SELECT * FROM ONLY users WHERE id = 1", "users#0 block0: IN 1"},
    {"SELECT * FROM users JOIN users u2 ON u2.id = users.id WHERE users.id = 3",
     "users#0 block0: IN 3; users(u2)#1 block0: ALL; join #0=#1"},
    {"VALUES (1), (2)", ""},
};

#define N_CASES ((int)(sizeof(cases) / sizeof(cases[0])))

START_TEST(test_describe_table)
{
	keys_facts_t *f = extract(cases[_i].sql);
	const char *got = describe(f);
	ck_assert_msg(strcmp(got, cases[_i].facts) == 0, "%s\n  expected: %s\n  got:      %s",
	              cases[_i].sql, cases[_i].facts, got);
	keys_free(f);
}
END_TEST

START_TEST(test_table_has_enough_cases)
{
	ck_assert_int_ge(N_CASES, 100);
}
END_TEST

/* The root constraint of rel. */
static const keys_cond_t *rel_cond(const keys_facts_t *f, int rel)
{
	ck_assert_int_lt(rel, f->n_rels);
	ck_assert_int_ge(f->rels[rel].cond, 0);
	ck_assert_int_lt(f->rels[rel].cond, f->n_conds);
	return &f->conds[f->rels[rel].cond];
}

/* The only value of an IN of one. */
static const keys_value_t *single_value(const keys_facts_t *f, const char *sql)
{
	const keys_cond_t *c = rel_cond(f, 0);
	ck_assert_msg(c->kind == KC_IN && c->n_values == 1, "%s: expected an IN of one, got %s/%d",
	              sql, keys_cond_kind_name(c->kind), c->n_values);
	return &f->values[c->first_value];
}

START_TEST(test_literal_texts)
{
	static const struct {
		const char *sql;
		const char *text;
	} literals[] = {
	    {"SELECT * FROM users WHERE id = 'it''s'", "it's"},
	    {"SELECT * FROM users WHERE id = E'a\\tb\\\\c\\'d'", "a\tb\\c'd"},
	    {"SELECT * FROM users WHERE id = U&'d\\0061t'", "dat"},
	    {"SELECT * FROM users WHERE id = $q$x'y$q$", "x'y"},
	    {"SELECT * FROM users WHERE id = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid",
	     "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
	    {"SELECT * FROM users WHERE id = ''", ""},
	    {"SELECT * FROM users WHERE id = -5", "-5"},
	    {"SELECT * FROM users WHERE id = -0", "0"},
	    {"SELECT * FROM users WHERE id = -5::int8", "-5"},
	    {"SELECT * FROM users WHERE id = -'7'::int8", "-7"},
	    {"SELECT * FROM users WHERE id = -(-(5))", "5"},
	    {"SELECT * FROM users WHERE id = -9223372036854775808", "-9223372036854775808"},
	    {"SELECT * FROM users WHERE id = 2147483647", "2147483647"},
	    {"SELECT * FROM users WHERE id = 1.50", "1.50"},
	    {"SELECT * FROM users WHERE id = false", "false"},
	    {"SELECT * FROM users WHERE id = CAST(CAST('12' AS text) AS bigint)", "12"},
	};
	for (size_t i = 0; i < sizeof(literals) / sizeof(literals[0]); i++) {
		keys_facts_t *f = extract(literals[i].sql);
		const keys_value_t *v = single_value(f, literals[i].sql);
		ck_assert_msg(v->kind == KV_LITERAL, "%s: kind %s", literals[i].sql,
		              keys_value_kind_name(v->kind));
		ck_assert_msg(!v->array, "%s: not an array", literals[i].sql);
		ck_assert_msg(strcmp(v->text, literals[i].text) == 0, "%s: expected [%s], got [%s]",
		              literals[i].sql, literals[i].text, v->text);
		keys_free(f);
	}
}
END_TEST

START_TEST(test_params_and_arrays)
{
	keys_facts_t *f = extract("SELECT * FROM users WHERE id = $12::int8");
	const keys_value_t *v = single_value(f, "$12");
	ck_assert_int_eq(v->kind, KV_PARAM);
	ck_assert_int_eq(v->param, 12);
	ck_assert_ptr_null(v->text);
	ck_assert(!v->array);
	keys_free(f);

	f = extract("SELECT * FROM users WHERE id = ANY($2::bigint[])");
	v = single_value(f, "ANY($2)");
	ck_assert_int_eq(v->kind, KV_PARAM);
	ck_assert_int_eq(v->param, 2);
	ck_assert(v->array);
	keys_free(f);

	f = extract("SELECT * FROM users WHERE id = ANY('{1, 2,3}'::int8[])");
	v = single_value(f, "ANY('{1, 2,3}')");
	ck_assert_int_eq(v->kind, KV_LITERAL);
	ck_assert(v->array);
	ck_assert_str_eq(v->text, "{1, 2,3}");
	keys_free(f);

	/* An ARRAY[...] constructor is its elements, one value each. */
	f = extract("SELECT * FROM users WHERE id = ANY(ARRAY[7, $1, '9'])");
	const keys_cond_t *c = rel_cond(f, 0);
	ck_assert_int_eq(c->kind, KC_IN);
	ck_assert_int_eq(c->n_values, 3);
	const keys_value_t *vs = &f->values[c->first_value];
	ck_assert(vs[0].kind == KV_LITERAL && strcmp(vs[0].text, "7") == 0 && !vs[0].array);
	ck_assert(vs[1].kind == KV_PARAM && vs[1].param == 1 && !vs[1].array);
	ck_assert(vs[2].kind == KV_LITERAL && strcmp(vs[2].text, "9") == 0);
	keys_free(f);
}
END_TEST

START_TEST(test_range_bounds)
{
	keys_facts_t *f = extract("SELECT * FROM users WHERE id BETWEEN $1 AND 20");
	const keys_cond_t *c = rel_cond(f, 0);
	ck_assert_int_eq(c->kind, KC_RANGE);
	ck_assert(c->has_lo && c->lo_inclusive && c->has_hi && c->hi_inclusive);
	ck_assert(c->lo.kind == KV_PARAM && c->lo.param == 1);
	ck_assert(c->hi.kind == KV_LITERAL && strcmp(c->hi.text, "20") == 0);
	keys_free(f);

	f = extract("SELECT * FROM users WHERE 'k' > id");
	c = rel_cond(f, 0);
	ck_assert_int_eq(c->kind, KC_RANGE);
	ck_assert(!c->has_lo && c->has_hi && !c->hi_inclusive);
	ck_assert_int_eq(c->lo.kind, KV_UNKNOWN);
	ck_assert_str_eq(c->hi.text, "k");
	keys_free(f);

	f = extract("SELECT * FROM users WHERE id >= -3");
	c = rel_cond(f, 0);
	ck_assert(c->kind == KC_RANGE && c->has_lo && c->lo_inclusive && !c->has_hi);
	ck_assert_str_eq(c->lo.text, "-3");
	keys_free(f);
}
END_TEST

START_TEST(test_cond_tree_shape)
{
	keys_facts_t *f =
	    extract("SELECT * FROM users WHERE (id = 1 OR id IN (2, 3)) AND id < 10 AND x = 1");
	const keys_cond_t *root = rel_cond(f, 0);
	ck_assert_int_eq(root->kind, KC_AND);
	ck_assert_int_eq(root->n_children, 2);
	ck_assert_int_le(root->first_child + root->n_children, f->n_children);
	const keys_cond_t *either = &f->conds[f->children[root->first_child]];
	const keys_cond_t *below = &f->conds[f->children[root->first_child + 1]];
	ck_assert_int_eq(either->kind, KC_OR);
	ck_assert_int_eq(either->n_children, 2);
	ck_assert_int_eq(below->kind, KC_RANGE);
	const keys_cond_t *in2 = &f->conds[f->children[either->first_child + 1]];
	ck_assert_int_eq(in2->kind, KC_IN);
	ck_assert_int_eq(in2->n_values, 2);
	ck_assert_str_eq(f->values[in2->first_value + 1].text, "3");
	/* Nothing unreachable is left behind: 1 IN, 1 IN, OR, RANGE, AND. */
	ck_assert_int_eq(f->n_conds, 5);
	ck_assert_int_eq(f->n_children, 4);
	ck_assert_int_eq(f->n_values, 3);
	keys_free(f);

	/* An AND that turns out NONE takes its operands' nodes back. */
	f = extract("SELECT * FROM users WHERE id IN (1, 2, 3) AND id < 5 AND id = NULL");
	ck_assert_int_eq(rel_cond(f, 0)->kind, KC_NONE);
	ck_assert_int_eq(f->n_conds, 1);
	ck_assert_int_eq(f->n_values, 0);
	keys_free(f);
}
END_TEST

START_TEST(test_rel_fields)
{
	keys_facts_t *f = extract("SELECT 1; SELECT * FROM users u LEFT JOIN orders ON true "
	                          "WHERE EXISTS (SELECT 1 FROM items i WHERE i.user_id = 3)");
	ck_assert_int_eq(f->n_statements, 2);
	ck_assert_int_eq(f->n_rels, 3);
	const keys_rel_t *u = &f->rels[0], *o = &f->rels[1], *i = &f->rels[2];
	ck_assert_int_eq(u->table, T_USERS);
	ck_assert_str_eq(u->alias, "u");
	ck_assert_int_eq(u->statement, 1);
	ck_assert_int_eq(u->parent_block, -1);
	ck_assert(!u->target && !u->nullable_side);
	ck_assert_int_eq(o->table, T_ORDERS);
	ck_assert_ptr_null(o->alias);
	ck_assert(o->nullable_side);
	ck_assert_int_eq(o->block, u->block);
	ck_assert_int_eq(i->table, T_ITEMS);
	ck_assert_int_eq(i->parent_block, u->block);
	ck_assert_int_ne(i->block, u->block);
	ck_assert_int_eq(i->statement, 1);
	ck_assert_int_eq(rel_cond(f, 2)->kind, KC_IN);
	ck_assert_int_eq(f->n_joins, 0);
	keys_free(f);
}
END_TEST

START_TEST(test_joins_fields)
{
	keys_facts_t *f = extract("SELECT * FROM orders o JOIN users u ON u.id = o.user_id "
	                          "LEFT JOIN items i ON i.user_id = u.id");
	ck_assert_int_eq(f->n_joins, 2);
	ck_assert(f->joins[0].rel_a == 0 && f->joins[0].rel_b == 1 && !f->joins[0].outer);
	ck_assert(f->joins[1].rel_a == 1 && f->joins[1].rel_b == 2 && f->joins[1].outer);
	keys_free(f);

	/* The same equality twice is one join; inner wins over outer. */
	f = extract("SELECT * FROM users u LEFT JOIN orders o ON o.user_id = u.id "
	            "WHERE u.id = o.user_id AND o.user_id = u.id");
	ck_assert_int_eq(f->n_joins, 1);
	ck_assert(!f->joins[0].outer);
	keys_free(f);

	/* Only conjunctive positions: under OR or NOT it is no join. */
	f = extract("SELECT * FROM users u, orders o WHERE u.id = o.user_id OR u.id = 1");
	ck_assert_int_eq(f->n_joins, 0);
	keys_free(f);
	f = extract("SELECT * FROM users u, orders o WHERE NOT (u.id = o.user_id)");
	ck_assert_int_eq(f->n_joins, 0);
	keys_free(f);
}
END_TEST

START_TEST(test_insert_fields)
{
	keys_facts_t *f = extract("INSERT INTO users AS x (name, id, age) VALUES ('a', 1, 2), "
	                          "('b', $1, 3), ('c', DEFAULT, 4) RETURNING id");
	ck_assert(f->has_insert);
	const keys_insert_t *in = &f->insert;
	ck_assert_int_eq(in->rel, 0);
	ck_assert_str_eq(f->rels[0].alias, "x");
	ck_assert(f->rels[0].target);
	ck_assert(in->has_columns && !in->select && !in->default_values && !in->on_conflict);
	ck_assert(in->returning);
	ck_assert_int_eq(in->key_position, 1);
	ck_assert_int_eq(in->n_columns, 3);
	ck_assert_int_eq(in->n_rows, 3);
	const keys_value_t *rows = &f->values[in->first_row];
	ck_assert(rows[0].kind == KV_LITERAL && strcmp(rows[0].text, "1") == 0);
	ck_assert(rows[1].kind == KV_PARAM && rows[1].param == 1);
	ck_assert_int_eq(rows[2].kind, KV_UNKNOWN);
	ck_assert_int_eq(rel_cond(f, 0)->kind, KC_ALL);
	keys_free(f);

	/* A CTE's constraint values come first; the rows stay contiguous. */
	f = extract("WITH o AS (SELECT * FROM orders WHERE user_id IN (8, 9)) "
	            "INSERT INTO users (id) VALUES (5), (6)");
	ck_assert(f->has_insert);
	ck_assert_int_eq(f->insert.rel, 1);
	ck_assert_int_eq(f->insert.n_rows, 2);
	ck_assert_str_eq(f->values[f->insert.first_row].text, "5");
	ck_assert_str_eq(f->values[f->insert.first_row + 1].text, "6");
	keys_free(f);

	/* Not a top-level INSERT: no insert facts. */
	f = extract("WITH w AS (INSERT INTO users (id) VALUES (1) RETURNING *) SELECT * FROM w");
	ck_assert(!f->has_insert);
	ck_assert_int_eq(f->n_rels, 1);
	ck_assert(f->rels[0].target);
	keys_free(f);
	f = extract("SELECT * FROM users WHERE id = 1");
	ck_assert(!f->has_insert);
	ck_assert_int_eq(f->insert.rel, -1);
	keys_free(f);

	/* The first INSERT into a configured table is the one described. */
	f = extract("INSERT INTO logs VALUES (1); INSERT INTO orders (user_id) VALUES (4); "
	            "INSERT INTO users (id) VALUES (5)");
	ck_assert(f->has_insert);
	ck_assert_int_eq(f->rels[f->insert.rel].table, T_ORDERS);
	ck_assert_int_eq(f->rels[f->insert.rel].statement, 1);
	keys_free(f);
}
END_TEST

START_TEST(test_update_fields)
{
	keys_facts_t *f = extract("SELECT * FROM users WHERE id = 1");
	ck_assert(!f->update.sets_key);
	ck_assert_int_eq(f->update.new_key.kind, KV_UNKNOWN);
	keys_free(f);

	f = extract("UPDATE users SET (id, name) = ($3, 'x') WHERE id = $1");
	ck_assert(f->update.sets_key);
	ck_assert_int_eq(f->update.new_key.kind, KV_PARAM);
	ck_assert_int_eq(f->update.new_key.param, 3);
	keys_free(f);

	f = extract("UPDATE users SET id = 'u-1' WHERE id = 'u-0'");
	ck_assert(f->update.sets_key);
	ck_assert_int_eq(f->update.new_key.kind, KV_LITERAL);
	ck_assert_str_eq(f->update.new_key.text, "u-1");
	keys_free(f);

	f = extract("UPDATE users SET id = NULL");
	ck_assert(f->update.sets_key);
	ck_assert_int_eq(f->update.new_key.kind, KV_NULL);
	keys_free(f);

	/* A column named like a key of another table is not a key update. */
	f = extract("UPDATE users SET user_id = 5 WHERE id = 1");
	ck_assert(!f->update.sets_key);
	keys_free(f);
	f = extract("UPDATE countries SET id = 5");
	ck_assert(!f->update.sets_key);
	keys_free(f);
}
END_TEST

START_TEST(test_copy_fields)
{
	keys_facts_t *f = extract("COPY users FROM STDIN");
	const keys_copy_t *c = &f->copy;
	ck_assert(c->present);
	ck_assert_int_eq(c->rel, 0);
	ck_assert(!c->has_columns);
	ck_assert_int_eq(c->key_position, -1);
	ck_assert_int_eq(c->format, 't');
	ck_assert_int_eq(c->delimiter, '\t');
	ck_assert_str_eq(c->null_string, "\\N");
	ck_assert(!c->header);
	ck_assert_int_eq(c->escape, '\\');
	ck_assert_ptr_null(c->encoding);
	keys_free(f);

	f = extract("COPY users (name, id) FROM STDIN WITH (FORMAT csv, QUOTE '|')");
	c = &f->copy;
	ck_assert(c->present && c->has_columns);
	ck_assert_int_eq(c->n_columns, 2);
	ck_assert_int_eq(c->key_position, 1);
	ck_assert_int_eq(c->format, 'c');
	ck_assert_int_eq(c->delimiter, ',');
	ck_assert_str_eq(c->null_string, "");
	ck_assert_int_eq(c->quote, '|');
	ck_assert_int_eq(c->escape, '|'); /* defaults to QUOTE */
	keys_free(f);

	f = extract("COPY users FROM STDIN WITH (FORMAT csv, HEADER false, ESCAPE '\\', "
	            "DELIMITER E'\\t', NULL '\\N')");
	c = &f->copy;
	ck_assert(!c->header);
	ck_assert_int_eq(c->escape, '\\');
	ck_assert_int_eq(c->quote, '"');
	ck_assert_int_eq(c->delimiter, '\t');
	ck_assert_str_eq(c->null_string, "\\N");
	keys_free(f);

	f = extract("COPY users FROM STDIN BINARY");
	ck_assert_int_eq(f->copy.format, 'b');
	ck_assert_ptr_null(f->copy.null_string);
	keys_free(f);

	/* Not from the client: no COPY facts, but the write is still a rel. */
	f = extract("COPY users FROM PROGRAM 'cat x'");
	ck_assert(!f->copy.present);
	ck_assert(f->n_rels == 1 && f->rels[0].target);
	keys_free(f);
	f = extract("COPY logs FROM STDIN");
	ck_assert(!f->copy.present);
	ck_assert_int_eq(f->n_rels, 0);
	keys_free(f);
}
END_TEST

START_TEST(test_parse_error_and_empty)
{
	keys_facts_t *f = extract("SELECT * FROM users WHERE id = 1; SELEC 2");
	ck_assert(f->parse_error);
	ck_assert_int_eq(f->n_statements, 0);
	ck_assert_int_eq(f->n_rels, 0);
	ck_assert(!f->truncated && !f->has_insert && !f->copy.present);
	keys_free(f);

	static const char *const empty[] = {"", "   ", "-- nothing\n", "/* c */ ;"};
	for (size_t i = 0; i < sizeof(empty) / sizeof(empty[0]); i++) {
		f = extract(empty[i]);
		ck_assert_msg(!f->parse_error, "[%s] parses", empty[i]);
		ck_assert_int_eq(f->n_statements, 0);
		ck_assert_int_eq(f->n_rels, 0);
		ck_assert_str_eq(describe(f), "");
		keys_free(f);
	}
}
END_TEST

START_TEST(test_length_is_respected)
{
	/* Only sql[0..len) is read: the rest is not part of the statement. */
	const char *sql = "SELECT * FROM users WHERE id = 5 garbage that does not parse";
	keys_facts_t *f =
	    keys_extract(sql, strlen("SELECT * FROM users WHERE id = 5"), tables, N_TABLES);
	ck_assert_ptr_nonnull(f);
	ck_assert_str_eq(describe(f), "users#0 block0: IN 5");
	keys_free(f);

	/* PostgreSQL stops at a NUL; so do we. */
	const char with_nul[] = "SELECT * FROM users WHERE id = 6\0 DELETE FROM users";
	f = keys_extract(with_nul, sizeof(with_nul) - 1, tables, N_TABLES);
	ck_assert_ptr_nonnull(f);
	ck_assert_str_eq(describe(f), "users#0 block0: IN 6");
	keys_free(f);

	/* No tables configured: nothing is reported, nothing breaks. */
	f = keys_extract("SELECT * FROM users", 19, NULL, 0);
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(f->n_rels, 0);
	keys_free(f);
}
END_TEST

/* A text of n alternating AND/OR levels, each one a real tree level. */
static char *nested_bool(int levels)
{
	size_t cap = (size_t)levels * 32 + 64;
	char *sql = malloc(cap);
	ck_assert_ptr_nonnull(sql);
	size_t used = (size_t)snprintf(sql, cap, "SELECT * FROM users WHERE ");
	for (int i = 0; i < levels; i++)
		used += (size_t)snprintf(sql + used, cap - used, "id = %d %s (", i,
		                         i % 2 ? "AND" : "OR");
	used += (size_t)snprintf(sql + used, cap - used, "id = -1");
	for (int i = 0; i < levels; i++)
		sql[used++] = ')';
	sql[used] = '\0';
	return sql;
}

START_TEST(test_deep_nesting_truncates)
{
	/* Shallow enough: complete. */
	char *sql = nested_bool(200);
	keys_facts_t *f = extract(sql);
	ck_assert(!f->truncated);
	ck_assert_int_eq(rel_cond(f, 0)->kind, KC_OR);
	keys_free(f);
	free(sql);

	/* Deeper than KEYS_MAX_DEPTH: parsed, walked up to the bound. */
	sql = nested_bool(KEYS_MAX_DEPTH + 100);
	f = extract(sql);
	ck_assert(f->truncated);
	ck_assert(!f->parse_error);
	ck_assert_int_eq(f->n_rels, 1);
	ck_assert_int_eq(strncmp(describe(f), "truncated; users#0", 18), 0);
	keys_free(f);
	free(sql);

	/* NOT chains give KC_ALL at once, but the search for subqueries
	 * still meets the bound. */
	size_t cap = 4 * (KEYS_MAX_DEPTH + 100) + 64;
	sql = malloc(cap);
	ck_assert_ptr_nonnull(sql);
	strcpy(sql, "SELECT * FROM users WHERE ");
	for (int i = 0; i < KEYS_MAX_DEPTH + 100; i++)
		strcat(sql, "NOT ");
	strcat(sql, "id = 1");
	f = extract(sql);
	ck_assert(f->truncated);
	keys_free(f);
	free(sql);

	/* Too deep to parse safely at all (libpg_query recurses per level):
	 * not parsed, truncated, no rels. */
	int terms = KEYS_MAX_NESTING + 1000;
	sql = malloc((size_t)terms * 2 + 64);
	ck_assert_ptr_nonnull(sql);
	strcpy(sql, "SELECT * FROM users WHERE id = 1");
	char *p = sql + strlen(sql);
	for (int i = 0; i < terms; i++, p += 2)
		memcpy(p, "+1", 2);
	*p = '\0';
	f = extract(sql);
	ck_assert(f->truncated);
	ck_assert(!f->parse_error);
	ck_assert_int_eq(f->n_rels, 0);
	ck_assert_str_eq(describe(f), "truncated");
	keys_free(f);
	free(sql);
}
END_TEST

/* prefix, then n times link (with %d for its number), then suffix. */
static char *repeated(const char *prefix, const char *link, int n, const char *suffix)
{
	size_t cap = strlen(prefix) + strlen(suffix) + (size_t)n * (strlen(link) + 16) + 1;
	char *sql = malloc(cap);
	ck_assert_ptr_nonnull(sql);
	size_t used = (size_t)snprintf(sql, cap, "%s", prefix);
	for (int i = 1; i <= n; i++)
		used += (size_t)snprintf(sql + used, cap - used, link, i);
	snprintf(sql + used, cap - used, "%s", suffix);
	return sql;
}

/* Chains whose links hold AND or WHEN nest one level per link, which
 * counting operators between separators would miss; libpg_query would
 * overflow the stack near 4400 of them on 8 MiB. */
START_TEST(test_deep_chains_are_not_parsed)
{
	static const struct {
		const char *prefix, *link, *suffix;
	} chains[] = {
	    {"SELECT * FROM users u0 ", "JOIN users u%d ON u%1$d.id = 1 AND true ", ""},
	    {"SELECT * FROM users WHERE id = 0 AND true",
	     " UNION SELECT * FROM users WHERE id = %d AND true", ""},
	    {"SELECT ", "CASE WHEN a = %d THEN ", "1"},
	};
	for (size_t i = 0; i < sizeof(chains) / sizeof(chains[0]); i++) {
		char *sql = repeated(chains[i].prefix, chains[i].link, 5000, chains[i].suffix);
		keys_facts_t *f = extract(sql);
		ck_assert_msg(f->truncated && f->n_rels == 0, "%.60s...: truncated %d, %d rels",
		              sql, f->truncated, f->n_rels);
		keys_free(f);
		free(sql);
	}
	/* A short chain is parsed and complete. */
	char *sql = repeated("SELECT * FROM users u0 ", "JOIN users u%d ON u%1$d.id = 1 AND true ",
	                     200, "");
	keys_facts_t *f = extract(sql);
	ck_assert(!f->truncated);
	ck_assert_int_eq(f->n_rels, 201);
	ck_assert_int_eq(rel_cond(f, 200)->kind, KC_IN);
	keys_free(f);
	free(sql);
}
END_TEST

typedef struct {
	const char *sql;
	bool truncated;
	int n_rels;
} stack_probe_t;

static void *extract_on_thread(void *arg)
{
	stack_probe_t *probe = arg;
	keys_facts_t *f = keys_extract(probe->sql, strlen(probe->sql), tables, N_TABLES);
	if (f) {
		probe->truncated = f->truncated;
		probe->n_rels = f->n_rels;
	}
	keys_free(f);
	return NULL;
}

/* Runs keys_extract on a thread with a stack of stack_bytes. */
static stack_probe_t extract_with_stack(const char *sql, size_t stack_bytes)
{
	stack_probe_t probe = {sql, false, -1};
	pthread_attr_t attr;
	pthread_t thread;
	ck_assert_int_eq(pthread_attr_init(&attr), 0);
	ck_assert_int_eq(pthread_attr_setstacksize(&attr, stack_bytes), 0);
	ck_assert_int_eq(pthread_create(&thread, &attr, extract_on_thread, &probe), 0);
	ck_assert_int_eq(pthread_join(thread, NULL), 0);
	pthread_attr_destroy(&attr);
	return probe;
}

/* The depth limit follows the caller's stack: 800 levels fit in 8 MiB but
 * would overflow 1 MiB inside libpg_query (~1.9 KiB per level). */
START_TEST(test_small_stack_lowers_the_limit)
{
	char *deep = repeated("SELECT * FROM users WHERE id = 1", "+%d", 800, "");
	stack_probe_t small = extract_with_stack(deep, 1024 * 1024);
	ck_assert_msg(small.truncated && small.n_rels == 0, "1 MiB: truncated %d, %d rels",
	              small.truncated, small.n_rels);
	stack_probe_t large = extract_with_stack(deep, 8 * 1024 * 1024);
	ck_assert_msg(!large.truncated && large.n_rels == 1, "8 MiB: truncated %d, %d rels",
	              large.truncated, large.n_rels);
	free(deep);

	stack_probe_t plain = extract_with_stack("SELECT * FROM users WHERE id = 1", 1024 * 1024);
	ck_assert(!plain.truncated && plain.n_rels == 1);
}
END_TEST

/* "SELECT * FROM users WHERE id IN (0, 1, ..., n-1)" or the INSERT rows. */
static char *long_list(const char *prefix, const char *item_format, int n, const char *suffix)
{
	size_t cap = strlen(prefix) + strlen(suffix) + (size_t)n * 16 + 16;
	char *sql = malloc(cap);
	ck_assert_ptr_nonnull(sql);
	size_t used = (size_t)snprintf(sql, cap, "%s", prefix);
	for (int i = 0; i < n; i++)
		used += (size_t)snprintf(sql + used, cap - used, item_format, i > 0 ? "," : "", i);
	snprintf(sql + used, cap - used, "%s", suffix);
	return sql;
}

START_TEST(test_caps_truncate)
{
	char *sql = long_list("SELECT * FROM users WHERE id IN (", "%s%d", KEYS_MAX_VALUES, ")");
	keys_facts_t *f = extract(sql);
	ck_assert(!f->truncated);
	ck_assert_int_eq(rel_cond(f, 0)->n_values, KEYS_MAX_VALUES);
	keys_free(f);
	free(sql);

	sql = long_list("SELECT * FROM users WHERE id IN (", "%s%d", KEYS_MAX_VALUES + 1, ")");
	f = extract(sql);
	ck_assert(f->truncated);
	ck_assert_int_eq(rel_cond(f, 0)->kind, KC_ALL);
	ck_assert_int_eq(f->n_values, 0);
	keys_free(f);
	free(sql);

	sql = long_list("INSERT INTO users (id) VALUES ", "%s(%d)", KEYS_MAX_ROWS + 1, "");
	f = extract(sql);
	ck_assert(f->truncated);
	ck_assert(f->has_insert);
	ck_assert_int_eq(f->insert.n_rows, KEYS_MAX_ROWS);
	ck_assert_str_eq(f->values[f->insert.first_row + KEYS_MAX_ROWS - 1].text, "99999");
	keys_free(f);
	free(sql);
}
END_TEST

START_TEST(test_describe_bounds)
{
	keys_facts_t *f = extract("SELECT * FROM users WHERE id IN (1, 2, 3)");
	const char *full = "users#0 block0: IN (1, 2, 3)";
	char out[64];
	ck_assert_uint_eq(keys_describe(f, tables, out, sizeof(out)), strlen(full));
	ck_assert_str_eq(out, full);

	memset(out, 'x', sizeof(out));
	size_t n = keys_describe(f, tables, out, 10);
	ck_assert_uint_eq(n, 9);
	ck_assert_str_eq(out, "users#0 b");
	ck_assert_int_eq(out[10], 'x'); /* nothing written past outlen */

	memset(out, 'x', sizeof(out));
	ck_assert_uint_eq(keys_describe(f, tables, out, 1), 0);
	ck_assert_int_eq(out[0], '\0');
	ck_assert_uint_eq(keys_describe(f, tables, out + 1, 0), 0);
	ck_assert_int_eq(out[1], 'x');
	keys_free(f);
}
END_TEST

/* Every pointer in the facts lies in the facts' own allocation: nothing
 * points into the freed parse tree or the builder. */
START_TEST(test_one_allocation)
{
	keys_facts_t *f = extract("UPDATE users u SET id = 'new' WHERE id IN ('a', $1) "
	                          "AND id BETWEEN 'b' AND 'c'; "
	                          "COPY orders (user_id) FROM STDIN (FORMAT csv, NULL 'n', "
	                          "ENCODING 'UTF8')");
	const char *lo = (const char *)f, *hi = lo + malloc_usable_size(f);
#define INSIDE(p) ck_assert_msg((const char *)(p) >= lo && (const char *)(p) < hi, #p)
	INSIDE(f->rels);
	INSIDE(f->conds);
	INSIDE(f->children);
	INSIDE(f->values);
	INSIDE(f->rels[0].alias);
	for (int i = 0; i < f->n_values; i++)
		if (f->values[i].text)
			INSIDE(f->values[i].text);
	for (int i = 0; i < f->n_conds; i++) {
		if (f->conds[i].lo.text)
			INSIDE(f->conds[i].lo.text);
		if (f->conds[i].hi.text)
			INSIDE(f->conds[i].hi.text);
	}
	INSIDE(f->update.new_key.text);
	INSIDE(f->copy.null_string);
	INSIDE(f->copy.encoding);
#undef INSIDE
	ck_assert_str_eq(describe(f),
	                 "users(u)#0 block0 target: (IN ('a', $1) AND RANGE ['b','c']); "
	                 "orders#1 block1 stmt1 target: ALL; set key='new'; "
	                 "copy #1 cols=1 key@0 csv delim=',' null='n' quote='\"' "
	                 "escape='\"' encoding='UTF8'");
	keys_free(f);
}
END_TEST

START_TEST(test_names)
{
	ck_assert_str_eq(keys_cond_kind_name(KC_ALL), "all");
	ck_assert_str_eq(keys_cond_kind_name(KC_AND), "and");
	ck_assert_str_eq(keys_cond_kind_name(KC_OR), "or");
	ck_assert_str_eq(keys_cond_kind_name(KC_IN), "in");
	ck_assert_str_eq(keys_cond_kind_name(KC_RANGE), "range");
	ck_assert_str_eq(keys_cond_kind_name(KC_NONE), "none");
	ck_assert_str_eq(keys_value_kind_name(KV_LITERAL), "literal");
	ck_assert_str_eq(keys_value_kind_name(KV_PARAM), "param");
	ck_assert_str_eq(keys_value_kind_name(KV_NULL), "null");
	ck_assert_str_eq(keys_value_kind_name(KV_UNKNOWN), "unknown");
}
END_TEST

static Suite *keys_suite(void)
{
	Suite *s = suite_create("keys");
	TCase *tc = tcase_create("describe");
	tcase_add_loop_test(tc, test_describe_table, 0, N_CASES);
	tcase_add_test(tc, test_table_has_enough_cases);
	suite_add_tcase(s, tc);

	tc = tcase_create("fields");
	tcase_add_test(tc, test_literal_texts);
	tcase_add_test(tc, test_params_and_arrays);
	tcase_add_test(tc, test_range_bounds);
	tcase_add_test(tc, test_cond_tree_shape);
	tcase_add_test(tc, test_rel_fields);
	tcase_add_test(tc, test_joins_fields);
	tcase_add_test(tc, test_insert_fields);
	tcase_add_test(tc, test_update_fields);
	tcase_add_test(tc, test_copy_fields);
	tcase_add_test(tc, test_parse_error_and_empty);
	tcase_add_test(tc, test_length_is_respected);
	tcase_add_test(tc, test_one_allocation);
	tcase_add_test(tc, test_describe_bounds);
	tcase_add_test(tc, test_names);
	suite_add_tcase(s, tc);

	tc = tcase_create("bounds");
	tcase_set_timeout(tc, 120); /* megabyte texts, also under ASan */
	tcase_add_test(tc, test_deep_nesting_truncates);
	tcase_add_test(tc, test_deep_chains_are_not_parsed);
	tcase_add_test(tc, test_small_stack_lowers_the_limit);
	tcase_add_test(tc, test_caps_truncate);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(keys_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
