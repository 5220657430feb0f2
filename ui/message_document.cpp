// SPDX-License-Identifier: MIT
#include "ui/message_document.h"

#include <QAbstractTextDocumentLayout>
#include <QFontMetricsF>
#include <QPainter>
#include <QRegularExpression>
#include <QTextBlock>
#include <QTextCursor>

#include <algorithm>
#include <utility>

namespace kvchat::ui {

namespace {

const QColor kCodeBackground(0xf3, 0xf4, 0xf6);

// Code blocks get a tinted background, a monospace font and wrapping; inline code a tint.
void styleCode(QTextDocument &doc)
{
    QFont mono(QStringLiteral("DejaVu Sans Mono"));
    mono.setStyleHint(QFont::Monospace);
    mono.setPointSizeF(doc.defaultFont().pointSizeF() * 0.92);
    for (QTextBlock block = doc.begin(); block.isValid(); block = block.next()) {
        const QTextBlockFormat format = block.blockFormat();
        const bool code = format.hasProperty(QTextFormat::BlockCodeFence) ||
                          format.hasProperty(QTextFormat::BlockCodeLanguage) || block.charFormat().fontFixedPitch();
        if (code) {
            QTextCursor cursor(block);
            QTextBlockFormat tinted;
            tinted.setBackground(kCodeBackground);
            tinted.setLeftMargin(4);
            tinted.setNonBreakableLines(false); // wrap long code lines inside the bubble
            cursor.mergeBlockFormat(tinted);
            cursor.movePosition(QTextCursor::EndOfBlock, QTextCursor::KeepAnchor);
            QTextCharFormat chars;
            chars.setFont(mono, QTextCharFormat::FontPropertiesSpecifiedOnly);
            cursor.mergeCharFormat(chars);
            continue;
        }
        for (auto it = block.begin(); !it.atEnd(); ++it) {
            const QTextFragment fragment = it.fragment();
            if (!fragment.charFormat().fontFixedPitch())
                continue;
            QTextCursor span(&doc);
            span.setPosition(fragment.position());
            span.setPosition(fragment.position() + fragment.length(), QTextCursor::KeepAnchor);
            QTextCharFormat chars;
            chars.setBackground(kCodeBackground);
            chars.setFont(mono, QTextCharFormat::FontPropertiesSpecifiedOnly);
            span.mergeCharFormat(chars);
        }
    }
}

bool isFence(const QString &line)
{
    const QString trimmed = line.trimmed();
    return trimmed.startsWith(QLatin1String("```")) || trimmed.startsWith(QLatin1String("~~~"));
}

// A line that continues the segment before a blank line: indented, or another list item (loose
// lists must stay one list, or their numbering would restart).
bool continuesBlock(const QString &line)
{
    static const QRegularExpression listItem(QStringLiteral(R"(^\s*([-*+]|\d+[.)])\s)"));
    return line.startsWith(QLatin1Char(' ')) || line.startsWith(QLatin1Char('\t')) || listItem.match(line).hasMatch();
}

int indentOf(const QString &line)
{
    int n = 0;
    for (const QChar c : line) {
        if (c == QLatin1Char(' '))
            ++n;
        else if (c == QLatin1Char('\t'))
            n += 4;
        else
            break;
    }
    return n;
}

} // namespace

QString MessageDocument::normalizeMarkdown(const QString &text)
{
    static const QRegularExpression ordered(QStringLiteral(R"(^( {0,3})(\d{1,9})([.)])(\s.*)?$)"));
    static const QRegularExpression bullet(QStringLiteral(R"(^ {0,3}[-*+]\s)"));
    QStringList lines = text.split(QLatin1Char('\n'));
    bool inFence = false;
    bool dedentCloser = false;
    QString marker;
    bool listOpen = false;
    bool blankBefore = false;
    for (qsizetype i = 0; i < lines.size(); ++i) {
        const QString &line = lines[i];
        const QString trimmed = line.trimmed();
        const int indent = indentOf(line);
        if (inFence) {
            if (trimmed.startsWith(marker) && trimmed.count(marker.at(0)) == trimmed.size()) {
                inFence = false;
                if (dedentCloser)
                    lines[i] = trimmed;
            }
            continue;
        }
        if (isFence(line)) {
            inFence = true;
            marker = trimmed.left(3);
            // An opener indented under a list item whose code lines are not: the item ends there
            // (CommonMark), which would turn the code into text. Models mean a code block.
            qsizetype next = i + 1;
            while (next < lines.size() && lines[next].trimmed().isEmpty())
                ++next;
            dedentCloser = indent > 0 && next < lines.size() && indentOf(lines[next]) < indent;
            if (dedentCloser) {
                lines[i] = trimmed;
                listOpen = false;
            }
            continue;
        }
        if (trimmed.isEmpty()) {
            blankBefore = true;
            continue;
        }
        const bool afterBlank = std::exchange(blankBefore, false);
        if (const QRegularExpressionMatch m = ordered.match(line); m.hasMatch()) {
            // Qt 6.4 cannot start a list at N > 1: such an item stays a paragraph that keeps its number.
            if (m.captured(2).toLongLong() > 1 && !listOpen) {
                lines[i] = m.captured(1) + m.captured(2) + QLatin1Char('\\') + m.captured(3) + m.captured(4);
                listOpen = false;
            } else {
                listOpen = true;
            }
            continue;
        }
        if (bullet.match(line).hasMatch())
            listOpen = true;
        else if (indent < 2 && afterBlank)
            listOpen = false; // a paragraph at the margin ends the list; a line right under an item continues it
    }
    return lines.join(QLatin1Char('\n'));
}

MessageDocument::MessageDocument() = default;
MessageDocument::~MessageDocument() = default;

QStringList MessageDocument::splitMarkdown(const QString &text)
{
    QStringList segments;
    QString current;
    bool inFence = false;
    bool pendingBreak = false; // a blank line outside a fence was seen
    const QStringList lines = text.split(QLatin1Char('\n'));
    for (const QString &line : lines) {
        if (!inFence && line.trimmed().isEmpty()) {
            pendingBreak = !current.trimmed().isEmpty();
            current += line + QLatin1Char('\n');
            continue;
        }
        if (pendingBreak && !continuesBlock(line)) {
            segments << current;
            current.clear();
        }
        pendingBreak = false;
        if (isFence(line))
            inFence = !inFence;
        current += line + QLatin1Char('\n');
    }
    if (!current.trimmed().isEmpty() || segments.isEmpty())
        segments << current;
    return segments;
}

std::unique_ptr<QTextDocument> MessageDocument::build(const QString &source, bool markdown) const
{
    auto doc = std::make_unique<QTextDocument>();
    doc->setDefaultFont(m_font);
    doc->setDocumentMargin(0);
    if (markdown) {
        // Raw HTML in a reply stays text: a model's output must not load images or restyle the view.
        doc->setMarkdown(source.trimmed(), QTextDocument::MarkdownFeatures(QTextDocument::MarkdownDialectGitHub |
                                                                           QTextDocument::MarkdownNoHTML));
        styleCode(*doc);
    } else {
        doc->setPlainText(source);
    }
    if (m_width >= 0)
        doc->setTextWidth(m_width);
    return doc;
}

void MessageDocument::setContent(const QString &content, bool markdown, const QFont &font)
{
    if (markdown != m_markdown || font != m_font) {
        m_segments.clear();
        m_markdown = markdown;
        m_font = font;
        m_gap = QFontMetricsF(font).lineSpacing() * 0.5; // a paragraph break between segments
    }
    const QStringList sources = markdown ? splitMarkdown(normalizeMarkdown(content)) : QStringList{content};
    m_segments.resize(static_cast<std::size_t>(sources.size()));
    for (qsizetype i = 0; i < sources.size(); ++i) {
        Segment &segment = m_segments[static_cast<std::size_t>(i)];
        if (!segment.document || segment.source != sources[i]) {
            segment.source = sources[i];
            segment.document = build(sources[i], markdown);
        }
    }
}

void MessageDocument::setTextWidth(int width)
{
    if (width == m_width)
        return;
    m_width = width;
    for (Segment &segment : m_segments)
        segment.document->setTextWidth(width);
}

qreal MessageDocument::idealWidth() const
{
    qreal width = 0;
    for (const Segment &segment : m_segments)
        width = std::max(width, segment.document->idealWidth());
    return width;
}

qreal MessageDocument::height() const
{
    qreal height = 0;
    for (const Segment &segment : m_segments)
        height += segment.document->size().height();
    return height + m_gap * static_cast<qreal>(std::max<std::size_t>(m_segments.size(), 1) - 1);
}

void MessageDocument::draw(QPainter *painter, const QPalette &palette, const QRectF &clip) const
{
    painter->save();
    QAbstractTextDocumentLayout::PaintContext context;
    context.palette = palette;
    qreal y = 0;
    for (const Segment &segment : m_segments) {
        const qreal h = segment.document->size().height();
        if (y + h >= clip.top() && y <= clip.bottom()) {
            context.clip = clip.translated(0, -y);
            segment.document->documentLayout()->draw(painter, context);
        }
        painter->translate(0, h + m_gap);
        y += h + m_gap;
    }
    painter->restore();
}

} // namespace kvchat::ui
