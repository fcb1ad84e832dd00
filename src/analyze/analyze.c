/*
 * analyze.c - one statement text in, one self-contained analysis_t out.
 *
 * The text is parsed with libpg_query (PostgreSQL 15 raw grammar, the same
 * raw_parser() the server runs), the protobuf tree is walked once, and what
 * routing needs is copied into a single allocation; the tree is then freed.
 *
 * The walk is generic: it follows every message field of every node by
 * protobuf-c reflection, so a FuncCall, RangeVar, locking clause, INTO or
 * nested INSERT/UPDATE/DELETE/MERGE is found at any depth (subqueries, CTEs,
 * set-operation branches, function arguments, ...) without a hand-written
 * case per node type that a new grammar could outdate. Classification of
 * the statement itself looks only at its top node, as PostgreSQL's
 * ClassifyUtilityCommandAsReadOnly() (utility.c) does.
 */
#include "analyze/analyze.h"
#include "analyze/analyze_internal.h"
#include "analyze/keys.h"
#include "analyze/pgtree.h"

#include <pg_query.h>
#include <pg_query/pg_query.pb-c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* libpg_query's protobuf output and protobuf-c's unpack recurse once or
 * twice per expression level, and a flat chain like 1+1+1+... is nested one
 * level per operator; 30000 levels overflow an 8 MiB stack. Texts shorter
 * than this cannot nest deeper than ANALYZE_MAX_NESTING (a level takes at
 * least two bytes); longer ones are measured with the scanner first. */
#define ANALYZE_NESTING_CHECK_LEN 8192
#define ANALYZE_MAX_NESTING       4000
/* Our own walk stops here whatever happens (the statement becomes a write). */
#define ANALYZE_MAX_WALK_DEPTH 20000
#define ANALYZE_MAX_ERROR_LEN  200
#define CURSOR_OPT_HOLD        0x0020 /* PostgreSQL's parsenodes.h */

/* ---- names ---- */

const char *analyze_kind_name(analyze_kind_t kind)
{
	switch (kind) {
	case ANALYZE_KIND_EMPTY:
		return "empty";
	case ANALYZE_KIND_READ:
		return "read";
	case ANALYZE_KIND_WRITE:
		return "write";
	case ANALYZE_KIND_TRANSACTION:
		return "transaction";
	case ANALYZE_KIND_SESSION:
		return "session";
	case ANALYZE_KIND_UTILITY:
		return "utility";
	}
	return "unknown";
}

const char *analyze_txn_op_name(analyze_txn_op_t op)
{
	switch (op) {
	case ANALYZE_TXN_NONE:
		return "none";
	case ANALYZE_TXN_BEGIN:
		return "begin";
	case ANALYZE_TXN_COMMIT:
		return "commit";
	case ANALYZE_TXN_ROLLBACK:
		return "rollback";
	case ANALYZE_TXN_SAVEPOINT:
		return "savepoint";
	case ANALYZE_TXN_RELEASE:
		return "release";
	case ANALYZE_TXN_ROLLBACK_TO:
		return "rollback_to";
	case ANALYZE_TXN_PREPARE:
		return "prepare_transaction";
	case ANALYZE_TXN_COMMIT_PREPARED:
		return "commit_prepared";
	case ANALYZE_TXN_ROLLBACK_PREPARED:
		return "rollback_prepared";
	case ANALYZE_TXN_SET_TRANSACTION:
		return "set_transaction";
	}
	return "unknown";
}

const char *analyze_access_name(analyze_access_t access)
{
	switch (access) {
	case ANALYZE_ACCESS_DEFAULT:
		return "default";
	case ANALYZE_ACCESS_READ_ONLY:
		return "read_only";
	case ANALYZE_ACCESS_READ_WRITE:
		return "read_write";
	}
	return "unknown";
}

const char *analyze_isolation_name(analyze_isolation_t isolation)
{
	switch (isolation) {
	case ANALYZE_ISOLATION_DEFAULT:
		return "default";
	case ANALYZE_ISOLATION_READ_UNCOMMITTED:
		return "read_uncommitted";
	case ANALYZE_ISOLATION_READ_COMMITTED:
		return "read_committed";
	case ANALYZE_ISOLATION_REPEATABLE_READ:
		return "repeatable_read";
	case ANALYZE_ISOLATION_SERIALIZABLE:
		return "serializable";
	}
	return "unknown";
}

const char *analyze_session_op_name(analyze_session_op_t op)
{
	switch (op) {
	case ANALYZE_SESSION_NONE:
		return "none";
	case ANALYZE_SESSION_SET:
		return "set";
	case ANALYZE_SESSION_RESET:
		return "reset";
	case ANALYZE_SESSION_RESET_ALL:
		return "reset_all";
	case ANALYZE_SESSION_PREPARE:
		return "prepare";
	case ANALYZE_SESSION_EXECUTE:
		return "execute";
	case ANALYZE_SESSION_DEALLOCATE:
		return "deallocate";
	case ANALYZE_SESSION_LISTEN:
		return "listen";
	case ANALYZE_SESSION_UNLISTEN:
		return "unlisten";
	case ANALYZE_SESSION_NOTIFY:
		return "notify";
	case ANALYZE_SESSION_DISCARD:
		return "discard";
	case ANALYZE_SESSION_TEMP_OBJECT:
		return "temp_object";
	case ANALYZE_SESSION_DECLARE_HOLD:
		return "declare_hold";
	case ANALYZE_SESSION_CURSOR:
		return "cursor";
	case ANALYZE_SESSION_LOAD:
		return "load";
	}
	return "unknown";
}

const char *func_class_name(func_class_t func_class)
{
	switch (func_class) {
	case FUNC_UNKNOWN:
		return "unknown";
	case FUNC_READ_ONLY:
		return "read_only";
	case FUNC_WRITES:
		return "writes";
	}
	return "invalid";
}

/* ---- the builder: what the walk collects, pointing into the parse tree ---- */

typedef struct {
	const char *schema;
	const char *name;
	bool written;
} build_table_t;

typedef struct {
	const char *schema;
	const char *name;
} build_function_t;

/* Counts for one statement's subtree. */
typedef struct {
	int dml_nodes; /* InsertStmt/UpdateStmt/DeleteStmt/MergeStmt, the top one included */
	bool locking;
	bool into;
	bool too_deep;
} stmt_scan_t;

typedef struct {
	analysis_t a; /* flags and counts; pointers filled in at freeze */

	build_table_t tables[ANALYZE_MAX_TABLES];
	build_function_t functions[ANALYZE_MAX_FUNCTIONS];
	const char *cte_names[ANALYZE_MAX_TABLES];
	int n_cte_names;

	analyze_statement_t *statements; /* names point into the tree until freeze */
	int n_records;
	int cap_records;
	bool out_of_memory;

	const char *error_message;
	const char *hint_shard;
	char hint_shard_buf[64];

	stmt_scan_t scan; /* current statement */
} builder_t;

static bool str_present(const char *s)
{
	return s && s[0] != '\0';
}

static const char *str_or_null(const char *s)
{
	return str_present(s) ? s : NULL;
}

static bool str_eq_null(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return strcmp(a, b) == 0;
}

static void note_table(builder_t *b, const char *schema, const char *name, bool written)
{
	if (!str_present(name))
		return;
	schema = str_or_null(schema);
	for (int i = 0; i < b->a.n_tables; i++) {
		build_table_t *t = &b->tables[i];
		if (strcmp(t->name, name) == 0 && str_eq_null(t->schema, schema)) {
			t->written |= written;
			return;
		}
	}
	if (b->a.n_tables == ANALYZE_MAX_TABLES) {
		b->a.tables_truncated = true;
		return;
	}
	b->tables[b->a.n_tables++] = (build_table_t){schema, name, written};
}

static void note_range_var(builder_t *b, const PgQuery__RangeVar *rv, bool written)
{
	if (rv)
		note_table(b, rv->schemaname, rv->relname, written);
}

static bool range_var_is_temp(const PgQuery__RangeVar *rv)
{
	return rv && rv->relpersistence && rv->relpersistence[0] == 't';
}

static bool is_catalog_schema(const char *schema)
{
	return !schema || strcmp(schema, "pg_catalog") == 0;
}

static void note_function(builder_t *b, const PgQuery__FuncCall *fc)
{
	const char *parts[3] = {NULL, NULL, NULL};
	size_t n = fc->n_funcname;
	if (n == 0 || n > 3)
		return;
	for (size_t i = 0; i < n; i++) {
		const PgQuery__Node *part = fc->funcname[i];
		if (!part || part->node_case != PG_QUERY__NODE__NODE_STRING || !part->string)
			return;
		parts[i] = part->string->sval;
	}
	const char *name = parts[n - 1];
	const char *schema = n >= 2 ? str_or_null(parts[n - 2]) : NULL;
	if (!str_present(name))
		return;

	if (is_catalog_schema(schema)) {
		if (strcmp(name, "pg_advisory_lock") == 0 ||
		    strcmp(name, "pg_advisory_lock_shared") == 0 ||
		    strcmp(name, "pg_try_advisory_lock") == 0 ||
		    strcmp(name, "pg_try_advisory_lock_shared") == 0)
			b->a.takes_session_lock = true;
		else if (strcmp(name, "pg_advisory_unlock") == 0 ||
		         strcmp(name, "pg_advisory_unlock_shared") == 0 ||
		         strcmp(name, "pg_advisory_unlock_all") == 0)
			b->a.releases_session_lock = true;
	}

	for (int i = 0; i < b->a.n_functions; i++) {
		const build_function_t *f = &b->functions[i];
		if (strcmp(f->name, name) == 0 && str_eq_null(f->schema, schema))
			return;
	}
	if (b->a.n_functions == ANALYZE_MAX_FUNCTIONS) {
		b->a.functions_truncated = true;
		return;
	}
	b->functions[b->a.n_functions++] = (build_function_t){schema, name};
}

static void note_cte_name(builder_t *b, const char *name)
{
	if (str_present(name) && b->n_cte_names < ANALYZE_MAX_TABLES)
		b->cte_names[b->n_cte_names++] = name;
}

/* Looks at one message before its children are walked. */
static void visit_message(builder_t *b, const ProtobufCMessage *msg)
{
	const ProtobufCMessageDescriptor *d = msg->descriptor;

	if (d == &pg_query__func_call__descriptor) {
		note_function(b, (const PgQuery__FuncCall *)msg);
	} else if (d == &pg_query__range_var__descriptor) {
		note_range_var(b, (const PgQuery__RangeVar *)msg, false);
	} else if (d == &pg_query__select_stmt__descriptor) {
		const PgQuery__SelectStmt *s = (const PgQuery__SelectStmt *)msg;
		if (s->n_locking_clause > 0)
			b->scan.locking = true;
		if (s->into_clause) {
			b->scan.into = true;
			if (s->into_clause->rel)
				note_range_var(b, s->into_clause->rel, true);
		}
	} else if (d == &pg_query__insert_stmt__descriptor) {
		b->scan.dml_nodes++;
		note_range_var(b, ((const PgQuery__InsertStmt *)msg)->relation, true);
	} else if (d == &pg_query__update_stmt__descriptor) {
		b->scan.dml_nodes++;
		note_range_var(b, ((const PgQuery__UpdateStmt *)msg)->relation, true);
	} else if (d == &pg_query__delete_stmt__descriptor) {
		b->scan.dml_nodes++;
		note_range_var(b, ((const PgQuery__DeleteStmt *)msg)->relation, true);
	} else if (d == &pg_query__merge_stmt__descriptor) {
		b->scan.dml_nodes++;
		note_range_var(b, ((const PgQuery__MergeStmt *)msg)->relation, true);
	} else if (d == &pg_query__common_table_expr__descriptor) {
		note_cte_name(b, ((const PgQuery__CommonTableExpr *)msg)->ctename);
	}
}

static pgtree_action_t visit_cb(const ProtobufCMessage *msg, void *arg)
{
	visit_message(arg, msg);
	return PGTREE_DESCEND;
}

/* Walks every message reachable from msg (pgtree.h), noting what it sees. */
static void walk_message(builder_t *b, const ProtobufCMessage *msg)
{
	if (!pgtree_walk(msg, ANALYZE_MAX_WALK_DEPTH, visit_cb, b))
		b->scan.too_deep = true;
}

/* ---- classification of one top-level statement ---- */

/* The boolean value of a DefElem option: absent argument means true, as in
 * PostgreSQL's defGetBoolean(). */
static bool def_elem_bool(const PgQuery__DefElem *de)
{
	const PgQuery__Node *arg = de->arg;
	if (!arg)
		return true;
	switch (arg->node_case) {
	case PG_QUERY__NODE__NODE_INTEGER:
		return arg->integer && arg->integer->ival != 0;
	case PG_QUERY__NODE__NODE_BOOLEAN:
		return arg->boolean && arg->boolean->boolval;
	case PG_QUERY__NODE__NODE_STRING: {
		const char *s = arg->string ? arg->string->sval : "";
		return strcasecmp(s, "true") == 0 || strcasecmp(s, "on") == 0 ||
		       strcasecmp(s, "yes") == 0 || strcmp(s, "1") == 0;
	}
	case PG_QUERY__NODE__NODE_A_CONST: {
		const PgQuery__AConst *c = arg->a_const;
		if (c->val_case == PG_QUERY__A__CONST__VAL_IVAL)
			return c->ival && c->ival->ival != 0;
		if (c->val_case == PG_QUERY__A__CONST__VAL_BOOLVAL)
			return c->boolval && c->boolval->boolval;
		if (c->val_case == PG_QUERY__A__CONST__VAL_SVAL && c->sval)
			return strcasecmp(c->sval->sval, "true") == 0 ||
			       strcasecmp(c->sval->sval, "on") == 0;
		return false;
	}
	default:
		return true;
	}
}

static const char *def_elem_string(const PgQuery__DefElem *de)
{
	const PgQuery__Node *arg = de->arg;
	if (!arg)
		return "";
	if (arg->node_case == PG_QUERY__NODE__NODE_STRING && arg->string)
		return arg->string->sval;
	if (arg->node_case == PG_QUERY__NODE__NODE_A_CONST && arg->a_const &&
	    arg->a_const->val_case == PG_QUERY__A__CONST__VAL_SVAL && arg->a_const->sval)
		return arg->a_const->sval->sval;
	return "";
}

/* Reads transaction_read_only / transaction_isolation / transaction_deferrable
 * options, as BEGIN, START TRANSACTION and SET [SESSION CHARACTERISTICS AS]
 * TRANSACTION give them (gram.y transaction_mode_item). */
static void read_txn_options(analyze_txn_t *txn, PgQuery__Node *const *opts, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (!opts[i] || opts[i]->node_case != PG_QUERY__NODE__NODE_DEF_ELEM)
			continue;
		const PgQuery__DefElem *de = opts[i]->def_elem;
		const char *name = de->defname ? de->defname : "";
		if (strcmp(name, "transaction_read_only") == 0) {
			txn->access = def_elem_bool(de) ? ANALYZE_ACCESS_READ_ONLY
			                                : ANALYZE_ACCESS_READ_WRITE;
		} else if (strcmp(name, "transaction_deferrable") == 0) {
			txn->deferrable = def_elem_bool(de);
		} else if (strcmp(name, "transaction_isolation") == 0) {
			const char *level = def_elem_string(de);
			if (strcmp(level, "serializable") == 0)
				txn->isolation = ANALYZE_ISOLATION_SERIALIZABLE;
			else if (strcmp(level, "repeatable read") == 0)
				txn->isolation = ANALYZE_ISOLATION_REPEATABLE_READ;
			else if (strcmp(level, "read committed") == 0)
				txn->isolation = ANALYZE_ISOLATION_READ_COMMITTED;
			else if (strcmp(level, "read uncommitted") == 0)
				txn->isolation = ANALYZE_ISOLATION_READ_UNCOMMITTED;
		}
	}
}

static void classify_transaction(const PgQuery__TransactionStmt *ts, analyze_statement_t *st)
{
	analyze_txn_t *txn = &st->txn;
	st->kind = ANALYZE_KIND_TRANSACTION;
	switch (ts->kind) {
	case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_BEGIN:
	case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_START:
		txn->op = ANALYZE_TXN_BEGIN;
		read_txn_options(txn, ts->options, ts->n_options);
		break;
	case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_COMMIT:
		txn->op = ANALYZE_TXN_COMMIT;
		break;
	case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_ROLLBACK:
		txn->op = ANALYZE_TXN_ROLLBACK;
		break;
	case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_SAVEPOINT:
		txn->op = ANALYZE_TXN_SAVEPOINT;
		break;
	case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_RELEASE:
		txn->op = ANALYZE_TXN_RELEASE;
		break;
	case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_ROLLBACK_TO:
		txn->op = ANALYZE_TXN_ROLLBACK_TO;
		break;
	case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_PREPARE:
		txn->op = ANALYZE_TXN_PREPARE;
		st->needs_primary = true;
		break;
	case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_COMMIT_PREPARED:
		txn->op = ANALYZE_TXN_COMMIT_PREPARED;
		st->needs_primary = true;
		break;
	case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_ROLLBACK_PREPARED:
		txn->op = ANALYZE_TXN_ROLLBACK_PREPARED;
		st->needs_primary = true;
		break;
	default:
		st->kind = ANALYZE_KIND_WRITE;
		st->needs_primary = true;
		return;
	}
	txn->chain = ts->chain;
	if (str_present(ts->savepoint_name))
		txn->name = ts->savepoint_name;
	else if (str_present(ts->gid))
		txn->name = ts->gid;
}

static void classify_variable_set(const PgQuery__VariableSetStmt *vs, analyze_statement_t *st)
{
	const char *name = str_or_null(vs->name);
	/* SET TRANSACTION ... and SET TRANSACTION SNAPSHOT '...' */
	if (name && strncmp(name, "TRANSACTION", 11) == 0) {
		st->kind = ANALYZE_KIND_TRANSACTION;
		st->txn.op = ANALYZE_TXN_SET_TRANSACTION;
		read_txn_options(&st->txn, vs->args, vs->n_args);
		return;
	}
	st->session.is_local = vs->is_local;
	st->kind = vs->is_local ? ANALYZE_KIND_UTILITY : ANALYZE_KIND_SESSION;
	switch (vs->kind) {
	case PG_QUERY__VARIABLE_SET_KIND__VAR_RESET:
		st->session.op = ANALYZE_SESSION_RESET;
		break;
	case PG_QUERY__VARIABLE_SET_KIND__VAR_RESET_ALL:
		st->session.op = ANALYZE_SESSION_RESET_ALL;
		name = NULL;
		break;
	default:
		st->session.op = ANALYZE_SESSION_SET;
		break;
	}
	if (name && strcmp(name, "SESSION CHARACTERISTICS") == 0) {
		analyze_txn_t defaults = {0};
		read_txn_options(&defaults, vs->args, vs->n_args);
		st->session.default_access = defaults.access;
		name = "session characteristics";
	}
	st->session.name = name;
}

/* True when the statement's only effect is reading: a SELECT whose whole
 * subtree has no locking clause, no INTO and no data-modifying statement. */
static bool is_read_query(const builder_t *b, const PgQuery__Node *query)
{
	return query && query->node_case == PG_QUERY__NODE__NODE_SELECT_STMT && !b->scan.locking &&
	       !b->scan.into && b->scan.dml_nodes == 0 && !b->scan.too_deep;
}

static void set_session(analyze_statement_t *st, analyze_session_op_t op, const char *name,
                        bool needs_primary)
{
	st->kind = ANALYZE_KIND_SESSION;
	st->session.op = op;
	st->session.name = str_or_null(name);
	st->needs_primary = needs_primary;
}

static void set_temp_or_write(analyze_statement_t *st, bool temp)
{
	if (temp)
		set_session(st, ANALYZE_SESSION_TEMP_OBJECT, NULL, true);
	else
		st->kind = ANALYZE_KIND_WRITE;
	st->needs_primary = true;
}

/* Decides kind and details of one top-level statement; its subtree has been
 * walked (b->scan holds its counts). Anything not named here is a write. */
static void classify_statement(builder_t *b, const PgQuery__Node *node, analyze_statement_t *st)
{
	st->kind = ANALYZE_KIND_WRITE;
	st->needs_primary = true;
	if (b->scan.too_deep)
		return;

	switch (node->node_case) {
	case PG_QUERY__NODE__NODE_SELECT_STMT: {
		const PgQuery__SelectStmt *s = node->select_stmt;
		if (s->into_clause) {
			set_temp_or_write(st, range_var_is_temp(s->into_clause->rel));
			return;
		}
		if (is_read_query(b, node)) {
			st->kind = ANALYZE_KIND_READ;
			st->needs_primary = false;
		}
		return;
	}
	case PG_QUERY__NODE__NODE_VARIABLE_SHOW_STMT:
		st->kind = ANALYZE_KIND_READ;
		st->needs_primary = false;
		return;
	case PG_QUERY__NODE__NODE_EXPLAIN_STMT: {
		const PgQuery__ExplainStmt *es = node->explain_stmt;
		for (size_t i = 0; i < es->n_options; i++) {
			const PgQuery__Node *o = es->options[i];
			if (o && o->node_case == PG_QUERY__NODE__NODE_DEF_ELEM &&
			    o->def_elem->defname && strcmp(o->def_elem->defname, "analyze") == 0)
				b->a.explain_analyze |= def_elem_bool(o->def_elem);
		}
		if (is_read_query(b, es->query)) {
			st->kind = ANALYZE_KIND_READ;
			st->needs_primary = false;
		}
		return;
	}
	case PG_QUERY__NODE__NODE_COPY_STMT: {
		const PgQuery__CopyStmt *cs = node->copy_stmt;
		if (cs->is_from) {
			note_range_var(b, cs->relation, true);
			return;
		}
		/* COPY TO a server file or program has an effect on the server's
		 * host: keep it on the primary. */
		if (str_present(cs->filename) || cs->is_program)
			return;
		if (cs->relation ? (b->scan.dml_nodes == 0 && !b->scan.locking)
		                 : is_read_query(b, cs->query)) {
			st->kind = ANALYZE_KIND_READ;
			st->needs_primary = false;
		}
		return;
	}
	case PG_QUERY__NODE__NODE_TRUNCATE_STMT: {
		const PgQuery__TruncateStmt *ts = node->truncate_stmt;
		for (size_t i = 0; i < ts->n_relations; i++)
			if (ts->relations[i] &&
			    ts->relations[i]->node_case == PG_QUERY__NODE__NODE_RANGE_VAR)
				note_range_var(b, ts->relations[i]->range_var, true);
		return;
	}
	case PG_QUERY__NODE__NODE_TRANSACTION_STMT:
		st->needs_primary = false;
		classify_transaction(node->transaction_stmt, st);
		return;
	case PG_QUERY__NODE__NODE_VARIABLE_SET_STMT:
		st->needs_primary = false;
		classify_variable_set(node->variable_set_stmt, st);
		return;
	case PG_QUERY__NODE__NODE_CONSTRAINTS_SET_STMT:
		st->kind = ANALYZE_KIND_UTILITY;
		st->needs_primary = false;
		return;
	case PG_QUERY__NODE__NODE_PREPARE_STMT:
		set_session(st, ANALYZE_SESSION_PREPARE, node->prepare_stmt->name, false);
		return;
	case PG_QUERY__NODE__NODE_EXECUTE_STMT:
		set_session(st, ANALYZE_SESSION_EXECUTE, node->execute_stmt->name, true);
		return;
	case PG_QUERY__NODE__NODE_DEALLOCATE_STMT:
		set_session(st, ANALYZE_SESSION_DEALLOCATE, node->deallocate_stmt->name, false);
		return;
	case PG_QUERY__NODE__NODE_LISTEN_STMT:
		/* PostgreSQL refuses LISTEN and NOTIFY during recovery. */
		set_session(st, ANALYZE_SESSION_LISTEN, node->listen_stmt->conditionname, true);
		return;
	case PG_QUERY__NODE__NODE_UNLISTEN_STMT:
		set_session(st, ANALYZE_SESSION_UNLISTEN, node->unlisten_stmt->conditionname,
		            false);
		return;
	case PG_QUERY__NODE__NODE_NOTIFY_STMT:
		set_session(st, ANALYZE_SESSION_NOTIFY, node->notify_stmt->conditionname, true);
		return;
	case PG_QUERY__NODE__NODE_DISCARD_STMT: {
		const char *what = "all";
		switch (node->discard_stmt->target) {
		case PG_QUERY__DISCARD_MODE__DISCARD_PLANS:
			what = "plans";
			break;
		case PG_QUERY__DISCARD_MODE__DISCARD_SEQUENCES:
			what = "sequences";
			break;
		case PG_QUERY__DISCARD_MODE__DISCARD_TEMP:
			what = "temp";
			break;
		default:
			break;
		}
		set_session(st, ANALYZE_SESSION_DISCARD, what, false);
		return;
	}
	case PG_QUERY__NODE__NODE_LOAD_STMT:
		set_session(st, ANALYZE_SESSION_LOAD, node->load_stmt->filename, false);
		return;
	case PG_QUERY__NODE__NODE_DECLARE_CURSOR_STMT: {
		const PgQuery__DeclareCursorStmt *dc = node->declare_cursor_stmt;
		bool read = is_read_query(b, dc->query);
		if (dc->options & CURSOR_OPT_HOLD) {
			set_session(st, ANALYZE_SESSION_DECLARE_HOLD, dc->portalname, !read);
		} else if (read) {
			st->kind = ANALYZE_KIND_READ;
			st->needs_primary = false;
		}
		return;
	}
	case PG_QUERY__NODE__NODE_FETCH_STMT:
		set_session(st, ANALYZE_SESSION_CURSOR, node->fetch_stmt->portalname, false);
		return;
	case PG_QUERY__NODE__NODE_CLOSE_PORTAL_STMT:
		set_session(st, ANALYZE_SESSION_CURSOR, node->close_portal_stmt->portalname, false);
		return;
	case PG_QUERY__NODE__NODE_CREATE_STMT:
		note_range_var(b, node->create_stmt->relation, true);
		set_temp_or_write(st, range_var_is_temp(node->create_stmt->relation));
		return;
	case PG_QUERY__NODE__NODE_CREATE_TABLE_AS_STMT: {
		const PgQuery__IntoClause *into = node->create_table_as_stmt->into;
		const PgQuery__RangeVar *rel = into ? into->rel : NULL;
		note_range_var(b, rel, true);
		set_temp_or_write(st, range_var_is_temp(rel));
		return;
	}
	case PG_QUERY__NODE__NODE_VIEW_STMT:
		note_range_var(b, node->view_stmt->view, true);
		set_temp_or_write(st, range_var_is_temp(node->view_stmt->view));
		return;
	case PG_QUERY__NODE__NODE_CREATE_SEQ_STMT:
		note_range_var(b, node->create_seq_stmt->sequence, true);
		set_temp_or_write(st, range_var_is_temp(node->create_seq_stmt->sequence));
		return;
	case PG_QUERY__NODE__NODE_ALTER_TABLE_STMT:
		note_range_var(b, node->alter_table_stmt->relation, true);
		return;
	case PG_QUERY__NODE__NODE_INDEX_STMT:
		note_range_var(b, node->index_stmt->relation, true);
		return;
	case PG_QUERY__NODE__NODE_LOCK_STMT: {
		const PgQuery__LockStmt *ls = node->lock_stmt;
		for (size_t i = 0; i < ls->n_relations; i++)
			if (ls->relations[i] &&
			    ls->relations[i]->node_case == PG_QUERY__NODE__NODE_RANGE_VAR)
				note_range_var(b, ls->relations[i]->range_var, true);
		return;
	}
	default:
		return; /* INSERT/UPDATE/DELETE/MERGE, DDL, CALL, DO, VACUUM, ...: a write */
	}
}

/* ---- nesting guard ---- */

typedef struct {
	int ops;   /* tokens of the current element that may each add a level */
	int inner; /* deepest parenthesised operand of the current element */
	int best;  /* deepest element closed at this level */
} nest_level_t;

static int max_int(int x, int y)
{
	return x > y ? x : y;
}

static void close_element(nest_level_t *lv, int extra)
{
	lv->best = max_int(lv->best, lv->ops + lv->inner + extra);
	lv->ops = lv->inner = 0;
}

/*
 * An upper bound of how deeply the parser nests the trees of sql, from its
 * tokens alone. Within one element (between separators) every token that is
 * not an operand may add a level on top of the deepest operand: a + b + c is
 * left-deep. A parenthesised group is one level deeper than its deepest
 * element. Separators (',', ';', AND, OR, WHEN, THEN, ELSE) start a new
 * element: PostgreSQL flattens AND/OR chains and CASE arms. Returns false
 * when the text cannot be scanned (the parser will then fail cleanly too).
 */
static bool measure_nesting(const char *sql, int *out_bound)
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
		return false;

	int cap = 64, depth = 0;
	nest_level_t *levels = calloc((size_t)cap, sizeof(*levels));
	bool ok = levels != NULL;
	for (size_t i = 0; ok && i < tokens->n_tokens; i++) {
		nest_level_t *lv = &levels[depth];
		switch ((int)tokens->tokens[i]->token) {
		case '(':
		case '[':
			if (depth + 1 == cap) {
				nest_level_t *grown =
				    realloc(levels, (size_t)cap * 2 * sizeof(*levels));
				if (!grown) {
					ok = false;
					break;
				}
				levels = grown;
				cap *= 2;
			}
			depth++;
			levels[depth] = (nest_level_t){0, 0, 0};
			break;
		case ')':
		case ']':
			if (depth == 0)
				break;
			close_element(lv, 0);
			levels[depth - 1].inner = max_int(levels[depth - 1].inner, lv->best + 1);
			depth--;
			break;
		case ',':
		case ';':
		case PG_QUERY__TOKEN__AND:
		case PG_QUERY__TOKEN__OR:
		case PG_QUERY__TOKEN__WHEN:
		case PG_QUERY__TOKEN__THEN:
		case PG_QUERY__TOKEN__ELSE:
			close_element(lv, 1);
			break;
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
			break;
		default:
			lv->ops++;
			break;
		}
		if (ok && levels[depth].ops + levels[depth].inner + depth > ANALYZE_MAX_NESTING)
			break; /* already too deep: no need to read further */
	}
	int bound = 0;
	if (ok) {
		/* Close what is still open (unbalanced text fails in the parser). */
		for (; depth > 0; depth--) {
			close_element(&levels[depth], 0);
			levels[depth - 1].inner =
			    max_int(levels[depth - 1].inner, levels[depth].best + 1);
		}
		close_element(&levels[0], 0);
		bound = levels[0].best;
	}
	free(levels);
	pg_query__scan_result__free_unpacked(tokens, NULL);
	if (!ok)
		return false;
	*out_bound = bound;
	return true;
}

/* ---- hints ---- */

static bool is_hint_separator(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',' || c == ';';
}

static bool is_word_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '-' || c == '.';
}

/* "100ms", "2s" -> milliseconds; false when not a duration we accept. */
static bool parse_duration_ms(const char *s, size_t len, int64_t *out_ms)
{
	size_t i = 0;
	int64_t value = 0;
	while (i < len && s[i] >= '0' && s[i] <= '9') {
		if (value > INT64_C(1000000000))
			return false;
		value = value * 10 + (s[i] - '0');
		i++;
	}
	if (i == 0)
		return false;
	if (len - i == 2 && strncasecmp(s + i, "ms", 2) == 0)
		*out_ms = value;
	else if (len - i == 1 && (s[i] == 's' || s[i] == 'S'))
		*out_ms = value * 1000;
	else
		return false;
	return true;
}

/*
 * Reads one comment body (without its delimiters). Only a body starting
 * "shardgate:" is a hint; its items are "primary", "shard=NAME" and
 * "max_lag=DURATION", separated by blanks or commas. A hint comment with
 * anything else in it is ignored as a whole and counted as malformed.
 */
static void read_hint_comment(builder_t *b, const char *body, size_t len)
{
	size_t i = 0;
	while (i < len && (is_hint_separator(body[i]) || body[i] == '*'))
		i++;
	if (len - i < 10 || strncasecmp(body + i, "shardgate:", 10) != 0)
		return;
	i += 10;

	bool primary = false;
	const char *shard = NULL;
	size_t shard_len = 0;
	int64_t max_lag_ms = -1;
	bool any = false;
	for (;;) {
		while (i < len && (is_hint_separator(body[i]) || body[i] == '*'))
			i++;
		if (i >= len)
			break;
		size_t key = i;
		while (i < len && (is_word_char(body[i])))
			i++;
		size_t key_len = i - key;
		while (i < len && (body[i] == ' ' || body[i] == '\t'))
			i++;
		const char *value = NULL;
		size_t value_len = 0;
		if (i < len && body[i] == '=') {
			i++;
			while (i < len && (body[i] == ' ' || body[i] == '\t'))
				i++;
			value = body + i;
			while (i < len && is_word_char(body[i]))
				i++;
			value_len = (size_t)(body + i - value);
		}
		if (key_len == 7 && strncasecmp(body + key, "primary", 7) == 0 && !value) {
			primary = true;
		} else if (key_len == 5 && strncasecmp(body + key, "shard", 5) == 0 &&
		           value_len > 0 && value_len < 64) {
			shard = value;
			shard_len = value_len;
		} else if (key_len == 7 && strncasecmp(body + key, "max_lag", 7) == 0 && value &&
		           parse_duration_ms(value, value_len, &max_lag_ms)) {
		} else {
			b->a.hint.malformed = true;
			return;
		}
		any = true;
	}
	if (!any) {
		b->a.hint.malformed = true;
		return;
	}
	b->a.hint.present = true;
	if (primary)
		b->a.hint.primary = true;
	if (max_lag_ms >= 0)
		b->a.hint.max_lag_ms = max_lag_ms;
	if (shard) {
		memcpy(b->hint_shard_buf, shard, shard_len);
		b->hint_shard_buf[shard_len] = '\0';
		b->hint_shard = b->hint_shard_buf;
	}
}

static bool contains_word_ci(const char *text, size_t len, const char *word)
{
	size_t wlen = strlen(word);
	for (size_t i = 0; i + wlen <= len; i++)
		if ((text[i] | 0x20) == word[0] && strncasecmp(text + i, word, wlen) == 0)
			return true;
	return false;
}

/* Finds shardgate hints in comments, using PostgreSQL's own scanner so that
 * text inside string literals, quoted identifiers and dollar quotes is never
 * mistaken for a comment. */
static void read_hints(builder_t *b, const char *sql, size_t len)
{
	if (!contains_word_ci(sql, len, "shardgate"))
		return;
	PgQueryScanResult scan = pg_query_scan(sql);
	if (scan.error) {
		pg_query_free_scan_result(scan);
		return;
	}
	PgQuery__ScanResult *tokens =
	    pg_query__scan_result__unpack(NULL, scan.pbuf.len, (const uint8_t *)scan.pbuf.data);
	pg_query_free_scan_result(scan);
	if (!tokens)
		return;
	for (size_t i = 0; i < tokens->n_tokens; i++) {
		const PgQuery__ScanToken *t = tokens->tokens[i];
		if (t->start < 0 || t->end < t->start || (size_t)t->end > len)
			continue;
		const char *text = sql + t->start;
		size_t tlen = (size_t)(t->end - t->start);
		if (t->token == PG_QUERY__TOKEN__C_COMMENT && tlen >= 4)
			read_hint_comment(b, text + 2, tlen - 4);
		else if (t->token == PG_QUERY__TOKEN__SQL_COMMENT && tlen >= 2)
			read_hint_comment(b, text + 2, tlen - 2);
	}
	pg_query__scan_result__free_unpacked(tokens, NULL);
}

/* ---- freezing the builder into one allocation ---- */

typedef struct {
	char *next;
} pool_t;

static size_t str_size(const char *s)
{
	return s ? strlen(s) + 1 : 0;
}

static const char *pool_copy(pool_t *pool, const char *s)
{
	if (!s)
		return NULL;
	size_t n = strlen(s) + 1;
	char *dst = pool->next;
	memcpy(dst, s, n);
	pool->next += n;
	return dst;
}

static bool is_cte_name(const builder_t *b, const build_table_t *t)
{
	if (t->schema || t->written)
		return false;
	for (int i = 0; i < b->n_cte_names; i++)
		if (strcmp(b->cte_names[i], t->name) == 0)
			return true;
	return false;
}

static analysis_t *freeze(const builder_t *b)
{
	size_t strings = str_size(b->error_message) + str_size(b->hint_shard);
	for (int i = 0; i < b->a.n_tables; i++)
		strings += str_size(b->tables[i].schema) + str_size(b->tables[i].name);
	for (int i = 0; i < b->a.n_functions; i++)
		strings += str_size(b->functions[i].schema) + str_size(b->functions[i].name);
	for (int i = 0; i < b->n_records; i++)
		strings +=
		    str_size(b->statements[i].txn.name) + str_size(b->statements[i].session.name);

	size_t size = sizeof(analysis_t) + (size_t)b->n_records * sizeof(analyze_statement_t) +
	              (size_t)b->a.n_tables * sizeof(analyze_table_t) +
	              (size_t)b->a.n_functions * sizeof(analyze_function_t) + strings;
	analysis_t *a = malloc(size);
	if (!a)
		return NULL;
	*a = b->a;
	char *p = (char *)(a + 1);
	analyze_statement_t *stmts = (analyze_statement_t *)p;
	p += (size_t)b->n_records * sizeof(*stmts);
	analyze_table_t *tables = (analyze_table_t *)p;
	p += (size_t)b->a.n_tables * sizeof(*tables);
	analyze_function_t *functions = (analyze_function_t *)p;
	p += (size_t)b->a.n_functions * sizeof(*functions);
	pool_t pool = {p};

	for (int i = 0; i < b->n_records; i++) {
		stmts[i] = b->statements[i];
		stmts[i].txn.name = pool_copy(&pool, b->statements[i].txn.name);
		stmts[i].session.name = pool_copy(&pool, b->statements[i].session.name);
	}
	for (int i = 0; i < b->a.n_tables; i++) {
		tables[i].schema = pool_copy(&pool, b->tables[i].schema);
		tables[i].name = pool_copy(&pool, b->tables[i].name);
		tables[i].written = b->tables[i].written;
		tables[i].cte_name = is_cte_name(b, &b->tables[i]);
	}
	for (int i = 0; i < b->a.n_functions; i++) {
		functions[i].schema = pool_copy(&pool, b->functions[i].schema);
		functions[i].name = pool_copy(&pool, b->functions[i].name);
	}
	a->statements = b->n_records ? stmts : NULL;
	a->n_statement_records = b->n_records;
	a->tables = b->a.n_tables ? tables : NULL;
	a->functions = b->a.n_functions ? functions : NULL;
	a->error_message = pool_copy(&pool, b->error_message);
	a->hint.shard = pool_copy(&pool, b->hint_shard);
	a->refs = 1;
	a->alloc_bytes = size;
	return a;
}

/* ---- the analysis ---- */

static analyze_kind_t combine_kinds(analyze_kind_t acc, analyze_kind_t next, bool first)
{
	if (first)
		return next;
	if (acc == ANALYZE_KIND_WRITE || next == ANALYZE_KIND_WRITE)
		return ANALYZE_KIND_WRITE;
	if (acc == next)
		return acc;
	static const analyze_kind_t order[] = {ANALYZE_KIND_SESSION, ANALYZE_KIND_TRANSACTION,
	                                       ANALYZE_KIND_UTILITY, ANALYZE_KIND_READ};
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
		if (acc == order[i] || next == order[i])
			return order[i];
	return ANALYZE_KIND_WRITE;
}

/* Room for one more per-statement record; false when out of memory (the
 * whole analysis then fails: see b->out_of_memory). */
static bool reserve_record(builder_t *b)
{
	if (b->n_records < b->cap_records)
		return true;
	int cap = b->cap_records ? b->cap_records * 2 : 4;
	analyze_statement_t *grown = realloc(b->statements, (size_t)cap * sizeof(*grown));
	if (!grown)
		return false;
	b->statements = grown;
	b->cap_records = cap;
	return true;
}

static void analyze_tree(builder_t *b, const PgQuery__ParseResult *tree)
{
	b->a.n_statements = (int)tree->n_stmts;
	for (size_t i = 0; i < tree->n_stmts; i++) {
		const PgQuery__RawStmt *raw = tree->stmts[i];
		analyze_statement_t scratch;
		analyze_statement_t *st = &scratch;
		if (b->n_records < ANALYZE_MAX_STATEMENTS) {
			if (!reserve_record(b)) {
				b->out_of_memory = true;
				return;
			}
			st = &b->statements[b->n_records++];
		}
		memset(st, 0, sizeof(*st));
		st->location = raw->stmt_location;
		st->len = raw->stmt_len;

		memset(&b->scan, 0, sizeof(b->scan));
		if (raw->stmt) {
			walk_message(b, &raw->stmt->base);
			classify_statement(b, raw->stmt, st);
		} else {
			st->kind = ANALYZE_KIND_WRITE;
			st->needs_primary = true;
		}
		if (b->scan.locking)
			b->a.has_locking_clause = true;
		if (b->scan.into)
			b->a.has_select_into = true;
		bool top_is_dml =
		    raw->stmt && (raw->stmt->node_case == PG_QUERY__NODE__NODE_INSERT_STMT ||
		                  raw->stmt->node_case == PG_QUERY__NODE__NODE_UPDATE_STMT ||
		                  raw->stmt->node_case == PG_QUERY__NODE__NODE_DELETE_STMT ||
		                  raw->stmt->node_case == PG_QUERY__NODE__NODE_MERGE_STMT);
		if (b->scan.dml_nodes > (top_is_dml ? 1 : 0))
			b->a.has_modifying_cte = true;
		if (b->scan.too_deep)
			b->a.functions_truncated = true;

		b->a.kind = combine_kinds(b->a.kind, st->kind, i == 0);
		b->a.needs_primary |= st->needs_primary;
	}
	if (tree->n_stmts == 0)
		b->a.kind = ANALYZE_KIND_EMPTY;
}

static void set_parse_error(builder_t *b, const char *message, int cursor)
{
	b->a.parse_error = true;
	b->a.kind = ANALYZE_KIND_WRITE;
	b->a.needs_primary = true;
	b->a.n_statements = 0;
	b->a.error_cursor = cursor;
	b->error_message = message;
}

/* Parses and classifies sql (NUL-terminated, len bytes before the NUL). */
static analysis_t *analyze_text(const char *sql, size_t len)
{
	builder_t *b = calloc(1, sizeof(*b));
	if (!b)
		return NULL;
	b->a.hint.max_lag_ms = -1;
	read_hints(b, sql, len);

	analysis_t *a = NULL;
	char error_copy[ANALYZE_MAX_ERROR_LEN + 1];
	int bound = 0;
	if ((len >= ANALYZE_NESTING_CHECK_LEN && measure_nesting(sql, &bound) &&
	     bound > ANALYZE_MAX_NESTING) ||
	    keys_too_deep_to_parse(sql, len)) {
		set_parse_error(b, "statement nested too deeply to analyse; sent to the primary",
		                0);
		a = freeze(b);
		goto done;
	}

	PgQueryProtobufParseResult parsed = pg_query_parse_protobuf(sql);
	if (parsed.error) {
		snprintf(error_copy, sizeof(error_copy), "%s",
		         parsed.error->message ? parsed.error->message : "syntax error");
		set_parse_error(b, error_copy, parsed.error->cursorpos);
		pg_query_free_protobuf_parse_result(parsed);
		a = freeze(b);
		goto done;
	}
	PgQuery__ParseResult *tree = pg_query__parse_result__unpack(
	    NULL, parsed.parse_tree.len, (const uint8_t *)parsed.parse_tree.data);
	pg_query_free_protobuf_parse_result(parsed);
	if (!tree) {
		set_parse_error(b, "parse tree could not be decoded", 0);
		a = freeze(b);
		goto done;
	}
	analyze_tree(b, tree);
	a = b->out_of_memory ? NULL : freeze(b); /* copies out of the tree before it is freed */
	pg_query__parse_result__free_unpacked(tree, NULL);
done:
	free(b->statements);
	free(b);
	return a;
}

analysis_t *analyze_new_analysis(const char *sql, size_t len)
{
	/* libpg_query wants a C string; PostgreSQL itself stops at a NUL too. */
	char stack_copy[1024];
	char *copy = len < sizeof(stack_copy) ? stack_copy : malloc(len + 1);
	if (!copy)
		return NULL;
	memcpy(copy, sql, len);
	copy[len] = '\0';
	analysis_t *a = analyze_text(copy, strnlen(copy, len));
	if (copy != stack_copy)
		free(copy);
	return a;
}

bool analyze_statement(const char *sql, size_t len, analysis_t **out)
{
	analysis_t *a = analyze_new_analysis(sql, len);
	if (!a)
		return false;
	*out = a;
	return true;
}

void analyze_retain(const analysis_t *a)
{
	((analysis_t *)a)->refs++;
}

void analyze_release(const analysis_t *a)
{
	if (!a)
		return;
	analysis_t *mut = (analysis_t *)a;
	if (--mut->refs == 0)
		free(mut);
}

bool analyze_is_read(const analysis_t *a, func_class_fn classify, void *arg)
{
	if (a->kind != ANALYZE_KIND_READ || a->functions_truncated)
		return false;
	for (int i = 0; i < a->n_functions; i++) {
		const analyze_function_t *f = &a->functions[i];
		func_class_t c =
		    classify ? classify(f->schema, f->name, arg)
		             : analyze_default_function_class(f->schema, f->name, NULL, 0, NULL, 0);
		if (c != FUNC_READ_ONLY)
			return false;
	}
	return true;
}
