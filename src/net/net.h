/*
 * net.h - the proxy's connections: workers, clients and server connections.
 *
 * Each worker thread owns an event loop, a listener (SO_REUSEPORT), its
 * clients, its server connections and its pools. A client lives on one
 * worker for its life and uses only that worker's server connections, so
 * nothing on the per-message path takes a lock. Cross-thread traffic is
 * rare and goes through events activated from the other thread: a
 * CancelRequest that arrives on another worker's listener (a small locked
 * queue), a rebalance cut-over or a RELOAD (remap.c: each worker takes the
 * new map at its next routing decision), an admin command that lists every
 * worker's clients, servers or pools (admin.c), and a graceful shutdown.
 */
#ifndef SHARDGATE_NET_H
#define SHARDGATE_NET_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "analyze/analyze.h"
#include "config/config.h"
#include "core/buf.h"
#include "core/hashmap.h"
#include "proto/auth.h"
#include "route/route.h"
#include "route/shard.h"

struct event;
struct event_base;
struct ssl_st;
typedef struct worker worker_t;
typedef struct client client_t;
typedef struct server server_t;
typedef struct pool pool_t;
typedef struct fanout fanout_t;

/*
 * Run-time parameters of a session: name -> value. `synced_fp` is the XOR
 * of a hash of every (name, value) that a server connection must match
 * before serving a client (the synced reported parameters and the extras),
 * kept up to date on every change, so that "nothing to set" is one compare.
 */
typedef struct {
	int n;
	int cap;
	char **names;
	char **values;
	uint8_t *flags; /* PARAM_* */
	uint64_t synced_fp;
} params_t;

#define PARAM_EXTRA 1 /* not reported by the server (GUC_REPORT): set by us */

void params_set(params_t *p, const char *name, const char *value, uint8_t flags);
const char *params_get(const params_t *p, const char *name);
void params_remove(params_t *p, const char *name);
void params_copy(params_t *dst, const params_t *src);
void params_free(params_t *p);
/* True for the reported parameters a client may change and a server
 * connection must therefore match before it serves that client. */
bool params_is_synced(const char *name);

/*
 * A prepared statement's text and parameter types, interned per worker so
 * that clients preparing the same statement share one server-side copy
 * (named "_sg<id>") on every server connection of the worker.
 */
typedef struct stmt {
	uint64_t id;
	int refs;
	char *query;
	size_t query_len;
	uint8_t *types; /* Int16 count + Int32 OIDs as in Parse */
	size_t types_len;
	uint8_t *key; /* types + query, the interning key */
	size_t key_len;
	bool classified; /* route_class is set (analysed once, at first use) */
	route_class_t route_class;
} stmt_t;

/* A client's Parse (its body, after type and length) made its statement,
 * named or unnamed, as relay_parse does for a client whose names the proxy
 * keeps. replace: an existing name is replaced instead of reported. */
typedef enum {
	PARSE_REGISTERED,
	PARSE_SAME,      /* the name exists with this very statement */
	PARSE_DUPLICATE, /* the name exists with another statement (42P05) */
	PARSE_MALFORMED,
	PARSE_NO_MEMORY
} parse_reg_t;
parse_reg_t client_register_parse(client_t *c, const uint8_t *body, size_t len, bool replace,
				  const char **name, stmt_t **existing);
/* Forgets the client's named statement (Close, DEALLOCATE); no name: nothing. */
void client_forget_stmt(client_t *c, const char *name, size_t len);

stmt_t *stmt_intern(worker_t *w, const char *query, size_t query_len, const uint8_t *types,
		    size_t types_len);
void stmt_ref(stmt_t *s);
void stmt_unref(worker_t *w, stmt_t *s);

/* What a server owes for each message sent to it, in order. */
typedef enum {
	PENDING_QUERY,	  /* simple Query or FunctionCall: ends at ReadyForQuery */
	PENDING_SYNC,	  /* ends at ReadyForQuery */
	PENDING_PARSE,	  /* ParseComplete */
	PENDING_BIND,	  /* BindComplete */
	PENDING_CLOSE,	  /* CloseComplete */
	PENDING_DESCRIBE, /* [ParameterDescription] RowDescription | NoData */
	PENDING_EXECUTE	  /* CommandComplete | EmptyQueryResponse | PortalSuspended */
} pending_kind_t;

typedef enum {
	ACTION_FORWARD, /* the client's message: relay the responses */
	ACTION_DROP,	/* the proxy's own message: swallow the responses */
	ACTION_SYNTH	/* answered by the proxy: send `synth` when it is first */
} pending_action_t;

typedef struct {
	uint8_t kind;
	uint8_t action;
	uint8_t synth;	    /* message type to synthesize */
	int64_t unit_start_us; /* QUERY/SYNC: when the unit's first message went */
	bool capture_lsn;   /* the proxy's WAL position query: keep the value */
	stmt_t *created;    /* a Parse that registered this statement */
	char *error;	    /* ACTION_SYNTH of an ErrorResponse: its message */
} pending_t;

typedef enum {
	SERVER_CONNECTING,
	SERVER_LOGIN,
	SERVER_IDLE,   /* in its pool's idle list */
	SERVER_ACTIVE, /* linked to a client */
	SERVER_RESETTING,
	SERVER_CLOSED
} server_state_t;

const char *server_state_name(server_state_t state);

typedef struct server_stmt {
	stmt_t *stmt;
	struct server_stmt *prev, *next; /* LRU, most recent first */
} server_stmt_t;

struct server {
	worker_t *worker;
	pool_t *pool;
	uint64_t id;
	int fd;
	struct ssl_st *ssl; /* TLS (backend.tls), once the server said 'S' */
	uint8_t tls;	    /* conn_tls_t (net/tls.h) */
	struct event *ev_read;
	struct event *ev_write;
	struct event *ev_timer;
	server_state_t state;
	buf_t in, out;
	bool read_paused; /* its client's output is full (backpressure) */
	client_t *client;
	uint32_t backend_pid, backend_key;
	params_t params; /* as the server has them now */
	char tx_status;	 /* from the last ReadyForQuery */

	pending_t *pending; /* ring of owed responses */
	int pending_head, pending_count, pending_cap;
	bool skipping; /* after an extended-protocol error, until Sync */

	hashmap_t stmts; /* stmt id -> server_stmt_t */
	stmt_t *unnamed; /* what the server's unnamed statement holds, if known */
	server_stmt_t *lru_head, *lru_tail;
	int n_stmts;

	auth_scram_client_t *scram;
	int64_t created_ms;
	int64_t last_used_ms;
	server_t *next, *prev;	       /* pool lists */
	server_t *all_next, *all_prev; /* every server of the worker */
	bool in_free_list;
	fanout_t *fan; /* a leg of this fan-out (fanout.c) */
	int64_t busy_since_ms; /* running something since (0: idle): timeouts.query */
	bool timed_out;	       /* cancelled by timeouts.query */
	int64_t next_unit_start_us; /* first message of the unit being sent (0: none) */
	char unit_sqlstate[6];	    /* first error of the unit being answered */
};

typedef enum {
	CLIENT_STARTUP, /* reading the startup packet */
	CLIENT_AUTH,	/* proving its password (md5 or SCRAM-SHA-256) */
	CLIENT_LOGIN,	/* waiting for a server to learn or set parameters */
	CLIENT_IDLE,	/* logged in, no server */
	CLIENT_WAITING, /* in a pool's wait queue */
	CLIENT_ACTIVE,	/* linked to a server */
	CLIENT_CLOSED
} client_state_t;

const char *client_state_name(client_state_t state);

struct client {
	worker_t *worker;
	uint64_t id;
	int fd;
	struct ssl_st *ssl; /* TLS (tls.mode), once the client asked for it */
	uint8_t tls;	    /* conn_tls_t (net/tls.h) */
	bool ssl_requested; /* it sent SSLRequest: one is all the protocol allows */
	struct event *ev_read;
	struct event *ev_write;
	struct event *ev_timer;
	client_state_t state;
	buf_t in, out;
	bool read_paused;
	bool logged_in;
	bool login_params_sent;
	bool counted;		    /* in the per-user and per-database counts */
	auth_scram_server_t *scram; /* during a SCRAM exchange */
	uint8_t md5_salt[4];
	bool password_queried; /* auth.query ran for this login */
	char *queried_password; /* its answer (wiped at free) */
	char addr[64];
	char user[CONFIG_NAME_MAX + 1];
	char database[CONFIG_NAME_MAX + 1];
	params_t params;  /* what the client's session should have */
	hashmap_t stmts;  /* client statement name -> stmt_t */
	stmt_t *unnamed;  /* the client's unnamed statement (transaction pooling) */
	bool discarding;  /* after an error the proxy raised: drop messages until Sync */
	bool pin_next;    /* the unit being routed changes session state */
	buf_t replay;	  /* a read unit sent to a replica, until its first answer */
	bool replaying;	  /* running such a unit again: its Parse may repeat */
	bool pinned;      /* keeps its server connection for the rest of the session */
	uint32_t cancel_pid, cancel_key;
	pool_t *login_pool; /* the default shard's primary: parameters at login */
	pool_t *pools[4];   /* the pools this client routed to last (pools live as long
			       as their worker), so routing skips pool_get's key build */
	pool_t *pool;	    /* where the current unit of work runs */
	server_t *server;   /* linked server connection */
	route_target_t target; /* where the current unit was routed, and why */
	bool unit_writes;      /* the current unit may write: note the WAL position after */
	uint64_t captured_lsn; /* the answer to the proxy's last WAL position query */
	bool capturing;	       /* asking the primary for the WAL position of a write */
	bool checking;	       /* asking a replica whether it replayed write_lsn */
	bool force_primary;    /* the next unit goes to the primary (replica behind) */
	char *deferred_begin;  /* a BEGIN answered by the proxy, sent with the next unit */
	bool until_write;      /* transaction_reads: replica_until_write, on a replica */
	bool switching;        /* leaving the replica for the primary at a write */
	fanout_t *fan;	       /* one statement running on several shards */
	bool unit_checked;     /* the unit being relayed was routed by shard already */
	bool admin;            /* logged in to the admin console (admin.c) */
	bool admin_extended;   /* an extended-protocol unit to refuse at its Sync */
	bool txn_wrote;        /* the open transaction has written (on its shard) */
	bool refusing;	       /* dropping the unit's messages through its Sync */
	bool refusal_sent;     /* the refusal went to the server */
	char refusal_state[6];
	char refusal[320];
	uint64_t *shard_lsns;  /* per shard: the WAL position of the client's last write
				  there (read_your_writes); allocated at the first */
	client_t *wait_next, *wait_prev;
	int64_t wait_start_ms;
	int64_t last_active_ms; /* its last message (timeouts.client_idle, idle_in_transaction) */
	uint64_t units;		/* units of work started: the request id is "<id>.<units>" */
	/* rebalance cut-over (remap.c) */
	int64_t rm_exempt;     /* the pause its running transaction began before */
	bool rm_is_parked;     /* its next statement waits for the cut-over */
	int64_t rm_parked_ms;
	client_t *rm_next, *rm_prev;
	bool rm_waiting;       /* an admin client waiting for a pause to take hold */
	struct collect *admin_collect; /* its command reading every worker (admin.c) */
	struct event *rm_timer;
	int64_t rm_version, rm_started_ms, rm_deadline_ms;
	int64_t connect_ms;
	client_t *next, *prev; /* worker's list */
	bool in_free_list;
};

typedef struct cancel_request {
	uint32_t pid, key;
	struct cancel_request *next;
} cancel_request_t;

struct worker {
	int index;
	pthread_t thread;
	struct event_base *base;
	int listen_fd;
	struct event *ev_listen;
	struct event *ev_reap;
	struct event *ev_cancel;
	struct event *ev_stop;
	struct event *ev_janitor;
	const config_t *config;
	uint8_t *scratch;
	size_t scratch_cap;
	hashmap_t pools;	  /* pool key -> pool_t */
	hashmap_t clients_by_key; /* cancel pid -> client */
	hashmap_t stmts;	  /* interned statements */
	uint64_t next_stmt_id;
	analyzer_t *analyzer;	  /* cached statement analyses */
	hashmap_t shapes;	  /* statement shape -> route_class_t (see classify_text) */
	hashmap_t facts;	  /* statement text -> keys_facts_t (sharding.c) */
	keys_table_t *key_tables; /* the shard map's tables for keys_extract */
	route_balance_t balance;
	uint64_t next_id;
	uint8_t mock_secret[32]; /* SCRAM answers for unknown users */
	client_t *clients; /* all clients of this worker */
	server_t *servers; /* all server connections of this worker */
	int n_clients;
	client_t *free_clients;
	server_t *free_servers;
	pthread_mutex_t cancel_lock;
	cancel_request_t *cancel_queue;
	/* rebalance cut-over (remap.c) */
	struct event *ev_remap;
	struct event *ev_remap_poll;
	uint64_t rm_gen;
	int rm_phase;	  /* none, paused, settling (remap.c) */
	int64_t rm_pause; /* the version of that pause or settling */
	const config_t *rm_view;
	const struct rb_unit *rm_unit;
	struct {
		client_t *client;
		uint64_t id;
	} *rm_exempt;
	int rm_n_exempt, rm_cap_exempt;
	client_t *rm_parked;
	atomic_int rm_draining;
	atomic_int rm_n_parked;
	atomic_int_fast64_t rm_acted;
	struct event *ev_drain;
	struct event *ev_collect; /* an admin command reads this worker (admin.c) */
	atomic_int n_busy;   /* draining: clients still in a transaction */
	atomic_bool drained; /* draining: the listener is closed */
};

/* Process-wide state shared by the workers. */
typedef struct {
	const config_t *config;	       /* the map in use (a rebalance switches it) */
	const config_t *loaded_config; /* as loaded from the file */
	worker_t *workers;
	int n_workers;
	atomic_int n_clients;
	atomic_uint_fast64_t next_client_id;
	atomic_bool stopping;
	atomic_bool draining; /* SIGTERM or SHUTDOWN: no new work, then stop */
} proxy_t;

extern proxy_t proxy;

/* The WAL position of the client's last write on a shard (0: none). */
static inline uint64_t client_write_lsn(const client_t *c, int shard)
{
	return c->shard_lsns ? c->shard_lsns[shard] : 0;
}
void client_note_write_lsn(client_t *c, int shard, uint64_t lsn);
/* The route class of a prepared statement (cached in it). */
void client_classify_stmt(client_t *c, stmt_t *st, route_class_t *out);
void client_classify_text(client_t *c, const char *sql, size_t len, route_class_t *out);

/* Worker lifecycle (worker.c). */
bool net_start(const config_t *config, char *err, size_t errlen);
void net_wait(void);
void net_stop(void);
/* SIGTERM: stops accepting, closes idle clients, lets transactions finish;
 * returns when none runs or after timeout_ms. */
void net_drain(int64_t timeout_ms);
int64_t net_now_ms(void);
void worker_schedule_reap(worker_t *w);
/* Hands a CancelRequest to the worker that owns the client. */
void worker_route_cancel(uint32_t pid, uint32_t key);

/* Client side (client.c). */
void client_accept(worker_t *w, int fd, const char *addr);
void client_close(client_t *c, const char *reason);
/* Sends a FATAL error, then closes. */
void client_fatal(client_t *c, const char *sqlstate, const char *message);
void client_flush(client_t *c);
/* Called by the pool when a server connection is linked to the client. */
void client_on_linked(client_t *c);
/* Called when the pool gives up on the client's request. */
void client_on_pool_error(client_t *c, const char *sqlstate, const char *message);
/* The linked server died. Returns true when the client's unit was taken
 * back to be run again (a read nothing was answered for yet); false when
 * the client must be told (client_on_server_lost). */
bool client_take_back_unit(client_t *c);
/* Tells the client its server connection was lost: an ErrorResponse and
 * ReadyForQuery when it was outside a transaction with one answer owed,
 * else a FATAL error. */
void client_on_server_lost(client_t *c, bool in_transaction, int owed_syncs);
/* Unlinks the client's server connection and gives it back to its pool. */
void client_release_server(client_t *c);
/* Runs the client's buffered messages (after a link or an unlink). */
void client_process_input(client_t *c);
/* The replica answered the read-your-writes check: run the unit there or
 * move it to the primary. */
void client_finish_check(client_t *c);
/* The replica rolled back a replica_until_write transaction: run it on
 * the primary from its BEGIN. */
void client_finish_switch(client_t *c);
void client_end_transaction(client_t *c);
void client_free(client_t *c);
/* Frees the worker's cache of routing decisions by statement shape. */
void client_free_shapes(worker_t *w);
/* Frees the per-user and per-database connection counts (at exit). */
void client_free_limits(void);
client_t *client_find_by_cancel(worker_t *w, uint32_t pid);

/* Sharding of a unit of work (sharding.c). */
typedef enum {
	UNIT_ROUTE_DEFAULT, /* no sharded table decides: the default routing */
	UNIT_ROUTE_SHARD,   /* every statement on `shard` */
	UNIT_ROUTE_FANOUT,  /* one statement on several shards: `route` */
	UNIT_ROUTE_PIPELINE, /* statements on several shards, one each: `bind_shards` */
	UNIT_ROUTE_REFUSE,  /* answer `sqlstate`, `message` */
	UNIT_ROUTE_PAUSE    /* a rebalance cut-over holds its rows: wait (remap.c) */
} unit_route_kind_t;

typedef struct {
	unit_route_kind_t kind;
	int shard;
	shard_route_t route; /* FANOUT: the statement's shards (owned) */
	/* FANOUT: the statement (pointers into the client's input) */
	const char *text;
	size_t text_len;
	const uint8_t *types; /* Int16 count + OIDs, as in Parse */
	size_t types_len;
	const uint8_t *bind; /* Bind body */
	size_t bind_len;
	bool extended;
	bool replica_ok; /* the statement may read on replicas */
	shard_params_t params;
	const uint8_t **param_values; /* owned arrays behind params */
	int32_t *param_lengths;
	int16_t *param_formats;
	int *bind_shards; /* PIPELINE: the shard of each Bind, in order (-1: any) */
	int n_binds, cap_binds;
	char sqlstate[6];
	char message[320];
} unit_route_t;

bool sharding_active(const config_t *config);
void sharding_route_unit(client_t *c, const uint8_t *data, size_t len, const route_class_t *cls,
			 unit_route_t *out);
void sharding_route_message(client_t *c, uint8_t type, const uint8_t *msg, size_t total,
			    const route_class_t *cls, unit_route_t *out);
void unit_route_free(unit_route_t *u);
void sharding_free_worker(worker_t *w);

/* The admin console, database "shardgate" (admin.c). Its answers are
 * result sets of text columns: result_begin, a result_row per row (NULL
 * values are SQL NULL), result_end with the command tag's verb. */
typedef struct {
	buf_t *out;
	int n_columns;
	uint64_t rows;
} result_t;
void result_begin(result_t *r, buf_t *out, const char *const *columns, int n);
void result_row(result_t *r, const char *const *values);
void result_end(result_t *r, const char *verb);
bool admin_is_console(const char *database);
bool admin_may_enter(const config_t *config, const char *user);
bool admin_message(client_t *c, uint8_t type, const uint8_t *msg, size_t len);
void admin_on_collect(int fd, short what, void *arg);
void admin_forget(client_t *c);

/* Rebalance cut-over (remap.c). */
struct event_base;
void remap_sync(worker_t *w);
void remap_on_event(int fd, short what, void *arg);
void remap_free_worker(worker_t *w);
/* The statement touches rows held by a pause, and must wait. */
bool remap_must_wait(client_t *c, const shard_stmt_info_t *info, const keys_facts_t *facts,
		     bool reads, const shard_params_t *params, const shard_route_t *route);
bool remap_active(worker_t *w);
/* The admin console's PAUSE [shard] holds the shard's new work. */
bool remap_shard_paused(int shard);
/* For a statement that cannot wait (inside a pipeline or a transaction
 * already running over several shards). */
#define REMAP_BUSY_MESSAGE                                                                     \
	"its rows are being moved by a rebalance cut-over (a few milliseconds); run it again"
void remap_park(client_t *c);
void remap_forget(client_t *c);
/* An admin command of remap.c's (REBALANCE ..., SHOW REBALANCE): answered
 * (possibly later) and true; false when it is not one. */
bool remap_command(client_t *c, const char *cmd);
void remap_shutdown(void);
/* At start-up: the loaded map with the units a rebalance moved already
 * (read from its bookkeeping); the map to serve with. */
const config_t *remap_recover(const config_t *loaded);
/* RELOAD and SIGHUP: reads the file again and switches every worker to it;
 * false (the running configuration stays) with the reason in err. */
bool remap_reload(const char *path, char *err, size_t errlen);

/* One statement on several shards (fanout.c). */
bool fanout_start(client_t *c, const uint8_t *unit, size_t unit_len, unit_route_t *u, char *why,
		  size_t whylen);
/* A pipeline whose statements may need several shards, run as it arrives:
 * start, then feed it the client's input while fanout_wants_input(). */
bool fanout_start_stream(client_t *c);
/* The client's transaction goes on over several shards (its server is the
 * first leg); `wrote`: it has written there. */
bool fanout_start_txn(client_t *c, bool wrote);
bool fanout_wants_input(const client_t *c);
size_t fanout_feed(client_t *c, const uint8_t *data, size_t len);
bool fanout_server_message(server_t *s, uint8_t type, const uint8_t *msg, size_t len);
void fanout_after_batch(server_t *s);
void fanout_on_linked(client_t *c);
void fanout_on_leg_closed(server_t *s);
void fanout_on_pool_error(client_t *c, const char *sqlstate, const char *message);
void fanout_abort(client_t *c);
void fanout_cancel(client_t *c);
void fanout_resume(client_t *c);
/* A leg's output drained: a COPY waiting for it reads the client again. */
void fanout_on_server_drained(server_t *s);

/* Server side (server.c). */
server_t *server_connect(pool_t *pool);
void server_close(server_t *s, const char *reason);
/* The server starts (true) or stops running statements; timeouts.query
 * counts from the start (worker janitor). */
void server_busy(server_t *s, bool busy);
/* Cancels what the server runs when it has run longer than timeouts.query. */
void server_check_timeout(server_t *s, int64_t now_ms, int64_t query_ms);
void server_flush(server_t *s);
void server_free(server_t *s);
void server_send_cancel(server_t *s);

/* The relay between a linked client and server (relay.c). */
bool relay_client_message(client_t *c, uint8_t type, const uint8_t *msg, size_t len);
bool relay_server_message(server_t *s, uint8_t type, const uint8_t *msg, size_t len);
bool relay_prepare_link(server_t *s, client_t *c);
/* Sends a simple query of the proxy's own whose answer is swallowed. */
bool relay_send_internal_query(server_t *s, const char *sql);
/* Sends a statement that fails on the server with sqlstate and message,
 * answered to the client (ErrorResponse, ReadyForQuery): a refusal inside
 * a transaction aborts it as PostgreSQL would. */
bool relay_send_refusal(server_t *s, const char *sqlstate, const char *message);
/* The pg_lsn in a DataRow message of one column (whole message); false if none. */
bool relay_parse_lsn_row(const uint8_t *msg, size_t len, uint64_t *lsn);
/* The same for a query returning one pg_lsn, kept in client->captured_lsn. */
bool relay_send_lsn_query(server_t *s, const char *sql);
void relay_reset_pending(server_t *s);
/* How many ReadyForQuery the client still waits for from this server. */
int relay_owed_syncs(server_t *s);
void relay_drop_stmts(server_t *s);
/* Sets (or clears, with NULL) a stmt_t slot, keeping references right. */
void relay_set_stmt(worker_t *w, stmt_t **slot, stmt_t *st);

#endif
