// SPDX-License-Identifier: MIT
// Over 800 lines on purpose: one test file per class under test (STYLE.md §8); this one covers
// eleven formats, each with hand-built blocks, random blocks and round trips.
// Tests of engine/model/ggml_type: the traits table and row sizes; exact half/bfloat16 conversions
// (edge cases, every half value, and against the CPU's F16C instructions when present);
// dequantizeRow against the independent scalar decoder of tests/support/quantize (bit for bit, on
// random blocks, at several lengths and misaligned addresses); hand-built blocks with known
// values; and quantize -> dequantize round trips within per-type error bounds.
#include "engine/model/ggml_type.h"
#include "tests/support/quantize.h"
#include "tests/support/worst_error.h"

#include <QObject>
#include <QString>
#include <QTest>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <vector>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define KVCHAT_TEST_F16C 1
#include <cpuid.h>
#include <immintrin.h>
#endif

using kvchat::engine::GgmlType;
using kvchat::engine::GgmlTypeTraits;
using kvchat::testing::quantize;
using kvchat::testing::referenceDequantize;
namespace engine = kvchat::engine;

Q_DECLARE_METATYPE(kvchat::engine::GgmlType)

namespace {

constexpr std::array kAllTypes{GgmlType::F32,  GgmlType::F16,  GgmlType::BF16, GgmlType::Q8_0,
                               GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1,
                               GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K};

std::uint32_t bitsOf(float f)
{
    return std::bit_cast<std::uint32_t>(f);
}

float floatFromBits(std::uint32_t bits)
{
    return std::bit_cast<float>(bits);
}

const char *typeName(GgmlType type)
{
    return engine::ggmlTypeName(type).data(); // the names are string literals
}

// Byte offsets of the f16 scale fields (d, m, dmin) inside one block: random bytes there could be
// inf or NaN, which makes comparisons meaningless, so the tests put finite halves there.
std::vector<std::size_t> halfScaleOffsets(GgmlType type)
{
    switch (type) {
    case GgmlType::Q8_0:
    case GgmlType::Q4_0:
    case GgmlType::Q5_0:
        return {0};
    case GgmlType::Q4_1:
    case GgmlType::Q5_1:
    case GgmlType::Q4_K:
    case GgmlType::Q5_K:
        return {0, 2};
    case GgmlType::Q6_K:
        return {208};
    default:
        return {};
    }
}

std::vector<std::uint8_t> randomBlocks(GgmlType type, std::int64_t nBlocks, std::mt19937 &rng)
{
    const GgmlTypeTraits traits = engine::ggmlTypeTraits(type);
    std::vector<std::uint8_t> bytes(static_cast<std::size_t>(nBlocks) * traits.blockBytes);
    for (std::uint8_t &b : bytes)
        b = static_cast<std::uint8_t>(rng());
    for (std::int64_t b = 0; b < nBlocks; ++b) {
        for (std::size_t offset : halfScaleOffsets(type)) {
            std::uint16_t h = 0;
            do {
                h = static_cast<std::uint16_t>(rng());
            } while ((h & 0x7C00) == 0x7C00);
            std::uint8_t *p = bytes.data() + b * static_cast<std::int64_t>(traits.blockBytes) + offset;
            p[0] = static_cast<std::uint8_t>(h & 0xFF);
            p[1] = static_cast<std::uint8_t>(h >> 8);
        }
    }
    return bytes;
}

std::vector<float> engineDequantize(GgmlType type, const std::vector<std::uint8_t> &bytes, std::int64_t n)
{
    std::vector<float> out(static_cast<std::size_t>(n));
    engine::dequantizeRow(type, reinterpret_cast<const std::byte *>(bytes.data()), out.data(), n);
    return out;
}

// Empty when a and b are identical bit for bit, else a description of the first difference.
QString firstBitDifference(const std::vector<float> &a, const std::vector<float> &b)
{
    if (a.size() != b.size())
        return QStringLiteral("sizes differ: %1 vs %2").arg(a.size()).arg(b.size());
    if (std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0)
        return {};
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (bitsOf(a[i]) != bitsOf(b[i])) {
            return QStringLiteral("element %1: %2 (0x%3) vs %4 (0x%5)")
                .arg(i)
                .arg(static_cast<double>(a[i]), 0, 'g', 9)
                .arg(bitsOf(a[i]), 8, 16, QLatin1Char('0'))
                .arg(static_cast<double>(b[i]), 0, 'g', 9)
                .arg(bitsOf(b[i]), 8, 16, QLatin1Char('0'));
        }
    }
    return {};
}

// Decodes one hand-built block with both decoders; each must equal expected exactly.
void checkBlock(GgmlType type, const std::vector<std::uint8_t> &block, const std::vector<float> &expected)
{
    const auto n = static_cast<std::int64_t>(expected.size());
    QCOMPARE(block.size(), *engine::ggmlRowBytes(type, n));
    const QString engineDiff = firstBitDifference(engineDequantize(type, block, n), expected);
    QVERIFY2(engineDiff.isEmpty(), qPrintable(QStringLiteral("engine: ") + engineDiff));
    const QString refDiff = firstBitDifference(referenceDequantize(type, block.data(), n), expected);
    QVERIFY2(refDiff.isEmpty(), qPrintable(QStringLiteral("reference: ") + refDiff));
}

// The 12 scale bytes of the hand-built Q4_K/Q5_K blocks, packed by hand (not by the quantizer):
//   scales = {1, 2, 3, 4, 17, 33, 48, 63}, mins = {5, 6, 7, 8, 16, 32, 47, 62}
// bytes 0-3: scale 0-3 | (scale 4-7 >> 4) << 6     bytes 4-7: min 0-3 | (min 4-7 >> 4) << 6
// bytes 8-11: (scale 4-7 & 15) | (min 4-7 & 15) << 4
constexpr std::array<std::uint8_t, 12> kPackedScalesK{0x41, 0x82, 0xC3, 0xC4, 0x45, 0x86,
                                                      0x87, 0xC8, 0x01, 0x01, 0xF0, 0xEF};
constexpr std::array<int, 8> kScalesK{1, 2, 3, 4, 17, 33, 48, 63};
constexpr std::array<int, 8> kMinsK{5, 6, 7, 8, 16, 32, 47, 62};

#if defined(KVCHAT_TEST_F16C)
bool cpuHasF16c()
{
    unsigned eax = 0;
    unsigned ebx = 0;
    unsigned ecx = 0;
    unsigned edx = 0;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx))
        return false;
    const bool osxsave = ecx & (1u << 27);
    const bool avx = ecx & (1u << 28);
    const bool f16c = ecx & (1u << 29);
    if (!osxsave || !avx || !f16c)
        return false;
    // The VEX-encoded conversions also need the OS to save the AVX register state.
    unsigned xcr0Low = 0;
    unsigned xcr0High = 0;
    __asm__("xgetbv" : "=a"(xcr0Low), "=d"(xcr0High) : "c"(0));
    return (xcr0Low & 6u) == 6u;
}

// This test file is built without -mf16c, so only these functions use the instructions, and only
// after cpuHasF16c() said yes.
__attribute__((target("f16c"))) float hardwareHalfToFloat(std::uint16_t h)
{
    return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)));
}

__attribute__((target("f16c"))) std::uint16_t hardwareFloatToHalf(float f)
{
    const __m128i h = _mm_cvtps_ph(_mm_set_ss(f), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return static_cast<std::uint16_t>(_mm_cvtsi128_si32(h) & 0xFFFF);
}
#endif

} // namespace

class GgmlTypeTest : public QObject
{
    Q_OBJECT

private slots:
    void traitsTable_data();
    void traitsTable();
    void supportedNames();
    void unsupportedRawTypes_data();
    void unsupportedRawTypes();
    void rowBytes_data();
    void rowBytes();

    void halfToFloatEdgeCases_data();
    void halfToFloatEdgeCases();
    void floatToHalfEdgeCases_data();
    void floatToHalfEdgeCases();
    void everyHalfRoundTrips();
    void halfConversionsMatchF16c();
    void bf16ToFloatCases();

    void dequantizeMatchesReference_data();
    void dequantizeMatchesReference();
    void dequantizeEmptyRowWritesNothing();

    void plainFloatKnownValues();
    void q4_0KnownBlock();
    void q4_1KnownBlock();
    void q5_0KnownBlock();
    void q5_1KnownBlock();
    void q8_0KnownBlock();
    void q4_KKnownBlock();
    void q5_KKnownBlock();
    void q6_KKnownBlock();

    void roundTripError_data();
    void roundTripError();
    void zerosQuantizeToZeros();
    void exactlyRepresentableValuesSurvive_data();
    void exactlyRepresentableValuesSurvive();
    void quantizeRejectsPartialBlocks();
};

// ---- traits --------------------------------------------------------------------------------

void GgmlTypeTest::traitsTable_data()
{
    QTest::addColumn<quint32>("raw");
    QTest::addColumn<QString>("name");
    QTest::addColumn<qint64>("blockElements");
    QTest::addColumn<qint64>("blockBytes");
    // Numbers and sizes as in ggml.h / ggml-common.h.
    QTest::newRow("F32") << 0u << "F32" << qint64(1) << qint64(4);
    QTest::newRow("F16") << 1u << "F16" << qint64(1) << qint64(2);
    QTest::newRow("Q4_0") << 2u << "Q4_0" << qint64(32) << qint64(18);
    QTest::newRow("Q4_1") << 3u << "Q4_1" << qint64(32) << qint64(20);
    QTest::newRow("Q5_0") << 6u << "Q5_0" << qint64(32) << qint64(22);
    QTest::newRow("Q5_1") << 7u << "Q5_1" << qint64(32) << qint64(24);
    QTest::newRow("Q8_0") << 8u << "Q8_0" << qint64(32) << qint64(34);
    QTest::newRow("Q4_K") << 12u << "Q4_K" << qint64(256) << qint64(144);
    QTest::newRow("Q5_K") << 13u << "Q5_K" << qint64(256) << qint64(176);
    QTest::newRow("Q6_K") << 14u << "Q6_K" << qint64(256) << qint64(210);
    QTest::newRow("BF16") << 30u << "BF16" << qint64(1) << qint64(2);
}

void GgmlTypeTest::traitsTable()
{
    QFETCH(quint32, raw);
    QFETCH(QString, name);
    QFETCH(qint64, blockElements);
    QFETCH(qint64, blockBytes);

    const std::optional<GgmlTypeTraits> traits = engine::ggmlTypeTraits(raw);
    QVERIFY(traits.has_value());
    QCOMPARE(static_cast<quint32>(traits->type), raw);
    QCOMPARE(QString::fromUtf8(traits->name.data(), qsizetype(traits->name.size())), name);
    QCOMPARE(traits->blockElements, blockElements);
    QCOMPARE(static_cast<qint64>(traits->blockBytes), blockBytes);

    const GgmlTypeTraits byEnum = engine::ggmlTypeTraits(traits->type);
    QCOMPARE(byEnum.name, traits->name);
    QCOMPARE(byEnum.blockElements, traits->blockElements);
    QCOMPARE(byEnum.blockBytes, traits->blockBytes);
    QCOMPARE(engine::ggmlTypeName(traits->type), traits->name);
}

void GgmlTypeTest::supportedNames()
{
    QCOMPARE(engine::supportedGgmlTypeNames(),
             std::string_view("F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K"));
}

void GgmlTypeTest::unsupportedRawTypes_data()
{
    QTest::addColumn<quint32>("raw");
    // 4 and 5 were Q4_2/Q4_3 (removed), 9 Q8_1, 10/11 Q2_K/Q3_K, 15 Q8_K, 16-23 IQ types,
    // 24-28 integer and F64 types, 29 IQ1_M, 34/35 TQ types, 39 MXFP4.
    for (quint32 raw :
         {4u, 5u, 9u, 10u, 11u, 15u, 16u, 19u, 23u, 24u, 26u, 28u, 29u, 31u, 34u, 35u, 39u, 99u, 0xFFFFFFFFu}) {
        QTest::addRow("%u", raw) << raw;
    }
}

void GgmlTypeTest::unsupportedRawTypes()
{
    QFETCH(quint32, raw);
    QVERIFY(!engine::ggmlTypeTraits(raw).has_value());
}

void GgmlTypeTest::rowBytes_data()
{
    QTest::addColumn<GgmlType>("type");
    QTest::addColumn<qint64>("nElements");
    QTest::addColumn<qint64>("expected"); // -1: nullopt

    QTest::newRow("F32 empty") << GgmlType::F32 << qint64(0) << qint64(0);
    QTest::newRow("F32 7") << GgmlType::F32 << qint64(7) << qint64(28);
    QTest::newRow("F16 3") << GgmlType::F16 << qint64(3) << qint64(6);
    QTest::newRow("BF16 5") << GgmlType::BF16 << qint64(5) << qint64(10);
    QTest::newRow("Q8_0 32") << GgmlType::Q8_0 << qint64(32) << qint64(34);
    QTest::newRow("Q8_0 64") << GgmlType::Q8_0 << qint64(64) << qint64(68);
    QTest::newRow("Q8_0 31") << GgmlType::Q8_0 << qint64(31) << qint64(-1);
    QTest::newRow("Q8_0 33") << GgmlType::Q8_0 << qint64(33) << qint64(-1);
    QTest::newRow("Q4_0 4096") << GgmlType::Q4_0 << qint64(4096) << qint64(128 * 18);
    QTest::newRow("Q4_0 -32") << GgmlType::Q4_0 << qint64(-32) << qint64(-1);
    QTest::newRow("Q4_1 96") << GgmlType::Q4_1 << qint64(96) << qint64(60);
    QTest::newRow("Q5_0 32") << GgmlType::Q5_0 << qint64(32) << qint64(22);
    QTest::newRow("Q5_1 64") << GgmlType::Q5_1 << qint64(64) << qint64(48);
    QTest::newRow("Q5_1 48") << GgmlType::Q5_1 << qint64(48) << qint64(-1);
    QTest::newRow("Q4_K 256") << GgmlType::Q4_K << qint64(256) << qint64(144);
    QTest::newRow("Q4_K 4096") << GgmlType::Q4_K << qint64(4096) << qint64(16 * 144);
    QTest::newRow("Q4_K 128") << GgmlType::Q4_K << qint64(128) << qint64(-1);
    QTest::newRow("Q5_K 512") << GgmlType::Q5_K << qint64(512) << qint64(352);
    QTest::newRow("Q6_K 768") << GgmlType::Q6_K << qint64(768) << qint64(630);
    QTest::newRow("Q6_K 257") << GgmlType::Q6_K << qint64(257) << qint64(-1);
}

void GgmlTypeTest::rowBytes()
{
    QFETCH(GgmlType, type);
    QFETCH(qint64, nElements);
    QFETCH(qint64, expected);
    const std::optional<std::size_t> bytes = engine::ggmlRowBytes(type, nElements);
    if (expected < 0) {
        QVERIFY(!bytes.has_value());
    } else {
        QVERIFY(bytes.has_value());
        QCOMPARE(static_cast<qint64>(*bytes), expected);
    }
}

// ---- half / bfloat16 -----------------------------------------------------------------------

void GgmlTypeTest::halfToFloatEdgeCases_data()
{
    QTest::addColumn<quint16>("half");
    QTest::addColumn<quint32>("floatBits");
    QTest::newRow("+0") << quint16(0x0000) << 0x00000000u;
    QTest::newRow("-0") << quint16(0x8000) << 0x80000000u;
    QTest::newRow("1") << quint16(0x3C00) << 0x3F800000u;
    QTest::newRow("-1") << quint16(0xBC00) << 0xBF800000u;
    QTest::newRow("1+ulp") << quint16(0x3C01) << 0x3F802000u;
    QTest::newRow("1/3") << quint16(0x3555) << 0x3EAAA000u;
    QTest::newRow("max 65504") << quint16(0x7BFF) << 0x477FE000u;
    QTest::newRow("-max") << quint16(0xFBFF) << 0xC77FE000u;
    QTest::newRow("smallest subnormal 2^-24") << quint16(0x0001) << 0x33800000u;
    QTest::newRow("-smallest subnormal") << quint16(0x8001) << 0xB3800000u;
    QTest::newRow("largest subnormal") << quint16(0x03FF) << 0x387FC000u;
    QTest::newRow("smallest normal 2^-14") << quint16(0x0400) << 0x38800000u;
    QTest::newRow("+inf") << quint16(0x7C00) << 0x7F800000u;
    QTest::newRow("-inf") << quint16(0xFC00) << 0xFF800000u;
    QTest::newRow("quiet nan") << quint16(0x7E00) << 0x7FC00000u;
    QTest::newRow("-quiet nan payload") << quint16(0xFE01) << 0xFFC02000u;
    // A signalling NaN converts to the quiet NaN with the same payload, as vcvtph2ps does.
    QTest::newRow("signalling nan") << quint16(0x7C01) << 0x7FC02000u;
}

void GgmlTypeTest::halfToFloatEdgeCases()
{
    QFETCH(quint16, half);
    QFETCH(quint32, floatBits);
    QCOMPARE(bitsOf(engine::halfToFloat(half)), floatBits);
}

void GgmlTypeTest::floatToHalfEdgeCases_data()
{
    QTest::addColumn<quint32>("floatBits");
    QTest::addColumn<quint16>("half");
    // Expected values cross-checked with Python's struct 'e' (IEEE binary16, round half to even).
    QTest::newRow("+0") << 0x00000000u << quint16(0x0000);
    QTest::newRow("-0") << 0x80000000u << quint16(0x8000);
    QTest::newRow("1") << 0x3F800000u << quint16(0x3C00);
    QTest::newRow("-2") << 0xC0000000u << quint16(0xC000);
    QTest::newRow("0.1") << 0x3DCCCCCDu << quint16(0x2E66);
    QTest::newRow("1/3") << 0x3EAAAAABu << quint16(0x3555);
    QTest::newRow("65504") << 0x477FE000u << quint16(0x7BFF);
    QTest::newRow("65505 rounds down") << 0x477FE100u << quint16(0x7BFF);
    QTest::newRow("65519.99 rounds down") << 0x477FEFFDu << quint16(0x7BFF);
    QTest::newRow("65520 tie rounds to inf") << 0x477FF000u << quint16(0x7C00);
    QTest::newRow("-65520") << 0xC77FF000u << quint16(0xFC00);
    QTest::newRow("65536") << 0x47800000u << quint16(0x7C00);
    QTest::newRow("1e10") << 0x501502F9u << quint16(0x7C00);
    QTest::newRow("float max") << 0x7F7FFFFFu << quint16(0x7C00);
    QTest::newRow("+inf") << 0x7F800000u << quint16(0x7C00);
    QTest::newRow("-inf") << 0xFF800000u << quint16(0xFC00);
    QTest::newRow("1+2^-11 tie to even (down)") << 0x3F801000u << quint16(0x3C00);
    QTest::newRow("1+3*2^-11 tie to even (up)") << 0x3F803000u << quint16(0x3C02);
    QTest::newRow("just above tie") << 0x3F801001u << quint16(0x3C01);
    QTest::newRow("2^-14 smallest normal") << 0x38800000u << quint16(0x0400);
    QTest::newRow("2^-14 - 2^-25 tie rounds up to normal") << 0x387FE000u << quint16(0x0400);
    QTest::newRow("2^-24 smallest subnormal") << 0x33800000u << quint16(0x0001);
    QTest::newRow("-2^-24") << 0xB3800000u << quint16(0x8001);
    QTest::newRow("3*2^-25 tie to even 2") << 0x33C00000u << quint16(0x0002);
    QTest::newRow("5*2^-25 tie to even 2") << 0x34200000u << quint16(0x0002);
    QTest::newRow("2^-25 tie to even 0") << 0x33000000u << quint16(0x0000);
    QTest::newRow("-2^-25 tie to -0") << 0xB3000000u << quint16(0x8000);
    QTest::newRow("just above 2^-25") << 0x33000001u << quint16(0x0001);
    QTest::newRow("float subnormal") << 0x00000001u << quint16(0x0000);
    QTest::newRow("1e-30") << 0x0DA24260u << quint16(0x0000);
    QTest::newRow("quiet nan") << 0x7FC00000u << quint16(0x7E00);
    QTest::newRow("-nan with payload") << 0xFFC02000u << quint16(0xFE01);
    // Payload bits below the half's 10 are dropped; the quiet bit keeps it a NaN, not inf.
    QTest::newRow("signalling nan, low payload") << 0x7F800001u << quint16(0x7E00);
}

void GgmlTypeTest::floatToHalfEdgeCases()
{
    QFETCH(quint32, floatBits);
    QFETCH(quint16, half);
    QCOMPARE(engine::floatToHalf(floatFromBits(floatBits)), half);
}

void GgmlTypeTest::everyHalfRoundTrips()
{
    std::vector<std::uint8_t> bytes(65536 * 2);
    std::vector<float> scalar(65536);
    for (std::uint32_t h = 0; h < 65536; ++h) {
        bytes[2 * h] = static_cast<std::uint8_t>(h & 0xFF);
        bytes[2 * h + 1] = static_cast<std::uint8_t>(h >> 8);
        scalar[h] = engine::halfToFloat(static_cast<std::uint16_t>(h));
    }
    // The row kernel (vectorized where built so) and the scalar conversion agree on every value,
    // and so does the reference decoder.
    const QString rowDiff = firstBitDifference(engineDequantize(GgmlType::F16, bytes, 65536), scalar);
    QVERIFY2(rowDiff.isEmpty(), qPrintable(rowDiff));
    const QString refDiff = firstBitDifference(referenceDequantize(GgmlType::F16, bytes.data(), 65536), scalar);
    QVERIFY2(refDiff.isEmpty(), qPrintable(refDiff));

    for (std::uint32_t h = 0; h < 65536; ++h) {
        const bool isNan = (h & 0x7C00) == 0x7C00 && (h & 0x03FF) != 0;
        const std::uint16_t back = engine::floatToHalf(scalar[h]);
        if (isNan) {
            // Comes back as the quiet NaN with the same sign and payload.
            QCOMPARE(back, static_cast<std::uint16_t>(h | 0x0200));
        } else {
            QCOMPARE(back, static_cast<std::uint16_t>(h));
        }
    }
}

void GgmlTypeTest::halfConversionsMatchF16c()
{
#if defined(KVCHAT_TEST_F16C)
    if (!cpuHasF16c())
        QSKIP("this CPU has no F16C");
    for (std::uint32_t h = 0; h < 65536; ++h) {
        const auto half = static_cast<std::uint16_t>(h);
        if (bitsOf(engine::halfToFloat(half)) != bitsOf(hardwareHalfToFloat(half)))
            QFAIL(qPrintable(QStringLiteral("halfToFloat(0x%1) differs from F16C").arg(h, 4, 16, QLatin1Char('0'))));
    }

    // floatToHalf: every rounding boundary (each half value, the midpoints to its neighbour, and
    // a few ulps around them), then random bit patterns.
    auto check = [](std::uint32_t bits) {
        const float f = floatFromBits(bits);
        return engine::floatToHalf(f) == hardwareFloatToHalf(f);
    };
    for (std::uint32_t h = 0; h < 0x7C00; ++h) {
        for (std::uint32_t sign : {0u, 0x80000000u}) {
            const std::uint32_t lo = bitsOf(engine::halfToFloat(static_cast<std::uint16_t>(h)));
            const std::uint32_t hi = bitsOf(engine::halfToFloat(static_cast<std::uint16_t>(h + 1)));
            const std::uint32_t mid = lo + (hi - lo) / 2; // the exact midpoint, as float bits
            for (std::uint32_t centre : {lo, mid}) {
                for (std::int32_t delta = -2; delta <= 2; ++delta) {
                    const std::uint32_t bits = (centre + static_cast<std::uint32_t>(delta)) | sign;
                    if (!check(bits)) {
                        QFAIL(qPrintable(QStringLiteral("floatToHalf(bits 0x%1) differs from F16C")
                                             .arg(bits, 8, 16, QLatin1Char('0'))));
                    }
                }
            }
        }
    }
    std::mt19937 rng(1234);
    for (int i = 0; i < (1 << 22); ++i) {
        const std::uint32_t bits = rng();
        if (!check(bits)) {
            QFAIL(qPrintable(
                QStringLiteral("floatToHalf(bits 0x%1) differs from F16C").arg(bits, 8, 16, QLatin1Char('0'))));
        }
    }
#else
    QSKIP("F16C comparison is only built for x86-64 with GCC or Clang");
#endif
}

void GgmlTypeTest::bf16ToFloatCases()
{
    QCOMPARE(engine::bf16ToFloat(0x3F80), 1.0f);
    QCOMPARE(engine::bf16ToFloat(0xC049), -3.140625f);
    QCOMPARE(bitsOf(engine::bf16ToFloat(0x8000)), 0x80000000u);
    QCOMPARE(bitsOf(engine::bf16ToFloat(0x0001)), 0x00010000u); // a float subnormal
    QCOMPARE(bitsOf(engine::bf16ToFloat(0x7F80)), 0x7F800000u);
    QCOMPARE(bitsOf(engine::bf16ToFloat(0xFFC1)), 0xFFC10000u);
}

// ---- dequantizeRow against the reference decoder -------------------------------------------

void GgmlTypeTest::dequantizeMatchesReference_data()
{
    QTest::addColumn<GgmlType>("type");
    QTest::addColumn<qint64>("nElements");
    for (GgmlType type : kAllTypes) {
        const std::int64_t block = engine::ggmlTypeTraits(type).blockElements;
        if (block == 1) {
            // Around the 8-wide vector width, and a long odd row.
            for (qint64 n : {1, 7, 8, 9, 15, 16, 17, 1001, 4099})
                QTest::addRow("%s/%lld", typeName(type), n) << type << n;
        } else {
            for (qint64 nBlocks : {1, 2, 3, 7, 64, 129})
                QTest::addRow("%s/%lld blocks", typeName(type), nBlocks) << type << nBlocks * block;
        }
    }
}

void GgmlTypeTest::dequantizeMatchesReference()
{
    QFETCH(GgmlType, type);
    QFETCH(qint64, nElements);
    const std::int64_t nBlocks = nElements / engine::ggmlTypeTraits(type).blockElements;
    std::mt19937 rng(static_cast<std::uint32_t>(nElements * 1000 + static_cast<qint64>(type)));
    const std::vector<std::uint8_t> bytes = randomBlocks(type, nBlocks, rng);
    const std::vector<float> expected = referenceDequantize(type, bytes.data(), nElements);

    const QString diff = firstBitDifference(engineDequantize(type, bytes, nElements), expected);
    QVERIFY2(diff.isEmpty(), qPrintable(diff));

    // Source at every misalignment up to 7 bytes, destination off the 32-byte vector alignment,
    // with guard elements either side that must stay untouched.
    constexpr std::uint32_t kGuard = 0xDEADBEEF;
    for (std::size_t shift = 1; shift < 8; ++shift) {
        std::vector<std::uint8_t> shifted(bytes.size() + shift);
        std::memcpy(shifted.data() + shift, bytes.data(), bytes.size());
        std::vector<float> out(static_cast<std::size_t>(nElements) + 2, floatFromBits(kGuard));
        engine::dequantizeRow(type, reinterpret_cast<const std::byte *>(shifted.data() + shift), out.data() + 1,
                              nElements);
        QCOMPARE(bitsOf(out.front()), kGuard);
        QCOMPARE(bitsOf(out.back()), kGuard);
        const std::vector<float> inner(out.begin() + 1, out.end() - 1);
        const QString shiftedDiff = firstBitDifference(inner, expected);
        QVERIFY2(shiftedDiff.isEmpty(), qPrintable(QStringLiteral("shift %1: %2").arg(shift).arg(shiftedDiff)));
    }
}

void GgmlTypeTest::dequantizeEmptyRowWritesNothing()
{
    float out = 42.0f;
    const std::byte none{};
    for (GgmlType type : kAllTypes)
        engine::dequantizeRow(type, &none, &out, 0);
    QCOMPARE(out, 42.0f);
}

// ---- hand-built blocks with known values ---------------------------------------------------

void GgmlTypeTest::plainFloatKnownValues()
{
    // F32 1.5, -0.25 (little-endian)
    checkBlock(GgmlType::F32, {0x00, 0x00, 0xC0, 0x3F, 0x00, 0x00, 0x80, 0xBE}, {1.5f, -0.25f});
    // F16 1, -2, 65504, 2^-24, 0.5
    checkBlock(GgmlType::F16, {0x00, 0x3C, 0x00, 0xC0, 0xFF, 0x7B, 0x01, 0x00, 0x00, 0x38},
               {1.0f, -2.0f, 65504.0f, 5.9604644775390625e-08f, 0.5f});
    // BF16 1, -3, 0.5, 256
    checkBlock(GgmlType::BF16, {0x80, 0x3F, 0x40, 0xC0, 0x00, 0x3F, 0x80, 0x43}, {1.0f, -3.0f, 0.5f, 256.0f});
}

void GgmlTypeTest::q4_0KnownBlock()
{
    // d = 0.5; qs[j] = j | (15 - j) << 4, so elements 0-15 count up and 16-31 count down.
    const std::vector<std::uint8_t> block{0x00, 0x38, 0xF0, 0xE1, 0xD2, 0xC3, 0xB4, 0xA5, 0x96,
                                          0x87, 0x78, 0x69, 0x5A, 0x4B, 0x3C, 0x2D, 0x1E, 0x0F};
    checkBlock(GgmlType::Q4_0, block, {-4.0f, -3.5f, -3.0f, -2.5f, -2.0f, -1.5f, -1.0f, -0.5f, 0.0f,  0.5f, 1.0f,
                                       1.5f,  2.0f,  2.5f,  3.0f,  3.5f,  3.5f,  3.0f,  2.5f,  2.0f,  1.5f, 1.0f,
                                       0.5f,  0.0f,  -0.5f, -1.0f, -1.5f, -2.0f, -2.5f, -3.0f, -3.5f, -4.0f});
}

void GgmlTypeTest::q4_1KnownBlock()
{
    // d = 0.25, m = -1; same nibbles as the Q4_0 block.
    const std::vector<std::uint8_t> block{0x00, 0x34, 0x00, 0xBC, 0xF0, 0xE1, 0xD2, 0xC3, 0xB4, 0xA5,
                                          0x96, 0x87, 0x78, 0x69, 0x5A, 0x4B, 0x3C, 0x2D, 0x1E, 0x0F};
    checkBlock(GgmlType::Q4_1, block, {-1.0f, -0.75f, -0.5f, -0.25f, 0.0f,  0.25f, 0.5f,   0.75f, 1.0f,   1.25f, 1.5f,
                                       1.75f, 2.0f,   2.25f, 2.5f,   2.75f, 2.75f, 2.5f,   2.25f, 2.0f,   1.75f, 1.5f,
                                       1.25f, 1.0f,   0.75f, 0.5f,   0.25f, 0.0f,  -0.25f, -0.5f, -0.75f, -1.0f});
}

// Q5_0/Q5_1 blocks share quants: qh (little-endian) = 0xC0008001 sets the fifth bit of elements
// 0, 15, 30 and 31; qs[14] = 0x0F and qs[15] = 0x7A, all other nibbles 0. So the 5-bit quants are
// e0: 16, e14: 15, e15: 16 + 10 = 26, e30: 16, e31: 16 + 7 = 23, and 0 everywhere else.
void GgmlTypeTest::q5_0KnownBlock()
{
    // d = 0.5: x = (q - 16) * 0.5
    std::vector<std::uint8_t> block{0x00, 0x38, 0x01, 0x80, 0x00, 0xC0};
    block.resize(22, 0x00);
    block[6 + 14] = 0x0F;
    block[6 + 15] = 0x7A;
    std::vector<float> expected(32, -8.0f);
    expected[0] = 0.0f;
    expected[14] = -0.5f;
    expected[15] = 5.0f;
    expected[30] = 0.0f;
    expected[31] = 3.5f;
    checkBlock(GgmlType::Q5_0, block, expected);
}

void GgmlTypeTest::q5_1KnownBlock()
{
    // d = 0.5, m = 2: x = q * 0.5 + 2
    std::vector<std::uint8_t> block{0x00, 0x38, 0x00, 0x40, 0x01, 0x80, 0x00, 0xC0};
    block.resize(24, 0x00);
    block[8 + 14] = 0x0F;
    block[8 + 15] = 0x7A;
    std::vector<float> expected(32, 2.0f);
    expected[0] = 10.0f;
    expected[14] = 9.5f;
    expected[15] = 15.0f;
    expected[30] = 10.0f;
    expected[31] = 13.5f;
    checkBlock(GgmlType::Q5_1, block, expected);
}

void GgmlTypeTest::q8_0KnownBlock()
{
    // d = 0.125; qs[i] = 8i - 128 (so x = i - 16), except qs[31] = 127.
    std::vector<std::uint8_t> block{0x00, 0x30};
    for (int i = 0; i < 31; ++i)
        block.push_back(static_cast<std::uint8_t>(static_cast<std::int8_t>(8 * i - 128)));
    block.push_back(0x7F);
    checkBlock(GgmlType::Q8_0, block,
               {-16.0f, -15.0f, -14.0f, -13.0f, -12.0f, -11.0f, -10.0f, -9.0f, -8.0f, -7.0f,  -6.0f,
                -5.0f,  -4.0f,  -3.0f,  -2.0f,  -1.0f,  0.0f,   1.0f,   2.0f,  3.0f,  4.0f,   5.0f,
                6.0f,   7.0f,   8.0f,   9.0f,   10.0f,  11.0f,  12.0f,  13.0f, 14.0f, 15.875f});
}

void GgmlTypeTest::q4_KKnownBlock()
{
    // d = 1, dmin = 0.5, scales/mins packed by hand (kPackedScalesK). Each 32-byte chunk c of qs
    // holds sub-block 2c in its low nibbles and 2c+1 in its high nibbles; byte l of every chunk is
    // (l % 16) | (15 - l % 16) << 4. So x = sc[s] * q - m[s] / 2 with q = l % 16 for even s and
    // 15 - l % 16 for odd s.
    std::vector<std::uint8_t> block{0x00, 0x3C, 0x00, 0x38};
    block.insert(block.end(), kPackedScalesK.begin(), kPackedScalesK.end());
    for (int c = 0; c < 4; ++c) {
        for (int l = 0; l < 32; ++l)
            block.push_back(static_cast<std::uint8_t>((l % 16) | ((15 - l % 16) << 4)));
    }
    std::vector<float> expected(256);
    for (int e = 0; e < 256; ++e) {
        const int s = e / 32;
        const int q = s % 2 == 0 ? e % 16 : 15 - e % 16;
        expected[static_cast<std::size_t>(e)] = static_cast<float>(kScalesK[static_cast<std::size_t>(s)] * q) -
                                                0.5f * static_cast<float>(kMinsK[static_cast<std::size_t>(s)]);
    }
    // Spot checks written out: element 0 (s0, q0), 33 (s1, q14), 130 (s4, q2), 255 (s7, q0).
    QCOMPARE(expected[0], -2.5f);
    QCOMPARE(expected[33], 25.0f);   // 2 * 14 - 3
    QCOMPARE(expected[130], 26.0f);  // 17 * 2 - 8
    QCOMPARE(expected[255], -31.0f); // 63 * 0 - 31
    QCOMPARE(expected[224], 914.0f); // 63 * 15 - 31
    checkBlock(GgmlType::Q4_K, block, expected);
}

void GgmlTypeTest::q5_KKnownBlock()
{
    // As the Q4_K block, plus qh[l] = 1 << (l % 8): element l of sub-block s gets the fifth bit
    // (+16) exactly when l % 8 == s.
    std::vector<std::uint8_t> block{0x00, 0x3C, 0x00, 0x38};
    block.insert(block.end(), kPackedScalesK.begin(), kPackedScalesK.end());
    for (int l = 0; l < 32; ++l)
        block.push_back(static_cast<std::uint8_t>(1u << (l % 8)));
    for (int c = 0; c < 4; ++c) {
        for (int l = 0; l < 32; ++l)
            block.push_back(static_cast<std::uint8_t>((l % 16) | ((15 - l % 16) << 4)));
    }
    std::vector<float> expected(256);
    for (int e = 0; e < 256; ++e) {
        const int s = e / 32;
        const int l = e % 32;
        const int q = (s % 2 == 0 ? l % 16 : 15 - l % 16) + (l % 8 == s ? 16 : 0);
        expected[static_cast<std::size_t>(e)] = static_cast<float>(kScalesK[static_cast<std::size_t>(s)] * q) -
                                                0.5f * static_cast<float>(kMinsK[static_cast<std::size_t>(s)]);
    }
    QCOMPARE(expected[0], 13.5f);     // s0, q = 0 + 16: 16 - 2.5
    QCOMPARE(expected[1], -1.5f);     // s0, q = 1
    QCOMPARE(expected[33], 57.0f);    // s1, l1: q = 14 + 16: 60 - 3
    QCOMPARE(expected[231], 1481.0f); // s7, l7: q = 8 + 16: 63 * 24 - 31
    checkBlock(GgmlType::Q5_K, block, expected);
}

void GgmlTypeTest::q6_KKnownBlock()
{
    // d = 0.5, int8 scales {1, -2, 3, -4, ..., 15, -127}; all quants are 0 (x = -32 * 0.5 * sc)
    // except for a few bytes chosen to hit each part of the layout:
    //   ql[0] = 0x5A: element 0 low nibble 10, element 64 (quarter 2) high nibble 5
    //   ql[33] = 0x37: element 33 (quarter 1, l 1) low 7, element 97 (quarter 3) high 3
    //   qh[2] = 0xE4: element 2 +0, element 34 +16, element 66 +32, element 98 +48
    //   ql[69] = 0xF1 and qh[37] = 0x03: element 133 = 1 + 48, element 197 = 15 + 0
    std::vector<std::uint8_t> block(210, 0x00);
    block[0] = 0x5A;
    block[33] = 0x37;
    block[128 + 2] = 0xE4;
    block[64 + 5] = 0xF1;
    block[128 + 32 + 5] = 0x03;
    const std::array<int, 16> scales{1, -2, 3, -4, 5, -6, 7, -8, 9, -10, 11, -12, 13, -14, 15, -127};
    for (std::size_t g = 0; g < 16; ++g)
        block[192 + g] = static_cast<std::uint8_t>(static_cast<std::int8_t>(scales[g]));
    block[208] = 0x00;
    block[209] = 0x38;

    std::vector<float> expected(256);
    for (std::size_t e = 0; e < 256; ++e)
        expected[e] = -16.0f * static_cast<float>(scales[e / 16]);
    expected[0] = -11.0f;             // 0.5 * 1 * (10 - 32)
    expected[33] = -37.5f;            // 0.5 * 3 * (7 - 32)
    expected[34] = -24.0f;            // 0.5 * 3 * (16 - 32)
    expected[64] = -67.5f;            // 0.5 * 5 * (5 - 32)
    expected[66] = 0.0f;              // 0.5 * 5 * (32 - 32)
    expected[97] = -101.5f;           // 0.5 * 7 * (3 - 32)
    expected[98] = 56.0f;             // 0.5 * 7 * (48 - 32)
    expected[133] = 76.5f;            // 0.5 * 9 * (49 - 32)
    expected[197] = -110.5f;          // 0.5 * 13 * (15 - 32)
    QCOMPARE(expected[255], 2032.0f); // 0.5 * -127 * -32
    checkBlock(GgmlType::Q6_K, block, expected);
}

// ---- quantize -> dequantize ----------------------------------------------------------------

void GgmlTypeTest::roundTripError_data()
{
    QTest::addColumn<GgmlType>("type");
    QTest::addColumn<double>("maxRelError"); // of the max-abs of the block (at least 32 elements)
    // Bounds are the format's worst case with a little margin for scale rounding. The symmetric
    // types map the extreme to the most negative quant, so the other side reaches only
    // (2^(b-1) - 1) / 2^(b-1) of it: worst error max/8 (Q4_0), max/16 (Q5_0), max/32 (Q6_K).
    // The min/max types step (max - min) / (2^b - 1) <= 2 max-abs / (2^b - 1): half of that is
    // max/15 (Q4_1, Q4_K) or max/31 (Q5_1, Q5_K). Q8_0 steps max/127.
    QTest::newRow("F32") << GgmlType::F32 << 0.0;
    QTest::newRow("F16") << GgmlType::F16 << 1.0 / 2048;
    QTest::newRow("BF16") << GgmlType::BF16 << 1.0 / 256;
    QTest::newRow("Q8_0") << GgmlType::Q8_0 << 0.0045;
    QTest::newRow("Q4_0") << GgmlType::Q4_0 << 0.13;
    QTest::newRow("Q4_1") << GgmlType::Q4_1 << 0.07;
    QTest::newRow("Q5_0") << GgmlType::Q5_0 << 0.065;
    QTest::newRow("Q5_1") << GgmlType::Q5_1 << 0.034;
    QTest::newRow("Q4_K") << GgmlType::Q4_K << 0.075;
    QTest::newRow("Q5_K") << GgmlType::Q5_K << 0.04;
    QTest::newRow("Q6_K") << GgmlType::Q6_K << 0.034;
}

void GgmlTypeTest::roundTripError()
{
    QFETCH(GgmlType, type);
    QFETCH(double, maxRelError);
    // Plain float types are judged per 32 values too: per element, half subnormals would count
    // their (tiny, absolute) rounding error as a large relative one.
    const std::int64_t block = std::max<std::int64_t>(engine::ggmlTypeTraits(type).blockElements, 32);
    const std::int64_t n = 16 * 256;
    std::mt19937 rng(static_cast<std::uint32_t>(type) + 77);
    std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
    std::uniform_real_distribution<float> logScale(-2.0f, 1.0f);

    // Three shapes of data: symmetric, all-positive and all-negative, with the magnitude changing
    // every 32 elements so K-quant sub-blocks need different scales.
    for (int shape = 0; shape < 3; ++shape) {
        std::vector<float> values(static_cast<std::size_t>(n));
        float magnitude = 1.0f;
        for (std::int64_t i = 0; i < n; ++i) {
            if (i % 32 == 0)
                magnitude = std::pow(10.0f, logScale(rng));
            float v = unit(rng);
            if (shape == 1)
                v = std::fabs(v) + 0.1f;
            else if (shape == 2)
                v = -std::fabs(v) - 0.1f;
            values[static_cast<std::size_t>(i)] = v * magnitude;
        }
        const std::vector<std::uint8_t> bytes = quantize(type, values.data(), n);
        QCOMPARE(bytes.size(), *engine::ggmlRowBytes(type, n));
        const std::vector<float> decoded = engineDequantize(type, bytes, n);
        const QString diff = firstBitDifference(decoded, referenceDequantize(type, bytes.data(), n));
        QVERIFY2(diff.isEmpty(), qPrintable(diff));

        double worst = 0.0;
        for (std::int64_t b = 0; b < n / block; ++b) {
            double maxAbs = 0.0;
            double maxErr = 0.0;
            for (std::int64_t i = b * block; i < (b + 1) * block; ++i) {
                const auto k = static_cast<std::size_t>(i);
                maxAbs = std::max(maxAbs, std::fabs(static_cast<double>(values[k])));
                maxErr = kvchat::testing::worseError(maxErr, std::fabs(static_cast<double>(decoded[k]) - values[k]));
            }
            worst = std::max(worst, maxErr / maxAbs);
        }
        qDebug("%s shape %d: worst error %.5f of block max-abs (bound %.5f)", typeName(type), shape, worst,
               maxRelError);
        QVERIFY2(worst <= maxRelError,
                 qPrintable(QStringLiteral("shape %1: error %2 > %3").arg(shape).arg(worst).arg(maxRelError)));
    }
}

void GgmlTypeTest::zerosQuantizeToZeros()
{
    const std::vector<float> zeros(512, 0.0f);
    for (GgmlType type : kAllTypes) {
        const std::vector<std::uint8_t> bytes = quantize(type, zeros.data(), 512);
        const std::vector<float> decoded = engineDequantize(type, bytes, 512);
        for (float v : decoded) {
            if (v != 0.0f)
                QFAIL(qPrintable(QStringLiteral("%1: zero decodes to %2").arg(typeName(type)).arg(v)));
        }
    }
}

void GgmlTypeTest::exactlyRepresentableValuesSurvive_data()
{
    QTest::addColumn<GgmlType>("type");
    QTest::addColumn<QList<float>>("values"); // one block's worth
    QList<float> q8;
    QList<float> q4;
    QList<float> q4Affine;
    QList<float> q5;
    for (int i = 0; i < 32; ++i) {
        q8 << static_cast<float>(8 * i - 127) / 16.0f;        // d = 1/16
        q4 << static_cast<float>(i % 16 - 8) * 0.25f;         // d = 0.25 (extreme -2)
        q4Affine << static_cast<float>(i % 16) * 0.5f - 3.0f; // d = 0.5, m = -3
        q5 << static_cast<float>(i - 16) * 0.125f;            // d = 0.125 (extreme -2)
    }
    QTest::newRow("Q8_0") << GgmlType::Q8_0 << q8;
    QTest::newRow("Q4_0") << GgmlType::Q4_0 << q4;
    QTest::newRow("Q4_1") << GgmlType::Q4_1 << q4Affine;
    QTest::newRow("Q5_0") << GgmlType::Q5_0 << q5;
    QTest::newRow("Q5_1") << GgmlType::Q5_1 << q5; // d = 3.875 / 31, m = -2
}

void GgmlTypeTest::exactlyRepresentableValuesSurvive()
{
    QFETCH(GgmlType, type);
    QFETCH(QList<float>, values);
    const std::vector<float> input(values.begin(), values.end());
    const std::vector<std::uint8_t> bytes = quantize(type, input.data(), 32);
    const std::vector<float> decoded = engineDequantize(type, bytes, 32);
    const QString diff = firstBitDifference(decoded, input);
    QVERIFY2(diff.isEmpty(), qPrintable(diff));
}

void GgmlTypeTest::quantizeRejectsPartialBlocks()
{
    const std::vector<float> values(300, 1.0f);
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, quantize(GgmlType::Q4_0, values.data(), 31));
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, quantize(GgmlType::Q6_K, values.data(), 300));
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, referenceDequantize(GgmlType::Q8_0, nullptr, 33));
}

QTEST_GUILESS_MAIN(GgmlTypeTest)
#include "ggml_type_test.moc"
