// SPDX-License-Identifier: MIT
#include "ui/app_settings.h"

#include <QDir>
#include <QRandomGenerator>
#include <QSettings>

#include <algorithm>
#include <cmath>

namespace kvchat::ui {

namespace {

// Keys; grouped so the INI file reads well. Do not rename: users' settings are stored under them.
const QString kLastModel = QStringLiteral("model/lastPath");
const QString kRecentModels = QStringLiteral("model/recent");
const QString kThreads = QStringLiteral("engine/threads");
const QString kBackend = QStringLiteral("engine/backend");
const QString kDeviceBudget = QStringLiteral("engine/deviceBudgetMiB");
const QString kHostBudget = QStringLiteral("engine/hostBudgetMiB");
const QString kDiskBudget = QStringLiteral("engine/diskBudgetMiB");
const QString kTemplate = QStringLiteral("engine/templateOverride");
const QString kTemperature = QStringLiteral("sampling/temperature");
const QString kTopK = QStringLiteral("sampling/topK");
const QString kTopP = QStringLiteral("sampling/topP");
const QString kMinP = QStringLiteral("sampling/minP");
const QString kRepeatPenalty = QStringLiteral("sampling/repeatPenalty");
const QString kRepeatLastN = QStringLiteral("sampling/repeatLastN");
const QString kSeed = QStringLiteral("sampling/seed");
const QString kMaxTokens = QStringLiteral("sampling/maxNewTokens");
const QString kPresets = QStringLiteral("prompts/presets");
const QString kCurrentPreset = QStringLiteral("prompts/current");
const QString kWindowGeometry = QStringLiteral("window/geometry");
const QString kWindowState = QStringLiteral("window/state");

const QString kCpu = QStringLiteral("cpu");
const QString kCuda = QStringLiteral("cuda");

std::size_t mibToBytes(int mib)
{
    return static_cast<std::size_t>(mib) << 20;
}

} // namespace

AppSettings::AppSettings() : m_settings(std::make_unique<QSettings>(QStringLiteral("kvchat"), QStringLiteral("kvchat")))
{}

AppSettings::AppSettings(const QString &iniPath)
    : m_settings(std::make_unique<QSettings>(iniPath, QSettings::IniFormat))
{}

AppSettings::~AppSettings() = default;

QString AppSettings::fileName() const
{
    return m_settings->fileName();
}

void AppSettings::sync()
{
    m_settings->sync();
}

// --- model ---

QByteArray AppSettings::windowGeometry() const
{
    return m_settings->value(kWindowGeometry).toByteArray();
}

QByteArray AppSettings::windowState() const
{
    return m_settings->value(kWindowState).toByteArray();
}

void AppSettings::setWindowLayout(const QByteArray &geometry, const QByteArray &state)
{
    m_settings->setValue(kWindowGeometry, geometry);
    m_settings->setValue(kWindowState, state);
}

QString AppSettings::lastModelPath() const
{
    return m_settings->value(kLastModel).toString();
}

void AppSettings::setLastModelPath(const QString &path)
{
    m_settings->setValue(kLastModel, path);
    addRecentModel(path);
}

QStringList AppSettings::recentModels() const
{
    QStringList list = m_settings->value(kRecentModels).toStringList();
    list.removeAll(QString());
    list.removeDuplicates();
    return list.mid(0, kMaxRecentModels);
}

void AppSettings::addRecentModel(const QString &path)
{
    if (path.isEmpty())
        return;
    QStringList list = recentModels();
    list.removeAll(path);
    list.prepend(path);
    m_settings->setValue(kRecentModels, list.mid(0, kMaxRecentModels));
}

void AppSettings::clearRecentModels()
{
    m_settings->remove(kRecentModels);
}

// --- engine ---

int AppSettings::threads() const
{
    return std::max(0, m_settings->value(kThreads, 0).toInt());
}

void AppSettings::setThreads(int threads)
{
    m_settings->setValue(kThreads, std::max(0, threads));
}

QString AppSettings::backend() const
{
    const QString stored = m_settings->value(kBackend, kCpu).toString();
    return isBackendAvailable(stored) ? stored : kCpu;
}

void AppSettings::setBackend(const QString &backend)
{
    m_settings->setValue(kBackend, backends().contains(backend) ? backend : kCpu);
}

QStringList AppSettings::backends()
{
    return {kCpu, kCuda};
}

bool AppSettings::isBackendAvailable(const QString &backend)
{
    if (backend == kCpu)
        return true;
#ifdef KVCHAT_HAS_CUDA
    if (backend == kCuda)
        return true;
#endif
    return false;
}

int AppSettings::deviceBudgetMiB() const
{
    return std::max(0, m_settings->value(kDeviceBudget, 0).toInt());
}

void AppSettings::setDeviceBudgetMiB(int mib)
{
    m_settings->setValue(kDeviceBudget, std::max(0, mib));
}

int AppSettings::hostBudgetMiB() const
{
    return std::max(0, m_settings->value(kHostBudget, 0).toInt());
}

void AppSettings::setHostBudgetMiB(int mib)
{
    m_settings->setValue(kHostBudget, std::max(0, mib));
}

int AppSettings::diskBudgetMiB() const
{
    return std::max(0, m_settings->value(kDiskBudget, 0).toInt());
}

void AppSettings::setDiskBudgetMiB(int mib)
{
    m_settings->setValue(kDiskBudget, std::max(0, mib));
}

QString AppSettings::templateOverride() const
{
    return m_settings->value(kTemplate).toString();
}

void AppSettings::setTemplateOverride(const QString &name)
{
    m_settings->setValue(kTemplate, name);
}

// --- generation ---

engine::SamplingParams AppSettings::defaultSampling()
{
    engine::SamplingParams p;
    p.temperature = 0.7f;
    p.topK = 40;
    p.topP = 0.95f;
    p.minP = 0.05f;
    p.repeatPenalty = 1.1f;
    p.repeatLastN = 64;
    p.seed = 0;
    return p;
}

engine::SamplingParams AppSettings::sampling() const
{
    const engine::SamplingParams d = defaultSampling();
    engine::SamplingParams p;
    p.temperature = m_settings->value(kTemperature, d.temperature).toFloat();
    p.topK = m_settings->value(kTopK, d.topK).toInt();
    p.topP = m_settings->value(kTopP, d.topP).toFloat();
    p.minP = m_settings->value(kMinP, d.minP).toFloat();
    p.repeatPenalty = m_settings->value(kRepeatPenalty, d.repeatPenalty).toFloat();
    p.repeatLastN = m_settings->value(kRepeatLastN, d.repeatLastN).toInt();
    p.seed = m_settings->value(kSeed, static_cast<qulonglong>(d.seed)).toULongLong();
    return p;
}

void AppSettings::setSampling(const engine::SamplingParams &p)
{
    // Stored as double so the INI file shows 0.7, not 0.699999988.
    auto rounded = [](float v) { return std::round(static_cast<double>(v) * 1e4) / 1e4; };
    m_settings->setValue(kTemperature, rounded(p.temperature));
    m_settings->setValue(kTopK, p.topK);
    m_settings->setValue(kTopP, rounded(p.topP));
    m_settings->setValue(kMinP, rounded(p.minP));
    m_settings->setValue(kRepeatPenalty, rounded(p.repeatPenalty));
    m_settings->setValue(kRepeatLastN, p.repeatLastN);
    m_settings->setValue(kSeed, static_cast<qulonglong>(p.seed));
}

int AppSettings::maxNewTokens() const
{
    return std::max(1, m_settings->value(kMaxTokens, kDefaultMaxNewTokens).toInt());
}

void AppSettings::setMaxNewTokens(int tokens)
{
    m_settings->setValue(kMaxTokens, std::max(1, tokens));
}

// --- presets ---

QList<SystemPromptPreset> AppSettings::defaultPresets()
{
    return {
        {kModelDefaultPreset, QString()},
        {QStringLiteral("Concise assistant"),
         QStringLiteral("You are a helpful assistant. Answer clearly and concisely; prefer short paragraphs "
                        "and lists, and say so when you are not sure.")},
        {QStringLiteral("Code helper"),
         QStringLiteral("You are an expert programmer. Give correct, idiomatic code in fenced code blocks with "
                        "the language named, explain briefly why it works, and point out edge cases.")},
    };
}

QList<SystemPromptPreset> AppSettings::presets() const
{
    const int n = m_settings->beginReadArray(kPresets);
    QList<SystemPromptPreset> list;
    for (int i = 0; i < n; ++i) {
        m_settings->setArrayIndex(i);
        SystemPromptPreset preset{m_settings->value(QStringLiteral("name")).toString(),
                                  m_settings->value(QStringLiteral("text")).toString()};
        if (!preset.name.isEmpty())
            list.append(preset);
    }
    m_settings->endArray();
    // Never stored yet (or stored empty): the built-in ones, so the menu is never empty.
    return list.isEmpty() ? defaultPresets() : list;
}

void AppSettings::setPresets(const QList<SystemPromptPreset> &presets)
{
    m_settings->remove(kPresets);
    m_settings->beginWriteArray(kPresets, static_cast<int>(presets.size()));
    for (int i = 0; i < presets.size(); ++i) {
        m_settings->setArrayIndex(i);
        m_settings->setValue(QStringLiteral("name"), presets[i].name);
        m_settings->setValue(QStringLiteral("text"), presets[i].text);
    }
    m_settings->endArray();
}

QString AppSettings::currentPreset() const
{
    const QList<SystemPromptPreset> list = presets();
    const QString stored = m_settings->value(kCurrentPreset).toString();
    for (const SystemPromptPreset &p : list)
        if (p.name == stored)
            return stored;
    return list.first().name;
}

void AppSettings::setCurrentPreset(const QString &name)
{
    m_settings->setValue(kCurrentPreset, name);
}

std::optional<QString> AppSettings::systemPrompt() const
{
    const QString name = currentPreset();
    for (const SystemPromptPreset &p : presets())
        if (p.name == name)
            return p.text.isEmpty() ? std::nullopt : std::optional<QString>(p.text);
    return std::nullopt;
}

// --- engine-side structs ---

engine::ChatEngineOptions AppSettings::engineOptions(const QString &databasePath) const
{
    engine::ChatEngineOptions options;
    options.threads = threads();
    options.backend = backend().toStdString();
    options.templateName = templateOverride().toStdString();
    const int device = deviceBudgetMiB(), host = hostBudgetMiB(), disk = diskBudgetMiB();
    if (device > 0 || host > 0 || disk > 0) {
        // machineDefaults sizes the disk tier from the free space beside the database (and throws on "").
        const QString dbPath =
            databasePath.isEmpty() ? QDir::current().filePath(QStringLiteral("kvchat.db")) : databasePath;
        engine::KvBudgets budgets = engine::KvBudgets::machineDefaults(dbPath.toStdString());
        if (device > 0)
            budgets.deviceBytes = mibToBytes(device);
        if (host > 0)
            budgets.hostBytes = mibToBytes(host);
        if (disk > 0)
            budgets.diskBytes = mibToBytes(disk);
        options.budgets = budgets;
    }
    return options;
}

bridge::GenerationSettings AppSettings::generationSettings() const
{
    bridge::GenerationSettings settings;
    settings.sampling = sampling();
    settings.maxNewTokens = maxNewTokens();
    while (settings.sampling.seed == 0)
        settings.sampling.seed = QRandomGenerator::global()->generate64();
    return settings;
}

} // namespace kvchat::ui
