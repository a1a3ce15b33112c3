// One token of the gated delta rule (Qwen3.5's DeltaNet) for one value head, written once
// with xsimd for the TU's `Arch`. Included by each isa_*.cpp inside its namespace, after
// ops-inl.h (VF, kW, hsum).

namespace kiln::cpu::KILN_ISA_NS {

// s_in, s_out: (S, S) the state, row j = value dim j over the key dims; s_out may be s_in.
// Per row: s = s_in[j] * decay; d = beta * (v[j] - s.k); s_out[j] = s + d k; o[j] = scale * s_out[j].q.
// A row is one pass (read, update, write), two rows at a time for independent FMA chains.
inline void delta_rule(const float* s_in, float* s_out, const float* q, const float* k, const float* v, float decay, float beta, float scale, float* o,
                       int64_t S) {
    const VF vdecay(decay);
    int64_t j = 0;
    for (; j + 2 <= S; j += 2) {
        const float* a = s_in + j * S;
        const float* b = a + S;
        VF ka(0.0f), kb(0.0f);
        int64_t i = 0;
        for (; i + kW <= S; i += kW) {  // s.k of both rows, decayed
            const VF kk = VF::load_unaligned(k + i);
            ka = xsimd::fma(VF::load_unaligned(a + i) * vdecay, kk, ka);
            kb = xsimd::fma(VF::load_unaligned(b + i) * vdecay, kk, kb);
        }
        float sa = hsum(ka), sb = hsum(kb);
        for (; i < S; ++i) sa += a[i] * decay * k[i], sb += b[i] * decay * k[i];
        const float da = beta * (v[j] - sa), db = beta * (v[j + 1] - sb);
        const VF vda(da), vdb(db);
        float* oa = s_out + j * S;
        float* ob = oa + S;
        VF qa(0.0f), qb(0.0f);
        for (i = 0; i + kW <= S; i += kW) {
            const VF kk = VF::load_unaligned(k + i), qq = VF::load_unaligned(q + i);
            const VF ra = xsimd::fma(kk, vda, VF::load_unaligned(a + i) * vdecay);
            const VF rb = xsimd::fma(kk, vdb, VF::load_unaligned(b + i) * vdecay);
            ra.store_unaligned(oa + i);
            rb.store_unaligned(ob + i);
            qa = xsimd::fma(ra, qq, qa);
            qb = xsimd::fma(rb, qq, qb);
        }
        float ya = hsum(qa), yb = hsum(qb);
        for (; i < S; ++i) {
            oa[i] = a[i] * decay + k[i] * da, ob[i] = b[i] * decay + k[i] * db;
            ya += oa[i] * q[i], yb += ob[i] * q[i];
        }
        o[j] = ya * scale, o[j + 1] = yb * scale;
    }
    for (; j < S; ++j) {  // an odd last row
        const float* a = s_in + j * S;
        float* oa = s_out + j * S;
        float sa = 0;
        for (int64_t i = 0; i < S; ++i) sa += a[i] * decay * k[i];
        const float da = beta * (v[j] - sa);
        float ya = 0;
        for (int64_t i = 0; i < S; ++i) oa[i] = a[i] * decay + k[i] * da, ya += oa[i] * q[i];
        o[j] = ya * scale;
    }
}

}  // namespace kiln::cpu::KILN_ISA_NS
