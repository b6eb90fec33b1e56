/* Where AMX tile products wait, on one core (benchmarks/amx_overlap.py builds and runs this):
   1. vector work beside four tile products on registers: each kind alone, then both in one loop;
   2. the linear kernel's 2x2 step (two A tiles, two B tiles, four products) with its operands in
      L1 or streamed from L2;
   3. the softmax's exps beside that step, their scores in L1 or L2.
   Each line: a name and rdtsc ticks per iteration (the best of several runs). */
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <x86intrin.h>

#define BARRIER() __asm__ __volatile__("" ::: "memory")
#define ITERATIONS 2000
#define RUNS 20

typedef struct { uint8_t palette, start_row, reserved[14]; uint16_t colsb[16]; uint8_t rows[16]; } tile_config;

static void configure(void) {
    tile_config c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int i = 0; i < 8; i++) { c.rows[i] = 16; c.colsb[i] = 64; }
    BARRIER();
    _tile_loadconfig(&c);
}

static inline void four_products(void) {
    _tile_dpbf16ps(0, 4, 6); _tile_dpbf16ps(1, 4, 7); _tile_dpbf16ps(2, 5, 6); _tile_dpbf16ps(3, 5, 7);
}

/* 2^t for t <= 0 in the attention kernel's instructions (floor, degree-4 polynomial, scale; the
   coefficients rounded: these loops time it, nothing reads the values) */
#define EXP2(W, T, R)                                                                               \
    do {                                                                                            \
        W f = _mm##R##_reduce_ps(T, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);                     \
        W p = _mm##R##_set1_ps(0.0135f);                                                            \
        p = _mm##R##_fmadd_ps(p, f, _mm##R##_set1_ps(0.0520f));                                     \
        p = _mm##R##_fmadd_ps(p, f, _mm##R##_set1_ps(0.2414f));                                     \
        p = _mm##R##_fmadd_ps(p, f, _mm##R##_set1_ps(0.6930f));                                     \
        p = _mm##R##_fmadd_ps(p, f, _mm##R##_set1_ps(1.0f));                                        \
        T = _mm##R##_scalef_ps(p, T);                                                               \
    } while (0)

static float scores[1 << 16] __attribute__((aligned(64)));
static float weights[1 << 16] __attribute__((aligned(64)));

/* `values` groups of 16 scores a loop: load, scale, exp, sum, store (512- or 256-bit registers) */
static uint64_t softmax_like(int products, int values, int wide) {
    __m512 sum = _mm512_setzero_ps();
    __m256 sum8 = _mm256_setzero_ps();
    const __m512 k = _mm512_set1_ps(1.44f), m = _mm512_set1_ps(3.f);
    const __m256 k8 = _mm256_set1_ps(1.44f), m8 = _mm256_set1_ps(3.f);
    long at = 0;
    uint64_t start = __rdtsc();
    for (int i = 0; i < ITERATIONS; i++) {
        if (products) four_products();
        for (int v = 0; v < values * (wide ? 1 : 2); v++, at = (at + (wide ? 16 : 8)) & ((1 << 16) - 1)) {
            if (wide) {
                __m512 t = _mm512_fmsub_ps(_mm512_load_ps(scores + at), k, m);
                EXP2(__m512, t, 512);
                sum = _mm512_add_ps(sum, t);
                _mm512_store_ps(weights + at, t);
            } else {
                __m256 t = _mm256_fmsub_ps(_mm256_load_ps(scores + at), k8, m8);
                EXP2(__m256, t, 256);
                sum8 = _mm256_add_ps(sum8, t);
                _mm256_store_ps(weights + at, t);
            }
        }
    }
    uint64_t ticks = __rdtsc() - start;
    volatile float sink = _mm512_reduce_add_ps(sum) + sum8[0];
    (void)sink;
    return ticks;
}

/* `chain` dependent FMAs in each of 8 independent chains a loop */
static uint64_t fma_chains(int products, int chain) {
    const __m512 k = _mm512_set1_ps(0.9999f);
    __m512 a0 = _mm512_set1_ps(1.f), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    uint64_t start = __rdtsc();
    for (int i = 0; i < ITERATIONS; i++) {
        if (products) four_products();
        for (int j = 0; j < chain; j++) {
            a0 = _mm512_fmadd_ps(a0, k, k); a1 = _mm512_fmadd_ps(a1, k, k); a2 = _mm512_fmadd_ps(a2, k, k);
            a3 = _mm512_fmadd_ps(a3, k, k); a4 = _mm512_fmadd_ps(a4, k, k); a5 = _mm512_fmadd_ps(a5, k, k);
            a6 = _mm512_fmadd_ps(a6, k, k); a7 = _mm512_fmadd_ps(a7, k, k);
        }
        __asm__ __volatile__("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5), "+v"(a6), "+v"(a7));
    }
    uint64_t ticks = __rdtsc() - start;
    volatile float sink = _mm512_reduce_add_ps(_mm512_add_ps(a0, a7));
    (void)sink;
    return ticks;
}

typedef uint64_t (*loop_fn)(int products, int size, int wide);
static uint64_t fma_loop(int products, int size, int wide) { (void)wide; return fma_chains(products, size); }

/* tile products alone, the vector work alone, both: ticks a loop */
static void beside(const char *name, loop_fn f, int size, int wide) {
    uint64_t best[3] = {~0ull, ~0ull, ~0ull};
    for (int r = 0; r < RUNS; r++) {
        uint64_t t0 = f(1, 0, wide), t1 = f(0, size, wide), t2 = f(1, size, wide);
        if (t0 < best[0]) best[0] = t0;
        if (t1 < best[1]) best[1] = t1;
        if (t2 < best[2]) best[2] = t2;
    }
    printf("beside|%s|%.1f|%.1f|%.1f\n", name, best[0] / (double)ITERATIONS, best[1] / (double)ITERATIONS,
           best[2] / (double)ITERATIONS);
}

/* One thread's share of a 274-row Q|K|V layer (9 blocks of 32 rows, 48 column pairs, K = 1024):
   A in L1 (a block's 32 KB), B (3 MB) from L2 with the streaming load or the plain one, or a B
   tile from L1; ticks a step of four products. With `exps`, that many softmax exps of 16 scores
   (as softmax_like's, their weights stored in bf16 pairs) after each step, the scores cycling
   through `score_floats` (how 4: the exps alone, no tiles) */
#define BLOCKS 9
#define PAIRS 48
#define K_STEPS 16
#define SCORES_L2 (274 * 528) /* one 274-token head's scores, rows 528 floats apart: 578 KB */
#define SCORES_L1 (16 * 288)  /* 16 rows of them, unpadded: 18 KB */
static uint8_t *input_rows, *packed;
static int32_t sums[4][256] __attribute__((aligned(64)));
static float head_scores[SCORES_L2] __attribute__((aligned(64)));
static uint16_t head_weights[SCORES_L2] __attribute__((aligned(64)));

static inline void exps_of(int exps, long score_floats, long *at, __m512 *sum) {
    const __m512 k = _mm512_set1_ps(1.44f), m = _mm512_set1_ps(3.f);
    for (int v = 0; v < exps; v += 2, *at = *at + 32 < score_floats ? *at + 32 : 0) { /* both sizes: 32s */
        __m512 t0 = _mm512_fmsub_ps(_mm512_load_ps(head_scores + *at), k, m);
        __m512 t1 = _mm512_fmsub_ps(_mm512_load_ps(head_scores + *at + 16), k, m);
        EXP2(__m512, t0, 512);
        EXP2(__m512, t1, 512);
        *sum = _mm512_add_ps(*sum, _mm512_add_ps(t0, t1));
        _mm512_store_si512(head_weights + *at, (__m512i)_mm512_cvtne2ps_pbh(t1, t0));
    }
}

static uint64_t linear_steps(int how, int exps, long score_floats) {
    __m512 sum = _mm512_setzero_ps();
    long at = 0;
    uint64_t start = __rdtsc();
    for (long m = 0; m < BLOCKS; m++) {
        const uint8_t *a = input_rows + m * 32 * 1024;
        for (long p = 0; p < PAIRS; p++) {
            const uint8_t *b0 = packed + p * K_STEPS * 2048, *b1 = b0 + K_STEPS * 1024;
            if (how == 4) { /* the exps alone */
                for (long kb = 0; kb < K_STEPS; kb++) exps_of(exps, score_floats, &at, &sum);
                BARRIER();
                continue;
            }
            _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
            for (long kb = 0; kb < K_STEPS; kb++) {
                if (how == 3) { /* the products alone, on registers */
                    _tile_dpbusd(0, 4, 6); _tile_dpbusd(1, 4, 7); _tile_dpbusd(2, 5, 6); _tile_dpbusd(3, 5, 7);
                    continue;
                }
                _tile_loadd(4, a + kb * 64, 1024);
                _tile_loadd(5, a + 16 * 1024 + kb * 64, 1024);
                if (how == 0) { _tile_stream_loadd(6, b0 + kb * 1024, 64); _tile_stream_loadd(7, b1 + kb * 1024, 64); }
                else if (how == 1) { _tile_loadd(6, b0 + kb * 1024, 64); _tile_loadd(7, b1 + kb * 1024, 64); }
                else { _tile_loadd(6, packed, 64); _tile_loadd(7, packed + 1024, 64); }
                _tile_dpbusd(0, 4, 6); _tile_dpbusd(1, 4, 7); _tile_dpbusd(2, 5, 6); _tile_dpbusd(3, 5, 7);
                exps_of(exps, score_floats, &at, &sum);
            }
            _tile_stored(0, sums[0], 64); _tile_stored(1, sums[1], 64);
            _tile_stored(2, sums[2], 64); _tile_stored(3, sums[3], 64);
            BARRIER();
        }
    }
    uint64_t ticks = __rdtsc() - start;
    volatile float sink = _mm512_reduce_add_ps(sum);
    (void)sink;
    return ticks;
}

/* every way of loading, alternating within each run (a busy moment of the host then slows all of
   them, not one), the best of each */
static void linear_ways(void) {
    static const struct { const char *name; int how; } ways[] = {
        {"four int8 products on registers, no loads", 3},
        {"A from L1, B streamed from L2 (the kernel's loads)", 0},
        {"A from L1, B plainly from L2", 1},
        {"A and B from L1", 2},
    };
    enum { WAYS = sizeof ways / sizeof *ways };
    uint64_t best[WAYS];
    for (int w = 0; w < WAYS; w++) best[w] = ~0ull;
    for (int r = 0; r < RUNS; r++)
        for (int w = 0; w < WAYS; w++) {
            uint64_t t = linear_steps(ways[w].how, 0, SCORES_L1);
            if (t < best[w]) best[w] = t;
        }
    for (int w = 0; w < WAYS; w++)
        printf("linear|%s|%.1f\n", ways[w].name, best[w] / (double)(BLOCKS * PAIRS * K_STEPS));
}

/* the softmax's exps beside the linear kernel's steps (the kernel's loads): could a head's softmax
   run under the Q|K|V layer's tiles? Its scores from an L1-sized block or from L2 */
static void exps_beside_linear(const char *name, int exps, long score_floats) {
    uint64_t best[3] = {~0ull, ~0ull, ~0ull};
    for (int r = 0; r < RUNS / 2; r++) {
        uint64_t t[3] = {linear_steps(0, 0, score_floats), linear_steps(4, exps, score_floats), linear_steps(0, exps, score_floats)};
        for (int i = 0; i < 3; i++) best[i] = t[i] < best[i] ? t[i] : best[i];
    }
    const double steps = BLOCKS * PAIRS * K_STEPS;
    printf("softmax|%s|%.1f|%.1f|%.1f\n", name, best[0] / steps, best[1] / steps, best[2] / steps);
}

int main(void) {
    if (syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */)) {
        fprintf(stderr, "the kernel refused the AMX tiles\n");
        return 1;
    }
    configure(); /* which zeroes every tile */
    for (int i = 0; i < (1 << 16); i++) scores[i] = (float)(i % 100) / 50.f - 1.f;
    input_rows = aligned_alloc(64, BLOCKS * 32 * 1024);
    packed = aligned_alloc(64, PAIRS * K_STEPS * 2048);
    if (!input_rows || !packed) return 1;
    memset(input_rows, 1, BLOCKS * 32 * 1024);
    memset(packed, 1, PAIRS * K_STEPS * 2048);
    beside("64 FMAs, 8 chains 8 deep", fma_loop, 8, 1);
    beside("128 FMAs, 8 chains 16 deep", fma_loop, 16, 1);
    beside("8 exps of 16 values, 512-bit", softmax_like, 8, 1);
    beside("16 exps of 16 values, 512-bit", softmax_like, 16, 1);
    beside("32 exps of 16 values, 512-bit", softmax_like, 32, 1);
    beside("16 exps of 16 values, 256-bit", softmax_like, 16, 0);
    beside("32 exps of 16 values, 256-bit", softmax_like, 32, 0);
    linear_ways();
    for (long i = 0; i < SCORES_L2; i++) head_scores[i] = (float)(i % 100) / 50.f - 1.f;
    exps_beside_linear("4 exps a step, scores in L1 (18 KB)", 4, SCORES_L1);
    exps_beside_linear("6 exps a step, scores in L1 (18 KB)", 6, SCORES_L1);
    exps_beside_linear("8 exps a step, scores in L1 (18 KB)", 8, SCORES_L1);
    exps_beside_linear("4 exps a step, scores from L2 (578 KB)", 4, SCORES_L2);
    exps_beside_linear("6 exps a step, scores from L2 (578 KB)", 6, SCORES_L2);
    return 0;
}
