// kiln: LLM inference for AMD EPYC (AVX-512) and Vulkan devices. The umbrella header.
#pragma once

#include "kiln/backend.h"
#include "kiln/chat.h"
#include "kiln/dtype.h"
#include "kiln/generate.h"
#include "kiln/gguf.h"
#include "kiln/gguf_writer.h"
#include "kiln/hf_checkpoint.h"
#include "kiln/model.h"
#include "kiln/quantize.h"
#include "kiln/safetensors.h"
#include "kiln/sampler.h"
#include "kiln/session.h"
#include "kiln/speculative.h"
#include "kiln/status.h"
#include "kiln/tensor.h"
#include "kiln/thread_pool.h"
#include "kiln/tokenizer.h"

namespace kiln {
// Name of the CPU kernel set in use ("avx512", "avx2" or "generic").
const char* cpu_isa_name();
}  // namespace kiln
