// Command-line flags of kiln-generate: parsed strictly (unknown flags, missing or
// malformed values and out-of-range numbers are one-line errors naming the flag).
#pragma once

#include <string>
#include <vector>

#include "kiln/kiln.h"
#include "kiln/speculative.h"

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
    kiln::DType type_k = kiln::DType::F16, type_v = kiln::DType::F16;  // KV cache
    bool kv_hadamard = false;
    bool json = false;
    bool quiet = false;
    bool interactive = false;
    bool ignore_eos = false;
    bool help = false;
    bool list_devices = false;
    kiln::Backend backend = kiln::Backend::Cpu;  // --backend
    int device = 0;                              // --device: Vulkan device index
    std::vector<std::string> override_kv;
    bool use_mmap = true;
    bool repack = false;
    std::string quantize;  // --quantize: quantize the weights in memory at load ("q8_0", "q4_k_m", ...)
    // Speculative decoding (at most one drafting source).
    std::string model_draft;        // -md: draft model
    int ctx_draft = 0;              // draft KV cache (0: same as --ctx)
    int draft_max = kiln::kMaxDraft, draft_min = 0;
    int draft_head = -1;            // the draft model's trimmed output head (-1: automatic, 0: whole)
    float draft_p_min = 0.0f;
    bool adaptive_draft = true;
    int lookup_ngram = -1;          // > 0: prompt lookup with n-grams of up to this length (with -md: in front of the
                                    // draft model, n-grams of at least 4; 0 there: none); -1: unset
    bool self_spec = false;         // self-speculation (layers picked by calibration unless --skip-layers)
    std::vector<int> skip_layers;
    bool pard = false;              // -md is a PARD model
    int pard_mask_id = -1;          // -1: from the draft model's metadata
    bool spec_compare = false;      // also run plain decoding and report the speedup
    bool speculative() const { return !model_draft.empty() || lookup_ngram > 0 || self_spec; }
    bool lookup_alone() const { return lookup_ngram > 0 && model_draft.empty(); }
};

kiln::Expected<GenerateArgs> parse_generate_args(int argc, char** argv);
const char* generate_usage();
