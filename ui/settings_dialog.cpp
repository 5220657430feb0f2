// SPDX-License-Identifier: MIT
#include "ui/settings_dialog.h"

#include "engine/model/chat_template.h"

#include <QComboBox>
#include <QDialogButtonBox>
#include <QDoubleSpinBox>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QListWidget>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QRegularExpressionValidator>
#include <QSpinBox>
#include <QStandardItemModel>
#include <QTabWidget>
#include <QThread>
#include <QVBoxLayout>

namespace kvchat::ui {

namespace {

QLabel *noteLabel(const QString &text, QWidget *parent)
{
    auto *label = new QLabel(text, parent);
    label->setWordWrap(true);
    label->setForegroundRole(QPalette::PlaceholderText);
    return label;
}

QDoubleSpinBox *doubleSpin(const QString &name, double min, double max, double step, int decimals, QWidget *parent)
{
    auto *spin = new QDoubleSpinBox(parent);
    spin->setObjectName(name);
    spin->setRange(min, max);
    spin->setSingleStep(step);
    spin->setDecimals(decimals);
    spin->setMinimumWidth(160);
    return spin;
}

QSpinBox *intSpin(const QString &name, int min, int max, QWidget *parent)
{
    auto *spin = new QSpinBox(parent);
    spin->setObjectName(name);
    spin->setRange(min, max);
    spin->setMinimumWidth(160);
    return spin;
}

QSpinBox *budgetSpin(const QString &name, QWidget *parent)
{
    QSpinBox *spin = intSpin(name, 0, 16 * 1024 * 1024, parent);
    spin->setSuffix(QStringLiteral(" MiB"));
    spin->setSpecialValueText(QObject::tr("Machine default"));
    spin->setSingleStep(256);
    spin->setGroupSeparatorShown(true);
    return spin;
}

} // namespace

SettingsDialog::SettingsDialog(AppSettings &settings, QWidget *parent) : QDialog(parent), m_settings(settings)
{
    setWindowTitle(tr("kvchat Settings"));
    setObjectName(QStringLiteral("settingsDialog"));

    auto *tabs = new QTabWidget(this);
    tabs->setObjectName(QStringLiteral("settingsTabs"));
    tabs->addTab(buildModelTab(), tr("Model"));
    tabs->addTab(buildCacheTab(), tr("KV cache"));
    tabs->addTab(buildGenerationTab(), tr("Generation"));
    tabs->addTab(buildPromptsTab(), tr("System prompts"));

    auto *buttons = new QDialogButtonBox(QDialogButtonBox::Ok | QDialogButtonBox::Cancel, this);
    buttons->setObjectName(QStringLiteral("settingsButtons"));
    connect(buttons, &QDialogButtonBox::accepted, this, &SettingsDialog::accept);
    connect(buttons, &QDialogButtonBox::rejected, this, &SettingsDialog::reject);

    auto *layout = new QVBoxLayout(this);
    layout->addWidget(tabs);
    layout->addWidget(buttons);
    resize(620, 460);

    load();
}

SettingsDialog::~SettingsDialog() = default;

QWidget *SettingsDialog::buildModelTab()
{
    auto *page = new QWidget;
    auto *form = new QFormLayout(page);

    m_modelPath = new QComboBox(page);
    m_modelPath->setObjectName(QStringLiteral("modelPathCombo"));
    m_modelPath->setEditable(true);
    m_modelPath->setInsertPolicy(QComboBox::NoInsert);
    m_modelPath->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
    m_modelPath->setMinimumContentsLength(30);
    m_modelPath->lineEdit()->setPlaceholderText(tr("A .gguf model file"));
    auto *browse = new QPushButton(tr("Browse…"), page);
    browse->setObjectName(QStringLiteral("browseModelButton"));
    connect(browse, &QPushButton::clicked, this, &SettingsDialog::browseModel);
    auto *pathRow = new QHBoxLayout;
    pathRow->addWidget(m_modelPath, 1);
    pathRow->addWidget(browse);
    form->addRow(tr("Model file:"), pathRow);

    m_backend = new QComboBox(page);
    m_backend->setObjectName(QStringLiteral("backendCombo"));
    auto *backendModel = qobject_cast<QStandardItemModel *>(m_backend->model());
    for (const QString &name : AppSettings::backends()) {
        const bool available = AppSettings::isBackendAvailable(name);
        m_backend->addItem(available ? name.toUpper() : tr("%1 (not built)").arg(name.toUpper()), name);
        if (!available && backendModel)
            backendModel->item(m_backend->count() - 1)->setEnabled(false);
    }
    form->addRow(tr("Backend:"), m_backend);

    m_threads = intSpin(QStringLiteral("threadsSpin"), 0, 1024, page);
    m_threads->setSpecialValueText(tr("All cores (%1)").arg(QThread::idealThreadCount()));
    form->addRow(tr("Threads:"), m_threads);

    m_template = new QComboBox(page);
    m_template->setObjectName(QStringLiteral("templateCombo"));
    m_template->addItem(tr("(model's own)"), QString());
    for (std::string_view name : engine::ChatTemplate::names()) {
        const QString q = QString::fromUtf8(name.data(), static_cast<qsizetype>(name.size()));
        m_template->addItem(q, q);
    }
    form->addRow(tr("Chat template:"), m_template);

    form->addRow(noteLabel(tr("Changing any of these reopens the model. Conversations and their cached KV are "
                              "kept; a different model or template re-tokenizes the history once."),
                           page));
    return page;
}

QWidget *SettingsDialog::buildCacheTab()
{
    auto *page = new QWidget;
    auto *form = new QFormLayout(page);
    form->setFieldGrowthPolicy(QFormLayout::FieldsStayAtSizeHint);
    m_deviceBudget = budgetSpin(QStringLiteral("deviceBudgetSpin"), page);
    m_hostBudget = budgetSpin(QStringLiteral("hostBudgetSpin"), page);
    m_diskBudget = budgetSpin(QStringLiteral("diskBudgetSpin"), page);
    form->addRow(tr("Device:"), m_deviceBudget);
    form->addRow(tr("Host RAM:"), m_hostBudget);
    form->addRow(tr("Disk:"), m_diskBudget);
    form->addRow(noteLabel(tr("How much attention KV each tier may hold. Blocks move from the device to RAM to "
                              "disk as they age, and come back instead of being recomputed. Machine default: a "
                              "quarter of RAM for each memory tier (at most 2 and 4 GiB) and a quarter of the "
                              "free disk space beside the database (at most 10 GiB)."),
                           page));
    return page;
}

QWidget *SettingsDialog::buildGenerationTab()
{
    auto *page = new QWidget;
    auto *form = new QFormLayout(page);
    form->setFieldGrowthPolicy(QFormLayout::FieldsStayAtSizeHint);
    m_temperature = doubleSpin(QStringLiteral("temperatureSpin"), 0.0, 2.0, 0.05, 2, page);
    m_temperature->setSpecialValueText(tr("0 (greedy)"));
    form->addRow(tr("Temperature:"), m_temperature);
    m_topK = intSpin(QStringLiteral("topKSpin"), 0, 1000, page);
    m_topK->setSpecialValueText(tr("Off"));
    form->addRow(tr("Top-k:"), m_topK);
    m_topP = doubleSpin(QStringLiteral("topPSpin"), 0.0, 1.0, 0.01, 2, page);
    form->addRow(tr("Top-p:"), m_topP);
    m_minP = doubleSpin(QStringLiteral("minPSpin"), 0.0, 1.0, 0.01, 2, page);
    m_minP->setSpecialValueText(tr("Off"));
    form->addRow(tr("Min-p:"), m_minP);
    m_repeatPenalty = doubleSpin(QStringLiteral("repeatPenaltySpin"), 1.0, 2.0, 0.05, 2, page);
    m_repeatPenalty->setSpecialValueText(tr("1 (off)"));
    form->addRow(tr("Repetition penalty:"), m_repeatPenalty);
    m_repeatLastN = intSpin(QStringLiteral("repeatLastNSpin"), 0, 4096, page);
    m_repeatLastN->setSuffix(tr(" tokens"));
    form->addRow(tr("Penalty window:"), m_repeatLastN);
    m_seed = new QLineEdit(page);
    m_seed->setObjectName(QStringLiteral("seedEdit"));
    m_seed->setValidator(new QRegularExpressionValidator(QRegularExpression(QStringLiteral("[0-9]{1,19}")), m_seed));
    m_seed->setPlaceholderText(tr("0 = a new random seed each turn"));
    m_seed->setToolTip(tr("0: a new random seed each turn; any other value makes replies repeatable"));
    m_seed->setMinimumWidth(160);
    form->addRow(tr("Seed:"), m_seed);
    m_maxTokens = intSpin(QStringLiteral("maxTokensSpin"), 1, 65536, page);
    m_maxTokens->setSuffix(tr(" tokens"));
    form->addRow(tr("Max reply length:"), m_maxTokens);

    auto *defaults = new QPushButton(tr("Restore defaults"), page);
    defaults->setObjectName(QStringLiteral("samplingDefaultsButton"));
    connect(defaults, &QPushButton::clicked, this, [this] {
        const engine::SamplingParams p = AppSettings::defaultSampling();
        m_temperature->setValue(p.temperature);
        m_topK->setValue(p.topK);
        m_topP->setValue(p.topP);
        m_minP->setValue(p.minP);
        m_repeatPenalty->setValue(p.repeatPenalty);
        m_repeatLastN->setValue(p.repeatLastN);
        m_seed->setText(QStringLiteral("0"));
        m_maxTokens->setValue(AppSettings::kDefaultMaxNewTokens);
    });
    form->addRow(QString(), defaults);
    form->addRow(noteLabel(tr("Temperature 0 always picks the most likely token. Top-k, top-p and min-p narrow the "
                              "choice; the repetition penalty discourages tokens used in the window. A seed of 0 "
                              "picks a new random seed each turn. These apply from the next reply on."),
                           page));
    return page;
}

QWidget *SettingsDialog::buildPromptsTab()
{
    auto *page = new QWidget;
    auto *layout = new QVBoxLayout(page);

    auto *currentRow = new QFormLayout;
    m_currentPreset = new QComboBox(page);
    m_currentPreset->setObjectName(QStringLiteral("currentPresetCombo"));
    currentRow->addRow(tr("For new conversations:"), m_currentPreset);
    layout->addLayout(currentRow);

    auto *split = new QHBoxLayout;
    auto *left = new QVBoxLayout;
    m_presetList = new QListWidget(page);
    m_presetList->setObjectName(QStringLiteral("presetList"));
    m_presetList->setMaximumWidth(190);
    left->addWidget(m_presetList, 1);
    auto *buttons = new QHBoxLayout;
    auto *add = new QPushButton(tr("Add"), page);
    add->setObjectName(QStringLiteral("addPresetButton"));
    m_removePreset = new QPushButton(tr("Remove"), page);
    m_removePreset->setObjectName(QStringLiteral("removePresetButton"));
    buttons->addWidget(add);
    buttons->addWidget(m_removePreset);
    left->addLayout(buttons);
    split->addLayout(left);

    auto *right = new QFormLayout;
    m_presetName = new QLineEdit(page);
    m_presetName->setObjectName(QStringLiteral("presetNameEdit"));
    right->addRow(tr("Name:"), m_presetName);
    m_presetText = new QPlainTextEdit(page);
    m_presetText->setObjectName(QStringLiteral("presetTextEdit"));
    m_presetText->setPlaceholderText(tr("Empty: the model template's own system prompt"));
    right->addRow(tr("Prompt:"), m_presetText);
    split->addLayout(right, 1);
    layout->addLayout(split, 1);
    layout->addWidget(noteLabel(tr("A conversation keeps the system prompt it started with. Conversations with the "
                                   "same system prompt share its cached KV."),
                                page));

    connect(m_presetList, &QListWidget::currentRowChanged, this, &SettingsDialog::onPresetRowChanged);
    connect(add, &QPushButton::clicked, this, &SettingsDialog::addPreset);
    connect(m_removePreset, &QPushButton::clicked, this, &SettingsDialog::removePreset);
    connect(m_presetName, &QLineEdit::textEdited, this, [this](const QString &name) {
        if (m_presetRow < 0)
            return;
        m_presets[m_presetRow].name = name;
        m_presetList->item(m_presetRow)->setText(name);
        m_currentPreset->setItemText(m_presetRow, name);
    });
    return page;
}

void SettingsDialog::load()
{
    m_modelPath->addItems(m_settings.recentModels());
    m_modelPath->setCurrentText(m_settings.lastModelPath());
    m_backend->setCurrentIndex(std::max(0, m_backend->findData(m_settings.backend())));
    m_threads->setValue(m_settings.threads());
    m_template->setCurrentIndex(std::max(0, m_template->findData(m_settings.templateOverride())));

    m_deviceBudget->setValue(m_settings.deviceBudgetMiB());
    m_hostBudget->setValue(m_settings.hostBudgetMiB());
    m_diskBudget->setValue(m_settings.diskBudgetMiB());

    const engine::SamplingParams p = m_settings.sampling();
    m_temperature->setValue(p.temperature);
    m_topK->setValue(p.topK);
    m_topP->setValue(p.topP);
    m_minP->setValue(p.minP);
    m_repeatPenalty->setValue(p.repeatPenalty);
    m_repeatLastN->setValue(p.repeatLastN);
    m_seed->setText(QString::number(p.seed));
    m_maxTokens->setValue(m_settings.maxNewTokens());

    m_presets = m_settings.presets();
    for (const SystemPromptPreset &preset : m_presets) {
        m_presetList->addItem(preset.name);
        m_currentPreset->addItem(preset.name);
    }
    const QString current = m_settings.currentPreset();
    m_currentPreset->setCurrentText(current);
    m_presetList->setCurrentRow(std::max(0, m_currentPreset->currentIndex()));
}

void SettingsDialog::browseModel()
{
    const QString start = QFileInfo(m_modelPath->currentText()).absolutePath();
    const QString path =
        QFileDialog::getOpenFileName(this, tr("Open model"), start, tr("GGUF models (*.gguf);;All files (*)"));
    if (!path.isEmpty())
        m_modelPath->setCurrentText(path);
}

void SettingsDialog::storeEditedPresetText()
{
    if (m_presetRow >= 0 && m_presetRow < m_presets.size())
        m_presets[m_presetRow].text = m_presetText->toPlainText();
}

void SettingsDialog::onPresetRowChanged(int row)
{
    storeEditedPresetText();
    m_presetRow = row;
    const bool valid = row >= 0 && row < m_presets.size();
    m_presetName->setEnabled(valid);
    m_presetText->setEnabled(valid);
    m_presetName->setText(valid ? m_presets[row].name : QString());
    m_presetText->setPlainText(valid ? m_presets[row].text : QString());
    m_removePreset->setEnabled(valid && m_presets.size() > 1);
}

void SettingsDialog::addPreset()
{
    storeEditedPresetText();
    QString name = tr("New preset");
    for (int n = 2; std::any_of(m_presets.begin(), m_presets.end(), [&](const auto &p) { return p.name == name; }); ++n)
        name = tr("New preset %1").arg(n);
    m_presets.append({name, QString()});
    m_presetList->addItem(name);
    m_currentPreset->addItem(name);
    m_presetList->setCurrentRow(static_cast<int>(m_presets.size()) - 1);
    m_presetName->setFocus();
    m_presetName->selectAll();
}

void SettingsDialog::removePreset()
{
    const int row = m_presetList->currentRow();
    if (row < 0 || m_presets.size() <= 1)
        return;
    m_presetRow = -1; // the edited text belongs to the row being removed
    m_presets.removeAt(row);
    m_currentPreset->removeItem(row);
    delete m_presetList->takeItem(row); // changes the current row
    onPresetRowChanged(m_presetList->currentRow());
}

void SettingsDialog::accept()
{
    storeEditedPresetText();

    const QString modelPath = m_modelPath->currentText().trimmed();
    const QString backend = m_backend->currentData().toString();
    const QString templateName = m_template->currentData().toString();
    m_engineSettingsChanged =
        modelPath != m_settings.lastModelPath() || backend != m_settings.backend() ||
        m_threads->value() != m_settings.threads() || templateName != m_settings.templateOverride() ||
        m_deviceBudget->value() != m_settings.deviceBudgetMiB() ||
        m_hostBudget->value() != m_settings.hostBudgetMiB() || m_diskBudget->value() != m_settings.diskBudgetMiB();

    if (modelPath != m_settings.lastModelPath())
        m_settings.setLastModelPath(modelPath);
    m_settings.setBackend(backend);
    m_settings.setThreads(m_threads->value());
    m_settings.setTemplateOverride(templateName);
    m_settings.setDeviceBudgetMiB(m_deviceBudget->value());
    m_settings.setHostBudgetMiB(m_hostBudget->value());
    m_settings.setDiskBudgetMiB(m_diskBudget->value());

    engine::SamplingParams p;
    p.temperature = static_cast<float>(m_temperature->value());
    p.topK = m_topK->value();
    p.topP = static_cast<float>(m_topP->value());
    p.minP = static_cast<float>(m_minP->value());
    p.repeatPenalty = static_cast<float>(m_repeatPenalty->value());
    p.repeatLastN = m_repeatLastN->value();
    p.seed = m_seed->text().toULongLong();
    m_settings.setSampling(p);
    m_settings.setMaxNewTokens(m_maxTokens->value());

    // Names must be non-empty and unique: the current preset is stored by name.
    QStringList seen;
    for (int i = 0; i < m_presets.size(); ++i) {
        QString name = m_presets[i].name.trimmed();
        if (name.isEmpty())
            name = tr("Preset %1").arg(i + 1);
        const QString base = name;
        for (int n = 2; seen.contains(name); ++n)
            name = QStringLiteral("%1 (%2)").arg(base).arg(n);
        m_presets[i].name = name;
        seen << name;
    }
    m_settings.setPresets(m_presets);
    const int current = m_currentPreset->currentIndex();
    m_settings.setCurrentPreset(current >= 0 && current < m_presets.size() ? m_presets[current].name : QString());
    m_settings.sync();
    QDialog::accept();
}

} // namespace kvchat::ui
