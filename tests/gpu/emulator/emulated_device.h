// SPDX-License-Identifier: MIT
// Internal interface of the CUDA emulator (tests/gpu/emulator/README.md): what the emulated runtime
// (emulated_cuda_runtime.cpp) offers the fiber scheduler (emulated_threads.cpp) and the emulated
// cuBLAS (emulated_cublas.cpp). Single-threaded: every function here runs on the test's thread
// (the emulated device has no threads of its own; queued work runs when the host synchronizes).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <functional>

namespace emu {

// The environment switches, read once (see the list at the top of emulated_cuda_runtime.cpp).
struct Config
{
    bool legacyAsync;        // EMU_LEGACY_ASYNC
    bool pageableDefer;      // EMU_PAGEABLE_DEFER
    bool reverse;            // EMU_REVERSE
    bool legacyLast;         // EMU_LEGACY_LAST
    bool poison;             // EMU_POISON
    bool trace;              // EMU_TRACE
    std::size_t deviceBytes; // EMU_DEVICE_BYTES
    std::size_t smemOptIn;   // EMU_SMEM_OPTIN
};
const Config &config();

// Prints "EMU FATAL: ..." and aborts: for API misuse that is undefined behaviour on a real GPU, and
// for CUDA features the emulator does not cover (better a loud stop than a silent wrong answer).
[[noreturn]] void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// Prints "EMU: ..." to stderr.
void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

// Queues fn on stream s (nullptr or cudaStreamLegacy: the legacy default stream); it runs when
// something synchronizes that stream or the device. what names it in traces and errors.
void enqueue(cudaStream_t s, std::function<void()> fn, const char *what);
bool streamValid(cudaStream_t s);
// Runs all queued work of every stream (what cudaDeviceSynchronize does).
void flushAll();
// [p, p + bytes) lies inside one live cudaMalloc allocation.
bool deviceRange(const void *p, std::size_t bytes);
bool isDevicePointer(const void *p);

// Sets the error cudaGetLastError reports next, and returns it.
cudaError_t recordError(cudaError_t e);
// EMU_REFUSE_OVERLAPPED_LAUNCHES=1 now (see emulated_cuda_runtime.cpp).
bool refuseOverlappedLaunches();

// Stream capture (emulated_cuda_graphs.cpp). captureWork: when s is the stream being captured,
// moves fn into the capture and returns true (false: queue it as usual); stops with EMU FATAL for
// legacy-stream work during a capture. forbidDuringCapture: stops with EMU FATAL when a capture is
// open (for calls a GPU does not permit then). isCapturing: s is the stream being captured.
bool captureWork(cudaStream_t s, std::function<void()> &fn, const char *what);
void forbidDuringCapture(const char *api);
bool isCapturing(cudaStream_t s);

// Runs the first queued piece of work of stream s now, out of its turn (for an event wait);
// false when s has none queued.
bool runNextQueued(cudaStream_t s);

// Runs a whole grid now, block after block, one fiber per CUDA thread of the block: fn is the
// kernel call with its arguments bound; smem bytes of dynamic shared memory per block. Only 1-D
// blocks whose size is a multiple of 32 (launch() checks that first). overlapped: the grid was
// launched overlapped (programmatic dependent launch): every thread must call
// cudaGridDependencySynchronize() before it exits, or the run stops with EMU FATAL.
void runGrid(dim3 grid, dim3 block, std::size_t smem, const std::function<void()> &fn, bool overlapped = false);

} // namespace emu
