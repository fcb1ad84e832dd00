/*
 * rebalance.h - `shardgate rebalance plan | apply | abort`.
 *
 * plan prints the units that turn map OLD into map NEW (units.h) with
 * estimated rows and bytes, and checks their prerequisites. apply carries
 * them out one at a time on PostgreSQL's logical replication: a
 * publication on the source whose row filter selects exactly the unit's
 * rows, a subscription on the target that copies them and follows their
 * changes, then the cut-over (the proxies pause the unit's statements, the
 * target is proven equal to the source, the rows leave the source, the
 * proxies switch to the next map), then the replication objects go. Every
 * step is recorded first in the bookkeeping of sql/rebalance.sql, so apply
 * run again after any interruption continues, and abort undoes what has
 * not cut over.
 */
#ifndef SHARDGATE_REBALANCE_REBALANCE_H
#define SHARDGATE_REBALANCE_REBALANCE_H

#include <stdbool.h>

#define RB_MAX_PROXIES 64

typedef struct {
	const char *old_path; /* -c */
	const char *new_path; /* --to */
	const char *proxies[RB_MAX_PROXIES]; /* --proxy HOST:PORT */
	int n_proxies;
	const char *proxy_user; /* --proxy-user, default: the first admin user */
	const char *database;	/* --database, default: backend.database, else "postgres" */
	int batch;		/* --batch N: at most N buckets per unit (0: no limit) */
	bool dry_run;
} rb_options_t;

int rb_plan_command(const rb_options_t *o);
int rb_apply_command(const rb_options_t *o);
int rb_abort_command(const rb_options_t *o);

#endif
