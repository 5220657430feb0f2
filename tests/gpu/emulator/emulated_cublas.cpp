// SPDX-License-Identifier: MIT
// The emulated cuBLAS of the CUDA emulator (tests/gpu/emulator/README.md): handles bound to streams
// and cublasGemmEx for the one case kvchat's CUDA backend uses (fp16 A and B, fp32 C, fp32
// compute, ops N or T, host alpha/beta), with cuBLAS's column-major semantics and its argument
// checks (CUBLAS_STATUS_INVALID_VALUE for bad m, n, k or leading dimensions). The GEMM is queued on
// the handle's stream like any kernel, and every operand must lie inside one device allocation.
//
// Not emulated: cuBLAS's choice of algorithm and its rounding. Here each product is exact (fp16 to
// fp32) and the k terms are summed in fp32 with 8 interleaved partial sums, a fixed order; real
// cuBLAS picks tensor-core kernels, split-k and summation orders by shape and GPU, so results
// agree to fp32 rounding of a k-term sum, not bit for bit. Other types, ops or algorithms and
// device-pointer alpha/beta stop with EMU FATAL; any other cuBLAS function is a link error.
// No switches of its own: EMU_TRACE and the stream switches of emulated_cuda_runtime.cpp apply.
#include "emulated_device.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <cublas_v2.h>
#include <set>
#include <thread>
#include <vector>

struct cublasContext
{
    cudaStream_t stream = nullptr;
};

namespace {
std::set<cublasHandle_t> liveHandles;

float halfBitsToFloat(std::uint16_t h)
{
    const int sign = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    float v;
    if (e == 0)
        v = std::ldexp(static_cast<float>(m), -24);
    else if (e == 31)
        v = m ? std::nanf("") : INFINITY;
    else
        v = std::ldexp(static_cast<float>(m + 1024), e - 25);
    return sign ? -v : v;
}

const std::vector<float> &halfTable()
{
    static const std::vector<float> t = [] {
        std::vector<float> v(65536);
        for (int i = 0; i < 65536; ++i)
            v[static_cast<std::size_t>(i)] = halfBitsToFloat(static_cast<std::uint16_t>(i));
        return v;
    }();
    return t;
}

// 8 partial sums in fp32 (cuBLAS sums in an unspecified order too).
__attribute__((no_sanitize("address", "undefined"))) float dot(const float *a, const float *b, int k)
{
    float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int p = 0;
    for (; p + 8 <= k; p += 8)
        for (int l = 0; l < 8; ++l)
            s[l] = std::fma(a[p + l], b[p + l], s[l]);
    for (; p < k; ++p)
        s[0] = std::fma(a[p], b[p], s[0]);
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

const char *opName(cublasOperation_t op)
{
    return op == CUBLAS_OP_N ? "N" : op == CUBLAS_OP_T ? "T" : "other";
}

cublasStatus_t invalid(const char *what)
{
    emu::note("cublasGemmEx: CUBLAS_STATUS_INVALID_VALUE: %s", what);
    return CUBLAS_STATUS_INVALID_VALUE;
}
} // namespace

extern "C" {

cublasStatus_t cublasCreate_v2(cublasHandle_t *handle)
{
    *handle = new cublasContext;
    liveHandles.insert(*handle);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy_v2(cublasHandle_t handle)
{
    if (!liveHandles.count(handle))
        emu::fatal("cublasDestroy(%p): not a live handle", static_cast<void *>(handle));
    emu::flushAll(); // cublasDestroy synchronizes the device
    liveHandles.erase(handle);
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t stream)
{
    if (!liveHandles.count(handle))
        emu::fatal("cublasSetStream: not a live handle");
    if (!emu::streamValid(stream))
        emu::fatal("cublasSetStream: not a live stream");
    handle->stream = stream;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetWorkspace_v2(cublasHandle_t handle, void *workspace, size_t workspaceSizeInBytes)
{
    if (!liveHandles.count(handle))
        emu::fatal("cublasSetWorkspace: not a live handle");
    if (workspaceSizeInBytes > 0 && !emu::deviceRange(workspace, workspaceSizeInBytes))
        emu::fatal("cublasSetWorkspace(%p, %zu): not inside one device allocation", workspace, workspaceSizeInBytes);
    return CUBLAS_STATUS_SUCCESS; // the emulated GEMM needs no workspace
}

const char *cublasGetStatusName(cublasStatus_t s)
{
    switch (s) {
    case CUBLAS_STATUS_SUCCESS:
        return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED:
        return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED:
        return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE:
        return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_NOT_SUPPORTED:
        return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_EXECUTION_FAILED:
        return "CUBLAS_STATUS_EXECUTION_FAILED";
    default:
        return "CUBLAS_STATUS_(emulated other)";
    }
}

const char *cublasGetStatusString(cublasStatus_t s)
{
    switch (s) {
    case CUBLAS_STATUS_SUCCESS:
        return "success";
    case CUBLAS_STATUS_INVALID_VALUE:
        return "an invalid numeric value was used as an argument";
    case CUBLAS_STATUS_NOT_SUPPORTED:
        return "the functionality requested is not supported";
    default:
        return "emulated cuBLAS status";
    }
}

cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                            int k, const void *alpha, const void *A, cudaDataType Atype, int lda, const void *B,
                            cudaDataType Btype, int ldb, const void *beta, void *C, cudaDataType Ctype, int ldc,
                            cublasComputeType_t computeType, cublasGemmAlgo_t algo)
{
    if (!liveHandles.count(handle))
        return CUBLAS_STATUS_NOT_INITIALIZED;
    if ((transa != CUBLAS_OP_N && transa != CUBLAS_OP_T) || (transb != CUBLAS_OP_N && transb != CUBLAS_OP_T))
        emu::fatal("cublasGemmEx: op %d/%d not emulated", transa, transb);
    if (Atype != CUDA_R_16F || Btype != CUDA_R_16F || Ctype != CUDA_R_32F || computeType != CUBLAS_COMPUTE_32F)
        emu::fatal("cublasGemmEx: types A %d B %d C %d compute %d not emulated (expected 16F, 16F, 32F, COMPUTE_32F)",
                   Atype, Btype, Ctype, computeType);
    if (algo != CUBLAS_GEMM_DEFAULT && algo != CUBLAS_GEMM_DEFAULT_TENSOR_OP)
        emu::fatal("cublasGemmEx: algo %d not emulated", algo);
    if (m < 0 || n < 0 || k < 0)
        return invalid("negative m, n or k");
    const int rowsA = transa == CUBLAS_OP_N ? m : k, colsA = transa == CUBLAS_OP_N ? k : m;
    const int rowsB = transb == CUBLAS_OP_N ? k : n, colsB = transb == CUBLAS_OP_N ? n : k;
    if (lda < std::max(1, rowsA))
        return invalid("lda < rows of A");
    if (ldb < std::max(1, rowsB))
        return invalid("ldb < rows of B");
    if (ldc < std::max(1, m))
        return invalid("ldc < m");
    if (alpha == nullptr || beta == nullptr || emu::isDevicePointer(alpha) || emu::isDevicePointer(beta))
        emu::fatal("cublasGemmEx: alpha/beta must be host pointers (CUBLAS_POINTER_MODE_HOST)");
    if (m == 0 || n == 0)
        return CUBLAS_STATUS_SUCCESS;
    const float a = *static_cast<const float *>(alpha), b = *static_cast<const float *>(beta);
    auto extent = [](long long rows, long long cols, long long ld) { return cols == 0 ? 0 : ld * (cols - 1) + rows; };
    const std::size_t bytesA = static_cast<std::size_t>(extent(rowsA, colsA, lda)) * 2;
    const std::size_t bytesB = static_cast<std::size_t>(extent(rowsB, colsB, ldb)) * 2;
    const std::size_t bytesC = static_cast<std::size_t>(extent(m, n, ldc)) * 4;
    if (k > 0 && !emu::deviceRange(A, bytesA))
        emu::fatal("cublasGemmEx(%s%s m=%d n=%d k=%d lda=%d): A %p (+%zu bytes) is not inside one device allocation",
                   opName(transa), opName(transb), m, n, k, lda, A, bytesA);
    if (k > 0 && !emu::deviceRange(B, bytesB))
        emu::fatal("cublasGemmEx(%s%s m=%d n=%d k=%d ldb=%d): B %p (+%zu bytes) is not inside one device allocation",
                   opName(transa), opName(transb), m, n, k, ldb, B, bytesB);
    if (!emu::deviceRange(C, bytesC))
        emu::fatal("cublasGemmEx(m=%d n=%d ldc=%d): C %p (+%zu bytes) is not inside one device allocation", m, n, ldc,
                   C, bytesC);
    auto overlaps = [](const void *p, std::size_t pn, const void *q, std::size_t qn) {
        const auto x = reinterpret_cast<std::uintptr_t>(p), y = reinterpret_cast<std::uintptr_t>(q);
        return x < y + qn && y < x + pn;
    };
    if (k > 0 && (overlaps(C, bytesC, A, bytesA) || overlaps(C, bytesC, B, bytesB)))
        emu::fatal("cublasGemmEx: C overlaps A or B");

    const auto *pa = static_cast<const std::uint16_t *>(A);
    const auto *pb = static_cast<const std::uint16_t *>(B);
    float *pc = static_cast<float *>(C);
    emu::enqueue(
        handle->stream,
        [=] {
            const std::vector<float> &h = halfTable();
            const std::size_t K = static_cast<std::size_t>(k);
            // op(A) as rows i (m of them) of k floats, op(B) as columns j (n of them) of k floats.
            std::vector<float> af(static_cast<std::size_t>(m) * K), bf(static_cast<std::size_t>(n) * K);
            for (int i = 0; i < m; ++i)
                for (int p = 0; p < k; ++p)
                    af[static_cast<std::size_t>(i) * K + static_cast<std::size_t>(p)] =
                        h[transa == CUBLAS_OP_N ? pa[i + static_cast<std::size_t>(p) * lda]
                                                : pa[p + static_cast<std::size_t>(i) * lda]];
            for (int j = 0; j < n; ++j)
                for (int p = 0; p < k; ++p)
                    bf[static_cast<std::size_t>(j) * K + static_cast<std::size_t>(p)] =
                        h[transb == CUBLAS_OP_N ? pb[p + static_cast<std::size_t>(j) * ldb]
                                                : pb[j + static_cast<std::size_t>(p) * ldb]];
            auto work = [&](int j0, int j1) {
                for (int j = j0; j < j1; ++j)
                    for (int i = 0; i < m; ++i) {
                        const float acc =
                            dot(&af[static_cast<std::size_t>(i) * K], &bf[static_cast<std::size_t>(j) * K], k);
                        float &c = pc[i + static_cast<std::size_t>(j) * ldc];
                        c = b == 0.0f ? a * acc : a * acc + b * c; // beta == 0: C is not read
                    }
            };
            if (static_cast<double>(m) * n * k > 1e7 && n >= 2) {
                std::thread t(work, 0, n / 2);
                work(n / 2, n);
                t.join();
            } else if (static_cast<double>(m) * n * k > 1e7) {
                std::thread t([&] {
                    for (int i = 0; i < m / 2; ++i) {
                        const float acc = dot(&af[static_cast<std::size_t>(i) * K], &bf[0], k);
                        pc[i] = b == 0.0f ? a * acc : a * acc + b * pc[i];
                    }
                });
                for (int i = m / 2; i < m; ++i) {
                    const float acc = dot(&af[static_cast<std::size_t>(i) * K], &bf[0], k);
                    pc[i] = b == 0.0f ? a * acc : a * acc + b * pc[i];
                }
                t.join();
            } else
                work(0, n);
        },
        "cublasGemmEx");
    return CUBLAS_STATUS_SUCCESS;
}

} // extern "C"
