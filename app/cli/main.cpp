// SPDX-License-Identifier: MIT
// kvchat-cli: the engine from the command line. Scripts rely on the exact command forms in the
// README; every error ends with a non-zero status and one line on stderr.
#include "app/cli/cli_args.h"
#include "app/cli/cli_commands.h"

#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

namespace {

constexpr const char *kUsage =
    "usage: kvchat-cli COMMAND [options]\n"
    "  generate -m MODEL.gguf -p PROMPT [-n N] [--temp T] [--seed S] [--threads K] [--backend B] [--json]\n"
    "           [--top-k K] [--top-p P] [--min-p P] [--repeat-penalty R] [--ctx N]\n"
    "  tokenize -m MODEL.gguf TEXT [--json]\n"
    "  info     -m MODEL.gguf\n"
    "  chat     -m MODEL.gguf --db FILE --session NAME [--system TEXT] --message TEXT [-n N] [--temp T]\n"
    "           [--seed S] [--no-cache] [--device-mb N] [--host-mb N] [--disk-mb N] [--threads K] [--backend B]\n"
    "           [--json]\n"
    "  replay   -m MODEL.gguf --db FILE SCRIPT.jsonl [--device-mb N] [--host-mb N] [--disk-mb N] [--json]\n"
    "  sessions --db FILE list | show NAME | delete NAME | export NAME --format md|json\n"
    "  latency  --db FILE [--session NAME] --format csv|json\n"
    "  --backend B (generate, chat, replay): cpu (default), cuda (the GPU, or the CPU with a notice where\n"
    "           it cannot run) or auto (the GPU where one is usable)\n";

} // namespace

int main(int argc, char **argv)
{
    using namespace kvchat::cli;
    if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
        std::fputs(kUsage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const std::string command = argv[1];
    try {
        if (command == "generate")
            return runGenerate(argc, argv);
        if (command == "tokenize")
            return runTokenize(argc, argv);
        if (command == "info")
            return runInfo(argc, argv);
        if (command == "chat")
            return runChat(argc, argv);
        if (command == "replay")
            return runReplay(argc, argv);
        if (command == "sessions")
            return runSessions(argc, argv);
        if (command == "latency")
            return runLatency(argc, argv);
        std::fprintf(stderr, "kvchat-cli: unknown command '%s' (try --help)\n", command.c_str());
        return 2;
    } catch (const UsageError &e) {
        std::fprintf(stderr, "kvchat-cli %s: %s (try --help)\n", command.c_str(), e.message.c_str());
        return 2;
    } catch (const CommandError &e) {
        std::fprintf(stderr, "kvchat-cli %s: %s\n", command.c_str(), e.message.c_str());
        return 1;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "kvchat-cli %s: %s\n", command.c_str(), e.what());
        return 1;
    }
}
