// SPDX-License-Identifier: MIT
#include "ui/chat_controller.h"

namespace kvchat::ui {

ChatController::ChatController(bridge::EngineBridge &bridge, QObject *parent) : QObject(parent), m_bridge(bridge)
{
    m_tick.setInterval(kLiveTickMs);
    connect(&m_tick, &QTimer::timeout, this, &ChatController::onTick);
    connect(&bridge, &bridge::EngineBridge::conversationLoaded, this, &ChatController::onLoaded);
    connect(&bridge, &bridge::EngineBridge::turnStarted, this, &ChatController::onStarted);
    connect(&bridge, &bridge::EngineBridge::firstToken, this, &ChatController::onFirstToken);
    connect(&bridge, &bridge::EngineBridge::tokensAppended, this, &ChatController::onTokens);
    connect(&bridge, &bridge::EngineBridge::turnFinished, this, &ChatController::onFinished);
    connect(&bridge, &bridge::EngineBridge::turnFailed, this, &ChatController::onFailed);
}

ChatController::~ChatController() = default;

MessageListModel *ChatController::model(const QString &conversation)
{
    MessageListModel *&model = m_models[conversation];
    if (!model)
        model = new MessageListModel(conversation, this);
    return model;
}

MessageListModel *ChatController::findModel(const QString &conversation) const
{
    return m_models.value(conversation, nullptr);
}

void ChatController::forget(const QString &conversation)
{
    if (isBusy(conversation))
        return;
    if (MessageListModel *model = m_models.take(conversation))
        model->deleteLater();
}

engine::TurnId ChatController::send(const QString &conversation, const QString &text,
                                    const std::optional<QString> &systemPrompt,
                                    const bridge::GenerationSettings &settings, SteadyTime submitted,
                                    const std::optional<QString> &title)
{
    if (isBusy(conversation))
        return 0;
    const engine::TurnId turn = m_bridge.sendMessage(conversation, text, systemPrompt, settings, submitted, title);
    return beginTurn(conversation, turn, text, std::nullopt, submitted);
}

engine::TurnId ChatController::resend(const QString &conversation, int row, const std::optional<QString> &text,
                                      const bridge::GenerationSettings &settings, SteadyTime submitted)
{
    MessageListModel *m = findModel(conversation);
    if (isBusy(conversation) || !m || row < 0 || row >= m->rowCount())
        return 0;
    const MessageItem &item = m->item(row);
    if (item.index < 0 || (text && item.role != QLatin1String("user")) ||
        (!text && item.role != QLatin1String("assistant")))
        return 0;
    const int index = item.index;
    const engine::TurnId turn = m_bridge.resendFrom(conversation, index, text, settings, submitted);
    return beginTurn(conversation, turn, text, index, submitted);
}

engine::TurnId ChatController::beginTurn(const QString &conversation, engine::TurnId turn,
                                         const std::optional<QString> &text, std::optional<int> truncateFrom,
                                         SteadyTime submitted)
{
    m_turns.insert(turn, {conversation, text});
    model(conversation)->beginTurn(turn, text, truncateFrom, submitted);
    if (!m_tick.isActive())
        m_tick.start();
    emit busyChanged(conversation, true);
    return turn;
}

void ChatController::stop(const QString &conversation)
{
    if (const engine::TurnId turn = activeTurn(conversation))
        m_bridge.cancel(turn);
}

engine::TurnId ChatController::activeTurn(const QString &conversation) const
{
    for (auto it = m_turns.cbegin(); it != m_turns.cend(); ++it)
        if (it->conversation == conversation)
            return it.key();
    return 0;
}

MessageListModel *ChatController::modelOfTurn(engine::TurnId turn) const
{
    auto it = m_turns.find(turn);
    return it == m_turns.end() ? nullptr : findModel(it->conversation);
}

void ChatController::onLoaded(const engine::ConversationLoaded &loaded)
{
    const QString name = QString::fromStdString(loaded.record.name);
    model(name)->setStored(loaded);
    emit conversationLoaded(name);
}

void ChatController::onStarted(const engine::TurnStarted &started)
{
    if (MessageListModel *m = modelOfTurn(started.turn)) {
        m->turnStarted(started);
        emit turnStarted(m->conversation(), started.turn);
    }
}

void ChatController::onFirstToken(const engine::FirstToken &first)
{
    if (MessageListModel *m = modelOfTurn(first.turn)) {
        m->firstToken(first.turn, first.record);
        emit firstTokenShown(m->conversation(), first.record);
    }
}

void ChatController::onTokens(quint64 turn, qint64, const QString &text)
{
    // Stamp the arrival first: it is the UI-side end of the TTFT (shown until FirstToken lands).
    const SteadyTime arrived = std::chrono::steady_clock::now();
    if (MessageListModel *m = modelOfTurn(turn))
        m->appendText(turn, text, arrived);
}

void ChatController::onFinished(const engine::TurnFinished &finished)
{
    MessageListModel *m = modelOfTurn(finished.turn);
    const LiveTurn live = m_turns.take(finished.turn);
    if (!m)
        return;
    m->finishTurn(finished);
    emit turnFinished(live.conversation, finished.record);
    emit busyChanged(live.conversation, false);
}

void ChatController::onFailed(const engine::TurnFailed &failed)
{
    MessageListModel *m = modelOfTurn(failed.turn);
    if (!m_turns.contains(failed.turn))
        return;
    const LiveTurn live = m_turns.take(failed.turn);
    const QString message = QString::fromStdString(failed.message);
    if (m) {
        m->failTurn(failed.turn, message, failed.replyKept);
        // The engine may have changed the stored conversation before failing (an edit truncates
        // first): show what it holds now.
        if (m->isStored())
            m_bridge.loadConversation(live.conversation);
    }
    // The text goes back to the user only where the engine did not keep it.
    emit turnFailed(live.conversation, failed.turn, failed.replyKept ? std::nullopt : live.text, message);
    emit busyChanged(live.conversation, false);
}

void ChatController::onTick()
{
    bool waiting = false;
    const SteadyTime now = std::chrono::steady_clock::now();
    for (auto it = m_turns.cbegin(); it != m_turns.cend(); ++it) {
        if (MessageListModel *m = findModel(it->conversation); m && m->isWaitingForFirstToken()) {
            m->tick(now);
            waiting = true;
        }
    }
    if (!waiting)
        m_tick.stop();
}

} // namespace kvchat::ui
