/*
 * directory.c - cached lookups in the directory table.
 */
#include "route/directory.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/hashmap.h"
#include "core/log.h"
#include "route/pgconn.h"

typedef struct entry {
	struct entry *prev, *next; /* LRU, most recent first */
	int shard;
	int64_t expires_ms;
	size_t key_len;
	uint8_t key[]; /* table index (4 bytes) + key text */
} entry_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static hashmap_t map;
static bool map_ready;
static entry_t *lru_head, *lru_tail;
static atomic_uint round_robin;

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The cache key: the table index, then the key's bytes. */
static size_t make_key(uint8_t *out, size_t cap, int table, const char *key, size_t len)
{
	if (len + 4 > cap)
		return 0;
	memcpy(out, &table, 4);
	memcpy(out + 4, key, len);
	return len + 4;
}

static void lru_unlink(entry_t *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		lru_head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		lru_tail = e->prev;
	e->prev = e->next = NULL;
}

static void lru_push(entry_t *e)
{
	e->next = lru_head;
	e->prev = NULL;
	if (lru_head)
		lru_head->prev = e;
	lru_head = e;
	if (!lru_tail)
		lru_tail = e;
}

int directory_cached(const config_t *config, int table, const char *key, size_t len)
{
	(void)config;
	uint8_t k[512];
	size_t klen = make_key(k, sizeof(k), table, key, len);
	if (!klen)
		return -1;
	int shard = -1;
	pthread_mutex_lock(&lock);
	entry_t *e = map_ready ? hashmap_get(&map, k, klen) : NULL;
	if (e && e->expires_ms > now_ms()) {
		shard = e->shard;
		lru_unlink(e);
		lru_push(e);
	}
	pthread_mutex_unlock(&lock);
	return shard;
}

static void cache_put(int table, const char *key, size_t len, int shard)
{
	uint8_t k[512];
	size_t klen = make_key(k, sizeof(k), table, key, len);
	if (!klen)
		return;
	pthread_mutex_lock(&lock);
	if (!map_ready)
		map_ready = hashmap_init(&map, 1024);
	entry_t *e = map_ready ? hashmap_get(&map, k, klen) : NULL;
	if (!e && map_ready) {
		if (map.count >= DIRECTORY_CACHE_MAX && lru_tail) {
			entry_t *old = lru_tail;
			lru_unlink(old);
			hashmap_remove(&map, old->key, old->key_len);
			free(old);
		}
		e = malloc(sizeof(*e) + klen);
		if (e) {
			e->key_len = klen;
			memcpy(e->key, k, klen);
			e->prev = e->next = NULL;
			if (!hashmap_put(&map, k, klen, e)) {
				free(e);
				e = NULL;
			} else {
				lru_push(e);
			}
		}
	}
	if (e) {
		e->shard = shard;
		e->expires_ms = now_ms() + DIRECTORY_TTL_MS;
	}
	pthread_mutex_unlock(&lock);
}

static void free_entry(const void *key, size_t len, void *value, void *arg)
{
	(void)key;
	(void)len;
	(void)arg;
	free(value);
}

void directory_clear(void)
{
	pthread_mutex_lock(&lock);
	if (map_ready) {
		hashmap_foreach(&map, free_entry, NULL);
		hashmap_destroy(&map);
		map_ready = false;
	}
	lru_head = lru_tail = NULL;
	pthread_mutex_unlock(&lock);
}

void directory_thread_done(void)
{
	pgconn_thread_done();
}

/* The shard a new key gets by the table's policy; -1 on failure. */
static int assign_shard(const config_t *config, int table, PGconn *conn, char *err, size_t errlen)
{
	const cfg_table_t *t = &config->tables[table];
	switch (t->assign) {
	case ASSIGN_FIXED:
		return t->assign_shard;
	case ASSIGN_ROUND_ROBIN:
		return (int)(atomic_fetch_add(&round_robin, 1) % (unsigned)config->n_shards);
	case ASSIGN_LEAST_ROWS:
		break;
	}
	/* least_rows: the shard holding the fewest keys of this table. */
	char sql[512];
	snprintf(sql, sizeof(sql), "SELECT shard, count(*) FROM %s WHERE table_name = $1 GROUP BY shard",
		 t->directory_table);
	const char *params[1] = {t->name};
	PGresult *res = PQexecParams(conn, sql, 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(err, errlen, "directory: %s", PQresultErrorMessage(res));
		PQclear(res);
		return -1;
	}
	long long counts[CONFIG_MAX_SHARDS] = {0};
	for (int i = 0; i < PQntuples(res); i++) {
		int s = config_find_shard(config, PQgetvalue(res, i, 0));
		if (s >= 0)
			counts[s] = atoll(PQgetvalue(res, i, 1));
	}
	PQclear(res);
	int best = 0;
	for (int s = 1; s < config->n_shards; s++)
		if (counts[s] < counts[best])
			best = s;
	return best;
}

int directory_fetch(const config_t *config, const char *database, int table, const char *key,
		    size_t len, bool assign, char *err, size_t errlen)
{
	const cfg_table_t *t = &config->tables[table];
	PGconn *conn = pgconn_get(config, t->directory_shard, database, err, errlen);
	if (!conn)
		return -2;
	char *text = strndup(key, len);
	if (!text) {
		snprintf(err, errlen, "out of memory");
		return -2;
	}
	char sql[512];
	const char *params[3] = {t->name, text, NULL};
	int shard = -1;
	for (int attempt = 0; attempt < 2 && shard < 0; attempt++) {
		snprintf(sql, sizeof(sql), "SELECT shard FROM %s WHERE table_name = $1 AND key = $2",
			 t->directory_table);
		PGresult *res = PQexecParams(conn, sql, 2, NULL, params, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK) {
			snprintf(err, errlen, "directory: %s", PQresultErrorMessage(res));
			PQclear(res);
			free(text);
			pgconn_discard(conn);
			return -2;
		}
		if (PQntuples(res) == 1) {
			shard = config_find_shard(config, PQgetvalue(res, 0, 0));
			if (shard < 0) {
				snprintf(err, errlen,
					 "directory names shard \"%s\" for key %s of table %s, which "
					 "is not in the shard map",
					 PQgetvalue(res, 0, 0), text, t->name);
				PQclear(res);
				free(text);
				return -2;
			}
		}
		PQclear(res);
		if (shard >= 0 || !assign || attempt > 0)
			break;
		/* A new key: record the assignment before any row is written.
		 * A concurrent insert of the same key wins or loses here; the
		 * SELECT above then reads the one that won. */
		int chosen = -1;
		for (int i = 0; i < t->n_pins; i++)
			if (strcmp(t->pins[i].key, text) == 0)
				chosen = t->pins[i].shard; /* directory.pinned */
		if (chosen < 0)
			chosen = assign_shard(config, table, conn, err, errlen);
		if (chosen < 0) {
			free(text);
			return -2;
		}
		params[2] = config->shards[chosen].name;
		snprintf(sql, sizeof(sql),
			 "INSERT INTO %s (table_name, key, shard) VALUES ($1, $2, $3) "
			 "ON CONFLICT (table_name, key) DO NOTHING",
			 t->directory_table);
		res = PQexecParams(conn, sql, 3, NULL, params, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			snprintf(err, errlen, "directory: %s", PQresultErrorMessage(res));
			PQclear(res);
			free(text);
			return -2;
		}
		if (strcmp(PQcmdTuples(res), "1") == 0)
			log_info("directory_assigned", "\"table\":\"%s\",\"shard\":\"%s\"", t->name,
				 config->shards[chosen].name);
		PQclear(res);
		params[2] = NULL;
	}
	free(text);
	if (shard >= 0)
		cache_put(table, key, len, shard);
	return shard;
}
