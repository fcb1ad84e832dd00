/*
 * tls.c - OpenSSL contexts, handshakes and record I/O for client and server
 * connections (see tls.h).
 *
 * The sockets are non-blocking and driven by the workers' libevent events:
 * a handshake step or a read that needs more bytes returns and is called
 * again from the read event (persistent), one that needs to write arms the
 * write event. Renegotiation is refused on both sides, so after the
 * handshake a read never has to write and a write never has to read.
 */
#include "net/tls.h"

#include <pthread.h>
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "core/log.h"
#include "net/io.h"
#include "pool/pool.h"

static pthread_mutex_t clients_lock = PTHREAD_MUTEX_INITIALIZER; /* RELOAD swaps tls.clients */

static struct {
	SSL_CTX *clients; /* answers clients; NULL: tls.mode disable */
	bool required;    /* tls.mode require */
	SSL_CTX *servers; /* connects to servers; NULL: backend.tls disable */
	backend_tls_t backend_mode;
} tls;

/* The reason of OpenSSL's first queued error (or `otherwise`); empties the
 * queue, which is per thread and must not leak into the next call. */
static const char *ssl_reason(const char *otherwise)
{
	unsigned long e = ERR_peek_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;
	ERR_clear_error();
	return r ? r : otherwise;
}

/* A key protected by a passphrase cannot be opened without a terminal:
 * refuse it instead of prompting. */
static int no_passphrase(char *buf, int size, int rwflag, void *userdata)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	if (userdata)
		*(bool *)userdata = true;
	return 0;
}

static bool file_readable(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return false;
	}
	fclose(f);
	return true;
}

/*
 * ALPN (PostgreSQL 17 clients offer "postgresql"): chosen when offered; a
 * client that offers only other protocols is refused, as PostgreSQL does.
 * A client that offers none is welcome.
 */
static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
	static const unsigned char ours[] = "\x0apostgresql";
	(void)ssl;
	(void)arg;
	unsigned char *chosen = NULL;
	if (SSL_select_next_proto(&chosen, outlen, ours, sizeof(ours) - 1, in, inlen) ==
	    OPENSSL_NPN_NEGOTIATED) {
		*out = chosen;
		return SSL_TLSEXT_ERR_OK;
	}
	return SSL_TLSEXT_ERR_ALERT_FATAL;
}

static void common_options(SSL_CTX *ctx)
{
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	/* io_flush hands over whatever its buffer holds, which may have moved
	 * (grown) since a write that had to wait. */
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
}

/* The context clients' handshakes use: certificate chain, key, ciphers. */
static SSL_CTX *make_clients_ctx(const config_t *cfg, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx) {
		snprintf(err, errlen, "tls: %s", ssl_reason("cannot create a TLS context"));
		return NULL;
	}
	common_options(ctx);
	SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_TICKET);
	/* As PostgreSQL: no session resumption (no cache, no tickets). */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(ctx, 0);
	SSL_CTX_set_dh_auto(ctx, 1);
	SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);

	bool encrypted = false;
	SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
	SSL_CTX_set_default_passwd_cb_userdata(ctx, &encrypted);
	bool ok = false;
	if (!file_readable(cfg->tls.cert, err, errlen) || !file_readable(cfg->tls.key, err, errlen))
		goto out;
	if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls.cert) != 1) {
		snprintf(err, errlen, "%s: not a PEM certificate (%s)", cfg->tls.cert,
		         ssl_reason("unreadable"));
		goto out;
	}
	bool loaded = SSL_CTX_use_PrivateKey_file(ctx, cfg->tls.key, SSL_FILETYPE_PEM) == 1;
	if (!loaded || SSL_CTX_check_private_key(ctx) != 1) {
		/* A key that loads but fails the check does not match (one of
		 * another type sits in a slot with no certificate at all). */
		unsigned long e = ERR_peek_error();
		if (loaded || (ERR_GET_LIB(e) == ERR_LIB_X509 &&
			       ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH))
			snprintf(err, errlen, "%s: the key does not match the certificate %s",
			         cfg->tls.key, cfg->tls.cert);
		else if (encrypted)
			snprintf(err, errlen,
			         "%s: the key is protected by a passphrase (not supported)",
			         cfg->tls.key);
		else
			snprintf(err, errlen, "%s: not a PEM private key (%s)", cfg->tls.key,
			         ssl_reason("unreadable"));
		ERR_clear_error();
		goto out;
	}
	if (cfg->tls.ciphers[0] && SSL_CTX_set_cipher_list(ctx, cfg->tls.ciphers) != 1) {
		ERR_clear_error();
		snprintf(err, errlen, "tls.ciphers: no usable cipher in \"%s\"", cfg->tls.ciphers);
		goto out;
	}
	ok = true;
out:
	SSL_CTX_set_default_passwd_cb(ctx, NULL);
	SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL);
	if (!ok) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* The context the proxy's own handshakes with servers use. */
static SSL_CTX *make_servers_ctx(const config_t *cfg, char *err, size_t errlen)
{
	backend_tls_t mode = cfg->backend.tls;
	bool verify = mode == BACKEND_TLS_VERIFY_CA || mode == BACKEND_TLS_VERIFY_FULL;
	if (verify && !cfg->backend.ca_file[0]) {
		snprintf(err, errlen, "backend.tls: %s needs backend.ca_file",
		         tls_backend_mode_name(mode));
		return NULL;
	}
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx) {
		snprintf(err, errlen, "backend.tls: %s", ssl_reason("cannot create a TLS context"));
		return NULL;
	}
	common_options(ctx);
	static const unsigned char alpn[] = "\x0apostgresql";
	SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn) - 1);
	if (verify) {
		if (!file_readable(cfg->backend.ca_file, err, errlen)) {
			SSL_CTX_free(ctx);
			return NULL;
		}
		if (SSL_CTX_load_verify_locations(ctx, cfg->backend.ca_file, NULL) != 1) {
			snprintf(err, errlen, "%s: no PEM certificate (%s)", cfg->backend.ca_file,
			         ssl_reason("unreadable"));
			SSL_CTX_free(ctx);
			return NULL;
		}
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	} else {
		/* prefer and require encrypt without checking who answers, as
		 * libpq's sslmode of the same names (without sslrootcert). */
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	}
	return ctx;
}

bool tls_init(const config_t *config, char *err, size_t errlen)
{
	tls_shutdown();
	if (config->tls.mode != TLS_DISABLE) {
		tls.clients = make_clients_ctx(config, err, errlen);
		if (!tls.clients)
			return false;
		tls.required = config->tls.mode == TLS_REQUIRE;
	}
	tls.backend_mode = config->backend.tls;
	if (config->backend.tls != BACKEND_TLS_DISABLE) {
		tls.servers = make_servers_ctx(config, err, errlen);
		if (!tls.servers) {
			tls_shutdown();
			return false;
		}
	}
	return true;
}

void tls_shutdown(void)
{
	SSL_CTX_free(tls.clients);
	SSL_CTX_free(tls.servers);
	memset(&tls, 0, sizeof(tls));
}

bool tls_offered_to_clients(void)
{
	return tls.clients != NULL;
}

bool tls_required_of_clients(void)
{
	return tls.clients != NULL && tls.required;
}

backend_tls_t tls_backend_mode(void)
{
	return tls.servers ? tls.backend_mode : BACKEND_TLS_DISABLE;
}

const char *tls_backend_mode_name(backend_tls_t mode)
{
	switch (mode) {
	case BACKEND_TLS_DISABLE:
		return "disable";
	case BACKEND_TLS_PREFER:
		return "prefer";
	case BACKEND_TLS_REQUIRE:
		return "require";
	case BACKEND_TLS_VERIFY_CA:
		return "verify-ca";
	case BACKEND_TLS_VERIFY_FULL:
		return "verify-full";
	}
	return "unknown";
}

bool tls_reload_clients(const config_t *config, char *err, size_t errlen)
{
	if (config->tls.mode == TLS_DISABLE || !tls.clients)
		return true; /* enabling or disabling TLS takes a restart (remap.c) */
	SSL_CTX *fresh = make_clients_ctx(config, err, errlen);
	if (!fresh)
		return false;
	pthread_mutex_lock(&clients_lock);
	SSL_CTX *old = tls.clients;
	tls.clients = fresh;
	pthread_mutex_unlock(&clients_lock);
	SSL_CTX_free(old); /* connections made with it hold their own reference */
	return true;
}

bool tls_client_begin(client_t *c)
{
	pthread_mutex_lock(&clients_lock);
	SSL *ssl = tls.clients ? SSL_new(tls.clients) : NULL;
	pthread_mutex_unlock(&clients_lock);
	if (!ssl || SSL_set_fd(ssl, c->fd) != 1) {
		SSL_free(ssl);
		ERR_clear_error();
		return false;
	}
	SSL_set_accept_state(ssl);
	c->ssl = ssl;
	c->tls = CONN_TLS_HANDSHAKE;
	return true;
}

static bool is_ip_address(const char *host)
{
	unsigned char addr[sizeof(struct in6_addr)];
	return inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
}

bool tls_server_begin(server_t *s, char *err, size_t errlen)
{
	const char *host = s->pool->address.host;
	bool ip = is_ip_address(host);
	SSL *ssl = tls.servers ? SSL_new(tls.servers) : NULL;
	bool ok = ssl && SSL_set_fd(ssl, s->fd) == 1;
	/* SNI names a host, never an address (RFC 6066 section 3). */
	if (ok && !ip)
		ok = SSL_set_tlsext_host_name(ssl, host) == 1;
	if (ok && tls.backend_mode == BACKEND_TLS_VERIFY_FULL) {
		/* The certificate must name the host we connect to: a DNS name
		 * (subjectAltName, else the CN) or an IP address SAN. */
		if (ip) {
			ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) == 1;
		} else {
			SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
			ok = SSL_set1_host(ssl, host) == 1;
		}
	}
	if (!ok) {
		snprintf(err, errlen, "cannot start TLS: %s", ssl_reason("out of memory"));
		SSL_free(ssl);
		return false;
	}
	SSL_set_connect_state(ssl);
	s->ssl = ssl;
	s->tls = CONN_TLS_HANDSHAKE;
	return true;
}

tls_step_t tls_handshake(SSL *ssl, char *err, size_t errlen)
{
	ERR_clear_error();
	errno = 0;
	int rc = SSL_do_handshake(ssl);
	if (rc == 1)
		return TLS_STEP_DONE;
	int e = SSL_get_error(ssl, rc);
	if (e == SSL_ERROR_WANT_READ)
		return TLS_STEP_WANT_READ;
	if (e == SSL_ERROR_WANT_WRITE)
		return TLS_STEP_WANT_WRITE;
	long verified = SSL_get_verify_result(ssl);
	if (!SSL_is_server(ssl) && (SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER) &&
	    verified != X509_V_OK) {
		snprintf(err, errlen, "server certificate verify failed: %s",
		         X509_verify_cert_error_string(verified));
		ERR_clear_error();
	} else if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
		snprintf(err, errlen, "%s",
		         errno ? strerror(errno)
		               : "the peer closed the connection during the TLS handshake");
	} else {
		snprintf(err, errlen, "%s", ssl_reason("TLS handshake failed"));
	}
	return TLS_STEP_FAILED;
}

void tls_describe(const SSL *ssl, char *out, size_t outlen)
{
	snprintf(out, outlen, "%s %s", SSL_get_version(ssl), SSL_get_cipher_name(ssl));
}

void tls_free(SSL **ssl, bool notify)
{
	if (!*ssl)
		return;
	if (notify) {
		/* close_notify, best effort: the socket closes right after. */
		ERR_clear_error();
		SSL_shutdown(*ssl);
	}
	ERR_clear_error();
	SSL_free(*ssl);
	*ssl = NULL;
}

/* An EOF without close_notify is a close all the same: PostgreSQL's
 * messages carry their lengths, so nothing can be cut short unnoticed. */
static bool unexpected_eof(void)
{
	unsigned long e = ERR_peek_error();
	return e && ERR_GET_LIB(e) == ERR_LIB_SSL &&
	       ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING;
}

int tls_recv(SSL *ssl, uint8_t *buf, size_t cap, size_t *got)
{
	size_t n = 0;
	ERR_clear_error();
	errno = 0;
	if (SSL_read_ex(ssl, buf, cap, &n) == 1) {
		*got = n;
		return IO_OK;
	}
	int rc;
	switch (SSL_get_error(ssl, 0)) {
	case SSL_ERROR_WANT_READ:
	/* Without renegotiation only when answering a TLS 1.3 KeyUpdate the
	 * peer asked for finds the socket full: the next read event retries. */
	case SSL_ERROR_WANT_WRITE:
		return IO_AGAIN;
	case SSL_ERROR_ZERO_RETURN:
		rc = IO_EOF;
		break;
	case SSL_ERROR_SYSCALL:
		rc = ERR_peek_error() == 0 && errno == 0 ? IO_EOF : IO_ERROR;
		break;
	default:
		rc = unexpected_eof() ? IO_EOF : IO_ERROR;
		break;
	}
	ERR_clear_error();
	return rc;
}

int tls_send(SSL *ssl, const uint8_t *buf, size_t len, size_t *sent)
{
	size_t n = 0;
	ERR_clear_error();
	if (SSL_write_ex(ssl, buf, len, &n) == 1) {
		*sent = n;
		return IO_OK;
	}
	switch (SSL_get_error(ssl, 0)) {
	case SSL_ERROR_WANT_WRITE:
		return IO_AGAIN;
	case SSL_ERROR_WANT_READ:
		/* Cannot happen without renegotiation; the next read event
		 * flushes again. */
		*sent = 0;
		return IO_OK;
	default:
		ERR_clear_error();
		return IO_ERROR;
	}
}

/* Mirrors PostgreSQL's be_tls_get_certificate_hash(). */
bool tls_server_end_point(const client_t *c, uint8_t *out, size_t *len)
{
	if (!c->ssl || c->tls != CONN_TLS_READY)
		return false;
	X509 *cert = SSL_get_certificate(c->ssl);
	int algo_nid = NID_undef;
	if (!cert || !OBJ_find_sigid_algs(X509_get_signature_nid(cert), &algo_nid, NULL))
		return false;
	const EVP_MD *md;
	switch (algo_nid) {
	case NID_md5:
	case NID_sha1:
		md = EVP_sha256();
		break;
	default:
		md = EVP_get_digestbynid(algo_nid);
		break;
	}
	unsigned char hash[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	if (!md || !X509_digest(cert, md, hash, &n) || n > *len) {
		ERR_clear_error();
		return false;
	}
	memcpy(out, hash, n);
	*len = n;
	return true;
}
