// SPDX-License-Identifier: MIT
#include "ui/ttft_format.h"

#include <QCoreApplication>

namespace kvchat::ui {

namespace {

QString tr(const char *text)
{
    return QCoreApplication::translate("kvchat::ui::TtftFormat", text);
}

} // namespace

QLocale displayLocale()
{
    QLocale locale;
    if (locale.language() == QLocale::C)
        locale = QLocale(QLocale::English, QLocale::UnitedStates);
    return locale;
}

QString formatMs(double ms)
{
    const QLocale locale = displayLocale();
    if (ms >= 10000.0)
        return locale.toString(ms / 1000.0, 'f', 1) + QStringLiteral(" s");
    return locale.toString(ms, 'f', ms < 100.0 ? 1 : 0) + QStringLiteral(" ms");
}

QString formatCount(std::int64_t n)
{
    return displayLocale().toString(static_cast<qlonglong>(n));
}

QString ttftLabel(double ttftMs)
{
    return tr("TTFT %1").arg(formatMs(ttftMs));
}

QString ttftWaitingLabel(double elapsedMs)
{
    // Whole milliseconds while counting: a tenth that changes every frame is noise.
    return tr("TTFT %1 ms…").arg(displayLocale().toString(static_cast<qlonglong>(elapsedMs)));
}

double decodeTokensPerSecond(const engine::TurnRecord &record)
{
    if (record.decodeTokens <= 0 || record.decodeMs <= 0.0)
        return 0.0;
    return record.decodeTokens * 1000.0 / record.decodeMs;
}

QString decodeRateText(const engine::TurnRecord &record)
{
    const double rate = decodeTokensPerSecond(record);
    if (rate <= 0.0)
        return {};
    return tr("%1 tok/s").arg(displayLocale().toString(rate, 'f', 1));
}

QString turnBreakdownHtml(const engine::TurnRecord &r)
{
    const QString row = QStringLiteral("<tr><td>%1</td><td align=right>&nbsp;&nbsp;%2</td></tr>");
    const QString sub = QStringLiteral("<tr><td>&nbsp;&nbsp;%1</td><td align=right>&nbsp;&nbsp;%2</td></tr>");
    QString html = QStringLiteral("<b>") + ttftLabel(r.ttftMs) + QStringLiteral("</b><table cellspacing=0>");
    html += row.arg(tr("Queue"), formatMs(r.queueMs));
    html += row.arg(tr("Prepare"), formatMs(r.prepareMs));
    html += row.arg(tr("KV restore"), formatMs(r.restoreDeviceMs + r.restoreHostMs + r.restoreDiskMs));
    html += sub.arg(tr("from device (%1 tokens)").arg(formatCount(r.reusedDevice)), formatMs(r.restoreDeviceMs));
    html += sub.arg(tr("from RAM (%1 tokens)").arg(formatCount(r.reusedHost)), formatMs(r.restoreHostMs));
    html += sub.arg(tr("from disk (%1 tokens)").arg(formatCount(r.reusedDisk)), formatMs(r.restoreDiskMs));
    html += row.arg(tr("Prefill (%1 tokens recomputed)").arg(formatCount(r.recomputed)), formatMs(r.prefillMs));
    html += row.arg(tr("First decode"), formatMs(r.firstDecodeMs));
    html += QStringLiteral("</table>");
    const std::int32_t reused = r.reusedDevice + r.reusedHost + r.reusedDisk;
    html += tr("Prompt: %1 tokens, %2 reused, %3 recomputed")
                .arg(formatCount(r.promptTokens), formatCount(reused), formatCount(r.recomputed));
    if (const double rate = decodeTokensPerSecond(r); rate > 0.0)
        html += QStringLiteral("<br>") + tr("Reply: %1 tokens in %2 (%3 tok/s)")
                                             .arg(formatCount(r.decodeTokens), formatMs(r.decodeMs),
                                                  displayLocale().toString(rate, 'f', 1));
    return html;
}

QString turnBreakdownText(const engine::TurnRecord &r)
{
    QStringList lines;
    lines << ttftLabel(r.ttftMs);
    lines << tr("Queue %1, prepare %2").arg(formatMs(r.queueMs), formatMs(r.prepareMs));
    lines << tr("Restore: device %1 (%2 tokens), RAM %3 (%4 tokens), disk %5 (%6 tokens)")
                 .arg(formatMs(r.restoreDeviceMs), formatCount(r.reusedDevice), formatMs(r.restoreHostMs),
                      formatCount(r.reusedHost), formatMs(r.restoreDiskMs), formatCount(r.reusedDisk));
    lines << tr("Prefill %1 (%2 tokens recomputed), first decode %3")
                 .arg(formatMs(r.prefillMs), formatCount(r.recomputed), formatMs(r.firstDecodeMs));
    if (const QString rate = decodeRateText(r); !rate.isEmpty())
        lines << tr("Reply: %1 tokens, %2").arg(formatCount(r.decodeTokens), rate);
    return lines.join(QLatin1Char('\n'));
}

QString tierName(engine::Tier tier)
{
    switch (tier) {
    case engine::Tier::Device:
        return tr("device");
    case engine::Tier::Host:
        return tr("RAM");
    case engine::Tier::Disk:
        return tr("disk");
    }
    return {};
}

QString residencyBadge(const engine::KvResidency &residency)
{
    const std::optional<engine::Tier> tier = residency.slowestTier();
    return tier ? tierName(*tier) : tr("not cached");
}

QString residencyToolTip(const engine::KvResidency &r)
{
    if (!r.slowestTier())
        return r.total > 0 ? tr("No KV cached (%1 tokens would be recomputed)").arg(formatCount(r.total))
                           : tr("No KV cached yet");
    QString text = tr("%1 tokens on device, %2 in RAM, %3 on disk")
                       .arg(formatCount(r.device), formatCount(r.host), formatCount(r.disk));
    if (r.total > 0)
        text += QLatin1Char(' ') + tr("(of %1)").arg(formatCount(r.total));
    return text;
}

} // namespace kvchat::ui
