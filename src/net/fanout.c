/*
 * fanout.c - one statement on several shards at once.
 *
 * A unit whose one statement needs several shards (a read with no pinned
 * key, a write with none, a multi-row INSERT whose rows go to different
 * shards) takes one server connection per shard ("legs"), acquired in shard
 * order so that two fan-outs never wait on each other in a cycle. Each leg
 * gets the statement as its shard must run it: the same text, a text
 * rewritten for merging (merge/plan.h), or the INSERT's own rows
 * (route/rewrite.h); extended-protocol units run on each leg as an unnamed
 * Parse/Bind/Describe/Execute/Sync with the client's parameters.
 *
 * Reads are merged as rows arrive (merge/merge.h): concatenated, or
 * merge-sorted, or aggregated; LIMIT stops the other legs with a
 * CancelRequest once met. A leg that runs ahead of the merge stops being
 * read (backpressure), so an ORDER BY over a large result never buffers
 * it all.
 *
 * Writes run on every leg inside BEGIN; the proxy sends COMMIT to all legs
 * only when every leg's statement succeeded, and ROLLBACK to all otherwise:
 * a failing statement leaves no shard changed. (Without two-phase commit, a
 * crash between the COMMITs can still leave some shards committed.)
 *
 * The client sees one answer, built by the proxy in the order of its own
 * messages: ParseComplete, BindComplete, the row description, the rows,
 * one command tag whose row count is the sum of the legs', ReadyForQuery.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/stats.h"
#include "health/health.h"
#include "merge/merge.h"
#include "merge/plan.h"
#include "net/io.h"
#include "net/net.h"
#include "pool/pool.h"
#include "proto/proto.h"
#include "route/copy_split.h"
#include "route/directory.h"
#include "route/rewrite.h"
#include "route/twophase.h"

enum { PHASE_RUN, PHASE_PREPARE, PHASE_COMMIT_PREPARED, PHASE_END };

#define FANOUT_BUFFERED_ROWS 4096 /* a leg's rows waiting in the merge: stop reading it */
#define FANOUT_MAX_CLIENT_MSGS 32

typedef struct {
	int shard;
	pool_t *pool;
	server_t *server;
	buf_t msgs;        /* what this leg is sent */
	int preamble_z;    /* ReadyForQuery of BEGIN still to come */
	bool running;      /* its statement was sent, its ReadyForQuery not seen */
	int finishing;     /* ReadyForQuery owed for COMMIT, PREPARE, ... */
	bool prepared;     /* PREPARE TRANSACTION sent (two-phase commit) */
	bool wrote;        /* a write ran on it (transaction fan-out) */
	bool copy_in;      /* it answered CopyInResponse */
	bool finish_failed; /* the last of those failed (a PREPARE that did not) */
	bool described;    /* its RowDescription (or NoData) arrived */
	bool failed;
	bool cancelled;    /* stopped after the LIMIT was met */
	bool got_parse, got_bind;
	bool lost;
	bool paused;
	char tx_status;
	buf_t returned;    /* a split INSERT's RETURNING rows (DataRow messages) */
	size_t returned_pos;
	/* Pipeline: what the leg owes, for which client message, in order. */
	struct owed {
		int idx;      /* the client message it answers */
		uint8_t kind; /* OWE_* */
	} *owed;
	int n_owed, owed_head;
} fan_leg_t;

/* A leg runs a statement: its server counts as busy (timeouts.query). */
static void set_running(fan_leg_t *leg, bool on)
{
	server_t *s = leg->server;
	if (s && !on && leg->running && s->busy_since_ms && s->pool)
		stats_statement(s->pool->shard, s->pool->node, s->pool->node == 0,
				(net_now_ms() - s->busy_since_ms) * 1000, NULL);
	leg->running = on;
	if (s)
		server_busy(s, on);
}

enum { OWE_DROP_PARSE, OWE_BIND, OWE_DESCRIBE, OWE_EXECUTE, OWE_SYNC, OWE_QUERY };

/* Pipeline: the answer owed to one client message. */
typedef struct {
	uint8_t type;    /* the client's message */
	int leg;         /* who answers it; -1: the proxy */
	buf_t out;       /* answers received, not yet sent */
	bool complete;
} fan_msg_t;

struct fanout {
	client_t *client;
	bool write;
	bool extended;
	bool header_sent;
	bool error_set;
	int phase;       /* writes: PHASE_* */
	char gid[TWOPHASE_GID_MAX]; /* two-phase commit: the prepared transactions' prefix */
	bool done;
	uint8_t client_msgs[FANOUT_MAX_CLIENT_MSGS]; /* the types of the client's messages */
	uint8_t client_describe[FANOUT_MAX_CLIENT_MSGS]; /* 'S' or 'P' for each Describe */
	int n_client_msgs;
	merge_plan_t *plan;
	merger_t *merger;
	buf_t error;     /* the first ErrorResponse, whole */
	buf_t row_desc;  /* a write's RETURNING description */
	uint64_t rows;   /* command tags summed */
	int *row_leg;    /* split INSERT: the leg of each VALUES row */
	int n_rows;
	bool pipeline;   /* statements of one pipeline, each on its own leg */
	bool synced;     /* pipeline: the client's Sync was passed on */
	bool stream_failed; /* pipeline: a leg could not be had: drop to the Sync */
	bool no_continue;   /* finished inside the client's own input loop */
	/* A client transaction over several shards (fanout_start_txn): it
	 * lasts until COMMIT or ROLLBACK; each unit ends with the client's
	 * ReadyForQuery once every leg it used has answered. */
	bool txn;
	bool aborted;       /* a statement failed: only COMMIT/ROLLBACK now */
	bool ending;        /* COMMIT or ROLLBACK under way */
	bool rollback;      /* the end is a ROLLBACK (or COMMIT of a failed one) */
	int unit_owed;      /* ReadyForQuery the legs still owe for this unit */
	bool unit_done;     /* the unit was answered: take the next one */
	bool end_extended;  /* the end came as Parse/Bind/Execute of COMMIT or ROLLBACK */
	int binds_sent;     /* pipeline: Binds sent to legs so far */
	uint32_t max_rows;  /* the client's Execute row limit (0: none) */
	uint64_t emitted;   /* rows sent to the client */
	bool handoff;       /* pipeline: its first Bind needs several shards (see
			       stream_handoff) */
	/* COPY ... FROM STDIN split by key over the legs. */
	copy_split_t *copy;
	int copy_table;
	bool copy_binary;
	bool copy_started;  /* every leg is in COPY; the client got CopyInResponse */
	bool copy_ended;    /* the client's CopyDone or CopyFail arrived */
	bool copy_failed;   /* the legs were told CopyFail: drop the client's data */
	buf_t copy_in;      /* the first leg's CopyInResponse */
	int shard_leg[CONFIG_MAX_SHARDS];
	int acquiring;   /* pipeline: the leg waiting for a server, -1 */
	int last_leg;    /* pipeline: the leg of the last Bind */
	fan_msg_t *msgs; /* pipeline: per client message */
	int n_msgs, cap_msgs, next_emit;
	int error_idx;   /* pipeline: the first failed client message, -1 */
	char verb[16];
	int n_legs, n_acquired;
	fan_leg_t legs[];
};

static void finish(fanout_t *f);
static void pump(fanout_t *f);
static bool txn_legs_quiet(const fanout_t *f);
static void txn_end_step(fanout_t *f);
static bool txn_query(fanout_t *f, const uint8_t *msg, size_t total);
static bool txn_may_write(fanout_t *f, int shard, int idx);
static bool txn_end_bind(fanout_t *f, const uint8_t *msg, size_t total);
static bool copy_maybe_start(fanout_t *f);
static size_t copy_feed(fanout_t *f, const uint8_t *data, size_t len);
static int next_frame(client_t *c, const uint8_t *data, size_t len, uint8_t *type, size_t *total);

/* ---- building what each leg is sent ---- */

/* The leg's statement as an extended-protocol run on the unnamed statement:
 * Parse, Bind (with the client's parameters, or a subset in param_map order),
 * Describe portal, Execute, Sync. */
static bool put_extended(buf_t *b, const char *sql, const uint8_t *types, size_t types_len,
			 const unit_route_t *u, const int *param_map, int n_mapped,
			 const merge_plan_t *plan)
{
	uint16_t n_types = types_len >= 2 ? buf_get_u16(types) : 0;
	int n = param_map ? n_mapped : u->params.n;
	size_t need = 64 + strlen(sql) + 4 * (size_t)(n_types > n ? n_types : n) +
		      6 * (size_t)n + u->bind_len;
	for (int k = 0; k < n; k++) {
		int i = param_map ? param_map[k] : k;
		if (u->params.values[i])
			need += (size_t)u->params.lengths[i];
	}
	if (!buf_reserve(b, need))
		return false;
	/* Parse: name, query, parameter types (remapped when the INSERT was split). */
	size_t start = buf_avail(b);
	buf_put_u8(b, 'P');
	buf_put_u32(b, 0);
	buf_put_cstr(b, "");
	buf_put_cstr(b, sql);
	if (param_map) {
		buf_put_u16(b, (uint16_t)n_mapped);
		for (int k = 0; k < n_mapped; k++)
			buf_put_u32(b, param_map[k] < n_types ? buf_get_u32(types + 2 + 4 * param_map[k])
							      : 0);
	} else {
		buf_put_u16(b, n_types);
		if (n_types)
			buf_put_bytes(b, types + 2, (size_t)n_types * 4);
	}
	/* Bind: portal, statement, formats, values, result formats. */
	size_t bind_start = buf_avail(b);
	buf_put_u8(b, 'B');
	buf_put_u32(b, 0);
	buf_put_cstr(b, "");
	buf_put_cstr(b, "");
	buf_put_u16(b, (uint16_t)n);
	for (int k = 0; k < n; k++) {
		int i = param_map ? param_map[k] : k;
		buf_put_u16(b, (uint16_t)u->params.formats[i]);
	}
	buf_put_u16(b, (uint16_t)n);
	for (int k = 0; k < n; k++) {
		int i = param_map ? param_map[k] : k;
		if (!u->params.values[i]) {
			buf_put_u32(b, UINT32_MAX);
			continue;
		}
		buf_put_u32(b, (uint32_t)u->params.lengths[i]);
		buf_put_bytes(b, u->params.values[i], (size_t)u->params.lengths[i]);
	}
	/* The client's result formats, after its parameter values. */
	proto_reader_t r;
	proto_reader_init(&r, u->bind, u->bind_len);
	uint16_t nf, np;
	const uint8_t *skip;
	proto_read_cstr(&r, NULL, NULL);
	proto_read_cstr(&r, NULL, NULL);
	proto_read_u16(&r, &nf);
	proto_read_bytes(&r, (size_t)nf * 2, &skip);
	proto_read_u16(&r, &np);
	for (int i = 0; i < np; i++) {
		int32_t len;
		proto_read_i32(&r, &len);
		if (len > 0)
			proto_read_bytes(&r, (size_t)len, &skip);
	}
	if (plan) {
		/* Result formats for the shard's columns (hidden ones, avg's
		 * count) from the client's codes. */
		uint16_t n_client = 0;
		const uint8_t *codes = NULL;
		int16_t client[MERGE_MAX_COLUMNS], shard[MERGE_MAX_COLUMNS];
		int n_shard = 0;
		if (!proto_read_u16(&r, &n_client) || n_client > MERGE_MAX_COLUMNS ||
		    !proto_read_bytes(&r, (size_t)n_client * 2, &codes))
			return false;
		for (int i = 0; i < n_client; i++)
			client[i] = (int16_t)buf_get_u16(codes + 2 * i);
		if (!merge_plan_shard_formats(plan, n_client, client, shard, MERGE_MAX_COLUMNS,
					      &n_shard) ||
		    !buf_reserve(b, 2 + 2 * (size_t)n_shard))
			return false;
		buf_put_u16(b, (uint16_t)n_shard);
		for (int i = 0; i < n_shard; i++)
			buf_put_u16(b, (uint16_t)shard[i]);
	} else {
		buf_put_bytes(b, u->bind + r.pos, u->bind_len - r.pos);
	}
	if (buf_avail(b) < bind_start || buf_avail(b) - start > UINT32_MAX)
		return false;
	/* Fill in the two lengths. */
	uint8_t *base = (uint8_t *)buf_head(b);
	buf_set_u32(base + start + 1, (uint32_t)(bind_start - start - 1));
	buf_set_u32(base + bind_start + 1, (uint32_t)(buf_avail(b) - bind_start - 1));
	static const uint8_t describe[] = {'D', 0, 0, 0, 6, 'P', 0};
	static const uint8_t execute[] = {'E', 0, 0, 0, 9, 0, 0, 0, 0, 0};
	static const uint8_t sync[] = {'S', 0, 0, 0, 4};
	buf_put_bytes(b, describe, sizeof(describe));
	buf_put_bytes(b, execute, sizeof(execute));
	buf_put_bytes(b, sync, sizeof(sync));
	return true;
}

/* Records the client's messages (for the answer) and its Parse (for its
 * later Binds), as the relay would have. False: not a unit a fan-out can
 * answer. */
static bool note_client_unit(fanout_t *f, client_t *c, const uint8_t *data, size_t len,
			     char *why, size_t whylen)
{
	for (size_t pos = 0; pos < len && !f->pipeline;) {
		uint8_t type;
		size_t total;
		if (proto_frame(data + pos, len - pos, len, &type, &total) != FRAME_OK)
			return false;
		if (type == 'H') {
			pos += total;
			continue; /* Flush: nothing to answer */
		}
		if (f->n_client_msgs == FANOUT_MAX_CLIENT_MSGS) {
			snprintf(why, whylen, "too many messages in one unit for a statement over "
					      "several shards");
			return false;
		}
		proto_reader_t r;
		proto_reader_init(&r, data + pos + 5, total - 5);
		if (type == 'D') {
			uint8_t what = 0;
			proto_read_u8(&r, &what);
			f->client_describe[f->n_client_msgs] = what;
		} else if (type == 'E') {
			uint32_t max_rows = 0;
			proto_read_cstr(&r, NULL, NULL);
			proto_read_u32(&r, &max_rows);
			if (max_rows != 0 && (f->max_rows != 0 || f->write)) {
				snprintf(why, whylen,
					 "fetching a statement over several shards in parts (several "
					 "Executes with a row limit) is not supported");
				return false;
			}
			f->max_rows = max_rows; /* rows, then PortalSuspended */
		} else if (type == 'C' || type == 'F' || type == 'd' || type == 'c' || type == 'f') {
			snprintf(why, whylen, "message type %c in a unit over several shards is "
					      "not supported", type);
			return false;
		}
		f->client_msgs[f->n_client_msgs++] = type;
		pos += total;
	}
	/* The client's Parse becomes its statement, as relay_parse does. */
	for (size_t pos = 0; pos < len;) {
		uint8_t type;
		size_t total;
		proto_frame(data + pos, len - pos, len, &type, &total);
		if (type == 'P') {
			const char *name = "";
			parse_reg_t reg = client_register_parse(c, data + pos + 5, total - 5, false,
								&name, NULL);
			if (reg == PARSE_DUPLICATE)
				snprintf(why, whylen, "prepared statement \"%s\" already exists", name);
			else if (reg == PARSE_MALFORMED)
				snprintf(why, whylen, "invalid Parse message");
			if (reg != PARSE_REGISTERED && reg != PARSE_SAME)
				return false;
		}
		pos += total;
	}
	return true;
}

/* The text one leg runs, and for a split INSERT the parameters it keeps. */
static bool build_leg(fanout_t *f, fan_leg_t *leg, const unit_route_t *u, const char *sql,
		      char *why, size_t whylen)
{
	char *own = NULL;
	int *param_map = NULL;
	int n_mapped = 0;
	const char *text = f->plan ? merge_plan_shard_sql(f->plan) : sql;
	if (u->route.row_shard) {
		int max = u->params.n > 0 ? u->params.n : 1;
		param_map = malloc(sizeof(int) * (size_t)max);
		if (!param_map)
			return false;
		own = rewrite_insert_rows(sql, u->route.row_shard, u->route.n_rows, leg->shard,
					  param_map, max, &n_mapped, why, whylen);
		if (!own) {
			free(param_map);
			return false;
		}
		text = own;
	}
	bool ok = true;
	if (f->write) {
		proto_put_query(&leg->msgs, "BEGIN");
		leg->preamble_z = 1;
	}
	if (u->extended)
		ok = put_extended(&leg->msgs, text, u->types, u->types_len, u,
				  u->route.row_shard ? param_map : NULL, n_mapped, f->plan);
	else
		ok = proto_put_query(&leg->msgs, text);
	free(own);
	free(param_map);
	return ok;
}

/* ---- answering the client ---- */

static void put_client(fanout_t *f, uint8_t type, const void *body, size_t len)
{
	proto_put_message(&f->client->out, type, body, len);
}

/* The answers to the client's messages before its Execute (or Query):
 * ParseComplete, BindComplete, descriptions. desc is a RowDescription
 * message (whole) or NULL for NoData. */
static void emit_header(fanout_t *f, const uint8_t *desc, size_t desc_len)
{
	if (f->header_sent)
		return;
	f->header_sent = true;
	buf_t *out = &f->client->out;
	for (int i = 0; i < f->n_client_msgs; i++) {
		switch (f->client_msgs[i]) {
		case 'P':
			proto_put_empty(out, '1');
			break;
		case 'B':
			proto_put_empty(out, '2');
			break;
		case 'D':
			if (f->client_describe[i] == 'S') {
				/* Parameter types as the client stated them (or none). */
				static const uint8_t none[2] = {0, 0};
				put_client(f, 't', none, 2);
			}
			if (desc)
				buf_append(out, desc, desc_len);
			else
				proto_put_empty(out, 'n');
			break;
		case 'Q':
			if (desc)
				buf_append(out, desc, desc_len);
			break;
		default:
			break;
		}
	}
}

static void merged_header(fanout_t *f)
{
	size_t len;
	const uint8_t *body = merger_client_row_description(f->merger, &len);
	if (!body)
		return;
	buf_t msg = {0};
	proto_put_message(&msg, 'T', body, len);
	emit_header(f, buf_head(&msg), buf_avail(&msg));
	buf_free(&msg);
}

static void set_error(fanout_t *f, const char *sqlstate, const char *message)
{
	if (f->error_set)
		return;
	f->error_set = true;
	proto_put_error(&f->error, "ERROR", sqlstate, message);
}

/* The merged rows ready now, up to the client's Execute row limit. */
static void emit_merged_rows(fanout_t *f)
{
	size_t len;
	const uint8_t *row;
	while (!(f->max_rows && f->emitted >= f->max_rows) &&
	       (row = merger_next_row(f->merger, &len))) {
		put_client(f, 'D', row, len);
		f->emitted++;
	}
}

/* Rows the merge can give now go to the client. */
static void pump(fanout_t *f)
{
	if (!f->merger || f->error_set)
		return;
	bool all_described = true;
	for (int i = 0; i < f->n_legs; i++)
		all_described = all_described && (f->legs[i].described || f->legs[i].failed);
	if (!all_described)
		return;
	if (!f->header_sent)
		merged_header(f);
	emit_merged_rows(f);
	if (merger_limit_reached(f->merger) || (f->max_rows && f->emitted >= f->max_rows)) {
		for (int i = 0; i < f->n_legs; i++) {
			fan_leg_t *leg = &f->legs[i];
			if (leg->running && !leg->cancelled && leg->server) {
				leg->cancelled = true;
				server_send_cancel(leg->server);
			}
		}
	}
	/* Backpressure: read a leg again once the merge has taken its rows. */
	for (int i = 0; i < f->n_legs; i++) {
		fan_leg_t *leg = &f->legs[i];
		if (leg->paused && leg->server &&
		    merger_buffered(f->merger, i) < FANOUT_BUFFERED_ROWS / 2 &&
		    buf_avail(&f->client->out) < IO_HIGH_WATER) {
			leg->paused = false;
			io_resume_read(leg->server->ev_read, &leg->server->read_paused);
		}
	}
}

/* Extracts the row count of a command tag ("UPDATE 3", "INSERT 0 3"). */
static void note_tag(fanout_t *f, const uint8_t *msg, size_t len)
{
	char tag[64];
	size_t n = len - 5 < sizeof(tag) - 1 ? len - 5 : sizeof(tag) - 1;
	memcpy(tag, msg + 5, n);
	tag[n] = '\0';
	char *space = strrchr(tag, ' ');
	if (!f->verb[0]) {
		char *first = strchr(tag, ' ');
		size_t vlen = first ? (size_t)(first - tag) : strlen(tag);
		if (vlen >= sizeof(f->verb))
			vlen = sizeof(f->verb) - 1;
		memcpy(f->verb, tag, vlen);
		f->verb[vlen] = '\0';
	}
	if (space)
		f->rows += strtoull(space + 1, NULL, 10);
}

static int leg_index(const fanout_t *f, const server_t *s)
{
	for (int i = 0; i < f->n_legs; i++)
		if (f->legs[i].server == s)
			return i;
	return -1;
}

/* After COMMIT: where the write ended in this shard's WAL (read_your_writes). */
static void note_commit_lsn(fanout_t *f, fan_leg_t *leg, const uint8_t *msg, size_t len)
{
	uint64_t lsn;
	if (relay_parse_lsn_row(msg, len, &lsn))
		client_note_write_lsn(f->client, leg->shard, lsn);
}

/* Pipeline: a leg's answer goes to the client message it is owed for. */
static bool pipeline_message(fanout_t *f, fan_leg_t *leg, uint8_t type, const uint8_t *msg,
			     size_t len)
{
	if (type == 'Z') {
		if (len >= 6)
			leg->tx_status = (char)msg[5];
		leg->server->tx_status = leg->tx_status;
		if (leg->preamble_z > 0) {
			leg->preamble_z--;
		} else if (leg->finishing > 0) {
			leg->finishing--;
		} else if (f->txn) {
			/* The end of a Query or a Sync of this unit. */
			if (leg->owed_head < leg->n_owed) {
				struct owed *o = &leg->owed[leg->owed_head];
				if (o->kind == OWE_QUERY)
					f->msgs[o->idx].complete = true;
				leg->owed_head = leg->n_owed;
			}
			if (leg->tx_status == 'E')
				f->aborted = true;
			f->unit_owed--;
		} else {
			set_running(leg, false);
			if (leg->owed_head < leg->n_owed)
				leg->owed_head = leg->n_owed; /* the Sync */
		}
		return true;
	}
	if (leg->preamble_z > 0 || leg->finishing > 0 || (!leg->running && !f->txn)) {
		if (type == 'E' && leg->finishing > 0)
			leg->finish_failed = true;
		if (type == 'E' && !f->error_set) {
			f->error_set = true;
			buf_append(&f->error, msg, len);
		}
		if (type == 'D' && leg->finishing > 0)
			note_commit_lsn(f, leg, msg, len);
		return true;
	}
	if (type == 'N' || type == 'A' || type == 'S') {
		if (type != 'S')
			buf_append(&f->client->out, msg, len);
		return true;
	}
	if (leg->owed_head >= leg->n_owed)
		return true;
	struct owed *o = &leg->owed[leg->owed_head];
	fan_msg_t *m = &f->msgs[o->idx];
	bool terminal = false;
	if (o->kind == OWE_QUERY) {
		/* A simple Query inside the transaction: everything up to its
		 * ReadyForQuery (which the proxy sends itself). */
		buf_append(&m->out, msg, len);
		if (type == 'E')
			f->aborted = true;
		return true;
	}
	if (type == 'E') {
		buf_append(&m->out, msg, len);
		m->complete = true;
		if (f->txn)
			f->aborted = true;
		if (f->error_idx < 0 || o->idx < f->error_idx)
			f->error_idx = o->idx;
		leg->failed = true;
		/* The server skips to the Sync; so do its owed answers. */
		while (leg->owed_head < leg->n_owed && leg->owed[leg->owed_head].kind != OWE_SYNC)
			leg->owed_head++;
		return true;
	}
	switch (o->kind) {
	case OWE_DROP_PARSE:
		terminal = type == '1';
		break;
	case OWE_BIND:
		terminal = type == '2';
		break;
	case OWE_DESCRIBE:
		terminal = type == 'T' || type == 'n';
		break;
	case OWE_EXECUTE:
		terminal = type == 'C' || type == 'I' || type == 's';
		break;
	default:
		break;
	}
	if (o->kind != OWE_DROP_PARSE)
		buf_append(&m->out, msg, len);
	if (terminal) {
		if (o->kind != OWE_DROP_PARSE)
			m->complete = true;
		leg->owed_head++;
	}
	return true;
}

/* Transaction fan-out: the unit was answered; the next starts afresh. */
static void txn_next_unit(fanout_t *f)
{
	for (int i = 0; i < f->n_msgs; i++)
		buf_free(&f->msgs[i].out);
	memset(f->msgs, 0, sizeof(*f->msgs) * (size_t)f->cap_msgs);
	f->n_msgs = 0;
	f->next_emit = 0;
	f->error_idx = -1;
	f->synced = false;
	f->unit_owed = 0;
	f->last_leg = -1;
	f->unit_done = true;
	for (int i = 0; i < f->n_legs; i++)
		f->legs[i].n_owed = f->legs[i].owed_head = 0;
}

/* Pipeline: the answers the client can have now, in the order of its messages. */
static void pipeline_emit(fanout_t *f)
{
	buf_t *out = &f->client->out;
	while (f->next_emit < f->n_msgs) {
		fan_msg_t *m = &f->msgs[f->next_emit];
		if (f->txn && (m->type == 'S' || (m->type == 'Q' && m->complete))) {
			if (m->type == 'Q' && buf_avail(&m->out)) {
				buf_append(out, buf_head(&m->out), buf_avail(&m->out));
				buf_free(&m->out);
			}
			if (f->unit_owed > 0)
				return;
			/* The unit is answered: the client may send the next. */
			proto_put_ready(out, f->aborted ? 'E' : 'T');
			txn_next_unit(f);
			return;
		}
		if (f->error_idx >= 0 && f->next_emit > f->error_idx) {
			if (!f->txn)
				return; /* skipped up to the Sync, answered at the end */
			f->next_emit++; /* skipped up to the Sync, answered above */
			continue;
		}
		if (m->type == 'S')
			return; /* ReadyForQuery once every leg is done */
		if (m->leg == -1) {
			if (m->type == 'P')
				proto_put_empty(out, '1');
			else if (m->type == 'C')
				proto_put_empty(out, '3');
			f->next_emit++;
			continue;
		}
		if (buf_avail(&m->out)) {
			buf_append(out, buf_head(&m->out), buf_avail(&m->out));
			buf_free(&m->out);
		}
		if (!m->complete)
			return;
		f->next_emit++;
	}
}

bool fanout_server_message(server_t *s, uint8_t type, const uint8_t *msg, size_t len)
{
	fanout_t *f = s->fan;
	int i = leg_index(f, s);
	if (i < 0)
		return true;
	fan_leg_t *leg = &f->legs[i];
	char err[256];
	if (f->pipeline)
		return pipeline_message(f, leg, type, msg, len);

	if (type == 'Z') {
		if (len >= 6)
			leg->tx_status = (char)msg[5];
		s->tx_status = leg->tx_status;
		if (leg->preamble_z > 0) {
			leg->preamble_z--;
			return true;
		}
		if (leg->finishing > 0) {
			leg->finishing--;
			return true;
		}
		set_running(leg, false);
		if (f->merger && !leg->cancelled)
			merger_source_done(f->merger, i);
		return true;
	}
	if (type == 'E') {
		bool fatal = false;
		/* Severity FATAL or PANIC: the server is going away. */
		for (size_t p = 5; p + 1 < len && msg[p]; p += strlen((const char *)msg + p + 1) + 2)
			if (msg[p] == 'V' && (strcmp((const char *)msg + p + 1, "FATAL") == 0 ||
					      strcmp((const char *)msg + p + 1, "PANIC") == 0))
				fatal = true;
		if (leg->cancelled)
			return !fatal; /* the cancel we sent after the LIMIT */
		if (leg->finishing > 0)
			leg->finish_failed = true;
		leg->failed = true;
		if (!f->error_set) {
			f->error_set = true;
			buf_append(&f->error, msg, len);
		}
		return !fatal;
	}
	if (leg->preamble_z > 0)
		return true; /* BEGIN's CommandComplete */
	if (leg->finishing > 0) {
		if (type == 'D')
			note_commit_lsn(f, leg, msg, len);
		return true;
	}
	switch (type) {
	case 'N':
	case 'A':
		buf_append(&f->client->out, msg, len);
		return true;
	case '1':
		leg->got_parse = true;
		return true;
	case '2':
		leg->got_bind = true;
		return true;
	case 'n':
		leg->described = true;
		return true;
	case 'T':
		leg->described = true;
		if (f->merger) {
			if (!merger_row_description(f->merger, i, msg + 5, len - 5, err,
						    sizeof(err)))
				set_error(f, "0A000", err);
		} else if (buf_avail(&f->row_desc) == 0) {
			buf_append(&f->row_desc, msg, len);
		}
		return true;
	case 'D':
		if (leg->cancelled || f->error_set)
			return true;
		if (f->merger) {
			if (!merger_push_row(f->merger, i, msg + 5, len - 5, err, sizeof(err))) {
				set_error(f, "0A000", err);
				return true;
			}
			if (merger_buffered(f->merger, i) >= FANOUT_BUFFERED_ROWS && !leg->paused) {
				leg->paused = true;
				io_pause_read(s->ev_read, &s->read_paused);
			}
			return true;
		}
		/* A split INSERT's RETURNING rows go back in VALUES order. */
		if (f->row_leg) {
			buf_append(&leg->returned, msg, len);
			return true;
		}
		/* A write's RETURNING rows, after its description. */
		if (!f->header_sent)
			emit_header(f, buf_head(&f->row_desc), buf_avail(&f->row_desc));
		buf_append(&f->client->out, msg, len);
		return true;
	case 'C':
		if (!leg->finishing)
			note_tag(f, msg, len);
		return true;
	case 'G':
		leg->copy_in = true;
		if (buf_avail(&f->copy_in) == 0)
			buf_append(&f->copy_in, msg, len);
		return true;
	default: /* 't', 's', 'I', 'S': nothing for the client */
		return true;
	}
}

/* ---- the legs' lifecycle ---- */

static bool all_idle(const fanout_t *f)
{
	for (int i = 0; i < f->n_legs; i++)
		if (f->legs[i].running || f->legs[i].finishing || f->legs[i].preamble_z > 0)
			return false;
	return true;
}

/* Sends every leg its messages. */
static void launch(fanout_t *f)
{
	for (int i = 0; i < f->n_legs; i++) {
		fan_leg_t *leg = &f->legs[i];
		relay_set_stmt(leg->server->worker, &leg->server->unnamed, NULL);
		buf_append(&leg->server->out, buf_head(&leg->msgs), buf_avail(&leg->msgs));
		buf_free(&leg->msgs);
		set_running(leg, true);
		server_flush(leg->server);
	}
}

/* Takes the server the pool linked to the client as the next leg. */
static void take_server(fanout_t *f)
{
	client_t *c = f->client;
	fan_leg_t *leg = &f->legs[f->n_acquired++];
	server_t *s = c->server;
	c->server = NULL;
	leg->server = s;
	s->fan = f;
	s->client = c;
	relay_prepare_link(s, c); /* its answers are swallowed before ours */
}

static void acquire_next(fanout_t *f)
{
	client_t *c = f->client;
	while (f->n_acquired < f->n_legs) {
		fan_leg_t *leg = &f->legs[f->n_acquired];
		c->pool = leg->pool;
		if (!pool_acquire(leg->pool, c))
			return; /* client_on_linked -> fanout_on_linked, or a pool error */
		c->state = CLIENT_ACTIVE;
		take_server(f);
	}
	c->state = CLIENT_ACTIVE;
	launch(f);
}

static void stream_linked(fanout_t *f);

void fanout_on_linked(client_t *c)
{
	fanout_t *f = c->fan;
	c->state = CLIENT_ACTIVE;
	if (f->pipeline) {
		stream_linked(f);
		return;
	}
	take_server(f);
	acquire_next(f);
	client_flush(c);
}

/* Gives a leg's server back (or closes it when it is not clean). */
static void release_leg(fan_leg_t *leg)
{
	server_t *s = leg->server;
	if (!s)
		return;
	leg->server = NULL;
	s->fan = NULL;
	s->client = NULL;
	if (leg->paused)
		io_resume_read(s->ev_read, &s->read_paused);
	if (s->state == SERVER_ACTIVE && s->tx_status == 'I' && s->pending_count == 0 &&
	    !leg->running && !leg->finishing && buf_avail(&s->out) == 0)
		pool_release(s);
	else
		server_close(s, "fan-out leg not clean");
}

static void free_fanout(fanout_t *f)
{
	for (int i = 0; i < f->n_legs; i++) {
		buf_free(&f->legs[i].msgs);
		buf_free(&f->legs[i].returned);
		free(f->legs[i].owed);
	}
	for (int i = 0; i < f->n_msgs; i++)
		buf_free(&f->msgs[i].out);
	free(f->msgs);
	free(f->row_leg);
	copy_split_free(f->copy);
	buf_free(&f->copy_in);
	merger_free(f->merger);
	merge_plan_free(f->plan);
	buf_free(&f->error);
	buf_free(&f->row_desc);
	free(f);
}

/* The next DataRow a leg returned, NULL when it has no more. */
static const uint8_t *next_returned(fan_leg_t *leg, size_t *len)
{
	size_t avail = buf_avail(&leg->returned);
	if (leg->returned_pos + 5 > avail)
		return NULL;
	const uint8_t *msg = buf_head(&leg->returned) + leg->returned_pos;
	*len = 1 + (size_t)buf_get_u32(msg + 1);
	leg->returned_pos += *len;
	return msg;
}

/* A split INSERT's RETURNING rows in the order of its VALUES rows: row i
 * is the next one from the leg that inserted it. (ON CONFLICT DO NOTHING
 * may return fewer: what is left follows in leg order.) */
static void emit_returned(fanout_t *f)
{
	buf_t *out = &f->client->out;
	size_t len;
	const uint8_t *msg;
	for (int i = 0; i < f->n_rows; i++) {
		int l = f->row_leg[i];
		if (l >= 0 && (msg = next_returned(&f->legs[l], &len)))
			buf_append(out, msg, len);
	}
	for (int l = 0; l < f->n_legs; l++)
		while ((msg = next_returned(&f->legs[l], &len)))
			buf_append(out, msg, len);
}

/* Sends sql to a leg, owing `answers` ReadyForQuery. */
static void leg_send(fan_leg_t *leg, const char *sql, int answers)
{
	proto_put_query(&leg->server->out, sql);
	leg->finishing += answers;
	leg->finish_failed = false;
	server_flush(leg->server);
}

/* SHARDGATE_FAILPOINT=before_decision | after_decision: the proxy exits
 * there (tests of two-phase commit recovery). */
static void failpoint(const char *name)
{
	const char *fp = getenv("SHARDGATE_FAILPOINT");
	if (fp && strcmp(fp, name) == 0) {
		log_warning("failpoint", "\"name\":\"%s\"", name);
		_exit(70);
	}
}

/*
 * Ends a write's transactions on the legs, one step per call (each call
 * comes when every leg is idle again). Without two-phase commit: COMMIT
 * everywhere when every statement succeeded, else ROLLBACK. With it, over
 * several shards: PREPARE TRANSACTION everywhere; when all prepared, the
 * decision is recorded on the default shard, then COMMIT PREPARED
 * everywhere; when one did not prepare, ROLLBACK PREPARED the others.
 * Returns true when something was sent (wait), false when done.
 */
static bool end_transactions(fanout_t *f)
{
	client_t *c = f->client;
	const config_t *cfg = c->worker->config;
	char sql[TWOPHASE_GID_MAX + 64];
	bool sent = false;
	int open_legs = 0;
	for (int i = 0; i < f->n_legs; i++)
		open_legs += f->legs[i].server && f->legs[i].tx_status != 'I';
	switch (f->phase) {
	case PHASE_RUN:
		if (!f->error_set && cfg->routing.two_phase_commit && open_legs > 1) {
			twophase_new_gid(f->gid, sizeof(f->gid));
			for (int i = 0; i < f->n_legs; i++) {
				fan_leg_t *leg = &f->legs[i];
				if (!leg->server || leg->tx_status == 'I')
					continue;
				snprintf(sql, sizeof(sql), "PREPARE TRANSACTION '%s_%d'", f->gid, leg->shard);
				leg_send(leg, sql, 1);
				leg->prepared = true;
				sent = true;
			}
			f->phase = PHASE_PREPARE;
			return sent;
		}
		for (int i = 0; i < f->n_legs; i++) {
			fan_leg_t *leg = &f->legs[i];
			if (!leg->server || leg->tx_status == 'I')
				continue;
			bool lsn = !f->error_set && cfg->routing.read_your_writes &&
				   cfg->shards[leg->shard].n_replicas > 0;
			leg_send(leg,
				 f->error_set ? "ROLLBACK"
				 : lsn	      ? "COMMIT; SELECT pg_catalog.pg_current_wal_insert_lsn()"
					      : "COMMIT",
				 1);
			sent = true;
		}
		f->phase = PHASE_END;
		return sent;
	case PHASE_PREPARE: {
		int shards[CONFIG_MAX_SHARDS], n = 0;
		for (int i = 0; i < f->n_legs; i++) {
			fan_leg_t *leg = &f->legs[i];
			if (leg->prepared && (leg->finish_failed || !leg->server))
				leg->prepared = false; /* PREPARE failed: nothing left there */
			if (leg->prepared)
				shards[n++] = leg->shard;
		}
		char err[320] = "";
		bool commit = !f->error_set;
		if (commit) {
			failpoint("before_decision");
			commit = twophase_record(cfg, c->login_pool->database, f->gid, shards, n, err,
						 sizeof(err));
			if (!commit)
				set_error(f, "08006", err);
			else
				failpoint("after_decision");
		}
		for (int i = 0; i < f->n_legs; i++) {
			fan_leg_t *leg = &f->legs[i];
			if (!leg->prepared || !leg->server)
				continue;
			snprintf(sql, sizeof(sql), "%s PREPARED '%s_%d'", commit ? "COMMIT" : "ROLLBACK",
				 f->gid, leg->shard);
			leg_send(leg, sql, 1);
			if (commit && cfg->routing.read_your_writes &&
			    cfg->shards[leg->shard].n_replicas > 0)
				leg_send(leg, "SELECT pg_catalog.pg_current_wal_insert_lsn()", 1);
			sent = true;
		}
		f->phase = commit ? PHASE_COMMIT_PREPARED : PHASE_END;
		log_debug("twophase", "\"client\":%llu,\"gid\":\"%s\",\"decision\":\"%s\"",
			  (unsigned long long)c->id, f->gid, commit ? "commit" : "rollback");
		return sent;
	}
	case PHASE_COMMIT_PREPARED:
		/* Every shard committed (a shard that failed to is finished by
		 * recovery at the next start, from the recorded decision). */
		twophase_forget(cfg, c->login_pool->database, f->gid);
		f->phase = PHASE_END;
		return false;
	default:
		return false;
	}
}

/* The statement ran on every leg: commit or roll back a write, then answer. */
static void finish(fanout_t *f)
{
	client_t *c = f->client;
	if (f->pipeline && f->error_idx >= 0 && !f->error_set)
		f->error_set = true; /* a statement failed: roll every leg back */
	if (f->write && end_transactions(f))
		return; /* answered when every leg is idle again */
	f->done = true;
	if (f->pipeline) {
		pipeline_emit(f);
		bool shown = f->error_idx >= 0 && f->error_idx < f->n_msgs &&
			     f->msgs[f->error_idx].complete;
		if (!shown && buf_avail(&f->error))
			buf_append(&c->out, buf_head(&f->error), buf_avail(&f->error));
		goto ready;
	}
	if (f->error_set) {
		/* What PostgreSQL would have acknowledged before the failure. */
		if (!f->header_sent) {
			bool parsed = false, bound = false;
			for (int i = 0; i < f->n_legs; i++) {
				parsed = parsed || f->legs[i].got_parse;
				bound = bound || f->legs[i].got_bind;
			}
			for (int i = 0; i < f->n_client_msgs; i++) {
				if (f->client_msgs[i] == 'P' && parsed)
					proto_put_empty(&c->out, '1');
				if (f->client_msgs[i] == 'B' && bound)
					proto_put_empty(&c->out, '2');
			}
		}
		buf_append(&c->out, buf_head(&f->error), buf_avail(&f->error));
	} else {
		if (f->merger) {
			pump(f);
			if (!f->header_sent)
				merged_header(f);
			emit_merged_rows(f);
		}
		if (!f->header_sent)
			emit_header(f, buf_avail(&f->row_desc) ? buf_head(&f->row_desc) : NULL,
				    buf_avail(&f->row_desc));
		if (f->row_leg)
			emit_returned(f);
		char tag[64];
		if (f->merger)
			snprintf(tag, sizeof(tag), "SELECT %llu",
				 (unsigned long long)merger_rows_out(f->merger));
		else if (strcmp(f->verb, "INSERT") == 0)
			snprintf(tag, sizeof(tag), "INSERT 0 %llu", (unsigned long long)f->rows);
		else if (f->verb[0])
			snprintf(tag, sizeof(tag), "%s %llu", f->verb, (unsigned long long)f->rows);
		else
			snprintf(tag, sizeof(tag), "SELECT 0");
		if (f->max_rows && f->emitted >= f->max_rows)
			proto_put_empty(&c->out, 's'); /* the row limit was reached */
		else
			put_client(f, 'C', tag, strlen(tag) + 1);
	}
ready:
	/* A read run before a deferred BEGIN reached any shard: the client's
	 * transaction is still open. */
	proto_put_ready(&c->out, c->deferred_begin ? 'T' : 'I');
	for (int i = 0; i < f->n_legs; i++)
		release_leg(&f->legs[i]);
	c->fan = NULL;
	c->state = CLIENT_IDLE;
	log_debug("fanout_done", "\"client\":%llu,\"legs\":%d,\"error\":%s",
		  (unsigned long long)c->id, f->n_legs, f->error_set ? "true" : "false");
	bool go_on = !f->no_continue;
	free_fanout(f);
	client_flush(c);
	if (go_on)
		client_process_input(c);
}

void fanout_after_batch(server_t *s)
{
	fanout_t *f = s->fan;
	client_t *c = f->client;
	if (f->txn) {
		if (f->ending) {
			f->no_continue = false; /* a server event: go on with the input */
			if (txn_legs_quiet(f))
				txn_end_step(f);
			else
				client_flush(c);
			return;
		}
		pipeline_emit(f);
		client_flush(c);
		if (f->unit_done) {
			f->unit_done = false;
			client_process_input(c);
		}
		return;
	}
	if (f->pipeline)
		pipeline_emit(f);
	pump(f);
	if (f->copy && copy_maybe_start(f))
		return;
	if (f->pipeline && !f->synced)
		client_flush(c);
	else if (f->copy && !f->copy_ended)
		client_flush(c); /* the rest of the client's data first */
	else if (f->n_acquired == f->n_legs && all_idle(f))
		finish(f);
	else
		client_flush(c);
}

void fanout_on_leg_closed(server_t *s)
{
	fanout_t *f = s->fan;
	int i = leg_index(f, s);
	s->fan = NULL;
	s->client = NULL;
	if (i < 0)
		return;
	fan_leg_t *leg = &f->legs[i];
	leg->server = NULL;
	leg->lost = true;
	bool was_busy = leg->running || leg->finishing > 0 || leg->preamble_z > 0;
	set_running(leg, false);
	leg->finishing = 0;
	leg->preamble_z = 0;
	if (f->merger && !leg->cancelled)
		merger_source_done(f->merger, i);
	if (was_busy && !leg->cancelled) {
		char text[200];
		snprintf(text, sizeof(text), "connection to shard %s lost during the statement",
			 s->worker->config->shards[leg->shard].name);
		set_error(f, "08006", text);
	}
	if (f->n_acquired == f->n_legs && all_idle(f) && !f->done && (!f->pipeline || f->synced) &&
	    (!f->copy || f->copy_ended))
		finish(f);
}

void fanout_on_pool_error(client_t *c, const char *sqlstate, const char *message)
{
	fanout_t *f = c->fan;
	set_error(f, sqlstate, message);
	if (f->pipeline) {
		/* Nothing more of the unit runs: its messages up to the Sync
		 * are dropped, and the legs roll back. */
		f->n_legs = f->n_acquired;
		f->acquiring = -1;
		f->error_idx = f->error_idx < 0 ? f->n_msgs : f->error_idx;
		c->state = CLIENT_ACTIVE;
		f->stream_failed = true;
		client_process_input(c);
		return;
	}
	/* The legs not acquired never ran. */
	f->n_legs = f->n_acquired;
	c->state = CLIENT_ACTIVE;
	if (all_idle(f))
		finish(f);
}

void fanout_abort(client_t *c)
{
	fanout_t *f = c->fan;
	c->fan = NULL;
	for (int i = 0; i < f->n_acquired; i++) {
		fan_leg_t *leg = &f->legs[i];
		if (leg->server)
			release_leg(leg);
	}
	free_fanout(f);
}

void fanout_cancel(client_t *c)
{
	fanout_t *f = c->fan;
	for (int i = 0; i < f->n_legs; i++)
		if (f->legs[i].server && f->legs[i].running)
			server_send_cancel(f->legs[i].server);
}

void fanout_resume(client_t *c)
{
	if (c->fan)
		pump(c->fan);
}

/* ---- starting ---- */

bool fanout_start(client_t *c, const uint8_t *unit, size_t unit_len, unit_route_t *u,
		  char *why, size_t whylen)
{
	worker_t *w = c->worker;
	const config_t *cfg = w->config;
	int n = u->route.n_shards;
	fanout_t *f = calloc(1, sizeof(*f) + sizeof(fan_leg_t) * (size_t)n);
	if (!f) {
		snprintf(why, whylen, "out of memory");
		return false;
	}
	f->client = c;
	f->write = !u->route.merge;
	f->extended = u->extended;
	f->n_legs = n;
	char *sql = strndup(u->text, u->text_len);
	if (!sql) {
		free(f);
		snprintf(why, whylen, "out of memory");
		return false;
	}
	bool ok = note_client_unit(f, c, unit, unit_len, why, whylen);
	if (ok && u->route.copy) {
		const shard_route_t *r = &u->route;
		if (u->extended) {
			snprintf(why, whylen, "COPY over several shards needs the simple query protocol");
			ok = false;
		}
		copy_split_opts_t o = {.format = r->copy_format,
				       .delimiter = r->copy_delimiter,
				       .null_string = r->copy_null_default ? NULL : r->copy_null,
				       .header = r->copy_header,
				       .quote = r->copy_quote,
				       .escape = r->copy_escape,
				       .key_position = r->copy_key_position,
				       .key_column = cfg->tables[r->copy_table].key};
		if (r->copy_format != 'c') {
			o.quote = 0;
			o.escape = 0;
		}
		if (ok && !(f->copy = copy_split_new(&o))) {
			snprintf(why, whylen, "COPY options the proxy cannot split by");
			ok = false;
		}
		f->copy_table = r->copy_table;
		f->copy_binary = r->copy_format == 'b';
	}
	if (ok && u->route.merge) {
		f->plan = merge_plan_build(sql, why, whylen);
		if (!f->plan)
			ok = false;
		else
		{
			int lengths[u->params.n + 1], formats[u->params.n + 1];
			for (int i = 0; i < u->params.n; i++) {
				lengths[i] = u->params.lengths[i];
				formats[i] = u->params.formats[i];
			}
			f->merger = merger_new(f->plan, n, u->params.n,
					       (const char *const *)u->params.values, lengths, formats,
					       why, whylen);
		}
		if (ok && !f->merger)
			ok = false;
	}
	const health_snapshot_t *snap = health_acquire();
	int k = 0;
	for (int s = shardset_first(&u->route.shards); ok && s >= 0;
	     s = shardset_next(&u->route.shards, s)) {
		fan_leg_t *leg = &f->legs[k++];
		leg->shard = s;
		leg->tx_status = 'I';
		route_class_t cls;
		route_class_init(&cls);
		cls.read = u->route.merge && u->replica_ok;
		if (!cls.read)
			route_class_unknown(&cls, "write over several shards");
		route_target_t t;
		if (route_choose(cfg, snap, &cls, s, cfg->routing.read_your_writes ? client_write_lsn(c, s) : 0,
				 &w->balance, NULL, NULL, &t) != ROUTE_OK) {
			snprintf(why, whylen, "shard %s has no primary available", cfg->shards[s].name);
			ok = false;
			break;
		}
		if (t.verify_lsn)
			t.node = 0; /* the primary has every write */
		leg->pool = pool_get(w, s, t.node, c->login_pool->user, c->login_pool->database);
		if (!leg->pool || !build_leg(f, leg, u, sql, why, whylen))
			ok = false;
	}
	health_release(snap);
	free(sql);
	for (int s = 0; s < CONFIG_MAX_SHARDS; s++)
		f->shard_leg[s] = -1;
	for (int l = 0; ok && l < f->n_legs; l++)
		f->shard_leg[f->legs[l].shard] = l;
	if (ok && u->route.row_shard) {
		f->row_leg = malloc(sizeof(int) * (size_t)(u->route.n_rows ? u->route.n_rows : 1));
		if (!f->row_leg) {
			ok = false;
		} else {
			f->n_rows = u->route.n_rows;
			for (int i = 0; i < f->n_rows; i++) {
				f->row_leg[i] = -1;
				for (int l = 0; l < f->n_legs; l++)
					if (f->legs[l].shard == u->route.row_shard[i])
						f->row_leg[i] = l;
			}
		}
	}
	if (!ok) {
		free_fanout(f);
		return false;
	}
	if (f->write && u->route.merge == false && cfg->routing.read_your_writes)
		c->unit_writes = false; /* the WAL positions of several shards: not tracked */
	log_debug("fanout", "\"client\":%llu,\"legs\":%d,\"write\":%s,\"reason\":\"%s\"",
		  (unsigned long long)c->id, n, f->write ? "true" : "false", u->route.message);
	c->fan = f;
	acquire_next(f);
	return true;
}

/* ---- pipelines, streamed ---- */

/*
 * Extended-protocol messages through a Sync whose statements may need
 * several shards, run as they arrive (a client may wait for answers
 * before it sends its Sync, as PostgreSQL streams them): each Bind is
 * routed by its statement and parameters to one shard; each shard's leg
 * runs its statements in order inside one transaction (BEGIN when the leg
 * is taken), and at the Sync every leg commits when every statement
 * succeeded and rolls back otherwise, as the pipeline's implicit
 * transaction would. The client gets its answers in the order of its
 * messages. A Bind that needs several shards fails the pipeline (0A000).
 */

static bool owe(fan_leg_t *leg, int idx, uint8_t kind)
{
	if (leg->n_owed % 64 == 0) {
		struct owed *o = realloc(leg->owed, sizeof(*o) * (size_t)(leg->n_owed + 64));
		if (!o)
			return false;
		leg->owed = o;
	}
	leg->owed[leg->n_owed++] = (struct owed){idx, kind};
	return true;
}

/* The server the pool linked to the client becomes the leg being
 * acquired, and its transaction begins (as the client's began, if it did). */
static void stream_take_server(fanout_t *f)
{
	client_t *c = f->client;
	fan_leg_t *leg = &f->legs[f->acquiring];
	server_t *s = c->server;
	c->server = NULL;
	leg->server = s;
	s->fan = f;
	s->client = c;
	relay_prepare_link(s, c);
	relay_set_stmt(s->worker, &s->unnamed, NULL);
	proto_put_query(&s->out, c->deferred_begin ? c->deferred_begin : "BEGIN");
	leg->preamble_z = 1;
	set_running(leg, true);
	f->n_acquired++;
	f->acquiring = -1;
}

/* The leg after the pool linked its server: BEGIN, then the statements. */
static void stream_linked(fanout_t *f)
{
	stream_take_server(f);
	client_process_input(f->client); /* the rest of the pipeline */
}

/*
 * The leg of a shard, taken from its pool when new. Returns its index, -1
 * while its server is being waited for (the message waits too), -2 when
 * it cannot be had.
 */
static int stream_leg(fanout_t *f, int shard)
{
	client_t *c = f->client;
	worker_t *w = c->worker;
	const config_t *cfg = w->config;
	for (int i = 0; i < f->n_legs; i++)
		if (f->legs[i].shard == shard)
			return f->legs[i].server ? i : -1;
	const health_snapshot_t *snap = health_acquire();
	route_class_t cls;
	route_class_unknown(&cls, "pipeline over several shards");
	route_target_t t;
	route_status_t rs = route_choose(cfg, snap, &cls, shard, 0, &w->balance, NULL, NULL, &t);
	health_release(snap);
	if (rs != ROUTE_OK) {
		char text[200];
		snprintf(text, sizeof(text), "shard %s has no primary available",
			 cfg->shards[shard].name);
		set_error(f, "08006", text);
		return -2;
	}
	fan_leg_t *leg = &f->legs[f->n_legs];
	leg->shard = shard;
	leg->tx_status = 'I';
	leg->pool = pool_get(w, shard, t.node, c->login_pool->user, c->login_pool->database);
	if (!leg->pool) {
		set_error(f, "53200", "out of memory");
		return -2;
	}
	int i = f->n_legs++;
	f->acquiring = i;
	c->pool = leg->pool;
	if (!pool_acquire(leg->pool, c))
		return -1; /* fanout_on_linked, or fanout_on_pool_error */
	c->state = CLIENT_ACTIVE;
	stream_take_server(f);
	return i;
}

/* Parse of a statement on a leg as its unnamed statement. */
static bool put_leg_parse(buf_t *out, const stmt_t *st)
{
	size_t len = 4 + 1 + st->query_len + 1 + st->types_len;
	if (!buf_reserve(out, len + 1))
		return false;
	buf_put_u8(out, 'P');
	buf_put_u32(out, (uint32_t)len);
	buf_put_u8(out, 0);
	buf_put_bytes(out, st->query, st->query_len);
	buf_put_u8(out, 0);
	buf_put_bytes(out, st->types, st->types_len);
	return true;
}

/* A client message answered with an error by the proxy (the pipeline fails there). */
static void stream_refuse(fanout_t *f, int idx, const char *sqlstate, const char *message)
{
	fan_msg_t *m = &f->msgs[idx];
	proto_put_error(&m->out, "ERROR", sqlstate, message);
	m->complete = true;
	m->leg = -2;
	if (f->error_idx < 0 || idx < f->error_idx)
		f->error_idx = idx;
}

/* Registers the client's Parse as its statement (relay_parse's bookkeeping). */
static bool stream_parse(fanout_t *f, const uint8_t *body, size_t len, int idx)
{
	const char *name = "";
	parse_reg_t reg = client_register_parse(f->client, body, len, false, &name, NULL);
	if (reg == PARSE_SAME || reg == PARSE_DUPLICATE) {
		char text[160];
		snprintf(text, sizeof(text), "prepared statement \"%.100s\" already exists", name);
		stream_refuse(f, idx, "42P05", text);
	}
	return reg != PARSE_MALFORMED && reg != PARSE_NO_MEMORY;
}

/* Routes one Bind; returns the shard, or -1 after answering it with an error. */
static int stream_route_bind(fanout_t *f, const uint8_t *msg, size_t total, int idx,
			     bool *writes)
{
	client_t *c = f->client;
	const config_t *cfg = c->worker->config;
	unit_route_t ur;
	route_class_t cls;
	proto_reader_t r;
	const char *name;
	size_t name_len;
	proto_reader_init(&r, msg + 5, total - 5);
	proto_read_cstr(&r, NULL, NULL);
	proto_read_cstr(&r, &name, &name_len);
	stmt_t *st = name_len ? hashmap_get(&c->stmts, name, name_len) : c->unnamed;
	if (!st) {
		char text[160];
		snprintf(text, sizeof(text), "prepared statement \"%s\" does not exist", name);
		stream_refuse(f, idx, "26000", text);
		return -1;
	}
	client_classify_stmt(c, st, &cls);
	*writes = !cls.read;
	int shard = cfg->default_shard;
	if (cls.hint_shard >= 0) {
		shard = cls.hint_shard;
	} else if (cls.configured_tables) {
		sharding_route_message(c, 'B', msg, total, &cls, &ur);
		if (ur.kind == UNIT_ROUTE_SHARD) {
			shard = ur.shard;
		} else if (ur.kind == UNIT_ROUTE_REFUSE) {
			stream_refuse(f, idx, ur.sqlstate, ur.message);
			shard = -1;
		} else if (ur.kind == UNIT_ROUTE_PAUSE) {
			stream_refuse(f, idx, "55P03", REMAP_BUSY_MESSAGE);
			shard = -1;
		} else if (ur.kind != UNIT_ROUTE_DEFAULT && !f->txn && f->binds_sent == 0) {
			shard = -3; /* the first statement to run needs several shards */
		} else if (ur.kind != UNIT_ROUTE_DEFAULT) {
			stream_refuse(f, idx, "0A000",
				      "a statement over several shards inside a pipeline of several "
				      "statements is not supported; send a Sync after it");
			shard = -1;
		}
		unit_route_free(&ur);
	}
	return shard;
}

/* ---- a client transaction over several shards ---- */

/*
 * Whether the transaction may write on shard (refusing the statement at
 * client message idx when not): a second shard's first write needs
 * two-phase commit, since only that can commit both or neither.
 */
static bool txn_may_write(fanout_t *f, int shard, int idx)
{
	const config_t *cfg = f->client->worker->config;
	if (cfg->routing.two_phase_commit)
		return true;
	for (int i = 0; i < f->n_legs; i++) {
		if (f->legs[i].shard == shard || !f->legs[i].wrote)
			continue;
		char text[320];
		snprintf(text, sizeof(text),
			 "this transaction already wrote on shard %s; a write on shard %s as well "
			 "needs routing.two_phase_commit: true",
			 cfg->shards[f->legs[i].shard].name, cfg->shards[shard].name);
		stream_refuse(f, idx, "0A000", text);
		return false;
	}
	return true;
}

/* Every leg answered what the end of the transaction sent it. */
static bool txn_legs_quiet(const fanout_t *f)
{
	if (f->acquiring >= 0)
		return false;
	for (int i = 0; i < f->n_legs; i++)
		if (f->legs[i].server && (f->legs[i].finishing > 0 || f->legs[i].preamble_z > 0))
			return false;
	return true;
}

/* COMMIT or ROLLBACK of the transaction, one step per call. */
static void txn_end_step(fanout_t *f)
{
	client_t *c = f->client;
	bool failed_before = f->error_set && !f->rollback;
	if (!failed_before)
		f->error_set = f->rollback;
	if (end_transactions(f))
		return; /* called again once every leg answered */
	bool commit_failed = !f->rollback && buf_avail(&f->error) > 0;
	const char *tag = f->rollback ? "ROLLBACK" : "COMMIT";
	if (f->end_extended) {
		/* Parse, Bind, Describe, Execute of COMMIT/ROLLBACK, answered
		 * here (what the client was not answered yet). */
		for (int i = f->next_emit; i < f->n_msgs; i++) {
			switch (f->msgs[i].type) {
			case 'P':
				proto_put_empty(&c->out, '1');
				break;
			case 'B':
				proto_put_empty(&c->out, '2');
				break;
			case 'D':
				proto_put_empty(&c->out, 'n');
				break;
			case 'C':
				proto_put_empty(&c->out, '3');
				break;
			case 'E':
				if (commit_failed)
					buf_append(&c->out, buf_head(&f->error), buf_avail(&f->error));
				else
					proto_put_message(&c->out, 'C', tag, strlen(tag) + 1);
				break;
			default:
				break;
			}
		}
	} else if (commit_failed) {
		buf_append(&c->out, buf_head(&f->error), buf_avail(&f->error));
	} else {
		proto_put_message(&c->out, 'C', tag, strlen(tag) + 1);
	}
	proto_put_ready(&c->out, 'I');
	for (int i = 0; i < f->n_legs; i++) {
		set_running(&f->legs[i], false);
		release_leg(&f->legs[i]);
	}
	log_debug("fanout_txn_done", "\"client\":%llu,\"legs\":%d,\"outcome\":\"%s\"",
		  (unsigned long long)c->id, f->n_legs,
		  commit_failed ? "failed" : f->rollback ? "rollback" : "commit");
	bool go_on = !f->no_continue;
	c->fan = NULL;
	c->state = CLIENT_IDLE;
	client_end_transaction(c);
	free_fanout(f);
	client_flush(c);
	if (go_on)
		client_process_input(c);
}

/* A Bind of COMMIT or ROLLBACK inside the transaction: the end, answered
 * at the Sync. Returns false for any other statement. */
static bool txn_end_bind(fanout_t *f, const uint8_t *msg, size_t total)
{
	client_t *c = f->client;
	proto_reader_t r;
	const char *name;
	size_t name_len;
	proto_reader_init(&r, msg + 5, total - 5);
	if (!proto_read_cstr(&r, NULL, NULL) || !proto_read_cstr(&r, &name, &name_len))
		return false;
	stmt_t *st = name_len ? hashmap_get(&c->stmts, name, name_len) : c->unnamed;
	if (!st)
		return false;
	route_class_t cls;
	client_classify_stmt(c, st, &cls);
	if (!cls.txn_end)
		return false;
	const analysis_t *a = analyzer_get(c->worker->analyzer, st->query, st->query_len);
	if (!a || a->n_statement_records != 1 || a->statements[0].txn.chain)
		return false;
	bool commit = a->statements[0].txn.op == ANALYZE_TXN_COMMIT;
	f->end_extended = true;
	f->rollback = !commit || f->aborted;
	return true;
}

/* A simple Query inside the transaction: on the shard its keys name. */
static bool txn_query(fanout_t *f, const uint8_t *msg, size_t total)
{
	client_t *c = f->client;
	worker_t *w = c->worker;
	const config_t *cfg = w->config;
	int idx = f->n_msgs;
	fan_msg_t *m = &f->msgs[idx];
	m->type = 'Q';
	m->leg = -2;
	proto_reader_t r;
	const char *sql;
	size_t sql_len;
	proto_reader_init(&r, msg + 5, total - 5);
	if (!proto_read_cstr(&r, &sql, &sql_len)) {
		client_fatal(c, "08P01", "invalid Query message");
		return false;
	}
	route_class_t cls;
	client_classify_text(c, sql, sql_len, &cls);
	if (cls.txn_end) {
		/* COMMIT, END, ROLLBACK, ABORT (a failed transaction rolls back). */
		const analysis_t *a = analyzer_get(w->analyzer, sql, sql_len);
		bool commit = a && a->n_statement_records == 1 &&
			      a->statements[0].txn.op == ANALYZE_TXN_COMMIT && !a->statements[0].txn.chain;
		bool chain = a && a->n_statement_records == 1 && a->statements[0].txn.chain;
		if (!chain) {
			f->n_msgs++;
			f->synced = true;
			f->ending = true;
			f->rollback = !commit || f->aborted;
			f->phase = PHASE_RUN;
			return false; /* consumed; txn_end_step runs after the feed */
		}
	}
	const char *refusal = NULL;
	char text[320];
	unit_route_t ur;
	int shard = cfg->default_shard;
	const analysis_t *a = analyzer_get(w->analyzer, sql, sql_len);
	if (f->aborted) {
		proto_put_error(&m->out, "ERROR", "25P02",
				"current transaction is aborted, commands ignored until end of "
				"transaction block");
		m->complete = true;
	} else if (!a || (a->kind != ANALYZE_KIND_READ && a->kind != ANALYZE_KIND_WRITE)) {
		refusal = "transaction control and session statements (SAVEPOINT, SET, PREPARE, "
			  "...) are not supported in a transaction over several shards";
	} else if (cls.hint_shard >= 0) {
		shard = cls.hint_shard;
	} else if (cls.configured_tables) {
		sharding_route_message(c, 'Q', msg, total, &cls, &ur);
		if (ur.kind == UNIT_ROUTE_SHARD) {
			shard = ur.shard;
		} else if (ur.kind == UNIT_ROUTE_REFUSE) {
			snprintf(text, sizeof(text), "%s", ur.message);
			refusal = text;
		} else if (ur.kind == UNIT_ROUTE_PAUSE) {
			refusal = REMAP_BUSY_MESSAGE;
		} else if (ur.kind != UNIT_ROUTE_DEFAULT) {
			refusal = "a statement over several shards inside a transaction over several "
				  "shards is not supported";
		}
		unit_route_free(&ur);
	}
	if (refusal) {
		proto_put_error(&m->out, "ERROR", "0A000", refusal);
		m->complete = true;
	}
	if (!m->complete && !cls.read && !txn_may_write(f, shard, idx))
		m->complete = true;
	if (m->complete) {
		f->aborted = true;
		f->n_msgs++;
		f->synced = true;
		return false;
	}
	int l = stream_leg(f, shard);
	if (l == -1)
		return false; /* the Query again once the leg is linked */
	if (l == -2) {
		proto_put_error(&m->out, "ERROR", "08006", "a shard of the transaction is not available");
		m->complete = true;
		f->aborted = true;
		f->n_msgs++;
		f->synced = true;
		return false;
	}
	fan_leg_t *leg = &f->legs[l];
	if (!cls.read)
		leg->wrote = true;
	m->leg = l;
	relay_set_stmt(w, &leg->server->unnamed, NULL);
	buf_append(&leg->server->out, msg, total);
	owe(leg, idx, OWE_QUERY);
	f->unit_owed++;
	f->n_msgs++;
	f->synced = true;
	return false;
}

/*
 * The client's transaction, so far on its server's shard, needs another
 * shard: it goes on as a transaction fan-out whose first leg is that
 * server. wrote: the transaction has written there.
 */
bool fanout_start_txn(client_t *c, bool wrote)
{
	const config_t *cfg = c->worker->config;
	fanout_t *f = calloc(1, sizeof(*f) + sizeof(fan_leg_t) * (size_t)cfg->n_shards);
	if (!f)
		return false;
	server_t *s = c->server;
	f->client = c;
	f->write = true;
	f->extended = true;
	f->pipeline = true;
	f->txn = true;
	f->error_idx = -1;
	f->acquiring = -1;
	f->last_leg = -1;
	fan_leg_t *leg = &f->legs[0];
	leg->shard = s->pool->shard;
	leg->pool = s->pool;
	leg->server = s;
	leg->tx_status = s->tx_status;
	set_running(leg, true);
	leg->wrote = wrote;
	f->n_legs = f->n_acquired = 1;
	s->fan = f;
	c->server = NULL;
	c->fan = f;
	c->state = CLIENT_ACTIVE;
	log_debug("fanout_txn", "\"client\":%llu,\"first_shard\":%d", (unsigned long long)c->id,
		  leg->shard);
	return true;
}

/* Takes the client's next pipeline message; false: wait (for more input or a leg). */
static bool stream_message(fanout_t *f, uint8_t type, const uint8_t *msg, size_t total)
{
	client_t *c = f->client;
	if (f->n_msgs == f->cap_msgs) {
		int cap = f->cap_msgs ? f->cap_msgs * 2 : 64;
		fan_msg_t *m = realloc(f->msgs, sizeof(*m) * (size_t)cap);
		if (!m) {
			client_fatal(c, "53200", "out of memory");
			return false;
		}
		memset(m + f->cap_msgs, 0, sizeof(*m) * (size_t)(cap - f->cap_msgs));
		f->msgs = m;
		f->cap_msgs = cap;
	}
	int idx = f->n_msgs;
	fan_msg_t *m = &f->msgs[idx];
	const uint8_t *body = msg + 5;
	size_t body_len = total - 5;
	bool skipping = f->error_idx >= 0 || f->stream_failed;
	if (type == 'S') {
		m->type = 'S';
		m->leg = -1;
		f->n_msgs++;
		f->synced = true;
		if (f->end_extended) {
			f->ending = true;
			f->phase = PHASE_RUN;
			return false;
		}
		static const uint8_t sync[] = {'S', 0, 0, 0, 4};
		for (int i = 0; i < f->n_legs; i++) {
			fan_leg_t *leg = &f->legs[i];
			/* In a transaction, only the legs this unit used. */
			if (!leg->server || (f->txn && leg->n_owed == 0))
				continue;
			buf_append(&leg->server->out, sync, sizeof(sync));
			owe(leg, idx, OWE_SYNC);
			f->unit_owed++;
		}
		return false;
	}
	if (skipping) {
		/* After an error, PostgreSQL ignores everything up to the Sync. */
		m->type = type;
		m->leg = -3;
		f->n_msgs++;
		return true;
	}
	switch (type) {
	case 'Q':
		if (!f->txn) {
			client_fatal(c, "08P01", "simple Query inside an extended-protocol pipeline");
			return false;
		}
		return txn_query(f, msg, total);
	case 'P':
		m->type = 'P';
		m->leg = -1;
		if (!stream_parse(f, body, body_len, idx)) {
			client_fatal(c, "08P01", "invalid Parse message");
			return false;
		}
		break;
	case 'H': {
		m->type = 'H';
		m->leg = -1;
		static const uint8_t flush[] = {'H', 0, 0, 0, 4};
		for (int i = 0; i < f->n_legs; i++)
			if (f->legs[i].server)
				buf_append(&f->legs[i].server->out, flush, sizeof(flush));
		break;
	}
	case 'C': {
		proto_reader_t r;
		uint8_t what = 0;
		const char *name;
		size_t name_len;
		proto_reader_init(&r, body, body_len);
		m->type = 'C';
		m->leg = -1;
		if (proto_read_u8(&r, &what) && proto_read_cstr(&r, &name, &name_len) && what == 'S')
			client_forget_stmt(c, name, name_len);
		break;
	}
	case 'B': {
		m->type = 'B';
		if (f->txn && txn_end_bind(f, msg, total)) {
			m->leg = -4; /* answered with the end of the transaction */
			break;
		}
		if (f->txn && f->aborted) {
			stream_refuse(f, idx, "25P02",
				      "current transaction is aborted, commands ignored until end of "
				      "transaction block");
			f->n_msgs++;
			return true;
		}
		bool writes = false;
		int shard = stream_route_bind(f, msg, total, idx, &writes);
		if (shard == -3) {
			f->handoff = true;
			return false; /* not taken: see stream_handoff */
		}
		if (shard >= 0 && f->txn && writes && !txn_may_write(f, shard, idx))
			shard = -1;
		if (shard < 0) {
			if (f->txn)
				f->aborted = true;
			f->n_msgs++;
			return true;
		}
		int l = stream_leg(f, shard);
		if (l >= 0 && writes)
			f->legs[l].wrote = true;
		if (l >= 0)
			f->binds_sent++;
		if (l == -1)
			return false; /* this Bind again once the leg is linked */
		if (l == -2) {
			stream_refuse(f, idx, "08006", "a shard of the pipeline is not available");
			f->n_msgs++;
			return true;
		}
		proto_reader_t r;
		const char *name;
		size_t name_len;
		proto_reader_init(&r, body, body_len);
		proto_read_cstr(&r, NULL, NULL);
		proto_read_cstr(&r, &name, &name_len);
		size_t names = r.pos;
		stmt_t *st = name_len ? hashmap_get(&c->stmts, name, name_len) : c->unnamed;
		fan_leg_t *leg = &f->legs[l];
		buf_t *out = &leg->server->out;
		m->leg = l;
		f->last_leg = l;
		if (!put_leg_parse(out, st) || !owe(leg, idx, OWE_DROP_PARSE) ||
		    !buf_reserve(out, 7 + body_len - names)) {
			client_fatal(c, "53200", "out of memory");
			return false;
		}
		buf_put_u8(out, 'B');
		buf_put_u32(out, (uint32_t)(4 + 2 + body_len - names));
		buf_put_u8(out, 0);
		buf_put_u8(out, 0);
		buf_put_bytes(out, body + names, body_len - names);
		owe(leg, idx, OWE_BIND);
		break;
	}
	case 'D': {
		proto_reader_t r;
		uint8_t what = 0;
		const char *name;
		size_t name_len;
		if (f->end_extended) {
			m->type = 'D';
			m->leg = -4;
			break;
		}
		proto_reader_init(&r, body, body_len);
		if (!proto_read_u8(&r, &what) || !proto_read_cstr(&r, &name, &name_len)) {
			client_fatal(c, "08P01", "invalid Describe message");
			return false;
		}
		m->type = 'D';
		int l = f->last_leg;
		if (what == 'S') {
			stmt_t *st = name_len ? hashmap_get(&c->stmts, name, name_len) : c->unnamed;
			if (!st) {
				char text[160];
				snprintf(text, sizeof(text), "prepared statement \"%s\" does not exist",
					 name);
				stream_refuse(f, idx, "26000", text);
				break;
			}
			if (l < 0) {
				l = stream_leg(f, c->worker->config->default_shard);
				if (l == -1)
					return false;
				if (l == -2) {
					stream_refuse(f, idx, "08006", "the default shard is not available");
					break;
				}
			}
			static const uint8_t d[] = {'D', 0, 0, 0, 6, 'S', 0};
			put_leg_parse(&f->legs[l].server->out, st);
			owe(&f->legs[l], idx, OWE_DROP_PARSE);
			buf_append(&f->legs[l].server->out, d, sizeof(d));
		} else {
			if (l < 0) {
				stream_refuse(f, idx, "34000", "portal does not exist");
				break;
			}
			static const uint8_t d[] = {'D', 0, 0, 0, 6, 'P', 0};
			buf_append(&f->legs[l].server->out, d, sizeof(d));
		}
		m->leg = l;
		owe(&f->legs[l], idx, OWE_DESCRIBE);
		break;
	}
	case 'E': {
		m->type = 'E';
		if (f->end_extended) {
			m->leg = -4;
			break;
		}
		int l = f->last_leg;
		if (l < 0) {
			stream_refuse(f, idx, "34000", "portal does not exist");
			break;
		}
		uint32_t max_rows = 0;
		proto_reader_t r;
		proto_reader_init(&r, body, body_len);
		proto_read_cstr(&r, NULL, NULL);
		proto_read_u32(&r, &max_rows);
		uint8_t e[10] = {'E', 0, 0, 0, 9, 0};
		buf_set_u32(e + 6, max_rows);
		buf_append(&f->legs[l].server->out, e, sizeof(e));
		m->leg = l;
		owe(&f->legs[l], idx, OWE_EXECUTE);
		break;
	}
	default: {
		char text[96];
		snprintf(text, sizeof(text), "invalid frontend message type %d", type);
		client_fatal(c, "08P01", text);
		return false;
	}
	}
	f->n_msgs++;
	return true;
}

/* A leg's connection has more unsent than IO_HIGH_WATER: stop reading the client. */
static bool legs_backlogged(const fanout_t *f)
{
	for (int i = 0; i < f->n_legs; i++)
		if (f->legs[i].server && buf_avail(&f->legs[i].server->out) > IO_HIGH_WATER)
			return true;
	return false;
}

bool fanout_wants_input(const client_t *c)
{
	const fanout_t *f = c->fan;
	if (f->copy)
		return f->copy_started && !f->copy_ended && !legs_backlogged(f);
	return f->pipeline && !f->synced && f->acquiring < 0 && !f->ending;
}

void fanout_on_server_drained(server_t *s)
{
	fanout_t *f = s->fan;
	if (f->copy && f->copy_started && !f->copy_ended && buf_avail(&s->out) < IO_LOW_WATER &&
	    !legs_backlogged(f))
		client_process_input(f->client);
}

/*
 * The pipeline so far only prepared and described statements (asyncpg
 * sends Parse, Describe, Flush and waits), and its first Bind needs several
 * shards: once the rest of the unit (through Sync) is here, the streamed
 * fan-out ends (its legs ran nothing: they are closed) and the unit from
 * that Bind on runs as an ordinary fan-out. Returns the bytes taken.
 */
static size_t stream_handoff(fanout_t *f, const uint8_t *data, size_t pos, size_t len)
{
	client_t *c = f->client;
	const config_t *cfg = c->worker->config;
	bool complete = false;
	for (size_t p = pos; p < len;) {
		uint8_t type;
		size_t total;
		if (proto_frame(data + p, len - p, cfg->max_message_size, &type, &total) != FRAME_OK)
			break;
		p += total;
		if (type == 'S') {
			complete = true;
			break;
		}
	}
	f->handoff = false;
	if (!complete) {
		client_flush(c);
		return pos; /* fed again with more input */
	}
	pipeline_emit(f);
	for (int i = 0; i < f->n_legs; i++) {
		set_running(&f->legs[i], false);
		release_leg(&f->legs[i]); /* mid-transaction: closed */
	}
	c->fan = NULL;
	c->state = CLIENT_IDLE;
	log_debug("fanout_handoff", "\"client\":%llu", (unsigned long long)c->id);
	free_fanout(f);
	client_flush(c);
	return pos; /* the caller routes the rest of the unit */
}

/* The client's next message: 1 when whole, 0 when more must come, -1
 * when its length is invalid (the client is then closed). */
static int next_frame(client_t *c, const uint8_t *data, size_t len, uint8_t *type, size_t *total)
{
	frame_status_t st = proto_frame(data, len, c->worker->config->max_message_size, type, total);
	if (st == FRAME_NEED_MORE)
		return 0;
	if (st != FRAME_OK) {
		client_fatal(c, "08P01", "invalid message length");
		return -1;
	}
	return 1;
}

size_t fanout_feed(client_t *c, const uint8_t *data, size_t len)
{
	fanout_t *f = c->fan;
	size_t pos = 0;
	if (f->copy)
		return copy_feed(f, data, len);
	while (pos < len && c->fan == f && fanout_wants_input(c) && c->state != CLIENT_CLOSED) {
		uint8_t type;
		size_t total;
		int got = next_frame(c, data + pos, len - pos, &type, &total);
		if (got == 0)
			break;
		if (got < 0)
			return pos;
		if (type == 'X') {
			client_close(c, "client terminated");
			return pos + total;
		}
		if (!stream_message(f, type, data + pos, total)) {
			if (f->synced || f->ending)
				pos += total;
			if (f->handoff)
				return stream_handoff(f, data, pos, len);
			break;
		}
		pos += total;
	}
	if (c->state == CLIENT_CLOSED || c->fan != f)
		return pos;
	for (int i = 0; i < f->n_legs; i++)
		if (f->legs[i].server)
			server_flush(f->legs[i].server);
	pipeline_emit(f);
	f->unit_done = false; /* this loop goes on with the input */
	if (!f->txn && f->synced && f->n_acquired == f->n_legs && all_idle(f)) {
		f->no_continue = true; /* the caller goes on with the input */
		finish(f);
	} else if (f->txn && f->ending && txn_legs_quiet(f)) {
		f->no_continue = true;
		txn_end_step(f);
	} else {
		client_flush(c);
	}
	return pos;
}

bool fanout_start_stream(client_t *c)
{
	fanout_t *f = calloc(1, sizeof(*f) + sizeof(fan_leg_t) * (size_t)c->worker->config->n_shards);
	if (!f)
		return false;
	f->client = c;
	f->write = true;
	f->extended = true;
	f->pipeline = true;
	f->error_idx = -1;
	f->acquiring = -1;
	f->last_leg = -1;
	c->fan = f;
	c->state = CLIENT_ACTIVE;
	log_debug("fanout_pipeline", "\"client\":%llu", (unsigned long long)c->id);
	return true;
}

/* ---- COPY ... FROM STDIN over several shards ---- */

/* Once every leg is in COPY mode the client gets one CopyInResponse and
 * may send its data. Returns true when the client's input was processed. */
static bool copy_maybe_start(fanout_t *f)
{
	if (f->copy_started || f->error_set)
		return false;
	for (int i = 0; i < f->n_legs; i++)
		if (!f->legs[i].copy_in)
			return false;
	f->copy_started = true;
	buf_append(&f->client->out, buf_head(&f->copy_in), buf_avail(&f->copy_in));
	client_flush(f->client);
	client_process_input(f->client); /* data the client sent already */
	return true;
}

static void leg_copy_data(fan_leg_t *leg, const uint8_t *data, size_t len)
{
	if (!leg->server || !buf_reserve(&leg->server->out, len + 5))
		return;
	buf_put_u8(&leg->server->out, 'd');
	buf_put_u32(&leg->server->out, (uint32_t)(len + 4));
	buf_put_bytes(&leg->server->out, data, len);
}

/* Every leg gets the same bytes: a header line, the binary file header. */
static void copy_header(void *arg, const uint8_t *line, size_t len)
{
	fanout_t *f = arg;
	for (int i = 0; i < f->n_legs; i++)
		leg_copy_data(&f->legs[i], line, len);
}

/* Ends the legs' COPY with CopyFail (their transactions then roll back). */
static void copy_fail_legs(fanout_t *f, const char *sqlstate, const char *message)
{
	set_error(f, sqlstate, message);
	if (f->copy_failed)
		return;
	f->copy_failed = true;
	for (int i = 0; i < f->n_legs; i++) {
		fan_leg_t *leg = &f->legs[i];
		if (!leg->server)
			continue;
		proto_put_message(&leg->server->out, 'f', "shardgate: COPY failed", 23);
		server_flush(leg->server);
	}
}

/* One row of the client's data, to the shard of its key. */
static void copy_row(void *arg, const uint8_t *row, size_t row_len, const char *key, size_t key_len,
		     bool key_is_null)
{
	fanout_t *f = arg;
	client_t *c = f->client;
	const config_t *cfg = c->worker->config;
	const cfg_table_t *table = &cfg->tables[f->copy_table];
	char text[320];
	if (f->copy_failed)
		return;
	if (key_is_null) {
		snprintf(text, sizeof(text),
			 "null value in column \"%s\" of relation \"%s\" violates not-null constraint "
			 "(the shard key)",
			 table->key, table->name);
		copy_fail_legs(f, "23502", text);
		return;
	}
	int shard = f->copy_binary ? shard_of_binary(cfg, f->copy_table, (const uint8_t *)key, key_len)
				   : shard_of_text(cfg, f->copy_table, key, key_len);
	if (shard == -2) {
		char err[256] = "";
		shard = directory_cached(cfg, f->copy_table, key, key_len);
		if (shard < 0)
			shard = directory_fetch(cfg, c->login_pool->database, f->copy_table, key, key_len,
						true, err, sizeof(err));
		if (shard < 0) {
			copy_fail_legs(f, "08006", err[0] ? err : "directory lookup failed");
			return;
		}
	}
	if (shard < 0 || f->shard_leg[shard] < 0) {
		snprintf(text, sizeof(text),
			 "key value %.*s of table \"%s\" has no shard (not a %s, or outside every range)",
			 (int)(key_len < 80 ? key_len : 80), key, table->name,
			 key_type_name(table->key_type));
		copy_fail_legs(f, "23514", text);
		return;
	}
	leg_copy_data(&f->legs[f->shard_leg[shard]], row, row_len);
}

/* The client's COPY messages: CopyData split by key, CopyDone, CopyFail. */
static size_t copy_feed(fanout_t *f, const uint8_t *data, size_t len)
{
	client_t *c = f->client;
	size_t pos = 0;
	char err[320];
	while (pos < len && c->fan == f && !f->copy_ended && !legs_backlogged(f)) {
		uint8_t type;
		size_t total;
		int got = next_frame(c, data + pos, len - pos, &type, &total);
		if (got == 0)
			break;
		if (got < 0)
			return pos;
		const uint8_t *body = data + pos + 5;
		size_t body_len = total - 5;
		pos += total;
		switch (type) {
		case 'd':
			if (!f->copy_failed &&
			    !copy_split_feed(f->copy, body, body_len, copy_row, copy_header, f, err,
					     sizeof(err)))
				copy_fail_legs(f, copy_split_sqlstate(f->copy), err);
			break;
		case 'c':
			f->copy_ended = true;
			if (!f->copy_failed &&
			    !copy_split_finish(f->copy, copy_row, copy_header, f, err, sizeof(err)))
				copy_fail_legs(f, copy_split_sqlstate(f->copy), err);
			if (f->copy_failed)
				break;
			for (int i = 0; i < f->n_legs; i++) {
				fan_leg_t *leg = &f->legs[i];
				if (!leg->server)
					continue;
				if (f->copy_binary) {
					static const uint8_t trailer[2] = {0xff, 0xff};
					leg_copy_data(leg, trailer, sizeof(trailer));
				}
				proto_put_empty(&leg->server->out, 'c');
			}
			break;
		case 'f':
			f->copy_ended = true;
			copy_fail_legs(f, "57014", "COPY from stdin failed: the client sent CopyFail");
			break;
		case 'H':
		case 'S':
			break; /* ignored during COPY, as PostgreSQL does */
		default:
			snprintf(err, sizeof(err), "unexpected message type 0x%02X during COPY from stdin",
				 type);
			f->copy_ended = true;
			copy_fail_legs(f, "08P01", err);
			break;
		}
	}
	if (c->state == CLIENT_CLOSED || c->fan != f)
		return pos;
	for (int i = 0; i < f->n_legs; i++)
		if (f->legs[i].server)
			server_flush(f->legs[i].server);
	if (f->copy_ended && f->n_acquired == f->n_legs && all_idle(f)) {
		f->no_continue = true;
		finish(f);
	} else {
		client_flush(c);
	}
	return pos;
}
