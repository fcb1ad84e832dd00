/*
 * rewrite.h - statement texts for one shard's share of a statement.
 *
 * A multi-row INSERT whose rows go to several shards becomes one INSERT per
 * shard holding only that shard's rows, written back to SQL by
 * libpg_query's deparser. Parameters are renumbered densely ($1..$n in
 * order of their old numbers) because PostgreSQL refuses a statement with
 * a parameter it cannot type, which an unused one would be.
 */
#ifndef SHARDGATE_ROUTE_REWRITE_H
#define SHARDGATE_ROUTE_REWRITE_H

#include <stdbool.h>
#include <stddef.h>

/*
 * The INSERT sql keeping VALUES row i only when row_shard[i] == shard.
 * param_map (room for max_params entries) receives, for each new
 * parameter $k, the old parameter's number minus one at param_map[k - 1];
 * *n_params is the new count. Returns a malloc'd NUL-terminated text, or
 * NULL with a message in err.
 */
char *rewrite_insert_rows(const char *sql, const int *row_shard, int n_rows, int shard,
			  int *param_map, int max_params, int *n_params, char *err,
			  size_t errlen);

#endif
