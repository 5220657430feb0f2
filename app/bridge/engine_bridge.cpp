// SPDX-License-Identifier: MIT
#include "app/bridge/engine_bridge.h"

#include <QMetaObject>

namespace kvchat::bridge {

using namespace kvchat::engine;

namespace {
constexpr int kFlushIntervalMs = 16;
} // namespace

EngineBridge::EngineBridge(const QString &databasePath, QObject *parent) : QObject(parent)
{
    m_paceTimer.setSingleShot(true);
    m_paceTimer.setTimerType(Qt::PreciseTimer);
    connect(&m_paceTimer, &QTimer::timeout, this, &EngineBridge::drain);
    m_sinceText.start();
    m_loop = std::make_unique<EngineLoop>(databasePath.toStdString(), [this](Event e) { onEngineEvent(std::move(e)); });
}

EngineBridge::~EngineBridge()
{
    // The loop joins its thread here, before any member it calls back into is destroyed.
    m_loop.reset();
}

void EngineBridge::openModel(const QString &modelPath, const ChatEngineOptions &options)
{
    m_loop->submit(OpenModel{modelPath.toStdString(), options});
}

TurnId EngineBridge::sendMessage(const QString &conversation, const QString &text,
                                 const std::optional<QString> &systemPrompt, const GenerationSettings &settings,
                                 std::chrono::steady_clock::time_point submitted, const std::optional<QString> &title)
{
    StartTurn turn;
    if (systemPrompt)
        turn.systemPrompt = systemPrompt->toStdString();
    if (title)
        turn.title = title->toStdString();
    turn.userText = text.toStdString();
    return startTurn(std::move(turn), conversation, settings, submitted);
}

TurnId EngineBridge::resendFrom(const QString &conversation, std::int32_t fromIndex, const std::optional<QString> &text,
                                const GenerationSettings &settings, std::chrono::steady_clock::time_point submitted)
{
    StartTurn turn;
    turn.truncateFrom = fromIndex;
    if (text)
        turn.userText = text->toStdString();
    return startTurn(std::move(turn), conversation, settings, submitted);
}

TurnId EngineBridge::startTurn(StartTurn turn, const QString &conversation, const GenerationSettings &settings,
                               std::chrono::steady_clock::time_point submitted)
{
    turn.turn = m_nextTurn++;
    turn.conversation = conversation.toStdString();
    turn.maxNewTokens = settings.maxNewTokens;
    turn.sampling = settings.sampling;
    turn.submitted = submitted;
    const TurnId id = turn.turn;
    m_loop->submit(std::move(turn));
    return id;
}

void EngineBridge::cancel(TurnId turn)
{
    m_loop->submit(CancelTurn{turn});
}

void EngineBridge::prefetch(const QString &conversation)
{
    m_loop->submit(PrefetchConversation{conversation.toStdString()});
}

void EngineBridge::createConversation(const QString &conversation, const QString &systemPrompt)
{
    m_loop->submit(CreateConversation{conversation.toStdString(), systemPrompt.toStdString()});
}

void EngineBridge::renameConversation(const QString &conversation, const QString &title)
{
    m_loop->submit(RenameConversation{conversation.toStdString(), title.toStdString()});
}

void EngineBridge::deleteConversation(const QString &conversation)
{
    m_loop->submit(DeleteConversation{conversation.toStdString()});
}

void EngineBridge::loadConversation(const QString &conversation)
{
    m_loop->submit(LoadConversation{conversation.toStdString()});
}

void EngineBridge::refreshConversations()
{
    m_loop->submit(ListConversations{});
}

void EngineBridge::searchConversations(const QString &text)
{
    m_loop->submit(SearchConversations{text.toStdString()});
}

void EngineBridge::exportToFile(ExportKind kind, const QString &conversation, const QString &path)
{
    m_loop->submit(ExportToFile{kind, conversation.toStdString(), path.toStdString()});
}

void EngineBridge::onEngineEvent(Event event)
{
    // Engine thread: queue (merging text into a TokensAppended of the same turn still waiting at
    // the back) and make sure one drain is on its way.
    bool post = false;
    {
        std::lock_guard lock(m_eventsMutex);
        auto *tokens = std::get_if<TokensAppended>(&event);
        auto *last = m_events.empty() ? nullptr : std::get_if<TokensAppended>(&m_events.back());
        if (tokens && last && last->turn == tokens->turn)
            last->text += tokens->text;
        else
            m_events.push_back(std::move(event));
        post = !m_drainScheduled;
        m_drainScheduled = true;
    }
    if (post)
        QMetaObject::invokeMethod(this, &EngineBridge::drain, Qt::QueuedConnection);
}

void EngineBridge::drain()
{
    for (;;) {
        Event next;
        {
            std::lock_guard lock(m_eventsMutex);
            if (m_events.empty()) {
                m_drainScheduled = false;
                return;
            }
            // Text waits until 16 ms after the previous text delivery; what follows it waits too.
            if (std::holds_alternative<TokensAppended>(m_events.front())) {
                const qint64 waited = m_sinceText.elapsed();
                if (waited < kFlushIntervalMs) {
                    m_paceTimer.start(static_cast<int>(kFlushIntervalMs - waited));
                    return; // m_drainScheduled stays true: the timer drains
                }
            }
            next = std::move(m_events.front());
            m_events.pop_front();
        }
        deliver(std::move(next));
    }
}

void EngineBridge::deliver(Event event)
{
    std::visit(
        [this](auto &e) {
            using T = std::decay_t<decltype(e)>;
            if constexpr (std::is_same_v<T, TokensAppended>) {
                m_sinceText.restart();
                emit tokensAppended(e.turn, e.conversationId, QString::fromStdString(e.text));
            } else if constexpr (std::is_same_v<T, ModelLoaded>)
                emit modelLoaded(e.info);
            else if constexpr (std::is_same_v<T, ModelLoadFailed>)
                emit modelLoadFailed(QString::fromStdString(e.path), QString::fromStdString(e.message));
            else if constexpr (std::is_same_v<T, ConversationList>)
                emit conversationsListed(e);
            else if constexpr (std::is_same_v<T, ConversationLoaded>)
                emit conversationLoaded(e);
            else if constexpr (std::is_same_v<T, TurnStarted>)
                emit turnStarted(e);
            else if constexpr (std::is_same_v<T, FirstToken>)
                emit firstToken(e);
            else if constexpr (std::is_same_v<T, TurnFinished>)
                emit turnFinished(e);
            else if constexpr (std::is_same_v<T, TurnFailed>)
                emit turnFailed(e);
            else if constexpr (std::is_same_v<T, CacheStatsChanged>)
                emit cacheStatsChanged(e.stats);
            else if constexpr (std::is_same_v<T, ResidencyChanged>)
                emit residencyChanged(e.conversationId, e.residency);
            else if constexpr (std::is_same_v<T, SearchResults>)
                emit searchResults(QString::fromStdString(e.text),
                                   QList<qint64>(e.conversationIds.begin(), e.conversationIds.end()));
            else if constexpr (std::is_same_v<T, ExportFinished>)
                emit exportFinished(QString::fromStdString(e.path), e.ok, QString::fromStdString(e.message));
            else if constexpr (std::is_same_v<T, EngineError>)
                emit engineError(QString::fromStdString(e.message));
        },
        event);
}

} // namespace kvchat::bridge
