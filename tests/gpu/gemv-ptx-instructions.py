#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Static instruction counts of the decode matrix-vector kernels (engine/backend/cuda/cuda_gemv.cu),
# for machines without a GPU: compiles the file to PTX for one architecture and prints, for each
# weight format (and, for packed weights, with fp16 inputs or int8 dots), the PTX instructions of
# the kernel's largest loop (the unrolled main loop: kGemvUnroll 16-byte chunks of a row per lane),
# per weight and per byte of weights read. PTX is not SASS (ptxas merges and expands some
# instructions), so these compare the variants with each other; they are not issue counts.
#
#   tests/gpu/gemv-ptx-instructions.py [--arch sm_90]
#
# Needs nvcc (CUDA_HOME, default /usr/local/cuda); no GPU. Standard library only.
import argparse
import os
import re
import subprocess
import sys
import tempfile

# WeightFormat's values in the mangled names (cuda_kernels.h: F16 = -1, printed n1).
FORMATS = {'n1': ('fp16', 8, 16), '0': ('packed 4-bit', 32, 16 + 4), '1': ('packed 8-bit', 16, 16 + 4)}
KERNEL = re.compile(r'gemvKernelILNS\w+GemvOutE(\d)ELi(\d)ELNS\w+WeightFormatE(n?\d)ELb(\d)E')
LABEL = re.compile(r'^(\$L__BB\d+_\d+):$')
BRANCH = re.compile(r'\bbra(?:\.uni)?\s+(\$L__BB\d+_\d+);')


def largest_loop(body):
    """Instructions of the longest backward branch's span, and how many of them are dp4a."""
    lines = [line.strip() for line in body.split('\n')]
    labels = {}
    best = (0, 0)
    for i, line in enumerate(lines):
        if m := LABEL.match(line):
            labels[m.group(1)] = i
        elif (m := BRANCH.search(line)) and labels.get(m.group(1), i) < i:
            span = [x for x in lines[labels[m.group(1)]:i + 1] if x.endswith(';') and not x.startswith('//')]
            best = max(best, (len(span), sum('dp4a' in x for x in span)))
    return best


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--arch', default='sm_90')
    args = parser.parse_args()
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    nvcc = os.path.join(os.environ.get('CUDA_HOME', '/usr/local/cuda'), 'bin', 'nvcc')
    with tempfile.TemporaryDirectory() as tmp:
        ptx = os.path.join(tmp, 'gemv.ptx')
        subprocess.run([nvcc, '-std=c++17', '-O3', f'-arch={args.arch}', '-I', repo, '-ptx',
                        os.path.join(repo, 'engine/backend/cuda/cuda_gemv.cu'), '-o', ptx], check=True)
        text = open(ptx).read()
    unroll = 4  # kGemvUnroll
    print(f'| gemv kernel (y = W x, one row a warp), PTX for {args.arch} | main loop instructions '
          f'| per weight | per byte read | dp4a |')
    print('|---|---:|---:|---:|---:|')
    for entry in re.split(r'\n\.(?:visible )?\.?entry ', text)[1:]:
        m = KERNEL.search(entry.split('(')[0])
        if not m or m.group(1) != '0' or m.group(2) != '1':  # GemvOut::Store, 1 row a warp
            continue
        name, weights_per_chunk, bytes_per_chunk = FORMATS[m.group(3)]
        if m.group(3) != 'n1':
            name += ', int8 dots' if m.group(4) == '1' else ', fp16 inputs'
        count, dp4a = largest_loop(entry)
        print(f'| {name} | {count} | {count / (unroll * weights_per_chunk):.2f} '
              f'| {count / (unroll * bytes_per_chunk):.2f} | {dp4a} |')
    return 0


if __name__ == '__main__':
    sys.exit(main())
