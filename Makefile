# nnc — build, set-up and test entry points. `make help` lists the targets.
#
# Build outputs go to $(BUILD) (build/ by default; build/asan for the sanitizer build).
# Every .c file under lang/, compiler/ and runtime/ is picked up automatically.

BUILD       ?= build
CC          ?= cc
LLVM_CONFIG ?= llvm-config-19
LLVM_BIN    ?= /usr/lib/llvm-19/bin
LIT         ?= python3 /usr/lib/llvm-19/build/utils/lit/lit.py
SANITIZE    ?=

WARN     = -Wall -Wextra -Werror
CFLAGS  ?= -O2 -g
ALLFLAGS = -std=c11 $(WARN) $(CFLAGS) -D_GNU_SOURCE -Ilang -Icompiler -Iruntime -I$(BUILD)/gen -MMD -MP $(SANITIZE)
LDLIBS   = -lopenblas -lz -lm -lpthread -ldl

LLVM_CFLAGS := $(shell $(LLVM_CONFIG) --cflags 2>/dev/null | sed 's/-DNDEBUG//')
LLVM_LIBS   := $(shell $(LLVM_CONFIG) --ldflags 2>/dev/null) -lLLVM-19

# nnc itself links the LLVM components it uses statically, into a position-dependent
# executable: loading libLLVM.so (130 MB, 340,000 relocations) cost ~35 ms of CPU time per
# command, a third of the 100 ms budget of `nnc compile` (docs/performance.md, W7). The
# unit tests and the bench harness link libLLVM.so (the same LLVM, quicker to link).
# Without LLVM's static libraries (llvm-19-dev ships them), nnc links libLLVM.so as well.
#
# The targets `--target` can compile for: CPUs a model compiled with nnc runs on (with libnnrt
# and a BLAS built for them), those this LLVM has. Each target linked costs start-up time
# (its static constructors): all of LLVM's took `nnc --help` 31 ms, these 22.5 ms.
NNC_TARGETS := $(filter X86 AArch64 ARM RISCV PowerPC SystemZ WebAssembly Mips LoongArch,$(shell $(LLVM_CONFIG) --targets-built 2>/dev/null))
NNC_TARGET_COMPONENTS := $(foreach t,$(shell echo $(NNC_TARGETS) | tr A-Z a-z),$(t)codegen $(t)asmparser $(t)desc $(t)info)
LLVM_COMPONENTS = core analysis passes bitwriter target orcjit $(NNC_TARGET_COMPONENTS)
LLVM_STATIC := $(shell $(LLVM_CONFIG) --link-static --libs $(LLVM_COMPONENTS) 2>/dev/null)
ifneq ($(strip $(LLVM_STATIC)),)
NNC_LLVM_LIBS = $(shell $(LLVM_CONFIG) --ldflags 2>/dev/null) $(LLVM_STATIC) -l:libzstd.so.1 $(NNC_LIBSTDCXX)
NNC_LDFLAGS   = -no-pie
else
NNC_LLVM_LIBS = $(LLVM_LIBS)
NNC_LDFLAGS   = -rdynamic
endif
# ... and the C++ library statically too: linked dynamically, LLVM's 5,600 references to it
# (every class's type_info points at libstdc++'s vtables, every abstract class's vtable at
# __cxa_pure_virtual) were relocated at every start, a copy-on-write page fault for each
# page of LLVM's 5 MB of relocated read-only data: `nnc --help` 999 page faults and 29.6 ms,
# 620 and 22.6 ms static. The JIT finds the runtime without -rdynamic (jit_define_runtime).
NNC_LIBSTDCXX := $(if $(wildcard $(shell $(CXX) -print-file-name=libstdc++.a 2>/dev/null)),-l:libstdc++.a,-lstdc++)

LANG_SRC     = $(wildcard lang/*.c)
COMPILER_SRC = $(wildcard compiler/*.c)
RUNTIME_SRC  = $(wildcard runtime/*.c)
GEN_SRC      = $(BUILD)/gen/nn.tab.c $(BUILD)/gen/lex.yy.c

LANG_OBJ     = $(LANG_SRC:%.c=$(BUILD)/%.o) $(BUILD)/gen/nn.tab.o $(BUILD)/gen/lex.yy.o
COMPILER_OBJ = $(COMPILER_SRC:%.c=$(BUILD)/%.o)
RUNTIME_OBJ  = $(RUNTIME_SRC:%.c=$(BUILD)/%.o)

NNC    = $(BUILD)/nnc
LIBRT  = $(BUILD)/libnnrt.a

.PHONY: all deps demo test test-build test-programs asan-test-programs golden bench fuzz asan clean install help
all: $(NNC) $(LIBRT)

help:
	@echo "make            build $(NNC) and $(LIBRT)"
	@echo "make deps       install missing Debian packages (apt-get)"
	@echo "make demo       set up, build, and show nnc on the examples"
	@echo "make test       set up, build (normal + ASan/UBSan) and run every test"
	@echo "make golden     regenerate expected outputs of golden tests for review"
	@echo "make fuzz       run the front-end fuzzer (FUZZ_SECONDS=600)"
	@echo "make install    install nnc, libnnrt, nnrt.h and nnrt.pc under PREFIX"

# ---------------------------------------------------------------- compile

$(BUILD)/gen/nn.tab.c $(BUILD)/gen/nn.tab.h: lang/nn.y
	@mkdir -p $(BUILD)/gen
	bison -Wall -Werror --defines=$(BUILD)/gen/nn.tab.h -o $(BUILD)/gen/nn.tab.c $<

$(BUILD)/gen/lex.yy.c $(BUILD)/gen/lex.yy.h: lang/nn.l $(BUILD)/gen/nn.tab.h
	@mkdir -p $(BUILD)/gen
	flex --header-file=$(BUILD)/gen/lex.yy.h -o $(BUILD)/gen/lex.yy.c $<

# Generated scanners trip a few warnings that are not ours to fix.
$(BUILD)/gen/%.o: $(BUILD)/gen/%.c
	$(CC) $(ALLFLAGS) -Wno-sign-compare -Wno-unused-function -Wno-unused-parameter -c $< -o $@

$(LANG_SRC:%.c=$(BUILD)/%.o): $(BUILD)/gen/nn.tab.h $(BUILD)/gen/lex.yy.h

$(BUILD)/compiler/llvm.o: compiler/llvm.c
	@mkdir -p $(dir $@)
	$(CC) $(ALLFLAGS) $(LLVM_CFLAGS) '-DNNC_TARGETS=$(foreach t,$(NNC_TARGETS),T($(t)))' -c $< -o $@

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALLFLAGS) -c $< -o $@

$(LIBRT): $(RUNTIME_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

# nnc opens OpenBLAS itself when a command needs it (compiler/blasload.c): not linked.
$(NNC): $(LANG_OBJ) $(COMPILER_OBJ) $(LIBRT)
	$(CC) $(SANITIZE) $(NNC_LDFLAGS) -o $@ $(LANG_OBJ) $(COMPILER_OBJ) $(LIBRT) $(NNC_LLVM_LIBS) $(filter-out -lopenblas,$(LDLIBS))

-include $(shell find $(BUILD) -name '*.d' -type f -not -path '*/lit/*' 2>/dev/null)

# C unit tests of the compiler (tests/unit/test_*.c): each links every compiler object but main.o.
UNIT_SRC  = $(wildcard tests/unit/test_*.c)
UNIT_BIN  = $(UNIT_SRC:tests/unit/%.c=$(BUILD)/unit/%)
LIB_OBJ   = $(LANG_OBJ) $(filter-out $(BUILD)/compiler/main.o,$(COMPILER_OBJ))
$(BUILD)/unit/%: tests/unit/%.c $(LIB_OBJ) $(LIBRT)
	@mkdir -p $(dir $@)
	$(CC) $(ALLFLAGS) -Itests/unit -o $@ $< $(LIB_OBJ) $(LIBRT) $(LLVM_LIBS) $(LDLIBS)

.PHONY: unit-tests
# Two programs at a time (the sanitized test_passes and test_llvm take minutes each), the
# longest first; results are reported in a fixed order. In a sanitized build they run with
# NNC_TEST_SMALL=1: smaller batches, the same code paths (see the programs' main).
# (`make test` runs these programs through tests/run.sh, along with the lit suites.)
UNIT_ORDER = $(filter %/test_passes %/test_llvm,$(UNIT_BIN)) $(filter-out %/test_passes %/test_llvm,$(UNIT_BIN))
UNIT_ENV   = $(if $(SANITIZE),NNC_TEST_SMALL=1,)
unit-tests: $(UNIT_BIN)
	@rm -f $(UNIT_BIN:=.status); printf '%s\n' $(UNIT_ORDER) | $(UNIT_ENV) xargs -P 2 -I{} sh -c '{} > {}.log 2>&1; echo $$? > {}.status'; \
	pass=0; fail=0; for t in $(UNIT_BIN); do \
	  if [ "$$(cat $$t.status 2>/dev/null)" = 0 ]; then echo "PASS $$(basename $$t)"; pass=$$((pass+1)); \
	  else echo "FAIL $$(basename $$t)"; cat $$t.log; fail=$$((fail+1)); fi; done; \
	echo "$$pass passed, $$fail failed"; [ $$fail = 0 ]

ASAN_VARS = BUILD=build/asan CFLAGS="-O1 -g -fno-omit-frame-pointer" \
            SANITIZE="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
asan:
	$(MAKE) $(ASAN_VARS) all

# ---------------------------------------------------------------- set-up

DEB_PACKAGES = flex bison llvm-19-dev llvm-19-tools libopenblas-dev zlib1g-dev dataset-fashion-mnist
SUDO = $(shell [ "$$(id -u)" = 0 ] || echo sudo)

deps:
	@missing=""; for p in $(DEB_PACKAGES) $(EXTRA_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "nnc: installing:$$missing"; \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $$missing; \
	else echo "nnc: all dependencies present"; fi

# ---------------------------------------------------------------- demo, tests

demo: deps all
	@sh examples/demo.sh $(BUILD)

# TEST_JOBS: how many builds and test programs run at once (3 on this 2-core machine: one
# more than the cores, for the time jobs spend starting processes and reading files).
TEST_JOBS ?= 3
test: deps
	@$(MAKE) --no-print-directory test-build
	@TEST_JOBS=$(TEST_JOBS) sh tests/run.sh

golden: all
	@python3 tests/golden.py

fuzz: deps
	@sh tests/fuzz/run.sh $${FUZZ_SECONDS:-600}

PREFIX ?= /usr/local
install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 755 $(NNC) $(DESTDIR)$(PREFIX)/bin/nnc
	install -m 644 $(LIBRT) $(DESTDIR)$(PREFIX)/lib/libnnrt.a
	install -m 644 runtime/nnrt.h $(DESTDIR)$(PREFIX)/include/nnrt.h
	sed 's|@PREFIX@|$(PREFIX)|' runtime/nnrt.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/nnrt.pc

clean:
	rm -rf build

# ---------------------------------------------------------------- runtime unit tests

# Each tests/runtime/test_*.c is its own program linked against libnnrt; the runner prints
# PASS/FAIL per program (with the failing program's output) and a summary line. The first
# check compiles runtime/nnrt.h as C++ (it is used from C++ through extern "C").
RT_TEST_SRC = $(wildcard tests/runtime/test_*.c)
RT_TEST_BIN = $(RT_TEST_SRC:tests/runtime/%.c=$(BUILD)/tests/runtime/%)

$(BUILD)/tests/runtime/%: tests/runtime/%.c tests/runtime/check.h $(LIBRT)
	@mkdir -p $(dir $@)
	$(CC) $(ALLFLAGS) -Itests/runtime -o $@ $< $(LIBRT) $(LDLIBS)

.PHONY: runtime-tests
runtime-tests: $(RT_TEST_BIN)
	@pass=0; fail=0; \
	if $(CXX) -std=c++11 -Wall -Wextra -Werror -pedantic -fsyntax-only -x c++ runtime/nnrt.h; \
	then echo "PASS nnrt.h-as-c++"; pass=1; else echo "FAIL nnrt.h-as-c++"; fail=1; fi; \
	for t in $(RT_TEST_BIN); do \
	  name=$$(basename $$t); \
	  if $$t > $$t.log 2>&1; then echo "PASS $$name"; pass=$$((pass + 1)); \
	  else echo "FAIL $$name"; sed 's/^/    /' $$t.log; fail=$$((fail + 1)); fi; \
	done; \
	echo "$$pass passed, $$fail failed"; [ $$fail -eq 0 ]

# ---------------------------------------------------------------- what `make test` builds

# nnc, libnnrt and every unit and runtime test program, of both builds, in one parallel make
# (the generated parser and scanner first: bison's rule writes two files, which a parallel
# make could run twice at once).
test-programs: all $(UNIT_BIN) $(RT_TEST_BIN)
asan-test-programs:
	@$(MAKE) --no-print-directory $(ASAN_VARS) test-programs
test-build:
	@$(MAKE) --no-print-directory $(BUILD)/gen/lex.yy.c
	@$(MAKE) --no-print-directory $(ASAN_VARS) build/asan/gen/lex.yy.c
	@$(MAKE) --no-print-directory -j$(TEST_JOBS) test-programs asan-test-programs

# ---------------------------------------------------------------- benchmarks

# nnc against PyTorch on this machine (docs/performance.md); not part of `make test`.
# BENCH_REPS=N repetitions (default 5). The table goes to $(BUILD)/bench/results.md.
bench:
	@$(MAKE) --no-print-directory deps EXTRA_PACKAGES="python3-torch"
	@$(MAKE) --no-print-directory all
	@OPENBLAS_NUM_THREADS=1 /usr/bin/python3 tests/bench/bench.py --build $(BUILD) \
	    --reps $${BENCH_REPS:-5}
