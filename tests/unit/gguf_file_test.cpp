// SPDX-License-Identifier: MIT
// Over 800 lines on purpose: one test file per class under test (STYLE.md §8); this one covers
// one crafted file per malformation the reader must reject.
// GgufFile: metadata and tensor round-trips through GgufWriter (v2, v3, custom alignments), the
// typed getters, the real stories260K file, and the error paths: every truncation of a small file,
// every section boundary, and one crafted file per validation rule. Each malformed file goes
// through both fromMemory and open() (mmap of a temporary file), and each error must name the file.
#include "engine/model/gguf_file.h"
#include "tests/support/gguf_writer.h"
#include "tests/support/quantize.h"
#include "tests/support/test_paths.h"
#include "tests/support/worst_error.h"

#include <QFile>
#include <QRegularExpression>
#include <QTemporaryDir>
#include <QtTest>

#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>

using kvchat::engine::GgmlType;
using kvchat::engine::GgufFile;
using kvchat::engine::GgufKv;
using kvchat::engine::GgufTensorInfo;
using kvchat::engine::GgufValueType;
using kvchat::testing::GgufWriter;

Q_DECLARE_METATYPE(GgmlType)

namespace {

using Bytes = std::vector<std::uint8_t>;

QString qs(std::string_view s)
{
    return QString::fromUtf8(s.data(), static_cast<qsizetype>(s.size()));
}

// A string array's elements by index (the file hands them out in order only).
std::vector<std::string_view> stringsOf(const GgufKv &kv)
{
    return {kv.strings.begin(), kv.strings.end()};
}

std::span<const std::byte> asSpan(const Bytes &b)
{
    return std::as_bytes(std::span<const std::uint8_t>(b));
}

// Little-endian byte builder for files the writer cannot express (odd value types, broken tensor
// infos).
class Raw
{
public:
    Raw &u8(std::uint8_t v)
    {
        m_b.push_back(v);
        return *this;
    }
    Raw &u16(std::uint16_t v) { return le(v, 2); }
    Raw &u32(std::uint32_t v) { return le(v, 4); }
    Raw &u64(std::uint64_t v) { return le(v, 8); }
    Raw &f32(float v) { return u32(std::bit_cast<std::uint32_t>(v)); }
    Raw &f64(double v) { return u64(std::bit_cast<std::uint64_t>(v)); }
    Raw &str(std::string_view s)
    {
        u64(s.size());
        m_b.insert(m_b.end(), s.begin(), s.end());
        return *this;
    }
    Raw &header(std::uint64_t nTensors, std::uint64_t nKvs, std::uint32_t version = 3)
    {
        m_b.insert(m_b.end(), {'G', 'G', 'U', 'F'});
        return u32(version).u64(nTensors).u64(nKvs);
    }
    Raw &key(std::string_view k, GgufValueType t) { return str(k).u32(static_cast<std::uint32_t>(t)); }
    Raw &tensorInfo(std::string_view name, const std::vector<std::uint64_t> &dims, std::uint32_t type,
                    std::uint64_t offset)
    {
        str(name).u32(static_cast<std::uint32_t>(dims.size()));
        for (std::uint64_t d : dims)
            u64(d);
        return u32(type).u64(offset);
    }
    Raw &padTo(std::size_t alignment)
    {
        while (m_b.size() % alignment != 0)
            m_b.push_back(0);
        return *this;
    }
    Raw &zeros(std::size_t n)
    {
        m_b.insert(m_b.end(), n, 0);
        return *this;
    }
    const Bytes &bytes() const { return m_b; }

private:
    Raw &le(std::uint64_t v, int n)
    {
        for (int k = 0; k < n; ++k)
            m_b.push_back(static_cast<std::uint8_t>(v >> (8 * k)));
        return *this;
    }
    Bytes m_b;
};

void patchU32(Bytes &b, std::size_t at, std::uint32_t v)
{
    for (int k = 0; k < 4; ++k)
        b[at + k] = static_cast<std::uint8_t>(v >> (8 * k));
}

void patchU64(Bytes &b, std::size_t at, std::uint64_t v)
{
    for (int k = 0; k < 8; ++k)
        b[at + k] = static_cast<std::uint8_t>(v >> (8 * k));
}

// Error message of fromMemory, or an empty optional when it parsed.
std::optional<QString> memoryError(const Bytes &bytes, const std::string &name)
{
    auto r = GgufFile::fromMemory(asSpan(bytes), name);
    if (r)
        return std::nullopt;
    return QString::fromStdString(r.error().message);
}

bool writeBytes(const QString &path, const Bytes &bytes)
{
    QFile f(path);
    if (!f.open(QIODevice::WriteOnly | QIODevice::Truncate))
        return false;
    return f.write(reinterpret_cast<const char *>(bytes.data()), static_cast<qint64>(bytes.size())) ==
           static_cast<qint64>(bytes.size());
}

std::optional<QString> fileError(const QString &path)
{
    auto r = GgufFile::open(path.toStdString());
    if (r)
        return std::nullopt;
    return QString::fromStdString(r.error().message);
}

// A small file with every section present: string/array metadata and two tensors whose data ends
// exactly at the end of the file (their sizes are multiples of the alignment), so that every proper
// prefix is invalid.
Bytes smallFile(GgufWriter::Layout *layout)
{
    GgufWriter w(3, 32);
    w.addString("general.architecture", "llama");
    w.addUInt32("llama.block_count", 2);
    w.addStringArray("tokenizer.ggml.tokens", {"<unk>", "a", "bc"});
    w.addFloat32Array("tokenizer.ggml.scores", {0.0f, -1.0f, -2.5f});
    std::vector<float> a(8), b(16);
    for (std::size_t k = 0; k < a.size(); ++k)
        a[k] = static_cast<float>(k);
    for (std::size_t k = 0; k < b.size(); ++k)
        b[k] = -static_cast<float>(k);
    w.addTensor("a", {8}, GgmlType::F32, a);
    w.addTensor("b", {8, 2}, GgmlType::F32, b);
    return w.serialize(layout);
}

} // namespace

class GgufFileTest : public QObject
{
    Q_OBJECT

private slots:
    void metadataRoundTrip_data();
    void metadataRoundTrip();
    void everyValueTypeRaw();
    void nestedArrays();
    void typedGetters();
    void customAlignment_data();
    void customAlignment();
    void f32TensorRoundTrip();
    void everyTensorTypeRaw();
    void quantizedTensorRoundTrip_data();
    void quantizedTensorRoundTrip();
    void manyTensorsLookup();
    void openMatchesFromMemory();
    void truncationAtEveryOffset();
    void truncationAtSectionBoundaries();
    void malformed_data();
    void malformed();
    void openErrors();
    void realModelStories260K();

private:
    QTemporaryDir m_dir;
};

void GgufFileTest::metadataRoundTrip_data()
{
    QTest::addColumn<quint32>("version");
    QTest::newRow("v2") << 2u;
    QTest::newRow("v3") << 3u;
}

void GgufFileTest::metadataRoundTrip()
{
    QFETCH(quint32, version);
    GgufWriter w(version);
    w.addUInt8("t.u8", 200);
    w.addInt32("t.i32", -123456);
    w.addUInt32("t.u32", 4000000000u);
    w.addUInt64("t.u64", std::numeric_limits<std::uint64_t>::max());
    w.addInt64("t.i64", std::numeric_limits<std::int64_t>::min());
    w.addFloat32("t.f32", 1e-5f);
    w.addFloat64("t.f64", 3.141592653589793);
    w.addBool("t.true", true);
    w.addBool("t.false", false);
    w.addString("t.str", "héllo wörld");
    w.addString("t.empty", "");
    w.addStringArray("t.strs", {"<s>", "", "\xe2\x96\x81the", std::string("nul\0byte", 8)});
    w.addFloat32Array("t.floats", {1.5f, -0.0f, 1e30f});
    w.addInt32Array("t.ints", {-1, 0, 2147483647});
    w.addStringArray("t.nostrs", {});
    const Bytes bytes = w.serialize();

    auto r = GgufFile::fromMemory(asSpan(bytes), "meta.gguf");
    QVERIFY2(r, r ? "" : r.error().message.c_str());
    const GgufFile &f = **r;
    QCOMPARE(f.version(), version);
    QCOMPARE(f.alignment(), 32u);
    QCOMPARE(f.metadata().size(), 15u);
    QCOMPARE(f.tensors().size(), 0u);
    QCOMPARE(qs(f.metadata()[0].key), QString("t.u8"));

    QCOMPARE(f.find("t.u8")->type, GgufValueType::UInt8);
    QCOMPARE(f.getUInt("t.u8").value(), std::optional<std::uint64_t>(200));
    QCOMPARE(f.find("t.i32")->type, GgufValueType::Int32);
    QCOMPARE(f.find("t.i32")->i, -123456);
    QCOMPARE(f.getUInt("t.u32").value(), std::optional<std::uint64_t>(4000000000u));
    QCOMPARE(f.getUInt("t.u64").value(), std::optional<std::uint64_t>(std::numeric_limits<std::uint64_t>::max()));
    QCOMPARE(f.find("t.i64")->i, std::numeric_limits<std::int64_t>::min());
    QCOMPARE(f.getFloat("t.f32").value(), std::optional<double>(static_cast<double>(1e-5f)));
    QCOMPARE(f.getFloat("t.f64").value(), std::optional<double>(3.141592653589793));
    QCOMPARE(f.getBool("t.true").value(), std::optional<bool>(true));
    QCOMPARE(f.getBool("t.false").value(), std::optional<bool>(false));
    QCOMPARE(qs(*f.getString("t.str").value()), QString("héllo wörld"));
    QCOMPARE(f.getString("t.empty").value(), std::optional<std::string_view>(""));

    const GgufKv *strs = f.find("t.strs");
    QVERIFY(strs);
    QCOMPARE(strs->type, GgufValueType::Array);
    QCOMPARE(strs->elementType, GgufValueType::String);
    QCOMPARE(strs->count, 4u);
    QCOMPARE(strs->strings.size(), 4u);
    QCOMPARE(stringsOf(*strs)[0], std::string_view("<s>"));
    QCOMPARE(stringsOf(*strs)[1], std::string_view(""));
    QCOMPARE(stringsOf(*strs)[2], std::string_view("\xe2\x96\x81the"));
    QCOMPARE(stringsOf(*strs)[3], std::string_view("nul\0byte", 8));

    const GgufKv *floats = f.find("t.floats");
    QCOMPARE(floats->elementType, GgufValueType::Float32);
    QCOMPARE(floats->count, 3u);
    float fv[3];
    std::memcpy(fv, floats->raw, sizeof fv);
    QCOMPARE(fv[0], 1.5f);
    QVERIFY(std::signbit(fv[1]) && fv[1] == 0.0f);
    QCOMPARE(fv[2], 1e30f);

    const GgufKv *ints = f.find("t.ints");
    QCOMPARE(ints->elementType, GgufValueType::Int32);
    std::int32_t iv[3];
    std::memcpy(iv, ints->raw, sizeof iv);
    QCOMPARE(iv[0], -1);
    QCOMPARE(iv[1], 0);
    QCOMPARE(iv[2], 2147483647);

    QCOMPARE(f.find("t.nostrs")->count, 0u);
    QVERIFY(f.find("t.nostrs")->strings.empty());
    QVERIFY(!f.find("missing"));
}

// Types GgufWriter has no method for (i8, u16, i16, arrays of every element type), built by hand.
void GgufFileTest::everyValueTypeRaw()
{
    Raw raw;
    raw.header(0, 16, 2);
    raw.key("u8", GgufValueType::UInt8).u8(255);
    raw.key("i8", GgufValueType::Int8).u8(0x80);
    raw.key("u16", GgufValueType::UInt16).u16(65535);
    raw.key("i16", GgufValueType::Int16).u16(0x8000);
    raw.key("u32", GgufValueType::UInt32).u32(7);
    raw.key("i32", GgufValueType::Int32).u32(static_cast<std::uint32_t>(-7));
    raw.key("f32", GgufValueType::Float32).f32(-2.5f);
    raw.key("bool", GgufValueType::Bool).u8(1);
    raw.key("string", GgufValueType::String).str("x");
    raw.key("u64", GgufValueType::UInt64).u64(1ull << 63);
    raw.key("i64", GgufValueType::Int64).u64(static_cast<std::uint64_t>(-9));
    raw.key("f64", GgufValueType::Float64).f64(1e300);
    raw.key("a.u16", GgufValueType::Array).u32(static_cast<std::uint32_t>(GgufValueType::UInt16)).u64(2).u16(1).u16(2);
    raw.key("a.bool", GgufValueType::Array)
        .u32(static_cast<std::uint32_t>(GgufValueType::Bool))
        .u64(3)
        .u8(1)
        .u8(0)
        .u8(1);
    raw.key("a.f64", GgufValueType::Array).u32(static_cast<std::uint32_t>(GgufValueType::Float64)).u64(1).f64(0.25);
    raw.key("a.i8", GgufValueType::Array).u32(static_cast<std::uint32_t>(GgufValueType::Int8)).u64(0);

    auto r = GgufFile::fromMemory(asSpan(raw.bytes()), "raw.gguf");
    QVERIFY2(r, r ? "" : r.error().message.c_str());
    const GgufFile &f = **r;
    QCOMPARE(f.version(), 2u);
    QCOMPARE(f.find("u8")->u, 255u);
    QCOMPARE(f.find("i8")->i, -128);
    QCOMPARE(f.find("u16")->u, 65535u);
    QCOMPARE(f.find("i16")->i, -32768);
    QCOMPARE(f.find("i16")->f, -32768.0);
    QCOMPARE(f.find("u32")->i, 7);
    QCOMPARE(f.find("i32")->i, -7);
    QCOMPARE(f.find("f32")->f, -2.5);
    QCOMPARE(f.find("bool")->u, 1u);
    QCOMPARE(f.find("string")->str, std::string_view("x"));
    QCOMPARE(f.find("u64")->u, 1ull << 63);
    QCOMPARE(f.find("i64")->i, -9);
    QCOMPARE(f.find("f64")->f, 1e300);
    QCOMPARE(f.getUInt("u16").value(), std::optional<std::uint64_t>(65535));
    QCOMPARE(f.getUInt("u64").value(), std::optional<std::uint64_t>(1ull << 63));

    const GgufKv *a16 = f.find("a.u16");
    QCOMPARE(a16->elementType, GgufValueType::UInt16);
    QCOMPARE(a16->count, 2u);
    QCOMPARE(std::to_integer<int>(a16->raw[2]), 2);
    const GgufKv *ab = f.find("a.bool");
    QCOMPARE(ab->count, 3u);
    QCOMPARE(std::to_integer<int>(ab->raw[1]), 0);
    double d = 0;
    std::memcpy(&d, f.find("a.f64")->raw, sizeof d);
    QCOMPARE(d, 0.25);
    QCOMPARE(f.find("a.i8")->count, 0u);

    for (std::uint32_t t = 0; t <= 12; ++t) {
        const auto type = static_cast<GgufValueType>(t);
        QVERIFY(ggufValueTypeName(type) != "unknown");
        const bool scalar = type != GgufValueType::String && type != GgufValueType::Array;
        QCOMPARE(ggufScalarSize(type) != 0, scalar);
    }
    QCOMPARE(ggufScalarSize(GgufValueType::UInt16), 2u);
    QCOMPARE(ggufScalarSize(GgufValueType::Float64), 8u);
    QCOMPARE(ggufValueTypeName(static_cast<GgufValueType>(13)), std::string_view("unknown"));
}

void GgufFileTest::nestedArrays()
{
    const auto arrayOf = [](GgufValueType t) { return static_cast<std::uint32_t>(t); };
    Raw raw;
    raw.header(0, 2);
    // [[ "a", "bc" ], [ 1u8, 2u8, 3u8 ], []]
    raw.key("nested", GgufValueType::Array).u32(arrayOf(GgufValueType::Array)).u64(3);
    raw.u32(arrayOf(GgufValueType::String)).u64(2).str("a").str("bc");
    raw.u32(arrayOf(GgufValueType::UInt8)).u64(3).u8(1).u8(2).u8(3);
    raw.u32(arrayOf(GgufValueType::Array)).u64(0);
    raw.key("after", GgufValueType::UInt32).u32(42);
    auto r = GgufFile::fromMemory(asSpan(raw.bytes()), "nested.gguf");
    QVERIFY2(r, r ? "" : r.error().message.c_str());
    const GgufKv *n = (*r)->find("nested");
    QCOMPARE(n->elementType, GgufValueType::Array);
    QCOMPARE(n->count, 3u);
    QCOMPARE((*r)->getUInt("after").value(), std::optional<std::uint64_t>(42));

    // Deeper than the limit: 64 levels of one-element arrays.
    Raw deep;
    deep.header(0, 1);
    deep.key("deep", GgufValueType::Array);
    for (int k = 0; k < 64; ++k)
        deep.u32(arrayOf(GgufValueType::Array)).u64(1);
    deep.u32(arrayOf(GgufValueType::UInt8)).u64(0);
    const auto err = memoryError(deep.bytes(), "deep.gguf");
    QVERIFY(err);
    QVERIFY2(err->contains("deep.gguf") && err->contains("deeper"), qPrintable(*err));
}

void GgufFileTest::typedGetters()
{
    GgufWriter w;
    w.addString("s", "text");
    w.addInt32("neg", -1);
    w.addInt32("pos", 12);
    w.addInt64("pos64", 1ll << 40);
    w.addUInt32("u", 5);
    w.addFloat32("f", 0.5f);
    w.addBool("b", true);
    w.addInt32Array("arr", {1, 2});
    const Bytes bytes = w.serialize();
    auto r = GgufFile::fromMemory(asSpan(bytes), "getters.gguf");
    QVERIFY(r);
    const GgufFile &f = **r;

    // Missing keys are nullopt for every getter.
    QVERIFY(f.getString("nope").value() == std::nullopt);
    QVERIFY(f.getUInt("nope").value() == std::nullopt);
    QVERIFY(f.getFloat("nope").value() == std::nullopt);
    QVERIFY(f.getBool("nope").value() == std::nullopt);

    // getUInt accepts non-negative signed integers.
    QCOMPARE(f.getUInt("pos").value(), std::optional<std::uint64_t>(12));
    QCOMPARE(f.getUInt("pos64").value(), std::optional<std::uint64_t>(1ull << 40));

    const auto check = [](const auto &result, const char *key, const char *typeName) {
        if (result)
            return QString("getter succeeded on ") + key;
        const QString msg = QString::fromStdString(result.error().message);
        if (!msg.contains("getters.gguf") || !msg.contains(QString("'") + key + "'") || !msg.contains(typeName))
            return "bad message: " + msg;
        return QString();
    };
    QString e;
    QVERIFY2((e = check(f.getUInt("neg"), "neg", "-1")).isEmpty(), qPrintable(e));
    QVERIFY2((e = check(f.getUInt("s"), "s", "string")).isEmpty(), qPrintable(e));
    QVERIFY2((e = check(f.getUInt("f"), "f", "f32")).isEmpty(), qPrintable(e));
    QVERIFY2((e = check(f.getUInt("b"), "b", "bool")).isEmpty(), qPrintable(e));
    QVERIFY2((e = check(f.getString("u"), "u", "u32")).isEmpty(), qPrintable(e));
    QVERIFY2((e = check(f.getString("arr"), "arr", "array of i32")).isEmpty(), qPrintable(e));
    QVERIFY2((e = check(f.getFloat("u"), "u", "u32")).isEmpty(), qPrintable(e));
    QVERIFY2((e = check(f.getFloat("s"), "s", "string")).isEmpty(), qPrintable(e));
    QVERIFY2((e = check(f.getBool("pos"), "pos", "i32")).isEmpty(), qPrintable(e));
    QVERIFY2((e = check(f.getBool("s"), "s", "string")).isEmpty(), qPrintable(e));
}

void GgufFileTest::customAlignment_data()
{
    QTest::addColumn<quint64>("alignment");
    QTest::addColumn<quint32>("version");
    QTest::newRow("1") << quint64(1) << 3u;
    QTest::newRow("8") << quint64(8) << 3u;
    QTest::newRow("32-default") << quint64(32) << 2u;
    QTest::newRow("64") << quint64(64) << 2u;
    QTest::newRow("4096") << quint64(4096) << 3u;
}

void GgufFileTest::customAlignment()
{
    QFETCH(quint64, alignment);
    QFETCH(quint32, version);
    GgufWriter w(version, alignment);
    w.addString("general.name", "aligned");
    std::vector<float> x(3), y(5);
    for (std::size_t k = 0; k < x.size(); ++k)
        x[k] = 0.5f * static_cast<float>(k);
    for (std::size_t k = 0; k < y.size(); ++k)
        y[k] = 100.0f + static_cast<float>(k);
    w.addTensor("x", {3}, GgmlType::F32, x);
    w.addTensor("y", {5, 1}, GgmlType::F32, y);
    GgufWriter::Layout layout;
    const Bytes bytes = w.serialize(&layout);
    QCOMPARE(layout.dataStart % alignment, 0u);

    auto r = GgufFile::fromMemory(asSpan(bytes), "aligned.gguf");
    QVERIFY2(r, r ? "" : r.error().message.c_str());
    const GgufFile &f = **r;
    QCOMPARE(f.alignment(), alignment);
    QCOMPARE(f.getUInt("general.alignment").value().has_value(), alignment != 32);
    for (const GgufTensorInfo &t : f.tensors())
        QCOMPARE(t.offset % alignment, 0u);
    const GgufTensorInfo *ty = f.tensor("y");
    QVERIFY(ty);
    QCOMPARE(static_cast<std::size_t>(ty->data - asSpan(bytes).data()), layout.tensorDataStarts[1]);
    float got[5];
    std::memcpy(got, ty->data, sizeof got);
    for (int k = 0; k < 5; ++k)
        QCOMPARE(got[k], y[k]);
}

void GgufFileTest::f32TensorRoundTrip()
{
    GgufWriter w;
    struct Spec
    {
        std::string name;
        std::vector<std::int64_t> ne;
    };
    const std::vector<Spec> specs = {
        {"one.d", {7}},
        {"two.d", {4, 3}},
        {"three.d", {2, 3, 4}},
        {"four.d", {1, 2, 1, 5}},
    };
    std::vector<std::vector<float>> values;
    for (std::size_t s = 0; s < specs.size(); ++s) {
        std::int64_t n = 1;
        for (std::int64_t d : specs[s].ne)
            n *= d;
        std::vector<float> v(static_cast<std::size_t>(n));
        for (std::size_t k = 0; k < v.size(); ++k)
            v[k] = std::ldexp(static_cast<float>(k) - 3.25f, static_cast<int>(s)) + 1e-7f * static_cast<float>(k);
        values.push_back(v);
        w.addTensor(specs[s].name, specs[s].ne, GgmlType::F32, v);
    }
    GgufWriter::Layout layout;
    const Bytes bytes = w.serialize(&layout);
    auto r = GgufFile::fromMemory(asSpan(bytes), "tensors.gguf");
    QVERIFY2(r, r ? "" : r.error().message.c_str());
    const GgufFile &f = **r;
    QCOMPARE(f.tensors().size(), specs.size());
    for (std::size_t s = 0; s < specs.size(); ++s) {
        const GgufTensorInfo &t = f.tensors()[s];
        QCOMPARE(qs(t.name), QString::fromStdString(specs[s].name));
        QCOMPARE(f.tensor(specs[s].name), &t);
        QCOMPARE(t.ne, specs[s].ne);
        QCOMPARE(t.type, GgmlType::F32);
        QCOMPARE(t.nElements(), static_cast<std::int64_t>(values[s].size()));
        QCOMPARE(t.nRows(), t.nElements() / specs[s].ne[0]);
        QCOMPARE(t.sizeBytes, values[s].size() * 4);
        QCOMPARE(static_cast<std::size_t>(t.data - asSpan(bytes).data()), layout.tensorDataStarts[s]);
        QVERIFY(std::memcmp(t.data, values[s].data(), t.sizeBytes) == 0);
    }
    QVERIFY(!f.tensor("missing"));
    QVERIFY(!f.tensor(""));
}

// Tensor infos of every type with raw blocks: sizes follow the block traits (independent of the
// quantizers) and the bytes come back unchanged.
void GgufFileTest::everyTensorTypeRaw()
{
    struct Type
    {
        GgmlType type;
        std::int64_t blockElements;
        std::size_t blockBytes;
    };
    const Type types[] = {
        {GgmlType::F32, 1, 4},      {GgmlType::F16, 1, 2},      {GgmlType::BF16, 1, 2},     {GgmlType::Q4_0, 32, 18},
        {GgmlType::Q4_1, 32, 20},   {GgmlType::Q5_0, 32, 22},   {GgmlType::Q5_1, 32, 24},   {GgmlType::Q8_0, 32, 34},
        {GgmlType::Q4_K, 256, 144}, {GgmlType::Q5_K, 256, 176}, {GgmlType::Q6_K, 256, 210},
    };
    GgufWriter w(3, 64);
    std::vector<Bytes> payloads;
    for (const Type &t : types) {
        const std::vector<std::int64_t> ne = {2 * t.blockElements, 3};
        Bytes data(6 * t.blockBytes);
        for (std::size_t k = 0; k < data.size(); ++k)
            data[k] = static_cast<std::uint8_t>(k * 7 + static_cast<std::size_t>(t.type));
        payloads.push_back(data);
        w.addRawTensor("t." + std::string(ggmlTypeName(t.type)), ne, t.type, data);
    }
    const Bytes bytes = w.serialize();
    auto r = GgufFile::fromMemory(asSpan(bytes), "types.gguf");
    QVERIFY2(r, r ? "" : r.error().message.c_str());
    for (std::size_t k = 0; k < std::size(types); ++k) {
        const GgufTensorInfo *t = (*r)->tensor("t." + std::string(ggmlTypeName(types[k].type)));
        QVERIFY(t);
        QCOMPARE(t->type, types[k].type);
        QCOMPARE(t->sizeBytes, payloads[k].size());
        QCOMPARE(t->nRows(), 3);
        QVERIFY(std::memcmp(t->data, payloads[k].data(), t->sizeBytes) == 0);
    }
}

void GgufFileTest::quantizedTensorRoundTrip_data()
{
    QTest::addColumn<GgmlType>("type");
    QTest::addColumn<double>("tolerance"); // of the reference decode, relative to max |x|
    QTest::newRow("F16") << GgmlType::F16 << 1e-3;
    QTest::newRow("BF16") << GgmlType::BF16 << 1e-2;
    QTest::newRow("Q8_0") << GgmlType::Q8_0 << 0.02;
    QTest::newRow("Q4_0") << GgmlType::Q4_0 << 0.2;
    QTest::newRow("Q4_1") << GgmlType::Q4_1 << 0.2;
    QTest::newRow("Q5_0") << GgmlType::Q5_0 << 0.1;
    QTest::newRow("Q5_1") << GgmlType::Q5_1 << 0.1;
    QTest::newRow("Q4_K") << GgmlType::Q4_K << 0.2;
    QTest::newRow("Q5_K") << GgmlType::Q5_K << 0.1;
    QTest::newRow("Q6_K") << GgmlType::Q6_K << 0.05;
}

// addTensor quantizes; the reader must hand back exactly the quantizer's blocks, which decode to
// roughly the values written (the quantizers' accuracy is quantize_test's business).
void GgufFileTest::quantizedTensorRoundTrip()
{
    QFETCH(GgmlType, type);
    QFETCH(double, tolerance);
    const std::vector<std::int64_t> ne = {512, 3};
    std::vector<float> values(512 * 3);
    for (std::size_t k = 0; k < values.size(); ++k)
        values[k] = std::sin(0.37f * static_cast<float>(k)) * (1.0f + static_cast<float>(k % 7));
    const std::vector<std::uint8_t> expected =
        kvchat::testing::quantize(type, values.data(), static_cast<std::int64_t>(values.size()));

    GgufWriter w(3, 32);
    w.addTensor("before", {32}, GgmlType::F32, std::vector<float>(32, 1.0f));
    w.addTensor("q", ne, type, values);
    w.addTensor("after", {32}, GgmlType::F32, std::vector<float>(32, 2.0f));
    const Bytes bytes = w.serialize();
    auto r = GgufFile::fromMemory(asSpan(bytes), "quant.gguf");
    QVERIFY2(r, r ? "" : r.error().message.c_str());
    const GgufTensorInfo *t = (*r)->tensor("q");
    QVERIFY(t);
    QCOMPARE(t->type, type);
    QCOMPARE(t->ne, ne);
    QCOMPARE(t->sizeBytes, expected.size());
    QCOMPARE(std::optional<std::size_t>(t->sizeBytes), ggmlRowBytes(type, 512 * 3));
    QVERIFY(std::memcmp(t->data, expected.data(), expected.size()) == 0);

    const auto decoded = kvchat::testing::referenceDequantize(type, reinterpret_cast<const std::uint8_t *>(t->data),
                                                              static_cast<std::int64_t>(values.size()));
    QCOMPARE(decoded.size(), values.size());
    double maxErr = 0;
    for (std::size_t k = 0; k < values.size(); ++k)
        maxErr = kvchat::testing::worseError(maxErr, std::abs(decoded[k] - values[k]));
    QVERIFY2(maxErr <= tolerance * 7.0, qPrintable(QString("max error %1").arg(maxErr)));
}

void GgufFileTest::manyTensorsLookup()
{
    GgufWriter w(3, 32);
    const int n = 400;
    for (int k = 0; k < n; ++k)
        w.addTensor("blk." + std::to_string(k) + ".w", {8}, GgmlType::F32,
                    std::vector<float>(8, static_cast<float>(k)));
    const Bytes bytes = w.serialize();
    auto r = GgufFile::fromMemory(asSpan(bytes), "many.gguf");
    QVERIFY2(r, r ? "" : r.error().message.c_str());
    for (int k = n - 1; k >= 0; --k) {
        const GgufTensorInfo *t = (*r)->tensor("blk." + std::to_string(k) + ".w");
        QVERIFY(t);
        float v = 0;
        std::memcpy(&v, t->data, sizeof v);
        QCOMPARE(v, static_cast<float>(k));
    }
}

void GgufFileTest::openMatchesFromMemory()
{
    QVERIFY(m_dir.isValid());
    GgufWriter::Layout layout;
    const Bytes bytes = smallFile(&layout);
    const QString path = m_dir.filePath("small.gguf");
    QVERIFY(writeBytes(path, bytes));
    auto r = GgufFile::open(path.toStdString());
    QVERIFY2(r, r ? "" : r.error().message.c_str());
    const GgufFile &f = **r;
    QCOMPARE(QString::fromStdString(f.path()), path);
    QCOMPARE(f.fileBytes(), bytes.size());
    QCOMPARE(f.metadata().size(), 4u);
    QCOMPARE(qs(*f.getString("general.architecture").value()), QString("llama"));
    QCOMPARE(stringsOf(*f.find("tokenizer.ggml.tokens"))[2], std::string_view("bc"));
    const GgufTensorInfo *b = f.tensor("b");
    QVERIFY(b);
    QVERIFY(std::memcmp(b->data, bytes.data() + layout.tensorDataStarts[1], b->sizeBytes) == 0);
}

void GgufFileTest::truncationAtEveryOffset()
{
    GgufWriter::Layout layout;
    const Bytes full = smallFile(&layout);
    QCOMPARE(layout.fileEnd, full.size());
    QVERIFY(memoryError(full, "full.gguf") == std::nullopt);

    const QRegularExpression truncationWords("truncated|left|past the end|too short|empty");
    for (std::size_t len = 0; len < full.size(); ++len) {
        const Bytes prefix(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(len));
        const std::string name = "prefix-" + std::to_string(len) + ".gguf";
        const auto err = memoryError(prefix, name);
        QVERIFY2(err, qPrintable(QString("prefix of %1 bytes parsed").arg(len)));
        QVERIFY2(err->startsWith(QString::fromStdString(name) + ": "), qPrintable(*err));
        QVERIFY2(err->contains(truncationWords), qPrintable(*err));

        // The same through mmap; an empty prefix exercises the zero-byte file path.
        const QString path = m_dir.filePath(QString::fromStdString(name));
        QVERIFY(writeBytes(path, prefix));
        const auto ferr = fileError(path);
        QVERIFY2(ferr, qPrintable(path));
        QVERIFY2(ferr->startsWith(path + ": "), qPrintable(*ferr));
        QFile::remove(path);
    }
}

void GgufFileTest::truncationAtSectionBoundaries()
{
    GgufWriter::Layout layout;
    const Bytes full = smallFile(&layout);
    std::vector<std::size_t> cuts = {layout.headerEnd, layout.dataStart};
    cuts.insert(cuts.end(), layout.kvEnds.begin(), layout.kvEnds.end());
    cuts.insert(cuts.end(), layout.tensorInfoEnds.begin(), layout.tensorInfoEnds.end());
    cuts.insert(cuts.end(), layout.tensorDataStarts.begin(), layout.tensorDataStarts.end());
    QCOMPARE(layout.kvEnds.size(), 4u);
    QCOMPARE(layout.tensorInfoEnds.size(), 2u);
    for (std::size_t cut : cuts) {
        for (std::size_t len : {cut - 1, cut, cut + 1}) {
            const Bytes prefix(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(len));
            const auto err = memoryError(prefix, "cut.gguf");
            QVERIFY2(err, qPrintable(QString("cut at %1 parsed").arg(len)));
            QVERIFY2(err->startsWith("cut.gguf: "), qPrintable(*err));
        }
    }
    // Cut right after the tensor infos: the data of the first tensor is what is missing, and the
    // message gives its extent.
    const Bytes noData(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(layout.dataStart));
    const auto err = memoryError(noData, "nodata.gguf");
    QVERIFY(err);
    QVERIFY2(err->contains("tensor 'a' data [offset 0, 32 bytes]") && err->contains("past the end of the file"),
             qPrintable(*err));
}

void GgufFileTest::malformed_data()
{
    QTest::addColumn<QByteArray>("bytes");
    QTest::addColumn<QString>("expected");
    const auto row = [](const char *name, const Bytes &b, const QString &expected) {
        QTest::newRow(name) << QByteArray(reinterpret_cast<const char *>(b.data()), static_cast<qsizetype>(b.size()))
                            << expected;
    };
    constexpr std::uint64_t k2p63 = 1ull << 63;
    const auto f32 = static_cast<std::uint32_t>(GgmlType::F32);

    GgufWriter::Layout layout;
    const Bytes base = smallFile(&layout);

    Bytes b = base;
    b[0] = 'X';
    row("bad magic", b, "not a GGUF file");
    row("too short", Bytes{'G', 'G'}, "too short");

    for (std::uint32_t v : {0u, 1u, 4u, 99u, 0x03000000u}) {
        b = base;
        patchU32(b, 4, v);
        row(qPrintable(QString("version %1").arg(v)), b,
            v == 1             ? QString("version 1 is not supported")
            : v == 0x03000000u ? QString("big-endian")
                               : QString("unsupported GGUF version %1").arg(v));
    }

    for (std::uint64_t n : std::initializer_list<std::uint64_t>{k2p63, 1ull << 60, ~0ull, 1000}) {
        b = base;
        patchU64(b, 16, n);
        row(qPrintable(QString("kv_count %1").arg(n)), b, QString("header claims %1 metadata entries").arg(n));
        b = base;
        patchU64(b, 8, n);
        row(qPrintable(QString("tensor_count %1").arg(n)), b, QString("header claims %1 tensors but only").arg(n));
    }

    // First key's length, then the string array's element count and one element's length.
    b = base;
    patchU64(b, layout.headerEnd, k2p63);
    row("key length 2^63", b, "has length 9223372036854775808");
    // kv 2 is tokenizer.ggml.tokens: key, u32 type, u32 element type, u64 count, strings.
    const std::size_t tokens = layout.kvEnds[1];
    const std::size_t countAt = tokens + 8 + std::strlen("tokenizer.ggml.tokens") + 4 + 4;
    b = base;
    patchU64(b, countAt, k2p63);
    row("array count 2^63", b, "claims 9223372036854775808 string elements");
    b = base;
    patchU64(b, countAt, 1ull << 40);
    row("array count 2^40", b, "claims 1099511627776 string elements");
    b = base;
    patchU64(b, countAt + 8, k2p63);
    row("array string length 2^63", b, "string 0 of metadata 'tokenizer.ggml.tokens'");
    b = base;
    patchU32(b, countAt - 8, 13);
    row("value type 13", b, "metadata 'tokenizer.ggml.tokens' has unknown value type 13");
    b = base;
    patchU32(b, countAt - 4, 0xffffffffu);
    row("array element type", b, "array of unknown value type 4294967295");
    // Float array count: 3 floats claimed as 2^62.
    const std::size_t scoresCount = layout.kvEnds[2] + 8 + std::strlen("tokenizer.ggml.scores") + 8;
    b = base;
    patchU64(b, scoresCount, 1ull << 62);
    row("float array count 2^62", b, "f32 elements");

    // Tensor info fields of tensor 'a' (the first): name, n_dims, ne[0], type, offset.
    const std::size_t typeAt = layout.kvEnds.back() + 8 + 1 + 4 + 8;
    b = base;
    patchU32(b, typeAt, 99);
    row("tensor type 99", b, "tensor 'a' has unknown tensor type 99");
    b = base;
    patchU64(b, typeAt + 4, 1ull << 62);
    row("tensor offset past end", b, "tensor 'a' data [offset 4611686018427387904, 32 bytes]");
    b = base;
    patchU64(b, typeAt + 4, ~0ull << 5);
    row("tensor offset near 2^64", b, "extends past the end of the file");
    b = base;
    patchU64(b, typeAt + 4, 4);
    row("misaligned offset", b, "tensor 'a' data offset 4 is not a multiple of the alignment 32");
    b = base;
    patchU64(b, typeAt + 4, 32); // 'a' now sits on top of 'b'
    row("overlapping tensors", b, "overlap");
    b = base;
    patchU64(b, layout.kvEnds.back(), k2p63);
    row("tensor name length 2^63", b, "name of tensor info 0");

    const auto tensorFile = [&](const std::vector<std::uint64_t> &dims, std::uint32_t type, std::uint64_t offset,
                                std::size_t dataBytes) {
        Raw r;
        r.header(1, 0).tensorInfo("w", dims, type, offset).padTo(32).zeros(dataBytes);
        return r.bytes();
    };
    row("n_dims 0", tensorFile({}, f32, 0, 32), "tensor 'w' has 0 dimensions");
    row("n_dims 5", tensorFile({1, 1, 1, 1, 1}, f32, 0, 32), "tensor 'w' has 5 dimensions");
    row("zero dim", tensorFile({4, 0}, f32, 0, 32), "tensor 'w' has dimension 1 of size 0");
    row("dims overflow", tensorFile({1ull << 32, 1ull << 32}, f32, 0, 32), "overflows");
    row("dim above int64", tensorFile({k2p63}, f32, 0, 32), "overflows");
    row("bytes overflow", tensorFile({1ull << 62, 1}, f32, 0, 32), "overflow");
    row("row not a whole block", tensorFile({16}, static_cast<std::uint32_t>(GgmlType::Q4_0), 0, 32),
        "not a multiple of the Q4_0 block size 32");
    row("unknown type 4", tensorFile({32}, 4, 0, 128), "unknown tensor type 4");
    row("data past end", tensorFile({16}, f32, 0, 32), "tensor 'w' data [offset 0, 64 bytes]");

    {
        Raw r;
        r.header(2, 0).tensorInfo("w", {8}, f32, 0).tensorInfo("w", {8}, f32, 32).padTo(32).zeros(64);
        row("duplicate tensor name", r.bytes(), "duplicate tensor name 'w'");
    }
    {
        Raw r;
        r.header(1, 0).tensorInfo("", {8}, f32, 0).padTo(32).zeros(32);
        row("empty tensor name", r.bytes(), "empty name");
    }
    {
        Raw r;
        r.header(1, 0).tensorInfo(std::string(300, 'n'), {8}, f32, 0).padTo(32).zeros(32);
        row("long tensor name", r.bytes(), "300 bytes");
    }
    {
        GgufWriter w;
        w.addUInt32("k", 1);
        w.addString("k", "again");
        row("duplicate key", w.serialize(), "duplicate metadata key 'k'");
    }
    {
        Raw r;
        r.header(0, 1).str("").u32(0).u8(0);
        row("empty key", r.bytes(), "metadata entry 0 has an empty key");
    }
    {
        Raw r;
        r.header(0, 1).key("flag", GgufValueType::Bool).u8(2);
        row("bool value 2", r.bytes(), "metadata 'flag' holds bool value 2");
    }
    {
        GgufWriter w(3, 48);
        w.addTensor("x", {8}, GgmlType::F32, std::vector<float>(8, 1.0f));
        row("alignment 48", w.serialize(), "'general.alignment' is 48, which is not a nonzero power of two");
    }
    {
        GgufWriter w;
        w.addUInt32("general.alignment", 0);
        row("alignment 0", w.serialize(), "'general.alignment' is 0");
    }
    {
        GgufWriter w;
        w.addUInt64("general.alignment", 64);
        row("alignment u64", w.serialize(), "'general.alignment' has type u64, expected u32");
    }
}

void GgufFileTest::malformed()
{
    QFETCH(QByteArray, bytes);
    QFETCH(QString, expected);
    const Bytes b(bytes.begin(), bytes.end());
    const std::string name = "bad-" + std::to_string(std::hash<std::string>{}(QTest::currentDataTag())) + ".gguf";

    const auto err = memoryError(b, name);
    QVERIFY2(err, "malformed file parsed");
    QVERIFY2(err->startsWith(QString::fromStdString(name) + ": "), qPrintable(*err));
    QVERIFY2(err->contains(expected), qPrintable("message '" + *err + "' lacks '" + expected + "'"));

    const QString path = m_dir.filePath(QString::fromStdString(name));
    QVERIFY(writeBytes(path, b));
    const auto ferr = fileError(path);
    QVERIFY2(ferr, "malformed file opened");
    QVERIFY2(ferr->startsWith(path + ": "), qPrintable(*ferr));
    QVERIFY2(ferr->contains(expected), qPrintable(*ferr));
    QFile::remove(path);
}

void GgufFileTest::openErrors()
{
    const QString missing = m_dir.filePath("does-not-exist.gguf");
    auto err = fileError(missing);
    QVERIFY(err);
    QVERIFY2(err->startsWith(missing + ": cannot open"), qPrintable(*err));

    err = fileError(m_dir.path());
    QVERIFY(err);
    QVERIFY2(err->contains(m_dir.path()) && err->contains("not a regular file"), qPrintable(*err));

    const QString empty = m_dir.filePath("empty.gguf");
    QVERIFY(writeBytes(empty, {}));
    err = fileError(empty);
    QVERIFY(err);
    QVERIFY2(err->startsWith(empty + ": ") && err->contains("empty"), qPrintable(*err));
}

void GgufFileTest::realModelStories260K()
{
    const std::string path = kvchat::testing::sharedModel("stories260K.f32.gguf");
    if (!std::filesystem::exists(path))
        QSKIP(qPrintable("missing " + QString::fromStdString(path)));
    auto r = GgufFile::open(path);
    QVERIFY2(r, r ? "" : r.error().message.c_str());
    const GgufFile &f = **r;
    QCOMPARE(f.version(), 3u);
    QCOMPARE(f.alignment(), 32u);
    QCOMPARE(f.fileBytes(), 1185568u);
    QCOMPARE(qs(*f.getString("general.architecture").value()), QString("llama"));
    QCOMPARE(f.getUInt("llama.block_count").value(), std::optional<std::uint64_t>(5));
    QCOMPARE(f.getUInt("llama.embedding_length").value(), std::optional<std::uint64_t>(64));
    QCOMPARE(f.getUInt("tokenizer.ggml.bos_token_id").value(), std::optional<std::uint64_t>(1));
    QCOMPARE(f.getBool("tokenizer.ggml.add_bos_token").value(), std::optional<bool>(true));
    QVERIFY(std::abs(*f.getFloat("llama.attention.layer_norm_rms_epsilon").value() - 1e-5) < 1e-9);

    const GgufKv *tokens = f.find("tokenizer.ggml.tokens");
    QVERIFY(tokens);
    QCOMPARE(tokens->elementType, GgufValueType::String);
    QCOMPARE(tokens->count, 512u);
    QCOMPARE(tokens->strings.size(), 512u);
    QCOMPARE(stringsOf(*tokens)[1], std::string_view("<s>"));
    QCOMPARE(stringsOf(*tokens)[2], std::string_view("</s>"));
    QCOMPARE(stringsOf(*tokens)[3], std::string_view("<0x00>"));

    const GgufTensorInfo *embd = f.tensor("token_embd.weight");
    QVERIFY(embd);
    QCOMPARE(embd->ne, (std::vector<std::int64_t>{64, 512}));
    QCOMPARE(embd->type, GgmlType::F32);
    QCOMPARE(embd->sizeBytes, 64u * 512u * 4u);
    // 9 tensors per block, plus token_embd, output_norm and output.
    QCOMPARE(f.tensors().size(), 5u * 9u + 3u);
    QVERIFY(f.tensor("blk.4.ffn_down.weight"));
    QCOMPARE(f.tensor("blk.0.ffn_gate.weight")->ne, (std::vector<std::int64_t>{64, 172}));
    // output.weight is stored as a copy of the (tied) embedding.
    const GgufTensorInfo *out = f.tensor("output.weight");
    QVERIFY(out);
    QVERIFY(std::memcmp(out->data, embd->data, embd->sizeBytes) == 0);

    // fromMemory over the same bytes sees the same file.
    QFile file(QString::fromStdString(path));
    QVERIFY(file.open(QIODevice::ReadOnly));
    const QByteArray all = file.readAll();
    const Bytes copy(all.begin(), all.end());
    auto m = GgufFile::fromMemory(asSpan(copy), "copy");
    QVERIFY(m);
    QCOMPARE((*m)->tensors().size(), f.tensors().size());
    QCOMPARE((*m)->tensor("output.weight")->offset, out->offset);
}

QTEST_GUILESS_MAIN(GgufFileTest)
#include "gguf_file_test.moc"
