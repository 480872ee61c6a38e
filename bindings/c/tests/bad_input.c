/*
 * Bad input: every documented refusal returns its status, leaves text for
 * bulkhead_last_error, and sends nothing. Exactly one valid event is tracked
 * ("valid event"); the driver checks it is the only thing that reached the mock.
 */
#include "bh_test.h"

int main(int argc, char **argv) {
    bulkhead_client *client;
    bulkhead_client *untouched = (bulkhead_client *)&bh_failures; /* a sentinel */
    bulkhead_stats s;
    char config[512];
    char big[2048];
    char err[256];
    size_t written = 12345;
    int status;
    const char *url;
    const char bad_utf8[] = "bad \xff\xfe name";

    if (argc < 2) bh_die("usage: %s MOCK_URL", argv[0]);
    url = argv[1];

    /* --- status names and version --- */
    for (status = BULKHEAD_STATUS_OK; status <= BULKHEAD_STATUS_INTERNAL; status++) {
        const char *name = bulkhead_status_str((bulkhead_status)status);
        CHECK(name != NULL);
        CHECK(name != NULL && name[0] != '\0');
    }
    CHECK(strcmp(bulkhead_status_str(BULKHEAD_STATUS_OK), "ok") == 0);
    CHECK(strcmp(bulkhead_status_str(BULKHEAD_STATUS_QUEUE_FULL),
                 bulkhead_status_str(BULKHEAD_STATUS_TIMEOUT)) != 0);
    CHECK(bulkhead_version() != NULL && strchr(bulkhead_version(), '.') != NULL);

    /* --- NULL handles --- */
    bulkhead_client_free(NULL);
    CHECK(bulkhead_client_queue_len(NULL) == 0);
    CHECK_STATUS(bulkhead_track(NULL, BH_S("u"), BH_S("e"), NULL, 0),
                 BULKHEAD_STATUS_INVALID_ARGUMENT);
    CHECK(strlen(bh_last_error()) > 0);
    CHECK_STATUS(bulkhead_import(NULL, BH_S("u"), BH_S("e"), 1, NULL, 0),
                 BULKHEAD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(bulkhead_people(NULL, BH_S("u"), BH_S("$set"), BH_S("{}")),
                 BULKHEAD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(bulkhead_group(NULL, BH_S("k"), BH_S("i"), BH_S("$set"), BH_S("{}")),
                 BULKHEAD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(bulkhead_send(NULL, BH_S("events"), BH_S("{}")),
                 BULKHEAD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(bulkhead_client_flush(NULL, 10), BULKHEAD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(bulkhead_client_close(NULL, 10), BULKHEAD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(bulkhead_client_stats(NULL, &s), BULKHEAD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(bulkhead_client_errors(NULL, 0, err, sizeof err, &written),
                 BULKHEAD_STATUS_INVALID_ARGUMENT);
    CHECK(written == 12345); /* out-parameters are written only on success */

    /* --- bulkhead_client_new refusals; *client_out untouched --- */
    client = untouched;
    CHECK_STATUS(bulkhead_client_new(BH_S("{\"token\":\"t\",\"no_such_key\":1}"), &client),
                 BULKHEAD_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(bh_last_error(), "no_such_key") != NULL);
    CHECK(client == untouched);
    CHECK_STATUS(bulkhead_client_new(BH_S("{\"token\":"), &client),
                 BULKHEAD_STATUS_INVALID_JSON);
    CHECK_STATUS(bulkhead_client_new(BH_S("[1,2]"), &client), BULKHEAD_STATUS_INVALID_JSON);
    CHECK_STATUS(bulkhead_client_new(BH_S("{\"queue_capacity\":5}"), &client),
                 BULKHEAD_STATUS_INVALID_ARGUMENT); /* no token */
    CHECK_STATUS(bulkhead_client_new(BH_S("{\"token\":\"t\",\"pool_size\":\"many\"}"), &client),
                 BULKHEAD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(bulkhead_client_new(NULL, 3, &client), BULKHEAD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(bulkhead_client_new(BH_S("{\"token\":\"\xff\"}"), &client),
                 BULKHEAD_STATUS_INVALID_UTF8);
    CHECK_STATUS(bulkhead_client_new(BH_S("{\"token\":\"t\",\"api_host\":\"http://example.com\"}"),
                                     &client),
                 BULKHEAD_STATUS_INVALID_ARGUMENT); /* plain http only on loopback */
    CHECK(client == untouched);
    bh_config(config, sizeof config, url, "");
    CHECK_STATUS(bulkhead_client_new(config, strlen(config), NULL),
                 BULKHEAD_STATUS_INVALID_ARGUMENT);

    /* --- a real client with a small max_event_bytes --- */
    client = bh_client(url, "\"max_event_bytes\":512");

    CHECK_STATUS(bulkhead_track(client, BH_S("u1"), BH_S("valid event"), BH_S("{\"k\":1}")),
                 BULKHEAD_STATUS_OK);

    /* NULL pointer with a non-zero length */
    CHECK_STATUS(bulkhead_track(client, NULL, 4, BH_S("e"), NULL, 0),
                 BULKHEAD_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(bh_last_error(), "distinct_id") != NULL);
    CHECK_STATUS(bulkhead_track(client, BH_S("u1"), NULL, 1, NULL, 0),
                 BULKHEAD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(bulkhead_track(client, BH_S("u1"), BH_S("e"), NULL, 7),
                 BULKHEAD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(bulkhead_send(client, BH_S("events"), NULL, 9),
                 BULKHEAD_STATUS_INVALID_ARGUMENT);
    /* empty event name */
    CHECK_STATUS(bulkhead_track(client, BH_S("u1"), "", 0, NULL, 0),
                 BULKHEAD_STATUS_INVALID_ARGUMENT);

    /* invalid UTF-8 */
    CHECK_STATUS(bulkhead_track(client, BH_S("u1"), BH_S(bad_utf8), NULL, 0),
                 BULKHEAD_STATUS_INVALID_UTF8);
    CHECK(strstr(bh_last_error(), "UTF-8") != NULL);
    CHECK_STATUS(bulkhead_track(client, BH_S(bad_utf8), BH_S("e"), NULL, 0),
                 BULKHEAD_STATUS_INVALID_UTF8);
    CHECK_STATUS(bulkhead_track(client, BH_S("u1"), BH_S("e"), BH_S("{\"k\":\"\xc3\"}")),
                 BULKHEAD_STATUS_INVALID_UTF8);
    CHECK_STATUS(bulkhead_send(client, BH_S("events\xff"), BH_S("{}")),
                 BULKHEAD_STATUS_INVALID_UTF8);

    /* invalid JSON and non-object properties */
    CHECK_STATUS(bulkhead_track(client, BH_S("u1"), BH_S("e"), BH_S("{\"k\":")),
                 BULKHEAD_STATUS_INVALID_JSON);
    CHECK(strlen(bh_last_error()) > 0);
    CHECK_STATUS(bulkhead_track(client, BH_S("u1"), BH_S("e"), BH_S("[1,2]")),
                 BULKHEAD_STATUS_INVALID_JSON);
    CHECK_STATUS(bulkhead_track(client, BH_S("u1"), BH_S("e"), BH_S("42")),
                 BULKHEAD_STATUS_INVALID_JSON);
    CHECK_STATUS(bulkhead_track(client, BH_S("u1"), BH_S("e"), BH_S("\"str\"")),
                 BULKHEAD_STATUS_INVALID_JSON);
    CHECK_STATUS(bulkhead_people(client, BH_S("u1"), BH_S("$set"), BH_S("[\"a\"]")),
                 BULKHEAD_STATUS_INVALID_JSON);
    CHECK_STATUS(bulkhead_people(client, BH_S("u1"), BH_S("$set"), BH_S("{oops}")),
                 BULKHEAD_STATUS_INVALID_JSON);
    CHECK_STATUS(bulkhead_send(client, BH_S("events"), BH_S("not json")),
                 BULKHEAD_STATUS_INVALID_JSON);
    CHECK_STATUS(bulkhead_send(client, BH_S("events"), BH_S("17")),
                 BULKHEAD_STATUS_INVALID_JSON);
    /* an array is queued whole or not at all: the second element is broken */
    CHECK_STATUS(bulkhead_send(client, BH_S("events"),
                               BH_S("[{\"event\":\"array-a\",\"properties\":{}},{\"event\":5}]")),
                 BULKHEAD_STATUS_INVALID_JSON);

    /* unknown endpoint, operation; missing required ids */
    CHECK_STATUS(bulkhead_send(client, BH_S("nowhere"), BH_S("{\"event\":\"x\"}")),
                 BULKHEAD_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(bh_last_error(), "nowhere") != NULL);
    CHECK_STATUS(bulkhead_people(client, BH_S("u1"), BH_S("$frobnicate"), BH_S("{}")),
                 BULKHEAD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(bulkhead_people(client, "", 0, BH_S("$set"), BH_S("{}")),
                 BULKHEAD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(bulkhead_group(client, "", 0, BH_S("acme"), BH_S("$set"), BH_S("{}")),
                 BULKHEAD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(bulkhead_import(client, "", 0, BH_S("e"), 1500000000000LL, NULL, 0),
                 BULKHEAD_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(bulkhead_track(client, BH_S("u1"), BH_S("e"), BH_S("{\"$insert_id\":\"no spaces allowed\"}")),
                 BULKHEAD_STATUS_INVALID_ARGUMENT);

    /* oversized event */
    memset(big, 'x', sizeof big);
    memcpy(big, "{\"blob\":\"", 9);
    big[sizeof big - 2] = '"';
    big[sizeof big - 1] = '}';
    CHECK_STATUS(bulkhead_track(client, BH_S("u1"), BH_S("e"), big, sizeof big),
                 BULKHEAD_STATUS_TOO_LARGE);
    CHECK(strstr(bh_last_error(), "max_event_bytes") != NULL);

    /* out-parameter checks on a live client */
    CHECK_STATUS(bulkhead_client_stats(client, NULL), BULKHEAD_STATUS_INVALID_ARGUMENT);

    /* last_error buffer handling: truncation keeps a NUL, NULL/0 reports the size */
    CHECK_STATUS(bulkhead_track(client, BH_S("u1"), BH_S("e"), BH_S("[]")),
                 BULKHEAD_STATUS_INVALID_JSON);
    {
        char full[512];
        char small[4];
        size_t full_len = 0, small_len = 99, need = 0;
        CHECK_STATUS(bulkhead_last_error(full, sizeof full, &full_len), BULKHEAD_STATUS_OK);
        CHECK(full_len == strlen(full) && full_len > 3);
        CHECK_STATUS(bulkhead_last_error(small, sizeof small, &small_len), BULKHEAD_STATUS_OK);
        CHECK(small[3] == '\0' && strlen(small) == small_len && small_len <= 3);
        CHECK(strncmp(small, full, small_len) == 0);
        (void)bulkhead_last_error(NULL, 0, &need);
        CHECK(need == full_len + 1);
        CHECK_STATUS(bulkhead_last_error(NULL, 0, NULL), BULKHEAD_STATUS_BUFFER_TOO_SMALL);
        /* NULL with a length: refused without a panic, the stored text and *written kept. */
        need = 777;
        CHECK_STATUS(bulkhead_last_error(NULL, 16, &need), BULKHEAD_STATUS_INVALID_ARGUMENT);
        CHECK(need == 777);
        CHECK_STATUS(bulkhead_last_error(full, sizeof full, &small_len), BULKHEAD_STATUS_OK);
        CHECK(small_len == full_len && strstr(full, "internal panic") == NULL);
    }

    s = bh_stats(client);
    bh_print_stats("after refusals", &s);
    CHECK(s.dropped_too_large == 1);
    CHECK(s.dropped_invalid >= 20);
    CHECK(s.enqueued == 1); /* only the valid event; the broken array queued nothing */

    CHECK_STATUS(bulkhead_client_flush(client, 30000), BULKHEAD_STATUS_OK);
    s = bh_stats(client);
    bh_print_stats("after flush", &s);
    CHECK(s.sent == 1);
    CHECK_ACCOUNTED(s);

    /* --- call after close --- */
    CHECK_STATUS(bulkhead_client_close(client, 30000), BULKHEAD_STATUS_OK);
    CHECK_STATUS(bulkhead_client_close(client, 10), BULKHEAD_STATUS_OK); /* idempotent */
    CHECK_STATUS(bulkhead_track(client, BH_S("u1"), BH_S("after close"), NULL, 0),
                 BULKHEAD_STATUS_CLOSED);
    CHECK(strlen(bh_last_error()) > 0);
    CHECK_STATUS(bulkhead_import(client, BH_S("u1"), BH_S("after close"), 1500000000000LL, NULL, 0),
                 BULKHEAD_STATUS_CLOSED);
    CHECK_STATUS(bulkhead_people(client, BH_S("u1"), BH_S("$set"), BH_S("{\"a\":1}")),
                 BULKHEAD_STATUS_CLOSED);
    CHECK_STATUS(bulkhead_group(client, BH_S("k"), BH_S("i"), BH_S("$set"), BH_S("{\"a\":1}")),
                 BULKHEAD_STATUS_CLOSED);
    CHECK_STATUS(bulkhead_send(client, BH_S("events"),
                               BH_S("{\"event\":\"after close\",\"properties\":{}}")),
                 BULKHEAD_STATUS_CLOSED);
    s = bh_stats(client); /* stats still readable after close */
    CHECK(s.sent == 1 && s.enqueued == 1 && s.queue_len == 0);
    bulkhead_client_free(client);

    /* --- after bulkhead_shutdown, a new client still works (new runtime) --- */
    CHECK_STATUS(bulkhead_shutdown(5000), BULKHEAD_STATUS_OK);
    client = bh_client(url, "");
    CHECK_STATUS(bulkhead_track(client, BH_S("u2"), BH_S("after shutdown"), NULL, 0),
                 BULKHEAD_STATUS_OK);
    CHECK_STATUS(bulkhead_client_flush(client, 30000), BULKHEAD_STATUS_OK);
    s = bh_stats(client);
    CHECK(s.sent == 1);
    bulkhead_client_free(client);
    CHECK_STATUS(bulkhead_shutdown(5000), BULKHEAD_STATUS_OK);

    return bh_finish("bad_input");
}
