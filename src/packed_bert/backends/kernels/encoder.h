/* The whole encoder in one call: every layer's kernel calls, in the modules' order. Part of
   amx.c's one translation unit (included there, in order; not compiled alone). */

/* One BERT layer: Q|K|V (bf16 out), attention output and FFN output (out in dense_kind, fp32 or
   bf16), FFN input (GELU), and the two LayerNorms after the residual adds */
typedef struct {
    pb_dense qkv, o, ffn_in, ffn_out;
    int dense_kind;
    const float *gamma1, *beta1, *gamma2, *beta2;
    float eps1, eps2;
} pb_layer;

/* whether layer `d` takes its input on a fixed grid with rows past it on their own (grids.h) */
static inline int hybrid(const pb_dense *d) { return d->w_kind == W_S8R && d->fixed_scale; }

/* the tile input a producer writes for layer `d`: uint8 for static int8 (W_S8) and the hybrid
   grids, else bf16 (which the row-grid layers, W_S16 and W_S8R, then put on their grids row by row) */
static inline int ready_kind(const pb_dense *d) { return d->w_kind == W_S8 || hybrid(d) ? AS_U8 : AS_BF16; }

/* the grid a producer writes `d`'s uint8 input on (per column); NULL for a bf16 input */
static inline const float *u8_scale(const pb_dense *d) {
    return hybrid(d) ? d->fixed_scale : ready_kind(d) == AS_U8 ? d->in_scale : NULL;
}

static __thread thread_buffer hybrid_steps; /* the FFN output layer's input steps per row (grids.h) */

/* layer `d` on input x (rows x_stride elements apart); with `feeds`, the output is that layer's
   tile input (out_kind its kind, rows out_stride elements apart). A hybrid `feeds` gets its rows'
   steps in `steps` [M], which a hybrid `d` reads (grids.h). */
static int dense_call(const pb_dense *d, const void *x, int x_kind, long x_stride, long M, void *out, int out_kind,
                      long out_stride, const pb_dense *feeds, float *steps) {
    if (feeds && hybrid(feeds)) return hybrid_feed(d, x, x_kind, x_stride, M, (uint8_t *)out, out_stride, feeds, steps);
    return linear(x, x_kind, x_stride, M, d->K, d->in_scale, d->zero_point, d->packed, d->w_kind, d->N, d->colsum_zp,
                  d->col_scale, d->bias, d->gelu, out, out_kind, out_stride, feeds ? u8_scale(feeds) : NULL,
                  feeds ? feeds->zero_point : 0, 0, 0, hybrid(d) && x_kind == AS_U8 ? steps : NULL, NULL);
}

/* the Q|K|V layer `d` on input x (rows H elements apart) into qkv_layout's planes: [3 x heads][M][dim]
   bf16 */
static int qkv_call(const pb_dense *d, const void *x, int x_kind, long H, long M, uint16_t *qkv, int dim) {
    return linear(x, x_kind, H, M, d->K, d->in_scale, d->zero_point, d->packed, d->w_kind, d->N, d->colsum_zp, d->col_scale,
                  d->bias, d->gelu, qkv, AS_BF16, dim, NULL, 0, dim, M * dim, NULL, NULL);
}

/* bytes of a value of the FFN's inner tile input: uint8 or bf16 */
static inline size_t inter_value_bytes(const pb_layer *L) { return ready_kind(&L->ffn_out) == AS_U8 ? 1 : 2; }

/* elements from one row of the FFN's inner tile input to the next (pb_tile_row_bytes) */
static long inter_stride(const pb_layer *L) {
    const long size = (long)inter_value_bytes(L);
    return pb_tile_row_bytes(L->ffn_in.N * size) / size;
}

/* Built with -DPB_PHASE_TIMES, PHASE times a layer's call i (common.h); otherwise it is the call */
#ifdef PB_PHASE_TIMES
#define PHASE(i, call) \
    do { phase_now = i; double t0_ = omp_get_wtime(); call; pb_phase_seconds[i] += omp_get_wtime() - t0_; phase_now = -1; } while (0)
#else
#define PHASE(i, call) call
#endif

/* `count` layers over M tokens, the same kernel calls in the same order as the layer-by-layer
   path (torch_amx's modules), without returning to Python in between (on one 268-token sample
   the interpreter's work between two kernels took about 40 us, after a kernel had evicted its
   state from the caches). hidden [M, H] holds the input and gets the output, in residual_kind
   (fp32 or bf16: the residual stream's; rows padded with zeros to whole blocks of BLOCK_M, since a
   bf16 first Q|K|V layer reads them in place). The work buffers are the calling thread's, kept from
   call to call (fresh ones of a few MB each came from the OS every call, and their first touch
   inside the kernels cost about 0.7 ms of a 60 ms sample): other [M, H] in residual_kind, tile_h
   [m_pad, H] and att [m_pad, H] tile inputs (2 bytes a value at most), qkv [3 x heads, M, dim] bf16
   (qkv_layout's planes), dense [M, H] (fp32 at most), inter [m_pad, N of the FFN input] tile input,
   its rows pb_tile_row_bytes apart. Sequences as pb_attention takes them, every token in one (the
   callers leave out the positions outside them); `attention` as pb_attention's `kind`. */
static __thread thread_buffer encoder_memory;

int pb_encoder(const pb_layer *layers, int count, long M, int heads, int dim, float q_mul, const long *starts,
               const long *lens, long seqs, int residual_kind, void *hidden, int attention) {
    if (!float_kind(residual_kind) || count < 1) return 1;
    long H = (long)heads * dim, m_pad = (M + BLOCK_M - 1) / BLOCK_M * BLOCK_M;
    float *steps = grown(&hybrid_steps, (size_t)M * sizeof(float)); /* hybrid FFN output layers' (grids.h) */
    if (!steps) return 2;
    size_t inter_row = 0; /* the widest layer's (the layers of one call share their kinds) */
    for (int l = 0; l < count; l++) {
        const size_t row = (size_t)inter_stride(layers + l) * inter_value_bytes(layers + l);
        if (row > inter_row) inter_row = row;
    }
    const size_t sizes[6] = {M * H * float_bytes(residual_kind), m_pad * H * 2, M * 3 * H * 2, m_pad * H * 2, M * H * 4,
                             m_pad * inter_row};
    void *work[6];
    if (thread_parts(&encoder_memory, work, sizes, 6)) return 2;
    void *other = work[0], *tile_h = work[1], *att = work[3], *dense = work[4], *inter = work[5];
    uint16_t *qkv = work[2];
    int status = 0;
    for (int l = 0; l < count && !status; l++) {
        const pb_layer *L = layers + l;
        const pb_dense *next = l + 1 < count ? &layers[l + 1].qkv : NULL;
        int att_kind = ready_kind(&L->o);
        const long ld = inter_stride(L);
        PHASE(0, status = l == 0 ? qkv_call(&L->qkv, hidden, residual_kind, H, M, qkv, dim)
                        : qkv_call(&L->qkv, tile_h, ready_kind(&L->qkv), H, M, qkv, dim));
        if (status) break;
        PHASE(1, status = pb_attention(qkv, starts, lens, seqs, heads, dim, q_mul, att, att_kind, u8_scale(&L->o), L->o.zero_point,
                                           attention, M));
        PHASE(2, if (!status) status = dense_call(&L->o, att, att_kind, H, M, dense, L->dense_kind, H, NULL, NULL));
        PHASE(3, if (!status) status = pb_add_layernorm(dense, L->dense_kind, hidden, residual_kind, L->gamma1, L->beta1,
                                                        L->eps1, M, H, other, residual_kind, tile_h, ready_kind(&L->ffn_in),
                                                        u8_scale(&L->ffn_in), L->ffn_in.zero_point));
        PHASE(4, if (!status) status = dense_call(&L->ffn_in, tile_h, ready_kind(&L->ffn_in), H, M, inter,
                                                  ready_kind(&L->ffn_out), ld, &L->ffn_out, steps));
        PHASE(5, if (!status) status = dense_call(&L->ffn_out, inter, ready_kind(&L->ffn_out), ld, M, dense, L->dense_kind, H,
                                                  NULL, steps));
        PHASE(6, if (!status) status = pb_add_layernorm(dense, L->dense_kind, other, residual_kind, L->gamma2, L->beta2,
                                                        L->eps2, M, H, hidden, residual_kind, next ? tile_h : NULL,
                                                        next ? ready_kind(next) : AS_U8, next ? u8_scale(next) : NULL,
                                                        next ? next->zero_point : 0));
    }
    return status;
}
