/*
 * auth.c - PostgreSQL MD5 and SCRAM-SHA-256 authentication crypto.
 *
 * SCRAM follows RFC 5802 (mechanism), RFC 7677 (SHA-256 variant) and the
 * way PostgreSQL applies them (src/backend/libpq/auth-scram.c for the server,
 * src/interfaces/libpq/fe-auth-scram.c for the client).  Messages are parsed
 * in place with explicit lengths; nothing is allocated.
 */
#include "proto/auth.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <string.h>

#define AUTH_MD5_DIGEST_LEN    16
#define AUTH_SCRAM_KEY_B64_LEN 44 /* base64 of 32 bytes */

/* ---- small helpers ---- */

/* Lowercase hex of n bytes into out (2n chars, no NUL). */
static void auth_hex_encode(const uint8_t *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 0xf];
	}
}

/* True when text holds NUL bytes or is longer than max: refuse it unread. */
static bool auth_message_unsafe(const char *text, size_t len, size_t max)
{
	return text == NULL || len == 0 || len > max || memchr(text, '\0', len) != NULL;
}

/* Length of a NUL-terminated string, or false if NULL or longer than max. */
static bool auth_bounded_strlen(const char *s, size_t max, size_t *len)
{
	if (s == NULL)
		return false;
	size_t n = strnlen(s, max + 1);
	if (n > max)
		return false;
	*len = n;
	return true;
}

/* ---- base64 (RFC 4648 section 4, strict) ---- */

static size_t auth_b64_encoded_len(size_t n)
{
	return (n + 2) / 3 * 4;
}

/* Encode n bytes into out (auth_b64_encoded_len(n) chars, no NUL). */
static void auth_b64_encode(const uint8_t *in, size_t n, char *out)
{
	static const char alphabet[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t o = 0;

	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < n)
			v |= in[i + 2];
		out[o++] = alphabet[(v >> 18) & 63];
		out[o++] = alphabet[(v >> 12) & 63];
		out[o++] = i + 1 < n ? alphabet[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < n ? alphabet[v & 63] : '=';
	}
}

/* Value of one base64 alphabet char, or -1. */
static int auth_b64_value(char ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == '+')
		return 62;
	if (ch == '/')
		return 63;
	return -1;
}

/*
 * Decode canonical base64: length a non-zero multiple of 4, padding only at
 * the end, unused bits zero (RFC 4648 section 3.5), no whitespace.  Fails
 * without writing past out_max; *out_len is set only on success.
 */
static bool auth_b64_decode(const char *in, size_t n, uint8_t *out, size_t out_max, size_t *out_len)
{
	if (n == 0 || n % 4 != 0)
		return false;
	size_t pad = 0;
	if (in[n - 1] == '=')
		pad = in[n - 2] == '=' ? 2 : 1;
	size_t decoded = n / 4 * 3 - pad;
	if (decoded > out_max)
		return false;

	size_t o = 0;
	for (size_t i = 0; i < n; i += 4) {
		bool last = i + 4 == n;
		uint32_t v = 0;
		for (size_t k = 0; k < 4; k++) {
			int d;
			if (last && k >= 4 - pad)
				d = 0;
			else if ((d = auth_b64_value(in[i + k])) < 0)
				return false;
			v = v << 6 | (uint32_t)d;
		}
		if (last && pad == 2 && (v & 0xffff) != 0)
			return false;
		if (last && pad == 1 && (v & 0xff) != 0)
			return false;
		out[o++] = (uint8_t)(v >> 16);
		if (!(last && pad == 2))
			out[o++] = (uint8_t)(v >> 8);
		if (!(last && pad >= 1))
			out[o++] = (uint8_t)v;
	}
	*out_len = o;
	return true;
}

/* ---- bounded text builder ---- */

typedef struct {
	char *buf;
	size_t cap; /* bytes in buf, room for the NUL included */
	size_t len;
	bool overflow;
} auth_text_t;

static void auth_text_put(auth_text_t *t, const char *data, size_t n)
{
	if (t->overflow || n >= t->cap - t->len) {
		t->overflow = true;
		return;
	}
	memcpy(t->buf + t->len, data, n);
	t->len += n;
	t->buf[t->len] = '\0';
}

static void auth_text_puts(auth_text_t *t, const char *s)
{
	auth_text_put(t, s, strlen(s));
}

static void auth_text_put_b64(auth_text_t *t, const uint8_t *data, size_t n)
{
	size_t need = auth_b64_encoded_len(n);
	if (t->overflow || need >= t->cap - t->len) {
		t->overflow = true;
		return;
	}
	auth_b64_encode(data, n, t->buf + t->len);
	t->len += need;
	t->buf[t->len] = '\0';
}

static void auth_text_put_int(auth_text_t *t, int value)
{
	char digits[16];
	size_t n = 0;
	unsigned v = (unsigned)value;

	do {
		digits[sizeof(digits) - 1 - n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0 && n < sizeof(digits));
	auth_text_put(t, digits + sizeof(digits) - n, n);
}

/* Copy a finished text to the caller's buffer if it fits (with its NUL). */
static bool auth_text_export(const auth_text_t *t, char *out, size_t outlen, size_t *used)
{
	if (t->overflow || out == NULL || used == NULL || t->len >= outlen)
		return false;
	memcpy(out, t->buf, t->len);
	out[t->len] = '\0';
	*used = t->len;
	return true;
}

/* ---- attribute parser (RFC 5802 section 7: attr-val = ALPHA "=" value) ---- */

typedef struct {
	const char *p;
	const char *end;
} auth_cursor_t;

/*
 * Read one "a=value" at the cursor; the value runs to the next ',' or the
 * end, and the cursor stops on that ',' (or the end).  Values may be empty.
 */
static bool auth_read_attr(auth_cursor_t *cur, char *attr, const char **value, size_t *value_len)
{
	if (cur->end - cur->p < 2 || cur->p[1] != '=')
		return false;
	char a = cur->p[0];
	if (!((a >= 'a' && a <= 'z') || (a >= 'A' && a <= 'Z')))
		return false;
	const char *v = cur->p + 2;
	const char *comma = memchr(v, ',', (size_t)(cur->end - v));
	const char *stop = comma != NULL ? comma : cur->end;
	*attr = a;
	*value = v;
	*value_len = (size_t)(stop - v);
	cur->p = stop;
	return true;
}

/* Read an attribute that must be named `want`. */
static bool auth_read_named_attr(auth_cursor_t *cur, char want, const char **value,
                                 size_t *value_len)
{
	char attr;
	return auth_read_attr(cur, &attr, value, value_len) && attr == want;
}

/* Consume the ',' between two attributes. */
static bool auth_read_comma(auth_cursor_t *cur)
{
	if (cur->p == cur->end || *cur->p != ',')
		return false;
	cur->p++;
	return true;
}

/* RFC 5802 section 7: printable = %x21-2B / %x2D-7E (no ','); non-empty. */
static bool auth_scram_nonce_valid(const char *nonce, size_t len)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)nonce[i];
		if (ch < 0x21 || ch > 0x7e || ch == ',')
			return false;
	}
	return true;
}

/*
 * RFC 5802 section 7: posit-number = %x31-39 *DIGIT; we further bound it to
 * 1..AUTH_SCRAM_ITERATIONS_MAX (no sign, no leading zero, no spaces).
 */
static bool auth_scram_parse_iterations(const char *text, size_t len, int *iterations)
{
	if (len == 0 || len > 8 || text[0] < '1' || text[0] > '9')
		return false;
	long v = 0;
	for (size_t i = 0; i < len; i++) {
		if (text[i] < '0' || text[i] > '9')
			return false;
		v = v * 10 + (text[i] - '0');
	}
	if (v < 1 || v > AUTH_SCRAM_ITERATIONS_MAX)
		return false;
	*iterations = (int)v;
	return true;
}

/* ---- hashing primitives (OpenSSL 3 EVP) ---- */

static bool auth_md5(const void *data, size_t len, uint8_t out[AUTH_MD5_DIGEST_LEN])
{
	unsigned int n = 0;
	return EVP_Digest(data, len, out, &n, EVP_md5(), NULL) == 1 && n == AUTH_MD5_DIGEST_LEN;
}

static bool auth_sha256(const void *data, size_t len, uint8_t out[AUTH_SCRAM_KEY_LEN])
{
	unsigned int n = 0;
	return EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) == 1 && n == AUTH_SCRAM_KEY_LEN;
}

typedef struct {
	const void *data;
	size_t len;
} auth_part_t;

/* HMAC-SHA-256(key, part[0] || part[1] || ...) (RFC 2104), without copying. */
static bool auth_hmac_sha256(const uint8_t *key, size_t key_len, const auth_part_t *parts,
                             size_t nparts, uint8_t out[AUTH_SCRAM_KEY_LEN])
{
	char digest[] = "SHA256";
	OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
	                       OSSL_PARAM_construct_end()};
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	EVP_MAC_CTX *ctx = mac != NULL ? EVP_MAC_CTX_new(mac) : NULL;
	bool ok = ctx != NULL && EVP_MAC_init(ctx, key, key_len, params) == 1;
	for (size_t i = 0; ok && i < nparts; i++)
		ok = EVP_MAC_update(ctx, parts[i].data, parts[i].len) == 1;
	size_t n = 0;
	ok = ok && EVP_MAC_final(ctx, out, &n, AUTH_SCRAM_KEY_LEN) == 1 && n == AUTH_SCRAM_KEY_LEN;
	EVP_MAC_CTX_free(ctx);
	EVP_MAC_free(mac);
	return ok;
}

static bool auth_hmac_sha256_str(const uint8_t key[AUTH_SCRAM_KEY_LEN], const char *text,
                                 uint8_t out[AUTH_SCRAM_KEY_LEN])
{
	auth_part_t part = {text, strlen(text)};
	return auth_hmac_sha256(key, AUTH_SCRAM_KEY_LEN, &part, 1, out);
}

/*
 * RFC 5802 section 3: SaltedPassword = Hi(password, salt, i) = PBKDF2 with
 * HMAC-SHA-256; ClientKey = HMAC(SaltedPassword, "Client Key"); StoredKey =
 * H(ClientKey); ServerKey = HMAC(SaltedPassword, "Server Key").
 * client_key may be NULL when only the verifier keys are wanted.
 */
static bool auth_scram_derive_keys(const char *password, size_t password_len, const uint8_t *salt,
                                   size_t salt_len, int iterations,
                                   uint8_t client_key[AUTH_SCRAM_KEY_LEN],
                                   uint8_t stored_key[AUTH_SCRAM_KEY_LEN],
                                   uint8_t server_key[AUTH_SCRAM_KEY_LEN])
{
	uint8_t salted[AUTH_SCRAM_KEY_LEN];
	uint8_t ckey[AUTH_SCRAM_KEY_LEN];
	bool ok = PKCS5_PBKDF2_HMAC(password, (int)password_len, salt, (int)salt_len, iterations,
	                            EVP_sha256(), AUTH_SCRAM_KEY_LEN, salted) == 1 &&
	          auth_hmac_sha256_str(salted, "Client Key", ckey) &&
	          auth_sha256(ckey, AUTH_SCRAM_KEY_LEN, stored_key) &&
	          auth_hmac_sha256_str(salted, "Server Key", server_key);
	if (ok && client_key != NULL)
		memcpy(client_key, ckey, AUTH_SCRAM_KEY_LEN);
	OPENSSL_cleanse(salted, sizeof(salted));
	OPENSSL_cleanse(ckey, sizeof(ckey));
	return ok;
}

/*
 * RFC 5802 section 3: AuthMessage = client-first-message-bare + "," +
 * server-first-message + "," + client-final-message-without-proof;
 * out = HMAC(key, AuthMessage).
 */
static bool auth_scram_sign(const uint8_t key[AUTH_SCRAM_KEY_LEN], const char *first_bare,
                            size_t first_bare_len, const char *server_first,
                            size_t server_first_len, const char *final_no_proof,
                            size_t final_no_proof_len, uint8_t out[AUTH_SCRAM_KEY_LEN])
{
	const auth_part_t parts[] = {
	    {first_bare, first_bare_len},         {",", 1},
	    {server_first, server_first_len},     {",", 1},
	    {final_no_proof, final_no_proof_len},
	};
	return auth_hmac_sha256(key, AUTH_SCRAM_KEY_LEN, parts, sizeof(parts) / sizeof(parts[0]),
	                        out);
}

/*
 * SASLprep (RFC 4013) as pg_saslprep() applies it: ASCII passwords are
 * unchanged; non-ASCII ones are used as-is here (see auth.h for when that
 * differs from PostgreSQL).  Kept as one function so a full SASLprep can
 * replace it.
 */
static bool auth_scram_prepare_password(const char *password, char *out, size_t out_max,
                                        size_t *out_len)
{
	size_t len;
	if (!auth_bounded_strlen(password, AUTH_PASSWORD_MAX, &len) || len >= out_max)
		return false;
	memcpy(out, password, len);
	out[len] = '\0';
	*out_len = len;
	return true;
}

/*
 * c= attribute value (RFC 5802 section 7: cbind-input = gs2-header
 * [cbind-data]).  With no channel binding this is base64(gs2-header), "biws"
 * for "n,,"; tls-server-end-point will append the certificate hash here.
 */
static void auth_scram_put_channel_binding(auth_text_t *t, const char *gs2_header,
                                           size_t gs2_header_len)
{
	auth_text_put_b64(t, (const uint8_t *)gs2_header, gs2_header_len);
}

/* ---- MD5 ---- */

/* PostgreSQL pg_md5_encrypt(): "md5" + hex(md5(password || user)). */
bool auth_md5_hash_password(const char *user, const char *password, char out[AUTH_MD5_LEN])
{
	size_t user_len, password_len;
	if (out == NULL || !auth_bounded_strlen(user, AUTH_USER_MAX, &user_len) ||
	    !auth_bounded_strlen(password, AUTH_PASSWORD_MAX, &password_len))
		return false;

	char input[AUTH_PASSWORD_MAX + AUTH_USER_MAX];
	uint8_t digest[AUTH_MD5_DIGEST_LEN];
	memcpy(input, password, password_len);
	memcpy(input + password_len, user, user_len);
	bool ok = auth_md5(input, password_len + user_len, digest);
	if (ok) {
		memcpy(out, "md5", 3);
		auth_hex_encode(digest, sizeof(digest), out + 3);
		out[AUTH_MD5_LEN - 1] = '\0';
	}
	OPENSSL_cleanse(input, sizeof(input));
	OPENSSL_cleanse(digest, sizeof(digest));
	return ok;
}

/*
 * PostgreSQL AuthenticationMD5Password answer from a stored hash:
 * "md5" + hex(md5(32 hex chars of the hash || salt)) (libpq pg_password_sendauth).
 */
bool auth_md5_salt_hash(const char *stored_hash, const uint8_t salt[AUTH_MD5_SALT_LEN],
                        char out[AUTH_MD5_LEN])
{
	size_t len;
	if (out == NULL || salt == NULL ||
	    !auth_bounded_strlen(stored_hash, AUTH_MD5_LEN - 1, &len) || len != AUTH_MD5_LEN - 1 ||
	    memcmp(stored_hash, "md5", 3) != 0)
		return false;
	for (size_t i = 3; i < len; i++) {
		char ch = stored_hash[i];
		if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')))
			return false;
	}

	uint8_t input[32 + AUTH_MD5_SALT_LEN];
	uint8_t digest[AUTH_MD5_DIGEST_LEN];
	memcpy(input, stored_hash + 3, 32);
	memcpy(input + 32, salt, AUTH_MD5_SALT_LEN);
	bool ok = auth_md5(input, sizeof(input), digest);
	if (ok) {
		memcpy(out, "md5", 3);
		auth_hex_encode(digest, sizeof(digest), out + 3);
		out[AUTH_MD5_LEN - 1] = '\0';
	}
	OPENSSL_cleanse(input, sizeof(input));
	OPENSSL_cleanse(digest, sizeof(digest));
	return ok;
}

/* PostgreSQL protocol, AuthenticationMD5Password: the PasswordMessage body. */
bool auth_md5_password(const char *user, const char *password,
                       const uint8_t salt[AUTH_MD5_SALT_LEN], char out[AUTH_MD5_LEN])
{
	char hash[AUTH_MD5_LEN];
	bool ok =
	    auth_md5_hash_password(user, password, hash) && auth_md5_salt_hash(hash, salt, out);
	OPENSSL_cleanse(hash, sizeof(hash));
	return ok;
}

/* PostgreSQL md5_crypt_verify(): compare the client's answer in constant time. */
bool auth_md5_check_response(const char *stored_hash, const uint8_t salt[AUTH_MD5_SALT_LEN],
                             const char *response, size_t len)
{
	char expected[AUTH_MD5_LEN];
	if (response == NULL || !auth_md5_salt_hash(stored_hash, salt, expected))
		return false;
	bool ok = len == AUTH_MD5_LEN - 1 && CRYPTO_memcmp(expected, response, len) == 0;
	OPENSSL_cleanse(expected, sizeof(expected));
	return ok;
}

/* ---- SCRAM client ---- */

const char *auth_scram_client_state_name(auth_scram_client_state_t state)
{
	switch (state) {
	case AUTH_SCRAM_CLIENT_INIT:
		return "init";
	case AUTH_SCRAM_CLIENT_SENT_FIRST:
		return "sent_first";
	case AUTH_SCRAM_CLIENT_SENT_FINAL:
		return "sent_final";
	case AUTH_SCRAM_CLIENT_DONE:
		return "done";
	case AUTH_SCRAM_CLIENT_FAILED:
		return "failed";
	}
	return "unknown";
}

void auth_scram_client_clear(auth_scram_client_t *c)
{
	if (c != NULL)
		OPENSSL_cleanse(c, sizeof(*c));
}

/* A failed step ends the exchange and wipes what it held. */
static bool auth_scram_client_fail(auth_scram_client_t *c)
{
	auth_scram_client_clear(c);
	c->state = AUTH_SCRAM_CLIENT_FAILED;
	return false;
}

/* RFC 5802 section 5.1 saslname: ',' -> "=2C", '=' -> "=3D". */
static void auth_text_put_saslname(auth_text_t *t, const char *name, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (name[i] == ',')
			auth_text_puts(t, "=2C");
		else if (name[i] == '=')
			auth_text_puts(t, "=3D");
		else
			auth_text_put(t, name + i, 1);
	}
}

/* RFC 5802 section 7 client-first-message: gs2-header client-first-message-bare. */
bool auth_scram_client_start(auth_scram_client_t *c, const char *user, const char *password,
                             const char *nonce, char *out, size_t outlen, size_t *used)
{
	if (c == NULL)
		return false;
	auth_scram_client_clear(c);

	size_t user_len = 0;
	if (user != NULL && !auth_bounded_strlen(user, AUTH_USER_MAX, &user_len))
		return auth_scram_client_fail(c);
	if (!auth_scram_prepare_password(password, c->password, sizeof(c->password),
	                                 &c->password_len))
		return auth_scram_client_fail(c);

	char nonce_buf[AUTH_SCRAM_CLIENT_NONCE_MAX + 1];
	size_t nonce_len;
	if (nonce == NULL) {
		uint8_t raw[AUTH_SCRAM_RAW_NONCE_LEN];
		if (RAND_bytes(raw, sizeof(raw)) != 1)
			return auth_scram_client_fail(c);
		auth_b64_encode(raw, sizeof(raw), nonce_buf);
		nonce_len = auth_b64_encoded_len(sizeof(raw));
	} else {
		if (!auth_bounded_strlen(nonce, AUTH_SCRAM_CLIENT_NONCE_MAX, &nonce_len) ||
		    !auth_scram_nonce_valid(nonce, nonce_len))
			return auth_scram_client_fail(c);
		memcpy(nonce_buf, nonce, nonce_len);
	}

	/* No channel binding yet: "n,,".  See auth_scram_put_channel_binding. */
	memcpy(c->gs2_header, "n,,", 3);
	c->gs2_header_len = 3;

	auth_text_t bare = {c->first_bare, sizeof(c->first_bare), 0, false};
	auth_text_puts(&bare, "n=");
	auth_text_put_saslname(&bare, user != NULL ? user : "", user_len);
	auth_text_puts(&bare, ",r=");
	c->nonce_off = bare.len;
	auth_text_put(&bare, nonce_buf, nonce_len);
	c->nonce_len = nonce_len;
	c->first_bare_len = bare.len;

	char msg[AUTH_SCRAM_MESSAGE_MAX + 1];
	auth_text_t first = {msg, sizeof(msg), 0, false};
	auth_text_put(&first, c->gs2_header, c->gs2_header_len);
	auth_text_put(&first, c->first_bare, c->first_bare_len);
	if (bare.overflow || !auth_text_export(&first, out, outlen, used))
		return auth_scram_client_fail(c);
	c->state = AUTH_SCRAM_CLIENT_SENT_FIRST;
	return true;
}

/*
 * RFC 5802 section 7 server-first-message = [reserved-mext ","] nonce ","
 * salt "," iteration-count ["," extensions]; like libpq we reject both the
 * reserved m= and trailing extensions.  Section 3 gives the proof:
 * ClientProof = ClientKey XOR HMAC(StoredKey, AuthMessage).
 */
bool auth_scram_client_continue(auth_scram_client_t *c, const char *server_first, size_t len,
                                char *out, size_t outlen, size_t *used)
{
	if (c == NULL)
		return false;
	if (c->state != AUTH_SCRAM_CLIENT_SENT_FIRST ||
	    auth_message_unsafe(server_first, len, AUTH_SCRAM_MESSAGE_MAX))
		return auth_scram_client_fail(c);

	auth_cursor_t cur = {server_first, server_first + len};
	const char *nonce, *salt_b64, *iter_text;
	size_t nonce_len, salt_b64_len, iter_len;
	uint8_t salt[AUTH_SCRAM_SALT_MAX];
	size_t salt_len;
	int iterations;
	const char *client_nonce = c->first_bare + c->nonce_off;

	if (!auth_read_named_attr(&cur, 'r', &nonce, &nonce_len) || !auth_read_comma(&cur) ||
	    !auth_read_named_attr(&cur, 's', &salt_b64, &salt_b64_len) || !auth_read_comma(&cur) ||
	    !auth_read_named_attr(&cur, 'i', &iter_text, &iter_len) || cur.p != cur.end)
		return auth_scram_client_fail(c);
	/* The server must append a non-empty nonce of its own to ours. */
	if (nonce_len <= c->nonce_len || nonce_len > AUTH_SCRAM_NONCE_MAX ||
	    memcmp(nonce, client_nonce, c->nonce_len) != 0 ||
	    !auth_scram_nonce_valid(nonce, nonce_len))
		return auth_scram_client_fail(c);
	if (!auth_b64_decode(salt_b64, salt_b64_len, salt, sizeof(salt), &salt_len) ||
	    salt_len == 0 || !auth_scram_parse_iterations(iter_text, iter_len, &iterations))
		return auth_scram_client_fail(c);

	char final_buf[AUTH_SCRAM_MESSAGE_MAX + 1];
	auth_text_t final = {final_buf, sizeof(final_buf), 0, false};
	auth_text_puts(&final, "c=");
	auth_scram_put_channel_binding(&final, c->gs2_header, c->gs2_header_len);
	auth_text_puts(&final, ",r=");
	auth_text_put(&final, nonce, nonce_len);
	size_t no_proof_len = final.len;
	if (final.overflow)
		return auth_scram_client_fail(c);

	uint8_t client_key[AUTH_SCRAM_KEY_LEN], stored_key[AUTH_SCRAM_KEY_LEN];
	uint8_t server_key[AUTH_SCRAM_KEY_LEN], signature[AUTH_SCRAM_KEY_LEN];
	bool ok = auth_scram_derive_keys(c->password, c->password_len, salt, salt_len, iterations,
	                                 client_key, stored_key, server_key) &&
	          auth_scram_sign(stored_key, c->first_bare, c->first_bare_len, server_first, len,
	                          final_buf, no_proof_len, signature) &&
	          auth_scram_sign(server_key, c->first_bare, c->first_bare_len, server_first, len,
	                          final_buf, no_proof_len, c->server_signature);
	if (ok) {
		for (size_t i = 0; i < AUTH_SCRAM_KEY_LEN; i++)
			client_key[i] ^= signature[i]; /* now ClientProof */
		auth_text_puts(&final, ",p=");
		auth_text_put_b64(&final, client_key, AUTH_SCRAM_KEY_LEN);
		ok = auth_text_export(&final, out, outlen, used);
	}
	OPENSSL_cleanse(client_key, sizeof(client_key));
	OPENSSL_cleanse(stored_key, sizeof(stored_key));
	OPENSSL_cleanse(server_key, sizeof(server_key));
	OPENSSL_cleanse(signature, sizeof(signature));
	OPENSSL_cleanse(final_buf, sizeof(final_buf));
	if (!ok)
		return auth_scram_client_fail(c);
	/* The password is no longer needed: only the expected v= remains. */
	OPENSSL_cleanse(c->password, sizeof(c->password));
	c->password_len = 0;
	c->state = AUTH_SCRAM_CLIENT_SENT_FINAL;
	return true;
}

/*
 * RFC 5802 section 7 server-final-message = (server-error / verifier)
 * ["," extensions]; section 5.1: the client MUST verify ServerSignature.
 * Extensions are rejected, as libpq does.
 */
bool auth_scram_client_finish(auth_scram_client_t *c, const char *server_final, size_t len)
{
	if (c == NULL)
		return false;
	if (c->state != AUTH_SCRAM_CLIENT_SENT_FINAL ||
	    auth_message_unsafe(server_final, len, AUTH_SCRAM_MESSAGE_MAX))
		return auth_scram_client_fail(c);

	auth_cursor_t cur = {server_final, server_final + len};
	const char *value;
	size_t value_len;
	uint8_t signature[AUTH_SCRAM_KEY_LEN];
	size_t signature_len;
	/* "e=..." fails here too: its attribute is not 'v'. */
	bool ok = auth_read_named_attr(&cur, 'v', &value, &value_len) && cur.p == cur.end &&
	          auth_b64_decode(value, value_len, signature, sizeof(signature), &signature_len) &&
	          signature_len == AUTH_SCRAM_KEY_LEN &&
	          CRYPTO_memcmp(signature, c->server_signature, AUTH_SCRAM_KEY_LEN) == 0;
	OPENSSL_cleanse(signature, sizeof(signature));
	if (!ok)
		return auth_scram_client_fail(c);
	auth_scram_client_clear(c);
	c->state = AUTH_SCRAM_CLIENT_DONE;
	return true;
}

/* ---- SCRAM verifiers ---- */

/* PostgreSQL parse_scram_secret(): "SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>". */
bool auth_scram_parse_verifier(const char *text, auth_scram_verifier_t *out)
{
	static const char prefix[] = "SCRAM-SHA-256$";
	size_t len;
	if (out == NULL || !auth_bounded_strlen(text, AUTH_SCRAM_VERIFIER_MAX - 1, &len) ||
	    len < sizeof(prefix) - 1 || memcmp(text, prefix, sizeof(prefix) - 1) != 0)
		return false;

	const char *p = text + sizeof(prefix) - 1;
	const char *end = text + len;
	const char *colon1 = memchr(p, ':', (size_t)(end - p));
	const char *dollar = colon1 != NULL ? memchr(colon1, '$', (size_t)(end - colon1)) : NULL;
	const char *colon2 = dollar != NULL ? memchr(dollar, ':', (size_t)(end - dollar)) : NULL;
	if (colon2 == NULL)
		return false;

	auth_scram_verifier_t v = {0};
	size_t stored_len = 0, server_len = 0;
	bool ok = auth_scram_parse_iterations(p, (size_t)(colon1 - p), &v.iterations) &&
	          auth_b64_decode(colon1 + 1, (size_t)(dollar - colon1 - 1), v.salt, sizeof(v.salt),
	                          &v.salt_len) &&
	          v.salt_len > 0 &&
	          auth_b64_decode(dollar + 1, (size_t)(colon2 - dollar - 1), v.stored_key,
	                          sizeof(v.stored_key), &stored_len) &&
	          stored_len == AUTH_SCRAM_KEY_LEN &&
	          auth_b64_decode(colon2 + 1, (size_t)(end - colon2 - 1), v.server_key,
	                          sizeof(v.server_key), &server_len) &&
	          server_len == AUTH_SCRAM_KEY_LEN;
	if (ok)
		*out = v;
	OPENSSL_cleanse(&v, sizeof(v));
	return ok;
}

/* PostgreSQL scram_build_secret(): the pg_authid text for a password. */
bool auth_scram_make_verifier(const char *password, int iterations, const uint8_t *salt,
                              size_t salt_len, char *out, size_t outlen)
{
	char prepared[AUTH_PASSWORD_MAX + 1];
	size_t prepared_len;
	uint8_t salt_buf[AUTH_SCRAM_DEFAULT_SALT_LEN];

	if (iterations < 1 || iterations > AUTH_SCRAM_ITERATIONS_MAX)
		return false;
	if (salt == NULL) {
		if (RAND_bytes(salt_buf, sizeof(salt_buf)) != 1)
			return false;
		salt = salt_buf;
		salt_len = sizeof(salt_buf);
	} else if (salt_len == 0 || salt_len > AUTH_SCRAM_SALT_MAX) {
		return false;
	}
	if (!auth_scram_prepare_password(password, prepared, sizeof(prepared), &prepared_len))
		return false;

	uint8_t stored_key[AUTH_SCRAM_KEY_LEN], server_key[AUTH_SCRAM_KEY_LEN];
	char text_buf[AUTH_SCRAM_VERIFIER_MAX];
	auth_text_t text = {text_buf, sizeof(text_buf), 0, false};
	size_t used;
	bool ok =
	    prepared_len > 0 && auth_scram_derive_keys(prepared, prepared_len, salt, salt_len,
	                                               iterations, NULL, stored_key, server_key);
	if (ok) {
		auth_text_puts(&text, "SCRAM-SHA-256$");
		auth_text_put_int(&text, iterations);
		auth_text_puts(&text, ":");
		auth_text_put_b64(&text, salt, salt_len);
		auth_text_puts(&text, "$");
		auth_text_put_b64(&text, stored_key, sizeof(stored_key));
		auth_text_puts(&text, ":");
		auth_text_put_b64(&text, server_key, sizeof(server_key));
		ok = auth_text_export(&text, out, outlen, &used);
	}
	OPENSSL_cleanse(prepared, sizeof(prepared));
	OPENSSL_cleanse(stored_key, sizeof(stored_key));
	OPENSSL_cleanse(server_key, sizeof(server_key));
	OPENSSL_cleanse(text_buf, sizeof(text_buf));
	return ok;
}

/*
 * PostgreSQL scram_mock_salt() / mock_scram_secret(), keyed with HMAC rather
 * than a plain hash: same user, same salt; nothing reveals the user is unknown.
 */
bool auth_scram_mock_verifier(const char *user, const uint8_t *secret, size_t secret_len,
                              int iterations, auth_scram_verifier_t *out)
{
	size_t user_len;
	if (out == NULL || secret == NULL || secret_len < AUTH_SCRAM_MOCK_SECRET_MIN ||
	    iterations < 1 || iterations > AUTH_SCRAM_ITERATIONS_MAX ||
	    !auth_bounded_strlen(user, AUTH_USER_MAX, &user_len))
		return false;

	/*
	 * Distinct labels keep the three outputs independent; each label's NUL
	 * is hashed too, so label and user name cannot run into each other.
	 */
	static const char salt_label[] = "shardgate mock salt";
	static const char stored_label[] = "shardgate mock stored key";
	static const char server_label[] = "shardgate mock server key";
	auth_scram_verifier_t v = {0};
	uint8_t salt[AUTH_SCRAM_KEY_LEN];
	const auth_part_t salt_parts[] = {{salt_label, sizeof(salt_label)}, {user, user_len}};
	const auth_part_t stored_parts[] = {{stored_label, sizeof(stored_label)}, {user, user_len}};
	const auth_part_t server_parts[] = {{server_label, sizeof(server_label)}, {user, user_len}};
	bool ok = auth_hmac_sha256(secret, secret_len, salt_parts, 2, salt) &&
	          auth_hmac_sha256(secret, secret_len, stored_parts, 2, v.stored_key) &&
	          auth_hmac_sha256(secret, secret_len, server_parts, 2, v.server_key);
	if (ok) {
		memcpy(v.salt, salt, AUTH_SCRAM_DEFAULT_SALT_LEN);
		v.salt_len = AUTH_SCRAM_DEFAULT_SALT_LEN;
		v.iterations = iterations;
		v.is_mock = true;
		*out = v;
	}
	OPENSSL_cleanse(&v, sizeof(v));
	OPENSSL_cleanse(salt, sizeof(salt));
	return ok;
}

/* ---- SCRAM server ---- */

const char *auth_scram_server_state_name(auth_scram_server_state_t state)
{
	switch (state) {
	case AUTH_SCRAM_SERVER_INIT:
		return "init";
	case AUTH_SCRAM_SERVER_SENT_FIRST:
		return "sent_first";
	case AUTH_SCRAM_SERVER_DONE:
		return "done";
	case AUTH_SCRAM_SERVER_FAILED:
		return "failed";
	}
	return "unknown";
}

void auth_scram_server_clear(auth_scram_server_t *s)
{
	if (s != NULL)
		OPENSSL_cleanse(s, sizeof(*s));
}

static bool auth_scram_server_fail(auth_scram_server_t *s)
{
	auth_scram_server_clear(s);
	s->state = AUTH_SCRAM_SERVER_FAILED;
	return false;
}

/*
 * Skip optional extensions ("," attr-val, RFC 5802 section 7) up to the end.
 * Each must still be a well-formed attribute.
 */
static bool auth_skip_extensions(auth_cursor_t *cur)
{
	while (cur->p != cur->end) {
		char attr;
		const char *value;
		size_t value_len;
		if (!auth_read_comma(cur) || !auth_read_attr(cur, &attr, &value, &value_len))
			return false;
	}
	return true;
}

/*
 * RFC 5802 section 7 client-first-message = gs2-header client-first-message-bare,
 * gs2-header = gs2-cbind-flag "," [authzid] ",", client-first-message-bare =
 * [reserved-mext ","] username "," nonce ["," extensions]; checked as
 * PostgreSQL read_client_first_message() does.
 */
/*
 * The gs2-header (RFC 5802 section 7): gs2-cbind-flag "," [authzid] ",",
 * where gs2-cbind-flag is "n" (the client does not support channel
 * binding), "y" (it does, but thinks the server does not) or
 * "p=" cb-name (it binds).  offered: SCRAM-SHA-256-PLUS was offered (TLS);
 * plus: the client chose it.  Returns the header's length, 0 when refused.
 */
static size_t auth_scram_read_gs2_header(const char *msg, size_t len, bool offered, bool plus)
{
	static const char cb_name[] = "p=tls-server-end-point";
	size_t flag_len;
	if (len < 1)
		return 0;
	switch (msg[0]) {
	case 'n':
		/* -PLUS promised channel binding and must not go without it. */
		if (plus)
			return 0;
		flag_len = 1;
		break;
	case 'y':
		/* With -PLUS offered, "y" means someone removed it: a downgrade. */
		if (plus || offered)
			return 0;
		flag_len = 1;
		break;
	case 'p':
		if (!plus || len < sizeof(cb_name) - 1 ||
		    memcmp(msg, cb_name, sizeof(cb_name) - 1) != 0)
			return 0;
		flag_len = sizeof(cb_name) - 1;
		break;
	default:
		return 0;
	}
	/* authzid "a=..." is not supported, as in PostgreSQL. */
	if (len < flag_len + 2 || msg[flag_len] != ',' || msg[flag_len + 1] != ',')
		return 0;
	return flag_len + 2;
}

static bool auth_scram_server_begin(auth_scram_server_t *s, const auth_scram_verifier_t *verifier,
                                    const uint8_t *cbind, size_t cbind_len, bool plus,
                                    const char *client_first, size_t len, const char *nonce,
                                    char *out, size_t outlen, size_t *used)
{
	if (s == NULL)
		return false;
	auth_scram_server_clear(s);
	if (verifier == NULL || verifier->iterations < 1 ||
	    verifier->iterations > AUTH_SCRAM_ITERATIONS_MAX || verifier->salt_len == 0 ||
	    verifier->salt_len > AUTH_SCRAM_SALT_MAX ||
	    auth_message_unsafe(client_first, len, AUTH_SCRAM_MESSAGE_MAX) ||
	    (cbind != NULL && (cbind_len == 0 || cbind_len > AUTH_SCRAM_CBIND_MAX)) ||
	    (cbind == NULL && plus))
		return auth_scram_server_fail(s);

	size_t header_len = auth_scram_read_gs2_header(client_first, len, cbind != NULL, plus);
	if (header_len == 0 || header_len > sizeof(s->gs2_header))
		return auth_scram_server_fail(s);
	memcpy(s->gs2_header, client_first, header_len);
	s->gs2_header_len = header_len;
	if (plus) {
		memcpy(s->cbind_data, cbind, cbind_len);
		s->cbind_data_len = cbind_len;
	}

	const char *bare = client_first + header_len;
	size_t bare_len = len - header_len;
	auth_cursor_t cur = {bare, bare + bare_len};
	const char *user, *client_nonce;
	size_t user_len, client_nonce_len;
	/* "m=" (reserved-mext) fails the 'n' check. The user name is ignored. */
	if (!auth_read_named_attr(&cur, 'n', &user, &user_len) || !auth_read_comma(&cur) ||
	    !auth_read_named_attr(&cur, 'r', &client_nonce, &client_nonce_len) ||
	    !auth_skip_extensions(&cur) || !auth_scram_nonce_valid(client_nonce, client_nonce_len))
		return auth_scram_server_fail(s);

	char server_nonce[AUTH_SCRAM_NONCE_MAX + 1];
	size_t server_nonce_len;
	if (nonce == NULL) {
		uint8_t raw[AUTH_SCRAM_RAW_NONCE_LEN];
		if (RAND_bytes(raw, sizeof(raw)) != 1)
			return auth_scram_server_fail(s);
		auth_b64_encode(raw, sizeof(raw), server_nonce);
		server_nonce_len = auth_b64_encoded_len(sizeof(raw));
	} else {
		if (!auth_bounded_strlen(nonce, AUTH_SCRAM_NONCE_MAX, &server_nonce_len) ||
		    !auth_scram_nonce_valid(nonce, server_nonce_len))
			return auth_scram_server_fail(s);
		memcpy(server_nonce, nonce, server_nonce_len);
	}
	if (client_nonce_len + server_nonce_len > AUTH_SCRAM_NONCE_MAX)
		return auth_scram_server_fail(s);

	/* server-first-message = nonce "," salt "," iteration-count */
	auth_text_t first = {s->server_first, sizeof(s->server_first), 0, false};
	auth_text_puts(&first, "r=");
	auth_text_put(&first, client_nonce, client_nonce_len);
	auth_text_put(&first, server_nonce, server_nonce_len);
	auth_text_puts(&first, ",s=");
	auth_text_put_b64(&first, verifier->salt, verifier->salt_len);
	auth_text_puts(&first, ",i=");
	auth_text_put_int(&first, verifier->iterations);
	s->server_first_len = first.len;
	s->nonce_len = client_nonce_len + server_nonce_len;
	memcpy(s->first_bare, bare, bare_len);
	s->first_bare[bare_len] = '\0';
	s->first_bare_len = bare_len;
	s->verifier = *verifier;
	if (!auth_text_export(&first, out, outlen, used))
		return auth_scram_server_fail(s);
	s->state = AUTH_SCRAM_SERVER_SENT_FIRST;
	return true;
}

bool auth_scram_server_start(auth_scram_server_t *s, const auth_scram_verifier_t *verifier,
                             const char *client_first, size_t len, const char *nonce, char *out,
                             size_t outlen, size_t *used)
{
	return auth_scram_server_begin(s, verifier, NULL, 0, false, client_first, len, nonce, out,
	                               outlen, used);
}

bool auth_scram_server_start_tls(auth_scram_server_t *s, const auth_scram_verifier_t *verifier,
                                 const uint8_t *cbind, size_t cbind_len, bool plus,
                                 const char *client_first, size_t len, const char *nonce,
                                 char *out, size_t outlen, size_t *used)
{
	if (s == NULL)
		return false;
	if (cbind == NULL)
		return auth_scram_server_fail(s);
	return auth_scram_server_begin(s, verifier, cbind, cbind_len, plus, client_first, len, nonce,
	                               out, outlen, used);
}

/*
 * RFC 5802 section 7 client-final-message = client-final-message-without-proof
 * "," proof, where without-proof = channel-binding "," nonce ["," extensions];
 * section 3: ClientKey = ClientProof XOR ClientSignature, accepted when
 * H(ClientKey) == StoredKey.  Mirrors PostgreSQL read_client_final_message()
 * and verify_client_proof().
 */
bool auth_scram_server_finish(auth_scram_server_t *s, const char *client_final, size_t len,
                              char *out, size_t outlen, size_t *used, bool *ok)
{
	if (s == NULL)
		return false;
	if (s->state != AUTH_SCRAM_SERVER_SENT_FIRST || out == NULL || used == NULL || ok == NULL ||
	    outlen < AUTH_SCRAM_SERVER_FINAL_MAX ||
	    auth_message_unsafe(client_final, len, AUTH_SCRAM_MESSAGE_MAX))
		return auth_scram_server_fail(s);

	auth_cursor_t cur = {client_final, client_final + len};
	const char *cbind_b64, *nonce, *value = NULL;
	size_t cbind_b64_len, nonce_len, value_len = 0;
	/* cbind-input = gs2-header [cbind-data]: the data only with "p=". */
	uint8_t cbind[AUTH_SCRAM_GS2_HEADER_MAX + AUTH_SCRAM_CBIND_MAX];
	size_t cbind_len;
	if (!auth_read_named_attr(&cur, 'c', &cbind_b64, &cbind_b64_len) ||
	    !auth_b64_decode(cbind_b64, cbind_b64_len, cbind, sizeof(cbind), &cbind_len) ||
	    cbind_len != s->gs2_header_len + s->cbind_data_len ||
	    memcmp(cbind, s->gs2_header, s->gs2_header_len) != 0 ||
	    CRYPTO_memcmp(cbind + s->gs2_header_len, s->cbind_data, s->cbind_data_len) != 0)
		return auth_scram_server_fail(s);
	if (!auth_read_comma(&cur) || !auth_read_named_attr(&cur, 'r', &nonce, &nonce_len) ||
	    nonce_len != s->nonce_len || memcmp(nonce, s->server_first + 2, nonce_len) != 0)
		return auth_scram_server_fail(s);
	/* Extensions until "p=", which must come last. */
	const char *proof_comma;
	char attr = 0;
	do {
		proof_comma = cur.p;
		if (!auth_read_comma(&cur) || !auth_read_attr(&cur, &attr, &value, &value_len))
			return auth_scram_server_fail(s);
	} while (attr != 'p');
	uint8_t proof[AUTH_SCRAM_KEY_LEN];
	size_t proof_len;
	if (cur.p != cur.end ||
	    !auth_b64_decode(value, value_len, proof, sizeof(proof), &proof_len) ||
	    proof_len != AUTH_SCRAM_KEY_LEN)
		return auth_scram_server_fail(s);
	size_t no_proof_len = (size_t)(proof_comma - client_final);

	uint8_t signature[AUTH_SCRAM_KEY_LEN], computed[AUTH_SCRAM_KEY_LEN];
	char final_buf[AUTH_SCRAM_SERVER_FINAL_MAX];
	auth_text_t final = {final_buf, sizeof(final_buf), 0, false};
	bool computed_ok = auth_scram_sign(s->verifier.stored_key, s->first_bare, s->first_bare_len,
	                                   s->server_first, s->server_first_len, client_final,
	                                   no_proof_len, signature);
	if (computed_ok) {
		for (size_t i = 0; i < AUTH_SCRAM_KEY_LEN; i++)
			proof[i] ^= signature[i]; /* now the client's ClientKey */
		computed_ok = auth_sha256(proof, sizeof(proof), computed);
	}
	/* The same work is done for a mock verifier; only the verdict differs. */
	bool proof_ok = computed_ok &&
	                CRYPTO_memcmp(computed, s->verifier.stored_key, AUTH_SCRAM_KEY_LEN) == 0 &&
	                !s->verifier.is_mock;
	if (proof_ok) {
		computed_ok = auth_scram_sign(
		    s->verifier.server_key, s->first_bare, s->first_bare_len, s->server_first,
		    s->server_first_len, client_final, no_proof_len, signature);
		auth_text_puts(&final, "v=");
		auth_text_put_b64(&final, signature, sizeof(signature));
	}
	OPENSSL_cleanse(proof, sizeof(proof));
	OPENSSL_cleanse(signature, sizeof(signature));
	OPENSSL_cleanse(computed, sizeof(computed));
	if (!computed_ok || (proof_ok && !auth_text_export(&final, out, outlen, used)))
		return auth_scram_server_fail(s);
	auth_scram_server_clear(s);
	s->state = AUTH_SCRAM_SERVER_DONE;
	*ok = proof_ok;
	if (!proof_ok)
		*used = 0;
	return true;
}
