// SPDX-License-Identifier: MIT
// Composer: where the user writes. Enter sends, Shift+Enter inserts a newline; the button sends,
// or stops the reply while one is generating in the shown conversation.
//
// A user's text is never lost: sending keeps the text (read-only, "pending") until the window
// confirms the engine started the turn (confirmSent, on TurnStarted); a failed turn gives it back
// (restore). Editing a message puts its text here with a banner; Enter resends it, Esc cancels.
// The submit time is taken first thing in the key handler: TTFT counts from that instant.
// Thread-safety: UI thread only.
#pragma once

#include "engine/runtime/engine_commands.h"

#include <QPlainTextEdit>
#include <QWidget>

#include <chrono>

class QLabel;
class QPushButton;

namespace kvchat::ui {

// The text box: Enter submits, Shift+Enter is a newline, Esc cancels an edit.
class ComposerEdit : public QPlainTextEdit
{
    Q_OBJECT

public:
    explicit ComposerEdit(QWidget *parent = nullptr);
    void setEditing(bool editing) { m_editing = editing; }

signals:
    void submitPressed(std::chrono::steady_clock::time_point when);
    void escapePressed();

protected:
    bool event(QEvent *event) override;
    void keyPressEvent(QKeyEvent *event) override;

private:
    bool m_editing = false; // Esc is ours while editing a message
};

class Composer : public QWidget
{
    Q_OBJECT

public:
    // What the composer holds for one conversation (the window swaps these when it switches).
    struct Draft
    {
        QString text;
        engine::TurnId pendingTurn = 0; // sent, not confirmed yet: the text stays read-only
        int editRow = -1;               // >= 0: editing that message row
    };

    explicit Composer(QWidget *parent = nullptr);
    ~Composer() override;

    Draft draft() const;
    void setDraft(const Draft &draft);
    QString text() const;
    void setText(const QString &text);

    // No model: nothing can be sent.
    void setModelReady(bool ready, const QString &modelName = QString());
    // A reply is generating in the shown conversation: the button stops it.
    void setBusy(bool busy);
    bool isBusy() const { return m_busy; }
    // The text was sent as turn; it stays, read-only, until confirmSent or restore.
    void setPending(engine::TurnId turn);
    engine::TurnId pendingTurn() const { return m_pendingTurn; }
    // The engine started turn: clear the text it came from.
    void confirmSent(engine::TurnId turn);
    // The turn failed: the text comes back (unless the user typed something new meanwhile).
    void restore(const QString &text);
    void beginEdit(int row, const QString &text);
    void cancelEdit();
    int editRow() const { return m_editRow; }

    ComposerEdit *editor() const { return m_edit; }
    QPushButton *sendButton() const { return m_send; }

    // Sends the text (or resends an edit) as if Enter was pressed at when.
    void submit(std::chrono::steady_clock::time_point when = std::chrono::steady_clock::now());

signals:
    void sendRequested(const QString &text, std::chrono::steady_clock::time_point submitted);
    void editSubmitted(int row, const QString &text, std::chrono::steady_clock::time_point submitted);
    void stopRequested();

private:
    void updateState();
    void fitHeight();

    ComposerEdit *m_edit = nullptr;
    QPushButton *m_send = nullptr;
    QWidget *m_banner = nullptr;
    QLabel *m_bannerText = nullptr;
    bool m_ready = false;
    bool m_busy = false;
    engine::TurnId m_pendingTurn = 0;
    int m_editRow = -1;
    QString m_modelName;
};

} // namespace kvchat::ui
