// Rounding helpers the reference quantizers share (quants.cpp, quants_iq.cpp): ggml's
// constants and its rounding rule, which the byte-exact golden vectors pin down.
#pragma once

#include <cstdint>
#include <cstring>

namespace kiln::ref {

// Groups whose largest magnitude is below this are treated as all zero (ggml's
// GROUP_MAX_EPS), so that no scale is ever computed as 1 / (almost 0).
constexpr float kGroupMaxEps = 1e-15f;

// Round to nearest, ties to even, then clamp to [lo, hi]. Clamping the float first (NaN
// goes to hi) keeps |v| < 2^22, where adding 1.5 * 2^23 leaves the rounded integer in the
// low mantissa bits (ggml's nearest_int): the same result as nearbyint, without the libm
// calls that made the k-quant searches 2x slower.
inline int round_clamp(float v, int lo, int hi) {
    v = !(v <= float(hi)) ? float(hi) : v;
    v = v < float(lo) ? float(lo) : v;
    const float shifted = v + 12582912.0f;
    int32_t bits;
    std::memcpy(&bits, &shifted, sizeof bits);
    return (bits & 0x007fffff) - 0x00400000;
}

}  // namespace kiln::ref
