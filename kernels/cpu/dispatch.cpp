// Picks the kernel table once, from CPUID (or KILN_ISA=avx512|avx2|generic).
#include <cpuid.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "cpu/kernels.h"
#include "switches.h"

namespace kiln::cpu {

const char* isa_name(Isa isa) {
    switch (isa) {
        case Isa::Avx512: return "avx512";
        case Isa::Avx2: return "avx2";
        case Isa::Generic: return "generic";
    }
    return "?";
}

namespace {

struct CpuFeatures {
    bool avx2 = false, avx512 = false;
    bool amd = false;
    unsigned family = 0;  // CPUID family (base + extended): AMD Zen 4 = 0x19, Zen 5 = 0x1A
};

// AVX2 needs AVX2+FMA+F16C and OS support for YMM state; our AVX-512 level needs
// F, BW, VL, DQ, VNNI, BF16, VBMI, BITALG and VPOPCNTDQ (Zen 4 and later, Sapphire Rapids
// and later) plus OS support for ZMM/opmask state (XCR0 bits 5-7).
CpuFeatures detect() {
    CpuFeatures f;
    unsigned a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return f;
    f.amd = b == 0x68747541 && d == 0x69746e65 && c == 0x444d4163;  // "AuthenticAMD"
    if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
    f.family = (a >> 8 & 0xf) == 0xf ? 0xf + (a >> 20 & 0xff) : a >> 8 & 0xf;
    const bool osxsave = c & (1u << 27), fma = c & (1u << 12), f16c = c & (1u << 29);
    if (!osxsave) return f;
    unsigned xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    const bool ymm_os = (xcr0_lo & 0x6) == 0x6, zmm_os = (xcr0_lo & 0xe6) == 0xe6;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return f;
    const bool avx2 = b & (1u << 5), avx512f = b & (1u << 16), avx512dq = b & (1u << 17), avx512bw = b & (1u << 30),
               avx512vl = b & (1u << 31), vnni = c & (1u << 11), vbmi = c & (1u << 1), bitalg = c & (1u << 12), vpopcntdq = c & (1u << 14);
    unsigned a1 = 0, b1, c1, d1;
    __get_cpuid_count(7, 1, &a1, &b1, &c1, &d1);
    const bool bf16 = a1 & (1u << 5);
    f.avx2 = ymm_os && avx2 && fma && f16c;
    f.avx512 = f.avx2 && zmm_os && avx512f && avx512dq && avx512bw && avx512vl && vnni && bf16 && vbmi && bitalg && vpopcntdq;
    return f;
}

// How the AVX-512 decode kernels prefetch their weight stream, by CPU.
// on: software prefetch at all; on, except on Zen 4, where it measured 5-25% slower than
// its hardware prefetchers alone (Zen 5: 1.7-2x faster; prefetch_ahead in
// matmul_vnni-inl.h).
// l2_first: a session starts (variant 0; its DecodeTuner may move on) with 4 KB into L1
// plus a stream 32 KB ahead into L2, except on AMD, which starts with 4 KB into L1 alone
// (Zen 5, measured). Why: on an Intel Xeon (Emerald Rapids) the L1 prefetch alone leaves
// each core's stream latency-bound (7B, two threads: 74-76% of the probe; with the L2
// stream 82-88%), and a tuner that starts elsewhere spends its first trials finding it.
// KILN_WEIGHT_PREFETCH overrides: 0 off, 1 on (the CPU's start), l1 | l2 on and starting there.
struct WeightPrefetch {
    bool on, l2_first;
};
WeightPrefetch weight_prefetch_for(const CpuFeatures& cpu) {
    WeightPrefetch p{!(cpu.amd && cpu.family == 0x19), !cpu.amd};
    if (const std::string& v = switches().weight_prefetch; !v.empty()) {
        p.on = v != "0";
        if (v == "l1" || v == "l2") p.l2_first = v[1] == '2';
    }
    return p;
}

struct Tables {
    KernelTable generic, avx2, avx512;
    CpuFeatures cpu = detect();
    const KernelTable* active = nullptr;
    Tables() {
        fill_generic(generic);
        if (cpu.avx2) fill_avx2(avx2);
        if (cpu.avx512) {
            const WeightPrefetch prefetch = weight_prefetch_for(cpu);
            fill_avx512(avx512, prefetch.on, prefetch.l2_first);
        }
        active = cpu.avx512 ? &avx512 : cpu.avx2 ? &avx2 : &generic;
        if (const char* want = switches().isa.c_str(); *want) {
            const KernelTable* t = nullptr;
            if (!std::strcmp(want, "avx512")) t = cpu.avx512 ? &avx512 : nullptr;
            else if (!std::strcmp(want, "avx2")) t = cpu.avx2 ? &avx2 : nullptr;
            else if (!std::strcmp(want, "generic")) t = &generic;
            else std::fprintf(stderr, "kiln: KILN_ISA='%s' is not one of avx512, avx2, generic; using %s\n", want, isa_name(active->isa));
            if (t) active = t;
            else if (!std::strcmp(want, "avx512") || !std::strcmp(want, "avx2"))
                std::fprintf(stderr, "kiln: KILN_ISA=%s but this CPU lacks it; using %s\n", want, isa_name(active->isa));
        }
    }
};

const Tables& tables() {
    static const Tables t;
    return t;
}

}  // namespace

uint64_t new_act_id(uint64_t n) {
    static std::atomic<uint64_t> next{1};
    return next.fetch_add(n, std::memory_order_relaxed);
}

const KernelTable& active() { return *tables().active; }

const KernelTable* table_for(Isa isa) {
    const Tables& t = tables();
    switch (isa) {
        case Isa::Generic: return &t.generic;
        case Isa::Avx2: return t.cpu.avx2 ? &t.avx2 : nullptr;
        case Isa::Avx512: return t.cpu.avx512 ? &t.avx512 : nullptr;
    }
    return nullptr;
}

std::vector<Isa> available_isas() {
    std::vector<Isa> v{Isa::Generic};
    if (table_for(Isa::Avx2)) v.push_back(Isa::Avx2);
    if (table_for(Isa::Avx512)) v.push_back(Isa::Avx512);
    return v;
}

}  // namespace kiln::cpu

namespace kiln {
const char* cpu_isa_name() { return cpu::isa_name(cpu::active().isa); }
}  // namespace kiln
