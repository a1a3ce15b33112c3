// linear(): quantize the activations once, then split W's rows across the threads.
#include <algorithm>

#include "session_impl.h"

namespace kiln {

void linear(Session::Impl& s, ThreadPool& pool, const TensorView& w, const float* x, int n, float* y) {
    const int64_t k = w.cols(), rows = w.rows();
    const cpu::MatmulFn fn = s.kt->matmul[int(w.dtype)];
    KILN_ASSERT(fn != nullptr, "no %s matmul kernel for %s weights ('%s')", cpu::isa_name(s.kt->isa), dtype_name(w.dtype), w.name);
    const cpu::ActFormat fmt = cpu::act_format(w.dtype);
    const void* act = x;
    size_t stride = size_t(k) * sizeof(float);
    if (fmt != cpu::ActFormat::F32) {
        stride = cpu::act_row_bytes(fmt, k);
        KILN_ASSERT(size_t(n) * stride <= s.act.size, "activation scratch too small");
        uint8_t* q = s.act();
        pool.parallel_for(n, 1, [&](int64_t c0, int64_t c1, int) {
            for (int64_t c = c0; c < c1; ++c) {
                if (fmt == cpu::ActFormat::Q8K) s.kt->quantize_q8K(x + c * k, reinterpret_cast<block_q8_K*>(q + c * stride), k);
                else s.kt->quantize_q8x32(x + c * k, reinterpret_cast<cpu::block_q8_x32*>(q + c * stride), k);
            }
        });
        act = q;
    }
    const cpu::ActRows a{act, stride, n};
    // Each thread takes one contiguous slice of W's rows (a multiple of 16, the GEMM panel
    // height); the kernel tiles it for the cache.
    pool.parallel_for(rows, 16, [&](int64_t r0, int64_t r1, int) { fn(k, w.data, w.row_size(), r0, r1, a, y, size_t(rows)); });
}

}  // namespace kiln
