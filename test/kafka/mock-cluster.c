/*
 * A Kafka-protocol mock cluster for evaq's tests: librdkafka's mock brokers (rdkafka_mock.h),
 * driven line by line over stdin.
 *
 *   mock-cluster <brokers> [<message.max.bytes>]
 *
 * On start it prints `bootstrap <host:port,...>` (broker 1 first). Each command line gets one
 * answer line, `ok ...` or `error <reason>`:
 *
 *   down <id> | up <id>               take a broker down (connections closed and refused) or up
 *                                     (-1: all brokers); leadership does not move
 *   topic <name> <partitions> <rf>    create a topic
 *   leader <topic> <partition> <id>   set a partition's leader
 *   topic-error <topic> <err>         Metadata answers the topic with this error (0: none)
 *   errors <apikey> <err>...          the next requests of that API, on any broker, fail with these
 *                                     error codes (rd_kafka_mock_push_request_errors)
 *   broker-errors <id> <apikey> <err>...   the same on one broker
 *   clear <apikey>                    drop the cluster's pending errors for that API
 *   rtt <id> <ms>                     delay the broker's responses
 *   max-bytes <n>                     the size limit below (0: none)
 *   stats                             `ok rejected <n>`: Produce requests rejected as too large
 *
 * End of stdin destroys the cluster and exits 0.
 *
 * Message size limit. librdkafka's mock brokers accept record batches of any size, where a real
 * broker rejects a record batch larger than `message.max.bytes` with MESSAGE_TOO_LARGE (10). This
 * launcher adds that check: it interposes recvmsg(), which the mock brokers read requests with,
 * follows the Kafka framing of every connection accepted on a broker's listener, and when a
 * Produce request (v0-v8) carries a partition's record batch over the limit it pushes one
 * MESSAGE_TOO_LARGE onto that broker's Produce error stack before the mock parses the request.
 * The mock thread reads a request whole and handles it at once, so that error answers exactly
 * that request. The mock applies it to every partition of the request (a real broker fails only
 * the oversized partition), which a client sees as the same error.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define MAX_BROKERS 16
#define MAX_FDS 65536
#define PRODUCE 0

static rd_kafka_mock_cluster_t *mcluster;
static int broker_cnt;
static int broker_port[MAX_BROKERS + 1];
static atomic_long max_bytes;
static atomic_long rejected;

/* The framing state of one accepted connection. */
struct conn {
        int broker; /* 0: not a broker connection */
        unsigned char hdr[4];
        size_t hdr_len;
        size_t frame_len; /* bytes of the current frame, after its size */
        size_t frame_pos;
        unsigned char *frame; /* kept only for Produce requests */
        size_t kept;
};
static struct conn conns[MAX_FDS];

static int broker_of_port(int port) {
        for (int id = 1; id <= broker_cnt; id++)
                if (broker_port[id] == port)
                        return id;
        return 0;
}

static int local_port(int fd) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
                return -1;
        if (ss.ss_family == AF_INET)
                return ntohs(((struct sockaddr_in *)&ss)->sin_port);
        if (ss.ss_family == AF_INET6)
                return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        return -1;
}

static void conn_reset(struct conn *c) {
        free(c->frame);
        memset(c, 0, sizeof(*c));
}

/* A bounds-checked reader over one request. */
struct rd {
        const unsigned char *p;
        size_t len, pos;
        int bad;
};
static int64_t rd_int(struct rd *r, int bytes) {
        if (r->pos + bytes > r->len) {
                r->bad = 1;
                return 0;
        }
        uint64_t v = 0;
        for (int i = 0; i < bytes; i++)
                v = (v << 8) | r->p[r->pos + i];
        r->pos += bytes;
        if (bytes == 2)
                return (int16_t)v;
        if (bytes == 4)
                return (int32_t)v;
        return (int64_t)v;
}
static void rd_skip(struct rd *r, int64_t n) {
        if (n < 0)
                return;
        if (r->pos + (size_t)n > r->len) {
                r->bad = 1;
                return;
        }
        r->pos += (size_t)n;
}

/* The largest record batch of a Produce request, or -1 when it cannot be parsed. */
static int64_t largest_batch(const unsigned char *p, size_t len) {
        struct rd r = {p, len, 0, 0};
        rd_int(&r, 2); /* ApiKey */
        int version = (int)rd_int(&r, 2);
        rd_int(&r, 4);              /* CorrelationId */
        rd_skip(&r, rd_int(&r, 2)); /* ClientId */
        if (version > 8)
                return -1; /* flexible versions: not parsed */
        if (version >= 3)
                rd_skip(&r, rd_int(&r, 2)); /* TransactionalId */
        rd_int(&r, 2);                      /* Acks */
        rd_int(&r, 4);                      /* TimeoutMs */
        int64_t largest = 0;
        for (int64_t topics = rd_int(&r, 4); topics > 0 && !r.bad; topics--) {
                rd_skip(&r, rd_int(&r, 2)); /* Topic */
                for (int64_t parts = rd_int(&r, 4); parts > 0 && !r.bad; parts--) {
                        rd_int(&r, 4); /* Partition */
                        int64_t size = rd_int(&r, 4);
                        if (size > largest)
                                largest = size;
                        rd_skip(&r, size);
                }
        }
        return r.bad ? -1 : largest;
}

static void frame_done(struct conn *c) {
        long limit = atomic_load(&max_bytes);
        if (c->frame != NULL && limit > 0 &&
            largest_batch(c->frame, c->frame_len) > limit) {
                rd_kafka_mock_broker_push_request_error_rtts(
                    mcluster, c->broker, PRODUCE, 1,
                    RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, 0);
                atomic_fetch_add(&rejected, 1);
        }
        free(c->frame);
        c->frame = NULL;
        c->hdr_len = c->frame_len = c->frame_pos = c->kept = 0;
}

static void feed(struct conn *c, const unsigned char *p, size_t n) {
        while (n > 0) {
                if (c->hdr_len < 4) {
                        c->hdr[c->hdr_len++] = *p++;
                        n--;
                        if (c->hdr_len == 4) {
                                c->frame_len = ((size_t)c->hdr[0] << 24) | ((size_t)c->hdr[1] << 16) |
                                               ((size_t)c->hdr[2] << 8) | c->hdr[3];
                                c->frame_pos = 0;
                                if (c->frame_len == 0)
                                        frame_done(c);
                        }
                        continue;
                }
                size_t take = c->frame_len - c->frame_pos;
                if (take > n)
                        take = n;
                /* Keep the frame once its first two bytes show a Produce request. */
                if (c->frame_pos == 0 && c->frame == NULL && atomic_load(&max_bytes) > 0) {
                        if (take >= 2 ? (p[0] == 0 && p[1] == PRODUCE) : 1)
                                c->frame = malloc(c->frame_len);
                }
                if (c->frame != NULL) {
                        memcpy(c->frame + c->frame_pos, p, take);
                        /* A frame whose first bytes turn out not to be Produce is dropped. */
                        if (c->frame_pos < 2 && c->frame_pos + take >= 2 &&
                            !(c->frame[0] == 0 && c->frame[1] == PRODUCE)) {
                                free(c->frame);
                                c->frame = NULL;
                        }
                }
                c->frame_pos += take;
                p += take;
                n -= take;
                if (c->frame_pos == c->frame_len)
                        frame_done(c);
        }
}

/* Interposed: the mock brokers accept connections and read requests through these. */
int accept(int fd, struct sockaddr *addr, socklen_t *len) {
        static int (*real)(int, struct sockaddr *, socklen_t *);
        if (real == NULL)
                real = (int (*)(int, struct sockaddr *, socklen_t *))dlsym(RTLD_NEXT, "accept");
        int s = real(fd, addr, len);
        if (s >= 0 && s < MAX_FDS) {
                conn_reset(&conns[s]);
                conns[s].broker = broker_of_port(local_port(s));
        }
        return s;
}

ssize_t recvmsg(int fd, struct msghdr *msg, int flags) {
        static ssize_t (*real)(int, struct msghdr *, int);
        if (real == NULL)
                real = (ssize_t (*)(int, struct msghdr *, int))dlsym(RTLD_NEXT, "recvmsg");
        ssize_t r = real(fd, msg, flags);
        if (r > 0 && fd >= 0 && fd < MAX_FDS && conns[fd].broker > 0 && !(flags & MSG_PEEK)) {
                size_t left = (size_t)r;
                for (size_t i = 0; i < msg->msg_iovlen && left > 0; i++) {
                        size_t n = msg->msg_iov[i].iov_len < left ? msg->msg_iov[i].iov_len : left;
                        feed(&conns[fd], msg->msg_iov[i].iov_base, n);
                        left -= n;
                }
        }
        return r;
}

static void reply(const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        putchar('\n');
        fflush(stdout);
}

static void answer(rd_kafka_resp_err_t err) {
        if (err)
                reply("error %s", rd_kafka_err2name(err));
        else
                reply("ok");
}

static int parse_int(const char *s, long *out) {
        char *end;
        if (s == NULL)
                return 0;
        errno = 0;
        *out = strtol(s, &end, 10);
        return errno == 0 && *end == '\0' && end != s;
}

static void command(char *line) {
        char *argv[64];
        int argc = 0;
        for (char *tok = strtok(line, " \t\r\n"); tok != NULL && argc < 64; tok = strtok(NULL, " \t\r\n"))
                argv[argc++] = tok;
        if (argc == 0)
                return;
        long a, b, c;
        const char *cmd = argv[0];
        if ((!strcmp(cmd, "down") || !strcmp(cmd, "up")) && argc == 2 && parse_int(argv[1], &a)) {
                answer(!strcmp(cmd, "down") ? rd_kafka_mock_broker_set_down(mcluster, (int32_t)a)
                                            : rd_kafka_mock_broker_set_up(mcluster, (int32_t)a));
        } else if (!strcmp(cmd, "topic") && argc == 4 && parse_int(argv[2], &a) && parse_int(argv[3], &b)) {
                answer(rd_kafka_mock_topic_create(mcluster, argv[1], (int)a, (int)b));
        } else if (!strcmp(cmd, "leader") && argc == 4 && parse_int(argv[2], &a) && parse_int(argv[3], &b)) {
                answer(rd_kafka_mock_partition_set_leader(mcluster, argv[1], (int32_t)a, (int32_t)b));
        } else if (!strcmp(cmd, "topic-error") && argc == 3 && parse_int(argv[2], &a)) {
                rd_kafka_mock_topic_set_error(mcluster, argv[1], (rd_kafka_resp_err_t)a);
                reply("ok");
        } else if (!strcmp(cmd, "errors") && argc >= 3 && parse_int(argv[1], &a)) {
                rd_kafka_resp_err_t errs[62];
                size_t cnt = 0;
                for (int i = 2; i < argc; i++) {
                        if (!parse_int(argv[i], &b)) {
                                reply("error bad error code %s", argv[i]);
                                return;
                        }
                        errs[cnt++] = (rd_kafka_resp_err_t)b;
                }
                rd_kafka_mock_push_request_errors_array(mcluster, (int16_t)a, cnt, errs);
                reply("ok");
        } else if (!strcmp(cmd, "broker-errors") && argc >= 4 && parse_int(argv[1], &a) && parse_int(argv[2], &b)) {
                for (int i = 3; i < argc; i++) {
                        if (!parse_int(argv[i], &c)) {
                                reply("error bad error code %s", argv[i]);
                                return;
                        }
                        rd_kafka_resp_err_t err = rd_kafka_mock_broker_push_request_error_rtts(
                            mcluster, (int32_t)a, (int16_t)b, 1, (rd_kafka_resp_err_t)c, 0);
                        if (err) {
                                answer(err);
                                return;
                        }
                }
                reply("ok");
        } else if (!strcmp(cmd, "clear") && argc == 2 && parse_int(argv[1], &a)) {
                rd_kafka_mock_clear_request_errors(mcluster, (int16_t)a);
                reply("ok");
        } else if (!strcmp(cmd, "rtt") && argc == 3 && parse_int(argv[1], &a) && parse_int(argv[2], &b)) {
                answer(rd_kafka_mock_broker_set_rtt(mcluster, (int32_t)a, (int)b));
        } else if (!strcmp(cmd, "max-bytes") && argc == 2 && parse_int(argv[1], &a) && a >= 0) {
                atomic_store(&max_bytes, a);
                reply("ok");
        } else if (!strcmp(cmd, "stats") && argc == 1) {
                reply("ok rejected %ld", atomic_load(&rejected));
        } else {
                reply("error unknown command %s (or bad arguments)", cmd);
        }
}

int main(int argc, char **argv) {
        char errstr[512];
        long n = 3, limit = 0;
        if (argc < 2 || !parse_int(argv[1], &n) || n < 1 || n > MAX_BROKERS ||
            (argc > 2 && (!parse_int(argv[2], &limit) || limit < 0))) {
                fprintf(stderr, "usage: %s <brokers 1-%d> [<message.max.bytes>]\n", argv[0], MAX_BROKERS);
                return 2;
        }
        broker_cnt = (int)n;
        atomic_store(&max_bytes, limit);

        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        /* The handle only hosts the cluster; keep it quiet. */
        if (rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
                fprintf(stderr, "%s\n", errstr);
                return 1;
        }
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
        if (rk == NULL) {
                fprintf(stderr, "rd_kafka_new: %s\n", errstr);
                return 1;
        }
        mcluster = rd_kafka_mock_cluster_new(rk, broker_cnt);
        if (mcluster == NULL) {
                fprintf(stderr, "rd_kafka_mock_cluster_new failed\n");
                return 1;
        }
        const char *bootstraps = rd_kafka_mock_cluster_bootstraps(mcluster);
        /* host:port,host:port,... in broker ID order */
        char *list = strdup(bootstraps);
        int id = 1;
        for (char *tok = strtok(list, ","); tok != NULL && id <= broker_cnt; tok = strtok(NULL, ","), id++) {
                char *colon = strrchr(tok, ':');
                broker_port[id] = colon != NULL ? atoi(colon + 1) : -1;
        }
        free(list);
        reply("bootstrap %s", bootstraps);

        char *line = NULL;
        size_t cap = 0;
        while (getline(&line, &cap, stdin) >= 0)
                command(line);
        free(line);
        rd_kafka_mock_cluster_destroy(mcluster);
        rd_kafka_destroy(rk);
        return 0;
}
