/*
 * hash.c - PostgreSQL 15's hash partitioning, ported from its sources:
 * src/common/hashfn.c (Bob Jenkins' lookup3 as adapted by PostgreSQL),
 * src/backend/access/hash/hashfunc.c, src/backend/utils/adt/uuid.c,
 * src/include/common/hashfn.h and src/backend/partitioning/partbounds.c.
 *
 * All arithmetic is on uint32_t/uint64_t so wrap-around is defined, and
 * every multi-byte read is spelled out byte by byte in little-endian order,
 * which is what a little-endian server computes whether or not its input
 * happens to be aligned.
 */
#include "route/hash.h"

#include <stdio.h>
#include <string.h>

/* hash_combine64's 64 bits of random data (src/include/common/hashfn.h). */
#define HASH_COMBINE64_CONSTANT UINT64_C(0x49a0f4dd15e5a8e3)

/* lookup3's initial state: 0x9e3779b9 + len + 3923095 (hashfn.c). */
#define HASH_INIT_CONSTANT (UINT32_C(0x9e3779b9) + UINT32_C(3923095))

#define HASH_UUID_LEN 16

/* Mirrors hashfn.c's rot(): rotate left by 1..31 bits. */
static inline uint32_t hash_rot32(uint32_t x, unsigned k)
{
	return (x << k) | (x >> (32u - k));
}

/* Mirrors hashfn.c's mix(a, b, c): reversible mixing of three words. */
static inline void hash_mix(uint32_t *a, uint32_t *b, uint32_t *c)
{
	*a -= *c;
	*a ^= hash_rot32(*c, 4);
	*c += *b;
	*b -= *a;
	*b ^= hash_rot32(*a, 6);
	*a += *c;
	*c -= *b;
	*c ^= hash_rot32(*b, 8);
	*b += *a;
	*a -= *c;
	*a ^= hash_rot32(*c, 16);
	*c += *b;
	*b -= *a;
	*b ^= hash_rot32(*a, 19);
	*a += *c;
	*c -= *b;
	*c ^= hash_rot32(*b, 4);
	*b += *a;
}

/* Mirrors hashfn.c's final(a, b, c): final mixing of three words into c. */
static inline void hash_final(uint32_t *a, uint32_t *b, uint32_t *c)
{
	*c ^= *b;
	*c -= hash_rot32(*b, 14);
	*a ^= *c;
	*a -= hash_rot32(*c, 11);
	*b ^= *a;
	*b -= hash_rot32(*a, 25);
	*c ^= *b;
	*c -= hash_rot32(*b, 16);
	*a ^= *c;
	*a -= hash_rot32(*c, 4);
	*b ^= *a;
	*b -= hash_rot32(*a, 14);
	*c ^= *b;
	*c -= hash_rot32(*b, 24);
}

static inline uint32_t hash_load_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
	       ((uint32_t)p[3] << 24);
}

/* The seed step shared by hash_bytes_extended and
 * hash_bytes_uint32_extended: the seed is hashed as a 12-byte chunk whose
 * last four bytes are zero. A zero seed means no seed. */
static inline void hash_apply_seed(uint32_t *a, uint32_t *b, uint32_t *c, uint64_t seed)
{
	if (seed != 0) {
		*a += (uint32_t)(seed >> 32);
		*b += (uint32_t)seed;
		hash_mix(a, b, c);
	}
}

/*
 * Mirrors hash_bytes_extended() (src/common/hashfn.c) on a little-endian
 * server: 12-byte blocks as three little-endian words, then the last 0..11
 * bytes added into a, b and c with c's lowest byte left for the length.
 * PostgreSQL passes the length as an int; every value it can hash is under
 * 1 GB, so the uint32_t truncation never applies to real values.
 */
static uint64_t hash_bytes_extended(const uint8_t *k, size_t keylen, uint64_t seed)
{
	uint32_t a, b, c;
	size_t remaining = keylen;
	size_t i;

	a = b = c = HASH_INIT_CONSTANT + (uint32_t)keylen;
	hash_apply_seed(&a, &b, &c, seed);

	while (remaining >= 12) {
		a += hash_load_le32(k);
		b += hash_load_le32(k + 4);
		c += hash_load_le32(k + 8);
		hash_mix(&a, &b, &c);
		k += 12;
		remaining -= 12;
	}

	/* Same as hashfn.c's fall-through switch for !WORDS_BIGENDIAN. */
	for (i = 0; i < remaining; i++) {
		uint32_t byte = k[i];

		if (i < 4)
			a += byte << (8 * i);
		else if (i < 8)
			b += byte << (8 * (i - 4));
		else
			c += byte << (8 * (i - 8 + 1));
	}

	hash_final(&a, &b, &c);
	return ((uint64_t)b << 32) | c;
}

/* Mirrors hash_bytes_uint32_extended() (src/common/hashfn.c), which the
 * integer hash functions call through hash_uint32_extended(). */
static uint64_t hash_bytes_uint32_extended(uint32_t k, uint64_t seed)
{
	uint32_t a, b, c;

	a = b = c = HASH_INIT_CONSTANT + (uint32_t)sizeof(uint32_t);
	hash_apply_seed(&a, &b, &c, seed);
	a += k;
	hash_final(&a, &b, &c);
	return ((uint64_t)b << 32) | c;
}

/* Mirrors hash_combine64() (src/include/common/hashfn.h). */
static inline uint64_t hash_combine64(uint64_t a, uint64_t b)
{
	a ^= b + HASH_COMBINE64_CONSTANT + (a << 54) + (a >> 7);
	return a;
}

/* Mirrors compute_partition_hash_value() (partbounds.c) for one non-null
 * key column whose extended hash, called with HASH_PARTITION_SEED, gave
 * column_hash. */
static inline uint64_t hash_partition_value(uint64_t column_hash)
{
	return hash_combine64(0, column_hash);
}

/* Mirrors hashint2extended(): the value sign-extended to int32, hashed as
 * uint32. */
uint64_t hash_int2(int16_t value)
{
	return hash_partition_value(
	    hash_bytes_uint32_extended((uint32_t)(int32_t)value, HASH_PARTITION_SEED));
}

/* Mirrors hashint4extended(). */
uint64_t hash_int4(int32_t value)
{
	return hash_partition_value(
	    hash_bytes_uint32_extended((uint32_t)value, HASH_PARTITION_SEED));
}

/*
 * Mirrors hashint8extended(): the high half is folded into the low half
 * (complemented for negative values), so a value that fits in int4 hashes
 * exactly as hashint4extended hashes it.
 */
uint64_t hash_int8(int64_t value)
{
	uint32_t lohalf = (uint32_t)(uint64_t)value;
	uint32_t hihalf = (uint32_t)((uint64_t)value >> 32);

	lohalf ^= (value >= 0) ? hihalf : ~hihalf;
	return hash_partition_value(hash_bytes_uint32_extended(lohalf, HASH_PARTITION_SEED));
}

/* Mirrors hashtextextended() for a deterministic collation (also used for
 * varchar): the bytes of the value, no terminator. */
uint64_t hash_text(const char *bytes, size_t len)
{
	return hash_partition_value(
	    hash_bytes_extended((const uint8_t *)bytes, len, HASH_PARTITION_SEED));
}

/* Mirrors uuid_hash_extended() (src/backend/utils/adt/uuid.c): the 16 bytes. */
uint64_t hash_uuid(const uint8_t bytes[16])
{
	return hash_partition_value(hash_bytes_extended(bytes, HASH_UUID_LEN, HASH_PARTITION_SEED));
}

/* Mirrors get_partition_for_tuple()'s hash case when every partition has
 * the same modulus: the remainder of the partition hash. */
int hash_bucket(uint64_t partition_hash, int buckets)
{
	if (buckets < 1)
		return -1;
	return (int)(partition_hash % (uint64_t)buckets);
}

/* isspace() in the C locale, which is what int8in sees for ASCII bytes. */
static inline bool hash_is_space(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\v' || ch == '\f' || ch == '\r';
}

static inline bool hash_is_digit(char ch)
{
	return ch >= '0' && ch <= '9';
}

/*
 * Mirrors pg_strtoint64() (src/backend/utils/adt/numutils.c), which
 * PostgreSQL 15's int8in calls: whitespace, an optional sign, at least one
 * digit, whitespace, end. A NUL byte inside the range is invalid (a server
 * would refuse it before int8in saw it).
 */
bool hash_parse_int(const char *text, size_t len, int64_t *out)
{
	const uint64_t max_magnitude = UINT64_C(1) << 63; /* |INT64_MIN| */
	size_t pos = 0;
	bool negative = false;
	uint64_t magnitude = 0;
	uint64_t limit;

	if (text == NULL)
		return false;
	while (pos < len && hash_is_space(text[pos]))
		pos++;
	if (pos < len && (text[pos] == '-' || text[pos] == '+')) {
		negative = text[pos] == '-';
		pos++;
	}
	if (pos >= len || !hash_is_digit(text[pos]))
		return false;

	limit = negative ? max_magnitude : max_magnitude - 1;
	while (pos < len && hash_is_digit(text[pos])) {
		uint64_t digit = (uint64_t)(text[pos] - '0');

		if (magnitude > (limit - digit) / 10)
			return false; /* out of range for bigint */
		magnitude = magnitude * 10 + digit;
		pos++;
	}
	while (pos < len && hash_is_space(text[pos]))
		pos++;
	if (pos != len)
		return false;

	if (!negative)
		*out = (int64_t)magnitude;
	else if (magnitude == max_magnitude)
		*out = INT64_MIN;
	else
		*out = -(int64_t)magnitude;
	return true;
}

static inline int hash_hex_value(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/*
 * Mirrors string_to_uuid() (src/backend/utils/adt/uuid.c, PostgreSQL 15):
 * an optional '{', 16 pairs of hex digits with an optional '-' after every
 * second pair except the last, the matching '}', and nothing else (no
 * whitespace).
 */
bool hash_parse_uuid(const char *text, size_t len, uint8_t out[16])
{
	uint8_t parsed[HASH_UUID_LEN];
	size_t pos = 0;
	bool braces = false;
	int i;

	if (text == NULL)
		return false;
	if (pos < len && text[pos] == '{') {
		braces = true;
		pos++;
	}
	for (i = 0; i < HASH_UUID_LEN; i++) {
		int high, low;

		if (len - pos < 2)
			return false;
		high = hash_hex_value(text[pos]);
		low = hash_hex_value(text[pos + 1]);
		if (high < 0 || low < 0)
			return false;
		parsed[i] = (uint8_t)((high << 4) | low);
		pos += 2;
		if (pos < len && text[pos] == '-' && (i % 2) == 1 && i < HASH_UUID_LEN - 1)
			pos++;
	}
	if (braces) {
		if (pos >= len || text[pos] != '}')
			return false;
		pos++;
	}
	if (pos != len)
		return false;
	memcpy(out, parsed, sizeof(parsed));
	return true;
}

/* The partition hash of an integer key of the given type, or false when the
 * value is outside the type's range (the server would refuse it). */
static bool hash_integer_key(key_type_t type, int64_t value, uint64_t *hash_out)
{
	switch (type) {
	case KEY_SMALLINT:
		if (value < INT16_MIN || value > INT16_MAX)
			return false;
		*hash_out = hash_int2((int16_t)value);
		return true;
	case KEY_INTEGER:
		if (value < INT32_MIN || value > INT32_MAX)
			return false;
		*hash_out = hash_int4((int32_t)value);
		return true;
	case KEY_BIGINT:
		*hash_out = hash_int8(value);
		return true;
	default:
		return false;
	}
}

bool hash_bucket_for_text_value(key_type_t type, const char *text, size_t len, int buckets,
                                int *bucket_out)
{
	uint64_t partition_hash;
	int64_t integer_value;
	uint8_t uuid_bytes[HASH_UUID_LEN];

	if (buckets < 1 || (text == NULL && len > 0))
		return false;
	switch (type) {
	case KEY_SMALLINT:
	case KEY_INTEGER:
	case KEY_BIGINT:
		if (!hash_parse_int(text, len, &integer_value) ||
		    !hash_integer_key(type, integer_value, &partition_hash))
			return false;
		break;
	case KEY_TEXT:
	case KEY_VARCHAR:
		partition_hash = hash_text(len > 0 ? text : "", len);
		break;
	case KEY_UUID:
		if (!hash_parse_uuid(text, len, uuid_bytes))
			return false;
		partition_hash = hash_uuid(uuid_bytes);
		break;
	default:
		return false;
	}
	*bucket_out = hash_bucket(partition_hash, buckets);
	return true;
}

/* A big-endian two's-complement integer of 2, 4 or 8 bytes (int2send,
 * int4send, int8send), sign-extended to int64. */
static bool hash_read_binary_integer(const uint8_t *bytes, size_t len, int64_t *out)
{
	uint64_t raw = 0;
	size_t i;

	if (len != 2 && len != 4 && len != 8)
		return false;
	for (i = 0; i < len; i++)
		raw = (raw << 8) | bytes[i];
	if (len == 2)
		*out = (int16_t)(uint16_t)raw;
	else if (len == 4)
		*out = (int32_t)(uint32_t)raw;
	else
		*out = (int64_t)raw;
	return true;
}

bool hash_bucket_for_binary_value(key_type_t type, const uint8_t *bytes, size_t len, int buckets,
                                  int *bucket_out)
{
	uint64_t partition_hash;
	int64_t integer_value;

	if (buckets < 1 || (bytes == NULL && len > 0))
		return false;
	switch (type) {
	case KEY_SMALLINT:
	case KEY_INTEGER:
	case KEY_BIGINT:
		if (!hash_read_binary_integer(bytes, len, &integer_value) ||
		    !hash_integer_key(type, integer_value, &partition_hash))
			return false;
		break;
	case KEY_TEXT:
	case KEY_VARCHAR:
		partition_hash = hash_text(len > 0 ? (const char *)bytes : "", len);
		break;
	case KEY_UUID:
		if (len != HASH_UUID_LEN)
			return false;
		partition_hash = hash_uuid(bytes);
		break;
	default:
		return false;
	}
	*bucket_out = hash_bucket(partition_hash, buckets);
	return true;
}

/* The built-in extended hash function PostgreSQL's default hash operator
 * class uses for the key type, or NULL when shardgate cannot hash it. */
static const char *hash_sql_function_name(key_type_t type)
{
	switch (type) {
	case KEY_SMALLINT:
		return "hashint2extended";
	case KEY_INTEGER:
		return "hashint4extended";
	case KEY_BIGINT:
		return "hashint8extended";
	case KEY_TEXT:
	case KEY_VARCHAR:
		return "hashtextextended";
	case KEY_UUID:
		return "uuid_hash_extended";
	default:
		return NULL;
	}
}

/* Quote name as an SQL identifier (quote_ident, always quoted): the
 * buffer must hold 2 * CONFIG_NAME_MAX + 3 bytes. */
static void hash_quote_ident(const char *name, char *out)
{
	size_t pos = 0;

	out[pos++] = '"';
	for (; *name != '\0'; name++) {
		if (*name == '"')
			out[pos++] = '"';
		out[pos++] = *name;
	}
	out[pos++] = '"';
	out[pos] = '\0';
}

bool hash_sql_bucket_expr(key_type_t type, const char *column, int buckets, char *out,
                          size_t outlen)
{
	const char *function = hash_sql_function_name(type);
	char quoted[2 * CONFIG_NAME_MAX + 3];
	char expr[512];
	int written;
	size_t column_len;

	if (function == NULL || buckets < 1 || column == NULL || out == NULL)
		return false;
	column_len = strlen(column);
	if (column_len == 0 || column_len > CONFIG_NAME_MAX)
		return false;
	hash_quote_ident(column, quoted);

	/* hash_combine64(0, h) = h + 0x49a0f4dd15e5a8e3 mod 2^64, done in
	 * numeric because bigint arithmetic would overflow and SQL has no
	 * unsigned type; the inner "+ 2^64) % 2^64" makes the result
	 * non-negative since numeric % keeps the dividend's sign. */
	written = snprintf(expr, sizeof(expr),
	                   "((((%s(%s, %llu)::numeric + %llu) %% 18446744073709551616"
	                   " + 18446744073709551616) %% 18446744073709551616) %% %d)",
	                   function, quoted, (unsigned long long)HASH_PARTITION_SEED,
	                   (unsigned long long)HASH_COMBINE64_CONSTANT, buckets);
	if (written < 0 || (size_t)written >= sizeof(expr) || (size_t)written >= outlen)
		return false;
	memcpy(out, expr, (size_t)written + 1);
	return true;
}
