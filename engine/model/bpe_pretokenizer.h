// SPDX-License-Identifier: MIT
// Pre-tokenizer for byte-level BPE vocabularies: splits text into the "words" that BPE merges run
// inside, using the regular expressions that tokenizer.ggml.pre names. Regex sets (one or more
// patterns applied in sequence, see split()):
//   gpt2       the original GPT-2 pattern; also used for a missing/"default" pre and as the fallback
//              for names we do not know (isFallback() says so)
//   llama-bpe  Llama 3: case-insensitive contractions, numbers in groups of up to 3 digits, newline
//              runs kept apart from other whitespace
//   smollm     every digit on its own (\p{N}), then the GPT-2 pattern on each fragment
//   qwen2      like llama-bpe but one digit per word
// The patterns are those of the models' tokenizer.json files (HF pre_tokenizers), the sequences
// and names those of llama.cpp (src/llama-vocab.cpp, regex_exprs per LLAMA_VOCAB_PRE_TYPE_*).
// PCRE2 with UTF + UCP gives the same splits as HF tokenizers (Oniguruma) on the unit tests' strings
// and on 20k random mixed-script strings per set, including Unicode \s and case folding.
//
// Thread-safety: a constructed BpePreTokenizer is immutable; split() may be called concurrently
// (the compiled patterns are shared, match data is allocated per call).
#pragma once

#include "engine/core/result.h"

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace kvchat::engine {

class BpePreTokenizer
{
public:
    // What a tokenizer.ggml.pre value resolves to, without compiling anything (the CLI's `info`
    // uses this to show which rules a file gets).
    struct Choice
    {
        std::string name;          // regex set used: "gpt2", "llama-bpe", "smollm" or "qwen2"
        bool isFallback = false;   // the requested name is unknown and gpt2 is used instead
        bool ignoreMerges = false; // the vocabulary convention that goes with it in llama.cpp: a
                                   // word that is itself a token is used whole (Llama 3)
    };
    static Choice resolve(std::string_view preName);

    // Compiles the regex set for preName (the value of tokenizer.ggml.pre, "" when missing).
    static Result<std::unique_ptr<BpePreTokenizer>> create(std::string_view preName);

    ~BpePreTokenizer();
    BpePreTokenizer(const BpePreTokenizer &) = delete;
    BpePreTokenizer &operator=(const BpePreTokenizer &) = delete;

    const std::string &name() const { return m_choice.name; }
    const std::string &requestedName() const { return m_requestedName; }
    bool isFallback() const { return m_choice.isFallback; }
    bool ignoreMerges() const { return m_choice.ignoreMerges; }

    // Splits text into consecutive, non-empty fragments that cover it exactly (concatenated they
    // give text back). Each pattern in turn splits every fragment of the previous stage into its
    // matches and the unmatched gaps between them, in order; a pattern sees one fragment at a time,
    // so a lookahead such as \s+(?!\S) stops at the fragment's end.
    //
    // Invalid UTF-8: each byte that is not part of a valid sequence is matched as if it were
    // U+FFFD (a symbol, so it groups with punctuation), but the fragments still hold the original
    // bytes, so BPE sees them and byte-level decoding gives them back unchanged.
    //
    // The returned views point into text.
    std::vector<std::string_view> split(std::string_view text) const;

private:
    struct Pattern;
    BpePreTokenizer() = default;
    std::vector<std::string_view> splitValidUtf8(std::string_view text) const;

    std::string m_requestedName;
    Choice m_choice;
    std::vector<std::unique_ptr<Pattern>> m_patterns;
};

// True when bytes are well-formed UTF-8 (no overlong forms, surrogates or code points past
// U+10FFFF), the same rules PCRE2 applies.
bool isValidUtf8(std::string_view bytes);

} // namespace kvchat::engine
