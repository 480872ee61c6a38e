/*
 * The bulkhead_client_errors buffer protocol. The driver scripts the mock to answer the
 * first request with HTTP 400, so the first event is rejected and one delivery error is
 * recorded; the second event ("accepted") is delivered.
 */
#include "bh_test.h"

int main(int argc, char **argv) {
    bulkhead_client *client;
    bulkhead_stats s;
    size_t need = 0, written = 0, again = 0;
    char *buf;
    char tiny[8];
    const char *seq_at;
    unsigned long long seq;

    if (argc < 2) bh_die("usage: %s MOCK_URL", argv[0]);
    client = bh_client(argv[1], "\"api_secret\":\"c-secret-value\",\"circuit_failure_threshold\":0");

    /* No errors yet: "[]" fits in 3 bytes. */
    CHECK_STATUS(bulkhead_client_errors(client, 0, tiny, sizeof tiny, &written),
                 BULKHEAD_STATUS_OK);
    CHECK(written == 2 && strcmp(tiny, "[]") == 0);

    CHECK_STATUS(bulkhead_track(client, BH_S("u1"), BH_S("rejected"), NULL, 0), BULKHEAD_STATUS_OK);
    CHECK_STATUS(bulkhead_client_flush(client, 30000), BULKHEAD_STATUS_OK);
    s = bh_stats(client);
    bh_print_stats("after 400", &s);
    CHECK(s.rejected == 1 && s.sent == 0 && s.retries == 0); /* 400 is never retried */
    CHECK_ACCOUNTED(s);

    /* Size query with NULL/0, then a buffer one byte short, then the right size. */
    CHECK_STATUS(bulkhead_client_errors(client, 0, NULL, 0, &need),
                 BULKHEAD_STATUS_BUFFER_TOO_SMALL);
    CHECK(need > 3);
    buf = (char *)malloc(need);
    if (buf == NULL) bh_die("malloc");
    memset(buf, '#', need);
    CHECK_STATUS(bulkhead_client_errors(client, 0, buf, need - 1, &again),
                 BULKHEAD_STATUS_BUFFER_TOO_SMALL);
    CHECK(again == need);
    CHECK_STATUS(bulkhead_client_errors(client, 0, tiny, sizeof tiny, &again),
                 BULKHEAD_STATUS_BUFFER_TOO_SMALL);
    CHECK(again == need);
    CHECK_STATUS(bulkhead_client_errors(client, 0, buf, need, &written), BULKHEAD_STATUS_OK);
    CHECK(written == need - 1);
    CHECK(buf[need - 1] == '\0' && strlen(buf) == written);
    printf("errors: %s\n", buf);
    CHECK(buf[0] == '[' && buf[written - 1] == ']');
    CHECK(strstr(buf, "\"http_status\":400") != NULL);
    CHECK(strstr(buf, "\"endpoint\"") != NULL && strstr(buf, "\"outcome\"") != NULL);
    CHECK(strstr(buf, "\"events\":1") != NULL);
    /* secrets never appear */
    CHECK(strstr(buf, BH_TOKEN) == NULL);
    CHECK(strstr(buf, "c-secret-value") == NULL);

    /* after_seq: nothing newer than the last error's seq. */
    seq_at = strstr(buf, "\"seq\":");
    CHECK(seq_at != NULL);
    if (seq_at != NULL) {
        seq = strtoull(seq_at + 6, NULL, 10);
        CHECK(seq > 0);
        CHECK_STATUS(bulkhead_client_errors(client, seq, tiny, sizeof tiny, &written),
                     BULKHEAD_STATUS_OK);
        CHECK(strcmp(tiny, "[]") == 0);
        if (seq > 0) {
            CHECK_STATUS(bulkhead_client_errors(client, seq - 1, buf, need, &written),
                         BULKHEAD_STATUS_OK);
            CHECK(strstr(buf, "\"http_status\":400") != NULL);
        }
    }
    free(buf);

    /* take_errors hands each error out once; a size query or a short buffer takes none. */
    CHECK_STATUS(bulkhead_client_take_errors(NULL, tiny, sizeof tiny, &written),
                 BULKHEAD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(bulkhead_client_take_errors(client, NULL, 5, &written),
                 BULKHEAD_STATUS_INVALID_ARGUMENT);
    need = 0;
    CHECK_STATUS(bulkhead_client_take_errors(client, NULL, 0, &need),
                 BULKHEAD_STATUS_BUFFER_TOO_SMALL);
    CHECK(need > 3);
    CHECK_STATUS(bulkhead_client_take_errors(client, tiny, sizeof tiny, &again),
                 BULKHEAD_STATUS_BUFFER_TOO_SMALL);
    CHECK(again == need);
    buf = (char *)malloc(need);
    if (buf == NULL) bh_die("malloc");
    CHECK_STATUS(bulkhead_client_take_errors(client, buf, need, &written), BULKHEAD_STATUS_OK);
    CHECK(written == need - 1 && strstr(buf, "\"http_status\":400") != NULL);
    CHECK(strstr(buf, "c-secret-value") == NULL);
    CHECK_STATUS(bulkhead_client_take_errors(client, tiny, sizeof tiny, &written),
                 BULKHEAD_STATUS_OK);
    CHECK(strcmp(tiny, "[]") == 0);
    /* Taking does not remove: bulkhead_client_errors still lists it. */
    CHECK_STATUS(bulkhead_client_errors(client, 0, buf, need, &written), BULKHEAD_STATUS_OK);
    CHECK(strstr(buf, "\"http_status\":400") != NULL);
    free(buf);

    /* The client carries on. */
    CHECK_STATUS(bulkhead_track(client, BH_S("u1"), BH_S("accepted"), NULL, 0), BULKHEAD_STATUS_OK);
    CHECK_STATUS(bulkhead_client_flush(client, 30000), BULKHEAD_STATUS_OK);
    s = bh_stats(client);
    bh_print_stats("final", &s);
    CHECK(s.sent == 1 && s.rejected == 1 && s.enqueued == 2);
    CHECK_ACCOUNTED(s);

    bulkhead_client_free(client);
    CHECK_STATUS(bulkhead_shutdown(2000), BULKHEAD_STATUS_OK);
    return bh_finish("errors_buffer");
}
