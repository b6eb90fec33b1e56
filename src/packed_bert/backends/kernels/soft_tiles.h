/* The AMX tile operations the kernels use, on AVX-512 VNNI vector instructions instead, for CPUs
   without tiles: a build without AMX (amx_kernels.build(tiles="avx512-bf16"), AMD Zen 4 and 5) or
   without AVX512_BF16 as well ("avx512-vnni", Intel Xeon 2nd and 3rd gen) compiles every kernel
   against these. Part of amx.c's one translation unit (included by tiles.h; not compiled alone).

   A tile is where its 16 rows of 64 bytes are: a load only notes its address and stride, and a
   product reads the rows then. Every tile load in the kernels is followed by its products before
   that memory is written again, so this reads what the tiles would have held; a product's sums go
   to the tile's own 1 KiB, where a store copies them from. int8 products are exact integer sums,
   as on the tiles: the same bits. bf16 products (vdpbf16ps) add each pair's two products in
   another order than the tiles do, so fp32 sums may differ in their last bit; without AVX512_BF16
   each pair is two fp32 FMAs in vdpbf16ps's order (odd element first), which give its bits: a
   product of two bf16 values is exact in fp32, so one rounding per addition either way. */

#ifndef SOFT_TILES_H
#define SOFT_TILES_H

typedef struct {
    uint8_t own[8][1024] __attribute__((aligned(64))); /* each tile's sums once a product wrote them */
    const uint8_t *at[8];                              /* where each tile's rows are */
    long stride[8];                                    /* bytes from one row to the next */
} soft_tile_state;
static __thread soft_tile_state soft_tiles;

/* the products soft_tile_block computes: u8 x s8 quads and bf16 pairs (the tiles' two), and int16
   pairs (vpdpwssd), each into 32-bit sums */
enum { SOFT_U8 = 0, SOFT_BF16 = 1, SOFT_S16 = 2 };

/* GCC declares the AMX intrinsics with a target pragma whatever the flags: ours replace them */
#undef _tile_loadd
#undef _tile_stream_loadd
#undef _tile_stored
#undef _tile_zero
#undef _tile_dpbusd
#undef _tile_dpbf16ps
#define _tile_loadd(t, base, stride) soft_tile_load(t, base, stride)
#define _tile_stream_loadd(t, base, stride) soft_tile_load(t, base, stride)
#define _tile_stored(t, base, stride) soft_tile_store(t, base, stride)
#define _tile_zero(t) soft_tile_zero(t)
#define _tile_dpbusd(c, a, b) soft_tile_dpbusd(c, a, b)
#define _tile_dpbf16ps(c, a, b) soft_tile_dpbf16ps(c, a, b)
#define _tile_loadconfig(config) ((void)(config))
#define _tile_release() ((void)0)

static inline __attribute__((always_inline)) void soft_tile_load(int t, const void *base, long stride) {
    soft_tiles.at[t] = (const uint8_t *)base, soft_tiles.stride[t] = stride;
}

static inline __attribute__((always_inline)) void soft_tile_zero(int t) {
    for (int r = 0; r < 16; r++) _mm512_store_si512(soft_tiles.own[t] + r * 64, _mm512_setzero_si512());
    soft_tiles.at[t] = soft_tiles.own[t], soft_tiles.stride[t] = 64;
}

static inline __attribute__((always_inline)) void soft_tile_store(int t, void *base, long stride) {
    for (int r = 0; r < 16; r++)
        _mm512_storeu_si512((uint8_t *)base + r * stride, _mm512_loadu_si512(soft_tiles.at[t] + r * soft_tiles.stride[t]));
}

/* Four rows of products in one asm statement (GCC's own code for the tied sums moved them between
   registers at every step: pairs of products at 80% of the vector units' peak against 82-86% here,
   one core, operands in L1 and L2): row r's 32-bit group of A broadcast from P + r * S, times each B vector, into C<r> (and
   D<r> with a second B). OP: vpdpbusd (u8 x s8 into int32), vpdpwssd (int16 pairs into int32) or vdpbf16ps (bf16 pairs into
   fp32). */
#define SOFT_ROW1(OP, ADDR, I) "vpbroadcastd " ADDR ", %[t]\n\t" OP " %[b0], %[t], %[c" #I "]\n\t"
#define SOFT_ROW2(OP, ADDR, I) SOFT_ROW1(OP, ADDR, I) OP " %[b1], %[t], %[d" #I "]\n\t"
#define SOFT_ROWS(ROW, OP) \
    ROW(OP, "(%[p])", 0) ROW(OP, "(%[p],%[s],1)", 1) ROW(OP, "(%[p],%[s],2)", 2) ROW(OP, "(%[p],%[s3],1)", 3)
#define SOFT_FOUR_ROWS(OP, C, P, STRIDE, B)                                                                   \
    __asm__(SOFT_ROWS(SOFT_ROW1, OP)                                                                          \
            : [c0] "+v"((C)[0]), [c1] "+v"((C)[1]), [c2] "+v"((C)[2]), [c3] "+v"((C)[3]), [t] "=&v"(t)     \
            : [b0] "v"(B), [p] "r"(P), [s] "r"(STRIDE), [s3] "r"(3 * (STRIDE))                             \
            : "memory")
#define SOFT_FOUR_ROWS2(OP, C, D, P, STRIDE, B, B1)                                                          \
    __asm__(SOFT_ROWS(SOFT_ROW2, OP)                                                                          \
            : [c0] "+v"((C)[0]), [c1] "+v"((C)[1]), [c2] "+v"((C)[2]), [c3] "+v"((C)[3]), [d0] "+v"((D)[0]),  \
              [d1] "+v"((D)[1]), [d2] "+v"((D)[2]), [d3] "+v"((D)[3]), [t] "=&v"(t)                         \
            : [b0] "v"(B), [b1] "v"(B1), [p] "r"(P), [s] "r"(STRIDE), [s3] "r"(3 * (STRIDE))               \
            : "memory")

/* The same four rows of bf16 pair products without AVX512_BF16: the group broadcast, its odd
   bf16 (the upper half) masked and its even one shifted up, each times B's odd or even values
   (O<n>, E<n>: B with the same split) in fp32 FMAs, odd first as vdpbf16ps sums them */
#define SOFT_FMA_ROW1(ADDR, I)                                                                            \
    "vpbroadcastd " ADDR ", %[t]\n\t" "vpslld $16, %[t], %[u]\n\t" "vpandd %[hi], %[t], %[t]\n\t"         \
    "vfmadd231ps %[o0], %[t], %[c" #I "]\n\t" "vfmadd231ps %[e0], %[u], %[c" #I "]\n\t"
#define SOFT_FMA_ROW2(ADDR, I) \
    SOFT_FMA_ROW1(ADDR, I) "vfmadd231ps %[o1], %[t], %[d" #I "]\n\t" "vfmadd231ps %[e1], %[u], %[d" #I "]\n\t"
#define SOFT_FMA_ROWS(ROW) \
    ROW("(%[p])", 0) ROW("(%[p],%[s],1)", 1) ROW("(%[p],%[s],2)", 2) ROW("(%[p],%[s3],1)", 3)

/* bf16 pair products of four rows of a (at p, rows `stride` bytes apart) with one B vector into
   c[0..3], or with two into c and d: vdpbf16ps, or its FMA form without AVX512_BF16 */
static inline __attribute__((always_inline)) void soft_bf16_rows(__m512i *c, const uint8_t *p, long stride, __m512i b) {
    __m512i t;
#ifdef __AVX512BF16__
    SOFT_FOUR_ROWS("vdpbf16ps", c, p, stride, b);
#else
    __m512i u;
    const __m512i hi = _mm512_set1_epi32((int)0xffff0000u), o0 = _mm512_and_si512(b, hi), e0 = _mm512_slli_epi32(b, 16);
    __asm__(SOFT_FMA_ROWS(SOFT_FMA_ROW1)
            : [c0] "+v"(c[0]), [c1] "+v"(c[1]), [c2] "+v"(c[2]), [c3] "+v"(c[3]), [t] "=&v"(t), [u] "=&v"(u)
            : [o0] "v"(o0), [e0] "v"(e0), [hi] "v"(hi), [p] "r"(p), [s] "r"(stride), [s3] "r"(3 * stride)
            : "memory");
#endif
}

static inline __attribute__((always_inline)) void soft_bf16_rows2(__m512i *c, __m512i *d, const uint8_t *p, long stride,
                                                                  __m512i b, __m512i b1) {
    __m512i t;
#ifdef __AVX512BF16__
    SOFT_FOUR_ROWS2("vdpbf16ps", c, d, p, stride, b, b1);
#else
    __m512i u;
    const __m512i hi = _mm512_set1_epi32((int)0xffff0000u);
    const __m512i o0 = _mm512_and_si512(b, hi), e0 = _mm512_slli_epi32(b, 16);
    const __m512i o1 = _mm512_and_si512(b1, hi), e1 = _mm512_slli_epi32(b1, 16);
    __asm__(SOFT_FMA_ROWS(SOFT_FMA_ROW2)
            : [c0] "+v"(c[0]), [c1] "+v"(c[1]), [c2] "+v"(c[2]), [c3] "+v"(c[3]), [d0] "+v"(d[0]), [d1] "+v"(d[1]),
              [d2] "+v"(d[2]), [d3] "+v"(d[3]), [t] "=&v"(t), [u] "=&v"(u)
            : [o0] "v"(o0), [e0] "v"(e0), [o1] "v"(o1), [e1] "v"(e1), [hi] "v"(hi), [p] "r"(p), [s] "r"(stride),
              [s3] "r"(3 * stride)
            : "memory");
#endif
}

/* Tile c (16 rows of 16 int32 or fp32 sums) += a times b, a 32-bit group of a's rows at a time:
   b's row kk holds that group's 16 columns. `bf16`: pairs of bf16 into fp32 sums, else u8 x s8
   quads into int32 sums. The sums stay in registers across the 16 groups. */
static inline __attribute__((always_inline)) void soft_tile_product(int c, int a, int b, int bf16) {
    __m512i acc[16], t;
    const uint8_t *ca = soft_tiles.at[c], *aa = soft_tiles.at[a], *ba = soft_tiles.at[b];
    const long cs = soft_tiles.stride[c], as = soft_tiles.stride[a], bs = soft_tiles.stride[b];
    for (int m = 0; m < 16; m++) acc[m] = _mm512_loadu_si512(ca + m * cs);
    for (int kk = 0; kk < 16; kk++) {
        const __m512i bb = _mm512_loadu_si512(ba + kk * bs);
        for (int r = 0; r < 16; r += 4) {
            const uint8_t *p = aa + r * as + kk * 4;
            if (bf16) soft_bf16_rows(acc + r, p, as, bb);
            else SOFT_FOUR_ROWS("vpdpbusd", (acc + r), p, as, bb);
        }
    }
    for (int m = 0; m < 16; m++) _mm512_store_si512(soft_tiles.own[c] + m * 64, acc[m]);
    soft_tiles.at[c] = soft_tiles.own[c], soft_tiles.stride[c] = 64;
}

/* A whole K loop of tile steps for a block of 32 rows x 32 columns, with the sums in registers
   throughout, into tiles 0 to 3 as the tile steps leave them: tile 0 rows 0-15 x b0, 1 rows 0-15
   x b1, 2 rows 16-31 x b0, 3 rows 16-31 x b1 (`one_tile`: rows 0-15 only). a: the first row
   (rows `lda` bytes apart), b0 and b1 two column tiles' rows (64 bytes each, one per 32-bit group
   of K; each 16 groups' tile `b_step` bytes after the one before), `groups` groups; the sums start
   at zero, or at `init` (32 values a row). `op` (SOFT_OPS): u8 x s8 quads or bf16 pairs, as the
   tiles take them, or int16 pairs into int32 sums (vpdpwssd: no tile has it; the 12-bit x int8
   linear layer of the soft-tile builds, linear.h). The same sums in the same order as the tile steps one
   at a time. Eight rows at a time: 91-100% of the vector units' peak at one core where the tile
   steps' pairs, whose sums go to memory every 16 groups, reached 86% (the linear kernel's K loop);
   attention's Q K^T and P V take it too. */
static inline __attribute__((always_inline)) void soft_tile_block(const uint8_t *a, long lda, const uint8_t *b0,
                                                                  const uint8_t *b1, long b_step, long groups,
                                                                  int one_tile, const int32_t *init, int op) {
    for (int h = 0; h < (one_tile ? 16 : 32); h += 8) {
        __m512i c[8], d[8], t;
        for (int r = 0; r < 8; r++) {
            c[r] = init ? _mm512_loadu_si512(init + (h + r) * 32) : _mm512_setzero_si512();
            d[r] = init ? _mm512_loadu_si512(init + (h + r) * 32 + 16) : _mm512_setzero_si512();
        }
        const uint8_t *p = a + h * lda;
        for (long blk = 0; blk < groups / 16; blk++) /* groups: a multiple of 16 */
            for (int kk = 0; kk < 16; kk++, p += 4) {
                const long at = blk * b_step + kk * 64;
                const __m512i x0 = _mm512_loadu_si512(b0 + at), x1 = _mm512_loadu_si512(b1 + at);
                if (op == SOFT_BF16) {
                    soft_bf16_rows2(c, d, p, lda, x0, x1);
                    soft_bf16_rows2(c + 4, d + 4, p + 4 * lda, lda, x0, x1);
                } else if (op == SOFT_S16) {
                    SOFT_FOUR_ROWS2("vpdpwssd", c, d, p, lda, x0, x1);
                    SOFT_FOUR_ROWS2("vpdpwssd", (c + 4), (d + 4), (p + 4 * lda), lda, x0, x1);
                } else {
                    SOFT_FOUR_ROWS2("vpdpbusd", c, d, p, lda, x0, x1);
                    SOFT_FOUR_ROWS2("vpdpbusd", (c + 4), (d + 4), (p + 4 * lda), lda, x0, x1);
                }
            }
        const int lower = h >= 16, row = h % 16;
        for (int r = 0; r < 8; r++) {
            _mm512_store_si512(soft_tiles.own[2 * lower] + (row + r) * 64, c[r]);
            _mm512_store_si512(soft_tiles.own[2 * lower + 1] + (row + r) * 64, d[r]);
        }
    }
    for (int i = 0; i < 4; i++) soft_tiles.at[i] = soft_tiles.own[i], soft_tiles.stride[i] = 64;
}

/* soft_tile_block for one `op`, compiled apart: inlined into linear_columns' many cases (one per
   weight kind, output kind, GELU and streaming) its sums went to the stack at every step (a
   function that large gets GCC's coarser register allocation): the 12-bit layer of a 285-token
   sample took 7.2 ms instead of 2.8, 2026-12-06 */
#define SOFT_BLOCK_FOR(NAME, OP)                                                                                 \
    static __attribute__((noinline)) void NAME(const uint8_t *a, long lda, const uint8_t *b0, const uint8_t *b1, \
                                               long b_step, long groups, int one_tile, const int32_t *init) {    \
        soft_tile_block(a, lda, b0, b1, b_step, groups, one_tile, init, OP);                                     \
    }
SOFT_BLOCK_FOR(soft_block_u8, SOFT_U8)
SOFT_BLOCK_FOR(soft_block_bf16, SOFT_BF16)
SOFT_BLOCK_FOR(soft_block_s16, SOFT_S16)

#ifndef __AVX512BF16__
/* Four rows of soft_wide_block's step in one asm statement (GCC's own code moved the sums between
   registers): row r's odd value (4 bytes on) and even value broadcast from P + r * S, each times
   b's odd or even values (O<n>, E<n>) into C<r> and D<r>, odd first */
#define SOFT_WIDE_ROW(ROW, I)                                                                          \
    "vbroadcastss 4" ROW ", %[t]\n\t" "vbroadcastss " ROW ", %[u]\n\t"                                 \
    "vfmadd231ps %[o0], %[t], %[c" #I "]\n\t" "vfmadd231ps %[o1], %[t], %[d" #I "]\n\t"                 \
    "vfmadd231ps %[e0], %[u], %[c" #I "]\n\t" "vfmadd231ps %[e1], %[u], %[d" #I "]\n\t"
#define SOFT_WIDE_ROWS \
    SOFT_WIDE_ROW("(%[p])", 0) SOFT_WIDE_ROW("(%[p],%[s],1)", 1) SOFT_WIDE_ROW("(%[p],%[s],2)", 2) SOFT_WIDE_ROW("(%[p],%[s3],1)", 3)

/* soft_tile_block's bf16 sums without AVX512_BF16, a's rows widened to fp32 beforehand (each bf16
   value is exact in fp32; widen_bf16_rows): a the first row, rows `lda` floats apart; b0, b1,
   b_step, groups, one_tile and init as soft_tile_block's. Each pair is two FMAs, odd first, as in
   soft_bf16_rows: the same bits. a's values are broadcast from memory and b's split once for 8
   rows: 36 vector instructions for 32 FMAs, where splitting a's pairs in the loop took 56 (one
   core, operands in L1: 83-90% of a bare FMA loop's rate, 2026-12-06). Compiled apart, as
   SOFT_BLOCK_FOR's blocks are. */
static __attribute__((noinline)) void soft_wide_block(const float *a, long lda, const uint8_t *b0,
                                                                  const uint8_t *b1, long b_step, long groups,
                                                                  int one_tile, const int32_t *init) {
    const __m512i hi = _mm512_set1_epi32((int)0xffff0000u);
    for (int h = 0; h < (one_tile ? 16 : 32); h += 8) {
        __m512 c[8], d[8];
        for (int r = 0; r < 8; r++) {
            c[r] = init ? _mm512_loadu_ps((const float *)init + (h + r) * 32) : _mm512_setzero_ps();
            d[r] = init ? _mm512_loadu_ps((const float *)init + (h + r) * 32 + 16) : _mm512_setzero_ps();
        }
        const float *p = a + h * lda;
        for (long blk = 0; blk < groups / 16; blk++) /* groups: a multiple of 16 */
            for (int kk = 0; kk < 16; kk++, p += 2) {
                const long at = blk * b_step + kk * 64;
                const __m512i x0 = _mm512_loadu_si512(b0 + at), x1 = _mm512_loadu_si512(b1 + at);
                const __m512 o0 = _mm512_castsi512_ps(_mm512_and_si512(x0, hi)), e0 = _mm512_castsi512_ps(_mm512_slli_epi32(x0, 16));
                const __m512 o1 = _mm512_castsi512_ps(_mm512_and_si512(x1, hi)), e1 = _mm512_castsi512_ps(_mm512_slli_epi32(x1, 16));
                for (int r = 0; r < 8; r += 4) {
                    __m512 t, u;
                    __asm__(SOFT_WIDE_ROWS
                            : [c0] "+v"(c[r]), [c1] "+v"(c[r + 1]), [c2] "+v"(c[r + 2]), [c3] "+v"(c[r + 3]),
                              [d0] "+v"(d[r]), [d1] "+v"(d[r + 1]), [d2] "+v"(d[r + 2]), [d3] "+v"(d[r + 3]),
                              [t] "=&v"(t), [u] "=&v"(u)
                            : [o0] "v"(o0), [e0] "v"(e0), [o1] "v"(o1), [e1] "v"(e1), [p] "r"(p + r * lda),
                              [s] "r"(lda * 4), [s3] "r"(3 * lda * 4)
                            : "memory");
                }
            }
        const int lower = h >= 16, row = h % 16;
        for (int r = 0; r < 8; r++) {
            _mm512_store_ps((float *)soft_tiles.own[2 * lower] + (row + r) * 16, c[r]);
            _mm512_store_ps((float *)soft_tiles.own[2 * lower + 1] + (row + r) * 16, d[r]);
        }
    }
    for (int i = 0; i < 4; i++) soft_tiles.at[i] = soft_tiles.own[i], soft_tiles.stride[i] = 64;
}

#endif

#define soft_tile_dpbusd(c, a, b) soft_tile_product(c, a, b, 0)
#define soft_tile_dpbf16ps(c, a, b) soft_tile_product(c, a, b, 1)

#endif
