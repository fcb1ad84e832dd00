/*
 * pgconn.c - a few cached blocking connections per thread.
 */
#include "route/pgconn.h"

#include <stdio.h>
#include <string.h>

#define PGCONN_PER_THREAD 8

typedef struct {
	PGconn *conn;
	int shard;
	char database[CONFIG_NAME_MAX + 1];
} slot_t;

static __thread slot_t slots[PGCONN_PER_THREAD];
static __thread int next_victim;

/* libpq's sslmode for backend.tls: the same names, the same meaning. */
static const char *sslmode_of(backend_tls_t tls)
{
	switch (tls) {
	case BACKEND_TLS_DISABLE:
		return "disable";
	case BACKEND_TLS_PREFER:
		return "prefer";
	case BACKEND_TLS_REQUIRE:
		return "require";
	case BACKEND_TLS_VERIFY_CA:
		return "verify-ca";
	case BACKEND_TLS_VERIFY_FULL:
		return "verify-full";
	}
	return "prefer";
}

void pgconn_message(char *out, size_t outlen, const char *prefix, const char *message)
{
	snprintf(out, outlen, "%s%s", prefix, message ? message : "");
	size_t n = strlen(out);
	while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' '))
		out[--n] = '\0';
}

PGconn *pgconn_get(const config_t *config, int shard, const char *database, char *err,
		   size_t errlen)
{
	slot_t *free_slot = NULL;
	for (int i = 0; i < PGCONN_PER_THREAD; i++) {
		slot_t *s = &slots[i];
		if (!s->conn) {
			free_slot = free_slot ? free_slot : s;
			continue;
		}
		if (s->shard != shard || strcmp(s->database, database) != 0)
			continue;
		if (PQstatus(s->conn) == CONNECTION_OK)
			return s->conn;
		PQfinish(s->conn);
		s->conn = NULL;
		free_slot = s;
		break;
	}
	if (!free_slot) {
		free_slot = &slots[next_victim];
		next_victim = (next_victim + 1) % PGCONN_PER_THREAD;
		PQfinish(free_slot->conn);
		free_slot->conn = NULL;
	}
	const cfg_shard_t *sh = &config->shards[shard];
	char port[16], timeout[16], options[64];
	snprintf(port, sizeof(port), "%d", sh->primary.address.port);
	snprintf(timeout, sizeof(timeout), "%lld",
		 (long long)((config->timeouts.connect_ms + 999) / 1000));
	snprintf(options, sizeof(options), "-c statement_timeout=%lld",
		 (long long)(config->timeouts.query_ms > 0 ? config->timeouts.query_ms : 30000));
	/* As the proxy's own server connections (net/tls.c): sslrootcert only
	 * for verify-*, since with a root certificate libpq verifies even under
	 * require. */
	bool verify = config->backend.tls == BACKEND_TLS_VERIFY_CA ||
		      config->backend.tls == BACKEND_TLS_VERIFY_FULL;
	const char *keys[] = {"host",	"port",		   "user",    "password",
			      "dbname", "connect_timeout", "options", "application_name",
			      "sslmode", verify ? "sslrootcert" : NULL, NULL};
	const char *values[] = {sh->primary.address.host,
				port,
				config->backend.user[0] ? config->backend.user : "postgres",
				config->backend.password ? config->backend.password : "",
				database,
				timeout,
				options,
				"shardgate",
				sslmode_of(config->backend.tls),
				verify ? config->backend.ca_file : NULL,
				NULL};
	PGconn *conn = PQconnectdbParams(keys, values, 0);
	if (PQstatus(conn) != CONNECTION_OK) {
		char prefix[96];
		snprintf(prefix, sizeof(prefix), "shard %s: ", sh->name);
		pgconn_message(err, errlen, prefix, PQerrorMessage(conn));
		PQfinish(conn);
		return NULL;
	}
	free_slot->conn = conn;
	free_slot->shard = shard;
	snprintf(free_slot->database, sizeof(free_slot->database), "%s", database);
	return conn;
}

void pgconn_discard(PGconn *conn)
{
	for (int i = 0; i < PGCONN_PER_THREAD; i++)
		if (slots[i].conn == conn) {
			PQfinish(conn);
			slots[i].conn = NULL;
		}
}

void pgconn_thread_done(void)
{
	for (int i = 0; i < PGCONN_PER_THREAD; i++) {
		if (slots[i].conn)
			PQfinish(slots[i].conn);
		slots[i].conn = NULL;
	}
}
