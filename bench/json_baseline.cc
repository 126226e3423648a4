// The json scenario's baseline: bare simdjson on-demand, reading the same
// two fields mephisto's JSON shim reads (scn_json.c), with the error-code
// API (no exceptions). Documents are parsed in place: each record is
// followed by at least `padding` readable bytes.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <simdjson.h>

#include "json_baseline.h"

extern "C" int bench_simdjson_decode(const char *const *recs,
                                     const size_t *lens, size_t n,
                                     size_t padding,
                                     uint64_t *checksum) noexcept
{
    static thread_local simdjson::ondemand::parser parser;
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        simdjson::ondemand::document doc;
        if (parser.iterate(recs[i], lens[i], lens[i] + padding).get(doc))
            return -1;
        std::string_view user;
        uint64_t seq;
        if (doc["user"].get_string().get(user))
            return -1;
        if (doc["seq"].get_uint64().get(seq))
            return -1;
        sum += user.size() + seq;
    }
    *checksum += sum;
    return 0;
}
