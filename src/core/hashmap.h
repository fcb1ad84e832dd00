/*
 * hashmap.h - a chained hash map from byte-string keys to pointers.
 *
 * Single-threaded: each worker owns its maps. Keys are copied in; values
 * are the caller's. Grows by doubling when the load passes 1.
 */
#ifndef SHARDGATE_HASHMAP_H
#define SHARDGATE_HASHMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct hashmap_entry {
	struct hashmap_entry *next;
	uint64_t hash;
	void *value;
	size_t key_len;
	uint8_t key[]; /* key_len bytes */
} hashmap_entry_t;

typedef struct {
	hashmap_entry_t **slots;
	size_t n_slots;
	size_t count;
} hashmap_t;

uint64_t hashmap_hash_bytes(const void *key, size_t len);

bool hashmap_init(hashmap_t *map, size_t initial_slots);
void hashmap_destroy(hashmap_t *map);
void *hashmap_get(const hashmap_t *map, const void *key, size_t len);
/* Inserts or replaces; returns false when out of memory. */
bool hashmap_put(hashmap_t *map, const void *key, size_t len, void *value);
/* Removes the key; returns its value or NULL. `key` may point into the
 * entry being removed (it is not read after the entry is freed). */
void *hashmap_remove(hashmap_t *map, const void *key, size_t len);

/* Calls fn for every entry; fn must not modify the map. */
void hashmap_foreach(const hashmap_t *map, void (*fn)(const void *key, size_t len, void *value,
						    void *arg),
		     void *arg);

#endif
