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
 * Then waves of WAVE_SIZE children alive at once (kinds 1 and 2, taking turns) while the
 * parent's threads go on tracking and making clients, but no longer shut down: now the
 * parent's events too must all arrive.
 *
 * Every client's `sent` is summed by event name (children report theirs through a pipe),
 * so the driver can hold the mock to it: "sent stress=N churn=N parent=N child=N" and the
 * most the mock may hold beyond that, events given up while a request was in flight
 * ("unsure ..."). Prints "forks=N hung=N failed=N" (N counts both phases).
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
#define WAVES 5
#define WAVE_SIZE 20
#define CHILD_WATCHDOG_MS 15000

/* What the mock must hold, by event name: what each client counted sent, and what it gave
 * up on (failed or dropped at shutdown), which a request cut off mid-way may have
 * delivered. */
enum { STRESS, CHURN, PARENT, STEADY, CHURN_STEADY, PARENT_STEADY, CHILD, NAMES };
static const char *const NAME[NAMES] = {"stress", "churn",        "parent", "steady",
                                        "churn-steady", "parent-steady", "child"};
static unsigned long long sent_by[NAMES], unsure_by[NAMES];
/* Children write "sent N unsure N\n" here (one write: atomic under PIPE_BUF). */
static int report_fd = -1;

static bulkhead_client *shared_client;
static const char *mock_url;
static int stop_flag = 0;

static int stopping(void) { return __atomic_load_n(&stop_flag, __ATOMIC_ACQUIRE); }

/* Adds a closed (quiescent) client's outcome to the totals of `name`. */
static void tally(int name, bulkhead_stats s) {
    __atomic_add_fetch(&sent_by[name], s.sent, __ATOMIC_RELAXED);
    __atomic_add_fetch(&unsure_by[name], s.failed + s.dropped_shutdown, __ATOMIC_RELAXED);
}

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

/* Phase 1: shutdowns every few ms (nothing the parent tracks can be counted on to arrive);
 * STOPPING_SHUTDOWNS: the shutter is told to stop; STEADY: it has stopped, so what the
 * parent tracks from now on must arrive. */
enum { SHUTDOWNS = 1, STOPPING_SHUTDOWNS, STEADY_PHASE };
static int phase_now = SHUTDOWNS;
static int steady(void) { return __atomic_load_n(&phase_now, __ATOMIC_ACQUIRE) == STEADY_PHASE; }

/* Tracks on its own client, replaced when a shutdown closed it or the phase changed. */
static void *tracker(void *arg) {
    int *failures = (int *)arg;
    int mine = 0; /* steady() when the client was made */
    bulkhead_client *c = bh_client(mock_url, "\"queue_capacity\":2000,\"log_level\":\"error\"");
    for (;;) {
        bulkhead_status st = mine
            ? bulkhead_track(c, BH_S("bg"), BH_S("steady"), BH_S("{\"k\":2}"))
            : bulkhead_track(c, BH_S("bg"), BH_S("stress"), BH_S("{\"k\":1}"));
        int last = stopping();
        if (st == BULKHEAD_STATUS_CLOSED || steady() != mine || last) {
            bulkhead_stats s;
            /* A shutdown may be closing it; once our own close returns it is quiescent. */
            bulkhead_client_close(c, st == BULKHEAD_STATUS_CLOSED ? 0 : 5000);
            s = bh_stats(c);
            if (s.enqueued != s.sent + s.rejected + s.failed + s.queue_len || s.queue_len)
                (*failures)++;
            tally(mine ? STEADY : STRESS, s);
            bulkhead_client_free(c);
            if (last) return NULL;
            mine = steady();
            c = bh_client(mock_url, "\"queue_capacity\":2000,\"log_level\":\"error\"");
        } else if (st != BULKHEAD_STATUS_OK && st != BULKHEAD_STATUS_QUEUE_FULL) {
            (*failures)++;
        }
    }
}

static void *churner(void *arg) {
    (void)arg;
    while (!stopping()) {
        int mine = steady();
        bulkhead_client *c = bh_client(mock_url, "\"log_level\":\"error\"");
        if (mine) {
            bulkhead_track(c, BH_S("churn"), BH_S("churn-steady"), NULL, 0);
        } else {
            bulkhead_track(c, BH_S("churn"), BH_S("churn"), NULL, 0);
        }
        bulkhead_client_close(c, 5000);
        tally(mine ? CHURN_STEADY : CHURN, bh_stats(c));
        bulkhead_client_free(c);
    }
    return NULL;
}

static void *shutter(void *arg) {
    (void)arg;
    while (__atomic_load_n(&phase_now, __ATOMIC_ACQUIRE) == SHUTDOWNS) {
        bulkhead_shutdown(5);
        sleep_ms(3);
    }
    return NULL;
}

/* Reports a child's delivered and given-up events to the parent. */
static void report(unsigned long long sent, unsigned long long unsure) {
    char line[64];
    int n = snprintf(line, sizeof line, "sent %llu unsure %llu\n", sent, unsure);
    if (write(report_fd, line, (size_t)n) != n) bh_die("child: report write failed");
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
        bulkhead_stats s;
        int i;
        for (i = 0; i < 10; i++) bulkhead_track(own, BH_S("child"), BH_S("child"), NULL, 0);
        bulkhead_client_close(own, 5000);
        s = bh_stats(own);
        report(s.sent, s.failed + s.dropped_shutdown);
        bulkhead_client_free(own);
        bulkhead_shutdown(1000);
    } else {
        /* The counters came with the client across fork(): the child's share is what they
         * gained here. (A shutdown in the parent may have closed it: then nothing is
         * accepted and there is nothing to report.) */
        bulkhead_stats before = bh_stats(shared_client), after;
        int i;
        for (i = 0; i < 10; i++)
            bulkhead_track(shared_client, BH_S("child"), BH_S("child"), NULL, 0);
        bulkhead_client_close(shared_client, 5000);
        after = bh_stats(shared_client);
        report(after.sent - before.sent, (after.failed + after.dropped_shutdown) -
                                             (before.failed + before.dropped_shutdown));
        bulkhead_client_free(shared_client);
        bulkhead_shutdown(1000);
    }
    /* exit(), not _exit(): atexit handlers and stdio flushing run, as in real hosts. */
    exit(failures ? 3 : 0);
}

/* Waits for `pid` under the watchdog; counts a hang or a failure. */
static void reap(pid_t pid, int label, long waited_ms, int *hung, int *failed) {
    int status = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
                fprintf(stderr, "fork %d: child failed (status %d)\n", label, status);
                (*failed)++;
            }
            return;
        }
        if (r < 0 && errno != EINTR) {
            fprintf(stderr, "fork %d: waitpid failed (errno %d)\n", label, errno);
            (*failed)++;
            return;
        }
        if (waited_ms >= CHILD_WATCHDOG_MS) {
            fprintf(stderr, "fork %d: child %ld hung; killed\n", label, (long)pid);
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            (*hung)++;
            return;
        }
        sleep_ms(2);
        waited_ms += 2;
    }
}

static pid_t spawn_child(int kind) {
    pid_t pid;
    fflush(NULL);
    pid = fork();
    if (pid < 0) bh_die("fork failed");
    if (pid == 0) child_main(kind);
    return pid;
}

/* Sums the children's reports once they have all exited (EOF when the last closes it). */
static void read_reports(int fd) {
    char buf[4096], line[128];
    size_t used = 0;
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) != 0) {
        ssize_t k;
        if (n < 0) {
            if (errno == EINTR) continue;
            bh_die("reading the children's reports failed");
        }
        for (k = 0; k < n; k++) {
            if (buf[k] != '\n' && used + 1 < sizeof line) {
                line[used++] = buf[k];
                continue;
            }
            {
                unsigned long long sent = 0, unsure = 0;
                line[used] = '\0';
                used = 0;
                if (sscanf(line, "sent %llu unsure %llu", &sent, &unsure) != 2)
                    bh_die("bad child report %s", line);
                sent_by[CHILD] += sent;
                unsure_by[CHILD] += unsure;
            }
        }
    }
}

int main(int argc, char **argv) {
    pthread_t threads[4];
    int tracker_failures[2] = {0, 0};
    int i, w, hung = 0, failed = 0, reports[2];
    if (argc < 2) bh_die("usage: fork_stress MOCK_URL");
    mock_url = argv[1];
    if (pipe(reports) != 0) bh_die("pipe failed");
    report_fd = reports[1];
    shared_client = bh_client(mock_url, "\"queue_capacity\":2000");
    pthread_create(&threads[0], NULL, tracker, &tracker_failures[0]);
    pthread_create(&threads[1], NULL, tracker, &tracker_failures[1]);
    pthread_create(&threads[2], NULL, churner, NULL);
    pthread_create(&threads[3], NULL, shutter, NULL);
    for (i = 0; i < FORKS; i++) {
        bulkhead_track(shared_client, BH_S("parent"), BH_S("parent"), NULL, 0);
        reap(spawn_child(i % 3), i, 0, &hung, &failed);
    }
    __atomic_store_n(&phase_now, STOPPING_SHUTDOWNS, __ATOMIC_RELEASE);
    pthread_join(threads[3], NULL);
    __atomic_store_n(&phase_now, STEADY_PHASE, __ATOMIC_RELEASE);
    bulkhead_client_close(shared_client, 5000);
    tally(PARENT, bh_stats(shared_client));
    bulkhead_client_free(shared_client);
    shared_client = bh_client(mock_url, "\"queue_capacity\":2000");
    for (w = 0; w < WAVES; w++) {
        pid_t wave[WAVE_SIZE];
        for (i = 0; i < WAVE_SIZE; i++) {
            bulkhead_track(shared_client, BH_S("parent"), BH_S("parent-steady"), NULL, 0);
            wave[i] = spawn_child(1 + i % 2);
        }
        for (i = 0; i < WAVE_SIZE; i++) reap(wave[i], FORKS + w * WAVE_SIZE + i, 0, &hung, &failed);
    }
    /* The churner's steady clients too (a few ms each), under a watchdog. */
    for (i = 0; i < CHILD_WATCHDOG_MS && !__atomic_load_n(&sent_by[CHURN_STEADY], __ATOMIC_RELAXED); i++)
        sleep_ms(1);
    __atomic_store_n(&stop_flag, 1, __ATOMIC_RELEASE);
    for (i = 0; i < 3; i++) pthread_join(threads[i], NULL);
    bulkhead_client_close(shared_client, 5000);
    tally(PARENT_STEADY, bh_stats(shared_client));
    bulkhead_client_free(shared_client);
    close(report_fd);
    read_reports(reports[0]);
    /* A client closed by a shutdown had every event resolved or counted. */
    CHECK(tracker_failures[0] == 0);
    CHECK(tracker_failures[1] == 0);
    printf("forks=%d hung=%d failed=%d\n", FORKS + WAVES * WAVE_SIZE, hung, failed);
    printf("sent");
    for (i = 0; i < NAMES; i++) printf(" %s=%llu", NAME[i], sent_by[i]);
    printf("\nunsure");
    for (i = 0; i < NAMES; i++) printf(" %s=%llu", NAME[i], unsure_by[i]);
    printf("\n");
    CHECK(hung == 0);
    CHECK(failed == 0);
    return bh_finish("fork_stress");
}
