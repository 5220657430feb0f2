// SPDX-License-Identifier: MIT
// The integer matmul of the CPU backend (cpu_int8_matmul.h) against its definition: activations
// quantized as stated (checked element by element here, independently of the engine), every output
// bit-identical to the scalar referenceInt8Dot for every type, batch size and thread count, and
// close to the exact product of the dequantized weights and the unrounded activations.
#include "engine/backend/cpu/cpu_int8_matmul.h"
#include "engine/core/thread_pool.h"
#include "engine/model/ggml_type.h"
#include "tests/support/quantize.h"
#include "tests/support/worst_error.h"

#include <QTest>

#include <cmath>
#include <cstring>
#include <random>

using namespace kvchat::engine;
using namespace kvchat::engine::cpu;

namespace {

struct Matrix
{
    std::vector<std::uint8_t> bytes;
    std::vector<float> decoded; // [nOut][nIn], the tests' own decoder
    WeightMatrix w;
};

Matrix randomMatrix(GgmlType type, std::int64_t nOut, std::int64_t nIn, std::uint64_t seed)
{
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> dist(0.0f, 0.5f);
    std::vector<float> values(static_cast<std::size_t>(nOut * nIn));
    for (float &v : values)
        v = dist(rng);
    Matrix m;
    m.bytes = kvchat::testing::quantize(type, values.data(), nOut * nIn);
    m.decoded = kvchat::testing::referenceDequantize(type, m.bytes.data(), nOut * nIn);
    m.w.type = type;
    m.w.nIn = nIn;
    m.w.nOut = nOut;
    m.w.rowBytes = m.bytes.size() / static_cast<std::size_t>(nOut);
    m.w.data = reinterpret_cast<const std::byte *>(m.bytes.data());
    return m;
}

std::vector<float> randomActivations(std::int64_t nTokens, std::int64_t nIn, std::uint64_t seed)
{
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    std::vector<float> x(static_cast<std::size_t>(nTokens * nIn));
    for (float &v : x)
        v = dist(rng);
    // A block of zeros (scale 0) and a block with one large outlier.
    std::fill_n(x.begin(), 32, 0.0f);
    if (x.size() >= 64)
        x[40] = 50.0f;
    return x;
}

} // namespace

class Int8MatmulTest : public QObject
{
    Q_OBJECT

private slots:
    void activationsAreQuantizedAsDefined()
    {
        ThreadPool pool(2);
        const std::int64_t nTokens = 5, nIn = 256;
        const std::vector<float> x = randomActivations(nTokens, nIn, 1);
        QuantizedActivations q;
        quantizeActivations(pool, x.data(), nTokens, nIn, q);
        for (std::int64_t t = 0; t < nTokens; ++t)
            for (std::int64_t b = 0; b < nIn / 32; ++b) {
                const float *xb = x.data() + t * nIn + b * 32;
                float amax = 0.0f;
                for (int i = 0; i < 32; ++i)
                    amax = std::max(amax, std::fabs(xb[i]));
                const float d = amax / 127.0f;
                const std::size_t tb = static_cast<std::size_t>(t * (nIn / 32) + b);
                QCOMPARE(q.d[tb], d);
                int sum = 0;
                for (int i = 0; i < 32; ++i) {
                    const int expected = d == 0.0f ? 0 : static_cast<int>(std::nearbyint(xb[i] * (1.0f / d)));
                    QCOMPARE(static_cast<int>(q.q[static_cast<std::size_t>(t * nIn + b * 32 + i)]), expected);
                    QVERIFY(std::abs(expected) <= 127);
                    sum += expected;
                }
                QCOMPARE(q.sum[tb], sum);
                QCOMPARE(q.scaledSum[tb], d * static_cast<float>(sum));
            }
    }

    void matchesDefinitionBitForBit_data()
    {
        QTest::addColumn<int>("type");
        QTest::addColumn<int>("nOut");
        QTest::addColumn<int>("nIn");
        QTest::newRow("Q8_0") << static_cast<int>(GgmlType::Q8_0) << 40 << 320;
        QTest::newRow("Q4_0") << static_cast<int>(GgmlType::Q4_0) << 40 << 320;
        QTest::newRow("Q4_K") << static_cast<int>(GgmlType::Q4_K) << 24 << 512;
    }

    void matchesDefinitionBitForBit()
    {
        QFETCH(int, type);
        QFETCH(int, nOut);
        QFETCH(int, nIn);
        const Matrix m = randomMatrix(static_cast<GgmlType>(type), nOut, nIn, 7 + static_cast<std::uint64_t>(type));
        QVERIFY(canPackInt8(m.w));
        for (int threads : {1, 2, 3}) {
            ThreadPool pool(threads);
            const PackedMatrix packed = packInt8(pool, m.w);
            for (std::int64_t nTokens : {1, 2, 3, 7, 13, 20}) {
                const std::vector<float> x = randomActivations(nTokens, nIn, static_cast<std::uint64_t>(nTokens));
                QuantizedActivations q;
                quantizeActivations(pool, x.data(), nTokens, nIn, q);
                std::vector<float> y(static_cast<std::size_t>(nTokens * nOut), NAN);
                int8Matmul(pool, packed, q, y.data());
                for (std::int64_t t = 0; t < nTokens; ++t)
                    for (std::int64_t r = 0; r < nOut; ++r) {
                        const float expected = referenceInt8Dot(m.w, r, q, t);
                        const float got = y[static_cast<std::size_t>(t * nOut + r)];
                        QVERIFY2(std::memcmp(&expected, &got, sizeof got) == 0,
                                 qPrintable(QString("threads %1 tokens %2 row %3 token %4: %5 vs %6")
                                                .arg(threads).arg(nTokens).arg(r).arg(t).arg(got).arg(expected)));
                    }
            }
        }
    }

    void closeToTheExactProduct_data() { matchesDefinitionBitForBit_data(); }

    void closeToTheExactProduct()
    {
        QFETCH(int, type);
        QFETCH(int, nOut);
        QFETCH(int, nIn);
        const Matrix m = randomMatrix(static_cast<GgmlType>(type), nOut, nIn, 11);
        ThreadPool pool(2);
        const PackedMatrix packed = packInt8(pool, m.w);
        const std::int64_t nTokens = 9;
        const std::vector<float> x = randomActivations(nTokens, nIn, 3);
        QuantizedActivations q;
        quantizeActivations(pool, x.data(), nTokens, nIn, q);
        std::vector<float> y(static_cast<std::size_t>(nTokens * nOut));
        int8Matmul(pool, packed, q, y.data());
        double worst = 0.0;
        for (std::int64_t t = 0; t < nTokens; ++t) {
            double maxAbs = 0.0, maxDiff = 0.0;
            for (std::int64_t r = 0; r < nOut; ++r) {
                double exact = 0.0;
                for (std::int64_t k = 0; k < nIn; ++k)
                    exact += static_cast<double>(m.decoded[static_cast<std::size_t>(r * nIn + k)]) *
                             x[static_cast<std::size_t>(t * nIn + k)];
                maxAbs = std::max(maxAbs, std::abs(exact));
                maxDiff =
                    kvchat::testing::worseError(maxDiff, std::abs(exact - y[static_cast<std::size_t>(t * nOut + r)]));
            }
            worst = std::max(worst, maxDiff / maxAbs);
        }
        qInfo("worst error relative to the largest output: %.3g", worst);
        // Rounding each activation to 8 bits (d/2 at most, d = amax/127) costs about 1% of the
        // largest output here, more where one outlier sets a block's scale (as in the test data).
        QVERIFY(worst < 3e-2);
    }

    void onlySupportedShapesArePacked()
    {
        Matrix m = randomMatrix(GgmlType::Q4_0, 40, 64, 1);
        QVERIFY(canPackInt8(m.w));
        m.w.nOut = 36; // not a whole number of 8-row groups
        QVERIFY(!canPackInt8(m.w));
        const Matrix q41 = randomMatrix(GgmlType::Q4_1, 8, 64, 1);
        QVERIFY(!canPackInt8(q41.w));
    }
};

QTEST_GUILESS_MAIN(Int8MatmulTest)
#include "int8_matmul_test.moc"
