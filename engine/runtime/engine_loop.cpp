// SPDX-License-Identifier: MIT
#include "engine/runtime/engine_loop.h"

#include "engine/store/conversation_export.h"

#include <cstdio>
#include <exception>
#include <fstream>
#include <map>

namespace kvchat::engine {

EngineLoop::EngineLoop(std::string databasePath, Sink sink)
    : m_databasePath(std::move(databasePath)), m_sink(std::move(sink)), m_thread([this] { run(); })
{
}

EngineLoop::~EngineLoop()
{
    {
        std::lock_guard lock(m_mutex);
        m_stopping = true;
        m_queue.clear();
    }
    m_cancelledTurn.store(m_runningTurn.load());
    m_wake.notify_all();
    m_thread.join();
    m_engine.reset();
}

void EngineLoop::submit(Command command)
{
    if (const auto *cancel = std::get_if<CancelTurn>(&command))
        m_cancelledTurn.store(cancel->turn);
    {
        std::lock_guard lock(m_mutex);
        if (m_stopping)
            return;
        m_queue.push_back(std::move(command));
    }
    m_wake.notify_one();
}

void EngineLoop::run()
{
    for (;;) {
        Command command;
        {
            std::unique_lock lock(m_mutex);
            m_wake.wait(lock, [&] { return m_stopping || !m_queue.empty(); });
            if (m_stopping)
                return;
            command = std::move(m_queue.front());
            m_queue.pop_front();
        }
        // The loop survives anything a command throws: it becomes an EngineError event.
        try {
            std::visit([this](auto &c) { handle(c); }, command);
        } catch (const std::exception &e) {
            m_sink(EngineError{std::string("engine: ") + e.what()});
        } catch (...) {
            m_sink(EngineError{"engine: unknown failure"});
        }
    }
}

void EngineLoop::serveReadsDuringTurn()
{
    // Between two tokens of a reply, answer the commands that only read (opening another
    // conversation, listing, searching, exporting), so switching conversations while a reply
    // streams shows the other conversation at once. Everything else keeps its place in the queue.
    std::vector<Command> reads;
    {
        std::lock_guard lock(m_mutex);
        for (auto it = m_queue.begin(); it != m_queue.end();) {
            if (std::holds_alternative<LoadConversation>(*it) || std::holds_alternative<ListConversations>(*it) ||
                std::holds_alternative<SearchConversations>(*it) || std::holds_alternative<ExportToFile>(*it)) {
                reads.push_back(std::move(*it));
                it = m_queue.erase(it);
            } else {
                ++it;
            }
        }
    }
    for (Command &command : reads) {
        try {
            std::visit([this](auto &c) { handle(c); }, command);
        } catch (const std::exception &e) {
            m_sink(EngineError{std::string("engine: ") + e.what()}); // never into the running turn
        }
    }
}

bool EngineLoop::requireEngine(const char *what)
{
    if (m_engine)
        return true;
    m_sink(EngineError{std::string("no model is loaded (") + what + ")"});
    return false;
}

void EngineLoop::handle(OpenModel &command)
{
    // The new model is opened before the old one is closed, so a file that cannot be used leaves
    // the user with the model they had (weights are memory-mapped; the KV pool fills lazily).
    // The old engine's cache persists and releases first, so both never write the store at once.
    auto engine = ChatEngine::create(command.modelPath, m_databasePath, command.options);
    if (!engine) {
        m_sink(ModelLoadFailed{command.modelPath, engine.error().message});
        return;
    }
    m_engine.reset();
    m_engine = std::move(engine).value();
    const LlamaModel &model = m_engine->model();
    ModelInfo info;
    info.path = command.modelPath;
    info.name = model.config().name;
    info.architecture = model.config().architecture;
    info.chatTemplate = std::string(m_engine->chatTemplate().name());
    info.backend = std::string(m_engine->backend().name());
    info.backendNotice = m_engine->backendNotice();
    info.backendDetail = m_engine->backend().describe();
    info.contextLength = m_engine->contextLimit();
    info.contextNotice = m_engine->contextNotice();
    info.nLayers = model.config().nLayers;
    info.fileBytes = static_cast<std::int64_t>(model.file().fileBytes());
    m_sink(ModelLoaded{info});
    ListConversations list;
    handle(list);
    publishCacheState(std::nullopt);
}

void EngineLoop::handle(StartTurn &command)
{
    if (!m_engine) {
        m_sink(TurnFailed{command.turn, command.conversation, "no model is loaded"});
        return;
    }
    if (m_cancelledTurn.load() == command.turn) {
        m_sink(TurnFailed{command.turn, command.conversation, "cancelled before it started"});
        return;
    }
    m_runningTurn.store(command.turn);
    const TurnId turn = command.turn;
    std::int64_t conversationId = 0;
    TurnRequest request;
    request.conversation = command.conversation;
    request.systemPrompt = command.systemPrompt;
    request.title = command.title;
    request.userText = command.userText;
    request.truncateFrom = command.truncateFrom;
    request.maxNewTokens = command.maxNewTokens;
    request.sampling = command.sampling;
    request.submitted = command.submitted;
    request.onMessagesSaved = [&](const ConversationRecord &conv, const MessageRecord *user, std::int64_t assistantId) {
        conversationId = conv.id;
        TurnStarted started{turn, conv.id, conv.name, std::nullopt, assistantId};
        if (user)
            started.userMessage = *user;
        m_sink(std::move(started));
    };
    request.onFirstToken = [&](const TurnRecord &record) { m_sink(FirstToken{turn, conversationId, record}); };
    // Another process's turn on this database: reads are still answered, and Stop gives up.
    request.whileWaiting = [&] {
        serveReadsDuringTurn();
        return m_cancelledTurn.load() != turn;
    };
    bool replied = false;
    request.onText = [&](std::string_view text) {
        replied = replied || !text.empty();
        m_sink(TokensAppended{turn, conversationId, std::string(text)});
        serveReadsDuringTurn();
        return m_cancelledTurn.load() != turn;
    };
    auto result = m_engine->runTurn(request);
    m_runningTurn.store(0);
    if (!result) {
        m_sink(TurnFailed{turn, command.conversation, result.error().message, replied});
        // The turn may have left messages (a partial reply) or removed them again: counts change.
        ListConversations list;
        handle(list);
        return;
    }
    m_sink(TurnFinished{turn, result->conversationId, result->reply, result->record,
                        std::string(stopReasonName(result->stopReason)), result->warning});
    publishCacheState(result->conversationId);
    // Other conversations' KV may have moved down a tier to make room.
    ListConversations list;
    handle(list);
}

void EngineLoop::handle(PrefetchConversation &command)
{
    if (!m_engine)
        return; // nothing to warm up yet
    auto report = m_engine->prefetch(command.conversation);
    if (!report) {
        m_sink(EngineError{report.error().message});
        return;
    }
    auto found = m_engine->store().findConversation(command.conversation);
    publishCacheState(found.ok() && found->has_value() ? std::optional<std::int64_t>((*found)->id) : std::nullopt);
}

void EngineLoop::handle(CreateConversation &command)
{
    if (!requireEngine("creating a conversation"))
        return;
    auto created = m_engine->store().createConversation(command.conversation, command.systemPrompt);
    if (!created)
        m_sink(EngineError{created.error().message});
    ListConversations list;
    handle(list);
}

void EngineLoop::handle(RenameConversation &command)
{
    if (!requireEngine("renaming a conversation"))
        return;
    auto found = m_engine->store().findConversation(command.conversation);
    if (found.ok() && found->has_value()) {
        if (auto ok = m_engine->store().renameConversation((*found)->id, command.title); !ok)
            m_sink(EngineError{ok.error().message});
    }
    ListConversations list;
    handle(list);
}

void EngineLoop::handle(DeleteConversation &command)
{
    if (!requireEngine("deleting a conversation"))
        return;
    auto found = m_engine->store().findConversation(command.conversation);
    if (found.ok() && found->has_value()) {
        if (auto ok = m_engine->deleteConversation(command.conversation); !ok)
            m_sink(EngineError{ok.error().message});
    }
    ListConversations list;
    handle(list);
}

void EngineLoop::handle(LoadConversation &command)
{
    if (!requireEngine("opening a conversation"))
        return;
    SessionStore &store = m_engine->store();
    auto found = store.findConversation(command.conversation);
    if (!found || !found->has_value()) {
        m_sink(EngineError{found ? "no conversation named '" + command.conversation + "'" : found.error().message});
        return;
    }
    ConversationLoaded loaded;
    loaded.record = **found;
    auto messages = store.messages(loaded.record.id);
    auto turns = store.turns(loaded.record.id);
    if (!messages || !turns) {
        m_sink(EngineError{!messages ? messages.error().message : turns.error().message});
        return;
    }
    loaded.messages = std::move(messages).value();
    loaded.turns = std::move(turns).value();
    m_sink(std::move(loaded));
}

void EngineLoop::handle(ListConversations &)
{
    if (!m_engine)
        return;
    SessionStore &store = m_engine->store();
    auto records = store.listConversations();
    if (!records) {
        m_sink(EngineError{records.error().message});
        return;
    }
    ConversationList list;
    for (ConversationRecord &record : *records) {
        ConversationSummary summary;
        auto messages = store.messages(record.id);
        summary.messageCount = messages ? static_cast<std::int32_t>(messages->size()) : 0;
        auto residency = m_engine->residency(record.id);
        if (residency)
            summary.residency = *residency;
        summary.record = std::move(record);
        list.conversations.push_back(std::move(summary));
    }
    m_sink(std::move(list));
}

void EngineLoop::handle(SearchConversations &command)
{
    if (!requireEngine("searching"))
        return;
    auto ids = m_engine->store().searchConversations(command.text);
    if (!ids) {
        m_sink(EngineError{ids.error().message});
        return;
    }
    m_sink(SearchResults{command.text, std::move(ids).value()});
}

namespace {

// Writes next to the target and renames over it, so a failed export never leaves half a file.
bool writeFileAtomically(const std::string &path, const std::string &content, std::string &error)
{
    const std::string temporary = path + ".part";
    {
        std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
        if (!out) {
            error = "cannot write " + temporary;
            return false;
        }
        out.write(content.data(), static_cast<std::streamsize>(content.size()));
        out.flush();
        if (!out) {
            error = "writing " + temporary + " failed (disk full?)";
            std::remove(temporary.c_str());
            return false;
        }
    }
    if (std::rename(temporary.c_str(), path.c_str()) != 0) {
        error = "cannot replace " + path;
        std::remove(temporary.c_str());
        return false;
    }
    return true;
}

} // namespace

void EngineLoop::handle(ExportToFile &command)
{
    if (!requireEngine("exporting"))
        return;
    SessionStore &store = m_engine->store();
    std::string content, error;
    std::optional<ConversationRecord> conversation;
    if (!command.conversation.empty()) {
        auto found = store.findConversation(command.conversation);
        if (!found || !found->has_value()) {
            m_sink(ExportFinished{command.path, false, "no conversation named '" + command.conversation + "'"});
            return;
        }
        conversation = **found;
    }
    if (command.kind == ExportKind::ConversationMarkdown || command.kind == ExportKind::ConversationJson) {
        if (!conversation) {
            m_sink(ExportFinished{command.path, false, "no conversation chosen to export"});
            return;
        }
        auto messages = store.messages(conversation->id);
        auto turns = store.turns(conversation->id);
        if (!messages || !turns) {
            m_sink(ExportFinished{command.path, false, !messages ? messages.error().message : turns.error().message});
            return;
        }
        content = command.kind == ExportKind::ConversationMarkdown ? conversationMarkdown(*conversation, *messages)
                                                                   : conversationJson(*conversation, *messages, *turns);
    } else {
        auto turns = store.turns(conversation ? std::optional<std::int64_t>(conversation->id) : std::nullopt);
        auto all = store.listConversations();
        if (!turns || !all) {
            m_sink(ExportFinished{command.path, false, !turns ? turns.error().message : all.error().message});
            return;
        }
        std::map<std::int64_t, std::string> names;
        for (const ConversationRecord &c : *all)
            names[c.id] = c.name;
        content = command.kind == ExportKind::LatencyCsv ? latencyCsv(*turns, names) : latencyJson(*turns, names);
    }
    const bool ok = writeFileAtomically(command.path, content, error);
    m_sink(ExportFinished{command.path, ok, error});
}

void EngineLoop::publishCacheState(std::optional<std::int64_t> conversationId)
{
    if (!m_engine)
        return;
    m_sink(CacheStatsChanged{m_engine->cacheStats()});
    if (conversationId) {
        auto residency = m_engine->residency(*conversationId);
        if (residency)
            m_sink(ResidencyChanged{*conversationId, *residency});
    }
}

} // namespace kvchat::engine
