// SPDX-License-Identifier: MIT
#include "ui/message_delegate.h"

#include "ui/message_document.h"
#include "ui/message_list_model.h"

#include <QDateTime>
#include <QHelpEvent>
#include <QListView>
#include <QMouseEvent>
#include <QPainter>
#include <QPainterPath>
#include <QToolTip>

#include <algorithm>
#include <cmath>

namespace kvchat::ui {

namespace {

constexpr int kMarginH = 20;   // row edge → bubble
constexpr int kMarginV = 7;
constexpr int kPadH = 14;      // bubble edge → text
constexpr int kPadV = 10;
constexpr int kFooterGap = 4;  // bubble → footer
constexpr int kActionGap = 14;
constexpr int kRadius = 12;
constexpr int kMaxAssistantWidth = 860;
constexpr int kMaxUserWidth = 640;

const QColor kUserBubble(0xe3, 0xed, 0xfd);
const QColor kUserBorder(0xc8, 0xd9, 0xf7);
const QColor kAssistantBubble(0xff, 0xff, 0xff);
const QColor kAssistantBorder(0xdf, 0xe3, 0xe8);
const QColor kText(0x1f, 0x23, 0x28);
const QColor kMuted(0x6a, 0x73, 0x7d);
const QColor kTtft(0x0b, 0x6e, 0x69);
const QColor kTtftLive(0xb0, 0x60, 0x00);
const QColor kError(0xc5, 0x22, 0x1f);
const QColor kLink(0x1a, 0x5f, 0xd0);

QString actionText(MessageDelegate::Action action)
{
    switch (action) {
    case MessageDelegate::Action::Copy:
        return MessageDelegate::tr("Copy");
    case MessageDelegate::Action::Edit:
        return MessageDelegate::tr("Edit");
    case MessageDelegate::Action::Regenerate:
        return MessageDelegate::tr("Regenerate");
    }
    return {};
}

bool isAssistant(const QModelIndex &index)
{
    return index.data(MessageListModel::RoleRole).toString() == QLatin1String("assistant");
}

bool isLive(const QModelIndex &index)
{
    return index.data(MessageListModel::StateRole).toInt() != static_cast<int>(MessageItem::State::Done);
}

} // namespace

MessageDelegate::MessageDelegate(QListView *view) : QStyledItemDelegate(view), m_view(view) {}

MessageDelegate::~MessageDelegate() = default;

void MessageDelegate::clearCache()
{
    m_documents.clear();
}

QFont MessageDelegate::footerFont() const
{
    QFont font = m_view->font();
    font.setPointSizeF(font.pointSizeF() * 0.85);
    return font;
}

MessageDocument *MessageDelegate::document(const QModelIndex &index, int textWidth) const
{
    const quint64 uid = index.data(MessageListModel::UidRole).toULongLong();
    const quint32 revision = index.data(MessageListModel::RevisionRole).toUInt();
    // A long conversation's view keeps at most a few hundred documents.
    if (m_documents.size() > 600 && !m_documents.contains(uid))
        m_documents.clear();
    CachedDocument &cached = m_documents[uid];
    if (!cached.document || cached.revision != revision) {
        if (!cached.document)
            cached.document = std::make_unique<MessageDocument>();
        cached.document->setContent(index.data(MessageListModel::ContentRole).toString(), isAssistant(index),
                                    m_view->font());
        cached.revision = revision;
    }
    cached.document->setTextWidth(textWidth);
    return cached.document.get();
}

MessageDelegate::Geometry MessageDelegate::geometry(const QRect &row, const QModelIndex &index) const
{
    Geometry g;
    const bool assistant = isAssistant(index);
    const int available = std::max(120, row.width() - 2 * kMarginH);
    const int maxBubble = assistant ? std::min(available, kMaxAssistantWidth)
                                    : std::min(static_cast<int>(available * 0.8), kMaxUserWidth);
    const int maxText = maxBubble - 2 * kPadH;
    g.maxText = maxText;
    const QString content = index.data(MessageListModel::ContentRole).toString();
    const QFontMetrics metrics(m_view->font());
    int textWidth = 0;
    int textHeight = 0;
    if (content.isEmpty()) {
        textWidth = 40; // typing dots
        textHeight = metrics.height();
    } else {
        const MessageDocument *doc = document(index, maxText);
        textWidth = std::min(maxText, static_cast<int>(std::ceil(doc->idealWidth())));
        textHeight = static_cast<int>(std::ceil(doc->height()));
    }
    textWidth = std::max(textWidth, 24);
    const int bubbleWidth = textWidth + 2 * kPadH;
    const int x = assistant ? row.left() + kMarginH : row.right() - kMarginH - bubbleWidth + 1;
    g.bubble = QRect(x, row.top() + kMarginV, bubbleWidth, textHeight + 2 * kPadV);
    g.text = g.bubble.adjusted(kPadH, kPadV, -kPadH, -kPadV);

    const QFontMetrics small(footerFont());
    const int footerHeight = small.height() + 2;
    g.footer = QRect(row.left() + kMarginH, g.bubble.bottom() + 1 + kFooterGap, available, footerHeight);
    std::vector<Action> actions{Action::Copy};
    if (index.data(MessageListModel::CanEditRole).toBool())
        actions.push_back(Action::Edit);
    if (index.data(MessageListModel::CanRegenerateRole).toBool())
        actions.push_back(Action::Regenerate);
    if (assistant) {
        int left = g.bubble.left() + 2;
        const QString ttft = index.data(MessageListModel::TtftTextRole).toString();
        if (!ttft.isEmpty()) {
            QFont bold = footerFont();
            bold.setBold(true);
            g.ttft = QRect(left, g.footer.top(), QFontMetrics(bold).horizontalAdvance(ttft), footerHeight);
        }
        if (isLive(index))
            actions.clear();
        // Actions sit at the bubble's right edge, or past the footer text when the bubble is narrow.
        int width = 0;
        for (Action action : actions)
            width += small.horizontalAdvance(actionText(action)) + kActionGap;
        left = std::max(g.bubble.right() - width + kActionGap, g.bubble.left() + 260);
        for (Action action : actions) {
            const int w = small.horizontalAdvance(actionText(action));
            g.actions.emplace_back(action, QRect(left, g.footer.top(), w, footerHeight));
            left += w + kActionGap;
        }
    } else {
        int right = g.bubble.right() - 2;
        for (auto it = actions.rbegin(); it != actions.rend(); ++it) {
            const int w = small.horizontalAdvance(actionText(*it));
            g.actions.emplace_back(*it, QRect(right - w + 1, g.footer.top(), w, footerHeight));
            right -= w + kActionGap;
        }
    }
    g.height = g.footer.bottom() + 1 - row.top() + kMarginV;
    return g;
}

QSize MessageDelegate::sizeHint(const QStyleOptionViewItem &, const QModelIndex &index) const
{
    const int width = m_view->viewport()->width();
    return {width, geometry(QRect(0, 0, width, 0), index).height};
}

void MessageDelegate::paint(QPainter *painter, const QStyleOptionViewItem &option, const QModelIndex &index) const
{
    const Geometry g = geometry(option.rect, index);
    const bool assistant = isAssistant(index);
    const bool hovered = option.state & QStyle::State_MouseOver;
    painter->save();
    painter->setRenderHint(QPainter::Antialiasing);

    painter->setPen(QPen(assistant ? kAssistantBorder : kUserBorder, 1));
    painter->setBrush(assistant ? kAssistantBubble : kUserBubble);
    painter->drawRoundedRect(QRectF(g.bubble).adjusted(0.5, 0.5, -0.5, -0.5), kRadius, kRadius);

    const QString content = index.data(MessageListModel::ContentRole).toString();
    if (content.isEmpty()) {
        // Typing dots, one brighter in turn (the live TTFT tick repaints this row).
        const int phase = static_cast<int>(QDateTime::currentMSecsSinceEpoch() / 280 % 3);
        const int r = 3;
        const int cy = g.text.center().y();
        for (int i = 0; i < 3; ++i) {
            QColor dot = kMuted;
            dot.setAlphaF(i == phase ? 0.9f : 0.35f);
            painter->setPen(Qt::NoPen);
            painter->setBrush(dot);
            painter->drawEllipse(QPoint(g.text.left() + 6 + i * 12, cy), r, r);
        }
    } else {
        const MessageDocument *doc = document(index, g.maxText);
        painter->save();
        painter->translate(g.text.topLeft());
        QPalette palette = option.palette;
        palette.setColor(QPalette::Text, kText);
        const QRectF clip(0, 0, g.maxText, g.text.height() + 2);
        painter->setClipRect(clip);
        doc->draw(painter, palette, clip);
        painter->restore();
    }

    // Footer: TTFT · decode rate · note, and the actions.
    const QFont small = footerFont();
    QFont bold = small;
    bold.setBold(true);
    int x = g.ttft.isNull() ? g.bubble.left() + 2 : g.ttft.right() + 1;
    const int baselineTop = g.footer.top();
    if (!g.ttft.isNull()) {
        painter->setFont(bold);
        const bool live = !index.data(MessageListModel::TtftMsRole).isValid() && isLive(index);
        painter->setPen(live ? kTtftLive : kTtft);
        painter->drawText(g.ttft, Qt::AlignLeft | Qt::AlignVCenter, index.data(MessageListModel::TtftTextRole).toString());
    }
    painter->setFont(small);
    QStringList extra;
    if (const QString rate = index.data(MessageListModel::DecodeRateRole).toString(); !rate.isEmpty())
        extra << rate;
    const QString note = index.data(MessageListModel::NoteRole).toString();
    if (!extra.isEmpty()) {
        painter->setPen(kMuted);
        const QString text = QStringLiteral("  ·  ") + extra.join(QStringLiteral("  ·  "));
        const QRect r(x, baselineTop, QFontMetrics(small).horizontalAdvance(text), g.footer.height());
        painter->drawText(r, Qt::AlignLeft | Qt::AlignVCenter, text);
        x = r.right() + 1;
    }
    const int actionsLeft = g.actions.empty() ? g.footer.right()
                                               : std::min_element(g.actions.begin(), g.actions.end(), [](auto &a, auto &b) {
                                                     return a.second.left() < b.second.left();
                                                 })->second.left();
    if (!note.isEmpty()) {
        painter->setPen(index.data(MessageListModel::CompleteRole).toBool() && note != tr("Stopped.") ? kError : kMuted);
        const int left = assistant ? x + (x > g.bubble.left() + 2 ? 12 : 0) : g.footer.left();
        const int right = assistant ? (hovered ? actionsLeft - kActionGap : g.footer.right()) : actionsLeft - kActionGap;
        const QRect r(left, baselineTop, std::max(0, right - left), g.footer.height());
        painter->drawText(r, Qt::AlignVCenter | (assistant ? Qt::AlignLeft : Qt::AlignRight),
                          QFontMetrics(small).elidedText(note, Qt::ElideRight, r.width()));
    }
    if (hovered) {
        painter->setPen(kLink);
        for (const auto &[action, rect] : g.actions)
            painter->drawText(rect, Qt::AlignLeft | Qt::AlignVCenter, actionText(action));
    }
    painter->restore();
}

bool MessageDelegate::editorEvent(QEvent *event, QAbstractItemModel *model, const QStyleOptionViewItem &option,
                                  const QModelIndex &index)
{
    if (event->type() == QEvent::MouseButtonRelease) {
        auto *mouse = static_cast<QMouseEvent *>(event);
        if (mouse->button() == Qt::LeftButton) {
            const Geometry g = geometry(option.rect, index);
            for (const auto &[action, rect] : g.actions) {
                if (rect.adjusted(-4, -2, 4, 2).contains(mouse->position().toPoint())) {
                    emit actionTriggered(index, action);
                    return true;
                }
            }
        }
    }
    return QStyledItemDelegate::editorEvent(event, model, option, index);
}

bool MessageDelegate::helpEvent(QHelpEvent *event, QAbstractItemView *view, const QStyleOptionViewItem &option,
                                const QModelIndex &index)
{
    if (event->type() == QEvent::ToolTip) {
        const Geometry g = geometry(option.rect, index);
        const QString breakdown = index.data(MessageListModel::BreakdownRole).toString();
        const QRect hot = g.ttft.united(QRect(g.footer.left(), g.footer.top(), g.bubble.width(), g.footer.height()));
        if (!breakdown.isEmpty() && hot.contains(event->pos())) {
            QToolTip::showText(event->globalPos(), breakdown, view->viewport(), hot);
            return true;
        }
        QToolTip::hideText();
        event->ignore();
        return true;
    }
    return QStyledItemDelegate::helpEvent(event, view, option, index);
}

QRect MessageDelegate::actionRect(const QModelIndex &index, Action action) const
{
    const Geometry g = geometry(m_view->visualRect(index), index);
    for (const auto &[a, rect] : g.actions)
        if (a == action)
            return rect;
    return {};
}

QRect MessageDelegate::ttftRect(const QModelIndex &index) const
{
    return geometry(m_view->visualRect(index), index).ttft;
}

} // namespace kvchat::ui
