/*
 * test_hash_compat.c - proves shardgate's hash buckets are PostgreSQL's hash
 * partitions.
 *
 * Against the server in env PGTEST_DSN (a libpq connection string), for each
 * key type smallint, integer, bigint, text, varchar and uuid and for MODULUS
 * 7 and 64: create a table PARTITION BY HASH (k) with all its partitions,
 * COPY in 10,000 keys (type extremes, negatives, zero, empty and long
 * strings, non-ASCII UTF-8, random uuids in every input form uuid_in takes),
 * read back every row with tableoid and check that these all name the same
 * remainder:
 *   - the partition PostgreSQL chose;
 *   - hash_bucket_for_text_value() of the text form we sent;
 *   - hash_bucket_for_text_value() of the server's output of k;
 *   - hash_bucket_for_binary_value() of k in binary format;
 *   - the SQL expression from hash_sql_bucket_expr(), evaluated by the server.
 * Each expression is also accepted in a publication row filter. Every object
 * lives in a schema named for this process and is dropped at the end.
 */
#include <check.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "route/hash.h"

#define COMPAT_KEYS        10000
#define COMPAT_MISMATCHES  5 /* how many mismatches a failure describes */
#define COMPAT_RANDOM_SEED UINT64_C(0x5eed0fc0ffee1234)

typedef struct {
	const char *name;     /* used in object names */
	const char *sql_type; /* column type */
	key_type_t type;
} compat_type_t;

/* One key as sent to the server: its text form (not NUL-terminated text
 * may contain any byte but NUL). */
typedef struct {
	char *text;
	size_t len;
} compat_key_t;

typedef struct {
	long rows;
	long mismatches;
	char first[COMPAT_MISMATCHES * 800];
} compat_report_t;

/* splitmix64: a small deterministic generator, so a failure reproduces. */
static uint64_t compat_next_random(uint64_t *state)
{
	uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static uint64_t compat_random_below(uint64_t *state, uint64_t bound)
{
	return compat_next_random(state) % bound;
}

static void compat_key_set(compat_key_t *key, const char *bytes, size_t len)
{
	key->text = malloc(len + 1);
	ck_assert_ptr_nonnull(key->text);
	memcpy(key->text, bytes, len);
	key->text[len] = '\0';
	key->len = len;
}

/* ---- key generation ---- */

/* A text form of value that int8in/int4in/int2in accept: mostly canonical,
 * sometimes with a '+', leading zeros or surrounding whitespace. */
static void compat_format_int(int64_t value, uint64_t *rng, compat_key_t *key)
{
	char buf[64];
	uint64_t magnitude = value < 0 ? 0 - (uint64_t)value : (uint64_t)value;
	const char *sign = value < 0 ? "-" : "";
	int len;

	switch (compat_random_below(rng, 10)) {
	case 0:
		len = snprintf(buf, sizeof(buf), " %s%" PRIu64 "\t", value < 0 ? "-" : "+",
		               magnitude);
		break;
	case 1:
		len = snprintf(buf, sizeof(buf), "%s000%" PRIu64, sign, magnitude);
		break;
	default:
		len = snprintf(buf, sizeof(buf), "%" PRId64, value);
		break;
	}
	compat_key_set(key, buf, (size_t)len);
}

static void compat_make_int_keys(compat_key_t *keys, int64_t min, int64_t max, uint64_t *rng)
{
	int64_t fixed[] = {min,
	                   max,
	                   min + 1,
	                   max - 1,
	                   0,
	                   1,
	                   -1,
	                   INT16_MIN,
	                   INT16_MAX,
	                   INT32_MIN,
	                   INT32_MAX,
	                   (int64_t)INT32_MIN - 1,
	                   (int64_t)INT32_MAX + 1,
	                   INT64_C(4294967296),
	                   INT64_C(-4294967296),
	                   INT64_C(-4294967297),
	                   INT64_C(1) << 40,
	                   -(INT64_C(1) << 40)};
	size_t count = 0;
	size_t i;
	int64_t value;
	uint64_t span = (uint64_t)max - (uint64_t)min; /* width of the type - 1 */

	for (i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		if (fixed[i] >= min && fixed[i] <= max)
			compat_format_int(fixed[i], rng, &keys[count++]);
	for (value = -3000; value <= 3000; value++)
		compat_format_int(value, rng, &keys[count++]);
	while (count < COMPAT_KEYS) {
		uint64_t offset;

		if (compat_random_below(rng, 2) == 0)
			/* anywhere in the type's range */
			offset = span == UINT64_MAX ? compat_next_random(rng)
			                            : compat_random_below(rng, span + 1);
		else
			/* small magnitudes, where int2/int4/int8 folding matters */
			offset = (uint64_t)0 - (uint64_t)min +
			         (compat_random_below(rng, 2000001) - 1000000);
		value = (int64_t)((uint64_t)min + offset);
		if (value < min || value > max)
			continue;
		compat_format_int(value, rng, &keys[count++]);
	}
}

/* Append the UTF-8 encoding of code point cp (no surrogates, no NUL). */
static size_t compat_put_utf8(char *out, uint32_t cp)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

static uint32_t compat_random_code_point(uint64_t *rng)
{
	uint64_t pick = compat_random_below(rng, 100);
	uint32_t cp;

	if (pick < 60)
		return (uint32_t)(0x20 + compat_random_below(rng, 0x5f)); /* printable ASCII */
	if (pick < 63)
		return "\t\n\r\\"[compat_random_below(rng, 4)]; /* COPY escapes */
	if (pick < 80)
		return (uint32_t)(0x80 + compat_random_below(rng, 0x800 - 0x80));
	if (pick < 95) {
		do
			cp = (uint32_t)(0x800 + compat_random_below(rng, 0x10000 - 0x800));
		while (cp >= 0xd800 && cp <= 0xdfff);
		return cp;
	}
	return (uint32_t)(0x10000 + compat_random_below(rng, 0x110000 - 0x10000));
}

static void compat_make_text_keys(compat_key_t *keys, uint64_t *rng)
{
	static const char *const fixed[] = {
	    "",
	    "a",
	    "hello",
	    "\xc3\xbf",                                     /* ÿ */
	    "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",         /* 日本語 */
	    "\xf0\x9f\x98\x80",                             /* 😀 */
	    "\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x92\xbb", /* 👩‍💻 (ZWJ sequence) */
	    "tab\there",
	    "back\\slash",
	    "new\nline",
	    "cr\rreturn",
	    " leading and trailing spaces ",
	    "\\N",
	};
	char *buf = malloc(8192);
	size_t count = 0;
	size_t i, len;

	ck_assert_ptr_nonnull(buf);
	for (i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		compat_key_set(&keys[count++], fixed[i], strlen(fixed[i]));
	/* every tail length of lookup3, and a few whole 12-byte blocks */
	for (len = 1; len <= 48; len++) {
		for (i = 0; i < len; i++)
			buf[i] = (char)('a' + (i % 26));
		compat_key_set(&keys[count++], buf, len);
	}
	memset(buf, 'x', 5000);
	compat_key_set(&keys[count++], buf, 5000);
	while (count < COMPAT_KEYS) {
		uint64_t shape = compat_random_below(rng, 100);
		size_t chars;

		if (shape < 70)
			chars = 1 + (size_t)compat_random_below(rng, 24);
		else if (shape < 95)
			chars = 25 + (size_t)compat_random_below(rng, 176);
		else
			chars = 200 + (size_t)compat_random_below(rng, 1800);
		len = 0;
		for (i = 0; i < chars; i++)
			len += compat_put_utf8(buf + len, compat_random_code_point(rng));
		compat_key_set(&keys[count++], buf, len);
	}
	free(buf);
}

/* A uuid in one of the forms uuid_in accepts. */
static void compat_format_uuid(const uint8_t bytes[16], uint64_t *rng, compat_key_t *key)
{
	static const char lower[] = "0123456789abcdef";
	static const char upper[] = "0123456789ABCDEF";
	uint64_t form = compat_random_below(rng, 20);
	const char *digits = form == 0 || form == 1 ? upper : lower;
	char buf[64];
	size_t len = 0;
	int i;

	if (form == 2)
		buf[len++] = '{';
	for (i = 0; i < 16; i++) {
		buf[len++] = digits[bytes[i] >> 4];
		buf[len++] = digits[bytes[i] & 0x0f];
		if (form == 3 || form == 4)
			continue; /* no hyphens */
		if (form == 5 ? (i % 2 == 1 && i < 15) : (i == 3 || i == 5 || i == 7 || i == 9))
			buf[len++] = '-';
	}
	if (form == 2)
		buf[len++] = '}';
	compat_key_set(key, buf, len);
}

static void compat_make_uuid_keys(compat_key_t *keys, uint64_t *rng)
{
	uint8_t bytes[16];
	size_t count = 0;
	int i;

	memset(bytes, 0x00, sizeof(bytes));
	compat_format_uuid(bytes, rng, &keys[count++]);
	memset(bytes, 0xff, sizeof(bytes));
	compat_format_uuid(bytes, rng, &keys[count++]);
	while (count < COMPAT_KEYS) {
		for (i = 0; i < 16; i++)
			bytes[i] = (uint8_t)compat_next_random(rng);
		if (compat_random_below(rng, 2) == 0) {
			bytes[6] = (uint8_t)((bytes[6] & 0x0f) | 0x40); /* version 4 */
			bytes[8] = (uint8_t)((bytes[8] & 0x3f) | 0x80); /* RFC 4122 variant */
		}
		compat_format_uuid(bytes, rng, &keys[count++]);
	}
}

static compat_key_t *compat_make_keys(key_type_t type)
{
	compat_key_t *keys = calloc(COMPAT_KEYS, sizeof(*keys));
	uint64_t rng = COMPAT_RANDOM_SEED + (uint64_t)type;

	ck_assert_ptr_nonnull(keys);
	switch (type) {
	case KEY_SMALLINT:
		compat_make_int_keys(keys, INT16_MIN, INT16_MAX, &rng);
		break;
	case KEY_INTEGER:
		compat_make_int_keys(keys, INT32_MIN, INT32_MAX, &rng);
		break;
	case KEY_BIGINT:
		compat_make_int_keys(keys, INT64_MIN, INT64_MAX, &rng);
		break;
	case KEY_TEXT:
	case KEY_VARCHAR:
		compat_make_text_keys(keys, &rng);
		break;
	case KEY_UUID:
		compat_make_uuid_keys(keys, &rng);
		break;
	default:
		ck_abort_msg("no key generator for key type %d", (int)type);
	}
	return keys;
}

static void compat_free_keys(compat_key_t *keys)
{
	size_t i;

	for (i = 0; i < COMPAT_KEYS; i++)
		free(keys[i].text);
	free(keys);
}

/* ---- talking to the server ---- */

typedef struct {
	PGconn *conn;
	char schema[64];
	char publication[64];
} compat_session_t;

static void compat_drop_objects(compat_session_t *session)
{
	char sql[256];
	PGresult *res;

	snprintf(sql, sizeof(sql),
	         "DROP PUBLICATION IF EXISTS %s; DROP SCHEMA IF EXISTS %s CASCADE",
	         session->publication, session->schema);
	res = PQexec(session->conn, sql);
	PQclear(res);
}

/* Cleans up, then fails the test with what went wrong. */
static void compat_fail(compat_session_t *session, const char *format, ...)
{
	char message[1024];
	va_list args;

	va_start(args, format);
	vsnprintf(message, sizeof(message), format, args);
	va_end(args);
	if (session->conn != NULL) {
		compat_drop_objects(session);
		PQfinish(session->conn);
		session->conn = NULL;
	}
	ck_abort_msg("%s", message);
}

static void compat_exec(compat_session_t *session, const char *sql)
{
	PGresult *res = PQexec(session->conn, sql);
	ExecStatusType status = PQresultStatus(res);

	if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
		char error[512];

		snprintf(error, sizeof(error), "%s", PQresultErrorMessage(res));
		PQclear(res);
		compat_fail(session, "expected \"%.200s\" to succeed, got: %s", sql, error);
	}
	PQclear(res);
}

static void compat_connect(compat_session_t *session, const compat_type_t *type)
{
	const char *dsn = getenv("PGTEST_DSN");
	PGresult *res;

	memset(session, 0, sizeof(*session));
	ck_assert_msg(dsn != NULL && dsn[0] != '\0',
	              "PGTEST_DSN must name a PostgreSQL 15 server (libpq connection string)");
	session->conn = PQconnectdb(dsn);
	if (PQstatus(session->conn) != CONNECTION_OK) {
		char error[512];

		snprintf(error, sizeof(error), "%s", PQerrorMessage(session->conn));
		PQfinish(session->conn);
		session->conn = NULL;
		ck_abort_msg("cannot connect to PGTEST_DSN: %s", error);
	}
	snprintf(session->schema, sizeof(session->schema), "shardgate_hash_compat_%s_%ld",
	         type->name, (long)getpid());
	snprintf(session->publication, sizeof(session->publication), "shardgate_hash_pub_%s_%ld",
	         type->name, (long)getpid());
	if (PQsetClientEncoding(session->conn, "UTF8") != 0)
		compat_fail(session, "cannot set client_encoding to UTF8");
	/* Text keys are hashed as the bytes the server stores. */
	res = PQexec(session->conn, "SHOW server_encoding");
	if (PQresultStatus(res) != PGRES_TUPLES_OK || strcmp(PQgetvalue(res, 0, 0), "UTF8") != 0) {
		PQclear(res);
		compat_fail(session, "expected server_encoding UTF8");
	}
	PQclear(res);
	res = PQexec(session->conn, "SELECT current_setting('server_version_num')::int / 10000");
	if (PQresultStatus(res) != PGRES_TUPLES_OK || strcmp(PQgetvalue(res, 0, 0), "15") != 0) {
		char version[32];

		snprintf(version, sizeof(version), "%s", PQgetvalue(res, 0, 0));
		PQclear(res);
		compat_fail(session, "expected PostgreSQL 15, got major version %s", version);
	}
	PQclear(res);
	compat_exec(session, "SET client_min_messages = error");
	compat_drop_objects(session);
}

static void compat_create_table(compat_session_t *session, const compat_type_t *type, int modulus)
{
	size_t cap = 256 + (size_t)modulus * 160;
	char *sql = malloc(cap);
	size_t len;
	int r;

	ck_assert_ptr_nonnull(sql);
	len = (size_t)snprintf(sql, cap,
	                       "DROP SCHEMA IF EXISTS %s CASCADE; CREATE SCHEMA %s;"
	                       " CREATE TABLE %s.t (i int NOT NULL, k %s) PARTITION BY HASH (k);",
	                       session->schema, session->schema, session->schema, type->sql_type);
	for (r = 0; r < modulus; r++)
		len += (size_t)snprintf(sql + len, cap - len,
		                        " CREATE TABLE %s.t_%d PARTITION OF %s.t"
		                        " FOR VALUES WITH (MODULUS %d, REMAINDER %d);",
		                        session->schema, r, session->schema, modulus, r);
	ck_assert_uint_lt(len, cap);
	compat_exec(session, sql);
	free(sql);
}

/* COPY text format: escape the bytes COPY would otherwise take as syntax. */
static size_t compat_copy_escape(const compat_key_t *key, char *out)
{
	size_t len = 0;
	size_t i;

	for (i = 0; i < key->len; i++) {
		char ch = key->text[i];

		switch (ch) {
		case '\\':
			out[len++] = '\\';
			out[len++] = '\\';
			break;
		case '\t':
			out[len++] = '\\';
			out[len++] = 't';
			break;
		case '\n':
			out[len++] = '\\';
			out[len++] = 'n';
			break;
		case '\r':
			out[len++] = '\\';
			out[len++] = 'r';
			break;
		default:
			out[len++] = ch;
		}
	}
	return len;
}

static void compat_copy_keys(compat_session_t *session, const compat_key_t *keys)
{
	size_t cap = 0, len = 0;
	char sql[256];
	char *data;
	PGresult *res;
	size_t i;

	for (i = 0; i < COMPAT_KEYS; i++)
		cap += 2 * keys[i].len + 16;
	data = malloc(cap);
	ck_assert_ptr_nonnull(data);
	for (i = 0; i < COMPAT_KEYS; i++) {
		len += (size_t)snprintf(data + len, cap - len, "%zu\t", i);
		len += compat_copy_escape(&keys[i], data + len);
		data[len++] = '\n';
	}

	snprintf(sql, sizeof(sql), "COPY %s.t (i, k) FROM STDIN", session->schema);
	res = PQexec(session->conn, sql);
	if (PQresultStatus(res) != PGRES_COPY_IN) {
		PQclear(res);
		free(data);
		compat_fail(session, "COPY did not start: %s", PQerrorMessage(session->conn));
	}
	PQclear(res);
	if (PQputCopyData(session->conn, data, (int)len) != 1 ||
	    PQputCopyEnd(session->conn, NULL) != 1) {
		free(data);
		compat_fail(session, "COPY data not sent: %s", PQerrorMessage(session->conn));
	}
	free(data);
	res = PQgetResult(session->conn);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		char error[512];

		snprintf(error, sizeof(error), "%s", PQresultErrorMessage(res));
		PQclear(res);
		compat_fail(session, "COPY failed: %s", error);
	}
	PQclear(res);
	while ((res = PQgetResult(session->conn)) != NULL)
		PQclear(res);
}

/* The remainder in a partition name "schema.t_<r>". */
static int compat_partition_remainder(const char *relname)
{
	const char *underscore = strrchr(relname, '_');

	return underscore == NULL ? -1 : atoi(underscore + 1);
}

static void compat_note_mismatch(compat_report_t *report, const char *format, ...)
{
	size_t used = strlen(report->first);
	va_list args;

	if (report->mismatches++ >= COMPAT_MISMATCHES || used >= sizeof(report->first) - 1)
		return;
	va_start(args, format);
	vsnprintf(report->first + used, sizeof(report->first) - used, format, args);
	va_end(args);
}

/* A printable, bounded rendering of a key for a failure message: control
 * bytes, quotes and backslashes escaped, cut after about 60 bytes on a
 * UTF-8 character boundary. */
static const char *compat_describe(const char *bytes, size_t len, char *out, size_t outlen)
{
	size_t pos = 0;
	size_t i;

	for (i = 0; i < len && pos + 8 < outlen; i++) {
		unsigned char ch = (unsigned char)bytes[i];

		if (i >= 60 && (ch & 0xc0) != 0x80) {
			pos += (size_t)snprintf(out + pos, outlen - pos, "...");
			break;
		}
		if (ch < 0x20 || ch == 0x7f || ch == '"' || ch == '\\')
			pos += (size_t)snprintf(out + pos, outlen - pos, "\\x%02x", ch);
		else
			out[pos++] = (char)ch;
	}
	out[pos] = '\0';
	return out;
}

static uint32_t compat_read_be32(const char *bytes)
{
	const unsigned char *b = (const unsigned char *)bytes;

	return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3];
}

/* Text-format pass: partition vs our bucket of the sent form, of the
 * server's output, and the SQL expression's bucket. */
static void compat_check_text_rows(compat_session_t *session, const compat_type_t *type,
                                   const compat_key_t *keys, int modulus, compat_report_t *report)
{
	char expr[512];
	char sql[1024];
	PGresult *res;
	int row, rows;

	ck_assert(hash_sql_bucket_expr(type->type, "k", modulus, expr, sizeof(expr)));
	snprintf(sql, sizeof(sql), "SELECT i, k, tableoid::regclass::text, %s FROM %s.t", expr,
	         session->schema);
	res = PQexec(session->conn, sql);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		char error[512];

		snprintf(error, sizeof(error), "%s", PQresultErrorMessage(res));
		PQclear(res);
		compat_fail(session, "reading back failed: %s", error);
	}
	rows = PQntuples(res);
	if (rows != COMPAT_KEYS)
		compat_note_mismatch(report, "  expected %d rows, read %d\n", COMPAT_KEYS, rows);
	for (row = 0; row < rows; row++) {
		int index = atoi(PQgetvalue(res, row, 0));
		const char *out = PQgetvalue(res, row, 1);
		int remainder = compat_partition_remainder(PQgetvalue(res, row, 2));
		int sql_bucket = atoi(PQgetvalue(res, row, 3));
		int sent_bucket = -1, out_bucket = -1;
		bool sent_ok, out_ok;

		if (index < 0 || index >= COMPAT_KEYS) {
			compat_note_mismatch(report, "  row %d: unknown index %d\n", row, index);
			continue;
		}
		sent_ok = hash_bucket_for_text_value(type->type, keys[index].text, keys[index].len,
		                                     modulus, &sent_bucket);
		out_ok = hash_bucket_for_text_value(
		    type->type, out, (size_t)PQgetlength(res, row, 1), modulus, &out_bucket);
		report->rows++;
		if (!sent_ok || !out_ok || sent_bucket != remainder || out_bucket != remainder ||
		    sql_bucket != remainder) {
			char sent_text[320], out_text[320];

			compat_note_mismatch(
			    report,
			    "  key #%d sent \"%s\" (server: \"%s\"): partition remainder %d,"
			    " shardgate %d%s / %d%s from output, SQL %d\n",
			    index,
			    compat_describe(keys[index].text, keys[index].len, sent_text,
			                    sizeof(sent_text)),
			    compat_describe(out, (size_t)PQgetlength(res, row, 1), out_text,
			                    sizeof(out_text)),
			    remainder, sent_bucket, sent_ok ? "" : " (refused)", out_bucket,
			    out_ok ? "" : " (refused)", sql_bucket);
		}
	}
	PQclear(res);
}

/* Binary-format pass: partition vs hash_bucket_for_binary_value of k. */
static void compat_check_binary_rows(compat_session_t *session, const compat_type_t *type,
                                     int modulus, compat_report_t *report)
{
	char sql[256];
	PGresult *res;
	int row, rows;

	snprintf(sql, sizeof(sql), "SELECT i, k, tableoid::regclass::text FROM %s.t",
	         session->schema);
	res = PQexecParams(session->conn, sql, 0, NULL, NULL, NULL, NULL, 1);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		char error[512];

		snprintf(error, sizeof(error), "%s", PQresultErrorMessage(res));
		PQclear(res);
		compat_fail(session, "reading back in binary failed: %s", error);
	}
	rows = PQntuples(res);
	for (row = 0; row < rows; row++) {
		int index = (int)compat_read_be32(PQgetvalue(res, row, 0));
		const uint8_t *key = (const uint8_t *)PQgetvalue(res, row, 1);
		size_t key_len = (size_t)PQgetlength(res, row, 1);
		char relname[128];
		int remainder, bucket = -1;
		bool ok;

		snprintf(relname, sizeof(relname), "%.*s", PQgetlength(res, row, 2),
		         PQgetvalue(res, row, 2));
		remainder = compat_partition_remainder(relname);
		ok = hash_bucket_for_binary_value(type->type, key, key_len, modulus, &bucket);
		report->rows++;
		if (!ok || bucket != remainder)
			compat_note_mismatch(
			    report,
			    "  key #%d (binary, %zu bytes): partition remainder %d,"
			    " shardgate %d%s\n",
			    index, key_len, remainder, bucket, ok ? "" : " (refused)");
	}
	PQclear(res);
}

/* The bucket expression must be usable where rebalancing needs it: a
 * publication's row filter (built-in immutable functions only). */
static void compat_check_publication(compat_session_t *session, const compat_type_t *type)
{
	char expr[512];
	char sql[1024];

	ck_assert(hash_sql_bucket_expr(type->type, "k", 64, expr, sizeof(expr)));
	snprintf(sql, sizeof(sql),
	         "CREATE TABLE %s.plain (k %s); CREATE PUBLICATION %s FOR TABLE %s.plain"
	         " WHERE (%s IN (0, 5, 63)); DROP PUBLICATION %s",
	         session->schema, type->sql_type, session->publication, session->schema, expr,
	         session->publication);
	compat_exec(session, sql);
}

static void compat_run_type(const compat_type_t *type)
{
	static const int moduli[] = {7, 64};
	compat_session_t session;
	compat_key_t *keys = compat_make_keys(type->type);
	compat_report_t report;
	size_t m;

	compat_connect(&session, type);
	for (m = 0; m < sizeof(moduli) / sizeof(moduli[0]); m++) {
		long text_rows;

		memset(&report, 0, sizeof(report));
		compat_create_table(&session, type, moduli[m]);
		compat_copy_keys(&session, keys);
		compat_check_text_rows(&session, type, keys, moduli[m], &report);
		text_rows = report.rows;
		compat_check_binary_rows(&session, type, moduli[m], &report);
		printf("hash_compat %-8s modulus %2d: %ld rows compared (text form sent, server"
		       " output, SQL expression), %ld in binary; %ld mismatches\n",
		       type->name, moduli[m], text_rows, report.rows - text_rows,
		       report.mismatches);
		fflush(stdout);
		if (report.mismatches != 0) {
			compat_free_keys(keys);
			compat_fail(&session, "%s modulus %d: %ld mismatches, first ones:\n%s",
			            type->name, moduli[m], report.mismatches, report.first);
		}
	}
	compat_check_publication(&session, type);
	compat_drop_objects(&session);
	PQfinish(session.conn);
	compat_free_keys(keys);
}

static const compat_type_t compat_types[] = {
    {"smallint", "smallint", KEY_SMALLINT}, {"integer", "integer", KEY_INTEGER},
    {"bigint", "bigint", KEY_BIGINT},       {"text", "text", KEY_TEXT},
    {"varchar", "varchar", KEY_VARCHAR},    {"uuid", "uuid", KEY_UUID},
};

START_TEST(test_hash_buckets_match_postgresql_partitions)
{
	compat_run_type(&compat_types[_i]);
}
END_TEST

int main(void)
{
	Suite *suite = suite_create("hash_compat");
	TCase *tcase = tcase_create("partition_by_hash");
	SRunner *runner;
	int failed;

	tcase_set_timeout(tcase, 60);
	tcase_add_loop_test(tcase, test_hash_buckets_match_postgresql_partitions, 0,
	                    (int)(sizeof(compat_types) / sizeof(compat_types[0])));
	suite_add_tcase(suite, tcase);
	runner = srunner_create(suite);
	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
