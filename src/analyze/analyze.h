/*
 * analyze.h - what a statement does, decided once per statement text.
 *
 * A statement string (simple Query, or the text of an extended-protocol
 * Parse; $n parameters are fine) is parsed with libpg_query (PostgreSQL 15
 * grammar) and reduced to a small, self-contained analysis_t: its kind
 * (read, write, transaction control, session-state change, utility), the
 * tables it references and whether it writes them, the functions it calls,
 * transaction and session details, and shardgate hint comments. The parse
 * tree is freed at once; an analysis is one malloc'd block.
 *
 * The analyzer_t cache (one per worker thread, no locks) maps the exact
 * statement text to its analysis, so the hot path is one hash lookup.
 *
 * Lifetime (reference counting):
 *   - analyzer_get() returns a BORROWED pointer that stays valid until the
 *     next analyzer_get() on the same analyzer, or analyzer_free(), whichever
 *     comes first (a later get may evict it).
 *   - To keep an analysis longer (a prepared statement, a queued request),
 *     call analyze_retain() and, when done, analyze_release(). A retained
 *     analysis outlives its eviction and even analyzer_free().
 *   - analyze_statement() returns an OWNED analysis: analyze_release() it.
 *
 * Statements longer than ANALYZE_MAX_CACHED_LEN (1 MiB) are parsed and
 * analysed on every call and never cached (counted in stats.uncacheable).
 *
 * Stack safety: libpg_query recurses once or more per nesting level and
 * overflows an 8 MiB stack near 30000 levels (SELECT 1+1+1...). Texts of
 * 8 KiB or more are first measured with pg_query_scan; one whose nesting may
 * exceed 4000 levels is not parsed: parse_error, kind WRITE. Shorter texts
 * cannot nest that deep. Callers need a thread stack of at least 2 MiB.
 *
 * "kind" is syntactic. Whether a READ statement may go to a replica also
 * depends on the functions it calls, which only the router's configuration
 * can classify: always decide with analyze_is_read().
 */
#ifndef SHARDGATE_ANALYZE_H
#define SHARDGATE_ANALYZE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ANALYZE_MAX_CACHED_LEN (1024 * 1024) /* bytes of statement text */
#define ANALYZE_MAX_TABLES     256           /* distinct tables kept; more sets tables_truncated */
#define ANALYZE_MAX_FUNCTIONS  256  /* distinct functions kept; more sets functions_truncated */
#define ANALYZE_MAX_STATEMENTS 1024 /* per-statement records kept; n_statements is exact */

typedef enum {
	ANALYZE_KIND_EMPTY,       /* no statement at all: "", blanks, comments only */
	ANALYZE_KIND_READ,        /* SELECT/VALUES/TABLE without locking, INTO or writable CTE;
	                             SHOW; EXPLAIN [ANALYZE] of a read; COPY ... TO of a read */
	ANALYZE_KIND_WRITE,       /* everything else; also unparseable text */
	ANALYZE_KIND_TRANSACTION, /* BEGIN, COMMIT, SAVEPOINT, SET TRANSACTION, 2PC, ... */
	ANALYZE_KIND_SESSION,     /* leaves state in the session: SET, PREPARE, LISTEN, temp ... */
	ANALYZE_KIND_UTILITY,     /* no data effect, no state past the transaction:
	                             SET LOCAL, SET CONSTRAINTS */
} analyze_kind_t;

const char *analyze_kind_name(analyze_kind_t kind);

typedef enum {
	ANALYZE_TXN_NONE,
	ANALYZE_TXN_BEGIN,    /* BEGIN and START TRANSACTION */
	ANALYZE_TXN_COMMIT,   /* COMMIT, END (chain says AND CHAIN) */
	ANALYZE_TXN_ROLLBACK, /* ROLLBACK, ABORT */
	ANALYZE_TXN_SAVEPOINT,
	ANALYZE_TXN_RELEASE,
	ANALYZE_TXN_ROLLBACK_TO,
	ANALYZE_TXN_PREPARE, /* PREPARE TRANSACTION 'gid' */
	ANALYZE_TXN_COMMIT_PREPARED,
	ANALYZE_TXN_ROLLBACK_PREPARED,
	ANALYZE_TXN_SET_TRANSACTION, /* SET TRANSACTION ... (current transaction only) */
} analyze_txn_op_t;

const char *analyze_txn_op_name(analyze_txn_op_t op);

typedef enum {
	ANALYZE_ACCESS_DEFAULT, /* not stated */
	ANALYZE_ACCESS_READ_ONLY,
	ANALYZE_ACCESS_READ_WRITE,
} analyze_access_t;

const char *analyze_access_name(analyze_access_t access);

typedef enum {
	ANALYZE_ISOLATION_DEFAULT, /* not stated */
	ANALYZE_ISOLATION_READ_UNCOMMITTED,
	ANALYZE_ISOLATION_READ_COMMITTED,
	ANALYZE_ISOLATION_REPEATABLE_READ,
	ANALYZE_ISOLATION_SERIALIZABLE,
} analyze_isolation_t;

const char *analyze_isolation_name(analyze_isolation_t isolation);

typedef enum {
	ANALYZE_SESSION_NONE,
	ANALYZE_SESSION_SET,        /* SET name ... (also SET ROLE: name "role", SET SESSION
	                               AUTHORIZATION: "session_authorization", SET SESSION
	                               CHARACTERISTICS: "session characteristics") */
	ANALYZE_SESSION_RESET,      /* RESET name */
	ANALYZE_SESSION_RESET_ALL,  /* RESET ALL */
	ANALYZE_SESSION_PREPARE,    /* SQL PREPARE name */
	ANALYZE_SESSION_EXECUTE,    /* SQL EXECUTE name: what it does is unknown here */
	ANALYZE_SESSION_DEALLOCATE, /* name NULL for DEALLOCATE ALL */
	ANALYZE_SESSION_LISTEN,
	ANALYZE_SESSION_UNLISTEN, /* name NULL for UNLISTEN * */
	ANALYZE_SESSION_NOTIFY,
	ANALYZE_SESSION_DISCARD,      /* name "all", "plans", "sequences" or "temp" */
	ANALYZE_SESSION_TEMP_OBJECT,  /* CREATE TEMP TABLE/VIEW/SEQUENCE, SELECT INTO TEMP */
	ANALYZE_SESSION_DECLARE_HOLD, /* DECLARE name CURSOR WITH HOLD */
	ANALYZE_SESSION_CURSOR,       /* FETCH, MOVE, CLOSE name (name NULL for CLOSE ALL) */
	ANALYZE_SESSION_LOAD,
} analyze_session_op_t;

const char *analyze_session_op_name(analyze_session_op_t op);

/* Details of a TRANSACTION statement (op NONE otherwise). */
typedef struct {
	analyze_txn_op_t op;
	analyze_access_t access;       /* BEGIN/START/SET TRANSACTION READ ONLY | READ WRITE */
	analyze_isolation_t isolation; /* ISOLATION LEVEL ... */
	bool deferrable;               /* DEFERRABLE stated */
	bool chain;                    /* COMMIT/ROLLBACK AND CHAIN */
	const char *name;              /* savepoint name or 2PC gid; NULL when none */
} analyze_txn_t;

/* Details of a SESSION statement, and of SET LOCAL (a UTILITY). */
typedef struct {
	analyze_session_op_t op;
	bool is_local;    /* SET LOCAL: lasts until the end of the transaction */
	const char *name; /* parameter, prepared statement, channel, cursor ...; or NULL */
	/* SET SESSION CHARACTERISTICS AS TRANSACTION ...: the session default */
	analyze_access_t default_access;
} analyze_session_t;

/* One statement of the (possibly multi-statement) text. */
typedef struct {
	analyze_kind_t kind;
	bool needs_primary; /* see analysis_t.needs_primary */
	int location;       /* byte offset of the statement in the text */
	int len;            /* its length in bytes; 0 means "to the end of the text" */
	analyze_txn_t txn;
	analyze_session_t session;
} analyze_statement_t;

typedef struct {
	const char *schema; /* NULL when not qualified */
	const char *name;
	bool written;  /* target of INSERT/UPDATE/DELETE/MERGE/COPY FROM/TRUNCATE/LOCK, or
	                  created or altered by CREATE TABLE [AS], SELECT INTO, CREATE VIEW,
	                  CREATE SEQUENCE, ALTER TABLE, CREATE INDEX */
	bool cte_name; /* unqualified and equal to a CTE name of the statement: probably
	                  the CTE, not a table */
} analyze_table_t;

typedef struct {
	const char *schema; /* NULL when not qualified (e.g. pg_catalog.extract is qualified) */
	const char *name;   /* as PostgreSQL folds it: unquoted names are lowercase */
} analyze_function_t;

typedef struct {
	bool present;       /* at least one well-formed shardgate hint */
	bool malformed;     /* a "shardgate:" comment that could not be read (ignored) */
	bool primary;       /* shardgate: primary */
	const char *shard;  /* shardgate: shard=NAME; NULL when absent */
	int64_t max_lag_ms; /* shardgate: max_lag=100ms | 2s; -1 when absent */
} analyze_hint_t;

/*
 * The analysis of one statement text. All pointers point into the same
 * allocation. Read-only for users; refs is private to analyze.c.
 */
typedef struct analysis {
	analyze_kind_t kind; /* combined: WRITE if any statement writes, READ only if all
	                        read, EMPTY if none; else SESSION > TRANSACTION > UTILITY */
	/* Must run on a primary whatever the functions: WRITE kind; LISTEN, NOTIFY,
	   temporary objects, EXECUTE (unknown), PREPARE TRANSACTION, COMMIT/ROLLBACK
	   PREPARED, DECLARE WITH HOLD of a non-read. Functions are not considered. */
	bool needs_primary;
	bool parse_error;          /* unparseable: kind WRITE, n_statements 0 */
	const char *error_message; /* the parser's message when parse_error, else NULL */
	int error_cursor;          /* 1-based character position of the error, 0 if unknown */

	bool has_locking_clause;    /* FOR UPDATE/NO KEY UPDATE/SHARE/KEY SHARE anywhere */
	bool has_select_into;       /* SELECT ... INTO anywhere */
	bool has_modifying_cte;     /* INSERT/UPDATE/DELETE/MERGE nested in another statement */
	bool explain_analyze;       /* EXPLAIN ANALYZE (the inner statement runs) */
	bool takes_session_lock;    /* pg_advisory_lock[_shared], pg_try_advisory_lock[_shared] */
	bool releases_session_lock; /* pg_advisory_unlock[_shared|_all] */
	bool tables_truncated;      /* more than ANALYZE_MAX_TABLES distinct tables */
	bool functions_truncated;   /* more than ANALYZE_MAX_FUNCTIONS, or a tree too deep to
	                               walk whole: never a read */

	int n_statements; /* exact count; statements[] holds min(n, ANALYZE_MAX_STATEMENTS) */
	int n_statement_records;
	const analyze_statement_t *statements;
	int n_tables;
	const analyze_table_t *tables;
	int n_functions;
	const analyze_function_t *functions;
	analyze_hint_t hint;

	int refs; /* private */
	size_t alloc_bytes;
} analysis_t;

typedef enum {
	FUNC_UNKNOWN,
	FUNC_READ_ONLY,
	FUNC_WRITES,
} func_class_t;

const char *func_class_name(func_class_t func_class);

/* Classifies one called function; schema is NULL when the call is unqualified. */
typedef func_class_t (*func_class_fn)(const char *schema, const char *name, void *arg);

/*
 * Analyses sql[0..len) without caching. Parse errors are not failures: they
 * give an analysis with parse_error set. Returns false only when out of
 * memory (*out untouched). The caller owns *out: analyze_release() it.
 */
bool analyze_statement(const char *sql, size_t len, analysis_t **out);

/* Keeps an analysis alive past the next analyzer_get; pair with analyze_release. */
void analyze_retain(const analysis_t *a);
/* Drops one reference; frees the analysis with the last one. NULL is a no-op. */
void analyze_release(const analysis_t *a);

/*
 * True when the whole text may run on a replica: kind READ, the called
 * functions are all FUNC_READ_ONLY according to classify (FUNC_UNKNOWN and
 * FUNC_WRITES make it a write), and the function list was not truncated.
 * classify NULL means analyze_default_function_class with empty lists.
 */
bool analyze_is_read(const analysis_t *a, func_class_fn classify, void *arg);

/*
 * The default classification: a function named in writes is FUNC_WRITES; else
 * one named in read_only is FUNC_READ_ONLY; else a built-in read-only
 * pg_catalog function (a compact list: now, count, lower, jsonb_*, ...; called
 * unqualified or as pg_catalog.f) is FUNC_READ_ONLY; else FUNC_UNKNOWN.
 * List entries are "name" (matches the name in any schema) or "schema.name"
 * (for writes, also matches an unqualified call, since search_path may
 * resolve it there; for read_only, only that exact schema). Compared without
 * regard to ASCII case.
 */
func_class_t analyze_default_function_class(const char *schema, const char *name,
                                            const char *const *read_only, int n_ro,
                                            const char *const *writes, int n_w);

/* ---- the per-worker cache ---- */

typedef struct analyzer analyzer_t;

typedef struct {
	uint64_t hits;
	uint64_t misses;      /* analyses done for cacheable text */
	uint64_t evictions;   /* LRU entries dropped to stay within max_entries */
	uint64_t uncacheable; /* texts over ANALYZE_MAX_CACHED_LEN, analysed each time */
	size_t entries;
	size_t bytes; /* memory held by cached analyses and keys (approximate) */
} analyzer_stats_t;

/* A cache of at most max_entries analyses (at least 1); NULL when out of memory. */
analyzer_t *analyzer_new(size_t max_entries);

/*
 * The analysis of sql[0..len), from the cache or parsed now (and cached,
 * evicting the least recently used entry when full). Borrowed: see the
 * lifetime rules above. NULL only when out of memory.
 */
const analysis_t *analyzer_get(analyzer_t *analyzer, const char *sql, size_t len);

void analyzer_stats(const analyzer_t *analyzer, analyzer_stats_t *out);

/* Frees the cache; analyses retained by callers stay valid. NULL is a no-op. */
/* The cached analysis of exactly this text, or NULL (never parses). */
const analysis_t *analyzer_lookup(analyzer_t *an, const char *sql, size_t len);

/*
 * The statement's shape: its tokens as PostgreSQL's own scanner reads them,
 * each literal (numbers, strings, bit strings) replaced by a marker of its
 * kind, comments kept (they may hold hints). Statements of one shape differ
 * only in literal values, which never change how a statement is routed, so
 * the router caches its decisions by shape: `WHERE aid = 42` and
 * `WHERE aid = 43` are analysed once. sql must be NUL-terminated at len.
 * Returns the key's length, 0 when the text cannot be scanned or the key
 * does not fit in outlen (the caller then analyses the text itself).
 * *had_literals tells whether any literal was replaced.
 */
size_t analyze_shape_key(const char *sql, size_t len, char *out, size_t outlen,
			 bool *had_literals);

/*
 * A cheaper shape for the common case, in one pass without the scanner:
 * numeric literals outside string literals become '#'. Texts with comments
 * (hints) or quoted identifiers get no fast key (returns 0): a misread can
 * then only leave digits unmasked, never merge two different statements.
 */
size_t analyze_fast_shape_key(const char *sql, size_t len, char *out, size_t outlen,
			      bool *had_literals);

void analyzer_free(analyzer_t *analyzer);

#endif
