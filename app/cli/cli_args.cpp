// SPDX-License-Identifier: MIT
#include "app/cli/cli_args.h"

#include <charconv>

namespace kvchat::cli {

Args Args::parse(int argc, char **argv, int first, const OptionSpec &spec)
{
    Args args;
    for (int i = first; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg.size() > 1 && arg[0] == '-' && !(arg.size() > 1 && std::isdigit(static_cast<unsigned char>(arg[1])))) {
            if (spec.flags.contains(arg)) {
                args.m_flags.insert(arg);
            } else if (spec.withValue.contains(arg)) {
                if (i + 1 >= argc)
                    throw UsageError{"option " + arg + " needs a value"};
                args.m_values[arg] = argv[++i];
            } else {
                throw UsageError{"unknown option " + arg};
            }
        } else {
            args.m_positionals.push_back(arg);
        }
    }
    return args;
}

bool Args::has(const std::string &name) const
{
    return m_flags.contains(name) || m_values.contains(name);
}

std::optional<std::string> Args::value(const std::string &name) const
{
    auto it = m_values.find(name);
    if (it == m_values.end())
        return std::nullopt;
    return it->second;
}

std::string Args::required(const std::string &name, const std::string &what) const
{
    auto v = value(name);
    if (!v)
        throw UsageError{"missing " + name + " " + what};
    return *v;
}

int Args::intValue(const std::string &name, int fallback, int min, int max) const
{
    auto v = value(name);
    if (!v)
        return fallback;
    int out = 0;
    auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), out);
    if (ec != std::errc() || end != v->data() + v->size() || out < min || out > max)
        throw UsageError{"option " + name + " expects an integer in [" + std::to_string(min) + ", " +
                         std::to_string(max) + "], got '" + *v + "'"};
    return out;
}

double Args::doubleValue(const std::string &name, double fallback) const
{
    auto v = value(name);
    if (!v)
        return fallback;
    try {
        std::size_t used = 0;
        const double out = std::stod(*v, &used);
        if (used == v->size())
            return out;
    } catch (...) {
    }
    throw UsageError{"option " + name + " expects a number, got '" + *v + "'"};
}

std::uint64_t Args::uint64Value(const std::string &name, std::uint64_t fallback) const
{
    auto v = value(name);
    if (!v)
        return fallback;
    std::uint64_t out = 0;
    auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), out);
    if (ec != std::errc() || end != v->data() + v->size())
        throw UsageError{"option " + name + " expects a non-negative integer, got '" + *v + "'"};
    return out;
}

std::string backendPreference(const Args &args)
{
    const std::string value = args.value("--backend").value_or("cpu");
    if (value != "cpu" && value != "cuda" && value != "auto")
        throw UsageError{"--backend must be cpu, cuda or auto (got '" + value + "')"};
    return value;
}

} // namespace kvchat::cli
