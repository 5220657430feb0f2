// SPDX-License-Identifier: MIT
// The commands that read (and delete from) the session store without a model:
//   sessions --db FILE list [--json] | show NAME | delete NAME | export NAME --format md|json
//   latency  --db FILE [--session NAME] --format csv|json
// Scripts depend on these forms and on the output formats (conversation_export.h and below).
// None of them creates a database: a --db path that does not exist is an error.
#include "app/cli/cli_args.h"
#include "app/cli/cli_commands.h"
#include "engine/kv/conversation_blocks.h"
#include "engine/kv/kv_cache.h"
#include "engine/store/conversation_export.h"
#include "engine/store/session_store.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <system_error>

namespace kvchat::cli {

using namespace kvchat::engine;
using json = nlohmann::ordered_json; // keys in the order written

namespace {

// Opens an existing store. Read-only for the commands that only read, so that listing a database
// another process is writing (a chat in progress) never takes a write lock or migrates it.
std::unique_ptr<SessionStore> openExisting(const Args &args, bool writable)
{
    const std::string path = args.required("--db", "FILE");
    std::error_code ec;
    // Checked first: a read-write open (delete) would create an empty database at a mistyped path,
    // and "does not exist" says more than SQLite's "unable to open database file".
    if (!std::filesystem::is_regular_file(path, ec))
        throw CommandError{"no session database at '" + path + "' (" +
                           (std::filesystem::exists(path, ec) ? "not a regular file" : "the file does not exist") +
                           ")"};
    SessionStoreOptions options;
    options.readOnly = !writable;
    auto store = SessionStore::open(path, options);
    if (!store)
        throw CommandError{store.error().message};
    return std::move(store).value();
}

template <typename T> T valueOrFail(Result<T> result)
{
    if (!result)
        throw CommandError{result.error().message};
    return std::move(result).value();
}

// By name, else by title when exactly one conversation has it (the app names conversations by
// date and time and shows titles, which the user may have changed).
ConversationRecord findOrFail(SessionStore &store, const std::string &name)
{
    auto found = store.findConversation(name);
    if (!found)
        throw CommandError{found.error().message};
    if (*found)
        return std::move(**found);
    std::vector<ConversationRecord> titled;
    for (ConversationRecord &c : valueOrFail(store.listConversations()))
        if (c.title == name)
            titled.push_back(std::move(c));
    if (titled.size() > 1)
        throw CommandError{std::to_string(titled.size()) + " conversations are titled '" + name + "' in " +
                           store.path() + ": name one (kvchat-cli sessions --db FILE list shows names and titles)"};
    if (titled.empty())
        throw CommandError{"no conversation named or titled '" + name + "' in " + store.path() +
                           " (kvchat-cli sessions --db FILE list shows them)"};
    return std::move(titled.front());
}

std::string formatOption(const Args &args, std::initializer_list<const char *> allowed)
{
    std::string choices;
    for (const char *c : allowed) {
        if (!choices.empty())
            choices += '|';
        choices += c;
    }
    const std::string format = args.required("--format", choices);
    for (const char *c : allowed)
        if (format == c)
            return format;
    throw UsageError{"--format expects " + choices + ", got '" + format + "'"};
}

// stdout may be a closed pipe or a full disk; a truncated export must not exit 0.
void writeOut(const std::string &text)
{
    if (std::fwrite(text.data(), 1, text.size(), stdout) != text.size() || std::fflush(stdout) != 0)
        throw CommandError{"writing to standard output failed"};
}

std::string isoUtcSeconds(std::int64_t epochMs)
{
    using namespace std::chrono;
    const sys_time<milliseconds> time{milliseconds(epochMs)};
    const sys_days day = floor<days>(time);
    const year_month_day ymd{day};
    const hh_mm_ss<seconds> hms{floor<seconds>(time - day)};
    char buf[40];
    std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02dZ", static_cast<int>(ymd.year()),
                  static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                  static_cast<int>(hms.hours().count()), static_cast<int>(hms.minutes().count()),
                  static_cast<int>(hms.seconds().count()));
    return buf;
}

void expectPositionals(const Args &args, std::size_t count, const char *usage)
{
    if (args.positionals().size() != count)
        throw UsageError{std::string("expects ") + usage};
}

// One line per conversation, most recently updated first, tab-separated:
//   NAME <TAB> MESSAGE-COUNT <TAB> UPDATED (ISO 8601 UTC, seconds) [<TAB> TITLE]
// The title column is there only when the title differs from the name. A name holding a tab or a
// line break makes this ambiguous; --json is the form for such names, and for scripts in general.
void listSessions(SessionStore &store, bool asJson)
{
    const std::vector<ConversationRecord> conversations = valueOrFail(store.listConversations());
    json rows = json::array();
    std::string text;
    for (const ConversationRecord &c : conversations) {
        const std::size_t nMessages = valueOrFail(store.messages(c.id)).size();
        if (asJson) {
            rows.push_back({{"name", c.name},
                            {"title", c.title},
                            {"messages", nMessages},
                            {"created_at", isoUtcSeconds(c.createdAtMs)},
                            {"updated_at", isoUtcSeconds(c.updatedAtMs)}});
        } else {
            text += c.name + "\t" + std::to_string(nMessages) + "\t" + isoUtcSeconds(c.updatedAtMs);
            if (c.title != c.name)
                text += "\t" + c.title;
            text += "\n";
        }
    }
    writeOut(asJson ? rows.dump(2, ' ', false, json::error_handler_t::replace) + "\n" : text);
}

} // namespace

int runSessions(int argc, char **argv)
{
    const Args args = Args::parse(argc, argv, 2, OptionSpec{{"--db", "--format"}, {"--json"}});
    if (args.positionals().empty())
        throw UsageError{"expects a subcommand: list, show NAME, delete NAME or export NAME --format md|json"};
    const std::string sub = args.positionals().front();
    if (sub != "list" && sub != "show" && sub != "delete" && sub != "export")
        throw UsageError{"unknown subcommand '" + sub + "' (expected list, show, delete or export)"};
    if (args.has("--json") && sub != "list")
        throw UsageError{"--json applies to 'list' only (use export NAME --format json)"};
    if (args.has("--format") && sub != "export")
        throw UsageError{"--format applies to 'export' only"};

    if (sub == "list") {
        expectPositionals(args, 1, "no argument after 'list'");
        auto store = openExisting(args, false);
        listSessions(*store, args.has("--json"));
        return 0;
    }
    expectPositionals(args, 2, ("exactly one NAME after '" + sub + "'").c_str());
    const std::string &name = args.positionals()[1];
    // Validated before opening so that a typo in --format does not depend on the database.
    const std::string format = sub == "export" ? formatOption(args, {"md", "json"}) : std::string();
    auto store = openExisting(args, false);
    const ConversationRecord conversation = findOrFail(*store, name);

    if (sub == "delete") {
        // Opened for writing only once the name is known to exist: a read-write open would turn
        // an empty file into a database, or migrate an older one, just to report a typo.
        store.reset();
        store = openExisting(args, true);
        // With the KV blocks only it reaches (they encode its text), for the engine's block size:
        // named from its messages, so before they go; the text goes first, its KV after.
        const auto blocks = valueOrFail(kvBlocksOnlyOf(*store, conversation.id, KvLayout{}.blockTokens));
        auto deleted = store->deleteConversation(conversation.id);
        if (!deleted)
            throw CommandError{deleted.error().message};
        if (auto dropped = store->deleteKvBlocks(blocks); !dropped)
            throw CommandError{"the conversation was deleted, but not all of its cached KV: " +
                               dropped.error().message};
        return 0;
    }
    const std::vector<MessageRecord> messages = valueOrFail(store->messages(conversation.id));
    if (sub == "show" || format == "md") {
        writeOut(conversationMarkdown(conversation, messages));
    } else {
        const std::vector<TurnRecord> turns = valueOrFail(store->turns(conversation.id));
        writeOut(conversationJson(conversation, messages, turns));
    }
    return 0;
}

int runLatency(int argc, char **argv)
{
    const Args args = Args::parse(argc, argv, 2, OptionSpec{{"--db", "--session", "--format"}, {}});
    if (!args.positionals().empty())
        throw UsageError{"unexpected argument '" + args.positionals().front() + "'"};
    const std::string format = formatOption(args, {"csv", "json"});
    auto store = openExisting(args, false);

    std::map<std::int64_t, std::string> names;
    for (const ConversationRecord &c : valueOrFail(store->listConversations()))
        names[c.id] = c.name;
    std::optional<std::int64_t> only;
    if (auto session = args.value("--session"))
        only = findOrFail(*store, *session).id;
    const std::vector<TurnRecord> turns = valueOrFail(store->turns(only));
    writeOut(format == "csv" ? latencyCsv(turns, names) : latencyJson(turns, names));
    return 0;
}

} // namespace kvchat::cli
