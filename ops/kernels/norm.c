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

/* The statistics' sums are bound by their adds' latency, not by memory: they go in four vectors
 * of lanes (32 sums) while runs of 32 last, then the vectors' 8-float tail in the first, then the
 * four added pairwise, the lanes in double, and the last few floats in double */
#define SUM4(acc) (((acc)[0] + (acc)[1]) + ((acc)[2] + (acc)[3]))

TG_INLINE double bn_sum_body(const float *p, int64_t n) {
    tg_f8 acc[4] = {{0}};
    int64_t j = 0;
    for (; j + 32 <= n; j += 32)
        for (int q = 0; q < 4; q++) acc[q] += TG_F8(p + j + 8 * q);
    for (; j + 8 <= n; j += 8) acc[0] += TG_F8(p + j);
    tg_f8 v = SUM4(acc);
    double s = LANES(v);
    for (; j < n; j++) s += p[j];
    return s;
}
TG_LOOP_RET(double, bn_sum, (const float *p, int64_t n), (p, n))

/* the lane (of 32) that element j of a run sums into, as the loops above go */
static int lane_of(int64_t j, int64_t n) { return j < n / 32 * 32 ? (int)(j % 32) : (int)(j % 8); }
static double lanes32(float acc[32]) {
    float v[8];
    for (int l = 0; l < 8; l++) v[l] = (acc[l] + acc[8 + l]) + (acc[16 + l] + acc[24 + l]);
    return lanes(v);
}

double tg__bn_sum_ref(const float *p, int64_t n) {
    float acc[32] = {0};
    int64_t j = 0;
    for (; j < n / 8 * 8; j++) acc[lane_of(j, n)] += p[j];
    double s = lanes32(acc);
    for (; j < n; j++) s += p[j];
    return s;
}

TG_INLINE double bn_devs_body(double *s1, const float *p, int64_t n, float m) {
    tg_f8 acc[4] = {{0}}, acc2[4] = {{0}}, mv = acc[0] + m;
    int64_t j = 0;
    for (; j + 32 <= n; j += 32)
        for (int q = 0; q < 4; q++) {
            tg_f8 d = TG_F8(p + j + 8 * q) - mv;
            acc[q] += d, acc2[q] += d * d;
        }
    for (; j + 8 <= n; j += 8) {
        tg_f8 d = TG_F8(p + j) - mv;
        acc[0] += d, acc2[0] += d * d;
    }
    tg_f8 v = SUM4(acc), v2 = SUM4(acc2);
    double s = LANES(v), s2 = LANES(v2);
    for (; j < n; j++) s += p[j] - m, s2 += (double)(p[j] - m) * (p[j] - m);
    *s1 = s;
    return s2;
}
TG_LOOP_RET(double, bn_devs, (double *s1, const float *p, int64_t n, float m), (s1, p, n, m))

double tg__bn_devs_ref(double *s1, const float *p, int64_t n, float m) {
    float acc[32] = {0}, acc2[32] = {0};
    int64_t j = 0;
    for (; j < n / 8 * 8; j++) {
        float d = p[j] - m;
        acc[lane_of(j, n)] += d, acc2[lane_of(j, n)] += d * d;
    }
    double s = lanes32(acc), s2 = lanes32(acc2);
    for (; j < n; j++) s += p[j] - m, s2 += (double)(p[j] - m) * (p[j] - m);
    *s1 = s;
    return s2;
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

/* Chan's update: the mean and summed squared deviations (mean, m2) of n values, joined by those of
 * nb more values; returns n + nb */
static double join(double *mean, double *m2, double n, double mb, double m2b, double nb) {
    double t = n + nb, d = mb - *mean;
    *mean += d * (nb / t);
    *m2 += m2b + d * d * (n * nb / t);
    return t;
}

/* One run's mean and squared deviations about it, the run read from memory once: its sum gives a
 * first mean a (in float), then (from cache) the sums of the deviations from a and of their squares
 * correct both: mean = a + s1/n, m2 = s2 - s1^2/n (exact for any a; a near the mean keeps the
 * deviations exact in float and their sums small) */
void tg__bn_run_stats(double *mean, double *m2, const float *p, int64_t n) {
    float a = (float)(tg__bn_sum(p, n) / (double)n);
    double s1, s2 = tg__bn_devs(&s1, p, n, a);
    *mean = a + s1 / (double)n;
    *m2 = s2 - s1 * s1 / (double)n;
}

void tg__bn_stats(double *mean, double *var, double *part, const float *x, int64_t N, int64_t C, int64_t L,
                  tg__split *split) {
    bn_split b = split_of(N, C, L, split);
    TG_TRACE_CAPTURE();
#pragma omp parallel for num_threads(b.T) schedule(static)
    for (int k = b.lo; k < b.hi; k++) { /* per chunk and channel: the runs joined in image order */
        TG_TRACE_ITER(k);
        double *mk = part + 2 * (size_t)k * C, *qk = mk + C;
        int64_t i0 = b.G * k / b.chunks - b.first;
        CHUNK_IMAGES(b, k, i) {
            for (int64_t c = 0; c < C; c++) {
                double m, q;
                tg__bn_run_stats(&m, &q, x + (i * C + c) * L, L);
                if (i == i0) mk[c] = m, qk[c] = q;
                else join(&mk[c], &qk[c], (double)((i - i0) * L), m, q, (double)L);
            }
        }
    }
    if (split) tg__split_gather(split, part, 2 * (size_t)C * sizeof(double), true);
    for (int64_t c = 0; c < C; c++) { /* the chunks joined in order */
        double m = part[c], q = part[C + c], n = (double)(b.G / b.chunks * L);
        for (int k = 1; k < b.chunks; k++) {
            double nk = (double)((b.G * (k + 1) / b.chunks - b.G * k / b.chunks) * L);
            n = join(&m, &q, n, part[2 * (size_t)k * C + c], part[(2 * (size_t)k + 1) * C + c], nk);
        }
        mean[c] = m, var[c] = q / n;
    }
}

/* With pooling, this thread's plane of L floats in pool->buf */
static float *pool_buf(const tg__bn_pool *pool, int64_t L) {
    return pool->buf + (size_t)tg__thread_id() * TG_BN_POOL_PLANE(L);
}

/* With pooling, the gradient of the plane at o unpooled into this thread's buf (the ReLU's mask from
 * the pooled value), else dy's own */
static const float *plane_dy(const float *dy, int64_t o, int64_t L, const tg__bn_pool *pool) {
    if (!pool) return dy + o;
    float *buf = pool_buf(pool, L);
    int64_t q = o / L * pool->Ho * pool->Wo; /* the plane's pooled values */
    if (pool->Wo >= 8) /* eight windows a vector */
        tg__relu_unpool(buf, pool->W, pool->dy + q, pool->arg + q, pool->y + q, pool->H, pool->W, pool->Ho, pool->Wo);
    else /* narrower rows would go a window at a time: a store each instead */
        tg__relu_unpool_dense(buf, L, pool->dy + q, pool->arg + q, pool->y + q, (int64_t)pool->Ho * pool->Wo);
    return buf;
}

void tg__bn_forward(float *y, const float *x, const float *sc, const float *mean, const float *rstd, const float *gamma,
                    const float *beta, int64_t N, int64_t C, int64_t L, bool relu, const tg__bn_pool *pool) {
    bn_split b = split_of(N, C, L, NULL);
    TG_TRACE_CAPTURE();
#pragma omp parallel for num_threads(b.T) schedule(static)
    for (int k = 0; k < b.chunks; k++) {
        TG_TRACE_ITER(k);
        CHUNK_IMAGES(b, k, i) {
            for (int64_t c = 0; c < C; c++) {
                int64_t o = (i * C + c) * L;
                float *yo = pool ? pool_buf(pool, L) : y + o;
                tg__bn_normalize(yo, x + o, sc ? sc + o : NULL, L, mean[c], rstd[c], gamma[c], beta[c], relu);
                if (pool) {
                    int64_t q = (i * C + c) * pool->Ho * pool->Wo;
                    tg__max_pool2d_planes(pool->y + q, pool->arg ? pool->arg + q : NULL, yo, 1, pool->H, pool->W,
                                          pool->Ho, pool->Wo, 2, 2, 0);
                }
            }
        }
    }
}

void tg__bn_backward_sums(double *sdy, double *sdyx, float *ds, double *part, const float *dy, const float *yr,
                          const float *x, const float *mean, const float *rg, int64_t N, int64_t C, int64_t L,
                          bool ds_set, tg__split *split, const tg__bn_pool *pool) {
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
                tg__bn_dot(&p1[c], &p2[c], ds ? ds + o : NULL, plane_dy(dy, o, L, pool), yr ? yr + o : NULL, x + o,
                           mean[c], L, ds_set, rg ? &rx : NULL);
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
                        bool set, const tg__bn_pool *pool) {
    bn_split b = split_of(N, C, L, NULL);
    TG_TRACE_CAPTURE();
#pragma omp parallel for num_threads(b.T) schedule(static)
    for (int k = 0; k < b.chunks; k++) {
        TG_TRACE_ITER(k);
        CHUNK_IMAGES(b, k, i) {
            for (int64_t c = 0; c < C; c++) {
                int64_t o = (i * C + c) * L;
                tg__bn_relu rx = rg ? (tg__bn_relu){rg[c], rg[C + c], rg[2 * C + c]} : (tg__bn_relu){0};
                tg__bn_dx(dx + o, plane_dy(dy, o, L, pool), yr ? yr + o : NULL, x + o, L, coef[c], coef[C + c],
                          coef[2 * C + c], coef[3 * C + c], mean[c], rstd[c], set, rg ? &rx : NULL);
            }
        }
    }
}
