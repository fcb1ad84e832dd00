/*
 * authquery.c - auth.query: a client's password verifier read from the
 * default shard's primary, as PgBouncer's auth_query does.
 *
 * The query (e.g. "SELECT usename, passwd FROM pg_shadow WHERE usename = $1")
 * runs with the client's user name as $1 on the calling worker's own libpq
 * connection (route/pgconn.h), as backend.user; it blocks the worker for
 * one round trip per login of a user not listed in auth.users. Its second
 * column is the verifier: a SCRAM-SHA-256 verifier or an md5 hash, never
 * used as a plain password.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "route/authquery.h"
#include "route/pgconn.h"

bool auth_query_fetch(const config_t *cfg, const char *user, char **out, char *err,
		      size_t errlen)
{
	*out = NULL;
	const char *db = cfg->backend.database[0] ? cfg->backend.database : "postgres";
	PGconn *conn = pgconn_get(cfg, cfg->default_shard, db, err, errlen);
	if (!conn)
		return false;
	const char *params[1] = {user};
	PGresult *r = PQexecParams(conn, cfg->auth.query, 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		pgconn_message(err, errlen, "auth.query: ", PQresultErrorMessage(r));
		PQclear(r);
		if (PQstatus(conn) != CONNECTION_OK)
			pgconn_discard(conn);
		return false;
	}
	bool ok = true;
	if (PQntuples(r) > 1 || (PQntuples(r) == 1 && PQnfields(r) < 2)) {
		snprintf(err, errlen,
			 "auth.query must return at most one row of (user name, verifier)");
		ok = false;
	} else if (PQntuples(r) == 1 && !PQgetisnull(r, 0, 1)) {
		char *v = PQgetvalue(r, 0, 1);
		*out = strdup(v);
		OPENSSL_cleanse(v, strlen(v)); /* the verifier stays in one place */
		if (!*out) {
			snprintf(err, errlen, "out of memory");
			ok = false;
		}
	}
	PQclear(r);
	return ok;
}
