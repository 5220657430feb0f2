# SPDX-License-Identifier: MIT
"""Joins the raw outputs of run-cpu-bench.sh into one JSON file and prints the comparison table.

usage: cpu_bench_report.py TMPDIR OUT.json PEER_BIN_DIR name=path...
"""
import json
import os
import statistics
import sys


def median(values):
    return statistics.median(values) if values else None


def rounds(d, prefix):
    files = sorted(f for f in os.listdir(d) if f.startswith(prefix + "-") and f.endswith(".json"))
    return [json.load(open(os.path.join(d, f))) for f in files]


def llama_bench_rows(runs):
    samples = {}
    for run in runs:
        for r in run:
            name = f"pp{r['n_prompt']}" if r["n_gen"] == 0 else f"tg{r['n_gen']}"
            samples.setdefault(name, []).extend(r.get("samples_ts") or [r["avg_ts"]])
    return {name: median(v) for name, v in samples.items()}


def kvchat_rows(runs):
    values = {}
    for run in runs:
        for t in run["tests"]:
            v = t.get("median_ttft_ms", t["median_tokens_per_s"])
            values.setdefault(t["test"], []).append(v)
    return {name: median(v) for name, v in values.items()}


def jsonl(path):
    if not os.path.exists(path):
        return []
    return [json.loads(line) for line in open(path) if line.strip()]


def main():
    tmp, out_path, peer = sys.argv[1:4]
    models = [arg.split("=", 1) for arg in sys.argv[4:]]
    report = {"benchmark": "run-cpu-bench.sh: kvchat-bench vs llama.cpp (llama-bench, llama-batched-bench), "
                           "same GGUF, same threads, one after the other",
              "llamacpp_bin_dir": peer, "models": []}
    table = []
    for name, path in models:
        d = os.path.join(tmp, name)
        kv_runs = rounds(d, "kvchat")
        ll_runs = rounds(d, "llama-bench")
        kv = kv_runs[-1]
        ll = llama_bench_rows(ll_runs)
        depth = jsonl(os.path.join(d, "batched-depth.jsonl"))
        ttft = jsonl(os.path.join(d, "batched-ttft.jsonl"))
        ours = kvchat_rows(kv_runs)
        rows = []

        def row(measure, kvchat, peer_value, unit, higher_is_better=True):
            ratio = None
            if kvchat and peer_value:
                ratio = kvchat / peer_value if higher_is_better else peer_value / kvchat
            rows.append({"measure": measure, "unit": unit, "kvchat": kvchat, "llamacpp": peer_value,
                         "ratio_kvchat_better_above_1": ratio})

        for n in (128, 512, 2048):
            row(f"pp{n}", ours.get(f"pp{n}"), ll.get(f"pp{n}"), "tokens/s")
        row("tg128", ours.get("tg128"), ll.get("tg128"), "tokens/s")
        row("tg128 @ 1024", ours.get("tg128@d1024"), median([r["speed_tg"] for r in depth]), "tokens/s")
        row("ttft 2000 cold", ours.get("ttft2000"),
            median([1000.0 * (r["t_pp"] + r["t_tg"]) for r in ttft]), "ms", higher_is_better=False)
        peak_rss = max(r.get("peak_rss_mib", 0) for r in kv_runs)
        budget = dict(kv.get("rss_budget", {}))
        budget["within_budget"] = peak_rss <= budget.get("budget_mib", 0)
        report["models"].append({"name": name, "file": os.path.basename(path), "rounds": len(kv_runs),
                                 "comparison": rows, "peak_rss_mib": peak_rss, "rss_budget": budget,
                                 "int8_matrices": kv.get("int8_matrices"),
                                 "loadavg_before_each_program": open(os.path.join(d, "loadavg")).read().splitlines(),
                                 "kvchat_raw": kv_runs, "llama_bench_raw": ll_runs,
                                 "batched_bench_depth_raw": depth, "batched_bench_ttft_raw": ttft})
        table.append((name, rows, peak_rss, budget))
    if report["models"]:
        report["machine"] = report["models"][0]["kvchat_raw"][0].get("machine")
        report["kvchat_commit"] = report["models"][0]["kvchat_raw"][0].get("kvchat_commit")
    with open(out_path, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")

    print()
    print("| model | measure | kvchat | llama.cpp | kvchat advantage |")
    print("|---|---|---:|---:|---:|")
    for name, rows, rss, budget in table:
        for r in rows:
            fmt = (lambda v: "-" if v is None else f"{v:.1f}")
            ratio = r["ratio_kvchat_better_above_1"]
            print(f"| {name} | {r['measure']} ({r['unit']}) | {fmt(r['kvchat'])} | {fmt(r['llamacpp'])} | "
                  f"{'-' if ratio is None else f'{ratio:.2f}x'} |")
        if rss is not None:
            print(f"| {name} | peak RSS (MiB) | {rss:.0f} | budget {budget.get('budget_mib', 0):.0f} "
                  f"(file + KV + 10%) | {'within' if budget.get('within_budget') else 'OVER'} |")
    print(f"\nwrote {out_path}")


if __name__ == "__main__":
    main()
