/*
 * twophase.c - recording and recovering two-phase-commit decisions.
 */
#include "route/twophase.h"

#include <openssl/rand.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "route/pgconn.h"

static atomic_uint_fast64_t counter;
static uint32_t run_id;
static pthread_once_t run_once = PTHREAD_ONCE_INIT;

static void pick_run_id(void)
{
	RAND_bytes((unsigned char *)&run_id, sizeof(run_id));
}

void twophase_new_gid(char *out, size_t outlen)
{
	pthread_once(&run_once, pick_run_id);
	snprintf(out, outlen, "sg_%08x_%llu", run_id,
		 (unsigned long long)atomic_fetch_add(&counter, 1));
}

bool twophase_record(const config_t *config, const char *database, const char *gid,
		     const int *shards, int n_shards, char *err, size_t errlen)
{
	PGconn *conn = pgconn_get(config, config->default_shard, database, err, errlen);
	if (!conn)
		return false;
	char list[CONFIG_MAX_SHARDS * (CONFIG_NAME_MAX + 2) + 3] = "{";
	for (int i = 0; i < n_shards; i++) {
		strcat(list, config->shards[shards[i]].name);
		strcat(list, i + 1 < n_shards ? "," : "");
	}
	strcat(list, "}");
	const char *params[2] = {gid, list};
	PGresult *res = PQexecParams(conn,
				     "INSERT INTO shardgate.decisions (gid, shards) VALUES ($1, $2)",
				     2, NULL, params, NULL, NULL, 0);
	bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
	if (!ok) {
		pgconn_message(err, errlen, "recording the commit decision: ",
			       PQresultErrorMessage(res));
		if (PQstatus(conn) != CONNECTION_OK)
			pgconn_discard(conn);
	}
	PQclear(res);
	return ok;
}

void twophase_forget(const config_t *config, const char *database, const char *gid)
{
	char err[256];
	PGconn *conn = pgconn_get(config, config->default_shard, database, err, sizeof(err));
	if (!conn) {
		log_warning("twophase_forget_failed", "\"gid\":\"%s\"", gid);
		return;
	}
	const char *params[1] = {gid};
	PGresult *res = PQexecParams(conn, "DELETE FROM shardgate.decisions WHERE gid = $1", 1,
				     NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		log_warning("twophase_forget_failed", "\"gid\":\"%s\"", gid);
	PQclear(res);
}

/* Whether PREFIX was decided (1), not (0), or the default shard could not
 * say (-1). */
static int decided(const config_t *config, const char *database, const char *prefix)
{
	char err[256];
	PGconn *conn = pgconn_get(config, config->default_shard, database, err, sizeof(err));
	if (!conn)
		return -1;
	const char *params[1] = {prefix};
	PGresult *res = PQexecParams(conn, "SELECT 1 FROM shardgate.decisions WHERE gid = $1", 1,
				     NULL, params, NULL, NULL, 0);
	int r = PQresultStatus(res) == PGRES_TUPLES_OK ? PQntuples(res) > 0 : -1;
	PQclear(res);
	return r;
}

int twophase_recover(const config_t *config)
{
	int finished = 0;
	bool trouble = false;
	/* Decisions whose transactions this recovery committed: (database, gid). */
	char (*forget)[2][TWOPHASE_GID_MAX * 2] = NULL;
	int n_done = 0;
	const char *listing_db = config->backend.database[0] ? config->backend.database : "postgres";
	for (int s = 0; s < config->n_shards; s++) {
		char err[256];
		PGconn *conn = pgconn_get(config, s, listing_db, err, sizeof(err));
		if (!conn) {
			log_warning("twophase_recover_failed", "\"shard\":\"%s\"", config->shards[s].name);
			trouble = true;
			continue;
		}
		PGresult *res = PQexec(conn, "SELECT gid, database FROM pg_catalog.pg_prepared_xacts "
					     "WHERE gid LIKE 'sg\\_%\\_%\\_%' ORDER BY gid");
		if (PQresultStatus(res) != PGRES_TUPLES_OK) {
			PQclear(res);
			trouble = true;
			continue;
		}
		for (int i = 0; i < PQntuples(res); i++) {
			char gid[TWOPHASE_GID_MAX * 2], prefix[TWOPHASE_GID_MAX * 2], db[128];
			snprintf(gid, sizeof(gid), "%s", PQgetvalue(res, i, 0));
			snprintf(db, sizeof(db), "%s", PQgetvalue(res, i, 1));
			snprintf(prefix, sizeof(prefix), "%s", gid);
			char *cut = strrchr(prefix, '_');
			if (cut)
				*cut = '\0';
			int d = decided(config, db, prefix);
			if (d < 0) {
				trouble = true; /* decide later: never roll back a decided one */
				continue;
			}
			PGconn *owner = pgconn_get(config, s, db, err, sizeof(err));
			if (!owner) {
				trouble = true;
				continue;
			}
			char sql[256];
			snprintf(sql, sizeof(sql), "%s PREPARED '%s'", d ? "COMMIT" : "ROLLBACK", gid);
			PGresult *done = PQexec(owner, sql);
			bool ok = PQresultStatus(done) == PGRES_COMMAND_OK;
			PQclear(done);
			log_info("twophase_recovered", "\"gid\":\"%s\",\"shard\":\"%s\",\"outcome\":\"%s\"",
				 gid, config->shards[s].name,
				 !ok ? "failed" : d ? "committed" : "rolled back");
			if (ok)
				finished++;
			else
				trouble = true;
			if (ok && d) {
				void *grown = realloc(forget, sizeof(*forget) * (size_t)(n_done + 1));
				if (grown) {
					forget = grown;
					snprintf(forget[n_done][0], sizeof(forget[n_done][0]), "%s", db);
					snprintf(forget[n_done][1], sizeof(forget[n_done][1]), "%s", prefix);
					n_done++;
				}
			}
		}
		PQclear(res);
	}
	/* Every shard was asked: a committed decision is needed no more. */
	for (int i = 0; !trouble && i < n_done; i++)
		twophase_forget(config, forget[i][0], forget[i][1]);
	free(forget);
	pgconn_thread_done();
	return trouble ? -1 : finished;
}

void twophase_thread_done(void)
{
	pgconn_thread_done();
}
