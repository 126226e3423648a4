#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <ftw.h>

#include "mph_test.h"

const char *mph_test_broker(void)
{
    static char buf[512];
    const char *b = getenv("MEPHISTO_TEST_BROKERS");
    if (!b || !*b)
        return "mock://1";
    if (strstr(b, "://"))
        return b;
    snprintf(buf, sizeof buf, "kafka://%s", b);
    return buf;
}

bool mph_test_real_broker(void)
{
    const char *b = getenv("MEPHISTO_TEST_BROKERS");
    return b && *b;
}

const char *mph_test_unique(const char *prefix, char *buf, size_t size)
{
    static int counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(buf, size, "%s-%d-%lld%03ld-%d", prefix, (int)getpid(), (long long)ts.tv_sec,
             ts.tv_nsec / 1000000, __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED));
    return buf;
}

const char *mph_test_tmpdir(const char *prefix, char *buf, size_t size)
{
    char name[200];
    mph_test_unique(prefix, name, sizeof name);
    snprintf(buf, size, "/tmp/mph-test-%s-XXXXXX", name);
    if (!mkdtemp(buf))
        return NULL;
    return buf;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void mph_test_rmrf(const char *path)
{
    if (path && strncmp(path, "/tmp/", 5) == 0)
        nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

uint64_t mph_test_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
