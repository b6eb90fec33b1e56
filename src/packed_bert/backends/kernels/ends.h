/* BERT's two ends: the embeddings' rows and the QA head. Part of amx.c's one translation unit
   (included there, in order; not compiled alone). */

/* -- the embeddings -- */
/* out[m] = LayerNorm((word[ids[m]] + position[positions[m]]) + type[segments[m]]) x gamma + beta
   over H values (fp32 tables; out fp32 or bf16: out_kind), a row at a time: the sums in torch's
   order, then add+LayerNorm's row (layernorm.h), so the same bits as the gather and add+LayerNorm
   calls it replaced (one call instead of three between the kernels; thirty-ninth session);
   indices are checked against the tables' rows: 1 where one is out of range */
int pb_embeddings(const float *word, long word_rows, const long *ids, const float *position, long position_rows,
                  const long *positions, const float *type, long type_rows, const long *segments, long M, long H,
                  const float *gamma, const float *beta, float eps, void *out, int out_kind) {
    if (H % 16 || H > 8192 || !float_kind(out_kind)) return 1;
    for (long m = 0; m < M; m++)
        if (ids[m] < 0 || ids[m] >= word_rows || positions[m] < 0 || positions[m] >= position_rows || segments[m] < 0 ||
            segments[m] >= type_rows)
            return 1;
    const layernorm_args a = {NULL, NULL, AS_FP32, AS_FP32, out_kind, AS_U8, 0, 0, gamma, beta, NULL, eps, H, out, NULL};
#pragma omp parallel for schedule(static)
    for (long m = 0; m < M; m++) {
        float sum[8192] __attribute__((aligned(64))); /* word + position */
        const float *w = word + ids[m] * H, *p = position + positions[m] * H;
        for (long k = 0; k < H; k += 16) _mm512_store_ps(sum + k, _mm512_add_ps(_mm512_loadu_ps(w + k), _mm512_loadu_ps(p + k)));
        add_layernorm_rows(&a, m, (const char *)sum, (const char *)(type + segments[m] * H));
    }
    return 0;
}

/* -- the QA head -- */
/* out[m, j] = sum_k x[m, k] w[j, k] + bias[j] for the start and end logits (j = 0, 1), x fp32 or
   bf16 (x_kind: read as fp32, as torch's conversion gives it), the sums fp32, rows in parallel;
   each row's sums in one order (16 lanes over k, then the lanes' tree), so a row's logits do not
   depend on the other rows. Requires H % 16 == 0. (oneDNN's matmul on fixed
   512-row tiles, padding and all, cost about 0.6 ms more of a 303-token sample.) */
int pb_qa_head(const void *x, int x_kind, long M, long H, const float *w, const float *bias, float *out) {
    if (H % 16 || M < 0 || !float_kind(x_kind)) return 1;
    const size_t row_bytes = (size_t)H * float_bytes(x_kind);
#pragma omp parallel for schedule(static)
    for (long m = 0; m < M; m++) {
        __m512 start = _mm512_setzero_ps(), end = _mm512_setzero_ps();
        for (long k = 0; k < H; k += 16) {
            __m512 v = load_float((const char *)x + m * row_bytes, k, x_kind);
            start = _mm512_fmadd_ps(v, _mm512_loadu_ps(w + k), start);
            end = _mm512_fmadd_ps(v, _mm512_loadu_ps(w + H + k), end);
        }
        out[2 * m] = _mm512_reduce_add_ps(start) + bias[0];
        out[2 * m + 1] = _mm512_reduce_add_ps(end) + bias[1];
    }
    return 0;
}
