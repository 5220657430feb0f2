// SPDX-License-Identifier: MIT
// The thin Qt adapter between the UI and the engine thread. The UI calls the command methods (they
// return at once) and listens to the signals, which are always delivered on the UI thread (queued
// from the engine thread). Token text is merged and delivered at most every 16 ms, so a fast
// reply does not flood the event loop with repaints.
//
// Thread-safety: create, call and destroy on the UI thread only.
#pragma once

#include "engine/runtime/engine_loop.h"

#include <QElapsedTimer>
#include <QObject>
#include <QString>
#include <QTimer>

#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>

Q_DECLARE_METATYPE(kvchat::engine::ModelInfo)
Q_DECLARE_METATYPE(kvchat::engine::ConversationList)
Q_DECLARE_METATYPE(kvchat::engine::ConversationLoaded)
Q_DECLARE_METATYPE(kvchat::engine::TurnStarted)
Q_DECLARE_METATYPE(kvchat::engine::FirstToken)
Q_DECLARE_METATYPE(kvchat::engine::TurnFinished)
Q_DECLARE_METATYPE(kvchat::engine::TurnFailed)
Q_DECLARE_METATYPE(kvchat::engine::KvCacheStats)
Q_DECLARE_METATYPE(kvchat::engine::KvResidency)

namespace kvchat::bridge {

// Sampling and length settings for one turn, as the UI's settings hold them.
struct GenerationSettings
{
    engine::SamplingParams sampling;
    std::int32_t maxNewTokens = 512;
};

class EngineBridge : public QObject
{
    Q_OBJECT

public:
    // The engine thread starts at once, with no model; openModel() loads one.
    explicit EngineBridge(const QString &databasePath, QObject *parent = nullptr);
    // Stops the engine thread (a running reply is cancelled and what it generated is saved).
    ~EngineBridge() override;

    void openModel(const QString &modelPath, const engine::ChatEngineOptions &options);
    // Sends a user message; submitted is when the user pressed Enter (TTFT counts from there).
    // systemPrompt and title are used only if the conversation does not exist yet. Returns the
    // turn id that the turn's signals carry.
    engine::TurnId sendMessage(const QString &conversation, const QString &text,
                               const std::optional<QString> &systemPrompt, const GenerationSettings &settings,
                               std::chrono::steady_clock::time_point submitted,
                               const std::optional<QString> &title = std::nullopt);
    // Replaces the conversation from message index fromIndex on: with new user text (edit), or
    // with a new reply to the user message before it (regenerate, text = nullopt).
    engine::TurnId resendFrom(const QString &conversation, std::int32_t fromIndex, const std::optional<QString> &text,
                              const GenerationSettings &settings, std::chrono::steady_clock::time_point submitted);
    void cancel(engine::TurnId turn);
    void prefetch(const QString &conversation);
    void createConversation(const QString &conversation, const QString &systemPrompt);
    void renameConversation(const QString &conversation, const QString &title);
    void deleteConversation(const QString &conversation);
    void loadConversation(const QString &conversation);
    void refreshConversations();
    void searchConversations(const QString &text);
    // conversation "" with a latency kind exports every conversation's turns.
    void exportToFile(engine::ExportKind kind, const QString &conversation, const QString &path);

signals:
    void modelLoaded(const kvchat::engine::ModelInfo &info);
    void modelLoadFailed(const QString &path, const QString &message);
    void conversationsListed(const kvchat::engine::ConversationList &list);
    void conversationLoaded(const kvchat::engine::ConversationLoaded &conversation);
    void turnStarted(const kvchat::engine::TurnStarted &started);
    void firstToken(const kvchat::engine::FirstToken &first);
    // Text of one turn merged since the last delivery (in order; never split inside a character).
    void tokensAppended(quint64 turn, qint64 conversationId, const QString &text);
    void turnFinished(const kvchat::engine::TurnFinished &finished);
    void turnFailed(const kvchat::engine::TurnFailed &failed);
    void cacheStatsChanged(const kvchat::engine::KvCacheStats &stats);
    void residencyChanged(qint64 conversationId, const kvchat::engine::KvResidency &residency);
    void searchResults(const QString &text, const QList<qint64> &conversationIds);
    void exportFinished(const QString &path, bool ok, const QString &message);
    void engineError(const QString &message);

private:
    engine::TurnId startTurn(engine::StartTurn turn, const QString &conversation, const GenerationSettings &settings,
                             std::chrono::steady_clock::time_point submitted);
    void onEngineEvent(engine::Event event); // engine thread
    void drain();                            // UI thread: delivers queued events in order
    void deliver(engine::Event event);       // UI thread

    // Events in the order the engine produced them; consecutive text of one turn is merged into
    // one TokensAppended. One queue keeps the order (a turn's text never overtakes its
    // TurnStarted, nor the next turn's events its TurnFinished).
    std::mutex m_eventsMutex;            // guards m_events and m_drainScheduled
    std::deque<engine::Event> m_events;
    bool m_drainScheduled = false;       // a drain is posted or the pacing timer runs
    QTimer m_paceTimer;                  // spaces text deliveries at least 16 ms apart
    QElapsedTimer m_sinceText;
    engine::TurnId m_nextTurn = 1;
    std::unique_ptr<engine::EngineLoop> m_loop; // last: its thread may call onEngineEvent at once
};

} // namespace kvchat::bridge
