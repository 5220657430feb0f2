// SPDX-License-Identifier: MIT
#include "ui/chat_view.h"

#include "ui/message_delegate.h"
#include "ui/message_list_model.h"
#include "ui/ttft_format.h"

#include <QApplication>
#include <QClipboard>
#include <QLabel>
#include <QListView>
#include <QMenu>
#include <QScrollBar>
#include <QStackedLayout>

namespace kvchat::ui {

namespace {
constexpr int kTailSlackPx = 24; // this close to the bottom counts as "at the bottom"
}

ChatView::ChatView(QWidget *parent) : QWidget(parent)
{
    m_list = new QListView(this);
    m_list->setObjectName(QStringLiteral("messageList"));
    m_list->setSelectionMode(QAbstractItemView::NoSelection);
    m_list->setFocusPolicy(Qt::NoFocus);
    m_list->setVerticalScrollMode(QAbstractItemView::ScrollPerPixel);
    m_list->setHorizontalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
    m_list->setVerticalScrollBarPolicy(Qt::ScrollBarAlwaysOn);
    m_list->setResizeMode(QListView::Adjust);
    m_list->setUniformItemSizes(false);
    m_list->setMouseTracking(true);
    m_list->setFrameShape(QFrame::NoFrame);
    m_list->setContextMenuPolicy(Qt::CustomContextMenu);
    m_list->verticalScrollBar()->setSingleStep(24);
    QFont font = m_list->font();
    font.setPointSizeF(font.pointSizeF() * 1.08);
    m_list->setFont(font);
    m_list->setStyleSheet(QStringLiteral("QListView { background: #f6f7f9; }"));
    m_delegate = new MessageDelegate(m_list);
    m_list->setItemDelegate(m_delegate);

    m_empty = new QLabel(this);
    m_empty->setObjectName(QStringLiteral("emptyHint"));
    m_empty->setAlignment(Qt::AlignCenter);
    m_empty->setWordWrap(true);
    m_empty->setTextFormat(Qt::RichText);
    m_empty->setMargin(40);
    m_empty->setStyleSheet(QStringLiteral("QLabel { background: #f6f7f9; color: #6a737d; }"));

    m_stack = new QStackedLayout(this);
    m_stack->setContentsMargins(0, 0, 0, 0);
    m_stack->addWidget(m_list);
    m_stack->addWidget(m_empty);

    connect(m_delegate, &MessageDelegate::actionTriggered, this, [this](const QModelIndex &index, auto action) {
        switch (action) {
        case MessageDelegate::Action::Copy:
            copyMessage(index.row());
            break;
        case MessageDelegate::Action::Edit:
            emit editRequested(index.row());
            break;
        case MessageDelegate::Action::Regenerate:
            emit regenerateRequested(index.row());
            break;
        }
    });
    // Relayout after content changes moves the range; follow the tail if the user was there.
    connect(m_list->verticalScrollBar(), &QScrollBar::rangeChanged, this, [this](int, int max) {
        if (m_followTail)
            m_list->verticalScrollBar()->setValue(max);
    });
    connect(m_list, &QListView::customContextMenuRequested, this, &ChatView::showContextMenu);
    setModel(nullptr);
}

ChatView::~ChatView() = default;

void ChatView::setModel(MessageListModel *model)
{
    if (m_model)
        disconnect(m_model, nullptr, this, nullptr);
    m_delegate->clearCache();
    m_model = model;
    m_list->setModel(model);
    m_followTail = true;
    if (model) {
        connect(model, &QAbstractItemModel::dataChanged, this, &ChatView::onContentChanged);
        connect(model, &QAbstractItemModel::rowsAboutToBeInserted, this, &ChatView::sampleFollow);
        connect(model, &QAbstractItemModel::rowsInserted, this, &ChatView::updateEmptyState);
        connect(model, &QAbstractItemModel::rowsRemoved, this, &ChatView::updateEmptyState);
        connect(model, &QAbstractItemModel::modelAboutToBeReset, this, &ChatView::sampleFollow);
        connect(model, &QAbstractItemModel::modelReset, this, [this] {
            m_delegate->clearCache();
            updateEmptyState();
            if (m_followTail)
                scrollToBottom();
        });
        connect(model, &QObject::destroyed, this, [this] { setModel(nullptr); });
    }
    updateEmptyState();
    scrollToBottom();
}

void ChatView::setEmptyText(const QString &text)
{
    m_empty->setText(text);
}

void ChatView::scrollToBottom()
{
    m_followTail = true;
    m_list->scrollToBottom();
}

void ChatView::sampleFollow()
{
    // Called before the model changes, while the layout still matches what the user sees.
    const QScrollBar *bar = m_list->verticalScrollBar();
    m_followTail = bar->value() >= bar->maximum() - kTailSlackPx;
}

void ChatView::onContentChanged(const QModelIndex &topLeft, const QModelIndex &bottomRight, const QList<int> &roles)
{
    sampleFollow();
    const bool sizeMayChange = roles.isEmpty() || roles.contains(MessageListModel::ContentRole) ||
                               roles.contains(MessageListModel::NoteRole) ||
                               roles.contains(MessageListModel::CanEditRole);
    if (sizeMayChange) {
        // Only the changed rows' documents are rebuilt; the relayout reuses every other one.
        for (int row = topLeft.row(); row <= bottomRight.row(); ++row)
            emit m_delegate->sizeHintChanged(m_model->index(row));
    }
}

void ChatView::updateEmptyState()
{
    const bool empty = !m_model || m_model->rowCount() == 0;
    m_stack->setCurrentWidget(empty ? static_cast<QWidget *>(m_empty) : m_list);
}

void ChatView::copyMessage(int row)
{
    if (!m_model || row < 0 || row >= m_model->rowCount())
        return;
    QApplication::clipboard()->setText(m_model->item(row).content);
    emit statusMessage(tr("Message copied to the clipboard"));
}

void ChatView::showContextMenu(const QPoint &pos)
{
    const QModelIndex index = m_list->indexAt(pos);
    if (!index.isValid())
        return;
    QMenu menu(this);
    menu.addAction(tr("Copy"), this, [this, row = index.row()] { copyMessage(row); });
    if (const auto &record = m_model->item(index.row()).record)
        menu.addAction(tr("Copy TTFT breakdown"), this,
                       [text = turnBreakdownText(*record)] { QApplication::clipboard()->setText(text); });
    if (index.data(MessageListModel::CanEditRole).toBool())
        menu.addAction(tr("Edit and resend…"), this, [this, row = index.row()] { emit editRequested(row); });
    if (index.data(MessageListModel::CanRegenerateRole).toBool())
        menu.addAction(tr("Regenerate"), this, [this, row = index.row()] { emit regenerateRequested(row); });
    menu.exec(m_list->viewport()->mapToGlobal(pos));
}

} // namespace kvchat::ui
