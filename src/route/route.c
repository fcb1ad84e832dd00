/*
 * route.c - read/write splitting decisions.
 */
#include "route/route.h"

#include <stdio.h>
#include <string.h>

const char *route_status_name(route_status_t status)
{
	switch (status) {
	case ROUTE_OK:
		return "ok";
	case ROUTE_NO_PRIMARY:
		return "no primary";
	}
	return "unknown";
}

typedef struct {
	const config_t *config;
} classify_arg_t;

static func_class_t classify_function(const char *schema, const char *name, void *arg)
{
	const config_t *cfg = ((classify_arg_t *)arg)->config;
	return analyze_default_function_class(
		schema, name, (const char *const *)cfg->routing.read_only_functions,
		cfg->routing.n_read_only_functions, (const char *const *)cfg->routing.write_functions,
		cfg->routing.n_write_functions);
}

void route_class_init(route_class_t *cls)
{
	memset(cls, 0, sizeof(*cls));
	cls->read = true;
	cls->hint_shard = -1;
	cls->max_lag_ms = -1;
	cls->reason = "read";
}

void route_class_unknown(route_class_t *cls, const char *reason)
{
	route_class_init(cls);
	cls->n_texts = 1;
	cls->read = false;
	cls->reason = reason;
}

/* BEGIN/START TRANSACTION READ ONLY, alone or first in the text. */
static bool begins_read_only(const analysis_t *a)
{
	if (a->n_statement_records < 1)
		return false;
	const analyze_statement_t *st = &a->statements[0];
	return st->kind == ANALYZE_KIND_TRANSACTION && st->txn.op == ANALYZE_TXN_BEGIN &&
	       st->txn.access == ANALYZE_ACCESS_READ_ONLY;
}

/* Why statement st ties the session to its server connection, or NULL. */
static const char *pin_reason(const analyze_statement_t *st, route_tracked_param_fn tracked)
{
	const analyze_session_t *ss = &st->session;
	switch (ss->op) {
	case ANALYZE_SESSION_PREPARE:
		return "SQL PREPARE";
	case ANALYZE_SESSION_LISTEN:
		return "LISTEN";
	case ANALYZE_SESSION_TEMP_OBJECT:
		return "temporary object";
	case ANALYZE_SESSION_DECLARE_HOLD:
		return "cursor WITH HOLD";
	case ANALYZE_SESSION_LOAD:
		return "LOAD";
	case ANALYZE_SESSION_RESET_ALL:
		return "RESET ALL";
	case ANALYZE_SESSION_SET:
	case ANALYZE_SESSION_RESET:
		if (ss->is_local || (ss->name && tracked && tracked(ss->name)))
			return NULL;
		return "SET of a parameter that is not carried between connections";
	default:
		return NULL;
	}
}

/* A table of the shard map is named (sharding decides where it runs). A
 * text that cannot be parsed might name one too. */
static bool names_configured_table(const config_t *config, const analysis_t *a)
{
	if (config->n_tables == 0)
		return false;
	if (a->parse_error || a->tables_truncated)
		return true;
	for (int i = 0; i < a->n_tables; i++) {
		const analyze_table_t *t = &a->tables[i];
		if (t->cte_name)
			continue;
		char qualified[CONFIG_NAME_MAX * 2 + 2];
		if (t->schema) {
			snprintf(qualified, sizeof(qualified), "%s.%s", t->schema, t->name);
			if (config_find_table(config, qualified) >= 0)
				return true;
			if (strcmp(t->schema, "public") != 0)
				continue;
		}
		if (config_find_table(config, t->name) >= 0)
			return true;
	}
	return false;
}

void route_classify(const config_t *config, const analysis_t *a, route_tracked_param_fn tracked,
		    route_class_t *out)
{
	route_class_init(out);
	for (int i = 0; i < a->n_statement_records && !out->pin_reason; i++)
		out->pin_reason = pin_reason(&a->statements[i], tracked);
	if (!out->pin_reason && a->takes_session_lock)
		out->pin_reason = "session advisory lock";
	out->pins = out->pin_reason != NULL;
	out->n_texts = 1;
	out->configured_tables = names_configured_table(config, a);
	if (out->configured_tables)
		shard_stmt_info(config, a, &out->shard_info);
	if (a->n_statements == 1 && a->n_statement_records == 1 &&
	    a->statements[0].kind == ANALYZE_KIND_TRANSACTION) {
		const analyze_txn_t *txn = &a->statements[0].txn;
		out->bare_begin = txn->op == ANALYZE_TXN_BEGIN && txn->access == ANALYZE_ACCESS_DEFAULT;
		out->set_read_only = txn->op == ANALYZE_TXN_SET_TRANSACTION &&
				     txn->access == ANALYZE_ACCESS_READ_ONLY;
		out->txn_end = txn->op == ANALYZE_TXN_COMMIT || txn->op == ANALYZE_TXN_ROLLBACK;
	}
	if (a->hint.present) {
		out->hint_primary = a->hint.primary;
		if (a->hint.shard)
			out->hint_shard = config_find_shard(config, a->hint.shard);
		out->max_lag_ms = a->hint.max_lag_ms;
	}
	if (begins_read_only(a)) {
		/* The rest of the text must read too (BEGIN READ ONLY; SELECT ...). */
		bool rest_reads = true;
		for (int i = 1; i < a->n_statement_records; i++) {
			analyze_kind_t k = a->statements[i].kind;
			if (k != ANALYZE_KIND_READ && k != ANALYZE_KIND_TRANSACTION)
				rest_reads = false;
		}
		out->read_only_txn = rest_reads && a->n_statement_records == a->n_statements;
		out->read = out->read_only_txn;
		out->reason = out->read ? "read-only transaction" : "write in the text";
		return;
	}
	if (a->kind == ANALYZE_KIND_EMPTY) {
		out->reason = "empty";
		return;
	}
	classify_arg_t arg = {config};
	if (a->parse_error) {
		out->read = false;
		out->reason = "not parseable";
	} else if (a->needs_primary) {
		out->read = false;
		out->reason = a->kind == ANALYZE_KIND_WRITE ? "write" : "session state";
	} else if (a->kind != ANALYZE_KIND_READ) {
		out->read = false;
		switch (a->kind) {
		case ANALYZE_KIND_TRANSACTION:
			out->reason = "transaction control";
			break;
		case ANALYZE_KIND_SESSION:
			out->reason = "session state";
			break;
		default:
			out->reason = "not a read";
		}
	} else if (!analyze_is_read(a, classify_function, &arg)) {
		out->read = false;
		out->reason = "calls a function that may write";
	}
	if (out->hint_primary) {
		out->read = false;
		out->reason = "hint: primary";
	}
}

void route_class_merge(route_class_t *acc, const route_class_t *next)
{
	/* The single-statement flags describe a unit of exactly one text. */
	bool first = acc->n_texts == 0;
	acc->bare_begin = first && next->bare_begin;
	acc->set_read_only = first && next->set_read_only;
	acc->txn_end = first && next->txn_end;
	acc->n_texts += next->n_texts;
	if (acc->read && !next->read)
		acc->reason = next->reason;
	acc->read = acc->read && next->read;
	acc->read_only_txn = acc->read_only_txn || next->read_only_txn;
	acc->hint_primary = acc->hint_primary || next->hint_primary;
	if (next->configured_tables)
		acc->shard_info = next->shard_info;
	acc->configured_tables = acc->configured_tables || next->configured_tables;
	if (next->pins && !acc->pins) {
		acc->pins = true;
		acc->pin_reason = next->pin_reason;
	}
	if (next->hint_shard >= 0)
		acc->hint_shard = next->hint_shard;
	if (next->max_lag_ms >= 0 && (acc->max_lag_ms < 0 || next->max_lag_ms < acc->max_lag_ms))
		acc->max_lag_ms = next->max_lag_ms;
}

/* xorshift64*: cheap, per worker, no locks. */
static uint64_t next_random(route_balance_t *b)
{
	uint64_t x = b->random_state ? b->random_state : 0x9E3779B97F4A7C15ULL;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	b->random_state = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static bool replica_fits(const health_snapshot_t *snap,
			 const route_class_t *cls, int shard, int node, uint64_t min_lsn)
{
	if (!snap)
		return min_lsn == 0;
	const health_node_t *n = health_snapshot_node(snap, shard, node);
	if (!n || n->state != NODE_UP || !n->eligible || n->in_recovery == false)
		return false;
	if (!health_node_allowed(snap, shard, node))
		return false;
	if (cls->max_lag_ms >= 0 && (n->lag_ms < 0 || n->lag_ms > cls->max_lag_ms))
		return false;
	if (min_lsn && n->replay_lsn < min_lsn)
		return false;
	return true;
}

static int node_weight(const config_t *config, int shard, int node)
{
	const cfg_shard_t *s = &config->shards[shard];
	int w = node == 0 ? s->primary.weight : s->replicas[node - 1].weight;
	return w > 0 ? w : 1;
}

/*
 * With no node seen acting as primary, the configured one is still tried
 * unless the evidence is firm: its breaker opened (repeated failures), or
 * it answers as a replica (a write must never reach a node in recovery).
 * One slow check on a loaded machine must not fail every write.
 */
static bool configured_primary_usable(const health_snapshot_t *snap, int shard)
{
	const health_node_t *n = health_snapshot_node(snap, shard, 0);
	if (!n)
		return true;
	if (n->state == NODE_UP && n->in_recovery)
		return false;
	return n->breaker == BREAKER_CLOSED;
}

route_status_t route_choose(const config_t *config, const health_snapshot_t *snap,
			    const route_class_t *cls, int shard, uint64_t min_lsn,
			    route_balance_t *balance, route_load_fn load, void *load_arg,
			    route_target_t *out)
{
	const cfg_shard_t *s = &config->shards[shard];
	int primary = 0;
	out->shard = shard;
	out->node = 0;
	out->replica = false;
	out->verify_lsn = false;
	out->reason = cls->reason;
	if (snap && shard < snap->n_shards && snap->version > 0) {
		primary = snap->shards[shard].primary_node;
		if (primary < 0 && !configured_primary_usable(snap, shard))
			primary = -1;
		else if (primary < 0)
			primary = 0;
		if (primary < 0 && !cls->read)
			return ROUTE_NO_PRIMARY;
	}
	out->shard = shard;
	out->node = primary < 0 ? 0 : primary;
	out->replica = false;
	out->verify_lsn = false;
	out->reason = cls->reason;
	if (!cls->read || !config->routing.read_write_split)
		return ROUTE_OK;

	int candidates[CONFIG_MAX_REPLICAS + 1];
	int n = 0;
	bool verify = false;
	for (int i = 1; i <= s->n_replicas; i++)
		if (i != primary && replica_fits(snap, cls, shard, i, min_lsn))
			candidates[n++] = i;
	if (n == 0 && min_lsn && snap) {
		/* The snapshot may be older than the client's write: a replica
		 * that is otherwise fit is asked for its replay position. */
		for (int i = 1; i <= s->n_replicas; i++)
			if (i != primary && replica_fits(snap, cls, shard, i, 0))
				candidates[n++] = i;
		verify = n > 0;
	}
	if (config->routing.include_primary_in_reads && primary >= 0 && !verify)
		candidates[n++] = primary;
	if (n == 0) {
		if (primary < 0)
			return ROUTE_NO_PRIMARY;
		out->reason = s->n_replicas == 0 ? "read, no replicas"
						 : "read, no replica eligible (lag, health or "
						   "read-your-writes)";
		return ROUTE_OK;
	}
	int pick = 0;
	switch (config->routing.balance) {
	case BALANCE_ROUND_ROBIN:
		pick = (int)(balance->round_robin++ % (uint64_t)n);
		break;
	case BALANCE_RANDOM:
		pick = (int)(next_random(balance) % (uint64_t)n);
		break;
	case BALANCE_LEAST_CONNECTIONS: {
		int best = -1;
		/* Start at a rotating offset so ties spread. */
		int start = (int)(balance->round_robin++ % (uint64_t)n);
		for (int k = 0; k < n; k++) {
			int i = (start + k) % n;
			int l = load ? load(shard, candidates[i], load_arg) : 0;
			if (best < 0 || l < best) {
				best = l;
				pick = i;
			}
		}
		break;
	}
	case BALANCE_WEIGHTED: {
		int total = 0;
		for (int i = 0; i < n; i++)
			total += node_weight(config, shard, candidates[i]);
		int r = (int)(next_random(balance) % (uint64_t)total);
		for (int i = 0; i < n; i++) {
			r -= node_weight(config, shard, candidates[i]);
			if (r < 0) {
				pick = i;
				break;
			}
		}
		break;
	}
	}
	out->node = candidates[pick];
	out->replica = out->node != primary;
	out->verify_lsn = verify;
	out->reason = "read";
	return ROUTE_OK;
}
