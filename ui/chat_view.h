// SPDX-License-Identifier: MIT
// ChatView: the messages of the shown conversation (a MessageListModel) in a list view painted by
// MessageDelegate, with an empty-state hint when there is nothing yet.
//
// Smooth streaming: token text arrives at most every 16 ms (the bridge merges it); only the last
// message's document is rebuilt, and the view follows the tail only while the user has not
// scrolled up (scrolling back to the bottom resumes it).
// Per-message actions (the delegate's links and a context menu): Copy (clipboard), Edit (user
// messages; the window puts the text into the composer) and Regenerate (the last reply).
// Thread-safety: UI thread only.
#pragma once

#include <QWidget>

class QLabel;
class QListView;
class QStackedLayout;

namespace kvchat::ui {

class MessageDelegate;
class MessageListModel;

class ChatView : public QWidget
{
    Q_OBJECT

public:
    explicit ChatView(QWidget *parent = nullptr);
    ~ChatView() override;

    // Shows model (not owned; may be null). The view follows the tail of the new model.
    void setModel(MessageListModel *model);
    MessageListModel *model() const { return m_model; }
    // Text shown while the model has no rows (rich text).
    void setEmptyText(const QString &text);

    QListView *listView() const { return m_list; }
    MessageDelegate *delegate() const { return m_delegate; }
    // Whether new text scrolls the view (the user has not scrolled up).
    bool isFollowingTail() const { return m_followTail; }
    void scrollToBottom();

    void copyMessage(int row);

signals:
    void editRequested(int row);
    void regenerateRequested(int row);
    void statusMessage(const QString &text);

private:
    void onContentChanged(const QModelIndex &topLeft, const QModelIndex &bottomRight, const QList<int> &roles);
    void sampleFollow();
    void updateEmptyState();
    void showContextMenu(const QPoint &pos);

    MessageListModel *m_model = nullptr;
    QListView *m_list = nullptr;
    MessageDelegate *m_delegate = nullptr;
    QLabel *m_empty = nullptr;
    QStackedLayout *m_stack = nullptr;
    bool m_followTail = true;
};

} // namespace kvchat::ui
