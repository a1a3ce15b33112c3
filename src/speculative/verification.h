// The stochastic speculative verification rule (rejection sampling), for the session's host
// path and the tests; apps use Session::verify_sampled / speculative_generate.
#pragma once

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "kiln/speculative.h"

namespace kiln {

// The stochastic verification rule over the target's logits rows (n, n_vocab) of a batch
// (pending token, drafts): keep drafts while accept_draft() says so with u[2m]; at the first
// rejection the token is sample_residual() with u[2m + 1]; after the last draft, a draw
// from the last row's distribution with u[2n - 1]. Session::verify_sampled's host path and
// the reference the device path (spec_sample.comp) is tested against.
void verify_sampled_rows(const SampledVerification& v, std::span<const int32_t> batch, const float* logits, int n_vocab, int* accepted, int32_t* next);

// The rule's parts, tested on their own (tests/test_speculative.cpp):
// Probability of `token` in a (token, probability) list.
float prob_of(const std::vector<std::pair<int32_t, float>>& dist, int32_t token);
// Keep the draft if u < p(x) / q(x) (u uniform in [0, 1)).
bool accept_draft(const std::vector<std::pair<int32_t, float>>& p, const DraftToken& d, double u);
// After a rejection: a token from norm(max(0, p - q)), u uniform in [0, 1).
int32_t sample_residual(const std::vector<std::pair<int32_t, float>>& p, const DraftToken& d, double u);

}  // namespace kiln
