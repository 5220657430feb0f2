#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds llama.cpp's llama-bench (CPU only) as a peer for kvchat's CPU benchmark, from the
# llama.cpp sources vendored in the PyPI sdist of llama-cpp-python (pinned below). Everything is
# downloaded, extracted and built outside the repository, in
#   ${XDG_CACHE_HOME:-~/.cache}/kvchat/llamacpp-<version>/
# and the build is skipped when the binary is already there. Prints the path of llama-bench as
# the last line of stdout.
#
# Environment: KVCHAT_LLAMACPP_PY_VERSION (default 0.3.2), KVCHAT_LLAMACPP_JOBS (default 2).
set -euo pipefail

version=${KVCHAT_LLAMACPP_PY_VERSION:-0.3.2}
jobs=${KVCHAT_LLAMACPP_JOBS:-2}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/kvchat/llamacpp-$version
bin=$cache/build/bin/llama-bench

if [[ -x $bin ]]; then
    echo "$bin"
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

echo "llamacpp-peer: building llama-bench (CPU, -j$jobs); this takes minutes" >&2
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S "$src" -B "$cache/build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=ON -DLLAMA_BUILD_SERVER=OFF >&2
cmake --build "$cache/build" --target llama-bench -j "$jobs" >&2
[[ -x $bin ]] || { echo "llamacpp-peer: no llama-bench at $bin after the build" >&2; exit 1; }
echo "$bin"
