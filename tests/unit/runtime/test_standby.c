/* Unit tests of src/runtime/standby.c: standby placement. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/standby.h"

TestSuite(standby_place, .timeout = 10);

/* Range-like assignment of nparts partitions over members in order. */
static void range(size_t nm, int32_t np, bool *owned)
{
    memset(owned, 0, nm * (size_t)np * sizeof *owned);
    for (int32_t p = 0; p < np; p++)
        owned[(size_t)((size_t)p * nm / (size_t)np) * (size_t)np + (size_t)p] = true;
}

/* Every standby is on a member that does not own its partition, no member
 * holds two standbys of one partition, and each partition gets
 * min(n, members - owners) of them. */
static void check(size_t nm, int32_t np, const bool *owned, int n, const int *out)
{
    for (int32_t p = 0; p < np; p++) {
        size_t owners = 0;
        for (size_t m = 0; m < nm; m++)
            owners += owned[m * (size_t)np + (size_t)p];
        size_t want = owners == 0 ? 0 : (nm - owners < (size_t)n ? nm - owners : (size_t)n);
        size_t got = 0;
        for (int k = 0; k < n; k++) {
            int m = out[(size_t)p * (size_t)n + (size_t)k];
            if (m < 0)
                continue;
            got++;
            cr_assert_lt((size_t)m, nm);
            cr_assert_not(owned[(size_t)m * (size_t)np + (size_t)p],
                          "partition %d: standby on its owner %d", p, m);
            for (int j = 0; j < k; j++)
                cr_assert_neq(out[(size_t)p * (size_t)n + (size_t)j], m);
        }
        cr_assert_eq(got, want, "partition %d: %zu standbys, want %zu", p, got, want);
    }
}

Test(standby_place, never_on_an_owner_three_members)
{
    bool owned[3 * 8];
    int out[8 * 1];
    range(3, 8, owned);
    cr_assert_eq(mph__standby_place(3, 8, owned, 1, out), 8);
    check(3, 8, owned, 1, out);
    /* The next member after the owner, in the fixed order. */
    for (int32_t p = 0; p < 8; p++) {
        int owner = -1;
        for (int m = 0; m < 3; m++)
            if (owned[m * 8 + p])
                owner = m;
        cr_assert_eq(out[p], (owner + 1) % 3);
    }
}

Test(standby_place, members_leave_and_join)
{
    for (size_t nm = 1; nm <= 6; nm++) {
        for (int n = 1; n <= 3; n++) {
            bool owned[6 * 12];
            int out[12 * 3];
            range(nm, 12, owned);
            mph__standby_place(nm, 12, owned, n, out);
            check(nm, 12, owned, n, out);
        }
    }
}

Test(standby_place, one_member_places_none)
{
    bool owned[1 * 4] = {true, true, true, true};
    int out[4 * 2];
    cr_assert_eq(mph__standby_place(1, 4, owned, 2, out), 0);
    for (int i = 0; i < 8; i++)
        cr_assert_eq(out[i], -1);
}

Test(standby_place, unowned_partition_and_shared_owners)
{
    /* 3 members, 3 partitions: p0 owned by 0 and 1 (two topics split
     * differently), p1 by nobody, p2 by 2. */
    bool owned[3 * 3] = {0};
    owned[0 * 3 + 0] = owned[1 * 3 + 0] = true;
    owned[2 * 3 + 2] = true;
    int out[3 * 2];
    mph__standby_place(3, 3, owned, 2, out);
    check(3, 3, owned, 2, out);
    cr_assert_eq(out[0 * 2 + 0], 2);
    cr_assert_eq(out[0 * 2 + 1], -1);
    cr_assert_eq(out[1 * 2 + 0], -1);
    cr_assert_eq(out[2 * 2 + 0], 0);
    cr_assert_eq(out[2 * 2 + 1], 1);
}

Test(standby_place, same_input_same_placement)
{
    bool owned[4 * 16];
    range(4, 16, owned);
    int a[16 * 2], b[16 * 2];
    mph__standby_place(4, 16, owned, 2, a);
    mph__standby_place(4, 16, owned, 2, b);
    cr_assert_arr_eq(a, b, sizeof a);
}
