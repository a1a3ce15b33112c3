// Chat templates, the sampler, and the Session's argument checks.
#include <cmath>
#include <map>

#include "kiln/kiln.h"
#include "test_util.h"
#include "kiln/format/gguf.h"

using kiln::ChatFormat;
using kiln::ChatMessage;

TEST_CASE("chat: templates are recognised from the real models' Jinja sources, with the default system prompt they insert") {
    struct Expect {
        ChatFormat format;
        std::string default_system;
    };
    const std::string qwen = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";
    for (const auto& [file, want] : std::map<std::string, Expect>{
             {"SmolLM2-135M-Instruct.Q4_1.gguf", {ChatFormat::ChatML, "You are a helpful AI assistant named SmolLM, trained by Hugging Face"}},
             {"gemma-3-270m-q4_k_m.gguf", {ChatFormat::Gemma, ""}},
             {"qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", {ChatFormat::ChatML, qwen}},
             {"qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", {ChatFormat::ChatML, qwen}}}) {
        CAPTURE(file);
        const std::string path = kiln::test::model_path(file);
        if (!kiln::test::require_file(path)) continue;
        auto f = kiln::GgufFile::open(path);
        REQUIRE(f.is_ok());
        auto t = kiln::chat_template_for(f->get_string("tokenizer.chat_template").value(), f->get_string("general.architecture").value());
        REQUIRE_MESSAGE(t.is_ok(), t.message());
        CHECK(t->format == want.format);
        CHECK(t->default_system == want.default_system);
    }
}

TEST_CASE("chat: a ChatML default system prompt written with Jinja escapes is unescaped") {
    // Qwen2.5 writes its newlines as \n inside Jinja strings; SmolLM2 as real newlines.
    auto t = kiln::detect_chat_template("{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
                                        "{{- '<|im_start|>system\\nLine one.\\nIt\\'s line two.<|im_end|>\\n' }}");
    REQUIRE(t.is_ok());
    CHECK(t->default_system == "Line one.\nIt's line two.");
    CHECK(kiln::detect_chat_template("{{ '<|im_start|>' + m['role'] + '\\n' }}")->default_system.empty());
}

TEST_CASE("chat: each format renders the turns its models were trained on") {
    const std::vector<ChatMessage> conv = {{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello!"}, {"user", "Bye"}};
    kiln::ChatTemplate t;
    t.format = ChatFormat::ChatML;
    CHECK(kiln::apply_chat_template(t, conv) ==
          "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
          "<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n");
    t.default_system = "Default.";
    CHECK(kiln::apply_chat_template(t, {{"user", "Hi"}}) == "<|im_start|>system\nDefault.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    t.format = ChatFormat::Llama3;
    CHECK(kiln::apply_chat_template(t, {{"system", "S"}, {"user", "U"}}) ==
          "<|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nU<|eot_id|>"
          "<|start_header_id|>assistant<|end_header_id|>\n\n");
    t.format = ChatFormat::Gemma;
    CHECK(kiln::apply_chat_template(t, conv) ==
          "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n<start_of_turn>user\nBye<end_of_turn>\n"
          "<start_of_turn>model\n");
    t.format = ChatFormat::Llama2;
    CHECK(kiln::apply_chat_template(t, {{"system", "S"}, {"user", "U"}}) == "[INST] <<SYS>>\nS\n<</SYS>>\n\nU [/INST]");
}

TEST_CASE("chat: a gemma3 file without a template gets Gemma's turn format; others an error") {
    CHECK(kiln::chat_template_for("", "gemma3")->format == ChatFormat::Gemma);
    CHECK_FALSE(kiln::chat_template_for("", "llama").is_ok());
    CHECK(kiln::chat_template_for("{{ '<|im_start|>' }}", "gemma3")->format == ChatFormat::ChatML);  // the file's template wins
}

TEST_CASE("chat: unknown templates and format names are clear errors") {
    auto empty = kiln::detect_chat_template("");
    REQUIRE_FALSE(empty.is_ok());
    CHECK(empty.message().find("no chat template") != std::string::npos);
    auto odd = kiln::detect_chat_template("{% for m in messages %}{{ m.content }}{% endfor %}");
    REQUIRE_FALSE(odd.is_ok());
    CHECK(odd.message().find("--chat-format") != std::string::npos);
    CHECK(kiln::parse_chat_format("gemma").value() == ChatFormat::Gemma);
    CHECK_FALSE(kiln::parse_chat_format("vicuna").is_ok());
}

namespace {
std::vector<float> logits_fixture() {
    // A peaked distribution over 50 tokens: token 7 best, then 3, 11, ...
    std::vector<float> l(50, -5.0f);
    l[7] = 4.0f, l[3] = 3.5f, l[11] = 3.0f, l[20] = 1.0f, l[42] = 0.5f;
    return l;
}
}  // namespace

TEST_CASE("sampler: greedy, seeds, and the filters") {
    const auto l = logits_fixture();
    kiln::SamplerParams greedy;
    greedy.temperature = 0;
    kiln::Sampler g(greedy, 50);
    CHECK(g.sample(l.data()) == 7);

    // Same seed, same tokens; another seed, another sequence.
    kiln::SamplerParams p;
    p.temperature = 1.5f, p.top_k = 0, p.top_p = 1.0f, p.min_p = 0.0f, p.seed = 42;
    auto draw = [&](uint64_t seed) {
        p.seed = seed;
        kiln::Sampler s(p, 50);
        std::vector<int32_t> out;
        for (int i = 0; i < 64; ++i) out.push_back(s.sample(l.data()));
        return out;
    };
    CHECK(draw(42) == draw(42));
    CHECK(draw(42) != draw(43));

    // top-k = 2 keeps only tokens 7 and 3.
    p.top_k = 2;
    kiln::Sampler k2(p, 50);
    auto d = k2.distribution(l.data());
    REQUIRE(d.size() == 2);
    CHECK(d[0].first == 7);
    CHECK(d[1].first == 3);
    CHECK(d[0].second + d[1].second == doctest::Approx(1.0));

    // min-p 0.5 (relative to the best probability at temperature 1) drops 11 and below.
    p.top_k = 0, p.min_p = 0.5f;
    auto dm = kiln::Sampler(p, 50).distribution(l.data());
    CHECK(dm.size() == 2);

    // top-p: the smallest set whose mass reaches p (token 7 alone has 0.485 at temperature 1).
    p.min_p = 0, p.top_p = 0.4f;
    auto dp = kiln::Sampler(p, 50).distribution(l.data());
    CHECK(dp.size() == 1);
    CHECK(dp[0].first == 7);
    p.top_p = 0.5f;
    CHECK(kiln::Sampler(p, 50).distribution(l.data()).size() == 2);

    // Sampling frequencies follow the distribution (chi-square-free check: within 4 sigma).
    p.top_p = 1.0f, p.temperature = 1.0f, p.seed = 7;
    kiln::Sampler s(p, 50);
    auto dist = s.distribution(l.data());
    std::map<int32_t, int> count;
    const int n = 20000;
    for (int i = 0; i < n; ++i) ++count[s.sample(l.data())];
    for (const auto& [tok, prob] : dist) {
        const double expect = prob * n, sigma = std::sqrt(n * prob * (1 - prob));
        CHECK(std::fabs(count[tok] - expect) <= 4 * sigma + 1);
    }
}

TEST_CASE("sampler: repetition penalty and bad parameters") {
    auto l = logits_fixture();
    kiln::SamplerParams p;
    p.temperature = 0, p.repeat_penalty = 2.0f;
    kiln::Sampler s(p, 50);
    s.accept(7);  // 4.0 -> 2.0, below token 3's 3.5
    CHECK(s.sample(l.data()) == 3);
    // Frequency counts occurrences (4.0 - 0.3 once = 3.7 stays above 3.5, twice = 3.4 does not),
    // presence counts a token once; the sampled chain (top-k 2) sees the same logits.
    kiln::SamplerParams f;
    f.temperature = 0, f.frequency_penalty = 0.3f;
    kiln::Sampler fs(f, 50);
    fs.accept(7);
    CHECK(fs.sample(l.data()) == 7);
    fs.accept(7);
    CHECK(fs.penalized() == std::vector<int32_t>{7, 7});
    CHECK(fs.sample(l.data()) == 3);
    f.temperature = 1, f.top_k = 2, f.top_p = 1, f.min_p = 0;
    kiln::Sampler fd(f, 50);
    fd.accept(7), fd.accept(7);
    const auto d = fd.distribution(l.data());
    REQUIRE(d.size() == 2);
    CHECK(d[0].first == 3);
    CHECK(d[0].second == doctest::Approx(1 / (1 + std::exp(-0.1))));
    kiln::SamplerParams pr;
    pr.temperature = 0, pr.presence_penalty = 0.6f;
    kiln::Sampler ps(pr, 50);
    ps.accept(7), ps.accept(7);
    CHECK(ps.penalized() == std::vector<int32_t>{7});
    CHECK(ps.sample(l.data()) == 3);
    kiln::SamplerParams bad;
    bad.frequency_penalty = 3;
    CHECK(kiln::validate(bad).message().find("SamplerParams::frequency_penalty") != std::string::npos);
    bad = {};
    bad.top_p = 1.5f;
    CHECK(kiln::validate(bad).message().find("SamplerParams::top_p") != std::string::npos);
    bad = {};
    bad.temperature = NAN;
    CHECK_FALSE(kiln::validate(bad).is_ok());
}

TEST_CASE("session: bad arguments are errors, the cache truncates") {
    const std::string path = kiln::test::model_path("SmolLM2-135M-Instruct.Q4_1.gguf");
    if (!kiln::test::require_file(path)) return;
    auto model = kiln::Model::load(path);
    REQUIRE(model.is_ok());
    kiln::SessionOptions so;
    so.n_ctx = 32;
    auto session = kiln::Session::create(model.value(), so);
    REQUIRE(session.is_ok());
    kiln::Session& s = *session.value();
    std::vector<int32_t> toks(40, 5);
    auto full = s.forward(toks);
    REQUIRE_FALSE(full.is_ok());
    CHECK(full.message().find("context full") != std::string::npos);
    CHECK(s.n_past() == 0);  // nothing changed
    std::vector<int32_t> bad = {1, 2, 999999};
    CHECK(s.forward(bad).message().find("outside the vocabulary") != std::string::npos);
    std::vector<int32_t> few = {1, 2, 3, 4};
    REQUIRE(s.forward(few).is_ok());
    const std::vector<float> after4(s.logits(), s.logits() + model.value()->config().n_vocab);
    REQUIRE(s.forward(few).is_ok());
    CHECK(s.n_past() == 8);
    REQUIRE(s.truncate(4).is_ok());
    REQUIRE(s.forward(std::span<const int32_t>(few.data() + 3, 1)).is_ok());  // token 4 again at position 4
    REQUIRE(s.truncate(3).is_ok());
    REQUIRE(s.forward(std::span<const int32_t>(few.data() + 3, 1)).is_ok());  // position 3 recomputed: same logits as before
    for (int i = 0; i < model.value()->config().n_vocab; i += 97) CHECK(s.logits()[i] == doctest::Approx(after4[size_t(i)]).epsilon(1e-4));
    CHECK_FALSE(s.truncate(99).is_ok());
    so.type_k = kiln::DType::Q4_K;
    CHECK(kiln::Session::create(model.value(), so).message().find("K cache type q4_K is not supported") != std::string::npos);
    so.type_k = kiln::DType::F16;
    so.isa = "sse9";
    CHECK_FALSE(kiln::Session::create(model.value(), so).is_ok());
}

TEST_CASE("session: all_logits rows equal one-token-at-a-time decoding") {
    const std::string path = kiln::test::model_path("SmolLM2-135M-Instruct.Q4_1.gguf");
    if (!kiln::test::require_file(path)) return;
    auto model = kiln::Model::load(path);
    REQUIRE(model.is_ok());
    const int nv = model.value()->config().n_vocab;
    kiln::SessionOptions so;
    so.n_ctx = 64;
    auto s1 = kiln::Session::create(model.value(), so);
    REQUIRE(s1.is_ok());
    std::vector<int32_t> toks = {504, 3575, 282, 4649, 314, 198};
    REQUIRE(s1.value()->forward(toks, true).is_ok());
    REQUIRE(s1.value()->n_logits() == int(toks.size()));
    std::vector<float> batched(s1.value()->logits(0), s1.value()->logits(0) + size_t(nv) * toks.size());
    REQUIRE(s1.value()->truncate(0).is_ok());
    for (size_t i = 0; i < toks.size(); ++i) {
        REQUIRE(s1.value()->forward(std::span<const int32_t>(&toks[i], 1)).is_ok());
        // Same kernels for n <= 8 (the row kernels), so equal up to float summation order.
        float worst = 0;
        for (int v = 0; v < nv; ++v) worst = std::max(worst, std::fabs(s1.value()->logits()[v] - batched[i * size_t(nv) + size_t(v)]));
        CHECK(worst < 1e-3f);
    }
}
