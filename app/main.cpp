// SPDX-License-Identifier: MIT
// The desktop application's composition root: the QApplication, the data directory and its
// database, the settings, the engine bridge and the main window.
//
// Destruction order (reverse of declaration below): the window goes first, then the bridge,
// whose destructor stops the engine thread (a running reply is cancelled and what it generated
// is saved), then the settings.
#include "app/bridge/engine_bridge.h"
#include "ui/app_settings.h"
#include "ui/chat_controller.h"
#include "ui/main_window.h"

#include <QApplication>
#include <QCommandLineParser>
#include <QDir>
#include <QFile>
#include <QIcon>
#include <QStandardPaths>
#include <QTimer>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string_view>

namespace {

// --screenshot: grabs the window once the scripted messages are answered (or after a delay) and
// quits. For README pictures and for looking at the UI on a headless machine (xvfb).
class ScreenshotScript : public QObject
{
public:
    ScreenshotScript(kvchat::ui::MainWindow &window, QString path, QStringList messages, int delayMs, int timeoutMs)
        : m_window(window), m_path(std::move(path)), m_messages(std::move(messages)), m_delayMs(delayMs)
    {
        connect(&window.controller()->bridge(), &kvchat::bridge::EngineBridge::conversationsListed, this,
                [this] { QTimer::singleShot(200, this, [this] { next(); }); }, Qt::SingleShotConnection);
        connect(&window.controller()->bridge(), &kvchat::bridge::EngineBridge::modelLoadFailed, this,
                [this] { QTimer::singleShot(m_delayMs, this, [this] { grab(); }); });
        connect(window.controller(), &kvchat::ui::ChatController::turnFinished, this,
                [this] { QTimer::singleShot(300, this, [this] { next(); }); });
        connect(window.controller(), &kvchat::ui::ChatController::turnFailed, this, [this] { grab(); });
        QTimer::singleShot(timeoutMs, this, [this] { grab(); });
    }

    // Without a model to wait for, the picture is taken after the delay.
    void start()
    {
        if (!m_window.isModelLoading())
            QTimer::singleShot(m_delayMs, this, [this] { grab(); });
    }

private:
    void next()
    {
        if (m_messages.isEmpty()) {
            QTimer::singleShot(m_delayMs, this, [this] { grab(); });
            return;
        }
        m_window.composer()->setText(m_messages.takeFirst());
        m_window.composer()->submit();
    }
    void grab()
    {
        if (m_done)
            return;
        m_done = true;
        const bool ok = m_window.grab().save(m_path);
        std::fprintf(stderr, "kvchat: %s %s\n", ok ? "saved" : "could not save", qPrintable(m_path));
        QCoreApplication::exit(ok ? 0 : 1);
    }

    kvchat::ui::MainWindow &m_window;
    QString m_path;
    QStringList m_messages;
    int m_delayMs;
    bool m_done = false;
};

// The command line, described once for both applications main() may build.
struct CommandLine
{
    const QCommandLineOption modelOption{QStringLiteral("model"), QStringLiteral("Open this GGUF model."),
                                         QStringLiteral("PATH")};
    const QCommandLineOption dataOption{
        QStringLiteral("data-dir"), QStringLiteral("Keep the database and the settings in DIR (tests, screenshots)."),
        QStringLiteral("DIR")};
    const QCommandLineOption shotOption{QStringLiteral("screenshot"),
                                        QStringLiteral("Save a picture of the window to FILE.png, then quit."),
                                        QStringLiteral("FILE")};
    const QCommandLineOption messageOption{QStringLiteral("message"),
                                           QStringLiteral("With --screenshot: send TEXT first (repeatable)."),
                                           QStringLiteral("TEXT")};
    const QCommandLineOption delayOption{
        QStringLiteral("screenshot-delay"),
        QStringLiteral("With --screenshot: wait MS after the last reply (default 1000)."), QStringLiteral("MS"),
        QStringLiteral("1000")};
    const QCommandLineOption defaultModelOption{
        QStringLiteral("default-model"),
        QStringLiteral("Open this GGUF model when no model has been used yet (the first run)."),
        QStringLiteral("PATH")};
    QCommandLineParser parser;

    CommandLine()
    {
        parser.setApplicationDescription(QStringLiteral("A local LLM chat that keeps every conversation's KV cache."));
        parser.addHelpOption();
        parser.addVersionOption();
        parser.addOptions({modelOption, defaultModelOption, dataOption, shotOption, messageOption, delayOption});
    }
};

void setApplicationNames()
{
    QCoreApplication::setOrganizationName(QStringLiteral("kvchat"));
    QCoreApplication::setApplicationName(QStringLiteral("kvchat"));
    QCoreApplication::setApplicationVersion(QStringLiteral(KVCHAT_VERSION));
}

// --help and --version only print: they must work without a display, where QApplication aborts.
// An option's value ("--message -h") is not one of them.
bool asksOnlyForHelpOrVersion(int argc, char **argv)
{
    static constexpr std::string_view kTakesValue[] = {
        "--model",   "--default-model", "--data-dir", "--screenshot", "--message",       "--screenshot-delay",
        "-platform", "-display",        "-style",     "-stylesheet",  "-qwindowgeometry"};
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg == "-h" || arg == "--help" || arg == "--help-all" || arg == "-v" || arg == "--version")
            return true;
        if (std::ranges::find(kTakesValue, arg) != std::end(kTakesValue))
            ++i;
    }
    return false;
}

} // namespace

int main(int argc, char **argv)
{
    if (asksOnlyForHelpOrVersion(argc, argv)) {
        QCoreApplication app(argc, argv);
        setApplicationNames();
        CommandLine commandLine;
        // parse(), not process(): Qt's own GUI options (-platform) are unknown to this application.
        commandLine.parser.parse(QCoreApplication::arguments());
        if (commandLine.parser.isSet(QStringLiteral("version")))
            commandLine.parser.showVersion(); // exits
        commandLine.parser.showHelp();        // exits
    }
    QApplication app(argc, argv);
    setApplicationNames();
    QGuiApplication::setApplicationDisplayName(QStringLiteral("kvchat"));
    QGuiApplication::setDesktopFileName(QStringLiteral("kvchat"));
    Q_INIT_RESOURCE(resources); // the resources live in the static kvchat_ui library
    if (QFile::exists(QStringLiteral(":/icons/kvchat.svg")))
        QApplication::setWindowIcon(QIcon(QStringLiteral(":/icons/kvchat.svg")));

    CommandLine commandLine;
    QCommandLineParser &parser = commandLine.parser;
    parser.process(app);

    const QString dataDir = parser.isSet(commandLine.dataOption)
                                ? QDir(parser.value(commandLine.dataOption)).absolutePath()
                                : QStandardPaths::writableLocation(QStandardPaths::AppDataLocation);
    if (!QDir().mkpath(dataDir)) {
        std::fprintf(stderr, "kvchat: cannot create the data directory %s\n", qPrintable(dataDir));
        return 1;
    }
    const QString databasePath = QDir(dataDir).filePath(QStringLiteral("kvchat.db"));

    // With --data-dir the settings live beside the database, so a test run touches nothing else.
    std::unique_ptr<kvchat::ui::AppSettings> settings =
        parser.isSet(commandLine.dataOption)
            ? std::make_unique<kvchat::ui::AppSettings>(QDir(dataDir).filePath(QStringLiteral("kvchat.ini")))
            : std::make_unique<kvchat::ui::AppSettings>();
    kvchat::bridge::EngineBridge bridge(databasePath);
    kvchat::ui::MainWindow window(bridge, *settings);

    std::unique_ptr<ScreenshotScript> script;
    if (parser.isSet(commandLine.shotOption))
        script = std::make_unique<ScreenshotScript>(window, parser.value(commandLine.shotOption),
                                                    parser.values(commandLine.messageOption),
                                                    parser.value(commandLine.delayOption).toInt(), 10 * 60 * 1000);
    window.show();
    if (parser.isSet(commandLine.modelOption))
        window.openModel(QDir(parser.value(commandLine.modelOption)).absolutePath());
    else if (settings->lastModelPath().isEmpty() && parser.isSet(commandLine.defaultModelOption))
        window.openModel(QDir(parser.value(commandLine.defaultModelOption)).absolutePath());
    else
        window.openLastModel();
    if (script)
        script->start();
    return app.exec();
}
