// SPDX-License-Identifier: MIT
// kvchat-make-random-model: writes a random-weight Llama GGUF at a real model's shape with the
// project's own GGUF writer and quantizers, so that kvchat and llama.cpp can be benchmarked on the
// same file without downloading weights. The default shape is TinyLlama-1.1B's.
//
//   kvchat-make-random-model --type Q8_0|Q4_0|Q4_K|... -o OUT.gguf [--dim 2048] [--layers 22]
//                            [--heads 32] [--kv-heads 4] [--ff 5632] [--vocab 32000] [--ctx 4096]
//                            [--seed 1]
//
// Every matrix (embeddings and output included) is stored in the given type; norms stay F32. The
// vocabulary is sentencepiece-style (byte pieces plus filler), so both engines load it as "llama".
#include "tests/support/random_model.h"

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>

namespace {

using kvchat::engine::GgmlType;

std::optional<GgmlType> typeByName(const std::string &name)
{
    for (GgmlType t : {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0, GgmlType::Q4_0,
                       GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q4_K, GgmlType::Q5_K,
                       GgmlType::Q6_K})
        if (name == kvchat::engine::ggmlTypeName(t))
            return t;
    return std::nullopt;
}

int usage()
{
    std::cerr << "usage: kvchat-make-random-model --type Q8_0|Q4_0|Q4_K|... -o OUT.gguf [--dim 2048]\n"
                 "         [--layers 22] [--heads 32] [--kv-heads 4] [--ff 5632] [--vocab 32000]\n"
                 "         [--ctx 4096] [--seed 1]\n";
    return 2;
}

} // namespace

int main(int argc, char **argv)
{
    kvchat::testing::RandomModelSpec spec;
    spec.nEmbd = 2048;
    spec.nLayers = 22;
    spec.nHeads = 32;
    spec.nKvHeads = 4;
    spec.nFf = 5632;
    spec.nVocab = 32000;
    spec.nCtx = 4096;
    spec.keepDecodedTensors = false;
    std::string out;
    std::optional<GgmlType> type;
    if (argc % 2 == 0)
        return usage();
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string arg = argv[i], value = argv[i + 1];
        const int n = std::atoi(value.c_str());
        if (arg == "--type")
            type = typeByName(value);
        else if (arg == "-o")
            out = value;
        else if (arg == "--dim")
            spec.nEmbd = n;
        else if (arg == "--layers")
            spec.nLayers = n;
        else if (arg == "--heads")
            spec.nHeads = n;
        else if (arg == "--kv-heads")
            spec.nKvHeads = n;
        else if (arg == "--ff")
            spec.nFf = n;
        else if (arg == "--vocab")
            spec.nVocab = n;
        else if (arg == "--ctx")
            spec.nCtx = n;
        else if (arg == "--seed")
            spec.seed = static_cast<std::uint64_t>(std::strtoull(value.c_str(), nullptr, 10));
        else
            return usage();
    }
    if (!type || out.empty() || spec.nEmbd <= 0 || spec.nLayers <= 0 || spec.nHeads <= 0 ||
        spec.nKvHeads <= 0 || spec.nHeads % spec.nKvHeads != 0 || spec.nEmbd % spec.nHeads != 0 ||
        spec.nFf <= 0 || spec.nVocab < 259)
        return usage();
    spec.weightType = *type;
    const auto start = std::chrono::steady_clock::now();
    try {
        // Written to a temporary name first, so an interrupted run never leaves a truncated model
        // where the benchmark script would take it for a finished one.
        const std::string partial = out + ".partial";
        kvchat::testing::writeRandomModel(partial, spec);
        std::filesystem::rename(partial, out);
    } catch (const std::exception &e) {
        std::cerr << "kvchat-make-random-model: " << e.what() << "\n";
        return 1;
    }
    std::cout << "wrote " << out << " (" << std::filesystem::file_size(out) / (1024 * 1024) << " MiB, "
              << std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() << " s)\n";
    return 0;
}
