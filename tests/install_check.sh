#!/usr/bin/env bash
# Installs the build into a temporary prefix and builds a tiny outside
# program against it twice: with pkg-config (mephisto.pc) and with CMake
# (find_package(mephisto)). Then runs both. Usage: install_check.sh BUILD SRC
set -euo pipefail
build=$1
tmp=$(mktemp -d /tmp/mph-install-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
libdir=$(ls -d "$tmp"/prefix/lib*/ | head -1)
mkdir -p "$tmp/app"
cat >"$tmp/app/hello.c" <<'C'
#include <mephisto.h>
#include <stdio.h>
#include <string.h>
int main(void)
{
    char err[256];
    mph_conf_t *conf = mph_conf_new();
    if (mph_conf_set(conf, "app_id", "outside", err, sizeof err) != MPH_OK)
        return 1;
    mph_app_t *app = mph_app_new(conf, err, sizeof err);
    if (!app)
        return 1;
    printf("linked mephisto %s (%s)\n", mph_version(), mph_app_id(app));
    mph_app_destroy(app);
    return strcmp(mph_version(), MPH_VERSION) != 0;
}
C
export PKG_CONFIG_PATH="$libdir/pkgconfig"
cc -std=c11 -Wall -Werror -o "$tmp/app/hello" "$tmp/app/hello.c" $(pkg-config --cflags --libs mephisto)
LD_LIBRARY_PATH="$libdir" "$tmp/app/hello"
cat >"$tmp/app/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.20)
project(outside C)
find_package(mephisto REQUIRED)
add_executable(hello hello.c)
target_link_libraries(hello PRIVATE mephisto::mephisto)
CM
cmake -S "$tmp/app" -B "$tmp/app/build" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/app/build" >/dev/null
LD_LIBRARY_PATH="$libdir" "$tmp/app/build/hello"
echo "1 passed, 0 failed"
