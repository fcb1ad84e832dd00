/*
 * keys.c - the shard-key facts of one SQL text (see keys.h).
 *
 * The protobuf parse tree is walked block by block (one SELECT, INSERT,
 * UPDATE, DELETE, MERGE or COPY level). For each block:
 *
 *   1. its WITH list: every CTE body is a block of its own, and a CTE's name
 *      hides a table of the same name in the blocks that can see it;
 *   2. its FROM tree: configured tables become rels, numbered contiguously,
 *      and every name a column can be qualified with is recorded (aliases,
 *      join aliases, and "opaque" names: sub-selects, functions, CTEs and
 *      tables we do not shard), as PostgreSQL's transformFromClause() does;
 *   3. everything else that may hold a subquery (target list, sub-selects
 *      in FROM, function arguments, ON quals, WHERE, RETURNING, ...) is
 *      searched generically, by protobuf-c reflection as analyze.c does, and
 *      every query found there is a sub-block;
 *   4. the constraint of each rel is built from WHERE and its inner join
 *      quals, and key equalities between rels are recorded.
 *
 * Steps 2 and 4 keep a block's own rels, names and joins on stacks in the
 * builder that sub-blocks push above and pop, so a block's rels stay the
 * range [first_rel, first_rel + n_rels).
 *
 * Strings point into the parse tree (or the builder's arena) while building;
 * freeze() copies everything into one allocation before the tree is freed.
 */
#include "analyze/keys.h"

#include <pg_query.h>
#include <pg_query/pg_query.pb-c.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Constraint results that are not (yet) a node of conds[]: building never
 * allocates a node for them, only a rel's root is materialised. */
#define COND_ALL  (-1)
#define COND_NONE (-2)

#define ARENA_CHUNK 4096

/* ---- names ---- */

const char *keys_value_kind_name(keys_value_kind_t kind)
{
	switch (kind) {
	case KV_LITERAL:
		return "literal";
	case KV_PARAM:
		return "param";
	case KV_NULL:
		return "null";
	case KV_UNKNOWN:
		return "unknown";
	}
	return "invalid";
}

const char *keys_cond_kind_name(keys_cond_kind_t kind)
{
	switch (kind) {
	case KC_ALL:
		return "all";
	case KC_AND:
		return "and";
	case KC_OR:
		return "or";
	case KC_IN:
		return "in";
	case KC_RANGE:
		return "range";
	case KC_NONE:
		return "none";
	}
	return "invalid";
}

/* ---- the builder ---- */

typedef struct arena_chunk {
	struct arena_chunk *next;
	size_t used, cap;
	char data[];
} arena_chunk_t;

typedef enum { NAME_REL, NAME_JOIN, NAME_OPAQUE } name_kind_t;

/* A name a column reference can be qualified with, in one block's FROM. */
typedef struct {
	name_kind_t kind;
	const char *refname; /* the alias, else the relation name */
	const char *schema;  /* the RangeVar's schema when refname is its relname */
	bool by_relname;     /* no alias: "schema.relname.col" may reach it */
	int rel;             /* NAME_REL */
	int lo, hi;          /* NAME_JOIN: the rels [lo, hi) under the aliased join */
} scope_name_t;

/* One JoinExpr of a block's FROM: rels [lo, mid) left of it, [mid, hi) right. */
typedef struct {
	const PgQuery__JoinExpr *join;
	int lo, mid, hi;
} scope_join_t;

/* One block being walked; lives on the C stack, linked to its enclosing one. */
typedef struct scope {
	const struct scope *parent;
	int block;
	int depth;
	int first_rel, n_rels;
	int first_name, n_names;
	int first_join, n_joins;
	int cte_mark; /* CTE names visible before this block's WITH */
} scope_t;

/* What the builder knows of a rel besides keys_rel_t. */
typedef struct {
	bool key_hidden; /* column aliases (t AS x(a, b)) may rename the key */
	int group;       /* union-find over INNER JOIN ... USING (key) */
} rel_extra_t;

typedef struct {
	const keys_table_t *tables;
	int n_tables;
	keys_facts_t f; /* arrays grown here, strings not yet copied */
	int cap_rels, cap_conds, cap_children, cap_values, cap_joins;
	int n_rows;         /* INSERT rows kept */
	rel_extra_t *extra; /* parallel to f.rels, cap_rels long */

	scope_name_t *names;
	int n_names, cap_names;
	scope_join_t *fjoins;
	int n_fjoins, cap_fjoins;
	const char **ctes;
	int n_ctes, cap_ctes;
	int *stack; /* children of AND/OR nodes being built */
	int n_stack, cap_stack;

	arena_chunk_t *arena;
	const PgQuery__Node *top; /* the current top-level statement */
	int statement;
	int n_blocks;
	long steps;
	int key_updates; /* assignments to a key seen */
	bool oom;
} builder_t;

static keys_value_t value_unknown(void)
{
	return (keys_value_t){.kind = KV_UNKNOWN, .text = NULL, .param = 0, .array = false};
}

static bool str_present(const char *s)
{
	return s && s[0] != '\0';
}

static bool str_eq(const char *a, const char *b)
{
	return a && b && strcmp(a, b) == 0;
}

/* Grows the array *slot (of elem-sized items, *cap of them) to hold one more.
 * The pointer is moved with memcpy so any item type can share this function. */
static bool grow(builder_t *b, void *slot, int *cap, size_t elem)
{
	void *old;
	memcpy(&old, slot, sizeof(old));
	int want = *cap ? *cap * 2 : 16;
	void *grown = realloc(old, (size_t)want * elem);
	if (!grown) {
		b->oom = true;
		return false;
	}
	memcpy(slot, &grown, sizeof(grown));
	*cap = want;
	return true;
}

#define ROOM(b, arr, n, cap) ((n) < (cap) || grow((b), &(arr), &(cap), sizeof(*(arr))))

/* n bytes that stay put until the builder is freed (strings we make up:
 * the parse tree has no text for an integer constant or a negation). */
static char *arena_alloc(builder_t *b, size_t n)
{
	arena_chunk_t *c = b->arena;
	if (!c || c->cap - c->used < n) {
		size_t cap = n > ARENA_CHUNK ? n : ARENA_CHUNK;
		c = malloc(sizeof(*c) + cap);
		if (!c) {
			b->oom = true;
			return NULL;
		}
		c->next = b->arena;
		c->used = 0;
		c->cap = cap;
		b->arena = c;
	}
	char *out = c->data + c->used;
	c->used += n;
	return out;
}

/* Counts one visited node; false (and truncated) once the budget is spent. */
static bool take_step(builder_t *b, int depth)
{
	if (depth > KEYS_MAX_DEPTH || ++b->steps > KEYS_MAX_STEPS) {
		b->f.truncated = true;
		return false;
	}
	return true;
}

/* ---- tables and names ---- */

/* The configured table a RangeVar names, or -1. An unqualified name is in
 * "public" (the default search_path); see keys_table_t. */
static int find_table(const builder_t *b, const PgQuery__RangeVar *rv)
{
	const char *schema = str_present(rv->schemaname) ? rv->schemaname : NULL;
	for (int i = 0; i < b->n_tables; i++) {
		const keys_table_t *t = &b->tables[i];
		if (!str_eq(t->name, rv->relname))
			continue;
		const char *want = t->schema ? t->schema : "public";
		if (schema ? strcmp(schema, want) == 0 : strcmp(want, "public") == 0)
			return i;
	}
	return -1;
}

/* Name lookups scan their scope: they count as steps too, or a block with
 * many rels and a long WHERE could take quadratic time unnoticed. */
static void count_steps(builder_t *b, int n)
{
	b->steps += n;
}

static bool cte_visible(builder_t *b, const char *name)
{
	count_steps(b, b->n_ctes);
	for (int i = b->n_ctes - 1; i >= 0; i--)
		if (strcmp(b->ctes[i], name) == 0)
			return true;
	return false;
}

static void push_cte(builder_t *b, const char *name)
{
	if (str_present(name) && ROOM(b, b->ctes, b->n_ctes, b->cap_ctes))
		b->ctes[b->n_ctes++] = name;
}

static void push_name(builder_t *b, scope_name_t name)
{
	if (str_present(name.refname) && ROOM(b, b->names, b->n_names, b->cap_names))
		b->names[b->n_names++] = name;
}

static const char *alias_name(const PgQuery__Alias *alias)
{
	return alias && str_present(alias->aliasname) ? alias->aliasname : NULL;
}

static void push_opaque(builder_t *b, const char *refname)
{
	push_name(b, (scope_name_t){.kind = NAME_OPAQUE, .refname = refname, .rel = -1});
}

static int find_group(builder_t *b, int rel)
{
	while (b->extra[rel].group != rel) {
		b->extra[rel].group = b->extra[b->extra[rel].group].group;
		rel = b->extra[rel].group;
	}
	return rel;
}

static const char *rel_key(const builder_t *b, int rel)
{
	return b->extra[rel].key_hidden ? NULL : b->tables[b->f.rels[rel].table].key;
}

/*
 * Registers a RangeVar of the current block: a rel when it names a
 * configured table that no visible CTE hides, an opaque name otherwise.
 * Returns the rel, or -1.
 */
static int add_range_var(builder_t *b, const scope_t *s, const PgQuery__RangeVar *rv, bool target,
                         bool nullable)
{
	if (!rv || !str_present(rv->relname))
		return -1;
	const char *alias = alias_name(rv->alias);
	const char *refname = alias ? alias : rv->relname;
	int table = -1;
	if (str_present(rv->schemaname) || !cte_visible(b, rv->relname))
		table = find_table(b, rv);
	if (table < 0) {
		push_name(b, (scope_name_t){.kind = NAME_OPAQUE,
		                            .refname = refname,
		                            .schema = rv->schemaname,
		                            .by_relname = !alias,
		                            .rel = -1});
		return -1;
	}
	if (b->f.n_rels == KEYS_MAX_RELS) {
		b->f.truncated = true;
		push_opaque(b, refname);
		return -1;
	}
	int cap = b->cap_rels;
	if (!ROOM(b, b->f.rels, b->f.n_rels, b->cap_rels))
		return -1;
	if (cap != b->cap_rels) {
		rel_extra_t *grown = realloc(b->extra, (size_t)b->cap_rels * sizeof(*grown));
		if (!grown) {
			b->oom = true;
			return -1;
		}
		b->extra = grown;
	}
	int rel = b->f.n_rels++;
	b->f.rels[rel] = (keys_rel_t){
	    .table = table,
	    .alias = alias,
	    .statement = b->statement,
	    .block = s->block,
	    .parent_block = s->parent ? s->parent->block : -1,
	    .target = target,
	    .nullable_side = nullable,
	    .cond = -1,
	};
	b->extra[rel] =
	    (rel_extra_t){.key_hidden = rv->alias && rv->alias->n_colnames > 0, .group = rel};
	push_name(b, (scope_name_t){.kind = NAME_REL,
	                            .refname = refname,
	                            .schema = rv->schemaname,
	                            .by_relname = !alias,
	                            .rel = rel});
	return rel;
}

/* ---- column references ---- */

/* A resolved key column: rel, or with group set, the merged column of an
 * INNER JOIN ... USING (key) that stands for every rel of rel's group. */
typedef struct {
	int rel;
	bool group;
} key_ref_t;

static const key_ref_t NO_KEY_REF = {-1, false};

/*
 * The key column col among the rels [lo, hi): the one rel whose key it is;
 * when several share that key name, their USING-merged column if they are
 * all in one group (PostgreSQL would reject the ambiguous reference
 * otherwise). found tells whether any rel has that key.
 */
static key_ref_t resolve_in_range(builder_t *b, int lo, int hi, const char *col, bool *found)
{
	key_ref_t ref = NO_KEY_REF;
	int count = 0;
	bool one_group = true;
	count_steps(b, hi - lo);
	for (int r = lo; r < hi; r++) {
		if (!str_eq(rel_key(b, r), col))
			continue;
		if (count++ == 0)
			ref.rel = r;
		else if (find_group(b, r) != find_group(b, ref.rel))
			one_group = false;
	}
	*found = count > 0;
	if (count > 1) {
		if (!one_group)
			return NO_KEY_REF;
		ref.group = true;
	}
	return ref;
}

/* "schema.rel.col" may name a RangeVar given as rel or schema.rel. */
static bool schema_matches(const scope_name_t *name, const char *schema)
{
	if (!schema)
		return true;
	if (!name->by_relname)
		return false;
	return str_present(name->schema) ? strcmp(name->schema, schema) == 0
	                                 : strcmp(schema, "public") == 0;
}

static key_ref_t resolve_qualified(builder_t *b, const scope_t *s, const char *schema,
                                   const char *qualifier, const char *col)
{
	for (; s; s = s->parent) {
		count_steps(b, s->n_names);
		for (int i = s->first_name; i < s->first_name + s->n_names; i++) {
			const scope_name_t *name = &b->names[i];
			if (!str_eq(name->refname, qualifier) || !schema_matches(name, schema))
				continue;
			if (name->kind == NAME_REL)
				return str_eq(rel_key(b, name->rel), col)
				           ? (key_ref_t){name->rel, false}
				           : NO_KEY_REF;
			if (name->kind == NAME_JOIN) {
				bool found;
				return resolve_in_range(b, name->lo, name->hi, col, &found);
			}
			return NO_KEY_REF;
		}
	}
	return NO_KEY_REF;
}

/*
 * Which rel's key column a ColumnRef names, if any. Qualified names go to
 * the nearest block that has that name; an unqualified one to the nearest
 * block with a rel keyed on it (a correlated reference when that is not the
 * current block). A column of a table we do not shard is never a key.
 */
static key_ref_t resolve_column(builder_t *b, const scope_t *s, const PgQuery__Node *n)
{
	if (!n || n->node_case != PG_QUERY__NODE__NODE_COLUMN_REF)
		return NO_KEY_REF;
	const PgQuery__ColumnRef *c = n->column_ref;
	const char *parts[4];
	size_t count = c->n_fields;
	if (count == 0 || count > 4)
		return NO_KEY_REF;
	for (size_t i = 0; i < count; i++) {
		const PgQuery__Node *f = c->fields[i];
		if (!f || f->node_case != PG_QUERY__NODE__NODE_STRING || !f->string)
			return NO_KEY_REF; /* t.* */
		parts[i] = f->string->sval;
	}
	const char *col = parts[count - 1];
	if (count >= 2)
		return resolve_qualified(b, s, count >= 3 ? parts[count - 3] : NULL,
		                         parts[count - 2], col);
	for (; s; s = s->parent) {
		bool found;
		key_ref_t ref =
		    resolve_in_range(b, s->first_rel, s->first_rel + s->n_rels, col, &found);
		if (found)
			return ref;
	}
	return NO_KEY_REF;
}

static bool is_key_of(builder_t *b, const scope_t *s, const PgQuery__Node *n, int rel)
{
	key_ref_t ref = resolve_column(b, s, n);
	if (ref.rel < 0)
		return false;
	return ref.rel == rel || (ref.group && find_group(b, ref.rel) == find_group(b, rel));
}

/* ---- values ---- */

static bool is_integer_type(const PgQuery__TypeName *t)
{
	if (!t || t->n_names == 0)
		return false;
	const PgQuery__Node *last = t->names[t->n_names - 1];
	if (!last || last->node_case != PG_QUERY__NODE__NODE_STRING || !last->string)
		return false;
	const char *name = last->string->sval;
	return str_eq(name, "int2") || str_eq(name, "int4") || str_eq(name, "int8");
}

static const char *skip_digits(const char *p, bool *any)
{
	for (; *p >= '0' && *p <= '9'; p++)
		*any = true;
	return p;
}

/* [-+]digits[.digits][e[-+]digits], as the lexer reads numbers (and as a
 * numeric type's text form reads back). */
static bool looks_numeric(const char *s)
{
	if (!s)
		return false;
	bool digits = false, exponent_digits = false;
	const char *p = s + (*s == '-' || *s == '+');
	p = skip_digits(p, &digits);
	if (*p == '.')
		p = skip_digits(p + 1, &digits);
	if (!digits)
		return false;
	if (*p == 'e' || *p == 'E') {
		p++;
		p += *p == '-' || *p == '+';
		p = skip_digits(p, &exponent_digits);
		if (!exponent_digits)
			return false;
	}
	return *p == '\0';
}

static bool has_fraction(const char *s)
{
	return strpbrk(s, ".eE") != NULL;
}

static keys_value_t literal(const char *text)
{
	return (keys_value_t){.kind = text ? KV_LITERAL : KV_UNKNOWN, .text = text};
}

static keys_value_t read_const(builder_t *b, const PgQuery__AConst *c)
{
	if (c->isnull)
		return (keys_value_t){.kind = KV_NULL};
	switch (c->val_case) {
	case PG_QUERY__A__CONST__VAL_IVAL: {
		char *digits = arena_alloc(b, 12); /* "-2147483648" */
		if (digits)
			snprintf(digits, 12, "%d", c->ival ? c->ival->ival : 0);
		return literal(digits);
	}
	case PG_QUERY__A__CONST__VAL_FVAL:
		return literal(c->fval ? c->fval->fval : NULL);
	case PG_QUERY__A__CONST__VAL_BOOLVAL:
		return literal(c->boolval && c->boolval->boolval ? "true" : "false");
	case PG_QUERY__A__CONST__VAL_SVAL:
		return literal(c->sval ? c->sval->sval : NULL);
	default:
		return value_unknown(); /* bit strings: their text form is not what was written */
	}
}

/* The operator of an A_Expr: its name, unqualified or in pg_catalog. */
static const char *op_name(const PgQuery__AExpr *e)
{
	const PgQuery__Node *last = e->n_name ? e->name[e->n_name - 1] : NULL;
	if (!last || last->node_case != PG_QUERY__NODE__NODE_STRING || !last->string)
		return NULL;
	if (e->n_name == 2) {
		const PgQuery__Node *schema = e->name[0];
		if (!schema || schema->node_case != PG_QUERY__NODE__NODE_STRING ||
		    !str_eq(schema->string->sval, "pg_catalog"))
			return NULL;
	} else if (e->n_name != 1) {
		return NULL;
	}
	return last->string->sval;
}

static keys_value_t read_value(builder_t *b, const PgQuery__Node *n, int depth);

/* -v and +v of a number (PostgreSQL folds "-5" itself, not "-(5)" or "-5::int"). */
static keys_value_t read_signed(builder_t *b, const PgQuery__AExpr *e, int depth)
{
	const char *op = op_name(e);
	if (e->lexpr || !op || (strcmp(op, "-") != 0 && strcmp(op, "+") != 0))
		return value_unknown();
	keys_value_t v = read_value(b, e->rexpr, depth + 1);
	if (v.kind != KV_LITERAL || !looks_numeric(v.text))
		return value_unknown();
	if (op[0] == '+')
		return v;
	if (v.text[0] == '-')
		return literal(v.text + 1);
	size_t n = strlen(v.text) + 1;
	char *negated = arena_alloc(b, n + 1);
	if (negated) {
		negated[0] = '-';
		memcpy(negated + 1, v.text, n);
	}
	return literal(negated);
}

/* Whether a cast keeps the value of what it casts (see keys_value_t). */
static bool cast_keeps_value(const PgQuery__TypeName *t, keys_value_t v)
{
	if (!t || t->n_typmods > 0)
		return false;
	return !(is_integer_type(t) && v.kind == KV_LITERAL && has_fraction(v.text));
}

/* A scalar key value: a constant or $n, through value-keeping casts. */
static keys_value_t read_value(builder_t *b, const PgQuery__Node *n, int depth)
{
	if (!n || !take_step(b, depth))
		return value_unknown();
	switch (n->node_case) {
	case PG_QUERY__NODE__NODE_A_CONST:
		return read_const(b, n->a_const);
	case PG_QUERY__NODE__NODE_PARAM_REF:
		if (n->param_ref->number < 1)
			return value_unknown();
		return (keys_value_t){.kind = KV_PARAM, .param = n->param_ref->number};
	case PG_QUERY__NODE__NODE_TYPE_CAST: {
		const PgQuery__TypeCast *tc = n->type_cast;
		keys_value_t v = read_value(b, tc->arg, depth + 1);
		if (v.kind == KV_NULL)
			return v;
		if (v.kind == KV_UNKNOWN || !cast_keeps_value(tc->type_name, v) ||
		    tc->type_name->n_array_bounds > 0)
			return value_unknown();
		return v;
	}
	case PG_QUERY__NODE__NODE_A_EXPR:
		return read_signed(b, n->a_expr, depth);
	default:
		return value_unknown(); /* COLLATE, expressions, column references, ... */
	}
}

/* The right side of key = ANY(...). */
typedef struct {
	enum { ARR_UNKNOWN, ARR_NULL, ARR_VALUE, ARR_ELEMENTS } kind;
	keys_value_t value;                  /* ARR_VALUE: $n or a literal, array = true */
	const PgQuery__AArrayExpr *elements; /* ARR_ELEMENTS */
	bool integer_cast;                   /* cast to int2[]/int4[]/int8[] */
} array_arg_t;

static array_arg_t read_array(builder_t *b, const PgQuery__Node *n, int depth)
{
	array_arg_t out = {.kind = ARR_UNKNOWN};
	if (!n || !take_step(b, depth))
		return out;
	switch (n->node_case) {
	case PG_QUERY__NODE__NODE_PARAM_REF:
	case PG_QUERY__NODE__NODE_A_CONST: {
		keys_value_t v = read_value(b, n, depth + 1);
		if (v.kind == KV_NULL)
			out.kind = ARR_NULL;
		else if (v.kind == KV_PARAM ||
		         (n->node_case == PG_QUERY__NODE__NODE_A_CONST &&
		          n->a_const->val_case == PG_QUERY__A__CONST__VAL_SVAL))
			out.kind = ARR_VALUE;
		out.value = v;
		out.value.array = true;
		return out;
	}
	case PG_QUERY__NODE__NODE_A_ARRAY_EXPR:
		out.kind = ARR_ELEMENTS;
		out.elements = n->a_array_expr;
		return out;
	case PG_QUERY__NODE__NODE_TYPE_CAST: {
		const PgQuery__TypeCast *tc = n->type_cast;
		if (!tc->type_name || tc->type_name->n_typmods > 0)
			return out;
		out = read_array(b, tc->arg, depth + 1);
		if (is_integer_type(tc->type_name)) {
			out.integer_cast = true;
			if (out.kind == ARR_VALUE && out.value.kind == KV_LITERAL &&
			    has_fraction(out.value.text))
				out.kind = ARR_UNKNOWN;
		}
		return out;
	}
	default:
		return out;
	}
}

/* ---- constraints ---- */

/* Adds a node; a rel's root may exceed the cap (one per rel at most), so
 * that every rel.cond stays a valid index. */
static int add_cond(builder_t *b, keys_cond_t c, bool root)
{
	if (b->f.n_conds >= KEYS_MAX_CONDS && !root) {
		b->f.truncated = true;
		return COND_ALL;
	}
	if (!ROOM(b, b->f.conds, b->f.n_conds, b->cap_conds))
		return COND_ALL;
	b->f.conds[b->f.n_conds] = c;
	return b->f.n_conds++;
}

static int new_cond(builder_t *b, keys_cond_t c)
{
	return add_cond(b, c, false);
}

static keys_cond_t cond_of_kind(keys_cond_kind_t kind)
{
	return (keys_cond_t){.kind = kind, .lo = value_unknown(), .hi = value_unknown()};
}

static bool push_value(builder_t *b, keys_value_t v)
{
	if (b->f.n_values - b->n_rows >= KEYS_MAX_VALUES) {
		b->f.truncated = true;
		return false;
	}
	if (!ROOM(b, b->f.values, b->f.n_values, b->cap_values))
		return false;
	b->f.values[b->f.n_values++] = v;
	return true;
}

/* An IN of values[first ..] when some were pushed; NONE when all were NULL. */
static int finish_in(builder_t *b, int first)
{
	if (b->f.n_values == first)
		return COND_NONE;
	keys_cond_t c = cond_of_kind(KC_IN);
	c.first_value = first;
	c.n_values = b->f.n_values - first;
	int id = new_cond(b, c);
	if (id < 0) {
		b->f.n_values = first;
		return COND_ALL;
	}
	return id;
}

static int in_of_one(builder_t *b, keys_value_t v)
{
	int first = b->f.n_values;
	if (!push_value(b, v))
		return COND_ALL;
	return finish_in(b, first);
}

/*
 * key IN (list) or key = ANY(ARRAY[list]): NULL items never match and are
 * dropped; an item that is not a value makes the whole leaf KC_ALL.
 */
static int in_of_list(builder_t *b, PgQuery__Node *const *items, size_t n, bool integer_cast,
                      int depth)
{
	int first = b->f.n_values;
	for (size_t i = 0; i < n; i++) {
		keys_value_t v = read_value(b, items[i], depth + 1);
		if (v.kind == KV_LITERAL && integer_cast && has_fraction(v.text))
			v = value_unknown();
		if (v.kind == KV_UNKNOWN || (v.kind != KV_NULL && !push_value(b, v))) {
			b->f.n_values = first;
			return COND_ALL;
		}
	}
	return finish_in(b, first);
}

static int range_cond(builder_t *b, const char *op, keys_value_t v)
{
	keys_cond_t c = cond_of_kind(KC_RANGE);
	if (op[0] == '<') {
		c.has_hi = true;
		c.hi_inclusive = op[1] == '=';
		c.hi = v;
	} else {
		c.has_lo = true;
		c.lo_inclusive = op[1] == '=';
		c.lo = v;
	}
	return new_cond(b, c);
}

/* key IS NULL: never true of a shard key, except for null-extended rows of
 * a rel on the nullable side of an outer join (an anti-join needs them all). */
static int null_test_cond(const builder_t *b, int rel)
{
	return b->f.rels[rel].nullable_side ? COND_ALL : COND_NONE;
}

static const char *flip_op(const char *op)
{
	if (strcmp(op, "<") == 0)
		return ">";
	if (strcmp(op, "<=") == 0)
		return ">=";
	if (strcmp(op, ">") == 0)
		return "<";
	if (strcmp(op, ">=") == 0)
		return "<=";
	return op;
}

static bool is_comparison(const char *op)
{
	return op && (strcmp(op, "=") == 0 || strcmp(op, "<") == 0 || strcmp(op, "<=") == 0 ||
	              strcmp(op, ">") == 0 || strcmp(op, ">=") == 0);
}

/* key <op> v and v <op> key, op one of = < <= > >=; also IS NOT DISTINCT FROM. */
static int comparison_cond(builder_t *b, const scope_t *s, const PgQuery__AExpr *e, int rel,
                           bool not_distinct, int depth)
{
	const char *op = op_name(e);
	if (!is_comparison(op) || (not_distinct && strcmp(op, "=") != 0))
		return COND_ALL;
	const PgQuery__Node *other;
	if (is_key_of(b, s, e->lexpr, rel)) {
		other = e->rexpr;
	} else if (is_key_of(b, s, e->rexpr, rel)) {
		other = e->lexpr;
		op = flip_op(op);
	} else {
		return COND_ALL;
	}
	keys_value_t v = read_value(b, other, depth + 1);
	if (v.kind == KV_UNKNOWN)
		return COND_ALL;
	if (v.kind == KV_NULL)
		return not_distinct ? null_test_cond(b, rel) : COND_NONE;
	return op[0] == '=' ? in_of_one(b, v) : range_cond(b, op, v);
}

static int any_cond(builder_t *b, const scope_t *s, const PgQuery__AExpr *e, int rel, int depth)
{
	if (!str_eq(op_name(e), "=") || !is_key_of(b, s, e->lexpr, rel))
		return COND_ALL;
	array_arg_t arg = read_array(b, e->rexpr, depth + 1);
	switch (arg.kind) {
	case ARR_NULL:
		return COND_NONE;
	case ARR_VALUE:
		if (arg.value.kind == KV_LITERAL && strcmp(arg.value.text, "{}") == 0)
			return COND_NONE;
		return in_of_one(b, arg.value);
	case ARR_ELEMENTS:
		return in_of_list(b, arg.elements->elements, arg.elements->n_elements,
		                  arg.integer_cast, depth);
	default:
		return COND_ALL;
	}
}

static int between_cond(builder_t *b, const scope_t *s, const PgQuery__AExpr *e, int rel, int depth)
{
	const PgQuery__Node *r = e->rexpr;
	if (!is_key_of(b, s, e->lexpr, rel) || !r || r->node_case != PG_QUERY__NODE__NODE_LIST ||
	    r->list->n_items != 2)
		return COND_ALL;
	keys_value_t lo = read_value(b, r->list->items[0], depth + 1);
	keys_value_t hi = read_value(b, r->list->items[1], depth + 1);
	if (lo.kind == KV_UNKNOWN || hi.kind == KV_UNKNOWN)
		return COND_ALL;
	if (lo.kind == KV_NULL || hi.kind == KV_NULL)
		return COND_NONE;
	keys_cond_t c = cond_of_kind(KC_RANGE);
	c.has_lo = c.has_hi = c.lo_inclusive = c.hi_inclusive = true;
	c.lo = lo;
	c.hi = hi;
	return new_cond(b, c);
}

static int a_expr_cond(builder_t *b, const scope_t *s, const PgQuery__AExpr *e, int rel, int depth)
{
	switch (e->kind) {
	case PG_QUERY__A__EXPR__KIND__AEXPR_OP:
		return comparison_cond(b, s, e, rel, false, depth);
	case PG_QUERY__A__EXPR__KIND__AEXPR_NOT_DISTINCT:
		return comparison_cond(b, s, e, rel, true, depth);
	case PG_QUERY__A__EXPR__KIND__AEXPR_IN:
		if (!str_eq(op_name(e), "=") || !is_key_of(b, s, e->lexpr, rel) || !e->rexpr ||
		    e->rexpr->node_case != PG_QUERY__NODE__NODE_LIST)
			return COND_ALL; /* NOT IN is "<>" */
		return in_of_list(b, e->rexpr->list->items, e->rexpr->list->n_items, false, depth);
	case PG_QUERY__A__EXPR__KIND__AEXPR_OP_ANY:
		return any_cond(b, s, e, rel, depth);
	case PG_QUERY__A__EXPR__KIND__AEXPR_BETWEEN:
		return between_cond(b, s, e, rel, depth);
	default:
		return COND_ALL; /* <>, LIKE, DISTINCT, ALL, NOT BETWEEN, SYMMETRIC, ... */
	}
}

static int build_cond(builder_t *b, const scope_t *s, const PgQuery__Node *n, int rel, int depth);

static bool push_child(builder_t *b, int cond)
{
	if (!ROOM(b, b->stack, b->n_stack, b->cap_stack))
		return false;
	b->stack[b->n_stack++] = cond;
	return true;
}

/*
 * Adds one operand of an AND (or OR) being built. A node of the same kind
 * that was the last one built is flattened into it and taken back out of
 * conds[]/children[]. Returns false when the operand decides the whole
 * (NONE in an AND, ALL in an OR).
 */
static bool add_operand(builder_t *b, keys_cond_kind_t kind, int cond)
{
	int absorbing = kind == KC_AND ? COND_NONE : COND_ALL;
	int neutral = kind == KC_AND ? COND_ALL : COND_NONE;
	if (cond == absorbing)
		return false;
	if (cond == neutral)
		return true;
	const keys_cond_t *c = &b->f.conds[cond];
	if (c->kind == kind && cond == b->f.n_conds - 1 &&
	    c->first_child + c->n_children == b->f.n_children) {
		int first = c->first_child, n = c->n_children;
		for (int i = 0; i < n; i++)
			if (!push_child(b, b->f.children[first + i]))
				return true;
		b->f.n_children = first;
		b->f.n_conds--;
		return true;
	}
	push_child(b, cond);
	return true;
}

typedef struct {
	int n_conds, n_children, n_values, n_stack;
} cond_mark_t;

static cond_mark_t mark_conds(const builder_t *b)
{
	return (cond_mark_t){b->f.n_conds, b->f.n_children, b->f.n_values, b->n_stack};
}

/* Forgets every node built since the mark: the operands of an AND that
 * turned out NONE (or an OR that turned out ALL) are unreachable. */
static void rollback_conds(builder_t *b, cond_mark_t m)
{
	b->f.n_conds = m.n_conds;
	b->f.n_children = m.n_children;
	b->f.n_values = m.n_values;
	b->n_stack = m.n_stack;
}

/* The AND/OR node of the operands pushed since the mark (see keys_cond_t). */
static int finish_bool(builder_t *b, keys_cond_kind_t kind, cond_mark_t m)
{
	int n = b->n_stack - m.n_stack;
	if (n == 0)
		return kind == KC_AND ? COND_ALL : COND_NONE;
	if (n == 1) {
		b->n_stack--;
		return b->stack[m.n_stack];
	}
	int first = b->f.n_children;
	for (int i = 0; i < n; i++) {
		if (!ROOM(b, b->f.children, b->f.n_children, b->cap_children)) {
			rollback_conds(b, m);
			return COND_ALL;
		}
		b->f.children[b->f.n_children++] = b->stack[m.n_stack + i];
	}
	b->n_stack = m.n_stack;
	keys_cond_t c = cond_of_kind(kind);
	c.first_child = first;
	c.n_children = n;
	int id = new_cond(b, c);
	if (id < 0) {
		b->f.n_children = first;
		return COND_ALL;
	}
	return id;
}

static int bool_cond(builder_t *b, const scope_t *s, const PgQuery__BoolExpr *e, int rel, int depth)
{
	keys_cond_kind_t kind;
	if (e->boolop == PG_QUERY__BOOL_EXPR_TYPE__AND_EXPR)
		kind = KC_AND;
	else if (e->boolop == PG_QUERY__BOOL_EXPR_TYPE__OR_EXPR)
		kind = KC_OR;
	else
		return COND_ALL; /* NOT: not monotone */
	cond_mark_t m = mark_conds(b);
	for (size_t i = 0; i < e->n_args; i++) {
		if (!add_operand(b, kind, build_cond(b, s, e->args[i], rel, depth + 1))) {
			rollback_conds(b, m);
			return kind == KC_AND ? COND_NONE : COND_ALL;
		}
	}
	return finish_bool(b, kind, m);
}

/*
 * The constraint that qual n puts on rel's key: a superset of the keys of
 * the rows of rel for which n can be true. Returns a conds[] index or
 * COND_ALL / COND_NONE.
 */
static int build_cond(builder_t *b, const scope_t *s, const PgQuery__Node *n, int rel, int depth)
{
	if (!n || !take_step(b, depth) || b->oom)
		return COND_ALL;
	switch (n->node_case) {
	case PG_QUERY__NODE__NODE_BOOL_EXPR:
		return bool_cond(b, s, n->bool_expr, rel, depth);
	case PG_QUERY__NODE__NODE_A_EXPR:
		return a_expr_cond(b, s, n->a_expr, rel, depth);
	case PG_QUERY__NODE__NODE_NULL_TEST:
		if (n->null_test->nulltesttype == PG_QUERY__NULL_TEST_TYPE__IS_NULL &&
		    is_key_of(b, s, n->null_test->arg, rel))
			return null_test_cond(b, rel);
		return COND_ALL;
	default:
		return COND_ALL; /* subqueries, functions, CASE, NOT, IS TRUE, ... */
	}
}

/* A rel's root as a conds[] index (-1 only when out of memory). */
static int materialize(builder_t *b, int cond)
{
	if (cond >= 0)
		return cond;
	return add_cond(b, cond_of_kind(cond == COND_NONE ? KC_NONE : KC_ALL), true);
}

/* rel's constraint: WHERE, and unless rel is on a nullable side, the ON
 * quals of every INNER join whose subtree holds rel. */
static int rel_cond(builder_t *b, const scope_t *s, int rel, const PgQuery__Node *where)
{
	if (!b->tables[b->f.rels[rel].table].key)
		return COND_ALL;
	cond_mark_t m = mark_conds(b);
	if (!add_operand(b, KC_AND, build_cond(b, s, where, rel, s->depth + 1))) {
		rollback_conds(b, m);
		return COND_NONE;
	}
	if (!b->f.rels[rel].nullable_side) {
		count_steps(b, s->n_joins);
		for (int j = s->first_join; j < s->first_join + s->n_joins; j++) {
			const scope_join_t *sj = &b->fjoins[j];
			if (sj->join->jointype != PG_QUERY__JOIN_TYPE__JOIN_INNER || rel < sj->lo ||
			    rel >= sj->hi)
				continue;
			int c = build_cond(b, s, sj->join->quals, rel, s->depth + 1);
			if (!add_operand(b, KC_AND, c)) {
				rollback_conds(b, m);
				return COND_NONE;
			}
		}
	}
	return finish_bool(b, KC_AND, m);
}

/* ---- joins ---- */

static bool in_scope(const scope_t *s, int rel)
{
	return rel >= s->first_rel && rel < s->first_rel + s->n_rels;
}

static void add_join(builder_t *b, int rel_a, int rel_b, bool outer)
{
	if (rel_a == rel_b)
		return;
	if (rel_a > rel_b) {
		int t = rel_a;
		rel_a = rel_b;
		rel_b = t;
	}
	for (int i = 0; i < b->f.n_joins; i++) {
		keys_join_t *j = &b->f.joins[i];
		if (j->rel_a == rel_a && j->rel_b == rel_b) {
			j->outer &= outer; /* an inner equality anywhere is the stronger fact */
			return;
		}
	}
	if (b->f.n_joins == KEYS_MAX_JOINS) {
		b->f.truncated = true;
		return;
	}
	if (ROOM(b, b->f.joins, b->f.n_joins, b->cap_joins))
		b->f.joins[b->f.n_joins++] = (keys_join_t){rel_a, rel_b, outer};
}

/* Key equalities between two rels of block s in conjunctive positions of n. */
static void collect_joins(builder_t *b, const scope_t *s, const PgQuery__Node *n, bool outer,
                          int depth)
{
	if (!n || !take_step(b, depth))
		return;
	if (n->node_case == PG_QUERY__NODE__NODE_BOOL_EXPR &&
	    n->bool_expr->boolop == PG_QUERY__BOOL_EXPR_TYPE__AND_EXPR) {
		for (size_t i = 0; i < n->bool_expr->n_args; i++)
			collect_joins(b, s, n->bool_expr->args[i], outer, depth + 1);
		return;
	}
	if (n->node_case != PG_QUERY__NODE__NODE_A_EXPR ||
	    n->a_expr->kind != PG_QUERY__A__EXPR__KIND__AEXPR_OP ||
	    !str_eq(op_name(n->a_expr), "="))
		return;
	key_ref_t l = resolve_column(b, s, n->a_expr->lexpr);
	key_ref_t r = resolve_column(b, s, n->a_expr->rexpr);
	if (l.rel >= 0 && r.rel >= 0 && in_scope(s, l.rel) && in_scope(s, r.rel))
		add_join(b, l.rel, r.rel, outer);
}

static int first_keyed(builder_t *b, int lo, int hi, const char *col)
{
	count_steps(b, hi - lo);
	for (int r = lo; r < hi; r++)
		if (str_eq(rel_key(b, r), col))
			return r;
	return -1;
}

/* JOIN ... USING (col): a join between the first rels keyed on col on each
 * side; an INNER one also merges them (and every rel keyed on col on either
 * side) into one group, so that an unqualified col names them all. */
static void using_joins(builder_t *b, const scope_join_t *sj, bool merge)
{
	const PgQuery__JoinExpr *j = sj->join;
	for (size_t i = 0; i < j->n_using_clause; i++) {
		const PgQuery__Node *c = j->using_clause[i];
		if (!c || c->node_case != PG_QUERY__NODE__NODE_STRING || !c->string)
			continue;
		const char *col = c->string->sval;
		int left = first_keyed(b, sj->lo, sj->mid, col);
		int right = first_keyed(b, sj->mid, sj->hi, col);
		if (left < 0 || right < 0)
			continue;
		if (merge) {
			count_steps(b, sj->hi - sj->lo);
			int root = find_group(b, left);
			for (int r = sj->lo; r < sj->hi; r++)
				if (str_eq(rel_key(b, r), col))
					b->extra[find_group(b, r)].group = root;
		} else {
			add_join(b, left, right, j->jointype != PG_QUERY__JOIN_TYPE__JOIN_INNER);
		}
	}
}

/* ---- FROM ---- */

/*
 * Registers the rels and names of one FROM item (phase 2 of the file
 * comment). Sub-selects and functions are only named here: their insides
 * are walked by walk_from_subqueries() once every rel of the block exists.
 */
static void collect_from(builder_t *b, scope_t *s, const PgQuery__Node *n, bool nullable, int depth)
{
	if (!n || !take_step(b, depth))
		return;
	switch (n->node_case) {
	case PG_QUERY__NODE__NODE_RANGE_VAR:
		add_range_var(b, s, n->range_var, false, nullable);
		break;
	case PG_QUERY__NODE__NODE_RANGE_TABLE_SAMPLE:
		collect_from(b, s, n->range_table_sample->relation, nullable, depth + 1);
		break;
	case PG_QUERY__NODE__NODE_RANGE_SUBSELECT:
		push_opaque(b, alias_name(n->range_subselect->alias));
		break;
	case PG_QUERY__NODE__NODE_RANGE_FUNCTION:
		push_opaque(b, alias_name(n->range_function->alias));
		break;
	case PG_QUERY__NODE__NODE_RANGE_TABLE_FUNC:
		push_opaque(b, alias_name(n->range_table_func->alias));
		break;
	case PG_QUERY__NODE__NODE_JOIN_EXPR: {
		const PgQuery__JoinExpr *j = n->join_expr;
		PgQuery__JoinType type = j->jointype;
		scope_join_t sj = {.join = j, .lo = b->f.n_rels};
		collect_from(b, s, j->larg,
		             nullable || type == PG_QUERY__JOIN_TYPE__JOIN_RIGHT ||
		                 type == PG_QUERY__JOIN_TYPE__JOIN_FULL,
		             depth + 1);
		sj.mid = b->f.n_rels;
		collect_from(b, s, j->rarg,
		             nullable || type == PG_QUERY__JOIN_TYPE__JOIN_LEFT ||
		                 type == PG_QUERY__JOIN_TYPE__JOIN_FULL,
		             depth + 1);
		sj.hi = b->f.n_rels;
		if (ROOM(b, b->fjoins, b->n_fjoins, b->cap_fjoins))
			b->fjoins[b->n_fjoins++] = sj;
		if (type == PG_QUERY__JOIN_TYPE__JOIN_INNER)
			using_joins(b, &sj, true);
		const char *alias = alias_name(j->alias);
		if (alias)
			push_name(b, (scope_name_t){.kind = NAME_JOIN,
			                            .refname = alias,
			                            .rel = -1,
			                            .lo = sj.lo,
			                            .hi = sj.hi});
		break;
	}
	default:
		break;
	}
}

/* Starts phase 2: the block's rels, names and joins begin here. */
static void begin_from(const builder_t *b, scope_t *s)
{
	s->first_rel = b->f.n_rels;
	s->first_name = b->n_names;
	s->first_join = b->n_fjoins;
}

static void end_from(const builder_t *b, scope_t *s)
{
	s->n_rels = b->f.n_rels - s->first_rel;
	s->n_names = b->n_names - s->first_name;
	s->n_joins = b->n_fjoins - s->first_join;
}

static void walk_node(builder_t *b, const scope_t *s, const PgQuery__Node *n, int depth);
static void walk_message(builder_t *b, const scope_t *s, const ProtobufCMessage *m, int depth);

static void walk_from_subqueries(builder_t *b, const scope_t *s, const PgQuery__Node *n, int depth)
{
	if (!n || !take_step(b, depth))
		return;
	switch (n->node_case) {
	case PG_QUERY__NODE__NODE_JOIN_EXPR:
		walk_from_subqueries(b, s, n->join_expr->larg, depth + 1);
		walk_from_subqueries(b, s, n->join_expr->rarg, depth + 1);
		walk_node(b, s, n->join_expr->quals, depth + 1);
		break;
	case PG_QUERY__NODE__NODE_RANGE_SUBSELECT:
		walk_node(b, s, n->range_subselect->subquery, depth + 1);
		break;
	case PG_QUERY__NODE__NODE_RANGE_VAR:
		break;
	default:
		walk_node(b, s, n, depth + 1); /* functions, TABLESAMPLE args, XMLTABLE */
		break;
	}
}

/* ---- blocks ---- */

static void open_scope(builder_t *b, const scope_t *parent, scope_t *s, int depth)
{
	*s = (scope_t){.parent = parent,
	               .block = b->n_blocks++,
	               .depth = depth,
	               .first_rel = b->f.n_rels,
	               .first_name = b->n_names,
	               .first_join = b->n_fjoins,
	               .cte_mark = b->n_ctes};
}

static void close_scope(builder_t *b, const scope_t *s)
{
	b->n_names = s->first_name;
	b->n_fjoins = s->first_join;
	b->n_ctes = s->cte_mark;
}

/* A WITH list: each CTE body is a sub-block. A CTE's name is visible to the
 * CTEs after it, and with RECURSIVE to all of them, itself included. */
static void walk_with(builder_t *b, const scope_t *s, const PgQuery__WithClause *w, int depth)
{
	if (!w)
		return;
	for (size_t i = 0; w->recursive && i < w->n_ctes; i++)
		if (w->ctes[i] && w->ctes[i]->node_case == PG_QUERY__NODE__NODE_COMMON_TABLE_EXPR)
			push_cte(b, w->ctes[i]->common_table_expr->ctename);
	for (size_t i = 0; i < w->n_ctes; i++) {
		if (!w->ctes[i] || w->ctes[i]->node_case != PG_QUERY__NODE__NODE_COMMON_TABLE_EXPR)
			continue;
		const PgQuery__CommonTableExpr *cte = w->ctes[i]->common_table_expr;
		walk_node(b, s, cte->ctequery, depth + 1);
		if (!w->recursive)
			push_cte(b, cte->ctename);
	}
}

/* Walks the fields of m except those named in skip (handled by the caller). */
static void walk_fields(builder_t *b, const scope_t *s, const ProtobufCMessage *m,
                        const char *const *skip, int depth)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	const char *base = (const char *)m;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		if (f->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		bool skipped = false;
		for (const char *const *k = skip; k && *k && !skipped; k++)
			skipped = strcmp(*k, f->name) == 0;
		if (skipped)
			continue;
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = *(const size_t *)(base + f->quantifier_offset);
			const ProtobufCMessage *const *items =
			    *(const ProtobufCMessage *const *const *)(base + f->offset);
			for (size_t j = 0; j < n; j++)
				if (items[j])
					walk_message(b, s, items[j], depth + 1);
		} else {
			const ProtobufCMessage *child =
			    *(const ProtobufCMessage *const *)(base + f->offset);
			if (child)
				walk_message(b, s, child, depth + 1);
		}
	}
}

/* Constraints and joins of the rels of block s (phase 4). merge_on is
 * MERGE's join condition: a join source only, like an outer join's ON. */
static void finish_block(builder_t *b, const scope_t *s, const PgQuery__Node *where,
                         const PgQuery__Node *merge_on)
{
	for (int r = s->first_rel; r < s->first_rel + s->n_rels && !b->oom; r++)
		b->f.rels[r].cond = materialize(b, rel_cond(b, s, r, where));
	collect_joins(b, s, where, false, s->depth + 1);
	collect_joins(b, s, merge_on, true, s->depth + 1);
	for (int j = s->first_join; j < s->first_join + s->n_joins; j++) {
		const scope_join_t *sj = &b->fjoins[j];
		bool outer = sj->join->jointype != PG_QUERY__JOIN_TYPE__JOIN_INNER;
		collect_joins(b, s, sj->join->quals, outer, s->depth + 1);
		using_joins(b, sj, false);
	}
}

static const char *const select_skip[] = {"from_clause", "with_clause", "larg", "rarg", NULL};

static void walk_select(builder_t *b, const scope_t *parent, const PgQuery__SelectStmt *st,
                        int depth);

static void walk_select_branch(builder_t *b, const scope_t *s, const PgQuery__SelectStmt *st,
                               int depth)
{
	if (st)
		walk_select(b, s, st, depth + 1);
}

/* A SELECT, VALUES or set operation (each branch a sub-block). */
static void walk_select(builder_t *b, const scope_t *parent, const PgQuery__SelectStmt *st,
                        int depth)
{
	if (!take_step(b, depth))
		return;
	scope_t s;
	open_scope(b, parent, &s, depth);
	walk_with(b, &s, st->with_clause, depth);
	if (st->op > PG_QUERY__SET_OPERATION__SETOP_NONE) {
		walk_select_branch(b, &s, st->larg, depth);
		walk_select_branch(b, &s, st->rarg, depth);
		walk_fields(b, &s, &st->base, select_skip, depth);
		close_scope(b, &s);
		return;
	}
	begin_from(b, &s);
	for (size_t i = 0; i < st->n_from_clause; i++)
		collect_from(b, &s, st->from_clause[i], false, depth + 1);
	end_from(b, &s);
	for (size_t i = 0; i < st->n_from_clause; i++)
		walk_from_subqueries(b, &s, st->from_clause[i], depth + 1);
	walk_fields(b, &s, &st->base, select_skip, depth);
	finish_block(b, &s, st->where_clause, NULL);
	close_scope(b, &s);
}

/* ---- UPDATE, INSERT, DELETE, MERGE ---- */

/* Notes an assignment to a key (see keys_update_t). */
static void note_key_update(builder_t *b, keys_value_t v)
{
	b->f.update.sets_key = true;
	b->f.update.new_key = b->key_updates++ == 0 ? v : value_unknown();
}

/* The value a SET target assigns: (a, key) = (1, 2) gives each target a
 * MultiAssignRef to the row (or sub-select) and its position in it. */
static keys_value_t assigned_value(builder_t *b, const PgQuery__ResTarget *rt, int depth)
{
	const PgQuery__Node *v = rt->val;
	if (rt->n_indirection > 0 || !v)
		return value_unknown();
	if (v->node_case != PG_QUERY__NODE__NODE_MULTI_ASSIGN_REF)
		return read_value(b, v, depth + 1);
	const PgQuery__MultiAssignRef *ma = v->multi_assign_ref;
	const PgQuery__Node *src = ma->source;
	if (!src || src->node_case != PG_QUERY__NODE__NODE_ROW_EXPR || ma->colno < 1 ||
	    (size_t)ma->colno > src->row_expr->n_args)
		return value_unknown();
	return read_value(b, src->row_expr->args[ma->colno - 1], depth + 1);
}

/* SET lists of UPDATE, ON CONFLICT DO UPDATE and MERGE ... UPDATE on rel. */
static void check_set_list(builder_t *b, int rel, PgQuery__Node *const *targets, size_t n,
                           int depth)
{
	if (rel < 0)
		return;
	const char *key = b->tables[b->f.rels[rel].table].key;
	for (size_t i = 0; key && i < n; i++) {
		const PgQuery__Node *t = targets[i];
		if (t && t->node_case == PG_QUERY__NODE__NODE_RES_TARGET &&
		    str_eq(t->res_target->name, key))
			note_key_update(b, assigned_value(b, t->res_target, depth));
	}
}

/* Whether a VALUES list is plain: rows known, nothing that reorders or
 * drops them. */
static bool plain_values(const PgQuery__Node *n)
{
	if (!n || n->node_case != PG_QUERY__NODE__NODE_SELECT_STMT)
		return false;
	const PgQuery__SelectStmt *st = n->select_stmt;
	return st->n_values_lists > 0 && st->n_sort_clause == 0 && !st->limit_count &&
	       !st->limit_offset && st->n_locking_clause == 0;
}

static int key_position(const builder_t *b, int rel, PgQuery__Node *const *cols, size_t n)
{
	const char *key = b->tables[b->f.rels[rel].table].key;
	for (size_t i = 0; key && i < n; i++) {
		const PgQuery__Node *c = cols[i];
		if (c && c->node_case == PG_QUERY__NODE__NODE_RES_TARGET &&
		    str_eq(c->res_target->name, key))
			return (int)i;
	}
	return -1;
}

static void add_row(builder_t *b, keys_value_t v)
{
	if (b->n_rows == KEYS_MAX_ROWS) {
		b->f.truncated = true;
		return;
	}
	if (ROOM(b, b->f.values, b->f.n_values, b->cap_values)) {
		b->f.values[b->f.n_values++] = v;
		b->n_rows++;
		b->f.insert.n_rows++;
	}
}

static keys_value_t row_key(builder_t *b, const PgQuery__Node *row, int position, int depth)
{
	if (position < 0 || !row || row->node_case != PG_QUERY__NODE__NODE_LIST ||
	    (size_t)position >= row->list->n_items)
		return value_unknown();
	return read_value(b, row->list->items[position], depth + 1);
}

/* The INSERT facts of a top-level INSERT into rel. Runs before any
 * constraint is built, so the rows are contiguous in values[]. */
static void note_insert(builder_t *b, const PgQuery__InsertStmt *st, int rel, int depth)
{
	keys_insert_t *in = &b->f.insert;
	b->f.has_insert = true;
	*in = (keys_insert_t){.rel = rel,
	                      .has_columns = st->n_cols > 0,
	                      .key_position = key_position(b, rel, st->cols, st->n_cols),
	                      .n_columns = (int)st->n_cols,
	                      .default_values = !st->select_stmt,
	                      .on_conflict = st->on_conflict_clause != NULL,
	                      .returning = st->n_returning_list > 0,
	                      .first_row = b->f.n_values};
	if (!st->select_stmt) {
		add_row(b, value_unknown());
		return;
	}
	if (!plain_values(st->select_stmt)) {
		in->select = true;
		return;
	}
	const PgQuery__SelectStmt *values = st->select_stmt->select_stmt;
	const PgQuery__Node *first = values->values_lists[0];
	if (!in->has_columns && first && first->node_case == PG_QUERY__NODE__NODE_LIST)
		in->n_columns = (int)first->list->n_items;
	for (size_t i = 0; i < values->n_values_lists && !b->f.truncated && !b->oom; i++)
		add_row(b, row_key(b, values->values_lists[i], in->key_position, depth));
}

static const char *const insert_skip[] = {"relation", "with_clause", "select_stmt", NULL};

static void walk_insert(builder_t *b, const scope_t *parent, const PgQuery__InsertStmt *st,
                        int depth)
{
	scope_t s;
	open_scope(b, parent, &s, depth);
	walk_with(b, &s, st->with_clause, depth);
	begin_from(b, &s);
	int rel = add_range_var(b, &s, st->relation, true, false);
	end_from(b, &s);
	if (rel >= 0 && !b->f.has_insert && b->top &&
	    b->top->node_case == PG_QUERY__NODE__NODE_INSERT_STMT && b->top->insert_stmt == st)
		note_insert(b, st, rel, depth);
	walk_node(b, &s, st->select_stmt, depth + 1);
	walk_fields(b, &s, &st->base, insert_skip, depth);
	const PgQuery__OnConflictClause *oc = st->on_conflict_clause;
	if (oc && oc->action == PG_QUERY__ON_CONFLICT_ACTION__ONCONFLICT_UPDATE)
		check_set_list(b, rel, oc->target_list, oc->n_target_list, depth);
	finish_block(b, &s, NULL, NULL);
	close_scope(b, &s);
}

static const char *const update_skip[] = {"relation", "with_clause", "from_clause", NULL};

static void walk_update(builder_t *b, const scope_t *parent, const PgQuery__UpdateStmt *st,
                        int depth)
{
	scope_t s;
	open_scope(b, parent, &s, depth);
	walk_with(b, &s, st->with_clause, depth);
	begin_from(b, &s);
	int rel = add_range_var(b, &s, st->relation, true, false);
	for (size_t i = 0; i < st->n_from_clause; i++)
		collect_from(b, &s, st->from_clause[i], false, depth + 1);
	end_from(b, &s);
	for (size_t i = 0; i < st->n_from_clause; i++)
		walk_from_subqueries(b, &s, st->from_clause[i], depth + 1);
	walk_fields(b, &s, &st->base, update_skip, depth);
	check_set_list(b, rel, st->target_list, st->n_target_list, depth);
	finish_block(b, &s, st->where_clause, NULL);
	close_scope(b, &s);
}

static const char *const delete_skip[] = {"relation", "with_clause", "using_clause", NULL};

static void walk_delete(builder_t *b, const scope_t *parent, const PgQuery__DeleteStmt *st,
                        int depth)
{
	scope_t s;
	open_scope(b, parent, &s, depth);
	walk_with(b, &s, st->with_clause, depth);
	begin_from(b, &s);
	add_range_var(b, &s, st->relation, true, false);
	for (size_t i = 0; i < st->n_using_clause; i++)
		collect_from(b, &s, st->using_clause[i], false, depth + 1);
	end_from(b, &s);
	for (size_t i = 0; i < st->n_using_clause; i++)
		walk_from_subqueries(b, &s, st->using_clause[i], depth + 1);
	walk_fields(b, &s, &st->base, delete_skip, depth);
	finish_block(b, &s, st->where_clause, NULL);
	close_scope(b, &s);
}

static const char *const merge_skip[] = {"relation", "with_clause", "source_relation", NULL};

/* MERGE: the target and the source are rels of one block; every rel's
 * constraint is KC_ALL (WHEN clauses decide per row what happens). */
static void walk_merge(builder_t *b, const scope_t *parent, const PgQuery__MergeStmt *st, int depth)
{
	scope_t s;
	open_scope(b, parent, &s, depth);
	walk_with(b, &s, st->with_clause, depth);
	begin_from(b, &s);
	int rel = add_range_var(b, &s, st->relation, true, false);
	collect_from(b, &s, st->source_relation, false, depth + 1);
	end_from(b, &s);
	walk_from_subqueries(b, &s, st->source_relation, depth + 1);
	walk_fields(b, &s, &st->base, merge_skip, depth);
	for (size_t i = 0; i < st->n_merge_when_clauses; i++) {
		const PgQuery__Node *w = st->merge_when_clauses[i];
		if (w && w->node_case == PG_QUERY__NODE__NODE_MERGE_WHEN_CLAUSE &&
		    w->merge_when_clause->command_type == PG_QUERY__CMD_TYPE__CMD_UPDATE)
			check_set_list(b, rel, w->merge_when_clause->target_list,
			               w->merge_when_clause->n_target_list, depth);
	}
	finish_block(b, &s, NULL, st->join_condition);
	close_scope(b, &s);
}

/* ---- COPY ---- */

static const char *def_elem_string(const PgQuery__DefElem *de)
{
	const PgQuery__Node *arg = de->arg;
	if (arg && arg->node_case == PG_QUERY__NODE__NODE_STRING && arg->string)
		return arg->string->sval;
	return NULL;
}

/* HEADER's value as PostgreSQL's defGetCopyHeaderChoice() reads it: no
 * argument, true/on/1, or "match" (which also means a header line). */
static bool def_elem_header(const PgQuery__DefElem *de)
{
	const PgQuery__Node *arg = de->arg;
	if (!arg)
		return true;
	if (arg->node_case == PG_QUERY__NODE__NODE_INTEGER)
		return arg->integer && arg->integer->ival != 0;
	if (arg->node_case == PG_QUERY__NODE__NODE_BOOLEAN)
		return arg->boolean && arg->boolean->boolval;
	const char *s = def_elem_string(de);
	return s && (strcasecmp(s, "true") == 0 || strcasecmp(s, "on") == 0 ||
	             strcasecmp(s, "match") == 0);
}

static char copy_format(const char *name)
{
	if (strcmp(name, "csv") == 0)
		return 'c';
	if (strcmp(name, "binary") == 0)
		return 'b';
	return 't';
}

/* Reads COPY options (copy.c ProcessCopyOptions), then fills in the
 * defaults of the format. */
static void read_copy_options(keys_copy_t *c, PgQuery__Node *const *opts, size_t n)
{
	const char *delimiter = NULL, *quote = NULL, *escape = NULL;
	bool has_null = false;
	c->format = 't';
	for (size_t i = 0; i < n; i++) {
		if (!opts[i] || opts[i]->node_case != PG_QUERY__NODE__NODE_DEF_ELEM)
			continue;
		const PgQuery__DefElem *de = opts[i]->def_elem;
		const char *name = de->defname ? de->defname : "";
		const char *value = def_elem_string(de);
		if (strcmp(name, "format") == 0 && value)
			c->format = copy_format(value);
		else if (strcmp(name, "delimiter") == 0)
			delimiter = value;
		else if (strcmp(name, "null") == 0 && value) {
			has_null = true;
			c->null_string = value;
		} else if (strcmp(name, "header") == 0)
			c->header = def_elem_header(de);
		else if (strcmp(name, "quote") == 0)
			quote = value;
		else if (strcmp(name, "escape") == 0)
			escape = value;
		else if (strcmp(name, "encoding") == 0)
			c->encoding = value;
	}
	bool csv = c->format == 'c', binary = c->format == 'b';
	c->delimiter = binary ? '\0' : delimiter ? delimiter[0] : csv ? ',' : '\t';
	if (binary)
		c->null_string = NULL;
	else if (!has_null)
		c->null_string = csv ? "" : "\\N";
	c->quote = csv ? (quote ? quote[0] : '"') : '\0';
	c->escape = csv ? (escape ? escape[0] : c->quote) : binary ? '\0' : '\\';
}

static void walk_copy(builder_t *b, const scope_t *parent, const PgQuery__CopyStmt *st, int depth)
{
	if (st->query)
		walk_node(b, parent, st->query, depth + 1);
	if (!st->relation)
		return;
	scope_t s;
	open_scope(b, parent, &s, depth);
	begin_from(b, &s);
	int rel = add_range_var(b, &s, st->relation, st->is_from, false);
	end_from(b, &s);
	finish_block(b, &s, NULL, NULL);
	close_scope(b, &s);
	bool from_stdin = st->is_from && !st->is_program && !str_present(st->filename);
	if (rel < 0 || !from_stdin || b->f.copy.present)
		return;
	keys_copy_t *c = &b->f.copy;
	c->present = true;
	c->rel = rel;
	c->has_columns = st->n_attlist > 0;
	c->n_columns = (int)st->n_attlist;
	c->key_position = -1;
	const char *key = b->tables[b->f.rels[rel].table].key;
	for (size_t i = 0; key && i < st->n_attlist; i++) {
		const PgQuery__Node *a = st->attlist[i];
		if (a && a->node_case == PG_QUERY__NODE__NODE_STRING &&
		    str_eq(a->string->sval, key)) {
			c->key_position = (int)i;
			break;
		}
	}
	read_copy_options(c, st->options, st->n_options);
}

/* ---- the generic walk ---- */

/* A query node starts a block; anything else is searched for queries. */
static void walk_node(builder_t *b, const scope_t *s, const PgQuery__Node *n, int depth)
{
	if (!n || !take_step(b, depth) || b->oom)
		return;
	switch (n->node_case) {
	case PG_QUERY__NODE__NODE_SELECT_STMT:
		walk_select(b, s, n->select_stmt, depth);
		return;
	case PG_QUERY__NODE__NODE_INSERT_STMT:
		walk_insert(b, s, n->insert_stmt, depth);
		return;
	case PG_QUERY__NODE__NODE_UPDATE_STMT:
		walk_update(b, s, n->update_stmt, depth);
		return;
	case PG_QUERY__NODE__NODE_DELETE_STMT:
		walk_delete(b, s, n->delete_stmt, depth);
		return;
	case PG_QUERY__NODE__NODE_MERGE_STMT:
		walk_merge(b, s, n->merge_stmt, depth);
		return;
	case PG_QUERY__NODE__NODE_COPY_STMT:
		walk_copy(b, s, n->copy_stmt, depth);
		return;
	case PG_QUERY__NODE__NODE_MULTI_ASSIGN_REF:
		/* The protobuf tree repeats a multiple assignment's source under
		 * each of its columns: walk it once, or a sub-select there would
		 * become n blocks. */
		if (n->multi_assign_ref->colno > 1)
			return;
		break;
	case PG_QUERY__NODE__NODE__NOT_SET:
		return;
	default:
		break;
	}
	const ProtobufCFieldDescriptor *f =
	    protobuf_c_message_descriptor_get_field(n->base.descriptor, (unsigned)n->node_case);
	if (!f || f->type != PROTOBUF_C_TYPE_MESSAGE)
		return;
	const ProtobufCMessage *child =
	    *(const ProtobufCMessage *const *)((const char *)n + f->offset);
	if (child)
		walk_fields(b, s, child, NULL, depth);
}

static void walk_message(builder_t *b, const scope_t *s, const ProtobufCMessage *m, int depth)
{
	if (m->descriptor == &pg_query__node__descriptor) {
		walk_node(b, s, (const PgQuery__Node *)m, depth);
		return;
	}
	if (!take_step(b, depth) || b->oom)
		return;
	if (m->descriptor == &pg_query__select_stmt__descriptor)
		walk_select(b, s, (const PgQuery__SelectStmt *)m, depth);
	else
		walk_fields(b, s, m, NULL, depth);
}

/* ---- nesting guard ---- */

/*
 * libpg_query's parser, its protobuf output and protobuf-c's unpack recurse
 * once or more per tree level and cannot be stopped: measured with
 * libpg_query 15, every kind of level (a + b, NOT, ::, JOIN, UNION, ...)
 * takes about 1.9 KiB of stack, so 2 MiB overflow near 1100 levels and 8 MiB
 * near 4370. Texts that may nest deeper than the calling thread's stack
 * allows are therefore not parsed.
 */
#define STACK_PER_LEVEL 2560         /* bytes; measured ~1940, plus margin */
#define STACK_RESERVE   (384 * 1024) /* the parser's fixed needs and our own walk */

/* Bytes of stack left below this frame, or 0 when the platform cannot say. */
static size_t stack_left(void)
{
	pthread_attr_t attr;
	if (pthread_getattr_np(pthread_self(), &attr) != 0)
		return 0;
	void *base = NULL;
	size_t size = 0;
	int rc = pthread_attr_getstack(&attr, &base, &size);
	pthread_attr_destroy(&attr);
	/* The frame address, not a local's: under ASan locals may live on a
	 * fake stack. Stacks grow down from base + size. */
	uintptr_t here = (uintptr_t)__builtin_frame_address(0), lo = (uintptr_t)base;
	if (rc != 0 || here <= lo || here - lo > size)
		return 0;
	return here - lo;
}

/* How deep a text may nest and still be parsed on this thread's stack. */
static int parse_depth_limit(void)
{
	size_t left = stack_left();
	if (left == 0)
		return KEYS_MAX_NESTING;
	if (left <= STACK_RESERVE)
		return 0;
	size_t levels = (left - STACK_RESERVE) / STACK_PER_LEVEL;
	return levels < KEYS_MAX_NESTING ? (int)levels : KEYS_MAX_NESTING;
}

/* One parenthesised group (or CASE ... END) of the text being measured. */
typedef struct {
	int ops;   /* tokens of the current element that may each add a level */
	int inner; /* deepest group inside the current element */
	int chain; /* JOINs and set operations so far: separators do not reset them */
	int best;  /* deepest element closed in this group */
	bool is_case;
} nest_level_t;

static int max_int(int x, int y)
{
	return x > y ? x : y;
}

static void close_element(nest_level_t *lv, int extra)
{
	lv->best = max_int(lv->best, lv->ops + lv->inner + lv->chain + extra);
	lv->ops = lv->inner = 0;
}

static bool is_operand_token(int token)
{
	switch (token) {
	case PG_QUERY__TOKEN__IDENT:
	case PG_QUERY__TOKEN__ICONST:
	case PG_QUERY__TOKEN__FCONST:
	case PG_QUERY__TOKEN__SCONST:
	case PG_QUERY__TOKEN__USCONST:
	case PG_QUERY__TOKEN__BCONST:
	case PG_QUERY__TOKEN__XCONST:
	case PG_QUERY__TOKEN__PARAM:
	case PG_QUERY__TOKEN__SQL_COMMENT:
	case PG_QUERY__TOKEN__C_COMMENT:
		return true;
	default:
		return false;
	}
}

/* Tokens between which PostgreSQL builds flat lists, not deeper trees. */
static bool is_separator_token(int token)
{
	return token == ',' || token == ';' || token == PG_QUERY__TOKEN__AND ||
	       token == PG_QUERY__TOKEN__OR || token == PG_QUERY__TOKEN__WHEN ||
	       token == PG_QUERY__TOKEN__THEN || token == PG_QUERY__TOKEN__ELSE;
}

/* Left-deep chains whose links hold separators: a JOIN's ON quals, the
 * WHERE of a UNION branch. Each link is a level whatever lies between. */
static bool is_chain_token(int token)
{
	return token == PG_QUERY__TOKEN__JOIN || token == PG_QUERY__TOKEN__UNION ||
	       token == PG_QUERY__TOKEN__INTERSECT || token == PG_QUERY__TOKEN__EXCEPT;
}

/* Closes the innermost group into its parent. */
static void close_group(nest_level_t *levels, int *depth)
{
	nest_level_t *lv = &levels[*depth];
	close_element(lv, 0);
	levels[*depth - 1].inner = max_int(levels[*depth - 1].inner, lv->best + 1);
	(*depth)--;
}

/* Reads one token into the nesting state; levels holds n_tokens + 1 groups. */
static void measure_token(nest_level_t *levels, int *depth, int token)
{
	nest_level_t *lv = &levels[*depth];
	if (token == '(' || token == '[' || token == PG_QUERY__TOKEN__CASE) {
		/* CASE ... END nests like parentheses, its WHEN arms are a list. */
		levels[++*depth] = (nest_level_t){.is_case = token == PG_QUERY__TOKEN__CASE};
	} else if ((token == ')' || token == ']') && *depth > 0) {
		close_group(levels, depth);
	} else if (token == PG_QUERY__TOKEN__END_P && *depth > 0 && lv->is_case) {
		close_group(levels, depth);
	} else if (is_separator_token(token)) {
		close_element(lv, 1);
		if (token == ';')
			lv->chain = 0;
	} else if (is_chain_token(token)) {
		lv->chain++;
	} else if (!is_operand_token(token)) {
		lv->ops++;
	}
}

/*
 * Whether the parser's tree for sql may nest deeper than limit, from its
 * tokens alone: within an element every non-operand token may add a level
 * above its deepest group; AND, OR, commas and CASE arms start a new
 * element because PostgreSQL flattens them; JOIN and set-operation chains
 * add a level per link across elements. A text that cannot be scanned is
 * not too deep: the parser will reject it cleanly.
 */
static bool nests_deeper_than(const char *sql, int limit)
{
	PgQueryScanResult scan = pg_query_scan(sql);
	if (scan.error) {
		pg_query_free_scan_result(scan);
		return false;
	}
	PgQuery__ScanResult *tokens =
	    pg_query__scan_result__unpack(NULL, scan.pbuf.len, (const uint8_t *)scan.pbuf.data);
	pg_query_free_scan_result(scan);
	if (!tokens)
		return true; /* cannot tell: do not risk the stack */
	nest_level_t *levels = calloc(tokens->n_tokens + 1, sizeof(*levels));
	bool deep = levels == NULL;
	int depth = 0;
	for (size_t i = 0; !deep && i < tokens->n_tokens; i++) {
		measure_token(levels, &depth, (int)tokens->tokens[i]->token);
		const nest_level_t *lv = &levels[depth];
		deep = lv->ops + lv->inner + lv->chain + depth > limit;
	}
	while (!deep && depth > 0)
		close_group(levels, &depth);
	if (!deep) {
		close_element(&levels[0], 0);
		deep = levels[0].best > limit;
	}
	free(levels);
	pg_query__scan_result__free_unpacked(tokens, NULL);
	return deep;
}

/* Whether sql must not be parsed on this thread. A tree level takes at
 * least two bytes of text, so shorter texts need no measuring. */
bool keys_too_deep_to_parse(const char *sql, size_t len)
{
	int limit = parse_depth_limit();
	if (len / 2 <= (size_t)limit)
		return false;
	return nests_deeper_than(sql, limit);
}

/* ---- freezing into one allocation ---- */

static size_t text_size(const char *s)
{
	return s ? strlen(s) + 1 : 0;
}

static size_t value_size(const keys_value_t *v)
{
	return v->kind == KV_LITERAL ? text_size(v->text) : 0;
}

static const char *copy_text(char **pool, const char *s)
{
	if (!s)
		return NULL;
	size_t n = strlen(s) + 1;
	char *out = *pool;
	memcpy(out, s, n);
	*pool += n;
	return out;
}

static void copy_value(char **pool, keys_value_t *v)
{
	v->text = v->kind == KV_LITERAL ? copy_text(pool, v->text) : NULL;
}

static size_t align_up(size_t n)
{
	size_t a = alignof(max_align_t);
	return (n + a - 1) / a * a;
}

/* Places an array of n items of size elem at *offset of mem. */
static void *place(char *mem, size_t *offset, const void *items, int n, size_t elem)
{
	void *out = mem + *offset;
	if (n > 0)
		memcpy(out, items, (size_t)n * elem);
	*offset = align_up(*offset + (size_t)n * elem);
	return out;
}

/* Copies the builder's facts, arrays and strings into one block. */
static keys_facts_t *freeze(const builder_t *b)
{
	const keys_facts_t *f = &b->f;
	size_t strings = text_size(f->copy.null_string) + text_size(f->copy.encoding) +
	                 value_size(&f->update.new_key);
	for (int i = 0; i < f->n_rels; i++)
		strings += text_size(f->rels[i].alias);
	for (int i = 0; i < f->n_values; i++)
		strings += value_size(&f->values[i]);
	for (int i = 0; i < f->n_conds; i++)
		strings += value_size(&f->conds[i].lo) + value_size(&f->conds[i].hi);
	size_t total = align_up(sizeof(*f)) + align_up((size_t)f->n_rels * sizeof(*f->rels)) +
	               align_up((size_t)f->n_conds * sizeof(*f->conds)) +
	               align_up((size_t)f->n_children * sizeof(*f->children)) +
	               align_up((size_t)f->n_values * sizeof(*f->values)) +
	               align_up((size_t)f->n_joins * sizeof(*f->joins)) + strings;
	char *mem = malloc(total);
	if (!mem)
		return NULL;
	keys_facts_t *out = (keys_facts_t *)mem;
	*out = *f;
	size_t offset = align_up(sizeof(*f));
	out->rels = place(mem, &offset, f->rels, f->n_rels, sizeof(*f->rels));
	out->conds = place(mem, &offset, f->conds, f->n_conds, sizeof(*f->conds));
	out->children = place(mem, &offset, f->children, f->n_children, sizeof(*f->children));
	out->values = place(mem, &offset, f->values, f->n_values, sizeof(*f->values));
	out->joins = place(mem, &offset, f->joins, f->n_joins, sizeof(*f->joins));
	char *pool = mem + offset;
	for (int i = 0; i < out->n_rels; i++)
		out->rels[i].alias = copy_text(&pool, out->rels[i].alias);
	for (int i = 0; i < out->n_values; i++)
		copy_value(&pool, &out->values[i]);
	for (int i = 0; i < out->n_conds; i++) {
		copy_value(&pool, &out->conds[i].lo);
		copy_value(&pool, &out->conds[i].hi);
	}
	copy_value(&pool, &out->update.new_key);
	out->copy.null_string = copy_text(&pool, f->copy.null_string);
	out->copy.encoding = copy_text(&pool, f->copy.encoding);
	return out;
}

/* ---- entry points ---- */

static void free_builder(builder_t *b)
{
	free(b->f.rels);
	free(b->f.conds);
	free(b->f.children);
	free(b->f.values);
	free(b->f.joins);
	free(b->extra);
	free(b->names);
	free(b->fjoins);
	free(b->ctes);
	free(b->stack);
	while (b->arena) {
		arena_chunk_t *next = b->arena->next;
		free(b->arena);
		b->arena = next;
	}
}

static void extract_tree(builder_t *b, const PgQuery__ParseResult *tree)
{
	b->f.n_statements = (int)tree->n_stmts;
	for (size_t i = 0; i < tree->n_stmts && !b->oom; i++) {
		b->statement = (int)i;
		b->top = tree->stmts[i] ? tree->stmts[i]->stmt : NULL;
		walk_node(b, NULL, b->top, 0);
	}
}

/* Parses sql (NUL-terminated) and returns its frozen facts, or NULL when
 * out of memory. The tree is freed only after freeze() copied out of it. */
static keys_facts_t *extract_text(builder_t *b, const char *sql, size_t len)
{
	if (keys_too_deep_to_parse(sql, len)) {
		b->f.truncated = true;
		return freeze(b);
	}
	PgQueryProtobufParseResult parsed = pg_query_parse_protobuf(sql);
	if (parsed.error) {
		b->f.parse_error = true;
		pg_query_free_protobuf_parse_result(parsed);
		return freeze(b);
	}
	PgQuery__ParseResult *tree = pg_query__parse_result__unpack(
	    NULL, parsed.parse_tree.len, (const uint8_t *)parsed.parse_tree.data);
	pg_query_free_protobuf_parse_result(parsed);
	if (!tree) {
		b->f.parse_error = true;
		return freeze(b);
	}
	extract_tree(b, tree);
	/* A half-walked tree is still sound once truncated is set; an
	 * out-of-memory one is not returned at all. */
	keys_facts_t *out = b->oom ? NULL : freeze(b);
	pg_query__parse_result__free_unpacked(tree, NULL);
	return out;
}

keys_facts_t *keys_extract(const char *sql, size_t len, const keys_table_t *tables, int n_tables)
{
	builder_t *b = calloc(1, sizeof(*b));
	char *copy = malloc(len + 1);
	if (!b || !copy) {
		free(b);
		free(copy);
		return NULL;
	}
	/* libpg_query wants a C string; PostgreSQL itself stops at a NUL too. */
	memcpy(copy, sql, len);
	copy[len] = '\0';
	b->tables = tables;
	b->n_tables = tables ? n_tables : 0;
	b->f.insert.rel = -1;
	b->f.insert.key_position = -1;
	b->f.copy.rel = -1;
	b->f.copy.key_position = -1;
	b->f.update.new_key = value_unknown();

	keys_facts_t *out = extract_text(b, copy, strlen(copy));
	free(copy);
	free_builder(b);
	free(b);
	return out;
}

void keys_free(keys_facts_t *f)
{
	free(f);
}

/* ---- rendering ---- */

typedef struct {
	char *out;
	size_t cap, len;
} writer_t;

static void put(writer_t *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(writer_t *w, const char *fmt, ...)
{
	if (w->len + 1 >= w->cap)
		return;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(w->out + w->len, w->cap - w->len, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	w->len += (size_t)n < w->cap - w->len ? (size_t)n : w->cap - w->len - 1;
}

static void put_quoted(writer_t *w, const char *s, char quote)
{
	put(w, "%c", quote);
	for (const char *p = s; *p; p++)
		put(w, *p == quote ? "%c%c" : "%c", *p, *p);
	put(w, "%c", quote);
}

static void put_value(writer_t *w, const keys_value_t *v)
{
	switch (v->kind) {
	case KV_LITERAL:
		if (v->array)
			put(w, "ANY(");
		if (!v->array && looks_numeric(v->text))
			put(w, "%s", v->text);
		else
			put_quoted(w, v->text ? v->text : "", '\'');
		if (v->array)
			put(w, ")");
		return;
	case KV_PARAM:
		put(w, v->array ? "ANY($%d)" : "$%d", v->param);
		return;
	case KV_NULL:
		put(w, "NULL");
		return;
	case KV_UNKNOWN:
		put(w, "?");
		return;
	}
}

static void put_cond(writer_t *w, const keys_facts_t *f, int id, int depth)
{
	if (id < 0 || id >= f->n_conds || depth > KEYS_MAX_DEPTH) {
		put(w, "?");
		return;
	}
	const keys_cond_t *c = &f->conds[id];
	switch (c->kind) {
	case KC_ALL:
		put(w, "ALL");
		return;
	case KC_NONE:
		put(w, "NONE");
		return;
	case KC_IN:
		put(w, c->n_values == 1 ? "IN " : "IN (");
		for (int i = 0; i < c->n_values; i++) {
			if (i > 0)
				put(w, ", ");
			put_value(w, &f->values[c->first_value + i]);
		}
		if (c->n_values != 1)
			put(w, ")");
		return;
	case KC_RANGE:
		put(w, "RANGE %c", c->has_lo && c->lo_inclusive ? '[' : '(');
		if (c->has_lo)
			put_value(w, &c->lo);
		put(w, ",");
		if (c->has_hi)
			put_value(w, &c->hi);
		put(w, "%c", c->has_hi && c->hi_inclusive ? ']' : ')');
		return;
	case KC_AND:
	case KC_OR:
		put(w, "(");
		for (int i = 0; i < c->n_children; i++) {
			if (i > 0)
				put(w, c->kind == KC_AND ? " AND " : " OR ");
			put_cond(w, f, f->children[c->first_child + i], depth + 1);
		}
		put(w, ")");
		return;
	}
}

static void put_rel(writer_t *w, const keys_facts_t *f, const keys_table_t *tables, int i)
{
	const keys_rel_t *r = &f->rels[i];
	const keys_table_t *t = &tables[r->table];
	if (t->schema)
		put(w, "%s.", t->schema);
	put(w, "%s", t->name);
	if (r->alias)
		put(w, "(%s)", r->alias);
	put(w, "#%d block%d", i, r->block);
	if (r->parent_block >= 0)
		put(w, " in block%d", r->parent_block);
	if (r->statement > 0)
		put(w, " stmt%d", r->statement);
	if (r->target)
		put(w, " target");
	if (r->nullable_side)
		put(w, " nullable");
	put(w, ": ");
	put_cond(w, f, r->cond, 0);
}

static void put_insert(writer_t *w, const keys_facts_t *f)
{
	const keys_insert_t *in = &f->insert;
	put(w, "insert #%d", in->rel);
	if (in->has_columns)
		put(w, " cols=%d key@%d", in->n_columns, in->key_position);
	else
		put(w, " nocols width=%d", in->n_columns);
	if (in->n_rows > 0 || !in->select) {
		put(w, " rows=(");
		for (int i = 0; i < in->n_rows; i++) {
			if (i > 0)
				put(w, ", ");
			put_value(w, &f->values[in->first_row + i]);
		}
		put(w, ")");
	}
	if (in->select)
		put(w, " select");
	if (in->default_values)
		put(w, " default");
	if (in->on_conflict)
		put(w, " on_conflict");
	if (in->returning)
		put(w, " returning");
}

static void put_char_option(writer_t *w, const char *name, char c)
{
	char s[2] = {c, '\0'};
	put(w, " %s=", name);
	put_quoted(w, s, '\'');
}

static void put_copy(writer_t *w, const keys_copy_t *c)
{
	put(w, "copy #%d", c->rel);
	if (c->has_columns)
		put(w, " cols=%d key@%d", c->n_columns, c->key_position);
	put(w, " %s", c->format == 'c' ? "csv" : c->format == 'b' ? "binary" : "text");
	if (c->format == 'b')
		return;
	put_char_option(w, "delim", c->delimiter);
	put(w, " null=");
	put_quoted(w, c->null_string ? c->null_string : "", '\'');
	if (c->header)
		put(w, " header");
	if (c->format == 'c') {
		put_char_option(w, "quote", c->quote);
		put_char_option(w, "escape", c->escape);
	}
	if (c->encoding) {
		put(w, " encoding=");
		put_quoted(w, c->encoding, '\'');
	}
}

static void separate(writer_t *w)
{
	if (w->len > 0)
		put(w, "; ");
}

size_t keys_describe(const keys_facts_t *f, const keys_table_t *tables, char *out, size_t outlen)
{
	writer_t w = {out, outlen, 0};
	if (outlen == 0)
		return 0;
	out[0] = '\0';
	if (f->truncated)
		put(&w, "truncated");
	if (f->parse_error) {
		separate(&w);
		put(&w, "parse error");
	}
	for (int i = 0; i < f->n_rels; i++) {
		separate(&w);
		put_rel(&w, f, tables, i);
	}
	for (int i = 0; i < f->n_joins; i++) {
		separate(&w);
		put(&w, "join #%d=#%d%s", f->joins[i].rel_a, f->joins[i].rel_b,
		    f->joins[i].outer ? " outer" : "");
	}
	if (f->has_insert) {
		separate(&w);
		put_insert(&w, f);
	}
	if (f->update.sets_key) {
		separate(&w);
		put(&w, "set key=");
		put_value(&w, &f->update.new_key);
	}
	if (f->copy.present) {
		separate(&w);
		put_copy(&w, &f->copy);
	}
	return w.len;
}
