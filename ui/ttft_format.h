// SPDX-License-Identifier: MIT
// Text for the numbers the engine reports about a turn (STYLE.md §2.6: the engine sends numbers,
// ui/ turns them into text): the TTFT label under a reply, its breakdown tooltip, the decode
// rate, and the residency badge of a conversation.
//
// Numbers use the user's locale ("1,984"); under the C locale (tests, CI) they use English
// grouping so the text is the same everywhere.
// Thread-safety: pure functions, any thread.
#pragma once

#include "engine/kv/tiered_kv_cache.h"
#include "engine/store/session_store.h"

#include <QLocale>
#include <QString>

#include <optional>

namespace kvchat::ui {

// The locale numbers are shown in (see above).
QLocale displayLocale();
// "0.4 ms", "42.1 ms", "812 ms", "12.3 s".
QString formatMs(double ms);
// "1,984".
QString formatCount(std::int64_t n);

// "TTFT 123 ms" (the label under a reply).
QString ttftLabel(double ttftMs);
// "TTFT 412 ms…": the live count while the first token is awaited.
QString ttftWaitingLabel(double elapsedMs);
// Decode speed in tokens/s (0 when the record has no decode), and as text: "41.5 tok/s" or "".
double decodeTokensPerSecond(const engine::TurnRecord &record);
QString decodeRateText(const engine::TurnRecord &record);
// The hover text of a reply's TTFT: a table of queue, prepare, restore per tier, prefill, first
// decode; the prompt tokens reused from device / RAM / disk and recomputed; the decode rate.
// Rich text (Qt tooltips render it).
QString turnBreakdownHtml(const engine::TurnRecord &record);
// The same as plain text, one part per line (accessibility, copy).
QString turnBreakdownText(const engine::TurnRecord &record);

// "device", "RAM", "disk".
QString tierName(engine::Tier tier);
// The badge text of a conversation: "device" / "RAM" / "disk" from slowestTier(), or "not cached".
QString residencyBadge(const engine::KvResidency &residency);
// "1,984 tokens on device, 512 in RAM, 0 on disk (of 2,496)" or "No KV cached (2,496 tokens)".
QString residencyToolTip(const engine::KvResidency &residency);

} // namespace kvchat::ui
