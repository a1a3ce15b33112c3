// Command-line flags of kiln-generate (tools/common/flags.h: parsed strictly, one --help style).
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
    kiln::LoadOptions load;        // --no-mmap, --repack, --quantize, --override-kv
    kiln::SessionOptions session;  // -t, -c, -ctk, -ctv, --kv-hadamard, --experts-per-token, --backend, --device
    std::string isa;               // --isa (session.isa points at it)
    bool json = false;
    bool quiet = false;
    bool interactive = false;
    bool ignore_eos = false;
    bool help = false;
    bool list_devices = false;
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

// Parses argv into *a (kept by reference: the flag table points into it); help: the usage
// text, for -h/--help.
kiln::Status parse_generate_args(int argc, char** argv, GenerateArgs* a, std::string* help);
