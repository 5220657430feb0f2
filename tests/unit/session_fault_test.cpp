// SPDX-License-Identifier: MIT
// Bad things happen to the session store; a user's text is never lost and cached KV is never used
// wrongly: a process killed (SIGKILL) at random points while it writes turns, corrupted KV bytes, a
// block from another model, a full database, a read-only database.
#include "engine/runtime/chat_engine.h"
#include "tests/support/test_paths.h"

#include <sqlite3.h>

#include <QElapsedTimer>
#include <QProcess>
#include <QTemporaryDir>
#include <QTest>

#include <random>

using namespace kvchat::engine;
using namespace kvchat::testing;

namespace {

std::string stories()
{
    return sharedModel("stories260K.f32.gguf");
}

std::unique_ptr<ChatEngine> openEngine(const std::string &db, bool useCache = true, SessionStoreOptions store = {})
{
    ChatEngineOptions options;
    options.threads = 2;
    options.useCache = useCache;
    options.storeOptions = store;
    auto engine = ChatEngine::create(stories(), db, options);
    if (!engine)
        qFatal("%s", engine.error().message.c_str());
    return std::move(engine).value();
}

Result<TurnResult> turn(ChatEngine &engine, const std::string &conversation, const std::string &message)
{
    TurnRequest request;
    request.conversation = conversation;
    request.userText = message;
    request.maxNewTokens = 24;
    request.sampling.temperature = 0.0f;
    return engine.runTurn(request);
}

// Runs SQL on a database with a raw connection (outside the store) and returns the first column of
// the first row as text.
std::string sql(const std::string &db, const std::string &statement)
{
    sqlite3 *handle = nullptr;
    if (sqlite3_open(db.c_str(), &handle) != SQLITE_OK)
        qFatal("cannot open %s", db.c_str());
    sqlite3_stmt *stmt = nullptr;
    std::string out;
    if (sqlite3_prepare_v2(handle, statement.c_str(), -1, &stmt, nullptr) != SQLITE_OK)
        qFatal("bad SQL %s: %s", statement.c_str(), sqlite3_errmsg(handle));
    if (sqlite3_step(stmt) == SQLITE_ROW && sqlite3_column_text(stmt, 0))
        out = reinterpret_cast<const char *>(sqlite3_column_text(stmt, 0));
    sqlite3_finalize(stmt);
    sqlite3_close(handle);
    return out;
}

const std::vector<std::string> kMessages = {"The sun was warm and bright.", "A little bird sang a song.",
                                            "Tom ran to the big tree.", "He saw a cat on a branch."};

} // namespace

class SessionFaultTest : public QObject
{
    Q_OBJECT

private:
    QTemporaryDir m_dir;
    std::vector<std::string> m_referenceReplies;

    std::string db(const QString &name) { return m_dir.filePath(name).toStdString(); }

private slots:
    void initTestCase()
    {
        auto engine = openEngine(db("reference.db"), false);
        for (const std::string &m : kMessages) {
            auto result = turn(*engine, "c", m);
            QVERIFY2(result.ok(), result.ok() ? "" : result.error().message.c_str());
            m_referenceReplies.push_back(result->reply);
        }
    }

    void killedWhileWriting()
    {
        const std::string path = db("killed.db");
        std::mt19937 rng(12345);
        std::vector<std::string> sent, completed;
        int kills = 0;
        auto startChild = [&](QProcess &child, const std::string &message) {
            child.start(QString::fromStdString(cliPath()),
                        {"chat", "-m", QString::fromStdString(stories()), "--db", QString::fromStdString(path),
                         "--session", "s", "--message", QString::fromStdString(message), "-n", "400", "--temp", "0",
                         "--threads", "1"});
            return child.waitForStarted();
        };
        // A whole run, timed, so the kills below land anywhere inside one: loading the model,
        // saving the message, restoring, generating, committing.
        QElapsedTimer timer;
        timer.start();
        {
            QProcess child;
            const std::string message = "The first message, about a blue kite.";
            QVERIFY(startChild(child, message));
            QVERIFY(child.waitForFinished(60000));
            QCOMPARE(child.exitCode(), 0);
            sent.push_back(message);
            completed.push_back(message);
        }
        // Runs get shorter as the history fills the small model's context, so the kill window
        // follows the shortest whole run seen; a child that finished before its kill counts as a
        // completed run. Attempts continue until 12 children were killed mid-run.
        int shortestRunMs = std::max<int>(10, static_cast<int>(timer.elapsed()));
        for (int i = 0; kills < 12; ++i) {
            QVERIFY2(i < 60, qPrintable(QString("only %1 of 60 children were still running when killed").arg(kills)));
            const std::string message = "Message number " + std::to_string(i) + " about a red ball.";
            QProcess child;
            QElapsedTimer childTimer;
            childTimer.start();
            QVERIFY(startChild(child, message));
            sent.push_back(message);
            bool finishedNormally = false;
            if (i % 4 == 3) {
                QVERIFY(child.waitForFinished(60000)); // now and then a turn runs to the end
                finishedNormally = true;
            } else {
                QTest::qWait(std::uniform_int_distribution<int>(0, shortestRunMs * 9 / 10)(rng));
                if (child.state() != QProcess::NotRunning) {
                    child.kill(); // SIGKILL
                    QVERIFY(child.waitForFinished(10000));
                    ++kills;
                } else {
                    finishedNormally = true;
                }
            }
            if (finishedNormally) {
                QCOMPARE(child.exitCode(), 0);
                completed.push_back(message);
                shortestRunMs = std::max(10, std::min(shortestRunMs, static_cast<int>(childTimer.elapsed())));
            }
            QCOMPARE(sql(path, "PRAGMA integrity_check"), std::string("ok"));
            // Every user message in the store is one we sent, intact, and every completed one is there.
            auto store = SessionStore::open(path);
            QVERIFY2(store.ok(), store.ok() ? "" : store.error().message.c_str());
            auto conversation = (*store)->findConversation("s");
            QVERIFY(conversation.ok() && conversation->has_value()); // the first, completed run made it
            auto messages = (*store)->messages((*conversation)->id);
            QVERIFY(messages.ok());
            std::vector<std::string> userTexts;
            for (const MessageRecord &m : *messages)
                if (m.role == "user")
                    userTexts.push_back(m.content);
            for (const std::string &text : userTexts)
                QVERIFY2(std::find(sent.begin(), sent.end(), text) != sent.end(), text.c_str());
            for (const std::string &text : completed)
                QVERIFY2(std::find(userTexts.begin(), userTexts.end(), text) != userTexts.end(), text.c_str());
        }
        // The next turn works, in process, and its history comes back from disk.
        auto engine = openEngine(path);
        auto result = turn(*engine, "s", "And then what happened?");
        QVERIFY2(result.ok(), result.ok() ? "" : result.error().message.c_str());
        QVERIFY(!result->reply.empty());
        QCOMPARE(sql(path, "PRAGMA integrity_check"), std::string("ok"));
    }

    void corruptBlocksAreDroppedAndRecomputed()
    {
        const std::string path = db("corrupt.db");
        {
            auto engine = openEngine(path);
            for (std::size_t i = 0; i + 1 < kMessages.size(); ++i)
                QVERIFY(turn(*engine, "c", kMessages[i]).ok());
        }
        const int rows = std::stoi(sql(path, "SELECT count(*) FROM kv_blocks"));
        QVERIFY(rows > 2);
        // Flip bytes in every other block's payload (the checksum column is left as it was).
        sql(path, "UPDATE kv_blocks SET payload = zeroblob(length(payload)) WHERE rowid % 2 = 0");
        auto engine = openEngine(path);
        auto result = turn(*engine, "c", kMessages.back());
        QVERIFY2(result.ok(), result.ok() ? "" : result.error().message.c_str());
        QCOMPARE(result->reply, m_referenceReplies.back()); // the corrupt KV was never used
        QVERIFY(result->record.recomputed > 0);
        QCOMPARE(sql(path, "PRAGMA integrity_check"), std::string("ok"));
    }

    void blocksOfAnotherModelAreNeverUsed()
    {
        const std::string path = db("other-model.db");
        {
            auto engine = openEngine(path);
            for (std::size_t i = 0; i + 1 < kMessages.size(); ++i)
                QVERIFY(turn(*engine, "c", kMessages[i]).ok());
        }
        // Every stored block now claims to come from another model.
        sql(path, "UPDATE kv_blocks SET fingerprint = randomblob(16)");
        auto engine = openEngine(path);
        auto result = turn(*engine, "c", kMessages.back());
        QVERIFY(result.ok());
        QCOMPARE(result->record.reusedDisk, 0);
        QCOMPARE(result->reply, m_referenceReplies.back());
    }

    void fullDatabaseKeepsChatting()
    {
        const std::string path = db("full.db");
        SessionStoreOptions small;
        small.maxPageCount = 12; // 768 KiB with 64 KiB pages: messages fit, the KV soon does not
        auto engine = openEngine(path, true, small);
        bool sawWarning = false;
        std::vector<std::string> saved;
        for (int i = 0; i < 40; ++i) {
            const std::string message = kMessages[static_cast<std::size_t>(i) % kMessages.size()] + " (" + std::to_string(i) + ")";
            auto result = turn(*engine, "c" + std::to_string(i % 3), message);
            if (!result.ok()) {
                // The database cannot even take the message: a clear error, and nothing else lost.
                QVERIFY2(QString::fromStdString(result.error().message).contains("full"), result.error().message.c_str());
                break;
            }
            saved.push_back(message);
            sawWarning = sawWarning || !result->warning.empty();
        }
        QVERIFY2(sawWarning, "the disk tier never reported that it was switched off");
        QVERIFY(!engine->cacheStats().diskEnabled);
        QVERIFY(!engine->cacheStats().diskDisabledReason.empty());
        engine.reset();
        QCOMPARE(sql(path, "PRAGMA integrity_check"), std::string("ok"));
        const int userMessages = std::stoi(sql(path, "SELECT count(*) FROM messages WHERE role = 'user'"));
        QVERIFY(userMessages >= static_cast<int>(saved.size()));
    }

    void readOnlyDatabaseSaysSo()
    {
        const std::string path = db("readonly.db");
        {
            auto engine = openEngine(path);
            QVERIFY(turn(*engine, "c", kMessages[0]).ok());
        }
        SessionStoreOptions readOnly;
        readOnly.readOnly = true;
        auto engine = openEngine(path, true, readOnly);
        QVERIFY(!engine->cacheStats().diskEnabled);
        auto result = turn(*engine, "c", kMessages[1]);
        QVERIFY(!result.ok());
        QVERIFY2(QString::fromStdString(result.error().message).contains("read"), result.error().message.c_str());
    }
};

QTEST_GUILESS_MAIN(SessionFaultTest)
#include "session_fault_test.moc"
