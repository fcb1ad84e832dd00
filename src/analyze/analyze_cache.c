/*
 * analyze_cache.c - the per-worker cache from statement text to analysis.
 *
 * Single-threaded by design (each worker owns one analyzer_t), so no locks.
 * A chained hash table with a fixed power-of-two bucket count (the cache is
 * bounded, so it never grows) plus an intrusive LRU list. The hot path for a
 * cached statement is one hash over the text, one memcmp, and two pointer
 * moves to the LRU front.
 */
#include "analyze/analyze.h"
#include "analyze/analyze_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct cache_entry {
	struct cache_entry *bucket_next;
	struct cache_entry *lru_prev; /* towards the most recently used */
	struct cache_entry *lru_next; /* towards the least recently used */
	uint64_t hash;
	analysis_t *analysis; /* the cache's reference */
	size_t key_len;
	char key[]; /* key_len bytes: the exact statement text */
} cache_entry_t;

struct analyzer {
	cache_entry_t **buckets;
	size_t bucket_mask;
	cache_entry_t *lru_head; /* most recently used */
	cache_entry_t *lru_tail; /* evicted first */
	size_t max_entries;
	analysis_t *uncached; /* last over-size analysis, alive until the next get */
	analyzer_stats_t stats;
};

static uint64_t read_u64(const unsigned char *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 32;
	x *= UINT64_C(0xd6e8feb86659fd93);
	x ^= x >> 32;
	x *= UINT64_C(0xd6e8feb86659fd93);
	x ^= x >> 32;
	return x;
}

/* Eight bytes per step, four independent lanes: statement texts are often a
 * few hundred bytes, where byte-at-a-time FNV would dominate a hit. Not
 * seeded: the cache is bounded, so a crafted collision costs only time on
 * that worker's own chains, which stay as short as max_entries allows. */
static uint64_t hash_text(const char *text, size_t len)
{
	const unsigned char *p = (const unsigned char *)text;
	const uint64_t k = UINT64_C(0x9e3779b97f4a7c15);
	uint64_t h0 = len * k, h1 = UINT64_C(0x243f6a8885a308d3), h2 = UINT64_C(0x13198a2e03707344),
	         h3 = UINT64_C(0xa4093822299f31d0);
	size_t i = 0;
	for (; i + 32 <= len; i += 32) {
		h0 = (h0 ^ read_u64(p + i)) * k;
		h1 = (h1 ^ read_u64(p + i + 8)) * k;
		h2 = (h2 ^ read_u64(p + i + 16)) * k;
		h3 = (h3 ^ read_u64(p + i + 24)) * k;
		h0 ^= h0 >> 29;
		h1 ^= h1 >> 29;
		h2 ^= h2 >> 29;
		h3 ^= h3 >> 29;
	}
	for (; i + 8 <= len; i += 8)
		h0 = mix64(h0 ^ read_u64(p + i));
	uint64_t tail = 0;
	for (size_t j = 0; i + j < len; j++)
		tail |= (uint64_t)p[i + j] << (8 * j);
	h0 ^= tail;
	return mix64(h0 ^ mix64(h1) ^ (mix64(h2) >> 1) ^ (mix64(h3) << 1));
}

analyzer_t *analyzer_new(size_t max_entries)
{
	if (max_entries == 0)
		max_entries = 1;
	if (max_entries > (SIZE_MAX / 4) / sizeof(cache_entry_t *))
		return NULL;
	size_t n_buckets = 16;
	while (n_buckets < max_entries + max_entries / 2)
		n_buckets *= 2;
	analyzer_t *an = calloc(1, sizeof(*an));
	if (!an)
		return NULL;
	an->buckets = calloc(n_buckets, sizeof(*an->buckets));
	if (!an->buckets) {
		free(an);
		return NULL;
	}
	an->bucket_mask = n_buckets - 1;
	an->max_entries = max_entries;
	return an;
}

static void lru_unlink(analyzer_t *an, cache_entry_t *e)
{
	if (e->lru_prev)
		e->lru_prev->lru_next = e->lru_next;
	else
		an->lru_head = e->lru_next;
	if (e->lru_next)
		e->lru_next->lru_prev = e->lru_prev;
	else
		an->lru_tail = e->lru_prev;
	e->lru_prev = e->lru_next = NULL;
}

static void lru_push_front(analyzer_t *an, cache_entry_t *e)
{
	e->lru_prev = NULL;
	e->lru_next = an->lru_head;
	if (an->lru_head)
		an->lru_head->lru_prev = e;
	an->lru_head = e;
	if (!an->lru_tail)
		an->lru_tail = e;
}

static size_t entry_bytes(const cache_entry_t *e)
{
	return sizeof(*e) + e->key_len + e->analysis->alloc_bytes;
}

/* Drops the least recently used entry (the cache's reference to its analysis). */
static void evict_one(analyzer_t *an)
{
	cache_entry_t *victim = an->lru_tail;
	if (!victim)
		return;
	lru_unlink(an, victim);
	cache_entry_t **pe = &an->buckets[victim->hash & an->bucket_mask];
	while (*pe && *pe != victim)
		pe = &(*pe)->bucket_next;
	if (*pe)
		*pe = victim->bucket_next;
	an->stats.entries--;
	an->stats.bytes -= entry_bytes(victim);
	an->stats.evictions++;
	analyze_release(victim->analysis);
	free(victim);
}

const analysis_t *analyzer_lookup(analyzer_t *an, const char *sql, size_t len)
{
	if (len > ANALYZE_MAX_CACHED_LEN)
		return NULL;
	uint64_t hash = hash_text(sql, len);
	for (cache_entry_t *e = an->buckets[hash & an->bucket_mask]; e; e = e->bucket_next) {
		if (e->hash == hash && e->key_len == len && memcmp(e->key, sql, len) == 0) {
			an->stats.hits++;
			if (an->lru_head != e) {
				lru_unlink(an, e);
				lru_push_front(an, e);
			}
			return e->analysis;
		}
	}
	return NULL;
}

const analysis_t *analyzer_get(analyzer_t *an, const char *sql, size_t len)
{
	if (an->uncached) {
		analyze_release(an->uncached);
		an->uncached = NULL;
	}
	if (len > ANALYZE_MAX_CACHED_LEN) {
		an->stats.uncacheable++;
		an->uncached = analyze_new_analysis(sql, len);
		return an->uncached;
	}

	uint64_t hash = hash_text(sql, len);
	cache_entry_t **bucket = &an->buckets[hash & an->bucket_mask];
	for (cache_entry_t *e = *bucket; e; e = e->bucket_next) {
		if (e->hash == hash && e->key_len == len && memcmp(e->key, sql, len) == 0) {
			an->stats.hits++;
			if (an->lru_head != e) {
				lru_unlink(an, e);
				lru_push_front(an, e);
			}
			return e->analysis;
		}
	}

	an->stats.misses++;
	analysis_t *a = analyze_new_analysis(sql, len);
	if (!a)
		return NULL;
	cache_entry_t *e = malloc(sizeof(*e) + len);
	if (!e) {
		/* Still answer this call; the caller's borrow lasts until the next get. */
		an->uncached = a;
		return a;
	}
	if (an->stats.entries >= an->max_entries)
		evict_one(an);
	e->hash = hash;
	e->analysis = a;
	e->key_len = len;
	memcpy(e->key, sql, len);
	e->bucket_next = *bucket;
	*bucket = e;
	lru_push_front(an, e);
	an->stats.entries++;
	an->stats.bytes += entry_bytes(e);
	return a;
}

void analyzer_stats(const analyzer_t *an, analyzer_stats_t *out)
{
	*out = an->stats;
}

void analyzer_free(analyzer_t *an)
{
	if (!an)
		return;
	cache_entry_t *e = an->lru_head;
	while (e) {
		cache_entry_t *next = e->lru_next;
		analyze_release(e->analysis);
		free(e);
		e = next;
	}
	analyze_release(an->uncached);
	free(an->buckets);
	free(an);
}
