// SPDX-License-Identifier: MIT
// Bad things happen to the session store; a user's text is never lost and cached KV is never used
// wrongly: a process killed (SIGKILL) at random points while it writes turns, corrupted KV bytes, a
// block from another model, a full database, a read-only database, a turn that fails part-way.
#include "engine/runtime/chat_engine.h"
#include "engine/store/turn_lock.h"
#include "tests/support/test_paths.h"

#include <QElapsedTimer>
#include <QFile>
#include <QProcess>
#include <QTemporaryDir>
#include <QTest>

#include <random>
#include <sqlite3.h>

using namespace kvchat::engine;
using namespace kvchat::testing;

namespace {

std::string stories()
{
    return sharedModel("stories260K.f32.gguf");
}

ChatEngineOptions engineOptions()
{
    ChatEngineOptions options;
    options.threads = 2;
    return options;
}

std::unique_ptr<ChatEngine> openEngine(const std::string &db, const ChatEngineOptions &options)
{
    auto engine = ChatEngine::create(stories(), db, options);
    if (!engine)
        qFatal("%s", engine.error().message.c_str());
    return std::move(engine).value();
}

std::unique_ptr<ChatEngine> openEngine(const std::string &db, bool useCache = true, SessionStoreOptions store = {})
{
    ChatEngineOptions options = engineOptions();
    options.useCache = useCache;
    options.storeOptions = store;
    return openEngine(db, options);
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

// The backend it wraps, except that one forward pass fails: the failAt-th since calls was last set
// to 0, counting both kinds (failAt 0: none).
class FailingBackend final : public Backend
{
public:
    FailingBackend(std::unique_ptr<Backend> inner, const int &failAt, int &calls)
        : m_inner(std::move(inner)), m_failAt(failAt), m_calls(calls)
    {}
    std::string_view name() const override { return m_inner->name(); }
    KvLayout kvLayout() const override { return m_inner->kvLayout(); }
    std::string_view kvFormat() const override { return m_inner->kvFormat(); }
    std::shared_ptr<KvMemory> kvMemory() const override { return m_inner->kvMemory(); }
    Result<void> forward(std::span<const TokenId> tokens, KvSequence &seq, LogitsMode mode,
                         std::vector<float> &logits) override
    {
        if (++m_calls == m_failAt)
            return makeError("injected failure of forward pass " + std::to_string(m_calls));
        return m_inner->forward(tokens, seq, mode, logits);
    }
    Result<void> forwardCandidates(std::span<const TokenId> tokens, KvSequence &seq, const CandidateRequest &request,
                                   std::vector<TokenCandidate> &out) override
    {
        if (++m_calls == m_failAt)
            return makeError("injected failure of forward pass " + std::to_string(m_calls));
        return m_inner->forwardCandidates(tokens, seq, request, out);
    }

private:
    std::unique_ptr<Backend> m_inner;
    const int &m_failAt;
    int &m_calls;
};

// Options whose backend fails its failAt-th forward pass (see FailingBackend).
ChatEngineOptions failingEngineOptions(const int &failAt, int &calls)
{
    ChatEngineOptions options = engineOptions();
    options.wrapBackend = [&failAt, &calls](std::unique_ptr<Backend> inner) -> std::unique_ptr<Backend> {
        return std::make_unique<FailingBackend>(std::move(inner), failAt, calls);
    };
    return options;
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

    void turnsOfTwoProcessesDoNotInterleave()
    {
        // Two processes answer one conversation at the same moment, while a third (this test) is
        // in a turn: both wait for it, then one for the other, so the history reads user,
        // assistant, user, assistant, each reply complete, and the second reply is what the
        // conversation's history gives it. (Both also create the database at the same moment.)
        const std::string path = db("concurrent.db");
        std::optional<TurnLock> otherTurn = TurnLock::acquire(path);
        QVERIFY(otherTurn && otherTurn->held());
        std::vector<std::unique_ptr<QProcess>> children;
        for (const std::string &message : {kMessages[0], kMessages[1]}) {
            auto &child = children.emplace_back(std::make_unique<QProcess>());
            child->start(QString::fromStdString(cliPath()),
                         {"chat", "-m", QString::fromStdString(stories()), "--db", QString::fromStdString(path),
                          "--session", "c", "--message", QString::fromStdString(message), "-n", "24", "--temp", "0",
                          "--threads", "1"});
            QVERIFY(child->waitForStarted());
        }
        // A turn of this small model takes milliseconds; these wait as long as the lock is held.
        QTest::qWait(1500);
        for (auto &child : children)
            QCOMPARE(child->state(), QProcess::Running);
        otherTurn.reset();
        for (auto &child : children) {
            QVERIFY(child->waitForFinished(60000));
            QCOMPARE(child->exitCode(), 0);
        }
        auto store = SessionStore::open(path);
        QVERIFY(store.ok());
        auto conversation = (*store)->findConversation("c");
        QVERIFY(conversation.ok() && conversation->has_value());
        auto messages = (*store)->messages((*conversation)->id);
        QVERIFY(messages.ok());
        QCOMPARE(messages->size(), std::size_t(4));
        for (std::size_t i = 0; i < 4; ++i) {
            QCOMPARE((*messages)[i].role, std::string(i % 2 == 0 ? "user" : "assistant"));
            QVERIFY((*messages)[i].complete);
        }
        // Whichever process went first, the second reply continues the first exchange.
        const bool inOrder = (*messages)[0].content == kMessages[0];
        auto reference = openEngine(db(inOrder ? "concurrent-ref-a.db" : "concurrent-ref-b.db"), false);
        QVERIFY(turn(*reference, "c", (*messages)[0].content).ok());
        auto second = turn(*reference, "c", (*messages)[2].content);
        QVERIFY(second.ok());
        QCOMPARE((*messages)[3].content, second->reply);
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

    void failedTurnLeavesConversationConsistent()
    {
        const std::string path = db("failing.db");
        int failAt = 0, calls = 0;
        std::unique_ptr<ChatEngine> engine = openEngine(path, failingEngineOptions(failAt, calls));
        auto first = turn(*engine, "c", kMessages[0]);
        QVERIFY(first.ok());
        QCOMPARE(first->reply, m_referenceReplies[0]);
        const auto storedMessages = [&] { return std::stoi(sql(path, "SELECT count(*) FROM messages")); };

        // Failing in the prefill, before any reply text: the turn's messages go again (the caller
        // gives the user the text back), and sent again it gets the reply it would have had.
        calls = 0;
        failAt = 1;
        auto failed = turn(*engine, "c", kMessages[1]);
        QVERIFY(!failed.ok());
        QVERIFY2(QString::fromStdString(failed.error().message).contains("injected"), failed.error().message.c_str());
        QCOMPARE(storedMessages(), 2);
        failAt = 0;
        auto again = turn(*engine, "c", kMessages[1]);
        QVERIFY(again.ok());
        QCOMPARE(again->reply, m_referenceReplies[1]);

        // Failing mid-reply: the user's message and the reply as far as it was shown stay, the
        // reply marked incomplete and holding the tokens of that text, so the next turn's prompt
        // holds what the user saw.
        calls = 0;
        failAt = 6;
        std::string shown;
        TurnRequest request;
        request.conversation = "c";
        request.userText = kMessages[2];
        request.maxNewTokens = 24;
        request.sampling.temperature = 0.0f;
        request.onText = [&](std::string_view text) {
            shown += text;
            return true;
        };
        failed = engine->runTurn(request);
        QVERIFY(!failed.ok());
        QVERIFY(!shown.empty());
        QCOMPARE(storedMessages(), 6);
        QCOMPARE(sql(path, "SELECT content FROM messages WHERE idx = 5"), shown);
        QCOMPARE(sql(path, "SELECT complete FROM messages WHERE idx = 5"), std::string("0"));
        QVERIFY(std::stoi(sql(path, "SELECT length(tokens) / 4 FROM messages WHERE idx = 5")) >= 4);
        failAt = 0;
        engine.reset();

        // The next turn: from the cache, and recomputed on a copy without it, the same.
        const std::string copy = db("failing-copy.db");
        QVERIFY(QFile::copy(QString::fromStdString(path), QString::fromStdString(copy)));
        auto cached = openEngine(path);
        auto plain = openEngine(copy, false);
        auto fromCache = turn(*cached, "c", kMessages[3]);
        auto recomputed = turn(*plain, "c", kMessages[3]);
        QVERIFY(fromCache.ok() && recomputed.ok());
        QCOMPARE(fromCache->reply, recomputed->reply);
        QCOMPARE(fromCache->record.promptTokens, recomputed->record.promptTokens);
        QVERIFY(fromCache->record.reusedDisk + fromCache->record.reusedDevice > 0);
    }

    void aFailedTurnPutsTheWindowBack()
    {
        // A long message moves the context window forward; when its turn fails before any reply,
        // the window is where it was, so the next turn does not leave history out for nothing.
        const std::string path = db("window.db");
        int failAt = 0, calls = 0;
        ChatEngineOptions options = failingEngineOptions(failAt, calls);
        options.contextLimit = 160;
        std::unique_ptr<ChatEngine> engine = openEngine(path, options);
        for (std::size_t i = 0; i < 3; ++i)
            QVERIFY(turn(*engine, "c", kMessages[i]).ok());
        const std::string windowBefore = sql(path, "SELECT window_start FROM conversations");
        const std::string messagesBefore = sql(path, "SELECT count(*) FROM messages");
        std::string longMessage;
        for (const std::string &m : kMessages)
            longMessage += m + " ";
        calls = 0;
        failAt = 1;
        QVERIFY(!turn(*engine, "c", longMessage + longMessage).ok());
        QCOMPARE(sql(path, "SELECT count(*) FROM messages"), messagesBefore);
        QCOMPARE(sql(path, "SELECT window_start FROM conversations"), windowBefore);
        // The same message succeeds once the backend does, and moves the window then.
        failAt = 0;
        QVERIFY(turn(*engine, "c", longMessage + longMessage).ok());
        QVERIFY(sql(path, "SELECT window_start FROM conversations") != windowBefore);
    }

    void aRefusedEditLosesNothing()
    {
        // An edit that cannot fit the context is refused before the messages it replaces go.
        const std::string path = db("edit.db");
        auto engine = openEngine(path);
        for (std::size_t i = 0; i < 2; ++i)
            QVERIFY(turn(*engine, "c", kMessages[i]).ok());
        TurnRequest request;
        request.conversation = "c";
        request.truncateFrom = 0;
        std::string huge;
        while (huge.size() < 20000)
            huge += kMessages[0] + " ";
        request.userText = huge;
        auto refused = engine->runTurn(request);
        QVERIFY(!refused.ok());
        QVERIFY2(QString::fromStdString(refused.error().message).contains("the context holds"),
                 refused.error().message.c_str());
        QCOMPARE(sql(path, "SELECT count(*) FROM messages"), std::string("4"));
        // Such a message as the first of a new conversation leaves no conversation behind.
        request.conversation = "fresh";
        request.truncateFrom.reset();
        QVERIFY(!engine->runTurn(request).ok());
        QCOMPARE(sql(path, "SELECT count(*) FROM conversations WHERE name = 'fresh'"), std::string("0"));
        request.conversation = "c";
        request.truncateFrom = 0;
        // An edit that fits replaces them.
        request.userText = kMessages[2];
        request.maxNewTokens = 24;
        request.sampling.temperature = 0.0f;
        QVERIFY(engine->runTurn(request).ok());
        QCOMPARE(sql(path, "SELECT count(*) FROM messages"), std::string("2"));
        QCOMPARE(sql(path, "SELECT content FROM messages WHERE idx = 0"), kMessages[2]);
    }

    void aTurnWaitingForAnotherProcessCanGiveUp()
    {
        const std::string path = db("giveup.db");
        auto engine = openEngine(path);
        QVERIFY(turn(*engine, "c", kMessages[0]).ok());
        std::optional<TurnLock> otherTurn = TurnLock::acquire(path);
        QVERIFY(otherTurn && otherTurn->held());
        int polls = 0;
        TurnRequest request;
        request.conversation = "c";
        request.userText = kMessages[1];
        request.whileWaiting = [&] { return ++polls < 5; };
        auto given = engine->runTurn(request);
        QVERIFY(!given.ok());
        QCOMPARE(polls, 5);
        QCOMPARE(sql(path, "SELECT count(*) FROM messages"), std::string("2"));
        otherTurn.reset();
        QVERIFY(turn(*engine, "c", kMessages[1]).ok());
    }

    void aSmallDeviceBudgetShortensTheContext()
    {
        // The running turn's KV lives in the device pool: a budget of 10 blocks holds a context of
        // 9 blocks, and a conversation longer than that drops its oldest messages instead of
        // failing mid-reply.
        const std::string path = db("smallpool.db");
        const std::int32_t blockTokens = 16;
        const std::size_t blockBytes = openEngine(path)->backend().kvLayout().blockBytes();
        ChatEngineOptions options = engineOptions();
        options.kvBlockTokens = blockTokens;
        KvBudgets budgets = KvBudgets::machineDefaults(path);
        budgets.deviceBytes = 10 * blockBytes;
        options.budgets = budgets;
        std::unique_ptr<ChatEngine> engine = openEngine(path, options);
        QCOMPARE(engine->contextLimit(), 9 * blockTokens);
        QVERIFY2(QString::fromStdString(engine->contextNotice()).contains("device KV budget"),
                 engine->contextNotice().c_str());
        for (int i = 0; i < 8; ++i) {
            TurnRequest request;
            request.conversation = "c";
            request.userText = kMessages[static_cast<std::size_t>(i) % kMessages.size()];
            request.maxNewTokens = 40;
            request.sampling.temperature = 0.0f;
            auto result = engine->runTurn(request);
            QVERIFY2(result.ok(), result.ok() ? "" : result.error().message.c_str());
            QVERIFY(result->record.promptTokens + result->record.decodeTokens <= engine->contextLimit());
        }
        // The whole history is well beyond the context, so older messages left the window.
        engine.reset();
        QVERIFY(std::stoi(sql(path, "SELECT sum(length(tokens)) / 4 FROM messages")) > 2 * 9 * blockTokens);
    }

    void lowDiskSpaceKeepsConversationsFirst()
    {
        // A disk with less free space than the reserve takes no new KV blocks (messages keep their
        // room), while the blocks already there are still read.
        const std::string path = db("lowspace.db");
        QVERIFY(turn(*openEngine(path), "c", kMessages[0]).ok());
        const std::string blocksBefore = sql(path, "SELECT count(*) FROM kv_blocks");
        QVERIFY(blocksBefore != "0");

        ChatEngineOptions options = engineOptions();
        KvBudgets budgets = KvBudgets::machineDefaults(path);
        budgets.diskReserveBytes = std::size_t(1) << 60; // more than any disk has free
        options.budgets = budgets;
        std::unique_ptr<ChatEngine> engine = openEngine(path, options);
        for (std::size_t i = 1; i < 3; ++i) {
            auto result = turn(*engine, "c", kMessages[i]);
            QVERIFY2(result.ok(), result.ok() ? "" : result.error().message.c_str());
            QCOMPARE(result->reply, m_referenceReplies[i]);
            if (i == 1) {
                QVERIFY(result->record.reusedDisk > 0);
                QVERIFY2(QString::fromStdString(result->warning).contains("free beside the database"),
                         result->warning.c_str());
            }
        }
        QVERIFY(engine->cacheStats().diskEnabled);
        QVERIFY(!engine->cacheStats().diskWritesStoppedReason.empty());
        engine.reset();
        QCOMPARE(sql(path, "SELECT count(*) FROM kv_blocks"), blocksBefore);
        QCOMPARE(sql(path, "SELECT count(*) FROM messages"), std::string("6"));
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
