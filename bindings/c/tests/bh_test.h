/*
 * Shared helpers for the C tests in this directory (compiled as C99 and as C++11 by
 * tests/c_api.rs). Each test program takes the mock server's URL as argv[1], prints what
 * it did, and exits 0 only if every CHECK held; the Rust driver then inspects the mock.
 */
#ifndef BH_TEST_H
#define BH_TEST_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bulkhead.h"

/* The token every test client uses; the driver looks for it on the wire. */
#define BH_TOKEN "c-test-token"

/* A string literal as the (ptr, len) pair the API takes. */
#define BH_S(lit) (lit), (sizeof(lit) - 1)

static int bh_failures = 0;

#define CHECK(cond)                                                                       \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);     \
            bh_failures++;                                                                \
        }                                                                                 \
    } while (0)

/* Checks a status and prints the last error text when it is not the expected one. */
#define CHECK_STATUS(expr, want)                                                          \
    do {                                                                                  \
        bulkhead_status bh_got_ = (expr);                                                 \
        bulkhead_status bh_want_ = (want);                                                \
        if (bh_got_ != bh_want_) {                                                        \
            char bh_err_[512];                                                            \
            bulkhead_last_error(bh_err_, sizeof bh_err_, NULL);                           \
            fprintf(stderr, "%s:%d: %s returned %d (%s), want %d (%s); last error: %s\n", \
                    __FILE__, __LINE__, #expr, (int)bh_got_, bulkhead_status_str(bh_got_), \
                    (int)bh_want_, bulkhead_status_str(bh_want_), bh_err_);               \
            bh_failures++;                                                                \
        }                                                                                 \
    } while (0)

/* Dies at once: for setup steps the rest of a test depends on. */
static inline void bh_die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("fatal: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

/* The last error text on this thread (into a static buffer: single-threaded use only). */
static inline const char *bh_last_error(void) {
    static char buf[1024];
    size_t written = 0;
    buf[0] = '\0';
    bulkhead_last_error(buf, sizeof buf, &written);
    return buf;
}

/* The request timeout of bh_config; `make memcheck` raises it (-D) for valgrind's slowdown. */
#ifndef BH_REQUEST_TIMEOUT_MS
#define BH_REQUEST_TIMEOUT_MS 2000
#endif

/*
 * Writes a client configuration for the mock at `url` with test-friendly timings into
 * `buf`; `extra` ("" or `"key":value,...`) adds or overrides keys.
 */
static inline void bh_config(char *buf, size_t len, const char *url, const char *extra) {
    int n = snprintf(buf, len,
                     "{\"token\":\"" BH_TOKEN "\",\"api_host\":\"%s\","
                     "\"flush_interval_ms\":50,\"backoff_initial_ms\":10,"
                     "\"backoff_max_ms\":100,\"request_timeout_ms\":%d%s%s}",
                     url, BH_REQUEST_TIMEOUT_MS, extra[0] ? "," : "", extra);
    if (n < 0 || (size_t)n >= len) bh_die("config too long");
}

/* A client for the mock at `url`, or death. */
static inline bulkhead_client *bh_client(const char *url, const char *extra) {
    char config[2048];
    bulkhead_client *client = NULL;
    bulkhead_status st;
    bh_config(config, sizeof config, url, extra);
    st = bulkhead_client_new(config, strlen(config), &client);
    if (st != BULKHEAD_STATUS_OK || client == NULL)
        bh_die("bulkhead_client_new: %s: %s", bulkhead_status_str(st), bh_last_error());
    return client;
}

static inline bulkhead_stats bh_stats(const bulkhead_client *client) {
    bulkhead_stats s;
    memset(&s, 0, sizeof s);
    if (bulkhead_client_stats(client, &s) != BULKHEAD_STATUS_OK)
        bh_die("bulkhead_client_stats: %s", bh_last_error());
    return s;
}

static inline void bh_print_stats(const char *label, const bulkhead_stats *s) {
    printf("%s: enqueued=%llu sent=%llu rejected=%llu failed=%llu queue_len=%llu "
           "dropped_queue_full=%llu dropped_too_large=%llu dropped_invalid=%llu "
           "dropped_shutdown=%llu retries=%llu requests=%llu circuit=%u\n",
           label, (unsigned long long)s->enqueued, (unsigned long long)s->sent,
           (unsigned long long)s->rejected, (unsigned long long)s->failed,
           (unsigned long long)s->queue_len, (unsigned long long)s->dropped_queue_full,
           (unsigned long long)s->dropped_too_large, (unsigned long long)s->dropped_invalid,
           (unsigned long long)s->dropped_shutdown, (unsigned long long)s->retries,
           (unsigned long long)s->requests, (unsigned)s->circuit_state);
}

/* The accounting invariant that must hold whenever the client is quiescent. */
#define CHECK_ACCOUNTED(s)                                                          \
    do {                                                                            \
        CHECK((s).enqueued == (s).sent + (s).rejected + (s).failed + (s).queue_len); \
    } while (0)

/* Exit status for main: 0 only when every CHECK held. */
static inline int bh_finish(const char *name) {
    if (bh_failures) {
        fprintf(stderr, "%s: %d check(s) failed\n", name, bh_failures);
        return 1;
    }
    printf("%s: ok\n", name);
    return 0;
}

#endif /* BH_TEST_H */
