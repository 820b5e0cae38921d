/* trivial_server: the least a PubSub server can do, to measure loadgen's ceiling.
 *
 * Compiled by bench/build.py at bench time (gcc -O2).  One thread, epoll,
 * 127.0.0.1 only.  It answers any WebSocket upgrade with 101 (a fixed
 * Sec-WebSocket-Accept: loadgen checks only the status), then reads masked
 * client frames in the Snorky envelope and does as little as possible:
 *
 *   "subscribe"             -> remember the connection, answer a response
 *   "publish" to "bench"    -> one server frame {"type":"message",...} built
 *                              once per publish and appended to a batch;
 *                              the batch goes to every subscriber with one
 *                              send() per subscriber per read; then a response
 *   anything else           -> a response (the RPC path)
 *
 * Whatever rate loadgen reaches against this server is the generator's own
 * ceiling (or this server's, if its CPU is the one at 100%: both are reported).
 *
 * usage: trivial_server PORT
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct conn {
    int fd, ws, sub_index;  /* sub_index: position in subs[] or -1 */
    char *in; size_t ilen, icap;
    char *out; size_t olen, ocap, ooff;
    int want_out;
} conn;

static int epfd;
static conn **subs;
static size_t nsubs, subs_cap;
static char *batch; static size_t blen, bcap;

static void reserve(char **b, size_t *cap, size_t need) {
    if (need <= *cap) return;
    size_t n = *cap ? *cap : 4096;
    while (n < need) n *= 2;
    *b = realloc(*b, n);
    if (!*b) { perror("realloc"); exit(1); }
    *cap = n;
}

static void append(char **b, size_t *len, size_t *cap, const char *d, size_t n) {
    reserve(b, cap, *len + n);
    memcpy(*b + *len, d, n);
    *len += n;
}

static void set_events(conn *c) {
    int want = c->olen > c->ooff;
    if (want == c->want_out) return;
    c->want_out = want;
    struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void drop(conn *c) {
    if (c->sub_index >= 0) {
        subs[c->sub_index] = subs[--nsubs];
        subs[c->sub_index]->sub_index = c->sub_index;
    }
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->in);
    free(c->out);
    free(c);
}

/* returns 0 if the connection was dropped */
static int flush_out(conn *c) {
    while (c->olen > c->ooff) {
        ssize_t n = send(c->fd, c->out + c->ooff, c->olen - c->ooff, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN) break;
            drop(c);
            return 0;
        }
        c->ooff += n;
    }
    if (c->ooff == c->olen) c->ooff = c->olen = 0;
    set_events(c);
    return 1;
}

/* the same bytes to one subscriber: straight to the socket unless it has a backlog */
static void send_shared(conn *c, const char *d, size_t n) {
    size_t off = 0;
    if (c->olen == c->ooff) {
        ssize_t k = send(c->fd, d, n, MSG_NOSIGNAL);
        if (k > 0) off = k;
        else if (k < 0 && errno != EAGAIN) return;  /* dropped when its read side sees the error */
    }
    if (off < n) {
        append(&c->out, &c->olen, &c->ocap, d + off, n - off);
        set_events(c);
    }
}

static void frame_out(char **b, size_t *len, size_t *cap, const char *p, size_t n) {
    char h[4];
    size_t hl;
    h[0] = (char)0x81;
    if (n < 126) { h[1] = n; hl = 2; }
    else { h[1] = 126; h[2] = n >> 8; h[3] = n & 255; hl = 4; }
    append(b, len, cap, h, hl);
    append(b, len, cap, p, n);
}

static const char RESPONSE[] = "{\"service\":\"pubsub\",\"message\":{\"type\":\"response\",\"callId\":1,\"data\":null}}";

static void handle_message(conn *c, char *p, size_t n) {
    if (memmem(p, n, "\"subscribe\"", 11)) {
        if (c->sub_index < 0) {
            if (nsubs == subs_cap) {
                subs_cap = subs_cap ? subs_cap * 2 : 1024;
                subs = realloc(subs, subs_cap * sizeof *subs);
            }
            c->sub_index = nsubs;
            subs[nsubs++] = c;
        }
    } else if (memmem(p, n, "\"publish\"", 9) && memmem(p, n, "\"bench\"", 7)) {
        char *at = memchr(p, '@', n);
        if (at) {
            char *q = memchr(at, '"', n - (at - p));
            if (q) {
                char buf[70000];
                int m = snprintf(buf, sizeof buf,
                                 "{\"service\":\"pubsub\",\"message\":{\"type\":\"message\",\"channel\":\"bench\","
                                 "\"message\":\"%.*s\"}}", (int)(q - at), at);
                frame_out(&batch, &blen, &bcap, buf, m);
            }
        }
    }
    frame_out(&c->out, &c->olen, &c->ocap, RESPONSE, sizeof RESPONSE - 1);
}

static void on_readable(conn *c) {
    reserve(&c->in, &c->icap, c->ilen + 262144);
    ssize_t n = recv(c->fd, c->in + c->ilen, c->icap - c->ilen, 0);
    if (n <= 0) {
        if (n < 0 && errno == EAGAIN) return;
        drop(c);
        return;
    }
    c->ilen += n;
    size_t pos = 0;
    if (!c->ws) {
        char *end = memmem(c->in, c->ilen, "\r\n\r\n", 4);
        if (!end) return;
        static const char resp[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                   "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        append(&c->out, &c->olen, &c->ocap, resp, sizeof resp - 1);
        c->ws = 1;
        pos = end + 4 - c->in;
    }
    while (c->ilen - pos >= 2) {
        uint8_t *h = (uint8_t *)c->in + pos;
        uint64_t len = h[1] & 0x7f;
        size_t hl = len == 126 ? 4 : len == 127 ? 10 : 2;
        if (c->ilen - pos < hl) break;  /* the extended length is not all here yet */
        if (len == 126) len = (h[2] << 8) | h[3];
        else if (len == 127) { len = 0; for (int i = 0; i < 8; i++) len = (len << 8) | h[2 + i]; }
        if (h[1] & 0x80) hl += 4;
        if (c->ilen - pos < hl + len) break;
        char *payload = c->in + pos + hl;
        if (h[1] & 0x80) {
            uint8_t *mk = h + hl - 4;
            for (uint64_t i = 0; i < len; i++) payload[i] ^= mk[i & 3];
        }
        int op = h[0] & 0x0f;
        if (op == 8) { drop(c); return; }
        if (op == 1 || op == 2) handle_message(c, payload, len);
        pos += hl + len;
    }
    memmove(c->in, c->in + pos, c->ilen - pos);
    c->ilen -= pos;
    if (blen) {
        for (size_t i = 0; i < nsubs; i++) send_shared(subs[i], batch, blen);
        blen = 0;
    }
    flush_out(c);
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: trivial_server PORT\n"); return 2; }
    signal(SIGPIPE, SIG_IGN);
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, (struct sockaddr *)&sa, sizeof sa) || listen(ls, 4096)) { perror("listen"); return 1; }
    epfd = epoll_create1(0);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(epfd, EPOLL_CTL_ADD, ls, &lev);
    printf("trivial_server listening on 127.0.0.1:%s\n", argv[1]);
    fflush(stdout);
    struct epoll_event evs[1024];
    for (;;) {
        int n = epoll_wait(epfd, evs, 1024, -1);
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            if (!c) {
                int fd;
                while ((fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    conn *nc = calloc(1, sizeof *nc);
                    nc->fd = fd;
                    nc->sub_index = -1;
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = nc};
                    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
                }
                continue;
            }
            if (evs[i].events & EPOLLOUT) { if (!flush_out(c)) continue; }
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
        }
    }
}
