/*
 * tls.h - TLS on both sides of the proxy, with OpenSSL on the workers'
 * non-blocking sockets.
 *
 * Clients: a client that sends SSLRequest is answered 'S' when tls.mode is
 * allow or require (then the handshake runs as the client's first reads and
 * writes), 'N' when it is disable. Servers: with backend.tls other than
 * disable the proxy sends SSLRequest before its startup packet and runs the
 * client side of the handshake on 'S' (protocol-flow, "SSL Session
 * Encryption").
 *
 * The contexts are built once at start-up (tls_init) from the configuration
 * loaded then and shared by every worker; a RELOAD does not change them.
 * Once the handshake is done, io.c reads and writes through tls_recv and
 * tls_send instead of recv and send: the same buffers, the same events.
 */
#ifndef SHARDGATE_TLS_H
#define SHARDGATE_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/net.h"

/* Where a connection's TLS stands (client_t.tls, server_t.tls). */
typedef enum {
	CONN_TLS_NONE = 0,  /* plaintext (or not negotiated yet) */
	CONN_TLS_ASKED,     /* server: SSLRequest sent, waiting for 'S' or 'N' */
	CONN_TLS_HANDSHAKE, /* the handshake runs: no application data yet */
	CONN_TLS_READY      /* encrypted: io.c goes through tls_recv/tls_send */
} conn_tls_t;

/* One step of a non-blocking handshake. */
typedef enum {
	TLS_STEP_DONE,
	TLS_STEP_WANT_READ,  /* call again when the socket is readable */
	TLS_STEP_WANT_WRITE, /* call again when the socket is writable */
	TLS_STEP_FAILED      /* the reason is in err */
} tls_step_t;

/*
 * Builds the contexts the configuration asks for: the clients' (certificate,
 * key, ciphers; TLS 1.2 at least) and the servers' (CA file for verify-ca
 * and verify-full). False with "file: message" (or "key: message") in err.
 */
bool tls_init(const config_t *config, char *err, size_t errlen);
/* RELOAD: the clients' context again from the (new) certificate, key and
 * ciphers, for connections from now on. False with the reason, the old
 * context kept. */
bool tls_reload_clients(const config_t *config, char *err, size_t errlen);
void tls_shutdown(void);

/* The client side as started: 'S' to an SSLRequest, and whether a client
 * must use TLS to log in. */
bool tls_offered_to_clients(void);
bool tls_required_of_clients(void);
/* The server side as started, and its name as written in the file. */
backend_tls_t tls_backend_mode(void);
const char *tls_backend_mode_name(backend_tls_t mode);

/* A client that was answered 'S': its SSL object, in the accepting state. */
bool tls_client_begin(client_t *c);
/* A server that answered 'S': its SSL object, in the connecting state, with
 * the verification backend.tls asks for (chain, and host name or IP). */
bool tls_server_begin(server_t *s, char *err, size_t errlen);
/* Runs the handshake as far as the socket allows. */
tls_step_t tls_handshake(struct ssl_st *ssl, char *err, size_t errlen);
/* "TLSv1.3 TLS_AES_256_GCM_SHA384" for logs. */
void tls_describe(const struct ssl_st *ssl, char *out, size_t outlen);
/* Frees *ssl (sending close_notify first when `notify`); *ssl becomes NULL. */
void tls_free(struct ssl_st **ssl, bool notify);

/*
 * Reads decrypted bytes into buf[0, cap): IO_OK with *got > 0, IO_AGAIN,
 * IO_EOF or IO_ERROR (io.h). One TLS record at most per call.
 */
int tls_recv(struct ssl_st *ssl, uint8_t *buf, size_t cap, size_t *got);
/* Writes part of buf: IO_OK with *sent > 0, IO_AGAIN, IO_ERROR. */
int tls_send(struct ssl_st *ssl, const uint8_t *buf, size_t len, size_t *sent);

/*
 * The tls-server-end-point channel binding of the client's connection
 * (RFC 5929 section 4.1): the hash of the proxy's DER certificate, with
 * SHA-256 when the certificate is signed with MD5 or SHA-1, else with its
 * signature's hash. *len is out's capacity on entry (EVP_MAX_MD_SIZE is
 * always enough), the hash's length on return. False when the client does
 * not use TLS or the certificate's signature names no single hash.
 */
bool tls_server_end_point(const client_t *c, uint8_t *out, size_t *len);

#endif
