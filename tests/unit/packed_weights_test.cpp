// SPDX-License-Identifier: MIT
// Tests of engine/backend/packed_weights (the CUDA backend's on-device weight formats, packed on
// the host): for every quantized GGUF type, rows packed and unpacked equal the engine's
// dequantizeRow exactly (legacy types) or within the fp16 rounding of the K-quants' group scale
// and min; the code order within a word is the documented one; a type in a wider format (Q4_K in
// Q8G16, for a stacked matrix of mixed types) is exact too; scales that overflow fp16 are refused.
#include "engine/backend/packed_weights.h"
#include "engine/model/ggml_type.h"
#include "tests/support/quantize.h"
#include "tests/support/worst_error.h"

#include <QObject>
#include <QTest>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

using kvchat::engine::GgmlType;
using kvchat::engine::PackedFormat;
namespace engine = kvchat::engine;

Q_DECLARE_METATYPE(kvchat::engine::GgmlType)
Q_DECLARE_METATYPE(kvchat::engine::PackedFormat)

namespace {

struct Packed
{
    std::vector<std::uint8_t> codes;
    std::vector<std::uint16_t> scaleMin;
};

std::vector<std::uint8_t> randomRow(GgmlType type, std::int64_t n, std::uint32_t seed)
{
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    std::vector<float> values(static_cast<std::size_t>(n));
    for (float &v : values)
        v = dist(rng) * (1.0f + static_cast<float>(rng() % 4)); // groups of different ranges
    return kvchat::testing::quantize(type, values.data(), n);
}

bool pack(GgmlType type, const std::vector<std::uint8_t> &row, std::int64_t n, PackedFormat format, Packed &out)
{
    out.codes.assign(engine::packedCodeBytes(format, n), 0xAB);
    out.scaleMin.assign(static_cast<std::size_t>(2 * engine::packedGroups(format, n)), 0);
    return engine::packRow(type, reinterpret_cast<const std::byte *>(row.data()), n, format, out.codes.data(),
                           out.scaleMin.data());
}

std::vector<float> dequantized(GgmlType type, const std::vector<std::uint8_t> &row, std::int64_t n)
{
    std::vector<float> out(static_cast<std::size_t>(n));
    engine::dequantizeRow(type, reinterpret_cast<const std::byte *>(row.data()), out.data(), n);
    return out;
}

} // namespace

class PackedWeightsTest : public QObject
{
    Q_OBJECT

private slots:
    void formatsOfTypes();
    void roundTripsEveryType_data();
    void roundTripsEveryType();
    void codesSitInTheDocumentedOrder();
    void refusesScalesBeyondHalf();
};

void PackedWeightsTest::formatsOfTypes()
{
    QCOMPARE(engine::packedFormatFor(GgmlType::Q4_1), std::optional(PackedFormat::Q4G32));
    QCOMPARE(engine::packedFormatFor(GgmlType::Q6_K), std::optional(PackedFormat::Q8G16));
    QVERIFY(!engine::packedFormatFor(GgmlType::F16));
    QVERIFY(!engine::packedFormatFor(GgmlType::BF16));
    QCOMPARE(engine::widerPackedFormat(PackedFormat::Q4G32, PackedFormat::Q8G16), PackedFormat::Q8G16);
    QCOMPARE(engine::widerPackedFormat(PackedFormat::Q4G32, PackedFormat::Q4G32), PackedFormat::Q4G32);
    QCOMPARE(engine::packedCodeBytes(PackedFormat::Q4G32, 2048), std::size_t(1024));
    QCOMPARE(engine::packedGroups(PackedFormat::Q8G16, 2048), std::int64_t(128));
}

void PackedWeightsTest::roundTripsEveryType_data()
{
    QTest::addColumn<GgmlType>("type");
    QTest::addColumn<PackedFormat>("format");
    QTest::addColumn<bool>("exact"); // false: the K-quants' scale and min are rounded to fp16
    QTest::newRow("Q4_0") << GgmlType::Q4_0 << PackedFormat::Q4G32 << true;
    QTest::newRow("Q4_1") << GgmlType::Q4_1 << PackedFormat::Q4G32 << true;
    QTest::newRow("Q4_K") << GgmlType::Q4_K << PackedFormat::Q4G32 << false;
    QTest::newRow("Q5_0") << GgmlType::Q5_0 << PackedFormat::Q8G16 << true;
    QTest::newRow("Q5_1") << GgmlType::Q5_1 << PackedFormat::Q8G16 << true;
    QTest::newRow("Q5_K") << GgmlType::Q5_K << PackedFormat::Q8G16 << false;
    QTest::newRow("Q6_K") << GgmlType::Q6_K << PackedFormat::Q8G16 << false;
    QTest::newRow("Q8_0") << GgmlType::Q8_0 << PackedFormat::Q8G16 << true;
    // Stacked with a wider type: a Q4 row in the 8-bit format.
    QTest::newRow("Q4_1 as Q8G16") << GgmlType::Q4_1 << PackedFormat::Q8G16 << true;
    QTest::newRow("Q4_K as Q8G16") << GgmlType::Q4_K << PackedFormat::Q8G16 << false;
}

void PackedWeightsTest::roundTripsEveryType()
{
    QFETCH(GgmlType, type);
    QFETCH(PackedFormat, format);
    QFETCH(bool, exact);
    const std::int64_t n = 1024;
    for (std::uint32_t seed = 1; seed <= 8; ++seed) {
        const auto row = randomRow(type, n, seed);
        Packed packed;
        QVERIFY(pack(type, row, n, format, packed));
        std::vector<float> unpacked(static_cast<std::size_t>(n));
        engine::unpackRow(format, packed.codes.data(), packed.scaleMin.data(), n, unpacked.data());
        const auto expected = dequantized(type, row, n);
        double worst = 0.0;
        for (std::size_t i = 0; i < expected.size(); ++i) {
            if (exact) {
                // The same value up to the last bit: unpackRow's fma(scale, code, min) against a
                // decoder's separate multiply and add (Q4_0, Q8_0: d * (q - 8)) may round once
                // less.
                QVERIFY2(std::fabs(unpacked[i] - expected[i]) <= 1e-6f * (1.0f + std::fabs(expected[i])),
                         qPrintable(QString("element %1: %2 vs %3").arg(i).arg(unpacked[i]).arg(expected[i])));
            }
            // Both: within fp16 rounding of the group's scale and min (2^-11 relative each),
            // bounded by the block's largest magnitude.
            worst = kvchat::testing::worseError(worst, std::fabs(unpacked[i] - expected[i]));
        }
        double largest = 0.0;
        for (float v : expected)
            largest = std::max(largest, static_cast<double>(std::fabs(v)));
        QVERIFY2(worst <= largest * 2.0 * std::ldexp(1.0, -11) + 1e-6,
                 qPrintable(QString("worst error %1 for values up to %2").arg(worst).arg(largest)));
    }
}

void PackedWeightsTest::codesSitInTheDocumentedOrder()
{
    // A Q8_0 block with quants 0..31 (d = 1): codes q + 128. Word 0 holds elements 0..3 as bytes
    // (e0, e2, e1, e3): element 2k at bits 8k, element 2k + 1 at bits 16 + 8k.
    std::vector<std::uint8_t> block(34);
    const std::uint16_t one = engine::floatToHalf(1.0f);
    std::memcpy(block.data(), &one, 2);
    for (int j = 0; j < 32; ++j)
        block[static_cast<std::size_t>(2 + j)] = static_cast<std::uint8_t>(j);
    Packed packed;
    QVERIFY(pack(GgmlType::Q8_0, block, 32, PackedFormat::Q8G16, packed));
    QCOMPARE(int(packed.codes[0]), 128);
    QCOMPARE(int(packed.codes[1]), 130);
    QCOMPARE(int(packed.codes[2]), 129);
    QCOMPARE(int(packed.codes[3]), 131);
    QCOMPARE(engine::halfToFloat(packed.scaleMin[0]), 1.0f);
    QCOMPARE(engine::halfToFloat(packed.scaleMin[1]), -128.0f);
    // The same quants in a Q4_1 block (d = 1, m = 0, nibbles j & 15): word 0 holds elements
    // 0..7, element 2k in bits 4k, element 2k + 1 in bits 16 + 4k.
    std::vector<std::uint8_t> q41(20, 0);
    std::memcpy(q41.data(), &one, 2);
    for (int j = 0; j < 16; ++j)
        q41[static_cast<std::size_t>(4 + j)] =
            static_cast<std::uint8_t>(j | ((15 - j) << 4)); // e[j] = j, e[j+16] = 15-j
    QVERIFY(pack(GgmlType::Q4_1, q41, 32, PackedFormat::Q4G32, packed));
    std::uint32_t word0 = 0;
    std::memcpy(&word0, packed.codes.data(), 4);
    for (int k = 0; k < 4; ++k) {
        QCOMPARE(int((word0 >> (4 * k)) & 15u), 2 * k);
        QCOMPARE(int((word0 >> (16 + 4 * k)) & 15u), 2 * k + 1);
    }
}

void PackedWeightsTest::refusesScalesBeyondHalf()
{
    // Q8_0 with d = 1024: the min, -128 * d, is beyond fp16's 65504.
    std::vector<std::uint8_t> block(34, 0);
    const std::uint16_t d = engine::floatToHalf(1024.0f);
    std::memcpy(block.data(), &d, 2);
    Packed packed;
    QVERIFY(!pack(GgmlType::Q8_0, block, 32, PackedFormat::Q8G16, packed));
    // Q5_0 does not fit 4-bit codes.
    const auto row = randomRow(GgmlType::Q5_0, 64, 3);
    QVERIFY(!pack(GgmlType::Q5_0, row, 64, PackedFormat::Q4G32, packed));
    QVERIFY(!pack(GgmlType::F16, std::vector<std::uint8_t>(128), 64, PackedFormat::Q8G16, packed));
}

QTEST_GUILESS_MAIN(PackedWeightsTest)
#include "packed_weights_test.moc"
