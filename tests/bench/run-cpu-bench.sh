#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# kvchat's CPU backend against llama.cpp, on the same GGUF files, the same thread count, one
# program after the other (never at the same time), and one table at the end: each measure,
# kvchat, llama.cpp and the ratio (above 1 = kvchat better).
#
# Models: SmolLM2-135M-Instruct Q4_1 (the PyPI file, fetched when missing) and random-weight models
# at TinyLlama-1.1B's shape in Q8_0, Q4_0 and Q4_K, written by kvchat-make-random-model (the
# project's GGUF writer) into ~/.cache/kvchat/models/random/ when missing.
#
# Builds: kvchat-bench in build-bench/ (Release, KVCHAT_NATIVE=ON, as llama.cpp's GGML_NATIVE);
# llama.cpp from the llama-cpp-python sdist by tests/bench/llamacpp-peer.sh, outside the repo.
#
# The machine's speed drifts by tens of percent over minutes (a shared VM), so the two engines
# take turns: each of the R rounds runs kvchat-bench once, then llama-bench once, then
# llama-batched-bench once, and every number is the median over the rounds.
#
# Measures (llama.cpp's tools add their own warm-up run, kvchat-bench its own):
#   pp N        prefill tokens/s of an N-token prompt on an empty cache  (llama-bench -p)
#   tg 128      decode tokens/s from an empty cache                      (llama-bench -n)
#   tg 128 @ 1024  decode tokens/s after a 1,024-token prompt            (llama-batched-bench
#                  -npp 1024 -ntg 128 -npl 1: its S_TG; llama-bench of this version has no depth)
#   ttft 2000   cold time to first token of a 2,000-token prompt, ms     (llama-batched-bench
#                  -npp 2000 -ntg 1: T_PP + T_TG, prompt and first token)
#   peak RSS    kvchat's, against model file + KV + 10%
#
# Environment: KVCHAT_BENCH_THREADS (2), KVCHAT_BENCH_REPEATS (3), KVCHAT_BENCH_MODELS (space-
# separated subset of: smollm2 tinyllama-Q8_0 tinyllama-Q4_0 tinyllama-Q4_K), KVCHAT_BENCH_OUT
# (bench/results/cpu-vs-llamacpp.json). The load average before every program goes into the JSON.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"

build=build-bench
threads=${KVCHAT_BENCH_THREADS:-2}
repeats=${KVCHAT_BENCH_REPEATS:-3}
models=${KVCHAT_BENCH_MODELS:-smollm2 tinyllama-Q8_0 tinyllama-Q4_0 tinyllama-Q4_K}
out=${KVCHAT_BENCH_OUT:-bench/results/cpu-vs-llamacpp.json}
smollm2=$HOME/.cache/kvchat/models/SmolLM2-135M-Instruct.Q4_1.gguf
random_dir=$HOME/.cache/kvchat/models/random

cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKVCHAT_BUILD_BENCHMARKS=ON -DKVCHAT_BUILD_TESTS=OFF \
    -DKVCHAT_NATIVE=ON >/dev/null
cmake --build "$build" --target kvchat-bench kvchat-make-random-model
peer=$(bash tests/bench/llamacpp-peer.sh | tail -n 1)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
runs=()
for name in $models; do
    case $name in
        smollm2)
            bash packaging/fetch-smollm2.sh "$smollm2"
            path=$smollm2 ;;
        tinyllama-*)
            type=${name#tinyllama-}
            path=$random_dir/tinyllama-shape-$type.gguf
            mkdir -p "$random_dir"
            [[ -f $path ]] || "$build/tests/bench/kvchat-make-random-model" --type "$type" -o "$path" ;;
        *) echo "run-cpu-bench: unknown model $name" >&2; exit 2 ;;
    esac
    [[ -f $path ]] || { echo "run-cpu-bench: no model file for $name; nothing measured" >&2; exit 1; }
    d=$tmp/$name
    mkdir -p "$d"
    echo "== $name ($path)"
    for r in $(seq "$repeats"); do
        echo "-- round $r of $repeats"
        echo "$r kvchat $(cat /proc/loadavg)" >>"$d/loadavg"
        "$build/tests/bench/kvchat-bench" -m "$path" --threads "$threads" --repeats 1 --pp 128,512,2048 \
            --tg 128 --tg-depth 0,1024 --ttft 2000 --json "$d/kvchat-$r.json"
        echo "$r llama-bench $(cat /proc/loadavg)" >>"$d/loadavg"
        "$peer/llama-bench" -m "$path" -p 128,512,2048 -n 128 -t "$threads" -r 1 -o json >"$d/llama-bench-$r.json"
        echo "$r llama-batched-bench $(cat /proc/loadavg)" >>"$d/loadavg"
        "$peer/llama-batched-bench" -m "$path" -c 4096 -b 2048 -ub 512 -npp 1024 -ntg 128 -npl 1 -t "$threads" \
            --output-format jsonl 2>/dev/null | grep '^{' >>"$d/batched-depth.jsonl"
        "$peer/llama-batched-bench" -m "$path" -c 4096 -b 2048 -ub 512 -npp 2000 -ntg 1 -npl 1 -t "$threads" \
            --output-format jsonl 2>/dev/null | grep '^{' >>"$d/batched-ttft.jsonl"
    done
    runs+=("$name=$path")
done

mkdir -p "$(dirname "$out")"
python3 tests/bench/cpu_bench_report.py "$tmp" "$out" "$peer" "${runs[@]}"
