// SPDX-License-Identifier: MIT
// MainWindow, second half: conversations, turns and export (see main_window.h).
#include "ui/main_window.h"

#include "ui/app_settings.h"
#include "ui/chat_controller.h"
#include "ui/chat_view.h"
#include "ui/conversation_list_model.h"
#include "ui/conversation_sidebar.h"
#include "ui/message_list_model.h"
#include "ui/ttft_chart.h"

#include <QDateTime>
#include <QDir>
#include <QFileDialog>
#include <QFileInfo>
#include <QMessageBox>
#include <QStandardPaths>
#include <QStatusBar>

namespace kvchat::ui {

namespace {

QString suffixOf(engine::ExportKind kind)
{
    switch (kind) {
    case engine::ExportKind::ConversationMarkdown:
        return QStringLiteral("md");
    case engine::ExportKind::LatencyCsv:
        return QStringLiteral("csv");
    case engine::ExportKind::ConversationJson:
    case engine::ExportKind::LatencyJson:
        return QStringLiteral("json");
    }
    return {};
}

// A file name from a title: letters, digits, spaces and dashes.
QString fileStem(const QString &title)
{
    QString stem;
    for (const QChar c : title)
        stem += c.isLetterOrNumber() || c == QLatin1Char('-') ? c : QLatin1Char(c.isSpace() ? ' ' : '-');
    stem = stem.simplified();
    return stem.isEmpty() ? QStringLiteral("conversation") : stem;
}

// A new conversation's title: its first message's first line, cut at a word near 48 characters.
QString titleFromMessage(const QString &text)
{
    constexpr qsizetype kMaxTitle = 48;
    const QString firstLine = text.trimmed().section(QLatin1Char('\n'), 0, 0).simplified();
    if (firstLine.size() <= kMaxTitle)
        return firstLine;
    qsizetype cut = firstLine.lastIndexOf(QLatin1Char(' '), kMaxTitle);
    if (cut < kMaxTitle / 2)
        cut = firstLine.at(kMaxTitle - 1).isHighSurrogate() ? kMaxTitle - 1 : kMaxTitle; // not inside a pair
    return firstLine.left(cut).trimmed() + QStringLiteral("…");
}

} // namespace

void MainWindow::onConversationsListed(const engine::ConversationList &list)
{
    m_conversations->setConversations(list);
    if (m_pickConversation) {
        m_pickConversation = false;
        // At start (or after a model load with nothing shown): the most recent conversation, whose
        // KV the prefetch then brings back, or a new one.
        if (m_conversations->rowCount() > 0)
            selectConversation(m_conversations->row(0).name);
        else
            newConversation();
    } else if (!m_current.isEmpty() && m_conversations->rowOf(m_current) < 0 && !m_controller->isBusy(m_current)) {
        // The shown conversation went away (deleted elsewhere).
        newConversation();
    }
    updateHeader();
    updateActions();
}

void MainWindow::newConversation()
{
    // An empty new conversation is reused rather than piling up.
    for (int row = 0; row < m_conversations->rowCount(); ++row) {
        const ConversationRow &r = m_conversations->row(row);
        if (r.draft && !m_controller->isBusy(r.name)) {
            MessageListModel *model = m_controller->findModel(r.name);
            if (!model || model->rowCount() == 0) {
                selectConversation(r.name);
                m_composer->editor()->setFocus();
                return;
            }
        }
    }
    const QString name = m_conversations->uniqueNewName(QDateTime::currentDateTime());
    m_conversations->addDraft(name);
    selectConversation(name);
    m_composer->editor()->setFocus();
}

void MainWindow::selectConversation(const QString &name)
{
    if (name.isEmpty())
        return;
    if (name != m_current) {
        if (!m_current.isEmpty())
            m_drafts.insert(m_current, m_composer->draft());
        m_current = name;
        m_composer->setDraft(m_drafts.take(name));
        m_chatView->setModel(m_controller->model(name));
    }
    m_sidebar->select(name);
    const auto row = m_conversations->find(name);
    if (m_modelLoaded && row && !row->draft) {
        // The stored messages may be newer than what this window last saw; the prefetch starts
        // restoring the KV before the user types (after a short pause, see kPrefetchDelayMs).
        m_bridge.loadConversation(name);
        m_prefetchDelay.start();
    }
    refreshChart(name);
    updateHeader();
    updateActions();
}

void MainWindow::renameConversation(const QString &name, const QString &title)
{
    if (MessageListModel *model = m_controller->findModel(name))
        model->setTitle(title);
    m_conversations->setTitle(name, title);
    // A draft is stored by its first turn, with the title it has then (see onSend).
    if (!m_conversations->find(name).value_or(ConversationRow{}).draft)
        m_bridge.renameConversation(name, title);
    updateHeader();
}

void MainWindow::confirmDelete(const QString &name)
{
    const auto row = m_conversations->find(name);
    if (!row || m_controller->isBusy(name))
        return;
    auto *box = new QMessageBox(
        QMessageBox::Question, tr("Delete Conversation"),
        tr("Delete “%1”, its messages and the cached KV only it uses? This cannot be undone.").arg(row->title),
        QMessageBox::Yes | QMessageBox::Cancel, this);
    box->setObjectName(QStringLiteral("deleteBox"));
    box->setDefaultButton(QMessageBox::Cancel);
    box->setAttribute(Qt::WA_DeleteOnClose);
    connect(box, &QMessageBox::finished, this, [this, box, name](int) {
        if (box->clickedButton() == box->button(QMessageBox::Yes))
            deleteConversation(name);
    });
    box->open();
}

void MainWindow::deleteConversation(const QString &name)
{
    const auto row = m_conversations->find(name);
    if (!row || m_controller->isBusy(name))
        return;
    if (row->draft)
        m_conversations->removeDraft(name);
    // A draft too: a turn that failed may have stored it already (the engine saves the user's text
    // before anything can fail).
    if (m_modelLoaded)
        m_bridge.deleteConversation(name);
    m_drafts.remove(name);
    if (name == m_current) {
        m_chatView->setModel(nullptr);
        m_current.clear();
        m_composer->setDraft({});
        // The next most recent one, or a new conversation.
        QString next;
        for (int i = 0; i < m_conversations->rowCount() && next.isEmpty(); ++i)
            if (m_conversations->row(i).name != name)
                next = m_conversations->row(i).name;
        if (next.isEmpty())
            newConversation();
        else
            selectConversation(next);
    }
    m_controller->forget(name);
    statusBar()->showMessage(tr("Deleted “%1”").arg(row->title), 4000);
}

void MainWindow::onSend(const QString &text, std::chrono::steady_clock::time_point submitted)
{
    if (m_current.isEmpty())
        newConversation();
    const auto row = m_conversations->find(m_current);
    // A new conversation gets the chosen preset's system prompt; a stored one keeps its own.
    const std::optional<QString> systemPrompt = (!row || row->draft) ? m_settings.systemPrompt() : std::nullopt;
    m_prefetchDelay.stop(); // the turn restores the KV itself
    // A new conversation is named after its first message, unless the user named it already; the
    // engine stores the title with the conversation.
    std::optional<QString> title;
    if (row && row->draft)
        title = row->title == row->name ? titleFromMessage(text) : row->title;
    const engine::TurnId turn =
        m_controller->send(m_current, text, systemPrompt, m_settings.generationSettings(), submitted, title);
    if (turn != 0) {
        m_composer->setPending(turn);
        if (title)
            renameConversation(m_current, *title); // shown now; still a draft, so stored by the turn
    }
    updateActions();
}

void MainWindow::onEditSubmitted(int row, const QString &text, std::chrono::steady_clock::time_point submitted)
{
    const engine::TurnId turn = m_controller->resend(m_current, row, text, m_settings.generationSettings(), submitted);
    if (turn != 0) {
        m_composer->setPending(turn);
        refreshChart(m_current);
    } else {
        m_composer->cancelEdit();
        statusBar()->showMessage(tr("That message can no longer be edited"), 5000);
    }
    updateActions();
}

void MainWindow::editMessage(int row)
{
    MessageListModel *model = m_controller->findModel(m_current);
    if (!model || row < 0 || row >= model->rowCount() || !model->index(row).data(MessageListModel::CanEditRole).toBool())
        return;
    m_composer->beginEdit(row, model->item(row).content);
}

void MainWindow::regenerate()
{
    MessageListModel *model = m_controller->findModel(m_current);
    if (!model || !m_modelLoaded)
        return;
    const int row = model->lastAssistantRow();
    if (row < 0 || !model->index(row).data(MessageListModel::CanRegenerateRole).toBool())
        return;
    const engine::TurnId turn = m_controller->resend(m_current, row, std::nullopt, m_settings.generationSettings(),
                                                     std::chrono::steady_clock::now());
    if (turn != 0)
        refreshChart(m_current);
    updateActions();
}

void MainWindow::stop()
{
    m_controller->stop(m_current);
    statusBar()->showMessage(tr("Stopping…"), 2000);
}

void MainWindow::onTurnStarted(const QString &conversation, engine::TurnId turn)
{
    if (conversation == m_current)
        m_composer->confirmSent(turn);
    else if (auto it = m_drafts.find(conversation); it != m_drafts.end() && it->pendingTurn == turn)
        *it = {};
    // A new conversation exists in the store now; the list refreshes after the turn.
    if (const auto row = m_conversations->find(conversation); row && row->draft) {
        if (MessageListModel *model = m_controller->findModel(conversation))
            m_conversations->promoteDraft(conversation, model->conversationId());
        updateHeader();
    }
    updateActions();
}

void MainWindow::onTurnFailed(const QString &conversation, engine::TurnId, const std::optional<QString> &text,
                              const QString &message)
{
    if (text) {
        if (conversation == m_current) {
            m_composer->restore(*text);
        } else {
            Composer::Draft &draft = m_drafts[conversation];
            draft.pendingTurn = 0;
            if (!draft.text.contains(*text))
                draft.text = draft.text.isEmpty() ? *text : *text + QStringLiteral("\n\n") + draft.text;
        }
    }
    QString detail = message;
    if (conversation != m_current) {
        const MessageListModel *model = m_controller->findModel(conversation);
        detail = tr("In “%1”: %2").arg(model && !model->title().isEmpty() ? model->title() : conversation, message);
    }
    if (text)
        detail += conversation == m_current ? tr("\n\nYour text is back in the message box.")
                                            : tr("\n\nYour text is back in that conversation's message box.");
    showError(tr("The message could not be answered"), detail);
    updateActions();
}

void MainWindow::onBusyChanged(const QString &conversation, bool busy)
{
    m_conversations->setGenerating(conversation, busy);
    if (conversation == m_current)
        updateActions();
}

void MainWindow::refreshChart(const QString &conversation)
{
    if (conversation != m_current)
        return;
    MessageListModel *model = m_controller->findModel(conversation);
    m_chart->setTurns(model ? model->turnRecords() : std::vector<engine::TurnRecord>{});
    updateActions();
}

void MainWindow::exportTo(engine::ExportKind kind, const QString &conversation, const QString &path)
{
    statusBar()->showMessage(tr("Exporting to %1…").arg(QDir::toNativeSeparators(path)));
    m_bridge.exportToFile(kind, conversation, path);
}

void MainWindow::exportWithDialog(engine::ExportKind kind, bool allConversations)
{
    const bool latency = kind == engine::ExportKind::LatencyCsv || kind == engine::ExportKind::LatencyJson;
    const auto row = m_conversations->find(m_current);
    if (!allConversations && (!row || row->draft))
        return;
    const QString stem = allConversations ? QStringLiteral("kvchat latency")
                                          : fileStem(row->title) + (latency ? QStringLiteral(" latency") : QString());
    const QString dir = QStandardPaths::writableLocation(QStandardPaths::DocumentsLocation);
    const QString suffix = suffixOf(kind);
    const QString filter = suffix == QLatin1String("md") ? tr("Markdown (*.md)")
                           : suffix == QLatin1String("csv") ? tr("CSV (*.csv)")
                                                            : tr("JSON (*.json)");
    QString path = QFileDialog::getSaveFileName(this, tr("Export"), QDir(dir).filePath(stem + QLatin1Char('.') + suffix),
                                                filter);
    if (path.isEmpty())
        return;
    if (QFileInfo(path).suffix().isEmpty())
        path += QLatin1Char('.') + suffix;
    exportTo(kind, allConversations ? QString() : m_current, path);
}

void MainWindow::exportAnyWithDialog()
{
    // Ctrl+E: one dialog, the format from the chosen filter.
    const auto row = m_conversations->find(m_current);
    const bool stored = row && !row->draft;
    const QString markdown = tr("Conversation as Markdown (*.md)");
    const QString json = tr("Conversation as JSON (*.json)");
    const QString csv = tr("Latency log of this conversation, CSV (*.csv)");
    const QString latencyJson = tr("Latency log of this conversation, JSON (*.json)");
    const QString allCsv = tr("Latency log of all conversations, CSV (*.csv)");
    const QString allJson = tr("Latency log of all conversations, JSON (*.json)");
    QStringList filters;
    if (stored)
        filters << markdown << json << csv << latencyJson;
    filters << allCsv << allJson;
    QString selected = filters.first();
    const QString dir = QStandardPaths::writableLocation(QStandardPaths::DocumentsLocation);
    QString path = QFileDialog::getSaveFileName(this, tr("Export"),
                                                QDir(dir).filePath(stored ? fileStem(row->title) : QStringLiteral("kvchat latency")),
                                                filters.join(QStringLiteral(";;")), &selected);
    if (path.isEmpty())
        return;
    engine::ExportKind kind = engine::ExportKind::LatencyCsv;
    if (selected == markdown)
        kind = engine::ExportKind::ConversationMarkdown;
    else if (selected == json)
        kind = engine::ExportKind::ConversationJson;
    else if (selected == latencyJson || selected == allJson)
        kind = engine::ExportKind::LatencyJson;
    if (QFileInfo(path).suffix().isEmpty())
        path += QLatin1Char('.') + suffixOf(kind);
    exportTo(kind, selected == allCsv || selected == allJson ? QString() : m_current, path);
}

void MainWindow::onExportFinished(const QString &path, bool ok, const QString &message)
{
    if (ok)
        statusBar()->showMessage(tr("Exported to %1").arg(QDir::toNativeSeparators(path)), 8000);
    else
        showError(tr("Export failed"), tr("Could not export to %1:\n\n%2").arg(QDir::toNativeSeparators(path), message));
    emit exportFinished(path, ok, message);
}

} // namespace kvchat::ui
