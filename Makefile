# shardgate - build, demo, tests and benchmarks.
#
#   make            build ./shardgate
#   make run        install what is missing, build, start the demo cluster, run the proxy
#   make test       install what is missing, build, run every test (plain, then ASan+UBSan)
#   make bench      pgbench: direct vs PgBouncer vs shardgate
#   make fuzz       run every libFuzzer harness for FUZZ_SECONDS (default 60)
#   make format     clang-format every C file

CC       ?= cc
PKGS     := libevent libevent_pthreads libevent_openssl yaml-0.1 libpq libprotobuf-c openssl
BUILD    ?= build/release
SAN      ?=
OPT      ?= -O2

# snprintf truncation is how messages are bounded; gcc warns about it by design.
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CFLAGS   := -std=c11 -Wall -Wextra -Werror -Wno-format-truncation -D_GNU_SOURCE -g $(OPT) -Isrc $(PKG_CFLAGS) \
            -MMD -MP $(SAN) $(EXTRA_CFLAGS)
LDFLAGS  := $(SAN)
LIBS     := $(PKG_LIBS) -lpg_query -lpthread -lm

SRCS      := $(sort $(wildcard src/*/*.c))
OBJS      := $(SRCS:%.c=$(BUILD)/%.o)
LIB_OBJS  := $(filter-out $(BUILD)/src/core/main.o,$(OBJS))
UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
ITEST_SRCS := $(sort $(wildcard tests/integration/test_*.c))
ITEST_BINS := $(ITEST_SRCS:tests/integration/%.c=$(BUILD)/itests/%)

ASAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

.PHONY: all run test unit integration asan deps bench format format-check clean distclean fuzz

all: shardgate

shardgate: $(BUILD)/shardgate
	rm -f $@ && cp $< $@

$(BUILD)/shardgate: $(OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c $(LIB_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LIB_OBJS) $(LDFLAGS) $(LIBS) $(shell pkg-config --libs check)

$(BUILD)/itests/%: tests/integration/%.c $(LIB_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LIB_OBJS) $(LDFLAGS) $(LIBS) $(shell pkg-config --libs check)

# Everything one build flavour needs: the binary and every test program.
build-all: $(BUILD)/shardgate $(UNIT_BINS) $(ITEST_BINS)

deps:
	@tests/install-deps.sh

unit: $(UNIT_BINS)
	@tests/run-unit.sh $(UNIT_BINS)

run: deps
	$(MAKE) shardgate
	tests/cluster.sh start
	tests/demo-load.sh
	./shardgate -c shardmap.yaml

# One plain pass, one pass under AddressSanitizer + UndefinedBehaviorSanitizer,
# then every libFuzzer harness for 30 s (ASan + UBSan too).
test: deps
	$(MAKE) build-all shardgate
	tests/run-all.sh $(BUILD)
	$(MAKE) build-all BUILD=build/asan SAN="$(ASAN_FLAGS)" OPT=-O1
	tests/run-all.sh build/asan
	tests/fuzz/run.sh 30

integration: build-all
	tests/run-all.sh $(BUILD) integration

bench: deps
	$(MAKE) shardgate
	tests/bench/bench.sh
	tests/bench/shard_bench.sh
	tests/bench/rebalance_bench.sh

# libFuzzer harnesses (clang, ASan+UBSan) for the protocol readers, SCRAM,
# the statement analyser and the config loader; FUZZ_SECONDS per harness.
FUZZ_SECONDS ?= 60
fuzz: deps
	tests/fuzz/run.sh $(FUZZ_SECONDS)

format:
	clang-format -i $(SRCS) $(wildcard src/*/*.h) $(UNIT_SRCS) $(ITEST_SRCS)

format-check:
	clang-format --dry-run -Werror $(SRCS) $(wildcard src/*/*.h) $(UNIT_SRCS) $(ITEST_SRCS)

clean:
	rm -rf build shardgate

distclean: clean
	tests/cluster.sh destroy || true

-include $(OBJS:.o=.d)
