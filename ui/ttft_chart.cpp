// SPDX-License-Identifier: MIT
#include "ui/ttft_chart.h"

#include <QCursor>
#include <QGridLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLocale>
#include <QPainter>
#include <QPixmap>
#include <QToolTip>
#include <QVBoxLayout>
#include <QtCharts/QBarSet>
#include <QtCharts/QCategoryAxis>
#include <QtCharts/QChart>
#include <QtCharts/QChartView>
#include <QtCharts/QLegend>
#include <QtCharts/QScatterSeries>
#include <QtCharts/QStackedBarSeries>
#include <QtCharts/QValueAxis>

#include <algorithm>
#include <array>

namespace kvchat::ui {

namespace {

constexpr std::array kParts = {TtftChart::Part::QueuePrepare, TtftChart::Part::Restore, TtftChart::Part::Prefill,
                               TtftChart::Part::FirstDecode};
constexpr int kLabelledBars = 12; // up to this many bars carry their TTFT under the turn number
constexpr std::array kSources = {TtftChart::Source::Device, TtftChart::Source::Host, TtftChart::Source::Disk,
                                 TtftChart::Source::Recomputed};

double partOf(const engine::TurnRecord &t, TtftChart::Part part)
{
    switch (part) {
    case TtftChart::Part::QueuePrepare:
        return t.queueMs + t.prepareMs;
    case TtftChart::Part::Restore:
        return t.restoreDeviceMs + t.restoreHostMs + t.restoreDiskMs;
    case TtftChart::Part::Prefill:
        return t.prefillMs;
    case TtftChart::Part::FirstDecode:
        return t.firstDecodeMs;
    }
    return 0.0;
}

QString sourcePhrase(TtftChart::Source source)
{
    switch (source) {
    case TtftChart::Source::Device:
        return TtftChart::tr("mostly from the device");
    case TtftChart::Source::Host:
        return TtftChart::tr("mostly from RAM");
    case TtftChart::Source::Disk:
        return TtftChart::tr("mostly from disk");
    case TtftChart::Source::Recomputed:
        break;
    }
    return TtftChart::tr("recomputed");
}

double stackedMs(const engine::TurnRecord &t)
{
    double sum = 0.0;
    for (TtftChart::Part part : kParts)
        sum += partOf(t, part);
    return sum;
}

// "0.4 ms", "42.1 ms", "812 ms", "12.3 s".
QString formatMs(double ms)
{
    const QLocale locale;
    if (ms >= 10000.0)
        return locale.toString(ms / 1000.0, 'f', 1) + QStringLiteral(" s");
    return locale.toString(ms, 'f', ms < 100.0 ? 1 : 0) + QStringLiteral(" ms");
}

// Axis labels are short: "4.2 ms", "57 ms", "1.2 s".
QString formatMsShort(double ms)
{
    const QLocale locale;
    if (ms >= 1000.0)
        return locale.toString(ms / 1000.0, 'f', 1) + QStringLiteral(" s");
    return locale.toString(ms, 'f', ms < 10.0 ? 1 : 0) + QStringLiteral(" ms");
}

QString formatCount(std::int64_t n)
{
    return QLocale().toString(static_cast<qlonglong>(n));
}

} // namespace

TtftChart::TtftChart(QWidget *parent) : QWidget(parent)
{
    auto *layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->setSpacing(2);

    m_summary = new QLabel(this);
    m_summary->setObjectName(QStringLiteral("ttftSummary"));
    m_summary->setWordWrap(true);
    m_summary->setContentsMargins(8, 4, 8, 0);
    layout->addWidget(m_summary);

    m_chart = new QChart;
    const bool dark = palette().color(QPalette::Window).lightness() < 128;
    m_chart->setTheme(dark ? QChart::ChartThemeDark : QChart::ChartThemeLight);
    m_chart->setAnimationOptions(QChart::NoAnimation); // redrawn on every token event; and grab() in tests
    m_chart->setBackgroundRoundness(0);
    m_chart->setMargins(QMargins(4, 4, 4, 4));
    // The chart sits on the window's colour with a plot area in the base colour, like a list view.
    m_chart->setBackgroundVisible(false);
    m_chart->setPlotAreaBackgroundBrush(palette().base());
    m_chart->setPlotAreaBackgroundVisible(true);
    // Our own legend below (two labelled rows) reads better than eight crowded chart markers.
    m_chart->legend()->setVisible(false);

    m_bars = new QStackedBarSeries;
    m_bars->setBarWidth(0.62);
    for (Part part : kParts) {
        auto *set = new QBarSet(partName(part));
        set->setColor(partColor(part));
        set->setBorderColor(partColor(part).darker(115));
        m_partSets[static_cast<int>(part)] = set;
        m_bars->append(set);
        connect(set, &QBarSet::hovered, this, [this](bool on, int bar) { showToolTip(on, bar); });
    }
    m_chart->addSeries(m_bars);

    for (Source source : kSources) {
        auto *dots = new QScatterSeries;
        dots->setName(sourceName(source));
        dots->setMarkerShape(QScatterSeries::MarkerShapeCircle);
        dots->setMarkerSize(11.0);
        dots->setColor(sourceColor(source));
        dots->setBorderColor(sourceColor(source).darker(130));
        m_sourceDots[static_cast<int>(source)] = dots;
        m_chart->addSeries(dots);
        connect(dots, &QScatterSeries::hovered, this,
                [this](const QPointF &point, bool on) { showToolTip(on, qRound(point.x())); });
    }

    // A QCategoryAxis (ranges of x), not a QBarCategoryAxis: with many bars only some are numbered,
    // and a numbered bar's label may then use the room of its unnumbered neighbours.
    m_axisX = new QCategoryAxis;
    m_axisX->setLabelsPosition(QCategoryAxis::AxisLabelsPositionCenter);
    m_axisX->setTitleText(tr("Turn"));
    m_axisX->setGridLineVisible(false);
    m_axisY = new QValueAxis;
    m_axisY->setTitleText(tr("Time to first token (ms)"));
    m_axisY->setLabelFormat(QStringLiteral("%.0f"));
    QFont titleFont = font();
    titleFont.setPointSizeF(titleFont.pointSizeF() * 0.9);
    m_axisX->setTitleFont(titleFont);
    m_axisY->setTitleFont(titleFont);
    m_chart->addAxis(m_axisX, Qt::AlignBottom);
    m_chart->addAxis(m_axisY, Qt::AlignLeft);
    for (QAbstractSeries *series : m_chart->series()) {
        series->attachAxis(m_axisX);
        series->attachAxis(m_axisY);
    }

    m_view = new QChartView(m_chart, this);
    m_view->setObjectName(QStringLiteral("ttftChartView"));
    m_view->setRenderHint(QPainter::Antialiasing);
    m_view->setMinimumHeight(180);
    m_view->setFrameShape(QFrame::NoFrame);
    m_view->setBackgroundBrush(Qt::NoBrush);
    m_view->setStyleSheet(QStringLiteral("background: transparent"));
    layout->addWidget(m_view, 1);
    layout->addWidget(buildLegend());

    rebuild();
}

TtftChart::~TtftChart() = default;

QWidget *TtftChart::buildLegend()
{
    auto *legend = new QWidget(this);
    legend->setObjectName(QStringLiteral("ttftLegend"));
    QFont small = font(); // a notch smaller, so the legend fits a narrow dock
    small.setPointSizeF(small.pointSizeF() * 0.9);
    legend->setFont(small);
    auto *grid = new QGridLayout(legend);
    grid->setContentsMargins(8, 0, 8, 4);
    grid->setHorizontalSpacing(10);
    grid->setVerticalSpacing(2);
    const int side = QFontMetrics(small).height() * 3 / 4;
    auto swatch = [&](const QColor &color, bool round, const QString &text, int row, int column) {
        QPixmap pixmap(side * devicePixelRatio(), side * devicePixelRatio());
        pixmap.setDevicePixelRatio(devicePixelRatio());
        pixmap.fill(Qt::transparent);
        QPainter painter(&pixmap);
        painter.setRenderHint(QPainter::Antialiasing);
        painter.setPen(color.darker(125));
        painter.setBrush(color);
        const QRectF r(0.5, 0.5, side - 1.0, side - 1.0);
        if (round)
            painter.drawEllipse(r);
        else
            painter.drawRoundedRect(r, 2, 2);
        painter.end();
        auto *item = new QWidget(legend);
        auto *h = new QHBoxLayout(item);
        h->setContentsMargins(0, 0, 0, 0);
        h->setSpacing(4);
        auto *icon = new QLabel(item);
        icon->setPixmap(pixmap);
        h->addWidget(icon);
        h->addWidget(new QLabel(text, item));
        h->addStretch(1);
        grid->addWidget(item, row, column);
    };
    auto *time = new QLabel(tr("Time:"), legend);
    auto *history = new QLabel(tr("History from:"), legend);
    time->setToolTip(tr("The parts of the time to first token, bottom to top"));
    history->setToolTip(tr("Where most of the reused tokens came from (the dot above each bar)"));
    grid->addWidget(time, 0, 0);
    grid->addWidget(history, 1, 0);
    for (Part part : kParts)
        swatch(partColor(part), false, partName(part), 0, 1 + static_cast<int>(part));
    for (Source source : kSources)
        swatch(sourceColor(source), true, sourceName(source), 1, 1 + static_cast<int>(source));
    grid->setColumnStretch(5, 1);
    return legend;
}

void TtftChart::setTurns(const std::vector<engine::TurnRecord> &turns)
{
    m_turns = turns;
    rebuild();
}

void TtftChart::addTurn(const engine::TurnRecord &turn)
{
    if (!m_turns.empty() && turn.messageId != 0 && m_turns.back().messageId == turn.messageId)
        m_turns.back() = turn;
    else
        m_turns.push_back(turn);
    rebuild();
}

void TtftChart::clear()
{
    m_turns.clear();
    rebuild();
}

int TtftChart::turnCount() const
{
    return static_cast<int>(m_turns.size());
}

int TtftChart::firstShownTurn() const
{
    return std::max(0, turnCount() - kMaxBars);
}

int TtftChart::barCount() const
{
    return static_cast<int>(m_partSets[0]->count());
}

double TtftChart::partValueMs(int bar, Part part) const
{
    return m_partSets[static_cast<int>(part)]->at(bar);
}

TtftChart::Source TtftChart::sourceOf(int bar) const
{
    return sourceOf(m_turns.at(static_cast<std::size_t>(firstShownTurn() + bar)));
}

TtftChart::Source TtftChart::sourceOf(const engine::TurnRecord &turn)
{
    const std::int32_t best = std::max({turn.reusedDevice, turn.reusedHost, turn.reusedDisk});
    if (best <= 0)
        return Source::Recomputed;
    // On a tie the slower tier wins: it is the one that shaped the restore time.
    if (turn.reusedDisk == best)
        return Source::Disk;
    if (turn.reusedHost == best)
        return Source::Host;
    return Source::Device;
}

QColor TtftChart::partColor(Part part)
{
    switch (part) {
    case Part::QueuePrepare:
        return QColor(0x94, 0xa3, 0xb8); // slate
    case Part::Restore:
        return QColor(0x2d, 0xd4, 0xbf); // teal
    case Part::Prefill:
        return QColor(0xf5, 0x9e, 0x0b); // amber
    case Part::FirstDecode:
        return QColor(0x81, 0x8c, 0xf8); // indigo
    }
    return {};
}

QColor TtftChart::sourceColor(Source source)
{
    switch (source) {
    case Source::Device:
        return QColor(0x16, 0xa3, 0x4a); // green: the fastest
    case Source::Host:
        return QColor(0x25, 0x63, 0xeb); // blue
    case Source::Disk:
        return QColor(0x93, 0x33, 0xea); // purple
    case Source::Recomputed:
        return QColor(0xdc, 0x26, 0x26); // red: nothing reused
    }
    return {};
}

QString TtftChart::partName(Part part)
{
    switch (part) {
    case Part::QueuePrepare:
        return tr("Queue + prep");
    case Part::Restore:
        return tr("KV restore");
    case Part::Prefill:
        return tr("Prefill");
    case Part::FirstDecode:
        return tr("First decode");
    }
    return {};
}

QString TtftChart::sourceName(Source source)
{
    switch (source) {
    case Source::Device:
        return tr("Device");
    case Source::Host:
        return tr("RAM");
    case Source::Disk:
        return tr("Disk");
    case Source::Recomputed:
        return tr("Recomputed");
    }
    return {};
}

QString TtftChart::toolTipFor(int bar) const
{
    const int index = firstShownTurn() + bar;
    const engine::TurnRecord &t = m_turns.at(static_cast<std::size_t>(index));
    const QString row = QStringLiteral("<tr><td>%1</td><td align=right>&nbsp;&nbsp;%2</td></tr>");
    QString html = QStringLiteral("<b>") + tr("Turn %1: TTFT %2").arg(index + 1).arg(formatMs(t.ttftMs)) +
                   QStringLiteral("</b><table cellspacing=0>");
    html += row.arg(tr("Queue + prepare"), formatMs(partOf(t, Part::QueuePrepare)));
    html += row.arg(partName(Part::Restore), formatMs(partOf(t, Part::Restore)));
    html += row.arg(
        QStringLiteral("&nbsp;&nbsp;") + tr("device / RAM / disk"),
        tr("%1 / %2 / %3").arg(formatMs(t.restoreDeviceMs), formatMs(t.restoreHostMs), formatMs(t.restoreDiskMs)));
    html += row.arg(tr("Prefill (%1 tokens)").arg(formatCount(t.recomputed)), formatMs(t.prefillMs));
    html += row.arg(partName(Part::FirstDecode), formatMs(t.firstDecodeMs));
    html += QStringLiteral("</table>");
    const std::int32_t reused = t.reusedDevice + t.reusedHost + t.reusedDisk;
    html += tr("Prompt: %1 tokens, %2 reused (device %3, RAM %4, disk %5), %6 recomputed")
                .arg(formatCount(t.promptTokens), formatCount(reused), formatCount(t.reusedDevice),
                     formatCount(t.reusedHost), formatCount(t.reusedDisk), formatCount(t.recomputed));
    if (t.decodeTokens > 0 && t.decodeMs > 0) {
        html += QStringLiteral("<br>") + tr("Reply: %1 tokens in %2 (%3 tokens/s)")
                                             .arg(formatCount(t.decodeTokens), formatMs(t.decodeMs),
                                                  QLocale().toString(t.decodeTokens * 1000.0 / t.decodeMs, 'f', 1));
    }
    return html;
}

QString TtftChart::summaryText() const
{
    return m_summary->text();
}

void TtftChart::showToolTip(bool hovered, int bar)
{
    if (hovered && bar >= 0 && bar < barCount())
        QToolTip::showText(QCursor::pos(), toolTipFor(bar), m_view);
    else
        QToolTip::hideText();
}

void TtftChart::updateTurnAxis(int first, int n)
{
    for (const QString &label : m_axisX->categoriesLabels())
        m_axisX->remove(label);
    m_axisX->setStartValue(-0.5);
    m_axisX->setRange(-0.5, std::max(n, 1) - 0.5);
    if (n <= kLabelledBars) {
        // With room, the TTFT goes under the turn number: small bars are otherwise hard to read.
        for (int i = 0; i < n; ++i) {
            const double ms = m_turns[static_cast<std::size_t>(first + i)].ttftMs;
            m_axisX->append(QStringLiteral("<center>%1<br><small>%2</small></center>")
                                .arg(QString::number(first + i + 1), formatMsShort(ms)),
                            i + 0.5);
        }
        return;
    }
    // Every step-th turn is numbered; the bars between share one unlabelled range. Labels must be
    // unique, so each filler is a different count of zero-width spaces (drawn as nothing).
    const int step = (n + kLabelledBars - 1) / kLabelledBars;
    int fillers = 0;
    for (int i = 0; i < n;) {
        if ((first + i + 1) % step == 0) {
            m_axisX->append(QString::number(first + i + 1), i + 0.5);
            ++i;
        } else {
            int end = i + 1;
            while (end < n && (first + end + 1) % step != 0)
                ++end;
            m_axisX->append(QString(++fillers, QChar(0x200B)), end - 0.5);
            i = end;
        }
    }
}

void TtftChart::rebuild()
{
    const int first = firstShownTurn();
    const int n = turnCount() - first;

    QList<qreal> values[kPartCount];
    QList<QPointF> dots[4];
    double maxMs = 0.0;
    for (int i = 0; i < n; ++i) {
        const engine::TurnRecord &t = m_turns[static_cast<std::size_t>(first + i)];
        // With room, the TTFT goes under the turn number: small bars are otherwise hard to read.
        for (Part part : kParts)
            values[static_cast<int>(part)] << std::max(0.0, partOf(t, part));
        maxMs = std::max(maxMs, stackedMs(t));
    }
    // Dots float just above their bar, by a fixed share of the axis so they never touch it.
    const double top = maxMs > 0.0 ? maxMs * 1.12 : 100.0;
    for (int i = 0; i < n; ++i) {
        const engine::TurnRecord &t = m_turns[static_cast<std::size_t>(first + i)];
        dots[static_cast<int>(sourceOf(t))] << QPointF(i, stackedMs(t) + top * 0.045);
    }

    for (int p = 0; p < kPartCount; ++p) {
        m_partSets[p]->remove(0, static_cast<int>(m_partSets[p]->count()));
        m_partSets[p]->append(values[p]);
    }
    for (int s = 0; s < 4; ++s)
        m_sourceDots[s]->replace(dots[s]);
    updateTurnAxis(first, n);
    m_axisY->setRange(0.0, top);
    m_axisY->applyNiceNumbers();
    // Many bars: label every category still, but smaller, so they do not collide.
    for (QScatterSeries *dots : m_sourceDots)
        dots->setMarkerSize(n > kLabelledBars ? 8.0 : 11.0);
    m_axisX->setVisible(n > 0);

    if (m_turns.empty()) {
        m_summary->setText(tr("No turns yet: TTFT of each reply appears here."));
        return;
    }
    const engine::TurnRecord &last = m_turns.back();
    const std::int32_t reused = last.reusedDevice + last.reusedHost + last.reusedDisk;
    QString text = tr("Last turn: <b>%1</b> to first token").arg(formatMs(last.ttftMs));
    if (reused > 0) {
        text += tr(" — %1 of %2 prompt tokens reused (%3)")
                    .arg(formatCount(reused), formatCount(last.promptTokens), sourcePhrase(sourceOf(last)));
    } else {
        text += tr(" — all %1 prompt tokens computed").arg(formatCount(last.promptTokens));
    }
    if (m_turns.size() > 1)
        text += tr(". First turn: %1.").arg(formatMs(m_turns.front().ttftMs));
    else
        text += QLatin1Char('.');
    if (first > 0)
        text += tr(" Showing the last %1 turns.").arg(kMaxBars);
    m_summary->setText(text);
}

} // namespace kvchat::ui
