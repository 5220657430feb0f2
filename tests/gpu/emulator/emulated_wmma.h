// SPDX-License-Identifier: MIT
// nvcuda::wmma (<mma.h>) for the CUDA emulator: the 16x16x16 shapes with fp16 inputs and fp32
// accumulators that cuda_kernels.cu uses. A fragment holds 8 of the tile's 256 elements in each
// lane: lane l's element i is the tile's element 8l + i in row-major order, or with EMU_REVERSE
// (the adversarial pass) element 32i + l. Those mappings are the emulator's own: CUDA leaves the
// mapping unspecified, so a kernel that depended on one would be wrong on a GPU; a kernel that
// only uses whole-fragment operations, or learns the mapping from a loaded fragment, computes the
// same in both passes.
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
// The tile element (row-major, 0..255) that lane's fragment element i holds.
inline int elementOf(unsigned lane, int i)
{
    return emu::config().reverse ? i * 32 + static_cast<int>(lane) : static_cast<int>(lane) * 8 + i;
}
// Row and column of element i of this lane's part of a tile.
inline int rowOf(int i)
{
    return elementOf(emu::wmmaLane(), i) / 16;
}
inline int colOf(int i)
{
    return elementOf(emu::wmmaLane(), i) % 16;
}
// Whole tiles, row-major, from every lane's fragment elements (one warp-wide exchange).
inline void gatherTile(const __half (&mine)[8], __half (&tile)[256])
{
    __half lanes[256]; // lane after lane, 8 each
    emu::warpAllGather(mine, sizeof mine, lanes);
    for (unsigned l = 0; l < 32; ++l)
        for (int i = 0; i < 8; ++i)
            tile[elementOf(l, i)] = lanes[l * 8 + static_cast<unsigned>(i)];
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
    __half tileA[256], tileB[256];
    detail::gatherTile(a.x, tileA);
    detail::gatherTile(b.x, tileB);
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
