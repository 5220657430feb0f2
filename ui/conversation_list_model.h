// SPDX-License-Identifier: MIT
// ConversationListModel: the conversations the sidebar lists, most recently used first, each with
// where its KV cache lives now (device / RAM / disk / not cached). It mirrors the engine's
// ConversationList events (setConversations), residency updates (updateResidency) and the
// window's own state: new conversations not stored yet ("drafts", listed first) and which
// conversations are generating.
//
// The conversation name is the key (what every bridge command takes); the title is for display.
// Thread-safety: UI thread only.
#pragma once

#include "app/bridge/engine_bridge.h" // declares the engine metatypes (KvResidency, ...)

#include <QAbstractListModel>

#include <optional>
#include <vector>

namespace kvchat::ui {

struct ConversationRow
{
    QString name;
    QString title;
    QString systemPrompt;
    qint64 id = 0;           // 0 for a draft
    qint64 updatedAtMs = 0;  // Unix epoch ms
    int messageCount = 0;
    engine::KvResidency residency;
    bool draft = false;      // created in the window, not stored until its first message
    bool generating = false; // a reply is being generated in it
};

class ConversationListModel : public QAbstractListModel
{
    Q_OBJECT

public:
    enum Role {
        NameRole = Qt::UserRole + 1, // QString, the key
        TitleRole,                   // QString (also Qt::DisplayRole)
        IdRole,                      // qint64, 0 for a draft
        UpdatedAtRole,               // qint64 epoch ms
        MessageCountRole,            // int
        ResidencyRole,               // engine::KvResidency
        TierRole,                    // int: engine::Tier of slowestTier(), -1 when nothing is cached
        BadgeRole,                   // "device" / "RAM" / "disk" / "not cached" / "new"
        ResidencyToolTipRole,        // "1,984 tokens on device, …" (also Qt::ToolTipRole)
        SubtitleRole,                // "12 messages · 5 min ago"
        DraftRole,                   // bool
        GeneratingRole,              // bool
        SystemPromptRole,            // QString
    };

    explicit ConversationListModel(QObject *parent = nullptr);
    ~ConversationListModel() override;

    int rowCount(const QModelIndex &parent = QModelIndex()) const override;
    QVariant data(const QModelIndex &index, int role = Qt::DisplayRole) const override;
    QHash<int, QByteArray> roleNames() const override;

    // Replaces the stored conversations (drafts not in the list stay first).
    void setConversations(const engine::ConversationList &list);
    void updateResidency(qint64 conversationId, const engine::KvResidency &residency);
    // Adds a new, not yet stored conversation at the top; returns its row.
    int addDraft(const QString &name);
    void removeDraft(const QString &name);
    // The engine stored a draft (its first turn started): it is a conversation like the others now.
    void promoteDraft(const QString &name, qint64 id);
    void setGenerating(const QString &name, bool generating);
    // Shows a new title at once (the engine stores it when its queue gets there).
    void setTitle(const QString &name, const QString &title);

    int rowOf(const QString &name) const; // -1 when absent
    std::optional<ConversationRow> find(const QString &name) const;
    const ConversationRow &row(int row) const { return m_rows.at(static_cast<std::size_t>(row)); }
    // A name for a new conversation, unique among the rows: "Chat 2026-11-27 21:30" (then " (2)", …).
    QString uniqueNewName(const QDateTime &now) const;

private:
    void changed(int row, const QList<int> &roles);

    std::vector<ConversationRow> m_rows;
};

// "5 min ago", "yesterday", "27 Nov".
QString relativeTime(qint64 epochMs, qint64 nowMs);

} // namespace kvchat::ui
