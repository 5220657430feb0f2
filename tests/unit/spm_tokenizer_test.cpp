// SPDX-License-Identifier: MIT
// The sentencepiece ("llama") tokenizer built from GGUF vocabularies against encodings made by
// python3-sentencepiece (shared/reference/*_encodings.json): tok512 from the stories260K GGUF, and
// the Llama 2 tokenizer, whose .model is turned into a GGUF vocabulary here through the
// sentencepiece API (pieces, scores, types), so the engine sees only what a GGUF file carries.
#include "engine/model/gguf_file.h"
#include "engine/model/tokenizer.h"
#include "tests/support/gguf_writer.h"
#include "tests/support/test_paths.h"

#include <sentencepiece_processor.h>

#include <QFile>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QTemporaryDir>
#include <QTest>

using namespace kvchat::engine;
using namespace kvchat::testing;

namespace {

QString idsText(const std::vector<TokenId> &ids)
{
    QStringList parts;
    for (TokenId id : ids)
        parts << QString::number(id);
    return parts.join(' ');
}

// Writes a GGUF holding only the tokenizer.ggml.* keys of a sentencepiece .model.
bool writeVocabGguf(const std::string &modelPath, const std::string &ggufPath)
{
    sentencepiece::SentencePieceProcessor sp;
    if (!sp.Load(modelPath).ok())
        return false;
    std::vector<std::string> pieces;
    std::vector<float> scores;
    std::vector<std::int32_t> types;
    for (int i = 0; i < sp.GetPieceSize(); ++i) {
        pieces.push_back(sp.IdToPiece(i));
        scores.push_back(sp.GetScore(i));
        types.push_back(sp.IsUnknown(i) ? 2 : sp.IsControl(i) ? 3 : sp.IsUnused(i) ? 5 : sp.IsByte(i) ? 6 : 1);
    }
    GgufWriter w;
    w.addString("tokenizer.ggml.model", "llama");
    w.addStringArray("tokenizer.ggml.tokens", pieces);
    w.addFloat32Array("tokenizer.ggml.scores", scores);
    w.addInt32Array("tokenizer.ggml.token_type", types);
    w.addUInt32("tokenizer.ggml.bos_token_id", static_cast<std::uint32_t>(sp.bos_id()));
    w.addUInt32("tokenizer.ggml.eos_token_id", static_cast<std::uint32_t>(sp.eos_id()));
    w.addUInt32("tokenizer.ggml.unknown_token_id", static_cast<std::uint32_t>(sp.unk_id()));
    return w.writeFile(ggufPath);
}

std::unique_ptr<Tokenizer> loadTokenizer(const std::string &ggufPath)
{
    auto file = GgufFile::open(ggufPath);
    if (!file)
        qFatal("%s", file.error().message.c_str());
    auto tok = Tokenizer::fromGguf(**file);
    if (!tok)
        qFatal("%s", tok.error().message.c_str());
    return std::move(tok).value();
}

bool isValidUtf8(const std::string &s)
{
    return QString::fromUtf8(s.data(), static_cast<qsizetype>(s.size())).toUtf8() == QByteArray(s.data(), static_cast<qsizetype>(s.size()));
}

} // namespace

class SpmTokenizerTest : public QObject
{
    Q_OBJECT

private:
    QTemporaryDir m_dir;
    std::unique_ptr<Tokenizer> m_tok512;
    std::unique_ptr<Tokenizer> m_llama2;

private slots:
    void initTestCase()
    {
        m_tok512 = loadTokenizer(sharedModel("stories260K.f32.gguf"));
        const std::string llama2 = m_dir.filePath("llama2-vocab.gguf").toStdString();
        QVERIFY(writeVocabGguf(sharedModel("llama2_tokenizer.model"), llama2));
        m_llama2 = loadTokenizer(llama2);
        QCOMPARE(m_llama2->vocabSize(), 32000);
        QCOMPARE(m_llama2->kind(), VocabKind::Spm);
    }

    void matchesSentencepiece_data()
    {
        QTest::addColumn<QString>("vocab");
        QTest::addColumn<QJsonObject>("testCase");
        for (auto [vocab, reference] : {std::pair{"tok512", "tok512_encodings.json"},
                                        std::pair{"llama2", "llama2_tokenizer_encodings.json"}}) {
            QFile file(QString::fromStdString(sharedReference(reference)));
            QVERIFY2(file.open(QIODevice::ReadOnly), qPrintable(file.fileName()));
            const QJsonArray cases = QJsonDocument::fromJson(file.readAll()).object().value("cases").toArray();
            QVERIFY(!cases.isEmpty());
            for (const auto &c : cases) {
                const QJsonObject obj = c.toObject();
                QTest::newRow(qPrintable(QString("%1 #%2").arg(vocab).arg(obj.value("index").toInt())))
                    << QString(vocab) << obj;
            }
        }
    }

    void matchesSentencepiece()
    {
        QFETCH(QString, vocab);
        QFETCH(QJsonObject, testCase);
        const Tokenizer &tok = vocab == "tok512" ? *m_tok512 : *m_llama2;
        const std::string text = testCase.value("text").toString().toStdString();
        std::vector<TokenId> expected;
        for (const auto &v : testCase.value("ids").toArray())
            expected.push_back(v.toInt());
        const std::vector<TokenId> ids = tok.encode(text, true);
        QCOMPARE(idsText(ids), idsText(expected));

        // Streaming decode from the start of a sequence gives sentencepiece's decode, in valid
        // UTF-8 chunks.
        TextStream stream(tok, true);
        std::string decoded;
        for (TokenId id : ids) {
            const std::string chunk = stream.push(id);
            QVERIFY2(isValidUtf8(chunk), "a streamed chunk is not valid UTF-8");
            decoded += chunk;
        }
        decoded += stream.finish();
        QCOMPARE(QString::fromStdString(decoded), testCase.value("decoded").toString());
    }

    void userTextNeverBecomesControlTokens()
    {
        for (const Tokenizer *tok : {m_tok512.get(), m_llama2.get()}) {
            const std::vector<TokenId> ids = tok->encode("<s>[INST] hi </s><unk>", true);
            QVERIFY(!ids.empty());
            for (TokenId id : ids)
                QVERIFY2(tok->tokenKind(id) != TokenKind::Control && tok->tokenKind(id) != TokenKind::Unknown,
                         qPrintable(QString("id %1 is a control token").arg(id)));
            QCOMPARE(tok->specialToken("<s>").value_or(-1), 1);
            QCOMPARE(tok->specialToken("</s>").value_or(-1), 2);
        }
    }

    void continuationHasNoDummyPrefix()
    {
        // After a special token the text continues the sequence: no dummy "▁" when atTextStart is
        // false, one when true.
        const std::vector<TokenId> start = m_llama2->encode("Hello", true);
        const std::vector<TokenId> cont = m_llama2->encode("Hello", false);
        QCOMPARE(QString::fromStdString(std::string(m_llama2->piece(start.front()))), QString::fromUtf8("\u2581Hello"));
        QVERIFY(QString::fromStdString(std::string(m_llama2->piece(cont.front()))) != QString::fromUtf8("\u2581Hello"));
        QCOMPARE(QString::fromStdString(m_llama2->decode(cont)), QString("Hello"));
    }

    void specialIdsAndEndOfGeneration()
    {
        QCOMPARE(m_llama2->bos().value_or(-1), 1);
        QCOMPARE(m_llama2->eos().value_or(-1), 2);
        QVERIFY(m_llama2->addBos()); // the default for sentencepiece vocabularies
        QVERIFY(m_llama2->isEndOfGeneration(2));
        QVERIFY(!m_llama2->isEndOfGeneration(1));
        QCOMPARE(m_llama2->tokenBytes(1), std::string()); // control tokens decode to nothing
    }

    void streamingHoldsIncompleteCharacters()
    {
        // "🙂" is four byte-fallback tokens in tok512: nothing is emitted until the last arrives.
        const std::vector<TokenId> ids = m_tok512->encode("\xF0\x9F\x99\x82", false);
        QCOMPARE(ids.size(), std::size_t(4));
        TextStream stream(*m_tok512);
        QCOMPARE(stream.push(ids[0]), std::string());
        QCOMPARE(stream.push(ids[1]), std::string());
        QCOMPARE(stream.push(ids[2]), std::string());
        QCOMPARE(stream.push(ids[3]), std::string("\xF0\x9F\x99\x82"));
        // A reply cut inside a character ends with U+FFFD rather than a broken sequence.
        TextStream cut(*m_tok512);
        QCOMPARE(cut.push(ids[0]), std::string());
        QCOMPARE(cut.finish(), std::string("\xEF\xBF\xBD"));
    }
};

QTEST_GUILESS_MAIN(SpmTokenizerTest)
#include "spm_tokenizer_test.moc"
