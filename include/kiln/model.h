// Model: a loaded GGUF model (weights stay memory-mapped), its hyper-parameters and
// its tokenizer. A Model is immutable after load and can serve several Sessions.
#pragma once

#include <algorithm>
#include <array>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "kiln/status.h"
#include "kiln/tokenizer.h"

namespace kiln {

class GgufFile;  // kiln/format/gguf.h: the file's metadata and tensors
struct Weights;  // kiln/format/weights.h: the bound weight tensors

enum class Arch { Llama, Qwen2, Qwen3, Gemma3, Qwen3Moe, Qwen2Moe, Qwen35, Qwen35Moe, Qwen3Next };
const char* arch_name(Arch a);

enum class RopeScaling { None, Linear, Yarn };

struct ModelConfig {
    Arch arch = Arch::Llama;
    int n_vocab = 0;
    int n_embd = 0;       // model width
    int n_layer = 0;
    int n_head = 0;       // query heads
    int n_head_kv = 0;    // key/value heads (grouped-query attention when < n_head)
    int head_dim = 0;     // per-head width of Q and K
    int head_dim_v = 0;   // per-head width of V
    int n_ff = 0;         // feed-forward width (dense layers)
    int n_ctx_train = 0;  // context length the model was trained with
    float rms_eps = 1e-5f;

    // Rotary embeddings.
    int rope_dim = 0;             // leading dims of each head that rotate
    float rope_theta = 10000.0f;  // base frequency
    bool rope_neox = false;       // rotate pairs (i, i + d/2) instead of (2i, 2i+1)
    RopeScaling rope_scaling = RopeScaling::None;
    float rope_freq_scale = 1.0f;  // 1 / linear scaling factor (global layers only for Gemma 3)
    float rope_theta_local = 0;    // Gemma 3: base of the sliding-window layers, which are never scaled

    bool tied_embeddings = false;  // output projection reuses token_embd
    bool qkv_bias = false;         // Qwen2
    bool qk_norm = false;          // Qwen3, Gemma 3: RMSNorm on each head of Q and K

    // Gemma 3.
    float embd_scale = 1.0f;        // token embeddings multiplied by sqrt(n_embd)
    float attn_scale = 0.0f;        // 0: 1/sqrt(head_dim)
    int sliding_window = 0;         // tokens each local layer sees (0: none)
    std::vector<bool> layer_is_swa; // per layer: sliding-window attention

    // Mixture of experts.
    int n_expert = 0;
    int n_expert_used = 0;
    int n_ff_exp = 0;
    int n_ff_shexp = 0;
    bool expert_weights_norm = false;  // renormalize the top-k router weights

    // Hybrid linear attention (Qwen3.5): the layers marked recurrent are gated DeltaNet
    // layers, whose state per sequence is a conv window and a (v_heads, state, state)
    // matrix instead of a KV cache; the others are full attention.
    std::vector<bool> layer_is_recurrent;  // per layer
    int ssm_conv_kernel = 0;  // causal conv1d taps (4)
    int ssm_state = 0;        // head width of the DeltaNet keys and values
    int ssm_k_heads = 0;      // key (and query) heads
    int ssm_v_heads = 0;      // value heads, a multiple of ssm_k_heads
    // Which key head serves value head h: h / (v_heads / k_heads) when grouped (Qwen3-Next,
    // whose beta and alpha projection is one matrix grouped the same way), else h % k_heads (Qwen3.5).
    bool ssm_grouped_heads = false;
    bool attn_output_gate = false;  // the Q projection carries a per-head sigmoid gate of the attention output
    // M-RoPE sections (Qwen3.5): of the first rope_dim/2 pairs, pairs in no text section
    // (position 0 for text) do not rotate. All zero: plain RoPE.
    std::array<int, 4> rope_sections{};

    bool is_moe() const { return n_expert > 0; }
    bool is_hybrid() const { return !layer_is_recurrent.empty(); }
    bool recurrent(int il) const { return is_hybrid() && layer_is_recurrent[size_t(il)]; }
    // Index of layer il among the recurrent layers (il = n_layer: how many there are).
    int recurrent_index(int il) const {
        return is_hybrid() ? int(std::count(layer_is_recurrent.begin(), layer_is_recurrent.begin() + il, true)) : 0;
    }
    int ssm_k_dim() const { return ssm_k_heads * ssm_state; }
    int ssm_v_dim() const { return ssm_v_heads * ssm_state; }
    int ssm_conv_channels() const { return 2 * ssm_k_dim() + ssm_v_dim(); }  // q, k and v before the conv
};

struct LoadOptions {
    // "key=type:value" overrides applied to the metadata before anything reads it, as
    // llama.cpp's --override-kv (type: int, float, bool, str).
    std::vector<std::string> override_kv;
    // false: read the file into memory on huge pages instead of mapping it (llama.cpp's
    // --no-mmap): slower to load, faster to decode where weights stream from DRAM.
    bool use_mmap = true;
    // Copy the q4_K / q6_K / q8_0 / q4_0 / q4_1 / q5_0 / q5_1 matrices into a row-interleaved
    // layout (16 rows together, same bit width) where the CPU kernels read one (AVX-512):
    // faster decode, verification and prefill, at the cost of load time (like ik_llama.cpp's
    // -rtr). A mapped file's originals of the copied matrices are unmapped afterwards
    // (MappedFile::release): the weights stay resident once.
    bool repack = false;
    // Quantize the weights in memory at load (llama-quantize's mix names: "q8_0", "q4_k_m",
    // "q6_k", ...; see kiln/format/quantize.h), so an F16/BF16 model or a Hugging Face checkpoint
    // runs at GGUF speed. Empty: keep the file's types.
    std::string quantize;
    // Called after each quantized tensor with (done, total), e.g. for a progress line.
    std::function<void(size_t, size_t)> quantize_progress;
    int quantize_threads = 0;  // 0: all cores
};

class Model {
public:
    // Maps, validates and binds a GGUF model, or a Hugging Face checkpoint directory
    // (config.json + safetensors + tokenizer.json, see kiln/format/hf_checkpoint.h). Errors name
    // the file, key or tensor.
    static Expected<std::shared_ptr<Model>> load(const std::string& path, const LoadOptions& options = {});

    const ModelConfig& config() const { return config_; }
    const Weights& weights() const { return *weights_; }
    const Tokenizer& tokenizer() const { return *tokenizer_; }
    const GgufFile& gguf() const { return *gguf_; }
    // Bytes of weights one decode step reads (all tensors but the embedding table, unless
    // tied), with experts_per_token experts of each MoE layer (0: the model's expert_used_count).
    uint64_t bytes_per_token(int experts_per_token = 0) const {
        if (experts_per_token <= 0 || config_.n_expert == 0) return bytes_per_token_;
        return bytes_per_token_ - expert_bytes_ / uint64_t(config_.n_expert) * uint64_t(config_.n_expert_used) +
               expert_bytes_ / uint64_t(config_.n_expert) * uint64_t(experts_per_token);
    }
    uint64_t n_params() const { return n_params_; }
    std::string description() const;  // e.g. "llama 135M q4_1"

    ~Model();

private:
    Model();
    Status bind(const LoadOptions& options);
    std::unique_ptr<GgufFile> gguf_;
    ModelConfig config_;
    std::unique_ptr<Weights> weights_;
    std::unique_ptr<Tokenizer> tokenizer_;
    uint64_t bytes_per_token_ = 0;
    uint64_t expert_bytes_ = 0;  // all experts' tensors (n_expert slices each)
    uint64_t n_params_ = 0;
    std::vector<std::shared_ptr<uint8_t>> packed_;  // storage of TensorView::packed
    Status repack_weights();
    friend class ModelBinder;
};

}  // namespace kiln
