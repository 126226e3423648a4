/*
 * mephisto-bench: the benchmark harness. `mephisto bench ARGS` execs this
 * program with ARGS (tools/cli/cmd_bench.c), so main() takes everything from
 * argv and nothing from argv[0].
 *
 * Adding a scenario: write bench/scn_<name>.c exporting
 * `const bench_scenario_t bench_scn_<name>` and add X(<name>) below.
 */
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "tools.h"

#define BENCH_SCENARIOS(X) \
    X(passthrough)         \
    X(count)               \
    X(latency)             \
    X(partitions)          \
    X(json)                \
    X(window)              \
    X(window_session)      \
    X(recovery)            \
    X(join)                \
    X(scale)               \
    X(failover)            \
    X(rpc)                 \
    X(global_read)

#define DECLARE(name) extern const bench_scenario_t bench_scn_##name;
BENCH_SCENARIOS(DECLARE)
#define ENTRY(name) &bench_scn_##name,
static const bench_scenario_t *const scenarios[] = {BENCH_SCENARIOS(ENTRY)};
#define NSCENARIOS (sizeof scenarios / sizeof scenarios[0])

/* The scenarios that run under --guarantee exactly_once (issue #14). */
static bool runs_exactly_once(const bench_scenario_t *s)
{
    return s == &bench_scn_passthrough || s == &bench_scn_count;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "tool") == 0)
        return bench_tool_main(argc - 1, argv + 1);
    bench_opts_t o;
    int rc = bench_opts_parse(&o, argc, argv, scenarios, NSCENARIOS);
    if (rc)
        return rc > 0 ? 0 : 2;
    bool all = !o.scenario || strcmp(o.scenario, "all") == 0;
    if (o.exactly_once && !all) {
        size_t i = 0;
        while (strcmp(scenarios[i]->name, o.scenario) != 0)
            i++;
        if (!runs_exactly_once(scenarios[i])) {
            fprintf(stderr,
                    "mephisto-bench: --guarantee exactly_once: scenario %s "
                    "runs at_least_once only (exactly_once: passthrough, "
                    "count)\n",
                    o.scenario);
            return 2;
        }
    }
    mph_log_set_thread_name("bench");
    if (bench_report_open(&o) != MPH_OK)
        return 2;
    int failed = 0;
    for (size_t i = 0; i < NSCENARIOS; i++) {
        if (!all && strcmp(o.scenario, scenarios[i]->name) != 0)
            continue;
        if (o.exactly_once && !runs_exactly_once(scenarios[i])) {
            bench_progress(&o, "scenario %s: skipped (at_least_once only)",
                           scenarios[i]->name);
            continue;
        }
        bench_progress(&o, "scenario %s", scenarios[i]->name);
        if (scenarios[i]->run(&o) != 0)
            failed++;
    }
    bench_report_close();
    if (failed)
        fprintf(stderr, "mephisto-bench: %d scenario(s) failed\n", failed);
    return failed ? 1 : 0;
}
