/*
 * route.h - where a unit of work runs: which shard, which node, and why.
 *
 * A unit is what a client sends that must run on one server connection: a
 * simple Query, or extended-protocol messages through Sync. Its class says
 * whether it may run on a replica; route_choose() then picks a node from
 * the monitor's snapshot: a healthy replica whose lag is within bounds (and
 * that has replayed the client's last write), else the primary.
 */
#ifndef SHARDGATE_ROUTE_H
#define SHARDGATE_ROUTE_H

#include <stdbool.h>
#include <stdint.h>

#include "analyze/analyze.h"
#include "config/config.h"
#include "health/health.h"
#include "route/shard.h"

typedef struct {
	bool read;		/* every statement may run on a replica */
	bool read_only_txn;	/* begins a READ ONLY transaction */
	bool hint_primary;	/* shardgate: primary */
	int hint_shard;		/* shardgate: shard=NAME, -1 when absent */
	int64_t max_lag_ms;	/* shardgate: max_lag=..., -1 when absent */
	const char *reason;	/* why it is not a read (static text) */
	/* Creates session state that cannot follow the client to another
	 * server connection (SQL PREPARE, LISTEN, temporary objects, session
	 * advisory locks, WITH HOLD cursors, SET of a parameter the proxy does
	 * not track): the client keeps this server connection from now on. */
	bool pins;
	const char *pin_reason;
	bool bare_begin;    /* only BEGIN, with no READ ONLY / READ WRITE */
	bool set_read_only; /* only SET TRANSACTION READ ONLY */
	bool txn_end;       /* only COMMIT / ROLLBACK */
	int n_texts;        /* statement texts in the unit */
	bool configured_tables; /* names a table of the shard map (or may: unparseable) */
	shard_stmt_info_t shard_info; /* when configured_tables: for shard_route() */
} route_class_t;

/* Parameters whose value the proxy carries between server connections. */
typedef bool (*route_tracked_param_fn)(const char *name);

/* The class of one analysed statement text under the configuration's
 * function lists (read_only_functions, write_functions). */
void route_classify(const config_t *config, const analysis_t *analysis,
		    route_tracked_param_fn tracked, route_class_t *out);

/* The class of a unit made of several statements: a read only if all are. */
void route_class_init(route_class_t *cls);
void route_class_merge(route_class_t *acc, const route_class_t *next);
/* A unit that cannot be analysed (an unknown statement, an incomplete
 * pipeline, a FunctionCall): the primary. */
void route_class_unknown(route_class_t *cls, const char *reason);

typedef struct {
	int shard;
	int node; /* 0 = the configured primary, i = replicas[i - 1] */
	bool replica;
	/* The snapshot does not show this replica past the client's last
	 * write yet: ask the replica itself before running the unit there. */
	bool verify_lsn;
	const char *reason;
} route_target_t;

/* Load of a node (for least_connections): server connections in use. */
typedef int (*route_load_fn)(int shard, int node, void *arg);

typedef struct {
	uint64_t round_robin; /* per worker */
	uint64_t random_state;
} route_balance_t;

typedef enum {
	ROUTE_OK,
	ROUTE_NO_PRIMARY /* the shard's primary is down: writes fail fast */
} route_status_t;

const char *route_status_name(route_status_t status);

/*
 * Chooses the node for a unit of class cls on shard `shard`. min_lsn is the
 * client's last committed write (0: none): a replica must have replayed it.
 * snapshot may be NULL (no monitor yet): replicas are then assumed healthy
 * and current only when min_lsn is 0.
 */
route_status_t route_choose(const config_t *config, const health_snapshot_t *snapshot,
			    const route_class_t *cls, int shard, uint64_t min_lsn,
			    route_balance_t *balance, route_load_fn load, void *load_arg,
			    route_target_t *out);

#endif
