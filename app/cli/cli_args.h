// SPDX-License-Identifier: MIT
// Command-line parsing for kvchat-cli: "kvchat-cli COMMAND [options] [positionals]". Each command
// declares its options; anything else is an error with one clear message.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace kvchat::cli {

struct OptionSpec
{
    std::set<std::string> withValue; // e.g. "-m", "--temp"
    std::set<std::string> flags;     // e.g. "--json"
};

class Args
{
public:
    // Parses argv[first..argc). Throws UsageError on unknown options or missing values.
    static Args parse(int argc, char **argv, int first, const OptionSpec &spec);

    bool has(const std::string &name) const;
    std::optional<std::string> value(const std::string &name) const;
    std::string required(const std::string &name, const std::string &what) const;
    int intValue(const std::string &name, int fallback, int min, int max) const;
    double doubleValue(const std::string &name, double fallback) const;
    std::uint64_t uint64Value(const std::string &name, std::uint64_t fallback) const;
    const std::vector<std::string> &positionals() const { return m_positionals; }

private:
    std::map<std::string, std::string> m_values;
    std::set<std::string> m_flags;
    std::vector<std::string> m_positionals;
};

struct UsageError
{
    std::string message;
};

// --backend: "cpu" (the default), "cuda" or "auto"; anything else is a UsageError.
std::string backendPreference(const Args &args);

} // namespace kvchat::cli
