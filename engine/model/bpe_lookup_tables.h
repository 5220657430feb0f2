// SPDX-License-Identifier: MIT
// The two lookups byte-level BPE makes, as open-addressing tables of plain integers. Node-based
// std::unordered_maps of a 49k-token vocabulary and its 49k merges took about 5 MiB of heap in
// small nodes; these take about 1.5 MiB in four arrays, which is what keeps a 135M-parameter model
// within its RSS budget (file + KV + 10%), and they probe contiguous memory.
#pragma once

#include "engine/core/string_table.h"
#include "engine/model/tokenizer.h"

#include <bit>
#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>
#include <vector>

namespace kvchat::engine {

namespace detail {
// Slots for `count` entries at a load factor of at most 3/4: linear probing stays a few slots
// long, and a 49k-entry table fits in 64k slots.
inline std::size_t hashSlotsFor(std::size_t count)
{
    return std::bit_ceil(count + count / 3 + 1);
}
} // namespace detail

// Piece -> id for the pieces of a StringTable, which it indexes but does not own: the table must
// outlive it and not change. The first id inserted for a piece wins, as in llama.cpp.
class PieceIndex
{
public:
    PieceIndex() = default;
    PieceIndex(const StringTable &pieces, std::size_t expectedCount)
        : m_pieces(&pieces), m_slots(detail::hashSlotsFor(expectedCount), kEmpty), m_mask(m_slots.size() - 1)
    {}

    void insert(TokenId id)
    {
        const std::string_view piece = (*m_pieces)[static_cast<std::size_t>(id)];
        for (std::size_t slot = hash(piece);; slot = (slot + 1) & m_mask) {
            TokenId &entry = m_slots[slot];
            if (entry == kEmpty) {
                entry = id;
                return;
            }
            if ((*m_pieces)[static_cast<std::size_t>(entry)] == piece)
                return; // a duplicate piece: keep the first id
        }
    }

    std::optional<TokenId> find(std::string_view piece) const
    {
        if (m_slots.empty())
            return std::nullopt;
        for (std::size_t slot = hash(piece);; slot = (slot + 1) & m_mask) {
            const TokenId entry = m_slots[slot];
            if (entry == kEmpty)
                return std::nullopt;
            if ((*m_pieces)[static_cast<std::size_t>(entry)] == piece)
                return entry;
        }
    }

private:
    static constexpr TokenId kEmpty = -1;
    std::size_t hash(std::string_view piece) const { return std::hash<std::string_view>{}(piece)&m_mask; }

    const StringTable *m_pieces = nullptr;
    std::vector<TokenId> m_slots;
    std::size_t m_mask = 0;
};

// (left id, right id) -> the merge's rank and result. The first insert of a pair wins (its lowest
// rank, since merges are inserted in rank order).
class MergeTable
{
public:
    struct Merge
    {
        std::int32_t rank;
        TokenId result;
    };

    MergeTable() = default;
    explicit MergeTable(std::size_t expectedCount)
        : m_slots(detail::hashSlotsFor(expectedCount), Slot{kEmptyKey, {}}), m_mask(m_slots.size() - 1)
    {}

    void insert(TokenId left, TokenId right, Merge merge)
    {
        const std::uint64_t key = pairKey(left, right);
        for (std::size_t slot = hash(key);; slot = (slot + 1) & m_mask) {
            if (m_slots[slot].key == kEmptyKey) {
                m_slots[slot] = Slot{key, merge};
                return;
            }
            if (m_slots[slot].key == key)
                return;
        }
    }

    const Merge *find(TokenId left, TokenId right) const
    {
        if (left < 0 || right < 0 || m_slots.empty())
            return nullptr;
        const std::uint64_t key = pairKey(left, right);
        for (std::size_t slot = hash(key);; slot = (slot + 1) & m_mask) {
            if (m_slots[slot].key == key)
                return &m_slots[slot].merge;
            if (m_slots[slot].key == kEmptyKey)
                return nullptr;
        }
    }

private:
    struct Slot
    {
        std::uint64_t key;
        Merge merge;
    };
    // Ids are non-negative 32-bit values, so no pair of them packs to all ones.
    static constexpr std::uint64_t kEmptyKey = ~std::uint64_t{0};

    static std::uint64_t pairKey(TokenId left, TokenId right)
    {
        return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32) | static_cast<std::uint32_t>(right);
    }
    // Fibonacci hashing: the high bits of key * 2^64/φ spread consecutive ids across the table.
    std::size_t hash(std::uint64_t key) const
    {
        return static_cast<std::size_t>((key * 0x9E3779B97F4A7C15ull) >> 32) & m_mask;
    }

    std::vector<Slot> m_slots;
    std::size_t m_mask = 0;
};

} // namespace kvchat::engine
