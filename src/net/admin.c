/*
 * admin.c - the admin console: the database "shardgate".
 *
 * A client that logs in to the database "shardgate" talks to the proxy
 * itself, never to a server: only the users in admin.users may, after the
 * same authentication as everyone. It speaks the simple query protocol;
 * every answer is an ordinary result set of text columns, so psql and any
 * driver can read it. Commands (case does not matter, a trailing ';' is
 * fine): SHOW VERSION, SHOW SHARDS, SHOW NODES, SHOW CONFIG, SHOW ROUTE <sql>,
 * and the rebalance cut-over's SHOW REBALANCE and REBALANCE ... (remap.c).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/stats.h"
#include "core/version.h"
#include "health/health.h"
#include "net/net.h"
#include "proto/proto.h"
#include "route/explain.h"
#include "net/io.h"
#include "pool/pool.h"

#include <event2/event.h>
#include <pthread.h>

#define ADMIN_DATABASE "shardgate"

bool admin_is_console(const char *database)
{
	return strcmp(database, ADMIN_DATABASE) == 0;
}

bool admin_may_enter(const config_t *config, const char *user)
{
	for (int i = 0; i < config->n_admin_users; i++)
		if (strcmp(config->admin_users[i], user) == 0)
			return true;
	return false;
}

/* ---- result sets ---- */

void result_begin(result_t *r, buf_t *out, const char *const *columns, int n)
{
	r->out = out;
	r->n_columns = n;
	r->rows = 0;
	buf_t body = {0};
	uint8_t two[2] = {(uint8_t)(n >> 8), (uint8_t)n};
	buf_append(&body, two, 2);
	for (int i = 0; i < n; i++) {
		/* name, table OID 0, column 0, type text (25), size -1, modifier -1, format 0 */
		static const uint8_t rest[18] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 25, 0xff, 0xff,
						 0xff, 0xff, 0xff, 0xff, 0, 0};
		buf_append(&body, columns[i], strlen(columns[i]) + 1);
		buf_append(&body, rest, sizeof(rest));
	}
	proto_put_message(out, 'T', buf_head(&body), buf_avail(&body));
	buf_free(&body);
}

/* One row; NULL values are SQL NULL. */
void result_row(result_t *r, const char *const *values)
{
	buf_t body = {0};
	uint8_t two[2] = {(uint8_t)(r->n_columns >> 8), (uint8_t)r->n_columns};
	buf_append(&body, two, 2);
	for (int i = 0; i < r->n_columns; i++) {
		uint8_t len[4];
		uint32_t n = values[i] ? (uint32_t)strlen(values[i]) : UINT32_MAX;
		buf_set_u32(len, n);
		buf_append(&body, len, 4);
		if (values[i])
			buf_append(&body, values[i], n);
	}
	proto_put_message(r->out, 'D', buf_head(&body), buf_avail(&body));
	buf_free(&body);
	r->rows++;
}

void result_end(result_t *r, const char *verb)
{
	char tag[64];
	snprintf(tag, sizeof(tag), "%s %llu", verb, (unsigned long long)r->rows);
	proto_put_message(r->out, 'C', tag, strlen(tag) + 1);
}

/* Each line of text as a row of one column. */
static void result_lines(buf_t *out, const char *column, const char *text)
{
	result_t r;
	const char *columns[1] = {column};
	result_begin(&r, out, columns, 1);
	while (*text) {
		const char *nl = strchr(text, '\n');
		size_t n = nl ? (size_t)(nl - text) : strlen(text);
		char *line = strndup(text, n);
		const char *values[1] = {line};
		if (line)
			result_row(&r, values);
		free(line);
		text += n + (nl ? 1 : 0);
	}
	result_end(&r, "SHOW");
}

/* ---- commands ---- */

struct collect;
bool admin_worker_command(client_t *c, const char *cmd);

static void show_version(buf_t *out)
{
	result_t r;
	const char *columns[1] = {"version"};
	const char *values[1] = {"shardgate " SHARDGATE_VERSION};
	result_begin(&r, out, columns, 1);
	result_row(&r, values);
	result_end(&r, "SHOW");
}

/* Per shard and node: the last minute's statements, errors and latency
 * percentiles, and the totals since start (core/stats.h). */
static void show_stats(buf_t *out, const config_t *cfg)
{
	result_t r;
	const char *columns[12] = {"shard",	    "node",	    "address",	    "statements_1m",
				   "errors_1m",	    "p50_ms",	    "p95_ms",	    "p99_ms",
				   "statements",    "errors",	    "wait_total_ms", "wait_max_ms"};
	result_begin(&r, out, columns, 12);
	for (int s = 0; s < cfg->n_shards; s++) {
		const cfg_shard_t *sh = &cfg->shards[s];
		for (int n = 0; n <= sh->n_replicas; n++) {
			stats_node_t st;
			if (!stats_node(s, n, &st))
				continue;
			const cfg_address_t *a = n == 0 ? &sh->primary.address
							: &sh->replicas[n - 1].address;
			char node[16], addr[300], v[10][32];
			snprintf(node, sizeof(node), "%d", n);
			snprintf(addr, sizeof(addr), "%s:%d", a->host, a->port);
			snprintf(v[0], 32, "%llu", (unsigned long long)st.statements);
			snprintf(v[1], 32, "%llu", (unsigned long long)st.errors);
			snprintf(v[2], 32, "%.3f", st.p50_ms);
			snprintf(v[3], 32, "%.3f", st.p95_ms);
			snprintf(v[4], 32, "%.3f", st.p99_ms);
			snprintf(v[5], 32, "%llu", (unsigned long long)st.total_statements);
			snprintf(v[6], 32, "%llu", (unsigned long long)st.total_errors);
			snprintf(v[7], 32, "%.1f", (double)st.total_wait_us / 1000.0);
			snprintf(v[8], 32, "%.1f", (double)st.max_wait_us / 1000.0);
			const char *values[12] = {sh->name, node, addr, v[0], v[1], v[2],
						  v[3],	    v[4], v[5], v[6], v[7], v[8]};
			result_row(&r, values);
		}
	}
	result_end(&r, "SHOW");
}

static void show_shards(buf_t *out, const config_t *cfg)
{
	result_t r;
	const char *columns[5] = {"shard", "primary", "replicas", "max_concurrent", "default"};
	result_begin(&r, out, columns, 5);
	for (int s = 0; s < cfg->n_shards; s++) {
		const cfg_shard_t *sh = &cfg->shards[s];
		char primary[300], replicas[CONFIG_MAX_REPLICAS * 300] = "", limit[16];
		snprintf(primary, sizeof(primary), "%s:%d", sh->primary.address.host,
			 sh->primary.address.port);
		for (int i = 0; i < sh->n_replicas; i++) {
			char one[300];
			snprintf(one, sizeof(one), "%s%s:%d", i ? "," : "", sh->replicas[i].address.host,
				 sh->replicas[i].address.port);
			strcat(replicas, one);
		}
		snprintf(limit, sizeof(limit), "%d", sh->max_concurrent);
		const char *values[5] = {sh->name, primary, replicas, limit,
					 s == cfg->default_shard ? "yes" : "no"};
		result_row(&r, values);
	}
	result_end(&r, "SHOW");
}

static void show_nodes(buf_t *out, const config_t *cfg)
{
	result_t r;
	const char *columns[10] = {"shard",   "node",	  "address", "role",	   "state",
				   "circuit", "lag_bytes", "lag_ms",  "last_check", "last_error"};
	result_begin(&r, out, columns, 10);
	const health_snapshot_t *snap = health_acquire();
	for (int i = 0; snap && i < snap->n_nodes; i++) {
		const health_node_t *n = &snap->nodes[i];
		if (n->shard >= cfg->n_shards)
			continue;
		const cfg_shard_t *sh = &cfg->shards[n->shard];
		const cfg_node_t *cn = n->node == 0 ? &sh->primary : &sh->replicas[n->node - 1];
		char node[16], address[300], lag_bytes[32], lag_ms[32], checked[48] = "";
		snprintf(node, sizeof(node), "%d", n->node);
		snprintf(address, sizeof(address), "%s:%d", cn->address.host, cn->address.port);
		snprintf(lag_bytes, sizeof(lag_bytes), "%lld", (long long)n->lag_bytes);
		snprintf(lag_ms, sizeof(lag_ms), "%lld", (long long)n->lag_ms);
		if (n->last_check_ms > 0) {
			/* wall clock, ms since the epoch: as an ISO 8601 UTC time */
			time_t secs = (time_t)(n->last_check_ms / 1000);
			struct tm tm;
			gmtime_r(&secs, &tm);
			size_t k = strftime(checked, sizeof(checked), "%Y-%m-%dT%H:%M:%S", &tm);
			snprintf(checked + k, sizeof(checked) - k, ".%03dZ",
				 (int)(n->last_check_ms % 1000));
		}
		const char *values[10] = {sh->name,
					 node,
					 address,
					 n->in_recovery ? "replica" : "primary",
					 node_state_name(n->state),
					 breaker_state_name(n->breaker),
					 lag_bytes,
					 lag_ms,
					 checked[0] ? checked : NULL,
					 n->last_error[0] ? n->last_error : NULL};
		result_row(&r, values);
	}
	health_release(snap);
	result_end(&r, "SHOW");
}

static void show_config(buf_t *out, const config_t *cfg)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	if (!f)
		return;
	config_print(cfg, f); /* secrets masked */
	fclose(f);
	result_lines(out, "config", text ? text : "");
	free(text);
}

static void show_route(client_t *c, buf_t *out, const char *sql)
{
	worker_t *w = c->worker;
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	if (!f)
		return;
	const analysis_t *a = analyzer_get(w->analyzer, sql, strlen(sql));
	if (a) {
		route_class_t cls;
		route_classify(w->config, a, params_is_synced, &cls);
		fprintf(f, "statement:  %s\n", sql);
		fprintf(f, "kind:       %s\n", analyze_kind_name(a->kind));
		fprintf(f, "class:      %s (%s)\n", cls.read ? "read" : "write", cls.reason);
		int shard = cls.hint_shard >= 0 ? cls.hint_shard : w->config->default_shard;
		if (cls.hint_shard < 0 && cls.configured_tables)
			route_explain_shards(w->config, sql, NULL, 0, c->database, a, &cls, &shard, f);
		else
			fprintf(f, "shards:     %s (%s)\n", w->config->shards[shard].name,
				cls.hint_shard >= 0 ? "hint" : "no sharded table: default shard");
	}
	fclose(f);
	result_lines(out, "route", text ? text : "");
	free(text);
}

/* The command without leading blanks and trailing blanks and semicolons. */
static char *trim_command(const char *sql, size_t len)
{
	while (len > 0 && isspace((unsigned char)*sql)) {
		sql++;
		len--;
	}
	while (len > 0 && (isspace((unsigned char)sql[len - 1]) || sql[len - 1] == ';'))
		len--;
	return strndup(sql, len);
}

/* Does text start with the words of `cmd` (case-insensitive)? Returns what follows. */
static const char *starts_with(const char *text, const char *cmd)
{
	size_t n = strlen(cmd);
	if (strncasecmp(text, cmd, n) != 0 || (text[n] && !isspace((unsigned char)text[n])))
		return NULL;
	text += n;
	while (isspace((unsigned char)*text))
		text++;
	return text;
}

/* One message from an admin client. Returns false when the client is gone. */
bool admin_message(client_t *c, uint8_t type, const uint8_t *msg, size_t len)
{
	buf_t *out = &c->out;
	if (type == 'S') {
		if (c->admin_extended)
			proto_put_error(out, "ERROR", "0A000",
					"the admin console speaks the simple query protocol only");
		c->admin_extended = false;
		proto_put_ready(out, 'I');
		return true;
	}
	if (type != 'Q') {
		if (type == 'P' || type == 'B' || type == 'E' || type == 'D' || type == 'C' ||
		    type == 'H') {
			c->admin_extended = c->admin_extended || type != 'H';
			return true; /* one error for the unit, at its Sync */
		}
		client_fatal(c, "08P01", "invalid message for the admin console");
		return false;
	}
	proto_reader_t r;
	const char *sql;
	size_t sql_len;
	proto_reader_init(&r, msg + 5, len - 5);
	if (!proto_read_cstr(&r, &sql, &sql_len)) {
		client_fatal(c, "08P01", "invalid Query message");
		return false;
	}
	char *cmd = trim_command(sql, sql_len);
	const config_t *cfg = c->worker->config;
	const char *rest;
	char esc[256];
	log_info("admin_command", "\"client\":%llu,\"user\":\"%s\",\"command\":\"%s\"",
		 (unsigned long long)c->id, c->user, log_json_escape(esc, sizeof(esc), cmd ? cmd : ""));
	if (cmd && admin_worker_command(c, cmd)) {
		free(cmd);
		return true;
	}
	if (cmd && remap_command(c, cmd)) {
		free(cmd); /* answered, or to be answered when the pause holds */
		return true;
	}
	if (!cmd) {
		proto_put_error(out, "ERROR", "53200", "out of memory");
	} else if (!cmd[0]) {
		proto_put_empty(out, 'I');
	} else if (starts_with(cmd, "SHOW VERSION") && !*starts_with(cmd, "SHOW VERSION")) {
		show_version(out);
	} else if ((rest = starts_with(cmd, "SHOW SHARDS")) && !*rest) {
		show_shards(out, cfg);
	} else if ((rest = starts_with(cmd, "SHOW NODES")) && !*rest) {
		show_nodes(out, cfg);
	} else if ((rest = starts_with(cmd, "SHOW STATS")) && !*rest) {
		show_stats(out, cfg);
	} else if ((rest = starts_with(cmd, "SHOW CONFIG")) && !*rest) {
		show_config(out, cfg);
	} else if ((rest = starts_with(cmd, "SHOW ROUTE")) && *rest) {
		show_route(c, out, rest);
	} else if ((rest = starts_with(cmd, "RELOAD")) && !*rest) {
		char err[1024];
		if (remap_reload(proxy.loaded_config->path, err, sizeof(err)))
			proto_put_message(out, 'C', "RELOAD", 7);
		else
			proto_put_error(out, "ERROR", "F0000", err);
	} else if ((rest = starts_with(cmd, "SHUTDOWN")) && !*rest) {
		/* As SIGTERM: running transactions finish, then the proxy exits. */
		log_info("admin_shutdown", "\"client\":%llu", (unsigned long long)c->id);
		kill(getpid(), SIGTERM);
		proto_put_message(out, 'C', "SHUTDOWN", 9);
	} else {
		proto_put_error(out, "ERROR", "42601",
				"unknown admin command; the console knows SHOW VERSION, SHOW SHARDS, "
				"SHOW NODES, SHOW CONFIG, SHOW ROUTE <statement>, SHOW REBALANCE, "
				"RELOAD and SHUTDOWN");
	}
	free(cmd);
	proto_put_ready(out, 'I');
	return true;
}

/* ---- commands that read every worker ---- */

/*
 * Clients, servers and pools belong to their worker's thread. A command
 * that lists them asks every worker (ev_collect) to write its rows into
 * a buffer of its own, and answers once all have: one such command runs
 * at a time in the process (others get 55006 and may retry).
 */
typedef void (*collect_fn)(worker_t *w, result_t *r, void *arg);

typedef struct collect {
	collect_fn fn;
	void *arg;
	int n_columns;
	buf_t *bufs; /* per worker */
	uint64_t *rows;
	atomic_int remaining;
	client_t *client; /* NULL once it went away */
	struct event *ev_poll;
	const char *verb;
	const char *const *columns;
	void (*finish)(struct collect *k, buf_t *out); /* instead of a result set */
	long count; /* for finish */
} collect_t;

static pthread_mutex_t collect_lock = PTHREAD_MUTEX_INITIALIZER;
static collect_t *collecting; /* guarded by collect_lock */

void admin_on_collect(evutil_socket_t fd, short what, void *arg)
{
	worker_t *w = arg;
	(void)fd;
	(void)what;
	pthread_mutex_lock(&collect_lock);
	collect_t *k = collecting;
	pthread_mutex_unlock(&collect_lock);
	if (!k)
		return;
	result_t r = {&k->bufs[w->index], k->n_columns, 0};
	k->fn(w, &r, k->arg);
	k->rows[w->index] = r.rows;
	atomic_fetch_sub(&k->remaining, 1);
}

static void collect_poll(evutil_socket_t fd, short what, void *arg)
{
	collect_t *k = arg;
	(void)fd;
	(void)what;
	if (atomic_load(&k->remaining) > 0) {
		struct timeval tv = io_timeval(1);
		event_add(k->ev_poll, &tv);
		return;
	}
	client_t *c = k->client;
	if (c) {
		if (k->finish) {
			k->finish(k, &c->out);
		} else {
			result_t r;
			result_begin(&r, &c->out, k->columns, k->n_columns);
			for (int i = 0; i < proxy.n_workers; i++) {
				buf_append(&c->out, buf_head(&k->bufs[i]), buf_avail(&k->bufs[i]));
				r.rows += k->rows[i];
			}
			result_end(&r, "SHOW");
		}
		c->admin_collect = NULL;
		c->rm_waiting = false;
		proto_put_ready(&c->out, 'I');
		client_flush(c);
		if (c->state != CLIENT_CLOSED)
			client_process_input(c);
	}
	pthread_mutex_lock(&collect_lock);
	collecting = NULL;
	pthread_mutex_unlock(&collect_lock);
	for (int i = 0; i < proxy.n_workers; i++)
		buf_free(&k->bufs[i]);
	free(k->bufs);
	free(k->rows);
	event_free(k->ev_poll);
	free(k);
}

/* The admin client went away while its command collected. */
void admin_forget(client_t *c)
{
	if (c->admin_collect)
		c->admin_collect->client = NULL;
	c->admin_collect = NULL;
}

static void collect_start(client_t *c, const char *const *columns, int n_columns, collect_fn fn,
			  void *arg, void (*finish)(collect_t *, buf_t *))
{
	collect_t *k = calloc(1, sizeof(*k));
	if (k) {
		k->bufs = calloc((size_t)proxy.n_workers, sizeof(buf_t));
		k->rows = calloc((size_t)proxy.n_workers, sizeof(uint64_t));
		k->ev_poll = evtimer_new(c->worker->base, collect_poll, k);
	}
	if (!k || !k->bufs || !k->rows || !k->ev_poll) {
		if (k) {
			free(k->bufs);
			free(k->rows);
			if (k->ev_poll)
				event_free(k->ev_poll);
			free(k);
		}
		proto_put_error(&c->out, "ERROR", "53200", "out of memory");
		proto_put_ready(&c->out, 'I');
		return;
	}
	pthread_mutex_lock(&collect_lock);
	bool busy = collecting != NULL;
	if (!busy)
		collecting = k;
	pthread_mutex_unlock(&collect_lock);
	if (busy) {
		free(k->bufs);
		free(k->rows);
		event_free(k->ev_poll);
		free(k);
		proto_put_error(&c->out, "ERROR", "55006",
				"another admin command is reading the workers; run it again");
		proto_put_ready(&c->out, 'I');
		return;
	}
	k->fn = fn;
	k->arg = arg;
	k->columns = columns;
	k->n_columns = n_columns;
	k->finish = finish;
	k->client = c;
	atomic_store(&k->remaining, proxy.n_workers);
	c->admin_collect = k;
	c->rm_waiting = true;
	for (int i = 0; i < proxy.n_workers; i++)
		event_active(proxy.workers[i].ev_collect, EV_READ, 0);
	struct timeval tv = io_timeval(0);
	event_add(k->ev_poll, &tv);
}

static void fmt_i64(char *out, size_t n, int64_t v)
{
	snprintf(out, n, "%lld", (long long)v);
}

static void clients_rows(worker_t *w, result_t *r, void *arg)
{
	(void)arg;
	int64_t now = net_now_ms();
	for (client_t *c = w->clients; c; c = c->next) {
		if (c->state == CLIENT_CLOSED)
			continue;
		char wk[16], id[32], server[32], shard[CONFIG_NAME_MAX + 1] = "", node[16] = "",
						   age[32], idle[32];
		snprintf(wk, sizeof(wk), "%d", w->index);
		snprintf(id, sizeof(id), "%llu", (unsigned long long)c->id);
		server[0] = '\0';
		if (c->server) {
			snprintf(server, sizeof(server), "%llu", (unsigned long long)c->server->id);
			snprintf(shard, sizeof(shard), "%s", w->config->shards[c->server->pool->shard].name);
			snprintf(node, sizeof(node), "%d", c->server->pool->node);
		}
		fmt_i64(age, sizeof(age), (now - c->connect_ms) / 1000);
		fmt_i64(idle, sizeof(idle), now - c->last_active_ms);
		const char *state = c->rm_is_parked ? "paused" : c->fan ? "fanout" : client_state_name(c->state);
		const char *v[11] = {wk,  id,	 c->user,	c->database, c->addr, state,
				     server, shard, node[0] ? node : NULL, age, idle};
		result_row(r, v);
	}
}

static void servers_rows(worker_t *w, result_t *r, void *arg)
{
	(void)arg;
	int64_t now = net_now_ms();
	for (server_t *s = w->servers; s; s = s->all_next) {
		if (s->state == SERVER_CLOSED)
			continue;
		char wk[16], id[32], node[16], addr[300], client[32] = "", pid[16], tx[2], age[32],
								    busy[32];
		snprintf(wk, sizeof(wk), "%d", w->index);
		snprintf(id, sizeof(id), "%llu", (unsigned long long)s->id);
		snprintf(node, sizeof(node), "%d", s->pool->node);
		snprintf(addr, sizeof(addr), "%s:%d", s->pool->address.host, s->pool->address.port);
		if (s->client)
			snprintf(client, sizeof(client), "%llu", (unsigned long long)s->client->id);
		snprintf(pid, sizeof(pid), "%u", s->backend_pid);
		snprintf(tx, sizeof(tx), "%c", s->tx_status ? s->tx_status : '-');
		fmt_i64(age, sizeof(age), (now - s->created_ms) / 1000);
		fmt_i64(busy, sizeof(busy), s->busy_since_ms ? now - s->busy_since_ms : 0);
		const char *v[12] = {wk,
				     id,
				     w->config->shards[s->pool->shard].name,
				     node,
				     addr,
				     server_state_name(s->state),
				     client[0] ? client : NULL,
				     pid,
				     tx,
				     s->pool->user,
				     age,
				     busy};
		result_row(r, v);
	}
}

static void pool_row(const void *key, size_t len, void *value, void *arg)
{
	(void)key;
	(void)len;
	pool_t *p = value;
	result_t *r = arg;
	worker_t *w = p->worker;
	int64_t now = net_now_ms();
	char wk[16], node[16], addr[300], active[16], idle[16], connecting[16], waiting[16],
		max_wait[32], size[16];
	snprintf(wk, sizeof(wk), "%d", w->index);
	snprintf(node, sizeof(node), "%d", p->node);
	snprintf(addr, sizeof(addr), "%s:%d", p->address.host, p->address.port);
	snprintf(active, sizeof(active), "%d", p->n_active);
	snprintf(idle, sizeof(idle), "%d", p->n_idle);
	snprintf(connecting, sizeof(connecting), "%d", p->n_connecting);
	snprintf(waiting, sizeof(waiting), "%d", p->n_waiting);
	fmt_i64(max_wait, sizeof(max_wait), p->wait_head ? now - p->wait_head->wait_start_ms : 0);
	snprintf(size, sizeof(size), "%d", p->max_size);
	const char *v[12] = {wk,     w->config->shards[p->shard].name, node,	    addr,
			     p->user, p->database, active,  idle, connecting, waiting, max_wait, size};
	result_row(r, v);
}

static void pools_rows(worker_t *w, result_t *r, void *arg)
{
	(void)arg;
	hashmap_foreach(&w->pools, pool_row, r);
}

static void kill_rows(worker_t *w, result_t *r, void *arg)
{
	(void)r;
	uint64_t id = *(const uint64_t *)arg;
	for (client_t *c = w->clients; c; c = c->next) {
		if (c->id == id && c->state != CLIENT_CLOSED && !c->rm_waiting) {
			log_info("admin_kill", "\"client\":%llu", (unsigned long long)id);
			client_fatal(c, "57P01", "terminating connection due to administrator command (KILL)");
			r->rows++;
		}
	}
}

static uint64_t kill_id;

static void kill_finish(collect_t *k, buf_t *out)
{
	uint64_t n = 0;
	for (int i = 0; i < proxy.n_workers; i++)
		n += k->rows[i];
	if (n == 0) {
		char text[96];
		snprintf(text, sizeof(text), "no client %llu (SHOW CLIENTS lists them)",
			 (unsigned long long)kill_id);
		proto_put_error(out, "ERROR", "42704", text);
	} else {
		proto_put_message(out, 'C', "KILL", 5);
	}
}

/* SHOW CLIENTS | SERVERS | POOLS, KILL <client id>; false when not one. */
bool admin_worker_command(client_t *c, const char *cmd)
{
	static const char *const clients_cols[] = {"worker", "id",    "user",  "database",
						   "address", "state", "server", "shard",
						   "node",   "connected_s", "idle_ms"};
	static const char *const servers_cols[] = {"worker", "id",	 "shard", "node",
						   "address", "state", "client", "backend_pid",
						   "tx",     "user",	 "age_s", "busy_ms"};
	static const char *const pools_cols[] = {"worker", "shard",   "node",	    "address",
						 "user",   "database", "active",    "idle",
						 "connecting", "waiting", "max_wait_ms", "size"};
	const char *rest;
	if ((rest = starts_with(cmd, "SHOW CLIENTS")) && !*rest) {
		collect_start(c, clients_cols, 11, clients_rows, NULL, NULL);
	} else if ((rest = starts_with(cmd, "SHOW SERVERS")) && !*rest) {
		collect_start(c, servers_cols, 12, servers_rows, NULL, NULL);
	} else if ((rest = starts_with(cmd, "SHOW POOLS")) && !*rest) {
		collect_start(c, pools_cols, 12, pools_rows, NULL, NULL);
	} else if ((rest = starts_with(cmd, "KILL"))) {
		char *end;
		unsigned long long id = strtoull(rest, &end, 10);
		if (!*rest || *end || id == 0) {
			proto_put_error(&c->out, "ERROR", "42601", "usage: KILL <client id>");
			proto_put_ready(&c->out, 'I');
			return true;
		}
		kill_id = id; /* one collect at a time: see collect_lock */
		collect_start(c, NULL, 0, kill_rows, &kill_id, kill_finish);
	} else {
		return false;
	}
	return true;
}
