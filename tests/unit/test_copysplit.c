/*
 * test_copysplit.c - Check suite for src/route/copy_split.c.
 *
 * Every input is split whole, byte by byte, and in random chunk sizes
 * (1-7 and 1-64 bytes) under twelve seeds; split_all() fails the test
 * unless all give the same rows, keys, header and verdict, so each
 * expectation below also proves the splitter does not depend on where
 * CopyData messages are cut.
 *
 * The expected keys, verdicts and messages were checked against a real
 * PostgreSQL 15.20 by sending the same bytes as CopyData with libpq
 * (PQputCopyData) into COPY ... FROM STDIN with the same options; not
 * the row with a NUL key in test_text_octal_and_hex_give_bytes (PostgreSQL
 * rejects its encoding, on the shard) nor the row-size limits, tried here
 * with a small max_row_bytes instead of PostgreSQL's 1 GiB.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "route/copy_split.h"

#define MAX_ROWS 512

typedef struct {
	int rows;
	char *row[MAX_ROWS];
	size_t row_len[MAX_ROWS];
	char *key[MAX_ROWS];
	size_t key_len[MAX_ROWS];
	bool key_null[MAX_ROWS];
	int headers;
	char *header[4];
	size_t header_len[4];
	bool ok;
	char err[256];
	const char *sqlstate;
	uint64_t counted;
} result_t;

static char *dup_bytes(const void *bytes, size_t len)
{
	char *p = malloc(len + 1);
	ck_assert_ptr_nonnull(p);
	if (len)
		memcpy(p, bytes, len);
	p[len] = '\0';
	return p;
}

static void collect_row(void *arg, const uint8_t *row, size_t row_len, const char *key,
                        size_t key_len, bool key_is_null)
{
	result_t *r = arg;
	ck_assert_int_lt(r->rows, MAX_ROWS);
	r->row[r->rows] = dup_bytes(row, row_len);
	r->row_len[r->rows] = row_len;
	ck_assert_msg(key_is_null == (key == NULL), "key pointer and key_is_null disagree");
	r->key[r->rows] = key_is_null ? NULL : dup_bytes(key, key_len);
	r->key_len[r->rows] = key_len;
	r->key_null[r->rows] = key_is_null;
	r->rows++;
}

static void collect_header(void *arg, const uint8_t *line, size_t len)
{
	result_t *r = arg;
	ck_assert_int_lt(r->headers, 4);
	r->header[r->headers] = dup_bytes(line, len);
	r->header_len[r->headers] = len;
	r->headers++;
}

static void result_free(result_t *r)
{
	for (int i = 0; i < r->rows; i++) {
		free(r->row[i]);
		free(r->key[i]);
	}
	for (int i = 0; i < r->headers; i++)
		free(r->header[i]);
	memset(r, 0, sizeof(*r));
}

/* Chunk sizes: 0 whole, 1 byte by byte, else random 1..max from seed. */
static size_t next_chunk(unsigned *state, int mode, size_t left)
{
	size_t n;

	if (mode == 0)
		return left;
	if (mode == 1)
		return 1;
	*state = *state * 1103515245u + 12345u;
	n = 1 + (*state >> 16) % (mode == 2 ? 7 : 64);
	return n < left ? n : left;
}

/* Splits data with the chunking `mode`; finish runs when every feed passed. */
static void split_mode(const copy_split_opts_t *opts, const void *data, size_t len, int mode,
                       unsigned seed, result_t *r)
{
	copy_split_t *s = copy_split_new(opts);
	const uint8_t *bytes = data;
	unsigned state = seed;
	size_t pos = 0;

	ck_assert_msg(s != NULL, "copy_split_new refused valid options");
	memset(r, 0, sizeof(*r));
	r->ok = true;
	while (pos < len && r->ok) {
		size_t n = next_chunk(&state, mode, len - pos);
		r->ok = copy_split_feed(s, bytes + pos, n, collect_row, collect_header, r, r->err,
		                        sizeof(r->err));
		pos += n;
	}
	if (r->ok)
		r->ok =
		    copy_split_finish(s, collect_row, collect_header, r, r->err, sizeof(r->err));
	r->sqlstate = copy_split_sqlstate(s);
	r->counted = copy_split_rows(s);
	copy_split_free(s);
}

static void expect_same(const result_t *want, const result_t *got, const char *how)
{
	ck_assert_msg(want->ok == got->ok, "%s: verdict %d, whole feed %d (%s)", how, got->ok,
	              want->ok, got->err);
	if (!want->ok)
		ck_assert_msg(strcmp(want->err, got->err) == 0, "%s: error \"%s\", whole \"%s\"",
		              how, got->err, want->err);
	ck_assert_msg(want->rows == got->rows, "%s: %d rows, whole feed %d", how, got->rows,
	              want->rows);
	ck_assert_msg(want->headers == got->headers, "%s: %d headers, whole feed %d", how,
	              got->headers, want->headers);
	for (int i = 0; i < want->rows; i++) {
		ck_assert_msg(want->row_len[i] == got->row_len[i] &&
		                  memcmp(want->row[i], got->row[i], want->row_len[i]) == 0,
		              "%s: row %d bytes differ from whole feed", how, i);
		ck_assert_msg(want->key_null[i] == got->key_null[i], "%s: row %d null differs", how,
		              i);
		ck_assert_msg(want->key_len[i] == got->key_len[i] &&
		                  (want->key_null[i] ||
		                   memcmp(want->key[i], got->key[i], want->key_len[i]) == 0),
		              "%s: row %d key differs from whole feed", how, i);
	}
	for (int i = 0; i < want->headers; i++)
		ck_assert_msg(want->header_len[i] == got->header_len[i] &&
		                  memcmp(want->header[i], got->header[i], want->header_len[i]) == 0,
		              "%s: header differs from whole feed", how);
}

/* Splits whole into r, and checks every other chunking agrees. */
static void split_all(const copy_split_opts_t *opts, const void *data, size_t len, result_t *r)
{
	result_t other;
	char how[64];

	split_mode(opts, data, len, 0, 0, r);
	split_mode(opts, data, len, 1, 0, &other);
	expect_same(r, &other, "byte-by-byte feed");
	result_free(&other);
	for (unsigned seed = 1; seed <= 12; seed++) {
		split_mode(opts, data, len, seed % 2 ? 2 : 3, seed, &other);
		snprintf(how, sizeof(how), "random chunks (seed %u)", seed);
		expect_same(r, &other, how);
		result_free(&other);
	}
}

static void split_str(const copy_split_opts_t *opts, const char *data, result_t *r)
{
	split_all(opts, data, strlen(data), r);
}

static void expect_ok(const result_t *r, int rows)
{
	ck_assert_msg(r->ok, "expected success, got error \"%s\"", r->err);
	ck_assert_msg(r->rows == rows, "expected %d rows, got %d", rows, r->rows);
	ck_assert_msg(r->counted == (uint64_t)rows, "copy_split_rows: expected %d, got %llu", rows,
	              (unsigned long long)r->counted);
}

static void expect_error(const result_t *r, const char *message)
{
	ck_assert_msg(!r->ok, "expected error \"%s\", got success", message);
	ck_assert_msg(strcmp(r->err, message) == 0, "expected error \"%s\", got \"%s\"", message,
	              r->err);
}

/* Row i is `row` (its bytes, terminator included) with key `key` (NULL: a
 * NULL key); the lengths are strlen's. */
static void expect_row(const result_t *r, int i, const char *row, const char *key)
{
	ck_assert_msg(i < r->rows, "row %d missing (%d rows)", i, r->rows);
	ck_assert_msg(r->row_len[i] == strlen(row) && memcmp(r->row[i], row, strlen(row)) == 0,
	              "row %d: expected bytes \"%s\", got \"%.*s\"", i, row, (int)r->row_len[i],
	              r->row[i]);
	if (!key) {
		ck_assert_msg(r->key_null[i], "row %d: expected a NULL key, got \"%s\"", i,
		              r->key[i]);
		return;
	}
	ck_assert_msg(!r->key_null[i], "row %d: expected key \"%s\", got NULL", i, key);
	ck_assert_msg(r->key_len[i] == strlen(key) && memcmp(r->key[i], key, strlen(key)) == 0,
	              "row %d: expected key \"%s\", got \"%.*s\"", i, key, (int)r->key_len[i],
	              r->key[i]);
}

static void expect_key_bytes(const result_t *r, int i, const char *key, size_t key_len)
{
	ck_assert_msg(i < r->rows && !r->key_null[i], "row %d: expected a key", i);
	ck_assert_msg(r->key_len[i] == key_len && memcmp(r->key[i], key, key_len) == 0,
	              "row %d: key bytes differ (length %zu, expected %zu)", i, r->key_len[i],
	              key_len);
}

static copy_split_opts_t text_opts(int key)
{
	copy_split_opts_t o = {.format = 't', .key_position = key};
	return o;
}

static copy_split_opts_t csv_opts(int key)
{
	copy_split_opts_t o = {.format = 'c', .key_position = key};
	return o;
}

/* ---- text ---- */

START_TEST(test_text_rows_and_key_positions)
{
	const char *data = "1\talice\tx\n2\tbob\ty\n";
	result_t r;

	for (int key = 0; key < 3; key++) {
		copy_split_opts_t o = text_opts(key);
		split_str(&o, data, &r);
		expect_ok(&r, 2);
		expect_row(&r, 0, "1\talice\tx\n", key == 0 ? "1" : key == 1 ? "alice" : "x");
		expect_row(&r, 1, "2\tbob\ty\n", key == 0 ? "2" : key == 1 ? "bob" : "y");
		result_free(&r);
	}
}
END_TEST

START_TEST(test_text_null_marker_is_matched_raw)
{
	copy_split_opts_t o = text_opts(0);
	result_t r;

	split_str(&o, "\\N\t1\n\\\\N\t2\nNULL\t3\n\t4\n", &r);
	expect_ok(&r, 4);
	expect_row(&r, 0, "\\N\t1\n", NULL);
	expect_row(&r, 1, "\\\\N\t2\n", "\\N");
	expect_row(&r, 2, "NULL\t3\n", "NULL");
	expect_row(&r, 3, "\t4\n", "");
	result_free(&r);

	o.null_string = "NULL";
	split_str(&o, "\\N\t1\nNULL\t2\n\t3\n", &r);
	expect_ok(&r, 3);
	expect_row(&r, 0, "\\N\t1\n", "N"); /* "\N" is then an escaped N */
	expect_row(&r, 1, "NULL\t2\n", NULL);
	expect_row(&r, 2, "\t3\n", "");
	result_free(&r);
}
END_TEST

START_TEST(test_text_escapes_in_key)
{
	copy_split_opts_t o = text_opts(0);
	result_t r;
	const char want[] = "AB\\\tCq\0018\004gxgA2\b\f\n\r\v";

	split_str(&o,
	          "\\101\\x42\\\\\\tC\\q\\18\\x4g\\xg\\1012\\b\\f\\n\\r\\v\tz\n"
	          "a\\\tb\tc\n",
	          &r);
	expect_ok(&r, 2);
	expect_key_bytes(&r, 0, want, sizeof(want) - 1);
	expect_row(&r, 1, "a\\\tb\tc\n", "a\tb"); /* an escaped delimiter is data */
	result_free(&r);

	o.key_position = 1;
	split_str(&o, "a\\\tb\tc\n", &r);
	expect_ok(&r, 1);
	expect_row(&r, 0, "a\\\tb\tc\n", "c");
	result_free(&r);
}
END_TEST

START_TEST(test_text_octal_and_hex_give_bytes)
{
	copy_split_opts_t o = text_opts(1);
	result_t r;

	split_str(&o, "k\t\\303\\251\\xc3\\xA9\n", &r);
	expect_ok(&r, 1);
	expect_row(&r, 0, "k\t\\303\\251\\xc3\\xA9\n", "\xc3\xa9\xc3\xa9"); /* "éé" */
	result_free(&r);

	/* decoded as such; PostgreSQL then rejects the NUL ("invalid byte
	 * sequence"), on the shard that receives the row */
	split_str(&o, "k\t\\000\\x0\n", &r);
	expect_ok(&r, 1);
	expect_key_bytes(&r, 0, "\0\0", 2);
	result_free(&r);
}
END_TEST

START_TEST(test_text_backslash_newline_is_data)
{
	copy_split_opts_t o = text_opts(0);
	result_t r;

	split_str(&o, "a\\\nb\tc\nd\te\n", &r);
	expect_ok(&r, 2);
	expect_row(&r, 0, "a\\\nb\tc\n", "a\nb");
	expect_row(&r, 1, "d\te\n", "d");
	result_free(&r);

	o.key_position = 1;
	split_str(&o, "a\\\nb\tc\n", &r);
	expect_ok(&r, 1);
	expect_row(&r, 0, "a\\\nb\tc\n", "c");
	result_free(&r);
}
END_TEST

START_TEST(test_text_custom_delimiter_and_null)
{
	copy_split_opts_t o = text_opts(1);
	result_t r;

	o.delimiter = '|';
	o.null_string = "";
	split_str(&o, "1|a\tb|x\n2||y\n3|a\\|b|z\n", &r);
	expect_ok(&r, 3);
	expect_row(&r, 0, "1|a\tb|x\n", "a\tb");
	expect_row(&r, 1, "2||y\n", NULL);
	expect_row(&r, 2, "3|a\\|b|z\n", "a|b");
	result_free(&r);
}
END_TEST

START_TEST(test_text_crlf_lines)
{
	copy_split_opts_t o = text_opts(1);
	result_t r;

	split_str(&o, "1\tx\r\n2\ty\r\n3\tz", &r);
	expect_ok(&r, 3);
	expect_row(&r, 0, "1\tx\r\n", "x");
	expect_row(&r, 1, "2\ty\r\n", "y");
	expect_row(&r, 2, "3\tz", "z"); /* the last row, as the client sent it */
	result_free(&r);
}
END_TEST

START_TEST(test_text_cr_lines)
{
	copy_split_opts_t o = text_opts(0);
	result_t r;

	split_str(&o, "1\r2\r3", &r);
	expect_ok(&r, 3);
	expect_row(&r, 0, "1\r", "1");
	expect_row(&r, 1, "2\r", "2");
	expect_row(&r, 2, "3", "3");
	result_free(&r);

	split_str(&o, "1\r", &r);
	expect_ok(&r, 1);
	expect_row(&r, 0, "1\r", "1");
	result_free(&r);
}
END_TEST

START_TEST(test_text_mixed_line_ends_fail)
{
	copy_split_opts_t o = text_opts(0);
	result_t r;

	split_str(&o, "1\n2\r\n", &r);
	expect_error(&r, "literal carriage return found in data");
	ck_assert_int_eq(r.rows, 1);
	ck_assert_str_eq(r.sqlstate, "22P04");
	result_free(&r);

	split_str(&o, "1\r\n2\n", &r);
	expect_error(&r, "literal newline found in data");
	result_free(&r);

	split_str(&o, "1\r\n2\r3\r\n", &r);
	expect_error(&r, "literal carriage return found in data");
	result_free(&r);

	split_str(&o, "1\r2\n", &r);
	expect_error(&r, "literal newline found in data");
	result_free(&r);
}
END_TEST

START_TEST(test_text_end_marker)
{
	copy_split_opts_t o = text_opts(0);
	result_t r;

	split_str(&o, "1\n\\.\n2\n", &r);
	expect_ok(&r, 1);
	expect_row(&r, 0, "1\n", "1");
	result_free(&r);

	/* on a line with data: the bytes before it are a last row */
	split_str(&o, "1\n2\t\\N\\.\nignored\n", &r);
	expect_ok(&r, 2);
	expect_row(&r, 1, "2\t\\N", "2");
	result_free(&r);

	split_str(&o, "1\r\n2\\.\r\n", &r);
	expect_ok(&r, 2);
	expect_row(&r, 1, "2", "2");
	result_free(&r);

	/* an escaped backslash before '.' is no marker */
	split_str(&o, "a\\\\.\nb\n", &r);
	expect_ok(&r, 2);
	expect_row(&r, 0, "a\\\\.\n", "a\\.");
	result_free(&r);
}
END_TEST

START_TEST(test_text_data_after_end_marker_is_ignored)
{
	copy_split_opts_t o = text_opts(0);
	copy_split_t *s = copy_split_new(&o);
	result_t r = {0};
	char err[128];

	ck_assert(copy_split_feed(s, (const uint8_t *)"1\n\\.\n", 5, collect_row, NULL, &r, err,
	                          sizeof(err)));
	ck_assert(copy_split_feed(s, (const uint8_t *)"2\n\\x\n", 5, collect_row, NULL, &r, err,
	                          sizeof(err)));
	ck_assert(copy_split_finish(s, collect_row, NULL, &r, err, sizeof(err)));
	ck_assert_int_eq(r.rows, 1);
	ck_assert_uint_eq(copy_split_rows(s), 1);
	copy_split_free(s);
	result_free(&r);
}
END_TEST

START_TEST(test_text_end_marker_malformed)
{
	copy_split_opts_t o = text_opts(0);
	result_t r;

	split_str(&o, "1\n\\.x\n", &r);
	expect_error(&r, "end-of-copy marker corrupt");
	result_free(&r);

	split_str(&o, "1\n\\.", &r); /* PostgreSQL 15 wants its newline */
	expect_error(&r, "end-of-copy marker corrupt");
	ck_assert_int_eq(r.rows, 1);
	result_free(&r);

	split_str(&o, "1\r\n\\.\n", &r);
	expect_error(&r, "end-of-copy marker does not match previous newline style");
	result_free(&r);

	split_str(&o, "1\n\\.\r\n", &r);
	expect_error(&r, "end-of-copy marker does not match previous newline style");
	result_free(&r);
}
END_TEST

START_TEST(test_text_final_row_without_newline)
{
	copy_split_opts_t o = text_opts(1);
	result_t r;

	split_str(&o, "1\ta\n2\tb", &r);
	expect_ok(&r, 2);
	expect_row(&r, 1, "2\tb", "b");
	result_free(&r);

	/* PostgreSQL drops a final unpaired backslash; the row keeps it, so
	 * the shard, seeing it last too, drops it as well */
	split_str(&o, "1\ta\n2\tb\\", &r);
	expect_ok(&r, 2);
	expect_row(&r, 1, "2\tb\\", "b");
	result_free(&r);

	split_str(&o, "", &r);
	expect_ok(&r, 0);
	result_free(&r);
}
END_TEST

START_TEST(test_text_header)
{
	copy_split_opts_t o = text_opts(0);
	result_t r;

	o.header = true;
	split_str(&o, "id\tname\n1\ta\n2\tb\n", &r);
	expect_ok(&r, 2);
	ck_assert_int_eq(r.headers, 1);
	ck_assert_str_eq(r.header[0], "id\tname\n");
	expect_row(&r, 0, "1\ta\n", "1");
	result_free(&r);

	split_str(&o, "id\tname", &r);
	expect_ok(&r, 0);
	ck_assert_int_eq(r.headers, 1);
	ck_assert_str_eq(r.header[0], "id\tname");
	result_free(&r);
}
END_TEST

START_TEST(test_text_missing_key_column)
{
	copy_split_opts_t o = text_opts(2);
	result_t r;

	o.key_column = "user_id";
	split_str(&o, "1\ta\tb\n2\ta\n", &r);
	expect_error(&r, "missing data for column \"user_id\"");
	ck_assert_int_eq(r.rows, 1);
	ck_assert_str_eq(r.sqlstate, "22P04");
	result_free(&r);

	o.key_column = NULL;
	split_str(&o, "\n", &r);
	expect_error(&r, "missing data for column at position 3");
	result_free(&r);
}
END_TEST

START_TEST(test_text_empty_line_is_a_row)
{
	copy_split_opts_t o = text_opts(0);
	result_t r;

	split_str(&o, "\n\n", &r);
	expect_ok(&r, 2);
	expect_row(&r, 0, "\n", "");
	result_free(&r);
}
END_TEST

START_TEST(test_row_size_limit)
{
	copy_split_opts_t o = text_opts(0);
	result_t r;

	o.max_row_bytes = 16;
	split_str(&o, "1\n0123456789abcdef\n", &r);
	expect_ok(&r, 2);
	result_free(&r);

	split_str(&o, "1\n0123456789abcdefghijklmnopqrstuvwxyz\n2\n", &r);
	ck_assert(!r.ok);
	ck_assert_int_eq(r.rows, 1);
	ck_assert_str_eq(r.sqlstate, "54000");
	result_free(&r);

	o.format = 'c';
	split_str(&o, "\"0123456789\nabcdefghijklmnopqrstuvwxyz\n", &r);
	ck_assert(!r.ok);
	ck_assert_str_eq(r.sqlstate, "54000");
	result_free(&r);
}
END_TEST

/* ---- CSV ---- */

START_TEST(test_csv_rows_and_key_positions)
{
	const char *data = "1,alice,x\n2,bob,y\n";
	result_t r;

	for (int key = 0; key < 3; key++) {
		copy_split_opts_t o = csv_opts(key);
		split_str(&o, data, &r);
		expect_ok(&r, 2);
		expect_row(&r, 0, "1,alice,x\n", key == 0 ? "1" : key == 1 ? "alice" : "x");
		expect_row(&r, 1, "2,bob,y\n", key == 0 ? "2" : key == 1 ? "bob" : "y");
		result_free(&r);
	}
}
END_TEST

START_TEST(test_csv_quoted_delimiter_and_doubled_quotes)
{
	copy_split_opts_t o = csv_opts(0);
	result_t r;

	split_str(&o, "\"a,b\",1\n\"say \"\"hi\"\"\",2\n\"\"\"\",3\n", &r);
	expect_ok(&r, 3);
	expect_row(&r, 0, "\"a,b\",1\n", "a,b");
	expect_row(&r, 1, "\"say \"\"hi\"\"\",2\n", "say \"hi\"");
	expect_row(&r, 2, "\"\"\"\",3\n", "\"");
	result_free(&r);

	o.key_position = 1;
	split_str(&o, "\"a,b\",\"c,d\"\n", &r);
	expect_ok(&r, 1);
	expect_row(&r, 0, "\"a,b\",\"c,d\"\n", "c,d");
	result_free(&r);
}
END_TEST

START_TEST(test_csv_quote_inside_field)
{
	copy_split_opts_t o = csv_opts(1);
	result_t r;

	split_str(&o, "a,b\"x,y\"z,c\n", &r);
	expect_ok(&r, 1);
	expect_row(&r, 0, "a,b\"x,y\"z,c\n", "bx,yz");
	result_free(&r);
}
END_TEST

START_TEST(test_csv_escape_option)
{
	copy_split_opts_t o = csv_opts(0);
	result_t r;

	o.escape = '\\';
	split_str(&o, "\"a\\\"b\",1\n\"c\\\\\",2\n\"d\\x\",3\n\"e\"\"f\",4\n\"g\\\"\n\",5\n", &r);
	expect_ok(&r, 5);
	expect_row(&r, 0, "\"a\\\"b\",1\n", "a\"b");
	expect_row(&r, 1, "\"c\\\\\",2\n", "c\\");
	expect_row(&r, 2, "\"d\\x\",3\n", "d\\x");
	expect_row(&r, 3, "\"e\"\"f\",4\n", "ef"); /* "" closes and reopens */
	expect_row(&r, 4, "\"g\\\"\n\",5\n", "g\"\n");
	result_free(&r);

	/* an escape outside quotes is data */
	split_str(&o, "a\\,1\n", &r);
	expect_ok(&r, 1);
	expect_row(&r, 0, "a\\,1\n", "a\\");
	result_free(&r);
}
END_TEST

START_TEST(test_csv_embedded_newlines)
{
	copy_split_opts_t o = csv_opts(0);
	result_t r;

	split_str(&o, "\"l1\nl2\",1\n2,x\n", &r);
	expect_ok(&r, 2);
	expect_row(&r, 0, "\"l1\nl2\",1\n", "l1\nl2");
	expect_row(&r, 1, "2,x\n", "2");
	result_free(&r);

	split_str(&o, "\"l1\r\nl2\r\",1\r\n2,x\r\n", &r);
	expect_ok(&r, 2);
	expect_row(&r, 0, "\"l1\r\nl2\r\",1\r\n", "l1\r\nl2\r");
	result_free(&r);

	o.key_position = 1;
	split_str(&o, "\"a\n\n\",\"b\nc\"\n", &r);
	expect_ok(&r, 1);
	expect_row(&r, 0, "\"a\n\n\",\"b\nc\"\n", "b\nc");
	result_free(&r);
}
END_TEST

START_TEST(test_csv_null_string)
{
	copy_split_opts_t o = csv_opts(0);
	result_t r;

	split_str(&o, ",1\n\"\",2\nNULL,3\n", &r);
	expect_ok(&r, 3);
	expect_row(&r, 0, ",1\n", NULL);
	expect_row(&r, 1, "\"\",2\n", "");
	expect_row(&r, 2, "NULL,3\n", "NULL");
	result_free(&r);

	o.null_string = "NULL";
	split_str(&o, ",1\nNULL,2\n\"NULL\",3\n", &r);
	expect_ok(&r, 3);
	expect_row(&r, 0, ",1\n", "");
	expect_row(&r, 1, "NULL,2\n", NULL);
	expect_row(&r, 2, "\"NULL\",3\n", "NULL");
	result_free(&r);
}
END_TEST

START_TEST(test_csv_force_null_and_force_not_null)
{
	copy_split_opts_t o = csv_opts(0);
	result_t r;

	o.key_force_not_null = true;
	split_str(&o, ",1\n", &r);
	expect_ok(&r, 1);
	expect_row(&r, 0, ",1\n", "");
	result_free(&r);

	o.key_force_not_null = false;
	o.key_force_null = true;
	o.null_string = "N";
	split_str(&o, "\"N\",1\nN,2\n\"x\",3\n", &r);
	expect_ok(&r, 3);
	expect_row(&r, 0, "\"N\",1\n", NULL);
	expect_row(&r, 1, "N,2\n", NULL);
	expect_row(&r, 2, "\"x\",3\n", "x");
	result_free(&r);
}
END_TEST

START_TEST(test_csv_header)
{
	copy_split_opts_t o = csv_opts(0);
	result_t r;

	o.header = true;
	split_str(&o, "\"id\nx\",name\n1,a\n", &r);
	expect_ok(&r, 1);
	ck_assert_int_eq(r.headers, 1);
	ck_assert_str_eq(r.header[0], "\"id\nx\",name\n");
	expect_row(&r, 0, "1,a\n", "1");
	result_free(&r);

	/* without header_fn the header line is dropped */
	copy_split_t *s = copy_split_new(&o);
	char err[64];
	memset(&r, 0, sizeof(r));
	ck_assert(copy_split_feed(s, (const uint8_t *)"h\n1\n", 4, collect_row, NULL, &r, err,
	                          sizeof(err)));
	ck_assert(copy_split_finish(s, collect_row, NULL, &r, err, sizeof(err)));
	ck_assert_int_eq(r.rows, 1);
	ck_assert_str_eq(r.row[0], "1\n");
	copy_split_free(s);
	result_free(&r);
}
END_TEST

START_TEST(test_csv_end_marker)
{
	copy_split_opts_t o = csv_opts(0);
	result_t r;

	split_str(&o, "1,a\n\\.\n2,b\n", &r);
	expect_ok(&r, 1);
	result_free(&r);

	/* "\." is data unless alone on a line */
	split_str(&o, "\\.x,1\nx\\.\n\"\\.\"\n\"a\n\\.\n\",1\n", &r);
	expect_ok(&r, 4);
	expect_row(&r, 0, "\\.x,1\n", "\\.x");
	expect_row(&r, 1, "x\\.\n", "x\\.");
	expect_row(&r, 2, "\"\\.\"\n", "\\.");
	expect_row(&r, 3, "\"a\n\\.\n\",1\n", "a\n\\.\n");
	result_free(&r);

	/* at the end of data without a newline it is data too (and must be
	 * forwarded without a newline, which would make it the marker) */
	split_str(&o, "1\n\\.", &r);
	expect_ok(&r, 2);
	expect_row(&r, 1, "\\.", "\\.");
	result_free(&r);

	/* in a \r\n stream, "\.\n" is data whose \n is a stray newline */
	split_str(&o, "1\r\n\\.\n", &r);
	expect_error(&r, "unquoted newline found in data");
	result_free(&r);

	split_str(&o, "1\r\n\\.\r\n2\r\n", &r);
	expect_ok(&r, 1);
	result_free(&r);
}
END_TEST

START_TEST(test_csv_unterminated_quote)
{
	copy_split_opts_t o = csv_opts(0);
	result_t r;

	split_str(&o, "1\n\"abc\n", &r);
	expect_error(&r, "unterminated CSV quoted field");
	ck_assert_int_eq(r.rows, 1);
	result_free(&r);

	split_str(&o, "a,b\"x\n", &r);
	expect_error(&r, "unterminated CSV quoted field");
	result_free(&r);
}
END_TEST

START_TEST(test_csv_custom_quote_and_delimiter)
{
	copy_split_opts_t o = csv_opts(1);
	result_t r;

	o.quote = '\'';
	o.delimiter = ';';
	split_str(&o, "'a;b';'it''s'\n1;\"x\"\n", &r);
	expect_ok(&r, 2);
	expect_row(&r, 0, "'a;b';'it''s'\n", "it's");
	expect_row(&r, 1, "1;\"x\"\n", "\"x\"");
	result_free(&r);
}
END_TEST

START_TEST(test_csv_line_ends)
{
	copy_split_opts_t o = csv_opts(1);
	result_t r;

	split_str(&o, "1,a\r\n2,b", &r);
	expect_ok(&r, 2);
	expect_row(&r, 0, "1,a\r\n", "a");
	expect_row(&r, 1, "2,b", "b");
	result_free(&r);

	split_str(&o, "1,a\n2,b\r\n", &r);
	expect_error(&r, "unquoted carriage return found in data");
	result_free(&r);

	split_str(&o, "1,a\r2,\"b\rc\"\r", &r);
	expect_ok(&r, 2);
	expect_row(&r, 1, "2,\"b\rc\"\r", "b\rc");
	result_free(&r);
}
END_TEST

START_TEST(test_csv_missing_key_column)
{
	copy_split_opts_t o = csv_opts(1);
	result_t r;

	o.key_column = "id";
	split_str(&o, "1,\"a,b\"\n\"1,2\"\n", &r);
	expect_error(&r, "missing data for column \"id\"");
	ck_assert_int_eq(r.rows, 1);
	result_free(&r);
}
END_TEST

START_TEST(test_csv_header_left_in_quote_is_accepted)
{
	copy_split_opts_t o = csv_opts(0);
	result_t r;

	/* PostgreSQL never reads the HEADER line's fields, so an open quote
	 * there is no error: the header just runs to the end of the data */
	o.header = true;
	split_str(&o, "h1,\"h2\n1,2\n", &r);
	expect_ok(&r, 0);
	ck_assert_int_eq(r.headers, 1);
	ck_assert_str_eq(r.header[0], "h1,\"h2\n1,2\n");
	result_free(&r);

	o.header = false;
	split_str(&o, "h1,\"h2\n1,2\n", &r);
	expect_error(&r, "unterminated CSV quoted field");
	result_free(&r);
}
END_TEST

/* ---- binary ---- */

typedef struct {
	uint8_t bytes[512];
	size_t len;
} bin_t;

static void bin_put(bin_t *b, const void *bytes, size_t n)
{
	ck_assert_uint_le(b->len + n, sizeof(b->bytes));
	memcpy(b->bytes + b->len, bytes, n);
	b->len += n;
}

static void bin_u32(bin_t *b, uint32_t v)
{
	uint8_t be[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
	bin_put(b, be, 4);
}

static void bin_u16(bin_t *b, uint16_t v)
{
	uint8_t be[2] = {(uint8_t)(v >> 8), (uint8_t)v};
	bin_put(b, be, 2);
}

static void bin_header(bin_t *b, uint32_t flags, const char *extension)
{
	bin_put(b, "PGCOPY\n\377\r\n\0", 11);
	bin_u32(b, flags);
	bin_u32(b, (uint32_t)strlen(extension));
	bin_put(b, extension, strlen(extension));
}

/* A field: NULL for SQL NULL. */
static void bin_field(bin_t *b, const char *value, size_t len)
{
	if (!value) {
		bin_u32(b, UINT32_MAX);
		return;
	}
	bin_u32(b, (uint32_t)len);
	bin_put(b, value, len);
}

static const char canonical_header[] = "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0";

START_TEST(test_binary_rows_and_keys)
{
	copy_split_opts_t o = {.format = 'b', .key_position = 1};
	bin_t b = {0};
	result_t r;

	bin_header(&b, 0, "");
	size_t t1 = b.len;
	bin_u16(&b, 2);
	bin_field(&b, "\0\0\0\7", 4);
	bin_field(&b, "abc", 3);
	size_t t2 = b.len;
	bin_u16(&b, 2);
	bin_field(&b, NULL, 0);
	bin_field(&b, "", 0);
	size_t t3 = b.len;
	bin_u16(&b, 3);
	bin_field(&b, "x", 1);
	bin_field(&b, NULL, 0);
	bin_field(&b, "yz", 2);
	size_t end = b.len;
	bin_u16(&b, 0xffff);

	split_all(&o, b.bytes, b.len, &r);
	expect_ok(&r, 3);
	ck_assert_int_eq(r.headers, 1);
	ck_assert_uint_eq(r.header_len[0], 19);
	ck_assert(memcmp(r.header[0], canonical_header, 19) == 0);
	ck_assert_uint_eq(r.row_len[0], t2 - t1);
	ck_assert(memcmp(r.row[0], b.bytes + t1, t2 - t1) == 0);
	ck_assert_uint_eq(r.row_len[1], t3 - t2);
	ck_assert_uint_eq(r.row_len[2], end - t3);
	ck_assert(memcmp(r.row[2], b.bytes + t3, end - t3) == 0);
	expect_key_bytes(&r, 0, "abc", 3);
	expect_key_bytes(&r, 1, "", 0);
	ck_assert(r.key_null[2]);
	result_free(&r);

	o.key_position = 0;
	split_all(&o, b.bytes, b.len, &r);
	expect_ok(&r, 3);
	expect_key_bytes(&r, 0, "\0\0\0\7", 4);
	ck_assert(r.key_null[1]);
	expect_key_bytes(&r, 2, "x", 1);
	result_free(&r);
}
END_TEST

START_TEST(test_binary_long_key_across_chunks)
{
	copy_split_opts_t o = {.format = 'b', .key_position = 1};
	char key[300];
	bin_t b = {0};
	result_t r;

	for (size_t i = 0; i < sizeof(key); i++)
		key[i] = (char)('a' + i % 26);
	bin_header(&b, 0, "");
	bin_u16(&b, 2);
	bin_field(&b, "1", 1);
	bin_field(&b, key, sizeof(key));
	bin_u16(&b, 2);
	bin_field(&b, "2", 1);
	bin_field(&b, "k", 1);
	split_all(&o, b.bytes, b.len, &r);
	expect_ok(&r, 2);
	expect_key_bytes(&r, 0, key, sizeof(key));
	ck_assert_uint_eq(r.row_len[0], 2 + 4 + 1 + 4 + sizeof(key));
	expect_key_bytes(&r, 1, "k", 1);
	result_free(&r);
}
END_TEST

START_TEST(test_binary_header_extension_is_dropped)
{
	copy_split_opts_t o = {.format = 'b', .key_position = 0};
	bin_t b = {0};
	result_t r;

	bin_header(&b, 0x0000ffff, "ext");
	bin_u16(&b, 1);
	bin_field(&b, "k", 1);
	bin_u16(&b, 0xffff);
	split_all(&o, b.bytes, b.len, &r);
	expect_ok(&r, 1);
	ck_assert_int_eq(r.headers, 1);
	ck_assert_uint_eq(r.header_len[0], 19);
	/* flags kept, extension length zero */
	ck_assert(memcmp(r.header[0], "PGCOPY\n\377\r\n\0\0\0\377\377\0\0\0\0", 19) == 0);
	expect_key_bytes(&r, 0, "k", 1);
	result_free(&r);
}
END_TEST

START_TEST(test_binary_bad_header)
{
	copy_split_opts_t o = {.format = 'b', .key_position = 0};
	bin_t b = {0};
	result_t r;

	bin_put(&b, "PGCOPY\n\377\r\n\1\0\0\0\0\0\0\0\0", 19);
	split_all(&o, b.bytes, b.len, &r);
	expect_error(&r, "COPY file signature not recognized");
	ck_assert_str_eq(r.sqlstate, "22P04");
	result_free(&r);

	b.len = 0;
	bin_header(&b, 1u << 16, "");
	split_all(&o, b.bytes, b.len, &r);
	expect_error(&r, "invalid COPY file header (WITH OIDS)");
	result_free(&r);

	b.len = 0;
	bin_header(&b, 1u << 17, "");
	split_all(&o, b.bytes, b.len, &r);
	expect_error(&r, "unrecognized critical flags in COPY file header");
	result_free(&r);

	b.len = 0;
	bin_put(&b, "PGCOPY\n\377\r\n\0\0\0\0\0\377\377\377\377", 19);
	split_all(&o, b.bytes, b.len, &r);
	expect_error(&r, "invalid COPY file header (missing length)");
	result_free(&r);

	split_all(&o, "", 0, &r);
	expect_error(&r, "COPY file signature not recognized");
	result_free(&r);

	split_all(&o, "PGCOPY\n\377\r\n\0\0\0", 13, &r);
	expect_error(&r, "invalid COPY file header (missing flags)");
	result_free(&r);

	split_all(&o, "PGCOPY\n\377\r\n\0\0\0\0\0\0\0", 17, &r);
	expect_error(&r, "invalid COPY file header (missing length)");
	result_free(&r);

	b.len = 0;
	bin_header(&b, 0, "abcd");
	split_all(&o, b.bytes, b.len - 1, &r);
	expect_error(&r, "invalid COPY file header (wrong length)");
	result_free(&r);
}
END_TEST

START_TEST(test_binary_malformed_tuples)
{
	copy_split_opts_t o = {.format = 'b', .key_position = 1};
	bin_t b = {0};
	result_t r;

	bin_header(&b, 0, "");
	size_t header = b.len;
	bin_u16(&b, 1);
	bin_field(&b, "a", 1);
	split_all(&o, b.bytes, b.len, &r);
	expect_error(&r, "row field count is 1, expected at least 2");
	result_free(&r);

	b.len = header;
	bin_u16(&b, 2);
	bin_u32(&b, 0xfffffffe); /* length -2 */
	split_all(&o, b.bytes, b.len, &r);
	expect_error(&r, "invalid field size");
	result_free(&r);

	b.len = header;
	bin_u16(&b, 2);
	bin_field(&b, "a", 1);
	bin_field(&b, "bcd", 3);
	split_all(&o, b.bytes, b.len - 1, &r);
	expect_error(&r, "unexpected EOF in COPY data");
	result_free(&r);

	split_all(&o, b.bytes, b.len - 5, &r); /* cut inside a field length */
	expect_error(&r, "unexpected EOF in COPY data");
	result_free(&r);
}
END_TEST

START_TEST(test_binary_trailer)
{
	copy_split_opts_t o = {.format = 'b', .key_position = 0};
	bin_t b = {0};
	result_t r;

	bin_header(&b, 0, "");
	bin_u16(&b, 1);
	bin_field(&b, "a", 1);
	size_t before_trailer = b.len;
	bin_u16(&b, 0xffff);
	bin_put(&b, "x", 1);
	split_all(&o, b.bytes, b.len, &r);
	expect_error(&r, "received copy data after EOF marker");
	ck_assert_int_eq(r.rows, 1);
	result_free(&r);

	/* PostgreSQL accepts a stream without trailer, or one stray byte */
	split_all(&o, b.bytes, before_trailer, &r);
	expect_ok(&r, 1);
	result_free(&r);
	split_all(&o, b.bytes, before_trailer + 1, &r);
	expect_ok(&r, 1);
	result_free(&r);
}
END_TEST

START_TEST(test_binary_row_size_limit)
{
	copy_split_opts_t o = {.format = 'b', .key_position = 0, .max_row_bytes = 16};
	bin_t b = {0};
	result_t r;

	bin_header(&b, 0, "");
	bin_u16(&b, 1);
	bin_field(&b, "0123456789", 10);
	bin_u16(&b, 1);
	bin_field(&b, "0123456789a", 11);
	split_all(&o, b.bytes, b.len, &r);
	ck_assert(!r.ok);
	ck_assert_int_eq(r.rows, 1);
	ck_assert_str_eq(r.sqlstate, "54000");
	result_free(&r);
}
END_TEST

/* ---- options, errors, streams ---- */

START_TEST(test_options_rejected_like_postgres)
{
	static const copy_split_opts_t bad[] = {
	    {.format = 'x'},
	    {.format = 't', .delimiter = '\\'},
	    {.format = 't', .delimiter = 'a'},
	    {.format = 't', .delimiter = '7'},
	    {.format = 't', .delimiter = '.'},
	    {.format = 'c', .delimiter = '\n'},
	    {.format = 'c', .delimiter = '\r'},
	    {.format = 'c', .delimiter = '"'},
	    {.format = 't', .null_string = "a\tb"},
	    {.format = 't', .null_string = "a\nb"},
	    {.format = 'c', .null_string = "\"N\""},
	    {.format = 't', .quote = '\''},
	    {.format = 't', .key_force_null = true},
	    {.format = 'b', .header = true},
	    {.format = 'b', .delimiter = ','},
	    {.format = 't', .key_position = -1},
	    {.format = 't', .key_position = COPY_SPLIT_MAX_COLUMNS},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		copy_split_t *s = copy_split_new(&bad[i]);
		ck_assert_msg(s == NULL, "options %zu: expected refusal", i);
	}

	copy_split_opts_t good = {.format = 'c',
	                          .delimiter = '|',
	                          .quote = '\'',
	                          .escape = '\\',
	                          .null_string = "\\N",
	                          .header = true,
	                          .key_position = 1599};
	copy_split_t *s = copy_split_new(&good);
	ck_assert_ptr_nonnull(s);
	copy_split_free(s);
	copy_split_free(NULL);
}
END_TEST

START_TEST(test_error_is_sticky)
{
	copy_split_opts_t o = text_opts(1);
	copy_split_t *s = copy_split_new(&o);
	result_t r = {0};
	char err[128] = "";

	ck_assert_ptr_null(copy_split_sqlstate(s));
	ck_assert(!copy_split_feed(s, (const uint8_t *)"1\n", 2, collect_row, NULL, &r, err,
	                           sizeof(err)));
	ck_assert_str_eq(err, "missing data for column at position 2");
	err[0] = '\0';
	ck_assert(!copy_split_feed(s, (const uint8_t *)"1\t2\n", 4, collect_row, NULL, &r, err,
	                           sizeof(err)));
	ck_assert_str_eq(err, "missing data for column at position 2");
	ck_assert(!copy_split_finish(s, collect_row, NULL, &r, err, sizeof(err)));
	ck_assert_int_eq(r.rows, 0);
	ck_assert_str_eq(copy_split_sqlstate(s), "22P04");
	copy_split_free(s);
}
END_TEST

/* Random rows with every kind of escape and quote: the rows handed over
 * tile the input exactly, whatever the chunking. */
static size_t make_text_data(char *out, size_t cap, unsigned seed, bool csv, const char *eol,
                             bool last_eol)
{
	static const char *const text_pieces[] = {"a",    "\\\\", "\\t",  "\\N", "\\101",
	                                          "\\x4", "é",    "\\\n", "\\r", "\\\\."};
	static const char *const csv_pieces[] = {"a",   "\"q,\"", "\"\"\"\"", "\"l\nm\"",
	                                         "\\.", "\"\r\"", "é",        ""};
	size_t len = 0;
	unsigned state = seed;

	for (int row = 0; row < 150; row++) {
		for (int field = 0; field < 3; field++) {
			if (field)
				out[len++] = csv ? ',' : '\t';
			state = state * 1103515245u + 12345u;
			int pieces = (int)((state >> 16) % 4);
			for (int p = 0; p < pieces; p++) {
				state = state * 1103515245u + 12345u;
				const char *piece = csv ? csv_pieces[(state >> 16) % 8]
				                        : text_pieces[(state >> 16) % 10];
				/* a quoted CSV piece only starts a field */
				if (csv && piece[0] == '"' && p > 0)
					piece = "b";
				if (csv && p > 0 && out[len - 1] == '"')
					break;
				ck_assert_uint_lt(len + strlen(piece) + 8, cap);
				memcpy(out + len, piece, strlen(piece));
				len += strlen(piece);
			}
		}
		if (row < 149 || last_eol) {
			memcpy(out + len, eol, strlen(eol));
			len += strlen(eol);
		}
	}
	return len;
}

/* Header and rows handed over, in order, rebuild the input byte for byte:
 * what the caller forwards is what the client sent. */
static void expect_tiling(const result_t *r, const char *data, size_t len)
{
	size_t at = 0;

	for (int i = 0; i < r->headers; i++) {
		ck_assert_msg(memcmp(data + at, r->header[i], r->header_len[i]) == 0,
		              "the header is not the input's first bytes");
		at += r->header_len[i];
	}
	for (int i = 0; i < r->rows; i++) {
		ck_assert_msg(at + r->row_len[i] <= len &&
		                  memcmp(data + at, r->row[i], r->row_len[i]) == 0,
		              "row %d is not the input's next bytes", i);
		at += r->row_len[i];
	}
	ck_assert_uint_eq(at, len);
}

START_TEST(test_random_rows_tile_the_input)
{
	static char data[32768];
	static const char *const eols[] = {"\n", "\r\n", "\r"};

	for (int csv = 0; csv < 2; csv++) {
		for (int e = 0; e < 3; e++) {
			for (unsigned seed = 1; seed <= 4; seed++) {
				copy_split_opts_t o = csv ? csv_opts(2) : text_opts(2);
				bool last_eol = seed % 2;
				size_t len = make_text_data(data, sizeof(data), seed, csv, eols[e],
				                            last_eol);
				result_t r;

				split_all(&o, data, len, &r);
				expect_ok(&r, 150);
				expect_tiling(&r, data, len);
				result_free(&r);

				o.header = true;
				split_all(&o, data, len, &r);
				expect_ok(&r, 149);
				ck_assert_int_eq(r.headers, 1);
				expect_tiling(&r, data, len);
				result_free(&r);
			}
		}
	}
}
END_TEST

static Suite *copysplit_suite(void)
{
	Suite *suite = suite_create("copy_split");
	TCase *text = tcase_create("text");
	TCase *csv = tcase_create("csv");
	TCase *binary = tcase_create("binary");
	TCase *api = tcase_create("api");

	tcase_add_test(text, test_text_rows_and_key_positions);
	tcase_add_test(text, test_text_null_marker_is_matched_raw);
	tcase_add_test(text, test_text_escapes_in_key);
	tcase_add_test(text, test_text_octal_and_hex_give_bytes);
	tcase_add_test(text, test_text_backslash_newline_is_data);
	tcase_add_test(text, test_text_custom_delimiter_and_null);
	tcase_add_test(text, test_text_crlf_lines);
	tcase_add_test(text, test_text_cr_lines);
	tcase_add_test(text, test_text_mixed_line_ends_fail);
	tcase_add_test(text, test_text_end_marker);
	tcase_add_test(text, test_text_data_after_end_marker_is_ignored);
	tcase_add_test(text, test_text_end_marker_malformed);
	tcase_add_test(text, test_text_final_row_without_newline);
	tcase_add_test(text, test_text_header);
	tcase_add_test(text, test_text_missing_key_column);
	tcase_add_test(text, test_text_empty_line_is_a_row);
	tcase_add_test(text, test_row_size_limit);
	suite_add_tcase(suite, text);

	tcase_add_test(csv, test_csv_rows_and_key_positions);
	tcase_add_test(csv, test_csv_quoted_delimiter_and_doubled_quotes);
	tcase_add_test(csv, test_csv_quote_inside_field);
	tcase_add_test(csv, test_csv_escape_option);
	tcase_add_test(csv, test_csv_embedded_newlines);
	tcase_add_test(csv, test_csv_null_string);
	tcase_add_test(csv, test_csv_force_null_and_force_not_null);
	tcase_add_test(csv, test_csv_header);
	tcase_add_test(csv, test_csv_end_marker);
	tcase_add_test(csv, test_csv_unterminated_quote);
	tcase_add_test(csv, test_csv_custom_quote_and_delimiter);
	tcase_add_test(csv, test_csv_line_ends);
	tcase_add_test(csv, test_csv_missing_key_column);
	tcase_add_test(csv, test_csv_header_left_in_quote_is_accepted);
	suite_add_tcase(suite, csv);

	tcase_add_test(binary, test_binary_rows_and_keys);
	tcase_add_test(binary, test_binary_long_key_across_chunks);
	tcase_add_test(binary, test_binary_header_extension_is_dropped);
	tcase_add_test(binary, test_binary_bad_header);
	tcase_add_test(binary, test_binary_malformed_tuples);
	tcase_add_test(binary, test_binary_trailer);
	tcase_add_test(binary, test_binary_row_size_limit);
	suite_add_tcase(suite, binary);

	tcase_add_test(api, test_options_rejected_like_postgres);
	tcase_add_test(api, test_error_is_sticky);
	tcase_add_test(api, test_random_rows_tile_the_input);
	suite_add_tcase(suite, api);
	return suite;
}

int main(void)
{
	SRunner *runner = srunner_create(copysplit_suite());
	int failed;

	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
