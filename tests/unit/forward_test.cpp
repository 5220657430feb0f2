// SPDX-License-Identifier: MIT
// The CPU forward pass against an independent double-precision reference on random-weight models
// (GQA and not, tied embeddings and not, several weight types), and the invariants the KV cache
// relies on: batched prefill, token-by-token feeding, chunked prefill, any KV block size and any
// thread count all give bit-identical logits.
#include "engine/backend/backend.h"
#include "engine/model/llama_model.h"
#include "tests/support/naive_llama.h"
#include "tests/support/random_model.h"
#include "tests/support/worst_error.h"

#include <QTemporaryDir>
#include <QTest>

#include <cmath>
#include <cstring>
#include <random>

using namespace kvchat::engine;
using namespace kvchat::testing;

Q_DECLARE_METATYPE(RandomModelSpec)

namespace {

struct Loaded
{
    RandomModel weights;
    std::unique_ptr<LlamaModel> model;
};

Loaded makeModel(const QTemporaryDir &dir, const RandomModelSpec &spec, const char *name)
{
    const std::string path = dir.filePath(name).toStdString();
    Loaded out{writeRandomModel(path, spec), nullptr};
    auto model = LlamaModel::load(path);
    if (!model)
        qFatal("%s", model.error().message.c_str());
    out.model = std::move(model).value();
    return out;
}

// All-position logits from one batched forward pass over a fresh sequence.
std::vector<float> batchedLogits(const LlamaModel &model, const std::vector<TokenId> &tokens, int threads = 2,
                                 std::int32_t blockTokens = 16)
{
    auto backend = makeCpuBackend(model, threads, blockTokens);
    KvBlockPool pool(backend->kvLayout(), 1024);
    KvSequence seq(pool);
    std::vector<float> logits;
    auto ok = backend->forward(tokens, seq, LogitsMode::All, logits);
    if (!ok)
        qFatal("%s", ok.error().message.c_str());
    return logits;
}

// The last-position logits of each chunk fed in turn, concatenated per chunk boundary.
std::vector<float> chunkedLastLogits(const LlamaModel &model, const std::vector<TokenId> &tokens,
                                     const std::vector<std::size_t> &chunkSizes, std::int32_t blockTokens = 16)
{
    auto backend = makeCpuBackend(model, 2, blockTokens);
    KvBlockPool pool(backend->kvLayout(), 1024);
    KvSequence seq(pool);
    std::vector<float> all, logits;
    std::size_t at = 0;
    for (std::size_t size : chunkSizes) {
        auto ok = backend->forward(std::span<const TokenId>(tokens.data() + at, size), seq, LogitsMode::Last, logits);
        if (!ok)
            qFatal("%s", ok.error().message.c_str());
        all.insert(all.end(), logits.begin(), logits.end());
        at += size;
    }
    return all;
}

} // namespace

class ForwardTest : public QObject
{
    Q_OBJECT

private slots:
    void matchesNaiveReference_data()
    {
        QTest::addColumn<RandomModelSpec>("spec");
        QTest::addColumn<double>("tolerance");
        QTest::addColumn<bool>("int8Reference");
        RandomModelSpec gqa;
        QTest::newRow("f32 gqa untied") << gqa << 1e-4 << false;
        RandomModelSpec mha = gqa;
        mha.nKvHeads = mha.nHeads;
        mha.tiedEmbeddings = true;
        mha.seed = 2;
        QTest::newRow("f32 mha tied") << mha << 1e-4 << false;
        RandomModelSpec mqa = gqa;
        mqa.nKvHeads = 1;
        mqa.nLayers = 3;
        mqa.seed = 3;
        mqa.ropeFreqBase = 100000.0f;
        QTest::newRow("f32 mqa 3 layers base 1e5") << mqa << 1e-4 << false;
        RandomModelSpec scaled = gqa;
        scaled.ropeScaleLinear = 4.0f;
        scaled.seed = 4;
        QTest::newRow("f32 linear rope scaling") << scaled << 1e-4 << false;
        // Quantized weights: the reference uses the same quantized values (decoded by the tests'
        // own decoder), so only fp32 arithmetic separates the two. Q8_0, Q4_0 and Q4_K take the
        // integer kernels, whose activations are rounded to int8: their reference rounds them the
        // same way (in double), so again only fp32 arithmetic is left (an input landing on the
        // other side of a rounding boundary would show as ~1e-4; none does with these seeds).
        // Against the unrounded model the integer path is held to 3e-2, the rounding's own effect.
        for (GgmlType type : {GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1,
                              GgmlType::Q5_0, GgmlType::Q5_1}) {
            RandomModelSpec q = gqa;
            q.weightType = type;
            q.seed = 10 + static_cast<int>(type);
            const bool int8 = type == GgmlType::Q8_0 || type == GgmlType::Q4_0;
            QTest::newRow(std::string(ggmlTypeName(type)).c_str()) << q << 1e-4 << int8;
            if (int8)
                QTest::newRow((std::string(ggmlTypeName(type)) + " vs unrounded").c_str()) << q << 3e-2 << false;
        }
        for (GgmlType type : {GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K}) {
            RandomModelSpec q = gqa;
            q.nEmbd = 256; // K-quants need rows of 256
            q.nFf = 512;
            q.nHeads = 8;
            q.nKvHeads = 2;
            q.weightType = type;
            q.seed = 20 + static_cast<int>(type);
            const bool int8 = type == GgmlType::Q4_K;
            QTest::newRow(std::string(ggmlTypeName(type)).c_str()) << q << 1e-4 << int8;
            if (int8)
                QTest::newRow((std::string(ggmlTypeName(type)) + " vs unrounded").c_str()) << q << 3e-2 << false;
        }
    }

    void matchesNaiveReference()
    {
        QFETCH(RandomModelSpec, spec);
        QFETCH(double, tolerance);
        QFETCH(bool, int8Reference);
        QTemporaryDir dir;
        const Loaded m = makeModel(dir, spec, "model.gguf");
        const std::vector<TokenId> tokens = randomTokens(40, spec.nVocab, spec.seed);
        const std::vector<float> logits = batchedLogits(*m.model, tokens);
        const auto reference = naiveLlamaLogits(m.weights, tokens, int8Reference);
        const std::size_t vocab = static_cast<std::size_t>(spec.nVocab);
        double worst = 0.0;
        for (std::size_t t = 0; t < tokens.size(); ++t) {
            double maxAbs = 0.0, maxDiff = 0.0;
            for (std::size_t i = 0; i < vocab; ++i) {
                maxAbs = std::max(maxAbs, std::abs(reference[t][i]));
                maxDiff = kvchat::testing::worseError(maxDiff, std::abs(logits[t * vocab + i] - reference[t][i]));
            }
            QVERIFY(maxAbs > 0.1); // the model is not degenerate
            worst = std::max(worst, maxDiff / maxAbs);
        }
        qInfo("worst relative error %.3g (tolerance %.1g)", worst, tolerance);
        QVERIFY2(worst <= tolerance, qPrintable(QString("relative error %1").arg(worst)));
    }

    void batchedEqualsTokenByToken()
    {
        QTemporaryDir dir;
        const Loaded m = makeModel(dir, RandomModelSpec{}, "model.gguf");
        const std::vector<TokenId> tokens = randomTokens(37, 320, 7);
        const std::vector<float> batched = batchedLogits(*m.model, tokens);
        const std::vector<float> single = chunkedLastLogits(*m.model, tokens, std::vector<std::size_t>(tokens.size(), 1));
        QCOMPARE(single.size(), batched.size());
        QVERIFY(std::memcmp(single.data(), batched.data(), batched.size() * sizeof(float)) == 0);
    }

    void chunkedPrefillIsBitIdentical()
    {
        QTemporaryDir dir;
        RandomModelSpec spec;
        spec.weightType = GgmlType::Q8_0;
        const Loaded m = makeModel(dir, spec, "model.gguf");
        const std::vector<TokenId> tokens = randomTokens(50, 320, 8);
        const std::vector<float> batched = batchedLogits(*m.model, tokens);
        const std::vector<float> chunked = chunkedLastLogits(*m.model, tokens, {17, 1, 16, 9, 7});
        const std::size_t vocab = 320;
        // Compare each chunk's last position with the batched logits at that position.
        std::size_t end = 0, chunk = 0;
        for (std::size_t size : {17, 1, 16, 9, 7}) {
            end += size;
            QVERIFY(std::memcmp(chunked.data() + chunk * vocab, batched.data() + (end - 1) * vocab,
                                vocab * sizeof(float)) == 0);
            ++chunk;
        }
    }

    void longInputsSplitIntoMicroBatchesBitIdentically()
    {
        // More tokens than one micro-batch (512): the backend splits them; the result must equal
        // the same prompt fed as chunks that cross the micro-batch boundary elsewhere.
        QTemporaryDir dir;
        RandomModelSpec spec;
        spec.weightType = GgmlType::Q4_0;
        spec.nCtx = 1024;
        const Loaded m = makeModel(dir, spec, "model.gguf");
        const std::vector<TokenId> tokens = randomTokens(530, 320, 11);
        const std::vector<float> batched = batchedLogits(*m.model, tokens);
        const std::vector<float> chunked = chunkedLastLogits(*m.model, tokens, {300, 229, 1});
        const std::size_t vocab = 320;
        QVERIFY(std::memcmp(chunked.data() + 2 * vocab, batched.data() + 529 * vocab, vocab * sizeof(float)) == 0);
        QVERIFY(std::memcmp(chunked.data() + 1 * vocab, batched.data() + 528 * vocab, vocab * sizeof(float)) == 0);
        QVERIFY(std::memcmp(chunked.data(), batched.data() + 299 * vocab, vocab * sizeof(float)) == 0);
    }

    void blockSizeAndThreadsDoNotChangeLogits()
    {
        QTemporaryDir dir;
        const Loaded m = makeModel(dir, RandomModelSpec{}, "model.gguf");
        const std::vector<TokenId> tokens = randomTokens(45, 320, 9);
        const std::vector<float> reference = batchedLogits(*m.model, tokens, 2, 16);
        for (auto [threads, block] : {std::pair{1, 16}, std::pair{2, 1}, std::pair{2, 4}, std::pair{3, 64}}) {
            const std::vector<float> other = batchedLogits(*m.model, tokens, threads, block);
            QVERIFY2(std::memcmp(other.data(), reference.data(), reference.size() * sizeof(float)) == 0,
                     qPrintable(QString("threads %1 block %2").arg(threads).arg(block)));
        }
    }

    void rejectsBadInput()
    {
        QTemporaryDir dir;
        const Loaded m = makeModel(dir, RandomModelSpec{}, "model.gguf");
        auto backend = makeCpuBackend(*m.model, 1);
        KvBlockPool pool(backend->kvLayout(), 2); // room for 32 positions
        KvSequence seq(pool);
        std::vector<float> logits;
        const std::vector<TokenId> outOfVocab = {5, 320};
        auto bad = backend->forward(outOfVocab, seq, LogitsMode::Last, logits);
        QVERIFY(!bad);
        QVERIFY(bad.error().message.find("outside the vocabulary") != std::string::npos);
        QCOMPARE(seq.nTokens(), 0);
        const std::vector<TokenId> tooMany = randomTokens(33, 320, 1);
        auto full = backend->forward(tooMany, seq, LogitsMode::Last, logits);
        QVERIFY(!full);
        QVERIFY(full.error().message.find("no room") != std::string::npos);
    }
};

QTEST_GUILESS_MAIN(ForwardTest)
#include "forward_test.moc"
