// SPDX-License-Identifier: MIT
// Kernel file owned by the CUDA-backend owner (STYLE.md §5 exception).
//
// Next-token candidates on the device (cuda_kernels.h): the repetition penalty and a top-k
// selection whose order is the host's selectCandidates'. Launch shapes, and why:
//
// - repeatPenaltyKernel  grid ceil(nIds / 256), 256 threads, one id per thread (ids are distinct); the
//                     count may be read from device memory (a replayed decode graph), at most the grid's.
// - selectCandidatesKernel  grid ceil(n / 1024), 512 threads. Each block sorts 1024 candidate keys
//                     (logit and id in one uint64, cuda_kernels.h) in shared memory with a bitonic
//                     network (55 steps, one compare-exchange per thread each) and keeps its best k;
//                     levels repeat on the survivors until one block is left: 152k logits and k = 40
//                     take 3 levels (149, then 6, then 1 block).
#include "engine/backend/cuda/cuda_kernels.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <cuda_fp16.h>

namespace kvchat::engine::cuda {
namespace {

#include "engine/backend/cuda/cuda_device_common.cuh"

// ---------------------------------------------------------------------------------------------
// Next-token candidates

constexpr int kSelectSlots = 1024;  // keys one block sorts
constexpr int kSelectThreads = 512; // one compare-exchange of the bitonic network per thread and step

// Larger key = better candidate: the logit's bits made order-preserving in the high half (a NaN
// counts as -inf, and -0 as +0, as the host's comparisons see them), the complement of the id in
// the low half (lower id first among equal logits). 0 is below every real key.
__device__ __forceinline__ std::uint64_t candidateKey(float logit, int id)
{
    if (isnan(logit))
        logit = -INFINITY;
    if (logit == 0.0f)
        logit = 0.0f;
    std::uint32_t u = __float_as_uint(logit);
    u = (u & 0x80000000u) != 0 ? ~u : (u | 0x80000000u);
    return (static_cast<std::uint64_t>(u) << 32) | static_cast<std::uint32_t>(~static_cast<std::uint32_t>(id));
}

__global__ void __launch_bounds__(kRowThreads)
    repeatPenaltyKernel(float *__restrict__ logits, const std::int32_t *__restrict__ ids, int nIds,
                        const std::int32_t *__restrict__ deviceCount, float penalty)
{
    const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
    if (i < (deviceCount != nullptr ? *deviceCount : nIds)) {
        const float l = logits[ids[i]];
        logits[ids[i]] = l > 0.0f ? l / penalty : l * penalty;
    }
}

// Block b sorts keys [b * kSelectSlots, (b + 1) * kSelectSlots) of its input (made from logits,
// or an earlier level's keys) in shared memory, largest first, and writes its best k to
// out[b * k, (b + 1) * k). Missing elements of the last block are key 0.
__global__ void __launch_bounds__(kSelectThreads)
    selectCandidatesKernel(const float *__restrict__ logits, const std::uint64_t *__restrict__ keysIn, int n, int k,
                           std::uint64_t *__restrict__ out)
{
    __shared__ std::uint64_t keys[kSelectSlots];
    const int base = static_cast<int>(blockIdx.x) * kSelectSlots;
    for (int i = static_cast<int>(threadIdx.x); i < kSelectSlots; i += kSelectThreads) {
        const int g = base + i;
        keys[i] = g >= n ? 0 : logits != nullptr ? candidateKey(logits[g], g) : keysIn[g];
    }
    __syncthreads();
    // Bitonic sort: for each (size, stride), thread t compares element i (bit `stride` clear) with
    // i + stride, in the direction of i's size-run (descending where bit `size` of i is clear).
    for (int size = 2; size <= kSelectSlots; size <<= 1) {
        for (int stride = size >> 1; stride > 0; stride >>= 1) {
            const int t = static_cast<int>(threadIdx.x);
            const int i = 2 * t - (t & (stride - 1));
            const int j = i + stride;
            const bool descending = (i & size) == 0;
            const std::uint64_t a = keys[i], b = keys[j];
            if ((a < b) == descending) {
                keys[i] = b;
                keys[j] = a;
            }
            __syncthreads();
        }
    }
    for (int i = static_cast<int>(threadIdx.x); i < k; i += kSelectThreads)
        out[static_cast<std::size_t>(blockIdx.x) * static_cast<std::size_t>(k) + static_cast<std::size_t>(i)] = keys[i];
}
static_assert(kSelectSlots == 2 * kSelectThreads, "one compare-exchange per thread and step");
static_assert(kMaxDeviceCandidates * 2 <= kSelectSlots, "each level must at least halve the keys");

} // namespace

void applyRepeatPenalty(float *logits, const std::int32_t *ids, std::int32_t nIds, float penalty, void *stream,
                        const std::int32_t *deviceCount)
{
    if (nIds <= 0)
        return;
    const auto blocks = static_cast<unsigned>(ceilDiv(nIds, kRowThreads));
    repeatPenaltyKernel<<<blocks, kRowThreads, 0, asStream(stream)>>>(logits, ids, nIds, deviceCount, penalty);
}

std::size_t candidatesWorkspaceKeys(std::int32_t n, std::int32_t k)
{
    return 2 * static_cast<std::size_t>(ceilDiv(std::max(n, 1), kSelectSlots)) * static_cast<std::size_t>(k);
}

void selectCandidates(const float *logits, std::int32_t n, std::int32_t k, std::uint64_t *workspace,
                      std::uint64_t *out, void *stream)
{
    const cudaStream_t s = asStream(stream);
    if (n <= 0 || k <= 0 || k > kMaxDeviceCandidates || k > n) {
        unsupportedShapeKernel<<<0, 1, 0, s>>>(); // reported by the caller's cudaGetLastError
        return;
    }
    // Levels: every block keeps its best k of kSelectSlots keys, until one block is left. The
    // number of levels depends only on n and k, so a decode graph keeps its shape.
    std::uint64_t *buffers[2] = {workspace, workspace + candidatesWorkspaceKeys(n, k) / 2};
    const float *fromLogits = logits;
    const std::uint64_t *fromKeys = nullptr;
    std::int64_t count = n;
    for (int level = 0;; ++level) {
        const std::int64_t blocks = ceilDiv(count, kSelectSlots);
        std::uint64_t *dst = blocks == 1 ? out : buffers[level % 2];
        selectCandidatesKernel<<<static_cast<unsigned>(blocks), kSelectThreads, 0, s>>>(
            fromLogits, fromKeys, static_cast<int>(count), k, dst);
        if (blocks == 1)
            return;
        fromLogits = nullptr;
        fromKeys = dst;
        count = blocks * k;
    }
}

TokenCandidateBits decodeCandidateKey(std::uint64_t key)
{
    std::uint32_t u = static_cast<std::uint32_t>(key >> 32);
    u = (u & 0x80000000u) != 0 ? (u & 0x7fffffffu) : ~u;
    float logit = 0.0f;
    std::memcpy(&logit, &u, sizeof logit);
    return {static_cast<std::int32_t>(~static_cast<std::uint32_t>(key)), logit};
}

} // namespace kvchat::engine::cuda
