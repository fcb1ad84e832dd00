/*
 * directory.h - the key -> shard map of directory-sharded tables.
 *
 * The truth is the table of sql/directory.sql on the table's directory
 * shard. The proxy keeps a bounded LRU cache of entries with a TTL, shared
 * by every worker (one mutex; an entry is a few dozen bytes). A key the
 * cache does not hold is fetched with a blocking libpq query on a
 * connection of the calling thread, bounded by timeouts.connect and
 * timeouts.query; an INSERT's new key is first assigned a shard by the
 * table's policy and recorded (committed) in the directory, so a row never
 * lands on a shard the directory does not name. Two proxies assigning the
 * same new key at once agree: the insert is ON CONFLICT DO NOTHING and both
 * then read the one row that won.
 */
#ifndef SHARDGATE_ROUTE_DIRECTORY_H
#define SHARDGATE_ROUTE_DIRECTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

#define DIRECTORY_CACHE_MAX 100000 /* entries */
#define DIRECTORY_TTL_MS    60000  /* an entry is trusted this long */

/* The cached shard of (table, key), -1 when absent or expired. */
int directory_cached(const config_t *config, int table, const char *key, size_t len);

/*
 * Fetches the key's shard from the directory in `database` (the client's;
 * every shard has the same databases) and caches it. When
 * `assign` and the key is absent, assigns one by the table's policy and
 * records it first. Returns the shard index, -1 when the key is absent
 * (and not assigned), -2 on failure (err says why).
 */
int directory_fetch(const config_t *config, const char *database, int table, const char *key,
		    size_t len, bool assign, char *err, size_t errlen);

/* Drops every cached entry (after a rebalance moved keys, or at exit). */
void directory_clear(void);

/* Closes the calling thread's directory connection. */
void directory_thread_done(void);

#endif
