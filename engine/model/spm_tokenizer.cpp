// SPDX-License-Identifier: MIT
// "llama" vocabularies (Llama 2, TinyLlama, Mistral, llama2.c models): encoded by the sentencepiece
// library from a ModelProto built from the GGUF pieces, scores and types. sentencepiece bundles its
// own protobuf-lite, so we never link libprotobuf: the ModelProto is written in protobuf wire format
// here (field numbers from sentencepiece_model.proto).
#include "engine/model/gguf_file.h"
#include "engine/model/tokenizer.h"

#include <sentencepiece_processor.h>

#include <cstring>

namespace kvchat::engine {

namespace {

// Minimal protobuf wire-format writer: varints, fixed32 and length-delimited fields.
class ProtoWriter
{
public:
    void varintField(std::uint32_t field, std::uint64_t value)
    {
        varint((static_cast<std::uint64_t>(field) << 3) | 0);
        varint(value);
    }
    void int32Field(std::uint32_t field, std::int32_t value)
    {
        // int32 fields encode negative values as 10-byte sign-extended varints.
        varintField(field, static_cast<std::uint64_t>(static_cast<std::int64_t>(value)));
    }
    void floatField(std::uint32_t field, float value)
    {
        varint((static_cast<std::uint64_t>(field) << 3) | 5);
        char bytes[4];
        std::memcpy(bytes, &value, 4);
        m_out.append(bytes, 4);
    }
    void bytesField(std::uint32_t field, std::string_view bytes)
    {
        varint((static_cast<std::uint64_t>(field) << 3) | 2);
        varint(bytes.size());
        m_out.append(bytes);
    }
    const std::string &bytes() const { return m_out; }

private:
    void varint(std::uint64_t v)
    {
        while (v >= 0x80) {
            m_out.push_back(static_cast<char>((v & 0x7f) | 0x80));
            v >>= 7;
        }
        m_out.push_back(static_cast<char>(v));
    }
    std::string m_out;
};

class SpmTokenizer final : public Tokenizer
{
public:
    VocabKind kind() const override { return VocabKind::Spm; }
    bool addsSpacePrefix() const override { return m_addSpacePrefix; }

    Result<void> load(const GgufFile &file)
    {
        if (auto common = loadCommon(file); !common)
            return common;
        std::vector<float> scores(m_pieces.size(), 0.0f);
        if (const GgufKv *kv = file.find("tokenizer.ggml.scores")) {
            if (kv->type != GgufValueType::Array || kv->elementType != GgufValueType::Float32 ||
                kv->count != m_pieces.size())
                return makeError(file.path() + ": tokenizer.ggml.scores must be " + std::to_string(m_pieces.size()) +
                                 " float32 values");
            std::memcpy(scores.data(), kv->raw, scores.size() * sizeof(float));
        }
        auto addSpacePrefix = file.getBool("tokenizer.ggml.add_space_prefix");
        if (!addSpacePrefix)
            return addSpacePrefix.error();
        m_addSpacePrefix = addSpacePrefix->value_or(true);

        std::optional<TokenId> unk;
        auto unkId = file.getUInt("tokenizer.ggml.unknown_token_id");
        if (!unkId)
            return unkId.error();
        if (unkId->has_value() && **unkId < m_pieces.size())
            unk = static_cast<TokenId>(**unkId);
        bool hasByteTokens = false;
        for (std::size_t i = 0; i < m_pieces.size(); ++i) {
            if (m_kinds[i] == TokenKind::Unknown && !unk)
                unk = static_cast<TokenId>(i);
            hasByteTokens = hasByteTokens || m_kinds[i] == TokenKind::Byte;
        }
        if (!unk)
            return makeError(file.path() + ": sentencepiece vocabulary has no unknown token");

        for (bool dummyPrefix : {true, false}) {
            const std::string proto = buildModelProto(scores, *unk, hasByteTokens, dummyPrefix && m_addSpacePrefix);
            auto &processor = dummyPrefix ? m_atStart : m_continuation;
            processor = std::make_unique<sentencepiece::SentencePieceProcessor>();
            const auto status = processor->LoadFromSerializedProto(proto);
            if (!status.ok())
                return makeError(file.path() + ": sentencepiece rejected the vocabulary: " + status.ToString());
        }
        return {};
    }

    std::vector<TokenId> encode(std::string_view text, bool atTextStart) const override
    {
        std::vector<int> ids;
        if (text.empty())
            return {};
        const auto status = (atTextStart ? m_atStart : m_continuation)->Encode(text, &ids);
        if (!status.ok())
            return {}; // Encode fails only for an unloaded model, which load() rules out.
        return std::vector<TokenId>(ids.begin(), ids.end());
    }

    std::string tokenBytes(TokenId id) const override
    {
        if (id < 0 || id >= vocabSize())
            return {};
        const std::string_view piece = m_pieces[static_cast<std::size_t>(id)];
        switch (m_kinds[static_cast<std::size_t>(id)]) {
        case TokenKind::Control:
        case TokenKind::Unused:
            return {};
        case TokenKind::Unknown:
            return " \xE2\x81\x87 "; // sentencepiece's unk surface " ⁇ "
        case TokenKind::Byte:
            if (piece.size() == 6 && piece.starts_with("<0x") && piece.back() == '>')
                return std::string(1, static_cast<char>(std::stoi(std::string(piece.substr(3, 2)), nullptr, 16)));
            return std::string(piece);
        default:
            break;
        }
        std::string out;
        out.reserve(piece.size());
        for (std::size_t i = 0; i < piece.size(); ++i) {
            // U+2581 "▁" (E2 96 81) stands for a space.
            if (piece.compare(i, 3, "\xE2\x96\x81") == 0) {
                out.push_back(' ');
                i += 2;
            } else {
                out.push_back(piece[i]);
            }
        }
        return out;
    }

private:
    std::string buildModelProto(const std::vector<float> &scores, TokenId unk, bool byteFallback,
                                bool addDummyPrefix) const
    {
        ProtoWriter model;
        for (std::size_t i = 0; i < m_pieces.size(); ++i) {
            ProtoWriter piece;
            piece.bytesField(1, m_pieces[i]);
            piece.floatField(2, scores[i]);
            // GGUF token types use sentencepiece's numbering; "undefined" is treated as normal.
            const auto kind = m_kinds[i] == TokenKind::Undefined ? TokenKind::Normal : m_kinds[i];
            piece.varintField(3, static_cast<std::uint64_t>(kind));
            model.bytesField(1, piece.bytes());
        }
        ProtoWriter trainer;
        trainer.varintField(3, 2); // model_type = BPE: merge by score, as llama.cpp's SPM tokenizer does
        trainer.int32Field(4, static_cast<std::int32_t>(m_pieces.size()));
        trainer.varintField(35, byteFallback ? 1 : 0);
        trainer.int32Field(40, unk);
        trainer.int32Field(41, m_bos.value_or(-1));
        trainer.int32Field(42, m_eos.value_or(-1));
        trainer.int32Field(43, -1);
        model.bytesField(2, trainer.bytes());
        ProtoWriter normalizer;
        normalizer.bytesField(1, "identity");
        normalizer.varintField(3, addDummyPrefix ? 1 : 0);
        normalizer.varintField(4, 0); // keep runs of spaces, as llama.cpp does
        normalizer.varintField(5, 1); // spaces become "▁"
        model.bytesField(3, normalizer.bytes());
        return model.bytes();
    }

    bool m_addSpacePrefix = true;
    // Two processors because sentencepiece fixes add_dummy_prefix in the model: one for text that
    // starts a sequence (or follows a special token), one for text that continues it.
    std::unique_ptr<sentencepiece::SentencePieceProcessor> m_atStart;
    std::unique_ptr<sentencepiece::SentencePieceProcessor> m_continuation;
};

} // namespace

Result<std::unique_ptr<Tokenizer>> makeSpmTokenizer(const GgufFile &file)
{
    auto tokenizer = std::make_unique<SpmTokenizer>();
    if (auto loaded = tokenizer->load(file); !loaded)
        return loaded.error();
    return std::unique_ptr<Tokenizer>(std::move(tokenizer));
}

} // namespace kvchat::engine
