// SPDX-License-Identifier: MIT
// Events for the CUDA emulator (tests/gpu/emulator/README.md): cudaEventRecord queues a marker on
// its stream, and cudaStreamWaitEvent queues, on the waiting stream, work that first runs the
// recording stream's queued work up to that marker. So a stream that waits on an event sees what
// the other stream did before recording it, and nothing more is ordered: forgetting a wait shows
// as stale (NaN-poisoned) data, as a race would on a GPU. Waiting on an event that was never
// recorded is a no-op, as CUDA documents; cudaEventSynchronize runs the recording stream up to the
// marker (so a pinned host buffer a queued copy reads may be rewritten only after it). Not
// emulated: timing (cudaEventElapsedTime), cudaEventQuery, and events inside a stream capture
// (EMU FATAL).
#include "emulated_device.h"

#include <memory>

struct CUevent_st
{
    std::shared_ptr<bool> reached; // set when the stream runs the last recorded marker
    cudaStream_t stream = nullptr;
};

using namespace emu;

extern "C" {

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned int flags)
{
    (void)flags; // timing is not emulated, so cudaEventDisableTiming changes nothing
    *event = new CUevent_st;
    return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event)
{
    delete event;
    return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream)
{
    if (event == nullptr)
        fatal("cudaEventRecord: null event");
    forbidDuringCapture("cudaEventRecord");
    auto reached = std::make_shared<bool>(false);
    event->reached = reached;
    event->stream = stream;
    enqueue(
        stream, [reached] { *reached = true; }, "cudaEventRecord");
    return cudaSuccess;
}

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags)
{
    (void)flags;
    if (event == nullptr)
        fatal("cudaStreamWaitEvent: null event");
    forbidDuringCapture("cudaStreamWaitEvent");
    if (!event->reached)
        return cudaSuccess; // never recorded: nothing to wait for
    enqueue(
        stream,
        [reached = event->reached, from = event->stream] {
            while (!*reached)
                if (!runNextQueued(from))
                    fatal("cudaStreamWaitEvent: the recording stream has no queued work left, yet its event "
                          "was not reached");
        },
        "cudaStreamWaitEvent");
    return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event)
{
    if (event == nullptr)
        fatal("cudaEventSynchronize: null event");
    forbidDuringCapture("cudaEventSynchronize");
    if (!event->reached)
        return cudaSuccess; // never recorded: complete
    while (!*event->reached)
        if (!runNextQueued(event->stream))
            fatal("cudaEventSynchronize: the recording stream has no queued work left, yet its event was not reached");
    return cudaSuccess;
}

} // extern "C"
