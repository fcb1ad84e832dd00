/*
 * worker.c - worker threads: one event loop, one SO_REUSEPORT listener,
 * and the janitor timer that enforces wait and login timeouts.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "core/log.h"
#include "net/io.h"
#include "net/net.h"
#include "net/tls.h"
#include "pool/pool.h"
#include "route/directory.h"

#define JANITOR_INTERVAL_MS 100
#define SCRATCH_SIZE (64 * 1024)

proxy_t proxy;

int64_t net_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int open_listener(const cfg_address_t *address, char *err, size_t errlen)
{
	struct addrinfo hints = {0}, *res = NULL;
	char port[16];
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(port, sizeof(port), "%d", address->port);
	int rc = getaddrinfo(address->host[0] ? address->host : NULL, port, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "listen %s:%d: %s", address->host, address->port,
			 gai_strerror(rc));
		return -1;
	}
	int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
	    bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 4096) < 0) {
		snprintf(err, errlen, "listen %s:%d: %s", address->host, address->port,
			 strerror(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(res);
		return -1;
	}
	freeaddrinfo(res);
	return fd;
}

static void on_accept(evutil_socket_t fd, short what, void *arg)
{
	worker_t *w = arg;
	(void)what;
	/* Bounded: let other events run between bursts of connections. */
	for (int i = 0; i < 64; i++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int cfd = accept4(fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (cfd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
			    errno != ECONNABORTED)
				log_warning("accept_failed", "\"worker\":%d,\"error\":\"%s\"", w->index,
					    strerror(errno));
			return;
		}
		int one = 1;
		setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		char addr[64] = "unknown";
		if (ss.ss_family == AF_INET) {
			struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
			char ip[INET_ADDRSTRLEN];
			inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
			snprintf(addr, sizeof(addr), "%s:%d", ip, ntohs(sin->sin_port));
		} else if (ss.ss_family == AF_INET6) {
			struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
			char ip[INET6_ADDRSTRLEN];
			inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
			snprintf(addr, sizeof(addr), "[%s]:%d", ip, ntohs(sin6->sin6_port));
		}
		client_accept(w, cfd, addr);
	}
}

/* Frees connections closed during the last callbacks. */
static void on_reap(evutil_socket_t fd, short what, void *arg)
{
	worker_t *w = arg;
	(void)fd;
	(void)what;
	while (w->free_clients) {
		client_t *c = w->free_clients;
		w->free_clients = c->next;
		client_free(c);
	}
	while (w->free_servers) {
		server_t *s = w->free_servers;
		w->free_servers = s->next;
		server_free(s);
	}
}

void worker_schedule_reap(worker_t *w)
{
	event_active(w->ev_reap, EV_TIMEOUT, 0);
}

typedef struct {
	int64_t now_ms;
	int64_t wait_ms;
} janitor_ctx_t;

static void expire_pool(const void *key, size_t len, void *value, void *arg)
{
	janitor_ctx_t *ctx = arg;
	(void)key;
	(void)len;
	pool_janitor(value, ctx->now_ms, ctx->wait_ms);
}

static void on_janitor(evutil_socket_t fd, short what, void *arg)
{
	worker_t *w = arg;
	(void)fd;
	(void)what;
	const config_t *cfg = w->config;
	janitor_ctx_t ctx = {net_now_ms(), cfg->timeouts.wait_ms};
	hashmap_foreach(&w->pools, expire_pool, &ctx);
	for (server_t *s = w->servers; s; s = s->all_next)
		server_check_timeout(s, ctx.now_ms, cfg->timeouts.query_ms);
	int64_t login_ms = cfg->timeouts.login_ms;
	int64_t idle_ms = cfg->timeouts.client_idle_ms;
	int64_t idle_txn_ms = cfg->timeouts.idle_in_transaction_ms;
	bool draining = atomic_load(&proxy.draining);
	int busy = 0;
	for (client_t *c = w->clients, *next; c; c = next) {
		next = c->next;
		int64_t quiet = ctx.now_ms - c->last_active_ms;
		if (draining && c->state != CLIENT_CLOSED) {
			bool running = c->fan || c->state == CLIENT_WAITING || c->rm_is_parked ||
				       (c->server && (c->server->pending_count > 0 ||
						      c->server->tx_status != 'I'));
			if (running) {
				busy++;
			} else {
				client_fatal(c, "57P01",
					     "terminating connection due to administrator command (the "
					     "proxy is shutting down)");
			}
			continue;
		}
		if (!c->logged_in) {
			if (login_ms > 0 && ctx.now_ms - c->connect_ms >= login_ms)
				client_fatal(c, "08P01", "login timeout (timeouts.login) expired");
			continue;
		}
		if (c->admin || c->fan || c->rm_is_parked || c->state == CLIENT_WAITING)
			continue;
		server_t *s = c->server;
		bool owed = s && s->pending_count > 0;
		bool in_txn = s && (s->tx_status == 'T' || s->tx_status == 'E');
		if (idle_txn_ms > 0 && in_txn && !owed && quiet >= idle_txn_ms)
			client_fatal(c, "25P03",
				     "terminating connection due to idle-in-transaction timeout "
				     "(timeouts.idle_in_transaction)");
		else if (idle_ms > 0 && !in_txn && !owed && quiet >= idle_ms)
			client_fatal(c, "57P05",
				     "terminating connection due to idle-session timeout "
				     "(timeouts.client_idle)");
	}
	if (draining)
		atomic_store(&w->n_busy, busy);
}

static void on_cancel(evutil_socket_t fd, short what, void *arg)
{
	worker_t *w = arg;
	(void)fd;
	(void)what;
	pthread_mutex_lock(&w->cancel_lock);
	cancel_request_t *q = w->cancel_queue;
	w->cancel_queue = NULL;
	pthread_mutex_unlock(&w->cancel_lock);
	while (q) {
		cancel_request_t *next = q->next;
		client_t *c = client_find_by_cancel(w, q->pid);
		if (c && c->cancel_key == q->key && c->fan)
			fanout_cancel(c);
		else if (c && c->cancel_key == q->key && c->server)
			server_send_cancel(c->server);
		free(q);
		q = next;
	}
}

void worker_route_cancel(uint32_t pid, uint32_t key)
{
	int owner = (int)(pid >> 24);
	if (owner < 0 || owner >= proxy.n_workers)
		return;
	worker_t *w = &proxy.workers[owner];
	cancel_request_t *r = calloc(1, sizeof(*r));
	if (!r)
		return;
	r->pid = pid;
	r->key = key;
	pthread_mutex_lock(&w->cancel_lock);
	r->next = w->cancel_queue;
	w->cancel_queue = r;
	pthread_mutex_unlock(&w->cancel_lock);
	event_active(w->ev_cancel, EV_READ, 0);
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
	worker_t *w = arg;
	(void)fd;
	(void)what;
	event_base_loopbreak(w->base);
}

static void on_drain(evutil_socket_t fd, short what, void *arg)
{
	worker_t *w = arg;
	(void)fd;
	(void)what;
	if (w->ev_listen)
		event_del(w->ev_listen);
	if (w->listen_fd >= 0) {
		close(w->listen_fd);
		w->listen_fd = -1;
	}
	on_janitor(-1, 0, w);
	atomic_store(&w->drained, true);
}

void net_drain(int64_t timeout_ms)
{
	atomic_store(&proxy.draining, true);
	for (int i = 0; i < proxy.n_workers; i++)
		event_active(proxy.workers[i].ev_drain, EV_READ, 0);
	int64_t deadline = net_now_ms() + timeout_ms;
	for (;;) {
		int busy = 0;
		bool all = true;
		for (int i = 0; i < proxy.n_workers; i++) {
			all = all && atomic_load(&proxy.workers[i].drained);
			busy += atomic_load(&proxy.workers[i].n_busy);
		}
		if (all && busy == 0) {
			log_info("drained", "\"clients_running\":0");
			return;
		}
		if (net_now_ms() >= deadline) {
			log_warning("drain_timeout", "\"clients_running\":%d", busy);
			return;
		}
		struct timespec ts = {0, 20 * 1000000L};
		nanosleep(&ts, NULL);
	}
}

static void *worker_main(void *arg)
{
	worker_t *w = arg;
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	event_base_dispatch(w->base);
	directory_thread_done();
	return NULL;
}

static bool worker_init(worker_t *w, int index, const config_t *config, char *err,
			size_t errlen)
{
	memset(w, 0, sizeof(*w));
	w->index = index;
	w->config = config;
	w->listen_fd = -1;
	pthread_mutex_init(&w->cancel_lock, NULL);
	w->scratch_cap = SCRATCH_SIZE;
	w->scratch = malloc(w->scratch_cap);
	w->base = event_base_new();
	w->analyzer = analyzer_new(10000);
	RAND_bytes(w->mock_secret, sizeof(w->mock_secret));
	w->balance.random_state = 0x9E3779B97F4A7C15ULL * (uint64_t)(index + 1);
	if (!w->scratch || !w->base || !w->analyzer || !hashmap_init(&w->shapes, 1024) ||
	    !hashmap_init(&w->pools, 16) ||
	    !hashmap_init(&w->clients_by_key, 1024) || !hashmap_init(&w->stmts, 256)) {
		snprintf(err, errlen, "out of memory");
		return false;
	}
	w->listen_fd = open_listener(&config->listen, err, errlen);
	if (w->listen_fd < 0)
		return false;
	w->ev_listen = event_new(w->base, w->listen_fd, EV_READ | EV_PERSIST, on_accept, w);
	w->ev_reap = event_new(w->base, -1, 0, on_reap, w);
	w->ev_cancel = event_new(w->base, -1, 0, on_cancel, w);
	w->ev_stop = event_new(w->base, -1, 0, on_stop, w);
	w->ev_janitor = event_new(w->base, -1, EV_PERSIST, on_janitor, w);
	w->ev_remap = event_new(w->base, -1, 0, remap_on_event, w);
	w->ev_drain = event_new(w->base, -1, 0, on_drain, w);
	w->ev_collect = event_new(w->base, -1, 0, admin_on_collect, w);
	if (!w->ev_listen || !w->ev_reap || !w->ev_cancel || !w->ev_stop || !w->ev_janitor ||
	    !w->ev_remap || !w->ev_drain || !w->ev_collect) {
		snprintf(err, errlen, "out of memory");
		return false;
	}
	struct timeval tv = io_timeval(JANITOR_INTERVAL_MS);
	event_add(w->ev_janitor, &tv);
	event_add(w->ev_listen, NULL);
	return true;
}

bool net_start(const config_t *config, char *err, size_t errlen)
{
	signal(SIGPIPE, SIG_IGN);
	if (evthread_use_pthreads() != 0) {
		snprintf(err, errlen, "libevent without thread support");
		return false;
	}
	/* One set of TLS contexts for every worker (SSL_CTX is shared safely
	 * between threads; each connection has its own SSL). */
	if (!tls_init(config, err, errlen))
		return false;
	proxy.config = config;
	if (!proxy.loaded_config)
		proxy.loaded_config = config;
	proxy.n_workers = config->workers;
	proxy.workers = calloc((size_t)config->workers, sizeof(worker_t));
	if (!proxy.workers) {
		snprintf(err, errlen, "out of memory");
		return false;
	}
	for (int i = 0; i < config->workers; i++)
		if (!worker_init(&proxy.workers[i], i, config, err, errlen))
			return false;
	for (int i = 0; i < config->workers; i++)
		pthread_create(&proxy.workers[i].thread, NULL, worker_main, &proxy.workers[i]);
	log_info("listening", "\"address\":\"%s:%d\",\"workers\":%d", config->listen.host,
		 config->listen.port, config->workers);
	return true;
}

void net_stop(void)
{
	atomic_store(&proxy.stopping, true);
	for (int i = 0; i < proxy.n_workers; i++)
		event_active(proxy.workers[i].ev_stop, EV_READ, 0);
}

/* Joins the workers after net_stop() and releases what they held. */
void net_wait(void)
{
	for (int i = 0; i < proxy.n_workers; i++) {
		worker_t *w = &proxy.workers[i];
		pthread_join(w->thread, NULL);
		for (client_t *c = w->clients, *next; c; c = next) {
			next = c->next;
			client_close(c, "proxy shutting down");
		}
		on_reap(-1, 0, w);
	}
	for (int i = 0; i < proxy.n_workers; i++) {
		worker_t *w = &proxy.workers[i];
		/* Idle ones, and those still resetting after a session ended. */
		for (server_t *s = w->servers, *next; s; s = next) {
			next = s->all_next;
			server_close(s, "proxy shutting down");
		}
		on_reap(-1, 0, w);
		pool_free_all(w);
		hashmap_destroy(&w->clients_by_key);
		hashmap_destroy(&w->stmts);
		analyzer_free(w->analyzer);
		client_free_shapes(w);
		sharding_free_worker(w);
		if (w->listen_fd >= 0)
			close(w->listen_fd);
		event_free(w->ev_listen);
		event_free(w->ev_reap);
		event_free(w->ev_cancel);
		event_free(w->ev_stop);
		event_free(w->ev_janitor);
		event_free(w->ev_remap);
		event_free(w->ev_drain);
		event_free(w->ev_collect);
		remap_free_worker(w);
		event_base_free(w->base);
		pthread_mutex_destroy(&w->cancel_lock);
		free(w->scratch);
	}
	free(proxy.workers);
	proxy.workers = NULL;
	tls_shutdown();
	pool_free_quotas();
	client_free_limits();
}
