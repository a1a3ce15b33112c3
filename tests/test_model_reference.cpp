// End-to-end: kiln's greedy tokens and logits against llama.cpp's on the same GGUF files
// (tests/data/reference_*.json, made by tests/data/make_reference.py).
//
// Two engines that quantize activations to 8 bits cannot agree bit for bit, and on these
// small models a tiny logit change flips near-tied greedy choices. llama.cpp itself does
// so: run with flash attention on instead of off, its logits move by 0.3-1.6 and it picks
// a different token at 18-35 of 1152 teacher-forced steps (recorded in the reference).
// So kiln is held to llama.cpp's own consistency:
//  - teacher-forced through llama.cpp's 64 greedy tokens per prompt, kiln picks a different
//    token no more often than llama.cpp with flash attention does (with 50% slack);
//  - logits at the prompt and after 64 tokens are within 2x llama.cpp's own change;
//  - generating freely, kiln reproduces llama.cpp's 64 tokens exactly on at least 3 prompts,
//    and on every prompt up to a step where llama.cpp's own top-2 margin is within its noise.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cpu/kernels.h"
#include "kiln/kiln.h"
#include "test_util.h"
#include "kiln/format/gguf.h"
#include "kiln/format/weights.h"

namespace {

struct Case {
    std::string prompt;
    std::vector<kiln::ChatMessage> messages;  // a conversation (rendered by llama-cpp-python into prompt); empty: a raw prompt
    std::vector<int32_t> prompt_ids, generated, fa_picks;
    std::vector<int32_t> prompt_top_ids, final_top_ids;
    std::vector<float> prompt_top_values, final_top_values;
    float fa_noise = 0;
    std::vector<float> margins;  // llama.cpp's top-1 minus top-2 logit at each greedy step
};

std::vector<Case> load_reference(const std::string& file) {
    std::ifstream in(kiln::test::data_path(file));
    REQUIRE(in.good());
    nlohmann::json j = nlohmann::json::parse(in);
    std::vector<Case> cases;
    for (const auto& c : j["cases"]) {
        Case k;
        k.prompt = c["prompt"];
        if (c.contains("messages"))
            for (const auto& m : c["messages"]) k.messages.push_back({m["role"], m["content"]});
        k.prompt_ids = c["prompt_ids"].get<std::vector<int32_t>>();
        k.generated = c["generated"].get<std::vector<int32_t>>();
        k.fa_picks = c["llama_fa_picks"].get<std::vector<int32_t>>();
        k.prompt_top_ids = c["prompt_logits"]["ids"].get<std::vector<int32_t>>();
        k.prompt_top_values = c["prompt_logits"]["values"].get<std::vector<float>>();
        k.final_top_ids = c["final_logits"]["ids"].get<std::vector<int32_t>>();
        k.final_top_values = c["final_logits"]["values"].get<std::vector<float>>();
        k.fa_noise = c["llama_fa_noise"];
        k.margins = c["margins"].get<std::vector<float>>();
        cases.push_back(std::move(k));
    }
    return cases;
}

// Largest |kiln - llama.cpp| over llama.cpp's 256 top logits.
float max_logit_diff(const float* ours, const std::vector<int32_t>& ids, const std::vector<float>& values) {
    float d = 0;
    for (size_t i = 0; i < ids.size(); ++i) d = std::max(d, std::fabs(ours[ids[i]] - values[i]));
    return d;
}

int32_t argmax(const float* x, int n) { return int32_t(std::max_element(x, x + n) - x); }

// Runs the first n_cases prompts (all if < 0) on the given kernels, n_steps of llama.cpp's
// 64 tokens each (all if < 0; the final logits are compared only after all 64); at least
// min_exact of them must reproduce llama.cpp's greedy tokens exactly. min_exact < 0 derives it from
// llama.cpp itself: on random-weight models, whose top-2 margins are tiny, llama.cpp with
// flash attention keeps all 64 teacher-forced picks on only 1-3 of 18 prompts, so kiln
// must reach that count less one (at least 1).
//
// Logits must stay within 2x llama.cpp's own flash-attention change on the same prompt.
// Mixture-of-experts files (moe = true) get 3x the largest change llama.cpp shows on any of
// the model's prompts instead: a router near-tie lets a tiny attention difference pick
// another expert, a discrete jump that llama.cpp's own switch may happen to miss on these
// 18 prompts (its teacher-forced picks are checked the same way as for dense models).
void check_model(const std::string& model_file, const std::string& ref_file, const char* isa, int n_cases, int min_exact, bool moe = false,
                 bool repack = false, int n_steps = -1) {
    const std::string path = kiln::test::model_path(model_file);
    if (!kiln::test::require_file(path)) return;
    kiln::LoadOptions lo;
    lo.repack = repack;
    auto model = kiln::Model::load(path, lo);
    REQUIRE_MESSAGE(model.is_ok(), model.message());
    const int n_vocab = model.value()->config().n_vocab;
    kiln::SessionOptions so;
    so.n_ctx = 512;
    so.n_threads = 2;
    so.isa = isa;
    auto session = kiln::Session::create(model.value(), so);
    REQUIRE_MESSAGE(session.is_ok(), session.message());
    kiln::Session& s = *session.value();
    auto cases = load_reference(ref_file);
    if (n_cases >= 0 && size_t(n_cases) < cases.size()) cases.resize(size_t(n_cases));
    const bool all_steps = n_steps < 0 || size_t(n_steps) >= cases.front().generated.size();
    if (!all_steps)
        for (Case& c : cases) c.generated.resize(size_t(n_steps)), c.fa_picks.resize(size_t(n_steps)), c.margins.resize(size_t(n_steps));
    float model_noise = 0;
    std::vector<float> noises;
    for (const Case& c : cases) model_noise = std::max(model_noise, c.fa_noise), noises.push_back(c.fa_noise);
    // One prompt's flash-attention change is a sample of llama.cpp's noise: a prompt where
    // it happened to be small does not make a tighter tolerance than the model's median.
    std::nth_element(noises.begin(), noises.begin() + long(noises.size() / 2), noises.end());
    const float median_noise = noises[noises.size() / 2];
    if (min_exact < 0) {
        int llama_fa_exact = 0;
        for (const Case& c : cases) llama_fa_exact += c.fa_picks == c.generated;
        min_exact = std::max(1, std::min(3, llama_fa_exact) - 1);
    }
    int ours_differ = 0, llama_fa_differs = 0, steps = 0, exact = 0;
    float worst_ratio = 0;
    for (const Case& c : cases) {
        CAPTURE(c.prompt);
        CAPTURE(isa);
        CAPTURE(repack);
        if (c.messages.empty()) {
            CHECK(model.value()->tokenizer().encode(c.prompt, true, false) == c.prompt_ids);
        } else {  // kiln's own rendering of the conversation gives llama-cpp-python's Jinja rendering, token for token
            const kiln::GgufFile& f = model.value()->gguf();
            auto t = kiln::chat_template_for(f.get_string("tokenizer.chat_template").value(), f.get_string("general.architecture").value());
            REQUIRE_MESSAGE(t.is_ok(), t.message());
            const std::string text = kiln::apply_chat_template(t.value(), c.messages);
            CHECK(text == c.prompt);
            CHECK(model.value()->tokenizer().encode(text, true, true) == c.prompt_ids);
        }

        // Teacher-forced through llama.cpp's tokens.
        REQUIRE(s.truncate(0).is_ok());
        REQUIRE(s.forward(c.prompt_ids).is_ok());
        const float d_prompt = max_logit_diff(s.logits(), c.prompt_top_ids, c.prompt_top_values);
        for (size_t i = 0; i < c.generated.size(); ++i) {
            ours_differ += argmax(s.logits(), n_vocab) != c.generated[i];
            llama_fa_differs += c.fa_picks[i] != c.generated[i];
            ++steps;
            REQUIRE(s.forward(std::span<const int32_t>(&c.generated[i], 1)).is_ok());
        }
        const float d_final = all_steps ? max_logit_diff(s.logits(), c.final_top_ids, c.final_top_values) : 0.0f;
        const float noise = std::max(c.fa_noise, median_noise);
        const float bound = moe ? 3 * model_noise : 2 * noise;
        CHECK(d_prompt <= bound);
        CHECK(d_final <= bound);
        worst_ratio = std::max(worst_ratio, std::max(d_prompt, d_final) / (moe ? model_noise : noise));

        // Free-running greedy generation.
        REQUIRE(s.truncate(0).is_ok());
        REQUIRE(s.forward(c.prompt_ids).is_ok());
        std::vector<int32_t> gen;
        for (size_t i = 0; i < c.generated.size(); ++i) {
            gen.push_back(argmax(s.logits(), n_vocab));
            REQUIRE(s.forward(std::span<const int32_t>(&gen.back(), 1)).is_ok());
        }
        exact += gen == c.generated;
        // Where the two engines part, llama.cpp itself was within the noise of picking
        // kiln's token: its top-2 margin there is under the tolerance kiln's logits are held
        // to above (2x its flash-attention logit change), or under the change kiln shows on
        // this prompt: on the 1.5B a 64-token run can part at a margin of 1.1x llama.cpp's
        // noise where kiln's logits sit 1.1x its noise away, on the random IQ2_M file at 1.16x.
        // (Not for MoE: after a router near-tie picks another expert, logits jump.)
        size_t k = 0;
        while (k < gen.size() && gen[k] == c.generated[k]) ++k;
        if (k < gen.size() && !moe) {
            CAPTURE(k);
            CAPTURE(d_prompt);
            CAPTURE(d_final);
            CHECK(c.margins[k] < std::max({bound, d_prompt, d_final}));
        }
    }
    MESSAGE(model_file << " [" << std::string(isa) << std::string(repack ? ", repack" : "") << "]: " << exact << "/" << cases.size() << " prompts give llama.cpp's exact "
                       << cases.front().generated.size() << " tokens; teacher-forced, kiln picks another token at "
                       << ours_differ << "/" << steps << " steps (llama.cpp with flash attention: " << llama_fa_differs
                       << "); worst logit diff " << worst_ratio << "x llama.cpp's own" << std::string(moe ? " (largest over the prompts)" : ""));
    CHECK(ours_differ * 2 <= llama_fa_differs * 3 + 2);
    CHECK(exact >= min_exact);
}

}  // namespace

// The best ISA runs every prompt (and must reproduce at least 3 exactly); the others
// (slower, same math) the first other_cases prompts, other_steps tokens each. The best ISA
// runs again on the row-interleaved copies (--repack), whose kernels are the ones the
// benchmarks time.
void check_all_isas(const std::string& model_file, const std::string& ref_file, int other_cases = 4, int other_steps = -1) {
    for (kiln::cpu::Isa isa : kiln::cpu::available_isas()) {
        const bool best = isa == kiln::cpu::available_isas().back();
        check_model(model_file, ref_file, kiln::cpu::isa_name(isa), best ? -1 : other_cases, best ? 3 : 0, false, false, best ? -1 : other_steps);
        if (best) check_model(model_file, ref_file, kiln::cpu::isa_name(isa), -1, 3, false, true);
    }
}

TEST_CASE("model: SmolLM2-135M greedy tokens and logits match llama.cpp") {
    check_all_isas("SmolLM2-135M-Instruct.Q4_1.gguf", "reference_smollm2.json");
}

TEST_CASE("model: Gemma 3 270M greedy tokens and logits match llama.cpp") {
    check_all_isas("gemma-3-270m-q4_k_m.gguf", "reference_gemma3.json");
}

// The real Qwen2.5-Coder pair (tools/fetch_models.py qwen-coder-1.5b qwen-coder-0.5b): the
// 18 prompts and 3 conversations rendered through the models' ChatML template (the first
// and last without a system turn: the template's default system prompt goes in). The
// portable kernels (generic, avx2) run their k-quants at ~2 tokens/s on the 1.5B, so they
// take 2 prompts of 16 tokens.
TEST_CASE("model: Qwen2.5-Coder-1.5B greedy tokens and logits match llama.cpp, raw prompts and chat") {
    check_all_isas("qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", "reference_qwen-coder-1.5b.json", 2, 16);
}

TEST_CASE("model: Qwen2.5-Coder-0.5B greedy tokens and logits match llama.cpp, raw prompts and chat") {
    check_all_isas("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", "reference_qwen-coder-0.5b.json", 2, 16);
}

// kiln-quantize's Q4_K_M and Q8_0 of SmolLM2 in F16 (tools/make_synthetic_models.sh; byte
// for byte what llama-quantize writes, see tests/test_quantize_mix.cpp): llama.cpp loads
// them, and the two engines pick the same tokens.
TEST_CASE("model: SmolLM2 quantized by kiln-quantize to Q4_K_M runs in llama.cpp with the same tokens") {
    check_model("synth/smollm2-q4_k_m.gguf", "reference_smollm2-q4_k_m.json", kiln::cpu::isa_name(kiln::cpu::available_isas().back()), -1, 1);
}

TEST_CASE("model: SmolLM2 quantized by kiln-quantize to Q8_0 runs in llama.cpp with the same tokens") {
    check_model("synth/smollm2-q8_0.gguf", "reference_smollm2-q8_0.json", kiln::cpu::isa_name(kiln::cpu::available_isas().back()), -1, 1);
}

// Gemma 3 270M with the linear RoPE scaling of the 4B-27B models (factor 8, written by
// kiln-quantize COPY --override-kv): only the global layers are scaled, as in llama.cpp.
TEST_CASE("model: Gemma 3 with linear RoPE scaling on its global layers matches llama.cpp") {
    check_model("synth/gemma3-rope-linear8.gguf", "reference_gemma3-rope-linear8.json", kiln::cpu::isa_name(kiln::cpu::available_isas().back()), -1, 3);
}

// Random-weight models (tools/make_synthetic_models.sh) for the architecture features the
// real models do not cover (10-16 of 18 prompts reproduce llama.cpp exactly here).
TEST_CASE("model: Llama 3.1 rope_freqs scaling matches llama.cpp (synthetic)") {
    check_model("synth/synth-llama3.gguf", "reference_synth-llama3.json", kiln::cpu::isa_name(kiln::cpu::available_isas().back()), -1, -1);
}

TEST_CASE("model: Qwen2 (QKV bias) matches llama.cpp (synthetic)") {
    check_model("synth/synth-qwen2.gguf", "reference_synth-qwen2.json", kiln::cpu::isa_name(kiln::cpu::available_isas().back()), -1, -1);
}

TEST_CASE("model: Qwen3 (QK norm) matches llama.cpp (synthetic)") {
    check_model("synth/synth-qwen3.gguf", "reference_synth-qwen3.json", kiln::cpu::isa_name(kiln::cpu::available_isas().back()), -1, -1);
}

// The 1-2 bit IQ mixes as random lattice blocks (kiln-synth --type iq2_m / iq1_m): iq2_s,
// iq3_s, q4_K and q5_K in one file, iq1_m, iq2_xxs, q2_K and q5_K in the other.
TEST_CASE("model: IQ2_M and IQ1_M files (iq2_s, iq3_s, iq1_m, iq2_xxs, q2_K) match llama.cpp (synthetic)") {
    for (const std::string name : {"synth-qwen2-iq2_m", "synth-qwen3-iq1_m"}) {
        CAPTURE(name);
        check_model("synth/" + name + ".gguf", "reference_" + name + ".json", kiln::cpu::isa_name(kiln::cpu::available_isas().back()), -1, -1);
    }
}

// Mixture of experts (random weights): routing, top-k weights and the shared expert.
TEST_CASE("model: Mixtral-style llama with experts matches llama.cpp (synthetic)") {
    check_model("synth/synth-mixtral.gguf", "reference_synth-mixtral.json", kiln::cpu::isa_name(kiln::cpu::available_isas().back()), -1, -1, true);
}

TEST_CASE("model: Qwen3-MoE matches llama.cpp (synthetic)") {
    check_model("synth/synth-qwen3moe.gguf", "reference_synth-qwen3moe.json", kiln::cpu::isa_name(kiln::cpu::available_isas().back()), -1, -1, true);
}

TEST_CASE("model: Qwen2-MoE (shared expert) matches llama.cpp (synthetic)") {
    check_model("synth/synth-qwen2moe.gguf", "reference_synth-qwen2moe.json", kiln::cpu::isa_name(kiln::cpu::available_isas().back()), -1, -1, true);
}

// Hybrid linear attention (random weights): gated DeltaNet layers with their recurrent
// state, gated full attention with partial interleaved M-RoPE; on every ISA (the delta-rule
// kernel is per ISA) and repacked.
TEST_CASE("model: Qwen3.5 (gated DeltaNet hybrid) matches llama.cpp (synthetic)") {
    for (kiln::cpu::Isa isa : kiln::cpu::available_isas()) {
        const bool best = isa == kiln::cpu::available_isas().back();
        check_model("synth/synth-qwen35.gguf", "reference_synth-qwen35.json", kiln::cpu::isa_name(isa), best ? -1 : 4, best ? -1 : 0);
        if (best) check_model("synth/synth-qwen35.gguf", "reference_synth-qwen35.json", kiln::cpu::isa_name(isa), -1, -1, false, true);
    }
}

TEST_CASE("model: Qwen3.5-MoE (DeltaNet hybrid, experts and the gated shared expert) matches llama.cpp (synthetic)") {
    check_model("synth/synth-qwen35moe.gguf", "reference_synth-qwen35moe.json", kiln::cpu::isa_name(kiln::cpu::available_isas().back()), -1, -1, true);
}

TEST_CASE("model: Qwen3-Next (DeltaNet hybrid, grouped value heads, one beta/alpha matrix, experts) matches llama.cpp (synthetic)") {
    check_model("synth/synth-qwen3next.gguf", "reference_synth-qwen3next.json", kiln::cpu::isa_name(kiln::cpu::available_isas().back()), -1, -1, true);
}

TEST_CASE("model: --repack unmaps the original rows it copied (resident once, not twice), and the model still runs") {
    const std::string path = kiln::test::model_path("SmolLM2-135M-Instruct.Q4_1.gguf");
    if (!kiln::test::require_file(path)) return;
    const auto file_bytes = int64_t(std::filesystem::file_size(path));
    const bool r16 = kiln::cpu::active().matmul_r16[int(kiln::DType::Q4_1)] != nullptr;  // repack happens only where kernels read it
    for (bool repack : {false, true}) {
        CAPTURE(repack);
        kiln::LoadOptions lo;
        lo.repack = repack;
        auto model = kiln::Model::load(path, lo);
        REQUIRE_MESSAGE(model.is_ok(), model.message());
        kiln::SessionOptions so;
        so.n_ctx = 64;
        auto session = kiln::Session::create(model.value(), so);
        REQUIRE(session.is_ok());
        const std::vector<int32_t> prompt = {1, 504, 3458, 314, 260, 2010};
        REQUIRE(session.value()->forward(prompt).is_ok());  // reads every matrix (the copies with repack)
        REQUIRE(std::isfinite(session.value()->logits()[0]));
        const int64_t resident = kiln::test::resident_bytes_of_mapping(model.value()->weights().layers[0].ffn_up.data);
        MESSAGE("repack " << repack << ": " << resident / 1024 << " KiB of the " << file_bytes / 1024 << " KiB file resident");
        // Without repack the forward pass mapped in every layer; with it, after the copies
        // were made from them, only the embedding rows of the prompt and the metadata are.
        if (repack && r16) CHECK(resident < file_bytes / 4);
        else CHECK(resident > file_bytes / 2);
    }
}

TEST_CASE("model: decode reads ahead and tunes its prefetch distance (read_ahead, decode_tuning) without changing a logit") {
    // The workers read the start of the next matmul's weights while the caller works, and
    // the tuner runs some steps with the other prefetch variants (where the CPU's table has
    // them: steps 2-5 of each trial; without a switch the first three trials take variants
    // 1, 2, 3 in turn, in periods 0, 1, 2 after close losses and in 0, 2, 5 (the waits after
    // clear losses) at the latest: 6 periods); on a 3-thread pool, with the r16 copies and
    // with the original rows, every decode step must give the same bits as with both off.
    const std::string path = kiln::test::model_path("SmolLM2-135M-Instruct.Q4_1.gguf");
    if (!kiln::test::require_file(path)) return;
    for (bool repack : {true, false}) {
        CAPTURE(repack);
        kiln::LoadOptions lo;
        lo.repack = repack;
        auto model = kiln::Model::load(path, lo);
        REQUIRE_MESSAGE(model.is_ok(), model.message());
        const int n_vocab = model.value()->config().n_vocab;
        std::vector<std::vector<float>> logits[3];  // [variant: both off, read-ahead, both on] (steps, n_vocab)
        for (int variant : {0, 1, 2}) {
            kiln::SessionOptions so;
            so.n_ctx = 352;
            so.n_threads = 3;
            so.read_ahead = variant >= 1;
            so.decode_tuning = variant == 2;
            auto session = kiln::Session::create(model.value(), so);
            REQUIRE(session.is_ok());
            kiln::Session& s = *session.value();
            REQUIRE(s.forward(std::vector<int32_t>{1, 504, 3458, 314}).is_ok());
            for (int step = 0; step < 5 * 64 + 8; ++step) {  // up to the sixth period's trial
                const float* l = s.logits();
                logits[variant].emplace_back(l, l + n_vocab);
                const auto next = int32_t(std::max_element(l, l + n_vocab) - l);
                REQUIRE(s.forward(std::span<const int32_t>(&next, 1)).is_ok());
            }
        }
        for (int variant : {1, 2}) {
            CAPTURE(variant);
            REQUIRE(logits[0].size() == logits[variant].size());
            for (size_t i = 0; i < logits[0].size(); ++i) {
                CAPTURE(i);
                CHECK(logits[0][i] == logits[variant][i]);
            }
        }
    }
}
