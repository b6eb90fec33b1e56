/* The attention kernels' softmax, run in units between tile steps, the 16 x 16 transpose that
   lays K out as B tiles, and the P V output tiles' store. Part of amx.c's one translation unit
   (included there, in order; not compiled alone). */

/* 2^t for t <= 0, for softmax weights rounded to bf16 afterwards: t = n + f with n = floor(t) and
   f in [0, 1) in one vreduceps, 2^f by a degree-4 polynomial (relative error < 2.7e-6: the
   least-maximum-relative-error fit on [0, 1), by reweighted least squares), times 2^n by
   vscalefps, which floors t itself (0 where 2^n underflows, so no clamp). Six instructions where
   rounding to the nearest n, a subtraction and a degree-5 Taylor polynomial took eight
   (2026-12-06: attention 6-14% faster; the softmax's vector work is what the tiles wait for). */
static inline __m512 exp2_neg_softmax(__m512 t) {
    __m512 f = _mm512_reduce_ps(t, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    __m512 p = _mm512_set1_ps(0.013534166850149632f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.052011460065841675f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.2414427548646927f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.6930038332939148f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0000026226043701f));
    return _mm512_scalef_ps(p, t);
}

#define MAX_SEQ 512   /* tokens of one sequence */
#define MAX_DIM 64    /* head dimension: 32 or 64 */
#define S_STRIDE (MAX_SEQ + 16) /* floats per row of scores: rows 2 KiB apart would share L1 sets */

#define SOFTMAX_ROWS 4

/* The softmax's weights as P V reads them: bf16, or on the avx512-vnni build those bf16 values
   widened to fp32 (soft_wide_block's input; with Q widened too, attention in an Offline batch of
   16 225.7 -> 174.5 ms, 2026-12-06, emulated) */
#if PB_TILES == 3
typedef float softmax_weight;
#else
typedef uint16_t softmax_weight;
#endif

/* The softmax of one block of query rows, left unnormalized: P holds exp(s - row max) in bf16
   (keys n..n32 get 0; rows past `rows` are zero) and inv_sum 1 / the row's sum; the output row
   is divided by it after P V. With int8 attention (`p8`) P holds round(255 exp(s - row max)) in
   uint8 instead (rows n64 apart, keys n..n64 0), and inv_sum 1 / the sum of those integers. It
   runs in units between the tile steps of the neighbouring blocks: per group of SOFTMAX_ROWS
   rows (their chains interleave) one unit for the row maxima, then one per 32 keys. */
typedef struct {
    const float *s;     /* scores, rows S_STRIDE floats apart */
    softmax_weight *p;  /* weights, rows n32 apart */
    float *inv_sum;
    long rows, n, n32, per_group, unit, units;
    long group, in_group; /* unit = group * per_group + in_group, counted rather than divided */
    /* units due after each of `steps` tile steps, floor(done * units / steps), counted rather than
       divided (integer divisions there cost attention 2-5%) */
    long steps, step_units, step_rem, rem, quota;
    float log2e;        /* log2 e times the scores' multiplier (a power of two, or 1) */
    __m512 mx[SOFTMAX_ROWS], sum[SOFTMAX_ROWS];
    uint8_t *p8;        /* int8 attention: the uint8 weights (NULL: p's bf16 ones) ... */
    long n64;           /* ... rows n64 apart */
    __m512i int_sum[SOFTMAX_ROWS];
} softmax_work;

/* What both kinds of weights start from: the scores, the sums' destination, the units to run */
static inline void softmax_start(softmax_work *w, const float *s, float *inv_sum, long rows, long n, long n32, float multiplier) {
    w->s = s, w->inv_sum = inv_sum, w->rows = rows, w->n = n, w->n32 = n32;
    w->log2e = 1.44269504f * multiplier;
    w->per_group = 1 + n32 / 32, w->unit = 0, w->group = 0, w->in_group = 0;
    w->units = (rows + SOFTMAX_ROWS - 1) / SOFTMAX_ROWS * w->per_group;
}

static inline void softmax_begin(softmax_work *w, const float *s, softmax_weight *p, float *inv_sum, long rows, long n, long n32,
                                 float multiplier) {
    softmax_start(w, s, inv_sum, rows, n, n32, multiplier);
    w->p = p, w->p8 = NULL;
    long padded = (rows + 15) / 16 * 16;
    if (rows < padded) memset(p + rows * n32, 0, (padded - rows) * n32 * sizeof *p);
}

/* softmax_begin for int8 attention: uint8 weights at p8, rows n64 apart (the scores hold their
   multiplier already) */
static inline void softmax_begin_u8(softmax_work *w, const float *s, uint8_t *p8, float *inv_sum, long rows, long n,
                                    long n32, long n64) {
    softmax_start(w, s, inv_sum, rows, n, n32, 1.f);
    w->p = NULL, w->p8 = p8, w->n64 = n64;
    long padded = (rows + 15) / 16 * 16;
    if (rows < padded) memset(p8 + rows * n64, 0, (padded - rows) * n64);
}

/* Spread the softmax's units over the `steps` tile steps of a pipeline step (before the first) */
static inline void softmax_spread(softmax_work *w, long steps) {
    w->steps = steps > 0 ? steps : 1, w->step_units = w->units / w->steps, w->step_rem = w->units % w->steps;
    w->rem = 0, w->quota = 0;
}

/* The units due once one more step is done: floor(done * units / steps), without dividing */
static inline long softmax_quota(softmax_work *w) {
    w->quota += w->step_units, w->rem += w->step_rem;
    if (w->rem >= w->steps) w->rem -= w->steps, w->quota++;
    return w->quota;
}

/* On to the next unit, its group and place in the group counted along */
static inline void softmax_advance(softmax_work *w) {
    w->unit++;
    if (++w->in_group == w->per_group) w->in_group = 0, w->group++;
}

/* exp(score - row max) of 16 scores at `row` (those outside `k` read as 0; the caller masks the
   result), in the weights' scale: `mx` is the row's maximum times log2e (minus log2 255 for uint8) */
static inline __m512 softmax_exp(const float *row, __mmask16 k, __m512 log2e, __m512 mx) {
    return exp2_neg_softmax(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(k, row), log2e, mx));
}

/* Units [w->unit, until) */
static inline void softmax_until(softmax_work *w, long until) {
    const __m512 log2e = _mm512_set1_ps(w->log2e);
    const long n = w->n, n32 = w->n32, full = n / 16 * 16;
    const __mmask16 tail = (__mmask16)((1u << (n - full)) - 1);
    for (; w->unit < until; softmax_advance(w)) {
        long g = w->group, u = w->in_group, r0 = g * SOFTMAX_ROWS;
        long count = w->rows - r0 < SOFTMAX_ROWS ? w->rows - r0 : SOFTMAX_ROWS;
        const float *s = w->s + r0 * S_STRIDE;
        if (u == 0) { /* the rows' maxima, times log2 e */
            __m512 *mx = w->mx;
            for (int r = 0; r < SOFTMAX_ROWS; r++) { mx[r] = _mm512_set1_ps(-INFINITY); w->sum[r] = _mm512_setzero_ps(); }
            for (long j = 0; j < full; j += 16)
                for (int r = 0; r < SOFTMAX_ROWS; r++)
                    if (r < count) mx[r] = _mm512_max_ps(mx[r], _mm512_loadu_ps(s + r * S_STRIDE + j));
            for (int r = 0; r < SOFTMAX_ROWS; r++)
                if (r < count) {
                    if (tail) mx[r] = _mm512_mask_max_ps(mx[r], tail, mx[r], _mm512_maskz_loadu_ps(tail, s + r * S_STRIDE + full));
                    mx[r] = _mm512_mul_ps(_mm512_set1_ps(_mm512_reduce_max_ps(mx[r])), log2e);
                    /* uint8 weights: 2^(t + log2 255) = 255 x 2^t, the factor in the exponent */
                    if (w->p8) mx[r] = _mm512_sub_ps(mx[r], _mm512_set1_ps(7.99435343685886f)), w->int_sum[r] = _mm512_setzero_si512();
                }
            continue;
        }
        long j = (u - 1) * 32; /* 32 keys: one cache line of bf16 */
        __mmask16 k0 = j + 16 <= n ? 0xffff : j < n ? tail : 0, k1 = j + 32 <= n ? 0xffff : j + 16 < n ? tail : 0;
        if (w->p8) {
            for (int r = 0; r < SOFTMAX_ROWS; r++)
                if (r < count) {
                    const float *row = s + r * S_STRIDE + j;
                    const __m512i q0 = _mm512_maskz_cvtps_epi32(k0, softmax_exp(row, k0, log2e, w->mx[r]));
                    const __m512i q1 = _mm512_maskz_cvtps_epi32(k1, softmax_exp(row + 16, k1, log2e, w->mx[r]));
                    w->int_sum[r] = _mm512_add_epi32(w->int_sum[r], _mm512_add_epi32(q0, q1));
                    uint8_t *out = w->p8 + (r0 + r) * w->n64 + j;
                    _mm_storeu_si128((__m128i *)out, _mm512_cvtepi32_epi8(q0));
                    _mm_storeu_si128((__m128i *)(out + 16), _mm512_cvtepi32_epi8(q1));
                    if (j + 32 == n32 && n32 < w->n64) _mm256_storeu_si256((__m256i *)(out + 32), _mm256_setzero_si256());
                    if (j + 32 == n32) w->inv_sum[r0 + r] = 1.f / (float)_mm512_reduce_add_epi32(w->int_sum[r]);
                }
            continue;
        }
        for (int r = 0; r < SOFTMAX_ROWS; r++)
            if (r < count) {
                const float *row = s + r * S_STRIDE + j;
                __m512 e0, e1;
                if (k1 == 0xffff) { /* 32 keys: no masks */
                    e0 = exp2_neg_softmax(_mm512_fmsub_ps(_mm512_loadu_ps(row), log2e, w->mx[r]));
                    e1 = exp2_neg_softmax(_mm512_fmsub_ps(_mm512_loadu_ps(row + 16), log2e, w->mx[r]));
                } else { /* the last keys; none in the second 16: no exp there */
                    e0 = _mm512_maskz_mov_ps(k0, softmax_exp(row, k0, log2e, w->mx[r]));
                    e1 = k1 ? _mm512_maskz_mov_ps(k1, softmax_exp(row + 16, k1, log2e, w->mx[r])) : _mm512_setzero_ps();
                }
                w->sum[r] = _mm512_add_ps(w->sum[r], _mm512_add_ps(e0, e1));
#if PB_TILES == 3
                _mm512_storeu_ps(w->p + (r0 + r) * n32 + j, bf16_rounded(e0));
                _mm512_storeu_ps(w->p + (r0 + r) * n32 + j + 16, bf16_rounded(e1));
#else
                _mm512_storeu_si512(w->p + (r0 + r) * n32 + j, to_bf16_pair(e1, e0));
#endif
            }
        if (j + 32 == n32)
            for (int r = 0; r < SOFTMAX_ROWS; r++)
                if (r < count) w->inv_sum[r0 + r] = 1.f / _mm512_reduce_add_ps(w->sum[r]);
    }
}

/* The 16 x 16 32-bit words in r (row i = r[i]) stored transposed at out (row c = word c of every
   r[i], 64 bytes apart): pairs of rows interleaved by words, then by pairs of words, then 128-bit
   lanes gathered in two steps */
static inline void transpose_16x16_epi32(const __m512i r[16], uint32_t *out) {
    __m512i t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) { /* u[i + k], lane l: word 4 l + k of rows i .. i + 3 */
        u[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        u[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        u[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        u[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    for (int k = 0; k < 4; k++) {
        __m512i v0 = _mm512_shuffle_i32x4(u[k], u[4 + k], 0x88), v1 = _mm512_shuffle_i32x4(u[k], u[4 + k], 0xdd);
        __m512i w0 = _mm512_shuffle_i32x4(u[8 + k], u[12 + k], 0x88), w1 = _mm512_shuffle_i32x4(u[8 + k], u[12 + k], 0xdd);
        _mm512_store_si512(out + (0 + k) * 16, _mm512_shuffle_i32x4(v0, w0, 0x88));
        _mm512_store_si512(out + (8 + k) * 16, _mm512_shuffle_i32x4(v0, w0, 0xdd));
        _mm512_store_si512(out + (4 + k) * 16, _mm512_shuffle_i32x4(v1, w1, 0x88));
        _mm512_store_si512(out + (12 + k) * 16, _mm512_shuffle_i32x4(v1, w1, 0xdd));
    }
}

/* Tiles 0 to 3, P V's sums for half `half` of the head dimension (32 columns) of a pair of query
   blocks (2 and 3, the second block's, only if `two`), into o [32 rows][dim] (4-byte values) */
static inline __attribute__((always_inline)) void pair_output_stored(void *o, int two, int dim, int half) {
    float *f = (float *)o;
    TILE_STORED(0, f + half * 32, dim * 4);
    TILE_STORED(1, f + half * 32 + 16, dim * 4);
    if (two) {
        TILE_STORED(2, f + 16 * dim + half * 32, dim * 4);
        TILE_STORED(3, f + 16 * dim + half * 32 + 16, dim * 4);
    }
}
