// SPDX-License-Identifier: MIT
// Kernel file owned by the CUDA-backend owner (STYLE.md §5 exception).
//
// The CUDA backend's own kernels (everything that is not a cuBLAS GEMM), as host functions that
// enqueue work on a stream. Plain C++ header (no CUDA headers) so the backend's host code and the
// tests can include it; streams are passed as `void *` (a cudaStream_t).
//
// Conventions, shared with cuda_backend.cpp:
// - Activations are row-major [nTokens][width]. The residual stream and every GEMM output are fp32;
//   GEMM inputs (the normalized residual, the attention output, the SwiGLU product) are fp16,
//   because cuBLAS reads them as CUDA_R_16F.
// - The KV cache is the paged layout of engine/kv/kv_cache.h, in fp16, in one device arena:
//   block b's payload starts at kvArena + b * blockElements and holds [layer][K, V][blockTokens][kvDim].
//   K and V are computed in fp32 and rounded once when stored; attention reads them back as fp32.
//   A sequence's block table (device int32 ids) maps position p to block table[p / blockTokens],
//   row p % blockTokens.
// - RoPE uses the same cos/sin table as the CPU backend ([nTokens][nRot]: cos, sin of pair i at
//   2i, 2i+1), computed on the host in double and uploaded; pairs are adjacent elements (2i, 2i+1),
//   as in GGUF Llama files.
// - None of these functions synchronizes; errors of a launch surface through cudaGetLastError.
#pragma once

#include <cstddef>
#include <cstdint>

namespace kvchat::engine::cuda {

using Half = std::uint16_t; // IEEE binary16 bits (__half on the device)

// A weight matrix [nOut][dim] on the device: fp16, or one of the packed formats of
// engine/backend/packed_weights.h (codes [nOut][packedCodeBytes], then the (scale, min) halves
// [nOut][2 * packedGroups]; every row's codes start 16-byte aligned). The number values match
// PackedFormat's, so the host can convert.
enum class WeightFormat : std::int32_t {
    F16 = -1,
    Q4G32 = 0,
    Q8G16 = 1,
};
struct DeviceWeights
{
    WeightFormat format = WeightFormat::F16;
    const void *data = nullptr;     // F16: Half [nOut][dim]; packed: the codes
    const Half *scaleMin = nullptr; // packed: (scale, min) per group, row after row
};
// Elements one 16-byte load of a row holds (8, 32 or 16): dim must be a multiple of it.
constexpr std::int32_t weightChunkElements(WeightFormat format)
{
    return format == WeightFormat::F16 ? 8 : format == WeightFormat::Q4G32 ? 32 : 16;
}
// Bytes of one row of dim elements: its codes (fp16: the elements themselves), and with them the
// row's (scale, min) halves, one pair per 16-byte chunk of codes (packed dim: whole chunks).
constexpr std::size_t weightCodeBytes(WeightFormat format, std::int64_t dim)
{
    return static_cast<std::size_t>(format == WeightFormat::F16 ? dim * 2 : dim / weightChunkElements(format) * 16);
}
constexpr std::size_t weightRowBytes(WeightFormat format, std::int64_t dim)
{
    return weightCodeBytes(format, dim) +
           (format == WeightFormat::F16
                ? 0
                : static_cast<std::size_t>(dim / weightChunkElements(format)) * 2 * sizeof(Half));
}
// The matrix rows [rowBegin, rowBegin + rows) as fp16 into out ([rows][dim]), each element
// fp16(scale * code + min): what a prompt's GEMMs read when the weights are packed.
void dequantizeWeights(const DeviceWeights &w, std::int64_t rowBegin, std::int64_t rows, std::int32_t dim, Half *out,
                       void *stream);

// x[t][:] = table[tokens[t]][:] as fp32. table: [nVocab][dim], fp16 or packed.
void embedTokens(const DeviceWeights &table, const std::int32_t *tokens, std::int64_t nTokens, std::int32_t dim,
                 float *x, void *stream);

// out[t][i] = fp16(x[t][i] * rsqrt(mean_i(x[t][i]^2) + eps) * weight[i]); the sum of squares is
// accumulated in fp32 (the CPU backend uses double; the difference is far inside the tolerance).
void rmsNorm(const float *x, const float *weight, std::int64_t nTokens, std::int32_t dim, float eps, Half *out,
             void *stream);

struct KvTarget
{
    Half *arena = nullptr;                    // device KV arena (fp16)
    const std::int32_t *blockTable = nullptr; // device, the sequence's block ids in order
    std::int32_t blockTokens = 16;
    std::size_t blockElements = 0; // nLayers * 2 * blockTokens * kvDim
    std::int32_t layer = 0;
    std::int32_t kvDim = 0;
};

// Rotates q ([nTokens][nHeads*headDim], in place) and k ([nTokens][kvDim]) by the cos/sin table
// (device; row t for token t, or with cosSinByPosition row startPos + t of a table of positions);
// writes the rotated k and the unchanged v ([nTokens][kvDim]), rounded
// to fp16, into the KV rows of positions startPos + t.
// deviceStartPos (here and in attention): when set, the kernels read the first position from this
// device int instead of startPos, so a captured decode step replays at the next position without
// a graph update. For attention the value must split the context into as many chunks as startPos
// does (attentionContextChunks): the chunk count is the launch's grid.
// qStride, kvStride: floats from one token's q (k, v) row to the next (the projections' GEMM writes
// a token's q, k and v side by side).
void ropeAndStoreKv(float *q, const float *k, const float *v, std::int64_t qStride, std::int64_t kvStride,
                    const float *cosSin, bool cosSinByPosition, std::int64_t nTokens, std::int32_t nHeads,
                    std::int32_t nKvHeads, std::int32_t headDim, std::int32_t nRot, const KvTarget &kv,
                    std::int32_t startPos, void *stream, const std::int32_t *deviceStartPos = nullptr);

struct AttentionShape
{
    std::int32_t nHeads = 0;
    std::int32_t nKvHeads = 0;    // divides nHeads; query head h reads KV head h / (nHeads / nKvHeads)
    std::int32_t headDim = 0;     // <= 256, a multiple of 8
    float scale = 1.0f;           // applied to each q·k
    std::int32_t qStride = 0;     // floats from one token's q row to the next (0: nHeads * headDim)
    bool overlapPrevious = false; // an overlapped launch (see overlappedLaunchesSupported)
};

// Causal attention over the paged KV for the tokens at positions startPos + t (t < nTokens), whose
// K/V rows are already stored: out[t][h*headDim + i] = sum_p softmax_p(q_t,h · k_p * scale) v_p[i]
// over p = 0..startPos + t, in fp32, written as fp16. q: [nTokens][nHeads*headDim] fp32.
// Long contexts are split across thread blocks (flash-decoding) and merged with their running
// maxima and sums; workspace: device scratch of attentionWorkspaceFloats(...) floats.
std::size_t attentionWorkspaceFloats(const AttentionShape &shape, std::int64_t nTokens, std::int32_t contextTokens);
// Prefill batches (at least 64 query rows per KV head) with head size 64 or 128 run on tensor
// cores: Q, K, V and the softmax weights rounded to fp16, scores and sums in fp32.
bool attentionUsesTensorCores(const AttentionShape &shape, std::int64_t nTokens);
// How many context chunks a call splits into (more than 1: a merge kernel follows).
std::int64_t attentionContextChunks(std::int64_t nTokens, std::int32_t startPos);
void attention(const AttentionShape &shape, const float *q, const KvTarget &kv, std::int64_t nTokens,
               std::int32_t startPos, float *workspace, Half *out, void *stream,
               const std::int32_t *deviceStartPos = nullptr);

// A restore's layer-by-layer copies (cuda_kv_memory.cpp): for every (dst, src) pair of table
// (device memory, nCopies entries), bytes at offset are copied; src may be pinned host memory,
// which the kernel reads over the bus (unified addressing), or device memory. offset, bytes and
// every pointer are multiples of 16. One launch moves a layer of every block of the restore,
// where cudaMemcpyAsync would need a call (and a DMA transfer) per block and layer.
struct SliceCopy
{
    void *dst;
    const void *src;
};
void copySlices(const SliceCopy *table, std::int32_t nCopies, std::size_t offset, std::size_t bytes, void *stream);

// out[t][f] = fp16(silu(gate[t][f]) * up[t][f]) for t < nRows, f < width, with gate and up rows
// rowStride floats apart (the FFN's GEMM writes a token's gate and up side by side); out is
// packed ([nRows][width]). silu(g) = g / (1 + exp(-g)).
void siluMul(const float *gate, const float *up, std::int64_t nRows, std::int32_t width, std::int64_t rowStride,
             Half *out, void *stream);

// The decode step's projections (one token, cuda_gemv.cu): matrix-vector products over fp16 or
// packed weights ([nOut][dim]) with fp32 accumulation, fused with the work around
// them. The input is an fp16 vector, or RMSNorm(residual) * normWeight rounded to fp16 with the
// same arithmetic as rmsNorm (so the same values the unfused path would feed cuBLAS).
struct GemvInput
{
    const Half *vector = nullptr;      // fp16 [dim]; when null, the normalized residual:
    const float *residual = nullptr;   // fp32 [dim]
    const float *normWeight = nullptr; // [dim]
    float eps = 0.0f;
    std::int32_t dim = 0;
    bool overlapPrevious = false; // an overlapped launch (see overlappedLaunchesSupported)
    // Packed weights: the fp16 input quantized to int8 per weight group (d = amax / 127, q =
    // rint(x / d), as the CPU backend quantizes activations) and each group's products summed
    // exactly in integers with dp4a, instead of every code converted to fp16 and multiplied in
    // fp32 (about 1 instruction a weight instead of 4.5). Ignored for fp16 weights.
    bool int8Dots = false;
};
struct GemvMatrix
{
    DeviceWeights w; // [nOut][dim]; matrices of different formats are launched one run at a time
    std::int32_t nOut = 0;
    float *y = nullptr; // [nOut]
};
constexpr int kMaxGemvMatrices = 3;
// Overlapped launches (programmatic dependent launch): with overlapPrevious, a gemv or attention
// launch may start while the kernel before it in the stream is still running (it prefetches its
// weights into L2, then waits for that kernel before it reads anything), which hides the gap
// between the decode step's ~110 small kernels. Needs a GPU of compute capability 9.0 or later and
// kernels compiled for it (an sm_80 build running on an H100 has no wait in its kernels); false
// otherwise, and then overlapPrevious must stay false. Asked once (the answer is cached).
bool overlappedLaunchesSupported();

// dim is a multiple of 8 (of weightChunkElements for packed weights) and its fp16 vector fits a
// block's shared memory (else the launches fail with cudaErrorInvalidConfiguration).
bool gemvSupports(std::int32_t dim);
// Lets the kernels take inputs up to maxDim wide (sets the opt-in shared memory attribute above
// 48 KiB); called at load, outside any graph capture. False where the device cannot.
bool gemvReserveSharedMemory(std::int32_t maxDim);
// For each of nMatrices (1..3) matrices reading the same input: y = W x, or y += W x with
// accumulate (the residual adds).
void gemv(const GemvInput &in, const GemvMatrix *matrices, int nMatrices, bool accumulate, void *stream);
// act[o] = fp16(silu(Wgate[o] . x) * (Wup[o] . x)) for o < nFf: the FFN's gate and up projections
// and siluMul in one launch; gate and up share a format.
void gemvSwiGlu(const GemvInput &in, const DeviceWeights &wGate, const DeviceWeights &wUp, std::int32_t nFf, Half *act,
                void *stream);
// The Q, K and V products (qkv[0..2]) with ropeAndStoreKv fused in: qkv[0].y gets the rotated Q
// (fp32); the rotated K and V go as fp16 into the KV rows of position *devicePos (kv as for
// ropeAndStoreKv); cos/sin from a table of positions ([pos][nRot], cosSinByPosition). K and V are
// kv.kvDim wide; widths and headDim are even.
void gemvQkvRope(const GemvInput &in, const GemvMatrix *qkv, const float *cosSinByPosition, std::int32_t nRot,
                 std::int32_t headDim, const KvTarget &kv, const std::int32_t *devicePos, void *stream);

// Next-token candidates on the device (engine/backend/token_candidates.h): the same choice as the
// host's selectCandidates, with only k pairs to copy back. A candidate travels as a 64-bit key
// that orders as candidates do (higher logit, then lower id; NaN counts as -inf).
constexpr std::int32_t kMaxDeviceCandidates = 256;
// The repetition penalty in place at nIds distinct ids (llama.cpp's rule: positive logits are
// divided by it, negative ones multiplied). With deviceCount, the count is read from that device
// int (at most ceil(nIds / 256) * 256: nIds sizes the launch).
void applyRepeatPenalty(float *logits, const std::int32_t *ids, std::int32_t nIds, float penalty, void *stream,
                        const std::int32_t *deviceCount = nullptr);
// Keys of device workspace selectCandidates needs for n logits and k candidates.
std::size_t candidatesWorkspaceKeys(std::int32_t n, std::int32_t k);
// out[0..k) = the keys of the k best of logits[0..n), best first; 1 <= k <= min(n, kMaxDeviceCandidates)
// (otherwise the launch fails with cudaErrorInvalidConfiguration).
void selectCandidates(const float *logits, std::int32_t n, std::int32_t k, std::uint64_t *workspace, std::uint64_t *out,
                      void *stream);
// TokenCandidate's fields; its own type because this header is also compiled as C++17 by nvcc,
// and token_candidates.h is C++20.
struct TokenCandidateBits
{
    std::int32_t id;
    float logit;
};
// A key back as (id, logit), on the host.
TokenCandidateBits decodeCandidateKey(std::uint64_t key);

} // namespace kvchat::engine::cuda
