/*
 * authquery.h - auth.query: a client's password verifier from the backend.
 */
#ifndef SHARDGATE_ROUTE_AUTHQUERY_H
#define SHARDGATE_ROUTE_AUTHQUERY_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"

/*
 * Runs auth.query for `user`. True with *out the verifier (malloc'ed; the
 * caller wipes and frees it), or with *out NULL when the user has none
 * (unknown, or a NULL password); false with the reason in err when the
 * query could not run.
 */
bool auth_query_fetch(const config_t *cfg, const char *user, char **out, char *err,
		      size_t errlen);

#endif
