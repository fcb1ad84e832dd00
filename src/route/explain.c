/*
 * explain.c - how a statement is sharded, in words (shardgate explain and
 * the admin console's SHOW ROUTE).
 */
#include "route/explain.h"

#include <stdlib.h>
#include <string.h>

#include "merge/plan.h"
#include "route/directory.h"
#include "route/hash.h"
#include "route/shard.h"

static __thread const char *explain_database;

static int explain_directory(int table, const char *key, size_t len, void *arg)
{
	char err[256];
	int shard = directory_cached(arg, table, key, len);
	if (shard < 0)
		shard = directory_fetch(arg, explain_database, table, key, len, false, err,
					sizeof(err));
	return shard < 0 ? 0 : shard; /* unknown: explained as the first shard */
}

/* Prints every literal key value of a constraint with its bucket and shard. */
static void explain_values(const config_t *config, const keys_facts_t *f, int t, int ci,
			   int depth, FILE *out)
{
	if (ci < 0 || ci >= f->n_conds || depth > 50)
		return;
	const keys_cond_t *c = &f->conds[ci];
	const cfg_table_t *table = &config->tables[t];
	if (c->kind == KC_AND || c->kind == KC_OR) {
		for (int i = 0; i < c->n_children; i++)
			explain_values(config, f, t, f->children[c->first_child + i], depth + 1, out);
		return;
	}
	if (c->kind != KC_IN)
		return;
	for (int i = 0; i < c->n_values; i++) {
		const keys_value_t *v = &f->values[c->first_value + i];
		if (v->kind != KV_LITERAL || v->array)
			continue;
		int bucket = -1;
		int shard = shard_of_text(config, t, v->text, strlen(v->text));
		if (table->strategy == STRATEGY_HASH)
			hash_bucket_for_text_value(table->key_type, v->text, strlen(v->text),
						   table->buckets, &bucket);
		if (shard == -2)
			fprintf(out, "key:        %s.%s = %s -> directory %s\n", table->name, table->key,
			       v->text, table->directory_table);
		else if (bucket >= 0)
			fprintf(out, "key:        %s.%s = %s -> bucket %d of %d -> shard %s\n", table->name,
			       table->key, v->text, bucket, table->buckets,
			       config->shards[shard].name);
		else if (shard >= 0)
			fprintf(out, "key:        %s.%s = %s -> shard %s\n", table->name, table->key, v->text,
			       config->shards[shard].name);
		else
			fprintf(out, "key:        %s.%s = %s -> no shard (not a %s, or outside every "
			       "range)\n",
			       table->name, table->key, v->text, key_type_name(table->key_type));
	}
}

/*
 * The shard-map part of explain: the key facts, each key's bucket, range or
 * directory entry, and the target shards. Returns the number of target
 * shards (1: *shard is it, and the node is chosen as for any statement),
 * 0 when refused, -1 on failure.
 */
int route_explain_shards(const config_t *config, const char *sql, const char *const *param_values,
			 int n_params, const char *database, const analysis_t *a, const route_class_t *cls,
			 int *shard, FILE *out)
{
	keys_table_t *kt = shard_key_tables(config);
	keys_facts_t *f = kt ? keys_extract(sql, strlen(sql), kt, config->n_tables) : NULL;
	if (!f) {
		free(kt);
		return -1;
	}
	char desc[4096];
	keys_describe(f, kt, desc, sizeof(desc));
	fprintf(out, "key facts:  %s\n", desc);
	for (int r = 0; r < f->n_rels; r++) {
		const cfg_table_t *t = &config->tables[f->rels[r].table];
		fprintf(out, "sharded:    %s (%s%s%s)\n", t->name, strategy_name(t->strategy),
		       t->key[0] ? " on " : "", t->key);
		explain_values(config, f, f->rels[r].table, f->rels[r].cond, 0, out);
	}
	const uint8_t *values[64];
	int32_t lengths[64];
	int16_t formats[64];
	for (int i = 0; i < n_params; i++) {
		values[i] = (const uint8_t *)param_values[i];
		lengths[i] = (int32_t)strlen(param_values[i]);
		formats[i] = 0;
	}
	shard_params_t params = {n_params, values, lengths, formats};
	shard_route_t r;
	explain_database = database;
	shard_stmt_info_t info;
	shard_stmt_info(config, a, &info);
	shard_route(config, &info, f, cls->read, n_params ? &params : NULL, explain_directory,
		    (void *)config, &r);
	int result = 0;
	if (r.status == SHARD_ROUTE_REFUSE) {
		fprintf(out, "refused:    SQLSTATE %s: %s\n", r.sqlstate, r.message);
	} else if (r.status == SHARD_ROUTE_PARAMS) {
		fprintf(out, "target:     depends on parameters: give their values after the statement\n");
	} else {
		fprintf(out, "shards:    ");
		for (int s = shardset_first(&r.shards); s >= 0; s = shardset_next(&r.shards, s))
			fprintf(out, " %s", config->shards[s].name);
		fprintf(out, " (%s)\n", r.message);
		for (int i = 0; r.row_shard && i < r.n_rows; i++)
			fprintf(out, "row:        VALUES row %d -> shard %s\n", i + 1,
			       config->shards[r.row_shard[i]].name);
		if (r.n_shards == 1 && !r.row_shard) {
			*shard = shardset_first(&r.shards);
			result = 1;
		} else {
			char why[320] = "";
			merge_plan_t *plan = r.merge ? merge_plan_build(sql, why, sizeof(why)) : NULL;
			if (r.merge && !plan) {
				fprintf(out, "refused:    SQLSTATE 0A000: %s\n", why);
			} else {
				fprintf(out, "target:     %s on %d shards: %s\n",
				       r.merge ? "fan-out read, results merged" : "fan-out write",
				       r.n_shards,
				       r.merge ? "replicas where healthy"
					       : "every shard's primary, one transaction each, committed "
						 "together");
			}
			if (plan) {
				char desc[2048];
				merge_plan_describe(plan, desc, sizeof(desc));
				fprintf(out, "merge:      %s\n", desc);
				fprintf(out, "per shard:  %s\n", merge_plan_shard_sql(plan));
				merge_plan_free(plan);
			}
			result = r.n_shards;
		}
	}
	shard_route_free(&r);
	keys_free(f);
	free(kt);
	return result;
}

