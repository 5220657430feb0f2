// SPDX-License-Identifier: MIT
// The session KV cache is exact: for every tier a conversation's history can come back from
// (device, host RAM, disk, disk after a restart), the logits of the next turn's first token equal,
// bit for bit, those of recomputing everything without the cache, and greedy replies are identical.
// Also: a shared system prompt is stored once, and budgets hold after every turn.
#include "engine/runtime/chat_engine.h"
#include "tests/support/test_paths.h"

#include <QTemporaryDir>
#include <QTest>

#include <cstring>
#include <filesystem>

using namespace kvchat::engine;
using namespace kvchat::testing;

namespace {

const std::vector<std::string> kMessages = {
    "Once upon a time there was a little dog named Max.",
    "Max liked to run in the park with his friends.",
    "One day Max found a big red ball under a tree.",
    "He wanted to show the ball to his mom.",
};

struct Turn
{
    std::string reply;
    std::vector<float> logits;
    TurnRecord record;
};

std::unique_ptr<ChatEngine> openEngine(const std::string &model, const std::string &db, bool useCache,
                                       std::optional<KvBudgets> budgets = std::nullopt)
{
    ChatEngineOptions options;
    options.threads = 2;
    options.useCache = useCache;
    options.budgets = budgets;
    auto engine = ChatEngine::create(model, db, options);
    if (!engine)
        qFatal("%s", engine.error().message.c_str());
    return std::move(engine).value();
}

Turn runTurn(ChatEngine &engine, const std::string &conversation, const std::string &message,
             std::optional<std::string> system = std::nullopt)
{
    Turn turn;
    TurnRequest request;
    request.conversation = conversation;
    request.userText = message;
    request.systemPrompt = std::move(system);
    request.maxNewTokens = 24;
    request.sampling.temperature = 0.0f;
    request.firstLogits = &turn.logits;
    auto result = engine.runTurn(request);
    if (!result)
        qFatal("turn failed: %s", result.error().message.c_str());
    turn.reply = result->reply;
    turn.record = result->record;
    const std::string problem = engine.checkCacheInvariants();
    if (!problem.empty())
        qFatal("cache invariant broken: %s", problem.c_str());
    return turn;
}

bool sameBits(const std::vector<float> &a, const std::vector<float> &b)
{
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

} // namespace

class SessionCacheTest : public QObject
{
    Q_OBJECT

private:
    QTemporaryDir m_dir;
    std::vector<Turn> m_reference; // per model row: computed in exactTurns

    std::string db(const char *name) { return m_dir.filePath(name).toStdString(); }

private slots:
    void exactAcrossTiers_data()
    {
        QTest::addColumn<QString>("model");
        QTest::newRow("stories260K (sentencepiece, completion)") << QString::fromStdString(sharedModel("stories260K.f32.gguf"));
        if (std::filesystem::exists(smollm2Path()))
            QTest::newRow("SmolLM2 (BPE, ChatML)") << QString::fromStdString(smollm2Path());
    }

    void exactAcrossTiers()
    {
        QFETCH(QString, model);
        const std::string modelPath = model.toStdString();
        const std::string tag = std::to_string(std::hash<std::string>{}(modelPath));

        // The reference: every turn recomputed from scratch.
        std::vector<Turn> reference;
        {
            auto engine = openEngine(modelPath, db(("ref" + tag + ".db").c_str()), false);
            for (const std::string &m : kMessages)
                reference.push_back(runTurn(*engine, "story", m));
        }
        for (const Turn &t : reference)
            QCOMPARE(t.record.reusedDevice + t.record.reusedHost + t.record.reusedDisk, 0);

        // Device tier: plenty of room, so turns 2.. find the history on the device.
        {
            auto engine = openEngine(modelPath, db(("device" + tag + ".db").c_str()), true);
            for (std::size_t i = 0; i < kMessages.size(); ++i) {
                const Turn t = runTurn(*engine, "story", kMessages[i]);
                QCOMPARE(t.reply, reference[i].reply);
                QVERIFY2(sameBits(t.logits, reference[i].logits), "device-tier logits differ from recomputation");
                if (i > 0) {
                    QVERIFY(t.record.reusedDevice > 0);
                    QCOMPARE(t.record.reusedHost + t.record.reusedDisk, 0);
                    QVERIFY(t.record.recomputed < t.record.promptTokens);
                }
            }
        }

        // Host tier: a second conversation fills the small device budget between turns, so the
        // first one's blocks wait in host RAM.
        {
            auto probe = openEngine(modelPath, db(("probe" + tag + ".db").c_str()), true);
            const std::size_t blockBytes = KvLayout{probe->model().config().nLayers, probe->model().config().kvDim(), 16}.blockBytes();
            probe.reset();
            // 24 blocks: "story" (at most ~12 blocks) and one long "other" turn (~20 blocks) do not fit together.
            KvBudgets budgets{blockBytes * 24, blockBytes * 400, 0};
            auto engine = openEngine(modelPath, db(("host" + tag + ".db").c_str()), true, budgets);
            std::int32_t fromHost = 0;
            for (std::size_t i = 0; i < kMessages.size(); ++i) {
                const Turn t = runTurn(*engine, "story", kMessages[i]);
                QCOMPARE(t.reply, reference[i].reply);
                QVERIFY2(sameBits(t.logits, reference[i].logits), "host-tier logits differ from recomputation");
                fromHost += t.record.reusedHost;
                // Another conversation pushes "story" off the device.
                // About 15 blocks of tokens: with the ~10 of "story" more than the device holds.
                std::string filler;
                while (engine->model().tokenizer().encode(filler).size() < 15 * 16)
                    filler += "The cat sat on the mat. ";
                runTurn(*engine, "other" + std::to_string(i), filler);
            }
            QVERIFY2(fromHost > 0, "no turn restored from host RAM");
        }

        // Disk tier, then a restart: blocks persist; a new engine on the same database finds them.
        {
            const std::string path = db(("disk" + tag + ".db").c_str());
            {
                auto engine = openEngine(modelPath, path, true);
                for (std::size_t i = 0; i + 1 < kMessages.size(); ++i) {
                    const Turn t = runTurn(*engine, "story", kMessages[i]);
                    QCOMPARE(t.reply, reference[i].reply);
                }
            }
            auto engine = openEngine(modelPath, path, true);
            const std::size_t last = kMessages.size() - 1;
            const Turn t = runTurn(*engine, "story", kMessages[last]);
            QCOMPARE(t.reply, reference[last].reply);
            QVERIFY2(sameBits(t.logits, reference[last].logits), "disk-tier logits differ from recomputation");
            QVERIFY(t.record.reusedDisk > 0);
            QCOMPARE(t.record.reusedDevice + t.record.reusedHost, 0);
            // Everything but the new message (and a few tokens around it) came from disk.
            QVERIFY2(t.record.recomputed <= 40 + static_cast<std::int32_t>(kMessages[last].size()),
                     qPrintable(QString("recomputed %1 of %2").arg(t.record.recomputed).arg(t.record.promptTokens)));
        }
    }

    void sharedSystemPromptIsStoredOnce()
    {
        const std::string model = sharedModel("stories260K.f32.gguf");
        const std::string system(300, 'x');
        const std::string path = db("shared.db");
        auto engine = openEngine(model, path, true);
        const Turn first = runTurn(*engine, "c0", "Hello there.", system);
        QCOMPARE(first.record.reusedDevice, 0);
        std::uint64_t diskAfterFirst = *engine->store().kvBytes();
        for (int i = 1; i < 10; ++i) {
            const Turn t = runTurn(*engine, "c" + std::to_string(i), "Hello there.", system);
            // The system prompt's full blocks (all but its last partial block) come from the cache.
            QVERIFY2(t.record.reusedDevice >= static_cast<std::int32_t>(first.record.promptTokens) - 32,
                     qPrintable(QString("conversation %1 reused %2 of %3").arg(i).arg(t.record.reusedDevice).arg(t.record.promptTokens)));
        }
        const KvCacheStats stats = engine->cacheStats();
        QVERIFY(stats.sharedBlocks > 0);
        // Ten conversations over one system prompt add only their own tails to the disk tier.
        const std::uint64_t diskAfterTen = *engine->store().kvBytes();
        const std::uint64_t blockBytes = KvLayout{engine->model().config().nLayers, engine->model().config().kvDim(), 16}.blockBytes();
        QVERIFY2(diskAfterTen - diskAfterFirst <= 9 * 4 * blockBytes,
                 qPrintable(QString("disk grew by %1 bytes").arg(diskAfterTen - diskAfterFirst)));
        // After a restart, prefetching two of them shows the shared blocks again.
        engine.reset();
        auto restarted = openEngine(model, path, true);
        QCOMPARE(restarted->cacheStats().sharedBlocks, 0u);
        QVERIFY(restarted->prefetch("c0").ok() && restarted->prefetch("c1").ok());
        QVERIFY(restarted->cacheStats().sharedBlocks > 0);
    }

    void deletingAConversationDropsItsBlocksEverywhere()
    {
        // Deleting a conversation drops the KV only its history reaches from the device, RAM and
        // disk (it encodes its text); blocks another conversation uses stay, in memory and on disk.
        const std::string model = sharedModel("stories260K.f32.gguf");
        const std::string path = db("delete.db");
        const std::string system = "Once upon a time there was a little town where every child had a dog.";
        auto engine = openEngine(model, path, true);
        runTurn(*engine, "a", kMessages[0], system);
        const std::int32_t shared = runTurn(*engine, "b", kMessages[1], system).record.reusedDevice;
        QVERIFY(shared >= 16);
        const std::uint64_t diskBefore = *engine->store().kvBytes();
        QVERIFY(engine->deleteConversation("a").ok());
        QCOMPARE(engine->checkCacheInvariants(), std::string());
        QVERIFY(*engine->store().kvBytes() < diskBefore);
        QVERIFY(!engine->store().findConversation("a")->has_value());

        const Turn again = runTurn(*engine, "a-again", kMessages[0], system);
        QCOMPARE(again.record.reusedDevice + again.record.reusedHost + again.record.reusedDisk, shared);
        const Turn resumed = runTurn(*engine, "b", kMessages[2]);
        QVERIFY(resumed.record.reusedDevice > shared + 16);
        engine.reset();
        auto restarted = openEngine(model, path, true);
        QVERIFY(runTurn(*restarted, "b", kMessages[3]).record.reusedDisk > shared + 16);
    }
};

QTEST_GUILESS_MAIN(SessionCacheTest)
#include "session_cache_test.moc"
