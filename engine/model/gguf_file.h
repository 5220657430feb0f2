// SPDX-License-Identifier: MIT
// GGUF (v2, v3) reader. The file is memory-mapped; every count, length, offset and tensor extent is
// checked against the file's size before it is used, so a truncated, corrupt or hostile file yields
// one Error naming the file and the problem, never a crash or an allocation larger than the file.
//
// Ownership: GgufFile owns the mapping. Every string_view and data pointer handed out points into
// it and lives as long as the GgufFile. All methods are const and safe to call from any thread.
#pragma once

#include "engine/core/result.h"
#include "engine/model/ggml_type.h"

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace kvchat::engine {

// GGUF metadata value types; values fixed by the format.
enum class GgufValueType : std::uint32_t {
    UInt8 = 0,
    Int8 = 1,
    UInt16 = 2,
    Int16 = 3,
    UInt32 = 4,
    Int32 = 5,
    Float32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    UInt64 = 10,
    Int64 = 11,
    Float64 = 12,
};

// The elements of a string array, read in order straight from the mapping, where the parser has
// already checked every length. It keeps no per-string index: a 150k-entry vocabulary plus its
// merges would otherwise hold megabytes of views for the model's whole lifetime, which matters
// next to a 100 MB model (see the RSS budget in the README).
class GgufStringArray
{
public:
    class Iterator
    {
    public:
        using iterator_category = std::forward_iterator_tag;
        using value_type = std::string_view;
        using difference_type = std::ptrdiff_t;
        using pointer = void;
        using reference = std::string_view;
        Iterator() = default;
        explicit Iterator(const std::byte *at) : m_at(at) {}
        std::string_view operator*() const;
        Iterator &operator++();
        Iterator operator++(int)
        {
            Iterator before = *this;
            ++*this;
            return before;
        }
        bool operator==(const Iterator &other) const { return m_at == other.m_at; }

    private:
        const std::byte *m_at = nullptr; // the length prefix of the current string
    };

    GgufStringArray() = default;
    // first: the first string's length prefix; end: just past the last string; count strings.
    GgufStringArray(const std::byte *first, const std::byte *end, std::uint64_t count)
        : m_first(first), m_end(end), m_count(count)
    {
    }
    Iterator begin() const { return Iterator(m_first); }
    Iterator end() const { return Iterator(m_end); }
    std::uint64_t size() const { return m_count; }
    bool empty() const { return m_count == 0; }

private:
    const std::byte *m_first = nullptr;
    const std::byte *m_end = nullptr;
    std::uint64_t m_count = 0;
};

// One metadata entry. Scalars are held widened; arrays keep a view of their raw little-endian
// elements (numeric) or of their strings.
struct GgufKv
{
    std::string_view key;
    GgufValueType type = GgufValueType::UInt8;
    // Scalars (type != Array, != String):
    std::uint64_t u = 0; // unsigned integers and bool
    std::int64_t i = 0;  // signed integers (also set for unsigned ones that fit)
    double f = 0.0;      // floats (also set for integers)
    // String:
    std::string_view str;
    // Array (type == Array):
    GgufValueType elementType = GgufValueType::UInt8;
    std::uint64_t count = 0;
    const std::byte *raw = nullptr;        // numeric elements, packed, count * elementSize bytes
    GgufStringArray strings;               // when elementType == String
};

struct GgufTensorInfo
{
    std::string_view name;
    std::vector<std::int64_t> ne; // ggml order: ne[0] is the contiguous (row) dimension
    GgmlType type = GgmlType::F32;
    std::uint64_t offset = 0; // relative to the data section
    std::size_t sizeBytes = 0;
    const std::byte *data = nullptr; // inside the mapping

    std::int64_t nElements() const;
    std::int64_t nRows() const { return ne.empty() ? 0 : nElements() / ne[0]; }
};

class GgufFile
{
public:
    // Maps and validates the file at path.
    static Result<std::unique_ptr<GgufFile>> open(const std::string &path);
    // Validates a buffer (the caller keeps it alive); used by the fuzzer and tests. displayName
    // appears in error messages.
    static Result<std::unique_ptr<GgufFile>> fromMemory(std::span<const std::byte> bytes, std::string displayName);

    ~GgufFile();
    GgufFile(const GgufFile &) = delete;
    GgufFile &operator=(const GgufFile &) = delete;

    const std::string &path() const { return m_path; }
    std::uint32_t version() const { return m_version; }
    std::uint64_t alignment() const { return m_alignment; }
    std::size_t fileBytes() const { return m_bytes.size(); }

    std::span<const GgufKv> metadata() const { return m_kvs; }
    const GgufKv *find(std::string_view key) const;
    std::span<const GgufTensorInfo> tensors() const { return m_tensors; }
    const GgufTensorInfo *tensor(std::string_view name) const;

    // Typed getters: nullopt when the key is missing; an Error when it exists with another type.
    Result<std::optional<std::string_view>> getString(std::string_view key) const;
    Result<std::optional<std::uint64_t>> getUInt(std::string_view key) const;
    Result<std::optional<double>> getFloat(std::string_view key) const;
    Result<std::optional<bool>> getBool(std::string_view key) const;

private:
    GgufFile() = default;
    Result<void> parse();

    std::string m_path;
    std::span<const std::byte> m_bytes;
    void *m_mapping = nullptr; // from mmap, or null for fromMemory
    std::size_t m_mappingBytes = 0;
    std::uint32_t m_version = 0;
    std::uint64_t m_alignment = 32;
    std::vector<GgufKv> m_kvs;
    std::vector<GgufTensorInfo> m_tensors;
    // Name -> index into m_kvs / m_tensors; the views point into the mapping, like the entries'.
    std::unordered_map<std::string_view, std::size_t> m_kvIndex;
    std::unordered_map<std::string_view, std::size_t> m_tensorIndex;
};

// Size in bytes of a scalar GGUF value type, or 0 for String/Array/unknown.
std::size_t ggufScalarSize(GgufValueType type);
std::string_view ggufValueTypeName(GgufValueType type);

} // namespace kvchat::engine
