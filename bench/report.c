/*
 * Reporting: a human table on stdout, one JSON object per result line on
 * stdout and (appended) in --json FILE, progress on stderr, and gnuplot
 * plots when gnuplot is installed.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench.h"

static FILE *json_file;
static bool header_done;

void bench_result_init(bench_result_t *r, const char *scenario)
{
    memset(r, 0, sizeof *r);
    snprintf(r->scenario, sizeof r->scenario, "%s", scenario);
    snprintf(r->params, sizeof r->params, "{}");
    r->seconds = r->msgs_per_s = r->mb_per_s = NAN;
    r->p50_us = r->p99_us = r->p999_us = NAN;
    r->cpu_s = r->baseline_msgs_per_s = r->ratio = NAN;
    r->peak_rss_kb = -1;
    r->target_met = -1;
}

void bench_extra(bench_result_t *r, const char *fmt, ...)
{
    size_t used = strlen(r->extra);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->extra + used, sizeof r->extra - used, fmt, ap);
    va_end(ap);
}

mph_err_t bench_report_open(const bench_opts_t *o)
{
    if (!o->json_path)
        return MPH_OK;
    json_file = fopen(o->json_path, "a");
    if (!json_file) {
        fprintf(stderr, "mephisto-bench: --json %s: %s\n", o->json_path,
                strerror(errno));
        return MPH_ERR_IO;
    }
    return MPH_OK;
}

void bench_report_close(void)
{
    if (json_file)
        fclose(json_file);
    json_file = NULL;
}

/* A JSON number, or null for NAN/inf. */
static void num(char *buf, size_t size, double v, int prec)
{
    if (isnan(v) || isinf(v))
        snprintf(buf, size, "null");
    else
        snprintf(buf, size, "%.*f", prec, v);
}

static void json_escape(char *dst, size_t size, const char *s)
{
    size_t j = 0;
    for (; *s && j + 7 < size; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            dst[j++] = '\\';
            dst[j++] = (char)ch;
        } else if (ch < 0x20) {
            j += (size_t)snprintf(dst + j, size - j, "\\u%04x", ch);
        } else {
            dst[j++] = (char)ch;
        }
    }
    dst[j] = 0;
}

static void cell(char *buf, size_t size, double v, const char *fmt)
{
    if (isnan(v))
        snprintf(buf, size, "-");
    else
        snprintf(buf, size, fmt, v);
}

void bench_report(const bench_opts_t *o, const bench_result_t *r)
{
    (void)o;
    /* The table row. */
    if (!header_done) {
        printf("%-11s %-22s %9s %8s %11s %8s %9s %9s %7s %9s %11s %7s  %s\n",
               "scenario", "run", "messages", "seconds", "msgs/s", "MB/s",
               "p99_us", "cpu_s", "rss_MB", "base_p99", "base_msgs/s", "ratio",
               "target");
        header_done = true;
    }
    char c[12][32];
    cell(c[0], sizeof c[0], r->seconds, "%.2f");
    cell(c[1], sizeof c[1], r->msgs_per_s, "%.0f");
    cell(c[2], sizeof c[2], r->mb_per_s, "%.1f");
    cell(c[3], sizeof c[3], r->p99_us, "%.0f");
    cell(c[4], sizeof c[4], r->cpu_s, "%.2f");
    cell(c[5], sizeof c[5], r->peak_rss_kb >= 0 ? r->peak_rss_kb / 1024.0 : NAN,
         "%.0f");
    cell(c[6], sizeof c[6], r->baseline_msgs_per_s, "%.0f");
    cell(c[7], sizeof c[7], r->ratio, "%.3f");
    double base_p99 = NAN;
    const char *bp = strstr(r->extra, "\"baseline_p99_us\":");
    if (bp)
        base_p99 = strtod(bp + 18, NULL);
    cell(c[8], sizeof c[8], base_p99, "%.0f");
    if (r->error[0])
        printf("%-11s %-22s FAILED: %s\n", r->scenario, r->label, r->error);
    else
        printf(
            "%-11s %-22s %9llu %8s %11s %8s %9s %9s %7s %9s %11s %7s  %s%s\n",
            r->scenario, r->label, (unsigned long long)r->messages, c[0], c[1],
            c[2], c[3], c[4], c[5], c[8], c[6], c[7], r->target,
            r->target_met == 1   ? " (met)"
            : r->target_met == 0 ? " (MISSED)"
                                 : "");

    /* The JSON line. */
    char n[12][48], err[300], target[200], label[128];
    num(n[0], sizeof n[0], r->seconds, 4);
    num(n[1], sizeof n[1], r->msgs_per_s, 1);
    num(n[2], sizeof n[2], r->mb_per_s, 3);
    num(n[3], sizeof n[3], r->p50_us, 1);
    num(n[4], sizeof n[4], r->p99_us, 1);
    num(n[5], sizeof n[5], r->p999_us, 1);
    num(n[6], sizeof n[6], r->cpu_s, 3);
    num(n[7], sizeof n[7], r->baseline_msgs_per_s, 1);
    num(n[8], sizeof n[8], r->ratio, 4);
    json_escape(err, sizeof err, r->error);
    json_escape(target, sizeof target, r->target);
    json_escape(label, sizeof label, r->label);
    char line[4096];
    snprintf(
        line, sizeof line,
        "{\"scenario\":\"%s\",\"run\":\"%s\",\"params\":%s,\"messages\":%llu,"
        "\"seconds\":%s,\"msgs_per_s\":%s,\"mb_per_s\":%s,\"p50_us\":%s,\"p99_"
        "us\":%s,"
        "\"p999_us\":%s,\"cpu_s\":%s,\"peak_rss_kb\":%ld,\"baseline_msgs_per_"
        "s\":%s,"
        "\"ratio\":%s,\"target\":\"%s\",\"target_met\":%s%s%s%s%s}",
        r->scenario, label, r->params, (unsigned long long)r->messages, n[0],
        n[1], n[2], n[3], n[4], n[5], n[6], r->peak_rss_kb, n[7], n[8], target,
        r->target_met < 0 ? "null"
        : r->target_met   ? "true"
                          : "false",
        r->extra, r->error[0] ? ",\"error\":\"" : "", r->error[0] ? err : "",
        r->error[0] ? "\"" : "");
    printf("%s\n", line);
    fflush(stdout);
    if (json_file) {
        fprintf(json_file, "%s\n", line);
        fflush(json_file);
    }
}

int bench_report_lines(const bench_opts_t *o, bench_result_t *r, int n,
                       const char *error)
{
    for (int i = 0; i < n; i++) {
        if (error && error[0] && error != r[i].error)
            snprintf(r[i].error, sizeof r[i].error, "%s", error);
        bench_report(o, &r[i]);
    }
    return error && error[0] ? 1 : 0;
}

void bench_progress(const bench_opts_t *o, const char *fmt, ...)
{
    if (o->quiet)
        return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "[bench] %s\n", buf);
}

static bool have_gnuplot(void)
{
    static int have = -1;
    if (have < 0)
        have = system("command -v gnuplot >/dev/null 2>&1") == 0;
    return have == 1;
}

static int mkdir_p(const char *path)
{
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(tmp, 0755);
            *p = '/';
        }
    return mkdir(tmp, 0755) == 0 || errno == EEXIST ? 0 : -1;
}

FILE *bench_plot_data(const bench_opts_t *o, const char *name, char *path,
                      size_t path_size)
{
    if (!have_gnuplot() || !o->plot_dir || mkdir_p(o->plot_dir))
        return NULL;
    snprintf(path, path_size, "%s/%s", o->plot_dir, name);
    return fopen(path, "w");
}

void bench_plot(const bench_opts_t *o, const char *name, const char *script)
{
    char path[1100], gp[64], cmd[1300];
    snprintf(gp, sizeof gp, "%s.gp", name);
    FILE *f = bench_plot_data(o, gp, path, sizeof path);
    if (!f)
        return;
    fprintf(
        f,
        "set terminal png size 900,600 noenhanced\nset output '%s/%s.png'\n%s",
        o->plot_dir, name, script);
    fclose(f);
    snprintf(cmd, sizeof cmd, "gnuplot '%s' >/dev/null 2>&1", path);
    if (system(cmd) == 0)
        bench_progress(o, "plot written: %s/%s.png", o->plot_dir, name);
}
