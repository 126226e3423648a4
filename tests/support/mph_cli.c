/* Running the `mephisto` command in tests (see mph_cli.h). */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mephisto.h"
#include "mph_cli.h"
#include "mph_test.h"

extern char **environ;

const char *mph_cli_build_dir(void)
{
    static char dir[PATH_MAX];
    if (dir[0])
        return dir;
    const char *env = getenv("MEPHISTO_BUILD_DIR");
    if (env && *env) {
        snprintf(dir, sizeof dir, "%s", env);
        return dir;
    }
    ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - 1);
    cr_assert_gt(n, 0, "cannot find the build directory");
    dir[n] = '\0';
    for (int i = 0; i < 2; i++) {
        char *slash = strrchr(dir, '/');
        cr_assert_not_null(slash);
        *slash = '\0';
    }
    return dir;
}

const char *mph_cli_path(void)
{
    static char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/mephisto", mph_cli_build_dir());
    cr_assert_eq(access(path, X_OK), 0, "%s: %s (build the mephisto_cli target first)", path,
                 strerror(errno));
    return path;
}

const char *mph_cli_plugin(const char *name)
{
    static char path[PATH_MAX + 128];
    snprintf(path, sizeof path, "%s/examples/lib%s.so", mph_cli_build_dir(), name);
    cr_assert_eq(access(path, R_OK), 0, "%s: %s (build the %s target first)", path,
                 strerror(errno), name);
    return path;
}

char *mph_cli_slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    cr_assert_not_null(buf);
    size_t n;
    while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len < 2) {
            buf = realloc(buf, cap *= 2);
            cr_assert_not_null(buf);
        }
    }
    buf[len] = '\0';
    fclose(f);
    return buf;
}

void mph_cli_spawn(mph_cli_proc_t *p, const char *tag, const char *const *args,
                   const char *const *env, const char *stdin_path, int stdin_fd)
{
    cr_assert_not_null(mph_test_tmpdir(tag, p->dir, sizeof p->dir));
    snprintf(p->out_path, sizeof p->out_path, "%s/out", p->dir);
    snprintf(p->err_path, sizeof p->err_path, "%s/err", p->dir);
    const char *argv[64];
    size_t n = 0;
    argv[n++] = mph_cli_path();
    for (; args[n - 1] && n < 63; n++)
        argv[n] = args[n - 1];
    argv[n] = NULL;
    const char *envp[256];
    size_t e = 0;
    for (char **v = environ; *v && e < 200; v++)
        envp[e++] = *v;
    for (; env && *env && e < 255; env++)
        envp[e++] = *env;
    envp[e] = NULL;
    int fi = stdin_fd >= 0 ? dup(stdin_fd)
                           : open(stdin_path ? stdin_path : "/dev/null", O_RDONLY | O_CLOEXEC);
    int fo = open(p->out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int fe = open(p->err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    cr_assert(fi >= 0 && fo >= 0 && fe >= 0, "cannot open the child's files");

    fflush(NULL);
    p->pid = fork();
    cr_assert_geq(p->pid, 0, "fork: %s", strerror(errno));
    if (p->pid == 0) {
        sigset_t all;
        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        if (stdin_fd >= 0)
            setsid(); /* a terminal on stdin becomes the session's own */
        if (dup2(fi, 0) < 0 || dup2(fo, 1) < 0 || dup2(fe, 2) < 0)
            _exit(120);
        execve(argv[0], (char *const *)argv, (char *const *)envp);
        _exit(121);
    }
    close(fi);
    close(fo);
    close(fe);
}

mph_cli_result_t mph_cli_finish(mph_cli_proc_t *p, int timeout_ms)
{
    mph_cli_result_t r = {0};
    int64_t start = mph_clock_mono_ns();
    int st = 0;
    for (;;) {
        pid_t w = waitpid(p->pid, &st, WNOHANG);
        cr_assert_geq(w, 0, "waitpid: %s", strerror(errno));
        if (w == p->pid)
            break;
        if ((mph_clock_mono_ns() - start) / 1000000 > timeout_ms) {
            kill(p->pid, SIGKILL);
            waitpid(p->pid, &st, 0);
            char *err = mph_cli_slurp(p->err_path);
            cr_assert_fail("mephisto did not end within %d ms; stderr:\n%s", timeout_ms, err);
        }
        usleep(5000);
    }
    r.secs = (double)(mph_clock_mono_ns() - start) / 1e9;
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    cr_assert_neq(r.status, 120, "the child could not set up its files");
    cr_assert_neq(r.status, 121, "the child could not exec %s", mph_cli_path());
    r.out = mph_cli_slurp(p->out_path);
    r.err = mph_cli_slurp(p->err_path);
    /* MEPHISTO_TEST_KEEP_LOGS=1 keeps each child's stdout and stderr (the
     * directory is named in the test's own output when it fails). */
    const char *keep = getenv("MEPHISTO_TEST_KEEP_LOGS");
    if (!keep || !*keep || strcmp(keep, "0") == 0)
        mph_test_rmrf(p->dir);
    return r;
}

mph_cli_result_t mph_cli_run(const char *tag, const char *const *args,
                             const char *const *env, const char *stdin_path,
                             int timeout_ms)
{
    mph_cli_proc_t p;
    mph_cli_spawn(&p, tag, args, env, stdin_path, -1);
    return mph_cli_finish(&p, timeout_ms);
}

void mph_cli_result_free(mph_cli_result_t *r)
{
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}

char *mph_cli_wait_for(mph_cli_proc_t *p, const char *path, const char *needle,
                       int timeout_ms)
{
    int64_t start = mph_clock_mono_ns();
    for (;;) {
        char *text = mph_cli_slurp(path);
        if (strstr(text, needle))
            return text;
        int st;
        if (waitpid(p->pid, &st, WNOHANG) == p->pid)
            cr_assert_fail("mephisto ended (status %d) before writing '%s':\n%s",
                           WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st), needle, text);
        if ((mph_clock_mono_ns() - start) / 1000000 > timeout_ms) {
            kill(p->pid, SIGKILL);
            cr_assert_fail("no '%s' within %d ms:\n%s", needle, timeout_ms, text);
        }
        free(text);
        usleep(20000);
    }
}
