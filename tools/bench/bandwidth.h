// Read-bandwidth probe: the denominator of "decode as a fraction of memory bandwidth".
#pragma once

#include <cstddef>
#include <cstdint>

namespace kiln::bench {

// Streams a buffer far larger than the caches (1 GiB) with `threads` threads, each reading
// its own contiguous slice with wide loads and several independent accumulators. The
// buffer is faulted in once and kept, so probes can be taken often: between a decode's
// blocks too, since on a machine whose bandwidth drifts between minutes a probe taken
// seconds away from the decode it is the denominator of can be in another regime.
class ReadProbe {
public:
    explicit ReadProbe(int threads);
    ~ReadProbe();
    ReadProbe(const ReadProbe&) = delete;
    ReadProbe& operator=(const ReadProbe&) = delete;
    bool ok() const { return buf_ != nullptr; }
    // The best GB/s (1e9 bytes per second) of `passes` passes over the buffer: one stream a
    // thread, two, and one with software prefetch, in turn.
    double measure(int passes);

private:
    int threads_;
    unsigned char* buf_;  // (1 GiB) on huge pages where the OS gives them
};

// One pass over n bytes (64-byte aligned) as the probe's prefetching pass reads it, or its
// plain pass without AVX-512: the bare loop the streaming kernels' microbenchmarks sit beside.
uint64_t read_pass(const void* p, size_t n);

}  // namespace kiln::bench
