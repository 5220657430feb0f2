// SPDX-License-Identifier: MIT
#include "ui/message_list_model.h"

#include "ui/ttft_format.h"

#include <algorithm>
#include <unordered_map>

namespace kvchat::ui {

namespace {

double msBetween(SteadyTime from, SteadyTime to)
{
    return std::max(0.0, std::chrono::duration<double, std::milli>(to - from).count());
}

bool isLive(const MessageItem &item)
{
    return item.state != MessageItem::State::Done;
}

} // namespace

MessageListModel::MessageListModel(const QString &conversation, QObject *parent)
    : QAbstractListModel(parent), m_conversation(conversation), m_title(conversation)
{
}

MessageListModel::~MessageListModel() = default;

int MessageListModel::rowCount(const QModelIndex &parent) const
{
    return parent.isValid() ? 0 : static_cast<int>(m_items.size());
}

QVariant MessageListModel::data(const QModelIndex &index, int role) const
{
    if (!checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid))
        return {};
    const MessageItem &item = m_items[static_cast<std::size_t>(index.row())];
    const bool assistant = item.role == QLatin1String("assistant");
    switch (role) {
    case Qt::DisplayRole:
    case ContentRole:
        return item.content;
    case RoleRole:
        return item.role;
    case CompleteRole:
        return item.complete;
    case StateRole:
        return static_cast<int>(item.state);
    case MessageIdRole:
        return QVariant::fromValue<qint64>(item.messageId);
    case UidRole:
        return QVariant::fromValue<quint64>(item.uid);
    case RevisionRole:
        return QVariant::fromValue<quint32>(item.revision);
    case TtftMsRole:
        return item.record ? QVariant(item.record->ttftMs) : QVariant();
    case TtftTextRole:
        return assistant ? ttftText(item) : QString();
    case Qt::ToolTipRole:
    case BreakdownRole:
        return item.record ? turnBreakdownHtml(*item.record) : QString();
    case DecodeRateRole:
        return item.record ? decodeRateText(*item.record) : QString();
    case TurnRecordRole:
        return item.record ? QVariant::fromValue(*item.record) : QVariant();
    case NoteRole:
        return item.note;
    case CanEditRole:
        return !assistant && item.messageId != 0 && m_liveTurn == 0;
    case CanRegenerateRole:
        return assistant && m_liveTurn == 0 && item.messageId != 0 && index.row() == lastAssistantRow();
    default:
        return {};
    }
}

QHash<int, QByteArray> MessageListModel::roleNames() const
{
    return {{RoleRole, "role"},           {ContentRole, "content"},     {CompleteRole, "complete"},
            {StateRole, "state"},         {MessageIdRole, "messageId"}, {UidRole, "uid"},
            {RevisionRole, "revision"},   {TtftMsRole, "ttftMs"},       {TtftTextRole, "ttftText"},
            {BreakdownRole, "breakdown"}, {DecodeRateRole, "decodeRate"}, {TurnRecordRole, "turnRecord"},
            {NoteRole, "note"},           {CanEditRole, "canEdit"},     {CanRegenerateRole, "canRegenerate"}};
}

QString MessageListModel::ttftText(const MessageItem &item) const
{
    if (item.record)
        return ttftLabel(item.record->ttftMs);
    if (item.firstTextMs)
        return ttftLabel(*item.firstTextMs);
    if (item.state == MessageItem::State::Pending || item.state == MessageItem::State::Waiting)
        return ttftWaitingLabel(msBetween(item.submitted, std::chrono::steady_clock::now()));
    return {};
}

std::vector<engine::TurnRecord> MessageListModel::turnRecords() const
{
    std::vector<engine::TurnRecord> records;
    for (const MessageItem &item : m_items)
        if (item.record)
            records.push_back(*item.record);
    return records;
}

int MessageListModel::lastAssistantRow() const
{
    for (int row = static_cast<int>(m_items.size()) - 1; row >= 0; --row)
        if (m_items[static_cast<std::size_t>(row)].role == QLatin1String("assistant"))
            return row;
    return -1;
}

MessageItem MessageListModel::storedItem(const engine::MessageRecord &message, const engine::TurnRecord *record)
{
    MessageItem item;
    item.uid = m_nextUid++;
    item.messageId = message.id;
    item.index = message.index;
    item.role = QString::fromStdString(message.role);
    item.content = QString::fromStdString(message.content);
    item.complete = message.complete;
    if (record) {
        item.record = *record;
        item.stopReason = QString::fromStdString(record->stopReason);
    }
    if (!message.complete)
        item.note = tr("This reply was cut off before it finished.");
    else if (record)
        item.note = stopNote(item.stopReason);
    return item;
}

QString MessageListModel::stopNote(const QString &stopReason)
{
    if (stopReason == QLatin1String("stopped"))
        return tr("Stopped.");
    if (stopReason == QLatin1String("context_full"))
        return tr("Context full: the reply ends here (the oldest messages leave the context next turn).");
    return {};
}

void MessageListModel::setStored(const engine::ConversationLoaded &loaded)
{
    m_conversationId = loaded.record.id;
    m_title = QString::fromStdString(loaded.record.title);
    m_systemPrompt = QString::fromStdString(loaded.record.systemPrompt);
    std::unordered_map<std::int64_t, const engine::TurnRecord *> byMessage;
    for (const engine::TurnRecord &turn : loaded.turns)
        byMessage[turn.messageId] = &turn;

    std::vector<MessageItem> live;
    for (const MessageItem &item : m_items)
        if (m_liveTurn != 0 && item.turn == m_liveTurn)
            live.push_back(item);

    std::vector<MessageItem> stored;
    std::vector<MessageItem> removed;
    for (const engine::MessageRecord &message : loaded.messages) {
        const bool saved = std::any_of(live.begin(), live.end(),
                                       [&](const MessageItem &l) { return l.messageId == message.id; });
        if (saved)
            continue;
        auto found = byMessage.find(message.id);
        // Reuse the old row's uid when nothing about it changed, so the view keeps its layout.
        MessageItem item = storedItem(message, found == byMessage.end() ? nullptr : found->second);
        if (m_liveTruncateFrom && !m_liveStarted && message.index >= *m_liveTruncateFrom)
            removed.push_back(std::move(item));
        else
            stored.push_back(std::move(item));
    }

    // Unchanged rows (same ids and text, nothing in flight): update in place, keep the scroll position.
    const bool sameRows = live.empty() && stored.size() == m_items.size() &&
                          std::equal(stored.begin(), stored.end(), m_items.begin(), [](const auto &a, const auto &b) {
                              return a.messageId == b.messageId && a.content == b.content &&
                                     a.complete == b.complete && b.state == MessageItem::State::Done;
                          });
    if (sameRows) {
        for (std::size_t i = 0; i < stored.size(); ++i) {
            stored[i].uid = m_items[i].uid;
            stored[i].revision = m_items[i].revision;
            m_items[i] = std::move(stored[i]);
        }
        if (!m_items.empty())
            emit dataChanged(index(0), index(rowCount() - 1));
        return;
    }
    beginResetModel();
    m_items = std::move(stored);
    m_items.insert(m_items.end(), live.begin(), live.end());
    if (m_liveTurn != 0 && !m_liveStarted)
        m_removedByLiveTurn = std::move(removed);
    endResetModel();
}

void MessageListModel::setTitle(const QString &title)
{
    m_title = title;
}

void MessageListModel::setLiveTurn(engine::TurnId turn)
{
    m_liveTurn = turn;
    if (!m_items.empty())
        emit dataChanged(index(0), index(rowCount() - 1), {CanEditRole, CanRegenerateRole});
}

void MessageListModel::beginTurn(engine::TurnId turn, const std::optional<QString> &userText,
                                 std::optional<int> truncateFrom, SteadyTime submitted)
{
    m_liveTruncateFrom = truncateFrom;
    m_liveStarted = false;
    m_removedByLiveTurn.clear();
    if (truncateFrom) {
        const auto first = std::find_if(m_items.begin(), m_items.end(), [&](const MessageItem &item) {
            return item.index >= *truncateFrom;
        });
        const int row = static_cast<int>(first - m_items.begin());
        if (row < rowCount()) {
            beginRemoveRows({}, row, rowCount() - 1);
            m_removedByLiveTurn.assign(first, m_items.end());
            m_items.erase(first, m_items.end());
            endRemoveRows();
        }
    }
    std::vector<MessageItem> rows;
    MessageItem base;
    base.turn = turn;
    base.state = MessageItem::State::Pending;
    base.submitted = submitted;
    base.complete = false;
    if (userText) {
        MessageItem user = base;
        user.uid = m_nextUid++;
        user.role = QStringLiteral("user");
        user.content = *userText;
        rows.push_back(std::move(user));
    }
    MessageItem assistant = base;
    assistant.uid = m_nextUid++;
    assistant.role = QStringLiteral("assistant");
    rows.push_back(std::move(assistant));

    const int first = rowCount();
    beginInsertRows({}, first, first + static_cast<int>(rows.size()) - 1);
    m_items.insert(m_items.end(), rows.begin(), rows.end());
    endInsertRows();
    setLiveTurn(turn);
}

int MessageListModel::rowOfTurn(engine::TurnId turn, const QString &role) const
{
    for (int row = static_cast<int>(m_items.size()) - 1; row >= 0; --row) {
        const MessageItem &item = m_items[static_cast<std::size_t>(row)];
        if (item.turn == turn && item.role == role)
            return row;
    }
    return -1;
}

void MessageListModel::changed(int row, const QList<int> &roles)
{
    const QModelIndex at = index(row);
    emit dataChanged(at, at, roles);
}

void MessageListModel::turnStarted(const engine::TurnStarted &started)
{
    m_conversationId = started.conversationId;
    m_liveStarted = true;
    m_removedByLiveTurn.clear();
    if (const int row = rowOfTurn(started.turn, QStringLiteral("user")); row >= 0 && started.userMessage) {
        MessageItem &user = m_items[static_cast<std::size_t>(row)];
        user.messageId = started.userMessage->id;
        user.index = started.userMessage->index;
        user.complete = true;
        user.state = MessageItem::State::Done;
        changed(row, {MessageIdRole, StateRole, CompleteRole, CanEditRole});
    }
    if (const int row = rowOfTurn(started.turn, QStringLiteral("assistant")); row >= 0) {
        MessageItem &assistant = m_items[static_cast<std::size_t>(row)];
        assistant.messageId = started.assistantMessageId;
        // The reply follows the user's message, or takes the place of the one regenerated.
        if (started.userMessage)
            assistant.index = started.userMessage->index + 1;
        else if (m_liveTruncateFrom)
            assistant.index = *m_liveTruncateFrom;
        else if (row > 0)
            assistant.index = m_items[static_cast<std::size_t>(row - 1)].index + 1;
        if (assistant.state == MessageItem::State::Pending)
            assistant.state = MessageItem::State::Waiting;
        changed(row, {MessageIdRole, StateRole, TtftTextRole});
    }
}

void MessageListModel::firstToken(engine::TurnId turn, const engine::TurnRecord &record)
{
    const int row = rowOfTurn(turn, QStringLiteral("assistant"));
    if (row < 0)
        return;
    MessageItem &assistant = m_items[static_cast<std::size_t>(row)];
    assistant.record = record;
    changed(row, {TtftMsRole, TtftTextRole, BreakdownRole, Qt::ToolTipRole, TurnRecordRole});
}

void MessageListModel::appendText(engine::TurnId turn, const QString &text, SteadyTime arrived)
{
    const int row = rowOfTurn(turn, QStringLiteral("assistant"));
    if (row < 0 || text.isEmpty())
        return;
    MessageItem &assistant = m_items[static_cast<std::size_t>(row)];
    QList<int> roles{ContentRole, Qt::DisplayRole, RevisionRole};
    if (assistant.state != MessageItem::State::Streaming) {
        assistant.state = MessageItem::State::Streaming;
        if (!assistant.record)
            assistant.firstTextMs = msBetween(assistant.submitted, arrived);
        roles << StateRole << TtftTextRole;
    }
    assistant.content += text;
    ++assistant.revision;
    changed(row, roles);
}

void MessageListModel::finishTurn(const engine::TurnFinished &finished)
{
    const int row = rowOfTurn(finished.turn, QStringLiteral("assistant"));
    if (row < 0)
        return;
    m_conversationId = finished.conversationId;
    MessageItem &assistant = m_items[static_cast<std::size_t>(row)];
    const QString reply = QString::fromStdString(finished.reply);
    if (reply != assistant.content) {
        assistant.content = reply;
        ++assistant.revision;
    }
    assistant.complete = true;
    assistant.state = MessageItem::State::Done;
    assistant.record = finished.record;
    assistant.stopReason = QString::fromStdString(finished.stopReason);
    if (!finished.warning.empty())
        assistant.note = QString::fromStdString(finished.warning);
    else
        assistant.note = stopNote(assistant.stopReason);
    for (MessageItem &item : m_items)
        if (item.turn == finished.turn)
            item.turn = 0;
    changed(row, {ContentRole, Qt::DisplayRole, RevisionRole, CompleteRole, StateRole, TtftMsRole, TtftTextRole,
                  BreakdownRole, Qt::ToolTipRole, DecodeRateRole, TurnRecordRole, NoteRole});
    m_liveTruncateFrom.reset();
    setLiveTurn(0);
}

void MessageListModel::failTurn(engine::TurnId turn, const QString &message, bool replyKept)
{
    if (m_liveTurn != turn)
        return;
    for (int row = rowCount() - 1; row >= 0; --row) {
        MessageItem &item = m_items[static_cast<std::size_t>(row)];
        if (item.turn != turn)
            continue;
        if (!replyKept || item.messageId == 0) {
            beginRemoveRows({}, row, row);
            m_items.erase(m_items.begin() + row);
            endRemoveRows();
        } else {
            item.turn = 0;
            item.state = MessageItem::State::Done;
            if (item.role == QLatin1String("assistant")) {
                item.complete = false; // stored so: the next turn sees the text as it was shown
                item.note = tr("This reply was cut off: %1").arg(message);
            }
            changed(row, {StateRole, CompleteRole, NoteRole, TtftTextRole});
        }
    }
    if (!m_removedByLiveTurn.empty()) {
        const int first = rowCount();
        beginInsertRows({}, first, first + static_cast<int>(m_removedByLiveTurn.size()) - 1);
        m_items.insert(m_items.end(), m_removedByLiveTurn.begin(), m_removedByLiveTurn.end());
        m_removedByLiveTurn.clear();
        endInsertRows();
    }
    m_liveTruncateFrom.reset();
    setLiveTurn(0);
}

void MessageListModel::tick(SteadyTime)
{
    for (int row = 0; row < rowCount(); ++row) {
        const MessageItem &item = m_items[static_cast<std::size_t>(row)];
        if (item.role == QLatin1String("assistant") && isLive(item) && !item.record && !item.firstTextMs)
            changed(row, {TtftTextRole});
    }
}

bool MessageListModel::isWaitingForFirstToken() const
{
    return std::any_of(m_items.begin(), m_items.end(), [](const MessageItem &item) {
        return item.role == QLatin1String("assistant") && isLive(item) && !item.record && !item.firstTextMs;
    });
}

} // namespace kvchat::ui
