/*
 * config.h - the shard map and proxy settings read from shardmap.yaml.
 *
 * A config_t is built once by config_load() and never modified afterwards:
 * workers share it read-only, and a reload builds a new one beside it.
 * Every duration is held in milliseconds, every size in bytes.
 */
#ifndef SHARDGATE_CONFIG_H
#define SHARDGATE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CONFIG_MAX_SHARDS 256
#define CONFIG_MAX_REPLICAS 16
#define CONFIG_MAX_BUCKETS 65536
#define CONFIG_NAME_MAX 63 /* PostgreSQL's NAMEDATALEN - 1 */

typedef enum { POOL_TRANSACTION, POOL_SESSION } pool_mode_t;
typedef enum { TLS_DISABLE, TLS_ALLOW, TLS_REQUIRE } tls_mode_t;
typedef enum {
	BACKEND_TLS_DISABLE,
	BACKEND_TLS_PREFER,
	BACKEND_TLS_REQUIRE,
	BACKEND_TLS_VERIFY_CA,
	BACKEND_TLS_VERIFY_FULL
} backend_tls_t;
typedef enum { AUTH_TRUST, AUTH_MD5, AUTH_SCRAM } auth_method_t;
typedef enum {
	BALANCE_ROUND_ROBIN,
	BALANCE_LEAST_CONNECTIONS,
	BALANCE_RANDOM,
	BALANCE_WEIGHTED
} balance_t;
typedef enum { TXN_READS_PRIMARY, TXN_READS_REPLICA_UNTIL_WRITE } txn_reads_t;
typedef enum { MULTI_WRITES_ALLOW, MULTI_WRITES_REFUSE } multi_writes_t;
typedef enum { LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERROR } log_level_t;
typedef enum {
	STRATEGY_HASH,
	STRATEGY_RANGE,
	STRATEGY_DIRECTORY,
	STRATEGY_REFERENCE
} strategy_t;
typedef enum { ASSIGN_ROUND_ROBIN, ASSIGN_LEAST_ROWS, ASSIGN_FIXED } assign_t;

/* The type of a table's shard key; decides the hash function and the
 * ordering of range bounds. */
typedef enum {
	KEY_BIGINT, /* default; also int2/int4 (same extended hash) */
	KEY_INTEGER,
	KEY_SMALLINT,
	KEY_TEXT,
	KEY_VARCHAR,
	KEY_UUID,
	KEY_TIMESTAMP,
	KEY_TIMESTAMPTZ,
	KEY_DATE
} key_type_t;

typedef struct {
	char host[256];
	int port;
} cfg_address_t;

typedef struct {
	cfg_address_t address;
	int weight; /* balancing weight, default 1 */
	int line;   /* where it was declared, for messages */
} cfg_node_t;

typedef struct {
	char name[CONFIG_NAME_MAX + 1];
	cfg_node_t primary;
	cfg_node_t replicas[CONFIG_MAX_REPLICAS];
	int n_replicas;
	int max_concurrent; /* 0 = no limit */
	int line;
} cfg_shard_t;

/* One range of a range-sharded table: keys below `below` (exclusive) and at
 * or above the previous range's bound. The last range may have no bound. */
typedef struct {
	bool has_below;
	char below[256]; /* the bound as written, compared by key type */
	int shard;       /* index into config_t.shards */
	int line;
} cfg_range_t;

/* A directory key pinned to a shard (directory.pinned): new rows of the key
 * go there, and `rebalance` moves the key's rows there. */
typedef struct {
	char key[256];
	int shard;
	int line;
} cfg_pin_t;

typedef struct {
	char name[CONFIG_NAME_MAX * 2 + 2]; /* [schema.]table */
	char key[CONFIG_NAME_MAX + 1];      /* empty for reference tables */
	key_type_t key_type;
	strategy_t strategy;
	/* hash */
	int buckets;
	int *placement; /* buckets entries: shard index of each bucket */
	int colocate_with; /* index into config_t.tables, or -1 */
	/* range */
	cfg_range_t *ranges;
	int n_ranges;
	/* directory */
	int directory_shard; /* where the directory table lives */
	char directory_table[CONFIG_NAME_MAX * 2 + 2];
	assign_t assign;
	int assign_shard; /* for ASSIGN_FIXED */
	cfg_pin_t *pins;  /* directory.pinned: keys placed on a named shard */
	int n_pins;
	int line;
} cfg_table_t;

typedef struct {
	char name[CONFIG_NAME_MAX + 1];
	char *password; /* verifier or md5 hash or plaintext; never logged */
} cfg_user_t;

typedef struct config {
	char path[1024];

	cfg_address_t listen;
	int workers;
	int max_client_conn;
	int max_user_conn; /* 0 = no limit */
	int max_db_conn;   /* 0 = no limit */
	size_t max_message_size;

	char **admin_users;
	int n_admin_users;

	bool has_metrics;
	cfg_address_t metrics;

	log_level_t log_level;
	int64_t slow_statement_ms; /* 0 = off */

	struct {
		tls_mode_t mode;
		char cert[1024];
		char key[1024];
		char ciphers[512];
	} tls;

	struct {
		pool_mode_t mode;
		int size;
		int prepared_statements; /* per-server cache bound */
	} pool;

	struct {
		int64_t connect_ms;
		int64_t query_ms;
		int64_t wait_ms;
		int64_t login_ms;
		int64_t client_idle_ms;
		int64_t idle_in_transaction_ms;
		int64_t shutdown_ms;
	} timeouts;

	struct {
		auth_method_t method;
		cfg_user_t *users;
		int n_users;
		char query[1024];
	} auth;

	struct {
		char user[CONFIG_NAME_MAX + 1]; /* empty: the client's user */
		char *password;
		char database[CONFIG_NAME_MAX + 1]; /* empty: the client's */
		backend_tls_t tls;
		char ca_file[1024];
	} backend;

	struct {
		int64_t interval_ms;
		int failures_to_open;
		int64_t open_for_ms;
	} health;

	struct {
		bool read_write_split;
		balance_t balance;
		bool include_primary_in_reads;
		int64_t max_lag_bytes;
		int64_t max_lag_ms;
		bool read_your_writes;
		int64_t read_your_writes_wait_ms;
		txn_reads_t transaction_reads;
		char **read_only_functions;
		int n_read_only_functions;
		char **write_functions;
		int n_write_functions;
		multi_writes_t multi_shard_writes;
		bool two_phase_commit;
	} routing;

	cfg_shard_t *shards;
	int n_shards;
	int default_shard; /* index into shards */

	cfg_table_t *tables;
	int n_tables;
} config_t;

/*
 * Reads and validates a configuration file. On success stores a new
 * config_t in *out and returns true. On failure returns false, leaves *out
 * untouched and writes "file:line: message" into err.
 */
bool config_load(const char *path, config_t **out, char *err, size_t errlen);

/* Same as config_load, from a string; `name` stands in for the file name
 * in messages. Used by tests and the fuzzer. */
bool config_load_string(const char *name, const char *text, size_t len,
			config_t **out, char *err, size_t errlen);

void config_free(config_t *config);

/* Prints the shard map and settings, secrets masked (for `check`). */
void config_print(const config_t *config, FILE *out);

/* Index of the shard or table with that name, or -1. */
int config_find_shard(const config_t *config, const char *name);
int config_find_table(const config_t *config, const char *name);

/* Parsers shared with the CLI: "250ms", "5s", "2m", "1h", "0" (no unit: ms
 * for plain integers) and "64MB", "10kB", "16MB", "1GB", plain bytes. */
bool config_parse_duration_ms(const char *text, int64_t *out_ms);
bool config_parse_size(const char *text, int64_t *out_bytes);
bool config_parse_address(const char *text, cfg_address_t *out);

/* A key value read by key type, so that values compare as PostgreSQL orders
 * them: integers numerically, timestamps and dates as instants (a
 * timestamptz needs an explicit zone), text bytewise (C collation), UUIDs by
 * their bytes. text points into the parsed string. */
typedef struct {
	int64_t number;   /* integers; timestamps in microseconds */
	const char *text; /* text, varchar */
	char uuid[33];    /* 32 lower-case hex digits */
} key_value_t;

/* Parses a NUL-terminated value of the key type; false when PostgreSQL
 * would not read it as that type or the proxy cannot place it in time
 * (a timestamptz without zone). */
bool key_value_parse(key_type_t type, const char *text, key_value_t *out);
/* <0, 0, >0 as a is below, equal to or above b. */
int key_value_compare(key_type_t type, const key_value_t *a, const key_value_t *b);

const char *pool_mode_name(pool_mode_t mode);
const char *strategy_name(strategy_t strategy);
const char *key_type_name(key_type_t type);
const char *log_level_name(log_level_t level);

#endif
