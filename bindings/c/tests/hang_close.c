/*
 * A server that accepts requests and never answers (the driver puts the mock in "hang"
 * mode). flush and close are bounded by their deadlines, report TIMEOUT, and close
 * accounts for every pending event as failed (dropped_shutdown). No time is asserted:
 * the test only needs these calls to return.
 */
#include "bh_test.h"

#define N 5

int main(int argc, char **argv) {
    bulkhead_client *client;
    bulkhead_stats s;
    bulkhead_status st;
    int i;

    if (argc < 2) bh_die("usage: %s MOCK_URL", argv[0]);
    /* The request timeout is far longer than the deadlines below, so the outcome is fixed. */
    client = bh_client(argv[1], "\"request_timeout_ms\":60000,\"shutdown_timeout_ms\":200");

    for (i = 0; i < N; i++)
        CHECK_STATUS(bulkhead_track(client, BH_S("u1"), BH_S("into the void"), NULL, 0),
                     BULKHEAD_STATUS_OK);
    CHECK_STATUS(bulkhead_client_flush(client, 300), BULKHEAD_STATUS_TIMEOUT);
    CHECK(strlen(bh_last_error()) > 0);
    s = bh_stats(client);
    bh_print_stats("after flush", &s);
    CHECK(s.queue_len == N); /* events stay queued after a flush timeout */
    CHECK(s.sent == 0 && s.failed == 0);

    CHECK_STATUS(bulkhead_client_close(client, 300), BULKHEAD_STATUS_TIMEOUT);
    s = bh_stats(client);
    bh_print_stats("after close", &s);
    CHECK(s.queue_len == 0);
    CHECK(s.failed == N && s.dropped_shutdown == N);
    CHECK_ACCOUNTED(s);
    CHECK_STATUS(bulkhead_track(client, BH_S("u1"), BH_S("late"), NULL, 0), BULKHEAD_STATUS_CLOSED);
    CHECK_STATUS(bulkhead_client_close(client, 300), BULKHEAD_STATUS_OK); /* idempotent */

    /* A second client, never closed by hand: bulkhead_shutdown closes it within its deadline. */
    {
        bulkhead_client *other = bh_client(argv[1], "\"request_timeout_ms\":60000");
        CHECK_STATUS(bulkhead_track(other, BH_S("u2"), BH_S("also void"), NULL, 0),
                     BULKHEAD_STATUS_OK);
        st = bulkhead_shutdown(300);
        CHECK(st == BULKHEAD_STATUS_TIMEOUT);
        s = bh_stats(other);
        bh_print_stats("other after shutdown", &s);
        CHECK(s.failed == 1 && s.dropped_shutdown == 1 && s.queue_len == 0);
        CHECK_ACCOUNTED(s);
        CHECK_STATUS(bulkhead_track(other, BH_S("u2"), BH_S("late"), NULL, 0),
                     BULKHEAD_STATUS_CLOSED);
        bulkhead_client_free(other); /* already closed: returns at once */
    }
    bulkhead_client_free(client);
    return bh_finish("hang_close");
}
