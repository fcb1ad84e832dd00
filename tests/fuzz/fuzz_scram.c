/*
 * fuzz_scram.c - libFuzzer harness for SCRAM-SHA-256 (src/proto/auth.h).
 *
 * Input layout: byte 0 picks a mode; for the two-message modes bytes 1-2
 * are a big-endian length n, the next n bytes (or fewer, if the input ends)
 * are the first message and the rest is the second. Messages are passed
 * as (pointer, length) exactly as they came, NUL bytes included.
 *
 *   mode 0  client: auth_scram_client_start() with the RFC 7677 user,
 *           password and nonce, then auth_scram_client_continue() on the
 *           fuzzed server-first-message and, if accepted,
 *           auth_scram_client_finish() on the fuzzed server-final-message.
 *   mode 1  server: auth_scram_server_start() on the fuzzed
 *           client-first-message with a verifier made once from the fixed
 *           password "pencil" (RFC salt, 4096 iterations) and the RFC server
 *           nonce, then auth_scram_server_finish() on the fuzzed
 *           client-final-message.
 *   mode 2  the same with a mock verifier (unknown user).
 *   mode 3  auth_scram_parse_verifier() on the rest, as NUL-terminated text.
 *   mode 4  (byte 0 exactly 4; every other value v is mode v % 4 as above)
 *           server over TLS: byte 1 holds options, then the length and the
 *           two messages as in modes 1 and 2.  auth_scram_server_start_tls()
 *           on the fuzzed client-first-message, with a fixed fake
 *           tls-server-end-point hash, then auth_scram_server_finish() on
 *           the fuzzed client-final-message.  Options: bit 0 the client
 *           chose SCRAM-SHA-256-PLUS; bits 1-2 the hash length (32, 48, 64
 *           bytes as SHA-256/384/512, or 1); bit 3 the mock verifier instead
 *           of "pencil".
 *
 * With these fixed values the RFC 7677 messages are valid, so seeds reach the
 * success paths (signature and proof verified); the mode 4 seeds carry
 * client-final-messages computed for the fake hash (tls_plus_*).
 *
 * PBKDF2 runs the server's iteration count, up to 10,000,000 (seconds per
 * input): server-first-messages whose trailing ",i=" asks for more than
 * FUZZ_MAX_ITERATIONS are skipped before the call. That only hides the
 * cost, not a parse: iteration counts above the maximum are still passed.
 *
 * Checked: outputs are left untouched on failure (auth.h's convention) and
 * text outputs are NUL-terminated with *used bytes before the NUL.  Mode 4
 * also checks the channel binding rules: an accepted client-first starts
 * with "p=tls-server-end-point,," under -PLUS and with "n,," otherwise ("y"
 * is a downgrade over TLS), and an accepted client-final starts with
 * "c=" base64(gs2-header + hash) "," (the hash only under -PLUS).
 */
#include <openssl/evp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "proto/auth.h"

#define FUZZ_INPUT_MAX      (64 * 1024)
#define FUZZ_MAX_ITERATIONS 4096
#define FUZZ_OUT_LEN        (AUTH_SCRAM_MESSAGE_MAX + 1)
#define FUZZ_SENTINEL       0x5a
#define FUZZ_USED_SENTINEL  ((size_t)0x5EED)

#define RFC_USER         "user"
#define RFC_PASSWORD     "pencil"
#define RFC_CLIENT_NONCE "rOprNGfwEbeRWgbNEkqO"
#define RFC_SERVER_NONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
/* base64 "W22ZaJ0SNY7soEsUEjb6gQ==" */
static const uint8_t rfc_salt[16] = {0x5b, 0x6d, 0x99, 0x68, 0x9d, 0x12, 0x35, 0x8e,
                                     0xec, 0xa0, 0x4b, 0x14, 0x12, 0x36, 0xfa, 0x81};
static const uint8_t mock_secret[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11,
                                        12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
                                        23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

/* Mode 4's fake tls-server-end-point hash: byte i is 0xa5 ^ (37 * i), and a
 * shorter hash is a prefix of it. */
#define FUZZ_TLS_MODE       4
#define FUZZ_CB_HEADER      "p=tls-server-end-point,,"
#define FUZZ_CB_HEADER_LEN  (sizeof(FUZZ_CB_HEADER) - 1)
#define FUZZ_CBIND_LENGTHS  4
#define FUZZ_CBIND_ATTR_MAX (8 + (FUZZ_CB_HEADER_LEN + AUTH_SCRAM_CBIND_MAX + 2) / 3 * 4)
static const size_t fuzz_cbind_lengths[FUZZ_CBIND_LENGTHS] = {32, 48, 64, 1};
static uint8_t fuzz_cert_hash[AUTH_SCRAM_CBIND_MAX];
/* "c=" base64(FUZZ_CB_HEADER + hash) "," per hash length; "c=biws," without -PLUS. */
static char fuzz_plus_cbind_attr[FUZZ_CBIND_LENGTHS][FUZZ_CBIND_ATTR_MAX];

/* Made once: the harness keeps no other state between inputs. */
static auth_scram_verifier_t fuzz_verifier, fuzz_mock;
static bool fuzz_ready;

static void fuzz_init(void)
{
	char text[AUTH_SCRAM_VERIFIER_MAX];
	if (fuzz_ready)
		return;
	fuzz_check(auth_scram_make_verifier(RFC_PASSWORD, 4096, rfc_salt, sizeof(rfc_salt), text,
	                                    sizeof(text)));
	fuzz_check(auth_scram_parse_verifier(text, &fuzz_verifier));
	fuzz_check(
	    auth_scram_mock_verifier("nobody", mock_secret, sizeof(mock_secret), 4096, &fuzz_mock));
	for (size_t i = 0; i < sizeof(fuzz_cert_hash); i++)
		fuzz_cert_hash[i] = (uint8_t)(0xa5 ^ (37 * i));
	for (size_t k = 0; k < FUZZ_CBIND_LENGTHS; k++) {
		uint8_t input[FUZZ_CB_HEADER_LEN + AUTH_SCRAM_CBIND_MAX];
		size_t n = FUZZ_CB_HEADER_LEN + fuzz_cbind_lengths[k];
		char *attr = fuzz_plus_cbind_attr[k];
		memcpy(input, FUZZ_CB_HEADER, FUZZ_CB_HEADER_LEN);
		memcpy(input + FUZZ_CB_HEADER_LEN, fuzz_cert_hash, fuzz_cbind_lengths[k]);
		memcpy(attr, "c=", 2);
		int b64_len = EVP_EncodeBlock((unsigned char *)attr + 2, input, (int)n);
		fuzz_check(b64_len > 0 && (size_t)b64_len + 4 <= sizeof(fuzz_plus_cbind_attr[k]));
		memcpy(attr + 2 + b64_len, ",", 2);
	}
	fuzz_ready = true;
}

static void fuzz_out_reset(char *out, size_t *used)
{
	memset(out, FUZZ_SENTINEL, FUZZ_OUT_LEN);
	*used = FUZZ_USED_SENTINEL;
}

/* After a call that wrote (or should not have written) out and *used. */
static void fuzz_out_check(bool ok, const char *out, size_t used)
{
	if (ok) {
		fuzz_check(used < FUZZ_OUT_LEN && out[used] == '\0' && strlen(out) == used);
		return;
	}
	fuzz_check(used == FUZZ_USED_SENTINEL);
	for (size_t i = 0; i < FUZZ_OUT_LEN; i++)
		fuzz_check((unsigned char)out[i] == FUZZ_SENTINEL);
}

/* True when msg ends in ",i=<digits>" asking for more than FUZZ_MAX_ITERATIONS. */
static bool fuzz_too_many_iterations(const char *msg, size_t len)
{
	size_t i = len;
	while (i > 0 && msg[i - 1] >= '0' && msg[i - 1] <= '9')
		i--;
	if (i == len || i < 3 || memcmp(msg + i - 3, ",i=", 3) != 0)
		return false;
	unsigned long long v = 0;
	for (; i < len; i++) {
		v = v * 10 + (unsigned)(msg[i] - '0');
		if (v > FUZZ_MAX_ITERATIONS)
			return true;
	}
	return false;
}

static void fuzz_client(const char *first, size_t first_len, const char *second, size_t second_len)
{
	static auth_scram_client_t c; /* 2.5 kB; cleared before and after each use */
	char out[FUZZ_OUT_LEN];
	size_t used;

	if (fuzz_too_many_iterations(first, first_len))
		return;
	fuzz_check(auth_scram_client_start(&c, RFC_USER, RFC_PASSWORD, RFC_CLIENT_NONCE, out,
	                                   sizeof(out), &used));
	fuzz_out_reset(out, &used);
	bool ok = auth_scram_client_continue(&c, first, first_len, out, sizeof(out), &used);
	fuzz_out_check(ok, out, used);
	(void)auth_scram_client_state_name(c.state);
	if (ok) {
		bool done = auth_scram_client_finish(&c, second, second_len);
		fuzz_check(done == (c.state == AUTH_SCRAM_CLIENT_DONE));
	}
	/* A failed exchange is terminal. */
	if (c.state == AUTH_SCRAM_CLIENT_FAILED)
		fuzz_check(!auth_scram_client_finish(&c, second, second_len));
	auth_scram_client_clear(&c);
}

static void fuzz_server(const auth_scram_verifier_t *verifier, const char *first, size_t first_len,
                        const char *second, size_t second_len)
{
	static auth_scram_server_t s;
	char out[FUZZ_OUT_LEN];
	size_t used;
	bool ok, good;

	fuzz_out_reset(out, &used);
	ok = auth_scram_server_start(&s, verifier, first, first_len, RFC_SERVER_NONCE, out,
	                             sizeof(out), &used);
	fuzz_out_check(ok, out, used);
	(void)auth_scram_server_state_name(s.state);
	if (ok) {
		fuzz_out_reset(out, &used);
		good = false;
		ok = auth_scram_server_finish(&s, second, second_len, out, sizeof(out), &used,
		                              &good);
		if (ok && !good) {
			/* Wrong proof: *used is 0 and out untouched. */
			fuzz_check(used == 0);
			used = FUZZ_USED_SENTINEL;
		}
		fuzz_out_check(ok && good, out, used);
		if (ok && good)
			fuzz_check(!verifier->is_mock);
	}
	auth_scram_server_clear(&s);
}

/* True when msg (len bytes) starts with the NUL-terminated prefix. */
static bool fuzz_starts_with(const char *msg, size_t len, const char *prefix)
{
	size_t n = strlen(prefix);
	return len >= n && memcmp(msg, prefix, n) == 0;
}

/*
 * Mode 4: the server side over TLS, where SCRAM-SHA-256-PLUS was offered;
 * options as in the header comment.
 */
static void fuzz_server_tls(uint8_t options, const char *first, size_t first_len,
                            const char *second, size_t second_len)
{
	static auth_scram_server_t s;
	bool plus = (options & 1) != 0;
	size_t cbind_index = (options >> 1) & 3;
	size_t cbind_len = fuzz_cbind_lengths[cbind_index];
	const auth_scram_verifier_t *verifier = (options & 8) ? &fuzz_mock : &fuzz_verifier;
	char out[FUZZ_OUT_LEN];
	size_t used;
	bool ok, good;

	fuzz_out_reset(out, &used);
	ok = auth_scram_server_start_tls(&s, verifier, fuzz_cert_hash, cbind_len, plus, first,
	                                 first_len, RFC_SERVER_NONCE, out, sizeof(out), &used);
	fuzz_out_check(ok, out, used);
	fuzz_check(s.state == (ok ? AUTH_SCRAM_SERVER_SENT_FIRST : AUTH_SCRAM_SERVER_FAILED));
	if (ok) {
		/* -PLUS binds; plain SCRAM-SHA-256 over TLS takes "n" only ("y": downgrade). */
		fuzz_check(fuzz_starts_with(first, first_len, plus ? FUZZ_CB_HEADER : "n,,"));
		fuzz_out_reset(out, &used);
		good = false;
		ok = auth_scram_server_finish(&s, second, second_len, out, sizeof(out), &used,
		                              &good);
		if (ok) {
			const char *attr = plus ? fuzz_plus_cbind_attr[cbind_index] : "c=biws,";
			fuzz_check(fuzz_starts_with(second, second_len, attr));
			fuzz_check(s.state == AUTH_SCRAM_SERVER_DONE);
		} else {
			fuzz_check(s.state == AUTH_SCRAM_SERVER_FAILED);
		}
		if (ok && !good) {
			fuzz_check(used == 0);
			used = FUZZ_USED_SENTINEL;
		}
		fuzz_out_check(ok && good, out, used);
		if (ok && good)
			fuzz_check(!verifier->is_mock);
		/* The exchange is over either way: a replay is refused. */
		fuzz_out_reset(out, &used);
		fuzz_check(!auth_scram_server_finish(&s, second, second_len, out, sizeof(out),
		                                     &used, &good));
		fuzz_out_check(false, out, used);
	}
	auth_scram_server_clear(&s);
}

static void fuzz_verifier_text(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	if (!text)
		return;
	memcpy(text, data, size);
	text[size] = '\0';
	auth_scram_verifier_t v, before;
	memset(&v, FUZZ_SENTINEL, sizeof(v));
	before = v;
	if (!auth_scram_parse_verifier(text, &v))
		fuzz_check(memcmp(&v, &before, sizeof(v)) == 0);
	else
		fuzz_check(v.iterations >= 1 && v.iterations <= AUTH_SCRAM_ITERATIONS_MAX &&
		           v.salt_len >= 1 && v.salt_len <= AUTH_SCRAM_SALT_MAX && !v.is_mock);
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > FUZZ_INPUT_MAX)
		return -1;
	if (size < 1)
		return 0;
	fuzz_init();
	uint8_t mode = data[0] == FUZZ_TLS_MODE ? FUZZ_TLS_MODE : data[0] % 4;
	data++;
	size--;
	if (mode == 3) {
		fuzz_verifier_text(data, size);
		return 0;
	}
	uint8_t options = 0;
	if (mode == FUZZ_TLS_MODE) {
		if (size < 1)
			return 0;
		options = data[0];
		data++;
		size--;
	}
	if (size < 2)
		return 0;
	size_t first_len = ((size_t)data[0] << 8) | data[1];
	data += 2;
	size -= 2;
	if (first_len > size)
		first_len = size;
	/* Copies of exactly their size, so an overread is reported. */
	size_t second_len = size - first_len;
	char *first = malloc(first_len ? first_len : 1);
	char *second = malloc(second_len ? second_len : 1);
	if (first && second) {
		memcpy(first, data, first_len);
		memcpy(second, data + first_len, second_len);
		if (mode == 0)
			fuzz_client(first, first_len, second, second_len);
		else if (mode == FUZZ_TLS_MODE)
			fuzz_server_tls(options, first, first_len, second, second_len);
		else
			fuzz_server(mode == 1 ? &fuzz_verifier : &fuzz_mock, first, first_len,
			            second, second_len);
	}
	free(first);
	free(second);
	return 0;
}
