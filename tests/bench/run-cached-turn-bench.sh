#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Cached turns, kvchat against llama.cpp's llama-server (issue 5): runs kvchat's KV cache benchmark
# (tests/bench/run-cache-bench.sh, SmolLM2, writes bench/results/cache-smollm2-cpu.json), then
# tests/bench/llamacpp_cached_turn.py, which gives llama-server (same model, same threads, built by
# tests/bench/llamacpp-peer.sh) the same number of cached and new tokens, with its prompt cache and
# after a restart with slot save/restore; and kvchat-cli's turn in a new process on the benchmark's
# conversation database against the peer's restart. Prints one table; writes
# bench/results/cached-turn-vs-llamacpp.json.
#
# Environment: KVCHAT_BENCH_THREADS (2), KVCHAT_BENCH_REPEATS (5), KVCHAT_SMOLLM2_GGUF.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"

model=${KVCHAT_SMOLLM2_GGUF:-$HOME/.cache/kvchat/models/SmolLM2-135M-Instruct.Q4_1.gguf}
threads=${KVCHAT_BENCH_THREADS:-2}
repeats=${KVCHAT_BENCH_REPEATS:-5}

bash tests/bench/run-cache-bench.sh
cmake --build build-bench --target kvchat-cli >/dev/null
peer=$(bash tests/bench/llamacpp-peer.sh | tail -n 1)
vocab=$(build-bench/app/kvchat-cli info -m "$model" | sed -n 's/^vocabulary:.*, \([0-9]*\) tokens.*/\1/p')
echo "load before llama-server: $(cat /proc/loadavg)"
python3 tests/bench/llamacpp_cached_turn.py bench/results/cache-smollm2-cpu.json "$peer/llama-server" "$model" \
    "$vocab" "$threads" "$repeats" bench/results/cached-turn-vs-llamacpp.json \
    build-bench/app/kvchat-cli build-bench/cache-bench-work/history.db
