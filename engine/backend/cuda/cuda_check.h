// SPDX-License-Identifier: MIT
// CUDA and cuBLAS failures as messages with context: the call, the error's name and text, and
// where (STYLE.md §7). Host code of the CUDA backend only.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace kvchat::engine::cuda {

std::string describe(cudaError_t error);      // "cudaErrorMemoryAllocation (out of memory)"
std::string describe(cublasStatus_t status);  // "CUBLAS_STATUS_NOT_SUPPORTED (...)"

// Thrown by the checks below; the backend turns it into a Result error at its entry points (the
// engine loop would catch it too).
class CudaFailure : public std::runtime_error
{
public:
    explicit CudaFailure(const std::string &message, cudaError_t error = cudaSuccess)
        : std::runtime_error(message), m_error(error)
    {
    }
    // The CUDA runtime's error, where a runtime call failed (cudaSuccess for cuBLAS and others).
    cudaError_t error() const { return m_error; }

private:
    cudaError_t m_error;
};

[[noreturn]] void throwFailure(const char *call, const std::string &what, const char *file, int line,
                               cudaError_t error = cudaSuccess);

} // namespace kvchat::engine::cuda

#define KVCHAT_CUDA_CHECK(call)                                                                                        \
    do {                                                                                                               \
        const cudaError_t kvchatError_ = (call);                                                                       \
        if (kvchatError_ != cudaSuccess)                                                                               \
            ::kvchat::engine::cuda::throwFailure(#call, ::kvchat::engine::cuda::describe(kvchatError_), __FILE__,      \
                                                 __LINE__, kvchatError_);                                              \
    } while (0)

#define KVCHAT_CUBLAS_CHECK(call)                                                                                      \
    do {                                                                                                               \
        const cublasStatus_t kvchatStatus_ = (call);                                                                   \
        if (kvchatStatus_ != CUBLAS_STATUS_SUCCESS)                                                                    \
            ::kvchat::engine::cuda::throwFailure(#call, ::kvchat::engine::cuda::describe(kvchatStatus_), __FILE__,     \
                                                 __LINE__);                                                            \
    } while (0)

// After a kernel launch: launch errors (bad configuration, no kernel image for this GPU) are only
// reported by cudaGetLastError, not by the launch itself.
#define KVCHAT_CUDA_CHECK_LAUNCH(what)                                                                                 \
    do {                                                                                                               \
        const cudaError_t kvchatError_ = cudaGetLastError();                                                           \
        if (kvchatError_ != cudaSuccess)                                                                               \
            ::kvchat::engine::cuda::throwFailure("launching " what, ::kvchat::engine::cuda::describe(kvchatError_),    \
                                                 __FILE__, __LINE__, kvchatError_);                                    \
    } while (0)
