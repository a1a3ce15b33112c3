// Computing importance matrices as llama-imatrix does: run calibration text through the
// model (kiln::compute_perplexity's chunks) with an ImatrixCollector watching the CPU
// forward pass, then save() writes llama-imatrix's GGUF file, which kiln-quantize
// --imatrix and llama-quantize --imatrix both read (kiln/format/imatrix.h loads it).
//
//   kiln::ImatrixCollector im;
//   session->set_activation_observer(&im);
//   kiln::compute_perplexity(*session, tokens, {.n_ctx = 512});
//   im.save("imatrix.gguf", {"calibration.txt"}, 512);
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "kiln/session.h"
#include "kiln/status.h"

namespace kiln {

// One weight's statistics, raw as llama-imatrix keeps them.
struct ImatrixStats {
    std::vector<float> sums;      // (experts, n_per_row) sum over the tokens of each input column's x^2
    std::vector<int64_t> counts;  // (experts) tokens that went through the weight (expert)
};

class ImatrixCollector final : public ActivationObserver {
public:
    // process_output: also the output (vocabulary) matrix, as llama-imatrix --process-output;
    // by default only the blocks' weights ("blk.*").
    explicit ImatrixCollector(bool process_output = false) : process_output_(process_output) {}

    void matmul_input(const TensorView& w, int expert, const float* x, int rows) override;

    const std::map<std::string, ImatrixStats>& stats() const { return stats_; }
    // The first problem seen (a non-finite activation, a weight whose shape changed), naming
    // the tensor; ok otherwise.
    const Status& status() const { return status_; }
    // Chunks of chunk_size tokens the statistics cover (llama-imatrix's chunk_count).
    int64_t chunks(int chunk_size) const;
    // llama-imatrix's GGUF: general.type "imatrix", imatrix.datasets, imatrix.chunk_count,
    // imatrix.chunk_size; per weight (names sorted) "<name>.in_sum2" (f32, n_per_row x
    // experts) and "<name>.counts" (f32, 1 x experts).
    Status save(const std::string& path, const std::vector<std::string>& datasets, int chunk_size) const;

private:
    bool process_output_;
    std::map<std::string, ImatrixStats> stats_;
    Status status_ = Status::ok();
};

}  // namespace kiln
