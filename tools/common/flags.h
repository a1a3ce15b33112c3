// The one command-line parser of kiln's tools: flags declared once with their help, parsed
// strictly (an unknown flag, a missing or malformed value, a number out of range is a
// one-line error naming the flag), and --help printed in one style. Flag names and
// meanings follow llama.cpp's where it has them (-m, -p, -f, -n, -t, -c, -ctk, -md, ...).
// The flag groups every tool shares map onto LoadOptions and SessionOptions here too.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "kiln/kiln.h"

namespace kiln::cli {

class Flags {
public:
    Flags(std::string usage, std::string footer = {}) : usage_(std::move(usage)), footer_(std::move(footer)) {}

    // names: "-m, --model" (any spellings, comma separated); metavar: the value's name.
    void section(const std::string& title);
    void value(const std::string& names, const std::string& metavar, const std::string& help, std::function<Status(const std::string&)> set);
    void toggle(const std::string& names, const std::string& help, std::function<void()> set);
    void string(const std::string& names, const std::string& metavar, const std::string& help, std::string* out);
    void strings(const std::string& names, const std::string& metavar, const std::string& help, std::vector<std::string>* out);  // repeatable
    void integer(const std::string& names, const std::string& metavar, const std::string& help, int* out, long lo, long hi);
    void number(const std::string& names, const std::string& metavar, const std::string& help, float* out, float lo, float hi);
    void integers(const std::string& names, const std::string& metavar, const std::string& help, std::vector<int>* out, int lo);  // "1,2,4"
    void boolean(const std::string& names, const std::string& help, bool* out, bool set_to = true);

    // Parses argv; arguments that are not flags go to positional() (an error unless
    // `positionals` allows that many). -h/--help sets help_requested().
    Status parse(int argc, char** argv, size_t positionals = 0);
    bool help_requested() const { return help_; }
    const std::vector<std::string>& positional() const { return positional_; }
    std::string help() const;

private:
    struct Flag {
        std::vector<std::string> names;
        std::string metavar, help;
        std::function<Status(const std::string&)> set;  // null for a section title
        bool takes_value = true;
    };
    std::string usage_, footer_;
    std::vector<Flag> flags_;
    std::vector<std::string> positional_;
    bool help_ = false;
    std::string typed_;  // the flag being parsed, as typed: the errors name it
    void add(const std::string& names, const std::string& metavar, const std::string& help, std::function<Status(const std::string&)> set, bool takes_value);
};

// A number parsed strictly (the whole string), as the flags take them.
Status parse_int(const std::string& flag, const std::string& v, long lo, long hi, int* out);

// The loading flags: --no-mmap, --repack/-rtr, --quantize TYPE, --override-kv K=TYPE:V.
void add_load_flags(Flags& f, LoadOptions& o);
// The session flags: -t, -c, -ctk/-ctv/--cache-type, --kv-hadamard, --experts-per-token, --recurrent-rollback,
// --backend, --device (and what the flags set that SessionOptions holds as pointers: the
// ISA name lives in `isa`).
void add_session_flags(Flags& f, SessionOptions& o, std::string& isa);

// The sampling flags: --temp, --top-k, --top-p, --min-p, --repeat-penalty, --repeat-last-n,
// --frequency-penalty, --presence-penalty, -s/--seed.
void add_sampling_flags(Flags& f, SamplerParams& p);

// A whole file (a text, a data file); *error = "PATH: cannot be read" or "PATH: empty".
std::string read_file(const std::string& path, std::string* error);

// Library errors name option fields ("SessionOptions::n_ctx"); a tool's user knows the
// flag ("-c/--ctx"). Rewrites the ones the shared flag groups set.
std::string with_flag_names(std::string message);
// Prints "tool: message" (with flag names) to stderr and returns 1, the tools' exit code
// for an error.
int fail(const char* tool, const std::string& message);

}  // namespace kiln::cli
