/*
 * io/record.h — internal API of records (src/io/record.c) for the codecs.
 * The public API is include/mephisto/record.h.
 */
#ifndef MPH_IO_RECORD_H
#define MPH_IO_RECORD_H

#include "mephisto/record.h"

/* Checks that bytes[0..len) decodes as a record of type, exactly as
 * mph_record_decode() would, without building the record (nothing is
 * allocated). Same errors and messages. @locality owner of p */
mph_err_t mph__record_validate(const mph_record_type_t *type,
                               mph_json_parser_t *p, const void *bytes,
                               size_t len, char *errbuf, size_t errbuf_size);

#endif /* MPH_IO_RECORD_H */
