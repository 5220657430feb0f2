// SPDX-License-Identifier: MIT
// Stream capture and CUDA graphs for the CUDA emulator (tests/gpu/emulator/README.md).
//
// A capture records the work queued on the capturing stream (kernels with their arguments bound,
// GEMMs, device-to-device and pinned copies) instead of running it; a graph is that list, an
// instantiated graph a copy of it, and a launch queues the whole list on a stream as one piece of
// work. cudaGraphExecUpdate succeeds when the new graph has the same nodes in the same order (by
// kind and kernel name) and swaps in their arguments, as on a GPU; otherwise it fails with
// cudaErrorGraphExecUpdateFailure and the caller instantiates again.
//
// While a capture is open, what would break it on a GPU stops with EMU FATAL (emulated_device.h's
// forbidDuringCapture): synchronous calls (cudaMemcpy, cudaMalloc, cudaFree, cudaHostAlloc,
// cudaFreeHost, cudaMemset, cudaDeviceSynchronize, synchronizing the capturing stream), work on
// the legacy default stream, and copies from or to pageable memory on the capturing stream.
// One capture at a time, on one thread: what kvchat does.
#include "emulated_device.h"

#include <cstdio>
#include <string>
#include <vector>

struct CUgraph_st
{
    struct Node
    {
        std::function<void()> fn;
        std::string what;
    };
    std::vector<Node> nodes;
};

struct CUgraphExec_st
{
    std::vector<CUgraph_st::Node> nodes;
};

namespace emu {

namespace {
cudaStream_t g_capturing = nullptr;
CUgraph_st *g_capture = nullptr;

bool sameTopology(const CUgraph_st &a, const CUgraphExec_st &b)
{
    if (a.nodes.size() != b.nodes.size())
        return false;
    for (std::size_t i = 0; i < a.nodes.size(); ++i)
        if (a.nodes[i].what != b.nodes[i].what)
            return false;
    return true;
}
} // namespace

bool captureWork(cudaStream_t s, std::function<void()> &fn, const char *what)
{
    if (g_capture == nullptr)
        return false;
    if (s == nullptr)
        fatal("%s on the legacy default stream while stream %p is being captured (this invalidates the capture)", what,
              static_cast<void *>(g_capturing));
    if (s != g_capturing)
        return false; // another stream's work runs as usual
    g_capture->nodes.push_back(CUgraph_st::Node{std::move(fn), what});
    return true;
}

void forbidDuringCapture(const char *api)
{
    if (g_capture != nullptr)
        fatal("%s while stream %p is being captured: not permitted during stream capture", api,
              static_cast<void *>(g_capturing));
}

bool isCapturing(cudaStream_t s)
{
    return g_capture != nullptr && s == g_capturing;
}

} // namespace emu

using namespace emu;

extern "C" {

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, enum cudaStreamCaptureMode mode)
{
    (void)mode;
    if (stream == nullptr || stream == cudaStreamLegacy || !streamValid(stream))
        fatal("cudaStreamBeginCapture(%p): only a live non-blocking stream can be captured",
              static_cast<void *>(stream));
    if (g_capture != nullptr)
        fatal("cudaStreamBeginCapture: a capture is already open (one at a time is emulated)");
    g_capturing = stream;
    g_capture = new CUgraph_st;
    return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t *pGraph)
{
    if (g_capture == nullptr || stream != g_capturing)
        fatal("cudaStreamEndCapture(%p): that stream is not being captured", static_cast<void *>(stream));
    *pGraph = g_capture;
    g_capture = nullptr;
    g_capturing = nullptr;
    return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *pGraphExec, cudaGraph_t graph, unsigned long long flags)
{
    (void)flags;
    if (graph == nullptr)
        fatal("cudaGraphInstantiate: null graph");
    *pGraphExec = new CUgraphExec_st{graph->nodes};
    return cudaSuccess;
}

cudaError_t cudaGraphExecUpdate(cudaGraphExec_t hGraphExec, cudaGraph_t hGraph,
                                cudaGraphExecUpdateResultInfo *resultInfo)
{
    if (hGraphExec == nullptr || hGraph == nullptr)
        fatal("cudaGraphExecUpdate: null graph or executable graph");
    if (!sameTopology(*hGraph, *hGraphExec)) {
        if (resultInfo != nullptr)
            resultInfo->result = cudaGraphExecUpdateErrorTopologyChanged;
        if (config().trace)
            note("cudaGraphExecUpdate: topology changed (%zu -> %zu nodes)", hGraphExec->nodes.size(),
                 hGraph->nodes.size());
        return recordError(cudaErrorGraphExecUpdateFailure); // the last error too, as on a GPU
    }
    hGraphExec->nodes = hGraph->nodes;
    if (resultInfo != nullptr)
        resultInfo->result = cudaGraphExecUpdateSuccess;
    return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t graphExec, cudaStream_t stream)
{
    if (graphExec == nullptr)
        fatal("cudaGraphLaunch: null executable graph");
    forbidDuringCapture("cudaGraphLaunch");
    // The executable graph may be updated or destroyed before the stream gets here; the launch
    // runs the nodes it had when it was issued, as on a GPU.
    enqueue(
        stream,
        [nodes = graphExec->nodes] {
            for (const CUgraph_st::Node &node : nodes)
                node.fn();
        },
        "cudaGraphLaunch");
    return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t graphExec)
{
    delete graphExec;
    return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph)
{
    delete graph;
    return cudaSuccess;
}

} // extern "C"
