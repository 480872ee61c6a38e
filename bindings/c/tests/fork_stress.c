/*
 * Hundreds of forks while other parent threads track, create and free clients, and call
 * bulkhead_shutdown. Each child does one of the things real hosts do after fork and exits;
 * a child that has not exited within the watchdog is killed and fails the test (a hang is
 * a failure, not a timing).
 *
 * Child kinds, in turn:
 *   0. frees the parent's client without using it, then bulkhead_shutdown, then exit():
 *      the Ruby gem's own exit order. Must start no thread at all.
 *   1. makes its own client, tracks, closes, frees, shuts down.
 *   2. uses the inherited client: tracks, flushes, frees it, shuts down.
 * The parent's tracking threads also check that a client a shutdown closed under them
 * has every event accounted for.
 *
 * Prints "forks=N hung=N failed=N".
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bh_test.h"

#define FORKS 300
#define CHILD_WATCHDOG_MS 15000

static bulkhead_client *shared_client;
static const char *mock_url;
static int stop_flag = 0;

static int stopping(void) { return __atomic_load_n(&stop_flag, __ATOMIC_ACQUIRE); }

static void sleep_ms(long ms) {
    struct timespec ts;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    nanosleep(&ts, NULL);
}

/* Threads of this process, from /proc/self/status. */
static int thread_count(void) {
    char line[256];
    int threads = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "Threads:", 8) == 0) threads = atoi(line + 8);
    }
    fclose(f);
    return threads;
}

/* Tracks on its own client, replaced when the shutter thread closed it. */
static void *tracker(void *arg) {
    int *failures = (int *)arg;
    bulkhead_client *c = bh_client(mock_url, "\"queue_capacity\":2000,\"log_level\":\"error\"");
    while (!stopping()) {
        bulkhead_status st =
            bulkhead_track(c, BH_S("bg"), BH_S("stress"), BH_S("{\"k\":1}"));
        if (st == BULKHEAD_STATUS_CLOSED) {
            bulkhead_stats s;
            /* A shutdown is closing it; once our own close returns it is quiescent. */
            bulkhead_client_close(c, 0);
            s = bh_stats(c);
            if (s.enqueued != s.sent + s.rejected + s.failed + s.queue_len || s.queue_len)
                (*failures)++;
            bulkhead_client_free(c);
            c = bh_client(mock_url, "\"queue_capacity\":2000,\"log_level\":\"error\"");
        } else if (st != BULKHEAD_STATUS_OK && st != BULKHEAD_STATUS_QUEUE_FULL) {
            (*failures)++;
        }
    }
    bulkhead_client_free(c);
    return NULL;
}

static void *churner(void *arg) {
    (void)arg;
    while (!stopping()) {
        /* Freed with an event pending, by design: no warning line for each. */
        bulkhead_client *c = bh_client(mock_url, "\"log_level\":\"error\"");
        bulkhead_track(c, BH_S("churn"), BH_S("churn"), NULL, 0);
        bulkhead_client_free(c);
    }
    return NULL;
}

static void *shutter(void *arg) {
    (void)arg;
    while (!stopping()) {
        bulkhead_shutdown(5);
        sleep_ms(3);
    }
    return NULL;
}

static int child_main(int kind) {
    int failures = 0;
    if (kind == 0) {
        bulkhead_client_free(shared_client);
        if (thread_count() != 1) {
            fprintf(stderr, "child: free of an unused client started threads (%d)\n",
                    thread_count());
            failures++;
        }
        bulkhead_shutdown(BULKHEAD_TIMEOUT_CONFIGURED);
        if (thread_count() != 1) {
            fprintf(stderr, "child: shutdown with nothing used started threads (%d)\n",
                    thread_count());
            failures++;
        }
    } else if (kind == 1) {
        bulkhead_client *own = bh_client(mock_url, "");
        int i;
        for (i = 0; i < 10; i++) bulkhead_track(own, BH_S("child"), BH_S("own"), NULL, 0);
        bulkhead_client_close(own, 5000);
        bulkhead_client_free(own);
        bulkhead_shutdown(1000);
    } else {
        int i;
        for (i = 0; i < 10; i++)
            bulkhead_track(shared_client, BH_S("child"), BH_S("inherited"), NULL, 0);
        bulkhead_client_flush(shared_client, 5000);
        bulkhead_client_free(shared_client);
        bulkhead_shutdown(1000);
    }
    /* exit(), not _exit(): atexit handlers and stdio flushing run, as in real hosts. */
    exit(failures ? 3 : 0);
}

int main(int argc, char **argv) {
    pthread_t threads[4];
    int tracker_failures[2] = {0, 0};
    int i, hung = 0, failed = 0;
    if (argc < 2) bh_die("usage: fork_stress MOCK_URL");
    mock_url = argv[1];
    shared_client = bh_client(mock_url, "\"queue_capacity\":2000");
    pthread_create(&threads[0], NULL, tracker, &tracker_failures[0]);
    pthread_create(&threads[1], NULL, tracker, &tracker_failures[1]);
    pthread_create(&threads[2], NULL, churner, NULL);
    pthread_create(&threads[3], NULL, shutter, NULL);
    for (i = 0; i < FORKS; i++) {
        pid_t pid;
        int status = 0, waited_ms = 0;
        fflush(NULL);
        pid = fork();
        if (pid < 0) bh_die("fork failed");
        if (pid == 0) child_main(i % 3);
        for (;;) {
            pid_t r = waitpid(pid, &status, WNOHANG);
            if (r == pid) {
                if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
                    fprintf(stderr, "fork %d (kind %d): child failed (status %d)\n", i, i % 3,
                            status);
                    failed++;
                }
                break;
            }
            if (r < 0 && errno != EINTR) {
                fprintf(stderr, "fork %d: waitpid failed (errno %d)\n", i, errno);
                failed++;
                break;
            }
            if (waited_ms >= CHILD_WATCHDOG_MS) {
                fprintf(stderr, "fork %d (kind %d): child %ld hung; killed\n", i, i % 3,
                        (long)pid);
                kill(pid, SIGKILL);
                waitpid(pid, &status, 0);
                hung++;
                break;
            }
            sleep_ms(2);
            waited_ms += 2;
        }
    }
    __atomic_store_n(&stop_flag, 1, __ATOMIC_RELEASE);
    for (i = 0; i < 4; i++) pthread_join(threads[i], NULL);
    bulkhead_client_free(shared_client);
    /* A client closed by a shutdown had every event resolved or counted. */
    CHECK(tracker_failures[0] == 0);
    CHECK(tracker_failures[1] == 0);
    printf("forks=%d hung=%d failed=%d\n", FORKS, hung, failed);
    CHECK(hung == 0);
    CHECK(failed == 0);
    return bh_finish("fork_stress");
}
