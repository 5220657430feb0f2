// SPDX-License-Identifier: MIT
// Chat formats. A model's tokenizer.chat_template (Jinja) is recognised by its signature and mapped
// to one of the built-in styles below; we do not run Jinja. Rendering yields PromptPieces: plain text
// (tokenized like user text, never turned into control tokens) and special pieces (looked up as one
// token when the vocabulary has them, otherwise tokenized as text: TinyLlama's "<|user|>" is text).
//
// Rendering is per message so a conversation can grow turn by turn without re-rendering (and
// re-tokenizing) its history: concatenating renderMessage(m_i, i, ...) for every message and then
// assistantPrefix() equals render(messages, true).
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kvchat::engine {

enum class ChatStyle { Completion, ChatML, Llama2, Llama3, Zephyr, Mistral, Gemma };

struct ChatMessage
{
    std::string role; // "system", "user" or "assistant"
    std::string content;
};

struct PromptPiece
{
    enum class Kind { Text, Special };
    Kind kind = Kind::Text;
    std::string text; // Text: the text; Special: the exact token piece, e.g. "<|im_start|>"

    bool operator==(const PromptPiece &) const = default;
};

class ChatTemplate
{
public:
    // Recognises a Jinja chat template; an empty or unrecognised one gives the Completion style.
    static ChatTemplate detect(std::string_view jinjaSource);
    // A style by its name (see names()), for a user's override; nullopt for an unknown name.
    static std::optional<ChatTemplate> byName(std::string_view name);
    // Names accepted by byName: "completion", "chatml", "llama2", "llama3", "zephyr", "mistral", "gemma".
    static std::span<const std::string_view> names();

    ChatStyle style() const { return m_style; }
    std::string_view name() const;
    // The system prompt the model's own template inserts when a conversation has none (SmolLM2's
    // "You are a helpful AI assistant named SmolLM, ..."), or "".
    const std::string &defaultSystemPrompt() const { return m_defaultSystem; }

    // One message at position index of a conversation; conversationHasSystem says whether message 0
    // is a system message (Llama 2, Mistral and Gemma fold the system text into the first user turn).
    std::vector<PromptPiece> renderMessage(const ChatMessage &message, std::size_t index,
                                           bool conversationHasSystem) const;
    // The generation prompt that opens the assistant's reply (e.g. "<|im_start|>assistant\n").
    std::vector<PromptPiece> assistantPrefix() const;
    // What closes an assistant message after its content (e.g. "<|im_end|>", "\n"); a reply whose
    // generation stopped at the end-of-turn token already holds the first piece.
    std::vector<PromptPiece> assistantSuffix() const;
    // Special pieces that end the assistant's turn (besides the vocabulary's EOS/EOT).
    std::vector<std::string> stopPieces() const;

    // The whole conversation; with addGenerationPrompt, assistantPrefix() is appended.
    std::vector<PromptPiece> render(const std::vector<ChatMessage> &messages, bool addGenerationPrompt) const;

private:
    explicit ChatTemplate(ChatStyle style) : m_style(style) {}
    ChatStyle m_style;
    std::string m_defaultSystem;
};

} // namespace kvchat::engine
