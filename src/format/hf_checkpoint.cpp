// Hugging Face checkpoint -> in-memory GGUF: see include/kiln/format/hf_checkpoint.h. The
// metadata keys, tensor names and transforms are the ones llama.cpp's convert_hf_to_gguf.py
// applies, so a model behaves the same whether it was converted first or not.
#include "kiln/format/hf_checkpoint.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "tokenizer/hf_tokenizer.h"
#include "kiln/format/gguf_writer.h"
#include "kiln/format/safetensors.h"
#include "ref/quants.h"

namespace kiln {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

// What sets one Hugging Face model class apart from the others.
struct HfArch {
    const char* hf_class;
    const char* gguf_arch;
    bool permute_qk;         // HF RoPE rotates halves; GGUF llama expects adjacent pairs
    bool norm_plus_one;      // Gemma's RMSNorm multiplies by (1 + w); GGUF stores 1 + w
    const char* moe;         // prefix of the MoE block ("" = dense MLP)
    const char* expert_proj[3];  // per-expert gate, up, down projection names
};

const HfArch kArchs[] = {
    {"LlamaForCausalLM", "llama", true, false, "", {}},
    {"MistralForCausalLM", "llama", true, false, "", {}},
    {"MixtralForCausalLM", "llama", true, false, "block_sparse_moe.", {"w1", "w3", "w2"}},
    {"Qwen2ForCausalLM", "qwen2", false, false, "", {}},
    {"Qwen2MoeForCausalLM", "qwen2moe", false, false, "mlp.", {"gate_proj", "up_proj", "down_proj"}},
    {"Qwen3ForCausalLM", "qwen3", false, false, "", {}},
    {"Qwen3MoeForCausalLM", "qwen3moe", false, false, "mlp.", {"gate_proj", "up_proj", "down_proj"}},
    {"Gemma3ForCausalLM", "gemma3", false, true, "", {}},
    // Gemma 3 4B-27B (image + text): the text model's config is text_config, its tensors are
    // under language_model; the vision tower and projector are not read.
    {"Gemma3ForConditionalGeneration", "gemma3", false, true, "", {}},
};

// transformers' Gemma3TextConfig defaults: Gemma 3 configs leave out what equals them.
const char* const kGemma3Defaults = R"({"hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 26,
  "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
  "max_position_embeddings": 131072, "query_pre_attn_scalar": 256, "sliding_window": 4096, "rope_local_base_freq": 10000.0})";

// HF per-layer tensor suffix -> GGUF per-layer name (the same for every class).
const std::pair<const char*, const char*> kLayerNames[] = {
    {"input_layernorm.weight", "attn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"self_attn.q_proj.bias", "attn_q.bias"},
    {"self_attn.k_proj.bias", "attn_k.bias"},
    {"self_attn.v_proj.bias", "attn_v.bias"},
    {"self_attn.q_norm.weight", "attn_q_norm.weight"},
    {"self_attn.k_norm.weight", "attn_k_norm.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
    {"mlp.gate.weight", "ffn_gate_inp.weight"},
    {"block_sparse_moe.gate.weight", "ffn_gate_inp.weight"},
    {"mlp.shared_expert.gate_proj.weight", "ffn_gate_shexp.weight"},
    {"mlp.shared_expert.up_proj.weight", "ffn_up_shexp.weight"},
    {"mlp.shared_expert.down_proj.weight", "ffn_down_shexp.weight"},
    {"mlp.shared_expert_gate.weight", "ffn_gate_inp_shexp.weight"},
    // Gemma 3 has four norms per layer; the others call their pre-MLP norm post_attention.
    {"pre_feedforward_layernorm.weight", "ffn_norm.weight"},
    {"post_feedforward_layernorm.weight", "post_ffw_norm.weight"},
};
const char* const kExpertNames[3] = {"ffn_gate_exps.weight", "ffn_up_exps.weight", "ffn_down_exps.weight"};

template <class... A>
Status cfg_error(const std::string& dir, const char* fmt, A... args) {
    return Status::error_str((fs::path(dir) / "config.json").string() + ": " + strfmt(fmt, args...));
}

// config.json values, with errors that name the key.
class Config {
public:
    Config(json j, std::string dir) : j_(std::move(j)), dir_(std::move(dir)) {}
    bool has(const char* key) const { return j_.contains(key) && !j_[key].is_null(); }
    Expected<int64_t> integer(const char* key, std::optional<int64_t> fallback = std::nullopt) const {
        return value<int64_t>(key, fallback, &json::is_number_integer, "an integer");
    }
    Expected<double> number(const char* key, std::optional<double> fallback = std::nullopt) const {
        return value<double>(key, fallback, &json::is_number, "a number");
    }
    Expected<bool> boolean(const char* key, bool fallback) const {
        if (!has(key)) return fallback;
        if (!j_[key].is_boolean()) return cfg_error(dir_, "'%s' is not true or false", key);
        return j_[key].get<bool>();
    }
    const json& raw() const { return j_; }
    const std::string& dir() const { return dir_; }

private:
    // j_[key] as T when `is` says it has that type; fallback when absent (an error without one).
    template <class T>
    Expected<T> value(const char* key, std::optional<T> fallback, bool (json::*is)() const noexcept, const char* what) const {
        if (!has(key)) {
            if (fallback) return *fallback;
            return cfg_error(dir_, "missing '%s'", key);
        }
        const json& v = j_[key];
        if (!(v.*is)()) return cfg_error(dir_, "'%s' is not %s", key, what);
        return v.get<T>();
    }

    json j_;
    std::string dir_;
};

#define KILN_ASSIGN(var, expr)            \
    auto var##_r = (expr);                \
    if (!var##_r) return var##_r.status(); \
    auto var = var##_r.value()

// Writes the GGUF metadata config.json implies; returns the architecture's key prefix.
Status write_config_metadata(const Config& c, const HfArch& arch, GgufWriter& w) {
    const std::string a = arch.gguf_arch;
    w.set_str("general.architecture", a);
    w.set_str("general.name", fs::path(c.dir()).filename().string());
    KILN_ASSIGN(n_layer, c.integer("num_hidden_layers"));
    KILN_ASSIGN(n_embd, c.integer("hidden_size"));
    KILN_ASSIGN(n_head, c.integer("num_attention_heads"));
    KILN_ASSIGN(n_head_kv, c.integer("num_key_value_heads", n_head));
    KILN_ASSIGN(n_ctx, c.integer("max_position_embeddings", 4096));
    KILN_ASSIGN(rms_eps, c.number("rms_norm_eps", 1e-6));
    KILN_ASSIGN(theta, c.number("rope_theta", 10000.0));
    for (auto [v, key] : std::initializer_list<std::pair<int64_t, const char*>>{{n_layer, "num_hidden_layers"}, {n_embd, "hidden_size"}, {n_head, "num_attention_heads"}, {n_head_kv, "num_key_value_heads"}, {n_ctx, "max_position_embeddings"}})
        if (v < 1 || v > (int64_t(1) << 24)) return cfg_error(c.dir(), "'%s' = %lld is out of range", key, (long long)v);
    w.set_u32(a + ".block_count", uint32_t(n_layer));
    w.set_u32(a + ".embedding_length", uint32_t(n_embd));
    w.set_u32(a + ".attention.head_count", uint32_t(n_head));
    w.set_u32(a + ".attention.head_count_kv", uint32_t(n_head_kv));
    w.set_u32(a + ".context_length", uint32_t(n_ctx));
    w.set_f32(a + ".attention.layer_norm_rms_epsilon", float(rms_eps));
    w.set_f32(a + ".rope.freq_base", float(theta));
    if (c.has("intermediate_size")) {
        KILN_ASSIGN(n_ff, c.integer("intermediate_size"));
        if (n_ff < 0 || n_ff > (1 << 24)) return cfg_error(c.dir(), "'intermediate_size' = %lld is out of range", (long long)n_ff);
        w.set_u32(a + ".feed_forward_length", uint32_t(n_ff));
    }
    if (c.has("head_dim")) {
        KILN_ASSIGN(head_dim, c.integer("head_dim"));
        if (head_dim < 2 || head_dim > 4096) return cfg_error(c.dir(), "'head_dim' = %lld is out of range", (long long)head_dim);
        w.set_u32(a + ".attention.key_length", uint32_t(head_dim));
        w.set_u32(a + ".attention.value_length", uint32_t(head_dim));
    }
    // Biases kiln would not apply must not be dropped silently.
    for (const char* key : {"attention_bias", "mlp_bias"}) {
        KILN_ASSIGN(on, c.boolean(key, false));
        if (on && a != "qwen2" && a != "qwen2moe") return cfg_error(c.dir(), "'%s': true is not supported for %s", key, arch.hf_class);
    }
    if (*arch.moe) {
        const char* n_key = c.has("num_local_experts") ? "num_local_experts" : "num_experts";
        KILN_ASSIGN(n_expert, c.integer(n_key));
        KILN_ASSIGN(n_used, c.integer("num_experts_per_tok"));
        if (n_expert < 1 || n_expert > 4096 || n_used < 1 || n_used > n_expert) return cfg_error(c.dir(), "'%s' = %lld / num_experts_per_tok = %lld are out of range", n_key, (long long)n_expert, (long long)n_used);
        w.set_u32(a + ".expert_count", uint32_t(n_expert));
        w.set_u32(a + ".expert_used_count", uint32_t(n_used));
        if (c.has("moe_intermediate_size")) {
            KILN_ASSIGN(n_ff_exp, c.integer("moe_intermediate_size"));
            w.set_u32(a + ".expert_feed_forward_length", uint32_t(n_ff_exp));
        }
        if (c.has("shared_expert_intermediate_size")) {
            KILN_ASSIGN(n_ff_sh, c.integer("shared_expert_intermediate_size"));
            w.set_u32(a + ".expert_shared_feed_forward_length", uint32_t(n_ff_sh));
        }
        // kiln runs every layer as MoE, as these models ship.
        KILN_ASSIGN(step, c.integer("decoder_sparse_step", 1));
        if (step != 1 || (c.has("mlp_only_layers") && !c.raw()["mlp_only_layers"].empty()))
            return cfg_error(c.dir(), "dense layers between MoE layers (decoder_sparse_step / mlp_only_layers) are not supported");
    }
    if (a == "gemma3") {
        KILN_ASSIGN(window, c.integer("sliding_window", 512));
        w.set_u32(a + ".attention.sliding_window", uint32_t(std::max<int64_t>(1, window)));
        int64_t pattern = 6;
        if (c.has("sliding_window_pattern") && !c.has("layer_types")) {
            KILN_ASSIGN(p, c.integer("sliding_window_pattern"));
            pattern = p;
        } else if (c.has("layer_types")) {
            // ["sliding_attention" x5, "full_attention", ...]: the period of the full layers.
            const json& types = c.raw()["layer_types"];
            if (!types.is_array() || int64_t(types.size()) != n_layer) return cfg_error(c.dir(), "'layer_types' must list one type per layer");
            pattern = 0;
            for (size_t i = 0; i < types.size() && !pattern; ++i)
                if (types[i] == "full_attention") pattern = int64_t(i) + 1;
            if (!pattern) pattern = n_layer + 1;  // all local
            for (size_t i = 0; i < types.size(); ++i) {
                const bool full = (int64_t(i) % pattern) == pattern - 1;
                if (types[i] != (full ? "full_attention" : "sliding_attention")) return cfg_error(c.dir(), "'layer_types' is not a repeating local/global pattern");
            }
        }
        if (pattern < 1) return cfg_error(c.dir(), "'sliding_window_pattern' must be >= 1");
        w.set_u32(a + ".attention.sliding_window_pattern", uint32_t(pattern));
        KILN_ASSIGN(local_theta, c.number("rope_local_base_freq", 10000.0));
        w.set_f32(a + ".rope.freq_base_swa", float(local_theta));
        for (const char* key : {"final_logit_softcapping", "attn_logit_softcapping"})
            if (c.has(key)) return cfg_error(c.dir(), "'%s' is not supported", key);
        const int64_t head_dim = c.has("head_dim") ? c.raw()["head_dim"].get<int64_t>() : n_embd / n_head;
        KILN_ASSIGN(scalar, c.integer("query_pre_attn_scalar", head_dim));
        if (scalar != head_dim) return cfg_error(c.dir(), "query_pre_attn_scalar %lld differs from head_dim %lld, which kiln does not support", (long long)scalar, (long long)head_dim);
    }
    if (c.has("rope_scaling")) {
        const json& rs = c.raw()["rope_scaling"];
        if (!rs.is_object()) return cfg_error(c.dir(), "'rope_scaling' is not an object");
        const std::string type = rs.value("rope_type", rs.value("type", std::string()));
        const double factor = rs.contains("factor") && rs["factor"].is_number() ? rs["factor"].get<double>() : 1.0;
        if (type == "linear") {
            w.set_str(a + ".rope.scaling.type", "linear");
            w.set_f32(a + ".rope.scaling.factor", float(factor));
        } else if (type == "yarn") {
            w.set_str(a + ".rope.scaling.type", "yarn");  // the loader names it unsupported
        } else if (type != "llama3" && type != "default") {
            return cfg_error(c.dir(), "rope_scaling type '%s' is not supported", type.c_str());
        }
    }
    return Status::ok();
}

// One converted tensor: a view into the checkpoint or bytes it owns.
struct Converted {
    GgufTensor t;
    std::shared_ptr<const Bytes> owned;
    int order = 0;  // token_embd first, then blocks by layer, then the output tensors
};

Expected<DType> weight_dtype(const SafetensorsTensor& t) {
    if (t.dtype == "F32") return DType::F32;
    if (t.dtype == "F16") return DType::F16;
    if (t.dtype == "BF16") return DType::BF16;
    return Status::error("tensor '%s': dtype %s is not a weight type kiln reads (F32, F16, BF16)", t.name.c_str(), t.dtype.c_str());
}

GgufTensor make_tensor(const std::string& name, DType d, std::vector<int64_t> ne, const uint8_t* data, uint64_t nbytes) {
    GgufTensor t;
    t.name = name;
    t.dtype = d;
    t.n_dims = int(ne.size());
    for (size_t i = 0; i < ne.size(); ++i) t.ne[i] = ne[i];
    t.data = data;
    t.nbytes = nbytes;
    return t;
}

// Reorders the rows of each head from HF's halves layout (i, i + d/2 rotate together) to
// ggml llama's adjacent pairs (2i, 2i + 1): GGUF row 2i + j of a head = HF row j*d/2 + i.
void permute_rows(const uint8_t* src, uint8_t* dst, int64_t rows, size_t row_size, int64_t n_head) {
    const int64_t head_dim = rows / n_head, half = head_dim / 2;
    for (int64_t h = 0; h < n_head; ++h)
        for (int64_t i = 0; i < half; ++i)
            for (int64_t j = 0; j < 2; ++j)
                std::memcpy(dst + size_t(h * head_dim + 2 * i + j) * row_size, src + size_t(h * head_dim + j * half + i) * row_size, row_size);
}

class Converter {
public:
    Converter(const HfArch& arch, bool multimodal) : arch_(arch), multimodal_(multimodal) {}

    Status add(const SafetensorsTensor& st) {
        if (st.name.size() > 20 && st.name.ends_with("rotary_emb.inv_freq")) return Status::ok();  // recomputed
        std::string hf = st.name;  // the text model's name
        if (multimodal_) {
            // Older transformers save language_model.model.* and language_model.lm_head.weight,
            // newer ones model.language_model.* and lm_head.weight.
            for (const char* skip : {"vision_tower.", "multi_modal_projector.", "model.vision_tower.", "model.multi_modal_projector."})
                if (hf.starts_with(skip)) return Status::ok();
            if (hf.starts_with("language_model.")) hf = hf.substr(15);
            else if (hf.starts_with("model.language_model.")) hf = "model." + hf.substr(21);
        }
        KILN_ASSIGN(dtype, weight_dtype(st));
        if (st.shape.empty() || st.shape.size() > 2) return Status::error("tensor '%s': %zu dimensions, expected 1 or 2", st.name.c_str(), st.shape.size());
        std::vector<int64_t> ne(st.shape.rbegin(), st.shape.rend());  // ggml order: row length first
        std::string name;
        int order = 0;
        if (hf == "model.embed_tokens.weight") name = "token_embd.weight", order = -1;
        else if (hf == "model.norm.weight") name = "output_norm.weight", order = 1 << 30;
        else if (hf == "lm_head.weight") name = "output.weight", order = 1 << 30;
        else {
            int layer = -1;
            std::string rest;
            if (!parse_layer(hf, &layer, &rest)) return unknown(st.name);
            order = layer;
            if (*arch_.moe && rest.starts_with(std::string(arch_.moe) + "experts.")) return add_expert(st, layer, rest);
            for (auto [suffix, gguf] : kLayerNames)
                if (rest == suffix) name = strfmt("blk.%d.%s", layer, gguf);
            if (rest == "post_attention_layernorm.weight") name = strfmt("blk.%d.%s", layer, arch_.norm_plus_one ? "post_attention_norm.weight" : "ffn_norm.weight");
            if (name.empty()) return unknown(st.name);
        }
        const bool vector = ne.size() == 1 || ne[1] == 1;
        // Norms and routers are F32 in GGUF (the small vectors, and what llama-quantize never quantizes).
        const bool to_f32 = vector || name.ends_with("ffn_gate_inp.weight");
        const bool plus_one = arch_.norm_plus_one && name.ends_with("norm.weight");
        int64_t permute_heads = 0;
        if (arch_.permute_qk && name.ends_with("attn_q.weight")) permute_heads = n_head_;
        if (arch_.permute_qk && name.ends_with("attn_k.weight")) permute_heads = n_head_kv_;
        if (arch_.permute_qk && (name.ends_with("attn_q.bias") || name.ends_with("attn_k.bias"))) return Status::error("tensor '%s': Q/K biases are not supported for %s", st.name.c_str(), arch_.hf_class);
        if (vector && ne.size() == 2) ne = {ne[0]};
        Converted out;
        out.order = order;
        if (to_f32) {
            auto buf = std::make_shared<Bytes>(size_t(st.n_elements()) * 4);  // (n_elements) f32
            float* f = reinterpret_cast<float*>(buf->data());
            ref::dequantize_row(dtype, st.data, f, st.n_elements());
            if (plus_one)
                for (int64_t i = 0; i < st.n_elements(); ++i) f[i] += 1.0f;
            out.t = make_tensor(name, DType::F32, ne, buf->data(), buf->size());
            out.owned = std::move(buf);
        } else if (permute_heads > 0) {
            if (ne[1] % (2 * permute_heads) != 0) return Status::error("tensor '%s': %lld rows do not split into %lld heads of even size", st.name.c_str(), (long long)ne[1], (long long)permute_heads);
            auto buf = std::make_shared<Bytes>(st.nbytes);  // (rows, row bytes) rows reordered
            permute_rows(st.data, buf->data(), ne[1], size_t(st.nbytes / uint64_t(ne[1])), permute_heads);
            out.t = make_tensor(name, dtype, ne, buf->data(), buf->size());
            out.owned = std::move(buf);
        } else {
            out.t = make_tensor(name, dtype, ne, st.data, st.nbytes);  // zero copy
        }
        tensors_.push_back(std::move(out));
        return Status::ok();
    }

    // Stacks each layer's per-expert matrices into one (n_in, n_out, n_expert) tensor.
    Status finish_experts() {
        for (auto& [key, slices] : experts_) {
            const auto [layer, proj] = key;
            const std::string name = strfmt("blk.%d.%s", layer, kExpertNames[proj]);
            for (size_t e = 0; e < slices.size(); ++e)
                if (!slices[e]) return Status::error("expert %zu of '%s' is missing from the checkpoint", e, name.c_str());
            const SafetensorsTensor& first = *slices[0];
            for (const SafetensorsTensor* s : slices)
                if (s->dtype != first.dtype || s->shape != first.shape || s->shape.size() != 2)
                    return Status::error("tensor '%s': experts differ in dtype or shape from '%s'", s->name.c_str(), first.name.c_str());
            auto buf = std::make_shared<Bytes>(first.nbytes * slices.size());  // (n_expert, rows, row bytes)
            for (size_t e = 0; e < slices.size(); ++e) std::memcpy(buf->data() + e * first.nbytes, slices[e]->data, first.nbytes);
            KILN_ASSIGN(dtype, weight_dtype(first));
            Converted out;
            out.t = make_tensor(name, dtype, {first.shape[1], first.shape[0], int64_t(slices.size())}, buf->data(), buf->size());
            out.owned = std::move(buf);
            out.order = layer;
            tensors_.push_back(std::move(out));
        }
        return Status::ok();
    }

    void set_heads(int64_t n_head, int64_t n_head_kv, int64_t n_expert) { n_head_ = n_head, n_head_kv_ = n_head_kv, n_expert_ = n_expert; }
    std::vector<Converted>& tensors() { return tensors_; }

private:
    static bool parse_layer(const std::string& hf, int* layer, std::string* rest) {
        static const std::string prefix = "model.layers.";
        if (!hf.starts_with(prefix)) return false;
        size_t dot = hf.find('.', prefix.size());
        if (dot == std::string::npos || dot == prefix.size() || dot - prefix.size() > 6) return false;
        int x = 0;
        for (size_t i = prefix.size(); i < dot; ++i) {
            if (hf[i] < '0' || hf[i] > '9') return false;
            x = x * 10 + (hf[i] - '0');
        }
        *layer = x;
        *rest = hf.substr(dot + 1);
        return true;
    }

    Status add_expert(const SafetensorsTensor& st, int layer, const std::string& rest) {
        // rest = "<moe>experts.<e>.<proj>.weight"
        const size_t at = std::strlen(arch_.moe) + 8, dot = rest.find('.', at);
        int e = -1;
        if (dot != std::string::npos && dot > at && dot - at <= 6 && std::all_of(rest.begin() + long(at), rest.begin() + long(dot), [](char ch) { return ch >= '0' && ch <= '9'; }))
            e = std::stoi(rest.substr(at, dot - at));
        int proj = -1;
        for (int p = 0; p < 3 && e >= 0; ++p)
            if (rest.substr(dot + 1) == std::string(arch_.expert_proj[p]) + ".weight") proj = p;
        if (proj < 0) return unknown(st.name);
        if (e >= n_expert_) return Status::error("tensor '%s': expert %d, but the config has %lld experts", st.name.c_str(), e, (long long)n_expert_);
        auto& slices = experts_[{layer, proj}];
        slices.resize(size_t(n_expert_), nullptr);
        slices[size_t(e)] = &st;
        return Status::ok();
    }

    Status unknown(const std::string& name) const {
        return Status::error("tensor '%s' has no GGUF counterpart for %s", name.c_str(), arch_.hf_class);
    }

    const HfArch& arch_;
    const bool multimodal_;
    int64_t n_head_ = 0, n_head_kv_ = 0, n_expert_ = 0;
    std::vector<Converted> tensors_;
    std::map<std::pair<int, int>, std::vector<const SafetensorsTensor*>> experts_;  // (layer, proj) -> by expert
};

}  // namespace

bool is_hf_checkpoint_dir(const std::string& path) {
    std::error_code ec;
    return fs::is_directory(path, ec) && fs::is_regular_file(fs::path(path) / "config.json", ec);
}

std::vector<float> llama3_rope_factors(const Llama3RopeScaling& s, double rope_theta, int head_dim) {
    std::vector<float> out(size_t(head_dim / 2));  // (head_dim / 2) frequency divisors
    const double low_wavelen = s.original_context / s.low_freq_factor, high_wavelen = s.original_context / s.high_freq_factor;
    for (int i = 0; i < head_dim / 2; ++i) {
        const double freq = 1.0 / std::pow(rope_theta, 2.0 * i / head_dim), wavelen = 2 * M_PI / freq;
        double f = s.factor;
        if (wavelen < high_wavelen) f = 1;
        else if (wavelen <= low_wavelen) {
            const double smooth = (s.original_context / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
            f = 1 / ((1 - smooth) / s.factor + smooth);
        }
        out[size_t(i)] = float(f);
    }
    return out;
}

namespace {

Expected<GgufFile> open_checkpoint(const std::string& dir, bool use_mmap) {
    if (!is_hf_checkpoint_dir(dir)) return Status::error("%s: not a Hugging Face checkpoint directory (no config.json)", dir.c_str());
    KILN_ASSIGN(cfg_json, read_json_object((fs::path(dir) / "config.json").string()));
    const json classes = cfg_json.value("architectures", json::array());
    if (!classes.is_array() || classes.empty() || !classes[0].is_string()) return cfg_error(dir, "'architectures' must name the model class");
    const std::string cls = classes[0].get<std::string>();
    const bool multimodal = cls == "Gemma3ForConditionalGeneration";
    if (multimodal) {  // the text model's config, with the class and the embedding tying of the whole
        if (!cfg_json.contains("text_config") || !cfg_json["text_config"].is_object()) return cfg_error(dir, "'text_config' must be an object for %s", cls.c_str());
        json text = cfg_json["text_config"];
        text["architectures"] = classes;
        if (!text.contains("tie_word_embeddings") && cfg_json.contains("tie_word_embeddings")) text["tie_word_embeddings"] = cfg_json["tie_word_embeddings"];
        cfg_json = std::move(text);
    }
    if (cls.starts_with("Gemma3")) {
        const json defaults = json::parse(kGemma3Defaults);
        for (const auto& [key, value] : defaults.items())
            if (!cfg_json.contains(key) || cfg_json[key].is_null()) cfg_json[key] = value;
    }
    const Config c(std::move(cfg_json), dir);
    const HfArch* arch = nullptr;
    for (const HfArch& a : kArchs)
        if (cls == a.hf_class) arch = &a;
    if (!arch) {
        std::string known;
        for (const HfArch& a : kArchs) known += std::string(known.empty() ? "" : ", ") + a.hf_class;
        return cfg_error(dir, "model class '%s' is not supported (kiln reads %s)", cls.c_str(), known.c_str());
    }

    GgufWriter w;
    KILN_TRY(write_config_metadata(c, *arch, w));
    KILN_TRY(hf_tokenizer_to_gguf(dir, w));

    auto ck = SafetensorsCheckpoint::open(dir, use_mmap);
    if (!ck) return ck.status();
    auto checkpoint = std::make_shared<SafetensorsCheckpoint>(std::move(ck.value()));

    Converter conv(*arch, multimodal);
    KILN_ASSIGN(n_head, c.integer("num_attention_heads"));
    KILN_ASSIGN(n_head_kv, c.integer("num_key_value_heads", n_head));
    int64_t n_expert = 0;
    if (*arch->moe) {
        KILN_ASSIGN(x, c.integer(c.has("num_local_experts") ? "num_local_experts" : "num_experts"));
        n_expert = x;
    }
    conv.set_heads(n_head, n_head_kv, n_expert);
    for (const SafetensorsFile& shard : checkpoint->shards())
        for (const SafetensorsTensor& t : shard.tensors()) {
            Status s = conv.add(t);
            if (!s) return s.with_context(shard.path());
        }
    KILN_TRY(conv.finish_experts());

    // Llama 3.1 scaling is a tensor in GGUF.
    if (c.has("rope_scaling") && c.raw()["rope_scaling"].is_object() && c.raw()["rope_scaling"].value("rope_type", std::string()) == "llama3") {
        const json& rs = c.raw()["rope_scaling"];
        Llama3RopeScaling s;
        auto num = [&](const char* key, double* out) {
            if (rs.contains(key) && rs[key].is_number()) *out = rs[key].get<double>();
        };
        num("factor", &s.factor);
        num("low_freq_factor", &s.low_freq_factor);
        num("high_freq_factor", &s.high_freq_factor);
        num("original_max_position_embeddings", &s.original_context);
        KILN_ASSIGN(n_embd, c.integer("hidden_size"));
        KILN_ASSIGN(theta, c.number("rope_theta", 10000.0));
        KILN_ASSIGN(head_dim, c.integer("head_dim", n_embd / n_head));
        if (!(s.factor > 0) || !(s.high_freq_factor > s.low_freq_factor) || !(s.original_context > 0)) return cfg_error(dir, "llama3 rope_scaling parameters are out of range");
        const std::vector<float> f = llama3_rope_factors(s, theta, int(head_dim));
        auto buf = std::make_shared<Bytes>(f.size() * 4);  // (head_dim / 2) f32
        std::memcpy(buf->data(), f.data(), buf->size());
        Converted r;
        r.t = make_tensor("rope_freqs.weight", DType::F32, {int64_t(f.size())}, buf->data(), buf->size());
        r.owned = std::move(buf);
        r.order = 1 << 30;
        conv.tensors().push_back(std::move(r));
    }

    auto f = GgufFile::from_image(w.to_bytes(), dir);
    if (!f) return f.status();
    std::stable_sort(conv.tensors().begin(), conv.tensors().end(), [](const Converted& x, const Converted& y) { return x.order < y.order; });
    for (Converted& t : conv.tensors()) KILN_TRY(f->add_tensor(std::move(t.t), std::move(t.owned)));
    f->keep_alive(checkpoint);
    return f;
}

}  // namespace

Expected<GgufFile> open_hf_checkpoint(const std::string& dir, bool use_mmap) {
    try {
        return open_checkpoint(dir, use_mmap);
    } catch (const nlohmann::json::exception& e) {  // a config value of an unexpected JSON type
        return Status::error("%s: config.json: %s", dir.c_str(), e.what());
    }
}

}  // namespace kiln
