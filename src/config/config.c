/*
 * config.c - loads and validates shardmap.yaml (SPEC.md section 3).
 *
 * The file is read with libyaml's document API so that every node keeps the
 * line it came from. The loader fills a fresh config_t with the defaults,
 * then walks the tree against a fixed schema and stops at the first error
 * with "file:line: key: message". On any error the half-built config_t is
 * freed, so the caller's pointer is written only on success.
 *
 * Order matters: shards are read before default_shard and tables, which
 * name them; tables are read in two passes because colocate_with may name a
 * table declared later.
 */
#include "config/config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

/* Limits on what a file may ask for, checked before anything is allocated. */
#define CFG_MAX_FILE_BYTES    (16 * 1024 * 1024)
#define CFG_MAX_SECRET_BYTES  (64 * 1024)
#define CFG_MAX_TABLES        4096
#define CFG_MAX_LIST          4096 /* admin users, function lists */
#define CFG_MAX_USERS         65536
#define CFG_MAX_RANGES        65536
#define CFG_MAX_TOTAL_BUCKETS (1 << 22) /* over all tables, copies included */
#define CFG_MAX_VISITS        (1 << 22) /* values read, aliases counted each time */
#define CFG_MAX_DURATION_MS   (365LL * 24 * 3600 * 1000)
#define CFG_MAX_WEIGHT        1000000
#define CFG_MAX_MESSAGE_SIZE  (1024LL * 1024 * 1024) /* PostgreSQL's MaxAllocSize */
#define CFG_MIN_MESSAGE_SIZE  1024
#define CFG_KEYPATH_MAX       320

typedef struct {
	const char *name;
	int value;
	bool hidden; /* an accepted alias, not listed in messages */
} enum_name_t;

static const enum_name_t pool_modes[] = {
    {"transaction", POOL_TRANSACTION, false}, {"session", POOL_SESSION, false}, {NULL, 0, false}};
static const enum_name_t tls_modes[] = {{"disable", TLS_DISABLE, false},
                                        {"allow", TLS_ALLOW, false},
                                        {"require", TLS_REQUIRE, false},
                                        {NULL, 0, false}};
static const enum_name_t backend_tls_modes[] = {
    {"disable", BACKEND_TLS_DISABLE, false},         {"prefer", BACKEND_TLS_PREFER, false},
    {"require", BACKEND_TLS_REQUIRE, false},         {"verify-ca", BACKEND_TLS_VERIFY_CA, false},
    {"verify-full", BACKEND_TLS_VERIFY_FULL, false}, {"verify_ca", BACKEND_TLS_VERIFY_CA, true},
    {"verify_full", BACKEND_TLS_VERIFY_FULL, true},  {NULL, 0, false}};
static const enum_name_t auth_methods[] = {{"trust", AUTH_TRUST, false},
                                           {"md5", AUTH_MD5, false},
                                           {"scram-sha-256", AUTH_SCRAM, false},
                                           {NULL, 0, false}};
static const enum_name_t balances[] = {{"round_robin", BALANCE_ROUND_ROBIN, false},
                                       {"least_connections", BALANCE_LEAST_CONNECTIONS, false},
                                       {"random", BALANCE_RANDOM, false},
                                       {"weighted", BALANCE_WEIGHTED, false},
                                       {NULL, 0, false}};
static const enum_name_t txn_reads[] = {
    {"primary", TXN_READS_PRIMARY, false},
    {"replica_until_write", TXN_READS_REPLICA_UNTIL_WRITE, false},
    {NULL, 0, false}};
static const enum_name_t multi_writes[] = {
    {"allow", MULTI_WRITES_ALLOW, false}, {"refuse", MULTI_WRITES_REFUSE, false}, {NULL, 0, false}};
static const enum_name_t log_levels[] = {
    {"debug", LOG_DEBUG, false}, {"info", LOG_INFO, false},   {"warning", LOG_WARNING, false},
    {"error", LOG_ERROR, false}, {"warn", LOG_WARNING, true}, {NULL, 0, false}};
static const enum_name_t strategies[] = {{"hash", STRATEGY_HASH, false},
                                         {"range", STRATEGY_RANGE, false},
                                         {"directory", STRATEGY_DIRECTORY, false},
                                         {"reference", STRATEGY_REFERENCE, false},
                                         {NULL, 0, false}};
static const enum_name_t key_types[] = {
    {"bigint", KEY_BIGINT, false},       {"integer", KEY_INTEGER, false},
    {"smallint", KEY_SMALLINT, false},   {"text", KEY_TEXT, false},
    {"varchar", KEY_VARCHAR, false},     {"uuid", KEY_UUID, false},
    {"timestamp", KEY_TIMESTAMP, false}, {"timestamptz", KEY_TIMESTAMPTZ, false},
    {"date", KEY_DATE, false},           {"int8", KEY_BIGINT, true},
    {"int4", KEY_INTEGER, true},         {"int", KEY_INTEGER, true},
    {"int2", KEY_SMALLINT, true},        {NULL, 0, false}};

/* Functions that write even inside a SELECT (sequences, advisory locks,
 * large objects, settings, transaction ids, notifications). */
static const char *const default_write_functions[] = {"nextval",
                                                      "setval",
                                                      "pg_advisory_lock",
                                                      "pg_advisory_lock_shared",
                                                      "pg_advisory_xact_lock",
                                                      "pg_advisory_xact_lock_shared",
                                                      "pg_try_advisory_lock",
                                                      "pg_try_advisory_lock_shared",
                                                      "pg_try_advisory_xact_lock",
                                                      "pg_try_advisory_xact_lock_shared",
                                                      "pg_advisory_unlock",
                                                      "pg_advisory_unlock_shared",
                                                      "pg_advisory_unlock_all",
                                                      "lo_create",
                                                      "lo_creat",
                                                      "lo_import",
                                                      "lo_unlink",
                                                      "lo_put",
                                                      "lo_from_bytea",
                                                      "lowrite",
                                                      "lo_truncate",
                                                      "set_config",
                                                      "txid_current",
                                                      "pg_current_xact_id",
                                                      "pg_notify"};

/* What the loader carries while it walks one document. */
typedef struct {
	const char *name; /* file name for messages */
	yaml_document_t *doc;
	char *err;
	size_t errlen;
	long visits;
	long total_buckets;
	config_t *config;
	bool check_files; /* open the TLS files it names (config_load, not _string) */
} loader_t;

/* Per-table facts needed by the second pass (co-location), not kept. */
typedef struct {
	yaml_node_t *colocate_node;
	const char *colocate_name;
	yaml_node_t *buckets_node;
	yaml_node_t *placement_node;
	int target; /* directly named table, -1 */
} table_work_t;

/* Writes "name:line: message" into err; line <= 0 leaves the line out. */
static void error_vformat(char *err, size_t errlen, const char *name, int line, const char *fmt,
                          va_list ap)
{
	int n;

	if (!err || errlen == 0)
		return;
	if (line > 0)
		n = snprintf(err, errlen, "%s:%d: ", name, line);
	else
		n = snprintf(err, errlen, "%s: ", name);
	if (n < 0 || (size_t)n >= errlen)
		return;
	vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
}

static void error_format(char *err, size_t errlen, const char *name, int line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void error_format(char *err, size_t errlen, const char *name, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	error_vformat(err, errlen, name, line, fmt, ap);
	va_end(ap);
}

static int node_line(const yaml_node_t *node)
{
	if (!node || node->start_mark.line >= INT_MAX)
		return 1;
	return (int)node->start_mark.line + 1;
}

static bool ld_fail(loader_t *ld, const yaml_node_t *node, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Records an error at the node's line and returns false, for `return ld_fail(...)`. */
static bool ld_fail(loader_t *ld, const yaml_node_t *node, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	error_vformat(ld->err, ld->errlen, ld->name, node_line(node), fmt, ap);
	va_end(ap);
	return false;
}

/* Counts one value read; aliases can make a small file expand enormously. */
static bool ld_visit(loader_t *ld, const yaml_node_t *node)
{
	if (++ld->visits > CFG_MAX_VISITS)
		return ld_fail(ld, node, "configuration too large (more than %d values)",
		               CFG_MAX_VISITS);
	return true;
}

static yaml_node_t *ld_node(loader_t *ld, int index)
{
	return yaml_document_get_node(ld->doc, index);
}

/* A plain empty, "~" or "null" scalar: YAML's null, read as "not given". */
static bool node_is_null(const yaml_node_t *node)
{
	const char *value;

	if (!node || node->type != YAML_SCALAR_NODE ||
	    node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	value = (const char *)node->data.scalar.value;
	return value[0] == '\0' || strcmp(value, "~") == 0 || strcmp(value, "null") == 0 ||
	       strcmp(value, "Null") == 0 || strcmp(value, "NULL") == 0;
}

static const char *node_kind(const yaml_node_t *node)
{
	switch (node->type) {
	case YAML_SEQUENCE_NODE:
		return "a list";
	case YAML_MAPPING_NODE:
		return "a mapping";
	default:
		return "a scalar";
	}
}

static void keypath_printf(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Formats a key path for messages; a path cut short is still readable. */
static void keypath_printf(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, size, fmt, ap);
	va_end(ap);
}

/* Builds "parent.key" (or just "key" at the top) into buf. */
static const char *keypath_join(char *buf, size_t size, const char *parent, const char *key)
{
	if (!parent || !parent[0])
		keypath_printf(buf, size, "%s", key);
	else
		keypath_printf(buf, size, "%s.%s", parent, key);
	return buf;
}

/* Levenshtein distance of two short strings, capped; for "did you mean". */
static size_t text_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t row[65];

	if (la > 64 || lb > 64)
		return SIZE_MAX;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j];
			size_t best = diag + (a[i - 1] != b[j - 1]);
			if (row[j] + 1 < best)
				best = row[j] + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

/*
 * Reads a scalar's text. A null scalar reads as "". Fails on a list or a
 * mapping, and on text with a NUL byte (it would silently cut the value).
 */
static bool ld_scalar(loader_t *ld, yaml_node_t *node, const char *path, const char **out)
{
	if (!ld_visit(ld, node))
		return false;
	if (node->type != YAML_SCALAR_NODE)
		return ld_fail(ld, node, "%s: expected a single value, got %s", path,
		               node_kind(node));
	if (strlen((const char *)node->data.scalar.value) != node->data.scalar.length)
		return ld_fail(ld, node, "%s: contains a NUL byte", path);
	*out = node_is_null(node) ? "" : (const char *)node->data.scalar.value;
	return true;
}

/*
 * Checks that node is a mapping whose keys are all in `keys` (each at most
 * once) and stores each value node at the key's index in values[] (NULL if
 * absent). A missing or null node is an empty mapping.
 */
static bool ld_mapping(loader_t *ld, yaml_node_t *node, const char *path, const char *const *keys,
                       int n_keys, yaml_node_t **values)
{
	const char *where = path[0] ? path : "top level";

	for (int i = 0; i < n_keys; i++)
		values[i] = NULL;
	if (!node || node_is_null(node))
		return true;
	if (node->type != YAML_MAPPING_NODE)
		return ld_fail(ld, node, "%s: expected a mapping, got %s", where, node_kind(node));
	for (yaml_node_pair_t *pair = node->data.mapping.pairs.start;
	     pair < node->data.mapping.pairs.top; pair++) {
		yaml_node_t *key = ld_node(ld, pair->key);
		const char *name;
		int found = -1;

		if (!key || !ld_visit(ld, key))
			return false;
		if (key->type != YAML_SCALAR_NODE)
			return ld_fail(ld, key, "%s: keys must be plain names, got %s", where,
			               node_kind(key));
		name = (const char *)key->data.scalar.value;
		for (int i = 0; i < n_keys; i++) {
			if (strcmp(keys[i], name) == 0) {
				found = i;
				break;
			}
		}
		if (found < 0) {
			const char *guess = NULL;
			for (int i = 0; i < n_keys; i++) {
				if (text_distance(keys[i], name) <= 2) {
					guess = keys[i];
					break;
				}
			}
			if (guess)
				return ld_fail(ld, key,
				               "unknown key \"%s\" in %s (did you mean \"%s\"?)",
				               name, where, guess);
			return ld_fail(ld, key, "unknown key \"%s\" in %s", name, where);
		}
		if (values[found])
			return ld_fail(ld, key, "duplicate key \"%s\" in %s (first at line %d)",
			               name, where, node_line(values[found]));
		values[found] = ld_node(ld, pair->value);
		if (!values[found])
			return ld_fail(ld, key, "%s: no value", name);
	}
	return true;
}

/* Reads the items of a list (null = empty), at most max of them. */
static bool ld_sequence(loader_t *ld, yaml_node_t *node, const char *path, int max,
                        yaml_node_item_t **items, int *count)
{
	ptrdiff_t n;

	*items = NULL;
	*count = 0;
	if (!node || node_is_null(node))
		return true;
	if (node->type != YAML_SEQUENCE_NODE)
		return ld_fail(ld, node, "%s: expected a list, got %s", path, node_kind(node));
	n = node->data.sequence.items.top - node->data.sequence.items.start;
	if (n > max)
		return ld_fail(ld, node, "%s: too many entries (%td, at most %d)", path, n, max);
	*items = node->data.sequence.items.start;
	*count = (int)n;
	return true;
}

/* Copies a scalar into a fixed buffer, failing if it does not fit. */
static bool ld_string(loader_t *ld, yaml_node_t *node, const char *path, char *buf, size_t size)
{
	const char *text = "";
	size_t len;

	if (!node)
		return true;
	if (!ld_scalar(ld, node, path, &text))
		return false;
	len = strlen(text);
	if (len >= size)
		return ld_fail(ld, node, "%s: too long (%zu bytes, at most %zu)", path, len,
		               size - 1);
	memcpy(buf, text, len + 1);
	return true;
}

/* Parses a decimal integer with an optional minus sign, nothing else. */
static bool parse_int64(const char *text, int64_t *out)
{
	const char *p = text;
	bool negative = false;
	uint64_t value = 0;

	if (*p == '-') {
		negative = true;
		p++;
	}
	if (!isdigit((unsigned char)*p))
		return false;
	for (; isdigit((unsigned char)*p); p++) {
		unsigned digit = (unsigned)(*p - '0');
		if (value > (UINT64_MAX - digit) / 10)
			return false;
		value = value * 10 + digit;
	}
	if (*p)
		return false;
	if (negative) {
		if (value > (uint64_t)INT64_MAX + 1)
			return false;
		*out = value == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)value;
	} else {
		if (value > (uint64_t)INT64_MAX)
			return false;
		*out = (int64_t)value;
	}
	return true;
}

/* Reads an integer in [min, max]. */
static bool ld_int(loader_t *ld, yaml_node_t *node, const char *path, int64_t min, int64_t max,
                   int *out)
{
	const char *text = "";
	int64_t value;

	if (!node)
		return true;
	if (!ld_scalar(ld, node, path, &text))
		return false;
	if (!parse_int64(text, &value))
		return ld_fail(ld, node, "%s: expected an integer, got \"%s\"", path, text);
	if (value < min || value > max) {
		if (max >= INT_MAX)
			return ld_fail(ld, node, "%s: must be at least %" PRId64 " (got %s)", path,
			               min, text);
		return ld_fail(ld, node, "%s: must be between %" PRId64 " and %" PRId64 " (got %s)",
		               path, min, max, text);
	}
	*out = (int)value;
	return true;
}

/* Reads true/false (also yes/no, on/off, any case, as YAML 1.1 does). */
static bool ld_bool(loader_t *ld, yaml_node_t *node, const char *path, bool *out)
{
	static const char *const yes[] = {"true", "yes", "on"};
	static const char *const no[] = {"false", "no", "off"};
	const char *text = "";

	if (!node)
		return true;
	if (!ld_scalar(ld, node, path, &text))
		return false;
	for (size_t i = 0; i < 3; i++) {
		if (strcasecmp(text, yes[i]) == 0) {
			*out = true;
			return true;
		}
		if (strcasecmp(text, no[i]) == 0) {
			*out = false;
			return true;
		}
	}
	return ld_fail(ld, node, "%s: expected true or false, got \"%s\"", path, text);
}

/* Reads a duration ("250ms", "5s", "0") of at most a year. */
static bool ld_duration(loader_t *ld, yaml_node_t *node, const char *path, int64_t *out_ms)
{
	const char *text = "";
	int64_t ms;

	if (!node)
		return true;
	if (!ld_scalar(ld, node, path, &text))
		return false;
	if (!config_parse_duration_ms(text, &ms))
		return ld_fail(ld, node,
		               "%s: expected a duration such as 250ms, 5s, 2m, 1h or 0, got \"%s\"",
		               path, text);
	if (ms > CFG_MAX_DURATION_MS)
		return ld_fail(ld, node, "%s: at most 365d (got %s)", path, text);
	*out_ms = ms;
	return true;
}

/* Reads a size ("64MB", "10kB", plain bytes) in [min, max]. */
static bool ld_size(loader_t *ld, yaml_node_t *node, const char *path, int64_t min, int64_t max,
                    int64_t *out_bytes)
{
	const char *text = "";
	int64_t bytes;

	if (!node)
		return true;
	if (!ld_scalar(ld, node, path, &text))
		return false;
	if (!config_parse_size(text, &bytes))
		return ld_fail(ld, node,
		               "%s: expected a size such as 64MB, 10kB or a number of bytes, got "
		               "\"%s\"",
		               path, text);
	if (bytes < min || bytes > max)
		return ld_fail(ld, node,
		               "%s: must be between %" PRId64 " and %" PRId64 " bytes (got %s)",
		               path, min, max, text);
	*out_bytes = bytes;
	return true;
}

/* Reads "host:port" or "[v6]:port". */
static bool ld_address(loader_t *ld, yaml_node_t *node, const char *path, cfg_address_t *out)
{
	const char *text = "";

	if (!node)
		return true;
	if (!ld_scalar(ld, node, path, &text))
		return false;
	if (!config_parse_address(text, out))
		return ld_fail(ld, node,
		               "%s: expected host:port with a port from 1 to 65535, got \"%s\"",
		               path, text);
	return true;
}

/* Reads one of the names of an enum table. */
static bool ld_enum(loader_t *ld, yaml_node_t *node, const char *path, const enum_name_t *names,
                    int *out)
{
	const char *text = "";
	char choices[256] = "";
	size_t used = 0;

	if (!node)
		return true;
	if (!ld_scalar(ld, node, path, &text))
		return false;
	for (const enum_name_t *e = names; e->name; e++) {
		if (strcmp(e->name, text) == 0) {
			*out = e->value;
			return true;
		}
	}
	for (const enum_name_t *e = names; e->name; e++) {
		int n;
		if (e->hidden)
			continue;
		n = snprintf(choices + used, sizeof(choices) - used, "%s%s", used ? ", " : "",
		             e->name);
		if (n < 0 || (size_t)n >= sizeof(choices) - used)
			break;
		used += (size_t)n;
	}
	return ld_fail(ld, node, "%s: expected one of %s, got \"%s\"", path, choices, text);
}

static const char *enum_name(const enum_name_t *names, int value)
{
	for (const enum_name_t *e = names; e->name; e++) {
		if (e->value == value && !e->hidden)
			return e->name;
	}
	return "?";
}

/*
 * Checks a name: not empty, at most max_part bytes per dot-separated part,
 * at most max_dots dots, no spaces, control characters or quotes.
 */
static bool name_is_valid(const char *text, size_t max_part, int max_dots)
{
	size_t part = 0;
	int dots = 0;

	if (!text[0])
		return false;
	for (const char *p = text; *p; p++) {
		unsigned char ch = (unsigned char)*p;
		if (ch == '.') {
			if (part == 0 || ++dots > max_dots)
				return false;
			part = 0;
			continue;
		}
		if (ch <= ' ' || ch == 0x7f || ch == '"' || ch == '\'')
			return false;
		if (++part > max_part)
			return false;
	}
	return part > 0;
}

/* Reads a name (see name_is_valid) into buf of `size` bytes. */
static bool ld_name(loader_t *ld, yaml_node_t *node, const char *path, int max_dots, char *buf,
                    size_t size)
{
	const char *text = "";

	if (!ld_scalar(ld, node, path, &text))
		return false;
	if (!name_is_valid(text, CONFIG_NAME_MAX, max_dots) || strlen(text) >= size)
		return ld_fail(ld, node,
		               "%s: \"%s\" is not a valid name (1 to %d bytes%s, no spaces or "
		               "quotes)",
		               path, text, CONFIG_NAME_MAX, max_dots ? " per part" : "");
	memcpy(buf, text, strlen(text) + 1);
	return true;
}

/* Shard names appear in hints (shard=s1) and logs: letters, digits, _ and -. */
static bool ld_shard_name(loader_t *ld, yaml_node_t *node, const char *path, char *buf)
{
	const char *text = "";
	size_t len;

	if (!ld_scalar(ld, node, path, &text))
		return false;
	len = strlen(text);
	if (len == 0 || len > CONFIG_NAME_MAX)
		return ld_fail(ld, node, "%s: a shard name has 1 to %d characters, got \"%s\"",
		               path, CONFIG_NAME_MAX, text);
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)text[i];
		if (!isalnum(ch) && ch != '_' && ch != '-')
			return ld_fail(ld, node,
			               "%s: a shard name may hold only letters, digits, _ and -, "
			               "got \"%s\"",
			               path, text);
	}
	memcpy(buf, text, len + 1);
	return true;
}

/*
 * Reads a list of names into a fresh array. *out and *count are updated
 * as each entry is allocated, so config_free() can always clean up.
 * Duplicates are an error.
 */
static bool ld_name_list(loader_t *ld, yaml_node_t *node, const char *path, int max_dots,
                         char ***out, int *count)
{
	yaml_node_item_t *items;
	int n;
	char keypath[CFG_KEYPATH_MAX];
	char buf[CONFIG_NAME_MAX * 2 + 2];

	if (!ld_sequence(ld, node, path, CFG_MAX_LIST, &items, &n))
		return false;
	*out = calloc((size_t)(n ? n : 1), sizeof(char *));
	if (!*out)
		return ld_fail(ld, node, "%s: out of memory", path);
	*count = 0;
	for (int i = 0; i < n; i++) {
		yaml_node_t *item = ld_node(ld, items[i]);
		keypath_printf(keypath, sizeof(keypath), "%s[%d]", path, i);
		if (!item || !ld_name(ld, item, keypath, max_dots, buf, sizeof(buf)))
			return false;
		for (int j = 0; j < *count; j++) {
			if (strcmp((*out)[j], buf) == 0)
				return ld_fail(ld, item, "%s: duplicate name \"%s\"", keypath, buf);
		}
		(*out)[i] = strdup(buf);
		if (!(*out)[i])
			return ld_fail(ld, item, "%s: out of memory", keypath);
		*count = i + 1;
	}
	return true;
}

/* Reads a whole small file into a fresh NUL-terminated buffer; sets errno. */
static char *file_read_all(const char *path, size_t limit, size_t *out_len, bool *too_large)
{
	FILE *file = fopen(path, "rb");
	char *buf = NULL;
	size_t len = 0, cap = 0;

	*too_large = false;
	if (!file)
		return NULL;
	for (;;) {
		size_t got;
		if (len == cap) {
			size_t want = cap ? cap * 2 : 4096;
			char *grown;
			if (cap > limit) {
				*too_large = true;
				break;
			}
			grown = realloc(buf, want + 1);
			if (!grown) {
				errno = ENOMEM;
				break;
			}
			buf = grown;
			cap = want;
		}
		got = fread(buf + len, 1, cap - len, file);
		len += got;
		if (got == 0) {
			if (ferror(file)) {
				if (errno == 0)
					errno = EIO;
				break;
			}
			fclose(file);
			if (len > limit) {
				*too_large = true;
				free(buf);
				return NULL;
			}
			buf[len] = '\0';
			*out_len = len;
			return buf;
		}
	}
	{
		int saved = errno;
		fclose(file);
		free(buf);
		errno = saved;
	}
	return NULL;
}

/*
 * Reads a secret: "env:NAME" takes the environment variable NAME (an
 * error if unset), "file:/path" the file's contents without trailing line
 * ends, anything else is the value itself. Stores a fresh string.
 */
static bool ld_secret(loader_t *ld, yaml_node_t *node, const char *path, char **out)
{
	const char *text = "";
	char *value;

	if (!ld_scalar(ld, node, path, &text))
		return false;
	if (strncmp(text, "env:", 4) == 0) {
		const char *name = text + 4;
		const char *env;
		if (!name[0])
			return ld_fail(ld, node, "%s: env: needs a variable name", path);
		env = getenv(name);
		if (!env)
			return ld_fail(ld, node, "%s: environment variable %s is not set", path,
			               name);
		if (strlen(env) > CFG_MAX_SECRET_BYTES)
			return ld_fail(ld, node, "%s: environment variable %s is too long", path,
			               name);
		value = strdup(env);
	} else if (strncmp(text, "file:", 5) == 0) {
		const char *file = text + 5;
		size_t len = 0;
		bool too_large;
		if (!file[0])
			return ld_fail(ld, node, "%s: file: needs a path", path);
		value = file_read_all(file, CFG_MAX_SECRET_BYTES, &len, &too_large);
		if (!value && too_large)
			return ld_fail(ld, node, "%s: %s is larger than %d bytes", path, file,
			               CFG_MAX_SECRET_BYTES);
		if (!value) {
			char buf[128];
			return ld_fail(ld, node, "%s: cannot read %s: %s", path, file,
			               strerror_r(errno, buf, sizeof(buf)));
		}
		if (strlen(value) != len) {
			free(value);
			return ld_fail(ld, node, "%s: %s contains a NUL byte", path, file);
		}
		while (len > 0 && (value[len - 1] == '\n' || value[len - 1] == '\r'))
			value[--len] = '\0';
	} else {
		value = strdup(text);
	}
	if (!value)
		return ld_fail(ld, node, "%s: out of memory", path);
	free(*out);
	*out = value;
	return true;
}

/* listen, metrics and max_* limits at the top level. */
static bool load_limits(loader_t *ld, yaml_node_t *listen, yaml_node_t *workers,
                        yaml_node_t *max_client, yaml_node_t *max_user, yaml_node_t *max_db,
                        yaml_node_t *max_message, yaml_node_t *metrics)
{
	config_t *c = ld->config;
	int64_t message_size = (int64_t)c->max_message_size;

	if (!ld_address(ld, listen, "listen", &c->listen) ||
	    !ld_int(ld, workers, "workers", 1, 64, &c->workers) ||
	    !ld_int(ld, max_client, "max_client_conn", 1, 1000000, &c->max_client_conn) ||
	    !ld_int(ld, max_user, "max_user_conn", 0, 1000000, &c->max_user_conn) ||
	    !ld_int(ld, max_db, "max_db_conn", 0, 1000000, &c->max_db_conn) ||
	    !ld_size(ld, max_message, "max_message_size", CFG_MIN_MESSAGE_SIZE,
	             CFG_MAX_MESSAGE_SIZE, &message_size))
		return false;
	c->max_message_size = (size_t)message_size;
	if (metrics && !node_is_null(metrics)) {
		const char *text = "";
		if (!ld_scalar(ld, metrics, "metrics", &text))
			return false;
		if (text[0]) {
			if (!ld_address(ld, metrics, "metrics", &c->metrics))
				return false;
			c->has_metrics = true;
		}
	}
	return true;
}

/* admin: { users: [...] } */
static bool load_admin(loader_t *ld, yaml_node_t *node)
{
	static const char *const keys[] = {"users"};
	yaml_node_t *v[1];
	config_t *c = ld->config;

	if (!ld_mapping(ld, node, "admin", keys, 1, v))
		return false;
	if (!v[0])
		return true;
	return ld_name_list(ld, v[0], "admin.users", 0, &c->admin_users, &c->n_admin_users);
}

/* log: { level, slow_statement } */
static bool load_log(loader_t *ld, yaml_node_t *node)
{
	static const char *const keys[] = {"level", "slow_statement"};
	yaml_node_t *v[2];
	config_t *c = ld->config;
	int level = (int)c->log_level;

	if (!ld_mapping(ld, node, "log", keys, 2, v) ||
	    !ld_enum(ld, v[0], "log.level", log_levels, &level) ||
	    !ld_duration(ld, v[1], "log.slow_statement", &c->slow_statement_ms))
		return false;
	c->log_level = (log_level_t)level;
	return true;
}

/* What OpenSSL said first (its per-thread queue emptied), or `otherwise`. */
static const char *openssl_reason(const char *otherwise)
{
	unsigned long e = ERR_peek_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;
	ERR_clear_error();
	return r ? r : otherwise;
}

/* A key behind a passphrase cannot be opened by a daemon: refuse it
 * instead of prompting on the terminal. */
static int refuse_passphrase(char *buf, int size, int rwflag, void *userdata)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	*(bool *)userdata = true;
	return 0;
}

static bool ld_file_readable(loader_t *ld, yaml_node_t *node, const char *path, const char *file)
{
	FILE *f = fopen(file, "r");
	if (!f)
		return ld_fail(ld, node, "%s: %s: %s", path, file, strerror(errno));
	fclose(f);
	return true;
}

/*
 * What the proxy loads at start for clients' TLS (net/tls.c), checked the
 * same way so that `shardgate check` finds it: the cipher list names a
 * cipher; with check_files, the certificate chain and the key are readable
 * PEM and the key matches the certificate.
 */
static bool check_tls_server(loader_t *ld, yaml_node_t *const v[4])
{
	const config_t *c = ld->config;
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	bool encrypted = false, ok = false;
	if (!ctx)
		return ld_fail(ld, v[0], "tls: %s", openssl_reason("cannot create a TLS context"));
	SSL_CTX_set_default_passwd_cb(ctx, refuse_passphrase);
	SSL_CTX_set_default_passwd_cb_userdata(ctx, &encrypted);
	if (c->tls.ciphers[0] && SSL_CTX_set_cipher_list(ctx, c->tls.ciphers) != 1) {
		ERR_clear_error();
		ld_fail(ld, v[3], "tls.ciphers: no usable cipher in \"%s\"", c->tls.ciphers);
		goto out;
	}
	if (!ld->check_files) {
		ok = true;
		goto out;
	}
	if (!ld_file_readable(ld, v[1], "tls.cert", c->tls.cert) ||
	    !ld_file_readable(ld, v[2], "tls.key", c->tls.key))
		goto out;
	if (SSL_CTX_use_certificate_chain_file(ctx, c->tls.cert) != 1) {
		ld_fail(ld, v[1], "tls.cert: %s: not a PEM certificate (%s)", c->tls.cert,
		        openssl_reason("unreadable"));
		goto out;
	}
	bool loaded = SSL_CTX_use_PrivateKey_file(ctx, c->tls.key, SSL_FILETYPE_PEM) == 1;
	if (!loaded || SSL_CTX_check_private_key(ctx) != 1) {
		/* A key that loads but fails the check does not match (one of
		 * another type sits in a slot with no certificate at all). */
		unsigned long e = ERR_peek_error();
		const char *why = openssl_reason("unreadable");
		if (loaded || (ERR_GET_LIB(e) == ERR_LIB_X509 &&
			       ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH))
			ld_fail(ld, v[2], "tls.key: %s does not match the certificate %s", c->tls.key,
			        c->tls.cert);
		else if (encrypted)
			ld_fail(ld, v[2], "tls.key: %s: the key is protected by a passphrase (not "
			        "supported)", c->tls.key);
		else
			ld_fail(ld, v[2], "tls.key: %s: not a PEM private key (%s)", c->tls.key, why);
		goto out;
	}
	ok = true;
out:
	SSL_CTX_free(ctx);
	return ok;
}

/* tls: { mode, cert, key, ciphers }; serving TLS needs a certificate. */
static bool load_tls(loader_t *ld, yaml_node_t *node)
{
	static const char *const keys[] = {"mode", "cert", "key", "ciphers"};
	yaml_node_t *v[4];
	config_t *c = ld->config;
	int mode = (int)c->tls.mode;

	if (!ld_mapping(ld, node, "tls", keys, 4, v) ||
	    !ld_enum(ld, v[0], "tls.mode", tls_modes, &mode) ||
	    !ld_string(ld, v[1], "tls.cert", c->tls.cert, sizeof(c->tls.cert)) ||
	    !ld_string(ld, v[2], "tls.key", c->tls.key, sizeof(c->tls.key)) ||
	    !ld_string(ld, v[3], "tls.ciphers", c->tls.ciphers, sizeof(c->tls.ciphers)))
		return false;
	c->tls.mode = (tls_mode_t)mode;
	if (c->tls.mode != TLS_DISABLE && (!c->tls.cert[0] || !c->tls.key[0]))
		return ld_fail(ld, v[0], "tls.mode: %s needs tls.cert and tls.key",
		               enum_name(tls_modes, mode));
	if (c->tls.mode != TLS_DISABLE)
		return check_tls_server(ld, v);
	return true;
}

/* pool: { mode, size, prepared_statements } */
static bool load_pool(loader_t *ld, yaml_node_t *node)
{
	static const char *const keys[] = {"mode", "size", "prepared_statements"};
	yaml_node_t *v[3];
	config_t *c = ld->config;
	int mode = (int)c->pool.mode;

	if (!ld_mapping(ld, node, "pool", keys, 3, v) ||
	    !ld_enum(ld, v[0], "pool.mode", pool_modes, &mode) ||
	    !ld_int(ld, v[1], "pool.size", 1, 100000, &c->pool.size) ||
	    !ld_int(ld, v[2], "pool.prepared_statements", 0, 1000000, &c->pool.prepared_statements))
		return false;
	c->pool.mode = (pool_mode_t)mode;
	return true;
}

/* Formats a duration compactly ("250ms", "5s", "2m", "0") for messages. */
static const char *format_duration(int64_t ms, char *buf, size_t size)
{
	if (ms == 0)
		snprintf(buf, size, "0");
	else if (ms % 3600000 == 0)
		snprintf(buf, size, "%" PRId64 "h", ms / 3600000);
	else if (ms % 60000 == 0)
		snprintf(buf, size, "%" PRId64 "m", ms / 60000);
	else if (ms % 1000 == 0)
		snprintf(buf, size, "%" PRId64 "s", ms / 1000);
	else
		snprintf(buf, size, "%" PRId64 "ms", ms);
	return buf;
}

/*
 * timeouts: every field a duration. Outer timeouts are longer than inner
 * ones (SPEC.md section 6): of connect < query < client_idle, every pair of
 * non-zero values must be strictly ordered. connect may not be 0.
 */
static bool load_timeouts(loader_t *ld, yaml_node_t *node)
{
	enum { T_CONNECT, T_QUERY, T_WAIT, T_LOGIN, T_IDLE, T_IDLE_TXN, T_SHUTDOWN, T_COUNT };
	static const char *const keys[T_COUNT] = {
	    "connect", "query", "wait", "login", "client_idle", "idle_in_transaction", "shutdown"};
	yaml_node_t *v[T_COUNT];
	config_t *c = ld->config;
	int64_t *fields[T_COUNT] = {
	    &c->timeouts.connect_ms,     &c->timeouts.query_ms,
	    &c->timeouts.wait_ms,        &c->timeouts.login_ms,
	    &c->timeouts.client_idle_ms, &c->timeouts.idle_in_transaction_ms,
	    &c->timeouts.shutdown_ms};
	static const int chain[] = {T_CONNECT, T_QUERY, T_IDLE};
	char keypath[CFG_KEYPATH_MAX];
	int prev = -1;

	if (!ld_mapping(ld, node, "timeouts", keys, T_COUNT, v))
		return false;
	for (int i = 0; i < T_COUNT; i++) {
		keypath_join(keypath, sizeof(keypath), "timeouts", keys[i]);
		if (!ld_duration(ld, v[i], keypath, fields[i]))
			return false;
	}
	if (c->timeouts.connect_ms == 0)
		return ld_fail(ld, v[T_CONNECT] ? v[T_CONNECT] : node,
		               "timeouts.connect: must be above 0 (every backend call has a "
		               "timeout)");
	for (size_t i = 0; i < sizeof(chain) / sizeof(chain[0]); i++) {
		int k = chain[i];
		char a[32], b[32];
		if (*fields[k] == 0)
			continue;
		if (prev >= 0 && *fields[prev] >= *fields[k]) {
			format_duration(*fields[prev], a, sizeof(a));
			format_duration(*fields[k], b, sizeof(b));
			if (v[k] || !v[prev])
				return ld_fail(ld, v[k] ? v[k] : node,
				               "timeouts.%s: must be longer than timeouts.%s (%s "
				               "<= %s)",
				               keys[k], keys[prev], b, a);
			return ld_fail(ld, v[prev],
			               "timeouts.%s: must be shorter than timeouts.%s (%s >= %s)",
			               keys[prev], keys[k], a, b);
		}
		prev = k;
	}
	return true;
}

/* auth: { method, users: [{name, password}], query } */
static bool load_auth(loader_t *ld, yaml_node_t *node)
{
	static const char *const keys[] = {"method", "users", "query"};
	static const char *const user_keys[] = {"name", "password"};
	yaml_node_t *v[3];
	config_t *c = ld->config;
	int method = (int)c->auth.method;
	yaml_node_item_t *items;
	int n;
	char keypath[CFG_KEYPATH_MAX], sub[CFG_KEYPATH_MAX];

	if (!ld_mapping(ld, node, "auth", keys, 3, v) ||
	    !ld_enum(ld, v[0], "auth.method", auth_methods, &method) ||
	    !ld_string(ld, v[2], "auth.query", c->auth.query, sizeof(c->auth.query)) ||
	    !ld_sequence(ld, v[1], "auth.users", CFG_MAX_USERS, &items, &n))
		return false;
	c->auth.method = (auth_method_t)method;
	c->auth.users = calloc((size_t)(n ? n : 1), sizeof(cfg_user_t));
	if (!c->auth.users)
		return ld_fail(ld, v[1], "auth.users: out of memory");
	c->auth.n_users = n;
	for (int i = 0; i < n; i++) {
		yaml_node_t *item = ld_node(ld, items[i]);
		yaml_node_t *uv[2];
		cfg_user_t *user = &c->auth.users[i];

		keypath_printf(keypath, sizeof(keypath), "auth.users[%d]", i);
		if (!item || !ld_mapping(ld, item, keypath, user_keys, 2, uv))
			return false;
		if (!uv[0])
			return ld_fail(ld, item, "%s.name: missing", keypath);
		if (!ld_name(ld, uv[0], keypath_join(sub, sizeof(sub), keypath, "name"), 0,
		             user->name, sizeof(user->name)))
			return false;
		for (int j = 0; j < i; j++) {
			if (strcmp(c->auth.users[j].name, user->name) == 0)
				return ld_fail(ld, uv[0], "%s: duplicate user \"%s\"", sub,
				               user->name);
		}
		if (uv[1]) {
			if (!ld_secret(ld, uv[1],
			               keypath_join(sub, sizeof(sub), keypath, "password"),
			               &user->password))
				return false;
		} else if (!(user->password = strdup(""))) {
			return ld_fail(ld, item, "%s: out of memory", keypath);
		}
	}
	if (c->auth.method != AUTH_TRUST && n == 0 && !c->auth.query[0])
		return ld_fail(ld, v[0], "auth.method: %s needs auth.users or auth.query",
		               enum_name(auth_methods, method));
	return true;
}

/* backend: { user, password, database, tls, ca_file } */
static bool load_backend(loader_t *ld, yaml_node_t *node)
{
	static const char *const keys[] = {"user", "password", "database", "tls", "ca_file"};
	yaml_node_t *v[5];
	config_t *c = ld->config;
	int tls = (int)c->backend.tls;

	if (!ld_mapping(ld, node, "backend", keys, 5, v) ||
	    !ld_string(ld, v[0], "backend.user", c->backend.user, sizeof(c->backend.user)) ||
	    (v[1] && !ld_secret(ld, v[1], "backend.password", &c->backend.password)) ||
	    !ld_string(ld, v[2], "backend.database", c->backend.database,
	               sizeof(c->backend.database)) ||
	    !ld_enum(ld, v[3], "backend.tls", backend_tls_modes, &tls) ||
	    !ld_string(ld, v[4], "backend.ca_file", c->backend.ca_file, sizeof(c->backend.ca_file)))
		return false;
	c->backend.tls = (backend_tls_t)tls;
	/* The CA the proxy verifies servers with (net/tls.c); libpq gets it as
	 * sslrootcert. Checked with the files, as at start. */
	bool verify = c->backend.tls == BACKEND_TLS_VERIFY_CA ||
	              c->backend.tls == BACKEND_TLS_VERIFY_FULL;
	if (!verify || !ld->check_files)
		return true;
	if (!c->backend.ca_file[0])
		return ld_fail(ld, v[3], "backend.tls: %s needs backend.ca_file",
		               enum_name(backend_tls_modes, tls));
	if (!ld_file_readable(ld, v[4], "backend.ca_file", c->backend.ca_file))
		return false;
	X509_STORE *store = X509_STORE_new();
	bool loaded = store && X509_STORE_load_file(store, c->backend.ca_file) == 1;
	const char *why = loaded ? NULL : openssl_reason("unreadable");
	X509_STORE_free(store);
	if (!loaded)
		return ld_fail(ld, v[4], "backend.ca_file: %s: no PEM certificate (%s)",
		               c->backend.ca_file, why);
	return true;
}

/* health: { interval, failures_to_open, open_for } */
static bool load_health(loader_t *ld, yaml_node_t *node)
{
	static const char *const keys[] = {"interval", "failures_to_open", "open_for"};
	yaml_node_t *v[3];
	config_t *c = ld->config;

	if (!ld_mapping(ld, node, "health", keys, 3, v) ||
	    !ld_duration(ld, v[0], "health.interval", &c->health.interval_ms) ||
	    !ld_int(ld, v[1], "health.failures_to_open", 1, 1000, &c->health.failures_to_open) ||
	    !ld_duration(ld, v[2], "health.open_for", &c->health.open_for_ms))
		return false;
	if (c->health.interval_ms == 0)
		return ld_fail(ld, v[0], "health.interval: must be above 0");
	return true;
}

/* Fills routing.write_functions with the built-in list. */
static bool routing_set_default_writes(config_t *c)
{
	size_t n = sizeof(default_write_functions) / sizeof(default_write_functions[0]);

	c->routing.write_functions = calloc(n, sizeof(char *));
	if (!c->routing.write_functions)
		return false;
	for (size_t i = 0; i < n; i++) {
		c->routing.write_functions[i] = strdup(default_write_functions[i]);
		if (!c->routing.write_functions[i])
			return false;
		c->routing.n_write_functions = (int)i + 1;
	}
	return true;
}

/* routing: read/write split, replica lag bounds and the function lists. */
static bool load_routing(loader_t *ld, yaml_node_t *node)
{
	enum {
		R_SPLIT,
		R_BALANCE,
		R_PRIMARY_READS,
		R_LAG,
		R_RYW,
		R_RYW_WAIT,
		R_TXN_READS,
		R_RO_FUNCS,
		R_W_FUNCS,
		R_MULTI,
		R_2PC,
		R_COUNT
	};
	static const char *const keys[R_COUNT] = {
	    "read_write_split",         "balance",
	    "include_primary_in_reads", "max_replica_lag",
	    "read_your_writes",         "read_your_writes_wait",
	    "transaction_reads",        "read_only_functions",
	    "write_functions",          "multi_shard_writes",
	    "two_phase_commit"};
	static const char *const lag_keys[] = {"bytes", "time"};
	yaml_node_t *v[R_COUNT], *lag[2];
	config_t *c = ld->config;
	int balance = (int)c->routing.balance;
	int reads = (int)c->routing.transaction_reads;
	int multi = (int)c->routing.multi_shard_writes;

	if (!ld_mapping(ld, node, "routing", keys, R_COUNT, v) ||
	    !ld_bool(ld, v[R_SPLIT], "routing.read_write_split", &c->routing.read_write_split) ||
	    !ld_enum(ld, v[R_BALANCE], "routing.balance", balances, &balance) ||
	    !ld_bool(ld, v[R_PRIMARY_READS], "routing.include_primary_in_reads",
	             &c->routing.include_primary_in_reads) ||
	    !ld_mapping(ld, v[R_LAG], "routing.max_replica_lag", lag_keys, 2, lag) ||
	    !ld_size(ld, lag[0], "routing.max_replica_lag.bytes", 0, INT64_MAX,
	             &c->routing.max_lag_bytes) ||
	    !ld_duration(ld, lag[1], "routing.max_replica_lag.time", &c->routing.max_lag_ms) ||
	    !ld_bool(ld, v[R_RYW], "routing.read_your_writes", &c->routing.read_your_writes) ||
	    !ld_duration(ld, v[R_RYW_WAIT], "routing.read_your_writes_wait",
	                 &c->routing.read_your_writes_wait_ms) ||
	    !ld_enum(ld, v[R_TXN_READS], "routing.transaction_reads", txn_reads, &reads) ||
	    !ld_enum(ld, v[R_MULTI], "routing.multi_shard_writes", multi_writes, &multi) ||
	    !ld_bool(ld, v[R_2PC], "routing.two_phase_commit", &c->routing.two_phase_commit))
		return false;
	c->routing.balance = (balance_t)balance;
	c->routing.transaction_reads = (txn_reads_t)reads;
	c->routing.multi_shard_writes = (multi_writes_t)multi;
	if (v[R_RO_FUNCS] &&
	    !ld_name_list(ld, v[R_RO_FUNCS], "routing.read_only_functions", 1,
	                  &c->routing.read_only_functions, &c->routing.n_read_only_functions))
		return false;
	if (v[R_W_FUNCS]) {
		if (!ld_name_list(ld, v[R_W_FUNCS], "routing.write_functions", 1,
		                  &c->routing.write_functions, &c->routing.n_write_functions))
			return false;
	} else if (!routing_set_default_writes(c)) {
		return ld_fail(ld, node, "routing: out of memory");
	}
	for (int i = 0; i < c->routing.n_read_only_functions; i++) {
		for (int j = 0; j < c->routing.n_write_functions; j++) {
			if (strcmp(c->routing.read_only_functions[i],
			           c->routing.write_functions[j]) == 0)
				return ld_fail(
				    ld, v[R_RO_FUNCS],
				    "routing.read_only_functions: \"%s\" is also a write "
				    "function",
				    c->routing.read_only_functions[i]);
		}
	}
	return true;
}

static bool address_equal(const cfg_address_t *a, const cfg_address_t *b)
{
	return a->port == b->port && strcmp(a->host, b->host) == 0;
}

/* A node: "host:port" or { address, weight }. */
static bool load_node(loader_t *ld, yaml_node_t *node, const char *path, cfg_node_t *out)
{
	static const char *const keys[] = {"address", "weight"};
	yaml_node_t *v[2];
	char sub[CFG_KEYPATH_MAX];

	out->weight = 1;
	out->line = node_line(node);
	if (node->type != YAML_MAPPING_NODE)
		return ld_address(ld, node, path, &out->address);
	if (!ld_mapping(ld, node, path, keys, 2, v))
		return false;
	if (!v[0])
		return ld_fail(ld, node, "%s.address: missing", path);
	return ld_address(ld, v[0], keypath_join(sub, sizeof(sub), path, "address"),
	                  &out->address) &&
	       ld_int(ld, v[1], keypath_join(sub, sizeof(sub), path, "weight"), 1, CFG_MAX_WEIGHT,
	              &out->weight);
}

/* Fails if the node's address is already used by a node read before it. */
static bool shard_check_address(loader_t *ld, yaml_node_t *node, const char *path,
                                const cfg_address_t *address, int shard, int replica)
{
	config_t *c = ld->config;

	for (int s = 0; s <= shard; s++) {
		const cfg_shard_t *other = &c->shards[s];
		int replicas = s < shard ? other->n_replicas : replica;
		if (!(s == shard && replica < 0) && address_equal(&other->primary.address, address))
			return ld_fail(ld, node, "%s: %s:%d is already the primary of shard %s",
			               path, address->host, address->port, other->name);
		for (int r = 0; r < replicas; r++) {
			if (address_equal(&other->replicas[r].address, address))
				return ld_fail(ld, node,
				               "%s: %s:%d is already a replica of shard %s", path,
				               address->host, address->port, other->name);
		}
	}
	return true;
}

/* shards: [{ name, primary, replicas, max_concurrent }] */
static bool load_shards(loader_t *ld, yaml_node_t *node, yaml_node_t *root)
{
	static const char *const keys[] = {"name", "primary", "replicas", "max_concurrent"};
	config_t *c = ld->config;
	yaml_node_item_t *items, *replica_items;
	int n, n_replicas;
	char keypath[CFG_KEYPATH_MAX], sub[CFG_KEYPATH_MAX], item_path[CFG_KEYPATH_MAX];

	if (!ld_sequence(ld, node, "shards", CONFIG_MAX_SHARDS, &items, &n))
		return false;
	if (n == 0)
		return ld_fail(ld, node ? node : root, "shards: no shards defined");
	c->shards = calloc((size_t)n, sizeof(cfg_shard_t));
	if (!c->shards)
		return ld_fail(ld, node, "shards: out of memory");
	for (int i = 0; i < n; i++) {
		yaml_node_t *item = ld_node(ld, items[i]);
		yaml_node_t *v[4];
		cfg_shard_t *shard = &c->shards[i];

		keypath_printf(keypath, sizeof(keypath), "shards[%d]", i);
		if (!item)
			return false;
		if (item->type != YAML_MAPPING_NODE)
			return ld_fail(ld, item,
			               "%s: expected a mapping with name and primary, got %s",
			               keypath, node_kind(item));
		if (!ld_mapping(ld, item, keypath, keys, 4, v))
			return false;
		shard->line = node_line(item);
		if (!v[0])
			return ld_fail(ld, item, "%s.name: missing", keypath);
		if (!ld_shard_name(ld, v[0], keypath_join(sub, sizeof(sub), keypath, "name"),
		                   shard->name))
			return false;
		for (int j = 0; j < i; j++) {
			if (strcmp(c->shards[j].name, shard->name) == 0)
				return ld_fail(ld, v[0],
				               "%s: duplicate shard name \"%s\" (first at line %d)",
				               sub, shard->name, c->shards[j].line);
		}
		if (!v[1] || node_is_null(v[1]))
			return ld_fail(ld, v[1] ? v[1] : item, "%s.primary: missing", keypath);
		keypath_join(sub, sizeof(sub), keypath, "primary");
		if (!load_node(ld, v[1], sub, &shard->primary) ||
		    !shard_check_address(ld, v[1], sub, &shard->primary.address, i, -1))
			return false;
		keypath_join(sub, sizeof(sub), keypath, "replicas");
		if (!ld_sequence(ld, v[2], sub, CONFIG_MAX_REPLICAS, &replica_items, &n_replicas))
			return false;
		for (int r = 0; r < n_replicas; r++) {
			yaml_node_t *replica = ld_node(ld, replica_items[r]);
			keypath_printf(item_path, sizeof(item_path), "%s[%d]", sub, r);
			if (!replica || !load_node(ld, replica, item_path, &shard->replicas[r]) ||
			    !shard_check_address(ld, replica, item_path,
			                         &shard->replicas[r].address, i, r))
				return false;
			shard->n_replicas = r + 1;
		}
		if (!ld_int(ld, v[3], keypath_join(sub, sizeof(sub), keypath, "max_concurrent"), 0,
		            1000000, &shard->max_concurrent))
			return false;
		c->n_shards = i + 1;
	}
	return true;
}

/* Reads a shard name and resolves it to an index. */
static bool ld_shard_ref(loader_t *ld, yaml_node_t *node, const char *path, int *out)
{
	const char *text = "";
	int index;

	if (!ld_scalar(ld, node, path, &text))
		return false;
	index = config_find_shard(ld->config, text);
	if (index < 0)
		return ld_fail(ld, node, "%s: unknown shard \"%s\"", path, text);
	*out = index;
	return true;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	int64_t era;
	int64_t yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/* Reads exactly `digits` decimal digits at *p. */
static bool read_digits(const char **p, int digits, int *out)
{
	int value = 0;

	for (int i = 0; i < digits; i++) {
		if (!isdigit((unsigned char)(*p)[i]))
			return false;
		value = value * 10 + ((*p)[i] - '0');
	}
	*p += digits;
	*out = value;
	return true;
}

/*
 * Parses an ISO date "YYYY-MM-DD", and for timestamps an optional time
 * "[T ]HH:MM[:SS[.ffffff]]"; for timestamptz a zone ("Z", "+HH", "+HH:MM")
 * is required, for the others it is refused: the proxy cannot know a
 * session's TimeZone. Stores microseconds since 1970-01-01 UTC.
 */
static bool parse_timestamp_us(const char *text, key_type_t type, int64_t *out)
{
	static const int month_days[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	const char *p = text;
	int year, month, day, hour = 0, minute = 0, second = 0, zone_h = 0, zone_m = 0;
	int64_t micros = 0, zone_sign = 0;

	if (!read_digits(&p, 4, &year) || *p++ != '-' || !read_digits(&p, 2, &month) ||
	    *p++ != '-' || !read_digits(&p, 2, &day))
		return false;
	if (year < 1 || month < 1 || month > 12 || day < 1 || day > month_days[month - 1])
		return false;
	if (month == 2 && day == 29 && !(year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)))
		return false;
	if (type != KEY_DATE && (*p == 'T' || *p == ' ')) {
		p++;
		if (!read_digits(&p, 2, &hour) || *p++ != ':' || !read_digits(&p, 2, &minute))
			return false;
		if (*p == ':') {
			p++;
			if (!read_digits(&p, 2, &second))
				return false;
			if (*p == '.') {
				int digits = 0;
				p++;
				while (isdigit((unsigned char)*p)) {
					if (++digits > 6)
						return false;
					micros = micros * 10 + (*p++ - '0');
				}
				if (digits == 0)
					return false;
				for (; digits < 6; digits++)
					micros *= 10;
			}
		}
		if (hour > 23 || minute > 59 || second > 59)
			return false;
	}
	if (type == KEY_TIMESTAMPTZ) {
		if (*p == 'Z') {
			p++;
			zone_sign = 1;
		} else if (*p == '+' || *p == '-') {
			zone_sign = *p++ == '-' ? -1 : 1;
			if (!read_digits(&p, 2, &zone_h) || zone_h > 15)
				return false;
			if (*p == ':')
				p++;
			if (isdigit((unsigned char)*p) &&
			    (!read_digits(&p, 2, &zone_m) || zone_m > 59))
				return false;
		}
		if (zone_sign == 0)
			return false;
	}
	if (*p)
		return false;
	*out = ((days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second) *
	        1000000) +
	       micros - zone_sign * ((int64_t)zone_h * 3600 + zone_m * 60) * 1000000;
	return true;
}

/* Parses a bound; on failure *expected says what was expected. */
static bool bound_parse(key_type_t type, const char *text, key_value_t *out,
                        const char **expected)
{
	int64_t min = INT64_MIN, max = INT64_MAX;
	size_t n = 0;

	memset(out, 0, sizeof(*out));
	switch (type) {
	case KEY_SMALLINT:
		min = INT16_MIN;
		max = INT16_MAX;
		/* fall through */
	case KEY_INTEGER:
		if (type == KEY_INTEGER) {
			min = INT32_MIN;
			max = INT32_MAX;
		}
		/* fall through */
	case KEY_BIGINT:
		*expected = "an integer in the key type's range";
		return parse_int64(text, &out->number) && out->number >= min && out->number <= max;
	case KEY_TEXT:
	case KEY_VARCHAR:
		out->text = text;
		return true;
	case KEY_UUID:
		*expected = "a UUID";
		for (const char *p = text; *p; p++) {
			if (*p == '-' && (n == 8 || n == 12 || n == 16 || n == 20))
				continue;
			if (!isxdigit((unsigned char)*p) || n >= 32)
				return false;
			out->uuid[n++] = (char)tolower((unsigned char)*p);
		}
		return n == 32;
	case KEY_DATE:
		*expected = "a date YYYY-MM-DD";
		return parse_timestamp_us(text, type, &out->number);
	case KEY_TIMESTAMP:
		*expected = "a timestamp YYYY-MM-DD[ HH:MM[:SS[.ffffff]]] without time zone";
		return parse_timestamp_us(text, type, &out->number);
	case KEY_TIMESTAMPTZ:
		*expected =
		    "a timestamp YYYY-MM-DD[ HH:MM[:SS[.ffffff]]] with a zone (Z or +HH:MM)";
		return parse_timestamp_us(text, type, &out->number);
	}
	*expected = "a value";
	return false;
}

/* Orders two bounds of the same key type: integers and times numerically,
 * text bytewise (C collation), UUIDs by their bytes. */
static int bound_compare(key_type_t type, const key_value_t *a, const key_value_t *b)
{
	switch (type) {
	case KEY_TEXT:
	case KEY_VARCHAR:
		return strcmp(a->text, b->text);
	case KEY_UUID:
		return strcmp(a->uuid, b->uuid);
	default:
		return (a->number > b->number) - (a->number < b->number);
	}
}

bool key_value_parse(key_type_t type, const char *text, key_value_t *out)
{
	const char *expected;
	return bound_parse(type, text, out, &expected);
}

int key_value_compare(key_type_t type, const key_value_t *a, const key_value_t *b)
{
	return bound_compare(type, a, b);
}

/* ranges: [{ below, shard }] strictly increasing, only the last unbounded. */
static bool load_ranges(loader_t *ld, yaml_node_t *node, const char *path, cfg_table_t *table)
{
	static const char *const keys[] = {"below", "shard"};
	yaml_node_item_t *items;
	int n;
	key_value_t previous, current;
	char keypath[CFG_KEYPATH_MAX], sub[CFG_KEYPATH_MAX];

	if (!ld_sequence(ld, node, path, CFG_MAX_RANGES, &items, &n))
		return false;
	if (n == 0)
		return ld_fail(ld, node, "%s: a range table needs at least one range", path);
	table->ranges = calloc((size_t)n, sizeof(cfg_range_t));
	if (!table->ranges)
		return ld_fail(ld, node, "%s: out of memory", path);
	for (int i = 0; i < n; i++) {
		yaml_node_t *item = ld_node(ld, items[i]);
		yaml_node_t *v[2];
		cfg_range_t *range = &table->ranges[i];
		const char *expected = "";

		keypath_printf(keypath, sizeof(keypath), "%s[%d]", path, i);
		if (!item)
			return false;
		if (item->type != YAML_MAPPING_NODE)
			return ld_fail(ld, item, "%s: expected a mapping {below, shard}, got %s",
			               keypath, node_kind(item));
		if (!ld_mapping(ld, item, keypath, keys, 2, v))
			return false;
		range->line = node_line(item);
		if (!v[1])
			return ld_fail(ld, item, "%s.shard: missing", keypath);
		if (!ld_shard_ref(ld, v[1], keypath_join(sub, sizeof(sub), keypath, "shard"),
		                  &range->shard))
			return false;
		table->n_ranges = i + 1;
		if (i > 0 && !table->ranges[i - 1].has_below)
			return ld_fail(ld, item,
			               "%s: comes after a range with no bound (only the last range "
			               "may omit below)",
			               keypath);
		if (!v[0] || node_is_null(v[0]))
			continue;
		keypath_join(sub, sizeof(sub), keypath, "below");
		if (!ld_string(ld, v[0], sub, range->below, sizeof(range->below)))
			return false;
		if (!bound_parse(table->key_type, range->below, &current, &expected))
			return ld_fail(ld, v[0], "%s: expected %s for a %s key, got \"%s\"", sub,
			               expected, key_type_name(table->key_type), range->below);
		if (i > 0 && bound_compare(table->key_type, &previous, &current) >= 0)
			return ld_fail(ld, v[0],
			               "%s: bounds must increase: %s is not above the previous "
			               "bound %s",
			               sub, range->below, table->ranges[i - 1].below);
		range->has_below = true;
		/* a text bound points into range->below, which stays put */
		previous = current;
	}
	return true;
}

/* directory.pinned: { key: shard, ... } (keys in text form, each once). */
static bool load_pins(loader_t *ld, yaml_node_t *node, const char *path, cfg_table_t *table)
{
	char sub[CFG_KEYPATH_MAX];

	if (!node || node_is_null(node))
		return true;
	if (!ld_visit(ld, node))
		return false;
	if (node->type != YAML_MAPPING_NODE)
		return ld_fail(ld, node, "%s: expected a mapping { key: shard }, got %s", path,
		               node_kind(node));
	ptrdiff_t n = node->data.mapping.pairs.top - node->data.mapping.pairs.start;
	if (n > CFG_MAX_RANGES)
		return ld_fail(ld, node, "%s: too many entries (%td, at most %d)", path, n,
		               CFG_MAX_RANGES);
	if (n == 0)
		return true;
	table->pins = calloc((size_t)n, sizeof(cfg_pin_t));
	if (!table->pins)
		return ld_fail(ld, node, "%s: out of memory", path);
	for (yaml_node_pair_t *pair = node->data.mapping.pairs.start;
	     pair < node->data.mapping.pairs.top; pair++) {
		yaml_node_t *key = ld_node(ld, pair->key);
		yaml_node_t *value = ld_node(ld, pair->value);
		cfg_pin_t *pin = &table->pins[table->n_pins];

		if (!key || !value)
			return false;
		if (!ld_string(ld, key, path, pin->key, sizeof(pin->key)))
			return false;
		keypath_join(sub, sizeof(sub), path, pin->key);
		for (int i = 0; i < table->n_pins; i++)
			if (strcmp(table->pins[i].key, pin->key) == 0)
				return ld_fail(ld, key, "%s: pinned twice (first at line %d)", sub,
				               table->pins[i].line);
		if (!ld_shard_ref(ld, value, sub, &pin->shard))
			return false;
		pin->line = node_line(key);
		table->n_pins++;
	}
	return true;
}

/* directory: { shard, table, assign, pinned } with defaults for each. */
static bool load_directory(loader_t *ld, yaml_node_t *node, const char *path, cfg_table_t *table)
{
	static const char *const keys[] = {"shard", "table", "assign", "pinned"};
	yaml_node_t *v[4];
	char sub[CFG_KEYPATH_MAX];
	const char *text = "";

	table->directory_shard = ld->config->default_shard;
	snprintf(table->directory_table, sizeof(table->directory_table), "shardgate.directory");
	table->assign = ASSIGN_ROUND_ROBIN;
	if (!ld_mapping(ld, node, path, keys, 4, v))
		return false;
	if (v[0] && !ld_shard_ref(ld, v[0], keypath_join(sub, sizeof(sub), path, "shard"),
	                          &table->directory_shard))
		return false;
	if (!load_pins(ld, v[3], keypath_join(sub, sizeof(sub), path, "pinned"), table))
		return false;
	if (v[1] && !ld_name(ld, v[1], keypath_join(sub, sizeof(sub), path, "table"), 1,
	                     table->directory_table, sizeof(table->directory_table)))
		return false;
	if (!v[2])
		return true;
	keypath_join(sub, sizeof(sub), path, "assign");
	if (!ld_scalar(ld, v[2], sub, &text))
		return false;
	if (strcmp(text, "round_robin") == 0) {
		table->assign = ASSIGN_ROUND_ROBIN;
	} else if (strcmp(text, "least_rows") == 0) {
		table->assign = ASSIGN_LEAST_ROWS;
	} else {
		table->assign_shard = config_find_shard(ld->config, text);
		if (table->assign_shard < 0)
			return ld_fail(ld, v[2],
			               "%s: expected round_robin, least_rows or a shard name, got "
			               "\"%s\"",
			               sub, text);
		table->assign = ASSIGN_FIXED;
	}
	return true;
}

/* Adds a table's buckets to the file-wide budget. */
static bool ld_spend_buckets(loader_t *ld, yaml_node_t *node, const char *path, int buckets)
{
	ld->total_buckets += buckets;
	if (ld->total_buckets > CFG_MAX_TOTAL_BUCKETS)
		return ld_fail(ld, node, "%s: more than %d buckets over all tables", path,
		               CFG_MAX_TOTAL_BUCKETS);
	return true;
}

/* Hash fields of a table: buckets, placement, colocate_with (resolved later). */
static bool load_hash(loader_t *ld, yaml_node_t *buckets_node, yaml_node_t *placement_node,
                      yaml_node_t *colocate_node, const char *path, cfg_table_t *table,
                      table_work_t *work, yaml_node_t *table_node)
{
	config_t *c = ld->config;
	yaml_node_item_t *items;
	int n;
	char sub[CFG_KEYPATH_MAX], item_path[CFG_KEYPATH_MAX];

	table->buckets = 64;
	work->buckets_node = buckets_node;
	work->placement_node = placement_node;
	if (!ld_int(ld, buckets_node, keypath_join(sub, sizeof(sub), path, "buckets"), 1,
	            CONFIG_MAX_BUCKETS, &table->buckets))
		return false;
	if (colocate_node &&
	    !ld_scalar(ld, colocate_node, keypath_join(sub, sizeof(sub), path, "colocate_with"),
	               &work->colocate_name))
		return false;
	if (work->colocate_name && !work->colocate_name[0])
		work->colocate_name = NULL;
	work->colocate_node = work->colocate_name ? colocate_node : NULL;
	keypath_join(sub, sizeof(sub), path, "placement");
	if (!ld_sequence(ld, placement_node, sub, CONFIG_MAX_BUCKETS, &items, &n))
		return false;
	if (placement_node && !node_is_null(placement_node)) {
		if (n == 0)
			return ld_fail(ld, placement_node, "%s: empty", sub);
		if (buckets_node && n != table->buckets)
			return ld_fail(ld, placement_node,
			               "%s: has %d entries but the table has %d buckets", sub, n,
			               table->buckets);
		table->buckets = n;
	} else {
		work->placement_node = NULL;
	}
	if (!ld_spend_buckets(ld, table_node, path, table->buckets))
		return false;
	table->placement = calloc((size_t)table->buckets, sizeof(int));
	if (!table->placement)
		return ld_fail(ld, table_node, "%s: out of memory", path);
	if (!work->placement_node) {
		for (int r = 0; r < table->buckets; r++)
			table->placement[r] = r % c->n_shards;
		return true;
	}
	for (int r = 0; r < n; r++) {
		yaml_node_t *item = ld_node(ld, items[r]);
		keypath_printf(item_path, sizeof(item_path), "%s[%d]", sub, r);
		if (!item || !ld_shard_ref(ld, item, item_path, &table->placement[r]))
			return false;
	}
	return true;
}

/* One table's own fields (first pass; co-location comes later). */
static bool load_table(loader_t *ld, yaml_node_t *name_node, yaml_node_t *node, cfg_table_t *table,
                       table_work_t *work)
{
	enum {
		K_KEY,
		K_TYPE,
		K_STRATEGY,
		K_BUCKETS,
		K_PLACEMENT,
		K_COLOCATE,
		K_RANGES,
		K_DIRECTORY,
		K_COUNT
	};
	static const char *const keys[K_COUNT] = {"key",     "type",      "strategy",
	                                          "buckets", "placement", "colocate_with",
	                                          "ranges",  "directory"};
	yaml_node_t *v[K_COUNT];
	char path[CFG_KEYPATH_MAX], sub[CFG_KEYPATH_MAX];
	int strategy, type = KEY_BIGINT;

	keypath_printf(path, sizeof(path), "tables.%s", table->name);
	if (!ld_mapping(ld, node, path, keys, K_COUNT, v))
		return false;
	if (!v[K_STRATEGY])
		return ld_fail(ld, name_node,
		               "%s.strategy: missing (hash, range, directory or reference)", path);
	if (!ld_enum(ld, v[K_STRATEGY], keypath_join(sub, sizeof(sub), path, "strategy"),
	             strategies, &strategy))
		return false;
	table->strategy = (strategy_t)strategy;
	if (table->strategy == STRATEGY_REFERENCE) {
		if (v[K_KEY] || v[K_TYPE])
			return ld_fail(ld, v[K_KEY] ? v[K_KEY] : v[K_TYPE],
			               "%s.%s: a reference table has no shard key", path,
			               v[K_KEY] ? "key" : "type");
	} else {
		if (!v[K_KEY] || node_is_null(v[K_KEY]))
			return ld_fail(ld, v[K_KEY] ? v[K_KEY] : name_node,
			               "%s.key: missing (a %s table needs a shard key)", path,
			               strategy_name(table->strategy));
		if (!ld_name(ld, v[K_KEY], keypath_join(sub, sizeof(sub), path, "key"), 0,
		             table->key, sizeof(table->key)) ||
		    !ld_enum(ld, v[K_TYPE], keypath_join(sub, sizeof(sub), path, "type"), key_types,
		             &type))
			return false;
		table->key_type = (key_type_t)type;
	}
	for (int k = K_BUCKETS; k < K_COUNT; k++) {
		bool allowed = (k <= K_COLOCATE && table->strategy == STRATEGY_HASH) ||
		               (k == K_RANGES && table->strategy == STRATEGY_RANGE) ||
		               (k == K_DIRECTORY && table->strategy == STRATEGY_DIRECTORY);
		if (v[k] && !allowed)
			return ld_fail(ld, v[k], "%s.%s: not allowed for a %s table", path, keys[k],
			               strategy_name(table->strategy));
	}
	switch (table->strategy) {
	case STRATEGY_HASH:
		return load_hash(ld, v[K_BUCKETS], v[K_PLACEMENT], v[K_COLOCATE], path, table, work,
		                 name_node);
	case STRATEGY_RANGE:
		if (!v[K_RANGES])
			return ld_fail(ld, name_node,
			               "%s.ranges: missing (a range table needs ranges)", path);
		return load_ranges(ld, v[K_RANGES], keypath_join(sub, sizeof(sub), path, "ranges"),
		                   table);
	case STRATEGY_DIRECTORY:
		return load_directory(ld, v[K_DIRECTORY],
		                      keypath_join(sub, sizeof(sub), path, "directory"), table);
	case STRATEGY_REFERENCE:
		break;
	}
	return true;
}

/* Key types whose values hash alike (PostgreSQL's int2/4/8 and text/varchar). */
static int key_hash_family(key_type_t type)
{
	switch (type) {
	case KEY_SMALLINT:
	case KEY_INTEGER:
		return KEY_BIGINT;
	case KEY_VARCHAR:
		return KEY_TEXT;
	default:
		return (int)type;
	}
}

/*
 * Second pass: resolves colocate_with chains to their root table (cycles
 * are errors), checks the table's own buckets and placement agree with the
 * root's, and copies the root's placement. colocate_with ends up as the
 * index of the root, so two tables are co-located when their roots match.
 */
static bool tables_resolve_colocation(loader_t *ld, table_work_t *work)
{
	config_t *c = ld->config;
	char path[CFG_KEYPATH_MAX];

	for (int t = 0; t < c->n_tables; t++) {
		cfg_table_t *table = &c->tables[t];
		int target;

		if (!work[t].colocate_name)
			continue;
		keypath_printf(path, sizeof(path), "tables.%s.colocate_with", table->name);
		target = config_find_table(c, work[t].colocate_name);
		if (target < 0)
			return ld_fail(ld, work[t].colocate_node, "%s: unknown table \"%s\"", path,
			               work[t].colocate_name);
		if (c->tables[target].strategy != STRATEGY_HASH)
			return ld_fail(ld, work[t].colocate_node,
			               "%s: \"%s\" is a %s table; only hash tables can be "
			               "co-located",
			               path, work[t].colocate_name,
			               strategy_name(c->tables[target].strategy));
		work[t].target = target;
	}
	for (int t = 0; t < c->n_tables; t++) {
		cfg_table_t *table = &c->tables[t];
		cfg_table_t *root_table;
		int root = t, steps = 0;

		if (work[t].target < 0)
			continue;
		keypath_printf(path, sizeof(path), "tables.%s.colocate_with", table->name);
		while (work[root].target >= 0) {
			root = work[root].target;
			if (++steps > c->n_tables || root == t)
				return ld_fail(ld, work[t].colocate_node,
				               "%s: co-location cycle through \"%s\"", path,
				               work[t].colocate_name);
		}
		root_table = &c->tables[root];
		if (key_hash_family(table->key_type) != key_hash_family(root_table->key_type))
			return ld_fail(ld, work[t].colocate_node,
			               "%s: key type %s does not hash like %s, the key type of "
			               "\"%s\"",
			               path, key_type_name(table->key_type),
			               key_type_name(root_table->key_type), root_table->name);
		if (work[t].buckets_node && table->buckets != root_table->buckets)
			return ld_fail(ld, work[t].buckets_node,
			               "tables.%s.buckets: %d contradicts the %d buckets of \"%s\" "
			               "(colocate_with)",
			               table->name, table->buckets, root_table->buckets,
			               root_table->name);
		if (work[t].placement_node) {
			bool same = table->buckets == root_table->buckets;
			for (int r = 0; same && r < table->buckets; r++)
				same = table->placement[r] == root_table->placement[r];
			if (!same)
				return ld_fail(ld, work[t].placement_node,
				               "tables.%s.placement: differs from the placement of "
				               "\"%s\" (colocate_with)",
				               table->name, root_table->name);
		}
		if (table->buckets != root_table->buckets) {
			int *copy;
			ld->total_buckets -= table->buckets;
			if (!ld_spend_buckets(ld, work[t].colocate_node, path, root_table->buckets))
				return false;
			copy = calloc((size_t)root_table->buckets, sizeof(int));
			if (!copy)
				return ld_fail(ld, work[t].colocate_node, "%s: out of memory",
				               path);
			free(table->placement);
			table->placement = copy;
			table->buckets = root_table->buckets;
		}
		memcpy(table->placement, root_table->placement,
		       (size_t)root_table->buckets * sizeof(int));
		table->colocate_with = root;
	}
	return true;
}

/* tables: { name: {...}, ... } */
static bool load_tables(loader_t *ld, yaml_node_t *node)
{
	config_t *c = ld->config;
	table_work_t *work;
	ptrdiff_t n;
	bool ok = true;

	if (!node || node_is_null(node))
		return true;
	if (node->type != YAML_MAPPING_NODE)
		return ld_fail(ld, node, "tables: expected a mapping of table names, got %s",
		               node_kind(node));
	n = node->data.mapping.pairs.top - node->data.mapping.pairs.start;
	if (n > CFG_MAX_TABLES)
		return ld_fail(ld, node, "tables: too many tables (%td, at most %d)", n,
		               CFG_MAX_TABLES);
	if (n == 0)
		return true;
	c->tables = calloc((size_t)n, sizeof(cfg_table_t));
	work = calloc((size_t)n, sizeof(table_work_t));
	if (!c->tables || !work) {
		free(work);
		return ld_fail(ld, node, "tables: out of memory");
	}
	c->n_tables = (int)n;
	for (int t = 0; t < n; t++) {
		c->tables[t].colocate_with = -1;
		c->tables[t].directory_shard = -1;
		c->tables[t].assign_shard = -1;
		work[t].target = -1;
	}
	for (int t = 0; ok && t < n; t++) {
		yaml_node_pair_t *pair = &node->data.mapping.pairs.start[t];
		yaml_node_t *name_node = ld_node(ld, pair->key);
		yaml_node_t *value = ld_node(ld, pair->value);
		cfg_table_t *table = &c->tables[t];

		if (!name_node || !value) {
			ok = false;
			break;
		}
		table->line = node_line(name_node);
		if (!ld_name(ld, name_node, "tables", 1, table->name, sizeof(table->name))) {
			ok = false;
			break;
		}
		for (int j = 0; j < t; j++) {
			if (strcmp(c->tables[j].name, table->name) == 0) {
				ok = ld_fail(ld, name_node,
				             "tables: duplicate table \"%s\" (first at line %d)",
				             table->name, c->tables[j].line);
				break;
			}
		}
		if (ok)
			ok = load_table(ld, name_node, value, table, &work[t]);
	}
	if (ok)
		ok = tables_resolve_colocation(ld, work);
	free(work);
	return ok;
}

/* Builds a config_t with every default of SPEC.md section 3. */
static config_t *config_new_defaults(void)
{
	config_t *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	snprintf(c->listen.host, sizeof(c->listen.host), "127.0.0.1");
	c->listen.port = 6432;
	c->workers = 2;
	c->max_client_conn = 10000;
	c->max_message_size = 64 * 1024 * 1024;
	c->log_level = LOG_INFO;
	c->slow_statement_ms = 1000;
	c->tls.mode = TLS_DISABLE;
	c->pool.mode = POOL_TRANSACTION;
	c->pool.size = 20;
	c->pool.prepared_statements = 256;
	c->timeouts.connect_ms = 2000;
	c->timeouts.query_ms = 30000;
	c->timeouts.wait_ms = 5000;
	c->timeouts.login_ms = 10000;
	c->timeouts.shutdown_ms = 30000;
	c->auth.method = AUTH_TRUST;
	c->backend.tls = BACKEND_TLS_PREFER;
	c->health.interval_ms = 250;
	c->health.failures_to_open = 3;
	c->health.open_for_ms = 5000;
	c->routing.read_write_split = true;
	c->routing.balance = BALANCE_ROUND_ROBIN;
	c->routing.max_lag_bytes = 16 * 1024 * 1024;
	c->routing.max_lag_ms = 5000;
	c->routing.read_your_writes = true;
	c->routing.transaction_reads = TXN_READS_PRIMARY;
	c->routing.multi_shard_writes = MULTI_WRITES_ALLOW;
	c->backend.password = strdup("");
	if (!c->backend.password) {
		free(c);
		return NULL;
	}
	return c;
}

/* Walks the root mapping in dependency order. */
static bool load_root(loader_t *ld, yaml_node_t *root)
{
	enum {
		K_LISTEN,
		K_WORKERS,
		K_MAX_CLIENT,
		K_MAX_USER,
		K_MAX_DB,
		K_MAX_MESSAGE,
		K_ADMIN,
		K_METRICS,
		K_LOG,
		K_TLS,
		K_POOL,
		K_TIMEOUTS,
		K_AUTH,
		K_BACKEND,
		K_HEALTH,
		K_ROUTING,
		K_SHARDS,
		K_DEFAULT_SHARD,
		K_TABLES,
		K_COUNT
	};
	static const char *const keys[K_COUNT] = {
	    "listen",        "workers",     "max_client_conn",
	    "max_user_conn", "max_db_conn", "max_message_size",
	    "admin",         "metrics",     "log",
	    "tls",           "pool",        "timeouts",
	    "auth",          "backend",     "health",
	    "routing",       "shards",      "default_shard",
	    "tables"};
	yaml_node_t *v[K_COUNT];

	if (root->type != YAML_MAPPING_NODE)
		return ld_fail(ld, root, "the top level must be a mapping of keys, got %s",
		               node_kind(root));
	if (!ld_mapping(ld, root, "", keys, K_COUNT, v) ||
	    !load_limits(ld, v[K_LISTEN], v[K_WORKERS], v[K_MAX_CLIENT], v[K_MAX_USER], v[K_MAX_DB],
	                 v[K_MAX_MESSAGE], v[K_METRICS]) ||
	    !load_admin(ld, v[K_ADMIN]) || !load_log(ld, v[K_LOG]) || !load_tls(ld, v[K_TLS]) ||
	    !load_pool(ld, v[K_POOL]) || !load_timeouts(ld, v[K_TIMEOUTS]) ||
	    !load_auth(ld, v[K_AUTH]) || !load_backend(ld, v[K_BACKEND]) ||
	    !load_health(ld, v[K_HEALTH]) || !load_routing(ld, v[K_ROUTING]) ||
	    !load_shards(ld, v[K_SHARDS], root))
		return false;
	if (v[K_DEFAULT_SHARD] && !node_is_null(v[K_DEFAULT_SHARD]) &&
	    !ld_shard_ref(ld, v[K_DEFAULT_SHARD], "default_shard", &ld->config->default_shard))
		return false;
	return load_tables(ld, v[K_TABLES]);
}

/* Line of a libyaml error: reader errors only carry a byte offset. */
static int yaml_error_line(const yaml_parser_t *parser, const char *text, size_t len)
{
	if (parser->error == YAML_READER_ERROR) {
		int line = 1;
		size_t end = parser->problem_offset < len ? parser->problem_offset : len;
		for (size_t i = 0; i < end; i++)
			line += text[i] == '\n';
		return line;
	}
	if (parser->problem_mark.line >= INT_MAX)
		return 1;
	return (int)parser->problem_mark.line + 1;
}

static bool load_text(const char *name, const char *text, size_t len, bool check_files,
                      config_t **out, char *err, size_t errlen)
{
	yaml_parser_t parser;
	yaml_document_t doc, extra;
	yaml_node_t *root;
	config_t *config;
	loader_t ld;
	bool ok;

	if (!name)
		name = "<string>";
	if (!text)
		len = 0;
	if (len > CFG_MAX_FILE_BYTES) {
		error_format(err, errlen, name, 0, "larger than %d bytes", CFG_MAX_FILE_BYTES);
		return false;
	}
	if (!yaml_parser_initialize(&parser)) {
		error_format(err, errlen, name, 0, "out of memory");
		return false;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)(text ? text : ""), len);
	if (!yaml_parser_load(&parser, &doc)) {
		if (parser.error == YAML_MEMORY_ERROR)
			error_format(err, errlen, name, 0, "out of memory");
		else
			error_format(err, errlen, name, yaml_error_line(&parser, text, len),
			             "YAML syntax error: %s%s%s%s",
			             parser.problem ? parser.problem : "invalid YAML",
			             parser.context ? " (" : "",
			             parser.context ? parser.context : "",
			             parser.context ? ")" : "");
		yaml_parser_delete(&parser);
		return false;
	}
	root = yaml_document_get_root_node(&doc);
	if (!root || node_is_null(root)) {
		error_format(err, errlen, name, 1,
		             "the configuration is empty (shards are required)");
		yaml_document_delete(&doc);
		yaml_parser_delete(&parser);
		return false;
	}
	/* A second document would be silently ignored: refuse it instead. */
	if (!yaml_parser_load(&parser, &extra)) {
		error_format(err, errlen, name, yaml_error_line(&parser, text, len),
		             "YAML syntax error: %s",
		             parser.problem ? parser.problem : "invalid YAML");
		yaml_document_delete(&doc);
		yaml_parser_delete(&parser);
		return false;
	}
	if (yaml_document_get_root_node(&extra)) {
		error_format(err, errlen, name, (int)extra.start_mark.line + 1,
		             "only one YAML document is allowed");
		yaml_document_delete(&extra);
		yaml_document_delete(&doc);
		yaml_parser_delete(&parser);
		return false;
	}
	yaml_document_delete(&extra);

	config = config_new_defaults();
	if (!config) {
		error_format(err, errlen, name, 0, "out of memory");
		yaml_document_delete(&doc);
		yaml_parser_delete(&parser);
		return false;
	}
	snprintf(config->path, sizeof(config->path), "%s", name);
	memset(&ld, 0, sizeof(ld));
	ld.name = name;
	ld.doc = &doc;
	ld.err = err;
	ld.errlen = errlen;
	ld.config = config;
	ld.check_files = check_files;
	ok = load_root(&ld, root);
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	if (!ok) {
		config_free(config);
		return false;
	}
	*out = config;
	return true;
}

bool config_load_string(const char *name, const char *text, size_t len, config_t **out, char *err,
                        size_t errlen)
{
	return load_text(name, text, len, false, out, err, errlen);
}

/* As config_load_string, and the TLS files the configuration names must be
 * usable (the string form never opens them: tests and fuzzing). */
bool config_load(const char *path, config_t **out, char *err, size_t errlen)
{
	size_t len = 0;
	bool too_large, ok;
	char *text;

	if (!path) {
		error_format(err, errlen, "(null)", 0, "cannot read: no file name");
		return false;
	}
	text = file_read_all(path, CFG_MAX_FILE_BYTES, &len, &too_large);
	if (!text) {
		char buf[128];
		if (too_large)
			error_format(err, errlen, path, 0, "cannot read: larger than %d bytes",
			             CFG_MAX_FILE_BYTES);
		else
			error_format(err, errlen, path, 0, "cannot read: %s",
			             strerror_r(errno, buf, sizeof(buf)));
		return false;
	}
	ok = load_text(path, text, len, true, out, err, errlen);
	free(text);
	return ok;
}

static void string_list_free(char **list, int n)
{
	if (!list)
		return;
	for (int i = 0; i < n; i++)
		free(list[i]);
	free(list);
}

void config_free(config_t *config)
{
	if (!config)
		return;
	string_list_free(config->admin_users, config->n_admin_users);
	if (config->auth.users) {
		for (int i = 0; i < config->auth.n_users; i++)
			free(config->auth.users[i].password);
		free(config->auth.users);
	}
	free(config->backend.password);
	string_list_free(config->routing.read_only_functions,
	                 config->routing.n_read_only_functions);
	string_list_free(config->routing.write_functions, config->routing.n_write_functions);
	free(config->shards);
	if (config->tables) {
		for (int i = 0; i < config->n_tables; i++) {
			free(config->tables[i].placement);
			free(config->tables[i].ranges);
			free(config->tables[i].pins);
		}
		free(config->tables);
	}
	free(config);
}

int config_find_shard(const config_t *config, const char *name)
{
	if (!config || !name)
		return -1;
	for (int i = 0; i < config->n_shards; i++) {
		if (strcmp(config->shards[i].name, name) == 0)
			return i;
	}
	return -1;
}

int config_find_table(const config_t *config, const char *name)
{
	if (!config || !name)
		return -1;
	for (int i = 0; i < config->n_tables; i++) {
		if (strcmp(config->tables[i].name, name) == 0)
			return i;
	}
	return -1;
}

/* Reads leading decimal digits into *out (overflow-checked), advancing *p. */
static bool parse_leading_digits(const char **p, int64_t *out)
{
	uint64_t value = 0;

	if (!isdigit((unsigned char)**p))
		return false;
	for (; isdigit((unsigned char)**p); (*p)++) {
		unsigned digit = (unsigned)(**p - '0');
		if (value > ((uint64_t)INT64_MAX - digit) / 10)
			return false;
		value = value * 10 + digit;
	}
	*out = (int64_t)value;
	return true;
}

/* Applies a unit multiplier to a parsed count, refusing overflow. */
static bool scale_value(int64_t value, int64_t unit, int64_t *out)
{
	if (value > INT64_MAX / unit)
		return false;
	*out = value * unit;
	return true;
}

bool config_parse_duration_ms(const char *text, int64_t *out_ms)
{
	static const struct {
		const char *unit;
		int64_t ms;
	} units[] = {{"", 1},      {"ms", 1},      {"s", 1000},    {"sec", 1000},
	             {"m", 60000}, {"min", 60000}, {"h", 3600000}, {"d", 86400000}};
	const char *p = text;
	int64_t value;

	if (!text || !parse_leading_digits(&p, &value))
		return false;
	while (*p == ' ')
		p++;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(p, units[i].unit) == 0)
			return scale_value(value, units[i].ms, out_ms);
	}
	return false;
}

bool config_parse_size(const char *text, int64_t *out_bytes)
{
	static const struct {
		const char *unit;
		int64_t bytes;
	} units[] = {{"", 1},           {"b", 1},           {"k", 1LL << 10},
	             {"kb", 1LL << 10}, {"kib", 1LL << 10}, {"m", 1LL << 20},
	             {"mb", 1LL << 20}, {"mib", 1LL << 20}, {"g", 1LL << 30},
	             {"gb", 1LL << 30}, {"gib", 1LL << 30}, {"t", 1LL << 40},
	             {"tb", 1LL << 40}, {"tib", 1LL << 40}};
	const char *p = text;
	int64_t value;

	if (!text || !parse_leading_digits(&p, &value))
		return false;
	while (*p == ' ')
		p++;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcasecmp(p, units[i].unit) == 0)
			return scale_value(value, units[i].bytes, out_bytes);
	}
	return false;
}

bool config_parse_address(const char *text, cfg_address_t *out)
{
	const char *host, *port_text;
	size_t host_len;
	int64_t port;
	bool bracketed;

	if (!text)
		return false;
	bracketed = text[0] == '[';
	if (bracketed) {
		const char *close = strchr(text, ']');
		if (!close || close[1] != ':')
			return false;
		host = text + 1;
		host_len = (size_t)(close - host);
		port_text = close + 2;
	} else {
		const char *colon = strrchr(text, ':');
		if (!colon)
			return false;
		host = text;
		host_len = (size_t)(colon - text);
		port_text = colon + 1;
	}
	if (host_len == 0 || host_len >= sizeof(out->host))
		return false;
	for (size_t i = 0; i < host_len; i++) {
		unsigned char ch = (unsigned char)host[i];
		bool ok = isalnum(ch) || ch == '.' || ch == '-' || ch == '_' ||
		          (bracketed && (ch == ':' || ch == '%'));
		if (!ok)
			return false;
	}
	if (strlen(port_text) > 5 || !parse_int64(port_text, &port) || port_text[0] == '-' ||
	    port < 1 || port > 65535)
		return false;
	memcpy(out->host, host, host_len);
	out->host[host_len] = '\0';
	out->port = (int)port;
	return true;
}

const char *pool_mode_name(pool_mode_t mode)
{
	return enum_name(pool_modes, (int)mode);
}

const char *strategy_name(strategy_t strategy)
{
	return enum_name(strategies, (int)strategy);
}

const char *key_type_name(key_type_t type)
{
	return enum_name(key_types, (int)type);
}

const char *log_level_name(log_level_t level)
{
	return enum_name(log_levels, (int)level);
}

/* Formats an address, bracketing IPv6 hosts. */
static const char *format_address(const cfg_address_t *address, char *buf, size_t size)
{
	if (strchr(address->host, ':'))
		snprintf(buf, size, "[%s]:%d", address->host, address->port);
	else
		snprintf(buf, size, "%s:%d", address->host, address->port);
	return buf;
}

/* Formats a size in the largest unit that divides it ("64MB", "10kB"). */
static const char *format_size(int64_t bytes, char *buf, size_t size)
{
	if (bytes != 0 && bytes % (1LL << 30) == 0)
		snprintf(buf, size, "%" PRId64 "GB", bytes >> 30);
	else if (bytes != 0 && bytes % (1LL << 20) == 0)
		snprintf(buf, size, "%" PRId64 "MB", bytes >> 20);
	else if (bytes != 0 && bytes % (1LL << 10) == 0)
		snprintf(buf, size, "%" PRId64 "kB", bytes >> 10);
	else
		snprintf(buf, size, "%" PRId64 "B", bytes);
	return buf;
}

static const char *secret_mask(const char *password)
{
	return password && password[0] ? "***" : "(none)";
}

static const char *on_off(bool value)
{
	return value ? "on" : "off";
}

static void print_list(FILE *out, const char *label, char *const *names, int n)
{
	fprintf(out, "%s:", label);
	if (n == 0)
		fprintf(out, " (none)");
	for (int i = 0; i < n; i++)
		fprintf(out, "%s%s", i ? ", " : " ", names[i]);
	fputc('\n', out);
}

/* One table line (and its ranges); placement as buckets per shard. */
static void print_table(const config_t *config, const cfg_table_t *table, FILE *out)
{
	int counts[CONFIG_MAX_SHARDS] = {0};
	bool first = true;

	fprintf(out, "  %s: %s", table->name, strategy_name(table->strategy));
	if (table->strategy != STRATEGY_REFERENCE)
		fprintf(out, " on %s (%s)", table->key, key_type_name(table->key_type));
	switch (table->strategy) {
	case STRATEGY_HASH:
		fprintf(out, ", %d buckets", table->buckets);
		if (table->colocate_with >= 0)
			fprintf(out, ", co-located with %s",
			        config->tables[table->colocate_with].name);
		for (int r = 0; r < table->buckets; r++) {
			if (table->placement[r] >= 0 && table->placement[r] < config->n_shards)
				counts[table->placement[r]]++;
		}
		fprintf(out, "; ");
		for (int s = 0; s < config->n_shards; s++) {
			if (!counts[s])
				continue;
			fprintf(out, "%s%s: %d bucket%s", first ? "" : ", ", config->shards[s].name,
			        counts[s], counts[s] == 1 ? "" : "s");
			first = false;
		}
		fputc('\n', out);
		break;
	case STRATEGY_RANGE:
		fputc('\n', out);
		for (int i = 0; i < table->n_ranges; i++) {
			const cfg_range_t *range = &table->ranges[i];
			fprintf(out, "      [%s, %s) -> %s\n",
			        i == 0 ? "-inf" : table->ranges[i - 1].below,
			        range->has_below ? range->below : "+inf",
			        config->shards[range->shard].name);
		}
		break;
	case STRATEGY_DIRECTORY:
		fprintf(out, "; directory %s on %s, new keys: ", table->directory_table,
		        config->shards[table->directory_shard].name);
		if (table->assign == ASSIGN_FIXED)
			fprintf(out, "%s\n", config->shards[table->assign_shard].name);
		else
			fprintf(out, "%s\n",
			        table->assign == ASSIGN_LEAST_ROWS ? "least_rows" : "round_robin");
		for (int i = 0; i < table->n_pins; i++)
			fprintf(out, "    pinned %s -> %s\n", table->pins[i].key,
			        config->shards[table->pins[i].shard].name);
		break;
	case STRATEGY_REFERENCE:
		fprintf(out, " (a copy on every shard)\n");
		break;
	}
}

void config_print(const config_t *config, FILE *out)
{
	char a[320], b[32], d[32], e[32], f[32], g[32], h[32];

	if (!config || !out)
		return;
	fprintf(out, "configuration: %s\n", config->path);
	fprintf(out, "listen: %s\n", format_address(&config->listen, a, sizeof(a)));
	fprintf(out, "workers: %d\n", config->workers);
	fprintf(out, "connections: %d clients, per user %d, per database %d (0 = no limit)\n",
	        config->max_client_conn, config->max_user_conn, config->max_db_conn);
	fprintf(out, "max_message_size: %s\n",
	        format_size((int64_t)config->max_message_size, b, sizeof(b)));
	print_list(out, "admin users", config->admin_users, config->n_admin_users);
	fprintf(out, "metrics: %s\n",
	        config->has_metrics ? format_address(&config->metrics, a, sizeof(a)) : "off");
	fprintf(out, "log: %s, slow statements over %s\n", log_level_name(config->log_level),
	        format_duration(config->slow_statement_ms, b, sizeof(b)));
	fprintf(out, "tls: %s\n", enum_name(tls_modes, (int)config->tls.mode));
	fprintf(out, "pool: %s, size %d, %d prepared statements per server\n",
	        pool_mode_name(config->pool.mode), config->pool.size,
	        config->pool.prepared_statements);
	fprintf(out,
	        "timeouts: connect %s, query %s, wait %s, login %s, client_idle %s, "
	        "idle_in_transaction %s, shutdown %s\n",
	        format_duration(config->timeouts.connect_ms, b, sizeof(b)),
	        format_duration(config->timeouts.query_ms, d, sizeof(d)),
	        format_duration(config->timeouts.wait_ms, e, sizeof(e)),
	        format_duration(config->timeouts.login_ms, f, sizeof(f)),
	        format_duration(config->timeouts.client_idle_ms, g, sizeof(g)),
	        format_duration(config->timeouts.idle_in_transaction_ms, h, sizeof(h)),
	        format_duration(config->timeouts.shutdown_ms, a, sizeof(a)));
	fprintf(out, "auth: %s", enum_name(auth_methods, (int)config->auth.method));
	for (int i = 0; i < config->auth.n_users; i++)
		fprintf(out, "%s%s (password %s)", i ? ", " : "; users ",
		        config->auth.users[i].name, secret_mask(config->auth.users[i].password));
	if (config->auth.query[0])
		fprintf(out, "; query %s", config->auth.query);
	fputc('\n', out);
	fprintf(out, "backend: user %s, password %s, database %s, tls %s\n",
	        config->backend.user[0] ? config->backend.user : "(client's)",
	        secret_mask(config->backend.password),
	        config->backend.database[0] ? config->backend.database : "(client's)",
	        enum_name(backend_tls_modes, (int)config->backend.tls));
	fprintf(out, "health: every %s, open after %d failures for %s\n",
	        format_duration(config->health.interval_ms, b, sizeof(b)),
	        config->health.failures_to_open,
	        format_duration(config->health.open_for_ms, d, sizeof(d)));
	fprintf(out,
	        "routing: read_write_split %s, balance %s, primary in reads %s, max lag %s / "
	        "%s, read_your_writes %s (wait %s), transaction reads %s, multi-shard writes "
	        "%s, two-phase commit %s\n",
	        on_off(config->routing.read_write_split),
	        enum_name(balances, (int)config->routing.balance),
	        on_off(config->routing.include_primary_in_reads),
	        format_size(config->routing.max_lag_bytes, b, sizeof(b)),
	        format_duration(config->routing.max_lag_ms, d, sizeof(d)),
	        on_off(config->routing.read_your_writes),
	        format_duration(config->routing.read_your_writes_wait_ms, e, sizeof(e)),
	        enum_name(txn_reads, (int)config->routing.transaction_reads),
	        enum_name(multi_writes, (int)config->routing.multi_shard_writes),
	        on_off(config->routing.two_phase_commit));
	print_list(out, "read_only_functions", config->routing.read_only_functions,
	           config->routing.n_read_only_functions);
	print_list(out, "write_functions", config->routing.write_functions,
	           config->routing.n_write_functions);
	fprintf(out, "shards (%d):\n", config->n_shards);
	for (int s = 0; s < config->n_shards; s++) {
		const cfg_shard_t *shard = &config->shards[s];
		fprintf(out, "  %s: primary %s", shard->name,
		        format_address(&shard->primary.address, a, sizeof(a)));
		if (shard->max_concurrent)
			fprintf(out, ", at most %d concurrent statements", shard->max_concurrent);
		if (shard->n_replicas == 0)
			fprintf(out, ", no replicas");
		fputc('\n', out);
		for (int r = 0; r < shard->n_replicas; r++)
			fprintf(out, "      replica %s (weight %d)\n",
			        format_address(&shard->replicas[r].address, a, sizeof(a)),
			        shard->replicas[r].weight);
	}
	if (config->n_shards > 0)
		fprintf(out, "default shard: %s\n", config->shards[config->default_shard].name);
	fprintf(out, "tables (%d):\n", config->n_tables);
	for (int t = 0; t < config->n_tables; t++)
		print_table(config, &config->tables[t], out);
}
