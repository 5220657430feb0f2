// SPDX-License-Identifier: MIT
// Kernel file owned by the CPU-backend performance owner (STYLE.md §5 exception).
//
// y = x · Wᵀ with integer dot products, for Q8_0, Q4_0 and Q4_K weights (the llama.cpp approach:
// activations quantized per 32-element block to int8, weights kept as their integer quants).
//
// Weights are repacked once, at load, into groups of 8 rows: for every 32-element block the 8
// rows' quants are interleaved 4 bytes at a time, so one 32-byte load holds 4 consecutive quants
// of each of the 8 rows, and one vpdpbusd (or vpmaddubsw + vpmaddwd without VNNI) against 4
// activation bytes broadcast to every lane adds 4 products into each row's own lane. An output
// row stays in one lane from the first block to the last: no horizontal sums, and the 8 results
// are stored with one instruction. The packed copy has the file's size (+3% for Q4_K) and sits
// on 2 MiB pages; the mapped pages it was made from are given back, so the weights are in memory
// once.
//
// The arithmetic of one output (row r, token t), identical in every kernel variant, tile size,
// thread split and batch size (so prefill and decode agree bit for bit):
//   activations, per block b of 32: d = amax/127, q = nearbyint(x * (1/d)), sum = Σq, sd = d * sum
//   acc = 0
//   Q8_0, Q4_0, per block b:   i = Σ wq·q exactly (int32; Q4_0 wq = nibble - 8)
//                              acc = fma(float(i), dw_r * d_tb, acc)
//   Q4_K, per sub-block s:     i = Σ nibble·q exactly
//                              acc = fma(float(i), float(d_r * sc_rs) * d_ts, acc)
//                              acc = fma(-float(dmin_r * m_rs), sd_ts, acc)
//   y = acc
// referenceInt8Dot below is that definition in scalar code; the tests hold the kernels to it.
#pragma once

#include "engine/core/huge_page_buffer.h"
#include "engine/core/thread_pool.h"
#include "engine/model/llama_model.h"

#include <cstdint>
#include <vector>

namespace kvchat::engine::cpu {

// Rows per interleaved group, and elements per activation block.
constexpr std::int64_t kInt8GroupRows = 8;
constexpr std::int64_t kInt8Block = 32;

// A weight matrix repacked for the integer kernels.
struct PackedMatrix
{
    GgmlType type = GgmlType::F32;
    std::int64_t nIn = 0;
    std::int64_t nOut = 0;
    std::int64_t groupBytes = 0; // bytes of one group of 8 rows
    HugePageBuffer bytes; // on huge pages: decode streams it at close to memory bandwidth

    const std::uint8_t *group(std::int64_t g) const { return bytes.data() + g * groupBytes; }
};

// Whether w can take the integer path: Q8_0, Q4_0 or Q4_K with a row count divisible by 8.
bool canPackInt8(const WeightMatrix &w);

// Repacks w (canPackInt8 must hold); the pool splits the work by groups.
PackedMatrix packInt8(ThreadPool &pool, const WeightMatrix &w);

// Activations quantized per block of 32: [nTokens][nIn] int8 quants, [nTokens][nIn / 32] scales,
// and the scale times the quant sum (the Q4_K min term). Buffers grow on demand and are kept.
struct QuantizedActivations
{
    std::int64_t nTokens = 0;
    std::int64_t nIn = 0;
    std::vector<std::int8_t> q;
    std::vector<float> d;
    std::vector<std::int32_t> sum;
    std::vector<float> scaledSum;
};

// x: [nTokens][nIn] row-major; nIn must be a multiple of 32.
void quantizeActivations(ThreadPool &pool, const float *x, std::int64_t nTokens, std::int64_t nIn,
                         QuantizedActivations &out);

// y: [nTokens][w.nOut] row-major.
void int8Matmul(ThreadPool &pool, const PackedMatrix &w, const QuantizedActivations &x, float *y);

// The definition in scalar code: output (row, token) from the original (unpacked) weights and
// the quantized activations.
float referenceInt8Dot(const WeightMatrix &w, std::int64_t row, const QuantizedActivations &x, std::int64_t token);

} // namespace kvchat::engine::cpu
