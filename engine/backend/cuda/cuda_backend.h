// SPDX-License-Identifier: MIT
// The CUDA backend: the Llama forward pass on one NVIDIA GPU. Weights are dequantized at load
// from their GGUF type to fp16 and kept on the device; projections are cuBLAS GEMMs (fp16 inputs,
// fp32 accumulation and outputs), or for a decode step kvchat's fused matrix-vector kernels
// (same inputs and accumulation); the residual stream is fp32, the KV cache fp16 (half the
// memory and restore bytes of fp32; llama.cpp's default too); attention reads the paged KV in
// place (cuda_kernels.h). The CPU backend is its oracle (tests/gpu/).
//
// Thread-safety: one thread at a time (the engine thread owns the device, its streams, the cuBLAS
// handle and the KV pool, STYLE.md §2).
#pragma once

#include "engine/backend/backend.h"
#include "engine/model/llama_model.h"

#include <cstdint>
#include <memory>
#include <string>

namespace kvchat::engine::cuda {

struct CudaDeviceInfo
{
    int index = 0;
    std::string name;
    int computeCapability = 0; // major * 10 + minor
    int multiprocessors = 0;
    std::size_t totalBytes = 0;
    std::size_t freeBytes = 0; // when queried
};

// The first CUDA device, or why there is none usable (any cudaGetDeviceCount error counts as "no
// GPU": a machine without a driver reports error 35, not 100).
Result<CudaDeviceInfo> firstCudaDevice();

class CudaBackend final : public Backend
{
public:
    // Uploads the weights (nThreads host threads pack or convert them). Errors: no device, out of GPU
    // memory (with how much was needed), a CUDA or cuBLAS failure.
    static Result<std::unique_ptr<CudaBackend>> create(const LlamaModel &model, int nThreads,
                                                       std::int32_t kvBlockTokens);
    ~CudaBackend() override;

    std::string_view name() const override { return "cuda"; }
    // The GPU, and the weights on it (weightsDescription, MiB).
    std::string describe() const override;
    KvLayout kvLayout() const override;
    // The KV a forward pass writes depends on how the weights are kept (fp16, or packed codes with
    // fp16 group scales, whose products round differently) and, for packed weights, on int8 dots:
    // part of the stored blocks' identity.
    std::string_view kvFormat() const override;
    std::shared_ptr<KvMemory> kvMemory() const override;
    std::size_t defaultDeviceKvBytes() const override;

    Result<void> forward(std::span<const TokenId> tokens, KvSequence &seq, LogitsMode mode,
                         std::vector<float> &logits) override;
    // Selects the candidates on the device, inside the decode step's graph (up to
    // kMaxDeviceCandidates of them; more: on the host), and copies back only those.
    Result<void> forwardCandidates(std::span<const TokenId> tokens, KvSequence &seq, const CandidateRequest &request,
                                   std::vector<TokenCandidate> &out) override;

    const CudaDeviceInfo &device() const;
    // Weights on the device: quantized GGUF matrices packed (4-bit codes for Q4_0/Q4_1/Q4_K, 8-bit
    // for Q5_*, Q6_K and Q8_0, with fp16 scales; engine/backend/packed_weights.h), float ones in
    // fp16. KVCHAT_CUDA_WEIGHTS: auto (the default) adds fp16 copies of the packed layer matrices
    // for prompts where they and the codes take at most 40% of the free GPU memory; packed keeps
    // only the codes (prompts dequantize them); f16 keeps everything in fp16 (3.2x the bytes of a
    // 4-bit file).
    std::size_t weightBytes() const;
    // What one decode step reads of them: every layer matrix, the norms and the classifier.
    std::size_t decodeWeightBytes() const;
    // E.g. "56 packed 4-bit, 33 packed 8-bit (matrices; Q/K/V and gate/up stacked); fp16 copies
    // of the packed layer matrices for prompts".
    std::string weightsDescription() const;
    // Activations and workspaces on the device: all reserved at load for up to the model's
    // context length, so that a turn allocates nothing (only LogitsMode::All grows the logits).
    std::size_t scratchBytes() const;

    // A decode step (one token) runs as a CUDA graph: one launch instead of 6 to 12 kernels and
    // GEMMs per layer, whose launch gaps dominate a small model's step. A graph is captured once
    // per shape of step (attention splitting the context into a given number of chunks, logits or
    // candidates out, the penalty) and then replayed as it is: the kernels read the position, the
    // block table and the penalised ids from the step's uploaded inputs, so no per-token capture or
    // update costs host time. On by default; KVCHAT_CUDA_GRAPHS=0 or setDecodeGraphs(false)
    // launches the kernels one by one.
    struct DecodeGraphStats
    {
        bool enabled = false;
        std::int64_t launches = 0;       // decode steps run through a graph
        std::int64_t instantiations = 0; // graphs captured and instantiated
    };
    DecodeGraphStats decodeGraphStats() const;
    void setDecodeGraphs(bool enabled);

    // A decode step's projections run through kvchat's fused matrix-vector kernels (RMSNorm, the
    // three Q/K/V products, SiLU and the residual adds folded into 4 launches a layer) instead of
    // cuBLAS GEMMs with n = 1. On by default where the model's widths allow it (multiples of 8);
    // KVCHAT_CUDA_DECODE_GEMV=0 or setDecodeGemv(false) runs the projections unfused, for
    // comparison: cuBLAS for fp16 weights, the matrix-vector kernel one matrix at a time for
    // packed ones.
    bool decodeGemv() const;
    void setDecodeGemv(bool enabled);

    // A decode step's fused kernels are launched overlapped (programmatic dependent launch,
    // cuda_kernels.h: overlappedLaunchesSupported): each may start, and fetch its weights, while
    // the one before it finishes. On by default on GPUs of compute capability 9.0 and later with
    // kernels built for them; KVCHAT_CUDA_OVERLAP=0 or setOverlappedLaunches(false) launches them
    // one after another, for comparison.
    bool overlappedLaunches() const;
    void setOverlappedLaunches(bool enabled);

    // A decode step's fused products with packed (quantized) weights quantize their input to int8
    // per weight group and sum code x input in integers, four products an instruction (dp4a; the
    // CPU backend's integer path and llama.cpp's MMVQ do the same), instead of converting every
    // code to fp16 and multiplying in fp32 (cuda_kernels.h: GemvInput::int8Dots); the classifier
    // keeps fp16 inputs, as the CPU's does. Off by default: on SmolLM2 (Q4_1) its decode logits
    // differ from the CPU's by 1.3e-2 of the top logit, over the 1e-2 the backend is held to
    // (measured on the CUDA emulator; the integer sums are exact, so a GPU gives the same).
    // KVCHAT_CUDA_INT8_DOTS=1 or setInt8Dots(true) turns it on, to measure what it is worth. No
    // effect on fp16 weights or on prompts (their GEMMs read fp16). It changes kvFormat(), which a
    // ChatEngine reads once for its fingerprint: set it before one is built on this backend.
    bool int8Dots() const;
    void setInt8Dots(bool enabled);

    // Longer inputs are split into micro-batches of this many tokens (up to 2,048, fewer on a GPU
    // with little memory to spare; see chooseMicroBatch). Smaller values, e.g. for tests of the
    // split, are allowed down to 1; larger ones are capped at what the scratch was reserved for.
    std::int64_t microBatchTokens() const;
    void setMicroBatchTokens(std::int64_t tokens);

    struct State; // device buffers, streams, handles (cuda_backend.cpp)

private:
    explicit CudaBackend(std::unique_ptr<State> state);
    // forward() and forwardCandidates(): logits for mode into *logits, or request's candidates
    // into *candidates.
    Result<void> run(std::span<const TokenId> tokens, KvSequence &seq, LogitsMode mode, std::vector<float> *logits,
                     const CandidateRequest *request, std::vector<TokenCandidate> *candidates);
    std::unique_ptr<State> m_state;
};

} // namespace kvchat::engine::cuda
