/*
 * auth.h - password authentication crypto: PostgreSQL MD5 and SCRAM-SHA-256.
 *
 * The proxy is a SCRAM client when it logs in to a PostgreSQL server and a
 * SCRAM server when its own clients log in.  This module only computes and
 * parses message bodies (the SASL data inside AuthenticationSASLContinue,
 * SASLResponse, ...); framing them in protocol messages is proto.h's job.
 *
 * Conventions:
 *  - every function returns false on failure and then leaves its outputs
 *    (out buffers, *used, *ok, verifier structs) untouched;
 *  - every message from the network is passed as (pointer, length), is
 *    rejected if longer than AUTH_SCRAM_MESSAGE_MAX or if it holds a NUL;
 *  - text outputs are NUL-terminated; *used counts the bytes before the NUL
 *    (which is what goes on the wire);
 *  - a failure inside a SCRAM exchange is terminal: the state moves to
 *    *_FAILED, secrets are wiped, and every later call fails;
 *  - secrets (passwords, salted passwords, keys) are wiped with
 *    OPENSSL_cleanse as soon as they are no longer needed; call
 *    auth_scram_*_clear() when a connection goes away mid-exchange.
 *
 * SASLprep (RFC 4013): PostgreSQL normalizes SCRAM passwords with SASLprep and
 * falls back to the raw bytes when that fails (pg_saslprep()).  A pure ASCII
 * password is left unchanged by pg_saslprep(), so for ASCII passwords this
 * module matches PostgreSQL exactly.  Non-ASCII passwords are used as-is
 * (no NFKC normalization, no mapping of non-ASCII spaces or of "mapped to
 * nothing" characters); this matches PostgreSQL when the password is invalid
 * UTF-8, holds prohibited characters, or is already in SASLprep form (the
 * common case of NFC text with no special spaces), and differs otherwise.
 */
#ifndef SHARDGATE_AUTH_H
#define SHARDGATE_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* "md5" + 32 hex digits + NUL, as in pg_authid and PasswordMessage. */
#define AUTH_MD5_LEN      36
#define AUTH_MD5_SALT_LEN 4

#define AUTH_USER_MAX     255  /* bytes; PostgreSQL truncates names at 63 */
#define AUTH_PASSWORD_MAX 1024 /* bytes */

#define AUTH_SCRAM_KEY_LEN            32   /* SHA-256 output */
#define AUTH_SCRAM_MESSAGE_MAX        1024 /* any single SCRAM message, bytes */
#define AUTH_SCRAM_CLIENT_NONCE_MAX   128  /* client part of the nonce, chars */
#define AUTH_SCRAM_NONCE_MAX          256  /* client + server nonce, chars */
#define AUTH_SCRAM_RAW_NONCE_LEN      18   /* random bytes per nonce half, as libpq */
#define AUTH_SCRAM_SALT_MAX           128  /* decoded salt, bytes */
#define AUTH_SCRAM_DEFAULT_SALT_LEN   16   /* PostgreSQL's SCRAM_DEFAULT_SALT_LEN */
#define AUTH_SCRAM_DEFAULT_ITERATIONS 4096 /* PostgreSQL's scram_iterations default */
#define AUTH_SCRAM_ITERATIONS_MAX     10000000
#define AUTH_SCRAM_VERIFIER_MAX       512 /* verifier text incl. NUL */
#define AUTH_SCRAM_GS2_HEADER_MAX     64
#define AUTH_SCRAM_CBIND_MAX          64 /* channel binding data: a hash (EVP_MAX_MD_SIZE) */
#define AUTH_SCRAM_MOCK_SECRET_MIN    16 /* bytes */
#define AUTH_SCRAM_SERVER_FINAL_MAX   48 /* "v=" + 44 base64 chars + NUL, and room */

/* ---- MD5 (PostgreSQL AuthenticationMD5Password) ---- */

/* out = "md5" + hex(md5(password || user)): the form stored in pg_authid. */
bool auth_md5_hash_password(const char *user, const char *password, char out[AUTH_MD5_LEN]);

/*
 * out = "md5" + hex(md5(hex_part(stored_hash) || salt)): the PasswordMessage
 * answer computed from a stored "md5..." hash (35 chars, lowercase hex).
 */
bool auth_md5_salt_hash(const char *stored_hash, const uint8_t salt[AUTH_MD5_SALT_LEN],
                        char out[AUTH_MD5_LEN]);

/* out = the PasswordMessage answer to AuthenticationMD5Password(salt). */
bool auth_md5_password(const char *user, const char *password,
                       const uint8_t salt[AUTH_MD5_SALT_LEN], char out[AUTH_MD5_LEN]);

/*
 * Server side: true when response (len bytes, no NUL) is the right answer
 * for stored_hash and salt.  Compared in constant time.
 */
bool auth_md5_check_response(const char *stored_hash, const uint8_t salt[AUTH_MD5_SALT_LEN],
                             const char *response, size_t len);

/* ---- SCRAM-SHA-256 client (RFC 5802, RFC 7677; libpq fe-auth-scram.c) ---- */

typedef enum {
	AUTH_SCRAM_CLIENT_INIT = 0,
	AUTH_SCRAM_CLIENT_SENT_FIRST,
	AUTH_SCRAM_CLIENT_SENT_FINAL,
	AUTH_SCRAM_CLIENT_DONE, /* server signature verified */
	AUTH_SCRAM_CLIENT_FAILED
} auth_scram_client_state_t;

/*
 * Client exchange state.  Fields are private to auth.c; a zeroed struct is a
 * valid INIT state.  About 2.5 kB: embed it, do not copy it around.
 */
typedef struct {
	auth_scram_client_state_t state;
	/* gs2-header, "n,," today; "p=tls-server-end-point,," once channel
	 * binding lands (then c= also carries the certificate hash). */
	char gs2_header[AUTH_SCRAM_GS2_HEADER_MAX];
	size_t gs2_header_len;
	char password[AUTH_PASSWORD_MAX + 1]; /* after SASLprep; wiped in continue */
	size_t password_len;
	char first_bare[AUTH_SCRAM_MESSAGE_MAX + 1]; /* client-first-message-bare */
	size_t first_bare_len;
	size_t nonce_off, nonce_len;                  /* client nonce inside first_bare */
	uint8_t server_signature[AUTH_SCRAM_KEY_LEN]; /* expected v= */
} auth_scram_client_t;

/*
 * Start an exchange: (re)initializes c and writes client-first-message
 * "n,,n=<user>,r=<nonce>" to out.  user NULL or "" gives "n=" as libpq
 * sends (PostgreSQL takes the user from the startup packet); a user is
 * saslname-escaped (RFC 5802 section 5.1), which the RFC 7677 test vector
 * needs.  nonce NULL draws 18 random bytes and base64-encodes them; a given
 * nonce (tests) must be 1..AUTH_SCRAM_CLIENT_NONCE_MAX printable chars
 * without ','.
 */
bool auth_scram_client_start(auth_scram_client_t *c, const char *user, const char *password,
                             const char *nonce, char *out, size_t outlen, size_t *used);

/*
 * Process server-first-message "r=<nonce>,s=<salt>,i=<iterations>" (strict:
 * attributes in that order, nothing else, as libpq) and write
 * client-final-message "c=biws,r=<nonce>,p=<proof>" to out.  Rejects a
 * nonce that does not extend the client nonce, bad base64, iterations
 * outside 1..AUTH_SCRAM_ITERATIONS_MAX, a reserved "m=" extension.
 */
bool auth_scram_client_continue(auth_scram_client_t *c, const char *server_first, size_t len,
                                char *out, size_t outlen, size_t *used);

/*
 * Check server-final-message "v=<ServerSignature>".  True only if the
 * signature matches (constant-time compare); "e=..." returns false.  The
 * caller must not accept AuthenticationOk from the server before this has
 * returned true: that is what proves the server knew the password.
 */
bool auth_scram_client_finish(auth_scram_client_t *c, const char *server_final, size_t len);

/* Wipe c (any state); it is then a fresh INIT state. */
void auth_scram_client_clear(auth_scram_client_t *c);

const char *auth_scram_client_state_name(auth_scram_client_state_t state);

/* ---- SCRAM-SHA-256 server (RFC 5802; PostgreSQL auth-scram.c) ---- */

/* A parsed pg_authid SCRAM secret, or a mock one for an unknown user. */
typedef struct {
	int iterations;
	size_t salt_len;
	uint8_t salt[AUTH_SCRAM_SALT_MAX];
	uint8_t stored_key[AUTH_SCRAM_KEY_LEN];
	uint8_t server_key[AUTH_SCRAM_KEY_LEN];
	bool is_mock; /* every proof fails */
} auth_scram_verifier_t;

/*
 * Parse "SCRAM-SHA-256$<iterations>:<salt b64>$<StoredKey b64>:<ServerKey b64>"
 * (NUL-terminated, < AUTH_SCRAM_VERIFIER_MAX bytes), as in pg_authid.
 */
bool auth_scram_parse_verifier(const char *text, auth_scram_verifier_t *out);

/*
 * Write the verifier text for password to out (outlen >= ~140 bytes with a
 * 16-byte salt; AUTH_SCRAM_VERIFIER_MAX always fits).  salt NULL draws
 * AUTH_SCRAM_DEFAULT_SALT_LEN random bytes (salt_len is then ignored).  An
 * empty password is refused, as PostgreSQL refuses to store one.
 */
bool auth_scram_make_verifier(const char *password, int iterations, const uint8_t *salt,
                              size_t salt_len, char *out, size_t outlen);

/*
 * Fill out with a mock verifier for a user that does not exist (or has no
 * SCRAM secret): the salt is HMAC-SHA-256(secret, user) truncated to 16
 * bytes, so the same user always gets the same salt and the exchange looks
 * like a real one; is_mock makes every proof fail.  secret is a per-proxy
 * random value of >= AUTH_SCRAM_MOCK_SECRET_MIN bytes (PostgreSQL's
 * mock_auth_nonce); iterations should match what real users have.
 */
bool auth_scram_mock_verifier(const char *user, const uint8_t *secret, size_t secret_len,
                              int iterations, auth_scram_verifier_t *out);

typedef enum {
	AUTH_SCRAM_SERVER_INIT = 0,
	AUTH_SCRAM_SERVER_SENT_FIRST,
	AUTH_SCRAM_SERVER_DONE, /* proof checked (either way) */
	AUTH_SCRAM_SERVER_FAILED
} auth_scram_server_state_t;

/* Server exchange state; private fields, zeroed struct = INIT.  About 2.5 kB. */
typedef struct {
	auth_scram_server_state_t state;
	auth_scram_verifier_t verifier; /* salt and keys; wiped in finish */
	char gs2_header[AUTH_SCRAM_GS2_HEADER_MAX];
	size_t gs2_header_len;
	/* tls-server-end-point data the client must bind to (SCRAM-SHA-256-PLUS) */
	uint8_t cbind_data[AUTH_SCRAM_CBIND_MAX];
	size_t cbind_data_len;
	char first_bare[AUTH_SCRAM_MESSAGE_MAX + 1]; /* client-first-message-bare */
	size_t first_bare_len;
	char server_first[AUTH_SCRAM_MESSAGE_MAX + 1];
	size_t server_first_len;
	size_t nonce_len; /* combined nonce, at server_first + 2 */
} auth_scram_server_t;

/*
 * Start an exchange: (re)initializes s, parses client-first-message (the
 * SASLInitialResponse data) and writes server-first-message to out.
 * Without TLS: accepts gs2 flags "n" and "y" (the client may support
 * channel binding; SCRAM-SHA-256-PLUS was not offered, so "y" is no
 * downgrade), refuses "p" (channel binding) and an authzid "a=", as
 * PostgreSQL does.  The "n=" user
 * is ignored (PostgreSQL uses the startup packet's user).  nonce NULL draws
 * 18 random bytes for the server half; a given nonce is for tests.
 * False means a malformed message: answer with SQLSTATE 08P01.
 */
bool auth_scram_server_start(auth_scram_server_t *s, const auth_scram_verifier_t *verifier,
                             const char *client_first, size_t len, const char *nonce, char *out,
                             size_t outlen, size_t *used);

/*
 * The same over TLS, where SCRAM-SHA-256-PLUS was offered beside
 * SCRAM-SHA-256 (RFC 5802 section 6, RFC 5929): `cbind` is the connection's
 * tls-server-end-point data (1..AUTH_SCRAM_CBIND_MAX bytes) and `plus` says
 * the client chose SCRAM-SHA-256-PLUS. With plus the gs2 flag must be
 * "p=tls-server-end-point"; without it "n" is accepted, "p" refused, and
 * "y" refused too (the client supports channel binding but thinks we do
 * not: a downgrade). finish then requires c= to be base64(gs2-header +
 * cbind). Mirrors PostgreSQL read_client_first_message().
 */
bool auth_scram_server_start_tls(auth_scram_server_t *s, const auth_scram_verifier_t *verifier,
                                 const uint8_t *cbind, size_t cbind_len, bool plus,
                                 const char *client_first, size_t len, const char *nonce,
                                 char *out, size_t outlen, size_t *used);

/*
 * Parse client-final-message and verify its proof in constant time.
 * False: malformed message, wrong channel binding or nonce, out of order,
 * or outlen < AUTH_SCRAM_SERVER_FINAL_MAX (answer 08P01).  True with *ok false:
 * wrong password or mock verifier (answer 28P01; *used is 0, out untouched).
 * True with *ok true: out holds server-final-message "v=..." to send in
 * AuthenticationSASLFinal before AuthenticationOk.
 */
bool auth_scram_server_finish(auth_scram_server_t *s, const char *client_final, size_t len,
                              char *out, size_t outlen, size_t *used, bool *ok);

/* Wipe s (any state); it is then a fresh INIT state. */
void auth_scram_server_clear(auth_scram_server_t *s);

const char *auth_scram_server_state_name(auth_scram_server_state_t state);

#endif /* SHARDGATE_AUTH_H */
