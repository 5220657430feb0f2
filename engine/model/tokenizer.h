// SPDX-License-Identifier: MIT
// Tokenizers built from a GGUF vocabulary. Two kinds: "llama" (sentencepiece, spm_tokenizer.cpp)
// and "gpt2" (byte-level BPE, bpe_tokenizer.cpp).
//
// Text a user types goes through encode() and can never become a control token: control and other
// special tokens are produced only by the chat template, which looks them up with specialToken().
// Thread-safety: a constructed Tokenizer is immutable; all const methods may be called concurrently.
#pragma once

#include "engine/core/result.h"
#include "engine/core/string_table.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kvchat::engine {

class GgufFile;

using TokenId = std::int32_t;

// Values of tokenizer.ggml.token_type; fixed by the format.
enum class TokenKind : std::int32_t {
    Undefined = 0,
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
};

enum class VocabKind { Spm, Bpe };

class Tokenizer
{
public:
    virtual ~Tokenizer() = default;
    // Lookup tables inside a tokenizer point at its own members, so it stays where it was built.
    Tokenizer(const Tokenizer &) = delete;
    Tokenizer &operator=(const Tokenizer &) = delete;

    // Builds the tokenizer named by tokenizer.ggml.model (llama, gpt2) from the file's vocabulary.
    static Result<std::unique_ptr<Tokenizer>> fromGguf(const GgufFile &file);

    virtual VocabKind kind() const = 0;
    // Tokenizes plain text; never emits control tokens. atTextStart: the text begins a sequence
    // (or follows a special token), which is where a sentencepiece vocabulary with
    // add_space_prefix puts its dummy "▁". No BOS is added here.
    virtual std::vector<TokenId> encode(std::string_view text, bool atTextStart = true) const = 0;
    // The bytes this token contributes to decoded text: the piece with "▁" as a space (SPM) or its
    // byte-level mapping undone (BPE); the raw byte of a byte token; "" for control tokens.
    // Bytes may be an incomplete UTF-8 sequence (see TextStream).
    virtual std::string tokenBytes(TokenId id) const = 0;
    // True for sentencepiece vocabularies with add_space_prefix: decoded text that starts a
    // sequence drops the leading space of its first piece (the dummy prefix).
    virtual bool addsSpacePrefix() const { return false; }

    std::int32_t vocabSize() const { return static_cast<std::int32_t>(m_pieces.size()); }
    std::string_view piece(TokenId id) const { return m_pieces.at(static_cast<std::size_t>(id)); }
    TokenKind tokenKind(TokenId id) const { return m_kinds.at(static_cast<std::size_t>(id)); }
    // Id of a special (control or user-defined) token by its exact piece, e.g. "<|im_start|>".
    std::optional<TokenId> specialToken(std::string_view piece) const;

    std::optional<TokenId> bos() const { return m_bos; }
    std::optional<TokenId> eos() const { return m_eos; }
    std::optional<TokenId> eot() const { return m_eot; }
    bool addBos() const { return m_addBos; }
    // Tokens that end generation: EOS, EOT and control tokens that templates use to end a turn.
    bool isEndOfGeneration(TokenId id) const;

    // Decodes a whole sequence (no streaming concerns; invalid UTF-8 kept as bytes).
    std::string decode(const std::vector<TokenId> &ids) const;

protected:
    Tokenizer() = default;
    // Reads pieces, token types and the special ids shared by both kinds.
    Result<void> loadCommon(const GgufFile &file);

    StringTable m_pieces;
    std::vector<TokenKind> m_kinds;
    std::optional<TokenId> m_bos, m_eos, m_eot;
    std::vector<TokenId> m_endOfGeneration;
    bool m_addBos = false;
};

// Builds a tokenizer of each kind (used by Tokenizer::fromGguf).
Result<std::unique_ptr<Tokenizer>> makeSpmTokenizer(const GgufFile &file);
Result<std::unique_ptr<Tokenizer>> makeBpeTokenizer(const GgufFile &file);

// Streaming detokenizer: feed tokens one at a time and get back only complete UTF-8 text, so the
// concatenation of everything returned equals decoding the whole sequence at once (no broken
// characters, no lost leading spaces). finish() flushes a trailing incomplete sequence.
class TextStream
{
public:
    // atSequenceStart: the first token decoded starts the text of a sequence (nothing but control
    // tokens before it), so a dummy-prefix space is dropped as sentencepiece's decoder does.
    explicit TextStream(const Tokenizer &tokenizer, bool atSequenceStart = false)
        : m_tokenizer(tokenizer), m_stripSpace(atSequenceStart && tokenizer.addsSpacePrefix())
    {
    }
    std::string push(TokenId id);
    std::string finish();

private:
    const Tokenizer &m_tokenizer;
    bool m_stripSpace;     // drop one leading space from the first non-empty text
    std::string m_pending; // bytes of an incomplete UTF-8 sequence
};

} // namespace kvchat::engine
