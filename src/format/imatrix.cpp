// llama-imatrix's GGUF importance matrices (include/kiln/format/imatrix.h).
#include "kiln/format/imatrix.h"

#include <cmath>
#include <cstring>

#include "kiln/format/gguf.h"

namespace kiln {

Expected<ImportanceMatrix> load_imatrix(const std::string& path) {
    auto f = GgufFile::open(path);
    if (!f) return f.status().with_context(path + " (an importance matrix, llama-imatrix's GGUF output)");
    ImportanceMatrix m;
    if (const GgufValue* ds = f->find("imatrix.datasets"))
        for (std::string_view s : ds->arr_strings) m.datasets.emplace_back(s);
    auto cc = f->get_int("imatrix.chunk_count", 0), cs = f->get_int("imatrix.chunk_size", 0);
    if (!cc) return cc.status().with_context(path);
    if (!cs) return cs.status().with_context(path);
    m.chunk_count = cc.value(), m.chunk_size = cs.value();
    static constexpr std::string_view kSums = ".in_sum2", kCounts = ".counts";
    for (const GgufTensor& t : f->tensors()) {
        if (!t.name.ends_with(kSums)) continue;
        const std::string name = t.name.substr(0, t.name.size() - kSums.size());
        const GgufTensor* counts = f->find_tensor(name + std::string(kCounts));
        if (!counts) return Status::error("%s: '%s' has no '%s%s' beside it", path.c_str(), t.name.c_str(), name.c_str(), std::string(kCounts).c_str());
        if (t.dtype != DType::F32 || counts->dtype != DType::F32)
            return Status::error("%s: '%s' and its counts must be f32 (they are %s and %s)", path.c_str(), name.c_str(), dtype_name(t.dtype), dtype_name(counts->dtype));
        const int64_t n = t.n_elements(), n_counts = counts->n_elements();
        if (n_counts < 1 || n % n_counts != 0)
            return Status::error("%s: '%s' has %lld sums for %lld counts (not one row per expert)", path.c_str(), name.c_str(), (long long)n, (long long)n_counts);
        std::vector<float> sums(static_cast<size_t>(n)), cnt(static_cast<size_t>(n_counts));  // (experts, n_per_row), (experts)
        std::memcpy(sums.data(), t.data, size_t(n) * 4);
        std::memcpy(cnt.data(), counts->data, size_t(n_counts) * 4);
        // As llama-quantize normalizes them: the mean per expert; 1 (no preference) where the
        // expert saw no token.
        const int64_t per_row = n / n_counts;
        std::vector<float>& v = m.values[name];
        v.resize(size_t(n));
        for (int64_t e = 0; e < n_counts; ++e) {
            const float count = float(std::lround(cnt[size_t(e)]));
            for (int64_t i = 0; i < per_row; ++i) v[size_t(e * per_row + i)] = count > 0 ? sums[size_t(e * per_row + i)] / count : 1.0f;
        }
    }
    if (m.values.empty()) return Status::error("%s: no importance data (no '*.in_sum2' tensors; llama.cpp's legacy .dat imatrix files are not read)", path.c_str());
    return m;
}

}  // namespace kiln
