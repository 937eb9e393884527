#!/bin/sh
# make demo: shows nnc on the examples — checking, summaries, IR, gradient checks, and,
# where the build has them, training and the embedding example.
set -e
BUILD=${1:-build}
NNC=$BUILD/nnc
cd "$(dirname "$0")/.."
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "nnc check: every example"
for f in examples/*.nn; do $NNC check "$f" && echo "ok  $f"; done

step "nnc summary examples/fashion_mlp.nn"
$NNC summary examples/fashion_mlp.nn

step "nnc summary examples/fashion_cnn.nn"
$NNC summary examples/fashion_cnn.nn || true

step "nnc dump examples/logreg.nn --ir --fn=infer"
$NNC dump examples/logreg.nn --ir --fn=infer

step "nnc gradcheck examples/logreg.nn"
$NNC gradcheck examples/logreg.nn || true
