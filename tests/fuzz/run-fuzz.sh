#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds and runs the GGUF reader fuzzer.
#
#   tests/fuzz/run-fuzz.sh SECONDS BUILD_DIR
#
# Configures BUILD_DIR as a clang build with KVCHAT_BUILD_FUZZERS=ON (ASan + UBSan + libFuzzer on
# the fuzz target and the engine sources it compiles), builds only kvchat_gguf_fuzz, writes the seed
# corpus (GgufWriter files plus the real test models from shared/), and fuzzes for SECONDS. New
# inputs are kept in BUILD_DIR/fuzz-corpus across runs; a crashing input lands in
# BUILD_DIR/fuzz-artifacts/ and the script exits non-zero.
#
# Environment: KVCHAT_SHARED_DIR (default: the repo's ../shared), FUZZ_ARGS (extra libFuzzer flags).
set -euo pipefail

if [[ $# -ne 2 ]]; then
    echo "usage: $0 SECONDS BUILD_DIR" >&2
    exit 2
fi
seconds=$1
build=$2
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
shared=${KVCHAT_SHARED_DIR:-$repo/../shared}

generator=()
if command -v ninja >/dev/null; then
    generator=(-G Ninja)
fi
# A build dir made earlier with this script keeps its generator; only pass one for a fresh dir.
if [[ -f $build/CMakeCache.txt ]]; then
    generator=()
fi
cmake -S "$repo" -B "$build" "${generator[@]}" \
    -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DKVCHAT_BUILD_TESTS=ON -DKVCHAT_BUILD_FUZZERS=ON -DKVCHAT_CUDA=OFF \
    -DKVCHAT_SHARED_DIR="$shared"
cmake --build "$build" --target kvchat_gguf_fuzz

fuzzer=$(find "$build" -type f -name kvchat_gguf_fuzz -perm -u+x | head -n 1)
if [[ -z $fuzzer ]]; then
    echo "run-fuzz.sh: kvchat_gguf_fuzz not found under $build" >&2
    exit 1
fi

seeds=$build/fuzz-seeds
corpus=$build/fuzz-corpus
artifacts=$build/fuzz-artifacts
rm -rf "$seeds"
mkdir -p "$seeds" "$corpus" "$artifacts"
"$fuzzer" --write-seeds "$seeds"
for model in stories260K.f32.gguf aidreams260K.f32.gguf; do
    # Longer than -max_len, so libFuzzer uses the first 64 KiB: header and real-world metadata.
    if [[ -f $shared/models/$model ]]; then
        cp "$shared/models/$model" "$seeds/"
    fi
done

# Tokens the mutator can splice in: the magic, value/tensor type numbers, keys the reader treats
# specially, and boundary counts.
dict=$build/fuzz-gguf.dict
cat >"$dict" <<'DICT'
"GGUF"
"general.alignment"
"general.architecture"
"\x02\x00\x00\x00"
"\x03\x00\x00\x00"
"\x08\x00\x00\x00"
"\x09\x00\x00\x00"
"\x0c\x00\x00\x00"
"\x1e\x00\x00\x00"
"\x20\x00\x00\x00\x00\x00\x00\x00"
"\x00\x00\x00\x00\x00\x00\x00\x80"
"\xff\xff\xff\xff\xff\xff\xff\xff"
DICT

# -error_exitcode/-timeout_exitcode make crashes, sanitizer reports and hangs fail the script.
set +e
"$fuzzer" "$corpus" "$seeds" \
    -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 -timeout=10 \
    -dict="$dict" -artifact_prefix="$artifacts/" -print_final_stats=1 \
    -error_exitcode=77 -timeout_exitcode=78 ${FUZZ_ARGS:-}
status=$?
set -e
if [[ $status -ne 0 ]]; then
    echo "run-fuzz.sh: fuzzer failed (exit $status); reproducer(s) in $artifacts/" >&2
    ls -l "$artifacts" >&2 || true
    exit "$status"
fi
echo "run-fuzz.sh: no crashes in ${seconds}s"
