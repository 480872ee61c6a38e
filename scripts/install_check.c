/* `make test-install`: a program built against an installed libbulkhead (through
 * pkg-config, statically and dynamically) that delivers three events to the mock at argv[1]. */
#include <bulkhead.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s MOCK_URL\n", argv[0]);
        return 2;
    }
    char config[512];
    snprintf(config, sizeof config,
             "{\"token\":\"tok\",\"api_host\":\"%s\",\"flush_interval_ms\":50}", argv[1]);
    bulkhead_client *client = NULL;
    if (bulkhead_client_new(config, strlen(config), &client) != BULKHEAD_STATUS_OK) {
        char msg[256];
        bulkhead_last_error(msg, sizeof msg, NULL);
        fprintf(stderr, "bulkhead_client_new: %s\n", msg);
        return 1;
    }
    for (int i = 0; i < 3; i++) {
        if (bulkhead_track(client, "u1", 2, "Installed", 9, NULL, 0) != BULKHEAD_STATUS_OK) {
            fprintf(stderr, "bulkhead_track refused an event\n");
            return 1;
        }
    }
    bulkhead_status st = bulkhead_client_flush(client, 10000);
    bulkhead_stats stats;
    bulkhead_client_stats(client, &stats);
    bulkhead_client_close(client, 2000);
    bulkhead_client_free(client);
    bulkhead_shutdown(2000);
    if (st != BULKHEAD_STATUS_OK || stats.sent != 3) {
        fprintf(stderr, "flush %s, sent %llu of 3\n", bulkhead_status_str(st),
                (unsigned long long)stats.sent);
        return 1;
    }
    printf("libbulkhead %s: 3 events delivered\n", bulkhead_version());
    return 0;
}
