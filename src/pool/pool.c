/*
 * pool.c - per-worker pools of server connections with FIFO wait queues.
 *
 * A pool belongs to one worker and one (shard, node, user, database); its
 * size is that worker's share of pool.size. Idle servers are reused most
 * recently used first, so a warm connection (with its prepared statements)
 * serves the next transaction.
 */
#include "pool/pool.h"
#include "core/stats.h"

#include <event2/event.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "net/io.h"

static size_t pool_key(char *out, size_t outlen, int shard, int node, const char *user,
		       const char *database)
{
	int n = snprintf(out, outlen, "%d/%d/%s/%s", shard, node, user, database);
	return n < 0 ? 0 : ((size_t)n >= outlen ? outlen - 1 : (size_t)n);
}

static pthread_mutex_t quota_lock = PTHREAD_MUTEX_INITIALIZER;
static hashmap_t quotas;

/* Server connections linked to a client, per shard, over every worker
 * (PAUSE waits for them to end). */
static atomic_int shard_active[CONFIG_MAX_SHARDS];

static void pool_active_dec(pool_t *pool)
{
	pool->n_active--;
	atomic_fetch_sub(&shard_active[pool->shard], 1);
}

int pool_shard_active(int shard)
{
	return shard >= 0 && shard < CONFIG_MAX_SHARDS ? atomic_load(&shard_active[shard]) : 0;
}

/* The shared quota for a pool key; taken once per pool creation. */
static pool_quota_t *find_quota(const char *key, size_t key_len, int shard, int node, int max)
{
	pthread_mutex_lock(&quota_lock);
	pool_quota_t *q = hashmap_get(&quotas, key, key_len);
	if (!q) {
		q = calloc(1, sizeof(*q));
		if (q && !hashmap_put(&quotas, key, key_len, q)) {
			free(q);
			q = NULL;
		}
		if (q) {
			q->shard = shard;
			q->node = node;
		}
	}
	if (q)
		atomic_store(&q->max, max);
	pthread_mutex_unlock(&quota_lock);
	return q;
}

typedef struct {
	int shard, node, open, max;
} usage_t;

static void add_usage(const void *key, size_t len, void *value, void *arg)
{
	(void)key;
	(void)len;
	pool_quota_t *q = value;
	usage_t *u = arg;
	if (q->shard == u->shard && q->node == u->node) {
		u->open += atomic_load(&q->open);
		u->max += atomic_load(&q->max);
	}
}

void pool_node_usage(int shard, int node, int *open, int *max)
{
	usage_t u = {shard, node, 0, 0};
	pthread_mutex_lock(&quota_lock);
	if (quotas.slots)
		hashmap_foreach(&quotas, add_usage, &u);
	pthread_mutex_unlock(&quota_lock);
	*open = u.open;
	*max = u.max;
}

static void free_quota(const void *key, size_t len, void *value, void *arg)
{
	(void)key;
	(void)len;
	(void)arg;
	free(value);
}

void pool_free_quotas(void)
{
	pthread_mutex_lock(&quota_lock);
	hashmap_foreach(&quotas, free_quota, NULL);
	hashmap_destroy(&quotas);
	pthread_mutex_unlock(&quota_lock);
}

pool_t *pool_get(worker_t *w, int shard, int node, const char *user, const char *database)
{
	char key[256];
	size_t key_len = pool_key(key, sizeof(key), shard, node, user, database);
	pool_t *pool = hashmap_get(&w->pools, key, key_len);
	if (pool)
		return pool;
	const config_t *cfg = w->config;
	if (shard < 0 || shard >= cfg->n_shards || node < 0 ||
	    node > cfg->shards[shard].n_replicas)
		return NULL;
	pool = calloc(1, sizeof(*pool));
	if (!pool)
		return NULL;
	pool->worker = w;
	pool->shard = shard;
	pool->node = node;
	const cfg_node_t *n =
		node == 0 ? &cfg->shards[shard].primary : &cfg->shards[shard].replicas[node - 1];
	pool->address = n->address;
	snprintf(pool->user, sizeof(pool->user), "%s", user);
	snprintf(pool->database, sizeof(pool->database), "%s", database);
	pool->max_size = cfg->pool.size;
	pool->quota = find_quota(key, key_len, shard, node, pool->max_size);
	if (!pool->quota || !hashmap_put(&w->pools, key, key_len, pool)) {
		free(pool);
		return NULL;
	}
	return pool;
}

static void link_server(pool_t *pool, server_t *s, client_t *c)
{
	/* Paused for its previous client's backpressure, maybe: not for this one. */
	io_resume_read(s->ev_read, &s->read_paused);
	s->state = SERVER_ACTIVE;
	s->client = c;
	s->last_used_ms = net_now_ms();
	c->server = s;
	pool->n_active++;
	atomic_fetch_add(&shard_active[pool->shard], 1);
}

static server_t *pop_idle(pool_t *pool)
{
	server_t *s = pool->idle;
	if (!s)
		return NULL;
	pool->idle = s->next;
	if (pool->idle)
		pool->idle->prev = NULL;
	s->next = s->prev = NULL;
	pool->n_idle--;
	return s;
}

static void remove_idle(pool_t *pool, server_t *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else
		pool->idle = s->next;
	if (s->next)
		s->next->prev = s->prev;
	s->next = s->prev = NULL;
	pool->n_idle--;
}

static void enqueue(pool_t *pool, client_t *c)
{
	c->wait_next = NULL;
	c->wait_prev = pool->wait_tail;
	if (pool->wait_tail)
		pool->wait_tail->wait_next = c;
	else
		pool->wait_head = c;
	pool->wait_tail = c;
	pool->n_waiting++;
	c->wait_start_ms = net_now_ms();
	stats_waiting(pool->shard, pool->node, +1);
}

void pool_cancel_wait(pool_t *pool, client_t *c)
{
	if (!pool)
		return;
	bool queued = c->wait_prev || c->wait_next || pool->wait_head == c;
	if (!queued)
		return;
	if (c->wait_prev)
		c->wait_prev->wait_next = c->wait_next;
	else
		pool->wait_head = c->wait_next;
	if (c->wait_next)
		c->wait_next->wait_prev = c->wait_prev;
	else
		pool->wait_tail = c->wait_prev;
	c->wait_next = c->wait_prev = NULL;
	pool->n_waiting--;
	stats_waiting(pool->shard, pool->node, -1);
	stats_pool_wait(pool->shard, pool->node, (net_now_ms() - c->wait_start_ms) * 1000);
}

static void fail_waiters(pool_t *pool);
static void retry_or_fail(pool_t *pool);

static void set_starving(pool_t *pool, bool starving)
{
	if (pool->starving == starving)
		return;
	pool->starving = starving;
	atomic_fetch_add(&pool->quota->starving, starving ? 1 : -1);
}

/* Opens connections while clients wait and the pool has room. */
static void grow(pool_t *pool)
{
	while (pool->n_waiting > pool->n_connecting) {
		if (atomic_fetch_add(&pool->quota->open, 1) >= pool->max_size) {
			atomic_fetch_sub(&pool->quota->open, 1);
			set_starving(pool, true);
			return;
		}
		server_t *s = server_connect(pool);
		if (!s) {
			atomic_fetch_sub(&pool->quota->open, 1);
			pool->connect_failures++;
			retry_or_fail(pool);
			return;
		}
		pool->n_connecting++;
	}
}

bool pool_acquire(pool_t *pool, client_t *c)
{
	server_t *s = pool->n_waiting == 0 ? pop_idle(pool) : NULL;
	if (s) {
		link_server(pool, s, c);
		return true;
	}
	if (c->state != CLIENT_LOGIN)
		c->state = CLIENT_WAITING;
	enqueue(pool, c);
	grow(pool);
	return false;
}

/* Hands a free server to the first waiting client, or parks it idle. */
static void give(pool_t *pool, server_t *s)
{
	client_t *c = pool->wait_head;
	if (c) {
		pool_cancel_wait(pool, c);
		if (!pool->wait_head)
			set_starving(pool, false);
		link_server(pool, s, c);
		client_on_linked(c);
		return;
	}
	/* Idle servers are read too: a server that speaks now is going away. */
	io_resume_read(s->ev_read, &s->read_paused);
	s->state = SERVER_IDLE;
	s->client = NULL;
	s->next = pool->idle;
	s->prev = NULL;
	if (pool->idle)
		pool->idle->prev = s;
	pool->idle = s;
	pool->n_idle++;
}

void pool_release(server_t *s)
{
	pool_t *pool = s->pool;
	if (s->state == SERVER_ACTIVE || s->state == SERVER_RESETTING)
		pool_active_dec(pool);
	s->client = NULL;
	s->last_used_ms = net_now_ms();
	give(pool, s);
}

void pool_on_server_ready(server_t *s)
{
	pool_t *pool = s->pool;
	pool->n_connecting--;
	pool->connect_failures = 0;
	give(pool, s);
}

int64_t pool_backoff_ms(int failures, uint32_t random)
{
	int64_t ceiling = POOL_BACKOFF_BASE_MS;
	for (int i = 1; i < failures && ceiling < POOL_BACKOFF_CAP_MS; i++)
		ceiling *= 2;
	if (ceiling > POOL_BACKOFF_CAP_MS)
		ceiling = POOL_BACKOFF_CAP_MS;
	return (int64_t)(random % (uint32_t)(ceiling + 1));
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	grow(arg);
}

/*
 * Nothing could serve the waiters after a failed connection attempt: try
 * again after a backoff while attempts remain (a primary's writes have
 * nowhere else to go), else fail them. Waiters of a replica fail at once:
 * their reads move to another node.
 */
static void retry_or_fail(pool_t *pool)
{
	if (pool->n_connecting + pool->n_active + pool->n_idle > 0 || !pool->wait_head)
		return;
	if (pool->node == 0 && pool->connect_failures <= POOL_CONNECT_RETRIES) {
		if (!pool->ev_retry)
			pool->ev_retry = evtimer_new(pool->worker->base, on_retry, pool);
		if (pool->ev_retry && !evtimer_pending(pool->ev_retry, NULL)) {
			uint32_t r = 0;
			RAND_bytes((unsigned char *)&r, sizeof(r));
			int64_t ms = pool_backoff_ms(pool->connect_failures, r);
			log_info("server_connect_retry",
				 "\"node\":\"%s:%d\",\"attempt\":%d,\"delay_ms\":%lld",
				 pool->address.host, pool->address.port, pool->connect_failures + 1,
				 (long long)ms);
			struct timeval tv = io_timeval(ms);
			evtimer_add(pool->ev_retry, &tv);
			return;
		}
	}
	pool->connect_failures = 0;
	fail_waiters(pool);
}

/* Fails every waiting client: nothing is left that could serve them. */
static void fail_waiters(pool_t *pool)
{
	char message[400];
	snprintf(message, sizeof(message), "could not connect to server %s:%d: %s",
		 pool->address.host, pool->address.port,
		 pool->last_error[0] ? pool->last_error : "unknown error");
	while (pool->wait_head) {
		client_t *c = pool->wait_head;
		pool_cancel_wait(pool, c);
		client_on_pool_error(c, "08006", message);
	}
}

void pool_on_server_closed(server_t *s, server_state_t was)
{
	pool_t *pool = s->pool;
	if (was != SERVER_CLOSED)
		atomic_fetch_sub(&pool->quota->open, 1);
	switch (was) {
	case SERVER_IDLE:
		remove_idle(pool, s);
		break;
	case SERVER_CONNECTING:
	case SERVER_LOGIN:
		pool->n_connecting--;
		pool->connect_failures++;
		retry_or_fail(pool);
		return;
	case SERVER_ACTIVE:
	case SERVER_RESETTING:
		pool_active_dec(pool);
		break;
	case SERVER_CLOSED:
		return;
	}
	grow(pool);
}

void pool_resize(pool_t *pool, int size)
{
	if (pool->max_size == size)
		return;
	pool->max_size = size;
	atomic_store(&pool->quota->max, size);
	if (pool->wait_head)
		grow(pool); /* room for waiters now, maybe */
}

void pool_janitor(pool_t *pool, int64_t now_ms, int64_t wait_ms)
{
	while (wait_ms > 0 && pool->wait_head && now_ms - pool->wait_head->wait_start_ms >= wait_ms) {
		client_t *c = pool->wait_head;
		pool_cancel_wait(pool, c);
		log_warning("pool_wait_timeout", "\"client\":%llu,\"node\":\"%s:%d\",\"waited_ms\":%lld",
			    (unsigned long long)c->id, pool->address.host, pool->address.port,
			    (long long)(now_ms - c->wait_start_ms));
		client_on_pool_error(c, "53300",
				     "no server connection available within timeouts.wait");
	}
	if (!pool->wait_head)
		set_starving(pool, false);
	/* pool.size shrank (RELOAD): idle connections over it close. */
	while (pool->idle && atomic_load(&pool->quota->open) > pool->max_size)
		server_close(pool->idle, "pool.size shrank");
	/* Another worker's clients wait for a slot this worker leaves idle. */
	if (!pool->starving && pool->idle && atomic_load(&pool->quota->starving) > 0)
		server_close(pool->idle, "moved to a worker with waiting clients");
	/* This worker's waiters may fit now that another worker gave one up. */
	if (pool->starving)
		grow(pool);
}

static void free_pool(const void *key, size_t len, void *value, void *arg)
{
	(void)key;
	(void)len;
	(void)arg;
	pool_t *pool = value;
	if (pool->ev_retry)
		event_free(pool->ev_retry);
	params_free(&pool->welcome);
	free(pool);
}

void pool_free_all(worker_t *w)
{
	hashmap_foreach(&w->pools, free_pool, NULL);
	hashmap_destroy(&w->pools);
}
