/*
 * Every endpoint and every message shape the API accepts, once each. The driver checks
 * what arrived at the mock: 11 events (on /track and /import) and 10 updates (on /engage
 * and /groups), with the right paths, properties and /import credentials.
 */
#include "bh_test.h"

#define EVENTS 11
#define UPDATES 10

int main(int argc, char **argv) {
    bulkhead_client *client;
    bulkhead_stats s;

    if (argc < 2) bh_die("usage: %s MOCK_URL", argv[0]);
    client = bh_client(argv[1], "\"api_secret\":\"c-secret\"");

    /* /track through bulkhead_track: 2 events */
    CHECK_STATUS(bulkhead_track(client, BH_S("u1"), BH_S("Signed up"),
                                BH_S("{\"plan\":\"pro\",\"n\":3,\"nested\":{\"a\":[1,2]}}")),
                 BULKHEAD_STATUS_OK);
    CHECK_STATUS(bulkhead_track(client, BH_S("u1"), BH_S("Caller ids"),
                                BH_S("{\"$insert_id\":\"caller-id-1\",\"time\":4102444800000,"
                                     "\"token\":\"evil\",\"distinct_id\":\"override\"}")),
                 BULKHEAD_STATUS_OK);
    /* /import through bulkhead_import: 1 event, client credentials (api_secret) */
    CHECK_STATUS(bulkhead_import(client, BH_S("u2"), BH_S("Old event"), 1500000000000LL,
                                 BH_S("{\"src\":\"import\"}")),
                 BULKHEAD_STATUS_OK);

    /* /engage and /groups: 6 updates */
    CHECK_STATUS(bulkhead_people(client, BH_S("u1"), BH_S("$set"), BH_S("{\"$email\":\"a@b.c\"}")),
                 BULKHEAD_STATUS_OK);
    CHECK_STATUS(bulkhead_people(client, BH_S("u1"), BH_S("$add"), BH_S("{\"visits\":1}")),
                 BULKHEAD_STATUS_OK);
    CHECK_STATUS(bulkhead_people(client, BH_S("u1"), BH_S("$unset"), BH_S("[\"gone\"]")),
                 BULKHEAD_STATUS_OK);
    CHECK_STATUS(bulkhead_people(client, BH_S("u1"), BH_S("$delete"), NULL, 0),
                 BULKHEAD_STATUS_OK);
    CHECK_STATUS(bulkhead_group(client, BH_S("company"), BH_S("acme"), BH_S("$set"),
                                BH_S("{\"size\":5}")),
                 BULKHEAD_STATUS_OK);
    CHECK_STATUS(bulkhead_group(client, BH_S("company"), BH_S("acme"), BH_S("$union"),
                                BH_S("{\"tags\":[\"a\"]}")),
                 BULKHEAD_STATUS_OK);

    /* bulkhead_send with mixpanel-python names (bare messages) */
    CHECK_STATUS(bulkhead_send(client, BH_S("events"),
                               BH_S("{\"event\":\"py event\",\"properties\":{\"distinct_id\":\"u3\","
                                    "\"token\":\"" BH_TOKEN "\",\"time\":4102444800000}}")),
                 BULKHEAD_STATUS_OK);
    CHECK_STATUS(bulkhead_send(client, BH_S("people"),
                               BH_S("{\"$token\":\"" BH_TOKEN "\",\"$distinct_id\":\"u5\","
                                    "\"$set\":{\"py\":true}}")),
                 BULKHEAD_STATUS_OK);
    CHECK_STATUS(bulkhead_send(client, BH_S("groups"),
                               BH_S("{\"$token\":\"" BH_TOKEN "\",\"$group_key\":\"company\","
                                    "\"$group_id\":\"py-co\",\"$set\":{\"n\":1}}")),
                 BULKHEAD_STATUS_OK);
    CHECK_STATUS(bulkhead_send_with_credentials(
                     client, BH_S("imports"),
                     BH_S("{\"event\":\"py import\",\"properties\":{\"distinct_id\":\"u7\","
                          "\"token\":\"" BH_TOKEN "\",\"time\":1500000000,"
                          "\"$insert_id\":\"py-import-1\"}}"),
                     BH_S("py-key"), NULL, 0),
                 BULKHEAD_STATUS_OK);
    CHECK_STATUS(bulkhead_send_with_credentials(
                     client, BH_S("imports"),
                     BH_S("{\"event\":\"py secret import\",\"properties\":{\"distinct_id\":\"u8\","
                          "\"token\":\"" BH_TOKEN "\",\"time\":1500000001}}"),
                     BH_S("ignored-key"), BH_S("py-secret")),
                 BULKHEAD_STATUS_OK);

    /* bulkhead_send with mixpanel-ruby names and its {"data": ...} envelope */
    CHECK_STATUS(bulkhead_send(client, BH_S("event"),
                               BH_S("{\"data\":{\"event\":\"ruby event\",\"properties\":{"
                                    "\"distinct_id\":\"u4\",\"token\":\"" BH_TOKEN "\","
                                    "\"time\":4102444800000,\"mp_lib\":\"ruby\","
                                    "\"$lib_version\":\"2.3.1\"}}}")),
                 BULKHEAD_STATUS_OK);
    CHECK_STATUS(bulkhead_send(client, BH_S("profile_update"),
                               BH_S("{\"data\":{\"$token\":\"" BH_TOKEN "\",\"$time\":1795739207818,"
                                    "\"$distinct_id\":\"u6\",\"$set\":{\"$name\":\"x\"}}}")),
                 BULKHEAD_STATUS_OK);
    CHECK_STATUS(bulkhead_send(client, BH_S("group_update"),
                               BH_S("{\"data\":{\"$token\":\"" BH_TOKEN "\",\"$time\":1795739207818,"
                                    "\"$group_key\":\"company\",\"$group_id\":\"rb-co\","
                                    "\"$set\":{\"size\":5}}}")),
                 BULKHEAD_STATUS_OK);
    CHECK_STATUS(bulkhead_send(client, BH_S("import"),
                               BH_S("{\"data\":{\"event\":\"ruby import\",\"properties\":{"
                                    "\"distinct_id\":\"u9\",\"token\":\"" BH_TOKEN "\","
                                    "\"time\":1500000000,\"mp_lib\":\"ruby\","
                                    "\"$lib_version\":\"2.3.1\"}},\"api_key\":\"rb-key\"}")),
                 BULKHEAD_STATUS_OK);

    /* an array (a BufferedConsumer's batch): 3 events, queued together */
    CHECK_STATUS(bulkhead_send(client, BH_S("events"),
                               BH_S("[{\"event\":\"batch\",\"properties\":{\"distinct_id\":\"b1\"}},"
                                    "{\"event\":\"batch\",\"properties\":{\"distinct_id\":\"b2\"}},"
                                    "{\"event\":\"batch\",\"properties\":{\"distinct_id\":\"b3\"}}]")),
                 BULKHEAD_STATUS_OK);

    CHECK_STATUS(bulkhead_client_flush(client, 30000), BULKHEAD_STATUS_OK);
    s = bh_stats(client);
    bh_print_stats("after flush", &s);
    CHECK(s.enqueued == EVENTS + UPDATES);
    CHECK(s.sent == EVENTS + UPDATES);
    CHECK(s.rejected == 0 && s.failed == 0 && s.queue_len == 0 && s.in_flight == 0);
    CHECK(s.requests >= 4); /* at least one request per endpoint */
    CHECK(s.bytes_sent > 0);
    CHECK(s.circuit_state == 0);
    CHECK_ACCOUNTED(s);
    CHECK(bulkhead_client_queue_len(client) == 0);

    CHECK_STATUS(bulkhead_client_close(client, 5000), BULKHEAD_STATUS_OK);
    bulkhead_client_free(client);
    CHECK_STATUS(bulkhead_shutdown(2000), BULKHEAD_STATUS_OK);
    return bh_finish("wire_shapes");
}
