/* loadgen: the benchmark's WebSocket load generator (one thread, epoll).
 *
 * Compiled by bench/build.py at bench time (gcc -O2), no dependencies.
 * It speaks two dialects over RFC 6455:
 *   snorky    the Snorky envelope {"service": "pubsub", "message": {...}}
 *             (snorky_sync and Snorky 0.1 on Tornado)
 *   socketio  Engine.IO v4 / Socket.IO v5 text packets ("0" open, "40"
 *             connect, "42[...]" events, "43" acks, ping "2" -> pong "3")
 *
 * Modes (each prints one JSON object on stdout when done):
 *   fanout  N subscribers on channel "bench" + one publisher sending M
 *           publishes of SIZE bytes; saturation (a window of W unacked
 *           publishes) or a fixed rate R/s; --duration D stops publishing
 *           after D seconds (M is then a cap) and waits for the rest.  Every published message
 *           carries "@<CLOCK_MONOTONIC ns, 16 hex>:<seq, 8 hex>:xxx..."
 *           and each subscriber decodes every frame it gets: latency per
 *           delivery, lost = N*published - received (a late delivery past
 *           --timeout is lost), out-of-order ones also counted apart.
 *   rpc     C clients, each a closed loop of one request (publish to a
 *           channel nobody subscribes) and its response, for S seconds.
 *   idle    N connections, K handshakes in flight; prints a "ready" line
 *           with handshakes/s, then holds them (answering pings) until a
 *           line or EOF on stdin, or --hold seconds.
 *   cursors C clients join document --document D of the Cursors service
 *           ("cursors"), each creates one cursor, then all move them, R
 *           updateCursor/s each (default 30), staggered evenly, for --warmup
 *           plus S seconds; each update carries its send time in its
 *           position ({"x": µs, "y": seq}) and its callId, so each other
 *           member's cursorUpdated and the sender's reply give a latency.
 *           Counted are the updates sent after the warm-up: expected =
 *           updates x (C - 1) notifications, lost = expected - received
 *           within --drain seconds after the last update.  --tokens FILE:
 *           line i is appended to client i's path as ?token= (its identity).
 *   storm   N clients that behave like snorky.js: a failed attempt (503,
 *           refused, reset) is retried after min(15 s, 500 ms * 2^n),
 *           half fixed, half random; a connection the server closes is
 *           reopened after 250-500 ms.  With --retry-after 1, a 503's
 *           Retry-After (seconds, times 0.5-1.5) is honoured when longer
 *           (what a non-browser client can do; a browser never sees it).
 *           Prints a "ready" line once all N are open, then one line per
 *           storm (all N open again after the server closed them), until
 *           a line or EOF on stdin or --hold seconds: time to recover,
 *           attempts, 503s, refused connects, other failures.
 *   groups  the Centrifugo-2020 scenario, scaled: N connections (--subs),
 *           connection i subscribed to its personal channel "u<i>" and
 *           to its group's channel "g<i / G>" (--group G, default 10);
 *           --churners K more connections, churner j on "c<j>" and group
 *           "g<j mod groups>", of which --churn R per second are closed and
 *           opened again (reconnect, subscribe to both); --clients P
 *           publishers, each publish stamped as in fanout and sent to a
 *           group channel (round robin) or, one in --personal-every E, to
 *           a personal one.  Two phases on the same connections, each
 *           printing a "start" line when it starts and its result when
 *           its deliveries are in (or --drain seconds after its last
 *           publish): saturation (each publisher keeps --window W
 *           unacknowledged, --duration D seconds), then a fixed --rate R
 *           publishes/s over all publishers for --seconds S (skipped when
 *           R is 0).  lost = what the N stable connections should have
 *           received - what they did; churners' deliveries count in
 *           deliveries/s, not in lost.
 *
 * Options: --port P --path /ws --proto snorky|socketio --subs N
 *   --messages M --window W --rate R --size B --clients C --seconds S
 *   --warmup S --conns N --concurrency K --hold S --cpu-pids a,b,c
 *   --timeout S (bound on any phase) --duration D (fanout)
 *   --tokens FILE --document D --drain S (cursors)
 *   --group G --churners K --churn R --personal-every E (groups)
 * Every result has the server's CPU share (--cpu-pids) and the generator's,
 * and how long each waited runnable for a core (server_wait,
 * generator_wait: shares of the run; high on a busy shared machine).
 * Only 127.0.0.1 is ever contacted.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { P_SNORKY, P_SOCKETIO };
enum { ST_FREE, ST_CONNECTING, ST_HS, ST_WS, ST_READY, ST_CLOSED };
enum { R_SUB, R_PUB, R_RPC, R_IDLE, R_CUR, R_GSUB, R_CHURN };

typedef struct conn {
    int fd, state, role, counted, attempts, heap_pos;
    uint64_t retry_at;
    char *part; size_t plen, pcap;       /* unparsed input */
    char *out; size_t olen, ocap, ooff;  /* pending output */
    int want_out;
    uint8_t mask[4];
    uint64_t received, last_seq, reordered, subscribed;
    uint64_t sent_ns, ack_id;
    int64_t outstanding;
    char *cpath;   /* cursors: --path with this client's ?token=, or NULL for --path */
    int cstage;    /* cursors: CS_* below */
    long gid;      /* groups: this connection's number (its personal channel) */
} conn;
enum { CS_NONE, CS_JOINING, CS_JOINED, CS_CREATING, CS_CREATED };

/* ---- settings ---- */
static int proto = P_SNORKY, port = 0;
static const char *path = "/ws", *mode = "fanout", *cpu_pids = "";
static long subs = 1000, messages = 1000, window_ = 100, size_ = 100, clients = 50, conns_n = 1000;
static long concurrency = 64;
static double rate = 0, seconds = 5, warmup = 0.5, hold = 120, timeout_s = 60, duration = 0;
static int storm_mode = 0, honour_retry_after = 0;
static uint64_t st_503, st_refused, st_reset, st_other, st_attempts, st_lost, st_retry_after_max;
static uint64_t pub_stop_at = UINT64_MAX;  /* --duration: no publish starts after this */
static const char *tokens_file = NULL, *document = "bench";
static double drain = 3;
static long group_size = 10, churners = 0, personal_every = 10;
static double churn_rate = 0;

/* ---- state ---- */
static int epfd;
static conn *C;
static long nconn, next_connect, in_progress, ready_count, failed, server_closed;
static uint64_t subscribed_total, errors_total, unexpected, pings;
static uint64_t pub_sent, pub_acked, delivered, reordered_total, delivered_stable, expected_stable;
static uint64_t t_start, t_last_delivery, t_last_ack, t_first_connect, t_all_ready;
static uint64_t rpc_done, rpc_measure_from, rpc_stop_at;
static int measuring;
static char scratch[1 << 20];
static char padding[65536];

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static void die(const char *msg) {
    fprintf(stderr, "loadgen: %s: %s\n", msg, strerror(errno));
    exit(2);
}

/* ---- latency histograms (µs): 1 µs to 1 ms, 10 µs to 100 ms, 1 ms to 10 s ---- */
#define HBUCKETS 20800
typedef struct { uint64_t b[HBUCKETS], n; } histo;
static histo H;       /* the latency of each mode: deliveries, RPC calls, cursor notifications */
static histo H_REPLY; /* cursors: updateCursor reply latency */
static void hist_add_to(histo *h, uint64_t ns) {
    uint64_t us = ns / 1000, i;
    if (us < 1000) i = us;
    else if (us < 100000) i = 1000 + (us - 1000) / 10;
    else if (us < 10000000) i = 10900 + (us - 100000) / 1000;
    else i = HBUCKETS - 1;
    h->b[i]++;
    h->n++;
}
static void hist_add(uint64_t ns) { hist_add_to(&H, ns); }
static double hist_value(uint64_t i) {  /* bucket midpoint, ms */
    if (i < 1000) return (i + 0.5) / 1000.0;
    if (i < 10900) return (1000 + (i - 1000) * 10 + 5) / 1000.0;
    return (100000 + (i - 10900) * 1000 + 500) / 1000.0;
}
static double hist_pct_of(const histo *h, double p) {
    if (!h->n) return -1;
    uint64_t want = (uint64_t)(p * h->n), acc = 0;
    if (want >= h->n) want = h->n - 1;
    for (uint64_t i = 0; i < HBUCKETS; i++) {
        acc += h->b[i];
        if (acc > want) return hist_value(i);
    }
    return hist_value(HBUCKETS - 1);
}
static double hist_pct(double p) { return hist_pct_of(&H, p); }
static double hist_max_of(const histo *h) {
    for (long i = HBUCKETS - 1; i >= 0; i--) if (h->b[i]) return hist_value(i);
    return -1;
}
static double hist_max(void) { return hist_max_of(&H); }

/* ---- CPU accounting ---- */
static double self_cpu(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}
static double pids_cpu(void) {  /* utime + stime of every pid in --cpu-pids, seconds */
    double total = 0;
    long tick = sysconf(_SC_CLK_TCK);
    char list[4096];
    snprintf(list, sizeof list, "%s", cpu_pids);
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        char fn[64], buf[4096];
        snprintf(fn, sizeof fn, "/proc/%s/stat", tok);
        FILE *f = fopen(fn, "r");
        if (!f) continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0;
        char *p = strrchr(buf, ')');
        if (!p) continue;
        unsigned long ut = 0, st = 0;
        /* fields after ")": state(3) ... utime(14) stime(15) */
        if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
            total += (double)(ut + st) / tick;
    }
    return total;
}

/* time spent runnable but waiting for a core (schedstat field 2, ns): how
 * much a shared machine held the server or the generator back */
static double runq_of(const char *fn) {
    unsigned long long on = 0, wait = 0;
    FILE *f = fopen(fn, "r");
    if (!f) return 0;
    if (fscanf(f, "%llu %llu", &on, &wait) != 2) wait = 0;
    fclose(f);
    return wait / 1e9;
}
static double runq_pids(void) {
    double total = 0;
    char list[4096];
    snprintf(list, sizeof list, "%s", cpu_pids);
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        char fn[64];
        snprintf(fn, sizeof fn, "/proc/%s/schedstat", tok);
        total += runq_of(fn);
    }
    return total;
}
static double wait_g0, wait_s0;
static void wait_mark(void) { wait_g0 = runq_of("/proc/self/schedstat"); wait_s0 = runq_pids(); }

/* ---- buffers ---- */
static void reserve(char **buf, size_t *cap, size_t need) {
    if (need <= *cap) return;
    size_t n = *cap ? *cap : 256;
    while (n < need) n *= 2;
    *buf = realloc(*buf, n);
    if (!*buf) die("realloc");
    *cap = n;
}

static void set_events(conn *c) {
    struct epoll_event ev = {.events = EPOLLIN | (c->olen > c->ooff ? EPOLLOUT : 0), .data.ptr = c};
    int want = c->olen > c->ooff;
    if (want != c->want_out) {
        c->want_out = want;
        epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    }
}

static void conn_close(conn *c, int by_server);

static void flush_out(conn *c) {
    while (c->olen > c->ooff) {
        ssize_t n = send(c->fd, c->out + c->ooff, c->olen - c->ooff, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN) break;
            conn_close(c, 1);
            return;
        }
        c->ooff += n;
    }
    if (c->ooff == c->olen) c->ooff = c->olen = 0;
    set_events(c);
}

static void raw_out(conn *c, const char *data, size_t n) {
    reserve(&c->out, &c->ocap, c->olen + n);
    memcpy(c->out + c->olen, data, n);
    c->olen += n;
}

/* one masked client frame (FIN set) */
static void ws_out(conn *c, int op, const char *data, size_t n) {
    reserve(&c->out, &c->ocap, c->olen + n + 14);
    uint8_t *h = (uint8_t *)c->out + c->olen;
    size_t hl;
    h[0] = 0x80 | op;
    if (n < 126) { h[1] = 0x80 | n; hl = 2; }
    else if (n < 65536) { h[1] = 0x80 | 126; h[2] = n >> 8; h[3] = n & 255; hl = 4; }
    else { h[1] = 0x80 | 127; for (int i = 0; i < 8; i++) h[2 + i] = (uint64_t)n >> (56 - 8 * i); hl = 10; }
    memcpy(h + hl, c->mask, 4);
    uint8_t *p = h + hl + 4;
    for (size_t i = 0; i < n; i++) p[i] = data[i] ^ c->mask[i & 3];
    c->olen += hl + 4 + n;
}

/* ---- application messages ---- */
static void send_subscribe(conn *c) {
    char buf[256];
    int n;
    if (proto == P_SNORKY)
        n = snprintf(buf, sizeof buf, "{\"service\":\"pubsub\",\"message\":{\"command\":\"subscribe\","
                     "\"params\":{\"channel\":\"bench\"},\"callId\":1}}");
    else
        n = snprintf(buf, sizeof buf, "42%llu[\"subscribe\",\"bench\"]", (unsigned long long)++c->ack_id);
    ws_out(c, 1, buf, n);
}

/* groups: subscribe to the personal channel (callId 1) and the group's (callId 2) */
static long ngroups(void) { return (subs + group_size - 1) / group_size; }
static void send_group_subscribes(conn *c) {
    char buf[256];
    int n;
    const char *pfx = c->role == R_CHURN ? "c" : "u";
    long g = c->role == R_CHURN ? c->gid % ngroups() : c->gid / group_size;
    n = snprintf(buf, sizeof buf, "{\"service\":\"pubsub\",\"message\":{\"command\":\"subscribe\","
                 "\"params\":{\"channel\":\"%s%ld\"},\"callId\":1}}", pfx, c->gid);
    ws_out(c, 1, buf, n);
    n = snprintf(buf, sizeof buf, "{\"service\":\"pubsub\",\"message\":{\"command\":\"subscribe\","
                 "\"params\":{\"channel\":\"g%ld\"},\"callId\":2}}", g);
    ws_out(c, 1, buf, n);
    c->outstanding += 2;
}

static void send_publish(conn *c, const char *channel, uint64_t seq, int stamped) {
    char msg[65600], buf[66000];
    int m;
    if (stamped) {
        m = snprintf(msg, sizeof msg, "@%016llx:%08llx:", (unsigned long long)now_ns(), (unsigned long long)seq);
        if (size_ > m) { memcpy(msg + m, padding, size_ - m); m = size_; }
    } else {
        m = size_ < 20 ? size_ : 20;
        memcpy(msg, padding, m);
    }
    int n;
    if (proto == P_SNORKY)
        n = snprintf(buf, sizeof buf, "{\"service\":\"pubsub\",\"message\":{\"command\":\"publish\","
                     "\"params\":{\"channel\":\"%s\",\"message\":\"%.*s\"},\"callId\":%llu}}",
                     channel, m, msg, (unsigned long long)++c->ack_id);
    else
        n = snprintf(buf, sizeof buf, "42%llu[\"publish\",{\"channel\":\"%s\",\"message\":\"%.*s\"}]",
                     (unsigned long long)++c->ack_id, channel, m, msg);
    ws_out(c, 1, buf, n);
    c->outstanding++;
}

/* ---- cursors: the Cursors service ("cursors"), one document, one cursor per client ----
 * join {document} (callId 1), then createCursor {privateHandle: 1, document,
 * position, status: null} (callId 2), then updateCursor {privateHandle: 1,
 * newData: {position: {x: <send time, CLOCK_MONOTONIC µs>, y: <seq>}}} with
 * callId = the same send time, so the reply's latency and every other
 * member's cursorUpdated latency are read off the frame. */
static uint64_t cur_measure_from = UINT64_MAX, cur_stop_at;   /* ns */
static uint64_t cur_joined, cur_created, cur_added, cur_removed, cur_setup_errors;
static uint64_t upd_sent, upd_measured, notif_measured, notif_warm, replies_measured;
static char first_error[240];

static void note_error(const char *p, size_t n) {
    errors_total++;
    if (first_error[0]) return;
    size_t m = n < sizeof first_error - 1 ? n : sizeof first_error - 1;
    for (size_t i = 0; i < m; i++) {  /* printed inside a JSON string: no quotes, backslashes, controls */
        char ch = p[i];
        first_error[i] = (ch == '"' || ch == '\\' || (unsigned char)ch < 32) ? '\'' : ch;
    }
    first_error[m] = 0;
}

static void send_cursors(conn *c, const char *command, const char *params, uint64_t call_id) {
    char buf[512];
    int n = snprintf(buf, sizeof buf, "{\"service\":\"cursors\",\"message\":{\"command\":\"%s\",\"params\":%s,"
                     "\"callId\":%llu}}", command, params, (unsigned long long)call_id);
    ws_out(c, 1, buf, n);
}

static void send_join(conn *c) {
    char params[256];
    snprintf(params, sizeof params, "{\"document\":\"%s\"}", document);
    send_cursors(c, "join", params, 1);
    c->cstage = CS_JOINING;
}

static void send_create(conn *c) {
    char params[256];
    snprintf(params, sizeof params, "{\"privateHandle\":1,\"document\":\"%s\",\"position\":{\"x\":0,\"y\":0},"
             "\"status\":null}", document);
    send_cursors(c, "createCursor", params, 2);
    c->cstage = CS_CREATING;
}

static void send_update(conn *c) {
    char params[256];
    uint64_t t = now_ns(), us = t / 1000;
    snprintf(params, sizeof params, "{\"privateHandle\":1,\"newData\":{\"position\":{\"x\":%llu,\"y\":%llu}}}",
             (unsigned long long)us, (unsigned long long)++c->ack_id);
    send_cursors(c, "updateCursor", params, us);
    upd_sent++;
    if (us * 1000 >= cur_measure_from) upd_measured++;
}

/* the unsigned integer after "key" and a colon (JSON spacing allowed); 0 if absent */
static int json_uint(const char *p, size_t n, const char *key, uint64_t *out) {
    size_t kl = strlen(key);
    const char *k = memmem(p, n, key, kl);
    if (!k) return 0;
    const char *q = k + kl, *end = p + n;
    while (q < end && (*q == ' ' || *q == ':')) q++;
    if (q >= end || *q < '0' || *q > '9') return 0;
    uint64_t v = 0;
    while (q < end && *q >= '0' && *q <= '9') v = v * 10 + (uint64_t)(*q++ - '0');
    *out = v;
    return 1;
}

static void cursors_text(conn *c, const char *p, size_t n, uint64_t now) {
    uint64_t v;
    if (memmem(p, n, "\"cursorUpdated\"", 15)) {
        const char *pos = memmem(p, n, "\"position\"", 10);
        if (!pos || !json_uint(pos, n - (pos - p), "\"x\"", &v)) { unexpected++; return; }
        if (v * 1000 >= cur_measure_from) {
            notif_measured++;
            if (now > v * 1000) hist_add(now - v * 1000);
            t_last_delivery = now;
        } else {
            notif_warm++;
        }
    } else if (memmem(p, n, "\"cursorAdded\"", 13)) {
        cur_added++;
    } else if (memmem(p, n, "\"cursorRemoved\"", 15)) {
        cur_removed++;
    } else if (memmem(p, n, "\"response\"", 10)) {
        if (c->cstage == CS_JOINING) { c->cstage = CS_JOINED; cur_joined++; }
        else if (c->cstage == CS_CREATING) { c->cstage = CS_CREATED; cur_created++; }
        else if (json_uint(p, n, "\"callId\"", &v) && v * 1000 >= cur_measure_from) {
            replies_measured++;
            if (now > v * 1000) hist_add_to(&H_REPLY, now - v * 1000);
        }
    } else if (memmem(p, n, "\"error\"", 7)) {
        note_error(p, n);
        if (c->cstage == CS_JOINING || c->cstage == CS_CREATING) { c->cstage = CS_NONE; cur_setup_errors++; }
    } else {
        unexpected++;
    }
}

static void on_ready(conn *c, uint64_t now);

static uint64_t g_churn_cycles, g_churn_subscribed;
static void groups_publish(conn *c);

static void on_response(conn *c, int is_error, uint64_t now) {
    if (is_error) errors_total++;
    c->outstanding--;
    if (c->role == R_GSUB || c->role == R_CHURN) {
        if (++c->subscribed == 2) {
            if (c->role == R_GSUB) subscribed_total++;
            else if (c->attempts++) g_churn_cycles++;   /* back after a churn close */
            else g_churn_subscribed++;
        }
    } else if (c->role == R_PUB && !strcmp(mode, "groups")) {
        if (measuring) {
            pub_acked++;
            t_last_ack = now;
            if (rate == 0 && now < pub_stop_at) groups_publish(c);
        }
    } else if (c->role == R_SUB) {
        if (!c->subscribed) { c->subscribed = 1; subscribed_total++; }
    } else if (c->role == R_PUB) {
        if (measuring) {
            pub_acked++;
            t_last_ack = now;
            if (rate == 0 && pub_sent < (uint64_t)messages && now < pub_stop_at) {
                send_publish(c, "bench", ++pub_sent, 1);
            }
        }
    } else if (c->role == R_RPC) {
        if (measuring) {
            if (now >= rpc_measure_from && now < rpc_stop_at) {
                hist_add(now - c->sent_ns);
                rpc_done++;
            }
            if (now < rpc_stop_at) {
                c->sent_ns = now_ns();
                send_publish(c, "nobody", 0, 0);
            }
        }
    }
}

static uint64_t hex(const char *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) {
        char ch = p[i];
        v = (v << 4) | (uint64_t)(ch <= '9' ? ch - '0' : (ch | 32) - 'a' + 10);
    }
    return v;
}

static void on_delivery(conn *c, const char *at, size_t left, uint64_t now) {
    if (left < 27) { unexpected++; return; }
    uint64_t ts = hex(at + 1, 16), seq = hex(at + 18, 8);
    c->received++;
    delivered++;
    if (c->role == R_GSUB || c->role == R_CHURN) {  /* groups: several publishers, no order to check */
        if (c->role == R_GSUB) delivered_stable++;
        if (now > ts) hist_add(now - ts);
        t_last_delivery = now;
        return;
    }
    if (seq > c->last_seq) c->last_seq = seq;
    else { c->reordered++; reordered_total++; }  /* still received, counted apart */
    if (now > ts) hist_add(now - ts);
    t_last_delivery = now;
}

static void cursors_text(conn *c, const char *p, size_t n, uint64_t now);

static void handle_text(conn *c, const char *p, size_t n, uint64_t now) {
    if (c->role == R_CUR) { cursors_text(c, p, n, now); return; }
    if (proto == P_SNORKY) {
        const char *at = memchr(p, '@', n);
        if (at) { on_delivery(c, at, n - (at - p), now); return; }
        if (memmem(p, n, "\"response\"", 10)) on_response(c, 0, now);
        else if (memmem(p, n, "\"error\"", 7)) on_response(c, 1, now);
        else unexpected++;
        return;
    }
    /* Socket.IO over Engine.IO */
    if (n >= 2 && p[0] == '4' && p[1] == '2') {
        const char *at = memchr(p, '@', n);
        if (at) on_delivery(c, at, n - (at - p), now);
        else unexpected++;
    } else if (n >= 2 && p[0] == '4' && p[1] == '3') {
        on_response(c, 0, now);
    } else if (n == 1 && p[0] == '2') {
        pings++;
        ws_out(c, 1, "3", 1);
    } else if (n >= 1 && p[0] == '0') {
        ws_out(c, 1, "40", 2);  /* open packet: connect to the default namespace */
    } else if (n >= 2 && p[0] == '4' && p[1] == '0') {
        if (c->state == ST_WS) on_ready(c, now);
    } else if (n >= 2 && p[0] == '4' && p[1] == '4') {
        errors_total++;
    } else {
        unexpected++;
    }
}

/* parse every complete server frame in buf; returns bytes consumed */
static size_t parse_frames(conn *c, char *buf, size_t len, uint64_t now) {
    size_t pos = 0;
    while (len - pos >= 2 && c->state != ST_CLOSED) {
        uint8_t *h = (uint8_t *)buf + pos;
        int op = h[0] & 0x0f;
        uint64_t n = h[1] & 0x7f;
        size_t hl = 2;
        if (h[1] & 0x80) hl += 4;  /* a masked server frame is a protocol error; skip the mask */
        if (n == 126) {
            if (len - pos < 4) break;
            n = (h[2] << 8) | h[3];
            hl += 2;
        } else if (n == 127) {
            if (len - pos < 10) break;
            n = 0;
            for (int i = 0; i < 8; i++) n = (n << 8) | h[2 + i];
            hl += 8;
        }
        if (len - pos < hl + n) break;
        char *payload = buf + pos + hl;
        if (op == 1 || op == 2) handle_text(c, payload, n, now);
        else if (op == 9) ws_out(c, 10, payload, n);  /* ping -> pong */
        else if (op == 8) { conn_close(c, 1); return len; }
        else if (op != 10) unexpected++;
        pos += hl + n;
    }
    return pos;
}

/* ---- connections ---- */
static const char *request_fmt =
    "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/* Connect c to the server (non-blocking, over loopback): c->fd watched by
   epoll, ST_CONNECTING; -1 when connect failed at once (c->fd still open). */
static int dial(conn *c) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c->fd = fd;
    c->state = ST_CONNECTING;
    c->want_out = 1;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
    return connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS ? -1 : 0;
}

static void start_connects(void) {
    while (in_progress < concurrency && next_connect < nconn) {
        conn *c = &C[next_connect++];
        if (!t_first_connect) t_first_connect = now_ns();
        if (dial(c) < 0) {
            close(c->fd);
            c->state = ST_CLOSED;
            failed++;
            continue;
        }
        for (int i = 0; i < 4; i++) c->mask[i] = rand() & 255;
        in_progress++;
        c->counted = 1;
    }
}

static void storm_reschedule(conn *c, int was_ready);

static void conn_close(conn *c, int by_server) {
    if (c->state == ST_CLOSED || c->state == ST_FREE) return;
    int was_ready = c->state == ST_READY;
    if (storm_mode && by_server) {
        if (was_ready) { ready_count--; st_lost++; }
        else if (c->state == ST_CONNECTING) st_refused++;        /* nobody listening */
        else if (c->state == ST_HS && c->plen >= 12 && memcmp(c->part + 9, "503", 3) == 0) {
            st_503++;
            char *ra = memmem(c->part, c->plen, "\r\nRetry-After:", 14);
            if (ra) {
                long v = atol(ra + 14);
                if ((uint64_t)v > st_retry_after_max) st_retry_after_max = v;
                if (honour_retry_after && v > 0) c->retry_at = (uint64_t)v * 1000000000ull;
            }
        } else if (c->state == ST_HS && c->plen == 0) st_reset++;  /* closed before any answer */
        else st_other++;
    } else if (c->state != ST_READY) failed++;
    else if (by_server) server_closed++;
    if (c->counted) { c->counted = 0; in_progress--; }
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    struct linger lg = {1, 0};  /* RST: no TIME_WAIT, so runs do not exhaust local ports */
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(c->fd);
    c->state = ST_CLOSED;
    if (storm_mode && by_server) storm_reschedule(c, was_ready);
}

static void on_ready(conn *c, uint64_t now) {
    c->state = ST_READY;
    ready_count++;
    if (c->counted) { c->counted = 0; in_progress--; }
    t_all_ready = now;  /* the last one's time, once all are in */
    if (c->role == R_SUB) { send_subscribe(c); c->outstanding++; }
    if (c->role == R_CUR) send_join(c);
    if (c->role == R_GSUB || c->role == R_CHURN) send_group_subscribes(c);
}

static void handle_handshake(conn *c, uint64_t now) {
    char *end = memmem(c->part, c->plen, "\r\n\r\n", 4);
    if (!end) {
        if (c->plen > 16384) conn_close(c, 1);
        return;
    }
    if (c->plen < 12 || memcmp(c->part + 9, "101", 3) != 0) {
        conn_close(c, 1);
        return;
    }
    size_t used = end + 4 - c->part;
    memmove(c->part, c->part + used, c->plen - used);
    c->plen -= used;
    c->state = ST_WS;
    if (proto == P_SNORKY) on_ready(c, now);
}

static void on_readable(conn *c) {
    /* input = leftover + new bytes, parsed in the shared scratch buffer */
    size_t have = c->plen;
    if (have > sizeof scratch / 2) { conn_close(c, 1); return; }
    memcpy(scratch, c->part, have);
    ssize_t n = recv(c->fd, scratch + have, sizeof scratch - have, 0);
    if (n <= 0) {
        if (n < 0 && errno == EAGAIN) return;
        conn_close(c, 1);
        return;
    }
    uint64_t now = now_ns();
    size_t len = have + n, used = 0;
    if (c->state == ST_HS) {
        reserve(&c->part, &c->pcap, len);
        memcpy(c->part, scratch, len);
        c->plen = len;
        handle_handshake(c, now);
        if (c->state != ST_WS && c->state != ST_READY) return;
        len = c->plen;
        memcpy(scratch, c->part, len);
    }
    used = parse_frames(c, scratch, len, now);
    if (c->state == ST_CLOSED) return;
    c->plen = len - used;
    if (c->plen) {
        reserve(&c->part, &c->pcap, c->plen);
        memcpy(c->part, scratch + used, c->plen);
    }
    if (c->olen > c->ooff) flush_out(c);
}

static void on_writable(conn *c) {
    if (c->state == ST_CONNECTING) {
        int err = 0;
        socklen_t l = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err) { conn_close(c, 1); return; }
        char req[2048];
        int n = snprintf(req, sizeof req, request_fmt, c->cpath ? c->cpath : path, port);
        raw_out(c, req, n);
        c->state = ST_HS;
    }
    flush_out(c);
}

static int stdin_closed;

/* run the loop until done() or the deadline; tick() runs every pass */
static void loop(int (*done)(void), void (*tick)(uint64_t), uint64_t deadline, int with_stdin) {
    struct epoll_event evs[1024];
    while (!done()) {
        uint64_t now = now_ns();
        if (now >= deadline) return;
        int wait_ms = (int)((deadline - now) / 1000000) + 1;
        if (tick) { tick(now); wait_ms = 1; }
        if (wait_ms > 200) wait_ms = 200;
        start_connects();
        int n = epoll_wait(epfd, evs, 1024, wait_ms);
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            if (c == NULL) {
                if (with_stdin) {
                    char b[256];
                    ssize_t r = read(0, b, sizeof b);
                    if (r <= 0 || memchr(b, '\n', r)) stdin_closed = 1;
                }
                continue;
            }
            if (c->state == ST_CLOSED) continue;
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
            if (c->state != ST_CLOSED && (evs[i].events & EPOLLOUT)) on_writable(c);
        }
    }
}

/* ---- phases ---- */
static int all_connected(void) { return ready_count + failed >= nconn; }
static int all_subscribed(void) {
    return ready_count + failed >= nconn && subscribed_total + failed >= (uint64_t)subs;
}
static int fanout_done(void) {
    int publishing_over = pub_sent >= (uint64_t)messages || now_ns() >= pub_stop_at;
    return publishing_over && pub_acked >= pub_sent && delivered >= pub_sent * (uint64_t)(subs - failed - server_closed);
}
static uint64_t next_pub_at;
static conn *publisher;
static void rate_tick(uint64_t now) {
    int sent = 0;
    while (pub_sent < (uint64_t)messages && now >= next_pub_at && now < pub_stop_at) {
        send_publish(publisher, "bench", ++pub_sent, 1);
        next_pub_at += (uint64_t)(1e9 / rate);
        sent = 1;
    }
    if (sent) flush_out(publisher);
}
static int rpc_done_(void) { return now_ns() >= rpc_stop_at; }
static int idle_done(void) { return stdin_closed; }

static void alloc_conns(long n) {
    nconn = n;
    C = calloc(n, sizeof(conn));
    if (!C) die("calloc");
}

static void print_common(double gen_cpu, double srv_cpu, double elapsed) {
    double gw = runq_of("/proc/self/schedstat") - wait_g0, sw = runq_pids() - wait_s0;
    printf("\"generator_wait\":%.3f,\"server_wait\":%.3f,", elapsed > 0 ? gw / elapsed : 0,
           elapsed > 0 ? sw / elapsed : 0);
    printf("\"elapsed_s\":%.4f,\"generator_cpu\":%.3f,\"server_cpu\":%.3f,\"failed\":%ld,"
           "\"server_closed\":%ld,\"errors\":%llu,\"unexpected\":%llu,\"pings\":%llu",
           elapsed, elapsed > 0 ? gen_cpu / elapsed : 0, elapsed > 0 ? srv_cpu / elapsed : 0, failed,
           server_closed, (unsigned long long)errors_total, (unsigned long long)unexpected,
           (unsigned long long)pings);
}

static void close_all(void) {
    for (long i = 0; i < nconn; i++) conn_close(&C[i], 0);
}

static int run_fanout(void) {
    alloc_conns(subs + 1);
    for (long i = 0; i < subs; i++) C[i].role = R_SUB;
    publisher = &C[subs];
    publisher->role = R_PUB;
    uint64_t deadline = now_ns() + (uint64_t)(timeout_s * 1e9);
    loop(all_subscribed, NULL, deadline, 0);
    if (!all_subscribed() || publisher->state != ST_READY) {
        printf("{\"error\":\"setup incomplete: %ld ready, %llu subscribed, %ld failed\"}\n", ready_count,
               (unsigned long long)subscribed_total, failed);
        return 1;
    }
    double g0 = self_cpu(), s0 = pids_cpu();
    wait_mark();
    measuring = 1;
    t_start = now_ns();
    deadline = t_start + (uint64_t)(timeout_s * 1e9);
    if (duration > 0) pub_stop_at = t_start + (uint64_t)(duration * 1e9);
    if (rate == 0) {
        while (pub_sent < (uint64_t)messages && (long)publisher->outstanding < window_)
            send_publish(publisher, "bench", ++pub_sent, 1);
        flush_out(publisher);
        loop(fanout_done, NULL, deadline, 0);
    } else {
        next_pub_at = t_start;
        loop(fanout_done, rate_tick, deadline, 0);
    }
    uint64_t t_end = t_last_delivery > t_last_ack ? t_last_delivery : t_last_ack;
    double elapsed = (t_end - t_start) / 1e9;
    double g1 = self_cpu(), s1 = pids_cpu();
    uint64_t expected = pub_sent * (uint64_t)subs;  /* what was published, not --messages */
    printf("{\"mode\":\"fanout\",\"subscribers\":%ld,\"messages\":%ld,\"published\":%llu,\"acked\":%llu,"
           "\"expected\":%llu,\"received\":%llu,\"lost\":%lld,\"reordered\":%llu,"
           "\"deliveries_per_s\":%.1f,\"publishes_per_s\":%.1f,\"p50_ms\":%.4f,\"p99_ms\":%.4f,\"max_ms\":%.4f,"
           "\"rate\":%.1f,\"window\":%ld,\"size\":%ld,",
           subs, messages, (unsigned long long)pub_sent, (unsigned long long)pub_acked,
           (unsigned long long)expected, (unsigned long long)delivered, (long long)(expected - delivered),
           (unsigned long long)reordered_total, elapsed > 0 ? delivered / elapsed : 0,
           elapsed > 0 ? pub_acked / elapsed : 0, hist_pct(0.50), hist_pct(0.99), hist_max(), rate, window_, size_);
    print_common(g1 - g0, s1 - s0, elapsed);
    printf("}\n");
    fflush(stdout);
    close_all();
    return 0;
}

static int run_rpc(void) {
    alloc_conns(clients);
    for (long i = 0; i < clients; i++) C[i].role = R_RPC;
    uint64_t deadline = now_ns() + (uint64_t)(timeout_s * 1e9);
    loop(all_connected, NULL, deadline, 0);
    if (ready_count < clients) {
        printf("{\"error\":\"setup incomplete: %ld ready, %ld failed\"}\n", ready_count, failed);
        return 1;
    }
    measuring = 1;
    uint64_t t0 = now_ns();
    rpc_measure_from = t0 + (uint64_t)(warmup * 1e9);
    rpc_stop_at = rpc_measure_from + (uint64_t)(seconds * 1e9);
    for (long i = 0; i < clients; i++) {
        C[i].sent_ns = now_ns();
        send_publish(&C[i], "nobody", 0, 0);
        flush_out(&C[i]);
    }
    double g0 = 0, s0 = 0;
    int sampled = 0;
    /* sample CPU from the end of the warm-up */
    while (!rpc_done_()) {
        if (!sampled && now_ns() >= rpc_measure_from) { g0 = self_cpu(); s0 = pids_cpu(); wait_mark(); sampled = 1; }
        uint64_t until = sampled ? rpc_stop_at : rpc_measure_from;
        loop(rpc_done_, NULL, until, 0);
    }
    if (!sampled) { g0 = self_cpu(); s0 = pids_cpu(); wait_mark(); }
    double g1 = self_cpu(), s1 = pids_cpu();
    double elapsed = seconds;
    printf("{\"mode\":\"rpc\",\"clients\":%ld,\"calls\":%llu,\"calls_per_s\":%.1f,\"p50_ms\":%.4f,"
           "\"p99_ms\":%.4f,\"max_ms\":%.4f,",
           clients, (unsigned long long)rpc_done, rpc_done / elapsed, hist_pct(0.50), hist_pct(0.99), hist_max());
    print_common(g1 - g0, s1 - s0, elapsed);
    printf("}\n");
    fflush(stdout);
    close_all();
    return 0;
}

static int run_idle(void) {
    alloc_conns(conns_n);
    for (long i = 0; i < conns_n; i++) C[i].role = R_IDLE;
    uint64_t deadline = now_ns() + (uint64_t)(timeout_s * 1e9);
    double g0 = self_cpu(), s0 = pids_cpu();
    wait_mark();
    loop(all_connected, NULL, deadline, 0);
    double g1 = self_cpu(), s1 = pids_cpu();
    if (!t_all_ready) t_all_ready = now_ns();
    double elapsed = (t_all_ready - t_first_connect) / 1e9;
    printf("{\"mode\":\"idle\",\"event\":\"ready\",\"conns\":%ld,\"ready\":%ld,\"handshakes_per_s\":%.1f,"
           "\"concurrency\":%ld,",
           conns_n, ready_count, elapsed > 0 ? ready_count / elapsed : 0, concurrency);
    print_common(g1 - g0, s1 - s0, elapsed);
    printf("}\n");
    fflush(stdout);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &ev);
    loop(idle_done, NULL, now_ns() + (uint64_t)(hold * 1e9), 1);
    long still = 0;
    for (long i = 0; i < nconn; i++) still += C[i].state == ST_READY;
    printf("{\"mode\":\"idle\",\"event\":\"closed\",\"still_open\":%ld,\"server_closed\":%ld,\"pings\":%llu}\n",
           still, server_closed, (unsigned long long)pings);
    fflush(stdout);
    close_all();
    return 0;
}


/* ---- cursors ---- */
static int cur_all_joined(void) { return cur_joined + cur_setup_errors + failed >= (uint64_t)nconn; }
static int cur_all_created(void) {
    if (cur_created + cur_setup_errors + failed + server_closed < (uint64_t)nconn) return 0;
    return cur_created < (uint64_t)nconn || cur_added >= (uint64_t)nconn * (nconn - 1);
}
static int never(void) { return 0; }
static uint64_t slot_next_at, slot_interval, slot_n;
static void cursors_tick(uint64_t now) {
    while (now >= slot_next_at && slot_next_at < cur_stop_at) {
        conn *c = &C[slot_n++ % nconn];
        slot_next_at += slot_interval;
        if (c->state != ST_READY) continue;
        send_update(c);
        flush_out(c);
    }
}
static int cur_drained(void) {
    return notif_measured >= upd_measured * (uint64_t)(nconn - 1) && replies_measured >= upd_measured;
}

static char **read_tokens(const char *fn, long want) {
    FILE *f = fopen(fn, "r");
    if (!f) return NULL;
    char **t = calloc(want, sizeof(char *)), line[1024];
    long i = 0;
    while (i < want && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        t[i++] = strdup(line);
    }
    fclose(f);
    if (i < want) { free(t); return NULL; }
    return t;
}

static int run_cursors(void) {
    if (rate <= 0) rate = 30;
    if (clients < 2) { printf("{\"error\":\"cursors needs at least 2 clients\"}\n"); return 1; }
    alloc_conns(clients);
    char **tokens = NULL;
    if (tokens_file && !(tokens = read_tokens(tokens_file, clients))) {
        printf("{\"error\":\"fewer than %ld tokens in %s\"}\n", clients, tokens_file);
        return 1;
    }
    for (long i = 0; i < clients; i++) {
        C[i].role = R_CUR;
        if (tokens) {
            size_t n = strlen(path) + strlen(tokens[i]) + 8;
            C[i].cpath = malloc(n);
            snprintf(C[i].cpath, n, "%s%stoken=%s", path, strchr(path, '?') ? "&" : "?", tokens[i]);
        }
    }
    uint64_t t_setup = now_ns(), deadline = t_setup + (uint64_t)(timeout_s * 1e9);
    loop(cur_all_joined, NULL, deadline, 0);
    if (cur_joined < (uint64_t)clients) {
        printf("{\"error\":\"setup incomplete: %ld ready, %llu joined, %ld failed; first error: %s\"}\n", ready_count,
               (unsigned long long)cur_joined, failed, first_error);
        return 1;
    }
    for (long i = 0; i < clients; i++) { send_create(&C[i]); flush_out(&C[i]); }
    loop(cur_all_created, NULL, deadline, 0);
    if (cur_created < (uint64_t)clients || cur_added < (uint64_t)clients * (clients - 1)) {
        printf("{\"error\":\"setup incomplete: %llu of %ld cursors created, %llu of %llu cursorAdded; "
               "first error: %s\"}\n", (unsigned long long)cur_created, clients, (unsigned long long)cur_added,
               (unsigned long long)clients * (clients - 1), first_error);
        return 1;
    }
    double setup_s = (now_ns() - t_setup) / 1e9;
    measuring = 1;
    uint64_t t0 = now_ns();
    cur_measure_from = t0 + (uint64_t)(warmup * 1e9);
    cur_stop_at = cur_measure_from + (uint64_t)(seconds * 1e9);
    slot_interval = (uint64_t)(1e9 / (rate * clients));
    if (!slot_interval) slot_interval = 1;
    slot_next_at = t0;
    loop(never, cursors_tick, cur_measure_from, 0);
    double g0 = self_cpu(), s0 = pids_cpu();
    wait_mark();
    loop(never, cursors_tick, cur_stop_at, 0);
    double g1 = self_cpu(), s1 = pids_cpu();
    double waits_elapsed = seconds;
    loop(cur_drained, NULL, cur_stop_at + (uint64_t)(drain * 1e9), 0);
    uint64_t expected = upd_measured * (uint64_t)(clients - 1);
    printf("{\"mode\":\"cursors\",\"clients\":%ld,\"rate\":%.1f,\"seconds\":%.3f,\"setup_s\":%.3f,"
           "\"updates\":%llu,\"updates_per_s\":%.1f,\"expected\":%llu,\"received\":%llu,\"lost\":%lld,"
           "\"notifications_per_s\":%.1f,\"p50_ms\":%.4f,\"p99_ms\":%.4f,\"max_ms\":%.4f,"
           "\"replies\":%llu,\"reply_p50_ms\":%.4f,\"reply_p99_ms\":%.4f,\"reply_max_ms\":%.4f,"
           "\"added\":%llu,\"removed\":%llu,\"warmup_notifications\":%llu,\"first_error\":\"%s\",",
           clients, rate, seconds, setup_s, (unsigned long long)upd_measured, upd_measured / seconds,
           (unsigned long long)expected, (unsigned long long)notif_measured,
           (long long)(expected - notif_measured), notif_measured / seconds, hist_pct(0.50), hist_pct(0.99),
           hist_max(), (unsigned long long)replies_measured, hist_pct_of(&H_REPLY, 0.50),
           hist_pct_of(&H_REPLY, 0.99), hist_max_of(&H_REPLY), (unsigned long long)cur_added,
           (unsigned long long)cur_removed, (unsigned long long)notif_warm, first_error);
    print_common(g1 - g0, s1 - s0, waits_elapsed);
    printf("}\n");
    fflush(stdout);
    close_all();
    return 0;
}

/* ---- groups: personal + group-of-G channels, churn (see the header) ---- */
static conn *G_PUB;   /* the publishers: C[nconn - clients .. nconn - 1] */
static long g_churn_next;
static uint64_t g_churn_at, g_phase_end;

/* the next publish, by the global count: a group channel (round robin), or one in personal_every a personal one */
static void groups_publish(conn *c) {
    uint64_t k = ++pub_sent;
    char channel[32];
    if (personal_every > 0 && k % (uint64_t)personal_every == 0) {
        long who = (long)((k / (uint64_t)personal_every * 7919) % (uint64_t)subs);
        snprintf(channel, sizeof channel, "u%ld", who);
        expected_stable += 1;
    } else {
        long g = (long)(k % (uint64_t)ngroups());
        long members = subs - g * group_size < group_size ? subs - g * group_size : group_size;
        snprintf(channel, sizeof channel, "g%ld", g);
        expected_stable += (uint64_t)members;
    }
    send_publish(c, channel, k, 1);
}

static void reopen(conn *c) {
    c->plen = c->olen = c->ooff = 0;
    c->subscribed = 0;
    c->outstanding = 0;
    if (dial(c) < 0) conn_close(c, 1);
}

/* churn: close the next fully subscribed churner and open it again */
static void churn_tick(uint64_t now) {
    if (churn_rate <= 0 || churners <= 0) return;
    while (now >= g_churn_at) {
        g_churn_at += (uint64_t)(1e9 / churn_rate);
        for (long tries = 0; tries < churners; tries++) {
            conn *c = &C[subs + (g_churn_next++ % churners)];
            if (c->state == ST_READY && c->subscribed >= 2) {
                conn_close(c, 0);
                ready_count--;
                reopen(c);
                break;
            }
            if (c->state == ST_CLOSED) { failed--; reopen(c); break; }  /* refused earlier: try again */
        }
    }
}

static void groups_rate_tick(uint64_t now) {
    churn_tick(now);
    int sent[64] = {0};
    while (now >= next_pub_at && now < pub_stop_at) {
        long i = (long)(pub_sent % (uint64_t)clients);
        groups_publish(&G_PUB[i]);
        if (i < 64) sent[i] = 1;
        next_pub_at += (uint64_t)(1e9 / rate);
    }
    for (long i = 0; i < clients && i < 64; i++) if (sent[i]) flush_out(&G_PUB[i]);
}

static int groups_setup_done(void) {
    return subscribed_total >= (uint64_t)subs && g_churn_subscribed >= (uint64_t)churners
        && ready_count >= subs + churners + clients;
}
static int groups_phase_done(void) {
    uint64_t now = now_ns();
    if (now < pub_stop_at) return 0;
    if (now >= g_phase_end) return 1;
    return pub_acked >= pub_sent && delivered_stable >= expected_stable;
}

static void groups_phase(const char *phase, double seconds_, double rate_) {
    pub_sent = pub_acked = delivered = delivered_stable = expected_stable = 0;
    memset(&H, 0, sizeof H);
    uint64_t cycles0 = g_churn_cycles;
    long closed0 = server_closed;
    printf("{\"mode\":\"groups\",\"event\":\"start\",\"phase\":\"%s\"}\n", phase);
    fflush(stdout);
    double g0 = self_cpu();
    wait_mark();
    rate = rate_;
    measuring = 1;
    t_start = now_ns();
    t_last_delivery = t_last_ack = t_start;
    pub_stop_at = t_start + (uint64_t)(seconds_ * 1e9);
    g_phase_end = pub_stop_at + (uint64_t)(drain * 1e9);
    g_churn_at = t_start;
    if (rate == 0) {
        for (long i = 0; i < clients; i++) {
            while (G_PUB[i].outstanding < window_) groups_publish(&G_PUB[i]);
            flush_out(&G_PUB[i]);
        }
        loop(groups_phase_done, churn_tick, g_phase_end + 1000000, 0);
    } else {
        next_pub_at = t_start;
        loop(groups_phase_done, groups_rate_tick, g_phase_end + 1000000, 0);
    }
    measuring = 0;
    uint64_t t_end = t_last_delivery > t_last_ack ? t_last_delivery : t_last_ack;
    double elapsed = (t_end - t_start) / 1e9;
    double g1 = self_cpu();
    printf("{\"mode\":\"groups\",\"event\":\"result\",\"phase\":\"%s\",\"subscribers\":%ld,\"group\":%ld,"
           "\"churners\":%ld,\"churn\":%.1f,\"publishers\":%ld,\"published\":%llu,\"acked\":%llu,"
           "\"expected\":%llu,\"received\":%llu,\"lost\":%lld,\"deliveries\":%llu,"
           "\"deliveries_per_s\":%.1f,\"publishes_per_s\":%.1f,\"p50_ms\":%.4f,\"p99_ms\":%.4f,\"max_ms\":%.4f,"
           "\"rate\":%.1f,\"window\":%ld,\"size\":%ld,\"churn_cycles\":%llu,\"churn_per_s\":%.1f,"
           "\"stable_closed\":%ld,",
           phase, subs, group_size, churners, churn_rate, clients, (unsigned long long)pub_sent,
           (unsigned long long)pub_acked, (unsigned long long)expected_stable, (unsigned long long)delivered_stable,
           (long long)(expected_stable - delivered_stable), (unsigned long long)delivered,
           elapsed > 0 ? delivered / elapsed : 0, elapsed > 0 ? pub_acked / elapsed : 0,
           hist_pct(0.50), hist_pct(0.99), hist_max(), rate, window_, size_,
           (unsigned long long)(g_churn_cycles - cycles0),
           elapsed > 0 ? (g_churn_cycles - cycles0) / elapsed : 0, server_closed - closed0);
    print_common(g1 - g0, 0, elapsed);
    printf(",\"first_error\":\"%s\"}\n", first_error);
    fflush(stdout);
}

static int run_groups(void) {
    if (subs < 1 || group_size < 1 || clients < 1) { fprintf(stderr, "loadgen: groups needs --subs, --group, --clients >= 1\n"); return 2; }
    alloc_conns(subs + churners + clients);
    for (long i = 0; i < subs; i++) { C[i].role = R_GSUB; C[i].gid = i; }
    for (long j = 0; j < churners; j++) { C[subs + j].role = R_CHURN; C[subs + j].gid = j; }
    G_PUB = &C[subs + churners];
    for (long i = 0; i < clients; i++) G_PUB[i].role = R_PUB;
    uint64_t deadline = now_ns() + (uint64_t)(timeout_s * 1e9);
    loop(groups_setup_done, NULL, deadline, 0);
    if (!groups_setup_done()) {
        printf("{\"error\":\"setup incomplete: %ld ready, %llu + %llu subscribed, %ld failed, %llu errors: %s\"}\n",
               ready_count, (unsigned long long)subscribed_total, (unsigned long long)g_churn_subscribed, failed,
               (unsigned long long)errors_total, first_error);
        return 1;
    }
    double rate_asked = rate;
    groups_phase("saturation", duration > 0 ? duration : 3, 0);
    if (rate_asked > 0) groups_phase("rate", seconds, rate_asked);
    close_all();
    return 0;
}

/* ---- storm: clients reconnecting the way snorky.js does ---- */
static conn **heap;
static long heap_n;
static void heap_swap(long a, long b) {
    conn *t = heap[a]; heap[a] = heap[b]; heap[b] = t;
    heap[a]->heap_pos = a; heap[b]->heap_pos = b;
}
static void heap_push(conn *c) {
    long i = heap_n++;
    heap[i] = c; c->heap_pos = i;
    while (i > 0 && heap[(i - 1) / 2]->retry_at > heap[i]->retry_at) { heap_swap(i, (i - 1) / 2); i = (i - 1) / 2; }
}
static conn *heap_pop(void) {
    conn *top = heap[0];
    heap[0] = heap[--heap_n]; heap[0]->heap_pos = 0;
    long i = 0;
    for (;;) {
        long l = 2 * i + 1, r = l + 1, m = i;
        if (l < heap_n && heap[l]->retry_at < heap[m]->retry_at) m = l;
        if (r < heap_n && heap[r]->retry_at < heap[m]->retry_at) m = r;
        if (m == i) break;
        heap_swap(i, m); i = m;
    }
    return top;
}
static double rand01(void) { return rand() / (RAND_MAX + 1.0); }

static void storm_reschedule(conn *c, int was_ready) {
    uint64_t hinted = c->retry_at;  /* Retry-After (ns) from the handshake, if honoured */
    if (was_ready) c->attempts = 0;
    double base = 500.0 * (double)(1ull << (c->attempts < 10 ? c->attempts : 10));
    if (base > 15000.0) base = 15000.0;
    double delay_ms = base / 2 + rand01() * base / 2;
    c->attempts++;
    uint64_t delay = (uint64_t)(delay_ms * 1e6);
    if (honour_retry_after && hinted && hinted < 3600ull * 1000000000ull) {
        uint64_t h = (uint64_t)(hinted * (0.5 + rand01()));
        if (h > delay) delay = h;
    }
    c->plen = c->olen = c->ooff = 0;
    c->retry_at = now_ns() + delay;
    heap_push(c);
}

static void storm_tick(uint64_t now) {
    while (heap_n && heap[0]->retry_at <= now && in_progress < concurrency) {
        conn *c = heap_pop();
        c->retry_at = 0;
        st_attempts++;
        c->counted = 1;
        in_progress++;
        if (dial(c) < 0) {
            conn_close(c, 1);
            continue;
        }
    }
}

static int storm_all_ready(void) { return ready_count >= nconn || stdin_closed; }
static int storm_someone_lost(void) { return ready_count < nconn || stdin_closed; }

static void storm_print(const char *event, double elapsed) {
    printf("{\"mode\":\"storm\",\"event\":\"%s\",\"conns\":%ld,\"ready\":%ld,\"seconds\":%.3f,"
           "\"attempts\":%llu,\"refused_503\":%llu,\"retry_after_max\":%llu,\"connect_refused\":%llu,"
           "\"reset_before_answer\":%llu,\"other_failures\":%llu,\"closed_by_server\":%llu}\n",
           event, nconn, ready_count, elapsed, (unsigned long long)st_attempts, (unsigned long long)st_503,
           (unsigned long long)st_retry_after_max, (unsigned long long)st_refused,
           (unsigned long long)st_reset, (unsigned long long)st_other, (unsigned long long)st_lost);
    fflush(stdout);
    st_attempts = st_503 = st_refused = st_reset = st_other = st_lost = st_retry_after_max = 0;
}

static int run_storm(void) {
    storm_mode = 1;
    alloc_conns(conns_n);
    heap = calloc(conns_n, sizeof(conn *));
    uint64_t t0 = now_ns();
    for (long i = 0; i < conns_n; i++) { C[i].role = R_IDLE; C[i].retry_at = t0; heap_push(&C[i]); }
    next_connect = nconn;  /* start_connects() does nothing: the heap decides */
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &ev);
    uint64_t end = t0 + (uint64_t)(hold * 1e9);
    loop(storm_all_ready, storm_tick, end, 1);
    storm_print("ready", (now_ns() - t0) / 1e9);
    while (!stdin_closed && now_ns() < end) {
        loop(storm_someone_lost, NULL, end, 1);   /* quiet until the server drops someone */
        if (stdin_closed || now_ns() >= end) break;
        uint64_t t1 = now_ns();
        loop(storm_all_ready, storm_tick, end, 1);
        storm_print("recovered", (now_ns() - t1) / 1e9);
    }
    close_all();
    return 0;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (a[0] != '-') { mode = a; continue; }
        i++;
        if (!strcmp(a, "--port")) port = atoi(v);
        else if (!strcmp(a, "--path")) path = v;
        else if (!strcmp(a, "--proto")) proto = !strcmp(v, "socketio") ? P_SOCKETIO : P_SNORKY;
        else if (!strcmp(a, "--subs")) subs = atol(v);
        else if (!strcmp(a, "--messages")) messages = atol(v);
        else if (!strcmp(a, "--window")) window_ = atol(v);
        else if (!strcmp(a, "--rate")) rate = atof(v);
        else if (!strcmp(a, "--size")) size_ = atol(v);
        else if (!strcmp(a, "--clients")) clients = atol(v);
        else if (!strcmp(a, "--seconds")) seconds = atof(v);
        else if (!strcmp(a, "--warmup")) warmup = atof(v);
        else if (!strcmp(a, "--conns")) conns_n = atol(v);
        else if (!strcmp(a, "--concurrency")) concurrency = atol(v);
        else if (!strcmp(a, "--hold")) hold = atof(v);
        else if (!strcmp(a, "--timeout")) timeout_s = atof(v);
        else if (!strcmp(a, "--duration")) duration = atof(v);
        else if (!strcmp(a, "--cpu-pids")) cpu_pids = v;
        else if (!strcmp(a, "--retry-after")) honour_retry_after = atoi(v);
        else if (!strcmp(a, "--tokens")) tokens_file = v;
        else if (!strcmp(a, "--document")) document = v;
        else if (!strcmp(a, "--drain")) drain = atof(v);
        else if (!strcmp(a, "--group")) group_size = atol(v);
        else if (!strcmp(a, "--churners")) churners = atol(v);
        else if (!strcmp(a, "--churn")) churn_rate = atof(v);
        else if (!strcmp(a, "--personal-every")) personal_every = atol(v);
        else { fprintf(stderr, "loadgen: unknown option %s\n", a); return 2; }
    }
    if (!port) { fprintf(stderr, "loadgen: --port is required\n"); return 2; }
    if (size_ > 65000) size_ = 65000;
    memset(padding, 'x', sizeof padding);
    signal(SIGPIPE, SIG_IGN);
    srand(getpid() ^ (unsigned)now_ns());
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) die("epoll_create1");
    if (!strcmp(mode, "fanout")) return run_fanout();
    if (!strcmp(mode, "rpc")) return run_rpc();
    if (!strcmp(mode, "idle")) return run_idle();
    if (!strcmp(mode, "storm")) return run_storm();
    if (!strcmp(mode, "cursors")) return run_cursors();
    if (!strcmp(mode, "groups")) return run_groups();
    fprintf(stderr, "loadgen: unknown mode %s\n", mode);
    return 2;
}
