/*
 * test_auth.c - MD5 and SCRAM-SHA-256 crypto (src/proto/auth.c).
 *
 * Known-answer tests use RFC 7677 section 3 and values computed outside this
 * code (md5sum, Python hashlib); the rest are round trips between our client
 * and our server and malformed messages that must be refused cleanly.
 */
#include "proto/auth.h"

#include <check.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * RFC 7677 section 3 test vector.  The server-final below is the RFC's
 * (also recomputed with Python hmac/hashlib); a copy of the vector that ends
 * "...wL4dDtl+Qnp9qUaG/1aVcDWZ2Z+4=" is wrong and is tested as a bad signature.
 */
#define RFC_USER         "user"
#define RFC_PASSWORD     "pencil"
#define RFC_CLIENT_NONCE "rOprNGfwEbeRWgbNEkqO"
#define RFC_SERVER_NONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC_CLIENT_FIRST "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
#define RFC_SERVER_FIRST                                                                           \
	"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
#define RFC_CLIENT_FINAL                                                                           \
	"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+"           \
	"Ute9ytag9zjf"                                                                             \
	"MHgsqmmiz7AndVQ="
#define RFC_SERVER_FINAL "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

/*
 * Verifier for "pencil" with the RFC salt and 4096 iterations, computed with
 * Python: sp = hashlib.pbkdf2_hmac('sha256', b'pencil', salt, 4096);
 * StoredKey = sha256(hmac(sp, b'Client Key')); ServerKey = hmac(sp, b'Server Key').
 */
#define RFC_VERIFIER                                                                               \
	"SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=" \
	":"                                                                                        \
	"wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="

#define SENTINEL 0x5a
#define BUF_LEN  1100

static const uint8_t mock_secret[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11,
                                        12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
                                        23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

/* True when every byte of buf still holds SENTINEL (output left untouched). */
static bool untouched(const char *buf, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)buf[i] != SENTINEL)
			return false;
	return true;
}

/* ---- MD5 ---- */

START_TEST(test_md5_hash_password_matches_md5sum)
{
	char out[AUTH_MD5_LEN];
	/* printf '%s' 'secretpostgres' | md5sum */
	ck_assert(auth_md5_hash_password("postgres", "secret", out));
	ck_assert_str_eq(out, "md553f48b7c4b76a86ce72276c5755f217d");
}
END_TEST

START_TEST(test_md5_password_matches_md5sum)
{
	const uint8_t salt[4] = {0xde, 0xad, 0xbe, 0xef};
	char out[AUTH_MD5_LEN];
	/*
	 * h=$(printf '%s' 'secretpostgres' | md5sum | cut -d' ' -f1)
	 * printf '%s\xde\xad\xbe\xef' "$h" | md5sum
	 */
	ck_assert(auth_md5_password("postgres", "secret", salt, out));
	ck_assert_str_eq(out, "md5c546d0bbed2af888b328536b45c76348");
	ck_assert(auth_md5_salt_hash("md553f48b7c4b76a86ce72276c5755f217d", salt, out));
	ck_assert_str_eq(out, "md5c546d0bbed2af888b328536b45c76348");
}
END_TEST

START_TEST(test_md5_check_response)
{
	const uint8_t salt[4] = {0xde, 0xad, 0xbe, 0xef};
	const uint8_t other_salt[4] = {0xde, 0xad, 0xbe, 0xee};
	const char *stored = "md553f48b7c4b76a86ce72276c5755f217d";
	const char *good = "md5c546d0bbed2af888b328536b45c76348";

	ck_assert(auth_md5_check_response(stored, salt, good, strlen(good)));
	ck_assert(!auth_md5_check_response(stored, other_salt, good, strlen(good)));
	ck_assert(!auth_md5_check_response(stored, salt, good, strlen(good) - 1));
	ck_assert(
	    !auth_md5_check_response(stored, salt, "md5c546d0bbed2af888b328536b45c76349", 35));
	ck_assert(!auth_md5_check_response(stored, salt, NULL, 0));
}
END_TEST

START_TEST(test_md5_rejects_bad_stored_hash)
{
	const uint8_t salt[4] = {1, 2, 3, 4};
	char out[AUTH_MD5_LEN];
	memset(out, SENTINEL, sizeof(out));
	ck_assert(!auth_md5_salt_hash("md553F48B7C4B76A86CE72276C5755F217D", salt, out));
	ck_assert(!auth_md5_salt_hash("md553f48b7c4b76a86ce72276c5755f217", salt, out));
	ck_assert(!auth_md5_salt_hash("md553f48b7c4b76a86ce72276c5755f217dd", salt, out));
	ck_assert(!auth_md5_salt_hash("xyz53f48b7c4b76a86ce72276c5755f217d", salt, out));
	ck_assert(!auth_md5_salt_hash("SCRAM-SHA-256$4096:abc", salt, out));
	ck_assert(!auth_md5_salt_hash(NULL, salt, out));
	ck_assert(!auth_md5_hash_password(NULL, "x", out));
	ck_assert(untouched(out, sizeof(out)));
}
END_TEST

/* ---- SCRAM: RFC 7677 known answers ---- */

START_TEST(test_scram_client_rfc7677_vector)
{
	auth_scram_client_t c = {0};
	char out[BUF_LEN];
	size_t used = 0;

	ck_assert(auth_scram_client_start(&c, RFC_USER, RFC_PASSWORD, RFC_CLIENT_NONCE, out,
	                                  sizeof(out), &used));
	ck_assert_str_eq(out, RFC_CLIENT_FIRST);
	ck_assert_uint_eq(used, strlen(RFC_CLIENT_FIRST));

	ck_assert(auth_scram_client_continue(&c, RFC_SERVER_FIRST, strlen(RFC_SERVER_FIRST), out,
	                                     sizeof(out), &used));
	ck_assert_str_eq(out, RFC_CLIENT_FINAL);
	ck_assert_uint_eq(used, strlen(RFC_CLIENT_FINAL));
	ck_assert_str_eq(auth_scram_client_state_name(c.state), "sent_final");

	ck_assert(auth_scram_client_finish(&c, RFC_SERVER_FINAL, strlen(RFC_SERVER_FINAL)));
	ck_assert_int_eq(c.state, AUTH_SCRAM_CLIENT_DONE);
}
END_TEST

START_TEST(test_scram_server_rfc7677_vector)
{
	auth_scram_verifier_t v;
	auth_scram_server_t s = {0};
	char out[BUF_LEN];
	size_t used = 0;
	bool ok = false;

	ck_assert(auth_scram_parse_verifier(RFC_VERIFIER, &v));
	ck_assert_int_eq(v.iterations, 4096);
	ck_assert_uint_eq(v.salt_len, 16);
	ck_assert(!v.is_mock);

	ck_assert(auth_scram_server_start(&s, &v, RFC_CLIENT_FIRST, strlen(RFC_CLIENT_FIRST),
	                                  RFC_SERVER_NONCE, out, sizeof(out), &used));
	ck_assert_str_eq(out, RFC_SERVER_FIRST);
	ck_assert_uint_eq(used, strlen(RFC_SERVER_FIRST));

	ck_assert(auth_scram_server_finish(&s, RFC_CLIENT_FINAL, strlen(RFC_CLIENT_FINAL), out,
	                                   sizeof(out), &used, &ok));
	ck_assert(ok);
	ck_assert_str_eq(out, RFC_SERVER_FINAL);
	ck_assert_uint_eq(used, strlen(RFC_SERVER_FINAL));
	ck_assert_int_eq(s.state, AUTH_SCRAM_SERVER_DONE);
}
END_TEST

START_TEST(test_scram_make_verifier_known_answer)
{
	/* base64 "W22ZaJ0SNY7soEsUEjb6gQ==" */
	const uint8_t salt[16] = {0x5b, 0x6d, 0x99, 0x68, 0x9d, 0x12, 0x35, 0x8e,
	                          0xec, 0xa0, 0x4b, 0x14, 0x12, 0x36, 0xfa, 0x81};
	char out[AUTH_SCRAM_VERIFIER_MAX];

	ck_assert(
	    auth_scram_make_verifier(RFC_PASSWORD, 4096, salt, sizeof(salt), out, sizeof(out)));
	ck_assert_str_eq(out, RFC_VERIFIER);
}
END_TEST

/* ---- SCRAM: round trips between our client and our server ---- */

/*
 * Run a PostgreSQL-style exchange (no user name, random nonces) of a client
 * holding client_password against verifier.  Returns the server's verdict
 * and whether the client then accepted the server's signature.
 */
static bool run_exchange(const auth_scram_verifier_t *v, const char *client_password,
                         bool *client_accepted)
{
	auth_scram_client_t c = {0};
	auth_scram_server_t s = {0};
	char msg[BUF_LEN], reply[BUF_LEN];
	size_t msg_len, reply_len;
	bool ok = false;

	ck_assert(
	    auth_scram_client_start(&c, NULL, client_password, NULL, msg, sizeof(msg), &msg_len));
	ck_assert_msg(strncmp(msg, "n,,n=,r=", 8) == 0, "client-first was \"%s\"", msg);
	ck_assert_uint_eq(msg_len, 8 + 24);
	ck_assert(
	    auth_scram_server_start(&s, v, msg, msg_len, NULL, reply, sizeof(reply), &reply_len));
	ck_assert(auth_scram_client_continue(&c, reply, reply_len, msg, sizeof(msg), &msg_len));
	ck_assert(
	    auth_scram_server_finish(&s, msg, msg_len, reply, sizeof(reply), &reply_len, &ok));
	*client_accepted = ok && auth_scram_client_finish(&c, reply, reply_len);
	auth_scram_client_clear(&c);
	auth_scram_server_clear(&s);
	return ok;
}

START_TEST(test_scram_round_trip_right_and_wrong_password)
{
	char text[AUTH_SCRAM_VERIFIER_MAX];
	auth_scram_verifier_t v;
	bool accepted = false;

	ck_assert(auth_scram_make_verifier("correct horse", AUTH_SCRAM_DEFAULT_ITERATIONS, NULL, 0,
	                                   text, sizeof(text)));
	ck_assert(auth_scram_parse_verifier(text, &v));
	ck_assert_uint_eq(v.salt_len, AUTH_SCRAM_DEFAULT_SALT_LEN);

	ck_assert(run_exchange(&v, "correct horse", &accepted));
	ck_assert(accepted);
	ck_assert(!run_exchange(&v, "correct horsf", &accepted));
	ck_assert(!run_exchange(&v, "", &accepted));
}
END_TEST

START_TEST(test_scram_random_salts_differ)
{
	char a[AUTH_SCRAM_VERIFIER_MAX], b[AUTH_SCRAM_VERIFIER_MAX];

	ck_assert(auth_scram_make_verifier("pw", 1, NULL, 0, a, sizeof(a)));
	ck_assert(auth_scram_make_verifier("pw", 1, NULL, 0, b, sizeof(b)));
	ck_assert_str_ne(a, b);
	ck_assert_msg(strncmp(a, "SCRAM-SHA-256$1:", 16) == 0, "verifier was \"%s\"", a);
}
END_TEST

START_TEST(test_scram_non_ascii_password_used_as_is)
{
	/* "pässwörd" in UTF-8: no SASLprep mapping applies, so as-is is right. */
	const char *password = "p\xc3\xa4ssw\xc3\xb6rd";
	char text[AUTH_SCRAM_VERIFIER_MAX];
	auth_scram_verifier_t v;
	bool accepted = false;

	ck_assert(auth_scram_make_verifier(password, 16, NULL, 0, text, sizeof(text)));
	ck_assert(auth_scram_parse_verifier(text, &v));
	ck_assert(run_exchange(&v, password, &accepted));
	ck_assert(accepted);
	ck_assert(!run_exchange(&v, "passwort", &accepted));
}
END_TEST

START_TEST(test_scram_mock_user_always_fails_and_looks_real)
{
	auth_scram_verifier_t a, b, other;
	bool accepted = true;

	ck_assert(auth_scram_mock_verifier("ghost", mock_secret, sizeof(mock_secret), 4096, &a));
	ck_assert(auth_scram_mock_verifier("ghost", mock_secret, sizeof(mock_secret), 4096, &b));
	ck_assert(
	    auth_scram_mock_verifier("ghost2", mock_secret, sizeof(mock_secret), 4096, &other));
	ck_assert(a.is_mock);
	ck_assert_int_eq(a.iterations, 4096);
	ck_assert_uint_eq(a.salt_len, AUTH_SCRAM_DEFAULT_SALT_LEN);
	ck_assert_msg(memcmp(a.salt, b.salt, a.salt_len) == 0, "same user, different mock salt");
	ck_assert_msg(memcmp(a.salt, other.salt, a.salt_len) != 0, "two users share a mock salt");

	ck_assert(!run_exchange(&a, "anything", &accepted));
	ck_assert(!accepted);
	/* A secret too short to hide anything is refused. */
	ck_assert(!auth_scram_mock_verifier("ghost", mock_secret, 8, 4096, &a));
	ck_assert(!auth_scram_mock_verifier("ghost", mock_secret, sizeof(mock_secret), 0, &a));
}
END_TEST

START_TEST(test_scram_mock_server_first_has_real_shape)
{
	auth_scram_verifier_t v;
	auth_scram_server_t s = {0};
	char out[BUF_LEN];
	size_t used;
	const char *first = "n,,n=,r=abcdefghijklmnopqrstuvwx";

	ck_assert(auth_scram_mock_verifier("ghost", mock_secret, sizeof(mock_secret), 4096, &v));
	ck_assert(
	    auth_scram_server_start(&s, &v, first, strlen(first), NULL, out, sizeof(out), &used));
	/* r= 24 + 24 chars, s= 24 chars (16 bytes), i=4096: like a real user's. */
	ck_assert_uint_eq(used, strlen("r=,s=,i=4096") + 48 + 24);
	ck_assert_msg(strncmp(out, "r=abcdefghijklmnopqrstuvwx", 26) == 0, "got \"%s\"", out);
	ck_assert_msg(strstr(out, ",i=4096") != NULL, "got \"%s\"", out);
	auth_scram_server_clear(&s);
}
END_TEST

START_TEST(test_scram_client_escapes_user_name)
{
	auth_scram_client_t c = {0};
	char out[BUF_LEN];
	size_t used;

	ck_assert(auth_scram_client_start(&c, "a,b=c", "pw", "nonce", out, sizeof(out), &used));
	ck_assert_str_eq(out, "n,,n=a=2Cb=3Dc,r=nonce");
	ck_assert(auth_scram_client_start(&c, "", "pw", "nonce", out, sizeof(out), &used));
	ck_assert_str_eq(out, "n,,n=,r=nonce");
	auth_scram_client_clear(&c);
}
END_TEST

/* ---- SCRAM client: malformed server messages ---- */

/* Start an RFC 7677 client and feed it server_first (len bytes); true if accepted. */
static bool client_accepts_server_first(const char *server_first, size_t len)
{
	auth_scram_client_t c = {0};
	char out[BUF_LEN];
	size_t used = 12345;

	ck_assert(auth_scram_client_start(&c, RFC_USER, RFC_PASSWORD, RFC_CLIENT_NONCE, out,
	                                  sizeof(out), &used));
	memset(out, SENTINEL, sizeof(out));
	used = 12345;
	bool accepted = auth_scram_client_continue(&c, server_first, len, out, sizeof(out), &used);
	if (!accepted) {
		ck_assert_msg(untouched(out, sizeof(out)), "output written on failure");
		ck_assert_uint_eq(used, 12345);
		ck_assert_int_eq(c.state, AUTH_SCRAM_CLIENT_FAILED);
		/* A failed exchange stays failed. */
		ck_assert(!auth_scram_client_continue(
		    &c, RFC_SERVER_FIRST, strlen(RFC_SERVER_FIRST), out, sizeof(out), &used));
		ck_assert(
		    !auth_scram_client_finish(&c, RFC_SERVER_FINAL, strlen(RFC_SERVER_FINAL)));
	}
	auth_scram_client_clear(&c);
	return accepted;
}

START_TEST(test_scram_client_rejects_malformed_server_first)
{
#define R "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define S "s=W22ZaJ0SNY7soEsUEjb6gQ=="
	static const char *const bad[] = {
	    "",
	    S ",i=4096",                                     /* missing nonce */
	    R ",i=4096",                                     /* missing salt */
	    R "," S,                                         /* missing iterations */
	    R "," S ",",                                     /* empty attribute */
	    S "," R ",i=4096",                               /* wrong order */
	    R ",i=4096," S,                                  /* wrong order */
	    "m=ext," R "," S ",i=4096",                      /* reserved mandatory extension */
	    R "," S ",i=4096,x=1",                           /* extensions (libpq refuses) */
	    R "," S ",i=4096,",                              /* trailing comma */
	    R ",s=W22ZaJ0SNY7soEsUEjb6gQ=,i=4096",           /* base64 length */
	    R ",s=W22ZaJ0SNY7soEsUEjb6g===,i=4096",          /* base64 padding */
	    R ",s=W22ZaJ0SNY7soEsUEjb6gR==,i=4096",          /* non-canonical bits */
	    R ",s=W22ZaJ0SNY7soEsU!jb6gQ==,i=4096",          /* base64 alphabet */
	    R ",s= W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",         /* whitespace */
	    R ",s=,i=4096",                                  /* empty salt */
	    R ",s=====,i=4096",                              /* only padding */
	    R "," S ",i=0",                                  /* zero iterations */
	    R "," S ",i=10000001",                           /* above the cap */
	    R "," S ",i=99999999999999999999",               /* overflow */
	    R "," S ",i=-4096",                              /* negative */
	    R "," S ",i=+4096",                              /* sign */
	    R "," S ",i=04096",                              /* leading zero */
	    R "," S ",i=4096x",                              /* trailing junk */
	    R "," S ",i= 4096",                              /* space */
	    R "," S ",i=",                                   /* empty */
	    "r=rOprNGfwEbeRWgbNEkqO," S ",i=4096",           /* no server nonce part */
	    "r=rOprNGfwEbeRWgbNEkq," S ",i=4096",            /* shorter nonce */
	    "r=XOprNGfwEbeRWgbNEkqO%hvYDpWUa2," S ",i=4096", /* nonce mismatch */
	    "r=rOprNGfwEbeRWgbNEkqO\x7f," S ",i=4096",       /* non-printable nonce */
	    "r=rOprNGfwEbeRWgbNEkqO\xc3\xa4," S ",i=4096",   /* non-ASCII nonce */
	    "R=rOprNGfwEbeRWgbNEkqO%hvYD," S ",i=4096",      /* attribute case */
	    "rrOprNGfwEbeRWgbNEkqO%hvYD," S ",i=4096",       /* missing '=' */
	    "e=other-error",                                 /* error instead */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(!client_accepts_server_first(bad[i], strlen(bad[i])),
		              "accepted server-first #%zu \"%s\"", i, bad[i]);

	/* Embedded NUL, counted in the length. */
	static const char with_nul[] = R "," S ",i=4096\0";
	ck_assert(!client_accepts_server_first(with_nul, sizeof(with_nul) - 1));
	static const char nul_in_nonce[] = "r=rOprNGfwEbeRWgbNEkqO\0abc," S ",i=4096";
	ck_assert(!client_accepts_server_first(nul_in_nonce, sizeof(nul_in_nonce) - 1));

	/* Over-long message and over-long nonce. */
	char big[AUTH_SCRAM_MESSAGE_MAX + 128];
	int n = snprintf(big, sizeof(big), "r=rOprNGfwEbeRWgbNEkqO%0*d," S ",i=4096",
	                 AUTH_SCRAM_MESSAGE_MAX, 7);
	ck_assert(n > AUTH_SCRAM_MESSAGE_MAX && (size_t)n < sizeof(big));
	ck_assert(!client_accepts_server_first(big, (size_t)n));
	n = snprintf(big, sizeof(big), "r=rOprNGfwEbeRWgbNEkqO%0*d," S ",i=4096",
	             AUTH_SCRAM_NONCE_MAX, 7);
	ck_assert(!client_accepts_server_first(big, (size_t)n));
	ck_assert(!client_accepts_server_first(NULL, 10));
#undef R
#undef S
}
END_TEST

START_TEST(test_scram_client_rejects_truncated_server_first)
{
	const char *full = RFC_SERVER_FIRST;
	size_t len = strlen(full);
	size_t iter_value_at = (size_t)(strstr(full, ",i=") - full) + 3;

	/* Every prefix that cuts before the iteration digits is incomplete. */
	for (size_t n = 0; n <= iter_value_at; n++)
		ck_assert_msg(!client_accepts_server_first(full, n), "accepted %zu-byte prefix", n);
	/* Prefixes inside "4096" are valid messages with fewer iterations. */
	for (size_t n = iter_value_at + 1; n <= len; n++)
		ck_assert(client_accepts_server_first(full, n));
}
END_TEST

START_TEST(test_scram_client_survives_corrupted_server_first)
{
	/* Flip every byte to a few values: no crash, and no accept of a broken nonce. */
	static const char flips[] = {'\0', ',', '=', 'x', '\xff'};
	char msg[sizeof(RFC_SERVER_FIRST)];
	size_t len = strlen(RFC_SERVER_FIRST);

	for (size_t i = 0; i < len; i++) {
		for (size_t f = 0; f < sizeof(flips); f++) {
			memcpy(msg, RFC_SERVER_FIRST, sizeof(msg));
			if (msg[i] == flips[f])
				continue;
			msg[i] = flips[f];
			bool accepted = client_accepts_server_first(msg, len);
			if (i < 2 + strlen(RFC_CLIENT_NONCE))
				ck_assert_msg(!accepted, "accepted corrupted nonce at %zu", i);
		}
	}
}
END_TEST

/* Run the RFC client to SENT_FINAL and feed it server_final; true if accepted. */
static bool client_accepts_server_final(const char *server_final, size_t len)
{
	auth_scram_client_t c = {0};
	char out[BUF_LEN];
	size_t used;

	ck_assert(auth_scram_client_start(&c, RFC_USER, RFC_PASSWORD, RFC_CLIENT_NONCE, out,
	                                  sizeof(out), &used));
	ck_assert(auth_scram_client_continue(&c, RFC_SERVER_FIRST, strlen(RFC_SERVER_FIRST), out,
	                                     sizeof(out), &used));
	bool accepted = auth_scram_client_finish(&c, server_final, len);
	ck_assert_int_eq(c.state, accepted ? AUTH_SCRAM_CLIENT_DONE : AUTH_SCRAM_CLIENT_FAILED);
	auth_scram_client_clear(&c);
	return accepted;
}

START_TEST(test_scram_client_rejects_bad_server_final)
{
	static const char *const bad[] = {
	    "",
	    "e=invalid-proof",
	    "e=other-error",
	    "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G5=",     /* non-canonical */
	    "v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",     /* wrong signature */
	    "v=6rriTRBi23WpRR/wL4dDtl+Qnp9qUaG/1aVcDWZ2Z+4=",     /* wrong signature */
	    "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4",      /* bad base64 */
	    "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJR",             /* short signature */
	    "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=,x=1", /* extension */
	    "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=,",    /* trailing comma */
	    "V=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",     /* attribute case */
	    "v=",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(!client_accepts_server_final(bad[i], strlen(bad[i])),
		              "accepted server-final \"%s\"", bad[i]);
	static const char with_nul[] = RFC_SERVER_FINAL "\0";
	ck_assert(!client_accepts_server_final(with_nul, sizeof(with_nul) - 1));
	ck_assert(client_accepts_server_final(RFC_SERVER_FINAL, strlen(RFC_SERVER_FINAL)));
}
END_TEST

START_TEST(test_scram_client_enforces_order)
{
	auth_scram_client_t c = {0};
	char out[BUF_LEN];
	size_t used;

	ck_assert(!auth_scram_client_continue(&c, RFC_SERVER_FIRST, strlen(RFC_SERVER_FIRST), out,
	                                      sizeof(out), &used));
	ck_assert_int_eq(c.state, AUTH_SCRAM_CLIENT_FAILED);
	ck_assert(auth_scram_client_start(&c, RFC_USER, RFC_PASSWORD, RFC_CLIENT_NONCE, out,
	                                  sizeof(out), &used));
	ck_assert(!auth_scram_client_finish(&c, RFC_SERVER_FINAL, strlen(RFC_SERVER_FINAL)));
	ck_assert_str_eq(auth_scram_client_state_name(c.state), "failed");
}
END_TEST

START_TEST(test_scram_client_start_checks_inputs)
{
	auth_scram_client_t c = {0};
	char out[BUF_LEN];
	char small[16];
	size_t used = 99;
	char long_password[AUTH_PASSWORD_MAX + 2];

	memset(long_password, 'p', sizeof(long_password) - 1);
	long_password[sizeof(long_password) - 1] = '\0';
	memset(out, SENTINEL, sizeof(out));
	ck_assert(!auth_scram_client_start(&c, NULL, long_password, NULL, out, sizeof(out), &used));
	ck_assert(!auth_scram_client_start(&c, NULL, NULL, NULL, out, sizeof(out), &used));
	ck_assert(!auth_scram_client_start(&c, NULL, "pw", "", out, sizeof(out), &used));
	ck_assert(!auth_scram_client_start(&c, NULL, "pw", "a,b", out, sizeof(out), &used));
	ck_assert(!auth_scram_client_start(&c, NULL, "pw", "a b", out, sizeof(out), &used));
	ck_assert(untouched(out, sizeof(out)));
	memset(small, SENTINEL, sizeof(small));
	ck_assert(!auth_scram_client_start(&c, NULL, "pw", NULL, small, sizeof(small), &used));
	ck_assert(untouched(small, sizeof(small)));
	ck_assert_uint_eq(used, 99);
	ck_assert(!auth_scram_client_start(NULL, NULL, "pw", NULL, out, sizeof(out), &used));
}
END_TEST

/* ---- SCRAM server: malformed client messages ---- */

static bool server_accepts_client_first(const char *client_first, size_t len)
{
	auth_scram_verifier_t v;
	auth_scram_server_t s = {0};
	char out[BUF_LEN];
	size_t used = 777;

	ck_assert(auth_scram_parse_verifier(RFC_VERIFIER, &v));
	memset(out, SENTINEL, sizeof(out));
	bool accepted =
	    auth_scram_server_start(&s, &v, client_first, len, NULL, out, sizeof(out), &used);
	if (!accepted) {
		ck_assert(untouched(out, sizeof(out)));
		ck_assert_uint_eq(used, 777);
		ck_assert_int_eq(s.state, AUTH_SCRAM_SERVER_FAILED);
	}
	auth_scram_server_clear(&s);
	return accepted;
}

START_TEST(test_scram_server_client_first_flags)
{
	static const char *const good[] = {
	    "n,,n=,r=abc",       "y,,n=,r=abc", /* client could bind, we offer no -PLUS */
	    "n,,n=user,r=abc",                  /* user is ignored */
	    "n,,n=*,r=abc",                     /* pgjdbc-style user */
	    "n,,n=,r=abc,x=ext",                /* optional extension */
	};
	static const char *const bad[] = {
	    "",
	    "n",
	    "n,",
	    "n,,",
	    "p=tls-server-end-point,,n=,r=abc", /* channel binding: not yet */
	    "n,a=admin,n=,r=abc",               /* authzid */
	    "x,,n=,r=abc",
	    "N,,n=,r=abc",
	    "n,,m=ext,n=,r=abc", /* reserved mandatory extension */
	    "n,,r=abc",          /* missing user */
	    "n,,n=,r=",          /* empty nonce */
	    "n,,n=,r=a b",       /* non-printable nonce */
	    "n,,n=,r=abc,",      /* trailing comma */
	    "n,,n=,r=abc,x",     /* broken extension */
	    "n,,n=,n=,r=abc",
	    "n,,n=,x=abc",
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		ck_assert_msg(server_accepts_client_first(good[i], strlen(good[i])),
		              "refused client-first \"%s\"", good[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(!server_accepts_client_first(bad[i], strlen(bad[i])),
		              "accepted client-first \"%s\"", bad[i]);
	static const char with_nul[] = "n,,n=\0,r=abc";
	ck_assert(!server_accepts_client_first(with_nul, sizeof(with_nul) - 1));

	/* A client nonce too long to fit with ours. */
	char big[AUTH_SCRAM_NONCE_MAX + 32];
	int n = snprintf(big, sizeof(big), "n,,n=,r=%0*d", AUTH_SCRAM_NONCE_MAX - 10, 1);
	ck_assert(!server_accepts_client_first(big, (size_t)n));
	ck_assert(!server_accepts_client_first(NULL, 5));
}
END_TEST

/* RFC server started with the RFC client-first; feed it client_final. */
static bool server_accepts_client_final(const char *client_final, size_t len, bool *ok)
{
	auth_scram_verifier_t v;
	auth_scram_server_t s = {0};
	char out[BUF_LEN];
	size_t used;

	ck_assert(auth_scram_parse_verifier(RFC_VERIFIER, &v));
	ck_assert(auth_scram_server_start(&s, &v, RFC_CLIENT_FIRST, strlen(RFC_CLIENT_FIRST),
	                                  RFC_SERVER_NONCE, out, sizeof(out), &used));
	memset(out, SENTINEL, sizeof(out));
	used = 555;
	*ok = false;
	bool parsed = auth_scram_server_finish(&s, client_final, len, out, sizeof(out), &used, ok);
	if (!parsed || !*ok) {
		ck_assert(untouched(out, sizeof(out)));
		ck_assert_uint_eq(used, parsed ? 0 : 555);
	}
	ck_assert_int_eq(s.state, parsed ? AUTH_SCRAM_SERVER_DONE : AUTH_SCRAM_SERVER_FAILED);
	auth_scram_server_clear(&s);
	return parsed;
}

START_TEST(test_scram_server_rejects_bad_client_final)
{
#define RN "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define P  "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
	static const char *const malformed[] = {
	    "",
	    "c=eSws," RN "," P,                             /* "y,," binding, we agreed "n,," */
	    "c=cD10bHMtc2VydmVyLWVuZC1wb2ludCws," RN "," P, /* p=tls-server-end-point,, */
	    "c=biw," RN "," P,                              /* bad base64 */
	    "c=," RN "," P,
	    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k1," P, /* nonce */
	    "c=biws,r=rOprNGfwEbeRWgbNEkqO," P,                               /* nonce */
	    "c=biws," RN,                                                     /* no proof */
	    "c=biws," RN ",x=1",                                              /* no proof */
	    "c=biws," RN "," P ",x=1",                                        /* proof not last */
	    "c=biws," RN "," P ",",                                           /* trailing comma */
	    "c=biws," RN ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndQ==",   /* short */
	    "c=biws," RN ",p=",
	    RN ",c=biws," P, /* order */
	    "c=biws," P "," RN,
	};
	bool ok;
	for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++)
		ck_assert_msg(!server_accepts_client_final(malformed[i], strlen(malformed[i]), &ok),
		              "accepted client-final \"%s\"", malformed[i]);
	static const char with_nul[] = RFC_CLIENT_FINAL "\0";
	ck_assert(!server_accepts_client_final(with_nul, sizeof(with_nul) - 1, &ok));

	/* Well-formed, wrong proof: parsed, refused. */
	static const char wrong[] = "c=biws," RN ",p=eHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
	ck_assert(server_accepts_client_final(wrong, strlen(wrong), &ok));
	ck_assert(!ok);
	/* An extension before the proof is allowed but is part of AuthMessage. */
	static const char ext[] = "c=biws," RN ",x=1," P;
	ck_assert(server_accepts_client_final(ext, strlen(ext), &ok));
	ck_assert(!ok);
	ck_assert(server_accepts_client_final(RFC_CLIENT_FINAL, strlen(RFC_CLIENT_FINAL), &ok));
	ck_assert(ok);
#undef RN
#undef P
}
END_TEST

START_TEST(test_scram_server_enforces_order_and_output_room)
{
	auth_scram_verifier_t v;
	auth_scram_server_t s = {0};
	char out[BUF_LEN];
	size_t used;
	bool ok = true;

	ck_assert(auth_scram_parse_verifier(RFC_VERIFIER, &v));
	ck_assert(!auth_scram_server_finish(&s, RFC_CLIENT_FINAL, strlen(RFC_CLIENT_FINAL), out,
	                                    sizeof(out), &used, &ok));
	ck_assert(ok); /* untouched */
	ck_assert_str_eq(auth_scram_server_state_name(s.state), "failed");

	ck_assert(auth_scram_server_start(&s, &v, RFC_CLIENT_FIRST, strlen(RFC_CLIENT_FIRST),
	                                  RFC_SERVER_NONCE, out, sizeof(out), &used));
	ck_assert(!auth_scram_server_finish(&s, RFC_CLIENT_FINAL, strlen(RFC_CLIENT_FINAL), out,
	                                    AUTH_SCRAM_SERVER_FINAL_MAX - 1, &used, &ok));
	/* server-first does not fit: refused, nothing written. */
	char small[32];
	memset(small, SENTINEL, sizeof(small));
	ck_assert(!auth_scram_server_start(&s, &v, RFC_CLIENT_FIRST, strlen(RFC_CLIENT_FIRST),
	                                   RFC_SERVER_NONCE, small, sizeof(small), &used));
	ck_assert(untouched(small, sizeof(small)));
	ck_assert(!auth_scram_server_start(&s, NULL, RFC_CLIENT_FIRST, strlen(RFC_CLIENT_FIRST),
	                                   NULL, out, sizeof(out), &used));
	/* A replayed client-final after DONE is refused. */
	ck_assert(auth_scram_server_start(&s, &v, RFC_CLIENT_FIRST, strlen(RFC_CLIENT_FIRST),
	                                  RFC_SERVER_NONCE, out, sizeof(out), &used));
	ck_assert(auth_scram_server_finish(&s, RFC_CLIENT_FINAL, strlen(RFC_CLIENT_FINAL), out,
	                                   sizeof(out), &used, &ok));
	ck_assert(ok);
	ck_assert(!auth_scram_server_finish(&s, RFC_CLIENT_FINAL, strlen(RFC_CLIENT_FINAL), out,
	                                    sizeof(out), &used, &ok));
}
END_TEST

/* ---- verifiers ---- */

START_TEST(test_scram_parse_verifier_rejects_malformed)
{
	static const char *const bad[] = {
	    "",
	    "md553f48b7c4b76a86ce72276c5755f217d",
	    "SCRAM-SHA-1$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
	    ":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
	    "SCRAM-SHA-256$0:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
	    ":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
	    "SCRAM-SHA-256$x:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
	    ":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
	    "SCRAM-SHA-256$4096:$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
	    ":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
	    "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"
	    "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4q="
	    ":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=", /* short StoredKey */
	    "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"
	    "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=",
	    "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"
	    "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
	    ":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=:",
	    "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"
	    "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
	    ":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU= ",
	    "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==:"
	    "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
	    "$wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
	};
	auth_scram_verifier_t v;
	memset(&v, SENTINEL, sizeof(v));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(!auth_scram_parse_verifier(bad[i], &v), "accepted verifier #%zu", i);
	ck_assert(!auth_scram_parse_verifier(NULL, &v));
	ck_assert(untouched((const char *)&v, sizeof(v)));

	char long_text[AUTH_SCRAM_VERIFIER_MAX + 8];
	memset(long_text, 'A', sizeof(long_text) - 1);
	long_text[sizeof(long_text) - 1] = '\0';
	memcpy(long_text, "SCRAM-SHA-256$4096:", 19);
	ck_assert(!auth_scram_parse_verifier(long_text, &v));
}
END_TEST

START_TEST(test_scram_make_verifier_checks_inputs)
{
	const uint8_t salt[AUTH_SCRAM_SALT_MAX + 1] = {0};
	char out[AUTH_SCRAM_VERIFIER_MAX];
	char small[64];

	memset(out, SENTINEL, sizeof(out));
	ck_assert(!auth_scram_make_verifier("", 4096, NULL, 0, out, sizeof(out)));
	ck_assert(!auth_scram_make_verifier(NULL, 4096, NULL, 0, out, sizeof(out)));
	ck_assert(!auth_scram_make_verifier("pw", 0, NULL, 0, out, sizeof(out)));
	ck_assert(!auth_scram_make_verifier("pw", AUTH_SCRAM_ITERATIONS_MAX + 1, NULL, 0, out,
	                                    sizeof(out)));
	ck_assert(!auth_scram_make_verifier("pw", 1, salt, 0, out, sizeof(out)));
	ck_assert(!auth_scram_make_verifier("pw", 1, salt, sizeof(salt), out, sizeof(out)));
	ck_assert(untouched(out, sizeof(out)));
	memset(small, SENTINEL, sizeof(small));
	ck_assert(!auth_scram_make_verifier("pw", 1, NULL, 0, small, sizeof(small)));
	ck_assert(untouched(small, sizeof(small)));

	/* The largest salt still fits and parses back. */
	auth_scram_verifier_t v;
	ck_assert(auth_scram_make_verifier("pw", AUTH_SCRAM_ITERATIONS_MAX / 100000, salt,
	                                   AUTH_SCRAM_SALT_MAX, out, sizeof(out)));
	ck_assert(auth_scram_parse_verifier(out, &v));
	ck_assert_uint_eq(v.salt_len, AUTH_SCRAM_SALT_MAX);
	ck_assert_int_eq(v.iterations, 100);
}
END_TEST

/* ---- SCRAM over TLS: channel binding (SCRAM-SHA-256-PLUS, RFC 5802 + RFC 5929) ---- */

/*
 * auth.c's own client never binds ("n,,"), so these tests play the client
 * with a second implementation written straight from RFC 5802 section 3 on
 * OpenSSL (PKCS5_PBKDF2_HMAC, HMAC, EVP_Digest, EVP_EncodeBlock); it is
 * checked against the RFC 7677 vector first.  The server side holds the
 * RFC verifier ("pencil", RFC salt, 4096 iterations).
 */
#define CB_HEADER        "p=tls-server-end-point,,"
#define TLS_CLIENT_NONCE "fyko+d2lbbFgONRv9qkxdawL"
#define TLS_SERVER_NONCE "3rfcNHYJY1ZVvWVs7j"
#define TLS_FIRST_BARE   "n=,r=" TLS_CLIENT_NONCE
#define USED_UNTOUCHED   ((size_t)4242)

/* base64 (OpenSSL's encoder, not auth.c's) of n bytes into out, NUL-terminated. */
static void test_b64(const void *in, size_t n, char *out, size_t outlen)
{
	ck_assert_uint_ge(outlen, (n + 2) / 3 * 4 + 1);
	ck_assert_int_eq(EVP_EncodeBlock((unsigned char *)out, in, (int)n), (int)((n + 2) / 3 * 4));
}

static void test_hmac_sha256(const uint8_t *key, size_t key_len, const void *data, size_t len,
                             uint8_t out[AUTH_SCRAM_KEY_LEN])
{
	unsigned int n = 0;
	ck_assert_ptr_nonnull(HMAC(EVP_sha256(), key, (int)key_len, data, len, out, &n));
	ck_assert_uint_eq(n, AUTH_SCRAM_KEY_LEN);
}

/*
 * The client side of RFC 5802 section 3, given client-first-message-bare
 * and the server's server-first-message "r=..,s=..,i=..": writes
 * client-final-message "c=<base64(cbind_input)>,r=<nonce>,p=<proof>" for
 * password, and the server-final-message "v=..." the server must answer.
 * The proof covers whatever c= carries, so a server that refuses the
 * message can only be refusing its channel binding.
 */
static void rfc5802_client_final(const char *password, const char *first_bare,
                                 const char *server_first, const void *cbind_input,
                                 size_t cbind_input_len, char *final, size_t final_len,
                                 char *server_final, size_t server_final_len)
{
	const char *s_attr = strstr(server_first, ",s=");
	const char *i_attr = strstr(server_first, ",i=");
	ck_assert_msg(strncmp(server_first, "r=", 2) == 0 && s_attr != NULL && i_attr != NULL &&
	                  s_attr < i_attr,
	              "server-first was \"%s\"", server_first);
	const char *nonce = server_first + 2;
	int nonce_len = (int)(s_attr - nonce);
	const char *salt_b64 = s_attr + 3;
	int salt_b64_len = (int)(i_attr - salt_b64);
	uint8_t salt[AUTH_SCRAM_SALT_MAX + 3];
	ck_assert_int_le(salt_b64_len / 4 * 3, (int)sizeof(salt));
	int salt_len = EVP_DecodeBlock(salt, (const unsigned char *)salt_b64, salt_b64_len);
	ck_assert_int_gt(salt_len, 0);
	for (int k = salt_b64_len - 1; k >= 0 && salt_b64[k] == '='; k--)
		salt_len--; /* EVP_DecodeBlock counts the padding as zero bytes */
	int iterations = atoi(i_attr + 3);
	ck_assert_int_gt(iterations, 0);

	uint8_t salted[AUTH_SCRAM_KEY_LEN], client_key[AUTH_SCRAM_KEY_LEN];
	uint8_t stored_key[AUTH_SCRAM_KEY_LEN], server_key[AUTH_SCRAM_KEY_LEN];
	uint8_t client_signature[AUTH_SCRAM_KEY_LEN], server_signature[AUTH_SCRAM_KEY_LEN];
	unsigned int digest_len = 0;
	ck_assert_int_eq(PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, salt_len,
	                                   iterations, EVP_sha256(), AUTH_SCRAM_KEY_LEN, salted),
	                 1);
	test_hmac_sha256(salted, sizeof(salted), "Client Key", 10, client_key);
	ck_assert_int_eq(
	    EVP_Digest(client_key, sizeof(client_key), stored_key, &digest_len, EVP_sha256(), NULL),
	    1);
	test_hmac_sha256(salted, sizeof(salted), "Server Key", 10, server_key);

	char cbind_b64[256];
	test_b64(cbind_input, cbind_input_len, cbind_b64, sizeof(cbind_b64));
	int no_proof_len = snprintf(final, final_len, "c=%s,r=%.*s", cbind_b64, nonce_len, nonce);
	ck_assert(no_proof_len > 0 && (size_t)no_proof_len < final_len);

	/* AuthMessage = client-first-bare "," server-first "," client-final-without-proof */
	char auth_message[3 * BUF_LEN];
	int auth_len = snprintf(auth_message, sizeof(auth_message), "%s,%s,%s", first_bare,
	                        server_first, final);
	ck_assert(auth_len > 0 && (size_t)auth_len < sizeof(auth_message));
	test_hmac_sha256(stored_key, sizeof(stored_key), auth_message, (size_t)auth_len,
	                 client_signature);
	test_hmac_sha256(server_key, sizeof(server_key), auth_message, (size_t)auth_len,
	                 server_signature);

	uint8_t proof[AUTH_SCRAM_KEY_LEN];
	char b64[64];
	for (size_t k = 0; k < sizeof(proof); k++)
		proof[k] = client_key[k] ^ client_signature[k];
	test_b64(proof, sizeof(proof), b64, sizeof(b64));
	int n = snprintf(final + no_proof_len, final_len - (size_t)no_proof_len, ",p=%s", b64);
	ck_assert(n > 0 && (size_t)n < final_len - (size_t)no_proof_len);
	test_b64(server_signature, sizeof(server_signature), b64, sizeof(b64));
	n = snprintf(server_final, server_final_len, "v=%s", b64);
	ck_assert(n > 0 && (size_t)n < server_final_len);
}

/* A stand-in for a certificate's tls-server-end-point hash: md("fake cert"). */
static size_t fake_cert_hash(const EVP_MD *md, uint8_t out[AUTH_SCRAM_CBIND_MAX])
{
	static const char der[] = "a certificate the client saw in its TLS handshake";
	unsigned int n = 0;
	ck_assert_int_eq(EVP_Digest(der, sizeof(der) - 1, out, &n, md, NULL), 1);
	ck_assert_uint_le(n, AUTH_SCRAM_CBIND_MAX);
	return n;
}

typedef struct {
	bool started;         /* auth_scram_server_start_tls accepted client-first */
	bool parsed;          /* auth_scram_server_finish returned true */
	bool ok;              /* ... and accepted the proof */
	bool signature_right; /* ... and answered the v= the client expects */
	auth_scram_server_state_t state;
} tls_exchange_t;

/*
 * One exchange over a TLS connection whose tls-server-end-point data is
 * (cbind, cbind_len); plus: the client chose SCRAM-SHA-256-PLUS.  The
 * client sends gs2_header + TLS_FIRST_BARE, then a client-final whose c=
 * is base64(client_header + client_data) (client_header NULL: gs2_header)
 * with a proof for password.  Also checks auth.h's conventions on the way:
 * outputs untouched on failure, a refused exchange stays refused.
 */
static tls_exchange_t run_tls_exchange(const uint8_t *cbind, size_t cbind_len, bool plus,
                                       const char *gs2_header, const char *client_header,
                                       const uint8_t *client_data, size_t client_data_len,
                                       const char *password)
{
	tls_exchange_t r = {0};
	auth_scram_verifier_t v;
	auth_scram_server_t s = {0};
	char first[BUF_LEN], out[BUF_LEN], final[BUF_LEN], expected_final[BUF_LEN];
	uint8_t cbind_input[AUTH_SCRAM_GS2_HEADER_MAX + AUTH_SCRAM_CBIND_MAX + 8];
	size_t used = USED_UNTOUCHED;
	bool ok = false;

	ck_assert(auth_scram_parse_verifier(RFC_VERIFIER, &v));
	int first_len = snprintf(first, sizeof(first), "%s" TLS_FIRST_BARE, gs2_header);
	ck_assert(first_len > 0 && (size_t)first_len < sizeof(first));
	memset(out, SENTINEL, sizeof(out));
	r.started =
	    auth_scram_server_start_tls(&s, &v, cbind, cbind_len, plus, first, (size_t)first_len,
	                                TLS_SERVER_NONCE, out, sizeof(out), &used);
	r.state = s.state;
	if (!r.started) {
		ck_assert_msg(untouched(out, sizeof(out)), "server-first written on refusal");
		ck_assert_uint_eq(used, USED_UNTOUCHED);
		ck_assert_int_eq(s.state, AUTH_SCRAM_SERVER_FAILED);
		ck_assert(!auth_scram_server_finish(&s, "c=biws,r=x,p=x", 14, out, sizeof(out),
		                                    &used, &ok));
		return r;
	}
	ck_assert_int_eq(s.state, AUTH_SCRAM_SERVER_SENT_FIRST);
	ck_assert_uint_eq(used, strlen(out));
	ck_assert_msg(strncmp(out, "r=" TLS_CLIENT_NONCE TLS_SERVER_NONCE ",s=", 2 + 24 + 18 + 3) ==
	                  0,
	              "server-first was \"%s\"", out);

	const char *header = client_header != NULL ? client_header : gs2_header;
	size_t header_len = strlen(header);
	ck_assert_uint_le(header_len + client_data_len, sizeof(cbind_input));
	memcpy(cbind_input, header, header_len);
	if (client_data_len > 0)
		memcpy(cbind_input + header_len, client_data, client_data_len);
	rfc5802_client_final(password, TLS_FIRST_BARE, out, cbind_input,
	                     header_len + client_data_len, final, sizeof(final), expected_final,
	                     sizeof(expected_final));

	memset(out, SENTINEL, sizeof(out));
	used = USED_UNTOUCHED;
	r.parsed = auth_scram_server_finish(&s, final, strlen(final), out, sizeof(out), &used, &ok);
	r.state = s.state;
	r.ok = r.parsed && ok;
	if (!r.parsed) {
		ck_assert_msg(untouched(out, sizeof(out)), "server-final written on refusal");
		ck_assert_uint_eq(used, USED_UNTOUCHED);
		ck_assert_int_eq(s.state, AUTH_SCRAM_SERVER_FAILED);
	} else if (!ok) {
		ck_assert_msg(untouched(out, sizeof(out)),
		              "server-final written for a wrong proof");
		ck_assert_uint_eq(used, 0);
	} else {
		ck_assert_uint_eq(used, strlen(out));
		r.signature_right = strcmp(out, expected_final) == 0;
	}
	/* Whatever happened, the exchange is over: a replay is refused. */
	ck_assert(
	    !auth_scram_server_finish(&s, final, strlen(final), out, sizeof(out), &used, &ok));
	auth_scram_server_clear(&s);
	return r;
}

START_TEST(test_scram_test_client_matches_rfc7677)
{
	char final[BUF_LEN], server_final[BUF_LEN];

	/* The test's own client, on the RFC 7677 exchange (gs2 "n,,", no binding). */
	rfc5802_client_final(RFC_PASSWORD, "n=user,r=" RFC_CLIENT_NONCE, RFC_SERVER_FIRST, "n,,", 3,
	                     final, sizeof(final), server_final, sizeof(server_final));
	ck_assert_str_eq(final, RFC_CLIENT_FINAL);
	ck_assert_str_eq(server_final, RFC_SERVER_FINAL);
}
END_TEST

START_TEST(test_scram_plus_right_binding_succeeds)
{
	/* tls-server-end-point hashes with the certificate's own digest (RFC 5929 4.1). */
	const EVP_MD *const mds[] = {EVP_sha256(), EVP_sha384(), EVP_sha512()};
	uint8_t hash[AUTH_SCRAM_CBIND_MAX];

	for (size_t i = 0; i < sizeof(mds) / sizeof(mds[0]); i++) {
		size_t n = fake_cert_hash(mds[i], hash);
		tls_exchange_t r =
		    run_tls_exchange(hash, n, true, CB_HEADER, NULL, hash, n, RFC_PASSWORD);
		ck_assert_msg(r.started, "client-first refused with a %zu-byte hash", n);
		ck_assert_msg(r.parsed, "client-final refused with the right %zu-byte binding", n);
		ck_assert_msg(r.ok, "proof refused with the right %zu-byte binding", n);
		ck_assert_msg(r.signature_right, "wrong server signature (%zu-byte binding)", n);
		ck_assert_int_eq(r.state, AUTH_SCRAM_SERVER_DONE);
	}

	/* Right binding, wrong password: parsed, proof refused (28P01, not 08P01). */
	size_t n = fake_cert_hash(EVP_sha256(), hash);
	tls_exchange_t r = run_tls_exchange(hash, n, true, CB_HEADER, NULL, hash, n, "pencil2");
	ck_assert(r.started);
	ck_assert(r.parsed);
	ck_assert(!r.ok);
	ck_assert_int_eq(r.state, AUTH_SCRAM_SERVER_DONE);
}
END_TEST

START_TEST(test_scram_plus_wrong_binding_refused)
{
	uint8_t hash[AUTH_SCRAM_CBIND_MAX], other[AUTH_SCRAM_CBIND_MAX + 1];
	size_t n = fake_cert_hash(EVP_sha256(), hash);
	const struct {
		const char *what;
		const char *header; /* gs2 header inside c=; NULL: the client-first's */
		size_t data_len;    /* bytes of the hash (then a 0x00) that follow it */
		size_t flip_at;     /* index of a byte to change, or SIZE_MAX */
	} cases[] = {
	    {"first byte changed", NULL, n, 0},
	    {"last byte changed", NULL, n, n - 1},
	    {"one byte short", NULL, n - 1, SIZE_MAX},
	    {"one byte extra", NULL, n + 1, SIZE_MAX},
	    {"no binding data", NULL, 0, SIZE_MAX},
	    {"\"n,,\" header in c=", "n,,", n, SIZE_MAX},
	    {"\"y,,\" header in c=", "y,,", n, SIZE_MAX},
	    {"other cb-name in c=", "p=tls-unique,,", n, SIZE_MAX},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memcpy(other, hash, n);
		other[n] = 0x00;
		if (cases[i].flip_at != SIZE_MAX)
			other[cases[i].flip_at] ^= 0x01;
		tls_exchange_t r = run_tls_exchange(hash, n, true, CB_HEADER, cases[i].header,
		                                    other, cases[i].data_len, RFC_PASSWORD);
		ck_assert_msg(r.started, "%s: client-first refused", cases[i].what);
		ck_assert_msg(!r.parsed, "%s: client-final with a wrong binding accepted",
		              cases[i].what);
		ck_assert_int_eq(r.state, AUTH_SCRAM_SERVER_FAILED);
	}

	/* The certificate hashed with another digest: a different certificate to us. */
	size_t n384 = fake_cert_hash(EVP_sha384(), other);
	tls_exchange_t r =
	    run_tls_exchange(hash, n, true, CB_HEADER, NULL, other, n384, RFC_PASSWORD);
	ck_assert(r.started);
	ck_assert_msg(!r.parsed, "a SHA-384 binding accepted for a SHA-256 certificate hash");
}
END_TEST

START_TEST(test_scram_tls_y_flag_refused_as_downgrade)
{
	uint8_t hash[AUTH_SCRAM_CBIND_MAX];
	size_t n = fake_cert_hash(EVP_sha256(), hash);

	/* Without TLS "y" is fine: -PLUS was never offered. */
	ck_assert(server_accepts_client_first("y,," TLS_FIRST_BARE, strlen("y,," TLS_FIRST_BARE)));

	/* Over TLS -PLUS was offered: "y" means it was stripped on the way. */
	tls_exchange_t r = run_tls_exchange(hash, n, false, "y,,", NULL, NULL, 0, RFC_PASSWORD);
	ck_assert_msg(!r.started, "\"y\" over TLS (SCRAM-SHA-256) accepted: a downgrade");
	ck_assert_int_eq(r.state, AUTH_SCRAM_SERVER_FAILED);
	r = run_tls_exchange(hash, n, true, "y,,", NULL, NULL, 0, RFC_PASSWORD);
	ck_assert_msg(!r.started, "\"y\" with SCRAM-SHA-256-PLUS accepted");
	ck_assert_int_eq(r.state, AUTH_SCRAM_SERVER_FAILED);
}
END_TEST

START_TEST(test_scram_tls_p_flag_needs_plus_mechanism)
{
	uint8_t hash[AUTH_SCRAM_CBIND_MAX];
	size_t n = fake_cert_hash(EVP_sha256(), hash);

	/* "p" under mechanism SCRAM-SHA-256: the client and the mechanism disagree. */
	tls_exchange_t r = run_tls_exchange(hash, n, false, CB_HEADER, NULL, hash, n, RFC_PASSWORD);
	ck_assert_msg(!r.started, "gs2 flag \"p\" accepted with mechanism SCRAM-SHA-256");
	ck_assert_int_eq(r.state, AUTH_SCRAM_SERVER_FAILED);
	/* And "n" under SCRAM-SHA-256-PLUS: -PLUS promised a binding. */
	r = run_tls_exchange(hash, n, true, "n,,", NULL, NULL, 0, RFC_PASSWORD);
	ck_assert_msg(!r.started, "gs2 flag \"n\" accepted with mechanism SCRAM-SHA-256-PLUS");
	ck_assert_int_eq(r.state, AUTH_SCRAM_SERVER_FAILED);
}
END_TEST

START_TEST(test_scram_tls_n_flag_without_plus_succeeds)
{
	uint8_t hash[AUTH_SCRAM_CBIND_MAX];
	size_t n = fake_cert_hash(EVP_sha256(), hash);

	tls_exchange_t r = run_tls_exchange(hash, n, false, "n,,", NULL, NULL, 0, RFC_PASSWORD);
	ck_assert_msg(r.started, "\"n\" with SCRAM-SHA-256 over TLS refused");
	ck_assert_msg(r.parsed, "c=biws refused over TLS without -PLUS");
	ck_assert(r.ok);
	ck_assert(r.signature_right);
	ck_assert_int_eq(r.state, AUTH_SCRAM_SERVER_DONE);

	/* Without -PLUS the certificate hash is not part of c=: appending it is wrong. */
	r = run_tls_exchange(hash, n, false, "n,,", NULL, hash, n, RFC_PASSWORD);
	ck_assert(r.started);
	ck_assert_msg(!r.parsed, "binding data accepted after gs2 flag \"n\"");

	/* auth.c's own client (a libpq-like "n,,") logs in over TLS too. */
	auth_scram_verifier_t v;
	auth_scram_server_t s = {0};
	auth_scram_client_t c = {0};
	char msg[BUF_LEN], reply[BUF_LEN];
	size_t msg_len, reply_len;
	bool ok = false;
	ck_assert(auth_scram_parse_verifier(RFC_VERIFIER, &v));
	ck_assert(
	    auth_scram_client_start(&c, NULL, RFC_PASSWORD, NULL, msg, sizeof(msg), &msg_len));
	ck_assert(auth_scram_server_start_tls(&s, &v, hash, n, false, msg, msg_len, NULL, reply,
	                                      sizeof(reply), &reply_len));
	ck_assert(auth_scram_client_continue(&c, reply, reply_len, msg, sizeof(msg), &msg_len));
	ck_assert(
	    auth_scram_server_finish(&s, msg, msg_len, reply, sizeof(reply), &reply_len, &ok));
	ck_assert(ok);
	ck_assert(auth_scram_client_finish(&c, reply, reply_len));
	auth_scram_client_clear(&c);
	auth_scram_server_clear(&s);
}
END_TEST

/* start_tls on an exact-size heap copy of msg (len bytes): ASan sees any overread. */
static bool server_tls_accepts_client_first(const uint8_t *cbind, size_t cbind_len, bool plus,
                                            const char *msg, size_t len)
{
	auth_scram_verifier_t v;
	auth_scram_server_t s = {0};
	char out[BUF_LEN];
	size_t used = USED_UNTOUCHED;
	char *copy = malloc(len > 0 ? len : 1);

	ck_assert_ptr_nonnull(copy);
	memcpy(copy, msg, len);
	ck_assert(auth_scram_parse_verifier(RFC_VERIFIER, &v));
	memset(out, SENTINEL, sizeof(out));
	bool accepted = auth_scram_server_start_tls(&s, &v, cbind, cbind_len, plus, copy, len,
	                                            TLS_SERVER_NONCE, out, sizeof(out), &used);
	free(copy);
	if (!accepted) {
		ck_assert(untouched(out, sizeof(out)));
		ck_assert_uint_eq(used, USED_UNTOUCHED);
		ck_assert_int_eq(s.state, AUTH_SCRAM_SERVER_FAILED);
	}
	auth_scram_server_clear(&s);
	return accepted;
}

START_TEST(test_scram_tls_malformed_gs2_headers_refused)
{
	static const char *const bad[] = {
	    "p",
	    "p=",
	    "p,,n=,r=abc",
	    "p=,,n=,r=abc",
	    "p=tls-server-end-point",
	    "p=tls-server-end-point,",
	    "p=tls-server-end-point,,",
	    "p=tls-server-end-point,n=,r=abc",         /* one comma */
	    "p=tls-server-end-point+,n=,r=abc",        /* a byte, then one comma */
	    "p=tls-server-end-point,xn=,r=abc",        /* one comma, then a byte */
	    "p=tls-server-end-point,,,n=,r=abc",       /* three commas */
	    "p=tls-server-end-pointx,,n=,r=abc",       /* longer cb-name */
	    "p=tls-server-end-poin,,n=,r=abc",         /* shorter cb-name */
	    "p=tls-server-end-poinT,,n=,r=abc",        /* last char */
	    "p=TLS-SERVER-END-POINT,,n=,r=abc",        /* case */
	    "p=tls-unique,,n=,r=abc",                  /* RFC 5929 tls-unique: not offered */
	    "p=tls-exporter,,n=,r=abc",                /* RFC 9266: not offered */
	    "P=tls-server-end-point,,n=,r=abc",        /* flag case */
	    "pp=tls-server-end-point,,n=,r=abc",       /* flag twice */
	    "p:tls-server-end-point,,n=,r=abc",        /* no '=' */
	    " p=tls-server-end-point,,n=,r=abc",       /* leading space */
	    "p=tls-server-end-point,a=admin,n=,r=abc", /* authzid */
	    "p=tls-server-end-point,a=,n=,r=abc",      /* empty authzid */
	    "p=tls-server-end-point,,m=ext,n=,r=abc",  /* reserved mext */
	    "p=tls-server-end-point,,n=,r=",           /* empty nonce */
	    "p=tls-server-end-point,,n=,r=a,b",        /* broken extension */
	    "p=tls-server-end-point,,r=abc",           /* missing user */
	    ",,n=,r=abc",                              /* no flag */
	    "n=tls-server-end-point,,n=,r=abc",
	    "y=tls-server-end-point,,n=,r=abc",
	    "n,n=,r=abc",
	    "y,n=,r=abc",
	    "nx,n=,r=abc",
	    "n,xn=,r=abc",
	    "x,,n=,r=abc",
	};
	uint8_t hash[AUTH_SCRAM_CBIND_MAX];
	size_t n = fake_cert_hash(EVP_sha256(), hash);

	/* The shape these all break is accepted (so refusals are about the header). */
	ck_assert(server_tls_accepts_client_first(hash, n, true, CB_HEADER "n=,r=abc",
	                                          strlen(CB_HEADER "n=,r=abc")));
	ck_assert(server_tls_accepts_client_first(hash, n, false, "n,,n=,r=abc", 11));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		for (int plus = 0; plus <= 1; plus++)
			ck_assert_msg(
			    !server_tls_accepts_client_first(hash, n, plus, bad[i], strlen(bad[i])),
			    "accepted client-first \"%s\" (plus %d)", bad[i], plus);

	/* Every truncation of a valid -PLUS client-first, down to nothing. */
	static const char whole[] = CB_HEADER "n=,r=";
	for (size_t len = 0; len < sizeof(whole); len++)
		ck_assert_msg(!server_tls_accepts_client_first(hash, n, true, whole, len),
		              "accepted a %zu-byte truncated client-first", len);
	/* A NUL inside the cb-name, and a cb-name far longer than any header. */
	static const char with_nul[] = "p=tls-server-end\0point,,n=,r=abc";
	ck_assert(!server_tls_accepts_client_first(hash, n, true, with_nul, sizeof(with_nul) - 1));
	char long_name[AUTH_SCRAM_MESSAGE_MAX];
	int len = snprintf(long_name, sizeof(long_name), "p=tls-server-end-point%0*d,,n=,r=abc",
	                   2 * AUTH_SCRAM_GS2_HEADER_MAX, 7);
	ck_assert(!server_tls_accepts_client_first(hash, n, true, long_name, (size_t)len));
}
END_TEST

START_TEST(test_scram_tls_checks_binding_data)
{
	auth_scram_verifier_t v;
	auth_scram_server_t s = {0};
	uint8_t big[AUTH_SCRAM_CBIND_MAX + 1];
	char out[BUF_LEN];
	size_t used;
	const char *first = CB_HEADER TLS_FIRST_BARE;

	memset(big, 0xab, sizeof(big));
	ck_assert(auth_scram_parse_verifier(RFC_VERIFIER, &v));
	ck_assert(!auth_scram_server_start_tls(NULL, &v, big, 32, true, first, strlen(first), NULL,
	                                       out, sizeof(out), &used));
	ck_assert(!auth_scram_server_start_tls(&s, &v, NULL, 32, true, first, strlen(first), NULL,
	                                       out, sizeof(out), &used));
	ck_assert_int_eq(s.state, AUTH_SCRAM_SERVER_FAILED);
	ck_assert(!auth_scram_server_start_tls(&s, &v, NULL, 0, false, "n,,n=,r=abc", 11, NULL, out,
	                                       sizeof(out), &used));
	ck_assert(!auth_scram_server_start_tls(&s, &v, big, 0, true, first, strlen(first), NULL,
	                                       out, sizeof(out), &used));
	ck_assert(!auth_scram_server_start_tls(&s, &v, big, sizeof(big), true, first, strlen(first),
	                                       NULL, out, sizeof(out), &used));
	ck_assert_int_eq(s.state, AUTH_SCRAM_SERVER_FAILED);

	/* The largest binding data (SHA-512) and a one-byte one both work end to end. */
	tls_exchange_t r = run_tls_exchange(big, AUTH_SCRAM_CBIND_MAX, true, CB_HEADER, NULL, big,
	                                    AUTH_SCRAM_CBIND_MAX, RFC_PASSWORD);
	ck_assert(r.started && r.parsed && r.ok && r.signature_right);
	r = run_tls_exchange(big, 1, true, CB_HEADER, NULL, big, 1, RFC_PASSWORD);
	ck_assert(r.started && r.parsed && r.ok && r.signature_right);
	r = run_tls_exchange(big, 1, true, CB_HEADER, NULL, big, 2, RFC_PASSWORD);
	ck_assert(r.started && !r.parsed);
}
END_TEST

static Suite *auth_suite(void)
{
	Suite *suite = suite_create("auth");
	TCase *md5 = tcase_create("md5");
	tcase_add_test(md5, test_md5_hash_password_matches_md5sum);
	tcase_add_test(md5, test_md5_password_matches_md5sum);
	tcase_add_test(md5, test_md5_check_response);
	tcase_add_test(md5, test_md5_rejects_bad_stored_hash);
	suite_add_tcase(suite, md5);

	TCase *scram = tcase_create("scram");
	tcase_set_timeout(scram, 60);
	tcase_add_test(scram, test_scram_client_rfc7677_vector);
	tcase_add_test(scram, test_scram_server_rfc7677_vector);
	tcase_add_test(scram, test_scram_make_verifier_known_answer);
	tcase_add_test(scram, test_scram_round_trip_right_and_wrong_password);
	tcase_add_test(scram, test_scram_random_salts_differ);
	tcase_add_test(scram, test_scram_non_ascii_password_used_as_is);
	tcase_add_test(scram, test_scram_mock_user_always_fails_and_looks_real);
	tcase_add_test(scram, test_scram_mock_server_first_has_real_shape);
	tcase_add_test(scram, test_scram_client_escapes_user_name);
	tcase_add_test(scram, test_scram_client_rejects_malformed_server_first);
	tcase_add_test(scram, test_scram_client_rejects_truncated_server_first);
	tcase_add_test(scram, test_scram_client_survives_corrupted_server_first);
	tcase_add_test(scram, test_scram_client_rejects_bad_server_final);
	tcase_add_test(scram, test_scram_client_enforces_order);
	tcase_add_test(scram, test_scram_client_start_checks_inputs);
	tcase_add_test(scram, test_scram_server_client_first_flags);
	tcase_add_test(scram, test_scram_server_rejects_bad_client_final);
	tcase_add_test(scram, test_scram_server_enforces_order_and_output_room);
	tcase_add_test(scram, test_scram_parse_verifier_rejects_malformed);
	tcase_add_test(scram, test_scram_make_verifier_checks_inputs);
	suite_add_tcase(suite, scram);

	TCase *tls = tcase_create("scram_tls");
	tcase_set_timeout(tls, 60);
	tcase_add_test(tls, test_scram_test_client_matches_rfc7677);
	tcase_add_test(tls, test_scram_plus_right_binding_succeeds);
	tcase_add_test(tls, test_scram_plus_wrong_binding_refused);
	tcase_add_test(tls, test_scram_tls_y_flag_refused_as_downgrade);
	tcase_add_test(tls, test_scram_tls_p_flag_needs_plus_mechanism);
	tcase_add_test(tls, test_scram_tls_n_flag_without_plus_succeeds);
	tcase_add_test(tls, test_scram_tls_malformed_gs2_headers_refused);
	tcase_add_test(tls, test_scram_tls_checks_binding_data);
	suite_add_tcase(suite, tls);
	return suite;
}

int main(void)
{
	SRunner *runner = srunner_create(auth_suite());
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
