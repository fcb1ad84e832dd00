/*
 * explain.h - how a statement is sharded, in words.
 */
#ifndef SHARDGATE_ROUTE_EXPLAIN_H
#define SHARDGATE_ROUTE_EXPLAIN_H

#include <stdio.h>

#include "analyze/analyze.h"
#include "config/config.h"
#include "route/route.h"

/*
 * Writes to out the key facts of sql, each literal key's bucket, range or
 * directory entry (looked up in `database`, never assigned), the target
 * shards and why, the merge plan and per-shard SQL of a read over several
 * shards, or the 0A000 refusal. param_values: the text of $1..$n (n_params
 * of them; 0: not bound). Returns the number of target shards (1: *shard
 * is it), 0 when refused, -1 when out of memory.
 */
int route_explain_shards(const config_t *config, const char *sql, const char *const *param_values,
			 int n_params, const char *database, const analysis_t *a,
			 const route_class_t *cls, int *shard, FILE *out);

#endif
