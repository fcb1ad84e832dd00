/*
 * verify.h - checks that every row lives on the shard the map gives it
 * (`shardgate rebalance verify`).
 *
 * For each table of the map, every shard's primary is asked, in one
 * read-only REPEATABLE READ snapshot per shard, how many rows each unit of
 * placement holds there and an order-independent checksum of them:
 *
 *   hash        unit = bucket (the expression of route/hash.h), must be on
 *               placement[bucket]
 *   range       unit = range index (bounds compared as the proxy compares
 *               them: by key type, text in the C collation), must be on
 *               ranges[i].shard
 *   directory   unit = the key in text form, must be on the shard its
 *               directory entry names (read after the shards, so a key
 *               whose rows are seen already has its entry)
 *   reference   one unit, the whole table: every shard's copy must have the
 *               same count and checksum
 *
 * A row whose key is NULL has no place in any map and is a mismatch. A
 * table missing on a shard counts as empty there; missing on every shard
 * is an error. The checksum of a set of rows is
 * sum(hashtextextended(row::text, 0)) in numeric, with the settings that
 * shape a row's text (TimeZone, DateStyle, IntervalStyle,
 * extra_float_digits, bytea_output) fixed for the snapshot, so that equal
 * rows give equal checksums on every shard. Shards are checked one after
 * the other, not at one instant: rows moved while verify runs can show as
 * mismatches.
 */
#ifndef SHARDGATE_REBALANCE_VERIFY_H
#define SHARDGATE_REBALANCE_VERIFY_H

#include <stdio.h>

#include "config/config.h"

/* What rb_verify returns, also the exit code of `rebalance verify`. */
typedef enum {
	RB_VERIFY_OK = 0,       /* every row is where the map puts it */
	RB_VERIFY_MISMATCH = 1, /* some rows are not (each one reported) */
	RB_VERIFY_ERROR = 2     /* a shard, table or directory could not be read */
} rb_verify_status_t;

/*
 * Checks every table of cfg on every shard's primary (as backend.user,
 * database backend.database or "postgres") and prints to `out` one line
 * per unit and shard that holds rows (unit, shard, rows, checksum), a
 * "MISMATCH ..." line for each misplaced unit, an "ERROR ..." line for
 * each failure, and a last summary line:
 *
 *   verify: N tables, M units, K rows: OK
 *   verify: X mismatches (N tables, M units, K rows)
 *   verify: E errors, X mismatches (...)
 *
 * Returns an rb_verify_status_t (ERROR wins over MISMATCH). Opens its
 * connections through route/pgconn and closes the ones it used.
 */
int rb_verify(const config_t *cfg, FILE *out);

#endif
