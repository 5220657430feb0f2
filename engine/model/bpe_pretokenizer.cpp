// SPDX-License-Identifier: MIT
#include "engine/model/bpe_pretokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <array>
#include <cstdint>

namespace kvchat::engine {

namespace {

// The GPT-2 pattern (openai/gpt-2 encoder.py; the ByteLevel pre-tokenizer of HF tokenizers).
constexpr const char *kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Llama 3 (tokenizer.json of Meta-Llama-3). The contractions keep HF's (?i:...) with Unicode case
// folding, so "'ſ" (long s) is a contraction as in HF tokenizers; llama.cpp spells them '[sS]...
// because std::regex has no inline flags, and differs there.
constexpr const char *kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3})"
    R"(| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// Qwen2: the Llama 3 pattern with single digits.
constexpr const char *kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N})"
    R"(| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// SmolLM (and StarCoder-family) tokenizer.json: Digits(individual_digits) then ByteLevel.
constexpr const char *kDigitPattern = R"(\p{N})";

struct RegexSet
{
    const char *name;
    std::array<const char *, 2> patterns; // nullptr-terminated when shorter
};

constexpr RegexSet kGpt2Set{"gpt2", {kGpt2Pattern, nullptr}};
constexpr RegexSet kLlama3Set{"llama-bpe", {kLlama3Pattern, nullptr}};
constexpr RegexSet kSmollmSet{"smollm", {kDigitPattern, kGpt2Pattern}};
constexpr RegexSet kQwen2Set{"qwen2", {kQwen2Pattern, nullptr}};

struct NameEntry
{
    std::string_view preName;
    const RegexSet *set;
    bool ignoreMerges;
};

// tokenizer.ggml.pre values (as llama.cpp's convert_hf_to_gguf.py writes them) whose models use one
// of our regex sets. "" and "default" are old files written before the key existed; llama.cpp
// gives them an approximation of its own, we give them the GPT-2 pattern they were trained with.
constexpr std::array kNames{
    NameEntry{"", &kGpt2Set, false},
    NameEntry{"default", &kGpt2Set, false},
    NameEntry{"gpt2", &kGpt2Set, false},
    NameEntry{"gpt-2", &kGpt2Set, false},
    NameEntry{"phi-2", &kGpt2Set, false},
    NameEntry{"mpt", &kGpt2Set, false},
    NameEntry{"olmo", &kGpt2Set, false},
    NameEntry{"jais", &kGpt2Set, false},
    NameEntry{"llama-bpe", &kLlama3Set, true},
    NameEntry{"llama3", &kLlama3Set, true},
    NameEntry{"llama-v3", &kLlama3Set, true},
    NameEntry{"falcon3", &kLlama3Set, true},
    NameEntry{"pixtral", &kLlama3Set, true},
    NameEntry{"dbrx", &kLlama3Set, false},
    NameEntry{"smaug-bpe", &kLlama3Set, false},
    NameEntry{"smollm", &kSmollmSet, false},
    NameEntry{"starcoder", &kSmollmSet, false},
    NameEntry{"refact", &kSmollmSet, false},
    NameEntry{"command-r", &kSmollmSet, false},
    NameEntry{"codeshell", &kSmollmSet, false},
    NameEntry{"qwen2", &kQwen2Set, false},
    NameEntry{"deepseek-r1-qwen", &kQwen2Set, false},
    NameEntry{"stablelm2", &kQwen2Set, false},
};

const NameEntry *findName(std::string_view preName)
{
    for (const NameEntry &entry : kNames) {
        if (entry.preName == preName) {
            return &entry;
        }
    }
    return nullptr;
}

// Length of the well-formed UTF-8 sequence starting at bytes[pos], or 0 when it is not one.
std::size_t utf8SequenceLength(std::string_view bytes, std::size_t pos)
{
    const auto byteAt = [&](std::size_t i) { return static_cast<unsigned char>(bytes[i]); };
    const unsigned char lead = byteAt(pos);
    if (lead < 0x80) {
        return 1;
    }
    std::size_t length = 0;
    unsigned char minSecond = 0x80;
    unsigned char maxSecond = 0xBF;
    if (lead >= 0xC2 && lead <= 0xDF) {
        length = 2;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
        length = 3;
        if (lead == 0xE0) {
            minSecond = 0xA0; // overlong
        } else if (lead == 0xED) {
            maxSecond = 0x9F; // surrogates
        }
    } else if (lead >= 0xF0 && lead <= 0xF4) {
        length = 4;
        if (lead == 0xF0) {
            minSecond = 0x90; // overlong
        } else if (lead == 0xF4) {
            maxSecond = 0x8F; // past U+10FFFF
        }
    } else {
        return 0; // continuation byte, C0/C1 (overlong) or F5..FF
    }
    if (pos + length > bytes.size()) {
        return 0;
    }
    const unsigned char second = byteAt(pos + 1);
    if (second < minSecond || second > maxSecond) {
        return 0;
    }
    for (std::size_t i = 2; i < length; ++i) {
        if ((byteAt(pos + i) & 0xC0) != 0x80) {
            return 0;
        }
    }
    return length;
}

} // namespace

bool isValidUtf8(std::string_view bytes)
{
    for (std::size_t pos = 0; pos < bytes.size();) {
        const std::size_t length = utf8SequenceLength(bytes, pos);
        if (length == 0) {
            return false;
        }
        pos += length;
    }
    return true;
}

struct BpePreTokenizer::Pattern
{
    pcre2_code *code = nullptr;
    bool jit = false;

    ~Pattern() { pcre2_code_free(code); }
};

BpePreTokenizer::~BpePreTokenizer() = default;

BpePreTokenizer::Choice BpePreTokenizer::resolve(std::string_view preName)
{
    if (const NameEntry *entry = findName(preName)) {
        return Choice{entry->set->name, false, entry->ignoreMerges};
    }
    return Choice{kGpt2Set.name, true, false};
}

Result<std::unique_ptr<BpePreTokenizer>> BpePreTokenizer::create(std::string_view preName)
{
    std::unique_ptr<BpePreTokenizer> pre(new BpePreTokenizer());
    pre->m_requestedName = std::string(preName);
    pre->m_choice = resolve(preName);

    const NameEntry *entry = findName(preName);
    const RegexSet *set = entry != nullptr ? entry->set : &kGpt2Set;
    for (const char *source : set->patterns) {
        if (source == nullptr) {
            break;
        }
        int errorCode = 0;
        PCRE2_SIZE errorOffset = 0;
        auto pattern = std::make_unique<Pattern>();
        pattern->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(source), PCRE2_ZERO_TERMINATED,
                                      PCRE2_UTF | PCRE2_UCP, &errorCode, &errorOffset, nullptr);
        if (pattern->code == nullptr) {
            std::array<PCRE2_UCHAR, 256> message{};
            pcre2_get_error_message(errorCode, message.data(), message.size());
            return makeError("BPE pre-tokenizer '" + std::string(set->name) + "': compiling /" + source
                             + "/ failed at offset " + std::to_string(errorOffset) + ": "
                             + reinterpret_cast<const char *>(message.data()));
        }
        // JIT is only a speed-up: without it (no JIT support in this PCRE2 build, or no executable
        // memory allowed) the interpreter gives the same matches.
        pattern->jit = pcre2_jit_compile(pattern->code, PCRE2_JIT_COMPLETE) == 0;
        pre->m_patterns.push_back(std::move(pattern));
    }
    return pre;
}

std::vector<std::string_view> BpePreTokenizer::split(std::string_view text) const
{
    if (text.empty()) {
        return {};
    }
    if (isValidUtf8(text)) {
        return splitValidUtf8(text);
    }

    // Match a cleaned copy where each stray byte is U+FFFD, then map the fragment boundaries (all
    // on character boundaries of the copy) back to offsets in the original bytes.
    std::string clean;
    std::vector<std::size_t> originalOffset; // per byte of clean, plus its end
    clean.reserve(text.size() + 16);
    originalOffset.reserve(text.size() + 17);
    for (std::size_t pos = 0; pos < text.size();) {
        const std::size_t length = utf8SequenceLength(text, pos);
        if (length == 0) {
            clean += "\xEF\xBF\xBD";
            originalOffset.insert(originalOffset.end(), 3, pos);
            pos += 1;
        } else {
            clean.append(text.substr(pos, length));
            for (std::size_t i = 0; i < length; ++i) {
                originalOffset.push_back(pos + i);
            }
            pos += length;
        }
    }
    originalOffset.push_back(text.size());

    std::vector<std::string_view> fragments = splitValidUtf8(clean);
    for (std::string_view &fragment : fragments) {
        const auto begin = static_cast<std::size_t>(fragment.data() - clean.data());
        const std::size_t end = begin + fragment.size();
        fragment = text.substr(originalOffset[begin], originalOffset[end] - originalOffset[begin]);
    }
    return fragments;
}

std::vector<std::string_view> BpePreTokenizer::splitValidUtf8(std::string_view text) const
{
    // One match data per call keeps split() thread-safe. Our patterns have no capturing groups,
    // so one ovector pair (the whole match) is all we read.
    std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> matchData(
        pcre2_match_data_create(1, nullptr), &pcre2_match_data_free);
    if (!matchData) {
        return {text}; // out of memory: one word is still a correct (if slower) tokenization input
    }

    std::vector<std::string_view> current{text};
    std::vector<std::string_view> next;
    for (const auto &pattern : m_patterns) {
        next.clear();
        for (std::string_view fragment : current) {
            const auto *subject = reinterpret_cast<PCRE2_SPTR>(fragment.data());
            std::size_t gapStart = 0; // start of the not-yet-emitted part of fragment
            std::size_t searchFrom = 0;
            while (searchFrom < fragment.size()) {
                int rc = pcre2_match(pattern->code, subject, fragment.size(), searchFrom, PCRE2_NO_UTF_CHECK,
                                     matchData.get(), nullptr);
                if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
                    // The JIT's default 32 KiB stack ran out (very long runs); the interpreter
                    // keeps its backtracking state on the heap instead.
                    rc = pcre2_match(pattern->code, subject, fragment.size(), searchFrom,
                                     PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, matchData.get(), nullptr);
                }
                if (rc < 0) {
                    // No match, or a match/heap limit hit on pathological input: the rest of the
                    // fragment stays one piece, which BPE still encodes losslessly.
                    break;
                }
                const PCRE2_SIZE *ovector = pcre2_get_ovector_pointer(matchData.get());
                const std::size_t start = ovector[0];
                const std::size_t end = ovector[1];
                if (end == start) {
                    // None of our patterns can match empty, but never loop on one: step over a
                    // character and leave it to the gap.
                    const std::size_t length = utf8SequenceLength(fragment, start);
                    searchFrom = start + (length == 0 ? 1 : length);
                    continue;
                }
                if (start > gapStart) {
                    next.push_back(fragment.substr(gapStart, start - gapStart));
                }
                next.push_back(fragment.substr(start, end - start));
                gapStart = end;
                searchFrom = end;
            }
            if (gapStart < fragment.size()) {
                next.push_back(fragment.substr(gapStart));
            }
        }
        current.swap(next);
    }
    return current;
}

} // namespace kvchat::engine
