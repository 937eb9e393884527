#!/bin/sh
# make demo: the README's story end to end — check the examples, train the Fashion-MNIST
# MLP from the command line, compile it to an object file and a header, link the embedding
# example (examples/embed/main.c) with a plain C compiler, and classify test images with it.
set -e
BUILD=${1:-build}
NNC=$BUILD/nnc
OUT=$BUILD/demo
DATA=${NNC_DATA:-/usr/share/datasets/fashion-mnist}
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
step() { printf '\n== %s\n' "$*"; }

step "nnc check: every example"
for f in examples/*.nn; do $NNC check "$f" && echo "ok  $f"; done

step "nnc summary examples/fashion_mlp.nn"
$NNC summary examples/fashion_mlp.nn

step "nnc train examples/fashion_mlp.nn (10 epochs, compiled in-process)"
$NNC train examples/fashion_mlp.nn --save "$OUT/fashion_mlp.safetensors" --log "$OUT/fashion_mlp.csv" \
    --plot "$OUT/fashion_mlp.svg"

step "nnc compile examples/fashion_mlp.nn -> $OUT/fashion_mlp.o + fashion_mlp.h"
$NNC compile examples/fashion_mlp.nn -o "$OUT/fashion_mlp.o" --header "$OUT/fashion_mlp.h"
grep -E '#define FASHION_MLP_|^int fashion_mlp' "$OUT/fashion_mlp.h"

step "cc examples/embed/main.c $OUT/fashion_mlp.o $BUILD/libnnrt.a -lopenblas -lz -lm"
${CC:-cc} -std=c11 -O2 -I"$OUT" -Iruntime examples/embed/main.c "$OUT/fashion_mlp.o" "$BUILD/libnnrt.a" \
    -lopenblas -lz -lm -o "$OUT/classify"

step "classify 10 test images with the embedded model"
"$OUT/classify" "$OUT/fashion_mlp.safetensors" "$DATA/t10k-images-idx3-ubyte.gz" \
    "$DATA/t10k-labels-idx1-ubyte.gz" 10

step "done: curves in $OUT/fashion_mlp.svg, per-epoch numbers in $OUT/fashion_mlp.csv"
