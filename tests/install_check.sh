#!/usr/bin/env bash
# The installed library links into a program outside the tree, twice:
#  1. `cmake --install` into a temporary prefix;
#  2. the Debian packages `cpack -G DEB` makes (libmephisto, mephisto-dev,
#     mephisto), checked (names, dependencies satisfied on this machine,
#     contents) and unpacked with `dpkg -x` into a temporary root: nothing
#     is installed into the machine, so the check needs no root, cannot
#     collide with a mephisto installed there, and leaves nothing behind.
# Each time a tiny program is built with pkg-config (mephisto.pc) and with
# CMake (find_package(mephisto)) and run; the packaged CLI runs and its bash
# completion completes. Usage: install_check.sh BUILD SRC
set -euo pipefail
build=$(cd "$1" && pwd)
tmp=$(mktemp -d /tmp/mph-install-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "install_check: $*" >&2; exit 1; }

cat >"$tmp/hello.c" <<'C'
#include <mephisto.h>
#include <stdio.h>
#include <string.h>
static mph_err_t page(const mph_web_request_t *req, mph_web_response_t *resp, void *opaque)
{
    (void)req;
    (void)opaque;
    return mph_web_response_set_status(resp, 200);
}
int main(void)
{
    char err[256];
    mph_conf_t *conf = mph_conf_new();
    if (mph_conf_set(conf, "app_id", "outside", err, sizeof err) != MPH_OK)
        return 1;
    mph_app_t *app = mph_app_new(conf, err, sizeof err);
    if (!app)
        return 1;
    if (mph_web_route(app, "GET", "/page", page, NULL) != MPH_OK)
        return 1;
    printf("linked mephisto %s (%s)\n", mph_version(), mph_app_id(app));
    mph_app_destroy(app);
    return strcmp(mph_version(), MPH_VERSION) != 0;
}
C
cat >"$tmp/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.20)
project(outside C)
find_package(mephisto REQUIRED)
add_executable(hello hello.c)
target_link_libraries(hello PRIVATE mephisto::mephisto)
CM

# Builds and runs hello against the installation under prefix.
link_against() {
    local prefix=$1 name=$2 libdir
    libdir=$(ls -d "$prefix"/lib*/ | head -1)
    mkdir -p "$tmp/$name"
    cp "$tmp/hello.c" "$tmp/CMakeLists.txt" "$tmp/$name/"
    PKG_CONFIG_PATH="$libdir/pkgconfig" cc -std=c11 -Wall -Werror -o "$tmp/$name/hello" \
        "$tmp/$name/hello.c" $(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --cflags --libs mephisto)
    LD_LIBRARY_PATH="$libdir" "$tmp/$name/hello"
    cmake -S "$tmp/$name" -B "$tmp/$name/build" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
    cmake --build "$tmp/$name/build" >/dev/null
    LD_LIBRARY_PATH="$libdir" "$tmp/$name/build/hello"
}

# 1. cmake --install
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
link_against "$tmp/prefix" from-install

# 2. the Debian packages
command -v cpack >/dev/null || fail "cpack not found (Debian package cmake)"
command -v dpkg-deb >/dev/null || fail "dpkg-deb not found (Debian package dpkg)"
cpack --config "$build/CPackConfig.cmake" -G DEB -B "$tmp/pkg" >"$tmp/cpack.log" 2>&1 ||
    { cat "$tmp/cpack.log" >&2; fail "cpack -G DEB failed"; }
version=$(sed -n 's/^set(CPACK_PACKAGE_VERSION "\(.*\)")$/\1/p' "$build/CPackConfig.cmake")
[[ -n $version ]] || fail "no CPACK_PACKAGE_VERSION in $build/CPackConfig.cmake"
arch=$(dpkg --print-architecture)
declare -A want=(
    [libmephisto]="usr/lib/libmephisto.so.0"
    [mephisto-dev]="usr/include/mephisto.h usr/include/mephisto/web.h usr/lib/libmephisto.so usr/lib/libmephisto.a usr/lib/pkgconfig/mephisto.pc usr/lib/cmake/mephisto/mephistoConfig.cmake"
    [mephisto]="usr/bin/mephisto usr/share/bash-completion/completions/mephisto"
)
mkdir -p "$tmp/root"
for pkg in libmephisto mephisto-dev mephisto; do
    deb="$tmp/pkg/${pkg}_${version}_${arch}.deb"
    [[ -f $deb ]] || fail "no package $pkg: $(ls "$tmp/pkg")"
    [[ $(dpkg-deb -f "$deb" Package) == "$pkg" ]] || fail "$deb: wrong Package field"
    contents=$(dpkg-deb -c "$deb")
    for f in ${want[$pkg]}; do
        grep -q " \./$f\( \|$\)" <<<"$contents" || fail "$pkg lacks /$f"
    done
    # Every dependency that is not one of ours is installed here, in a
    # version that satisfies it (what `dpkg -i` would check).
    deps=$(dpkg-deb -f "$deb" Depends | tr ',' '\n')
    while read -r dep; do
        [[ -z $dep ]] && continue
        name=${dep%% *}
        [[ $name == libmephisto || $name == mephisto* ]] && continue
        have=$(dpkg-query -W -f='${Status} ${Version}' "$name" 2>/dev/null || true)
        [[ $have == "install ok installed "* ]] || fail "$pkg depends on $dep: not installed"
        if [[ $dep == *"("* ]]; then
            op=$(sed 's/.*(\([<>=]*\) .*/\1/' <<<"$dep")
            ver=$(sed 's/.*([<>=]* \(.*\))/\1/' <<<"$dep")
            case $op in '>=') op=ge ;; '<=') op=le ;; '=') op=eq ;; '>>') op=gt ;; '<<') op=lt ;; esac
            dpkg --compare-versions "${have##* }" "$op" "$ver" ||
                fail "$pkg depends on $dep: ${have##* } installed"
        fi
    done <<<"$deps"
    dpkg-deb -x "$deb" "$tmp/root"
done
[[ $(dpkg-deb -f "$tmp/pkg/mephisto-dev_${version}_${arch}.deb" Depends) == *"libmephisto (= $version)"* ]] ||
    fail "mephisto-dev does not depend on libmephisto (= $version)"
link_against "$tmp/root/usr" from-packages
out=$(LD_LIBRARY_PATH="$tmp/root/usr/lib" "$tmp/root/usr/bin/mephisto" --version)
[[ $out == "mephisto $version" ]] || fail "packaged CLI says '$out'"
echo "packaged CLI: $out"
# The packaged completion, in a bash of its own, with the packaged CLI.
comp=$(LD_LIBRARY_PATH="$tmp/root/usr/lib" PATH="$tmp/root/usr/bin:$PATH" bash -c '
    source "$1"
    c() { COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMPREPLY=(); _mephisto;
          echo "${COMPREPLY[*]}"; }
    c mephisto wor; c mephisto worker --we; c mephisto worker --log-level w; c mephisto worker --set web_po
' _ "$tmp/root/usr/share/bash-completion/completions/mephisto")
[[ $comp == $'worker\n--web-bind --web-port\nwarn\nweb_port=' ]] ||
    fail "bash completion answered: $comp"
echo "bash completion: ok"
echo "2 passed, 0 failed"
