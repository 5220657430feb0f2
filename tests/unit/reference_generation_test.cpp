// SPDX-License-Identifier: MIT
// Greedy generations of the real trained models in shared/models against the outputs of llama2.c's
// run.c (shared/reference/*_greedy.json): prompt ids, generated ids and text must match exactly.
// Every case in the files is run, so added cases are picked up without a code change.
#include "engine/backend/backend.h"
#include "engine/model/llama_model.h"
#include "engine/model/prompt_tokens.h"
#include "engine/runtime/generator.h"
#include "tests/support/test_paths.h"

#include <QFile>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QTest>

using namespace kvchat::engine;
using namespace kvchat::testing;

namespace {

std::vector<TokenId> toIds(const QJsonArray &array)
{
    std::vector<TokenId> ids;
    for (const auto &v : array)
        ids.push_back(v.toInt());
    return ids;
}

QString idsText(const std::vector<TokenId> &ids)
{
    QStringList parts;
    for (TokenId id : ids)
        parts << QString::number(id);
    return parts.join(' ');
}

} // namespace

class ReferenceGenerationTest : public QObject
{
    Q_OBJECT

private slots:
    void greedyMatchesRunC_data()
    {
        QTest::addColumn<QString>("modelFile");
        QTest::addColumn<QJsonObject>("testCase");
        for (auto [model, reference] : {std::pair{"stories260K.f32.gguf", "stories260K_greedy.json"},
                                        std::pair{"aidreams260K.f32.gguf", "aidreams260K_greedy.json"}}) {
            QFile file(QString::fromStdString(sharedReference(reference)));
            if (!file.open(QIODevice::ReadOnly))
                QSKIP(qPrintable("reference file missing: " + file.fileName()));
            const QJsonArray cases = QJsonDocument::fromJson(file.readAll()).object().value("cases").toArray();
            QVERIFY(!cases.isEmpty());
            for (const auto &c : cases) {
                const QJsonObject obj = c.toObject();
                const QString name = QString("%1 #%2").arg(model).arg(obj.value("index").toInt());
                QTest::newRow(qPrintable(name)) << QString(model) << obj;
            }
        }
    }

    void greedyMatchesRunC()
    {
        QFETCH(QString, modelFile);
        QFETCH(QJsonObject, testCase);
        auto model = LlamaModel::load(sharedModel(modelFile.toStdString()));
        QVERIFY2(model.ok(), model.ok() ? "" : model.error().message.c_str());
        const LlamaModel &m = **model;

        const std::string prompt = testCase.value("prompt").toString().toStdString();
        const std::vector<TokenId> promptIds = tokenizeRawPrompt(m.tokenizer(), prompt);
        QCOMPARE(idsText(promptIds), idsText(toIds(testCase.value("prompt_ids").toArray())));

        auto backend = makeCpuBackend(m, 2);
        KvBlockPool pool(backend->kvLayout(), 64);
        KvSequence seq(pool);
        GenerationRequest request;
        request.newTokens = promptIds;
        request.maxNewTokens = testCase.value("n_new_requested").toInt();
        request.sampling.temperature = 0.0f;
        Generator generator(m, *backend);
        auto result = generator.generate(request, seq);
        QVERIFY2(result.ok(), result.ok() ? "" : result.error().message.c_str());
        QCOMPARE(idsText(result->tokens), idsText(toIds(testCase.value("generated_ids").toArray())));
        QCOMPARE(QString::fromStdString(result->text), testCase.value("completion_text").toString());

        // The whole text, decoded as a stream from the start of the sequence.
        TextStream stream(m.tokenizer(), true);
        std::string text;
        for (TokenId id : promptIds)
            text += stream.push(id);
        for (TokenId id : result->tokens)
            text += stream.push(id);
        text += stream.finish();
        QCOMPARE(QString::fromStdString(text), testCase.value("text").toString());
    }
};

QTEST_GUILESS_MAIN(ReferenceGenerationTest)
#include "reference_generation_test.moc"
