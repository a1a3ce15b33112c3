// KV cache row formats, chosen by -DKV_F16 or -DKV_Q8_0 (cmake/vulkan_shaders.cmake).
// A row is one (KV head, position) vector of `dim` values, starting on a 32-bit word:
//   f16:  dim / 2 words, two halves per word;
//   q8_0: dim / 32 ggml q8_0 blocks (f16 scale + 32 int8, 34 bytes), padded to a word.
#if defined(KV_F16)
uint kv_row_words(uint dim) { return dim / 2u; }
#elif defined(KV_Q8_0)
uint kv_row_words(uint dim) { return (dim / 32u * 34u + 3u) / 4u; }
#else
#error "compile with -DKV_F16 or -DKV_Q8_0"
#endif

// Byte-level readers of a uint[] cache buffer (q8_0 blocks are not word aligned).
#define KV_READERS(name, arr)                                                                        \
    uint name##_u8(uint o) { return (arr[o >> 2] >> ((o & 3u) * 8u)) & 0xffu; }                      \
    float name##_f16(uint o) { return unpackHalf2x16((arr[o >> 2] >> ((o & 2u) * 8u)) & 0xffffu).x; } \
    uint name##_u32(uint o) {                                                                        \
        const uint s = (o & 3u) * 8u, lo = arr[o >> 2];                                              \
        return s == 0u ? lo : (lo >> s) | (arr[(o >> 2) + 1u] << (32u - s));                        \
    }

int kv_sext8(uint b) { return int(b << 24) >> 24; }
