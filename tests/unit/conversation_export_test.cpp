// SPDX-License-Identifier: MIT
// conversation_export.h on records built here (Markdown, JSON, latency CSV and JSON, checked field
// by field, with content that is Markdown, has quotes, line breaks, non-ASCII and invalid UTF-8),
// then kvchat-cli's `sessions` and `latency` commands end to end on a database filled through
// SessionStore, including their errors: a missing database (which must not be created), an
// unknown conversation, a bad --format.
#include "engine/store/conversation_export.h"
#include "engine/store/session_store.h"
#include "tests/support/test_paths.h"

#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QRegularExpression>
#include <QTemporaryDir>
#include <QTest>

using namespace kvchat::engine;

namespace {

// 2024-05-01T12:34:56.789Z
constexpr std::int64_t kMay1 = 1714566896789;

// Markdown with a code fence, quotes, line breaks, non-ASCII, and a reply cut off inside a UTF-8
// sequence ("\xe2\x82" is the start of a 3-byte character) plus a stray 0xff byte.
const std::string kUserText = "Explain `std::span` in \"one\" line,\nplease: **now** — naïve café 日本 🙂";
const std::string kAssistantText = "Sure:\n\n```cpp\nstd::span<int> s{v};\n```\n\n> It's a \"view\".";
const std::string kCutOffText = std::string("Partial \xff answer ending mid-character \xe2\x82");

ConversationRecord sampleConversation()
{
    ConversationRecord c;
    c.id = 7;
    c.name = "demo";
    c.title = "Span questions";
    c.systemPrompt = "You are terse.\nAnswer in \"Markdown\".";
    c.createdAtMs = kMay1;
    c.updatedAtMs = kMay1 + 61'000;
    return c;
}

std::vector<MessageRecord> sampleMessages()
{
    auto message = [](std::int64_t id, std::int32_t index, std::string role, std::string content, bool complete,
                      std::int64_t at) {
        MessageRecord m;
        m.id = id;
        m.conversationId = 7;
        m.index = index;
        m.role = std::move(role);
        m.content = std::move(content);
        m.complete = complete;
        m.createdAtMs = at;
        return m;
    };
    return {message(100, 0, "user", kUserText, true, kMay1 + 1'000),
            message(101, 1, "assistant", kAssistantText, true, kMay1 + 2'000),
            message(102, 2, "user", "And again?", true, kMay1 + 60'000),
            message(103, 3, "assistant", kCutOffText, false, kMay1 + 61'000)};
}

TurnRecord sampleTurn(std::int64_t conversationId, std::int64_t messageId, std::int64_t at)
{
    TurnRecord t;
    t.id = messageId + 1000;
    t.conversationId = conversationId;
    t.messageId = messageId;
    t.createdAtMs = at;
    t.ttftMs = 123.4567;
    t.queueMs = 0.25;
    t.prepareMs = 1.0004;
    t.restoreDeviceMs = 2.5;
    t.restoreHostMs = 3.125;
    t.restoreDiskMs = 4.0625;
    t.prefillMs = 100.0;
    t.firstDecodeMs = 12.5;
    t.decodeMs = 500.0;
    t.promptTokens = 321;
    t.reusedDevice = 128;
    t.reusedHost = 64;
    t.reusedDisk = 32;
    t.recomputed = 97;
    t.decodeTokens = 20;
    t.stopReason = "eos";
    return t;
}

QString q(const std::string &s)
{
    return QString::fromStdString(s);
}

// What a JSON export holds for text with invalid UTF-8: each invalid stretch becomes U+FFFD.
void checkReplaced(const QString &exported)
{
    QVERIFY2(exported.startsWith("Partial \uFFFD answer ending mid-character "), qPrintable(exported));
    QVERIFY2(exported.endsWith(QChar(0xFFFD)), qPrintable(exported));
}

struct Run
{
    int exitCode = -1;
    QByteArray out;
    QByteArray err;
};

Run runCli(const QStringList &args)
{
    QProcess p;
    p.start(QString::fromStdString(kvchat::testing::cliPath()), args);
    if (!p.waitForFinished(60000))
        qFatal("kvchat-cli did not finish");
    return Run{p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -1, p.readAllStandardOutput(),
               p.readAllStandardError()};
}

QString describe(const Run &r)
{
    return QString("exit %1, stdout: %2, stderr: %3").arg(r.exitCode).arg(QString(r.out), QString(r.err));
}

#define CHECK_RUN_OK(run) QVERIFY2((run).exitCode == 0 && (run).err.isEmpty(), qPrintable(describe(run)))
// An error: non-zero status, nothing on stdout, exactly one line on stderr that contains text.
#define CHECK_RUN_ERROR(run, text)                                                                                     \
    do {                                                                                                               \
        const Run &r_ = (run);                                                                                         \
        QVERIFY2(r_.exitCode != 0 && r_.out.isEmpty(), qPrintable(describe(r_)));                                      \
        QVERIFY2(r_.err.endsWith('\n') && r_.err.count('\n') == 1, qPrintable(describe(r_)));                          \
        QVERIFY2(r_.err.contains(text), qPrintable(describe(r_)));                                                     \
    } while (false)

QJsonDocument parseJson(const QByteArray &bytes)
{
    QJsonParseError error;
    QJsonDocument doc = QJsonDocument::fromJson(bytes, &error);
    if (error.error != QJsonParseError::NoError)
        qWarning("invalid JSON (%s): %s", qPrintable(error.errorString()), bytes.constData());
    return doc;
}

} // namespace

class ConversationExportTest : public QObject
{
    Q_OBJECT

private slots:
    void markdown();
    void markdownWithoutSystemPrompt();
    void json();
    void csv();
    void latencyJsonParsesBack();
    void timestamps();

    void cliSessionsAndLatency();
    void cliErrors();

private:
    void fillDatabase(const QString &path);
};

void ConversationExportTest::markdown()
{
    const std::string md = conversationMarkdown(sampleConversation(), sampleMessages());
    const QByteArray text = QByteArray::fromStdString(md);

    QVERIFY2(text.startsWith("# Span questions\n\n"), text.constData());
    QVERIFY(text.contains("- Conversation: demo\n"));
    QVERIFY(text.contains("- Created: 2024-05-01T12:34:56.789Z\n"));
    QVERIFY(text.contains("- Updated: 2024-05-01T12:35:57.789Z\n"));
    QVERIFY(text.contains("### System prompt\n\nYou are terse.\nAnswer in \"Markdown\".\n\n"));

    // Sections in order, each heading on a line of its own, content verbatim (not escaped) and
    // byte for byte (the invalid UTF-8 too).
    const qsizetype system = text.indexOf("### System prompt\n");
    const qsizetype user1 =
        text.indexOf("\n### User\n\n_2024-05-01T12:34:57.789Z_\n\n" + QByteArray::fromStdString(kUserText) + "\n\n");
    const qsizetype assistant1 = text.indexOf("\n### Assistant\n\n_2024-05-01T12:34:58.789Z_\n\n" +
                                              QByteArray::fromStdString(kAssistantText) + "\n\n");
    const qsizetype user2 = text.indexOf("\n### User\n\n_2024-05-01T12:35:56.789Z_\n\nAnd again?\n\n");
    const qsizetype assistant2 = text.indexOf("\n### Assistant\n\n_2024-05-01T12:35:57.789Z (incomplete)_\n\n" +
                                              QByteArray::fromStdString(kCutOffText) + "\n");
    QVERIFY2(system > 0 && system < user1 && user1 < assistant1 && assistant1 < user2 && user2 < assistant2,
             text.constData());
    QVERIFY(text.endsWith(QByteArray::fromStdString(kCutOffText) + "\n\n"));
    QCOMPARE(text.count("(incomplete)"), 1);
    QCOMPARE(text.count("### User\n"), 2);
    QCOMPARE(text.count("### Assistant\n"), 2);
}

void ConversationExportTest::markdownWithoutSystemPrompt()
{
    ConversationRecord c = sampleConversation();
    c.systemPrompt.clear();
    c.title.clear(); // falls back to the name
    const QByteArray text = QByteArray::fromStdString(conversationMarkdown(c, {}));
    QVERIFY2(text.startsWith("# demo\n\n"), text.constData());
    QVERIFY(!text.contains("System"));
    QVERIFY(!text.contains("###"));
}

void ConversationExportTest::json()
{
    const std::vector<MessageRecord> messages = sampleMessages();
    TurnRecord deletedMessageTurn = sampleTurn(7, 0, kMay1 + 30'000); // its message was removed by an edit
    deletedMessageTurn.decodeMs = 0;
    deletedMessageTurn.stopReason = "cancelled";
    const std::vector<TurnRecord> turns = {sampleTurn(7, 101, kMay1 + 2'500), deletedMessageTurn};
    const std::string exported = conversationJson(sampleConversation(), messages, turns);
    QVERIFY(!exported.empty() && exported.back() == '\n');
    // Readers sniff the first lines; QJsonObject sorts keys, so the order is checked on the text.
    QVERIFY2(
        exported.starts_with("{\n  \"format\": \"kvchat-conversation\",\n  \"version\": 1,\n  \"name\": \"demo\",\n"),
        exported.c_str());
    const QJsonDocument doc = parseJson(QByteArray::fromStdString(exported));
    QVERIFY(doc.isObject());
    const QJsonObject root = doc.object();

    QCOMPARE(root.keys(), (QStringList{"created_at", "format", "messages", "name", "system_prompt", "title", "turns",
                                       "updated_at", "version"}));
    QCOMPARE(root["format"].toString(), QString("kvchat-conversation"));
    QVERIFY(root["version"].isDouble());
    QCOMPARE(root["version"].toInt(), 1);
    QCOMPARE(root["name"].toString(), QString("demo"));
    QCOMPARE(root["title"].toString(), QString("Span questions"));
    QCOMPARE(root["system_prompt"].toString(), q("You are terse.\nAnswer in \"Markdown\"."));
    QCOMPARE(root["created_at"].toString(), QString("2024-05-01T12:34:56.789Z"));
    QCOMPARE(root["updated_at"].toString(), QString("2024-05-01T12:35:57.789Z"));

    const QJsonArray jm = root["messages"].toArray();
    QCOMPARE(jm.size(), 4);
    for (int i = 0; i < 4; ++i) {
        const QJsonObject m = jm[i].toObject();
        QCOMPARE(m.keys(), (QStringList{"complete", "content", "created_at", "index", "role"}));
        QCOMPARE(m["index"].toInt(), i);
        QCOMPARE(m["role"].toString(), q(messages[i].role));
        QCOMPARE(m["complete"].toBool(), messages[i].complete);
        QVERIFY(m["complete"].isBool());
        if (i < 3)
            QCOMPARE(m["content"].toString(), q(messages[i].content));
    }
    QCOMPARE(jm[0].toObject()["created_at"].toString(), QString("2024-05-01T12:34:57.789Z"));
    QCOMPARE(jm[0].toObject()["content"].toString(), QString::fromUtf8("Explain `std::span` in \"one\" line,\nplease: "
                                                                       "**now** — naïve café 日本 🙂"));
    checkReplaced(jm[3].toObject()["content"].toString());

    const QJsonArray jt = root["turns"].toArray();
    QCOMPARE(jt.size(), 2);
    const QJsonObject t = jt[0].toObject();
    QCOMPARE(t.keys(), (QStringList{"created_at",        "decode_ms",       "decode_tokens",   "decode_tokens_per_s",
                                    "first_decode_ms",   "message_id",      "message_index",   "prefill_ms",
                                    "prepare_ms",        "prompt_tokens",   "queue_ms",        "recomputed",
                                    "restore_device_ms", "restore_disk_ms", "restore_host_ms", "reused_device",
                                    "reused_disk",       "reused_host",     "stop_reason",     "ttft_ms"}));
    QCOMPARE(t["ttft_ms"].toDouble(), 123.457); // rounded to microseconds
    QCOMPARE(t["queue_ms"].toDouble(), 0.25);
    QCOMPARE(t["prepare_ms"].toDouble(), 1.0);
    QCOMPARE(t["restore_device_ms"].toDouble(), 2.5);
    QCOMPARE(t["restore_host_ms"].toDouble(), 3.125);
    QCOMPARE(t["restore_disk_ms"].toDouble(), 4.063); // 4.0625 rounds half away from zero
    QCOMPARE(t["prefill_ms"].toDouble(), 100.0);
    QCOMPARE(t["first_decode_ms"].toDouble(), 12.5);
    QCOMPARE(t["decode_ms"].toDouble(), 500.0);
    QCOMPARE(t["prompt_tokens"].toInt(), 321);
    QCOMPARE(t["reused_device"].toInt(), 128);
    QCOMPARE(t["reused_host"].toInt(), 64);
    QCOMPARE(t["reused_disk"].toInt(), 32);
    QCOMPARE(t["recomputed"].toInt(), 97);
    QCOMPARE(t["decode_tokens"].toInt(), 20);
    QCOMPARE(t["decode_tokens_per_s"].toDouble(), 40.0); // 20 tokens in 0.5 s
    QCOMPARE(t["stop_reason"].toString(), QString("eos"));
    QCOMPARE(t["message_id"].toInteger(), 101);
    QCOMPARE(t["message_index"].toInt(), 1);
    QCOMPARE(t["created_at"].toString(), QString("2024-05-01T12:34:59.289Z"));

    const QJsonObject gone = jt[1].toObject();
    QVERIFY(gone["message_id"].isNull());
    QVERIFY(gone["message_index"].isNull());
    QCOMPARE(gone["decode_tokens_per_s"].toDouble(), 0.0); // decode_ms 0: no rate, not inf
    QCOMPARE(gone["stop_reason"].toString(), QString("cancelled"));
}

void ConversationExportTest::csv()
{
    TurnRecord other = sampleTurn(9, 200, kMay1 + 5'000);
    other.ttftMs = 0.0005; // rounds to 0.001
    other.decodeMs = 0;
    other.decodeTokens = 1;
    TurnRecord unnamed = sampleTurn(42, 300, kMay1 + 6'000); // a conversation the map lacks
    const std::vector<TurnRecord> turns = {sampleTurn(7, 101, kMay1), other, unnamed};
    const std::map<std::int64_t, std::string> names = {{7, "demo"}, {9, "a, \"quoted\" name"}};
    const QByteArray text = QByteArray::fromStdString(latencyCsv(turns, names));

    const QList<QByteArray> lines = text.split('\n');
    QCOMPARE(lines.size(), 5); // header, three rows, and the empty piece after the final newline
    QVERIFY(lines.back().isEmpty());
    QCOMPARE(lines[0], QByteArray("timestamp,conversation,prompt_tokens,reused_device,reused_host,reused_disk,"
                                  "recomputed,ttft_ms,queue_ms,prepare_ms,restore_device_ms,restore_host_ms,"
                                  "restore_disk_ms,prefill_ms,first_decode_ms,decode_tokens,decode_ms,"
                                  "decode_tokens_per_s"));
    // 4.0625 is exactly halfway: rounded away from zero as in the JSON export, not printf's to-even.
    QCOMPARE(lines[1], QByteArray("2024-05-01T12:34:56.789Z,demo,321,128,64,32,97,123.457,0.250,1.000,2.500,3.125,"
                                  "4.063,100.000,12.500,20,500.000,40.000"));
    QCOMPARE(lines[2], QByteArray("2024-05-01T12:35:01.789Z,\"a, \"\"quoted\"\" name\",321,128,64,32,97,0.001,0.250,"
                                  "1.000,2.500,3.125,4.063,100.000,12.500,1,0.000,0.000"));
    QVERIFY2(lines[3].startsWith("2024-05-01T12:35:02.789Z,42,"), lines[3].constData());
    // Every row has the header's 18 columns (the quoted name holds one comma inside quotes).
    QCOMPARE(lines[1].count(','), 17);
    QCOMPARE(lines[2].count(','), 18);
    QCOMPARE(lines[3].count(','), 17);

    QCOMPARE(QByteArray::fromStdString(latencyCsv({}, {})), lines[0] + "\n");
}

void ConversationExportTest::latencyJsonParsesBack()
{
    TurnRecord other = sampleTurn(9, 200, kMay1 + 5'000);
    other.decodeMs = 0;
    const std::map<std::int64_t, std::string> names = {{7, "demo"}, {9, "a, \"quoted\" name \xff"}};
    const QJsonDocument doc =
        parseJson(QByteArray::fromStdString(latencyJson({sampleTurn(7, 101, kMay1), other}, names)));
    QVERIFY(doc.isArray());
    const QJsonArray rows = doc.array();
    QCOMPARE(rows.size(), 2);
    const QStringList columns = {"timestamp",       "conversation",       "prompt_tokens",     "reused_device",
                                 "reused_host",     "reused_disk",        "recomputed",        "ttft_ms",
                                 "queue_ms",        "prepare_ms",         "restore_device_ms", "restore_host_ms",
                                 "restore_disk_ms", "prefill_ms",         "first_decode_ms",   "decode_tokens",
                                 "decode_ms",       "decode_tokens_per_s"};
    for (const QJsonValue &row : rows) {
        QStringList keys = row.toObject().keys();
        QStringList expected = columns;
        keys.sort();
        expected.sort();
        QCOMPARE(keys, expected);
        for (const QString &column : columns)
            if (column != "timestamp" && column != "conversation")
                QVERIFY2(row.toObject()[column].isDouble(), qPrintable(column)); // numbers as numbers
    }
    // Each object lists the CSV's columns in the CSV's order.
    const QByteArray raw = QByteArray::fromStdString(latencyJson({sampleTurn(7, 101, kMay1)}, names));
    qsizetype at = 0;
    for (const QString &column : columns) {
        const qsizetype next = raw.indexOf("\"" + column.toUtf8() + "\":", at);
        QVERIFY2(next > at, qPrintable(column));
        at = next;
    }
    const QJsonObject first = rows[0].toObject();
    QCOMPARE(first["timestamp"].toString(), QString("2024-05-01T12:34:56.789Z"));
    QCOMPARE(first["conversation"].toString(), QString("demo"));
    QCOMPARE(first["ttft_ms"].toDouble(), 123.457);
    QCOMPARE(first["prompt_tokens"].toInt(), 321);
    QCOMPARE(first["decode_tokens_per_s"].toDouble(), 40.0);
    const QJsonObject second = rows[1].toObject();
    QCOMPARE(second["conversation"].toString(), QString::fromUtf8("a, \"quoted\" name \uFFFD"));
    QCOMPARE(second["decode_tokens_per_s"].toDouble(), 0.0);

    QCOMPARE(parseJson(QByteArray::fromStdString(latencyJson({}, {}))).array().size(), 0);
}

void ConversationExportTest::timestamps()
{
    // The epoch, the millisecond before it (floor, not truncation toward zero), a leap day.
    TurnRecord t;
    const std::vector<std::pair<std::int64_t, QString>> cases = {
        {0, "1970-01-01T00:00:00.000Z"},
        {-1, "1969-12-31T23:59:59.999Z"},
        {951782400000, "2000-02-29T00:00:00.000Z"},
        {kMay1, "2024-05-01T12:34:56.789Z"},
    };
    for (const auto &[ms, iso] : cases) {
        t.createdAtMs = ms;
        const QJsonArray rows = parseJson(QByteArray::fromStdString(latencyJson({t}, {}))).array();
        QCOMPARE(rows[0].toObject()["timestamp"].toString(), iso);
    }
}

void ConversationExportTest::fillDatabase(const QString &path)
{
    auto opened = SessionStore::open(path.toStdString());
    QVERIFY2(opened.ok(), opened.ok() ? "" : opened.error().message.c_str());
    std::unique_ptr<SessionStore> store = std::move(opened).value();

    // Updated in this order, so `list` shows gamma, then the quoted one, then alpha.
    auto alpha = store->createConversation("alpha", "Be brief.");
    QVERIFY(alpha.ok());
    QVERIFY(store->renameConversation(alpha->id, "Alpha chat").ok());
    QVERIFY(store->appendMessage(alpha->id, "user", kUserText, true, {}).ok());
    auto reply = store->appendMessage(alpha->id, "assistant", "", false, {});
    QVERIFY(reply.ok());
    const std::vector<std::int32_t> tokens = {1, 2, 3};
    QVERIFY(store->finishTurn(reply->id, kAssistantText, true, tokens, sampleTurn(alpha->id, reply->id, 0)).ok());

    auto quoted = store->createConversation("b, \"quoted\"", "");
    QVERIFY(quoted.ok());
    QVERIFY(store->appendMessage(quoted->id, "user", "hi", true, {}).ok());
    auto cut = store->appendMessage(quoted->id, "assistant", "", false, {});
    QVERIFY(cut.ok());
    TurnRecord cutTurn = sampleTurn(quoted->id, cut->id, 0);
    cutTurn.ttftMs = 42.0;
    QVERIFY(store->finishTurn(cut->id, kCutOffText, false, {}, cutTurn).ok());

    auto gamma = store->createConversation("gamma", "");
    QVERIFY(gamma.ok());
    QVERIFY(store->appendMessage(gamma->id, "user", "unanswered", true, {}).ok());
}

void ConversationExportTest::cliSessionsAndLatency()
{
    QVERIFY2(QFileInfo::exists(QString::fromStdString(kvchat::testing::cliPath())),
             "kvchat-cli is not built (ninja kvchat-cli)");
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    const QString db = dir.filePath("store.db");
    fillDatabase(db);
    if (QTest::currentTestFailed())
        return;

    // list: NAME TAB COUNT TAB UPDATED [TAB TITLE], most recent first.
    Run r = runCli({"sessions", "--db", db, "list"});
    CHECK_RUN_OK(r);
    QList<QByteArray> lines = r.out.split('\n');
    QCOMPARE(lines.size(), 4);
    QVERIFY(lines[3].isEmpty());
    const QByteArray iso = "\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ";
    QVERIFY2(QRegularExpression("^gamma\t1\t" + iso + "$").match(QString(lines[0])).hasMatch(), lines[0].constData());
    QVERIFY2(QRegularExpression("^b, \"quoted\"\t2\t" + iso + "$").match(QString(lines[1])).hasMatch(),
             lines[1].constData());
    QVERIFY2(QRegularExpression("^alpha\t2\t" + iso + "\tAlpha chat$").match(QString(lines[2])).hasMatch(),
             lines[2].constData());

    r = runCli({"sessions", "--db", db, "list", "--json"});
    CHECK_RUN_OK(r);
    const QJsonArray listed = parseJson(r.out).array();
    QCOMPARE(listed.size(), 3);
    QCOMPARE(listed[0].toObject()["name"].toString(), QString("gamma"));
    QCOMPARE(listed[2].toObject()["name"].toString(), QString("alpha"));
    QCOMPARE(listed[2].toObject()["title"].toString(), QString("Alpha chat"));
    QCOMPARE(listed[2].toObject()["messages"].toInt(), 2);

    // show and export --format md: the Markdown export.
    r = runCli({"sessions", "--db", db, "show", "alpha"});
    CHECK_RUN_OK(r);
    const QByteArray shown = r.out;
    QVERIFY2(shown.startsWith("# Alpha chat\n"), shown.constData());
    QVERIFY(shown.contains("### System prompt\n\nBe brief.\n"));
    QVERIFY(shown.contains("### User\n"));
    QVERIFY(shown.contains(QByteArray::fromStdString(kUserText)));
    QVERIFY(shown.contains(QByteArray::fromStdString(kAssistantText)));
    r = runCli({"sessions", "--db", db, "export", "alpha", "--format", "md"});
    CHECK_RUN_OK(r);
    QCOMPARE(r.out, shown);
    // A conversation can also be named by its title (what the app shows), when no other has it.
    r = runCli({"sessions", "--db", db, "export", "Alpha chat", "--format", "md"});
    CHECK_RUN_OK(r);
    QCOMPARE(r.out, shown);
    r = runCli({"sessions", "--db", db, "export", "b, \"quoted\"", "--format", "md"});
    CHECK_RUN_OK(r);
    QVERIFY(r.out.contains("(incomplete)"));
    QVERIFY(r.out.contains(QByteArray::fromStdString(kCutOffText))); // bytes kept as they are

    r = runCli({"sessions", "--db", db, "export", "alpha", "--format", "json"});
    CHECK_RUN_OK(r);
    QJsonObject exported = parseJson(r.out).object();
    QCOMPARE(exported["format"].toString(), QString("kvchat-conversation"));
    QCOMPARE(exported["name"].toString(), QString("alpha"));
    QCOMPARE(exported["title"].toString(), QString("Alpha chat"));
    QCOMPARE(exported["system_prompt"].toString(), QString("Be brief."));
    QCOMPARE(exported["messages"].toArray().size(), 2);
    QCOMPARE(exported["messages"].toArray()[1].toObject()["content"].toString(), q(kAssistantText));
    QCOMPARE(exported["turns"].toArray().size(), 1);
    QCOMPARE(exported["turns"].toArray()[0].toObject()["message_index"].toInt(), 1);
    QCOMPARE(exported["turns"].toArray()[0].toObject()["ttft_ms"].toDouble(), 123.457);
    r = runCli({"sessions", "--db", db, "export", "b, \"quoted\"", "--format", "json"});
    CHECK_RUN_OK(r);
    exported = parseJson(r.out).object();
    QCOMPARE(exported["messages"].toArray()[1].toObject()["complete"].toBool(), false);
    checkReplaced(exported["messages"].toArray()[1].toObject()["content"].toString());

    // latency: all conversations, or one.
    r = runCli({"latency", "--db", db, "--format", "csv"});
    CHECK_RUN_OK(r);
    lines = r.out.split('\n');
    QCOMPARE(lines.size(), 4);
    QVERIFY(lines[0].startsWith("timestamp,conversation,prompt_tokens,"));
    QVERIFY2(lines[1].contains(",alpha,321,128,64,32,97,123.457,"), lines[1].constData());
    QVERIFY2(lines[2].contains(",\"b, \"\"quoted\"\"\",321,128,64,32,97,42.000,"), lines[2].constData());
    r = runCli({"latency", "--db", db, "--session", "b, \"quoted\"", "--format", "csv"});
    CHECK_RUN_OK(r);
    lines = r.out.split('\n');
    QCOMPARE(lines.size(), 3);
    QVERIFY(lines[1].contains(",42.000,"));

    r = runCli({"latency", "--db", db, "--format", "json"});
    CHECK_RUN_OK(r);
    QJsonArray rows = parseJson(r.out).array();
    QCOMPARE(rows.size(), 2);
    QCOMPARE(rows[0].toObject()["conversation"].toString(), QString("alpha"));
    QCOMPARE(rows[1].toObject()["conversation"].toString(), QString("b, \"quoted\""));
    QCOMPARE(rows[1].toObject()["ttft_ms"].toDouble(), 42.0);
    r = runCli({"latency", "--db", db, "--session", "alpha", "--format", "json"});
    CHECK_RUN_OK(r);
    rows = parseJson(r.out).array();
    QCOMPARE(rows.size(), 1);
    QCOMPARE(rows[0].toObject()["decode_tokens_per_s"].toDouble(), 40.0);
    r = runCli({"latency", "--db", db, "--session", "gamma", "--format", "json"});
    CHECK_RUN_OK(r);
    QCOMPARE(parseJson(r.out).array().size(), 0);

    // delete: silent on success; gone from list, and its turns from latency.
    r = runCli({"sessions", "--db", db, "delete", "alpha"});
    CHECK_RUN_OK(r);
    QVERIFY(r.out.isEmpty());
    r = runCli({"sessions", "--db", db, "list"});
    CHECK_RUN_OK(r);
    QCOMPARE(r.out.count('\n'), 2);
    QVERIFY(!r.out.contains("alpha"));
    r = runCli({"latency", "--db", db, "--format", "csv"});
    CHECK_RUN_OK(r);
    QCOMPARE(r.out.count('\n'), 2);
    CHECK_RUN_ERROR(runCli({"sessions", "--db", db, "show", "alpha"}), "no conversation named or titled 'alpha'");
}

void ConversationExportTest::cliErrors()
{
    QVERIFY2(QFileInfo::exists(QString::fromStdString(kvchat::testing::cliPath())),
             "kvchat-cli is not built (ninja kvchat-cli)");
    QTemporaryDir dir;
    QVERIFY(dir.isValid());

    // A database that does not exist is an error, and none of these commands creates it.
    const QString missing = dir.filePath("missing.db");
    const QList<QStringList> onMissing = {
        {"sessions", "--db", missing, "list"},
        {"sessions", "--db", missing, "list", "--json"},
        {"sessions", "--db", missing, "show", "x"},
        {"sessions", "--db", missing, "delete", "x"},
        {"sessions", "--db", missing, "export", "x", "--format", "json"},
        {"latency", "--db", missing, "--format", "csv"},
        {"latency", "--db", missing, "--session", "x", "--format", "json"},
    };
    for (const QStringList &args : onMissing) {
        CHECK_RUN_ERROR(runCli(args), "does not exist");
        QVERIFY2(!QFileInfo::exists(missing), qPrintable(args.join(' ')));
        QVERIFY(QDir(dir.path()).entryList(QDir::Files).isEmpty()); // no -wal or -shm either
    }

    const QString db = dir.filePath("store.db");
    fillDatabase(db);
    if (QTest::currentTestFailed())
        return;

    CHECK_RUN_ERROR(runCli({"sessions", "list"}), "--db");
    CHECK_RUN_ERROR(runCli({"latency", "--format", "csv"}), "--db");
    CHECK_RUN_ERROR(runCli({"sessions", "--db", db}), "subcommand");
    CHECK_RUN_ERROR(runCli({"sessions", "--db", db, "rename", "alpha"}), "unknown subcommand 'rename'");
    CHECK_RUN_ERROR(runCli({"sessions", "--db", db, "show"}), "NAME");
    CHECK_RUN_ERROR(runCli({"sessions", "--db", db, "show", "nobody"}), "no conversation named or titled 'nobody'");
    CHECK_RUN_ERROR(runCli({"sessions", "--db", db, "delete", "nobody"}), "no conversation named or titled 'nobody'");
    {
        // A title two conversations have names neither.
        auto store = SessionStore::open(db.toStdString());
        QVERIFY(store.ok());
        auto gamma = (*store)->findConversation("gamma");
        QVERIFY(gamma.ok() && gamma->has_value());
        QVERIFY((*store)->renameConversation((*gamma)->id, "Alpha chat").ok());
    }
    CHECK_RUN_ERROR(runCli({"sessions", "--db", db, "show", "Alpha chat"}), "2 conversations are titled 'Alpha chat'");
    CHECK_RUN_ERROR(runCli({"sessions", "--db", db, "export", "nobody", "--format", "md"}), "nobody");
    CHECK_RUN_ERROR(runCli({"sessions", "--db", db, "export", "alpha", "--format", "html"}), "html");
    CHECK_RUN_ERROR(runCli({"sessions", "--db", db, "export", "alpha"}), "--format");
    CHECK_RUN_ERROR(runCli({"latency", "--db", db, "--format", "xml"}), "xml");
    CHECK_RUN_ERROR(runCli({"latency", "--db", db, "--session", "nobody", "--format", "csv"}), "nobody");

    // A file that is not a kvchat database is reported, not overwritten.
    const QString notDb = dir.filePath("notes.txt");
    QFile f(notDb);
    QVERIFY(f.open(QIODevice::WriteOnly));
    f.write("just some notes, not SQLite at all\n");
    f.close();
    CHECK_RUN_ERROR(runCli({"sessions", "--db", notDb, "list"}), "notes.txt");
    CHECK_RUN_ERROR(runCli({"sessions", "--db", notDb, "delete", "x"}), "notes.txt");
    QCOMPARE(QFileInfo(notDb).size(), qint64(35));
}

QTEST_GUILESS_MAIN(ConversationExportTest)
#include "conversation_export_test.moc"
