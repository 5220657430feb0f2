// SPDX-License-Identifier: MIT
// "gpt2" vocabularies (byte-level BPE: GPT-2, SmolLM2, Llama 3, Qwen2). Text is split into words by
// the pre-tokenizer that tokenizer.ggml.pre names; each word's bytes are spelled in GPT-2's
// byte-level alphabet (every byte is one printable character) and merged pairwise by the ranks of
// tokenizer.ggml.merges, lowest rank first and leftmost first on ties, as HF tokenizers' BPE does.
//
// Merging works on token ids: a merge "a b" is stored as (id(a), id(b)) -> (rank, id(ab)), so a
// word costs O(n log n) with a heap of candidate pairs and nothing is looked up by string.
//
// Only ordinary tokens take part (Normal, Byte, UserDefined, Undefined). A merge whose parts or
// result are a control, unknown or unused token, or are missing from the vocabulary, is dropped
// when loading: it could never fire on ordinary symbols, and dropping it is what keeps text such
// as "<|im_start|>" from ever becoming a control id (llama.cpp with parse_special=false).
// Unparseable merge strings are an error; merges are required.
//
// Bytes: encode() keeps the input's bytes, valid UTF-8 or not (see BpePreTokenizer::split), so
// decode(encode(s)) == s whenever the vocabulary has a token for every byte of s. A byte without
// one (SmolLM2 lacks a few C0 controls and bytes that never occur in UTF-8) becomes the vocabulary's
// Unknown-type token if it has one, else is left out, as in HF tokenizers' BPE without unk_token.
// tokenizer.ggml.unknown_token_id is not used for this: SmolLM2 names <|endoftext|>, a control.
#include "engine/model/bpe_lookup_tables.h"
#include "engine/model/bpe_pretokenizer.h"
#include "engine/model/gguf_file.h"
#include "engine/model/tokenizer.h"

#include <algorithm>
#include <array>
#include <cstdint>

namespace kvchat::engine {

namespace {

// GPT-2's bytes_to_unicode(): printable Latin-1 bytes (33-126, 161-172, 174-255) stand for
// themselves, the other 68 bytes take code points 256, 257, ... in byte order.
struct ByteAlphabet
{
    std::array<std::uint32_t, 256> codePoint{};
    std::array<std::string, 256> utf8; // codePoint as UTF-8 (1 or 2 bytes)
    std::array<std::int16_t, 324> byteOf{}; // inverse, -1 for code points that are not used

    ByteAlphabet()
    {
        byteOf.fill(-1);
        std::uint32_t next = 256;
        for (std::uint32_t b = 0; b < 256; ++b) {
            const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
            codePoint[b] = printable ? b : next++;
            byteOf[codePoint[b]] = static_cast<std::int16_t>(b);
            const std::uint32_t cp = codePoint[b];
            if (cp < 0x80) {
                utf8[b] = std::string(1, static_cast<char>(cp));
            } else {
                utf8[b] = std::string{static_cast<char>(0xC0 | (cp >> 6)), static_cast<char>(0x80 | (cp & 0x3F))};
            }
        }
    }
};

const ByteAlphabet &byteAlphabet()
{
    static const ByteAlphabet alphabet; // thread-safe initialization; immutable afterwards
    return alphabet;
}

// Undoes the byte-level spelling of a piece. Characters outside the alphabet (a hand-written
// piece) keep their own UTF-8 bytes, as do bytes that are not valid UTF-8 at all.
std::string decodeByteLevel(std::string_view piece)
{
    const ByteAlphabet &alphabet = byteAlphabet();
    std::string out;
    out.reserve(piece.size());
    for (std::size_t i = 0; i < piece.size();) {
        const auto lead = static_cast<unsigned char>(piece[i]);
        if (lead < 0x80) {
            const std::int16_t b = alphabet.byteOf[lead];
            out.push_back(b >= 0 ? static_cast<char>(b) : static_cast<char>(lead));
            ++i;
            continue;
        }
        // Every code point of the alphabet is below U+0800, so only two-byte sequences map back.
        if (lead >= 0xC2 && lead <= 0xDF && i + 1 < piece.size()
            && (static_cast<unsigned char>(piece[i + 1]) & 0xC0) == 0x80) {
            const std::uint32_t cp = ((lead & 0x1Fu) << 6) | (static_cast<unsigned char>(piece[i + 1]) & 0x3Fu);
            if (cp < alphabet.byteOf.size() && alphabet.byteOf[cp] >= 0) {
                out.push_back(static_cast<char>(alphabet.byteOf[cp]));
            } else {
                out.append(piece.substr(i, 2));
            }
            i += 2;
            continue;
        }
        out.push_back(piece[i]);
        ++i;
    }
    return out;
}

bool takesPartInBpe(TokenKind kind)
{
    return kind == TokenKind::Normal || kind == TokenKind::Byte || kind == TokenKind::UserDefined
        || kind == TokenKind::Undefined;
}

using Merge = MergeTable::Merge;

class BpeTokenizer final : public Tokenizer
{
public:
    VocabKind kind() const override { return VocabKind::Bpe; }

    Result<void> load(const GgufFile &file)
    {
        if (auto common = loadCommon(file); !common) {
            return common;
        }

        auto pre = file.getString("tokenizer.ggml.pre");
        if (!pre) {
            return pre.error();
        }
        auto preTokenizer = BpePreTokenizer::create(pre->value_or(std::string_view{}));
        if (!preTokenizer) {
            return makeError(file.path() + ": " + preTokenizer.error().message);
        }
        m_preTokenizer = std::move(preTokenizer.value());

        m_pieceToId = PieceIndex(m_pieces, m_pieces.size());
        for (std::size_t id = 0; id < m_pieces.size(); ++id) {
            if (takesPartInBpe(m_kinds[id])) {
                // The first of duplicate pieces wins, as in llama.cpp's token_to_id.
                m_pieceToId.insert(static_cast<TokenId>(id));
            }
        }
        const ByteAlphabet &alphabet = byteAlphabet();
        for (std::size_t b = 0; b < 256; ++b) {
            m_byteToken[b] = m_pieceToId.find(alphabet.utf8[b]).value_or(-1);
        }
        for (std::size_t id = 0; id < m_pieces.size(); ++id) {
            if (m_kinds[id] == TokenKind::Unknown && !m_unknown) {
                m_unknown = static_cast<TokenId>(id);
            }
        }

        if (auto merges = loadMerges(file); !merges) {
            return merges;
        }

        // Decoding byte-level spelling never lengthens a piece, so the pieces' text bounds the size.
        m_tokenBytes.reserve(m_pieces.size(), m_pieces.textBytes());
        for (std::size_t id = 0; id < m_pieces.size(); ++id) {
            switch (m_kinds[id]) {
            case TokenKind::Control:
            case TokenKind::Unknown:
            case TokenKind::Unused:
                m_tokenBytes.append({}); // contribute nothing to text
                break;
            case TokenKind::UserDefined:
                // Added by hand to the vocabulary, stored as plain text rather than byte-level.
                m_tokenBytes.append(m_pieces[id]);
                break;
            default:
                m_tokenBytes.append(decodeByteLevel(m_pieces[id]));
                break;
            }
        }
        return {};
    }

    std::vector<TokenId> encode(std::string_view text, bool /*atTextStart*/) const override
    {
        // Byte-level BPE has no dummy prefix: a word's leading space is part of the word already.
        std::vector<TokenId> out;
        out.reserve(text.size() / 3 + 1);
        Scratch scratch;
        for (std::string_view word : m_preTokenizer->split(text)) {
            encodeWord(word, scratch, out);
        }
        return out;
    }

    std::string tokenBytes(TokenId id) const override
    {
        if (id < 0 || static_cast<std::size_t>(id) >= m_tokenBytes.size()) {
            return {};
        }
        return std::string(m_tokenBytes[static_cast<std::size_t>(id)]);
    }

private:
    struct Symbol
    {
        TokenId id;
        std::int32_t prev;
        std::int32_t next;
    };
    struct Candidate
    {
        std::int32_t rank;
        std::int32_t left; // index of the left symbol
        TokenId result;
    };
    struct LaterCandidate
    {
        // The heap (std::push_heap/pop_heap) keeps the greatest on top: here the lowest rank,
        // then the leftmost position, the order HF tokenizers and llama.cpp merge in.
        bool operator()(const Candidate &a, const Candidate &b) const
        {
            return a.rank != b.rank ? a.rank > b.rank : a.left > b.left;
        }
    };
    // Buffers reused across the words of one encode() call.
    struct Scratch
    {
        std::vector<Symbol> symbols;
        std::vector<Candidate> heap;
        std::string spelled;
    };

    Result<void> loadMerges(const GgufFile &file)
    {
        const GgufKv *merges = file.find("tokenizer.ggml.merges");
        if (merges == nullptr) {
            return makeError(file.path() + ": tokenizer.ggml.merges is missing (a gpt2 vocabulary needs its merges)");
        }
        if (merges->type != GgufValueType::Array || merges->elementType != GgufValueType::String) {
            return makeError(file.path() + ": tokenizer.ggml.merges is not an array of strings");
        }
        m_merges = MergeTable(static_cast<std::size_t>(merges->strings.size()));
        std::string joined;
        std::size_t rank = 0;
        for (auto next = merges->strings.begin(); next != merges->strings.end(); ++next, ++rank) {
            const std::string_view merge = *next;
            // The separator is the first space after the first character; a byte-level piece never
            // contains a space itself (space is spelled "Ġ").
            const std::size_t space = merge.find(' ', 1);
            if (space == std::string_view::npos || space + 1 >= merge.size()) {
                return makeError(file.path() + ": tokenizer.ggml.merges[" + std::to_string(rank) + "] = '"
                                 + std::string(merge.substr(0, 64))
                                 + "' is not two pieces separated by a space");
            }
            const std::string_view left = merge.substr(0, space);
            const std::string_view right = merge.substr(space + 1);
            const auto leftId = m_pieceToId.find(left);
            const auto rightId = m_pieceToId.find(right);
            joined.assign(left).append(right);
            const auto resultId = m_pieceToId.find(joined);
            if (!leftId || !rightId || !resultId) {
                continue; // unusable (see the top of the file); HF would refuse the file, llama.cpp ignores it
            }
            // Duplicates keep their first (lowest) rank.
            m_merges.insert(*leftId, *rightId, Merge{static_cast<std::int32_t>(rank), *resultId});
        }
        return {};
    }

    const Merge *findMerge(TokenId left, TokenId right) const { return m_merges.find(left, right); }

    void pushCandidate(Scratch &scratch, std::int32_t left) const
    {
        const std::int32_t right = scratch.symbols[static_cast<std::size_t>(left)].next;
        if (right < 0) {
            return;
        }
        const Merge *merge = findMerge(scratch.symbols[static_cast<std::size_t>(left)].id,
                                       scratch.symbols[static_cast<std::size_t>(right)].id);
        if (merge != nullptr) {
            scratch.heap.push_back(Candidate{merge->rank, left, merge->result});
            std::push_heap(scratch.heap.begin(), scratch.heap.end(), LaterCandidate{});
        }
    }

    void encodeWord(std::string_view word, Scratch &scratch, std::vector<TokenId> &out) const
    {
        const ByteAlphabet &alphabet = byteAlphabet();
        if (m_preTokenizer->ignoreMerges()) {
            // Llama 3 convention (tokenizer.json "ignore_merges": true): a word that is a token is
            // taken whole even where the merges would not build it.
            scratch.spelled.clear();
            for (char c : word) {
                scratch.spelled += alphabet.utf8[static_cast<unsigned char>(c)];
            }
            if (const auto id = m_pieceToId.find(scratch.spelled)) {
                out.push_back(*id);
                return;
            }
        }

        std::vector<Symbol> &symbols = scratch.symbols;
        symbols.clear();
        for (char c : word) {
            TokenId id = m_byteToken[static_cast<unsigned char>(c)];
            if (id < 0) {
                // A byte the vocabulary cannot spell (SmolLM2 lacks a few C0 controls and bytes
                // that never occur in UTF-8). Like HF BPE: the unknown token if the vocabulary
                // has one, else the byte is left out and its neighbours may merge across it.
                if (!m_unknown) {
                    continue;
                }
                id = *m_unknown;
            }
            symbols.push_back(Symbol{id, static_cast<std::int32_t>(symbols.size()) - 1, -1});
        }
        const auto nSymbols = static_cast<std::int32_t>(symbols.size());
        for (std::int32_t i = 0; i + 1 < nSymbols; ++i) {
            symbols[static_cast<std::size_t>(i)].next = i + 1;
        }

        scratch.heap.clear();
        for (std::int32_t i = 0; i + 1 < nSymbols; ++i) {
            pushCandidate(scratch, i);
        }
        while (!scratch.heap.empty()) {
            std::pop_heap(scratch.heap.begin(), scratch.heap.end(), LaterCandidate{});
            const Candidate candidate = scratch.heap.back();
            scratch.heap.pop_back();

            Symbol &left = symbols[static_cast<std::size_t>(candidate.left)];
            if (left.id < 0 || left.next < 0) {
                continue; // merged away (id -1), or nothing on its right any more
            }
            Symbol &right = symbols[static_cast<std::size_t>(left.next)];
            const Merge *merge = findMerge(left.id, right.id);
            if (merge == nullptr || merge->result != candidate.result) {
                continue; // stale: one of the two symbols changed since this pair was queued
            }
            left.id = merge->result;
            right.id = -1;
            left.next = right.next;
            if (left.next >= 0) {
                symbols[static_cast<std::size_t>(left.next)].prev = candidate.left;
            }
            if (left.prev >= 0) {
                pushCandidate(scratch, left.prev);
            }
            pushCandidate(scratch, candidate.left);
        }

        // Symbols merged away are unlinked, so the chain holds exactly the word's tokens.
        for (std::int32_t i = nSymbols > 0 ? 0 : -1; i >= 0; i = symbols[static_cast<std::size_t>(i)].next) {
            out.push_back(symbols[static_cast<std::size_t>(i)].id);
        }
    }

    std::unique_ptr<BpePreTokenizer> m_preTokenizer;
    // Indexes m_pieces, which is never modified after loading.
    PieceIndex m_pieceToId;
    MergeTable m_merges;
    std::array<TokenId, 256> m_byteToken{};
    std::optional<TokenId> m_unknown;
    StringTable m_tokenBytes;
};

} // namespace

Result<std::unique_ptr<Tokenizer>> makeBpeTokenizer(const GgufFile &file)
{
    auto tokenizer = std::make_unique<BpeTokenizer>();
    if (auto loaded = tokenizer->load(file); !loaded) {
        return loaded.error();
    }
    return std::unique_ptr<Tokenizer>(std::move(tokenizer));
}

} // namespace kvchat::engine
