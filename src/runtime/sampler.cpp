#include "kiln/sampler.h"

#include <algorithm>
#include <cmath>

namespace kiln {

Status validate(const SamplerParams& p) {
    if (!std::isfinite(p.temperature)) return Status::error("SamplerParams::temperature %g is not finite", double(p.temperature));
    if (!(p.top_p >= 0) || p.top_p > 1) return Status::error("SamplerParams::top_p %g must be in [0, 1]", double(p.top_p));
    if (!(p.min_p >= 0) || p.min_p > 1) return Status::error("SamplerParams::min_p %g must be in [0, 1]", double(p.min_p));
    if (!(p.repeat_penalty > 0) || !std::isfinite(p.repeat_penalty)) return Status::error("SamplerParams::repeat_penalty %g must be positive", double(p.repeat_penalty));
    if (!std::isfinite(p.frequency_penalty) || std::fabs(p.frequency_penalty) > 2)
        return Status::error("SamplerParams::frequency_penalty %g must be in [-2, 2]", double(p.frequency_penalty));
    if (!std::isfinite(p.presence_penalty) || std::fabs(p.presence_penalty) > 2)
        return Status::error("SamplerParams::presence_penalty %g must be in [-2, 2]", double(p.presence_penalty));
    if (p.repeat_last_n < 0) return Status::error("SamplerParams::repeat_last_n %d must be >= 0", p.repeat_last_n);
    return Status::ok();
}

Sampler::Sampler(const SamplerParams& params, int n_vocab) : params_(params), n_vocab_(n_vocab), rng_(params.seed) {}

void Sampler::accept(int32_t token) {
    if (params_.repeat_last_n <= 0) return;
    recent_.push_back(token);
    while (int(recent_.size()) > params_.repeat_last_n) recent_.pop_front();
}

double Sampler::uniform() { return double(rng_() >> 11) * 0x1.0p-53; }

std::vector<int32_t> Sampler::penalized(std::span<const int32_t> then) const {
    const bool any = params_.repeat_penalty != 1.0f || params_.frequency_penalty != 0 || params_.presence_penalty != 0;
    if (!any || params_.repeat_last_n <= 0) return {};
    std::vector<int32_t> window(recent_.begin(), recent_.end());  // the last repeat_last_n tokens after `then`
    window.insert(window.end(), then.begin(), then.end());
    if (int(window.size()) > params_.repeat_last_n) window.erase(window.begin(), window.end() - params_.repeat_last_n);
    std::sort(window.begin(), window.end());
    if (params_.frequency_penalty == 0) window.erase(std::unique(window.begin(), window.end()), window.end());
    return window;
}

std::vector<std::pair<int32_t, float>> Sampler::distribution(const float* logits) const {
    return sampling_distribution(params_, logits, n_vocab_, penalized());
}

std::vector<std::pair<int32_t, float>> sampling_distribution(const SamplerParams& params, const float* logits, int n_vocab, std::span<const int32_t> penalized) {
    // Penalties, as llama.cpp's: repetition divides positive logits and multiplies negative
    // ones, then frequency x occurrences and presence are subtracted.
    const bool penalize = params.repeat_penalty != 1.0f || params.frequency_penalty != 0 || params.presence_penalty != 0;
    auto penalized_logit = [&](float l, int count) {
        if (params.repeat_penalty != 1.0f) l = l > 0 ? l / params.repeat_penalty : l * params.repeat_penalty;
        return l - float(count) * params.frequency_penalty - params.presence_penalty;
    };
    if (params.temperature <= 0) {
        // Greedy: the argmax of the penalized logits in one pass (no candidate list: a
        // 262144-token vocabulary would cost a 2 MB copy per token). Ties to the lower id.
        std::vector<int32_t> pen(penalized.begin(), penalized.end());  // ascending, walked beside i
        std::sort(pen.begin(), pen.end());
        size_t next = 0;
        int32_t best = 0;
        float best_l = -INFINITY;
        bool any = false;
        for (int32_t i = 0; i < n_vocab; ++i) {
            float l = logits[i];
            while (next < pen.size() && pen[next] < i) ++next;
            int count = 0;
            while (next + size_t(count) < pen.size() && pen[next + size_t(count)] == i) ++count;
            if (penalize && count > 0) l = penalized_logit(l, count);
            if (!any || l > best_l) best = i, best_l = l, any = true;
        }
        return {{best, 1.0f}};
    }
    std::vector<std::pair<int32_t, float>> cand(static_cast<size_t>(n_vocab));  // (token, logit), then probability
    for (int i = 0; i < n_vocab; ++i) cand[size_t(i)] = {i, logits[i]};
    if (penalize) {
        std::vector<int32_t> pen(penalized.begin(), penalized.end());  // sorted: equal tokens adjacent
        std::sort(pen.begin(), pen.end());
        for (size_t i = 0; i < pen.size();) {
            size_t j = i;
            while (j < pen.size() && pen[j] == pen[i]) ++j;
            const int32_t t = pen[i];
            if (t >= 0 && t < n_vocab) cand[size_t(t)].second = penalized_logit(cand[size_t(t)].second, int(j - i));
            i = j;
        }
    }
    auto by_logit = [](const auto& a, const auto& b) { return a.second > b.second || (a.second == b.second && a.first < b.first); };
    // top-k
    size_t keep = cand.size();
    if (params.top_k > 0 && size_t(params.top_k) < keep) keep = size_t(params.top_k);
    std::partial_sort(cand.begin(), cand.begin() + long(keep), cand.end(), by_logit);
    cand.resize(keep);
    // Softmax over the survivors (before temperature, as llama.cpp's top-p/min-p see it).
    auto softmax = [&](float temp) {
        const float mx = cand[0].second;
        double sum = 0;
        std::vector<double> p(cand.size());
        for (size_t i = 0; i < cand.size(); ++i) sum += (p[i] = std::exp(double(cand[i].second - mx) / double(temp)));
        std::vector<float> out(cand.size());
        for (size_t i = 0; i < cand.size(); ++i) out[i] = float(p[i] / sum);
        return out;
    };
    std::vector<float> prob = softmax(1.0f);
    // top-p: smallest prefix whose mass reaches top_p.
    if (params.top_p < 1.0f) {
        double cum = 0;
        size_t n = 0;
        while (n < cand.size()) {
            cum += prob[n++];
            if (cum >= params.top_p) break;
        }
        cand.resize(std::max<size_t>(1, n));
        prob.resize(cand.size());
    }
    // min-p: drop tokens below min_p times the best probability.
    if (params.min_p > 0) {
        size_t n = 1;
        while (n < cand.size() && prob[n] >= params.min_p * prob[0]) ++n;
        cand.resize(n);
    }
    prob = softmax(params.temperature);
    std::vector<std::pair<int32_t, float>> out(cand.size());
    for (size_t i = 0; i < cand.size(); ++i) out[i] = {cand[i].first, prob[i]};
    return out;
}

double log_sum_exp(const float* logits, int n_vocab) {
    const float mx = *std::max_element(logits, logits + n_vocab);
    double sum = 0;
    for (int i = 0; i < n_vocab; ++i) sum += std::exp(double(logits[i] - mx));
    return double(mx) + std::log(sum);
}

int32_t draw(const std::vector<std::pair<int32_t, float>>& dist, double u) {
    double cum = 0;
    for (const auto& [tok, p] : dist) {
        cum += p;
        if (u < cum) return tok;
    }
    return dist.back().first;
}

int32_t Sampler::sample(const float* logits) {
    auto dist = distribution(logits);
    if (dist.size() == 1) return dist[0].first;
    return draw(dist, uniform());
}

}  // namespace kiln
