#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# The GPU check's results as one markdown table (tests/gpu/run-gpu-check.sh runs it last): a column
# per benchmarked model (gpu-bench-<model>.json from kvchat-bench-gpu), a row per measurement and
# per target of issue 6, then the kernels alone (gpu-bench-kernels.json from
# kvchat-bench-gpu-kernels). Models whose benchmark was cut short show what they wrote; a missing
# number is "-". Standard library only (the GPU machine has python3 and nothing to install).
#
#   summarize-gpu-check.py DIR
import glob
import json
import os
import sys

out_dir = sys.argv[1] if len(sys.argv) > 1 else 'gpu-check-out'
models = {}
for path in sorted(glob.glob(os.path.join(out_dir, 'gpu-bench-*.json'))):
    if path.endswith('gpu-bench-kernels.json'):
        continue
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        print(f'summarize-gpu-check: {path}: {e}', file=sys.stderr)
        continue
    models[data.get('model', os.path.basename(path))] = data


def get(data, *keys):
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def number(value, digits=0):
    return '-' if value is None else f'{value:.{digits}f}'


def pair(value, fraction, digits=0):
    if value is None:
        return '-'
    return number(value, digits) + ('' if fraction is None else f' ({fraction:.2f})')


def yes_no(value):
    return '-' if value is None else ('met' if value else 'NOT met')


def restore_vs_copy(d):
    restore, plain = get(d, 'ttft', 'restore_gb_per_s'), get(d, 'ttft', 'plain_pinned_copy_gb_per_s')
    return '-' if restore is None or plain is None else f'{restore:.1f} vs {plain:.1f}'


rows = [
    ('weights on the device, MiB', lambda d: number(get(d, 'weights_mib'))),
    ('prefill 512: tokens/s (share of fp16 peak)',
     lambda d: pair(get(d, 'prefill', '512', 'tokens_per_s'), get(d, 'prefill', '512', 'peak_fraction'))),
    ('prefill 2,048: tokens/s (share of fp16 peak)',
     lambda d: pair(get(d, 'prefill', '2048', 'tokens_per_s'), get(d, 'prefill', '2048', 'peak_fraction'))),
    ('decode at 0: tokens/s (share of roofline)',
     lambda d: pair(get(d, 'decode', '0', 'tokens_per_s'), get(d, 'decode', '0', 'roofline_fraction'), 1)),
    ('decode at 1,024: tokens/s (share of roofline)',
     lambda d: pair(get(d, 'decode', '1024', 'tokens_per_s'), get(d, 'decode', '1024', 'roofline_fraction'), 1)),
    ('decode at 0, kernels launched serially: tokens/s',
     lambda d: number(get(d, 'decode', '0', 'tokens_per_s_serial_launches'), 1)),
    ('decode at 0, packed weights times int8 inputs (int8 dots): tokens/s',
     lambda d: number(get(d, 'decode', '0', 'tokens_per_s_int8_dots'), 1)),
    ('decode at 0 without the CUDA graph: tokens/s',
     lambda d: number(get(d, 'decode', '0', 'tokens_per_s_without_graph'), 1)),
    ('TTFT ms: the 30 new tokens alone', lambda d: number(get(d, 'ttft', 'ttft_alone_ms'), 2)),
    ('TTFT ms: 2,000 + 30 computed', lambda d: number(get(d, 'ttft', 'ttft_cold_ms'), 2)),
    ('TTFT ms: 2,000 on the device + 30', lambda d: number(get(d, 'ttft', 'ttft_device_ms'), 2)),
    ('TTFT ms: 2,000 from pinned host + 30', lambda d: number(get(d, 'ttft', 'ttft_host_ms'), 2)),
    ('TTFT ms: 2,000 from disk + 30', lambda d: number(get(d, 'ttft', 'ttft_disk_ms'), 2)),
    ('restore GB/s vs plain pinned copy', restore_vs_copy),
    ('target: decode >= 0.7 of roofline', lambda d: yes_no(get(d, 'targets', 'decode_roofline_ge_0.7'))),
    ('target: prefill 2,048 >= 0.5 of peak', lambda d: yes_no(get(d, 'targets', 'prefill2048_peak_ge_0.5'))),
    ('target: restore >= 0.8 of plain copy', lambda d: yes_no(get(d, 'targets', 'restore_ge_0.8_of_plain_copy'))),
    ('target: TTFT on device <= 1.2x alone', lambda d: yes_no(get(d, 'targets', 'ttft_device_le_1.2_alone'))),
]

# TinyLlama's shape first: the targets are stated for it.
names = sorted(models, key=lambda n: ('tinyllama' not in n, n))
gpu = next((get(d, 'gpu', 'name') for d in models.values() if get(d, 'gpu', 'name')), None)
kernels = None
try:
    with open(os.path.join(out_dir, 'gpu-bench-kernels.json')) as f:
        kernels = json.load(f)
except (OSError, ValueError):
    pass
gpu = gpu or get(kernels, 'gpu', 'name') or 'no GPU result'
columns = max(1, len(names))


def print_row(label, cells):
    cells = cells + ['-'] * (columns - len(cells))
    print(f'| {label} | ' + ' | '.join(cells) + ' |')


print_row(f'on {gpu}', names)
print('|---|' + '---:|' * columns)
for label, cell in rows:
    print_row(label, [cell(models[n]) for n in names])
# The kernels alone belong to the GPU, not to a model: their value in the first column.
if kernels is not None:
    for fmt, by_mode in sorted((get(kernels, 'gemv') or {}).items()):
        for mode, m in sorted(by_mode.items()):
            value = pair(get(m, 'gb_per_s'), get(m, 'copy_bandwidth_fraction'))
            print_row(f'kernel alone: gemv {fmt}, {mode}: weight GB/s (share of copy bandwidth)',
                      [value] + [''] * (columns - 1))
    for shape, a in sorted((get(kernels, 'prefill_attention_2048') or {}).items()):
        value = pair(get(a, 'tflops'), get(a, 'peak_fraction'))
        print_row(f'kernel alone: prefill attention 2,048 tokens, {shape} heads: TFLOP/s (share of peak)',
                  [value] + [''] * (columns - 1))
