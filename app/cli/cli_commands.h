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

} // namespace kvchat::cli
