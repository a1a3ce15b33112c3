// kiln-bench: prompt processing (ppN) and token generation (tgN) speed, in llama-bench's
// spirit, plus the cost of verifying k drafted tokens in one forward (vK) relative to one
// decode step. It measures the machine's read bandwidth and reports each decode test as
// GB/s and as a percentage of the best of two probes taken right before and after it, and
// of probes interleaved with its 8-token blocks (seconds apart: a drifting machine's
// bandwidth can change regime between a test and the probes around it).
// stdout carries only the table (or JSON); progress goes to stderr.
//
//   kiln-bench -m MODEL.gguf [-m ...] [-p 512] [-n 128] [-v 8] [-d 0,4096] [-t 2] [-r 3] [-o md|json]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "bandwidth.h"
#include "flags.h"
#include "kiln/kiln.h"
#include "kiln/format/quantize.h"
#include "kiln/thread_pool.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Args {
    std::vector<std::string> models;
    std::vector<int> pp{512}, tg{128}, verify{8}, depth{0};
    std::vector<int> batch;  // -b: sequences decoding at once (tgN xB rows: aggregate tokens/s)
    std::vector<int> experts{0};  // MoE experts per token to sweep (0: the model's)
    int threads = 0, reps = 3;
    int kl = 0;  // tokens over which to compare each --experts-per-token run with the model's own count
    std::string output = "md", isa;
    bool probe = true;
    kiln::LoadOptions load;  // --no-mmap, --repack, --quantize, --override-kv
    kiln::DType type_k = kiln::DType::F16, type_v = kiln::DType::F16;
    kiln::Backend backend = kiln::Backend::Cpu;
    int device = 0;  // Vulkan device index
    // The isa column: the CPU kernel set, or "vulkan".
    std::string engine() const { return backend == kiln::Backend::Vulkan ? "vulkan" : isa.empty() ? kiln::cpu_isa_name() : isa; }
    kiln::KvHadamard kv_hadamard = kiln::KvHadamard::Auto;
    std::string ab;  // --ab: a runtime switch measured on against off ("read-ahead", "decode-tuning")
};

int fail(const std::string& message) { return kiln::cli::fail("kiln-bench", message); }

double median_of(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

struct Result {
    std::string model, test;
    int depth = 0;
    std::vector<double> tps;      // one per repetition
    double bw = 0;                // decode tests: the best of the probes right before and after it (GB/s)
    std::vector<double> speedup;  // --ab: per repetition, the time with the switch off / on
    double interleaved = 0;       // decode tests: median over 8-token blocks of GB/s / the probe right after
    int seqs = 0;                 // -b rows: sequences decoding at once (tps is their aggregate)
    double median() const { return median_of(tps); }
    double mean() const {
        double s = 0;
        for (double x : tps) s += x;
        return tps.empty() ? 0 : s / double(tps.size());
    }
    double stddev() const {
        if (tps.size() < 2) return 0;
        double m = mean(), s = 0;
        for (double x : tps) s += (x - m) * (x - m);
        return std::sqrt(s / double(tps.size() - 1));
    }
};

std::vector<int32_t> random_tokens(int n, int n_vocab, uint32_t seed) {
    std::mt19937 rng(seed);
    std::vector<int32_t> v(size_t(std::max(n, 0)));
    for (auto& t : v) t = int32_t(rng() % uint32_t(n_vocab));
    return v;
}

double seconds(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// `steps` greedy decode steps (kiln::generate): forward *next, then *next = the argmax of
// its logits, `steps` times.
kiln::Status decode_greedy(kiln::Session& s, int steps, int n_vocab, int32_t* next) {
    kiln::Sampler greedy({.temperature = 0}, n_vocab);
    auto r = kiln::generate(s, greedy, std::span<const int32_t>(next, 1), {.n_predict = steps, .ignore_eos = true});
    if (!r) return r.status();
    *next = r->tokens.back();
    return kiln::Status::ok();
}

// --ab: n greedy decode steps on each of two sessions of one model and pool (the second
// with the switch off) from the same prefix, in turns of 4 tokens, so the bandwidth drift
// of a shared machine hits both alike. tps: the first session's; speedup: off time / on time.
kiln::Status ab_decode(kiln::Session& on, kiln::Session& off, int depth, int n, int n_vocab, double* tps, double* speedup) {
    const auto prefix = random_tokens(depth, n_vocab, 7);
    kiln::Session* sessions[2] = {&on, &off};
    int32_t next[2] = {1, 1};
    for (kiln::Session* s : sessions) {
        KILN_TRY(s->truncate(0));
        if (depth > 0) KILN_TRY(s->forward(prefix));
    }
    double spent[2] = {0, 0};
    for (int done = 0; done < n; done += 4)
        for (int v = 0; v < 2; ++v) {
            kiln::Session& s = *sessions[v];
            const auto t0 = Clock::now();
            KILN_TRY(decode_greedy(s, std::min(4, n - done), n_vocab, &next[v]));
            spent[v] += seconds(t0);
        }
    *tps = n / spent[0];
    *speedup = spent[1] / spent[0];
    return kiln::Status::ok();
}

// n greedy decode steps (the session already holds its prefix) in blocks of 8, each
// followed by a probe: the median over blocks of the block's GB/s over that
// probe's. Seconds apart, not minutes, so the drift of a shared machine's bandwidth mostly
// cancels (each block's first token reads caches the probe emptied, as every token's
// weights are anyway).
kiln::Status interleaved_fraction(kiln::Session& s, kiln::bench::ReadProbe& probe, int n, int n_vocab, double gb_per_token, double* fraction) {
    std::vector<double> ratios;
    int32_t next = 1;
    for (int done = 0; done < n; done += 8) {
        const int steps = std::min(8, n - done);
        const auto t0 = Clock::now();
        KILN_TRY(decode_greedy(s, steps, n_vocab, &next));
        const double gbs = steps * gb_per_token / seconds(t0), probed = probe.measure(6);  // the passes of the probes around a test
        if (probed > 0) ratios.push_back(gbs / probed);
    }
    *fraction = median_of(ratios);
    return kiln::Status::ok();
}

}  // namespace

int main(int argc, char** argv) {
    Args a;
    kiln::cli::Flags f("kiln-bench -m MODEL.gguf [-m ...] [options]",
                       "Decode rows report GB/s read, as a fraction of the probe before and after the test and (\"interleaved\")\n"
                       "the median over 8-token blocks of the fraction of a probe right after each. Lists are comma separated;\n"
                       "0 disables a test kind. stdout carries only the table (or JSON).\n");
    f.strings("-m, --model", "FILE", "model to test (repeatable)", &a.models);
    f.integers("-p", "LIST", "prompt lengths (ppN; default 512)", &a.pp, 0);
    f.integers("-n", "LIST", "decode lengths (tgN; default 128)", &a.tg, 0);
    f.integers("-v", "LIST", "verification batch sizes (vK: one forward of K tokens, as tokens/s and as cost\nrelative to one decode step; default 8)", &a.verify, 0);
    f.integers("-b, --batch", "LIST", "sequences decoding at once (like llama-batched-bench): tgN xB runs N steps of one\n"
               "forward over B sequences' tokens and reports their aggregate tokens/s", &a.batch, 1);
    f.integers("-d", "LIST", "KV depths before each test (default 0)", &a.depth, 0);
    f.integer("-t, --threads", "N", "threads (default: all cores)", &a.threads, 1, 1024);
    f.integer("-r", "N", "repetitions (default 3)", &a.reps, 1, 1 << 20);
    f.value("-o", "md|json", "output format", [&a](const std::string& v) -> kiln::Status {
        if (v != "md" && v != "json") return kiln::Status::error("-o must be md or json");
        return a.output = v, kiln::Status::ok();
    });
    f.string("--isa", "NAME", "CPU kernels: avx512, avx2 or generic", &a.isa);
    auto cache = [&a](bool k) {
        return [&a, k](const std::string& v) -> kiln::Status {
            auto t = kiln::parse_cache_type(v);
            if (!t) return t.status();
            return (k ? a.type_k : a.type_v) = t.value(), kiln::Status::ok();
        };
    };
    f.value("-ctk, --cache-type-k", "TYPE", "K cache type: f16 (default), bf16, q8_0, q4_0, f32", cache(true));
    f.value("-ctv, --cache-type-v", "TYPE", "V cache type", cache(false));
    f.toggle("--kv-hadamard", "rotate the KV cache per head (Walsh-Hadamard; default: for q8_0/q4_0 caches)", [&a] { a.kv_hadamard = kiln::KvHadamard::On; });
    f.toggle("--no-kv-hadamard", "never rotate the KV cache", [&a] { a.kv_hadamard = kiln::KvHadamard::Off; });
    f.integers("--experts-per-token", "LIST", "MoE experts per token, each value a separate run (0: the model's)", &a.experts, 0);
    f.integer("--kl", "N", "with --experts-per-token: the KL divergence of each run's next-token distributions from\n"
              "the model's own expert count, over N random tokens", &a.kl, 1, 1 << 22);
    f.boolean("--no-probe", "skip the bandwidth probe", &a.probe, false);
    f.value("--backend", "cpu|vulkan", "where the model runs (vulkan: GB/s not compared with the CPU's bandwidth)", [&a](const std::string& v) -> kiln::Status {
        auto b = kiln::parse_backend(v);
        if (!b) return kiln::Status::error("--backend: %s", b.message().c_str());
        return a.backend = b.value(), kiln::Status::ok();
    });
    f.integer("--device", "N", "Vulkan device N (kiln-generate --list-devices)", &a.device, 0, 1 << 10);
    f.value("--ab", "SWITCH", "read-ahead | decode-tuning: each tgN also with that SessionOptions switch off, the two\n"
            "sessions taking turns of 4 tokens in this process; reports the speedup of on over off", [&a](const std::string& v) -> kiln::Status {
        if (v != "read-ahead" && v != "decode-tuning") return kiln::Status::error("--ab needs a switch to measure: read-ahead or decode-tuning");
        return a.ab = v, kiln::Status::ok();
    });
    kiln::cli::add_load_flags(f, a.load);
    if (const kiln::Status st = f.parse(argc, argv); !st) return fail(st.message());
    if (f.help_requested()) {
        std::fputs(f.help().c_str(), stdout);
        return 0;
    }
    if (a.models.empty()) return fail("no model given (-m FILE.gguf)");
    const int threads = a.threads > 0 ? a.threads : kiln::default_thread_count();

    double bw = 0;
    std::unique_ptr<kiln::bench::ReadProbe> probe;  // its 1 GiB held for the run: probes come often
    if (a.probe && a.backend == kiln::Backend::Cpu) {  // the CPU's memory bandwidth says nothing about a GPU's
        std::fprintf(stderr, "kiln-bench: measuring read bandwidth with %d threads...\n", threads);
        probe = std::make_unique<kiln::bench::ReadProbe>(threads);
        if (!probe->ok()) return fail("no memory for the 1 GiB bandwidth probe (--no-probe skips it)");
        bw = probe->measure(6);
    }

    std::vector<Result> results;
    nlohmann::json jout = nlohmann::json::array();
    std::vector<std::string> rows, kl_lines;
    std::string kl_path;
    std::vector<float> kl_ref;  // (kl, n_vocab) logits with the model's own expert count
    for (const std::string& path : a.models)
    for (int ept : a.experts) {
        const kiln::LoadOptions& lo = a.load;
        auto model = kiln::Model::load(path, lo);
        if (!model) return fail(model.message());
        const kiln::Model& m = *model.value();
        const int n_vocab = m.config().n_vocab;
        int max_ctx = 0;
        for (int d : a.depth) {
            for (int p : a.pp) max_ctx = std::max(max_ctx, d + p);
            for (int n : a.tg) max_ctx = std::max(max_ctx, d + n + 1);
            for (int k : a.verify) max_ctx = std::max(max_ctx, d + k + 1);
        }
        int max_seqs = 1, batch_ctx = 0;  // -b: every sequence to the deepest depth plus the longest decode
        for (int b : a.batch) max_seqs = std::max(max_seqs, b);
        for (int d : a.depth)
            for (int n : a.tg) batch_ctx = std::max(batch_ctx, max_seqs * (d + n + kiln::kKvPagePositions));
        kiln::SessionOptions so;
        so.n_threads = threads;
        so.n_ctx = std::max({max_ctx, a.kl, 16, a.batch.empty() ? 0 : batch_ctx});
        so.n_seq_max = a.batch.empty() ? 1 : max_seqs;
        // A hybrid model's recurrent state goes back a few tokens only: the filled depth is
        // kept in a sequence of its own and forked into sequence 0 before each test.
        const bool keep_depth_apart = m.config().is_hybrid() && std::any_of(a.depth.begin(), a.depth.end(), [](int d) { return d > 0; });
        const int depth_seq = so.n_seq_max;
        if (keep_depth_apart) ++so.n_seq_max, so.n_ctx += kiln::kKvPagePositions;  // a page for the copy of a shared partly filled one
        so.n_expert_used = ept;
        if (!a.isa.empty()) so.isa = a.isa.c_str();
        so.type_k = a.type_k;
        so.type_v = a.type_v;
        so.backend = a.backend;
        so.device = a.device;
        so.kv_hadamard = a.kv_hadamard;
        auto session = kiln::Session::create(model.value(), so);
        if (!session) return fail(session.message());
        kiln::Session& s = *session.value();
        std::unique_ptr<kiln::Session> off;  // --ab: the same options with the switch off, on s's pool
        if (!a.ab.empty()) {
            kiln::SessionOptions oo = so;
            oo.pool = s.shared_pool();
            (a.ab == "read-ahead" ? oo.read_ahead : oo.decode_tuning) = false;
            auto o = kiln::Session::create(model.value(), oo);
            if (!o) return fail(o.message());
            off = std::move(o.value());
        }
        const std::string desc = m.description() + (ept > 0 ? kiln::strfmt(" %d exp", ept) : std::string());

        if (a.kl > 0 && m.config().is_moe()) {
            // Logits of the same random tokens with the model's expert count (once per model) and with ept.
            const auto toks = random_tokens(a.kl, n_vocab, 17);
            auto logits_of = [&](kiln::Session& ss, std::vector<float>* out) -> kiln::Status {
                KILN_TRY(ss.forward(toks, /*all_logits=*/true));
                out->assign(ss.logits(0), ss.logits(0) + size_t(a.kl) * n_vocab);
                return ss.truncate(0);
            };
            if (kl_path != path) {
                kiln::SessionOptions ro = so;
                ro.n_expert_used = 0;
                auto ref = kiln::Session::create(model.value(), ro);
                if (!ref) return fail(ref.message());
                kiln::Status st = logits_of(*ref.value(), &kl_ref);
                if (!st) return fail(st.message());
                kl_path = path;
            }
            std::vector<float> cur;
            kiln::Status st = logits_of(s, &cur);
            if (!st) return fail(st.message());
            double sum = 0, worst = 0;
            int same = 0;
            for (int i = 0; i < a.kl; ++i) {
                // KL(P_ref || P_cur) of the softmaxes, in double.
                const float* p = kl_ref.data() + size_t(i) * n_vocab;
                const float* q = cur.data() + size_t(i) * n_vocab;
                const double mp = *std::max_element(p, p + n_vocab), mq = *std::max_element(q, q + n_vocab);
                double zp = 0, zq = 0;
                for (int v = 0; v < n_vocab; ++v) zp += std::exp(p[v] - mp), zq += std::exp(q[v] - mq);
                double kl = 0;
                for (int v = 0; v < n_vocab; ++v) {
                    const double lp = p[v] - mp - std::log(zp), lq = q[v] - mq - std::log(zq);
                    kl += std::exp(lp) * (lp - lq);
                }
                sum += kl;
                worst = std::max(worst, kl);
                same += std::max_element(p, p + n_vocab) - p == std::max_element(q, q + n_vocab) - q;
            }
            const int k_ref = m.config().n_expert_used, k_cur = ept > 0 ? ept : k_ref;
            kl_lines.push_back(kiln::strfmt("%s: %d vs %d experts per token over %d random tokens: KL mean %.5f, max %.5f nats; same top token %.1f%%",
                                            path.c_str(), k_cur, k_ref, a.kl, sum / a.kl, worst, 100.0 * same / a.kl));
            jout.push_back({{"model", path}, {"test", "kl"}, {"experts_per_token", k_cur}, {"reference_experts_per_token", k_ref}, {"tokens", a.kl},
                            {"kl_mean", sum / a.kl}, {"kl_max", worst}, {"top1_agreement", double(same) / a.kl}});
        }

        // Fills the cache to `depth` (not timed); when it already holds that prefix, the
        // tokens a test appended are dropped instead.
        int filled = -1;
        auto prefill_depth = [&](int depth) -> kiln::Status {
            if (keep_depth_apart) {
                if (filled != depth) {
                    KILN_TRY(s.seq_remove(depth_seq));
                    filled = -1;
                    const std::vector<int32_t> fill = random_tokens(depth, n_vocab, 7);
                    kiln::Batch b;  // (depth) the sequence kept apart
                    for (int i = 0; i < depth; ++i) b.add(fill[size_t(i)], depth_seq, i, i + 1 == depth);
                    if (depth > 0) KILN_TRY(s.decode(b));
                    filled = depth;
                }
                return s.seq_fork(depth_seq, 0, depth);
            }
            if (filled == depth) return s.truncate(depth);
            KILN_TRY(s.truncate(0));
            filled = -1;
            if (depth > 0) KILN_TRY(s.forward(random_tokens(depth, n_vocab, 7)));
            filled = depth;
            return kiln::Status::ok();
        };
        // Bandwidth on a shared VM drifts over minutes (here mostly 26-35 GB/s, in spells
        // 48-61): a decode test is compared with probes taken right before and after it.
        const bool probe_cpu = probe != nullptr;
        auto run = [&](const std::string& test, int depth, auto&& body) -> kiln::Status {
            Result r{desc, test, depth, {}, 0, {}};
            const bool decode = probe_cpu && test.rfind("tg", 0) == 0 && test.find(" x") == std::string::npos;
            KILN_TRY(prefill_depth(depth));
            KILN_TRY(body(true));  // warm-up
            if (decode) r.bw = probe->measure(6);
            for (int rep = 0; rep < a.reps; ++rep) {
                KILN_TRY(prefill_depth(depth));
                double tps = 0;
                KILN_TRY(body(false, &tps));
                r.tps.push_back(tps);
            }
            if (decode) r.bw = std::max(r.bw, probe->measure(6));
            bw = std::max(bw, r.bw);
            std::fprintf(stderr, "kiln-bench: %s %s @ d%d: %.2f t/s\n", path.c_str(), test.c_str(), depth, r.median());
            results.push_back(r);
            return kiln::Status::ok();
        };
        double decode_step_s = 0;
        for (int depth : a.depth) {
            for (int p : a.pp) {
                if (p <= 0) continue;
                const auto toks = random_tokens(p, n_vocab, 11);
                kiln::Status st = run("pp" + std::to_string(p), depth, [&](bool warm, double* tps = nullptr) -> kiln::Status {
                    auto t0 = Clock::now();
                    KILN_TRY(s.forward(warm ? std::span<const int32_t>(toks.data(), std::min<size_t>(toks.size(), 16)) : std::span<const int32_t>(toks)));
                    if (tps) *tps = p / seconds(t0);
                    return kiln::Status::ok();
                });
                if (!st) return fail(st.message());
            }
            for (int n : a.tg) {
                if (n <= 0) continue;
                kiln::Status st = run("tg" + std::to_string(n), depth, [&](bool warm, double* tps = nullptr) -> kiln::Status {
                    int32_t t = 1;
                    const int steps = warm ? 4 : n;
                    auto t0 = Clock::now();
                    KILN_TRY(decode_greedy(s, steps, n_vocab, &t));
                    if (tps) *tps = steps / seconds(t0);
                    return kiln::Status::ok();
                });
                if (!st) return fail(st.message());
                decode_step_s = 1.0 / results.back().median();
                if (probe_cpu) {
                    st = prefill_depth(depth);
                    const double gb_per_token = (double(m.bytes_per_token(ept)) + double(s.kv_bytes_per_position()) * (depth + n / 2.0)) / 1e9;
                    if (st) st = interleaved_fraction(s, *probe, n, n_vocab, gb_per_token, &results.back().interleaved);
                    if (!st) return fail(st.message());
                }
                if (!off) continue;
                Result r{desc, "tg" + std::to_string(n) + " ab:" + a.ab, depth, {}, 0, {}};
                for (int rep = 0; rep < a.reps; ++rep) {
                    double tps = 0, speedup = 0;
                    st = ab_decode(s, *off, depth, n, n_vocab, &tps, &speedup);
                    if (!st) return fail(st.message());
                    r.tps.push_back(tps), r.speedup.push_back(speedup);
                }
                filled = -1;
                std::fprintf(stderr, "kiln-bench: %s %s @ d%d: %.3fx\n", path.c_str(), r.test.c_str(), depth, median_of(r.speedup));
                results.push_back(r);
            }
            for (int n : a.tg) {
                if (n <= 0) continue;
                for (int B : a.batch) {
                    const std::string test = kiln::strfmt("tg%d x%d", n, B);
                    kiln::Status st = run(test, depth, [&](bool warm, double* tps = nullptr) -> kiln::Status {
                        // Sequences 1..B-1 filled to the depth as sequence 0 is (not timed), then
                        // `steps` forwards of one token from each, greedy.
                        for (int b = 1; b < B; ++b) {
                            KILN_TRY(s.seq_remove(b));
                            if (depth > 0) {
                                kiln::Batch fill;
                                const auto toks = random_tokens(depth, n_vocab, 7 + uint32_t(b));
                                for (int i = 0; i < depth; ++i) fill.add(toks[size_t(i)], b, i, false);
                                KILN_TRY(s.decode(fill));
                            }
                        }
                        std::vector<int32_t> next(size_t(B), 1);  // (B) each sequence's next token
                        const int steps = warm ? 4 : n;
                        kiln::Batch step;
                        auto t0 = Clock::now();
                        for (int i = 0; i < steps; ++i) {
                            step.clear();
                            for (int b = 0; b < B; ++b) step.add(next[size_t(b)], b, s.seq_length(b), true);
                            KILN_TRY(s.decode(step));
                            for (int b = 0; b < B; ++b) next[size_t(b)] = int32_t(std::max_element(s.batch_logits(b), s.batch_logits(b) + n_vocab) - s.batch_logits(b));
                        }
                        if (tps) *tps = double(steps) * B / seconds(t0);
                        for (int b = 1; b < B; ++b) KILN_TRY(s.seq_remove(b));
                        return kiln::Status::ok();
                    });
                    if (!st) return fail(st.message());
                    results.back().seqs = B;
                }
            }
            for (int k : a.verify) {
                if (k <= 0) continue;
                const auto toks = random_tokens(k, n_vocab, 13);
                kiln::Status st = run("v" + std::to_string(k), depth, [&](bool, double* tps = nullptr) -> kiln::Status {
                    // Ten verification forwards of k tokens, each rolled back as a rejected draft would be.
                    const int base = s.n_past();
                    auto t0 = Clock::now();
                    for (int i = 0; i < 10; ++i) {
                        KILN_TRY(s.forward(toks, /*all_logits=*/true));
                        KILN_TRY(s.truncate(base));
                    }
                    if (tps) *tps = 10.0 * k / seconds(t0);
                    return kiln::Status::ok();
                });
                if (!st) return fail(st.message());
            }
        }
        const double gb = double(m.bytes_per_token(ept)) / 1e9;  // ept of n_expert experts read per MoE layer
        for (const Result& r : results) {
            if (r.model != desc) continue;
            nlohmann::json j = {{"model", path},       {"description", desc},   {"test", r.test},       {"depth", r.depth},
                                {"threads", threads},  {"isa", a.engine()}, {"backend", kiln::backend_name(a.backend)},
                                {"tps_median", r.median()}, {"tps_mean", r.mean()}, {"tps_stddev", r.stddev()}, {"samples", r.tps}};
            std::string extra;
            if (r.seqs > 0) {
                // Aggregate tokens/s against the same decode length with one sequence.
                j["sequences"] = r.seqs;
                for (const Result& one : results)
                    if (one.model == r.model && one.depth == r.depth && one.seqs == 1 && one.test.substr(0, one.test.find(' ')) == r.test.substr(0, r.test.find(' '))) {
                        j["speedup_vs_one_sequence"] = r.median() / one.median();
                        extra = kiln::strfmt("%.2fx one sequence (aggregate)", r.median() / one.median());
                    }
            } else if (r.test.rfind("tg", 0) == 0) {
                // Bytes read per token: the weights, plus the KV cache up to the average
                // position of the test (depth + n/2).
                const double kv_gb = double(s.kv_bytes_per_position()) * (r.depth + std::stoi(r.test.substr(2)) / 2.0) / 1e9;
                const double gbs = r.median() * (gb + kv_gb);
                j["weights_gbps"] = r.median() * gb;
                j["read_gbps"] = gbs;
                extra = r.bw > 0 ? kiln::strfmt("%.1f GB/s = %.0f%% of %.1f", gbs, 100 * gbs / r.bw, r.bw) : kiln::strfmt("%.1f GB/s", gbs);
                if (r.bw > 0) j["bandwidth_gbps"] = r.bw, j["bandwidth_fraction"] = gbs / r.bw;
                if (r.interleaved > 0) {
                    extra += kiln::strfmt(", %.0f%% interleaved", 100 * r.interleaved);
                    j["bandwidth_fraction_interleaved"] = r.interleaved;
                }
            }
            if (!r.speedup.empty()) {
                extra = kiln::strfmt("%.3fx %s off (median of %zu)", median_of(r.speedup), a.ab.c_str(), r.speedup.size());
                j["ab_switch"] = a.ab, j["ab_speedup"] = median_of(r.speedup), j["ab_speedup_samples"] = r.speedup;
            }
            if (r.test[0] == 'v' && decode_step_s > 0) {
                const int k = std::stoi(r.test.substr(1));
                const double cost = (k / r.median()) / decode_step_s;
                j["cost_vs_decode_step"] = cost;
                extra = kiln::strfmt("%.2fx one decode step", cost);
            }
            jout.push_back(j);
            rows.push_back(kiln::strfmt("| %-28s | %8.2f MiB | %6.2f B | %-7s | %7d | %13s | %9.2f ± %6.2f | %-28s |", desc.c_str(),
                                        double(m.gguf().file_size()) / 1048576.0, double(m.n_params()) / 1e9,
                                        a.engine().c_str(), threads,
                                        (r.test + (r.depth ? " @ d" + std::to_string(r.depth) : "")).c_str(), r.median(), r.stddev(),
                                        extra.c_str()));
        }
    }
    if (a.output == "json") {
        nlohmann::json top = {{"read_bandwidth_gbps", bw}, {"results", jout}};
        std::printf("%s\n", top.dump(2).c_str());
    } else {
        if (bw > 0) std::printf("read bandwidth (probe, %d threads): best %.1f GB/s; each decode row is against the probes around it\n\n", threads, bw);
        std::printf("| %-28s | %12s | %8s | %-7s | %7s | %13s | %18s | %-28s |\n", "model", "size", "params", "isa", "threads", "test",
                    "t/s (median ± sd)", "decode bandwidth / verify cost");
        std::printf("| %s | %s: | %s: | %s | %s: | %s: | %s: | %s |\n", std::string(28, '-').c_str(), std::string(11, '-').c_str(),
                    std::string(7, '-').c_str(), std::string(7, '-').c_str(), std::string(6, '-').c_str(), std::string(12, '-').c_str(),
                    std::string(17, '-').c_str(), std::string(28, '-').c_str());
        for (const auto& r : rows) std::printf("%s\n", r.c_str());
        if (!kl_lines.empty()) std::printf("\n");
        for (const auto& l : kl_lines) std::printf("%s\n", l.c_str());
    }
    return 0;
}
