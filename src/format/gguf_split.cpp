// Split GGUF files (include/kiln/format/gguf_split.h).
#include "kiln/format/gguf_split.h"

#include <cstdio>
#include <memory>

#include "kiln/format/gguf_writer.h"
#include "kiln/format/hf_checkpoint.h"

namespace kiln {

namespace {
constexpr const char* kSplitNo = "split.no";
constexpr const char* kSplitCount = "split.count";
constexpr const char* kSplitTensors = "split.tensors.count";

// "-00001-of-00003.gguf" for part `no` (0-based) of `count`: how a part's name ends.
std::string part_tail(int no, int count) {
    char tail[48];
    std::snprintf(tail, sizeof tail, "-%05d-of-%05d.gguf", no + 1, count);
    return tail;
}

// The name's prefix when it ends as part `no` of `count` does.
bool split_prefix(const std::string& path, int no, int count, std::string* prefix) {
    const std::string t = part_tail(no, count);
    if (path.size() <= t.size() || path.compare(path.size() - t.size(), t.size(), t) != 0) return false;
    *prefix = path.substr(0, path.size() - t.size());
    return true;
}
}  // namespace

std::string split_part_path(const std::string& prefix, int no, int count) { return prefix + part_tail(no, count); }

Expected<GgufFile> open_model_file(const std::string& path, bool use_mmap) {
    if (is_hf_checkpoint_dir(path)) return open_hf_checkpoint(path, use_mmap);
    auto first = GgufFile::open(path, use_mmap);
    if (!first) return first.status();
    auto count = first->get_int(kSplitCount, 0), no = first->get_int(kSplitNo, 0), total = first->get_int(kSplitTensors, -1);
    for (const auto* v : {&count, &no, &total})
        if (!*v) return v->status();
    if (count.value() <= 1) return first;
    const int n = int(count.value());
    if (count.value() > 99999) return Status::error("%s: split.count %lld is not a plausible number of parts", path.c_str(), (long long)count.value());
    std::string prefix;
    if (no.value() != 0) {
        const bool named = no.value() > 0 && no.value() < n && split_prefix(path, int(no.value()), n, &prefix);
        return Status::error("%s is part %lld of %d of a split model: load the first part%s%s", path.c_str(), (long long)no.value() + 1, n,
                             named ? ", " : "", named ? split_part_path(prefix, 0, n).c_str() : "");
    }
    if (!split_prefix(path, 0, n, &prefix))
        return Status::error("%s is the first of %d parts, but not named PREFIX-00001-of-%05d.gguf, so the others cannot be found", path.c_str(), n, n);
    for (int i = 1; i < n; ++i) {
        const std::string part_path = split_part_path(prefix, i, n);
        auto part = GgufFile::open(part_path, use_mmap);
        if (!part) return Status::error("part %d of %d of %s: %s", i + 1, n, path.c_str(), part.message().c_str());
        auto part_count = part->get_int(kSplitCount, 0), part_no = part->get_int(kSplitNo, -1);
        if (!part_count || !part_no || part_count.value() != n || part_no.value() != i)
            return Status::error("%s: expected part %d of %d, the file says part %lld of %lld (a part of another split?)", part_path.c_str(), i + 1, n,
                                 part_no ? (long long)part_no.value() + 1 : 0LL, part_count ? (long long)part_count.value() : 0LL);
        // The part's tensors point into its mapping, which the first file keeps alive.
        auto holder = std::make_shared<GgufFile>(std::move(part.value()));
        for (const GgufTensor& t : holder->tensors()) KILN_TRY(first->add_tensor(t, nullptr).with_context(part_path));
        first->keep_alive(holder);
    }
    if (total.value() >= 0 && size_t(total.value()) != first->tensors().size())
        return Status::error("%s: the %d parts hold %zu tensors, split.tensors.count says %lld", path.c_str(), n, first->tensors().size(), (long long)total.value());
    return first;
}

Expected<uint64_t> parse_split_size(const std::string& s) {
    char* end = nullptr;
    const long long n = s.empty() ? 0 : std::strtoll(s.c_str(), &end, 10);
    const std::string unit = end ? std::string(end) : "";
    if (n <= 0 || (unit != "M" && unit != "G")) return Status::error("split size '%s': a positive number followed by M (megabytes) or G (gigabytes)", s.c_str());
    return uint64_t(n) * (unit == "M" ? 1000000ull : 1000000000ull);
}

Expected<std::vector<std::string>> write_gguf_split(const GgufFile& f, const std::string& prefix, const SplitOptions& o) {
    // Tensor indices [begin, end) of each part: a new part before a tensor that would pass
    // a limit (its bytes padded to the alignment, as llama-gguf-split counts them).
    std::vector<size_t> starts = {0};
    uint64_t bytes = 0;
    const auto& tensors = f.tensors();
    for (size_t i = 0; i < tensors.size(); ++i) {
        const uint64_t padded = (tensors[i].nbytes + f.alignment() - 1) / f.alignment() * f.alignment();
        const size_t in_part = i - starts.back();
        if (in_part > 0 && ((o.max_bytes > 0 && bytes + padded > o.max_bytes) || (o.max_tensors > 0 && int(in_part) >= o.max_tensors))) starts.push_back(i), bytes = 0;
        bytes += padded;
    }
    const int n = int(starts.size());
    if (n > 99999) return Status::error("%s: %d parts; raise the split size", prefix.c_str(), n);
    std::vector<std::string> paths;
    for (int p = 0; p < n; ++p) {
        GgufWriter w(uint32_t(f.alignment()));
        if (p == 0) w.add_metadata(f);
        if (n > 1) {
            w.set_u16(kSplitNo, uint16_t(p));
            w.set_u16(kSplitCount, uint16_t(n));
            w.set_i32(kSplitTensors, int32_t(tensors.size()));
        }
        const size_t end = p + 1 < n ? starts[size_t(p) + 1] : tensors.size();
        for (size_t i = starts[size_t(p)]; i < end; ++i) {
            const GgufTensor& t = tensors[i];
            w.add_tensor(t.name, t.dtype, std::vector<int64_t>(t.ne, t.ne + t.n_dims), t.data, t.nbytes);
        }
        paths.push_back(n > 1 ? split_part_path(prefix, p, n) : prefix + ".gguf");
        KILN_TRY(w.write(paths.back()));
    }
    return paths;
}

}  // namespace kiln
