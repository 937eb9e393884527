/* check.h — a minimal assertion harness for C unit tests: CHECK(cond) and CHECK_NEAR(a, b, tol)
 * print the failing expression with file:line and count failures; main returns check_done(). */
#ifndef NNC_CHECK_H
#define NNC_CHECK_H
#include <math.h>
#include <stdio.h>

static int check_failures;

#define CHECK(cond)                                                                         \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);          \
            check_failures++;                                                               \
        }                                                                                   \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                               \
    do {                                                                                    \
        double a_ = (a), b_ = (b);                                                          \
        if (!(fabs(a_ - b_) <= (tol) * (1 + fabs(b_)))) {                                   \
            fprintf(stderr, "%s:%d: %s = %.9g, expected %s = %.9g (tol %g)\n", __FILE__,   \
                    __LINE__, #a, a_, #b, b_, (double)(tol));                               \
            check_failures++;                                                               \
        }                                                                                   \
    } while (0)

static inline int check_done(void) {
    if (check_failures) fprintf(stderr, "%d check(s) failed\n", check_failures);
    return check_failures ? 1 : 0;
}
#endif
