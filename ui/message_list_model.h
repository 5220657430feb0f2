// SPDX-License-Identifier: MIT
// MessageListModel: the messages of ONE conversation as the UI shows them — the stored messages
// (from ConversationLoaded) followed by the rows of the turn in flight, which the engine's events
// fill in: TurnStarted gives the rows their ids, FirstToken the TTFT record, token text grows the
// reply, TurnFinished completes it. The window keeps one model per conversation, so a reply keeps
// streaming into its own conversation while another one is shown.
//
// The model changes only through these calls (the UI never reads engine state, STYLE.md §2.4).
// A turn's rows are always the last rows; a conversation has at most one turn in flight.
// Thread-safety: UI thread only.
#pragma once

#include "engine/runtime/engine_commands.h"

#include <QAbstractListModel>
#include <QString>

#include <chrono>
#include <optional>
#include <vector>

Q_DECLARE_METATYPE(kvchat::engine::TurnRecord)

namespace kvchat::ui {

using SteadyTime = std::chrono::steady_clock::time_point;

// One row of the chat.
struct MessageItem
{
    enum class State {
        Done,      // stored and complete (or cut off; see complete)
        Pending,   // submitted; the engine has not confirmed the turn yet (queued)
        Waiting,   // confirmed (TurnStarted), first token not there yet
        Streaming, // reply text arriving
    };
    quint64 uid = 0;              // unique per row for the life of the model (view caches key on it)
    quint32 revision = 0;         // bumped whenever content changes
    std::int64_t messageId = 0;   // 0 until the engine saved the message
    std::int32_t index = -1;      // position in the stored conversation; -1 until saved
    QString role;                 // "user" or "assistant"
    QString content;
    bool complete = true;         // false: generating, or cut off (e.g. by a crash)
    State state = State::Done;
    engine::TurnId turn = 0;      // the live turn owning the row; 0 for stored rows
    std::optional<engine::TurnRecord> record; // assistant rows: TTFT and its parts
    SteadyTime submitted{};       // live rows: when the user pressed Enter
    std::optional<double> firstTextMs; // live rows: submit → first text here (until FirstToken comes)
    QString stopReason;           // "eos", "max_tokens", "stopped", ...
    QString note;                 // a warning or error shown under the message
};

class MessageListModel : public QAbstractListModel
{
    Q_OBJECT

public:
    enum Role {
        RoleRole = Qt::UserRole + 1, // QString "user" / "assistant"
        ContentRole,                 // QString (also Qt::DisplayRole)
        CompleteRole,                // bool
        StateRole,                   // int (MessageItem::State)
        MessageIdRole,               // qint64, 0 while unsaved
        UidRole,                     // quint64
        RevisionRole,                // quint32
        TtftMsRole,                  // double (engine's value), or invalid when not known yet
        TtftTextRole,                // "TTFT 123 ms", the live "TTFT 412 ms…", or ""
        BreakdownRole,               // rich-text breakdown (also Qt::ToolTipRole), "" without a record
        DecodeRateRole,              // "41.5 tok/s" or ""
        TurnRecordRole,              // engine::TurnRecord (invalid QVariant without one)
        NoteRole,                    // QString
        CanEditRole,                 // bool: a saved user message and no turn in flight
        CanRegenerateRole,           // bool: the last assistant message and no turn in flight
    };

    explicit MessageListModel(const QString &conversation, QObject *parent = nullptr);
    ~MessageListModel() override;

    int rowCount(const QModelIndex &parent = QModelIndex()) const override;
    QVariant data(const QModelIndex &index, int role = Qt::DisplayRole) const override;
    QHash<int, QByteArray> roleNames() const override;

    const QString &conversation() const { return m_conversation; }
    std::int64_t conversationId() const { return m_conversationId; }
    const QString &title() const { return m_title; }
    const QString &systemPrompt() const { return m_systemPrompt; }
    bool isStored() const { return m_conversationId != 0; } // the engine knows this conversation
    const MessageItem &item(int row) const { return m_items.at(static_cast<std::size_t>(row)); }
    engine::TurnId liveTurn() const { return m_liveTurn; }
    // The stored conversation's turn records, oldest first, plus the live turn's once known.
    std::vector<engine::TurnRecord> turnRecords() const;
    int lastAssistantRow() const; // -1 when none

    // Replaces the rows with the stored conversation. A turn in flight keeps its rows after them
    // (the stored snapshot may predate it: commands and events are ordered, so it never postdates).
    void setStored(const engine::ConversationLoaded &loaded);
    void setTitle(const QString &title);

    // --- the turn in flight ---
    // Adds the rows of a new turn: a user row (when text is given) and an assistant row. With
    // truncateFrom, rows from that index on are removed first (edit, regenerate); failTurn puts
    // them back.
    void beginTurn(engine::TurnId turn, const std::optional<QString> &userText, std::optional<int> truncateFrom,
                   SteadyTime submitted);
    void turnStarted(const engine::TurnStarted &started);
    void firstToken(engine::TurnId turn, const engine::TurnRecord &record);
    void appendText(engine::TurnId turn, const QString &text, SteadyTime arrived);
    void finishTurn(const engine::TurnFinished &finished);
    // With replyKept (the engine kept the user's message and a partial reply), marks the reply as
    // cut off by the error; otherwise removes the turn's rows, as the engine removed its messages
    // (and puts back what beginTurn removed until the stored conversation is reloaded).
    void failTurn(engine::TurnId turn, const QString &message, bool replyKept);
    // What a finished reply's footer says about why it ended ("" for the usual reasons).
    static QString stopNote(const QString &stopReason);
    // Refreshes the live TTFT count of rows still waiting for their first token.
    void tick(SteadyTime now);
    bool isWaitingForFirstToken() const;

private:
    int rowOfTurn(engine::TurnId turn, const QString &role) const; // -1 when absent
    MessageItem storedItem(const engine::MessageRecord &message, const engine::TurnRecord *record);
    QString ttftText(const MessageItem &item) const;
    void changed(int row, const QList<int> &roles);
    void setLiveTurn(engine::TurnId turn);

    QString m_conversation;
    QString m_title;
    QString m_systemPrompt;
    std::int64_t m_conversationId = 0;
    std::vector<MessageItem> m_items;
    engine::TurnId m_liveTurn = 0;
    std::optional<int> m_liveTruncateFrom;
    std::vector<MessageItem> m_removedByLiveTurn; // restored when the live turn fails before it starts
    bool m_liveStarted = false;
    quint64 m_nextUid = 1;
    SteadyTime m_lastTick{};
};

} // namespace kvchat::ui
