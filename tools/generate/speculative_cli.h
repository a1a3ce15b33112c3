// kiln-generate's speculative path: builds the drafter the flags ask for, runs
// kiln::speculative_generate, and reports the acceptance statistics.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "args.h"

struct SpecRun {
    double prefill_s = 0, decode_s = 0;
    int n_prompt = 0, n_gen = 0;
    nlohmann::json stats;  // the "speculative" object of --json
};

// Generates from `prompt` on the empty session `s` (created with `so`), streaming text to
// stdout unless --json.
kiln::Status run_speculative(std::shared_ptr<const kiln::Model> model, kiln::Session& s, const kiln::SessionOptions& so, kiln::Sampler& sampler,
                             const std::vector<int32_t>& prompt,
                             const GenerateArgs& a, std::vector<int32_t>* out_tokens, std::string* out_text, SpecRun* run);
