/*
 * plan.c - one SELECT in; the shards' SQL and the merge instructions out.
 *
 * The statement is parsed once with libpg_query. The parse tree is never
 * modified: the shard statement is a copy of the top SelectStmt (on the
 * stack) whose lists point at the original subtrees and at nodes this file
 * allocates from a small arena. The copy is packed and deparsed, then the
 * arena and the tree are freed. When nothing had to change, the shards get
 * the original text, byte for byte.
 *
 * Output columns are resolved as PostgreSQL's parse_clause.c does:
 * findTargetlistEntrySQL92() (an ORDER BY / DISTINCT ON position or bare
 * output-column name) before findTargetlistEntrySQL99() (an expression equal
 * to a target's). Expressions are compared by their deparsed text, which
 * libpg_query normalises (case, spacing, parentheses). Output names follow
 * FigureColnameInternal() (parse_target.c).
 */
#include "merge/plan.h"

#include "analyze/pgtree.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pg_query.h>
#include <pg_query/pg_query.pb-c.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PLAN_MAX_WALK_DEPTH 10000 /* deeper expressions are refused, never recursed into */
#define PLAN_OOM            "out of memory planning a statement over several shards"

/* ---- names ---- */

const char *merge_mode_name(merge_mode_t mode)
{
	switch (mode) {
	case MERGE_MODE_CONCAT:
		return "concat";
	case MERGE_MODE_ORDERED:
		return "ordered";
	case MERGE_MODE_AGGREGATE:
		return "aggregate";
	}
	return "unknown";
}

const char *merge_agg_name(merge_agg_t agg)
{
	switch (agg) {
	case MERGE_AGG_GROUP:
		return "group";
	case MERGE_AGG_COUNT:
		return "count";
	case MERGE_AGG_SUM:
		return "sum";
	case MERGE_AGG_MIN:
		return "min";
	case MERGE_AGG_MAX:
		return "max";
	case MERGE_AGG_AVG:
		return "avg";
	case MERGE_AGG_BOOL_AND:
		return "bool_and";
	case MERGE_AGG_BOOL_OR:
		return "bool_or";
	}
	return "unknown";
}

/* ---- the planner's state ---- */

typedef struct {
	char *err;
	size_t errlen;
	bool failed;

	/* Everything allocated for the shard statement; freed when planning ends. */
	void **allocs;
	size_t n_allocs, cap_allocs;
	PgQuery__ParseResult **snippets; /* trees of parsed helper expressions */
	size_t n_snippets, cap_snippets;

	PgQuery__SelectStmt *stmt; /* the statement, owned by the parse tree */
	int n_targets;
	char **target_sql;        /* deparsed target expression, computed on demand */
	const char **target_name; /* output column name; NULL for "?column?" and `*` */
	bool *target_is_star;
	int first_star, last_star; /* -1 when the target list has no `*` */

	/* The shard's target list: the visible targets (possibly rewritten),
	 * then the hidden ones. shard_sql[] holds each one's deparsed
	 * expression so that a hidden column is never added twice. */
	PgQuery__Node **shard_targets;
	char **shard_sql;
	int n_shard_targets, cap_shard_targets;
	int n_hidden_shard;

	/* AGGREGATE mode: each result column's expression, deparsed. */
	char **result_sql;
	int cap_results, cap_result_sql;
	int cap_conds, cap_cond_args;

	bool changed; /* shard_sql must be deparsed from the modified statement */
	merge_plan_t *plan;
} planner_t;

/* Records the first reason planning failed; always returns false. */
static bool refuse(planner_t *pl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool refuse(planner_t *pl, const char *fmt, ...)
{
	if (pl->failed)
		return false;
	pl->failed = true;
	if (pl->err && pl->errlen > 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(pl->err, pl->errlen, fmt, ap);
		va_end(ap);
	}
	return false;
}

static void *plan_alloc(planner_t *pl, size_t size)
{
	if (pl->n_allocs == pl->cap_allocs) {
		size_t cap = pl->cap_allocs ? pl->cap_allocs * 2 : 32;
		void **grown = realloc(pl->allocs, cap * sizeof(*grown));
		if (!grown) {
			refuse(pl, PLAN_OOM);
			return NULL;
		}
		pl->allocs = grown;
		pl->cap_allocs = cap;
	}
	void *p = calloc(1, size ? size : 1);
	if (!p) {
		refuse(pl, PLAN_OOM);
		return NULL;
	}
	pl->allocs[pl->n_allocs++] = p;
	return p;
}

static char *plan_strdup(planner_t *pl, const char *s)
{
	size_t len = strlen(s);
	char *copy = plan_alloc(pl, len + 1);
	if (copy)
		memcpy(copy, s, len + 1);
	return copy;
}

/* A string the plan owns (freed by merge_plan_free). */
static char *plan_own_string(planner_t *pl, const char *s)
{
	char *copy = strdup(s);
	if (!copy)
		refuse(pl, PLAN_OOM);
	return copy;
}

/*
 * Makes room for need items in array (capacity *cap); returns the array,
 * moved or not, or NULL (out of memory: the old array is still valid).
 */
static void *grow_array(planner_t *pl, void *array, int *cap, int need, size_t item_size)
{
	if (need <= *cap)
		return array;
	int new_cap = *cap ? *cap * 2 : 8;
	while (new_cap < need)
		new_cap *= 2;
	void *grown = realloc(array, (size_t)new_cap * item_size);
	if (!grown) {
		refuse(pl, PLAN_OOM);
		return NULL;
	}
	*cap = new_cap;
	return grown;
}

/* ---- deparsing ---- */

/* Deparses a statement made of one SelectStmt; malloc'd text or NULL. */
static char *deparse_select(PgQuery__SelectStmt *select, char *why, size_t whylen)
{
	PgQuery__Node node = PG_QUERY__NODE__INIT;
	node.node_case = PG_QUERY__NODE__NODE_SELECT_STMT;
	node.select_stmt = select;
	PgQuery__RawStmt raw = PG_QUERY__RAW_STMT__INIT;
	raw.stmt = &node;
	PgQuery__RawStmt *stmts[1] = {&raw};
	PgQuery__ParseResult result = PG_QUERY__PARSE_RESULT__INIT;
	result.version = PG_VERSION_NUM;
	result.n_stmts = 1;
	result.stmts = stmts;

	size_t len = pg_query__parse_result__get_packed_size(&result);
	char *packed = malloc(len ? len : 1);
	if (!packed) {
		snprintf(why, whylen, "out of memory");
		return NULL;
	}
	pg_query__parse_result__pack(&result, (uint8_t *)packed);
	PgQueryProtobuf tree = {len, packed};
	PgQueryDeparseResult deparsed = pg_query_deparse_protobuf(tree);
	free(packed);
	char *text = NULL;
	if (deparsed.error)
		snprintf(why, whylen, "%s", deparsed.error->message);
	else if (!(text = strdup(deparsed.query)))
		snprintf(why, whylen, "out of memory");
	pg_query_free_deparse_result(deparsed);
	return text;
}

/* The deparsed text of one expression (arena-owned), or NULL. */
static char *deparse_expr(planner_t *pl, PgQuery__Node *expr)
{
	PgQuery__ResTarget target = PG_QUERY__RES_TARGET__INIT;
	target.val = expr;
	PgQuery__Node target_node = PG_QUERY__NODE__INIT;
	target_node.node_case = PG_QUERY__NODE__NODE_RES_TARGET;
	target_node.res_target = &target;
	PgQuery__Node *targets[1] = {&target_node};
	PgQuery__SelectStmt select = PG_QUERY__SELECT_STMT__INIT;
	select.n_target_list = 1;
	select.target_list = targets;
	select.limit_option = PG_QUERY__LIMIT_OPTION__LIMIT_OPTION_DEFAULT;
	select.op = PG_QUERY__SET_OPERATION__SETOP_NONE;

	char why[256];
	char *text = deparse_select(&select, why, sizeof(why));
	if (!text) {
		refuse(pl, "cannot plan the statement over several shards: %s", why);
		return NULL;
	}
	static const char prefix[] = "SELECT ";
	const char *expr_text = text;
	if (strncmp(text, prefix, sizeof(prefix) - 1) == 0)
		expr_text += sizeof(prefix) - 1;
	char *copy = plan_strdup(pl, expr_text);
	free(text);
	return copy;
}

/*
 * Parses "SELECT <expression>" and returns the expression's node. The tree
 * stays alive until planning ends. Used for the few expressions the shard
 * statement needs that are easier written than built (LIMIT $1::int8 + 5).
 */
static PgQuery__Node *parse_snippet(planner_t *pl, const char *expr_text)
{
	char sql[256];
	snprintf(sql, sizeof(sql), "SELECT %s", expr_text);
	if (pl->n_snippets == pl->cap_snippets) {
		size_t cap = pl->cap_snippets ? pl->cap_snippets * 2 : 4;
		PgQuery__ParseResult **grown = realloc(pl->snippets, cap * sizeof(*grown));
		if (!grown) {
			refuse(pl, PLAN_OOM);
			return NULL;
		}
		pl->snippets = grown;
		pl->cap_snippets = cap;
	}
	PgQueryProtobufParseResult parsed = pg_query_parse_protobuf(sql);
	if (parsed.error) {
		refuse(pl, "cannot plan the statement over several shards: %s",
		       parsed.error->message);
		pg_query_free_protobuf_parse_result(parsed);
		return NULL;
	}
	PgQuery__ParseResult *tree = pg_query__parse_result__unpack(
	    NULL, parsed.parse_tree.len, (const uint8_t *)parsed.parse_tree.data);
	pg_query_free_protobuf_parse_result(parsed);
	if (!tree) {
		refuse(pl, PLAN_OOM);
		return NULL;
	}
	pl->snippets[pl->n_snippets++] = tree;
	return tree->stmts[0]->stmt->select_stmt->target_list[0]->res_target->val;
}

/* ---- small readers of the tree ---- */

static const char *string_value(const PgQuery__Node *node)
{
	if (node && node->node_case == PG_QUERY__NODE__NODE_STRING && node->string)
		return node->string->sval;
	return NULL;
}

/* A bare `name` (one-field ColumnRef): its name, else NULL. */
static const char *bare_column_name(const PgQuery__Node *node)
{
	if (!node || node->node_case != PG_QUERY__NODE__NODE_COLUMN_REF)
		return NULL;
	const PgQuery__ColumnRef *ref = node->column_ref;
	return ref->n_fields == 1 ? string_value(ref->fields[0]) : NULL;
}

static bool is_star(const PgQuery__Node *node)
{
	if (!node || node->node_case != PG_QUERY__NODE__NODE_COLUMN_REF)
		return false;
	const PgQuery__ColumnRef *ref = node->column_ref;
	return ref->n_fields > 0 &&
	       ref->fields[ref->n_fields - 1]->node_case == PG_QUERY__NODE__NODE_A_STAR;
}

/* `ORDER BY 2`: an integer constant is an output position. */
static bool is_position(const PgQuery__Node *node, int *pos)
{
	if (!node || node->node_case != PG_QUERY__NODE__NODE_A_CONST)
		return false;
	const PgQuery__AConst *c = node->a_const;
	if (c->isnull || c->val_case != PG_QUERY__A__CONST__VAL_IVAL)
		return false;
	*pos = c->ival ? c->ival->ival : 0;
	return true;
}

/* The called function's name, when unqualified or in pg_catalog; else NULL. */
static const char *builtin_function_name(const PgQuery__FuncCall *call)
{
	if (call->n_funcname == 1)
		return string_value(call->funcname[0]);
	if (call->n_funcname == 2) {
		const char *schema = string_value(call->funcname[0]);
		if (schema && strcmp(schema, "pg_catalog") == 0)
			return string_value(call->funcname[1]);
	}
	return NULL;
}

static const char *const builtin_aggregates[] = {
    "array_agg",
    "avg",
    "bit_and",
    "bit_or",
    "bit_xor",
    "bool_and",
    "bool_or",
    "corr",
    "count",
    "covar_pop",
    "covar_samp",
    "cume_dist",
    "dense_rank",
    "every",
    "json_agg",
    "json_object_agg",
    "jsonb_agg",
    "jsonb_object_agg",
    "max",
    "min",
    "mode",
    "percent_rank",
    "percentile_cont",
    "percentile_disc",
    "range_agg",
    "range_intersect_agg",
    "rank",
    "regr_avgx",
    "regr_avgy",
    "regr_count",
    "regr_intercept",
    "regr_r2",
    "regr_slope",
    "regr_sxx",
    "regr_sxy",
    "regr_syy",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "string_agg",
    "sum",
    "var_pop",
    "var_samp",
    "variance",
    "xmlagg",
};

/*
 * Whether a call is an aggregate: aggregate syntax (count(*), DISTINCT,
 * ORDER BY, FILTER, WITHIN GROUP) or the name of a built-in aggregate. A
 * call with OVER is a window function, not an aggregate.
 */
static bool is_aggregate_call(const PgQuery__FuncCall *call)
{
	if (call->over)
		return false;
	if (call->agg_star || call->agg_distinct || call->n_agg_order > 0 || call->agg_filter ||
	    call->agg_within_group)
		return true;
	const char *name = builtin_function_name(call);
	if (!name)
		return false;
	for (size_t i = 0; i < sizeof(builtin_aggregates) / sizeof(builtin_aggregates[0]); i++)
		if (strcmp(name, builtin_aggregates[i]) == 0)
			return true;
	return false;
}

/* What an expression holds at its own query level (subqueries are theirs). */
typedef struct {
	int aggregates;
	bool window;
	bool grouping_func;
	bool too_deep;
} expr_scan_t;

/* Notes window functions, aggregates and GROUPING() (pgtree.h), stopping at
 * a nested SELECT: its aggregates belong to it. */
static pgtree_action_t scan_visit(const ProtobufCMessage *msg, void *arg)
{
	expr_scan_t *scan = arg;
	const ProtobufCMessageDescriptor *d = msg->descriptor;
	if (d == &pg_query__select_stmt__descriptor)
		return PGTREE_SKIP;
	if (d == &pg_query__func_call__descriptor) {
		const PgQuery__FuncCall *call = (const PgQuery__FuncCall *)msg;
		if (call->over)
			scan->window = true;
		else if (is_aggregate_call(call))
			scan->aggregates++;
	} else if (d == &pg_query__grouping_func__descriptor) {
		scan->grouping_func = true;
	}
	return PGTREE_DESCEND;
}

static void scan_expr(const ProtobufCMessage *msg, expr_scan_t *scan)
{
	if (!pgtree_walk(msg, PLAN_MAX_WALK_DEPTH, scan_visit, scan))
		scan->too_deep = true;
}

static bool scan_node(planner_t *pl, const PgQuery__Node *node, expr_scan_t *scan)
{
	memset(scan, 0, sizeof(*scan));
	if (node)
		scan_expr(&node->base, scan);
	if (scan->too_deep)
		return refuse(pl, "expression nested too deeply to plan over several shards");
	if (scan->window)
		return refuse(pl, "window functions over several shards are not supported");
	if (scan->grouping_func)
		return refuse(pl, "GROUPING() over several shards is not supported");
	return true;
}

/* ---- output column names: PostgreSQL's FigureColnameInternal() ---- */

static int figure_colname(const PgQuery__Node *node, const char **name, int depth)
{
	if (!node || depth > PLAN_MAX_WALK_DEPTH)
		return 0;
	switch (node->node_case) {
	case PG_QUERY__NODE__NODE_COLUMN_REF: {
		const PgQuery__ColumnRef *ref = node->column_ref;
		const char *last = NULL;
		for (size_t i = 0; i < ref->n_fields; i++) {
			const char *field = string_value(ref->fields[i]);
			if (field)
				last = field;
		}
		if (last) {
			*name = last;
			return 2;
		}
		return 0;
	}
	case PG_QUERY__NODE__NODE_A_INDIRECTION: {
		const PgQuery__AIndirection *ind = node->a_indirection;
		const char *last = NULL;
		for (size_t i = 0; i < ind->n_indirection; i++) {
			const char *field = string_value(ind->indirection[i]);
			if (field)
				last = field;
		}
		if (last) {
			*name = last;
			return 2;
		}
		return figure_colname(ind->arg, name, depth + 1);
	}
	case PG_QUERY__NODE__NODE_FUNC_CALL: {
		const PgQuery__FuncCall *call = node->func_call;
		if (call->n_funcname > 0 && string_value(call->funcname[call->n_funcname - 1])) {
			*name = string_value(call->funcname[call->n_funcname - 1]);
			return 2;
		}
		return 0;
	}
	case PG_QUERY__NODE__NODE_A_EXPR:
		if (node->a_expr->kind == PG_QUERY__A__EXPR__KIND__AEXPR_NULLIF) {
			*name = "nullif";
			return 2;
		}
		return 0;
	case PG_QUERY__NODE__NODE_TYPE_CAST: {
		int strength = figure_colname(node->type_cast->arg, name, depth + 1);
		const PgQuery__TypeName *type = node->type_cast->type_name;
		if (strength <= 1 && type && type->n_names > 0 &&
		    string_value(type->names[type->n_names - 1])) {
			*name = string_value(type->names[type->n_names - 1]);
			return 1;
		}
		return strength;
	}
	case PG_QUERY__NODE__NODE_COLLATE_CLAUSE:
		return figure_colname(node->collate_clause->arg, name, depth + 1);
	case PG_QUERY__NODE__NODE_GROUPING_FUNC:
		*name = "grouping";
		return 2;
	case PG_QUERY__NODE__NODE_SUB_LINK: {
		const PgQuery__SubLink *link = node->sub_link;
		switch (link->sub_link_type) {
		case PG_QUERY__SUB_LINK_TYPE__EXISTS_SUBLINK:
			*name = "exists";
			return 2;
		case PG_QUERY__SUB_LINK_TYPE__ARRAY_SUBLINK:
			*name = "array";
			return 2;
		case PG_QUERY__SUB_LINK_TYPE__EXPR_SUBLINK: {
			const PgQuery__Node *sub = link->subselect;
			if (!sub || sub->node_case != PG_QUERY__NODE__NODE_SELECT_STMT ||
			    sub->select_stmt->n_target_list == 0)
				return 0;
			const PgQuery__Node *first = sub->select_stmt->target_list[0];
			if (first->node_case != PG_QUERY__NODE__NODE_RES_TARGET)
				return 0;
			const PgQuery__ResTarget *rt = first->res_target;
			if (rt->name && rt->name[0]) {
				*name = rt->name;
				return 2;
			}
			if (figure_colname(rt->val, name, depth + 1) == 0)
				*name = "?column?";
			return 2;
		}
		default:
			return 0;
		}
	}
	case PG_QUERY__NODE__NODE_CASE_EXPR: {
		int strength = figure_colname(node->case_expr->defresult, name, depth + 1);
		if (strength <= 1) {
			*name = "case";
			return 1;
		}
		return strength;
	}
	case PG_QUERY__NODE__NODE_A_ARRAY_EXPR:
		*name = "array";
		return 2;
	case PG_QUERY__NODE__NODE_ROW_EXPR:
		*name = "row";
		return 2;
	case PG_QUERY__NODE__NODE_COALESCE_EXPR:
		*name = "coalesce";
		return 2;
	case PG_QUERY__NODE__NODE_MIN_MAX_EXPR:
		*name = node->min_max_expr->op == PG_QUERY__MIN_MAX_OP__IS_GREATEST ? "greatest"
		                                                                    : "least";
		return 2;
	case PG_QUERY__NODE__NODE_SQLVALUE_FUNCTION:
		switch (node->sqlvalue_function->op) {
		case PG_QUERY__SQLVALUE_FUNCTION_OP__SVFOP_CURRENT_DATE:
			*name = "current_date";
			return 2;
		case PG_QUERY__SQLVALUE_FUNCTION_OP__SVFOP_CURRENT_TIME:
		case PG_QUERY__SQLVALUE_FUNCTION_OP__SVFOP_CURRENT_TIME_N:
			*name = "current_time";
			return 2;
		case PG_QUERY__SQLVALUE_FUNCTION_OP__SVFOP_CURRENT_TIMESTAMP:
		case PG_QUERY__SQLVALUE_FUNCTION_OP__SVFOP_CURRENT_TIMESTAMP_N:
			*name = "current_timestamp";
			return 2;
		case PG_QUERY__SQLVALUE_FUNCTION_OP__SVFOP_LOCALTIME:
		case PG_QUERY__SQLVALUE_FUNCTION_OP__SVFOP_LOCALTIME_N:
			*name = "localtime";
			return 2;
		case PG_QUERY__SQLVALUE_FUNCTION_OP__SVFOP_LOCALTIMESTAMP:
		case PG_QUERY__SQLVALUE_FUNCTION_OP__SVFOP_LOCALTIMESTAMP_N:
			*name = "localtimestamp";
			return 2;
		case PG_QUERY__SQLVALUE_FUNCTION_OP__SVFOP_CURRENT_ROLE:
			*name = "current_role";
			return 2;
		case PG_QUERY__SQLVALUE_FUNCTION_OP__SVFOP_CURRENT_USER:
			*name = "current_user";
			return 2;
		case PG_QUERY__SQLVALUE_FUNCTION_OP__SVFOP_USER:
			*name = "user";
			return 2;
		case PG_QUERY__SQLVALUE_FUNCTION_OP__SVFOP_SESSION_USER:
			*name = "session_user";
			return 2;
		case PG_QUERY__SQLVALUE_FUNCTION_OP__SVFOP_CURRENT_CATALOG:
			*name = "current_catalog";
			return 2;
		case PG_QUERY__SQLVALUE_FUNCTION_OP__SVFOP_CURRENT_SCHEMA:
			*name = "current_schema";
			return 2;
		default:
			return 0;
		}
	case PG_QUERY__NODE__NODE_XML_SERIALIZE:
		*name = "xmlserialize";
		return 2;
	default:
		return 0;
	}
}

/* ---- the original target list ---- */

static bool collect_targets(planner_t *pl)
{
	const PgQuery__SelectStmt *s = pl->stmt;
	int n = (int)s->n_target_list;
	if (n > MERGE_MAX_COLUMNS)
		return refuse(pl, "target lists can have at most %d entries", MERGE_MAX_COLUMNS);
	pl->n_targets = n;
	pl->first_star = pl->last_star = -1;
	pl->target_sql = plan_alloc(pl, sizeof(char *) * (size_t)(n + 1));
	pl->target_name = plan_alloc(pl, sizeof(char *) * (size_t)(n + 1));
	pl->target_is_star = plan_alloc(pl, sizeof(bool) * (size_t)(n + 1));
	if (!pl->target_sql || !pl->target_name || !pl->target_is_star)
		return false;
	for (int i = 0; i < n; i++) {
		const PgQuery__Node *node = s->target_list[i];
		if (node->node_case != PG_QUERY__NODE__NODE_RES_TARGET)
			return refuse(pl, "unexpected target list entry");
		const PgQuery__ResTarget *rt = node->res_target;
		if (is_star(rt->val)) {
			pl->target_is_star[i] = true;
			if (pl->first_star < 0)
				pl->first_star = i;
			pl->last_star = i;
			continue;
		}
		if (rt->name && rt->name[0]) {
			pl->target_name[i] = rt->name;
		} else {
			const char *name = NULL;
			if (figure_colname(rt->val, &name, 0) > 0)
				pl->target_name[i] = name;
		}
	}
	return true;
}

static const char *target_sql(planner_t *pl, int i)
{
	if (pl->target_is_star[i])
		return NULL;
	if (!pl->target_sql[i])
		pl->target_sql[i] = deparse_expr(pl, pl->stmt->target_list[i]->res_target->val);
	return pl->target_sql[i];
}

/*
 * The target an ORDER BY / DISTINCT ON item names: a bare name equal to an
 * output column's name (SQL92 rule, first match), else an expression equal
 * to a target's. -1 when none; -2 on failure.
 */
static int match_target(planner_t *pl, PgQuery__Node *node, const char **node_sql)
{
	const char *name = bare_column_name(node);
	if (name)
		for (int i = 0; i < pl->n_targets; i++)
			if (pl->target_name[i] && strcmp(pl->target_name[i], name) == 0)
				return i;
	const char *sql = deparse_expr(pl, node);
	if (!sql)
		return -2;
	*node_sql = sql;
	for (int i = 0; i < pl->n_targets; i++) {
		const char *t = target_sql(pl, i);
		if (pl->failed)
			return -2;
		if (t && strcmp(t, sql) == 0)
			return i;
	}
	return -1;
}

/* ---- the shard's target list ---- */

static bool init_shard_targets(planner_t *pl)
{
	int n = pl->n_targets;
	PgQuery__Node **targets =
	    grow_array(pl, pl->shard_targets, &pl->cap_shard_targets, n + 8, sizeof(*targets));
	if (!targets)
		return false;
	pl->shard_targets = targets;
	pl->shard_sql = calloc((size_t)pl->cap_shard_targets, sizeof(*pl->shard_sql));
	if (!pl->shard_sql)
		return refuse(pl, PLAN_OOM);
	for (int i = 0; i < n; i++)
		pl->shard_targets[i] = pl->stmt->target_list[i];
	pl->n_shard_targets = n;
	return true;
}

static const char *shard_target_sql(planner_t *pl, int col)
{
	if (!pl->shard_sql[col]) {
		const PgQuery__ResTarget *rt = pl->shard_targets[col]->res_target;
		if (is_star(rt->val))
			return NULL;
		pl->shard_sql[col] = deparse_expr(pl, rt->val);
	}
	return pl->shard_sql[col];
}

/* A new ResTarget node `val AS name` (name NULL: none). */
static PgQuery__Node *new_target(planner_t *pl, PgQuery__Node *val, const char *name)
{
	PgQuery__ResTarget *rt = plan_alloc(pl, sizeof(*rt));
	PgQuery__Node *node = plan_alloc(pl, sizeof(*node));
	if (!rt || !node)
		return NULL;
	*rt = (PgQuery__ResTarget)PG_QUERY__RES_TARGET__INIT;
	rt->val = val;
	if (name)
		rt->name = (char *)name;
	*node = (PgQuery__Node)PG_QUERY__NODE__INIT;
	node->node_case = PG_QUERY__NODE__NODE_RES_TARGET;
	node->res_target = rt;
	return node;
}

/*
 * Appends `expr AS __sg_hidden_N` to the shard's target list, or finds the
 * hidden column that already computes it. Returns the shard column, or -1.
 * Hidden columns get unique names so that they never make an ORDER BY
 * name ambiguous on the shard.
 */
static int add_hidden_shard_column(planner_t *pl, PgQuery__Node *expr, const char *sql)
{
	if (!sql && !(sql = deparse_expr(pl, expr)))
		return -1;
	/* An aggregate plan names shard columns directly, so a visible one that
	 * computes the same expression serves; a row plan has already looked
	 * at the visible ones (they are output columns). */
	int first = pl->plan->mode == MERGE_MODE_AGGREGATE ? 0 : pl->n_targets;
	for (int c = first; c < pl->n_shard_targets; c++) {
		const char *existing = shard_target_sql(pl, c);
		if (existing && strcmp(existing, sql) == 0)
			return c;
	}
	if (pl->n_shard_targets >= MERGE_MAX_COLUMNS) {
		refuse(pl, "too many columns to merge the statement over several shards");
		return -1;
	}
	int old_cap = pl->cap_shard_targets;
	PgQuery__Node **targets = grow_array(pl, pl->shard_targets, &pl->cap_shard_targets,
	                                     pl->n_shard_targets + 1, sizeof(*targets));
	if (!targets)
		return -1;
	pl->shard_targets = targets;
	if (pl->cap_shard_targets != old_cap) {
		char **grown =
		    realloc(pl->shard_sql, sizeof(char *) * (size_t)pl->cap_shard_targets);
		if (!grown) {
			refuse(pl, PLAN_OOM);
			return -1;
		}
		memset(grown + old_cap, 0,
		       sizeof(char *) * (size_t)(pl->cap_shard_targets - old_cap));
		pl->shard_sql = grown;
	}
	char alias[64];
	snprintf(alias, sizeof(alias), MERGE_HIDDEN_ALIAS "%d", pl->n_hidden_shard + 1);
	char *name = plan_strdup(pl, alias);
	PgQuery__Node *target = name ? new_target(pl, expr, name) : NULL;
	if (!target)
		return -1;
	int col = pl->n_shard_targets++;
	pl->shard_targets[col] = target;
	pl->shard_sql[col] = (char *)sql;
	pl->n_hidden_shard++;
	pl->changed = true;
	return col;
}

/* ---- aggregates ---- */

/*
 * The merge of a top-level aggregate call, or a refusal naming why it
 * cannot be merged. min/max/bool_and/bool_or are indifferent to DISTINCT;
 * FILTER applies row by row on the shards, so partials still combine.
 */
static bool classify_aggregate(planner_t *pl, const PgQuery__FuncCall *call, merge_agg_t *out)
{
	const char *name = builtin_function_name(call);
	if (!name && call->n_funcname > 0)
		name = string_value(call->funcname[call->n_funcname - 1]);
	if (!name)
		name = "?";
	merge_agg_t agg;
	if (strcmp(name, "count") == 0)
		agg = MERGE_AGG_COUNT;
	else if (strcmp(name, "sum") == 0)
		agg = MERGE_AGG_SUM;
	else if (strcmp(name, "min") == 0)
		agg = MERGE_AGG_MIN;
	else if (strcmp(name, "max") == 0)
		agg = MERGE_AGG_MAX;
	else if (strcmp(name, "avg") == 0)
		agg = MERGE_AGG_AVG;
	else if (strcmp(name, "bool_and") == 0 || strcmp(name, "every") == 0)
		agg = MERGE_AGG_BOOL_AND;
	else if (strcmp(name, "bool_or") == 0)
		agg = MERGE_AGG_BOOL_OR;
	else
		return refuse(pl, "aggregate %s() over several shards is not supported", name);
	if (!builtin_function_name(call))
		return refuse(pl, "aggregate %s() over several shards is not supported", name);

	if (call->agg_distinct &&
	    (agg == MERGE_AGG_COUNT || agg == MERGE_AGG_SUM || agg == MERGE_AGG_AVG))
		return refuse(pl, "%s(DISTINCT ...) over several shards is not supported", name);
	if (call->n_agg_order > 0 || call->agg_within_group)
		return refuse(pl, "aggregates with ORDER BY over several shards are not supported");
	if (call->func_variadic)
		return refuse(pl, "VARIADIC aggregate calls over several shards are not supported");
	bool star_ok = agg == MERGE_AGG_COUNT && call->agg_star && call->n_args == 0;
	if (!star_ok && (call->agg_star || call->n_args != 1))
		return refuse(pl,
		              "aggregate %s() with %zu arguments over several shards is not "
		              "supported",
		              name, call->n_args);
	*out = agg;
	return true;
}

/*
 * Classifies an expression of an aggregate query: no aggregate at all
 * (*is_aggregate false), or one supported aggregate call at the top.
 */
static bool classify_agg_expr(planner_t *pl, PgQuery__Node *expr, bool *is_aggregate,
                              merge_agg_t *agg)
{
	expr_scan_t scan;
	if (!scan_node(pl, expr, &scan))
		return false;
	*is_aggregate = false;
	if (scan.aggregates == 0)
		return true;
	if (expr->node_case == PG_QUERY__NODE__NODE_FUNC_CALL && scan.aggregates == 1 &&
	    is_aggregate_call(expr->func_call)) {
		*is_aggregate = true;
		return classify_aggregate(pl, expr->func_call, agg);
	}
	if (expr->node_case == PG_QUERY__NODE__NODE_FUNC_CALL && is_aggregate_call(expr->func_call))
		return refuse(pl, "aggregate function calls cannot be nested");
	const char *sql = deparse_expr(pl, expr);
	if (!sql)
		return false;
	return refuse(pl,
	              "an aggregate inside an expression over several shards is not supported: "
	              "%s",
	              sql);
}

/* `sum(args)` or `count(args)` with the arguments (and FILTER) of call. */
static PgQuery__Node *rename_call(planner_t *pl, const PgQuery__FuncCall *call, const char *name)
{
	PgQuery__FuncCall *copy = plan_alloc(pl, sizeof(*copy));
	PgQuery__Node *node = plan_alloc(pl, sizeof(*node));
	PgQuery__String *str = plan_alloc(pl, sizeof(*str));
	PgQuery__Node *str_node = plan_alloc(pl, sizeof(*str_node));
	PgQuery__Node **names = plan_alloc(pl, sizeof(*names) * 2);
	char *name_copy = plan_strdup(pl, name);
	if (!copy || !node || !str || !str_node || !names || !name_copy)
		return NULL;
	*str = (PgQuery__String)PG_QUERY__STRING__INIT;
	str->sval = name_copy;
	*str_node = (PgQuery__Node)PG_QUERY__NODE__INIT;
	str_node->node_case = PG_QUERY__NODE__NODE_STRING;
	str_node->string = str;
	*copy = *call;
	size_t n = 0;
	if (call->n_funcname == 2)
		names[n++] = call->funcname[0]; /* keep pg_catalog. */
	names[n++] = str_node;
	copy->funcname = names;
	copy->n_funcname = n;
	*node = (PgQuery__Node)PG_QUERY__NODE__INIT;
	node->node_case = PG_QUERY__NODE__NODE_FUNC_CALL;
	node->func_call = copy;
	return node;
}

static bool append_result(planner_t *pl, merge_result_col_t col, const char *sql)
{
	merge_plan_t *p = pl->plan;
	merge_result_col_t *results =
	    grow_array(pl, p->results, &pl->cap_results, p->n_results + 1, sizeof(*results));
	if (!results)
		return false;
	p->results = results;
	char **sqls =
	    grow_array(pl, pl->result_sql, &pl->cap_result_sql, p->n_results + 1, sizeof(*sqls));
	if (!sqls)
		return false;
	pl->result_sql = sqls;
	p->results[p->n_results] = col;
	pl->result_sql[p->n_results] = (char *)sql;
	p->n_results++;
	return true;
}

/*
 * Shard columns for an aggregate result computed from expr. A visible
 * result (visible_col >= 0) keeps the target's own column; avg becomes
 * `sum(x) AS <its output name>` there plus a hidden count(x).
 */
static bool shard_columns_for(planner_t *pl, PgQuery__Node *expr, bool is_aggregate,
                              merge_agg_t agg, int visible_col, const char *avg_name,
                              merge_result_col_t *out)
{
	*out = (merge_result_col_t){is_aggregate ? agg : MERGE_AGG_GROUP, visible_col, -1};
	if (is_aggregate && agg == MERGE_AGG_AVG) {
		const PgQuery__FuncCall *call = expr->func_call;
		PgQuery__Node *sum = rename_call(pl, call, "sum");
		PgQuery__Node *count = sum ? rename_call(pl, call, "count") : NULL;
		if (!count)
			return false;
		if (visible_col >= 0) {
			PgQuery__Node *target = new_target(pl, sum, avg_name);
			if (!target)
				return false;
			pl->shard_targets[visible_col] = target;
			pl->shard_sql[visible_col] = NULL;
			pl->changed = true;
		} else if ((out->shard_col = add_hidden_shard_column(pl, sum, NULL)) < 0) {
			return false;
		}
		if ((out->shard_col2 = add_hidden_shard_column(pl, count, NULL)) < 0)
			return false;
		return true;
	}
	if (visible_col < 0 && (out->shard_col = add_hidden_shard_column(pl, expr, NULL)) < 0)
		return false;
	return true;
}

/*
 * The result column computing expr: a visible target's, an existing hidden
 * result, or a new hidden result. Returns its index, or -1.
 */
static int find_or_add_result(planner_t *pl, PgQuery__Node *expr)
{
	merge_plan_t *p = pl->plan;
	const char *sql = deparse_expr(pl, expr);
	if (!sql)
		return -1;
	for (int i = 0; i < p->n_results; i++)
		if (pl->result_sql[i] && strcmp(pl->result_sql[i], sql) == 0)
			return i;
	bool is_aggregate;
	merge_agg_t agg = MERGE_AGG_GROUP;
	if (!classify_agg_expr(pl, expr, &is_aggregate, &agg))
		return -1;
	merge_result_col_t col;
	if (!shard_columns_for(pl, expr, is_aggregate, agg, -1, NULL, &col))
		return -1;
	if (!append_result(pl, col, sql))
		return -1;
	p->n_hidden++;
	return p->n_results - 1;
}

static merge_colref_t result_colref(const merge_plan_t *p, int result)
{
	int visible = p->n_results - p->n_hidden;
	if (result < visible)
		return (merge_colref_t){MERGE_COL_FROM_START, result};
	return (merge_colref_t){MERGE_COL_HIDDEN, result - visible};
}

/* ---- ORDER BY ---- */

/* Direction and NULLS placement, refusing USING and non-C collations. */
static bool sort_direction(planner_t *pl, const PgQuery__SortBy *sort, merge_sort_key_t *key)
{
	if (sort->sortby_dir == PG_QUERY__SORT_BY_DIR__SORTBY_USING || sort->n_use_op > 0)
		return refuse(pl, "ORDER BY ... USING over several shards is not supported");
	const PgQuery__Node *expr = sort->node;
	if (expr && expr->node_case == PG_QUERY__NODE__NODE_COLLATE_CLAUSE) {
		const PgQuery__CollateClause *coll = expr->collate_clause;
		const char *name = coll->n_collname > 0
		                       ? string_value(coll->collname[coll->n_collname - 1])
		                       : NULL;
		if (!name || (strcmp(name, "C") != 0 && strcmp(name, "POSIX") != 0))
			return refuse(pl,
			              "ORDER BY ... COLLATE \"%s\" over several shards is not "
			              "supported: shard rows are merged in the C collation",
			              name ? name : "?");
	}
	key->descending = sort->sortby_dir == PG_QUERY__SORT_BY_DIR__SORTBY_DESC;
	if (sort->sortby_nulls == PG_QUERY__SORT_BY_NULLS__SORTBY_NULLS_FIRST)
		key->nulls_first = true;
	else if (sort->sortby_nulls == PG_QUERY__SORT_BY_NULLS__SORTBY_NULLS_LAST)
		key->nulls_first = false;
	else
		key->nulls_first = key->descending;
	return true;
}

/*
 * Where the merger finds target i in a shard row. A target after a `*` has
 * no fixed position from the start; counted from the end it does, unless
 * another `*` follows it: then a hidden copy of it is added.
 */
static bool colref_for_target(planner_t *pl, int i, merge_colref_t *out)
{
	if (pl->first_star < 0 || i < pl->first_star) {
		*out = (merge_colref_t){MERGE_COL_FROM_START, i};
		return true;
	}
	if (i > pl->last_star) {
		*out = (merge_colref_t){MERGE_COL_FROM_END, pl->n_targets - 1 - i};
		return true;
	}
	int col = add_hidden_shard_column(pl, pl->stmt->target_list[i]->res_target->val, NULL);
	if (col < 0)
		return false;
	*out = (merge_colref_t){MERGE_COL_HIDDEN, col - pl->n_targets};
	return true;
}

/*
 * Resolves an ORDER BY or DISTINCT ON item of a row query to a column: its
 * output position, an output column it names or equals, or (allow_hidden)
 * a hidden copy of the expression.
 */
static bool resolve_row_item(planner_t *pl, PgQuery__Node *node, const char *clause,
                             bool allow_hidden, merge_colref_t *out)
{
	int pos;
	if (is_position(node, &pos)) {
		if (pos < 1 || (pl->first_star < 0 && pos > pl->n_targets))
			return refuse(pl, "%s position %d is not in select list", clause, pos);
		*out = (merge_colref_t){MERGE_COL_FROM_START, pos - 1};
		return true;
	}
	const char *sql = NULL;
	int i = match_target(pl, node, &sql);
	if (i == -2)
		return false;
	if (i >= 0)
		return colref_for_target(pl, i, out);
	if (!allow_hidden)
		return refuse(pl, "for SELECT DISTINCT, ORDER BY expressions must appear in select "
		                  "list");
	int col = add_hidden_shard_column(pl, node, sql);
	if (col < 0)
		return false;
	*out = (merge_colref_t){MERGE_COL_HIDDEN, col - pl->n_targets};
	return true;
}

static bool colref_equal(merge_colref_t a, merge_colref_t b)
{
	return a.base == b.base && a.index == b.index;
}

/* ---- LIMIT and OFFSET ---- */

static bool parse_int64_text(const char *s, int64_t *out)
{
	if (!s || !*s)
		return false;
	errno = 0;
	char *end = NULL;
	long long v = strtoll(s, &end, 10);
	if (errno || *end)
		return false;
	*out = (int64_t)v;
	return true;
}

/* A LIMIT/OFFSET value: absent or NULL, an integer constant, or a parameter. */
static bool plan_bound(planner_t *pl, const PgQuery__Node *node, const char *clause,
                       merge_bound_t *out)
{
	*out = (merge_bound_t){MERGE_BOUND_NONE, 0, 0};
	if (!node)
		return true;
	if (node->node_case == PG_QUERY__NODE__NODE_TYPE_CAST && node->type_cast->arg)
		node = node->type_cast->arg;
	if (node->node_case == PG_QUERY__NODE__NODE_PARAM_REF) {
		*out = (merge_bound_t){MERGE_BOUND_PARAM, 0, node->param_ref->number};
		return true;
	}
	if (node->node_case == PG_QUERY__NODE__NODE_A_CONST) {
		const PgQuery__AConst *c = node->a_const;
		if (c->isnull)
			return true;
		if (c->val_case == PG_QUERY__A__CONST__VAL_IVAL) {
			*out = (merge_bound_t){MERGE_BOUND_CONST, c->ival ? c->ival->ival : 0, 0};
			return true;
		}
		int64_t v;
		if (c->val_case == PG_QUERY__A__CONST__VAL_FVAL && c->fval &&
		    parse_int64_text(c->fval->fval, &v)) {
			*out = (merge_bound_t){MERGE_BOUND_CONST, v, 0};
			return true;
		}
	}
	return refuse(pl, "%s over several shards must be an integer constant or a $n parameter",
	              clause);
}

static bool plan_limits(planner_t *pl)
{
	const PgQuery__SelectStmt *s = pl->stmt;
	merge_plan_t *p = pl->plan;
	if (!plan_bound(pl, s->limit_count, "LIMIT", &p->limit) ||
	    !plan_bound(pl, s->limit_offset, "OFFSET", &p->offset))
		return false;
	p->with_ties = s->limit_option == PG_QUERY__LIMIT_OPTION__LIMIT_OPTION_WITH_TIES;
	if (p->with_ties && p->n_sort == 0)
		return refuse(pl, "WITH TIES cannot be specified without ORDER BY clause");
	return true;
}

/*
 * The shard's LIMIT when the merger skips the OFFSET itself: LIMIT n + m,
 * no OFFSET. Negative constants are left alone so that the shards raise
 * PostgreSQL's own error. A NULL $n behaves as PostgreSQL's: no limit, or
 * offset 0.
 */
static bool shard_limit(planner_t *pl, PgQuery__Node **count, PgQuery__Node **offset)
{
	const merge_plan_t *p = pl->plan;
	*count = pl->stmt->limit_count;
	*offset = pl->stmt->limit_offset;
	if (p->offset.kind == MERGE_BOUND_NONE)
		return true;
	if ((p->offset.kind == MERGE_BOUND_CONST && p->offset.value <= 0) ||
	    (p->limit.kind == MERGE_BOUND_CONST && p->limit.value < 0))
		return true;
	pl->changed = true;
	*offset = NULL;
	if (p->limit.kind == MERGE_BOUND_NONE) {
		*count = NULL;
		return true;
	}
	char text[128];
	if (p->limit.kind == MERGE_BOUND_CONST && p->offset.kind == MERGE_BOUND_CONST) {
		int64_t sum;
		if (__builtin_add_overflow(p->limit.value, p->offset.value, &sum)) {
			*count = NULL;
			return true;
		}
		snprintf(text, sizeof(text), "%" PRId64, sum);
	} else {
		char limit_text[48], offset_text[64];
		if (p->limit.kind == MERGE_BOUND_CONST)
			snprintf(limit_text, sizeof(limit_text), "%" PRId64, p->limit.value);
		else
			snprintf(limit_text, sizeof(limit_text), "$%d::int8", p->limit.param);
		if (p->offset.kind == MERGE_BOUND_CONST)
			snprintf(offset_text, sizeof(offset_text), "%" PRId64, p->offset.value);
		else
			snprintf(offset_text, sizeof(offset_text), "coalesce($%d::int8, 0)",
			         p->offset.param);
		snprintf(text, sizeof(text), "%s + %s", limit_text, offset_text);
	}
	*count = parse_snippet(pl, text);
	return *count != NULL;
}

/* ---- row queries: CONCAT and ORDERED ---- */

static bool distinct_is_plain(const PgQuery__SelectStmt *s)
{
	return s->n_distinct_clause == 1 &&
	       (!s->distinct_clause[0] ||
	        s->distinct_clause[0]->node_case == PG_QUERY__NODE__NODE__NOT_SET);
}

static bool plan_sort_clause(planner_t *pl, bool allow_hidden)
{
	const PgQuery__SelectStmt *s = pl->stmt;
	merge_plan_t *p = pl->plan;
	if (s->n_sort_clause == 0)
		return true;
	p->sort = calloc(s->n_sort_clause, sizeof(*p->sort));
	if (!p->sort)
		return refuse(pl, PLAN_OOM);
	for (size_t k = 0; k < s->n_sort_clause; k++) {
		const PgQuery__Node *item = s->sort_clause[k];
		if (item->node_case != PG_QUERY__NODE__NODE_SORT_BY)
			return refuse(pl, "unexpected ORDER BY item");
		merge_sort_key_t key = {{MERGE_COL_FROM_START, 0}, false, false};
		if (!sort_direction(pl, item->sort_by, &key))
			return false;
		expr_scan_t scan;
		if (!scan_node(pl, item->sort_by->node, &scan))
			return false;
		if (!resolve_row_item(pl, item->sort_by->node, "ORDER BY", allow_hidden, &key.col))
			return false;
		p->sort[p->n_sort++] = key;
	}
	return true;
}

/*
 * DISTINCT ON (...): the key columns. With ORDER BY, PostgreSQL requires
 * the leading sort items to be the DISTINCT ON expressions; the merger
 * relies on it (the first row of each key in merged order is the one).
 */
static bool plan_distinct_on(planner_t *pl)
{
	const PgQuery__SelectStmt *s = pl->stmt;
	merge_plan_t *p = pl->plan;
	size_t n = s->n_distinct_clause;
	p->distinct_on = calloc(n, sizeof(*p->distinct_on));
	if (!p->distinct_on)
		return refuse(pl, PLAN_OOM);
	for (size_t k = 0; k < n; k++) {
		expr_scan_t scan;
		if (!scan_node(pl, s->distinct_clause[k], &scan))
			return false;
		merge_colref_t col;
		if (!resolve_row_item(pl, s->distinct_clause[k], "SELECT DISTINCT ON", true, &col))
			return false;
		bool dup = false;
		for (int j = 0; j < p->n_distinct_on; j++)
			dup = dup || colref_equal(p->distinct_on[j], col);
		if (!dup)
			p->distinct_on[p->n_distinct_on++] = col;
	}
	if (p->n_sort == 0)
		return true;
	/* Every leading sort key up to the last DISTINCT ON column is one of them. */
	int covered = 0;
	for (int k = 0; k < p->n_sort && covered < p->n_distinct_on; k++) {
		bool in_key = false;
		for (int j = 0; j < p->n_distinct_on; j++)
			in_key = in_key || colref_equal(p->distinct_on[j], p->sort[k].col);
		if (!in_key)
			break;
		bool seen_before = false;
		for (int j = 0; j < k; j++)
			seen_before = seen_before || colref_equal(p->sort[j].col, p->sort[k].col);
		if (!seen_before)
			covered++;
	}
	if (covered < p->n_distinct_on)
		return refuse(pl, "SELECT DISTINCT ON expressions must match initial ORDER BY "
		                  "expressions");
	return true;
}

static bool plan_rows(planner_t *pl)
{
	const PgQuery__SelectStmt *s = pl->stmt;
	merge_plan_t *p = pl->plan;
	bool plain_distinct = distinct_is_plain(s);
	bool distinct_on = s->n_distinct_clause > 0 && !plain_distinct;

	for (int i = 0; i < pl->n_targets; i++) {
		expr_scan_t scan;
		if (!scan_node(pl, pl->stmt->target_list[i]->res_target->val, &scan))
			return false;
	}
	if (!init_shard_targets(pl))
		return false;
	/* Under plain DISTINCT a hidden column would change which rows are
	 * distinct; PostgreSQL refuses such an ORDER BY anyway. */
	if (!plan_sort_clause(pl, !plain_distinct))
		return false;
	p->mode = p->n_sort > 0 ? MERGE_MODE_ORDERED : MERGE_MODE_CONCAT;
	p->distinct = plain_distinct;
	if (distinct_on && !plan_distinct_on(pl))
		return false;
	if (!plan_limits(pl))
		return false;
	p->n_hidden = pl->n_hidden_shard;
	return true;
}

/* ---- aggregate queries ---- */

static bool plan_group_clause(planner_t *pl)
{
	const PgQuery__SelectStmt *s = pl->stmt;
	merge_plan_t *p = pl->plan;
	if (s->group_distinct)
		return refuse(pl, "GROUP BY DISTINCT over several shards is not supported");
	p->grouped = s->n_group_clause > 0;
	if (s->n_group_clause == 0)
		return true;
	p->group_cols = calloc(s->n_group_clause, sizeof(*p->group_cols));
	if (!p->group_cols)
		return refuse(pl, PLAN_OOM);
	for (size_t k = 0; k < s->n_group_clause; k++) {
		PgQuery__Node *item = s->group_clause[k];
		if (item->node_case == PG_QUERY__NODE__NODE_GROUPING_SET)
			return refuse(pl,
			              "GROUPING SETS, ROLLUP and CUBE over several shards are not "
			              "supported");
		expr_scan_t scan;
		if (!scan_node(pl, item, &scan))
			return false;
		if (scan.aggregates > 0)
			return refuse(pl, "aggregate functions are not allowed in GROUP BY");
		int col = -1;
		int pos;
		if (is_position(item, &pos)) {
			if (pos < 1 || pos > pl->n_targets)
				return refuse(pl, "GROUP BY position %d is not in select list",
				              pos);
			if (p->results[pos - 1].agg != MERGE_AGG_GROUP)
				return refuse(pl,
				              "aggregate functions are not allowed in GROUP BY");
			col = pos - 1;
		} else {
			const char *sql = deparse_expr(pl, item);
			if (!sql)
				return false;
			const char *name = bare_column_name(item);
			for (int i = 0; i < pl->n_targets && col < 0; i++) {
				const char *alias = pl->stmt->target_list[i]->res_target->name;
				const char *expr = target_sql(pl, i);
				if (!expr)
					return false;
				bool same =
				    p->results[i].agg == MERGE_AGG_GROUP && strcmp(expr, sql) == 0;
				if (same)
					col = i;
				else if (name && alias && strcmp(alias, name) == 0)
					/* PostgreSQL prefers an input column of that name to
					 * the alias, which only the shard's catalog knows. */
					return refuse(
					    pl,
					    "GROUP BY \"%s\" names an output column alias; "
					    "over several shards write the expression or its "
					    "position",
					    name);
			}
			if (col < 0 && (col = add_hidden_shard_column(pl, item, sql)) < 0)
				return false;
		}
		bool dup = false;
		for (int j = 0; j < p->n_group_cols; j++)
			dup = dup || p->group_cols[j] == col;
		if (!dup)
			p->group_cols[p->n_group_cols++] = col;
	}
	return true;
}

static bool add_cond(planner_t *pl, merge_cond_t cond, int *index)
{
	merge_plan_t *p = pl->plan;
	merge_cond_t *conds =
	    grow_array(pl, p->conds, &pl->cap_conds, p->n_conds + 1, sizeof(*conds));
	if (!conds)
		return false;
	p->conds = conds;
	p->conds[p->n_conds] = cond;
	*index = p->n_conds++;
	return true;
}

static const struct {
	const char *name;
	merge_cmp_op_t op;
	merge_cmp_op_t flipped; /* const op col == col flipped const */
} cmp_ops[] = {
    {"=", MERGE_CMP_EQ, MERGE_CMP_EQ}, {"<>", MERGE_CMP_NE, MERGE_CMP_NE},
    {"<", MERGE_CMP_LT, MERGE_CMP_GT}, {"<=", MERGE_CMP_LE, MERGE_CMP_GE},
    {">", MERGE_CMP_GT, MERGE_CMP_LT}, {">=", MERGE_CMP_GE, MERGE_CMP_LE},
};

#define HAVING_REFUSAL                                                                             \
	"HAVING over several shards supports only comparisons (=, <>, <, <=, >, >=, IS [NOT] "     \
	"NULL) of aggregates or grouped columns with constants, combined with AND, OR and NOT"

static bool plan_operand(planner_t *pl, PgQuery__Node *node, merge_operand_t *out)
{
	*out = (merge_operand_t){MERGE_OPERAND_NULL, 0, NULL};
	PgQuery__Node *inner = node;
	if (inner->node_case == PG_QUERY__NODE__NODE_TYPE_CAST && inner->type_cast->arg &&
	    (inner->type_cast->arg->node_case == PG_QUERY__NODE__NODE_A_CONST ||
	     inner->type_cast->arg->node_case == PG_QUERY__NODE__NODE_PARAM_REF))
		inner = inner->type_cast->arg; /* the constant is read as the column's type */
	if (inner->node_case == PG_QUERY__NODE__NODE_PARAM_REF) {
		*out = (merge_operand_t){MERGE_OPERAND_PARAM, inner->param_ref->number, NULL};
		return true;
	}
	if (inner->node_case == PG_QUERY__NODE__NODE_A_CONST) {
		const PgQuery__AConst *c = inner->a_const;
		char number[32];
		const char *text = NULL;
		if (c->isnull)
			return true;
		switch (c->val_case) {
		case PG_QUERY__A__CONST__VAL_IVAL:
			snprintf(number, sizeof(number), "%d", c->ival ? c->ival->ival : 0);
			text = number;
			break;
		case PG_QUERY__A__CONST__VAL_FVAL:
			text = c->fval ? c->fval->fval : NULL;
			break;
		case PG_QUERY__A__CONST__VAL_SVAL:
			text = c->sval ? c->sval->sval : NULL;
			break;
		case PG_QUERY__A__CONST__VAL_BOOLVAL:
			text = c->boolval && c->boolval->boolval ? "true" : "false";
			break;
		default:
			break;
		}
		if (!text)
			return refuse(pl, HAVING_REFUSAL);
		char *copy = plan_own_string(pl, text);
		if (!copy)
			return false;
		*out = (merge_operand_t){MERGE_OPERAND_CONST, 0, copy};
		return true;
	}
	int result = find_or_add_result(pl, node);
	if (result < 0)
		return false;
	*out = (merge_operand_t){MERGE_OPERAND_RESULT, result, NULL};
	return true;
}

/* Translates a HAVING expression into plan->conds; *index is its root. */
static bool plan_cond(planner_t *pl, PgQuery__Node *node, int depth, int *index)
{
	if (depth > 100)
		return refuse(pl, "HAVING nested too deeply to merge over several shards");
	merge_cond_t cond = {0};
	switch (node->node_case) {
	case PG_QUERY__NODE__NODE_BOOL_EXPR: {
		const PgQuery__BoolExpr *b = node->bool_expr;
		if (b->boolop == PG_QUERY__BOOL_EXPR_TYPE__AND_EXPR)
			cond.kind = MERGE_COND_AND;
		else if (b->boolop == PG_QUERY__BOOL_EXPR_TYPE__OR_EXPR)
			cond.kind = MERGE_COND_OR;
		else
			cond.kind = MERGE_COND_NOT;
		int children[64];
		if (b->n_args == 0 || b->n_args > 64)
			return refuse(pl, HAVING_REFUSAL);
		for (size_t k = 0; k < b->n_args; k++)
			if (!plan_cond(pl, b->args[k], depth + 1, &children[k]))
				return false;
		merge_plan_t *p = pl->plan;
		int *args = grow_array(pl, p->cond_args, &pl->cap_cond_args,
		                       p->n_cond_args + (int)b->n_args, sizeof(*args));
		if (!args)
			return false;
		p->cond_args = args;
		cond.first_arg = p->n_cond_args;
		cond.n_args = (int)b->n_args;
		memcpy(p->cond_args + p->n_cond_args, children, sizeof(int) * b->n_args);
		p->n_cond_args += (int)b->n_args;
		return add_cond(pl, cond, index);
	}
	case PG_QUERY__NODE__NODE_NULL_TEST: {
		const PgQuery__NullTest *t = node->null_test;
		if (!t->arg || t->argisrow)
			return refuse(pl, HAVING_REFUSAL);
		cond.kind = t->nulltesttype == PG_QUERY__NULL_TEST_TYPE__IS_NULL
		                ? MERGE_COND_IS_NULL
		                : MERGE_COND_IS_NOT_NULL;
		if (!plan_operand(pl, t->arg, &cond.lhs))
			return false;
		if (cond.lhs.kind != MERGE_OPERAND_RESULT)
			return refuse(pl, HAVING_REFUSAL);
		return add_cond(pl, cond, index);
	}
	case PG_QUERY__NODE__NODE_A_EXPR: {
		const PgQuery__AExpr *e = node->a_expr;
		if (e->kind != PG_QUERY__A__EXPR__KIND__AEXPR_OP || e->n_name != 1 || !e->lexpr ||
		    !e->rexpr)
			return refuse(pl, HAVING_REFUSAL);
		const char *op = string_value(e->name[0]);
		size_t k = 0;
		while (k < sizeof(cmp_ops) / sizeof(cmp_ops[0]) &&
		       (!op || strcmp(op, cmp_ops[k].name)))
			k++;
		if (k == sizeof(cmp_ops) / sizeof(cmp_ops[0]))
			return refuse(pl, HAVING_REFUSAL);
		cond.kind = MERGE_COND_CMP;
		if (!plan_operand(pl, e->lexpr, &cond.lhs) ||
		    !plan_operand(pl, e->rexpr, &cond.rhs))
			return false;
		cond.op = cmp_ops[k].op;
		if (cond.lhs.kind != MERGE_OPERAND_RESULT) {
			if (cond.rhs.kind != MERGE_OPERAND_RESULT) {
				free(cond.lhs.text);
				free(cond.rhs.text);
				return refuse(pl, HAVING_REFUSAL);
			}
			merge_operand_t swap = cond.lhs;
			cond.lhs = cond.rhs;
			cond.rhs = swap;
			cond.op = cmp_ops[k].flipped;
		}
		if (!add_cond(pl, cond, index)) {
			free(cond.rhs.text);
			return false;
		}
		return true;
	}
	default:
		return refuse(pl, HAVING_REFUSAL);
	}
}

/* ORDER BY of an aggregate query: result columns, hidden ones as needed. */
static bool plan_agg_sort(planner_t *pl)
{
	const PgQuery__SelectStmt *s = pl->stmt;
	merge_plan_t *p = pl->plan;
	if (s->n_sort_clause == 0)
		return true;
	p->sort = calloc(s->n_sort_clause, sizeof(*p->sort));
	if (!p->sort)
		return refuse(pl, PLAN_OOM);
	for (size_t k = 0; k < s->n_sort_clause; k++) {
		const PgQuery__Node *item = s->sort_clause[k];
		if (item->node_case != PG_QUERY__NODE__NODE_SORT_BY)
			return refuse(pl, "unexpected ORDER BY item");
		PgQuery__Node *expr = item->sort_by->node;
		merge_sort_key_t key = {{MERGE_COL_FROM_START, 0}, false, false};
		if (!sort_direction(pl, item->sort_by, &key))
			return false;
		int result = -1, pos;
		const char *name = bare_column_name(expr);
		if (is_position(expr, &pos)) {
			if (pos < 1 || pos > pl->n_targets)
				return refuse(pl, "ORDER BY position %d is not in select list",
				              pos);
			result = pos - 1;
		}
		for (int i = 0; name && result < 0 && i < pl->n_targets; i++)
			if (pl->target_name[i] && strcmp(pl->target_name[i], name) == 0)
				result = i;
		if (result < 0 && (result = find_or_add_result(pl, expr)) < 0)
			return false;
		if (p->distinct && result >= pl->n_targets)
			return refuse(pl,
			              "for SELECT DISTINCT, ORDER BY expressions must appear in "
			              "select list");
		key.col = result_colref(p, result);
		p->sort[p->n_sort++] = key;
	}
	return true;
}

static bool plan_aggregate(planner_t *pl)
{
	const PgQuery__SelectStmt *s = pl->stmt;
	merge_plan_t *p = pl->plan;
	p->mode = MERGE_MODE_AGGREGATE;
	if (pl->first_star >= 0)
		return refuse(pl, "SELECT * with aggregates or GROUP BY over several shards is not "
		                  "supported");
	if (s->n_distinct_clause > 0 && !distinct_is_plain(s))
		return refuse(pl,
		              "DISTINCT ON with aggregates or GROUP BY over several shards is not "
		              "supported");
	if (s->n_locking_clause > 0)
		return refuse(pl, "FOR UPDATE/SHARE is not allowed with aggregates or GROUP BY");
	p->distinct = s->n_distinct_clause > 0;
	if (!init_shard_targets(pl))
		return false;

	/* The visible results, one per target, in order. */
	for (int i = 0; i < pl->n_targets; i++) {
		PgQuery__ResTarget *rt = s->target_list[i]->res_target;
		bool is_aggregate;
		merge_agg_t agg = MERGE_AGG_GROUP;
		if (!classify_agg_expr(pl, rt->val, &is_aggregate, &agg))
			return false;
		const char *avg_name = rt->name && rt->name[0] ? rt->name : pl->target_name[i];
		merge_result_col_t col;
		const char *sql = target_sql(pl, i);
		if (!sql || !shard_columns_for(pl, rt->val, is_aggregate, agg, i,
		                               avg_name ? avg_name : "avg", &col))
			return false;
		if (!append_result(pl, col, sql))
			return false;
	}
	if (!plan_group_clause(pl))
		return false;
	if (s->having_clause) {
		pl->changed = true;
		if (!plan_cond(pl, s->having_clause, 0, &p->having))
			return false;
	}
	if (!plan_agg_sort(pl) || !plan_limits(pl))
		return false;
	if (s->n_sort_clause > 0 || s->limit_count || s->limit_offset || s->n_distinct_clause > 0)
		pl->changed = true;
	p->n_shard_cols = pl->n_shard_targets;
	return true;
}

/* ---- set operations ---- */

/* Whether a UNION branch can be concatenated across shards. */
static bool check_set_branch(planner_t *pl, const PgQuery__SelectStmt *s, bool top_distinct,
                             int depth)
{
	if (depth > 1000)
		return refuse(pl, "set operation nested too deeply to plan over several shards");
	switch (s->op) {
	case PG_QUERY__SET_OPERATION__SETOP_INTERSECT:
		return refuse(pl, "INTERSECT over several shards is not supported");
	case PG_QUERY__SET_OPERATION__SETOP_EXCEPT:
		return refuse(pl, "EXCEPT over several shards is not supported");
	case PG_QUERY__SET_OPERATION__SETOP_UNION:
		if (!s->all && !top_distinct)
			return refuse(pl,
			              "UNION (without ALL) inside UNION ALL over several shards is "
			              "not supported");
		if (s->n_sort_clause > 0 || s->limit_count || s->limit_offset)
			return refuse(pl,
			              "UNION with ORDER BY, LIMIT or OFFSET over several shards is "
			              "not supported");
		return s->larg && s->rarg &&
		       check_set_branch(pl, s->larg, top_distinct, depth + 1) &&
		       check_set_branch(pl, s->rarg, top_distinct, depth + 1);
	default:
		break;
	}
	if (s->n_values_lists > 0 || s->n_from_clause == 0)
		return refuse(pl, "a UNION branch without FROM (or VALUES) would be repeated by "
		                  "every shard");
	if (s->into_clause)
		return refuse(pl, "SELECT INTO over several shards is not supported");
	if (s->n_window_clause > 0)
		return refuse(pl, "window functions over several shards are not supported");
	if (s->limit_count || s->limit_offset)
		return refuse(pl,
		              "UNION of queries with LIMIT or OFFSET over several shards is not "
		              "supported");
	if (s->n_group_clause > 0 || s->having_clause)
		return refuse(pl,
		              "UNION of queries with aggregates or GROUP BY over several shards is "
		              "not supported");
	if (s->n_distinct_clause > 0 && !top_distinct)
		return refuse(pl, "UNION ALL of SELECT DISTINCT queries over several shards is not "
		                  "supported");
	for (size_t i = 0; i < s->n_target_list; i++) {
		expr_scan_t scan;
		if (!scan_node(pl, s->target_list[i], &scan))
			return false;
		if (scan.aggregates > 0)
			return refuse(pl,
			              "UNION of queries with aggregates or GROUP BY over several "
			              "shards is not supported");
	}
	return true;
}

static bool plan_set_operation(planner_t *pl)
{
	const PgQuery__SelectStmt *s = pl->stmt;
	merge_plan_t *p = pl->plan;
	bool top_distinct = s->op == PG_QUERY__SET_OPERATION__SETOP_UNION && !s->all;
	if (s->op == PG_QUERY__SET_OPERATION__SETOP_UNION &&
	    (s->n_sort_clause > 0 || s->limit_count || s->limit_offset))
		return refuse(pl, "UNION with ORDER BY, LIMIT or OFFSET over several shards is not "
		                  "supported");
	if (!check_set_branch(pl, s, top_distinct, 0))
		return false;
	p->mode = MERGE_MODE_CONCAT;
	p->distinct = top_distinct;
	return true;
}

/* ---- the statement ---- */

static bool is_aggregate_query(planner_t *pl, bool *aggregate)
{
	const PgQuery__SelectStmt *s = pl->stmt;
	*aggregate = s->n_group_clause > 0 || s->having_clause;
	expr_scan_t scan;
	for (size_t i = 0; i < s->n_target_list; i++) {
		if (!scan_node(pl, s->target_list[i], &scan))
			return false;
		*aggregate = *aggregate || scan.aggregates > 0;
	}
	for (size_t i = 0; i < s->n_sort_clause; i++) {
		if (!scan_node(pl, s->sort_clause[i], &scan))
			return false;
		*aggregate = *aggregate || scan.aggregates > 0;
	}
	return true;
}

static bool plan_select(planner_t *pl)
{
	const PgQuery__SelectStmt *s = pl->stmt;
	if (s->op != PG_QUERY__SET_OPERATION__SETOP_NONE)
		return plan_set_operation(pl);
	if (s->into_clause)
		return refuse(pl, "SELECT INTO over several shards is not supported");
	if (s->n_values_lists > 0)
		return refuse(pl, "VALUES over several shards is not supported");
	if (s->n_window_clause > 0)
		return refuse(pl, "window functions over several shards are not supported");
	if (!collect_targets(pl))
		return false;
	bool aggregate;
	if (!is_aggregate_query(pl, &aggregate))
		return false;
	return aggregate ? plan_aggregate(pl) : plan_rows(pl);
}

/* The shard statement: the original with the planner's changes. */
static char *build_shard_sql(planner_t *pl)
{
	const merge_plan_t *p = pl->plan;
	PgQuery__SelectStmt shard = *pl->stmt;
	shard.n_target_list = (size_t)pl->n_shard_targets;
	shard.target_list = pl->shard_targets;
	if (p->mode == MERGE_MODE_AGGREGATE) {
		shard.n_sort_clause = 0;
		shard.sort_clause = NULL;
		shard.having_clause = NULL;
		shard.limit_count = NULL;
		shard.limit_offset = NULL;
		shard.limit_option = PG_QUERY__LIMIT_OPTION__LIMIT_OPTION_DEFAULT;
		shard.n_distinct_clause = 0;
		shard.distinct_clause = NULL;
	} else if (!shard_limit(pl, &shard.limit_count, &shard.limit_offset)) {
		return NULL;
	}
	if (!pl->changed)
		return NULL;
	char why[256];
	char *text = deparse_select(&shard, why, sizeof(why));
	if (!text)
		refuse(pl, "cannot write the shards' statement: %s", why);
	return text;
}

static void planner_release(planner_t *pl)
{
	for (size_t i = 0; i < pl->n_allocs; i++)
		free(pl->allocs[i]);
	free(pl->allocs);
	for (size_t i = 0; i < pl->n_snippets; i++)
		pg_query__parse_result__free_unpacked(pl->snippets[i], NULL);
	free(pl->snippets);
	free(pl->shard_targets);
	free(pl->shard_sql);
	free(pl->result_sql);
}

merge_plan_t *merge_plan_build(const char *sql, char *err, size_t errlen)
{
	planner_t pl = {.err = err, .errlen = errlen};
	if (err && errlen > 0)
		err[0] = '\0';
	if (!sql) {
		refuse(&pl, "no statement to plan");
		return NULL;
	}
	if (strlen(sql) > MERGE_MAX_SQL_LEN) {
		refuse(&pl, "statement too long to plan over several shards (over %d bytes)",
		       MERGE_MAX_SQL_LEN);
		return NULL;
	}
	PgQueryProtobufParseResult parsed = pg_query_parse_protobuf(sql);
	if (parsed.error) {
		refuse(&pl, "cannot plan the statement over several shards: %s",
		       parsed.error->message ? parsed.error->message : "syntax error");
		pg_query_free_protobuf_parse_result(parsed);
		return NULL;
	}
	PgQuery__ParseResult *tree = pg_query__parse_result__unpack(
	    NULL, parsed.parse_tree.len, (const uint8_t *)parsed.parse_tree.data);
	pg_query_free_protobuf_parse_result(parsed);
	if (!tree) {
		refuse(&pl, PLAN_OOM);
		return NULL;
	}
	merge_plan_t *plan = NULL;
	if (tree->n_stmts != 1 || !tree->stmts[0]->stmt ||
	    tree->stmts[0]->stmt->node_case != PG_QUERY__NODE__NODE_SELECT_STMT) {
		refuse(&pl, "only a single SELECT can be merged from several shards");
		goto done;
	}
	plan = calloc(1, sizeof(*plan));
	if (!plan) {
		refuse(&pl, PLAN_OOM);
		goto done;
	}
	plan->having = -1;
	pl.plan = plan;
	pl.stmt = tree->stmts[0]->stmt->select_stmt;
	if (!plan_select(&pl))
		goto done;
	if (pl.stmt->op == PG_QUERY__SET_OPERATION__SETOP_NONE) /* set operations run as written */
		plan->shard_sql = build_shard_sql(&pl);
	if (pl.failed)
		goto done;
	plan->rewritten = plan->shard_sql != NULL;
	if (!plan->shard_sql && !(plan->shard_sql = strdup(sql)))
		refuse(&pl, PLAN_OOM);
done:
	planner_release(&pl);
	pg_query__parse_result__free_unpacked(tree, NULL);
	if (pl.failed) {
		merge_plan_free(plan);
		return NULL;
	}
	return plan;
}

void merge_plan_free(merge_plan_t *p)
{
	if (!p)
		return;
	free(p->shard_sql);
	free(p->sort);
	free(p->distinct_on);
	free(p->results);
	free(p->group_cols);
	for (int i = 0; i < p->n_conds; i++) {
		free(p->conds[i].lhs.text);
		free(p->conds[i].rhs.text);
	}
	free(p->conds);
	free(p->cond_args);
	free(p);
}

const char *merge_plan_shard_sql(const merge_plan_t *p)
{
	return p->shard_sql;
}

/* ---- describing a plan ---- */

typedef struct {
	char *out;
	size_t cap;
	size_t len;
} text_out_t;

static void put(text_out_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(text_out_t *t, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *dst = t->len < t->cap ? t->out + t->len : NULL;
	size_t room = t->len < t->cap ? t->cap - t->len : 0;
	int n = vsnprintf(dst, room, fmt, ap);
	va_end(ap);
	if (n > 0)
		t->len += (size_t)n;
}

static void put_colref(text_out_t *t, merge_colref_t c)
{
	static const char *const prefix[] = {"", "e", "h"};
	put(t, "%s%d", prefix[c.base], c.index);
}

static void put_bound(text_out_t *t, const char *name, merge_bound_t b)
{
	if (b.kind == MERGE_BOUND_CONST)
		put(t, " %s=%" PRId64, name, b.value);
	else if (b.kind == MERGE_BOUND_PARAM)
		put(t, " %s=$%d", name, b.param);
}

static void put_operand(text_out_t *t, merge_operand_t o)
{
	switch (o.kind) {
	case MERGE_OPERAND_RESULT:
		put(t, "r%d", o.index);
		break;
	case MERGE_OPERAND_CONST:
		put(t, "'%s'", o.text);
		break;
	case MERGE_OPERAND_PARAM:
		put(t, "$%d", o.index);
		break;
	case MERGE_OPERAND_NULL:
		put(t, "null");
		break;
	}
}

static void put_cond(text_out_t *t, const merge_plan_t *p, int index, int depth)
{
	static const char *const ops[] = {"=", "<>", "<", "<=", ">", ">="};
	const merge_cond_t *c = &p->conds[index];
	if (depth > 100)
		return;
	switch (c->kind) {
	case MERGE_COND_AND:
	case MERGE_COND_OR:
		put(t, "(");
		for (int k = 0; k < c->n_args; k++) {
			if (k > 0)
				put(t, c->kind == MERGE_COND_AND ? " and " : " or ");
			put_cond(t, p, p->cond_args[c->first_arg + k], depth + 1);
		}
		put(t, ")");
		break;
	case MERGE_COND_NOT:
		put(t, "not ");
		put_cond(t, p, p->cond_args[c->first_arg], depth + 1);
		break;
	case MERGE_COND_CMP:
		put_operand(t, c->lhs);
		put(t, " %s ", ops[c->op]);
		put_operand(t, c->rhs);
		break;
	case MERGE_COND_IS_NULL:
	case MERGE_COND_IS_NOT_NULL:
		put_operand(t, c->lhs);
		put(t, c->kind == MERGE_COND_IS_NULL ? " is null" : " is not null");
		break;
	}
}

size_t merge_plan_describe(const merge_plan_t *p, char *out, size_t outlen)
{
	text_out_t t = {out, outlen, 0};
	if (out && outlen > 0)
		out[0] = '\0';
	put(&t, "%s", merge_mode_name(p->mode));
	if (p->mode == MERGE_MODE_AGGREGATE) {
		put(&t, " results=[");
		int visible = p->n_results - p->n_hidden;
		for (int i = 0; i < p->n_results; i++) {
			const merge_result_col_t *r = &p->results[i];
			put(&t, "%s%s%s:%d", i ? ", " : "", i >= visible ? "h:" : "",
			    merge_agg_name(r->agg), r->shard_col);
			if (r->shard_col2 >= 0)
				put(&t, "/%d", r->shard_col2);
		}
		put(&t, "]");
		if (p->grouped) {
			put(&t, " group=[");
			for (int i = 0; i < p->n_group_cols; i++)
				put(&t, "%s%d", i ? "," : "", p->group_cols[i]);
			put(&t, "]");
		}
		if (p->having >= 0) {
			put(&t, " having=");
			put_cond(&t, p, p->having, 0);
		}
	}
	if (p->n_sort > 0) {
		put(&t, " sort=[");
		for (int i = 0; i < p->n_sort; i++) {
			if (i > 0)
				put(&t, ", ");
			put_colref(&t, p->sort[i].col);
			put(&t, " %s nulls %s", p->sort[i].descending ? "desc" : "asc",
			    p->sort[i].nulls_first ? "first" : "last");
		}
		put(&t, "]");
	}
	if (p->distinct)
		put(&t, " distinct");
	if (p->n_distinct_on > 0) {
		put(&t, " distinct_on=[");
		for (int i = 0; i < p->n_distinct_on; i++) {
			if (i > 0)
				put(&t, ",");
			put_colref(&t, p->distinct_on[i]);
		}
		put(&t, "]");
	}
	put_bound(&t, "limit", p->limit);
	put_bound(&t, "offset", p->offset);
	if (p->with_ties)
		put(&t, " with_ties");
	if (p->n_hidden > 0)
		put(&t, " hidden=%d", p->n_hidden);
	return t.len;
}

bool merge_plan_shard_formats(const merge_plan_t *p, int n_client, const int16_t *client,
                              int16_t *out, int out_cap, int *n_out)
{
	if (n_client < 0 || (n_client > 0 && !client))
		return false;
	if (n_client <= 1) {
		if (n_client > out_cap)
			return false;
		if (n_client == 1)
			out[0] = client[0];
		*n_out = n_client;
		return true;
	}
	if (p->mode != MERGE_MODE_AGGREGATE) {
		int n = n_client + p->n_hidden;
		if (n > out_cap)
			return false;
		memcpy(out, client, sizeof(*out) * (size_t)n_client);
		for (int c = n_client; c < n; c++)
			out[c] = 0;
		*n_out = n;
		return true;
	}
	int visible = p->n_results - p->n_hidden;
	if (n_client != visible || p->n_shard_cols > out_cap)
		return false;
	for (int c = 0; c < p->n_shard_cols; c++)
		out[c] = 0;
	for (int i = 0; i < visible; i++)
		out[p->results[i].shard_col] = client[i];
	*n_out = p->n_shard_cols;
	return true;
}
