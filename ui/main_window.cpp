// SPDX-License-Identifier: MIT
#include "ui/main_window.h"

#include "ui/app_settings.h"
#include "ui/cache_panel.h"
#include "ui/chat_controller.h"
#include "ui/chat_view.h"
#include "ui/conversation_list_model.h"
#include "ui/conversation_sidebar.h"
#include "ui/message_list_model.h"
#include "ui/settings_dialog.h"
#include "ui/ttft_chart.h"
#include "ui/ttft_format.h"

#include <QApplication>
#include <QCloseEvent>
#include <QComboBox>
#include <QDir>
#include <QDockWidget>
#include <QDragEnterEvent>
#include <QFileDialog>
#include <QFileInfo>
#include <QHBoxLayout>
#include <QInputDialog>
#include <QLabel>
#include <QLineEdit>
#include <QListView>
#include <QMenuBar>
#include <QMessageBox>
#include <QMimeData>
#include <QProgressBar>
#include <QScreen>
#include <QShortcut>
#include <QSplitter>
#include <QStatusBar>
#include <QVBoxLayout>

#include <algorithm>

namespace kvchat::ui {

namespace {

QString ggufPathOf(const QMimeData *mime)
{
    if (!mime || !mime->hasUrls())
        return {};
    for (const QUrl &url : mime->urls())
        if (url.isLocalFile() && url.toLocalFile().endsWith(QStringLiteral(".gguf"), Qt::CaseInsensitive))
            return url.toLocalFile();
    return {};
}

// A one-line label that elides its text to the width it gets, instead of demanding the width of
// the whole text (a long system prompt must not squeeze the sidebar).
class ElidedLabel : public QLabel
{
public:
    explicit ElidedLabel(QWidget *parent) : QLabel(parent) { setTextFormat(Qt::PlainText); }
    void setFullText(const QString &text)
    {
        m_full = text;
        updateText();
    }
    QSize minimumSizeHint() const override { return {40, QLabel::minimumSizeHint().height()}; }

protected:
    void resizeEvent(QResizeEvent *event) override
    {
        QLabel::resizeEvent(event);
        updateText();
    }

private:
    void updateText() { setText(fontMetrics().elidedText(m_full, Qt::ElideRight, std::max(40, width()))); }
    QString m_full;
};

} // namespace

MainWindow::MainWindow(bridge::EngineBridge &bridge, AppSettings &settings, QWidget *parent)
    : QMainWindow(parent), m_bridge(bridge), m_settings(settings)
{
    setWindowTitle(tr("kvchat"));
    setAcceptDrops(true);
    m_controller = new ChatController(bridge, this);
    m_conversations = new ConversationListModel(this);
    m_prefetchDelay.setSingleShot(true);
    m_prefetchDelay.setInterval(kPrefetchDelayMs);
    connect(&m_prefetchDelay, &QTimer::timeout, this, [this] {
        const auto row = m_conversations->find(m_current);
        if (m_prefetchOnSelect && m_modelLoaded && row && !row->draft && !m_controller->isBusy(m_current))
            m_bridge.prefetch(m_current);
    });
    buildLayout();
    buildMenus();
    connectBridge();
    // The size and layout the user left it in; the first time, 1280 x 800 or the screen's size.
    if (!restoreGeometry(m_settings.windowGeometry())) {
        const QSize available = screen() ? screen()->availableSize() : QSize(1280, 800);
        resize(std::min(1280, available.width()), std::min(800, available.height()));
    }
    restoreState(m_settings.windowState());
    updateHeader();
    updateActions();
}

MainWindow::~MainWindow() = default;

void MainWindow::closeEvent(QCloseEvent *event)
{
    m_settings.setWindowLayout(saveGeometry(), saveState());
    QMainWindow::closeEvent(event);
}

void MainWindow::buildLayout()
{
    m_sidebar = new ConversationSidebar(m_conversations, this);
    m_sidebar->setMinimumWidth(220);

    auto *center = new QWidget(this);
    auto *centerLayout = new QVBoxLayout(center);
    centerLayout->setContentsMargins(0, 0, 0, 0);
    centerLayout->setSpacing(0);

    auto *header = new QWidget(center);
    header->setObjectName(QStringLiteral("chatHeader"));
    // The chat column has its own light colours (bubbles, header, composer) whatever the theme.
    header->setStyleSheet(QStringLiteral("#chatHeader { background: white; border-bottom: 1px solid #e3e6ea; }"
                                         "#chatHeader QLabel { color: #1f2328; }"));
    auto *headerLayout = new QVBoxLayout(header);
    headerLayout->setContentsMargins(20, 10, 20, 10);
    headerLayout->setSpacing(4);
    m_title = new ElidedLabel(header);
    m_title->setObjectName(QStringLiteral("conversationTitle"));
    QFont titleFont = m_title->font();
    titleFont.setPointSizeF(titleFont.pointSizeF() * 1.3);
    titleFont.setWeight(QFont::DemiBold);
    m_title->setFont(titleFont);
    m_systemLabel = new ElidedLabel(header);
    m_systemLabel->setObjectName(QStringLiteral("systemPromptLabel"));
    m_systemLabel->setStyleSheet(QStringLiteral("color: #6a737d;"));
    m_presetRow = new QWidget(header);
    auto *presetLayout = new QHBoxLayout(m_presetRow);
    presetLayout->setContentsMargins(0, 0, 0, 0);
    auto *presetLabel = new QLabel(tr("System prompt:"), m_presetRow);
    presetLabel->setStyleSheet(QStringLiteral("color: #6a737d;"));
    m_presetCombo = new QComboBox(m_presetRow);
    m_presetCombo->setObjectName(QStringLiteral("presetCombo"));
    m_presetCombo->setToolTip(tr("The system prompt of this new conversation. Conversations with the same system "
                                 "prompt share its KV cache."));
    presetLayout->addWidget(presetLabel);
    presetLayout->addWidget(m_presetCombo);
    presetLayout->addStretch(1);
    headerLayout->addWidget(m_title);
    headerLayout->addWidget(m_systemLabel);
    headerLayout->addWidget(m_presetRow);
    connect(m_presetCombo, &QComboBox::currentTextChanged, this, [this](const QString &name) {
        if (!name.isEmpty())
            m_settings.setCurrentPreset(name);
        m_presetCombo->setToolTip(m_presetCombo->currentData().toString());
    });
    reloadPresets();

    m_chatView = new ChatView(center);
    m_composer = new Composer(center);
    m_composer->setStyleSheet(QStringLiteral("#composer { background: white; border-top: 1px solid #e3e6ea; }"));
    m_composer->setAttribute(Qt::WA_StyledBackground);
    centerLayout->addWidget(header);
    centerLayout->addWidget(m_chatView, 1);
    centerLayout->addWidget(m_composer);

    auto *splitter = new QSplitter(this);
    splitter->addWidget(m_sidebar);
    splitter->addWidget(center);
    splitter->setStretchFactor(0, 0);
    splitter->setStretchFactor(1, 1);
    splitter->setSizes({270, 700});
    splitter->setChildrenCollapsible(false);
    setCentralWidget(splitter);

    auto *dock = new QDockWidget(tr("Latency & cache"), this);
    dock->setObjectName(QStringLiteral("latencyDock"));
    dock->toggleViewAction()->setText(tr("Latency && cache")); // "&" alone would mark a mnemonic
    dock->setFeatures(QDockWidget::DockWidgetMovable | QDockWidget::DockWidgetClosable);
    auto *panel = new QWidget(dock);
    auto *panelLayout = new QVBoxLayout(panel);
    panelLayout->setContentsMargins(4, 4, 4, 4);
    m_chart = new TtftChart(panel);
    m_cachePanel = new CachePanel(panel);
    panelLayout->addWidget(m_chart, 1);
    panelLayout->addWidget(m_cachePanel);
    dock->setWidget(panel);
    addDockWidget(Qt::RightDockWidgetArea, dock);
    resizeDocks({dock}, {380}, Qt::Horizontal);

    m_modelLabel = new QLabel(tr("No model"), this);
    m_modelLabel->setObjectName(QStringLiteral("modelLabel"));
    m_progress = new QProgressBar(this);
    m_progress->setObjectName(QStringLiteral("loadProgress"));
    m_progress->setRange(0, 0); // indeterminate
    m_progress->setFixedWidth(140);
    m_progress->setMaximumHeight(14);
    m_progress->setTextVisible(false);
    m_progress->hide();
    statusBar()->addPermanentWidget(m_progress);
    statusBar()->addPermanentWidget(m_modelLabel);

    connect(m_chatView, &ChatView::editRequested, this, &MainWindow::editMessage);
    connect(m_chatView, &ChatView::regenerateRequested, this, &MainWindow::regenerate);
    connect(m_chatView, &ChatView::statusMessage, this, [this](const QString &text) {
        statusBar()->showMessage(text, 3000);
    });
    connect(m_composer, &Composer::sendRequested, this, &MainWindow::onSend);
    connect(m_composer, &Composer::editSubmitted, this, &MainWindow::onEditSubmitted);
    connect(m_composer, &Composer::stopRequested, this, &MainWindow::stop);
    connect(m_sidebar, &ConversationSidebar::conversationSelected, this, &MainWindow::selectConversation);
    connect(m_sidebar, &ConversationSidebar::newRequested, this, &MainWindow::newConversation);
    connect(m_sidebar, &ConversationSidebar::deleteRequested, this, &MainWindow::confirmDelete);
    connect(m_sidebar, &ConversationSidebar::renameRequested, this, [this](const QString &name) {
        selectConversation(name);
        m_renameAction->trigger();
    });
    connect(m_sidebar, &ConversationSidebar::searchRequested, &m_bridge, &bridge::EngineBridge::searchConversations);
    auto *deleteKey = new QShortcut(QKeySequence(QKeySequence::Delete), m_sidebar->listView());
    deleteKey->setContext(Qt::WidgetShortcut);
    connect(deleteKey, &QShortcut::activated, this, [this] { confirmDelete(m_current); });
}

void MainWindow::buildMenus()
{
    QMenu *file = menuBar()->addMenu(tr("&File"));
    file->addAction(tr("&Open Model…"), QKeySequence::Open, this, &MainWindow::openModelDialog);
    m_recentMenu = file->addMenu(tr("Recent &Models"));
    rebuildRecentMenu();
    file->addSeparator();
    m_exportAction = file->addAction(tr("&Export…"), QKeySequence(tr("Ctrl+E")), this, &MainWindow::exportAnyWithDialog);
    QMenu *exportMenu = file->addMenu(tr("Export &As"));
    m_conversationExports << exportMenu->addAction(tr("Conversation as &Markdown…"), this, [this] {
        exportWithDialog(engine::ExportKind::ConversationMarkdown, false);
    });
    m_conversationExports << exportMenu->addAction(tr("Conversation as &JSON…"), this, [this] {
        exportWithDialog(engine::ExportKind::ConversationJson, false);
    });
    exportMenu->addSeparator();
    m_conversationExports << exportMenu->addAction(tr("Latency Log of This Conversation (CSV)…"), this, [this] {
        exportWithDialog(engine::ExportKind::LatencyCsv, false);
    });
    m_conversationExports << exportMenu->addAction(tr("Latency Log of This Conversation (JSON)…"), this, [this] {
        exportWithDialog(engine::ExportKind::LatencyJson, false);
    });
    exportMenu->addAction(tr("Latency Log of All Conversations (CSV)…"), this,
                          [this] { exportWithDialog(engine::ExportKind::LatencyCsv, true); });
    exportMenu->addAction(tr("Latency Log of All Conversations (JSON)…"), this,
                          [this] { exportWithDialog(engine::ExportKind::LatencyJson, true); });
    file->addSeparator();
    file->addAction(tr("&Quit"), QKeySequence::Quit, this, &QWidget::close);

    QMenu *conversation = menuBar()->addMenu(tr("&Conversation"));
    m_newAction = conversation->addAction(tr("&New"), QKeySequence::New, this, &MainWindow::newConversation);
    m_renameAction = conversation->addAction(tr("&Rename…"), QKeySequence(Qt::Key_F2), this, [this] {
        const auto row = m_conversations->find(m_current);
        if (!row || row->draft)
            return;
        QInputDialog dialog(this);
        dialog.setWindowTitle(tr("Rename Conversation"));
        dialog.setLabelText(tr("Title:"));
        dialog.setTextValue(row->title);
        if (dialog.exec() == QDialog::Accepted && !dialog.textValue().trimmed().isEmpty())
            renameConversation(m_current, dialog.textValue().trimmed());
    });
    m_deleteAction = conversation->addAction(tr("&Delete…"), this, [this] { confirmDelete(m_current); });
    conversation->addSeparator();
    conversation->addAction(tr("&Search"), QKeySequence::Find, m_sidebar, &ConversationSidebar::focusSearch);
    conversation->addSeparator();
    m_stopAction = conversation->addAction(tr("S&top"), QKeySequence(Qt::Key_Escape), this, &MainWindow::stop);
    m_regenerateAction = conversation->addAction(tr("Re&generate"), QKeySequence(tr("Ctrl+R")), this,
                                                 &MainWindow::regenerate);

    QMenu *view = menuBar()->addMenu(tr("&View"));
    if (auto *dock = findChild<QDockWidget *>(QStringLiteral("latencyDock")))
        view->addAction(dock->toggleViewAction());

    QMenu *settings = menuBar()->addMenu(tr("&Settings"));
    settings->addAction(tr("&Settings…"), QKeySequence::Preferences, this, &MainWindow::openSettings)
        ->setMenuRole(QAction::PreferencesRole);

    QMenu *help = menuBar()->addMenu(tr("&Help"));
    help->addAction(tr("&About kvchat"), this, &MainWindow::showAbout);
    help->addAction(tr("About &Qt"), qApp, &QApplication::aboutQt);
}

void MainWindow::connectBridge()
{
    connect(&m_bridge, &bridge::EngineBridge::modelLoaded, this, &MainWindow::onModelLoaded);
    connect(&m_bridge, &bridge::EngineBridge::modelLoadFailed, this, &MainWindow::onModelLoadFailed);
    connect(&m_bridge, &bridge::EngineBridge::conversationsListed, this, &MainWindow::onConversationsListed);
    connect(&m_bridge, &bridge::EngineBridge::residencyChanged, m_conversations,
            &ConversationListModel::updateResidency);
    connect(&m_bridge, &bridge::EngineBridge::cacheStatsChanged, m_cachePanel, &CachePanel::setStats);
    connect(&m_bridge, &bridge::EngineBridge::searchResults, m_sidebar, &ConversationSidebar::setSearchResults);
    connect(&m_bridge, &bridge::EngineBridge::exportFinished, this, &MainWindow::onExportFinished);
    connect(&m_bridge, &bridge::EngineBridge::engineError, this, [this](const QString &message) {
        statusBar()->showMessage(message, 10000);
    });
    connect(m_controller, &ChatController::turnStarted, this, &MainWindow::onTurnStarted);
    connect(m_controller, &ChatController::turnFailed, this, &MainWindow::onTurnFailed);
    connect(m_controller, &ChatController::busyChanged, this, &MainWindow::onBusyChanged);
    connect(m_controller, &ChatController::conversationLoaded, this, [this](const QString &name) {
        if (name == m_current) {
            refreshChart(name);
            updateHeader();
        }
    });
    // Queued: the chart rebuild (milliseconds) runs after the first token's text, which the
    // engine posted right behind this event, is on screen.
    connect(m_controller, &ChatController::firstTokenShown, this, &MainWindow::refreshChart, Qt::QueuedConnection);
    connect(m_controller, &ChatController::turnFinished, this, &MainWindow::refreshChart);
}

void MainWindow::rebuildRecentMenu()
{
    m_recentMenu->clear();
    const QStringList recent = m_settings.recentModels();
    for (const QString &path : recent) {
        QAction *action = m_recentMenu->addAction(QFileInfo(path).fileName(), this, [this, path] { openModel(path); });
        action->setToolTip(path);
        action->setStatusTip(path);
    }
    if (!recent.isEmpty()) {
        m_recentMenu->addSeparator();
        m_recentMenu->addAction(tr("Clear List"), this, [this] {
            m_settings.clearRecentModels();
            rebuildRecentMenu();
        });
    }
    m_recentMenu->setEnabled(!recent.isEmpty());
}

void MainWindow::openLastModel()
{
    // A file that went away is only mentioned: nothing to fix at start-up.
    const QString last = m_settings.lastModelPath();
    if (last.isEmpty())
        return;
    if (QFileInfo::exists(last))
        openModel(last);
    else
        statusBar()->showMessage(tr("The last model is no longer at %1").arg(QDir::toNativeSeparators(last)), 10000);
}

void MainWindow::openModelDialog()
{
    const QString start = m_settings.lastModelPath().isEmpty() ? QString() : QFileInfo(m_settings.lastModelPath()).path();
    const QString path = QFileDialog::getOpenFileName(this, tr("Open Model"), start, tr("GGUF models (*.gguf);;All files (*)"));
    if (!path.isEmpty())
        openModel(path);
}

void MainWindow::openModel(const QString &path)
{
    m_modelLoading = true;
    m_modelLoaded = false;
    m_loadingPath = path;
    m_progress->show();
    m_modelLabel->setText(tr("Loading %1…").arg(QFileInfo(path).fileName()));
    m_composer->setModelReady(false);
    updateHeader();
    updateActions();
    m_bridge.openModel(path, m_settings.engineOptions());
}

void MainWindow::onModelLoaded(const engine::ModelInfo &info)
{
    m_modelInfo = info;
    showLoadedModel();
    const QString name = QFileInfo(QString::fromStdString(info.path)).completeBaseName();
    m_settings.setLastModelPath(QString::fromStdString(info.path));
    rebuildRecentMenu();
    statusBar()->showMessage(tr("Model loaded: %1").arg(name), 5000);
    m_pickConversation = m_current.isEmpty();
    updateHeader();
    updateActions();
}

void MainWindow::showLoadedModel()
{
    const engine::ModelInfo &info = m_modelInfo;
    m_modelLoading = false;
    m_modelLoaded = true;
    m_progress->hide();
    // The file name says what the user picked (GGUF names are often training-run labels).
    const QString name = QFileInfo(QString::fromStdString(info.path)).completeBaseName();
    m_modelLabel->setText(tr("%1  ·  %2  ·  context %3  ·  %4")
                              .arg(name, QString::fromStdString(info.backend), formatCount(info.contextLength),
                                   QString::fromStdString(info.chatTemplate)));
    QString tooltip = tr("%1\n%2, %3 layers, %4 MiB")
                          .arg(QDir::toNativeSeparators(QString::fromStdString(info.path)),
                               QString::fromStdString(info.name.empty() ? info.architecture : info.name))
                          .arg(info.nLayers)
                          .arg(info.fileBytes / (1024 * 1024));
    if (!info.backendDetail.empty())
        tooltip += QStringLiteral("\n") + QString::fromStdString(info.backendDetail);
    if (!info.contextNotice.empty()) {
        // A small device KV budget shortens every conversation's context: say so where it is shown.
        tooltip += QStringLiteral("\n") +
                   tr("Context: %1 (Settings → KV cache)").arg(QString::fromStdString(info.contextNotice));
        statusBar()->showMessage(tr("Context limited: %1").arg(QString::fromStdString(info.contextNotice)), 15000);
    }
    if (!info.backendNotice.empty()) {
        // The GPU was asked for and is not used: say so where the backend is named, and why.
        m_modelLabel->setText(m_modelLabel->text() + tr("  ·  GPU not used"));
        tooltip += QStringLiteral("\n") + QString::fromStdString(info.backendNotice);
        statusBar()->showMessage(QString::fromStdString(info.backendNotice), 15000);
    }
    m_modelLabel->setToolTip(tooltip);
    m_composer->setModelReady(true, name);
}

void MainWindow::onModelLoadFailed(const QString &path, const QString &message)
{
    // The engine keeps the model it had when a new one cannot be opened: show that one again.
    if (!m_modelInfo.path.empty()) {
        showLoadedModel();
    } else {
        m_modelLoading = false;
        m_modelLoaded = false;
        m_progress->hide();
        m_modelLabel->setText(tr("No model"));
        m_composer->setModelReady(false);
    }
    updateHeader();
    updateActions();
    showError(tr("Could not open the model"), tr("%1\n\n%2").arg(QDir::toNativeSeparators(path), message));
}

void MainWindow::showError(const QString &title, const QString &message)
{
    statusBar()->showMessage(message.section(QLatin1Char('\n'), -1), 10000);
    if (m_errorBox) { // one box at a time: a second error replaces the text
        m_errorBox->setWindowTitle(title);
        m_errorBox->setText(message);
        return;
    }
    m_errorBox = new QMessageBox(QMessageBox::Warning, title, message, QMessageBox::Ok, this);
    m_errorBox->setObjectName(QStringLiteral("errorBox"));
    m_errorBox->setAttribute(Qt::WA_DeleteOnClose);
    m_errorBox->open();
}

void MainWindow::openSettings()
{
    SettingsDialog dialog(m_settings, this);
    if (dialog.exec() != QDialog::Accepted)
        return;
    reloadPresets();
    rebuildRecentMenu();
    if (dialog.engineSettingsChanged() && !m_settings.lastModelPath().isEmpty())
        openModel(m_settings.lastModelPath());
}

void MainWindow::showAbout()
{
    QMessageBox::about(this, tr("About kvchat"),
                       tr("<h3>kvchat %1</h3><p>A local LLM chat whose reason to exist is time to first token: "
                          "every conversation keeps its attention KV cache — device, RAM, disk — and restores it "
                          "instead of recomputing the history.</p><p>Each reply shows its TTFT; hover it for where "
                          "the time went.</p>")
                           .arg(QCoreApplication::applicationVersion()));
}

void MainWindow::reloadPresets()
{
    const QSignalBlocker block(m_presetCombo);
    m_presetCombo->clear();
    for (const SystemPromptPreset &preset : m_settings.presets())
        m_presetCombo->addItem(preset.name, preset.text.isEmpty() ? tr("The model template's own system prompt")
                                                                  : preset.text);
    m_presetCombo->setCurrentText(m_settings.currentPreset());
    m_presetCombo->setToolTip(m_presetCombo->currentData().toString());
}

void MainWindow::updateHeader()
{
    const auto row = m_conversations->find(m_current);
    const QString title = row ? row->title : (m_current.isEmpty() ? tr("kvchat") : m_current);
    static_cast<ElidedLabel *>(m_title)->setFullText(title);
    const bool draft = !row || row->draft;
    m_presetRow->setVisible(draft && !m_current.isEmpty());
    m_systemLabel->setVisible(!draft);
    if (!draft) {
        const QString prompt = row->systemPrompt.simplified();
        static_cast<ElidedLabel *>(m_systemLabel)->setFullText(prompt.isEmpty() ? tr("System prompt: the model's default")
                                                                                : tr("System prompt: %1").arg(prompt));
        m_systemLabel->setToolTip(row->systemPrompt);
    }
    setWindowTitle(m_current.isEmpty() ? tr("kvchat") : tr("%1 — kvchat").arg(title));
    if (m_modelLoading)
        m_chatView->setEmptyText(tr("<h3>Loading the model…</h3>"));
    else if (!m_modelLoaded)
        m_chatView->setEmptyText(tr("<h2>Welcome to kvchat</h2><p>Open a GGUF model to start: <b>File ▸ Open "
                                    "Model…</b> (Ctrl+O),<br>or drop a .gguf file on this window.</p>"));
    else
        m_chatView->setEmptyText(tr("<h3>Ask anything</h3><p>This conversation's KV cache is kept on the device, in "
                                    "RAM and on disk,<br>so coming back to it — even after a restart — skips "
                                    "recomputing the history.</p><p>Each reply shows its time to first token; hover "
                                    "it for where the time went.</p>"));
}

void MainWindow::updateActions()
{
    const auto row = m_conversations->find(m_current);
    const bool stored = row && !row->draft;
    const bool busy = m_controller->isBusy(m_current);
    m_stopAction->setEnabled(busy);
    m_regenerateAction->setEnabled(m_modelLoaded && stored && !busy && m_chatView->model() &&
                                   m_chatView->model()->lastAssistantRow() >= 0);
    m_renameAction->setEnabled(stored);
    m_deleteAction->setEnabled(!m_current.isEmpty() && !busy);
    m_newAction->setEnabled(true);
    m_exportAction->setEnabled(m_modelLoaded);
    for (QAction *action : m_conversationExports)
        action->setEnabled(m_modelLoaded && stored);
    m_composer->setBusy(busy);
}

void MainWindow::dragEnterEvent(QDragEnterEvent *event)
{
    if (!ggufPathOf(event->mimeData()).isEmpty())
        event->acceptProposedAction();
}

void MainWindow::dropEvent(QDropEvent *event)
{
    const QString path = ggufPathOf(event->mimeData());
    if (path.isEmpty())
        return;
    event->acceptProposedAction();
    openModel(path);
}

} // namespace kvchat::ui
