// SPDX-License-Identifier: MIT
// CachePanel: the state of the tiered KV cache, from the bridge's cacheStatsChanged signal. One row
// per tier (Device, Host RAM, Disk): used / budget MiB with a bar in the tier's colour (the TTFT
// chart's source colours), the block count and the tier's hit rate (tokens reused from it / tokens
// looked up). Below: the overall reuse, how many blocks are
// shared between conversations, and — when the disk tier is off — a line saying so and why.
//
// The panel shows only what setStats() gave it (the UI never reads engine state).
// Child widgets carry object names ("deviceBar", "deviceUsage", "hostBlocks", "diskHitRate",
// "overallLabel", "sharedLabel", "diskOffLabel", ...) so tests can inspect them.
// Thread-safety: UI thread only.
#pragma once

#include "engine/kv/tiered_kv_cache.h"

#include <QString>
#include <QWidget>

class QLabel;
class QProgressBar;

namespace kvchat::ui {

class CachePanel : public QWidget
{
    Q_OBJECT

public:
    explicit CachePanel(QWidget *parent = nullptr);
    ~CachePanel() override;

    void setStats(const engine::KvCacheStats &stats);
    const engine::KvCacheStats &stats() const { return m_stats; }

    // "12.5 MiB", "2048 MiB": the panel's byte format (exposed for tests and tool tips).
    static QString formatMiB(std::size_t bytes);
    // "45%" of hit / lookup; "–" when nothing was looked up.
    static QString formatRate(std::uint64_t hit, std::uint64_t lookup);

private:
    struct TierRow
    {
        QLabel *name = nullptr;
        QProgressBar *bar = nullptr;
        QLabel *usage = nullptr; // "742 MiB / 2,048 MiB"
        QLabel *blocks = nullptr;
        QLabel *hitRate = nullptr;
    };
    TierRow makeRow(const QString &key, const QString &title, const QString &toolTip);
    void showTier(TierRow &row, const engine::KvTierStats &tier, std::uint64_t hitTokens, bool enabled);

    engine::KvCacheStats m_stats;
    TierRow m_rows[3]; // indexed by engine::Tier
    QLabel *m_overall = nullptr;
    QLabel *m_shared = nullptr;
    QLabel *m_diskOff = nullptr;
};

} // namespace kvchat::ui
