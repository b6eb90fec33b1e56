/* What every kernel shares: value kinds and conversions, per-thread buffers, stores around the
   caches, and work handed to threads in chunks. Part of amx.c's one translation unit (included
   there, in order; not compiled alone). */

/* 16 bf16 values as fp32 (exact: bf16 is fp32's upper half) */
static inline __m512 bf16_to_fp32(__m256i h) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* `rows` rows of `count` bf16 values (a multiple of 16; rows `stride` bytes apart) as fp32 at out,
   rows `out_stride` floats apart (soft_wide_block's input) */
static inline void widen_bf16_rows(const uint8_t *a, long stride, long rows, long count, float *out, long out_stride) {
    for (long r = 0; r < rows; r++)
        for (long k = 0; k < count; k += 16)
            _mm512_store_ps(out + r * out_stride + k, bf16_to_fp32(_mm256_loadu_si256((const __m256i *)(a + r * stride + k * 2))));
}

#ifndef __AVX512BF16__
/* 16 fp32 values rounded to bf16 as vcvtneps2bf16 rounds them, each left in its fp32 lane (the
   fp32 value of the bf16, low half zero), in integer instructions: to nearest even; a NaN stays a
   quiet NaN, a denormal becomes a zero of its sign (the same bits as the instruction on 32 million
   random values with every special case, 2026-12-06). to_bf16 without AVX512_BF16, and the
   softmax's weights on the avx512-vnni build, which P V reads as fp32. */
static inline __m512 bf16_rounded(__m512 v) {
    const __m512i x = _mm512_castps_si512(v), upper = _mm512_set1_epi32((int)0xffff0000u);
    const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(x, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_and_si512(_mm512_add_epi32(_mm512_add_epi32(x, _mm512_set1_epi32(0x7fff)), odd), upper);
    const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    const __mmask16 tiny = _mm512_testn_epi32_mask(x, _mm512_set1_epi32(0x7f800000)); /* zero or denormal */
    r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(_mm512_and_si512(x, upper), _mm512_set1_epi32(0x400000)));
    r = _mm512_mask_mov_epi32(r, tiny, _mm512_and_si512(x, _mm512_set1_epi32((int)0x80000000u)));
    return _mm512_castsi512_ps(r);
}
#endif

/* 16 fp32 values rounded to bf16 as vcvtneps2bf16 rounds them: the instruction where the build has
   AVX512_BF16, else bf16_rounded's upper halves (the avx512-vnni tiles) */
static inline __m256i to_bf16(__m512 v) {
#ifdef __AVX512BF16__
    return (__m256i)_mm512_cvtneps_pbh(v);
#else
    return _mm512_cvtepi32_epi16(_mm512_srli_epi32(_mm512_castps_si512(bf16_rounded(v)), 16));
#endif
}

/* 32 values rounded to bf16: lo's 16 first, then hi's (vcvtne2ps2bf16) */
static inline __m512i to_bf16_pair(__m512 hi, __m512 lo) {
#ifdef __AVX512BF16__
    return (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
#else
    return _mm512_inserti64x4(_mm512_castsi256_si512(to_bf16(lo)), to_bf16(hi), 1);
#endif
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

/* `count` parts of `sizes` bytes in one block of buffer b (grown), each on a cache line */
static int thread_parts(thread_buffer *b, void **parts, const size_t *sizes, int count) {
    size_t total = 0;
    for (int i = 0; i < count; i++) total += (sizes[i] + 63) / 64 * 64;
    char *at = grown(b, total);
    if (!at) return 2;
    for (int i = 0; i < count; i++) parts[i] = at, at += (sizes[i] + 63) / 64 * 64;
    return 0;
}

enum { AS_FP32 = 0, AS_BF16 = 1, AS_U8 = 2 }; /* input and output kinds */

static inline int float_kind(int kind) { return kind == AS_FP32 || kind == AS_BF16; }
static inline size_t float_bytes(int kind) { return kind == AS_BF16 ? 2 : 4; } /* a value of a float kind */

/* 16 values of a row in `kind` (fp32 or bf16) as fp32 */
static inline __m512 load_float(const void *row, long k, int kind) {
    return kind == AS_BF16 ? bf16_to_fp32(_mm256_loadu_si256((const __m256i *)((const uint16_t *)row + k)))
                           : _mm512_loadu_ps((const float *)row + k);
}
/* weight kinds: int8 (u8 inputs, int32 sums), bf16 (fp32 sums), int8 values held as int16 in
   bf16's layout, for inputs on a 12-bit grid per row (int16 pairs, int32 sums; soft tiles only), or
   int8 for inputs on an 8-bit grid per row (u8 with zero point 128 after per-channel factors) */
enum { W_S8 = 0, W_BF16 = 1, W_S16 = 2, W_S8R = 3 };

/* A block of 16 values on a uint8 grid: clamp(round(v * scale) + zero point, 0, 255), rounding
   half to even. Six operations: the product is capped at 256 first (NaN stays NaN and converts
   to INT_MIN, as -inf and large negatives do, so it ends at 0 like them), converted with
   rounding, offset in integers, floored at 0, and packed with unsigned saturation at 255. */
static inline __m128i to_u8(__m512 v, __m512 scale, __m512i zp) {
    __m512 x = _mm512_min_ps(_mm512_set1_ps(256.f), _mm512_mul_ps(v, scale)); /* min(a, NaN) is NaN */
    __m512i q = _mm512_cvt_roundps_epi32(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return _mm512_cvtusepi32_epi8(_mm512_max_epi32(_mm512_add_epi32(q, zp), _mm512_setzero_si512()));
}

/* Output bytes past which the output bypasses the caches. 4 MiB until 2026-12-06, when keeping an
   Offline batch's outputs (up to 38 MB for 16 samples of 384 tokens) in this VM's share of L3
   made a batch 5-9% faster on the Emerald Rapids Xeon (the next kernel reads them from there:
   attention and add+LayerNorm 20-35% faster, Q|K|V up to 10% slower); on an earlier Xeon with
   older kernels the two had tied. Streaming stays for larger outputs. */
#ifndef STREAM_OUTPUT
#define STREAM_OUTPUT (64L * 1024 * 1024)
#endif

/* Whether an output of `bytes` at `out` is written around the caches: past STREAM_OUTPUT and on a
   cache line (streaming stores write whole, aligned lines) */
static inline int streamed_output(const void *out, size_t bytes) {
    return bytes > STREAM_OUTPUT && (uintptr_t)out % 64 == 0;
}

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

/* Built with -DPB_PHASE_TIMES (benchmarks/amx_phases.py), the encoder adds up the seconds of each
   of a layer's seven kernel calls (pb_phase_seconds, PHASE in encoder.h) and how long the first
   thread done waited for the last at the end of each call's parallel region (pb_idle_seconds):
   each thread notes when its share is done (THREAD_DONE, before the region's closing barrier),
   the region adds the spread after it (REGION_IDLE) */
#ifdef PB_PHASE_TIMES
#define PHASE_COUNT 7
const int pb_phase_count = PHASE_COUNT;
double pb_phase_seconds[PHASE_COUNT], pb_idle_seconds[PHASE_COUNT];
static int phase_now = -1; /* the call running (-1: none of the seven) */
static double thread_done[MAX_RUNS];
static int done_threads; /* the region's */
#define THREAD_DONE() (thread_done[omp_get_thread_num() % MAX_RUNS] = omp_get_wtime(), done_threads = omp_get_num_threads())
#define REGION_IDLE() region_idle()
static void region_idle(void) {
    double first = thread_done[0], last = thread_done[0];
    for (int i = 1; i < done_threads && i < MAX_RUNS; i++) {
        first = thread_done[i] < first ? thread_done[i] : first;
        last = thread_done[i] > last ? thread_done[i] : last;
    }
    if (phase_now >= 0) pb_idle_seconds[phase_now] += last - first;
}
#else
#define THREAD_DONE() (void)0
#define REGION_IDLE() (void)0
#endif

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
