/* Running a built daemon in a test. */
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test.h"

extern char **environ;

#define MAX_LIVE 64

/* GLOBAL: daemons started and not yet reaped, so a failing assertion (abort) does not leave
 * them running. Written by test_daemon_start/reaping on the test's thread only. */
static pid_t live_pids[MAX_LIVE];
static struct sigaction previous_abrt;
static bool is_handler_installed;

static void kill_live_on_abort(int sig)
{
    for (int i = 0; i < MAX_LIVE; i++) {
        if (live_pids[i] > 0) {
            kill(live_pids[i], SIGKILL);
        }
    }
    /* Hand over to whatever handled SIGABRT before (a test's own cleanup), else die. */
    if (previous_abrt.sa_handler != SIG_DFL && previous_abrt.sa_handler != SIG_IGN &&
        !(previous_abrt.sa_flags & SA_SIGINFO)) {
        previous_abrt.sa_handler(sig);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static void track(pid_t pid, bool is_live)
{
    for (int i = 0; i < MAX_LIVE; i++) {
        if (is_live && live_pids[i] == 0) {
            live_pids[i] = pid;
            break;
        }
        if (!is_live && live_pids[i] == pid) {
            live_pids[i] = 0;
            break;
        }
    }
    if (is_live && !is_handler_installed) {
        struct sigaction sa;

        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = kill_live_on_abort;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGABRT, &sa, &previous_abrt);
        is_handler_installed = true;
    }
}

long test_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

int test_free_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int port;

    ASSERT_TRUE(fd >= 0);
    ASSERT_EQ_INT(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ASSERT_EQ_INT(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

static bool keeps_env(const char *e)
{
    return strncmp(e, "SLUICE_", 7) != 0 || strncmp(e, "SLUICE_TEST_", 12) == 0 ||
           strncmp(e, "SLUICE_BIN_DIR=", 15) == 0 || strncmp(e, "SLUICE_SOURCE_DIR=", 18) == 0;
}

void test_daemon_start(struct test_daemon *d, const char *bin, const char *const *args,
                       const char *dir, char *const *env)
{
    const char *base = strrchr(bin, '/') != NULL ? strrchr(bin, '/') + 1 : bin;
    char *argv[32];
    char **envp;
    size_t n_env = 0, n = 0, n_args = 0;
    int log_fd;

    memset(d, 0, sizeof(*d));
    if (asprintf(&d->log_path, "%s/%s.log", dir, base) < 0) {
        TEST_FAIL("asprintf");
    }
    argv[n_args++] = (char *)bin;
    for (size_t i = 0; args != NULL && args[i] != NULL && n_args < 31; i++) {
        argv[n_args++] = (char *)args[i];
    }
    argv[n_args] = NULL;
    for (size_t i = 0; environ[i] != NULL; i++) {
        n_env++;
    }
    for (size_t i = 0; env != NULL && env[i] != NULL; i++) {
        n_env++;
    }
    envp = calloc(n_env + 1, sizeof(envp[0]));
    ASSERT_TRUE(envp != NULL);
    for (size_t i = 0; environ[i] != NULL; i++) {
        if (keeps_env(environ[i])) {
            envp[n++] = environ[i];
        }
    }
    for (size_t i = 0; env != NULL && env[i] != NULL; i++) {
        envp[n++] = env[i];
    }
    envp[n] = NULL;
    log_fd = open(d->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    ASSERT_TRUE(log_fd >= 0);
    d->pid = fork();
    ASSERT_TRUE(d->pid >= 0);
    if (d->pid == 0) {
        int null_fd = open("/dev/null", O_RDWR);

        if (null_fd < 0 || dup2(null_fd, 0) < 0 || dup2(null_fd, 1) < 0 ||
            dup2(log_fd, 2) < 0 || chdir(dir) != 0) {
            _exit(126);
        }
        execve(bin, argv, envp);
        _exit(127);
    }
    close(log_fd);
    free(envp);
    track(d->pid, true);
}

void test_daemon_read_log(struct test_daemon *d)
{
    FILE *f = fopen(d->log_path, "r");
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);

    ASSERT_TRUE(buf != NULL);
    if (f != NULL) {
        size_t n;

        while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
            len += n;
            if (len + 1 == cap) {
                cap *= 2;
                buf = realloc(buf, cap);
                ASSERT_TRUE(buf != NULL);
            }
        }
        fclose(f);
    }
    buf[len] = '\0';
    free(d->log);
    d->log = buf;
}

bool test_daemon_log_has(struct test_daemon *d, const char *component,
                         const char *const *words)
{
    const char *line;
    bool found = false;

    test_daemon_read_log(d);
    line = d->log;
    while (!found && *line != '\0') {
        const char *nl = strchr(line, '\n');
        json_error_t jerr;
        json_t *obj;
        const char *msg, *comp, *level;

        if (nl == NULL) {
            break; /* an unfinished line */
        }
        obj = json_loadb(line, (size_t)(nl - line), 0, &jerr);
        if (obj == NULL) {
            TEST_FAIL("log line is not JSON (%s): %.*s", jerr.text, (int)(nl - line), line);
        }
        msg = json_string_value(json_object_get(obj, "msg"));
        comp = json_string_value(json_object_get(obj, "component"));
        level = json_string_value(json_object_get(obj, "level"));
        found = msg != NULL && comp != NULL && level != NULL && strcmp(comp, component) == 0 &&
                strcmp(level, "debug") != 0;
        for (size_t i = 0; found && words[i] != NULL; i++) {
            found = strstr(msg, words[i]) != NULL;
        }
        json_decref(obj);
        line = nl + 1;
    }
    return found;
}

static bool has_exited(struct test_daemon *d)
{
    int status = 0;

    if (d->is_reaped) {
        return true;
    }
    if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
        d->status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        d->is_reaped = true;
        track(d->pid, false);
        return true;
    }
    return false;
}

bool test_daemon_wait_log(struct test_daemon *d, const char *component,
                          const char *const *words, int timeout_ms)
{
    long deadline = test_now_ms() + timeout_ms;

    for (;;) {
        if (test_daemon_log_has(d, component, words)) {
            return true;
        }
        if (has_exited(d) || test_now_ms() >= deadline) {
            return test_daemon_log_has(d, component, words);
        }
        poll(NULL, 0, 10);
    }
}

void test_daemon_wait_started(struct test_daemon *d, const char *component, int timeout_ms)
{
    const char *words[] = {"started", NULL};

    if (!test_daemon_wait_log(d, component, words, timeout_ms)) {
        test_daemon_read_log(d);
        TEST_FAIL("no \"started\" line from %s within %d ms; log:\n%s", component, timeout_ms,
                  d->log);
    }
}

void test_daemon_wait_exit(struct test_daemon *d, int timeout_ms)
{
    long deadline = test_now_ms() + timeout_ms;

    while (!has_exited(d)) {
        if (test_now_ms() >= deadline) {
            kill(d->pid, SIGKILL);
            waitpid(d->pid, NULL, 0);
            d->is_reaped = true;
            track(d->pid, false);
            test_daemon_read_log(d);
            TEST_FAIL("pid %d did not exit within %d ms; log:\n%s", (int)d->pid, timeout_ms,
                      d->log);
        }
        poll(NULL, 0, 10);
    }
}

void test_daemon_stop(struct test_daemon *d, int timeout_ms)
{
    ASSERT_EQ_INT(kill(d->pid, SIGTERM), 0);
    test_daemon_wait_exit(d, timeout_ms);
    if (d->status != 0) {
        test_daemon_read_log(d);
        TEST_FAIL("pid %d exited with %d after SIGTERM; log:\n%s", (int)d->pid, d->status,
                  d->log);
    }
}

void test_daemon_fini(struct test_daemon *d)
{
    if (!d->is_reaped && d->pid > 0) {
        kill(d->pid, SIGKILL);
        waitpid(d->pid, NULL, 0);
        d->is_reaped = true;
        track(d->pid, false);
    }
    free(d->log);
    free(d->log_path);
    d->log = NULL;
    d->log_path = NULL;
}
