#include "bench.h"
#include "tools.h"
int bench_tool_main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return 2;
}
