// SPDX-License-Identifier: MIT
// MainWindow: conversation sidebar | chat view over the composer | a dock with the TTFT chart and
// the KV cache panel; menus for models, conversations, export, settings; the status bar shows the
// model (name, backend, context length) and an indeterminate progress bar while one loads.
//
// It talks to the engine only through the EngineBridge it is given (commands out, queued signals
// in) and keeps its own models of what the events said. Message boxes are window-modal but open
// without blocking (QMessageBox::open), so no engine event ever waits on a dialog.
//
// The public commands below are what the menus call; tests call them directly to bypass file
// dialogs. Split over main_window.cpp (construction, menus, model) and main_window_chat.cpp
// (conversations, turns, export).
// Thread-safety: UI thread only.
#pragma once

#include "app/bridge/engine_bridge.h"
#include "ui/composer.h"

#include <QHash>
#include <QMainWindow>
#include <QPointer>
#include <QTimer>

class QAction;
class QComboBox;
class QLabel;
class QMenu;
class QMessageBox;
class QProgressBar;

namespace kvchat::ui {

class AppSettings;
class CachePanel;
class ChatController;
class ChatView;
class ConversationListModel;
class ConversationSidebar;
class TtftChart;

class MainWindow : public QMainWindow
{
    Q_OBJECT

public:
    static constexpr int kPrefetchDelayMs = 150; // selecting through the list does not queue work per row

    // bridge and settings must outlive the window.
    MainWindow(bridge::EngineBridge &bridge, AppSettings &settings, QWidget *parent = nullptr);
    ~MainWindow() override;

    // --- commands (menus, drops, tests) ---
    void openModel(const QString &path);
    // Reopens the model of the last session (from AppSettings), if its file still exists.
    void openLastModel();
    void newConversation();
    void selectConversation(const QString &name);
    void renameConversation(const QString &name, const QString &title);
    // Asks for confirmation (non-blocking box), then deletes.
    void confirmDelete(const QString &name);
    void deleteConversation(const QString &name);
    void editMessage(int row);
    void regenerate();
    void stop();
    // Writes an export without a file dialog; conversation "" with a latency kind: all conversations.
    void exportTo(engine::ExportKind kind, const QString &conversation, const QString &path);
    // Prefetch on select brings a conversation's KV to the device before the user types (default on).
    void setPrefetchOnSelect(bool on) { m_prefetchOnSelect = on; }

    // --- inspection (tests) ---
    QString currentConversation() const { return m_current; }
    bool isModelLoaded() const { return m_modelLoaded; }
    bool isModelLoading() const { return m_modelLoading; }
    const engine::ModelInfo &modelInfo() const { return m_modelInfo; }
    ChatController *controller() const { return m_controller; }
    ChatView *chatView() const { return m_chatView; }
    Composer *composer() const { return m_composer; }
    ConversationSidebar *sidebar() const { return m_sidebar; }
    ConversationListModel *conversations() const { return m_conversations; }
    TtftChart *ttftChart() const { return m_chart; }
    CachePanel *cachePanel() const { return m_cachePanel; }
    QProgressBar *loadProgress() const { return m_progress; }
    QLabel *modelLabel() const { return m_modelLabel; }

signals:
    void exportFinished(const QString &path, bool ok, const QString &message);

protected:
    void closeEvent(QCloseEvent *event) override;
    void dragEnterEvent(QDragEnterEvent *event) override;
    void dropEvent(QDropEvent *event) override;

private:
    // main_window.cpp
    void buildLayout();
    void buildMenus();
    void connectBridge();
    void rebuildRecentMenu();
    void openModelDialog();
    void openSettings();
    void showAbout();
    void onModelLoaded(const engine::ModelInfo &info);
    void onModelLoadFailed(const QString &path, const QString &message);
    void showLoadedModel(); // the status bar and composer for m_modelInfo
    void showError(const QString &title, const QString &message);
    void updateActions();
    void updateHeader();
    void reloadPresets();

    // main_window_chat.cpp
    void onConversationsListed(const engine::ConversationList &list);
    void onSend(const QString &text, std::chrono::steady_clock::time_point submitted);
    void onEditSubmitted(int row, const QString &text, std::chrono::steady_clock::time_point submitted);
    void onTurnStarted(const QString &conversation, engine::TurnId turn);
    void onTurnFailed(const QString &conversation, engine::TurnId turn, const std::optional<QString> &text,
                      const QString &message);
    void onBusyChanged(const QString &conversation, bool busy);
    void refreshChart(const QString &conversation);
    void exportWithDialog(engine::ExportKind kind, bool allConversations);
    void exportAnyWithDialog();
    void onExportFinished(const QString &path, bool ok, const QString &message);

    bridge::EngineBridge &m_bridge;
    AppSettings &m_settings;
    ChatController *m_controller = nullptr;
    ConversationListModel *m_conversations = nullptr;

    ConversationSidebar *m_sidebar = nullptr;
    ChatView *m_chatView = nullptr;
    Composer *m_composer = nullptr;
    TtftChart *m_chart = nullptr;
    CachePanel *m_cachePanel = nullptr;
    QLabel *m_title = nullptr;
    QLabel *m_systemLabel = nullptr;
    QComboBox *m_presetCombo = nullptr;
    QWidget *m_presetRow = nullptr;
    QLabel *m_modelLabel = nullptr;
    QProgressBar *m_progress = nullptr;
    QPointer<QMessageBox> m_errorBox;
    QMenu *m_recentMenu = nullptr;

    QAction *m_newAction = nullptr;
    QAction *m_renameAction = nullptr;
    QAction *m_deleteAction = nullptr;
    QAction *m_stopAction = nullptr;
    QAction *m_regenerateAction = nullptr;
    QAction *m_exportAction = nullptr;
    QList<QAction *> m_conversationExports; // need a stored conversation

    QString m_current; // the shown conversation's name ("" before the first one)
    QHash<QString, Composer::Draft> m_drafts; // composer contents of conversations not shown
    engine::ModelInfo m_modelInfo;
    QString m_loadingPath;
    bool m_modelLoaded = false;
    bool m_modelLoading = false;
    bool m_pickConversation = false; // select one when the next list arrives (after a model load)
    bool m_prefetchOnSelect = true;
    QTimer m_prefetchDelay;
};

} // namespace kvchat::ui
