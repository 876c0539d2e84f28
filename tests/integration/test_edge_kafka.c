/*
 * The HTTP edge against the real Kafka broker, end to end: a built sluice-ingest takes
 * POST /ingest, and the test reads back what landed on the topic (librdkafka consumer) and
 * in the disk spool (ingest_spool_read + ingest_queue_decode, daemon stopped). It checks the
 * delivery contract of DESIGN.md: a 200 means every accepted event is in Kafka or fsync'ed
 * in the spool, whatever happens to the broker or the daemon afterwards.
 *
 * Cases (each runs alone by name):
 * - events land on the topic exactly as normalized, keyed by the partition strategy, with
 *   the sluice-tenant and sluice-schema headers, and nothing else;
 * - the broker stopped mid-stream: every request still gets 200 (spooled), the replayer
 *   moves the spool to the restarted broker, every acknowledged id is on the topic;
 * - kill -9 of sluice-ingest under load, spool only and with a broker: every acknowledged
 *   id survives the restart (in the spool, or on the topic);
 * - SIGTERM while requests wait for a hung broker: exit 0 within the shutdown timeout plus
 *   a margin, every acknowledged id in the spool.
 * Broker fault injection with librdkafka's mock cluster lives in test_producer.c.
 *
 * Needs the built daemons ($SLUICE_BIN_DIR), SLUICE_TEST_KAFKA_BROKERS (the shared stack;
 * its absence skips the Kafka cases, see test_env_require) and, for the cases that stop
 * and hang a broker, a private one of their own from $SLUICE_SOURCE_DIR/scripts/kafka.sh.
 * The kill -9 spool-only case needs no broker at all and runs first.
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"
#include "err.h"
#include "event.h"
#include "producer.h"
#include "queue.h"
#include "spool.h"
#include "test.h"

#define EVENTS_PER_REQUEST 10
#define START_TIMEOUT_MS 20000
#define STOP_TIMEOUT_MS 30000
#define CONSUME_TIMEOUT_MS 60000
#define SCRIPT_TIMEOUT_MS 180000
#define HTTP_TIMEOUT_MS 60000
#define DRAIN_TIMEOUT_MS 90000
#define MAX_LOAD_THREADS 8
#define MAX_LIVE_DAEMONS 4
/* The daemon's spool sizes (SLUICE_SPOOL_MAX_BYTES / SEGMENT_BYTES defaults), used when the
 * test opens the same folder to read it. */
#define SPOOL_MAX_BYTES (1ULL << 30)
#define SPOOL_SEGMENT_BYTES (64ULL << 20)
#define TENANT_ID_MAX 128

extern char **environ;

/* ---- what must not outlive a failed assertion ---------------------------------------- */

/*
 * GLOBAL: pids of the daemons this process started and has not reaped, and the private
 * broker (its JVM's pid, to SIGCONT it, and the argv that stops it). Written by the main
 * thread only, around starting and reaping; read by on_abort, which TEST_FAIL reaches
 * through abort(), so a failing case leaves no daemon or broker behind.
 */
static volatile pid_t g_live_daemons[MAX_LIVE_DAEMONS];
static volatile pid_t g_broker_jvm;
static volatile sig_atomic_t g_has_broker;
static char *g_broker_stop_argv[5];

static void on_abort(int sig)
{
    pid_t pid;

    (void)sig;
    for (int i = 0; i < MAX_LIVE_DAEMONS; i++) {
        if (g_live_daemons[i] > 0) {
            kill(g_live_daemons[i], SIGKILL);
        }
    }
    if (!g_has_broker) {
        return;
    }
    if (g_broker_jvm > 0) {
        kill(g_broker_jvm, SIGCONT); /* a stopped JVM cannot act on kafka.sh's SIGTERM */
    }
    pid = fork();
    if (pid == 0) {
        execve("/bin/bash", g_broker_stop_argv, environ);
        _exit(127);
    }
    if (pid > 0) {
        waitpid(pid, NULL, 0);
    }
    /* abort() goes on to end the process once this returns. */
}

static void live_daemon_add(pid_t pid)
{
    for (int i = 0; i < MAX_LIVE_DAEMONS; i++) {
        if (g_live_daemons[i] == 0) {
            g_live_daemons[i] = pid;
            return;
        }
    }
    TEST_FAIL("more than %d daemons at once", MAX_LIVE_DAEMONS);
}

static void live_daemon_remove(pid_t pid)
{
    for (int i = 0; i < MAX_LIVE_DAEMONS; i++) {
        if (g_live_daemons[i] == pid) {
            g_live_daemons[i] = 0;
        }
    }
}

/* ---- small helpers ------------------------------------------------------------------- */

static int64_t wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "2026-11-24T10:00:00.123Z" for ms; with offset_min != 0 the same instant as local time
 * at that UTC offset ("...T12:00:00.123+02:00"). */
static void format_rfc3339(int64_t ms, int offset_min, char *out, size_t cap)
{
    time_t secs = (time_t)((ms + (int64_t)offset_min * 60000) / 1000);
    struct tm tm;

    int n;

    gmtime_r(&secs, &tm);
    if (offset_min == 0) {
        n = snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (int)(ms % 1000));
    }
    else {
        n = snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03d%c%02d:%02d",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, (int)(ms % 1000), offset_min < 0 ? '-' : '+',
                     abs(offset_min) / 60, abs(offset_min) % 60);
    }
    if (n < 0 || (size_t)n >= cap) {
        TEST_FAIL("time buffer of %zu bytes too small", cap);
    }
}

/* Parses the edge's "YYYY-MM-DDTHH:MM:SS.mmmZ"; -1 when it is not exactly that form. */
static int64_t parse_utc_ms(const char *s)
{
    struct tm tm;
    int ms = 0, used = 0;

    memset(&tm, 0, sizeof(tm));
    if (s == NULL || strlen(s) != 24 ||
        sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
               &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms, &used) != 7 ||
        used != 24) {
        return -1;
    }
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm) * 1000 + ms;
}

/* A prefix for the ids of one case: its first 8 hex digits, different in every run. */
static uint32_t new_id_prefix(void)
{
    static atomic_uint counter;
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return ((uint32_t)getpid() * 2654435761u) ^ (uint32_t)ts.tv_nsec ^
           ((uint32_t)ts.tv_sec << 7) ^ (atomic_fetch_add(&counter, 1) * 40503u);
}

/* The id of event idx of a case: a valid UUID, lowercase, never a placeholder. */
static void event_id(uint32_t prefix, size_t idx, char out[INGEST_EVENT_ID_LEN + 1])
{
    int n = snprintf(out, INGEST_EVENT_ID_LEN + 1, "%08x-0000-4000-8000-%012llx", prefix,
                     (unsigned long long)(idx & 0xffffffffffffULL));

    if (n != INGEST_EVENT_ID_LEN) {
        TEST_FAIL("bad event id length %d", n);
    }
}

/* Reads a whole small file; NULL when it cannot. Caller frees. */
static char *read_text_file(const char *path)
{
    FILE *f = fopen(path, "r");
    char *buf = NULL;
    size_t len = 0, cap = 0;

    if (f == NULL) {
        return NULL;
    }
    for (;;) {
        size_t n;

        if (len + 4096 + 1 > cap) {
            cap = cap == 0 ? 8192 : cap * 2;
            buf = realloc(buf, cap);
            ASSERT_TRUE(buf != NULL);
        }
        n = fread(buf + len, 1, cap - len - 1, f);
        if (n == 0) {
            break;
        }
        len += n;
    }
    fclose(f);
    buf[len] = '\0';
    return buf;
}

/* Polls cond(arg) every 20 ms until it holds or timeout_ms passed; returns whether it held. */
static bool wait_for(bool (*cond)(void *), void *arg, int timeout_ms)
{
    long deadline = test_now_ms() + timeout_ms;

    while (!cond(arg)) {
        if (test_now_ms() >= deadline) {
            return cond(arg);
        }
        poll(NULL, 0, 20);
    }
    return true;
}

/*
 * Runs `bash argv...` with extra environment entries, its stdout and stderr appended to
 * log_path (a file, not a pipe: kafka.sh leaves a JVM behind that would hold a pipe open),
 * and reaps it within timeout_ms (killed and failed past it). Returns its exit status.
 */
static int run_script(const char *log_path, char *const argv[], char *const env[],
                      int timeout_ms)
{
    long deadline = test_now_ms() + timeout_ms;
    int status = 0;
    pid_t pid;

    pid = fork();
    ASSERT_TRUE(pid >= 0);
    if (pid == 0) {
        int in_fd = open("/dev/null", O_RDONLY);
        int log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);

        if (in_fd < 0 || log_fd < 0 || dup2(in_fd, 0) < 0 || dup2(log_fd, 1) < 0 ||
            dup2(log_fd, 2) < 0) {
            _exit(126);
        }
        close(in_fd);
        close(log_fd);
        for (size_t i = 0; env != NULL && env[i] != NULL; i++) {
            putenv(env[i]);
        }
        execve("/bin/bash", argv, environ);
        _exit(127);
    }
    for (;;) {
        pid_t got = waitpid(pid, &status, WNOHANG);

        if (got == pid) {
            break;
        }
        ASSERT_TRUE(got == 0 || errno == EINTR);
        if (test_now_ms() >= deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            TEST_FAIL("%s %s did not finish within %d ms", argv[1], argv[2], timeout_ms);
        }
        poll(NULL, 0, 50);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* ---- a stable bootstrap address in front of the private broker -------------------- */

/*
 * kafka.sh start keeps the broker's previous port only when a plain bind() to it succeeds,
 * and after a stop the broker's side of every client connection it closed sits in
 * TIME_WAIT on that port, so the restarted broker usually gets a new port. A real
 * deployment reaches its brokers through a stable name; this is that name: a TCP forwarder
 * on a port of its own, passing each connection on to wherever the broker listens now.
 * Only bootstrap (metadata) traffic goes through it: librdkafka then connects to the
 * broker's advertised address, and after a restart learns the new one from the metadata it
 * fetches through here.
 */
#define PROXY_MAX_CONNS 64

struct proxy;

struct proxy_conn {
    struct proxy *proxy;
    int client_fd;
    int upstream_fd;
    pthread_t thread;
    bool is_used;         /* accept thread and stop only */
    atomic_bool is_done;  /* the thread has finished forwarding */
};

struct proxy {
    int listen_fd;
    int port;
    int wake_fds[2];
    atomic_int upstream_port; /* where the broker listens now; 0: refuse */
    pthread_t thread;
    struct proxy_conn conns[PROXY_MAX_CONNS];
};

static bool send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return false;
        }
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* Copies both ways until either side closes; the fds are closed by whoever joins. */
static void *proxy_conn_main(void *arg)
{
    struct proxy_conn *c = arg;
    char buf[65536];
    bool is_open = true;

    while (is_open) {
        struct pollfd pfd[2] = {{.fd = c->client_fd, .events = POLLIN},
                                {.fd = c->upstream_fd, .events = POLLIN}};

        if (poll(pfd, 2, -1) < 0) {
            is_open = errno == EINTR;
            continue;
        }
        for (int i = 0; i < 2 && is_open; i++) {
            ssize_t n;

            if (pfd[i].revents == 0) {
                continue;
            }
            n = recv(pfd[i].fd, buf, sizeof(buf), 0);
            is_open = n > 0 && send_all(pfd[1 - i].fd, buf, (size_t)n);
        }
    }
    shutdown(c->client_fd, SHUT_RDWR);
    shutdown(c->upstream_fd, SHUT_RDWR);
    atomic_store(&c->is_done, true);
    return NULL;
}

static void proxy_conn_reap(struct proxy_conn *c)
{
    pthread_join(c->thread, NULL);
    close(c->client_fd);
    close(c->upstream_fd);
    c->is_used = false;
}

static int connect_loopback(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static void *proxy_main(void *arg)
{
    struct proxy *px = arg;

    for (;;) {
        struct pollfd pfd[2] = {{.fd = px->listen_fd, .events = POLLIN},
                                {.fd = px->wake_fds[0], .events = POLLIN}};
        struct proxy_conn *slot = NULL;
        int client, upstream;

        if (poll(pfd, 2, -1) < 0) {
            continue; /* EINTR */
        }
        if (pfd[1].revents != 0) {
            break;
        }
        client = accept4(px->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (client < 0) {
            continue;
        }
        upstream = atomic_load(&px->upstream_port) > 0
                       ? connect_loopback(atomic_load(&px->upstream_port))
                       : -1;
        for (int i = 0; i < PROXY_MAX_CONNS; i++) {
            if (px->conns[i].is_used && atomic_load(&px->conns[i].is_done)) {
                proxy_conn_reap(&px->conns[i]);
            }
            if (!px->conns[i].is_used && slot == NULL) {
                slot = &px->conns[i];
            }
        }
        if (upstream < 0 || slot == NULL) {
            /* The broker is down (or too many connections): like a refused connection. */
            close(client);
            if (upstream >= 0) {
                close(upstream);
            }
            continue;
        }
        *slot = (struct proxy_conn){.proxy = px, .client_fd = client, .upstream_fd = upstream,
                                    .is_used = true};
        atomic_init(&slot->is_done, false);
        if (pthread_create(&slot->thread, NULL, proxy_conn_main, slot) != 0) {
            close(client);
            close(upstream);
            slot->is_used = false;
        }
    }
    return NULL;
}

static void proxy_start(struct proxy *px)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);

    memset(px, 0, sizeof(*px));
    atomic_init(&px->upstream_port, 0);
    px->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_TRUE(px->listen_fd >= 0);
    ASSERT_EQ_INT(bind(px->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ASSERT_EQ_INT(listen(px->listen_fd, 64), 0);
    ASSERT_EQ_INT(getsockname(px->listen_fd, (struct sockaddr *)&sa, &len), 0);
    px->port = ntohs(sa.sin_port);
    ASSERT_EQ_INT(pipe2(px->wake_fds, O_CLOEXEC), 0);
    ASSERT_EQ_INT(pthread_create(&px->thread, NULL, proxy_main, px), 0);
}

static void proxy_stop(struct proxy *px)
{
    char c = 1;

    ASSERT_EQ_INT(write(px->wake_fds[1], &c, 1), 1);
    pthread_join(px->thread, NULL);
    for (int i = 0; i < PROXY_MAX_CONNS; i++) {
        if (px->conns[i].is_used) {
            shutdown(px->conns[i].client_fd, SHUT_RDWR);
            shutdown(px->conns[i].upstream_fd, SHUT_RDWR);
            proxy_conn_reap(&px->conns[i]);
        }
    }
    close(px->listen_fd);
    close(px->wake_fds[0]);
    close(px->wake_fds[1]);
}

/* ---- the private broker (cases that stop or hang one) ------------------------------- */

struct broker {
    char *stack_dir;  /* SLUICE_STACK_DIR given to kafka.sh */
    char *kafka_dir;  /* stack_dir/kafka: config, data, logs, env, pid */
    char *script;     /* $SLUICE_SOURCE_DIR/scripts/kafka.sh */
    char *log_path;   /* stack_dir/kafka-sh.log: what kafka.sh printed */
    char *env_entry;  /* "SLUICE_STACK_DIR=..." */
    char addr[128];   /* host:port, from kafka_dir/env; may change at a restart */
    char bootstrap[64]; /* host:port of the proxy: the same across restarts */
    struct proxy proxy;
    bool has_proxy;
    pid_t jvm;
    bool is_running;
    bool is_paused;   /* SIGSTOP'ed: connections stay open, nothing is answered */
};

/* GLOBAL: the private broker, started by the first case that needs it and shared by the
 * cases of one run (each uses its own topic); stopped by main after the cases, or on abort.
 * Main thread only. */
static struct broker g_broker;

static void broker_run(const char *cmd)
{
    char *argv[] = {"/bin/bash", g_broker.script, (char *)cmd, NULL};
    char *env[] = {g_broker.env_entry, NULL};
    int status = run_script(g_broker.log_path, argv, env, SCRIPT_TIMEOUT_MS);

    if (status != 0) {
        char *log = read_text_file(g_broker.log_path);

        fprintf(stderr, "--- %s\n%s\n", g_broker.log_path, log != NULL ? log : "(none)");
        free(log);
        TEST_FAIL("kafka.sh %s exited with %d", cmd, status);
    }
}

/* Starts the private broker (kafka.sh start in a folder of its own), or keeps it running. */
static const char *broker_start(void)
{
    const char *src = getenv("SLUICE_SOURCE_DIR");
    char *env_path = NULL, *pid_path = NULL, *text = NULL;
    const char *line;
    long t0 = test_now_ms();

    if (g_broker.is_running) {
        return g_broker.addr;
    }
    if (g_broker.stack_dir == NULL) {
        if (src == NULL || src[0] == '\0') {
            TEST_FAIL("SLUICE_SOURCE_DIR is not set (run the test through ctest)");
        }
        g_broker.stack_dir = test_tmpdir();
        g_broker.kafka_dir = test_path(g_broker.stack_dir, "kafka");
        g_broker.script = test_path(src, "scripts/kafka.sh");
        g_broker.log_path = test_path(g_broker.stack_dir, "kafka-sh.log");
        ASSERT_TRUE(asprintf(&g_broker.env_entry, "SLUICE_STACK_DIR=%s", g_broker.stack_dir) >
                    0);
        g_broker_stop_argv[0] = "/bin/bash";
        g_broker_stop_argv[1] = g_broker.script;
        g_broker_stop_argv[2] = "stop";
        g_broker_stop_argv[3] = g_broker.kafka_dir;
        g_broker_stop_argv[4] = NULL;
    }
    g_has_broker = 1;
    broker_run("start");
    env_path = test_path(g_broker.kafka_dir, "env");
    text = read_text_file(env_path);
    ASSERT_TRUE(text != NULL);
    line = strstr(text, "SLUICE_TEST_KAFKA_BROKERS=");
    ASSERT_TRUE(line != NULL);
    line += strlen("SLUICE_TEST_KAFKA_BROKERS=");
    snprintf(g_broker.addr, sizeof(g_broker.addr), "%.*s", (int)strcspn(line, "\r\n"), line);
    free(text);
    pid_path = test_path(g_broker.kafka_dir, "pid");
    text = read_text_file(pid_path);
    ASSERT_TRUE(text != NULL);
    g_broker.jvm = (pid_t)atol(text);
    ASSERT_TRUE(g_broker.jvm > 0);
    g_broker_jvm = g_broker.jvm;
    g_broker.is_running = true;
    if (!g_broker.has_proxy) {
        proxy_start(&g_broker.proxy);
        g_broker.has_proxy = true;
        snprintf(g_broker.bootstrap, sizeof(g_broker.bootstrap), "127.0.0.1:%d",
                 g_broker.proxy.port);
    }
    atomic_store(&g_broker.proxy.upstream_port, atoi(strrchr(g_broker.addr, ':') + 1));
    fprintf(stderr, "private broker %s (pid %d) up after %ld ms\n", g_broker.addr,
            (int)g_broker.jvm, test_now_ms() - t0);
    free(text);
    free(pid_path);
    free(env_path);
    return g_broker.addr;
}

/* Hangs the broker (SIGSTOP): its sockets stay open and nothing is answered. */
static void broker_pause(void)
{
    ASSERT_TRUE(g_broker.is_running && !g_broker.is_paused);
    ASSERT_EQ_INT(kill(g_broker.jvm, SIGSTOP), 0);
    g_broker.is_paused = true;
}

static void broker_resume(void)
{
    if (g_broker.is_paused) {
        ASSERT_EQ_INT(kill(g_broker.jvm, SIGCONT), 0);
        g_broker.is_paused = false;
    }
}

/* kafka.sh stop: SIGTERM, wait, check nothing is left. Returns how long it took. */
static long broker_stop(void)
{
    long t0 = test_now_ms();

    if (!g_broker.is_running) {
        return 0;
    }
    broker_resume();
    atomic_store(&g_broker.proxy.upstream_port, 0);
    broker_run("stop");
    g_broker.is_running = false;
    g_broker_jvm = 0;
    g_has_broker = 0;
    return test_now_ms() - t0;
}

static void broker_fini(void)
{
    broker_stop();
    if (g_broker.has_proxy) {
        proxy_stop(&g_broker.proxy);
    }
    if (g_broker.stack_dir != NULL) {
        test_rmtree(g_broker.stack_dir);
    }
    free(g_broker.stack_dir);
    free(g_broker.kafka_dir);
    free(g_broker.script);
    free(g_broker.log_path);
    free(g_broker.env_entry);
    memset(&g_broker, 0, sizeof(g_broker));
}

/* ---- a case's tenant and folders ---------------------------------------------------- */

struct fixture {
    char *dir;       /* the case's folder */
    char *db;        /* dir/sluice.db: the tenant store */
    char *spool_dir; /* dir/spool, kept across daemon restarts */
    char tenant_id[TENANT_ID_MAX];
    char key[256];
    int n_runs;      /* daemons started: each gets a folder for its log */
};

/* Runs `sluice --db DB args...` and returns its stdout's first line in out. */
static void run_cli(struct fixture *f, const char *const *args, char *out, size_t cap)
{
    char *bin = test_bin("sluice");
    char *argv[16];
    struct test_proc p;
    size_t n = 0;

    argv[n++] = bin;
    argv[n++] = "--db";
    argv[n++] = f->db;
    for (size_t i = 0; args[i] != NULL && n < 15; i++) {
        argv[n++] = (char *)args[i];
    }
    argv[n] = NULL;
    test_proc_run(&p, argv, NULL, NULL);
    if (p.status != 0) {
        TEST_FAIL("sluice %s %s exited with %d: %s", args[0], args[1], p.status, p.err);
    }
    if (out != NULL) {
        snprintf(out, cap, "%.*s", (int)strcspn(p.out, "\r\n"), p.out);
        ASSERT_TRUE(out[0] != '\0');
    }
    test_proc_fini(&p);
    free(bin);
}

/* A tenant with limits no test load reaches, and an ingest key for it. */
static void fixture_init(struct fixture *f)
{
    memset(f, 0, sizeof(*f));
    f->dir = test_tmpdir();
    f->db = test_path(f->dir, "sluice.db");
    f->spool_dir = test_path(f->dir, "spool");
    run_cli(f, (const char *const[]){"tenant", "create", "edge-kafka", "--tier", "enterprise",
                                     NULL},
            f->tenant_id, sizeof(f->tenant_id));
    ASSERT_TRUE(strncmp(f->tenant_id, "tn_", 3) == 0);
    run_cli(f, (const char *const[]){"tenant", "set-limits", f->tenant_id, "--rate-limit",
                                     "1000000", "--burst", "1000000", NULL},
            NULL, 0);
    run_cli(f, (const char *const[]){"key", "create", f->tenant_id, NULL}, f->key,
            sizeof(f->key));
}

static void fixture_fini(struct fixture *f)
{
    test_rmtree(f->dir);
    free(f->dir);
    free(f->db);
    free(f->spool_dir);
    memset(f, 0, sizeof(*f));
}

/* A topic of its own for each use, so no run sees another's messages. */
static void unique_topic(const char *what, char *out, size_t cap)
{
    snprintf(out, cap, "sluice.test.edge.%s.%ld.%lld.%08x", what, (long)getpid(),
             (long long)time(NULL), new_id_prefix());
}

/* ---- sluice-ingest ------------------------------------------------------------------ */

struct edge_opts {
    const char *brokers;       /* NULL or "": the spool is the queue */
    const char *topic;         /* NULL: the default */
    const char *partition_key; /* NULL: tenant */
    int delivery_timeout_ms;   /* 0: the default */
    int shutdown_ms;           /* 0: the default */
};

struct edge {
    struct test_daemon d;
    char *run_dir;
    char *env[16];
    int port;
    char ingest_url[64];
    char stats_url[64];
    bool is_live; /* started and not reaped */
};

static void edge_start(struct edge *e, struct fixture *f, const struct edge_opts *o)
{
    char name[32];
    char *bin = test_bin("sluice-ingest");
    size_t n = 0;

    memset(e, 0, sizeof(*e));
    snprintf(name, sizeof(name), "run-%d", ++f->n_runs);
    e->run_dir = test_path(f->dir, name);
    ASSERT_EQ_INT(mkdir(e->run_dir, 0700), 0);
    e->port = test_free_port();
    snprintf(e->ingest_url, sizeof(e->ingest_url), "http://127.0.0.1:%d/ingest", e->port);
    snprintf(e->stats_url, sizeof(e->stats_url), "http://127.0.0.1:%d/stats", e->port);
    ASSERT_TRUE(asprintf(&e->env[n++], "SLUICE_DB=%s", f->db) > 0);
    ASSERT_TRUE(asprintf(&e->env[n++], "SLUICE_HTTP_ADDR=127.0.0.1:%d", e->port) > 0);
    ASSERT_TRUE(asprintf(&e->env[n++], "SLUICE_SPOOL_DIR=%s", f->spool_dir) > 0);
    ASSERT_TRUE(asprintf(&e->env[n++], "SLUICE_KAFKA_BROKERS=%s",
                         o->brokers != NULL ? o->brokers : "") > 0);
    ASSERT_TRUE(asprintf(&e->env[n++], "SLUICE_LOG_LEVEL=info") > 0);
    /* The edge alone: an in-process loader would drain the spool (and consume the topic)
     * this test reads back. */
    ASSERT_TRUE(asprintf(&e->env[n++], "SLUICE_INGEST_ROLES=edge") > 0);
    if (o->topic != NULL) {
        ASSERT_TRUE(asprintf(&e->env[n++], "SLUICE_KAFKA_TOPIC=%s", o->topic) > 0);
    }
    if (o->partition_key != NULL) {
        ASSERT_TRUE(asprintf(&e->env[n++], "SLUICE_KAFKA_PARTITION_KEY=%s", o->partition_key) >
                    0);
    }
    if (o->delivery_timeout_ms > 0) {
        ASSERT_TRUE(asprintf(&e->env[n++], "SLUICE_KAFKA_DELIVERY_TIMEOUT_MS=%d",
                             o->delivery_timeout_ms) > 0);
    }
    if (o->shutdown_ms > 0) {
        ASSERT_TRUE(asprintf(&e->env[n++], "SLUICE_SHUTDOWN_TIMEOUT_MS=%d", o->shutdown_ms) >
                    0);
    }
    e->env[n] = NULL;
    test_daemon_start(&e->d, bin, NULL, e->run_dir, e->env);
    live_daemon_add(e->d.pid);
    e->is_live = true;
    free(bin);
    test_daemon_wait_started(&e->d, "ingest", START_TIMEOUT_MS);
}

static void edge_reaped(struct edge *e)
{
    if (e->is_live && e->d.is_reaped) {
        live_daemon_remove(e->d.pid);
        e->is_live = false;
    }
}

/* SIGTERM; fails unless it exits 0 within timeout_ms. */
static void edge_stop(struct edge *e, int timeout_ms)
{
    test_daemon_stop(&e->d, timeout_ms);
    edge_reaped(e);
}

/* kill -9 and reap. */
static void edge_kill(struct edge *e)
{
    ASSERT_EQ_INT(kill(e->d.pid, SIGKILL), 0);
    test_daemon_wait_exit(&e->d, 10000);
    edge_reaped(e);
    ASSERT_EQ_INT(e->d.status, 128 + SIGKILL);
}

/* Kills it if still running and frees what it holds. */
static void edge_fini(struct edge *e)
{
    test_daemon_fini(&e->d);
    edge_reaped(e);
    for (size_t i = 0; e->env[i] != NULL; i++) {
        free(e->env[i]);
    }
    free(e->run_dir);
    memset(e, 0, sizeof(*e));
}

/* Prints the daemon's log (for a failure message). */
static void edge_dump_log(struct edge *e)
{
    test_daemon_read_log(&e->d);
    fprintf(stderr, "--- %s\n%s\n", e->d.log_path, e->d.log);
}

/* ---- HTTP (libcurl) ------------------------------------------------------------------ */

struct http_buf {
    char *data;
    size_t len;
    size_t cap;
};

static size_t on_http_data(char *ptr, size_t size, size_t nmemb, void *user)
{
    struct http_buf *b = user;
    size_t n = size * nmemb;

    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap == 0 ? 1024 : b->cap;
        char *p;

        while (cap < b->len + n + 1) {
            cap *= 2;
        }
        p = realloc(b->data, cap);
        if (p == NULL) {
            return 0;
        }
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, ptr, n);
    b->len += n;
    b->data[b->len] = '\0';
    return n;
}

static CURL *http_client_create(void)
{
    CURL *c = curl_easy_init();

    ASSERT_TRUE(c != NULL);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)HTTP_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_http_data);
    return c;
}

/*
 * GET url (body NULL) or POST body as JSON with the key. Returns the HTTP status, or 0 when
 * no answer came (errbuf says why); out holds the answer's body (reset first).
 */
static long http_call(CURL *c, const char *url, const char *key, const char *body,
                      struct http_buf *out, char errbuf[CURL_ERROR_SIZE])
{
    struct curl_slist *headers = NULL;
    char auth[300];
    long status = 0;
    CURLcode rc;

    out->len = 0;
    if (out->data != NULL) {
        out->data[0] = '\0';
    }
    errbuf[0] = '\0';
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    if (body != NULL) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
        headers = curl_slist_append(headers, auth);
        headers = curl_slist_append(headers, "Content-Type: application/json");
        headers = curl_slist_append(headers, "User-Agent: sluice-edge-test/1.0");
        headers = curl_slist_append(headers, "Expect:"); /* no 100-continue round trip */
        ASSERT_TRUE(headers != NULL);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    else {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    rc = curl_easy_perform(c);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    }
    else if (errbuf[0] == '\0') {
        snprintf(errbuf, CURL_ERROR_SIZE, "%s", curl_easy_strerror(rc));
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(headers);
    return status;
}

/* GET /stats as JSON (caller decrefs); fails the test without a 200 JSON answer. */
static json_t *edge_stats(struct edge *e)
{
    CURL *c = http_client_create();
    struct http_buf out = {0};
    char errbuf[CURL_ERROR_SIZE];
    json_error_t jerr;
    long status = http_call(c, e->stats_url, NULL, NULL, &out, errbuf);
    json_t *root;

    if (status != 200) {
        TEST_FAIL("GET /stats: status %ld (%s) %s", status, errbuf, out.data ? out.data : "");
    }
    root = json_loads(out.data, 0, &jerr);
    if (root == NULL) {
        TEST_FAIL("GET /stats is not JSON (%s): %s", jerr.text, out.data);
    }
    free(out.data);
    curl_easy_cleanup(c);
    return root;
}

/* stats.a.b as an integer; fails the test when missing. */
static int64_t stats_int(json_t *stats, const char *a, const char *b)
{
    json_t *v = json_object_get(json_object_get(stats, a), b);

    if (!json_is_integer(v)) {
        char *text = json_dumps(stats, JSON_COMPACT);

        fprintf(stderr, "stats: %s\n", text != NULL ? text : "?");
        free(text);
        TEST_FAIL("/stats has no integer %s.%s", a, b);
    }
    return (int64_t)json_integer_value(v);
}

static void print_stats(const char *when, json_t *stats)
{
    char *q = json_dumps(json_object_get(stats, "queue"), JSON_COMPACT);
    char *s = json_dumps(json_object_get(stats, "spool"), JSON_COMPACT);

    fprintf(stderr, "stats %s: queue %s spool %s\n", when, q != NULL ? q : "?",
            s != NULL ? s : "?");
    free(q);
    free(s);
}

/* ---- the ledger: which ids were sent, acknowledged, found -------------------------- */

struct ledger {
    uint32_t prefix;    /* first 8 hex digits of the case's ids */
    size_t cap;         /* events the case may send */
    atomic_size_t next; /* next free event index */
    uint8_t *acked;     /* by index: 1 when the edge answered 200 for it */
    uint16_t *on_topic; /* by index: times consumed from the topic */
    uint16_t *in_spool; /* by index: times read from the spool */
    size_t n_foreign;   /* records whose id is not one of the case's */
    size_t n_bad;       /* records with a wrong header, key or body */
    char first_bad[512];
};

static void ledger_init(struct ledger *l, size_t cap)
{
    memset(l, 0, sizeof(*l));
    l->prefix = new_id_prefix();
    l->cap = cap;
    atomic_init(&l->next, 0);
    l->acked = calloc(cap, 1);
    l->on_topic = calloc(cap, sizeof(l->on_topic[0]));
    l->in_spool = calloc(cap, sizeof(l->in_spool[0]));
    ASSERT_TRUE(l->acked != NULL && l->on_topic != NULL && l->in_spool != NULL);
}

static void ledger_fini(struct ledger *l)
{
    free(l->acked);
    free(l->on_topic);
    free(l->in_spool);
    memset(l, 0, sizeof(*l));
}

/* The index of an id of this ledger, or false for any other id. */
static bool ledger_index(const struct ledger *l, const char *id, size_t *idx)
{
    char want[INGEST_EVENT_ID_LEN + 1];
    unsigned long long n;
    char *end = NULL;

    if (id == NULL || strlen(id) != INGEST_EVENT_ID_LEN) {
        return false;
    }
    event_id(l->prefix, 0, want);
    if (memcmp(id, want, 24) != 0) {
        return false;
    }
    n = strtoull(id + 24, &end, 16);
    if (end == NULL || *end != '\0' || n >= l->cap) {
        return false;
    }
    *idx = (size_t)n;
    return true;
}

static void ledger_bad(struct ledger *l, const char *what, const char *detail, size_t len)
{
    if (l->n_bad++ == 0) {
        snprintf(l->first_bad, sizeof(l->first_bad), "%s: %.*s", what,
                 (int)(len < 200 ? len : 200), detail);
    }
}

/* Acknowledged events (so far). */
static size_t ledger_n_acked(const struct ledger *l)
{
    size_t n = 0, end = atomic_load(&l->next);

    for (size_t i = 0; i < end && i < l->cap; i++) {
        n += l->acked[i];
    }
    return n;
}

/*
 * POSTs one request of EVENTS_PER_REQUEST new events of the ledger and marks them acked on
 * a 200 that accepted all of them. Returns the status (0: no answer; errbuf says why).
 */
static long post_load_request(CURL *c, const char *url, const char *key, struct ledger *l,
                              struct http_buf *out, char errbuf[CURL_ERROR_SIZE])
{
    size_t first = atomic_fetch_add(&l->next, EVENTS_PER_REQUEST);
    char body[EVENTS_PER_REQUEST * 200 + 32];
    size_t len = 0;
    long status;

    ASSERT_TRUE(first + EVENTS_PER_REQUEST <= l->cap);
    len += (size_t)snprintf(body + len, sizeof(body) - len, "{\"events\":[");
    for (size_t i = first; i < first + EVENTS_PER_REQUEST; i++) {
        char id[INGEST_EVENT_ID_LEN + 1];

        event_id(l->prefix, i, id);
        len += (size_t)snprintf(body + len, sizeof(body) - len,
                                "%s{\"id\":\"%s\",\"type\":\"custom\",\"name\":\"load\","
                                "\"session_id\":\"load-%zu\",\"properties\":{\"i\":%zu}}",
                                i > first ? "," : "", id, first / EVENTS_PER_REQUEST, i);
    }
    len += (size_t)snprintf(body + len, sizeof(body) - len, "]}");
    ASSERT_TRUE(len < sizeof(body));
    status = http_call(c, url, key, body, out, errbuf);
    if (status == 200) {
        json_t *resp = json_loads(out->data, 0, NULL);

        if (resp == NULL ||
            json_integer_value(json_object_get(resp, "accepted")) != EVENTS_PER_REQUEST) {
            TEST_FAIL("200 without every event accepted: %s", out->data);
        }
        json_decref(resp);
        for (size_t i = first; i < first + EVENTS_PER_REQUEST; i++) {
            l->acked[i] = 1;
        }
    }
    return status;
}

/* ---- load: client threads posting ledger events ------------------------------------- */

struct load;

struct load_thread {
    struct load *load;
    int index;
    pthread_t thread;
    char first_failure[400];
};

struct load {
    const char *url;
    const char *key;
    struct ledger *ledger;
    int n_threads;
    int max_requests;           /* per thread */
    bool is_stop_on_failure;    /* a thread ends at its first answer other than 200 */
    int pause_after;            /* thread 0 waits for is_resumed after this many; 0: never */
    atomic_int n_ok;
    atomic_int n_failed;        /* every answer but 200, and no answer at all */
    atomic_int n_refused;       /* of those, HTTP answers (not 200) */
    atomic_bool is_stopping;
    atomic_bool is_resumed;
    atomic_long max_latency_ms;
    struct load_thread threads[MAX_LOAD_THREADS];
};

static bool is_resumed_or_stopping(void *arg)
{
    struct load *ld = arg;

    return atomic_load(&ld->is_resumed) || atomic_load(&ld->is_stopping);
}

static void *load_main(void *arg)
{
    struct load_thread *t = arg;
    struct load *ld = t->load;
    CURL *c = http_client_create();
    struct http_buf out = {0};
    char errbuf[CURL_ERROR_SIZE];

    for (int r = 0; r < ld->max_requests && !atomic_load(&ld->is_stopping); r++) {
        long t0, ms, status;

        if (t->index == 0 && ld->pause_after > 0 && r == ld->pause_after) {
            wait_for(is_resumed_or_stopping, ld, 120000);
        }
        t0 = test_now_ms();
        status = post_load_request(c, ld->url, ld->key, ld->ledger, &out, errbuf);
        ms = test_now_ms() - t0;
        if (ms > atomic_load(&ld->max_latency_ms)) {
            atomic_store(&ld->max_latency_ms, ms); /* a lost race only misreports a maximum */
        }
        if (status == 200) {
            atomic_fetch_add(&ld->n_ok, 1);
            continue;
        }
        atomic_fetch_add(&ld->n_failed, 1);
        if (status != 0) {
            atomic_fetch_add(&ld->n_refused, 1);
        }
        if (t->first_failure[0] == '\0') {
            snprintf(t->first_failure, sizeof(t->first_failure),
                     "request %d: status %ld %.100s%.150s", r, status, errbuf,
                     out.data != NULL ? out.data : "");
        }
        if (ld->is_stop_on_failure) {
            break;
        }
    }
    free(out.data);
    curl_easy_cleanup(c);
    return NULL;
}

static void load_start(struct load *ld)
{
    ASSERT_TRUE(ld->n_threads > 0 && ld->n_threads <= MAX_LOAD_THREADS);
    atomic_init(&ld->n_ok, 0);
    atomic_init(&ld->n_failed, 0);
    atomic_init(&ld->n_refused, 0);
    atomic_init(&ld->is_stopping, false);
    atomic_init(&ld->is_resumed, false);
    atomic_init(&ld->max_latency_ms, 0);
    for (int i = 0; i < ld->n_threads; i++) {
        ld->threads[i] = (struct load_thread){.load = ld, .index = i};
        ASSERT_EQ_INT(pthread_create(&ld->threads[i].thread, NULL, load_main, &ld->threads[i]),
                      0);
    }
}

static void load_join(struct load *ld)
{
    for (int i = 0; i < ld->n_threads; i++) {
        pthread_join(ld->threads[i].thread, NULL);
    }
}

/* The first failure any thread saw, or "". */
static const char *load_first_failure(const struct load *ld)
{
    for (int i = 0; i < ld->n_threads; i++) {
        if (ld->threads[i].first_failure[0] != '\0') {
            return ld->threads[i].first_failure;
        }
    }
    return "";
}

struct load_goal {
    struct load *load;
    int n;
};

static bool load_reached(void *arg)
{
    struct load_goal *g = arg;

    return atomic_load(&g->load->n_ok) + atomic_load(&g->load->n_failed) >= g->n;
}

/* ---- reading back: the topic, the spool ---------------------------------------------- */

typedef void (*message_cb)(void *user, const rd_kafka_message_t *m);

static void kafka_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value)
{
    char errstr[512];

    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        TEST_FAIL("rd_kafka_conf_set(%s=%s): %s", name, value, errstr);
    }
}

/*
 * Reads every message of topic from the beginning of each partition (assigned, no group
 * rebalance) and gives each to cb. The count to read is the sum of the high watermarks,
 * taken first: the edge only ever acknowledges after Kafka did, so the topic is final by
 * the time this runs. Returns the number of messages.
 */
static size_t consume_topic(const char *brokers, const char *topic, message_cb cb, void *user)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk = NULL;
    rd_kafka_topic_t *rkt = NULL;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_partition_list_t *parts = NULL;
    char errstr[512], group[160];
    int64_t total = 0;
    size_t received = 0;
    long deadline = test_now_ms() + CONSUME_TIMEOUT_MS;
    int n_parts;

    snprintf(group, sizeof(group), "sluice-test-edge-%ld-%08x", (long)getpid(),
             new_id_prefix());
    kafka_conf_set(conf, "bootstrap.servers", brokers);
    kafka_conf_set(conf, "group.id", group);
    kafka_conf_set(conf, "enable.auto.commit", "false");
    kafka_conf_set(conf, "auto.offset.reset", "earliest");
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        TEST_FAIL("rd_kafka_new: %s", errstr);
    }
    ASSERT_EQ_INT(rd_kafka_poll_set_consumer(rk), RD_KAFKA_RESP_ERR_NO_ERROR);
    rkt = rd_kafka_topic_new(rk, topic, NULL);
    ASSERT_TRUE(rkt != NULL);
    ASSERT_EQ_INT(rd_kafka_metadata(rk, 0, rkt, &md, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    if (md->topic_cnt != 1 || md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        TEST_FAIL("topic %s: %s", topic,
                  md->topic_cnt == 1 ? rd_kafka_err2str(md->topics[0].err) : "no metadata");
    }
    n_parts = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    ASSERT_TRUE(n_parts > 0);
    parts = rd_kafka_topic_partition_list_new(n_parts);
    for (int p = 0; p < n_parts; p++) {
        int64_t low = -1, high = -1;

        ASSERT_EQ_INT(rd_kafka_query_watermark_offsets(rk, topic, p, &low, &high, 10000),
                      RD_KAFKA_RESP_ERR_NO_ERROR);
        total += high - low;
        rd_kafka_topic_partition_list_add(parts, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    }
    ASSERT_EQ_INT(rd_kafka_assign(rk, parts), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(parts);
    while ((int64_t)received < total && test_now_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);

        if (m == NULL) {
            continue;
        }
        if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                TEST_FAIL("consumer error: %s", rd_kafka_message_errstr(m));
            }
            rd_kafka_message_destroy(m);
            continue;
        }
        cb(user, m);
        received++;
        rd_kafka_message_destroy(m);
    }
    if ((int64_t)received != total) {
        TEST_FAIL("topic %s: consumed %zu of %lld messages within %d ms", topic, received,
                  (long long)total, CONSUME_TIMEOUT_MS);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return received;
}

/* A header as a NUL-terminated string in buf, or NULL when absent or too long. */
static const char *header_str(const rd_kafka_message_t *m, const char *name, char *buf,
                              size_t cap)
{
    rd_kafka_headers_t *hdrs = NULL;
    const void *val = NULL;
    size_t size = 0;

    if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        rd_kafka_header_get_last(hdrs, name, &val, &size) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        size >= cap) {
        return NULL;
    }
    memcpy(buf, val, size);
    buf[size] = '\0';
    return buf;
}

static bool is_str(const char *a, const char *b)
{
    return a != NULL && b != NULL && strcmp(a, b) == 0;
}

static size_t header_count(const rd_kafka_message_t *m)
{
    rd_kafka_headers_t *hdrs = NULL;

    return rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR
               ? rd_kafka_header_cnt(hdrs)
               : 0;
}

typedef void (*spool_record_cb)(void *user, const struct ingest_producer_msg *m);

/*
 * Reads every record of the spool after its committed cursor (the daemon must be stopped:
 * the folder is locked by one process) without committing, decodes each with
 * ingest_queue_decode and gives it to cb. st receives the spool's counters after the read.
 */
static size_t read_spool(const char *dir, spool_record_cb cb, void *user,
                         struct ingest_spool_stats *st)
{
    struct ingest_spool *sp = NULL;
    struct ingest_spool_batch batch;
    struct sl_err err;
    size_t n = 0;

    sl_err_clear(&err);
    ASSERT_OK(ingest_spool_open(&sp, dir, SPOOL_MAX_BYTES, SPOOL_SEGMENT_BYTES, &err), &err);
    ingest_spool_batch_init(&batch);
    /* Bounded: each round reads at least one record, and there are at most this many. */
    for (int round = 0; round < 1000000; round++) {
        ASSERT_OK(ingest_spool_read(sp, &batch, 1000, 4u << 20, &err), &err);
        if (batch.n == 0) {
            break;
        }
        for (size_t i = 0; i < batch.n; i++) {
            struct ingest_producer_msg m;
            char tenant[TENANT_ID_MAX];

            ASSERT_EQ_INT(ingest_queue_decode(batch.recs[i].data, batch.recs[i].len, &m, tenant,
                                              sizeof(tenant)),
                          0);
            cb(user, &m);
            n++;
        }
    }
    ingest_spool_stats(sp, st);
    ingest_spool_batch_fini(&batch);
    ingest_spool_close(sp);
    return n;
}

/* Where ledger records are checked: the tenant the case expects on each. */
struct ledger_reader {
    struct ledger *ledger;
    const char *tenant_id;
};

/* The "id" and "session_id" of a load event's JSON value; false when it is not JSON. */
static bool load_event_fields(const void *value, size_t len, char *id, size_t id_cap,
                              char *session, size_t session_cap)
{
    json_t *root = json_loadb(value, len, 0, NULL);
    const char *s;

    if (root == NULL) {
        return false;
    }
    s = json_string_value(json_object_get(root, "id"));
    snprintf(id, id_cap, "%s", s != NULL ? s : "");
    s = json_string_value(json_object_get(root, "session_id"));
    snprintf(session, session_cap, "%s", s != NULL ? s : "");
    json_decref(root);
    return true;
}

/* Counts a topic message into the ledger; checks its headers and its key (session). */
static void count_topic_message(void *user, const rd_kafka_message_t *m)
{
    struct ledger_reader *r = user;
    struct ledger *l = r->ledger;
    char id[64], session[64], hbuf[TENANT_ID_MAX], key[64];
    size_t idx;

    if (!load_event_fields(m->payload, m->len, id, sizeof(id), session, sizeof(session))) {
        ledger_bad(l, "a message is not JSON", m->payload != NULL ? m->payload : "", m->len);
        return;
    }
    if (!ledger_index(l, id, &idx)) {
        l->n_foreign++;
        return;
    }
    l->on_topic[idx]++;
    snprintf(key, sizeof(key), "%.*s", (int)m->key_len,
             m->key != NULL ? (const char *)m->key : "");
    if (strcmp(key, session) != 0) {
        ledger_bad(l, "key is not the session id (strategy session)", id, strlen(id));
    }
    if (header_count(m) != 2 || !is_str(header_str(m, "sluice-schema", hbuf, sizeof(hbuf)), "1") ||
        !is_str(header_str(m, "sluice-tenant", hbuf, sizeof(hbuf)), r->tenant_id)) {
        ledger_bad(l, "headers are not sluice-tenant and sluice-schema", id, strlen(id));
    }
}

static void count_spool_record(void *user, const struct ingest_producer_msg *m)
{
    struct ledger_reader *r = user;
    struct ledger *l = r->ledger;
    char id[64], session[64];
    size_t idx;

    if (!load_event_fields(m->value, m->value_len, id, sizeof(id), session, sizeof(session))) {
        ledger_bad(l, "a spool record's value is not JSON", m->value, m->value_len);
        return;
    }
    if (!ledger_index(l, id, &idx)) {
        l->n_foreign++;
        return;
    }
    l->in_spool[idx]++;
    if (strcmp(m->tenant_id, r->tenant_id) != 0) {
        ledger_bad(l, "a spool record has another tenant", m->tenant_id, strlen(m->tenant_id));
    }
}

/* What became of the acknowledged events. */
struct tally {
    size_t n_sent;        /* events posted */
    size_t n_acked;       /* answered 200 */
    size_t n_missing;     /* acked and found nowhere */
    size_t n_dup_events;  /* extra copies on the topic (count - 1 summed) */
    size_t n_dup_ids;     /* ids on the topic more than once */
    size_t n_unacked_found; /* not acked but found (accepted as the connection died) */
    size_t n_spool_dups;  /* ids more than once in the spool */
    char first_missing[INGEST_EVENT_ID_LEN + 1];
};

static void ledger_tally(const struct ledger *l, struct tally *t)
{
    size_t end = atomic_load(&l->next);

    memset(t, 0, sizeof(*t));
    t->n_sent = end < l->cap ? end : l->cap;
    for (size_t i = 0; i < t->n_sent; i++) {
        bool is_found = l->on_topic[i] > 0 || l->in_spool[i] > 0;

        t->n_acked += l->acked[i];
        if (l->acked[i] && !is_found) {
            if (t->n_missing++ == 0) {
                event_id(l->prefix, i, t->first_missing);
            }
        }
        if (!l->acked[i] && is_found) {
            t->n_unacked_found++;
        }
        if (l->on_topic[i] > 1) {
            t->n_dup_ids++;
            t->n_dup_events += l->on_topic[i] - 1u;
        }
        if (l->in_spool[i] > 1) {
            t->n_spool_dups++;
        }
    }
}

/* ---- case 1: events on the topic exactly as normalized --------------------------------- */

#define N_SAMPLES 5

/* One event of the batch: what is sent and what the edge must make of its time. */
struct sample {
    json_t *input;      /* the event as posted */
    char ts_want[40];   /* the normalized ts; "" when it must equal received_at */
};

/* The normalized event the edge must produce for input (received_at left out). */
static json_t *expected_event(const struct sample *s, const char *tenant_id, const char *ua)
{
    static const char *const optional[] = {"name", "session_id", "anonymous_id", "user_id"};
    json_t *in = s->input;
    json_t *in_ctx = json_object_get(in, "context");
    const char *type = json_string_value(json_object_get(in, "type"));
    json_t *out = json_object();
    json_t *ctx = json_object();
    const char *key;
    json_t *v;

    json_object_set_new(out, "schema_version", json_integer(1));
    json_object_set(out, "id", json_object_get(in, "id"));
    json_object_set_new(out, "tenant_id", json_string(tenant_id));
    json_object_set_new(out, "type", json_string(type));
    if (s->ts_want[0] != '\0') {
        json_object_set_new(out, "ts", json_string(s->ts_want));
    }
    for (size_t i = 0; i < sizeof(optional) / sizeof(optional[0]); i++) {
        v = json_object_get(in, optional[i]);
        json_object_set_new(out, optional[i], v != NULL ? json_incref(v) : json_null());
    }
    if (strcmp(type, "log") == 0) {
        v = json_object_get(in, "severity");
        json_object_set_new(out, "severity", v != NULL ? json_incref(v) : json_string("info"));
        v = json_object_get(in, "source");
        json_object_set_new(out, "source", v != NULL ? json_incref(v) : json_null());
        json_object_set(out, "message", json_object_get(in, "message"));
    }
    v = json_object_get(in, "properties");
    json_object_set_new(out, "properties", v != NULL ? json_incref(v) : json_object());
    /* user_agent and ip are always there: from the event, else from the request. */
    v = json_object_get(in_ctx, "user_agent");
    json_object_set_new(ctx, "user_agent", v != NULL ? json_incref(v) : json_string(ua));
    v = json_object_get(in_ctx, "ip");
    json_object_set_new(ctx, "ip", v != NULL ? json_incref(v) : json_string("127.0.0.1"));
    json_object_foreach(in_ctx, key, v) {
        json_object_set(ctx, key, v);
    }
    json_object_set_new(out, "context", ctx);
    json_object_set_new(out, "flags", json_array());
    return out;
}

struct normalized_check {
    const char *strategy;
    const char *tenant_id;
    struct sample *samples;
    size_t n_samples;
    int *seen;
    int64_t posted_from_ms; /* wall clock around the request: received_at falls inside */
    int64_t posted_to_ms;
};

static void check_normalized_message(void *user, const rd_kafka_message_t *m)
{
    struct normalized_check *c = user;
    char hbuf[TENANT_ID_MAX], key[128];
    json_error_t jerr;
    json_t *got = json_loadb(m->payload, m->len, 0, &jerr);
    const char *id = json_string_value(json_object_get(got, "id"));
    const char *received = json_string_value(json_object_get(got, "received_at"));
    const char *session = NULL;
    int64_t received_ms = parse_utc_ms(received);
    json_t *want = NULL;
    size_t k;
    char *got_text = NULL, *want_text = NULL;

    if (got == NULL) {
        TEST_FAIL("message is not JSON (%s): %.*s", jerr.text, (int)m->len,
                  (const char *)m->payload);
    }
    for (k = 0; k < c->n_samples; k++) {
        if (id != NULL &&
            strcmp(id, json_string_value(json_object_get(c->samples[k].input, "id"))) == 0) {
            break;
        }
    }
    if (k == c->n_samples) {
        TEST_FAIL("a message that was not posted: %.*s", (int)m->len, (const char *)m->payload);
    }
    c->seen[k]++;

    /* received_at: the edge's clock when the request came, in the normalized form. */
    if (received_ms < c->posted_from_ms - 1000 || received_ms > c->posted_to_ms + 1000) {
        TEST_FAIL("%s: received_at %s is not within the request (%lld..%lld)", id,
                  received ? received : "(null)", (long long)c->posted_from_ms,
                  (long long)c->posted_to_ms);
    }
    if (c->samples[k].ts_want[0] == '\0') {
        ASSERT_EQ_STR(json_string_value(json_object_get(got, "ts")), received);
    }
    want = expected_event(&c->samples[k], c->tenant_id, "sluice-edge-test/1.0");
    if (c->samples[k].ts_want[0] == '\0') {
        json_object_set_new(want, "ts", json_string(received));
    }
    json_object_del(got, "received_at");
    if (!json_equal(got, want)) {
        got_text = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);
        want_text = json_dumps(want, JSON_COMPACT | JSON_SORT_KEYS);
        TEST_FAIL("message value is not the normalized event:\n got  %s\n want %s", got_text,
                  want_text);
    }

    /* The key follows SLUICE_KAFKA_PARTITION_KEY. */
    session = json_string_value(json_object_get(c->samples[k].input, "session_id"));
    if (strcmp(c->strategy, "random") == 0) {
        if (m->key != NULL || m->key_len != 0) {
            TEST_FAIL("%s: strategy random but key '%.*s'", id, (int)m->key_len,
                      (const char *)m->key);
        }
    }
    else {
        const char *want_key =
            strcmp(c->strategy, "session") == 0 && session != NULL ? session : c->tenant_id;

        ASSERT_TRUE(m->key != NULL && m->key_len < sizeof(key));
        snprintf(key, sizeof(key), "%.*s", (int)m->key_len, (const char *)m->key);
        ASSERT_EQ_STR(key, want_key);
    }
    ASSERT_EQ_INT(header_count(m), 2);
    ASSERT_EQ_STR(header_str(m, "sluice-tenant", hbuf, sizeof(hbuf)), c->tenant_id);
    ASSERT_EQ_STR(header_str(m, "sluice-schema", hbuf, sizeof(hbuf)), "1");
    json_decref(want);
    json_decref(got);
}

/* The batch of case 1: one event of each kind, with every field a client may send. */
static size_t make_samples(struct sample *s, uint32_t prefix, size_t first)
{
    int64_t base_ms = wall_ms() - 3600 * 1000; /* an hour ago: no clamp, no rejection */
    char id[INGEST_EVENT_ID_LEN + 1], ts[40];
    size_t n = 0;

    memset(s, 0, N_SAMPLES * sizeof(*s));
    event_id(prefix, first + n, id);
    format_rfc3339(base_ms + 123, 0, ts, sizeof(ts));
    s[n].input = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:{s:s, s:i, s:{s:[i, i, {s:n}]}, s:f, s:b}, "
        "s:{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}}",
        "id", id, "type", "pageview", "session_id", "sess-a", "anonymous_id", "anon-1",
        "timestamp", ts, "properties", "plan", "pro", "n", 3, "nested", "a", 1, 2, "b", "f", 1.5,
        "t", 1, "context", "url", "https://example.com/pricing?x=1", "path", "/pricing",
        "referrer", "https://search.example/", "title", "Pricing", "screen", "1920x1080",
        "viewport", "1280x720", "timezone", "Europe/Berlin", "language", "de-DE", "ip",
        "203.0.113.7", "user_agent", "Mozilla/5.0 (X11; Linux x86_64) sluice-test");
    snprintf(s[n].ts_want, sizeof(s[n].ts_want), "%s", ts);
    n++;

    /* An offset timestamp is normalized to UTC; ip and user agent come from the request. */
    event_id(prefix, first + n, id);
    format_rfc3339(base_ms + 250, 120, ts, sizeof(ts));
    s[n].input = json_pack("{s:s, s:s, s:s, s:s, s:s, s:{s:i}, s:{s:s}}", "id", id, "type",
                           "click", "name", "signup-button", "session_id", "sess-a",
                           "timestamp", ts, "properties", "x", 10, "context", "path",
                           "/pricing");
    format_rfc3339(base_ms + 250, 0, s[n].ts_want, sizeof(s[n].ts_want));
    n++;

    /* No timestamp: ts is the receive time. */
    event_id(prefix, first + n, id);
    s[n].input = json_pack("{s:s, s:s, s:s, s:s, s:s, s:{s:f, s:s, s:s}}", "id", id, "type",
                           "custom", "name", "purchase", "session_id", "sess-b", "user_id",
                           "user-42", "properties", "amount", 19.99, "currency", "EUR",
                           "note", "h\xc3\xa9llo \xe2\x9c\x93");
    n++;

    /* No session: keyed by the tenant even with the session strategy. */
    event_id(prefix, first + n, id);
    format_rfc3339(base_ms + 999, 0, ts, sizeof(ts));
    s[n].input = json_pack("{s:s, s:s, s:s, s:s, s:{s:s}}", "id", id, "type", "identify",
                           "user_id", "user-42", "timestamp", ts, "properties", "email",
                           "a@example.com");
    snprintf(s[n].ts_want, sizeof(s[n].ts_want), "%s", ts);
    n++;

    event_id(prefix, first + n, id);
    format_rfc3339(base_ms + 5, 0, ts, sizeof(ts));
    s[n].input = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "id", id, "type", "log",
                           "severity", "warn", "source", "checkout", "message",
                           "payment retry 2/3", "session_id", "sess-b", "timestamp", ts);
    snprintf(s[n].ts_want, sizeof(s[n].ts_want), "%s", ts);
    n++;
    for (size_t i = 0; i < n; i++) {
        ASSERT_TRUE(s[i].input != NULL);
    }
    return n;
}

static void check_normalized_strategy(struct fixture *f, const char *brokers,
                                      const char *strategy, uint32_t prefix, size_t first)
{
    struct sample samples[N_SAMPLES];
    int seen[N_SAMPLES] = {0};
    struct edge e;
    struct edge_opts o = {0};
    char topic[200];
    json_t *events = json_array();
    json_t *body_obj = NULL;
    char *body = NULL;
    CURL *c = http_client_create();
    struct http_buf out = {0};
    char errbuf[CURL_ERROR_SIZE];
    struct normalized_check chk;
    json_t *resp = NULL;
    size_t n = make_samples(samples, prefix, first);
    size_t consumed;
    long status, t0 = test_now_ms();

    unique_topic(strategy, topic, sizeof(topic));
    o = (struct edge_opts){.brokers = brokers, .topic = topic, .partition_key = strategy};
    edge_start(&e, f, &o);
    for (size_t i = 0; i < n; i++) {
        json_array_append(events, samples[i].input);
    }
    body_obj = json_pack("{s:o}", "events", events);
    body = json_dumps(body_obj, JSON_COMPACT);
    ASSERT_TRUE(body != NULL);

    chk = (struct normalized_check){.strategy = strategy, .tenant_id = f->tenant_id,
                                    .samples = samples, .n_samples = n, .seen = seen};
    chk.posted_from_ms = wall_ms();
    status = http_call(c, e.ingest_url, f->key, body, &out, errbuf);
    chk.posted_to_ms = wall_ms();
    if (status != 200) {
        edge_dump_log(&e);
        TEST_FAIL("POST /ingest: status %ld (%s) %s", status, errbuf, out.data);
    }
    resp = json_loads(out.data, 0, NULL);
    ASSERT_TRUE(resp != NULL);
    ASSERT_EQ_INT(json_integer_value(json_object_get(resp, "accepted")), (long long)n);
    ASSERT_EQ_INT(json_integer_value(json_object_get(resp, "rejected")), 0);
    ASSERT_EQ_INT(json_array_size(json_object_get(resp, "errors")), 0);
    edge_stop(&e, STOP_TIMEOUT_MS);

    consumed = consume_topic(brokers, topic, check_normalized_message, &chk);
    /* Nothing extra: exactly the posted events, each once. */
    ASSERT_EQ_INT(consumed, n);
    for (size_t i = 0; i < n; i++) {
        if (seen[i] != 1) {
            TEST_FAIL("event %zu (%s) on the topic %d times, want 1", i,
                      json_string_value(json_object_get(samples[i].input, "id")), seen[i]);
        }
    }
    fprintf(stderr, "strategy %s: %zu events on %s as normalized, in %ld ms\n", strategy, n,
            topic, test_now_ms() - t0);
    json_decref(resp);
    json_decref(body_obj);
    for (size_t i = 0; i < n; i++) {
        json_decref(samples[i].input);
    }
    free(body);
    free(out.data);
    curl_easy_cleanup(c);
    edge_fini(&e);
}

static void test_edge_kafka_events_as_normalized(void)
{
    const char *brokers = test_env_require("SLUICE_TEST_KAFKA_BROKERS");
    static const char *const strategies[] = {"tenant", "session", "random"};
    uint32_t prefix = new_id_prefix();
    struct fixture f;

    fixture_init(&f);
    for (size_t i = 0; i < sizeof(strategies) / sizeof(strategies[0]); i++) {
        check_normalized_strategy(&f, brokers, strategies[i], prefix, i * 16);
    }
    fixture_fini(&f);
}

/* ---- case 2: the broker stopped mid-stream ------------------------------------------- */

struct drained {
    struct edge *edge;
    json_t *last;
};

static bool is_spool_drained(void *arg)
{
    struct drained *d = arg;

    json_decref(d->last);
    d->last = edge_stats(d->edge);
    return stats_int(d->last, "spool", "records_pending") == 0 &&
           stats_int(d->last, "queue", "inflight_events") == 0;
}

/*
 * Why duplicates may appear on the topic, and why that is fine: a message the broker
 * wrote but whose acknowledgement never reached the producer (the broker died between
 * the two) looks exactly like one that was lost. After SLUICE_KAFKA_DELIVERY_TIMEOUT_MS the
 * edge must assume the worst, spool it and answer 200, and the replayer sends it again:
 * a second copy. The idempotent producer only dedupes retries within one producer
 * epoch and sequence; a message that timed out is gone from librdkafka and its resend
 * from the spool is a new message. Exactly once on the topic would need a transaction
 * (or never giving up, which breaks the bounded answer time). So the topic is at least
 * once, duplicates are limited to the events in flight when the broker died, and the
 * loader's ClickHouse tables (ReplacingMergeTree ordered by the event id) collapse the
 * copies into one row, so counts are not doubled.
 */
static void test_edge_kafka_broker_stopped_mid_stream(void)
{
    enum { N_REQUESTS = 200, STOP_AFTER = 50, PAUSE_AFTER = 150 };
    struct fixture f;
    struct ledger l;
    struct edge e;
    struct load ld;
    struct load_goal goal;
    struct ledger_reader reader;
    struct tally t;
    struct drained drain = {0};
    char topic[200], addr_before[128];
    json_t *stats = NULL;
    long t_case = test_now_ms(), t0, stop_ms, start_ms, drain_ms;
    int ok_before_stop, ok_during_stop;

    test_env_require("SLUICE_TEST_KAFKA_BROKERS"); /* Kafka is set up on this machine */
    broker_start();
    snprintf(addr_before, sizeof(addr_before), "%s", g_broker.addr);
    fixture_init(&f);
    ledger_init(&l, N_REQUESTS * EVENTS_PER_REQUEST);
    unique_topic("outage", topic, sizeof(topic));
    /* Through the stable bootstrap address: see struct proxy. */
    edge_start(&e, &f,
               &(struct edge_opts){.brokers = g_broker.bootstrap, .topic = topic,
                                   .partition_key = "session", .delivery_timeout_ms = 2000});

    /* One client posting in a loop; it holds at PAUSE_AFTER until the broker is down, so
     * at least N_REQUESTS - PAUSE_AFTER requests come after the stop. */
    memset(&ld, 0, sizeof(ld));
    ld = (struct load){.url = e.ingest_url, .key = f.key, .ledger = &l, .n_threads = 1,
                       .max_requests = N_REQUESTS, .pause_after = PAUSE_AFTER};
    load_start(&ld);
    goal = (struct load_goal){.load = &ld, .n = STOP_AFTER};
    ASSERT_TRUE(wait_for(load_reached, &goal, 60000));
    ok_before_stop = atomic_load(&ld.n_ok);
    stop_ms = broker_stop();
    ok_during_stop = atomic_load(&ld.n_ok) - ok_before_stop;
    atomic_store(&ld.is_resumed, true);
    load_join(&ld);
    fprintf(stderr, "outage: %d requests before the stop, %d while kafka.sh stop ran (%ld ms), "
            "%d after; slowest answer %ld ms\n", ok_before_stop, ok_during_stop, stop_ms,
            atomic_load(&ld.n_ok) - ok_before_stop - ok_during_stop,
            atomic_load(&ld.max_latency_ms));
    if (atomic_load(&ld.n_failed) != 0) {
        edge_dump_log(&e);
        TEST_FAIL("%d requests failed during the outage; first: %s", atomic_load(&ld.n_failed),
                  load_first_failure(&ld));
    }
    ASSERT_EQ_INT(atomic_load(&ld.n_ok), N_REQUESTS);

    /* The edge spooled what Kafka could not take. */
    stats = edge_stats(&e);
    print_stats("broker down", stats);
    ASSERT_TRUE(stats_int(stats, "queue", "spooled_events") > 0);
    ASSERT_TRUE(stats_int(stats, "spool", "records_pending") > 0);
    json_decref(stats);

    /* The broker comes back on the same address; the replayer drains the spool. */
    t0 = test_now_ms();
    broker_start();
    start_ms = test_now_ms() - t0;
    if (strcmp(g_broker.addr, addr_before) != 0) {
        fprintf(stderr, "the broker came back on %s, not %s (kafka.sh did not keep the port)\n",
                g_broker.addr, addr_before);
    }
    t0 = test_now_ms();
    drain.edge = &e;
    if (!wait_for(is_spool_drained, &drain, DRAIN_TIMEOUT_MS)) {
        print_stats("not drained", drain.last);
        edge_dump_log(&e);
        TEST_FAIL("the spool was not replayed within %d ms of the broker's return",
                  DRAIN_TIMEOUT_MS);
    }
    drain_ms = test_now_ms() - t0;
    print_stats("drained", drain.last);
    ASSERT_TRUE(stats_int(drain.last, "queue", "replayed_events") > 0);
    json_decref(drain.last);
    edge_stop(&e, STOP_TIMEOUT_MS);

    reader = (struct ledger_reader){.ledger = &l, .tenant_id = f.tenant_id};
    consume_topic(g_broker.addr, topic, count_topic_message, &reader);
    ledger_tally(&l, &t);
    fprintf(stderr, "outage: %zu events acknowledged, %zu missing, %zu duplicate copies on the "
            "topic (%zu ids); broker back in %ld ms, spool replayed in %ld ms; case %ld ms\n",
            t.n_acked, t.n_missing, t.n_dup_events, t.n_dup_ids, start_ms, drain_ms,
            test_now_ms() - t_case);
    if (l.n_bad > 0) {
        TEST_FAIL("%zu bad messages; first: %s", l.n_bad, l.first_bad);
    }
    ASSERT_EQ_INT(l.n_foreign, 0);
    if (t.n_missing > 0) {
        TEST_FAIL("%zu acknowledged events are not on the topic, first %s", t.n_missing,
                  t.first_missing);
    }
    ASSERT_EQ_INT(t.n_acked, N_REQUESTS * EVENTS_PER_REQUEST);
    /* Only events in flight when the broker died may come twice: a few requests' worth. */
    ASSERT_TRUE(t.n_dup_events <= t.n_acked / 10);
    edge_fini(&e);
    ledger_fini(&l);
    fixture_fini(&f);
}

/* ---- case 3: kill -9 under load ------------------------------------------------------- */

/*
 * Posts from n_threads clients until at least kill_after requests were acknowledged, then
 * kill -9s the daemon mid-stream and lets the clients run into the dead socket.
 */
static void post_and_kill(struct edge *e, struct fixture *f, struct ledger *l, int n_threads,
                          int kill_after)
{
    struct load ld;
    struct load_goal goal;

    memset(&ld, 0, sizeof(ld));
    ld = (struct load){.url = e->ingest_url, .key = f->key, .ledger = l,
                       .n_threads = n_threads,
                       .max_requests = (int)(l->cap / EVENTS_PER_REQUEST / (size_t)n_threads) - 1,
                       .is_stop_on_failure = true};
    load_start(&ld);
    goal = (struct load_goal){.load = &ld, .n = kill_after};
    if (!wait_for(load_reached, &goal, 60000)) {
        atomic_store(&ld.is_stopping, true);
        load_join(&ld);
        TEST_FAIL("only %d requests answered in 60 s", atomic_load(&ld.n_ok));
    }
    edge_kill(e);
    load_join(&ld);
    fprintf(stderr, "kill -9 after %d acknowledged requests (%d failed as it died)\n",
            atomic_load(&ld.n_ok), atomic_load(&ld.n_failed));
    /* The only failures are the requests the dead daemon never answered. */
    if (atomic_load(&ld.n_refused) > 0) {
        TEST_FAIL("%d requests were refused before the kill; first: %s",
                  atomic_load(&ld.n_refused), load_first_failure(&ld));
    }
}

/* One more request after the restart: the daemon takes new events on the old spool. */
static void post_one(struct edge *e, struct fixture *f, struct ledger *l)
{
    CURL *c = http_client_create();
    struct http_buf out = {0};
    char errbuf[CURL_ERROR_SIZE];
    long status = post_load_request(c, e->ingest_url, f->key, l, &out, errbuf);

    if (status != 200) {
        edge_dump_log(e);
        TEST_FAIL("POST after restart: status %ld (%s) %s", status, errbuf,
                  out.data ? out.data : "");
    }
    free(out.data);
    curl_easy_cleanup(c);
}

static void test_edge_kafka_kill9_spool_only(void)
{
    struct fixture f;
    struct ledger l;
    struct edge e;
    struct ledger_reader reader;
    struct ingest_spool_stats st;
    struct tally t;
    json_t *stats = NULL;
    size_t n_records, n_acked;
    long t_case = test_now_ms();

    fixture_init(&f);
    ledger_init(&l, 4 * 400 * EVENTS_PER_REQUEST);
    edge_start(&e, &f, &(struct edge_opts){.brokers = ""});
    post_and_kill(&e, &f, &l, 4, 100);
    n_acked = ledger_n_acked(&l);
    edge_fini(&e);

    /* The restart opens the same spool: everything acknowledged is pending there. */
    edge_start(&e, &f, &(struct edge_opts){.brokers = ""});
    stats = edge_stats(&e);
    print_stats("after kill -9 and restart", stats);
    ASSERT_TRUE(stats_int(stats, "spool", "records_pending") >= (int64_t)n_acked);
    ASSERT_EQ_INT(stats_int(stats, "spool", "corrupt_records"), 0);
    json_decref(stats);
    post_one(&e, &f, &l);
    edge_stop(&e, STOP_TIMEOUT_MS);
    edge_fini(&e);

    reader = (struct ledger_reader){.ledger = &l, .tenant_id = f.tenant_id};
    n_records = read_spool(f.spool_dir, count_spool_record, &reader, &st);
    ledger_tally(&l, &t);
    fprintf(stderr, "kill -9, spool only: %zu acknowledged events, %zu spool records (%zu "
            "accepted as it died), %zu missing; torn tail %llu bytes; case %ld ms\n",
            t.n_acked, n_records, t.n_unacked_found, t.n_missing,
            (unsigned long long)st.torn_tail_bytes_dropped, test_now_ms() - t_case);
    if (l.n_bad > 0) {
        TEST_FAIL("%zu bad spool records; first: %s", l.n_bad, l.first_bad);
    }
    ASSERT_EQ_INT(l.n_foreign, 0);
    if (t.n_missing > 0) {
        TEST_FAIL("%zu acknowledged events are not in the spool, first %s", t.n_missing,
                  t.first_missing);
    }
    /* Each request is appended once: no copies in the spool. */
    ASSERT_EQ_INT(t.n_spool_dups, 0);
    ASSERT_EQ_INT(st.corrupt_records, 0);
    ASSERT_TRUE(t.n_acked >= n_acked + EVENTS_PER_REQUEST);
    ledger_fini(&l);
    fixture_fini(&f);
}

static void test_edge_kafka_kill9_with_broker(void)
{
    const char *brokers = test_env_require("SLUICE_TEST_KAFKA_BROKERS");
    struct fixture f;
    struct ledger l;
    struct edge e;
    struct ledger_reader reader;
    struct ingest_spool_stats st;
    struct drained drain = {0};
    struct tally t;
    char topic[200];
    size_t n_records;
    long t_case = test_now_ms();
    struct edge_opts o;

    fixture_init(&f);
    ledger_init(&l, 4 * 400 * EVENTS_PER_REQUEST);
    unique_topic("kill9", topic, sizeof(topic));
    o = (struct edge_opts){.brokers = brokers, .topic = topic, .partition_key = "session",
                           .delivery_timeout_ms = 5000};
    edge_start(&e, &f, &o);
    post_and_kill(&e, &f, &l, 4, 100);
    edge_fini(&e);

    /* Restart on the same spool; let it replay whatever the spool holds, then stop it. */
    edge_start(&e, &f, &o);
    post_one(&e, &f, &l);
    drain.edge = &e;
    if (!wait_for(is_spool_drained, &drain, DRAIN_TIMEOUT_MS)) {
        print_stats("not drained", drain.last);
        TEST_FAIL("the restarted edge did not settle within %d ms", DRAIN_TIMEOUT_MS);
    }
    print_stats("restarted", drain.last);
    json_decref(drain.last);
    edge_stop(&e, STOP_TIMEOUT_MS);
    edge_fini(&e);

    reader = (struct ledger_reader){.ledger = &l, .tenant_id = f.tenant_id};
    n_records = read_spool(f.spool_dir, count_spool_record, &reader, &st);
    consume_topic(brokers, topic, count_topic_message, &reader);
    ledger_tally(&l, &t);
    fprintf(stderr, "kill -9 with a broker: %zu acknowledged events, %zu still spooled, %zu "
            "accepted as it died, %zu missing, %zu duplicate copies on the topic; case %ld ms\n",
            t.n_acked, n_records, t.n_unacked_found, t.n_missing, t.n_dup_events,
            test_now_ms() - t_case);
    if (l.n_bad > 0) {
        TEST_FAIL("%zu bad records; first: %s", l.n_bad, l.first_bad);
    }
    ASSERT_EQ_INT(l.n_foreign, 0);
    if (t.n_missing > 0) {
        TEST_FAIL("%zu acknowledged events are neither on the topic nor in the spool, first %s",
                  t.n_missing, t.first_missing);
    }
    ledger_fini(&l);
    fixture_fini(&f);
}

/* ---- case 4: SIGTERM while requests wait for a hung broker ---------------------------- */

struct waiting {
    struct edge *edge;
    int64_t min_events;
};

static bool are_events_waiting(void *arg)
{
    struct waiting *w = arg;
    json_t *stats = edge_stats(w->edge);
    bool is_waiting = stats_int(stats, "queue", "inflight_events") >= w->min_events;

    json_decref(stats);
    return is_waiting;
}

/*
 * The broker is SIGSTOP'ed: connections stay open and nothing is answered, as with a hung
 * broker or a partition. (A broker shut down cleanly closes its connections, librdkafka
 * reports all brokers down at once and the edge spools without waiting: case 2.) So every
 * request waits for Kafka, up to a delivery timeout far longer than the shutdown timeout,
 * when SIGTERM arrives: the edge must stop taking requests, give Kafka the shutdown
 * timeout, spool the rest, answer the waiting clients, and exit 0.
 */
static void test_edge_kafka_sigterm_while_waiting(void)
{
    /* The margin is less than the timeout itself: waiting it out twice (drain, then flush)
     * does not pass. */
    enum { SHUTDOWN_MS = 3000, MARGIN_MS = 2000, N_THREADS = 4 };
    struct fixture f;
    struct ledger l, warm;
    struct edge e;
    struct load ld;
    struct ledger_reader reader;
    struct ingest_spool_stats st;
    struct waiting w;
    struct tally t;
    char topic[200];
    size_t n_records;
    long t0, exit_ms, t_case = test_now_ms();

    test_env_require("SLUICE_TEST_KAFKA_BROKERS"); /* Kafka is set up on this machine */
    broker_start();
    fixture_init(&f);
    ledger_init(&l, N_THREADS * 50 * EVENTS_PER_REQUEST);
    ledger_init(&warm, EVENTS_PER_REQUEST);
    unique_topic("sigterm", topic, sizeof(topic));
    edge_start(&e, &f,
               &(struct edge_opts){.brokers = g_broker.addr, .topic = topic,
                                   .partition_key = "session", .delivery_timeout_ms = 60000,
                                   .shutdown_ms = SHUTDOWN_MS});
    /* One request while the broker answers: the producer is connected and healthy. */
    post_one(&e, &f, &warm);
    broker_pause();

    memset(&ld, 0, sizeof(ld));
    ld = (struct load){.url = e.ingest_url, .key = f.key, .ledger = &l, .n_threads = N_THREADS,
                       .max_requests = 49, .is_stop_on_failure = true};
    load_start(&ld);
    w = (struct waiting){.edge = &e, .min_events = N_THREADS * EVENTS_PER_REQUEST};
    if (!wait_for(are_events_waiting, &w, 20000)) {
        atomic_store(&ld.is_stopping, true);
        edge_fini(&e);
        load_join(&ld);
        TEST_FAIL("the clients' events never waited for Kafka");
    }
    ASSERT_EQ_INT(atomic_load(&ld.n_ok), 0); /* nothing answered: all wait for Kafka */

    t0 = test_now_ms();
    ASSERT_EQ_INT(kill(e.d.pid, SIGTERM), 0);
    test_daemon_wait_exit(&e.d, SHUTDOWN_MS * 3 + 30000);
    exit_ms = test_now_ms() - t0;
    edge_reaped(&e);
    atomic_store(&ld.is_stopping, true);
    load_join(&ld);
    fprintf(stderr, "SIGTERM with %d clients waiting on a hung broker: exit %d after %ld ms "
            "(shutdown timeout %d ms); %d requests answered 200, %d not (%s)\n", N_THREADS,
            e.d.status, exit_ms, SHUTDOWN_MS, atomic_load(&ld.n_ok), atomic_load(&ld.n_failed),
            load_first_failure(&ld));
    if (e.d.status != 0) {
        edge_dump_log(&e);
        TEST_FAIL("sluice-ingest exited with %d after SIGTERM", e.d.status);
    }
    /* The waiting clients got their answer (their events were spooled at shutdown), and
     * nothing else was taken after SIGTERM: each client's next request on its kept-alive
     * connection was refused. */
    if (atomic_load(&ld.n_ok) != N_THREADS) {
        edge_dump_log(&e);
        TEST_FAIL("%d requests answered 200, want the %d that waited at SIGTERM (first "
                  "refusal: %s)", atomic_load(&ld.n_ok), N_THREADS, load_first_failure(&ld));
    }
    if (exit_ms > SHUTDOWN_MS + MARGIN_MS) {
        edge_dump_log(&e);
        TEST_FAIL("exit took %ld ms, more than SLUICE_SHUTDOWN_TIMEOUT_MS=%d plus %d ms",
                  exit_ms, SHUTDOWN_MS, MARGIN_MS);
    }
    broker_resume();
    edge_fini(&e);

    reader = (struct ledger_reader){.ledger = &l, .tenant_id = f.tenant_id};
    n_records = read_spool(f.spool_dir, count_spool_record, &reader, &st);
    ledger_tally(&l, &t);
    fprintf(stderr, "SIGTERM: %zu acknowledged events, %zu spool records, %zu missing; case "
            "%ld ms\n", t.n_acked, n_records, t.n_missing, test_now_ms() - t_case);
    if (l.n_bad > 0) {
        TEST_FAIL("%zu bad spool records; first: %s", l.n_bad, l.first_bad);
    }
    if (t.n_missing > 0) {
        TEST_FAIL("%zu acknowledged events are not in the spool, first %s", t.n_missing,
                  t.first_missing);
    }
    ledger_fini(&warm);
    ledger_fini(&l);
    fixture_fini(&f);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        TEST_CASE(test_edge_kafka_kill9_spool_only),
        TEST_CASE(test_edge_kafka_events_as_normalized),
        TEST_CASE(test_edge_kafka_kill9_with_broker),
        TEST_CASE(test_edge_kafka_broker_stopped_mid_stream),
        TEST_CASE(test_edge_kafka_sigterm_while_waiting),
        {NULL, NULL},
    };
    struct sigaction sa;
    int rc;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_abort;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGABRT, &sa, NULL);
    ASSERT_EQ_INT(curl_global_init(CURL_GLOBAL_DEFAULT), CURLE_OK);
    rc = test_main(argc, argv, cases);
    broker_fini();
    curl_global_cleanup();
    ASSERT_EQ_INT(rd_kafka_wait_destroyed(5000), 0);
    return rc;
}
