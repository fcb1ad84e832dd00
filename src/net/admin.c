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
#include <unistd.h>

#include "core/log.h"
#include "core/version.h"
#include "health/health.h"
#include "net/net.h"
#include "proto/proto.h"
#include "route/explain.h"

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

typedef struct {
	buf_t *out;
	int n_columns;
	uint64_t rows;
} result_t;

static void result_begin(result_t *r, buf_t *out, const char *const *columns, int n)
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
static void result_row(result_t *r, const char *const *values)
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

static void result_end(result_t *r, const char *verb)
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

static void show_version(buf_t *out)
{
	result_t r;
	const char *columns[1] = {"version"};
	const char *values[1] = {"shardgate " SHARDGATE_VERSION};
	result_begin(&r, out, columns, 1);
	result_row(&r, values);
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
	const char *columns[9] = {"shard",     "node",	 "address", "role",	    "state",
				  "circuit",   "lag_bytes", "lag_ms",  "last_error"};
	result_begin(&r, out, columns, 9);
	const health_snapshot_t *snap = health_acquire();
	for (int i = 0; snap && i < snap->n_nodes; i++) {
		const health_node_t *n = &snap->nodes[i];
		if (n->shard >= cfg->n_shards)
			continue;
		const cfg_shard_t *sh = &cfg->shards[n->shard];
		const cfg_node_t *cn = n->node == 0 ? &sh->primary : &sh->replicas[n->node - 1];
		char node[16], address[300], lag_bytes[32], lag_ms[32];
		snprintf(node, sizeof(node), "%d", n->node);
		snprintf(address, sizeof(address), "%s:%d", cn->address.host, cn->address.port);
		snprintf(lag_bytes, sizeof(lag_bytes), "%lld", (long long)n->lag_bytes);
		snprintf(lag_ms, sizeof(lag_ms), "%lld", (long long)n->lag_ms);
		const char *values[9] = {sh->name,
					 node,
					 address,
					 n->in_recovery ? "replica" : "primary",
					 node_state_name(n->state),
					 breaker_state_name(n->breaker),
					 lag_bytes,
					 lag_ms,
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
