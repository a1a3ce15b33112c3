// Weight quantization with llama-quantize's per-tensor rules: see include/kiln/format/quantize.h.
#include "kiln/format/quantize.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <memory>

#include "kiln/thread_pool.h"
#include "ref/quants.h"

namespace kiln {
namespace {

// llama_ftype values (llama.h).
enum Ftype : uint32_t {
    COPY = 0xffffffffu,  // not a llama_ftype: keep every tensor and the file type
    F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q8_0 = 7, Q5_0 = 8, Q5_1 = 9,
    Q4_K_S = 14, Q4_K_M = 15, Q5_K_S = 16, Q5_K_M = 17, Q6_K = 18, IQ4_NL = 25, IQ4_XS = 30, BF16 = 32,
    IQ2_XXS = 19, IQ2_XS = 20, IQ1_S = 24, IQ2_S = 28, IQ2_M = 29, IQ1_M = 31,
    IQ3_XS = 22, IQ3_XXS = 23, IQ3_S = 26, IQ3_M = 27,
};

const QuantMix kMixes[] = {
    {"Q4_0", DType::Q4_0, Q4_0}, {"Q4_1", DType::Q4_1, Q4_1}, {"Q5_0", DType::Q5_0, Q5_0},
    {"Q5_1", DType::Q5_1, Q5_1}, {"Q8_0", DType::Q8_0, Q8_0}, {"Q4_K_S", DType::Q4_K, Q4_K_S},
    {"Q4_K_M", DType::Q4_K, Q4_K_M}, {"Q5_K_S", DType::Q5_K, Q5_K_S}, {"Q5_K_M", DType::Q5_K, Q5_K_M},
    {"Q6_K", DType::Q6_K, Q6_K}, {"IQ4_NL", DType::IQ4_NL, IQ4_NL}, {"IQ4_XS", DType::IQ4_XS, IQ4_XS},
    {"IQ2_XXS", DType::IQ2_XXS, IQ2_XXS}, {"IQ2_XS", DType::IQ2_XS, IQ2_XS}, {"IQ2_S", DType::IQ2_XS, IQ2_S}, {"IQ2_M", DType::IQ2_S, IQ2_M},
    {"IQ1_S", DType::IQ1_S, IQ1_S}, {"IQ1_M", DType::IQ1_M, IQ1_M}, {"IQ3_XXS", DType::IQ3_XXS, IQ3_XXS}, {"IQ3_XS", DType::IQ3_S, IQ3_XS},
    {"IQ3_S", DType::IQ3_S, IQ3_S}, {"IQ3_M", DType::IQ3_S, IQ3_M}, {"F16", DType::F16, F16}, {"BF16", DType::BF16, BF16}, {"F32", DType::F32, F32},
    {"COPY", DType::F32, COPY},
};

std::string upper(std::string s) {
    for (char& c : s) c = char(std::toupper(static_cast<unsigned char>(c)));
    return s;
}

bool is_quantized(DType t) { return t != DType::F32 && t != DType::F16 && t != DType::BF16; }

bool ends_with(const std::string& s, const char* suffix) { return s.ends_with(suffix); }
bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

// llama.cpp's tensor_allows_quantization for the architectures kiln runs.
bool allows_quantization(const GgufTensor& t) {
    return t.n_dims >= 2 && ends_with(t.name, "weight") && !contains(t.name, "_norm.weight") && !contains(t.name, "ffn_gate_inp.weight") &&
           !contains(t.name, "ssm_conv1d");  // the DeltaNet conv taps stay f32 (read as floats)
}

// More bits for the first and last eighth of the layers and every third one between.
bool use_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

// A type whose block does not divide the row length falls back as llama.cpp's does.
DType fallback(DType t, int64_t ncols) {
    if (ncols % dtype_info(t).block_size == 0) return t;
    DType f = t;
    if (t == DType::Q4_K) f = DType::Q5_0;
    else if (t == DType::Q5_K) f = DType::Q5_1;
    else if (t == DType::Q6_K) f = DType::Q8_0;
    else if (t == DType::IQ4_XS || t == DType::IQ2_XXS || t == DType::IQ2_XS || t == DType::IQ2_S || t == DType::IQ3_XXS || t == DType::IQ3_S ||
             t == DType::IQ1_S || t == DType::IQ1_M)
        f = DType::IQ4_NL;
    else if (t == DType::Q2_K || t == DType::Q3_K) f = DType::Q4_0;
    if (ncols % dtype_info(f).block_size != 0) f = DType::F16;
    return f;
}

// The layer number of "blk.N.<...>" (-1 otherwise).
int layer_of(const std::string& name) {
    int layer = -1;
    if (std::sscanf(name.c_str(), "blk.%d.", &layer) != 1) return -1;
    return layer;
}

}  // namespace

// llama_tensor_get_type_impl for the K-quant and legacy mixes kiln writes.
DType mix_tensor_type(const QuantMix& mix, const std::string& name, int64_t row_length, int n_layer, int n_expert, bool tied, int n_gqa, bool has_imatrix) {
    if (!is_quantized(mix.base)) return mix.base;
    const uint32_t ft = mix.ftype;
    const bool iq4 = ft == IQ4_NL || ft == IQ4_XS;
    const bool iq2 = ft == IQ2_XXS || ft == IQ2_XS || ft == IQ2_S || ft == IQ2_M || ft == IQ1_S || ft == IQ1_M;  // the 1-2 bit mixes
    const bool iq2_s = ft == IQ2_S || ft == IQ2_M;  // their larger members: iq3_s where the others take q2_K
    DType type = mix.base;
    if (name == "output.weight" || (tied && name == "token_embd.weight")) {
        if (row_length % dtype_info(type).block_size != 0) return DType::Q8_0;
        if (iq2) return DType::Q5_K;
        return type == DType::Q8_0 ? type : DType::Q6_K;
    }
    if (name == "token_embd.weight") return iq2 ? (iq2_s ? DType::IQ3_S : DType::Q2_K) : ft == IQ3_XXS ? DType::IQ3_S : type;
    const int il = layer_of(name);
    if (iq2) {  // llama.cpp's rules for the 1-2 bit mixes replace the others
        if (contains(name, "attn_v.weight")) return n_gqa >= 4 || n_expert >= 4 ? DType::Q4_K : iq2_s ? DType::IQ3_S : DType::Q2_K;
        if (contains(name, "attn_k.weight") && n_expert == 8) return DType::Q4_K;
        if (contains(name, "ffn_down") && il < n_layer / 8) return iq2_s ? DType::IQ3_S : DType::Q2_K;
        if (contains(name, "attn_output.weight")) {
            if (n_expert == 8) return DType::Q5_K;
            if (ft == IQ1_S || ft == IQ1_M) return DType::IQ2_XXS;
            if (iq2_s) return DType::IQ3_S;
        }
        return type;
    }
    if (contains(name, "attn_v.weight")) {
        if (ft == IQ3_XXS) type = n_gqa >= 4 ? DType::Q4_K : has_imatrix ? DType::IQ3_XXS : DType::IQ3_S;
        else if ((ft == IQ3_XS || ft == IQ3_S) && n_gqa >= 4) type = DType::Q4_K;
        else if (ft == IQ3_M) type = DType::Q4_K;
        else if (iq4 && n_gqa >= 4) type = DType::Q5_K;
        else if ((ft == Q4_K_M || ft == Q5_K_M) && use_more_bits(il, n_layer)) type = DType::Q6_K;
        else if (ft == Q4_K_S && il < 4) type = DType::Q5_K;
        if (n_expert == 8) type = DType::Q8_0;  // ~128 MB more on Mixtral, as llama.cpp spends it
    } else if (contains(name, "attn_k.weight") || contains(name, "attn_q.weight")) {
        // IQ3_XS's q and k one step down (iq3_xxs), IQ3_XXS's two (iq2_s).
        if (n_expert == 8 && contains(name, "attn_k.weight")) type = DType::Q8_0;
        else if (ft == IQ3_XS) type = DType::IQ3_XXS;
        else if (ft == IQ3_XXS) type = DType::IQ2_S;
    } else if (contains(name, "ffn_up") || contains(name, "ffn_gate")) {
        if (ft == IQ3_XS && il >= n_layer / 8 && il < 7 * n_layer / 8) type = DType::IQ3_XXS;
    } else if (contains(name, "ffn_down")) {
        if (ft == IQ3_XXS && !has_imatrix) type = il < n_layer / 8 ? DType::Q4_K : DType::Q3_K;
        else if (ft == IQ3_M && (il < n_layer / 8 || (n_expert == 8 && use_more_bits(il, n_layer)))) type = DType::Q4_K;
        else if (ft == Q4_K_M && use_more_bits(il, n_layer)) type = DType::Q6_K;
        else if (ft == Q5_K_M && use_more_bits(il, n_layer)) type = DType::Q6_K;
        else if (iq4 && il < n_layer / 8 && !has_imatrix) type = DType::Q5_K;
        else if (ft == Q4_K_S && il < n_layer / 8) type = DType::Q5_K;
        else if ((ft == Q4_0 || ft == Q5_0) && has_imatrix && il < n_layer / 8) type = ft == Q4_0 ? DType::Q4_1 : DType::Q5_1;
    } else if (contains(name, "attn_output.weight")) {
        const bool iq3 = ft == IQ3_XXS || ft == IQ3_XS || ft == IQ3_S || ft == IQ3_M;
        if (n_expert == 8 && (ft == Q4_K_S || ft == Q4_K_M || iq4 || iq3)) type = DType::Q5_K;
        else if (n_expert != 8 && ft == IQ3_XXS) type = DType::IQ3_S;
        else if (n_expert != 8 && ft == IQ3_M) type = DType::Q4_K;
    }
    return type;
}

Expected<QuantMix> parse_quant_mix(const std::string& name) {
    std::string n = upper(name);
    if (n == "Q4_K") n = "Q4_K_M";  // llama-quantize's aliases
    if (n == "Q5_K") n = "Q5_K_M";
    for (const QuantMix& m : kMixes)
        if (n == m.name) return m;
    std::string known;
    for (const QuantMix& m : kMixes) known += std::string(known.empty() ? "" : " ") + m.name;
    return Status::error("'%s' is not a quantization kiln writes (%s)", name.c_str(), known.c_str());
}

Expected<DType> parse_quant_type(const std::string& name) {
    const std::string n = upper(name);
    for (uint32_t id = 0; id < 64; ++id) {
        const DTypeInfo* info = dtype_info(id);
        if (info && info->name && upper(info->name) == n && (ref::has_quantizer(DType(id)) || ref::needs_importance(DType(id)))) return DType(id);
    }
    return Status::error("'%s' is not a type kiln can quantize to (f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q2_K q4_K q5_K q6_K iq3_s iq4_nl iq4_xs; with an imatrix iq1_s iq1_m iq2_xxs iq2_xs iq2_s iq3_xxs)", name.c_str());
}

Expected<TensorTypeOverride> parse_tensor_type_override(const std::string& spec) {
    const size_t eq = spec.rfind('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size()) return Status::error("--tensor-type '%s': expected PATTERN=TYPE, e.g. attn_v=q8_0", spec.c_str());
    auto type = parse_quant_type(spec.substr(eq + 1));
    if (!type) return type.status().with_context("--tensor-type '" + spec + "'");
    TensorTypeOverride o;
    o.pattern = spec.substr(0, eq);
    try {
        o.re = std::regex(o.pattern);
    } catch (const std::regex_error& e) {
        return Status::error("--tensor-type '%s': bad pattern (%s)", spec.c_str(), e.what());
    }
    o.type = type.value();
    return o;
}

Expected<std::vector<DType>> plan_quantization(const GgufFile& f, const QuantizeOptions& o) {
    auto arch = f.get_string("general.architecture");
    if (!arch) return arch.status();
    auto n_layer = f.get_int(arch.value() + ".block_count", 0);
    if (!n_layer) return n_layer.status();
    auto n_expert = f.get_int(arch.value() + ".expert_count", 0);
    if (!n_expert) return n_expert.status();
    const bool tied = f.find_tensor("output.weight") == nullptr;
    auto n_head = f.get_int(arch.value() + ".attention.head_count", 0), n_head_kv = f.get_int(arch.value() + ".attention.head_count_kv", 0);
    if (!n_head) return n_head.status();
    if (!n_head_kv) return n_head_kv.status();
    const int n_gqa = n_head_kv.value() > 0 ? int(n_head.value() / n_head_kv.value()) : 1;
    std::vector<DType> plan;
    plan.reserve(f.tensors().size());
    for (const GgufTensor& t : f.tensors()) {
        if (!allows_quantization(t) || o.mix.ftype == COPY) {
            plan.push_back(t.dtype);
            continue;
        }
        const bool is_output = t.name == "output.weight" || (tied && t.name == "token_embd.weight");
        DType type = o.mix.base;
        bool manual = false;
        if (is_output && o.output_type) type = *o.output_type, manual = true;
        else if (t.name == "token_embd.weight" && o.token_embd_type) type = *o.token_embd_type, manual = true;
        for (size_t i = 0; i < o.overrides.size() && !manual; ++i)
            if (std::regex_search(t.name, o.overrides[i].re)) type = o.overrides[i].type, manual = true;
        if (!manual) type = mix_tensor_type(o.mix, t.name, t.ne[0], int(n_layer.value()), int(n_expert.value()), tied, n_gqa, o.imatrix != nullptr);
        plan.push_back(fallback(type, t.ne[0]));
    }
    return plan;
}

Status quantize_gguf(GgufFile& f, const QuantizeOptions& o) {
    auto plan = plan_quantization(f, o);
    if (!plan) return plan.status();
    for (size_t i = 0; i < f.tensors().size(); ++i) {
        const GgufTensor& t = f.tensors()[i];
        const DType to = plan.value()[i];
        if (to == t.dtype || ref::has_quantizer(to)) continue;
        if (!ref::needs_importance(to))
            return Status::error("%s: tensor '%s' would be %s, which kiln reads but cannot write yet (it has no %s quantizer); llama-quantize writes it",
                                 o.mix.name.c_str(), t.name.c_str(), dtype_name(to), dtype_name(to));
        const std::vector<float>* w = o.imatrix ? o.imatrix->find(t.name) : nullptr;
        if (!w) return Status::error("%s: tensor '%s' would be %s, which needs an importance matrix (kiln-quantize --imatrix FILE, llama-imatrix's GGUF output)%s",
                                     o.mix.name.c_str(), t.name.c_str(), dtype_name(to), o.imatrix ? " that has this tensor" : "");
        const int64_t experts = t.n_dims > 2 ? t.ne[2] : 1;
        if (int64_t(w->size()) != experts * t.ne[0])
            return Status::error("%s: the importance matrix has %zu values for tensor '%s', which needs %lld (%lld per row%s)", o.mix.name.c_str(), w->size(),
                                 t.name.c_str(), (long long)(experts * t.ne[0]), (long long)t.ne[0], experts > 1 ? " per expert" : "");
    }
    ThreadPool pool(o.n_threads);
    const std::vector<GgufTensor>& tensors = f.tensors();
    size_t total = 0, done = 0;
    for (size_t i = 0; i < tensors.size(); ++i) total += plan.value()[i] != tensors[i].dtype;
    for (size_t i = 0; i < tensors.size(); ++i) {
        const GgufTensor t = tensors[i];  // a copy: replace_tensor rewrites the entry
        const DType to = plan.value()[i];
        if (to == t.dtype) continue;
        const int64_t cols = t.ne[0], rows = t.n_elements() / cols;
        const size_t src_row = row_bytes(t.dtype, cols), dst_row = row_bytes(to, cols);
        // The tensor's importance rows (one per expert), for the types that take them; a
        // size that does not fit is ignored here (those types also quantize without).
        const std::vector<float>* imp = o.imatrix ? o.imatrix->find(t.name) : nullptr;
        const int64_t rows_per_expert = t.n_dims > 2 ? t.ne[1] : rows;
        if (imp && int64_t(imp->size()) != rows / rows_per_expert * cols) imp = nullptr;
        auto out = std::make_shared<std::vector<uint8_t>>(dst_row * size_t(rows));  // (rows, dst_row) the new bytes
        pool.parallel_for(rows, 16, [&](int64_t r0, int64_t r1, int) {
            std::vector<float> row(static_cast<size_t>(cols));  // (cols) one row in f32
            for (int64_t r = r0; r < r1; ++r) {
                ref::dequantize_row(t.dtype, t.data + size_t(r) * src_row, row.data(), cols);
                ref::quantize_row(to, row.data(), out->data() + size_t(r) * dst_row, cols, imp ? imp->data() + r / rows_per_expert * cols : nullptr);
            }
        });
        KILN_TRY(f.replace_tensor(t.name, to, out->data(), out->size(), out));
        if (o.progress) o.progress(++done, total);
    }
    if (o.mix.ftype == COPY) return Status::ok();
    GgufValue ft;
    ft.type = GgufType::U32;
    ft.u = o.mix.ftype;
    ft.i = int64_t(o.mix.ftype);
    f.set_override("general.file_type", ft);
    GgufValue qv = ft;
    qv.u = 2, qv.i = 2;  // GGML_QNT_VERSION
    f.set_override("general.quantization_version", qv);
    return Status::ok();
}

double tensor_rmse(const GgufTensor& a, const GgufTensor& b) {
    KILN_ASSERT(a.n_elements() == b.n_elements() && a.ne[0] == b.ne[0], "tensor_rmse: shapes differ");
    const int64_t cols = a.ne[0], rows = a.n_elements() / cols;
    std::vector<float> ra(static_cast<size_t>(cols)), rb(static_cast<size_t>(cols));  // (cols) one row of each, f32
    double sum = 0;
    for (int64_t r = 0; r < rows; ++r) {
        ref::dequantize_row(a.dtype, a.data + size_t(r) * row_bytes(a.dtype, cols), ra.data(), cols);
        ref::dequantize_row(b.dtype, b.data + size_t(r) * row_bytes(b.dtype, cols), rb.data(), cols);
        for (int64_t c = 0; c < cols; ++c) sum += double(ra[size_t(c)] - rb[size_t(c)]) * double(ra[size_t(c)] - rb[size_t(c)]);
    }
    return std::sqrt(sum / double(a.n_elements()));
}

}  // namespace kiln
