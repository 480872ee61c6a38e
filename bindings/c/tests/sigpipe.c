/*
 * A server that answers early (413 before reading the body) and closes, or resets while a
 * large body is still arriving, must not kill a C host with SIGPIPE. SIGPIPE stays at its
 * default action here (terminate), as in most C programs. The driver scripts the faults;
 * this program sends several MB per request and checks every event is accounted for.
 * Prints "final sent=N rejected=N failed=N" for the driver.
 */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>

#include "bh_test.h"

#define BIG_EVENTS 6
#define BIG_BYTES (6 * 1024 * 1024)
#define SMALL_EVENTS 40
#define SMALL_BYTES (100 * 1024)

/* {"pad":"xxx...","i":N} with `pad` bytes of padding, in a malloc'd buffer. */
static char *props(size_t pad, int i, size_t *len) {
    char *buf = (char *)malloc(pad + 64);
    int n;
    if (buf == NULL) bh_die("out of memory");
    memcpy(buf, "{\"pad\":\"", 8);
    memset(buf + 8, 'x', pad);
    n = snprintf(buf + 8 + pad, 56, "\",\"i\":%d}", i);
    *len = 8 + pad + (size_t)n;
    return buf;
}

int main(int argc, char **argv) {
    bulkhead_client *client;
    bulkhead_stats s;
    int i;

    if (argc < 2) bh_die("usage: %s MOCK_URL", argv[0]);
    if (signal(SIGPIPE, SIG_DFL) == SIG_ERR) bh_die("signal");
    client = bh_client(argv[1],
                       "\"gzip\":false,\"max_event_bytes\":8000000,"
                       "\"max_retries\":16,\"request_timeout_ms\":30000,\"pool_size\":2");
    for (i = 0; i < BIG_EVENTS + SMALL_EVENTS; i++) {
        size_t len = 0;
        char *p = props(i < BIG_EVENTS ? BIG_BYTES : SMALL_BYTES, i, &len);
        CHECK_STATUS(bulkhead_track(client, BH_S("u"), BH_S("big"), p, len), BULKHEAD_STATUS_OK);
        free(p);
    }
    CHECK_STATUS(bulkhead_client_flush(client, 120000), BULKHEAD_STATUS_OK);
    s = bh_stats(client);
    bh_print_stats("after flush", &s);
    CHECK(s.enqueued == BIG_EVENTS + SMALL_EVENTS);
    CHECK(s.queue_len == 0 && s.in_flight == 0);
    CHECK_ACCOUNTED(s);
    CHECK(s.failed == 0);
    CHECK(s.sent + s.rejected == BIG_EVENTS + SMALL_EVENTS);
    CHECK(s.retries >= 1); /* the resets */
    printf("final sent=%llu rejected=%llu failed=%llu\n", (unsigned long long)s.sent,
           (unsigned long long)s.rejected, (unsigned long long)s.failed);
    bulkhead_client_free(client);
    CHECK_STATUS(bulkhead_shutdown(2000), BULKHEAD_STATUS_OK);
    return bh_finish("sigpipe");
}
