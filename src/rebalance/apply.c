/*
 * apply.c - `shardgate rebalance plan | apply | abort` (see rebalance.h).
 */
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "config/config.h"
#include "rebalance/rebalance.h"
#include "rebalance/units.h"
#include "route/pgconn.h"

#define CUTOVER_ATTEMPTS 5
#define CATCHUP_TIMEOUT_MS 10000
#define SWITCH_RETRY_MS 60000

/* The bookkeeping of sql/rebalance.sql (the file is for reading). */
static const char BOOKKEEPING_SQL[] =
	"CREATE SCHEMA IF NOT EXISTS shardgate;"
	"CREATE TABLE IF NOT EXISTS shardgate.rebalance_runs ("
	" id bigserial PRIMARY KEY, old_digest text NOT NULL, new_digest text NOT NULL,"
	" state text NOT NULL DEFAULT 'running', started_at timestamptz NOT NULL DEFAULT now(),"
	" finished_at timestamptz);"
	"CREATE TABLE IF NOT EXISTS shardgate.rebalance_units ("
	" run_id bigint NOT NULL REFERENCES shardgate.rebalance_runs (id), unit_no int NOT NULL,"
	" spec text NOT NULL, source text NOT NULL, target text NOT NULL,"
	" state text NOT NULL DEFAULT 'planned', rows_moved bigint, checksum text,"
	" pause_ms double precision, copy_ms double precision, error text,"
	" updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (run_id, unit_no));";
static const char MARKER_SQL[] =
	"CREATE SCHEMA IF NOT EXISTS shardgate;"
	"CREATE TABLE IF NOT EXISTS shardgate.rebalance_marker ("
	" unit text PRIMARY KEY, seq bigint NOT NULL);";

typedef struct {
	int no;
	rb_unit_t unit;
	char spec[8192];
	char state[16];
	char name[64];	 /* publication, subscription and slot */
	char marker[64]; /* its row in shardgate.rebalance_marker */
	int64_t version; /* of the map with this unit moved */
	int64_t rows;
	double pause_ms, copy_ms;
	char error[512]; /* a verification that failed after the switch */
} unit_rec_t;

typedef struct {
	const rb_options_t *o;
	config_t *old, *new;
	const char *database;
	bool prepared[CONFIG_MAX_SHARDS];
	PGconn *proxies[RB_MAX_PROXIES];
	bool tty;
	int64_t run_id;
	PGconn *snap;  /* the target's state at the cut-over (REPEATABLE READ) */
	int snap_unit; /* whose */
	char err[2048];
} ctx_t;

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* A test hook: SHARDGATE_FAILPOINT=<name> kills the CLI there (kill -9). */
static void failpoint(const char *name)
{
	const char *fp = getenv("SHARDGATE_FAILPOINT");
	if (fp && strcmp(fp, name) == 0) {
		fflush(stdout);
		raise(SIGKILL);
	}
}

static bool fail(ctx_t *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool fail(ctx_t *x, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(x->err, sizeof(x->err), fmt, ap);
	va_end(ap);
	size_t n = strlen(x->err);
	while (n > 0 && (x->err[n - 1] == '\n' || x->err[n - 1] == ' '))
		x->err[--n] = '\0';
	return false;
}

/* ---- progress ---- */

static void json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fprintf(f, "\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			fprintf(f, "\\u%04x", *s);
		else
			fputc(*s, f);
	}
	fputc('"', f);
}

/* One event: a JSON line, or on a terminal a progress line per unit. */
static void event(ctx_t *x, const unit_rec_t *u, const char *phase, int64_t rows, double rate,
		  int64_t lag, double eta, const char *detail)
{
	if (x->o->dry_run)
		return;
	char what[600];
	if (u)
		rb_unit_describe(x->old, &u->unit, what, sizeof(what));
	else
		what[0] = '\0';
	if (x->tty) {
		printf("\r\033[K");
		if (u)
			printf("[unit %d] %s  %-9s", u->no, what, phase);
		else
			printf("%-9s", phase);
		if (rows >= 0)
			printf("  %" PRId64 " rows", rows);
		if (rate > 0)
			printf("  %.0f rows/s", rate);
		if (lag >= 0)
			printf("  lag %" PRId64 " B", lag);
		if (eta >= 0)
			printf("  ETA %.0fs", eta);
		if (detail)
			printf("  %s", detail);
		bool final = strcmp(phase, "copying") != 0;
		printf(final ? "\n" : "");
		fflush(stdout);
		return;
	}
	printf("{\"event\":\"rebalance\",\"run\":%" PRId64, x->run_id);
	if (u) {
		printf(",\"unit\":%d,\"what\":", u->no);
		json_string(stdout, what);
	}
	printf(",\"phase\":\"%s\"", phase);
	if (rows >= 0)
		printf(",\"rows\":%" PRId64, rows);
	if (rate > 0)
		printf(",\"rows_per_s\":%.0f", rate);
	if (lag >= 0)
		printf(",\"lag_bytes\":%" PRId64, lag);
	if (eta >= 0)
		printf(",\"eta_s\":%.1f", eta);
	if (detail) {
		printf(",\"detail\":");
		json_string(stdout, detail);
	}
	printf("}\n");
	fflush(stdout);
}

/* ---- SQL on shards ---- */

static PGconn *conn(ctx_t *x, int shard)
{
	char err[512];
	PGconn *c = pgconn_get(x->old, shard, x->database, err, sizeof(err));
	if (!c) {
		fail(x, "%s", err);
		return NULL;
	}
	if (!x->prepared[shard]) {
		PGresult *r = PQexec(c, "SET statement_timeout = 0; SET lock_timeout = '10s'");
		PQclear(r);
		x->prepared[shard] = true;
	}
	return c;
}

/* A read (runs in dry runs too); NULL on failure (message in x->err). */
static PGresult *query(ctx_t *x, int shard, const char *sql, int n, const char *const *params)
{
	PGconn *c = conn(x, shard);
	if (!c)
		return NULL;
	PGresult *r = n ? PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0) : PQexec(c, sql);
	ExecStatusType s = PQresultStatus(r);
	if (s != PGRES_TUPLES_OK && s != PGRES_COMMAND_OK) {
		fail(x, "shard %s: %s", x->old->shards[shard].name, PQresultErrorMessage(r));
		PQclear(r);
		if (PQstatus(c) != CONNECTION_OK) {
			pgconn_discard(c);
			x->prepared[shard] = false;
		}
		return NULL;
	}
	return r;
}

/* A change (printed, not run, in dry runs). */
static bool run(ctx_t *x, int shard, const char *sql, int n, const char *const *params)
{
	if (x->o->dry_run) {
		printf("-- on %s", x->old->shards[shard].name);
		for (int i = 0; i < n; i++)
			printf("%s $%d = '%s'", i ? "," : ":", i + 1, params[i]);
		printf("\n%s;\n", sql);
		return true;
	}
	PGresult *r = query(x, shard, sql, n, params);
	PQclear(r);
	return r != NULL;
}

static bool scalar(ctx_t *x, int shard, const char *sql, int n, const char *const *params,
		   char *out, size_t outlen)
{
	PGresult *r = query(x, shard, sql, n, params);
	if (!r)
		return false;
	snprintf(out, outlen, "%s", PQntuples(r) > 0 && !PQgetisnull(r, 0, 0) ? PQgetvalue(r, 0, 0) : "");
	PQclear(r);
	return true;
}

/* ---- the proxies ---- */

static bool proxy_connect(ctx_t *x, int i)
{
	if (x->proxies[i] && PQstatus(x->proxies[i]) == CONNECTION_OK)
		return true;
	if (x->proxies[i])
		PQfinish(x->proxies[i]);
	cfg_address_t a;
	if (!config_parse_address(x->o->proxies[i], &a))
		return fail(x, "--proxy %s: expected HOST:PORT", x->o->proxies[i]);
	char port[16];
	snprintf(port, sizeof(port), "%d", a.port);
	const char *user = x->o->proxy_user ? x->o->proxy_user
			   : x->old->n_admin_users ? x->old->admin_users[0]
						   : "postgres";
	const char *keys[] = {"host", "port", "user", "dbname", "connect_timeout", "application_name",
			      NULL};
	const char *values[] = {a.host, port, user, "shardgate", "5", "shardgate-rebalance", NULL};
	x->proxies[i] = PQconnectdbParams(keys, values, 0);
	if (PQstatus(x->proxies[i]) != CONNECTION_OK)
		return fail(x, "proxy %s: %s", x->o->proxies[i], PQerrorMessage(x->proxies[i]));
	return true;
}

/* Sends an admin command to proxy i; its first row's state in out. */
static bool proxy_command(ctx_t *x, int i, const char *cmd, char *out, size_t outlen)
{
	if (x->o->dry_run) {
		printf("-- on proxy %s\n%s;\n", x->o->proxies[i], cmd);
		snprintf(out, outlen, "dry");
		return true;
	}
	if (!proxy_connect(x, i))
		return false;
	PGresult *r = PQexec(x->proxies[i], cmd);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		fail(x, "proxy %s: %s", x->o->proxies[i],
		     PQresultErrorMessage(r)[0] ? PQresultErrorMessage(r)
						: PQerrorMessage(x->proxies[i]));
		PQclear(r);
		return false;
	}
	snprintf(out, outlen, "%s", PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "");
	PQclear(r);
	return true;
}

static void proxy_spec_command(char *out, size_t outlen, const char *verb, const unit_rec_t *u)
{
	char lit[sizeof(u->spec) * 2 + 3];
	rb_sql_literal(lit, sizeof(lit), u->spec);
	snprintf(out, outlen, "REBALANCE %s %" PRId64 " %s", verb, u->version, lit);
}

static void resume_all(ctx_t *x, const unit_rec_t *u)
{
	char cmd[64], state[32];
	snprintf(cmd, sizeof(cmd), "REBALANCE RESUME %" PRId64, u->version);
	char saved[sizeof(x->err)];
	memcpy(saved, x->err, sizeof(saved));
	for (int i = 0; i < x->o->n_proxies; i++)
		proxy_command(x, i, cmd, state, sizeof(state));
	memcpy(x->err, saved, sizeof(saved));
}

/* ---- bookkeeping ---- */

static int home(const ctx_t *x)
{
	return x->old->default_shard;
}

static bool set_state(ctx_t *x, unit_rec_t *u, const char *state, const char *error)
{
	snprintf(u->state, sizeof(u->state), "%s", state);
	if (x->o->dry_run)
		return true;
	char run_id[32], no[32], rows[32], pause[32], copy[32];
	snprintf(run_id, sizeof(run_id), "%" PRId64, x->run_id);
	snprintf(no, sizeof(no), "%d", u->no);
	snprintf(rows, sizeof(rows), "%" PRId64, u->rows);
	snprintf(pause, sizeof(pause), "%.1f", u->pause_ms);
	snprintf(copy, sizeof(copy), "%.1f", u->copy_ms);
	const char *p[7] = {state, error, rows, pause, copy, run_id, no};
	return run(x, home(x),
		   "UPDATE shardgate.rebalance_units SET state = $1, error = $2, rows_moved = "
		   "nullif($3, '-1')::bigint, pause_ms = nullif($4, '0.0')::float8, copy_ms = "
		   "nullif($5, '0.0')::float8, updated_at = now() WHERE run_id = $6 AND unit_no = $7",
		   7, p);
}

/* Finds the run turning OLD into NEW (or makes it) and its units. */
static bool load_run(ctx_t *x, const rb_plan_t *plan, unit_rec_t **out, int *n_out,
		     bool create, bool *finished)
{
	char od[17], nd[17];
	rb_map_digest(x->old, od);
	rb_map_digest(x->new, nd);
	const char *p[2] = {od, nd};
	*finished = false;
	if (!run(x, home(x), BOOKKEEPING_SQL, 0, NULL))
		return false;
	if (x->o->dry_run) {
		x->run_id = 0;
	} else {
		PGresult *r = query(x, home(x),
				    "SELECT id, state FROM shardgate.rebalance_runs WHERE old_digest = "
				    "$1 AND new_digest = $2 AND state IN ('running', 'done') ORDER BY "
				    "id DESC LIMIT 1",
				    2, p);
		if (!r)
			return false;
		if (PQntuples(r) == 1) {
			x->run_id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
			*finished = strcmp(PQgetvalue(r, 0, 1), "done") == 0;
		} else {
			x->run_id = 0;
		}
		PQclear(r);
	}
	if (x->run_id == 0 && !create)
		return true;
	unit_rec_t *units = NULL;
	int n = 0;
	if (x->run_id == 0) {
		if (!x->o->dry_run) {
			char id[32];
			if (!scalar(x, home(x),
				    "INSERT INTO shardgate.rebalance_runs (old_digest, new_digest) VALUES "
				    "($1, $2) RETURNING id",
				    2, p, id, sizeof(id)))
				return false;
			x->run_id = strtoll(id, NULL, 10);
		}
		units = calloc((size_t)(plan->n_units ? plan->n_units : 1), sizeof(*units));
		if (!units)
			return fail(x, "out of memory");
		for (int i = 0; i < plan->n_units; i++) {
			unit_rec_t *u = &units[n++];
			u->no = i + 1;
			char *spec = rb_unit_spec(x->old, &plan->units[i]);
			char err[512];
			if (!spec || strlen(spec) >= sizeof(u->spec) ||
			    !rb_unit_parse(x->old, spec, &u->unit, err, sizeof(err))) {
				free(spec);
				*out = units;
				*n_out = n;
				return fail(x, "unit %d: too large a unit; use --batch", i + 1);
			}
			snprintf(u->spec, sizeof(u->spec), "%s", spec);
			free(spec);
			snprintf(u->state, sizeof(u->state), "planned");
			char id[32], no[32];
			snprintf(id, sizeof(id), "%" PRId64, x->run_id);
			snprintf(no, sizeof(no), "%d", u->no);
			const char *q[5] = {id, no, u->spec, x->old->shards[u->unit.source].name,
					    x->old->shards[u->unit.target].name};
			if (!x->o->dry_run &&
			    !run(x, home(x),
				 "INSERT INTO shardgate.rebalance_units (run_id, unit_no, spec, source, "
				 "target) VALUES ($1, $2, $3, $4, $5)",
				 5, q)) {
				*out = units;
				*n_out = n;
				return false;
			}
		}
	} else {
		char id[32];
		snprintf(id, sizeof(id), "%" PRId64, x->run_id);
		const char *q[1] = {id};
		PGresult *r = query(x, home(x),
				    "SELECT unit_no, spec, state, coalesce(rows_moved, -1), "
				    "coalesce(pause_ms, 0), coalesce(copy_ms, 0), coalesce(error, '') FROM "
				    "shardgate.rebalance_units WHERE run_id = $1 ORDER BY unit_no",
				    1, q);
		if (!r)
			return false;
		n = PQntuples(r);
		units = calloc((size_t)(n ? n : 1), sizeof(*units));
		if (!units) {
			PQclear(r);
			return fail(x, "out of memory");
		}
		for (int i = 0; i < n; i++) {
			unit_rec_t *u = &units[i];
			u->no = atoi(PQgetvalue(r, i, 0));
			if ((size_t)PQgetlength(r, i, 1) >= sizeof(u->spec)) {
				/* cut short, it could name other buckets or keys */
				PQclear(r);
				*out = units;
				*n_out = i;
				return fail(x, "bookkeeping unit %d: its spec is longer than %zu bytes",
					    u->no, sizeof(u->spec) - 1);
			}
			snprintf(u->spec, sizeof(u->spec), "%s", PQgetvalue(r, i, 1));
			snprintf(u->state, sizeof(u->state), "%s", PQgetvalue(r, i, 2));
			u->rows = strtoll(PQgetvalue(r, i, 3), NULL, 10);
			u->pause_ms = strtod(PQgetvalue(r, i, 4), NULL);
			u->copy_ms = strtod(PQgetvalue(r, i, 5), NULL);
			snprintf(u->error, sizeof(u->error), "%s", PQgetvalue(r, i, 6));
			char err[512];
			if (!rb_unit_parse(x->old, u->spec, &u->unit, err, sizeof(err))) {
				PQclear(r);
				*out = units;
				*n_out = i;
				return fail(x, "bookkeeping unit %d: %s", u->no, err);
			}
		}
		PQclear(r);
	}
	for (int i = 0; i < n; i++) {
		unit_rec_t *u = &units[i];
		snprintf(u->name, sizeof(u->name), "shardgate_rb_%" PRId64 "_%d", x->run_id, u->no);
		snprintf(u->marker, sizeof(u->marker), "%" PRId64 ".%d", x->run_id, u->no);
		u->version = x->run_id * 100000 + u->no;
		if (u->rows == 0 && strcmp(u->state, "planned") == 0)
			u->rows = -1;
	}
	*out = units;
	*n_out = n;
	return true;
}

/* ---- tables ---- */

/* The tables moving with the unit, in map order. */
static int group_tables(const ctx_t *x, const rb_unit_t *u, int *out)
{
	int n = 0;
	for (int t = 0; t < x->old->n_tables; t++)
		if (rb_unit_has_table(x->old, u, t))
			out[n++] = t;
	return n;
}

/* Creates the table on the target from the source's definition when absent. */
static bool ensure_target_table(ctx_t *x, const rb_unit_t *u, int t)
{
	const char *name = x->old->tables[t].name;
	const char *p[1] = {name};
	char have[8];
	if (!scalar(x, u->target, "SELECT to_regclass($1) IS NOT NULL", 1, p, have, sizeof(have)))
		return false;
	if (strcmp(have, "t") == 0)
		return true;
	PGresult *cols = query(x, u->source,
			       "SELECT quote_ident(a.attname), format_type(a.atttypid, a.atttypmod), "
			       "a.attnotnull FROM pg_attribute a WHERE a.attrelid = $1::regclass AND "
			       "a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
			       1, p);
	if (!cols)
		return false;
	char pk[1024] = "";
	if (!scalar(x, u->source,
		    "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = "
		    "$1::regclass AND contype = 'p'",
		    1, p, pk, sizeof(pk))) {
		PQclear(cols);
		return false;
	}
	size_t cap = 1024 + (size_t)PQntuples(cols) * 400, len = 0;
	char *sql = malloc(cap);
	if (!sql) {
		PQclear(cols);
		return fail(x, "out of memory");
	}
	char qname[300];
	rb_sql_table(qname, sizeof(qname), name);
	const char *dot = strchr(name, '.');
	if (dot) {
		char schema[CONFIG_NAME_MAX * 2 + 4], s[CONFIG_NAME_MAX + 1];
		snprintf(s, sizeof(s), "%.*s", (int)(dot - name), name);
		rb_sql_table(schema, sizeof(schema), s);
		len += (size_t)snprintf(sql + len, cap - len, "CREATE SCHEMA IF NOT EXISTS %s; ", schema);
	}
	len += (size_t)snprintf(sql + len, cap - len, "CREATE TABLE IF NOT EXISTS %s (", qname);
	for (int i = 0; i < PQntuples(cols); i++)
		len += (size_t)snprintf(sql + len, cap - len, "%s%s %s%s", i ? ", " : "",
					PQgetvalue(cols, i, 0), PQgetvalue(cols, i, 1),
					strcmp(PQgetvalue(cols, i, 2), "t") == 0 ? " NOT NULL" : "");
	if (pk[0])
		len += (size_t)snprintf(sql + len, cap - len, ", %s", pk);
	snprintf(sql + len, cap - len, ")");
	PQclear(cols);
	bool ok = run(x, u->target, sql, 0, NULL);
	free(sql);
	return ok;
}

/* fmt with the table's quoted name and the unit's condition on it for its
 * two %s (malloc'ed; NULL out of memory, with the message in x->err). */
static char *unit_sql_text(ctx_t *x, const rb_unit_t *u, int t, const char *fmt)
{
	char qname[300];
	rb_sql_table(qname, sizeof(qname), x->old->tables[t].name);
	char *pred = rb_unit_predicate(x->old, u, t);
	size_t cap = (pred ? strlen(pred) : 0) + strlen(fmt) + 512;
	char *sql = pred ? malloc(cap) : NULL;
	if (sql)
		snprintf(sql, cap, fmt, qname, pred);
	else
		fail(x, "out of memory");
	free(pred);
	return sql;
}

/* Count and order-independent checksum of the unit's rows of table t, on
 * a shard's primary or, with `on` given, on that connection. */
static bool unit_sum(ctx_t *x, const rb_unit_t *u, int t, int shard, PGconn *on, char *out,
		     size_t outlen)
{
	char *sql = unit_sql_text(
		x, u, t,
		"SELECT count(*) || ':' || coalesce(sum(hashtextextended(t::text, 0)::numeric), 0) "
		"FROM %s AS t WHERE %s");
	if (!sql)
		return false;
	bool ok;
	if (on) {
		PGresult *r = PQexec(on, sql);
		ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
		if (ok)
			snprintf(out, outlen, "%s", PQgetvalue(r, 0, 0));
		else
			fail(x, "shard %s: %s", x->old->shards[shard].name, PQresultErrorMessage(r));
		PQclear(r);
	} else {
		ok = scalar(x, shard, sql, 0, NULL, out, outlen);
	}
	free(sql);
	return ok;
}

/* Runs "<verb> FROM table WHERE <the unit's rows>" style SQL on a shard. */
static bool unit_sql(ctx_t *x, const rb_unit_t *u, int t, int shard, const char *fmt)
{
	char *sql = unit_sql_text(x, u, t, fmt);
	bool ok = sql && run(x, shard, sql, 0, NULL);
	free(sql);
	return ok;
}

/* ---- prerequisites ---- */

static bool check_unit(ctx_t *x, const rb_unit_t *u, FILE *report)
{
	bool ok = true;
	char v[64];
	const char *src = x->old->shards[u->source].name;
	if (!scalar(x, u->source, "SHOW wal_level", 0, NULL, v, sizeof(v)))
		return false;
	fprintf(report, "    %s wal_level=%s on %s\n", strcmp(v, "logical") == 0 ? "ok  " : "FAIL", v,
		src);
	ok = ok && strcmp(v, "logical") == 0;
	if (!scalar(x, u->source,
		    "SELECT current_setting('max_replication_slots')::int - count(*) FROM "
		    "pg_replication_slots",
		    0, NULL, v, sizeof(v)))
		return false;
	fprintf(report, "    %s %s free replication slots on %s\n", atoi(v) > 0 ? "ok  " : "FAIL", v,
		src);
	ok = ok && atoi(v) > 0;
	int tables[CONFIG_MAX_SHARDS * 4];
	int n = group_tables(x, u, tables);
	for (int i = 0; i < n; i++) {
		const cfg_table_t *t = &x->old->tables[tables[i]];
		const char *p[2] = {t->name, t->key};
		if (!scalar(x, u->source,
			    "SELECT CASE WHEN to_regclass($1) IS NULL THEN 'missing' WHEN "
			    "c.relreplident = 'f' THEN 'full' WHEN EXISTS (SELECT 1 FROM pg_index i "
			    "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = "
			    "ANY (i.indkey) WHERE i.indrelid = c.oid AND a.attname = $2 AND "
			    "((c.relreplident = 'd' AND i.indisprimary) OR (c.relreplident = 'i' "
			    "AND i.indisreplident))) THEN 'key' ELSE 'no' END FROM pg_class c "
			    "WHERE c.oid = coalesce(to_regclass($1), 'pg_class'::regclass)",
			    2, p, v, sizeof(v)))
			return false;
		bool good = strcmp(v, "key") == 0 || strcmp(v, "full") == 0;
		if (strcmp(v, "missing") == 0)
			fprintf(report, "    FAIL table %s does not exist on %s\n", t->name, src);
		else
			fprintf(report,
				"    %s %s: replica identity %s the key %s (row filters of UPDATE "
				"and DELETE need it)\n",
				good ? "ok  " : "FAIL", t->name,
				good ? (v[0] == 'f' ? "is FULL, covers" : "covers") : "does not cover",
				t->key);
		ok = ok && good;
		const char *q[1] = {t->name};
		if (!scalar(x, u->target, "SELECT to_regclass($1) IS NOT NULL", 1, q, v, sizeof(v)))
			return false;
		fprintf(report, "    ok   %s on %s: %s\n", t->name, x->old->shards[u->target].name,
			v[0] == 't' ? "exists" : "will be created from the source's definition");
	}
	return ok;
}

static bool estimate(ctx_t *x, rb_unit_t *u)
{
	int tables[CONFIG_MAX_SHARDS * 4];
	int n = group_tables(x, u, tables);
	u->rows = u->bytes = 0;
	for (int i = 0; i < n; i++) {
		char *sql = unit_sql_text(x, u, tables[i],
					  "SELECT count(*), coalesce(sum(pg_column_size(t.*)), 0) "
					  "FROM %s AS t WHERE %s");
		if (!sql)
			return false;
		PGresult *r = query(x, u->source, sql, 0, NULL);
		free(sql);
		if (!r)
			return false;
		u->rows += strtoll(PQgetvalue(r, 0, 0), NULL, 10);
		u->bytes += strtoll(PQgetvalue(r, 0, 1), NULL, 10);
		PQclear(r);
	}
	return true;
}

/* ---- maps ---- */

static int directory_lookup(const config_t *cfg, int table, const char *key, void *arg, char *err,
			    size_t errlen)
{
	ctx_t *x = arg;
	const cfg_table_t *t = &cfg->tables[table];
	char sql[512];
	snprintf(sql, sizeof(sql), "SELECT shard FROM %s WHERE table_name = $1 AND key = $2",
		 t->directory_table);
	const char *p[2] = {t->name, key};
	char shard[CONFIG_NAME_MAX + 1];
	if (!scalar(x, t->directory_shard, sql, 2, p, shard, sizeof(shard))) {
		snprintf(err, errlen, "%s", x->err);
		return -2;
	}
	if (!shard[0])
		return -1;
	int s = config_find_shard(cfg, shard);
	if (s < 0) {
		snprintf(err, errlen, "directory %s: key %s is on unknown shard %s", t->directory_table,
			 key, shard);
		return -2;
	}
	return s;
}

static bool load_maps(ctx_t *x, rb_plan_t *plan)
{
	char err[1024];
	if (!config_load(x->o->old_path, &x->old, err, sizeof(err)))
		return fail(x, "%s", err);
	if (!config_load(x->o->new_path, &x->new, err, sizeof(err)))
		return fail(x, "%s", err);
	x->database = x->o->database       ? x->o->database
		      : x->old->backend.database[0] ? x->old->backend.database
						     : "postgres";
	if (!rb_plan_build(x->old, x->new, x->o->batch, directory_lookup, x, plan, err, sizeof(err)))
		return fail(x, "%s", x->err[0] && strstr(err, "directory") ? x->err : err);
	return true;
}

static void finish(ctx_t *x)
{
	PQfinish(x->snap);
	x->snap = NULL;
	for (int i = 0; i < RB_MAX_PROXIES; i++)
		if (x->proxies[i])
			PQfinish(x->proxies[i]);
	pgconn_thread_done();
	if (x->old)
		config_free(x->old);
	if (x->new)
		config_free(x->new);
}

static void free_units(unit_rec_t *units, int n)
{
	for (int i = 0; i < n; i++)
		rb_unit_free(&units[i].unit);
	free(units);
}

/* ---- plan ---- */

int rb_plan_command(const rb_options_t *o)
{
	ctx_t x = {.o = o};
	rb_plan_t plan = {0};
	if (!load_maps(&x, &plan)) {
		fprintf(stderr, "shardgate rebalance plan: %s\n", x.err);
		finish(&x);
		return 1;
	}
	bool ok = true;
	printf("rebalance plan: %s -> %s: %d unit%s\n", o->old_path, o->new_path, plan.n_units,
	       plan.n_units == 1 ? "" : "s");
	int64_t rows = 0, bytes = 0;
	for (int i = 0; i < plan.n_units && ok; i++) {
		rb_unit_t *u = &plan.units[i];
		char what[600];
		rb_unit_describe(x.old, u, what, sizeof(what));
		if (!estimate(&x, u)) {
			ok = false;
			break;
		}
		rows += u->rows;
		bytes += u->bytes;
		printf("unit %d: %s\n    %" PRId64 " rows, %.1f MB\n", i + 1, what, u->rows,
		       (double)u->bytes / 1e6);
		char *spec = rb_unit_spec(x.old, u);
		printf("    unit spec: %s\n", spec ? spec : "?");
		free(spec);
		if (!check_unit(&x, u, stdout))
			ok = false;
	}
	if (x.err[0])
		fprintf(stderr, "shardgate rebalance plan: %s\n", x.err);
	printf("total: %" PRId64 " rows, %.1f MB to move\n", rows, (double)bytes / 1e6);
	if (plan.advice)
		printf("note: %s", plan.advice);
	if (!ok)
		printf("the plan cannot be applied as it is: see FAIL above\n");
	rb_plan_free(&plan);
	finish(&x);
	return ok ? 0 : 1;
}

/* ---- apply: the steps of one unit ---- */

static void conninfo_of(const ctx_t *x, int shard, char *out, size_t outlen)
{
	const cfg_shard_t *s = &x->old->shards[shard];
	char pw[512];
	rb_sql_literal(pw, sizeof(pw), x->old->backend.password ? x->old->backend.password : "");
	snprintf(out, outlen, "host=%s port=%d user=%s dbname=%s password=%s", s->primary.address.host,
		 s->primary.address.port,
		 x->old->backend.user[0] ? x->old->backend.user : "postgres", x->database, pw);
}

/* Drops what a unit made (subscription, publication, slot, marker rows). */
static bool drop_replication(ctx_t *x, unit_rec_t *u)
{
	const rb_unit_t *un = &u->unit;
	const char *p[1] = {u->name};
	char have[8];
	if (!x->o->dry_run &&
	    !scalar(x, un->target, "SELECT count(*) FROM pg_subscription WHERE subname = $1", 1, p,
		    have, sizeof(have)))
		return false;
	if (x->o->dry_run || strcmp(have, "0") != 0) {
		char sql[256];
		snprintf(sql, sizeof(sql), "DROP SUBSCRIPTION IF EXISTS %s", u->name);
		if (!run(x, un->target, sql, 0, NULL)) {
			/* The source may be gone: detach the slot and drop again. */
			snprintf(sql, sizeof(sql),
				 "ALTER SUBSCRIPTION %s DISABLE; ALTER SUBSCRIPTION %s SET (slot_name "
				 "= NONE); DROP SUBSCRIPTION %s",
				 u->name, u->name, u->name);
			if (!run(x, un->target, sql, 0, NULL))
				return false;
		}
	}
	char sql[256];
	snprintf(sql, sizeof(sql), "DROP PUBLICATION IF EXISTS %s", u->name);
	if (!run(x, un->source, sql, 0, NULL))
		return false;
	if (!run(x, un->source,
		 "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE "
		 "slot_name = $1 AND NOT active",
		 1, p))
		return false;
	const char *m[1] = {u->marker};
	return run(x, un->source, "DELETE FROM shardgate.rebalance_marker WHERE unit = $1", 1, m) &&
	       run(x, un->target, "DELETE FROM shardgate.rebalance_marker WHERE unit = $1", 1, m);
}

/* planned -> copying: clean leftovers, publish, subscribe. */
static bool start_copy(ctx_t *x, unit_rec_t *u)
{
	const rb_unit_t *un = &u->unit;
	int tables[CONFIG_MAX_SHARDS * 4];
	int n = group_tables(x, un, tables);
	if (!run(x, un->source, MARKER_SQL, 0, NULL) || !run(x, un->target, MARKER_SQL, 0, NULL))
		return false;
	for (int i = 0; i < n; i++)
		if (!ensure_target_table(x, un, tables[i]))
			return false;
	if (!drop_replication(x, u))
		return false;
	/* Rows of the unit on the target can only be left from an attempt
	 * that was abandoned: the map does not put them there yet. */
	for (int i = n - 1; i >= 0; i--)
		if (!unit_sql(x, un, tables[i], un->target, "DELETE FROM %s WHERE %s"))
			return false;
	const char *m[1] = {u->marker};
	if (!run(x, un->source,
		 "INSERT INTO shardgate.rebalance_marker VALUES ($1, 0) ON CONFLICT (unit) DO UPDATE "
		 "SET seq = 0",
		 1, m))
		return false;
	size_t cap = 4096, len = 0;
	for (int i = 0; i < n; i++) {
		char *pred = rb_unit_predicate(x->old, un, tables[i]);
		cap += pred ? strlen(pred) + 400 : 0;
		free(pred);
	}
	char *sql = malloc(cap);
	if (!sql)
		return fail(x, "out of memory");
	len += (size_t)snprintf(sql + len, cap - len, "CREATE PUBLICATION %s FOR TABLE ", u->name);
	for (int i = 0; i < n; i++) {
		char qname[300];
		rb_sql_table(qname, sizeof(qname), x->old->tables[tables[i]].name);
		char *pred = rb_unit_predicate(x->old, un, tables[i]);
		len += (size_t)snprintf(sql + len, cap - len, "%s WHERE (%s), ", qname,
					pred ? pred : "false");
		free(pred);
	}
	char lit[128];
	rb_sql_literal(lit, sizeof(lit), u->marker);
	snprintf(sql + len, cap - len, "shardgate.rebalance_marker WHERE (unit = %s)", lit);
	bool ok = run(x, un->source, sql, 0, NULL);
	if (ok) {
		char ci[1024], cil[2200];
		conninfo_of(x, un->source, ci, sizeof(ci));
		rb_sql_literal(cil, sizeof(cil), ci);
		snprintf(sql, cap,
			 "CREATE SUBSCRIPTION %s CONNECTION %s PUBLICATION %s WITH (copy_data = "
			 "true)",
			 u->name, cil, u->name);
		ok = run(x, un->target, sql, 0, NULL);
	}
	free(sql);
	return ok && set_state(x, u, "copying", NULL);
}

/* copying: waits until every table is synchronized and caught up. */
static bool wait_copy(ctx_t *x, unit_rec_t *u)
{
	if (x->o->dry_run)
		return true;
	const rb_unit_t *un = &u->unit;
	const char *p[1] = {u->name};
	int64_t start = now_ms(), last_report = 0, total = un->rows;
	for (;;) {
		PGresult *r = query(x, un->target,
				    "SELECT count(*) FILTER (WHERE r.srsubstate NOT IN ('r', 's')), "
				    "count(*), (SELECT coalesce(sum(tuples_processed), 0) FROM "
				    "pg_stat_progress_copy), (SELECT coalesce(sum(sync_error_count + "
				    "apply_error_count), 0) FROM pg_stat_subscription_stats st WHERE "
				    "st.subname = $1) FROM pg_subscription_rel r JOIN pg_subscription s "
				    "ON s.oid = r.srsubid WHERE s.subname = $1",
				    1, p);
		if (!r)
			return false;
		int pending = atoi(PQgetvalue(r, 0, 0)), n = atoi(PQgetvalue(r, 0, 1));
		int64_t copying = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
		int64_t errors = strtoll(PQgetvalue(r, 0, 3), NULL, 10);
		PQclear(r);
		if (n == 0)
			return fail(x, "unit %d: subscription %s is gone from %s; run apply again", u->no,
				    u->name, x->old->shards[un->target].name);
		if (errors > 0)
			return fail(x,
				    "unit %d: the subscription on %s reports %" PRId64
				    " errors (its server log says why: a table definition that "
				    "differs, a key conflict)",
				    u->no, x->old->shards[un->target].name, errors);
		char lag[32] = "-1";
		if (!scalar(x, un->source,
			    "SELECT coalesce(pg_current_wal_lsn() - confirmed_flush_lsn, 0)::bigint "
			    "FROM pg_replication_slots WHERE slot_name = $1",
			    1, p, lag, sizeof(lag)))
			return false;
		int64_t now = now_ms();
		double secs = (double)(now - start) / 1000.0;
		if (pending == 0) {
			u->copy_ms = (double)(now - start);
			return true;
		}
		if (now - last_report >= (x->tty ? 200 : 1000)) {
			double rate = secs > 0 ? (double)copying / secs : 0;
			double eta = rate > 0 && total > copying ? (double)(total - copying) / rate : -1;
			event(x, u, "copying", copying, rate, lag[0] ? strtoll(lag, NULL, 10) : -1, eta,
			      NULL);
			last_report = now;
		}
		sleep_ms(20);
	}
}

static void report_rows(ctx_t *x, unit_rec_t *u, const char *phase, double ms)
{
	char detail[128];
	snprintf(detail, sizeof(detail), "%.0f ms", ms);
	event(x, u, phase, u->rows, 0, -1, -1, detail);
}

/* Opens a REPEATABLE READ transaction on the unit's target and takes its
 * snapshot now (kept in x->snap until the unit settles). */
static bool take_snapshot(ctx_t *x, unit_rec_t *u)
{
	char ci[1024];
	conninfo_of(x, u->unit.target, ci, sizeof(ci));
	PQfinish(x->snap);
	x->snap = PQconnectdb(ci);
	if (PQstatus(x->snap) != CONNECTION_OK)
		return fail(x, "shard %s: %s", x->old->shards[u->unit.target].name,
			    PQerrorMessage(x->snap));
	PGresult *r = PQexec(x->snap, "SET statement_timeout = 0; BEGIN ISOLATION LEVEL "
				      "REPEATABLE READ READ ONLY; SELECT 1");
	bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
	if (!ok)
		fail(x, "shard %s: %s", x->old->shards[u->unit.target].name, PQresultErrorMessage(r));
	PQclear(r);
	x->snap_unit = u->no;
	return ok;
}

/* A directory unit's keys now live on the target. */
static bool update_directory(ctx_t *x, const rb_unit_t *un)
{
	const cfg_table_t *t = &x->old->tables[un->table];
	char sql[512];
	snprintf(sql, sizeof(sql),
		 "UPDATE %s SET shard = $1 WHERE table_name = $2 AND key = ANY ($3::text[])",
		 t->directory_table);
	size_t cap = 16, len = 0;
	for (int i = 0; i < un->n_keys; i++)
		cap += strlen(un->keys[i]) * 2 + 4;
	char *arr = malloc(cap);
	if (!arr)
		return fail(x, "out of memory");
	arr[len++] = '{';
	for (int i = 0; i < un->n_keys; i++) {
		if (i)
			arr[len++] = ',';
		arr[len++] = '"';
		for (const char *k = un->keys[i]; *k; k++) {
			if (*k == '"' || *k == '\\')
				arr[len++] = '\\';
			arr[len++] = *k;
		}
		arr[len++] = '"';
	}
	arr[len++] = '}';
	arr[len] = '\0';
	const char *q[3] = {x->old->shards[un->target].name, t->name, arr};
	bool ok = run(x, t->directory_shard, sql, 3, q);
	free(arr);
	return ok;
}

/* Sends cmd to every proxy, retrying each for up to SWITCH_RETRY_MS: a
 * proxy that cannot be told keeps the unit's statements waiting, so the
 * CLI insists before it gives up (then apply again finishes the job). */
static bool tell_every_proxy(ctx_t *x, const unit_rec_t *u, const char *cmd, const char *what)
{
	char state[32];
	for (int i = 0; i < x->o->n_proxies; i++) {
		int64_t t0 = now_ms();
		while (!proxy_command(x, i, cmd, state, sizeof(state))) {
			if (now_ms() - t0 > SWITCH_RETRY_MS)
				return fail(x,
					    "unit %d: proxy %s did not take %s (%s); it keeps the unit's "
					    "statements waiting: run apply again",
					    u->no, x->o->proxies[i], what, x->err);
			sleep_ms(200);
		}
	}
	return true;
}

/* Tells every proxy the unit's rows left the source. */
static bool settle_proxies(ctx_t *x, const unit_rec_t *u)
{
	char cmd[64];
	snprintf(cmd, sizeof(cmd), "REBALANCE SETTLED %" PRId64, u->version);
	return tell_every_proxy(x, u, cmd, "SETTLED");
}

/* The cut-over: true when the unit reached "switching". */
static bool cutover(ctx_t *x, unit_rec_t *u, int64_t *paused_at)
{
	const rb_unit_t *un = &u->unit;
	for (int attempt = 1; attempt <= CUTOVER_ATTEMPTS; attempt++) {
		if (!set_state(x, u, "cutover", NULL))
			return false;
		char cmd[sizeof(u->spec) * 2 + 128], state[32];
		proxy_spec_command(cmd, sizeof(cmd), "PAUSE", u);
		*paused_at = now_ms();
		bool paused = true, map_differs = false;
		for (int i = 0; i < x->o->n_proxies && paused; i++) {
			paused = proxy_command(x, i, cmd, state, sizeof(state));
			map_differs = !paused && strstr(x->err, "not the one the rebalance");
		}
		if (!paused) {
			resume_all(x, u);
			if (map_differs)
				return false;
			event(x, u, "retrying", -1, 0, -1, -1, x->err);
			sleep_ms(1000);
			continue;
		}
		failpoint("rebalance_paused");
		/* Everything written to the unit's rows before the pause is in
		 * the WAL before this bump; seeing it on the target proves it
		 * was all applied there. */
		const char *m[1] = {u->marker};
		char seq[32] = "0", got[32] = "";
		bool caught_up = x->o->dry_run;
		if (!x->o->dry_run &&
		    !scalar(x, un->source,
			    "UPDATE shardgate.rebalance_marker SET seq = seq + 1 WHERE unit = $1 "
			    "RETURNING seq",
			    1, m, seq, sizeof(seq))) {
			resume_all(x, u);
			return false;
		}
		for (int64_t t0 = now_ms(); !caught_up && now_ms() - t0 < CATCHUP_TIMEOUT_MS;) {
			if (!scalar(x, un->target,
				    "SELECT seq FROM shardgate.rebalance_marker WHERE unit = $1", 1, m,
				    got, sizeof(got))) {
				resume_all(x, u);
				return false;
			}
			caught_up = got[0] && strtoll(got, NULL, 10) >= strtoll(seq, NULL, 10);
			if (!caught_up)
				sleep_ms(1);
		}
		if (!caught_up) {
			resume_all(x, u);
			event(x, u, "retrying", -1, 0, -1, -1, "the target did not catch up in time");
			continue;
		}
		/* The target now holds every change made before the pause:
		 * keep its state for the verification after the switch. */
		if (!x->o->dry_run && !take_snapshot(x, u)) {
			resume_all(x, u);
			return false;
		}
		if (!set_state(x, u, "switching", NULL)) {
			resume_all(x, u);
			return false;
		}
		return true;
	}
	return fail(x, "unit %d: the cut-over did not succeed in %d attempts: %s", u->no,
		    CUTOVER_ATTEMPTS, x->err);
}

/* switching -> switched: the directory and the proxies switch. */
static bool switch_over(ctx_t *x, unit_rec_t *u, int64_t paused_at)
{
	const rb_unit_t *un = &u->unit;
	failpoint("rebalance_switching");
	if (un->kind == RB_DIRECTORY && !update_directory(x, un))
		return false;
	char cmd[sizeof(u->spec) * 2 + 128];
	proxy_spec_command(cmd, sizeof(cmd), "SWITCH", u);
	if (!tell_every_proxy(x, u, cmd, "SWITCH"))
		return false;
	if (paused_at > 0)
		u->pause_ms = (double)(now_ms() - paused_at);
	return set_state(x, u, "switched", NULL);
}

/* switched -> settled: verify, the rows leave the source, statements that
 * would have read them there go on. */
static bool settle(ctx_t *x, unit_rec_t *u)
{
	const rb_unit_t *un = &u->unit;
	int tables[CONFIG_MAX_SHARDS * 4];
	int n = group_tables(x, un, tables);
	int64_t t0 = now_ms();
	if (u->error[0])
		return fail(x, "unit %d: %s", u->no, u->error);
	if (x->o->dry_run) {
		/* nothing to compare */
	} else if (x->snap && x->snap_unit == u->no) {
		/* The source's rows of the unit cannot change any more (no
		 * proxy routes them there); the target as it was at the switch
		 * must hold exactly the same. */
		int64_t rows = 0;
		char sums[4096] = "";
		for (int i = 0; i < n; i++) {
			char a[128], b[128];
			if (!unit_sum(x, un, tables[i], un->source, NULL, a, sizeof(a)) ||
			    !unit_sum(x, un, tables[i], un->target, x->snap, b, sizeof(b)))
				return false;
			if (strcmp(a, b) != 0) {
				snprintf(u->error, sizeof(u->error),
					 "verification failed: %s has %s (rows:checksum) on %s and %s on %s "
					 "at the switch; the source's rows were kept (a write that bypassed "
					 "the proxies?): reconcile them, delete them from %s, then mark the "
					 "unit settled in shardgate.rebalance_units",
					 x->old->tables[tables[i]].name, a, x->old->shards[un->source].name,
					 b, x->old->shards[un->target].name, x->old->shards[un->source].name);
				set_state(x, u, "switched", u->error);
				settle_proxies(x, u);
				return fail(x, "unit %d: %s", u->no, u->error);
			}
			rows += strtoll(a, NULL, 10);
			size_t l = strlen(sums);
			snprintf(sums + l, sizeof(sums) - l, "%s%s=%s", l ? " " : "",
				 x->old->tables[tables[i]].name, a);
		}
		u->rows = rows;
		char id[32], no[32];
		snprintf(id, sizeof(id), "%" PRId64, x->run_id);
		snprintf(no, sizeof(no), "%d", u->no);
		const char *q[3] = {sums, id, no};
		if (!run(x, home(x),
			 "UPDATE shardgate.rebalance_units SET checksum = $1 WHERE run_id = $2 AND "
			 "unit_no = $3",
			 3, q))
			return false;
		event(x, u, "verified", rows, 0, -1, -1, sums);
	} else {
		event(x, u, "verify_skipped", -1, 0, -1, -1,
		      "interrupted after the switch: the target's state at the switch is gone; "
		      "the catch-up was proven by the marker");
	}
	PQfinish(x->snap);
	x->snap = NULL;
	/* Stop publishing the tables first: the DELETE must not reach the
	 * target. */
	const char *p[1] = {u->name};
	char have[8] = "1";
	if (!x->o->dry_run &&
	    !scalar(x, un->source, "SELECT count(*) FROM pg_publication WHERE pubname = $1", 1, p,
		    have, sizeof(have)))
		return false;
	if (strcmp(have, "0") != 0) {
		char sql[512], lit[128];
		rb_sql_literal(lit, sizeof(lit), u->marker);
		snprintf(sql, sizeof(sql),
			 "ALTER PUBLICATION %s SET TABLE shardgate.rebalance_marker WHERE (unit = %s)",
			 u->name, lit);
		if (!run(x, un->source, sql, 0, NULL))
			return false;
	}
	for (int i = n - 1; i >= 0; i--)
		if (!unit_sql(x, un, tables[i], un->source, "DELETE FROM %s WHERE %s"))
			return false;
	if (!settle_proxies(x, u))
		return false;
	char detail[64];
	snprintf(detail, sizeof(detail), "%" PRId64 " ms", now_ms() - t0);
	event(x, u, "settled", u->rows, 0, -1, -1, detail);
	return set_state(x, u, "settled", NULL);
}

static bool unit_apply(ctx_t *x, unit_rec_t *u)
{
	int64_t paused_at = 0;
	for (;;) {
		if (strcmp(u->state, "done") == 0 || strcmp(u->state, "aborted") == 0)
			return true;
		if (strcmp(u->state, "planned") == 0) {
			if (u->unit.rows < 0 && !estimate(x, &u->unit))
				return false;
			event(x, u, "start", u->unit.rows, 0, -1, -1, NULL);
			if (!start_copy(x, u))
				return false;
			failpoint("rebalance_copying");
		} else if (strcmp(u->state, "copying") == 0) {
			if (!x->o->dry_run) {
				const char *p[1] = {u->name};
				char a[8], b[8];
				if (!scalar(x, u->unit.target,
					    "SELECT count(*) FROM pg_subscription WHERE subname = $1", 1,
					    p, a, sizeof(a)) ||
				    !scalar(x, u->unit.source,
					    "SELECT count(*) FROM pg_publication WHERE pubname = $1", 1,
					    p, b, sizeof(b)))
					return false;
				if (strcmp(a, "1") != 0 || strcmp(b, "1") != 0) {
					/* interrupted while setting up: start over */
					if (!set_state(x, u, "planned", NULL))
						return false;
					continue;
				}
				if (u->unit.rows < 0 && !estimate(x, &u->unit))
					return false;
			}
			if (!wait_copy(x, u))
				return false;
			event(x, u, "copied", -1, 0, -1, -1, NULL);
			if (!cutover(x, u, &paused_at))
				return false;
		} else if (strcmp(u->state, "cutover") == 0) {
			/* interrupted while pausing: the proxies may hold it */
			resume_all(x, u);
			if (!set_state(x, u, "copying", NULL))
				return false;
		} else if (strcmp(u->state, "switching") == 0) {
			if (!switch_over(x, u, paused_at))
				return false;
			report_rows(x, u, "switched", u->pause_ms);
		} else if (strcmp(u->state, "switched") == 0) {
			if (!settle(x, u))
				return false;
		} else if (strcmp(u->state, "settled") == 0) {
			if (!drop_replication(x, u))
				return false;
			if (!set_state(x, u, "done", NULL))
				return false;
			event(x, u, "done", u->rows, 0, -1, -1, NULL);
		} else {
			return fail(x, "unit %d: unknown state %s", u->no, u->state);
		}
		if (x->o->dry_run && strcmp(u->state, "done") == 0)
			return true;
	}
}

static bool finish_run(ctx_t *x, const char *state)
{
	if (x->o->dry_run)
		return true;
	char id[32];
	snprintf(id, sizeof(id), "%" PRId64, x->run_id);
	const char *p[2] = {state, id};
	return run(x, home(x),
		   "UPDATE shardgate.rebalance_runs SET state = $1, finished_at = now() WHERE id = $2",
		   2, p);
}

int rb_apply_command(const rb_options_t *o)
{
	ctx_t x = {.o = o, .tty = isatty(STDOUT_FILENO) != 0};
	rb_plan_t plan = {0};
	unit_rec_t *units = NULL;
	int n = 0, rc = 1;
	bool finished = false;
	if (!load_maps(&x, &plan) || !load_run(&x, &plan, &units, &n, true, &finished))
		goto out;
	if (finished) {
		printf("rebalance: run %" PRId64 " already turned this map into the new one\n", x.run_id);
		rc = 0;
		goto out;
	}
	event(&x, NULL, "run", -1, 0, -1, -1, NULL);
	for (int i = 0; i < n; i++) {
		if (o->dry_run) {
			char what[600];
			rb_unit_describe(x.old, &units[i].unit, what, sizeof(what));
			printf("-- unit %d: %s\n", units[i].no, what);
		}
		if (!unit_apply(&x, &units[i]))
			goto out;
	}
	if (!finish_run(&x, "done"))
		goto out;
	double pause_max = 0;
	int64_t rows = 0;
	for (int i = 0; i < n; i++) {
		rows += units[i].rows > 0 ? units[i].rows : 0;
		if (units[i].pause_ms > pause_max)
			pause_max = units[i].pause_ms;
	}
	if (!o->dry_run) {
		char detail[160];
		snprintf(detail, sizeof(detail), "%d units, longest pause %.0f ms", n, pause_max);
		event(&x, NULL, "done", rows, 0, -1, -1, detail);
	}
	rc = 0;
out:
	if (rc != 0)
		fprintf(stderr, "shardgate rebalance apply: %s\n", x.err[0] ? x.err : "failed");
	free_units(units, n);
	rb_plan_free(&plan);
	finish(&x);
	return rc;
}

int rb_abort_command(const rb_options_t *o)
{
	ctx_t x = {.o = o, .tty = isatty(STDOUT_FILENO) != 0};
	rb_plan_t plan = {0};
	unit_rec_t *units = NULL;
	int n = 0, rc = 1;
	bool finished = false;
	if (!load_maps(&x, &plan) || !load_run(&x, &plan, &units, &n, false, &finished))
		goto out;
	if (x.run_id == 0 || finished) {
		printf("rebalance abort: no unfinished run turns %s into %s\n", o->old_path,
		       o->new_path);
		rc = finished ? 1 : 0;
		goto out;
	}
	for (int i = 0; i < n; i++) {
		unit_rec_t *u = &units[i];
		if (strcmp(u->state, "switching") == 0 || strcmp(u->state, "switched") == 0 ||
		    strcmp(u->state, "settled") == 0 || strcmp(u->state, "done") == 0) {
			fail(&x,
			     "unit %d has cut over already (%s); run apply to finish, then rebalance "
			     "back with the maps swapped",
			     u->no, u->state);
			goto out;
		}
	}
	for (int i = 0; i < n; i++) {
		unit_rec_t *u = &units[i];
		if (strcmp(u->state, "aborted") == 0)
			continue;
		resume_all(&x, u);
		int tables[CONFIG_MAX_SHARDS * 4];
		int nt = group_tables(&x, &u->unit, tables);
		if (strcmp(u->state, "planned") != 0) {
			if (!drop_replication(&x, u))
				goto out;
			for (int t = nt - 1; t >= 0; t--)
				if (!unit_sql(&x, &u->unit, tables[t], u->unit.target,
					      "DELETE FROM %s WHERE %s"))
					goto out;
		}
		if (!set_state(&x, u, "aborted", NULL))
			goto out;
		event(&x, u, "aborted", -1, 0, -1, -1, NULL);
	}
	if (!finish_run(&x, "aborted"))
		goto out;
	printf("rebalance abort: run %" PRId64 " undone; the map is %s\n", x.run_id, o->old_path);
	rc = 0;
out:
	if (rc != 0 && x.err[0])
		fprintf(stderr, "shardgate rebalance abort: %s\n", x.err);
	free_units(units, n);
	rb_plan_free(&plan);
	finish(&x);
	return rc;
}
