/*
 * stats.c - the proxy's counters (see stats.h for the contract).
 *
 * Layout: one stats_slot_t per (shard, node), shard-major, sized at
 * stats_init(). Every counter is a C11 atomic updated with relaxed order:
 * readers want eventually-consistent numbers, not a snapshot, so no
 * operation here orders anything but itself.
 *
 * The last-minute ring. Each node keeps 60 one-second histograms; a
 * statement finishing at monotonic second s goes to ring[s % 60]. Instead of
 * clearing a slot when its second comes round again (which would race with
 * writers of the new second and lose counts), every counter word in the ring
 * carries its own second: the high 32 bits are the second (+1, so 0 means
 * "never written"), the low 32 bits the count. A writer compare-and-swaps
 * the word: same second -> count + 1, older second -> (s, 1). A reader
 * counts a word only when its second is within the last 60. So recording is
 * lock-free and exact, and stale slots need no janitor.
 *
 * Latency buckets of the ring are log-spaced, 10 per decade from 10 us to
 * 100 s (each 1.26 times wider than the previous), plus one below 10 us and
 * one at or above 100 s. A percentile is interpolated linearly inside its
 * bucket by rank (see percentile_us()), so its error is below one bucket
 * width (26 %); in the open-ended top bucket it is reported as 100 s.
 */
#include "core/stats.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "health/health.h"
#include "pool/pool.h"

#define RING_SECONDS       60
#define LATENCY_PER_DECADE 10
#define LATENCY_DECADES    7 /* 10 us .. 100 s */
#define LATENCY_BOUNDS     (LATENCY_PER_DECADE * LATENCY_DECADES + 1)
/* [0, 10 us), one per pair of consecutive bounds, [100 s, inf) */
#define LATENCY_BUCKETS (LATENCY_BOUNDS + 1)
#define LATENCY_MIN_US  10

/* SQLSTATE classes: two characters of [0-9A-Z]; anything else is "other". */
#define CLASS_ALPHABET 36
#define CLASS_OTHER    (CLASS_ALPHABET * CLASS_ALPHABET)
#define ERROR_CLASSES  (CLASS_OTHER + 1)

/* The cumulative Prometheus histogram: le bounds in microseconds. */
static const uint64_t le_bounds_us[] = {500,    1000,   2500,   5000,    10000,   25000,   50000,
                                        100000, 250000, 500000, 1000000, 5000000, 30000000};
static const char *const le_labels[] = {"0.0005", "0.001", "0.0025", "0.005", "0.01",
                                        "0.025",  "0.05",  "0.1",    "0.25",  "0.5",
                                        "1",      "5",     "30"};
#define LE_BOUNDS ((int)(sizeof(le_bounds_us) / sizeof(le_bounds_us[0])))

typedef enum { ROLE_REPLICA, ROLE_PRIMARY, ROLES } stats_role_t;

static const char *const role_names[ROLES] = {"replica", "primary"};

/* One second of one node: tagged words (second << 32 | count). */
typedef struct {
	_Atomic uint64_t latency[LATENCY_BUCKETS];
	_Atomic uint64_t errors;
} stats_second_t;

/* Cumulative counters of a node while serving as one role. */
typedef struct {
	_Atomic uint64_t statements;
	_Atomic uint64_t sum_us;
	_Atomic uint64_t le[LE_BOUNDS + 1]; /* per bucket, not cumulative; last = +Inf */
} stats_by_role_t;

typedef struct {
	stats_second_t ring[RING_SECONDS];
	stats_by_role_t roles[ROLES];
	_Atomic uint64_t errors;
	_Atomic uint64_t error_classes[ERROR_CLASSES];
	_Atomic uint64_t waits;
	_Atomic uint64_t wait_us;
	_Atomic uint64_t max_wait_us;
	atomic_int waiting;
} stats_slot_t;

/* Written by stats_init()/stats_free() only, before workers start and after
 * they stop; read by everybody. */
static struct {
	int n_shards;
	int *first;   /* index in slots of each shard's node 0 */
	int *n_nodes; /* nodes of each shard */
	stats_slot_t *slots;
	uint64_t latency_bounds_us[LATENCY_BOUNDS];
} table;

static _Atomic uint64_t route_cache_hits, route_cache_misses;
static atomic_int clients, rebalance_waiting;
static _Atomic int64_t rebalance_version;
static int64_t (*_Atomic clock_override)(void);

#define RELAXED memory_order_relaxed

static void add_relaxed(_Atomic uint64_t *counter, uint64_t n)
{
	atomic_fetch_add_explicit(counter, n, RELAXED);
}

static uint64_t load_relaxed(_Atomic uint64_t *counter)
{
	return atomic_load_explicit(counter, RELAXED);
}

/* The ring's clock: CLOCK_MONOTONIC seconds + 1 (0 tags an unused word). */
static uint32_t now_second(void)
{
	int64_t (*override)(void) = atomic_load_explicit(&clock_override, RELAXED);
	if (override)
		return (uint32_t)(override() + 1);
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint32_t)(ts.tv_sec + 1);
}

void stats_set_clock(int64_t (*now_seconds)(void))
{
	atomic_store_explicit(&clock_override, now_seconds, RELAXED);
}

/* The slot of (shard, node), or NULL when out of range or not initialised. */
static stats_slot_t *find_slot(int shard, int node)
{
	if (!table.slots || shard < 0 || shard >= table.n_shards || node < 0 ||
	    node >= table.n_nodes[shard])
		return NULL;
	return &table.slots[table.first[shard] + node];
}

bool stats_init(const config_t *config)
{
	stats_free();
	if (!config || config->n_shards < 0)
		return false;
	int n_shards = config->n_shards;
	int total = 0;
	int *first = calloc((size_t)n_shards + 1, sizeof(int));
	int *n_nodes = calloc((size_t)n_shards + 1, sizeof(int));
	if (!first || !n_nodes) {
		free(first);
		free(n_nodes);
		return false;
	}
	for (int i = 0; i < n_shards; i++) {
		first[i] = total;
		n_nodes[i] = 1 + config->shards[i].n_replicas;
		total += n_nodes[i];
	}
	/* calloc: a zero word is a valid empty counter, and untouched pages of
	 * large tables cost nothing. */
	stats_slot_t *slots = calloc((size_t)total + 1, sizeof(stats_slot_t));
	if (!slots) {
		free(first);
		free(n_nodes);
		return false;
	}
	for (int i = 0; i < LATENCY_BOUNDS; i++)
		table.latency_bounds_us[i] =
		    (uint64_t)llround(LATENCY_MIN_US * pow(10.0, (double)i / LATENCY_PER_DECADE));
	table.n_shards = n_shards;
	table.first = first;
	table.n_nodes = n_nodes;
	table.slots = slots;
	return true;
}

void stats_free(void)
{
	free(table.slots);
	free(table.first);
	free(table.n_nodes);
	table.slots = NULL;
	table.first = NULL;
	table.n_nodes = NULL;
	table.n_shards = 0;
	atomic_store(&route_cache_hits, 0);
	atomic_store(&route_cache_misses, 0);
	atomic_store(&clients, 0);
	atomic_store(&rebalance_waiting, 0);
	atomic_store(&rebalance_version, 0);
}

/* Ring bucket of a duration: 0 below 10 us, k for [bound[k-1], bound[k]),
 * LATENCY_BOUNDS at or above 100 s. Binary search over exact integers. */
static int latency_bucket(uint64_t us)
{
	int lo = 0, hi = LATENCY_BOUNDS; /* answer in [lo, hi] */
	while (lo < hi) {
		int mid = (lo + hi) / 2;
		if (us < table.latency_bounds_us[mid])
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

/* Prometheus bucket: the first le bound >= us, LE_BOUNDS for +Inf. */
static int le_bucket(uint64_t us)
{
	int i = 0;
	while (i < LE_BOUNDS && us > le_bounds_us[i])
		i++;
	return i;
}

static int class_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'Z')
		return 10 + (c - 'A');
	return -1;
}

static int error_class(const char *sqlstate)
{
	int a = class_digit(sqlstate[0]);
	int b = a < 0 ? -1 : class_digit(sqlstate[1]);
	return b < 0 ? CLASS_OTHER : a * CLASS_ALPHABET + b;
}

static void error_class_name(int index, char out[6])
{
	static const char digits[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
	if (index == CLASS_OTHER) {
		memcpy(out, "other", 6);
		return;
	}
	out[0] = digits[index / CLASS_ALPHABET];
	out[1] = digits[index % CLASS_ALPHABET];
	out[2] = '\0';
}

/* Counts one event in a tagged ring word (see the file comment). A word
 * already at the count limit stays there rather than spill into its tag. */
static void tagged_increment(_Atomic uint64_t *word, uint32_t second)
{
	uint64_t old = atomic_load_explicit(word, RELAXED);
	for (;;) {
		uint32_t tag = (uint32_t)(old >> 32);
		uint64_t next;
		if (tag >= second) {
			if ((uint32_t)old == UINT32_MAX)
				return;
			next = old + 1;
		} else {
			next = ((uint64_t)second << 32) | 1;
		}
		if (atomic_compare_exchange_weak_explicit(word, &old, next, RELAXED, RELAXED))
			return;
	}
}

/* The count of a tagged word if it belongs to the minute ending at now. */
static uint64_t tagged_count(_Atomic uint64_t *word, uint32_t now)
{
	uint64_t value = atomic_load_explicit(word, RELAXED);
	uint32_t tag = (uint32_t)(value >> 32);
	if (tag == 0 || tag > now || now - tag >= RING_SECONDS)
		return 0;
	return (uint32_t)value;
}

void stats_statement(int shard, int node, bool role_primary, int64_t duration_us,
                     const char *sqlstate)
{
	stats_slot_t *slot = find_slot(shard, node);
	if (!slot)
		return;
	uint64_t us = duration_us > 0 ? (uint64_t)duration_us : 0;
	stats_by_role_t *role = &slot->roles[role_primary ? ROLE_PRIMARY : ROLE_REPLICA];
	add_relaxed(&role->statements, 1);
	add_relaxed(&role->sum_us, us);
	add_relaxed(&role->le[le_bucket(us)], 1);

	uint32_t now = now_second();
	stats_second_t *second = &slot->ring[now % RING_SECONDS];
	tagged_increment(&second->latency[latency_bucket(us)], now);
	if (sqlstate) {
		add_relaxed(&slot->errors, 1);
		add_relaxed(&slot->error_classes[error_class(sqlstate)], 1);
		tagged_increment(&second->errors, now);
	}
}

void stats_pool_wait(int shard, int node, int64_t wait_us)
{
	stats_slot_t *slot = find_slot(shard, node);
	if (!slot)
		return;
	uint64_t us = wait_us > 0 ? (uint64_t)wait_us : 0;
	add_relaxed(&slot->waits, 1);
	add_relaxed(&slot->wait_us, us);
	uint64_t max = atomic_load_explicit(&slot->max_wait_us, RELAXED);
	while (us > max && !atomic_compare_exchange_weak_explicit(&slot->max_wait_us, &max, us,
	                                                          RELAXED, RELAXED))
		;
}

void stats_waiting(int shard, int node, int delta)
{
	stats_slot_t *slot = find_slot(shard, node);
	if (slot)
		atomic_fetch_add_explicit(&slot->waiting, delta, RELAXED);
}

void stats_route_cache(bool hit)
{
	add_relaxed(hit ? &route_cache_hits : &route_cache_misses, 1);
}

void stats_clients(int delta)
{
	atomic_fetch_add_explicit(&clients, delta, RELAXED);
}

void stats_rebalance_waiting(int delta)
{
	atomic_fetch_add_explicit(&rebalance_waiting, delta, RELAXED);
}

void stats_rebalance_version(int64_t version)
{
	atomic_store_explicit(&rebalance_version, version, RELAXED);
}

/* Lower and upper bound (us) of ring bucket k; the top one is open. */
static void latency_range(int k, double *lo, double *hi)
{
	*lo = k == 0 ? 0.0 : (double)table.latency_bounds_us[k - 1];
	*hi = k == LATENCY_BOUNDS ? *lo : (double)table.latency_bounds_us[k];
}

/*
 * The q-quantile (0 < q <= 1) of a histogram of n statements: the
 * statement of rank r = ceil(q * n) (nearest-rank, as PostgreSQL's
 * percentile_disc) lies in the bucket where the running count reaches r;
 * being the i-th of that bucket's c statements, it is placed at
 * lo + (hi - lo) * i / c, as if the bucket's statements were spread evenly.
 */
static double percentile_us(const uint64_t counts[LATENCY_BUCKETS], uint64_t n, double q)
{
	if (n == 0)
		return 0.0;
	uint64_t rank = (uint64_t)ceil(q * (double)n);
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	uint64_t below = 0;
	for (int k = 0; k < LATENCY_BUCKETS; k++) {
		if (below + counts[k] >= rank) {
			double lo, hi;
			latency_range(k, &lo, &hi);
			return lo + (hi - lo) * (double)(rank - below) / (double)counts[k];
		}
		below += counts[k];
	}
	return (double)table.latency_bounds_us[LATENCY_BOUNDS - 1];
}

bool stats_node(int shard, int node, stats_node_t *out)
{
	stats_slot_t *slot = find_slot(shard, node);
	if (!slot)
		return false;
	stats_node_t r = {0};
	uint64_t counts[LATENCY_BUCKETS] = {0};
	uint32_t now = now_second();
	for (int s = 0; s < RING_SECONDS; s++) {
		stats_second_t *second = &slot->ring[s];
		for (int k = 0; k < LATENCY_BUCKETS; k++)
			counts[k] += tagged_count(&second->latency[k], now);
		r.errors += tagged_count(&second->errors, now);
	}
	for (int k = 0; k < LATENCY_BUCKETS; k++)
		r.statements += counts[k];
	r.p50_ms = percentile_us(counts, r.statements, 0.50) / 1000.0;
	r.p95_ms = percentile_us(counts, r.statements, 0.95) / 1000.0;
	r.p99_ms = percentile_us(counts, r.statements, 0.99) / 1000.0;
	for (int i = 0; i < ROLES; i++)
		r.total_statements += load_relaxed(&slot->roles[i].statements);
	r.total_errors = load_relaxed(&slot->errors);
	r.total_waits = load_relaxed(&slot->waits);
	r.total_wait_us = load_relaxed(&slot->wait_us);
	r.max_wait_us = load_relaxed(&slot->max_wait_us);
	r.waiting = atomic_load_explicit(&slot->waiting, RELAXED);
	*out = r;
	return true;
}

/* ---- Prometheus text exposition, version 0.0.4 ---- */

typedef struct {
	char *data;
	size_t len, cap;
	bool failed; /* out of memory: the result is dropped */
} text_t;

static void text_printf(text_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void text_printf(text_t *t, const char *fmt, ...)
{
	if (t->failed)
		return;
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(t->data + t->len, t->cap - t->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			t->failed = true;
			return;
		}
		if ((size_t)n < t->cap - t->len) {
			t->len += (size_t)n;
			return;
		}
		size_t cap = t->cap * 2;
		while (cap - t->len <= (size_t)n)
			cap *= 2;
		char *data = realloc(t->data, cap);
		if (!data) {
			t->failed = true;
			return;
		}
		t->data = data;
		t->cap = cap;
	}
}

/* A label value with \, " and newline escaped as the format requires. */
static void text_label_value(text_t *t, const char *value)
{
	for (const char *p = value; *p; p++) {
		if (*p == '\\')
			text_printf(t, "\\\\");
		else if (*p == '"')
			text_printf(t, "\\\"");
		else if (*p == '\n')
			text_printf(t, "\\n");
		else
			text_printf(t, "%c", *p);
	}
}

static void family(text_t *t, const char *name, const char *type, const char *help)
{
	text_printf(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Everything printed about one node, gathered once so that every family
 * can be printed in one contiguous group, as the format requires. */
typedef struct {
	int shard, node;
	char name[16]; /* "primary", "replica1", ... */
	const cfg_address_t *address;
	uint64_t statements[ROLES];
	stats_node_t stats;
	int pool_open, pool_max;
	bool has_health;
	health_node_t health;
} node_view_t;

/* Starts a sample: name{shard="..",node=".." (labels left open). */
static void node_sample(text_t *t, const char *name, const config_t *config, const node_view_t *v)
{
	text_printf(t, "%s{shard=\"", name);
	text_label_value(t, config->shards[v->shard].name);
	text_printf(t, "\",node=\"%s\"", v->name);
}

static void gather_node(node_view_t *v, const health_snapshot_t *snapshot)
{
	stats_slot_t *slot = find_slot(v->shard, v->node);
	if (slot && stats_node(v->shard, v->node, &v->stats)) {
		for (int r = 0; r < ROLES; r++)
			v->statements[r] = load_relaxed(&slot->roles[r].statements);
	}
	pool_node_usage(v->shard, v->node, &v->pool_open, &v->pool_max);
	const health_node_t *h =
	    snapshot ? health_snapshot_node(snapshot, v->shard, v->node) : NULL;
	if (h) {
		v->has_health = true;
		v->health = *h;
	}
}

static int breaker_gauge(breaker_state_t state)
{
	switch (state) {
	case BREAKER_CLOSED:
		return 0;
	case BREAKER_HALF_OPEN:
		return 1;
	case BREAKER_OPEN:
		return 2;
	}
	return 2;
}

static void print_node_families(text_t *t, const config_t *config, const node_view_t *views, int n)
{
	family(t, "shardgate_node_info", "gauge", "Address of each node; always 1.");
	for (int i = 0; i < n; i++) {
		node_sample(t, "shardgate_node_info", config, &views[i]);
		text_printf(t, ",address=\"");
		text_label_value(t, views[i].address->host);
		text_printf(t, ":%d\"} 1\n", views[i].address->port);
	}

	family(t, "shardgate_statements_total", "counter",
	       "Statements finished on the node, by the role it served them in.");
	for (int i = 0; i < n; i++) {
		const node_view_t *v = &views[i];
		int home = v->node == 0 ? ROLE_PRIMARY : ROLE_REPLICA;
		for (int r = 0; r < ROLES; r++) {
			/* The configured role always, the other once it happened. */
			if (r != home && v->statements[r] == 0)
				continue;
			node_sample(t, "shardgate_statements_total", config, v);
			text_printf(t, ",role=\"%s\"} %" PRIu64 "\n", role_names[r],
			            v->statements[r]);
		}
	}

	family(t, "shardgate_errors_total", "counter",
	       "Statements that ended in an ErrorResponse, by SQLSTATE class.");
	for (int i = 0; i < n; i++) {
		stats_slot_t *slot = find_slot(views[i].shard, views[i].node);
		for (int c = 0; slot && c < ERROR_CLASSES; c++) {
			uint64_t errors = load_relaxed(&slot->error_classes[c]);
			if (errors == 0)
				continue;
			char class_name[6];
			error_class_name(c, class_name);
			node_sample(t, "shardgate_errors_total", config, &views[i]);
			text_printf(t, ",class=\"%s\"} %" PRIu64 "\n", class_name, errors);
		}
	}

	family(t, "shardgate_pool_waits_total", "counter",
	       "Times a client waited for a server connection of the node.");
	for (int i = 0; i < n; i++) {
		node_sample(t, "shardgate_pool_waits_total", config, &views[i]);
		text_printf(t, "} %" PRIu64 "\n", views[i].stats.total_waits);
	}
	family(t, "shardgate_pool_wait_seconds_total", "counter",
	       "Time clients spent waiting for a server connection of the node.");
	for (int i = 0; i < n; i++) {
		node_sample(t, "shardgate_pool_wait_seconds_total", config, &views[i]);
		text_printf(t, "} %.6f\n", (double)views[i].stats.total_wait_us / 1e6);
	}
	family(t, "shardgate_pool_wait_max_seconds", "gauge",
	       "Longest wait for a server connection of the node since start.");
	for (int i = 0; i < n; i++) {
		node_sample(t, "shardgate_pool_wait_max_seconds", config, &views[i]);
		text_printf(t, "} %.6f\n", (double)views[i].stats.max_wait_us / 1e6);
	}
	family(t, "shardgate_pool_waiting", "gauge",
	       "Clients waiting now for a server connection of the node.");
	for (int i = 0; i < n; i++) {
		node_sample(t, "shardgate_pool_waiting", config, &views[i]);
		text_printf(t, "} %d\n", views[i].stats.waiting);
	}
	family(t, "shardgate_pool_connections", "gauge",
	       "Open server connections to the node, over every user and database.");
	for (int i = 0; i < n; i++) {
		node_sample(t, "shardgate_pool_connections", config, &views[i]);
		text_printf(t, "} %d\n", views[i].pool_open);
	}
	family(t, "shardgate_pool_connections_max", "gauge",
	       "Sum of the pool.size limits of the node's pools (0 before the first).");
	for (int i = 0; i < n; i++) {
		node_sample(t, "shardgate_pool_connections_max", config, &views[i]);
		text_printf(t, "} %d\n", views[i].pool_max);
	}

	/* The monitor's view; nodes it does not know (no monitor) are left
	 * out rather than reported as down. */
	family(t, "shardgate_node_up", "gauge",
	       "1 when the monitor's last check of the node passed, else 0.");
	for (int i = 0; i < n; i++) {
		if (!views[i].has_health)
			continue;
		node_sample(t, "shardgate_node_up", config, &views[i]);
		text_printf(t, "} %d\n", views[i].health.state == NODE_UP ? 1 : 0);
	}
	family(t, "shardgate_breaker_state", "gauge",
	       "Circuit breaker of the node: 0 closed, 1 half-open, 2 open.");
	for (int i = 0; i < n; i++) {
		if (!views[i].has_health)
			continue;
		node_sample(t, "shardgate_breaker_state", config, &views[i]);
		text_printf(t, "} %d\n", breaker_gauge(views[i].health.breaker));
	}
	family(t, "shardgate_replica_lag_bytes", "gauge",
	       "WAL the node has yet to replay behind its shard's primary (0 for a primary).");
	for (int i = 0; i < n; i++) {
		if (!views[i].has_health || views[i].health.lag_bytes < 0)
			continue;
		node_sample(t, "shardgate_replica_lag_bytes", config, &views[i]);
		text_printf(t, "} %" PRId64 "\n", views[i].health.lag_bytes);
	}
	family(t, "shardgate_replica_lag_seconds", "gauge",
	       "How long ago the shard's primary passed the node's replay position.");
	for (int i = 0; i < n; i++) {
		if (!views[i].has_health || views[i].health.lag_ms < 0)
			continue;
		node_sample(t, "shardgate_replica_lag_seconds", config, &views[i]);
		text_printf(t, "} %.3f\n", (double)views[i].health.lag_ms / 1000.0);
	}
}

/* Per shard and role: the nodes' cumulative histograms summed, printed
 * cumulatively; _count is the +Inf bucket so the two always agree. */
static void print_duration_histogram(text_t *t, const config_t *config)
{
	const char *name = "shardgate_statement_duration_seconds";
	family(t, name, "histogram", "Duration of statements, per shard and role served.");
	for (int s = 0; s < config->n_shards; s++) {
		const cfg_shard_t *shard = &config->shards[s];
		for (int r = ROLES - 1; r >= 0; r--) {
			uint64_t buckets[LE_BOUNDS + 1] = {0};
			uint64_t sum_us = 0;
			for (int node = 0; node <= shard->n_replicas; node++) {
				stats_slot_t *slot = find_slot(s, node);
				if (!slot)
					continue;
				for (int b = 0; b <= LE_BOUNDS; b++)
					buckets[b] += load_relaxed(&slot->roles[r].le[b]);
				sum_us += load_relaxed(&slot->roles[r].sum_us);
			}
			uint64_t count = 0;
			for (int b = 0; b <= LE_BOUNDS; b++)
				count += buckets[b];
			/* A shard without replicas never serves as replica. */
			if (r == ROLE_REPLICA && shard->n_replicas == 0 && count == 0)
				continue;
			uint64_t cumulative = 0;
			for (int b = 0; b <= LE_BOUNDS; b++) {
				cumulative += buckets[b];
				text_printf(t, "%s_bucket{shard=\"", name);
				text_label_value(t, shard->name);
				text_printf(t, "\",role=\"%s\",le=\"%s\"} %" PRIu64 "\n",
				            role_names[r], b < LE_BOUNDS ? le_labels[b] : "+Inf",
				            cumulative);
			}
			text_printf(t, "%s_sum{shard=\"", name);
			text_label_value(t, shard->name);
			text_printf(t, "\",role=\"%s\"} %.6f\n", role_names[r],
			            (double)sum_us / 1e6);
			text_printf(t, "%s_count{shard=\"", name);
			text_label_value(t, shard->name);
			text_printf(t, "\",role=\"%s\"} %" PRIu64 "\n", role_names[r], count);
		}
	}
}

static void print_globals(text_t *t)
{
	family(t, "shardgate_route_cache_hits_total", "counter",
	       "Routing decisions answered from the statement-shape cache.");
	text_printf(t, "shardgate_route_cache_hits_total %" PRIu64 "\n",
	            load_relaxed(&route_cache_hits));
	family(t, "shardgate_route_cache_misses_total", "counter",
	       "Routing decisions that had to analyse the statement.");
	text_printf(t, "shardgate_route_cache_misses_total %" PRIu64 "\n",
	            load_relaxed(&route_cache_misses));
	family(t, "shardgate_clients", "gauge", "Clients logged in now.");
	text_printf(t, "shardgate_clients %d\n", atomic_load_explicit(&clients, RELAXED));
	family(t, "shardgate_rebalance_waiting", "gauge",
	       "Statements held back by a rebalance cut-over now.");
	text_printf(t, "shardgate_rebalance_waiting %d\n",
	            atomic_load_explicit(&rebalance_waiting, RELAXED));
	family(t, "shardgate_rebalance_map_version", "gauge", "Version of the shard map in use.");
	text_printf(t, "shardgate_rebalance_map_version %" PRId64 "\n",
	            atomic_load_explicit(&rebalance_version, RELAXED));
}

char *stats_prometheus(const config_t *config)
{
	int n = 0;
	for (int s = 0; s < config->n_shards; s++)
		n += 1 + config->shards[s].n_replicas;
	node_view_t *views = calloc((size_t)n + 1, sizeof(node_view_t));
	text_t t = {.data = malloc(16384), .cap = 16384};
	if (!views || !t.data) {
		free(views);
		free(t.data);
		return NULL;
	}
	t.data[0] = '\0';

	const health_snapshot_t *snapshot = health_acquire();
	int i = 0;
	for (int s = 0; s < config->n_shards; s++) {
		const cfg_shard_t *shard = &config->shards[s];
		for (int node = 0; node <= shard->n_replicas; node++, i++) {
			node_view_t *v = &views[i];
			v->shard = s;
			v->node = node;
			if (node == 0)
				snprintf(v->name, sizeof(v->name), "primary");
			else
				snprintf(v->name, sizeof(v->name), "replica%d", node);
			v->address = node == 0 ? &shard->primary.address
			                       : &shard->replicas[node - 1].address;
			gather_node(v, snapshot);
		}
	}
	if (snapshot)
		health_release(snapshot);

	print_node_families(&t, config, views, n);
	print_duration_histogram(&t, config);
	print_globals(&t);
	free(views);
	if (t.failed) {
		free(t.data);
		return NULL;
	}
	return t.data;
}
