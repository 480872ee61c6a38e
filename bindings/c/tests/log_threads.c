/*
 * The log callback runs on library threads only: the hot path that notices the guard's
 * first drop leaves the warning for a library thread, so `bulkhead_track` never calls
 * into the host's callback (or writes to stderr). The driver keeps the mock hanging.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <time.h>

#include "bh_test.h"

static pthread_t main_thread;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int on_main = 0, drop_lines = 0;

static void on_log(uint32_t level, const char *msg, size_t len, void *user_data) {
    (void)level;
    (void)user_data;
    pthread_mutex_lock(&lock);
    if (pthread_equal(pthread_self(), main_thread)) {
        on_main++;
        printf("on the tracking thread: %.*s\n", (int)len, msg);
    }
    if (len > 0 && strstr(msg, "queue full") != NULL) drop_lines++;
    pthread_mutex_unlock(&lock);
}

int main(int argc, char **argv) {
    bulkhead_client *client;
    int i, waited_ms = 0, done = 0;
    if (argc < 2) bh_die("usage: %s MOCK_URL", argv[0]);
    main_thread = pthread_self();
    CHECK_STATUS(bulkhead_set_log_callback(BULKHEAD_LOG_LEVEL_DEBUG, on_log, NULL),
                 BULKHEAD_STATUS_OK);
    client = bh_client(argv[1], "\"queue_capacity\":10,\"pool_size\":1,\"batch_size\":2,"
                                "\"request_timeout_ms\":500,\"circuit_failure_threshold\":0");
    for (i = 0; i < 1000; i++) bulkhead_track(client, BH_S("u"), BH_S("fill"), NULL, 0);
    CHECK(bh_stats(client).dropped_queue_full > 0);
    /* The warning still arrives, from a library thread (within a watchdog). */
    while (!done && waited_ms < 60000) {
        struct timespec ts = {0, 10 * 1000000L};
        pthread_mutex_lock(&lock);
        done = drop_lines > 0;
        pthread_mutex_unlock(&lock);
        nanosleep(&ts, NULL);
        waited_ms += 10;
    }
    pthread_mutex_lock(&lock);
    printf("callback calls on the tracking thread: %d; queue-full lines: %d\n", on_main,
           drop_lines);
    CHECK(on_main == 0);
    CHECK(drop_lines == 1);
    pthread_mutex_unlock(&lock);
    bulkhead_client_close(client, 0);
    bulkhead_client_free(client);
    CHECK_STATUS(bulkhead_set_log_callback(BULKHEAD_LOG_LEVEL_OFF, NULL, NULL), BULKHEAD_STATUS_OK);
    bulkhead_shutdown(1000);
    return bh_finish("log_threads");
}
