/*
 * merge.c - the shards' rows combined as merge.h describes.
 *
 * Every value the merge compares is first parsed into a merge_key_t (an
 * integer, a double, a decimal seen through the digits of its text, or a
 * byte string), once per row and column, when the row arrives: a value the
 * merger cannot read fails merger_push_row() then, and the comparisons
 * later never fail. Dates and times become integers on PostgreSQL's own
 * scale (days or microseconds since 2000-01-01) in either format.
 *
 * Aggregates are exact where PostgreSQL's are: counts and bigint sums in
 * 64-bit integers (overflow is PostgreSQL's "bigint out of range"), numeric
 * sums in decimal digits, avg() of integers and numerics divided as
 * numeric_div() does (select_div_scale() in numeric.c picks the scale).
 * Floating-point results are printed as float8out()/float4out() print them
 * with the default extra_float_digits (shortest exact text).
 *
 * The row the ordering stage sees is the shard row (CONCAT, ORDERED) or a
 * result row the merger builds per group (AGGREGATE); both are DataRow
 * bodies, so DISTINCT, ORDER BY, OFFSET/LIMIT and dropping the hidden
 * columns are the same code for all modes.
 */
#include "merge/merge.h"

#include "core/buf.h"
#include "core/hashmap.h"
#include "proto/proto.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Type OIDs, from PostgreSQL's pg_type.dat. */
enum {
	OID_BOOL = 16,
	OID_CHAR = 18,
	OID_NAME = 19,
	OID_INT8 = 20,
	OID_INT2 = 21,
	OID_INT4 = 23,
	OID_TEXT = 25,
	OID_OID = 26,
	OID_FLOAT4 = 700,
	OID_FLOAT8 = 701,
	OID_UNKNOWN = 705,
	OID_BPCHAR = 1042,
	OID_VARCHAR = 1043,
	OID_DATE = 1082,
	OID_TIME = 1083,
	OID_TIMESTAMP = 1114,
	OID_TIMESTAMPTZ = 1184,
	OID_NUMERIC = 1700,
	OID_UUID = 2950,
};

#define FORMAT_TEXT   0
#define FORMAT_BINARY 1

#define NUMERIC_MIN_SIG_DIGITS    16   /* numeric.c */
#define NUMERIC_MAX_DISPLAY_SCALE 1000 /* numeric.h */
#define DEC_DIGITS                4    /* decimal digits per NBASE (10000) digit */
#define USECS_PER_DAY             INT64_C(86400000000)
#define UNIX_TO_POSTGRES_DAYS     10957 /* 1970-01-01 to 2000-01-01 */
#define MERGE_ERR_LEN             256

/* ---- values and their types ---- */

typedef enum {
	VT_OTHER, /* passed through, never compared */
	VT_INT2,
	VT_INT4,
	VT_INT8,
	VT_OID,
	VT_NUMERIC,
	VT_FLOAT4,
	VT_FLOAT8,
	VT_TEXT,   /* text, varchar, name, "char", unknown: bytes, C collation */
	VT_BPCHAR, /* trailing blanks are insignificant (bpcharcmp) */
	VT_BOOL,
	VT_UUID,
	VT_DATE,
	VT_TIME,
	VT_TIMESTAMP,
	VT_TIMESTAMPTZ,
} value_type_t;

typedef struct {
	uint32_t oid;
	int16_t format;
	value_type_t vt;
} col_type_t;

static value_type_t value_type_of(uint32_t oid)
{
	switch (oid) {
	case OID_INT2:
		return VT_INT2;
	case OID_INT4:
		return VT_INT4;
	case OID_INT8:
		return VT_INT8;
	case OID_OID:
		return VT_OID;
	case OID_NUMERIC:
		return VT_NUMERIC;
	case OID_FLOAT4:
		return VT_FLOAT4;
	case OID_FLOAT8:
		return VT_FLOAT8;
	case OID_TEXT:
	case OID_VARCHAR:
	case OID_NAME:
	case OID_CHAR:
	case OID_UNKNOWN:
		return VT_TEXT;
	case OID_BPCHAR:
		return VT_BPCHAR;
	case OID_BOOL:
		return VT_BOOL;
	case OID_UUID:
		return VT_UUID;
	case OID_DATE:
		return VT_DATE;
	case OID_TIME:
		return VT_TIME;
	case OID_TIMESTAMP:
		return VT_TIMESTAMP;
	case OID_TIMESTAMPTZ:
		return VT_TIMESTAMPTZ;
	default:
		return VT_OTHER;
	}
}

static bool type_comparable(const col_type_t *t)
{
	return t->vt != VT_OTHER && !(t->vt == VT_NUMERIC && t->format == FORMAT_BINARY);
}

static bool type_numeric_family(const col_type_t *t)
{
	return t->vt == VT_INT2 || t->vt == VT_INT4 || t->vt == VT_INT8 || t->vt == VT_OID ||
	       t->vt == VT_NUMERIC || t->vt == VT_FLOAT4 || t->vt == VT_FLOAT8;
}

/* ---- keys: values parsed for comparison ---- */

typedef enum {
	KEY_NULL,
	KEY_INT,   /* integers, oids, bools, dates, times, timestamps */
	KEY_FLOAT, /* float4 (widened), float8 */
	KEY_DEC,   /* numeric text */
	KEY_BYTES, /* text types, uuid */
} key_kind_t;

/* Numeric classes in PostgreSQL's order: -Infinity < finite < Infinity < NaN. */
enum { DEC_NINF = -1, DEC_FINITE = 0, DEC_PINF = 1, DEC_NAN = 2 };

typedef struct {
	key_kind_t kind;
	int8_t dec_class;
	bool neg; /* DEC: finite and below zero */
	int64_t i;
	double d;
	const uint8_t *p; /* BYTES; DEC: integer digits without leading zeros */
	uint32_t len;
	const uint8_t *frac; /* DEC: fraction digits as written */
	uint32_t frac_len;   /* DEC: without trailing zeros */
	uint32_t scale;      /* DEC: fraction digits as written (display scale) */
} merge_key_t;

static uint16_t get_u16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static uint64_t get_u64(const uint8_t *p)
{
	return ((uint64_t)buf_get_u32(p) << 32) | buf_get_u32(p + 4);
}

static bool text_equal_nocase(const uint8_t *p, size_t len, const char *word)
{
	return strlen(word) == len && strncasecmp((const char *)p, word, len) == 0;
}

/* A decimal text ("-12.50", "NaN", "Infinity", "-Infinity") seen in place. */
static bool parse_dec(const uint8_t *p, size_t len, merge_key_t *k)
{
	*k = (merge_key_t){.kind = KEY_DEC, .p = p, .frac = p};
	if (text_equal_nocase(p, len, "NaN")) {
		k->dec_class = DEC_NAN;
		return true;
	}
	if (text_equal_nocase(p, len, "Infinity") || text_equal_nocase(p, len, "inf") ||
	    text_equal_nocase(p, len, "+Infinity")) {
		k->dec_class = DEC_PINF;
		return true;
	}
	if (text_equal_nocase(p, len, "-Infinity") || text_equal_nocase(p, len, "-inf")) {
		k->dec_class = DEC_NINF;
		return true;
	}
	size_t i = 0;
	bool neg = false;
	if (i < len && (p[i] == '-' || p[i] == '+'))
		neg = p[i++] == '-';
	size_t int_start = i;
	while (i < len && isdigit(p[i]))
		i++;
	size_t int_end = i, frac_start = i, frac_end = i;
	if (i < len && p[i] == '.') {
		frac_start = ++i;
		while (i < len && isdigit(p[i]))
			i++;
		frac_end = i;
	}
	if (i != len || (int_end == int_start && frac_end == frac_start))
		return false;
	while (int_start < int_end && p[int_start] == '0')
		int_start++;
	size_t frac_trim = frac_end;
	while (frac_trim > frac_start && p[frac_trim - 1] == '0')
		frac_trim--;
	k->p = p + int_start;
	k->len = (uint32_t)(int_end - int_start);
	k->frac = p + frac_start;
	k->frac_len = (uint32_t)(frac_trim - frac_start);
	k->scale = (uint32_t)(frac_end - frac_start);
	k->neg = neg && (k->len > 0 || k->frac_len > 0);
	return true;
}

static int sign_of(int v)
{
	return (v > 0) - (v < 0);
}

static int dec_cmp(const merge_key_t *a, const merge_key_t *b)
{
	if (a->dec_class != b->dec_class)
		return a->dec_class < b->dec_class ? -1 : 1;
	if (a->dec_class != DEC_FINITE)
		return 0;
	if (a->neg != b->neg)
		return a->neg ? -1 : 1;
	int mag;
	if (a->len != b->len) {
		mag = a->len < b->len ? -1 : 1;
	} else {
		mag = sign_of(memcmp(a->p, b->p, a->len));
		if (mag == 0) {
			uint32_t n = a->frac_len < b->frac_len ? a->frac_len : b->frac_len;
			mag = sign_of(memcmp(a->frac, b->frac, n));
			if (mag == 0 && a->frac_len != b->frac_len)
				mag = a->frac_len < b->frac_len ? -1 : 1;
		}
	}
	return a->neg ? -mag : mag;
}

/* float8_cmp_internal(): NaN equals NaN and sorts above everything. */
static int float_cmp(double a, double b)
{
	if (isnan(a))
		return isnan(b) ? 0 : 1;
	if (isnan(b))
		return -1;
	return a < b ? -1 : (a > b ? 1 : 0);
}

static int bytes_cmp(const merge_key_t *a, const merge_key_t *b)
{
	uint32_t n = a->len < b->len ? a->len : b->len;
	int c = sign_of(memcmp(a->p, b->p, n));
	if (c == 0 && a->len != b->len)
		c = a->len < b->len ? -1 : 1;
	return c;
}

static double dec_to_double(const merge_key_t *k)
{
	switch (k->dec_class) {
	case DEC_NAN:
		return NAN;
	case DEC_PINF:
		return INFINITY;
	case DEC_NINF:
		return -INFINITY;
	default:
		break;
	}
	if (k->len > 330)
		return k->neg ? -HUGE_VAL : HUGE_VAL;
	char text[400];
	uint32_t frac = k->frac_len < 40 ? k->frac_len : 40;
	snprintf(text, sizeof(text), "%s%.*s%s.%.*s", k->neg ? "-" : "", (int)k->len,
	         (const char *)k->p, k->len ? "" : "0", (int)frac, (const char *)k->frac);
	return strtod(text, NULL);
}

/* Compares two non-NULL keys; different kinds meet only in HAVING. */
static int key_cmp(const merge_key_t *a, const merge_key_t *b)
{
	if (a->kind == b->kind) {
		switch (a->kind) {
		case KEY_INT:
			return a->i < b->i ? -1 : (a->i > b->i ? 1 : 0);
		case KEY_FLOAT:
			return float_cmp(a->d, b->d);
		case KEY_DEC:
			return dec_cmp(a, b);
		case KEY_BYTES:
			return bytes_cmp(a, b);
		case KEY_NULL:
			return 0;
		}
	}
	if (a->kind == KEY_FLOAT || b->kind == KEY_FLOAT) {
		const merge_key_t *other = a->kind == KEY_FLOAT ? b : a;
		double v = other->kind == KEY_INT ? (double)other->i : dec_to_double(other);
		return a->kind == KEY_FLOAT ? float_cmp(a->d, v) : float_cmp(v, b->d);
	}
	if ((a->kind == KEY_INT && b->kind == KEY_DEC) ||
	    (a->kind == KEY_DEC && b->kind == KEY_INT)) {
		const merge_key_t *int_key = a->kind == KEY_INT ? a : b;
		char text[32];
		int n = snprintf(text, sizeof(text), "%" PRId64, int_key->i);
		merge_key_t as_dec;
		parse_dec((const uint8_t *)text, (size_t)n, &as_dec);
		return a->kind == KEY_INT ? dec_cmp(&as_dec, b) : dec_cmp(a, &as_dec);
	}
	return 0;
}

static bool parse_int_text(const uint8_t *p, size_t len, int64_t *out)
{
	if (len == 0 || len > 20)
		return false;
	size_t i = 0;
	bool neg = false;
	if (p[0] == '-' || p[0] == '+') {
		neg = p[0] == '-';
		if (++i == len)
			return false;
	}
	uint64_t v = 0;
	for (; i < len; i++) {
		if (!isdigit(p[i]))
			return false;
		unsigned d = (unsigned)(p[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	if (neg) {
		if (v > (uint64_t)INT64_MAX + 1)
			return false;
		*out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
	} else {
		if (v > (uint64_t)INT64_MAX)
			return false;
		*out = (int64_t)v;
	}
	return true;
}

static bool parse_float_text(const uint8_t *p, size_t len, double *out)
{
	char text[128];
	if (len == 0 || len >= sizeof(text))
		return false;
	memcpy(text, p, len);
	text[len] = '\0';
	if (strcmp(text, "NaN") == 0) {
		*out = NAN;
		return true;
	}
	if (strcmp(text, "Infinity") == 0) {
		*out = INFINITY;
		return true;
	}
	if (strcmp(text, "-Infinity") == 0) {
		*out = -INFINITY;
		return true;
	}
	char *end = NULL;
	double v = strtod(text, &end);
	if (end != text + len)
		return false;
	*out = v;
	return true;
}

/* ---- dates and times in the ISO DateStyle ---- */

typedef struct {
	const uint8_t *p;
	size_t len;
	size_t pos;
} cursor_t;

static bool cursor_digits(cursor_t *c, size_t min, size_t max, int64_t *out)
{
	size_t start = c->pos;
	int64_t v = 0;
	while (c->pos < c->len && c->pos - start < max && isdigit(c->p[c->pos]))
		v = v * 10 + (c->p[c->pos++] - '0');
	if (c->pos - start < min)
		return false;
	*out = v;
	return true;
}

static bool cursor_char(cursor_t *c, char ch)
{
	if (c->pos < c->len && c->p[c->pos] == (uint8_t)ch) {
		c->pos++;
		return true;
	}
	return false;
}

/* Days from 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/* HH:MM:SS[.ffffff] to microseconds. */
static bool cursor_time(cursor_t *c, int64_t *usecs)
{
	int64_t h, mi, s, frac = 0;
	if (!cursor_digits(c, 2, 2, &h) || !cursor_char(c, ':') || !cursor_digits(c, 2, 2, &mi) ||
	    !cursor_char(c, ':') || !cursor_digits(c, 2, 2, &s))
		return false;
	if (cursor_char(c, '.')) {
		size_t start = c->pos;
		if (!cursor_digits(c, 1, 6, &frac))
			return false;
		for (size_t n = c->pos - start; n < 6; n++)
			frac *= 10;
	}
	if (h > 24 || mi > 59 || s > 60)
		return false;
	*usecs = ((h * 60 + mi) * 60 + s) * INT64_C(1000000) + frac;
	return true;
}

/*
 * A date, time, timestamp or timestamptz in PostgreSQL's ISO output, as
 * days (date) or microseconds (the others) since 2000-01-01 00:00 UTC, the
 * scale of the binary format. "infinity" maps to the integer extremes, as
 * DT_NOEND/DT_NOBEGIN do. A timestamptz must carry its offset.
 */
static bool parse_datetime_text(value_type_t vt, const uint8_t *p, size_t len, int64_t *out)
{
	if (vt != VT_TIME) {
		if (text_equal_nocase(p, len, "infinity")) {
			*out = INT64_MAX;
			return true;
		}
		if (text_equal_nocase(p, len, "-infinity")) {
			*out = INT64_MIN;
			return true;
		}
	}
	cursor_t c = {p, len, 0};
	int64_t usecs = 0;
	if (vt == VT_TIME) {
		if (!cursor_time(&c, &usecs) || c.pos != len)
			return false;
		*out = usecs;
		return true;
	}
	int64_t y, mo, d;
	if (!cursor_digits(&c, 4, 7, &y) || !cursor_char(&c, '-') ||
	    !cursor_digits(&c, 2, 2, &mo) || !cursor_char(&c, '-') ||
	    !cursor_digits(&c, 2, 2, &d) || mo < 1 || mo > 12 || d < 1 || d > 31)
		return false;
	int64_t offset_secs = 0;
	if (vt != VT_DATE) {
		if (!cursor_char(&c, ' ') || !cursor_time(&c, &usecs))
			return false;
		if (vt == VT_TIMESTAMPTZ) {
			bool west = c.pos < len && c.p[c.pos] == '-';
			int64_t oh, om = 0, os = 0;
			if (!cursor_char(&c, west ? '-' : '+') || !cursor_digits(&c, 2, 2, &oh))
				return false;
			if (cursor_char(&c, ':') && !cursor_digits(&c, 2, 2, &om))
				return false;
			if (cursor_char(&c, ':') && !cursor_digits(&c, 2, 2, &os))
				return false;
			offset_secs = (oh * 60 + om) * 60 + os;
			if (west)
				offset_secs = -offset_secs;
		}
	}
	bool bc = false;
	if (c.pos < len) {
		if (len - c.pos != 3 || memcmp(c.p + c.pos, " BC", 3) != 0)
			return false;
		bc = true;
	}
	int64_t days = days_from_civil(bc ? 1 - y : y, mo, d) - UNIX_TO_POSTGRES_DAYS;
	if (vt == VT_DATE)
		*out = days;
	else
		*out = days * USECS_PER_DAY + usecs - offset_secs * INT64_C(1000000);
	return true;
}

static bool parse_binary_key(const col_type_t *t, const uint8_t *p, int32_t len, merge_key_t *k)
{
	size_t n = (size_t)len;
	k->kind = KEY_INT;
	switch (t->vt) {
	case VT_INT2:
		if (n != 2)
			return false;
		k->i = (int16_t)get_u16(p);
		return true;
	case VT_INT4:
		if (n != 4)
			return false;
		k->i = (int32_t)buf_get_u32(p);
		return true;
	case VT_OID:
		if (n != 4)
			return false;
		k->i = buf_get_u32(p);
		return true;
	case VT_INT8:
	case VT_TIME:
	case VT_TIMESTAMP:
	case VT_TIMESTAMPTZ:
		if (n != 8)
			return false;
		k->i = (int64_t)get_u64(p);
		return true;
	case VT_DATE: {
		if (n != 4)
			return false;
		int32_t days = (int32_t)buf_get_u32(p);
		k->i = days == INT32_MAX ? INT64_MAX : (days == INT32_MIN ? INT64_MIN : days);
		return true;
	}
	case VT_BOOL:
		if (n != 1)
			return false;
		k->i = p[0] != 0;
		return true;
	case VT_FLOAT4: {
		if (n != 4)
			return false;
		uint32_t bits = buf_get_u32(p);
		float f;
		memcpy(&f, &bits, sizeof(f));
		k->kind = KEY_FLOAT;
		k->d = f;
		return true;
	}
	case VT_FLOAT8: {
		if (n != 8)
			return false;
		uint64_t bits = get_u64(p);
		memcpy(&k->d, &bits, sizeof(k->d));
		k->kind = KEY_FLOAT;
		return true;
	}
	case VT_UUID:
		if (n != 16)
			return false;
		/* fall through */
	case VT_TEXT:
	case VT_BPCHAR:
		k->kind = KEY_BYTES;
		k->p = p;
		k->len = (uint32_t)n;
		if (t->vt == VT_BPCHAR)
			while (k->len > 0 && p[k->len - 1] == ' ')
				k->len--;
		return true;
	default:
		return false;
	}
}

/* Parses a value (len -1: NULL) of type t; false when it cannot be read. */
static bool parse_key(const col_type_t *t, const uint8_t *p, int32_t len, merge_key_t *k)
{
	*k = (merge_key_t){.kind = KEY_NULL};
	if (len < 0)
		return true;
	if (t->format == FORMAT_BINARY)
		return parse_binary_key(t, p, len, k);
	size_t n = (size_t)len;
	k->kind = KEY_INT;
	switch (t->vt) {
	case VT_INT2:
	case VT_INT4:
	case VT_INT8:
		return parse_int_text(p, n, &k->i);
	case VT_OID:
		return parse_int_text(p, n, &k->i) && k->i >= 0 && k->i <= UINT32_MAX;
	case VT_NUMERIC:
		return parse_dec(p, n, k);
	case VT_FLOAT4:
	case VT_FLOAT8:
		k->kind = KEY_FLOAT;
		return parse_float_text(p, n, &k->d);
	case VT_TEXT:
	case VT_UUID:
	case VT_BPCHAR:
		k->kind = KEY_BYTES;
		k->p = p;
		k->len = (uint32_t)n;
		if (t->vt == VT_BPCHAR)
			while (k->len > 0 && p[k->len - 1] == ' ')
				k->len--;
		return true;
	case VT_BOOL:
		if (n != 1 || (p[0] != 't' && p[0] != 'f'))
			return false;
		k->i = p[0] == 't';
		return true;
	case VT_DATE:
	case VT_TIME:
	case VT_TIMESTAMP:
	case VT_TIMESTAMPTZ:
		return parse_datetime_text(t->vt, p, n, &k->i);
	default:
		return false;
	}
}

/* 16 bytes of a uuid written as PostgreSQL's uuid_in() accepts it. */
static bool parse_uuid_text(const char *s, uint8_t out[16])
{
	size_t len = strlen(s);
	bool braces = len > 1 && s[0] == '{' && s[len - 1] == '}';
	if (braces) {
		s++;
		len -= 2;
	}
	int n = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '-' && i > 0 && i + 1 < len && i % 4 == 0 && n % 4 == 0)
			continue;
		if (!isxdigit((unsigned char)s[i]) || i + 1 >= len ||
		    !isxdigit((unsigned char)s[i + 1]) || n == 16)
			return false;
		char hex[3] = {s[i], s[i + 1], 0};
		out[n++] = (uint8_t)strtoul(hex, NULL, 16);
		i++;
	}
	return n == 16;
}

/*
 * A HAVING constant read as the type it is compared with: numbers as
 * decimals (so `count(*) > 2.5` compares exactly), booleans in any
 * spelling boolin() accepts, uuids normalised. store (40 bytes) keeps any
 * bytes the key points at.
 */
static bool parse_constant(const col_type_t *t, const char *text, uint8_t *store, merge_key_t *k)
{
	const uint8_t *p = (const uint8_t *)text;
	size_t n = strlen(text);
	*k = (merge_key_t){.kind = KEY_NULL};
	switch (t->vt) {
	case VT_INT2:
	case VT_INT4:
	case VT_INT8:
	case VT_OID:
	case VT_NUMERIC:
		return parse_dec(p, n, k);
	case VT_FLOAT4:
	case VT_FLOAT8:
		k->kind = KEY_FLOAT;
		return parse_float_text(p, n, &k->d);
	case VT_BOOL: {
		static const char *const yes[] = {"t", "true", "y", "yes", "on", "1"};
		static const char *const no[] = {"f", "false", "n", "no", "off", "0"};
		k->kind = KEY_INT;
		for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
			if (strcasecmp(text, yes[i]) == 0) {
				k->i = 1;
				return true;
			}
			if (strcasecmp(text, no[i]) == 0) {
				k->i = 0;
				return true;
			}
		}
		return false;
	}
	case VT_UUID: {
		uint8_t raw[16];
		if (!parse_uuid_text(text, raw))
			return false;
		k->kind = KEY_BYTES;
		k->p = store;
		if (t->format == FORMAT_BINARY) {
			memcpy(store, raw, 16);
			k->len = 16;
		} else {
			char *s = (char *)store;
			int pos = 0;
			for (int i = 0; i < 16; i++) {
				if (i == 4 || i == 6 || i == 8 || i == 10)
					s[pos++] = '-';
				pos += snprintf(s + pos, 3, "%02x", raw[i]);
			}
			k->len = 36;
		}
		return true;
	}
	case VT_TEXT:
	case VT_BPCHAR:
		k->kind = KEY_BYTES;
		k->p = p;
		k->len = (uint32_t)n;
		if (t->vt == VT_BPCHAR)
			while (k->len > 0 && p[k->len - 1] == ' ')
				k->len--;
		return true;
	case VT_DATE:
	case VT_TIME:
	case VT_TIMESTAMP:
	case VT_TIMESTAMPTZ:
		k->kind = KEY_INT;
		return parse_datetime_text(t->vt, p, n, &k->i);
	default:
		return false;
	}
}

/*
 * Appends a value's identity for DISTINCT and GROUP BY: NULL flag, length,
 * bytes. Equal values give equal bytes where their texts may differ:
 * numeric scale (1.0 = 1.00), float -0 = 0, timestamptz offsets, bpchar
 * padding. A value that does not parse keeps its bytes.
 */
static bool append_identity(buf_t *b, const col_type_t *t, const uint8_t *p, int32_t len)
{
	uint8_t is_null = len < 0 ? 0 : 1;
	if (!buf_append(b, &is_null, 1))
		return false;
	if (len < 0)
		return true;
	merge_key_t k;
	const uint8_t *bytes = p;
	size_t n = (size_t)len;
	uint8_t fixed[8];
	char canonical_dec[16];
	bool split_dec = false;
	if (t->vt == VT_NUMERIC && t->format == FORMAT_TEXT && parse_dec(p, n, &k)) {
		if (k.dec_class != DEC_FINITE) {
			n = (size_t)snprintf(canonical_dec, sizeof(canonical_dec), "%d",
			                     k.dec_class);
			bytes = (const uint8_t *)canonical_dec;
		} else {
			split_dec = true;
		}
	} else if ((t->vt == VT_FLOAT4 || t->vt == VT_FLOAT8) && parse_key(t, p, len, &k)) {
		double d = k.d;
		if (d == 0)
			d = 0; /* -0 = 0 */
		if (isnan(d))
			d = NAN;
		memcpy(fixed, &d, sizeof(fixed));
		bytes = fixed;
		n = sizeof(fixed);
	} else if (t->vt == VT_TIMESTAMPTZ && parse_key(t, p, len, &k)) {
		memcpy(fixed, &k.i, sizeof(fixed));
		bytes = fixed;
		n = sizeof(fixed);
	} else if (t->vt == VT_BPCHAR) {
		while (n > 0 && p[n - 1] == ' ')
			n--;
	}
	if (split_dec) {
		/* sign, integer digits, '.', significant fraction digits */
		uint8_t header[5];
		uint32_t total = 1 + k.len + 1 + k.frac_len;
		buf_set_u32(header, total);
		header[4] = k.neg ? '-' : '+';
		return buf_append(b, header, 5) && buf_append(b, k.p, k.len) &&
		       buf_append(b, ".", 1) && buf_append(b, k.frac, k.frac_len);
	}
	uint8_t header[4];
	buf_set_u32(header, (uint32_t)n);
	return buf_append(b, header, 4) && buf_append(b, bytes, n);
}

/* ---- exact decimals: numeric sums and averages ---- */

/*
 * A finite decimal is digits[0..ndigits) (most significant first) times
 * 10^-scale, ndigits >= scale, no leading zeros before the point.
 */
typedef struct {
	int8_t cls;
	bool neg;
	int scale;
	int ndigits;
	int cap;
	uint8_t *digits;
} dec_t;

static void dec_free(dec_t *d)
{
	free(d->digits);
	*d = (dec_t){0};
}

/* Digit at power 10^(pos - scale_common) of a key's decimal. */
static int key_digit(const merge_key_t *k, int pos, int scale)
{
	int from_end = pos - (scale - (int)k->scale); /* index from the last fraction digit */
	if (from_end < 0)
		return 0;
	if (from_end < (int)k->scale)
		return k->frac[k->scale - 1 - (uint32_t)from_end] - '0';
	from_end -= (int)k->scale;
	if (from_end < (int)k->len)
		return k->p[k->len - 1 - (uint32_t)from_end] - '0';
	return 0;
}

static int dec_digit(const dec_t *d, int pos, int scale)
{
	int from_end = pos - (scale - d->scale);
	if (from_end < 0 || from_end >= d->ndigits)
		return 0;
	return d->digits[d->ndigits - 1 - from_end];
}

/* PostgreSQL's numeric addition with infinities (numeric_add, PG 14+). */
static int8_t dec_special_sum(int8_t a, int8_t b)
{
	if (a == DEC_NAN || b == DEC_NAN)
		return DEC_NAN;
	if ((a == DEC_PINF && b == DEC_NINF) || (a == DEC_NINF && b == DEC_PINF))
		return DEC_NAN;
	return a != DEC_FINITE ? a : b;
}

/* acc += k (a KEY_DEC). The result's scale is the larger one, as add_var(). */
static bool dec_add(dec_t *acc, const merge_key_t *k)
{
	if (acc->cls != DEC_FINITE || k->dec_class != DEC_FINITE) {
		acc->cls = dec_special_sum(acc->cls, k->dec_class);
		return true;
	}
	int scale = acc->scale > (int)k->scale ? acc->scale : (int)k->scale;
	int a_int = acc->ndigits - acc->scale;
	int width = (a_int > (int)k->len ? a_int : (int)k->len) + 1 + scale;
	int cmp = 0;
	if (acc->neg != k->neg)
		for (int pos = width - 1; pos >= 0 && cmp == 0; pos--)
			cmp = dec_digit(acc, pos, scale) - key_digit(k, pos, scale);
	uint8_t *out = malloc((size_t)width);
	if (!out)
		return false;
	bool neg;
	int carry = 0;
	for (int pos = 0; pos < width; pos++) {
		int a = dec_digit(acc, pos, scale), b = key_digit(k, pos, scale), v;
		if (acc->neg == k->neg)
			v = a + b + carry;
		else if (cmp >= 0)
			v = a - b + carry;
		else
			v = b - a + carry;
		carry = v < 0 ? -1 : v / 10;
		out[width - 1 - pos] = (uint8_t)((v % 10 + 10) % 10);
	}
	neg = acc->neg == k->neg ? acc->neg : (cmp >= 0 ? acc->neg : k->neg);
	int skip = 0;
	while (width - skip > scale && out[skip] == 0)
		skip++;
	int n = width - skip;
	if (n > acc->cap) {
		uint8_t *grown = realloc(acc->digits, (size_t)n * 2);
		if (!grown) {
			free(out);
			return false;
		}
		acc->digits = grown;
		acc->cap = n * 2;
	}
	if (n > 0)
		memcpy(acc->digits, out + skip, (size_t)n);
	free(out);
	acc->ndigits = n;
	acc->scale = scale;
	bool zero = true;
	for (int i = 0; i < n && zero; i++)
		zero = acc->digits[i] == 0;
	acc->neg = neg && !zero;
	return true;
}

static bool dec_add_int64(dec_t *acc, int64_t v)
{
	char text[32];
	int n = snprintf(text, sizeof(text), "%" PRId64, v);
	merge_key_t k;
	parse_dec((const uint8_t *)text, (size_t)n, &k);
	return dec_add(acc, &k);
}

/* Appends numeric_out()'s text of a decimal given as digits and scale. */
static bool append_decimal(buf_t *out, int8_t cls, bool neg, const uint8_t *digits, int ndigits,
                           int scale)
{
	if (cls == DEC_NAN)
		return buf_append(out, "NaN", 3);
	if (cls == DEC_PINF)
		return buf_append(out, "Infinity", 8);
	if (cls == DEC_NINF)
		return buf_append(out, "-Infinity", 9);
	int int_len = ndigits - scale, first = 0;
	while (first < int_len && digits[first] == 0)
		first++;
	bool nonzero = false;
	for (int i = 0; i < ndigits && !nonzero; i++)
		nonzero = digits[i] != 0;
	if (!buf_reserve(out, (size_t)ndigits + 3))
		return false;
	if (neg && nonzero)
		buf_put_u8(out, '-');
	if (first == int_len)
		buf_put_u8(out, '0');
	for (int i = first; i < int_len; i++)
		buf_put_u8(out, (uint8_t)('0' + digits[i]));
	if (scale > 0) {
		buf_put_u8(out, '.');
		for (int i = int_len; i < ndigits; i++)
			buf_put_u8(out, (uint8_t)('0' + digits[i]));
	}
	return true;
}

/* The weight and first digit in base 10000 of a decimal, as numeric.c holds it. */
static void nbase_first_digit(const uint8_t *digits, int ndigits, int scale, int *weight,
                              int *first)
{
	int idx = 0;
	while (idx < ndigits && digits[idx] == 0)
		idx++;
	if (idx == ndigits) {
		*weight = 0;
		*first = 0;
		return;
	}
	int exponent = (ndigits - scale - 1) - idx; /* of the leading nonzero digit */
	int w =
	    exponent >= 0 ? exponent / DEC_DIGITS : -((-exponent + DEC_DIGITS - 1) / DEC_DIGITS);
	int value = 0;
	for (int j = DEC_DIGITS - 1; j >= 0; j--) {
		int pos = (ndigits - scale - 1) - (w * DEC_DIGITS + j);
		value = value * 10 + (pos >= 0 && pos < ndigits ? digits[pos] : 0);
	}
	*weight = w;
	*first = value;
}

/*
 * Appends the text of sum / count as numeric_div() computes it: the scale
 * from select_div_scale(), the quotient rounded half away from zero.
 */
static bool append_dec_div(buf_t *out, const dec_t *sum, int64_t count)
{
	if (sum->cls != DEC_FINITE)
		return append_decimal(out, sum->cls, false, NULL, 0, 0);
	uint8_t count_digits[24];
	char count_text[24];
	int count_len = snprintf(count_text, sizeof(count_text), "%" PRId64, count);
	for (int i = 0; i < count_len; i++)
		count_digits[i] = (uint8_t)(count_text[i] - '0');
	int w1, f1, w2, f2;
	nbase_first_digit(sum->digits, sum->ndigits, sum->scale, &w1, &f1);
	nbase_first_digit(count_digits, count_len, 0, &w2, &f2);
	int qweight = w1 - w2;
	if (f1 <= f2)
		qweight--;
	int rscale = NUMERIC_MIN_SIG_DIGITS - qweight * DEC_DIGITS;
	if (rscale < sum->scale)
		rscale = sum->scale;
	if (rscale < 0)
		rscale = 0;
	if (rscale > NUMERIC_MAX_DISPLAY_SCALE)
		rscale = NUMERIC_MAX_DISPLAY_SCALE;

	/* Long division of sum * 10^(rscale - scale) by count, one digit at a
	 * time; a spare leading digit takes the rounding carry. */
	int extra = rscale - sum->scale;
	int n = 1 + sum->ndigits + extra;
	uint8_t *q = malloc((size_t)n);
	if (!q)
		return false;
	q[0] = 0;
	unsigned __int128 rem = 0;
	for (int i = 0; i < sum->ndigits + extra; i++) {
		int digit = i < sum->ndigits ? sum->digits[i] : 0;
		rem = rem * 10 + (unsigned)digit;
		q[i + 1] = (uint8_t)(rem / (uint64_t)count);
		rem %= (uint64_t)count;
	}
	if (rem * 2 >= (uint64_t)count)
		for (int i = n - 1; i >= 0; i--) {
			if (++q[i] < 10)
				break;
			q[i] = 0;
		}
	bool ok = append_decimal(out, DEC_FINITE, sum->neg, q, n, rscale);
	free(q);
	return ok;
}

/* ---- floating point as float8out()/float4out() print it ---- */

static bool parses_to(const char *text, double v, bool single)
{
	return single ? strtof(text, NULL) == (float)v : strtod(text, NULL) == v;
}

/*
 * sci ("[-]d.ddde+XX") moved away from its value by one unit in the 31st
 * digit after its last: up (dir 1) or down (dir -1) in magnitude.
 */
static void nudge(const char *sci, int dir, char *out, size_t outlen)
{
	enum { EXTRA = 31 };
	char digits[24 + EXTRA];
	int n = 0;
	const char *s = sci;
	bool neg = *s == '-';
	if (neg)
		s++;
	for (; *s && *s != 'e'; s++)
		if (isdigit((unsigned char)*s) && n < 24)
			digits[n++] = *s;
	for (int i = 0; i < EXTRA; i++)
		digits[n++] = '0';
	if (dir > 0) {
		digits[n - 1] = '1';
	} else {
		int i = n - 1;
		while (i >= 0 && digits[i] == '0')
			digits[i--] = '9';
		if (i >= 0)
			digits[i]--;
	}
	snprintf(out, outlen, "%s%c.%.*s%s", neg ? "-" : "", digits[0], n - 1, digits + 1, s);
}

/*
 * Whether sci reads back as v from strictly inside v's rounding interval.
 * A text exactly halfway to a neighbouring value reads back too (ties go
 * to the even value), but PostgreSQL's Ryu output excludes the interval's
 * bounds (1e23::float8 prints 9.999999999999999e+22): a tie is the one
 * case where nudging the text by far less than any other distance to the
 * bound changes the value it reads as.
 */
static bool reads_back(const char *sci, double v, bool single)
{
	if (!parses_to(sci, v, single))
		return false;
	char nudged[96];
	for (int dir = -1; dir <= 1; dir += 2) {
		nudge(sci, dir, nudged, sizeof(nudged));
		if (!parses_to(nudged, v, single))
			return false;
	}
	return true;
}

/*
 * The shortest text that reads back as the same value, laid out as
 * PostgreSQL's Ryu-based output does: fixed notation for decimal exponents
 * -4 up to fixed_limit - 1 (15 for float8, 6 for float4), else d.ddde+XX.
 */
static int format_float(double v, bool single, char *out, size_t outlen)
{
	if (isnan(v))
		return snprintf(out, outlen, "NaN");
	if (isinf(v))
		return snprintf(out, outlen, v > 0 ? "Infinity" : "-Infinity");
	if (v == 0)
		return snprintf(out, outlen, signbit(v) ? "-0" : "0");
	char sci[40];
	int max_digits = single ? 9 : 17;
	for (int digits = 1; digits <= max_digits; digits++) {
		snprintf(sci, sizeof(sci), "%.*e", digits - 1, v);
		if (reads_back(sci, v, single))
			break;
	}
	/* sci is [-]d[.ddd]e[+-]XX */
	const char *s = sci;
	bool neg = *s == '-';
	if (neg)
		s++;
	char mantissa[24];
	int m = 0;
	for (; *s && *s != 'e'; s++)
		if (isdigit((unsigned char)*s) && m < (int)sizeof(mantissa) - 1)
			mantissa[m++] = *s;
	while (m > 1 && mantissa[m - 1] == '0')
		m--;
	mantissa[m] = '\0';
	int exponent = *s == 'e' ? atoi(s + 1) : 0;
	int fixed_limit = single ? 6 : 15;
	const char *sign = neg ? "-" : "";
	if (exponent < -4 || exponent >= fixed_limit)
		return snprintf(out, outlen, "%s%c%s%.*se%c%02d", sign, mantissa[0],
		                m > 1 ? "." : "", m - 1, mantissa + 1, exponent < 0 ? '-' : '+',
		                abs(exponent));
	if (exponent < 0) /* 0.000ddd */
		return snprintf(out, outlen, "%s0.%.*s%s", sign, -exponent - 1, "0000", mantissa);
	if (m <= exponent + 1) /* ddd000 */
		return snprintf(out, outlen, "%s%s%.*s", sign, mantissa, exponent + 1 - m,
		                "000000000000000");
	return snprintf(out, outlen, "%s%.*s.%s", sign, exponent + 1, mantissa,
	                mantissa + exponent + 1);
}

/* ---- rows ---- */

typedef struct merge_row {
	struct merge_row *next;
	uint8_t *body; /* the DataRow body */
	size_t body_len;
	uint32_t *offs;
	int32_t *lens;     /* -1: NULL */
	merge_key_t *keys; /* one per sort key */
	uint8_t *identity; /* DISTINCT key */
	size_t identity_len;
	int source;
} merge_row_t;

typedef struct {
	merge_row_t *head, *tail;
	size_t count;
	bool described;
	bool done;
} source_t;

/* One aggregate's state in one group. */
typedef struct {
	bool seen;   /* a non-NULL value was combined */
	int32_t len; /* GROUP, MIN, MAX: the value; -1 NULL */
	uint8_t *bytes;
	merge_key_t key; /* MIN, MAX: bytes, parsed */
	int64_t isum;    /* COUNT; SUM of bigint */
	int64_t count;   /* AVG */
	double dsum;     /* SUM of float8; AVG of floats */
	float fsum;      /* SUM of float4, in float as float4pl() adds */
	dec_t dec;       /* SUM of numeric; AVG of bigint or numeric */
	bool bval;
} acc_t;

/* A RowDescription field: where it sits in the body and its type. */
typedef struct {
	size_t start;
	size_t name_end; /* after the name's NUL: the fixed 18 bytes follow */
	uint32_t type_oid;
	int16_t format;
} field_t;

#define FIELD_FIXED_LEN 18 /* table oid, attnum, type oid, typlen, typmod, format */

struct merger {
	const merge_plan_t *plan;
	int n_sources;
	source_t *sources;
	int n_done;
	bool failed;
	char error[MERGE_ERR_LEN];

	bool has_limit;
	int64_t limit;
	int64_t offset;
	uint64_t skipped;
	uint64_t emitted;
	bool limit_reached;
	char **params; /* HAVING $n values (text), NULL for SQL NULL */
	int n_params;

	/* From the first RowDescription. */
	bool described;
	uint8_t *desc;
	size_t desc_len;
	field_t *fields;
	int n_fields;
	col_type_t *shard_types;
	buf_t client_desc;

	/* The row the ordering stage sees: shard row or result row. */
	int n_row_cols;
	int n_visible;
	col_type_t *row_types;
	col_type_t *result_types;
	int *sort_cols;
	int *distinct_cols;
	int n_distinct_cols;
	int tie_prefix; /* leading sort keys whose change empties the DISTINCT set */
	bool distinct;
	hashmap_t seen;

	uint32_t *offs; /* scratch: a row being read */
	int32_t *lens;
	buf_t identity;
	buf_t out;    /* the client's DataRow when columns are dropped */
	buf_t result; /* a result row being built */
	buf_t scratch;

	merge_row_t *last; /* the last row taken; its body may be what next_row returned */
	merge_row_t *out_head, *out_tail; /* CONCAT: rows ready for the client */

	/* AGGREGATE */
	bool *check_result; /* GROUP results read by ORDER BY or HAVING: parse at push */
	hashmap_t groups;
	acc_t **group_list;
	size_t n_groups, cap_groups;
	bool finalized;
	merge_row_t **ready;
	size_t n_ready, ready_pos;
	merge_key_t *cond_keys;    /* per condition: its constant, parsed */
	uint8_t (*cond_store)[40]; /* bytes those keys point at */
};

/* Records an error for the caller (and for merger_error); returns false. */
static bool merge_fail(merger_t *m, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static bool merge_fail(merger_t *m, char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char message[MERGE_ERR_LEN];
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);
	if (m && !m->failed) {
		m->failed = true;
		snprintf(m->error, sizeof(m->error), "%s", message);
	}
	if (err && errlen > 0)
		snprintf(err, errlen, "%s", m && m->failed ? m->error : message);
	return false;
}

static void free_rows(merge_row_t *row)
{
	while (row) {
		merge_row_t *next = row->next;
		free(row);
		row = next;
	}
}

static void set_last(merger_t *m, merge_row_t *row)
{
	if (m->last && m->last != row)
		free(m->last);
	m->last = row;
}

/* Splits a DataRow body of want columns into offs/lens. */
static bool split_data_row(merger_t *m, const uint8_t *body, size_t len, int want, char *err,
                           size_t errlen)
{
	if (len < 2)
		return merge_fail(m, err, errlen, "malformed DataRow from a shard");
	int n = (int16_t)get_u16(body);
	if (n != want)
		return merge_fail(m, err, errlen, "a shard sent a row of %d columns, expected %d",
		                  n, want);
	size_t pos = 2;
	for (int c = 0; c < n; c++) {
		if (len - pos < 4)
			return merge_fail(m, err, errlen, "malformed DataRow from a shard");
		int32_t value_len = (int32_t)buf_get_u32(body + pos);
		pos += 4;
		if (value_len < -1 || (value_len >= 0 && (size_t)value_len > len - pos))
			return merge_fail(m, err, errlen, "malformed DataRow from a shard");
		m->offs[c] = (uint32_t)pos;
		m->lens[c] = value_len;
		if (value_len > 0)
			pos += (size_t)value_len;
	}
	if (pos != len)
		return merge_fail(m, err, errlen, "malformed DataRow from a shard");
	return true;
}

static const char *vt_name(value_type_t vt)
{
	switch (vt) {
	case VT_DATE:
		return "date";
	case VT_TIME:
		return "time";
	case VT_TIMESTAMP:
		return "timestamp";
	case VT_TIMESTAMPTZ:
		return "timestamptz";
	default:
		return "value";
	}
}

static bool unreadable(merger_t *m, const col_type_t *t, char *err, size_t errlen)
{
	if (t->vt >= VT_DATE && t->format == FORMAT_TEXT)
		return merge_fail(m, err, errlen,
		                  "cannot compare %s values from the shards: only "
		                  "the ISO DateStyle is supported",
		                  vt_name(t->vt));
	return merge_fail(m, err, errlen, "cannot read a value of type %u from a shard", t->oid);
}

/*
 * A row of the ordering stage from a DataRow body (n_row_cols columns):
 * copied, its sort keys parsed, its DISTINCT identity computed.
 */
static merge_row_t *make_row(merger_t *m, int source, const uint8_t *body, size_t len, char *err,
                             size_t errlen)
{
	int n = m->n_row_cols;
	const merge_plan_t *p = m->plan;
	if (!split_data_row(m, body, len, n, err, errlen))
		return NULL;
	m->identity.len = m->identity.off = 0;
	if (m->distinct)
		for (int i = 0; i < m->n_distinct_cols; i++) {
			int c = m->distinct_cols[i];
			if (!append_identity(&m->identity, &m->row_types[c], body + m->offs[c],
			                     m->lens[c])) {
				merge_fail(m, err, errlen, "out of memory merging rows");
				return NULL;
			}
		}
	size_t keys_size = sizeof(merge_key_t) * (size_t)p->n_sort;
	size_t cols_size = (sizeof(uint32_t) + sizeof(int32_t)) * (size_t)n;
	merge_row_t *row =
	    malloc(sizeof(*row) + keys_size + cols_size + len + buf_avail(&m->identity));
	if (!row) {
		merge_fail(m, err, errlen, "out of memory merging rows");
		return NULL;
	}
	uint8_t *mem = (uint8_t *)(row + 1);
	row->next = NULL;
	row->source = source;
	row->keys = (merge_key_t *)mem;
	row->offs = (uint32_t *)(mem + keys_size);
	row->lens = (int32_t *)(mem + keys_size + sizeof(uint32_t) * (size_t)n);
	row->body = mem + keys_size + cols_size;
	row->body_len = len;
	row->identity = row->body + len;
	row->identity_len = buf_avail(&m->identity);
	memcpy(row->offs, m->offs, sizeof(uint32_t) * (size_t)n);
	memcpy(row->lens, m->lens, sizeof(int32_t) * (size_t)n);
	memcpy(row->body, body, len);
	if (row->identity_len)
		memcpy(row->identity, buf_head(&m->identity), row->identity_len);
	for (int k = 0; k < p->n_sort; k++) {
		int c = m->sort_cols[k];
		if (!parse_key(&m->row_types[c], row->body + row->offs[c], row->lens[c],
		               &row->keys[k])) {
			free(row);
			unreadable(m, &m->row_types[c], err, errlen);
			return NULL;
		}
	}
	return row;
}

/* ORDER BY over the first n sort keys; NULLs placed as asked. */
static int compare_rows(const merger_t *m, const merge_row_t *a, const merge_row_t *b, int n)
{
	for (int k = 0; k < n; k++) {
		const merge_sort_key_t *s = &m->plan->sort[k];
		const merge_key_t *x = &a->keys[k], *y = &b->keys[k];
		bool x_null = x->kind == KEY_NULL, y_null = y->kind == KEY_NULL;
		if (x_null || y_null) {
			if (x_null && y_null)
				continue;
			return x_null == s->nulls_first ? -1 : 1;
		}
		int c = key_cmp(x, y);
		if (c != 0)
			return s->descending ? -c : c;
	}
	return 0;
}

typedef enum {
	TAKE_EMIT, /* the row goes to the client */
	TAKE_SKIP, /* a duplicate, or within the OFFSET */
	TAKE_STOP, /* the limit is met */
} take_t;

/*
 * The stage every row passes on its way out, in PostgreSQL's order:
 * DISTINCT, then OFFSET, then LIMIT (WITH TIES: rows equal to the last one
 * still go out). Takes ownership of row: kept as m->last (ordered modes),
 * handed back for queueing (CONCAT, TAKE_EMIT), or freed.
 */
static take_t take_row(merger_t *m, merge_row_t *row)
{
	const merge_plan_t *p = m->plan;
	bool keep = p->mode != MERGE_MODE_CONCAT;
	if (m->distinct) {
		/* Rows equal under DISTINCT have equal leading sort keys, and rows
		 * come out in sort order: once those keys change, no row seen so
		 * far can come again. */
		if (m->tie_prefix > 0 && m->last &&
		    compare_rows(m, m->last, row, m->tie_prefix) != 0 && m->seen.count > 0) {
			hashmap_destroy(&m->seen);
			if (!hashmap_init(&m->seen, 16)) {
				free(row);
				merge_fail(m, NULL, 0, "out of memory merging rows");
				return TAKE_STOP;
			}
		}
		if (hashmap_get(&m->seen, row->identity, row->identity_len)) {
			free(row);
			return TAKE_SKIP;
		}
		if (!hashmap_put(&m->seen, row->identity, row->identity_len, m)) {
			free(row);
			merge_fail(m, NULL, 0, "out of memory merging rows");
			return TAKE_STOP;
		}
	}
	if (m->has_limit && m->emitted >= (uint64_t)m->limit) {
		bool tie = p->with_ties && m->last && m->emitted > 0 &&
		           compare_rows(m, m->last, row, p->n_sort) == 0;
		if (!tie) {
			m->limit_reached = true;
			free(row);
			return TAKE_STOP;
		}
	} else if (m->skipped < (uint64_t)m->offset) {
		m->skipped++;
		if (keep)
			set_last(m, row);
		else
			free(row);
		return TAKE_SKIP;
	}
	m->emitted++;
	if (keep)
		set_last(m, row);
	if (m->has_limit && !p->with_ties && m->emitted >= (uint64_t)m->limit)
		m->limit_reached = true;
	return TAKE_EMIT;
}

/* The client's DataRow: the row without its hidden columns. */
static const uint8_t *client_body(merger_t *m, const merge_row_t *row, size_t *len)
{
	if (m->n_visible == m->n_row_cols) {
		*len = row->body_len;
		return row->body;
	}
	m->out.len = m->out.off = 0;
	if (!buf_reserve(&m->out, row->body_len)) {
		merge_fail(m, NULL, 0, "out of memory merging rows");
		return NULL;
	}
	buf_put_u16(&m->out, (uint16_t)m->n_visible);
	for (int c = 0; c < m->n_visible; c++) {
		buf_put_u32(&m->out, (uint32_t)row->lens[c]);
		if (row->lens[c] > 0)
			buf_put_bytes(&m->out, row->body + row->offs[c], (size_t)row->lens[c]);
	}
	*len = buf_avail(&m->out);
	return buf_head(&m->out);
}

static void drop_queues(merger_t *m)
{
	for (int s = 0; s < m->n_sources; s++) {
		free_rows(m->sources[s].head);
		m->sources[s].head = m->sources[s].tail = NULL;
		m->sources[s].count = 0;
	}
}

/* ---- LIMIT/OFFSET and parameters ---- */

static bool param_is_binary(const int *formats, int i)
{
	return formats && formats[i] == FORMAT_BINARY;
}

/* Reads an integer $n for LIMIT or OFFSET; *is_null for SQL NULL. */
static bool read_int_param(merger_t *m, int number, int nparams, const char *const *values,
                           const int *lengths, const int *formats, const char *clause,
                           bool *is_null, int64_t *out, char *err, size_t errlen)
{
	if (number < 1 || number > nparams)
		return merge_fail(m, err, errlen, "%s refers to parameter $%d but %d were bound",
		                  clause, number, nparams);
	int i = number - 1;
	const char *v = values ? values[i] : NULL;
	*is_null = v == NULL;
	if (!v)
		return true;
	if (param_is_binary(formats, i)) {
		int len = lengths ? lengths[i] : -1;
		const uint8_t *p = (const uint8_t *)v;
		if (len == 2)
			*out = (int16_t)get_u16(p);
		else if (len == 4)
			*out = (int32_t)buf_get_u32(p);
		else if (len == 8)
			*out = (int64_t)get_u64(p);
		else
			return merge_fail(m, err, errlen, "invalid binary %s parameter $%d", clause,
			                  number);
		return true;
	}
	size_t start = 0, end = strlen(v);
	while (start < end && isspace((unsigned char)v[start]))
		start++;
	while (end > start && isspace((unsigned char)v[end - 1]))
		end--;
	if (!parse_int_text((const uint8_t *)v + start, end - start, out))
		return merge_fail(m, err, errlen, "invalid input syntax for type bigint: \"%s\"",
		                  v);
	return true;
}

static bool resolve_bound(merger_t *m, merge_bound_t b, const char *clause, int nparams,
                          const char *const *values, const int *lengths, const int *formats,
                          bool *present, int64_t *out, char *err, size_t errlen)
{
	*present = false;
	*out = 0;
	if (b.kind == MERGE_BOUND_NONE)
		return true;
	if (b.kind == MERGE_BOUND_CONST) {
		*present = true;
		*out = b.value;
	} else {
		bool is_null;
		if (!read_int_param(m, b.param, nparams, values, lengths, formats, clause, &is_null,
		                    out, err, errlen))
			return false;
		*present = !is_null;
	}
	if (*present && *out < 0)
		return merge_fail(m, err, errlen, "%s must not be negative", clause);
	return true;
}

/* Keeps the text of the parameters HAVING compares with. */
static bool copy_having_params(merger_t *m, int nparams, const char *const *values,
                               const int *formats, char *err, size_t errlen)
{
	const merge_plan_t *p = m->plan;
	for (int i = 0; i < p->n_conds; i++) {
		const merge_operand_t *o = &p->conds[i].rhs;
		if (p->conds[i].kind != MERGE_COND_CMP || o->kind != MERGE_OPERAND_PARAM)
			continue;
		if (o->index < 1 || o->index > nparams)
			return merge_fail(m, err, errlen,
			                  "HAVING refers to parameter $%d but %d were "
			                  "bound",
			                  o->index, nparams);
		if (param_is_binary(formats, o->index - 1))
			return merge_fail(m, err, errlen,
			                  "HAVING parameter $%d over several shards "
			                  "must be sent in text format",
			                  o->index);
		if (!m->params) {
			m->params = calloc((size_t)nparams, sizeof(*m->params));
			if (!m->params)
				return merge_fail(m, err, errlen, "out of memory");
			m->n_params = nparams;
		}
		const char *v = values ? values[o->index - 1] : NULL;
		if (v && !m->params[o->index - 1] && !(m->params[o->index - 1] = strdup(v)))
			return merge_fail(m, err, errlen, "out of memory");
	}
	return true;
}

merger_t *merger_new(const merge_plan_t *p, int nsources, int nparams,
                     const char *const *param_values, const int *param_lengths,
                     const int *param_formats, char *err, size_t errlen)
{
	if (err && errlen > 0)
		err[0] = '\0';
	if (!p || nsources < 1 || nsources > MERGE_MAX_SOURCES || nparams < 0) {
		merge_fail(NULL, err, errlen, "invalid merge of %d sources", nsources);
		return NULL;
	}
	merger_t *m = calloc(1, sizeof(*m));
	if (!m || !(m->sources = calloc((size_t)nsources, sizeof(*m->sources)))) {
		free(m);
		merge_fail(NULL, err, errlen, "out of memory");
		return NULL;
	}
	m->plan = p;
	m->n_sources = nsources;
	bool has_offset;
	if (!resolve_bound(m, p->limit, "LIMIT", nparams, param_values, param_lengths,
	                   param_formats, &m->has_limit, &m->limit, err, errlen) ||
	    !resolve_bound(m, p->offset, "OFFSET", nparams, param_values, param_lengths,
	                   param_formats, &has_offset, &m->offset, err, errlen) ||
	    !copy_having_params(m, nparams, param_values, param_formats, err, errlen)) {
		merger_free(m);
		return NULL;
	}
	if (m->has_limit && m->limit == 0)
		m->limit_reached = true;
	return m;
}

/* ---- the row description ---- */

static bool split_row_description(merger_t *m, const uint8_t *body, size_t len, field_t **out,
                                  int *n_out, char *err, size_t errlen)
{
	proto_reader_t r;
	proto_reader_init(&r, body, len);
	uint16_t n;
	if (!proto_read_u16(&r, &n) || n > MERGE_MAX_COLUMNS)
		return merge_fail(m, err, errlen, "malformed RowDescription from a shard");
	field_t *fields = calloc(n ? n : 1, sizeof(*fields));
	if (!fields)
		return merge_fail(m, err, errlen, "out of memory");
	for (int c = 0; c < n; c++) {
		const char *name;
		size_t name_len;
		const uint8_t *fixed;
		fields[c].start = r.pos;
		if (!proto_read_cstr(&r, &name, &name_len) ||
		    !proto_read_bytes(&r, FIELD_FIXED_LEN, &fixed)) {
			free(fields);
			return merge_fail(m, err, errlen, "malformed RowDescription from a shard");
		}
		fields[c].name_end = r.pos - FIELD_FIXED_LEN;
		fields[c].type_oid = buf_get_u32(fixed + 6);
		fields[c].format = (int16_t)get_u16(fixed + 16);
	}
	if (proto_reader_left(&r) != 0) {
		free(fields);
		return merge_fail(m, err, errlen, "malformed RowDescription from a shard");
	}
	*out = fields;
	*n_out = n;
	return true;
}

static int resolve_colref(const merger_t *m, merge_colref_t ref)
{
	int c;
	switch (ref.base) {
	case MERGE_COL_FROM_START:
		c = ref.index;
		return c >= 0 && c < m->n_visible ? c : -1;
	case MERGE_COL_FROM_END:
		c = m->n_visible - 1 - ref.index;
		return c >= 0 ? c : -1;
	case MERGE_COL_HIDDEN:
		c = m->n_visible + ref.index;
		return c < m->n_row_cols ? c : -1;
	}
	return -1;
}

static bool client_field(merger_t *m, int shard_col, uint32_t new_type, int16_t new_typlen)
{
	const field_t *f = &m->fields[shard_col];
	size_t start = buf_avail(&m->client_desc);
	if (!buf_append(&m->client_desc, m->desc + f->start,
	                f->name_end + FIELD_FIXED_LEN - f->start))
		return false;
	if (new_type) {
		uint8_t *fixed =
		    m->client_desc.data + m->client_desc.off + start + (f->name_end - f->start);
		buf_set_u32(fixed + 6, new_type);
		fixed[10] = (uint8_t)((uint16_t)new_typlen >> 8);
		fixed[11] = (uint8_t)new_typlen;
		buf_set_u32(fixed + 12, UINT32_MAX); /* typmod -1 */
	}
	return true;
}

/*
 * The type of each AGGREGATE result column, from the shards' columns, as
 * PostgreSQL types the aggregate: count bigint; sum the partial sum's type
 * (bigint for int2/int4, numeric for int8 and numeric, float4, float8);
 * avg numeric for integers and numeric, float8 for floats.
 */
static bool setup_result_types(merger_t *m, char *err, size_t errlen)
{
	const merge_plan_t *p = m->plan;
	m->result_types = calloc((size_t)p->n_results, sizeof(*m->result_types));
	if (!m->result_types)
		return merge_fail(m, err, errlen, "out of memory");
	for (int r = 0; r < p->n_results; r++) {
		const merge_result_col_t *res = &p->results[r];
		const col_type_t *in = &m->shard_types[res->shard_col];
		col_type_t *t = &m->result_types[r];
		*t = *in;
		switch (res->agg) {
		case MERGE_AGG_GROUP:
			break;
		case MERGE_AGG_COUNT:
			if (in->vt != VT_INT8)
				return merge_fail(m, err, errlen,
				                  "count() from a shard is type %u, not "
				                  "bigint",
				                  in->oid);
			break;
		case MERGE_AGG_SUM:
			if (in->vt != VT_INT8 && in->vt != VT_NUMERIC && in->vt != VT_FLOAT4 &&
			    in->vt != VT_FLOAT8)
				return merge_fail(m, err, errlen,
				                  "sum() of type %u over several shards is "
				                  "not supported",
				                  in->oid);
			if (in->vt == VT_NUMERIC && in->format == FORMAT_BINARY)
				return merge_fail(m, err, errlen,
				                  "sum() of numeric over several shards "
				                  "needs the text format");
			break;
		case MERGE_AGG_MIN:
		case MERGE_AGG_MAX:
			if (!type_comparable(in))
				return merge_fail(m, err, errlen,
				                  "%s() of type %u over several shards is "
				                  "not supported",
				                  merge_agg_name(res->agg), in->oid);
			break;
		case MERGE_AGG_AVG: {
			const col_type_t *count = &m->shard_types[res->shard_col2];
			if (count->vt != VT_INT8)
				return merge_fail(m, err, errlen,
				                  "count() from a shard is type %u, not "
				                  "bigint",
				                  count->oid);
			if (in->vt == VT_INT8 || in->vt == VT_NUMERIC) {
				if (in->format == FORMAT_BINARY)
					return merge_fail(m, err, errlen,
					                  "avg() over several shards needs "
					                  "the text format");
				*t = (col_type_t){OID_NUMERIC, FORMAT_TEXT, VT_NUMERIC};
			} else if (in->vt == VT_FLOAT4 || in->vt == VT_FLOAT8) {
				*t = (col_type_t){OID_FLOAT8, in->format, VT_FLOAT8};
			} else {
				return merge_fail(m, err, errlen,
				                  "avg() of type %u over several shards is "
				                  "not supported",
				                  in->oid);
			}
			break;
		}
		case MERGE_AGG_BOOL_AND:
		case MERGE_AGG_BOOL_OR:
			if (in->vt != VT_BOOL)
				return merge_fail(m, err, errlen,
				                  "%s() from a shard is type %u, not "
				                  "boolean",
				                  merge_agg_name(res->agg), in->oid);
			break;
		}
	}
	return true;
}

/* HAVING: its constants read as the type they meet, its types comparable. */
static bool setup_having(merger_t *m, char *err, size_t errlen)
{
	const merge_plan_t *p = m->plan;
	if (p->n_conds == 0)
		return true;
	m->cond_keys = calloc((size_t)p->n_conds, sizeof(*m->cond_keys));
	m->cond_store = calloc((size_t)p->n_conds, sizeof(*m->cond_store));
	if (!m->cond_keys || !m->cond_store)
		return merge_fail(m, err, errlen, "out of memory");
	for (int i = 0; i < p->n_conds; i++) {
		const merge_cond_t *c = &p->conds[i];
		if (c->kind != MERGE_COND_CMP)
			continue;
		const col_type_t *lt = &m->result_types[c->lhs.index];
		if (!type_comparable(lt))
			return merge_fail(m, err, errlen,
			                  "HAVING compares a value of type %u, which is "
			                  "not supported over several shards",
			                  lt->oid);
		m->check_result[c->lhs.index] = true;
		const char *text = NULL;
		switch (c->rhs.kind) {
		case MERGE_OPERAND_RESULT: {
			const col_type_t *rt = &m->result_types[c->rhs.index];
			bool both_numbers = type_numeric_family(lt) && type_numeric_family(rt);
			if (!type_comparable(rt) ||
			    (!both_numbers && (lt->vt != rt->vt || lt->format != rt->format)))
				return merge_fail(m, err, errlen,
				                  "HAVING compares types %u and %u, which is "
				                  "not supported over several shards",
				                  lt->oid, rt->oid);
			m->check_result[c->rhs.index] = true;
			break;
		}
		case MERGE_OPERAND_CONST:
			text = c->rhs.text;
			break;
		case MERGE_OPERAND_PARAM:
			text = m->params ? m->params[c->rhs.index - 1] : NULL;
			break;
		case MERGE_OPERAND_NULL:
			break;
		}
		m->cond_keys[i].kind = KEY_NULL;
		if (text && !parse_constant(lt, text, m->cond_store[i], &m->cond_keys[i]))
			return merge_fail(m, err, errlen,
			                  "HAVING constant \"%s\" cannot be compared with "
			                  "a value of type %u",
			                  text, lt->oid);
	}
	return true;
}

/* Everything the first RowDescription decides. */
static bool setup_columns(merger_t *m, char *err, size_t errlen)
{
	const merge_plan_t *p = m->plan;
	int n = m->n_fields;
	m->shard_types = calloc((size_t)n + 1, sizeof(*m->shard_types));
	if (!m->shard_types)
		return merge_fail(m, err, errlen, "out of memory");
	for (int c = 0; c < n; c++)
		m->shard_types[c] = (col_type_t){m->fields[c].type_oid, m->fields[c].format,
		                                 value_type_of(m->fields[c].type_oid)};

	if (p->mode == MERGE_MODE_AGGREGATE) {
		if (n != p->n_shard_cols)
			return merge_fail(m, err, errlen,
			                  "the shards returned %d columns, the merge "
			                  "expects %d",
			                  n, p->n_shard_cols);
		if (!setup_result_types(m, err, errlen))
			return false;
		m->n_row_cols = p->n_results;
		m->n_visible = p->n_results - p->n_hidden;
		m->row_types = m->result_types;
		m->check_result = calloc((size_t)p->n_results + 1, sizeof(*m->check_result));
		if (!m->check_result)
			return merge_fail(m, err, errlen, "out of memory");
	} else {
		if (n < p->n_hidden)
			return merge_fail(m, err, errlen,
			                  "the shards returned %d columns, the merge "
			                  "expects at least %d",
			                  n, p->n_hidden);
		m->n_row_cols = n;
		m->n_visible = n - p->n_hidden;
		m->row_types = m->shard_types;
	}
	int width = n > m->n_row_cols ? n : m->n_row_cols;
	m->offs = calloc((size_t)width + 1, sizeof(*m->offs));
	m->lens = calloc((size_t)width + 1, sizeof(*m->lens));
	m->sort_cols = calloc((size_t)p->n_sort + 1, sizeof(*m->sort_cols));
	m->distinct_cols = calloc((size_t)m->n_row_cols + 1, sizeof(*m->distinct_cols));
	if (!m->offs || !m->lens || !m->sort_cols || !m->distinct_cols)
		return merge_fail(m, err, errlen, "out of memory");

	for (int k = 0; k < p->n_sort; k++) {
		int c = resolve_colref(m, p->sort[k].col);
		if (c < 0)
			return merge_fail(m, err, errlen,
			                  "ORDER BY position %d is not in select list",
			                  p->sort[k].col.index + 1);
		if (!type_comparable(&m->row_types[c]))
			return merge_fail(m, err, errlen,
			                  "ORDER BY a column of type %u%s over several "
			                  "shards is not supported",
			                  m->row_types[c].oid,
			                  m->row_types[c].vt == VT_NUMERIC ? " in binary format"
			                                                   : "");
		m->sort_cols[k] = c;
		if (p->mode == MERGE_MODE_AGGREGATE)
			m->check_result[c] = true;
	}
	if (p->n_distinct_on > 0) {
		for (int i = 0; i < p->n_distinct_on; i++) {
			int c = resolve_colref(m, p->distinct_on[i]);
			if (c < 0)
				return merge_fail(m, err, errlen,
				                  "SELECT DISTINCT ON column is not in "
				                  "the shards' rows");
			m->distinct_cols[m->n_distinct_cols++] = c;
		}
	} else if (p->distinct) {
		for (int c = 0; c < m->n_visible; c++)
			m->distinct_cols[m->n_distinct_cols++] = c;
	}
	m->distinct = m->n_distinct_cols > 0;
	/* The leading sort keys all within the DISTINCT key: see take_row(). */
	while (m->distinct && m->tie_prefix < p->n_sort) {
		bool in_key = false;
		for (int i = 0; i < m->n_distinct_cols; i++)
			in_key = in_key || m->distinct_cols[i] == m->sort_cols[m->tie_prefix];
		if (!in_key)
			break;
		m->tie_prefix++;
	}
	if (m->distinct && !hashmap_init(&m->seen, 16))
		return merge_fail(m, err, errlen, "out of memory");
	if (p->mode == MERGE_MODE_AGGREGATE && !hashmap_init(&m->groups, 64))
		return merge_fail(m, err, errlen, "out of memory");
	if (p->mode == MERGE_MODE_AGGREGATE && !setup_having(m, err, errlen))
		return false;

	/* The client's RowDescription. */
	buf_t *d = &m->client_desc;
	if (!buf_reserve(d, 2))
		return merge_fail(m, err, errlen, "out of memory");
	buf_put_u16(d, (uint16_t)m->n_visible);
	for (int c = 0; c < m->n_visible; c++) {
		bool ok;
		if (p->mode != MERGE_MODE_AGGREGATE) {
			ok = client_field(m, c, 0, 0);
		} else {
			const merge_result_col_t *res = &p->results[c];
			const col_type_t *t = &m->result_types[c];
			bool retyped = res->agg == MERGE_AGG_AVG;
			ok = client_field(m, res->shard_col, retyped ? t->oid : 0,
			                  t->vt == VT_FLOAT8 ? 8 : -1);
		}
		if (!ok)
			return merge_fail(m, err, errlen, "out of memory");
	}
	return true;
}

bool merger_row_description(merger_t *m, int source, const uint8_t *body, size_t len, char *err,
                            size_t errlen)
{
	if (m->failed)
		return merge_fail(m, err, errlen, "%s", m->error);
	if (source < 0 || source >= m->n_sources)
		return merge_fail(m, err, errlen, "no source %d in this merge", source);
	field_t *fields = NULL;
	int n = 0;
	if (!split_row_description(m, body, len, &fields, &n, err, errlen))
		return false;
	if (m->described) {
		bool same = n == m->n_fields;
		for (int c = 0; same && c < n; c++) {
			if (fields[c].type_oid != m->fields[c].type_oid ||
			    fields[c].format != m->fields[c].format) {
				uint32_t other = fields[c].type_oid;
				int16_t other_format = fields[c].format;
				free(fields);
				if (other == m->fields[c].type_oid)
					return merge_fail(m, err, errlen,
					                  "the shards disagree on the result: "
					                  "column %d is in format %d on one "
					                  "shard and %d on another",
					                  c + 1, m->fields[c].format, other_format);
				return merge_fail(m, err, errlen,
				                  "the shards disagree on the result: column "
				                  "%d is type %u on one shard and %u on "
				                  "another",
				                  c + 1, m->fields[c].type_oid, other);
			}
		}
		free(fields);
		if (!same)
			return merge_fail(m, err, errlen,
			                  "the shards disagree on the result: %d columns "
			                  "on one shard, %d on another",
			                  m->n_fields, n);
		m->sources[source].described = true;
		return true;
	}
	m->desc = malloc(len ? len : 1);
	if (!m->desc) {
		free(fields);
		return merge_fail(m, err, errlen, "out of memory");
	}
	memcpy(m->desc, body, len);
	m->desc_len = len;
	m->fields = fields;
	m->n_fields = n;
	if (!setup_columns(m, err, errlen))
		return false;
	m->described = true;
	m->sources[source].described = true;
	return true;
}

const uint8_t *merger_client_row_description(merger_t *m, size_t *len)
{
	if (!m->described || m->failed)
		return NULL;
	*len = buf_avail(&m->client_desc);
	return buf_head(&m->client_desc);
}

/* ---- aggregation ---- */

static bool read_int8(const col_type_t *t, const uint8_t *p, int32_t len, int64_t *out)
{
	merge_key_t k;
	if (!parse_key(t, p, len, &k) || k.kind != KEY_INT)
		return false;
	*out = k.i;
	return true;
}

static bool acc_keep_value(acc_t *acc, const col_type_t *t, const uint8_t *p, int32_t len,
                           bool parse)
{
	uint8_t *copy = NULL;
	if (len > 0 && !(copy = malloc((size_t)len)))
		return false;
	if (len > 0)
		memcpy(copy, p, (size_t)len);
	free(acc->bytes);
	acc->bytes = copy;
	acc->len = len;
	if (parse)
		parse_key(t, copy, len, &acc->key);
	return true;
}

/* Folds one shard's partial into a group's state for result r. */
static bool combine(merger_t *m, acc_t *acc, int r, const uint8_t *body, char *err, size_t errlen)
{
	const merge_result_col_t *res = &m->plan->results[r];
	const col_type_t *t = &m->shard_types[res->shard_col];
	const uint8_t *p = body + m->offs[res->shard_col];
	int32_t len = m->lens[res->shard_col];
	merge_key_t k;
	switch (res->agg) {
	case MERGE_AGG_GROUP:
		if (acc->seen)
			return true;
		if (m->check_result[r] && !parse_key(t, p, len, &k))
			return unreadable(m, t, err, errlen);
		acc->seen = true;
		if (!acc_keep_value(acc, t, p, len, false))
			return merge_fail(m, err, errlen, "out of memory merging groups");
		return true;
	case MERGE_AGG_COUNT: {
		int64_t v;
		if (len < 0)
			return true;
		if (!read_int8(t, p, len, &v))
			return unreadable(m, t, err, errlen);
		if (__builtin_add_overflow(acc->isum, v, &acc->isum))
			return merge_fail(m, err, errlen, "bigint out of range");
		acc->seen = true;
		return true;
	}
	case MERGE_AGG_SUM:
		if (len < 0)
			return true;
		if (!parse_key(t, p, len, &k))
			return unreadable(m, t, err, errlen);
		if (t->vt == VT_INT8) {
			if (__builtin_add_overflow(acc->isum, k.i, &acc->isum))
				return merge_fail(m, err, errlen, "bigint out of range");
		} else if (t->vt == VT_NUMERIC) {
			if (!dec_add(&acc->dec, &k))
				return merge_fail(m, err, errlen, "out of memory merging groups");
		} else if (t->vt == VT_FLOAT4) {
			float sum = acc->fsum + (float)k.d;
			if (isinf(sum) && !isinf(acc->fsum) && !isinf(k.d))
				return merge_fail(m, err, errlen, "value out of range: overflow");
			acc->fsum = sum;
		} else {
			double sum = acc->dsum + k.d;
			if (isinf(sum) && !isinf(acc->dsum) && !isinf(k.d))
				return merge_fail(m, err, errlen, "value out of range: overflow");
			acc->dsum = sum;
		}
		acc->seen = true;
		return true;
	case MERGE_AGG_MIN:
	case MERGE_AGG_MAX: {
		if (len < 0)
			return true;
		if (!parse_key(t, p, len, &k))
			return unreadable(m, t, err, errlen);
		int c = acc->seen ? key_cmp(&k, &acc->key) : 0;
		if (!acc->seen || (res->agg == MERGE_AGG_MIN ? c < 0 : c > 0)) {
			if (!acc_keep_value(acc, t, p, len, true))
				return merge_fail(m, err, errlen, "out of memory merging groups");
			acc->seen = true;
		}
		return true;
	}
	case MERGE_AGG_AVG: {
		const col_type_t *ct = &m->shard_types[res->shard_col2];
		int32_t count_len = m->lens[res->shard_col2];
		int64_t count = 0;
		if (count_len >= 0 &&
		    !read_int8(ct, body + m->offs[res->shard_col2], count_len, &count))
			return unreadable(m, ct, err, errlen);
		if (__builtin_add_overflow(acc->count, count, &acc->count))
			return merge_fail(m, err, errlen, "bigint out of range");
		if (len < 0)
			return true;
		if (!parse_key(t, p, len, &k))
			return unreadable(m, t, err, errlen);
		if (t->vt == VT_FLOAT4 || t->vt == VT_FLOAT8)
			acc->dsum += k.d;
		else if (!(t->vt == VT_INT8 ? dec_add_int64(&acc->dec, k.i)
		                            : dec_add(&acc->dec, &k)))
			return merge_fail(m, err, errlen, "out of memory merging groups");
		acc->seen = true;
		return true;
	}
	case MERGE_AGG_BOOL_AND:
	case MERGE_AGG_BOOL_OR:
		if (len < 0)
			return true;
		if (!parse_key(t, p, len, &k))
			return unreadable(m, t, err, errlen);
		if (!acc->seen)
			acc->bval = k.i != 0;
		else if (res->agg == MERGE_AGG_BOOL_AND)
			acc->bval = acc->bval && k.i != 0;
		else
			acc->bval = acc->bval || k.i != 0;
		acc->seen = true;
		return true;
	}
	return true;
}

/* A group with every state empty; registered under its key unless
 * key is false (the one group of an aggregate without GROUP BY and
 * without rows). */
static acc_t *new_group(merger_t *m, bool key, const uint8_t *identity, size_t len)
{
	if (m->n_groups == m->cap_groups) {
		size_t cap = m->cap_groups ? m->cap_groups * 2 : 64;
		acc_t **grown = realloc(m->group_list, cap * sizeof(*grown));
		if (!grown)
			return NULL;
		m->group_list = grown;
		m->cap_groups = cap;
	}
	acc_t *accs = calloc((size_t)m->plan->n_results, sizeof(*accs));
	if (!accs)
		return NULL;
	for (int r = 0; r < m->plan->n_results; r++)
		accs[r].len = -1;
	if (key && !hashmap_put(&m->groups, identity ? identity : (const uint8_t *)"", len, accs)) {
		free(accs);
		return NULL;
	}
	m->group_list[m->n_groups++] = accs;
	return accs;
}

static bool fold_row(merger_t *m, const uint8_t *body, size_t len, char *err, size_t errlen)
{
	const merge_plan_t *p = m->plan;
	if (!split_data_row(m, body, len, p->n_shard_cols, err, errlen))
		return false;
	m->identity.len = m->identity.off = 0;
	for (int i = 0; i < p->n_group_cols; i++) {
		int c = p->group_cols[i];
		if (!append_identity(&m->identity, &m->shard_types[c], body + m->offs[c],
		                     m->lens[c]))
			return merge_fail(m, err, errlen, "out of memory merging groups");
	}
	const uint8_t *identity =
	    buf_avail(&m->identity) ? buf_head(&m->identity) : (const uint8_t *)"";
	acc_t *accs = hashmap_get(&m->groups, identity, buf_avail(&m->identity));
	if (!accs && !(accs = new_group(m, true, identity, buf_avail(&m->identity))))
		return merge_fail(m, err, errlen, "out of memory merging groups");
	for (int r = 0; r < p->n_results; r++)
		if (!combine(m, &accs[r], r, body, err, errlen))
			return false;
	return true;
}

/* Appends one value of a result row: length, then bytes. */
static bool put_value(buf_t *b, const void *bytes, int32_t len)
{
	if (!buf_reserve(b, 4 + (len > 0 ? (size_t)len : 0)))
		return false;
	buf_put_u32(b, (uint32_t)len);
	if (len > 0)
		buf_put_bytes(b, bytes, (size_t)len);
	return true;
}

static bool put_text_value(buf_t *b, const char *text)
{
	return put_value(b, text, (int32_t)strlen(text));
}

static bool put_int8_value(buf_t *b, int16_t format, int64_t v)
{
	if (format == FORMAT_BINARY) {
		uint8_t raw[8];
		buf_set_u32(raw, (uint32_t)((uint64_t)v >> 32));
		buf_set_u32(raw + 4, (uint32_t)v);
		return put_value(b, raw, 8);
	}
	char text[32];
	snprintf(text, sizeof(text), "%" PRId64, v);
	return put_text_value(b, text);
}

static bool put_float_value(buf_t *b, int16_t format, double v, bool single)
{
	if (format == FORMAT_BINARY) {
		uint8_t raw[8];
		if (single) {
			float f = (float)v;
			uint32_t bits;
			memcpy(&bits, &f, sizeof(bits));
			buf_set_u32(raw, bits);
			return put_value(b, raw, 4);
		}
		uint64_t bits;
		memcpy(&bits, &v, sizeof(bits));
		buf_set_u32(raw, (uint32_t)(bits >> 32));
		buf_set_u32(raw + 4, (uint32_t)bits);
		return put_value(b, raw, 8);
	}
	char text[64];
	format_float(v, single, text, sizeof(text));
	return put_text_value(b, text);
}

/* Appends a decimal result (numeric text) as one value. */
static bool put_decimal_value(merger_t *m, buf_t *b, const dec_t *sum, int64_t divisor)
{
	buf_t *text = &m->scratch;
	text->len = text->off = 0;
	bool ok = divisor > 0 ? append_dec_div(text, sum, divisor)
	                      : append_decimal(text, sum->cls, sum->neg, sum->digits, sum->ndigits,
	                                       sum->scale);
	return ok && put_value(b, buf_head(text), (int32_t)buf_avail(text));
}

static bool put_result(merger_t *m, buf_t *b, int r, const acc_t *acc)
{
	const merge_result_col_t *res = &m->plan->results[r];
	const col_type_t *in = &m->shard_types[res->shard_col];
	const col_type_t *out = &m->result_types[r];
	switch (res->agg) {
	case MERGE_AGG_GROUP:
	case MERGE_AGG_MIN:
	case MERGE_AGG_MAX:
		return put_value(b, acc->bytes, acc->seen ? acc->len : -1);
	case MERGE_AGG_COUNT:
		return put_int8_value(b, out->format, acc->isum);
	case MERGE_AGG_SUM:
		if (!acc->seen)
			return put_value(b, NULL, -1);
		if (in->vt == VT_INT8)
			return put_int8_value(b, out->format, acc->isum);
		if (in->vt == VT_NUMERIC)
			return put_decimal_value(m, b, &acc->dec, 0);
		if (in->vt == VT_FLOAT4)
			return put_float_value(b, out->format, acc->fsum, true);
		return put_float_value(b, out->format, acc->dsum, false);
	case MERGE_AGG_AVG:
		if (!acc->seen || acc->count == 0)
			return put_value(b, NULL, -1);
		if (out->vt == VT_FLOAT8)
			return put_float_value(b, out->format, acc->dsum / (double)acc->count,
			                       false);
		return put_decimal_value(m, b, &acc->dec, acc->count);
	case MERGE_AGG_BOOL_AND:
	case MERGE_AGG_BOOL_OR: {
		if (!acc->seen)
			return put_value(b, NULL, -1);
		if (out->format == FORMAT_BINARY) {
			uint8_t v = acc->bval;
			return put_value(b, &v, 1);
		}
		return put_text_value(b, acc->bval ? "t" : "f");
	}
	}
	return false;
}

typedef enum { TRI_FALSE, TRI_TRUE, TRI_NULL } tri_t;

static bool row_key(const merger_t *m, const merge_row_t *row, int c, merge_key_t *k)
{
	return parse_key(&m->row_types[c], row->body + row->offs[c], row->lens[c], k);
}

/* HAVING on one result row, with SQL's three-valued logic. */
static tri_t eval_cond(const merger_t *m, const merge_row_t *row, int index, int depth)
{
	const merge_plan_t *p = m->plan;
	const merge_cond_t *c = &p->conds[index];
	if (depth > 200)
		return TRI_NULL;
	switch (c->kind) {
	case MERGE_COND_AND:
	case MERGE_COND_OR: {
		bool is_and = c->kind == MERGE_COND_AND;
		tri_t acc = is_and ? TRI_TRUE : TRI_FALSE;
		for (int k = 0; k < c->n_args; k++) {
			tri_t v = eval_cond(m, row, p->cond_args[c->first_arg + k], depth + 1);
			if (v == (is_and ? TRI_FALSE : TRI_TRUE))
				return v;
			if (v == TRI_NULL)
				acc = TRI_NULL;
		}
		return acc;
	}
	case MERGE_COND_NOT: {
		tri_t v = eval_cond(m, row, p->cond_args[c->first_arg], depth + 1);
		return v == TRI_NULL ? TRI_NULL : (v == TRI_TRUE ? TRI_FALSE : TRI_TRUE);
	}
	case MERGE_COND_IS_NULL:
	case MERGE_COND_IS_NOT_NULL: {
		bool is_null = row->lens[c->lhs.index] < 0;
		return is_null == (c->kind == MERGE_COND_IS_NULL) ? TRI_TRUE : TRI_FALSE;
	}
	case MERGE_COND_CMP: {
		merge_key_t lhs, rhs;
		if (!row_key(m, row, c->lhs.index, &lhs))
			return TRI_NULL;
		if (c->rhs.kind == MERGE_OPERAND_RESULT) {
			if (!row_key(m, row, c->rhs.index, &rhs))
				return TRI_NULL;
		} else {
			rhs = m->cond_keys[index];
		}
		if (lhs.kind == KEY_NULL || rhs.kind == KEY_NULL)
			return TRI_NULL;
		int cmp = key_cmp(&lhs, &rhs);
		bool v = false;
		switch (c->op) {
		case MERGE_CMP_EQ:
			v = cmp == 0;
			break;
		case MERGE_CMP_NE:
			v = cmp != 0;
			break;
		case MERGE_CMP_LT:
			v = cmp < 0;
			break;
		case MERGE_CMP_LE:
			v = cmp <= 0;
			break;
		case MERGE_CMP_GT:
			v = cmp > 0;
			break;
		case MERGE_CMP_GE:
			v = cmp >= 0;
			break;
		}
		return v ? TRI_TRUE : TRI_FALSE;
	}
	}
	return TRI_NULL;
}

static int compare_ready(const void *a, const void *b, void *arg)
{
	const merger_t *m = arg;
	const merge_row_t *x = *(merge_row_t *const *)a, *y = *(merge_row_t *const *)b;
	return compare_rows(m, x, y, m->plan->n_sort);
}

static void free_accs(const merge_plan_t *p, acc_t *accs)
{
	if (!accs)
		return;
	for (int r = 0; r < p->n_results; r++) {
		free(accs[r].bytes);
		dec_free(&accs[r].dec);
	}
	free(accs);
}

/*
 * Every source is done: one result row per group (a query without GROUP
 * BY has exactly one, even over no rows), HAVING applied, then sorted.
 * Group states are freed as their rows are made.
 */
static bool finalize(merger_t *m)
{
	const merge_plan_t *p = m->plan;
	m->finalized = true;
	if (!m->described)
		return true; /* no source described any rows: nothing to say */
	if (!p->grouped && m->n_groups == 0 && !new_group(m, false, NULL, 0))
		return merge_fail(m, NULL, 0, "out of memory merging groups");
	m->ready = calloc(m->n_groups + 1, sizeof(*m->ready));
	if (!m->ready)
		return merge_fail(m, NULL, 0, "out of memory merging groups");
	char err[MERGE_ERR_LEN];
	for (size_t g = 0; g < m->n_groups; g++) {
		acc_t *accs = m->group_list[g];
		buf_t *b = &m->result;
		b->len = b->off = 0;
		bool ok = buf_reserve(b, 2);
		if (ok)
			buf_put_u16(b, (uint16_t)p->n_results);
		for (int r = 0; ok && r < p->n_results; r++)
			ok = put_result(m, b, r, &accs[r]);
		free_accs(p, accs);
		m->group_list[g] = NULL;
		if (!ok)
			return merge_fail(m, NULL, 0, "out of memory merging groups");
		merge_row_t *row = make_row(m, -1, buf_head(b), buf_avail(b), err, sizeof(err));
		if (!row)
			return false;
		if (p->having >= 0 && eval_cond(m, row, p->having, 0) != TRI_TRUE) {
			free(row);
			continue;
		}
		m->ready[m->n_ready++] = row;
	}
	hashmap_destroy(&m->groups);
	free(m->group_list);
	m->group_list = NULL;
	m->n_groups = 0;
	if (p->n_sort > 0)
		qsort_r(m->ready, m->n_ready, sizeof(*m->ready), compare_ready, m);
	return true;
}

/* ---- the flow ---- */

bool merger_push_row(merger_t *m, int source, const uint8_t *body, size_t len, char *err,
                     size_t errlen)
{
	if (m->failed)
		return merge_fail(m, err, errlen, "%s", m->error);
	if (source < 0 || source >= m->n_sources)
		return merge_fail(m, err, errlen, "no source %d in this merge", source);
	source_t *src = &m->sources[source];
	if (!src->described)
		return merge_fail(m, err, errlen, "a shard sent a row before its RowDescription");
	if (src->done)
		return merge_fail(m, err, errlen, "a shard sent a row after it finished");
	const merge_plan_t *p = m->plan;
	if (p->mode == MERGE_MODE_AGGREGATE)
		return fold_row(m, body, len, err, errlen);
	if (m->limit_reached)
		return true;
	merge_row_t *row = make_row(m, source, body, len, err, errlen);
	if (!row)
		return false;
	if (p->mode == MERGE_MODE_ORDERED) {
		if (src->tail)
			src->tail->next = row;
		else
			src->head = row;
		src->tail = row;
		src->count++;
		return true;
	}
	if (take_row(m, row) != TAKE_EMIT)
		return !m->failed || merge_fail(m, err, errlen, "%s", m->error);
	if (m->out_tail)
		m->out_tail->next = row;
	else
		m->out_head = row;
	m->out_tail = row;
	src->count++;
	return true;
}

void merger_source_done(merger_t *m, int source)
{
	if (source < 0 || source >= m->n_sources || m->sources[source].done)
		return;
	m->sources[source].done = true;
	m->n_done++;
	if (m->plan->mode == MERGE_MODE_AGGREGATE && m->n_done == m->n_sources && !m->failed)
		finalize(m);
}

static const uint8_t *next_concat(merger_t *m, size_t *len)
{
	merge_row_t *row = m->out_head;
	if (!row)
		return NULL;
	m->out_head = row->next;
	if (!m->out_head)
		m->out_tail = NULL;
	row->next = NULL;
	m->sources[row->source].count--;
	set_last(m, row);
	return client_body(m, row, len);
}

static const uint8_t *next_ordered(merger_t *m, size_t *len)
{
	while (!m->limit_reached && !m->failed) {
		int best = -1;
		for (int s = 0; s < m->n_sources; s++) {
			const source_t *src = &m->sources[s];
			if (src->count == 0) {
				if (!src->done)
					return NULL; /* its next row may be the smallest */
				continue;
			}
			if (best < 0 ||
			    compare_rows(m, src->head, m->sources[best].head, m->plan->n_sort) < 0)
				best = s;
		}
		if (best < 0)
			return NULL;
		source_t *src = &m->sources[best];
		merge_row_t *row = src->head;
		src->head = row->next;
		if (!src->head)
			src->tail = NULL;
		src->count--;
		row->next = NULL;
		take_t take = take_row(m, row);
		if (take == TAKE_EMIT)
			return client_body(m, row, len);
		if (take == TAKE_STOP)
			break;
	}
	drop_queues(m);
	return NULL;
}

static const uint8_t *next_aggregate(merger_t *m, size_t *len)
{
	if (!m->finalized) {
		if (m->n_done < m->n_sources || !finalize(m))
			return NULL;
	}
	while (m->ready_pos < m->n_ready && !m->limit_reached && !m->failed) {
		merge_row_t *row = m->ready[m->ready_pos];
		m->ready[m->ready_pos++] = NULL;
		take_t take = take_row(m, row);
		if (take == TAKE_EMIT)
			return client_body(m, row, len);
		if (take == TAKE_STOP)
			break;
	}
	return NULL;
}

const uint8_t *merger_next_row(merger_t *m, size_t *len)
{
	if (m->failed || !m->described)
		return NULL;
	switch (m->plan->mode) {
	case MERGE_MODE_CONCAT:
		return next_concat(m, len);
	case MERGE_MODE_ORDERED:
		return next_ordered(m, len);
	case MERGE_MODE_AGGREGATE:
		return next_aggregate(m, len);
	}
	return NULL;
}

bool merger_limit_reached(const merger_t *m)
{
	return m->limit_reached;
}

size_t merger_buffered(const merger_t *m, int source)
{
	if (source < 0 || source >= m->n_sources)
		return 0;
	return m->sources[source].count;
}

uint64_t merger_rows_out(const merger_t *m)
{
	return m->emitted;
}

bool merger_finished(const merger_t *m)
{
	if (m->failed)
		return true;
	switch (m->plan->mode) {
	case MERGE_MODE_CONCAT:
		return !m->out_head && (m->limit_reached || m->n_done == m->n_sources);
	case MERGE_MODE_ORDERED:
		if (m->limit_reached)
			return true;
		if (m->n_done < m->n_sources)
			return false;
		for (int s = 0; s < m->n_sources; s++)
			if (m->sources[s].count > 0)
				return false;
		return true;
	case MERGE_MODE_AGGREGATE:
		return m->finalized && (m->limit_reached || m->ready_pos == m->n_ready);
	}
	return true;
}

const char *merger_error(const merger_t *m)
{
	return m->failed ? m->error : NULL;
}

void merger_free(merger_t *m)
{
	if (!m)
		return;
	if (m->sources)
		drop_queues(m);
	free(m->sources);
	free_rows(m->out_head);
	free(m->last);
	for (size_t i = m->ready_pos; i < m->n_ready; i++)
		free(m->ready[i]);
	free(m->ready);
	for (size_t g = 0; g < m->n_groups; g++)
		free_accs(m->plan, m->group_list[g]);
	free(m->group_list);
	if (m->groups.slots)
		hashmap_destroy(&m->groups);
	if (m->seen.slots)
		hashmap_destroy(&m->seen);
	for (int i = 0; i < m->n_params; i++)
		free(m->params[i]);
	free(m->params);
	free(m->desc);
	free(m->fields);
	free(m->shard_types);
	free(m->result_types);
	free(m->sort_cols);
	free(m->distinct_cols);
	free(m->offs);
	free(m->lens);
	free(m->check_result);
	free(m->cond_keys);
	free(m->cond_store);
	buf_free(&m->client_desc);
	buf_free(&m->identity);
	buf_free(&m->out);
	buf_free(&m->result);
	buf_free(&m->scratch);
	free(m);
}
