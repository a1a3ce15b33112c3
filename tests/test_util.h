// Helpers shared by the doctest suites: where test data lives, and data-derived tolerances.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "kiln/status.h"

namespace kiln::test {

// "" when the status's message contains `what`, else a description of the mismatch, so
// CHECK(message_lacks(s, "...") == "") shows the message that was there.
inline std::string message_lacks(const Status& s, const std::string& what) {
    return s.message().find(what) != std::string::npos ? "" : "\"" + s.message() + "\" lacks \"" + what + "\"";
}

// Root of the source tree (tests read tests/data and the .cache folder under it).
inline std::string source_dir() {
    if (const char* e = std::getenv("KILN_SOURCE_DIR")) return e;
#ifdef KILN_SOURCE_DIR
    return KILN_SOURCE_DIR;
#else
    return ".";
#endif
}

// Folder that tools/fetch_models.py fills (KILN_CACHE overrides, as for the script).
inline std::string cache_dir() {
    if (const char* e = std::getenv("KILN_CACHE")) return e;
    return source_dir() + "/.cache";
}

inline std::string model_path(const std::string& file) { return cache_dir() + "/models/" + file; }
inline std::string vocab_dir() { return cache_dir() + "/vocab"; }
inline std::string data_path(const std::string& file) { return source_dir() + "/tests/data/" + file; }
// A whole file's bytes (empty when it cannot be read).
inline std::string read_all(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

// Real-model tests need the fetched models; the README's test command fetches them, so
// a missing file is a failure, not a skip (set KILN_ALLOW_MISSING_MODELS=1 to skip locally).
inline bool require_file(const std::string& path) {
    if (std::filesystem::exists(path)) return true;
    if (std::getenv("KILN_ALLOW_MISSING_MODELS")) {
        MESSAGE("skipping: missing " << path);
        return false;
    }
    FAIL_CHECK("missing test file " << path << " (run tools/fetch_models.py)");
    return false;
}

// Resident bytes of the mapping that contains address p ("Rss:" of its /proc/self/smaps
// entry); -1 if no mapping holds p.
inline int64_t resident_bytes_of_mapping(const void* p) {
    std::ifstream smaps("/proc/self/smaps");
    const auto a = reinterpret_cast<uintptr_t>(p);
    bool inside = false;
    for (std::string line; std::getline(smaps, line);) {
        unsigned long lo = 0, hi = 0;
        if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2) inside = a >= lo && a < hi;  // a mapping's first line
        else if (inside && line.rfind("Rss:", 0) == 0) return int64_t(std::strtoll(line.c_str() + 4, nullptr, 10)) * 1024;
    }
    return -1;
}

// n samples of N(0, scale^2), reproducible from the seed.
inline std::vector<float> gaussian(size_t n, uint32_t seed, float scale = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> v(n);
    for (float& x : v) x = d(rng);
    return v;
}

}  // namespace kiln::test
