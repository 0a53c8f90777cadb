// Filtered optimizer step on the GPU (f32), every parameter block in the same
// launches: the blocks lie in flat buffers, each padded to whole chunks of
// CHUNK entries, and a CUDA block works on one chunk of one parameter block
// (`chunk_block[c]` says which; `info[b]` = (first chunk, n, k, select all)).
// A step is at most 11 launches whatever the number of blocks:
//
//   <base>_update : every entry: state update; on blocks that select every
//                   entry, the update is applied at once (p ← p·decay − d);
//                   elsewhere the direction dir_i, the key bits(|score_i|)
//                   and the histogram of the key's top digit, per block.
//   radix_pick    : one CUDA block per parameter block: choose the digit,
//                   update (prefix, mask, need); the shift-24 pass starts the
//                   state, the shift-0 pass notes whether every tie is taken.
//   radix_hist    : histogram of digit `shift` among keys matching the prefix
//                   (shifts 16, 8, 0, each followed by radix_pick).
//   tie_count     : per chunk, how many keys equal τ (HIST_CHUNKS chunks per
//                   CUDA block; skipped where every key equal to τ is taken,
//                   the usual case).
//   tie_scan      : one CUDA block per parameter block: exclusive scan of its
//                   chunk counts (skipped likewise).
//   masked_apply  : p ← p·decay − dir on selected entries; p ← p·decay
//                   elsewhere under weight-decay scope All.
//
// The arithmetic follows the CPU's (src/optim/base), operation for
// operation: constants such as 1 − β are computed in f64 on the host, and
// the source is compiled without contraction into fused multiply-adds, so
// that each operation is rounded as on the CPU. See src/cuda/radix.rs for
// the host model of the selection.

#define CHUNK 256
#define SCORE_MOMENTUM 0
#define SCORE_GRADIENT 1
#define SCORE_MV 2
#define SCORE_GV 3
#define SCORE_NONE 4

// Per parameter block, between passes. After the last pass `prefix` is τ,
// `need` the number of keys equal to τ still to select, and `all_ties` is set
// when that is every key equal to τ (no tie ranking needed).
struct RadixState {
    unsigned int prefix;
    unsigned int mask;
    unsigned int need;
    unsigned int all_ties;
};

// Chunks per CUDA block in radix_hist (its shared histogram is flushed once
// per run of chunks of the same parameter block, not once per chunk) and in
// tie_count.
#define HIST_CHUNKS 32

// Where this CUDA block works: its parameter block `b`, that block's
// (first chunk, n, k, select all), the entry's flat index and whether it is
// a real entry (not padding).
struct Place {
    unsigned int b;
    uint4 info;
    size_t i;
    bool valid;
};

__device__ __forceinline__ Place place(const unsigned int* chunk_block, const uint4* info) {
    Place pl;
    pl.b = chunk_block[blockIdx.x];
    pl.info = info[pl.b];
    pl.i = (size_t)blockIdx.x * CHUNK + threadIdx.x;
    pl.valid = (blockIdx.x - pl.info.x) * CHUNK + threadIdx.x < pl.info.y;
    return pl;
}

__device__ __forceinline__ unsigned int abs_key(float x) {
    return __float_as_uint(x) & 0x7fffffffu;
}

__device__ __forceinline__ void hist_init(unsigned int* sh) {
    for (int i = threadIdx.x; i < 256; i += blockDim.x) sh[i] = 0;
    __syncthreads();
}

__device__ __forceinline__ void hist_flush(const unsigned int* sh, unsigned int* hist) {
    __syncthreads();
    for (int i = threadIdx.x; i < 256; i += blockDim.x) {
        if (sh[i]) atomicAdd(&hist[i], sh[i]);
    }
}

// PyTorch's lerp: a + w·(b − a) for w < ½, else b − (b − a)·(1 − w).
__device__ __forceinline__ float lerp(float a, float b, float w, float omw) {
    return (w < 0.5f) ? a + w * (b - a) : b - (b - a) * omw;
}

// The end of every update kernel: on a block that selects every entry, apply
// p ← p·decay − d now (and mark the entry); elsewhere keep d, the score's
// key and its top digit for the selection.
__device__ __forceinline__ void finish(
    const Place& pl, float* p, float pi, float d, float score, float decay,
    float* dir, unsigned int* key, unsigned int* sh, unsigned char* mask)
{
    if (!pl.valid) return;
    if (pl.info.w) {
        p[pl.i] = pi * decay - d;
        mask[pl.i] = 1;
    } else {
        dir[pl.i] = d;
        unsigned int k = abs_key(score);
        key[pl.i] = k;
        atomicAdd(&sh[k >> 24], 1u);
    }
}

__device__ __forceinline__ void flush_top(const Place& pl, const unsigned int* sh, unsigned int* hist) {
    if (!pl.info.w) hist_flush(sh, hist + 256 * pl.b);
}

// Adam / AdamW / AMSGrad (PyTorch's definitions). `l2` is the coupled weight
// decay (0 when decoupled); `step_size` = lr / (1 − β1^t); `bc2_sqrt` =
// sqrt(1 − β2^t), `bc2` = 1 − β2^t (the mv/gv scores divide v by bc2 before
// the square root, as the CPU and the reference do).
extern "C" __global__ void adam_update(
    float* __restrict__ p, const float* __restrict__ g,
    float* __restrict__ m, float* __restrict__ v, float* __restrict__ vmax,
    float* __restrict__ dir, unsigned int* __restrict__ key, unsigned int* __restrict__ hist,
    unsigned char* __restrict__ mask,
    const unsigned int* __restrict__ chunk_block, const uint4* __restrict__ info,
    float w1, float omw1, float beta2, float omb2, float eps, float l2, float step_size,
    float bc1, float bc2_sqrt, float bc2, float decay, int amsgrad, int score_kind)
{
    __shared__ unsigned int sh[256];
    Place pl = place(chunk_block, info);
    hist_init(sh);
    float pi = 0.0f, d = 0.0f, score = 0.0f;
    if (pl.valid) {
        size_t i = pl.i;
        pi = p[i];
        float gi = g[i];
        if (l2 != 0.0f) gi = gi + l2 * pi;
        float mi = lerp(m[i], gi, w1, omw1);
        float vi = v[i] * beta2 + omb2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float vd = vi;
        if (amsgrad) {
            float old = vmax[i];
            vd = old > vi ? old : vi;
            vmax[i] = vd;
        }
        float denom = sqrtf(vd) / bc2_sqrt + eps;
        d = step_size * mi / denom;
        switch (score_kind) {
            case SCORE_MOMENTUM: score = mi; break;
            case SCORE_GRADIENT: score = gi; break;
            case SCORE_MV: score = fabsf(mi / bc1) / (sqrtf(vd / bc2) + eps); break;
            case SCORE_GV: score = fabsf(gi) / (sqrtf(vd / bc2) + eps); break;
            default: score = 0.0f;
        }
    }
    finish(pl, p, pi, d, score, decay, dir, key, sh, mask);
    flush_top(pl, sh, hist);
}

// NAdam (PyTorch): c_g = lr·(1 − μ_t)/(1 − Πμ), c_m = lr·μ_{t+1}/(1 − Πμ·μ_{t+1}),
// computed on the host; `bc2` = 1 − β2^t. The CPU adds the two terms to θ
// one after the other; here d = c_g·g/D + c_m·m/D (one rounding apart).
extern "C" __global__ void nadam_update(
    float* __restrict__ p, const float* __restrict__ g,
    float* __restrict__ m, float* __restrict__ v,
    float* __restrict__ dir, unsigned int* __restrict__ key, unsigned int* __restrict__ hist,
    unsigned char* __restrict__ mask,
    const unsigned int* __restrict__ chunk_block, const uint4* __restrict__ info,
    float w1, float omw1, float beta2, float omb2, float eps, float l2, float c_g, float c_m,
    float bc1, float bc2, float decay, int score_kind)
{
    __shared__ unsigned int sh[256];
    Place pl = place(chunk_block, info);
    hist_init(sh);
    float pi = 0.0f, d = 0.0f, score = 0.0f;
    if (pl.valid) {
        size_t i = pl.i;
        pi = p[i];
        float gi = g[i];
        if (l2 != 0.0f) gi = gi + l2 * pi;
        float mi = lerp(m[i], gi, w1, omw1);
        float vi = v[i] * beta2 + omb2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float denom = sqrtf(vi / bc2) + eps;
        d = c_g * gi / denom + c_m * mi / denom;
        switch (score_kind) {
            case SCORE_MOMENTUM: score = mi; break;
            case SCORE_GRADIENT: score = gi; break;
            case SCORE_MV: score = fabsf(mi / bc1) / denom; break;
            case SCORE_GV: score = fabsf(gi) / denom; break;
            default: score = 0.0f;
        }
    }
    finish(pl, p, pi, d, score, decay, dir, key, sh, mask);
    flush_top(pl, sh, hist);
}

// RMSprop (PyTorch): square average, optional centering and momentum buffer.
// `oma` = 1 − α (host f64).
extern "C" __global__ void rmsprop_update(
    float* __restrict__ p, const float* __restrict__ g,
    float* __restrict__ sq, float* __restrict__ gavg, float* __restrict__ buf,
    float* __restrict__ dir, unsigned int* __restrict__ key, unsigned int* __restrict__ hist,
    unsigned char* __restrict__ mask,
    const unsigned int* __restrict__ chunk_block, const uint4* __restrict__ info,
    float alpha, float oma, float omw, float eps, float l2, float lr, float momentum,
    int centered, int score_kind)
{
    __shared__ unsigned int sh[256];
    Place pl = place(chunk_block, info);
    hist_init(sh);
    float pi = 0.0f, d = 0.0f, score = 0.0f;
    if (pl.valid) {
        size_t i = pl.i;
        pi = p[i];
        float gi = g[i];
        if (l2 != 0.0f) gi = gi + l2 * pi;
        float si = sq[i] * alpha + oma * gi * gi;
        sq[i] = si;
        float avg;
        if (centered) {
            float ga = lerp(gavg[i], gi, oma, omw);
            gavg[i] = ga;
            avg = sqrtf(si + (-ga) * ga) + eps;
        } else {
            avg = sqrtf(si) + eps;
        }
        if (momentum > 0.0f) {
            float b = buf[i] * momentum + gi / avg;
            buf[i] = b;
            d = lr * b;
            score = b;
        } else {
            d = lr * gi / avg;
            score = gi;
        }
        if (score_kind == SCORE_GRADIENT) score = gi;
        if (score_kind == SCORE_GV) score = fabsf(gi) / avg;
    }
    finish(pl, p, pi, d, score, 1.0f, dir, key, sh, mask);
    flush_top(pl, sh, hist);
}

// SGD (PyTorch): momentum buffer (= g on the first step), dampening
// (`omd` = 1 − dampening, host f64), Nesterov.
extern "C" __global__ void sgd_update(
    float* __restrict__ p, const float* __restrict__ g, float* __restrict__ buf,
    float* __restrict__ dir, unsigned int* __restrict__ key, unsigned int* __restrict__ hist,
    unsigned char* __restrict__ mask,
    const unsigned int* __restrict__ chunk_block, const uint4* __restrict__ info,
    float lr, float l2, float momentum, float omd, int nesterov, int first_step,
    int score_kind)
{
    __shared__ unsigned int sh[256];
    Place pl = place(chunk_block, info);
    hist_init(sh);
    float pi = 0.0f, d = 0.0f, score = 0.0f;
    if (pl.valid) {
        size_t i = pl.i;
        pi = p[i];
        float gi = g[i];
        if (l2 != 0.0f) gi = gi + l2 * pi;
        d = gi;
        score = gi;
        if (momentum != 0.0f) {
            float b = first_step ? gi : buf[i] * momentum + omd * gi;
            buf[i] = b;
            d = nesterov ? gi + momentum * b : b;
            if (score_kind == SCORE_MOMENTUM) score = b;
        }
        d = lr * d;
    }
    finish(pl, p, pi, d, score, 1.0f, dir, key, sh, mask);
    flush_top(pl, sh, hist);
}

// Lion (lion-pytorch): d = lr·sign(β1·m + (1 − β1)·g), then m ← β2·m + (1 − β2)·g.
// The momentum score is the updated m.
extern "C" __global__ void lion_update(
    float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
    float* __restrict__ dir, unsigned int* __restrict__ key, unsigned int* __restrict__ hist,
    unsigned char* __restrict__ mask,
    const unsigned int* __restrict__ chunk_block, const uint4* __restrict__ info,
    float lr, float beta1, float omb1, float beta2, float omb2, float decay, int score_kind)
{
    __shared__ unsigned int sh[256];
    Place pl = place(chunk_block, info);
    hist_init(sh);
    float pi = 0.0f, d = 0.0f, score = 0.0f;
    if (pl.valid) {
        size_t i = pl.i;
        pi = p[i];
        float gi = g[i];
        float mi = m[i];
        float c = mi * beta1 + omb1 * gi;
        float s = (c > 0.0f) ? 1.0f : ((c < 0.0f) ? -1.0f : 0.0f);
        d = lr * s;
        mi = mi * beta2 + omb2 * gi;
        m[i] = mi;
        score = (score_kind == SCORE_GRADIENT) ? gi : mi;
    }
    finish(pl, p, pi, d, score, decay, dir, key, sh, mask);
    flush_top(pl, sh, hist);
}

// Histogram of digit `shift` among the keys that match their block's prefix.
// A CUDA block (CHUNK threads) reads HIST_CHUNKS consecutive chunks and
// flushes its shared histogram whenever the parameter block changes.
extern "C" __global__ void radix_hist(
    const unsigned int* __restrict__ key, const RadixState* __restrict__ st,
    const unsigned int* __restrict__ chunk_block, const uint4* __restrict__ info,
    int chunks, int shift, unsigned int* __restrict__ hist)
{
    __shared__ unsigned int sh[256];
    int c0 = blockIdx.x * HIST_CHUNKS;
    int c1 = min(c0 + HIST_CHUNKS, chunks);
    hist_init(sh);
    unsigned int cur = chunk_block[c0];
    for (int c = c0; c < c1; ++c) {
        unsigned int b = chunk_block[c];
        if (b != cur) {
            // Uniform across the CUDA block: every thread reads the same c.
            if (!info[cur].w) hist_flush(sh, hist + 256 * cur);
            __syncthreads();
            for (int i = threadIdx.x; i < 256; i += blockDim.x) sh[i] = 0;
            __syncthreads();
            cur = b;
        }
        uint4 in = info[b];
        if (in.w) continue;
        unsigned int local = (unsigned int)(c - (int)in.x) * CHUNK + threadIdx.x;
        if (local < in.y) {
            RadixState s = st[b];
            unsigned int k = key[(size_t)c * CHUNK + threadIdx.x];
            if ((k & s.mask) == s.prefix) atomicAdd(&sh[(k >> shift) & 255u], 1u);
        }
    }
    if (!info[cur].w) hist_flush(sh, hist + 256 * cur);
}

// One CUDA block of 256 threads per parameter block: the digit whose
// cumulative count from the top reaches `need` (a suffix scan in shared
// memory), then the state's update, and the histogram cleared for the next
// pass. The first pass (shift 24) starts the state: prefix 0, mask 0, need
// k. After the last pass (shift 0) the chosen bin counts exactly the keys
// equal to τ, so `all_ties` says whether every one of them is taken.
extern "C" __global__ void radix_pick(
    RadixState* st, unsigned int* hist, const uint4* __restrict__ info, int shift)
{
    __shared__ unsigned int suffix[257];
    int b = blockIdx.x, d = threadIdx.x;
    uint4 in = info[b];
    if (in.w) return;
    unsigned int* h = hist + 256 * b;
    unsigned int count = h[d];
    suffix[d] = count;
    if (d == 0) suffix[256] = 0;
    __syncthreads();
    // Inclusive suffix sums: suffix[d] = Σ_{e ≥ d} h[e].
    for (int step = 1; step < 256; step <<= 1) {
        unsigned int add = (d + step < 256) ? suffix[d + step] : 0u;
        __syncthreads();
        suffix[d] += add;
        __syncthreads();
    }
    RadixState s = st[b];
    if (shift == 24) {
        s.prefix = 0u;
        s.mask = 0u;
        s.need = in.z;
    }
    // The one digit with Σ_{e > d} < need ≤ Σ_{e ≥ d}.
    if (suffix[d + 1] < s.need && suffix[d] >= s.need) {
        s.prefix |= ((unsigned int)d) << shift;
        s.mask |= 255u << shift;
        s.need -= suffix[d + 1];
        s.all_ties = (shift == 0 && s.need == count) ? 1u : 0u;
        st[b] = s;
    }
    h[d] = 0;
}

// Per chunk, the number of keys equal to τ (their block's prefix); a CUDA
// block (CHUNK threads) counts HIST_CHUNKS consecutive chunks.
extern "C" __global__ void tie_count(
    const unsigned int* __restrict__ key, const RadixState* __restrict__ st,
    const unsigned int* __restrict__ chunk_block, const uint4* __restrict__ info,
    int chunks, unsigned int* __restrict__ chunk_counts)
{
    int c0 = blockIdx.x * HIST_CHUNKS;
    int c1 = min(c0 + HIST_CHUNKS, chunks);
    for (int c = c0; c < c1; ++c) {
        unsigned int b = chunk_block[c];
        uint4 in = info[b];
        RadixState s = st[b];
        // Uniform across the CUDA block: every thread reads the same c.
        if (in.w || s.all_ties) continue;
        unsigned int local = (unsigned int)(c - (int)in.x) * CHUNK + threadIdx.x;
        int eq = local < in.y && key[(size_t)c * CHUNK + threadIdx.x] == s.prefix;
        int count = __syncthreads_count(eq);
        if (threadIdx.x == 0) chunk_counts[c] = (unsigned int)count;
    }
}

// One CUDA block of 1024 threads per parameter block: exclusive scan of the
// chunk counts of that block's chunks (none when every tie is taken), in
// tiles of 4 counts per thread, each tile scanned with warp shuffles.
extern "C" __global__ void tie_scan(
    unsigned int* counts, const RadixState* __restrict__ st, const uint4* __restrict__ info)
{
    __shared__ unsigned int warp_sum[32];
    __shared__ unsigned int carry;
    uint4 in = info[blockIdx.x];
    if (in.w || st[blockIdx.x].all_ties) return;
    unsigned int first = in.x;
    unsigned int chunks = (in.y + CHUNK - 1) / CHUNK;
    int t = threadIdx.x, lane = t & 31, w = t >> 5, warps = blockDim.x >> 5;
    if (t == 0) carry = 0;
    __syncthreads();
    for (unsigned int tile = 0; tile < chunks; tile += 4 * blockDim.x) {
        unsigned int at = tile + 4 * t;
        unsigned int v[4];
        unsigned int sum = 0;
        for (int j = 0; j < 4; ++j) {
            v[j] = (at + j < chunks) ? counts[first + at + j] : 0u;
            sum += v[j];
        }
        unsigned int x = sum;
        for (int o = 1; o < 32; o <<= 1) {
            unsigned int y = __shfl_up_sync(0xffffffffu, x, o);
            if (lane >= o) x += y;
        }
        if (lane == 31) warp_sum[w] = x;
        __syncthreads();
        if (w == 0) {
            unsigned int ws = (lane < warps) ? warp_sum[lane] : 0u;
            for (int o = 1; o < 32; o <<= 1) {
                unsigned int y = __shfl_up_sync(0xffffffffu, ws, o);
                if (lane >= o) ws += y;
            }
            if (lane < warps) warp_sum[lane] = ws;
        }
        __syncthreads();
        unsigned int before = carry + (w > 0 ? warp_sum[w - 1] : 0u) + (x - sum);
        for (int j = 0; j < 4; ++j) {
            if (at + j < chunks) counts[first + at + j] = before;
            before += v[j];
        }
        __syncthreads();
        if (t == (int)blockDim.x - 1) carry = before;
        __syncthreads();
    }
}

// p ← p·decay − dir on the selected entries of the blocks that select k of
// n; p ← p·decay on the others under scope All (`decay_all`). Blocks that
// select every entry were applied by the update kernel.
extern "C" __global__ void masked_apply(
    float* __restrict__ p, const float* __restrict__ dir, const unsigned int* __restrict__ key,
    const RadixState* __restrict__ st, const unsigned int* __restrict__ chunk_offsets,
    const unsigned int* __restrict__ chunk_block, const uint4* __restrict__ info,
    float decay, int decay_all, unsigned char* __restrict__ selected_out)
{
    __shared__ unsigned int warp_eq[CHUNK / 32];
    Place pl = place(chunk_block, info);
    if (pl.info.w) return;
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    RadixState s = st[pl.b];
    unsigned int k = pl.valid ? key[pl.i] : 0u;
    unsigned int eq = (pl.valid && k == s.prefix) ? 1u : 0u;
    unsigned int ballot = __ballot_sync(0xffffffffu, eq);
    if (lane == 0) warp_eq[w] = __popc(ballot);
    __syncthreads();
    if (!pl.valid) return;
    bool sel = k > s.prefix || (eq && s.all_ties);
    if (eq && !s.all_ties) {
        unsigned int rank = chunk_offsets[blockIdx.x];
        for (int j = 0; j < w; ++j) rank += warp_eq[j];
        rank += __popc(ballot & ((1u << lane) - 1u));
        sel = rank < s.need;
    }
    float pi = p[pl.i];
    if (sel) p[pl.i] = pi * decay - dir[pl.i];
    else if (decay_all) p[pl.i] = pi * decay;
    selected_out[pl.i] = sel ? 1 : 0;
}
