// SPDX-License-Identifier: MIT
#include "engine/backend/cpu/cpu_backend.h"

#include "engine/backend/cpu/cpu_gemm_attention.h"
#include "engine/backend/cpu/cpu_kernels.h"
#include "engine/backend/rope_table.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

namespace kvchat::engine {

std::unique_ptr<Backend> makeCpuBackend(const LlamaModel &model, int nThreads, std::int32_t kvBlockTokens)
{
    return std::make_unique<cpu::CpuBackend>(model, nThreads, kvBlockTokens);
}

namespace cpu {

namespace {
std::size_t sz(std::int64_t n)
{
    return static_cast<std::size_t>(n);
}

bool int8DisabledByEnvironment()
{
    const char *v = std::getenv("KVCHAT_CPU_INT8");
    return v != nullptr && std::strcmp(v, "0") == 0;
}

// Drops the whole pages of [p, p + n) from this process's mapping of the model file: their
// contents now live in a packed copy, and the page cache still holds the file if they are read
// again. Only a hint: on failure the pages simply stay mapped.
void releaseMappedPages(const std::byte *p, std::size_t n)
{
    const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
    const auto begin = (reinterpret_cast<std::uintptr_t>(p) + page - 1) / page * page;
    const auto end = (reinterpret_cast<std::uintptr_t>(p) + n) / page * page;
    if (end > begin)
        ::madvise(reinterpret_cast<void *>(begin), end - begin, MADV_DONTNEED);
}
// Maps the pages of [p, p + n) now, by reading one byte of each: a new backend (the app's first
// model, or a restart) would otherwise take a page fault per 4 KiB of weights inside its first
// forward pass, which is someone's time to first token. The page cache usually holds the file
// already; if not, this is the disk read the first turn would have waited for anyway.
void prefaultMappedPages(const std::byte *p, std::size_t n)
{
    const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    unsigned sink = 0;
    for (std::size_t off = 0; off < n; off += page)
        sink += static_cast<unsigned>(*reinterpret_cast<const volatile std::uint8_t *>(p + off));
    if (n > 0)
        sink += static_cast<unsigned>(*reinterpret_cast<const volatile std::uint8_t *>(p + n - 1));
    static_cast<void>(sink);
}
} // namespace

CpuBackend::CpuBackend(const LlamaModel &model, int nThreads, std::int32_t kvBlockTokens, bool useInt8)
    : m_model(model), m_pool(nThreads)
{
    const LlamaConfig &c = model.config();
    m_kvLayout = KvLayout{c.nLayers, c.kvDim(), kvBlockTokens};
    prepareWeights(useInt8 && !int8DisabledByEnvironment());
}

std::string CpuBackend::describe() const
{
    std::string out = "CPU, " + std::to_string(threads()) + " threads; weights read as the file stores them";
    if (!m_packed.empty())
        out += ", " + std::to_string(m_packed.size()) + " matrices repacked for the int8 kernels";
    return out;
}

void CpuBackend::prepareWeights(bool useInt8)
{
    // Each matrix is repacked for the integer kernels (its mapped pages given back), or else read
    // in place on every forward pass, in full: its pages are mapped now. The token embedding is
    // neither: only the rows of the tokens seen are read.
    auto prepare = [&](const WeightMatrix &w, bool packable) {
        if (m_packed.count(w.data))
            return;
        if (packable && canPackInt8(w)) {
            m_packed.emplace(w.data, packInt8(m_pool, w));
            releaseMappedPages(w.data, w.rowBytes * sz(w.nOut));
        } else {
            prefaultMappedPages(w.data, w.rowBytes * sz(w.nOut));
        }
    };
    for (const LlamaLayerWeights &l : m_model.layers())
        for (const WeightMatrix *w : l.matrices())
            prepare(*w, useInt8);
    // The output projection keeps fp32 activations: the logits are where rounding the final
    // hidden state to 8 bits shows most (a few outlier dimensions set their blocks' scales; it
    // changed SmolLM2's greedy reply), and it costs little there: prefill needs it for one token,
    // and decode reads its weights at memory speed either way.
    prepare(m_model.output(), false);
}

void CpuBackend::project(const WeightMatrix &w, const float *x, std::int64_t n, float *y, bool &quantized)
{
    const auto packed = m_packed.find(w.data);
    if (packed == m_packed.end()) {
        matmul(m_pool, m_matmulScratch, w, x, n, y);
        return;
    }
    if (!quantized) {
        quantizeActivations(m_pool, x, n, w.nIn, m_quantizedInput);
        quantized = true;
    }
    int8Matmul(m_pool, packed->second, m_quantizedInput, y);
}

void CpuBackend::ensureScratch(std::int64_t n)
{
    const LlamaConfig &c = m_model.config();
    const std::int64_t qDim = static_cast<std::int64_t>(c.nHeads) * c.headDim;
    auto grow = [](std::vector<float> &v, std::int64_t size) {
        if (v.size() < sz(size))
            v.resize(sz(size));
    };
    grow(m_x, n * c.nEmbd);
    grow(m_xNorm, n * std::max<std::int64_t>(c.nEmbd, qDim));
    grow(m_q, n * std::max<std::int64_t>(qDim, c.nEmbd));
    grow(m_k, n * c.kvDim());
    grow(m_v, n * c.kvDim());
    grow(m_gate, n * c.nFf);
    grow(m_up, n * std::max<std::int64_t>(c.nFf, c.nEmbd));
    grow(m_ropeTable, n * c.nRot);
}

void CpuBackend::attention(std::int32_t layer, std::int32_t startPos, std::int64_t n, const KvSequence &seq)
{
    const LlamaConfig &c = m_model.config();
    const AttentionShape shape{c.nHeads, c.nKvHeads, c.headDim, 1.0f / std::sqrt(static_cast<float>(c.headDim))};
    if (m_scores.size() < sz(m_pool.size()))
        m_scores.resize(sz(m_pool.size()));

    // One work item per (head, token); each thread's items go to the tiled kernel in one call.
    m_pool.parallelFor(n * c.nHeads, [&](std::int64_t begin, std::int64_t end, int thread) {
        attendItems(shape, seq, layer, startPos, n, m_q.data(), attnOut(), begin, end, m_scores[sz(thread)]);
    });
}

Result<void> CpuBackend::forward(std::span<const TokenId> tokens, KvSequence &seq, LogitsMode mode,
                                 std::vector<float> &logits)
{
    const LlamaConfig &c = m_model.config();
    const std::int64_t n = static_cast<std::int64_t>(tokens.size());
    auto begun = beginForward(tokens, c.nVocab, seq);
    if (!begun)
        return begun.error();
    const std::int32_t startPos = *begun;

    // Long prompts go through in micro-batches: activations for 256 tokens are enough to reuse
    // every weight panel many times, and the scratch memory stays bounded (a 2k-token prompt of a
    // 1B model would otherwise need ~200 MB of it). Chunking does not change a single bit.
    forEachMicroBatch(n, kMaxMicroBatch, mode, c.nVocab, &logits,
                      [&](std::int64_t begin, std::int64_t end, float *out) {
                          forwardMicroBatch(tokens.subspan(sz(begin), sz(end - begin)), seq,
                                            startPos + static_cast<std::int32_t>(begin), mode, out);
                          seq.setTokenCount(startPos + static_cast<std::int32_t>(end));
                      });
    return {};
}

void CpuBackend::forwardMicroBatch(std::span<const TokenId> tokens, KvSequence &seq, std::int32_t startPos,
                                   LogitsMode mode, float *logits)
{
    const LlamaConfig &c = m_model.config();
    const std::int64_t n = static_cast<std::int64_t>(tokens.size());
    ensureScratch(n);
    fillRopeTable(c, m_model.ropeFreqFactors(), startPos, n, m_ropeTable.data());
    const std::int64_t qDim = static_cast<std::int64_t>(c.nHeads) * c.headDim;
    const std::int64_t kvDim = c.kvDim();

    for (std::int64_t t = 0; t < n; ++t)
        dequantizeRow(m_model.tokenEmbedding().type, m_model.tokenEmbedding().row(tokens[sz(t)]),
                      m_x.data() + t * c.nEmbd, c.nEmbd);

    for (std::int32_t l = 0; l < c.nLayers; ++l) {
        const LlamaLayerWeights &w = m_model.layers()[sz(l)];
        for (std::int64_t t = 0; t < n; ++t)
            rmsNorm(m_xNorm.data() + t * c.nEmbd, m_x.data() + t * c.nEmbd, w.attnNorm.data(), c.nEmbd, c.rmsEps);
        bool quantized = false;
        project(w.wq, m_xNorm.data(), n, m_q.data(), quantized);
        project(w.wk, m_xNorm.data(), n, m_k.data(), quantized);
        project(w.wv, m_xNorm.data(), n, m_v.data(), quantized);
        for (std::int64_t t = 0; t < n; ++t) {
            const float *cosSin = m_ropeTable.data() + t * c.nRot;
            rope(m_q.data() + t * qDim, c.nHeads, c.headDim, c.nRot, cosSin);
            rope(m_k.data() + t * kvDim, c.nKvHeads, c.headDim, c.nRot, cosSin);
            const std::int32_t pos = startPos + static_cast<std::int32_t>(t);
            std::copy_n(m_k.data() + t * kvDim, kvDim, seq.keyRow(l, pos));
            std::copy_n(m_v.data() + t * kvDim, kvDim, seq.valueRow(l, pos));
        }
        attention(l, startPos, n, seq);
        quantized = false;
        project(w.wo, attnOut(), n, attnProjection(), quantized);
        add(m_x.data(), attnProjection(), n * c.nEmbd);

        for (std::int64_t t = 0; t < n; ++t)
            rmsNorm(m_xNorm.data() + t * c.nEmbd, m_x.data() + t * c.nEmbd, w.ffnNorm.data(), c.nEmbd, c.rmsEps);
        quantized = false;
        project(w.wGate, m_xNorm.data(), n, m_gate.data(), quantized);
        project(w.wUp, m_xNorm.data(), n, m_up.data(), quantized);
        siluMul(m_gate.data(), m_up.data(), n * c.nFf);
        quantized = false;
        project(w.wDown, m_gate.data(), n, ffnProjection(), quantized);
        add(m_x.data(), ffnProjection(), n * c.nEmbd);
    }

    if (logits == nullptr)
        return; // a micro-batch before the last, with only the last token's logits wanted
    const std::int64_t first = mode == LogitsMode::All ? 0 : n - 1;
    const std::int64_t nOut = n - first;
    for (std::int64_t t = first; t < n; ++t)
        rmsNorm(m_xNorm.data() + (t - first) * c.nEmbd, m_x.data() + t * c.nEmbd, m_model.outputNorm().data(), c.nEmbd,
                c.rmsEps);
    bool quantized = false;
    project(m_model.output(), m_xNorm.data(), nOut, logits, quantized);
}

} // namespace cpu
} // namespace kvchat::engine
