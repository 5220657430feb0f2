# SPDX-License-Identifier: MIT
"""The cached-turn comparison of issue 5: kvchat's TTFT for a turn whose history is cached, against
llama.cpp's llama-server doing the same with its own prompt cache, and after a restart against its
slot save/restore.

usage: llamacpp_cached_turn.py KVCHAT_CACHE_JSON LLAMA_SERVER MODEL.gguf VOCAB THREADS REPEATS OUT.json

KVCHAT_CACHE_JSON is kvchat-bench-cache's output; from its "device" and "disk_restart" scenarios
it takes how many tokens the measured turn reused and how many it computed, so the peer gets the
same counts:
  cached   the history (R tokens) is sent once with cache_prompt; then each measured request sends
           the history plus N new tokens (different each time) with n_predict 1: the client's wall
           time of that request is the peer's TTFT (prompt cache hit of R tokens, N computed).
  restart  the history is sent once and the slot saved (/slots/0?action=save); the server is
           stopped and a new one started (not timed: kvchat's restart does not time the model
           load either); then restore (/slots/0?action=restore) + the request with the N new
           tokens, both timed together: the peer's TTFT after a restart, with the saved file in
           the OS page cache, as kvchat's disk_restart scenario has its database.
Token ids are random in-vocabulary ids from a fixed seed (kvchat's turn is chat text; the cost of a
forward pass does not depend on which ids it sees, only on how many).
"""
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port, path, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


class Server:
    def __init__(self, binary, model, threads, slot_dir):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [binary, "-m", model, "-t", str(threads), "-tb", str(threads), "-c", "4096", "-np", "1",
             "--slot-save-path", slot_dir + "/", "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except Exception:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("llama-server did not become ready")

    def complete(self, tokens):
        start = time.perf_counter()
        r = post(self.port, "/completion", {"prompt": tokens, "n_predict": 1, "cache_prompt": True,
                                            "temperature": 0})
        return (time.perf_counter() - start) * 1000.0, r.get("timings", {})

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def scenario_counts(kv, name):
    s = next(x for x in kv["scenarios"] if x["name"] == name)
    c = s["counts_median"]
    reused = int(c["reused_device"] + c["reused_host"] + c["reused_disk"])
    return reused, int(c["recomputed"]), s["breakdown_ms_median"]["ttft"]


def main():
    kv_path, server, model, vocab, threads, repeats, out_path = sys.argv[1:8]
    vocab, threads, repeats = int(vocab), int(threads), int(repeats)
    kv = json.load(open(kv_path))
    rng = random.Random(1234)

    def ids(n):
        return [rng.randrange(100, vocab) for _ in range(n)]

    result = {"benchmark": "llamacpp_cached_turn.py: kvchat-bench-cache vs llama-server prompt cache and slot "
                           "save/restore", "model": os.path.basename(model), "threads": threads,
              "repeats": repeats, "kvchat_source": os.path.basename(kv_path), "scenarios": []}
    with tempfile.TemporaryDirectory() as slot_dir:
        # Cached: history in the prompt cache, N new tokens.
        reused, new, kv_ttft = scenario_counts(kv, "device")
        history = ids(reused)
        srv = Server(server, model, threads, slot_dir)
        try:
            srv.complete(history)  # fills the cache (cold, not compared)
            runs = []
            for _ in range(repeats):
                ms, timings = srv.complete(history + ids(new))
                runs.append({"ttft_ms": ms, "server_timings": timings})
        finally:
            srv.stop()
        peer = statistics.median(r["ttft_ms"] for r in runs)
        result["scenarios"].append({"name": "cached (kvchat: KV on device)", "reused_tokens": reused,
                                    "new_tokens": new, "kvchat_ttft_ms": kv_ttft, "llamacpp_ttft_ms": peer,
                                    "ratio_kvchat_over_llamacpp": kv_ttft / peer, "llamacpp_runs": runs})

        # After a restart: kvchat from its disk tier, the peer from a saved slot.
        reused, new, kv_ttft = scenario_counts(kv, "disk_restart")
        history = ids(reused)
        srv = Server(server, model, threads, slot_dir)
        try:
            srv.complete(history)
            saved = post(srv.port, "/slots/0?action=save", {"filename": "conversation.bin"})
        finally:
            srv.stop()
        runs = []
        for _ in range(repeats):
            srv = Server(server, model, threads, slot_dir)
            try:
                start = time.perf_counter()
                restored = post(srv.port, "/slots/0?action=restore", {"filename": "conversation.bin"})
                restore_ms = (time.perf_counter() - start) * 1000.0
                ms, timings = srv.complete(history + ids(new))
                runs.append({"ttft_ms": restore_ms + ms, "restore_ms": restore_ms, "request_ms": ms,
                             "restore_reply": restored, "server_timings": timings})
            finally:
                srv.stop()
        peer = statistics.median(r["ttft_ms"] for r in runs)
        result["scenarios"].append({"name": "after restart (kvchat: disk tier; llama.cpp: slot restore)",
                                    "reused_tokens": reused, "new_tokens": new, "kvchat_ttft_ms": kv_ttft,
                                    "llamacpp_ttft_ms": peer, "ratio_kvchat_over_llamacpp": kv_ttft / peer,
                                    "slot_save_reply": saved, "llamacpp_runs": runs})

    with open(out_path, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print("| scenario | cached + new tokens | kvchat TTFT (ms) | llama.cpp TTFT (ms) | kvchat / llama.cpp |")
    print("|---|---|---:|---:|---:|")
    for s in result["scenarios"]:
        print(f"| {s['name']} | {s['reused_tokens']} + {s['new_tokens']} | {s['kvchat_ttft_ms']:.1f} | "
              f"{s['llamacpp_ttft_ms']:.1f} | {s['ratio_kvchat_over_llamacpp']:.2f} |")
    print(f"\nwrote {out_path}")


if __name__ == "__main__":
    main()
