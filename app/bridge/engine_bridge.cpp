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
    m_flushTimer.setSingleShot(true);
    connect(&m_flushTimer, &QTimer::timeout, this, &EngineBridge::flushTokens);
    m_sinceFlush.start();
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
                                 std::chrono::steady_clock::time_point submitted)
{
    StartTurn turn;
    if (systemPrompt)
        turn.systemPrompt = systemPrompt->toStdString();
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
    // Engine thread. Token text is merged into m_pending; one queued flush delivers all of it.
    if (auto *tokens = std::get_if<TokensAppended>(&event)) {
        bool post = false;
        {
            std::lock_guard lock(m_pendingMutex);
            if (!m_pending.empty() && m_pending.back().turn == tokens->turn)
                m_pending.back().text += tokens->text;
            else
                m_pending.push_back({tokens->turn, tokens->conversationId, std::move(tokens->text)});
            post = !m_flushPosted;
            m_flushPosted = true;
        }
        if (post)
            QMetaObject::invokeMethod(this, [this] {
                const qint64 waited = m_sinceFlush.elapsed();
                if (waited >= kFlushIntervalMs)
                    flushTokens();
                else if (!m_flushTimer.isActive())
                    m_flushTimer.start(static_cast<int>(kFlushIntervalMs - waited));
            }, Qt::QueuedConnection);
        return;
    }
    QMetaObject::invokeMethod(this, [this, e = std::move(event)]() mutable { deliver(std::move(e)); },
                              Qt::QueuedConnection);
}

void EngineBridge::flushTokens()
{
    std::vector<PendingText> pending;
    {
        std::lock_guard lock(m_pendingMutex);
        pending.swap(m_pending);
        m_flushPosted = false;
    }
    m_sinceFlush.restart();
    for (PendingText &p : pending)
        emit tokensAppended(p.turn, p.conversationId, QString::fromStdString(p.text));
}

void EngineBridge::deliver(Event event)
{
    // Text still waiting must reach the UI before the event that follows it (e.g. TurnFinished).
    if (!std::holds_alternative<FirstToken>(event))
        flushTokens();
    std::visit(
        [this](auto &e) {
            using T = std::decay_t<decltype(e)>;
            if constexpr (std::is_same_v<T, ModelLoaded>)
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
