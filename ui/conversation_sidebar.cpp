// SPDX-License-Identifier: MIT
#include "ui/conversation_sidebar.h"

#include "ui/conversation_list_model.h"

#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QListView>
#include <QMenu>
#include <QPainter>
#include <QPushButton>
#include <QStyledItemDelegate>
#include <QVBoxLayout>

namespace kvchat::ui {

namespace {

struct ChipColors
{
    QColor background, text;
};

ChipColors chipColors(const QModelIndex &index)
{
    if (index.data(ConversationListModel::DraftRole).toBool())
        return {QColor(0xf3, 0xe8, 0xfd), QColor(0x84, 0x30, 0xce)};
    switch (index.data(ConversationListModel::TierRole).toInt()) {
    case static_cast<int>(engine::Tier::Device):
        return {QColor(0xe6, 0xf4, 0xea), QColor(0x13, 0x73, 0x33)};
    case static_cast<int>(engine::Tier::Host):
        return {QColor(0xe8, 0xf0, 0xfe), QColor(0x19, 0x67, 0xd2)};
    case static_cast<int>(engine::Tier::Disk):
        return {QColor(0xfe, 0xf3, 0xd6), QColor(0x9a, 0x58, 0x00)};
    default:
        return {QColor(0xf1, 0xf3, 0xf4), QColor(0x5f, 0x63, 0x68)};
    }
}

// One conversation row: title and subtitle on the left, the residency chip on the right.
class ConversationDelegate : public QStyledItemDelegate
{
public:
    using QStyledItemDelegate::QStyledItemDelegate;

    QSize sizeHint(const QStyleOptionViewItem &option, const QModelIndex &) const override
    {
        const QFontMetrics metrics(option.font);
        return {option.rect.width(), metrics.height() * 2 + 22};
    }

    void paint(QPainter *painter, const QStyleOptionViewItem &option, const QModelIndex &index) const override
    {
        painter->save();
        painter->setRenderHint(QPainter::Antialiasing);
        const QRect r = option.rect.adjusted(6, 2, -6, -2);
        // Palette colours, so the list reads in light and dark themes alike.
        const QColor textColor = option.palette.color(QPalette::Text);
        QColor fill = Qt::transparent;
        if (option.state & QStyle::State_Selected) {
            fill = option.palette.color(QPalette::Highlight);
            fill.setAlphaF(0.18f);
        } else if (option.state & QStyle::State_MouseOver) {
            fill = textColor;
            fill.setAlphaF(0.06f);
        }
        painter->setBrush(fill);
        painter->setPen(Qt::NoPen);
        painter->drawRoundedRect(r, 8, 8);

        // Chip.
        QFont chipFont = option.font;
        chipFont.setPointSizeF(chipFont.pointSizeF() * 0.82);
        chipFont.setBold(true);
        const QFontMetrics chipMetrics(chipFont);
        const QString badge = index.data(ConversationListModel::BadgeRole).toString();
        const int chipWidth = chipMetrics.horizontalAdvance(badge) + 14;
        const int chipHeight = chipMetrics.height() + 4;
        const QRect chip(r.right() - 10 - chipWidth, r.top() + 9, chipWidth, chipHeight);
        const ChipColors colors = chipColors(index);
        painter->setBrush(colors.background);
        painter->drawRoundedRect(chip, chipHeight / 2.0, chipHeight / 2.0);
        painter->setFont(chipFont);
        painter->setPen(colors.text);
        painter->drawText(chip, Qt::AlignCenter, badge);

        // Title and subtitle.
        const int left = r.left() + 12;
        const QRect text(left, r.top() + 7, chip.left() - 8 - left, r.height() - 14);
        QFont titleFont = option.font;
        titleFont.setWeight(QFont::DemiBold);
        painter->setFont(titleFont);
        painter->setPen(textColor);
        const QFontMetrics titleMetrics(titleFont);
        painter->drawText(QRect(text.left(), text.top(), text.width(), titleMetrics.height()),
                          Qt::AlignLeft | Qt::AlignVCenter,
                          titleMetrics.elidedText(index.data(Qt::DisplayRole).toString(), Qt::ElideRight, text.width()));
        QFont subFont = option.font;
        subFont.setPointSizeF(subFont.pointSizeF() * 0.88);
        painter->setFont(subFont);
        const bool generating = index.data(ConversationListModel::GeneratingRole).toBool();
        painter->setPen(generating ? option.palette.color(QPalette::Link)
                                   : option.palette.color(QPalette::PlaceholderText));
        const QFontMetrics subMetrics(subFont);
        const QRect sub(text.left(), text.bottom() - subMetrics.height() + 1, r.right() - 10 - text.left(),
                        subMetrics.height());
        painter->drawText(sub, Qt::AlignLeft | Qt::AlignVCenter,
                          subMetrics.elidedText(index.data(ConversationListModel::SubtitleRole).toString(),
                                                Qt::ElideRight, sub.width()));
        painter->restore();
    }
};

} // namespace

void ConversationFilter::setText(const QString &text)
{
    m_text = text.trimmed();
    m_matches.clear();
    invalidateRowsFilter();
}

void ConversationFilter::setMatches(const QSet<qint64> &ids)
{
    m_matches = ids;
    invalidateRowsFilter();
}

bool ConversationFilter::filterAcceptsRow(int sourceRow, const QModelIndex &sourceParent) const
{
    if (m_text.isEmpty())
        return true;
    const QModelIndex index = sourceModel()->index(sourceRow, 0, sourceParent);
    return index.data(ConversationListModel::TitleRole).toString().contains(m_text, Qt::CaseInsensitive) ||
           index.data(ConversationListModel::NameRole).toString().contains(m_text, Qt::CaseInsensitive) ||
           m_matches.contains(index.data(ConversationListModel::IdRole).toLongLong());
}

ConversationSidebar::ConversationSidebar(ConversationListModel *model, QWidget *parent)
    : QWidget(parent), m_model(model)
{
    setObjectName(QStringLiteral("sidebar"));
    auto *layout = new QVBoxLayout(this);
    layout->setContentsMargins(8, 10, 8, 8);
    layout->setSpacing(8);

    auto *header = new QHBoxLayout;
    auto *title = new QLabel(tr("Conversations"), this);
    QFont titleFont = title->font();
    titleFont.setBold(true);
    titleFont.setPointSizeF(titleFont.pointSizeF() * 1.1);
    title->setFont(titleFont);
    m_new = new QPushButton(tr("+ New"), this);
    m_new->setObjectName(QStringLiteral("newConversationButton"));
    m_new->setToolTip(tr("New conversation (Ctrl+N)"));
    header->addWidget(title, 1);
    header->addWidget(m_new);
    layout->addLayout(header);

    m_search = new QLineEdit(this);
    m_search->setObjectName(QStringLiteral("searchField"));
    m_search->setPlaceholderText(tr("Search titles and messages (Ctrl+F)"));
    m_search->setClearButtonEnabled(true);
    layout->addWidget(m_search);

    m_filter = new ConversationFilter(this);
    m_filter->setSourceModel(model);
    m_list = new QListView(this);
    m_list->setObjectName(QStringLiteral("conversationList"));
    m_list->setModel(m_filter);
    m_list->setItemDelegate(new ConversationDelegate(m_list));
    m_list->setMouseTracking(true);
    m_list->setFrameShape(QFrame::NoFrame);
    m_list->setHorizontalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
    m_list->setUniformItemSizes(true);
    m_list->setContextMenuPolicy(Qt::CustomContextMenu);
    m_list->setStyleSheet(QStringLiteral("QListView { background: transparent; }"));
    m_noMatches = new QLabel(this);
    m_noMatches->setObjectName(QStringLiteral("noMatchesLabel"));
    m_noMatches->setWordWrap(true);
    m_noMatches->setTextFormat(Qt::PlainText);
    m_noMatches->setStyleSheet(QStringLiteral("color: #6b7280; padding: 8px 4px;"));
    m_noMatches->hide();
    layout->addWidget(m_noMatches);
    layout->addWidget(m_list, 1);

    m_searchDelay.setSingleShot(true);
    m_searchDelay.setInterval(kSearchDelayMs);
    connect(&m_searchDelay, &QTimer::timeout, this, [this] {
        if (!m_filter->text().isEmpty())
            emit searchRequested(m_filter->text());
    });
    connect(m_search, &QLineEdit::textChanged, this, [this](const QString &text) {
        m_filter->setText(text);
        m_searchDelay.start();
        restoreSelection();
        updateNoMatches();
    });
    connect(m_new, &QPushButton::clicked, this, &ConversationSidebar::newRequested);
    connect(m_list->selectionModel(), &QItemSelectionModel::currentChanged, this,
            [this](const QModelIndex &current) { onCurrentChanged(current); });
    connect(m_filter, &QAbstractItemModel::modelReset, this, &ConversationSidebar::restoreSelection);
    connect(m_filter, &QAbstractItemModel::rowsInserted, this, &ConversationSidebar::restoreSelection);
    connect(m_filter, &QAbstractItemModel::rowsRemoved, this, &ConversationSidebar::restoreSelection);
    connect(m_filter, &QAbstractItemModel::layoutChanged, this, &ConversationSidebar::restoreSelection);
    connect(m_filter, &QAbstractItemModel::modelReset, this, &ConversationSidebar::updateNoMatches);
    connect(m_filter, &QAbstractItemModel::layoutChanged, this, &ConversationSidebar::updateNoMatches);
    connect(m_filter, &QAbstractItemModel::rowsInserted, this, &ConversationSidebar::updateNoMatches);
    connect(m_filter, &QAbstractItemModel::rowsRemoved, this, &ConversationSidebar::updateNoMatches);
    connect(m_list, &QListView::customContextMenuRequested, this, &ConversationSidebar::showContextMenu);
}

ConversationSidebar::~ConversationSidebar() = default;

void ConversationSidebar::onCurrentChanged(const QModelIndex &current)
{
    if (m_restoring || !current.isValid())
        return;
    const QString name = current.data(ConversationListModel::NameRole).toString();
    if (name == m_current)
        return;
    m_current = name;
    emit conversationSelected(name);
}

void ConversationSidebar::restoreSelection()
{
    m_restoring = true;
    const int sourceRow = m_model->rowOf(m_current);
    const QModelIndex index = sourceRow < 0 ? QModelIndex() : m_filter->mapFromSource(m_model->index(sourceRow));
    if (index.isValid())
        m_list->selectionModel()->setCurrentIndex(index, QItemSelectionModel::ClearAndSelect);
    else
        m_list->selectionModel()->clearSelection();
    m_restoring = false;
}

void ConversationSidebar::select(const QString &name)
{
    m_current = name;
    if (const int row = m_model->rowOf(name); row >= 0 && !m_filter->mapFromSource(m_model->index(row)).isValid())
        m_search->clear();
    restoreSelection();
    if (const QModelIndex index = m_list->currentIndex(); index.isValid())
        m_list->scrollTo(index);
}

void ConversationSidebar::focusSearch()
{
    m_search->setFocus(Qt::ShortcutFocusReason);
    m_search->selectAll();
}

void ConversationSidebar::setSearchResults(const QString &text, const QList<qint64> &ids)
{
    if (text != m_filter->text())
        return; // an answer to an older query
    m_filter->setMatches(QSet<qint64>(ids.begin(), ids.end()));
    m_answeredQuery = text;
    restoreSelection();
    updateNoMatches();
}

void ConversationSidebar::updateNoMatches()
{
    const QString text = m_filter->text();
    const bool none = !text.isEmpty() && text == m_answeredQuery && m_filter->rowCount() == 0;
    if (none)
        m_noMatches->setText(tr("No conversation matches “%1”.").arg(text));
    m_noMatches->setVisible(none);
}

void ConversationSidebar::showContextMenu(const QPoint &pos)
{
    const QModelIndex index = m_list->indexAt(pos);
    if (!index.isValid())
        return;
    const QString name = index.data(ConversationListModel::NameRole).toString();
    const bool draft = index.data(ConversationListModel::DraftRole).toBool();
    QMenu menu(this);
    menu.addAction(tr("Rename…"), this, [this, name] { emit renameRequested(name); })->setEnabled(!draft);
    menu.addAction(tr("Delete…"), this, [this, name] { emit deleteRequested(name); });
    menu.exec(m_list->viewport()->mapToGlobal(pos));
}

} // namespace kvchat::ui
