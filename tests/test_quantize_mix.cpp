// Quantization mixes (kiln/format/quantize.h): kiln picks llama-quantize's type for every tensor
// and quantizes it no worse, checked against what llama-quantize itself made of the same
// F16 SmolLM2 (tests/data/quantize_smollm2.json, tests/data/make_quantize_reference.py);
// quantizing at load equals loading a file quantized beforehand.
#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <nlohmann/json.hpp>

#include "kiln/kiln.h"
#include "test_util.h"
#include "kiln/format/quantize.h"
#include "kiln/format/imatrix.h"
#include "kiln/format/gguf_writer.h"
#include "ref/quants.h"

namespace {

const char* kF16Model = "synth/smollm2-f16.gguf";

kiln::QuantizeOptions options_for(const std::string& mix) {
    auto m = kiln::parse_quant_mix(mix);
    REQUIRE_MESSAGE(m.is_ok(), m.message());
    kiln::QuantizeOptions o;
    o.mix = m.value();
    o.n_threads = 2;
    return o;
}

std::vector<float> prompt_logits(const std::shared_ptr<kiln::Model>& model, const std::string& prompt) {
    kiln::SessionOptions so;
    so.n_ctx = 128;
    so.n_threads = 2;
    auto s = kiln::Session::create(model, so);
    REQUIRE_MESSAGE(s.is_ok(), s.message());
    const std::vector<int32_t> ids = model->tokenizer().encode(prompt, true, false);
    REQUIRE(s.value()->forward(ids).is_ok());
    return std::vector<float>(s.value()->logits(), s.value()->logits() + model->config().n_vocab);
}

}  // namespace

TEST_CASE("quantize: every mix gives llama-quantize's type and RMSE for each tensor of SmolLM2 F16") {
    const std::string path = kiln::test::model_path(kF16Model);
    if (!kiln::test::require_file(path)) return;
    std::ifstream in(kiln::test::data_path("quantize_smollm2.json"));
    REQUIRE(in.good());
    const nlohmann::json ref = nlohmann::json::parse(in);
    auto original = kiln::GgufFile::open(path);
    REQUIRE(original.is_ok());
    for (const auto& [mix, tensors] : ref["mixes"].items()) {
        CAPTURE(mix);
        auto f = kiln::GgufFile::open(path);
        REQUIRE(f.is_ok());
        REQUIRE(kiln::quantize_gguf(f.value(), options_for(mix)).is_ok());
        REQUIRE(f->tensors().size() == tensors.size());
        int n_quantized = 0;
        double worst = 0;
        for (const kiln::GgufTensor& t : f->tensors()) {
            CAPTURE(t.name);
            REQUIRE(tensors.contains(t.name));
            const std::string want_type = tensors[t.name][0];
            const double llama_rmse = tensors[t.name][1];
            CHECK(std::string(kiln::dtype_name(t.dtype)) == want_type);
            const double rmse = kiln::tensor_rmse(*original->find_tensor(t.name), t);
            // Bytes equal to ggml's reference quantizer give llama.cpp's RMSE up to the
            // rounding of the two dequantizers' sums; a worse quantizer would be far above.
            CHECK(rmse <= llama_rmse * (1 + 1e-6) + 1e-12);
            if (llama_rmse > 0) worst = std::max(worst, rmse / llama_rmse), ++n_quantized;
        }
        CHECK(n_quantized > 200);  // every matrix, not only the norms
        MESSAGE(mix << ": " << n_quantized << " tensors, worst kiln/llama.cpp RMSE " << worst);
    }
}

// The 1-3 bit IQ mixes: llama-quantize's type for every tensor (it needs an importance
// matrix to write most of them; the types do not depend on it) and, with the same importance
// matrix (tests/data/smollm2-imatrix.gguf, llama-imatrix's), its bytes for every matrix of
// layers 2 and 3 (all the mixes' types: the first eighth's ffn_down gets its own),
// each quantized as quantize_gguf does (row by row, the tensor's imatrix row): the lattice
// types and the k-quant and legacy fallbacks through ggml's imatrix searches. (Writing all
// ten mixes whole takes minutes; quantize_gguf with an imatrix is checked whole below.)
namespace {
// sum((i + 1) * byte[i]) mod 2^64, as make_quantize_reference.py records it.
uint64_t checksum_bytes(const uint8_t* data, uint64_t n) {
    uint64_t s = 0;
    for (uint64_t i = 0; i < n; ++i) s += (i + 1) * data[i];
    return s;
}
std::string checksum(const kiln::GgufTensor& t) { return std::to_string(checksum_bytes(t.data, t.nbytes)); }

// t (a 2-D F16 matrix) quantized to `to` with its importance rows (if any), as quantize_gguf does it.
std::string quantized_checksum(const kiln::GgufTensor& t, kiln::DType to, const kiln::ImportanceMatrix& im) {
    const int64_t cols = t.ne[0], rows = t.n_elements() / cols;
    const std::vector<float>* imp = im.find(t.name);
    std::vector<float> row(static_cast<size_t>(cols));                      // (cols)
    std::vector<uint8_t> out(kiln::row_bytes(to, cols) * size_t(rows));     // (rows, row bytes)
    for (int64_t r = 0; r < rows; ++r) {
        kiln::ref::dequantize_row(t.dtype, t.data + size_t(r) * kiln::row_bytes(t.dtype, cols), row.data(), cols);
        kiln::ref::quantize_row(to, row.data(), out.data() + size_t(r) * kiln::row_bytes(to, cols), cols, imp ? imp->data() : nullptr);
    }
    return std::to_string(checksum_bytes(out.data(), out.size()));
}
}  // namespace

TEST_CASE("quantize: the IQ1/IQ2/IQ3 mixes plan llama-quantize's types; with an imatrix their bytes") {
    const std::string path = kiln::test::model_path(kF16Model);
    if (!kiln::test::require_file(path)) return;
    std::ifstream in(kiln::test::data_path("quantize_smollm2.json"));
    REQUIRE(in.good());
    const nlohmann::json ref = nlohmann::json::parse(in);
    REQUIRE(ref["plans"].size() == 10);
    auto im = kiln::load_imatrix(kiln::test::data_path("smollm2-imatrix.gguf"));
    REQUIRE_MESSAGE(im.is_ok(), im.message());
    auto f = kiln::GgufFile::open(path);
    REQUIRE(f.is_ok());
    std::set<std::string> lattice_types;  // of all mixes, compared byte for byte
    for (const auto& [mix, tensors] : ref["plans"].items()) {
        CAPTURE(mix);
        kiln::QuantizeOptions o = options_for(mix);
        o.imatrix = &im.value();
        auto plan = kiln::plan_quantization(f.value(), o);
        REQUIRE(plan.is_ok());
        REQUIRE(plan->size() == tensors.size());
        int compared = 0, same = 0;
        for (size_t i = 0; i < plan->size(); ++i) {
            const kiln::GgufTensor& t = f->tensors()[i];
            CAPTURE(t.name);
            const kiln::DType to = (*plan)[i];
            CHECK(std::string(kiln::dtype_name(to)) == tensors[t.name][0].get<std::string>());
            const bool sampled = t.name.starts_with("blk.2.") || t.name.starts_with("blk.3.");
            if (!sampled || to == t.dtype || to == kiln::DType::F32) continue;
            ++compared;
            same += quantized_checksum(t, to, im.value()) == tensors[t.name][1].get<std::string>();
            if (to != kiln::DType::IQ4_NL && !kiln::ref::has_quantizer(to)) lattice_types.insert(kiln::dtype_name(to));
        }
        CHECK(compared == 14);  // 7 matrices x 2 layers
        CHECK(same == compared);
    }
    CHECK(lattice_types == std::set<std::string>{"iq1_m", "iq1_s", "iq2_s", "iq2_xs", "iq2_xxs", "iq3_xxs"});
    // quantize_gguf writes a whole mix with the imatrix: IQ2_M (the 1536-wide tensors iq2_s /
    // iq3_s, the rest iq4_nl, the output q8_0), every tensor llama-quantize's bytes.
    auto g = kiln::GgufFile::open(path);
    REQUIRE(g.is_ok());
    kiln::QuantizeOptions o = options_for("IQ2_M");
    o.imatrix = &im.value();
    REQUIRE(kiln::quantize_gguf(g.value(), o).is_ok());
    std::map<std::string, int> same, compared;  // per type
    for (const kiln::GgufTensor& t : g->tensors()) {
        if (t.dtype == kiln::DType::F32) continue;
        CAPTURE(t.name);
        ++compared[kiln::dtype_name(t.dtype)];
        same[kiln::dtype_name(t.dtype)] += checksum(t) == ref["plans"]["IQ2_M"][t.name][1].get<std::string>();
    }
    CHECK(compared == std::map<std::string, int>{{"iq2_s", 27}, {"iq3_s", 3}, {"iq4_nl", 180}, {"q8_0", 1}});
    CHECK(same == compared);
    // Without an importance matrix, IQ2_XXS is refused by name.
    auto h = kiln::GgufFile::open(path);
    REQUIRE(h.is_ok());
    o = options_for("IQ2_XXS");
    CHECK(kiln::quantize_gguf(h.value(), o).message().find("needs an importance matrix") != std::string::npos);
}

// q2_K and iq3_s without an importance matrix (ggml's quantize_row_q2_K_ref, iq3_s's x^2
// weights): llama-quantize's bytes (--tensor-type ffn_down=q2_K / iq3_s over Q4_K_M).
TEST_CASE("quantize: q2_K and iq3_s without an imatrix give llama-quantize's bytes") {
    const std::string path = kiln::test::model_path(kF16Model);
    if (!kiln::test::require_file(path)) return;
    std::ifstream in(kiln::test::data_path("quantize_smollm2.json"));
    REQUIRE(in.good());
    const nlohmann::json all = nlohmann::json::parse(in)["overrides"];
    for (const auto& [type, dtype] : {std::pair{"q2_K", kiln::DType::Q2_K}, {"iq3_s", kiln::DType::IQ3_S}}) {
        CAPTURE(type);
        const nlohmann::json& ref = all[std::string("Q4_K_M ffn_down=") + type];
        auto f = kiln::GgufFile::open(path);
        REQUIRE(f.is_ok());
        kiln::QuantizeOptions o = options_for("Q4_K_M");
        auto over = kiln::parse_tensor_type_override(std::string("ffn_down=") + type);
        REQUIRE(over.is_ok());
        o.overrides.push_back(over.value());
        REQUIRE(kiln::quantize_gguf(f.value(), o).is_ok());
        int target_same = 0, target_n = 0, bad = 0;
        for (const kiln::GgufTensor& t : f->tensors()) {
            CAPTURE(t.name);
            const bool same = std::string(kiln::dtype_name(t.dtype)) == ref[t.name][0].get<std::string>() && checksum(t) == ref[t.name][1].get<std::string>();
            if (t.dtype == dtype) target_same += same, ++target_n;
            else bad += !same;
        }
        CHECK(target_n == 30);
        CHECK(target_same == 30);
        CHECK(bad == 0);
    }
}

// With an importance matrix: IQ3_XXS (--tensor-type ffn_down=iq3_xxs over Q4_K_M), and the
// Q5_K_M and Q4_1 mixes (q5_K, q6_K, q5_1, q4_1, q5_0, q8_0 through ggml's imatrix
// searches): llama-quantize's bytes in every tensor.
TEST_CASE("quantize: with an imatrix, iq3_xxs and the k-quant and legacy quantizers give llama-quantize's bytes") {
    const std::string path = kiln::test::model_path(kF16Model);
    if (!kiln::test::require_file(path)) return;
    std::ifstream in(kiln::test::data_path("quantize_smollm2.json"));
    REQUIRE(in.good());
    const nlohmann::json all = nlohmann::json::parse(in)["overrides"];
    auto im = kiln::load_imatrix(kiln::test::data_path("smollm2-imatrix.gguf"));
    REQUIRE(im.is_ok());
    struct Run {
        const char *name, *mix, *override_spec;
        std::map<std::string, int> types;  // tensors of each type in the output
    };
    const Run runs[] = {{"Q4_K_M ffn_down=iq3_xxs imatrix", "Q4_K_M", "ffn_down=iq3_xxs", {{"iq3_xxs", 30}, {"q5_0", 166}, {"q8_0", 15}}},
                        {"Q5_K_M imatrix", "Q5_K_M", nullptr, {{"q5_K", 16}, {"q6_K", 14}, {"q5_1", 166}, {"q8_0", 15}}},
                        {"Q4_1 imatrix", "Q4_1", nullptr, {{"q4_1", 210}, {"q8_0", 1}}}};
    for (const Run& run : runs) {
        CAPTURE(run.name);
        const nlohmann::json& ref = all[run.name];
        auto f = kiln::GgufFile::open(path);
        REQUIRE(f.is_ok());
        kiln::QuantizeOptions o = options_for(run.mix);
        if (run.override_spec) {
            auto over = kiln::parse_tensor_type_override(run.override_spec);
            REQUIRE(over.is_ok());
            o.overrides.push_back(over.value());
        }
        o.imatrix = &im.value();
        REQUIRE(kiln::quantize_gguf(f.value(), o).is_ok());
        std::map<std::string, int> same, compared;  // per type
        for (const kiln::GgufTensor& t : f->tensors()) {
            CAPTURE(t.name);
            CHECK(std::string(kiln::dtype_name(t.dtype)) == ref[t.name][0].get<std::string>());
            if (t.dtype == kiln::DType::F32) continue;
            ++compared[kiln::dtype_name(t.dtype)];
            same[kiln::dtype_name(t.dtype)] += checksum(t) == ref[t.name][1].get<std::string>();
        }
        CHECK(compared == run.types);
        CHECK(same == compared);
    }
    // IQ3_XXS without one is refused, as llama-quantize refuses it.
    auto g = kiln::GgufFile::open(path);
    REQUIRE(g.is_ok());
    kiln::QuantizeOptions o = options_for("Q4_K_M");
    auto iq3 = kiln::parse_tensor_type_override("ffn_down=iq3_xxs");
    REQUIRE(iq3.is_ok());
    o.overrides.push_back(iq3.value());
    CHECK(kiln::quantize_gguf(g.value(), o).message().find("needs an importance matrix") != std::string::npos);
}

// The importance-matrix reader: llama-imatrix's file, and clear errors for what is not one.
TEST_CASE("quantize: llama-imatrix's importance matrices load; other files are clear errors") {
    auto im = kiln::load_imatrix(kiln::test::data_path("smollm2-imatrix.gguf"));
    REQUIRE_MESSAGE(im.is_ok(), im.message());
    CHECK(im->values.size() == 30 * 7);  // SmolLM2's 30 layers x 7 matrices
    const std::vector<float>* down = im->find("blk.0.ffn_down.weight");
    REQUIRE(down != nullptr);
    CHECK(down->size() == 1536);
    for (float v : *down) CHECK((v > 0 && std::isfinite(v)));
    CHECK(im->chunk_size == 128);
    const std::string model = kiln::test::model_path(kF16Model);
    if (!kiln::test::require_file(model)) return;
    CHECK(kiln::load_imatrix(model).message().find("no importance data") != std::string::npos);
    CHECK(kiln::load_imatrix("/nonexistent.gguf").message().find("/nonexistent.gguf") != std::string::npos);
}

TEST_CASE("quantize: general.file_type and the overrides") {
    const std::string path = kiln::test::model_path(kF16Model);
    if (!kiln::test::require_file(path)) return;
    auto f = kiln::GgufFile::open(path);
    REQUIRE(f.is_ok());
    kiln::QuantizeOptions o = options_for("q4_k");  // llama-quantize's alias of Q4_K_M
    CHECK(o.mix.name == "Q4_K_M");
    auto v_to_q8 = kiln::parse_tensor_type_override("attn_v\\.weight=q8_0");
    REQUIRE(v_to_q8.is_ok());
    o.overrides.push_back(v_to_q8.value());
    o.token_embd_type = kiln::DType::Q6_K;  // tied embeddings: the output rule, 576 % 256 != 0 -> fallback
    size_t calls = 0, last_total = 0, bad_counts = 0;
    o.progress = [&](size_t done, size_t total) {
        ++calls;
        last_total = total;
        bad_counts += done != calls || done > total;
    };
    REQUIRE(kiln::quantize_gguf(f.value(), o).is_ok());
    CHECK(calls == last_total);
    CHECK(bad_counts == 0);
    CHECK(calls > 200);
    CHECK(f->get_int("general.file_type", -1).value() == 15);  // LLAMA_FTYPE_MOSTLY_Q4_K_M
    CHECK(f->get_int("general.quantization_version", -1).value() == 2);
    for (const kiln::GgufTensor& t : f->tensors()) {
        CAPTURE(t.name);
        if (t.name.find("attn_v.weight") != std::string::npos) CHECK(t.dtype == kiln::DType::Q8_0);
        if (t.n_dims == 1) CHECK(t.dtype == kiln::DType::F32);  // norms are never quantized
    }
    // q6_K does not divide 576-wide rows: llama.cpp's fallback makes it q8_0.
    CHECK(f->find_tensor("token_embd.weight")->dtype == kiln::DType::Q8_0);
}

TEST_CASE("quantize: bad names and overrides are clear errors") {
    auto m = kiln::parse_quant_mix("q3_k_m");
    REQUIRE_FALSE(m.is_ok());
    CHECK(m.message().find("'q3_k_m' is not a quantization kiln writes") != std::string::npos);
    CHECK(m.message().find("Q4_K_M") != std::string::npos);
    CHECK(kiln::parse_quant_mix("Q8_0").is_ok());
    auto t = kiln::parse_quant_type("q3_K");
    REQUIRE_FALSE(t.is_ok());
    CHECK(t.message().find("'q3_K' is not a type kiln can quantize to") != std::string::npos);
    for (const char* bad : {"attn_v", "=q8_0", "attn_v=", "attn_v=q9_0", "attn_v[=q8_0"}) {
        CAPTURE(bad);
        auto o = kiln::parse_tensor_type_override(bad);
        REQUIRE_FALSE(o.is_ok());
        CHECK(o.message().find(bad) != std::string::npos);
    }
    auto good = kiln::parse_tensor_type_override("blk\\.[0-3]\\.ffn_down=q6_K");
    REQUIRE(good.is_ok());
    CHECK(good->type == kiln::DType::Q6_K);
    kiln::LoadOptions lo;
    lo.quantize = "q7";
    auto model = kiln::Model::load(kiln::test::model_path(kF16Model), lo);
    REQUIRE_FALSE(model.is_ok());
    CHECK(model.message().find("--quantize") != std::string::npos);
}

TEST_CASE("quantize: --quantize at load equals loading the file kiln-quantize writes") {
    const std::string path = kiln::test::model_path(kF16Model);
    if (!kiln::test::require_file(path)) return;
    for (const char* mix : {"q8_0", "q4_k_m"}) {
        CAPTURE(mix);
        // The file route: quantize, write with the GGUF writer, load.
        auto f = kiln::GgufFile::open(path);
        REQUIRE(f.is_ok());
        REQUIRE(kiln::quantize_gguf(f.value(), options_for(mix)).is_ok());
        kiln::GgufWriter w(uint32_t(f->alignment()));
        w.add_file(f.value());
        const std::string out = (std::filesystem::temp_directory_path() / (std::string("kiln-quantize-test-") + mix + ".gguf")).string();
        REQUIRE(w.write(out).is_ok());
        auto from_file = kiln::Model::load(out);
        REQUIRE_MESSAGE(from_file.is_ok(), from_file.message());
        // The in-memory route.
        kiln::LoadOptions lo;
        lo.quantize = mix;
        lo.quantize_threads = 2;
        auto in_memory = kiln::Model::load(path, lo);
        REQUIRE_MESSAGE(in_memory.is_ok(), in_memory.message());
        CHECK(in_memory.value()->bytes_per_token() == from_file.value()->bytes_per_token());
        CHECK(in_memory.value()->bytes_per_token() < kiln::Model::load(path).value()->bytes_per_token() * 6 / 10);
        const std::string prompt = "The three primary colors are";
        CHECK(prompt_logits(in_memory.value(), prompt) == prompt_logits(from_file.value(), prompt));
        std::filesystem::remove(out);
    }
}

TEST_CASE("quantize: --override-kv values of every type, as kiln-quantize COPY writes them") {
    for (const char* bad : {"no_equals", "k=int", "k=int:x", "k=float:nan", "k=bool:yes", "k=text:abc"}) {
        CAPTURE(bad);
        auto kv = kiln::parse_override_kv(bad);
        REQUIRE_FALSE(kv.is_ok());
        CHECK(kv.message().find(bad) != std::string::npos);
    }
    const std::string path = kiln::test::model_path(kF16Model);
    if (!kiln::test::require_file(path)) return;
    auto f = kiln::GgufFile::open(path);
    REQUIRE(f.is_ok());
    {
        // The str value must survive its spec string (set_override keeps a copy).
        std::string spec = "llama.rope.scaling.type=str:linear";
        auto kv = kiln::parse_override_kv(spec);
        REQUIRE(kv.is_ok());
        f->set_override(kv->first, kv->second);
        spec.assign(spec.size(), '#');
    }
    for (const char* spec : {"llama.rope.scaling.factor=float:4", "general.note=int:-3", "general.flag=bool:true"}) {
        auto kv = kiln::parse_override_kv(spec);
        REQUIRE(kv.is_ok());
        f->set_override(kv->first, kv->second);
    }
    kiln::QuantizeOptions copy = options_for("COPY");
    REQUIRE(kiln::quantize_gguf(f.value(), copy).is_ok());
    kiln::GgufWriter w(uint32_t(f->alignment()));
    w.add_file(f.value());
    const std::vector<uint8_t> image = w.to_bytes();
    auto g = kiln::GgufFile::parse(image.data(), image.size(), "copy");
    REQUIRE_MESSAGE(g.is_ok(), g.message());
    CHECK(g->get_string("llama.rope.scaling.type").value() == "linear");
    CHECK(g->find("llama.rope.scaling.factor")->type == kiln::GgufType::F32);  // llama.cpp reads float keys as f32
    CHECK(g->get_float("llama.rope.scaling.factor", 0).value() == 4.0);
    CHECK(g->get_int("general.note", 0).value() == -3);
    CHECK(g->get_bool("general.flag", false).value());
    CHECK(g->get_int("general.file_type", -1).value() == f->get_int("general.file_type", -1).value());  // COPY keeps it
    REQUIRE(g->tensors().size() == f->tensors().size());
    for (size_t i = 0; i < g->tensors().size(); ++i) CHECK(g->tensors()[i].dtype == f->tensors()[i].dtype);
}
