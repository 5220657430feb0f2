// SPDX-License-Identifier: MIT
#include "ui/cache_panel.h"

#include "ui/ttft_chart.h"

#include <QGridLayout>
#include <QLabel>
#include <QLocale>
#include <QProgressBar>
#include <QVBoxLayout>

#include <algorithm>

namespace kvchat::ui {

namespace {

constexpr int kBarScale = 1000; // progress bars count in permille of the budget

QString tierKey(engine::Tier tier)
{
    switch (tier) {
    case engine::Tier::Device:
        return QStringLiteral("device");
    case engine::Tier::Host:
        return QStringLiteral("host");
    case engine::Tier::Disk:
        return QStringLiteral("disk");
    }
    return {};
}

QString countOf(std::uint64_t n, const QString &one, const QString &many)
{
    return (n == 1 ? one : many).arg(QLocale().toString(static_cast<qulonglong>(n)));
}

} // namespace

CachePanel::CachePanel(QWidget *parent) : QWidget(parent)
{
    auto *layout = new QVBoxLayout(this);
    layout->setContentsMargins(8, 8, 8, 8);
    layout->setSpacing(6);

    auto *title = new QLabel(tr("<b>KV cache</b>"), this);
    layout->addWidget(title);

    // Per tier: a line of numbers, then a thin bar in the tier's colour (the TTFT chart's colours).
    auto *grid = new QGridLayout;
    grid->setHorizontalSpacing(10);
    grid->setVerticalSpacing(3);
    grid->setColumnStretch(1, 1);
    m_rows[0] = makeRow(tierKey(engine::Tier::Device), tr("Device"),
                        tr("The backend's own memory: GPU memory, or RAM for the CPU backend"));
    m_rows[1] = makeRow(tierKey(engine::Tier::Host), tr("Host RAM"), tr("Blocks spilled from the device to RAM"));
    m_rows[2] = makeRow(tierKey(engine::Tier::Disk), tr("Disk"),
                        tr("Blocks stored in the SQLite database; they survive a restart"));
    const TtftChart::Source colours[3] = {TtftChart::Source::Device, TtftChart::Source::Host, TtftChart::Source::Disk};
    for (int i = 0; i < 3; ++i) {
        const int line = 2 * i;
        grid->addWidget(m_rows[i].name, line, 0);
        grid->addWidget(m_rows[i].usage, line, 1);
        grid->addWidget(m_rows[i].blocks, line, 2);
        grid->addWidget(m_rows[i].hitRate, line, 3);
        grid->addWidget(m_rows[i].bar, line + 1, 0, 1, 4, Qt::AlignTop);
        grid->setRowMinimumHeight(line + 1, 12);
        const QColor colour = TtftChart::sourceColor(colours[i]);
        m_rows[i].bar->setStyleSheet(
            QStringLiteral("QProgressBar { border: none; border-radius: 3px; background: %1; }"
                           "QProgressBar::chunk { border-radius: 3px; background: %2; }"
                           "QProgressBar::chunk:disabled { background: %3; }")
                .arg(palette().color(QPalette::Midlight).name(), colour.name(), palette().color(QPalette::Mid).name()));
    }
    layout->addLayout(grid);

    m_overall = new QLabel(this);
    m_overall->setObjectName(QStringLiteral("overallLabel"));
    m_overall->setWordWrap(true);
    layout->addWidget(m_overall);

    m_shared = new QLabel(this);
    m_shared->setObjectName(QStringLiteral("sharedLabel"));
    m_shared->setToolTip(tr("Cached blocks that more than one conversation uses (e.g. a common system prompt); "
                            "each is stored once"));
    layout->addWidget(m_shared);

    m_diskOff = new QLabel(this);
    m_diskOff->setObjectName(QStringLiteral("diskOffLabel"));
    m_diskOff->setWordWrap(true);
    m_diskOff->setStyleSheet(QStringLiteral("color: #b45309;"));
    layout->addWidget(m_diskOff);
    layout->addStretch(1);

    // Until the first stats arrive (no model yet) there is nothing to warn about.
    setStats(engine::KvCacheStats{});
    m_overall->setText(tr("No model loaded."));
    m_diskOff->hide();
}

CachePanel::~CachePanel() = default;

CachePanel::TierRow CachePanel::makeRow(const QString &key, const QString &title, const QString &toolTip)
{
    TierRow row;
    row.name = new QLabel(title, this);
    row.name->setObjectName(key + QStringLiteral("Name"));
    row.name->setToolTip(toolTip);
    row.bar = new QProgressBar(this);
    row.bar->setObjectName(key + QStringLiteral("Bar"));
    row.bar->setRange(0, kBarScale);
    row.bar->setTextVisible(false); // the numbers are in the line above; format() keeps them for tool tips
    row.bar->setFixedHeight(7);
    row.bar->setMinimumWidth(120);
    row.usage = new QLabel(this);
    row.usage->setObjectName(key + QStringLiteral("Usage"));
    row.blocks = new QLabel(this);
    row.blocks->setObjectName(key + QStringLiteral("Blocks"));
    row.blocks->setAlignment(Qt::AlignRight | Qt::AlignVCenter);
    row.hitRate = new QLabel(this);
    row.hitRate->setObjectName(key + QStringLiteral("HitRate"));
    row.hitRate->setAlignment(Qt::AlignRight | Qt::AlignVCenter);
    row.hitRate->setMinimumWidth(row.hitRate->fontMetrics().horizontalAdvance(QStringLiteral("100% hits")));
    return row;
}

QString CachePanel::formatMiB(std::size_t bytes)
{
    const double mib = static_cast<double>(bytes) / (1024.0 * 1024.0);
    // One decimal while it carries information; whole MiB beyond 100.
    const int decimals = bytes == 0 ? 0 : (mib < 100.0 ? 1 : 0);
    return QLocale().toString(mib, 'f', decimals) + QStringLiteral(" MiB");
}

QString CachePanel::formatRate(std::uint64_t hit, std::uint64_t lookup)
{
    if (lookup == 0)
        return QStringLiteral("–");
    const double pct = 100.0 * static_cast<double>(hit) / static_cast<double>(lookup);
    return QLocale().toString(pct, 'f', pct > 0 && pct < 10 ? 1 : 0) + QLatin1Char('%');
}

void CachePanel::showTier(TierRow &row, const engine::KvTierStats &tier, std::uint64_t hitTokens, bool enabled)
{
    const QString used = formatMiB(tier.usedBytes);
    if (tier.budgetBytes > 0) {
        const double share = static_cast<double>(tier.usedBytes) / static_cast<double>(tier.budgetBytes);
        row.bar->setValue(std::clamp(static_cast<int>(share * kBarScale + 0.5), 0, kBarScale));
        row.bar->setFormat(tr("%1 / %2").arg(used, formatMiB(tier.budgetBytes)));
    } else {
        row.bar->setValue(0);
        row.bar->setFormat(tier.usedBytes > 0 ? used : tr("no budget"));
    }
    row.usage->setText(row.bar->format());
    row.bar->setToolTip(row.bar->format());
    for (QWidget *w :
         {static_cast<QWidget *>(row.name), static_cast<QWidget *>(row.bar), static_cast<QWidget *>(row.usage),
          static_cast<QWidget *>(row.blocks), static_cast<QWidget *>(row.hitRate)})
        w->setEnabled(enabled);
    row.blocks->setText(countOf(tier.blocks, tr("%1 block"), tr("%1 blocks")));
    row.hitRate->setText(tr("%1 hits").arg(formatRate(hitTokens, m_stats.lookupTokens)));
    row.hitRate->setToolTip(tr("%1 of %2 tokens looked up were reused from here")
                                .arg(QLocale().toString(static_cast<qulonglong>(hitTokens)),
                                     QLocale().toString(static_cast<qulonglong>(m_stats.lookupTokens))));
}

void CachePanel::setStats(const engine::KvCacheStats &stats)
{
    m_stats = stats;
    showTier(m_rows[0], stats.device, stats.hitTokensDevice, true);
    showTier(m_rows[1], stats.host, stats.hitTokensHost, true);
    showTier(m_rows[2], stats.disk, stats.hitTokensDisk, stats.diskEnabled);

    const std::uint64_t hits = stats.hitTokensDevice + stats.hitTokensHost + stats.hitTokensDisk;
    if (stats.lookupTokens == 0) {
        m_overall->setText(tr("No tokens looked up yet."));
    } else {
        m_overall->setText(tr("Reused %1 of %2 tokens looked up (%3); the rest were recomputed.")
                               .arg(QLocale().toString(static_cast<qulonglong>(hits)),
                                    QLocale().toString(static_cast<qulonglong>(stats.lookupTokens)),
                                    formatRate(hits, stats.lookupTokens)));
    }
    m_shared->setText(countOf(stats.sharedBlocks, tr("Shared between conversations: %1 block"),
                              tr("Shared between conversations: %1 blocks")));

    if (stats.diskEnabled && !stats.diskWritesStoppedReason.empty()) {
        m_diskOff->setText(
            tr("⚠ No new blocks go to disk: %1.").arg(QString::fromStdString(stats.diskWritesStoppedReason)));
        m_diskOff->show();
    } else if (stats.diskEnabled) {
        m_diskOff->clear();
        m_diskOff->hide();
    } else {
        const QString reason = QString::fromStdString(stats.diskDisabledReason);
        m_diskOff->setText(reason.isEmpty()
                               ? tr("⚠ Disk tier off: conversations will not resume from disk.")
                               : tr("⚠ Disk tier off: %1. Conversations will not resume from disk.").arg(reason));
        m_diskOff->show();
    }
}

} // namespace kvchat::ui
