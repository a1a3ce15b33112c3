// Quantizing a model's weights, in memory (Model::load with LoadOptions::quantize, the
// `--quantize` flag) or into a new GGUF (kiln-quantize). The type each tensor gets follows
// llama-quantize's rules for the same mix (llama_tensor_get_type in llama.cpp), and the
// quantizers are ggml's (kernels/ref/quants.h; with an importance matrix its weighted
// searches), so a file quantized here has llama-quantize's types and bytes.
//
//   auto spec = kiln::parse_quant_mix("q4_k_m");       // or q8_0, q6_k, q5_k_m, f16, ...
//   kiln::QuantizeOptions o;
//   o.mix = spec.value();
//   kiln::Status s = kiln::quantize_gguf(file, o);    // file's tensors now point at new bytes
#pragma once

#include <functional>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "kiln/dtype.h"
#include "kiln/format/gguf.h"
#include "kiln/format/imatrix.h"
#include "kiln/status.h"

namespace kiln {

// A target as llama-quantize names it: a base type plus the per-tensor rules of its mix.
struct QuantMix {
    std::string name;   // canonical spelling, e.g. "Q4_K_M"
    DType base;         // what most matrices become
    uint32_t ftype;     // general.file_type llama.cpp writes (llama_ftype)
};

// Accepts llama-quantize's names, any case: Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q4_K_S Q4_K_M (= Q4_K)
// Q5_K_S Q5_K_M (= Q5_K) Q6_K IQ4_NL IQ4_XS F16 BF16 F32, and COPY (every tensor kept: a metadata-only rewrite).
// IQ3_XXS IQ3_XS IQ3_S IQ3_M IQ2_XXS IQ2_XS IQ2_S IQ2_M IQ1_S IQ1_M name their per-tensor
// types (mix_tensor_type), also for kiln-synth's random files; quantize_gguf writes IQ3_S and
// IQ3_M, and the others with an importance matrix, and refuses a type it has no quantizer
// for (q3_K, which no mix here names) naming the tensor.
Expected<QuantMix> parse_quant_mix(const std::string& name);
// One type name (q4_K, q8_0, f16, ...) for --tensor-type and friends.
Expected<DType> parse_quant_type(const std::string& name);

// The type llama-quantize's `mix` gives the quantizable tensor `name` (a matrix or 3-D
// expert tensor) before overrides and the block-size fallback: more bits for attn_v and
// ffn_down in some layers (Q4_K_M, Q5_K_M, Q4_K_S; IQ4_NL/IQ4_XS: Q5_K for attn_v when 4+
// query heads share a KV head, n_gqa, and for the first eighth's ffn_down), Q6_K for the
// output (or the tied embeddings), the Mixtral (8 experts) bumps; the 1-2 bit IQ mixes:
// q5_K output, q2_K (IQ2_S/IQ2_M: iq3_s) token embeddings, attn_v and first-eighth
// ffn_down, q4_K attn_v with 4+ query heads per KV head or 4+ experts; the IQ3 mixes: iq3_s
// (IQ3_XS: iq3_xxs q, k and middle three quarters' gate and up; IQ3_XXS: iq2_s q and k,
// iq3_s attn_output and token_embd), q4_K attn_v with 4+ query heads per KV head (IQ3_M
// always, and its attn_output and first-eighth ffn_down).
// has_imatrix: an importance matrix is given (llama-quantize then keeps IQ4_NL/IQ4_XS's
// first-eighth ffn_down and moves Q4_0/Q5_0's to Q4_1/Q5_1).
DType mix_tensor_type(const QuantMix& mix, const std::string& name, int64_t row_length, int n_layer, int n_expert, bool tied_embeddings, int n_gqa = 1,
                      bool has_imatrix = false);

struct TensorTypeOverride {
    std::string pattern;  // searched in the tensor name (std::regex_search), as llama-quantize's --tensor-type
    std::regex re;
    DType type;
};
// Parses "PATTERN=TYPE" (e.g. "attn_v=q8_0", "blk\.[0-3]\.ffn_down=q6_K").
Expected<TensorTypeOverride> parse_tensor_type_override(const std::string& spec);

struct QuantizeOptions {
    QuantMix mix;
    std::vector<TensorTypeOverride> overrides;  // first match wins
    std::optional<DType> output_type;           // --output-tensor-type
    std::optional<DType> token_embd_type;       // --token-embedding-type
    // --imatrix: per-column weights of the rounding error, which every quantizer but q8_0's
    // takes (ggml's *_impl searches, as llama-quantize --imatrix runs them) and IQ2_XXS,
    // IQ2_XS and IQ3_XXS need.
    const ImportanceMatrix* imatrix = nullptr;
    int n_threads = 0;                          // 0: all cores
    // Called after each tensor with (done, total); nullptr for silence.
    std::function<void(size_t, size_t)> progress;
};

// The type each tensor of `f` gets (its current type when it is not quantized: 1-D
// tensors, norms, routers), in the file's tensor order.
Expected<std::vector<DType>> plan_quantization(const GgufFile& f, const QuantizeOptions& o);

// Quantizes every tensor whose planned type differs from its current one, in place, and
// sets general.file_type / general.quantization_version as llama-quantize writes them.
Status quantize_gguf(GgufFile& f, const QuantizeOptions& o);

// Root-mean-square difference between two versions of one tensor (same shape), each
// dequantized: what "quantization error" means in kiln-quantize's report and its tests.
double tensor_rmse(const GgufTensor& a, const GgufTensor& b);

}  // namespace kiln
