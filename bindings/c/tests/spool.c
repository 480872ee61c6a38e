/*
 * The disk spool (spool_dir) from C: an outage far longer than the queue loses nothing.
 *
 * argv: MOCK_URL SPOOL_DIR (a fresh directory the driver made). The driver starts the mock
 * refusing connections. With queue_capacity 50:
 *
 * 1. The parent tracks N events (100 times what the queue holds): every bulkhead_track
 *    returns OK, nothing is dropped (dropped_queue_full 0), and once the client is quiet
 *    every event is on disk (spooled - replayed == N; the accounting invariant holds).
 * 2. A forked child keeps using the parent's client (rebuilt in the child, with its own
 *    spool writer on the same directory), tracks CHILD_N events while the service is still
 *    down, closes (everything spooled, nothing failed) and exits: its events stay on disk.
 * 3. The parent prints "recover" and waits for a line on stdin: the driver brings the mock
 *    back and answers. The parent then flushes until it has sent N + CHILD_N events (its
 *    own and the dead child's, which its writer takes over) and its spool is empty, checks
 *    the invariant, closes, and prints "final n=N child=CHILD_N ..." for the driver, which
 *    checks that the mock holds every event exactly once.
 *
 * Watchdogs (alarm) end a stuck parent or child; no duration is asserted.
 */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bh_test.h"

#define N 5000       /* the parent's events: 100 times the queue_capacity below */
#define CHILD_N 1500 /* the forked child's */
/* Far below the driver's 300 s; a watchdog is a hang detector, not a timing. */
#define WATCHDOG_S 240

/*
 * Quick timings and a breaker that opens at the first failure, so nothing churns between
 * the spool and a dead service; a small queue; fdatasync after every write.
 */
#define SPOOL_CONFIG                                                                        \
    "\"queue_capacity\":50,\"batch_size\":25,\"max_retries\":1,\"retry_budget_ms\":300,"    \
    "\"circuit_failure_threshold\":1,\"circuit_cooldown_ms\":200,"                          \
    "\"circuit_cooldown_max_ms\":400,\"spool_sync_interval_ms\":0,\"shutdown_timeout_ms\":" \
    "20000,\"spool_dir\":"

static void on_alarm(int sig) {
    static const char msg[] = "spool: watchdog: stuck (a hang), giving up\n";
    ssize_t ignored;
    (void)sig;
    ignored = write(2, msg, sizeof msg - 1);
    (void)ignored;
    _exit(3);
}

static void watchdog(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGALRM, &sa, NULL) != 0) bh_die("sigaction");
    alarm(WATCHDOG_S);
}

static void sleep_ms(long ms) {
    struct timespec t;
    t.tv_sec = ms / 1000;
    t.tv_nsec = (ms % 1000) * 1000000L;
    nanosleep(&t, NULL);
}

static void print_spool_stats(const char *label, const bulkhead_stats *s) {
    bh_print_stats(label, s);
    printf("%s: spooled=%llu replayed=%llu spool_expired=%llu spool_corrupt=%llu "
           "dropped_spool_full=%llu dropped_spool_error=%llu spool_pending=%llu "
           "spool_bytes=%llu spool_records=%llu in_flight=%llu\n",
           label, (unsigned long long)s->spooled, (unsigned long long)s->replayed,
           (unsigned long long)s->spool_expired, (unsigned long long)s->spool_corrupt,
           (unsigned long long)s->dropped_spool_full, (unsigned long long)s->dropped_spool_error,
           (unsigned long long)s->spool_pending, (unsigned long long)s->spool_bytes,
           (unsigned long long)s->spool_records, (unsigned long long)s->in_flight);
    fflush(stdout);
}

/* The accounting invariant with a spool, for a quiet client. */
#define CHECK_SPOOL_ACCOUNTED(s)                                                            \
    CHECK((s).enqueued + (s).replayed == (s).sent + (s).rejected + (s).failed + (s).spooled + \
                                             (s).queue_len + (s).spool_pending)

/* No event, error or drop of any kind besides what the scenario expects. */
#define CHECK_NOTHING_LOST(s)                                                              \
    do {                                                                                   \
        CHECK((s).dropped_queue_full == 0 && (s).dropped_too_large == 0 &&                 \
              (s).dropped_invalid == 0 && (s).dropped_shutdown == 0);                      \
        CHECK((s).failed == 0 && (s).rejected == 0);                                       \
        CHECK((s).dropped_spool_full == 0 && (s).dropped_spool_error == 0);                \
        CHECK((s).spool_expired == 0 && (s).spool_corrupt == 0);                           \
    } while (0)

static int same(const bulkhead_stats *a, const bulkhead_stats *b) {
    return a->enqueued == b->enqueued && a->dropped_queue_full == b->dropped_queue_full &&
           a->dropped_too_large == b->dropped_too_large &&
           a->dropped_invalid == b->dropped_invalid &&
           a->dropped_shutdown == b->dropped_shutdown && a->sent == b->sent &&
           a->rejected == b->rejected && a->failed == b->failed && a->retries == b->retries &&
           a->requests == b->requests && a->queue_len == b->queue_len &&
           a->in_flight == b->in_flight && a->circuit_state == b->circuit_state &&
           a->spooled == b->spooled && a->replayed == b->replayed &&
           a->spool_expired == b->spool_expired && a->spool_corrupt == b->spool_corrupt &&
           a->dropped_spool_full == b->dropped_spool_full &&
           a->dropped_spool_error == b->dropped_spool_error &&
           a->spool_pending == b->spool_pending && a->spool_records == b->spool_records;
}

/*
 * A snapshot of a quiet client: nothing in the queue or the hand-off, and no counter moved
 * between two snapshots taken 5 ms apart (the counters only grow, so a replay or a spill
 * in progress shows). The replay task keeps probing a dead service now and then, so the
 * client is not quiet forever: this waits for a moment when it is (the watchdog bounds it).
 */
static bulkhead_stats quiet_stats(const bulkhead_client *client) {
    bulkhead_stats a = bh_stats(client);
    for (;;) {
        bulkhead_stats b;
        sleep_ms(5);
        b = bh_stats(client);
        if (same(&a, &b) && b.queue_len == 0 && b.spool_pending == 0 && b.in_flight == 0)
            return b;
        a = b;
    }
}

/*
 * Tracks `n` events named `name` (distinct ids `prefix-i`); returns how many calls did not
 * return OK, printing the first few and counting QUEUE_FULL in `*queue_full`.
 */
static int track_n(bulkhead_client *client, const char *name, const char *prefix, int n,
                   int *queue_full) {
    char id[64];
    char props[96];
    int i, not_ok = 0;
    for (i = 0; i < n; i++) {
        int id_len = snprintf(id, sizeof id, "%s-%d", prefix, i);
        int props_len = snprintf(props, sizeof props, "{\"i\":%d,\"pid\":%ld,\"plan\":\"pro\"}",
                                 i, (long)getpid());
        bulkhead_status st = bulkhead_track(client, id, (size_t)id_len, name, strlen(name),
                                            props, (size_t)props_len);
        if (st != BULKHEAD_STATUS_OK) {
            if (st == BULKHEAD_STATUS_QUEUE_FULL) (*queue_full)++;
            if (not_ok++ < 5)
                fprintf(stderr, "%s: bulkhead_track #%d returned %s: %s\n", name, i,
                        bulkhead_status_str(st), bh_last_error());
        }
    }
    return not_ok;
}

/* Waits for a child and returns its exit code (or 100 + signal). */
static int reap(pid_t pid) {
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) return 99;
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 100 + WTERMSIG(status);
    return 98;
}

/*
 * The forked child: the parent's client, rebuilt here with a fresh queue, fresh counters
 * and its own spool writer on the same directory. The service is still down: everything
 * it tracks goes to the spool, and close leaves it there.
 */
static int child(bulkhead_client *client) {
    bulkhead_stats s;
    int queue_full = 0;
    bulkhead_status st;
    alarm(WATCHDOG_S); /* a child does not inherit its parent's alarm */
    s = bh_stats(client);
    CHECK(s.enqueued == 0 && s.spooled == 0 && s.replayed == 0 && s.queue_len == 0);
    CHECK(track_n(client, "child", "c", CHILD_N, &queue_full) == 0);
    CHECK(queue_full == 0);
    s = bh_stats(client);
    CHECK(s.enqueued == CHILD_N && s.dropped_queue_full == 0);
    /* Close in the outage: what is pending goes to the spool, nothing is given up. */
    st = bulkhead_client_close(client, 20000);
    if (st != BULKHEAD_STATUS_OK)
        fprintf(stderr, "child: close returned %s: %s\n", bulkhead_status_str(st),
                bh_last_error());
    CHECK(st == BULKHEAD_STATUS_OK);
    s = bh_stats(client);
    print_spool_stats("child after close", &s);
    CHECK(s.enqueued == CHILD_N && s.sent == 0);
    CHECK_NOTHING_LOST(s);
    CHECK(s.queue_len == 0 && s.spool_pending == 0);
    CHECK(s.spooled == s.replayed + CHILD_N); /* every event of the child is on disk */
    CHECK_SPOOL_ACCOUNTED(s);
    bulkhead_client_free(client);
    CHECK_STATUS(bulkhead_shutdown(5000), BULKHEAD_STATUS_OK);
    printf("child: %s\n", bh_failures ? "FAILED" : "ok");
    fflush(stdout);
    return bh_failures ? 1 : 0;
}

int main(int argc, char **argv) {
    char extra[1024];
    char line[64];
    bulkhead_client *client;
    bulkhead_stats s;
    int queue_full = 0;
    int n, loops;
    pid_t pid;

    if (argc < 3) bh_die("usage: %s MOCK_URL SPOOL_DIR", argv[0]);
    watchdog();
    n = snprintf(extra, sizeof extra, SPOOL_CONFIG "\"%s\"", argv[2]);
    if (n < 0 || (size_t)n >= sizeof extra) bh_die("spool_dir too long");
    client = bh_client(argv[1], extra);

    /* 1. The service refuses: far more events than the queue holds, none refused. */
    CHECK(track_n(client, "parent", "p", N, &queue_full) == 0);
    CHECK(queue_full == 0);
    s = bh_stats(client);
    print_spool_stats("parent after tracking", &s);
    CHECK(s.enqueued == N && s.dropped_queue_full == 0);
    s = quiet_stats(client);
    print_spool_stats("parent in the outage", &s);
    CHECK(s.enqueued == N && s.sent == 0);
    CHECK_NOTHING_LOST(s);
    CHECK(s.spooled == s.replayed + N); /* every event is on disk */
    CHECK(s.spool_records >= N && s.spool_bytes > 0);
    CHECK_SPOOL_ACCOUNTED(s);

    /* 2. A forked child tracks into the same directory, closes and exits. */
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid < 0) bh_die("fork");
    if (pid == 0) _exit(child(client));
    CHECK(reap(pid) == 0);
    if (bh_failures) {
        /* Events were already lost: a recovery cannot bring them back. */
        fprintf(stderr, "spool: events were lost in the outage; not waiting for a recovery\n");
        return bh_finish("spool");
    }

    /* 3. The driver brings the service back; deliver everything, the child's included. */
    printf("recover\n");
    fflush(stdout);
    if (fgets(line, sizeof line, stdin) == NULL) bh_die("no answer from the driver on stdin");
    line[strcspn(line, "\n")] = '\0';
    printf("the service is back (driver: %s)\n", line);
    for (loops = 0;; loops++) {
        bulkhead_status st;
        s = bh_stats(client);
        if (s.sent >= N + CHILD_N && s.queue_len == 0 && s.spool_pending == 0 &&
            s.spool_records == 0)
            break;
        if (loops % 100 == 0) print_spool_stats("draining", &s);
        st = bulkhead_client_flush(client, 1000);
        CHECK(st == BULKHEAD_STATUS_OK || st == BULKHEAD_STATUS_TIMEOUT);
        sleep_ms(10);
    }
    s = quiet_stats(client);
    print_spool_stats("parent after recovery", &s);
    CHECK(s.enqueued == N);
    CHECK(s.sent == N + CHILD_N); /* its own and the child's, once each */
    CHECK_NOTHING_LOST(s);
    CHECK(s.spooled >= N);
    CHECK(s.replayed == s.spooled + CHILD_N);
    CHECK(s.spool_records == 0);
    CHECK_SPOOL_ACCOUNTED(s);

    CHECK_STATUS(bulkhead_client_close(client, 10000), BULKHEAD_STATUS_OK);
    s = bh_stats(client);
    print_spool_stats("parent after close", &s);
    CHECK(s.sent == N + CHILD_N && s.queue_len == 0 && s.spool_pending == 0);
    CHECK_NOTHING_LOST(s);
    CHECK_SPOOL_ACCOUNTED(s);
    printf("final n=%d child=%d sent=%llu spooled=%llu replayed=%llu\n", N, CHILD_N,
           (unsigned long long)s.sent, (unsigned long long)s.spooled,
           (unsigned long long)s.replayed);
    bulkhead_client_free(client);
    CHECK_STATUS(bulkhead_shutdown(5000), BULKHEAD_STATUS_OK);
    return bh_finish("spool");
}
