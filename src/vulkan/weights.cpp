// Weight upload: plan offsets, allocate arenas, copy each tensor once.
#include "vulkan/weights.h"

#include <algorithm>

namespace kiln::vulkan {

namespace {

constexpr uint64_t kArenaBytes = 1ull << 30;  // below every driver's allocation size limit

uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

}  // namespace

Status DeviceWeights::upload(const Context& ctx, const std::vector<const TensorView*>& tensors) {
    const uint64_t alignment = std::max<uint64_t>(256, ctx.properties().limits.minStorageBufferOffsetAlignment);
    struct Placement {
        const TensorView* t;
        uint32_t row0, rows;
        size_t arena;
        uint64_t offset, bytes;
    };
    std::vector<Placement> plan;
    std::vector<uint64_t> arena_sizes;
    std::map<const void*, bool> seen;
    for (const TensorView* t : tensors) {
        if (t->empty() || seen[t->data]) continue;
        seen[t->data] = true;
        const uint64_t row_size = t->row_size(), max_rows = (ctx.max_binding_bytes() - 4) / row_size;
        if (max_rows == 0) return Status::error("a row of tensor '%s' exceeds %s's largest storage buffer binding", t->name, ctx.name());
        for (int64_t row0 = 0; row0 < t->rows(); row0 += int64_t(max_rows)) {
            const uint32_t rows = uint32_t(std::min<int64_t>(int64_t(max_rows), t->rows() - row0));
            const uint64_t bytes = align_up(rows * row_size, 4);
            if (arena_sizes.empty() || align_up(arena_sizes.back(), alignment) + bytes > std::max(kArenaBytes, bytes)) arena_sizes.push_back(0);
            const uint64_t offset = align_up(arena_sizes.back(), alignment);
            plan.push_back({t, uint32_t(row0), rows, arena_sizes.size() - 1, offset, bytes});
            arena_sizes.back() = offset + bytes;
        }
    }
    for (uint64_t size : arena_sizes) {
        auto b = Buffer::create(ctx, size, Memory::DeviceLocal);
        if (!b) return b.status().with_context("uploading the weights");
        arenas_.push_back(std::move(b.value()));
        bytes_ += size;
    }
    for (const Placement& p : plan) {
        const Buffer& arena = arenas_[p.arena];
        KILN_TRY(vulkan::upload(ctx, arena, p.offset, p.t->row(p.row0), uint64_t(p.rows) * p.t->row_size()));
        DeviceTensor& d = by_data_[p.t->data];
        d.parts.push_back({{arena.handle(), p.offset, p.bytes}, p.row0, p.rows});
        d.dtype = p.t->dtype;
        d.rows = uint32_t(p.t->rows());
        d.cols = uint32_t(p.t->cols());
    }
    return Status::ok();
}

const DeviceTensor DeviceWeights::kEmpty;

const DeviceTensor& DeviceWeights::operator[](const TensorView& t) const {
    if (t.empty()) return kEmpty;
    auto it = by_data_.find(t.data);
    KILN_ASSERT(it != by_data_.end(), "tensor '%s' was not uploaded", t.name);
    return it->second;
}

}  // namespace kiln::vulkan
