/*
 * keys.h - what one SQL text says about the shard-key values it touches.
 *
 * keys_extract() parses a text with libpg_query (PostgreSQL 15 raw grammar)
 * and reduces it, for the configured sharded tables, to keys_facts_t: every
 * occurrence of such a table (a "rel"), the constraint the statement puts on
 * each rel's key column as a small AND/OR tree of IN lists and ranges, the
 * key equalities that join two rels, and the key values of INSERT ... VALUES
 * rows, UPDATE ... SET key and COPY ... FROM STDIN. The parse tree is freed
 * before returning; the facts are one malloc'd block.
 *
 * Soundness: a constraint is always a superset of the keys the statement can
 * read or write through that rel. Whatever is not understood widens to
 * KC_ALL, never narrows. When truncated is set (a cap or the depth bound was
 * hit) the facts are incomplete: the router must treat every rel as KC_ALL
 * (and may not know every rel).
 *
 * Stack safety: libpg_query and protobuf-c recurse about 1.9 KiB of stack
 * per tree level (measured with libpg_query 15: 2 MiB overflow near 1100
 * levels, 8 MiB near 4370) and cannot be stopped. keys_extract() asks how
 * much stack the calling thread has left and, when a text is long enough to
 * nest deeper than that allows (or than KEYS_MAX_NESTING), measures its
 * nesting with pg_query_scan first; a text that may be too deep is not
 * parsed (truncated, no rels). Our own walk stops at KEYS_MAX_DEPTH node
 * levels (truncated). Where the stack cannot be queried, 8 MiB is assumed.
 */
#ifndef SHARDGATE_ANALYZE_KEYS_H
#define SHARDGATE_ANALYZE_KEYS_H

#include <stdbool.h>
#include <stddef.h>

#define KEYS_MAX_RELS    10000    /* rels kept; more sets truncated */
#define KEYS_MAX_CONDS   100000   /* conds kept; more sets truncated */
#define KEYS_MAX_VALUES  100000   /* IN-list values kept; more sets truncated */
#define KEYS_MAX_ROWS    100000   /* INSERT VALUES rows kept; more sets truncated */
#define KEYS_MAX_JOINS   10000    /* key equalities kept; more sets truncated */
#define KEYS_MAX_DEPTH   1000     /* parse-tree node levels walked; deeper sets truncated */
#define KEYS_MAX_STEPS   20000000 /* tree nodes visited in all; more sets truncated */
#define KEYS_MAX_NESTING 3000     /* deeper texts are never parsed (truncated) */

/* One table the router shards: its (optional) schema, name and key column. */
typedef struct {
	const char *schema; /* NULL: named without schema in the config; matches an unqualified
	                       reference and "public.name". "public" also matches unqualified. */
	const char *name;
	const char *key; /* key column name (lowercase as PostgreSQL folds identifiers), or NULL
	                    for a table without key (reference table): occurrences still reported */
} keys_table_t;

typedef enum { KV_LITERAL, KV_PARAM, KV_NULL, KV_UNKNOWN } keys_value_kind_t;

const char *keys_value_kind_name(keys_value_kind_t kind);

/*
 * One key value as the statement gives it.
 *
 * KV_LITERAL: text is the value in PostgreSQL text form: a string constant's
 * contents (after the lexer's unescaping: '', E'\t', U&'', $$..$$), an
 * integer as PostgreSQL reads it (007 gives "7"), any other number as written
 * ("1.50", "1e3", "10000000000"), with a leading '-' for a negated constant
 * (-5, -(5::int8)), true/false for booleans. Casts are looked through
 * ('42'::bigint, CAST('x' AS text), int8 '5', $1::bigint) except those that
 * may change the value: a cast with a type modifier (varchar(3), numeric(10,2))
 * and a cast of a fractional or exponent number to int2/int4/int8 (4.7::int is
 * 5) give KV_UNKNOWN, as do COLLATE and bit-string constants.
 * KV_PARAM: param is n of $n (1-based).
 * array: the value is an array of keys: = ANY($1) (KV_PARAM), or a literal
 * array: = ANY('{1,2,3}'::int[]) (KV_LITERAL, text is the array literal
 * "{1,2,3}", to be parsed by the caller).
 */
typedef struct {
	keys_value_kind_t kind;
	const char *text; /* KV_LITERAL only; NULL otherwise */
	int param;        /* KV_PARAM only */
	bool array;
} keys_value_t;

typedef enum {
	KC_ALL,   /* no constraint known: any key */
	KC_AND,   /* all children */
	KC_OR,    /* any child */
	KC_IN,    /* key equals one of values[first_value .. first_value+n_values) (key = v is an
	             IN of one; key IN (...); key = ANY(ARRAY[...]); key = ANY($n) or
	             = ANY('{...}') gives one value with array = true). NULLs are dropped. */
	KC_RANGE, /* lo <(=) key <(=) hi, either side optional: <, <=, >, >=, BETWEEN (also with
	             the key on the right, operator flipped); NOT BETWEEN, BETWEEN SYMMETRIC give
	             KC_ALL */
	KC_NONE   /* no key can match: key = NULL, key IS NULL (shard keys are never NULL),
	             key = ANY('{}'), key = ANY(ARRAY[]), an AND with a KC_NONE child */
} keys_cond_kind_t;

const char *keys_cond_kind_name(keys_cond_kind_t kind);

/*
 * A node of a constraint tree. Trees are simplified as they are built: AND
 * drops KC_ALL children and is KC_NONE if any child is; OR drops KC_NONE
 * children and is KC_ALL if any child is; nested ANDs (ORs) are flattened; an
 * AND or OR of one child is that child. So a KC_AND/KC_OR node has at least
 * two children and none of them is KC_ALL or KC_NONE.
 */
typedef struct {
	keys_cond_kind_t kind;
	int first_child, n_children; /* KC_AND/KC_OR: indices into keys_facts_t.children[],
	                                which hold indices into conds[] */
	int first_value, n_values;   /* KC_IN: indices into keys_facts_t.values[] */
	keys_value_t lo, hi;         /* KC_RANGE (KV_LITERAL or KV_PARAM); KV_UNKNOWN if absent */
	bool has_lo, lo_inclusive, has_hi, hi_inclusive;
} keys_cond_t;

/*
 * One occurrence of a configured table in the statement: FROM and JOIN items
 * (also TABLESAMPLE), UPDATE ... FROM, DELETE ... USING, MERGE source, the
 * target of INSERT/UPDATE/DELETE/MERGE/COPY, and the same inside sub-selects,
 * CTE bodies (writable ones too) and the queries of EXPLAIN, CREATE TABLE AS,
 * DECLARE, PREPARE and COPY (query) TO. Tables named by other utility
 * statements (TRUNCATE, LOCK, ALTER, ...) and SELECT INTO targets are not.
 */
typedef struct {
	int table;          /* index into the keys_table_t array */
	const char *alias;  /* alias, or NULL */
	int statement;      /* index of the top-level statement in a multi-statement text */
	int block;          /* query block (one SELECT/INSERT/UPDATE/DELETE/MERGE/COPY level; each
	                       subquery, CTE body and set-operation branch is a block of its own,
	                       and so is the set operation itself), unique within the facts */
	int parent_block;   /* the enclosing block, -1 at top level */
	bool target;        /* written: INSERT/UPDATE/DELETE/MERGE target or COPY FROM */
	bool nullable_side; /* on the nullable side of an outer join (LEFT JOIN's right item,
	                       RIGHT's left, FULL both, at any depth) */
	int cond;           /* root index in conds[] of the constraint on this rel's key column,
	                       the conjunction of what its block's WHERE says and, unless the rel
	                       is on a nullable side, the ON quals of the INNER joins covering it.
	                       AND/OR structure is kept; NOT, HAVING, subqueries, expressions and
	                       outer-join ON quals give KC_ALL. On a nullable side, key IS NULL
	                       gives KC_ALL, not KC_NONE (null-extended rows do match it). INSERT
	                       targets, MERGE and COPY rels and rels of tables without key:
	                       KC_ALL. */
} keys_rel_t;

/*
 * An equality between the key columns of two rels of the same block, in a
 * conjunctive position: a.key = b.key at the top of WHERE or in its top-level
 * AND chain, or in the top-level AND chain of a JOIN's ON, or JOIN ... USING
 * (col) with col the key of a rel on each side. rel_a < rel_b.
 *
 * outer: the equality is in an outer join's ON/USING or in MERGE's ON. It
 * does not filter the statement's rows, but it still means that the rows of
 * one rel that meet a row of the other have the same key (co-location), and
 * the constraint of a rel still carries over to the other one through it (a
 * nullable side's constraint comes from WHERE only, which is strict).
 * Correlated equalities (a sub-block's key = an outer block's key) are not
 * recorded: NOT EXISTS and scalar subqueries make them one-way.
 */
typedef struct {
	int rel_a, rel_b;
	bool outer;
} keys_join_t;

/*
 * The first top-level INSERT whose target is a configured table.
 * rows: the key value of each row (values[first_row .. first_row+n_rows)):
 * KV_UNKNOWN for DEFAULT, an expression, a key absent from the column list
 * (its default applies) and for every row when there is no column list (the
 * key's position in the table is not known here). DEFAULT VALUES is one
 * KV_UNKNOWN row; INSERT ... SELECT has no rows.
 */
typedef struct {
	int rel;             /* the INSERT's target rel (index into rels) */
	bool has_columns;    /* an explicit column list */
	int key_position;    /* 0-based position of the key in the column list; -1 when absent
	                        from it, when there is no list, or for a table without key */
	int n_columns;       /* columns per row: the list's length, else the first VALUES row's
	                        width; 0 for DEFAULT VALUES and SELECT without list */
	bool select;         /* INSERT ... SELECT, or a VALUES list with ORDER BY/LIMIT/OFFSET/
	                        locking: rows unknown */
	bool default_values; /* INSERT ... DEFAULT VALUES */
	bool on_conflict;
	bool returning;
	int first_row, n_rows;
} keys_insert_t;

/* The first top-level COPY FROM STDIN into a configured table. */
typedef struct {
	bool present;
	int rel;
	bool has_columns;
	int key_position;        /* 0-based in the column list; -1 absent or no list */
	int n_columns;           /* the list's length; 0 without list */
	char format;             /* 't' text, 'c' csv, 'b' binary */
	char delimiter;          /* default '\t' text, ',' csv; '\0' binary */
	const char *null_string; /* default "\\N" text, "" csv; NULL binary */
	bool header;             /* HEADER, HEADER true, HEADER MATCH */
	char quote, escape;      /* csv: quote default '"', escape defaults to quote;
	                            text: '\0' and '\\'; binary: '\0' */
	const char *encoding;    /* ENCODING option, or NULL */
} keys_copy_t;

/*
 * Whether any statement of the text may change a configured table's key:
 * UPDATE ... SET key = v (also (a, key) = (...) and in writable CTEs), MERGE
 * ... UPDATE SET key, INSERT ... ON CONFLICT DO UPDATE SET key. new_key is
 * the assigned value (KV_UNKNOWN for an expression, a subquery, DEFAULT, or
 * when more than one assignment sets a key).
 */
typedef struct {
	bool sets_key;
	keys_value_t new_key;
} keys_update_t;

typedef struct keys_facts {
	bool parse_error;
	int n_statements;
	keys_rel_t *rels;
	int n_rels;
	keys_cond_t *conds;
	int n_conds;
	int *children;
	int n_children;
	keys_value_t *values;
	int n_values;
	keys_join_t *joins;
	int n_joins;
	keys_insert_t insert;
	bool has_insert; /* of the first top-level INSERT into a configured table */
	keys_update_t update;
	keys_copy_t copy;
	bool truncated; /* a cap or depth bound was hit: treat everything as KC_ALL */
} keys_facts_t;

/*
 * Extracts the facts of sql[0..len) (up to a NUL, as PostgreSQL reads it) for
 * the given tables. Returns NULL only when out of memory; a parse error gives
 * facts with parse_error set and nothing else. Free with keys_free. The facts
 * are one allocation holding every array and string; tables is not kept.
 */
keys_facts_t *keys_extract(const char *sql, size_t len, const keys_table_t *tables, int n_tables);
void keys_free(keys_facts_t *f);

/*
 * Whether the NUL-terminated sql (len bytes) may nest deeper than the
 * calling thread's remaining stack lets libpg_query parse (its parser, its
 * protobuf output and unpacking recurse per tree level, ~1.9 KiB each):
 * from the tokens alone, counting JOIN and set-operation chains and CASE
 * nesting. Every parse of client text must ask first (analyze.c does).
 */
bool keys_too_deep_to_parse(const char *sql, size_t len);

/*
 * Debug rendering for `shardgate explain` and tests, parts separated by "; ":
 *   "truncated" and "parse error" when set;
 *   per rel: "app.users(u)#0 block1 in block0 stmt1 target nullable: COND" (the schema is
 *     the configured one; "in", "stmt", "target", "nullable" only when they apply);
 *   COND: ALL, NONE, "IN 5", "IN (1, 'a b', $2)", "IN ANY($1)", "IN ANY('{1,2}')",
 *     "RANGE [10,20)", "RANGE (5,)", "RANGE (,$1]", "(c AND c)", "(c OR c)"; literals that
 *     look like numbers are shown bare, others single-quoted with '' for ', unknown as ?;
 *   "join #0=#1", "join #0=#2 outer";
 *   "insert #0 cols=3 key@1 rows=(5, ?)", without a list "insert #0 nocols width=2 rows=(?)",
 *     then "select", "default", "on_conflict", "returning" when set;
 *   "set key=5";
 *   "copy #0 cols=2 key@0 csv delim=',' null='' header quote='\"' escape='\"' encoding='x'".
 * Writes at most outlen bytes including a terminating NUL (when outlen > 0) and
 * returns the length written, without the NUL.
 */
size_t keys_describe(const keys_facts_t *f, const keys_table_t *tables, char *out, size_t outlen);

#endif
