// SPDX-License-Identifier: MIT
#include "engine/model/tokenizer.h"

#include "engine/model/gguf_file.h"

#include <algorithm>
#include <cstring>

namespace kvchat::engine {

namespace {

// Control pieces that end an assistant turn in the chat formats we support. A vocabulary that has
// one of them as a control token stops generation there, as llama.cpp's end-of-generation set does.
constexpr std::string_view kEndOfTurnPieces[] = {
    "<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<end_of_turn>", "<|endoftext|>", "<|end|>", "</s>",
};

Result<std::optional<TokenId>> readTokenId(const GgufFile &file, std::string_view key, std::size_t vocabSize)
{
    auto value = file.getUInt(key);
    if (!value)
        return value.error();
    if (!value->has_value())
        return std::optional<TokenId>{};
    const std::uint64_t id = **value;
    if (id >= vocabSize) {
        // Some converters write -1 (as unsigned) for "none"; anything else out of range is corrupt.
        if (id == 0xFFFFFFFFull || id == ~0ull)
            return std::optional<TokenId>{};
        return makeError(file.path() + ": " + std::string(key) + " = " + std::to_string(id) +
                         " is outside the vocabulary (" + std::to_string(vocabSize) + " tokens)");
    }
    return std::optional<TokenId>{static_cast<TokenId>(id)};
}

} // namespace

Result<std::unique_ptr<Tokenizer>> Tokenizer::fromGguf(const GgufFile &file)
{
    auto model = file.getString("tokenizer.ggml.model");
    if (!model)
        return model.error();
    if (!model->has_value())
        return makeError(file.path() + ": no tokenizer (tokenizer.ggml.model is missing)");
    const std::string_view name = **model;
    if (name == "llama")
        return makeSpmTokenizer(file);
    if (name == "gpt2")
        return makeBpeTokenizer(file);
    return makeError(file.path() + ": tokenizer.ggml.model '" + std::string(name) +
                     "' is not supported (supported: llama (sentencepiece), gpt2 (byte-level BPE))");
}

Result<void> Tokenizer::loadCommon(const GgufFile &file)
{
    const GgufKv *tokens = file.find("tokenizer.ggml.tokens");
    if (!tokens || tokens->type != GgufValueType::Array || tokens->elementType != GgufValueType::String)
        return makeError(file.path() + ": tokenizer.ggml.tokens is missing or not an array of strings");
    if (tokens->strings.empty())
        return makeError(file.path() + ": tokenizer.ggml.tokens is empty");
    if (tokens->strings.size() > 0x7fffffff)
        return makeError(file.path() + ": tokenizer.ggml.tokens has too many entries");
    std::size_t textBytes = 0;
    for (std::string_view piece : tokens->strings)
        textBytes += piece.size();
    if (textBytes > StringTable::maxTextBytes())
        return makeError(file.path() + ": tokenizer.ggml.tokens holds more than 4 GiB of text");
    m_pieces.reserve(static_cast<std::size_t>(tokens->strings.size()), textBytes);
    for (std::string_view piece : tokens->strings)
        m_pieces.append(piece);

    m_kinds.assign(m_pieces.size(), TokenKind::Normal);
    if (const GgufKv *types = file.find("tokenizer.ggml.token_type")) {
        if (types->type != GgufValueType::Array ||
            (types->elementType != GgufValueType::Int32 && types->elementType != GgufValueType::UInt32))
            return makeError(file.path() + ": tokenizer.ggml.token_type is not an array of 32-bit integers");
        if (types->count != m_pieces.size())
            return makeError(file.path() + ": tokenizer.ggml.token_type has " + std::to_string(types->count) +
                             " entries for " + std::to_string(m_pieces.size()) + " tokens");
        for (std::size_t i = 0; i < m_pieces.size(); ++i) {
            std::int32_t kind = 0;
            std::memcpy(&kind, types->raw + i * 4, 4);
            if (kind < 0 || kind > 6)
                return makeError(file.path() + ": token " + std::to_string(i) + " has unknown token type " +
                                 std::to_string(kind));
            m_kinds[i] = static_cast<TokenKind>(kind);
        }
    }

    for (auto [key, slot] : {std::pair{"tokenizer.ggml.bos_token_id", &m_bos},
                             std::pair{"tokenizer.ggml.eos_token_id", &m_eos},
                             std::pair{"tokenizer.ggml.eot_token_id", &m_eot}}) {
        auto id = readTokenId(file, key, m_pieces.size());
        if (!id)
            return id.error();
        *slot = *id;
    }
    auto addBos = file.getBool("tokenizer.ggml.add_bos_token");
    if (!addBos)
        return addBos.error();
    // Without the key, llama.cpp adds BOS for sentencepiece vocabularies and not for BPE ones.
    m_addBos = addBos->value_or(kind() == VocabKind::Spm) && m_bos.has_value();

    for (std::optional<TokenId> id : {m_eos, m_eot})
        if (id)
            m_endOfGeneration.push_back(*id);
    for (std::string_view piece : kEndOfTurnPieces)
        if (auto id = specialToken(piece))
            m_endOfGeneration.push_back(*id);
    std::sort(m_endOfGeneration.begin(), m_endOfGeneration.end());
    m_endOfGeneration.erase(std::unique(m_endOfGeneration.begin(), m_endOfGeneration.end()), m_endOfGeneration.end());
    return {};
}

std::optional<TokenId> Tokenizer::specialToken(std::string_view piece) const
{
    // Linear, but only called while rendering templates (a handful of lookups per turn).
    for (std::size_t i = 0; i < m_pieces.size(); ++i) {
        if (m_kinds[i] != TokenKind::Control && m_kinds[i] != TokenKind::UserDefined)
            continue;
        if (m_pieces[i] == piece)
            return static_cast<TokenId>(i);
    }
    return std::nullopt;
}

bool Tokenizer::isEndOfGeneration(TokenId id) const
{
    return std::binary_search(m_endOfGeneration.begin(), m_endOfGeneration.end(), id);
}

std::string Tokenizer::decode(const std::vector<TokenId> &ids) const
{
    std::string out;
    for (TokenId id : ids)
        out += tokenBytes(id);
    return out;
}

namespace {

// Length of the UTF-8 sequence a lead byte starts (1-4), or 0 for a byte that cannot lead one.
int utf8SequenceLength(unsigned char lead)
{
    if (lead < 0x80)
        return 1;
    if (lead >= 0xC2 && lead <= 0xDF)
        return 2;
    if (lead >= 0xE0 && lead <= 0xEF)
        return 3;
    if (lead >= 0xF0 && lead <= 0xF4)
        return 4;
    return 0;
}

bool isContinuation(unsigned char b)
{
    return (b & 0xC0) == 0x80;
}

} // namespace

std::string TextStream::push(TokenId id)
{
    std::string bytes = m_tokenizer.tokenBytes(id);
    if (m_stripSpace && !bytes.empty()) {
        if (bytes.front() == ' ')
            bytes.erase(0, 1);
        m_stripSpace = false;
    }
    m_pending += bytes;
    std::string out;
    std::size_t i = 0;
    while (i < m_pending.size()) {
        const auto lead = static_cast<unsigned char>(m_pending[i]);
        const int length = utf8SequenceLength(lead);
        if (length == 0) {
            out += "\xEF\xBF\xBD"; // U+FFFD: a byte that can never start a character
            ++i;
            continue;
        }
        if (i + static_cast<std::size_t>(length) > m_pending.size()) {
            // Possibly incomplete: keep it for the next token unless it is already invalid.
            bool valid = true;
            for (std::size_t k = i + 1; k < m_pending.size(); ++k)
                valid = valid && isContinuation(static_cast<unsigned char>(m_pending[k]));
            if (valid)
                break;
            out += "\xEF\xBF\xBD";
            ++i;
            continue;
        }
        bool valid = true;
        for (int k = 1; k < length; ++k)
            valid = valid && isContinuation(static_cast<unsigned char>(m_pending[i + static_cast<std::size_t>(k)]));
        if (!valid) {
            out += "\xEF\xBF\xBD";
            ++i;
            continue;
        }
        out.append(m_pending, i, static_cast<std::size_t>(length));
        i += static_cast<std::size_t>(length);
    }
    m_pending.erase(0, i);
    return out;
}

std::string TextStream::finish()
{
    std::string out;
    if (!m_pending.empty())
        out = "\xEF\xBF\xBD"; // the reply ended inside a character
    m_pending.clear();
    return out;
}

} // namespace kvchat::engine
