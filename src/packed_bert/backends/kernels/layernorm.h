/* The residual add with LayerNorm, a row at a time. Part of amx.c's one translation unit (included
   there, in order; not compiled alone). */

/* Stores of a row's 64 bytes at `at`: past the caches when `stream` (the row's result is read
   again only after more than the caches hold has passed), else plain */
static inline void store_line(void *at, __m512i v, int stream) {
    if (stream) _mm512_stream_si512((__m512i *)at, v);
    else _mm512_storeu_si512(at, v);
}

/* 64 bf16 values (four groups of 16) at `at` as two whole lines around the caches */
static inline void stream_bf16_lines(uint16_t *at, const __m256i h[4]) {
    store_line(at, _mm512_inserti64x4(_mm512_castsi256_si512(h[0]), h[1], 1), 1);
    store_line(at + 32, _mm512_inserti64x4(_mm512_castsi256_si512(h[2]), h[3], 1), 1);
}

/* What pb_add_layernorm's rows share */
typedef struct {
    const void *x, *residual;
    int x_kind, r_kind, out_kind, q_kind, q_zp, stream;
    const float *gamma, *beta, *q_scale;
    float eps;
    long H;
    void *out, *q_out;
} layernorm_args;

enum { Q_NONE = 0, Q_U8 = 1, Q_BF16 = 2 }; /* the next layer's input a row also writes */

/* Row m of pb_add_layernorm, its x and residual rows at a_row and b_row, with its value kinds
   (x_kind, r_kind, out_kind: AS_FP32 or AS_BF16; `feed`: the next layer's input, Q_*) constants
   where add_layernorm_row inlines it: the kinds' branches leave the loops (a 274-row call 48 ->
   36 us, the same bits) */
static inline __attribute__((always_inline)) void add_layernorm_row_as(const layernorm_args *a, long m, const char *a_row,
                                                                       const char *b_row, int x_kind, int r_kind,
                                                                       int out_kind, int feed) {
    const int q_kind = feed == Q_BF16 ? AS_BF16 : AS_U8, q_zp = a->q_zp;
    const int stream = a->stream;
    const float *gamma = a->gamma, *beta = a->beta, *q_scale = a->q_scale, eps = a->eps;
    const long H = a->H;
    void *out = a->out, *q_out = feed == Q_NONE ? NULL : a->q_out;
    float row[8192] __attribute__((aligned(64)));
    /* the sums in four parts, 16 values apart (H % 64 == 0 fills all four; the rest go to the
       first): four chains of additions instead of one, 9-13% off the kernel (2026-12-06) */
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    long k = 0;
    for (; k + 64 <= H; k += 64)
        for (int j = 0; j < 4; j++) {
            __m512 v = _mm512_add_ps(load_float(a_row, k + 16 * j, x_kind), load_float(b_row, k + 16 * j, r_kind));
            _mm512_store_ps(row + k + 16 * j, v);
            acc[j] = _mm512_add_ps(acc[j], v);
        }
    for (; k < H; k += 16) {
        __m512 v = _mm512_add_ps(load_float(a_row, k, x_kind), load_float(b_row, k, r_kind));
        _mm512_store_ps(row + k, v);
        acc[0] = _mm512_add_ps(acc[0], v);
    }
    __m512 sum = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
    __m512 mean = _mm512_set1_ps(_mm512_reduce_add_ps(sum) / (float)H);
    for (int j = 0; j < 4; j++) acc[j] = _mm512_setzero_ps();
    for (k = 0; k + 64 <= H; k += 64)
        for (int j = 0; j < 4; j++) {
            __m512 d = _mm512_sub_ps(_mm512_load_ps(row + k + 16 * j), mean);
            acc[j] = _mm512_fmadd_ps(d, d, acc[j]);
        }
    for (; k < H; k += 16) {
        __m512 d = _mm512_sub_ps(_mm512_load_ps(row + k), mean);
        acc[0] = _mm512_fmadd_ps(d, d, acc[0]);
    }
    __m512 sq = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
    __m512 inv = _mm512_set1_ps(1.f / sqrtf(_mm512_reduce_add_ps(sq) / (float)H + eps));
    const __m512i zp = _mm512_set1_epi32(q_zp);
    for (long k = 0; k < H; k += 64) { /* a cache line of uint8 at a time (16 values past H % 64) */
        int parts = H - k < 64 ? (int)((H - k) / 16) & 3 : 4, whole = parts == 4 && stream; /* H % 16 == 0 */
        __m128i q[4] = {_mm_setzero_si128(), _mm_setzero_si128(), _mm_setzero_si128(), _mm_setzero_si128()};
        __m256i h[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
        __m256i o[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
        for (int j = 0; j < parts; j++) {
            long c = k + 16 * j;
            __m512 d = _mm512_mul_ps(_mm512_sub_ps(_mm512_load_ps(row + c), mean), inv);
            __m512 y = _mm512_fmadd_ps(d, _mm512_loadu_ps(gamma + c), _mm512_loadu_ps(beta + c));
            if (out_kind == AS_FP32) store_line((float *)out + m * H + c, _mm512_castps_si512(y), whole);
            else {
                o[j] = to_bf16(y);
                if (!whole) _mm256_storeu_si256((__m256i *)((uint16_t *)out + m * H + c), o[j]);
            }
            if (!q_out) continue;
            if (q_kind == AS_BF16) {
                h[j] = to_bf16(y);
                if (!whole) _mm256_storeu_si256((__m256i *)((uint16_t *)q_out + m * H + c), h[j]);
                continue;
            }
            q[j] = to_u8(y, _mm512_loadu_ps(q_scale + c), zp);
            if (!whole) _mm_storeu_si128((__m128i *)((uint8_t *)q_out + m * H + c), q[j]);
        }
        if (whole && out_kind == AS_BF16) stream_bf16_lines((uint16_t *)out + m * H + k, o); /* the bf16 stream */
        if (q_out && whole && q_kind == AS_BF16) stream_bf16_lines((uint16_t *)q_out + m * H + k, h);
        else if (q_out && whole) {
            __m512i line = _mm512_inserti32x4(_mm512_castsi128_si512(q[0]), q[1], 1);
            store_line((uint8_t *)q_out + m * H + k, _mm512_inserti32x4(_mm512_inserti32x4(line, q[2], 2), q[3], 3), 1);
        }
    }
}

/* one case per value kind of x, the residual and out (fp32, bf16) and of the next layer's input */
#define LAYERNORM_CASE(x, r, o, feed) \
    case (((x) * 2 + (r)) * 2 + (o)) * 3 + (feed): \
        add_layernorm_row_as(a, m, a_row, b_row, (x) ? AS_BF16 : AS_FP32, (r) ? AS_BF16 : AS_FP32, (o) ? AS_BF16 : AS_FP32, \
                             feed);                                                                                    \
        break;
#define LAYERNORM_CASES_Q(x, r, o) LAYERNORM_CASE(x, r, o, Q_NONE) LAYERNORM_CASE(x, r, o, Q_U8) LAYERNORM_CASE(x, r, o, Q_BF16)
#define LAYERNORM_CASES_O(x, r) LAYERNORM_CASES_Q(x, r, 0) LAYERNORM_CASES_Q(x, r, 1)
#define LAYERNORM_CASES_R(x) LAYERNORM_CASES_O(x, 0) LAYERNORM_CASES_O(x, 1)

/* Row m of pb_add_layernorm, from the rows a_row (x's) and b_row (the residual's), wherever the
   caller finds them (add_layernorm_row: row m of each; pb_embeddings: a row of sums and a table's) */
static void add_layernorm_rows(const layernorm_args *a, long m, const char *a_row, const char *b_row) {
    const int feed = !a->q_out ? Q_NONE : a->q_kind == AS_BF16 ? Q_BF16 : Q_U8;
    switch ((((a->x_kind == AS_BF16) * 2 + (a->r_kind == AS_BF16)) * 2 + (a->out_kind == AS_BF16)) * 3 + feed) {
    LAYERNORM_CASES_R(0)
    LAYERNORM_CASES_R(1)
    default: break;
    }
}

/* Row m of pb_add_layernorm: row m of x and of the residual */
static inline void add_layernorm_row(const layernorm_args *a, long m) {
    add_layernorm_rows(a, m, (const char *)a->x + (size_t)m * a->H * float_bytes(a->x_kind),
                       (const char *)a->residual + (size_t)m * a->H * float_bytes(a->r_kind));
}

#define LAYERNORM_CHUNK 16 /* rows a thread takes at a time */

/* out[m] = LayerNorm(x[m] + residual[m]) * gamma + beta over H (a multiple of 16) values, x,
   residual and out each fp32 or bf16 (x_kind, r_kind, out_kind; the residual stream may be kept
   in bf16: half the bytes this pass reads and writes): the mean first, then the variance of the
   deviations, both in fp32; with `q_out`, the same values (before out's rounding) also as the
   next layer's input (q_kind): on its uint8 grid (AS_U8: q_scale per column, q_zp) or rounded to
   bf16 (AS_BF16) */
int pb_add_layernorm(const void *x, int x_kind, const void *residual, int r_kind, const float *gamma, const float *beta,
                     float eps, long M, long H, void *out, int out_kind, void *q_out, int q_kind, const float *q_scale,
                     int q_zp) {
    if (H % 16 || H > 8192 || !float_kind(x_kind) || !float_kind(r_kind) || !float_kind(out_kind) ||
        (q_out && q_kind != AS_U8 && q_kind != AS_BF16))
        return 1;
    int stream = H % 64 == 0 && streamed_output(out, (size_t)M * H * float_bytes(out_kind)) && (uintptr_t)q_out % 64 == 0;
    const layernorm_args a = {x, residual, x_kind, r_kind, out_kind, q_kind, q_zp, stream, gamma, beta, q_scale, eps, H, out, q_out};
    /* rows in chunks, handed out as chunk_runs: a core another tenant slows leaves its rows to the
       others instead of holding every thread at the region's end */
    chunk_runs runs = {{0}, 0, 0};
#pragma omp parallel
    {
        const int threads = omp_get_num_threads(), t = omp_get_thread_num();
        if (threads <= MAX_RUNS) {
            share_chunks(&runs, (M + LAYERNORM_CHUNK - 1) / LAYERNORM_CHUNK);
            for (long c = next_chunk(&runs, t, 1); c >= 0; c = next_chunk(&runs, t, 1))
                for (long m = c * LAYERNORM_CHUNK; m < M && m < (c + 1) * LAYERNORM_CHUNK; m++) add_layernorm_row(&a, m);
        } else {
#pragma omp for schedule(static)
            for (long m = 0; m < M; m++) add_layernorm_row(&a, m);
        }
        if (stream) _mm_sfence(); /* each thread's streamed stores, before the region ends */
        THREAD_DONE();
    }
    REGION_IDLE();
    return 0;
}
