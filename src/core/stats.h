/*
 * stats.h - the proxy's counters: statements, errors, latency, pool waits,
 * routing-cache hits, per shard and node, for SHOW STATS and /metrics.
 *
 * Every function may be called from any thread at any time after
 * stats_init() (workers record, the admin console and the metrics thread
 * read); recording is a handful of relaxed atomic operations and never
 * takes a lock or allocates. Nodes are numbered as the pools number them:
 * 0 the shard's primary, 1.. its replicas in config order.
 *
 * Latency percentiles are over the last minute: each node keeps a ring of
 * 60 one-second histograms (log-spaced buckets from 10 us to 100 s); a
 * reader sums the ones younger than 60 s. /metrics also exposes cumulative
 * Prometheus histograms (le buckets) that never reset.
 */
#ifndef SHARDGATE_CORE_STATS_H
#define SHARDGATE_CORE_STATS_H

#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"

/* Sizes the tables for the config's shards and nodes. Call once, before
 * any worker starts; a later config with more nodes is not supported (its
 * extra nodes are not counted). */
bool stats_init(const config_t *config);
void stats_free(void);

/*
 * One statement (or extended-protocol unit up to its Sync) finished on
 * (shard, node) after duration_us; sqlstate: NULL for success, else the
 * five-character SQLSTATE of its ErrorResponse. role_primary: the node was
 * serving as primary.
 */
void stats_statement(int shard, int node, bool role_primary, int64_t duration_us,
		     const char *sqlstate);
/* A client waited wait_us for a server connection of (shard, node). */
void stats_pool_wait(int shard, int node, int64_t wait_us);
/* Clients waiting in (shard, node)'s pools: +1 when one starts, -1 when it stops. */
void stats_waiting(int shard, int node, int delta);
/* A routing decision was answered from the statement-shape cache (or not). */
void stats_route_cache(bool hit);
/* Clients logged in: +1 / -1. */
void stats_clients(int delta);
/* A rebalance cut-over: statements waiting now (+1/-1), and the map version. */
void stats_rebalance_waiting(int delta);
void stats_rebalance_version(int64_t version);

typedef struct {
	uint64_t statements; /* last minute */
	uint64_t errors;     /* last minute */
	double p50_ms, p95_ms, p99_ms; /* last minute; 0 when no statement */
	uint64_t total_statements;     /* since start */
	uint64_t total_errors;
	uint64_t total_waits;	/* pool waits since start */
	uint64_t total_wait_us; /* their summed duration */
	uint64_t max_wait_us;	/* longest pool wait since start */
	int waiting;		/* clients waiting now */
} stats_node_t;

/* The counters of (shard, node); false when out of range. */
bool stats_node(int shard, int node, stats_node_t *out);

/*
 * The Prometheus text exposition (version 0.0.4) of every counter, plus the
 * monitor's view of the nodes (replica lag, breaker state: health.h) and
 * the pools' open connections against their limit. Returns a malloc'ed
 * NUL-terminated string (NULL when out of memory).
 */
char *stats_prometheus(const config_t *config);

/* For tests: replaces the CLOCK_MONOTONIC seconds the ring is indexed by
 * (NULL restores it). Not for production use: set it before recording. */
void stats_set_clock(int64_t (*now_seconds)(void));

#endif
