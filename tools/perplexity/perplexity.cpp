// kiln-perplexity: perplexity of a model on a text, and KL divergence against a base run, as
// llama-perplexity measures them (same chunking, same base-logits file), so kiln and
// llama.cpp, or two settings of kiln (weight type, experts per token, KV cache types, ISA,
// backend), compare directly.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <optional>
#include <sstream>

#include <nlohmann/json.hpp>

#include "flags.h"
#include "kiln/perplexity.h"

namespace {

using kiln::Status;

struct Args {
    std::string model, text_file, base_file, isa;
    bool kl = false, json = false;
    int chunks = -1;
    kiln::LoadOptions load;
    kiln::SessionOptions session;
};

using Clock = std::chrono::steady_clock;

// "[3/40] ETA 1m12s" on stderr, rewritten in place.
void progress(int done, int total, Clock::time_point t0) {
    const double s = std::chrono::duration<double>(Clock::now() - t0).count(), eta = s / done * (total - done);
    std::fprintf(stderr, "\rkiln-perplexity: chunk %d/%d, ETA %dm%02ds ", done, total, int(eta) / 60, int(eta) % 60);
    if (done == total) std::fputc('\n', stderr);
}

}  // namespace

int main(int argc, char** argv) {
    auto fail = [](const std::string& m) { return kiln::cli::fail("kiln-perplexity", m); };
    Args a;
    kiln::cli::Flags f("kiln-perplexity -m MODEL -f TEXT [-c 512] [--kl-divergence-base OUT | --kl-divergence-base BASE --kl-divergence]",
                       "Chunks of -c tokens, the second half of each scored, as llama-perplexity; the final estimate goes to stdout.\n");
    f.string("-m, --model", "PATH", "GGUF file or Hugging Face checkpoint directory", &a.model);
    f.string("-f, --file", "FILE", "the text (not needed with --kl-divergence: the base file holds the tokens)", &a.text_file);
    f.integer("--chunks", "N", "score at most N chunks (default: all)", &a.chunks, 1, 1 << 20);
    f.string("--kl-divergence-base", "FILE", "llama.cpp's base-logits file: written by a plain run, read with --kl-divergence", &a.base_file);
    f.boolean("--kl-divergence", "compare this run with the base file: KLD mean/median/p99/max, same top token, PPL of both", &a.kl);
    f.boolean("--json", "a last line of JSON with the results", &a.json);
    f.section("Model and session (-c: tokens per chunk, default 512)");
    kiln::cli::add_session_flags(f, a.session, a.isa);
    kiln::cli::add_load_flags(f, a.load);
    if (Status s = f.parse(argc, argv); !s) return fail(s.message());
    if (f.help_requested()) return std::fputs(f.help().c_str(), stdout), 0;
    if (a.model.empty()) return fail("-m MODEL is required");
    if (a.kl && a.base_file.empty()) return fail("--kl-divergence needs --kl-divergence-base FILE (the base run's logits)");
    if (!a.kl && a.text_file.empty()) return fail("-f TEXT is required");
    if (!a.isa.empty()) a.session.isa = a.isa.c_str();

    auto model = kiln::Model::load(a.model, a.load);
    if (!model) return fail(model.message());
    const int n_vocab = model.value()->config().n_vocab;
    kiln::PerplexityOptions po;
    po.n_ctx = a.session.n_ctx > 0 ? a.session.n_ctx : 512;
    po.max_chunks = a.chunks;
    std::vector<int32_t> tokens;
    std::optional<kiln::LogitsFile> base;
    if (a.kl) {
        auto b = kiln::LogitsFile::open(a.base_file);
        if (!b) return fail(b.message());
        base = std::move(b.value());
        if (base->n_vocab() != n_vocab)
            return fail(kiln::strfmt("%s has %d-token rows, %s a %d-token vocabulary: not the same vocabulary", a.base_file.c_str(), base->n_vocab(), a.model.c_str(), n_vocab));
        if (a.session.n_ctx > 0 && a.session.n_ctx != base->n_ctx()) return fail(kiln::strfmt("-c %d differs from the base file's chunks of %d", a.session.n_ctx, base->n_ctx()));
        po.n_ctx = base->n_ctx();
        po.max_chunks = a.chunks > 0 ? std::min(a.chunks, base->n_chunk()) : base->n_chunk();
        tokens = base->tokens();
        for (int32_t t : tokens)
            if (t < 0 || t >= n_vocab) return fail(kiln::strfmt("%s holds token %d, outside %s's vocabulary", a.base_file.c_str(), t, a.model.c_str()));
    } else {
        std::ifstream in(a.text_file, std::ios::binary);
        if (!in) return fail(a.text_file + ": cannot be read");
        std::stringstream ss;
        ss << in.rdbuf();
        if (ss.str().empty()) return fail(a.text_file + ": empty");
        tokens = model.value()->tokenizer().encode(ss.str(), /*add_special=*/true, /*parse_special=*/false);
    }
    auto n_chunks = kiln::perplexity_chunks(tokens.size(), po);
    if (!n_chunks) return fail(n_chunks.message());
    kiln::SessionOptions so = a.session;
    so.n_ctx = po.n_ctx;
    so.n_batch = std::max(so.n_batch, po.n_ctx);
    auto session = kiln::Session::create(model.value(), so);
    if (!session) return fail(session.message());

    std::optional<kiln::LogitsFile> out;
    if (!a.kl && !a.base_file.empty()) {
        auto w = kiln::LogitsFile::create(a.base_file, po.n_ctx, n_vocab, n_chunks.value(), tokens);
        if (!w) return fail(w.message());
        out = std::move(w.value());
    }
    std::fprintf(stderr, "kiln-perplexity: %s, %zu tokens, %d chunks of %d\n", model.value()->description().c_str(), tokens.size(), n_chunks.value(), po.n_ctx);
    kiln::KldAccumulator kld;
    std::vector<uint16_t> base_rows;
    const auto t0 = Clock::now();
    auto on_chunk = [&](const kiln::ScoredChunk& c) -> Status {
        if (out) return out->add_chunk(c);
        if (!base) return Status::ok();
        KILN_TRY(base->read_chunk(&base_rows));
        const size_t words = size_t(kiln::logits_row_words(n_vocab));
        for (size_t i = 0; i < c.targets.size(); ++i) kld.add(base_rows.data() + i * words, c.logits + i * size_t(n_vocab), n_vocab, c.targets[i]);
        return Status::ok();
    };
    auto r = kiln::compute_perplexity(*session.value(), tokens, po, on_chunk, [&](int d, int t) { progress(d, t, t0); });
    if (!r) return fail(r.message());
    for (size_t i = 0; i < r->running_ppl.size(); ++i) std::printf("[%zu]%.4f,", i + 1, r->running_ppl[i]);
    std::printf("\nFinal estimate: PPL = %.4f +/- %.5f\n", r->ppl, r->ppl_err);
    nlohmann::json j = {{"model", a.model}, {"n_ctx", r->n_ctx}, {"chunks", r->n_chunks}, {"scored", r->n_scored}, {"ppl", r->ppl}, {"ppl_err", r->ppl_err}};
    if (base) {
        const kiln::KldResult k = kld.result();
        std::printf("PPL(base): %.4f  PPL: %.4f  dPPL: %+.4f (%+.3f%%)\n", k.ppl_base, k.ppl, k.ppl - k.ppl_base, 100 * (k.ppl / k.ppl_base - 1));
        std::printf("Mean KLD: %.6f +/- %.6f  Median: %.6f  99%%: %.6f  Max: %.6f\n", k.kld_mean, k.kld_err, k.kld_median, k.kld_p99, k.kld_max);
        std::printf("Same top token: %.3f%%\n", 100 * k.same_top);
        j["kld"] = {{"mean", k.kld_mean}, {"err", k.kld_err}, {"median", k.kld_median}, {"p99", k.kld_p99}, {"max", k.kld_max},
                    {"same_top", k.same_top}, {"ppl_base", k.ppl_base}, {"ppl", k.ppl}};
    }
    if (a.json) std::printf("%s\n", j.dump().c_str());
    return 0;
}
