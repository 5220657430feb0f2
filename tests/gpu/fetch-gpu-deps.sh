#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Run HERE (Debian 12, with apt), before a GPU check: downloads the Debian packages kvchat builds
# against that the GPU machine lacks (it has CUDA, CMake and ninja but no package registry) into
# .gpu-deps/ (git-ignored), for the device tool to carry. About 19 MB.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
mkdir -p "$repo/.gpu-deps"
cd "$repo/.gpu-deps"
# Engine: sentencepiece (+ its protobuf-lite), PCRE2, xxHash, SQLite, nlohmann-json.
# Tests: Qt 6 Core and Test with moc, and what libQt6Core needs at run time.
apt-get download \
    libsentencepiece-dev libsentencepiece0 libprotobuf-lite32 \
    libpcre2-dev libpcre2-8-0 libpcre2-16-0 libpcre2-32-0 libpcre2-posix3 \
    libxxhash-dev libxxhash0 libsqlite3-dev libsqlite3-0 nlohmann-json3-dev \
    qt6-base-dev qt6-base-dev-tools qmake6 qmake6-bin libqt6core6 libqt6test6 libicu72 libdouble-conversion3 libb2-1 \
    libglib2.0-0 libzstd1 2>&1 | grep -v "unsandboxed" || true
ls -1 "$repo/.gpu-deps"/*.deb | wc -l
du -sh "$repo/.gpu-deps"
