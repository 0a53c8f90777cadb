// Filtered optimizer step on the GPU (f32), every parameter block in the same
// launches: the blocks lie in flat buffers, each padded to whole chunks of
// CHUNK entries, and a CUDA block works on one chunk of one parameter block
// (`chunk_block[c]` says which; `info[b]` = (first chunk, n, k, select all)).
//
// Two ways to a step of a block that keeps k of its n entries. The general
// one (mode FULL), whatever the data:
//
//   <base>_update : every entry: state update, the direction dir_i, the key
//                   bits(|score_i|) and the histogram of the key's top digit.
//   radix_pick    : one CUDA block per parameter block: choose the digit,
//                   update (prefix, mask, need); the shift-24 pass starts the
//                   state, the shift-0 pass notes whether every tie is taken
//                   and records the threshold τ in the block's forecast.
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
// and the single pass (mode SINGLE), once the block has two past thresholds:
// forecast_plan brackets the next threshold, K̂ = 2·τ_{t−1} − τ_{t−2} in key
// space, by the band (lo, hi] = K̂ ∓ max(2·E, 2^13) (E an envelope of the past
// forecast errors), and then
//
//   <base>_update : every entry: state update and key; key > hi: old p logged,
//                   p ← p·decay − d at once; key in (lo, hi]: (index, key, d)
//                   appended to the block's candidates; counts of both.
//   forecast_check: the band holds the k-th largest key K iff
//                   above < k ≤ above + within (and the candidates fit): HIT,
//                   else MISS.
//   cand_hist/pick: HIT: among the candidates, the need = k − above largest
//                   keys, by a radix select on key − lo − 1 in at most two
//                   11-bit digits: every candidate above τ is taken, and of
//                   those equal to τ the ones of smallest index (all of them,
//                   or ranked by index when at most CAND_TIES tie; more make
//                   the block a MISS).
//   cand_apply    : p ← p·decay − d on the chosen candidates.
//
// A MISS block's logged values are restored (forecast_restore), its dir and
// keys recomputed from the stored state (<base>_update, phase 1) and the
// general way runs on it. Either way the selection is the general way's, bit
// for bit; the forecast changes the speed, never the result. The host reads
// back which ways are needed (forecast_check's flags) once per step.
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
#define ALL_LANES 0xffffffffu

// Per parameter block, between passes. After the last pass `prefix` is τ,
// `need` the number of keys equal to τ still to select, and `all_ties` is set
// when that is every key equal to τ (no tie ranking needed).
struct RadixState {
    unsigned int prefix;
    unsigned int mask;
    unsigned int need;
    unsigned int all_ties;
};

// How a block's step runs (Forecast::mode).
#define MODE_FULL 0
#define MODE_SINGLE 1
#define MODE_HIT 2
#define MODE_MISS 3

// The smallest half-width of the forecast's band: 2^13 keys, 1/1024 octave
// (the CPU's: one 2^14-bucket histogram bucket shifted right by 4).
#define MIN_HALF 8192LL
// The widest band, 2^22 keys (half an octave): candidates then rank in two
// 11-bit digits of key − lo − 1.
#define MAX_BAND 4194304LL
#define CAND_DIGIT 11
#define CAND_BINS 2048
// Candidates per CUDA block in cand_hist and cand_apply.
#define CAND_TILE 2048
// The most candidates equal to τ that cand_pick ranks by index (more: MISS).
#define CAND_TIES 1024
#define KEY_MAX 0x7fffffffLL

// A block's forecast of its threshold and this step's single-pass counts
// (20 words; `GpuOptimizer::forecast_counts` reads hits and misses).
struct Forecast {
    unsigned int last, prev, known, err;     // τ_{t−1}, τ_{t−2}, how many, envelope E
    unsigned int lo, hi, mode, cooldown;     // band (lo, hi], MODE_*, steps left in FULL
    unsigned int above, within, need, shift; // keys > hi, in the band; still to take; digit shift
    unsigned int bin, streak, hits, misses;  // chosen digits; consecutive misses; counters
    unsigned int tie_cut, pad0, pad1, pad2;  // the largest index taken among keys equal to τ
};

// The single pass's lists of a block are split into lanes, min(LANES, its
// chunks), each with its own counter (a 64-bit word: above | within << 32)
// and its own part of the log and of the candidates: a warp takes its slots
// with one atomic on the counter of lane (warp index mod lanes), so that no
// counter serves more than 1/LANES of the block's warps.
#define LANES 16

__device__ __forceinline__ unsigned int lanes_of(uint4 in) {
    return min((unsigned int)LANES, (in.y + CHUNK - 1) / CHUNK);
}

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

// Whether block b takes the general way this step (it is filtered and its
// forecast did not hold its threshold).
__device__ __forceinline__ bool general_way(const uint4* info, const Forecast* fc, unsigned int b) {
    return !info[b].w && fc[b].mode != MODE_HIT;
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

// Records this step's threshold τ (the k-th largest key): the error envelope
// E ← max(|τ − K̂|, E/2), the last two thresholds, and the outcome of the
// single pass (a miss backs off: 0, 1, 3, … 31 steps without it).
__device__ void observe(Forecast* f, unsigned int tau) {
    if (f->known >= 1) {
        long long pred = f->known >= 2 ? 2LL * f->last - (long long)f->prev : (long long)f->last;
        long long e = llabs((long long)tau - pred);
        unsigned int eu = e > 0xffffffffLL ? 0xffffffffu : (unsigned int)e;
        f->err = max(eu, f->err / 2);
    }
    f->prev = f->last;
    f->last = tau;
    f->known = min(f->known + 1u, 2u);
    if (f->mode == MODE_MISS) {
        f->misses += 1;
        f->streak = min(f->streak + 1u, 6u);
        f->cooldown = (1u << (f->streak - 1u)) - 1u;
    } else if (f->mode == MODE_HIT) {
        f->hits += 1;
        f->streak = 0;
    }
}

// PyTorch's lerp: a + w·(b − a) for w < ½, else b − (b − a)·(1 − w).
__device__ __forceinline__ float lerp(float a, float b, float w, float omw) {
    return (w < 0.5f) ? a + w * (b - a) : b - (b - a) * omw;
}

// Adam's and NAdam's moments (PyTorch): m ← lerp(m, g, 1 − β1),
// v ← β2·v + (1 − β2)·g², stored in phase 0; phase 1 keeps the stored ones.
__device__ __forceinline__ void advance_moments(
    float* m, float* v, size_t i, int phase, float gi, float w1, float omw1, float beta2,
    float omb2, float& mi, float& vi)
{
    if (phase == 0) {
        mi = lerp(mi, gi, w1, omw1);
        vi = vi * beta2 + omb2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
    }
}

// The buffers every `<base>_update` kernel ends with (UpdateOutputs::push).
#define OUT_PARAMS \
    float* __restrict__ dir, unsigned int* __restrict__ key, unsigned int* __restrict__ hist, \
    unsigned int* __restrict__ sel, const unsigned int* __restrict__ chunk_block, \
    const uint4* __restrict__ info, Forecast* __restrict__ fc, const uint4* __restrict__ fcinfo, \
    unsigned long long* __restrict__ lanes, unsigned int* __restrict__ log_i, float* __restrict__ log_p, \
    unsigned int* __restrict__ cand_i, unsigned int* __restrict__ cand_k, \
    float* __restrict__ cand_d, int phase
#define OUT_ARGS dir, key, hist, sel, chunk_block, info, fc, fcinfo, lanes, log_i, log_p, cand_i, cand_k, cand_d, phase

// The start of every update kernel: phase 0 is the step, phase 1 recomputes
// dir and the keys of MISS blocks from their stored state (the others return).
#define UPDATE_PROLOGUE \
    __shared__ unsigned int sh[256]; \
    Place pl = place(chunk_block, info); \
    if (phase == 1 && (pl.info.w || fc[pl.b].mode != MODE_MISS)) return; \
    hist_init(sh); \
    float pi = 0.0f, d = 0.0f, score = 0.0f;

// The end of every update kernel (all threads of the CUDA block call it; the
// block's mode is uniform):
//   selects every entry: p ← p·decay − d now;
//   FULL, or phase 1:    keep d, the score's key and its top digit;
//   SINGLE:              key > hi: log the old p, p ← p·decay − d; key in
//                        (lo, hi]: append a candidate. The CUDA block takes
//                        its slots in its lane's lists with one 64-bit atomic
//                        (lane = chunk mod lanes); a log slot beyond the
//                        lane's part is a miss anyway (the check sees the
//                        count), so the entry is left alone.
// The selection bits of the entries applied here are written per warp.
__device__ __forceinline__ void finish(
    const Place& pl, float* p, float pi, float d, float score, float decay,
    unsigned int* sh, OUT_PARAMS)
{
    __shared__ unsigned int warp_n[2][CHUNK / 32];
    __shared__ unsigned long long base_n;
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    if (pl.info.w) {
        if (pl.valid) p[pl.i] = pi * decay - d;
        unsigned int bits = __ballot_sync(ALL_LANES, pl.valid);
        if (lane == 0) sel[pl.i >> 5] = bits;
        return;
    }
    if (phase == 1 || fc[pl.b].mode != MODE_SINGLE) {
        if (pl.valid) {
            dir[pl.i] = d;
            unsigned int k = abs_key(score);
            key[pl.i] = k;
            atomicAdd(&sh[k >> 24], 1u);
        }
        hist_flush(sh, hist + 256 * pl.b);
        return;
    }
    const Forecast* f = fc + pl.b;
    unsigned int kk = abs_key(score);
    bool up = pl.valid && kk > f->hi;
    bool cand = pl.valid && !up && kk > f->lo;
    unsigned int bu = __ballot_sync(ALL_LANES, up);
    unsigned int bc = __ballot_sync(ALL_LANES, cand);
    if (lane == 0) {
        warp_n[0][w] = __popc(bu);
        warp_n[1][w] = __popc(bc);
    }
    __syncthreads();
    unsigned int l = (blockIdx.x - pl.info.x) % lanes_of(pl.info);
    if (threadIdx.x == 0) {
        unsigned int nu = 0, nc = 0;
        for (int j = 0; j < CHUNK / 32; ++j) {
            unsigned int a = warp_n[0][j], c = warp_n[1][j];
            warp_n[0][j] = nu;
            warp_n[1][j] = nc;
            nu += a;
            nc += c;
        }
        unsigned long long add = (unsigned long long)nu | ((unsigned long long)nc << 32);
        base_n = add ? atomicAdd(&lanes[pl.b * LANES + l], add) : 0ull;
    }
    __syncthreads();
    unsigned long long old = base_n;
    unsigned int before = (1u << lane) - 1u;
    bool applied = false;
    if (up || cand) {
        uint4 fi = fcinfo[pl.b];
        if (up) {
            unsigned int slot = (unsigned int)old + warp_n[0][w] + __popc(bu & before);
            if (slot < fi.z) {
                unsigned int at = fi.x + l * fi.z + slot;
                log_i[at] = (unsigned int)pl.i;
                log_p[at] = pi;
                p[pl.i] = pi * decay - d;
                applied = true;
            }
        } else {
            unsigned int slot = (unsigned int)(old >> 32) + warp_n[1][w] + __popc(bc & before);
            if (slot < fi.w) {
                unsigned int at = fi.y + l * fi.w + slot;
                cand_i[at] = (unsigned int)pl.i;
                cand_k[at] = kk;
                cand_d[at] = d;
            }
        }
    }
    unsigned int bits = __ballot_sync(ALL_LANES, applied);
    if (lane == 0) sel[pl.i >> 5] = bits;
}

// Adam / AdamW / AMSGrad (PyTorch's definitions). `l2` is the coupled weight
// decay (0 when decoupled); `step_size` = lr / (1 − β1^t); `bc2_sqrt` =
// sqrt(1 − β2^t), `bc2` = 1 − β2^t (the mv/gv scores divide v by bc2 before
// the square root, as the CPU and the reference do).
extern "C" __global__ void adam_update(
    float* __restrict__ p, const float* __restrict__ g,
    float* __restrict__ m, float* __restrict__ v, float* __restrict__ vmax,
    OUT_PARAMS,
    float w1, float omw1, float beta2, float omb2, float eps, float l2, float step_size,
    float bc1, float bc2_sqrt, float bc2, float decay, int amsgrad, int score_kind)
{
    UPDATE_PROLOGUE
    if (pl.valid) {
        size_t i = pl.i;
        // Every load first, so that they are in flight together.
        pi = p[i];
        float gi = g[i], mi = m[i], vi = v[i], vd = amsgrad ? vmax[i] : 0.0f;
        if (l2 != 0.0f) gi = gi + l2 * pi;
        advance_moments(m, v, i, phase, gi, w1, omw1, beta2, omb2, mi, vi);
        if (phase == 0 && amsgrad) {
            vd = vd > vi ? vd : vi;
            vmax[i] = vd;
        }
        if (!amsgrad) vd = vi;
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
    finish(pl, p, pi, d, score, decay, sh, OUT_ARGS);
}

// NAdam (PyTorch): c_g = lr·(1 − μ_t)/(1 − Πμ), c_m = lr·μ_{t+1}/(1 − Πμ·μ_{t+1}),
// computed on the host; `bc2` = 1 − β2^t. The CPU adds the two terms to θ
// one after the other; here d = c_g·g/D + c_m·m/D (one rounding apart).
extern "C" __global__ void nadam_update(
    float* __restrict__ p, const float* __restrict__ g,
    float* __restrict__ m, float* __restrict__ v,
    OUT_PARAMS,
    float w1, float omw1, float beta2, float omb2, float eps, float l2, float c_g, float c_m,
    float bc1, float bc2, float decay, int score_kind)
{
    UPDATE_PROLOGUE
    if (pl.valid) {
        size_t i = pl.i;
        pi = p[i];
        float gi = g[i], mi = m[i], vi = v[i];
        if (l2 != 0.0f) gi = gi + l2 * pi;
        advance_moments(m, v, i, phase, gi, w1, omw1, beta2, omb2, mi, vi);
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
    finish(pl, p, pi, d, score, decay, sh, OUT_ARGS);
}

// RMSprop (PyTorch): square average, optional centering and momentum buffer.
// `oma` = 1 − α (host f64).
extern "C" __global__ void rmsprop_update(
    float* __restrict__ p, const float* __restrict__ g,
    float* __restrict__ sq, float* __restrict__ gavg, float* __restrict__ buf,
    OUT_PARAMS,
    float alpha, float oma, float omw, float eps, float l2, float lr, float momentum,
    int centered, int score_kind)
{
    UPDATE_PROLOGUE
    if (pl.valid) {
        size_t i = pl.i;
        pi = p[i];
        float gi = g[i], si = sq[i];
        float ga = centered ? gavg[i] : 0.0f, b = momentum > 0.0f ? buf[i] : 0.0f;
        if (l2 != 0.0f) gi = gi + l2 * pi;
        if (phase == 0) {
            si = si * alpha + oma * gi * gi;
            sq[i] = si;
        }
        float avg;
        if (centered) {
            if (phase == 0) {
                ga = lerp(ga, gi, oma, omw);
                gavg[i] = ga;
            }
            avg = sqrtf(si + (-ga) * ga) + eps;
        } else {
            avg = sqrtf(si) + eps;
        }
        if (momentum > 0.0f) {
            if (phase == 0) b = b * momentum + gi / avg;
            if (phase == 0) buf[i] = b;
            d = lr * b;
            score = b;
        } else {
            d = lr * gi / avg;
            score = gi;
        }
        if (score_kind == SCORE_GRADIENT) score = gi;
        if (score_kind == SCORE_GV) score = fabsf(gi) / avg;
    }
    finish(pl, p, pi, d, score, 1.0f, sh, OUT_ARGS);
}

// SGD (PyTorch): momentum buffer (= g on the first step), dampening
// (`omd` = 1 − dampening, host f64), Nesterov.
extern "C" __global__ void sgd_update(
    float* __restrict__ p, const float* __restrict__ g, float* __restrict__ buf,
    OUT_PARAMS,
    float lr, float l2, float momentum, float omd, int nesterov, int first_step,
    int score_kind)
{
    UPDATE_PROLOGUE
    if (pl.valid) {
        size_t i = pl.i;
        pi = p[i];
        float gi = g[i], b = momentum != 0.0f ? buf[i] : 0.0f;
        if (l2 != 0.0f) gi = gi + l2 * pi;
        d = gi;
        score = gi;
        if (momentum != 0.0f) {
            if (phase == 0) {
                b = first_step ? gi : b * momentum + omd * gi;
                buf[i] = b;
            }
            d = nesterov ? gi + momentum * b : b;
            if (score_kind == SCORE_MOMENTUM) score = b;
        }
        d = lr * d;
    }
    finish(pl, p, pi, d, score, 1.0f, sh, OUT_ARGS);
}

// Lion (lion-pytorch): d = lr·sign(β1·m + (1 − β1)·g), then m ← β2·m + (1 − β2)·g.
// The momentum score is the updated m. Its step does not split into a state
// update and a step from the updated state (d needs the old m), so it never
// runs the single pass nor phase 1.
extern "C" __global__ void lion_update(
    float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
    OUT_PARAMS,
    float lr, float beta1, float omb1, float beta2, float omb2, float decay, int score_kind)
{
    UPDATE_PROLOGUE
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
    finish(pl, p, pi, d, score, decay, sh, OUT_ARGS);
}

// Histogram of digit `shift` among the keys that match their block's prefix.
// A CUDA block (CHUNK threads) reads HIST_CHUNKS consecutive chunks and
// flushes its shared histogram whenever the parameter block changes.
extern "C" __global__ void radix_hist(
    const unsigned int* __restrict__ key, const RadixState* __restrict__ st,
    const unsigned int* __restrict__ chunk_block, const uint4* __restrict__ info,
    const Forecast* __restrict__ fc, int chunks, int shift, unsigned int* __restrict__ hist)
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
            if (general_way(info, fc, cur)) hist_flush(sh, hist + 256 * cur);
            __syncthreads();
            hist_init(sh);
            cur = b;
        }
        if (!general_way(info, fc, b)) continue;
        uint4 in = info[b];
        unsigned int local = (unsigned int)(c - (int)in.x) * CHUNK + threadIdx.x;
        if (local < in.y) {
            RadixState s = st[b];
            unsigned int k = key[(size_t)c * CHUNK + threadIdx.x];
            if ((k & s.mask) == s.prefix) atomicAdd(&sh[(k >> shift) & 255u], 1u);
        }
    }
    if (general_way(info, fc, cur)) hist_flush(sh, hist + 256 * cur);
}

// One CUDA block of 256 threads per parameter block: the digit whose
// cumulative count from the top reaches `need` (a suffix scan in shared
// memory), then the state's update, and the histogram cleared for the next
// pass. The first pass (shift 24) starts the state: prefix 0, mask 0, need
// k. After the last pass (shift 0) the chosen bin counts exactly the keys
// equal to τ, so `all_ties` says whether every one of them is taken, and τ
// is the block's threshold for the forecast.
extern "C" __global__ void radix_pick(
    RadixState* st, unsigned int* hist, const uint4* __restrict__ info, Forecast* fc, int shift)
{
    __shared__ unsigned int suffix[257];
    int b = blockIdx.x, d = threadIdx.x;
    if (!general_way(info, fc, b)) return;
    uint4 in = info[b];
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
        if (shift == 0) observe(fc + b, s.prefix);
    }
    h[d] = 0;
}

// Per chunk, the number of keys equal to τ (their block's prefix); a CUDA
// block (CHUNK threads) counts HIST_CHUNKS consecutive chunks.
extern "C" __global__ void tie_count(
    const unsigned int* __restrict__ key, const RadixState* __restrict__ st,
    const unsigned int* __restrict__ chunk_block, const uint4* __restrict__ info,
    const Forecast* __restrict__ fc, int chunks, unsigned int* __restrict__ chunk_counts)
{
    int c0 = blockIdx.x * HIST_CHUNKS;
    int c1 = min(c0 + HIST_CHUNKS, chunks);
    for (int c = c0; c < c1; ++c) {
        unsigned int b = chunk_block[c];
        uint4 in = info[b];
        RadixState s = st[b];
        // Uniform across the CUDA block: every thread reads the same c.
        if (!general_way(info, fc, b) || s.all_ties) continue;
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
    unsigned int* counts, const RadixState* __restrict__ st, const uint4* __restrict__ info,
    const Forecast* __restrict__ fc)
{
    __shared__ unsigned int warp_sum[32];
    __shared__ unsigned int carry;
    uint4 in = info[blockIdx.x];
    if (!general_way(info, fc, blockIdx.x) || st[blockIdx.x].all_ties) return;
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
            unsigned int y = __shfl_up_sync(ALL_LANES, x, o);
            if (lane >= o) x += y;
        }
        if (lane == 31) warp_sum[w] = x;
        __syncthreads();
        if (w == 0) {
            unsigned int ws = (lane < warps) ? warp_sum[lane] : 0u;
            for (int o = 1; o < 32; o <<= 1) {
                unsigned int y = __shfl_up_sync(ALL_LANES, ws, o);
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

// p ← p·decay − dir on the selected entries of the blocks that take the
// general way; p ← p·decay on the others under scope All (`decay_all`).
// Blocks that select every entry were applied by the update kernel, HIT
// blocks by the single pass and cand_apply.
extern "C" __global__ void masked_apply(
    float* __restrict__ p, const float* __restrict__ dir, const unsigned int* __restrict__ key,
    const RadixState* __restrict__ st, const unsigned int* __restrict__ chunk_offsets,
    const unsigned int* __restrict__ chunk_block, const uint4* __restrict__ info,
    const Forecast* __restrict__ fc, float decay, int decay_all, unsigned int* __restrict__ sel)
{
    __shared__ unsigned int warp_eq[CHUNK / 32];
    Place pl = place(chunk_block, info);
    if (!general_way(info, fc, pl.b)) return;
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    RadixState s = st[pl.b];
    unsigned int k = pl.valid ? key[pl.i] : 0u;
    unsigned int eq = (pl.valid && k == s.prefix) ? 1u : 0u;
    unsigned int ballot = __ballot_sync(ALL_LANES, eq);
    if (lane == 0) warp_eq[w] = __popc(ballot);
    __syncthreads();
    bool take = pl.valid && (k > s.prefix || (eq && s.all_ties));
    if (eq && !s.all_ties) {
        unsigned int rank = chunk_offsets[blockIdx.x];
        for (int j = 0; j < w; ++j) rank += warp_eq[j];
        rank += __popc(ballot & ((1u << lane) - 1u));
        take = rank < s.need;
    }
    if (take) p[pl.i] = p[pl.i] * decay - dir[pl.i];
    else if (pl.valid && decay_all) p[pl.i] = p[pl.i] * decay;
    unsigned int bits = __ballot_sync(ALL_LANES, take);
    if (lane == 0) sel[pl.i >> 5] = bits;
}

// One thread per parameter block, before the update: this step's mode and,
// for the single pass, the band (lo, hi] around K̂ = 2·τ_{t−1} − τ_{t−2}
// with half-width max(2·E, MIN_HALF), clamped to the keys; FULL without two
// past thresholds, while backing off after a miss, without `allow` (the base
// or the decay scope has no single pass), or when the band would be empty
// or wider than MAX_BAND. Also clears the step's counts and the flags.
extern "C" __global__ void forecast_plan(
    Forecast* fc, unsigned long long* __restrict__ lanes, const uint4* __restrict__ info,
    int blocks, int allow, unsigned int* __restrict__ flags)
{
    int b = blockIdx.x * blockDim.x + threadIdx.x;
    if (b == 0) {
        for (int j = 0; j < 4; ++j) flags[j] = 0;
    }
    if (b >= blocks || info[b].w) return;
    for (int l = 0; l < LANES; ++l) lanes[b * LANES + l] = 0ull;
    Forecast f = fc[b];
    f.above = 0;
    f.within = 0;
    bool ok = allow && f.known >= 2 && f.cooldown == 0;
    if (f.cooldown > 0) f.cooldown -= 1;
    f.mode = MODE_FULL;
    if (ok) {
        long long center = 2LL * f.last - (long long)f.prev;
        long long half = max(2LL * (long long)f.err, MIN_HALF);
        long long lo = min(max(center - half, 0LL), KEY_MAX);
        long long hi = min(max(center + half, 0LL), KEY_MAX);
        long long range = hi - lo;
        if (range >= 1 && range <= MAX_BAND) {
            int bits = range == 1 ? 0 : 64 - __clzll(range - 1);
            f.mode = MODE_SINGLE;
            f.lo = (unsigned int)lo;
            f.hi = (unsigned int)hi;
            f.shift = bits > CAND_DIGIT ? bits - CAND_DIGIT : 0;
        }
    }
    fc[b] = f;
}

// One thread per parameter block, after the update: a SINGLE block's band
// holds K iff above < k ≤ above + within (sums over its lanes) and every
// lane's entries fit its part of the log and of the candidates (HIT, with
// need = k − above), else MISS. flags[0]: some block takes the general way;
// flags[1]: some block is a HIT; flags[2]: some block is a MISS.
extern "C" __global__ void forecast_check(
    Forecast* fc, const unsigned long long* __restrict__ lanes, const uint4* __restrict__ info,
    const uint4* __restrict__ fcinfo, int blocks, unsigned int* flags)
{
    int b = blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= blocks || info[b].w) return;
    Forecast* f = fc + b;
    if (f->mode != MODE_SINGLE) {
        atomicOr(&flags[0], 1u);
        return;
    }
    uint4 in = info[b], fi = fcinfo[b];
    unsigned int above = 0, within = 0;
    bool fits = true;
    for (unsigned int l = 0; l < lanes_of(in); ++l) {
        unsigned long long v = lanes[b * LANES + l];
        unsigned int a = (unsigned int)v, c = (unsigned int)(v >> 32);
        above += a;
        within += c;
        fits = fits && a <= fi.z && c <= fi.w;
    }
    f->above = above;
    f->within = within;
    unsigned int k = in.z;
    if (fits && above < k && above + within >= k) {
        f->mode = MODE_HIT;
        f->need = k - above;
        atomicOr(&flags[1], 1u);
    } else {
        f->mode = MODE_MISS;
        atomicOr(&flags[0], 1u);
        atomicOr(&flags[2], 1u);
    }
}

// A candidate tile: its block and lane (`tile_lane[t]` = b·LANES + lane),
// the lane's list and the tile's range in it (empty when start ≥ end).
struct Tile {
    unsigned int b;
    unsigned int list;
    unsigned int start;
    unsigned int end;
};

__device__ __forceinline__ Tile tile_of(
    const unsigned int* tile_lane, const uint4* fcinfo, const unsigned long long* lanes)
{
    Tile t;
    unsigned int bl = tile_lane[blockIdx.x];
    t.b = bl / LANES;
    uint4 fi = fcinfo[t.b];
    t.list = fi.y + (bl % LANES) * fi.w;
    t.start = blockIdx.x * CAND_TILE - t.list;
    t.end = min(t.start + CAND_TILE, (unsigned int)(lanes[bl] >> 32));
    return t;
}

// Histogram of a digit of rel = key − lo − 1 over a HIT block's candidates:
// level 0 the digit rel >> shift, level 1 (when shift > 0) the low `shift`
// bits among the candidates whose level-0 digit is the chosen one. A CUDA
// block reads one tile of CAND_TILE candidates of one lane.
extern "C" __global__ void cand_hist(
    const unsigned int* __restrict__ cand_k, const Forecast* __restrict__ fc,
    const unsigned long long* __restrict__ lanes, const unsigned int* __restrict__ tile_lane,
    const uint4* __restrict__ fcinfo, int level, unsigned int* __restrict__ chist)
{
    __shared__ unsigned int sh[CAND_BINS];
    Tile t = tile_of(tile_lane, fcinfo, lanes);
    Forecast f = fc[t.b];
    if (f.mode != MODE_HIT || (level == 1 && f.shift == 0) || t.start >= t.end) return;
    for (int i = threadIdx.x; i < CAND_BINS; i += blockDim.x) sh[i] = 0;
    __syncthreads();
    for (unsigned int j = t.start + threadIdx.x; j < t.end; j += blockDim.x) {
        unsigned int rel = cand_k[t.list + j] - f.lo - 1u;
        unsigned int dig;
        if (level == 0) {
            dig = rel >> f.shift;
        } else {
            if ((rel >> f.shift) != f.bin) continue;
            dig = rel & ((1u << f.shift) - 1u);
        }
        atomicAdd(&sh[dig], 1u);
    }
    __syncthreads();
    unsigned int* h = chist + CAND_BINS * t.b;
    for (int i = threadIdx.x; i < CAND_BINS; i += blockDim.x) {
        if (sh[i]) atomicAdd(&h[i], sh[i]);
    }
}

// One CUDA block of 1024 threads per HIT block: the digit d whose suffix
// count reaches `need` (Σ_{e > d} < need ≤ Σ_{e ≥ d}). Level 0 with
// shift > 0 keeps d for level 1; the last level gives τ − lo − 1 in `bin`.
// The block's selection is then the candidates with key > τ and, of the
// `count` candidates equal to τ, the `rest` of smallest index: all of them
// (tie_cut = ∞), or, when count ≤ CAND_TIES, those up to the rest-th
// smallest index (tie_cut), found by ranking the tied indices; more ties
// make the block a MISS. Records τ; clears the histogram.
extern "C" __global__ void cand_pick(
    Forecast* fc, unsigned int* chist, const uint4* __restrict__ info,
    const uint4* __restrict__ fcinfo, const unsigned long long* __restrict__ lanes,
    const unsigned int* __restrict__ cand_i, const unsigned int* __restrict__ cand_k,
    int level, unsigned int* flags)
{
    __shared__ unsigned int suf[CAND_BINS + 1];
    __shared__ unsigned int pick[4];
    __shared__ unsigned int ties[CAND_TIES];
    __shared__ unsigned int nties;
    int b = blockIdx.x, t = threadIdx.x;
    uint4 in = info[b];
    if (in.w) return;
    Forecast* f = fc + b;
    unsigned int mode = f->mode, shift = f->shift, need = f->need, bin = f->bin, lo = f->lo;
    if (mode != MODE_HIT || (level == 1 && shift == 0)) return;
    unsigned int* h = chist + CAND_BINS * b;
    for (int i = t; i < CAND_BINS; i += blockDim.x) suf[i] = h[i];
    if (t == 0) {
        suf[CAND_BINS] = 0;
        nties = 0;
        pick[3] = 0xffffffffu;
    }
    __syncthreads();
    for (int step = 1; step < CAND_BINS; step <<= 1) {
        unsigned int add[CAND_BINS / 1024];
        for (int r = 0; r < CAND_BINS / 1024; ++r) {
            int d = t + r * 1024;
            add[r] = (d + step < CAND_BINS) ? suf[d + step] : 0u;
        }
        __syncthreads();
        for (int r = 0; r < CAND_BINS / 1024; ++r) suf[t + r * 1024] += add[r];
        __syncthreads();
    }
    for (int r = 0; r < CAND_BINS / 1024; ++r) {
        unsigned int d = t + r * 1024;
        if (suf[d + 1] < need && suf[d] >= need) {
            pick[0] = d;
            pick[1] = need - suf[d + 1];
            pick[2] = suf[d] - suf[d + 1];
        }
    }
    for (int i = t; i < CAND_BINS; i += blockDim.x) h[i] = 0;
    __syncthreads();
    unsigned int d = pick[0], rest = pick[1], count = pick[2];
    if (level == 0 && shift > 0) {
        if (t == 0) {
            f->bin = d;
            f->need = rest;
        }
        return;
    }
    unsigned int tau_rel = level == 0 ? d : ((bin << shift) | d);
    if (rest < count && count > CAND_TIES) {
        if (t == 0) {
            f->mode = MODE_MISS;
            atomicOr(&flags[0], 1u);
            atomicOr(&flags[2], 1u);
        }
        return;
    }
    if (rest < count) {
        // The flat indices of the candidates equal to τ (exactly `count`).
        uint4 fi = fcinfo[b];
        for (unsigned int l = 0; l < lanes_of(in); ++l) {
            unsigned int list = fi.y + l * fi.w;
            unsigned int n = (unsigned int)(lanes[b * LANES + l] >> 32);
            for (unsigned int j = t; j < n; j += blockDim.x) {
                if (cand_k[list + j] - lo - 1u == tau_rel) ties[atomicAdd(&nties, 1u)] = cand_i[list + j];
            }
        }
        __syncthreads();
        for (unsigned int j = t; j < count; j += blockDim.x) {
            unsigned int x = ties[j], smaller = 0;
            for (unsigned int q = 0; q < count; ++q) smaller += ties[q] < x;
            if (smaller == rest - 1) pick[3] = x;
        }
    }
    __syncthreads();
    if (t == 0) {
        f->bin = tau_rel;
        f->need = rest;
        f->tie_cut = pick[3];
        observe(f, lo + 1u + tau_rel);
    }
}

// p ← p·decay − d on a HIT block's chosen candidates (key > τ, or key = τ
// and index ≤ tie_cut), and their selection bits set. A CUDA block reads
// one tile of one lane.
extern "C" __global__ void cand_apply(
    float* __restrict__ p, const unsigned int* __restrict__ cand_i,
    const unsigned int* __restrict__ cand_k, const float* __restrict__ cand_d,
    const Forecast* __restrict__ fc, const unsigned long long* __restrict__ lanes,
    const unsigned int* __restrict__ tile_lane, const uint4* __restrict__ fcinfo, float decay,
    unsigned int* __restrict__ sel)
{
    Tile t = tile_of(tile_lane, fcinfo, lanes);
    Forecast f = fc[t.b];
    if (f.mode != MODE_HIT || t.start >= t.end) return;
    for (unsigned int j = t.start + threadIdx.x; j < t.end; j += blockDim.x) {
        unsigned int at = t.list + j;
        unsigned int rel = cand_k[at] - f.lo - 1u, i = cand_i[at];
        if (rel > f.bin || (rel == f.bin && i <= f.tie_cut)) {
            p[i] = p[i] * decay - cand_d[at];
            atomicOr(&sel[i >> 5], 1u << (i & 31u));
        }
    }
}

// A MISS block's single-pass updates undone: the logged θ of each lane
// restored (one row of CUDA blocks per parameter block, gridDim.y along it).
extern "C" __global__ void forecast_restore(
    float* __restrict__ p, const unsigned int* __restrict__ log_i,
    const float* __restrict__ log_p, const Forecast* __restrict__ fc,
    const unsigned long long* __restrict__ lanes, const uint4* __restrict__ info,
    const uint4* __restrict__ fcinfo)
{
    unsigned int b = blockIdx.x;
    uint4 in = info[b];
    if (in.w || fc[b].mode != MODE_MISS) return;
    uint4 fi = fcinfo[b];
    for (unsigned int l = 0; l < lanes_of(in); ++l) {
        unsigned int n = min((unsigned int)lanes[b * LANES + l], fi.z);
        unsigned int base = fi.x + l * fi.z;
        for (unsigned int j = blockIdx.y * blockDim.x + threadIdx.x; j < n; j += gridDim.y * blockDim.x) {
            p[log_i[base + j]] = log_p[base + j];
        }
    }
}
