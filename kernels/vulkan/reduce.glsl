// Workgroup-wide reductions over a 64-thread group through shared memory (portable: no
// subgroup size assumptions). Call from uniform control flow; every thread gets the result.
shared float reduce_scratch[64];

float group_sum(float v) {
    const uint t = gl_LocalInvocationID.x;
    reduce_scratch[t] = v;
    barrier();
    for (uint s = 32u; s > 0u; s >>= 1) {
        if (t < s) reduce_scratch[t] += reduce_scratch[t + s];
        barrier();
    }
    const float r = reduce_scratch[0];
    barrier();  // before the scratch is reused
    return r;
}

float group_max(float v) {
    const uint t = gl_LocalInvocationID.x;
    reduce_scratch[t] = v;
    barrier();
    for (uint s = 32u; s > 0u; s >>= 1) {
        if (t < s) reduce_scratch[t] = max(reduce_scratch[t], reduce_scratch[t + s]);
        barrier();
    }
    const float r = reduce_scratch[0];
    barrier();
    return r;
}
