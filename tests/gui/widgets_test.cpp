// SPDX-License-Identifier: MIT
// The desktop app's stand-alone widgets and settings, offscreen: AppSettings (defaults, round trips
// through a temporary INI file, the engine-side structs it builds), SettingsDialog (loads settings,
// writes them back on OK only), TtftChart (bars, parts, source colours, tool tips) and CachePanel
// (numbers, the disk-off reason). Set KVCHAT_SCREENSHOT_DIR to also save PNGs of the widgets.
#include "ui/app_settings.h"
#include "ui/cache_panel.h"
#include "ui/settings_dialog.h"
#include "ui/ttft_chart.h"

#include <QAbstractItemModelTester>
#include <QComboBox>
#include <QDoubleSpinBox>
#include <QFile>
#include <QIcon>
#include <QLabel>
#include <QLineEdit>
#include <QListWidget>
#include <QPlainTextEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QSignalSpy>
#include <QSpinBox>
#include <QSvgRenderer>
#include <QTabWidget>
#include <QTemporaryDir>
#include <QTest>
#include <QtCharts/QBarSet>
#include <QtCharts/QChartView>
#include <QtCharts/QScatterSeries>
#include <QtCharts/QStackedBarSeries>

Q_DECLARE_METATYPE(kvchat::engine::TurnRecord)

using namespace kvchat;
using kvchat::ui::AppSettings;
using kvchat::ui::TtftChart;

namespace {

engine::TurnRecord turn(std::int64_t messageId, double queue, double restore, double prefill, double decode,
                        std::int32_t device, std::int32_t host, std::int32_t disk, std::int32_t recomputed)
{
    engine::TurnRecord t;
    t.messageId = messageId;
    t.queueMs = queue * 0.25;
    t.prepareMs = queue * 0.75;
    t.restoreDeviceMs = restore * 0.5;
    t.restoreHostMs = restore * 0.25;
    t.restoreDiskMs = restore * 0.25;
    t.prefillMs = prefill;
    t.firstDecodeMs = decode;
    t.ttftMs = queue + restore + prefill + decode;
    t.reusedDevice = device;
    t.reusedHost = host;
    t.reusedDisk = disk;
    t.recomputed = recomputed;
    t.promptTokens = device + host + disk + recomputed;
    t.decodeTokens = 64;
    t.decodeMs = 800;
    return t;
}

template <typename T> T *child(QObject *parent, const char *name)
{
    T *found = parent->findChild<T *>(QString::fromLatin1(name));
    if (!found)
        qFatal("no child %s", name);
    return found;
}

} // namespace

class WidgetsTest : public QObject
{
    Q_OBJECT

private slots:
    void initTestCase();
    void init();

    void settingsDefaults();
    void settingsRoundTrip();
    void recentModelsDedupAndCap();
    void presetsRoundTrip();
    void unavailableBackendReadsAsCpu();
    void engineOptionsMapping();
    void generationSettingsMapping();

    void dialogLoadsSettings();
    void dialogWritesBackOnAccept();
    void dialogSamplingOnlyKeepsEngine();
    void dialogCancelWritesNothing();
    void dialogEditsPresets();

    void chartBarsAndValues();
    void chartSourceColours_data();
    void chartSourceColours();
    void chartReplacesSameMessage();
    void chartCapsAndClears();
    void chartToolTip();

    void cachePanelShowsNumbers();
    void cachePanelDiskOff();

    void iconAndDesktopEntry();
    void screenshots();

private:
    QTemporaryDir m_dir;
    QString m_iniPath;
    int m_nextIni = 0;
};

void WidgetsTest::initTestCase()
{
    Q_INIT_RESOURCE(resources); // kvchat_ui is static: its resources need a reference to be linked
    // Number formats ("2,048 MiB") are checked as an English-speaking user sees them.
    QLocale::setDefault(QLocale(QLocale::English, QLocale::UnitedStates));
    QVERIFY(m_dir.isValid());
}

void WidgetsTest::init()
{
    m_iniPath = m_dir.filePath(QStringLiteral("settings-%1.ini").arg(m_nextIni++));
}

void WidgetsTest::settingsDefaults()
{
    AppSettings s(m_iniPath);
    QCOMPARE(s.lastModelPath(), QString());
    QVERIFY(s.recentModels().isEmpty());
    QCOMPARE(s.threads(), 0);
    QCOMPARE(s.backend(), QStringLiteral("cpu"));
    QCOMPARE(s.deviceBudgetMiB(), 0);
    QCOMPARE(s.hostBudgetMiB(), 0);
    QCOMPARE(s.diskBudgetMiB(), 0);
    QCOMPARE(s.templateOverride(), QString());
    const engine::SamplingParams p = s.sampling();
    QCOMPARE(p.temperature, 0.7f);
    QCOMPARE(p.topK, 40);
    QCOMPARE(p.topP, 0.95f);
    QCOMPARE(p.minP, 0.05f);
    QCOMPARE(p.repeatPenalty, 1.1f);
    QCOMPARE(p.seed, std::uint64_t(0));
    QCOMPARE(s.maxNewTokens(), 512);
    const QList<ui::SystemPromptPreset> presets = s.presets();
    QCOMPARE(presets.size(), 3);
    QCOMPARE(presets[0].name, QStringLiteral("Model default"));
    QCOMPARE(presets[0].text, QString());
    QCOMPARE(presets[1].name, QStringLiteral("Concise assistant"));
    QCOMPARE(presets[2].name, QStringLiteral("Code helper"));
    QVERIFY(!presets[1].text.isEmpty() && !presets[2].text.isEmpty());
    QCOMPARE(s.currentPreset(), QStringLiteral("Model default"));
    QCOMPARE(s.systemPrompt(), std::nullopt);
}

void WidgetsTest::settingsRoundTrip()
{
    {
        AppSettings s(m_iniPath);
        s.setLastModelPath(QStringLiteral("/models/a.gguf"));
        s.setThreads(6);
        s.setDeviceBudgetMiB(1024);
        s.setHostBudgetMiB(2048);
        s.setDiskBudgetMiB(4096);
        s.setTemplateOverride(QStringLiteral("chatml"));
        engine::SamplingParams p;
        p.temperature = 0.2f;
        p.topK = 7;
        p.topP = 0.5f;
        p.minP = 0.1f;
        p.repeatPenalty = 1.3f;
        p.repeatLastN = 32;
        p.seed = 12345678901234ULL;
        s.setSampling(p);
        s.setMaxNewTokens(100);
        s.sync();
        QVERIFY(QFile::exists(m_iniPath));
    }
    AppSettings s(m_iniPath);
    QCOMPARE(s.lastModelPath(), QStringLiteral("/models/a.gguf"));
    QCOMPARE(s.recentModels(), QStringList{QStringLiteral("/models/a.gguf")});
    QCOMPARE(s.threads(), 6);
    QCOMPARE(s.deviceBudgetMiB(), 1024);
    QCOMPARE(s.hostBudgetMiB(), 2048);
    QCOMPARE(s.diskBudgetMiB(), 4096);
    QCOMPARE(s.templateOverride(), QStringLiteral("chatml"));
    const engine::SamplingParams p = s.sampling();
    QCOMPARE(p.temperature, 0.2f);
    QCOMPARE(p.topK, 7);
    QCOMPARE(p.topP, 0.5f);
    QCOMPARE(p.minP, 0.1f);
    QCOMPARE(p.repeatPenalty, 1.3f);
    QCOMPARE(p.repeatLastN, 32);
    QCOMPARE(p.seed, 12345678901234ULL);
    QCOMPARE(s.maxNewTokens(), 100);
}

void WidgetsTest::recentModelsDedupAndCap()
{
    AppSettings s(m_iniPath);
    for (int i = 0; i < 12; ++i)
        s.addRecentModel(QStringLiteral("/m/%1.gguf").arg(i));
    QStringList recent = s.recentModels();
    QCOMPARE(recent.size(), AppSettings::kMaxRecentModels);
    QCOMPARE(recent.first(), QStringLiteral("/m/11.gguf"));
    QCOMPARE(recent.last(), QStringLiteral("/m/4.gguf"));

    s.setLastModelPath(QStringLiteral("/m/6.gguf")); // already there: moves to the front, no duplicate
    recent = s.recentModels();
    QCOMPARE(recent.size(), AppSettings::kMaxRecentModels);
    QCOMPARE(recent.first(), QStringLiteral("/m/6.gguf"));
    QCOMPARE(recent.count(QStringLiteral("/m/6.gguf")), 1);
    QCOMPARE(recent.at(1), QStringLiteral("/m/11.gguf"));

    s.addRecentModel(QString()); // ignored
    QCOMPARE(s.recentModels(), recent);
    s.clearRecentModels();
    QVERIFY(s.recentModels().isEmpty());
}

void WidgetsTest::presetsRoundTrip()
{
    const QList<ui::SystemPromptPreset> mine = {{QStringLiteral("Pirate"), QStringLiteral("Talk like a pirate.")},
                                                {QStringLiteral("Plain"), QString()}};
    {
        AppSettings s(m_iniPath);
        s.setPresets(mine);
        s.setCurrentPreset(QStringLiteral("Pirate"));
    }
    AppSettings s(m_iniPath);
    QCOMPARE(s.presets(), mine);
    QCOMPARE(s.currentPreset(), QStringLiteral("Pirate"));
    QCOMPARE(s.systemPrompt(), std::optional<QString>(QStringLiteral("Talk like a pirate.")));
    s.setCurrentPreset(QStringLiteral("Plain"));
    QCOMPARE(s.systemPrompt(), std::nullopt); // empty text: the model template's default
    s.setCurrentPreset(QStringLiteral("Gone"));
    QCOMPARE(s.currentPreset(), QStringLiteral("Pirate")); // unknown name: the first preset
    s.setPresets({});
    QCOMPARE(s.presets(), AppSettings::defaultPresets()); // never an empty menu
}

void WidgetsTest::unavailableBackendReadsAsCpu()
{
    AppSettings s(m_iniPath);
    QCOMPARE(AppSettings::backends(), (QStringList{QStringLiteral("cpu"), QStringLiteral("cuda")}));
    QVERIFY(AppSettings::isBackendAvailable(QStringLiteral("cpu")));
    QVERIFY(!AppSettings::isBackendAvailable(QStringLiteral("metal")));
    s.setBackend(QStringLiteral("cuda"));
    QCOMPARE(s.backend(),
             AppSettings::isBackendAvailable(QStringLiteral("cuda")) ? QStringLiteral("cuda") : QStringLiteral("cpu"));
    s.setBackend(QStringLiteral("metal"));
    QCOMPARE(s.backend(), QStringLiteral("cpu"));
}

void WidgetsTest::engineOptionsMapping()
{
    AppSettings s(m_iniPath);
    engine::ChatEngineOptions o = s.engineOptions(m_dir.filePath(QStringLiteral("kvchat.db")));
    QCOMPARE(o.threads, 0);
    QVERIFY(!o.budgets.has_value()); // all 0: the engine picks machine defaults
    QCOMPARE(o.templateName, std::string());
    QVERIFY(o.useCache);

    s.setThreads(3);
    s.setTemplateOverride(QStringLiteral("llama3"));
    s.setHostBudgetMiB(64);
    o = s.engineOptions(m_dir.filePath(QStringLiteral("kvchat.db")));
    QCOMPARE(o.threads, 3);
    QCOMPARE(o.templateName, std::string("llama3"));
    QVERIFY(o.budgets.has_value());
    const engine::KvBudgets defaults =
        engine::KvBudgets::machineDefaults(m_dir.filePath(QStringLiteral("kvchat.db")).toStdString());
    QCOMPARE(o.budgets->hostBytes, std::size_t(64) << 20);
    QCOMPARE(o.budgets->deviceBytes, defaults.deviceBytes);
    QVERIFY(o.budgets->diskBytes > 0);

    s.setDeviceBudgetMiB(16);
    s.setDiskBudgetMiB(256);
    o = s.engineOptions();
    QCOMPARE(o.budgets->deviceBytes, std::size_t(16) << 20);
    QCOMPARE(o.budgets->diskBytes, std::size_t(256) << 20);
}

void WidgetsTest::generationSettingsMapping()
{
    AppSettings s(m_iniPath);
    engine::SamplingParams p = AppSettings::defaultSampling();
    p.temperature = 0.3f;
    p.topK = 12;
    s.setSampling(p);
    s.setMaxNewTokens(77);
    const bridge::GenerationSettings a = s.generationSettings();
    const bridge::GenerationSettings b = s.generationSettings();
    QCOMPARE(a.maxNewTokens, 77);
    QCOMPARE(a.sampling.temperature, 0.3f);
    QCOMPARE(a.sampling.topK, 12);
    QCOMPARE(a.sampling.repeatPenalty, 1.1f);
    QVERIFY(a.sampling.seed != 0); // seed 0: a fresh random seed per turn
    QVERIFY(a.sampling.seed != b.sampling.seed);

    p.seed = 42;
    s.setSampling(p);
    QCOMPARE(s.generationSettings().sampling.seed, std::uint64_t(42));
}

void WidgetsTest::dialogLoadsSettings()
{
    AppSettings s(m_iniPath);
    s.addRecentModel(QStringLiteral("/m/old.gguf"));
    s.setLastModelPath(QStringLiteral("/m/new.gguf"));
    s.setThreads(4);
    s.setTemplateOverride(QStringLiteral("zephyr"));
    s.setDiskBudgetMiB(512);
    s.setMaxNewTokens(300);
    s.setCurrentPreset(QStringLiteral("Code helper"));

    ui::SettingsDialog dialog(s);
    auto *path = child<QComboBox>(&dialog, "modelPathCombo");
    QCOMPARE(path->currentText(), QStringLiteral("/m/new.gguf"));
    QCOMPARE(path->count(), 2); // the recent models
    QCOMPARE(child<QSpinBox>(&dialog, "threadsSpin")->value(), 4);
    QCOMPARE(child<QComboBox>(&dialog, "templateCombo")->currentData().toString(), QStringLiteral("zephyr"));
    QCOMPARE(child<QComboBox>(&dialog, "templateCombo")->itemText(0), QStringLiteral("(model's own)"));
    QCOMPARE(child<QComboBox>(&dialog, "templateCombo")->count(), qsizetype(engine::ChatTemplate::names().size()) + 1);
    QCOMPARE(child<QComboBox>(&dialog, "backendCombo")->currentData().toString(), QStringLiteral("cpu"));
    QCOMPARE(child<QSpinBox>(&dialog, "diskBudgetSpin")->value(), 512);
    QCOMPARE(child<QSpinBox>(&dialog, "deviceBudgetSpin")->text(), QStringLiteral("Machine default"));
    QCOMPARE(child<QDoubleSpinBox>(&dialog, "temperatureSpin")->value(), 0.7);
    QCOMPARE(child<QSpinBox>(&dialog, "topKSpin")->value(), 40);
    QCOMPARE(child<QSpinBox>(&dialog, "maxTokensSpin")->value(), 300);
    QCOMPARE(child<QLineEdit>(&dialog, "seedEdit")->text(), QStringLiteral("0"));
    QCOMPARE(child<QComboBox>(&dialog, "currentPresetCombo")->currentText(), QStringLiteral("Code helper"));
    QCOMPARE(child<QListWidget>(&dialog, "presetList")->count(), 3);
    QCOMPARE(child<QListWidget>(&dialog, "presetList")->currentRow(), 2);
    QCOMPARE(child<QPlainTextEdit>(&dialog, "presetTextEdit")->toPlainText(), AppSettings::defaultPresets()[2].text);
}

void WidgetsTest::dialogWritesBackOnAccept()
{
    AppSettings s(m_iniPath);
    ui::SettingsDialog dialog(s);
    child<QComboBox>(&dialog, "modelPathCombo")->setCurrentText(QStringLiteral("/m/chosen.gguf"));
    child<QSpinBox>(&dialog, "threadsSpin")->setValue(2);
    auto *tmpl = child<QComboBox>(&dialog, "templateCombo");
    tmpl->setCurrentIndex(tmpl->findData(QStringLiteral("gemma")));
    child<QSpinBox>(&dialog, "deviceBudgetSpin")->setValue(128);
    child<QSpinBox>(&dialog, "hostBudgetSpin")->setValue(256);
    child<QDoubleSpinBox>(&dialog, "temperatureSpin")->setValue(0.0);
    child<QSpinBox>(&dialog, "topKSpin")->setValue(5);
    child<QDoubleSpinBox>(&dialog, "topPSpin")->setValue(0.9);
    child<QDoubleSpinBox>(&dialog, "minPSpin")->setValue(0.0);
    child<QDoubleSpinBox>(&dialog, "repeatPenaltySpin")->setValue(1.25);
    child<QLineEdit>(&dialog, "seedEdit")->setText(QStringLiteral("99"));
    child<QSpinBox>(&dialog, "maxTokensSpin")->setValue(64);
    child<QComboBox>(&dialog, "currentPresetCombo")->setCurrentIndex(1);

    dialog.accept();
    QCOMPARE(dialog.result(), int(QDialog::Accepted));
    QVERIFY(dialog.engineSettingsChanged());

    AppSettings reread(m_iniPath);
    QCOMPARE(reread.lastModelPath(), QStringLiteral("/m/chosen.gguf"));
    QCOMPARE(reread.recentModels().first(), QStringLiteral("/m/chosen.gguf"));
    QCOMPARE(reread.threads(), 2);
    QCOMPARE(reread.templateOverride(), QStringLiteral("gemma"));
    QCOMPARE(reread.deviceBudgetMiB(), 128);
    QCOMPARE(reread.hostBudgetMiB(), 256);
    QCOMPARE(reread.diskBudgetMiB(), 0);
    const engine::SamplingParams p = reread.sampling();
    QCOMPARE(p.temperature, 0.0f);
    QCOMPARE(p.topK, 5);
    QCOMPARE(p.topP, 0.9f);
    QCOMPARE(p.minP, 0.0f);
    QCOMPARE(p.repeatPenalty, 1.25f);
    QCOMPARE(p.seed, std::uint64_t(99));
    QCOMPARE(reread.maxNewTokens(), 64);
    QCOMPARE(reread.currentPreset(), QStringLiteral("Concise assistant"));
}

void WidgetsTest::dialogSamplingOnlyKeepsEngine()
{
    AppSettings s(m_iniPath);
    s.setLastModelPath(QStringLiteral("/m/a.gguf"));
    ui::SettingsDialog dialog(s);
    child<QDoubleSpinBox>(&dialog, "temperatureSpin")->setValue(1.5);
    dialog.accept();
    QVERIFY(!dialog.engineSettingsChanged()); // sampling applies to the next turn; no reopen
    QCOMPARE(s.sampling().temperature, 1.5f);
    QCOMPARE(s.lastModelPath(), QStringLiteral("/m/a.gguf"));
}

void WidgetsTest::dialogCancelWritesNothing()
{
    AppSettings s(m_iniPath);
    ui::SettingsDialog dialog(s);
    child<QSpinBox>(&dialog, "threadsSpin")->setValue(9);
    child<QComboBox>(&dialog, "modelPathCombo")->setCurrentText(QStringLiteral("/m/x.gguf"));
    dialog.reject();
    QCOMPARE(s.threads(), 0);
    QCOMPARE(s.lastModelPath(), QString());
    QVERIFY(!dialog.engineSettingsChanged());
}

void WidgetsTest::dialogEditsPresets()
{
    AppSettings s(m_iniPath);
    ui::SettingsDialog dialog(s);
    auto *list = child<QListWidget>(&dialog, "presetList");
    QAbstractItemModelTester tester(list->model(), QAbstractItemModelTester::FailureReportingMode::QtTest);
    auto *name = child<QLineEdit>(&dialog, "presetNameEdit");
    auto *text = child<QPlainTextEdit>(&dialog, "presetTextEdit");

    // Edit the second preset's text, then add a new one and fill it in.
    list->setCurrentRow(1);
    text->setPlainText(QStringLiteral("Be brief."));
    QTest::mouseClick(child<QPushButton>(&dialog, "addPresetButton"), Qt::LeftButton);
    QCOMPARE(list->count(), 4);
    QCOMPARE(list->currentRow(), 3);
    name->selectAll();
    QTest::keyClicks(name, QStringLiteral("Poet"));
    QCOMPARE(list->item(3)->text(), QStringLiteral("Poet"));
    text->setPlainText(QStringLiteral("Answer in verse."));

    // Remove the third ("Code helper").
    list->setCurrentRow(2);
    QTest::mouseClick(child<QPushButton>(&dialog, "removePresetButton"), Qt::LeftButton);
    QCOMPARE(list->count(), 3);
    auto *current = child<QComboBox>(&dialog, "currentPresetCombo");
    QCOMPARE(current->count(), 3);
    current->setCurrentText(QStringLiteral("Poet"));

    dialog.accept();
    const QList<ui::SystemPromptPreset> expected = {{QStringLiteral("Model default"), QString()},
                                                    {QStringLiteral("Concise assistant"), QStringLiteral("Be brief.")},
                                                    {QStringLiteral("Poet"), QStringLiteral("Answer in verse.")}};
    QCOMPARE(s.presets(), expected);
    QCOMPARE(s.currentPreset(), QStringLiteral("Poet"));
    QCOMPARE(s.systemPrompt(), std::optional<QString>(QStringLiteral("Answer in verse.")));
}

void WidgetsTest::chartBarsAndValues()
{
    TtftChart chart;
    QCOMPARE(chart.barCount(), 0);
    chart.setTurns({turn(1, 2, 0, 800, 20, 0, 0, 0, 500), turn(3, 1, 4, 30, 18, 480, 0, 0, 20)});
    QCOMPARE(chart.barCount(), 2);
    QCOMPARE(chart.partValueMs(0, TtftChart::Part::Prefill), 800.0);
    QCOMPARE(chart.partValueMs(1, TtftChart::Part::Restore), 4.0);
    QCOMPARE(chart.partValueMs(1, TtftChart::Part::QueuePrepare), 1.0);
    QCOMPARE(chart.partValueMs(1, TtftChart::Part::FirstDecode), 18.0);

    // The series themselves: four stacked sets, bottom to top, and one source dot per bar.
    auto *view = child<QChartView>(&chart, "ttftChartView");
    QStackedBarSeries *bars = nullptr;
    int dots = 0;
    for (QAbstractSeries *series : view->chart()->series()) {
        if (auto *b = qobject_cast<QStackedBarSeries *>(series))
            bars = b;
        if (auto *d = qobject_cast<QScatterSeries *>(series))
            dots += int(d->count());
    }
    QVERIFY(bars);
    QCOMPARE(bars->count(), TtftChart::kPartCount);
    QCOMPARE(bars->barSets().at(2)->label(), TtftChart::partName(TtftChart::Part::Prefill));
    QCOMPARE(bars->barSets().at(2)->at(0), 800.0);
    QCOMPARE(bars->barSets().at(2)->at(1), 30.0);
    QCOMPARE(dots, 2);
    QVERIFY(chart.summaryText().contains(QStringLiteral("480")));

    chart.addTurn(turn(5, 1, 6, 25, 17, 0, 0, 490, 25));
    QCOMPARE(chart.barCount(), 3);
    QCOMPARE(bars->barSets().at(1)->at(2), 6.0);
}

void WidgetsTest::chartSourceColours_data()
{
    QTest::addColumn<engine::TurnRecord>("record");
    QTest::addColumn<int>("source");
    QTest::newRow("nothing reused") << turn(1, 1, 0, 100, 10, 0, 0, 0, 300) << int(TtftChart::Source::Recomputed);
    QTest::newRow("device") << turn(1, 1, 1, 10, 10, 300, 0, 0, 10) << int(TtftChart::Source::Device);
    QTest::newRow("mostly RAM") << turn(1, 1, 3, 10, 10, 100, 200, 0, 10) << int(TtftChart::Source::Host);
    QTest::newRow("mostly disk") << turn(1, 1, 9, 10, 10, 16, 32, 256, 10) << int(TtftChart::Source::Disk);
}

void WidgetsTest::chartSourceColours()
{
    QFETCH(engine::TurnRecord, record);
    QFETCH(int, source);
    TtftChart chart;
    chart.addTurn(record);
    QCOMPARE(int(chart.sourceOf(0)), source);
    // The one dot is in the series of that source, drawn in its colour.
    auto *view = child<QChartView>(&chart, "ttftChartView");
    for (QAbstractSeries *series : view->chart()->series()) {
        if (auto *dots = qobject_cast<QScatterSeries *>(series)) {
            const bool mine = dots->name() == TtftChart::sourceName(TtftChart::Source(source));
            QCOMPARE(dots->count(), mine ? 1 : 0);
            if (mine)
                QCOMPARE(dots->color(), TtftChart::sourceColor(TtftChart::Source(source)));
        }
    }
}

void WidgetsTest::chartReplacesSameMessage()
{
    TtftChart chart;
    engine::TurnRecord first = turn(7, 1, 2, 30, 10, 100, 0, 0, 10);
    chart.addTurn(first); // FirstToken
    first.decodeTokens = 100;
    chart.addTurn(first); // TurnFinished of the same reply
    QCOMPARE(chart.barCount(), 1);
    chart.addTurn(turn(9, 1, 2, 30, 10, 100, 0, 0, 10));
    QCOMPARE(chart.barCount(), 2);
}

void WidgetsTest::chartCapsAndClears()
{
    TtftChart chart;
    std::vector<engine::TurnRecord> many;
    for (int i = 0; i < TtftChart::kMaxBars + 5; ++i)
        many.push_back(turn(i + 1, 1, 1, 10.0 + i, 5, 10, 0, 0, 5));
    chart.setTurns(many);
    QCOMPARE(chart.turnCount(), TtftChart::kMaxBars + 5);
    QCOMPARE(chart.barCount(), TtftChart::kMaxBars);
    QCOMPARE(chart.partValueMs(0, TtftChart::Part::Prefill), 15.0); // the oldest shown is turn 6
    QVERIFY(chart.toolTipFor(0).contains(QStringLiteral("Turn 6")));
    chart.clear();
    QCOMPARE(chart.barCount(), 0);
    QCOMPARE(chart.turnCount(), 0);
    QVERIFY(chart.summaryText().contains(QStringLiteral("No turns yet")));
}

void WidgetsTest::chartToolTip()
{
    TtftChart chart;
    chart.setTurns({turn(1, 2, 0, 800, 20, 0, 0, 0, 500), turn(2, 1, 12, 30, 18, 100, 200, 180, 20)});
    const QString tip = chart.toolTipFor(1);
    QVERIFY2(tip.contains(QStringLiteral("Turn 2")), qPrintable(tip));
    QVERIFY2(tip.contains(QStringLiteral("61.0 ms")), qPrintable(tip)); // TTFT
    QVERIFY2(tip.contains(QStringLiteral("12.0 ms")), qPrintable(tip)); // restore
    QVERIFY2(tip.contains(QStringLiteral("device 100, RAM 200, disk 180")), qPrintable(tip));
    QVERIFY2(tip.contains(QStringLiteral("20 recomputed")), qPrintable(tip));
}

void WidgetsTest::cachePanelShowsNumbers()
{
    ui::CachePanel panel;
    engine::KvCacheStats stats;
    stats.device = {std::size_t(512) << 20, std::size_t(2048) << 20, 1024};
    stats.host = {std::size_t(3) << 19, std::size_t(4096) << 20, 3};
    stats.disk = {0, std::size_t(10240) << 20, 0};
    stats.sharedBlocks = 12;
    stats.lookupTokens = 1000;
    stats.hitTokensDevice = 600;
    stats.hitTokensHost = 250;
    stats.hitTokensDisk = 50;
    stats.diskEnabled = true;
    panel.setStats(stats);

    auto *device = child<QProgressBar>(&panel, "deviceBar");
    QCOMPARE(device->value(), device->maximum() / 4);
    QCOMPARE(device->format(), QStringLiteral("512 MiB / 2,048 MiB"));
    QCOMPARE(child<QLabel>(&panel, "deviceUsage")->text(), QStringLiteral("512 MiB / 2,048 MiB"));
    QCOMPARE(child<QProgressBar>(&panel, "hostBar")->format(), QStringLiteral("1.5 MiB / 4,096 MiB"));
    QCOMPARE(child<QLabel>(&panel, "deviceBlocks")->text(), QStringLiteral("1,024 blocks"));
    QCOMPARE(child<QLabel>(&panel, "hostBlocks")->text(), QStringLiteral("3 blocks"));
    QCOMPARE(child<QLabel>(&panel, "deviceHitRate")->text(), QStringLiteral("60% hits"));
    QCOMPARE(child<QLabel>(&panel, "hostHitRate")->text(), QStringLiteral("25% hits"));
    QCOMPARE(child<QLabel>(&panel, "diskHitRate")->text(), QStringLiteral("5.0% hits"));
    QVERIFY(child<QLabel>(&panel, "sharedLabel")->text().contains(QStringLiteral("12 blocks")));
    QVERIFY(child<QLabel>(&panel, "overallLabel")->text().contains(QStringLiteral("900 of 1,000")));
    QVERIFY(child<QLabel>(&panel, "diskOffLabel")->isHidden());
    QVERIFY(child<QProgressBar>(&panel, "diskBar")->isEnabled());
}

void WidgetsTest::cachePanelDiskOff()
{
    ui::CachePanel panel;
    QVERIFY(child<QLabel>(&panel, "diskOffLabel")->isHidden()); // no model yet: nothing to warn about
    QCOMPARE(child<QLabel>(&panel, "deviceHitRate")->text(), QStringLiteral("– hits"));
    engine::KvCacheStats stats;
    stats.device = {0, std::size_t(64) << 20, 0};
    stats.diskEnabled = false;
    stats.diskDisabledReason = "database or disk is full";
    panel.setStats(stats);
    auto *off = child<QLabel>(&panel, "diskOffLabel");
    QVERIFY(!off->isHidden());
    QVERIFY2(off->text().contains(QStringLiteral("database or disk is full")), qPrintable(off->text()));
    QVERIFY(!child<QProgressBar>(&panel, "diskBar")->isEnabled());
    QCOMPARE(child<QLabel>(&panel, "diskUsage")->text(), QStringLiteral("no budget"));
    QCOMPARE(child<QLabel>(&panel, "deviceBlocks")->text(), QStringLiteral("0 blocks"));
}

void WidgetsTest::iconAndDesktopEntry()
{
    QSvgRenderer svg(QStringLiteral(":/icons/kvchat.svg"));
    QVERIFY(svg.isValid());
    QVERIFY(!QIcon(QStringLiteral(":/icons/kvchat.svg")).pixmap(64, 64).isNull());

    QFile desktop(QFINDTESTDATA("../../packaging/kvchat.desktop"));
    QVERIFY2(desktop.open(QIODevice::ReadOnly | QIODevice::Text), qPrintable(desktop.fileName()));
    const QStringList lines = QString::fromUtf8(desktop.readAll()).split(QLatin1Char('\n'));
    QCOMPARE(lines.first(), QStringLiteral("[Desktop Entry]"));
    for (const char *expected : {"Type=Application", "Name=kvchat", "Exec=kvchat", "Icon=kvchat", "Terminal=false",
                                 "Categories=Utility;Development;"})
        QVERIFY2(lines.contains(QString::fromLatin1(expected)), expected);
    QVERIFY(std::any_of(lines.begin(), lines.end(), [](const QString &l) { return l.startsWith("Comment="); }));
}

void WidgetsTest::screenshots()
{
    const QString dir = qEnvironmentVariable("KVCHAT_SCREENSHOT_DIR");
    if (dir.isEmpty())
        QSKIP("set KVCHAT_SCREENSHOT_DIR to save PNGs of the widgets");
    // Qt Charts lays its scene out on posted events: let them run before each grab.
    auto grab = [](QWidget &w, const QString &path) {
        w.show();
        QTest::qWait(50);
        return w.grab().save(path);
    };

    TtftChart chart;
    chart.resize(640, 320);
    chart.setTurns({turn(1, 3, 0, 812, 21, 0, 0, 0, 540), turn(2, 2, 1.5, 34, 19, 560, 0, 0, 24),
                    turn(3, 2, 1.6, 40, 19, 600, 0, 0, 30), turn(4, 2, 9, 38, 20, 120, 520, 0, 28),
                    turn(5, 3, 31, 36, 20, 0, 64, 600, 26), turn(6, 2, 1.4, 30, 18, 700, 0, 0, 22)});
    QVERIFY(grab(chart, dir + QStringLiteral("/ttft_chart.png")));
    chart.resize(400, 300); // as a narrow dock
    QVERIFY(grab(chart, dir + QStringLiteral("/ttft_chart_narrow.png")));
    std::vector<engine::TurnRecord> many;
    for (int i = 0; i < 30; ++i)
        many.push_back(i % 7 == 0 ? turn(i + 1, 2, 0, 700.0 + 10 * i, 20, 0, 0, 0, 500)
                                  : turn(i + 1, 2, 2 + i % 5, 30, 19, 500, 40 * (i % 3), 0, 20));
    chart.setTurns(many);
    chart.resize(640, 320);
    QVERIFY(grab(chart, dir + QStringLiteral("/ttft_chart_many.png")));
    chart.clear();
    QVERIFY(grab(chart, dir + QStringLiteral("/ttft_chart_empty.png")));

    ui::CachePanel panel;
    panel.resize(360, 200);
    engine::KvCacheStats stats;
    stats.device = {std::size_t(742) << 20, std::size_t(2048) << 20, 1484};
    stats.host = {std::size_t(1300) << 20, std::size_t(4096) << 20, 2600};
    stats.disk = {std::size_t(300) << 20, std::size_t(10240) << 20, 600};
    stats.sharedBlocks = 14;
    stats.lookupTokens = 48210;
    stats.hitTokensDevice = 30120;
    stats.hitTokensHost = 9800;
    stats.hitTokensDisk = 4100;
    stats.diskEnabled = true;
    panel.setStats(stats);
    QVERIFY(grab(panel, dir + QStringLiteral("/cache_panel.png")));
    stats.diskEnabled = false;
    stats.diskDisabledReason = "the database is read-only";
    panel.setStats(stats);
    QVERIFY(grab(panel, dir + QStringLiteral("/cache_panel_disk_off.png")));

    AppSettings s(m_iniPath);
    s.setLastModelPath(QStringLiteral("/home/me/models/SmolLM2-135M-Instruct.Q4_1.gguf"));
    ui::SettingsDialog dialog(s);
    auto *tabs = dialog.findChild<QTabWidget *>(QStringLiteral("settingsTabs"));
    QVERIFY(tabs);
    for (int i = 0; i < tabs->count(); ++i) {
        tabs->setCurrentIndex(i);
        QVERIFY(grab(dialog, dir + QStringLiteral("/settings_%1.png").arg(i)));
    }
    QVERIFY(QIcon(QStringLiteral(":/icons/kvchat.svg")).pixmap(128, 128).save(dir + QStringLiteral("/icon.png")));
}

QTEST_MAIN(WidgetsTest)
#include "widgets_test.moc"
