// SPDX-License-Identifier: MIT
// kvchat-cli as scripts use it: the exact command forms, plain and JSON output, and errors as a
// non-zero status with one line on stderr.
#include "tests/support/test_paths.h"

#include <QFile>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QTemporaryDir>
#include <QTest>

#include <cmath>
#include <filesystem>

using namespace kvchat::testing;

namespace {

struct Run
{
    int exitCode = -1;
    QByteArray out;
    QByteArray err;
};

Run runCli(const QStringList &args)
{
    QProcess p;
    p.start(QString::fromStdString(cliPath()), args);
    if (!p.waitForFinished(120000))
        qFatal("kvchat-cli did not finish");
    return Run{p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -1, p.readAllStandardOutput(),
               p.readAllStandardError()};
}

QString stories()
{
    return QString::fromStdString(sharedModel("stories260K.f32.gguf"));
}

QJsonObject referenceCase(const char *file, int index)
{
    QFile f(QString::fromStdString(sharedReference(file)));
    if (!f.open(QIODevice::ReadOnly))
        qFatal("missing %s", file);
    for (const auto &c : QJsonDocument::fromJson(f.readAll()).object().value("cases").toArray())
        if (c.toObject().value("index").toInt() == index)
            return c.toObject();
    qFatal("no case %d in %s", index, file);
}

// One line on stderr, ending in a newline, nothing on stdout.
void verifyOneLineError(const Run &run, const QString &mentions)
{
    QVERIFY2(run.exitCode != 0, "expected a non-zero exit status");
    QVERIFY(run.out.isEmpty());
    QCOMPARE(run.err.count('\n'), 1);
    QVERIFY(run.err.endsWith('\n'));
    QVERIFY2(QString::fromUtf8(run.err).contains(mentions), run.err.constData());
}

} // namespace

class CliTest : public QObject
{
    Q_OBJECT

private slots:
    void generateJson()
    {
        const QJsonObject ref = referenceCase("stories260K_greedy.json", 2);
        const Run run = runCli({"generate", "-m", stories(), "-p", ref.value("prompt").toString(), "-n", "64",
                                "--temp", "0", "--threads", "2", "--json"});
        QCOMPARE(run.exitCode, 0);
        const QJsonObject out = QJsonDocument::fromJson(run.out).object();
        for (const char *key : {"text", "tokens", "prompt_tokens", "ttft_ms", "prefill_tokens_per_s",
                                "decode_tokens_per_s"})
            QVERIFY2(out.contains(key), key);
        QCOMPARE(out.value("tokens").toArray(), ref.value("generated_ids").toArray());
        QCOMPARE(out.value("text").toString(), ref.value("completion_text").toString());
        QCOMPARE(out.value("prompt_tokens").toInt(), ref.value("prompt_ids").toArray().size());
        QVERIFY(out.value("ttft_ms").toDouble() > 0.0);
        QVERIFY(out.value("prefill_tokens_per_s").toDouble() > 0.0);
        QVERIFY(out.value("decode_tokens_per_s").toDouble() > 0.0);
    }

    void generatePlainPrintsOnlyTheText()
    {
        const QJsonObject ref = referenceCase("stories260K_greedy.json", 4);
        const Run run =
            runCli({"generate", "-m", stories(), "-p", ref.value("prompt").toString(), "-n", "64", "--temp", "0"});
        QCOMPARE(run.exitCode, 0);
        QCOMPARE(QString::fromUtf8(run.out), ref.value("completion_text").toString() + "\n");
    }

    void sampledGenerationIsSeeded()
    {
        const QStringList args = {"generate", "-m", stories(), "-p", "Once", "-n", "20", "--temp", "0.9",
                                  "--seed", "7", "--json"};
        const Run a = runCli(args), b = runCli(args);
        QCOMPARE(a.exitCode, 0);
        QCOMPARE(QJsonDocument::fromJson(a.out)["tokens"], QJsonDocument::fromJson(b.out)["tokens"]);
    }

    void tokenize()
    {
        const QJsonObject ref = referenceCase("tok512_encodings.json", 0);
        const Run json = runCli({"tokenize", "-m", stories(), ref.value("text").toString(), "--json"});
        QCOMPARE(json.exitCode, 0);
        QCOMPARE(QJsonDocument::fromJson(json.out).array(), ref.value("ids").toArray());
        const Run plain = runCli({"tokenize", "-m", stories(), ref.value("text").toString()});
        QStringList ids;
        for (const auto &v : ref.value("ids").toArray())
            ids << QString::number(v.toInt());
        QCOMPARE(QString::fromUtf8(plain.out), ids.join(' ') + "\n");
    }

    void info()
    {
        const Run run = runCli({"info", "-m", stories()});
        QCOMPARE(run.exitCode, 0);
        const QString text = QString::fromUtf8(run.out);
        for (const char *expected : {"architecture:    llama", "layers:          5", "heads:           8 (kv heads 4",
                                     "context length:  512", "llama (sentencepiece), 512 tokens", "F32 x48"})
            QVERIFY2(text.contains(expected), expected);
    }

    void errorsAreOneLine()
    {
        QTemporaryDir dir;
        verifyOneLineError(runCli({"generate", "-m", dir.filePath("missing.gguf"), "-p", "x"}), "missing.gguf");
        QFile corrupt(dir.filePath("corrupt.gguf"));
        QVERIFY(corrupt.open(QIODevice::WriteOnly));
        corrupt.write(QByteArray("GGUF\x03\x00\x00\x00garbage", 15));
        corrupt.close();
        verifyOneLineError(runCli({"info", "-m", corrupt.fileName()}), "corrupt.gguf");
        verifyOneLineError(runCli({"generate", "-m", stories(), "-p", "x", "--bogus"}), "--bogus");
        verifyOneLineError(runCli({"generate", "-m", stories()}), "-p");
        verifyOneLineError(runCli({"generate", "-m", stories(), "-p", "x", "-n", "many"}), "-n");
        verifyOneLineError(runCli({"frobnicate"}), "frobnicate");
        // A prompt longer than the context is refused, not truncated silently.
        verifyOneLineError(runCli({"generate", "-m", stories(), "-p", QString("word ").repeated(600)}), "context");
    }

    void chatResumesFromDiskInANewProcess()
    {
        QTemporaryDir dir;
        const QString db = dir.filePath("chat.db");
        const QStringList base = {"chat", "-m", stories(), "--db", db, "--session", "s", "-n", "24", "--temp", "0", "--json"};
        const Run first = runCli(base + QStringList{"--message", "The dog ran to the park."});
        QCOMPARE(first.exitCode, 0);
        const QJsonObject m1 = QJsonDocument::fromJson(first.out).object().value("metrics").toObject();
        for (const char *key : {"ttft_ms", "queue_ms", "restore_ms", "restore_device_ms", "restore_host_ms",
                                "restore_disk_ms", "prefill_ms", "first_decode_ms", "prompt_tokens", "reused_device",
                                "reused_host", "reused_disk", "recomputed", "decode_tokens", "decode_ms"})
            QVERIFY2(m1.contains(key), key);
        QCOMPARE(m1.value("reused_disk").toInt(), 0);
        const Run second = runCli(base + QStringList{"--message", "Then it saw a cat."});
        QCOMPARE(second.exitCode, 0);
        const QJsonObject m2 = QJsonDocument::fromJson(second.out).object().value("metrics").toObject();
        QVERIFY(m2.value("reused_disk").toInt() > 0);
        // The parts add up to the total.
        const double parts = m2.value("queue_ms").toDouble() + m2.value("prepare_ms").toDouble() +
                             m2.value("restore_ms").toDouble() + m2.value("prefill_ms").toDouble() +
                             m2.value("first_decode_ms").toDouble();
        QVERIFY(std::abs(parts - m2.value("ttft_ms").toDouble()) < 0.01);
        // The same turn recomputed without the cache gives the same reply.
        const Run reference = runCli({"chat", "-m", stories(), "--db", dir.filePath("ref.db"), "--session", "s", "-n",
                                      "24", "--temp", "0", "--json", "--no-cache", "--message", "The dog ran to the park."});
        QCOMPARE(QJsonDocument::fromJson(reference.out)["reply"], QJsonDocument::fromJson(first.out)["reply"]);
        const Run list = runCli({"sessions", "--db", db, "list"});
        QCOMPARE(list.exitCode, 0);
        QVERIFY(list.out.startsWith("s\t4\t"));
    }

    void deletingASessionDeletesItsKv()
    {
        // Two sessions share a system prompt; deleting one deletes the KV only it reached (that KV
        // encodes its text): the same message sent again is recomputed past the shared prompt,
        // while the other session still resumes its whole history from disk.
        QTemporaryDir dir;
        const QString db = dir.filePath("delete.db");
        const QString system = "Once upon a time there was a little town where every child had a dog and a red ball.";
        auto chat = [&](const QString &session, const QString &message) {
            const Run run = runCli({"chat", "-m", stories(), "--db", db, "--session", session, "--system", system, "-n",
                                    "24", "--temp", "0", "--json", "--message", message});
            [&] { QCOMPARE(run.exitCode, 0); }();
            return QJsonDocument::fromJson(run.out).object().value("metrics").toObject();
        };
        const QString message = "The dog ran to the park with the ball.";
        chat("a", message);
        const int sharedPrompt = chat("b", "A cat sat in the sun.").value("reused_disk").toInt();
        QVERIFY(sharedPrompt >= 16); // at least one block of the system prompt, reused from a's
        QCOMPARE(runCli({"sessions", "--db", db, "delete", "a"}).exitCode, 0);

        const QJsonObject again = chat("a-again", message);
        QCOMPARE(again.value("reused_disk").toInt(), sharedPrompt);
        QVERIFY(again.value("recomputed").toInt() > 1);
        const QJsonObject resumed = chat("b", "Then it slept.");
        QVERIFY(resumed.value("reused_disk").toInt() > sharedPrompt + 16);
    }

    void replayRespectsBudgets()
    {
        QTemporaryDir dir;
        QFile script(dir.filePath("script.jsonl"));
        QVERIFY(script.open(QIODevice::WriteOnly));
        // Three conversations of three turns (~400 tokens each) do not fit the device together.
        for (int i = 0; i < 9; ++i) {
            const QString session = QString("c%1").arg(i % 3);
            const QString message = QString("Story part %1: the fox jumped over the lazy dog and ran far away. ").arg(i)
                                        .repeated(3);
            script.write(QJsonDocument(QJsonObject{{"session", session}, {"message", message}})
                             .toJson(QJsonDocument::Compact) +
                         "\n");
            if (i == 6)
                script.write("{\"prefetch\": \"c0\"}\n");
        }
        script.close();
        // 1 MiB of device and host KV: 51 blocks of 20 KiB (816 positions), so conversations move
        // between tiers.
        const Run run = runCli({"replay", "-m", stories(), "--db", dir.filePath("r.db"), script.fileName(),
                                "--device-mb", "1", "--host-mb", "1", "--temp", "0", "-n", "64", "--check-invariants"});
        QVERIFY2(run.exitCode == 0, run.err.constData());
        const QList<QByteArray> lines = run.out.trimmed().split('\n');
        QCOMPARE(lines.size(), 10);
        int reusedFromLowerTiers = 0;
        for (const QByteArray &line : lines) {
            const QJsonObject step = QJsonDocument::fromJson(line).object();
            const QJsonObject cache = step.value("cache").toObject();
            for (const char *tier : {"device", "host", "disk"}) {
                const QJsonObject t = cache.value(tier).toObject();
                QVERIFY2(t.value("used_bytes").toDouble() <= t.value("budget_bytes").toDouble(), tier);
            }
            const QJsonObject m = step.value("metrics").toObject();
            reusedFromLowerTiers += m.value("reused_host").toInt() + m.value("reused_disk").toInt();
        }
        QVERIFY(reusedFromLowerTiers > 0);
    }

    void smollm2WritesSensibleEnglish()
    {
        if (!std::filesystem::exists(smollm2Path()))
            QSKIP("SmolLM2 is not in the model cache: the fetch_smollm2 step could not reach PyPI");
        const Run run = runCli({"generate", "-m", QString::fromStdString(smollm2Path()), "-p",
                                "The capital of France is", "-n", "8", "--temp", "0"});
        QCOMPARE(run.exitCode, 0);
        QVERIFY2(QString::fromUtf8(run.out).contains("Paris"), run.out.constData());
    }
};

QTEST_GUILESS_MAIN(CliTest)
#include "cli_test.moc"
