// Which of two kernel variants one-token forwards use, chosen by timing both now and then.
// The variants are the r16 decode kernels' two weight-prefetch distances (KernelTable::
// matmul_r16 and matmul_r16_far): which is faster depends on the bandwidth memory gives at
// the moment (on a shared VM it changes minute to minute), not on the model alone. Both
// compute the same bits, so the choice moves speed only.
#pragma once

namespace kiln {

class DecodeTuner {
public:
    // The variant the next one-token forward runs with (0 or 1).
    int next() const { return i_ < kTrialTokens && is_trial_alt(i_) ? 1 - current_ : current_; }
    // The time of the forward just run with next()'s variant.
    void record(double seconds) {
        if (i_ < kTrialTokens) {
            t_[next()] += seconds;  // the variant this token ran with
            if (i_ == kTrialTokens - 1) {
                if (t_[1 - current_] < t_[current_] * (1.0 - kMargin)) current_ = 1 - current_;
                t_[0] = t_[1] = 0;
            }
        }
        i_ = (i_ + 1) % kPeriod;
    }
    int current() const { return current_; }

    // Every kPeriod tokens, the first kTrialTokens run in pairs as current, other, other,
    // current, ... (so a drift in speed over the trial weighs on both alike); the other
    // replaces the current one when it took less time by more than kMargin.
    static constexpr int kPeriod = 64, kTrialTokens = 8;
    static constexpr double kMargin = 0.01;

private:
    static bool is_trial_alt(int i) { return ((i / 2) % 4 == 1) || ((i / 2) % 4 == 2); }
    int i_ = 0;        // position in the period
    int current_ = 0;  // variant outside trials; starts with 0 (the kernels' default)
    double t_[2] = {0, 0};  // seconds of this trial's tokens, by variant
};

}  // namespace kiln
