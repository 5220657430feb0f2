// SPDX-License-Identifier: MIT
// Built-in chat styles. Each one reproduces, piece for piece, the Jinja template of a real model as
// Hugging Face renders it (tests/scripts/make_chat_template_reference.py renders them with jinja2):
//   ChatML  HuggingFaceTB/SmolLM2-135M-Instruct (teknium/OpenHermes-2.5, Qwen1.5 and others)
//   Llama2  meta-llama/Llama-2-7b-chat-hf: BOS before every [INST], content .strip()ped
//   Llama3  meta-llama/Meta-Llama-3-8B-Instruct: BOS once, content | trim
//   Zephyr  TinyLlama/TinyLlama-1.1B-Chat-v1.0 (HuggingFaceH4/zephyr-7b-beta)
//   Mistral mistralai/Mistral-7B-Instruct-v0.2 as first published: BOS once, "</s>" with no space
//           after it (v0.1 put one there), no trimming
//   Gemma   google/gemma-2b-it: BOS once, "assistant" becomes "model", content | trim
// Of the [INST] and Gemma families only Llama 2's template has a system block; Mistral's and
// Gemma's reject a system message, so we fold it into the first user turn, joined by "\n\n" as
// Mistral's later templates and Gemma 3's do. Llama 2, Mistral and Gemma therefore render a leading
// system message as the opening of the first user turn and the next user message as its rest, which
// keeps a system prompt that many conversations share a shareable prefix.
//
// BOS and EOS are written as the pieces these models' vocabularies use ("<s>", "</s>", "<bos>",
// ...), not as "the vocabulary's BOS/EOS": a Zephyr-template model whose EOS is another token
// (StableLM-Zephyr's <|endoftext|>) still gets "</s>". Completion writes no BOS; that is left to
// the caller and the tokenizer's add_bos flag.
//
// Where per-message rendering cannot match the Jinja output: an empty conversation renders
// nothing, while Mistral's and Gemma's templates still emit BOS; a conversation made of only a
// system message renders the opened first turn, while Llama 2's renders nothing; and a blank
// system text is not trimmed away together with the user's text. Messages whose role a style has
// no marker for are rendered as user messages.
#include "engine/model/chat_template.h"

#include <array>
#include <utility>

namespace kvchat::engine {

namespace {

constexpr std::array<std::string_view, 7> kNames = {"completion", "chatml",  "llama2", "llama3",
                                                    "zephyr",     "mistral", "gemma"};

bool contains(std::string_view haystack, std::string_view needle)
{
    return haystack.find(needle) != std::string_view::npos;
}

// Python's str.isspace() over one UTF-8 character, because the templates trim with str.strip()
// (Jinja's `| trim` is the same call): ASCII whitespace, the separators \x1c-\x1f, and the Unicode
// spaces U+0085, U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000.
// Returns the character's length in bytes when it is whitespace, 0 otherwise.
std::size_t spaceLengthAt(std::string_view s, std::size_t i)
{
    const auto byte = [&](std::size_t k) {
        return static_cast<unsigned char>(s[k]);
    };
    const unsigned char c = byte(i);
    if (c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f))
        return 1;
    if (c == 0xc2 && i + 1 < s.size() && (byte(i + 1) == 0x85 || byte(i + 1) == 0xa0))
        return 2;
    if (i + 2 >= s.size())
        return 0;
    const unsigned int cp = ((c & 0x0fu) << 12) | ((byte(i + 1) & 0x3fu) << 6) | (byte(i + 2) & 0x3fu);
    if ((c & 0xf0u) != 0xe0u || (byte(i + 1) & 0xc0u) != 0x80u || (byte(i + 2) & 0xc0u) != 0x80u)
        return 0;
    const bool space = cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f ||
                       cp == 0x205f || cp == 0x3000;
    return space ? 3 : 0;
}

std::string_view trimLeft(std::string_view s)
{
    std::size_t i = 0;
    while (i < s.size()) {
        const std::size_t n = spaceLengthAt(s, i);
        if (n == 0)
            break;
        i += n;
    }
    return s.substr(i);
}

std::string_view trimRight(std::string_view s)
{
    while (!s.empty()) {
        // Step back to the first byte of the last character (at most 3 bytes for our spaces).
        std::size_t start = s.size() - 1;
        while (start > 0 && s.size() - start < 3 && (static_cast<unsigned char>(s[start]) & 0xc0u) == 0x80u)
            --start;
        if (spaceLengthAt(s, start) != s.size() - start)
            break;
        s.remove_suffix(s.size() - start);
    }
    return s;
}

std::string_view trim(std::string_view s)
{
    return trimRight(trimLeft(s));
}

// Collects pieces; adjacent text is merged into one Text piece so that the tokenizer sees the same
// runs of text between special tokens as it would in the Jinja output.
class PieceBuilder
{
public:
    PieceBuilder &special(std::string_view piece)
    {
        m_pieces.push_back({PromptPiece::Kind::Special, std::string(piece)});
        return *this;
    }
    PieceBuilder &text(std::string_view text)
    {
        if (text.empty())
            return *this;
        if (!m_pieces.empty() && m_pieces.back().kind == PromptPiece::Kind::Text)
            m_pieces.back().text += text;
        else
            m_pieces.push_back({PromptPiece::Kind::Text, std::string(text)});
        return *this;
    }
    std::vector<PromptPiece> take() { return std::move(m_pieces); }

private:
    std::vector<PromptPiece> m_pieces;
};

// Decodes the escapes a Jinja string literal may hold. Returns nullopt when the text is not a
// plain literal (it ends the literal with a quote or embeds an expression or statement).
std::optional<std::string> decodeJinjaLiteral(std::string_view raw)
{
    std::string out;
    for (std::size_t i = 0; i < raw.size(); ++i) {
        const char c = raw[i];
        if (c == '\'' || c == '"')
            return std::nullopt;
        if (c == '{' && i + 1 < raw.size() && (raw[i + 1] == '{' || raw[i + 1] == '%'))
            return std::nullopt;
        if (c != '\\' || i + 1 == raw.size()) {
            out += c;
            continue;
        }
        const char e = raw[++i];
        switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case '\\':
        case '\'':
        case '"': out += e; break;
        default: out += std::string{'\\', e};
        }
    }
    return out;
}

// The system text a ChatML template writes itself, as in SmolLM2's
//   {% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are ...<|im_end|>\n' }}
// A system block built from a message ('<|im_start|>system\n' + message['content'] + ...) is not a
// literal and is skipped; the first literal one wins.
std::string chatMlDefaultSystem(std::string_view source)
{
    constexpr std::string_view kOpen = "<|im_start|>system";
    constexpr std::string_view kClose = "<|im_end|>";
    for (std::size_t at = source.find(kOpen); at != std::string_view::npos; at = source.find(kOpen, at + 1)) {
        std::size_t begin = at + kOpen.size();
        // The newline is a real one in a GGUF copied from a JSON "\n", or the escape \n when the
        // JSON held "\\n".
        if (source.substr(begin, 1) == "\n")
            begin += 1;
        else if (source.substr(begin, 2) == "\\n")
            begin += 2;
        else
            continue;
        const std::size_t end = source.find(kClose, begin);
        if (end == std::string_view::npos)
            break;
        if (auto text = decodeJinjaLiteral(source.substr(begin, end - begin)))
            return *text;
    }
    return {};
}

bool isAssistant(const ChatMessage &message)
{
    return message.role == "assistant";
}

} // namespace

ChatTemplate ChatTemplate::detect(std::string_view jinjaSource)
{
    const std::string_view s = jinjaSource;
    if (trim(s).empty())
        return ChatTemplate(ChatStyle::Completion);
    // Phi-4 (<|im_sep|>) and SmolVLM (<end_of_utterance>) use <|im_start|> but are not ChatML.
    if (contains(s, "<|im_start|>") && !contains(s, "<|im_sep|>") && !contains(s, "<end_of_utterance>")) {
        ChatTemplate t(ChatStyle::ChatML);
        t.m_defaultSystem = chatMlDefaultSystem(s);
        return t;
    }
    if (contains(s, "<|start_header_id|>") && contains(s, "<|end_header_id|>"))
        return ChatTemplate(ChatStyle::Llama3);
    if (contains(s, "<start_of_turn>"))
        return ChatTemplate(ChatStyle::Gemma);
    // Both families write [INST]; only Llama 2's has a <<SYS>> block. Later Mistral templates
    // (v0.3's [AVAILABLE_TOOLS], v7's [SYSTEM_PROMPT]) differ in spacing and system placement, but
    // the v0.2 rendering is far closer for them than plain completion.
    if (contains(s, "[INST]"))
        return ChatTemplate(contains(s, "<<SYS>>") ? ChatStyle::Llama2 : ChatStyle::Mistral);
    // Phi-3 also writes <|user|> and <|assistant|> but ends turns with <|end|>, not EOS.
    if (contains(s, "<|user|>") && contains(s, "<|assistant|>") && !contains(s, "<|end|>") &&
        (contains(s, "eos_token") || contains(s, "</s>")))
        return ChatTemplate(ChatStyle::Zephyr);
    return ChatTemplate(ChatStyle::Completion);
}

std::optional<ChatTemplate> ChatTemplate::byName(std::string_view name)
{
    for (std::size_t i = 0; i < kNames.size(); ++i) {
        if (kNames[i] == name)
            return ChatTemplate(static_cast<ChatStyle>(i));
    }
    return std::nullopt;
}

std::span<const std::string_view> ChatTemplate::names()
{
    return kNames;
}

std::string_view ChatTemplate::name() const
{
    return kNames[static_cast<std::size_t>(m_style)];
}

std::vector<PromptPiece> ChatTemplate::renderMessage(const ChatMessage &message, std::size_t index,
                                                     bool conversationHasSystem) const
{
    PieceBuilder out;
    const std::string_view content = message.content;
    const bool leadingSystem = index == 0 && message.role == "system";
    // The user message that completes the turn a leading system message opened (folding styles).
    const bool closesSystemTurn = index == 1 && conversationHasSystem;

    switch (m_style) {
    case ChatStyle::Completion:
        // Plain text: a new non-assistant message starts a new paragraph; an assistant message
        // continues the text directly, as the model generated it with no prefix.
        if (index > 0 && !isAssistant(message))
            out.text("\n\n");
        out.text(content);
        break;

    case ChatStyle::ChatML:
        out.special("<|im_start|>").text(message.role).text("\n").text(content);
        out.special("<|im_end|>").text("\n");
        break;

    case ChatStyle::Llama2:
        // '<<SYS>>\n' + system + '\n<</SYS>>\n\n' + user is .strip()ped as one string, so only the
        // user's trailing space goes; the "\n\n" belongs to the user half so that a blank user
        // message strips it as the template does.
        if (leadingSystem) {
            out.special("<s>").text("[INST] <<SYS>>\n").text(content).text("\n<</SYS>>");
        } else if (isAssistant(message)) {
            if (closesSystemTurn)
                out.text(" [/INST]");
            out.text(" ").text(trim(content)).text(" ").special("</s>");
        } else if (closesSystemTurn) {
            out.text(trimRight("\n\n" + message.content)).text(" [/INST]");
        } else {
            out.special("<s>").text("[INST] ").text(trim(content)).text(" [/INST]");
        }
        break;

    case ChatStyle::Llama3:
        if (index == 0)
            out.special("<|begin_of_text|>");
        out.special("<|start_header_id|>").text(message.role).special("<|end_header_id|>");
        out.text("\n\n").text(trim(content)).special("<|eot_id|>");
        break;

    case ChatStyle::Zephyr:
        if (message.role == "system" || isAssistant(message))
            out.special("<|" + message.role + "|>");
        else
            out.special("<|user|>");
        out.text("\n").text(content).special("</s>").text("\n");
        break;

    case ChatStyle::Mistral:
        if (index == 0)
            out.special("<s>");
        if (leadingSystem) {
            out.text("[INST] ").text(content).text("\n\n");
        } else if (isAssistant(message)) {
            if (closesSystemTurn)
                out.text(" [/INST]");
            out.text(content).special("</s>");
        } else {
            if (!closesSystemTurn)
                out.text("[INST] ");
            out.text(content).text(" [/INST]");
        }
        break;

    case ChatStyle::Gemma:
        // As in Llama 2, system + "\n\n" + user is trimmed as one string.
        if (index == 0)
            out.special("<bos>");
        if (leadingSystem) {
            out.special("<start_of_turn>").text("user\n").text(trimLeft(content));
            break;
        }
        if (closesSystemTurn) {
            out.text(trimRight("\n\n" + (isAssistant(message) ? std::string() : message.content)));
            out.special("<end_of_turn>").text("\n");
            if (!isAssistant(message))
                break;
        }
        out.special("<start_of_turn>").text(isAssistant(message) ? "model" : "user").text("\n");
        out.text(trim(content)).special("<end_of_turn>").text("\n");
        break;
    }
    return out.take();
}

std::vector<PromptPiece> ChatTemplate::assistantPrefix() const
{
    PieceBuilder out;
    switch (m_style) {
    case ChatStyle::Completion:
    case ChatStyle::Llama2:  // the user turn's " [/INST]" already invites the reply
    case ChatStyle::Mistral: // likewise
        break;
    case ChatStyle::ChatML: out.special("<|im_start|>").text("assistant\n"); break;
    case ChatStyle::Llama3:
        out.special("<|start_header_id|>").text("assistant").special("<|end_header_id|>").text("\n\n");
        break;
    case ChatStyle::Zephyr: out.special("<|assistant|>").text("\n"); break;
    case ChatStyle::Gemma: out.special("<start_of_turn>").text("model\n"); break;
    }
    return out.take();
}

std::vector<PromptPiece> ChatTemplate::assistantSuffix() const
{
    // Llama 2's template writes " </s>" after a reply; the space is left out here so that the
    // first piece is the end-of-turn token a finished reply already holds.
    PieceBuilder out;
    switch (m_style) {
    case ChatStyle::Completion: break;
    case ChatStyle::ChatML: out.special("<|im_end|>").text("\n"); break;
    case ChatStyle::Llama2:
    case ChatStyle::Mistral: out.special("</s>"); break;
    case ChatStyle::Llama3: out.special("<|eot_id|>"); break;
    case ChatStyle::Zephyr: out.special("</s>").text("\n"); break;
    case ChatStyle::Gemma: out.special("<end_of_turn>").text("\n"); break;
    }
    return out.take();
}

std::vector<std::string> ChatTemplate::stopPieces() const
{
    // EOS-terminated styles list "</s>" too: the vocabulary's EOS is usually that token, but the
    // template's turn end is what matters.
    switch (m_style) {
    case ChatStyle::Completion: return {};
    case ChatStyle::ChatML: return {"<|im_end|>"};
    case ChatStyle::Llama2:
    case ChatStyle::Zephyr:
    case ChatStyle::Mistral: return {"</s>"};
    case ChatStyle::Llama3: return {"<|eot_id|>"};
    case ChatStyle::Gemma: return {"<end_of_turn>"};
    }
    return {};
}

std::vector<PromptPiece> ChatTemplate::render(const std::vector<ChatMessage> &messages, bool addGenerationPrompt) const
{
    // Built from the per-message pieces so that render() and incremental rendering cannot drift.
    std::vector<PromptPiece> out;
    const bool hasSystem = !messages.empty() && messages.front().role == "system";
    const auto append = [&out](std::vector<PromptPiece> pieces) {
        for (auto &piece : pieces)
            out.push_back(std::move(piece));
    };
    for (std::size_t i = 0; i < messages.size(); ++i)
        append(renderMessage(messages[i], i, hasSystem));
    if (addGenerationPrompt)
        append(assistantPrefix());
    return out;
}

} // namespace kvchat::engine
