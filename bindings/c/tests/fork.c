/*
 * fork() while the parent is mid-flush under load, with another parent thread still
 * tracking. The child (and a grandchild it forks) track their own events, flush and
 * _exit. The driver checks that every event arrived exactly once: the parent's queued
 * events were delivered by the parent only, and no insert id repeats across processes.
 *
 * Prints "counts parent=N parent-bg=N child=N grandchild=N" for the driver.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bh_test.h"

#define PARENT_EVENTS 20000
#define BG_EVENTS 4000
#define CHILD_EVENTS 5000
#define GRANDCHILD_EVENTS 300

static bulkhead_client *client;
static bulkhead_status flush_status = BULKHEAD_STATUS_INTERNAL;
static int bg_failures = 0;

static void track_n(const char *name, const char *prefix, int n) {
    char id[64];
    char props[64];
    int i;
    for (i = 0; i < n; i++) {
        int id_len = snprintf(id, sizeof id, "%s-%d", prefix, i);
        int props_len = snprintf(props, sizeof props, "{\"i\":%d,\"pid\":%ld}", i, (long)getpid());
        CHECK_STATUS(bulkhead_track(client, id, (size_t)id_len, name, strlen(name), props,
                                    (size_t)props_len),
                     BULKHEAD_STATUS_OK);
    }
}

static void *flusher(void *arg) {
    (void)arg;
    flush_status = bulkhead_client_flush(client, 120000);
    return NULL;
}

/* Keeps tracking, paced, so that it is still going when the main thread forks. */
static void *background_tracker(void *arg) {
    struct timespec pause;
    char id[32];
    int i;
    (void)arg;
    pause.tv_sec = 0;
    pause.tv_nsec = 100000; /* 0.1 ms */
    for (i = 0; i < BG_EVENTS; i++) {
        int len = snprintf(id, sizeof id, "bg-%d", i);
        if (bulkhead_track(client, id, (size_t)len, BH_S("parent-bg"), NULL, 0) !=
            BULKHEAD_STATUS_OK)
            bg_failures++;
        nanosleep(&pause, NULL);
    }
    return NULL;
}

/* Waits for a child and returns its exit code (or 100 + signal). */
static int reap(pid_t pid) {
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) return 99;
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 100 + WTERMSIG(status);
    return 98;
}

static int grandchild(void) {
    bulkhead_stats s;
    track_n("grandchild", "g", GRANDCHILD_EVENTS);
    CHECK_STATUS(bulkhead_client_flush(client, 60000), BULKHEAD_STATUS_OK);
    s = bh_stats(client);
    bh_print_stats("grandchild", &s);
    CHECK(s.enqueued == GRANDCHILD_EVENTS && s.sent == GRANDCHILD_EVENTS);
    CHECK_ACCOUNTED(s);
    fflush(stdout);
    return bh_failures ? 1 : 0;
}

static int child(void) {
    bulkhead_stats s;
    pid_t pid;
    /* A fresh queue and fresh counters: nothing of the parent's is here. */
    s = bh_stats(client);
    CHECK(s.enqueued == 0 && s.queue_len == 0 && s.sent == 0);
    track_n("child", "c", CHILD_EVENTS);
    CHECK_STATUS(bulkhead_client_flush(client, 60000), BULKHEAD_STATUS_OK);
    s = bh_stats(client);
    bh_print_stats("child", &s);
    CHECK(s.enqueued == CHILD_EVENTS && s.sent == CHILD_EVENTS);
    CHECK_ACCOUNTED(s);

    fflush(stdout);
    pid = fork();
    if (pid < 0) bh_die("fork (child)");
    if (pid == 0) _exit(grandchild());
    CHECK(reap(pid) == 0);
    /* The child's client is still usable after its own child forked. */
    CHECK_STATUS(bulkhead_client_flush(client, 60000), BULKHEAD_STATUS_OK);
    s = bh_stats(client);
    CHECK(s.enqueued == CHILD_EVENTS && s.sent == CHILD_EVENTS);

    bulkhead_client_free(client);
    CHECK_STATUS(bulkhead_shutdown(5000), BULKHEAD_STATUS_OK);
    fflush(stdout);
    return bh_failures ? 1 : 0;
}

int main(int argc, char **argv) {
    pthread_t flush_thread, bg_thread;
    bulkhead_stats s;
    pid_t pid;
    int waited_ms = 0;
    int child_code;
    struct timespec ms;

    if (argc < 2) bh_die("usage: %s MOCK_URL", argv[0]);
    client = bh_client(argv[1], "\"batch_size\":200,\"pool_size\":4");
    ms.tv_sec = 0;
    ms.tv_nsec = 1000000;

    track_n("parent", "p", PARENT_EVENTS);
    if (pthread_create(&bg_thread, NULL, background_tracker, NULL) != 0) bh_die("pthread");
    if (pthread_create(&flush_thread, NULL, flusher, NULL) != 0) bh_die("pthread");

    /* Fork once delivery is under way (no timing is asserted: we fork regardless). */
    for (;;) {
        s = bh_stats(client);
        if ((s.sent > 0 && s.in_flight > 0) || waited_ms >= 20000) break;
        nanosleep(&ms, NULL);
        waited_ms++;
    }
    bh_print_stats("parent at fork", &s);
    printf("forking with %llu queued and %llu in flight\n", (unsigned long long)s.queue_len,
           (unsigned long long)s.in_flight);
    fflush(stdout);

    pid = fork();
    if (pid < 0) bh_die("fork");
    if (pid == 0) _exit(child());

    child_code = reap(pid);
    CHECK(child_code == 0);
    pthread_join(bg_thread, NULL);
    pthread_join(flush_thread, NULL);
    CHECK(flush_status == BULKHEAD_STATUS_OK || flush_status == BULKHEAD_STATUS_TIMEOUT);
    CHECK(bg_failures == 0);

    CHECK_STATUS(bulkhead_client_flush(client, 120000), BULKHEAD_STATUS_OK);
    s = bh_stats(client);
    bh_print_stats("parent", &s);
    CHECK(s.enqueued == PARENT_EVENTS + BG_EVENTS);
    CHECK(s.sent == PARENT_EVENTS + BG_EVENTS);
    CHECK_ACCOUNTED(s);

    printf("counts parent=%d parent-bg=%d child=%d grandchild=%d\n", PARENT_EVENTS, BG_EVENTS,
           CHILD_EVENTS, GRANDCHILD_EVENTS);
    bulkhead_client_free(client);
    CHECK_STATUS(bulkhead_shutdown(5000), BULKHEAD_STATUS_OK);
    return bh_finish("fork");
}
