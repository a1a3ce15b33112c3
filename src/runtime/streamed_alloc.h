// Memory that is streamed every token (repacked weights, the KV cache).
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstdlib>

namespace kiln {

// Buffers of 2 MiB or more are 2 MiB aligned and asked onto transparent huge pages (THP in
// "madvise" mode, Debian's default, does nothing otherwise): a pass over a 4 KiB-page
// buffer takes a TLB miss and a page walk every 4 KiB, which held decode attention over a
// long cache to ~20 GB/s. Smaller ones are 64-byte aligned. Free with std::free.
inline void* alloc_streamed(size_t bytes) {
    constexpr size_t kHuge = size_t(2) << 20;
    if (bytes < kHuge) return std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    const size_t len = (bytes + kHuge - 1) / kHuge * kHuge;
    void* p = std::aligned_alloc(kHuge, len);
    if (p) madvise(p, len, MADV_HUGEPAGE);  // a hint: failure only costs speed
    return p;
}

}  // namespace kiln
