#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds llama.cpp's llama-bench, llama-batched-bench and llama-server (CPU only, native) as the
# peer for kvchat's CPU benchmarks, from the llama.cpp sources vendored in the PyPI sdist of
# llama-cpp-python (pinned below). Everything is downloaded, extracted and built outside the
# repository, in
#   ${XDG_CACHE_HOME:-~/.cache}/kvchat/llamacpp-<version>/
# and the build is skipped when the binaries are already there. Prints the directory holding the
# binaries as the last line of stdout.
#
# Environment: KVCHAT_LLAMACPP_PY_VERSION (default 0.3.2), KVCHAT_LLAMACPP_JOBS (default 2).
set -euo pipefail

version=${KVCHAT_LLAMACPP_PY_VERSION:-0.3.2}
jobs=${KVCHAT_LLAMACPP_JOBS:-2}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/kvchat/llamacpp-$version
bindir=$cache/build/bin
targets=(llama-bench llama-batched-bench llama-server)

have_all() {
    local t
    for t in "${targets[@]}"; do [[ -x $bindir/$t ]] || return 1; done
}
if have_all; then
    echo "$bindir"
    exit 0
fi

mkdir -p "$cache"
sdist=$cache/llama_cpp_python-$version.tar.gz
if [[ ! -f $sdist ]]; then
    echo "llamacpp-peer: downloading llama-cpp-python==$version sdist" >&2
    python3 -m pip download --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$cache" >&2
fi
src=$cache/llama_cpp_python-$version/vendor/llama.cpp
if [[ ! -f $src/CMakeLists.txt ]]; then
    echo "llamacpp-peer: extracting vendor/llama.cpp" >&2
    tar -xzf "$sdist" -C "$cache" "llama_cpp_python-$version/vendor/llama.cpp"
fi

echo "llamacpp-peer: building ${targets[*]} (CPU, -j$jobs); this takes minutes" >&2
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S "$src" -B "$cache/build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=ON -DLLAMA_BUILD_SERVER=ON >&2
cmake --build "$cache/build" --target "${targets[@]}" -j "$jobs" >&2
have_all || { echo "llamacpp-peer: missing binaries in $bindir after the build" >&2; exit 1; }
echo "$bindir"
