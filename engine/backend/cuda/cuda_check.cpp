// SPDX-License-Identifier: MIT
#include "engine/backend/cuda/cuda_check.h"

#include <filesystem>

namespace kvchat::engine::cuda {

std::string describe(cudaError_t error)
{
    return std::string(cudaGetErrorName(error)) + " (" + cudaGetErrorString(error) + ")";
}

std::string describe(cublasStatus_t status)
{
    return std::string(cublasGetStatusName(status)) + " (" + cublasGetStatusString(status) + ")";
}

void throwFailure(const char *call, const std::string &what, const char *file, int line, cudaError_t error)
{
    throw CudaFailure(std::string(call) + " failed: " + what + " [" + std::filesystem::path(file).filename().string() +
                          ":" + std::to_string(line) + "]",
                      error);
}

} // namespace kvchat::engine::cuda
