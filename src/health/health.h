/*
 * health.h - the node health monitor: liveness, role, replication lag and
 * circuit breakers of every node of every shard (SPEC.md sections 3, 4, 6).
 *
 * One monitor thread checks every node each health.interval_ms with libpq in
 * non-blocking mode, keeping one connection per node, and after every round
 * publishes an immutable health_snapshot_t. Workers read snapshots without
 * locks (health_acquire / health_release) and report the outcome of real
 * traffic with health_report(), which the monitor folds into the breakers.
 *
 * Roles follow what a node reports (pg_is_in_recovery()), not the config: a
 * promoted replica is a primary; a configured primary in recovery is flagged
 * (role_mismatch) and logged.
 *
 * Replica lag:
 *   lag_bytes = the shard primary's pg_current_wal_lsn() - the replica's
 *               pg_last_wal_replay_lsn(), 0 if negative.
 *   lag_ms    = 0 when the replica has replayed everything the primary had
 *               at its last check; otherwise how long ago the primary was
 *               first seen past the replica's replay position (the age of the
 *               oldest sample of the shard's LSN history above replay_lsn).
 *               So an idle primary never shows as lag however old its last
 *               WAL is. The history keeps HEALTH_LSN_HISTORY samples, one per
 *               change of the primary's LSN; a replica behind even the oldest
 *               sample gets that sample's age (a lower bound).
 *   Both are -1 while unknown (no primary answering in the shard).
 *
 * Read eligibility, with hysteresis so a replica near the bound does not
 * flap: an eligible replica becomes ineligible when lag_bytes > max_lag_bytes
 * or lag_ms > max_lag_ms; an ineligible one becomes eligible again only when
 * both are below 50 % of their bounds. A bound of 0 is no bound. A replica
 * starts eligible (its first measurement applies the first rule) and keeps
 * its lag verdict while its shard has no primary answering.
 */
#ifndef SHARDGATE_HEALTH_H
#define SHARDGATE_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config/config.h"
#include "health/breaker.h"

typedef enum { NODE_UNKNOWN, NODE_UP, NODE_DOWN } node_state_t;

#define HEALTH_ERROR_MAX 160

typedef struct {
	int shard; /* index into config_t.shards */
	int node;  /* 0 = the configured primary, i = replicas[i - 1] */
	node_state_t state;
	bool in_recovery;     /* the node's own answer: true = acting as replica */
	bool role_mismatch;   /* configured primary in recovery, or replica promoted */
	uint64_t wal_lsn;     /* pg_current_wal_lsn() when not in recovery, else 0 */
	uint64_t replay_lsn;  /* pg_last_wal_replay_lsn(), 0 if NULL */
	uint64_t receive_lsn; /* pg_last_wal_receive_lsn(), 0 if NULL */
	int64_t lag_bytes;    /* replicas; 0 for a primary, -1 unknown */
	int64_t lag_ms;       /* replicas; 0 for a primary, -1 unknown */
	/* May take reads now: UP, breaker closed and, for a replica, lag
	 * within bounds (with hysteresis). A primary that is UP is eligible. */
	bool eligible;
	breaker_state_t breaker;
	int64_t last_check_ms;             /* wall clock (ms since epoch) of the last
	                                      completed check, 0 if none yet */
	int64_t check_duration_ms;         /* how long the last completed check took */
	char last_error[HEALTH_ERROR_MAX]; /* empty when the last check passed */
} health_node_t;

typedef struct {
	int first;            /* index in health_snapshot_t.nodes of node 0 */
	int n_nodes;          /* 1 + number of replicas */
	int primary_node;     /* node acting as primary (UP, not in recovery), -1 if none */
	uint64_t primary_lsn; /* its wal_lsn, 0 if none */
} health_shard_t;

typedef struct {
	uint64_t version;    /* 1, 2, ... per publication */
	int64_t taken_at_ms; /* wall clock, ms since epoch */
	int n_shards;
	const health_shard_t *shards;
	int n_nodes;
	const health_node_t *nodes; /* shard-major, node 0 first */
} health_snapshot_t;

/*
 * Starts the monitor thread for `config` (copied: the config need not
 * outlive the monitor). Publishes a first snapshot with every node UNKNOWN
 * before returning. Only one monitor runs per process. On failure returns
 * false and writes the reason into err.
 */
bool health_start(const config_t *config, char *err, size_t errlen);

/* Stops and joins the monitor, closes its connections and drops the current
 * snapshot (freed when the last reader releases it). Safe if not started. */
void health_stop(void);

/*
 * The current snapshot, or NULL when no monitor runs. Lock-free and
 * wait-free for readers; callable from any thread. Every non-NULL result
 * must be given back with health_release(); it stays valid until then.
 */
const health_snapshot_t *health_acquire(void);
void health_release(const health_snapshot_t *snapshot);

/* The entry of (shard, node) or NULL if out of range. */
const health_node_t *health_snapshot_node(const health_snapshot_t *snapshot, int shard, int node);

/*
 * May traffic go to (shard, node)? False while its breaker is OPEN or
 * HALF_OPEN: in HALF_OPEN the monitor's own check is the single probe, so no
 * client statement is risked on a node that has not yet proven itself.
 * True for an unknown node or a NULL snapshot (no information: do not block).
 * Replica read routing should use health_node_t.eligible, which also needs UP
 * and lag within bounds.
 */
bool health_node_allowed(const health_snapshot_t *snapshot, int shard, int node);

/*
 * Reports the outcome of real traffic on (shard, node) (ok = false for a
 * connect failure or a connection lost mid-statement, not for an SQL error).
 * Lock-free, from any thread, also when no monitor runs (then ignored at the
 * next start). The monitor folds the counts into the breaker each round.
 */
void health_report(int shard, int node, bool ok);

/* One line per node: shard, node, address-free role, state, LSNs, lag,
 * eligibility, breaker, last error. For `shardgate explain` and logs. */
void health_print(const health_snapshot_t *snapshot, FILE *out);

const char *node_state_name(node_state_t state);

/* ---- pure helpers, exposed for tests ---- */

/* Parses PostgreSQL's pg_lsn text "16/B374D848" (two hex halves). */
bool health_parse_lsn(const char *text, uint64_t *out_lsn);

#define HEALTH_LSN_HISTORY 256

typedef struct {
	int64_t at_ms; /* monotonic time the primary was seen at this LSN */
	uint64_t lsn;
} health_lsn_sample_t;

/* A ring of the primary's LSN over time, one sample per increase. */
typedef struct {
	health_lsn_sample_t samples[HEALTH_LSN_HISTORY];
	int start; /* index of the oldest sample */
	int count;
} health_lsn_history_t;

void health_history_reset(health_lsn_history_t *history);

/* Appends (at_ms, lsn) when lsn is above the newest sample; an LSN that went
 * backwards (a new primary) restarts the history. Full: drops the oldest. */
void health_history_add(health_lsn_history_t *history, int64_t at_ms, uint64_t lsn);

/* primary_lsn - replay_lsn, 0 if negative. */
int64_t health_lag_bytes(uint64_t primary_lsn, uint64_t replay_lsn);

/* The time lag of a replica at replay_lsn measured at now_ms (see above);
 * -1 when the history is empty. */
int64_t health_lag_ms(const health_lsn_history_t *history, uint64_t replay_lsn, int64_t now_ms);

/* The hysteresis rule above: the next eligibility of a replica. */
bool health_lag_eligible(bool was_eligible, int64_t lag_bytes, int64_t lag_ms,
                         int64_t max_lag_bytes, int64_t max_lag_ms);

#endif
