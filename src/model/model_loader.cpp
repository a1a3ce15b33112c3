// Model::load: GGUF metadata -> ModelConfig, tensor table -> Weights, with every shape
// checked against what the architecture expects before a kernel ever sees it.

#include <cinttypes>
#include <cstdlib>
#include <cmath>
#include <cstring>
#include <map>

#include "cpu/kernels.h"
#include "cpu/r16.h"
#include "kiln/format/gguf_split.h"
#include "kiln/model.h"
#include "kiln/format/quantize.h"
#include "kiln/format/weights.h"
#include "kiln/thread_pool.h"
#include "runtime/streamed_alloc.h"

namespace kiln {

const char* arch_name(Arch a) {
    switch (a) {
        case Arch::Llama: return "llama";
        case Arch::Qwen2: return "qwen2";
        case Arch::Qwen3: return "qwen3";
        case Arch::Gemma3: return "gemma3";
        case Arch::Qwen3Moe: return "qwen3moe";
        case Arch::Qwen2Moe: return "qwen2moe";
        case Arch::Qwen35: return "qwen35";
        case Arch::Qwen35Moe: return "qwen35moe";
        case Arch::Qwen3Next: return "qwen3next";
    }
    return "?";
}

Expected<std::pair<std::string, GgufValue>> parse_override_kv(const std::string& spec) {
    size_t eq = spec.find('='), colon = spec.find(':', eq == std::string::npos ? 0 : eq);
    if (eq == std::string::npos || eq == 0 || colon == std::string::npos) {
        return Status::error("--override-kv '%s': expected KEY=TYPE:VALUE, e.g. qwen3moe.expert_used_count=int:4", spec.c_str());
    }
    std::string key = spec.substr(0, eq), type = spec.substr(eq + 1, colon - eq - 1), val = spec.substr(colon + 1);
    GgufValue v;
    char* end = nullptr;
    if (type == "int") {
        errno = 0;
        long long x = std::strtoll(val.c_str(), &end, 10);
        if (val.empty() || *end || errno) return Status::error("--override-kv '%s': '%s' is not an integer", spec.c_str(), val.c_str());
        v.type = GgufType::I64;
        v.i = x;
        v.u = uint64_t(x);
    } else if (type == "float") {
        double x = std::strtod(val.c_str(), &end);
        if (val.empty() || *end || !std::isfinite(x)) return Status::error("--override-kv '%s': '%s' is not a finite number", spec.c_str(), val.c_str());
        v.type = GgufType::F32;  // as GGUF files store float keys (llama.cpp reads f32 only)
        v.f = x;
    } else if (type == "bool") {
        if (val != "true" && val != "false") return Status::error("--override-kv '%s': bool must be true or false", spec.c_str());
        v.type = GgufType::BOOL;
        v.u = val == "true";
    } else if (type == "str") {
        v.type = GgufType::STRING;
        v.str = std::string_view(spec).substr(colon + 1);  // a view of spec: set_override copies it
    } else {
        return Status::error("--override-kv '%s': type '%s' must be int, float, bool or str", spec.c_str(), type.c_str());
    }
    return std::make_pair(key, v);
}

// Reads hyper-parameters and binds tensors for one model; a friend of Model.
class ModelBinder {
public:
    ModelBinder(Model& m) : m_(m), f_(*m.gguf_), c_(m.config_) {}

    Status bind_config() {
        auto arch = f_.get_string("general.architecture");
        if (!arch) return arch.status();
        a_ = arch.value();
        if (a_.empty()) return Status::error("%s: no general.architecture key", f_.path().c_str());
        if (a_ == "llama") c_.arch = Arch::Llama;
        else if (a_ == "qwen2") c_.arch = Arch::Qwen2;
        else if (a_ == "qwen3") c_.arch = Arch::Qwen3;
        else if (a_ == "gemma3") c_.arch = Arch::Gemma3;
        else if (a_ == "qwen3moe") c_.arch = Arch::Qwen3Moe;
        else if (a_ == "qwen2moe") c_.arch = Arch::Qwen2Moe;
        else if (a_ == "qwen35") c_.arch = Arch::Qwen35;
        else if (a_ == "qwen35moe") c_.arch = Arch::Qwen35Moe;
        else if (a_ == "qwen3next") c_.arch = Arch::Qwen3Next;
        else return Status::error("%s: unsupported architecture '%s' (kiln runs llama, qwen2, qwen3, gemma3, qwen3moe, qwen2moe, qwen35, qwen35moe, qwen3next)", f_.path().c_str(), a_.c_str());
        const bool qwen35 = c_.arch == Arch::Qwen35 || c_.arch == Arch::Qwen35Moe || c_.arch == Arch::Qwen3Next;

        KILN_TRY(req_int("block_count", &c_.n_layer, 1, 1024));
        KILN_TRY(req_int("embedding_length", &c_.n_embd, 1, 1 << 17));
        KILN_TRY(req_int("attention.head_count", &c_.n_head, 1, 4096));
        KILN_TRY(opt_int("attention.head_count_kv", &c_.n_head_kv, c_.n_head, 1, c_.n_head));
        if (c_.n_head % c_.n_head_kv != 0) return err("attention.head_count %d is not a multiple of head_count_kv %d", c_.n_head, c_.n_head_kv);
        int default_head_dim = c_.n_embd % c_.n_head == 0 ? c_.n_embd / c_.n_head : 0;
        KILN_TRY(opt_int("attention.key_length", &c_.head_dim, default_head_dim, 1, 4096));
        KILN_TRY(opt_int("attention.value_length", &c_.head_dim_v, c_.head_dim, 1, 4096));
        if (c_.head_dim <= 0) return err("embedding_length %d is not divisible by head_count %d and no key_length is given", c_.n_embd, c_.n_head);
        if (c_.head_dim % 2) return err("head dimension %d is odd", c_.head_dim);
        KILN_TRY(opt_int("context_length", &c_.n_ctx_train, 4096, 1, 1 << 24));
        KILN_TRY(opt_int("rope.dimension_count", &c_.rope_dim, c_.head_dim, 2, c_.head_dim));
        if (c_.rope_dim % 2) return err("rope.dimension_count %d is odd", c_.rope_dim);
        KILN_TRY(opt_float("attention.layer_norm_rms_epsilon", &c_.rms_eps, 1e-5f));
        KILN_TRY(opt_float("rope.freq_base", &c_.rope_theta, 10000.0f));
        if (!(c_.rms_eps > 0) || !(c_.rope_theta > 0)) return err("rms epsilon and rope.freq_base must be positive");

        auto scaling = f_.get_string(a_ + ".rope.scaling.type", "none");
        if (!scaling) return scaling.status();
        float factor = 1.0f;
        KILN_TRY(opt_float("rope.scaling.factor", &factor, 1.0f));
        if (scaling.value() == "linear" && factor > 0 && factor != 1.0f) {
            c_.rope_scaling = RopeScaling::Linear;
            c_.rope_freq_scale = 1.0f / factor;
        } else if (scaling.value() == "yarn") {
            return err("rope scaling type 'yarn' is not supported yet");
        } else if (scaling.value() != "none" && scaling.value() != "linear") {
            return err("unknown rope.scaling.type '%s'", scaling.value().c_str());
        }

        // Architecture specifics, as llama.cpp applies them.
        c_.rope_neox = c_.arch != Arch::Llama;  // GGUF llama Q/K are permuted for adjacent pairs
        c_.qkv_bias = c_.arch == Arch::Qwen2 || c_.arch == Arch::Qwen2Moe;
        c_.qk_norm = c_.arch == Arch::Qwen3 || c_.arch == Arch::Qwen3Moe || c_.arch == Arch::Gemma3 || qwen35;
        if (qwen35) KILN_TRY(bind_hybrid());
        c_.layer_is_swa.assign(size_t(c_.n_layer), false);
        if (c_.arch == Arch::Gemma3) {
            c_.embd_scale = std::sqrt(float(c_.n_embd));
            KILN_TRY(opt_int("attention.sliding_window", &c_.sliding_window, 512, 1, 1 << 24));
            int pattern = 6;  // five local layers, then one global
            if (const GgufValue* p = f_.find(a_ + ".attention.sliding_window_pattern"); p && p->is_integer()) pattern = int(p->as_int());
            if (pattern < 1) return err("attention.sliding_window_pattern %d must be >= 1", pattern);
            for (int il = 0; il < c_.n_layer; ++il) c_.layer_is_swa[size_t(il)] = pattern > 1 && il % pattern < pattern - 1;
            // Local layers: their own base and no context scaling (llama.cpp: rope_freq_base_train_swa,
            // rope_freq_scale_train_swa = 1 for Gemma 3; the 4B-27B models scale only global layers).
            KILN_TRY(opt_float("rope.freq_base_swa", &c_.rope_theta_local, 10000.0f));
            c_.attn_scale = 1.0f / std::sqrt(float(c_.head_dim));
        }
        // Mixtral is a llama with experts (expert_count > 0).
        const bool llama_moe = c_.arch == Arch::Llama && f_.has(a_ + ".expert_count");
        if (c_.arch == Arch::Qwen3Moe || c_.arch == Arch::Qwen2Moe || c_.arch == Arch::Qwen35Moe || c_.arch == Arch::Qwen3Next || llama_moe) {
            KILN_TRY(req_int("expert_count", &c_.n_expert, llama_moe ? 0 : 1, 4096));
        }
        if (c_.n_expert > 0) {
            KILN_TRY(req_int("expert_used_count", &c_.n_expert_used, 1, 1 << 20));
            if (c_.n_expert_used > c_.n_expert) return err("expert_used_count %d is larger than expert_count %d", c_.n_expert_used, c_.n_expert);
            KILN_TRY(opt_int("expert_feed_forward_length", &c_.n_ff_exp, 0, 0, 1 << 20));
            KILN_TRY(opt_int("expert_shared_feed_forward_length", &c_.n_ff_shexp, 0, 0, 1 << 20));
            // llama.cpp renormalizes the top-k weights for Qwen3-MoE and Mixtral, not Qwen2-MoE.
            c_.expert_weights_norm = c_.arch != Arch::Qwen2Moe;
        }
        KILN_TRY(opt_int("feed_forward_length", &c_.n_ff, 0, 0, 1 << 20));
        return Status::ok();
    }

    // Qwen3.5's gated DeltaNet hyper-parameters, which layers are recurrent, and its M-RoPE
    // sections (llama.cpp's llama_model_qwen35::load_arch_hparams).
    Status bind_hybrid() {
        KILN_TRY(req_int("ssm.conv_kernel", &c_.ssm_conv_kernel, 1, 64));
        KILN_TRY(req_int("ssm.state_size", &c_.ssm_state, 1, 1024));
        KILN_TRY(req_int("ssm.group_count", &c_.ssm_k_heads, 1, 4096));
        KILN_TRY(req_int("ssm.time_step_rank", &c_.ssm_v_heads, 1, 4096));
        int inner = 0;
        KILN_TRY(req_int("ssm.inner_size", &inner, 1, 1 << 20));
        if (inner != c_.ssm_v_dim()) return err("ssm.inner_size %d is not time_step_rank %d x state_size %d", inner, c_.ssm_v_heads, c_.ssm_state);
        if (c_.ssm_v_heads % c_.ssm_k_heads) return err("ssm.time_step_rank %d is not a multiple of ssm.group_count %d", c_.ssm_v_heads, c_.ssm_k_heads);
        if (c_.ssm_state > 512) return err("ssm.state_size %d is larger than 512", c_.ssm_state);
        c_.layer_is_recurrent.assign(size_t(c_.n_layer), false);
        if (const GgufValue* r = f_.find(a_ + ".attention.recurrent_layers")) {
            if (r->type != GgufType::ARRAY || r->arr_len != uint64_t(c_.n_layer) || !r->arr_data)
                return err("attention.recurrent_layers must be an array of %d flags", c_.n_layer);
            for (int il = 0; il < c_.n_layer; ++il) c_.layer_is_recurrent[size_t(il)] = r->arr_int(uint64_t(il)) != 0;
        } else {
            int interval = 4;  // three DeltaNet layers, then one full-attention layer
            KILN_TRY(opt_int("full_attention_interval", &interval, 4, 1, 1 << 20));
            for (int il = 0; il < c_.n_layer; ++il) c_.layer_is_recurrent[size_t(il)] = (il + 1) % interval != 0;
        }
        int nextn = 0;
        KILN_TRY(opt_int("nextn_predict_layers", &nextn, 0, 0, 64));  // the MTP block is extra: never run (llama.cpp's main pass skips it too)
        c_.attn_output_gate = true;
        c_.ssm_grouped_heads = c_.arch == Arch::Qwen3Next;
        if (const GgufValue* s = f_.find(a_ + ".rope.dimension_sections")) {
            if (s->type != GgufType::ARRAY || s->arr_len < 3 || s->arr_len > 4 || !s->arr_data) return err("rope.dimension_sections must hold 3 or 4 integers");
            int sum = 0;
            for (uint64_t i = 0; i < s->arr_len; ++i) {
                const int64_t v = s->arr_int(i);
                if (v < 0 || v > 4096) return err("rope.dimension_sections[%d] = %lld is out of range", int(i), (long long)v);
                c_.rope_sections[size_t(i)] = int(v), sum += int(v);
            }
            if (sum * 2 > c_.rope_dim) return err("rope.dimension_sections cover %d pairs, more than rope.dimension_count %d has", sum, c_.rope_dim);
        }
        return Status::ok();
    }

    Status bind_tensors() {
        Weights& w = *m_.weights_;
        const int64_t E = c_.n_embd;
        KILN_TRY(get("token_embd.weight", {E, -1}, &w.token_embd, true));
        c_.n_vocab = int(w.token_embd.ne[1]);
        KILN_TRY(get("output_norm.weight", {E}, &w.output_norm, true));
        KILN_TRY(get("output.weight", {E, c_.n_vocab}, &w.output, false));
        if (w.output.empty()) {
            w.output = w.token_embd;
            c_.tied_embeddings = true;
        }
        KILN_TRY(get("rope_freqs.weight", {c_.rope_dim / 2}, &w.rope_freqs, false));
        if (!w.rope_freqs.empty() && w.rope_freqs.dtype != DType::F32) return Status::error("tensor 'rope_freqs.weight': type %s, expected f32", dtype_name(w.rope_freqs.dtype));

        const int64_t Q = int64_t(c_.n_head) * c_.head_dim, K = int64_t(c_.n_head_kv) * c_.head_dim,
                      V = int64_t(c_.n_head_kv) * c_.head_dim_v, O = int64_t(c_.n_head) * c_.head_dim_v;
        w.layers.resize(size_t(c_.n_layer));
        for (int il = 0; il < c_.n_layer; ++il) {
            LayerWeights& l = w.layers[size_t(il)];
            auto name = [&](const char* t) { return strfmt("blk.%d.%s", il, t); };
            KILN_TRY(get(name("attn_norm.weight"), {E}, &l.attn_norm, true));
            if (c_.recurrent(il)) {
                KILN_TRY(bind_delta_net(il, l));
            } else {
                if (c_.is_hybrid() && f_.find_tensor(name("ssm_conv1d.weight")))
                    return err("layer %d has gated DeltaNet tensors, but the metadata (full_attention_interval or attention.recurrent_layers) makes it a "
                               "full-attention layer", il);
                if (c_.is_hybrid() && f_.find_tensor(name("attn_qkv.weight")))
                    return err("tensor '%s': a fused Q/K/V projection in a full-attention layer is not supported (kiln reads attn_q/attn_k/attn_v)", name("attn_qkv.weight").c_str());
                KILN_TRY(get(name("attn_q.weight"), {E, c_.attn_output_gate ? 2 * Q : Q}, &l.wq, true));  // per head: the query, then its gate
                KILN_TRY(get(name("attn_k.weight"), {E, K}, &l.wk, true));
                KILN_TRY(get(name("attn_v.weight"), {E, V}, &l.wv, true));
                KILN_TRY(get(name("attn_output.weight"), {O, E}, &l.wo, true));
                KILN_TRY(get(name("attn_q.bias"), {Q}, &l.bq, c_.qkv_bias));
                KILN_TRY(get(name("attn_k.bias"), {K}, &l.bk, c_.qkv_bias));
                KILN_TRY(get(name("attn_v.bias"), {V}, &l.bv, c_.qkv_bias));
                KILN_TRY(get(name("attn_q_norm.weight"), {c_.head_dim}, &l.q_norm, c_.qk_norm));
                KILN_TRY(get(name("attn_k_norm.weight"), {c_.head_dim}, &l.k_norm, c_.qk_norm));
            }
            // Qwen3.5 names its pre-MLP norm post_attention_norm.
            if (c_.is_hybrid()) KILN_TRY(get(name("post_attention_norm.weight"), {E}, &l.ffn_norm, true));
            else KILN_TRY(get(name("ffn_norm.weight"), {E}, &l.ffn_norm, c_.arch != Arch::Gemma3));
            if (c_.arch == Arch::Gemma3) {
                // Gemma 3 names its pre-MLP norm ffn_norm too; post norms are extra.
                KILN_TRY(get(name("post_attention_norm.weight"), {E}, &l.post_attn_norm, true));
                KILN_TRY(get(name("ffn_norm.weight"), {E}, &l.ffn_norm, true));
                KILN_TRY(get(name("post_ffw_norm.weight"), {E}, &l.post_ffn_norm, true));
            }
            if (c_.is_moe()) {
                const int64_t F = c_.n_ff_exp > 0 ? c_.n_ff_exp : -1, X = c_.n_expert;
                KILN_TRY(get(name("ffn_gate_inp.weight"), {E, X}, &l.ffn_gate_inp, true));
                KILN_TRY(get(name("ffn_gate_exps.weight"), {E, F, X}, &l.ffn_gate_exps, true));
                if (c_.n_ff_exp == 0) c_.n_ff_exp = int(l.ffn_gate_exps.ne[1]);
                KILN_TRY(get(name("ffn_up_exps.weight"), {E, c_.n_ff_exp, X}, &l.ffn_up_exps, true));
                KILN_TRY(get(name("ffn_down_exps.weight"), {c_.n_ff_exp, E, X}, &l.ffn_down_exps, true));
                const bool shared = c_.arch == Arch::Qwen2Moe || c_.arch == Arch::Qwen35Moe || c_.arch == Arch::Qwen3Next;
                const int64_t S = c_.n_ff_shexp > 0 ? c_.n_ff_shexp : -1;
                KILN_TRY(get(name("ffn_gate_shexp.weight"), {E, S}, &l.ffn_gate_shexp, shared));
                if (!l.ffn_gate_shexp.empty()) {
                    c_.n_ff_shexp = int(l.ffn_gate_shexp.ne[1]);
                    KILN_TRY(get(name("ffn_up_shexp.weight"), {E, c_.n_ff_shexp}, &l.ffn_up_shexp, true));
                    KILN_TRY(get(name("ffn_down_shexp.weight"), {c_.n_ff_shexp, E}, &l.ffn_down_shexp, true));
                    KILN_TRY(get(name("ffn_gate_inp_shexp.weight"), {E}, &l.ffn_gate_inp_shexp, false));
                }
            } else {
                const int64_t F = c_.n_ff > 0 ? c_.n_ff : -1;
                KILN_TRY(get(name("ffn_gate.weight"), {E, F}, &l.ffn_gate, true));
                if (c_.n_ff == 0) c_.n_ff = int(l.ffn_gate.ne[1]);
                KILN_TRY(get(name("ffn_up.weight"), {E, c_.n_ff}, &l.ffn_up, true));
                KILN_TRY(get(name("ffn_down.weight"), {c_.n_ff, E}, &l.ffn_down, true));
            }
        }
        // Bytes a decode step streams: every weight but the embedding table (one row of it).
        for (const GgufTensor& t : f_.tensors()) {
            m_.n_params_ += uint64_t(t.n_elements());
            // Of the experts' tensors a token reads only its expert_used_count slices.
            const bool experts = t.name.find("_exps.") != std::string::npos && c_.n_expert > 0;
            if (t.name != "token_embd.weight") m_.bytes_per_token_ += experts ? t.nbytes / uint64_t(c_.n_expert) * uint64_t(c_.n_expert_used) : t.nbytes;
            if (experts) m_.expert_bytes_ += t.nbytes;
        }
        if (c_.tied_embeddings) m_.bytes_per_token_ += w.token_embd.nbytes();
        return Status::ok();
    }

private:
    // A gated DeltaNet layer's tensors (llama.cpp's qwen35 names).
    Status bind_delta_net(int il, LayerWeights& l) {
        auto name = [&](const char* t) { return strfmt("blk.%d.%s", il, t); };
        const int64_t E = c_.n_embd, C = c_.ssm_conv_channels(), Vd = c_.ssm_v_dim(), H = c_.ssm_v_heads;
        if (f_.find_tensor(name("ssm_in.weight")) && !f_.find_tensor(name("attn_qkv.weight")))
            return err("tensor '%s': the fused q/k/v/z projection of early Qwen3-Next conversions is not supported; convert the model again with a "
                       "recent convert_hf_to_gguf.py (it writes attn_qkv and attn_gate)", name("ssm_in.weight").c_str());
        KILN_TRY(get(name("attn_qkv.weight"), {E, C}, &l.wqkv, true));
        KILN_TRY(get(name("attn_gate.weight"), {E, Vd}, &l.wqkv_gate, true));
        if (c_.ssm_grouped_heads) {
            KILN_TRY(get(name("ssm_ba.weight"), {E, 2 * H}, &l.ssm_ba, true));
        } else {
            KILN_TRY(get(name("ssm_alpha.weight"), {E, H}, &l.ssm_alpha, true));
            KILN_TRY(get(name("ssm_beta.weight"), {E, H}, &l.ssm_beta, true));
        }
        KILN_TRY(get(name("ssm_out.weight"), {Vd, E}, &l.ssm_out, true));
        KILN_TRY(get(name("ssm_conv1d.weight"), {c_.ssm_conv_kernel, C}, &l.ssm_conv1d, true));
        KILN_TRY(get(name("ssm_dt.bias"), {H}, &l.ssm_dt, true));
        KILN_TRY(get(name("ssm_a"), {H}, &l.ssm_a, true));
        KILN_TRY(get(name("ssm_norm.weight"), {c_.ssm_state}, &l.ssm_norm, true));
        for (const TensorView* t : {&l.ssm_conv1d, &l.ssm_dt, &l.ssm_a, &l.ssm_norm})
            if (t->dtype != DType::F32) return err("tensor '%s': type %s, expected f32", t->name, dtype_name(t->dtype));
        return Status::ok();
    }

    template <class... A>
    Status err(const char* fmt, A... args) const {
        return Status::error_str(f_.path() + ": " + strfmt(fmt, args...));
    }

    Status req_int(const char* key, int* out, int64_t lo, int64_t hi) {
        if (!f_.has(a_ + "." + key)) return Status::error("%s: missing required metadata '%s.%s'", f_.path().c_str(), a_.c_str(), key);
        return opt_int(key, out, 0, lo, hi);
    }
    Status opt_int(const char* key, int* out, int fallback, int64_t lo, int64_t hi) {
        std::string k = a_ + "." + key;
        const GgufValue* v = f_.find(k);
        int64_t x = fallback;
        if (v && v->type == GgufType::ARRAY) {
            // Per-layer arrays (e.g. head_count_kv on some models) must be uniform here.
            if (v->arr_len == 0 || !v->arr_data) return err("metadata '%s' is an empty or non-numeric array", k.c_str());
            x = v->arr_int(0);
            for (uint64_t i = 1; i < v->arr_len; ++i)
                if (v->arr_int(i) != x) return err("metadata '%s': per-layer values differ, which kiln does not support", k.c_str());
        } else {
            auto r = f_.get_int(k, fallback);
            if (!r) return r.status();
            x = r.value();
        }
        if (x < lo || x > hi) return err("metadata '%s' = %" PRId64 " is outside [%" PRId64 ", %" PRId64 "]", k.c_str(), x, lo, hi);
        *out = int(x);
        return Status::ok();
    }
    Status opt_float(const char* key, float* out, float fallback) {
        auto r = f_.get_float(a_ + "." + key, fallback);
        if (!r) return r.status();
        if (!std::isfinite(r.value())) return err("metadata '%s.%s' is not finite", a_.c_str(), key);
        *out = float(r.value());
        return Status::ok();
    }

    // Binds tensor `name`, checking its shape (-1 = any size, learned from the file).
    Status get(const std::string& name, std::initializer_list<int64_t> shape, TensorView* out, bool required) {
        const GgufTensor* t = f_.find_tensor(name);
        if (!t) {
            if (required) return err("missing tensor '%s' (architecture %s)", name.c_str(), a_.c_str());
            return Status::ok();
        }
        bool ok = t->n_dims <= int(shape.size());
        int d = 0;
        for (int64_t want : shape) ok = ok && (want < 0 || t->ne[d] == want), ++d;
        for (; d < 4; ++d) ok = ok && t->ne[d] == 1;
        if (!ok) {
            std::string want = "[";
            int k = 0;
            for (int64_t s : shape) want += strfmt(k++ ? ", %" PRId64 : "%" PRId64, s);
            return err("tensor '%s': shape %s, expected %s]", name.c_str(), t->shape_string().c_str(), want.c_str());
        }
        out->data = t->data;
        out->dtype = t->dtype;
        for (int i = 0; i < 4; ++i) out->ne[i] = t->ne[i];
        out->name = t->name.c_str();  // stable: the GgufFile is not modified after load
        return Status::ok();
    }

    Model& m_;
    const GgufFile& f_;
    ModelConfig& c_;
    std::string a_;
};

Model::Model() : gguf_(std::make_unique<GgufFile>()), weights_(std::make_unique<Weights>()) {}
Model::~Model() = default;

Expected<std::shared_ptr<Model>> Model::load(const std::string& path, const LoadOptions& options) {
    auto f = open_model_file(path, options.use_mmap);  // GGUF (split or not) or Hugging Face directory
    if (!f) return f.status();
    std::shared_ptr<Model> m(new Model());
    m->gguf_ = std::make_unique<GgufFile>(std::move(f.value()));
    for (const std::string& spec : options.override_kv) {
        auto kv = parse_override_kv(spec);
        if (!kv) return kv.status();
        m->gguf_->set_override(kv->first, kv->second);
    }
    if (!options.quantize.empty()) {
        auto mix = parse_quant_mix(options.quantize);
        if (!mix) return mix.status().with_context("--quantize");
        QuantizeOptions q;
        q.mix = mix.value();
        q.n_threads = options.quantize_threads;
        q.progress = options.quantize_progress;
        KILN_TRY(quantize_gguf(*m->gguf_, q));
    }
    KILN_TRY(m->bind(options));
    if (options.repack) KILN_TRY(m->repack_weights());
    return m;
}

Status Model::bind(const LoadOptions&) {
    ModelBinder b(*this);
    KILN_TRY(b.bind_config());
    KILN_TRY(b.bind_tensors());
    auto tok = Tokenizer::from_gguf(*gguf_);
    if (!tok) return tok.status().with_context(gguf_->path());
    tokenizer_ = std::make_unique<Tokenizer>(std::move(tok.value()));
    if (tokenizer_->n_vocab() < config_.n_vocab) {
        return Status::error("%s: tokenizer has %d tokens but token_embd has %d rows", gguf_->path().c_str(), tokenizer_->n_vocab(), config_.n_vocab);
    }
    return Status::ok();
}

Status Model::repack_weights() {
    std::vector<TensorView*> todo;
    auto consider = [&](TensorView& t) {
        // 3-D expert tensors repack as one matrix of n_expert * rows rows: a slice's 16-row
        // groups are then contiguous too (TensorView::slice), as long as rows % 16 == 0.
        // Only where the kernels read the copy (the AVX2 and generic tables have no r16
        // kernels: a copy there would be memory spent for nothing).
        if (!t.empty() && cpu::r16_supported(t.dtype, t.ne[1]) && t.ne[3] == 1 && cpu::active().matmul_r16[int(t.dtype)]) todo.push_back(&t);
    };
    for (LayerWeights& l : weights_->layers)
        for (TensorView* t : l.matrices()) consider(*t);
    consider(weights_->output);
    ThreadPool pool;
    for (TensorView* t : todo) {
        const size_t group = cpu::r16_group_bytes(t->dtype, t->cols()), bytes = group * size_t(t->rows() / cpu::kR16Rows);
        // on huge pages: the copy is streamed like the weights it replaces
        std::shared_ptr<uint8_t> buf(static_cast<uint8_t*>(alloc_streamed(bytes)), std::free);
        if (!buf) return Status::error("%s: out of memory repacking '%s' (%zu bytes)", gguf_->path().c_str(), t->name, bytes);
        const int64_t groups = t->rows() / cpu::kR16Rows;
        pool.parallel_for(groups, 1, [&](int64_t g0, int64_t g1, int) {
            cpu::r16_repack(t->dtype, t->row(g0 * cpu::kR16Rows), t->row_size(), (g1 - g0) * cpu::kR16Rows, t->cols(), buf.get() + size_t(g0) * group);
        });
        t->packed = buf.get();
        t->packed_group_bytes = group;
        packed_.push_back(std::move(buf));
        gguf_->release(t->data, t->nbytes());  // the kernels read the copy now
    }
    return Status::ok();
}

std::string Model::description() const {
    // The dominant weight type by bytes, like llama.cpp's "Q4_K - Medium" but plain.
    uint64_t best = 0;
    const char* type = "?";
    std::map<std::string, uint64_t> by_type;
    for (const GgufTensor& t : gguf_->tensors()) by_type[dtype_name(t.dtype)] += t.nbytes;
    for (auto& [name, b] : by_type)
        if (b > best) best = b, type = name.c_str();
    double p = double(n_params_);
    std::string size = p >= 1e9 ? strfmt("%.1fB", p / 1e9) : strfmt("%.0fM", p / 1e6);
    return strfmt("%s %s %s", arch_name(config_.arch), size.c_str(), type);
}

}  // namespace kiln
