/* packed-bert's own CPU kernels on Intel AMX tiles: linear layers, either static int8 (u8
   activations x s8 weights, the input's quantization before and the scales after) or bf16 (bf16
   activations x bf16 weights, fp32 sums), with the bias and GELU in the same call; attention per
   sequence in bf16; the residual add with LayerNorm; BERT's embedding rows and its QA head; and
   the tiles' issue rate. Built at first use by backends/amx_kernels.py with the system C compiler (-march=native). */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <omp.h>

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18
/* GCC's tile load and store intrinsics are asm statements with no memory operand, so the compiler
   may move ordinary loads and stores of the same memory across them (nothing here has been seen
   to go wrong; the softmax interleaved with tile steps makes such moves more tempting). Every tile
   store is followed, and the attention's tile loads of vector-written memory are preceded, by a
   compiler barrier. */
#define COMPILER_BARRIER() __asm__ __volatile__("" ::: "memory")
#define TILE_STORED(tile, base, stride) do { _tile_stored(tile, base, stride); COMPILER_BARRIER(); } while (0)
#define TILE_K 64    /* bytes of K per tile row: 64 int8 or 32 bf16 values */
#define BLOCK_M 32   /* rows per micro-kernel: two A tiles */
#define BLOCK_N 32   /* columns per micro-kernel: two B tiles */
/* The linear layers' cache sizes and thresholds below may be set at build time (-D NAME=VALUE:
   benchmarks/amx_phases.py --define times a variant) */
#ifndef SMALL_INPUT
#define SMALL_INPUT (1536 * 1024)  /* input bytes that stay in L2 while every chunk of weights passes */
#endif
#ifndef CHUNK_SMALL
#define CHUNK_SMALL (128 * 1024)   /* weight bytes per chunk then: the next chunk streams in meanwhile */
#endif
#ifndef CHUNK_LARGE
#define CHUNK_LARGE (512 * 1024)   /* otherwise, weight bytes per chunk: fewer passes over a large input, */
#endif
#ifndef CHUNK_LARGE_MIN_N
#define CHUNK_LARGE_MIN_N 256      /* in 256 to 512 columns of int8 weights (128 to 256 of bf16) */
#endif
#ifndef CHUNK_LARGE_MAX_N
#define CHUNK_LARGE_MAX_N 512
#endif
#ifndef STREAM_OUTPUT
#define STREAM_OUTPUT (4096 * 1024) /* output bytes past which the output bypasses the caches */
#endif
#ifndef SLICE_INPUT
#define SLICE_INPUT (768 * 1024)   /* input bytes of one K slice, where an input outgrows L2 ... */
#endif
#ifndef PARTIAL_MAX
#define PARTIAL_MAX (768 * 1024)   /* ... and a thread's partial sums (fp32 / int32) do not */
#endif

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

int pb_amx_enable(void) { return (int)syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA); }

static void configure_tiles(void) {
    tile_config c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int i = 0; i < 8; i++) { c.rows[i] = 16; c.colsb[i] = 64; }
    COMPILER_BARRIER(); /* the configuration stored before ldtilecfg reads it (an asm without a memory operand) */
    _tile_loadconfig(&c);
}

/* GELU(y) = y * Phi(y) (the erf form), Phi from a table: [-5.5, 5.5] in 32 intervals, on each the
   degree-5 Taylor polynomial of Phi about the interval's middle (Phi's derivatives are Hermite
   polynomials times the normal density). |error| <= 5e-7 in float32 over all y (float64 check);
   beyond the edges Phi is taken as 0 or 1 (off by 2e-8). The coefficients are computed in double
   when the library loads; per vector: a clamp, an index, six register lookups and five
   multiply-adds. */
#define GELU_INTERVALS 32
#define GELU_DEGREE 5
#define GELU_EDGE 5.5
static float gelu_table[GELU_DEGREE + 1][GELU_INTERVALS] __attribute__((aligned(64)));

__attribute__((constructor)) static void gelu_table_init(void) {
    const double width = 2 * GELU_EDGE / GELU_INTERVALS;
    for (int i = 0; i < GELU_INTERVALS; i++) {
        double c = -GELU_EDGE + (i + 0.5) * width, density = exp(-c * c / 2) / sqrt(2 * M_PI);
        double he[GELU_DEGREE] = {1, c}, factorial = 1; /* probabilists' Hermite polynomials at c */
        for (int k = 2; k < GELU_DEGREE; k++) he[k] = c * he[k - 1] - (k - 1) * he[k - 2];
        gelu_table[0][i] = (float)(0.5 * erfc(-c / M_SQRT2));
        for (int k = 1; k <= GELU_DEGREE; k++) {
            factorial *= k;
            gelu_table[k][i] = (float)((k % 2 ? 1 : -1) * he[k - 1] * density / factorial);
        }
    }
}

static inline __m512 gelu_erf(__m512 y) {
    const float width = (float)(2 * GELU_EDGE / GELU_INTERVALS);
    __m512 yc = _mm512_min_ps(_mm512_max_ps(y, _mm512_set1_ps((float)-GELU_EDGE)), _mm512_set1_ps((float)GELU_EDGE));
    /* the interval: floor((yc + edge) / width) (>= 0) converted with rounding down, at most the last */
    __m512i idx = _mm512_cvt_roundps_epi32(_mm512_mul_ps(_mm512_add_ps(yc, _mm512_set1_ps((float)GELU_EDGE)), _mm512_set1_ps(1 / width)),
                                           _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    idx = _mm512_min_epi32(idx, _mm512_set1_epi32(GELU_INTERVALS - 1));
    __m512 f = _mm512_cvtepi32_ps(idx);
    __m512 t = _mm512_sub_ps(yc, _mm512_fmadd_ps(f, _mm512_set1_ps(width), _mm512_set1_ps((float)-GELU_EDGE + width / 2)));
    __m512 p = _mm512_permutex2var_ps(_mm512_load_ps(gelu_table[GELU_DEGREE]), idx, _mm512_load_ps(gelu_table[GELU_DEGREE] + 16));
    for (int k = GELU_DEGREE - 1; k >= 0; k--)
        p = _mm512_fmadd_ps(p, t, _mm512_permutex2var_ps(_mm512_load_ps(gelu_table[k]), idx, _mm512_load_ps(gelu_table[k] + 16)));
    return _mm512_maskz_mul_ps(_mm512_cmp_ps_mask(y, _mm512_set1_ps((float)-GELU_EDGE), _CMP_GE_OQ), y, p); /* Phi = 0 below */
}

/* The same GELU for a result rounded onto a uint8 grid (the int8 recipe's FFN input layer, whose
   grid steps are 1e-2 and more): on each interval the cubic through Phi at four Chebyshev points
   (u: the offset from the interval's middle in widths), |error of Phi| <= 3e-6. Per vector 14
   operations instead of the polynomial above's 23, none of them a conversion: a clamp just inside
   the edges, the interval and u by adding and subtracting 1.5 * 2^23 (the interval lands in the
   sum's low bits, which the lookups read), four lookups, three multiply-adds and the product;
   below the edge Phi is Phi(-5.5), 2e-8. The epilogue runs between tile steps, where the vector
   work is what a layer waits for: on a 268-token sample the FFN input layer took 13.3 ms instead
   of 15.4 (11.6 with no GELU at all). */
#define GELU_CUBIC 4 /* coefficients */
static float gelu_cubic_table[GELU_CUBIC][GELU_INTERVALS] __attribute__((aligned(64)));

__attribute__((constructor)) static void gelu_cubic_init(void) {
    const double width = 2 * GELU_EDGE / GELU_INTERVALS;
    const int n = GELU_CUBIC;
    for (int i = 0; i < GELU_INTERVALS; i++) {
        double a[GELU_CUBIC][GELU_CUBIC + 1]; /* rows: powers of u at a Chebyshev point | Phi there */
        for (int k = 0; k < n; k++) {
            double u = 0.5 * cos((2 * k + 1) * M_PI / (2 * n)), y = -GELU_EDGE + (i + 0.5 + u) * width, power = 1;
            for (int j = 0; j < n; j++, power *= u) a[k][j] = power;
            a[k][n] = 0.5 * erfc(-y / M_SQRT2);
        }
        for (int c = 0; c < n; c++) { /* Gauss-Jordan, largest pivot first */
            int best = c;
            for (int r = c + 1; r < n; r++) if (fabs(a[r][c]) > fabs(a[best][c])) best = r;
            for (int j = 0; j <= n; j++) { double t = a[c][j]; a[c][j] = a[best][j]; a[best][j] = t; }
            for (int r = 0; r < n; r++)
                if (r != c)
                    for (int j = n; j >= c; j--) a[r][j] -= a[r][c] / a[c][c] * a[c][j];
        }
        for (int j = 0; j < n; j++) gelu_cubic_table[j][i] = (float)(a[j][n] / a[j][j]);
    }
}

static inline __m512 gelu_erf_cubic(__m512 y) {
    const float inv_width = (float)(GELU_INTERVALS / (2 * GELU_EDGE)), magic = 12582912.f; /* 1.5 * 2^23 */
    const float inside = (float)GELU_EDGE * 0.9999f;
    __m512 yc = _mm512_min_ps(_mm512_max_ps(y, _mm512_set1_ps(-inside)), _mm512_set1_ps(inside));
    /* x: widths from the first interval's middle, in (-0.5, 31.5); its nearest integer is the interval */
    __m512 x = _mm512_fmadd_ps(yc, _mm512_set1_ps(inv_width), _mm512_set1_ps((float)GELU_EDGE * inv_width - 0.5f));
    __m512 r = _mm512_add_ps(x, _mm512_set1_ps(magic));
    __m512 u = _mm512_sub_ps(x, _mm512_sub_ps(r, _mm512_set1_ps(magic)));
    __m512i idx = _mm512_castps_si512(r);
    __m512 p = _mm512_permutex2var_ps(_mm512_load_ps(gelu_cubic_table[3]), idx, _mm512_load_ps(gelu_cubic_table[3] + 16));
    for (int k = 2; k >= 0; k--)
        p = _mm512_fmadd_ps(p, u, _mm512_permutex2var_ps(_mm512_load_ps(gelu_cubic_table[k]), idx, _mm512_load_ps(gelu_cubic_table[k] + 16)));
    return _mm512_mul_ps(y, p);
}

/* 16 bf16 values as fp32 (exact: bf16 is fp32's upper half) */
static inline __m512 bf16_to_fp32(__m256i h) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

typedef struct { void *data; size_t size; } thread_buffer; /* grown as needed, kept per thread */
static __thread thread_buffer quantized, partials;

static void *grown(thread_buffer *b, size_t bytes) {
    if (bytes > b->size) {
        free(b->data);
        b->data = aligned_alloc(64, (bytes + 63) / 64 * 64);
        b->size = b->data ? bytes : 0;
    }
    return b->data;
}

enum { AS_FP32 = 0, AS_BF16 = 1, AS_U8 = 2 }; /* input and output kinds */
enum { W_S8 = 0, W_BF16 = 1 };                /* weight kinds: int8 (u8 inputs, int32 sums) or bf16 (fp32 sums) */

/* A block of 16 values on a uint8 grid: clamp(round(v * scale) + zero point, 0, 255), rounding
   half to even. Six operations: the product is capped at 256 first (NaN stays NaN and converts
   to INT_MIN, as -inf and large negatives do, so it ends at 0 like them), converted with
   rounding, offset in integers, floored at 0, and packed with unsigned saturation at 255. */
static inline __m128i to_u8(__m512 v, __m512 scale, __m512i zp) {
    __m512 x = _mm512_min_ps(_mm512_set1_ps(256.f), _mm512_mul_ps(v, scale)); /* min(a, NaN) is NaN */
    __m512i q = _mm512_cvt_roundps_epi32(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return _mm512_cvtusepi32_epi8(_mm512_max_epi32(_mm512_add_epi32(q, zp), _mm512_setzero_si512()));
}

/* Whether an output of `bytes` at `out` is written around the caches: past STREAM_OUTPUT and on a
   cache line (streaming stores write whole, aligned lines) */
static inline int streamed_output(const void *out, size_t bytes) {
    return bytes > STREAM_OUTPUT && (uintptr_t)out % 64 == 0;
}

typedef struct { /* a finished block of sums waiting for its epilogue */
    const int32_t *acc;
    long m, n0, rows; /* rows == 0: none */
    uint8_t *stage;   /* uint8 results gathered here (rows CHUNK_LARGE_MAX_N apart, from column stage_n0) */
    long stage_n0, flush_width; /* flush_width > 0: the block completes its stage, that many columns wide */
} block_out;

typedef struct {
    const int32_t *colsum_zp;
    const float *col_scale, *bias;
    int gelu;
    void *out;
    int out_kind;
    const float *out_scale;
    int out_zero_point;
    long out_stride; /* elements from one output row to the next */
    int stream; /* fp32 / bf16 rows written past the caches (whole 64-byte lines, aligned) */
} epilogue_args;

/* Rows [r0, r1) of a finished block: int32 sums' scales (fp32 sums: none), bias, GELU, then fp32,
   bf16 or the next layer's uint8. The block's column constants are loaded once; `gelu`, `kind`,
   `stream` and `fp32_sums` are constants in each caller. */
static inline __attribute__((always_inline)) void epilogue_block(const epilogue_args *e, const block_out *b, long r0, long r1,
                                                                 int gelu, int kind, int stream, int fp32_sums) {
    if (r1 > b->rows) r1 = b->rows;
    if (r0 >= r1) return;
    const long n = b->n0;
    __m512i zp0 = _mm512_setzero_si512(), zp1 = zp0;
    __m512 scale0 = _mm512_setzero_ps(), scale1 = scale0;
    if (!fp32_sums) {
        zp0 = _mm512_loadu_si512(e->colsum_zp + n), zp1 = _mm512_loadu_si512(e->colsum_zp + n + 16);
        scale0 = _mm512_loadu_ps(e->col_scale + n), scale1 = _mm512_loadu_ps(e->col_scale + n + 16);
    }
    const __m512 bias0 = _mm512_loadu_ps(e->bias + n), bias1 = _mm512_loadu_ps(e->bias + n + 16);
    __m512 grid0 = _mm512_setzero_ps(), grid1 = grid0;
    __m512i grid_zp = _mm512_setzero_si512();
    if (kind == AS_U8) {
        grid0 = _mm512_loadu_ps(e->out_scale + n), grid1 = _mm512_loadu_ps(e->out_scale + n + 16);
        grid_zp = _mm512_set1_epi32(e->out_zero_point);
    }
    for (long i = r0; i < r1; i++) {
        const int32_t *acc = b->acc + i * BLOCK_N;
        size_t o = (size_t)(b->m + i) * e->out_stride + n;
        __m512 y0, y1;
        if (fp32_sums) {
            y0 = _mm512_add_ps(_mm512_load_ps((const float *)acc), bias0);
            y1 = _mm512_add_ps(_mm512_load_ps((const float *)acc + 16), bias1);
        } else {
            y0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_load_si512(acc), zp0)), scale0, bias0);
            y1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_load_si512(acc + 16), zp1)), scale1, bias1);
        }
        if (gelu && kind == AS_U8) { y0 = gelu_erf_cubic(y0); y1 = gelu_erf_cubic(y1); }
        else if (gelu) { y0 = gelu_erf(y0); y1 = gelu_erf(y1); }
        if (kind == AS_U8) {
            uint8_t *at = b->stage ? b->stage + i * CHUNK_LARGE_MAX_N + (n - b->stage_n0) : (uint8_t *)e->out + o;
            _mm_storeu_si128((__m128i *)at, to_u8(y0, grid0, grid_zp));
            _mm_storeu_si128((__m128i *)(at + 16), to_u8(y1, grid1, grid_zp));
        } else if (kind == AS_BF16 && stream) { /* one whole cache line */
            _mm512_stream_si512((__m512i *)((uint16_t *)e->out + o),
                                _mm512_inserti64x4(_mm512_castsi256_si512((__m256i)_mm512_cvtneps_pbh(y0)), (__m256i)_mm512_cvtneps_pbh(y1), 1));
        } else if (kind == AS_BF16) {
            _mm256_storeu_si256((__m256i *)((uint16_t *)e->out + o), (__m256i)_mm512_cvtneps_pbh(y0));
            _mm256_storeu_si256((__m256i *)((uint16_t *)e->out + o + 16), (__m256i)_mm512_cvtneps_pbh(y1));
        } else if (stream) {
            _mm512_stream_ps((float *)e->out + o, y0);
            _mm512_stream_ps((float *)e->out + o + 16, y1);
        } else {
            _mm512_storeu_ps((float *)e->out + o, y0);
            _mm512_storeu_ps((float *)e->out + o + 16, y1);
        }
    }
}

/* one case per (sums, stream, gelu, kind); uint8 rows are half a cache line: never streamed */
#define EPILOGUE_CASE(sums, stream, gelu, kind) \
    case (sums) * 12 + (stream) * 6 + (gelu) * 3 + (kind): epilogue_block(e, b, r0, r1, gelu, kind, stream, sums); break;
#define EPILOGUE_CASES(sums)                                                                            \
    EPILOGUE_CASE(sums, 0, 0, AS_FP32) EPILOGUE_CASE(sums, 0, 0, AS_BF16) EPILOGUE_CASE(sums, 0, 0, AS_U8) \
    EPILOGUE_CASE(sums, 0, 1, AS_FP32) EPILOGUE_CASE(sums, 0, 1, AS_BF16) EPILOGUE_CASE(sums, 0, 1, AS_U8) \
    EPILOGUE_CASE(sums, 1, 0, AS_FP32) EPILOGUE_CASE(sums, 1, 0, AS_BF16)                                  \
    EPILOGUE_CASE(sums, 1, 1, AS_FP32) EPILOGUE_CASE(sums, 1, 1, AS_BF16)

static inline void epilogue_rows(const epilogue_args *e, const block_out *b, long r0, long r1, int fp32_sums) {
    switch (fp32_sums * 12 + e->stream * 6 + e->gelu * 3 + e->out_kind) {
    EPILOGUE_CASES(0)
    EPILOGUE_CASES(1)
    default: break;
    }
}

/* A finished block's stage: its row block's uint8 results over a chunk of columns, written to out
   (rows `stride` bytes apart) in whole cache lines around the caches (a part line, or one off the
   line grid, plainly). */
static void flush_stage(const block_out *b, uint8_t *out, long stride) {
    uint8_t *dst = out + (size_t)b->m * stride + b->stage_n0;
    for (long i = 0; i < b->rows; i++)
        for (long c = 0; c < b->flush_width; c += 64) {
            uint8_t *to = dst + (size_t)i * stride + c;
            const uint8_t *from = b->stage + i * CHUNK_LARGE_MAX_N + c;
            if (c + 64 <= b->flush_width && (uintptr_t)to % 64 == 0) _mm512_stream_si512((__m512i *)to, _mm512_load_si512(from));
            else memcpy(to, from, b->flush_width - c < 64 ? (size_t)(b->flush_width - c) : 64);
        }
}

/* A walk over the weights of pairs of column tiles in one K slice, a cache line at a time: per
   pair the first tile's run of the slice, then the second's (one contiguous run without slices) */
typedef struct {
    const char *weights;
    size_t pair_bytes;
    long k_blocks, kb0, run_lines; /* lines of one tile's run */
    long pair, tile, left;         /* where the walk is: lines left in this run */
    long lines;                    /* lines left in all */
    const char *at;
} weight_lines;

static inline const char *run_start(const weight_lines *w) {
    return w->weights + w->pair * w->pair_bytes + (w->tile * w->k_blocks + w->kb0) * 1024;
}

/* the next `count` lines into L2 */
static inline void prefetch_lines(weight_lines *w, long count) {
    for (; count > 0 && w->lines > 0; count--, w->lines--) {
        _mm_prefetch(w->at, _MM_HINT_T1);
        w->at += 64;
        if (--w->left == 0 && w->lines > 1) {
            w->pair += w->tile, w->tile ^= 1, w->left = w->run_lines;
            w->at = run_start(w);
        }
    }
}

/* Bytes from one row of a tile input to the next: rows a multiple of 4 KiB apart would all fall in
   one set of the L1 cache (its 12 ways hold 12 of a tile's 16 rows), so such rows get a cache line
   more. The encoder's FFN output layer reads one (4,096 uint8 or bf16 values a row). */
long pb_tile_row_bytes(long bytes) { return bytes % 4096 ? bytes : bytes + 64; }

/* Work handed out to threads in chunks (a linear layer's columns, one sequence's heads): thread t
   owns a run of them, which it takes from the front; once its own are taken it takes the last
   untaken chunk of another's run. Where all threads keep pace this is a fixed share each, in
   order; where another tenant slows one core, the others finish its run. A run's state is one
   word, taken from the front (low half) and from the back (high half), claimed by
   compare-and-swap. */
#define MAX_RUNS 64
typedef struct {
    unsigned long taken[MAX_RUNS];
    long chunks, runs;
} chunk_runs;

static inline long run_begin(const chunk_runs *c, long r) { return c->chunks * r / c->runs; }

/* Called by every thread of a parallel region (at most MAX_RUNS of them) before its first claim:
   `chunks` split into one run per thread, set by one thread and seen by all behind the single's
   barrier */
static void share_chunks(chunk_runs *c, long chunks) {
#pragma omp single
    c->chunks = chunks, c->runs = omp_get_num_threads();
}

/* thread t's next chunk from its own run, or (`steal`) from the back of another's: -1 if none */
static long next_chunk(chunk_runs *c, long t, int steal) {
    for (long i = 0; i < (steal ? c->runs : 1); i++) {
        long r = (t + i) % c->runs, size = run_begin(c, r + 1) - run_begin(c, r);
        unsigned long w = __atomic_load_n(&c->taken[r], __ATOMIC_RELAXED);
        for (;;) {
            long front = (long)(w & 0xffffffffUL), back = (long)(w >> 32);
            if (front + back >= size) break;
            unsigned long next = i == 0 ? w + 1 : w + (1UL << 32);
            if (__atomic_compare_exchange_n(&c->taken[r], &w, next, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
                return i == 0 ? run_begin(c, r) + front : run_begin(c, r + 1) - 1 - back;
        }
    }
    return -1;
}

/* the first column pair of thread t's next chunk of `chunk` pairs; `limit` once none is left */
static inline long first_pair(chunk_runs *c, long t, long chunk, long limit, int steal) {
    long next = next_chunk(c, t, steal);
    return next < 0 ? limit : next * chunk;
}

/* w_kind W_S8: out[m, n] = (sum_k q[m, k] w[k, n] - colsum_zp[n]) * col_scale[n] + bias[n], where
   q = clamp(round(x * in_scale[k]) + zero_point, 0, 255); `packed` holds w as [N/16][K/64][16][64]
   VNNI tiles (amx_kernels.pack_weight). W_BF16: out[m, n] = sum_k bf16(x[m, k]) w[k, n] + bias[n]
   in fp32 sums; `packed` holds w as [N/16][K/32][16][16][2] (in_scale, zero_point, colsum_zp and
   col_scale unused). Optionally GELU(erf) after (gelu_erf_cubic where the output is uint8).
   Requires K * (bytes of a weight) % 64 == 0 and N % 32 == 0. An input of the tiles' own kind (u8
   for int8 weights, bf16 for bf16 ones) is read in place and must hold whole blocks of BLOCK_M
   rows (rows past M are never stored); any other is converted first (its rows pb_tile_row_bytes
   apart). The row blocks of one call are independent, so a row's result does not depend on the
   other rows. x_stride and out_stride: elements from one row of x, and of out, to the next (K
   and N in pb_linear).
   Threads split the columns: where chunks are small and many they are handed out as chunk_runs,
   else each thread keeps a fixed share. Split into K slices, a thread always keeps its share: its
   partial sums wait in its own buffer for the next slice. */
static int linear(const void *x, int x_kind, long x_stride, long M, long K, const float *in_scale, int zero_point,
                  const void *packed, int w_kind, long N, const int32_t *colsum_zp, const float *col_scale,
                  const float *bias, int gelu, void *out, int out_kind, long out_stride, const float *out_scale,
                  int out_zero_point) {
    const int fp32_sums = w_kind == W_BF16, ready = fp32_sums ? AS_BF16 : AS_U8;
    const long row_bytes = K * (fp32_sums ? 2 : 1);
    if (row_bytes % TILE_K || N % BLOCK_N || M < 1 || (fp32_sums && x_kind == AS_U8) || x_stride < K || out_stride < N) return 1;
    long m_pad = (M + BLOCK_M - 1) / BLOCK_M * BLOCK_M;
    /* lda: bytes from one row of the tile input to the next */
    const long lda = x_kind == ready ? x_stride * (fp32_sums ? 2 : 1) : pb_tile_row_bytes(row_bytes);
    uint8_t *q = x_kind == ready ? (uint8_t *)x : grown(&quantized, (size_t)m_pad * lda);
    if (!q) return 2;
    long k_blocks = row_bytes / TILE_K, pairs = N / BLOCK_N;
    chunk_runs shared = {{0}, 0, 0};
#pragma omp parallel
    {
#pragma omp for schedule(static)
        for (long m = 0; m < (x_kind == ready ? 0 : m_pad); m++) {
            uint8_t *row = q + (size_t)m * lda;
            if (m >= M) { memset(row, fp32_sums ? 0 : zero_point, row_bytes); continue; }
            if (fp32_sums) { /* fp32 rounded to bf16 */
                for (long k = 0; k < K; k += 16)
                    _mm256_storeu_si256((__m256i *)((uint16_t *)row + k),
                                        (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps((const float *)x + (size_t)m * x_stride + k)));
                continue;
            }
            const __m512i zp = _mm512_set1_epi32(zero_point);
            for (long k = 0; k < K; k += 16) {
                __m512 v = x_kind == AS_BF16 ? bf16_to_fp32(_mm256_loadu_si256((const __m256i *)((const uint16_t *)x + (size_t)m * x_stride + k)))
                                             : _mm512_loadu_ps((const float *)x + (size_t)m * x_stride + k);
                _mm_storeu_si128((__m128i *)(row + k), to_u8(v, _mm512_loadu_ps(in_scale + k), zp));
            }
        }
        configure_tiles();
        int threads = omp_get_num_threads(), t = omp_get_thread_num();
        long p_begin = pairs * t / threads, p_end = pairs * (t + 1) / threads;
        /* Software pipeline: while the tiles sum block i, the vector units finish block i - 1
           (a slice of its rows after every K step), from the other half of `acc`. */
        int32_t acc[2][BLOCK_M * BLOCK_N] __attribute__((aligned(64)));
        block_out prev = {0};
        int half = 0;
        /* an output larger than the caches keep is written around them: no line is read before
           it is overwritten, and the weights and input keep their place in L2 */
        int stream = out_kind != AS_U8 && streamed_output(out, (size_t)M * N * (out_kind == AS_FP32 ? 4 : 2));
        epilogue_args e = {colsum_zp, col_scale, bias, gelu, out, out_kind, out_scale, out_zero_point, out_stride, stream};
        /* K in slices where the input outgrows L2 but a slice of it and this thread's partial sums
           do not (one sample's rows into the bf16 FFN output layer: 2.3 MB of input, read again
           from L3 for every chunk of weights otherwise): a slice of the input stays in L2 while
           every chunk of weights passes, and the tiles' sums go to memory between slices and come
           back (the same sums in the same order: the same bits) */
        const size_t input_bytes = (size_t)m_pad * row_bytes, partial_bytes = (size_t)m_pad * ((pairs + threads - 1) / threads) * BLOCK_N * 4;
        long slices = 1;
        if (input_bytes > SMALL_INPUT && partial_bytes <= PARTIAL_MAX)
            while (input_bytes / slices > SLICE_INPUT && k_blocks % (slices * 2) == 0) slices *= 2;
        /* balanced where chunks are small (an input that stays in L2: one sample's rows) and many;
           a large input's chunks are a third of a thread's share or more, and taking one from a
           thread only a little behind made an Offline batch 2% slower */
        const int claims = slices == 1 && input_bytes <= SMALL_INPUT && threads <= MAX_RUNS; /* the same on every thread */
        int32_t *partial = slices > 1 ? grown(&partials, partial_bytes) : NULL;
        if (!partial) slices = 1;
        const long slice_kb = k_blocks / slices, step_rows = (BLOCK_M + slice_kb - 1) / slice_kb;
        /* Chunks of columns whose weights stay in L2 while every row block passes; while one chunk
           computes, the next one's weights are prefetched into L2, spread over its K steps (one
           sample's rows read the weights from memory once, so this hides most of that read). */
        const size_t pair_bytes = (size_t)k_blocks * 2048, slice_pair_bytes = (size_t)slice_kb * 2048;
        long chunk = CHUNK_SMALL / slice_pair_bytes > 0 ? CHUNK_SMALL / slice_pair_bytes : 1; /* column pairs */
        if (input_bytes / slices > SMALL_INPUT) {
            chunk = CHUNK_LARGE / pair_bytes;
            /* the bounds hold for int8 weights; bf16 ones take twice the bytes a column */
            long least = CHUNK_LARGE_MIN_N / BLOCK_N / (fp32_sums ? 2 : 1), most = CHUNK_LARGE_MAX_N / BLOCK_N / (fp32_sums ? 2 : 1);
            chunk = chunk < least ? least : chunk > most ? most : chunk;
        }
        /* a large uint8 output (half a cache line a block row) is gathered per row block and chunk,
           in two stages (the previous row block's finishes meanwhile), and streamed in whole lines */
        int stage_u8 = out_kind == AS_U8 && (size_t)M * N > STREAM_OUTPUT && chunk * BLOCK_N <= CHUNK_LARGE_MAX_N;
        uint8_t stages[2][BLOCK_M * CHUNK_LARGE_MAX_N] __attribute__((aligned(64)));
        if (claims) share_chunks(&shared, (pairs + chunk - 1) / chunk);
        /* this thread's chunks: claimed as it starts the one before (so that one's weights can be
           prefetched meanwhile), or its fixed share in order */
        const long limit = claims ? pairs : p_end;
        const char *weights = (const char *)packed;
        for (long slice = 0; slice < slices; slice++) {
            const long kb0 = slice * slice_kb;
            const int last = slice == slices - 1;
            for (long c0 = claims ? first_pair(&shared, t, chunk, limit, 1) : p_begin, c_next; c0 < limit; c0 = c_next) {
                long c1 = c0 + chunk < limit ? c0 + chunk : limit;
                c_next = claims ? first_pair(&shared, t, chunk, limit, 0) : c1;
                long c2 = c_next + chunk < limit ? c_next + chunk : limit;
                /* the next chunk's weights of this slice: per pair two tiles' runs of slice_kb K steps */
                weight_lines next = {weights, pair_bytes, k_blocks, kb0, slice_kb * 16, c_next, 0, slice_kb * 16,
                                     (c2 > c_next ? c2 - c_next : 0) * 2 * slice_kb * 16, NULL};
                next.at = next.lines ? run_start(&next) : NULL;
                long steps = (m_pad / BLOCK_M) * (c1 - c0) * slice_kb, lines_per_step = (next.lines + steps - 1) / steps;
                for (long m = 0; m < m_pad; m += BLOCK_M) {
                    const uint8_t *a = q + (size_t)m * lda + kb0 * TILE_K;
                    const int one_tile = M - m <= 16; /* a last block of at most 16 rows: one A tile */
                    for (long p = c0; p < c1; p++) {
                        const int8_t *b0 = (const int8_t *)weights + p * pair_bytes + kb0 * 1024;
                        const int8_t *b1 = b0 + (size_t)k_blocks * 1024;
                        int32_t *part = partial ? partial + ((m / BLOCK_M) * (p_end - p_begin) + (p - p_begin)) * BLOCK_M * BLOCK_N : NULL;
                        if (slice == 0) {
                            _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
                        } else {
                            _tile_loadd(0, part, BLOCK_N * 4); _tile_loadd(1, part + 16, BLOCK_N * 4);
                            _tile_loadd(2, part + 16 * BLOCK_N, BLOCK_N * 4); _tile_loadd(3, part + 16 * BLOCK_N + 16, BLOCK_N * 4);
                        }
                        for (long kb = 0; kb < slice_kb; kb++) {
                            _tile_loadd(4, a + kb * TILE_K, lda);
                            if (!one_tile) _tile_loadd(5, a + 16 * lda + kb * TILE_K, lda);
                            /* the weights stream (from L2, not kept in L1), so the row block's input stays in L1 */
                            _tile_stream_loadd(6, b0 + kb * 1024, 64);
                            _tile_stream_loadd(7, b1 + kb * 1024, 64);
                            if (fp32_sums) {
                                _tile_dpbf16ps(0, 4, 6); _tile_dpbf16ps(1, 4, 7);
                                if (!one_tile) { _tile_dpbf16ps(2, 5, 6); _tile_dpbf16ps(3, 5, 7); }
                            } else {
                                _tile_dpbusd(0, 4, 6); _tile_dpbusd(1, 4, 7);
                                if (!one_tile) { _tile_dpbusd(2, 5, 6); _tile_dpbusd(3, 5, 7); }
                            }
                            if (last) epilogue_rows(&e, &prev, kb * step_rows, (kb + 1) * step_rows, fp32_sums);
                            prefetch_lines(&next, lines_per_step);
                        }
                        if (!last) { /* the partial sums wait for the next slice */
                            TILE_STORED(0, part, BLOCK_N * 4); TILE_STORED(1, part + 16, BLOCK_N * 4);
                            TILE_STORED(2, part + 16 * BLOCK_N, BLOCK_N * 4); TILE_STORED(3, part + 16 * BLOCK_N + 16, BLOCK_N * 4);
                            continue;
                        }
                        epilogue_rows(&e, &prev, slice_kb * step_rows, BLOCK_M, fp32_sums);
                        if (prev.flush_width) flush_stage(&prev, out, out_stride);
                        int32_t *c = acc[half];
                        TILE_STORED(0, c, BLOCK_N * 4); TILE_STORED(1, c + 16, BLOCK_N * 4);
                        if (!one_tile) { TILE_STORED(2, c + 16 * BLOCK_N, BLOCK_N * 4); TILE_STORED(3, c + 16 * BLOCK_N + 16, BLOCK_N * 4); }
                        prev = (block_out){c, m, p * BLOCK_N, M - m < BLOCK_M ? M - m : BLOCK_M,
                                           stage_u8 ? stages[(m / BLOCK_M) & 1] : NULL, c0 * BLOCK_N,
                                           stage_u8 && p == c1 - 1 ? (c1 - c0) * BLOCK_N : 0};
                        half ^= 1;
                    }
                }
                /* its own run done, a thread takes another's last chunk (not before: it would
                   hold it while this one computed) */
                if (claims && c_next >= limit) c_next = first_pair(&shared, t, chunk, limit, 1);
            }
        }
        epilogue_rows(&e, &prev, 0, BLOCK_M, fp32_sums);
        if (prev.flush_width) flush_stage(&prev, out, out_stride);
        if (stream || stage_u8) _mm_sfence(); /* streamed stores are seen by the next kernel's threads */
        _tile_release();
    }
    return 0;
}
int pb_linear(const void *x, int x_kind, long M, long K, const float *in_scale, int zero_point,
              const void *packed, int w_kind, long N, const int32_t *colsum_zp, const float *col_scale,
              const float *bias, int gelu, void *out, int out_kind, const float *out_scale, int out_zero_point) {
    return linear(x, x_kind, K, M, K, in_scale, zero_point, packed, w_kind, N, colsum_zp, col_scale, bias, gelu, out,
                  out_kind, N, out_scale, out_zero_point);
}

/* ---- attention per sequence on AMX bf16 tiles ---- */
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
    float log2e;        /* log2 e times the scores' multiplier (a power of two, or 1) */
    __m512 mx[SOFTMAX_ROWS], sum[SOFTMAX_ROWS];
} softmax_work;

static inline void softmax_begin(softmax_work *w, const float *s, uint16_t *p, float *inv_sum, long rows, long n, long n32,
                                 float multiplier) {
    w->s = s, w->p = p, w->inv_sum = inv_sum, w->rows = rows, w->n = n, w->n32 = n32;
    w->log2e = 1.44269504f * multiplier;
    w->per_group = 1 + n32 / 32, w->unit = 0;
    w->units = (rows + SOFTMAX_ROWS - 1) / SOFTMAX_ROWS * w->per_group;
    if (rows < 16) memset(p + rows * n32, 0, (16 - rows) * n32 * 2);
}

/* Units [w->unit, until) */
static inline void softmax_until(softmax_work *w, long until) {
    const __m512 log2e = _mm512_set1_ps(w->log2e);
    const long n = w->n, n32 = w->n32, full = n / 16 * 16;
    const __mmask16 tail = (__mmask16)((1u << (n - full)) - 1);
    for (; w->unit < until; w->unit++) {
        long g = w->unit / w->per_group, u = w->unit % w->per_group, r0 = g * SOFTMAX_ROWS;
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
   share, `*done` of `steps` steps taken */
static inline void scores_block(const query_rows *q, const uint32_t *kp, long qb, int dim, long k_steps, float *sb,
                                softmax_work *w, long *done, long steps) {
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
        if (w) softmax_until(w, ++*done * w->units / steps);
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
    scores_block(&q, kp, 0, dim, blocks, s[0], NULL, NULL, 0);
    for (long b = 0; b <= blocks; b++) { /* step b: block b's softmax, block b + 1's scores, block b - 1's P V */
        COMPILER_BARRIER(); /* block b - 1's weights written before the tiles load them */
        long rows = b < blocks ? (n - b * 16 < 16 ? n - b * 16 : 16) : 0;
        long steps = (b + 1 < blocks ? blocks : 0) + (b > 0 ? v_steps : 0), done = 0;
        if (b < blocks) softmax_begin(&w, s[b & 1], p[b & 1], inv_sum[b & 1], rows, n, n32, softmax_scale);
        else w = (softmax_work){0};
        if (b + 1 < blocks) scores_block(&q, kp, b + 1, dim, blocks, s[(b + 1) & 1], &w, &done, steps);
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
                softmax_until(&w, ++done * w.units / steps);
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

/* ---- residual add and LayerNorm, one row at a time ---- */
/* Stores of a row's 64 bytes at `at`: past the caches when `stream` (the row's result is read
   again only after more than the caches hold has passed), else plain */
static inline void store_line(void *at, __m512i v, int stream) {
    if (stream) _mm512_stream_si512((__m512i *)at, v);
    else _mm512_storeu_si512(at, v);
}

static inline int float_kind(int kind) { return kind == AS_FP32 || kind == AS_BF16; }
static inline size_t float_bytes(int kind) { return kind == AS_BF16 ? 2 : 4; } /* a value of a float kind */

/* 64 bf16 values (four groups of 16) at `at` as two whole lines around the caches */
static inline void stream_bf16_lines(uint16_t *at, const __m256i h[4]) {
    store_line(at, _mm512_inserti64x4(_mm512_castsi256_si512(h[0]), h[1], 1), 1);
    store_line(at + 32, _mm512_inserti64x4(_mm512_castsi256_si512(h[2]), h[3], 1), 1);
}

/* 16 values of a row in `kind` (fp32 or bf16) as fp32 */
static inline __m512 load_float(const void *row, long k, int kind) {
    return kind == AS_BF16 ? bf16_to_fp32(_mm256_loadu_si256((const __m256i *)((const uint16_t *)row + k)))
                           : _mm512_loadu_ps((const float *)row + k);
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

/* Row m of pb_add_layernorm */
static void add_layernorm_row(const layernorm_args *a, long m) {
    const void *x = a->x, *residual = a->residual;
    const int x_kind = a->x_kind, r_kind = a->r_kind, out_kind = a->out_kind, q_kind = a->q_kind, q_zp = a->q_zp;
    const int stream = a->stream;
    const float *gamma = a->gamma, *beta = a->beta, *q_scale = a->q_scale, eps = a->eps;
    const long H = a->H;
    void *out = a->out, *q_out = a->q_out;
    float row[8192] __attribute__((aligned(64)));
    const char *a_row = (const char *)x + (size_t)m * H * float_bytes(x_kind);
    const char *b_row = (const char *)residual + (size_t)m * H * float_bytes(r_kind);
    __m512 sum = _mm512_setzero_ps();
    for (long k = 0; k < H; k += 16) {
        __m512 v = _mm512_add_ps(load_float(a_row, k, x_kind), load_float(b_row, k, r_kind));
        _mm512_store_ps(row + k, v);
        sum = _mm512_add_ps(sum, v);
    }
    __m512 mean = _mm512_set1_ps(_mm512_reduce_add_ps(sum) / (float)H), sq = _mm512_setzero_ps();
    for (long k = 0; k < H; k += 16) {
        __m512 d = _mm512_sub_ps(_mm512_load_ps(row + k), mean);
        sq = _mm512_fmadd_ps(d, d, sq);
    }
    __m512 inv = _mm512_set1_ps(1.f / sqrtf(_mm512_reduce_add_ps(sq) / (float)H + eps));
    const __m512i zp = _mm512_set1_epi32(q_zp);
    for (long k = 0; k < H; k += 64) { /* a cache line of uint8 at a time (16 values past H % 64) */
        int parts = H - k < 64 ? (int)(H - k) / 16 : 4, whole = parts == 4 && stream;
        __m128i q[4] = {_mm_setzero_si128(), _mm_setzero_si128(), _mm_setzero_si128(), _mm_setzero_si128()};
        __m256i h[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
        __m256i o[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
        for (int j = 0; j < parts; j++) {
            long c = k + 16 * j;
            __m512 d = _mm512_mul_ps(_mm512_sub_ps(_mm512_load_ps(row + c), mean), inv);
            __m512 y = _mm512_fmadd_ps(d, _mm512_loadu_ps(gamma + c), _mm512_loadu_ps(beta + c));
            if (out_kind == AS_FP32) store_line((float *)out + m * H + c, _mm512_castps_si512(y), whole);
            else {
                o[j] = (__m256i)_mm512_cvtneps_pbh(y);
                if (!whole) _mm256_storeu_si256((__m256i *)((uint16_t *)out + m * H + c), o[j]);
            }
            if (!q_out) continue;
            if (q_kind == AS_BF16) {
                h[j] = (__m256i)_mm512_cvtneps_pbh(y);
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
    }
    return 0;
}

/* ---- BERT's embeddings ---- */
/* out[m] = a[ia[m]] + b[ib[m]] (b NULL: a[ia[m]] alone), rows of H fp32 values (H % 16 == 0);
   indices are checked against the tables' rows (a_rows, b_rows): 1 where one is out of range */
int pb_gather_add(const float *a, long a_rows, const long *ia, const float *b, long b_rows, const long *ib, long M, long H,
                  float *out) {
    if (H % 16) return 1;
    for (long m = 0; m < M; m++)
        if (ia[m] < 0 || ia[m] >= a_rows || (b && (ib[m] < 0 || ib[m] >= b_rows))) return 1;
#pragma omp parallel for schedule(static)
    for (long m = 0; m < M; m++) {
        const float *x = a + ia[m] * H, *y = b ? b + ib[m] * H : NULL;
        for (long k = 0; k < H; k += 16) {
            __m512 v = _mm512_loadu_ps(x + k);
            if (y) v = _mm512_add_ps(v, _mm512_loadu_ps(y + k));
            _mm512_storeu_ps(out + m * H + k, v);
        }
    }
    return 0;
}

/* ---- the QA head ---- */
/* out[m, j] = sum_k x[m, k] w[j, k] + bias[j] for the start and end logits (j = 0, 1), fp32,
   rows in parallel; each row's sums in one order (16 lanes over k, then the lanes' tree), so a
   row's logits do not depend on the other rows. Requires H % 16 == 0. (oneDNN's matmul on fixed
   512-row tiles, padding and all, cost about 0.6 ms more of a 303-token sample.) */
int pb_qa_head(const float *x, long M, long H, const float *w, const float *bias, float *out) {
    if (H % 16 || M < 0) return 1;
#pragma omp parallel for schedule(static)
    for (long m = 0; m < M; m++) {
        __m512 start = _mm512_setzero_ps(), end = _mm512_setzero_ps();
        for (long k = 0; k < H; k += 16) {
            __m512 v = _mm512_loadu_ps(x + m * H + k);
            start = _mm512_fmadd_ps(v, _mm512_loadu_ps(w + k), start);
            end = _mm512_fmadd_ps(v, _mm512_loadu_ps(w + H + k), end);
        }
        out[2 * m] = _mm512_reduce_add_ps(start) + bias[0];
        out[2 * m + 1] = _mm512_reduce_add_ps(end) + bias[1];
    }
    return 0;
}

/* ---- the whole encoder in one call ---- */
/* One linear layer's constants, as pb_linear takes them (int8: in_scale, zero_point, colsum_zp and
   col_scale; bf16: NULL and 0) */
typedef struct {
    const void *packed;
    int w_kind;
    long K, N;
    const float *in_scale;
    int zero_point;
    const int32_t *colsum_zp;
    const float *col_scale, *bias;
    int gelu;
} pb_dense;

/* One BERT layer: Q|K|V (bf16 out), attention output and FFN output (out in dense_kind, fp32 or
   bf16), FFN input (GELU), and the two LayerNorms after the residual adds */
typedef struct {
    pb_dense qkv, o, ffn_in, ffn_out;
    int dense_kind;
    const float *gamma1, *beta1, *gamma2, *beta2;
    float eps1, eps2;
} pb_layer;

static inline int ready_kind(const pb_dense *d) { return d->w_kind == W_BF16 ? AS_BF16 : AS_U8; }

/* the grid a producer writes `d`'s uint8 input on (per column); NULL for a bf16 input */
static inline const float *u8_scale(const pb_dense *d) { return ready_kind(d) == AS_U8 ? d->in_scale : NULL; }

/* layer `d` on input x (rows x_stride elements apart); with `feeds`, the output is that layer's
   tile input (out_kind its kind, rows out_stride elements apart) */
static int dense_call(const pb_dense *d, const void *x, int x_kind, long x_stride, long M, void *out, int out_kind,
                      long out_stride, const pb_dense *feeds) {
    return linear(x, x_kind, x_stride, M, d->K, d->in_scale, d->zero_point, d->packed, d->w_kind, d->N, d->colsum_zp,
                  d->col_scale, d->bias, d->gelu, out, out_kind, out_stride, feeds ? u8_scale(feeds) : NULL,
                  feeds ? feeds->zero_point : 0);
}

/* elements from one row of the FFN's inner tile input to the next (pb_tile_row_bytes) */
static long inter_stride(const pb_layer *L) {
    long size = ready_kind(&L->ffn_out) == AS_U8 ? 1 : 2;
    return pb_tile_row_bytes(L->ffn_in.N * size) / size;
}

/* Built with -DPB_PHASE_TIMES (benchmarks/amx_phases.py), the encoder adds the seconds each of a
   layer's seven kernel calls takes, in order, to pb_phase_seconds; otherwise PHASE is the call. */
#ifdef PB_PHASE_TIMES
#define PHASE_COUNT 7
const int pb_phase_count = PHASE_COUNT;
double pb_phase_seconds[PHASE_COUNT];
#define PHASE(i, call) do { double t0_ = omp_get_wtime(); call; pb_phase_seconds[i] += omp_get_wtime() - t0_; } while (0)
#else
#define PHASE(i, call) call
#endif

/* `count` layers over M tokens, the same kernel calls in the same order as the layer-by-layer
   path (torch_amx's modules), without returning to Python in between (on one 268-token sample
   the interpreter's work between two kernels took about 40 us, after a kernel had evicted its
   state from the caches). hidden [M, H] holds the input and gets the output, in residual_kind
   (fp32 or bf16: the residual stream's; bf16 rows padded to whole blocks of BLOCK_M, since a bf16
   first Q|K|V layer reads them in place); the rest are work buffers: other [M, H] in
   residual_kind, tile_h [m_pad, H] and att [m_pad, H] tile inputs (2 bytes a value), qkv [M, 3H]
   bf16, dense [M, H] fp32, inter [m_pad, N of the FFN input] tile input, its rows
   pb_tile_row_bytes apart.
   Sequences as pb_attention takes them, every token in one (AmxEncoder leaves out the positions
   outside them). */
int pb_encoder(const pb_layer *layers, int count, long M, int heads, int dim, float q_mul, const long *starts,
               const long *lens, long seqs, int residual_kind, void *hidden, void *other, void *tile_h,
               uint16_t *qkv, void *att, void *dense, void *inter) {
    if (!float_kind(residual_kind)) return 1;
    long H = (long)heads * dim;
    int status = 0;
    for (int l = 0; l < count && !status; l++) {
        const pb_layer *L = layers + l;
        const pb_dense *next = l + 1 < count ? &layers[l + 1].qkv : NULL;
        int att_kind = ready_kind(&L->o);
        const long ld = inter_stride(L), N3 = 3 * H;
        PHASE(0, status = l == 0 ? dense_call(&L->qkv, hidden, residual_kind, H, M, qkv, AS_BF16, N3, NULL)
                        : dense_call(&L->qkv, tile_h, ready_kind(&L->qkv), H, M, qkv, AS_BF16, N3, NULL));
        if (status) break;
        PHASE(1, status = pb_attention(qkv, starts, lens, seqs, heads, dim, q_mul, att, att_kind, u8_scale(&L->o), L->o.zero_point));
        PHASE(2, if (!status) status = dense_call(&L->o, att, att_kind, H, M, dense, L->dense_kind, H, NULL));
        PHASE(3, if (!status) status = pb_add_layernorm(dense, L->dense_kind, hidden, residual_kind, L->gamma1, L->beta1,
                                                        L->eps1, M, H, other, residual_kind, tile_h, ready_kind(&L->ffn_in),
                                                        u8_scale(&L->ffn_in), L->ffn_in.zero_point));
        PHASE(4, if (!status) status = dense_call(&L->ffn_in, tile_h, ready_kind(&L->ffn_in), H, M, inter,
                                                  ready_kind(&L->ffn_out), ld, &L->ffn_out));
        PHASE(5, if (!status) status = dense_call(&L->ffn_out, inter, ready_kind(&L->ffn_out), ld, M, dense, L->dense_kind, H, NULL));
        PHASE(6, if (!status) status = pb_add_layernorm(dense, L->dense_kind, other, residual_kind, L->gamma2, L->beta2,
                                                        L->eps2, M, H, hidden, residual_kind, next ? tile_h : NULL,
                                                        next ? ready_kind(next) : AS_U8, next ? u8_scale(next) : NULL,
                                                        next ? next->zero_point : 0));
    }
    return status;
}

/* ---- the ceiling ---- */
/* Tile products on registers only, `iterations` x 4 per thread on every thread: the int8
   operations per second the AMX units issue (2 per multiply-add). */
double pb_amx_int8_issue_rate(long iterations) {
    int threads = 1;
    double start = omp_get_wtime();
#pragma omp parallel
    {
#pragma omp single
        threads = omp_get_num_threads();
        configure_tiles();
        _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
        _tile_zero(4); _tile_zero(5); _tile_zero(6); _tile_zero(7);
        for (long i = 0; i < iterations; i++) {
            _tile_dpbusd(0, 4, 6); _tile_dpbusd(1, 4, 7);
            _tile_dpbusd(2, 5, 6); _tile_dpbusd(3, 5, 7);
        }
        int32_t sink[16 * 16] __attribute__((aligned(64)));
        TILE_STORED(0, sink, 64);
        _tile_release();
    }
    double seconds = omp_get_wtime() - start;
    return (double)threads * iterations * 4 * (16.0 * 16 * 64 * 2) / seconds;
}
