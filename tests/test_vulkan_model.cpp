// End-to-end on the Vulkan backend (lavapipe in CI): the real models' greedy tokens and
// logits against the CPU backend and against llama.cpp's reference (tests/data/reference_*.json).
//
// The shaders round each quantized matmul's input as the CPU quantizes it (8-bit blocks,
// act_round.comp) and each query as the CPU prepares it, so both backends dot the same
// values in different float orders. Over 30 layers even that order difference moves
// logits by tenths (every flipped 8-bit rounding propagates), exactly as much as the
// CPU's own generic kernels differ from its AVX-512 ones. So:
//  - prompt logits are within 2x llama.cpp's own flash-attention noise (llama_fa_noise) of
//    llama.cpp's, as in test_model_reference.cpp;
//  - teacher-forced through llama.cpp's greedy tokens, Vulkan's mean logit difference from
//    the CPU is at most 1.5x that of the CPU's other ISA, and any step where Vulkan's pick
//    differs from the CPU's is a near tie (margin below 2x the llama.cpp noise);
//  - generating freely on the first prompts, Vulkan's greedy tokens equal the CPU's up to
//    a tie the CPU's own ISAs could split: the CPU's margin there is below the largest
//    logit difference between its two ISAs (Gemma 3: margins of ~0.07 where the generic
//    kernels part from AVX-512 too, one of them to Vulkan's side).
// Lavapipe runs shaders on the CPU, slowly, so the token counts are modest.
#ifdef KILN_HAVE_VULKAN
#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cpu/kernels.h"
#include "kiln/kiln.h"
#include "test_util.h"
#include "kiln/speculative.h"
#include "switches.h"

namespace {

constexpr int kTeacherForced = 24;  // llama.cpp tokens scored in one all-logits forward
constexpr int kFreeRunning = 8;     // tokens generated one at a time by each backend
constexpr size_t kPrompts = 3;      // prompts generated from freely (real models)

struct Reference {
    std::vector<int32_t> prompt_ids, generated, top_ids;
    std::vector<float> top_values;
    float noise = 0;
};

Reference load_case(const std::string& file, size_t i) {
    std::ifstream in(kiln::test::data_path(file));
    REQUIRE(in.good());
    const auto c = nlohmann::json::parse(in)["cases"].at(i);
    return {c["prompt_ids"].get<std::vector<int32_t>>(), c["generated"].get<std::vector<int32_t>>(), c["prompt_logits"]["ids"].get<std::vector<int32_t>>(),
            c["prompt_logits"]["values"].get<std::vector<float>>(), c["llama_fa_noise"].get<float>()};
}

int32_t argmax(const float* x, int n) { return int32_t(std::max_element(x, x + n) - x); }

std::unique_ptr<kiln::Session> session(std::shared_ptr<kiln::Model> model, kiln::Backend backend, kiln::DType kv_type = kiln::DType::F16,
                                       const char* isa = nullptr) {
    kiln::SessionOptions so;
    so.isa = isa;
    so.type_k = so.type_v = kv_type;
    so.n_ctx = 128;
    so.n_threads = 2;
    so.backend = backend;
    auto s = kiln::Session::create(model, so);
    REQUIRE_MESSAGE(s.is_ok(), s.message());
    return std::move(s.value());
}

std::vector<int32_t> greedy(kiln::Session& s, const std::vector<int32_t>& prompt, int n) {
    REQUIRE(s.truncate(0).is_ok());
    REQUIRE(s.forward(prompt).is_ok());
    std::vector<int32_t> out;
    for (int i = 0; i < n; ++i) {
        out.push_back(argmax(s.logits(), s.model().config().n_vocab));
        REQUIRE(s.forward(std::span<const int32_t>(&out.back(), 1)).is_ok());
    }
    return out;
}

// kv_type: the cache of every session (q8_0 moves logits a little more; the same bounds hold).
// real_model: free-running on n_prompts prompts, n_free tokens each, splits bounded by the
// CPU's cross-ISA noise; random-weight files (full of near ties): one prompt, splits bounded
// by llama.cpp's noise.
void check_vulkan_model(const std::string& model_file, const std::string& ref_file, kiln::DType kv_type = kiln::DType::F16, bool real_model = true,
                        size_t n_prompts = kPrompts, int n_free = kFreeRunning) {
    const std::string path = kiln::test::model_path(model_file);
    if (!kiln::test::require_file(path)) return;
    auto model = kiln::Model::load(path);
    REQUIRE_MESSAGE(model.is_ok(), model.message());
    const int nv = model.value()->config().n_vocab;
    auto vk = session(model.value(), kiln::Backend::Vulkan, kv_type), cpu = session(model.value(), kiln::Backend::Cpu, kv_type);
    // The yardstick for "as close as can be": the CPU backend on its most different ISA
    // (generic kernels vs AVX-512) rounds the same 8-bit values, in another float order.
    const kiln::cpu::Isa other_isa = kiln::cpu::available_isas().front();
    const bool have_other = other_isa != kiln::cpu::active().isa;
    auto alt = session(model.value(), kiln::Backend::Cpu, kv_type, have_other ? kiln::cpu::isa_name(other_isa) : nullptr);
    const Reference ref = load_case(ref_file, 0);
    // As test_model_reference.cpp holds the CPU: mixtures of experts to 3x llama.cpp's largest
    // noise over its prompts (a router near-tie there picks another expert and logits jump).
    float model_noise = 0;
    {
        std::ifstream in(kiln::test::data_path(ref_file));
        const nlohmann::json cases = nlohmann::json::parse(in)["cases"];
        for (size_t i = 0; i < cases.size(); ++i) model_noise = std::max(model_noise, cases.at(i).at("llama_fa_noise").get<float>());
    }
    const float tie = model.value()->config().is_moe() ? 3 * model_noise : 2 * ref.noise;

    // Teacher-forced: the prompt and llama.cpp's first tokens in one all-logits forward
    // (the prefill path with several 8-token matvec groups), the same on the CPU.
    std::vector<int32_t> tokens = ref.prompt_ids;
    tokens.insert(tokens.end(), ref.generated.begin(), ref.generated.begin() + kTeacherForced);
    REQUIRE(vk->forward(tokens, true).is_ok());
    REQUIRE(cpu->forward(tokens, true).is_ok());
    REQUIRE(alt->forward(tokens, true).is_ok());
    const size_t p = ref.prompt_ids.size() - 1;  // the row that predicts the first generated token
    float d_llama = 0;
    for (size_t i = 0; i < ref.top_ids.size(); ++i) d_llama = std::max(d_llama, std::fabs(vk->logits(int(p))[ref.top_ids[i]] - ref.top_values[i]));
    CHECK(d_llama <= tie);
    int differ = 0, differ_llama = 0;
    double d_vk = 0, d_isa = 0;  // mean |logit difference| from the CPU: Vulkan's, the other ISA's
    float isa_max = 0;           // the largest between the CPU's two ISAs
    for (int i = 0; i <= kTeacherForced; ++i) {
        const float *lv = vk->logits(int(p) + i), *lc = cpu->logits(int(p) + i), *la = alt->logits(int(p) + i);
        for (int t = 0; t < nv; ++t) d_vk += std::fabs(lv[t] - lc[t]), d_isa += std::fabs(la[t] - lc[t]), isa_max = std::max(isa_max, std::fabs(la[t] - lc[t]));
        const int32_t pick_vk = argmax(lv, nv), pick_cpu = argmax(lc, nv);
        differ_llama += i < kTeacherForced && pick_vk != ref.generated[size_t(i)];
        if (pick_vk != pick_cpu) {
            ++differ;
            CHECK_MESSAGE(lc[pick_cpu] - lc[pick_vk] <= tie, "step " << i << ": Vulkan picks " << pick_vk << ", CPU " << pick_cpu << " by a margin of " << lc[pick_cpu] - lc[pick_vk]);
        }
    }
    d_vk /= double(nv) * (kTeacherForced + 1), d_isa /= double(nv) * (kTeacherForced + 1);
    // The shaders round activations as the CPU quantizes them (act_round.comp): Vulkan then
    // parts from the CPU no more than the CPU's own ISAs part from each other. (Dotting f32
    // activations, SmolLM2 measured ~2x the ISA difference.) The 2-layer random-weight
    // files have no such cascade (their ISAs agree to ~1e-6): held to the near-tie rule only.
    if (have_other && real_model) CHECK(d_vk <= 1.5 * d_isa);

    // Free-running greedy decoding, one token per forward (the decode path), on kPrompts prompts.
    int same_total = 0, splits = 0;
    for (size_t c = 0; c < (real_model ? n_prompts : 1); ++c) {
        const Reference rc = load_case(ref_file, c);
        const auto gen_vk = greedy(*vk, rc.prompt_ids, n_free), gen_cpu = greedy(*cpu, rc.prompt_ids, n_free);
        size_t same = 0;
        while (same < gen_vk.size() && gen_vk[same] == gen_cpu[same]) ++same;
        same_total += int(same);
        if (same < gen_vk.size()) {
            // Only a tie within the CPU's own cross-ISA noise may split them: the CPU's margin
            // between the two tokens (rescored by a prefill of the common prefix) below the
            // largest logit difference between its two ISAs above (real models) or 2x
            // llama.cpp's noise (random weights).
            ++splits;
            std::vector<int32_t> prefix = rc.prompt_ids;
            prefix.insert(prefix.end(), gen_cpu.begin(), gen_cpu.begin() + long(same));
            REQUIRE(cpu->truncate(0).is_ok());
            REQUIRE(cpu->forward(prefix).is_ok());
            const float* lc = cpu->logits();
            const float margin = std::fabs(lc[gen_cpu[same]] - lc[gen_vk[same]]);
            CHECK_MESSAGE(margin <= (real_model && have_other ? isa_max : tie), "prompt " << c << ": free-running tokens differ at " << same << " on a margin of " << margin);
        }
    }
    MESSAGE(model_file << " on Vulkan (" << std::string(kiln::dtype_name(kv_type)) << " KV cache): prompt logits within " << d_llama << " of llama.cpp (its own flash-attention noise " << ref.noise << "); mean logit difference from the CPU backend "
                       << d_vk << " (the CPU's " << std::string(have_other ? kiln::cpu::isa_name(other_isa) : "-") << " kernels: " << d_isa << "); teacher-forced picks differ from the CPU's at " << differ << "/" << kTeacherForced + 1
                       << " steps (near ties), from llama.cpp's at " << differ_llama << "/" << kTeacherForced << "; free-running greedy equals the CPU's for "
                       << same_total << "/" << n_free * int(real_model ? n_prompts : 1) << " tokens (" << splits << " near-tie splits; the CPU's ISAs differ by up to " << isa_max << ")");
}

}  // namespace

TEST_CASE("model: vulkan: SmolLM2-135M greedy tokens match the CPU backend and llama.cpp") {
    check_vulkan_model("SmolLM2-135M-Instruct.Q4_1.gguf", "reference_smollm2.json");
}

TEST_CASE("model: vulkan: Gemma 3 270M greedy tokens match the CPU backend and llama.cpp") {
    check_vulkan_model("gemma-3-270m-q4_k_m.gguf", "reference_gemma3.json");
}

// Lavapipe decodes the 1.5B at ~0.1 token/s (the 0.5B at ~0.3) on 2 cores: one prompt of
// 4 free-running tokens each, after the teacher-forced 24.
TEST_CASE("model: vulkan: Qwen2.5-Coder-0.5B and -1.5B greedy tokens match the CPU backend and llama.cpp") {
    check_vulkan_model("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", "reference_qwen-coder-0.5b.json", kiln::DType::F16, true, 1, 4);
    check_vulkan_model("qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", "reference_qwen-coder-1.5b.json", kiln::DType::F16, true, 1, 4);
}

TEST_CASE("model: vulkan: Gemma 3 270M with a q8_0 KV cache matches the CPU backend and llama.cpp") {
    check_vulkan_model("gemma-3-270m-q4_k_m.gguf", "reference_gemma3.json", kiln::DType::Q8_0);
}

// The architecture features beyond those two, on the random-weight files
// tools/make_synthetic_models.sh writes (2 layers, so fast on lavapipe).
TEST_CASE("model: vulkan: Qwen2 (QKV bias), Qwen3 (QK norm) and Llama 3.1 (rope_freqs) match the CPU backend and llama.cpp (synthetic)") {
    for (const std::string name : {"synth-qwen2", "synth-qwen3", "synth-llama3"}) {
        CAPTURE(name);
        check_vulkan_model("synth/" + name + ".gguf", "reference_" + name + ".json", kiln::DType::F16, false);
    }
}

// The IQ lattice formats and q2_K (tools/make_synthetic_models.sh's IQ2_M and IQ1_M files).
TEST_CASE("model: vulkan: IQ2_M and IQ1_M files (iq2_s, iq3_s, iq1_m, iq2_xxs, q2_K) match the CPU backend and llama.cpp (synthetic)") {
    for (const std::string name : {"synth-qwen2-iq2_m", "synth-qwen3-iq1_m"}) {
        CAPTURE(name);
        check_vulkan_model("synth/" + name + ".gguf", "reference_" + name + ".json", kiln::DType::F16, false);
    }
}

TEST_CASE("model: vulkan: speculative decoding with the target on Vulkan gives the target's greedy tokens") {
    // A CPU draft model (the same file on the CPU backend: its picks differ from the
    // target's at near ties, so rounds see rejections too) and prompt lookup.
    const std::string path = kiln::test::model_path("SmolLM2-135M-Instruct.Q4_1.gguf");
    if (!kiln::test::require_file(path)) return;
    auto model = kiln::Model::load(path);
    REQUIRE(model.is_ok());
    const auto prompt = model.value()->tokenizer().encode("Count: one two three four five, one two three four five, one two", true, false);
    constexpr int kTokens = 10;
    auto target = session(model.value(), kiln::Backend::Vulkan);
    const auto plain = greedy(*target, prompt, kTokens);
    kiln::SamplerParams greedy_params;
    greedy_params.temperature = 0;
    kiln::DraftModelOptions dopt;
    dopt.n_threads = 2;
    dopt.sampling = greedy_params;
    auto model_drafter = kiln::make_model_drafter(model.value(), *model.value(), target->n_ctx(), dopt);
    REQUIRE_MESSAGE(model_drafter.is_ok(), model_drafter.message());
    std::unique_ptr<kiln::Drafter> drafters[] = {std::move(model_drafter.value()), kiln::make_lookup_drafter(3)};
    for (auto& drafter : drafters) {
        REQUIRE(target->truncate(0).is_ok());
        kiln::Sampler sampler(greedy_params, model.value()->config().n_vocab);
        kiln::SpecOptions o;
        o.n_predict = kTokens;
        o.ignore_eos = true;
        o.adaptive = false;
        o.draft_max = 4;
        std::vector<int32_t> out;
        kiln::SpecStats st;
        REQUIRE(kiln::speculative_generate(*target, sampler, *drafter, prompt, o, [&](int32_t t) { return out.push_back(t), true; }, &st).is_ok());
        CHECK(out == plain);
        CHECK(st.n_accepted > 0);
        MESSAGE("Vulkan target: " << st.n_accepted << "/" << st.n_drafted << " drafts accepted in " << st.n_rounds << " rounds");
    }
}

TEST_CASE("model: vulkan: tensors and logits larger than one binding are split (KILN_VULKAN_MAX_BINDING)") {
    // SmolLM2's 30 MiB embedding table in 8 MiB parts, 48 tokens of all-token logits in
    // groups of 42 rows (two submissions): the same logits as with whole bindings.
    const std::string path = kiln::test::model_path("SmolLM2-135M-Instruct.Q4_1.gguf");
    if (!kiln::test::require_file(path)) return;
    auto model = kiln::Model::load(path);
    REQUIRE(model.is_ok());
    const int nv = model.value()->config().n_vocab, n = 48;
    std::vector<int32_t> tokens(n);
    for (int i = 0; i < n; ++i) tokens[size_t(i)] = (i * 7919 + 13) % nv;
    auto whole_bindings = session(model.value(), kiln::Backend::Vulkan);
    REQUIRE(whole_bindings->forward(tokens, true).is_ok());
    setenv("KILN_VULKAN_MAX_BINDING", "8388608", 1), kiln::reload_switches();
    auto split = session(model.value(), kiln::Backend::Vulkan);
    unsetenv("KILN_VULKAN_MAX_BINDING"), kiln::reload_switches();
    REQUIRE(split->forward(tokens, true).is_ok());
    REQUIRE(split->n_logits() == n);
    // Rows of the last group run the matvec instead of the tiled matmul (another summation
    // order): a float rounding apart, relative to the logits' size.
    float worst = 0, scale = 0;
    for (int i = 0; i < n; ++i)
        for (int t = 0; t < nv; ++t) {
            worst = std::max(worst, std::fabs(split->logits(i)[t] - whole_bindings->logits(i)[t]));
            scale = std::max(scale, std::fabs(whole_bindings->logits(i)[t]));
        }
    CHECK(worst <= 1e-4f * scale);
}

// Mixture of experts on the device (router, expert matvec over the tokens grouped by expert,
// weighted combine, Qwen2-MoE's gated shared expert), on the random-weight MoE files.
TEST_CASE("model: vulkan: Mixtral, Qwen3-MoE and Qwen2-MoE match the CPU backend and llama.cpp (synthetic)") {
    for (const std::string name : {"synth-mixtral", "synth-qwen3moe", "synth-qwen2moe"}) {
        CAPTURE(name);
        check_vulkan_model("synth/" + name + ".gguf", "reference_" + name + ".json", kiln::DType::F16, false);
    }
}

// Hybrid linear attention on the device (delta_conv / delta_prep / delta_rule shaders, gated
// attention), on the random-weight hybrids; the verification tokens' states kept in slots.
TEST_CASE("model: vulkan: Qwen3.5, Qwen3.5-MoE and Qwen3-Next (gated DeltaNet hybrids) match the CPU backend and llama.cpp (synthetic)") {
    for (const std::string name : {"synth-qwen35", "synth-qwen35moe", "synth-qwen3next"}) {
        CAPTURE(name);
        check_vulkan_model("synth/" + name + ".gguf", "reference_" + name + ".json", kiln::DType::F16, false);
    }
}

TEST_CASE("model: vulkan: a hybrid's rejected drafts roll its device state back: truncation gives a fresh run's logits") {
    const std::string path = kiln::test::model_path("synth/synth-qwen35.gguf");
    if (!kiln::test::require_file(path)) return;
    auto model = kiln::Model::load(path);
    REQUIRE(model.is_ok());
    const int nv = model.value()->config().n_vocab;
    std::vector<int32_t> prompt, tail;
    for (int i = 0; i < 30; ++i) prompt.push_back(int32_t(100 + 37 * i));
    for (int i = 0; i < 5; ++i) tail.push_back(int32_t(900 + 11 * i));
    auto fresh = session(model.value(), kiln::Backend::Vulkan), s = session(model.value(), kiln::Backend::Vulkan);
    REQUIRE(fresh->forward(prompt).is_ok());
    REQUIRE(fresh->forward(std::span<const int32_t>(&tail[0], 2)).is_ok());
    REQUIRE(fresh->forward(std::span<const int32_t>(&tail[4], 1)).is_ok());
    const std::vector<float> want(fresh->logits(), fresh->logits() + nv);
    REQUIRE(s->forward(prompt).is_ok());
    int accepted = -1;
    int32_t next = -1;
    REQUIRE(s->verify_greedy(tail, &accepted, &next).is_ok());  // on the device: its states too
    REQUIRE(s->truncate(int(prompt.size()) + 2).is_ok());
    REQUIRE(s->forward(std::span<const int32_t>(&tail[4], 1)).is_ok());
    CHECK(std::vector<float>(s->logits(), s->logits() + nv) == want);
    CHECK(!s->truncate(1).is_ok());  // further back than the kept states
}

TEST_CASE("vulkan: unsupported options and models are load-time errors") {
    const std::string path = kiln::test::model_path("SmolLM2-135M-Instruct.Q4_1.gguf");
    if (!kiln::test::require_file(path)) return;
    auto model = kiln::Model::load(path);
    REQUIRE(model.is_ok());
    kiln::SessionOptions so;
    so.n_ctx = 64;
    so.backend = kiln::Backend::Vulkan;
    so.type_k = kiln::DType::Q4_0;
    so.type_v = kiln::DType::Q4_0;
    CHECK(kiln::Session::create(model.value(), so).message().find("f16 or q8_0 KV cache") != std::string::npos);
    so.type_v = kiln::DType::F16;
    so.type_k = kiln::DType::F16;
    so.kv_hadamard = kiln::KvHadamard::On;
    CHECK(kiln::Session::create(model.value(), so).message().find("SessionOptions::kv_hadamard") != std::string::npos);
    so.kv_hadamard = kiln::KvHadamard::Auto;
    so.device = 99;
    CHECK(kiln::Session::create(model.value(), so).message().find("SessionOptions::device 99") != std::string::npos);
    CHECK(kiln::parse_backend("metal").message().find("not a backend") != std::string::npos);
    so.device = 0;
    so.n_expert_used = 2;
    CHECK(kiln::Session::create(model.value(), so).message().find("SessionOptions::n_expert_used given, but the model has no experts") != std::string::npos);
    const std::string moe_path = kiln::test::model_path("synth/synth-qwen3moe.gguf");
    if (!kiln::test::require_file(moe_path)) return;
    auto moe = kiln::Model::load(moe_path);
    REQUIRE(moe.is_ok());
    so.n_expert_used = 33;
    CHECK(kiln::Session::create(moe.value(), so).message().find("the Vulkan router takes up to 32") != std::string::npos);
}

#endif  // KILN_HAVE_VULKAN
