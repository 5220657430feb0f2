// SPDX-License-Identifier: MIT
// What the benchmark programs record about the machine and the run, shared by kvchat-bench and
// kvchat-bench-cache so their JSON describes machines the same way.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <string>
#include <thread>

namespace kvchat::bench {

// The first line a shell command prints ("" when it cannot run).
inline std::string firstLine(const std::string &command)
{
    std::string out;
    if (FILE *pipe = popen(command.c_str(), "r")) {
        char buf[256];
        if (fgets(buf, sizeof buf, pipe))
            out = buf;
        pclose(pipe);
    }
    return out.substr(0, out.find('\n'));
}

// CPU model and the instruction-set flags the kernels care about, threads, and the load now.
inline nlohmann::json machineInfo(int threads)
{
    std::ifstream cpuinfo("/proc/cpuinfo");
    std::string line, cpu, flags;
    while (std::getline(cpuinfo, line)) {
        if (cpu.empty() && line.rfind("model name", 0) == 0)
            cpu = line.substr(line.find(':') + 2);
        if (flags.empty() && line.rfind("flags", 0) == 0)
            flags = line.substr(line.find(':') + 1) + " ";
    }
    const auto has = [&](const char *f) { return flags.find(" " + std::string(f) + " ") != std::string::npos; };
    return {{"cpu", cpu},
            {"avx2", has("avx2")},
            {"fma", has("fma")},
            {"f16c", has("f16c")},
            {"avx512f", has("avx512f")},
            {"hardware_threads", std::thread::hardware_concurrency()},
            {"threads_used", threads},
            {"loadavg_at_start", firstLine("cat /proc/loadavg")}};
}

} // namespace kvchat::bench
