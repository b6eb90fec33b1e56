/* BERT's two ends: the embeddings' rows and the QA head. Part of amx.c's one translation unit
   (included there, in order; not compiled alone). */

/* -- the embeddings -- */
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

/* -- the QA head -- */
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
