// Read-bandwidth probe: the denominator of "decode as a fraction of memory bandwidth".
#pragma once

namespace kiln::bench {

// Streams a buffer far larger than the caches with `threads` threads (each reading its own
// contiguous slice with wide loads and several independent accumulators) and returns the
// best of several passes in GB/s (1e9 bytes per second).
double measure_read_bandwidth(int threads);

}  // namespace kiln::bench
