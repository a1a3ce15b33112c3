// Push-constant layouts (mirroring each shader's `Push` block) and dispatch sizes.
#include "vulkan/ops.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>

#include "ref/iq_grids.h"

namespace kiln::vulkan {

namespace {

constexpr uint32_t kMaxGroups = 65535;
constexpr uint32_t kMatvecRows = 16;    // matvec.comp: 64 threads = 16 rows x 4 lanes  // the minimum maxComputeWorkGroupCount every device has

// Groups for the element-wise shaders (256 threads, grid-stride loops).
uint32_t elementwise_groups(uint64_t total) { return uint32_t(std::clamp<uint64_t>((total + 255) / 256, 1, 4096)); }

std::string with_format(const char* shader, DType t) { return std::string(shader) + "_" + dtype_name(t); }

}  // namespace

bool has_matvec(DType t) {
    const DTypeInfo* info = dtype_info(uint32_t(t));
    return info && PipelineCache::has_shader(with_format("matvec", t));
}

bool needs_block_sums(DType t) { return t == DType::Q4_1 || t == DType::Q5_1; }

namespace {
// The sums binding: x stands in where the format reads none.
BufferRange sums_or_x(DType wt, const BufferRange& sums, const BufferRange& x) {
    KILN_ASSERT(!needs_block_sums(wt) || sums.buffer != VK_NULL_HANDLE, "%s matvec: no block sums of x given", dtype_name(wt));
    return sums.buffer != VK_NULL_HANDLE ? sums : x;
}
}  // namespace

// The IQ1-IQ3 grids, uploaded on first use and bound to every dequantizing shader (those of
// the other formats declare no such binding and never read it). dequant.glsl's word offsets:
static_assert(offsetof(ref::IqGrids, iq2xs) == 512 * 4 && offsetof(ref::IqGrids, iq2s) == 1536 * 4 && offsetof(ref::IqGrids, iq3xxs) == 3584 * 4 &&
              offsetof(ref::IqGrids, iq3s) == 3840 * 4 && offsetof(ref::IqGrids, iq1s) == 4352 * 4 && sizeof(ref::IqGrids) == 8448 * 4);
Expected<BufferRange> Ops::grids() {
    if (grids_.empty()) {
        auto b = Buffer::create(*ctx_, sizeof(ref::IqGrids), Memory::DeviceLocal);
        KILN_TRY(b);
        KILN_TRY(upload(*ctx_, *b, 0, &ref::kIqGrids, sizeof(ref::IqGrids)));
        grids_ = std::move(*b);
    }
    return whole(grids_);
}

#define KILN_PIPELINE(var, name, n_bindings, Push)                      \
    auto var##_p = pipeline(name, n_bindings, uint32_t(sizeof(Push)));  \
    KILN_TRY(var##_p);                                                  \
    const Pipeline& var = **var##_p

Status Ops::matvec(Recorder& r, DType wt, const BufferRange& w, const BufferRange& x, const BufferRange& y, const MatvecShape& s, const BufferRange& sums) {
    const uint32_t k = s.k, rows = s.rows, n = s.n;
    const MatvecShape& push = s;  // the shader's Push block, field for field
    static_assert(sizeof(MatvecShape) == 7 * 4);
    KILN_ASSERT(k % 16 == 0 && k % dtype_info(wt).block_size == 0, "matvec: k = %u is not whole blocks of %s", k, dtype_name(wt));
    KILN_PIPELINE(p, with_format("matvec", wt), 5, MatvecShape);
    auto g = grids();
    KILN_TRY(g);
    // kMatvecRows rows per group (matvec.comp), spread over x and z; 8 tokens per group along y.
    const uint32_t groups = (rows + kMatvecRows - 1) / kMatvecRows, gz = (groups + kMaxGroups - 1) / kMaxGroups, gx = (groups + gz - 1) / gz;
    r.dispatch(p, {w, x, y, sums_or_x(wt, sums, x), *g}, push, gx, (n + 7) / 8, gz);
    return Status::ok();
}

Status Ops::matmul_tiled(Recorder& r, DType wt, const BufferRange& w, const BufferRange& x, const BufferRange& y, const MatvecShape& s,
                         const BufferRange& sums) {
    KILN_ASSERT(s.k % 32 == 0, "matmul_tiled: k = %u is not a multiple of 32", s.k);
    KILN_PIPELINE(p, with_format("matmul", wt), 5, MatvecShape);
    auto g = grids();
    KILN_TRY(g);
    // 32 x 32 tiles (matmul.comp); row tiles spread over x and z.
    const uint32_t groups = (s.rows + 31) / 32, gz = (groups + kMaxGroups - 1) / kMaxGroups, gx = (groups + gz - 1) / gz;
    r.dispatch(p, {w, x, y, sums_or_x(wt, sums, x), *g}, s, gx, (s.n + 31) / 32, gz);
    return Status::ok();
}

Status Ops::linear(Recorder& r, DType wt, const BufferRange& w, const BufferRange& x, const BufferRange& y, const MatvecShape& s, const BufferRange& sums) {
    if (s.n > kMatvecTokens && s.k % 32 == 0) return matmul_tiled(r, wt, w, x, y, s, sums);
    return matvec(r, wt, w, x, y, s, sums);
}

Status Ops::get_rows(Recorder& r, DType wt, const BufferRange& w, const BufferRange& ids, const BufferRange& out, uint32_t k, uint32_t n, float scale,
                     uint32_t row0, uint32_t rows) {
    struct Push {
        uint32_t k;
        float scale;
        uint32_t row0, rows;
    } push{k, scale, row0, rows};
    KILN_PIPELINE(p, with_format("get_rows", wt), 4, Push);
    auto g = grids();
    KILN_TRY(g);
    r.dispatch(p, {w, ids, out, *g}, push, n);
    return Status::ok();
}

Status Ops::act_round(Recorder& r, const BufferRange& x, const BufferRange& y, const BufferRange& sums, uint32_t k, uint32_t rows, bool q8_K) {
    struct Push {
        uint32_t k, n, mode;
    } push{k, rows, q8_K ? 1u : 0u};
    KILN_ASSERT(k % (q8_K ? 256 : 32) == 0, "act_round: k = %u is not whole %s blocks", k, q8_K ? "q8_K" : "q8_0");
    KILN_PIPELINE(p, "act_round", 3, Push);
    const uint64_t blocks = uint64_t(rows) * (k / (q8_K ? 256 : 32));  // one thread per block, 64 per group
    r.dispatch(p, {x, y, sums}, push, uint32_t(std::clamp<uint64_t>((blocks + 63) / 64, 1, 4096)));
    return Status::ok();
}

Status Ops::rms_norm(Recorder& r, const BufferRange& x, const BufferRange& w, const BufferRange& y, uint32_t rows, uint32_t width, float eps) {
    struct Push {
        uint32_t width;
        float eps;
    } push{width, eps};
    KILN_PIPELINE(p, "rms_norm", 3, Push);
    r.dispatch(p, {x, w, y}, push, rows);
    return Status::ok();
}

Status Ops::add(Recorder& r, const BufferRange& y, const BufferRange& x, uint32_t total, uint32_t x_len) {
    struct Push {
        uint32_t total, x_len;
    } push{total, x_len};
    KILN_PIPELINE(p, "add", 2, Push);
    r.dispatch(p, {y, x}, push, elementwise_groups(total));
    return Status::ok();
}

Status Ops::glu(Recorder& r, const BufferRange& gate, const BufferRange& up, uint32_t total, bool gelu) {
    struct Push {
        uint32_t total, mode;
    } push{total, gelu ? 1u : 0u};
    KILN_PIPELINE(p, "glu", 2, Push);
    r.dispatch(p, {gate, up}, push, elementwise_groups(total));
    return Status::ok();
}

Status Ops::delta_conv(Recorder& r, const BufferRange& mix, const BufferRange& w, const BufferRange& states, const BufferRange& slots,
                       const BufferRange& conv, const DeltaShape& s) {
    struct Push {
        uint32_t n, C, K, layer_floats, scratch;
    } push{s.n, s.C, s.K, s.layer_floats, s.scratch};
    KILN_PIPELINE(p, "delta_conv", 5, Push);
    r.dispatch(p, {mix, w, states, slots, conv}, push, elementwise_groups(uint64_t(s.n) * s.C));
    return Status::ok();
}

Status Ops::delta_prep(Recorder& r, const BufferRange& conv, const BufferRange& alpha, const BufferRange& beta, const BufferRange& dt, const BufferRange& a,
                       const BufferRange& gates, const DeltaShape& s, bool ba, float eps) {
    struct Push {
        uint32_t n, C, S, Hk, Hv, ba;
        float eps;
    } push{s.n, s.C, s.S, s.Hk, s.Hv, ba ? 1u : 0u, eps};
    KILN_PIPELINE(p, "delta_prep", 6, Push);
    const uint64_t items = uint64_t(s.n) * (2 * s.Hk + s.Hv);
    r.dispatch(p, {conv, alpha, beta, dt, a, gates}, push, uint32_t(std::clamp<uint64_t>((items + 63) / 64, 1, kMaxGroups)));
    return Status::ok();
}

Status Ops::delta_rule(Recorder& r, const BufferRange& conv, const BufferRange& gates, const BufferRange& states, const BufferRange& slots,
                       const BufferRange& out, const DeltaShape& s) {
    struct Push {
        uint32_t n, C, S, Hk, Hv, grouped, layer_floats, conv_floats;
        float scale;
    } push{s.n, s.C, s.S, s.Hk, s.Hv, s.grouped ? 1u : 0u, s.layer_floats, s.conv_floats, 1.0f / std::sqrt(float(s.S))};
    KILN_PIPELINE(p, "delta_rule", 5, Push);
    r.dispatch(p, {conv, gates, states, slots, out}, push, (s.Hv * s.S + 63) / 64);
    return Status::ok();
}

Status Ops::qgate(Recorder& r, const BufferRange& qg, const BufferRange& y, uint32_t total, uint32_t D, bool gate) {
    struct Push {
        uint32_t total, D, mode;
    } push{total, D, gate ? 1u : 0u};
    KILN_PIPELINE(p, "qgate", 2, Push);
    r.dispatch(p, {qg, y}, push, elementwise_groups(total));
    return Status::ok();
}

Status Ops::rope(Recorder& r, const BufferRange& x, const BufferRange& cs, uint32_t n, uint32_t heads, uint32_t head_dim, uint32_t rope_dim, bool neox) {
    struct Push {
        uint32_t n, heads, head_dim, half_dim, neox;
    } push{n, heads, head_dim, rope_dim / 2, neox ? 1u : 0u};
    KILN_PIPELINE(p, "rope", 2, Push);
    r.dispatch(p, {x, cs}, push, elementwise_groups(uint64_t(n) * heads * (rope_dim / 2)));
    return Status::ok();
}

bool Ops::kv_type_supported(DType t, uint32_t head_dim, uint32_t head_dim_v) {
    if (t == DType::F16) return head_dim % 2 == 0 && head_dim_v % 2 == 0;
    if (t == DType::Q8_0) return head_dim % 32 == 0 && head_dim_v % 32 == 0;
    return false;
}

uint64_t Ops::kv_row_bytes(DType t, uint32_t dim) { return (row_bytes(t, dim) + 3) / 4 * 4; }

Status Ops::kv_store(Recorder& r, const BufferRange& k, const BufferRange& v, const BufferRange& kc, const BufferRange& vc, const KvShape& s, uint32_t n,
                     uint32_t pos0) {
    struct Push {
        uint32_t n, n_head_kv, head_dim, head_dim_v, n_ctx, pos0;
    } push{n, s.n_head_kv, s.head_dim, s.head_dim_v, s.n_ctx, pos0};
    KILN_ASSERT(pos0 + n <= s.n_ctx && kv_type_supported(s.type, s.head_dim, s.head_dim_v), "kv_store: bad shape");
    KILN_PIPELINE(p, with_format("kv_store", s.type), 4, Push);
    r.dispatch(p, {k, v, kc, vc}, push, elementwise_groups(uint64_t(n) * s.n_head_kv * (s.head_dim + s.head_dim_v) / 2));
    return Status::ok();
}

Status Ops::flash_attn(Recorder& r, const BufferRange& q, const BufferRange& kc, const BufferRange& vc, const BufferRange& out, const KvShape& s, uint32_t n,
                       uint32_t pos0, uint32_t window, float scale) {
    struct Push {
        uint32_t n_head, n_head_kv, head_dim, head_dim_v, n_ctx, pos0, window;
        float scale;
    } push{s.n_head, s.n_head_kv, s.head_dim, s.head_dim_v, s.n_ctx, pos0, window, scale};
    KILN_ASSERT(s.head_dim <= kMaxHeadDim && s.head_dim_v <= kMaxHeadDim && s.n_head % s.n_head_kv == 0 && pos0 + n <= s.n_ctx, "flash_attn: bad shape");
    KILN_PIPELINE(p, with_format("flash_attn", s.type), 4, Push);
    r.dispatch(p, {q, kc, vc, out}, push, s.n_head, n);
    return Status::ok();
}

Status Ops::softmax(Recorder& r, const BufferRange& x, uint32_t rows, uint32_t width) {
    struct Push {
        uint32_t width;
    } push{width};
    KILN_PIPELINE(p, "softmax", 1, Push);
    r.dispatch(p, {x}, push, rows);
    return Status::ok();
}

Status Ops::argmax(Recorder& r, const BufferRange& x, const BufferRange& idx, uint32_t rows, uint32_t width) {
    struct Push {
        uint32_t width;
    } push{width};
    KILN_PIPELINE(p, "argmax", 2, Push);
    r.dispatch(p, {x, idx}, push, rows);
    return Status::ok();
}

Status Ops::spec_verify(Recorder& r, const BufferRange& picks, const BufferRange& drafts, const BufferRange& result, uint32_t n_drafts) {
    struct Push {
        uint32_t n_drafts;
    } push{n_drafts};
    KILN_PIPELINE(p, "spec_verify", 3, Push);
    r.dispatch(p, {picks, drafts, result}, push, 1);
    return Status::ok();
}

Status Ops::spec_dist(Recorder& r, const BufferRange& logits, const BufferRange& pen, const BufferRange& dist, uint32_t n, const SampleChain& c) {
    static_assert(sizeof(SampleChain) == 6 * 4);
    KILN_ASSERT(c.top_k >= 1 && c.top_k <= kMaxTopK && c.temperature > 0, "spec_dist: top-k %u, temperature %g", c.top_k, double(c.temperature));
    KILN_PIPELINE(p, "spec_dist", 3, SampleChain);
    r.dispatch(p, {logits, pen, dist}, c, n);  // one workgroup per row
    return Status::ok();
}

Status Ops::spec_sample(Recorder& r, const BufferRange& dist, const BufferRange& drafts, const BufferRange& q, const BufferRange& u, const BufferRange& result,
                        uint32_t n_drafts) {
    struct Push {
        uint32_t n_drafts;
    } push{n_drafts};
    KILN_PIPELINE(p, "spec_sample", 5, Push);
    r.dispatch(p, {dist, drafts, q, u, result}, push, 1);
    return Status::ok();
}

Status Ops::moe_route(Recorder& r, const BufferRange& logits, const BufferRange& sel, const BufferRange& w, uint32_t n, uint32_t n_expert, uint32_t k,
                      bool norm) {
    struct Push {
        uint32_t n_expert, k, norm;
    } push{n_expert, k, norm ? 1u : 0u};
    KILN_ASSERT(k >= 1 && k <= kMaxExpertsPerToken && k <= n_expert, "moe_route: %u of %u experts", k, n_expert);
    KILN_PIPELINE(p, "moe_route", 3, Push);
    r.dispatch(p, {logits, sel, w}, push, n);  // one workgroup per token
    return Status::ok();
}

Status Ops::moe_matvec(Recorder& r, DType wt, const BufferRange& w, const BufferRange& x, const BufferRange& y, const BufferRange& sel, MoeShape s) {
    static_assert(sizeof(MoeShape) == 11 * 4);
    KILN_ASSERT(s.k % 16 == 0 && s.k % dtype_info(wt).block_size == 0 && s.part_rows > 0, "moe_matvec: k = %u is not whole blocks of %s", s.k,
                dtype_name(wt));
    KILN_PIPELINE(p, with_format("moe_matvec", wt), 5, MoeShape);
    auto g = grids();
    KILN_TRY(g);
    // Workgroups: kMatvecRows rows of one expert each (x and z); along y, the chosen experts
    // among those this part holds (at most one per pair).
    s.expert0 = s.part_row0 / s.R;
    s.n_experts = (s.part_row0 + s.part_rows - 1) / s.R - s.expert0 + 1;
    KILN_ASSERT(s.expert0 + s.n_experts <= kMaxExperts, "moe_matvec: more than %u experts", kMaxExperts);
    const uint32_t groups = (s.R + kMatvecRows - 1) / kMatvecRows, gz = (groups + kMaxGroups - 1) / kMaxGroups, gx = (groups + gz - 1) / gz;
    r.dispatch(p, {w, x, y, sel, *g}, s, gx, std::min(s.n_experts, s.n_pairs), gz);
    return Status::ok();
}

Status Ops::moe_combine(Recorder& r, const BufferRange& down, const BufferRange& w, const BufferRange& y, const BufferRange& gate, uint32_t E, uint32_t K,
                        uint32_t n, Shared shared) {
    struct Push {
        uint32_t E, K, total, mode;
    } push{E, K, n * E, uint32_t(shared)};
    KILN_PIPELINE(p, "moe_combine", 4, Push);
    r.dispatch(p, {down, w, y, gate}, push, elementwise_groups(uint64_t(n) * E));
    return Status::ok();
}

}  // namespace kiln::vulkan
