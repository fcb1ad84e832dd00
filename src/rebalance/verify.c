/*
 * verify.c - every row where the map says (see verify.h).
 *
 * Three passes: read what each shard holds of every table (one snapshot
 * per shard, shards one after the other), then read the directories, then
 * judge and print table by table. What a shard holds is kept as cells, one
 * per (unit, shard) with rows; only units with rows appear, so memory grows
 * with the units in use, not with the bucket counts of the map.
 */
#include "rebalance/verify.h"

#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/hashmap.h"
#include "route/hash.h"
#include "route/pgconn.h"

#define RB_UNIT_NULL_KEY (-1) /* the cell of rows whose key is NULL */
#define RB_KEY_SHOWN_MAX 120  /* bytes of a directory key shown in a line */
#define RB_ROW_ALIAS     "rb_row"

/* The rows of one unit found on one shard. */
typedef struct {
	int unit;  /* bucket or range index, or RB_UNIT_NULL_KEY; 0 for reference */
	char *key; /* directory: the key in text form; NULL for a NULL key */
	int shard;
	int64_t rows;
	char checksum[64]; /* numeric, as the server prints it */
} rb_cell_t;

/* A directory entry: the shard that the directory names for a key. */
typedef struct {
	int shard;   /* index into cfg->shards, -1 when not in the map */
	char name[]; /* as the directory writes it */
} rb_entry_t;

/* What the shards hold of one table. */
typedef struct {
	rb_cell_t *cells;
	size_t n_cells, cap_cells;
	bool present[CONFIG_MAX_SHARDS]; /* the table exists on that shard */
	bool failed;                     /* an error left it unverified */
	hashmap_t directory;             /* key text -> rb_entry_t (directory tables) */
} rb_table_state_t;

typedef struct {
	const config_t *cfg;
	FILE *out;
	const char *database;
	rb_table_state_t *tables;
	int errors;
	int mismatches;
	int64_t units;
	int64_t rows;
} rb_verify_t;

/* A growing SQL text; `failed` once out of memory or over a formatting error. */
typedef struct {
	char *text;
	size_t len, cap;
	bool failed;
} rb_sql_t;

__attribute__((format(printf, 2, 3))) static void sql_append(rb_sql_t *sql, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (sql->failed)
		return;
	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0) {
		sql->failed = true;
		return;
	}
	if (sql->len + (size_t)n + 1 > sql->cap) {
		size_t cap = sql->cap ? sql->cap : 256;
		while (cap < sql->len + (size_t)n + 1)
			cap *= 2;
		char *text = realloc(sql->text, cap);
		if (!text) {
			sql->failed = true;
			return;
		}
		sql->text = text;
		sql->cap = cap;
	}
	va_start(ap, fmt);
	vsnprintf(sql->text + sql->len, sql->cap - sql->len, fmt, ap);
	va_end(ap);
	sql->len += (size_t)n;
}

/* Prints "ERROR <message>" on one line (libpq's messages span several). */
__attribute__((format(printf, 2, 3))) static void report_error(rb_verify_t *v, const char *fmt, ...)
{
	char message[2048];
	size_t to = 0;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);
	for (size_t from = 0; message[from]; from++) {
		bool space = message[from] == '\n' || message[from] == '\t' || message[from] == ' ';
		if (space && (to == 0 || message[to - 1] == ' '))
			continue;
		message[to++] = space ? ' ' : message[from];
	}
	while (to > 0 && message[to - 1] == ' ')
		to--;
	message[to] = '\0';
	fprintf(v->out, "ERROR %s\n", message);
	v->errors++;
}

/* The server's error as "message (SQLSTATE)", else libpq's message (a
 * lost connection, a result that is not the one expected). */
static void result_message(char *err, size_t errlen, const PGresult *res, PGconn *conn)
{
	const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	const char *sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);

	if (primary)
		snprintf(err, errlen, "%s (%s)", primary, sqlstate ? sqlstate : "no SQLSTATE");
	else if (res && PQresultErrorMessage(res)[0])
		pgconn_message(err, errlen, "", PQresultErrorMessage(res));
	else if (PQstatus(conn) != CONNECTION_OK)
		pgconn_message(err, errlen, "", PQerrorMessage(conn));
	else
		snprintf(err, errlen, "unexpected result: %s with %d columns",
		         PQresStatus(PQresultStatus(res)), PQnfields(res));
}

static const char *plural(int64_t n, const char *one, const char *many)
{
	return n == 1 ? one : many;
}

/* A [schema.]table name quoted part by part for conn (malloc'ed), or NULL. */
static char *quote_table(PGconn *conn, const char *name)
{
	const char *dot = strchr(name, '.');
	char *first, *second = NULL, *quoted;
	size_t len;

	first = PQescapeIdentifier(conn, name, dot ? (size_t)(dot - name) : strlen(name));
	if (!first)
		return NULL;
	if (dot) {
		second = PQescapeIdentifier(conn, dot + 1, strlen(dot + 1));
		if (!second) {
			PQfreemem(first);
			return NULL;
		}
	}
	len = strlen(first) + (second ? strlen(second) + 1 : 0) + 1;
	quoted = malloc(len);
	if (quoted)
		snprintf(quoted, len, "%s%s%s", first, second ? "." : "", second ? second : "");
	PQfreemem(first);
	if (second)
		PQfreemem(second);
	return quoted;
}

/* Bounds of a range table as a text array literal {"b0","b1",...}, quoting
 * as array_in reads it (backslash before '"' and '\'), malloc'ed. */
static char *range_bounds_array(const cfg_table_t *table)
{
	rb_sql_t lit = {0};

	sql_append(&lit, "{");
	for (int i = 0; i < table->n_ranges && table->ranges[i].has_below; i++) {
		sql_append(&lit, "%s\"", i > 0 ? "," : "");
		for (const char *p = table->ranges[i].below; *p; p++)
			sql_append(&lit, "%s%c", (*p == '"' || *p == '\\') ? "\\" : "", *p);
		sql_append(&lit, "\"");
	}
	sql_append(&lit, "}");
	if (lit.failed) {
		free(lit.text);
		return NULL;
	}
	return lit.text;
}

/*
 * The statement giving, for each unit of the table that has rows on a
 * shard: unit, count, checksum. The unit is the bucket (route/hash.h's
 * expression), the range index (width_bucket over the sorted bounds: the
 * number of bounds at or below the key, so keys at or above a last bound
 * give n_ranges), the key as text (directory) or 0 (reference, one row
 * even when empty). A NULL key gives a NULL unit. *param is set for range
 * tables (the bounds, malloc'ed). False with a message in err.
 */
static bool build_unit_query(PGconn *conn, const cfg_table_t *table, char **sql_out, char **param,
                             char *err, size_t errlen)
{
	rb_sql_t sql = {0};
	char *quoted_table = quote_table(conn, table->name);
	char *quoted_key = NULL;
	char bucket_expr[512];

	*param = NULL;
	if (!quoted_table) {
		pgconn_message(err, errlen, "quoting the table name: ", PQerrorMessage(conn));
		return false;
	}
	if (table->strategy == STRATEGY_RANGE || table->strategy == STRATEGY_DIRECTORY) {
		quoted_key = PQescapeIdentifier(conn, table->key, strlen(table->key));
		if (!quoted_key) {
			pgconn_message(err, errlen,
			               "quoting the key column: ", PQerrorMessage(conn));
			free(quoted_table);
			return false;
		}
	}
	switch (table->strategy) {
	case STRATEGY_HASH:
		if (!hash_sql_bucket_expr(table->key_type, table->key, table->buckets, bucket_expr,
		                          sizeof(bucket_expr))) {
			snprintf(err, errlen, "no bucket expression for key \"%s\" of type %s",
			         table->key, key_type_name(table->key_type));
			free(quoted_table);
			return false;
		}
		sql_append(&sql, "SELECT (%s)::integer", bucket_expr);
		break;
	case STRATEGY_RANGE:
		*param = range_bounds_array(table);
		/* The proxy orders text keys bytewise: so does the C collation. */
		sql_append(&sql, "SELECT width_bucket(%s%s, $1::%s[])", quoted_key,
		           table->key_type == KEY_TEXT || table->key_type == KEY_VARCHAR
		               ? " COLLATE \"C\""
		               : "",
		           key_type_name(table->key_type));
		break;
	case STRATEGY_DIRECTORY:
		sql_append(&sql, "SELECT %s::text", quoted_key);
		break;
	case STRATEGY_REFERENCE:
		sql_append(&sql, "SELECT 0");
		break;
	}
	/* rb_row.* is the whole row even when a column is named rb_row. */
	sql_append(&sql,
	           ", count(*), coalesce(sum(hashtextextended((" RB_ROW_ALIAS ".*)::text, 0)"
	           "::numeric), 0)::text FROM %s AS " RB_ROW_ALIAS "%s",
	           quoted_table, table->strategy == STRATEGY_REFERENCE ? "" : " GROUP BY 1");
	free(quoted_table);
	if (quoted_key)
		PQfreemem(quoted_key);
	if (sql.failed || (table->strategy == STRATEGY_RANGE && !*param)) {
		snprintf(err, errlen, "out of memory building the query");
		free(sql.text);
		free(*param);
		*param = NULL;
		return false;
	}
	*sql_out = sql.text;
	return true;
}

static bool add_cell(rb_table_state_t *ts, const rb_cell_t *cell)
{
	if (ts->n_cells == ts->cap_cells) {
		size_t cap = ts->cap_cells ? ts->cap_cells * 2 : 64;
		rb_cell_t *cells = realloc(ts->cells, cap * sizeof(*cells));
		if (!cells)
			return false;
		ts->cells = cells;
		ts->cap_cells = cap;
	}
	ts->cells[ts->n_cells++] = *cell;
	return true;
}

/* The highest unit a query can return for the table (range: n_ranges
 * stands for keys at or above a last bound). */
static int max_unit(const cfg_table_t *table)
{
	switch (table->strategy) {
	case STRATEGY_HASH:
		return table->buckets - 1;
	case STRATEGY_RANGE:
		return table->n_ranges;
	default:
		return 0;
	}
}

/* Reads the rows of a unit query into cells of shard; false with a
 * message when the server answered something that is not one. */
static bool read_cells(const cfg_table_t *table, rb_table_state_t *ts, int shard,
                       const PGresult *res, char *err, size_t errlen)
{
	for (int r = 0; r < PQntuples(res); r++) {
		rb_cell_t cell = {.shard = shard, .unit = RB_UNIT_NULL_KEY};
		const char *rows = PQgetvalue(res, r, 1);
		const char *checksum = PQgetvalue(res, r, 2);
		char *end;

		errno = 0;
		cell.rows = strtoll(rows, &end, 10);
		if (errno || *end || end == rows || cell.rows < 0 ||
		    strlen(checksum) >= sizeof(cell.checksum)) {
			snprintf(err, errlen, "unexpected count %.40s or checksum %.80s", rows,
			         checksum);
			return false;
		}
		if (cell.rows == 0)
			continue; /* a reference table's empty copy */
		memcpy(cell.checksum, checksum, strlen(checksum) + 1);
		if (table->strategy == STRATEGY_DIRECTORY) {
			cell.unit = 0;
			if (!PQgetisnull(res, r, 0)) {
				cell.key = strdup(PQgetvalue(res, r, 0));
				if (!cell.key) {
					snprintf(err, errlen, "out of memory");
					return false;
				}
			} else {
				cell.unit = RB_UNIT_NULL_KEY;
			}
		} else if (!PQgetisnull(res, r, 0)) {
			const char *unit = PQgetvalue(res, r, 0);
			long value;

			errno = 0;
			value = strtol(unit, &end, 10);
			if (errno || *end || end == unit || value < 0 || value > max_unit(table)) {
				snprintf(err, errlen, "unexpected unit %.40s", unit);
				return false;
			}
			cell.unit = (int)value;
		}
		if (!add_cell(ts, &cell)) {
			free(cell.key);
			snprintf(err, errlen, "out of memory");
			return false;
		}
	}
	return true;
}

/* Runs a statement that returns no rows we need; false with a message. */
static bool run_command(PGconn *conn, const char *sql, char *err, size_t errlen)
{
	PGresult *res = PQexecParams(conn, sql, 0, NULL, NULL, NULL, NULL, 0);
	ExecStatusType status = PQresultStatus(res);
	bool ok = status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK;

	if (!ok)
		result_message(err, errlen, res, conn);
	PQclear(res);
	return ok;
}

/*
 * Reads what shard holds of table t (inside the shard's transaction, under
 * a savepoint so that a failing table leaves the others readable). False
 * with a message when the table could not be read.
 */
static bool scan_table(rb_verify_t *v, PGconn *conn, int shard, int t, char *err, size_t errlen)
{
	const cfg_table_t *table = &v->cfg->tables[t];
	rb_table_state_t *ts = &v->tables[t];
	char *sql = NULL, *bounds = NULL, *quoted = NULL;
	const char *params[1];
	PGresult *res = NULL;
	bool ok = false;

	if (!run_command(conn, "SAVEPOINT rb_verify_table", err, errlen))
		return false;
	quoted = quote_table(conn, table->name);
	if (!quoted) {
		pgconn_message(err, errlen, "quoting the table name: ", PQerrorMessage(conn));
		goto done;
	}
	/* to_regclass reads the name as the FROM clause will: quoted parts,
	 * unqualified ones through search_path; NULL when absent. */
	params[0] = quoted;
	res = PQexecParams(conn, "SELECT to_regclass($1) IS NOT NULL", 1, NULL, params, NULL, NULL,
	                   0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		result_message(err, errlen, res, conn);
		goto done;
	}
	ts->present[shard] = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	res = NULL;
	if (!ts->present[shard]) {
		ok = true;
		goto done;
	}
	if (!build_unit_query(conn, table, &sql, &bounds, err, errlen))
		goto done;
	params[0] = bounds;
	res = PQexecParams(conn, sql, bounds ? 1 : 0, NULL, bounds ? params : NULL, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQnfields(res) != 3) {
		result_message(err, errlen, res, conn);
		goto done;
	}
	ok = read_cells(table, ts, shard, res, err, errlen);
done:
	PQclear(res);
	free(sql);
	free(bounds);
	free(quoted);
	if (PQstatus(conn) != CONNECTION_OK)
		return false;
	char ignored[256];
	run_command(conn,
	            ok ? "RELEASE SAVEPOINT rb_verify_table"
	               : "ROLLBACK TO SAVEPOINT rb_verify_table",
	            ignored, sizeof(ignored));
	return ok;
}

/*
 * Reads every table on one shard in one read-only snapshot. The settings
 * that shape a row's text form are fixed so that equal rows checksum alike
 * on every shard; statement_timeout is lifted, since counting a large
 * table is slow but not stuck. A shard that cannot be read fails every
 * table.
 */
static void scan_shard(rb_verify_t *v, int shard)
{
	const config_t *cfg = v->cfg;
	const char *shard_name = cfg->shards[shard].name;
	char err[1024];
	PGconn *conn = pgconn_get(cfg, shard, v->database, err, sizeof(err));

	if (!conn) {
		report_error(v, "%s", err); /* it names the shard */
	} else if (!run_command(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", err,
	                        sizeof(err)) ||
	           !run_command(conn,
	                        "SELECT set_config('statement_timeout', '0', true),"
	                        " set_config('TimeZone', 'UTC', true),"
	                        " set_config('DateStyle', 'ISO, MDY', true),"
	                        " set_config('IntervalStyle', 'postgres', true),"
	                        " set_config('extra_float_digits', '1', true),"
	                        " set_config('bytea_output', 'hex', true)",
	                        err, sizeof(err))) {
		report_error(v, "shard %s: %s", shard_name, err);
		pgconn_discard(conn);
		conn = NULL;
	}
	if (!conn) {
		for (int t = 0; t < cfg->n_tables; t++)
			v->tables[t].failed = true;
		return;
	}
	for (int t = 0; t < cfg->n_tables; t++) {
		if (scan_table(v, conn, shard, t, err, sizeof(err)))
			continue;
		report_error(v, "%s on %s: %s", cfg->tables[t].name, shard_name, err);
		v->tables[t].failed = true;
		if (PQstatus(conn) != CONNECTION_OK) {
			for (int rest = t + 1; rest < cfg->n_tables; rest++)
				v->tables[rest].failed = true;
			break;
		}
	}
	if (PQstatus(conn) == CONNECTION_OK)
		run_command(conn, "COMMIT", err, sizeof(err));
	pgconn_discard(conn); /* verify runs once: leave no connection behind */
}

/* Reads the directory entries of directory table t into its map. */
static void read_directory(rb_verify_t *v, int t)
{
	const cfg_table_t *table = &v->cfg->tables[t];
	rb_table_state_t *ts = &v->tables[t];
	const char *dir_shard = v->cfg->shards[table->directory_shard].name;
	char err[1024], *quoted = NULL, sql[512];
	PGresult *res = NULL;
	PGconn *conn = pgconn_get(v->cfg, table->directory_shard, v->database, err, sizeof(err));

	if (!conn)
		goto fail;
	quoted = quote_table(conn, table->directory_table);
	if (!quoted) {
		pgconn_message(err, sizeof(err),
		               "quoting the directory table: ", PQerrorMessage(conn));
		goto fail;
	}
	snprintf(sql, sizeof(sql), "SELECT key, shard FROM %s WHERE table_name = $1", quoted);
	const char *params[1] = {table->name};
	res = PQexecParams(conn, sql, 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQnfields(res) != 2) {
		result_message(err, sizeof(err), res, conn);
		goto fail;
	}
	if (!hashmap_init(&ts->directory, (size_t)PQntuples(res) + 1)) {
		snprintf(err, sizeof(err), "out of memory");
		goto fail;
	}
	for (int r = 0; r < PQntuples(res); r++) {
		const char *key = PQgetvalue(res, r, 0);
		const char *name = PQgetvalue(res, r, 1);
		rb_entry_t *entry = malloc(sizeof(*entry) + strlen(name) + 1);

		if (!entry || !hashmap_put(&ts->directory, key, strlen(key), entry)) {
			free(entry);
			snprintf(err, sizeof(err), "out of memory");
			goto fail;
		}
		entry->shard = config_find_shard(v->cfg, name);
		memcpy(entry->name, name, strlen(name) + 1);
	}
	PQclear(res);
	free(quoted);
	pgconn_discard(conn);
	return;
fail:
	report_error(v, "%s: reading directory %s on %s: %s", table->name, table->directory_table,
	             dir_shard, err);
	ts->failed = true;
	PQclear(res);
	free(quoted);
	if (conn)
		pgconn_discard(conn);
}

/* NULL keys first, then units (directory: keys bytewise), then shards. */
static int compare_cells(const void *pa, const void *pb)
{
	const rb_cell_t *a = pa, *b = pb;

	if (a->unit != b->unit)
		return a->unit < b->unit ? -1 : 1;
	if (a->key != b->key) {
		if (!a->key || !b->key)
			return a->key ? 1 : -1;
		int c = strcmp(a->key, b->key);
		if (c != 0)
			return c;
	}
	return a->shard - b->shard;
}

static bool same_unit(const rb_cell_t *a, const rb_cell_t *b)
{
	if (a->unit != b->unit)
		return false;
	if (!a->key || !b->key)
		return a->key == b->key;
	return strcmp(a->key, b->key) == 0;
}

/* A key for people: quoted as an SQL literal, control bytes as \xNN, cut
 * after RB_KEY_SHOWN_MAX bytes. */
static void format_key(const char *key, char *out, size_t outlen)
{
	size_t pos = 0;
	size_t shown = 0;

	if (outlen < 8)
		return;
	out[pos++] = '\'';
	for (const unsigned char *p = (const unsigned char *)key; *p; p++, shown++) {
		if (shown == RB_KEY_SHOWN_MAX || pos + 8 >= outlen) {
			memcpy(out + pos, "'...", 4);
			pos += 4;
			out[pos] = '\0';
			return;
		}
		if (*p < 0x20 || *p == 0x7f)
			pos += (size_t)snprintf(out + pos, outlen - pos, "\\x%02x", *p);
		else if (*p == '\'')
			pos += (size_t)snprintf(out + pos, outlen - pos, "''");
		else
			out[pos++] = (char)*p;
	}
	out[pos++] = '\'';
	out[pos] = '\0';
}

/* "bucket 5", "range 1 (from 100 below 200)" ("range 1" when brief),
 * "key 'acme'", "NULL key". */
static void format_unit(const cfg_table_t *table, const rb_cell_t *cell, bool brief, char *out,
                        size_t outlen)
{
	if (cell->unit == RB_UNIT_NULL_KEY) {
		snprintf(out, outlen, "NULL key");
		return;
	}
	switch (table->strategy) {
	case STRATEGY_HASH:
		snprintf(out, outlen, "bucket %d", cell->unit);
		break;
	case STRATEGY_RANGE: {
		int i = cell->unit;
		const cfg_range_t *r = table->ranges;
		if (brief && i < table->n_ranges)
			snprintf(out, outlen, "range %d", i);
		else if (i == table->n_ranges)
			snprintf(out, outlen, "keys from %s (above every range)", r[i - 1].below);
		else if (i == 0 && r[0].has_below)
			snprintf(out, outlen, "range 0 (below %s)", r[0].below);
		else if (i == 0)
			snprintf(out, outlen, "range 0 (every key)");
		else if (r[i].has_below)
			snprintf(out, outlen, "range %d (from %s below %s)", i, r[i - 1].below,
			         r[i].below);
		else
			snprintf(out, outlen, "range %d (from %s)", i, r[i - 1].below);
		break;
	}
	case STRATEGY_DIRECTORY: {
		char key[RB_KEY_SHOWN_MAX * 4 + 16];
		format_key(cell->key, key, sizeof(key));
		snprintf(out, outlen, "key %s", key);
		break;
	}
	case STRATEGY_REFERENCE:
		snprintf(out, outlen, "copy");
		break;
	}
}

/*
 * The shard the map gives a cell's unit, or -1 when the map has no place
 * for it; then *why says what the map says instead ("the map puts bucket 5
 * on s2" is built by the caller from the shard).
 */
static int expected_shard(rb_verify_t *v, int t, const rb_cell_t *cell, char *why, size_t whylen)
{
	const cfg_table_t *table = &v->cfg->tables[t];

	if (cell->unit == RB_UNIT_NULL_KEY) {
		snprintf(why, whylen, "no map places a NULL key \"%s\"", table->key);
		return -1;
	}
	switch (table->strategy) {
	case STRATEGY_HASH:
		return table->placement[cell->unit];
	case STRATEGY_RANGE:
		if (cell->unit < table->n_ranges)
			return table->ranges[cell->unit].shard;
		snprintf(why, whylen, "the map has no range for keys from %s",
		         table->ranges[table->n_ranges - 1].below);
		return -1;
	case STRATEGY_DIRECTORY: {
		const rb_entry_t *entry =
		    hashmap_get(&v->tables[t].directory, cell->key, strlen(cell->key));
		if (!entry)
			snprintf(why, whylen, "the directory %s has no entry for it",
			         table->directory_table);
		else if (entry->shard < 0)
			snprintf(
			    why, whylen,
			    "the directory names shard \"%.63s\" for it, which is not in the map",
			    entry->name);
		return entry ? entry->shard : -1;
	}
	case STRATEGY_REFERENCE:
		break;
	}
	return cell->shard;
}

/* Shards where the table is absent, as " (absent on s1, s2)" or "". */
static void format_absent(const config_t *cfg, const rb_table_state_t *ts, char *out, size_t outlen)
{
	size_t pos = 0;

	out[0] = '\0';
	for (int s = 0; s < cfg->n_shards && pos < outlen; s++)
		if (!ts->present[s])
			pos += (size_t)snprintf(out + pos, outlen - pos, "%s%s",
			                        pos ? ", " : " (absent on ", cfg->shards[s].name);
	if (pos && pos < outlen)
		snprintf(out + pos, outlen - pos, ")");
}

/* Compares the copies of a reference table; one mismatch when they differ. */
static void judge_reference(rb_verify_t *v, int t)
{
	const config_t *cfg = v->cfg;
	const cfg_table_t *table = &cfg->tables[t];
	rb_table_state_t *ts = &v->tables[t];
	int64_t rows[CONFIG_MAX_SHARDS] = {0}, max_rows = 0;
	const char *checksum[CONFIG_MAX_SHARDS];
	bool differ = false;

	for (int s = 0; s < cfg->n_shards; s++)
		checksum[s] = "0";
	for (size_t i = 0; i < ts->n_cells; i++) {
		rows[ts->cells[i].shard] = ts->cells[i].rows;
		checksum[ts->cells[i].shard] = ts->cells[i].checksum;
	}
	for (int s = 0; s < cfg->n_shards; s++) {
		fprintf(v->out, "  copy on %s: %" PRId64 " %s, checksum %s%s\n",
		        cfg->shards[s].name, rows[s], plural(rows[s], "row", "rows"), checksum[s],
		        ts->present[s] ? "" : " (table absent)");
		if (rows[s] != rows[0] || strcmp(checksum[s], checksum[0]) != 0)
			differ = true;
		if (rows[s] > max_rows)
			max_rows = rows[s];
	}
	if (differ) {
		fprintf(v->out, "MISMATCH %s: the copies differ:", table->name);
		for (int s = 0; s < cfg->n_shards; s++)
			fprintf(v->out, "%s %s %" PRId64 " %s checksum %s", s ? ";" : "",
			        cfg->shards[s].name, rows[s], plural(rows[s], "row", "rows"),
			        checksum[s]);
		fputc('\n', v->out);
		v->mismatches++;
	}
	v->units += max_rows > 0;
	v->rows += max_rows;
	if (differ)
		fprintf(v->out, "%s: 1 mismatch\n", table->name);
	else
		fprintf(v->out, "%s: OK (%" PRId64 " %s on every shard)\n", table->name, max_rows,
		        plural(max_rows, "row", "rows"));
}

/* Prints each cell of a sharded table and a MISMATCH line under each
 * misplaced one. */
static void judge_sharded(rb_verify_t *v, int t)
{
	const config_t *cfg = v->cfg;
	const cfg_table_t *table = &cfg->tables[t];
	rb_table_state_t *ts = &v->tables[t];
	int mismatches = 0;
	int64_t units = 0, rows = 0;

	if (ts->n_cells > 1)
		qsort(ts->cells, ts->n_cells, sizeof(*ts->cells), compare_cells);
	for (size_t i = 0; i < ts->n_cells; i++) {
		const rb_cell_t *cell = &ts->cells[i];
		char unit[RB_KEY_SHOWN_MAX * 4 + 64], brief[RB_KEY_SHOWN_MAX * 4 + 64], why[256];
		int want = expected_shard(v, t, cell, why, sizeof(why));
		const char *shard = cfg->shards[cell->shard].name;

		units += i == 0 || !same_unit(cell, &ts->cells[i - 1]);
		rows += cell->rows;
		format_unit(table, cell, false, unit, sizeof(unit));
		format_unit(table, cell, true, brief, sizeof(brief));
		fprintf(v->out, "  %s: %s, %" PRId64 " %s, checksum %s%s\n", unit, shard,
		        cell->rows, plural(cell->rows, "row", "rows"), cell->checksum,
		        want == cell->shard ? "" : " (misplaced)");
		if (want == cell->shard)
			continue;
		mismatches++;
		if (want >= 0)
			fprintf(v->out,
			        "MISMATCH %s %s: %" PRId64 " %s on %s, the %s puts %s on %s\n",
			        table->name, unit, cell->rows, plural(cell->rows, "row", "rows"),
			        shard, table->strategy == STRATEGY_DIRECTORY ? "directory" : "map",
			        brief, cfg->shards[want].name);
		else
			fprintf(v->out, "MISMATCH %s %s: %" PRId64 " %s on %s, %s\n", table->name,
			        unit, cell->rows, plural(cell->rows, "row", "rows"), shard, why);
	}
	v->mismatches += mismatches;
	v->units += units;
	v->rows += rows;
	if (mismatches)
		fprintf(v->out, "%s: %d %s\n", table->name, mismatches,
		        plural(mismatches, "mismatch", "mismatches"));
	else
		fprintf(v->out, "%s: OK (%" PRId64 " %s with rows, %" PRId64 " %s)\n", table->name,
		        units, plural(units, "unit", "units"), rows, plural(rows, "row", "rows"));
}

/* The table's header line, then its verdict. */
static void judge_table(rb_verify_t *v, int t)
{
	const config_t *cfg = v->cfg;
	const cfg_table_t *table = &cfg->tables[t];
	rb_table_state_t *ts = &v->tables[t];
	char absent[1024];
	int n_present = 0;

	for (int s = 0; s < cfg->n_shards; s++)
		n_present += ts->present[s];
	if (ts->failed) {
		fprintf(v->out, "%s: not verified (see the errors above)\n", table->name);
		return;
	}
	if (n_present == 0) {
		report_error(v, "table %s does not exist on any shard", table->name);
		return;
	}
	format_absent(cfg, ts, absent, sizeof(absent));
	switch (table->strategy) {
	case STRATEGY_HASH:
		fprintf(v->out, "%s: hash on %s (%s), %d buckets%s\n", table->name, table->key,
		        key_type_name(table->key_type), table->buckets, absent);
		break;
	case STRATEGY_RANGE:
		fprintf(v->out, "%s: range on %s (%s), %d ranges%s\n", table->name, table->key,
		        key_type_name(table->key_type), table->n_ranges, absent);
		break;
	case STRATEGY_DIRECTORY:
		fprintf(v->out, "%s: directory on %s (%s), %zu keys in %s on %s%s\n", table->name,
		        table->key, key_type_name(table->key_type), ts->directory.count,
		        table->directory_table, cfg->shards[table->directory_shard].name, absent);
		break;
	case STRATEGY_REFERENCE:
		fprintf(v->out, "%s: reference%s\n", table->name, absent);
		judge_reference(v, t);
		return;
	}
	judge_sharded(v, t);
}

static void free_entry(const void *key, size_t len, void *value, void *arg)
{
	(void)key;
	(void)len;
	(void)arg;
	free(value);
}

int rb_verify(const config_t *cfg, FILE *out)
{
	rb_verify_t v = {
	    .cfg = cfg,
	    .out = out,
	    .database = cfg->backend.database[0] ? cfg->backend.database : "postgres",
	};

	v.tables = calloc((size_t)(cfg->n_tables > 0 ? cfg->n_tables : 1), sizeof(*v.tables));
	if (!v.tables) {
		fprintf(out, "ERROR out of memory\nverify: 1 error\n");
		return RB_VERIFY_ERROR;
	}
	for (int s = 0; s < cfg->n_shards; s++)
		scan_shard(&v, s);
	for (int t = 0; t < cfg->n_tables; t++)
		if (cfg->tables[t].strategy == STRATEGY_DIRECTORY && !v.tables[t].failed)
			read_directory(&v, t);
	for (int t = 0; t < cfg->n_tables; t++)
		judge_table(&v, t);

	char counts[160];
	snprintf(counts, sizeof(counts), "%d %s, %" PRId64 " %s, %" PRId64 " %s", cfg->n_tables,
	         plural(cfg->n_tables, "table", "tables"), v.units,
	         plural(v.units, "unit", "units"), v.rows, plural(v.rows, "row", "rows"));
	if (v.errors)
		fprintf(out, "verify: %d %s, %d %s (%s)\n", v.errors,
		        plural(v.errors, "error", "errors"), v.mismatches,
		        plural(v.mismatches, "mismatch", "mismatches"), counts);
	else if (v.mismatches)
		fprintf(out, "verify: %d %s (%s)\n", v.mismatches,
		        plural(v.mismatches, "mismatch", "mismatches"), counts);
	else
		fprintf(out, "verify: %s: OK\n", counts);

	for (int t = 0; t < cfg->n_tables; t++) {
		for (size_t i = 0; i < v.tables[t].n_cells; i++)
			free(v.tables[t].cells[i].key);
		free(v.tables[t].cells);
		if (v.tables[t].directory.slots) {
			hashmap_foreach(&v.tables[t].directory, free_entry, NULL);
			hashmap_destroy(&v.tables[t].directory);
		}
	}
	free(v.tables);
	return v.errors ? RB_VERIFY_ERROR : v.mismatches ? RB_VERIFY_MISMATCH : RB_VERIFY_OK;
}
