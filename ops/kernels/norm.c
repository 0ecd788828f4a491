/* norm.c: the loops of batch normalisation, x viewed as (N, C, L).
 *
 * Work is split over fixed chunks of images (the same images each thread took
 * in the op before, so they are still in its cache); per-channel sums are made
 * per chunk, then added over the chunks in order: the same result for any
 * thread count. Within a run of a channel (L elements of one image) sums go in
 * the 8 lanes of tg_f8 (the same lanes on every machine and build), then in
 * double. Each run loop has a plain reference, summing in the same lanes. */
#include "kernels.h"

static double lanes(const float v[8]) {
    double s = 0;
    for (int k = 0; k < 8; k++) s += v[k];
    return s;
}
#define LANES(v) lanes((const float *)&(v)) /* a vector's lanes in order, in double */

// ----------------------------------------------------------------------------
// the loops over one run

TG_INLINE double bn_sum_body(const float *p, int64_t n) {
    tg_f8 acc = {0};
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) acc += TG_F8(p + j);
    double s = LANES(acc);
    for (; j < n; j++) s += p[j];
    return s;
}
TG_LOOP_RET(double, bn_sum, (const float *p, int64_t n), (p, n))

double tg__bn_sum_ref(const float *p, int64_t n) {
    float acc[8] = {0};
    int64_t j = 0;
    for (; j < n / 8 * 8; j++) acc[j % 8] += p[j];
    double s = lanes(acc);
    for (; j < n; j++) s += p[j];
    return s;
}

TG_INLINE double bn_sqdev_body(const float *p, int64_t n, float m) {
    tg_f8 acc = {0}, mv = acc + m;
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        tg_f8 d = TG_F8(p + j) - mv;
        acc += d * d;
    }
    double s = LANES(acc);
    for (; j < n; j++) s += (double)(p[j] - m) * (p[j] - m);
    return s;
}
TG_LOOP_RET(double, bn_sqdev, (const float *p, int64_t n, float m), (p, n, m))

double tg__bn_sqdev_ref(const float *p, int64_t n, float m) {
    float acc[8] = {0};
    int64_t j = 0;
    for (; j < n / 8 * 8; j++) {
        float d = p[j] - m;
        acc[j % 8] += d * d;
    }
    double s = lanes(acc);
    for (; j < n; j++) s += (double)(p[j] - m) * (p[j] - m);
    return s;
}

/* the ReLU's output recomputed from x as bn_normalize computes it (the same operations, so the
 * same bits), for rx */
#define RX_F8(rx, xv, mv) ((tg_f8){0} + (rx)->gamma) * (((xv) - (mv)) * ((tg_f8){0} + (rx)->rstd)) + (rx)->beta
static float rx1(const tg__bn_relu *rx, float x, float m) { return rx->gamma * ((x - m) * rx->rstd) + rx->beta; }

TG_INLINE void bn_dot_body(double *sa, double *sab, float *ds, const float *a, const float *y, const float *b, float m,
                           int64_t n, bool ds_set, const tg__bn_relu *rx) {
    tg_f8 s1 = {0}, s2 = {0}, zero = {0}, mv = zero + m;
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        tg_f8 d = y    ? TG_F8_RELU_KEEP(TG_F8(a + j), TG_F8(y + j), zero)
                  : rx ? TG_F8_RELU_KEEP(TG_F8(a + j), RX_F8(rx, TG_F8(b + j), mv), zero)
                       : TG_F8(a + j);
        s1 += d, s2 += d * (TG_F8(b + j) - mv);
        if (ds) *(tg_f8 *)(ds + j) = ds_set ? d : TG_F8(ds + j) + d;
    }
    *sa += LANES(s1), *sab += LANES(s2);
    for (; j < n; j++) {
        float d = (y && y[j] <= 0.0f) || (rx && rx1(rx, b[j], m) <= 0.0f) ? 0.0f : a[j];
        *sa += d, *sab += (double)d * (b[j] - m);
        if (ds) ds[j] = ds_set ? d : ds[j] + d;
    }
}
TG_LOOP(bn_dot,
        (double *sa, double *sab, float *ds, const float *a, const float *y, const float *b, float m, int64_t n,
         bool ds_set, const tg__bn_relu *rx),
        (sa, sab, ds, a, y, b, m, n, ds_set, rx))

void tg__bn_dot_ref(double *sa, double *sab, float *ds, const float *a, const float *y, const float *b, float m,
                    int64_t n, bool ds_set, const tg__bn_relu *rx) {
    float s1[8] = {0}, s2[8] = {0};
    int64_t n8 = n / 8 * 8;
    for (int64_t j = 0; j < n; j++) {
        float d = (y && y[j] <= 0.0f) || (rx && rx1(rx, b[j], m) <= 0.0f) ? 0.0f : a[j];
        if (j < n8) s1[j % 8] += d, s2[j % 8] += d * (b[j] - m);
        if (ds) ds[j] = ds_set ? d : ds[j] + d;
    }
    *sa += lanes(s1), *sab += lanes(s2);
    for (int64_t j = n8; j < n; j++) { /* the tail, in double after the lanes */
        float d = (y && y[j] <= 0.0f) || (rx && rx1(rx, b[j], m) <= 0.0f) ? 0.0f : a[j];
        *sa += d, *sab += (double)d * (b[j] - m);
    }
}

TG_INLINE void bn_normalize_body(float *y, const float *x, const float *sc, int64_t n, float mu, float rstd, float g,
                                 float b, bool relu) {
    tg_f8 zero = {0}, mv = zero + mu, rv = zero + rstd, gv = zero + g, bv = zero + b;
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        tg_f8 v = gv * ((TG_F8(x + j) - mv) * rv) + bv;
        if (sc) v += TG_F8(sc + j);
        *(tg_f8 *)(y + j) = relu ? TG_F8_RELU_KEEP(v, v, zero) : v;
    }
    for (; j < n; j++) {
        float v = g * ((x[j] - mu) * rstd) + b;
        if (sc) v += sc[j];
        y[j] = relu && v <= 0.0f ? 0.0f : v;
    }
}
TG_LOOP(bn_normalize,
        (float *y, const float *x, const float *sc, int64_t n, float mu, float rstd, float g, float b, bool relu),
        (y, x, sc, n, mu, rstd, g, b, relu))

void tg__bn_normalize_ref(float *y, const float *x, const float *sc, int64_t n, float mu, float rstd, float g, float b,
                          bool relu) {
    for (int64_t j = 0; j < n; j++) {
        float v = g * ((x[j] - mu) * rstd) + b;
        if (sc) v += sc[j];
        y[j] = relu && v <= 0.0f ? 0.0f : v;
    }
}

TG_INLINE void bn_dx_body(float *dx, const float *dy, const float *yr, const float *x, int64_t n, float kn, float k1,
                          float s1, float s2, float mu, float rstd, bool set, const tg__bn_relu *rx) {
    tg_f8 zero = {0}, knv = zero + kn, k1v = zero + k1, s1v = zero + s1, s2v = zero + s2, mv = zero + mu,
          rv = zero + rstd;
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        tg_f8 d = yr   ? TG_F8_RELU_KEEP(TG_F8(dy + j), TG_F8(yr + j), zero)
                  : rx ? TG_F8_RELU_KEEP(TG_F8(dy + j), RX_F8(rx, TG_F8(x + j), mv), zero)
                       : TG_F8(dy + j);
        tg_f8 v = knv * (k1v * d - s1v - (TG_F8(x + j) - mv) * rv * s2v);
        *(tg_f8 *)(dx + j) = set ? v : TG_F8(dx + j) + v;
    }
    for (; j < n; j++) {
        float d = (yr && yr[j] <= 0.0f) || (rx && rx1(rx, x[j], mu) <= 0.0f) ? 0.0f : dy[j];
        float v = kn * (k1 * d - s1 - (x[j] - mu) * rstd * s2);
        dx[j] = set ? v : dx[j] + v;
    }
}
TG_LOOP(bn_dx,
        (float *dx, const float *dy, const float *yr, const float *x, int64_t n, float kn, float k1, float s1, float s2,
         float mu, float rstd, bool set, const tg__bn_relu *rx),
        (dx, dy, yr, x, n, kn, k1, s1, s2, mu, rstd, set, rx))

void tg__bn_dx_ref(float *dx, const float *dy, const float *yr, const float *x, int64_t n, float kn, float k1,
                   float s1, float s2, float mu, float rstd, bool set, const tg__bn_relu *rx) {
    for (int64_t j = 0; j < n; j++) {
        float d = (yr && yr[j] <= 0.0f) || (rx && rx1(rx, x[j], mu) <= 0.0f) ? 0.0f : dy[j];
        float v = kn * (k1 * d - s1 - (x[j] - mu) * rstd * s2);
        dx[j] = set ? v : dx[j] + v;
    }
}

// ----------------------------------------------------------------------------
// the whole tensor, by chunks of images

typedef struct {
    int64_t N, C, L;
    int chunks, T;
    int64_t G, first; /* the global batch and this tensor's first image in it (no split: N and 0) */
    int lo, hi;       /* the chunks computed here */
} bn_split;

static bn_split split_of(int64_t N, int64_t C, int64_t L, const tg__split *s) {
    bn_split b = {N, C, L, N < TG_BN_CHUNKS ? (int)N : TG_BN_CHUNKS, 0, N, 0, 0, 0};
    if (s) b.chunks = s->chunks, b.G = s->global, b.first = s->first, b.lo = s->c0;
    b.hi = s ? s->c1 : b.chunks;
    int T = tg__threads_for(N * C * L, TG_MIN_PER_THREAD);
    b.T = T < b.hi - b.lo ? T : b.hi - b.lo;
    return b;
}
#define CHUNK_IMAGES(b, k, i)                                                                                      \
    for (int64_t i = (b).G * (k) / (b).chunks - (b).first; i < (b).G * ((k) + 1) / (b).chunks - (b).first; i++)

void tg__bn_stats(double *mean, double *var, double *part, const float *x, int64_t N, int64_t C, int64_t L,
                  tg__split *split) {
    bn_split b = split_of(N, C, L, split);
    int64_t cnt = b.G * L;
    for (int pass = 0; pass < 2; pass++) { /* the mean, then the biased variance */
        TG_TRACE_CAPTURE();
#pragma omp parallel for num_threads(b.T) schedule(static)
        for (int k = b.lo; k < b.hi; k++) {
            TG_TRACE_ITER(k);
            double *pk = part + (size_t)k * C;
            for (int64_t c = 0; c < C; c++) pk[c] = 0;
            CHUNK_IMAGES(b, k, i) {
                for (int64_t c = 0; c < C; c++) {
                    const float *xp = x + (i * C + c) * L;
                    pk[c] += pass == 0 ? tg__bn_sum(xp, L) : tg__bn_sqdev(xp, L, (float)mean[c]);
                }
            }
        }
        if (split) tg__split_gather(split, part, (size_t)C * sizeof(double), true);
        for (int64_t c = 0; c < C; c++) {
            double s = 0;
            for (int k = 0; k < b.chunks; k++) s += part[(size_t)k * C + c];
            (pass == 0 ? mean : var)[c] = s / (double)cnt;
        }
    }
}

void tg__bn_forward(float *y, const float *x, const float *sc, const float *mean, const float *rstd, const float *gamma,
                    const float *beta, int64_t N, int64_t C, int64_t L, bool relu) {
    bn_split b = split_of(N, C, L, NULL);
    TG_TRACE_CAPTURE();
#pragma omp parallel for num_threads(b.T) schedule(static)
    for (int k = 0; k < b.chunks; k++) {
        TG_TRACE_ITER(k);
        CHUNK_IMAGES(b, k, i) {
            for (int64_t c = 0; c < C; c++)
                tg__bn_normalize(y + (i * C + c) * L, x + (i * C + c) * L, sc ? sc + (i * C + c) * L : NULL, L,
                                 mean[c], rstd[c], gamma[c], beta[c], relu);
        }
    }
}

void tg__bn_backward_sums(double *sdy, double *sdyx, float *ds, double *part, const float *dy, const float *yr,
                          const float *x, const float *mean, const float *rg, int64_t N, int64_t C, int64_t L,
                          bool ds_set, tg__split *split) {
    bn_split b = split_of(N, C, L, split);
    TG_TRACE_CAPTURE();
#pragma omp parallel for num_threads(b.T) schedule(static)
    for (int k = b.lo; k < b.hi; k++) { /* sum(dy) and sum(dy * (x - mean)) per chunk */
        TG_TRACE_ITER(k);
        double *p1 = part + 2 * (size_t)k * C, *p2 = p1 + C;
        for (int64_t c = 0; c < C; c++) p1[c] = p2[c] = 0;
        CHUNK_IMAGES(b, k, i) {
            for (int64_t c = 0; c < C; c++) {
                int64_t o = (i * C + c) * L;
                tg__bn_relu rx = rg ? (tg__bn_relu){rg[c], rg[C + c], rg[2 * C + c]} : (tg__bn_relu){0};
                tg__bn_dot(&p1[c], &p2[c], ds ? ds + o : NULL, dy + o, yr ? yr + o : NULL, x + o, mean[c], L, ds_set,
                           rg ? &rx : NULL);
            }
        }
    }
    if (split) tg__split_gather(split, part, 2 * (size_t)C * sizeof(double), true);
    for (int64_t c = 0; c < C; c++) {
        double s1 = 0, s2 = 0;
        for (int k = 0; k < b.chunks; k++) s1 += part[2 * (size_t)k * C + c], s2 += part[(2 * (size_t)k + 1) * C + c];
        sdy[c] = s1, sdyx[c] = s2;
    }
}

void tg__bn_backward_dx(float *dx, const float *dy, const float *yr, const float *x, const float *coef,
                        const float *mean, const float *rstd, const float *rg, int64_t N, int64_t C, int64_t L,
                        bool set) {
    bn_split b = split_of(N, C, L, NULL);
    TG_TRACE_CAPTURE();
#pragma omp parallel for num_threads(b.T) schedule(static)
    for (int k = 0; k < b.chunks; k++) {
        TG_TRACE_ITER(k);
        CHUNK_IMAGES(b, k, i) {
            for (int64_t c = 0; c < C; c++) {
                int64_t o = (i * C + c) * L;
                tg__bn_relu rx = rg ? (tg__bn_relu){rg[c], rg[C + c], rg[2 * C + c]} : (tg__bn_relu){0};
                tg__bn_dx(dx + o, dy + o, yr ? yr + o : NULL, x + o, L, coef[c], coef[C + c], coef[2 * C + c],
                          coef[3 * C + c], mean[c], rstd[c], set, rg ? &rx : NULL);
            }
        }
    }
}
