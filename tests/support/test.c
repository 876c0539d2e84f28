/* Test harness: runner, temp folders, child processes, stack environment. */
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

int test_main(int argc, char **argv, const struct test_case *cases)
{
    int ran = 0;

    signal(SIGPIPE, SIG_IGN);
    for (const struct test_case *c = cases; c->name != NULL; c++) {
        bool selected = argc < 2;

        for (int i = 1; i < argc && !selected; i++) {
            selected = strcmp(argv[i], c->name) == 0;
        }
        if (!selected) {
            continue;
        }
        fprintf(stderr, "-- %s\n", c->name);
        c->fn();
        fprintf(stderr, "ok %s\n", c->name);
        ran++;
    }
    if (ran == 0) {
        fprintf(stderr, "no test case matched\n");
        return 1;
    }
    fprintf(stderr, "%d cases passed\n", ran);
    return 0;
}

char *test_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char *tmpl = NULL;

    if (base == NULL || base[0] == '\0') {
        base = "/tmp";
    }
    if (asprintf(&tmpl, "%s/sluice-test-XXXXXX", base) < 0) {
        TEST_FAIL("asprintf failed");
    }
    if (mkdtemp(tmpl) == NULL) {
        TEST_FAIL("mkdtemp(%s): %s", tmpl, strerror(errno));
    }
    return tmpl;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void test_rmtree(const char *path)
{
    if (path != NULL) {
        nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    }
}

char *test_path(const char *dir, const char *name)
{
    char *p = NULL;

    if (asprintf(&p, "%s/%s", dir, name) < 0) {
        TEST_FAIL("asprintf failed");
    }
    return p;
}

const char *test_env_require(const char *name)
{
    const char *v = getenv(name);
    const char *req = getenv("SLUICE_TEST_REQUIRE_STACK");

    if (v != NULL && v[0] != '\0') {
        return v;
    }
    if (req != NULL && strcmp(req, "1") == 0) {
        TEST_FAIL("%s is not set but SLUICE_TEST_REQUIRE_STACK=1: start the stack with "
                  "scripts/stack.sh start", name);
    }
    fprintf(stderr, "skipped: %s is not set (start the stack with scripts/stack.sh)\n", name);
    exit(TEST_SKIP_CODE);
}

char *test_bin(const char *name)
{
    const char *dir = getenv("SLUICE_BIN_DIR");

    if (dir == NULL || dir[0] == '\0') {
        TEST_FAIL("SLUICE_BIN_DIR is not set (run the test through ctest)");
    }
    return test_path(dir, name);
}

static void read_all(int fd, char **out)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);

    if (buf == NULL) {
        TEST_FAIL("out of memory");
    }
    for (;;) {
        ssize_t n;

        if (len + 1 >= cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            if (buf == NULL) {
                TEST_FAIL("out of memory");
            }
        }
        n = read(fd, buf + len, cap - len - 1);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        len += (size_t)n;
    }
    buf[len] = '\0';
    *out = buf;
}

void test_proc_run(struct test_proc *p, char *const argv[], char *const env[],
                   const char *input)
{
    int in_pipe[2], out_pipe[2], err_pipe[2];
    pid_t pid;
    int status = 0;

    memset(p, 0, sizeof(*p));
    if (pipe(in_pipe) != 0 || pipe(out_pipe) != 0 || pipe(err_pipe) != 0) {
        TEST_FAIL("pipe: %s", strerror(errno));
    }
    pid = fork();
    if (pid < 0) {
        TEST_FAIL("fork: %s", strerror(errno));
    }
    if (pid == 0) {
        dup2(in_pipe[0], 0);
        dup2(out_pipe[1], 1);
        dup2(err_pipe[1], 2);
        /* Only 0, 1 and 2 stay open, so a grandchild left running (a server a script
         * started) cannot hold the pipes open and hang the read below. */
        close(in_pipe[0]);
        close(in_pipe[1]);
        close(out_pipe[0]);
        close(out_pipe[1]);
        close(err_pipe[0]);
        close(err_pipe[1]);
        for (size_t i = 0; env != NULL && env[i] != NULL; i++) {
            putenv(env[i]);
        }
        execve(argv[0], argv, environ);
        fprintf(stderr, "execve %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(in_pipe[0]);
    close(out_pipe[1]);
    close(err_pipe[1]);
    if (input != NULL) {
        size_t left = strlen(input);

        while (left > 0) {
            ssize_t n = write(in_pipe[1], input, left);

            if (n <= 0) {
                break;
            }
            input += n;
            left -= (size_t)n;
        }
    }
    close(in_pipe[1]);
    /* Both pipes are drained in turn; outputs of CLI runs are small, so stdout cannot
     * fill while stderr waits. */
    read_all(out_pipe[0], &p->out);
    read_all(err_pipe[0], &p->err);
    close(out_pipe[0]);
    close(err_pipe[0]);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    p->status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void test_proc_fini(struct test_proc *p)
{
    free(p->out);
    free(p->err);
    p->out = NULL;
    p->err = NULL;
}

char *test_asprintf(const char *fmt, ...)
{
    char *s = NULL;
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0) {
        TEST_FAIL("vasprintf failed");
    }
    return s;
}
