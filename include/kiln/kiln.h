// kiln: LLM inference for AMD EPYC (AVX-512) and Vulkan devices. The app API: models,
// sessions, tokenizers, chat templates, sampling, generate() and the serving Engine.
#pragma once

#include "kiln/chat.h"
#include "kiln/engine.h"
#include "kiln/generate.h"
#include "kiln/model.h"
#include "kiln/sampler.h"
#include "kiln/session.h"
#include "kiln/status.h"
#include "kiln/tokenizer.h"

// The toolkit beyond an app's needs, included on purpose: kiln/speculative.h (speculative
// decoding), kiln/thread_pool.h, and kiln/format/ (GGUF and safetensors files, quantization,
// the bound weight tensors, the block layouts).

namespace kiln {
// Name of the CPU kernel set in use ("avx512", "avx2" or "generic").
const char* cpu_isa_name();
}  // namespace kiln
