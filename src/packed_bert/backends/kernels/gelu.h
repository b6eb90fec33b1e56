/* GELU (the erf form) from tables of polynomials, in fp32 and for results rounded onto a uint8
   grid. Part of amx.c's one translation unit (included there, in order; not compiled alone). */

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
