/*
 * copy_split.c - COPY FROM STDIN data cut into rows, each with its shard key.
 *
 * Rows are found in two steps, as PostgreSQL 15 does: a line scanner
 * (CopyReadLineText) finds where a row ends, then the row's fields are read
 * (CopyReadAttributesText / CopyReadAttributesCSV) only up to the key field.
 * The scanner works on the bytes of the current row only, starting at its
 * first byte, and keeps its position and quote state between calls, so a
 * row cut over several CopyData messages is scanned once.
 *
 * Rows held within one message are passed straight from the caller's bytes;
 * only the row that a message boundary cuts is copied (into `pending`), and
 * only up to where it ends.
 */
#include "route/copy_split.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Line terminator of the stream, fixed by its first line (EolType). */
typedef enum { COPY_EOL_UNKNOWN, COPY_EOL_NL, COPY_EOL_CR, COPY_EOL_CRNL } copy_eol_t;

/* What one scan of the current record found. */
typedef enum {
	SCAN_MORE,    /* the record goes on past the bytes given */
	SCAN_LINE,    /* a text/CSV line (row or header) */
	SCAN_END,     /* the "\." marker: bytes before it on its line, if any, are a last line */
	SCAN_TUPLE,   /* a binary tuple */
	SCAN_TRAILER, /* the binary trailer, or the end of a binary stream */
	SCAN_FAIL     /* malformed: s->message says why */
} scan_status_t;

typedef struct {
	size_t consumed;    /* bytes of the stream the record takes */
	size_t content_len; /* text/CSV: the line without its terminator */
	bool terminated;    /* text/CSV: the line had its terminator */
} scan_record_t;

/* The PostgreSQL binary COPY signature (ReceiveCopyBinaryHeader). */
static const uint8_t binary_signature[11] = {'P',  'G',  'C',  'O',  'P', 'Y',
                                             '\n', 0xff, '\r', '\n', '\0'};
#define BINARY_HEADER_LEN 19 /* signature, int32 flags, int32 extension length */

struct copy_split {
	/* options */
	char format;
	uint8_t delimiter;
	uint8_t quote;
	uint8_t escape;
	int line_escape; /* escape for the line scanner; -1 when it equals quote */
	char *null_string;
	size_t null_len;
	int key_position;
	char *key_column;
	bool force_not_null;
	bool force_null;
	size_t max_row;

	/* stream */
	bool header_expected; /* HEADER and the first line not seen yet */
	copy_eol_t eol;
	bool ended; /* "\." or the binary trailer: the data is over */
	bool finished;
	bool failed;
	const char *sqlstate;
	char message[256];
	uint64_t rows;

	/* the current record when a message boundary cuts it */
	uint8_t *pending;
	size_t pending_len;
	size_t pending_cap;

	/* scan state of the current record, relative to its first byte */
	size_t scan_off;
	bool in_quote;
	bool last_was_esc;
	int tuple_fields; /* binary: field count read, -1 before */
	int tuple_field;  /* binary: next field to read */
	size_t key_off;   /* binary: key bytes offset in the tuple */
	int32_t key_len;  /* binary: key length, -1 for NULL */
	size_t need;      /* binary: bytes still missing past the record's end */

	/* binary file header */
	uint8_t header[BINARY_HEADER_LEN];
	size_t header_len;
	uint32_t extension_left;
	bool header_done;

	/* a de-escaped key */
	uint8_t *key;
	size_t key_cap;
};

static bool fail(copy_split_t *s, const char *sqlstate, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Records the first failure; every later call reports it again. */
static bool fail(copy_split_t *s, const char *sqlstate, const char *fmt, ...)
{
	if (!s->failed) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(s->message, sizeof(s->message), fmt, ap);
		va_end(ap);
		s->sqlstate = sqlstate;
		s->failed = true;
	}
	return false;
}

#define BAD_FORMAT "22P04"

static bool report(const copy_split_t *s, char *err, size_t errlen)
{
	if (err && errlen > 0)
		snprintf(err, errlen, "%s", s->message);
	return false;
}

static bool grow(uint8_t **bytes, size_t *cap, size_t need)
{
	if (need <= *cap)
		return true;
	size_t cap_new = *cap ? *cap : 256;
	while (cap_new < need) {
		if (cap_new > SIZE_MAX / 2)
			return false;
		cap_new *= 2;
	}
	uint8_t *p = realloc(*bytes, cap_new);
	if (!p)
		return false;
	*bytes = p;
	*cap = cap_new;
	return true;
}

static bool pending_append(copy_split_t *s, const uint8_t *data, size_t len)
{
	if (!grow(&s->pending, &s->pending_cap, s->pending_len + len))
		return fail(s, "53200", "out of memory");
	memcpy(s->pending + s->pending_len, data, len);
	s->pending_len += len;
	return true;
}

static void reset_scan(copy_split_t *s)
{
	s->scan_off = 0;
	s->in_quote = false;
	s->last_was_esc = false;
	s->tuple_fields = -1;
	s->tuple_field = 0;
	s->key_off = 0;
	s->key_len = -1;
	s->need = 0;
}

/* ---- options ---- */

/* ProcessCopyOptions' checks for the options the splitter reads. */
static bool options_valid(const copy_split_opts_t *o, uint8_t delimiter, uint8_t quote,
                          uint8_t escape, const char *null_string)
{
	bool csv = o->format == 'c';

	if (o->format != 't' && o->format != 'c' && o->format != 'b')
		return false;
	if (o->key_position < 0 || o->key_position >= COPY_SPLIT_MAX_COLUMNS)
		return false;
	if (o->format == 'b')
		return !o->delimiter && !o->null_string && !o->header && !o->quote && !o->escape &&
		       !o->key_force_null && !o->key_force_not_null;
	if (!csv && (o->quote || o->escape || o->key_force_null || o->key_force_not_null))
		return false;
	if (delimiter == '\n' || delimiter == '\r')
		return false;
	if (!csv && strchr("\\.abcdefghijklmnopqrstuvwxyz0123456789", delimiter))
		return false;
	if (strchr(null_string, '\n') || strchr(null_string, '\r'))
		return false;
	if (strchr(null_string, delimiter))
		return false;
	if (csv) {
		if (quote == delimiter || strchr(null_string, quote))
			return false;
		/* PostgreSQL accepts these but its line scanner then misreads rows. */
		if (quote == '\n' || quote == '\r' || escape == '\n' || escape == '\r')
			return false;
	}
	return true;
}

copy_split_t *copy_split_new(const copy_split_opts_t *opts)
{
	bool csv = opts->format == 'c';
	uint8_t delimiter = (uint8_t)(opts->delimiter ? opts->delimiter : csv ? ',' : '\t');
	uint8_t quote = (uint8_t)(opts->quote ? opts->quote : '"');
	uint8_t escape = (uint8_t)(opts->escape ? opts->escape : quote);
	const char *null_string = opts->null_string ? opts->null_string : csv ? "" : "\\N";

	if (!options_valid(opts, delimiter, quote, escape, null_string))
		return NULL;

	copy_split_t *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->format = opts->format;
	s->delimiter = delimiter;
	s->quote = quote;
	s->escape = escape;
	/* CopyReadLineText ignores the escape when it is the quote. */
	s->line_escape = escape == quote ? -1 : escape;
	s->null_string = strdup(null_string);
	s->null_len = strlen(null_string);
	s->key_position = opts->key_position;
	s->key_column = opts->key_column ? strdup(opts->key_column) : NULL;
	s->force_not_null = opts->key_force_not_null;
	s->force_null = opts->key_force_null;
	s->max_row = opts->max_row_bytes && opts->max_row_bytes < COPY_SPLIT_MAX_ROW
	                 ? opts->max_row_bytes
	                 : COPY_SPLIT_MAX_ROW;
	s->header_expected = opts->header;
	s->eol = COPY_EOL_UNKNOWN;
	if (!s->null_string || (opts->key_column && !s->key_column)) {
		copy_split_free(s);
		return NULL;
	}
	reset_scan(s);
	return s;
}

void copy_split_free(copy_split_t *s)
{
	if (!s)
		return;
	free(s->null_string);
	free(s->key_column);
	free(s->pending);
	free(s->key);
	free(s);
}

uint64_t copy_split_rows(const copy_split_t *s)
{
	return s->rows;
}

const char *copy_split_sqlstate(const copy_split_t *s)
{
	return s->failed ? s->sqlstate : NULL;
}

/* ---- text and CSV: where a line ends (CopyReadLineText) ---- */

static uint8_t peek(const uint8_t *buf, size_t len, size_t at)
{
	/* PostgreSQL pads its input buffer with '\0': past the end at EOF. */
	return at < len ? buf[at] : '\0';
}

/* Bytes past buf[i] the scanner must see before deciding about buf[i]. */
static size_t lookahead_for(const copy_split_t *s, const uint8_t *buf, size_t len, size_t i)
{
	uint8_t c = buf[i];

	if (c == '\r')
		return 1; /* \r\n or a lone \r */
	if (c == '\\' && (s->format != 'c' || i == 0)) {
		if (i + 1 >= len || buf[i + 1] != '.')
			return 1;
		return s->eol == COPY_EOL_CRNL ? 3 : 2; /* "\.", then its terminator */
	}
	return 0;
}

/* The line goes on past len: resume at i. A line already over the limit
 * fails now (its "\r\n" or "\.\r\n" lookahead may sit past the limit). */
static scan_status_t scan_more(copy_split_t *s, size_t i, size_t len)
{
	if (len > s->max_row + 4) {
		fail(s, "54000", "COPY row is longer than %zu bytes", s->max_row);
		return SCAN_FAIL;
	}
	s->scan_off = i;
	return SCAN_MORE;
}

/*
 * Scans the line that starts at buf[0] from s->scan_off. SCAN_MORE when it
 * goes on past len (unless eof: then the bytes up to len are an unterminated
 * last line); every state change for a byte happens only once its lookahead
 * is there, so the scan resumes at the same byte in the same state.
 */
static scan_status_t scan_line(copy_split_t *s, const uint8_t *buf, size_t len, bool eof,
                               scan_record_t *rec)
{
	bool csv = s->format == 'c';
	size_t i = s->scan_off;

	for (;;) {
		if (i >= len) {
			if (!eof)
				return scan_more(s, i, len);
			/* CopyReadAttributesCSV finds the open quote; it never
			 * reads a HEADER line. */
			if (csv && s->in_quote && !s->header_expected) {
				fail(s, BAD_FORMAT, "unterminated CSV quoted field");
				return SCAN_FAIL;
			}
			rec->content_len = len;
			rec->consumed = len;
			rec->terminated = false;
			return SCAN_LINE;
		}
		if (!eof && i + lookahead_for(s, buf, len, i) >= len)
			return scan_more(s, i, len);
		uint8_t c = buf[i];

		if (csv) {
			/* Toggles kept as simple as PostgreSQL's: the field reader
			 * agrees with them on where a quoted field ends. */
			if (s->in_quote && c == s->line_escape)
				s->last_was_esc = !s->last_was_esc;
			if (c == s->quote && !s->last_was_esc)
				s->in_quote = !s->in_quote;
			if (c != s->line_escape)
				s->last_was_esc = false;
		}

		if (c == '\r' && (!csv || !s->in_quote)) {
			rec->content_len = i;
			rec->consumed = i + 1;
			if (s->eol == COPY_EOL_UNKNOWN || s->eol == COPY_EOL_CRNL) {
				if (peek(buf, len, i + 1) == '\n') {
					rec->consumed = i + 2;
					s->eol = COPY_EOL_CRNL;
				} else if (s->eol == COPY_EOL_CRNL) {
					goto stray_cr;
				} else {
					s->eol = COPY_EOL_CR;
				}
			} else if (s->eol == COPY_EOL_NL) {
				goto stray_cr;
			}
			rec->terminated = true;
			return SCAN_LINE;
		}
		if (c == '\n' && (!csv || !s->in_quote)) {
			if (s->eol == COPY_EOL_CR || s->eol == COPY_EOL_CRNL) {
				fail(s, BAD_FORMAT,
				     csv ? "unquoted newline found in data"
				         : "literal newline found in data");
				return SCAN_FAIL;
			}
			s->eol = COPY_EOL_NL;
			rec->content_len = i;
			rec->consumed = i + 1;
			rec->terminated = true;
			return SCAN_LINE;
		}
		/* In CSV, "\." is data unless alone on a line. */
		if (c == '\\' && (!csv || i == 0)) {
			if (peek(buf, len, i + 1) == '.') {
				size_t j = i + 2;
				uint8_t c2;

				if (s->eol == COPY_EOL_CRNL) {
					c2 = peek(buf, len, j++);
					if (c2 == '\n') {
						if (csv)
							goto not_end;
						goto marker_style;
					}
					if (c2 != '\r') {
						if (csv)
							goto not_end;
						goto marker_corrupt;
					}
				}
				c2 = peek(buf, len, j++);
				if (c2 != '\r' && c2 != '\n') {
					if (csv)
						goto not_end;
					goto marker_corrupt;
				}
				if ((s->eol == COPY_EOL_NL && c2 != '\n') ||
				    (s->eol == COPY_EOL_CRNL && c2 != '\n') ||
				    (s->eol == COPY_EOL_CR && c2 != '\r'))
					goto marker_style;
				rec->content_len = i;
				rec->consumed = j < len ? j : len;
				rec->terminated = false;
				return SCAN_END;
			}
			if (!csv)
				i++; /* the escaped byte is data, even a newline */
		}
	not_end:
		i++;
	}

stray_cr:
	fail(s, BAD_FORMAT,
	     csv ? "unquoted carriage return found in data"
	         : "literal carriage return found in data");
	return SCAN_FAIL;
marker_style:
	fail(s, BAD_FORMAT, "end-of-copy marker does not match previous newline style");
	return SCAN_FAIL;
marker_corrupt:
	fail(s, BAD_FORMAT, "end-of-copy marker corrupt");
	return SCAN_FAIL;
}

/* ---- text and CSV: the key field (CopyReadAttributesText/CSV) ---- */

static bool missing_key(copy_split_t *s)
{
	if (s->key_column)
		return fail(s, BAD_FORMAT, "missing data for column \"%s\"", s->key_column);
	return fail(s, BAD_FORMAT, "missing data for column at position %d", s->key_position + 1);
}

static int hex_value(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static bool is_octal(uint8_t c)
{
	return c >= '0' && c <= '7';
}

/*
 * Reads fields of a text line up to the key, de-escaping as
 * CopyReadAttributesText does; the NULL marker is matched against the raw
 * field. The key goes to s->key (never longer than the line).
 */
static bool read_key_text(copy_split_t *s, const uint8_t *line, size_t len, size_t *key_len,
                          bool *key_is_null)
{
	size_t p = 0;

	for (int field = 0;; field++) {
		bool want = field == s->key_position;
		bool found_delim = false;
		size_t start = p, end, out = 0;

		for (;;) {
			end = p;
			if (p >= len)
				break;
			uint8_t c = line[p++];
			if (c == s->delimiter) {
				found_delim = true;
				break;
			}
			if (c == '\\') {
				if (p >= len)
					break; /* a final backslash is dropped */
				c = line[p++];
				switch (c) {
				case '0':
				case '1':
				case '2':
				case '3':
				case '4':
				case '5':
				case '6':
				case '7': {
					int val = c - '0';
					if (p < len && is_octal(line[p])) {
						val = (val << 3) + (line[p++] - '0');
						if (p < len && is_octal(line[p]))
							val = (val << 3) + (line[p++] - '0');
					}
					c = (uint8_t)(val & 0377);
					break;
				}
				case 'x':
					if (p < len && hex_value(line[p]) >= 0) {
						int val = hex_value(line[p++]);
						if (p < len && hex_value(line[p]) >= 0)
							val = (val << 4) + hex_value(line[p++]);
						c = (uint8_t)(val & 0xff);
					}
					break;
				case 'b':
					c = '\b';
					break;
				case 'f':
					c = '\f';
					break;
				case 'n':
					c = '\n';
					break;
				case 'r':
					c = '\r';
					break;
				case 't':
					c = '\t';
					break;
				case 'v':
					c = '\v';
					break;
				default:
					break; /* any other byte stands for itself */
				}
			}
			if (want)
				s->key[out++] = c;
		}
		if (want) {
			*key_is_null = end - start == s->null_len &&
			               memcmp(line + start, s->null_string, s->null_len) == 0;
			*key_len = *key_is_null ? 0 : out;
			return true;
		}
		if (!found_delim)
			return missing_key(s);
	}
}

/*
 * Reads fields of a CSV line up to the key as CopyReadAttributesCSV does: a
 * quote anywhere in a field starts a quoted part, in which the escape
 * character escapes a quote or itself. Only an unquoted field equal to the
 * NULL string is NULL; FORCE_NOT_NULL and FORCE_NULL apply as in
 * NextCopyFrom.
 */
static bool read_key_csv(copy_split_t *s, const uint8_t *line, size_t len, size_t *key_len,
                         bool *key_is_null)
{
	size_t p = 0;

	for (int field = 0;; field++) {
		bool want = field == s->key_position;
		bool found_delim = false;
		bool saw_quote = false;
		size_t start = p, end, out = 0;

		for (;;) {
			/* outside quotes */
			for (;;) {
				end = p;
				if (p >= len)
					goto field_done;
				uint8_t c = line[p++];
				if (c == s->delimiter) {
					found_delim = true;
					goto field_done;
				}
				if (c == s->quote) {
					saw_quote = true;
					break;
				}
				if (want)
					s->key[out++] = c;
			}
			/* inside quotes */
			for (;;) {
				end = p;
				if (p >= len)
					return fail(s, BAD_FORMAT, "unterminated CSV quoted field");
				uint8_t c = line[p++];
				/* checked before the closing quote: escape may be the quote */
				if (c == s->escape && p < len &&
				    (line[p] == s->escape || line[p] == s->quote)) {
					if (want)
						s->key[out++] = line[p];
					p++;
					continue;
				}
				if (c == s->quote)
					break;
				if (want)
					s->key[out++] = c;
			}
		}
	field_done:
		if (want) {
			bool is_null = !saw_quote && end - start == s->null_len &&
			               memcmp(line + start, s->null_string, s->null_len) == 0;
			if (is_null && s->force_not_null) {
				memcpy(s->key, s->null_string, s->null_len);
				out = s->null_len;
				is_null = false;
			} else if (!is_null && s->force_null && out == s->null_len &&
			           memcmp(s->key, s->null_string, out) == 0) {
				is_null = true;
			}
			*key_is_null = is_null;
			*key_len = is_null ? 0 : out;
			return true;
		}
		if (!found_delim)
			return missing_key(s);
	}
}

/*
 * Passes one line: the header to header_fn, else a row to row_fn with its
 * key. The bytes are the stream's: a line without its terminator is the
 * last of the data and is passed without one (see copy_split.h).
 */
static bool take_line(copy_split_t *s, const uint8_t *buf, const scan_record_t *rec,
                      copy_split_row_fn row_fn, copy_split_header_fn header_fn, void *arg)
{
	const uint8_t *row = buf;
	size_t row_len = rec->terminated ? rec->consumed : rec->content_len;

	if (rec->content_len > s->max_row)
		return fail(s, "54000", "COPY row is longer than %zu bytes", s->max_row);
	if (s->header_expected) {
		s->header_expected = false;
		if (header_fn)
			header_fn(arg, row, row_len);
		return true;
	}

	size_t key_len = 0;
	bool key_is_null = false;
	/* a de-escaped or unquoted field is never longer than its line */
	if (!grow(&s->key, &s->key_cap, rec->content_len + s->null_len + 1))
		return fail(s, "53200", "out of memory");
	bool ok = s->format == 'c'
	              ? read_key_csv(s, buf, rec->content_len, &key_len, &key_is_null)
	              : read_key_text(s, buf, rec->content_len, &key_len, &key_is_null);
	if (!ok)
		return false;
	s->rows++;
	if (row_fn)
		row_fn(arg, row, row_len, key_is_null ? NULL : (const char *)s->key, key_len,
		       key_is_null);
	return true;
}

/* ---- binary (CopyReadBinaryTupleData) ---- */

static uint32_t get_u32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/*
 * Takes the file header bytes from data[*pos..len): signature, flags and
 * extension length are checked as ReceiveCopyBinaryHeader does, the
 * extension is skipped. Once it is all read, header_fn receives the header
 * with a zero-length extension.
 */
static bool read_binary_header(copy_split_t *s, const uint8_t *data, size_t len, size_t *pos,
                               copy_split_header_fn header_fn, void *arg)
{
	while (*pos < len && s->header_len < BINARY_HEADER_LEN) {
		uint8_t c = data[(*pos)++];
		size_t at = s->header_len++;
		s->header[at] = c;
		if (at < sizeof(binary_signature) && c != binary_signature[at])
			return fail(s, BAD_FORMAT, "COPY file signature not recognized");
		if (s->header_len == 15) {
			uint32_t flags = get_u32(s->header + 11);
			if (flags & (UINT32_C(1) << 16))
				return fail(s, BAD_FORMAT, "invalid COPY file header (WITH OIDS)");
			if (flags >> 16)
				return fail(s, BAD_FORMAT,
				            "unrecognized critical flags in COPY file header");
		}
		if (s->header_len == BINARY_HEADER_LEN) {
			uint32_t extension = get_u32(s->header + 15);
			if (extension > INT32_MAX)
				return fail(s, BAD_FORMAT,
				            "invalid COPY file header (missing length)");
			s->extension_left = extension;
		}
	}
	if (s->header_len < BINARY_HEADER_LEN)
		return true;
	size_t skip = len - *pos < s->extension_left ? len - *pos : s->extension_left;
	*pos += skip;
	s->extension_left -= (uint32_t)skip;
	if (s->extension_left == 0) {
		s->header_done = true;
		memset(s->header + 15, 0, 4);
		if (header_fn)
			header_fn(arg, s->header, BINARY_HEADER_LEN);
	}
	return true;
}

/* The error for a binary header cut short by the end of data. */
static bool binary_header_cut(copy_split_t *s)
{
	if (s->header_len < sizeof(binary_signature))
		return fail(s, BAD_FORMAT, "COPY file signature not recognized");
	if (s->header_len < 15)
		return fail(s, BAD_FORMAT, "invalid COPY file header (missing flags)");
	if (s->header_len < BINARY_HEADER_LEN)
		return fail(s, BAD_FORMAT, "invalid COPY file header (missing length)");
	return fail(s, BAD_FORMAT, "invalid COPY file header (wrong length)");
}

/*
 * Scans the tuple that starts at buf[0] (int16 field count, then per field
 * an int32 length, -1 for NULL, and the bytes), resuming at the field it
 * stopped at. SCAN_MORE sets s->need to the bytes missing.
 */
static scan_status_t scan_tuple(copy_split_t *s, const uint8_t *buf, size_t len, bool eof)
{
	if (s->tuple_fields < 0) {
		if (len < 2) {
			/* CopyGetInt16 failing is a silent end of data */
			if (eof)
				return SCAN_TRAILER;
			s->need = 2 - len;
			return SCAN_MORE;
		}
		int16_t count = (int16_t)(((uint16_t)buf[0] << 8) | buf[1]);
		if (count == -1)
			return SCAN_TRAILER;
		if (count <= s->key_position) {
			fail(s, BAD_FORMAT, "row field count is %d, expected at least %d", count,
			     s->key_position + 1);
			return SCAN_FAIL;
		}
		s->tuple_fields = count;
		s->tuple_field = 0;
		s->scan_off = 2;
	}
	while (s->tuple_field < s->tuple_fields) {
		size_t off = s->scan_off;
		if (len - off < 4) {
			if (eof)
				goto cut;
			s->need = 4 - (len - off);
			return SCAN_MORE;
		}
		int32_t field_len = (int32_t)get_u32(buf + off);
		if (field_len < -1) {
			fail(s, BAD_FORMAT, "invalid field size");
			return SCAN_FAIL;
		}
		size_t end = off + 4 + (field_len > 0 ? (size_t)field_len : 0);
		if (end > s->max_row) {
			fail(s, "54000", "COPY row is longer than %zu bytes", s->max_row);
			return SCAN_FAIL;
		}
		if (len < end) {
			if (eof)
				goto cut;
			s->need = end - len;
			return SCAN_MORE;
		}
		if (s->tuple_field == s->key_position) {
			s->key_off = off + 4;
			s->key_len = field_len;
		}
		s->scan_off = end;
		s->tuple_field++;
	}
	return SCAN_TUPLE;
cut:
	fail(s, BAD_FORMAT, "unexpected EOF in COPY data");
	return SCAN_FAIL;
}

/* ---- records ---- */

static scan_status_t scan_record(copy_split_t *s, const uint8_t *buf, size_t len, bool eof,
                                 scan_record_t *rec)
{
	if (s->format != 'b')
		return scan_line(s, buf, len, eof, rec);
	scan_status_t status = scan_tuple(s, buf, len, eof);
	rec->consumed = status == SCAN_TUPLE ? s->scan_off : status == SCAN_TRAILER ? 2 : 0;
	return status;
}

/* Acts on a record scan_record() completed at buf. */
static bool take_record(copy_split_t *s, scan_status_t status, const uint8_t *buf,
                        const scan_record_t *rec, copy_split_row_fn row_fn,
                        copy_split_header_fn header_fn, void *arg)
{
	switch (status) {
	case SCAN_LINE:
		return take_line(s, buf, rec, row_fn, header_fn, arg);
	case SCAN_END:
		s->ended = true;
		/* the bytes before "\." on its line are a last line */
		return rec->content_len == 0 || take_line(s, buf, rec, row_fn, header_fn, arg);
	case SCAN_TUPLE: {
		bool key_is_null = s->key_len < 0;
		s->rows++;
		if (row_fn)
			row_fn(arg, buf, rec->consumed,
			       key_is_null ? NULL : (const char *)buf + s->key_off,
			       key_is_null ? 0 : (size_t)s->key_len, key_is_null);
		return true;
	}
	case SCAN_TRAILER:
		s->ended = true;
		return true;
	case SCAN_MORE:
	case SCAN_FAIL:
		break;
	}
	return fail(s, "XX000", "copy_split: unexpected scan status");
}

/*
 * How much of data to add to a pending record before scanning it again: up
 * to the next newline (text, CSV), where the record most likely ends, or
 * the bytes the tuple misses (binary). Never enough to pass the row limit
 * by more than the scanner's lookahead, so the scan then fails.
 */
static size_t next_piece(const copy_split_t *s, const uint8_t *data, size_t len)
{
	size_t piece = len;

	if (s->format == 'b') {
		if (s->need < piece)
			piece = s->need;
	} else {
		const uint8_t *nl = memchr(data, '\n', len);
		if (nl)
			piece = (size_t)(nl - data) + 1;
		size_t room = s->max_row + 8 - s->pending_len;
		if (piece > room)
			piece = room;
	}
	return piece ? piece : 1;
}

bool copy_split_feed(copy_split_t *s, const uint8_t *data, size_t len, copy_split_row_fn row_fn,
                     copy_split_header_fn header_fn, void *arg, char *err, size_t errlen)
{
	size_t pos = 0;
	scan_record_t rec;
	scan_status_t status;

	if (s->failed)
		return report(s, err, errlen);
	if (s->finished) {
		fail(s, BAD_FORMAT, "COPY data after the end of the data");
		return report(s, err, errlen);
	}
	if (s->format == 'b' && !s->header_done) {
		if (!read_binary_header(s, data, len, &pos, header_fn, arg))
			return report(s, err, errlen);
		if (!s->header_done)
			return true;
	}

	/* A record cut by the previous message: complete it piece by piece. */
	while (s->pending_len > 0 && pos < len && !s->ended) {
		size_t before = s->pending_len;
		size_t piece = next_piece(s, data + pos, len - pos);

		if (!pending_append(s, data + pos, piece))
			return report(s, err, errlen);
		pos += piece;
		status = scan_record(s, s->pending, s->pending_len, false, &rec);
		if (status == SCAN_FAIL)
			return report(s, err, errlen);
		if (status == SCAN_MORE)
			continue;
		/* The record ends in this piece (its lookahead made the previous
		 * scan stop); the bytes after it are read again from data. */
		if (rec.consumed < before) {
			fail(s, "XX000", "copy_split: record ended before its resumed scan");
			return report(s, err, errlen);
		}
		pos -= s->pending_len - rec.consumed;
		if (!take_record(s, status, s->pending, &rec, row_fn, header_fn, arg))
			return report(s, err, errlen);
		s->pending_len = 0;
		reset_scan(s);
	}

	/* Whole records straight from data; the cut one is kept. */
	while (pos < len && !s->ended) {
		status = scan_record(s, data + pos, len - pos, false, &rec);
		if (status == SCAN_FAIL)
			return report(s, err, errlen);
		if (status == SCAN_MORE) {
			if (!pending_append(s, data + pos, len - pos))
				return report(s, err, errlen);
			pos = len;
			break;
		}
		if (!take_record(s, status, data + pos, &rec, row_fn, header_fn, arg))
			return report(s, err, errlen);
		pos += rec.consumed;
		reset_scan(s);
	}

	if (s->ended) {
		/* PostgreSQL ignores text after "\." up to CopyDone, but wants
		 * nothing after the binary trailer (CopyReadBinaryTupleData). */
		if (s->format == 'b' && pos < len) {
			fail(s, BAD_FORMAT, "received copy data after EOF marker");
			return report(s, err, errlen);
		}
		s->pending_len = 0;
	}
	return true;
}

bool copy_split_finish(copy_split_t *s, copy_split_row_fn row_fn, copy_split_header_fn header_fn,
                       void *arg, char *err, size_t errlen)
{
	scan_record_t rec;

	if (s->failed)
		return report(s, err, errlen);
	if (s->finished)
		return true;
	s->finished = true;
	if (s->format == 'b' && !s->header_done) {
		binary_header_cut(s);
		return report(s, err, errlen);
	}
	while (s->pending_len > 0 && !s->ended) {
		scan_status_t status = scan_record(s, s->pending, s->pending_len, true, &rec);
		if (status == SCAN_FAIL)
			return report(s, err, errlen);
		if (!take_record(s, status, s->pending, &rec, row_fn, header_fn, arg))
			return report(s, err, errlen);
		/* lookahead resolved at the end of data can leave bytes */
		if (rec.consumed > s->pending_len)
			rec.consumed = s->pending_len;
		memmove(s->pending, s->pending + rec.consumed, s->pending_len - rec.consumed);
		s->pending_len -= rec.consumed;
		reset_scan(s);
	}
	s->pending_len = 0;
	return true;
}
