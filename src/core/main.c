/*
 * main.c - the shardgate command line: serve, check, --version, --help.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "core/log.h"
#include "core/stats.h"
#include "net/metrics.h"
#include <openssl/crypto.h>

#include "analyze/analyze.h"
#include "core/version.h"
#include "health/health.h"
#include "merge/plan.h"
#include "net/net.h"
#include "proto/auth.h"
#include "route/directory.h"
#include "route/hash.h"
#include "route/route.h"
#include "route/explain.h"
#include "route/shard.h"
#include "route/twophase.h"
#include "rebalance/rebalance.h"
#include "rebalance/verify.h"

static void usage(FILE *out)
{
	fprintf(out,
		"shardgate %s - PostgreSQL sharding and read/write-splitting proxy\n"
		"\n"
		"Usage:\n"
		"  shardgate [serve] -c FILE [-d] [--pidfile FILE]   run the proxy\n"
		"  shardgate check -c FILE                           validate a configuration\n"
		"  shardgate explain -c FILE \"SQL\" [PARAM...]        show how a statement is routed\n"
		"  shardgate passwd USER                             print a SCRAM verifier for auth.users\n"
		"  shardgate rebalance plan -c OLD --to NEW          the data movements from map OLD to NEW\n"
		"  shardgate rebalance apply -c OLD --to NEW [--proxy HOST:PORT ...] [--dry-run]\n"
		"                                                    carry them out online (resumable)\n"
		"  shardgate rebalance abort -c OLD --to NEW [--proxy HOST:PORT ...]\n"
		"                                                    undo what has not cut over\n"
		"  shardgate rebalance verify -c FILE                check every row is where FILE puts it\n"
		"  shardgate --version | --help\n"
		"\n"
		"Options:\n"
		"  -c, --config FILE   the shard map (default: shardmap.yaml)\n"
		"  -d, --daemon        detach and run in the background\n"
		"  --pidfile FILE      write the process id to FILE\n"
		"  rebalance: --batch N (buckets per unit), --database NAME, --proxy-user NAME\n",
		SHARDGATE_VERSION);
}

typedef struct {
	const char *command;
	const char *config_path;
	const char *pidfile;
	const char *sql;
	const char *params[64]; /* explain: values of $1, $2, ... (text) */
	int n_params;
	bool daemon;
	const char *subcommand; /* rebalance plan|apply|abort|verify */
	rb_options_t rb;
} options_t;

static bool parse_options(int argc, char **argv, options_t *opt)
{
	int i = 1;
	opt->command = "serve";
	opt->config_path = "shardmap.yaml";
	if (i < argc && argv[i][0] != '-')
		opt->command = argv[i++];
	if (strcmp(opt->command, "rebalance") == 0 && i < argc && argv[i][0] != '-')
		opt->subcommand = argv[i++];
	for (; i < argc; i++) {
		const char *a = argv[i];
		bool more = i + 1 < argc;
		if ((strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) && i + 1 < argc) {
			opt->config_path = argv[++i];
		} else if (opt->subcommand && strcmp(a, "--to") == 0 && more) {
			opt->rb.new_path = argv[++i];
		} else if (opt->subcommand && strcmp(a, "--proxy") == 0 && more &&
			   opt->rb.n_proxies < RB_MAX_PROXIES) {
			opt->rb.proxies[opt->rb.n_proxies++] = argv[++i];
		} else if (opt->subcommand && strcmp(a, "--proxy-user") == 0 && more) {
			opt->rb.proxy_user = argv[++i];
		} else if (opt->subcommand && strcmp(a, "--database") == 0 && more) {
			opt->rb.database = argv[++i];
		} else if (opt->subcommand && strcmp(a, "--batch") == 0 && more) {
			opt->rb.batch = atoi(argv[++i]);
		} else if (opt->subcommand && strcmp(a, "--dry-run") == 0) {
			opt->rb.dry_run = true;
		} else if (strcmp(a, "-d") == 0 || strcmp(a, "--daemon") == 0) {
			opt->daemon = true;
		} else if (strcmp(a, "--pidfile") == 0 && i + 1 < argc) {
			opt->pidfile = argv[++i];
		} else if (a[0] != '-' && !opt->sql &&
			   (strcmp(opt->command, "explain") == 0 || strcmp(opt->command, "passwd") == 0)) {
			opt->sql = a;
		} else if (opt->sql && strcmp(opt->command, "explain") == 0 && opt->n_params < 64) {
			opt->params[opt->n_params++] = a;
		} else {
			fprintf(stderr, "shardgate: unknown argument \"%s\"\n", a);
			return false;
		}
	}
	return true;
}

static bool write_pidfile(const char *path)
{
	FILE *f = fopen(path, "w");
	if (!f) {
		fprintf(stderr, "shardgate: %s: %s\n", path, strerror(errno));
		return false;
	}
	fprintf(f, "%d\n", (int)getpid());
	fclose(f);
	return true;
}

static bool daemonize(void)
{
	pid_t pid = fork();
	if (pid < 0)
		return false;
	if (pid > 0)
		_exit(0);
	if (setsid() < 0)
		return false;
	int fd = open("/dev/null", O_RDWR);
	if (fd >= 0) {
		dup2(fd, STDIN_FILENO);
		dup2(fd, STDOUT_FILENO);
		if (fd > STDERR_FILENO)
			close(fd);
	}
	return true;
}

/* Runs the proxy until SIGINT or SIGTERM. */
static int serve(const options_t *opt)
{
	config_t *config;
	char err[2048];
	if (!config_load(opt->config_path, &config, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	log_set_level(config->log_level);
	if (opt->daemon && !daemonize()) {
		fprintf(stderr, "shardgate: cannot daemonize: %s\n", strerror(errno));
		config_free(config);
		return 1;
	}
	if (opt->pidfile && !write_pidfile(opt->pidfile)) {
		config_free(config);
		return 1;
	}
	/* Workers inherit a mask with every signal blocked; this thread
	 * takes them with sigwait. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	if (config->routing.two_phase_commit) {
		/* Transactions a previous run prepared and did not finish. */
		int n = twophase_recover(config);
		log_info("twophase_recovery", "\"finished\":%d,\"complete\":%s", n < 0 ? 0 : n,
			 n < 0 ? "false" : "true");
	}
	if (!health_start(config, err, sizeof(err))) {
		fprintf(stderr, "shardgate: %s\n", err);
		return 1;
	}
	/* A rebalance may have moved units since this map was written. */
	const config_t *map = remap_recover(config);
	if (!stats_init(map)) {
		fprintf(stderr, "shardgate: out of memory\n");
		return 1;
	}
	if (!metrics_start(map, err, sizeof(err))) {
		log_error("start_failed", "\"error\":\"%s\"", err);
		fprintf(stderr, "shardgate: %s\n", err);
		return 1;
	}
	if (!net_start(map, err, sizeof(err))) {
		log_error("start_failed", "\"error\":\"%s\"", err);
		fprintf(stderr, "shardgate: %s\n", err);
		return 1;
	}
	for (;;) {
		int sig = 0;
		if (sigwait(&set, &sig) != 0)
			continue;
		if (sig == SIGHUP) {
			if (!remap_reload(opt->config_path, err, sizeof(err)))
				log_warning("reload_failed", "\"signal\":\"SIGHUP\"");
			continue;
		}
		log_info("shutdown", "\"signal\":\"%s\"", sig == SIGINT ? "SIGINT" : "SIGTERM");
		if (sig == SIGTERM) /* running transactions finish first */
			net_drain(proxy.loaded_config->timeouts.shutdown_ms);
		break;
	}
	metrics_stop();
	net_stop();
	net_wait();
	health_stop();
	if (opt->pidfile)
		unlink(opt->pidfile);
	remap_shutdown(); /* frees every map, config among them */
	stats_free();
	return 0;
}

static int check(const options_t *opt)
{
	config_t *config;
	char err[2048];
	if (!config_load(opt->config_path, &config, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	config_print(config, stdout);
	printf("%s: ok\n", opt->config_path);
	config_free(config);
	return 0;
}

static bool tracked_param(const char *name)
{
	return params_is_synced(name);
}

/* Waits (up to 3 s) for the monitor to have checked every node once. */
static const health_snapshot_t *first_snapshot(void)
{
	for (int i = 0; i < 300; i++) {
		const health_snapshot_t *snap = health_acquire();
		bool complete = snap != NULL;
		for (int n = 0; snap && n < snap->n_nodes; n++)
			if (snap->nodes[n].last_check_ms == 0)
				complete = false;
		if (complete)
			return snap;
		health_release(snap);
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	return health_acquire();
}

/*
 * `shardgate explain`: how a statement would be routed now, with the
 * analysis behind the decision and the monitor's view of every node.
 */
static int explain(const options_t *opt)
{
	config_t *config;
	char err[2048];
	if (!opt->sql) {
		fprintf(stderr, "shardgate explain: give the statement to explain\n");
		return 2;
	}
	if (!config_load(opt->config_path, &config, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	log_set_level(LOG_WARNING);
	analysis_t *a;
	if (!analyze_statement(opt->sql, strlen(opt->sql), &a)) {
		config_free(config);
		return 1;
	}
	route_class_t cls;
	route_classify(config, a, tracked_param, &cls);
	printf("statement:  %s\n", opt->sql);
	printf("kind:       %s%s\n", analyze_kind_name(a->kind),
	       a->parse_error ? " (not parseable: routed as a write)" : "");
	if (a->parse_error && a->error_message)
		printf("parse error: %s\n", a->error_message);
	printf("statements: %d\n", a->n_statements);
	for (int i = 0; i < a->n_tables; i++)
		if (!a->tables[i].cte_name)
			printf("table:      %s%s%s (%s)\n", a->tables[i].schema ? a->tables[i].schema : "",
		       a->tables[i].schema ? "." : "", a->tables[i].name,
		       a->tables[i].written ? "written" : "read");
	for (int i = 0; i < a->n_functions; i++)
		printf("function:   %s%s%s\n", a->functions[i].schema ? a->functions[i].schema : "",
		       a->functions[i].schema ? "." : "", a->functions[i].name);
	if (a->hint.present)
		printf("hint:       %s%s%s max_lag=%lldms\n", a->hint.primary ? "primary " : "",
		       a->hint.shard ? "shard=" : "", a->hint.shard ? a->hint.shard : "",
		       (long long)a->hint.max_lag_ms);
	printf("class:      %s (%s)\n", cls.read ? "read" : "write", cls.reason);
	if (cls.pins)
		printf("session:    pins the client to its server connection (%s)\n",
		       cls.pin_reason);

	int shard = cls.hint_shard >= 0 ? cls.hint_shard : config->default_shard;
	int n_targets = 1;
	if (cls.hint_shard < 0 && cls.configured_tables) {
		n_targets = route_explain_shards(
		    config, opt->sql, opt->params, opt->n_params,
		    config->backend.database[0] ? config->backend.database : "postgres", a, &cls,
		    &shard, stdout);
		directory_thread_done();
		if (n_targets != 1) {
			analyze_release(a);
			config_free(config);
			return n_targets < 0 ? 1 : 0;
		}
	}
	if (!health_start(config, err, sizeof(err))) {
		fprintf(stderr, "shardgate: %s\n", err);
		analyze_release(a);
		config_free(config);
		return 1;
	}
	const health_snapshot_t *snap = first_snapshot();
	route_balance_t balance = {0};
	route_target_t t;
	if (config->pool.mode == POOL_SESSION) {
		/* One server connection per session: the default shard's primary. */
		cls.read = false;
		cls.reason = "session pooling keeps every statement on the primary";
	}
	route_status_t rs = route_choose(config, snap, &cls, shard, 0, &balance, NULL, NULL, &t);
	if (rs != ROUTE_OK) {
		printf("target:     none: %s (writes fail fast with SQLSTATE 08006)\n",
		       route_status_name(rs));
	} else {
		const cfg_shard_t *sh = &config->shards[t.shard];
		const cfg_node_t *n = t.node == 0 ? &sh->primary : &sh->replicas[t.node - 1];
		printf("target:     shard %s, %s %s:%d (%s)\n", sh->name,
		       t.replica ? "replica" : "primary", n->address.host, n->address.port,
		       t.reason);
	}
	printf("\nnodes (monitor):\n");
	health_print(snap, stdout);
	health_release(snap);
	health_stop();
	analyze_release(a);
	config_free(config);
	return 0;
}

/*
 * `shardgate passwd USER`: reads a password (without echo on a terminal,
 * else the first line of standard input) and prints the auth.users entry
 * with its SCRAM-SHA-256 verifier, as PostgreSQL would store it.
 */
static int passwd(const options_t *opt)
{
	if (!opt->sql || !opt->sql[0]) {
		fprintf(stderr, "shardgate passwd: give the user name\n");
		return 2;
	}
	char password[AUTH_PASSWORD_MAX + 2];
	struct termios saved;
	bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0;
	if (tty) {
		struct termios quiet = saved;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
		fprintf(stderr, "Password for %s: ", opt->sql);
	}
	bool got = fgets(password, sizeof(password), stdin) != NULL;
	if (tty) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
		fprintf(stderr, "\n");
	}
	if (!got) {
		fprintf(stderr, "shardgate passwd: no password given\n");
		return 1;
	}
	password[strcspn(password, "\r\n")] = '\0';
	char verifier[AUTH_SCRAM_VERIFIER_MAX];
	bool ok = auth_scram_make_verifier(password, AUTH_SCRAM_DEFAULT_ITERATIONS, NULL, 0,
					   verifier, sizeof(verifier));
	OPENSSL_cleanse(password, sizeof(password));
	if (!ok) {
		fprintf(stderr, "shardgate passwd: cannot make a verifier (empty password?)\n");
		return 1;
	}
	printf("- { name: %s, password: \"%s\" }\n", opt->sql, verifier);
	return 0;
}

/* `shardgate rebalance plan|apply|abort|verify`. */
static int rebalance(options_t *opt)
{
	const char *sub = opt->subcommand ? opt->subcommand : "";
	opt->rb.old_path = opt->config_path;
	if (strcmp(sub, "verify") == 0) {
		char err[1024];
		config_t *config;
		if (!config_load(opt->config_path, &config, err, sizeof(err))) {
			fprintf(stderr, "%s\n", err);
			return 2;
		}
		int rc = rb_verify(config, stdout);
		config_free(config);
		return rc;
	}
	bool known = strcmp(sub, "plan") == 0 || strcmp(sub, "apply") == 0 ||
		     strcmp(sub, "abort") == 0;
	if (!known || !opt->rb.new_path) {
		fprintf(stderr, "shardgate rebalance: %s\n",
			known ? "give the new map with --to NEW"
			      : "expected plan, apply, abort or verify");
		usage(stderr);
		return 2;
	}
	if (strcmp(sub, "plan") == 0)
		return rb_plan_command(&opt->rb);
	if (strcmp(sub, "apply") == 0)
		return rb_apply_command(&opt->rb);
	return rb_abort_command(&opt->rb);
}

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--version") == 0 || strcmp(argv[i], "-V") == 0) {
			printf("shardgate %s\n", SHARDGATE_VERSION);
			return 0;
		}
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		}
	}
	options_t opt = {0};
	if (!parse_options(argc, argv, &opt)) {
		usage(stderr);
		return 2;
	}
	if (strcmp(opt.command, "serve") == 0)
		return serve(&opt);
	if (strcmp(opt.command, "check") == 0)
		return check(&opt);
	if (strcmp(opt.command, "explain") == 0)
		return explain(&opt);
	if (strcmp(opt.command, "passwd") == 0)
		return passwd(&opt);
	if (strcmp(opt.command, "rebalance") == 0)
		return rebalance(&opt);
	fprintf(stderr, "shardgate: unknown command \"%s\"\n", opt.command);
	usage(stderr);
	return 2;
}
