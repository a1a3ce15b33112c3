// ImatrixCollector: llama-imatrix's statistics from kiln's forward pass (include/kiln/imatrix.h).
#include "kiln/imatrix.h"

#include <algorithm>
#include <cmath>

#include "kiln/format/gguf_writer.h"

namespace kiln {

void ImatrixCollector::matmul_input(const TensorView& w, int expert, const float* x, int rows) {
    if (!status_.is_ok() || rows <= 0) return;
    const std::string name = w.name;
    if (!(name.starts_with("blk.") || (process_output_ && name == "output.weight"))) return;
    // llama-imatrix leaves out dense products of fewer than 16 tokens (its scheduler asks
    // only about those), so short chunks count as there.
    if (expert < 0 && rows < 16) return;
    const int64_t cols = w.cols(), experts = w.ne[2];
    if (expert >= experts) {
        status_ = Status::error("imatrix: %s has %lld experts, not %d", name.c_str(), (long long)experts, expert + 1);
        return;
    }
    ImatrixStats& st = stats_[name];
    if (st.sums.empty()) st.sums.assign(size_t(cols * experts), 0.0f), st.counts.assign(size_t(experts), 0);
    if (st.sums.size() != size_t(cols * experts)) {
        status_ = Status::error("imatrix: %s changed shape (%zu sums, now %lld x %lld)", name.c_str(), st.sums.size(), (long long)cols, (long long)experts);
        return;
    }
    // A dense weight used for every token: one count (expert 0), as llama-imatrix keeps it.
    const size_t e = size_t(std::max(expert, 0));
    float* acc = st.sums.data() + e * size_t(cols);  // (cols)
    for (int r = 0; r < rows; ++r) {
        const float* xr = x + size_t(r) * size_t(cols);
        for (int64_t j = 0; j < cols; ++j) acc[j] += xr[j] * xr[j];
    }
    st.counts[e] += rows;
    for (int64_t j = 0; j < cols; ++j)
        if (!std::isfinite(acc[j])) {
            status_ = Status::error("imatrix: non-finite activations into %s (column %lld)", name.c_str(), (long long)j);
            return;
        }
}

int64_t ImatrixCollector::chunks(int chunk_size) const {
    int64_t most = 0;
    for (const auto& [name, st] : stats_)
        for (int64_t c : st.counts) most = std::max(most, c);
    return chunk_size > 0 ? most / chunk_size : 0;
}

Status ImatrixCollector::save(const std::string& path, const std::vector<std::string>& datasets, int chunk_size) const {
    KILN_TRY(status_);
    if (stats_.empty()) return Status::error("imatrix: nothing collected for %s (no forward pass ran a model weight)", path.c_str());
    GgufWriter w;
    w.set_str("general.type", "imatrix");
    w.set_arr_str("imatrix.datasets", datasets);
    w.set_u32("imatrix.chunk_count", uint32_t(chunks(chunk_size)));
    w.set_u32("imatrix.chunk_size", uint32_t(chunk_size));
    for (const auto& [name, st] : stats_) {  // std::map: sorted names, as llama-imatrix writes them
        const int64_t experts = int64_t(st.counts.size()), cols = int64_t(st.sums.size()) / experts;
        const std::vector<float> counts(st.counts.begin(), st.counts.end());  // (experts) f32 in the file
        w.add_tensor(name + ".in_sum2", DType::F32, {cols, experts}, st.sums.data(), st.sums.size() * sizeof(float));
        w.add_tensor(name + ".counts", DType::F32, {1, experts}, counts.data(), counts.size() * sizeof(float));
    }
    return w.write(path);
}

}  // namespace kiln
