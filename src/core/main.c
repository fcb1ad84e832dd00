/*
 * main.c - the shardgate command line: serve, check, --version, --help.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "core/log.h"
#include "core/version.h"
#include "health/health.h"
#include "net/net.h"

static void usage(FILE *out)
{
	fprintf(out,
		"shardgate %s - PostgreSQL sharding and read/write-splitting proxy\n"
		"\n"
		"Usage:\n"
		"  shardgate [serve] -c FILE [-d] [--pidfile FILE]   run the proxy\n"
		"  shardgate check -c FILE                           validate a configuration\n"
		"  shardgate --version | --help\n"
		"\n"
		"Options:\n"
		"  -c, --config FILE   the shard map (default: shardmap.yaml)\n"
		"  -d, --daemon        detach and run in the background\n"
		"  --pidfile FILE      write the process id to FILE\n",
		SHARDGATE_VERSION);
}

typedef struct {
	const char *command;
	const char *config_path;
	const char *pidfile;
	bool daemon;
} options_t;

static bool parse_options(int argc, char **argv, options_t *opt)
{
	int i = 1;
	opt->command = "serve";
	opt->config_path = "shardmap.yaml";
	if (i < argc && argv[i][0] != '-')
		opt->command = argv[i++];
	for (; i < argc; i++) {
		const char *a = argv[i];
		if ((strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) && i + 1 < argc) {
			opt->config_path = argv[++i];
		} else if (strcmp(a, "-d") == 0 || strcmp(a, "--daemon") == 0) {
			opt->daemon = true;
		} else if (strcmp(a, "--pidfile") == 0 && i + 1 < argc) {
			opt->pidfile = argv[++i];
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
	if (!health_start(config, err, sizeof(err))) {
		fprintf(stderr, "shardgate: %s\n", err);
		return 1;
	}
	if (!net_start(config, err, sizeof(err))) {
		log_error("start_failed", "\"error\":\"%s\"", err);
		fprintf(stderr, "shardgate: %s\n", err);
		return 1;
	}
	for (;;) {
		int sig = 0;
		if (sigwait(&set, &sig) != 0)
			continue;
		if (sig == SIGHUP) {
			log_info("reload_ignored",
				 "\"reason\":\"configuration reload is not supported yet\"");
			continue;
		}
		log_info("shutdown", "\"signal\":\"%s\"", sig == SIGINT ? "SIGINT" : "SIGTERM");
		break;
	}
	net_stop();
	net_wait();
	health_stop();
	if (opt->pidfile)
		unlink(opt->pidfile);
	config_free(config);
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
	fprintf(stderr, "shardgate: unknown command \"%s\"\n", opt.command);
	usage(stderr);
	return 2;
}
