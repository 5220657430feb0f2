// SPDX-License-Identifier: MIT
// The emulated streaming multiprocessor of the CUDA emulator (tests/gpu/emulator/README.md): runs a
// grid's blocks one after another, each CUDA thread of a block as a fiber on the test's thread.
// A fiber runs until it reaches a barrier (__syncthreads, or a warp shuffle, which is a barrier of
// its warp), then the next fiber runs; a barrier opens when every thread of its block or warp has
// arrived. So a result that depends on the order of threads between barriers (a race on shared or
// global memory) shows as a difference between EMU_REVERSE=0 and EMU_REVERSE=1 (threads resumed
// from the last one down), and a barrier that not every thread reaches is reported as a deadlock.
// A fiber switch saves six registers in a few instructions (x86-64 System V only), and each switch
// is announced to AddressSanitizer, so ASan checks the kernels' memory accesses like any host code.
//
// Not emulated: warps running ahead of each other in a block (all threads are interleaved only
// at barriers), memory ordering and visibility (every store is seen at once by every thread, so a
// missing __threadfence or volatile goes unnoticed), and anything about time or occupancy.
#include "emulated_kernel_shim.h"

#include <cstdlib>
#include <memory>
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define EMU_ASAN 1
#else
#define EMU_ASAN 0
#endif

// switch stacks: saves callee-saved registers on the current stack, stores its sp in *save, loads
// sp from load and restores what that stack saved.
extern "C" void emu_switch(void **save, void *load);
asm(R"(
    .text
    .globl emu_switch
    .type emu_switch,@function
emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_switch, .-emu_switch
)");

namespace emu {
uint3 g_threadIdx, g_blockIdx;
dim3 g_blockDim, g_gridDim;
void *g_dynSmem = nullptr;
std::size_t g_dynSmemBytes = 0;

namespace {
constexpr std::size_t kStack = 64 * 1024;
struct Fiber
{
    void *sp = nullptr;
    std::unique_ptr<char[]> stack;
    bool done = false;
    bool waitedForPrecedingGrid = false; // called cudaGridDependencySynchronize()
};
std::vector<Fiber> fibers;
void *schedSp = nullptr;
int current = -1;
const std::function<void()> *kernelFn = nullptr;
bool gridOverlapped = false; // the running grid was launched overlapped
unsigned long long progress = 0;
int blockArrived = 0;
unsigned long long blockGen = 0;
int warpArrived[32];
unsigned long long warpGen[32];
std::uint64_t warpBuf[2][32][32]; // double-buffered by barrier generation parity
#if EMU_ASAN
const void *schedBottom = nullptr;
std::size_t schedSize = 0;
#endif

void toScheduler(bool exiting)
{
#if EMU_ASAN
    void *fake = nullptr;
    __sanitizer_start_switch_fiber(exiting ? nullptr : &fake, schedBottom, schedSize);
#endif
    emu_switch(&fibers[static_cast<std::size_t>(current)].sp, schedSp);
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#else
    (void)exiting;
#endif
}

[[noreturn]] void fiberEntry()
{
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &schedBottom, &schedSize);
#endif
    (*kernelFn)();
    Fiber &self = fibers[static_cast<std::size_t>(current)];
    // A grid launched overlapped counts as complete when its threads have exited; the next
    // grid's wait relies on that, so a thread that never waited could let a later kernel read
    // what an earlier one has not written yet.
    if (gridOverlapped && !self.waitedForPrecedingGrid)
        fatal("thread %u of block %u,%u,%u of an overlapped launch exited without cudaGridDependencySynchronize()",
              g_threadIdx.x, g_blockIdx.x, g_blockIdx.y, g_blockIdx.z);
    self.done = true;
    ++progress;
    toScheduler(true);
    __builtin_trap();
}

void resume(unsigned t)
{
#if EMU_ASAN
    void *fake = nullptr;
    __sanitizer_start_switch_fiber(&fake, fibers[t].stack.get(), kStack);
#endif
    emu_switch(&schedSp, fibers[t].sp);
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
}

unsigned warpOf()
{
    return (g_threadIdx.x + g_threadIdx.y * g_blockDim.x) / 32;
}

void warpBarrier()
{
    const unsigned w = warpOf();
    const unsigned long long gen = warpGen[w];
    const int width = std::min<int>(32, static_cast<int>(fibers.size()) - static_cast<int>(w) * 32);
    if (++warpArrived[w] == width) {
        warpArrived[w] = 0;
        ++warpGen[w];
        ++progress;
        return;
    }
    while (warpGen[w] == gen)
        toScheduler(false);
}
} // namespace

void syncthreads()
{
    const unsigned long long gen = blockGen;
    if (++blockArrived == static_cast<int>(fibers.size())) {
        blockArrived = 0;
        ++blockGen;
        ++progress;
        return;
    }
    while (blockGen == gen)
        toScheduler(false);
}

void syncwarp()
{
    warpBarrier();
}

void gridDependencyWait()
{
    if (current < 0)
        fatal("cudaGridDependencySynchronize() outside a kernel");
    fibers[static_cast<std::size_t>(current)].waitedForPrecedingGrid = true;
}

std::uint64_t shuffleBits(std::uint64_t bits, unsigned src)
{
    const unsigned w = warpOf();
    const unsigned parity = static_cast<unsigned>(warpGen[w] & 1);
    warpBuf[parity][w][laneId()] = bits;
    warpBarrier();
    return warpBuf[parity][w][src];
}

unsigned wmmaLane()
{
    return laneId();
}

void warpAllGather(const void *mine, std::size_t bytes, void *all)
{
    constexpr std::size_t kMaxBytes = 64;
    static unsigned char buffers[2][32][32][kMaxBytes]; // [parity][warp][lane]
    if (bytes > kMaxBytes)
        fatal("warpAllGather: %zu bytes per lane (at most %zu)", bytes, kMaxBytes);
    const unsigned w = warpOf();
    const unsigned parity = static_cast<unsigned>(warpGen[w] & 1); // as shuffleBits: see there
    std::memcpy(buffers[parity][w][laneId()], mine, bytes);
    warpBarrier();
    for (unsigned l = 0; l < 32; ++l)
        std::memcpy(static_cast<unsigned char *>(all) + l * bytes, buffers[parity][w][l], bytes);
}

void runGrid(dim3 grid, dim3 block, std::size_t smem, const std::function<void()> &fn, bool overlapped)
{
    const unsigned nThreads = block.x;
    kernelFn = &fn;
    gridOverlapped = overlapped;
    g_gridDim = grid;
    g_blockDim = block;
    fibers.resize(nThreads);
    // 128-byte aligned, as a GPU's dynamic shared memory is in practice and as kernels may declare.
    struct AlignedFree
    {
        void operator()(char *p) const { std::free(p); }
    };
    std::unique_ptr<char, AlignedFree> smemBuf(
        smem ? static_cast<char *>(std::aligned_alloc(128, (smem + 127) / 128 * 128)) : nullptr);
    // Blocks of a grid run in no set order on a GPU: with EMU_REVERSE, last to first, so a kernel
    // whose blocks depend on each other's writes shows it.
    const bool reverse = config().reverse;
    for (unsigned iz = 0; iz < grid.z; ++iz)
        for (unsigned iy = 0; iy < grid.y; ++iy)
            for (unsigned ix = 0; ix < grid.x; ++ix) {
                const unsigned bx = reverse ? grid.x - 1 - ix : ix;
                const unsigned by = reverse ? grid.y - 1 - iy : iy;
                const unsigned bz = reverse ? grid.z - 1 - iz : iz;
                g_blockIdx = uint3{bx, by, bz};
                // garbage fill: kernels must not rely on zeroed or leftover dynamic shared memory
                if (smem)
                    std::memset(smemBuf.get(), 0xff, smem);
                g_dynSmem = smemBuf.get();
                g_dynSmemBytes = smem;
                blockArrived = 0;
                for (int w = 0; w < 32; ++w)
                    warpArrived[w] = 0;
                for (unsigned t = 0; t < nThreads; ++t) {
                    Fiber &f = fibers[t];
                    if (!f.stack)
                        f.stack.reset(new char[kStack]);
#if EMU_ASAN
                    __asan_unpoison_memory_region(f.stack.get(), kStack);
#endif
                    f.done = false;
                    f.waitedForPrecedingGrid = false;
                    auto top = reinterpret_cast<std::uintptr_t>(f.stack.get() + kStack) & ~std::uintptr_t(15);
                    void **sp = reinterpret_cast<void **>(top);
                    *--sp = nullptr;                               // fiberEntry's "return address"
                    *--sp = reinterpret_cast<void *>(&fiberEntry); // where emu_switch returns to
                    for (int r = 0; r < 6; ++r)
                        *--sp = nullptr; // rbp rbx r12-r15
                    f.sp = sp;
                }
                std::size_t alive = nThreads;
                unsigned long long stalls = 0;
                while (alive > 0) {
                    const unsigned long long before = progress;
                    for (unsigned i = 0; i < nThreads; ++i) {
                        const unsigned t = config().reverse ? nThreads - 1 - i : i;
                        if (fibers[t].done)
                            continue;
                        current = static_cast<int>(t);
                        g_threadIdx = uint3{t, 0, 0};
                        resume(t);
                        if (fibers[t].done)
                            --alive;
                    }
                    if (progress == before) {
                        if (++stalls > 3)
                            fatal("deadlock (divergent barrier?) in block %u,%u,%u", bx, by, bz);
                    } else
                        stalls = 0;
                }
                g_dynSmem = nullptr;
            }
    current = -1;
}

} // namespace emu
