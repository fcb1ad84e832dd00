/*
 * merge.h - the shards' result rows in, the one result PostgreSQL would
 * have given out; streaming, no network, no threads.
 *
 * A merger follows one merge_plan_t (plan.h) for one execution. Every
 * source (shard) first gives its RowDescription, then DataRows, then is
 * done. Message bodies are passed without the type byte and length, exactly
 * as they arrive; the merger copies what it keeps.
 *
 *   CONCAT     rows flow through at once (DISTINCT: the first of each).
 *   ORDERED    a row is ready when every unfinished source has at least one
 *              buffered row: the smallest head goes out. A source's queue is
 *              bounded by the caller, who stops reading a source whose
 *              merger_buffered() passes its threshold (backpressure).
 *   AGGREGATE  partial aggregates are combined per group as rows arrive
 *              (one state per group); rows come out once every source is
 *              done, after HAVING, DISTINCT, ORDER BY and OFFSET/LIMIT.
 *
 * Values are compared by type, from the RowDescription's type OIDs and
 * format codes: int2/int4/int8/oid, numeric (text; NaN and +-Infinity),
 * float4/float8 (NaN above everything, as PostgreSQL orders it), text,
 * varchar, name, "char" and bpchar bytewise (C collation; bpchar without
 * trailing blanks), bool, uuid, date, time, timestamp and timestamptz
 * (ISO DateStyle in text; a timestamptz is compared as an instant, whatever
 * its offset; infinity and BC dates), and in binary format int2/4/8,
 * float4/8, bool, uuid, date, time, timestamp(tz) and text types. Ordering
 * by, min/max of, or HAVING on any other type (or numeric in binary) is an
 * error of merger_row_description(). Values are never compared otherwise:
 * other columns pass through untouched.
 *
 * Errors are returned with a message for the client (the caller picks the
 * SQLSTATE, 0A000 for an unsupported merge). After an error the merger
 * produces nothing more. A plan must outlive its mergers.
 */
#ifndef SHARDGATE_MERGE_H
#define SHARDGATE_MERGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "merge/plan.h"

#define MERGE_MAX_SOURCES 4096

typedef struct merger merger_t;

/*
 * A merger for nsources sources. params are the Bind parameter values
 * (libpq style: values[i] NULL for SQL NULL, lengths used for binary ones,
 * formats NULL meaning all text), needed when LIMIT, OFFSET or a HAVING
 * constant is a $n; pass nparams 0 and NULLs when there are none. Fails
 * (NULL, message in err) on a negative LIMIT/OFFSET or a missing one.
 */
merger_t *merger_new(const merge_plan_t *p, int nsources, int nparams,
                     const char *const *param_values, const int *param_lengths,
                     const int *param_formats, char *err, size_t errlen);

/*
 * A source's RowDescription ('T' body). All sources must agree (same
 * columns, type OIDs and formats). The first one fixes the client's
 * RowDescription: hidden columns dropped, avg's column typed numeric or
 * float8 as PostgreSQL types avg().
 */
bool merger_row_description(merger_t *m, int source, const uint8_t *body, size_t len, char *err,
                            size_t errlen);

/* The client's RowDescription body; NULL until a source described its rows. */
const uint8_t *merger_client_row_description(merger_t *m, size_t *len);

/* One DataRow body from a source (after its RowDescription). Rows that
 * arrive once the limit is met are accepted and dropped. */
bool merger_push_row(merger_t *m, int source, const uint8_t *body, size_t len, char *err,
                     size_t errlen);

/* The source finished (CommandComplete seen). */
void merger_source_done(merger_t *m, int source);

/*
 * The next DataRow body for the client, valid until the next call on the
 * merger; NULL when none is ready now (see the modes above).
 */
const uint8_t *merger_next_row(merger_t *m, size_t *len);

/* The limit has been met: the caller may cancel the remaining shards'
 * queries and discard their rows. */
bool merger_limit_reached(const merger_t *m);

/* Rows of a source the merger holds (ORDERED: its queue; CONCAT: rows not
 * yet taken; AGGREGATE: 0, rows are folded at once). */
size_t merger_buffered(const merger_t *m, int source);

/* Rows given to the client so far (the command tag "SELECT n"). */
uint64_t merger_rows_out(const merger_t *m);

/* No more rows will come out: every source done and every row taken, the
 * limit met, or the merge failed (see merger_error). */
bool merger_finished(const merger_t *m);

/* Why the merge stopped in a call that has no error channel (out of memory
 * in merger_source_done or merger_next_row); NULL when it did not. */
const char *merger_error(const merger_t *m);

/* NULL is a no-op. */
void merger_free(merger_t *m);

#endif
