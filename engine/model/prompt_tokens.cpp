// SPDX-License-Identifier: MIT
#include "engine/model/prompt_tokens.h"

namespace kvchat::engine {

std::vector<TokenId> tokenizeRawPrompt(const Tokenizer &tokenizer, std::string_view text)
{
    std::vector<TokenId> ids;
    if (tokenizer.addBos())
        ids.push_back(*tokenizer.bos());
    const std::vector<TokenId> body = tokenizer.encode(text, true);
    ids.insert(ids.end(), body.begin(), body.end());
    return ids;
}

std::vector<TokenId> tokenizePieces(const Tokenizer &tokenizer, std::span<const PromptPiece> pieces,
                                    bool atSequenceStart)
{
    std::vector<TokenId> ids;
    // Sentencepiece vocabularies put their dummy-prefix space at the start of the text and after
    // every special token, as llama.cpp does.
    bool afterSpecial = atSequenceStart;
    for (const PromptPiece &piece : pieces) {
        std::optional<TokenId> special;
        if (piece.kind == PromptPiece::Kind::Special)
            special = tokenizer.specialToken(piece.text);
        if (special) {
            ids.push_back(*special);
            afterSpecial = true;
            continue;
        }
        if (piece.text.empty())
            continue;
        const std::vector<TokenId> body = tokenizer.encode(piece.text, afterSpecial);
        ids.insert(ids.end(), body.begin(), body.end());
        afterSpecial = false;
    }
    if (atSequenceStart && tokenizer.addBos() && (ids.empty() || ids.front() != *tokenizer.bos()))
        ids.insert(ids.begin(), *tokenizer.bos());
    return ids;
}

} // namespace kvchat::engine
