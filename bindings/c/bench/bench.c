/*
 * bulkhead benchmarks, from C, against the bulkhead-mock server on loopback.
 *
 *   make bench            (runs this among the rest; bench/run.py writes bench/results.md)
 * or by hand, after `cargo build --release -p bulkhead -p bulkhead-mock`:
 *   cc -O2 -std=c99 -Iinclude bindings/c/bench/bench.c -o target/release/bulkhead-bench \
 *      -Ltarget/release -lbulkhead -Wl,-rpath,$PWD/target/release -lpthread
 *   target/release/bulkhead-bench target/release/bulkhead-mock [CALLS]
 *
 * The first argument is the mock binary (started here with --no-store, stopped at exit).
 * Prints one JSON object on stdout (progress on stderr):
 *   - latency: bulkhead_send (a ~300-byte prebuilt event) and bulkhead_track (10 properties),
 *     each call timed with clock_gettime (which itself costs ~20-30 ns), in three states:
 *     "idle" (mock up, queue empty, sender idle: bursts of 500 calls, each followed by an
 *     untimed flush), "busy" (back-to-back calls while the sender delivers), "guard_full"
 *     (service hanging, guard full: every call is refused with QUEUE_FULL);
 *   - throughput: calls/s with one and two producer threads (sender busy);
 *   - library cost, end to end: CALLS events tracked from one thread then flushed, with gzip
 *     on and off: delivered events/s, CPU seconds per million events of the library's own
 *     threads (/proc/self/task/<tid>/stat of the threads named "bulkhead-worker"), bytes on
 *     the wire per event (the mock's bytes_received), peak RSS (VmHWM) after the gzip run.
 * Figures depend on the machine; nothing here is a pass/fail test, except that every event
 * of the end-to-end runs must reach the mock exactly once.
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bulkhead.h"

#define TOKEN "bench-token"
#define POOL 1024 /* distinct prebuilt messages and ids, reused cyclically */
#define IDLE_BURST 500

static char mock_url[128];
static pid_t mock_pid = 0;

static void die(const char *what) {
    char message[256];
    bulkhead_last_error(message, sizeof message, NULL);
    fprintf(stderr, "bench: %s (%s)\n", what, message);
    if (mock_pid > 0) kill(mock_pid, SIGTERM);
    exit(1);
}

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Starts the mock binary; its URL is the first line it prints. */
static void start_mock(const char *binary) {
    int out[2], in[2];
    size_t used = 0;
    if (pipe(out) != 0 || pipe(in) != 0) die("pipe");
    mock_pid = fork();
    if (mock_pid < 0) die("fork");
    if (mock_pid == 0) {
        dup2(out[1], 1);
        dup2(in[0], 0);
        close(out[0]);
        close(in[1]);
        execl(binary, binary, "--port", "0", "--no-store", "--exit-on-stdin-eof", (char *)NULL);
        perror("exec bulkhead-mock");
        _exit(127);
    }
    close(out[1]);
    close(in[0]); /* we keep in[1] open: the mock exits when we do */
    while (used + 1 < sizeof mock_url) {
        ssize_t n = read(out[0], mock_url + used, 1);
        if (n <= 0) die("the mock printed no URL");
        if (mock_url[used] == '\n') break;
        used++;
    }
    mock_url[used] = '\0';
}

/* One request to the mock's control API on 127.0.0.1; the response body goes to `body`. */
static void mock_http(const char *method, const char *path, char *body, size_t len) {
    struct sockaddr_in addr;
    char request[256], response[8192];
    const char *port_at = strrchr(mock_url, ':');
    size_t got = 0;
    ssize_t n;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    char *start;
    if (fd < 0 || port_at == NULL) die("socket");
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)atoi(port_at + 1));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) die("connect to mock");
    snprintf(request, sizeof request,
             "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
             method, path);
    if (write(fd, request, strlen(request)) < 0) die("write to mock");
    while (got + 1 < sizeof response && (n = read(fd, response + got, sizeof response - 1 - got)) > 0)
        got += (size_t)n;
    response[got] = '\0';
    close(fd);
    start = strstr(response, "\r\n\r\n");
    snprintf(body, len, "%s", start ? start + 4 : "");
}

static void mock_control(const char *path) {
    char body[256];
    mock_http("POST", path, body, sizeof body);
}

static unsigned long long mock_stat(const char *field) {
    char body[4096], key[64];
    const char *at;
    mock_http("GET", "/_mock/stats", body, sizeof body);
    snprintf(key, sizeof key, "\"%s\":", field);
    at = strstr(body, key);
    return at ? strtoull(at + strlen(key), NULL, 10) : 0;
}

static bulkhead_client *new_client(const char *extra) {
    char config[512];
    bulkhead_client *client = NULL;
    snprintf(config, sizeof config, "{\"token\":\"" TOKEN "\",\"api_host\":\"%s\"%s}", mock_url,
             extra);
    if (bulkhead_client_new(config, strlen(config), &client) != BULKHEAD_STATUS_OK)
        die("bulkhead_client_new");
    return client;
}

/* Room for everything a run queues: no call is refused unless the run means it to be. */
#define ROOMY ",\"flush_interval_ms\":100,\"queue_capacity\":4000000,\"queue_max_bytes\":4000000000"

static const char *PROPS =
    "{\"plan\":\"pro\",\"country\":\"NZ\",\"age\":37,\"score\":12.5,\"beta\":true,"
    "\"referrer\":\"https://example.com/landing\",\"campaign\":\"spring-sale\","
    "\"items\":3,\"currency\":\"NZD\",\"device\":\"desktop\"}";

static char messages[POOL][400];
static size_t message_len[POOL];
static char ids[POOL][24];
static size_t id_len[POOL];

/* ~300-byte prebuilt events (distinct $insert_id each) and distinct ids. */
static void prebuild(void) {
    long long now_ms = (long long)time(NULL) * 1000; /* /track refuses events older than 5 days */
    size_t i;
    for (i = 0; i < POOL; i++) {
        int len = snprintf(messages[i], sizeof messages[i],
                           "{\"event\":\"bench send\",\"properties\":{\"token\":\"" TOKEN
                           "\",\"distinct_id\":\"user-%04zu\",\"time\":%lld,\"$insert_id\":\"s-%06zu\","
                           "\"plan\":\"pro\",\"country\":\"NZ\",\"age\":37,\"score\":12.5,"
                           "\"beta\":true,\"referrer\":\"https://example.com/landing\","
                           "\"campaign\":\"spring-sale\",\"items\":3,\"currency\":\"NZD\","
                           "\"device\":\"desktop\",\"path\":\"/checkout/step-2\"}}",
                           i, now_ms, i);
        message_len[i] = (size_t)len;
        id_len[i] = (size_t)snprintf(ids[i], sizeof ids[i], "user-%04zu", i);
    }
}

static bulkhead_status call(bulkhead_client *client, int use_send, size_t i) {
    size_t k = i % POOL;
    if (use_send) return bulkhead_send(client, "events", 6, messages[k], message_len[k]);
    return bulkhead_track(client, ids[k], id_len[k], "bench track", 11, PROPS, strlen(PROPS));
}

static int cmp_ll(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

static int first = 1;

static void json_key(const char *key) {
    printf("%s\n \"%s\": ", first ? "{" : ",", key);
    first = 0;
}

static void report_latency(const char *key, long long *ns, size_t n, size_t refused) {
    qsort(ns, n, sizeof ns[0], cmp_ll);
    json_key(key);
    printf("{\"median_ns\": %lld, \"p99_ns\": %lld, \"p999_ns\": %lld, \"max_ns\": %lld, "
           "\"calls\": %zu, \"refused\": %zu}",
           ns[n / 2], ns[n * 99 / 100], ns[n * 999 / 1000], ns[n - 1], n, refused);
    fflush(stdout);
}

typedef enum { IDLE, BUSY, GUARD_FULL } state;

/* Times each call of one hot-path function in one state. */
static void bench_latency(const char *key, int use_send, state st, size_t n) {
    bulkhead_client *client;
    long long *ns = (long long *)malloc(n * sizeof(long long));
    size_t i, refused = 0;
    if (ns == NULL) die("malloc");
    if (st == IDLE)
        client = new_client(",\"flush_interval_ms\":60000,\"queue_capacity\":4000000");
    else if (st == BUSY)
        client = new_client(ROOMY);
    else {
        /* A hung service, requests that outlive the run: the guard stays full. */
        mock_control("/_mock/down?mode=hang");
        client = new_client(",\"queue_capacity\":1000,\"request_timeout_ms\":600000");
        for (i = 0; i < 2000; i++) call(client, use_send, i);
    }
    for (i = 0; i < n; i++) {
        long long t0, t1;
        bulkhead_status s;
        t0 = now_ns();
        s = call(client, use_send, i);
        t1 = now_ns();
        ns[i] = t1 - t0;
        if (s != BULKHEAD_STATUS_OK) refused++;
        if (st == IDLE && i % IDLE_BURST == IDLE_BURST - 1)
            if (bulkhead_client_flush(client, 60000) != BULKHEAD_STATUS_OK) die("idle flush");
    }
    report_latency(key, ns, n, refused);
    if (st == GUARD_FULL) {
        bulkhead_client_close(client, 10); /* drops what is pending: not delivered, counted */
        mock_control("/_mock/up");
    } else if (bulkhead_client_close(client, 60000) != BULKHEAD_STATUS_OK)
        die("close after a latency run");
    bulkhead_client_free(client);
    free(ns);
}

typedef struct {
    bulkhead_client *client;
    int use_send;
    size_t n, offset;
} producer_args;

static void *producer(void *p) {
    producer_args *a = (producer_args *)p;
    size_t i;
    for (i = 0; i < a->n; i++)
        if (call(a->client, a->use_send, a->offset + i) != BULKHEAD_STATUS_OK) die("throughput call");
    return NULL;
}

/* Calls/s over `threads` producers sharing one client while the sender is busy. */
static void bench_throughput(const char *key, int use_send, int threads, size_t n) {
    bulkhead_client *client = new_client(ROOMY);
    pthread_t t[2];
    producer_args a[2];
    long long t0, elapsed;
    int k;
    for (k = 0; k < threads; k++) {
        a[k].client = client;
        a[k].use_send = use_send;
        a[k].n = n / (size_t)threads;
        a[k].offset = (size_t)k * 7;
    }
    t0 = now_ns();
    for (k = 0; k < threads; k++)
        if (pthread_create(&t[k], NULL, producer, &a[k]) != 0) die("pthread_create");
    for (k = 0; k < threads; k++) pthread_join(t[k], NULL);
    elapsed = now_ns() - t0;
    json_key(key);
    printf("{\"calls_per_s\": %.0f, \"threads\": %d, \"calls\": %zu}",
           (double)(a[0].n * (size_t)threads) * 1e9 / (double)elapsed, threads,
           a[0].n * (size_t)threads);
    fflush(stdout);
    if (bulkhead_client_close(client, 120000) != BULKHEAD_STATUS_OK) die("close after throughput");
    bulkhead_client_free(client);
}

/* CPU seconds (user + system) of this process's threads named "bulkhead-worker". */
static double library_cpu_s(void) {
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    double ticks = 0;
    long hz = sysconf(_SC_CLK_TCK);
    if (d == NULL) return 0;
    while ((e = readdir(d)) != NULL) {
        char path[300], buf[1024], *close_paren;
        FILE *f;
        unsigned long utime, stime;
        size_t got;
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "/proc/self/task/%s/stat", e->d_name);
        if ((f = fopen(path, "r")) == NULL) continue;
        got = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[got] = '\0';
        /* "tid (comm) state ...": utime and stime are fields 14 and 15. */
        if (strstr(buf, "(bulkhead-worker)") == NULL) continue;
        if ((close_paren = strrchr(buf, ')')) == NULL) continue;
        if (sscanf(close_paren + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime,
                   &stime) == 2)
            ticks += (double)(utime + stime);
    }
    closedir(d);
    return ticks / (double)hz;
}

static long peak_rss_kb(void) {
    char line[256];
    long kb = 0;
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL) return 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0) kb = atol(line + 6);
    fclose(f);
    return kb;
}

/* Track n events from one thread, flush, let the mock confirm every one. */
static void bench_end_to_end(const char *key, int gzip, size_t n) {
    char extra[256], id[64];
    bulkhead_client *client;
    bulkhead_stats s;
    unsigned long long events0 = mock_stat("events"), bytes0 = mock_stat("bytes_received");
    unsigned long long events, bytes;
    double cpu0, cpu;
    long long t0, elapsed;
    size_t i;
    snprintf(extra, sizeof extra, ROOMY ",\"gzip\":%s", gzip ? "true" : "false");
    client = new_client(extra);
    cpu0 = library_cpu_s();
    t0 = now_ns();
    for (i = 0; i < n; i++) {
        int len = snprintf(id, sizeof id, "e2e-%d-%zu", gzip, i);
        if (bulkhead_track(client, id, (size_t)len, "e2e", 3, PROPS, strlen(PROPS)) !=
            BULKHEAD_STATUS_OK)
            die("track in the end-to-end run");
    }
    if (bulkhead_client_flush(client, 120000) != BULKHEAD_STATUS_OK) die("flush");
    elapsed = now_ns() - t0;
    cpu = library_cpu_s() - cpu0;
    events = mock_stat("events") - events0;
    bytes = mock_stat("bytes_received") - bytes0;
    if (bulkhead_client_stats(client, &s) != BULKHEAD_STATUS_OK) die("stats");
    if (bulkhead_client_close(client, 60000) != BULKHEAD_STATUS_OK) die("close after end to end");
    bulkhead_client_free(client);
    json_key(key);
    printf("{\"events\": %zu, \"delivered_per_s\": %.0f, \"library_cpu_s_per_million\": %.3f, "
           "\"wire_bytes_per_event\": %.1f, \"peak_rss_kb\": %ld, \"sent\": %llu, "
           "\"mock_events\": %llu, \"requests\": %llu}",
           n, (double)n * 1e9 / (double)elapsed, cpu * 1e6 / (double)n, (double)bytes / (double)n,
           peak_rss_kb(), (unsigned long long)s.sent, events, (unsigned long long)s.requests);
    fflush(stdout);
    if (s.sent != n || events != n) {
        fprintf(stderr, "bench: delivery mismatch: tracked %zu, sent %llu, mock saw %llu\n", n,
                (unsigned long long)s.sent, events);
        exit(1);
    }
}

static void sleep_ms(long ms) {
    struct timespec t;
    t.tv_sec = ms / 1000;
    t.tv_nsec = (ms % 1000) * 1000000L;
    nanosleep(&t, NULL);
}

/* Removes the spool directory a run made (its segment and lock files, then itself). */
static void remove_dir(const char *path) {
    DIR *d = opendir(path);
    struct dirent *e;
    char file[600];
    if (d == NULL) return;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        snprintf(file, sizeof file, "%s/%s", path, e->d_name);
        unlink(file);
    }
    closedir(d);
    rmdir(path);
}

/* The hot path with the disk spool on while the service refuses every request (the guard
   full, every call's event handed to the spool's writer), then the replay rate once the
   service is back: from the moment it answers until the mock holds every event. */
static void bench_spool(const char *key, size_t n) {
    char dir[] = "/tmp/bulkhead-bench-spool-XXXXXX", extra[512];
    bulkhead_client *client;
    bulkhead_stats s;
    long long *ns = (long long *)malloc(n * sizeof(long long));
    unsigned long long events0 = mock_stat("events"), total;
    size_t i, refused = 0;
    const size_t fill = 20000;
    long long t_up, t_done;
    if (ns == NULL || mkdtemp(dir) == NULL) die("spool bench setup");
    mock_control("/_mock/down?mode=refuse");
    snprintf(extra, sizeof extra,
             ",\"queue_capacity\":%zu,\"spool_dir\":\"%s\",\"max_retries\":1,"
             "\"backoff_initial_ms\":50,\"backoff_max_ms\":100,\"circuit_cooldown_ms\":100,"
             "\"circuit_cooldown_max_ms\":200",
             fill, dir);
    client = new_client(extra);
    for (i = 0; i < fill; i++) call(client, 0, i);
    for (i = 0; i < n; i++) {
        long long t0, t1;
        bulkhead_status st;
        char id[32];
        int len = snprintf(id, sizeof id, "spool-%zu", i);
        t0 = now_ns();
        st = bulkhead_track(client, id, (size_t)len, "bench spool", 11, PROPS, strlen(PROPS));
        t1 = now_ns();
        ns[i] = t1 - t0;
        if (st != BULKHEAD_STATUS_OK) refused++;
    }
    report_latency(key, ns, n, refused);
    /* Everything handed over is on disk or in the queue before the service comes back. */
    do {
        sleep_ms(10);
        if (bulkhead_client_stats(client, &s) != BULKHEAD_STATUS_OK) die("stats");
    } while (s.spool_pending > 0);
    total = (unsigned long long)(fill + n - refused);
    mock_control("/_mock/up");
    t_up = now_ns();
    while (mock_stat("events") - events0 < total) {
        if (now_ns() - t_up > 300LL * 1000000000LL) die("spool replay did not finish in 300 s");
        sleep_ms(5);
    }
    t_done = now_ns();
    if (bulkhead_client_stats(client, &s) != BULKHEAD_STATUS_OK) die("stats");
    json_key("spool_replay");
    printf("{\"events\": %llu, \"spooled\": %llu, \"replayed\": %llu, \"dropped\": %llu, "
           "\"recovery_s\": %.2f, \"replayed_per_s\": %.0f}",
           total, (unsigned long long)s.spooled, (unsigned long long)s.replayed,
           (unsigned long long)s.dropped_queue_full, (double)(t_done - t_up) / 1e9,
           (double)s.replayed * 1e9 / (double)(t_done - t_up));
    fflush(stdout);
    if (bulkhead_client_close(client, 60000) != BULKHEAD_STATUS_OK) die("close after spool");
    bulkhead_client_free(client);
    remove_dir(dir);
    free(ns);
}

/* BENCH_ONLY="e2e_gzip send_busy": only the rows named (all when unset), to compare builds. */
static int want(const char *key) {
    const char *only = getenv("BENCH_ONLY");
    const char *at;
    size_t len = strlen(key);
    if (only == NULL || only[0] == '\0') return 1;
    for (at = strstr(only, key); at != NULL; at = strstr(at + 1, key))
        if ((at == only || at[-1] == ' ') && (at[len] == '\0' || at[len] == ' ')) return 1;
    return 0;
}

int main(int argc, char **argv) {
    size_t n = 200000, i;
    bulkhead_client *client;

    if (argc < 2) {
        fprintf(stderr, "usage: %s MOCK_BINARY [CALLS]\n", argv[0]);
        return 2;
    }
    if (argc > 2) n = (size_t)strtoull(argv[2], NULL, 10);
    if (n < 2000) n = 2000;
    start_mock(argv[1]);
    prebuild();
    fprintf(stderr, "bench: mock at %s, %zu calls per run, bulkhead %s\n", mock_url, n,
            bulkhead_version());

    /* Warm up the runtime, the connection pool and the mock. */
    client = new_client(ROOMY);
    for (i = 0; i < 20000; i++) call(client, (int)(i & 1), i);
    bulkhead_client_close(client, 60000);
    bulkhead_client_free(client);

    /* First, so the peak RSS is the end-to-end run's rather than the latency arrays'. */
    if (want("e2e_gzip")) bench_end_to_end("e2e_gzip", 1, n);
    if (want("e2e_plain")) bench_end_to_end("e2e_plain", 0, n);
    if (want("send_idle")) bench_latency("send_idle", 1, IDLE, n / 4);
    if (want("track_idle")) bench_latency("track_idle", 0, IDLE, n / 4);
    if (want("send_busy")) bench_latency("send_busy", 1, BUSY, n);
    if (want("track_busy")) bench_latency("track_busy", 0, BUSY, n);
    if (want("send_guard_full")) bench_latency("send_guard_full", 1, GUARD_FULL, n);
    if (want("track_guard_full")) bench_latency("track_guard_full", 0, GUARD_FULL, n);
    if (want("track_spool_outage")) bench_spool("track_spool_outage", n);
    if (want("send_1thread")) bench_throughput("send_1thread", 1, 1, n * 2);
    if (want("send_2threads")) bench_throughput("send_2threads", 1, 2, n * 2);
    if (want("track_1thread")) bench_throughput("track_1thread", 0, 1, n * 2);
    if (want("track_2threads")) bench_throughput("track_2threads", 0, 2, n * 2);
    printf(",\n \"version\": \"%s\"\n}\n", bulkhead_version());

    bulkhead_shutdown(2000);
    if (mock_pid > 0) {
        kill(mock_pid, SIGTERM);
        waitpid(mock_pid, NULL, 0);
    }
    return 0;
}
