// SPDX-License-Identifier: MIT
// The kvchat-cli commands. Each returns the process exit status; errors are thrown as
// CommandError (one line for stderr) or UsageError.
#pragma once

#include <string>

namespace kvchat::cli {

struct CommandError
{
    std::string message;
};

int runGenerate(int argc, char **argv);
int runTokenize(int argc, char **argv);
int runInfo(int argc, char **argv);
int runChat(int argc, char **argv);     // cli_chat_commands.cpp
int runReplay(int argc, char **argv);   // cli_chat_commands.cpp
int runSessions(int argc, char **argv); // cli_store_commands.cpp
int runLatency(int argc, char **argv);  // cli_store_commands.cpp

} // namespace kvchat::cli
