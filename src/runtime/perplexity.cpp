// Perplexity, llama.cpp's base-logits file and KL divergence (include/kiln/perplexity.h).
#include "kiln/perplexity.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kiln/sampler.h"
#include "kiln/tokenizer.h"

namespace kiln {

namespace {
constexpr char kMagic[8] = {'_', 'l', 'o', 'g', 'i', 't', 's', '_'};
}  // namespace

Expected<int> perplexity_chunks(size_t n_tokens, const PerplexityOptions& o) {
    if (o.n_ctx < 4 || o.n_ctx > (1 << 20)) return Status::error("perplexity: -c %d must be in [4, 1048576]", o.n_ctx);
    const size_t whole = n_tokens / size_t(o.n_ctx);
    if (whole == 0)
        return Status::error("perplexity: the text is %zu tokens, less than one chunk of %d (-c); give more text or a smaller -c", n_tokens, o.n_ctx);
    return int(o.max_chunks >= 0 ? std::min<size_t>(whole, size_t(o.max_chunks)) : whole);
}

Expected<PerplexityResult> compute_perplexity(Session& s, std::span<const int32_t> tokens, const PerplexityOptions& o,
                                              const std::function<Status(const ScoredChunk&)>& on_chunk,
                                              const std::function<void(int, int)>& progress) {
    auto n_chunks = perplexity_chunks(tokens.size(), o);
    if (!n_chunks) return n_chunks.status();
    if (o.n_ctx > s.n_ctx()) return Status::error("perplexity: chunks of %d tokens need a session context of at least that (it has %d)", o.n_ctx, s.n_ctx());
    const Tokenizer& tok = s.model().tokenizer();
    const int n_vocab = s.model().config().n_vocab, first = o.n_ctx / 2, n_rows = o.n_ctx - 1 - first;
    PerplexityResult r;
    r.n_ctx = o.n_ctx;
    double nll = 0, nll2 = 0;
    std::vector<float> rows(size_t(n_rows) * size_t(n_vocab));  // (n_rows, n_vocab) the chunk's scored logits
    for (int c = 0; c < n_chunks.value(); ++c) {
        const std::span<const int32_t> chunk = tokens.subspan(size_t(c) * size_t(o.n_ctx), size_t(o.n_ctx));
        KILN_TRY(s.seq_remove(0));
        Batch b;
        for (int p = 0; p < o.n_ctx; ++p) {
            const int32_t t = p == 0 && tok.add_bos() && tok.bos() >= 0 ? tok.bos() : chunk[size_t(p)];
            b.add(t, 0, p, p >= first);  // (the last row is not scored; asked for because Vulkan returns the logits of a chunk's tail)
        }
        KILN_TRY(s.decode(b));
        for (int i = 0; i < n_rows; ++i) {
            const float* l = s.batch_logits(first + i);
            std::copy(l, l + n_vocab, rows.begin() + long(i) * n_vocab);
            const double v = log_sum_exp(l, n_vocab) - double(l[chunk[size_t(first + i + 1)]]);
            nll += v, nll2 += v * v;
        }
        r.n_scored += uint64_t(n_rows);
        r.running_ppl.push_back(std::exp(nll / double(r.n_scored)));
        if (on_chunk) KILN_TRY(on_chunk({c, rows.data(), chunk.subspan(size_t(first + 1), size_t(n_rows)), n_vocab}));
        if (progress) progress(c + 1, n_chunks.value());
    }
    r.n_chunks = n_chunks.value();
    // llama.cpp's estimate: exp(mean), and the standard error of the mean NLL times the PPL.
    const double count = double(r.n_scored), mean = nll / count, var = nll2 / count - mean * mean;
    r.ppl = std::exp(mean);
    r.ppl_err = var > 0 && count > 1 ? std::sqrt(var / (count - 1)) * r.ppl : 0;
    return r;
}

int logits_row_words(int n_vocab) { return 2 * ((n_vocab + 1) / 2) + 4; }

void quantize_log_probs(const float* logits, int n_vocab, uint16_t* row) {
    const float mx = *std::max_element(logits, logits + n_vocab), log_z = float(log_sum_exp(logits, n_vocab));
    // The top 16 nats in 65535 steps; what lies further down reads as the bottom.
    const float min_logit = std::max(*std::min_element(logits, logits + n_vocab), mx - 16);
    const float min_log_prob = min_logit - log_z, scale = (mx - min_logit) / 65535.f;
    std::memcpy(row, &scale, 4);
    std::memcpy(row + 2, &min_log_prob, 4);
    uint16_t* q = row + 4;
    std::fill(q, q + (logits_row_words(n_vocab) - 4), uint16_t(0));
    if (scale == 0) return;
    const float inv = 1 / scale;
    for (int i = 0; i < n_vocab; ++i) q[i] = logits[i] > min_logit ? uint16_t(std::nearbyint(inv * (logits[i] - min_logit))) : 0;  // to nearest, ties to even, as ggml
}

float row_log_prob(const uint16_t* row, int t) {
    float scale = 0, min_log_prob = 0;
    std::memcpy(&scale, row, 4);
    std::memcpy(&min_log_prob, row + 2, 4);
    return scale * float(row[4 + t]) + min_log_prob;
}

Expected<LogitsFile> LogitsFile::create(const std::string& path, int n_ctx, int n_vocab, int n_chunk, std::span<const int32_t> tokens) {
    if (tokens.size() < size_t(n_chunk) * size_t(n_ctx)) return Status::error("%s: %zu tokens for %d chunks of %d", path.c_str(), tokens.size(), n_chunk, n_ctx);
    LogitsFile f;
    f.f_.reset(std::fopen(path.c_str(), "wb"), [](std::FILE* p) { if (p) std::fclose(p); });
    if (!f.f_) return Status::error("%s: cannot be written", path.c_str());
    f.path_ = path, f.n_ctx_ = n_ctx, f.n_vocab_ = n_vocab, f.n_chunk_ = n_chunk;
    f.tokens_.assign(tokens.begin(), tokens.begin() + long(n_chunk) * n_ctx);
    const int32_t head[3] = {n_ctx, n_vocab, n_chunk};
    if (std::fwrite(kMagic, 1, 8, f.f_.get()) != 8 || std::fwrite(head, 4, 3, f.f_.get()) != 3 ||
        std::fwrite(f.tokens_.data(), 4, f.tokens_.size(), f.f_.get()) != f.tokens_.size())
        return Status::error("%s: write failed", path.c_str());
    return f;
}

Expected<LogitsFile> LogitsFile::open(const std::string& path) {
    LogitsFile f;
    f.f_.reset(std::fopen(path.c_str(), "rb"), [](std::FILE* p) { if (p) std::fclose(p); });
    if (!f.f_) return Status::error("%s: cannot be read", path.c_str());
    f.path_ = path;
    char magic[8] = {};
    int32_t head[3] = {};
    if (std::fread(magic, 1, 8, f.f_.get()) != 8 || std::memcmp(magic, kMagic, 8) != 0)
        return Status::error("%s: not a llama.cpp logits file (no \"_logits_\" at the start)", path.c_str());
    if (std::fread(head, 4, 3, f.f_.get()) != 3) return Status::error("%s: truncated header", path.c_str());
    f.n_ctx_ = head[0], f.n_vocab_ = head[1], f.n_chunk_ = head[2];
    if (f.n_ctx_ < 4 || f.n_ctx_ > (1 << 20) || f.n_vocab_ < 1 || f.n_vocab_ > (1 << 24) || f.n_chunk_ < 1 || f.n_chunk_ > (1 << 20))
        return Status::error("%s: implausible header (n_ctx %d, n_vocab %d, n_chunk %d)", path.c_str(), f.n_ctx_, f.n_vocab_, f.n_chunk_);
    // The file's length must hold what the header announces.
    const long at = std::ftell(f.f_.get());
    std::fseek(f.f_.get(), 0, SEEK_END);
    const long size = std::ftell(f.f_.get());
    std::fseek(f.f_.get(), at, SEEK_SET);
    const double want = 20.0 + 4.0 * f.n_chunk_ * f.n_ctx_ + 2.0 * f.n_chunk_ * f.rows_per_chunk() * logits_row_words(f.n_vocab_);
    if (double(size) < want) return Status::error("%s: truncated (%ld bytes, the header announces %.0f)", path.c_str(), size, want);
    f.tokens_.resize(size_t(f.n_chunk_) * size_t(f.n_ctx_));
    if (std::fread(f.tokens_.data(), 4, f.tokens_.size(), f.f_.get()) != f.tokens_.size()) return Status::error("%s: truncated tokens", path.c_str());
    return f;
}

Status LogitsFile::add_chunk(const ScoredChunk& c) {
    if (c.n_vocab != n_vocab_ || int(c.targets.size()) != rows_per_chunk())
        return Status::error("%s: a chunk of %zu rows x %d tokens, the file has %d x %d", path_.c_str(), c.targets.size(), c.n_vocab, rows_per_chunk(), n_vocab_);
    std::vector<uint16_t> row(static_cast<size_t>(logits_row_words(n_vocab_)));  // (words) one quantized row
    for (int i = 0; i < rows_per_chunk(); ++i) {
        quantize_log_probs(c.logits + size_t(i) * size_t(n_vocab_), n_vocab_, row.data());
        if (std::fwrite(row.data(), 2, row.size(), f_.get()) != row.size()) return Status::error("%s: write failed", path_.c_str());
    }
    return Status::ok();
}

Status LogitsFile::read_chunk(std::vector<uint16_t>* rows) {
    rows->resize(size_t(rows_per_chunk()) * size_t(logits_row_words(n_vocab_)));
    if (std::fread(rows->data(), 2, rows->size(), f_.get()) != rows->size()) return Status::error("%s: truncated chunk", path_.c_str());
    return Status::ok();
}

void KldAccumulator::add(const uint16_t* base, const float* logits, int n_vocab, int32_t target) {
    const double log_z = log_sum_exp(logits, n_vocab);
    const int top = int(std::max_element(logits, logits + n_vocab) - logits);
    double kld = 0;
    int top_base = 0;
    float best = -INFINITY;
    for (int i = 0; i < n_vocab; ++i) {
        const float lb = row_log_prob(base, i);
        if (lb > best) best = lb, top_base = i;
        if (lb > -16.f) kld += std::exp(double(lb)) * (double(lb) - (double(logits[i]) - log_z));  // (as llama.cpp: the base's top 16 nats)
    }
    kld_.push_back(kld);
    sum_kld_ += kld, sum_kld2_ += kld * kld;
    sum_nll_ += log_z - double(logits[target]);
    sum_nll_base_ -= double(row_log_prob(base, target));
    same_top_ += top == top_base;
}

KldResult KldAccumulator::result() const {
    KldResult r;
    r.n = kld_.size();
    if (r.n == 0) return r;
    const double n = double(r.n), mean = sum_kld_ / n;
    r.kld_mean = mean;
    r.kld_err = r.n > 1 ? std::sqrt(std::max(0.0, sum_kld2_ / n - mean * mean) / (n - 1)) : 0;
    std::vector<double> sorted = kld_;
    std::sort(sorted.begin(), sorted.end());
    auto pct = [&](double p) { return sorted[std::min(sorted.size() - 1, size_t(p * double(sorted.size() - 1) + 0.5))]; };
    r.kld_median = pct(0.5), r.kld_p99 = pct(0.99), r.kld_max = sorted.back();
    r.same_top = double(same_top_) / n;
    r.ppl = std::exp(sum_nll_ / n), r.ppl_base = std::exp(sum_nll_base_ / n);
    return r;
}

}  // namespace kiln
