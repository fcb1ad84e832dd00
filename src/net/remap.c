/*
 * remap.c - the running proxy's side of a rebalance cut-over.
 *
 * The rebalance CLI moves one unit (some hash buckets, a key range, some
 * directory keys: rebalance/units.h) at a time and, at its cut-over, tells
 * every proxy through the admin console:
 *
 *   REBALANCE PAUSE <version> '<unit>' [<timeout ms>]
 *       Statements that touch the unit's rows wait (others keep running);
 *       answers once every transaction that was already running when the
 *       pause began has ended, so nothing can still write those rows the
 *       old way. Gives up, resumes and fails after the timeout (5 s).
 *   REBALANCE SWITCH <version> '<unit>'
 *       Loads the map with the unit moved (map version <version>) and lets
 *       the waiting statements go, routed by it.
 *   REBALANCE RESUME <version>
 *       Lets them go by the old map (the cut-over was abandoned).
 *   SHOW REBALANCE
 *       The map version, the pause, and how long statements waited.
 *
 * A statement touches the unit exactly when it names a table of the unit's
 * co-location group and its route under the pause view (the map with the
 * unit's rows on a phantom shard) includes that phantom shard. A proxy
 * never routes a paused unit the old way once it answered PAUSE: only
 * SWITCH or RESUME from the CLI ends the pause.
 *
 * Threads: the command arrives on one worker; the shared state below is
 * guarded by a mutex and its generation counter tells each worker to act
 * (remap_sync, on the worker's own thread: through ev_remap at once, and
 * lazily at its next routing decision).
 */
#include <event2/event.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "core/stats.h"
#include "net/io.h"
#include "net/net.h"
#include "net/tls.h"
#include "proto/proto.h"
#include "rebalance/units.h"
#include "route/directory.h"
#include "route/pgconn.h"
#include "pool/pool.h"

#define PAUSE_TIMEOUT_MS 5000
#define DRAIN_POLL_MS 1

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_uint_fast64_t generation = 1;
static atomic_int_fast64_t max_wait_ms;	    /* longest wait of a statement, last pause */
static atomic_uint_fast64_t paused_total;   /* statements that waited, ever */
enum { PHASE_NONE, PHASE_PAUSED, PHASE_SETTLING };
static const char *const phase_names[] = {"no", "paused", "settling"};

static struct {
	int64_t version; /* of the map in use: 0 as loaded, then each SWITCH's */
	int phase;
	int64_t pause_version; /* of the pause or the settling */
	char *pause_spec;
	rb_unit_t unit;	 /* of the pause */
	config_t *view;	 /* the pause view */
	config_t *next;	 /* the map after the unit moved */
	int64_t paused_at_ms;
	int64_t settling_at_ms;
	config_t **retired; /* derived maps, freed at exit (workers may hold them) */
	int n_retired;
	rb_unit_t *old_units; /* units of past pauses (workers may hold them) */
	int n_old_units;
	config_t **replaced; /* files loaded before a RELOAD, freed at exit */
	int n_replaced;
} st;

/* A unit's spec read against the map `cur`: the unit, its pause view and
 * the map after it moved. False with the reason (nothing left to free). */
static bool unit_maps(const config_t *cur, const char *spec, rb_unit_t *u, config_t **view,
		      config_t **next, char *err, size_t errlen)
{
	*view = *next = NULL;
	if (rb_unit_parse(cur, spec, u, err, errlen) &&
	    rb_config_apply(cur, u, true, view, err, errlen) &&
	    rb_config_apply(cur, u, false, next, err, errlen))
		return true;
	rb_config_free(*view);
	*view = NULL;
	rb_unit_free(u);
	return false;
}

static void retire(config_t *c)
{
	if (!c)
		return;
	config_t **r = realloc(st.retired, sizeof(*r) * (size_t)(st.n_retired + 1));
	if (!r)
		return; /* leaked rather than freed under a worker */
	st.retired = r;
	st.retired[st.n_retired++] = c;
}

static void retire_unit_value(rb_unit_t *unit)
{
	rb_unit_t *u = realloc(st.old_units, sizeof(*u) * (size_t)(st.n_old_units + 1));
	if (!u) {
		rb_unit_free(unit); /* nobody holds it yet at start-up */
		return;
	}
	st.old_units = u;
	st.old_units[st.n_old_units++] = *unit;
	memset(unit, 0, sizeof(*unit));
}

static void retire_unit(void)
{
	retire_unit_value(&st.unit);
}

void remap_shutdown(void)
{
	/* Derived maps first: they share parts of the loaded files. */
	if (proxy.config && proxy.config != proxy.loaded_config)
		retire((config_t *)proxy.config);
	proxy.config = proxy.loaded_config;
	retire(st.view); /* a pause still in place at exit */
	retire(st.next);
	st.view = st.next = NULL;
	for (int i = 0; i < st.n_retired; i++)
		rb_config_free(st.retired[i]);
	free(st.retired);
	for (int i = 0; i < st.n_old_units; i++)
		rb_unit_free(&st.old_units[i]);
	free(st.old_units);
	rb_unit_free(&st.unit);
	free(st.pause_spec);
	for (int i = 0; i < st.n_replaced; i++)
		config_free(st.replaced[i]);
	free(st.replaced);
	config_free((config_t *)proxy.loaded_config);
	proxy.config = proxy.loaded_config = NULL;
	memset(&st, 0, sizeof(st));
}

static void wake_workers(void)
{
	atomic_fetch_add(&generation, 1);
	for (int i = 0; i < proxy.n_workers; i++)
		if (proxy.workers[i].ev_remap)
			event_active(proxy.workers[i].ev_remap, EV_READ, 0);
}

/* ---- the worker's side ---- */

/* A transaction (or a unit already routed) is under way for the client. */
static bool client_busy(const client_t *c)
{
	if (c->state == CLIENT_CLOSED)
		return false;
	if (c->fan || c->state == CLIENT_WAITING)
		return true;
	return c->server && (c->server->tx_status != 'I' || c->server->pending_count > 0);
}

static void drain_poll(evutil_socket_t fd, short what, void *arg);

/* Drops exemptions of clients seen idle; publishes how many remain. */
static void drain_count(worker_t *w)
{
	int kept = 0;
	for (int i = 0; i < w->rm_n_exempt; i++) {
		client_t *c = w->rm_exempt[i].client;
		bool same = c->id == w->rm_exempt[i].id && c->state != CLIENT_CLOSED;
		if (same && client_busy(c)) {
			w->rm_exempt[kept++] = w->rm_exempt[i];
		} else if (same) {
			c->rm_exempt = 0;
		}
	}
	w->rm_n_exempt = kept;
	atomic_store(&w->rm_draining, kept);
	if (kept > 0 && w->ev_remap_poll) {
		struct timeval tv = io_timeval(DRAIN_POLL_MS);
		event_add(w->ev_remap_poll, &tv);
	}
}

static void drain_poll(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	drain_count(arg);
}

/* Lets the worker's waiting statements go (by whatever map is in use). */
static void release_parked(worker_t *w)
{
	client_t *list = w->rm_parked;
	w->rm_parked = NULL;
	int64_t now = net_now_ms();
	while (list) {
		client_t *c = list;
		list = c->rm_next;
		c->rm_next = c->rm_prev = NULL;
		c->rm_is_parked = false;
		stats_rebalance_waiting(-1);
		int64_t waited = now - c->rm_parked_ms;
		int64_t seen = atomic_load(&max_wait_ms);
		while (waited > seen && !atomic_compare_exchange_weak(&max_wait_ms, &seen, waited))
			;
		client_process_input(c);
		if (c->state != CLIENT_CLOSED && c->server)
			server_flush(c->server);
	}
	atomic_store(&w->rm_n_parked, 0);
}

static void resize_one(const void *key, size_t len, void *value, void *arg)
{
	(void)key;
	(void)len;
	pool_resize(value, *(const int *)arg);
}

static void pool_resize_all(worker_t *w, int size)
{
	hashmap_foreach(&w->pools, resize_one, &size);
}

void remap_sync(worker_t *w)
{
	uint64_t g = atomic_load(&generation);
	if (w->rm_gen == g)
		return;
	pthread_mutex_lock(&lock);
	const config_t *map = proxy.config;
	int phase = st.phase;
	const config_t *view = phase ? st.view : NULL;
	const rb_unit_t *unit = phase ? &st.unit : NULL;
	int64_t pause_version = phase ? st.pause_version : 0;
	pthread_mutex_unlock(&lock);
	w->rm_gen = g;
	if (w->config != map) {
		w->config = map;
		free(w->key_tables); /* names point into the map */
		w->key_tables = NULL;
		pool_resize_all(w, map->pool.size);
	}
	if (phase == PHASE_PAUSED && (w->rm_pause != pause_version || w->rm_phase != phase)) {
		/* A new pause: what is already under way goes on the old way
		 * (exempt), and the pause is answered once it has ended. */
		if (w->rm_phase)
			release_parked(w); /* held by another pause: route again */
		w->rm_phase = phase;
		w->rm_pause = pause_version;
		w->rm_view = view;
		w->rm_unit = unit;
		w->rm_n_exempt = 0;
		for (client_t *c = w->clients; c; c = c->next) {
			if (!client_busy(c) || c->admin)
				continue;
			if (w->rm_n_exempt == w->rm_cap_exempt) {
				int cap = w->rm_cap_exempt ? w->rm_cap_exempt * 2 : 64;
				void *n = realloc(w->rm_exempt, sizeof(*w->rm_exempt) * (size_t)cap);
				if (!n)
					break; /* counted as drained: see the log */
				w->rm_exempt = n;
				w->rm_cap_exempt = cap;
			}
			c->rm_exempt = pause_version;
			w->rm_exempt[w->rm_n_exempt].client = c;
			w->rm_exempt[w->rm_n_exempt].id = c->id;
			w->rm_n_exempt++;
		}
		if (!w->ev_remap_poll)
			w->ev_remap_poll = evtimer_new(w->base, drain_poll, w);
		drain_count(w);
		atomic_store(&w->rm_acted, pause_version);
	} else if (phase != w->rm_phase || w->rm_pause != pause_version) {
		/* Settling (the map switched; statements that would read the
		 * unit's rows left on the source still wait), or the end. */
		w->rm_phase = phase;
		w->rm_view = view;
		w->rm_unit = unit;
		w->rm_pause = pause_version;
		for (int i = 0; i < w->rm_n_exempt; i++)
			w->rm_exempt[i].client->rm_exempt = 0;
		w->rm_n_exempt = 0;
		atomic_store(&w->rm_draining, 0);
		atomic_store(&w->rm_acted, 0);
	}
	/* Anything may have ended (a pause, a shard's PAUSE): waiting
	 * statements route again, and wait again if they still must. */
	release_parked(w);
}

void remap_on_event(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	remap_sync(arg);
}

void remap_free_worker(worker_t *w)
{
	if (w->ev_remap_poll)
		event_free(w->ev_remap_poll);
	w->ev_remap_poll = NULL;
	free(w->rm_exempt);
	w->rm_exempt = NULL;
}

typedef struct {
	const config_t *view;
	const rb_unit_t *unit;
} view_arg_t;

static int view_directory(int table, const char *key, size_t len, void *arg)
{
	const view_arg_t *v = arg;
	if (v->unit->kind == RB_DIRECTORY && table == v->unit->table)
		for (int i = 0; i < v->unit->n_keys; i++)
			if (strlen(v->unit->keys[i]) == len && memcmp(v->unit->keys[i], key, len) == 0)
				return v->view->n_shards - 1;
	return directory_cached(v->view, table, key, len);
}

bool remap_must_wait(client_t *c, const shard_stmt_info_t *info, const keys_facts_t *facts,
		     bool reads, const shard_params_t *params, const shard_route_t *route)
{
	worker_t *w = c->worker;
	remap_sync(w);
	if (!w->rm_phase || c->admin)
		return false;
	if (w->rm_phase == PHASE_PAUSED && c->rm_exempt == w->rm_pause && client_busy(c))
		return false; /* began before the pause: ends the old way */
	if (w->rm_phase == PHASE_SETTLING && !shardset_has(&route->shards, w->rm_unit->source))
		return false; /* does not read the source: nothing stale to see */
	bool names = false;
	for (int i = 0; i < facts->n_rels && !names; i++)
		names = facts->rels[i].table >= 0 && facts->rels[i].table < w->config->n_tables &&
			rb_unit_has_table(w->config, w->rm_unit, facts->rels[i].table);
	if (!names)
		return false;
	view_arg_t arg = {w->rm_view, w->rm_unit};
	shard_route_t r;
	shard_route(w->rm_view, info, facts, reads, params, view_directory, &arg, &r);
	bool hit = r.status == SHARD_ROUTE_OK ? shardset_has(&r.shards, w->rm_view->n_shards - 1)
					       : r.status != SHARD_ROUTE_REFUSE;
	shard_route_free(&r);
	return hit;
}

bool remap_active(worker_t *w)
{
	remap_sync(w);
	return w->rm_phase != PHASE_NONE;
}

void remap_park(client_t *c)
{
	worker_t *w = c->worker;
	if (c->rm_is_parked)
		return;
	c->rm_is_parked = true;
	c->rm_parked_ms = net_now_ms();
	c->rm_prev = NULL;
	c->rm_next = w->rm_parked;
	if (w->rm_parked)
		w->rm_parked->rm_prev = c;
	w->rm_parked = c;
	atomic_fetch_add(&w->rm_n_parked, 1);
	atomic_fetch_add(&paused_total, 1);
	stats_rebalance_waiting(1);
	io_pause_read(c->ev_read, &c->read_paused);
}

void remap_forget(client_t *c)
{
	worker_t *w = c->worker;
	for (int i = 0; i < w->rm_n_exempt; i++) {
		if (w->rm_exempt[i].client == c) {
			w->rm_exempt[i] = w->rm_exempt[--w->rm_n_exempt];
			break;
		}
	}
	if (c->rm_is_parked) {
		if (c->rm_prev)
			c->rm_prev->rm_next = c->rm_next;
		else
			w->rm_parked = c->rm_next;
		if (c->rm_next)
			c->rm_next->rm_prev = c->rm_prev;
		c->rm_next = c->rm_prev = NULL;
		c->rm_is_parked = false;
		atomic_fetch_sub(&w->rm_n_parked, 1);
		stats_rebalance_waiting(-1);
	}
	if (c->rm_timer) {
		event_free(c->rm_timer);
		c->rm_timer = NULL;
	}
}

/* ---- the admin commands ---- */

static const char *word(const char *p, char *out, size_t outlen)
{
	while (*p == ' ' || *p == '\t' || *p == '\n')
		p++;
	size_t n = 0;
	while (*p && *p != ' ' && *p != '\t' && *p != '\n') {
		if (n + 1 < outlen)
			out[n++] = *p;
		p++;
	}
	out[n] = '\0';
	return p;
}

/* An SQL string literal; NULL when there is none. */
static char *literal(const char **pp)
{
	const char *p = *pp;
	while (*p == ' ' || *p == '\t' || *p == '\n')
		p++;
	if (*p != '\'')
		return NULL;
	p++;
	size_t cap = strlen(p) + 1, n = 0;
	char *out = malloc(cap);
	if (!out)
		return NULL;
	for (;;) {
		if (!*p) {
			free(out);
			return NULL;
		}
		if (*p == '\'' && p[1] == '\'') {
			out[n++] = '\'';
			p += 2;
		} else if (*p == '\'') {
			p++;
			break;
		} else {
			out[n++] = *p++;
		}
	}
	out[n] = '\0';
	*pp = p;
	return out;
}

/* One row (state, version, ms) and the command's tag. */
static void reply_row(client_t *c, const char *command, const char *state, int64_t version,
		      int64_t ms)
{
	static const char *const cols[3] = {"state", "version", "ms"};
	char v[32], m[32];
	snprintf(v, sizeof(v), "%" PRId64, version);
	snprintf(m, sizeof(m), "%" PRId64, ms);
	const char *vals[3] = {state, v, m};
	result_t r;
	result_begin(&r, &c->out, cols, 3);
	result_row(&r, vals);
	proto_put_message(&c->out, 'C', command, strlen(command) + 1);
}

/* Under the lock: ends the pause or the settling. */
static void resume_locked(void)
{
	st.phase = PHASE_NONE;
	retire(st.view);
	retire(st.next);
	st.view = st.next = NULL;
	retire_unit();
	free(st.pause_spec);
	st.pause_spec = NULL;
}

static bool all_drained(int64_t version)
{
	for (int i = 0; i < proxy.n_workers; i++) {
		worker_t *w = &proxy.workers[i];
		if (atomic_load(&w->rm_acted) != version || atomic_load(&w->rm_draining) > 0)
			return false;
	}
	return true;
}

static void finish_wait(client_t *c)
{
	c->rm_waiting = false;
	proto_put_ready(&c->out, 'I');
	client_flush(c);
	if (c->state != CLIENT_CLOSED)
		client_process_input(c);
}

static void pause_wait(evutil_socket_t fd, short what, void *arg)
{
	client_t *c = arg;
	(void)fd;
	(void)what;
	int64_t now = net_now_ms();
	pthread_mutex_lock(&lock);
	bool still = st.phase == PHASE_PAUSED && st.pause_version == c->rm_version;
	bool drained = still && all_drained(c->rm_version);
	if (still && !drained && now >= c->rm_deadline_ms) {
		resume_locked();
		pthread_mutex_unlock(&lock);
		wake_workers();
		log_warning("rebalance_pause_timeout", "\"version\":%" PRId64, c->rm_version);
		proto_put_error(&c->out, "ERROR", "55P03",
				"transactions that began before the pause did not end in time; "
				"the pause was lifted");
		finish_wait(c);
		return;
	}
	pthread_mutex_unlock(&lock);
	if (!still) {
		proto_put_error(&c->out, "ERROR", "55000", "the pause ended before it took hold");
		finish_wait(c);
		return;
	}
	if (drained) {
		log_info("rebalance_paused", "\"version\":%" PRId64 ",\"drain_ms\":%" PRId64,
			 c->rm_version, now - c->rm_started_ms);
		reply_row(c, "REBALANCE PAUSE", "paused", c->rm_version, now - c->rm_started_ms);
		finish_wait(c);
		return;
	}
	struct timeval tv = io_timeval(DRAIN_POLL_MS);
	event_add(c->rm_timer, &tv);
}

static void cmd_pause(client_t *c, int64_t version, const char *spec, int64_t timeout_ms)
{
	char err[512];
	pthread_mutex_lock(&lock);
	if (version <= st.version) {
		int64_t have = st.version;
		pthread_mutex_unlock(&lock);
		reply_row(c, "REBALANCE PAUSE", "switched", have, 0);
		proto_put_ready(&c->out, 'I');
		return;
	}
	if (st.phase && (st.pause_version != version || st.phase != PHASE_PAUSED)) {
		int64_t other = st.pause_version;
		const char *what = phase_names[st.phase];
		pthread_mutex_unlock(&lock);
		snprintf(err, sizeof(err), "another rebalance unit is %s here (version %" PRId64 ")",
			 what, other);
		proto_put_error(&c->out, "ERROR", "55000", err);
		proto_put_ready(&c->out, 'I');
		return;
	}
	if (!st.phase) {
		rb_unit_t u;
		config_t *view, *next;
		if (!unit_maps(proxy.config, spec, &u, &view, &next, err, sizeof(err))) {
			pthread_mutex_unlock(&lock);
			proto_put_error(&c->out, "ERROR", "22023", err);
			proto_put_ready(&c->out, 'I');
			return;
		}
		st.unit = u;
		st.view = view;
		st.next = next;
		st.phase = PHASE_PAUSED;
		st.pause_version = version;
		st.pause_spec = strdup(spec);
		st.paused_at_ms = net_now_ms();
		atomic_store(&max_wait_ms, 0);
	}
	pthread_mutex_unlock(&lock);
	log_info("rebalance_pause", "\"version\":%" PRId64, version);
	wake_workers();
	remap_sync(c->worker);
	c->rm_waiting = true;
	c->rm_version = version;
	c->rm_started_ms = net_now_ms();
	c->rm_deadline_ms = c->rm_started_ms + timeout_ms;
	if (!c->rm_timer)
		c->rm_timer = evtimer_new(c->worker->base, pause_wait, c);
	else
		event_assign(c->rm_timer, c->worker->base, -1, 0, pause_wait, c);
	if (!c->rm_timer) {
		c->rm_waiting = false;
		proto_put_error(&c->out, "ERROR", "53200", "out of memory");
		proto_put_ready(&c->out, 'I');
		return;
	}
	struct timeval tv = io_timeval(0);
	event_add(c->rm_timer, &tv);
}

static void cmd_switch(client_t *c, int64_t version, const char *spec)
{
	char err[512];
	pthread_mutex_lock(&lock);
	if (version <= st.version) {
		int64_t have = st.version;
		pthread_mutex_unlock(&lock);
		reply_row(c, "REBALANCE SWITCH", "switched", have, 0);
		proto_put_ready(&c->out, 'I');
		return;
	}
	config_t *next = NULL;
	int64_t paused_ms = 0;
	if (st.phase == PHASE_PAUSED && st.pause_version == version) {
		next = st.next;
		st.next = NULL;
		paused_ms = net_now_ms() - st.paused_at_ms;
	} else {
		/* Not paused here (restarted, or the pause was lost): the
		 * unit is applied to the map in use, and settles as well. */
		rb_unit_t u;
		config_t *view;
		if (!unit_maps(proxy.config, spec, &u, &view, &next, err, sizeof(err))) {
			pthread_mutex_unlock(&lock);
			proto_put_error(&c->out, "ERROR", "22023", err);
			proto_put_ready(&c->out, 'I');
			return;
		}
		if (st.phase)
			resume_locked(); /* another unit's: superseded */
		st.unit = u;
		st.view = view;
		free(st.pause_spec);
		st.pause_spec = strdup(spec);
	}
	/* The unit's rows stay on the source until the CLI deleted them:
	 * statements that would read them there wait until SETTLED. */
	st.phase = PHASE_SETTLING;
	st.pause_version = version;
	st.settling_at_ms = net_now_ms();
	if (proxy.config != proxy.loaded_config)
		retire((config_t *)proxy.config);
	proxy.config = next;
	st.version = version;
	pthread_mutex_unlock(&lock);
	stats_rebalance_version(version);
	directory_clear(); /* keys may have moved */
	wake_workers();
	remap_sync(c->worker);
	log_info("rebalance_switch", "\"version\":%" PRId64 ",\"paused_ms\":%" PRId64, version,
		 paused_ms);
	reply_row(c, "REBALANCE SWITCH", "switched", version, paused_ms);
	proto_put_ready(&c->out, 'I');
}

static void cmd_settled(client_t *c, int64_t version)
{
	pthread_mutex_lock(&lock);
	bool was = st.phase == PHASE_SETTLING && st.pause_version == version;
	int64_t ms = was ? net_now_ms() - st.settling_at_ms : 0;
	if (was)
		resume_locked();
	int64_t have = st.version;
	pthread_mutex_unlock(&lock);
	if (was)
		wake_workers();
	remap_sync(c->worker);
	log_info("rebalance_settled", "\"version\":%" PRId64 ",\"settling_ms\":%" PRId64, version,
		 ms);
	reply_row(c, "REBALANCE SETTLED", was ? "settled" : "not settling", have, ms);
	proto_put_ready(&c->out, 'I');
}

static void cmd_resume(client_t *c, int64_t version)
{
	pthread_mutex_lock(&lock);
	bool was = st.phase == PHASE_PAUSED && (version == 0 || st.pause_version == version);
	if (was)
		resume_locked();
	int64_t have = st.version;
	pthread_mutex_unlock(&lock);
	if (was)
		wake_workers();
	remap_sync(c->worker);
	log_info("rebalance_resume", "\"version\":%" PRId64 ",\"was_paused\":%s", version,
		 was ? "true" : "false");
	reply_row(c, "REBALANCE RESUME", was ? "resumed" : "not paused", have, 0);
	proto_put_ready(&c->out, 'I');
}

static void show_rebalance(client_t *c)
{
	pthread_mutex_lock(&lock);
	int64_t version = st.version, pv = st.pause_version;
	int phase = st.phase;
	bool paused = phase != PHASE_NONE;
	char spec[512];
	snprintf(spec, sizeof(spec), "%s", paused && st.pause_spec ? st.pause_spec : "");
	pthread_mutex_unlock(&lock);
	int waiting = 0;
	for (int i = 0; i < proxy.n_workers; i++)
		waiting += atomic_load(&proxy.workers[i].rm_n_parked);
	static const char *const cols[6] = {"map_version",   "paused",  "pause_version",
					    "unit",	     "waiting", "max_wait_ms"};
	char a[32], b[32], d[32], e[32];
	snprintf(a, sizeof(a), "%" PRId64, version);
	snprintf(b, sizeof(b), "%" PRId64, paused ? pv : 0);
	snprintf(d, sizeof(d), "%d", waiting);
	snprintf(e, sizeof(e), "%" PRId64, (int64_t)atomic_load(&max_wait_ms));
	const char *vals[6] = {a, phase_names[phase], b, spec, d, e};
	result_t r;
	result_begin(&r, &c->out, cols, 6);
	result_row(&r, vals);
	result_end(&r, "SHOW");
	proto_put_ready(&c->out, 'I');
}

/* ---- PAUSE [shard] / RESUME [shard] ---- */

static atomic_bool shard_paused[CONFIG_MAX_SHARDS];

bool remap_shard_paused(int shard)
{
	return shard >= 0 && shard < CONFIG_MAX_SHARDS && atomic_load(&shard_paused[shard]);
}

#define SHARD_PAUSE_TIMEOUT_MS 10000

static int paused_active(void)
{
	int n = 0;
	for (int s = 0; s < proxy.config->n_shards; s++)
		if (atomic_load(&shard_paused[s]))
			n += pool_shard_active(s);
	return n;
}

static void shard_pause_wait(evutil_socket_t fd, short what, void *arg)
{
	client_t *c = arg;
	(void)fd;
	(void)what;
	int active = paused_active();
	int64_t now = net_now_ms();
	if (active == 0) {
		proto_put_message(&c->out, 'C', "PAUSE", 6);
		finish_wait(c);
		return;
	}
	if (now >= c->rm_deadline_ms) {
		char text[200];
		snprintf(text, sizeof(text),
			 "%d server connections are still in use (long transactions, or session "
			 "pooling); new statements wait; RESUME to undo",
			 active);
		proto_put_error(&c->out, "ERROR", "55006", text);
		finish_wait(c);
		return;
	}
	struct timeval tv = io_timeval(5);
	event_add(c->rm_timer, &tv);
}

static bool shard_pause_command(client_t *c, bool pause, const char *name)
{
	const config_t *cfg = proxy.config;
	int only = -1;
	if (name[0]) {
		only = config_find_shard(cfg, name);
		if (only < 0) {
			char text[160];
			snprintf(text, sizeof(text), "no shard \"%s\" in the map", name);
			proto_put_error(&c->out, "ERROR", "42704", text);
			proto_put_ready(&c->out, 'I');
			return true;
		}
	}
	for (int s = 0; s < cfg->n_shards; s++)
		if (only < 0 || s == only)
			atomic_store(&shard_paused[s], pause);
	log_info(pause ? "admin_pause" : "admin_resume", "\"shard\":\"%s\"",
		 only < 0 ? "*" : cfg->shards[only].name);
	wake_workers();
	remap_sync(c->worker);
	if (!pause) {
		proto_put_message(&c->out, 'C', "RESUME", 7);
		proto_put_ready(&c->out, 'I');
		return true;
	}
	/* Answered once the shards' server connections are all released. */
	if (!c->rm_timer)
		c->rm_timer = evtimer_new(c->worker->base, shard_pause_wait, c);
	else
		event_assign(c->rm_timer, c->worker->base, -1, 0, shard_pause_wait, c);
	if (!c->rm_timer) {
		proto_put_error(&c->out, "ERROR", "53200", "out of memory");
		proto_put_ready(&c->out, 'I');
		return true;
	}
	c->rm_waiting = true;
	c->rm_deadline_ms = net_now_ms() + SHARD_PAUSE_TIMEOUT_MS;
	struct timeval tv = io_timeval(0);
	event_add(c->rm_timer, &tv);
	return true;
}

bool remap_command(client_t *c, const char *cmd)
{
	char w1[32], w2[32], w3[32];
	const char *p = word(cmd, w1, sizeof(w1));
	p = word(p, w2, sizeof(w2));
	if (strcasecmp(w1, "SHOW") == 0 && strcasecmp(w2, "REBALANCE") == 0) {
		show_rebalance(c);
		return true;
	}
	if (strcasecmp(w1, "PAUSE") == 0 || strcasecmp(w1, "RESUME") == 0) {
		char w3[CONFIG_NAME_MAX + 2];
		word(p, w3, sizeof(w3));
		if (w3[0]) {
			proto_put_error(&c->out, "ERROR", "42601", "usage: PAUSE [shard] | RESUME [shard]");
			proto_put_ready(&c->out, 'I');
			return true;
		}
		return shard_pause_command(c, strcasecmp(w1, "PAUSE") == 0, w2);
	}
	if (strcasecmp(w1, "REBALANCE") != 0)
		return false;
	p = word(p, w3, sizeof(w3));
	char *end;
	int64_t version = strtoll(w3, &end, 10);
	if (!w3[0] || *end || version < 0) {
		proto_put_error(&c->out, "ERROR", "42601",
				"usage: REBALANCE PAUSE|SWITCH <version> '<unit>' | RESUME|SETTLED <version>");
		proto_put_ready(&c->out, 'I');
		return true;
	}
	if (strcasecmp(w2, "RESUME") == 0) {
		cmd_resume(c, version);
		return true;
	}
	if (strcasecmp(w2, "SETTLED") == 0) {
		cmd_settled(c, version);
		return true;
	}
	char *spec = literal(&p);
	char w4[32];
	word(p, w4, sizeof(w4));
	int64_t timeout = w4[0] ? strtoll(w4, &end, 10) : PAUSE_TIMEOUT_MS;
	if (!spec || version == 0 || timeout <= 0 || timeout > 600000 ||
	    (strcasecmp(w2, "PAUSE") != 0 && strcasecmp(w2, "SWITCH") != 0)) {
		free(spec);
		proto_put_error(&c->out, "ERROR", "42601",
				"usage: REBALANCE PAUSE|SWITCH <version> '<unit>' | RESUME|SETTLED <version>");
		proto_put_ready(&c->out, 'I');
		return true;
	}
	if (strcasecmp(w2, "PAUSE") == 0)
		cmd_pause(c, version, spec, timeout);
	else
		cmd_switch(c, version, spec);
	free(spec);
	return true;
}

/* ---- start-up: the map a rebalance has reached ---- */

/*
 * A proxy started (or restarted) while a rebalance runs, or after one,
 * with the map it began from, must not route a moved unit the old way.
 * The CLI's bookkeeping (sql/rebalance.sql, on the default shard) is the
 * truth: units that have cut over are applied to the loaded map, a unit
 * being switched settles, a unit being cut over starts paused; each run
 * that turned this map into another is followed by the next one.
 */
const config_t *remap_recover(const config_t *loaded)
{
	proxy.loaded_config = loaded;
	char err[512];
	const char *db = loaded->backend.database[0] ? loaded->backend.database : "postgres";
	PGconn *conn = pgconn_get(loaded, loaded->default_shard, db, err, sizeof(err));
	if (!conn) {
		log_warning("rebalance_state_unknown",
			    "\"reason\":\"cannot read the rebalance bookkeeping\",\"error\":\"%s\"",
			    err);
		return loaded;
	}
	PGresult *r = PQexec(conn, "SELECT to_regclass('shardgate.rebalance_units') IS NOT NULL");
	bool present = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
		       strcmp(PQgetvalue(r, 0, 0), "t") == 0;
	PQclear(r);
	const config_t *cur = loaded;
	pthread_mutex_lock(&lock); /* workers may run (RELOAD) */
	for (int runs = 0; present && runs < 1000; runs++) {
		char digest[17];
		rb_map_digest(cur, digest);
		const char *p[1] = {digest};
		r = PQexecParams(conn,
				 "SELECT u.run_id, u.unit_no, u.spec, u.state FROM "
				 "shardgate.rebalance_units u WHERE u.run_id = (SELECT max(id) FROM "
				 "shardgate.rebalance_runs WHERE old_digest = $1 AND state <> 'aborted') "
				 "ORDER BY u.unit_no",
				 1, NULL, p, NULL, NULL, 0);
		if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) == 0) {
			PQclear(r);
			break;
		}
		bool whole = true;
		for (int i = 0; i < PQntuples(r) && whole; i++) {
			int64_t version = strtoll(PQgetvalue(r, i, 0), NULL, 10) * 100000 +
					  strtoll(PQgetvalue(r, i, 1), NULL, 10);
			const char *spec = PQgetvalue(r, i, 2), *state = PQgetvalue(r, i, 3);
			bool moved = strcmp(state, "switching") == 0 || strcmp(state, "switched") == 0 ||
				     strcmp(state, "settled") == 0 || strcmp(state, "done") == 0;
			bool held = strcmp(state, "cutover") == 0;
			whole = strcmp(state, "settled") == 0 || strcmp(state, "done") == 0;
			if (!moved && !held)
				break;
			rb_unit_t u;
			config_t *view, *next;
			if (!unit_maps(cur, spec, &u, &view, &next, err, sizeof(err))) {
				log_error("rebalance_recovery_failed",
					  "\"unit\":%" PRId64 ",\"error\":\"%s\"", version, err);
				whole = false;
				break;
			}
			if (held) {
				/* Being cut over: its statements wait for the CLI. */
				st.phase = PHASE_PAUSED;
				st.next = next;
			} else {
				if (cur != loaded)
					retire((config_t *)cur);
				cur = next;
				st.version = version;
				if (!whole)
					st.phase = PHASE_SETTLING;
			}
			if (st.phase) {
				st.unit = u;
				st.view = view;
				st.pause_version = version;
				st.pause_spec = strdup(spec);
				st.paused_at_ms = st.settling_at_ms = net_now_ms();
			} else {
				retire(view);
				retire_unit_value(&u);
			}
			log_info("rebalance_recovered", "\"unit\":%" PRId64 ",\"state\":\"%s\"", version,
				 state);
		}
		PQclear(r);
		if (!whole)
			break;
	}
	pthread_mutex_unlock(&lock);
	pgconn_thread_done();
	return cur;
}

/* ---- RELOAD and SIGHUP ---- */

static bool same_address(const cfg_address_t *a, const cfg_address_t *b)
{
	return a->port == b->port && strcmp(a->host, b->host) == 0;
}

/* What a reload cannot change without a restart; NULL when nothing. */
static const char *needs_restart(const config_t *a, const config_t *b)
{
	if (!same_address(&a->listen, &b->listen))
		return "listen";
	if (a->workers != b->workers)
		return "workers";
	if (a->has_metrics != b->has_metrics ||
	    (a->has_metrics && !same_address(&a->metrics, &b->metrics)))
		return "metrics";
	/* Certificates, keys and ciphers reload; turning TLS on or off does not. */
	if (a->tls.mode != b->tls.mode)
		return "tls.mode";
	if (a->backend.tls != b->backend.tls || strcmp(a->backend.ca_file, b->backend.ca_file) != 0)
		return "backend.tls or backend.ca_file";
	if (a->n_shards != b->n_shards)
		return "shards (their number)";
	for (int s = 0; s < a->n_shards; s++) {
		const cfg_shard_t *x = &a->shards[s], *y = &b->shards[s];
		if (strcmp(x->name, y->name) != 0 || x->n_replicas != y->n_replicas ||
		    !same_address(&x->primary.address, &y->primary.address))
			return "shards (names, primaries, replica lists)";
		for (int r = 0; r < x->n_replicas; r++)
			if (!same_address(&x->replicas[r].address, &y->replicas[r].address))
				return "shards (replica addresses)";
	}
	if (a->n_tables != b->n_tables)
		return "tables (their number; move rows with rebalance)";
	for (int t = 0; t < a->n_tables; t++)
		if (strcmp(a->tables[t].name, b->tables[t].name) != 0 ||
		    strcmp(a->tables[t].key, b->tables[t].key) != 0 ||
		    a->tables[t].strategy != b->tables[t].strategy)
			return "tables (names, keys, strategies)";
	return NULL;
}

bool remap_reload(const char *path, char *err, size_t errlen)
{
	config_t *fresh;
	if (!config_load(path, &fresh, err, errlen)) {
		log_warning("reload_refused", "\"reason\":\"%s\"", err);
		return false;
	}
	const char *what = needs_restart(proxy.loaded_config, fresh);
	if (what) {
		snprintf(err, errlen, "%s: %s changed; that needs a restart (the running "
			 "configuration stays)", path, what);
		log_warning("reload_refused", "\"reason\":\"%s changed\"", what);
		config_free(fresh);
		return false;
	}
	pthread_mutex_lock(&lock);
	bool busy = st.phase != PHASE_NONE;
	pthread_mutex_unlock(&lock);
	if (busy) {
		snprintf(err, errlen, "a rebalance cut-over is under way; reload after it");
		config_free(fresh);
		return false;
	}
	if (!tls_reload_clients(fresh, err, errlen)) {
		log_warning("reload_refused", "\"reason\":\"tls\"");
		config_free(fresh);
		return false;
	}
	/* The file may predate units a rebalance moved since: replay them
	 * (this reads the bookkeeping, as at start-up). */
	const config_t *old_loaded = proxy.loaded_config;
	int64_t version = st.version;
	st.version = 0;
	const config_t *map = remap_recover(fresh);
	pthread_mutex_lock(&lock);
	if (st.version == 0)
		st.version = version;
	config_t **r = realloc(st.replaced, sizeof(*r) * (size_t)(st.n_replaced + 1));
	if (r) {
		st.replaced = r;
		st.replaced[st.n_replaced++] = (config_t *)old_loaded;
	}
	if (proxy.config != old_loaded)
		retire((config_t *)proxy.config);
	proxy.config = map;
	pthread_mutex_unlock(&lock);
	log_set_level(fresh->log_level);
	directory_clear();
	wake_workers();
	log_info("reloaded", "\"file\":\"%s\",\"pool_size\":%d", path, fresh->pool.size);
	return true;
}
