/*
 * test_core.c - Check suite for src/core/buf.c and src/core/hashmap.c.
 */
#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/hashmap.h"

/* buf.c's private constants, as the tests rely on them. */
#define TEST_BUF_MIN_CAP  512
#define TEST_BUF_KEEP_CAP (64 * 1024)

/* ---- buf_t ---- */

/* Fills out[0..n) with a pattern that shows where a byte came from. */
static void fill_pattern(uint8_t *out, size_t n, size_t seed)
{
	for (size_t i = 0; i < n; i++)
		out[i] = (uint8_t)((seed + i) * 31u + 7u);
}

START_TEST(test_buf_zero_initialized_is_empty)
{
	buf_t b = {0};

	ck_assert_uint_eq(buf_avail(&b), 0);
	ck_assert(buf_reserve(&b, 0));
	ck_assert(buf_append(&b, NULL, 0));
	ck_assert_uint_eq(buf_avail(&b), 0);
	buf_compact(&b);
	buf_free(&b);
	buf_free(&b); /* freeing twice is harmless */
	ck_assert_ptr_null(b.data);
}
END_TEST

START_TEST(test_buf_reserve_makes_room)
{
	buf_t b = {0};

	ck_assert(buf_reserve(&b, 1));
	ck_assert_ptr_nonnull(b.data);
	ck_assert_uint_eq(b.cap, TEST_BUF_MIN_CAP);
	ck_assert_uint_eq(b.len, 0);

	/* Room that is already there costs nothing. */
	uint8_t *data = b.data;
	ck_assert(buf_reserve(&b, TEST_BUF_MIN_CAP));
	ck_assert_ptr_eq(b.data, data);
	ck_assert_uint_eq(b.cap, TEST_BUF_MIN_CAP);

	/* Growing keeps what is held and leaves at least `extra` free. */
	uint8_t held[300];
	fill_pattern(held, sizeof(held), 1);
	ck_assert(buf_append(&b, held, sizeof(held)));
	ck_assert(buf_reserve(&b, 5000));
	ck_assert_uint_ge(b.cap - b.len, 5000);
	ck_assert_uint_eq(buf_avail(&b), sizeof(held));
	ck_assert(memcmp(buf_head(&b), held, sizeof(held)) == 0);
	buf_free(&b);
}
END_TEST

START_TEST(test_buf_reserve_impossible_size_fails_untouched)
{
	buf_t b = {0};
	uint8_t held[10];

	fill_pattern(held, sizeof(held), 2);
	ck_assert(buf_append(&b, held, sizeof(held)));
	buf_t before = b;
	ck_assert(!buf_reserve(&b, SIZE_MAX));          /* len + extra overflows */
	ck_assert(!buf_reserve(&b, SIZE_MAX - 20));     /* capacity doubling overflows */
	ck_assert(!buf_append(&b, held, SIZE_MAX - 5)); /* refused before reading */
	ck_assert_ptr_eq(b.data, before.data);
	ck_assert_uint_eq(b.cap, before.cap);
	ck_assert_uint_eq(b.len, before.len);
	ck_assert_uint_eq(b.off, before.off);
	ck_assert(memcmp(buf_head(&b), held, sizeof(held)) == 0);

	buf_t empty = {0};
	ck_assert(!buf_reserve(&empty, SIZE_MAX));
	ck_assert_ptr_null(empty.data);
	ck_assert_uint_eq(empty.cap, 0);
	buf_free(&b);
}
END_TEST

START_TEST(test_buf_append_across_growth)
{
	enum { TOTAL = 100000, CHUNK = 777 };
	static uint8_t want[TOTAL];
	buf_t b = {0};

	fill_pattern(want, TOTAL, 3);
	for (size_t at = 0; at < TOTAL; at += CHUNK) {
		size_t n = TOTAL - at < CHUNK ? TOTAL - at : CHUNK;
		ck_assert(buf_append(&b, want + at, n));
		ck_assert_uint_eq(buf_avail(&b), at + n);
	}
	ck_assert(memcmp(buf_head(&b), want, TOTAL) == 0);
	ck_assert_uint_ge(b.cap, TOTAL);
	/* Doubling from the minimum keeps the capacity a power of two. */
	ck_assert_uint_eq(b.cap & (b.cap - 1), 0);
	buf_free(&b);
}
END_TEST

START_TEST(test_buf_consume)
{
	buf_t b = {0};
	uint8_t held[100];

	fill_pattern(held, sizeof(held), 4);
	ck_assert(buf_append(&b, held, sizeof(held)));
	buf_consume(&b, 0);
	ck_assert_uint_eq(buf_avail(&b), 100);
	buf_consume(&b, 30);
	ck_assert_uint_eq(buf_avail(&b), 70);
	ck_assert(memcmp(buf_head(&b), held + 30, 70) == 0);
	/* Appending after a partial consume keeps the order. */
	ck_assert(buf_append(&b, "xyz", 3));
	ck_assert_uint_eq(buf_avail(&b), 73);
	ck_assert(memcmp(buf_head(&b) + 70, "xyz", 3) == 0);
	/* Consuming everything rewinds to the start of the storage. */
	buf_consume(&b, 73);
	ck_assert_uint_eq(buf_avail(&b), 0);
	ck_assert_uint_eq(b.off, 0);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_ptr_nonnull(b.data);
	buf_free(&b);
}
END_TEST

START_TEST(test_buf_reserve_reuses_consumed_space)
{
	buf_t b = {0};
	uint8_t held[TEST_BUF_MIN_CAP];

	fill_pattern(held, sizeof(held), 5);
	ck_assert(buf_append(&b, held, sizeof(held)));
	ck_assert_uint_eq(b.cap, TEST_BUF_MIN_CAP);
	buf_consume(&b, 500);
	ck_assert(buf_reserve(&b, 400));
	/* The consumed 500 bytes were enough: no growth, the rest moved up. */
	ck_assert_uint_eq(b.cap, TEST_BUF_MIN_CAP);
	ck_assert_uint_eq(b.off, 0);
	ck_assert_uint_eq(buf_avail(&b), 12);
	ck_assert(memcmp(buf_head(&b), held + 500, 12) == 0);
	buf_free(&b);
}
END_TEST

START_TEST(test_buf_compact_moves_unconsumed_to_front)
{
	buf_t b = {0};
	uint8_t held[200];

	fill_pattern(held, sizeof(held), 6);
	ck_assert(buf_append(&b, held, sizeof(held)));
	buf_consume(&b, 150);
	uint8_t *data = b.data;
	buf_compact(&b);
	ck_assert_ptr_eq(b.data, data);
	ck_assert_uint_eq(b.off, 0);
	ck_assert_uint_eq(b.len, 50);
	ck_assert(memcmp(buf_head(&b), held + 150, 50) == 0);
	buf_free(&b);
}
END_TEST

START_TEST(test_buf_compact_keeps_small_empty_storage)
{
	buf_t b = {0};

	/* Exactly the keep limit is kept. */
	ck_assert(buf_reserve(&b, TEST_BUF_KEEP_CAP));
	ck_assert_uint_eq(b.cap, TEST_BUF_KEEP_CAP);
	ck_assert(buf_append(&b, "abc", 3));
	buf_consume(&b, 3);
	uint8_t *data = b.data;
	buf_compact(&b);
	ck_assert_ptr_eq(b.data, data);
	ck_assert_uint_eq(b.cap, TEST_BUF_KEEP_CAP);
	ck_assert_uint_eq(buf_avail(&b), 0);
	buf_free(&b);
}
END_TEST

START_TEST(test_buf_compact_frees_large_empty_storage)
{
	buf_t b = {0};
	static uint8_t big[TEST_BUF_KEEP_CAP + 1];

	fill_pattern(big, sizeof(big), 7);
	ck_assert(buf_append(&b, big, sizeof(big)));
	ck_assert_uint_gt(b.cap, TEST_BUF_KEEP_CAP);

	/* Not empty: nothing is freed. */
	buf_consume(&b, 1);
	buf_compact(&b);
	ck_assert_ptr_nonnull(b.data);
	ck_assert_uint_eq(buf_avail(&b), sizeof(big) - 1);

	buf_consume(&b, sizeof(big) - 1);
	buf_compact(&b);
	ck_assert_ptr_null(b.data);
	ck_assert_uint_eq(b.cap, 0);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_uint_eq(b.off, 0);

	/* And the buffer is usable again. */
	ck_assert(buf_append(&b, "again", 5));
	ck_assert(memcmp(buf_head(&b), "again", 5) == 0);
	buf_free(&b);
}
END_TEST

START_TEST(test_buf_put_big_endian)
{
	const uint8_t want[] = {
	    0xab,                   /* u8 */
	    0x12, 0x34,             /* u16 */
	    0xfe, 0xdc,             /* u16 with the sign bit */
	    0x01, 0x02, 0x03, 0x04, /* u32 */
	    0x80, 0x00, 0x00, 0x00, /* u32 with the sign bit */
	    0xff, 0xff, 0xff, 0xff, /* u32 max */
	    'h',  'i',  0x00,       /* cstr */
	    0x00,                   /* empty cstr */
	    0x09, 0x08,             /* bytes */
	};
	buf_t b = {0};

	ck_assert(buf_reserve(&b, sizeof(want)));
	buf_put_u8(&b, 0xab);
	buf_put_u16(&b, 0x1234);
	buf_put_u16(&b, 0xfedc);
	buf_put_u32(&b, 0x01020304u);
	buf_put_u32(&b, 0x80000000u);
	buf_put_u32(&b, 0xffffffffu);
	buf_put_cstr(&b, "hi");
	buf_put_cstr(&b, "");
	buf_put_bytes(&b, "\x09\x08", 2);
	buf_put_bytes(&b, NULL, 0);
	ck_assert_uint_eq(buf_avail(&b), sizeof(want));
	for (size_t i = 0; i < sizeof(want); i++)
		ck_assert_msg(buf_head(&b)[i] == want[i], "byte %zu: expected 0x%02x, got 0x%02x",
		              i, want[i], buf_head(&b)[i]);
	buf_free(&b);
}
END_TEST

START_TEST(test_buf_get_set_big_endian)
{
	const uint8_t bytes[] = {0x12, 0x34, 0xfe, 0xdc, 0x80, 0x00, 0x00, 0x01, 0xff, 0xff};
	uint8_t out[4];

	ck_assert_uint_eq(buf_get_u16(bytes), 0x1234);
	ck_assert_uint_eq(buf_get_u16(bytes + 2), 0xfedc);
	ck_assert_uint_eq(buf_get_u16(bytes + 8), 0xffff);
	ck_assert_uint_eq(buf_get_u32(bytes), 0x1234fedcu);
	ck_assert_uint_eq(buf_get_u32(bytes + 4), 0x80000001u);
	ck_assert_uint_eq(buf_get_u32(bytes + 6), 0x0001ffffu);

	const uint32_t values[] = {0, 1, 0x01020304u, 0x80000000u, 0xffffffffu};
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		buf_set_u32(out, values[i]);
		ck_assert_uint_eq(out[0], values[i] >> 24);
		ck_assert_uint_eq(out[3], values[i] & 0xff);
		ck_assert_uint_eq(buf_get_u32(out), values[i]);
	}
}
END_TEST

/* ---- hashmap ---- */

#define VALUE(i) ((void *)(uintptr_t)((i) + 1))

static size_t key_of(char *out, size_t cap, int i)
{
	int n = snprintf(out, cap, "key-%d", i);
	ck_assert(n > 0 && (size_t)n < cap);
	return (size_t)n;
}

START_TEST(test_hashmap_hash_is_fnv1a_64)
{
	/* Reference values of 64-bit FNV-1a (Fowler/Noll/Vo test vectors). */
	ck_assert_uint_eq(hashmap_hash_bytes("", 0), UINT64_C(0xcbf29ce484222325));
	ck_assert_uint_eq(hashmap_hash_bytes("a", 1), UINT64_C(0xaf63dc4c8601ec8c));
	ck_assert_uint_eq(hashmap_hash_bytes("foobar", 6), UINT64_C(0x85944171f73967e8));
	ck_assert_uint_eq(hashmap_hash_bytes("a\0b", 3), UINT64_C(0xe5d29919042666b2));
}
END_TEST

START_TEST(test_hashmap_init_rounds_to_power_of_two)
{
	hashmap_t map;

	ck_assert(hashmap_init(&map, 0));
	ck_assert_uint_eq(map.n_slots, 8);
	ck_assert_uint_eq(map.count, 0);
	hashmap_destroy(&map);
	ck_assert(hashmap_init(&map, 100));
	ck_assert_uint_eq(map.n_slots, 128);
	hashmap_destroy(&map);
	ck_assert(hashmap_init(&map, 128));
	ck_assert_uint_eq(map.n_slots, 128);
	hashmap_destroy(&map);
	ck_assert_ptr_null(map.slots);
	ck_assert_uint_eq(map.n_slots, 0);
}
END_TEST

START_TEST(test_hashmap_put_get_replace_remove)
{
	hashmap_t map;
	int a = 1, b = 2, c = 3;

	ck_assert(hashmap_init(&map, 8));
	ck_assert_ptr_null(hashmap_get(&map, "alpha", 5));
	ck_assert(hashmap_put(&map, "alpha", 5, &a));
	ck_assert(hashmap_put(&map, "beta", 4, &b));
	ck_assert_uint_eq(map.count, 2);
	ck_assert_ptr_eq(hashmap_get(&map, "alpha", 5), &a);
	ck_assert_ptr_eq(hashmap_get(&map, "beta", 4), &b);

	/* Replacing keeps one entry. */
	ck_assert(hashmap_put(&map, "alpha", 5, &c));
	ck_assert_uint_eq(map.count, 2);
	ck_assert_ptr_eq(hashmap_get(&map, "alpha", 5), &c);

	ck_assert_ptr_eq(hashmap_remove(&map, "alpha", 5), &c);
	ck_assert_uint_eq(map.count, 1);
	ck_assert_ptr_null(hashmap_get(&map, "alpha", 5));
	ck_assert_ptr_null(hashmap_remove(&map, "alpha", 5));
	ck_assert_ptr_null(hashmap_remove(&map, "gamma", 5));
	ck_assert_uint_eq(map.count, 1);
	ck_assert_ptr_eq(hashmap_get(&map, "beta", 4), &b);

	/* A removed key can come back. */
	ck_assert(hashmap_put(&map, "alpha", 5, &a));
	ck_assert_ptr_eq(hashmap_get(&map, "alpha", 5), &a);
	ck_assert_uint_eq(map.count, 2);
	hashmap_destroy(&map);
}
END_TEST

START_TEST(test_hashmap_zero_initialized)
{
	hashmap_t map = {0};
	int a = 1;

	ck_assert_ptr_null(hashmap_get(&map, "k", 1));
	ck_assert_ptr_null(hashmap_remove(&map, "k", 1));
	hashmap_destroy(&map);
	/* The first put allocates the slots. */
	ck_assert(hashmap_put(&map, "k", 1, &a));
	ck_assert_ptr_eq(hashmap_get(&map, "k", 1), &a);
	ck_assert_uint_eq(map.count, 1);
	hashmap_destroy(&map);
}
END_TEST

START_TEST(test_hashmap_ten_thousand_keys)
{
	enum { N = 10000 };
	hashmap_t map;
	char key[32];

	ck_assert(hashmap_init(&map, 8));
	for (int i = 0; i < N; i++) {
		size_t len = key_of(key, sizeof(key), i);
		ck_assert(hashmap_put(&map, key, len, VALUE(i)));
		/* The load stays at most one entry per slot. */
		ck_assert_uint_le(map.count, map.n_slots);
	}
	ck_assert_uint_eq(map.count, N);
	ck_assert_uint_ge(map.n_slots, N);
	ck_assert_uint_eq(map.n_slots & (map.n_slots - 1), 0);
	for (int i = 0; i < N; i++) {
		size_t len = key_of(key, sizeof(key), i);
		ck_assert_msg(hashmap_get(&map, key, len) == VALUE(i), "%s: expected %d", key,
		              i + 1);
	}

	/* Replace every third, remove the odd ones. */
	for (int i = 0; i < N; i += 3) {
		size_t len = key_of(key, sizeof(key), i);
		ck_assert(hashmap_put(&map, key, len, VALUE(i + N)));
	}
	ck_assert_uint_eq(map.count, N);
	for (int i = 1; i < N; i += 2) {
		size_t len = key_of(key, sizeof(key), i);
		void *want = i % 3 == 0 ? VALUE(i + N) : VALUE(i);
		ck_assert_msg(hashmap_remove(&map, key, len) == want, "remove %s", key);
	}
	ck_assert_uint_eq(map.count, N / 2);
	for (int i = 0; i < N; i++) {
		size_t len = key_of(key, sizeof(key), i);
		void *want = i % 2 ? NULL : i % 3 == 0 ? VALUE(i + N) : VALUE(i);
		ck_assert_msg(hashmap_get(&map, key, len) == want, "%s after removals", key);
	}
	hashmap_destroy(&map);
}
END_TEST

START_TEST(test_hashmap_binary_keys)
{
	/* Keys that differ only after a NUL, or only in length. */
	static const struct {
		const char *bytes;
		size_t len;
	} keys[] = {
	    {"a", 1},   {"a\0", 2}, {"a\0b", 3}, {"a\0c", 3},
	    {"\0a", 2}, {"\0", 1},  {"", 0},     {"ab", 2},
	};
	enum { N_KEYS = sizeof(keys) / sizeof(keys[0]) };
	hashmap_t map;

	ck_assert(hashmap_init(&map, 8));
	for (size_t i = 0; i < N_KEYS; i++)
		ck_assert(hashmap_put(&map, keys[i].bytes, keys[i].len, VALUE(i)));
	ck_assert_uint_eq(map.count, N_KEYS);
	for (size_t i = 0; i < N_KEYS; i++)
		ck_assert_msg(hashmap_get(&map, keys[i].bytes, keys[i].len) == VALUE(i),
		              "key %zu (%zu bytes): expected its own value", i, keys[i].len);
	ck_assert_ptr_null(hashmap_get(&map, "a\0d", 3));
	ck_assert_ptr_null(hashmap_get(&map, "\0\0", 2));

	ck_assert(hashmap_remove(&map, "a\0b", 3) == VALUE(2));
	ck_assert(hashmap_get(&map, "a\0c", 3) == VALUE(3));
	ck_assert(hashmap_get(&map, "a\0", 2) == VALUE(1));
	hashmap_destroy(&map);
}
END_TEST

/*
 * An empty key may come as (NULL, 0), like any empty byte string.
 *
 * BUG (fails under UBSan, passes without it): hashmap_put() calls
 * memcpy(e->key, NULL, 0) and find_slot() calls memcmp(e->key, NULL, 0),
 * both undefined for a NULL pointer even with length 0 (C11 7.24.1p2).
 * Proposed fix in hashmap.c:
 *	hashmap_put():  if (len)
 *				memcpy(e->key, key, len);
 *	find_slot():    ... && e->key_len == len && (len == 0 || memcmp(e->key, key, len) == 0)
 */
START_TEST(test_hashmap_empty_key_as_null)
{
	hashmap_t map;
	int a = 1, b = 2;

	ck_assert(hashmap_init(&map, 8));
	ck_assert(hashmap_put(&map, NULL, 0, &a));
	ck_assert(hashmap_put(&map, "x", 1, &b));
	ck_assert_ptr_eq(hashmap_get(&map, NULL, 0), &a);
	ck_assert_ptr_eq(hashmap_get(&map, "", 0), &a);
	ck_assert_ptr_eq(hashmap_remove(&map, NULL, 0), &a);
	ck_assert_ptr_null(hashmap_get(&map, NULL, 0));
	ck_assert_uint_eq(map.count, 1);
	hashmap_destroy(&map);
}
END_TEST

START_TEST(test_hashmap_copies_keys)
{
	hashmap_t map;
	char key[8] = "conn-1";
	int a = 1;

	ck_assert(hashmap_init(&map, 8));
	ck_assert(hashmap_put(&map, key, 6, &a));
	key[5] = '2';
	ck_assert_ptr_null(hashmap_get(&map, key, 6));
	ck_assert_ptr_eq(hashmap_get(&map, "conn-1", 6), &a);
	hashmap_destroy(&map);
}
END_TEST

typedef struct {
	int visits[1000];
	size_t calls;
	bool bad_key;
} visit_log_t;

static void record_visit(const void *key, size_t len, void *value, void *arg)
{
	visit_log_t *log = arg;
	int i = (int)((uintptr_t)value - 1);
	char want[32];
	size_t want_len = key_of(want, sizeof(want), i);

	log->calls++;
	if (i < 0 || i >= 1000 || len != want_len || memcmp(key, want, len) != 0) {
		log->bad_key = true;
		return;
	}
	log->visits[i]++;
}

START_TEST(test_hashmap_foreach_visits_each_once)
{
	hashmap_t map;
	char key[32];
	static visit_log_t log;

	ck_assert(hashmap_init(&map, 8));
	for (int i = 0; i < 1000; i++) {
		size_t len = key_of(key, sizeof(key), i);
		ck_assert(hashmap_put(&map, key, len, VALUE(i)));
	}
	memset(&log, 0, sizeof(log));
	hashmap_foreach(&map, record_visit, &log);
	ck_assert(!log.bad_key);
	ck_assert_uint_eq(log.calls, 1000);
	for (int i = 0; i < 1000; i++)
		ck_assert_msg(log.visits[i] == 1, "key-%d: expected 1 visit, got %d", i,
		              log.visits[i]);

	/* Removed keys are not visited. */
	for (int i = 0; i < 1000; i += 4) {
		size_t len = key_of(key, sizeof(key), i);
		ck_assert(hashmap_remove(&map, key, len) == VALUE(i));
	}
	memset(&log, 0, sizeof(log));
	hashmap_foreach(&map, record_visit, &log);
	ck_assert(!log.bad_key);
	ck_assert_uint_eq(log.calls, 750);
	for (int i = 0; i < 1000; i++)
		ck_assert_msg(log.visits[i] == (i % 4 ? 1 : 0),
		              "key-%d: expected %d visits, got %d", i, i % 4 ? 1 : 0,
		              log.visits[i]);

	/* An empty map and a never-initialized map visit nothing. */
	hashmap_t never = {0};
	memset(&log, 0, sizeof(log));
	hashmap_foreach(&never, record_visit, &log);
	ck_assert_uint_eq(log.calls, 0);
	hashmap_destroy(&map);
}
END_TEST

static Suite *core_suite(void)
{
	Suite *suite = suite_create("core");
	TCase *buf = tcase_create("buf");
	TCase *hashmap = tcase_create("hashmap");

	tcase_add_test(buf, test_buf_zero_initialized_is_empty);
	tcase_add_test(buf, test_buf_reserve_makes_room);
	tcase_add_test(buf, test_buf_reserve_impossible_size_fails_untouched);
	tcase_add_test(buf, test_buf_append_across_growth);
	tcase_add_test(buf, test_buf_consume);
	tcase_add_test(buf, test_buf_reserve_reuses_consumed_space);
	tcase_add_test(buf, test_buf_compact_moves_unconsumed_to_front);
	tcase_add_test(buf, test_buf_compact_keeps_small_empty_storage);
	tcase_add_test(buf, test_buf_compact_frees_large_empty_storage);
	tcase_add_test(buf, test_buf_put_big_endian);
	tcase_add_test(buf, test_buf_get_set_big_endian);
	suite_add_tcase(suite, buf);

	tcase_add_test(hashmap, test_hashmap_hash_is_fnv1a_64);
	tcase_add_test(hashmap, test_hashmap_init_rounds_to_power_of_two);
	tcase_add_test(hashmap, test_hashmap_put_get_replace_remove);
	tcase_add_test(hashmap, test_hashmap_zero_initialized);
	tcase_add_test(hashmap, test_hashmap_ten_thousand_keys);
	tcase_add_test(hashmap, test_hashmap_binary_keys);
	tcase_add_test(hashmap, test_hashmap_copies_keys);
	tcase_add_test(hashmap, test_hashmap_empty_key_as_null);
	tcase_add_test(hashmap, test_hashmap_foreach_visits_each_once);
	suite_add_tcase(suite, hashmap);
	return suite;
}

int main(void)
{
	SRunner *runner = srunner_create(core_suite());
	int failed;

	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
