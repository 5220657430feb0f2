// SPDX-License-Identifier: MIT
// Tests of the byte-level BPE tokenizer (engine/model/bpe_tokenizer.cpp) and its pre-tokenizer.
//
// The expected splits and token ids are not produced by kvchat: tests/scripts/make_bpe_reference.py
// made them with HF `tokenizers` (cross-checked against the Python `regex` module for the splits)
// from the patterns of the models' tokenizer.json files and from SmolLM2's own GGUF vocabulary and
// merges; its output is pasted below. Re-run it after changing a string.
#include "engine/model/bpe_pretokenizer.h"
#include "engine/model/gguf_file.h"
#include "engine/model/tokenizer.h"
#include "tests/support/gguf_writer.h"
#include "tests/support/test_paths.h"

#include <QByteArray>
#include <QStringDecoder>
#include <QTest>

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

using namespace kvchat::engine;

using Pieces = std::vector<std::string>;
using Ids = std::vector<TokenId>;

Q_DECLARE_METATYPE(std::string)
Q_DECLARE_METATYPE(Pieces)
Q_DECLARE_METATYPE(Ids)

namespace {

// Independent of the engine's own UTF-8 code: Qt's decoder.
bool isValidUtf8ByQt(const std::string &bytes)
{
    QStringDecoder decoder(QStringDecoder::Utf8);
    const QString decoded = decoder(QByteArray::fromRawData(bytes.data(), static_cast<qsizetype>(bytes.size())));
    Q_UNUSED(decoded);
    return !decoder.hasError();
}

Pieces toPieces(const std::vector<std::string_view> &views)
{
    return Pieces(views.begin(), views.end());
}

// A GGUF vocabulary held in memory: the bytes must outlive the GgufFile that views them.
struct MemoryVocab
{
    std::vector<std::uint8_t> bytes;
    std::unique_ptr<GgufFile> file;
};

struct TinyVocab
{
    std::vector<std::string> pieces;
    std::vector<std::int32_t> kinds; // TokenKind values
    std::vector<std::string> merges;
    std::string pre = "gpt2";
    bool withMerges = true;
};

MemoryVocab writeVocab(const TinyVocab &vocab)
{
    kvchat::testing::GgufWriter writer;
    writer.addString("general.architecture", "llama");
    writer.addString("tokenizer.ggml.model", "gpt2");
    writer.addString("tokenizer.ggml.pre", vocab.pre);
    writer.addStringArray("tokenizer.ggml.tokens", vocab.pieces);
    writer.addInt32Array("tokenizer.ggml.token_type", vocab.kinds);
    if (vocab.withMerges) {
        writer.addStringArray("tokenizer.ggml.merges", vocab.merges);
    }
    MemoryVocab out;
    out.bytes = writer.serialize();
    auto file = GgufFile::fromMemory(std::as_bytes(std::span(out.bytes)), "tiny-bpe.gguf");
    if (file) {
        out.file = std::move(file.value());
    } else {
        qWarning("tiny vocabulary did not load: %s", file.error().message.c_str());
    }
    return out;
}

// Vocabulary for merge-order tests: a, b, c and "Ġ" (space), plus merge results. Kinds: Normal.
TinyVocab abcVocab(std::vector<std::string> merges)
{
    TinyVocab vocab;
    vocab.pieces = {"<|ctl|>", "a", "b", "c", "\xC4\xA0", "ab", "bc", "abc", "aa", "aaaa", "\xC4\xA0" "a"};
    vocab.kinds.assign(vocab.pieces.size(), static_cast<std::int32_t>(TokenKind::Normal));
    vocab.kinds[0] = static_cast<std::int32_t>(TokenKind::Control);
    vocab.merges = std::move(merges);
    return vocab;
}

Ids encodeWith(const TinyVocab &vocab, std::string_view text)
{
    MemoryVocab memory = writeVocab(vocab);
    if (!memory.file) {
        return {-100};
    }
    auto tokenizer = makeBpeTokenizer(*memory.file);
    if (!tokenizer) {
        qWarning("%s", tokenizer.error().message.c_str());
        return {-200};
    }
    return tokenizer.value()->encode(text);
}

} // namespace

class BpeTokenizerTest : public QObject
{
    Q_OBJECT

private slots:
    void initTestCase();

    // Pre-tokenizer
    void preTokenizerSplits_data();
    void preTokenizerSplits();
    void preTokenizerResolvesNames();
    void preTokenizerEmptyText();
    void preTokenizerInvalidUtf8KeepsBytes();
    void preTokenizerRandomBytesCoverInput();
    void preTokenizerLongRuns();

    // Synthetic vocabularies
    void mergesApplyByRank();
    void mergeTiesGoLeftmostFirst();
    void duplicatesKeepTheFirst();
    void wholeWordLookupOnlyForLlama3();
    void unspellableBytesAreSkipped();
    void mergeIntoControlTokenIsIgnored();
    void tokenBytesUndoesByteMapping();
    void missingMergesIsAnError();
    void malformedMergeIsAnError();
    void mergeWithUnknownPartsIsIgnored();
    void unknownPreFallsBackToGpt2();

    // SmolLM2
    void smollm2Loads();
    void smollm2EncodeMatchesReference_data();
    void smollm2EncodeMatchesReference();
    void smollm2ControlTextStaysText();
    void smollm2InvalidUtf8RoundTrips();
    void smollm2StreamingIsValidUtf8();
    void smollm2ConcurrentEncode();
    void smollm2LongWordIsFast();

private:
    bool haveSmollm2();

    std::unique_ptr<GgufFile> m_smolFile;
    std::unique_ptr<Tokenizer> m_smol;
    QString m_smolProblem; // why m_smol is null
    bool m_smolMissing = false;
};

void BpeTokenizerTest::initTestCase()
{
    const std::string path = kvchat::testing::smollm2Path();
    if (!std::filesystem::exists(path)) {
        m_smolMissing = true;
        m_smolProblem = QString::fromStdString("SmolLM2 GGUF not found at " + path
                                               + " (the fetch_smollm2 test fetches it; run ctest -L model)");
        return;
    }
    auto file = GgufFile::open(path);
    if (!file) {
        m_smolProblem = QString::fromStdString(file.error().message);
        return;
    }
    m_smolFile = std::move(file.value());
    auto tokenizer = makeBpeTokenizer(*m_smolFile);
    if (!tokenizer) {
        m_smolProblem = QString::fromStdString(tokenizer.error().message);
        return;
    }
    m_smol = std::move(tokenizer.value());
}

bool BpeTokenizerTest::haveSmollm2()
{
    return m_smol != nullptr;
}

#define REQUIRE_SMOLLM2()                                                                          \
    do {                                                                                           \
        if (m_smolMissing)                                                                         \
            QSKIP(qPrintable(m_smolProblem));                                                      \
        if (!haveSmollm2())                                                                        \
            QFAIL(qPrintable("SmolLM2 tokenizer failed to load: " + m_smolProblem));              \
    } while (false)

void BpeTokenizerTest::preTokenizerSplits_data()
{
    QTest::addColumn<QString>("pre");
    QTest::addColumn<std::string>("text");
    QTest::addColumn<Pieces>("expected");

    // Generated by tests/scripts/make_bpe_reference.py (HF tokenizers Split(..., "isolated") with
    // the tokenizer.json patterns, in sequence for smollm; identical to the Python regex module).
    // gpt2
    QTest::newRow("gpt2/0") << QString("gpt2") << std::string("Hello world") << Pieces{"Hello", " world"};
    QTest::newRow("gpt2/1") << QString("gpt2") << std::string("I'm here, you're there; they'll go. It's fine, we've done, I'd say") << Pieces{"I", "'m", " here", ",", " you", "'re", " there", ";", " they", "'ll", " go", ".", " It", "'s", " fine", ",", " we", "'ve", " done", ",", " I", "'d", " say"};
    QTest::newRow("gpt2/2") << QString("gpt2") << std::string("DON'T SHOUT, I'M FINE. WE'LL SEE") << Pieces{"DON", "'", "T", " SHOUT", ",", " I", "'", "M", " FINE", ".", " WE", "'", "LL", " SEE"};
    QTest::newRow("gpt2/3") << QString("gpt2") << std::string("12345") << Pieces{"12345"};
    QTest::newRow("gpt2/4") << QString("gpt2") << std::string("pi is 3.14159 and 1,000,000") << Pieces{"pi", " is", " 3", ".", "14159", " and", " 1", ",", "000", ",", "000"};
    QTest::newRow("gpt2/5") << QString("gpt2") << std::string("a  b   c") << Pieces{"a", " ", " b", "  ", " c"};
    QTest::newRow("gpt2/6") << QString("gpt2") << std::string("line1\n\nline2\n") << Pieces{"line", "1", "\n", "\n", "line", "2", "\n"};
    QTest::newRow("gpt2/7") << QString("gpt2") << std::string("\ttab\tseparated \t mixed") << Pieces{"\t", "tab", "\t", "separated", " \t", " mixed"};
    QTest::newRow("gpt2/8") << QString("gpt2") << std::string("trailing spaces   ") << Pieces{"trailing", " spaces", "   "};
    QTest::newRow("gpt2/9") << QString("gpt2") << std::string("   leading") << Pieces{"  ", " leading"};
    QTest::newRow("gpt2/10") << QString("gpt2") << std::string("日本語のテキスト、句読点。") << Pieces{"日本語のテキスト", "、", "句読点", "。"};
    QTest::newRow("gpt2/11") << QString("gpt2") << std::string("emoji 🦙🚀 test 👍🏽") << Pieces{"emoji", " 🦙🚀", " test", " 👍🏽"};
    QTest::newRow("gpt2/12") << QString("gpt2") << std::string("مرحبا بالعالم") << Pieces{"مرحبا", " بالعالم"};
    QTest::newRow("gpt2/13") << QString("gpt2") << std::string("café naïve résumé Ünïcödé") << Pieces{"café", " naïve", " résumé", " Ünïcödé"};
    QTest::newRow("gpt2/14") << QString("gpt2") << std::string("e\314\201 combining") << Pieces{"e", "\314\201", " combining"};
    QTest::newRow("gpt2/15") << QString("gpt2") << std::string("x\302\240y") << Pieces{"x", "\302\240", "y"};
    QTest::newRow("gpt2/16") << QString("gpt2") << std::string("½ ² Ⅻ ٣٤") << Pieces{"½", " ²", " Ⅻ", " ٣٤"};
    QTest::newRow("gpt2/17") << QString("gpt2") << std::string("if (x==1) {\r\n  return y;\r\n}") << Pieces{"if", " (", "x", "==", "1", ")", " {", "\r\n ", " return", " y", ";", "\r", "\n", "}"};
    QTest::newRow("gpt2/18") << QString("gpt2") << std::string("  \n  \n") << Pieces{"  \n  \n"};
    QTest::newRow("gpt2/19") << QString("gpt2") << std::string("hello!!! ...?") << Pieces{"hello", "!!!", " ...?"};
    QTest::newRow("gpt2/20") << QString("gpt2") << std::string("it'ſ K'S İ'LL") << Pieces{"it", "'", "ſ", " K", "'", "S", " İ", "'", "LL"};
    // llama-bpe
    QTest::newRow("llama-bpe/0") << QString("llama-bpe") << std::string("Hello world") << Pieces{"Hello", " world"};
    QTest::newRow("llama-bpe/1") << QString("llama-bpe") << std::string("I'm here, you're there; they'll go. It's fine, we've done, I'd say") << Pieces{"I", "'m", " here", ",", " you", "'re", " there", ";", " they", "'ll", " go", ".", " It", "'s", " fine", ",", " we", "'ve", " done", ",", " I", "'d", " say"};
    QTest::newRow("llama-bpe/2") << QString("llama-bpe") << std::string("DON'T SHOUT, I'M FINE. WE'LL SEE") << Pieces{"DON", "'T", " SHOUT", ",", " I", "'M", " FINE", ".", " WE", "'LL", " SEE"};
    QTest::newRow("llama-bpe/3") << QString("llama-bpe") << std::string("12345") << Pieces{"123", "45"};
    QTest::newRow("llama-bpe/4") << QString("llama-bpe") << std::string("pi is 3.14159 and 1,000,000") << Pieces{"pi", " is", " ", "3", ".", "141", "59", " and", " ", "1", ",", "000", ",", "000"};
    QTest::newRow("llama-bpe/5") << QString("llama-bpe") << std::string("a  b   c") << Pieces{"a", " ", " b", "  ", " c"};
    QTest::newRow("llama-bpe/6") << QString("llama-bpe") << std::string("line1\n\nline2\n") << Pieces{"line", "1", "\n\n", "line", "2", "\n"};
    QTest::newRow("llama-bpe/7") << QString("llama-bpe") << std::string("\ttab\tseparated \t mixed") << Pieces{"\ttab", "\tseparated", " \t", " mixed"};
    QTest::newRow("llama-bpe/8") << QString("llama-bpe") << std::string("trailing spaces   ") << Pieces{"trailing", " spaces", "   "};
    QTest::newRow("llama-bpe/9") << QString("llama-bpe") << std::string("   leading") << Pieces{"  ", " leading"};
    QTest::newRow("llama-bpe/10") << QString("llama-bpe") << std::string("日本語のテキスト、句読点。") << Pieces{"日本語のテキスト", "、句読点", "。"};
    QTest::newRow("llama-bpe/11") << QString("llama-bpe") << std::string("emoji 🦙🚀 test 👍🏽") << Pieces{"emoji", " 🦙🚀", " test", " 👍🏽"};
    QTest::newRow("llama-bpe/12") << QString("llama-bpe") << std::string("مرحبا بالعالم") << Pieces{"مرحبا", " بالعالم"};
    QTest::newRow("llama-bpe/13") << QString("llama-bpe") << std::string("café naïve résumé Ünïcödé") << Pieces{"café", " naïve", " résumé", " Ünïcödé"};
    QTest::newRow("llama-bpe/14") << QString("llama-bpe") << std::string("e\314\201 combining") << Pieces{"e", "\314\201", " combining"};
    QTest::newRow("llama-bpe/15") << QString("llama-bpe") << std::string("x\302\240y") << Pieces{"x", "\302\240y"};
    QTest::newRow("llama-bpe/16") << QString("llama-bpe") << std::string("½ ² Ⅻ ٣٤") << Pieces{"½", " ", "²", " ", "Ⅻ", " ", "٣٤"};
    QTest::newRow("llama-bpe/17") << QString("llama-bpe") << std::string("if (x==1) {\r\n  return y;\r\n}") << Pieces{"if", " (", "x", "==", "1", ")", " {\r\n", " ", " return", " y", ";\r\n", "}"};
    QTest::newRow("llama-bpe/18") << QString("llama-bpe") << std::string("  \n  \n") << Pieces{"  \n  \n"};
    QTest::newRow("llama-bpe/19") << QString("llama-bpe") << std::string("hello!!! ...?") << Pieces{"hello", "!!!", " ...?"};
    QTest::newRow("llama-bpe/20") << QString("llama-bpe") << std::string("it'ſ K'S İ'LL") << Pieces{"it", "'ſ", " K", "'S", " İ", "'LL"};
    // smollm
    QTest::newRow("smollm/0") << QString("smollm") << std::string("Hello world") << Pieces{"Hello", " world"};
    QTest::newRow("smollm/1") << QString("smollm") << std::string("I'm here, you're there; they'll go. It's fine, we've done, I'd say") << Pieces{"I", "'m", " here", ",", " you", "'re", " there", ";", " they", "'ll", " go", ".", " It", "'s", " fine", ",", " we", "'ve", " done", ",", " I", "'d", " say"};
    QTest::newRow("smollm/2") << QString("smollm") << std::string("DON'T SHOUT, I'M FINE. WE'LL SEE") << Pieces{"DON", "'", "T", " SHOUT", ",", " I", "'", "M", " FINE", ".", " WE", "'", "LL", " SEE"};
    QTest::newRow("smollm/3") << QString("smollm") << std::string("12345") << Pieces{"1", "2", "3", "4", "5"};
    QTest::newRow("smollm/4") << QString("smollm") << std::string("pi is 3.14159 and 1,000,000") << Pieces{"pi", " is", " ", "3", ".", "1", "4", "1", "5", "9", " and", " ", "1", ",", "0", "0", "0", ",", "0", "0", "0"};
    QTest::newRow("smollm/5") << QString("smollm") << std::string("a  b   c") << Pieces{"a", " ", " b", "  ", " c"};
    QTest::newRow("smollm/6") << QString("smollm") << std::string("line1\n\nline2\n") << Pieces{"line", "1", "\n", "\n", "line", "2", "\n"};
    QTest::newRow("smollm/7") << QString("smollm") << std::string("\ttab\tseparated \t mixed") << Pieces{"\t", "tab", "\t", "separated", " \t", " mixed"};
    QTest::newRow("smollm/8") << QString("smollm") << std::string("trailing spaces   ") << Pieces{"trailing", " spaces", "   "};
    QTest::newRow("smollm/9") << QString("smollm") << std::string("   leading") << Pieces{"  ", " leading"};
    QTest::newRow("smollm/10") << QString("smollm") << std::string("日本語のテキスト、句読点。") << Pieces{"日本語のテキスト", "、", "句読点", "。"};
    QTest::newRow("smollm/11") << QString("smollm") << std::string("emoji 🦙🚀 test 👍🏽") << Pieces{"emoji", " 🦙🚀", " test", " 👍🏽"};
    QTest::newRow("smollm/12") << QString("smollm") << std::string("مرحبا بالعالم") << Pieces{"مرحبا", " بالعالم"};
    QTest::newRow("smollm/13") << QString("smollm") << std::string("café naïve résumé Ünïcödé") << Pieces{"café", " naïve", " résumé", " Ünïcödé"};
    QTest::newRow("smollm/14") << QString("smollm") << std::string("e\314\201 combining") << Pieces{"e", "\314\201", " combining"};
    QTest::newRow("smollm/15") << QString("smollm") << std::string("x\302\240y") << Pieces{"x", "\302\240", "y"};
    QTest::newRow("smollm/16") << QString("smollm") << std::string("½ ² Ⅻ ٣٤") << Pieces{"½", " ", "²", " ", "Ⅻ", " ", "٣", "٤"};
    QTest::newRow("smollm/17") << QString("smollm") << std::string("if (x==1) {\r\n  return y;\r\n}") << Pieces{"if", " (", "x", "==", "1", ")", " {", "\r\n ", " return", " y", ";", "\r", "\n", "}"};
    QTest::newRow("smollm/18") << QString("smollm") << std::string("  \n  \n") << Pieces{"  \n  \n"};
    QTest::newRow("smollm/19") << QString("smollm") << std::string("hello!!! ...?") << Pieces{"hello", "!!!", " ...?"};
    QTest::newRow("smollm/20") << QString("smollm") << std::string("it'ſ K'S İ'LL") << Pieces{"it", "'", "ſ", " K", "'", "S", " İ", "'", "LL"};
    // qwen2
    QTest::newRow("qwen2/0") << QString("qwen2") << std::string("Hello world") << Pieces{"Hello", " world"};
    QTest::newRow("qwen2/1") << QString("qwen2") << std::string("I'm here, you're there; they'll go. It's fine, we've done, I'd say") << Pieces{"I", "'m", " here", ",", " you", "'re", " there", ";", " they", "'ll", " go", ".", " It", "'s", " fine", ",", " we", "'ve", " done", ",", " I", "'d", " say"};
    QTest::newRow("qwen2/2") << QString("qwen2") << std::string("DON'T SHOUT, I'M FINE. WE'LL SEE") << Pieces{"DON", "'T", " SHOUT", ",", " I", "'M", " FINE", ".", " WE", "'LL", " SEE"};
    QTest::newRow("qwen2/3") << QString("qwen2") << std::string("12345") << Pieces{"1", "2", "3", "4", "5"};
    QTest::newRow("qwen2/4") << QString("qwen2") << std::string("pi is 3.14159 and 1,000,000") << Pieces{"pi", " is", " ", "3", ".", "1", "4", "1", "5", "9", " and", " ", "1", ",", "0", "0", "0", ",", "0", "0", "0"};
    QTest::newRow("qwen2/5") << QString("qwen2") << std::string("a  b   c") << Pieces{"a", " ", " b", "  ", " c"};
    QTest::newRow("qwen2/6") << QString("qwen2") << std::string("line1\n\nline2\n") << Pieces{"line", "1", "\n\n", "line", "2", "\n"};
    QTest::newRow("qwen2/7") << QString("qwen2") << std::string("\ttab\tseparated \t mixed") << Pieces{"\ttab", "\tseparated", " \t", " mixed"};
    QTest::newRow("qwen2/8") << QString("qwen2") << std::string("trailing spaces   ") << Pieces{"trailing", " spaces", "   "};
    QTest::newRow("qwen2/9") << QString("qwen2") << std::string("   leading") << Pieces{"  ", " leading"};
    QTest::newRow("qwen2/10") << QString("qwen2") << std::string("日本語のテキスト、句読点。") << Pieces{"日本語のテキスト", "、句読点", "。"};
    QTest::newRow("qwen2/11") << QString("qwen2") << std::string("emoji 🦙🚀 test 👍🏽") << Pieces{"emoji", " 🦙🚀", " test", " 👍🏽"};
    QTest::newRow("qwen2/12") << QString("qwen2") << std::string("مرحبا بالعالم") << Pieces{"مرحبا", " بالعالم"};
    QTest::newRow("qwen2/13") << QString("qwen2") << std::string("café naïve résumé Ünïcödé") << Pieces{"café", " naïve", " résumé", " Ünïcödé"};
    QTest::newRow("qwen2/14") << QString("qwen2") << std::string("e\314\201 combining") << Pieces{"e", "\314\201", " combining"};
    QTest::newRow("qwen2/15") << QString("qwen2") << std::string("x\302\240y") << Pieces{"x", "\302\240y"};
    QTest::newRow("qwen2/16") << QString("qwen2") << std::string("½ ² Ⅻ ٣٤") << Pieces{"½", " ", "²", " ", "Ⅻ", " ", "٣", "٤"};
    QTest::newRow("qwen2/17") << QString("qwen2") << std::string("if (x==1) {\r\n  return y;\r\n}") << Pieces{"if", " (", "x", "==", "1", ")", " {\r\n", " ", " return", " y", ";\r\n", "}"};
    QTest::newRow("qwen2/18") << QString("qwen2") << std::string("  \n  \n") << Pieces{"  \n  \n"};
    QTest::newRow("qwen2/19") << QString("qwen2") << std::string("hello!!! ...?") << Pieces{"hello", "!!!", " ...?"};
    QTest::newRow("qwen2/20") << QString("qwen2") << std::string("it'ſ K'S İ'LL") << Pieces{"it", "'ſ", " K", "'S", " İ", "'LL"};
}

void BpeTokenizerTest::preTokenizerSplits()
{
    QFETCH(QString, pre);
    QFETCH(std::string, text);
    QFETCH(Pieces, expected);

    auto preTokenizer = BpePreTokenizer::create(pre.toStdString());
    QVERIFY2(preTokenizer.ok(), preTokenizer.ok() ? "" : preTokenizer.error().message.c_str());
    QCOMPARE(preTokenizer.value()->name(), pre.toStdString());
    QVERIFY(!preTokenizer.value()->isFallback());
    QCOMPARE(toPieces(preTokenizer.value()->split(text)), expected);
}

void BpeTokenizerTest::preTokenizerResolvesNames()
{
    QCOMPARE(BpePreTokenizer::resolve("smollm").name, std::string("smollm"));
    QCOMPARE(BpePreTokenizer::resolve("qwen2").name, std::string("qwen2"));
    QCOMPARE(BpePreTokenizer::resolve("gpt-2").name, std::string("gpt2"));
    QCOMPARE(BpePreTokenizer::resolve("llama3").name, std::string("llama-bpe"));
    QVERIFY(BpePreTokenizer::resolve("llama-bpe").ignoreMerges);
    QVERIFY(!BpePreTokenizer::resolve("smollm").ignoreMerges);
    // A missing key means the GPT-2 rules, and is not reported as a fallback.
    QCOMPARE(BpePreTokenizer::resolve("").name, std::string("gpt2"));
    QVERIFY(!BpePreTokenizer::resolve("").isFallback);

    auto unknown = BpePreTokenizer::create("no-such-pre");
    QVERIFY(unknown.ok());
    QCOMPARE(unknown.value()->name(), std::string("gpt2"));
    QCOMPARE(unknown.value()->requestedName(), std::string("no-such-pre"));
    QVERIFY(unknown.value()->isFallback());
}

void BpeTokenizerTest::preTokenizerEmptyText()
{
    for (const char *name : {"gpt2", "llama-bpe", "smollm", "qwen2"}) {
        auto pre = BpePreTokenizer::create(name);
        QVERIFY(pre.ok());
        QVERIFY(pre.value()->split("").empty());
    }
}

void BpeTokenizerTest::preTokenizerInvalidUtf8KeepsBytes()
{
    auto pre = BpePreTokenizer::create("gpt2");
    QVERIFY(pre.ok());
    // Stray bytes act like U+FFFD (a symbol): they group like punctuation, and the fragments keep
    // the original bytes.
    QCOMPARE(toPieces(pre.value()->split("abc\xFF\xFE def\xC3")), (Pieces{"abc", "\xFF\xFE", " def", "\xC3"}));
    // Overlong "/", a UTF-16 surrogate and a truncated 4-byte sequence before a letter.
    QCOMPARE(toPieces(pre.value()->split("x\xC0\xAFy \xED\xA0\x80z \xF0\x9F\x98w")),
             (Pieces{"x", "\xC0\xAF", "y", " \xED\xA0\x80", "z", " \xF0\x9F\x98", "w"}));
    QVERIFY(isValidUtf8("h\xC3\xA9llo \xF0\x9F\xA6\x99"));
    QVERIFY(!isValidUtf8("\xC0\xAF"));
    QVERIFY(!isValidUtf8("\xED\xA0\x80"));
    QVERIFY(!isValidUtf8("\xF4\x90\x80\x80"));
    QVERIFY(!isValidUtf8("\xE2\x82"));
}

void BpeTokenizerTest::preTokenizerRandomBytesCoverInput()
{
    std::mt19937 rng(1234);
    // Bytes biased towards the interesting ones: ASCII letters/digits/space/newline/quote and the
    // lead and continuation bytes of multi-byte sequences.
    const std::string alphabet = "aZ9 \n\t'.\x80\xBF\xC3\xA9\xE2\x82\xAC\xF0\x9F\xFF";
    for (const char *name : {"gpt2", "llama-bpe", "smollm", "qwen2"}) {
        auto pre = BpePreTokenizer::create(name);
        QVERIFY(pre.ok());
        for (int round = 0; round < 500; ++round) {
            std::string text;
            const int length = static_cast<int>(rng() % 40);
            for (int i = 0; i < length; ++i) {
                text.push_back(rng() % 4 == 0 ? static_cast<char>(rng() % 256) : alphabet[rng() % alphabet.size()]);
            }
            std::string joined;
            for (std::string_view fragment : pre.value()->split(text)) {
                QVERIFY(!fragment.empty());
                joined.append(fragment);
            }
            QCOMPARE(joined, text);
        }
    }
}

void BpeTokenizerTest::preTokenizerLongRuns()
{
    // Long runs stress backtracking (\s+(?!\S), \s*[\r\n]+) and the JIT stack.
    const std::string spaces(200000, ' ');
    const std::string text = "a" + spaces + "b" + std::string(100000, '\n') + std::string(100000, 'x');
    for (const char *name : {"gpt2", "llama-bpe", "smollm", "qwen2"}) {
        auto pre = BpePreTokenizer::create(name);
        QVERIFY(pre.ok());
        std::string joined;
        for (std::string_view fragment : pre.value()->split(text)) {
            joined.append(fragment);
        }
        QVERIFY(joined == text);
    }
    // And the runs are still split by the rules, not left as one piece by a hit matching limit.
    auto gpt2 = BpePreTokenizer::create("gpt2");
    QVERIFY(gpt2.ok());
    std::vector<std::size_t> sizes;
    for (std::string_view fragment : gpt2.value()->split(text)) {
        sizes.push_back(fragment.size());
    }
    QCOMPARE(sizes, (std::vector<std::size_t>{1, 199999, 2, 99999, 1, 100000}));
}

void BpeTokenizerTest::mergesApplyByRank()
{
    // Token ids: 1 a, 2 b, 3 c, 5 ab, 6 bc, 7 abc.
    QCOMPARE(encodeWith(abcVocab({"a b", "b c"}), "abc"), (Ids{5, 3}));
    QCOMPARE(encodeWith(abcVocab({"b c", "a b"}), "abc"), (Ids{1, 6}));
    QCOMPARE(encodeWith(abcVocab({"b c", "a b", "a bc"}), "abc"), (Ids{7}));
    QCOMPARE(encodeWith(abcVocab({"a b", "b c", "a bc"}), "abc"), (Ids{5, 3}));
    QCOMPARE(encodeWith(abcVocab({"a b", "b c", "ab c"}), "abc"), (Ids{7}));
    // Merges only act inside a word: " a" (10) is one word, "b" another.
    QCOMPARE(encodeWith(abcVocab({"\xC4\xA0 a", "a b"}), "ab ab"), (Ids{5, 10, 2}));
}

void BpeTokenizerTest::mergeTiesGoLeftmostFirst()
{
    // 8 aa, 9 aaaa
    QCOMPARE(encodeWith(abcVocab({"a a"}), "aaa"), (Ids{8, 1}));
    QCOMPARE(encodeWith(abcVocab({"a a"}), "aaaaa"), (Ids{8, 8, 1}));
    QCOMPARE(encodeWith(abcVocab({"a a", "aa aa"}), "aaaaa"), (Ids{9, 1}));
}

void BpeTokenizerTest::duplicatesKeepTheFirst()
{
    // A piece listed twice maps to its first id (llama.cpp's token_to_id): 11 is a second "ab".
    TinyVocab vocab = abcVocab({"a b"});
    vocab.pieces.push_back("ab");
    vocab.kinds.push_back(static_cast<std::int32_t>(TokenKind::Normal));
    QCOMPARE(encodeWith(vocab, "ab"), (Ids{5}));
    // A merge listed twice keeps its first (lowest) rank: "b c" at rank 0 still beats "a b".
    QCOMPARE(encodeWith(abcVocab({"b c", "a b", "b c"}), "abc"), (Ids{1, 6}));
    QCOMPARE(encodeWith(abcVocab({"a b", "b c", "a b"}), "abc"), (Ids{5, 3}));
}

void BpeTokenizerTest::wholeWordLookupOnlyForLlama3()
{
    // "abc" (7) is a token the merges cannot build. HF's BPE with ignore_merges (Llama 3's
    // tokenizer.json, llama.cpp's llama-bpe) takes the word whole; other vocabularies merge.
    TinyVocab vocab = abcVocab({"a b"});
    QCOMPARE(encodeWith(vocab, "abc"), (Ids{5, 3}));
    vocab.pre = "llama-bpe";
    QCOMPARE(encodeWith(vocab, "abc"), (Ids{7}));
    // A word that is not itself a token still goes through the merges.
    QCOMPARE(encodeWith(vocab, "abcab"), (Ids{5, 3, 5}));
}

void BpeTokenizerTest::unspellableBytesAreSkipped()
{
    // The tiny vocabulary has no token for the bytes of "é" (C3 A9): like HF's BPE without an
    // unk_token they are left out, and "a" and "b" around them still merge.
    QCOMPARE(encodeWith(abcVocab({"a b"}), "a\xC3\xA9" "b"), (Ids{5}));
    // With an unknown token in the vocabulary, each such byte becomes it (and blocks the merge).
    TinyVocab vocab = abcVocab({"a b"});
    vocab.pieces.push_back("<unk>");
    vocab.kinds.push_back(static_cast<std::int32_t>(TokenKind::Unknown));
    QCOMPARE(encodeWith(vocab, "a\xC3\xA9" "b"), (Ids{1, 11, 11, 2}));
}

void BpeTokenizerTest::mergeIntoControlTokenIsIgnored()
{
    TinyVocab vocab = abcVocab({"a b"});
    vocab.kinds[5] = static_cast<std::int32_t>(TokenKind::Control); // "ab" is now a control token
    QCOMPARE(encodeWith(vocab, "ab"), (Ids{1, 2}));
    // Nor is a word that spells a control token taken whole (Llama 3's whole-word lookup).
    vocab.pre = "llama-bpe";
    QCOMPARE(encodeWith(vocab, "ab"), (Ids{1, 2}));
}

void BpeTokenizerTest::tokenBytesUndoesByteMapping()
{
    TinyVocab vocab = abcVocab({});
    vocab.pieces.push_back("\xC4\x8A");        // 11: "Ċ" is byte 0x0A
    vocab.pieces.push_back("\xC3\xA9");        // 12: "é" is byte 0xE9 (a lone Latin-1 byte)
    vocab.pieces.push_back("<tool>");          // 13: user-defined, stored as plain text
    vocab.kinds.push_back(static_cast<std::int32_t>(TokenKind::Normal));
    vocab.kinds.push_back(static_cast<std::int32_t>(TokenKind::Normal));
    vocab.kinds.push_back(static_cast<std::int32_t>(TokenKind::UserDefined));
    MemoryVocab memory = writeVocab(vocab);
    QVERIFY(memory.file);
    auto tokenizer = makeBpeTokenizer(*memory.file);
    QVERIFY2(tokenizer.ok(), tokenizer.ok() ? "" : tokenizer.error().message.c_str());
    const Tokenizer &tok = *tokenizer.value();
    QCOMPARE(tok.kind(), VocabKind::Bpe);
    QCOMPARE(tok.tokenBytes(0), std::string());     // control
    QCOMPARE(tok.tokenBytes(10), std::string(" a"));
    QCOMPARE(tok.tokenBytes(11), std::string("\n"));
    QCOMPARE(tok.tokenBytes(12), std::string("\xE9"));
    QCOMPARE(tok.tokenBytes(13), std::string("<tool>"));
    QCOMPARE(tok.specialToken("<|ctl|>"), std::optional<TokenId>(0));
}

void BpeTokenizerTest::missingMergesIsAnError()
{
    TinyVocab vocab = abcVocab({});
    vocab.withMerges = false;
    MemoryVocab memory = writeVocab(vocab);
    QVERIFY(memory.file);
    auto tokenizer = makeBpeTokenizer(*memory.file);
    QVERIFY(!tokenizer.ok());
    QVERIFY2(tokenizer.error().message.find("tokenizer.ggml.merges") != std::string::npos,
             tokenizer.error().message.c_str());
    QVERIFY2(tokenizer.error().message.find("tiny-bpe.gguf") != std::string::npos, tokenizer.error().message.c_str());
}

void BpeTokenizerTest::malformedMergeIsAnError()
{
    MemoryVocab memory = writeVocab(abcVocab({"a b", "abc"}));
    QVERIFY(memory.file);
    auto tokenizer = makeBpeTokenizer(*memory.file);
    QVERIFY(!tokenizer.ok());
    QVERIFY2(tokenizer.error().message.find("tokenizer.ggml.merges[1]") != std::string::npos,
             tokenizer.error().message.c_str());
    QVERIFY2(tokenizer.error().message.find("'abc'") != std::string::npos, tokenizer.error().message.c_str());

    MemoryVocab trailing = writeVocab(abcVocab({"a "}));
    QVERIFY(trailing.file);
    QVERIFY(!makeBpeTokenizer(*trailing.file).ok());
}

void BpeTokenizerTest::mergeWithUnknownPartsIsIgnored()
{
    // "x y" names pieces the vocabulary lacks, "b a" a result it lacks: both are skipped, the
    // rest of the merges still work.
    QCOMPARE(encodeWith(abcVocab({"x y", "b a", "a b"}), "abab"), (Ids{5, 5}));
}

void BpeTokenizerTest::unknownPreFallsBackToGpt2()
{
    TinyVocab vocab = abcVocab({"a b"});
    vocab.pre = "some-future-model";
    QCOMPARE(encodeWith(vocab, "ab ab"), (Ids{5, 4, 5}));
}

void BpeTokenizerTest::smollm2Loads()
{
    REQUIRE_SMOLLM2();
    QCOMPARE(m_smol->kind(), VocabKind::Bpe);
    QCOMPARE(m_smol->vocabSize(), 49152);
    auto pre = m_smolFile->getString("tokenizer.ggml.pre");
    QVERIFY(pre.ok() && pre->has_value());
    QCOMPARE(BpePreTokenizer::resolve(**pre).name, std::string("smollm"));
    QVERIFY(m_smol->encode("").empty());
}

void BpeTokenizerTest::smollm2EncodeMatchesReference_data()
{
    QTest::addColumn<std::string>("text");
    QTest::addColumn<Ids>("expected");
    QTest::addColumn<bool>("lossless"); // false: the text has bytes the vocabulary cannot spell

    // Generated by tests/scripts/make_bpe_reference.py: HF tokenizers BPE built from the GGUF's
    // tokens and merges, pre-tokenized by Split(\p{N}, isolated) + ByteLevel (SmolLM2's
    // tokenizer.json has Digits(individual_digits) + ByteLevel, checked to split the same).
    QTest::newRow("smollm2/0") << std::string("Hello, world!") << Ids{19556, 28, 905, 17} << true;
    QTest::newRow("smollm2/1") << std::string("The quick brown fox jumps over the lazy dog.") << Ids{504, 2365, 6354, 16438, 27003, 690, 260, 23790, 2767, 30} << true;
    QTest::newRow("smollm2/2") << std::string("I'm here; DON'T panic, it's fine.") << Ids{57, 5248, 1535, 43, 422, 2154, 23, 68, 14455, 28, 357, 506, 4979, 30} << true;
    QTest::newRow("smollm2/3") << std::string("12345 + 678 = 13023") << Ids{33, 34, 35, 36, 37, 1232, 216, 38, 39, 40, 446, 216, 33, 35, 32, 34, 35} << true;
    QTest::newRow("smollm2/4") << std::string("  multiple   spaces  ") << Ids{216, 2701, 256, 5600, 256} << true;
    QTest::newRow("smollm2/5") << std::string("line1\n\nline2\n") << Ids{1311, 33, 198, 198, 1311, 34, 198} << true;
    QTest::newRow("smollm2/6") << std::string("\ttabs\tand spaces") << Ids{197, 100, 7366, 197, 397, 5600} << true;
    QTest::newRow("smollm2/7") << std::string("日本語のテキスト、句読点。") << Ids{23274, 115, 40993, 179, 120, 248, 26453, 11100, 224, 10391, 251, 10391, 134, 11100, 226, 29917, 12034, 115, 179, 120, 251, 44083, 19076} << true;
    QTest::newRow("smollm2/8") << std::string("emoji 🦙🚀 test 👍🏽") << Ids{391, 33777, 15107, 116, 243, 10813, 244, 218, 1028, 15107, 235, 231, 10813, 233, 138} << true;
    QTest::newRow("smollm2/9") << std::string("مرحبا بالعالم") << Ids{21706, 20602, 44626, 31462, 10805, 45726, 22208, 34966, 22208, 21706} << true;
    QTest::newRow("smollm2/10") << std::string("café naïve résumé Ünïcödé") << Ids{83, 1939, 2756, 15486, 46494, 412, 2756, 5422, 2756, 5549, 246, 94, 25972, 83, 7466, 84, 2756} << true;
    QTest::newRow("smollm2/11") << std::string("<|im_start|>user\nHi<|im_end|>") << Ids{44, 108, 306, 79, 3738, 108, 46, 4093, 198, 26843, 44, 108, 306, 79, 486, 108, 46} << true;
    QTest::newRow("smollm2/12") << std::string("def f(x):\n    return x ** 2\n") << Ids{1604, 275, 24, 104, 727, 472, 1003, 1792, 1903, 216, 34, 198} << true;
    QTest::newRow("smollm2/13") << std::string("https://example.com/path?q=1&r=2") << Ids{4687, 1742, 7434, 30, 824, 31, 1537, 47, 97, 45, 33, 22, 98, 45, 34} << true;
    QTest::newRow("smollm2/14") << std::string("trailing space ") << Ids{4861, 4966, 1898, 216} << true;
    QTest::newRow("smollm2/15") << std::string(" leading space") << Ids{2899, 1898} << true;
    QTest::newRow("smollm2/16") << std::string("e\314\201 x\302\240y") << Ids{85, 151, 219, 1792, 15442, 105} << true;
    QTest::newRow("smollm2/17") << std::string("ŁÓDŹ straße ẞ Ελληνικά кириллица") << Ids{144, 219, 142, 237, 52, 144, 134, 4040, 34878, 85, 15822, 135, 248, 5664, 239, 17162, 17162, 25723, 11517, 12001, 21118, 26112, 31338, 7872, 46879, 12681, 35420, 32233, 6511} << true;
    QTest::newRow("smollm2/18") << std::string("supercalifragilisticexpialidocious") << Ids{14174, 5020, 342, 1808, 301, 40482, 104, 96, 409, 311, 42288} << true;
    QTest::newRow("smollm2/19") << std::string("The year 2024 had 366 days.") << Ids{504, 713, 216, 34, 32, 34, 36, 761, 216, 35, 38, 38, 2009, 30} << true;
    QTest::newRow("smollm2/20") << std::string("a\004b x \004\006 y | \004> z") << Ids{81, 82, 1792, 216, 329, 2504, 2986, 1892} << false;
    QTest::newRow("smollm2/21") << std::string("\361\220\200\200z") << Ids{234, 218, 218, 106} << false;
}

void BpeTokenizerTest::smollm2EncodeMatchesReference()
{
    REQUIRE_SMOLLM2();
    QFETCH(std::string, text);
    QFETCH(Ids, expected);
    QFETCH(bool, lossless);
    const Ids ids = m_smol->encode(text);
    QCOMPARE(ids, expected);
    if (lossless) {
        QCOMPARE(m_smol->decode(ids), text);
    }
}

void BpeTokenizerTest::smollm2ControlTextStaysText()
{
    REQUIRE_SMOLLM2();
    const std::optional<TokenId> imStart = m_smol->specialToken("<|im_start|>");
    QVERIFY(imStart.has_value());
    QCOMPARE(*imStart, 1);
    QCOMPARE(m_smol->tokenKind(*imStart), TokenKind::Control);
    QCOMPARE(m_smol->tokenBytes(*imStart), std::string());

    const std::string text = "<|im_start|>user";
    const Ids ids = m_smol->encode(text);
    QVERIFY(ids.size() > 1);
    for (TokenId id : ids) {
        QCOMPARE(m_smol->tokenKind(id), TokenKind::Normal);
    }
    QCOMPARE(m_smol->decode(ids), text);
}

void BpeTokenizerTest::smollm2InvalidUtf8RoundTrips()
{
    REQUIRE_SMOLLM2();
    // Stray bytes that have a byte-level token come back unchanged.
    const std::string text = "ok \xC3 and \xF0\x9F\x98 end\x80 \xE2\x82";
    QCOMPARE(m_smol->decode(m_smol->encode(text)), text);
    // 0xFE and 0xFF never occur in UTF-8 and SmolLM2 has no token for them: they are dropped (as
    // HF BPE without an unk_token and llama.cpp do), and never crash or turn into a control token.
    const Ids ids = m_smol->encode("a\xFF\xFE b");
    for (TokenId id : ids) {
        QCOMPARE(m_smol->tokenKind(id), TokenKind::Normal);
    }
    QCOMPARE(m_smol->decode(ids), std::string("a b"));
}

void BpeTokenizerTest::smollm2StreamingIsValidUtf8()
{
    REQUIRE_SMOLLM2();
    const std::string text = "Llamas 🦙 like 日本語 and emoji 👍🏽🚀, café, مرحبا!\n";
    const Ids ids = m_smol->encode(text);
    TextStream stream(*m_smol);
    std::string streamed;
    int nMultiByteSplits = 0;
    for (TokenId id : ids) {
        const std::string chunk = stream.push(id);
        QVERIFY2(isValidUtf8ByQt(chunk), ("broken UTF-8 chunk after token " + std::to_string(id)).c_str());
        if (!isValidUtf8ByQt(m_smol->tokenBytes(id))) {
            ++nMultiByteSplits; // this token alone is part of a character: the stream must hold it
        }
        streamed += chunk;
    }
    streamed += stream.finish();
    QCOMPARE(streamed, text);
    QVERIFY2(nMultiByteSplits > 0, "the text should exercise tokens that split a character");
}

void BpeTokenizerTest::smollm2ConcurrentEncode()
{
    REQUIRE_SMOLLM2();
    const std::string text = "Concurrent encoding 123 of the same text, 日本語 🦙, must agree. ";
    std::string longText;
    for (int i = 0; i < 50; ++i) {
        longText += text;
    }
    const Ids expected = m_smol->encode(longText);
    std::vector<Ids> results(8);
    std::vector<std::thread> threads;
    for (std::size_t t = 0; t < results.size(); ++t) {
        threads.emplace_back([&, t] {
            for (int round = 0; round < 20; ++round) {
                results[t] = m_smol->encode(longText);
            }
        });
    }
    for (std::thread &thread : threads) {
        thread.join();
    }
    for (const Ids &ids : results) {
        QCOMPARE(ids, expected);
    }
}

void BpeTokenizerTest::smollm2LongWordIsFast()
{
    REQUIRE_SMOLLM2();
    // One 200k-letter word: a cubic or quadratic merge loop would take minutes.
    std::string word;
    for (int i = 0; i < 20000; ++i) {
        word += "abcdefghij";
    }
    const auto start = std::chrono::steady_clock::now();
    const Ids ids = m_smol->encode(word);
    const auto elapsed = std::chrono::steady_clock::now() - start;
    QCOMPARE(m_smol->decode(ids), word);
    QVERIFY2(elapsed < std::chrono::seconds(5),
             ("encoding took " + std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count())
              + " ms").c_str());
}

QTEST_GUILESS_MAIN(BpeTokenizerTest)
#include "bpe_tokenizer_test.moc"
