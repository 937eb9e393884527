#!/bin/sh
# Runs every test suite and ends with one line "N passed, N failed".
#   lit suites (golden, diagnostics, numeric references, gradcheck, compile, embed)
#     once with the normal build and once with the ASan + UBSan build;
#   C unit tests of the compiler and of the runtime, normal and sanitized.
# Usage: sh tests/run.sh   (after `make all asan`; `make test` does both)
cd "$(dirname "$0")/.." || exit 2
LIT="${LIT:-python3 /usr/lib/llvm-19/build/utils/lit/lit.py}"
ASAN_MAKE="BUILD=build/asan CFLAGS=-O1\ -g\ -fno-omit-frame-pointer SANITIZE=-fsanitize=address,undefined\ -fno-sanitize-recover=undefined"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}"
total_pass=0
total_fail=0
log=build/test-logs
mkdir -p "$log"

# add PASSED FAILED NAME
add() {
    total_pass=$((total_pass + $1))
    total_fail=$((total_fail + $2))
    printf '%-34s %5d passed, %d failed\n' "$3" "$1" "$2"
}

# run_lit NAME NNC_BINARY [LIT_OPTIONS...]
run_lit() {
    name=$1 binary=$2
    shift 2
    $LIT -s --no-progress-bar --param nnc="$binary" "$@" tests > "$log/$name.log" 2>&1
    set -- "$name"
    passed=$(sed -n 's/^ *Passed *: *\([0-9]*\).*/\1/p' "$log/$1.log" | head -1)
    failed=0
    for kind in Failed Unresolved 'Timed Out' 'Unexpectedly Passed'; do
        n=$(sed -n "s/^ *$kind *: *\([0-9]*\).*/\1/p" "$log/$1.log" | head -1)
        failed=$((failed + ${n:-0}))
    done
    if [ -z "$passed" ] && [ "$failed" = 0 ]; then
        echo "lit did not run ($1); see $log/$1.log" >&2; tail -5 "$log/$1.log" >&2; failed=1
    fi
    [ "$failed" != 0 ] && grep -E '^(FAIL|UNRESOLVED|TIMEOUT|XPASS):' "$log/$1.log" | head -40 >&2
    add "${passed:-0}" "$failed" "$1"
}

# run_make NAME MAKE_ARGS...   (targets print "N passed, N failed" as their last summary)
run_make() {
    name=$1; shift
    eval make --no-print-directory "$@" > "$log/$name.log" 2>&1
    status=$?
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log/$name.log" | tail -1)
    passed=$(echo "$line" | sed -n 's/^\([0-9]*\) passed.*/\1/p')
    failed=$(echo "$line" | sed -n 's/.* \([0-9]*\) failed$/\1/p')
    if [ -z "$line" ]; then passed=0; failed=1; fi
    if [ "$status" != 0 ] && [ "${failed:-0}" = 0 ]; then failed=1; fi
    [ "$failed" != 0 ] && { grep -E '^FAIL' "$log/$name.log" | head -20 >&2; tail -15 "$log/$name.log" >&2; }
    add "${passed:-0}" "${failed:-0}" "$name"
}

run_lit "lit" "$PWD/build/nnc"
# The numeric reference tests run JIT-compiled code, which the sanitizers do not instrument;
# the sanitized pass covers everything else (front end, interpreter, driver, file I/O).
run_lit "lit (asan+ubsan)" "$PWD/build/asan/nnc" --filter-out "^nnc :: numeric/"
run_make "compiler unit tests" unit-tests
run_make "compiler unit tests (asan+ubsan)" "$ASAN_MAKE" unit-tests
if grep -q '^runtime-tests:' Makefile; then
    run_make "runtime unit tests" runtime-tests
    run_make "runtime unit tests (asan+ubsan)" "$ASAN_MAKE" runtime-tests
fi
echo "logs in $log/"
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" = 0 ]
