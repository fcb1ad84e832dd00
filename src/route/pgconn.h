/*
 * pgconn.h - the proxy's own blocking libpq connections to shard primaries.
 *
 * Directory lookups and two-phase-commit decisions are a query or two each;
 * they run on a connection of the calling thread, kept open between calls
 * (one per shard and database, a handful per thread), with connect and
 * statement timeouts from timeouts.connect and timeouts.query.
 */
#ifndef SHARDGATE_ROUTE_PGCONN_H
#define SHARDGATE_ROUTE_PGCONN_H

#include <libpq-fe.h>
#include <stddef.h>

#include "config/config.h"

/* The calling thread's connection to shard's primary and database, opened
 * when needed; NULL with a message in err when it cannot be had. */
PGconn *pgconn_get(const config_t *config, int shard, const char *database, char *err,
		   size_t errlen);

/* Drops a connection that failed (the next pgconn_get opens a new one). */
void pgconn_discard(PGconn *conn);

/* Closes every connection of the calling thread. */
void pgconn_thread_done(void);

/* Copies a libpq message without its trailing newline. */
void pgconn_message(char *out, size_t outlen, const char *prefix, const char *message);

#endif
