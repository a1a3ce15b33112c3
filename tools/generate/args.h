// Command-line flags of kiln-generate: parsed strictly (unknown flags, missing or
// malformed values and out-of-range numbers are one-line errors naming the flag).
#pragma once

#include <string>
#include <vector>

#include "kiln/kiln.h"

struct GenerateArgs {
    std::string model;
    std::string prompt;
    std::string prompt_file;  // "-" reads stdin
    int n_predict = 128;      // -1: until end of generation or a full context
    bool chat = false;
    std::string chat_format;  // override the template detected from the model
    std::string system;
    bool special = false;  // parse special-token text in a raw prompt
    kiln::SamplerParams sampling;
    int n_threads = 0;
    int n_expert_used = 0;  // MoE: experts per token (0: the model's)
    int n_ctx = 0;
    kiln::DType kv_type = kiln::DType::F16;
    bool json = false;
    bool quiet = false;
    bool interactive = false;
    bool ignore_eos = false;
    bool help = false;
    bool list_devices = false;
    std::vector<std::string> override_kv;
    bool use_mmap = true;
    bool repack = false;
};

kiln::Expected<GenerateArgs> parse_generate_args(int argc, char** argv);
const char* generate_usage();
