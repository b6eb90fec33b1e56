/* Linear layers on the tiles: int8 (u8 x s8, int32 sums) or bf16 (fp32 sums), with the input's
   quantization before and the scales, bias, GELU and the output's format after. Part of amx.c's
   one translation unit (included there, in order; not compiled alone). */

#define TILE_K 64    /* bytes of K per tile row: 64 int8 or 32 bf16 values */
#define BLOCK_M 32   /* rows per micro-kernel: two A tiles */
#define BLOCK_N 32   /* columns per micro-kernel: two B tiles */
#define ROW_GRID_U8_LEVELS 127 /* W_S8R's grid: steps each side of its zero point */
/* The linear layers' cache sizes and thresholds below may be set at build time (-D NAME=VALUE:
   benchmarks/amx_phases.py --define times a variant) */
#ifndef SMALL_INPUT
#define SMALL_INPUT (1536 * 1024)  /* input bytes that stay in L2 while every chunk of weights passes */
#endif
#ifndef CHUNK_SMALL
#define CHUNK_SMALL (128 * 1024)   /* weight bytes per chunk then: the next chunk streams in meanwhile */
#endif
/* ... and twice that where a column pair's slice of K is at most 64 KiB (K <= 1024 in int8: one
   sample's Q|K|V and FFN input layers; a 274-token sample 2% faster, 2026-12-06; the FFN output
   layer's K = 4096 was slower with it) */
#ifndef CHUNK_SMALL_SHORT
#define CHUNK_SMALL_SHORT (256 * 1024)
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

#ifndef SLICE_INPUT
#define SLICE_INPUT (768 * 1024)   /* input bytes of one K slice, where an input outgrows L2 ... */
#endif
#ifndef PARTIAL_MAX
#define PARTIAL_MAX (768 * 1024)   /* ... and a thread's partial sums (fp32 / int32) do not */
#endif

typedef struct { /* a finished block of sums waiting for its epilogue */
    const int32_t *acc;
    long m, n0, rows; /* rows == 0: none */
    uint8_t *stage;   /* uint8 results gathered here (rows CHUNK_LARGE_MAX_N apart, from column stage_n0) */
    long stage_n0, flush_width; /* flush_width > 0: the block completes its stage, that many columns wide */
    size_t col_at; /* where the block's first column goes in an output row (epilogue_args' planes) */
} block_out;

/* What a finished block's epilogue reads besides its sums; GELU, the output's kind and whether it
   is streamed are linear_columns' constants */
typedef struct {
    const int32_t *colsum_zp;
    const float *col_scale, *bias;
    void *out;
    const float *out_scale;
    int out_zero_point;
    long out_stride; /* elements from one output row to the next */
    const float *row_step; /* W_S16, W_S8R: each input row's grid step (row_grid, row_grid_u8) */
    long plane_cols, plane_stride; /* > 0: columns in planes of plane_cols, plane_stride elements
                                      apart (column n at plane n / plane_cols, n % plane_cols) */
    uint8_t *row_over; /* uint8 out: where set, row m's byte becomes 1 if a value falls past the
                          symmetric grid (|v x out_scale| >= ROW_GRID_U8_LEVELS + 0.5, or NaN) */
} epilogue_args;

/* where column n (a block's first: a plane holds whole blocks) goes in an output row */
static inline size_t column_at(const epilogue_args *e, long n) {
    return e->plane_cols ? (size_t)(n / e->plane_cols) * e->plane_stride + n % e->plane_cols : (size_t)n;
}

/* A finished block's column constants: its int32 sums' zero-point corrections (W_S8) and scales
   (fp32 sums, W_BF16: none), its bias, and the next layer's uint8 grid (kind AS_U8) */
typedef struct {
    __m512i zp0, zp1, grid_zp;
    __m512 scale0, scale1, bias0, bias1, grid0, grid1;
} epilogue_consts;

static inline __attribute__((always_inline)) epilogue_consts block_consts(const epilogue_args *e, long n, int kind,
                                                                          int w_kind) {
    epilogue_consts c = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_ps(),
                         _mm512_setzero_ps(),    _mm512_setzero_ps(),    _mm512_setzero_ps(),    _mm512_setzero_ps(),
                         _mm512_setzero_ps()};
    if (w_kind == W_S8 || w_kind == W_S8R)
        c.zp0 = _mm512_loadu_si512(e->colsum_zp + n), c.zp1 = _mm512_loadu_si512(e->colsum_zp + n + 16);
    if (w_kind != W_BF16) {
        c.scale0 = _mm512_loadu_ps(e->col_scale + n), c.scale1 = _mm512_loadu_ps(e->col_scale + n + 16);
    }
    c.bias0 = _mm512_loadu_ps(e->bias + n), c.bias1 = _mm512_loadu_ps(e->bias + n + 16);
    if (kind == AS_U8) {
        c.grid0 = _mm512_loadu_ps(e->out_scale + n), c.grid1 = _mm512_loadu_ps(e->out_scale + n + 16);
        c.grid_zp = _mm512_set1_epi32(e->out_zero_point);
    }
    return c;
}

/* Rows [r0, r1) of a finished block: int32 sums' scales (W_S16: times the row's grid step; fp32
   sums: none), bias, GELU, then fp32, bf16 or the next layer's uint8, with the block's column
   constants `c`; `gelu`, `kind`, `stream` and `w_kind` are constants where it is inlined
   (linear_columns) */
static inline __attribute__((always_inline)) void epilogue_block(const epilogue_args *e, const block_out *b,
                                                                 const epilogue_consts *c, long r0, long r1, int gelu,
                                                                 int kind, int stream, int w_kind) {
    if (r1 > b->rows) r1 = b->rows;
    if (r0 >= r1) return;
    const long n = b->n0;
    const __m512i zp0 = c->zp0, zp1 = c->zp1, grid_zp = c->grid_zp;
    const __m512 scale0 = c->scale0, scale1 = c->scale1, bias0 = c->bias0, bias1 = c->bias1, grid0 = c->grid0,
                 grid1 = c->grid1;
    for (long i = r0; i < r1; i++) {
        const int32_t *acc = b->acc + i * BLOCK_N;
        size_t o = (size_t)(b->m + i) * e->out_stride + b->col_at;
        __m512 y0, y1;
        if (w_kind == W_BF16) {
            y0 = _mm512_add_ps(_mm512_load_ps((const float *)acc), bias0);
            y1 = _mm512_add_ps(_mm512_load_ps((const float *)acc + 16), bias1);
        } else if (w_kind == W_S16 || w_kind == W_S8R) { /* (sum x column step) x row step + bias */
            const __m512 step = _mm512_set1_ps(e->row_step[b->m + i]);
            y0 = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_load_si512(acc), zp0)), scale0), step, bias0);
            y1 = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_load_si512(acc + 16), zp1)), scale1), step,
                                 bias1);
        } else {
            y0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_load_si512(acc), zp0)), scale0, bias0);
            y1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_load_si512(acc + 16), zp1)), scale1, bias1);
        }
        if (gelu && kind == AS_U8) { y0 = gelu_erf_cubic(y0); y1 = gelu_erf_cubic(y1); }
        else if (gelu) { y0 = gelu_erf(y0); y1 = gelu_erf(y1); }
        if (kind == AS_U8 && e->row_over) {
            const __m512 edge = _mm512_set1_ps(ROW_GRID_U8_LEVELS + 0.5f);
            if (_mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_mul_ps(y0, grid0)), edge, _CMP_NLT_UQ) |
                _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_mul_ps(y1, grid1)), edge, _CMP_NLT_UQ))
                __atomic_store_n(e->row_over + b->m + i, 1, __ATOMIC_RELAXED); /* any thread: the same 1 */
        }
        if (kind == AS_U8) {
            uint8_t *at = b->stage ? b->stage + i * CHUNK_LARGE_MAX_N + (n - b->stage_n0) : (uint8_t *)e->out + o;
            _mm_storeu_si128((__m128i *)at, to_u8(y0, grid0, grid_zp));
            _mm_storeu_si128((__m128i *)(at + 16), to_u8(y1, grid1, grid_zp));
        } else if (kind == AS_BF16 && stream) { /* one whole cache line */
            _mm512_stream_si512((__m512i *)((uint16_t *)e->out + o),
                                _mm512_inserti64x4(_mm512_castsi256_si512(to_bf16(y0)), to_bf16(y1), 1));
        } else if (kind == AS_BF16) {
            _mm256_storeu_si256((__m256i *)((uint16_t *)e->out + o), to_bf16(y0));
            _mm256_storeu_si256((__m256i *)((uint16_t *)e->out + o + 16), to_bf16(y1));
        } else if (stream) {
            _mm512_stream_ps((float *)e->out + o, y0);
            _mm512_stream_ps((float *)e->out + o + 16, y1);
        } else {
            _mm512_storeu_ps((float *)e->out + o, y0);
            _mm512_storeu_ps((float *)e->out + o + 16, y1);
        }
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

#if PB_TILES == 3
static __thread thread_buffer widened_rows; /* a row block of bf16 input as fp32 (linear_columns) */
#endif

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

/* What every thread of one linear call reads: the tile input, the weights, the shapes and the
   epilogue's arguments */
typedef struct {
    const uint8_t *q;      /* tile input, rows lda bytes apart, m_pad of them */
    const void *packed;    /* weights in tile order */
    long M, m_pad, lda, row_bytes, k_blocks, pairs, N;
    chunk_runs *shared;    /* chunks of columns handed out, where they are */
    epilogue_args e;
} linear_job;

/* One thread's part of a linear call (in the parallel region, after the input is quantized):
   its columns of every row block on the tiles, each finished block's epilogue interleaved with
   the next block's tile steps. gelu, kind (the output's), stream and w_kind are constants where
   linear inlines it, one copy per case: the epilogue's branches and its block's column constants
   leave the loop over K steps (one sample's Q|K|V, attention output and FFN output layers 3-6%
   faster, 2026-12-06). */
static inline __attribute__((always_inline)) void linear_columns(const linear_job *j, int gelu, int kind, int stream,
                                                                 int w_kind) {
    configure_tiles();
    const epilogue_args e = j->e;
    const long M = j->M, m_pad = j->m_pad, lda = j->lda, k_blocks = j->k_blocks, pairs = j->pairs, N = j->N;
    const uint8_t *q = j->q;
    uint8_t *out = e.out; /* written here by flush_stage only: uint8 rows */
    const long out_stride = e.out_stride;
    chunk_runs *shared_runs = j->shared;
    int threads = omp_get_num_threads(), t = omp_get_thread_num();
    long p_begin = pairs * t / threads, p_end = pairs * (t + 1) / threads;
    /* Software pipeline: while the tiles sum block i, the vector units finish block i - 1
       (a slice of its rows after every K step), from the other half of `acc`. */
    int32_t acc[2][BLOCK_M * BLOCK_N] __attribute__((aligned(64)));
    block_out prev = {0};
    int half = 0;
    /* K in slices where the input outgrows L2 but a slice of it and this thread's partial sums
       do not (one sample's rows into the bf16 FFN output layer: 2.3 MB of input, read again
       from L3 for every chunk of weights otherwise): a slice of the input stays in L2 while
       every chunk of weights passes, and the tiles' sums go to memory between slices and come
       back (the same sums in the same order: the same bits) */
    const size_t input_bytes = (size_t)m_pad * j->row_bytes, partial_bytes = (size_t)m_pad * ((pairs + threads - 1) / threads) * BLOCK_N * 4;
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
    const size_t small_chunk = slice_pair_bytes <= 64 * 1024 ? CHUNK_SMALL_SHORT : CHUNK_SMALL;
    long chunk = small_chunk / slice_pair_bytes > 0 ? small_chunk / slice_pair_bytes : 1; /* column pairs */
    if (input_bytes / slices > SMALL_INPUT) {
        chunk = CHUNK_LARGE / pair_bytes;
        /* the bounds hold for int8 weights; bf16 and int16 ones take twice the bytes a column */
        const long wide = w_kind == W_BF16 || w_kind == W_S16 ? 2 : 1;
        long least = CHUNK_LARGE_MIN_N / BLOCK_N / wide, most = CHUNK_LARGE_MAX_N / BLOCK_N / wide;
        chunk = chunk < least ? least : chunk > most ? most : chunk;
    }
    /* a large uint8 output (half a cache line a block row) is gathered per row block and chunk,
       in two stages (the previous row block's finishes meanwhile), and streamed in whole lines */
    int stage_u8 = kind == AS_U8 && (size_t)M * N > STREAM_OUTPUT && chunk * BLOCK_N <= CHUNK_LARGE_MAX_N;
    uint8_t stages[2][BLOCK_M * CHUNK_LARGE_MAX_N] __attribute__((aligned(64)));
    if (claims) share_chunks(shared_runs, (pairs + chunk - 1) / chunk);
    /* this thread's chunks: claimed as it starts the one before (so that one's weights can be
       prefetched meanwhile), or its fixed share in order */
    const long limit = claims ? pairs : p_end;
    const char *weights = (const char *)j->packed;
    for (long slice = 0; slice < slices; slice++) {
        const long kb0 = slice * slice_kb;
        const int last = slice == slices - 1;
        for (long c0 = claims ? first_pair(shared_runs, t, chunk, limit, 1) : p_begin, c_next; c0 < limit; c0 = c_next) {
            long c1 = c0 + chunk < limit ? c0 + chunk : limit;
            c_next = claims ? first_pair(shared_runs, t, chunk, limit, 0) : c1;
            long c2 = c_next + chunk < limit ? c_next + chunk : limit;
            /* the next chunk's weights of this slice: per pair two tiles' runs of slice_kb K steps */
            weight_lines next = {weights, pair_bytes, k_blocks, kb0, slice_kb * 16, c_next, 0, slice_kb * 16,
                                 (c2 > c_next ? c2 - c_next : 0) * 2 * slice_kb * 16, NULL};
            next.at = next.lines ? run_start(&next) : NULL;
            long steps = (m_pad / BLOCK_M) * (c1 - c0) * slice_kb, lines_per_step = (next.lines + steps - 1) / steps;
            for (long m = 0; m < m_pad; m += BLOCK_M) {
                const uint8_t *a = q + (size_t)m * lda + kb0 * TILE_K;
                const int one_tile = M - m <= 16; /* a last block of at most 16 rows: one A tile */
#if PB_TILES == 3
                /* bf16 rows widened to fp32 once a row block and chunk, for every column pair of it
                   (soft_wide_block: the bf16 FFN output layers of an Offline batch of 16, 1,811 ->
                   1,418 ms, 2026-12-06, emulated) */
                const long wide_lda = slice_kb * 32 + 16; /* floats: rows 4 KiB multiples apart would share L1 sets */
                float *wide = w_kind == W_BF16 ? grown(&widened_rows, (size_t)BLOCK_M * wide_lda * sizeof(float)) : NULL;
                if (wide) widen_bf16_rows(a, lda, one_tile ? 16 : BLOCK_M, slice_kb * 32, wide, wide_lda);
#endif
                for (long p = c0; p < c1; p++) {
                    const int8_t *b0 = (const int8_t *)weights + p * pair_bytes + kb0 * 1024;
                    const int8_t *b1 = b0 + (size_t)k_blocks * 1024;
                    int32_t *part = partial ? partial + ((m / BLOCK_M) * (p_end - p_begin) + (p - p_begin)) * BLOCK_M * BLOCK_N : NULL;
#if PB_TILES != 1 /* soft tiles: the whole K loop with its sums in registers, then the epilogue */
                    const epilogue_consts pc = block_consts(&e, prev.n0, kind, w_kind);
#if PB_TILES == 3
                    if (wide)
                        soft_wide_block(wide, wide_lda, (const uint8_t *)b0, (const uint8_t *)b1, 1024, slice_kb * 16, one_tile,
                                        slice == 0 ? NULL : part);
                    else
#endif
                    (w_kind == W_BF16 ? soft_block_bf16 : w_kind == W_S16 ? soft_block_s16 : soft_block_u8)(
                        (const uint8_t *)a, lda, (const uint8_t *)b0, (const uint8_t *)b1, 1024, slice_kb * 16, one_tile,
                        slice == 0 ? NULL : part);
                    if (last) epilogue_block(&e, &prev, &pc, 0, slice_kb * step_rows, gelu, kind, stream, w_kind);
                    prefetch_lines(&next, lines_per_step * slice_kb);
#else
                    if (slice == 0) {
                        _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
                    } else {
                        _tile_loadd(0, part, BLOCK_N * 4); _tile_loadd(1, part + 16, BLOCK_N * 4);
                        _tile_loadd(2, part + 16 * BLOCK_N, BLOCK_N * 4); _tile_loadd(3, part + 16 * BLOCK_N + 16, BLOCK_N * 4);
                    }
                    /* the finished block's column constants, once for its whole epilogue */
                    const epilogue_consts pc = block_consts(&e, prev.n0, kind, w_kind);
                    for (long kb = 0; kb < slice_kb; kb++) {
                        _tile_loadd(4, a + kb * TILE_K, lda);
                        if (!one_tile) _tile_loadd(5, a + 16 * lda + kb * TILE_K, lda);
                        /* the weights stream (from L2, not kept in L1), so the row block's input stays in L1 */
                        _tile_stream_loadd(6, b0 + kb * 1024, 64);
                        _tile_stream_loadd(7, b1 + kb * 1024, 64);
                        if (w_kind == W_BF16) { /* (W_S16 never reaches the tiles: linear refuses it) */
                            _tile_dpbf16ps(0, 4, 6); _tile_dpbf16ps(1, 4, 7);
                            if (!one_tile) { _tile_dpbf16ps(2, 5, 6); _tile_dpbf16ps(3, 5, 7); }
                        } else {
                            _tile_dpbusd(0, 4, 6); _tile_dpbusd(1, 4, 7);
                            if (!one_tile) { _tile_dpbusd(2, 5, 6); _tile_dpbusd(3, 5, 7); }
                        }
                        if (last) epilogue_block(&e, &prev, &pc, kb * step_rows, (kb + 1) * step_rows, gelu, kind, stream, w_kind);
                        prefetch_lines(&next, lines_per_step);
                    }
#endif
                    if (!last) { /* the partial sums wait for the next slice */
                        TILE_STORED(0, part, BLOCK_N * 4); TILE_STORED(1, part + 16, BLOCK_N * 4);
                        TILE_STORED(2, part + 16 * BLOCK_N, BLOCK_N * 4); TILE_STORED(3, part + 16 * BLOCK_N + 16, BLOCK_N * 4);
                        continue;
                    }
                    epilogue_block(&e, &prev, &pc, slice_kb * step_rows, BLOCK_M, gelu, kind, stream, w_kind);
                    if (prev.flush_width) flush_stage(&prev, out, out_stride);
                    int32_t *c = acc[half];
                    TILE_STORED(0, c, BLOCK_N * 4); TILE_STORED(1, c + 16, BLOCK_N * 4);
                    if (!one_tile) { TILE_STORED(2, c + 16 * BLOCK_N, BLOCK_N * 4); TILE_STORED(3, c + 16 * BLOCK_N + 16, BLOCK_N * 4); }
                    prev = (block_out){c, m, p * BLOCK_N, M - m < BLOCK_M ? M - m : BLOCK_M,
                                       stage_u8 ? stages[(m / BLOCK_M) & 1] : NULL, c0 * BLOCK_N,
                                       stage_u8 && p == c1 - 1 ? (c1 - c0) * BLOCK_N : 0, column_at(&e, p * BLOCK_N)};
                    half ^= 1;
                }
            }
            /* its own run done, a thread takes another's last chunk (not before: it would
               hold it while this one computed) */
            if (claims && c_next >= limit) c_next = first_pair(shared_runs, t, chunk, limit, 1);
        }
    }
    const epilogue_consts pc = block_consts(&e, prev.n0, kind, w_kind);
    epilogue_block(&e, &prev, &pc, 0, BLOCK_M, gelu, kind, stream, w_kind);
    if (prev.flush_width) flush_stage(&prev, out, out_stride);
    if (stream || stage_u8) _mm_sfence(); /* streamed stores are seen by the next kernel's threads */
    _tile_release();
}

/* one case per (weight kind, stream, gelu, output kind); uint8 rows are half a cache line: never
   streamed */
#define LINEAR_CASE(w, stream, gelu, kind) \
    case (w) * 12 + (stream) * 6 + (gelu) * 3 + (kind): linear_columns(&job, gelu, kind, stream, w); break;
#define LINEAR_CASES(w)                                                                      \
    LINEAR_CASE(w, 0, 0, AS_FP32) LINEAR_CASE(w, 0, 0, AS_BF16) LINEAR_CASE(w, 0, 0, AS_U8) \
    LINEAR_CASE(w, 0, 1, AS_FP32) LINEAR_CASE(w, 0, 1, AS_BF16) LINEAR_CASE(w, 0, 1, AS_U8) \
    LINEAR_CASE(w, 1, 0, AS_FP32) LINEAR_CASE(w, 1, 0, AS_BF16)                               \
    LINEAR_CASE(w, 1, 1, AS_FP32) LINEAR_CASE(w, 1, 1, AS_BF16)

/* The 12-bit layer's input grid: each row on its own, symmetric, ROW_GRID_LEVELS steps each side of
   zero. 12 bits keep its int32 sums from overflowing: 2,047 x 127 x K stays below 2^31 for K up to
   ROW_GRID_MAX_K (BERT's FFN output layer: 4,096). */
#define ROW_GRID_LEVELS 2047
#define ROW_GRID_MAX_K 8260

/* max |x[k] x in_scale[k]| over one row of K values (fp32 or bf16; K % 16 == 0; in_scale NULL: 1) */
static inline float row_peak(const void *x, int x_kind, long K, const float *in_scale) {
    __m512 top = _mm512_setzero_ps();
    for (long k = 0; k < K; k += 16) {
        const __m512 v = load_float(x, k, x_kind);
        top = _mm512_max_ps(top, _mm512_abs_ps(in_scale ? _mm512_mul_ps(v, _mm512_loadu_ps(in_scale + k)) : v));
    }
    return _mm512_reduce_max_ps(top);
}

/* One row of K values (fp32 or bf16; K % 16 == 0) on its grid as int16 at out: round(x x levels /
   max|x|), the factor in fp32 and the product rounded half to even; returns the grid's step,
   max|x| / levels (a row of zeros: all zeros, step 0). */
static float row_grid(const void *x, int x_kind, long K, int16_t *out) {
    const float most = row_peak(x, x_kind, K, NULL);
    if (!(most > 0)) { memset(out, 0, (size_t)K * 2); return 0; }
    const __m512 factor = _mm512_set1_ps((float)ROW_GRID_LEVELS / most);
    const __m512i hi = _mm512_set1_epi32(ROW_GRID_LEVELS), lo = _mm512_set1_epi32(-ROW_GRID_LEVELS);
    for (long k = 0; k < K; k += 16) {
        __m512i q = _mm512_cvt_roundps_epi32(_mm512_mul_ps(load_float(x, k, x_kind), factor),
                                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        q = _mm512_min_epi32(_mm512_max_epi32(q, lo), hi);
        _mm256_storeu_si256((__m256i *)(out + k), _mm512_cvtepi32_epi16(q));
    }
    return most / (float)ROW_GRID_LEVELS;
}

/* One row of K values (fp32 or bf16; K % 16 == 0) times per-channel factors `in_scale` on its own
   8-bit grid as uint8 at out: round(v x levels / max|v|) + zero_point (128: the grid symmetric) for
   v = x x in_scale, half to even; returns the step, max|v| / levels (a row of zeros: all
   zero_point, step 0). */
static float row_grid_u8(const void *x, int x_kind, long K, const float *in_scale, int zero_point, uint8_t *out) {
    const float most = row_peak(x, x_kind, K, in_scale);
    if (!(most > 0)) { memset(out, zero_point, (size_t)K); return 0; }
    const __m512 factor = _mm512_set1_ps((float)ROW_GRID_U8_LEVELS / most);
    const __m512i zp = _mm512_set1_epi32(zero_point);
    for (long k = 0; k < K; k += 16)
        _mm_storeu_si128((__m128i *)(out + k), to_u8(_mm512_mul_ps(load_float(x, k, x_kind), _mm512_loadu_ps(in_scale + k)), factor, zp));
    return most / (float)ROW_GRID_U8_LEVELS;
}

static __thread thread_buffer row_steps; /* a W_S16 or W_S8R call's grid step per input row */

/* w_kind W_S8: out[m, n] = (sum_k q[m, k] w[k, n] - colsum_zp[n]) * col_scale[n] + bias[n], where
   q = clamp(round(x * in_scale[k]) + zero_point, 0, 255); `packed` holds w as [N/16][K/64][16][64]
   VNNI tiles (amx_kernels.pack_weight). W_BF16: out[m, n] = sum_k bf16(x[m, k]) w[k, n] + bias[n]
   in fp32 sums; `packed` holds w as [N/16][K/32][16][16][2] (in_scale, zero_point, colsum_zp and
   col_scale unused). W_S16 (soft-tile builds only): out[m, n] = sum_k q[m, k] w[k, n] x col_scale[n] x
   step[m] + bias[n] in int32 sums, where q is x's row m on its own 12-bit grid (row_grid, whose
   step is step[m]) and w holds int8 values as int16 in W_BF16's order (in_scale, zero_point and
   colsum_zp unused; the input is always put on its grid here: fp32 or bf16). W_S8R: out[m, n] =
   (sum_k q[m, k] w[k, n] - colsum_zp[n]) x col_scale[n] x step[m] + bias[n], where q is row m of x x
   in_scale on its own 8-bit grid around zero_point (row_grid_u8; the input, fp32 or bf16, put on
   it here) and w as for W_S8; or, with x_steps, uint8 rows already on their grids (read in place),
   row m's step x_steps[m] (grids.h). With row_over (uint8 out), row m's byte is set to 1 where a
   value falls past the symmetric grid (the caller zeroes it first).
   Optionally GELU(erf) after (gelu_erf_cubic where the output is uint8).
   Requires K * (bytes of a weight) % 64 == 0 and N % 32 == 0. An input of the tiles' own kind (u8
   for int8 weights, bf16 for bf16 ones) is read in place and must hold whole blocks of BLOCK_M
   rows (rows past M are never stored); any other is converted first (its rows pb_tile_row_bytes
   apart). The row blocks of one call are independent, so a row's result does not depend on the
   other rows. x_stride and out_stride: elements from one row of x, and of out, to the next (K
   and N in pb_linear). plane_cols > 0 (a multiple of BLOCK_N dividing N; fp32 or bf16 out): out
   in planes of plane_cols columns, plane_stride elements apart, each row of a plane out_stride
   elements after the one before (the encoder's Q|K|V, a plane per part and head); 0: none.
   Threads split the columns: where chunks are small and many they are handed out as chunk_runs,
   else each thread keeps a fixed share. Split into K slices, a thread always keeps its share: its
   partial sums wait in its own buffer for the next slice. */
static int linear(const void *x, int x_kind, long x_stride, long M, long K, const float *in_scale, int zero_point,
                  const void *packed, int w_kind, long N, const int32_t *colsum_zp, const float *col_scale,
                  const float *bias, int gelu, void *out, int out_kind, long out_stride, const float *out_scale,
                  int out_zero_point, long plane_cols, long plane_stride, const float *x_steps, uint8_t *row_over) {
    /* given: W_S8R's uint8 rows already on their grids, each with its step (grids.h) */
    const int given = w_kind == W_S8R && x_steps;
    /* ready: the input kind the tiles read in place (none for W_S16: no producer writes its grid) */
    const int wide = w_kind == W_BF16 || w_kind == W_S16;
    const int ready = w_kind == W_S8 || given ? AS_U8 : w_kind == W_BF16 ? AS_BF16 : -1;
    const int row_scaled = w_kind == W_S16 || w_kind == W_S8R;
    const long row_bytes = K * (wide ? 2 : 1);
    if (w_kind < W_S8 || w_kind > W_S8R || (w_kind == W_S16 && (PB_TILES == 1 || K > ROW_GRID_MAX_K))) return 1; /* no int16 tiles */
    if (row_bytes % TILE_K || N % BLOCK_N || M < 1 || ((wide || row_scaled) && x_kind == AS_U8 && !given) || x_stride < K)
        return 1;
    if ((given && x_kind != AS_U8) || (x_steps && !given) || (row_over && out_kind != AS_U8)) return 1;
    if (plane_cols ? plane_cols < 0 || plane_cols % BLOCK_N || N % plane_cols || out_kind == AS_U8 || out_stride < plane_cols ||
                         plane_stride < M * out_stride
                   : out_stride < N)
        return 1;
    long m_pad = (M + BLOCK_M - 1) / BLOCK_M * BLOCK_M;
    /* lda: bytes from one row of the tile input to the next */
    const long lda = x_kind == ready ? x_stride * (wide ? 2 : 1) : pb_tile_row_bytes(row_bytes);
    uint8_t *q = x_kind == ready ? (uint8_t *)x : grown(&quantized, (size_t)m_pad * lda);
    float *own_steps = row_scaled && !given ? grown(&row_steps, (size_t)m_pad * sizeof(float)) : NULL;
    const float *row_step = given ? x_steps : own_steps;
    if (!q || (row_scaled && !row_step)) return 2;
    long k_blocks = row_bytes / TILE_K, pairs = N / BLOCK_N;
    chunk_runs shared = {{0}, 0, 0};
    /* an output larger than the caches keep is written around them: no line is read before it
       is overwritten, and the weights and input keep their place in L2 */
    const int stream = out_kind != AS_U8 && !plane_cols && streamed_output(out, (size_t)M * N * (out_kind == AS_FP32 ? 4 : 2));
    const linear_job job = {q, packed, M, m_pad, lda, row_bytes, k_blocks, pairs, N, &shared,
                            {colsum_zp, col_scale, bias, out, out_scale, out_zero_point, out_stride, row_step, plane_cols, plane_stride,
                             row_over}};
#pragma omp parallel
    {
#pragma omp for schedule(static)
        for (long m = 0; m < (x_kind == ready ? 0 : m_pad); m++) {
            uint8_t *row = q + (size_t)m * lda;
            if (m >= M) {
                memset(row, wide ? 0 : zero_point, row_bytes);
                if (own_steps) own_steps[m] = 0;
                continue;
            }
            if (row_scaled) {
                const uint8_t *at = (const uint8_t *)x + (size_t)m * x_stride * float_bytes(x_kind);
                own_steps[m] = w_kind == W_S16 ? row_grid(at, x_kind, K, (int16_t *)row)
                                               : row_grid_u8(at, x_kind, K, in_scale, zero_point, row);
                continue;
            }
            if (w_kind == W_BF16) { /* fp32 rounded to bf16 */
                for (long k = 0; k < K; k += 16)
                    _mm256_storeu_si256((__m256i *)((uint16_t *)row + k),
                                        to_bf16(_mm512_loadu_ps((const float *)x + (size_t)m * x_stride + k)));
                continue;
            }
            const __m512i zp = _mm512_set1_epi32(zero_point);
            const uint8_t *at = (const uint8_t *)x + (size_t)m * x_stride * float_bytes(x_kind);
            for (long k = 0; k < K; k += 16)
                _mm_storeu_si128((__m128i *)(row + k), to_u8(load_float(at, k, x_kind), _mm512_loadu_ps(in_scale + k), zp));
        }
        switch (w_kind * 12 + stream * 6 + (gelu != 0) * 3 + out_kind) {
        LINEAR_CASES(W_S8)
        LINEAR_CASES(W_BF16)
#if PB_TILES != 1
        LINEAR_CASES(W_S16)
#endif
        LINEAR_CASES(W_S8R)
        default: break;
        }
        THREAD_DONE();
    }
    REGION_IDLE();
    return 0;
}
int pb_linear(const void *x, int x_kind, long M, long K, const float *in_scale, int zero_point,
              const void *packed, int w_kind, long N, const int32_t *colsum_zp, const float *col_scale,
              const float *bias, int gelu, void *out, int out_kind, const float *out_scale, int out_zero_point,
              const float *x_steps) {
    return linear(x, x_kind, K, M, K, in_scale, zero_point, packed, w_kind, N, colsum_zp, col_scale, bias, gelu, out,
                  out_kind, N, out_scale, out_zero_point, 0, 0, x_steps, NULL);
}

/* One linear layer's constants, as linear takes them (int8: in_scale, zero_point, colsum_zp and
   col_scale; bf16: NULL and 0). fixed_scale (W_S8R only; else NULL): the per-column factors of
   the fixed grid its producer writes most rows on (grids.h), whose step is fixed_step */
typedef struct {
    const void *packed;
    int w_kind;
    long K, N;
    const float *in_scale;
    int zero_point;
    const int32_t *colsum_zp;
    const float *col_scale, *bias;
    int gelu;
    const float *fixed_scale;
    float fixed_step;
} pb_dense;
