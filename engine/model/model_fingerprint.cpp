// SPDX-License-Identifier: MIT
#include "engine/model/model_fingerprint.h"

#include "engine/model/llama_model.h"

#include "engine/core/hash128.h"

#include <algorithm>

namespace kvchat::engine {

ModelFingerprint computeModelFingerprint(const LlamaModel &model, const KvLayout &layout, std::string_view kvDtype)
{
    // Hashing every weight byte would cost a second per GiB at every start. Instead: all metadata
    // and tensor descriptions, plus the first and last 4 KiB of every tensor's data, which changes
    // with any re-quantization or fine-tune while costing microseconds.
    Hasher128 hasher;
    auto add = [&](const void *data, std::size_t size) { hasher.add(data, size); };
    auto addString = [&](std::string_view s) { hasher.addString(s); };
    addString("kvchat-kv");
    add(&kKvFormatVersion, sizeof kKvFormatVersion);
    addString(kvDtype);
    add(&layout.nLayers, sizeof layout.nLayers);
    add(&layout.kvDim, sizeof layout.kvDim);
    add(&layout.blockTokens, sizeof layout.blockTokens);

    const GgufFile &file = model.file();
    const std::uint64_t fileBytes = file.fileBytes();
    add(&fileBytes, sizeof fileBytes);
    for (const GgufKv &kv : file.metadata()) {
        addString(kv.key);
        add(&kv.type, sizeof kv.type);
        add(&kv.u, sizeof kv.u);
        add(&kv.i, sizeof kv.i);
        add(&kv.f, sizeof kv.f);
        addString(kv.str);
        add(&kv.count, sizeof kv.count);
        for (std::string_view s : kv.strings)
            addString(s);
        if (kv.raw && kv.type == GgufValueType::Array)
            add(kv.raw, static_cast<std::size_t>(kv.count) * ggufScalarSize(kv.elementType));
    }
    constexpr std::size_t kSample = 4096;
    for (const GgufTensorInfo &t : file.tensors()) {
        addString(t.name);
        add(&t.type, sizeof t.type);
        add(t.ne.data(), t.ne.size() * sizeof(std::int64_t));
        add(&t.offset, sizeof t.offset);
        const std::size_t head = std::min(kSample, t.sizeBytes);
        add(t.data, head);
        if (t.sizeBytes > kSample)
            add(t.data + t.sizeBytes - kSample, kSample);
    }
    ModelFingerprint fp;
    fp.bytes = hasher.digest();
    return fp;
}

} // namespace kvchat::engine
