// kiln-imatrix: an importance matrix from calibration text, as llama-imatrix computes it
// (the text cut into chunks of -c tokens, each run alone from BOS; per weight the sum of
// each input column's squared activation over every token, per expert for MoE weights),
// written in llama-imatrix's GGUF format for kiln-quantize --imatrix or llama-quantize
// --imatrix. Runs on the CPU backend; prints the chunks' running perplexity as it goes.
#include <chrono>
#include <cstdio>

#include "flags.h"
#include "kiln/imatrix.h"
#include "kiln/perplexity.h"

namespace {

using kiln::Status;
using Clock = std::chrono::steady_clock;

struct Args {
    std::string model, text_file, out_file = "imatrix.gguf", isa;
    int chunks = -1;
    kiln::LoadOptions load;
    kiln::SessionOptions session;
};

}  // namespace

int main(int argc, char** argv) {
    auto fail = [](const std::string& m) { return kiln::cli::fail("kiln-imatrix", m); };
    Args a;
    kiln::cli::Flags f("kiln-imatrix -m MODEL -f TEXT [-o imatrix.gguf] [-c 512] [--chunks N]",
                       "Chunks of -c tokens run through the model on the CPU; the text needs at least two chunks' worth.\n"
                       "The output is llama-imatrix's GGUF importance matrix (kiln-quantize --imatrix, llama-quantize --imatrix).");
    f.string("-m, --model", "PATH", "GGUF file or Hugging Face checkpoint directory", &a.model);
    f.string("-f, --file", "FILE", "the calibration text", &a.text_file);
    f.string("-o, --output", "FILE", "where to write the importance matrix (default imatrix.gguf)", &a.out_file);
    f.integer("--chunks", "N", "use at most N chunks (default: all)", &a.chunks, 1, 1 << 20);
    f.section("Model and session (-c: tokens per chunk, default 512)");
    kiln::cli::add_session_flags(f, a.session, a.isa);
    kiln::cli::add_load_flags(f, a.load);
    if (Status s = f.parse(argc, argv); !s) return fail(s.message());
    if (f.help_requested()) return std::fputs(f.help().c_str(), stdout), 0;
    if (a.model.empty()) return fail("-m MODEL is required");
    if (a.text_file.empty()) return fail("-f TEXT is required");
    if (a.session.backend != kiln::Backend::Cpu) return fail("importance matrices are computed on the CPU backend (--backend cpu)");
    if (!a.isa.empty()) a.session.isa = a.isa.c_str();

    std::string error;
    const std::string text = kiln::cli::read_file(a.text_file, &error);
    if (!error.empty()) return fail(error);

    auto model = kiln::Model::load(a.model, a.load);
    if (!model) return fail(model.message());
    const std::vector<int32_t> tokens = model.value()->tokenizer().encode(text, /*add_special=*/true, /*parse_special=*/false);
    kiln::PerplexityOptions po;
    po.n_ctx = a.session.n_ctx > 0 ? a.session.n_ctx : 512;
    po.max_chunks = a.chunks;
    auto n_chunks = kiln::perplexity_chunks(tokens.size(), po);
    if (!n_chunks) return fail(a.text_file + ": " + n_chunks.message());
    kiln::SessionOptions so = a.session;
    so.n_ctx = po.n_ctx;
    so.n_batch = std::max(so.n_batch, po.n_ctx);  // a chunk in one forward pass
    auto session = kiln::Session::create(model.value(), so);
    if (!session) return fail(session.message());
    // The blocks' weights only: llama-imatrix --process-output's output.weight statistics
    // cover every row, and these chunks ask logits of the scored half alone.
    kiln::ImatrixCollector im;
    if (Status s = session.value()->set_activation_observer(&im); !s) return fail(s.message());

    std::fprintf(stderr, "kiln-imatrix: %s, %zu tokens, %d chunks of %d\n", model.value()->description().c_str(), tokens.size(), n_chunks.value(), po.n_ctx);
    const auto t0 = Clock::now();
    auto r = kiln::compute_perplexity(*session.value(), tokens, po, [&](const kiln::ScoredChunk&) { return im.status(); }, [&](int done, int total) {
        const double s = std::chrono::duration<double>(Clock::now() - t0).count();
        std::fprintf(stderr, "\rkiln-imatrix: chunk %d/%d, %.1f s ", done, total, s);
        if (done == total) std::fputc('\n', stderr);
    });
    if (!r) return fail(r.message());
    for (size_t i = 0; i < r->running_ppl.size(); ++i) std::printf("[%zu]%.4f,", i + 1, r->running_ppl[i]);
    std::printf("\nFinal estimate: PPL = %.4f +/- %.5f\n", r->ppl, r->ppl_err);
    if (Status s = im.save(a.out_file, {a.text_file}, po.n_ctx); !s) return fail(s.message());
    std::fprintf(stderr, "kiln-imatrix: %zu weights, %lld chunks of %d tokens -> %s\n", im.stats().size(), (long long)im.chunks(po.n_ctx), po.n_ctx, a.out_file.c_str());
    return 0;
}
