/*
 * io/json.h — internal helpers of the JSON shim (src/io/json.cc) for the
 * record decoder and the tests. The public API is include/mephisto/json.h.
 */
#ifndef MPH_IO_JSON_H
#define MPH_IO_JSON_H

#include "mephisto/json.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Fully validates the value v and everything inside it (as
 * mph_json_validate() does for a whole document) and reads past it: the
 * iteration of v and the handles obtained through v end. Used for the fields
 * a record decode skips, so that a decoded record implies a well-formed
 * document. Errors: MPH_ERR_DECODE, MPH_ERR_UTF8, MPH_ERR_STATE.
 * @locality owner of p */
mph_err_t mph__json_check_value(mph_json_parser_t *p,
                                mph_json_val_t v) MPH_NOEXCEPT;

/* MPH_OK when nothing but whitespace follows the root value. Reads to the
 * end of the root value first if it was not read completely (without
 * validating what it skips). MPH_ERR_DECODE for trailing content.
 * @locality owner of p */
mph_err_t mph__json_check_end(mph_json_parser_t *p) MPH_NOEXCEPT;

/* Fault injection for tests: make the parser throw a C++ exception inside
 * the shim, to prove that none crosses into C.
 *   MPH__JSON_FAULT_ALLOC   the next allocation of the shim throws
 *                           std::bad_alloc (expect MPH_ERR_NOMEM)
 *   MPH__JSON_FAULT_OTHER   the next allocation throws a non-standard
 *                           exception (expect MPH_ERR_INTERNAL)
 *   MPH__JSON_FAULT_ENTRY   the next call of any mph_json_* function on p
 *                           throws std::bad_alloc on entry
 * A fault fires once. @locality owner of p */
enum {
    MPH__JSON_FAULT_NONE = 0,
    MPH__JSON_FAULT_ALLOC = 1,
    MPH__JSON_FAULT_OTHER = 2,
    MPH__JSON_FAULT_ENTRY = 3
};
void mph__json_inject_fault(mph_json_parser_t *p, int fault) MPH_NOEXCEPT;

#ifdef __cplusplus
}
#endif
#endif /* MPH_IO_JSON_H */
