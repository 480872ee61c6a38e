/*
 * Several host threads track at once while the mock (scripted by the driver) answers some
 * requests with 503, drops a connection, rejects a batch and answers one 400. After a
 * flush every event is accounted for. Prints "final sent=N rejected=N" for the driver,
 * which checks the mock's unique event count equals `sent`.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>

#include "bh_test.h"

#define THREADS 4
#define PER_THREAD 2500

static bulkhead_client *client;
static int thread_failures[THREADS];

static void *worker(void *arg) {
    int t = *(int *)arg;
    char id[32], props[96];
    int i;
    for (i = 0; i < PER_THREAD; i++) {
        int id_len = snprintf(id, sizeof id, "t%d-%d", t, i);
        int p_len = snprintf(props, sizeof props, "{\"thread\":%d,\"i\":%d,\"kind\":\"load\"}", t, i);
        if (bulkhead_track(client, id, (size_t)id_len, BH_S("threaded"), props, (size_t)p_len) !=
            BULKHEAD_STATUS_OK)
            thread_failures[t]++;
    }
    return NULL;
}

int main(int argc, char **argv) {
    pthread_t threads[THREADS];
    int ids[THREADS];
    bulkhead_stats s;
    int t;

    if (argc < 2) bh_die("usage: %s MOCK_URL", argv[0]);
    client = bh_client(argv[1],
                       "\"batch_size\":100,\"pool_size\":4,\"max_retries\":8,"
                       "\"circuit_failure_threshold\":3,\"circuit_cooldown_ms\":100");
    for (t = 0; t < THREADS; t++) {
        ids[t] = t;
        if (pthread_create(&threads[t], NULL, worker, &ids[t]) != 0) bh_die("pthread_create");
    }
    for (t = 0; t < THREADS; t++) {
        pthread_join(threads[t], NULL);
        CHECK(thread_failures[t] == 0);
    }
    CHECK_STATUS(bulkhead_client_flush(client, 120000), BULKHEAD_STATUS_OK);
    s = bh_stats(client);
    bh_print_stats("after flush", &s);
    CHECK(s.enqueued == THREADS * PER_THREAD);
    CHECK(s.queue_len == 0 && s.in_flight == 0);
    CHECK_ACCOUNTED(s);
    CHECK(s.rejected > 0);   /* the scripted reject and 400 */
    CHECK(s.retries >= 4);   /* the 503s and the dropped connection */
    CHECK(s.failed == 0);    /* max_retries is enough for the scripted faults */
    CHECK(s.sent + s.rejected == THREADS * PER_THREAD);
    printf("final sent=%llu rejected=%llu\n", (unsigned long long)s.sent,
           (unsigned long long)s.rejected);
    bulkhead_client_free(client);
    CHECK_STATUS(bulkhead_shutdown(2000), BULKHEAD_STATUS_OK);
    return bh_finish("threads_faults");
}
