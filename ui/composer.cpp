// SPDX-License-Identifier: MIT
#include "ui/composer.h"

#include <QHBoxLayout>
#include <QKeyEvent>
#include <QLabel>
#include <QPushButton>
#include <QTextBlock>
#include <QTextLayout>
#include <QStyle>
#include <QVBoxLayout>

#include <algorithm>

namespace kvchat::ui {

namespace {
constexpr int kMaxLines = 8;

bool isEnter(const QKeyEvent *event)
{
    return event->key() == Qt::Key_Return || event->key() == Qt::Key_Enter;
}
} // namespace

ComposerEdit::ComposerEdit(QWidget *parent) : QPlainTextEdit(parent)
{
    setTabChangesFocus(true);
}

bool ComposerEdit::event(QEvent *event)
{
    // While editing, Esc cancels the edit here instead of triggering the window's Stop shortcut.
    if (event->type() == QEvent::ShortcutOverride && m_editing &&
        static_cast<QKeyEvent *>(event)->key() == Qt::Key_Escape) {
        event->accept();
        return true;
    }
    return QPlainTextEdit::event(event);
}

void ComposerEdit::keyPressEvent(QKeyEvent *event)
{
    if (isEnter(event) && !(event->modifiers() & (Qt::ShiftModifier | Qt::AltModifier))) {
        // The submit instant is the first thing taken: TTFT counts from here.
        const auto now = std::chrono::steady_clock::now();
        emit submitPressed(now);
        event->accept();
        return;
    }
    if (isEnter(event)) {
        insertPlainText(QStringLiteral("\n"));
        event->accept();
        return;
    }
    if (event->key() == Qt::Key_Escape && m_editing) {
        emit escapePressed();
        event->accept();
        return;
    }
    QPlainTextEdit::keyPressEvent(event);
}

Composer::Composer(QWidget *parent) : QWidget(parent)
{
    setObjectName(QStringLiteral("composer"));
    auto *outer = new QVBoxLayout(this);
    outer->setContentsMargins(16, 8, 16, 12);
    outer->setSpacing(6);

    m_banner = new QWidget(this);
    m_banner->setObjectName(QStringLiteral("editBanner"));
    auto *bannerLayout = new QHBoxLayout(m_banner);
    bannerLayout->setContentsMargins(10, 4, 4, 4);
    m_bannerText = new QLabel(tr("Editing a message: Enter resends it and replaces what followed; Esc cancels."),
                              m_banner);
    m_bannerText->setWordWrap(true); // never widens the chat column
    m_bannerText->setTextFormat(Qt::PlainText); // it quotes the user's text
    auto *cancel = new QPushButton(tr("Cancel"), m_banner);
    cancel->setFlat(true);
    bannerLayout->addWidget(m_bannerText, 1);
    bannerLayout->addWidget(cancel);
    m_banner->setStyleSheet(QStringLiteral("#editBanner { background: #fff4d6; border-radius: 6px; }"
                                           "#editBanner QLabel { color: #5c4400; }"));
    m_banner->hide();
    outer->addWidget(m_banner);

    auto *row = new QHBoxLayout;
    row->setSpacing(8);
    m_edit = new ComposerEdit(this);
    m_edit->setObjectName(QStringLiteral("composerEdit"));
    m_edit->setStyleSheet(QStringLiteral(
        "QPlainTextEdit { border: 1px solid #cfd5dc; border-radius: 8px; padding: 6px 8px; background: white;"
        " color: #1f2328; }"
        "QPlainTextEdit:focus { border-color: #4c8bf5; }"
        "QPlainTextEdit[readOnly=\"true\"] { background: #f1f3f4; color: #6a737d; }"));
    m_send = new QPushButton(tr("Send"), this);
    m_send->setObjectName(QStringLiteral("sendButton"));
    m_send->setMinimumWidth(84);
    m_send->setMinimumHeight(36);
    row->addWidget(m_edit, 1);
    row->addWidget(m_send, 0, Qt::AlignBottom);
    outer->addLayout(row);

    connect(m_edit, &ComposerEdit::submitPressed, this, &Composer::submit);
    connect(m_edit, &ComposerEdit::escapePressed, this, &Composer::cancelEdit);
    connect(cancel, &QPushButton::clicked, this, &Composer::cancelEdit);
    connect(m_edit, &QPlainTextEdit::textChanged, this, [this] {
        fitHeight();
        updateState();
    });
    connect(m_send, &QPushButton::clicked, this, [this] {
        if (m_busy)
            emit stopRequested();
        else
            submit(std::chrono::steady_clock::now());
    });
    fitHeight();
    updateState();
}

Composer::~Composer() = default;

Composer::Draft Composer::draft() const
{
    return {m_edit->toPlainText(), m_pendingTurn, m_editRow};
}

void Composer::setDraft(const Draft &draft)
{
    m_pendingTurn = draft.pendingTurn;
    m_editRow = draft.editRow;
    m_edit->setPlainText(draft.text);
    m_edit->moveCursor(QTextCursor::End);
    updateState();
}

QString Composer::text() const
{
    return m_edit->toPlainText();
}

void Composer::setText(const QString &text)
{
    m_edit->setPlainText(text);
    m_edit->moveCursor(QTextCursor::End);
}

void Composer::setModelReady(bool ready, const QString &modelName)
{
    m_ready = ready;
    m_modelName = modelName;
    updateState();
}

void Composer::setBusy(bool busy)
{
    m_busy = busy;
    updateState();
}

void Composer::setPending(engine::TurnId turn)
{
    m_pendingTurn = turn;
    updateState();
}

void Composer::confirmSent(engine::TurnId turn)
{
    if (m_pendingTurn != turn)
        return;
    m_pendingTurn = 0;
    m_editRow = -1;
    m_edit->clear();
    updateState();
}

void Composer::restore(const QString &text)
{
    m_pendingTurn = 0;
    const QString current = m_edit->toPlainText();
    if (current.trimmed().isEmpty() || current == text)
        setText(text);
    else if (!current.contains(text))
        setText(text + QStringLiteral("\n\n") + current);
    updateState();
}

void Composer::beginEdit(int row, const QString &text)
{
    m_editRow = row;
    // Which message: two may read alike, so its opening words say which one is being replaced.
    constexpr qsizetype kShown = 40;
    const QString opening = text.simplified();
    m_bannerText->setText(
        tr("Editing “%1”: Enter resends it and replaces what followed; Esc cancels.")
            .arg(opening.size() <= kShown ? opening : opening.left(kShown).trimmed() + QStringLiteral("…")));
    setText(text);
    m_edit->setFocus();
    updateState();
}

void Composer::cancelEdit()
{
    if (m_editRow < 0)
        return;
    m_editRow = -1;
    m_edit->clear();
    updateState();
}

void Composer::submit(std::chrono::steady_clock::time_point when)
{
    const QString text = m_edit->toPlainText();
    if (!m_ready || m_busy || m_pendingTurn != 0 || text.trimmed().isEmpty())
        return;
    if (m_editRow >= 0)
        emit editSubmitted(m_editRow, text, when);
    else
        emit sendRequested(text, when);
}

void Composer::updateState()
{
    const bool pending = m_pendingTurn != 0;
    const bool readOnly = pending || !m_ready;
    const bool restyle = m_edit->isReadOnly() != readOnly;
    m_edit->setReadOnly(readOnly);
    m_edit->setEditing(m_editRow >= 0);
    m_banner->setVisible(m_editRow >= 0);
    if (!m_ready)
        m_edit->setPlaceholderText(tr("Open a model to start chatting (File ▸ Open Model…, or drop a .gguf file here)"));
    else
        m_edit->setPlaceholderText(tr("Message %1  —  Enter to send, Shift+Enter for a new line")
                                       .arg(m_modelName.isEmpty() ? tr("the model") : m_modelName));
    if (m_busy) {
        m_send->setText(tr("Stop"));
        m_send->setToolTip(tr("Stop the reply (Esc)"));
        m_send->setEnabled(true);
    } else {
        m_send->setText(m_editRow >= 0 ? tr("Resend") : tr("Send"));
        m_send->setToolTip(tr("Send (Enter)"));
        m_send->setEnabled(m_ready && !pending && !m_edit->toPlainText().trimmed().isEmpty());
    }
    if (restyle) { // so the [readOnly] style sheet rule applies
        m_edit->style()->unpolish(m_edit);
        m_edit->style()->polish(m_edit);
    }
}

void Composer::fitHeight()
{
    int lines = 0;
    for (QTextBlock block = m_edit->document()->begin(); block.isValid(); block = block.next())
        lines += block.layout() && block.layout()->lineCount() > 0 ? block.layout()->lineCount() : 1;
    lines = std::clamp(lines, 2, kMaxLines);
    const int height = lines * m_edit->fontMetrics().lineSpacing() + 2 * static_cast<int>(m_edit->document()->documentMargin()) + 16;
    m_edit->setFixedHeight(height);
}

} // namespace kvchat::ui
