// kiln-quantize: GGUF in -> GGUF out with every 2-D weight matrix requantized to one type
// (ggml's reference quantizers, no importance matrix); norms and other 1-D tensors are
// copied. Used to build same-vocabulary draft/target pairs (e.g. a Q8_0 target drafted
// by the original Q4_1 file) from the models tools/fetch_models.py fetches.
//   kiln-quantize IN.gguf OUT.gguf TYPE      TYPE: f32 f16 q8_0 q4_0 q4_1 q5_0 q5_1 q4_K q5_K q6_K
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "kiln/kiln.h"
#include "ref/quants.h"

namespace {

int fail(const std::string& msg) {
    std::fprintf(stderr, "kiln-quantize: %s\n", msg.c_str());
    return 1;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 4) return fail("usage: kiln-quantize IN.gguf OUT.gguf TYPE (f32 f16 q8_0 q4_0 q4_1 q5_0 q5_1 q4_K q5_K q6_K)");
    const std::string in = argv[1], out = argv[2], type = argv[3];
    kiln::DType to = kiln::DType::F32;
    bool found = false;
    for (uint32_t t = 0; t < 64 && !found; ++t) {
        const kiln::DTypeInfo* info = kiln::dtype_info(t);
        if (info && info->name && type == info->name && kiln::ref::has_quantizer(kiln::DType(t))) to = kiln::DType(t), found = true;
    }
    if (!found) return fail("'" + type + "' is not a type kiln can quantize to (f32 f16 q8_0 q4_0 q4_1 q5_0 q5_1 q4_K q5_K q6_K)");
    auto f = kiln::GgufFile::open(in);
    if (!f) return fail(f.message());
    kiln::GgufWriter w(uint32_t(f->alignment()));
    for (const auto& [key, value] : f->metadata())
        if (key != "general.file_type") w.set_value(key, value);
    const uint32_t block = kiln::dtype_info(to).block_size;
    int n_requant = 0;
    for (const kiln::GgufTensor& t : f->tensors()) {
        std::vector<int64_t> ne(t.ne, t.ne + t.n_dims);
        const bool matrix = t.n_dims == 2 && t.ne[0] % block == 0 && t.dtype != to;
        if (!matrix) {
            w.add_tensor(t.name, t.dtype, ne, t.data, t.nbytes);
            continue;
        }
        const int64_t cols = t.ne[0], rows = t.ne[1];
        std::vector<float> row(static_cast<size_t>(cols));  // (cols) one dequantized row
        std::vector<uint8_t> dst(kiln::row_bytes(to, cols) * size_t(rows));  // (rows, row_bytes) requantized
        const size_t src_row = kiln::row_bytes(t.dtype, cols), dst_row = kiln::row_bytes(to, cols);
        for (int64_t r = 0; r < rows; ++r) {
            kiln::ref::dequantize_row(t.dtype, t.data + size_t(r) * src_row, row.data(), cols);
            kiln::ref::quantize_row(to, row.data(), dst.data() + size_t(r) * dst_row, cols);
        }
        w.add_tensor(t.name, to, ne, dst.data(), dst.size());
        ++n_requant;
    }
    kiln::Status s = w.write(out);
    if (!s) return fail(s.message());
    std::fprintf(stderr, "kiln-quantize: %s -> %s: %d matrices requantized to %s\n", in.c_str(), out.c_str(), n_requant, type.c_str());
    return 0;
}
