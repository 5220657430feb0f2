// SPDX-License-Identifier: MIT
// AppSettings: the desktop app's persistent settings, a typed wrapper over QSettings
// (organization "kvchat", application "kvchat"; or an INI file of the caller's choosing, for tests).
// Every getter returns a sensible default when nothing is stored; every setter writes at once
// (QSettings flushes to disk lazily; sync() forces it).
//
// It also builds the engine-side structs from what is stored: engineOptions() for OpenModel and
// generationSettings() for each StartTurn.
//
// Thread-safety: UI thread only (like QSettings used from one thread).
#pragma once

#include "app/bridge/engine_bridge.h"

#include <QByteArray>
#include <QList>
#include <QString>
#include <QStringList>

#include <memory>
#include <optional>

class QSettings;

namespace kvchat::ui {

// A named system prompt. An empty text means "the model template's own default system prompt".
struct SystemPromptPreset
{
    QString name;
    QString text;
    bool operator==(const SystemPromptPreset &) const = default;
};

class AppSettings
{
public:
    static constexpr int kMaxRecentModels = 8;
    // Names of the built-in presets (defaultPresets()); kModelDefaultPreset has empty text.
    static inline const QString kModelDefaultPreset = QStringLiteral("Model default");

    // The user's settings (QSettings("kvchat", "kvchat"), native format).
    AppSettings();
    // An INI file at iniPath (created on first write); tests pass a temporary file.
    explicit AppSettings(const QString &iniPath);
    ~AppSettings();
    AppSettings(const AppSettings &) = delete;
    AppSettings &operator=(const AppSettings &) = delete;

    QString fileName() const; // where QSettings stores it
    void sync();              // flushes to disk now

    // --- model ---
    QString lastModelPath() const;              // "" when none was opened yet
    void setLastModelPath(const QString &path); // also moves path to the front of recentModels()
    QStringList recentModels() const;           // most recent first, no duplicates, <= kMaxRecentModels
    void addRecentModel(const QString &path);   // to the front; an existing entry moves, the oldest drops
    void clearRecentModels();

    // --- engine (a change needs the model reopened) ---
    int threads() const; // 0: one per hardware thread (default)
    void setThreads(int threads);
    QString backend() const; // "cpu" (default) or "cuda"; an unavailable stored value reads as "cpu"
    void setBackend(const QString &backend);
    static QStringList backends();                          // every backend name, "cpu" first
    static bool isBackendAvailable(const QString &backend); // built into this binary ("cuda": KVCHAT_HAS_CUDA)
    // KV budgets per tier in MiB; 0 (default) means the machine default (KvBudgets::machineDefaults).
    int deviceBudgetMiB() const;
    void setDeviceBudgetMiB(int mib);
    int hostBudgetMiB() const;
    void setHostBudgetMiB(int mib);
    int diskBudgetMiB() const;
    void setDiskBudgetMiB(int mib);
    QString templateOverride() const; // "" (default): the model's own template; else a ChatTemplate::names() entry
    void setTemplateOverride(const QString &name);

    // --- generation ---
    // Defaults: temperature 0.7, top-k 40, top-p 0.95, min-p 0.05, repetition penalty 1.1 over the
    // last 64 tokens, seed 0 (a new random seed for each turn).
    static engine::SamplingParams defaultSampling();
    static constexpr int kDefaultMaxNewTokens = 512;
    engine::SamplingParams sampling() const;
    void setSampling(const engine::SamplingParams &sampling);
    int maxNewTokens() const; // default 512
    void setMaxNewTokens(int tokens);

    // --- system prompt presets (order kept as given) ---
    static QList<SystemPromptPreset> defaultPresets(); // "Model default", "Concise assistant", "Code helper"
    QList<SystemPromptPreset> presets() const;         // defaultPresets() until setPresets is called
    void setPresets(const QList<SystemPromptPreset> &presets);
    QString currentPreset() const; // a name in presets(); falls back to the first preset
    void setCurrentPreset(const QString &name);
    // The current preset's text for a new conversation: nullopt when it is empty (use the model
    // template's default system prompt).
    std::optional<QString> systemPrompt() const;

    // The main window's geometry and dock layout (QWidget::saveGeometry, QMainWindow::saveState);
    // empty until the window was closed once.
    QByteArray windowGeometry() const;
    QByteArray windowState() const;
    void setWindowLayout(const QByteArray &geometry, const QByteArray &state);

    // --- engine-side structs ---
    // Options for OpenModel. Budgets: all three 0 → unset (the engine uses machine defaults); any
    // set → KvBudgets::machineDefaults(databasePath) with the set tiers overridden (databasePath "":
    // the current directory; the disk default comes from the free space there).
    engine::ChatEngineOptions engineOptions(const QString &databasePath = QString()) const;
    // Sampling and length for one turn; a stored seed of 0 becomes a fresh random (non-zero) seed.
    bridge::GenerationSettings generationSettings() const;

private:
    std::unique_ptr<QSettings> m_settings;
};

} // namespace kvchat::ui
