// SPDX-License-Identifier: MIT
#include "ui/conversation_list_model.h"

#include "ui/ttft_format.h"

#include <QDateTime>

#include <algorithm>

namespace kvchat::ui {

QString relativeTime(qint64 epochMs, qint64 nowMs)
{
    if (epochMs <= 0)
        return {};
    const qint64 seconds = std::max<qint64>(0, (nowMs - epochMs) / 1000);
    if (seconds < 60)
        return ConversationListModel::tr("just now");
    if (seconds < 3600)
        return ConversationListModel::tr("%1 min ago").arg(seconds / 60);
    if (seconds < 86400)
        return ConversationListModel::tr("%1 h ago").arg(seconds / 3600);
    if (seconds < 2 * 86400)
        return ConversationListModel::tr("yesterday");
    return displayLocale().toString(QDateTime::fromMSecsSinceEpoch(epochMs).date(), QStringLiteral("d MMM"));
}

ConversationListModel::ConversationListModel(QObject *parent) : QAbstractListModel(parent) {}

ConversationListModel::~ConversationListModel() = default;

int ConversationListModel::rowCount(const QModelIndex &parent) const
{
    return parent.isValid() ? 0 : static_cast<int>(m_rows.size());
}

QVariant ConversationListModel::data(const QModelIndex &index, int role) const
{
    if (!checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid))
        return {};
    const ConversationRow &r = m_rows[static_cast<std::size_t>(index.row())];
    switch (role) {
    case Qt::DisplayRole:
    case TitleRole:
        return r.title;
    case NameRole:
        return r.name;
    case IdRole:
        return r.id;
    case UpdatedAtRole:
        return r.updatedAtMs;
    case MessageCountRole:
        return r.messageCount;
    case ResidencyRole:
        return QVariant::fromValue(r.residency);
    case TierRole: {
        const auto tier = r.residency.slowestTier();
        return tier ? static_cast<int>(*tier) : -1;
    }
    case BadgeRole:
        return r.draft ? tr("new") : residencyBadge(r.residency);
    case Qt::ToolTipRole:
    case ResidencyToolTipRole:
        return r.draft ? tr("Not started yet: it is saved with its first message") : residencyToolTip(r.residency);
    case SubtitleRole: {
        if (r.generating)
            return tr("generating…");
        if (r.draft)
            return tr("new conversation");
        const QString count = r.messageCount == 1 ? tr("1 message") : tr("%1 messages").arg(formatCount(r.messageCount));
        const QString when = relativeTime(r.updatedAtMs, QDateTime::currentMSecsSinceEpoch());
        return when.isEmpty() ? count : count + QStringLiteral(" · ") + when;
    }
    case DraftRole:
        return r.draft;
    case GeneratingRole:
        return r.generating;
    case SystemPromptRole:
        return r.systemPrompt;
    default:
        return {};
    }
}

QHash<int, QByteArray> ConversationListModel::roleNames() const
{
    return {{NameRole, "name"},         {TitleRole, "title"},     {IdRole, "conversationId"},
            {UpdatedAtRole, "updatedAt"}, {MessageCountRole, "messageCount"}, {ResidencyRole, "residency"},
            {TierRole, "tier"},         {BadgeRole, "badge"},     {ResidencyToolTipRole, "residencyToolTip"},
            {SubtitleRole, "subtitle"}, {DraftRole, "draft"},     {GeneratingRole, "generating"},
            {SystemPromptRole, "systemPrompt"}};
}

void ConversationListModel::setConversations(const engine::ConversationList &list)
{
    std::vector<ConversationRow> rows;
    for (const engine::ConversationSummary &summary : list.conversations) {
        ConversationRow r;
        r.name = QString::fromStdString(summary.record.name);
        r.title = QString::fromStdString(summary.record.title);
        r.systemPrompt = QString::fromStdString(summary.record.systemPrompt);
        r.id = summary.record.id;
        r.updatedAtMs = summary.record.updatedAtMs;
        r.messageCount = summary.messageCount;
        r.residency = summary.residency;
        if (const int old = rowOf(r.name); old >= 0)
            r.generating = m_rows[static_cast<std::size_t>(old)].generating;
        rows.push_back(std::move(r));
    }
    // Drafts the engine does not know yet stay on top.
    std::vector<ConversationRow> drafts;
    for (const ConversationRow &r : m_rows)
        if (r.draft && std::none_of(rows.begin(), rows.end(), [&](const auto &s) { return s.name == r.name; }))
            drafts.push_back(r);
    rows.insert(rows.begin(), drafts.begin(), drafts.end());

    const bool sameOrder = rows.size() == m_rows.size() &&
                           std::equal(rows.begin(), rows.end(), m_rows.begin(),
                                      [](const auto &a, const auto &b) { return a.name == b.name; });
    if (sameOrder) {
        m_rows = std::move(rows);
        if (!m_rows.empty())
            emit dataChanged(index(0), index(rowCount() - 1));
        return;
    }
    beginResetModel();
    m_rows = std::move(rows);
    endResetModel();
}

void ConversationListModel::updateResidency(qint64 conversationId, const engine::KvResidency &residency)
{
    for (std::size_t i = 0; i < m_rows.size(); ++i) {
        if (m_rows[i].id == conversationId) {
            m_rows[i].residency = residency;
            changed(static_cast<int>(i), {ResidencyRole, TierRole, BadgeRole, ResidencyToolTipRole, Qt::ToolTipRole});
        }
    }
}

int ConversationListModel::addDraft(const QString &name)
{
    if (const int existing = rowOf(name); existing >= 0)
        return existing;
    ConversationRow r;
    r.name = name;
    r.title = name;
    r.draft = true;
    r.updatedAtMs = QDateTime::currentMSecsSinceEpoch();
    beginInsertRows({}, 0, 0);
    m_rows.insert(m_rows.begin(), std::move(r));
    endInsertRows();
    return 0;
}

void ConversationListModel::removeDraft(const QString &name)
{
    const int row = rowOf(name);
    if (row < 0 || !m_rows[static_cast<std::size_t>(row)].draft)
        return;
    beginRemoveRows({}, row, row);
    m_rows.erase(m_rows.begin() + row);
    endRemoveRows();
}

void ConversationListModel::promoteDraft(const QString &name, qint64 id)
{
    const int row = rowOf(name);
    if (row < 0 || !m_rows[static_cast<std::size_t>(row)].draft)
        return;
    ConversationRow &r = m_rows[static_cast<std::size_t>(row)];
    r.draft = false;
    r.id = id;
    changed(row, {DraftRole, IdRole, BadgeRole, ResidencyToolTipRole, Qt::ToolTipRole, SubtitleRole});
}

void ConversationListModel::setTitle(const QString &name, const QString &title)
{
    const int row = rowOf(name);
    if (row < 0)
        return;
    m_rows[static_cast<std::size_t>(row)].title = title;
    changed(row, {Qt::DisplayRole, TitleRole, Qt::ToolTipRole});
}

void ConversationListModel::setGenerating(const QString &name, bool generating)
{
    const int row = rowOf(name);
    if (row < 0 || m_rows[static_cast<std::size_t>(row)].generating == generating)
        return;
    m_rows[static_cast<std::size_t>(row)].generating = generating;
    changed(row, {GeneratingRole, SubtitleRole});
}

int ConversationListModel::rowOf(const QString &name) const
{
    for (std::size_t i = 0; i < m_rows.size(); ++i)
        if (m_rows[i].name == name)
            return static_cast<int>(i);
    return -1;
}

std::optional<ConversationRow> ConversationListModel::find(const QString &name) const
{
    const int row = rowOf(name);
    if (row < 0)
        return std::nullopt;
    return m_rows[static_cast<std::size_t>(row)];
}

QString ConversationListModel::uniqueNewName(const QDateTime &now) const
{
    const QString base = QStringLiteral("Chat ") + now.toString(QStringLiteral("yyyy-MM-dd HH:mm"));
    QString name = base;
    for (int n = 2; rowOf(name) >= 0; ++n)
        name = base + QStringLiteral(" (%1)").arg(n);
    return name;
}

void ConversationListModel::changed(int row, const QList<int> &roles)
{
    const QModelIndex at = index(row);
    emit dataChanged(at, at, roles);
}

} // namespace kvchat::ui
