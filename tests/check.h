/* check.h: check macros that print file:line and both operands on failure,
 * and count failures; a test's main ends with CHECK_DONE(). */
#ifndef TG_CHECK_H
#define TG_CHECK_H

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

static int check_failures, check_count;

#define CHECK(c)                                                                         \
    do {                                                                                 \
        check_count++;                                                                   \
        if (!(c)) {                                                                      \
            check_failures++;                                                            \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c);        \
        }                                                                                \
    } while (0)

#define CHECK_INT(a, b)                                                                  \
    do {                                                                                 \
        long long a_ = (long long)(a), b_ = (long long)(b);                              \
        check_count++;                                                                   \
        if (a_ != b_) {                                                                  \
            check_failures++;                                                            \
            fprintf(stderr, "%s:%d: %s == %s failed: %lld vs %lld\n", __FILE__, __LINE__, #a, #b, a_, b_); \
        }                                                                                \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                            \
    do {                                                                                 \
        double a_ = (double)(a), b_ = (double)(b);                                       \
        check_count++;                                                                   \
        if (!(fabs(a_ - b_) <= (tol))) {                                                 \
            check_failures++;                                                            \
            fprintf(stderr, "%s:%d: %s ~ %s failed: %.9g vs %.9g (tol %g)\n", __FILE__, __LINE__, #a, #b, a_, b_, \
                    (double)(tol));                                                      \
        }                                                                                \
    } while (0)

/* the message contains the substring */
#define CHECK_MSG(msg, sub)                                                              \
    do {                                                                                 \
        const char *m_ = (msg);                                                          \
        check_count++;                                                                   \
        if (!m_ || !strstr(m_, (sub))) {                                                 \
            check_failures++;                                                            \
            fprintf(stderr, "%s:%d: message \"%s\" lacks \"%s\"\n", __FILE__, __LINE__, m_ ? m_ : "(null)", sub); \
        }                                                                                \
    } while (0)

/* Bytes this process has read so far (/proc/self/io's rchar), -1 where that is not known. */
static inline long long bytes_read(void) {
    FILE *f = fopen("/proc/self/io", "r");
    long long n = -1;
    char line[128];
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "rchar: %lld", &n) == 1) break;
    if (f) fclose(f);
    return n;
}

/* CPU seconds this process has used, user and system */
static inline double cpu_seconds(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_utime.tv_sec + u.ru_utime.tv_usec * 1e-6 + (double)u.ru_stime.tv_sec +
           u.ru_stime.tv_usec * 1e-6;
}

#define CHECK_DONE()                                                                     \
    do {                                                                                 \
        printf("%d checks, %d failed\n", check_count, check_failures);                   \
        return check_failures ? 1 : 0;                                                   \
    } while (0)

#endif
