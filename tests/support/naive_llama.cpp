// SPDX-License-Identifier: MIT
#include "tests/support/naive_llama.h"

#include <cmath>

namespace kvchat::testing {

namespace {

using Vec = std::vector<double>;

// x rounded to 8-bit integers times one scale per block of 32 (see int8Activations).
Vec roundToInt8Blocks(Vec x)
{
    for (std::size_t b = 0; b + 32 <= x.size(); b += 32) {
        double amax = 0.0;
        for (std::size_t i = b; i < b + 32; ++i)
            amax = std::max(amax, std::abs(x[i]));
        const double d = amax / 127.0;
        for (std::size_t i = b; i < b + 32; ++i)
            x[i] = d == 0.0 ? 0.0 : d * std::nearbyint(x[i] / d);
    }
    return x;
}

// y = W x for W stored row-major [rows][cols] (a GGUF tensor with ne0 = cols).
Vec matVec(const std::vector<float> &w, const Vec &x, std::size_t rows)
{
    const std::size_t cols = x.size();
    Vec y(rows, 0.0);
    for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t c = 0; c < cols; ++c)
            y[r] += static_cast<double>(w[r * cols + c]) * x[c];
    return y;
}

Vec rmsNorm(const Vec &x, const std::vector<float> &weight, double eps)
{
    double ss = 0.0;
    for (double v : x)
        ss += v * v;
    const double scale = 1.0 / std::sqrt(ss / static_cast<double>(x.size()) + eps);
    Vec out(x.size());
    for (std::size_t i = 0; i < x.size(); ++i)
        out[i] = x[i] * scale * weight[i];
    return out;
}

// GGUF "llama" RoPE: consecutive pairs (2i, 2i+1) of each head rotate by pos * base^(-2i/headDim).
void rope(Vec &v, std::size_t nHeads, std::size_t headDim, double pos, double base)
{
    for (std::size_t h = 0; h < nHeads; ++h) {
        for (std::size_t i = 0; i < headDim / 2; ++i) {
            const double theta = pos * std::pow(base, -2.0 * static_cast<double>(i) / static_cast<double>(headDim));
            const double a = v[h * headDim + 2 * i], b = v[h * headDim + 2 * i + 1];
            v[h * headDim + 2 * i] = a * std::cos(theta) - b * std::sin(theta);
            v[h * headDim + 2 * i + 1] = a * std::sin(theta) + b * std::cos(theta);
        }
    }
}

} // namespace

std::vector<std::vector<double>> naiveLlamaLogits(const RandomModel &model, const std::vector<std::int32_t> &tokens,
                                                  bool int8Activations)
{
    const auto matVec = [int8Activations](const std::vector<float> &w, const Vec &x, std::size_t rows) {
        return ::kvchat::testing::matVec(w, int8Activations ? roundToInt8Blocks(x) : x, rows);
    };
    const RandomModelSpec &s = model.spec;
    const auto &T = model.tensors;
    const std::size_t dim = static_cast<std::size_t>(s.nEmbd), nHeads = static_cast<std::size_t>(s.nHeads);
    const std::size_t nKv = static_cast<std::size_t>(s.nKvHeads), headDim = dim / nHeads, kvDim = nKv * headDim;
    const std::size_t ff = static_cast<std::size_t>(s.nFf), vocab = static_cast<std::size_t>(s.nVocab);
    const double eps = s.rmsEps;

    // Per layer, the K and V of every position so far.
    std::vector<std::vector<Vec>> keys(static_cast<std::size_t>(s.nLayers)), values(static_cast<std::size_t>(s.nLayers));
    std::vector<std::vector<double>> logits;
    for (std::size_t pos = 0; pos < tokens.size(); ++pos) {
        const auto &embd = T.at("token_embd.weight");
        Vec x(dim);
        for (std::size_t i = 0; i < dim; ++i)
            x[i] = embd[static_cast<std::size_t>(tokens[pos]) * dim + i];
        const double ropePos = static_cast<double>(pos) / s.ropeScaleLinear;

        for (std::size_t l = 0; l < static_cast<std::size_t>(s.nLayers); ++l) {
            const std::string p = "blk." + std::to_string(l) + ".";
            const Vec xn = rmsNorm(x, T.at(p + "attn_norm.weight"), eps);
            Vec q = matVec(T.at(p + "attn_q.weight"), xn, dim);
            Vec k = matVec(T.at(p + "attn_k.weight"), xn, kvDim);
            const Vec v = matVec(T.at(p + "attn_v.weight"), xn, kvDim);
            rope(q, nHeads, headDim, ropePos, s.ropeFreqBase);
            rope(k, nKv, headDim, ropePos, s.ropeFreqBase);
            keys[l].push_back(k);
            values[l].push_back(v);

            Vec attn(dim, 0.0);
            for (std::size_t h = 0; h < nHeads; ++h) {
                const std::size_t kvh = h / (nHeads / nKv);
                std::vector<double> scores(pos + 1);
                double maxScore = -1e300;
                for (std::size_t j = 0; j <= pos; ++j) {
                    double dot = 0.0;
                    for (std::size_t d = 0; d < headDim; ++d)
                        dot += q[h * headDim + d] * keys[l][j][kvh * headDim + d];
                    scores[j] = dot / std::sqrt(static_cast<double>(headDim));
                    maxScore = std::max(maxScore, scores[j]);
                }
                double sum = 0.0;
                for (double &sc : scores) {
                    sc = std::exp(sc - maxScore);
                    sum += sc;
                }
                for (std::size_t j = 0; j <= pos; ++j)
                    for (std::size_t d = 0; d < headDim; ++d)
                        attn[h * headDim + d] += scores[j] / sum * values[l][j][kvh * headDim + d];
            }
            const Vec o = matVec(T.at(p + "attn_output.weight"), attn, dim);
            for (std::size_t i = 0; i < dim; ++i)
                x[i] += o[i];

            const Vec xf = rmsNorm(x, T.at(p + "ffn_norm.weight"), eps);
            Vec gate = matVec(T.at(p + "ffn_gate.weight"), xf, ff);
            const Vec up = matVec(T.at(p + "ffn_up.weight"), xf, ff);
            for (std::size_t i = 0; i < ff; ++i)
                gate[i] = gate[i] / (1.0 + std::exp(-gate[i])) * up[i];
            const Vec down = matVec(T.at(p + "ffn_down.weight"), gate, dim);
            for (std::size_t i = 0; i < dim; ++i)
                x[i] += down[i];
        }
        const Vec xo = rmsNorm(x, T.at("output_norm.weight"), eps);
        const auto &out = s.tiedEmbeddings ? T.at("token_embd.weight") : T.at("output.weight");
        logits.push_back(::kvchat::testing::matVec(out, xo, vocab)); // never rounded (see the header)
    }
    return logits;
}

} // namespace kvchat::testing
