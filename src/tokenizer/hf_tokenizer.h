// Hugging Face tokenizer files -> GGUF tokenizer metadata (see src/hf_tokenizer.cpp).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "kiln/format/gguf_writer.h"
#include "kiln/status.h"

namespace kiln {

// The JSON object in file `path` (config.json, tokenizer.json, ...); errors name the file.
Expected<nlohmann::json> read_json_object(const std::string& path);

// Reads <dir>/tokenizer.json (required) and <dir>/tokenizer_config.json (optional) and
// writes the tokenizer.ggml.* keys (model, pre, tokens, token_type, merges or scores,
// bos/eos/unk/pad/eot ids, add_bos_token/add_eos_token, chat_template) into w.
Status hf_tokenizer_to_gguf(const std::string& dir, GgufWriter& w);

}  // namespace kiln
