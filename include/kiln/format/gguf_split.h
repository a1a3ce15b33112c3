// Split GGUF files, as llama.cpp's gguf-split writes and its loader reads them: parts named
// PREFIX-00001-of-00003.gguf ...; the first holds the metadata, every part some tensors and
// the keys split.no (u16, 0-based), split.count (u16) and split.tensors.count (i32, all parts').
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kiln/format/gguf.h"
#include "kiln/status.h"

namespace kiln {

// "PREFIX-%05d-of-%05d.gguf" for part `no` (0-based) of `count`.
std::string split_part_path(const std::string& prefix, int no, int count);

// Opens a model file: a Hugging Face checkpoint directory, a GGUF file, or the first part
// of a split GGUF (every part mapped, the tensors of all in one GgufFile). Errors name a
// missing part, a part that belongs to another split, and a later part given first.
Expected<GgufFile> open_model_file(const std::string& path, bool use_mmap = true);

// When a new part starts: before a tensor that would take the part's tensor bytes past
// max_bytes, or after max_tensors tensors (0: no limit). llama-gguf-split's two modes.
struct SplitOptions {
    uint64_t max_bytes = 0;
    int max_tensors = 0;
};
// llama-gguf-split's --split-max-size: N followed by M (10^6 bytes) or G (10^9).
Expected<uint64_t> parse_split_size(const std::string& s);

// Writes f's metadata and tensors as parts PREFIX-0000i-of-0000n.gguf (one part when
// nothing needs splitting); returns the paths written.
Expected<std::vector<std::string>> write_gguf_split(const GgufFile& f, const std::string& prefix, const SplitOptions& o);

}  // namespace kiln
