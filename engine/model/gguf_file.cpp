// SPDX-License-Identifier: MIT
// GGUF reader. Layout (v2 and v3 are identical; v1 used 32-bit counts and lengths):
//
//   "GGUF" | u32 version | u64 tensor_count | u64 kv_count
//   kv_count x     { string key | u32 value_type | value }
//   tensor_count x { string name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset }
//   padding to general.alignment (default 32) | data section
//
// string = u64 length + bytes (no terminator); array value = u32 element_type | u64 count | elements.
// All integers are little-endian.
//
// Every read goes through Cursor, which checks the bytes left before touching them, and every count
// is bounded by the bytes left divided by the smallest encoding of one element before anything is
// reserved, so a hostile count fails at once instead of allocating or looping.
#include "engine/model/gguf_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <limits>
#include <sys/mman.h>
#include <sys/stat.h>
#include <system_error>
#include <type_traits>

namespace kvchat::engine {

namespace {

constexpr std::uint32_t kDefaultAlignment = 32;
// Arrays of arrays are legal GGUF but no model uses them; the limit keeps skipping them from
// recursing without bound on a crafted file.
constexpr int kMaxArrayDepth = 8;
constexpr std::uint32_t kMaxDims = 4;
// ggml caps names at 63 bytes; real files stay far below this, which only stops absurd names.
constexpr std::size_t kMaxTensorNameBytes = 256;

// Smallest encodings, used to bound counts by the bytes that are left.
constexpr std::uint64_t kMinKvBytes = 8 + 4 + 1;                 // empty key is rejected, so this is loose
constexpr std::uint64_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8; // one dimension
constexpr std::uint64_t kMinStringBytes = 8;
constexpr std::uint64_t kMinArrayBytes = 4 + 8;

std::string quoted(std::string_view s)
{
    // Names come from the file: cap them so a 1 MB key cannot make a 1 MB error message.
    constexpr std::size_t kMax = 80;
    std::string out = "'";
    out.append(s.substr(0, kMax));
    if (s.size() > kMax)
        out += "...";
    out += "'";
    return out;
}

bool isKnownValueType(std::uint32_t t)
{
    return t <= static_cast<std::uint32_t>(GgufValueType::Float64);
}

std::string typeDescription(const GgufKv &kv)
{
    if (kv.type != GgufValueType::Array)
        return std::string(ggufValueTypeName(kv.type));
    return "array of " + std::string(ggufValueTypeName(kv.elementType));
}

// Bounds-checked little-endian reads over the file. A failed read consumes nothing.
class Cursor
{
public:
    explicit Cursor(std::span<const std::byte> bytes) : m_bytes(bytes) {}

    std::size_t pos() const { return m_pos; }
    std::size_t left() const { return m_bytes.size() - m_pos; }
    const std::byte *here() const { return m_bytes.data() + m_pos; }

    bool has(std::uint64_t n) const { return n <= left(); }

    template <typename T> bool read(T &out)
    {
        static_assert(std::is_unsigned_v<T>);
        if (!has(sizeof(T)))
            return false;
        T v = 0;
        for (std::size_t k = 0; k < sizeof(T); ++k)
            v |= static_cast<T>(static_cast<T>(std::to_integer<std::uint8_t>(m_bytes[m_pos + k])) << (8 * k));
        m_pos += sizeof(T);
        out = v;
        return true;
    }

    bool skip(std::uint64_t n)
    {
        if (!has(n))
            return false;
        m_pos += static_cast<std::size_t>(n);
        return true;
    }

private:
    std::span<const std::byte> m_bytes;
    std::size_t m_pos = 0;
};

struct Parsed
{
    std::uint32_t version = 0;
    std::uint64_t alignment = kDefaultAlignment;
    std::vector<GgufKv> kvs;
    std::vector<GgufTensorInfo> tensors;
    std::unordered_map<std::string_view, std::size_t> kvIndex;
    std::unordered_map<std::string_view, std::size_t> tensorIndex;
};

class Parser
{
public:
    Parser(std::span<const std::byte> bytes, const std::string &name) : m_bytes(bytes), m_cur(bytes), m_name(name) {}

    Result<void> run(Parsed &out);

private:
    Error fail(const std::string &what) const { return makeError(m_name + ": " + what); }
    Error truncated(const std::string &what, std::uint64_t need) const
    {
        return fail("truncated file: " + what + " at offset " + std::to_string(m_cur.pos()) + " needs " +
                    std::to_string(need) + " bytes but only " + std::to_string(m_cur.left()) + " are left");
    }

    template <typename T> Result<void> readInt(T &out, const std::string &what)
    {
        if (!m_cur.read(out))
            return truncated(what, sizeof(T));
        return {};
    }
    // describe() names the string for an error message; it only runs on failure, which keeps the
    // loops over large string arrays (150k-token vocabularies) free of allocations.
    template <typename Describe> Result<void> readString(std::string_view &out, const Describe &describe);
    Result<void> readString(std::string_view &out, const std::string &what)
    {
        return readString(out, [&] { return what; });
    }
    Result<void> readValue(GgufKv &kv, const std::string &what);
    Result<void> readArray(GgufKv &kv, const std::string &what);
    Result<void> skipNestedArray(int depth, const std::string &what);
    Result<void> checkBools(const std::byte *p, std::uint64_t n, const std::string &what) const;
    Result<void> readTensorInfo(GgufTensorInfo &t, std::uint64_t index, std::uint64_t alignment);

    std::span<const std::byte> m_bytes;
    Cursor m_cur;
    const std::string &m_name;
};

template <typename Describe> Result<void> Parser::readString(std::string_view &out, const Describe &describe)
{
    const std::size_t start = m_cur.pos();
    std::uint64_t len = 0;
    if (!m_cur.read(len))
        return truncated("length of " + describe(), sizeof len);
    if (!m_cur.has(len))
        return fail(describe() + " at offset " + std::to_string(start) + " has length " + std::to_string(len) +
                    " but only " + std::to_string(m_cur.left()) + " bytes are left in the file");
    out = std::string_view(reinterpret_cast<const char *>(m_cur.here()), static_cast<std::size_t>(len));
    m_cur.skip(len);
    return {};
}

Result<void> Parser::checkBools(const std::byte *p, std::uint64_t n, const std::string &what) const
{
    for (std::uint64_t k = 0; k < n; ++k) {
        const auto b = std::to_integer<std::uint8_t>(p[k]);
        if (b > 1)
            return fail(what + " holds bool value " + std::to_string(b) + " (must be 0 or 1)");
    }
    return {};
}

Result<void> Parser::readValue(GgufKv &kv, const std::string &what)
{
    switch (kv.type) {
    case GgufValueType::UInt8:
    case GgufValueType::UInt16:
    case GgufValueType::UInt32:
    case GgufValueType::UInt64: {
        std::uint64_t v = 0;
        Result<void> r;
        if (kv.type == GgufValueType::UInt8) {
            std::uint8_t x = 0;
            r = readInt(x, what);
            v = x;
        } else if (kv.type == GgufValueType::UInt16) {
            std::uint16_t x = 0;
            r = readInt(x, what);
            v = x;
        } else if (kv.type == GgufValueType::UInt32) {
            std::uint32_t x = 0;
            r = readInt(x, what);
            v = x;
        } else {
            r = readInt(v, what);
        }
        if (!r)
            return r;
        kv.u = v;
        if (v <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
            kv.i = static_cast<std::int64_t>(v);
        kv.f = static_cast<double>(v);
        return {};
    }
    case GgufValueType::Int8:
    case GgufValueType::Int16:
    case GgufValueType::Int32:
    case GgufValueType::Int64: {
        std::int64_t v = 0;
        Result<void> r;
        // Two's complement reinterpretation; the casts between same-width types are well defined in C++20.
        if (kv.type == GgufValueType::Int8) {
            std::uint8_t x = 0;
            r = readInt(x, what);
            v = static_cast<std::int8_t>(x);
        } else if (kv.type == GgufValueType::Int16) {
            std::uint16_t x = 0;
            r = readInt(x, what);
            v = static_cast<std::int16_t>(x);
        } else if (kv.type == GgufValueType::Int32) {
            std::uint32_t x = 0;
            r = readInt(x, what);
            v = static_cast<std::int32_t>(x);
        } else {
            std::uint64_t x = 0;
            r = readInt(x, what);
            v = static_cast<std::int64_t>(x);
        }
        if (!r)
            return r;
        kv.i = v;
        kv.f = static_cast<double>(v);
        return {};
    }
    case GgufValueType::Float32: {
        std::uint32_t x = 0;
        if (auto r = readInt(x, what); !r)
            return r;
        kv.f = static_cast<double>(std::bit_cast<float>(x));
        return {};
    }
    case GgufValueType::Float64: {
        std::uint64_t x = 0;
        if (auto r = readInt(x, what); !r)
            return r;
        kv.f = std::bit_cast<double>(x);
        return {};
    }
    case GgufValueType::Bool: {
        std::uint8_t x = 0;
        if (auto r = readInt(x, what); !r)
            return r;
        if (x > 1)
            return fail(what + " holds bool value " + std::to_string(x) + " (must be 0 or 1)");
        kv.u = x;
        kv.i = x;
        kv.f = x;
        return {};
    }
    case GgufValueType::String:
        return readString(kv.str, what);
    case GgufValueType::Array:
        return readArray(kv, what);
    }
    return fail(what + " has unknown value type " + std::to_string(static_cast<std::uint32_t>(kv.type)));
}

Result<void> Parser::readArray(GgufKv &kv, const std::string &what)
{
    std::uint32_t elementType = 0;
    if (auto r = readInt(elementType, "element type of " + what); !r)
        return r;
    if (!isKnownValueType(elementType))
        return fail(what + " is an array of unknown value type " + std::to_string(elementType));
    kv.elementType = static_cast<GgufValueType>(elementType);
    const std::size_t countPos = m_cur.pos();
    if (auto r = readInt(kv.count, "element count of " + what); !r)
        return r;
    const auto tooMany = [&](std::uint64_t minBytes) {
        return fail(what + " at offset " + std::to_string(countPos) + " claims " + std::to_string(kv.count) + " " +
                    std::string(ggufValueTypeName(kv.elementType)) + " elements (at least " + std::to_string(minBytes) +
                    " bytes each) but only " + std::to_string(m_cur.left()) + " bytes are left in the file");
    };

    if (const std::size_t size = ggufScalarSize(kv.elementType); size != 0) {
        if (kv.count > m_cur.left() / size)
            return tooMany(size);
        kv.raw = m_cur.here();
        if (kv.elementType == GgufValueType::Bool) {
            if (auto r = checkBools(kv.raw, kv.count, what); !r)
                return r;
        }
        m_cur.skip(kv.count * size);
        return {};
    }
    if (kv.elementType == GgufValueType::String) {
        if (kv.count > m_cur.left() / kMinStringBytes)
            return tooMany(kMinStringBytes);
        kv.raw = m_cur.here();
        for (std::uint64_t k = 0; k < kv.count; ++k) {
            const auto describe = [&] { return "string " + std::to_string(k) + " of " + what; };
            std::string_view checked;
            if (auto r = readString(checked, describe); !r)
                return r;
        }
        kv.strings = GgufStringArray(kv.raw, m_cur.here(), kv.count);
        return {};
    }
    // Array of arrays: validated and skipped; raw points at the first nested array's header.
    if (kv.count > m_cur.left() / kMinArrayBytes)
        return tooMany(kMinArrayBytes);
    kv.raw = m_cur.here();
    for (std::uint64_t k = 0; k < kv.count; ++k) {
        if (auto r = skipNestedArray(2, "array " + std::to_string(k) + " of " + what); !r)
            return r;
    }
    return {};
}

Result<void> Parser::skipNestedArray(int depth, const std::string &what)
{
    if (depth > kMaxArrayDepth)
        return fail(what + " nests arrays deeper than " + std::to_string(kMaxArrayDepth) + " levels");
    std::uint32_t elementType = 0;
    if (auto r = readInt(elementType, "element type of " + what); !r)
        return r;
    if (!isKnownValueType(elementType))
        return fail(what + " is an array of unknown value type " + std::to_string(elementType));
    const auto type = static_cast<GgufValueType>(elementType);
    const std::size_t countPos = m_cur.pos();
    std::uint64_t count = 0;
    if (auto r = readInt(count, "element count of " + what); !r)
        return r;
    const std::uint64_t minBytes = ggufScalarSize(type) != 0       ? ggufScalarSize(type)
                                   : type == GgufValueType::String ? kMinStringBytes
                                                                   : kMinArrayBytes;
    if (count > m_cur.left() / minBytes)
        return fail(what + " at offset " + std::to_string(countPos) + " claims " + std::to_string(count) +
                    " elements but only " + std::to_string(m_cur.left()) + " bytes are left in the file");
    if (ggufScalarSize(type) != 0) {
        if (type == GgufValueType::Bool) {
            if (auto r = checkBools(m_cur.here(), count, what); !r)
                return r;
        }
        m_cur.skip(count * minBytes);
        return {};
    }
    // Each element below consumes at least 8 bytes, so the loop is bounded by the file size.
    for (std::uint64_t k = 0; k < count; ++k) {
        if (type == GgufValueType::String) {
            std::string_view ignored;
            const auto describe = [&] { return "string " + std::to_string(k) + " of " + what; };
            if (auto r = readString(ignored, describe); !r)
                return r;
        } else if (auto r = skipNestedArray(depth + 1, "array " + std::to_string(k) + " of " + what); !r) {
            return r;
        }
    }
    return {};
}

Result<void> Parser::readTensorInfo(GgufTensorInfo &t, std::uint64_t index, std::uint64_t alignment)
{
    const std::string label = "tensor info " + std::to_string(index);
    if (auto r = readString(t.name, "name of " + label); !r)
        return r;
    if (t.name.empty())
        return fail(label + " has an empty name");
    if (t.name.size() > kMaxTensorNameBytes)
        return fail(label + " has a name of " + std::to_string(t.name.size()) + " bytes (at most " +
                    std::to_string(kMaxTensorNameBytes) + " allowed): " + quoted(t.name));
    const std::string what = "tensor " + quoted(t.name);

    std::uint32_t nDims = 0;
    if (auto r = readInt(nDims, "dimension count of " + what); !r)
        return r;
    if (nDims < 1 || nDims > kMaxDims)
        return fail(what + " has " + std::to_string(nDims) + " dimensions (must be 1 to " + std::to_string(kMaxDims) +
                    ")");
    t.ne.resize(nDims);
    std::int64_t elements = 1;
    for (std::uint32_t d = 0; d < nDims; ++d) {
        std::uint64_t dim = 0;
        if (auto r = readInt(dim, "dimension " + std::to_string(d) + " of " + what); !r)
            return r;
        if (dim == 0)
            return fail(what + " has dimension " + std::to_string(d) + " of size 0");
        constexpr auto kMax = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
        if (dim > kMax || static_cast<std::uint64_t>(elements) > kMax / dim)
            return fail(what + " has dimension " + std::to_string(d) + " of size " + std::to_string(dim) +
                        ", so its element count overflows 64 bits");
        t.ne[d] = static_cast<std::int64_t>(dim);
        elements *= t.ne[d];
    }

    std::uint32_t rawType = 0;
    if (auto r = readInt(rawType, "type of " + what); !r)
        return r;
    const std::optional<GgmlTypeTraits> traits = ggmlTypeTraits(rawType);
    if (!traits)
        return fail(what + " has unknown tensor type " + std::to_string(rawType) +
                    " (supported: " + std::string(supportedGgmlTypeNames()) + ")");
    t.type = traits->type;
    if (traits->blockElements <= 0 || t.ne[0] % traits->blockElements != 0)
        return fail(what + " has rows of " + std::to_string(t.ne[0]) + " elements, not a multiple of the " +
                    std::string(traits->name) + " block size " + std::to_string(traits->blockElements));
    const auto blocks = static_cast<std::uint64_t>(elements / traits->blockElements);
    if (traits->blockBytes != 0 && blocks > std::numeric_limits<std::size_t>::max() / traits->blockBytes)
        return fail(what + " has " + std::to_string(elements) + " elements, whose size in bytes overflows");
    t.sizeBytes = static_cast<std::size_t>(blocks * traits->blockBytes);

    if (auto r = readInt(t.offset, "data offset of " + what); !r)
        return r;
    if (t.offset % alignment != 0)
        return fail(what + " data offset " + std::to_string(t.offset) + " is not a multiple of the alignment " +
                    std::to_string(alignment));
    return {};
}

Result<void> Parser::run(Parsed &out)
{
    if (m_bytes.size() < 4)
        return fail("not a GGUF file: " + std::to_string(m_bytes.size()) + " bytes is too short for the magic");
    std::uint32_t magic = 0;
    (void)m_cur.read(magic);
    if (magic != 0x46554747u) // "GGUF" read little-endian
        return fail("not a GGUF file (the first 4 bytes are not \"GGUF\")");

    if (auto r = readInt(out.version, "version"); !r)
        return r;
    if (out.version == 1)
        return fail("GGUF version 1 is not supported (only versions 2 and 3); re-convert the model with a current "
                    "llama.cpp");
    if (out.version != 2 && out.version != 3) {
        // A big-endian file has its version byte-swapped (e.g. 3 reads as 0x03000000).
        const bool swapped = (out.version & 0xffffu) == 0 && (out.version >> 24) >= 2 && (out.version >> 24) <= 3;
        return fail("unsupported GGUF version " + std::to_string(out.version) +
                    (swapped ? " (looks like a big-endian file, which is not supported)"
                             : " (only versions 2 and 3 are supported)"));
    }

    std::uint64_t tensorCount = 0;
    std::uint64_t kvCount = 0;
    if (auto r = readInt(tensorCount, "tensor count"); !r)
        return r;
    if (auto r = readInt(kvCount, "metadata entry count"); !r)
        return r;
    if (kvCount > m_cur.left() / kMinKvBytes)
        return fail("header claims " + std::to_string(kvCount) + " metadata entries but only " +
                    std::to_string(m_cur.left()) + " bytes are left (each entry needs at least " +
                    std::to_string(kMinKvBytes) + ")");
    if (tensorCount > (m_cur.left() - kvCount * kMinKvBytes) / kMinTensorInfoBytes)
        return fail("header claims " + std::to_string(tensorCount) + " tensors but only " +
                    std::to_string(m_cur.left()) + " bytes are left (each tensor info needs at least " +
                    std::to_string(kMinTensorInfoBytes) + ")");

    // Entries are appended as they parse, so a file that claims many and holds few costs little.
    constexpr std::uint64_t kReserveCap = 4096;
    out.kvs.reserve(static_cast<std::size_t>(std::min(kvCount, kReserveCap)));
    out.kvIndex.reserve(static_cast<std::size_t>(std::min(kvCount, kReserveCap)));
    for (std::uint64_t k = 0; k < kvCount; ++k) {
        GgufKv &kv = out.kvs.emplace_back();
        const std::string label = "metadata entry " + std::to_string(k);
        if (auto r = readString(kv.key, "key of " + label); !r)
            return r;
        if (kv.key.empty())
            return fail(label + " has an empty key");
        const std::string what = "metadata " + quoted(kv.key);
        std::uint32_t type = 0;
        if (auto r = readInt(type, "value type of " + what); !r)
            return r;
        if (!isKnownValueType(type))
            return fail(what + " has unknown value type " + std::to_string(type));
        kv.type = static_cast<GgufValueType>(type);
        if (auto r = readValue(kv, what); !r)
            return r;
        if (!out.kvIndex.emplace(kv.key, static_cast<std::size_t>(k)).second)
            return fail("duplicate metadata key " + quoted(kv.key));
    }

    if (auto it = out.kvIndex.find("general.alignment"); it != out.kvIndex.end()) {
        const GgufKv &kv = out.kvs[it->second];
        if (kv.type != GgufValueType::UInt32)
            return fail("metadata 'general.alignment' has type " + typeDescription(kv) + ", expected u32");
        if (kv.u == 0 || (kv.u & (kv.u - 1)) != 0)
            return fail("metadata 'general.alignment' is " + std::to_string(kv.u) +
                        ", which is not a nonzero power of two");
        out.alignment = kv.u;
    }

    out.tensors.reserve(static_cast<std::size_t>(std::min(tensorCount, kReserveCap)));
    out.tensorIndex.reserve(static_cast<std::size_t>(std::min(tensorCount, kReserveCap)));
    for (std::uint64_t k = 0; k < tensorCount; ++k) {
        GgufTensorInfo &t = out.tensors.emplace_back();
        if (auto r = readTensorInfo(t, k, out.alignment); !r)
            return r;
        if (!out.tensorIndex.emplace(t.name, static_cast<std::size_t>(k)).second)
            return fail("duplicate tensor name " + quoted(t.name));
    }

    // The data section starts at the next multiple of the alignment (alignment <= 2^31 and pos <=
    // the file size, so this cannot overflow).
    const std::uint64_t fileBytes = m_bytes.size();
    const std::uint64_t dataStart = (m_cur.pos() + out.alignment - 1) / out.alignment * out.alignment;
    for (GgufTensorInfo &t : out.tensors) {
        if (dataStart > fileBytes || t.offset > fileBytes - dataStart ||
            t.sizeBytes > fileBytes - dataStart - t.offset) {
            std::string where =
                "data [offset " + std::to_string(t.offset) + ", " + std::to_string(t.sizeBytes) + " bytes]";
            if (t.offset <= std::numeric_limits<std::uint64_t>::max() - dataStart)
                where += " at file offset " + std::to_string(dataStart + t.offset);
            return fail("tensor " + quoted(t.name) + " " + where + " extends past the end of the file (" +
                        std::to_string(fileBytes) + " bytes)");
        }
        t.data = m_bytes.data() + dataStart + t.offset;
    }

    // Overlap check on the extents sorted by offset; all extents are inside the file by now.
    std::vector<const GgufTensorInfo *> byOffset;
    byOffset.reserve(out.tensors.size());
    for (const GgufTensorInfo &t : out.tensors)
        byOffset.push_back(&t);
    std::sort(byOffset.begin(), byOffset.end(),
              [](const GgufTensorInfo *a, const GgufTensorInfo *b) { return a->offset < b->offset; });
    for (std::size_t k = 1; k < byOffset.size(); ++k) {
        const GgufTensorInfo &a = *byOffset[k - 1];
        const GgufTensorInfo &b = *byOffset[k];
        if (a.offset + a.sizeBytes > b.offset)
            return fail("tensors " + quoted(a.name) + " [offset " + std::to_string(a.offset) + ", " +
                        std::to_string(a.sizeBytes) + " bytes] and " + quoted(b.name) + " [offset " +
                        std::to_string(b.offset) + ", " + std::to_string(b.sizeBytes) + " bytes] overlap");
    }
    return {};
}

} // namespace

std::int64_t GgufTensorInfo::nElements() const
{
    if (ne.empty())
        return 0;
    std::int64_t n = 1;
    for (std::int64_t d : ne)
        n *= d;
    return n;
}

Result<std::unique_ptr<GgufFile>> GgufFile::open(const std::string &path)
{
    const auto sysError = [&](const char *op) {
        return makeError(path + ": " + op + ": " + std::error_code(errno, std::generic_category()).message());
    };
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sysError("cannot open");
    struct stat st = {};
    if (::fstat(fd, &st) != 0) {
        Error e = sysError("cannot stat");
        ::close(fd);
        return e;
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        return makeError(path + ": not a regular file");
    }
    if (st.st_size == 0) {
        ::close(fd);
        return makeError(path + ": file is empty (0 bytes), not a GGUF model");
    }
    const auto size = static_cast<std::size_t>(st.st_size);
    void *mapping = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    Error mapError = mapping == MAP_FAILED ? sysError("cannot mmap") : Error{};
    // The mapping keeps the file alive; the descriptor is no longer needed either way.
    ::close(fd);
    if (mapping == MAP_FAILED)
        return mapError;

    std::unique_ptr<GgufFile> file(new GgufFile);
    file->m_path = path;
    file->m_mapping = mapping;
    file->m_mappingBytes = size;
    file->m_bytes = std::span<const std::byte>(static_cast<const std::byte *>(mapping), size);
    if (auto r = file->parse(); !r)
        return r.error();
    return file;
}

Result<std::unique_ptr<GgufFile>> GgufFile::fromMemory(std::span<const std::byte> bytes, std::string displayName)
{
    std::unique_ptr<GgufFile> file(new GgufFile);
    file->m_path = std::move(displayName);
    file->m_bytes = bytes;
    if (auto r = file->parse(); !r)
        return r.error();
    return file;
}

GgufFile::~GgufFile()
{
    if (m_mapping)
        ::munmap(m_mapping, m_mappingBytes);
}

Result<void> GgufFile::parse()
{
    Parsed parsed;
    if (auto r = Parser(m_bytes, m_path).run(parsed); !r)
        return r;
    m_version = parsed.version;
    m_alignment = parsed.alignment;
    m_kvs = std::move(parsed.kvs);
    m_tensors = std::move(parsed.tensors);
    // The maps hold views into the file and indices, both unaffected by moving the vectors.
    m_kvIndex = std::move(parsed.kvIndex);
    m_tensorIndex = std::move(parsed.tensorIndex);
    return {};
}

const GgufKv *GgufFile::find(std::string_view key) const
{
    const auto it = m_kvIndex.find(key);
    return it == m_kvIndex.end() ? nullptr : &m_kvs[it->second];
}

const GgufTensorInfo *GgufFile::tensor(std::string_view name) const
{
    const auto it = m_tensorIndex.find(name);
    return it == m_tensorIndex.end() ? nullptr : &m_tensors[it->second];
}

Result<std::optional<std::string_view>> GgufFile::getString(std::string_view key) const
{
    const GgufKv *kv = find(key);
    if (!kv)
        return std::optional<std::string_view>();
    if (kv->type != GgufValueType::String)
        return makeError(m_path + ": metadata " + quoted(key) + " has type " + typeDescription(*kv) +
                         ", expected string");
    return std::optional<std::string_view>(kv->str);
}

Result<std::optional<std::uint64_t>> GgufFile::getUInt(std::string_view key) const
{
    const GgufKv *kv = find(key);
    if (!kv)
        return std::optional<std::uint64_t>();
    switch (kv->type) {
    case GgufValueType::UInt8:
    case GgufValueType::UInt16:
    case GgufValueType::UInt32:
    case GgufValueType::UInt64:
        return std::optional<std::uint64_t>(kv->u);
    case GgufValueType::Int8:
    case GgufValueType::Int16:
    case GgufValueType::Int32:
    case GgufValueType::Int64:
        // Converters write ids and sizes as i32 as often as u32; only the sign matters here.
        if (kv->i < 0)
            return makeError(m_path + ": metadata " + quoted(key) + " is " + std::to_string(kv->i) +
                             ", expected a non-negative integer");
        return std::optional<std::uint64_t>(static_cast<std::uint64_t>(kv->i));
    default:
        return makeError(m_path + ": metadata " + quoted(key) + " has type " + typeDescription(*kv) +
                         ", expected an unsigned integer");
    }
}

Result<std::optional<double>> GgufFile::getFloat(std::string_view key) const
{
    const GgufKv *kv = find(key);
    if (!kv)
        return std::optional<double>();
    if (kv->type != GgufValueType::Float32 && kv->type != GgufValueType::Float64)
        return makeError(m_path + ": metadata " + quoted(key) + " has type " + typeDescription(*kv) +
                         ", expected f32 or f64");
    return std::optional<double>(kv->f);
}

Result<std::optional<bool>> GgufFile::getBool(std::string_view key) const
{
    const GgufKv *kv = find(key);
    if (!kv)
        return std::optional<bool>();
    if (kv->type != GgufValueType::Bool)
        return makeError(m_path + ": metadata " + quoted(key) + " has type " + typeDescription(*kv) +
                         ", expected bool");
    return std::optional<bool>(kv->u != 0);
}

namespace {
// The length prefix of a string the parser has already checked.
std::uint64_t stringLength(const std::byte *prefix)
{
    std::uint64_t len = 0;
    for (std::size_t k = 0; k < sizeof len; ++k)
        len |= static_cast<std::uint64_t>(std::to_integer<std::uint8_t>(prefix[k])) << (8 * k);
    return len;
}
} // namespace

std::string_view GgufStringArray::Iterator::operator*() const
{
    return {reinterpret_cast<const char *>(m_at + sizeof(std::uint64_t)), static_cast<std::size_t>(stringLength(m_at))};
}

GgufStringArray::Iterator &GgufStringArray::Iterator::operator++()
{
    m_at += sizeof(std::uint64_t) + stringLength(m_at);
    return *this;
}

std::size_t ggufScalarSize(GgufValueType type)
{
    switch (type) {
    case GgufValueType::UInt8:
    case GgufValueType::Int8:
    case GgufValueType::Bool:
        return 1;
    case GgufValueType::UInt16:
    case GgufValueType::Int16:
        return 2;
    case GgufValueType::UInt32:
    case GgufValueType::Int32:
    case GgufValueType::Float32:
        return 4;
    case GgufValueType::UInt64:
    case GgufValueType::Int64:
    case GgufValueType::Float64:
        return 8;
    case GgufValueType::String:
    case GgufValueType::Array:
        return 0;
    }
    return 0;
}

std::string_view ggufValueTypeName(GgufValueType type)
{
    switch (type) {
    case GgufValueType::UInt8:
        return "u8";
    case GgufValueType::Int8:
        return "i8";
    case GgufValueType::UInt16:
        return "u16";
    case GgufValueType::Int16:
        return "i16";
    case GgufValueType::UInt32:
        return "u32";
    case GgufValueType::Int32:
        return "i32";
    case GgufValueType::Float32:
        return "f32";
    case GgufValueType::Bool:
        return "bool";
    case GgufValueType::String:
        return "string";
    case GgufValueType::Array:
        return "array";
    case GgufValueType::UInt64:
        return "u64";
    case GgufValueType::Int64:
        return "i64";
    case GgufValueType::Float64:
        return "f64";
    }
    return "unknown";
}

} // namespace kvchat::engine
