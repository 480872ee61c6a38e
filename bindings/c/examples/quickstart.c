/*
 * bulkhead quick start: queue an event and a profile update, then exit cleanly.
 *
 *   cargo build --release
 *   cc -std=c99 -Iinclude bindings/c/examples/quickstart.c -o quickstart \
 *      -Ltarget/release -lbulkhead -Wl,-rpath,$PWD/target/release
 *   MIXPANEL_TOKEN=... ./quickstart [API_HOST]
 *
 * API_HOST defaults to https://api.mixpanel.com (plain http:// only for loopback).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bulkhead.h"

static int fail(const char *what, bulkhead_status status) {
    char message[256];
    bulkhead_last_error(message, sizeof message, NULL);
    fprintf(stderr, "%s: %s: %s\n", what, bulkhead_status_str(status), message);
    return 1;
}

int main(int argc, char **argv) {
    const char *token = getenv("MIXPANEL_TOKEN");
    const char *host = argc > 1 ? argv[1] : "https://api.mixpanel.com";
    const char *props = "{\"plan\":\"pro\",\"source\":\"quickstart\"}";
    const char *profile = "{\"$email\":\"ada@example.com\"}";
    char config[512];
    bulkhead_client *client = NULL;
    bulkhead_stats stats;
    bulkhead_status status;

    snprintf(config, sizeof config, "{\"token\":\"%s\",\"api_host\":\"%s\"}",
             token ? token : "YOUR_TOKEN", host);
    status = bulkhead_client_new(config, strlen(config), &client);
    if (status != BULKHEAD_STATUS_OK) return fail("bulkhead_client_new", status);

    /* Never blocks: the event is queued and sent in the background. */
    status = bulkhead_track(client, "user-1", strlen("user-1"), "Signed up", strlen("Signed up"),
                            props, strlen(props));
    if (status == BULKHEAD_STATUS_QUEUE_FULL) fprintf(stderr, "queue full: event dropped\n");
    else if (status != BULKHEAD_STATUS_OK) return fail("bulkhead_track", status);

    status = bulkhead_people(client, "user-1", strlen("user-1"), "$set", strlen("$set"), profile,
                             strlen(profile));
    if (status != BULKHEAD_STATUS_OK) return fail("bulkhead_people", status);

    /* Deliver what is queued, waiting at most 2 s, then report. */
    status = bulkhead_client_close(client, 2000);
    if (status != BULKHEAD_STATUS_OK) fprintf(stderr, "close: %s\n", bulkhead_status_str(status));
    if (bulkhead_client_stats(client, &stats) == BULKHEAD_STATUS_OK)
        printf("sent %llu, failed %llu, dropped %llu\n", (unsigned long long)stats.sent,
               (unsigned long long)stats.failed, (unsigned long long)stats.dropped_queue_full);
    bulkhead_client_free(client);
    bulkhead_shutdown(2000);
    return status == BULKHEAD_STATUS_OK ? 0 : 1;
}
