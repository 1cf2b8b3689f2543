# skillgate — plain GNU Makefile, no configure step.
#   make          build bin/skillgated and bin/skillctl
#   make test     unit tests, integration tests (real PostgreSQL + node-smpp SMSC), sanitizers
#   make run      a working system on one machine: private PostgreSQL under ./var, daemon, simulator
#   make format   clang-format every C file
#   make fuzz     libFuzzer targets (clang), FUZZ_SECONDS each
#   make bench    benchmarks (prints figures; never fails on a number)

PKGS      := libevent libevent_openssl libpq openssl jansson inih
CC        ?= cc
BUILD     ?= build
BINDIR    ?= bin
SAN       ?=
OPT       ?= -O2
CFLAGS    ?= $(OPT) -g
WARN      := -std=c11 -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
CPPFLAGS  := -D_GNU_SOURCE -iquote include $(shell pkg-config --cflags $(PKGS) 2>/dev/null) \
             -isystem /usr/include/libsmpp34
LDLIBS    := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lsmpp34 -lm
ALL_CFLAGS = $(WARN) $(CFLAGS) $(SAN)

LIB_SRCS  := $(filter-out gateway/main.c,$(wildcard gateway/*.c core/*.c))
CTL_SRCS  := $(wildcard ctl/*.c)
CTL_OBJS  := $(CTL_SRCS:%.c=$(BUILD)/obj/%.o)
LIB_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
C_FILES   := $(wildcard gateway/*.c core/*.c ctl/*.c include/*.h tests/unit/*.c tests/unit/*.h tests/fuzz/*.c) \
             tests/bench/smscsim.c

.PHONY: all test unit integration asan run format format-check fuzz fuzz-smoke bench bench-sim soak soak-kill deps clean

all: $(BINDIR)/skillgated $(BINDIR)/skillctl

$(BUILD)/obj/%.o: %.c $(wildcard include/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/libskillgate.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BINDIR)/skillgated: $(BUILD)/obj/gateway/main.o $(BUILD)/libskillgate.a
	@mkdir -p $(BINDIR)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS)

$(BINDIR)/skillctl: $(CTL_OBJS) $(BUILD)/libskillgate.a
	@mkdir -p $(BINDIR)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libskillgate.a $(wildcard tests/unit/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -Wno-error=unused-function -o $@ $< $(BUILD)/libskillgate.a $(LDLIBS) -lcmocka

unit-bins: $(UNIT_BINS)

# Everything, in order: deps, unit, integration, then unit + integration under ASan/UBSan.
test: deps
	bash tests/run_all.sh

# Unit tests only (used by run_all.sh for both builds).
unit: $(UNIT_BINS)
	bash tests/run_unit.sh $(BUILD)

integration: all
	bash tests/run_integration.sh

run: deps all
	bash scripts/run.sh

deps:
	bash scripts/deps.sh

format:
	clang-format -i $(C_FILES)

format-check:
	clang-format --dry-run --Werror $(C_FILES)

# libFuzzer targets: each tests/fuzz/fuzz_X.c links against the library sources built with clang.
FUZZ_SECONDS ?= 600
FUZZ_FLAGS := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
fuzz-build:
	$(MAKE) BUILD=build-fuzz CC=clang CFLAGS="-g -O1" SAN="-fsanitize=fuzzer-no-link,address,undefined" build-fuzz/libskillgate.a
	@mkdir -p build-fuzz/bin
	@for f in $(FUZZ_SRCS); do n=$$(basename $$f .c); \
	  clang $(CPPFLAGS) $(WARN) $(FUZZ_FLAGS) -o build-fuzz/bin/$$n $$f build-fuzz/libskillgate.a $(LDLIBS) || exit 1; done

fuzz: fuzz-build
	bash tests/run_fuzz.sh $(FUZZ_SECONDS)

fuzz-smoke: fuzz-build
	bash tests/run_fuzz.sh 10

bench: deps all bench-sim
	bash tests/bench/run.sh

# The bench's SMSC simulator in C (tests/bench/lib.js runs it unless BENCH_SIM=node): always
# optimised and without sanitizers, whatever BUILD/SAN say.
bench-sim: build/bench/smscsim
build/bench/smscsim: tests/bench/smscsim.c
	@mkdir -p $(dir $@)
	$(CC) $(WARN) -D_GNU_SOURCE -O2 -g -o $@ $< $(shell pkg-config --cflags --libs libevent jansson) -lm

# The kill -9 test of tests/integration/pipeline.test.js at full size (20,000 MOs).
soak-kill: deps all
	SG_KILL_TEST_MOS=20000 SG_TESTS=tests/integration/pipeline.test.js SG_TEST_TIMEOUT_MS=1800000 \
		bash tests/run_integration.sh

# An hour at moderate load, RSS sampled every 10 s: flat or not.
soak: deps all bench-sim
	bash tests/bench/soak.sh

clean:
	rm -rf build build-asan build-fuzz bin
