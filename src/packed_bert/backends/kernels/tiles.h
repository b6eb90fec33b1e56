/* The AMX tiles: permission, configuration, the compiler barriers around tile loads and stores,
   and the rate the tiles issue products at. Part of amx.c's one translation unit (included
   there, in order; not compiled alone). */

/* Built without AMX (no __AMX_TILE__: amx_kernels.build(tiles="avx512-bf16" or "avx512-vnni")), the tile operations
   run on AVX-512 vector instructions (soft_tiles.h) */
#ifdef __AMX_TILE__
#define PB_TILES 1
#else
#include "soft_tiles.h"
#ifdef __AVX512BF16__
#define PB_TILES 2
#else
#define PB_TILES 3
#endif
#endif
/* which tiles this build computes on: 1 the AMX units, 2 AVX-512 VNNI and BF16, 3 AVX-512 VNNI
   alone (soft_tiles.h; amx_kernels.TILES in this order) */
int pb_tiles_kind(void) { return PB_TILES; }

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18
/* GCC's tile load and store intrinsics are asm statements with no memory operand, so the compiler
   may move ordinary loads and stores of the same memory across them (nothing here has been seen
   to go wrong; the softmax interleaved with tile steps makes such moves more tempting). Every tile
   store is followed, and the attention's tile loads of vector-written memory are preceded, by a
   compiler barrier. */
#define COMPILER_BARRIER() __asm__ __volatile__("" ::: "memory")
#define TILE_STORED(tile, base, stride) do { _tile_stored(tile, base, stride); COMPILER_BARRIER(); } while (0)

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

/* 0 once Linux grants this process the tiles' state (always, for soft tiles) */
int pb_amx_enable(void) { return PB_TILES != 1 ? 0 : (int)syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA); }

static void configure_tiles(void) {
    tile_config c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int i = 0; i < 8; i++) { c.rows[i] = 16; c.colsb[i] = 64; }
    COMPILER_BARRIER(); /* the configuration stored before ldtilecfg reads it (an asm without a memory operand) */
    _tile_loadconfig(&c);
}

/* -- the ceiling -- */
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
