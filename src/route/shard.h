/*
 * shard.h - which shards a statement touches.
 *
 * The analysis says what a statement does (read or write, which tables);
 * the key facts (analyze/keys.h) say which shard-key values it names. Here
 * the two meet the shard map: every sharded table's constraint becomes a set
 * of shards (hash buckets, overlapping ranges, directory entries), the sets
 * of co-located tables joined on their keys intersect, and the statement
 * gets its target shards, or a refusal (SQLSTATE 0A000) when no set of
 * shards could answer it correctly.
 *
 * Values come from the statement's literals or from Bind parameters (text
 * or binary). Directory keys are looked up through a callback that answers
 * from a cache; a key it does not know yet is returned to the caller, who
 * fetches it and routes again.
 */
#ifndef SHARDGATE_ROUTE_SHARD_H
#define SHARDGATE_ROUTE_SHARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "analyze/analyze.h"
#include "analyze/keys.h"
#include "config/config.h"

/* A set of shard indexes (CONFIG_MAX_SHARDS = 256). */
typedef struct {
	uint64_t bits[CONFIG_MAX_SHARDS / 64];
} shardset_t;

static inline void shardset_clear(shardset_t *s)
{
	for (int i = 0; i < CONFIG_MAX_SHARDS / 64; i++)
		s->bits[i] = 0;
}
static inline void shardset_add(shardset_t *s, int shard)
{
	s->bits[shard / 64] |= UINT64_C(1) << (shard % 64);
}
static inline bool shardset_has(const shardset_t *s, int shard)
{
	return (s->bits[shard / 64] >> (shard % 64)) & 1;
}
int shardset_count(const shardset_t *s);
/* The lowest member, -1 when empty. */
int shardset_first(const shardset_t *s);
/* The next member above `after`, -1 when none. */
int shardset_next(const shardset_t *s, int after);

/* Bind parameters, as a Bind message carries them. */
typedef struct {
	int n;
	const uint8_t *const *values; /* NULL entry: SQL NULL */
	const int32_t *lengths;
	const int16_t *formats; /* one per parameter: 0 text, 1 binary */
} shard_params_t;

/*
 * The shard of a directory key: a shard index, -1 when the cache does not
 * know the key (the caller looks it up and routes again).
 */
typedef int (*shard_directory_fn)(int table, const char *key, size_t len, void *arg);

typedef enum {
	SHARD_ROUTE_OK,      /* run on `shards` */
	SHARD_ROUTE_REFUSE,  /* answer 0A000 (or `sqlstate`) with `message` */
	SHARD_ROUTE_LOOKUP,  /* a directory key is not cached: see lookup_* */
	SHARD_ROUTE_PARAMS,  /* the target depends on Bind parameters not given */
	SHARD_ROUTE_PAUSED   /* a rebalance cut-over holds its rows: wait (net/remap.c) */
} shard_route_status_t;

typedef struct {
	shard_route_status_t status;
	shardset_t shards;
	int n_shards;       /* members of shards */
	bool sharded;       /* a sharded table (hash, range, directory) is involved */
	bool writes;        /* the statement writes (decided by the caller's class) */
	bool reference_write; /* a reference table is written: every shard */
	/* COPY ... FROM STDIN into a sharded table over several shards: its
	 * rows are split by key (table index and options; strings in copy_null). */
	bool copy;
	int copy_table;
	int copy_key_position;
	char copy_format, copy_delimiter, copy_quote, copy_escape;
	bool copy_header;
	char copy_null[64];
	bool copy_null_default;
	bool merge;         /* a SELECT over several shards: results must be merged
			       (on replicas when `reads` was given, else primaries) */
	/* INSERT ... VALUES whose rows go to several shards: row_shard[i] is the
	 * shard of VALUES row i (owned; shard_route_free). */
	int *row_shard;
	int n_rows;
	/* SHARD_ROUTE_LOOKUP: the table and key to fetch (key text owned). */
	int lookup_table;
	char *lookup_key;
	size_t lookup_len;
	bool lookup_insert; /* an INSERT brings the key: assign it when absent */
	const char *sqlstate; /* SHARD_ROUTE_REFUSE */
	char message[320];    /* REFUSE: the client's message; OK: why (for explain) */
} shard_route_t;

/*
 * What routing needs to know of a statement text besides its keys: the
 * same for every text of one shape (literal values aside), so it is kept
 * in the route class cached by shape.
 */
typedef struct {
	bool select;          /* kind READ: a SELECT (merged over several shards) */
	int n_statements;
	bool unlisted;        /* names a table that is not in the map (default shard) */
	char unlisted_name[CONFIG_NAME_MAX + 1];
	bool reference_write; /* writes a reference table */
} shard_stmt_info_t;

void shard_stmt_info(const config_t *config, const analysis_t *analysis, shard_stmt_info_t *out);

/*
 * The per-config table list for keys_extract(): one entry per configured
 * table, in config order (so keys_rel_t.table is a config table index).
 * Strings point into config. Free with free().
 */
keys_table_t *shard_key_tables(const config_t *config);

/*
 * Routes one analysed statement text. reads: the class says every
 * statement may run on a replica. params may be NULL (simple query, or a
 * Parse not yet bound: then SHARD_ROUTE_PARAMS when a $n decides).
 */
void shard_route(const config_t *config, const shard_stmt_info_t *info, const keys_facts_t *facts,
		 bool reads, const shard_params_t *params, shard_directory_fn directory,
		 void *directory_arg, shard_route_t *out);

void shard_route_free(shard_route_t *r);

/* The shard of one key value in text form for a table; -1 when the value
 * is not one of the key's type or falls outside every range; -2 when the
 * table is a directory table (needs a lookup). */
int shard_of_text(const config_t *config, int table, const char *text, size_t len);
/* The same for a binary-format value. */
int shard_of_binary(const config_t *config, int table, const uint8_t *bytes, size_t len);

#endif
