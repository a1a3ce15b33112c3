// Hugging Face checkpoint directories read as GGUF: config.json becomes the metadata
// llama.cpp's convert_hf_to_gguf.py would write, the safetensors tensors get GGUF names and
// layouts, and tokenizer.json / tokenizer_config.json become the tokenizer.ggml.* keys. The
// result is an in-memory GgufFile, so Model::load, kiln-quantize and kiln-inspect treat an
// HF directory exactly like a converted file.
//
//   auto f = kiln::open_hf_checkpoint("SmolLM2-135M-Instruct/");  // Status names the bad key
//
// Tensors stay memory-mapped where GGUF wants them unchanged (F32/F16/BF16 matrices);
// what convert_hf_to_gguf.py transforms is copied: Llama/Mixtral Q and K rows permuted
// for ggml's adjacent-pair RoPE, Gemma norms stored as 1 + w, 1-D tensors widened to F32,
// per-expert matrices stacked into one 3-D tensor.
#pragma once

#include <string>
#include <vector>

#include "kiln/format/gguf.h"
#include "kiln/status.h"

namespace kiln {

// True if `path` is a directory holding a config.json.
bool is_hf_checkpoint_dir(const std::string& path);

// Reads config.json, the safetensors weights (model.safetensors or the shards of
// model.safetensors.index.json) and the tokenizer files of `dir`. Supported classes:
// LlamaForCausalLM, MistralForCausalLM, MixtralForCausalLM, Qwen2ForCausalLM,
// Qwen2MoeForCausalLM, Qwen3ForCausalLM, Qwen3MoeForCausalLM, Gemma3ForCausalLM and
// Gemma3ForConditionalGeneration (its text model; the vision tower is not read).
Expected<GgufFile> open_hf_checkpoint(const std::string& dir, bool use_mmap = true);

// Llama 3.1's RoPE frequency divisors (the rope_freqs tensor convert_hf_to_gguf.py writes
// for rope_scaling.rope_type "llama3"): 1 for short wavelengths, `factor` for long ones,
// interpolated between. Returns head_dim / 2 values.
struct Llama3RopeScaling {
    double factor = 8, low_freq_factor = 1, high_freq_factor = 4, original_context = 8192;
};
std::vector<float> llama3_rope_factors(const Llama3RopeScaling& s, double rope_theta, int head_dim);

}  // namespace kiln
