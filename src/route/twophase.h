/*
 * twophase.h - the decisions of transactions committed with two-phase commit.
 *
 * A write over several shards, with routing.two_phase_commit, is prepared on
 * every shard as 'PREFIX_<shard index>'. The decision to commit is recorded
 * (committed) in shardgate.decisions (sql/two_phase.sql) on the default
 * shard before the first COMMIT PREPARED; no row means roll back (presumed
 * abort). twophase_recover() runs at start-up and finishes every prepared
 * transaction a previous run left behind. These calls block on libpq, once
 * per decided transaction: they run on the calling thread's own connection.
 */
#ifndef SHARDGATE_ROUTE_TWOPHASE_H
#define SHARDGATE_ROUTE_TWOPHASE_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"

#define TWOPHASE_GID_MAX 64

/* A new transaction name prefix, unique across runs ("sg_<random>_<n>"). */
void twophase_new_gid(char *out, size_t outlen);

/* Records the decision to commit PREFIX over the given shards. */
bool twophase_record(const config_t *config, const char *database, const char *gid,
		     const int *shards, int n_shards, char *err, size_t errlen);

/* Deletes the decision once every shard committed (failures are only logged). */
void twophase_forget(const config_t *config, const char *database, const char *gid);

/* Finishes the prepared transactions named sg_... on every shard: commit when
 * decided, else roll back. Returns how many were finished; -1 when a shard
 * could not be asked (logged; the rest are still done). */
int twophase_recover(const config_t *config);

/* Closes the calling thread's connection. */
void twophase_thread_done(void);

#endif
