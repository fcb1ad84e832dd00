/*
 * hashmap.c - chained hash map with FNV-1a hashing.
 */
#include "core/hashmap.h"

#include <stdlib.h>
#include <string.h>

/* FNV-1a, 64 bit: short keys (statement names, pool keys) dominate. */
uint64_t hashmap_hash_bytes(const void *key, size_t len)
{
	const uint8_t *p = key;
	uint64_t h = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

bool hashmap_init(hashmap_t *map, size_t initial_slots)
{
	size_t n = 8;
	while (n < initial_slots)
		n *= 2;
	map->slots = calloc(n, sizeof(*map->slots));
	if (!map->slots)
		return false;
	map->n_slots = n;
	map->count = 0;
	return true;
}

void hashmap_destroy(hashmap_t *map)
{
	for (size_t i = 0; i < map->n_slots; i++) {
		hashmap_entry_t *e = map->slots[i];
		while (e) {
			hashmap_entry_t *next = e->next;
			free(e);
			e = next;
		}
	}
	free(map->slots);
	map->slots = NULL;
	map->n_slots = map->count = 0;
}

static hashmap_entry_t **find_slot(const hashmap_t *map, const void *key, size_t len,
				   uint64_t hash)
{
	hashmap_entry_t **pe = &map->slots[hash & (map->n_slots - 1)];
	while (*pe) {
		hashmap_entry_t *e = *pe;
		if (e->hash == hash && e->key_len == len && (len == 0 || memcmp(e->key, key, len) == 0))
			return pe;
		pe = &e->next;
	}
	return pe;
}

void *hashmap_get(const hashmap_t *map, const void *key, size_t len)
{
	if (!map->slots)
		return NULL;
	hashmap_entry_t **pe = find_slot(map, key, len, hashmap_hash_bytes(key, len));
	return *pe ? (*pe)->value : NULL;
}

static void grow(hashmap_t *map)
{
	size_t n = map->n_slots * 2;
	hashmap_entry_t **slots = calloc(n, sizeof(*slots));
	if (!slots)
		return; /* keep working with longer chains */
	for (size_t i = 0; i < map->n_slots; i++) {
		hashmap_entry_t *e = map->slots[i];
		while (e) {
			hashmap_entry_t *next = e->next;
			size_t s = e->hash & (n - 1);
			e->next = slots[s];
			slots[s] = e;
			e = next;
		}
	}
	free(map->slots);
	map->slots = slots;
	map->n_slots = n;
}

bool hashmap_put(hashmap_t *map, const void *key, size_t len, void *value)
{
	if (!map->slots && !hashmap_init(map, 8))
		return false;
	uint64_t hash = hashmap_hash_bytes(key, len);
	hashmap_entry_t **pe = find_slot(map, key, len, hash);
	if (*pe) {
		(*pe)->value = value;
		return true;
	}
	hashmap_entry_t *e = malloc(sizeof(*e) + len);
	if (!e)
		return false;
	e->next = NULL;
	e->hash = hash;
	e->value = value;
	e->key_len = len;
	if (len)
		memcpy(e->key, key, len);
	*pe = e;
	if (++map->count > map->n_slots)
		grow(map);
	return true;
}

void *hashmap_remove(hashmap_t *map, const void *key, size_t len)
{
	if (!map->slots)
		return NULL;
	hashmap_entry_t **pe = find_slot(map, key, len, hashmap_hash_bytes(key, len));
	hashmap_entry_t *e = *pe;
	if (!e)
		return NULL;
	void *value = e->value;
	*pe = e->next;
	free(e);
	map->count--;
	return value;
}

void hashmap_foreach(const hashmap_t *map,
		     void (*fn)(const void *key, size_t len, void *value, void *arg), void *arg)
{
	for (size_t i = 0; i < map->n_slots; i++)
		for (hashmap_entry_t *e = map->slots[i]; e; e = e->next)
			fn(e->key, e->key_len, e->value, arg);
}
