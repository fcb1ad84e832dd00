/*
 * pool.h - bounded pools of server connections, one per worker, node,
 * user and database, each with a FIFO wait queue (a bulkhead: a slow node
 * fills only its own pool).
 */
#ifndef SHARDGATE_POOL_H
#define SHARDGATE_POOL_H

#include <stdbool.h>

#include "net/net.h"

/*
 * The pool.size limit of one (node, user, database), shared by the pools
 * of every worker: counted when a connection opens or closes, never per
 * transaction.
 */
typedef struct {
	atomic_int open;     /* connections of every worker, counting those opening */
	atomic_int starving; /* workers whose waiters cannot open a connection */
	atomic_int max;	     /* pool.size */
	int shard, node;
} pool_quota_t;

/* Open server connections of (shard, node) over every user and database,
 * and the sum of their limits (for /metrics); thread-safe. */
void pool_node_usage(int shard, int node, int *open, int *max);
/* Server connections of the shard linked to clients now, every worker. */
int pool_shard_active(int shard);

struct pool {
	worker_t *worker;
	pool_quota_t *quota;
	bool starving;
	int shard;	  /* index into config->shards */
	int node;	  /* 0 = primary, 1.. = replica number + 1 */
	cfg_address_t address;
	char user[CONFIG_NAME_MAX + 1];	    /* backend login */
	char database[CONFIG_NAME_MAX + 1]; /* backend database */
	int max_size;

	server_t *idle; /* most recently used first */
	int n_idle;
	int n_active;
	int n_connecting;

	client_t *wait_head, *wait_tail;
	int n_waiting;

	struct event *ev_retry; /* the next connection attempt, after a backoff */
	params_t welcome; /* a logged-in server's parameters, for new clients */
	bool has_welcome;
	int connect_failures;
	char last_error[256];
};

#define POOL_CONNECT_RETRIES 3
#define POOL_BACKOFF_BASE_MS 50
#define POOL_BACKOFF_CAP_MS 1000

/*
 * The delay before connection attempt number `failures` + 1: exponential
 * backoff with full jitter (a uniform draw in [0, min(cap, base * 2^(n-1))]),
 * so that many workers retrying a node do not retry in step. `random` is a
 * uniformly random 32-bit value.
 */
int64_t pool_backoff_ms(int failures, uint32_t random);

/* Finds or creates the pool for (shard, node, user, database) on worker w. */
pool_t *pool_get(worker_t *w, int shard, int node, const char *user, const char *database);

/*
 * Gives c a server connection. Returns true when one was linked at once
 * (c->server is set). Otherwise c waits in the queue (a connection is
 * opened when the pool has room) and the pool calls client_on_linked() or
 * client_on_pool_error() later; c may already be closed on return.
 */
bool pool_acquire(pool_t *pool, client_t *c);
/* Takes c out of the wait queue, if it is there. */
void pool_cancel_wait(pool_t *pool, client_t *c);
/* Returns a clean, idle server to its pool (or to a waiting client). */
void pool_release(server_t *s);
/* A server finished logging in. */
void pool_on_server_ready(server_t *s);
/* A server closed while in state `was`; frees its slot and opens another
 * for waiters, or fails them when nothing could serve them. */
void pool_on_server_closed(server_t *s, server_state_t was);
/* Periodic upkeep: fails waiters whose wait exceeded timeouts.wait, and
 * gives an idle connection back to the shared quota when another worker's
 * clients are starving for one. */
void pool_janitor(pool_t *pool, int64_t now_ms, int64_t wait_ms);
/* A new pool.size (RELOAD): a larger one serves waiters at once, a smaller
 * one closes idle connections over it as they come back (janitor). */
void pool_resize(pool_t *pool, int size);
/* Frees the process-wide quotas (after every worker stopped). */
void pool_free_quotas(void);
void pool_free_all(worker_t *w);

#endif
