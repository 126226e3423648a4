/*
 * DESIGN — `mephisto reset`: delete an app's local state.
 *
 * The local state of an app is the tree <datadir>/<app_id>/ (one RocksDB
 * instance per rocksdb table and worker, see table.h). Deleting it loses
 * nothing the broker does not have: each table is rebuilt from its
 * changelog at the next start. The command therefore only has to be sure
 * of four things before it deletes:
 *
 *   - the directory is the app's: app_id comes from the settings, or from
 *     the plugin's file name as for `mephisto worker` (the plugin is not
 *     loaded, so a broken plugin's state can be reset too), and "." and
 *     ".." are refused;
 *   - the directory holds mephisto's state and nothing else: a worker that
 *     creates it writes the marker file MPH_CONF_STATE_MARKER into it, and
 *     every other entry must be a table directory of RocksDB instances,
 *     <table>/w<N>/, holding only files RocksDB names (CURRENT, LOCK,
 *     *.sst ...). Directories written before the marker existed are
 *     recognised by that layout alone, when it holds at least one
 *     instance. Anything else inside (a photo, a symbolic link, a stray
 *     directory) stops the reset and is listed: a mistyped datadir or
 *     app_id must never delete a user's files;
 *   - no worker is using it: RocksDB holds an fcntl() write lock on each
 *     instance's LOCK file while open, so every LOCK file of the tree is
 *     tested with F_GETLK and a held one stops the reset;
 *   - a person meant it: on a terminal the command asks; without a
 *     terminal it deletes only with --yes.
 *
 * The walk never follows symbolic links (nftw FTW_PHYS): a link inside the
 * tree is removed, not what it points to.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <dirent.h>

#include "cli.h"
#include "plugin.h"

enum { OPT_APP, OPT_CONFIG, OPT_SET, OPT_DATADIR, OPT_YES, OPT_HELP };

static const mph_cli_opt_t reset_opts[] = {
    [OPT_APP] = {"app", 0, true},    [OPT_CONFIG] = {"config", 'c', true},
    [OPT_SET] = {"set", 0, true},    [OPT_DATADIR] = {"datadir", 0, true},
    [OPT_YES] = {"yes", 'y', false}, [OPT_HELP] = {"help", 'h', false},
};
#define NOPTS (sizeof reset_opts / sizeof reset_opts[0])

void mph__cli_reset_help(FILE *out)
{
    fprintf(
        out,
        "Usage: mephisto reset --app PLUGIN.so [options] [--yes]\n"
        "\n"
        "Deletes the app's local state, the directory <datadir>/<app_id>/ "
        "(its RocksDB\n"
        "table shards). Nothing on the broker is touched: at the next start "
        "every\n"
        "table is rebuilt from its changelog. Refuses while a worker holds "
        "the state,\n"
        "and refuses a directory that is not mephisto state: it must carry "
        "the marker\n"
        "file " MPH_CONF_STATE_MARKER " (or, written by an older version, "
        "hold RocksDB shards\n"
        "<table>/w<N>/) and nothing else.\n"
        "On a terminal it asks first; otherwise it deletes only with --yes.\n"
        "\n"
        "Options:\n"
        "  --app PATH          the app plugin; app_id defaults to its file "
        "name as for\n"
        "                      'mephisto worker' (the plugin is not loaded)\n"
        "  -c, --config FILE   read settings from FILE (\"name = value\" "
        "lines)\n"
        "  --set NAME=VALUE    any setting, repeatable (e.g. --set "
        "app_id=orders)\n"
        "  --datadir DIR       datadir: where the worker keeps table state\n"
        "  -y, --yes           do not ask\n"
        "  -h, --help          this help\n"
        "\n"
        "Exit status:\n"
        "  0    deleted, or there was nothing to delete\n"
        "  1    not confirmed, a worker holds the state, the directory is not\n"
        "       (only) mephisto state, or deleting failed\n"
        "  2    bad usage or settings; no --yes and stdin is not a terminal\n");
}

/* What the survey of the tree found. */
typedef struct survey {
    long files, dirs;
    long long bytes;
    char held[PATH_MAX]; /* a LOCK file some process holds, or "" */
    long held_pid;
} survey_t;

/* nftw() passes no user pointer; the walks run one at a time on the main
 * thread. */
static survey_t *g_survey;
static int g_rm_errno;
static char g_rm_path[PATH_MAX];

/* True when another process holds a write lock on path (RocksDB's LOCK). */
static bool lock_held(const char *path, long *pid)
{
    int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return false;
    struct flock fl = {0};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    bool held = fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
    *pid = held ? (long)fl.l_pid : 0;
    close(fd);
    return held;
}

static int survey_entry(const char *path, const struct stat *st, int type,
                        struct FTW *ftw)
{
    (void)ftw;
    survey_t *s = g_survey;
    if (type == FTW_D || type == FTW_DP || type == FTW_DNR) {
        s->dirs++;
        return 0;
    }
    s->files++;
    s->bytes += type == FTW_F ? (long long)st->st_size : 0;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (type == FTW_F && strcmp(base, "LOCK") == 0 && !s->held[0] &&
        lock_held(path, &s->held_pid))
        snprintf(s->held, sizeof s->held, "%s", path);
    return 0;
}

static int remove_entry(const char *path, const struct stat *st, int type,
                        struct FTW *ftw)
{
    (void)st, (void)ftw;
    int rc = type == FTW_DP ? rmdir(path) : unlink(path);
    if (rc != 0 && errno != ENOENT) {
        g_rm_errno = errno;
        snprintf(g_rm_path, sizeof g_rm_path, "%s", path);
        return 1;
    }
    return 0;
}

/* Asks on stderr and reads the answer from stdin: true for y or yes. */
static bool confirm(const char *app_id, const char *dir, const survey_t *s)
{
    fprintf(stderr,
            "Delete the local state of app %s: %s (%ld files, %lld bytes)?\n"
            "Its tables are rebuilt from their changelogs at the next start. "
            "[y/N] ",
            app_id, dir, s->files, s->bytes);
    fflush(stderr);
    char line[64];
    if (!fgets(line, sizeof line, stdin))
        return false;
    line[strcspn(line, "\r\n")] = '\0';
    return strcasecmp(line, "y") == 0 || strcasecmp(line, "yes") == 0;
}

/* ---- is it mephisto's state, and only that? ---- */

/* What the check of the tree found. */
typedef struct verdict {
    bool marker;     /* MPH_CONF_STATE_MARKER is there, a regular file */
    long stores;     /* RocksDB instances <table>/w<N>/ with a file in them */
    long strays;     /* entries that are not mephisto's */
    char list[1024]; /* the first of them, for the message */
} verdict_t;

static void stray(verdict_t *v, const char *rel, const char *what)
{
    size_t used = strlen(v->list);
    if (v->strays++ < 5 && used + 8 < sizeof v->list)
        snprintf(v->list + used, sizeof v->list - used, "%s%s%s",
                 used ? ", " : "", rel, what);
}

/* A file name RocksDB writes into an instance directory. */
static bool rocksdb_file(const char *name)
{
    static const char *const exact[] = {"CURRENT", "IDENTITY", "LOCK", "LOG"};
    static const char *const prefix[] = {"LOG.old.", "MANIFEST-", "OPTIONS-"};
    static const char *const suffix[] = {".sst", ".log", ".blob", ".ldb",
                                         ".dbtmp"};
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
        if (strcmp(name, exact[i]) == 0)
            return true;
    for (size_t i = 0; i < sizeof prefix / sizeof prefix[0]; i++)
        if (strncmp(name, prefix[i], strlen(prefix[i])) == 0)
            return true;
    size_t len = strlen(name);
    for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
        size_t sl = strlen(suffix[i]);
        if (len > sl && strcmp(name + len - sl, suffix[i]) == 0)
            return true;
    }
    return false;
}

/* "w" and digits: a worker's instance directory. */
static bool worker_dir_name(const char *name)
{
    if (name[0] != 'w' || !name[1])
        return false;
    for (const char *c = name + 1; *c; c++)
        if (*c < '0' || *c > '9')
            return false;
    return true;
}

/* Entry type without following links: 'd' directory, 'f' regular file,
 * 'o' anything else (a link, a device, a socket), 0 when it is gone. */
static char entry_type(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return 0;
    return S_ISDIR(st.st_mode) ? 'd' : S_ISREG(st.st_mode) ? 'f' : 'o';
}

/* Calls fn for each entry of dir but . and ..; false if dir cannot be read
 * (recorded as a stray). */
static bool each_entry(const char *dir, const char *rel, verdict_t *v,
                       void (*fn)(const char *dir, const char *rel,
                                  const char *name, verdict_t *v))
{
    DIR *d = opendir(dir);
    if (!d) {
        stray(v, rel[0] ? rel : ".", " (unreadable)");
        return false;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        fn(dir, rel, e->d_name, v);
    }
    closedir(d);
    return true;
}

static void check_store_entry(const char *dir, const char *rel,
                              const char *name, verdict_t *v)
{
    char path[PATH_MAX], r[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(r, sizeof r, "%s/%s", rel, name);
    char t = entry_type(path);
    if (t == 'f' && rocksdb_file(name))
        return;
    if (t != 0)
        stray(v, r, t == 'd' ? "/" : "");
}

static void check_table_entry(const char *dir, const char *rel,
                              const char *name, verdict_t *v)
{
    char path[PATH_MAX], r[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(r, sizeof r, "%s/%s", rel, name);
    char t = entry_type(path);
    if (t == 'd' && worker_dir_name(name)) {
        long before = v->strays;
        DIR *d = opendir(path);
        bool any = false;
        if (d) {
            struct dirent *e;
            while ((e = readdir(d)) != NULL)
                any |= e->d_name[0] != '.';
            closedir(d);
        }
        if (each_entry(path, r, v, check_store_entry) && any &&
            v->strays == before)
            v->stores++;
        return;
    }
    if (t != 0)
        stray(v, r, t == 'd' ? "/" : "");
}

static void check_top_entry(const char *dir, const char *rel, const char *name,
                            verdict_t *v)
{
    (void)rel;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char t = entry_type(path);
    if (strcmp(name, MPH_CONF_STATE_MARKER) == 0 && t == 'f') {
        v->marker = true;
        return;
    }
    if (t == 'd')
        each_entry(path, name, v, check_table_entry);
    else if (t != 0)
        stray(v, name, "");
}

/* Refuses (printing why, returning false) unless dir holds mephisto's state
 * and nothing else. */
static bool is_mephisto_state(const char *dir)
{
    verdict_t v;
    memset(&v, 0, sizeof v);
    each_entry(dir, "", &v, check_top_entry);
    if (v.strays) {
        mph__cli_error("reset: %s holds what is not mephisto state: %s%s; "
                       "nothing deleted (check datadir and app_id, or move "
                       "those away)",
                       dir, v.list, v.strays > 5 ? " ..." : "");
        return false;
    }
    if (!v.marker && v.stores == 0) {
        mph__cli_error("reset: %s holds no mephisto state (no %s marker "
                       "and no RocksDB table shards); nothing deleted",
                       dir, MPH_CONF_STATE_MARKER);
        return false;
    }
    return true;
}

/* Reads the flags. Returns -1 to go on, else an exit code. */
static int parse_flags(int argc, char **argv, const char **app_path,
                       const char **conf_file, bool *yes,
                       mph_cli_setting_t *flags, size_t *nflags)
{
    mph_cli_args_t a;
    mph__cli_args_init(&a, "reset", argc, argv);
    const char *v;
    int id;
    while ((id = mph__cli_args_next(&a, reset_opts, NOPTS, &v)) !=
           MPH_CLI_ARG_END) {
        switch (id) {
        case MPH_CLI_ARG_ERROR:
            return MPH_CLI_EXIT_USAGE;
        case MPH_CLI_ARG_POSITIONAL:
            mph__cli_error("reset: unexpected argument '%s' (the plugin is "
                           "given with --app)",
                           v);
            return MPH_CLI_EXIT_USAGE;
        case OPT_HELP:
            mph__cli_reset_help(stdout);
            return MPH_CLI_EXIT_OK;
        case OPT_APP:
            *app_path = v;
            break;
        case OPT_CONFIG:
            *conf_file = v;
            break;
        case OPT_SET:
            flags[(*nflags)++] = (mph_cli_setting_t){"--set", NULL, v};
            break;
        case OPT_DATADIR:
            flags[(*nflags)++] = (mph_cli_setting_t){"--datadir", "datadir", v};
            break;
        case OPT_YES:
            *yes = true;
            break;
        }
    }
    if (*app_path && !**app_path) {
        mph__cli_error("reset: --app: the plugin's path is empty");
        return MPH_CLI_EXIT_USAGE;
    }
    return -1;
}

/* The app's state directory; an exit code when there is none to name. */
static int state_dir(mph_conf_t *conf, const char *app_path, char *dir,
                     size_t size)
{
    if (app_path && !mph__cli_plugin_default_app_id(conf, app_path, "reset"))
        return MPH_CLI_EXIT_USAGE;
    const char *app_id = mph_conf_get(conf, "app_id");
    if (!app_id || !*app_id) {
        mph__cli_error("reset: which app? give --app PLUGIN.so or --set "
                       "app_id=NAME (see 'mephisto reset --help')");
        return MPH_CLI_EXIT_USAGE;
    }
    if (strcmp(app_id, ".") == 0 || strcmp(app_id, "..") == 0) {
        mph__cli_error("reset: app_id '%s' names no app directory", app_id);
        return MPH_CLI_EXIT_USAGE;
    }
    const char *datadir = mph_conf_get(conf, "datadir");
    int n = snprintf(dir, size, "%s/%s", datadir && *datadir ? datadir : ".",
                     app_id);
    if (n < 0 || (size_t)n >= size) {
        mph__cli_error("reset: datadir path too long");
        return MPH_CLI_EXIT_USAGE;
    }
    return -1;
}

int mph__cli_reset(int argc, char **argv)
{
    const char *app_path = NULL, *conf_file = NULL;
    bool yes = false;
    size_t nflags = 0;
    mph_cli_setting_t *flags = calloc((size_t)argc + 1, sizeof *flags);
    if (!flags) {
        mph__cli_error("out of memory");
        return MPH_CLI_EXIT_USAGE;
    }
    int rc =
        parse_flags(argc, argv, &app_path, &conf_file, &yes, flags, &nflags);
    if (rc >= 0) {
        free(flags);
        return rc;
    }
    static const char *const dflts[] = {"log_level", "warn", NULL};
    mph_conf_t *conf = mph__cli_conf_build(dflts, conf_file, flags, nflags);
    free(flags);
    if (!conf)
        return MPH_CLI_EXIT_USAGE;
    char dir[PATH_MAX];
    rc = state_dir(conf, app_path, dir, sizeof dir);
    if (rc >= 0)
        goto out_conf;
    const char *app_id = mph_conf_get(conf, "app_id");

    struct stat st;
    if (lstat(dir, &st) != 0) {
        if (errno != ENOENT) {
            mph__cli_error("reset: %s: %s", dir, strerror(errno));
            rc = MPH_CLI_EXIT_FAILED;
            goto out_conf;
        }
        printf("nothing to reset: %s does not exist\n", dir);
        rc = MPH_CLI_EXIT_OK;
        goto out_conf;
    }
    if (!S_ISDIR(st.st_mode)) {
        mph__cli_error("reset: %s is not a directory%s; not touched", dir,
                       S_ISLNK(st.st_mode) ? " (a symbolic link)" : "");
        rc = MPH_CLI_EXIT_FAILED;
        goto out_conf;
    }
    if (!is_mephisto_state(dir)) {
        rc = MPH_CLI_EXIT_FAILED;
        goto out_conf;
    }
    survey_t s;
    memset(&s, 0, sizeof s);
    g_survey = &s;
    nftw(dir, survey_entry, 32, FTW_PHYS);
    g_survey = NULL;
    if (s.held[0]) {
        mph__cli_error("reset: a running process (pid %ld) holds %s: stop the "
                       "worker of app %s first; nothing deleted",
                       s.held_pid, s.held, app_id);
        rc = MPH_CLI_EXIT_FAILED;
        goto out_conf;
    }
    if (!yes) {
        if (!isatty(STDIN_FILENO)) {
            mph__cli_error("reset: refusing to delete %s without --yes (stdin "
                           "is not a terminal to ask on)",
                           dir);
            rc = MPH_CLI_EXIT_USAGE;
            goto out_conf;
        }
        if (!confirm(app_id, dir, &s)) {
            mph__cli_error("reset: not confirmed; nothing deleted");
            rc = MPH_CLI_EXIT_FAILED;
            goto out_conf;
        }
    }
    g_rm_errno = 0;
    g_rm_path[0] = '\0';
    if (nftw(dir, remove_entry, 32, FTW_DEPTH | FTW_PHYS) != 0) {
        mph__cli_error("reset: cannot delete %s: %s (the rest of %s may be "
                       "left)",
                       g_rm_path[0] ? g_rm_path : dir,
                       strerror(g_rm_errno ? g_rm_errno : errno), dir);
        rc = MPH_CLI_EXIT_FAILED;
        goto out_conf;
    }
    printf("deleted %s (%ld files, %lld bytes): app %s rebuilds its tables "
           "from their changelogs at its next start\n",
           dir, s.files, s.bytes, app_id);
    rc = fflush(stdout) == 0 ? MPH_CLI_EXIT_OK : MPH_CLI_EXIT_FAILED;
out_conf:
    mph_conf_destroy(conf);
    return rc;
}
