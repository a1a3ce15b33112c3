// Token sampling: greedy, or the llama.cpp chain penalties (repetition, frequency, presence)
// -> top-k -> top-p -> min-p -> temperature -> draw. The same seed gives the same tokens.
#pragma once

#include <cstdint>
#include <deque>
#include <random>
#include <span>
#include <utility>
#include <vector>

#include "kiln/status.h"

namespace kiln {

struct SamplerParams {
    float temperature = 0.8f;    // <= 0: greedy (argmax)
    int top_k = 40;              // <= 0: off
    float top_p = 0.95f;         // >= 1: off
    float min_p = 0.05f;         // <= 0: off
    float repeat_penalty = 1.0f; // 1: off
    float frequency_penalty = 0; // subtracted from a logit once per occurrence in the window (0: off)
    float presence_penalty = 0;  // subtracted once from the logit of every token in the window (0: off)
    int repeat_last_n = 64;      // tokens the penalties look back over
    uint64_t seed = 0xC0FFEE;
};

// Checks ranges and returns a Status naming the bad field.
Status validate(const SamplerParams& p);

// The distribution the sampling chain draws from for one row of logits (n_vocab floats):
// (token, probability) pairs in the chain's order (logit descending, then token id),
// probabilities summing to 1 (greedy: the argmax with probability 1). `penalized`: the
// tokens the penalties apply to, once per occurrence in the window (as Sampler::penalized()
// gives them; repetition and presence count a token once, frequency each time).
std::vector<std::pair<int32_t, float>> sampling_distribution(const SamplerParams& p, const float* logits, int n_vocab, std::span<const int32_t> penalized);
// The token a uniform draw u in [0, 1) picks from such a distribution (cumulative, in order).
int32_t draw(const std::vector<std::pair<int32_t, float>>& dist, double u);

// log(sum(exp(logits))) of one row (n_vocab floats), summed in double from the largest logit
// down so nothing overflows: log_softmax(logits)[i] = logits[i] - log_sum_exp(logits).
double log_sum_exp(const float* logits, int n_vocab);

class Sampler {
public:
    Sampler(const SamplerParams& params, int n_vocab);

    // Picks the next token from one row of logits (n_vocab floats).
    int32_t sample(const float* logits);
    // Records a token as part of the context (for the repetition penalty).
    void accept(int32_t token);
    // The distribution sample() draws from: (token, probability) pairs, probabilities
    // summing to 1 (greedy: the argmax with probability 1).
    std::vector<std::pair<int32_t, float>> distribution(const float* logits) const;
    // The tokens the penalties apply to once `then` has been accepted too (empty when all
    // are off): sorted, distinct unless the frequency penalty counts occurrences.
    std::vector<int32_t> penalized(std::span<const int32_t> then = {}) const;
    // A uniform draw in [0, 1) from the sampler's generator.
    double uniform();
    const SamplerParams& params() const { return params_; }

private:
    SamplerParams params_;
    int n_vocab_;
    std::mt19937_64 rng_;
    std::deque<int32_t> recent_;
};

}  // namespace kiln
