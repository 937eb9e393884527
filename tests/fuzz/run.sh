#!/bin/sh
# run.sh [SECONDS [LIBFUZZER-FLAGS...]] — build the front-end fuzzer with clang-19 (libFuzzer
# + ASan + UBSan) and run it for SECONDS (default 600) on the seed corpus tests/fuzz/corpus.
#
# Everything it writes goes under build/fuzz/: the generated scanner and parser, the binary,
# the growing corpus (corpus/) and any crashing inputs (artifacts/). Copy an input that found
# a bug into tests/fuzz/regress/ so tests/fuzz/regress.test keeps checking it.
set -eu
seconds=${1:-600}
[ $# -gt 0 ] && shift
root=$(cd "$(dirname "$0")/../.." && pwd)
out=$root/build/fuzz
clang=${CLANG:-/usr/lib/llvm-19/bin/clang}
mkdir -p "$out/corpus" "$out/artifacts"

bison -Wall -Werror --defines="$out/nn.tab.h" -o "$out/nn.tab.c" "$root/lang/nn.y"
flex --header-file="$out/lex.yy.h" -o "$out/lex.yy.c" "$root/lang/nn.l"
"$clang" -std=c11 -g -O1 -fno-omit-frame-pointer -D_GNU_SOURCE \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$root/lang" -I"$out" \
    "$root"/lang/*.c "$out/nn.tab.c" "$out/lex.yy.c" "$root/tests/fuzz/fuzz_parse.c" \
    -lm -o "$out/fuzz_parse"

echo "fuzz: running for $seconds s (corpus $out/corpus, crashes in $out/artifacts)"
cd "$out"
exec ./fuzz_parse -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -max_len=65536 -print_final_stats=1 \
    -dict="$root/tests/fuzz/nn.dict" -artifact_prefix="$out/artifacts/" "$@" \
    "$out/corpus" "$root/tests/fuzz/corpus"
