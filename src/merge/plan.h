/*
 * plan.h - how one SELECT runs on several shards, and how their rows merge
 * back into the result PostgreSQL would have given for the whole table.
 *
 * merge_plan_build() parses the statement (libpg_query, PostgreSQL 15
 * grammar) and decides:
 *
 *   - shard_sql, the text every shard runs. It is the original text unless
 *     the merge needs more from the shards: hidden columns appended to the
 *     target list (ORDER BY items that are not output columns, GROUP BY
 *     keys, aggregates used by ORDER BY or HAVING), avg(x) split into
 *     sum(x) and a hidden count(x), LIMIT n OFFSET m sent as LIMIT n + m,
 *     and for aggregates ORDER BY, LIMIT, HAVING and DISTINCT removed
 *     (they apply to the merged groups). A rewritten text is libpg_query's
 *     deparse of the modified tree: comments (hints) are gone by then.
 *   - the merge instructions below, which merger_new() (merge.h) follows.
 *
 * Columns. In the row modes (CONCAT, ORDERED) a shard row is the client's
 * row followed by plan->n_hidden hidden columns the merger strips. Because a
 * target list may hold a `*`, the number of visible columns is known only
 * from the shards' RowDescription: a column is named relative to the start
 * of the row, to the end of the visible columns, or as the j-th hidden one.
 * In AGGREGATE mode (no `*` allowed) each shard row is folded into a group,
 * and every group yields a "result row": the visible result columns, then
 * plan->n_hidden hidden ones; sort keys and HAVING name result columns.
 *
 * What merges: one SELECT (or a UNION [ALL] of plain SELECTs) with ORDER
 * BY (output positions, output names, expressions; ASC/DESC, NULLS
 * FIRST/LAST), LIMIT/OFFSET/FETCH FIRST [WITH TIES] as integer constants or
 * $n, DISTINCT and DISTINCT ON, and top-level count, sum, min, max, avg,
 * bool_and, bool_or and every (FILTER allowed) with GROUP BY and HAVING
 * (comparisons with constants or $n, IS [NOT] NULL, AND/OR/NOT). Whatever
 * would need the whole table in one place is refused with the reason.
 *
 * Scope: only the top-level SELECT is planned. Subqueries, CTEs and joins
 * run on every shard as written; whether their per-shard result equals the
 * global one (co-located on the shard key, or over replicated tables) is
 * the caller's decision, made before planning, exactly as for joins.
 * Aggregates are recognised by name (count, sum, min, max, avg, bool_and,
 * bool_or, every; other built-in aggregates are refused): a user-defined
 * aggregate is indistinguishable from a plain function here.
 *
 * Text ordering is bytewise (C collation), as the merger compares it.
 *
 * The text is parsed again here: plan only statements the analyzer
 * (analyze.h) parsed, so that its nesting limit protects this parse too.
 */
#ifndef SHARDGATE_MERGE_PLAN_H
#define SHARDGATE_MERGE_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MERGE_MAX_COLUMNS  1664           /* PostgreSQL's MaxTupleAttributeNumber */
#define MERGE_MAX_SQL_LEN  (1024 * 1024)  /* longer statements are not planned */
#define MERGE_HIDDEN_ALIAS "__sg_hidden_" /* + number: names of hidden shard columns */

typedef enum {
	MERGE_MODE_CONCAT,    /* rows flow through as they arrive */
	MERGE_MODE_ORDERED,   /* k-way merge of per-shard sorted streams */
	MERGE_MODE_AGGREGATE, /* partial aggregates combined per group, then sorted */
} merge_mode_t;

const char *merge_mode_name(merge_mode_t mode);

typedef enum {
	MERGE_COL_FROM_START, /* index-th column of the row, 0-based */
	MERGE_COL_FROM_END,   /* index-th visible column counted back from the last
	                         visible one (a target after a `*`) */
	MERGE_COL_HIDDEN,     /* index-th hidden column, after the visible ones */
} merge_col_base_t;

typedef struct {
	merge_col_base_t base;
	int index;
} merge_colref_t;

typedef struct {
	merge_colref_t col;
	bool descending;
	bool nulls_first; /* PostgreSQL's default: true for DESC, false for ASC */
} merge_sort_key_t;

typedef enum {
	MERGE_BOUND_NONE,  /* no LIMIT (or LIMIT ALL / NULL), no OFFSET */
	MERGE_BOUND_CONST, /* value */
	MERGE_BOUND_PARAM, /* the Bind parameter $param, read by merger_new() */
} merge_bound_kind_t;

typedef struct {
	merge_bound_kind_t kind;
	int64_t value;
	int param; /* 1-based */
} merge_bound_t;

/* How an AGGREGATE-mode result column is computed from the shards' columns. */
typedef enum {
	MERGE_AGG_GROUP, /* not an aggregate: the same in every row of a group; first seen */
	MERGE_AGG_COUNT, /* sum of the shards' counts (bigint) */
	MERGE_AGG_SUM,   /* sum of the shards' sums, exact for bigint and numeric */
	MERGE_AGG_MIN,
	MERGE_AGG_MAX,
	MERGE_AGG_AVG,      /* sum of sums (shard_col) / sum of counts (shard_col2) */
	MERGE_AGG_BOOL_AND, /* bool_and, every */
	MERGE_AGG_BOOL_OR,
} merge_agg_t;

const char *merge_agg_name(merge_agg_t agg);

typedef struct {
	merge_agg_t agg;
	int shard_col;  /* 0-based column of the shard row */
	int shard_col2; /* AVG: the hidden count column; else -1 */
} merge_result_col_t;

/* HAVING, evaluated on result rows with SQL's three-valued logic. */
typedef enum {
	MERGE_COND_AND,
	MERGE_COND_OR,
	MERGE_COND_NOT,
	MERGE_COND_CMP,
	MERGE_COND_IS_NULL,
	MERGE_COND_IS_NOT_NULL,
} merge_cond_kind_t;

typedef enum {
	MERGE_CMP_EQ,
	MERGE_CMP_NE,
	MERGE_CMP_LT,
	MERGE_CMP_LE,
	MERGE_CMP_GT,
	MERGE_CMP_GE,
} merge_cmp_op_t;

typedef enum {
	MERGE_OPERAND_RESULT, /* result column index (visible or hidden) */
	MERGE_OPERAND_CONST,  /* text, read as the other operand's type */
	MERGE_OPERAND_PARAM,  /* the Bind parameter $index (text format) */
	MERGE_OPERAND_NULL,
} merge_operand_kind_t;

typedef struct {
	merge_operand_kind_t kind;
	int index;
	char *text;
} merge_operand_t;

typedef struct {
	merge_cond_kind_t kind;
	merge_cmp_op_t op;        /* CMP */
	merge_operand_t lhs, rhs; /* CMP; lhs alone for the NULL tests */
	int first_arg, n_args;    /* AND/OR/NOT: plan->cond_args[first_arg ...] */
} merge_cond_t;

/*
 * A plan. Built by merge_plan_build(), immutable afterwards, shareable by
 * any number of mergers (and threads). Fields are read-only outside
 * src/merge/.
 */
struct merge_plan {
	char *shard_sql;
	bool rewritten; /* shard_sql differs from the statement's text */
	merge_mode_t mode;

	int n_hidden; /* trailing hidden columns of the row (shard row or result row) */

	merge_sort_key_t *sort;
	int n_sort;

	bool distinct;               /* SELECT DISTINCT, or UNION without ALL */
	merge_colref_t *distinct_on; /* SELECT DISTINCT ON (...): the key columns */
	int n_distinct_on;

	merge_bound_t limit;
	merge_bound_t offset;
	bool with_ties; /* FETCH FIRST ... WITH TIES */

	/* AGGREGATE mode */
	int n_shard_cols; /* the shard row's width, known in advance (no `*`) */
	merge_result_col_t *results;
	int n_results;   /* visible + n_hidden */
	int *group_cols; /* shard columns holding the GROUP BY keys */
	int n_group_cols;
	bool grouped; /* GROUP BY present: no rows in, no rows out */
	merge_cond_t *conds;
	int n_conds;
	int *cond_args;
	int n_cond_args;
	int having; /* root condition, -1 when no HAVING */
};

typedef struct merge_plan merge_plan_t;

/*
 * Plans a read that runs on several shards. sql may contain $n parameters.
 * On success returns a plan whose shard_sql is the text to send to every
 * shard (NUL-terminated), possibly rewritten, plus the merge instructions.
 * On a statement that cannot be merged correctly returns NULL and writes
 * the reason into err (the caller answers SQLSTATE 0A000), e.g. "window
 * functions over several shards are not supported". Also NULL, with a
 * message, when the text does not parse or memory runs out.
 */
merge_plan_t *merge_plan_build(const char *sql, char *err, size_t errlen);

/* NULL is a no-op. */
void merge_plan_free(merge_plan_t *p);

const char *merge_plan_shard_sql(const merge_plan_t *p);

/*
 * A one-line summary of the instructions for logs and tests, e.g.
 * "ordered sort=[0 asc nulls last, h0 desc nulls first] limit=10 offset=5
 * hidden=1".
 * Returns the length it needed (snprintf-like).
 */
size_t merge_plan_describe(const merge_plan_t *p, char *out, size_t outlen);

/*
 * The result-format codes for the shards' Bind, from the client's Bind codes
 * (n_client = 0: all text, 1: one code for all columns, or one per client
 * column). Hidden columns and avg's count are asked in text unless the
 * client asked for one code for everything. Writes at most out_cap codes;
 * *n_out = how many the shard Bind carries. False when n_client is neither
 * 0, 1 nor the number of client columns (when the plan knows it), or when
 * out_cap is too small.
 */
bool merge_plan_shard_formats(const merge_plan_t *p, int n_client, const int16_t *client,
                              int16_t *out, int out_cap, int *n_out);

#endif
