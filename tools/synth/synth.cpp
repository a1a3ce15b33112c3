// kiln-synth: writes a random-weight model GGUF of a given shape, for benchmarks and tests
// (both kiln and llama.cpp read it). The tokenizer is copied from another GGUF file.
//
//   kiln-synth --vocab-from ggml-vocab-llama-spm.gguf --n-embd 2048 --n-layer 16
//       --n-head 32 --n-head-kv 8 --n-ff 8192 --type q4_k_m --seed 1 -o llama-1.1b-q4_k_m.gguf
//
// Mixture of experts: --arch qwen3moe|qwen2moe, or llama with --n-expert (Mixtral), plus
// --n-expert-used and --n-ff-exp (expert width); qwen2moe also gets a shared expert of
// width --n-ff-shexp (default 2 * n_ff_exp) with its sigmoid gate.
//
// Hybrid linear attention: --arch qwen35|qwen35moe (Qwen3.5): three gated DeltaNet layers,
// then one gated full-attention layer (--full-attn-interval), DeltaNet heads --ssm-k-heads
// (keys) and --ssm-v-heads (values) of width --ssm-state, RoPE on --rope-dim of each head;
// qwen35moe has qwen2moe's experts with the shared expert; qwen3next (Qwen3-Next) is
// qwen35moe with plain partial RoPE, one beta/alpha matrix (ssm_ba) and value heads grouped
// by key head.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kiln/kiln.h"
#include "ref/quants.h"
#include "ref/random_blocks.h"
#include "kiln/format/gguf.h"
#include "kiln/format/gguf_writer.h"
#include "kiln/format/quantize.h"
#include "kiln/thread_pool.h"
#include "kiln/format/hf_checkpoint.h"
#include "flags.h"

namespace {

struct Args {
    std::string arch = "llama", vocab_from, out, type = "q4_k_m";
    int n_embd = 2048, n_layer = 16, n_head = 32, n_head_kv = 8, n_ff = 8192, n_ctx = 4096;
    int head_dim = 0;  // 0: n_embd / n_head (Qwen3 has 128 with 32 heads of a 2048-wide model)
    int n_expert = 0, n_expert_used = 0, n_ff_exp = 0, n_ff_shexp = 0;
    int ssm_state = 128, ssm_k_heads = 16, ssm_v_heads = 32, full_attn_interval = 4, rope_dim = 0;  // qwen35 (rope_dim 0: head_dim / 4)
    uint64_t seed = 1;
    float rope_theta = 10000.0f;
    bool llama3_rope = false;  // write Llama 3.1's rope_freqs tensor (factor 8, 8192-token original context)
    float out_std = 0.02f;     // std of output.weight: larger gives decisive (peaked) logits
    int row_pool = 0;          // > 0: each matrix draws its rows from this many random rows (fast for multi-GB files)
};

int fail(const std::string& message) { return kiln::cli::fail("kiln-synth", message); }

// Approximately normal values with the given std (sum of four uniforms), fast and
// deterministic per tensor.
void random_fill(std::vector<float>& v, uint64_t seed, float stddev) {
    std::mt19937_64 rng(seed);
    const float k = stddev * std::sqrt(3.0f) / float(1ull << 31);
    for (float& x : v) {
        const uint64_t r1 = rng(), r2 = rng();
        const int64_t s = int64_t(r1 >> 32) + int64_t(r1 & 0xffffffff) + int64_t(r2 >> 32) + int64_t(r2 & 0xffffffff) - (int64_t(1) << 33);
        x = float(s) * k * 0.5f;
    }
}

}  // namespace

int main(int argc, char** argv) {
    Args a;
    kiln::cli::Flags f("kiln-synth --vocab-from VOCAB.gguf -o OUT.gguf [options]",
                       "A random-weight model of the given shape, with VOCAB's tokenizer, in llama-quantize's mix.\n");
    f.string("--vocab-from", "VOCAB.gguf", "the tokenizer (a llama.cpp vocabulary file or any model)", &a.vocab_from);
    f.string("-o, --output", "OUT.gguf", "the file to write", &a.out);
    f.string("--arch", "NAME", "llama (default), qwen2, qwen3, qwen3moe, qwen2moe, qwen35, qwen35moe or qwen3next", &a.arch);
    f.string("--type", "TYPE", "q4_k_m (default), iq4_xs, iq4_nl, iq2_xxs, iq2_xs, iq2_s, iq2_m, iq1_s, iq1_m, q8_0, q4_0, f16 or f32 "
             "(the 1-2 bit mixes: their matrices as random lattice blocks, kiln has no quantizer for them)", &a.type);
    f.integer("--n-embd", "N", "width (default 2048)", &a.n_embd, 1, 1 << 24);
    f.integer("--n-layer", "N", "layers (default 16)", &a.n_layer, 1, 1 << 24);
    f.integer("--n-head", "N", "query heads (default 32)", &a.n_head, 1, 1 << 24);
    f.integer("--n-head-kv", "N", "KV heads (default 8)", &a.n_head_kv, 1, 1 << 24);
    f.integer("--n-ff", "N", "feed-forward width (default 8192)", &a.n_ff, 1, 1 << 24);
    f.integer("--n-ctx", "N", "trained context (default 4096)", &a.n_ctx, 1, 1 << 24);
    f.integer("--head-dim", "N", "head width (default n_embd / n_head)", &a.head_dim, 1, 1 << 24);
    f.integer("--row-pool", "N", "each matrix draws its rows from N random rows (fast for multi-GB files)", &a.row_pool, 1, 1 << 24);
    f.integer("--n-expert", "N", "MoE: experts", &a.n_expert, 1, 1 << 24);
    f.integer("--n-expert-used", "N", "MoE: experts per token", &a.n_expert_used, 1, 1 << 24);
    f.integer("--n-ff-exp", "N", "MoE: expert width", &a.n_ff_exp, 1, 1 << 24);
    f.integer("--n-ff-shexp", "N", "MoE: shared expert width (qwen2moe, qwen35moe)", &a.n_ff_shexp, 1, 1 << 24);
    f.integer("--ssm-state", "N", "qwen35: DeltaNet head width (default 128)", &a.ssm_state, 1, 512);
    f.integer("--ssm-k-heads", "N", "qwen35: DeltaNet key heads (default 16)", &a.ssm_k_heads, 1, 4096);
    f.integer("--ssm-v-heads", "N", "qwen35: DeltaNet value heads (default 32)", &a.ssm_v_heads, 1, 4096);
    f.integer("--full-attn-interval", "N", "qwen35: every N-th layer is full attention (default 4)", &a.full_attn_interval, 1, 1 << 20);
    f.integer("--rope-dim", "N", "qwen35: rotated dims of each head (default head_dim / 4)", &a.rope_dim, 2, 1 << 20);
    f.value("--seed", "N", "random seed (default 1)", [&a](const std::string& v) {
        int seed = 0;
        KILN_TRY(kiln::cli::parse_int("--seed", v, 1, 1 << 24, &seed));
        return a.seed = uint64_t(seed), kiln::Status::ok();
    });
    f.number("--rope-theta", "X", "RoPE base (default 10000)", &a.rope_theta, 1, 1e12f);
    f.boolean("--llama3-rope", "write Llama 3.1's rope_freqs tensor (factor 8, 8192-token original context)", &a.llama3_rope);
    f.number("--out-std", "X", "std of output.weight (default 0.02; larger: more decisive logits)", &a.out_std, 1e-9f, 1e9f);
    if (const kiln::Status st = f.parse(argc, argv); !st) return fail(st.message());
    if (f.help_requested()) return std::fputs(f.help().c_str(), stdout), 0;
    if (a.vocab_from.empty() || a.out.empty()) return fail("usage: kiln-synth --vocab-from VOCAB.gguf -o OUT.gguf [--type q4_k_m|iq4_xs|iq2_xxs|...] [shape flags]");
    const std::vector<std::string> types = {"q4_k_m", "iq4_xs", "iq4_nl", "iq2_xxs", "iq2_xs", "iq2_s", "iq2_m", "iq1_s", "iq1_m", "q8_0", "q4_0", "f16", "f32"};
    if (std::find(types.begin(), types.end(), a.type) == types.end())
        return fail("--type must be q4_k_m, iq4_xs, iq4_nl, iq2_xxs, iq2_xs, iq2_s, iq2_m, iq1_s, iq1_m, q8_0, q4_0, f16 or f32");
    // 256-weight super-blocks: the k-quant and IQ mixes (all but iq4_nl) need rows of whole blocks
    const bool super_blocks = a.type != "iq4_nl" && a.type != "q8_0" && a.type != "q4_0" && a.type != "f16" && a.type != "f32";
    const std::vector<std::string> archs = {"llama", "qwen2", "qwen3", "qwen3moe", "qwen2moe", "qwen35", "qwen35moe", "qwen3next"};
    if (std::find(archs.begin(), archs.end(), a.arch) == archs.end()) return fail("--arch must be llama, qwen2, qwen3, qwen3moe, qwen2moe, qwen35, qwen35moe or qwen3next");
    const bool next = a.arch == "qwen3next", hybrid = a.arch == "qwen35" || a.arch == "qwen35moe" || next;
    const bool shared_expert = a.arch == "qwen2moe" || a.arch == "qwen35moe" || next;
    const bool moe = a.arch == "qwen3moe" || a.arch == "qwen2moe" || a.arch == "qwen35moe" || next || a.n_expert > 0;
    if (moe) {
        if (a.arch != "llama" && !shared_expert && a.arch != "qwen3moe") return fail("--n-expert needs --arch llama, qwen3moe, qwen2moe, qwen35moe or qwen3next");
        if (a.n_expert == 0) a.n_expert = 8;
        if (a.n_expert_used == 0) a.n_expert_used = std::min(2, a.n_expert);
        if (a.n_expert_used > a.n_expert) return fail("--n-expert-used must be <= --n-expert");
        if (a.n_ff_exp == 0) a.n_ff_exp = a.n_ff;
        if (shared_expert && a.n_ff_shexp == 0) a.n_ff_shexp = 2 * a.n_ff_exp;
        if (super_blocks && (a.n_ff_exp % 256 || a.n_ff_shexp % 256)) return fail(a.type + " needs --n-ff-exp and --n-ff-shexp multiples of 256");
    }
    if ((a.head_dim == 0 && a.n_embd % a.n_head) || a.n_head % a.n_head_kv) return fail("n_embd must divide by n_head (or give --head-dim) and n_head by n_head_kv");
    if (a.head_dim == 0) a.head_dim = a.n_embd / a.n_head;
    if (a.head_dim % 2) return fail("--head-dim must be even");
    if (hybrid) {
        if (a.rope_dim == 0) a.rope_dim = std::max(2, a.head_dim / 4);  // Qwen3.5: a quarter of each head rotates
        if (a.rope_dim % 2 || a.rope_dim > a.head_dim) return fail("--rope-dim must be even and at most the head width");
        if (a.ssm_v_heads % a.ssm_k_heads) return fail("--ssm-v-heads must be a multiple of --ssm-k-heads");
        if (super_blocks && (a.ssm_state * a.ssm_v_heads) % 256) return fail(a.type + " needs --ssm-state x --ssm-v-heads a multiple of 256");
    }
    if (super_blocks && (a.n_embd % 256 || a.n_ff % 256)) return fail(a.type + " needs n_embd and n_ff multiples of 256");

    auto vocab = kiln::GgufFile::open(a.vocab_from);
    if (!vocab) return fail(vocab.message());
    const kiln::GgufValue* tokens = vocab->find("tokenizer.ggml.tokens");
    if (!tokens) return fail(a.vocab_from + ": no tokenizer.ggml.tokens");
    const int n_vocab = int(tokens->arr_strings.size());

    kiln::GgufWriter w;
    const std::string A = a.arch;
    w.set_str("general.architecture", A);
    w.set_str("general.name", "kiln-synth random " + A);
    w.set_u32(A + ".block_count", uint32_t(a.n_layer));
    w.set_u32(A + ".context_length", uint32_t(a.n_ctx));
    w.set_u32(A + ".embedding_length", uint32_t(a.n_embd));
    // Mixtral (llama) sizes its experts by feed_forward_length; the Qwen MoEs by their own keys.
    w.set_u32(A + ".feed_forward_length", uint32_t(moe && A == "llama" ? a.n_ff_exp : a.n_ff));
    if (moe) {
        w.set_u32(A + ".expert_count", uint32_t(a.n_expert));
        w.set_u32(A + ".expert_used_count", uint32_t(a.n_expert_used));
        if (A != "llama") w.set_u32(A + ".expert_feed_forward_length", uint32_t(a.n_ff_exp));
        if (shared_expert) w.set_u32(A + ".expert_shared_feed_forward_length", uint32_t(a.n_ff_shexp));
    }
    w.set_u32(A + ".attention.head_count", uint32_t(a.n_head));
    w.set_u32(A + ".attention.head_count_kv", uint32_t(a.n_head_kv));
    w.set_f32(A + ".rope.freq_base", a.rope_theta);
    w.set_f32(A + ".attention.layer_norm_rms_epsilon", 1e-5f);
    w.set_u32(A + ".rope.dimension_count", uint32_t(hybrid ? a.rope_dim : a.head_dim));
    if (hybrid) {
        w.set_u32(A + ".ssm.conv_kernel", 4);
        w.set_u32(A + ".ssm.state_size", uint32_t(a.ssm_state));
        w.set_u32(A + ".ssm.group_count", uint32_t(a.ssm_k_heads));
        w.set_u32(A + ".ssm.time_step_rank", uint32_t(a.ssm_v_heads));
        w.set_u32(A + ".ssm.inner_size", uint32_t(a.ssm_state * a.ssm_v_heads));
        w.set_u32(A + ".full_attention_interval", uint32_t(a.full_attn_interval));
        if (!next) {  // Qwen3.5's M-RoPE sections (11, 11, 10 of 32 pairs), scaled to the rotated pairs
            const int pairs = a.rope_dim / 2, t = (pairs * 11 + 16) / 32, h = (pairs * 11 + 16) / 32;
            w.set_arr_i32(A + ".rope.dimension_sections", {t, h, std::max(0, pairs - t - h), 0});
        }
    }
    if (a.head_dim != a.n_embd / a.n_head) {
        w.set_u32(A + ".attention.key_length", uint32_t(a.head_dim));
        w.set_u32(A + ".attention.value_length", uint32_t(a.head_dim));
    }
    // Types per tensor as llama-quantize's mix of that name gives them (kiln/format/quantize.h).
    const kiln::QuantMix mix = kiln::parse_quant_mix(a.type).value();
    w.set_u32("general.file_type", mix.ftype);
    for (const auto& [key, v] : vocab->metadata())
        if (key.rfind("tokenizer.", 0) == 0) w.set_value(key, v);

    struct Spec {
        std::string name;
        std::vector<int64_t> ne;
        int layer;
        bool norm;
    };
    std::vector<Spec> specs;
    const int64_t E = a.n_embd, D = a.head_dim, Q = int64_t(a.n_head) * D, K = int64_t(a.n_head_kv) * D, F = a.n_ff;
    specs.push_back({"token_embd.weight", {E, n_vocab}, 0, false});
    specs.push_back({"output_norm.weight", {E}, 0, true});
    specs.push_back({"output.weight", {E, n_vocab}, a.n_layer - 1, false});
    if (a.llama3_rope) specs.push_back({"rope_freqs.weight", {D / 2}, 0, true});
    for (int il = 0; il < a.n_layer; ++il) {
        auto n = [&](const char* t) { return kiln::strfmt("blk.%d.%s", il, t); };
        specs.push_back({n("attn_norm.weight"), {E}, il, true});
        const bool recurrent = hybrid && (il + 1) % a.full_attn_interval != 0;
        if (recurrent) {  // gated DeltaNet
            const int64_t S = a.ssm_state, Hv = a.ssm_v_heads, C = 2 * int64_t(a.ssm_k_heads) * S + Hv * S;
            specs.push_back({n("attn_qkv.weight"), {E, C}, il, false});
            specs.push_back({n("attn_gate.weight"), {E, Hv * S}, il, false});
            if (next) {
                specs.push_back({n("ssm_ba.weight"), {E, 2 * Hv}, il, false});
            } else {
                specs.push_back({n("ssm_alpha.weight"), {E, Hv}, il, false});
                specs.push_back({n("ssm_beta.weight"), {E, Hv}, il, false});
            }
            specs.push_back({n("ssm_out.weight"), {Hv * S, E}, il, false});
            specs.push_back({n("ssm_conv1d.weight"), {4, C}, il, true});
            specs.push_back({n("ssm_dt.bias"), {Hv}, il, true});
            specs.push_back({n("ssm_a"), {Hv}, il, true});
            specs.push_back({n("ssm_norm.weight"), {S}, il, true});
        } else {
            specs.push_back({n("attn_q.weight"), {E, hybrid ? 2 * Q : Q}, il, false});  // qwen35: each head's query, then its gate
            specs.push_back({n("attn_k.weight"), {E, K}, il, false});
            specs.push_back({n("attn_v.weight"), {E, K}, il, false});
            specs.push_back({n("attn_output.weight"), {Q, E}, il, false});
        }
        if (a.arch == "qwen2" || a.arch == "qwen2moe") {
            specs.push_back({n("attn_q.bias"), {Q}, il, true});
            specs.push_back({n("attn_k.bias"), {K}, il, true});
            specs.push_back({n("attn_v.bias"), {K}, il, true});
        }
        if (a.arch == "qwen3" || a.arch == "qwen3moe" || (hybrid && !recurrent)) {
            specs.push_back({n("attn_q_norm.weight"), {D}, il, true});
            specs.push_back({n("attn_k_norm.weight"), {D}, il, true});
        }
        specs.push_back({n(hybrid ? "post_attention_norm.weight" : "ffn_norm.weight"), {E}, il, true});
        if (!moe) {
            specs.push_back({n("ffn_gate.weight"), {E, F}, il, false});
            specs.push_back({n("ffn_up.weight"), {E, F}, il, false});
            specs.push_back({n("ffn_down.weight"), {F, E}, il, false});
            continue;
        }
        // 3-D expert tensors: one (rows, cols) slice per expert, ggml order (cols, rows, experts).
        const int64_t X = a.n_expert, FX = a.n_ff_exp, FS = a.n_ff_shexp;
        specs.push_back({n("ffn_gate_inp.weight"), {E, X}, il, false});
        specs.push_back({n("ffn_gate_exps.weight"), {E, FX, X}, il, false});
        specs.push_back({n("ffn_up_exps.weight"), {E, FX, X}, il, false});
        specs.push_back({n("ffn_down_exps.weight"), {FX, E, X}, il, false});
        if (shared_expert) {
            specs.push_back({n("ffn_gate_inp_shexp.weight"), {E}, il, false});
            specs.push_back({n("ffn_gate_shexp.weight"), {E, FS}, il, false});
            specs.push_back({n("ffn_up_shexp.weight"), {E, FS}, il, false});
            specs.push_back({n("ffn_down_shexp.weight"), {FS, E}, il, false});
        }
    }
    kiln::ThreadPool pool;
    uint64_t total = 0;
    for (size_t t = 0; t < specs.size(); ++t) {
        const Spec& s = specs[t];
        const int64_t cols = s.ne[0], rows = (s.ne.size() > 1 ? s.ne[1] : 1) * (s.ne.size() > 2 ? s.ne[2] : 1);
        // Norm weights near 1, biases small; matrices ~N(0, 0.02) like a trained model's.
        // Routers stay f32, as llama.cpp's quantizer leaves them.
        const bool router = s.name.find("ffn_gate_inp") != std::string::npos;
        const kiln::DType type = s.norm || router ? kiln::DType::F32 : kiln::mix_tensor_type(mix, s.name, cols, a.n_layer, a.n_expert, false);
        const size_t rb = kiln::row_bytes(type, cols);
        std::vector<uint8_t> bytes(rb * size_t(rows));
        // Routers wider than the other matrices, so that top-k choices are decisive.
        const float stddev = s.norm ? 0.1f : s.name == "output.weight" ? a.out_std : router ? 0.1f : 0.02f;
        // With --row-pool, only the first P rows are drawn and quantized (k-quant search is
        // slow: ~1 us per weight); the others copy one of them, picked by a hash of (tensor,
        // row). Speed is the same as for all-distinct rows; the model is still random.
        const int64_t P = a.row_pool > 0 && !s.norm ? std::min<int64_t>(a.row_pool, rows) : rows;
        // Types kiln cannot quantize to (q2_K and the IQ1-IQ3 lattices of the 1-2 bit mixes):
        // random blocks whose weights have the same spread.
        const bool random_lattice = !kiln::ref::has_quantizer(type);
        if (random_lattice)
            kiln::ref::random_blocks(type, a.seed * 1000003 + t * 65537, bytes.data(), P * cols, float(stddev / kiln::ref::random_blocks_rms_per_d(type)),
                                     float(stddev / kiln::ref::random_blocks_rms_per_d(type)));
        if (!random_lattice) pool.parallel_for(P, 64, [&](int64_t r0, int64_t r1, int) {
            std::vector<float> row(static_cast<size_t>(cols));
            for (int64_t r = r0; r < r1; ++r) {
                random_fill(row, a.seed * 1000003 + t * 65537 + uint64_t(r), stddev);
                if (s.name == "rope_freqs.weight") row = kiln::llama3_rope_factors({}, a.rope_theta, int(D));  // factor 8, 8192-token original context
                else if (s.name.ends_with("ssm_a"))  // -exp(A_log): decays between ~0.3 and ~0.9 per token
                    for (float& x : row) x = -std::exp(5.0f * x);
                else if (s.name.find("ssm_conv1d") != std::string::npos)  // taps of a trained conv's spread
                    for (float& x : row) x *= 3.0f;
                else if (s.norm && s.name.find("bias") == std::string::npos)
                    for (float& x : row) x += 1.0f;
                kiln::ref::quantize_row(type, row.data(), bytes.data() + size_t(r) * rb, cols);
            }
        });
        for (int64_t r = P; r < rows; ++r) {
            const uint64_t h = (uint64_t(r) * 0x9E3779B97F4A7C15ull) ^ (uint64_t(t) * 0xC2B2AE3D27D4EB4Full);
            std::memcpy(bytes.data() + size_t(r) * rb, bytes.data() + size_t((h >> 17) % uint64_t(P)) * rb, rb);
        }
        w.add_tensor(s.name, type, s.ne, bytes.data(), bytes.size());
        total += bytes.size();
    }
    kiln::Status st = w.write(a.out);
    if (!st) return fail(st.message());
    std::fprintf(stderr, "kiln-synth: wrote %s (%s, %zu tensors, %.1f MiB)\n", a.out.c_str(), a.type.c_str(), specs.size(), double(total) / 1048576.0);
    return 0;
}
