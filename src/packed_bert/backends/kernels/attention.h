/* Attention per sequence on bf16 tiles, with its softmax. Part of amx.c's one translation unit
   (included there, in order; not compiled alone). */

/* 2^t for t <= 0, for softmax weights rounded to bf16 afterwards: t = n + f with |f| <= 1/2,
   2^f = e^(f ln 2) by its degree-5 Taylor polynomial (relative error < 3e-6), times 2^n by
   vscalefps (0 where 2^n underflows, so no clamp) */
static inline __m512 exp2_neg_softmax(__m512 t) {
    __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), f = _mm512_sub_ps(t, n);
    const float ln2 = 0.693147181f;
    __m512 p = _mm512_set1_ps(ln2 * ln2 * ln2 * ln2 * ln2 / 120);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(ln2 * ln2 * ln2 * ln2 / 24));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(ln2 * ln2 * ln2 / 6));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(ln2 * ln2 / 2));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(ln2));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.f));
    return _mm512_scalef_ps(p, n);
}

#define MAX_SEQ 512   /* tokens of one sequence */
#define MAX_DIM 64    /* head dimension: 32 or 64 */
#define S_STRIDE (MAX_SEQ + 16) /* floats per row of scores: rows 2 KiB apart would share L1 sets */

#define SOFTMAX_ROWS 4

/* The softmax of one block of query rows, left unnormalized: P holds exp(s - row max) in bf16
   (keys n..n32 get 0; rows past `rows` are zero) and inv_sum 1 / the row's sum; the output row
   is divided by it after P V. It runs in units between the tile steps of the neighbouring
   blocks: per group of SOFTMAX_ROWS rows (their chains interleave) one unit for the row maxima,
   then one per 32 keys. */
typedef struct {
    const float *s;     /* scores, rows S_STRIDE floats apart */
    uint16_t *p;        /* weights, rows n32 apart */
    float *inv_sum;
    long rows, n, n32, per_group, unit, units;
    long group, in_group; /* unit = group * per_group + in_group, counted rather than divided */
    /* units due after each of `steps` tile steps, floor(done * units / steps), counted rather than
       divided (integer divisions there cost attention 2-5%) */
    long steps, step_units, step_rem, rem, quota;
    float log2e;        /* log2 e times the scores' multiplier (a power of two, or 1) */
    __m512 mx[SOFTMAX_ROWS], sum[SOFTMAX_ROWS];
} softmax_work;

static inline void softmax_begin(softmax_work *w, const float *s, uint16_t *p, float *inv_sum, long rows, long n, long n32,
                                 float multiplier) {
    w->s = s, w->p = p, w->inv_sum = inv_sum, w->rows = rows, w->n = n, w->n32 = n32;
    w->log2e = 1.44269504f * multiplier;
    w->per_group = 1 + n32 / 32, w->unit = 0, w->group = 0, w->in_group = 0;
    w->units = (rows + SOFTMAX_ROWS - 1) / SOFTMAX_ROWS * w->per_group;
    if (rows < 16) memset(p + rows * n32, 0, (16 - rows) * n32 * 2);
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
                }
            continue;
        }
        long j = (u - 1) * 32; /* 32 keys: one cache line of bf16 */
        __mmask16 k0 = j + 16 <= n ? 0xffff : j < n ? tail : 0, k1 = j + 32 <= n ? 0xffff : j + 16 < n ? tail : 0;
        for (int r = 0; r < SOFTMAX_ROWS; r++)
            if (r < count) {
                const float *row = s + r * S_STRIDE + j;
                __m512 e0 = _mm512_maskz_mov_ps(k0, exp2_neg_softmax(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(k0, row), log2e, w->mx[r])));
                __m512 e1 = _mm512_maskz_mov_ps(k1, exp2_neg_softmax(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(k1, row + 16), log2e, w->mx[r])));
                w->sum[r] = _mm512_add_ps(w->sum[r], _mm512_add_ps(e0, e1));
                _mm512_storeu_si512(w->p + (r0 + r) * n32 + j, (__m512i)_mm512_cvtne2ps_pbh(e1, e0));
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

/* Where the 16 queries of a block are: their rows of Q|K|V where Q needs no scaling (a multiplier
   of 1, or a power of two the softmax applies instead, which gives the same bits: the products
   and sums scale exactly), except a last block of fewer than 16, and every block otherwise, which
   are copied (and scaled) into a block of their own */
typedef struct {
    const uint16_t *direct; /* NULL: every block copied */
    long stride;            /* bf16 values from one row of `direct` to the next */
    long direct_blocks;     /* blocks read in place */
    const uint16_t *copied; /* block b at copied + (b - direct_blocks) * 16 * dim, rows dim apart */
} query_rows;

/* Scores of query block qb against every key of kp (K as B tiles, k_steps blocks of 16) into sb,
   rows S_STRIDE floats apart; after each tile step the softmax `w` (NULL: none) runs on to its
   share (softmax_quota) */
static inline void scores_block(const query_rows *q, const uint32_t *kp, long qb, int dim, long k_steps, float *sb,
                                softmax_work *w) {
    const int dw = dim / 2;
    const int in_place = qb < q->direct_blocks;
    const uint16_t *rows = in_place ? q->direct + qb * 16 * q->stride : q->copied + (qb - q->direct_blocks) * 16 * dim;
    const long row_bytes = in_place ? q->stride * 2 : dim * 2;
    _tile_loadd(4, rows, row_bytes);
    if (dim == 64) _tile_loadd(5, rows + 32, row_bytes);
    for (long kb = 0; kb < k_steps; kb++) {
        _tile_zero(0);
        _tile_loadd(6, kp + kb * dw * 16, 64);
        _tile_dpbf16ps(0, 4, 6);
        if (dim == 64) {
            _tile_loadd(7, kp + kb * dw * 16 + 256, 64);
            _tile_dpbf16ps(0, 5, 7);
        }
        TILE_STORED(0, sb + kb * 16, S_STRIDE * 4);
        if (w) softmax_until(w, softmax_quota(w));
    }
}

/* One head of one sequence: n tokens at `base` (rows `stride` bf16 apart: Q at 0, K at `k_off`,
   V at `v_off` columns), Q multiplied by `scale` (1/sqrt(dim), or 1 where the Q layer's weights
   hold it), output rows at `out` (stride `out_stride` elements): bf16, or (AS_U8) those bf16
   values on the next layer's uint8 grid (`q_scale` per column, `q_zp`). Blocks of 16 queries
   in a pipeline: block b's softmax is interleaved with the tile steps of block b + 1's scores
   and block b - 1's P V (the same operations on each block as one at a time, so the same bits;
   one 268-token layer 420 -> 355 us: the tiles and the vector units overlap only in part). */
static void attend_one(const uint16_t *base, long stride, long k_off, long v_off, long n, int dim, float scale,
                       void *out, long out_stride, int out_kind, const float *q_scale, int q_zp) {
    long n16 = (n + 15) / 16 * 16, n32 = (n + 31) / 32 * 32;
    int dw = dim / 2; /* 32-bit words (bf16 pairs) per row */
    uint16_t qs[MAX_SEQ * MAX_DIM] __attribute__((aligned(64)));           /* Q blocks copied (query_rows) */
    uint32_t kp[MAX_SEQ * MAX_DIM / 2] __attribute__((aligned(64)));       /* K as B tiles: [n/16][dw][16] words */
    uint16_t vp[MAX_SEQ * MAX_DIM] __attribute__((aligned(64)));           /* V as B tiles: [n/32][dim/16][16][16][2] */
    float s[2][16 * S_STRIDE] __attribute__((aligned(64)));                /* scores of two blocks */
    float inv_sum[2][16];
    uint16_t p[2][16 * MAX_SEQ] __attribute__((aligned(64)));              /* weights of two blocks */
    float o[16 * MAX_DIM] __attribute__((aligned(64)));
    /* Q x scale: 1/8 (head dimension 64) and 1 (the Q layer holds it) are exact in bf16, so the
       tiles read Q in place and the softmax multiplies the scores instead; otherwise (1/sqrt(32))
       the product is rounded to bf16 once, as torch does, into a copy */
    int exponent;
    const int exact = frexpf(scale, &exponent) == 0.5f;
    query_rows q = {exact ? base : NULL, stride, exact ? n / 16 : 0, qs};
    const float copy_scale = exact ? 1.f : scale, softmax_scale = exact ? scale : 1.f;
    for (long i = q.direct_blocks * 16; i < n16; i++)
        for (int d = 0; d < dim; d += 16) {
            __m512 v = i < n ? bf16_to_fp32(_mm256_loadu_si256((const __m256i *)(base + i * stride + d))) : _mm512_setzero_ps();
            _mm256_store_si256((__m256i *)(qs + (i - q.direct_blocks * 16) * dim + d),
                               (__m256i)_mm512_cvtneps_pbh(_mm512_mul_ps(v, _mm512_set1_ps(copy_scale))));
        }
    /* K: word (pair of dims) w of key j goes to kp[(j/16) * dw * 16 + w * 16 + j % 16]: 16 keys'
       rows of 16 words transposed in registers (keys past n are zero) */
    for (long j = 0; j < n16; j += 16)
        for (int g = 0; g < dw / 16; g++) {
            __m512i r[16];
            for (int i = 0; i < 16; i++)
                r[i] = j + i < n ? _mm512_loadu_si512(base + (j + i) * stride + k_off + g * 32) : _mm512_setzero_si512();
            transpose_16x16_epi32(r, kp + (j / 16) * dw * 16 + g * 256);
        }
    /* V: rows 2r, 2r+1 of a 32-key block interleave per dim */
    const __m512i lo = _mm512_set_epi16(47, 15, 46, 14, 45, 13, 44, 12, 43, 11, 42, 10, 41, 9, 40, 8,
                                        39, 7, 38, 6, 37, 5, 36, 4, 35, 3, 34, 2, 33, 1, 32, 0);
    const __m512i hi = _mm512_add_epi16(lo, _mm512_set1_epi16(16));
    for (long j = 0; j < n32; j += 2) {
        uint16_t *dst = vp + (j / 32) * (dim / 16) * 512 + ((j % 32) / 2) * 32;
        for (int d = 0; d < dim; d += 32) {
            __m512i a = j < n ? _mm512_loadu_si512(base + j * stride + v_off + d) : _mm512_setzero_si512();
            __m512i b = j + 1 < n ? _mm512_loadu_si512(base + (j + 1) * stride + v_off + d) : _mm512_setzero_si512();
            _mm512_store_si512(dst + (d / 16) * 512, _mm512_permutex2var_epi16(a, lo, b));
            _mm512_store_si512(dst + (d / 16 + 1) * 512, _mm512_permutex2var_epi16(a, hi, b));
        }
    }
    const long blocks = n16 / 16, v_steps = n32 / 32; /* blocks of 16 queries; keys come in the same blocks */
    softmax_work w = {0};
    COMPILER_BARRIER(); /* Q, K and V packed before the tiles load them */
    scores_block(&q, kp, 0, dim, blocks, s[0], NULL);
    for (long b = 0; b <= blocks; b++) { /* step b: block b's softmax, block b + 1's scores, block b - 1's P V */
        COMPILER_BARRIER(); /* block b - 1's weights written before the tiles load them */
        long rows = b < blocks ? (n - b * 16 < 16 ? n - b * 16 : 16) : 0;
        long steps = (b + 1 < blocks ? blocks : 0) + (b > 0 ? v_steps : 0);
        if (b < blocks) softmax_begin(&w, s[b & 1], p[b & 1], inv_sum[b & 1], rows, n, n32, softmax_scale);
        else w = (softmax_work){0};
        softmax_spread(&w, steps);
        if (b + 1 < blocks) scores_block(&q, kp, b + 1, dim, blocks, s[(b + 1) & 1], &w);
        if (b > 0) { /* out = P V for block b - 1 */
            const uint16_t *pb = p[(b - 1) & 1];
            _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
            for (long kb = 0; kb < v_steps; kb++) {
                _tile_loadd(4, pb + kb * 32, n32 * 2);
                _tile_loadd(6, vp + kb * (dim / 16) * 512 + 0 * 512, 64); _tile_dpbf16ps(0, 4, 6);
                _tile_loadd(6, vp + kb * (dim / 16) * 512 + 1 * 512, 64); _tile_dpbf16ps(1, 4, 6);
                if (dim == 64) {
                    _tile_loadd(6, vp + kb * (dim / 16) * 512 + 2 * 512, 64); _tile_dpbf16ps(2, 4, 6);
                    _tile_loadd(6, vp + kb * (dim / 16) * 512 + 3 * 512, 64); _tile_dpbf16ps(3, 4, 6);
                }
                softmax_until(&w, softmax_quota(&w));
            }
            for (int db = 0; db < dim / 16; db++) {
                switch (db) {  /* tile numbers are immediates */
                case 0: TILE_STORED(0, o + 0, dim * 4); break;
                case 1: TILE_STORED(1, o + 16, dim * 4); break;
                case 2: TILE_STORED(2, o + 32, dim * 4); break;
                default: TILE_STORED(3, o + 48, dim * 4); break;
                }
            }
            long q0 = (b - 1) * 16, done_rows = n - q0 < 16 ? n - q0 : 16;
            const float *inv = inv_sum[(b - 1) & 1];
            for (long i = 0; i < done_rows; i++)
                for (int d = 0; d < dim; d += 16) {
                    __m256i h = (__m256i)_mm512_cvtneps_pbh(_mm512_mul_ps(_mm512_load_ps(o + i * dim + d), _mm512_set1_ps(inv[i])));
                    size_t at = (size_t)(q0 + i) * out_stride + d;
                    if (out_kind == AS_U8) {
                        _mm_storeu_si128((__m128i *)((uint8_t *)out + at),
                                         to_u8(bf16_to_fp32(h), _mm512_loadu_ps(q_scale + d), _mm512_set1_epi32(q_zp)));
                    } else {
                        _mm256_storeu_si256((__m256i *)((uint16_t *)out + at), h);
                    }
                }
        }
        softmax_until(&w, w.units);
    }
}

/* Head h of sequence i, as pb_attention lays them out */
static void attend_head(const uint16_t *qkv, const long *starts, const long *lens, long i, long h, int heads, int dim,
                        float scale, void *out, int out_kind, const float *q_scale, int q_zp) {
    long hidden = (long)heads * dim, stride = 3 * hidden;
    size_t at = (size_t)starts[i] * hidden + h * dim;
    attend_one(qkv + starts[i] * stride + h * dim, stride, hidden, 2 * hidden, lens[i], dim, scale,
               out_kind == AS_U8 ? (void *)((uint8_t *)out + at) : (void *)((uint16_t *)out + at), hidden, out_kind,
               q_scale ? q_scale + h * dim : NULL, q_zp);
}

#define FLUSH_DENORMALS 0x8040 /* MXCSR: flush-to-zero (bit 15), denormals-are-zero (bit 6) */

/* Attention per sequence: qkv [T, 3 * heads * dim] bf16 (Q | K | V, head-major within each);
   sequence i holds tokens starts[i] .. starts[i] + lens[i]; scores are (Q x scale) K^T; out [T,
   heads * dim] (bf16, or uint8 on the grid q_scale / q_zp: AS_U8) gets each sequence's rows (the
   others are left as they are). dim 32 or 64, lens <= 512. */
int pb_attention(const uint16_t *qkv, const long *starts, const long *lens, long count, int heads, int dim, float scale,
                 void *out, int out_kind, const float *q_scale, int q_zp) {
    if ((dim != 32 && dim != 64)) return 1;
    for (long i = 0; i < count; i++) if (lens[i] > MAX_SEQ || lens[i] < 0) return 1;
    chunk_runs runs = {{0}, 0, 0};
#pragma omp parallel
    {
        /* Denormals flushed to zero, in and out, while this thread attends (and its own mode back
           after): with trained weights some scores sit more than 126 binary orders below their
           row's maximum (MiniLM on SQuAD: 1 in 10,000), where exp2 came out denormal, each one a
           microcode assist: attention 9-10% slower. The weights go to bf16, whose conversion
           flushes such values to 0 anyway, and a row's sum is at least 1: the same bits. */
        const unsigned fp_mode = _mm_getcsr();
        _mm_setcsr(fp_mode | FLUSH_DENORMALS);
        configure_tiles();
        int threads = omp_get_num_threads();
        if (count == 1 && threads <= MAX_RUNS) {
            /* one sequence: each thread takes its own run of heads, then the last heads of a run
               another thread has not reached (chunk_runs) */
            share_chunks(&runs, heads);
            const int t = omp_get_thread_num();
            for (long h = next_chunk(&runs, t, 1); h >= 0 && lens[0] > 0; h = next_chunk(&runs, t, 1))
                attend_head(qkv, starts, lens, 0, h, heads, dim, scale, out, out_kind, q_scale, q_zp);
        } else {
            /* more: heads one at a time to whichever thread is free */
#pragma omp for schedule(dynamic, 1)
            for (long job = 0; job < count * heads; job++)
                if (lens[job / heads] > 0)
                    attend_head(qkv, starts, lens, job / heads, job % heads, heads, dim, scale, out, out_kind, q_scale, q_zp);
        }
        _tile_release();
        _mm_setcsr(fp_mode);
    }
    return 0;
}
