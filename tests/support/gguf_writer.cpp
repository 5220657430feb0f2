// SPDX-License-Identifier: MIT
// GGUF writer for tests. The file is laid out the way llama.cpp's gguf writer does it: header,
// metadata, tensor infos, zero padding to the alignment, then each tensor's data padded to the
// alignment (the last one too).
//
// When the alignment is not the default 32 and no "general.alignment" entry was added by hand, the
// writer appends one (u32) as the last metadata entry so readers find the alignment it used. A test
// that wants a file whose key disagrees with its padding adds the key itself.
#include "tests/support/gguf_writer.h"

#include "tests/support/quantize.h"

#include <cstring>
#include <fstream>
#include <stdexcept>

namespace kvchat::testing {

namespace {

constexpr std::uint64_t kDefaultAlignment = 32;

// Value type tags, as in engine::GgufValueType.
enum : std::uint32_t {
    kUInt8 = 0,
    kInt32 = 5,
    kUInt32 = 4,
    kFloat32 = 6,
    kBool = 7,
    kString = 8,
    kArray = 9,
    kUInt64 = 10,
    kInt64 = 11,
    kFloat64 = 12,
};

void putU8(std::vector<std::uint8_t> &out, std::uint8_t v)
{
    out.push_back(v);
}

void putU32(std::vector<std::uint8_t> &out, std::uint32_t v)
{
    for (int k = 0; k < 4; ++k)
        out.push_back(static_cast<std::uint8_t>(v >> (8 * k)));
}

void putU64(std::vector<std::uint8_t> &out, std::uint64_t v)
{
    for (int k = 0; k < 8; ++k)
        out.push_back(static_cast<std::uint8_t>(v >> (8 * k)));
}

void putF32(std::vector<std::uint8_t> &out, float v)
{
    std::uint32_t bits = 0;
    std::memcpy(&bits, &v, sizeof bits);
    putU32(out, bits);
}

void putString(std::vector<std::uint8_t> &out, std::string_view s)
{
    putU64(out, s.size());
    out.insert(out.end(), s.begin(), s.end());
}

void padTo(std::vector<std::uint8_t> &out, std::uint64_t alignment)
{
    while (out.size() % alignment != 0)
        out.push_back(0);
}

std::vector<std::uint8_t> tagged(std::uint32_t type)
{
    std::vector<std::uint8_t> v;
    putU32(v, type);
    return v;
}

std::int64_t product(const std::vector<std::int64_t> &ne)
{
    std::int64_t n = 1;
    for (std::int64_t d : ne)
        n *= d;
    return n;
}

} // namespace

GgufWriter::GgufWriter(std::uint32_t version, std::uint64_t alignment) : m_version(version), m_alignment(alignment) {}

void GgufWriter::addUInt8(std::string key, std::uint8_t v)
{
    auto e = tagged(kUInt8);
    putU8(e, v);
    m_kvs.push_back({std::move(key), std::move(e)});
}

void GgufWriter::addInt32(std::string key, std::int32_t v)
{
    auto e = tagged(kInt32);
    putU32(e, static_cast<std::uint32_t>(v));
    m_kvs.push_back({std::move(key), std::move(e)});
}

void GgufWriter::addUInt32(std::string key, std::uint32_t v)
{
    auto e = tagged(kUInt32);
    putU32(e, v);
    m_kvs.push_back({std::move(key), std::move(e)});
}

void GgufWriter::addUInt64(std::string key, std::uint64_t v)
{
    auto e = tagged(kUInt64);
    putU64(e, v);
    m_kvs.push_back({std::move(key), std::move(e)});
}

void GgufWriter::addInt64(std::string key, std::int64_t v)
{
    auto e = tagged(kInt64);
    putU64(e, static_cast<std::uint64_t>(v));
    m_kvs.push_back({std::move(key), std::move(e)});
}

void GgufWriter::addFloat32(std::string key, float v)
{
    auto e = tagged(kFloat32);
    putF32(e, v);
    m_kvs.push_back({std::move(key), std::move(e)});
}

void GgufWriter::addFloat64(std::string key, double v)
{
    auto e = tagged(kFloat64);
    std::uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof bits);
    putU64(e, bits);
    m_kvs.push_back({std::move(key), std::move(e)});
}

void GgufWriter::addBool(std::string key, bool v)
{
    auto e = tagged(kBool);
    putU8(e, v ? 1 : 0);
    m_kvs.push_back({std::move(key), std::move(e)});
}

void GgufWriter::addString(std::string key, std::string v)
{
    auto e = tagged(kString);
    putString(e, v);
    m_kvs.push_back({std::move(key), std::move(e)});
}

void GgufWriter::addStringArray(std::string key, const std::vector<std::string> &v)
{
    auto e = tagged(kArray);
    putU32(e, kString);
    putU64(e, v.size());
    for (const std::string &s : v)
        putString(e, s);
    m_kvs.push_back({std::move(key), std::move(e)});
}

void GgufWriter::addFloat32Array(std::string key, const std::vector<float> &v)
{
    auto e = tagged(kArray);
    putU32(e, kFloat32);
    putU64(e, v.size());
    for (float f : v)
        putF32(e, f);
    m_kvs.push_back({std::move(key), std::move(e)});
}

void GgufWriter::addInt32Array(std::string key, const std::vector<std::int32_t> &v)
{
    auto e = tagged(kArray);
    putU32(e, kInt32);
    putU64(e, v.size());
    for (std::int32_t x : v)
        putU32(e, static_cast<std::uint32_t>(x));
    m_kvs.push_back({std::move(key), std::move(e)});
}

void GgufWriter::addTensor(std::string name, std::vector<std::int64_t> ne, GgmlType type,
                           const std::vector<float> &values)
{
    const std::int64_t n = product(ne);
    if (ne.empty() || static_cast<std::int64_t>(values.size()) != n)
        throw std::invalid_argument("GgufWriter::addTensor: " + name + " has " + std::to_string(values.size()) +
                                    " values for " + std::to_string(n) + " elements");
    std::vector<std::uint8_t> bytes;
    if (type == GgmlType::F32) {
        // Plain copy, so F32 models need no quantizer.
        bytes.reserve(values.size() * 4);
        for (float f : values)
            putF32(bytes, f);
    } else {
        bytes = quantize(type, values.data(), n);
    }
    addRawTensor(std::move(name), std::move(ne), type, std::move(bytes));
}

void GgufWriter::addRawTensor(std::string name, std::vector<std::int64_t> ne, GgmlType type,
                              std::vector<std::uint8_t> bytes)
{
    m_tensors.push_back({std::move(name), std::move(ne), type, std::move(bytes)});
}

std::vector<std::uint8_t> GgufWriter::serialize(Layout *layout) const
{
    // Zero would make the padding loops divide by zero; such files are made by adding the key.
    const std::uint64_t alignment = m_alignment == 0 ? 1 : m_alignment;
    bool hasAlignmentKey = false;
    for (const Kv &kv : m_kvs)
        hasAlignmentKey = hasAlignmentKey || kv.key == "general.alignment";
    const bool addAlignmentKey = !hasAlignmentKey && m_alignment != kDefaultAlignment;

    Layout l;
    std::vector<std::uint8_t> out = {'G', 'G', 'U', 'F'};
    putU32(out, m_version);
    putU64(out, m_tensors.size());
    putU64(out, m_kvs.size() + (addAlignmentKey ? 1 : 0));
    l.headerEnd = out.size();

    for (const Kv &kv : m_kvs) {
        putString(out, kv.key);
        out.insert(out.end(), kv.encodedValue.begin(), kv.encodedValue.end());
        l.kvEnds.push_back(out.size());
    }
    if (addAlignmentKey) {
        putString(out, "general.alignment");
        putU32(out, kUInt32);
        putU32(out, static_cast<std::uint32_t>(m_alignment));
        l.kvEnds.push_back(out.size());
    }

    std::uint64_t offset = 0;
    std::vector<std::uint64_t> offsets;
    for (const Tensor &t : m_tensors) {
        offsets.push_back(offset);
        offset += (t.bytes.size() + alignment - 1) / alignment * alignment;
    }
    for (std::size_t k = 0; k < m_tensors.size(); ++k) {
        const Tensor &t = m_tensors[k];
        putString(out, t.name);
        putU32(out, static_cast<std::uint32_t>(t.ne.size()));
        for (std::int64_t d : t.ne)
            putU64(out, static_cast<std::uint64_t>(d));
        putU32(out, static_cast<std::uint32_t>(t.type));
        putU64(out, offsets[k]);
        l.tensorInfoEnds.push_back(out.size());
    }

    padTo(out, alignment);
    l.dataStart = out.size();
    for (std::size_t k = 0; k < m_tensors.size(); ++k) {
        l.tensorDataStarts.push_back(out.size());
        out.insert(out.end(), m_tensors[k].bytes.begin(), m_tensors[k].bytes.end());
        padTo(out, alignment);
    }
    l.fileEnd = out.size();
    if (layout)
        *layout = std::move(l);
    return out;
}

bool GgufWriter::writeFile(const std::string &path, Layout *layout) const
{
    const std::vector<std::uint8_t> bytes = serialize(layout);
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    if (!f)
        return false;
    f.write(reinterpret_cast<const char *>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    f.close();
    return !f.fail();
}

} // namespace kvchat::testing
