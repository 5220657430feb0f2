// SPDX-License-Identifier: MIT
// From text and rendered chat pieces to token ids, with the BOS rule of the model.
#pragma once

#include "engine/model/chat_template.h"
#include "engine/model/tokenizer.h"

#include <span>
#include <string_view>
#include <vector>

namespace kvchat::engine {

// A raw completion prompt: BOS when the vocabulary asks for it, then the text (never parsed for
// control tokens).
std::vector<TokenId> tokenizeRawPrompt(const Tokenizer &tokenizer, std::string_view text);

// Rendered chat pieces. Special pieces become their single token when the vocabulary has it as a
// control or user-defined token, and are tokenized as text otherwise. atSequenceStart: the pieces
// open a new sequence, so BOS is prepended when the vocabulary asks for it and the pieces do not
// already start with it.
std::vector<TokenId> tokenizePieces(const Tokenizer &tokenizer, std::span<const PromptPiece> pieces,
                                    bool atSequenceStart);

} // namespace kvchat::engine
