// SPDX-License-Identifier: MIT
// Where tests find their inputs: shared/ (models and reference outputs checked in beside the repo)
// and the model cache that fetch_smollm2 fills from PyPI.
#pragma once

#include <filesystem>
#include <string>

namespace kvchat::testing {

inline std::filesystem::path sharedDir()
{
    return std::filesystem::path(KVCHAT_SHARED_DIR);
}
inline std::string sharedModel(const std::string &name)
{
    return (sharedDir() / "models" / name).string();
}
inline std::string sharedReference(const std::string &name)
{
    return (sharedDir() / "reference" / name).string();
}
inline std::string smollm2Path()
{
    return std::string(KVCHAT_SMOLLM2_GGUF);
}
inline std::string cliPath()
{
    return std::string(KVCHAT_CLI_PATH);
}

} // namespace kvchat::testing
