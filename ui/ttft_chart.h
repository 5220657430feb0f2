// SPDX-License-Identifier: MIT
// TtftChart: the time to first token of each turn of the shown conversation, as a stacked bar per
// turn split into its parts (queue + prepare, KV restore from all tiers, prefill of the tokens not
// reused, first decode step), with a dot above each bar whose colour says where the turn's history
// came from: the tier that supplied most of its reused tokens (device, host RAM, disk), or
// "recomputed" when nothing was reused. Hovering a bar or dot shows the full breakdown.
//
// The widget keeps its own copy of the records (the UI never reads engine state): feed it
// ConversationLoaded::turns with setTurns() and each new FirstToken/TurnFinished record with addTurn().
// Only the last kMaxBars turns are drawn; turn numbers on the x axis count from the first turn given.
//
// Thread-safety: UI thread only.
#pragma once

#include "engine/store/session_store.h"

#include <QColor>
#include <QString>
#include <QWidget>

#include <vector>

class QLabel;
class QChart;
class QChartView;
class QBarSet;
class QStackedBarSeries;
class QScatterSeries;
class QCategoryAxis;
class QValueAxis;

namespace kvchat::ui {

class TtftChart : public QWidget
{
    Q_OBJECT

public:
    // Where a turn's history came from (the colour of its dot).
    enum class Source { Device, Host, Disk, Recomputed };
    // The stacked parts of a bar, bottom to top.
    enum class Part { QueuePrepare, Restore, Prefill, FirstDecode };
    static constexpr int kPartCount = 4;
    static constexpr int kMaxBars = 40;

    explicit TtftChart(QWidget *parent = nullptr);
    ~TtftChart() override;

    // Replaces every turn (oldest first), e.g. from ConversationLoaded::turns.
    void setTurns(const std::vector<engine::TurnRecord> &turns);
    // Appends a turn. A record with the same non-zero messageId as the last one replaces it, so
    // calling this on FirstToken and again on TurnFinished draws one bar.
    void addTurn(const engine::TurnRecord &turn);
    void clear();

    // --- inspection (tests, accessibility) ---
    int barCount() const;                         // bars drawn (<= kMaxBars)
    int turnCount() const;                        // turns held
    double partValueMs(int bar, Part part) const; // the height of one part of a bar
    Source sourceOf(int bar) const;
    QString toolTipFor(int bar) const; // the hover text of a bar
    QString summaryText() const;       // the line above the chart

    static Source sourceOf(const engine::TurnRecord &turn);
    static QColor partColor(Part part);
    static QColor sourceColor(Source source);
    static QString partName(Part part);
    static QString sourceName(Source source);

private:
    QWidget *buildLegend();
    void rebuild();
    void updateTurnAxis(int first, int n); // bar i of n is turn first + i + 1
    void showToolTip(bool hovered, int bar);
    int firstShownTurn() const; // index in m_turns of bar 0

    std::vector<engine::TurnRecord> m_turns;
    QLabel *m_summary = nullptr;
    QChartView *m_view = nullptr;
    QChart *m_chart = nullptr;
    QStackedBarSeries *m_bars = nullptr;
    QBarSet *m_partSets[kPartCount] = {};
    QScatterSeries *m_sourceDots[4] = {}; // indexed by Source
    QCategoryAxis *m_axisX = nullptr;
    QValueAxis *m_axisY = nullptr;
};

} // namespace kvchat::ui
