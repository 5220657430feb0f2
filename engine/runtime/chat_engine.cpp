// SPDX-License-Identifier: MIT
#include "engine/runtime/chat_engine.h"

#include "engine/kv/conversation_blocks.h"
#include "engine/model/model_fingerprint.h"
#include "engine/model/prompt_tokens.h"
#include "engine/store/turn_lock.h"

#include <algorithm>
#include <chrono>

namespace kvchat::engine {

namespace {

using Ms = std::chrono::duration<double, std::milli>;

// How often a streaming reply's progress is committed, so a crash loses at most this much text.
constexpr auto kProgressInterval = std::chrono::milliseconds(500);

// Positions of KV backed with memory when the engine starts (see ChatEngine::create).
constexpr std::int32_t kCommittedKvTokens = 4096;

std::int64_t nowMs()
{
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

} // namespace

ChatEngine::~ChatEngine()
{
    // Order: the cache returns its blocks to its pool and may write to the store, so it goes
    // before the store; the backend reads the model's mapped weights, so it goes before the model.
    m_cache.reset();
    m_privatePool.reset();
    m_store.reset();
    m_backend.reset();
    m_model.reset();
}

Result<void> ChatEngine::setUpKv(const std::string &databasePath)
{
    const ChatEngineOptions &options = m_options;
    const KvLayout layout = m_backend->kvLayout();
    m_fingerprint = computeModelFingerprint(*m_model, layout, m_backend->kvFormat());
    m_contextLimit = options.contextLimit > 0 ? std::min(options.contextLimit, m_model->config().nCtxTrain)
                                              : m_model->config().nCtxTrain;
    m_contextNotice.clear();
    const std::uint32_t contextBlocks =
        static_cast<std::uint32_t>((m_contextLimit + layout.blockTokens - 1) / layout.blockTokens) + 1;
    std::size_t poolBytes = 0;
    if (options.useCache) {
        KvBudgets budgets = options.budgets.value_or(KvBudgets::machineDefaults(databasePath));
        if (!options.budgets && m_backend->defaultDeviceKvBytes() > 0)
            budgets.deviceBytes = m_backend->defaultDeviceKvBytes();
        if (budgets.deviceBytes / layout.blockBytes() < 2)
            return makeError("the device KV budget (" + std::to_string(budgets.deviceBytes >> 20) +
                             " MiB) is smaller than two KV blocks of this model (" +
                             std::to_string(layout.blockBytes() >> 10) + " KiB each)");
        poolBytes = budgets.deviceBytes;
        // A turn's whole sequence lives in the device pool, one block more than its tokens fill
        // (a restored partial tail block is copied while the cached one stays pinned). A context
        // longer than that would fail mid-reply, so the context is what the pool holds; older
        // messages then leave the window as they do at the model's own limit.
        const std::int64_t poolTokens =
            (static_cast<std::int64_t>(budgets.deviceBytes / layout.blockBytes()) - 1) * layout.blockTokens;
        if (poolTokens < m_contextLimit) {
            m_contextNotice = "the context is " + std::to_string(poolTokens) + " of the model's " +
                              std::to_string(m_contextLimit) + " tokens: the device KV budget (" +
                              std::to_string(budgets.deviceBytes >> 20) + " MiB) holds no more; " +
                              std::to_string((contextBlocks * layout.blockBytes() + (1u << 20) - 1) >> 20) +
                              " MiB hold the whole context";
            m_contextLimit = static_cast<std::int32_t>(poolTokens);
        }
        m_cache = std::make_unique<TieredKvCache>(layout, m_fingerprint, budgets, m_store.get(), m_backend->kvMemory());
    } else {
        poolBytes = contextBlocks * layout.blockBytes();
        m_privatePool = std::make_unique<KvBlockPool>(layout, contextBlocks, m_backend->kvMemory());
    }
    // The KV memory of a long conversation is taken now, as llama.cpp clears its whole KV buffer
    // at start-up, rather than page by page inside someone's first turn (a restore after a restart
    // writes every byte of ~90 MB of blocks for 2,000 tokens of SmolLM2).
    KvBlockPool &pool = m_cache ? m_cache->devicePool() : *m_privatePool;
    if (!pool.valid())
        return makeError(std::string("cannot reserve ") + std::to_string(poolBytes >> 20) + " MiB of " +
                         (pool.memory().hostAccessible() ? "memory" : "GPU memory") +
                         " for the KV cache (lower the device KV budget)");
    const std::int32_t warmTokens = std::min(m_contextLimit, kCommittedKvTokens);
    pool.commitBlocks(static_cast<std::uint32_t>((warmTokens + layout.blockTokens - 1) / layout.blockTokens));
    return {};
}

Result<std::unique_ptr<ChatEngine>> ChatEngine::create(const std::string &modelPath, const std::string &databasePath,
                                                       const ChatEngineOptions &options)
{
    std::unique_ptr<ChatEngine> engine(new ChatEngine());
    engine->m_options = options;
    auto model = LlamaModel::load(modelPath);
    if (!model)
        return model.error();
    engine->m_model = std::move(model).value();
    engine->m_template = engine->m_model->chatTemplate();
    if (!options.templateName.empty()) {
        auto chosen = ChatTemplate::byName(options.templateName);
        if (!chosen)
            return makeError("unknown chat template '" + options.templateName + "'");
        engine->m_template = *chosen;
    }
    auto store = SessionStore::open(databasePath, options.storeOptions);
    if (!store)
        return store.error();
    engine->m_store = std::move(store).value();
    BackendChoice choice = chooseBackend(options.backend, *engine->m_model, options.threads, options.kvBlockTokens);
    engine->m_backend = std::move(choice.backend);
    engine->m_backendNotice = std::move(choice.notice);
    if (options.wrapBackend)
        engine->m_backend = options.wrapBackend(std::move(engine->m_backend));
    auto kvReady = engine->setUpKv(databasePath);
    if (!kvReady && engine->m_backend->name() != "cpu") {
        // The GPU took the weights but cannot hold the KV cache as well: run on the CPU, whose KV
        // is reserved address space taken as it fills, and say why.
        engine->m_backendNotice = "running on the CPU: " + kvReady.error().message;
        engine->m_cache.reset();
        engine->m_privatePool.reset();
        engine->m_backend = makeCpuBackend(*engine->m_model, options.threads, options.kvBlockTokens);
        kvReady = engine->setUpKv(databasePath);
    }
    if (!kvReady)
        return kvReady.error();
    return engine;
}

std::vector<TokenId> ChatEngine::renderTokens(const ChatMessage &message, std::size_t index, bool hasSystem,
                                              bool atSequenceStart) const
{
    const std::vector<PromptPiece> pieces = m_template.renderMessage(message, index, hasSystem);
    return tokenizePieces(m_model->tokenizer(), pieces, atSequenceStart);
}

Result<ConversationRecord> ChatEngine::openConversation(const TurnRequest &request, bool &created)
{
    created = false;
    auto found = m_store->findConversation(request.conversation);
    if (!found)
        return found.error();
    if (found->has_value())
        return **found;
    // A new conversation: the given system prompt, else the one the model's template would insert.
    const std::string system = request.systemPrompt.value_or(m_template.defaultSystemPrompt());
    auto record = m_store->createConversation(request.conversation, system);
    created = record.ok();
    if (record && request.title) {
        if (auto ok = m_store->renameConversation(record->id, *request.title); !ok)
            return ok.error();
        record->title = *request.title;
    }
    return record;
}

Result<void> ChatEngine::ensureTokenized(ConversationRecord &conversation, std::vector<MessageRecord> &messages)
{
    const std::string fingerprint = m_fingerprint.hex();
    if (conversation.tokensFingerprint == fingerprint)
        return {};
    // Tokens from another model (or none yet): tokenize every message once, for this model.
    const bool hasSystem = !conversation.systemPrompt.empty();
    conversation.systemTokens =
        hasSystem ? renderTokens({"system", conversation.systemPrompt}, 0, true, true) : std::vector<TokenId>{};
    std::vector<std::pair<std::int64_t, std::vector<std::int32_t>>> updates;
    for (MessageRecord &m : messages) {
        const std::size_t index = static_cast<std::size_t>(m.index) + (hasSystem ? 1 : 0);
        // An assistant message renders as generation prompt + content + closing suffix: its stored form.
        std::vector<TokenId> tokens = renderTokens({m.role, m.content}, index, hasSystem, !hasSystem && m.index == 0);
        m.tokens = tokens;
        updates.emplace_back(m.id, std::move(tokens));
    }
    if (auto ok = m_store->setMessageTokens(updates); !ok)
        return ok;
    conversation.tokensFingerprint = fingerprint;
    conversation.windowStart = 0;
    return m_store->setConversationTokens(conversation.id, conversation.systemTokens, fingerprint, 0);
}

Result<void> ChatEngine::repairInterruptedReplies(const ConversationRecord &conversation,
                                                  std::vector<MessageRecord> &messages)
{
    // A reply cut off by a crash holds the text saved so far but only its generation prompt as
    // tokens. Close it as the template would (prompt + text + suffix) so the next turn's sequence
    // is well formed; it stays marked incomplete.
    const bool hasSystem = !conversation.systemPrompt.empty();
    std::vector<std::pair<std::int64_t, std::vector<std::int32_t>>> updates;
    for (MessageRecord &m : messages) {
        if (m.complete || m.role != "assistant")
            continue;
        const std::size_t index = static_cast<std::size_t>(m.index) + (hasSystem ? 1 : 0);
        std::vector<TokenId> tokens = renderTokens({m.role, m.content}, index, hasSystem, false);
        if (tokens == m.tokens)
            continue;
        m.tokens = tokens;
        updates.emplace_back(m.id, std::move(tokens));
    }
    if (updates.empty())
        return {};
    return m_store->setMessageTokens(updates);
}

std::vector<TokenId> ChatEngine::sequenceOf(const ConversationRecord &conversation,
                                            const std::vector<MessageRecord> &messages) const
{
    return conversationSequence(conversation, messages, conversation.windowStart);
}

Error ChatEngine::contextTooSmall(std::size_t neededTokens) const
{
    std::string message = "the message needs " + std::to_string(neededTokens) +
                          " tokens with the system prompt; the context holds " + std::to_string(m_contextLimit);
    if (!m_contextNotice.empty())
        message += " (" + m_contextNotice + ")";
    return Error{message};
}

void ChatEngine::abandonTurn(const ConversationRecord &conversation, std::int32_t windowBefore,
                             std::int32_t firstNewIndex, const MessageRecord *assistant, const std::string &replySoFar)
{
    // Best effort: the turn has already failed, and its error is what the caller reports.
    if (assistant && !replySoFar.empty()) {
        // A reply was shown: keep it, closed as the template would close it (so the next turn's
        // sequence holds what the user saw) and marked incomplete, as a reply cut off by a crash.
        const bool hasSystem = !conversation.systemPrompt.empty();
        const std::size_t index = static_cast<std::size_t>(assistant->index) + (hasSystem ? 1 : 0);
        (void)m_store->updateMessage(assistant->id, replySoFar, false,
                                     renderTokens({"assistant", replySoFar}, index, hasSystem, false));
        return;
    }
    // Nothing was shown: the turn's messages go (its caller gives the user the text back), and the
    // context window is where it was, or the next turn would leave out history for nothing.
    (void)m_store->truncateMessages(conversation.id, firstNewIndex);
    if (conversation.windowStart != windowBefore)
        (void)m_store->setConversationTokens(conversation.id, conversation.systemTokens, conversation.tokensFingerprint,
                                             windowBefore);
}

Result<TurnResult> ChatEngine::runTurn(const TurnRequest &request)
{
    const Clock::time_point pickedUp = Clock::now();
    // Before the conversation is read: a turn of another process on this database ends first.
    const std::optional<TurnLock> turnLock = TurnLock::acquire(m_store->path(), request.whileWaiting);
    if (!turnLock)
        return makeError("given up while waiting for another process's turn on " + m_store->path());
    const Tokenizer &tokenizer = m_model->tokenizer();
    TurnResult result;

    bool created = false;
    auto conversation = openConversation(request, created);
    if (!conversation)
        return conversation.error();
    ConversationRecord &conv = *conversation;
    result.conversationId = conv.id;
    // Refused before the user's text is saved: a conversation this turn created goes again, so a
    // message too long for the context leaves nothing behind (the caller still has the text).
    const auto refuse = [&](const Error &error) -> Result<TurnResult> {
        if (created)
            (void)m_store->deleteConversation(conv.id);
        return error;
    };
    auto loaded = m_store->messages(conv.id);
    if (!loaded)
        return refuse(loaded.error());
    std::vector<MessageRecord> &messages = *loaded;
    if (auto ok = ensureTokenized(conv, messages); !ok)
        return refuse(ok.error());
    const bool hasSystem = !conv.systemPrompt.empty();
    if (auto ok = repairInterruptedReplies(conv, messages); !ok)
        return refuse(ok.error());

    // An edit or a regenerate replaces the messages from truncateFrom on: dropped here first, and
    // from the store only once the new message is known to fit (a refused edit loses nothing).
    if (request.truncateFrom)
        std::erase_if(messages, [&](const MessageRecord &m) { return m.index >= *request.truncateFrom; });
    const std::vector<TokenId> assistantPrefix = tokenizePieces(tokenizer, m_template.assistantPrefix(), false);
    std::vector<TokenId> userTokens;
    if (request.userText) {
        // A message that can never fit the context is refused before it is saved (the UI keeps
        // it in the composer).
        const std::size_t index = messages.size() + (hasSystem ? 1 : 0);
        const bool atStart = !hasSystem && messages.empty();
        userTokens = renderTokens({"user", *request.userText}, index, hasSystem, atStart);
        const std::size_t minimum = conv.systemTokens.size() + userTokens.size() + assistantPrefix.size();
        if (minimum >= static_cast<std::size_t>(m_contextLimit))
            return refuse(contextTooSmall(minimum));
    } else if (messages.empty() || messages.back().role != "user") {
        return refuse(makeError("conversation '" + request.conversation + "' has no user message to reply to"));
    }
    if (request.truncateFrom)
        if (auto ok = truncateStored(conv, *request.truncateFrom); !ok)
            return ok.error();

    // The user's text is committed before anything can fail in generation. From here on a failure
    // leaves the stored conversation as the user saw it (abandonTurn).
    const std::int32_t windowBefore = conv.windowStart;
    const std::int32_t firstNewIndex = static_cast<std::int32_t>(messages.size());
    std::string textSoFar;
    const auto fail = [&](const Error &error, const MessageRecord *assistant) -> Result<TurnResult> {
        abandonTurn(conv, windowBefore, firstNewIndex, assistant, textSoFar);
        return error;
    };
    if (request.userText) {
        auto saved = m_store->appendMessage(conv.id, "user", *request.userText, true, userTokens);
        if (!saved)
            return refuse(saved.error());
        messages.push_back(std::move(saved).value());
    }

    std::vector<TokenId> sequence = sequenceOf(conv, messages);
    sequence.insert(sequence.end(), assistantPrefix.begin(), assistantPrefix.end());

    // Context full: keep the system prompt and as many recent messages as fit (starting at a user
    // message); the system prompt's KV is still exact, the kept messages move and are recomputed.
    const std::int32_t reserve = std::min(request.maxNewTokens, m_contextLimit / 4);
    while (static_cast<std::int32_t>(sequence.size()) + reserve > m_contextLimit &&
           conv.windowStart < messages.back().index) {
        ++conv.windowStart;
        while (conv.windowStart < messages.back().index &&
               messages[static_cast<std::size_t>(conv.windowStart)].role != "user")
            ++conv.windowStart;
        sequence = sequenceOf(conv, messages);
        sequence.insert(sequence.end(), assistantPrefix.begin(), assistantPrefix.end());
    }
    if (static_cast<std::int32_t>(sequence.size()) >= m_contextLimit)
        return fail(contextTooSmall(sequence.size()), nullptr);
    if (conv.windowStart != windowBefore)
        if (auto ok =
                m_store->setConversationTokens(conv.id, conv.systemTokens, conv.tokensFingerprint, conv.windowStart);
            !ok)
            return fail(ok.error(), nullptr);

    auto assistant = m_store->appendMessage(conv.id, "assistant", "", false, assistantPrefix);
    if (!assistant)
        return fail(assistant.error(), nullptr);
    result.assistantMessageId = assistant->id;
    if (request.onMessagesSaved)
        request.onMessagesSaved(conv, request.userText ? &messages.back() : nullptr, assistant->id);

    // Restore the cached prefix. The cache's pins on seq end with the turn, however it ends
    // (committing the sequence releases them too).
    KvSequence seq(m_cache ? m_cache->devicePool() : *m_privatePool);
    const struct ReleasePins
    {
        TieredKvCache *cache;
        KvSequence &seq;
        ~ReleasePins()
        {
            if (cache)
                cache->releaseSequence(seq);
        }
    } releasePins{m_cache.get(), seq};
    RestoreReport restore;
    const Clock::time_point restoreStart = Clock::now();
    if (m_cache) {
        auto restored = m_cache->restorePrefix(sequence, seq);
        if (!restored)
            return fail(restored.error(), &*assistant);
        restore = *restored;
    }
    const Clock::time_point restored = Clock::now();

    // Generate, committing progress now and then so a crash keeps what was already shown.
    GenerationRequest gen;
    gen.newTokens.assign(sequence.begin() + seq.nTokens(), sequence.end());
    gen.maxNewTokens = request.maxNewTokens;
    gen.contextLimit = m_contextLimit;
    gen.sampling = request.sampling;
    gen.submitted = restored;
    gen.firstLogits = request.firstLogits;
    Clock::time_point lastSave = Clock::now();
    gen.onText = [&](std::string_view text) {
        textSoFar += text;
        if (Clock::now() - lastSave >= kProgressInterval) {
            (void)m_store->updateMessage(result.assistantMessageId, textSoFar, false, assistantPrefix);
            lastSave = Clock::now();
        }
        return request.onText ? request.onText(text) : true;
    };
    // The TTFT record: every part is the difference of two measured instants, so they add up.
    auto fillTtft = [&](const GenerationMetrics &gm) {
        TurnRecord &rec = result.record;
        rec.conversationId = conv.id;
        rec.messageId = result.assistantMessageId;
        rec.createdAtMs = nowMs();
        rec.queueMs = Ms(pickedUp - request.submitted).count();
        const Ms restoreTotal = restored - restoreStart;
        rec.restoreDeviceMs = restore.device.count();
        rec.restoreHostMs = restore.host.count();
        rec.restoreDiskMs = restore.disk.count();
        // Preparation: loading and saving messages, tokenizing, planning the prefix, and the gap
        // before the prefill starts; what remains of the restore time beyond the per-tier copies.
        rec.prepareMs = Ms(restoreStart - pickedUp).count() +
                        (restoreTotal.count() - rec.restoreDeviceMs - rec.restoreHostMs - rec.restoreDiskMs) +
                        gm.queue.count();
        rec.prefillMs = gm.prefill.count();
        rec.firstDecodeMs = gm.firstSample.count();
        rec.ttftMs = Ms(restored - request.submitted).count() + gm.ttft.count();
        rec.promptTokens = static_cast<std::int32_t>(sequence.size());
        rec.reusedDevice = restore.nDevice;
        rec.reusedHost = restore.nHost;
        rec.reusedDisk = restore.nDisk;
        rec.recomputed = static_cast<std::int32_t>(gen.newTokens.size());
    };
    gen.onFirstToken = [&](const GenerationMetrics &gm) {
        fillTtft(gm);
        if (request.onFirstToken)
            request.onFirstToken(result.record);
    };
    Generator generator(*m_model, *m_backend);
    auto generated = generator.generate(gen, seq);
    if (!generated)
        return fail(generated.error(), &*assistant);
    const GenerationMetrics &gm = generated->metrics;

    // The assistant message as stored: generation prompt, generated tokens, closing suffix (its
    // first token is skipped when generation already produced it).
    std::vector<TokenId> assistantTokens = assistantPrefix;
    assistantTokens.insert(assistantTokens.end(), generated->tokens.begin(), generated->tokens.end());
    const std::vector<TokenId> suffix = tokenizePieces(tokenizer, m_template.assistantSuffix(), false);
    std::size_t skip = 0;
    if (!suffix.empty() && !generated->tokens.empty() && suffix.front() == generated->tokens.back())
        skip = 1;
    else if (!generated->tokens.empty() && tokenizer.isEndOfGeneration(generated->tokens.back()) && !suffix.empty() &&
             tokenizer.isEndOfGeneration(suffix.front()))
        skip = 1; // ended with another end-of-turn token: do not close the turn twice
    assistantTokens.insert(assistantTokens.end(), suffix.begin() + static_cast<std::ptrdiff_t>(skip), suffix.end());

    TurnRecord &rec = result.record;
    fillTtft(gm);
    rec.decodeMs = gm.decode.count();
    rec.decodeTokens = gm.nDecodeTokens;
    rec.stopReason = std::string(stopReasonName(generated->stopReason));

    auto turnId = m_store->finishTurn(result.assistantMessageId, generated->text, true, assistantTokens, rec);
    if (!turnId)
        return fail(turnId.error(), &*assistant);
    rec.id = *turnId;

    if (m_cache) {
        m_cache->recordPrefill(rec.recomputed, gm.prefill);
        // The sequence's KV covers the prompt and every generated token but the last.
        std::vector<TokenId> fed = sequence;
        fed.insert(fed.end(), generated->tokens.begin(), generated->tokens.end() - 1);
        m_cache->commitSequence(conv.id, fed, seq);
        if (auto persisted = m_cache->persist(); !persisted)
            result.warning = persisted.error().message;
    }
    result.reply = generated->text;
    result.generated = generated->tokens;
    result.stopReason = generated->stopReason;
    return result;
}

Result<ConversationRecord> ChatEngine::existingConversation(std::string_view name)
{
    auto found = m_store->findConversation(name);
    if (!found)
        return found.error();
    if (!found->has_value())
        return makeError("no conversation named '" + std::string(name) + "'");
    return std::move(**found);
}

Result<RestoreReport> ChatEngine::prefetch(std::string_view name)
{
    if (!m_cache)
        return RestoreReport{};
    auto found = existingConversation(name);
    if (!found)
        return found.error();
    ConversationRecord conv = *found;
    auto messages = m_store->messages(conv.id);
    if (!messages)
        return messages.error();
    if (auto ok = ensureTokenized(conv, *messages); !ok)
        return ok.error();
    const std::vector<TokenId> sequence = sequenceOf(conv, *messages);
    if (sequence.size() < 2)
        return RestoreReport{};
    return m_cache->prefetch(conv.id, sequence);
}

Result<void> ChatEngine::truncate(std::string_view name, std::int32_t fromIndex)
{
    const std::optional<TurnLock> turnLock = TurnLock::acquire(m_store->path());
    auto found = existingConversation(name);
    if (!found)
        return found.error();
    return truncateStored(*found, fromIndex);
}

Result<void> ChatEngine::truncateStored(ConversationRecord &conversation, std::int32_t fromIndex)
{
    if (auto ok = m_store->truncateMessages(conversation.id, fromIndex); !ok)
        return ok;
    if (conversation.windowStart <= fromIndex)
        return {};
    // The window started in what was deleted: it starts again at the beginning.
    conversation.windowStart = 0;
    return m_store->setConversationTokens(conversation.id, conversation.systemTokens, conversation.tokensFingerprint,
                                          0);
}

Result<void> ChatEngine::deleteConversation(std::string_view name)
{
    const std::optional<TurnLock> turnLock = TurnLock::acquire(m_store->path());
    auto found = existingConversation(name);
    if (!found)
        return found.error();
    const std::int64_t id = found->id;
    // Its blocks are named from its messages, so before they go; the text goes first, its KV after.
    const auto keys = kvBlocksOnlyOf(*m_store, id, m_backend->kvLayout().blockTokens,
                                     m_cache ? m_cache->memoryKeys() : KvBlockKeySet{});
    if (auto deleted = m_store->deleteConversation(id); !deleted)
        return deleted;
    const Result<void> dropped = !keys     ? Result<void>(keys.error())
                                 : m_cache ? m_cache->dropConversationBlocks(id, *keys)
                                           : m_store->deleteKvBlocks(*keys);
    if (!dropped)
        return makeError("the conversation was deleted, but not all of its cached KV: " + dropped.error().message);
    return {};
}

Result<KvResidency> ChatEngine::residency(std::int64_t conversationId)
{
    if (!m_cache)
        return KvResidency{};
    auto conv = m_store->conversation(conversationId);
    if (!conv)
        return conv.error();
    if (!conv->has_value())
        return makeError("no conversation with id " + std::to_string(conversationId));
    if ((*conv)->tokensFingerprint != m_fingerprint.hex())
        return KvResidency{}; // tokenized for another model: nothing of it can be cached for this one
    auto messages = m_store->messages(conversationId);
    if (!messages)
        return messages.error();
    return m_cache->residency(sequenceOf(**conv, *messages));
}

KvCacheStats ChatEngine::cacheStats() const
{
    return m_cache ? m_cache->stats() : KvCacheStats{};
}

std::string ChatEngine::checkCacheInvariants() const
{
    return m_cache ? m_cache->checkInvariants() : std::string();
}

} // namespace kvchat::engine
