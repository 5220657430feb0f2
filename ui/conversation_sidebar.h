// SPDX-License-Identifier: MIT
// ConversationSidebar: the conversation list (most recently used first; each row a title, a
// subtitle and a coloured chip saying where its KV cache lives, with the token counts per tier on
// hover), a search field and a New button.
//
// Search filters titles locally at once, and after a short pause asks the engine for conversations
// whose messages match (searchRequested → setSearchResults). Selecting a row emits
// conversationSelected; a model reset keeps the selected conversation selected without emitting.
// Thread-safety: UI thread only.
#pragma once

#include <QSet>
#include <QSortFilterProxyModel>
#include <QTimer>
#include <QWidget>

class QLabel;
class QLineEdit;
class QListView;
class QPushButton;

namespace kvchat::ui {

class ConversationListModel;

// Keeps rows whose title or name contains the text, or that the engine's search matched.
class ConversationFilter : public QSortFilterProxyModel
{
    Q_OBJECT

public:
    using QSortFilterProxyModel::QSortFilterProxyModel;
    void setText(const QString &text);
    void setMatches(const QSet<qint64> &ids);
    const QString &text() const { return m_text; }

protected:
    bool filterAcceptsRow(int sourceRow, const QModelIndex &sourceParent) const override;

private:
    QString m_text;
    QSet<qint64> m_matches;
};

class ConversationSidebar : public QWidget
{
    Q_OBJECT

public:
    static constexpr int kSearchDelayMs = 250;

    explicit ConversationSidebar(ConversationListModel *model, QWidget *parent = nullptr);
    ~ConversationSidebar() override;

    // Selects the conversation (no conversationSelected signal); clears a filter that hides it.
    void select(const QString &name);
    QString currentName() const { return m_current; }
    void focusSearch();
    void setSearchResults(const QString &text, const QList<qint64> &ids);

    QLineEdit *searchField() const { return m_search; }
    QListView *listView() const { return m_list; }
    ConversationFilter *filter() const { return m_filter; }
    QLabel *noMatchesLabel() const { return m_noMatches; }

signals:
    void conversationSelected(const QString &name);
    void newRequested();
    void renameRequested(const QString &name);
    void deleteRequested(const QString &name);
    void searchRequested(const QString &text);

private:
    void onCurrentChanged(const QModelIndex &current);
    void restoreSelection();
    void showContextMenu(const QPoint &pos);
    // "No conversation matches": shown once the engine's message search answered the query and
    // nothing is left in the list.
    void updateNoMatches();

    ConversationListModel *m_model;
    ConversationFilter *m_filter = nullptr;
    QLineEdit *m_search = nullptr;
    QListView *m_list = nullptr;
    QLabel *m_noMatches = nullptr;
    QString m_answeredQuery; // the last query the engine's search answered
    QPushButton *m_new = nullptr;
    QTimer m_searchDelay;
    QString m_current;
    bool m_restoring = false;
};

} // namespace kvchat::ui
