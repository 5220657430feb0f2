// SPDX-License-Identifier: MIT
// The bridge between the UI thread and the engine thread: signals arrive on the UI thread in
// order (turn started, first token, text, finished), carry their turn and conversation ids, token
// text is merged at most every 16 ms, a turn can be cancelled, and nothing blocks the UI thread.
#include "app/bridge/engine_bridge.h"
#include "tests/support/test_paths.h"

#include <QElapsedTimer>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QTest>
#include <QThread>

using namespace kvchat::bridge;
using namespace kvchat::engine;
using namespace kvchat::testing;

class EngineBridgeTest : public QObject
{
    Q_OBJECT

private:
    QTemporaryDir m_dir;
    std::unique_ptr<EngineBridge> m_bridge;

    GenerationSettings greedy(std::int32_t maxTokens)
    {
        GenerationSettings s;
        s.sampling.temperature = 0.0f;
        s.maxNewTokens = maxTokens;
        return s;
    }

private slots:
    void initTestCase()
    {
        m_bridge = std::make_unique<EngineBridge>(m_dir.filePath("kvchat.db"));
        QSignalSpy loaded(m_bridge.get(), &EngineBridge::modelLoaded);
        ChatEngineOptions options;
        options.threads = 2;
        m_bridge->openModel(QString::fromStdString(sharedModel("stories260K.f32.gguf")), options);
        QVERIFY(loaded.wait(20000));
        QCOMPARE(loaded.first().first().value<ModelInfo>().architecture, std::string("llama"));
    }

    void badModelFailsCleanly()
    {
        EngineBridge bridge(m_dir.filePath("other.db"));
        QSignalSpy failed(&bridge, &EngineBridge::modelLoadFailed);
        bridge.openModel(m_dir.filePath("missing.gguf"), ChatEngineOptions{});
        QVERIFY(failed.wait(10000));
        QVERIFY(failed.first().at(1).toString().contains("missing.gguf"));
    }

    void eventsArriveInOrderOnTheUiThread()
    {
        QStringList order;
        QString text;
        QList<qint64> intervals;
        QElapsedTimer sinceLast;
        TurnId expected = 0;
        qint64 conversationId = -1;
        // The connections live as long as this object: they end with the test even when a
        // check fails and returns early, so no lambda outlives the locals it captures.
        QObject context;
        auto onUiThread = [&] { QCOMPARE(QThread::currentThread(), this->thread()); };
        connect(m_bridge.get(), &EngineBridge::turnStarted, &context, [&](const TurnStarted &e) {
            onUiThread();
            QCOMPARE(e.turn, expected);
            QVERIFY(e.userMessage.has_value());
            conversationId = e.conversationId;
            order << "started";
        });
        connect(m_bridge.get(), &EngineBridge::firstToken, &context, [&](const FirstToken &e) {
            onUiThread();
            QCOMPARE(e.turn, expected);
            QVERIFY(e.record.ttftMs > 0.0);
            order << "first";
            sinceLast.start();
        });
        connect(m_bridge.get(), &EngineBridge::tokensAppended, &context, [&](quint64 turn, qint64 conversation, const QString &t) {
            onUiThread();
            QCOMPARE(turn, expected);
            QCOMPARE(conversation, conversationId);
            if (order.last() != "text")
                order << "text";
            else
                intervals << sinceLast.restart();
            text += t;
        });
        QSignalSpy finished(m_bridge.get(), &EngineBridge::turnFinished);
        expected = m_bridge->sendMessage("c1", "Once upon a time", std::nullopt, greedy(480),
                                         std::chrono::steady_clock::now());
        QVERIFY(finished.wait(30000));
        const TurnFinished done = finished.first().first().value<TurnFinished>();
        order << "finished";
        QCOMPARE(order, QStringList({"started", "first", "text", "finished"}));
        QCOMPARE(text, QString::fromStdString(done.reply));
        QVERIFY(done.record.decodeTokens > 20);
        // Merged deliveries: never closer than the flush interval (the timer may fire up to a
        // millisecond early), except the last, which is flushed at once so that it precedes
        // TurnFinished. (A machine fast enough to generate the whole reply within one interval
        // delivers it in one piece: nothing to compare then.)
        if (!intervals.isEmpty())
            intervals.removeLast();
        for (qint64 gap : intervals)
            QVERIFY2(gap >= 15, qPrintable(QString("deliveries %1 ms apart").arg(gap)));
    }

    void cancelStopsAndKeepsWhatWasGenerated()
    {
        QSignalSpy first(m_bridge.get(), &EngineBridge::firstToken);
        QSignalSpy finished(m_bridge.get(), &EngineBridge::turnFinished);
        const TurnId turn = m_bridge->sendMessage("c2", "Tom had a big red xylophone.", std::nullopt, greedy(100000),
                                                  std::chrono::steady_clock::now());
        QVERIFY(first.wait(20000));
        m_bridge->cancel(turn);
        QVERIFY(finished.wait(20000));
        const TurnFinished done = finished.first().first().value<TurnFinished>();
        QCOMPARE(done.turn, turn);
        QCOMPARE(done.stopReason, std::string("stopped"));
    }

    void readsAreAnsweredWhileAReplyStreams()
    {
        // Opening another conversation during a long reply is answered before the reply ends.
        QSignalSpy first(m_bridge.get(), &EngineBridge::firstToken);
        QSignalSpy loaded(m_bridge.get(), &EngineBridge::conversationLoaded);
        QSignalSpy finished(m_bridge.get(), &EngineBridge::turnFinished);
        const TurnId turn = m_bridge->sendMessage("long", "Once upon a time", std::nullopt, greedy(100000),
                                                  std::chrono::steady_clock::now());
        QVERIFY(first.wait(20000));
        m_bridge->loadConversation("c1");
        QVERIFY(loaded.wait(10000));
        QCOMPARE(finished.count(), 0); // the reply was still streaming
        QCOMPARE(loaded.first().first().value<ConversationLoaded>().record.name, std::string("c1"));
        m_bridge->cancel(turn);
        QVERIFY(finished.wait(20000));
    }

    void conversationsAndSearch()
    {
        QSignalSpy listed(m_bridge.get(), &EngineBridge::conversationsListed);
        m_bridge->refreshConversations();
        QVERIFY(listed.wait(10000));
        const ConversationList list = listed.last().first().value<ConversationList>();
        QVERIFY(list.conversations.size() >= 2);
        for (const ConversationSummary &c : list.conversations)
            QVERIFY(c.residency.device > 0); // both just ran: their KV is on the device

        QSignalSpy found(m_bridge.get(), &EngineBridge::searchResults);
        m_bridge->searchConversations("XYLOPHONE");
        QVERIFY(found.wait(10000));
        QCOMPARE(found.first().at(1).value<QList<qint64>>().size(), 1);
    }

    void exportWritesFiles()
    {
        QSignalSpy done(m_bridge.get(), &EngineBridge::exportFinished);
        const QString csv = m_dir.filePath("latency.csv");
        m_bridge->exportToFile(ExportKind::LatencyCsv, "", csv);
        QVERIFY(done.wait(10000));
        QVERIFY2(done.first().at(1).toBool(), qPrintable(done.first().at(2).toString()));
        QFile file(csv);
        QVERIFY(file.open(QIODevice::ReadOnly));
        QVERIFY(file.readAll().startsWith("timestamp,conversation,"));
    }

    void cleanupTestCase()
    {
        // Destroying the bridge joins the engine thread; it must not hang.
        QElapsedTimer timer;
        timer.start();
        m_bridge.reset();
        QVERIFY(timer.elapsed() < 5000);
    }
};

QTEST_MAIN(EngineBridgeTest)
#include "engine_bridge_test.moc"
