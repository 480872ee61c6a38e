/*
 * Behaviour a host expects: the log callback (and warnings on stderr without one),
 * bulkhead_client_flush_ex's three outcomes, Prometheus metrics, and test mode. The driver
 * makes the mock refuse (HTTP 400) any event with a "reject_me" property.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <unistd.h>

#include "bh_test.h"

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_text[8192];
static int log_lines = 0;

static void on_log(uint32_t level, const char *msg, size_t len, void *user_data) {
    size_t used;
    pthread_mutex_lock(&log_lock);
    used = strlen(log_text);
    if (user_data == (void *)&log_lines && msg[len] == '\0' && used + len + 16 < sizeof log_text) {
        sprintf(log_text + used, "[%u] %s\n", (unsigned)level, msg);
        log_lines++;
    }
    pthread_mutex_unlock(&log_lock);
}

/* Reads a NUL-terminated text through the BUFFER_TOO_SMALL protocol; the caller frees it. */
typedef bulkhead_status (*reader)(const bulkhead_client *, char *, size_t, size_t *);
static char *read_all(const bulkhead_client *client, reader read) {
    size_t need = 0, written = 0;
    char *buf;
    CHECK_STATUS(read(client, NULL, 0, &need), BULKHEAD_STATUS_BUFFER_TOO_SMALL);
    buf = (char *)malloc(need);
    if (buf == NULL) bh_die("malloc");
    CHECK_STATUS(read(client, buf, need, &written), BULKHEAD_STATUS_OK);
    CHECK(written == need - 1 && strlen(buf) == written);
    return buf;
}

int main(int argc, char **argv) {
    bulkhead_client *client, *test, *plain;
    bulkhead_flush_result result;
    bulkhead_stats s;
    const uint64_t *hint;
    char *text;
    char tiny[4];
    size_t written = 0;
    int saved_stderr, n;
    FILE *captured;
    char err_text[4096];

    if (argc < 2) bh_die("usage: %s MOCK_URL", argv[0]);

    /* 1. No callback: warnings go to stderr by default (captured here to check). */
    captured = tmpfile();
    if (captured == NULL) bh_die("tmpfile");
    fflush(stderr);
    saved_stderr = dup(2);
    dup2(fileno(captured), 2);
    plain = bh_client(argv[1], "\"max_retries\":0");
    CHECK_STATUS(bulkhead_track(plain, BH_S("u"), BH_S("to stderr"), BH_S("{\"reject_me\":1}")),
                 BULKHEAD_STATUS_OK);
    CHECK_STATUS(bulkhead_client_flush(plain, 30000), BULKHEAD_STATUS_OK);
    fflush(stderr);
    dup2(saved_stderr, 2);
    close(saved_stderr);
    rewind(captured);
    n = (int)fread(err_text, 1, sizeof err_text - 1, captured);
    err_text[n > 0 ? n : 0] = '\0';
    fclose(captured);
    printf("stderr: %s", err_text);
    CHECK(strstr(err_text, "bulkhead warn: /track 1 events rejected") != NULL);
    CHECK(strstr(err_text, BH_TOKEN) == NULL);
    bulkhead_client_free(plain);

    /* 2. A callback receives the lines instead, from library threads. */
    CHECK_STATUS(bulkhead_set_log_callback(9, on_log, NULL), BULKHEAD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(bulkhead_set_log_callback(BULKHEAD_LOG_LEVEL_WARN, on_log, &log_lines),
                 BULKHEAD_STATUS_OK);
    client = bh_client(argv[1], "\"max_retries\":0,\"batch_size\":1,\"name\":\"c\"");
    hint = bulkhead_client_log_hint(client);
    CHECK(hint != NULL);
    CHECK(bulkhead_client_log_hint(NULL) == NULL);

    /* flush_ex: delivered; finished with a rejection; delivered again. */
    CHECK_STATUS(bulkhead_track(client, BH_S("u"), BH_S("ok 1"), NULL, 0), BULKHEAD_STATUS_OK);
    memset(&result, 0xff, sizeof result);
    CHECK_STATUS(bulkhead_client_flush_ex(client, 30000, &result), BULKHEAD_STATUS_OK);
    CHECK(result.failed == 0 && result.rejected == 0);
    CHECK_STATUS(bulkhead_track(client, BH_S("u"), BH_S("refused"), BH_S("{\"reject_me\":1}")),
                 BULKHEAD_STATUS_OK);
    CHECK_STATUS(bulkhead_client_flush_ex(client, 30000, &result), BULKHEAD_STATUS_INCOMPLETE);
    CHECK(result.failed == 0 && result.rejected == 1);
    CHECK(strstr(bh_last_error(), "1 were rejected") != NULL);
    CHECK_STATUS(bulkhead_track(client, BH_S("u"), BH_S("ok 2"), NULL, 0), BULKHEAD_STATUS_OK);
    CHECK_STATUS(bulkhead_client_flush_ex(client, 30000, NULL), BULKHEAD_STATUS_OK);
    CHECK(*hint > 0); /* a delivery error waits to be taken */

    pthread_mutex_lock(&log_lock);
    printf("callback got %d line(s):\n%s", log_lines, log_text);
    CHECK(log_lines >= 1);
    CHECK(strstr(log_text, "[2] /track 1 events rejected") != NULL);
    pthread_mutex_unlock(&log_lock);
    CHECK_STATUS(bulkhead_set_log_callback(BULKHEAD_LOG_LEVEL_OFF, NULL, NULL), BULKHEAD_STATUS_OK);

    /* The log lines for a host logger: none but errors so far; taking resets the hint. */
    text = read_all(client, bulkhead_client_take_log);
    CHECK(strcmp(text, "[]") == 0);
    free(text);

    /* Metrics. */
    CHECK_STATUS(bulkhead_client_metrics(client, tiny, sizeof tiny, &written),
                 BULKHEAD_STATUS_BUFFER_TOO_SMALL);
    text = read_all(client, bulkhead_client_metrics);
    CHECK(strstr(text, "# TYPE bulkhead_sent_total counter\n") != NULL);
    CHECK(strstr(text, "bulkhead_sent_total{client=\"c\"} 2\n") != NULL);
    CHECK(strstr(text, "bulkhead_rejected_total{client=\"c\"} 1\n") != NULL);
    CHECK(strstr(text, "bulkhead_queue_len{client=\"c\"} 0\n") != NULL);
    free(text);
    s = bh_stats(client);
    CHECK(s.errors_overwritten == 0 && s.rejected == 1 && s.sent == 2);
    CHECK_STATUS(bulkhead_client_test_events(client, tiny, sizeof tiny, &written),
                 BULKHEAD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(bulkhead_client_test_clear(client), BULKHEAD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(bulkhead_client_close(client, 30000), BULKHEAD_STATUS_OK);
    bulkhead_client_free(client);

    /* 3. Test mode: built as in production, kept, never sent. */
    test = bh_client(argv[1], "\"test_mode\":true,\"test_mode_capacity\":2");
    CHECK_STATUS(bulkhead_track(test, BH_S("t1"), BH_S("kept"), BH_S("{\"k\":1}")),
                 BULKHEAD_STATUS_OK);
    CHECK_STATUS(bulkhead_people(test, BH_S("t1"), BH_S("$set"), BH_S("{\"n\":\"A\"}")),
                 BULKHEAD_STATUS_OK);
    CHECK_STATUS(bulkhead_track(test, BH_S("t1"), BH_S("over"), NULL, 0),
                 BULKHEAD_STATUS_QUEUE_FULL);
    CHECK_STATUS(bulkhead_track(test, BH_S("t1"), BH_S("bad"), BH_S("[1]")),
                 BULKHEAD_STATUS_INVALID_JSON);
    CHECK_STATUS(bulkhead_client_flush(test, 30000), BULKHEAD_STATUS_OK);
    text = read_all(test, bulkhead_client_test_events);
    printf("test events: %s\n", text);
    CHECK(strncmp(text, "[{\"endpoint\":\"events\",\"data\":{\"event\":\"kept\"", 44) == 0);
    CHECK(strstr(text, "\"endpoint\":\"people\"") != NULL);
    CHECK(strstr(text, "\"$insert_id\"") != NULL && strstr(text, "\"k\":1") != NULL);
    CHECK(strstr(text, "over") == NULL);
    free(text);
    CHECK_STATUS(bulkhead_client_test_clear(test), BULKHEAD_STATUS_OK);
    CHECK_STATUS(bulkhead_client_test_events(test, tiny, sizeof tiny, &written), BULKHEAD_STATUS_OK);
    CHECK(strcmp(tiny, "[]") == 0);
    s = bh_stats(test);
    CHECK(s.dropped_queue_full == 1 && s.dropped_invalid == 1 && s.requests == 0);
    bulkhead_client_free(test);

    CHECK_STATUS(bulkhead_shutdown(5000), BULKHEAD_STATUS_OK);
    return bh_finish("host_behaviour");
}
