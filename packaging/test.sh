#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The test command: installs dependencies, builds kvchat (build/), fuzzes the GGUF reader for a
# while (build-fuzz/, clang), then runs the whole CTest suite. ctest's summary is the last output.
#
# Environment: KVCHAT_FUZZ_SECONDS (default 60; 0 skips fuzzing), KVCHAT_BUILD_DIR (default build),
# CI=true adds -Werror.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

bash packaging/install-deps.sh

build=${KVCHAT_BUILD_DIR:-build}
werror=OFF
if [[ ${CI:-} == true ]]; then
    werror=ON
fi
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKVCHAT_BUILD_TESTS=ON -DKVCHAT_WERROR=$werror
cmake --build "$build" --parallel

seconds=${KVCHAT_FUZZ_SECONDS:-60}
if [[ $seconds -gt 0 ]]; then
    bash tests/fuzz/run-fuzz.sh "$seconds" build-fuzz
fi

cd "$build"
exec ctest --output-on-failure --parallel 2
