// Drafters the speculative-decoding suites share.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "kiln/speculative.h"

namespace kiln::test {

// A plug-in drafter that knows the right continuation but corrupts some of it: rejections
// at every position, deterministically.
class NoisyOracle final : public kiln::Drafter {
public:
    NoisyOracle(std::vector<int32_t> truth, size_t n_prompt, int n_vocab) : truth_(std::move(truth)), n_prompt_(n_prompt), n_vocab_(n_vocab) {}
    kiln::Status draft(std::span<const int32_t> h, int n_max, std::vector<kiln::DraftToken>* out) override {
        for (int i = 0; i < n_max; ++i) {
            const size_t at = h.size() - n_prompt_ + size_t(i);
            int32_t t = at < truth_.size() ? truth_[at] : 0;
            if (rng_() % 4 == 0) t = int32_t(rng_() % uint64_t(n_vocab_));
            out->push_back({t, {}});
        }
        return kiln::Status::ok();
    }
    std::string name() const override { return "noisy oracle"; }

private:
    std::vector<int32_t> truth_;
    size_t n_prompt_;
    int n_vocab_;
    std::mt19937_64 rng_{42};
};

}  // namespace kiln::test
