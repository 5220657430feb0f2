#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Turns a CUDA kernel source (engine/backend/cuda/*.cu) into C++ for the CUDA emulator
# (tests/gpu/emulator/README.md), leaving the kernels' code as it is:
#   - <cuda_runtime.h> becomes "emulated_kernel_shim.h" (which brings <cuda_fp16.h> itself);
#   - each `extern __shared__ float4 smemVec[];` becomes a pointer to the block's dynamic shared
#     memory; <mma.h> goes (the shim brings its emulation, emulated_wmma.h);
#   - each `kernel<<<grid, block, smem, stream>>>(args);` becomes an emu::launch() that checks the
#     configuration now and queues the grid, with the arguments copied as a real launch copies them;
#   - cudaFuncSetAttribute(kernel<...>, ...) gets its `const void *` cast, which nvcc supplies.
# It checks what it relies on (every launch names all four launch parameters) and fails loudly
# rather than emit something that would compile but run differently.
#
#   transform_cuda_kernels.py input.cu output.cpp
import re
import sys

src, dst = sys.argv[1], sys.argv[2]
s = open(src).read()
s = s.replace('#include <cuda_fp16.h>\n', '')
s = s.replace('#include <mma.h>\n', '')  # the shim brings emulated_wmma.h
if s.count('#include <cuda_runtime.h>\n') != 1:
    sys.exit(f'{src}: expected one #include <cuda_runtime.h>')
s = s.replace('#include <cuda_runtime.h>\n', '#include "emulated_kernel_shim.h"\n')

shared = re.compile(r'extern __shared__ (?:__align__\((\d+)\) )?float4 smemVec\[\];')
if 'extern __shared__' in shared.sub('', s):
    sys.exit(f'{src}: dynamic shared arrays must be declared as `extern __shared__ [__align__(N)] float4 smemVec[];`;'
             ' teach this script the new one')
# The emulator's dynamic shared memory is 128-byte aligned: __align__ up to 128 holds as it is.
for m in shared.finditer(s):
    if m.group(1) and int(m.group(1)) > 128:
        sys.exit(f'{src}: __align__({m.group(1)}) on dynamic shared memory: the emulator aligns it to 128')
s = shared.sub('float4 *smemVec = emu::dynamicSmem<float4>();', s)

launch = re.compile(r'(\w+(?:<[\w:, ]+>)?)<<<(.*?)>>>\((.*?)\);', re.S)


def to_emulated_launch(m):
    kernel, config, args = m.group(1), m.group(2), m.group(3)
    if config.count(',') != 3:
        sys.exit(f'{src}: launch of {kernel} must give grid, block, shared memory and stream: <<<{config}>>>')
    # [=]: the arguments are copied at launch; the grid runs later, when its stream is synchronized.
    return f'emu::launch({config}, reinterpret_cast<const void *>(&{kernel}), "{kernel}", [=] {{ {kernel}({args}); }});'


s, n = launch.subn(to_emulated_launch, s)
if n == 0 or '<<<' in s:
    sys.exit(f'{src}: {n} launches transformed, {s.count("<<<")} left that the pattern does not match')
s = re.sub(r'cudaFuncSetAttribute\((\w+<[\w:, ]+>),', r'cudaFuncSetAttribute(reinterpret_cast<const void *>(&\1),', s)
open(dst, 'w').write(s)
print(f'{src}: {n} kernel launches transformed', file=sys.stderr)
