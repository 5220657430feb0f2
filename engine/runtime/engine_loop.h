// SPDX-License-Identifier: MIT
// The engine thread. One thread owns the model, the backend, the KV cache and the store; other
// threads only submit() commands and receive events through the sink, which is called on the
// engine thread (the app's bridge re-posts them to the UI thread). Nothing here waits on a UI.
//
// Thread-safety: submit() and cancel() may be called from any thread; the constructor and the
// destructor from the owning thread only.
#pragma once

#include "engine/runtime/engine_commands.h"

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

namespace kvchat::engine {

class EngineLoop
{
public:
    using Sink = std::function<void(Event)>;

    // databasePath: the store every model opened by this loop uses. The thread starts at once.
    EngineLoop(std::string databasePath, Sink sink);
    // Shutdown order: stop accepting commands, cancel the running turn, let the thread finish the
    // command it is in (a cancelled turn still commits what it generated), join it, and only then
    // destroy the engine it owned, on this thread, after the thread is gone.
    ~EngineLoop();
    EngineLoop(const EngineLoop &) = delete;
    EngineLoop &operator=(const EngineLoop &) = delete;

    // Queues a command; returns at once. CancelTurn also takes effect immediately on a running turn.
    void submit(Command command);

private:
    void run();
    void handle(OpenModel &command);
    void handle(StartTurn &command);
    void handle(PrefetchConversation &command);
    void handle(CreateConversation &command);
    void handle(RenameConversation &command);
    void handle(DeleteConversation &command);
    void handle(LoadConversation &command);
    void handle(ListConversations &command);
    void handle(SearchConversations &command);
    void handle(ExportToFile &command);
    void handle(CancelTurn &) {} // acted on in submit()
    bool requireEngine(const char *what);
    void serveReadsDuringTurn();
    void publishCacheState(std::optional<std::int64_t> conversationId);

    std::string m_databasePath;
    Sink m_sink;
    std::unique_ptr<ChatEngine> m_engine; // engine thread only

    std::mutex m_mutex; // guards m_queue and m_stopping
    std::condition_variable m_wake;
    std::deque<Command> m_queue;
    bool m_stopping = false;
    std::atomic<TurnId> m_runningTurn{0};
    std::atomic<TurnId> m_cancelledTurn{0};
    std::thread m_thread; // last: starts after every member above exists
};

} // namespace kvchat::engine
