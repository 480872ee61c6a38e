/*
 * Mixpanel's per-event limits are checked before queueing, and a refused array counts
 * every event it held. Exactly one valid event ("valid") reaches the mock.
 */
#include "bh_test.h"

#include <time.h>

/* `{"p0":0,...}` with `n` keys, into `buf`. */
static void props_with(char *buf, size_t len, int n) {
    size_t at = 0;
    int i;
    buf[at++] = '{';
    for (i = 0; i < n; i++) {
        int w = snprintf(buf + at, len - at, "%s\"p%d\":%d", i ? "," : "", i, i);
        if (w < 0 || (size_t)w >= len - at) bh_die("props buffer too small");
        at += (size_t)w;
    }
    if (at + 2 > len) bh_die("props buffer too small");
    buf[at++] = '}';
    buf[at] = '\0';
}

int main(int argc, char **argv) {
    bulkhead_client *client;
    bulkhead_stats before, after;
    static char props[8192];
    char msg[1024];
    long long old_s = (long long)time(NULL) - 6 * 86400;
    int n;

    if (argc < 2) bh_die("usage: %s MOCK_URL", argv[0]);
    client = bh_client(argv[1], "\"max_event_bytes\":3000");

    /* 6 fixed properties + 248 = 254 is the most an event may have. */
    props_with(props, sizeof props, 249);
    CHECK_STATUS(bulkhead_track(client, BH_S("u"), BH_S("too many"), props, strlen(props)),
                 BULKHEAD_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(bh_last_error(), "255") != NULL);

    /* /track takes only the last 5 days (time in seconds here); /import is suggested. */
    n = snprintf(msg, sizeof msg, "{\"time\":%lld}", old_s);
    CHECK_STATUS(bulkhead_track(client, BH_S("u"), BH_S("too old"), msg, (size_t)n),
                 BULKHEAD_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(bh_last_error(), "/import") != NULL);

    /* A refused array of 3 counts 3 invalid events, not 1 call. */
    before = bh_stats(client);
    n = snprintf(msg, sizeof msg,
                 "[{\"event\":\"a\",\"properties\":{}},{\"event\":\"b\",\"properties\":{}},"
                 "{\"event\":\"old\",\"properties\":{\"time\":%lld}}]",
                 old_s * 1000);
    CHECK_STATUS(bulkhead_send(client, BH_S("events"), msg, (size_t)n),
                 BULKHEAD_STATUS_INVALID_ARGUMENT);
    after = bh_stats(client);
    CHECK(after.dropped_invalid == before.dropped_invalid + 3);
    CHECK(after.enqueued == before.enqueued);

    /* Same for too large: 2 events, one above max_event_bytes. */
    before = after;
    memset(props, 'x', 3500);
    props[3500] = '\0';
    n = snprintf(msg, sizeof msg, "{\"data\":[{\"event\":\"a\",\"properties\":{}},");
    {
        static char big[16384];
        int m = snprintf(big, sizeof big, "%s{\"event\":\"b\",\"properties\":{\"s\":\"%s\"}}]}",
                         msg, props);
        CHECK(m > 0 && (size_t)m < sizeof big);
        CHECK_STATUS(bulkhead_send(client, BH_S("events"), big, (size_t)m),
                     BULKHEAD_STATUS_TOO_LARGE);
    }
    after = bh_stats(client);
    CHECK(after.dropped_too_large == before.dropped_too_large + 2);
    CHECK(after.enqueued == before.enqueued);

    CHECK_STATUS(bulkhead_track(client, BH_S("u"), BH_S("valid"), BH_S("{\"k\":1}")),
                 BULKHEAD_STATUS_OK);
    CHECK_STATUS(bulkhead_client_flush(client, 30000), BULKHEAD_STATUS_OK);
    after = bh_stats(client);
    bh_print_stats("final", &after);
    CHECK(after.sent == 1);
    CHECK_ACCOUNTED(after);

    bulkhead_client_free(client);
    CHECK_STATUS(bulkhead_shutdown(2000), BULKHEAD_STATUS_OK);
    return bh_finish("limits");
}
