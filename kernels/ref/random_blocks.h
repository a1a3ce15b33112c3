// Weight rows of random bits, for the formats kiln has no quantizer for (q2_K, q3_K and the
// IQ1-IQ3 grids): every code, grid index, sign and sub-block scale drawn uniformly, the
// fp16 super-block scale d drawn in [d_lo, d_hi]. Kernel tests, microbenchmarks and
// kiln-synth's benchmark-sized files use them; a real model's weights they are not.
#pragma once

#include <cstdint>

#include "kiln/dtype.h"

namespace kiln::ref {

// dst: whole blocks of type t for n elements (n a multiple of t's block size).
void random_blocks(DType t, uint64_t seed, void* dst, int64_t n, float d_lo, float d_hi);

// The root mean square of the weights random_blocks(t, ..., d, d) gives, per unit of d
// (measured over 64 blocks): to draw rows of a chosen spread, d = target / this.
double random_blocks_rms_per_d(DType t);

}  // namespace kiln::ref
