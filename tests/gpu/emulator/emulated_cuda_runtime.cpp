// SPDX-License-Identifier: MIT
// The emulated CUDA runtime of the CUDA emulator (tests/gpu/emulator/README.md): the subset of the
// CUDA runtime API that kvchat's CUDA backend and its tests call, defined with the real
// <cuda_runtime.h> signatures so the host code compiles against the real headers and links here
// instead of libcudart. One emulated device ("Emulated H100", compute capability 9.0).
//
// What it emulates: streams as queues of deferred work (a kernel, copy or memset runs when its
// stream or the device is synchronized, never when it is issued, so a missing synchronization shows
// as stale data); the legacy default stream as documented (cudaMemcpy/cudaMemset are asynchronous
// to non-blocking streams, and a cudaMemcpy from pageable memory may return before the data lands);
// device memory as host heap blocks that AddressSanitizer guards (an overrun is an ASan report),
// filled with 0xff bytes (NaN as fp32 and fp16) so unwritten memory shows; pinned memory; launch
// configuration errors and the per-kernel dynamic shared memory limit (cudaGetLastError); checks on
// every copy's pointers (inside one allocation, of the kind cudaMemcpyKind says) that stop with
// "EMU FATAL" where a GPU would corrupt memory or fail later.
//
// What it does NOT emulate: timing, concurrency between streams (queued work runs in issue order,
// or legacy stream last with EMU_LEGACY_LAST), occupancy, register or cache limits; memory limits
// beyond a byte count (no fragmentation, no per-allocation overhead, pinned memory unlimited);
// asynchronous kernel faults and sticky errors (a bad device access is an ASan report instead);
// a kernel reading host memory through a device pointer (host and device share one address space
// here); multiple devices, cudaStreamPerThread, blocking streams, cudaMemcpyDefault. Stream
// capture and graphs are in emulated_cuda_graphs.cpp, events in emulated_cuda_events.cpp.
//
// Environment switches (0 or 1 unless said otherwise; read once, at the first API call):
//   EMU_LEGACY_ASYNC=0    run legacy-default-stream work (cudaMemcpy D2D, cudaMemset) when it is
//                         issued, as if it were synchronous (default 1: queued, as CUDA documents).
//   EMU_PAGEABLE_DEFER=0  cudaMemcpy from pageable host memory completes before it returns
//                         (default 1: the staged copy lands later, in legacy-stream order).
//   EMU_LEGACY_LAST=1     when everything is flushed (cudaDeviceSynchronize, cudaFree...), run the
//                         non-blocking streams' queued work before the legacy stream's; CUDA allows
//                         either order, so code must not depend on it (default 0: issue order).
//   EMU_REVERSE=1         resume the CUDA threads of a block in reverse order between barriers,
//                         and run a grid's blocks last to first
//                         (emulated_threads.cpp), to expose races between threads; WMMA fragments
//                         map to tile elements another way (emulated_wmma.h).
//   EMU_POISON=0          do not fill new device and pinned allocations with garbage.
//   EMU_DEVICE_BYTES=N    device memory size in bytes (default 80 GiB), for out-of-memory paths.
//   EMU_SMEM_OPTIN=N      the shared memory a block may opt in to (default 232448, an H100's; an
//                         RTX 30xx/40xx or L4 allows 101376).
//   EMU_TRACE=1           log every API call and every piece of work as it is queued and run.
//   EMU_REFUSE_OVERLAPPED_LAUNCHES=1  cudaLaunchKernelEx refuses overlapped launches with
//                         cudaErrorNotSupported, as an older driver might (read at every launch, so
//                         a test may set it for part of a run).
// The strictest run is the default plus EMU_LEGACY_LAST=1 EMU_REVERSE=1;
// run-emulated-gpu-tests.sh runs both tests with the defaults and with that.
#include "emulated_device.h"

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace emu {

namespace {
bool envFlag(const char *name, bool def)
{
    const char *v = std::getenv(name);
    return v == nullptr ? def : std::atoi(v) != 0;
}
} // namespace

const Config &config()
{
    static const Config c{
        .legacyAsync = envFlag("EMU_LEGACY_ASYNC", true),
        .pageableDefer = envFlag("EMU_PAGEABLE_DEFER", true),
        .reverse = envFlag("EMU_REVERSE", false),
        .legacyLast = envFlag("EMU_LEGACY_LAST", false),
        .poison = envFlag("EMU_POISON", true),
        .trace = envFlag("EMU_TRACE", false),
        .deviceBytes = std::getenv("EMU_DEVICE_BYTES") ? std::strtoull(std::getenv("EMU_DEVICE_BYTES"), nullptr, 10)
                                                       : (std::size_t(80) << 30),
        .smemOptIn = std::getenv("EMU_SMEM_OPTIN") ? std::strtoull(std::getenv("EMU_SMEM_OPTIN"), nullptr, 10)
                                                   : std::size_t(232448),
    };
    return c;
}

void fatal(const char *fmt, ...)
{
    std::va_list ap;
    va_start(ap, fmt);
    std::fprintf(stderr, "\nEMU FATAL: ");
    std::vfprintf(stderr, fmt, ap);
    std::fprintf(stderr, "\n");
    va_end(ap);
    std::fflush(stderr);
    std::abort();
}

void note(const char *fmt, ...)
{
    std::va_list ap;
    va_start(ap, fmt);
    std::fprintf(stderr, "EMU: ");
    std::vfprintf(stderr, fmt, ap);
    std::fprintf(stderr, "\n");
    va_end(ap);
}

#define TRACE(...)                                                                                                     \
    do {                                                                                                               \
        if (config().trace)                                                                                            \
            note(__VA_ARGS__);                                                                                         \
    } while (0)

// ---------------------------------------------------------------------------------------------
// Errors, streams, queued work

namespace {
cudaError_t g_lastError = cudaSuccess;
cudaError_t fail(cudaError_t e)
{
    g_lastError = e;
    return e;
}

struct Op
{
    cudaStream_t stream; // nullptr: legacy default stream
    std::function<void()> fn;
    std::string what;
};
std::deque<Op> pending;
std::set<cudaStream_t> liveStreams;
std::map<const void *, int> maxDynSmem; // cudaFuncAttributeMaxDynamicSharedMemorySize per kernel
bool running = false;

cudaStream_t canon(cudaStream_t s)
{
    return (s == nullptr || s == cudaStreamLegacy) ? nullptr : s;
}

void runOps(std::vector<Op> &ops)
{
    if (running)
        fatal("re-entrant flush");
    running = true;
    for (Op &op : ops) {
        TRACE("run %s on stream %p", op.what.c_str(), static_cast<void *>(op.stream));
        op.fn();
    }
    running = false;
}

void flushStream(cudaStream_t s)
{
    s = canon(s);
    std::vector<Op> ops;
    for (auto it = pending.begin(); it != pending.end();) {
        if (it->stream == s) {
            ops.push_back(std::move(*it));
            it = pending.erase(it);
        } else
            ++it;
    }
    runOps(ops);
}
} // namespace

bool runNextQueued(cudaStream_t s)
{
    s = canon(s);
    for (auto it = pending.begin(); it != pending.end(); ++it) {
        if (it->stream != s)
            continue;
        Op op = std::move(*it);
        pending.erase(it);
        TRACE("run %s on stream %p (for an event wait)", op.what.c_str(), static_cast<void *>(op.stream));
        op.fn();
        return true;
    }
    return false;
}

cudaError_t recordError(cudaError_t e)
{
    return fail(e);
}

bool refuseOverlappedLaunches()
{
    const char *value = std::getenv("EMU_REFUSE_OVERLAPPED_LAUNCHES");
    return value != nullptr && std::string_view(value) == "1";
}

void flushAll()
{
    std::vector<Op> ops(std::make_move_iterator(pending.begin()), std::make_move_iterator(pending.end()));
    pending.clear();
    if (config().legacyLast)
        std::stable_partition(ops.begin(), ops.end(), [](const Op &op) { return op.stream != nullptr; });
    runOps(ops);
}

bool streamValid(cudaStream_t s)
{
    if (s == cudaStreamPerThread)
        fatal("cudaStreamPerThread is not emulated");
    return canon(s) == nullptr || liveStreams.count(s) != 0;
}

void enqueue(cudaStream_t s, std::function<void()> fn, const char *what)
{
    if (!streamValid(s))
        fatal("%s queued on an invalid (destroyed?) stream %p", what, static_cast<void *>(s));
    s = canon(s);
    if (captureWork(s, fn, what)) {
        TRACE("capture %s on stream %p", what, static_cast<void *>(s));
        return;
    }
    if (s == nullptr && !config().legacyAsync) {
        std::vector<Op> ops;
        ops.push_back(Op{s, std::move(fn), what});
        runOps(ops);
        return;
    }
    TRACE("queue %s on stream %p", what, static_cast<void *>(s));
    pending.push_back(Op{s, std::move(fn), what});
}

void launch(dim3 grid, dim3 block, std::size_t smem, cudaStream_t stream, const void *func, const char *name,
            std::function<void()> fn, bool overlapped)
{
    const unsigned long long nThreads = 1ull * block.x * block.y * block.z;
    const auto limit = maxDynSmem.count(func) ? static_cast<std::size_t>(maxDynSmem[func]) : std::size_t(48 * 1024);
    if (grid.x == 0 || grid.y == 0 || grid.z == 0 || nThreads == 0 || nThreads > 1024 || grid.x > 2147483647u ||
        grid.y > 65535 || grid.z > 65535) {
        TRACE("launch %s: invalid configuration", name);
        fail(cudaErrorInvalidConfiguration);
        return;
    }
    if (smem > limit) {
        TRACE("launch %s: %zu bytes of dynamic shared memory over the limit %zu", name, smem, limit);
        fail(cudaErrorInvalidValue);
        return;
    }
    if (block.y != 1 || block.z != 1)
        fatal("launch %s: 2D/3D blocks are not emulated", name);
    if (nThreads % 32 != 0)
        fatal("launch %s: block size %llu not a multiple of 32 (not emulated)", name, nThreads);
    if (!streamValid(stream))
        fatal("launch %s on an invalid stream", name);
    auto grid_ = grid;
    auto block_ = block;
    enqueue(
        stream, [grid_, block_, smem, overlapped, fn = std::move(fn)] { runGrid(grid_, block_, smem, fn, overlapped); },
        name);
}

// ---------------------------------------------------------------------------------------------
// Memory

namespace {
enum class Kind { Device, Pinned };
struct Alloc
{
    std::size_t size;
    Kind kind;
};
std::map<std::uintptr_t, Alloc> allocs;
std::size_t deviceUsed = 0;

const Alloc *findAlloc(const void *p, std::uintptr_t *base = nullptr)
{
    const auto a = reinterpret_cast<std::uintptr_t>(p);
    auto it = allocs.upper_bound(a);
    if (it == allocs.begin())
        return nullptr;
    --it;
    if (a >= it->first + std::max<std::size_t>(it->second.size, 1))
        return nullptr;
    if (base)
        *base = it->first;
    return &it->second;
}

bool inRange(const void *p, std::size_t bytes, Kind kind)
{
    std::uintptr_t base = 0;
    const Alloc *a = findAlloc(p, &base);
    return a != nullptr && a->kind == kind && reinterpret_cast<std::uintptr_t>(p) + bytes <= base + a->size;
}

bool isPinned(const void *p)
{
    const Alloc *a = findAlloc(p);
    return a != nullptr && a->kind == Kind::Pinned;
}

const char *kindName(cudaMemcpyKind k)
{
    switch (k) {
    case cudaMemcpyHostToHost:
        return "HostToHost";
    case cudaMemcpyHostToDevice:
        return "HostToDevice";
    case cudaMemcpyDeviceToHost:
        return "DeviceToHost";
    case cudaMemcpyDeviceToDevice:
        return "DeviceToDevice";
    default:
        return "Default";
    }
}

// The pointers fit the kind (a mismatch is undefined behaviour on a real GPU: fail loudly).
void checkCopy(const char *api, void *dst, const void *src, std::size_t n, cudaMemcpyKind kind)
{
    const bool dDev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
    const bool sDev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    if (kind == cudaMemcpyDefault)
        fatal("%s: cudaMemcpyDefault is not emulated", api);
    if (n == 0)
        return;
    if (dDev ? !inRange(dst, n, Kind::Device) : isDevicePointer(dst))
        fatal("%s(%s): destination %p (+%zu bytes) is %s", api, kindName(kind), dst, n,
              dDev ? "not inside one device allocation" : "device memory");
    if (sDev ? !inRange(src, n, Kind::Device) : isDevicePointer(src))
        fatal("%s(%s): source %p (+%zu bytes) is %s", api, kindName(kind), src, n,
              sDev ? "not inside one device allocation" : "device memory");
    if (!dDev && isPinned(dst) && !inRange(dst, n, Kind::Pinned))
        fatal("%s: destination overruns its pinned allocation", api);
    if (!sDev && isPinned(src) && !inRange(src, n, Kind::Pinned))
        fatal("%s: source overruns its pinned allocation", api);
}

// A copy whose source is read now (staged) and written when the op runs.
std::function<void()> stagedCopy(void *dst, const void *src, std::size_t n)
{
    auto staged =
        std::make_shared<std::vector<char>>(static_cast<const char *>(src), static_cast<const char *>(src) + n);
    return [dst, staged] { std::memcpy(dst, staged->data(), staged->size()); };
}
} // namespace

bool deviceRange(const void *p, std::size_t bytes)
{
    return inRange(p, bytes, Kind::Device);
}

bool isDevicePointer(const void *p)
{
    const Alloc *a = findAlloc(p);
    return a != nullptr && a->kind == Kind::Device;
}

} // namespace emu

// ---------------------------------------------------------------------------------------------
// The runtime API

using namespace emu;

namespace {
cudaError_t checkDevice(int device)
{
    return device == 0 ? cudaSuccess : fail(cudaErrorInvalidDevice);
}
} // namespace

extern "C" {

cudaError_t cudaGetDeviceCount(int *count)
{
    *count = 1;
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int device)
{
    return checkDevice(device);
}

cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *prop, int device)
{
    if (checkDevice(device) != cudaSuccess)
        return cudaErrorInvalidDevice;
    std::memset(prop, 0, sizeof *prop);
    std::strcpy(prop->name, "Emulated H100");
    prop->major = 9;
    prop->minor = 0;
    prop->multiProcessorCount = 132;
    prop->totalGlobalMem = config().deviceBytes;
    prop->sharedMemPerBlock = 48 * 1024;
    prop->sharedMemPerBlockOptin = config().smemOptIn;
    prop->sharedMemPerMultiprocessor = 228 * 1024;
    prop->warpSize = 32;
    prop->maxThreadsPerBlock = 1024;
    prop->maxThreadsDim[0] = 1024, prop->maxThreadsDim[1] = 1024, prop->maxThreadsDim[2] = 64;
    prop->maxGridSize[0] = 2147483647, prop->maxGridSize[1] = 65535, prop->maxGridSize[2] = 65535;
    prop->unifiedAddressing = 1;
    return cudaSuccess;
}

cudaError_t cudaGetDevice(int *device)
{
    *device = 0;
    return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int *value, enum cudaDeviceAttr attr, int device)
{
    if (checkDevice(device) != cudaSuccess)
        return cudaErrorInvalidDevice;
    switch (attr) {
    case cudaDevAttrMaxSharedMemoryPerBlockOptin:
        *value = static_cast<int>(config().smemOptIn);
        return cudaSuccess;
    case cudaDevAttrComputeCapabilityMajor:
        *value = 9; // as cudaGetDeviceProperties says
        return cudaSuccess;
    case cudaDevAttrComputeCapabilityMinor:
        *value = 0;
        return cudaSuccess;
    default:
        fatal("cudaDeviceGetAttribute(%d): not emulated", static_cast<int>(attr));
    }
}

cudaError_t cudaMemGetInfo(size_t *free, size_t *total)
{
    *total = config().deviceBytes;
    *free = config().deviceBytes - std::min(deviceUsed, config().deviceBytes);
    return cudaSuccess;
}

cudaError_t cudaMalloc(void **p, size_t n)
{
    forbidDuringCapture("cudaMalloc");
    *p = nullptr;
    if (n == 0)
        return cudaSuccess;
    if (deviceUsed + n > config().deviceBytes) {
        TRACE("cudaMalloc(%zu): out of device memory", n);
        return fail(cudaErrorMemoryAllocation);
    }
    void *q = nullptr;
    if (posix_memalign(&q, 256, n) != 0)
        return fail(cudaErrorMemoryAllocation);
    if (config().poison)
        std::memset(q, 0xff, n); // NaN as fp32 and fp16: reading unwritten memory shows
    allocs[reinterpret_cast<std::uintptr_t>(q)] = Alloc{n, Kind::Device};
    deviceUsed += n;
    *p = q;
    TRACE("cudaMalloc(%zu) = %p", n, q);
    return cudaSuccess;
}

cudaError_t cudaFree(void *p)
{
    forbidDuringCapture("cudaFree");
    if (p == nullptr)
        return cudaSuccess;
    flushAll(); // cudaFree synchronizes the device
    auto it = allocs.find(reinterpret_cast<std::uintptr_t>(p));
    if (it == allocs.end() || it->second.kind != Kind::Device)
        fatal("cudaFree(%p): not a live device allocation", p);
    deviceUsed -= it->second.size;
    allocs.erase(it);
    TRACE("cudaFree(%p)", p);
    std::free(p);
    return cudaSuccess;
}

cudaError_t cudaHostAlloc(void **p, size_t n, unsigned int flags)
{
    forbidDuringCapture("cudaHostAlloc");
    (void)flags;
    *p = nullptr;
    void *q = nullptr;
    if (posix_memalign(&q, 4096, std::max<std::size_t>(n, 1)) != 0)
        return fail(cudaErrorMemoryAllocation);
    if (config().poison)
        std::memset(q, 0xfe, n);
    allocs[reinterpret_cast<std::uintptr_t>(q)] = Alloc{n, Kind::Pinned};
    *p = q;
    return cudaSuccess;
}

cudaError_t cudaFreeHost(void *p)
{
    forbidDuringCapture("cudaFreeHost");
    if (p == nullptr)
        return cudaSuccess;
    flushAll(); // synchronizes like cudaFree
    auto it = allocs.find(reinterpret_cast<std::uintptr_t>(p));
    if (it == allocs.end() || it->second.kind != Kind::Pinned)
        fatal("cudaFreeHost(%p): not a live cudaHostAlloc allocation", p);
    allocs.erase(it);
    std::free(p);
    return cudaSuccess;
}

cudaError_t cudaMemset(void *d, int v, size_t n)
{
    forbidDuringCapture("cudaMemset");
    if (n == 0)
        return cudaSuccess;
    if (!deviceRange(d, n))
        fatal("cudaMemset(%p, %zu): not inside one device allocation", d, n);
    // Asynchronous w.r.t. the host for device memory, on the legacy default stream.
    enqueue(
        nullptr, [d, v, n] { std::memset(d, v, n); }, "cudaMemset");
    return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void *d, int v, size_t n, cudaStream_t s)
{
    if (n == 0)
        return cudaSuccess;
    if (!deviceRange(d, n))
        fatal("cudaMemsetAsync(%p, %zu): not inside one device allocation", d, n);
    enqueue(
        s, [d, v, n] { std::memset(d, v, n); }, "cudaMemsetAsync");
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *d, const void *s, size_t n, cudaMemcpyKind kind)
{
    forbidDuringCapture("cudaMemcpy");
    checkCopy("cudaMemcpy", d, s, n, kind);
    if (n == 0)
        return cudaSuccess;
    TRACE("cudaMemcpy %s %zu", kindName(kind), n);
    switch (kind) {
    case cudaMemcpyHostToDevice:
        flushStream(nullptr); // "a stream sync is performed before the copy is initiated"
        if (isPinned(s) || !config().pageableDefer)
            std::memcpy(d, s, n);
        else // returns once staged; the DMA may not have completed
            enqueue(nullptr, stagedCopy(d, s, n), "cudaMemcpy H2D (staged)");
        break;
    case cudaMemcpyDeviceToHost:
        flushStream(nullptr);
        std::memcpy(d, s, n);
        break;
    case cudaMemcpyDeviceToDevice:
        enqueue(
            nullptr, [d, s, n] { std::memcpy(d, s, n); }, "cudaMemcpy D2D");
        break;
    default:
        std::memcpy(d, s, n);
    }
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind kind, cudaStream_t st)
{
    checkCopy("cudaMemcpyAsync", d, s, n, kind);
    if (!streamValid(st))
        fatal("cudaMemcpyAsync on an invalid stream");
    if (n == 0)
        return cudaSuccess;
    if (isCapturing(st) &&
        ((kind == cudaMemcpyHostToDevice && !isPinned(s)) || (kind == cudaMemcpyDeviceToHost && !isPinned(d))))
        fatal("cudaMemcpyAsync %s from or to pageable memory on a stream being captured: not permitted",
              kindName(kind));
    TRACE("cudaMemcpyAsync %s %zu (%s)", kindName(kind), n,
          (kind == cudaMemcpyHostToDevice ? isPinned(s) : isPinned(d)) ? "pinned" : "pageable");
    switch (kind) {
    case cudaMemcpyHostToDevice:
        if (isPinned(s)) // DMA from the host buffer when the stream gets there
            enqueue(
                st, [d, s, n] { std::memcpy(d, s, n); }, "cudaMemcpyAsync H2D pinned");
        else // pageable: staged before the call returns
            enqueue(st, stagedCopy(d, s, n), "cudaMemcpyAsync H2D pageable");
        break;
    case cudaMemcpyDeviceToHost:
        if (isPinned(d))
            enqueue(
                st, [d, s, n] { std::memcpy(d, s, n); }, "cudaMemcpyAsync D2H pinned");
        else { // pageable: returns once the copy has completed
            flushStream(st);
            std::memcpy(d, s, n);
        }
        break;
    case cudaMemcpyDeviceToDevice:
        enqueue(
            st, [d, s, n] { std::memcpy(d, s, n); }, "cudaMemcpyAsync D2D");
        break;
    default:
        flushStream(st);
        std::memcpy(d, s, n);
    }
    return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned int flags)
{
    if (flags != cudaStreamNonBlocking)
        fatal("cudaStreamCreateWithFlags(%u): only non-blocking streams are emulated", flags);
    static std::uintptr_t next = 0x5000;
    *s = reinterpret_cast<cudaStream_t>(next += 0x10);
    liveStreams.insert(*s);
    return cudaSuccess;
}

// Priorities order nothing here (work runs when a stream is synchronized); they are accepted.
cudaError_t cudaDeviceGetStreamPriorityRange(int *leastPriority, int *greatestPriority)
{
    *leastPriority = 0;
    *greatestPriority = -5;
    return cudaSuccess;
}

cudaError_t cudaStreamCreateWithPriority(cudaStream_t *s, unsigned int flags, int priority)
{
    (void)priority;
    return cudaStreamCreateWithFlags(s, flags);
}

// Device and pinned allocations, as the runtime reports them with unified addressing: the device
// pointer of pinned memory is the host pointer.
cudaError_t cudaPointerGetAttributes(cudaPointerAttributes *attributes, const void *p)
{
    *attributes = cudaPointerAttributes{};
    const Alloc *a = findAlloc(p);
    if (a == nullptr) {
        attributes->type = cudaMemoryTypeUnregistered;
        return cudaSuccess;
    }
    attributes->type = a->kind == Kind::Device ? cudaMemoryTypeDevice : cudaMemoryTypeHost;
    attributes->devicePointer = const_cast<void *>(p);
    attributes->hostPointer = a->kind == Kind::Pinned ? const_cast<void *>(p) : nullptr;
    return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t s)
{
    if (canon(s) == nullptr || !liveStreams.count(s))
        fatal("cudaStreamDestroy(%p): not a live stream", static_cast<void *>(s));
    flushStream(s); // queued work still completes
    liveStreams.erase(s);
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t s)
{
    forbidDuringCapture("cudaStreamSynchronize");
    if (!streamValid(s))
        fatal("cudaStreamSynchronize(%p): not a live stream", static_cast<void *>(s));
    flushStream(s);
    return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void)
{
    forbidDuringCapture("cudaDeviceSynchronize");
    flushAll();
    return cudaSuccess;
}

cudaError_t cudaGetLastError(void)
{
    const cudaError_t e = g_lastError;
    g_lastError = cudaSuccess;
    return e;
}

cudaError_t cudaPeekAtLastError(void)
{
    return g_lastError;
}

const char *cudaGetErrorName(cudaError_t e)
{
    switch (e) {
    case cudaSuccess:
        return "cudaSuccess";
    case cudaErrorInvalidValue:
        return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation:
        return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration:
        return "cudaErrorInvalidConfiguration";
    case cudaErrorInsufficientDriver:
        return "cudaErrorInsufficientDriver";
    case cudaErrorNoDevice:
        return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice:
        return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle:
        return "cudaErrorInvalidResourceHandle";
    default:
        return "cudaErrorUnknown(emulated)";
    }
}

const char *cudaGetErrorString(cudaError_t e)
{
    switch (e) {
    case cudaSuccess:
        return "no error";
    case cudaErrorInvalidValue:
        return "invalid argument";
    case cudaErrorMemoryAllocation:
        return "out of memory";
    case cudaErrorInvalidConfiguration:
        return "invalid configuration argument";
    case cudaErrorInsufficientDriver:
        return "CUDA driver version is insufficient for CUDA runtime version";
    case cudaErrorNoDevice:
        return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice:
        return "invalid device ordinal";
    default:
        return "emulated error";
    }
}

// The kernels run as host code, built from sources that take the sm_90 branches of
// `__CUDA_ARCH__ >= 900` checks (there is no __CUDA_ARCH__, and the device functions they call are
// emulated): they report what an sm_90 build would.
cudaError_t cudaFuncGetAttributes(struct cudaFuncAttributes *attr, const void *func)
{
    if (func == nullptr)
        return fail(cudaErrorInvalidDeviceFunction);
    std::memset(attr, 0, sizeof *attr);
    attr->maxThreadsPerBlock = 1024;
    attr->maxDynamicSharedSizeBytes = maxDynSmem.count(func) ? maxDynSmem.at(func) : 48 * 1024;
    attr->ptxVersion = 90;
    attr->binaryVersion = 90;
    return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void *func, cudaFuncAttribute attr, int value)
{
    if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
        if (value < 0 || static_cast<std::size_t>(value) > config().smemOptIn)
            return fail(cudaErrorInvalidValue);
        maxDynSmem[func] = value;
    }
    return cudaSuccess;
}

} // extern "C"
