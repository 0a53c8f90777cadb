// Filtered optimizer step on the GPU (f32): state update fused with the
// score key and the first radix histogram, exact per-block top-k by radix
// select over the keys' bit patterns, tie ranking by index, and the masked
// apply. One launch sequence per parameter block; the selection state lives
// in device memory, so a step needs no host round trip.
//
// Kernels (see src/cuda/radix.rs for the host model they are tested against):
//   <base>_update : every entry: state update, direction dir_i, key_i = bits(|score_i|),
//                   histogram of the key's top digit.
//   radix_hist    : histogram of digit `shift` among keys matching the prefix.
//   radix_pick    : one thread: choose the digit, update (prefix, mask, need).
//   tie_count     : per chunk of blockDim entries, how many keys equal τ.
//   tie_scan      : one block: exclusive scan of the chunk counts.
//   masked_apply  : p ← p·decay − dir on selected entries; p ← p·decay elsewhere
//                   under weight-decay scope All.

#define SCORE_MOMENTUM 0
#define SCORE_GRADIENT 1
#define SCORE_MV 2
#define SCORE_GV 3
#define SCORE_NONE 4

struct RadixState {
    unsigned int prefix;
    unsigned int mask;
    unsigned int need;
};

__device__ __forceinline__ unsigned int abs_key(float x) {
    return __float_as_uint(x) & 0x7fffffffu;
}

// Accumulates the top digit of `key` into a shared histogram, flushed by the caller.
__device__ __forceinline__ void hist_top(unsigned int* sh, unsigned int key) {
    atomicAdd(&sh[key >> 24], 1u);
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

// Adam / AdamW / AMSGrad (PyTorch's definitions). `l2` is the coupled weight
// decay (0 for decoupled); `step_size` = lr / (1 − β1^t); `bc2_sqrt` = sqrt(1 − β2^t),
// `bc2` = 1 − β2^t (the mv/gv scores divide v by bc2 before the square root,
// as the CPU and the reference do).
extern "C" __global__ void adam_update(
    const float* __restrict__ p, const float* __restrict__ g,
    float* __restrict__ m, float* __restrict__ v, float* __restrict__ vmax,
    float* __restrict__ dir, unsigned int* __restrict__ key, unsigned int* __restrict__ hist,
    int n, float beta1, float beta2, float eps, float l2, float step_size,
    float bc1, float bc2_sqrt, float bc2, int amsgrad, int score_kind)
{
    __shared__ unsigned int sh[256];
    hist_init(sh);
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float gi = g[i];
        if (l2 != 0.0f) gi = gi + l2 * p[i];
        float mi = m[i] + (1.0f - beta1) * (gi - m[i]);
        float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float vd = vi;
        if (amsgrad) {
            vd = fmaxf(vmax[i], vi);
            vmax[i] = vd;
        }
        float denom = sqrtf(vd) / bc2_sqrt + eps;
        dir[i] = step_size * (mi / denom);
        float score;
        switch (score_kind) {
            case SCORE_MOMENTUM: score = mi; break;
            case SCORE_GRADIENT: score = gi; break;
            case SCORE_MV: score = (mi / bc1) / (sqrtf(vd / bc2) + eps); break;
            case SCORE_GV: score = gi / (sqrtf(vd / bc2) + eps); break;
            default: score = 0.0f;
        }
        if (score_kind != SCORE_NONE) {
            unsigned int k = abs_key(score);
            key[i] = k;
            hist_top(sh, k);
        }
    }
    hist_flush(sh, hist);
}

// NAdam (PyTorch): c_g = lr·(1 − μ_t)/(1 − Πμ), c_m = lr·μ_{t+1}/(1 − Πμ·μ_{t+1}),
// computed on the host; `bc2` = 1 − β2^t.
extern "C" __global__ void nadam_update(
    const float* __restrict__ p, const float* __restrict__ g,
    float* __restrict__ m, float* __restrict__ v,
    float* __restrict__ dir, unsigned int* __restrict__ key, unsigned int* __restrict__ hist,
    int n, float beta1, float beta2, float eps, float l2, float c_g, float c_m,
    float bc1, float bc2, int score_kind)
{
    __shared__ unsigned int sh[256];
    hist_init(sh);
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float gi = g[i];
        if (l2 != 0.0f) gi = gi + l2 * p[i];
        float mi = m[i] + (1.0f - beta1) * (gi - m[i]);
        float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float denom = sqrtf(vi / bc2) + eps;
        dir[i] = c_g * (gi / denom) + c_m * (mi / denom);
        float score;
        switch (score_kind) {
            case SCORE_MOMENTUM: score = mi; break;
            case SCORE_GRADIENT: score = gi; break;
            case SCORE_MV: score = (mi / bc1) / denom; break;
            case SCORE_GV: score = gi / denom; break;
            default: score = 0.0f;
        }
        if (score_kind != SCORE_NONE) {
            unsigned int k = abs_key(score);
            key[i] = k;
            hist_top(sh, k);
        }
    }
    hist_flush(sh, hist);
}

// RMSprop (PyTorch): square average, optional centering and momentum buffer.
extern "C" __global__ void rmsprop_update(
    const float* __restrict__ p, const float* __restrict__ g,
    float* __restrict__ sq, float* __restrict__ gavg, float* __restrict__ buf,
    float* __restrict__ dir, unsigned int* __restrict__ key, unsigned int* __restrict__ hist,
    int n, float alpha, float eps, float l2, float lr, float momentum, int centered, int score_kind)
{
    __shared__ unsigned int sh[256];
    hist_init(sh);
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float gi = g[i];
        if (l2 != 0.0f) gi = gi + l2 * p[i];
        float si = alpha * sq[i] + (1.0f - alpha) * gi * gi;
        sq[i] = si;
        float avg;
        if (centered) {
            float ga = gavg[i] + (1.0f - alpha) * (gi - gavg[i]);
            gavg[i] = ga;
            avg = sqrtf(si - ga * ga) + eps;
        } else {
            avg = sqrtf(si) + eps;
        }
        float score;
        if (momentum > 0.0f) {
            float b = momentum * buf[i] + gi / avg;
            buf[i] = b;
            dir[i] = lr * b;
            score = b;
        } else {
            dir[i] = lr * (gi / avg);
            score = gi;
        }
        if (score_kind == SCORE_GRADIENT) score = gi;
        if (score_kind != SCORE_NONE) {
            unsigned int k = abs_key(score);
            key[i] = k;
            hist_top(sh, k);
        }
    }
    hist_flush(sh, hist);
}

// SGD (PyTorch): momentum buffer (= g on the first step), dampening, Nesterov.
extern "C" __global__ void sgd_update(
    const float* __restrict__ p, const float* __restrict__ g, float* __restrict__ buf,
    float* __restrict__ dir, unsigned int* __restrict__ key, unsigned int* __restrict__ hist,
    int n, float lr, float l2, float momentum, float dampening, int nesterov, int first_step,
    int score_kind)
{
    __shared__ unsigned int sh[256];
    hist_init(sh);
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float gi = g[i];
        if (l2 != 0.0f) gi = gi + l2 * p[i];
        float d = gi;
        float score = gi;
        if (momentum > 0.0f) {
            float b = first_step ? gi : momentum * buf[i] + (1.0f - dampening) * gi;
            buf[i] = b;
            d = nesterov ? gi + momentum * b : b;
            if (score_kind == SCORE_MOMENTUM) score = b;
        }
        dir[i] = lr * d;
        if (score_kind != SCORE_NONE) {
            unsigned int k = abs_key(score);
            key[i] = k;
            hist_top(sh, k);
        }
    }
    hist_flush(sh, hist);
}

// Lion (lion-pytorch): dir = lr·sign(β1·m + (1 − β1)·g), then m ← β2·m + (1 − β2)·g.
// The momentum score is the updated m.
extern "C" __global__ void lion_update(
    const float* __restrict__ g, float* __restrict__ m,
    float* __restrict__ dir, unsigned int* __restrict__ key, unsigned int* __restrict__ hist,
    int n, float lr, float beta1, float beta2, int score_kind)
{
    __shared__ unsigned int sh[256];
    hist_init(sh);
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float gi = g[i];
        float c = beta1 * m[i] + (1.0f - beta1) * gi;
        float s = (c > 0.0f) ? 1.0f : ((c < 0.0f) ? -1.0f : 0.0f);
        dir[i] = lr * s;
        float mi = beta2 * m[i] + (1.0f - beta2) * gi;
        m[i] = mi;
        float score = (score_kind == SCORE_GRADIENT) ? gi : mi;
        if (score_kind != SCORE_NONE) {
            unsigned int k = abs_key(score);
            key[i] = k;
            hist_top(sh, k);
        }
    }
    hist_flush(sh, hist);
}

// Histogram of digit `shift` among the keys that match the state's prefix.
extern "C" __global__ void radix_hist(
    const unsigned int* __restrict__ key, int n, const RadixState* __restrict__ st,
    int shift, unsigned int* __restrict__ hist)
{
    __shared__ unsigned int sh[256];
    hist_init(sh);
    unsigned int prefix = st->prefix, mask = st->mask;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        unsigned int k = key[i];
        if ((k & mask) == prefix) atomicAdd(&sh[(k >> shift) & 255u], 1u);
    }
    hist_flush(sh, hist);
}

// One thread: choose the digit whose cumulative count from the top reaches
// `need`, update the state, and clear the histogram for the next pass.
extern "C" __global__ void radix_pick(RadixState* st, unsigned int* hist, int shift)
{
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    unsigned int above = 0;
    unsigned int need = st->need;
    for (int d = 255; d >= 0; --d) {
        unsigned int h = hist[d];
        if (above + h >= need) {
            st->prefix |= ((unsigned int)d) << shift;
            st->mask |= 255u << shift;
            st->need = need - above;
            break;
        }
        above += h;
    }
    for (int d = 0; d < 256; ++d) hist[d] = 0;
}

// Per chunk (one CUDA block of blockDim entries), the number of keys equal to τ.
extern "C" __global__ void tie_count(
    const unsigned int* __restrict__ key, int n, const RadixState* __restrict__ st,
    unsigned int* __restrict__ chunk_counts)
{
    __shared__ unsigned int count;
    if (threadIdx.x == 0) count = 0;
    __syncthreads();
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    unsigned int eq = (i < n && key[i] == st->prefix) ? 1u : 0u;
    unsigned int warp = __popc(__ballot_sync(0xffffffffu, eq));
    if ((threadIdx.x & 31) == 0 && warp) atomicAdd(&count, warp);
    __syncthreads();
    if (threadIdx.x == 0) chunk_counts[blockIdx.x] = count;
}

// One block: exclusive scan of the chunk counts in place (sequential over
// segments, one segment per thread, then a scan of the segment sums).
extern "C" __global__ void tie_scan(unsigned int* counts, int chunks)
{
    __shared__ unsigned int seg[1024];
    int t = threadIdx.x, nt = blockDim.x;
    int per = (chunks + nt - 1) / nt;
    int lo = t * per, hi = min(lo + per, chunks);
    unsigned int s = 0;
    for (int c = lo; c < hi; ++c) s += counts[c];
    seg[t] = s;
    __syncthreads();
    if (t == 0) {
        unsigned int acc = 0;
        for (int j = 0; j < nt; ++j) { unsigned int x = seg[j]; seg[j] = acc; acc += x; }
    }
    __syncthreads();
    unsigned int acc = seg[t];
    for (int c = lo; c < hi; ++c) { unsigned int x = counts[c]; counts[c] = acc; acc += x; }
}

// p ← p·decay − dir on selected entries (all entries when `select_all`);
// p ← p·decay on the others under scope All (`decay_all`).
extern "C" __global__ void masked_apply(
    float* __restrict__ p, const float* __restrict__ dir, const unsigned int* __restrict__ key,
    int n, const RadixState* __restrict__ st, const unsigned int* __restrict__ chunk_offsets,
    float decay, int select_all, int decay_all, unsigned char* __restrict__ selected_out)
{
    __shared__ unsigned int warp_eq[32];
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    unsigned int k = (i < n && !select_all) ? key[i] : 0u;
    unsigned int tau = select_all ? 0u : st->prefix;
    unsigned int eq = (!select_all && i < n && k == tau) ? 1u : 0u;
    unsigned int ballot = __ballot_sync(0xffffffffu, eq);
    if (lane == 0) warp_eq[w] = __popc(ballot);
    __syncthreads();
    unsigned int rank = select_all ? 0u : chunk_offsets[blockIdx.x];
    for (int j = 0; j < w; ++j) rank += warp_eq[j];
    rank += __popc(ballot & ((1u << lane) - 1u));
    if (i >= n) return;
    bool sel = select_all || k > tau || (eq && rank < st->need);
    float pi = p[i];
    if (sel) p[i] = pi * decay - dir[i];
    else if (decay_all) p[i] = pi * decay;
    if (selected_out) selected_out[i] = sel ? 1 : 0;
}
