// SPDX-License-Identifier: MIT
// MessageDelegate: paints one chat message of a MessageListModel as a bubble — the user's text as
// typed, the assistant's reply rendered from Markdown (code blocks, lists, emphasis) — with a
// footer line: the reply's TTFT ("TTFT 123 ms", counting live while the first token is awaited),
// its decode rate and any note, and the message's actions (Copy, Edit, Regenerate) on hover.
// Hovering the TTFT shows its breakdown.
//
// Each message's MessageDocument is cached by row uid and revision: while a reply streams only the
// tail of its own document is rebuilt, and a new width only re-lays documents out (no re-parse).
// Thread-safety: UI thread only.
#pragma once

#include <QStyledItemDelegate>

#include <memory>
#include <unordered_map>
#include <vector>

class QListView;

namespace kvchat::ui {
class MessageDocument;
}

namespace kvchat::ui {

class MessageDelegate : public QStyledItemDelegate
{
    Q_OBJECT

public:
    enum class Action { Copy, Edit, Regenerate };

    explicit MessageDelegate(QListView *view);
    ~MessageDelegate() override;

    void paint(QPainter *painter, const QStyleOptionViewItem &option, const QModelIndex &index) const override;
    QSize sizeHint(const QStyleOptionViewItem &option, const QModelIndex &index) const override;
    bool editorEvent(QEvent *event, QAbstractItemModel *model, const QStyleOptionViewItem &option,
                     const QModelIndex &index) override;
    bool helpEvent(QHelpEvent *event, QAbstractItemView *view, const QStyleOptionViewItem &option,
                   const QModelIndex &index) override;

    // Forgets every cached document (the view shows another model).
    void clearCache();
    // Where an action of the message at index is drawn, in viewport coordinates (tests click it).
    QRect actionRect(const QModelIndex &index, Action action) const;
    QRect ttftRect(const QModelIndex &index) const;

signals:
    void actionTriggered(const QModelIndex &index, kvchat::ui::MessageDelegate::Action action);

private:
    struct Geometry
    {
        QRect bubble, text, footer, ttft;
        std::vector<std::pair<Action, QRect>> actions;
        int height = 0;
        int maxText = 0; // the width the text is laid out at
    };
    struct CachedDocument
    {
        quint32 revision = 0;
        std::unique_ptr<MessageDocument> document;
    };

    Geometry geometry(const QRect &row, const QModelIndex &index) const;
    MessageDocument *document(const QModelIndex &index, int textWidth) const;
    QFont footerFont() const;

    QListView *m_view;
    mutable std::unordered_map<quint64, CachedDocument> m_documents;
};

} // namespace kvchat::ui
