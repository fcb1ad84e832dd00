/*
 * units.h - units of data movement between two shard maps.
 *
 * A rebalance turns map OLD into map NEW. Both maps have the same shards
 * and the same tables (same keys, types, strategies and co-location); they
 * differ in where rows live: hash buckets placed on other shards (the
 * bucket count may also be multiplied: bucket r of N is buckets r, r+N, ...
 * of k*N, as PostgreSQL's hash partitioning keeps them), range bounds and
 * shards, and directory keys pinned to another shard. A unit is one
 * movement: some buckets, one key range or some directory keys of one table
 * (with the tables co-located with it), from one source shard to one
 * target shard.
 *
 * A unit has a text form, its spec, which the CLI stores in its
 * bookkeeping and sends to the proxies at cut-over:
 *
 *   hash <table> <modulus> <b1,b2,...> <source> <target>
 *   range <table> <lo|-> <hi|-> <source> <target>       (bounds as SQL literals)
 *   directory <table> <source> <target> <key> [<key> ...] (keys as SQL literals)
 *
 * Applying a unit to a map gives the next map (rb_config_apply); the same
 * with the unit's rows on a phantom shard gives the proxy's pause view, in
 * which a statement touches the moving rows exactly when its route names
 * that phantom shard.
 */
#ifndef SHARDGATE_REBALANCE_UNITS_H
#define SHARDGATE_REBALANCE_UNITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

typedef enum { RB_HASH, RB_RANGE, RB_DIRECTORY } rb_kind_t;

typedef struct rb_unit {
	rb_kind_t kind;
	int table;  /* the root table of its co-location group */
	int source; /* shard indexes */
	int target;
	/* RB_HASH: buckets of `modulus` */
	int modulus;
	int *buckets;
	int n_buckets;
	/* RB_RANGE: keys in [lo, hi); unbounded side when has_lo/has_hi false */
	bool has_lo, has_hi;
	char lo[256], hi[256];
	/* RB_DIRECTORY */
	char **keys;
	int n_keys;
	/* estimates (plan), -1 when unknown */
	int64_t rows, bytes;
} rb_unit_t;

typedef struct {
	rb_unit_t *units;
	int n_units;
	/* hash tables whose NEW placement moves more buckets than needed: a
	 * placement that moves the fewest (text, owned), else NULL */
	char *advice;
} rb_plan_t;

/* A directory key's current shard (-1: not in the directory; -2: error,
 * message in err). Plans read the directory through it. */
typedef int (*rb_directory_fn)(const config_t *cfg, int table, const char *key, void *arg,
			       char *err, size_t errlen);

/*
 * The units turning OLD into NEW, at most `batch` buckets per hash unit
 * (0: no limit). False with a message when the maps are not two
 * placements of the same tables, or NEW would leave keys without a shard.
 */
bool rb_plan_build(const config_t *old, const config_t *new, int batch, rb_directory_fn directory,
		   void *directory_arg, rb_plan_t *out, char *err, size_t errlen);
void rb_plan_free(rb_plan_t *plan);
void rb_unit_free(rb_unit_t *u);

/* The unit's spec (see above), malloc'ed. */
char *rb_unit_spec(const config_t *cfg, const rb_unit_t *u);
/* Reads a spec against a map (names resolved in it). */
bool rb_unit_parse(const config_t *cfg, const char *spec, rb_unit_t *out, char *err,
		   size_t errlen);
/* One line for people: "sg_users buckets 1,5,9 of 16: s0 -> s2". */
void rb_unit_describe(const config_t *cfg, const rb_unit_t *u, char *out, size_t outlen);

/*
 * The map after the unit moved (phantom false), or the pause view
 * (phantom true: the unit's rows on an extra shard, index cfg->n_shards,
 * named "(moving)"). Only the shard list and the tables are new; every
 * other field is shared with cfg. False when the unit does not fit the
 * map (its rows are not where it says they come from). Free with
 * rb_config_free().
 */
bool rb_config_apply(const config_t *cfg, const rb_unit_t *u, bool phantom, config_t **out,
		     char *err, size_t errlen);
void rb_config_free(config_t *derived);

/* Whether table t moves with the unit (its root or co-located with it). */
bool rb_unit_has_table(const config_t *cfg, const rb_unit_t *u, int t);

/* An SQL condition selecting the unit's rows of table t (built-in
 * immutable functions only: usable as a publication's row filter). */
char *rb_unit_predicate(const config_t *cfg, const rb_unit_t *u, int t);

/* A digest of the map's shards and tables (16 hex digits). */
void rb_map_digest(const config_t *cfg, char out[17]);

/* Appends `text` as an SQL string literal ('...' with quotes doubled). */
void rb_sql_literal(char *out, size_t outlen, const char *text);
/* "schema"."table" or "table", quoted. */
void rb_sql_table(char *out, size_t outlen, const char *name);

#endif
