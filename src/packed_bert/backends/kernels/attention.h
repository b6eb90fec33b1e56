/* Attention per sequence on bf16 tiles (or int8 ones: attention_int8.h), its softmax (softmax.h)
   between their steps. Part of amx.c's one translation unit (included there, in order; not
   compiled alone). */

/* Where the 16 queries of a block are: their rows of Q|K|V where Q needs no scaling (a multiplier
   of 1, or a power of two the softmax applies instead, which gives the same bits: the products
   and sums scale exactly), except a last block of fewer than 16, and every block otherwise, which
   are copied (and scaled) into a block of their own */
typedef struct {
    const uint16_t *direct; /* NULL: every block copied */
    long stride;            /* bf16 values from one row of `direct` to the next */
    long direct_blocks;     /* blocks read in place */
    const uint16_t *copied; /* block b at copied + (b - direct_blocks) * 16 * dim, rows dim apart */
    const float *widened;   /* the avx512-vnni build: every block's rows in fp32, rows dim apart */
} query_rows;

/* The first row of query block qb as the tiles read it, and the bytes between its rows */
static inline const uint16_t *query_block(const query_rows *q, long qb, int dim, long *row_bytes) {
    const int in_place = qb < q->direct_blocks;
    *row_bytes = in_place ? q->stride * 2 : dim * 2;
    return in_place ? q->direct + qb * 16 * q->stride : q->copied + (qb - q->direct_blocks) * 16 * dim;
}

/* Scores of query blocks qb and, if `two`, qb + 1 against every key of kp (K as B tiles, k_steps
   blocks of 16) into sb, rows S_STRIDE floats apart (block qb + 1's 16 rows below qb's): each K
   tile is loaded once for both blocks (K streams from L2 once per pair of blocks, not per
   block). After each tile step the softmax `w` (NULL: none) runs on to its share
   (softmax_quota). */
static inline __attribute__((always_inline)) void scores_pair(const query_rows *q, const uint32_t *kp, long qb, int two,
                                                             int dim, long k_steps, float *sb, softmax_work *w) {
    const int dw = dim / 2;
#if PB_TILES != 1
    /* soft tiles: two key blocks at a time for each query block, over the head dimension with the
       sums in registers (soft_tile_block: the tile steps' sums in their order) */
    for (long kb = 0; kb < k_steps; kb += 2) {
        const int pair = kb + 1 < k_steps;
        const uint8_t *k0 = (const uint8_t *)(kp + kb * dw * 16), *k1 = pair ? k0 + dw * 64 : k0;
        for (int i = 0; i <= two; i++) {
#if PB_TILES == 3
            soft_wide_block(q->widened + (qb + i) * 16 * dim, dim, k0, k1, 1024, dw, 1, NULL);
#else
            long row_bytes;
            const uint16_t *rows = query_block(q, qb + i, dim, &row_bytes);
            soft_tile_block((const uint8_t *)rows, row_bytes, k0, k1, 1024, dw, 1, NULL, SOFT_BF16);
#endif
            float *out = (i ? sb + 16 * S_STRIDE : sb) + kb * 16;
            TILE_STORED(0, out, S_STRIDE * 4);
            if (pair) TILE_STORED(1, out + 16, S_STRIDE * 4);
        }
        if (w) softmax_until(w, softmax_quota(w));
        if (w && pair) softmax_until(w, softmax_quota(w));
    }
#else
    long ra, rb = 0;
    const uint16_t *a = query_block(q, qb, dim, &ra), *b = two ? query_block(q, qb + 1, dim, &rb) : NULL;
    _tile_loadd(2, a, ra);
    if (dim == 64) _tile_loadd(3, a + 32, ra);
    if (two) {
        _tile_loadd(4, b, rb);
        if (dim == 64) _tile_loadd(5, b + 32, rb);
    }
    float *sb2 = sb + 16 * S_STRIDE;
    for (long kb = 0; kb < k_steps; kb++) {
        _tile_zero(0);
        _tile_loadd(6, kp + kb * dw * 16, 64);
        _tile_dpbf16ps(0, 2, 6);
        if (two) { _tile_zero(1); _tile_dpbf16ps(1, 4, 6); }
        if (dim == 64) {
            _tile_loadd(7, kp + kb * dw * 16 + 256, 64);
            _tile_dpbf16ps(0, 3, 7);
            if (two) _tile_dpbf16ps(1, 5, 7);
        }
        TILE_STORED(0, sb + kb * 16, S_STRIDE * 4);
        if (two) TILE_STORED(1, sb2 + kb * 16, S_STRIDE * 4);
        if (w) softmax_until(w, softmax_quota(w));
    }
#endif
}

/* o [32 rows][dim] = P V for a pair of query blocks (the second only if `two`; P's rows n32 apart,
   the second block's 16 below the first's), in halves of the head dimension: each V tile is loaded
   once for both blocks. Every output tile sums the key steps in the same order as one block at a
   time. */
static inline __attribute__((always_inline)) void pv_pair(const softmax_weight *pb, const uint16_t *vp, int two, int dim,
                                                         long n32, long v_steps, float *o, softmax_work *w) {
    for (int half = 0; half < dim / 32; half++) {
#if PB_TILES != 1
        /* soft tiles: every key with the sums in registers (soft_tile_block: the tile steps' sums
           in their order), then the softmax's units of those steps */
        const uint8_t *v = (const uint8_t *)(vp + half * 2 * 512);
#if PB_TILES == 3
        soft_wide_block(pb, n32, v, v + 1024, (dim / 16) * 1024, v_steps * 16, !two, NULL);
#else
        soft_tile_block((const uint8_t *)pb, n32 * 2, v, v + 1024, (dim / 16) * 1024, v_steps * 16, !two, NULL, SOFT_BF16);
#endif
        for (long kb = 0; kb < v_steps; kb++) softmax_until(w, softmax_quota(w));
#else
        const uint16_t *pb2 = pb + 16 * n32;
        _tile_zero(0); _tile_zero(1);
        if (two) { _tile_zero(2); _tile_zero(3); }
        for (long kb = 0; kb < v_steps; kb++) {
            const uint16_t *v = vp + kb * (dim / 16) * 512 + half * 2 * 512;
            _tile_loadd(4, pb + kb * 32, n32 * 2);
            _tile_loadd(6, v, 64);
            _tile_dpbf16ps(0, 4, 6);
            _tile_loadd(7, v + 512, 64);
            _tile_dpbf16ps(1, 4, 7);
            if (two) {
                _tile_loadd(5, pb2 + kb * 32, n32 * 2);
                _tile_dpbf16ps(2, 5, 6);
                _tile_dpbf16ps(3, 5, 7);
            }
            softmax_until(w, softmax_quota(w));
        }
#endif
        pair_output_stored(o, two, dim, half);
    }
}

/* One head of one sequence: n tokens at `base` (rows `stride` bf16 apart: Q at 0, K at `k_off`,
   V at `v_off` columns), Q multiplied by `scale` (1/sqrt(dim), or 1 where the Q layer's weights
   hold it), output rows at `out` (stride `out_stride` elements): bf16, or (AS_U8) those bf16
   values on the next layer's uint8 grid (`q_scale` per column, `q_zp`). `kind`: ATT_BF16,
   ATT_INT8 (both products in int8) or ATT_INT8_SCORES (Q K^T alone; attention_int8.h). Pairs of
   blocks of 16 queries in a pipeline: pair b's softmax is interleaved with the tile steps of pair
   b + 1's scores and pair b - 1's P V (the same operations on each block as one at a time, so the
   same bits; one 268-token layer 420 -> 355 us with blocks in a pipeline, pairs of them since
   2026-12-06: 2-4% less, K and V loaded once a pair). */
static inline __attribute__((always_inline)) int attend_one(const uint16_t *base, long stride, long k_off, long v_off,
                                                            long n, int dim, float scale, void *out, long out_stride,
                                                            int out_kind, const float *q_scale, int q_zp, int kind,
                                                            const uint16_t *ahead, long ahead_n) {
    const int qk8 = kind != ATT_BF16, pv8 = kind == ATT_INT8;
    long n16 = (n + 15) / 16 * 16, n32 = (n + 31) / 32 * 32, n64 = (n + 63) / 64 * 64;
    int dw = dim / 2; /* 32-bit words (bf16 pairs) per row */
    uint16_t qs[MAX_SEQ * MAX_DIM] __attribute__((aligned(64)));           /* Q blocks copied (query_rows) */
    uint32_t kp[MAX_SEQ * MAX_DIM / 2] __attribute__((aligned(64)));       /* K as B tiles: [n/16][dw][16] words */
    uint16_t vp[MAX_SEQ * MAX_DIM] __attribute__((aligned(64)));           /* V as B tiles: [n/32][dim/16][16][16][2] */
    float s[2][32 * S_STRIDE] __attribute__((aligned(64)));                /* scores of two pairs of blocks */
    float inv_sum[2][32];
    softmax_weight p[2][32 * MAX_SEQ] __attribute__((aligned(64)));        /* weights of two pairs */
    float o[32 * MAX_DIM] __attribute__((aligned(64)));
#if PB_TILES == 3
    float widened[MAX_SEQ * MAX_DIM] __attribute__((aligned(64)));        /* Q in fp32 (soft_wide_block) */
#endif
    /* Q x scale: 1/8 (head dimension 64) and 1 (the Q layer holds it) are exact in bf16, so the
       tiles read Q in place and the softmax multiplies the scores instead; otherwise (1/sqrt(32))
       the product is rounded to bf16 once, as torch does, into a copy */
    int exponent;
    const int exact = frexpf(scale, &exponent) == 0.5f;
    query_rows q = {exact ? base : NULL, stride, exact ? n / 16 : 0, qs, NULL};
    const float copy_scale = exact ? 1.f : scale, softmax_scale = exact ? scale : 1.f;
    int8_operands *ops = qk8 ? grown(&int8_operand_buffer, sizeof(int8_operands)) : NULL;
    if (qk8 && !ops) return 1;
    if (qk8) {
        int8_qk_pack(ops, base, stride, k_off, n, dim, scale);
    } else {
        for (long i = q.direct_blocks * 16; i < n16; i++)
            for (int d = 0; d < dim; d += 16) {
                __m512 v = i < n ? bf16_to_fp32(_mm256_loadu_si256((const __m256i *)(base + i * stride + d))) : _mm512_setzero_ps();
                _mm256_store_si256((__m256i *)(qs + (i - q.direct_blocks * 16) * dim + d),
                                   to_bf16(_mm512_mul_ps(v, _mm512_set1_ps(copy_scale))));
            }
#if PB_TILES == 3 /* the avx512-vnni build: every block of Q widened to fp32 */
        for (long b = 0; b < n16 / 16; b++) {
            long row_bytes;
            const uint16_t *rows = query_block(&q, b, dim, &row_bytes);
            widen_bf16_rows((const uint8_t *)rows, row_bytes, 16, dim, widened + b * 16 * dim, dim);
        }
        q.widened = widened;
#endif
        /* K: word (pair of dims) w of key j goes to kp[(j/16) * dw * 16 + w * 16 + j % 16]: 16 keys'
           rows of 16 words transposed in registers (keys past n are zero) */
        for (long j = 0; j < n16; j += 16)
            for (int g = 0; g < dw / 16; g++) {
                __m512i r[16];
                for (int i = 0; i < 16; i++)
                    r[i] = j + i < n ? _mm512_loadu_si512(base + (j + i) * stride + k_off + g * 32) : _mm512_setzero_si512();
                transpose_16x16_epi32(r, kp + (j / 16) * dw * 16 + g * 256);
            }
    }
    if (pv8) {
        int8_values_pack(ops, base + v_off, stride, n, n64, dim);
    } else {
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
    }
    const long blocks = n16 / 16, pairs = (blocks + 1) / 2, v_steps = n32 / 32; /* keys come in blocks of 16 too */
    softmax_work w = {0};
    COMPILER_BARRIER(); /* Q, K and V packed before the tiles load them */
    if (qk8) scores_pair_int8(ops, 0, blocks > 1, blocks, s[0], NULL);
    else scores_pair(&q, kp, 0, blocks > 1, dim, blocks, s[0], NULL);
    const long ahead_step = (ahead_n + pairs) / (pairs + 1); /* the next head's rows prefetched a step */
    for (long b = 0; b <= pairs; b++) { /* step b: pair b's softmax, pair b + 1's scores, pair b - 1's P V */
        for (long r = b * ahead_step; r < (b + 1) * ahead_step && r < ahead_n; r++)
            for (int d = 0; d < dim; d += 32) {
                _mm_prefetch((const char *)(ahead + r * stride + d), _MM_HINT_T1);
                _mm_prefetch((const char *)(ahead + r * stride + k_off + d), _MM_HINT_T1);
                _mm_prefetch((const char *)(ahead + r * stride + v_off + d), _MM_HINT_T1);
            }
        COMPILER_BARRIER(); /* pair b - 1's weights written before the tiles load them */
        long rows = b < pairs ? (n - b * 32 < 32 ? n - b * 32 : 32) : 0;
        int next_two = 2 * (b + 1) + 1 < blocks, last_two = b > 0 && 2 * (b - 1) + 1 < blocks;
        long steps = (b + 1 < pairs ? blocks : 0) + (b > 0 ? (pv8 ? n64 / 64 : v_steps) * (dim / 32) : 0);
        /* int8 scores hold their multiplier already */
        if (b < pairs && pv8) softmax_begin_u8(&w, s[b & 1], ops->p[b & 1], inv_sum[b & 1], rows, n, n32, n64);
        else if (b < pairs) softmax_begin(&w, s[b & 1], p[b & 1], inv_sum[b & 1], rows, n, n32, qk8 ? 1.f : softmax_scale);
        else w = (softmax_work){0};
        softmax_spread(&w, steps);
        if (b + 1 < pairs && qk8) scores_pair_int8(ops, 2 * (b + 1), next_two, blocks, s[(b + 1) & 1], &w);
        else if (b + 1 < pairs) scores_pair(&q, kp, 2 * (b + 1), next_two, dim, blocks, s[(b + 1) & 1], &w);
        if (b > 0) { /* out = P V for pair b - 1 */
            if (pv8) pv_pair_int8(ops, ops->p[(b - 1) & 1], last_two, dim, n64, (int32_t *)o, &w);
            else pv_pair(p[(b - 1) & 1], vp, last_two, dim, n32, v_steps, o, &w);
            long q0 = (b - 1) * 32, done_rows = n - q0 < 32 ? n - q0 : 32;
            const float *inv = inv_sum[(b - 1) & 1];
            for (long i = 0; i < done_rows; i++)
                for (int d = 0; d < dim; d += 16) {
                    /* int8: the int32 sums times V's steps */
                    const __m512 sums = pv8 ? _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_load_si512(o + i * dim + d)), _mm512_loadu_ps(ops->v_step + d))
                                             : _mm512_load_ps(o + i * dim + d);
                    __m256i h = to_bf16(_mm512_mul_ps(sums, _mm512_set1_ps(inv[i])));
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
    return 0;
}

/* attend_one with the attention's kind a constant in each copy (Q|K|V rows `stride` apart, K
   `k_off` after Q, V twice that; output rows heads x dim = o_stride apart) */
static inline __attribute__((always_inline)) int attend_kind(const uint16_t *base, long stride, long k_off, long n, int dim,
                                                             float scale, void *o, long o_stride, int out_kind,
                                                             const float *qs, int q_zp, int kind, const uint16_t *ahead,
                                                             long ahead_n) {
    if (kind == ATT_INT8)
        return attend_one(base, stride, k_off, 2 * k_off, n, dim, scale, o, o_stride, out_kind, qs, q_zp, ATT_INT8, ahead, ahead_n);
    if (kind == ATT_INT8_SCORES)
        return attend_one(base, stride, k_off, 2 * k_off, n, dim, scale, o, o_stride, out_kind, qs, q_zp, ATT_INT8_SCORES, ahead,
                          ahead_n);
    return attend_one(base, stride, k_off, 2 * k_off, n, dim, scale, o, o_stride, out_kind, qs, q_zp, ATT_BF16, ahead, ahead_n);
}

/* Where Q|K|V lie: rows of 3 x heads x dim values (plane_rows 0), or one plane of plane_rows rows
   of dim values per part and head (Q of heads 0 .. heads - 1, then K's, then V's); stride: values
   from one row of a head to the next, k_off: from a row of Q to its row of K (V twice that) */
typedef struct {
    const uint16_t *qkv;
    const long *starts, *lens;
    int heads, dim;
    long plane_rows, stride, k_off;
} qkv_layout;

static inline qkv_layout layout_of(const uint16_t *qkv, const long *starts, const long *lens, int heads, int dim,
                                   long plane_rows) {
    const long hidden = (long)heads * dim;
    return (qkv_layout){qkv, starts, lens, heads, dim, plane_rows, plane_rows ? dim : 3 * hidden,
                        plane_rows ? hidden * plane_rows : hidden};
}

/* The first row of head h of sequence i in `l` */
static inline const uint16_t *head_rows(const qkv_layout *l, long i, long h) {
    if (l->plane_rows) return l->qkv + (h * l->plane_rows + l->starts[i]) * l->dim;
    return l->qkv + l->starts[i] * l->stride + h * l->dim;
}

/* Head h of sequence i; the rows of job `ahead` (sequence ahead / heads, head ahead % heads; -1:
   none) prefetched into L2 meanwhile */
static int attend_head(const qkv_layout *l, long i, long h, float scale, void *out, int out_kind, const float *q_scale,
                       int q_zp, int kind, long ahead) {
    const int heads = l->heads, dim = l->dim;
    const long hidden = (long)heads * dim, stride = l->stride, k_off = l->k_off;
    size_t at = (size_t)l->starts[i] * hidden + h * dim;
    const uint16_t *base = head_rows(l, i, h);
    const uint16_t *next = ahead < 0 ? NULL : head_rows(l, ahead / heads, ahead % heads);
    const long next_n = ahead < 0 ? 0 : l->lens[ahead / heads];
    void *o = out_kind == AS_U8 ? (void *)((uint8_t *)out + at) : (void *)((uint16_t *)out + at);
    const float *qs = q_scale ? q_scale + h * dim : NULL;
    /* the head dimension a constant in each copy: its branches leave the tile loops (attention
       2-4% faster, 2026-12-06) */
    if (dim == 64) return attend_kind(base, stride, k_off, l->lens[i], 64, scale, o, hidden, out_kind, qs, q_zp, kind, next, next_n);
    return attend_kind(base, stride, k_off, l->lens[i], 32, scale, o, hidden, out_kind, qs, q_zp, kind, next, next_n);
}

#define FLUSH_DENORMALS 0x8040 /* MXCSR: flush-to-zero (bit 15), denormals-are-zero (bit 6) */

/* Attention per sequence: qkv [T, 3 * heads * dim] bf16 (Q | K | V, head-major within each), or
   with plane_rows > 0 (at least T) [3 * heads][plane_rows][dim] (qkv_layout: each head's rows of
   Q, K and V contiguous, which the caches' prefetchers follow; the encoder's Q|K|V layer writes
   them so); sequence i holds tokens starts[i] .. starts[i] + lens[i]; scores are (Q x scale) K^T; out [T,
   heads * dim] (bf16, or uint8 on the grid q_scale / q_zp: AS_U8) gets each sequence's rows (the
   others are left as they are). dim 32 or 64, lens <= 512. `kind`: ATT_BF16, ATT_INT8 (both
   products in int8) or ATT_INT8_SCORES (Q K^T alone; attention_int8.h). Returns 0, 1 for
   arguments it does not take, 2 where a thread's buffer for int8 could not be allocated. */
int pb_attention(const uint16_t *qkv, const long *starts, const long *lens, long count, int heads, int dim, float scale,
                 void *out, int out_kind, const float *q_scale, int q_zp, int kind, long plane_rows) {
    if ((dim != 32 && dim != 64) || kind < ATT_BF16 || kind > ATT_INT8_SCORES) return 1;
    for (long i = 0; i < count; i++) if (lens[i] > MAX_SEQ || lens[i] < 0) return 1;
    if (plane_rows < 0) return 1;
    const qkv_layout layout = layout_of(qkv, starts, lens, heads, dim, plane_rows);
    chunk_runs runs = {{0}, 0, 0};
    int failed = 0;
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
        /* jobs (sequence job / heads, head job % heads) in one run per thread, taken in order, the
           next one claimed before the current one runs so that its rows of Q, K and V come into L2
           meanwhile (in the row layout a head's row is two cache lines 6 KiB from the next, which
           the caches' own prefetchers miss; in planes the rows are contiguous, read from L3 all
           the same); a thread done with its run takes the last jobs of another's */
        if (omp_get_num_threads() <= MAX_RUNS) {
            share_chunks(&runs, count * heads);
            const int t = omp_get_thread_num();
            for (long job = next_chunk(&runs, t, 1), ahead; job >= 0; job = ahead >= 0 ? ahead : next_chunk(&runs, t, 1)) {
                ahead = next_chunk(&runs, t, 0);
                if (lens[job / heads] > 0 && attend_head(&layout, job / heads, job % heads, scale, out, out_kind, q_scale,
                                                          q_zp, kind, ahead))
#pragma omp atomic write
                    failed = 2;
            }
        } else { /* more threads than runs: one job at a time to whichever thread is free */
#pragma omp for schedule(dynamic, 1)
            for (long job = 0; job < count * heads; job++)
                if (lens[job / heads] > 0 && attend_head(&layout, job / heads, job % heads, scale, out, out_kind, q_scale,
                                                          q_zp, kind, -1))
#pragma omp atomic write
                    failed = 2;
        }
        _tile_release();
        _mm_setcsr(fp_mode);
        THREAD_DONE();
    }
    REGION_IDLE();
    return failed;
}
