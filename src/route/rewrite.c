/*
 * rewrite.c - per-shard INSERT texts through libpg_query's deparser.
 */
#include "route/rewrite.h"

#include "analyze/pgtree.h"

#include <pg_query.h>
#include <pg_query/pg_query.pb-c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REWRITE_MAX_DEPTH 1000

typedef struct {
	PgQuery__ParamRef **refs;
	int n, cap;
	bool too_deep;
} param_walk_t;

/* Collects every ParamRef (pgtree.h). */
static pgtree_action_t collect_param(const ProtobufCMessage *msg, void *arg)
{
	param_walk_t *w = arg;
	if (msg->descriptor != &pg_query__param_ref__descriptor)
		return PGTREE_DESCEND;
	if (w->n == w->cap) {
		int cap = w->cap ? w->cap * 2 : 64;
		PgQuery__ParamRef **refs = realloc(w->refs, sizeof(*refs) * (size_t)cap);
		if (!refs) {
			w->too_deep = true;
			return PGTREE_SKIP;
		}
		w->refs = refs;
		w->cap = cap;
	}
	w->refs[w->n++] = (PgQuery__ParamRef *)msg;
	return PGTREE_SKIP;
}

static char *fail(char *err, size_t errlen, const char *message)
{
	snprintf(err, errlen, "%s", message);
	return NULL;
}

char *rewrite_insert_rows(const char *sql, const int *row_shard, int n_rows, int shard,
			  int *param_map, int max_params, int *n_params, char *err,
			  size_t errlen)
{
	*n_params = 0;
	PgQueryProtobufParseResult parsed = pg_query_parse_protobuf(sql);
	if (parsed.error) {
		pg_query_free_protobuf_parse_result(parsed);
		return fail(err, errlen, "INSERT could not be parsed for splitting");
	}
	PgQuery__ParseResult *tree = pg_query__parse_result__unpack(
	    NULL, parsed.parse_tree.len, (const uint8_t *)parsed.parse_tree.data);
	pg_query_free_protobuf_parse_result(parsed);
	if (!tree)
		return fail(err, errlen, "INSERT parse tree could not be decoded");

	char *out = NULL;
	PgQuery__SelectStmt *values = NULL;
	PgQuery__Node **saved = NULL, **kept = NULL;
	size_t saved_n = 0;
	param_walk_t pw = {0};
	uint8_t *packed = NULL;

	if (tree->n_stmts != 1 || !tree->stmts[0]->stmt ||
	    tree->stmts[0]->stmt->node_case != PG_QUERY__NODE__NODE_INSERT_STMT) {
		fail(err, errlen, "only a single INSERT can be split over shards");
		goto done;
	}
	PgQuery__InsertStmt *ins = tree->stmts[0]->stmt->insert_stmt;
	if (!ins->select_stmt || ins->select_stmt->node_case != PG_QUERY__NODE__NODE_SELECT_STMT ||
	    (int)ins->select_stmt->select_stmt->n_values_lists != n_rows) {
		fail(err, errlen, "INSERT rows changed between analysis and splitting");
		goto done;
	}
	values = ins->select_stmt->select_stmt;
	saved = values->values_lists;
	saved_n = values->n_values_lists;
	kept = malloc(sizeof(*kept) * (saved_n ? saved_n : 1));
	if (!kept) {
		fail(err, errlen, "out of memory");
		goto done;
	}
	size_t n_kept = 0;
	for (size_t i = 0; i < saved_n; i++)
		if (row_shard[i] == shard)
			kept[n_kept++] = saved[i];
	values->values_lists = kept;
	values->n_values_lists = n_kept;

	/* Renumber the parameters that remain: $old -> $new, dense, ordered. */
	if (!pgtree_walk(&tree->base, REWRITE_MAX_DEPTH, collect_param, &pw))
		pw.too_deep = true;
	if (pw.too_deep) {
		fail(err, errlen, "INSERT too deep to split");
		goto restore;
	}
	int max_old = 0;
	for (int i = 0; i < pw.n; i++)
		if (pw.refs[i]->number > max_old)
			max_old = pw.refs[i]->number;
	if (max_old > 0) {
		int *renumber = calloc((size_t)max_old + 1, sizeof(int));
		if (!renumber) {
			fail(err, errlen, "out of memory");
			goto restore;
		}
		for (int i = 0; i < pw.n; i++)
			if (pw.refs[i]->number > 0)
				renumber[pw.refs[i]->number] = 1;
		int next = 0;
		for (int old = 1; old <= max_old; old++) {
			if (!renumber[old])
				continue;
			if (next >= max_params) {
				free(renumber);
				fail(err, errlen, "too many parameters");
				goto restore;
			}
			param_map[next] = old - 1;
			renumber[old] = ++next;
		}
		for (int i = 0; i < pw.n; i++)
			if (pw.refs[i]->number > 0)
				pw.refs[i]->number = renumber[pw.refs[i]->number];
		*n_params = next;
		free(renumber);
	}

	size_t size = pg_query__parse_result__get_packed_size(tree);
	packed = malloc(size ? size : 1);
	if (!packed) {
		fail(err, errlen, "out of memory");
		goto restore;
	}
	pg_query__parse_result__pack(tree, packed);
	PgQueryProtobuf pb = {size, (char *)packed};
	PgQueryDeparseResult dr = pg_query_deparse_protobuf(pb);
	if (dr.error)
		fail(err, errlen, "INSERT could not be written back for a shard");
	else
		out = strdup(dr.query);
	pg_query_free_deparse_result(dr);
restore:
	values->values_lists = saved;
	values->n_values_lists = saved_n;
done:
	free(kept);
	free(pw.refs);
	free(packed);
	pg_query__parse_result__free_unpacked(tree, NULL);
	return out;
}
