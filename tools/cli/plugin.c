/*
 * Loading an app plugin and declaring its app without starting it, for the
 * commands that read what a plugin declares or where it keeps its state.
 */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "plugin.h"

int mph__cli_plugin_load(mph_cli_plugin_t *pl, const char *arg)
{
    char local[PATH_MAX];
    const char *path = arg;
    struct stat st;
    memset(pl, 0, sizeof *pl);
    pl->path = arg;
    if (!arg || !*arg) {
        mph__cli_error("--app: the plugin's path is empty");
        return MPH_CLI_EXIT_USAGE;
    }
    if (strchr(arg, '/')) {
        if (stat(arg, &st) != 0) {
            mph__cli_error("plugin %s: %s", arg, strerror(errno));
            return MPH_CLI_EXIT_PLUGIN;
        }
    } else if (stat(arg, &st) == 0) {
        /* dlopen() reads a name without '/' as a library to search for. */
        snprintf(local, sizeof local, "./%s", arg);
        path = local;
    }
    if (strchr(path, '/') && !S_ISREG(st.st_mode)) {
        mph__cli_error("plugin %s: not a regular file", arg);
        return MPH_CLI_EXIT_PLUGIN;
    }
    dlerror();
    pl->handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!pl->handle) {
        const char *why = dlerror();
        mph__cli_error("plugin %s: cannot load: %s", arg,
                       why ? why : "unknown error");
        return MPH_CLI_EXIT_PLUGIN;
    }
    dlerror();
    void *sym = dlsym(pl->handle, "mephisto_app_init");
    if (!sym) {
        mph__cli_error("plugin %s: no mephisto_app_init (an app plugin exports "
                       "int mephisto_app_init(mph_app_t *app))",
                       arg);
        dlclose(pl->handle);
        pl->handle = NULL;
        return MPH_CLI_EXIT_PLUGIN;
    }
    memcpy(&pl->init, &sym, sizeof pl->init);
    return MPH_CLI_EXIT_OK;
}

void mph__cli_plugin_app_id(const char *path, char *buf, size_t size)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (strncmp(base, "lib", 3) == 0 && base[3])
        base += 3;
    snprintf(buf, size, "%s", base);
    for (char *p = buf; (p = strstr(p, ".so")); p++) {
        if (p[3] == '\0' || p[3] == '.') {
            *p = '\0';
            break;
        }
    }
}

bool mph__cli_plugin_default_app_id(mph_conf_t *conf, const char *path,
                                    const char *cmd)
{
    const char *cur = mph_conf_get(conf, "app_id");
    if (cur && *cur)
        return true;
    char id[PATH_MAX], err[512];
    mph__cli_plugin_app_id(path, id, sizeof id);
    if (mph_conf_set(conf, "app_id", id, err, sizeof err) != MPH_OK) {
        mph__cli_error(
            "%s: no app_id set and the plugin's name gives none (%s); set one "
            "with --set app_id=NAME",
            cmd, err);
        return false;
    }
    return true;
}

int mph__cli_plugin_open(mph_cli_plugin_t *pl, const char *path,
                         mph_conf_t *conf, const char *cmd)
{
    char err[1024];
    int rc = mph__cli_plugin_load(pl, path);
    if (rc != MPH_CLI_EXIT_OK)
        goto fail_conf;
    if (!mph__cli_plugin_default_app_id(conf, path, cmd)) {
        rc = MPH_CLI_EXIT_USAGE;
        goto fail_plugin;
    }
    pl->app = mph_app_new(conf, err, sizeof err);
    if (!pl->app) {
        mph__cli_error("%s: %s", cmd, err);
        rc = MPH_CLI_EXIT_USAGE;
        goto fail_plugin;
    }
    int init_rc = pl->init(pl->app);
    if (init_rc != 0) {
        mph__cli_error("plugin %s: mephisto_app_init returned %d", path,
                       init_rc);
        mph_app_destroy(pl->app);
        pl->app = NULL;
        dlclose(pl->handle);
        pl->handle = NULL;
        return MPH_CLI_EXIT_PLUGIN;
    }
    return MPH_CLI_EXIT_OK;
fail_plugin:
    if (pl->handle)
        dlclose(pl->handle);
    pl->handle = NULL;
fail_conf:
    mph_conf_destroy(conf);
    return rc;
}

void mph__cli_plugin_close(mph_cli_plugin_t *pl)
{
    /* The app may hold pointers into the plugin until it is destroyed. */
    mph_app_destroy(pl->app);
    pl->app = NULL;
    if (pl->handle)
        dlclose(pl->handle);
    pl->handle = NULL;
}
