// flags.h: one strict parser and help format for every tool.
#include "flags.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "kiln/format/quantize.h"

namespace kiln::cli {

namespace {

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    std::stringstream in(s);
    for (std::string part; std::getline(in, part, sep);) {
        while (!part.empty() && part.front() == ' ') part.erase(part.begin());
        out.push_back(part);
    }
    return out;
}

}  // namespace

Status parse_int(const std::string& flag, const std::string& v, long lo, long hi, int* out) {
    char* end = nullptr;
    errno = 0;
    const long x = std::strtol(v.c_str(), &end, 10);
    if (v.empty() || *end || errno) return Status::error("%s: '%s' is not an integer", flag.c_str(), v.c_str());
    if (x < lo || x > hi) return Status::error("%s: %ld is outside [%ld, %ld]", flag.c_str(), x, lo, hi);
    *out = int(x);
    return Status::ok();
}

void Flags::add(const std::string& names, const std::string& metavar, const std::string& help, std::function<Status(const std::string&)> set, bool takes_value) {
    flags_.push_back({split(names, ','), metavar, help, std::move(set), takes_value});
}

void Flags::section(const std::string& title) { flags_.push_back({{}, {}, title, nullptr, false}); }

void Flags::value(const std::string& names, const std::string& metavar, const std::string& help, std::function<Status(const std::string&)> set) {
    add(names, metavar, help, std::move(set), true);
}

void Flags::toggle(const std::string& names, const std::string& help, std::function<void()> set) {
    add(names, {}, help, [set](const std::string&) { return set(), Status::ok(); }, false);
}

void Flags::string(const std::string& names, const std::string& metavar, const std::string& help, std::string* out) {
    value(names, metavar, help, [out](const std::string& v) { return *out = v, Status::ok(); });
}

void Flags::strings(const std::string& names, const std::string& metavar, const std::string& help, std::vector<std::string>* out) {
    value(names, metavar, help, [out](const std::string& v) { return out->push_back(v), Status::ok(); });
}

void Flags::integer(const std::string& names, const std::string& metavar, const std::string& help, int* out, long lo, long hi) {
    value(names, metavar, help, [=, this](const std::string& v) { return parse_int(typed_, v, lo, hi, out); });
}

void Flags::number(const std::string& names, const std::string& metavar, const std::string& help, float* out, float lo, float hi) {
    value(names, metavar, help, [=, this](const std::string& v) {
        const std::string& flag = typed_;
        char* end = nullptr;
        const float x = std::strtof(v.c_str(), &end);
        if (v.empty() || *end || !std::isfinite(x)) return Status::error("%s: '%s' is not a number", flag.c_str(), v.c_str());
        if (x < lo || x > hi) return Status::error("%s: %g must be in [%g, %g]", flag.c_str(), double(x), double(lo), double(hi));
        *out = x;
        return Status::ok();
    });
}

void Flags::integers(const std::string& names, const std::string& metavar, const std::string& help, std::vector<int>* out, int lo) {
    value(names, metavar, help, [=, this](const std::string& v) {
        const std::string& flag = typed_;
        out->clear();
        for (const std::string& item : split(v, ',')) {
            int x = 0;
            if (!parse_int(flag, item, lo, 1 << 22, &x)) return Status::error("%s needs a list of integers >= %d, e.g. 1,2,4 (got '%s')", flag.c_str(), lo, v.c_str());
            out->push_back(x);
        }
        if (out->empty()) return Status::error("%s needs a list of integers >= %d", flag.c_str(), lo);
        return Status::ok();
    });
}

void Flags::boolean(const std::string& names, const std::string& help, bool* out, bool set_to) {
    toggle(names, help, [=] { *out = set_to; });
}

Status Flags::parse(int argc, char** argv, size_t positionals) {
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "-h" || arg == "--help") {
            help_ = true;
            continue;
        }
        if (arg.size() < 2 || arg[0] != '-' || (arg[1] >= '0' && arg[1] <= '9')) {
            if (positional_.size() == positionals) return Status::error("unexpected argument '%s' (see --help)", arg.c_str());
            positional_.push_back(arg);
            continue;
        }
        const Flag* flag = nullptr;
        for (const Flag& f : flags_)
            for (const std::string& n : f.names)
                if (n == arg) flag = &f;
        if (!flag) return Status::error("unknown flag '%s' (see --help)", arg.c_str());
        if (flag->takes_value && i + 1 >= argc) return Status::error("%s needs a value (%s)", arg.c_str(), flag->metavar.c_str());
        typed_ = arg;
        KILN_TRY(flag->set(flag->takes_value ? std::string(argv[++i]) : std::string()));
    }
    return Status::ok();
}

std::string Flags::help() const {
    std::string out = "usage: " + usage_ + "\n";
    for (const Flag& f : flags_) {
        if (!f.set) {  // a section
            out += "\n" + f.help + ":\n";
            continue;
        }
        std::string names;
        for (const std::string& n : f.names) names += (names.empty() ? "" : ", ") + n;
        std::string left = "  " + names + (f.metavar.empty() ? "" : " " + f.metavar);
        if (left.size() < 32) left.resize(32, ' ');
        else left += "\n" + std::string(32, ' ');
        std::string text = f.help;  // continuation lines indented under the text
        for (size_t at = text.find('\n'); at != std::string::npos; at = text.find('\n', at + 1)) text.insert(at + 1, std::string(32, ' '));
        out += left + text + "\n";
    }
    out += "  -h, --help                    this help\n";
    if (!footer_.empty()) out += "\n" + footer_;
    return out;
}

void add_load_flags(Flags& f, LoadOptions& o) {
    f.boolean("--no-mmap", "read the model into memory (huge pages) instead of mapping it", &o.use_mmap, false);
    f.boolean("-rtr, --repack", "copy q4_K/q6_K/q8_0/q4_0/q4_1/q5_0/q5_1/iq4_xs weights row-interleaved (faster; slower load)", &o.repack);
    f.value("--quantize", "TYPE", "quantize the weights in memory at load: q8_0, q4_k_m, q5_k_m, q6_k, q4_0, ... (llama-quantize's mixes)",
            [&o](const std::string& v) -> Status {
                auto mix = parse_quant_mix(v);
                if (!mix) return mix.status().with_context("--quantize");
                o.quantize = v;
                return Status::ok();
            });
    f.strings("--override-kv", "K=T:V", "override model metadata, T = int|float|bool|str (repeatable)", &o.override_kv);
}

void add_session_flags(Flags& f, SessionOptions& o, std::string& isa) {
    f.integer("-t, --threads", "N", "threads (default: all cores)", &o.n_threads, 1, 1024);
    f.integer("-c, --ctx-size, --ctx", "N", "context size in tokens (default min(trained, 4096))", &o.n_ctx, 1, 1 << 22);
    auto cache = [&o](bool k, bool v) {
        return [&o, k, v](const std::string& s) -> Status {
            auto t = parse_cache_type(s);
            if (!t) return t.status();
            if (k) o.type_k = t.value();
            if (v) o.type_v = t.value();
            return Status::ok();
        };
    };
    f.value("-ctk, --cache-type-k", "TYPE", "K cache type: f16 (default), bf16, q8_0, q4_0, f32", cache(true, false));
    f.value("-ctv, --cache-type-v", "TYPE", "V cache type (same choices)", cache(false, true));
    f.value("--cache-type", "TYPE", "both", cache(true, true));
    f.toggle("--kv-hadamard", "rotate K/V/Q per head by a Walsh-Hadamard transform (default: when the cache is q8_0/q4_0, as llama.cpp)",
             [&o] { o.kv_hadamard = KvHadamard::On; });
    f.toggle("--no-kv-hadamard", "never rotate (llama.cpp: LLAMA_ATTN_ROT_DISABLE=1)", [&o] { o.kv_hadamard = KvHadamard::Off; });
    f.integer("--experts-per-token", "N", "MoE: run N experts per token instead of the model's (fewer: faster, lower quality)", &o.n_expert_used, 1, 4096);
    f.integer("--recurrent-rollback", "N", "hybrid models (Qwen3.5): tokens a sequence can go back (rejected drafts, prompt reuse); "
              "keeps N + 2 copies of its recurrent state (default 16)", &o.recurrent_rollback, 0, 256);
    f.value("--backend", "cpu|vulkan", "where the model runs (default cpu)", [&o](const std::string& v) -> Status {
        auto b = parse_backend(v);
        if (!b) return Status::error("--backend: %s", b.message().c_str());
        o.backend = b.value();
        return Status::ok();
    });
    f.integer("--device", "N", "Vulkan device N (kiln-generate --list-devices; default 0)", &o.device, 0, 1 << 10);
    f.value("--isa", "NAME", "CPU kernels: avx512, avx2 or generic (default: the best this CPU has)", [&isa](const std::string& v) {
        return isa = v, Status::ok();
    });
}

void add_sampling_flags(Flags& f, SamplerParams& p) {
    f.number("--temp", "T", "temperature (default 0.8; 0 = greedy)", &p.temperature, 0, 1e6f);
    f.integer("--top-k", "K", "(default 40, 0 = off)", &p.top_k, 0, 1 << 30);
    f.number("--top-p", "P", "(default 0.95, 1 = off)", &p.top_p, 0, 1);
    f.number("--min-p", "P", "(default 0.05, 0 = off)", &p.min_p, 0, 1);
    f.number("--repeat-penalty", "X", "(default 1.0 = off)", &p.repeat_penalty, 0, 1e6f);
    f.integer("--repeat-last-n", "N", "tokens the penalties look back over (default 64)", &p.repeat_last_n, 0, 1 << 20);
    f.number("--frequency-penalty", "X", "subtracted per occurrence in the window (default 0 = off)", &p.frequency_penalty, -2, 2);
    f.number("--presence-penalty", "X", "subtracted once per token in the window (default 0 = off)", &p.presence_penalty, -2, 2);
    f.value("-s, --seed", "N", "sampling seed", [&p](const std::string& v) -> Status {
        char* end = nullptr;
        errno = 0;
        const unsigned long long x = std::strtoull(v.c_str(), &end, 10);
        if (v.empty() || *end || errno || v[0] == '-') return Status::error("--seed: '%s' is not a non-negative integer", v.c_str());
        p.seed = x;
        return Status::ok();
    });
}

std::string with_flag_names(std::string message) {
    static const std::pair<const char*, const char*> kFields[] = {
        {"SessionOptions::n_ctx", "-c/--ctx"},
        {"SessionOptions::n_expert_used", "--experts-per-token"},
        {"SessionOptions::kv_hadamard", "--kv-hadamard"},
        {"SessionOptions::recurrent_rollback", "--recurrent-rollback"},
        {"SessionOptions::device", "--device"},
        {"list_vulkan_devices()", "--list-devices"},
        {"SamplerParams::temperature", "--temp"},
        {"SamplerParams::top_p", "--top-p"},
        {"SamplerParams::min_p", "--min-p"},
        {"SamplerParams::repeat_penalty", "--repeat-penalty"},
        {"SamplerParams::frequency_penalty", "--frequency-penalty"},
        {"SamplerParams::presence_penalty", "--presence-penalty"},
        {"SamplerParams::repeat_last_n", "--repeat-last-n"},
        {"DraftModelOptions::pard_mask_id", "--pard-mask-id"},
    };
    for (auto [field, flag] : kFields)
        for (size_t at = message.find(field); at != std::string::npos; at = message.find(field, at)) message.replace(at, std::string(field).size(), flag);
    return message;
}

int fail(const char* tool, const std::string& message) {
    std::fprintf(stderr, "%s: %s\n", tool, with_flag_names(message).c_str());
    return 1;
}

std::string read_file(const std::string& path, std::string* error) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return *error = path + ": cannot be read", "";
    std::stringstream ss;
    ss << in.rdbuf();
    if (ss.str().empty()) *error = path + ": empty";
    return ss.str();
}

}  // namespace kiln::cli
