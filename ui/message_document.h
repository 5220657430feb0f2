// SPDX-License-Identifier: MIT
// MessageDocument: one chat message laid out for painting — the user's text as typed, or the
// assistant's reply rendered from Markdown (code blocks tinted and wrapped, lists, emphasis; raw
// HTML stays text).
//
// Streaming cost: shaping a whole reply again on every 16 ms text delivery costs ~30 ms for 9 KB,
// so a Markdown reply is kept as a stack of segments (split at blank lines outside code fences,
// list items kept together). setContent() rebuilds only segments whose source changed — while a
// reply streams, just the last one — so an update costs the same at token 40 and at token 4,000.
// Thread-safety: UI thread only (QTextDocument).
#pragma once

#include <QFont>
#include <QString>
#include <QStringList>
#include <QTextDocument>

#include <memory>
#include <vector>

class QPainter;
class QPalette;

namespace kvchat::ui {

class MessageDocument
{
public:
    MessageDocument();
    ~MessageDocument();

    // markdown: render content as Markdown (assistant), else as plain text (user).
    void setContent(const QString &content, bool markdown, const QFont &font);
    void setTextWidth(int width);
    int textWidth() const { return m_width; }
    // Widest line (<= textWidth) and total height, in pixels.
    qreal idealWidth() const;
    qreal height() const;
    // Paints the text with its top-left corner at (0, 0); text colour from palette's Text role.
    void draw(QPainter *painter, const QPalette &palette, const QRectF &clip) const;
    int segmentCount() const { return static_cast<int>(m_segments.size()); }
    const QTextDocument *segment(int i) const { return m_segments.at(static_cast<std::size_t>(i)).document.get(); }

    // The Markdown source split into segments that render alike stacked or whole (see above).
    static QStringList splitMarkdown(const QString &text);
    // Repairs what small models commonly get wrong, so it renders as meant: a code fence opened
    // indented under a list item with unindented code, and numbered items that restart a list
    // at N > 1 (Qt 6.4 would number them from 1 again).
    static QString normalizeMarkdown(const QString &text);

private:
    struct Segment
    {
        QString source;
        std::unique_ptr<QTextDocument> document;
    };
    std::unique_ptr<QTextDocument> build(const QString &source, bool markdown) const;

    std::vector<Segment> m_segments;
    bool m_markdown = false;
    QFont m_font;
    int m_width = -1;
    qreal m_gap = 0; // between segments
};

} // namespace kvchat::ui
