# SPDX-License-Identifier: MIT
"""The cached-turn comparison of issue 5: kvchat's TTFT for a turn whose history is cached, against
llama.cpp's llama-server doing the same with its own prompt cache, and after a restart against its
slot save/restore.

usage: llamacpp_cached_turn.py KVCHAT_CACHE_JSON LLAMA_SERVER MODEL.gguf VOCAB THREADS REPEATS OUT.json
                               [KVCHAT_CLI HISTORY_DB]

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
  process restart  (with KVCHAT_CLI and HISTORY_DB, the benchmark's database of the 2,000-token
           conversation) kvchat-cli chat in a new process on a fresh copy of that database, one
           new message: the history comes from the disk tier; its turn record's TTFT (model load
           not included) against the peer restarted as above with the same token counts.
Token ids are random in-vocabulary ids from a fixed seed (kvchat's turn is chat text; the cost of a
forward pass does not depend on which ids it sees, only on how many).
"""
import json
import os
import random
import shutil
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


# kvchat's message in the process-restart scenario: about as long as the benchmark's measured ones.
QUESTION = ("Tell me one more thing about the harbour master and the old lighthouse keeper, and what "
            "they did together on that cold and windy night last winter")


def peer_restart(server, model, threads, slot_dir, ids, reused, new, repeats):
    """The peer's TTFT after a restart: history of `reused` tokens saved in a slot, then for each
    repeat a new server, slot restore + a request with `new` more tokens, timed together."""
    history = ids(reused)
    srv = Server(server, model, threads, slot_dir)
    try:
        srv.complete(history)
        saved = post(srv.port, "/slots/0?action=save", {"filename": "conversation.bin"})
    finally:
        srv.stop()
    os.sync()  # as for kvchat's database copy: no write-back during the measured restore
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
    return saved, runs


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
        saved, runs = peer_restart(server, model, threads, slot_dir, ids, reused, new, repeats)
        peer = statistics.median(r["ttft_ms"] for r in runs)
        result["scenarios"].append({"name": "after restart (kvchat: disk tier; llama.cpp: slot restore)",
                                    "reused_tokens": reused, "new_tokens": new, "kvchat_ttft_ms": kv_ttft,
                                    "llamacpp_ttft_ms": peer, "ratio_kvchat_over_llamacpp": kv_ttft / peer,
                                    "slot_save_reply": saved, "llamacpp_runs": runs})

        if len(sys.argv) > 9:
            # The two take turns, one restart each per round (the VM's speed drifts over minutes).
            cli, history_db = sys.argv[8:10]
            kv_runs, runs, saved = [], [], None
            with tempfile.TemporaryDirectory() as work:
                for i in range(repeats):
                    db = os.path.join(work, f"history-{i}.db")
                    shutil.copyfile(history_db, db)
                    os.sync()  # the copy's write-back would otherwise compete with the measured read
                    out = subprocess.run([cli, "chat", "-m", model, "--db", db, "--session", "history", "--threads",
                                          str(threads), "--message", QUESTION + f" ({i + 1})", "-n", "1", "--json"],
                                         check=True, capture_output=True, text=True).stdout
                    kv_runs.append(json.loads(out)["metrics"])
                    m = kv_runs[-1]
                    saved, peer_runs = peer_restart(server, model, threads, slot_dir, ids, int(m["reused_disk"]),
                                                    int(m["recomputed"]), 1)
                    runs += peer_runs
            kv_ttft = statistics.median(r["ttft_ms"] for r in kv_runs)
            peer = statistics.median(r["ttft_ms"] for r in runs)
            result["scenarios"].append({"name": "after a process restart (kvchat-cli in a new process; "
                                                "llama.cpp: new server, slot restore)",
                                        "reused_tokens": int(statistics.median(r["reused_disk"] for r in kv_runs)),
                                        "new_tokens": int(statistics.median(r["recomputed"] for r in kv_runs)),
                                        "kvchat_ttft_ms": kv_ttft, "llamacpp_ttft_ms": peer,
                                        "ratio_kvchat_over_llamacpp": kv_ttft / peer,
                                        "interleaved": True, "kvchat_runs": kv_runs, "llamacpp_runs": runs})

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
