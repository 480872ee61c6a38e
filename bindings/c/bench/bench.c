/*
 * bulkhead benchmarks, from C, against the bulkhead-mock server on loopback.
 *
 *   make bench
 * or by hand, after `cargo build --release -p bulkhead -p bulkhead-mock`:
 *   cc -O2 -std=c99 -Iinclude bindings/c/bench/bench.c -o target/release/bulkhead-bench \
 *      -Ltarget/release -lbulkhead -Wl,-rpath,$PWD/target/release -lpthread
 *   target/release/bulkhead-bench target/release/bulkhead-mock [EVENTS]
 *
 * The first argument is the mock binary (started here with --no-store, stopped at exit) or
 * the URL of a mock that is already running. Measures:
 *   - the host-side cost of bulkhead_track (10 properties) and bulkhead_send (prebuilt
 *     event JSON), timed per call with clock_gettime while the background sender is busy
 *     delivering the same stream to the mock;
 *   - end-to-end delivery rate: track N events, flush, divide by the elapsed time; the
 *     mock's own count of unique events confirms the delivery.
 * Prints a markdown table. Figures depend on the machine; nothing here is a pass/fail test.
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <netinet/in.h>
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

static char mock_url[128];
static pid_t mock_pid = 0;

static void die(const char *what) {
    char message[256];
    bulkhead_last_error(message, sizeof message, NULL);
    fprintf(stderr, "bench: %s (%s)\n", what, message);
    if (mock_pid > 0) kill(mock_pid, SIGTERM);
    exit(1);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
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

static unsigned long long mock_events(void) {
    char body[4096];
    const char *at;
    mock_http("GET", "/_mock/stats", body, sizeof body);
    at = strstr(body, "\"events\":");
    return at ? strtoull(at + 9, NULL, 10) : 0;
}

static bulkhead_client *new_client(const char *extra) {
    char config[512];
    bulkhead_client *client = NULL;
    snprintf(config, sizeof config,
             "{\"token\":\"" TOKEN "\",\"api_host\":\"%s\",\"flush_interval_ms\":100,"
             "\"queue_capacity\":4000000,\"queue_max_bytes\":4000000000%s}",
             mock_url, extra);
    if (bulkhead_client_new(config, strlen(config), &client) != BULKHEAD_STATUS_OK)
        die("bulkhead_client_new");
    return client;
}

static int cmp_ll(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

static const char *PROPS =
    "{\"plan\":\"pro\",\"country\":\"NZ\",\"age\":37,\"score\":12.5,\"beta\":true,"
    "\"referrer\":\"https://example.com/landing\",\"campaign\":\"spring-sale\","
    "\"items\":3,\"currency\":\"NZD\",\"device\":\"desktop\"}";

typedef struct {
    const char *name;
    long long *ns;
    size_t n;
    size_t not_ok;
} latency;

static void report_latency(const latency *l) {
    double mean = 0;
    size_t i;
    qsort(l->ns, l->n, sizeof l->ns[0], cmp_ll);
    for (i = 0; i < l->n; i++) mean += (double)l->ns[i];
    mean /= (double)l->n;
    printf("| %s | %lld ns | %lld ns | %lld ns | %lld ns | %.0f ns | %zu | %zu |\n", l->name,
           l->ns[l->n / 2], l->ns[l->n * 99 / 100], l->ns[l->n * 999 / 1000], l->ns[l->n - 1],
           mean, l->n, l->not_ok);
}

/* Times every call of one hot-path function while the sender drains the same stream. */
static latency bench_calls(const char *name, int use_send, size_t n) {
    bulkhead_client *client = new_client("");
    latency l;
    char id[64], msg[512];
    size_t i;
    /* A recent time: /track refuses events older than five days. */
    long long now_ms = (long long)time(NULL) * 1000;
    l.name = name;
    l.n = n;
    l.not_ok = 0;
    l.ns = (long long *)malloc(n * sizeof(long long));
    if (l.ns == NULL) die("malloc");
    for (i = 0; i < n; i++) {
        bulkhead_status st;
        long long t0, t1;
        if (use_send) {
            int len = snprintf(msg, sizeof msg,
                               "{\"event\":\"bench send\",\"properties\":{\"token\":\"" TOKEN
                               "\",\"distinct_id\":\"u%zu\",\"time\":%lld,"
                               "\"$insert_id\":\"s-%zu\",\"plan\":\"pro\",\"n\":%zu}}",
                               i % 1000, now_ms, i, i);
            t0 = now_ns();
            st = bulkhead_send(client, "events", 6, msg, (size_t)len);
            t1 = now_ns();
        } else {
            int len = snprintf(id, sizeof id, "user-%zu", i % 1000);
            t0 = now_ns();
            st = bulkhead_track(client, id, (size_t)len, "bench track", 11, PROPS, strlen(PROPS));
            t1 = now_ns();
        }
        if (st != BULKHEAD_STATUS_OK) l.not_ok++;
        l.ns[i] = t1 - t0;
    }
    if (bulkhead_client_close(client, 60000) != BULKHEAD_STATUS_OK) die("close after latency run");
    bulkhead_client_free(client);
    return l;
}

int main(int argc, char **argv) {
    size_t n = 200000;
    latency track, send;
    bulkhead_client *client;
    bulkhead_stats s;
    unsigned long long before, after;
    double t0, elapsed;
    size_t i;
    char id[64];

    if (argc < 2) {
        fprintf(stderr, "usage: %s MOCK_BINARY|MOCK_URL [EVENTS]\n", argv[0]);
        return 2;
    }
    if (argc > 2) n = (size_t)strtoull(argv[2], NULL, 10);
    if (n < 1000) n = 1000;
    if (strncmp(argv[1], "http://", 7) == 0)
        snprintf(mock_url, sizeof mock_url, "%s", argv[1]);
    else
        start_mock(argv[1]);
    mock_http("POST", "/_mock/store?on=0", id, sizeof id);
    fprintf(stderr, "bench: mock at %s, %zu events per run, bulkhead %s\n", mock_url, n,
            bulkhead_version());

    /* Warm up the runtime, the connection pool and the mock. */
    client = new_client("");
    for (i = 0; i < 20000; i++)
        bulkhead_track(client, "warm", 4, "warm up", 7, PROPS, strlen(PROPS));
    bulkhead_client_close(client, 60000);
    bulkhead_client_free(client);

    track = bench_calls("`bulkhead_track` (10 properties), sender busy", 0, n);
    send = bench_calls("`bulkhead_send` (prebuilt event JSON), sender busy", 1, n);

    /* End to end: track n events, flush, and let the mock confirm. */
    before = mock_events();
    client = new_client("");
    t0 = now_s();
    for (i = 0; i < n; i++) {
        int len = snprintf(id, sizeof id, "e2e-%zu", i);
        if (bulkhead_track(client, id, (size_t)len, "e2e", 3, PROPS, strlen(PROPS)) !=
            BULKHEAD_STATUS_OK)
            die("track in the throughput run");
    }
    if (bulkhead_client_flush(client, 120000) != BULKHEAD_STATUS_OK) die("flush");
    elapsed = now_s() - t0;
    after = mock_events();
    if (bulkhead_client_stats(client, &s) != BULKHEAD_STATUS_OK) die("stats");
    bulkhead_client_free(client);

    printf("\n| call | median | p99 | p99.9 | max | mean | calls | not OK |\n");
    printf("|---|---|---|---|---|---|---|---|\n");
    report_latency(&track);
    report_latency(&send);
    {
        /* The library reads BULKHEAD_GZIP as a default for its `gzip` key (on unless "0"/"false"...). */
        const char *gz = getenv("BULKHEAD_GZIP");
        int gzip_off = gz && (strcmp(gz, "0") == 0 || strcmp(gz, "false") == 0 || strcmp(gz, "off") == 0 ||
                              strcmp(gz, "no") == 0);
        printf("\n| end to end (loopback, gzip %s, batches of 2000) | value |\n|---|---|\n",
               gzip_off ? "off" : "on");
    }
    printf("| events tracked then flushed | %zu |\n", n);
    printf("| elapsed | %.3f s |\n", elapsed);
    printf("| delivered rate | %.0f events/s |\n", (double)n / elapsed);
    printf("| client: sent / requests / bytes | %llu / %llu / %llu |\n",
           (unsigned long long)s.sent, (unsigned long long)s.requests,
           (unsigned long long)s.bytes_sent);
    printf("| mock: unique events received | %llu |\n", after - before);

    free(track.ns);
    free(send.ns);
    bulkhead_shutdown(2000);
    if (mock_pid > 0) {
        kill(mock_pid, SIGTERM);
        waitpid(mock_pid, NULL, 0);
    }
    if (s.sent != n || after - before != n) {
        fprintf(stderr, "bench: delivery mismatch: tracked %zu, sent %llu, mock saw %llu\n", n,
                (unsigned long long)s.sent, after - before);
        return 1;
    }
    return 0;
}
