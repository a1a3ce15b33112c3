// Perplexity and KL divergence as llama-perplexity measures them, so the numbers compare:
// the text's tokens are cut into chunks of n_ctx, each chunk runs alone from position 0 (its
// first token replaced by BOS where the model adds one), and positions n_ctx/2 .. n_ctx-2
// are scored against the token after them. The --kl-divergence-base file is llama.cpp's:
// kiln reads files llama-perplexity wrote and writes files it reads.
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kiln/session.h"
#include "kiln/status.h"

namespace kiln {

struct PerplexityOptions {
    int n_ctx = 512;      // tokens per chunk
    int max_chunks = -1;  // < 0: every whole chunk of the text
};

// The scored rows of one chunk: logits (n_rows, n_vocab) and the token each row predicts.
struct ScoredChunk {
    int chunk = 0;
    const float* logits = nullptr;
    std::span<const int32_t> targets;  // (n_rows)
    int n_vocab = 0;
};

struct PerplexityResult {
    double ppl = 0, ppl_err = 0;  // exp(mean NLL) and its standard error, as llama.cpp reports them
    int n_chunks = 0, n_ctx = 0;
    uint64_t n_scored = 0;
    std::vector<double> running_ppl;  // (n_chunks) the estimate after each chunk
};

// Chunks of the token stream and how many are scored: errors when the text is shorter than
// two chunks' worth of the scoring rule needs (one whole chunk) or n_ctx is out of range.
Expected<int> perplexity_chunks(size_t n_tokens, const PerplexityOptions& o);

// Runs every chunk through the session (sequence 0, emptied first); on_chunk sees each
// chunk's scored rows (to save or compare them); progress(done, total) after each chunk.
Expected<PerplexityResult> compute_perplexity(Session& s, std::span<const int32_t> tokens, const PerplexityOptions& o,
                                              const std::function<Status(const ScoredChunk&)>& on_chunk = {},
                                              const std::function<void(int, int)>& progress = {});

// llama.cpp's base-logits file: "_logits_", int32 n_ctx, int32 n_vocab, int32 n_chunk,
// int32 tokens[n_chunk * n_ctx], then per chunk n_ctx - 1 - n_ctx/2 rows of
// 2 * ((n_vocab + 1) / 2) + 4 uint16: two floats (scale, min_log_prob), then each token's
// log-probability quantized to 16 bits over the top 16 nats.
int logits_row_words(int n_vocab);
// One row's quantized log-probabilities from logits (n_vocab floats) into row (logits_row_words).
void quantize_log_probs(const float* logits, int n_vocab, uint16_t* row);
// Log-probability of token t in a quantized row.
float row_log_prob(const uint16_t* row, int t);

class LogitsFile {
public:
    // Writing: the header and the tokens now, then add_chunk() n_chunk times.
    static Expected<LogitsFile> create(const std::string& path, int n_ctx, int n_vocab, int n_chunk, std::span<const int32_t> tokens);
    // Reading: checks the magic, the sizes against the file's length; errors name the file.
    static Expected<LogitsFile> open(const std::string& path);

    Status add_chunk(const ScoredChunk& c);
    // The next chunk's rows ((n_ctx - 1 - n_ctx/2) x logits_row_words uint16).
    Status read_chunk(std::vector<uint16_t>* rows);

    int n_ctx() const { return n_ctx_; }
    int n_vocab() const { return n_vocab_; }
    int n_chunk() const { return n_chunk_; }
    const std::vector<int32_t>& tokens() const { return tokens_; }  // (n_chunk * n_ctx)
    int rows_per_chunk() const { return n_ctx_ - 1 - n_ctx_ / 2; }

private:
    std::shared_ptr<std::FILE> f_;
    std::string path_;
    int n_ctx_ = 0, n_vocab_ = 0, n_chunk_ = 0;
    std::vector<int32_t> tokens_;
};

// KL divergence of a run against base rows, as llama-perplexity --kl-divergence reports it.
struct KldResult {
    double kld_mean = 0, kld_err = 0, kld_median = 0, kld_p99 = 0, kld_max = 0;
    double same_top = 0;            // fraction of rows whose argmax equals the base's
    double ppl = 0, ppl_base = 0;   // of the run and of the base, on the same rows
    uint64_t n = 0;
};
class KldAccumulator {
public:
    // One row: the base's quantized row, this run's logits (n_vocab floats), the target token.
    void add(const uint16_t* base_row, const float* logits, int n_vocab, int32_t target);
    KldResult result() const;

private:
    std::vector<double> kld_;
    double sum_nll_ = 0, sum_nll_base_ = 0, sum_kld_ = 0, sum_kld2_ = 0;
    uint64_t same_top_ = 0;
};

}  // namespace kiln
