#!/bin/sh
# Runs every test suite and ends with one line "N passed, N failed".
#   lit suites (golden, diagnostics, numeric references, gradcheck, compile, embed)
#     once with the normal build and once with the ASan + UBSan build;
#   C unit tests of the compiler and of the runtime, normal and sanitized.
# Usage: sh tests/run.sh   (after `make test-build`; `make test` does both)
#
# Everything runs as jobs of one pool, TEST_JOBS at a time (default 3), the longest first:
# each lit pass in LIT_SHARDS shards (lit --run-shard, one test at a time each), each unit
# test program on its own, the runtime tests of a build as one job. Results are added up
# and reported in a fixed order once every job is done; logs go to build/test-logs/.
#   sh tests/run.sh --job JOB    runs one job (what the pool runs)
cd "$(dirname "$0")/.." || exit 2
LIT="${LIT:-python3 /usr/lib/llvm-19/build/utils/lit/lit.py}"
ASAN_MAKE="BUILD=build/asan CFLAGS=-O1\ -g\ -fno-omit-frame-pointer SANITIZE=-fsanitize=address,undefined\ -fno-sanitize-recover=undefined"
# Sanitizer options of the unit and runtime test programs, unless set. The lit passes get
# the caller's, else lit.cfg.py's, under which a report aborts (so that `not` cannot take
# it for an expected failure).
unit_sanitizer_options() {
    export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
    export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
}
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}"
TEST_JOBS="${TEST_JOBS:-3}"
LIT_SHARDS="${LIT_SHARDS:-4}"
log=build/test-logs
jobs=$log/jobs
# The numeric reference tests run JIT-compiled code, which the sanitizers do not instrument;
# the sanitized pass covers everything else (front end, interpreter, driver, file I/O).
ASAN_LIT_FILTER="^nnc :: numeric/"
# The lit tests that take a minute or more: a job of their own in each pass, started first,
# and left out of the shards (only a matter of scheduling: a pass runs all of its tests).
LIT_SLOW="^nnc :: (embed/ref-api-|gradcheck/example-fashion-cnn)"

# ---------------------------------------------------------------- one job

# A job writes $jobs/JOB.log (its output) and $jobs/JOB.result: "PASSED FAILED", and adds
# "WALL_SECONDS CPU_SECONDS JOB" to $jobs/times.
# JOB is one of
#   lit.K, lit-asan.K          shard K (1..LIT_SHARDS) of the lit pass of build/nnc, build/asan/nnc
#                              but the LIT_SLOW tests; lit.slow, lit-asan.slow: those
#   unit.NAME, unit-asan.NAME  the unit test program NAME (e.g. test_passes) of that build;
#                              the sanitized ones with NNC_TEST_SMALL=1 (smaller batches)
#   runtime, runtime-asan      `make runtime-tests` of that build
run_job() {
    job=$1
    out="$jobs/$job.log"
    start=$(date +%s)
    case $job in
    lit.* | lit-asan.*)
        shard=${job#*.}
        if [ "${job%%.*}" = lit ]; then
            set -- --param nnc="$PWD/build/nnc"
            skip=""
        else
            set -- --param nnc="$PWD/build/asan/nnc"
            skip="$ASAN_LIT_FILTER"
        fi
        if [ "$shard" = slow ]; then
            set -- "$@" --filter "$LIT_SLOW"
            [ -n "$skip" ] && set -- "$@" --filter-out "$skip"
        else
            # lexical order, and no recorded times: every shard must split the same list
            set -- "$@" --filter-out "${skip:+$skip|}$LIT_SLOW" \
                --num-shards "$LIT_SHARDS" --run-shard "$shard"
        fi
        $LIT -s --no-progress-bar -j 1 --order=lexical --skip-test-time-recording "$@" tests \
            > "$out" 2>&1
        passed=$(sed -n 's/^ *Passed *: *\([0-9]*\).*/\1/p' "$out" | head -1)
        failed=0
        for kind in Failed Unresolved 'Timed Out' 'Unexpectedly Passed'; do
            n=$(sed -n "s/^ *$kind *: *\([0-9]*\).*/\1/p" "$out" | head -1)
            failed=$((failed + ${n:-0}))
        done
        if [ -z "$passed" ] && [ "$failed" = 0 ] && ! grep -q 'shard does not contain any tests' "$out"; then
            echo "lit did not run" >> "$out"
            failed=1
        fi
        ;;
    unit.* | unit-asan.*)
        name=${job#*.}
        unit_sanitizer_options
        if [ "${job%%.*}" = unit ]; then
            build/unit/"$name" > "$out" 2>&1
        else
            NNC_TEST_SMALL=1 build/asan/unit/"$name" > "$out" 2>&1
        fi
        if [ $? = 0 ]; then passed=1 failed=0; else passed=0 failed=1; fi
        ;;
    runtime | runtime-asan)
        unit_sanitizer_options
        if [ "$job" = runtime ]; then
            make --no-print-directory runtime-tests > "$out" 2>&1
        else
            eval make --no-print-directory "$ASAN_MAKE" runtime-tests > "$out" 2>&1
        fi
        status=$?
        line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out" | tail -1)
        passed=$(echo "$line" | sed -n 's/^\([0-9]*\) passed.*/\1/p')
        failed=$(echo "$line" | sed -n 's/.* \([0-9]*\) failed$/\1/p')
        if [ -z "$line" ]; then passed=0; failed=1; fi
        if [ "$status" != 0 ] && [ "${failed:-0}" = 0 ]; then failed=1; fi
        ;;
    *)
        echo "unknown job $job" > "$out"
        passed=0 failed=1
        ;;
    esac
    echo "${passed:-0} ${failed:-0}" > "$jobs/$job.result"
    # wall seconds, then CPU seconds of the job's processes (user + system, from `times`)
    times > "$jobs/$job.cpu"
    cpu=$(sed -n 2p "$jobs/$job.cpu" | sed 's/m/ /g; s/s//g' | awk '{printf "%d", $1 * 60 + $2 + $3 * 60 + $4}')
    rm -f "$jobs/$job.cpu"
    echo "$(($(date +%s) - start)) ${cpu:-?} $job" >> "$jobs/times"
}

if [ "$1" = --job ]; then
    run_job "$2"
    exit 0
fi

# ---------------------------------------------------------------- the pool

rm -rf "$jobs"
mkdir -p "$jobs"
units=$(cd tests/unit && ls test_*.c | sed 's/\.c$//')
shards=$(seq 1 "$LIT_SHARDS")
# the longest first (minutes, on this machine): the sanitized test_passes (2.5), the slow
# lit tests (1 each), the lit shards (0.5-1.5), the sanitized test_llvm (1), the normal
# test_passes and test_llvm (0.5)
{
    echo unit-asan.test_passes
    echo lit-asan.slow
    echo lit.slow
    for k in $shards; do echo lit-asan.$k; echo lit.$k; done
    echo unit-asan.test_llvm
    echo unit.test_passes
    echo unit.test_llvm
    for u in $units; do
        case $u in test_passes | test_llvm) ;; *) echo unit-asan.$u; echo unit.$u ;; esac
    done
    echo runtime-asan
    echo runtime
} > "$jobs/list"
xargs -P "$TEST_JOBS" -n 1 sh tests/run.sh --job < "$jobs/list"

# ---------------------------------------------------------------- results

total_pass=0
total_fail=0

# add PASSED FAILED NAME
add() {
    total_pass=$((total_pass + $1))
    total_fail=$((total_fail + $2))
    printf '%-34s %5d passed, %d failed\n' "$3" "$1" "$2"
}

# result JOB: sets passed and failed from the job's result file (a job without one failed)
result() {
    if [ -s "$jobs/$1.result" ]; then
        read -r passed failed < "$jobs/$1.result"
    else
        passed=0 failed=1
        echo "job $1 did not finish" >> "$jobs/$1.log"
    fi
}

# report_lit NAME PREFIX: the shards' logs in one log, their counts in one line
report_lit() {
    p=0 f=0
    : > "$log/$1.log"
    for k in slow $shards; do
        result "$2.$k"
        p=$((p + passed)) f=$((f + failed))
        cat "$jobs/$2.$k.log" >> "$log/$1.log"
    done
    [ "$f" != 0 ] && grep -E '^(FAIL|UNRESOLVED|TIMEOUT|XPASS):|lit did not run|did not finish' \
        "$log/$1.log" | head -40 >&2
    add "$p" "$f" "$1"
}

# report_units NAME PREFIX: a PASS or FAIL line per program (with a failing one's output)
report_units() {
    p=0 f=0
    : > "$log/$1.log"
    for u in $units; do
        result "$2.$u"
        if [ "$failed" = 0 ] && [ "$passed" = 1 ]; then
            echo "PASS $u" >> "$log/$1.log"
            p=$((p + 1))
        else
            echo "FAIL $u" >> "$log/$1.log"
            sed 's/^/    /' "$jobs/$2.$u.log" >> "$log/$1.log"
            echo "FAIL $u ($2)" >&2
            tail -15 "$jobs/$2.$u.log" >&2
            f=$((f + 1))
        fi
    done
    add "$p" "$f" "$1"
}

report_runtime() {
    result "$2"
    cp "$jobs/$2.log" "$log/$1.log"
    [ "$failed" != 0 ] && { grep -E '^FAIL' "$log/$1.log" | head -20 >&2; tail -15 "$log/$1.log" >&2; }
    add "$passed" "$failed" "$1"
}

report_lit "lit" lit
report_lit "lit (asan+ubsan)" lit-asan
report_units "compiler unit tests" unit
report_units "compiler unit tests (asan+ubsan)" unit-asan
report_runtime "runtime unit tests" runtime
report_runtime "runtime unit tests (asan+ubsan)" runtime-asan
{
    echo "# seconds: wall, CPU (user + system); job"
    sort -rn "$jobs/times"
    awk '{ cpu += $2 } END { print "# CPU seconds of all jobs: " cpu }' "$jobs/times"
} > "$log/job-times.txt"
echo "logs in $log/"
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" = 0 ]
