/*
 * tools.h — `mephisto-bench tool ...`: the building blocks bench/peers/run
 * uses to drive mephisto and the peer frameworks over the same input.
 */
#ifndef MPH_BENCH_TOOLS_H
#define MPH_BENCH_TOOLS_H

/* argv[0] is "tool". Returns the process exit status. */
int bench_tool_main(int argc, char **argv);

#endif
