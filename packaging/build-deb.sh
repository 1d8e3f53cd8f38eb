#!/bin/bash
# Builds the Chorus Debian package from a release build.
#
#   packaging/build-deb.sh BUILD_DIR OUT_DIR
#
# BUILD_DIR holds the release build: chorusd, chorusctl and every libchorus-*.so (the Swift plugins
# and the C echo plugin); `make deb` fills it. The package is written to OUT_DIR/chorus_<version>_<arch>.deb
# and its path printed on the last line. The staging tree is OUT_DIR/deb-work (rebuilt every time).
#
# The version comes from packaging/debian/changelog; its upstream part must equal what
# `chorusd --version` prints (Daemon.version), or the build stops.
#
# The Swift runtime libraries the binaries need (Debian has no Swift runtime package) are found with
# ldd in the toolchain that built them and shipped privately in /usr/lib/chorus/swift; every ELF file
# gets RUNPATH /usr/lib/chorus/swift in place of the build tree's.
set -euo pipefail

die() { echo "build-deb: $*" >&2; exit 1; }

[ $# -eq 2 ] || die "usage: $0 BUILD_DIR OUT_DIR"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "$1" 2>/dev/null && pwd) || die "build directory $1 does not exist (run: make deb)"
mkdir -p "$2"
OUT=$(cd "$2" && pwd)
DEBIAN_SRC=$ROOT/packaging/debian

for tool in dpkg-deb dpkg-shlibdeps dpkg-gencontrol dpkg-parsechangelog patchelf strip nm ldd gzip python3; do
    command -v "$tool" >/dev/null || die "$tool is missing (make deps installs dpkg-dev and patchelf)"
done
for f in chorusd chorusctl libchorus-sandbox.so libchorus-echo.so; do
    [ -f "$BUILD/$f" ] || die "$BUILD/$f is missing: build the release products and Plugins/echo-c first (make deb)"
done

# --- versions -------------------------------------------------------------------------------------
UPSTREAM=$("$BUILD/chorusd" --version | awk '{print $2}')
[ -n "$UPSTREAM" ] || die "could not read the version from $BUILD/chorusd --version"
DEBVERSION=$(dpkg-parsechangelog -l "$DEBIAN_SRC/changelog" -S Version)
[ "${DEBVERSION%-*}" = "$UPSTREAM" ] ||
    die "packaging/debian/changelog is at $DEBVERSION but chorusd says $UPSTREAM: add a changelog entry for $UPSTREAM-1"
ARCH=$(dpkg --print-architecture)
SOURCE_DATE_EPOCH=$(dpkg-parsechangelog -l "$DEBIAN_SRC/changelog" -S Timestamp)
export SOURCE_DATE_EPOCH

SWIFT_BIN=$(command -v swift) || die "swift is not on PATH (needed to locate the Swift runtime libraries)"
SWIFT_LIB_DIR=${SWIFT_LIB_DIR:-$(cd "$(dirname "$(readlink -f "$SWIFT_BIN")")/../lib/swift/linux" && pwd)}
[ -f "$SWIFT_LIB_DIR/libswiftCore.so" ] || die "no libswiftCore.so in $SWIFT_LIB_DIR (set SWIFT_LIB_DIR)"
SWIFT_LIBEXEC_DIR=$(cd "$SWIFT_LIB_DIR/../../../libexec/swift/linux" 2>/dev/null && pwd || true)

# --- staging tree ---------------------------------------------------------------------------------
WORK=$OUT/deb-work
PKG=$WORK/debian/chorus          # dpkg-shlibdeps/dpkg-gencontrol expect debian/<package>
rm -rf "$WORK"
mkdir -p "$PKG/DEBIAN"
cp "$DEBIAN_SRC/control" "$DEBIAN_SRC/changelog" "$WORK/debian/"

d() { install -d -m 0755 "$PKG/$1"; }
d usr/bin; d usr/lib/chorus/plugins; d usr/lib/chorus/swift; d usr/include/chorus; d usr/share/pkgconfig
d lib/systemd/system; d usr/lib/sysusers.d; d usr/lib/tmpfiles.d; d etc/chorus
d usr/share/man/man1; d usr/share/man/man5; d usr/share/man/man8
d usr/share/doc/chorus/connectors; d usr/share/doc/chorus/examples/echo-c; d usr/share/lintian/overrides

install -m 0755 "$BUILD/chorusd" "$BUILD/chorusctl" "$PKG/usr/bin/"
# Every libchorus-*.so that exports the plugin entry point (a connector still under construction that
# does not is left out, loudly).
plugins=()
for f in "$BUILD"/libchorus-*.so; do
    if nm -D --defined-only "$f" | grep -qw chorus_plugin_entry; then
        plugins+=("$f")
    else
        echo "build-deb: warning: $(basename "$f") does not export chorus_plugin_entry: not a plugin, left out" >&2
    fi
done
install -m 0644 "${plugins[@]}" "$PKG/usr/lib/chorus/plugins/"
elves=("$PKG/usr/bin/chorusd" "$PKG/usr/bin/chorusctl" "$PKG"/usr/lib/chorus/plugins/*.so)
sources=("$BUILD/chorusd" "$BUILD/chorusctl" "${plugins[@]}")   # where ldd resolves them (build RUNPATH)

# The crash reporter of the Swift runtime (prints the crashing image, e.g. a plugin, in the journal).
if [ -n "$SWIFT_LIBEXEC_DIR" ] && [ -x "$SWIFT_LIBEXEC_DIR/swift-backtrace" ]; then
    install -m 0755 "$SWIFT_LIBEXEC_DIR/swift-backtrace" "$PKG/usr/lib/chorus/swift-backtrace"
    elves+=("$PKG/usr/lib/chorus/swift-backtrace")
    sources+=("$SWIFT_LIBEXEC_DIR/swift-backtrace")
fi

# Swift runtime: every library ldd resolves inside the toolchain, for every binary and plugin.
# Anything resolved outside the system library directories and the toolchain is an error (a build-tree
# library would be missing on the target); so is anything not found.
declare -A swiftlibs=()
for f in "${sources[@]}"; do
    while read -r name arrow path _; do
        [ "$arrow" = "=>" ] || continue
        [ "$path" != "not" ] || die "ldd: $name (needed by $f) not found"
        case "$path" in
            "$SWIFT_LIB_DIR"/*|*/libexec/swift/linux/../../../lib/swift/linux/*) swiftlibs[$name]=$(readlink -f "$path") ;;
            /lib/*|/usr/lib/*) ;;
            *) die "$f needs $name from $path, which is neither a system library nor the Swift runtime" ;;
        esac
    done < <(ldd "$f")
done
for name in "${!swiftlibs[@]}"; do
    install -m 0644 "${swiftlibs[$name]}" "$PKG/usr/lib/chorus/swift/$name"
done

# Strip like dh_strip, then point every ELF file at the private runtime (the runtime libraries keep
# their own RUNPATH $ORIGIN).
for f in "${elves[@]}" "$PKG"/usr/lib/chorus/swift/*.so; do
    case "$f" in
        *.so) strip --remove-section=.comment --remove-section=.note --strip-unneeded "$f" ;;
        *)    strip --remove-section=.comment --remove-section=.note "$f" ;;
    esac
done
for f in "${elves[@]}"; do
    if readelf -d "$f" | grep -q 'NEEDED.*libswift'; then
        patchelf --set-rpath /usr/lib/chorus/swift "$f"
    else
        patchelf --remove-rpath "$f"
    fi
done
for f in "$PKG"/usr/lib/chorus/swift/*.so; do
    patchelf --set-rpath '$ORIGIN' "$f"
done
# libswiftRuntime.so (the backtracer's) is marked as needing an executable stack, which it does not use
# (an assembly file without .note.GNU-stack); loading it under MemoryDenyWriteExecute= would fail.
python3 "$ROOT/packaging/clear-execstack.py" "$PKG"/usr/lib/chorus/swift/*.so "$PKG"/usr/lib/chorus/swift-backtrace

# Plugin development: the header and its pkg-config file (headers only, so arch-independent).
install -m 0644 "$ROOT/Sources/CChorusPlugin/include/chorus_plugin.h" "$PKG/usr/include/chorus/"
sed -e "s|@PREFIX@|/usr|" -e "s|@VERSION@|$UPSTREAM|" "$ROOT/dist/chorus-plugin.pc.in" > "$PKG/usr/share/pkgconfig/chorus-plugin.pc"
chmod 0644 "$PKG/usr/share/pkgconfig/chorus-plugin.pc"

# systemd units, sysusers.d, tmpfiles.d, the config (a conffile).
install -m 0644 "$ROOT"/dist/systemd/chorus.service "$ROOT"/dist/systemd/chorus.socket \
    "$ROOT"/dist/systemd/chorus-http.socket "$PKG/lib/systemd/system/"
install -m 0644 "$ROOT/dist/systemd/chorus.sysusers" "$PKG/usr/lib/sysusers.d/chorus.conf"
install -m 0644 "$ROOT/dist/systemd/chorus.tmpfiles" "$PKG/usr/lib/tmpfiles.d/chorus.conf"
install -m 0644 "$ROOT/dist/chorus.toml" "$PKG/etc/chorus/chorus.toml"

# Man pages and documentation (compressed as dh_compress would: man pages, docs over 4 KiB).
gzip -9n -c "$ROOT/docs/man/chorusctl.1" > "$PKG/usr/share/man/man1/chorusctl.1.gz"
gzip -9n -c "$ROOT/docs/man/chorus.toml.5" > "$PKG/usr/share/man/man5/chorus.toml.5.gz"
gzip -9n -c "$ROOT/docs/man/chorusd.8" > "$PKG/usr/share/man/man8/chorusd.8.gz"
DOC=$PKG/usr/share/doc/chorus
install -m 0644 "$DEBIAN_SRC/copyright" "$DOC/copyright"
gzip -9n -c "$DEBIAN_SRC/changelog" > "$DOC/changelog.Debian.gz"
install -m 0644 "$ROOT/README.md" "$DOC/"
for f in configuration operations protocol schema plugin-abi connector-sdk storage; do
    install -m 0644 "$ROOT/docs/$f.md" "$DOC/"
done
install -m 0644 "$ROOT"/docs/connectors/*.md "$DOC/connectors/"
install -m 0644 "$ROOT"/schema/*.schema.json "$DOC/"
install -m 0644 "$ROOT"/Plugins/echo-c/echo.c "$ROOT"/Plugins/echo-c/README.md "$DOC/examples/echo-c/"
find "$DOC" -path "$DOC/examples" -prune -o -type f ! -name copyright ! -name '*.gz' -size +4k -print0 |
    xargs -0 -r gzip -9n
install -m 0644 "$DEBIAN_SRC/lintian-overrides" "$PKG/usr/share/lintian/overrides/chorus"

# --- control area ---------------------------------------------------------------------------------
install -m 0755 "$DEBIAN_SRC/postinst" "$DEBIAN_SRC/prerm" "$DEBIAN_SRC/postrm" "$PKG/DEBIAN/"
install -m 0644 "$DEBIAN_SRC/conffiles" "$PKG/DEBIAN/conffiles"
(
    cd "$WORK"
    # Depends: the Debian packages of the C libraries the binaries and plugins link (the private
    # Swift runtime is found in the package itself through -l and is no dependency).
    # (Its "can't extract name and version" warnings are about those unversioned private libraries.)
    dpkg-shlibdeps -Tdebian/chorus.substvars -l"$PKG/usr/lib/chorus/swift" \
        "${elves[@]}" "$PKG"/usr/lib/chorus/swift/*.so 2>&1 | { grep -v "can't extract name and version from library name" || true; } >&2
    dpkg-gencontrol -pchorus -Pdebian/chorus -Tdebian/chorus.substvars -fdebian/files
)
(
    cd "$PKG"
    find . -type f ! -path './DEBIAN/*' ! -path './etc/*' -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum > DEBIAN/md5sums
    chmod 0644 DEBIAN/md5sums
)
find "$PKG" -type d -exec chmod 0755 {} +

DEB=$OUT/chorus_${DEBVERSION}_${ARCH}.deb
dpkg-deb --build --root-owner-group -Zxz "$PKG" "$DEB" >/dev/null
echo "$DEB"
