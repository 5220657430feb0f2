// SPDX-License-Identifier: MIT
// Test utility: writes GGUF v2/v3 files (metadata of every value type, tensors of every supported
// type, quantized from fp32 by the quantizers in quantize.h) so tests can build models of any shape
// without shipping weights. Also exposes the byte layout (section offsets) so malformed-file tests
// can truncate or corrupt a file at each section boundary.
#pragma once

#include "engine/model/ggml_type.h"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kvchat::testing {

using engine::GgmlType;

class GgufWriter
{
public:
    explicit GgufWriter(std::uint32_t version = 3, std::uint64_t alignment = 32);

    void addUInt8(std::string key, std::uint8_t v);
    void addInt32(std::string key, std::int32_t v);
    void addUInt32(std::string key, std::uint32_t v);
    void addUInt64(std::string key, std::uint64_t v);
    void addInt64(std::string key, std::int64_t v);
    void addFloat32(std::string key, float v);
    void addFloat64(std::string key, double v);
    void addBool(std::string key, bool v);
    void addString(std::string key, std::string v);
    void addStringArray(std::string key, const std::vector<std::string> &v);
    void addFloat32Array(std::string key, const std::vector<float> &v);
    void addInt32Array(std::string key, const std::vector<std::int32_t> &v);

    // ne in ggml order (ne[0] = row length). values.size() must equal the product of ne; the
    // values are quantized to `type` (ne[0] must be a multiple of the type's block size).
    void addTensor(std::string name, std::vector<std::int64_t> ne, GgmlType type, const std::vector<float> &values);
    // Raw already-encoded bytes (for tests that craft blocks directly).
    void addRawTensor(std::string name, std::vector<std::int64_t> ne, GgmlType type, std::vector<std::uint8_t> bytes);

    // Byte offsets inside the serialized file, valid after serialize().
    struct Layout
    {
        std::size_t headerEnd = 0;          // after magic, version, counts
        std::vector<std::size_t> kvEnds;     // end of each metadata entry
        std::vector<std::size_t> tensorInfoEnds; // end of each tensor info
        std::size_t dataStart = 0;          // aligned start of the data section
        std::vector<std::size_t> tensorDataStarts;
        std::size_t fileEnd = 0;
    };

    std::vector<std::uint8_t> serialize(Layout *layout = nullptr) const;
    // Writes serialize() to path; returns false on I/O failure.
    bool writeFile(const std::string &path, Layout *layout = nullptr) const;

private:
    struct Kv
    {
        std::string key;
        std::vector<std::uint8_t> encodedValue; // type tag + value, as in the file
    };
    struct Tensor
    {
        std::string name;
        std::vector<std::int64_t> ne;
        GgmlType type;
        std::vector<std::uint8_t> bytes;
    };
    std::uint32_t m_version;
    std::uint64_t m_alignment;
    std::vector<Kv> m_kvs;
    std::vector<Tensor> m_tensors;
};

} // namespace kvchat::testing
