/*
 * mephisto/conf.h — configuration.
 *
 * One property table (name, type, default, doc) in src/runtime/config.c
 * validates every setting, prints `mephisto --help-config`, and generates
 * docs/configuration.md. Three families of names:
 *
 *   <name>            a mephisto setting from the table (app_id, workers, ...)
 *   kafka.<prop>      passed to librdkafka verbatim; validated by librdkafka
 *                     when set, so a bad one is rejected here with its reason
 *   rocksdb.<prop>    passed to RocksDB's options for state stores; one of
 *                     the options mephisto supports, checked when set
 *                     whatever `store` is
 *   <app>.<name>      any other dotted name: an app-specific setting (e.g.
 *                     wordcount.input_topic), stored as a string for the app
 *                     to read with mph_conf_get()
 *
 * Precedence, lowest first: defaults, a config file or code, environment
 * variables MEPHISTO_<NAME> (name upper-cased, '.' written as "__"), then
 * CLI flags. mph_conf_load_env() applies the environment on demand; the CLI
 * calls it before applying its flags.
 *
 * Ownership: mph_conf_new() returns an owned object; destroy it with
 * mph_conf_destroy() unless it was handed to mph_app_new(), which takes it.
 * Strings returned by getters are borrowed: valid until the same name is set
 * again or the conf is destroyed.
 *
 * Thread safety: a conf is not thread-safe; one thread builds it. Once handed
 * to an app it is read-only and may be read from any thread.
 */
#ifndef MEPHISTO_CONF_H
#define MEPHISTO_CONF_H

#include <stdio.h>
#include "mephisto/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mph_conf mph_conf_t;

/* A new configuration holding every default. NULL only when out of memory. */
MPH_EXPORT mph_conf_t *mph_conf_new(void);
/* A deep copy. NULL only when out of memory. */
MPH_EXPORT mph_conf_t *mph_conf_dup(const mph_conf_t *conf);
MPH_EXPORT void mph_conf_destroy(mph_conf_t *conf);

/* Sets name to value after validating it. On failure returns
 * MPH_ERR_INVALID (bad value or malformed name, an unknown rocksdb.<prop>
 * (whatever the store), or a NULL argument), MPH_ERR_NOENT (unknown
 * mephisto setting, or a kafka.<prop> librdkafka does not know) or
 * MPH_ERR_NOMEM, and writes "<name>: <reason>" into errstr
 * (when errstr is not NULL); the conf is unchanged. Table values are stored
 * canonically: integers in decimal, booleans as "true"/"false", enums as the
 * table spells them. User text echoed in errstr is escaped as by
 * mph_conf_escape(). */
MPH_EXPORT mph_err_t mph_conf_set(mph_conf_t *conf, const char *name, const char *value,
                                  char *errstr, size_t errstr_size);

/* Parses "name=value" (as given to --set) and sets it: the name is trimmed
 * of surrounding whitespace, the value is everything after the first '='. */
MPH_EXPORT mph_err_t mph_conf_set_pair(mph_conf_t *conf, const char *pair, char *errstr,
                                       size_t errstr_size);

/* The value of name as a string (the default if never set); NULL if name is
 * neither a known setting nor a set kafka./rocksdb./app setting. Borrowed. */
MPH_EXPORT const char *mph_conf_get(const mph_conf_t *conf, const char *name);

/* Typed getters, for table settings and for set kafka./rocksdb./app
 * settings alike. Return dflt when the name has no value (see
 * mph_conf_get()) or its value does not convert (get_int: a decimal int64;
 * get_bool: true/false, 1/0, yes/no, on/off in any case). */
MPH_EXPORT int64_t mph_conf_get_int(const mph_conf_t *conf, const char *name, int64_t dflt);
MPH_EXPORT bool mph_conf_get_bool(const mph_conf_t *conf, const char *name, bool dflt);

/* True when name was set explicitly (file, code, env or flag). */
MPH_EXPORT bool mph_conf_is_set(const mph_conf_t *conf, const char *name);

/* Loads a file of "name = value" lines ('#' at the start of a line or after
 * whitespace starts a comment; blank lines ignored; a value may be in double
 * quotes, where \" and \\ are escapes). The whole file is validated first:
 * at the first bad line nothing is applied, the result is MPH_ERR_INVALID
 * (or NOENT) and errstr is "<path>:<line>: <name>: <reason>". A line over
 * MPH_CONF_LINE_MAX bytes is MPH_ERR_INVALID. A file that cannot be read
 * gives MPH_ERR_IO. */
MPH_EXPORT mph_err_t mph_conf_load_file(mph_conf_t *conf, const char *path, char *errstr,
                                        size_t errstr_size);

/* Applies every MEPHISTO_<NAME> environment variable as setting <name>:
 * NAME lower-cased, "__" read as '.', a single '_' kept (MEPHISTO_WORKERS,
 * MEPHISTO_KAFKA__LINGER__MS -> kafka.linger.ms, MEPHISTO_WORDCOUNT__TOPIC ->
 * wordcount.topic). Skipped, as tools' and tests' own: MEPHISTO_TEST_*,
 * MEPHISTO_KAFKA_PORT, _DIR, _HEAP, _TIMEOUT, MEPHISTO_SOURCE_DIR,
 * MEPHISTO_BUILD_DIR, MEPHISTO_REGEN_DOCS. Any other MEPHISTO_ variable must
 * be a valid setting: all are validated first and applied only if all are
 * valid; errstr is "<VARIABLE>: <name>: <reason>". Not thread-safe against
 * setenv() in other threads. */
MPH_EXPORT mph_err_t mph_conf_load_env(mph_conf_t *conf, char *errstr, size_t errstr_size);

/* Calls fn for every explicitly set name that starts with prefix ("kafka.",
 * "rocksdb.", "wordcount.", or "" or NULL for all), in strcmp() order of the
 * names. name and value are borrowed for the call. */
typedef void(mph_conf_foreach_fn)(const char *name, const char *value, void *opaque);
MPH_EXPORT void mph_conf_foreach(const mph_conf_t *conf, const char *prefix,
                                 mph_conf_foreach_fn *fn, void *opaque);

/* Copies src into dst (always NUL-terminated when dst_size > 0, truncated
 * to fit) for an error message that echoes a user's value: control
 * characters (0x00-0x1f), DEL, C1 controls, invisible format characters
 * (zero-width, bidi overrides and isolates, U+2028/2029, BOM) and bytes
 * that are not valid UTF-8 become \xNN (each byte), so the text cannot move
 * a terminal's cursor or clear it (ESC [2J). Printable UTF-8 is kept. The
 * output contains only printable text, so escaping it again changes
 * nothing. Returns dst. Every error mephisto writes into an errstr or
 * prints passes user values through this. @locality any */
MPH_EXPORT char *mph_conf_escape(char *dst, size_t dst_size, const char *src);

/* The file that marks <datadir>/<app_id> as an app's local state: written
 * when the app first creates the directory, and what `mephisto reset`
 * looks for before it deletes anything. */
#define MPH_CONF_STATE_MARKER ".mephisto-state"

/* Longest line of a config file, in bytes (newline excluded): a longer line
 * (a file with no newline, /dev/zero) is refused as
 * "<path>:<line>: line longer than 1048576 bytes" instead of read into
 * memory. */
#define MPH_CONF_LINE_MAX (1024 * 1024)

/* The property table, for help and docs. Returns false past the end.
 * All strings are static. type is one of "string", "int", "bool", "enum",
 * "cpulist", "broker"; choices is "a|b|c" for enums, else "". */
MPH_EXPORT bool mph_conf_property(size_t index, const char **name, const char **type,
                                  const char **dflt, const char **choices, const char **doc);

/* Writes the property table as text (markdown=false, for --help-config) or as
 * a Markdown reference page (markdown=true, docs/configuration.md). */
MPH_EXPORT void mph_conf_print_help(FILE *out, bool markdown);

#ifdef __cplusplus
}
#endif
#endif /* MEPHISTO_CONF_H */
