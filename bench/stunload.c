/*
 * stunload: measure a STUN server by keeping a fixed number of Binding requests in flight.
 *
 *     stunload HOST PORT SECONDS CONCURRENCY [SOCKETS] [TIMEOUT_MS]
 *
 * It is a closed loop: CONCURRENCY requests (RFC 8489 §6.1: a 20-byte header, no attributes) are
 * outstanding at every moment, spread over SOCKETS connected UDP sockets (default: CONCURRENCY, at
 * most 32; several source ports let a server that spreads clients over SO_REUSEPORT workers use them
 * all). Each answer is checked (header, magic cookie, a success carrying an XOR-MAPPED-ADDRESS that
 * names the very socket it came back to, RFC 8489 §14.2), timed, and immediately replaced by a new
 * request; a request unanswered after TIMEOUT_MS (default 1000) counts as a timeout and is
 * replaced too. After SECONDS the loop stops and the results are printed.
 *
 * Where it spends its time: one thread, sendmmsg/recvmmsg in batches, epoll for readiness. A
 * request's transaction ID names its slot (32 bits, masked with a per-run random word), the slot's
 * send count and 32 random bits, so matching an answer is one array index and one compare.
 *
 * HOST must be a loopback address unless STUNLOAD_ALLOW_REMOTE=1: this tool sends as fast as the
 * server answers, which is not something to point at someone else's server by accident.
 *
 * Output, on stdout, one `stunload_NAME VALUE UNIT` line per result (bench/stun_server.py reads
 * received, rate, p50, p99 and timeouts); a one-line summary of the setup on stderr. Exit status 0
 * when at least one valid answer came back, 1 when none did, 2 for a usage or setup error.
 *
 * Build: gcc -O2 -Wall -Wextra -o stunload stunload.c (python -m bench.tools does it).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum {
    HEADER_BYTES = 20,
    BATCH = 64,             /* datagrams per sendmmsg/recvmmsg call */
    READS_PER_WAKEUP = 8,   /* recvmmsg calls per ready socket before looking at the others */
    DATAGRAM_BYTES = 2048,
    MAX_SOCKETS = 1024,
    BINDING_REQUEST = 0x0001,
    BINDING_SUCCESS = 0x0101,
    BINDING_ERROR = 0x0111,
    XOR_MAPPED_ADDRESS = 0x0020,
};
static const uint32_t MAGIC_COOKIE = 0x2112A442u;

/* ---- latency histogram: exact below 1024 us, then 512 buckets per doubling (< 0.2% error) ---- */

enum { EXACT_US = 1024, SUB_BITS = 9, OCTAVES = 22 };
#define HISTOGRAM_BUCKETS (EXACT_US + OCTAVES * (1u << SUB_BITS))

static uint64_t histogram[HISTOGRAM_BUCKETS];
static uint64_t histogram_count, latency_max_us;

static unsigned bucket_of(uint64_t us) {
    if (us < EXACT_US) return (unsigned)us;
    unsigned octave = 63u - (unsigned)__builtin_clzll(us); /* >= 10 */
    if (octave >= 10 + OCTAVES) return HISTOGRAM_BUCKETS - 1;
    unsigned sub = (unsigned)(us >> (octave - SUB_BITS)) & ((1u << SUB_BITS) - 1);
    return EXACT_US + (octave - 10) * (1u << SUB_BITS) + sub;
}

static uint64_t bucket_floor_us(unsigned bucket) {
    if (bucket < EXACT_US) return bucket;
    unsigned octave = 10 + (bucket - EXACT_US) / (1u << SUB_BITS);
    uint64_t sub = (bucket - EXACT_US) % (1u << SUB_BITS);
    return ((uint64_t)1 << octave) + (sub << (octave - SUB_BITS));
}

static void record_latency(uint64_t us) {
    histogram[bucket_of(us)]++;
    histogram_count++;
    if (us > latency_max_us) latency_max_us = us;
}

/* The nearest-rank percentile: the smallest latency at or below which a fraction q of answers lie. */
static uint64_t percentile_us(double q) {
    if (!histogram_count) return 0;
    uint64_t rank = (uint64_t)(q * (double)histogram_count);
    if ((double)rank < q * (double)histogram_count) rank++;
    if (rank == 0) rank = 1;
    uint64_t seen = 0;
    for (unsigned b = 0; b < HISTOGRAM_BUCKETS; b++) {
        seen += histogram[b];
        if (seen >= rank) return bucket_floor_us(b);
    }
    return latency_max_us;
}

/* ---- randomness: splitmix64, seeded by the kernel ---- */

static uint64_t random_state;

static uint64_t next_random(void) {
    uint64_t z = (random_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t monotonic_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}

/* ---- requests and sockets ---- */

typedef struct {
    uint8_t wire[HEADER_BYTES]; /* the request as last sent; bytes 8..19 are its transaction ID */
    uint64_t sent_ns;
    uint32_t sends;             /* how many times this slot has sent: part of the transaction ID */
    uint32_t socket;
    bool outstanding;
} Slot;

typedef struct {
    int fd;
    struct sockaddr_storage self; /* what XOR-MAPPED-ADDRESS must say */
    uint32_t *queue;              /* slots waiting to be sent on this socket (a ring) */
    uint32_t queue_first, queue_length, queue_capacity;
} Flow;

static Slot *slots;
static Flow *flows;
static uint32_t slot_count, flow_count, slot_mask;

static struct {
    uint64_t sent, valid, error_responses, invalid, unmatched, timeouts, refused, send_errors;
} count;

static void put_be16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static void put_be32(uint8_t *p, uint32_t v) { put_be16(p, (uint16_t)(v >> 16)); put_be16(p + 2, (uint16_t)v); }
static uint16_t get_be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t get_be32(const uint8_t *p) { return (uint32_t)get_be16(p) << 16 | get_be16(p + 2); }

static void enqueue(uint32_t slot) {
    Flow *flow = &flows[slots[slot].socket];
    flow->queue[(flow->queue_first + flow->queue_length) % flow->queue_capacity] = slot;
    flow->queue_length++;
}

/* Give a slot a fresh transaction ID: (slot ^ mask, send count, 32 random bits). */
static void prepare(uint32_t slot) {
    Slot *s = &slots[slot];
    s->sends++;
    put_be16(s->wire, BINDING_REQUEST);
    put_be16(s->wire + 2, 0);
    put_be32(s->wire + 4, MAGIC_COOKIE);
    put_be32(s->wire + 8, slot ^ slot_mask);
    put_be32(s->wire + 12, s->sends);
    put_be32(s->wire + 16, (uint32_t)next_random());
}

/* Send what this socket has queued, in batches, until the queue is empty or the kernel pushes back. */
static void send_queued(Flow *flow) {
    struct mmsghdr messages[BATCH];
    struct iovec vectors[BATCH];
    while (flow->queue_length) {
        uint32_t batch = flow->queue_length < BATCH ? flow->queue_length : BATCH;
        for (uint32_t i = 0; i < batch; i++) {
            uint32_t slot = flow->queue[(flow->queue_first + i) % flow->queue_capacity];
            prepare(slot);
            vectors[i] = (struct iovec){.iov_base = slots[slot].wire, .iov_len = HEADER_BYTES};
            messages[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &vectors[i], .msg_iovlen = 1}};
        }
        int sent = sendmmsg(flow->fd, messages, batch, 0);
        if (sent < 0) {
            if (errno == ECONNREFUSED) { /* an ICMP error for an earlier datagram: try again */
                count.refused++;
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS) count.send_errors++;
            return;
        }
        uint64_t now = monotonic_ns();
        for (int i = 0; i < sent; i++) {
            Slot *s = &slots[flow->queue[(flow->queue_first + (uint32_t)i) % flow->queue_capacity]];
            s->sent_ns = now;
            s->outstanding = true;
        }
        flow->queue_first = (flow->queue_first + (uint32_t)sent) % flow->queue_capacity;
        flow->queue_length -= (uint32_t)sent;
        count.sent += (uint64_t)sent;
        if ((uint32_t)sent < batch) return;
    }
}

/* Does the XOR-MAPPED-ADDRESS of this success response name the socket it arrived on? */
static bool maps_to(const uint8_t *message, size_t length, const struct sockaddr_storage *self) {
    size_t at = HEADER_BYTES;
    while (at + 4 <= length) {
        uint16_t type = get_be16(message + at), value_length = get_be16(message + at + 2);
        const uint8_t *value = message + at + 4;
        if (at + 4 + value_length > length) return false;
        if (type == XOR_MAPPED_ADDRESS) {
            if (value_length < 4) return false;
            uint16_t port = get_be16(value + 2) ^ (uint16_t)(MAGIC_COOKIE >> 16);
            if (self->ss_family == AF_INET && value[1] == 1 && value_length == 8) {
                const struct sockaddr_in *own = (const struct sockaddr_in *)self;
                uint32_t host = get_be32(value + 4) ^ MAGIC_COOKIE;
                return port == ntohs(own->sin_port) && host == ntohl(own->sin_addr.s_addr);
            }
            if (self->ss_family == AF_INET6 && value[1] == 2 && value_length == 20) {
                const struct sockaddr_in6 *own = (const struct sockaddr_in6 *)self;
                for (int i = 0; i < 16; i++) {
                    /* the key is the magic cookie then the transaction ID (RFC 8489 §14.2) */
                    if ((value[4 + i] ^ message[4 + i]) != own->sin6_addr.s6_addr[i]) return false;
                }
                return port == ntohs(own->sin6_port);
            }
            return false;
        }
        at += 4 + (((size_t)value_length + 3) & ~(size_t)3);
    }
    return false;
}

/* Judge one datagram from the server; a matched slot is queued again while the run lasts. */
static void take_answer(const uint8_t *message, size_t length, const Flow *flow, uint64_t now,
                        bool running) {
    if (length < HEADER_BYTES || get_be32(message + 4) != MAGIC_COOKIE ||
        (size_t)get_be16(message + 2) + HEADER_BYTES != length) {
        count.invalid++;
        return;
    }
    uint32_t slot = get_be32(message + 8) ^ slot_mask;
    if (slot >= slot_count || !slots[slot].outstanding ||
        memcmp(message + 8, slots[slot].wire + 8, 12) != 0) {
        count.unmatched++; /* an answer to a request that already timed out, or not ours */
        return;
    }
    Slot *s = &slots[slot];
    s->outstanding = false;
    uint16_t type = get_be16(message);
    if (type == BINDING_SUCCESS && maps_to(message, length, &flow->self)) {
        count.valid++;
        record_latency((now - s->sent_ns) / 1000);
    } else if (type == BINDING_ERROR) {
        count.error_responses++;
    } else {
        count.invalid++;
    }
    if (running) enqueue(slot);
}

static void read_answers(Flow *flow, bool running) {
    static uint8_t buffers[BATCH][DATAGRAM_BYTES];
    struct mmsghdr messages[BATCH];
    struct iovec vectors[BATCH];
    for (int round = 0; round < READS_PER_WAKEUP; round++) {
        for (int i = 0; i < BATCH; i++) {
            vectors[i] = (struct iovec){.iov_base = buffers[i], .iov_len = DATAGRAM_BYTES};
            messages[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &vectors[i], .msg_iovlen = 1}};
        }
        int received = recvmmsg(flow->fd, messages, BATCH, MSG_DONTWAIT, NULL);
        if (received < 0) {
            if (errno == ECONNREFUSED) {
                count.refused++;
                continue;
            }
            return;
        }
        uint64_t now = monotonic_ns();
        for (int i = 0; i < received; i++) take_answer(buffers[i], messages[i].msg_len, flow, now, running);
        if (received < BATCH) return;
    }
}

/* Give up on requests older than the timeout; their slots send again with a new transaction ID. */
static void expire(uint64_t now, uint64_t timeout_ns) {
    for (uint32_t slot = 0; slot < slot_count; slot++) {
        if (slots[slot].outstanding && now - slots[slot].sent_ns > timeout_ns) {
            slots[slot].outstanding = false;
            count.timeouts++;
            enqueue(slot);
        }
    }
}

/* ---- setup ---- */

static long number_argument(const char *text, const char *name, long low, long high) {
    char *end;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno || end == text || *end || value < low || value > high) {
        fprintf(stderr, "stunload: %s must be a whole number from %ld to %ld, not '%s'\n", name, low,
                high, text);
        exit(2);
    }
    return value;
}

static bool is_loopback(const struct sockaddr *address) {
    if (address->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)address)->sin_addr.s_addr) >> 24) == 127;
    if (address->sa_family == AF_INET6) {
        const struct in6_addr *host = &((const struct sockaddr_in6 *)address)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(host) || (IN6_IS_ADDR_V4MAPPED(host) && host->s6_addr[12] == 127);
    }
    return false;
}

static void *allocate(size_t items, size_t size) {
    void *memory = calloc(items, size);
    if (!memory) {
        perror("stunload: calloc");
        exit(2);
    }
    return memory;
}

static int open_flow(Flow *flow, const struct addrinfo *server, uint32_t queue_capacity) {
    flow->fd = socket(server->ai_family, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    if (flow->fd < 0) return -1;
    int buffer_bytes = 1 << 22;
    setsockopt(flow->fd, SOL_SOCKET, SO_SNDBUF, &buffer_bytes, sizeof buffer_bytes);
    setsockopt(flow->fd, SOL_SOCKET, SO_RCVBUF, &buffer_bytes, sizeof buffer_bytes);
    if (connect(flow->fd, server->ai_addr, server->ai_addrlen) < 0) return -1;
    socklen_t self_length = sizeof flow->self;
    if (getsockname(flow->fd, (struct sockaddr *)&flow->self, &self_length) < 0) return -1;
    flow->queue_capacity = queue_capacity;
    flow->queue = allocate(queue_capacity, sizeof *flow->queue);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 5 || argc > 7) {
        fprintf(stderr, "usage: stunload HOST PORT SECONDS CONCURRENCY [SOCKETS] [TIMEOUT_MS]\n");
        return 2;
    }
    const char *host = argv[1], *port = argv[2];
    number_argument(port, "PORT", 1, 65535);
    long seconds = number_argument(argv[3], "SECONDS", 1, 3600);
    slot_count = (uint32_t)number_argument(argv[4], "CONCURRENCY", 1, 1 << 20);
    long default_sockets = slot_count < 32 ? slot_count : 32;
    flow_count = argc > 5 ? (uint32_t)number_argument(argv[5], "SOCKETS", 1, MAX_SOCKETS)
                          : (uint32_t)default_sockets;
    if (flow_count > slot_count) flow_count = slot_count;
    long timeout_ms = argc > 6 ? number_argument(argv[6], "TIMEOUT_MS", 1, 60000) : 1000;

    struct addrinfo hints = {.ai_socktype = SOCK_DGRAM, .ai_flags = AI_NUMERICSERV}, *server;
    int resolved = getaddrinfo(host, port, &hints, &server);
    if (resolved) {
        fprintf(stderr, "stunload: cannot resolve %s: %s\n", host, gai_strerror(resolved));
        return 2;
    }
    const char *allow_remote = getenv("STUNLOAD_ALLOW_REMOTE");
    if (!is_loopback(server->ai_addr) && !(allow_remote && strcmp(allow_remote, "1") == 0)) {
        fprintf(stderr, "stunload: %s is not a loopback address; set STUNLOAD_ALLOW_REMOTE=1 to "
                        "load a server you run elsewhere\n", host);
        return 2;
    }
    if (getrandom(&random_state, sizeof random_state, 0) != (ssize_t)sizeof random_state) {
        perror("stunload: getrandom");
        return 2;
    }
    slot_mask = (uint32_t)next_random();

    slots = allocate(slot_count, sizeof *slots);
    flows = allocate(flow_count, sizeof *flows);
    int poller = epoll_create1(0);
    if (poller < 0) {
        perror("stunload: epoll_create1");
        return 2;
    }
    for (uint32_t f = 0; f < flow_count; f++) {
        if (open_flow(&flows[f], server, slot_count / flow_count + 1) < 0) {
            perror("stunload: socket");
            return 2;
        }
        struct epoll_event interest = {.events = EPOLLIN, .data.u32 = f};
        if (epoll_ctl(poller, EPOLL_CTL_ADD, flows[f].fd, &interest) < 0) {
            perror("stunload: epoll_ctl");
            return 2;
        }
    }
    for (uint32_t slot = 0; slot < slot_count; slot++) {
        slots[slot].socket = slot % flow_count;
        enqueue(slot);
    }

    struct rusage usage_before, usage_after;
    getrusage(RUSAGE_SELF, &usage_before);
    const uint64_t timeout_ns = (uint64_t)timeout_ms * 1000000ull;
    const uint64_t start = monotonic_ns(), end = start + (uint64_t)seconds * 1000000000ull;
    const uint64_t sweep_every = timeout_ns / 4 < 10000000ull ? timeout_ns / 4 + 1 : 10000000ull;
    uint64_t next_sweep = start + sweep_every;
    struct epoll_event ready[MAX_SOCKETS];

    uint64_t now = start;
    while (now < end) {
        bool backlog = false;
        for (uint32_t f = 0; f < flow_count; f++) {
            if (flows[f].queue_length) send_queued(&flows[f]);
            backlog |= flows[f].queue_length != 0;
        }
        int events = epoll_wait(poller, ready, (int)flow_count, backlog ? 0 : 2);
        for (int e = 0; e < events; e++) {
            Flow *flow = &flows[ready[e].data.u32];
            read_answers(flow, monotonic_ns() < end);
            send_queued(flow);
        }
        now = monotonic_ns();
        if (now >= next_sweep) {
            expire(now, timeout_ns);
            next_sweep = now + sweep_every;
        }
    }
    getrusage(RUSAGE_SELF, &usage_after);
    double elapsed = (double)(now - start) / 1e9;
    double cpu = (double)(usage_after.ru_utime.tv_sec - usage_before.ru_utime.tv_sec) +
                 (double)(usage_after.ru_stime.tv_sec - usage_before.ru_stime.tv_sec) +
                 (double)(usage_after.ru_utime.tv_usec - usage_before.ru_utime.tv_usec) / 1e6 +
                 (double)(usage_after.ru_stime.tv_usec - usage_before.ru_stime.tv_usec) / 1e6;
    uint64_t in_flight = 0;
    for (uint32_t slot = 0; slot < slot_count; slot++) in_flight += slots[slot].outstanding;

    fprintf(stderr, "stunload: %s port %s for %.2f s, %u requests in flight over %u sockets, "
                    "timeout %ld ms\n", host, port, elapsed, slot_count, flow_count, timeout_ms);
    printf("stunload_sent %llu requests\n", (unsigned long long)count.sent);
    printf("stunload_received %llu responses\n", (unsigned long long)count.valid);
    printf("stunload_rate %.1f responses/s\n", (double)count.valid / elapsed);
    printf("stunload_p50 %llu us\n", (unsigned long long)percentile_us(0.50));
    printf("stunload_p90 %llu us\n", (unsigned long long)percentile_us(0.90));
    printf("stunload_p99 %llu us\n", (unsigned long long)percentile_us(0.99));
    printf("stunload_max %llu us\n", (unsigned long long)latency_max_us);
    printf("stunload_timeouts %llu requests\n", (unsigned long long)count.timeouts);
    printf("stunload_error_responses %llu responses\n", (unsigned long long)count.error_responses);
    printf("stunload_invalid %llu responses\n", (unsigned long long)count.invalid);
    printf("stunload_unmatched %llu responses\n", (unsigned long long)count.unmatched);
    printf("stunload_refused %llu events\n", (unsigned long long)count.refused);
    printf("stunload_send_errors %llu events\n", (unsigned long long)count.send_errors);
    printf("stunload_in_flight_at_end %llu requests\n", (unsigned long long)in_flight);
    printf("stunload_cpu %.2f cores\n", cpu / elapsed);
    freeaddrinfo(server);
    return count.valid ? 0 : 1;
}
