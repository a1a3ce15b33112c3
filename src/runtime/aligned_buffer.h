// Aligned storage for the CPU backend's buffers.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <utility>

#include "runtime/streamed_alloc.h"

namespace kiln {

// 64-byte aligned float/byte storage (SIMD loads, no false sharing between threads); 2 MiB
// aligned on huge pages from 2 MiB up (streamed_alloc.h).
template <class T>
struct AlignedBuffer {
    T* data = nullptr;
    size_t size = 0;
    AlignedBuffer() = default;
    explicit AlignedBuffer(size_t n) { resize(n); }
    AlignedBuffer(const AlignedBuffer&) = delete;
    AlignedBuffer& operator=(const AlignedBuffer&) = delete;
    AlignedBuffer(AlignedBuffer&& o) noexcept : data(o.data), size(o.size) { o.data = nullptr, o.size = 0; }
    AlignedBuffer& operator=(AlignedBuffer&& o) noexcept {
        std::swap(data, o.data);
        std::swap(size, o.size);
        return *this;
    }
    ~AlignedBuffer() { std::free(data); }
    void resize(size_t n) {
        std::free(data);
        size = n;
        data = n ? static_cast<T*>(alloc_streamed(n * sizeof(T))) : nullptr;
    }
    T* operator()() { return data; }
};

}  // namespace kiln
