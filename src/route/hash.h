/*
 * hash.h - PostgreSQL-compatible hash partitioning.
 *
 * A key k is in bucket r exactly when PostgreSQL 15's PARTITION BY HASH (k)
 * with MODULUS buckets puts it in the partition with REMAINDER r:
 *
 *   partition_hash = hash_combine64(0, H(k, HASH_PARTITION_SEED))
 *   bucket         = partition_hash % buckets
 *
 * with H the type's extended hash support function (compute_partition_hash_value
 * in src/backend/partitioning/partbounds.c). hash_combine64(0, h) reduces to
 * h + 0x49a0f4dd15e5a8e3 (mod 2^64).
 *
 * Bytes are read as a little-endian server reads them (x86-64, aarch64), on any
 * host: a big-endian PostgreSQL server hashes text and uuid differently.
 * Text is hashed as the bytes the server stores (its encoding; shardgate
 * assumes client_encoding = server_encoding) under a deterministic collation;
 * nondeterministic ICU collations hash differently and are not supported.
 *
 * SQL forms of the bucket, proved against PARTITION BY HASH by
 * tests/integration/test_hash_compat.c and accepted in a publication's row
 * filter (built-in immutable functions only); hash_sql_bucket_expr() builds them:
 *
 *   smallint:        hashint2extended(col, 8816678312871386365)
 *   integer:         hashint4extended(col, 8816678312871386365)
 *   bigint:          hashint8extended(col, 8816678312871386365)
 *   text, varchar:   hashtextextended(col, 8816678312871386365)
 *   uuid:            uuid_hash_extended(col, 8816678312871386365)
 *
 * each H(col) (a signed bigint) turned into the bucket with the unsigned 64-bit
 * wrap-around done in numeric:
 *
 *   (((H(col)::numeric + 5305509591434766563) % 18446744073709551616
 *     + 18446744073709551616) % 18446744073709551616) % buckets
 *
 * (8816678312871386365 = 0x7A5B22367996DCFD, 5305509591434766563 =
 * 0x49a0f4dd15e5a8e3.)
 */
#ifndef SHARDGATE_ROUTE_HASH_H
#define SHARDGATE_ROUTE_HASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

/* PostgreSQL's HASH_PARTITION_SEED (src/include/catalog/partition.h). */
#define HASH_PARTITION_SEED UINT64_C(0x7A5B22367996DCFD)

/* Partition hash of one key column (compute_partition_hash_value) for each
 * supported type. hash_int2/int4/int8 agree for values that fit all three. */
uint64_t hash_int2(int16_t value);
uint64_t hash_int4(int32_t value);
uint64_t hash_int8(int64_t value);
uint64_t hash_text(const char *bytes, size_t len);
uint64_t hash_uuid(const uint8_t bytes[16]);

/* partition_hash % buckets, the partition's REMAINDER; -1 when buckets < 1. */
int hash_bucket(uint64_t partition_hash, int buckets);

/* Parse an integer as PostgreSQL 15's int8in does: optional leading and
 * trailing whitespace, optional sign, decimal digits. False on bad syntax or
 * int64 overflow; *out untouched then. */
bool hash_parse_int(const char *text, size_t len, int64_t *out);

/* Parse a uuid as uuid_in does: 32 hex digits, either case, an optional '-'
 * after any group of four, optionally in braces. False otherwise. */
bool hash_parse_uuid(const char *text, size_t len, uint8_t out[16]);

/* Bucket of a key value sent in text format (simple query literal, Bind
 * text parameter, COPY field). Integer keys are range-checked against the
 * column's type. False (and *bucket_out untouched) when the value would not
 * be accepted by PostgreSQL for that type, the type has no hash support here
 * (timestamp, timestamptz, date), or buckets < 1. */
bool hash_bucket_for_text_value(key_type_t type, const char *text, size_t len, int buckets,
                                int *bucket_out);

/* Same for a Bind parameter in binary format: integers as 2, 4 or 8 bytes
 * big-endian (any of these widths, range-checked against the key type, since
 * the hash depends only on the value), text/varchar as raw bytes, uuid as
 * 16 bytes. */
bool hash_bucket_for_binary_value(key_type_t type, const uint8_t *bytes, size_t len, int buckets,
                                  int *bucket_out);

/* Write into out the SQL expression (see above) giving the bucket of column
 * `column` of type `type`; `column` is a bare name and is quoted here as an
 * identifier. False (out untouched) when the type has no hash support,
 * buckets < 1, column is empty or longer than CONFIG_NAME_MAX, or the
 * expression does not fit in outlen bytes. */
bool hash_sql_bucket_expr(key_type_t type, const char *column, int buckets, char *out,
                          size_t outlen);

#endif
