// SPDX-License-Identifier: MIT
// ChatController: the UI-side state of every conversation the window has shown, and the turns in
// flight. It owns one MessageListModel per conversation (by name, the key every bridge command
// takes), routes each turn event from the bridge to its conversation's model by turn id — so a
// reply keeps streaming into its own conversation whatever is shown — and drives the live TTFT
// count (a ~30 ms timer while some reply waits for its first token).
//
// It sends through the bridge and never reads engine state (STYLE.md §2.4).
// Thread-safety: UI thread only.
#pragma once

#include "app/bridge/engine_bridge.h"
#include "ui/message_list_model.h"

#include <QHash>
#include <QObject>
#include <QTimer>

#include <optional>

namespace kvchat::ui {

class ChatController : public QObject
{
    Q_OBJECT

public:
    static constexpr int kLiveTickMs = 30;

    explicit ChatController(bridge::EngineBridge &bridge, QObject *parent = nullptr);
    ~ChatController() override;

    // The model of a conversation (created empty on first use; owned by the controller).
    MessageListModel *model(const QString &conversation);
    MessageListModel *findModel(const QString &conversation) const;
    // Drops a deleted conversation's model (it must have no turn in flight).
    void forget(const QString &conversation);

    // Sends a user message; systemPrompt and title are used only if the conversation does not
    // exist yet.
    engine::TurnId send(const QString &conversation, const QString &text, const std::optional<QString> &systemPrompt,
                        const bridge::GenerationSettings &settings, SteadyTime submitted,
                        const std::optional<QString> &title = std::nullopt);
    // Replaces the conversation from row's message on: new user text (edit) or a new reply (text
    // nullopt: regenerate the assistant message at row).
    engine::TurnId resend(const QString &conversation, int row, const std::optional<QString> &text,
                          const bridge::GenerationSettings &settings, SteadyTime submitted);
    void stop(const QString &conversation);
    // The turn in flight in a conversation, 0 when none.
    engine::TurnId activeTurn(const QString &conversation) const;
    bool isBusy(const QString &conversation) const { return activeTurn(conversation) != 0; }
    bool anyBusy() const { return !m_turns.isEmpty(); }
    bridge::EngineBridge &bridge() const { return m_bridge; }

signals:
    void turnStarted(const QString &conversation, kvchat::engine::TurnId turn);
    void firstTokenShown(const QString &conversation, const kvchat::engine::TurnRecord &record);
    void turnFinished(const QString &conversation, const kvchat::engine::TurnRecord &record);
    // text: what the user had typed for this turn, for the composer (nullopt for a regenerate, and
    // where the engine kept it with a partial reply).
    void turnFailed(const QString &conversation, kvchat::engine::TurnId turn, const std::optional<QString> &text,
                    const QString &message);
    void busyChanged(const QString &conversation, bool busy);
    void conversationLoaded(const QString &conversation);

private:
    struct LiveTurn
    {
        QString conversation;
        std::optional<QString> text;
    };
    engine::TurnId beginTurn(const QString &conversation, engine::TurnId turn, const std::optional<QString> &text,
                             std::optional<int> truncateFrom, SteadyTime submitted);
    void onLoaded(const engine::ConversationLoaded &loaded);
    void onStarted(const engine::TurnStarted &started);
    void onFirstToken(const engine::FirstToken &first);
    void onTokens(quint64 turn, qint64 conversationId, const QString &text);
    void onFinished(const engine::TurnFinished &finished);
    void onFailed(const engine::TurnFailed &failed);
    void onTick();
    MessageListModel *modelOfTurn(engine::TurnId turn) const;

    bridge::EngineBridge &m_bridge;
    QHash<QString, MessageListModel *> m_models;  // children of this object
    QHash<engine::TurnId, LiveTurn> m_turns;      // in flight
    QTimer m_tick;
};

} // namespace kvchat::ui
