// SPDX-License-Identifier: MIT
// libFuzzer target for the GGUF reader: parses the input with GgufFile::fromMemory and, when it is
// accepted, reads everything the reader hands out (every key, value, array element, string, tensor
// byte, each getter, the first row of each tensor through dequantizeRow) while checking the
// reader's promises: errors name the file, lookups find their own entries, tensor extents lie inside
// the input and match their type's block size. A broken promise aborts, which libFuzzer reports
// as a crash; ASan catches any read past the input (libFuzzer's buffer is exactly the input).
//
// `kvchat_gguf_fuzz --write-seeds DIR` writes the seed corpus (made by GgufWriter, so no binary
// seeds are committed) and exits; run-fuzz.sh uses it.
#include "engine/model/ggml_type.h"
#include "engine/model/gguf_file.h"
#include "tests/support/gguf_writer.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

using kvchat::engine::GgmlType;
using kvchat::engine::GgufFile;
using kvchat::engine::GgufKv;
using kvchat::engine::GgufTensorInfo;
using kvchat::engine::GgufValueType;

namespace {

constexpr const char *kName = "fuzz.gguf";
// Rows longer than this are not dequantized, only touched, to keep each run fast.
constexpr std::int64_t kMaxDequantElements = 1 << 16;

// Sink for the bytes read, so the reads cannot be optimized away.
volatile std::uint64_t g_sink = 0;

void check(bool ok, const char *what)
{
    if (!ok) {
        std::fprintf(stderr, "gguf_file_fuzz: broken invariant: %s\n", what);
        std::abort();
    }
}

void touch(const void *p, std::size_t n)
{
    const auto *b = static_cast<const unsigned char *>(p);
    std::uint64_t h = 0;
    for (std::size_t k = 0; k < n; ++k)
        h = h * 31 + b[k];
    g_sink = g_sink + h;
}

bool namesFile(const kvchat::engine::Error &e)
{
    return e.message.rfind(std::string(kName) + ": ", 0) == 0;
}

template <typename R> void checkGetter(const R &r)
{
    if (!r)
        check(namesFile(r.error()), "getter error names the file");
}

void exercise(const GgufFile &f, const std::byte *begin, const std::byte *end)
{
    const std::uint64_t alignment = f.alignment();
    check(alignment != 0 && (alignment & (alignment - 1)) == 0, "alignment is a power of two");
    check(f.version() == 2 || f.version() == 3, "version is 2 or 3");

    for (const GgufKv &kv : f.metadata()) {
        touch(kv.key.data(), kv.key.size());
        check(f.find(kv.key) == &kv, "find() returns the entry itself");
        checkGetter(f.getString(kv.key));
        checkGetter(f.getUInt(kv.key));
        checkGetter(f.getFloat(kv.key));
        checkGetter(f.getBool(kv.key));
        g_sink = g_sink + kv.u + static_cast<std::uint64_t>(kv.i) + static_cast<std::uint64_t>(std::isnan(kv.f));
        if (kv.type == GgufValueType::String)
            touch(kv.str.data(), kv.str.size());
        if (kv.type != GgufValueType::Array)
            continue;
        if (const std::size_t size = ggufScalarSize(kv.elementType); size != 0) {
            const auto *raw = kv.raw;
            check(kv.count == 0 || (raw >= begin && static_cast<std::uint64_t>(end - raw) / size >= kv.count),
                  "numeric array lies inside the input");
            touch(raw, static_cast<std::size_t>(kv.count * size));
        } else if (kv.elementType == GgufValueType::String) {
            check(kv.strings.size() == kv.count, "one string per element");
            std::uint64_t seen = 0;
            for (std::string_view s : kv.strings) {
                check(reinterpret_cast<const std::byte *>(s.data()) >= begin &&
                          static_cast<std::size_t>(end - reinterpret_cast<const std::byte *>(s.data())) >= s.size(),
                      "string lies inside the input");
                touch(s.data(), s.size());
                ++seen;
            }
            check(seen == kv.count, "iterating the strings visits count of them");
        }
    }

    for (const GgufTensorInfo &t : f.tensors()) {
        touch(t.name.data(), t.name.size());
        check(f.tensor(t.name) == &t, "tensor() returns the entry itself");
        check(!t.ne.empty() && t.ne.size() <= 4, "1 to 4 dimensions");
        check(t.offset % alignment == 0, "offset is aligned");
        const std::optional<std::size_t> rowBytes = kvchat::engine::ggmlRowBytes(t.type, t.ne[0]);
        check(rowBytes.has_value(), "rows are whole blocks");
        check(*rowBytes * static_cast<std::uint64_t>(t.nRows()) == t.sizeBytes, "size matches shape and type");
        check(t.data >= begin && t.sizeBytes <= static_cast<std::size_t>(end - t.data), "tensor data inside the input");
        touch(t.data, 1);
        touch(t.data + t.sizeBytes - 1, 1);
        if (t.ne[0] <= kMaxDequantElements) {
            std::vector<float> row(static_cast<std::size_t>(t.ne[0]));
            kvchat::engine::dequantizeRow(t.type, t.data, row.data(), t.ne[0]);
            touch(row.data(), row.size() * sizeof(float));
        }
    }
    checkGetter(f.getString("general.architecture"));
    check(f.tensor("") == nullptr, "no tensor has an empty name");
}

// ---- seed corpus ----------------------------------------------------------------------------

class Raw
{
public:
    Raw &u8(std::uint8_t v)
    {
        m_b.push_back(v);
        return *this;
    }
    Raw &le(std::uint64_t v, int n)
    {
        for (int k = 0; k < n; ++k)
            m_b.push_back(static_cast<std::uint8_t>(v >> (8 * k)));
        return *this;
    }
    Raw &str(std::string_view s)
    {
        le(s.size(), 8);
        m_b.insert(m_b.end(), s.begin(), s.end());
        return *this;
    }
    Raw &key(std::string_view k, GgufValueType t) { return str(k).le(static_cast<std::uint32_t>(t), 4); }
    const std::vector<std::uint8_t> &bytes() const { return m_b; }

private:
    std::vector<std::uint8_t> m_b;
};

std::vector<float> ramp(std::size_t n)
{
    std::vector<float> v(n);
    for (std::size_t k = 0; k < n; ++k)
        v[k] = std::sin(0.1f * static_cast<float>(k));
    return v;
}

std::vector<std::pair<std::string, std::vector<std::uint8_t>>> makeSeeds()
{
    using kvchat::testing::GgufWriter;
    std::vector<std::pair<std::string, std::vector<std::uint8_t>>> seeds;

    for (std::uint32_t version : {2u, 3u}) {
        GgufWriter w(version);
        w.addString("general.architecture", "llama");
        w.addUInt8("u8", 7);
        w.addInt32("i32", -5);
        w.addUInt32("llama.block_count", 2);
        w.addUInt64("u64", 1ull << 40);
        w.addInt64("i64", -1);
        w.addFloat32("f32", 1e-5f);
        w.addFloat64("f64", 0.5);
        w.addBool("tokenizer.ggml.add_bos_token", true);
        w.addStringArray("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "a"});
        w.addFloat32Array("tokenizer.ggml.scores", {0.0f, 0.0f, 0.0f, -1.0f});
        w.addInt32Array("tokenizer.ggml.token_type", {2, 3, 3, 1});
        seeds.emplace_back("metadata-v" + std::to_string(version), w.serialize());
    }

    // One tensor of each type, plus a multi-dimensional one, at the default and custom alignments.
    const GgmlType types[] = {GgmlType::F32,  GgmlType::F16,  GgmlType::BF16, GgmlType::Q4_0,
                              GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0,
                              GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K};
    for (std::uint64_t alignment : {32ull, 1ull, 64ull}) {
        GgufWriter w(3, alignment);
        w.addString("general.architecture", "llama");
        for (GgmlType type : types) {
            const std::int64_t block = kvchat::engine::ggmlTypeTraits(type).blockElements;
            const std::int64_t n = block == 1 ? 8 : block;
            w.addTensor("t." + std::string(ggmlTypeName(type)), {n}, type, ramp(static_cast<std::size_t>(n)));
        }
        w.addTensor("blk.0.attn_q.weight", {4, 3, 2, 1}, GgmlType::F32, ramp(24));
        seeds.emplace_back("tensors-align" + std::to_string(alignment), w.serialize());
    }

    // Value types the writer has no method for, and nested arrays.
    Raw raw;
    raw.u8('G').u8('G').u8('U').u8('F').le(3, 4).le(0, 8).le(7, 8);
    raw.key("i8", GgufValueType::Int8).u8(0x80);
    raw.key("u16", GgufValueType::UInt16).le(65535, 2);
    raw.key("i16", GgufValueType::Int16).le(0x8000, 2);
    raw.key("s", GgufValueType::String).str("x");
    raw.key("bools", GgufValueType::Array).le(static_cast<std::uint32_t>(GgufValueType::Bool), 4).le(2, 8).u8(1).u8(0);
    raw.key("f64s", GgufValueType::Array).le(static_cast<std::uint32_t>(GgufValueType::Float64), 4).le(1, 8).le(0, 8);
    raw.key("nested", GgufValueType::Array).le(static_cast<std::uint32_t>(GgufValueType::Array), 4).le(2, 8);
    raw.le(static_cast<std::uint32_t>(GgufValueType::String), 4).le(1, 8).str("ab");
    raw.le(static_cast<std::uint32_t>(GgufValueType::Array), 4).le(1, 8);
    raw.le(static_cast<std::uint32_t>(GgufValueType::UInt8), 4).le(1, 8).u8(9);
    seeds.emplace_back("raw-types", raw.bytes());
    return seeds;
}

int writeSeeds(const char *dir)
{
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    for (const auto &[name, bytes] : makeSeeds()) {
        const std::string path = std::string(dir) + "/" + name + ".gguf";
        std::ofstream out(path, std::ios::binary | std::ios::trunc);
        out.write(reinterpret_cast<const char *>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
        if (!out) {
            std::fprintf(stderr, "gguf_file_fuzz: cannot write %s\n", path.c_str());
            return 1;
        }
        // Every seed must parse, or it would seed the fuzzer with nothing but the error path.
        auto r = GgufFile::fromMemory(std::as_bytes(std::span(bytes)), path);
        if (!r) {
            std::fprintf(stderr, "gguf_file_fuzz: seed rejected: %s\n", r.error().message.c_str());
            return 1;
        }
    }
    std::printf("wrote %zu seeds to %s\n", makeSeeds().size(), dir);
    return 0;
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    // Handled before libFuzzer parses its own flags.
    for (int k = 1; k + 1 < *argc; ++k) {
        if (std::strcmp((*argv)[k], "--write-seeds") == 0)
            std::exit(writeSeeds((*argv)[k + 1]));
    }
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size)
{
    const auto bytes = std::as_bytes(std::span(data, size));
    auto r = GgufFile::fromMemory(bytes, kName);
    if (!r) {
        check(namesFile(r.error()), "parse error names the file");
        return 0;
    }
    const GgufFile &f = **r;
    check(f.fileBytes() == size, "fileBytes() is the input size");
    exercise(f, bytes.data(), bytes.data() + size);
    return 0;
}
