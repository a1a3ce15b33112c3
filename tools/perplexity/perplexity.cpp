// kiln-perplexity: perplexity of a model on a text, KL divergence against a base run, and
// multiple-choice accuracy (HellaSwag, Winogrande, ARC/MMLU-style files), as llama-perplexity
// measures them (same chunking, same base-logits file, same data files and scoring), so
// kiln and llama.cpp, or two settings of kiln (weight type, experts per token, KV cache
// types, ISA, backend), compare directly.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <optional>

#include <nlohmann/json.hpp>

#include "flags.h"
#include "kiln/multiple_choice.h"
#include "kiln/perplexity.h"

namespace {

using kiln::Status;

struct Args {
    std::string model, text_file, base_file, isa;
    bool kl = false, json = false, hellaswag = false, winogrande = false, multiple_choice = false;
    int chunks = -1, hellaswag_tasks = 400, winogrande_tasks = 0, multiple_choice_tasks = 0;
    kiln::LoadOptions load;
    kiln::SessionOptions session;
};

using Clock = std::chrono::steady_clock;

// "[3/40] ETA 1m12s" on stderr, rewritten in place.
void progress(int done, int total, Clock::time_point t0, const char* what) {
    const double s = std::chrono::duration<double>(Clock::now() - t0).count(), eta = s / done * (total - done);
    std::fprintf(stderr, "\rkiln-perplexity: %s %d/%d, ETA %dm%02ds ", what, done, total, int(eta) / 60, int(eta) % 60);
    if (done == total) std::fputc('\n', stderr);
}

// --hellaswag / --winogrande / --multiple-choice: one line per task on stdout (running
// accuracy, each choice's score, the pick and the right answers), then the accuracy.
int score_choices(const Args& a, kiln::ChoiceFormat format, size_t max_tasks, const std::shared_ptr<const kiln::Model>& model) {
    auto fail = [](const std::string& m) { return kiln::cli::fail("kiln-perplexity", m); };
    std::string error;
    const std::string data = kiln::cli::read_file(a.text_file, &error);
    if (!error.empty()) return fail(error);
    auto tasks = kiln::load_choice_tasks(format, data, model->tokenizer(), max_tasks);
    if (!tasks) return fail(a.text_file + ": " + tasks.message());
    for (const std::string& why : tasks->skipped) std::fprintf(stderr, "kiln-perplexity: %s: skipped %s\n", a.text_file.c_str(), why.c_str());
    size_t most_choices = 0, n_choices = 0;
    for (const auto& t : tasks->tasks) most_choices = std::max(most_choices, t.tokens.size()), n_choices += t.tokens.size();
    kiln::SessionOptions so = a.session;
    if (so.n_ctx <= 0) so.n_ctx = 2048;
    // A group of tasks shares one decode: one sequence per choice (on the CPU; Vulkan runs one).
    so.n_seq_max = so.backend == kiln::Backend::Cpu ? std::max<int>(64, int(most_choices)) : 1;
    auto session = kiln::Session::create(model, so);
    if (!session) return fail(session.message());
    std::fprintf(stderr, "kiln-perplexity: %s, %zu %s tasks from %s\n", model->description().c_str(), tasks->tasks.size(), kiln::choice_format_name(format), a.text_file.c_str());
    size_t n_right = 0;
    const auto t0 = Clock::now();
    const kiln::Status st = kiln::score_choice_tasks(*session.value(), tasks->tasks, [&](size_t i, const kiln::ChoiceTaskResult& r) {
        n_right += r.right;
        std::printf("%zu\t%.4f\t", i + 1, 100.0 * double(n_right) / double(i + 1));
        for (double v : r.scores) std::printf(" %10.6f", v);
        std::printf("\tpicked %d, right", r.picked + 1);
        for (size_t c = 0; c < r.scores.size(); ++c)
            if (tasks->tasks[i].correct[c]) std::printf(" %zu", c + 1);
        std::printf("\n");
        progress(int(i + 1), int(tasks->tasks.size()), t0, "task");
    });
    if (!st) return fail(st.message());
    const kiln::ChoiceSummary sum = kiln::summarize_choices(n_right, tasks->tasks.size(), n_choices);
    std::printf("\n%s: %.4f%% +/- %.4f (%zu of %zu tasks right; 95%% interval [%.4f%%, %.4f%%]; chance %.4f%%)\n", kiln::choice_format_name(format),
                100 * sum.accuracy, 100 * sum.stderr_, sum.n_right, sum.n, 100 * sum.wilson_low, 100 * sum.wilson_high, 100 * sum.chance);
    if (a.json) {
        nlohmann::json j = {{"model", a.model}, {"task", kiln::choice_format_name(format)}, {"tasks", sum.n}, {"right", sum.n_right}, {"accuracy", sum.accuracy},
                            {"stderr", sum.stderr_}, {"wilson_low", sum.wilson_low}, {"wilson_high", sum.wilson_high}, {"chance", sum.chance}};
        std::printf("%s\n", j.dump().c_str());
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    auto fail = [](const std::string& m) { return kiln::cli::fail("kiln-perplexity", m); };
    Args a;
    kiln::cli::Flags f("kiln-perplexity -m MODEL -f TEXT [-c 512] [--kl-divergence-base OUT | --kl-divergence-base BASE --kl-divergence]\n"
                       "       kiln-perplexity -m MODEL -f DATA --hellaswag | --winogrande | --multiple-choice [--*-tasks N]",
                       "Chunks of -c tokens, the second half of each scored, as llama-perplexity; the final estimate goes to stdout.\n"
                       "Multiple-choice data in llama-perplexity's formats: each choice scored by the mean log-probability of its\n"
                       "tokens; -c is then the KV positions a group of tasks shares (default 2048).\n");
    f.string("-m, --model", "PATH", "GGUF file or Hugging Face checkpoint directory", &a.model);
    f.string("-f, --file", "FILE", "the text (not needed with --kl-divergence: the base file holds the tokens)", &a.text_file);
    f.integer("--chunks", "N", "score at most N chunks (default: all)", &a.chunks, 1, 1 << 20);
    f.string("--kl-divergence-base", "FILE", "llama.cpp's base-logits file: written by a plain run, read with --kl-divergence", &a.base_file);
    f.boolean("--kl-divergence", "compare this run with the base file: KLD mean/median/p99/max, same top token, PPL of both", &a.kl);
    f.boolean("--json", "a last line of JSON with the results", &a.json);
    f.section("Multiple choice (-f DATA)");
    f.boolean("--hellaswag", "HellaSwag: 6 lines per task (context, gold ending 0-3, 4 endings)", &a.hellaswag);
    f.integer("--hellaswag-tasks", "N", "tasks to score, drawn at random as llama.cpp does (default 400)", &a.hellaswag_tasks, 1, 1 << 24);
    f.boolean("--winogrande", "Winogrande CSV: index,sentence with _,choice1,choice2,answer (1 or 2)", &a.winogrande);
    f.integer("--winogrande-tasks", "N", "score N tasks drawn at random (default: all)", &a.winogrande_tasks, 0, 1 << 24);
    f.boolean("--multiple-choice", "llama.cpp's binary multiple-choice file (ARC, MMLU, TruthfulQA)", &a.multiple_choice);
    f.integer("--multiple-choice-tasks", "N", "score N tasks drawn at random (default: all)", &a.multiple_choice_tasks, 0, 1 << 24);
    f.section("Model and session (-c: tokens per chunk, default 512)");
    kiln::cli::add_session_flags(f, a.session, a.isa);
    kiln::cli::add_load_flags(f, a.load);
    if (Status s = f.parse(argc, argv); !s) return fail(s.message());
    if (f.help_requested()) return std::fputs(f.help().c_str(), stdout), 0;
    if (a.model.empty()) return fail("-m MODEL is required");
    if (int(a.hellaswag) + int(a.winogrande) + int(a.multiple_choice) + int(a.kl) > 1)
        return fail("--hellaswag, --winogrande, --multiple-choice and --kl-divergence are separate runs: give one");
    const bool choices = a.hellaswag || a.winogrande || a.multiple_choice;
    if (choices && !a.base_file.empty()) return fail("--kl-divergence-base goes with perplexity runs, not multiple choice");
    if (a.kl && a.base_file.empty()) return fail("--kl-divergence needs --kl-divergence-base FILE (the base run's logits)");
    if (!a.kl && a.text_file.empty()) return fail("-f TEXT is required");
    if (!a.isa.empty()) a.session.isa = a.isa.c_str();

    auto model = kiln::Model::load(a.model, a.load);
    if (!model) return fail(model.message());
    if (a.hellaswag) return score_choices(a, kiln::ChoiceFormat::HellaSwag, size_t(a.hellaswag_tasks), model.value());
    if (a.winogrande) return score_choices(a, kiln::ChoiceFormat::Winogrande, size_t(a.winogrande_tasks), model.value());
    if (a.multiple_choice) return score_choices(a, kiln::ChoiceFormat::MultipleChoice, size_t(a.multiple_choice_tasks), model.value());
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
        std::string error;
        const std::string text = kiln::cli::read_file(a.text_file, &error);
        if (!error.empty()) return fail(error);
        tokens = model.value()->tokenizer().encode(text, /*add_special=*/true, /*parse_special=*/false);
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
    auto r = kiln::compute_perplexity(*session.value(), tokens, po, on_chunk, [&](int d, int t) { progress(d, t, t0, "chunk"); });
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
