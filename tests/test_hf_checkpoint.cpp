// Hugging Face checkpoint directories (kiln/format/hf_checkpoint.h) against the GGUF files they
// were made from. tools/make_hf_checkpoint.py writes them (tools/make_synthetic_models.sh):
// weights dequantized by the PyPI gguf package and saved by the safetensors package under
// HF names and layouts (Q/K rows un-permuted, Gemma norms as w of 1 + w, experts split),
// config.json with transformers' keys, tokenizer.json written by the tokenizers package.
//   hf/smollm2          SmolLM2-135M Q4_1 -> F16 matrices, F32 norms, two shards + index
//   hf/gemma3           Gemma 3 270M Q4_K_M -> BF16 matrices, one file
//   hf/gemma3-multimodal  the same in Gemma3ForConditionalGeneration's layout
//   hf/synth-<arch>     the random-weight architecture files -> F32
// Same weights, same kernels: the logits must be equal, not merely close.
#include <cstring>
#include <nlohmann/json.hpp>
#include <tuple>
#include <filesystem>
#include <fstream>

#include "kiln/kiln.h"
#include "test_util.h"
#include "kiln/format/hf_checkpoint.h"
#include "kiln/format/weights.h"

namespace fs = std::filesystem;

namespace {

struct Run {
    std::vector<float> prompt_logits;  // (n_vocab) after the prompt
    std::vector<int32_t> tokens;       // greedy continuation
};

Run greedy(const std::shared_ptr<kiln::Model>& model, const std::string& prompt, int n) {
    kiln::SessionOptions so;
    so.n_ctx = 256;
    so.n_threads = 2;
    auto session = kiln::Session::create(model, so);
    REQUIRE_MESSAGE(session.is_ok(), session.message());
    kiln::Session& s = *session.value();
    const int n_vocab = model->config().n_vocab;
    REQUIRE(s.forward(model->tokenizer().encode(prompt, true, false)).is_ok());
    Run r;
    r.prompt_logits.assign(s.logits(), s.logits() + n_vocab);
    for (int i = 0; i < n; ++i) {
        r.tokens.push_back(int32_t(std::max_element(s.logits(), s.logits() + n_vocab) - s.logits()));
        REQUIRE(s.forward(std::span<const int32_t>(&r.tokens.back(), 1)).is_ok());
    }
    return r;
}

std::shared_ptr<kiln::Model> load(const std::string& path, const std::string& quantize = "") {
    kiln::LoadOptions lo;
    lo.quantize = quantize;
    lo.quantize_threads = 2;
    auto m = kiln::Model::load(path, lo);
    REQUIRE_MESSAGE(m.is_ok(), m.message());
    return m.value();
}

const char* kPrompts[] = {
    "The capital of France is",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "Once upon a time, in a small village by the sea, there lived",
};

// The HF directory and the GGUF agree on the tokenizer, the logits after each prompt
// (exactly, or within `tol` of the largest logit) and 24 greedy tokens.
void check_same_model(const std::shared_ptr<kiln::Model>& hf, const std::shared_ptr<kiln::Model>& gguf, float tol) {
    REQUIRE(hf->config().n_vocab == gguf->config().n_vocab);
    CHECK(hf->config().n_layer == gguf->config().n_layer);
    CHECK(hf->config().rope_neox == gguf->config().rope_neox);
    CHECK(hf->bytes_per_token() == gguf->bytes_per_token());
    for (const std::string prompt : kPrompts) {
        CAPTURE(prompt);
        CHECK(hf->tokenizer().encode(prompt, true, false) == gguf->tokenizer().encode(prompt, true, false));
        const Run a = greedy(hf, prompt, 24), b = greedy(gguf, prompt, 24);
        float diff = 0, scale = 0;
        for (size_t i = 0; i < a.prompt_logits.size(); ++i) {
            diff = std::max(diff, std::fabs(a.prompt_logits[i] - b.prompt_logits[i]));
            scale = std::max(scale, std::fabs(b.prompt_logits[i]));
        }
        CAPTURE(diff);
        CHECK(diff <= tol * scale);
        CHECK(a.tokens == b.tokens);
    }
}

// A checkpoint directory with the given config.json (and SmolLM2's tokenizer and weights
// unless `weights` replaces them), for the malformed-input cases.
struct TempCheckpoint {
    fs::path dir;
    explicit TempCheckpoint(const std::string& name) : dir(fs::temp_directory_path() / ("kiln-hf-test-" + name)) {
        fs::remove_all(dir);
        fs::create_directories(dir);
    }
    ~TempCheckpoint() { fs::remove_all(dir); }
    void write(const std::string& file, const std::string& text) const { std::ofstream(dir / file, std::ios::binary) << text; }
    void copy_tokenizer(const fs::path& from) const {
        for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
            if (fs::exists(from / f)) fs::copy_file(from / f, dir / f);
    }
    // One safetensors file holding F32 tensors of the given names and shapes (zeros).
    void write_weights(const std::vector<std::pair<std::string, std::vector<int64_t>>>& tensors) const {
        std::string header = "{";
        uint64_t at = 0;
        for (const auto& [name, shape] : tensors) {
            uint64_t n = 4;
            std::string dims;
            for (int64_t d : shape) {
                n *= uint64_t(d);
                if (!dims.empty()) dims += ",";
                dims += std::to_string(d);
            }
            if (at) header += ',';
            header += kiln::strfmt("\"%s\":{\"dtype\":\"F32\",\"shape\":[%s],\"data_offsets\":[%llu,%llu]}", name.c_str(), dims.c_str(), (unsigned long long)at, (unsigned long long)(at + n));
            at += n;
        }
        header += "}";
        std::ofstream out(dir / "model.safetensors", std::ios::binary);
        const uint64_t len = header.size();
        out.write(reinterpret_cast<const char*>(&len), 8);
        out << header << std::string(at, '\0');
    }
};

std::string open_error(const fs::path& dir) {
    auto f = kiln::open_hf_checkpoint(dir.string());
    REQUIRE_FALSE(f.is_ok());
    return f.message();
}

}  // namespace

TEST_CASE("model: hf: SmolLM2 as a sharded F16 checkpoint equals its GGUF, with and without --quantize q8_0, and q4_1 gives back the original file") {
    const std::string dir = kiln::test::model_path("hf/smollm2"), f16 = kiln::test::model_path("synth/smollm2-f16.gguf"),
                      q8 = kiln::test::model_path("synth/smollm2-q8_0.gguf");
    if (!kiln::test::require_file(dir + "/model.safetensors.index.json") || !kiln::test::require_file(f16) || !kiln::test::require_file(q8)) return;
    CHECK(kiln::is_hf_checkpoint_dir(dir));
    CHECK_FALSE(kiln::is_hf_checkpoint_dir(f16));
    auto hf = load(dir);
    CHECK(hf->config().arch == kiln::Arch::Llama);
    CHECK(hf->config().tied_embeddings);
    CHECK(hf->weights().layers[0].wq.dtype == kiln::DType::F16);
    CHECK(hf->tokenizer().find_token("<|im_start|>").has_value());
    check_same_model(hf, load(f16), 0);
    // Quantized at load: the same bytes kiln-quantize (= llama-quantize) writes to a file.
    check_same_model(load(dir, "q8_0"), load(q8), 0);
    // And back to the Q4_1 file it was dequantized from: Q4_1 (token_embd Q8_0 by the mix's
    // output rule) of those values gives that file's bytes again, so its exact logits.
    check_same_model(load(dir, "q4_1"), load(kiln::test::model_path("SmolLM2-135M-Instruct.Q4_1.gguf")), 0);
}

TEST_CASE("model: hf: Gemma 3 as a BF16 checkpoint equals its GGUF widened to BF16") {
    const std::string dir = kiln::test::model_path("hf/gemma3"), gguf = kiln::test::model_path("gemma-3-270m-q4_k_m.gguf");
    if (!kiln::test::require_file(dir + "/model.safetensors") || !kiln::test::require_file(gguf)) return;
    auto hf = load(dir);
    CHECK(hf->config().arch == kiln::Arch::Gemma3);
    CHECK(hf->config().sliding_window == 512);
    CHECK(hf->weights().layers[0].wq.dtype == kiln::DType::BF16);
    // The norms went through w - 1 in the script and 1 + w here: equal to a float rounding.
    check_same_model(hf, load(gguf, "bf16"), 1e-4f);
}

TEST_CASE("model: hf: Gemma 3 in the image+text layout (Gemma3ForConditionalGeneration) reads its text model") {
    // text_config without the keys equal to transformers' defaults, tensors under language_model.,
    // a vision tower and projector that are not read.
    const std::string dir = kiln::test::model_path("hf/gemma3-multimodal"), plain = kiln::test::model_path("hf/gemma3");
    if (!kiln::test::require_file(dir + "/model.safetensors") || !kiln::test::require_file(plain + "/model.safetensors")) return;
    auto mm = load(dir);
    CHECK(mm->config().arch == kiln::Arch::Gemma3);
    CHECK(mm->config().rope_theta == 1000000.0f);  // a default
    check_same_model(mm, load(plain), 0);
}

TEST_CASE("model: hf: every architecture's config and tensor names (synthetic checkpoints)") {
    // F32 checkpoints of Q8_0 files, quantized back to Q8_0 at load: the same bytes again
    // (Q8_0 of Q8_0 values is exact), so the logits must be equal.
    for (const std::string name : {"synth-llama3", "synth-qwen2", "synth-qwen3", "synth-mixtral", "synth-qwen3moe", "synth-qwen2moe"}) {
        CAPTURE(name);
        const std::string dir = kiln::test::model_path("hf/" + name), gguf = kiln::test::model_path("synth/" + name + ".gguf");
        if (!kiln::test::require_file(dir + "/config.json") || !kiln::test::require_file(gguf)) continue;
        auto hf = load(dir, "q8_0");
        auto ref = load(gguf);
        CHECK(hf->config().n_expert == ref->config().n_expert);
        CHECK(hf->config().qkv_bias == ref->config().qkv_bias);
        CHECK(hf->weights().rope_freqs.empty() == ref->weights().rope_freqs.empty());
        check_same_model(hf, ref, 0);
    }
}

TEST_CASE("hf: bad config.json and tensors are clear errors") {
    TempCheckpoint t("config");
    CHECK(open_error(t.dir).find("no config.json") != std::string::npos);
    t.write("config.json", "{\"architectures\": [\"Qwen2");
    CHECK(open_error(t.dir).find("config.json: not valid JSON") != std::string::npos);
    t.write("config.json", "[1, 2]");
    CHECK(open_error(t.dir).find("expected a JSON object") != std::string::npos);
    t.write("config.json", "{\"architectures\": [\"BertModel\"]}");
    std::string e = open_error(t.dir);
    CHECK(e.find("model class 'BertModel' is not supported") != std::string::npos);
    CHECK(e.find("Qwen3MoeForCausalLM") != std::string::npos);
    t.write("config.json", "{}");
    CHECK(open_error(t.dir).find("'architectures' must name the model class") != std::string::npos);
    const std::string base = "\"architectures\": [\"LlamaForCausalLM\"], \"num_hidden_layers\": 2, \"num_attention_heads\": 4, ";
    t.write("config.json", "{" + base + "\"rms_norm_eps\": 1e-5}");
    CHECK(open_error(t.dir).find("missing 'hidden_size'") != std::string::npos);
    t.write("config.json", "{" + base + "\"hidden_size\": \"64\"}");
    CHECK(open_error(t.dir).find("'hidden_size' is not an integer") != std::string::npos);
    t.write("config.json", "{" + base + "\"hidden_size\": -64}");
    CHECK(open_error(t.dir).find("'hidden_size' = -64 is out of range") != std::string::npos);
    t.write("config.json", "{" + base + "\"hidden_size\": 64, \"rope_scaling\": {\"rope_type\": \"dynamic\", \"factor\": 2}}");
    CHECK(open_error(t.dir).find("rope_scaling type 'dynamic' is not supported") != std::string::npos);
    t.write("config.json", "{" + base + "\"hidden_size\": 64, \"rope_scaling\": {\"rope_type\": 5}}");  // a value of the wrong JSON type
    CHECK(open_error(t.dir).find("config.json") != std::string::npos);
    t.write("config.json", "{" + base + "\"hidden_size\": 64, \"attention_bias\": true}");
    CHECK(open_error(t.dir).find("'attention_bias': true is not supported for LlamaForCausalLM") != std::string::npos);
    t.write("config.json", "{\"architectures\": [\"Qwen3MoeForCausalLM\"], \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"hidden_size\": 64, \"num_experts\": 4, \"num_experts_per_tok\": 8}");
    CHECK(open_error(t.dir).find("out of range") != std::string::npos);
    t.write("config.json", "{\"architectures\": [\"Gemma3ForCausalLM\"], \"num_hidden_layers\": 3, \"num_attention_heads\": 4, \"hidden_size\": 64, \"layer_types\": [\"sliding_attention\", \"full_attention\", \"full_attention\"]}");
    CHECK(open_error(t.dir).find("'layer_types' is not a repeating local/global pattern") != std::string::npos);

    // Tensor problems need a tokenizer and weights: SmolLM2's tokenizer, tiny F32 tensors.
    const fs::path smollm2 = kiln::test::model_path("hf/smollm2");
    if (!kiln::test::require_file((smollm2 / "tokenizer.json").string())) return;
    t.copy_tokenizer(smollm2);
    t.write("config.json", "{" + base + "\"hidden_size\": 64}");
    t.write_weights({{"model.embed_tokens.weight", {8, 64}}, {"model.layers.0.self_attn.q_proj.weight", {64, 64}}, {"model.layers.0.cross_attn.weight", {64}}});
    CHECK(open_error(t.dir).find("tensor 'model.layers.0.cross_attn.weight' has no GGUF counterpart for LlamaForCausalLM") != std::string::npos);
    t.write_weights({{"model.layers.0.self_attn.q_proj.weight", {2, 3, 4}}});
    CHECK(open_error(t.dir).find("3 dimensions") != std::string::npos);
    t.write_weights({{"model.layers.0.self_attn.q_proj.weight", {63, 64}}});
    CHECK(open_error(t.dir).find("do not split into 4 heads of even size") != std::string::npos);
    t.write("config.json", "{\"architectures\": [\"MixtralForCausalLM\"], \"num_hidden_layers\": 1, \"num_attention_heads\": 4, \"hidden_size\": 64, \"num_local_experts\": 2, \"num_experts_per_tok\": 1}");
    t.write_weights({{"model.layers.0.block_sparse_moe.experts.0.w1.weight", {32, 64}}});
    CHECK(open_error(t.dir).find("expert 1 of 'blk.0.ffn_gate_exps.weight' is missing") != std::string::npos);
    t.write_weights({{"model.layers.0.block_sparse_moe.experts.7.w1.weight", {32, 64}}});
    CHECK(open_error(t.dir).find("expert 7, but the config has 2 experts") != std::string::npos);
    // The loader names what the converted model lacks, as for a GGUF file.
    t.write("config.json", "{" + base + "\"hidden_size\": 64}");
    t.write_weights({{"model.embed_tokens.weight", {49152, 64}}});
    auto m = kiln::Model::load(t.dir.string());
    REQUIRE_FALSE(m.is_ok());
    CHECK(m.message().find("missing tensor 'output_norm.weight'") != std::string::npos);
}

// ---- tokenizer.json -> the GGUF tokenizer ---------------------------------------------

namespace {

std::string from_hex(const std::string& hex) {
    std::string out;
    for (size_t i = 0; i + 1 < hex.size(); i += 2) out += char(std::stoi(hex.substr(i, 2), nullptr, 16));
    return out;
}

kiln::Tokenizer hf_tokenizer(const std::string& dir) {
    auto f = kiln::open_hf_checkpoint(dir);
    REQUIRE_MESSAGE(f.is_ok(), f.message());
    auto tok = kiln::Tokenizer::from_gguf(f.value());
    REQUIRE_MESSAGE(tok.is_ok(), tok.message());
    return tok.value();
}

kiln::Tokenizer gguf_tokenizer(const std::string& path) {
    auto f = kiln::GgufFile::open(path);
    REQUIRE_MESSAGE(f.is_ok(), f.message());
    auto tok = kiln::Tokenizer::from_gguf(f.value());
    REQUIRE_MESSAGE(tok.is_ok(), tok.message());
    return tok.value();
}

// A minimal byte-level BPE tokenizer.json with `model` as its model object.
std::string tokenizer_json(const std::string& model, const std::string& added = "[]") {
    return "{\"added_tokens\": " + added + ", \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"use_regex\": true}, \"decoder\": {\"type\": \"ByteLevel\"}, \"model\": " + model + "}";
}

}  // namespace

TEST_CASE("hf: tokenizer.json tokenizes as llama.cpp and as the GGUF it came from") {
    // (HF dir, GGUF, llama.cpp's tokenizations in tokenizer_real_models.json or "")
    const std::vector<std::tuple<std::string, std::string, std::string>> pairs = {
        {"hf/smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "SmolLM2-135M-Instruct.Q4_1.gguf"},   // byte-level BPE, pre "smollm"
        {"hf/gemma3", "gemma-3-270m-q4_k_m.gguf", "gemma-3-270m-q4_k_m.gguf"},                  // SentencePiece BPE, 262k pieces
        {"hf/synth-llama3", "synth/synth-llama3.gguf", ""},                                      // Llama 3 (llama-bpe)
        {"hf/synth-qwen2", "synth/synth-qwen2.gguf", ""},                                        // Qwen2
        {"hf/synth-mixtral", "synth/synth-mixtral.gguf", ""},                                    // Llama 2 SentencePiece
    };
    const nlohmann::json vectors = nlohmann::json::parse(std::ifstream(kiln::test::data_path("tokenizer_real_models.json")));
    const std::vector<std::string> extra = {
        "<|im_start|>user\nHi there!<|im_end|>\n<|im_start|>assistant\n", "<start_of_turn>user\nHello<end_of_turn>\n",
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>", "[INST] Hello [/INST]",
        "  leading spaces and\ttabs\n\nnumbers 1234567 3.14159 and emoji 🦙🔥 ünïcödé 日本語", "def f(x):\n    return x ** 2  # comment",
    };
    for (const auto& [dir, gguf, vector_file] : pairs) {
        CAPTURE(dir);
        if (!kiln::test::require_file(kiln::test::model_path(dir) + "/tokenizer.json") || !kiln::test::require_file(kiln::test::model_path(gguf))) continue;
        const kiln::Tokenizer hf = hf_tokenizer(kiln::test::model_path(dir)), ref = gguf_tokenizer(kiln::test::model_path(gguf));
        REQUIRE(hf.n_vocab() == ref.n_vocab());
        CHECK(hf.model_name() == ref.model_name());
        CHECK(hf.pre_name() == ref.pre_name());
        CHECK(hf.warning().empty());
        CHECK(hf.bos() == ref.bos());
        CHECK(hf.eos() == ref.eos());
        CHECK(hf.add_bos() == ref.add_bos());
        CHECK(hf.add_eos() == ref.add_eos());
        int type_differs = 0, text_differs = 0, eog_differs = 0;
        for (kiln::TokenId id = 0; id < ref.n_vocab(); ++id) {
            text_differs += hf.token_text(id) != ref.token_text(id);
            type_differs += hf.token_type(id) != ref.token_type(id);
            eog_differs += hf.is_eog(id) != ref.is_eog(id);
        }
        CHECK(text_differs == 0);
        CHECK(type_differs == 0);
        CHECK(eog_differs == 0);
        int n_cases = 0;
        for (const auto& m : vectors["models"]) {
            if (m["file"] != vector_file) continue;
            for (const auto& c : m["cases"]) {
                const std::string text = c.contains("hex") ? from_hex(c["hex"]) : c["text"].get<std::string>();
                CAPTURE(text);
                CHECK(hf.encode(text, c["add_special"], c["parse_special"]) == c["ids"].get<std::vector<kiln::TokenId>>());
                ++n_cases;
            }
        }
        CHECK(n_cases >= (vector_file.empty() ? 0 : 10));
        for (const std::string& text : extra) {
            CAPTURE(text);
            for (bool parse_special : {false, true}) {
                const std::vector<kiln::TokenId> ids = ref.encode(text, true, parse_special);
                CHECK(hf.encode(text, true, parse_special) == ids);
                CHECK(hf.decode(ids) == ref.decode(ids));
            }
        }
    }
}

TEST_CASE("hf: the chat template and special tokens come from tokenizer_config.json") {
    const std::string dir = kiln::test::model_path("hf/smollm2");
    if (!kiln::test::require_file(dir + "/tokenizer_config.json")) return;
    auto hf = kiln::open_hf_checkpoint(dir);
    REQUIRE(hf.is_ok());
    auto ref = kiln::GgufFile::open(kiln::test::model_path("SmolLM2-135M-Instruct.Q4_1.gguf"));
    REQUIRE(ref.is_ok());
    CHECK(hf->get_string("tokenizer.chat_template").value() == ref->get_string("tokenizer.chat_template").value());
    CHECK(hf->get_string("tokenizer.chat_template").value().find("<|im_start|>") != std::string::npos);
    CHECK(hf->get_int("tokenizer.ggml.padding_token_id", -1).value() == ref->get_int("tokenizer.ggml.padding_token_id", -1).value());
}

TEST_CASE("hf: bad tokenizer files are clear errors") {
    TempCheckpoint t("tokenizer");
    t.write("config.json", "{\"architectures\": [\"Qwen2ForCausalLM\"], \"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"hidden_size\": 64}");
    CHECK(open_error(t.dir).find("tokenizer.json: cannot open") != std::string::npos);
    const std::string vocab = "{\"a\": 0, \"b\": 1, \"ab\": 2}";
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"{\"model\": ", "not valid JSON"},
        {"{}", "no \"model\" object"},
        {tokenizer_json("{\"type\": \"WordPiece\", \"vocab\": {}}"), "tokenizer model 'WordPiece' is not supported"},
        {tokenizer_json("{\"type\": \"BPE\", \"vocab\": [1, 2]}"), "model.vocab must be an object"},
        {tokenizer_json("{\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 2}, \"merges\": []}"), "no token has id 1"},
        {tokenizer_json("{\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 0}, \"merges\": []}"), "id 0 is given to both"},
        {tokenizer_json("{\"type\": \"BPE\", \"vocab\": {\"a\": -3}, \"merges\": []}"), "id -3 is out of range"},
        {tokenizer_json("{\"type\": \"BPE\", \"vocab\": {\"a\": \"0\"}, \"merges\": []}"), "token 'a': id is not an integer"},
        {tokenizer_json("{\"type\": \"BPE\", \"vocab\": " + vocab + ", \"merges\": [\"ab\"]}"), "merge 0 is neither"},
        {tokenizer_json("{\"type\": \"BPE\", \"vocab\": " + vocab + ", \"merges\": [[\"a\", \"b\", \"c\"]]}"), "merge 0 is neither"},
        {tokenizer_json("{\"type\": \"BPE\", \"vocab\": " + vocab + ", \"merges\": [\"a b\"]}", "[{\"content\": \"<s>\"}]"), "lacks its content or id"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": " + vocab + ", \"merges\": [\"a b\"]}}", "without ByteLevel or byte_fallback"},
    };
    for (const auto& [json, want] : cases) {
        CAPTURE(json);
        t.write("tokenizer.json", json);
        const std::string e = open_error(t.dir);
        CHECK(e.find("tokenizer.json") != std::string::npos);
        CHECK(e.find(want) != std::string::npos);
    }
    t.write("tokenizer.json", tokenizer_json("{\"type\": \"BPE\", \"vocab\": " + vocab + ", \"merges\": [[\"a\", \"b\"]]}"));
    t.write("tokenizer_config.json", "{\"eos_token\": {\"content\": \"</s>\"}}");
    CHECK(open_error(t.dir).find("tokenizer_config.json: eos_token '</s>' is not in the vocabulary") != std::string::npos);
    t.write("tokenizer_config.json", "{\"add_bos_token\": \"yes\"}");
    CHECK(open_error(t.dir).find("'add_bos_token' is not true or false") != std::string::npos);
    t.write("tokenizer_config.json", "{\"chat_template\": 42}");
    CHECK(open_error(t.dir).find("chat_template must be a string") != std::string::npos);
    // A well-formed tokenizer gets past the tokenizer, to the (missing) weights.
    t.write("tokenizer_config.json", "{\"eos_token\": \"ab\", \"chat_template\": [{\"name\": \"default\", \"template\": \"{{ x }}\"}]}");
    CHECK(open_error(t.dir).find("model.safetensors") != std::string::npos);
}
