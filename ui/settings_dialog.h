// SPDX-License-Identifier: MIT
// SettingsDialog: edits everything AppSettings holds, in tabs: Model (path with Browse…, recent
// models, backend, threads, chat template override), Cache (KV budgets per tier), Generation
// (sampling, max tokens) and System prompts (a preset list with add/remove and a text editor).
//
// The dialog reads AppSettings when constructed and writes it back only on accept (OK). After
// exec() returns Accepted, engineSettingsChanged() tells the caller whether the model must be
// reopened (model path, backend, threads, budgets or template changed).
//
// Widgets carry object names (e.g. "modelPathCombo", "threadsSpin") so tests can drive them.
// Thread-safety: UI thread only.
#pragma once

#include "ui/app_settings.h"

#include <QDialog>
#include <QList>

class QComboBox;
class QDoubleSpinBox;
class QLineEdit;
class QListWidget;
class QPlainTextEdit;
class QPushButton;
class QSpinBox;

namespace kvchat::ui {

class SettingsDialog : public QDialog
{
    Q_OBJECT

public:
    // settings must outlive the dialog.
    explicit SettingsDialog(AppSettings &settings, QWidget *parent = nullptr);
    ~SettingsDialog() override;

    // After accept(): whether model path, backend, threads, budgets or template override changed.
    bool engineSettingsChanged() const { return m_engineSettingsChanged; }

public slots:
    void accept() override; // writes every field to AppSettings, then closes with Accepted

private:
    QWidget *buildModelTab();
    QWidget *buildCacheTab();
    QWidget *buildGenerationTab();
    QWidget *buildPromptsTab();
    void load();
    void browseModel();
    void onPresetRowChanged(int row);
    void addPreset();
    void removePreset();
    void storeEditedPresetText();

    AppSettings &m_settings;
    bool m_engineSettingsChanged = false;
    QList<SystemPromptPreset> m_presets; // being edited; written on accept
    int m_presetRow = -1;                // row whose text the editor shows

    QComboBox *m_modelPath = nullptr; // editable: recent models listed
    QComboBox *m_backend = nullptr;
    QSpinBox *m_threads = nullptr;
    QComboBox *m_template = nullptr;
    QSpinBox *m_deviceBudget = nullptr;
    QSpinBox *m_hostBudget = nullptr;
    QSpinBox *m_diskBudget = nullptr;
    QDoubleSpinBox *m_temperature = nullptr;
    QSpinBox *m_topK = nullptr;
    QDoubleSpinBox *m_topP = nullptr;
    QDoubleSpinBox *m_minP = nullptr;
    QDoubleSpinBox *m_repeatPenalty = nullptr;
    QSpinBox *m_repeatLastN = nullptr;
    QLineEdit *m_seed = nullptr;
    QSpinBox *m_maxTokens = nullptr;
    QListWidget *m_presetList = nullptr;
    QLineEdit *m_presetName = nullptr;
    QPlainTextEdit *m_presetText = nullptr;
    QPushButton *m_removePreset = nullptr;
    QComboBox *m_currentPreset = nullptr;
};

} // namespace kvchat::ui
