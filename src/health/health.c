/*
 * health.c - the node health monitor thread and its snapshots (see health.h).
 *
 * The monitor thread owns everything in monitor_t: libpq connections,
 * breakers, LSN histories. Other threads see only published snapshots (read
 * only) and the passive counters (atomics). Snapshots are reclaimed with a
 * reference count plus a one-counter grace period, described above
 * health_acquire().
 */
#include "health/health.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"

/*
 * One query for every node, whatever its configured role: the role is what
 * the node answers. pg_current_wal_lsn() raises an error during recovery, so
 * it is only evaluated when not in recovery (CASE evaluates lazily and the
 * function is volatile, so it is never folded at plan time). On a primary the
 * replay/receive functions return NULL (or the last recovery's position).
 */
static const char health_check_sql[] =
    "select pg_is_in_recovery(),"
    " case when pg_is_in_recovery() then null else pg_current_wal_lsn() end,"
    " pg_last_wal_replay_lsn(), pg_last_wal_receive_lsn()";

/* A check that has not finished after this many intervals has failed. */
#define CHECK_TIMEOUT_INTERVALS 4

/* ---------------------------------------------------------------------- */
/* Pure helpers                                                            */
/* ---------------------------------------------------------------------- */

const char *node_state_name(node_state_t state)
{
	switch (state) {
	case NODE_UNKNOWN:
		return "unknown";
	case NODE_UP:
		return "up";
	case NODE_DOWN:
		return "down";
	}
	return "invalid";
}

/* Parses 1 to 8 hex digits ending at `stop`; returns the end or NULL. */
static const char *parse_hex32(const char *p, char stop, uint32_t *out)
{
	uint32_t value = 0;
	int digits = 0;

	for (; *p != stop; p++, digits++) {
		int d;
		if (*p >= '0' && *p <= '9')
			d = *p - '0';
		else if (*p >= 'a' && *p <= 'f')
			d = *p - 'a' + 10;
		else if (*p >= 'A' && *p <= 'F')
			d = *p - 'A' + 10;
		else
			return NULL;
		if (digits == 8)
			return NULL;
		value = value << 4 | (uint32_t)d;
	}
	if (digits == 0)
		return NULL;
	*out = value;
	return p;
}

/* The pg_lsn output format of PostgreSQL's pg_lsn_out(): "%X/%X". */
bool health_parse_lsn(const char *text, uint64_t *out_lsn)
{
	uint32_t high, low;
	const char *p;

	if (!text)
		return false;
	p = parse_hex32(text, '/', &high);
	if (!p)
		return false;
	if (!parse_hex32(p + 1, '\0', &low))
		return false;
	*out_lsn = (uint64_t)high << 32 | low;
	return true;
}

void health_history_reset(health_lsn_history_t *history)
{
	history->start = 0;
	history->count = 0;
}

void health_history_add(health_lsn_history_t *history, int64_t at_ms, uint64_t lsn)
{
	if (history->count > 0) {
		int newest = (history->start + history->count - 1) % HEALTH_LSN_HISTORY;
		if (lsn == history->samples[newest].lsn)
			return;
		if (lsn < history->samples[newest].lsn)
			health_history_reset(history);
	}
	if (history->count == HEALTH_LSN_HISTORY) {
		history->start = (history->start + 1) % HEALTH_LSN_HISTORY;
		history->count--;
	}
	history->samples[(history->start + history->count) % HEALTH_LSN_HISTORY] =
	    (health_lsn_sample_t){.at_ms = at_ms, .lsn = lsn};
	history->count++;
}

int64_t health_lag_bytes(uint64_t primary_lsn, uint64_t replay_lsn)
{
	uint64_t diff;

	if (replay_lsn >= primary_lsn)
		return 0;
	diff = primary_lsn - replay_lsn;
	return diff > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)diff;
}

/*
 * Samples are in increasing LSN order, so the first one above replay_lsn is
 * the earliest moment the primary was seen holding WAL the replica has not
 * replayed. Its age is the lag; an idle primary adds no samples, so a replica
 * that has replayed the newest sample has lag 0 however old that sample is.
 */
int64_t health_lag_ms(const health_lsn_history_t *history, uint64_t replay_lsn, int64_t now_ms)
{
	int newest;

	if (history->count == 0)
		return -1;
	newest = (history->start + history->count - 1) % HEALTH_LSN_HISTORY;
	if (replay_lsn >= history->samples[newest].lsn)
		return 0;
	for (int i = 0; i < history->count; i++) {
		const health_lsn_sample_t *sample =
		    &history->samples[(history->start + i) % HEALTH_LSN_HISTORY];
		if (sample->lsn > replay_lsn)
			return now_ms > sample->at_ms ? now_ms - sample->at_ms : 0;
	}
	return 0;
}

/* lag * 2 < bound without overflow: lag < ceil(bound / 2). */
static bool below_half(int64_t lag, int64_t bound)
{
	return bound <= 0 || lag < bound / 2 + bound % 2;
}

bool health_lag_eligible(bool was_eligible, int64_t lag_bytes, int64_t lag_ms,
                         int64_t max_lag_bytes, int64_t max_lag_ms)
{
	if (was_eligible)
		return !((max_lag_bytes > 0 && lag_bytes > max_lag_bytes) ||
		         (max_lag_ms > 0 && lag_ms > max_lag_ms));
	return below_half(lag_bytes, max_lag_bytes) && below_half(lag_ms, max_lag_ms);
}

/* ---------------------------------------------------------------------- */
/* Snapshots: publication and reclamation                                  */
/* ---------------------------------------------------------------------- */

/*
 * A snapshot lives in one allocation: holder, then nodes, then shards.
 * refs counts the readers holding it plus one while it is (or was until the
 * grace period ended) the current snapshot.
 */
typedef struct snapshot_holder {
	_Atomic long refs;
	struct snapshot_holder *next_retired; /* monitor side only */
	health_snapshot_t snapshot;
} snapshot_holder_t;

static _Atomic(snapshot_holder_t *) current_holder;

/* Readers between their load of current_holder and their refs increment. */
static _Atomic long acquiring;

static snapshot_holder_t *holder_of(const health_snapshot_t *snapshot)
{
	return (snapshot_holder_t *)((char *)(uintptr_t)snapshot -
	                             offsetof(snapshot_holder_t, snapshot));
}

static void holder_unref(snapshot_holder_t *holder)
{
	if (atomic_fetch_sub_explicit(&holder->refs, 1, memory_order_acq_rel) == 1)
		free(holder);
}

/*
 * Why this is safe without a lock. The hazard of "load the pointer, then
 * increment its count" is that the publisher swaps the pointer and drops the
 * current-reference in between, freeing the snapshot under the reader. Here
 * a reader announces itself in `acquiring` *before* loading the pointer and
 * leaves only *after* its increment; the publisher, after swapping the
 * pointer, drops the old snapshot's current-reference only once it has seen
 * `acquiring` at 0. All four operations are seq_cst, so they fall in one
 * total order: a reader that loaded the old pointer did so before the swap,
 * so its announcement precedes the publisher's check, which therefore cannot
 * read 0 until that reader has incremented and left (its decrement releases
 * the increment to the publisher's acquire load). A reader that announced
 * after the check loads the new pointer. Once `acquiring` reads 0 after the
 * swap, every reader that can ever hold the old snapshot holds a counted
 * reference, and the last holder_unref() frees it.
 *
 * Readers never wait (three atomic RMWs and a load). The publisher never
 * blocks either: if readers keep `acquiring` above 0 it keeps the old
 * snapshots on a retired list and retries at the next round; only
 * health_stop() waits (yielding) for a zero.
 */
const health_snapshot_t *health_acquire(void)
{
	snapshot_holder_t *holder;

	atomic_fetch_add(&acquiring, 1);
	holder = atomic_load(&current_holder);
	if (holder)
		atomic_fetch_add_explicit(&holder->refs, 1, memory_order_relaxed);
	atomic_fetch_sub(&acquiring, 1);
	return holder ? &holder->snapshot : NULL;
}

void health_release(const health_snapshot_t *snapshot)
{
	if (snapshot)
		holder_unref(holder_of(snapshot));
}

const health_node_t *health_snapshot_node(const health_snapshot_t *snapshot, int shard, int node)
{
	const health_shard_t *entry;

	if (!snapshot || shard < 0 || shard >= snapshot->n_shards)
		return NULL;
	entry = &snapshot->shards[shard];
	if (node < 0 || node >= entry->n_nodes)
		return NULL;
	return &snapshot->nodes[entry->first + node];
}

bool health_node_allowed(const health_snapshot_t *snapshot, int shard, int node)
{
	const health_node_t *entry = health_snapshot_node(snapshot, shard, node);

	return !entry || entry->breaker == BREAKER_CLOSED;
}

/* ---------------------------------------------------------------------- */
/* Passive reports                                                          */
/* ---------------------------------------------------------------------- */

typedef struct {
	_Atomic uint32_t successes;
	_Atomic uint32_t failures;
} passive_counts_t;

/* Static so that a worker reporting during start or stop never touches
 * freed memory. */
static passive_counts_t passive_counts[CONFIG_MAX_SHARDS][CONFIG_MAX_REPLICAS + 1];

void health_report(int shard, int node, bool ok)
{
	passive_counts_t *counts;

	if (shard < 0 || shard >= CONFIG_MAX_SHARDS || node < 0 || node > CONFIG_MAX_REPLICAS)
		return;
	counts = &passive_counts[shard][node];
	if (ok)
		atomic_fetch_add_explicit(&counts->successes, 1, memory_order_relaxed);
	else
		atomic_fetch_add_explicit(&counts->failures, 1, memory_order_relaxed);
}

/* ---------------------------------------------------------------------- */
/* The monitor                                                              */
/* ---------------------------------------------------------------------- */

typedef enum { PROBE_IDLE, PROBE_CONNECTING, PROBE_QUERYING } probe_phase_t;

/* One node as the monitor sees it. */
typedef struct {
	int shard;
	int node;
	char host[256];
	char port[16];
	char address_json[600]; /* "host:port", JSON-escaped, for logs */
	PGconn *conn;
	probe_phase_t phase;
	PostgresPollingStatusType connect_wait; /* what PQconnectPoll asked for */
	bool flushing;                          /* the query is not all sent yet */
	bool reused;        /* this check started on a connection kept from before */
	bool retried;       /* already reconnected once within this check */
	int64_t started_ms; /* monotonic */
	int64_t deadline_ms;
	/* this check's answer so far */
	bool got_row;
	bool answer_in_recovery;
	uint64_t answer_wal_lsn, answer_replay_lsn, answer_receive_lsn;
	char answer_error[HEALTH_ERROR_MAX];
	/* outcome of the checks */
	int64_t checked_ms; /* monotonic time of the last successful check */
	breaker_t breaker;
	bool lag_ok; /* hysteresis state of the lag rule */
	health_node_t view;
} probe_t;

typedef struct {
	char name_json[2 * CONFIG_NAME_MAX + 2];
	int first;
	int n_nodes;
	int primary_node; /* acting primary at the last round, -1 if none */
	uint64_t primary_lsn;
	int history_node; /* whose LSNs the history holds, -1 if none */
	health_lsn_history_t history;
} shard_track_t;

typedef struct {
	pthread_t thread;
	int wake_fds[2]; /* health_stop() writes to [1] */
	atomic_bool stopping;

	int64_t interval_ms;
	int64_t connect_ms;
	int64_t max_lag_bytes;
	int64_t max_lag_ms;
	breaker_config_t breaker_config;
	char user[CONFIG_NAME_MAX + 1];
	char *password; /* NULL: none configured */
	char sslmode[16];
	char sslrootcert[1024];
	char connect_timeout[24];

	int n_shards;
	shard_track_t *shards;
	int n_probes;
	probe_t *probes;
	struct pollfd *pollfds; /* n_probes + 1 */
	probe_t **polled;       /* probe of each pollfds entry */

	uint64_t version;
	snapshot_holder_t *retired; /* swapped out, current-reference not dropped */
} monitor_t;

static pthread_mutex_t monitor_lock = PTHREAD_MUTEX_INITIALIZER;
static monitor_t *monitor_instance; /* guarded by monitor_lock */

static int64_t clock_ms(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ms(void)
{
	return clock_ms(CLOCK_MONOTONIC);
}

static int64_t wall_ms(void)
{
	return clock_ms(CLOCK_REALTIME);
}

/* Copies a libpq message without its trailing newline(s). */
static void copy_error(char *out, size_t outlen, const char *message)
{
	size_t n;

	snprintf(out, outlen, "%s", message && *message ? message : "unknown error");
	n = strlen(out);
	while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' '))
		out[--n] = '\0';
}

static void drop_retired(monitor_t *m, bool wait)
{
	for (int spins = 0; m->retired; spins++) {
		if (atomic_load(&acquiring) == 0) {
			snapshot_holder_t *holder = m->retired;
			m->retired = NULL;
			while (holder) {
				snapshot_holder_t *next = holder->next_retired;
				holder_unref(holder);
				holder = next;
			}
			return;
		}
		if (spins >= 64) {
			if (!wait)
				return;
			sched_yield();
		}
	}
}

/* Makes `fresh` (or nothing) the current snapshot; see health_acquire(). */
static void swap_current(monitor_t *m, snapshot_holder_t *fresh, bool wait)
{
	snapshot_holder_t *old = atomic_exchange(&current_holder, fresh);

	if (old) {
		old->next_retired = m->retired;
		m->retired = old;
	}
	drop_retired(m, wait);
}

/* Builds a snapshot from the probes' views; NULL when out of memory. */
static snapshot_holder_t *build_snapshot(monitor_t *m)
{
	size_t nodes_at = sizeof(snapshot_holder_t);
	size_t shards_at = nodes_at + (size_t)m->n_probes * sizeof(health_node_t);
	snapshot_holder_t *holder =
	    malloc(shards_at + (size_t)m->n_shards * sizeof(health_shard_t));
	health_node_t *nodes;
	health_shard_t *shards;

	if (!holder)
		return NULL;
	nodes = (health_node_t *)((char *)holder + nodes_at);
	shards = (health_shard_t *)((char *)holder + shards_at);
	atomic_init(&holder->refs, 1);
	holder->next_retired = NULL;
	for (int i = 0; i < m->n_probes; i++)
		nodes[i] = m->probes[i].view;
	for (int s = 0; s < m->n_shards; s++) {
		shards[s].first = m->shards[s].first;
		shards[s].n_nodes = m->shards[s].n_nodes;
		shards[s].primary_node = m->shards[s].primary_node;
		shards[s].primary_lsn = m->shards[s].primary_lsn;
	}
	holder->snapshot.version = ++m->version;
	holder->snapshot.taken_at_ms = wall_ms();
	holder->snapshot.n_shards = m->n_shards;
	holder->snapshot.shards = shards;
	holder->snapshot.n_nodes = m->n_probes;
	holder->snapshot.nodes = nodes;
	return holder;
}

static void publish(monitor_t *m)
{
	snapshot_holder_t *fresh = build_snapshot(m);

	if (!fresh) {
		log_error("health_publish_failed", "\"error\":\"out of memory\"");
		drop_retired(m, false);
		return;
	}
	swap_current(m, fresh, false);
}

/* The JSON fields every monitor log line carries. */
#define NODE_FIELDS     "\"shard\":%d,\"shard_name\":\"%s\",\"node\":%d,\"addr\":\"%s\""
#define NODE_ARGS(m, p) (p)->shard, (m)->shards[(p)->shard].name_json, (p)->node, (p)->address_json

/* Logs a breaker transition from `before` to its present state. */
static void note_breaker(monitor_t *m, probe_t *p, breaker_state_t before)
{
	breaker_state_t after = p->breaker.state;

	if (after == before)
		return;
	p->view.breaker = after;
	switch (after) {
	case BREAKER_OPEN:
		log_warning("breaker_open", NODE_FIELDS ",\"from\":\"%s\",\"open_for_ms\":%" PRId64,
		            NODE_ARGS(m, p), breaker_state_name(before),
		            p->breaker.config.open_for_ms);
		break;
	case BREAKER_HALF_OPEN:
		log_info("breaker_half_open", NODE_FIELDS, NODE_ARGS(m, p));
		break;
	case BREAKER_CLOSED:
		log_info("breaker_closed", NODE_FIELDS, NODE_ARGS(m, p));
		break;
	}
}

static void probe_close(probe_t *p)
{
	if (p->conn)
		PQfinish(p->conn);
	p->conn = NULL;
	p->phase = PROBE_IDLE;
	p->flushing = false;
}

static void probe_connect(monitor_t *m, probe_t *p, int64_t now);

/* Ends the check as failed: the node is DOWN and its breaker counts it. A
 * connection kept from an earlier check that turns out dead gets one fresh
 * connection attempt first, so a backend restart costs no failure. */
static void probe_fail(monitor_t *m, probe_t *p, const char *message, int64_t now)
{
	char error_json[2 * HEALTH_ERROR_MAX];
	breaker_state_t before = p->breaker.state;
	bool was_down = p->view.state == NODE_DOWN;

	if (p->reused && !p->retried && (!p->conn || PQstatus(p->conn) == CONNECTION_BAD)) {
		log_debug("health_reconnect", NODE_FIELDS, NODE_ARGS(m, p));
		probe_close(p);
		p->retried = true;
		p->reused = false;
		probe_connect(m, p, now);
		return;
	}
	copy_error(p->view.last_error, sizeof(p->view.last_error), message);
	probe_close(p);
	p->view.state = NODE_DOWN;
	p->view.eligible = false;
	p->view.last_check_ms = wall_ms();
	p->view.check_duration_ms = now - p->started_ms;
	breaker_record(&p->breaker, false, now);
	if (!was_down)
		log_warning("node_down", NODE_FIELDS ",\"error\":\"%s\"", NODE_ARGS(m, p),
		            log_json_escape(error_json, sizeof(error_json), p->view.last_error));
	else
		log_debug("node_check_failed", NODE_FIELDS ",\"error\":\"%s\"", NODE_ARGS(m, p),
		          log_json_escape(error_json, sizeof(error_json), p->view.last_error));
	note_breaker(m, p, before);
}

/* Ends the check as passed with the answer gathered in p. */
static void probe_succeed(monitor_t *m, probe_t *p, int64_t now)
{
	breaker_state_t before = p->breaker.state;
	bool was_up = p->view.state == NODE_UP;
	bool was_mismatch = p->view.role_mismatch;
	bool configured_replica = p->node > 0;

	p->phase = PROBE_IDLE;
	p->view.state = NODE_UP;
	p->view.in_recovery = p->answer_in_recovery;
	p->view.role_mismatch = p->answer_in_recovery != configured_replica;
	p->view.wal_lsn = p->answer_in_recovery ? 0 : p->answer_wal_lsn;
	p->view.replay_lsn = p->answer_replay_lsn;
	p->view.receive_lsn = p->answer_receive_lsn;
	p->view.last_error[0] = '\0';
	p->view.last_check_ms = wall_ms();
	p->view.check_duration_ms = now - p->started_ms;
	p->checked_ms = now;
	breaker_record(&p->breaker, true, now);
	if (!was_up)
		log_info("node_up", NODE_FIELDS ",\"in_recovery\":%s", NODE_ARGS(m, p),
		         p->view.in_recovery ? "true" : "false");
	if (p->view.role_mismatch && !was_mismatch)
		log_warning("node_role_mismatch",
		            NODE_FIELDS ",\"configured\":\"%s\",\"reported\":\"%s\"",
		            NODE_ARGS(m, p), configured_replica ? "replica" : "primary",
		            p->view.in_recovery ? "replica" : "primary");
	else if (!p->view.role_mismatch && was_mismatch)
		log_info("node_role_matches", NODE_FIELDS, NODE_ARGS(m, p));
	note_breaker(m, p, before);
}

/* Tries to send whatever libpq still buffers; false after failing the check. */
static bool probe_flush(monitor_t *m, probe_t *p, int64_t now)
{
	int rc = PQflush(p->conn);

	if (rc < 0) {
		probe_fail(m, p, PQerrorMessage(p->conn), now);
		return false;
	}
	p->flushing = rc == 1;
	return true;
}

static void probe_send_query(monitor_t *m, probe_t *p, int64_t now)
{
	p->got_row = false;
	p->answer_error[0] = '\0';
	if (PQsetnonblocking(p->conn, 1) != 0 || !PQsendQuery(p->conn, health_check_sql)) {
		probe_fail(m, p, PQerrorMessage(p->conn), now);
		return;
	}
	p->phase = PROBE_QUERYING;
	p->deadline_ms = now + CHECK_TIMEOUT_INTERVALS * m->interval_ms;
	probe_flush(m, p, now);
}

/* Starts a non-blocking connection (libpq: PQconnectStartParams, then
 * PQconnectPoll as if it had last returned PGRES_POLLING_WRITING). */
static void probe_connect(monitor_t *m, probe_t *p, int64_t now)
{
	const char *keys[12], *values[12];
	int n = 0;

#define PARAM(k, v) (keys[n] = (k), values[n] = (v), n++)
	PARAM("host", p->host);
	PARAM("port", p->port);
	PARAM("user", m->user);
	if (m->password)
		PARAM("password", m->password);
	PARAM("dbname", "postgres");
	PARAM("connect_timeout", m->connect_timeout);
	PARAM("sslmode", m->sslmode);
	if (m->sslrootcert[0]) /* verify-* only, see monitor_new */
		PARAM("sslrootcert", m->sslrootcert);
	PARAM("application_name", "shardgate-health");
#undef PARAM
	keys[n] = NULL;
	values[n] = NULL;

	p->conn = PQconnectStartParams(keys, values, 0);
	p->phase = PROBE_CONNECTING;
	p->connect_wait = PGRES_POLLING_WRITING;
	p->deadline_ms = now + m->connect_ms;
	if (!p->conn) {
		probe_fail(m, p, "out of memory starting a connection", now);
		return;
	}
	if (PQstatus(p->conn) == CONNECTION_BAD)
		probe_fail(m, p, PQerrorMessage(p->conn), now);
}

/* Starts this round's check of p. */
static void probe_begin(monitor_t *m, probe_t *p, int64_t now)
{
	p->started_ms = now;
	p->retried = false;
	if (p->conn && PQstatus(p->conn) != CONNECTION_OK)
		probe_close(p);
	p->reused = p->conn != NULL;
	if (p->reused)
		probe_send_query(m, p, now);
	else
		probe_connect(m, p, now);
}

/* Reads one result row into p's answer. */
static void probe_take_result(probe_t *p, PGresult *result)
{
	const char *lsn_text;

	if (PQresultStatus(result) != PGRES_TUPLES_OK) {
		copy_error(p->answer_error, sizeof(p->answer_error), PQresultErrorMessage(result));
		return;
	}
	if (PQntuples(result) != 1 || PQnfields(result) != 4 || PQgetisnull(result, 0, 0)) {
		snprintf(p->answer_error, sizeof(p->answer_error),
		         "health check returned %d rows of %d columns", PQntuples(result),
		         PQnfields(result));
		return;
	}
	p->answer_in_recovery = strcmp(PQgetvalue(result, 0, 0), "t") == 0;
	p->answer_wal_lsn = p->answer_replay_lsn = p->answer_receive_lsn = 0;
	for (int col = 1; col <= 3; col++) {
		uint64_t *out = col == 1   ? &p->answer_wal_lsn
		                : col == 2 ? &p->answer_replay_lsn
		                           : &p->answer_receive_lsn;
		if (PQgetisnull(result, 0, col))
			continue;
		lsn_text = PQgetvalue(result, 0, col);
		if (!health_parse_lsn(lsn_text, out)) {
			snprintf(p->answer_error, sizeof(p->answer_error),
			         "health check returned an unreadable LSN \"%.40s\"", lsn_text);
			return;
		}
	}
	p->got_row = true;
}

/* Moves p's check on after its socket became ready (or errored). */
static void probe_advance(monitor_t *m, probe_t *p, int64_t now)
{
	if (p->phase == PROBE_CONNECTING) {
		PostgresPollingStatusType status = PQconnectPoll(p->conn);
		if (status == PGRES_POLLING_FAILED)
			probe_fail(m, p, PQerrorMessage(p->conn), now);
		else if (status == PGRES_POLLING_OK)
			probe_send_query(m, p, now);
		else
			p->connect_wait = status;
		return;
	}
	if (p->phase != PROBE_QUERYING)
		return;
	if (p->flushing && !probe_flush(m, p, now))
		return;
	if (!PQconsumeInput(p->conn)) {
		probe_fail(m, p, PQerrorMessage(p->conn), now);
		return;
	}
	while (!PQisBusy(p->conn)) {
		PGresult *result = PQgetResult(p->conn);
		if (!result) {
			if (p->answer_error[0])
				probe_fail(m, p, p->answer_error, now);
			else if (!p->got_row)
				probe_fail(m, p, "health check returned no result", now);
			else
				probe_succeed(m, p, now);
			return;
		}
		probe_take_result(p, result);
		PQclear(result);
	}
}

static bool probe_busy(const probe_t *p)
{
	return p->phase != PROBE_IDLE;
}

/* Fails p's check if it is still in flight past its deadline. */
static void probe_expire(monitor_t *m, probe_t *p, int64_t now)
{
	char message[128];

	if (!probe_busy(p) || now < p->deadline_ms)
		return;
	if (p->phase == PROBE_CONNECTING)
		snprintf(message, sizeof(message),
		         "timed out after %" PRId64
		         " ms connecting (libpq stage %d, waiting to %s)",
		         now - p->started_ms, (int)PQstatus(p->conn),
		         p->connect_wait == PGRES_POLLING_READING ? "read" : "write");
	else
		snprintf(message, sizeof(message), "timed out after %" PRId64 " ms querying",
		         now - p->started_ms);
	p->retried = true; /* a timeout is not a stale connection: no reconnect */
	probe_fail(m, p, message, now);
}

/*
 * Services in-flight checks until `until` (monotonic ms), or, with
 * until_idle, until none is in flight. Each pass polls first and judges
 * deadlines after handling what is readable, so a monitor thread that was
 * itself descheduled past a deadline still takes answers that arrived in
 * time instead of calling the nodes dead. Returns early when health_stop()
 * wakes the thread.
 */
static void monitor_wait(monitor_t *m, int64_t until, bool until_idle)
{
	for (;;) {
		int64_t now = mono_ms();
		int64_t wake_at = until;
		int n = 1, rc;

		if (atomic_load(&m->stopping))
			return;
		m->pollfds[0] = (struct pollfd){.fd = m->wake_fds[0], .events = POLLIN};
		for (int i = 0; i < m->n_probes; i++) {
			probe_t *p = &m->probes[i];
			short events;
			if (!probe_busy(p))
				continue;
			if (p->deadline_ms < wake_at)
				wake_at = p->deadline_ms;
			if (p->phase == PROBE_CONNECTING)
				events =
				    p->connect_wait == PGRES_POLLING_READING ? POLLIN : POLLOUT;
			else
				events = (short)(POLLIN | (p->flushing ? POLLOUT : 0));
			m->pollfds[n] = (struct pollfd){.fd = PQsocket(p->conn), .events = events};
			m->polled[n] = p;
			n++;
		}
		if (until_idle && n == 1)
			return;
		rc = poll(m->pollfds, (nfds_t)n, (int)(wake_at > now ? wake_at - now : 0));
		if (rc < 0 && errno != EINTR) {
			log_error("health_poll_failed", "\"errno\":%d", errno);
			return;
		}
		if (rc > 0 && m->pollfds[0].revents)
			return; /* stopping */
		now = mono_ms();
		for (int i = 1; rc > 0 && i < n; i++)
			if (m->pollfds[i].revents)
				probe_advance(m, m->polled[i], now);
		for (int i = 0; i < m->n_probes; i++)
			probe_expire(m, &m->probes[i], now);
		if (now >= until)
			return;
	}
}

/* Moves the outcomes workers reported since the last round into breakers. */
static void monitor_fold_passive(monitor_t *m, int64_t now)
{
	for (int i = 0; i < m->n_probes; i++) {
		probe_t *p = &m->probes[i];
		passive_counts_t *counts = &passive_counts[p->shard][p->node];
		uint32_t successes =
		    atomic_exchange_explicit(&counts->successes, 0, memory_order_relaxed);
		uint32_t failures =
		    atomic_exchange_explicit(&counts->failures, 0, memory_order_relaxed);
		breaker_state_t before = p->breaker.state;

		breaker_record_batch(&p->breaker, successes, failures, now);
		note_breaker(m, p, before);
	}
}

/* Starts a check on every node not already being checked whose breaker lets
 * it (an OPEN breaker skips the node; HALF_OPEN lets this check be the
 * probe). */
static void monitor_start_checks(monitor_t *m, int64_t now)
{
	for (int i = 0; i < m->n_probes; i++) {
		probe_t *p = &m->probes[i];
		breaker_state_t before = p->breaker.state;
		bool allowed;

		if (probe_busy(p))
			continue;
		allowed = breaker_allow(&p->breaker, now);
		note_breaker(m, p, before);
		if (allowed)
			probe_begin(m, p, now);
	}
}

/* Recomputes each shard's acting primary, LSN history, replica lag and
 * eligibility from the latest answers. */
static void monitor_update_lag(monitor_t *m)
{
	for (int s = 0; s < m->n_shards; s++) {
		shard_track_t *track = &m->shards[s];
		probe_t *nodes = &m->probes[track->first];
		probe_t *primary = NULL;

		track->primary_node = -1;
		for (int i = 0; i < track->n_nodes && !primary; i++)
			if (nodes[i].view.state == NODE_UP && !nodes[i].view.in_recovery)
				primary = &nodes[i];
		if (primary) {
			track->primary_node = primary->node;
			track->primary_lsn = primary->view.wal_lsn;
			if (track->history_node != primary->node)
				health_history_reset(&track->history);
			track->history_node = primary->node;
			health_history_add(&track->history, primary->checked_ms,
			                   primary->view.wal_lsn);
		} else {
			track->primary_lsn = 0;
		}

		for (int i = 0; i < track->n_nodes; i++) {
			probe_t *p = &nodes[i];
			health_node_t *v = &p->view;
			bool lag_was_ok = p->lag_ok;

			if (v->state == NODE_UP && !v->in_recovery) {
				v->lag_bytes = 0;
				v->lag_ms = 0;
			} else if (v->state == NODE_UP && primary) {
				v->lag_bytes =
				    health_lag_bytes(primary->view.wal_lsn, v->replay_lsn);
				v->lag_ms =
				    health_lag_ms(&track->history, v->replay_lsn, p->checked_ms);
				p->lag_ok = health_lag_eligible(p->lag_ok, v->lag_bytes, v->lag_ms,
				                                m->max_lag_bytes, m->max_lag_ms);
			} else if (v->state == NODE_UP) {
				v->lag_bytes = -1;
				v->lag_ms = -1;
			}
			if (lag_was_ok && !p->lag_ok)
				log_warning("replica_lagging",
				            NODE_FIELDS ",\"lag_bytes\":%" PRId64
				                        ",\"lag_ms\":%" PRId64,
				            NODE_ARGS(m, p), v->lag_bytes, v->lag_ms);
			else if (!lag_was_ok && p->lag_ok)
				log_info("replica_caught_up",
				         NODE_FIELDS ",\"lag_bytes\":%" PRId64
				                     ",\"lag_ms\":%" PRId64,
				         NODE_ARGS(m, p), v->lag_bytes, v->lag_ms);
			v->breaker = p->breaker.state;
			v->eligible = v->state == NODE_UP && v->breaker == BREAKER_CLOSED &&
			              (!v->in_recovery || p->lag_ok);
		}
	}
}

static void *monitor_main(void *arg)
{
	monitor_t *m = arg;

	while (!atomic_load(&m->stopping)) {
		int64_t round_start = mono_ms();
		int64_t round_end = round_start + m->interval_ms;

		monitor_fold_passive(m, round_start);
		monitor_start_checks(m, round_start);
		monitor_wait(m, round_end, true);
		if (atomic_load(&m->stopping))
			break;
		monitor_update_lag(m);
		publish(m);
		monitor_wait(m, round_end, false);
	}
	return NULL;
}

static const char *sslmode_name(backend_tls_t tls)
{
	switch (tls) {
	case BACKEND_TLS_DISABLE:
		return "disable";
	case BACKEND_TLS_PREFER:
		return "prefer";
	case BACKEND_TLS_REQUIRE:
		return "require";
	case BACKEND_TLS_VERIFY_CA:
		return "verify-ca";
	case BACKEND_TLS_VERIFY_FULL:
		return "verify-full";
	}
	return "prefer";
}

static void monitor_free(monitor_t *m)
{
	if (!m)
		return;
	for (int i = 0; m->probes && i < m->n_probes; i++)
		probe_close(&m->probes[i]);
	if (m->wake_fds[0] >= 0)
		close(m->wake_fds[0]);
	if (m->wake_fds[1] >= 0)
		close(m->wake_fds[1]);
	if (m->password) {
		memset(m->password, 0, strlen(m->password));
		free(m->password);
	}
	free(m->probes);
	free(m->shards);
	free(m->pollfds);
	free(m->polled);
	free(m);
}

/* Fills one probe from the configuration of (shard, node). */
static void probe_init(monitor_t *m, probe_t *p, int shard, int node, const cfg_node_t *cfg)
{
	char address[sizeof(p->host) + 16];

	p->shard = shard;
	p->node = node;
	snprintf(p->host, sizeof(p->host), "%s", cfg->address.host);
	snprintf(p->port, sizeof(p->port), "%d", cfg->address.port);
	snprintf(address, sizeof(address), "%s:%d", cfg->address.host, cfg->address.port);
	log_json_escape(p->address_json, sizeof(p->address_json), address);
	breaker_init(&p->breaker, &m->breaker_config);
	p->lag_ok = true;
	p->view.shard = shard;
	p->view.node = node;
	p->view.state = NODE_UNKNOWN;
	p->view.in_recovery = node > 0;
	p->view.lag_bytes = -1;
	p->view.lag_ms = -1;
	p->view.breaker = BREAKER_CLOSED;
}

/* Copies what the monitor needs from config into a new monitor_t. */
static monitor_t *monitor_new(const config_t *config, char *err, size_t errlen)
{
	monitor_t *m = calloc(1, sizeof(*m));
	int n_probes = 0;
	size_t shard_count, probe_count;

	if (!m) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	m->wake_fds[0] = m->wake_fds[1] = -1;
	m->interval_ms = config->health.interval_ms > 0 ? config->health.interval_ms : 250;
	m->connect_ms = config->timeouts.connect_ms > 0 ? config->timeouts.connect_ms : 2000;
	m->max_lag_bytes = config->routing.max_lag_bytes;
	m->max_lag_ms = config->routing.max_lag_ms;
	breaker_config_default(&m->breaker_config, config->health.failures_to_open,
	                       config->health.open_for_ms);
	snprintf(m->user, sizeof(m->user), "%s",
	         config->backend.user[0] ? config->backend.user : "postgres");
	if (config->backend.password && config->backend.password[0]) {
		m->password = strdup(config->backend.password);
		if (!m->password)
			goto oom;
	}
	snprintf(m->sslmode, sizeof(m->sslmode), "%s", sslmode_name(config->backend.tls));
	/* With a root certificate libpq verifies the server even under prefer
	 * and require; the proxy's own connections (net/tls.c) do not. */
	if (config->backend.tls == BACKEND_TLS_VERIFY_CA ||
	    config->backend.tls == BACKEND_TLS_VERIFY_FULL)
		snprintf(m->sslrootcert, sizeof(m->sslrootcert), "%s", config->backend.ca_file);
	/* libpq counts whole seconds (and treats 1 as 2); the monitor enforces
	 * connect_ms itself, this is a backstop. */
	snprintf(m->connect_timeout, sizeof(m->connect_timeout), "%" PRId64,
	         (m->connect_ms + 999) / 1000 < 2 ? 2 : (m->connect_ms + 999) / 1000);

	for (int s = 0; s < config->n_shards; s++)
		n_probes += 1 + config->shards[s].n_replicas;
	if (config->n_shards <= 0 || config->n_shards > CONFIG_MAX_SHARDS || n_probes <= 0) {
		snprintf(err, errlen, "health monitor: the configuration has no shards");
		monitor_free(m);
		return NULL;
	}
	m->n_shards = config->n_shards;
	m->n_probes = n_probes;
	shard_count = (size_t)config->n_shards;
	probe_count = (size_t)n_probes;
	m->shards = calloc(shard_count, sizeof(*m->shards));
	m->probes = calloc(probe_count, sizeof(*m->probes));
	m->pollfds = calloc(probe_count + 1, sizeof(*m->pollfds));
	m->polled = calloc(probe_count + 1, sizeof(*m->polled));
	if (!m->shards || !m->probes || !m->pollfds || !m->polled)
		goto oom;

	n_probes = 0;
	for (int s = 0; s < config->n_shards; s++) {
		const cfg_shard_t *shard = &config->shards[s];
		shard_track_t *track = &m->shards[s];

		log_json_escape(track->name_json, sizeof(track->name_json), shard->name);
		track->first = n_probes;
		track->n_nodes = 1 + shard->n_replicas;
		track->primary_node = -1;
		track->history_node = -1;
		probe_init(m, &m->probes[n_probes++], s, 0, &shard->primary);
		for (int r = 0; r < shard->n_replicas; r++)
			probe_init(m, &m->probes[n_probes++], s, r + 1, &shard->replicas[r]);
	}
	if (pipe2(m->wake_fds, O_CLOEXEC | O_NONBLOCK) != 0) {
		snprintf(err, errlen, "health monitor: pipe: %s", strerror(errno));
		monitor_free(m);
		return NULL;
	}
	return m;
oom:
	snprintf(err, errlen, "health monitor: out of memory");
	monitor_free(m);
	return NULL;
}

bool health_start(const config_t *config, char *err, size_t errlen)
{
	monitor_t *m;
	int rc;

	if (!config || config->n_shards <= 0 || config->n_shards > CONFIG_MAX_SHARDS) {
		snprintf(err, errlen, "health monitor: the configuration has no shards");
		return false;
	}
	for (int s = 0; s < config->n_shards; s++) {
		if (config->shards[s].n_replicas < 0 ||
		    config->shards[s].n_replicas > CONFIG_MAX_REPLICAS) {
			snprintf(err, errlen, "health monitor: shard %d has %d replicas", s,
			         config->shards[s].n_replicas);
			return false;
		}
	}
	pthread_mutex_lock(&monitor_lock);
	if (monitor_instance) {
		pthread_mutex_unlock(&monitor_lock);
		snprintf(err, errlen, "health monitor: already running");
		return false;
	}
	m = monitor_new(config, err, errlen);
	if (!m) {
		pthread_mutex_unlock(&monitor_lock);
		return false;
	}
	for (int s = 0; s < CONFIG_MAX_SHARDS; s++)
		for (int n = 0; n <= CONFIG_MAX_REPLICAS; n++) {
			atomic_store(&passive_counts[s][n].successes, 0);
			atomic_store(&passive_counts[s][n].failures, 0);
		}
	/* A first snapshot (every node UNKNOWN) so readers never see NULL
	 * while the monitor runs. */
	publish(m);
	rc = pthread_create(&m->thread, NULL, monitor_main, m);
	if (rc != 0) {
		snprintf(err, errlen, "health monitor: pthread_create: %s", strerror(rc));
		swap_current(m, NULL, true);
		monitor_free(m);
		pthread_mutex_unlock(&monitor_lock);
		return false;
	}
	monitor_instance = m;
	pthread_mutex_unlock(&monitor_lock);
	log_info("health_started",
	         "\"nodes\":%d,\"interval_ms\":%" PRId64 ",\"failures_to_open\":%d,"
	         "\"open_for_ms\":%" PRId64,
	         m->n_probes, m->interval_ms, m->breaker_config.failures_to_open,
	         m->breaker_config.open_for_ms);
	return true;
}

void health_stop(void)
{
	monitor_t *m;
	ssize_t written;

	pthread_mutex_lock(&monitor_lock);
	m = monitor_instance;
	monitor_instance = NULL;
	pthread_mutex_unlock(&monitor_lock);
	if (!m)
		return;
	atomic_store(&m->stopping, true);
	do
		written = write(m->wake_fds[1], "x", 1);
	while (written < 0 && errno == EINTR);
	pthread_join(m->thread, NULL);
	swap_current(m, NULL, true);
	log_info("health_stopped", "\"nodes\":%d", m->n_probes);
	monitor_free(m);
}

/* "16/B374D848", or "-" for 0 (unknown or NULL). */
static const char *format_lsn(uint64_t lsn, char *out, size_t outlen)
{
	if (lsn == 0)
		snprintf(out, outlen, "-");
	else
		snprintf(out, outlen, "%X/%X", (unsigned)(lsn >> 32), (unsigned)lsn);
	return out;
}

void health_print(const health_snapshot_t *snapshot, FILE *out)
{
	if (!snapshot) {
		fprintf(out, "health: no snapshot (monitor not running)\n");
		return;
	}
	fprintf(out, "health snapshot v%" PRIu64 " taken_at_ms %" PRId64 "\n", snapshot->version,
	        snapshot->taken_at_ms);
	fprintf(out, "%-5s %-4s %-8s %-7s %-18s %-18s %12s %8s %-8s %-9s %s\n", "shard", "node",
	        "role", "state", "wal_lsn", "replay_lsn", "lag_bytes", "lag_ms", "eligible",
	        "breaker", "last_error");
	for (int s = 0; s < snapshot->n_shards; s++) {
		const health_shard_t *shard = &snapshot->shards[s];
		for (int i = 0; i < shard->n_nodes; i++) {
			const health_node_t *node = &snapshot->nodes[shard->first + i];
			char wal[24], replay[24], role[16];

			if (node->state == NODE_UNKNOWN)
				snprintf(role, sizeof(role), "?");
			else
				snprintf(role, sizeof(role), "%s%s",
				         node->in_recovery ? "replica" : "primary",
				         node->role_mismatch ? "!" : "");
			fprintf(out,
			        "%-5d %-4d %-8s %-7s %-18s %-18s %12" PRId64 " %8" PRId64
			        " %-8s %-9s %s\n",
			        s, i, role, node_state_name(node->state),
			        format_lsn(node->wal_lsn, wal, sizeof(wal)),
			        format_lsn(node->replay_lsn, replay, sizeof(replay)),
			        node->lag_bytes, node->lag_ms, node->eligible ? "yes" : "no",
			        breaker_state_name(node->breaker), node->last_error);
		}
	}
}
