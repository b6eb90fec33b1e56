/* Attention's two products in int8, a recipe's choice (torch option attention=int8): Q K^T from
   each row of Q and of K on an int8 grid of its own, P V from the softmax's weights in uint8
   (round(255 exp(s - row max)), softmax.h) and V on an int8 grid per column. Where a bf16 product
   is two FMAs (the avx512-vnni build), both in int8 made attention in an Offline batch of 16 half
   as long (bert-99: 181 -> 90 ms, the batch 1,244 -> 1,161) and one 285-token sample 9% faster
   (146.0 -> 132.5 ms; 2026-12-06, emulated avx512-vnni). The integer sums are exact and the
   vector work the same on every build: the same bits on all. Or Q K^T alone in int8
   (attention=int8-scores, avx512-vnni's bert-99.9), P V in bf16 as without: attention there 24%
   less than bf16's (pb_attention alone, 285 tokens). Part of amx.c's one translation unit
   (included there, in order; not compiled alone). */

/* The attention's kinds (pb_attention's `kind`): its products in bf16, both in int8, or Q K^T
   alone in int8 (the softmax's weights and V in bf16) */
enum { ATT_BF16 = 0, ATT_INT8 = 1, ATT_INT8_SCORES = 2 };

/* One head's int8 operands, a thread's own (grown once): rows of 64 bytes (a head dimension of
   32: zeros after it) */
typedef struct {
    uint8_t q[MAX_SEQ * 64] __attribute__((aligned(64)));       /* Q rows + 128: uint8 for u8 x s8 */
    uint32_t k[MAX_SEQ * 16] __attribute__((aligned(64)));      /* K as B tiles: [n/16][16 words][16 keys] */
    uint8_t v[MAX_SEQ * MAX_DIM] __attribute__((aligned(64)));  /* V as B tiles (int8_values_pack) */
    uint8_t p[2][32 * MAX_SEQ] __attribute__((aligned(64)));    /* the weights of two pairs of query blocks */
    float q_step[MAX_SEQ], k_step[MAX_SEQ], v_step[MAX_DIM];   /* grid steps; q_step holds the scores' multiplier */
    int32_t k_sum[MAX_SEQ];                                     /* 128 x the sum of each K row's integers */
} int8_operands;
static __thread thread_buffer int8_operand_buffer;

/* Row `src` (dim bf16 values) on its own symmetric int8 grid (step max |x| / 127, rounding half to
   even) into the 64 bytes at dst, `offset` added to each (128: uint8); returns the step, *sum
   the integers' sum */
static inline float int8_row(const uint16_t *src, int dim, int offset, uint8_t *dst, int32_t *sum) {
    __m512 x[4], top = _mm512_setzero_ps();
    for (int d = 0; d < dim / 16; d++) {
        x[d] = bf16_to_fp32(_mm256_loadu_si256((const __m256i *)(src + d * 16)));
        top = _mm512_max_ps(top, _mm512_abs_ps(x[d]));
    }
    const float largest = _mm512_reduce_max_ps(top), inv = largest > 0 ? 127.f / largest : 0.f;
    __m512i total = _mm512_setzero_si512();
    for (int d = 0; d < 4; d++) {
        const __m512i v = d < dim / 16 ? _mm512_cvtps_epi32(_mm512_mul_ps(x[d], _mm512_set1_ps(inv))) : _mm512_setzero_si512();
        total = _mm512_add_epi32(total, v);
        _mm_store_si128((__m128i *)(dst + d * 16), _mm512_cvtepi32_epi8(_mm512_add_epi32(v, _mm512_set1_epi32(offset))));
    }
    *sum = _mm512_reduce_add_epi32(total);
    return largest / 127.f;
}

/* Q (times `scale`, in its steps) and K of one head on their grids; rows past n: zeros, step 0 */
static inline void int8_qk_pack(int8_operands *g, const uint16_t *base, long stride, long k_off, long n, int dim, float scale) {
    const long n16 = (n + 15) / 16 * 16;
    int32_t unused;
    for (long i = 0; i < n16; i++) {
        if (i < n) g->q_step[i] = scale * int8_row(base + i * stride, dim, 128, g->q + i * 64, &unused);
        else g->q_step[i] = 0.f, _mm512_store_si512(g->q + i * 64, _mm512_set1_epi8((char)128));
    }
    for (long j = 0; j < n16; j += 16) { /* 16 keys' rows of 16 words (4 dims each), transposed */
        uint8_t rows[16 * 64] __attribute__((aligned(64)));
        __m512i r[16];
        for (int i = 0; i < 16; i++) {
            int32_t sum = 0;
            if (j + i < n) g->k_step[j + i] = int8_row(base + (j + i) * stride + k_off, dim, 0, rows + i * 64, &sum);
            else g->k_step[j + i] = 0.f, _mm512_store_si512(rows + i * 64, _mm512_setzero_si512());
            g->k_sum[j + i] = 128 * sum;
            r[i] = _mm512_load_si512(rows + i * 64);
        }
        transpose_16x16_epi32(r, g->k + j * 16);
    }
}

/* V of one head (rows `stride` bf16 apart) on int8 grids per column (v_step[d] = max_j |v_jd| /
   127) as B tiles for u8 x s8 products: tile (kb, c), keys 64 kb.. and columns 16 c.., at
   (kb * dim / 16 + c) * 1024 bytes, its row g holding keys 4g..4g+3 of each column; keys past n
   up to n64 are zero */
static inline void int8_values_pack(int8_operands *g, const uint16_t *v, long stride, long n, long n64, int dim) {
    __m512 top[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()}, inv[4];
    for (long j = 0; j < n; j++)
        for (int d = 0; d < dim / 16; d++)
            top[d] = _mm512_max_ps(top[d], _mm512_abs_ps(bf16_to_fp32(_mm256_loadu_si256((const __m256i *)(v + j * stride + d * 16)))));
    for (int d = 0; d < dim / 16; d++) {
        inv[d] = _mm512_maskz_div_ps(_mm512_cmp_ps_mask(top[d], _mm512_setzero_ps(), _CMP_GT_OQ), _mm512_set1_ps(127.f), top[d]);
        _mm512_storeu_ps(g->v_step + d * 16, _mm512_div_ps(top[d], _mm512_set1_ps(127.f)));
    }
    const __m512i low_byte = _mm512_set1_epi32(0xff);
    for (long j = 0; j < n64; j += 4)
        for (int d = 0; d < dim / 16; d++) {
            __m512i word = _mm512_setzero_si512();
            for (int k = 0; k < 4 && j + k < n; k++) {
                const __m512 x = bf16_to_fp32(_mm256_loadu_si256((const __m256i *)(v + (j + k) * stride + d * 16)));
                const __m512i q = _mm512_and_si512(_mm512_cvtps_epi32(_mm512_mul_ps(x, inv[d])), low_byte);
                word = _mm512_or_si512(word, _mm512_slli_epi32(q, 8 * k));
            }
            _mm512_store_si512(g->v + ((j / 64) * (dim / 16) + d) * 1024 + ((j % 64) / 4) * 64, word);
        }
}

/* 16 rows of int32 sums at `at` (rows S_STRIDE floats apart; keys j.. of query rows i0..) made
   scores in place: (sum - 128 x the key's sum) x the two rows' steps */
static inline void int8_scores_finish(const int8_operands *g, float *at, long i0, long j) {
    const __m512i key_sum = _mm512_loadu_si512(g->k_sum + j);
    const __m512 key_step = _mm512_loadu_ps(g->k_step + j);
    for (int r = 0; r < 16; r++) {
        const __m512i v = _mm512_sub_epi32(_mm512_loadu_si512(at + r * S_STRIDE), key_sum);
        _mm512_storeu_ps(at + r * S_STRIDE, _mm512_mul_ps(_mm512_cvtepi32_ps(v), _mm512_mul_ps(key_step, _mm512_set1_ps(g->q_step[i0 + r]))));
    }
}

/* scores_pair's int8 form: query blocks qb and (if `two`) qb + 1 against every key into sb, the
   softmax `w` (NULL: none) run on after each step */
static inline __attribute__((always_inline)) void scores_pair_int8(const int8_operands *g, long qb, int two, long k_steps,
                                                                  float *sb, softmax_work *w) {
#if PB_TILES != 1
    /* soft tiles: two key blocks at a time (soft_tile_block), their sums made scores in place */
    for (long kb = 0; kb < k_steps; kb += 2) {
        const int pair = kb + 1 < k_steps;
        const uint8_t *k0 = (const uint8_t *)(g->k + kb * 256), *k1 = pair ? k0 + 1024 : k0;
        for (int i = 0; i <= two; i++) {
            soft_tile_block(g->q + (qb + i) * 16 * 64, 64, k0, k1, 1024, 16, 1, NULL, SOFT_U8);
            float *out = (i ? sb + 16 * S_STRIDE : sb) + kb * 16;
            TILE_STORED(0, out, S_STRIDE * 4);
            int8_scores_finish(g, out, (qb + i) * 16, kb * 16);
            if (pair) {
                TILE_STORED(1, out + 16, S_STRIDE * 4);
                int8_scores_finish(g, out + 16, (qb + i) * 16, kb * 16 + 16);
            }
        }
        if (w) softmax_until(w, softmax_quota(w));
        if (w && pair) softmax_until(w, softmax_quota(w));
    }
#else
    _tile_loadd(2, g->q + qb * 16 * 64, 64);
    if (two) _tile_loadd(4, g->q + (qb + 1) * 16 * 64, 64);
    float *sb2 = sb + 16 * S_STRIDE;
    for (long kb = 0; kb < k_steps; kb++) {
        _tile_zero(0);
        _tile_loadd(6, g->k + kb * 256, 64);
        _tile_dpbusd(0, 2, 6);
        if (two) { _tile_zero(1); _tile_dpbusd(1, 4, 6); }
        TILE_STORED(0, sb + kb * 16, S_STRIDE * 4);
        int8_scores_finish(g, sb + kb * 16, qb * 16, kb * 16);
        if (two) {
            TILE_STORED(1, sb2 + kb * 16, S_STRIDE * 4);
            int8_scores_finish(g, sb2 + kb * 16, qb * 16 + 16, kb * 16);
        }
        if (w) softmax_until(w, softmax_quota(w));
    }
#endif
}

/* pv_pair's int8 form: o [32 rows][dim] (int32) = P (uint8, rows n64 apart) times V for a pair of
   query blocks (the second only if `two`), in halves of the head dimension */
static inline __attribute__((always_inline)) void pv_pair_int8(const int8_operands *g, const uint8_t *pb, int two, int dim,
                                                               long n64, int32_t *o, softmax_work *w) {
    for (int half = 0; half < dim / 32; half++) {
#if PB_TILES != 1
        const uint8_t *v = g->v + half * 2 * 1024;
        soft_tile_block(pb, n64, v, v + 1024, (dim / 16) * 1024, n64 / 4, !two, NULL, SOFT_U8);
        for (long kb = 0; kb < n64 / 64; kb++) softmax_until(w, softmax_quota(w));
#else
        _tile_zero(0); _tile_zero(1);
        if (two) { _tile_zero(2); _tile_zero(3); }
        for (long kb = 0; kb < n64 / 64; kb++) {
            const uint8_t *v = g->v + (kb * (dim / 16) + half * 2) * 1024;
            _tile_loadd(4, pb + kb * 64, n64);
            _tile_loadd(6, v, 64);
            _tile_dpbusd(0, 4, 6);
            _tile_loadd(7, v + 1024, 64);
            _tile_dpbusd(1, 4, 7);
            if (two) {
                _tile_loadd(5, pb + 16 * n64 + kb * 64, n64);
                _tile_dpbusd(2, 5, 6);
                _tile_dpbusd(3, 5, 7);
            }
            softmax_until(w, softmax_quota(w));
        }
#endif
        pair_output_stored(o, two, dim, half);
    }
}
