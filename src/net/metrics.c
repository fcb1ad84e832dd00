/*
 * metrics.c - the /metrics HTTP endpoint (see metrics.h).
 *
 * libevent's evhttp on a dedicated thread and event_base. The thread is
 * stopped the way workers are (worker.c): the caller activates ev_stop,
 * whose callback breaks the loop from inside it, which is safe across
 * threads because the base is created after evthread_use_pthreads().
 */
#include "net/metrics.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "core/stats.h"

/* A scrape is one short request: bound what a client can make us hold. */
#define METRICS_TIMEOUT_S   10
#define METRICS_MAX_HEADERS 8192
#define METRICS_MAX_BODY    1024

static struct {
	bool running;
	const config_t *config;
	struct event_base *base;
	struct evhttp *http;
	struct event *ev_stop;
	evutil_socket_t listen_fd;
	bool accepted; /* evhttp owns listen_fd (and closes it) */
	pthread_t thread;
} metrics;

/* Opens a non-blocking listening socket on address; -1 with err set. */
static evutil_socket_t open_listener(const cfg_address_t *address, char *err, size_t errlen)
{
	struct addrinfo hints = {0}, *res = NULL;
	char port[16];
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(port, sizeof(port), "%d", address->port);
	int rc = getaddrinfo(address->host[0] ? address->host : NULL, port, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "metrics: cannot listen on %s:%d: %s", address->host,
		         address->port, gai_strerror(rc));
		return -1;
	}
	int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 128) < 0) {
		snprintf(err, errlen, "metrics: cannot listen on %s:%d: %s", address->host,
		         address->port, strerror(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(res);
		return -1;
	}
	freeaddrinfo(res);
	return fd;
}

static void send_text(struct evhttp_request *req, int code, const char *reason, const char *text)
{
	struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
	struct evbuffer *body = evbuffer_new();
	evhttp_add_header(headers, "Content-Type", "text/plain; charset=utf-8");
	if (body)
		evbuffer_add(body, text, strlen(text));
	evhttp_send_reply(req, code, reason, body);
	if (body)
		evbuffer_free(body);
}

/* GET (or HEAD) /metrics: the exposition; another path 404, another
 * method 405. The query string is ignored, as Prometheus adds none. */
static void on_request(struct evhttp_request *req, void *arg)
{
	(void)arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	if (!path || strcmp(path, "/metrics") != 0) {
		send_text(req, HTTP_NOTFOUND, "Not Found", "not found; try /metrics\n");
		return;
	}
	enum evhttp_cmd_type method = evhttp_request_get_command(req);
	if (method != EVHTTP_REQ_GET && method != EVHTTP_REQ_HEAD) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
		send_text(req, HTTP_BADMETHOD, "Method Not Allowed", "only GET and HEAD\n");
		return;
	}
	char *text = stats_prometheus(metrics.config);
	struct evbuffer *body = evbuffer_new();
	if (!text || !body || evbuffer_add(body, text, strlen(text)) != 0) {
		free(text);
		if (body)
			evbuffer_free(body);
		send_text(req, HTTP_INTERNAL, "Internal Server Error", "out of memory\n");
		return;
	}
	free(text);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
	                  "text/plain; version=0.0.4; charset=utf-8");
	evhttp_send_reply(req, HTTP_OK, "OK", body);
	evbuffer_free(body);
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	event_base_loopbreak(metrics.base);
}

static void *metrics_main(void *arg)
{
	(void)arg;
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	event_base_dispatch(metrics.base);
	return NULL;
}

/* Frees what metrics_start() built, in any state of completion. */
static void release(void)
{
	if (metrics.http)
		evhttp_free(metrics.http);
	if (!metrics.accepted && metrics.listen_fd >= 0)
		close(metrics.listen_fd);
	if (metrics.ev_stop)
		event_free(metrics.ev_stop);
	if (metrics.base)
		event_base_free(metrics.base);
	memset(&metrics, 0, sizeof(metrics));
	metrics.listen_fd = -1;
}

bool metrics_start(const config_t *config, char *err, size_t errlen)
{
	if (!config->has_metrics)
		return true;
	if (metrics.running) {
		snprintf(err, errlen, "metrics: already running");
		return false;
	}
	/* Idempotent; net_start() calls it too, but the base must be made
	 * thread-aware whichever starts first. */
	if (evthread_use_pthreads() != 0) {
		snprintf(err, errlen, "metrics: libevent without thread support");
		return false;
	}
	memset(&metrics, 0, sizeof(metrics));
	metrics.config = config;
	metrics.listen_fd = open_listener(&config->metrics, err, errlen);
	if (metrics.listen_fd < 0) {
		release();
		return false;
	}
	metrics.base = event_base_new();
	metrics.ev_stop = metrics.base ? event_new(metrics.base, -1, 0, on_stop, NULL) : NULL;
	metrics.http = metrics.base ? evhttp_new(metrics.base) : NULL;
	if (!metrics.base || !metrics.ev_stop || !metrics.http) {
		snprintf(err, errlen, "metrics: out of memory");
		release();
		return false;
	}
	evhttp_set_allowed_methods(metrics.http,
	                           EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
	                               EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
	                               EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
	evhttp_set_timeout(metrics.http, METRICS_TIMEOUT_S);
	evhttp_set_max_headers_size(metrics.http, METRICS_MAX_HEADERS);
	evhttp_set_max_body_size(metrics.http, METRICS_MAX_BODY);
	evhttp_set_gencb(metrics.http, on_request, NULL);
	if (!evhttp_accept_socket_with_handle(metrics.http, metrics.listen_fd)) {
		snprintf(err, errlen, "metrics: cannot listen on %s:%d: out of memory",
		         config->metrics.host, config->metrics.port);
		release();
		return false;
	}
	metrics.accepted = true;
	int rc = pthread_create(&metrics.thread, NULL, metrics_main, NULL);
	if (rc != 0) {
		snprintf(err, errlen, "metrics: cannot start its thread: %s", strerror(rc));
		release();
		return false;
	}
	metrics.running = true;
	char host[sizeof(config->metrics.host) * 2];
	log_info("metrics_listening", "\"address\":\"%s:%d\"",
	         log_json_escape(host, sizeof(host), config->metrics.host), metrics_port());
	return true;
}

void metrics_stop(void)
{
	if (!metrics.running)
		return;
	event_active(metrics.ev_stop, EV_READ, 0);
	pthread_join(metrics.thread, NULL);
	release();
}

int metrics_port(void)
{
	if (!metrics.running)
		return 0;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	if (getsockname(metrics.listen_fd, (struct sockaddr *)&ss, &len) != 0)
		return 0;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return 0;
}
