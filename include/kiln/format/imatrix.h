// Importance matrices as llama.cpp's llama-imatrix writes them (GGUF, general.type
// "imatrix"): per weight tensor, "<name>.in_sum2" (the sum over the calibration tokens of
// each input column's squared activation, one row per expert) and "<name>.counts" (tokens
// per expert). llama-quantize weighs each weight's rounding error by in_sum2 / counts; so
// does kiln-quantize --imatrix.
//
//   auto im = kiln::load_imatrix("imatrix.gguf");
//   const std::vector<float>* w = im->find("blk.0.ffn_down.weight");  // (n_expert, n_per_row)
#pragma once

#include <map>
#include <string>
#include <vector>

#include "kiln/status.h"

namespace kiln {

struct ImportanceMatrix {
    std::map<std::string, std::vector<float>> values;  // tensor -> (experts, n_per_row): in_sum2 / counts (1 where no token was counted)
    std::vector<std::string> datasets;                 // imatrix.datasets: the calibration files' names
    int64_t chunk_count = 0, chunk_size = 0;

    const std::vector<float>* find(const std::string& tensor) const {
        auto it = values.find(tensor);
        return it == values.end() ? nullptr : &it->second;
    }
};

// Errors name the file and what is wrong: not GGUF, no imatrix entries (e.g. llama.cpp's
// older .dat format, which kiln does not read), a sums tensor without its counts, wrong types
// or sizes.
Expected<ImportanceMatrix> load_imatrix(const std::string& path);

}  // namespace kiln
