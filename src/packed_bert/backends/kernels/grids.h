/* The FFN output layer's input on a fixed grid, with the rows past it on grids of their own
   (torch option kept=int8-hybrid). Part of amx.c's one translation unit (included there, in
   order; not compiled alone).

   kept=int8-rows puts every row of the GELU output (divided by the layer's SmoothQuant factors) on
   its own 8-bit grid: the FFN input layer writes bf16 and the FFN output layer reads it back to
   find each row's peak and writes the uint8 rows, a round trip through memory that a static uint8
   input does not make (about 40 ms of a BERT-Large batch of 16). Here the FFN input
   layer writes uint8 itself, on one grid per layer whose bound a quantile of the calibration
   rows' peaks sets (row_smoothing), and marks the rows with a value past it; only those rows are
   computed again, in bf16, and put on their own grid (row_grid_u8). Every row's step goes to the
   FFN output layer (linear's x_steps). A row's bits depend on that row alone. */

static __thread thread_buffer over_rows, gathered, redone; /* hybrid_feed's flags, inputs and bf16 rows */

/* Layer d (the FFN input layer, GELU after) on x [M, d->K] (rows x_stride elements apart; uint8
   read in place holds whole blocks of rows) writing consumer c's tile input at out (rows
   out_stride bytes apart): uint8 on c's fixed grid (c->fixed_scale per column, c->zero_point) for
   every row that fits it, step c->fixed_step; each other row computed again with a bf16 output
   and put on its own grid after c's factors (row_grid_u8 with c->in_scale), its step its peak /
   levels. steps [M] gets each row's step. */
static int hybrid_feed(const pb_dense *d, const void *x, int x_kind, long x_stride, long M, uint8_t *out,
                       long out_stride, const pb_dense *c, float *steps) {
    const long K = d->K, N = d->N;
    uint8_t *over = grown(&over_rows, (size_t)M);
    if (!over) return 2;
    memset(over, 0, (size_t)M);
    int status = linear(x, x_kind, x_stride, M, K, d->in_scale, d->zero_point, d->packed, d->w_kind, N, d->colsum_zp,
                        d->col_scale, d->bias, d->gelu, out, AS_U8, out_stride, c->fixed_scale, c->zero_point, 0, 0,
                        NULL, over);
    if (status) return status;
    long count = 0;
    for (long m = 0; m < M; m++) {
        steps[m] = c->fixed_step;
        count += over[m];
    }
    if (!count) return 0;
    /* the rows past the grid back to back, whole blocks of them (the padding rows: the grid's zero) */
    const size_t item = x_kind == AS_U8 ? 1 : float_bytes(x_kind), row_bytes = (size_t)K * item;
    const long padded = (count + BLOCK_M - 1) / BLOCK_M * BLOCK_M;
    uint8_t *in = grown(&gathered, (size_t)padded * row_bytes + (size_t)count * sizeof(long));
    uint16_t *y = grown(&redone, (size_t)count * N * 2);
    if (!in || !y) return 2;
    long *which = (long *)(in + (size_t)padded * row_bytes);
    for (long m = 0, j = 0; m < M; m++)
        if (over[m]) which[j++] = m;
    for (long j = 0; j < padded; j++) {
        uint8_t *to = in + (size_t)j * row_bytes;
        if (j < count) memcpy(to, (const uint8_t *)x + (size_t)which[j] * x_stride * item, row_bytes);
        else memset(to, x_kind == AS_U8 ? d->zero_point : 0, row_bytes);
    }
    status = linear(in, x_kind, K, count, K, d->in_scale, d->zero_point, d->packed, d->w_kind, N, d->colsum_zp,
                    d->col_scale, d->bias, d->gelu, y, AS_BF16, N, NULL, 0, 0, 0, NULL, NULL);
    if (status) return status;
#pragma omp parallel for schedule(static)
    for (long j = 0; j < count; j++)
        steps[which[j]] = row_grid_u8(y + (size_t)j * N, AS_BF16, N, c->in_scale, c->zero_point,
                                      out + (size_t)which[j] * out_stride);
    return 0;
}

/* hybrid_feed for torch_amx's layer modules (the encoder kernel calls it itself): layer d's
   constants as pb_linear takes them, x [M, K] rows K apart, out rows N apart, and consumer c's
   fixed grid (fixed_scale, fixed_step) and own-grid factors (grid_scale, grid_zero_point) */
int pb_hybrid_feed(const void *x, int x_kind, long M, long K, const float *in_scale, int zero_point,
                   const void *packed, int w_kind, long N, const int32_t *colsum_zp, const float *col_scale,
                   const float *bias, int gelu, uint8_t *out, const float *fixed_scale, float fixed_step,
                   const float *grid_scale, int grid_zero_point, float *steps) {
    const pb_dense d = {packed, w_kind, K, N, in_scale, zero_point, colsum_zp, col_scale, bias, gelu, NULL, 0};
    const pb_dense c = {NULL, W_S8R, N, 0, grid_scale, grid_zero_point, NULL, NULL, NULL, 0, fixed_scale, fixed_step};
    if (!fixed_scale || !grid_scale || !(fixed_step > 0)) return 1;
    return hybrid_feed(&d, x, x_kind, K, M, out, N, &c, steps);
}
