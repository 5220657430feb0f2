// SPDX-License-Identifier: MIT
// nvcuda::wmma (<mma.h>) for the CUDA emulator: the 16x16x16 shapes with fp16 inputs and fp32
// accumulators that cuda_kernels.cu uses. A fragment holds 8 of the tile's 256 elements in each
// lane (lane l: elements 8l..8l+7 in row-major order). That mapping is the emulator's own: CUDA
// leaves it unspecified, so a kernel that depended on it would be wrong on a GPU, and here it
// computes something else than it would there; only whole-fragment operations are portable.
// mma_sync gathers the A and B tiles across the warp (one warp-wide exchange each, like a shuffle:
// every lane must take part, or the warp deadlocks and that is reported) and each lane computes its
// 8 outputs in fp32 (fp16 products are exact in fp32; the summation order is the emulator's, not
// the tensor cores'). Loads and stores check what the hardware requires: 256-bit aligned pointers
// and a leading dimension that is a multiple of 16 bytes.
#pragma once

#include "emulated_device.h"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cuda_fp16.h>
#include <type_traits>

namespace emu {
// Every lane of the calling thread's warp passes `bytes` (<= 64) bytes; each gets all 32 lanes'
// bytes, lane after lane, in `all` (32 * bytes). One warp-wide barrier (emulated_threads.cpp).
void warpAllGather(const void *mine, std::size_t bytes, void *all);
// The calling thread's lane.
unsigned wmmaLane();
} // namespace emu

namespace nvcuda::wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K, class T, class Layout = void> struct fragment
{
    static_assert(M == 16 && N == 16 && K == 16, "only 16x16x16 WMMA shapes are emulated");
    static constexpr int num_elements = 8;
    T x[8];
};

namespace detail {
template <class T> void checkOperand(const T *p, unsigned ldm, const char *what)
{
    if (reinterpret_cast<std::uintptr_t>(p) % 32 != 0)
        emu::fatal("wmma::%s: pointer %p is not 256-bit aligned", what, static_cast<const void *>(p));
    if ((ldm * sizeof(T)) % 16 != 0)
        emu::fatal("wmma::%s: ldm %u is not a multiple of 16 bytes", what, ldm);
}
// Row and column of element i of this lane's part of a tile.
inline int rowOf(int i)
{
    return static_cast<int>(emu::wmmaLane() * 8 + static_cast<unsigned>(i)) / 16;
}
inline int colOf(int i)
{
    return static_cast<int>(emu::wmmaLane() * 8 + static_cast<unsigned>(i)) % 16;
}
} // namespace detail

template <class Use, class T, class Layout> void fill_fragment(fragment<Use, 16, 16, 16, T, Layout> &f, T value)
{
    for (T &e : f.x)
        e = value;
}

template <class Use, class Layout>
void load_matrix_sync(fragment<Use, 16, 16, 16, __half, Layout> &f, const __half *p, unsigned ldm)
{
    detail::checkOperand(p, ldm, "load_matrix_sync");
    constexpr bool rowMajor = std::is_same_v<Layout, row_major>;
    for (int i = 0; i < 8; ++i) {
        const int r = detail::rowOf(i), c = detail::colOf(i);
        f.x[i] = rowMajor ? p[r * ldm + c] : p[c * ldm + r];
    }
}

inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float> &f, const float *p, unsigned ldm,
                             layout_t layout)
{
    detail::checkOperand(p, ldm, "load_matrix_sync");
    for (int i = 0; i < 8; ++i) {
        const int r = detail::rowOf(i), c = detail::colOf(i);
        f.x[i] = layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r];
    }
}

inline void store_matrix_sync(float *p, const fragment<accumulator, 16, 16, 16, float> &f, unsigned ldm,
                              layout_t layout)
{
    detail::checkOperand(p, ldm, "store_matrix_sync");
    for (int i = 0; i < 8; ++i) {
        const int r = detail::rowOf(i), c = detail::colOf(i);
        (layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r]) = f.x[i];
    }
}

template <class LayoutA, class LayoutB>
void mma_sync(fragment<accumulator, 16, 16, 16, float> &d, const fragment<matrix_a, 16, 16, 16, __half, LayoutA> &a,
              const fragment<matrix_b, 16, 16, 16, __half, LayoutB> &b,
              const fragment<accumulator, 16, 16, 16, float> &c)
{
    // Whole tiles, row-major by the emulated mapping (element r * 16 + col).
    __half tileA[256], tileB[256];
    emu::warpAllGather(a.x, sizeof a.x, tileA);
    emu::warpAllGather(b.x, sizeof b.x, tileB);
    fragment<accumulator, 16, 16, 16, float> out;
    for (int i = 0; i < 8; ++i) {
        const int r = detail::rowOf(i), col = detail::colOf(i);
        float acc = c.x[i];
        for (int k = 0; k < 16; ++k)
            acc = std::fma(__half2float(tileA[r * 16 + k]), __half2float(tileB[k * 16 + col]), acc);
        out.x[i] = acc;
    }
    d = out;
}

} // namespace nvcuda::wmma
