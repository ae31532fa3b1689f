# Sourced by the device scripts (repo root, `.device` carried): the GPU machine's build
# environment. .device/env.sh unpacks every carried package into /tmp/sysroot, but only when that
# folder is new, so a /tmp/sysroot that anything else created first (once, these scripts' own
# extra-package loop, run before env.sh: abseil went missing and the build failed) would hide
# abseil and gRPC from the build. It is started afresh unless it has them; then the packages a
# machine's first unpack may predate are added: Debian's libgloo-dev (headers that c10d's
# ProcessGroupGloo.hpp includes) and the tokenizer's PCRE2 and ICU (apt-get download
# libgloo-dev libpcre2-dev libpcre2-8-0 libpcre2-16-0 libpcre2-32-0 libpcre2-posix3 libicu-dev
# libicu72 icu-devtools into .device/debs).
[ -f /tmp/sysroot/usr/include/absl/base/config.h ] || rm -rf /tmp/sysroot
# shellcheck disable=SC1091
source .device/env.sh || { echo "$0: .device/env.sh missing (carry .device)" >&2; exit 2; }
for deb in .device/debs/{libgloo-dev,libpcre2,libicu,icu-devtools}*.deb; do
  [ -f "$deb" ] && dpkg -x "$deb" /tmp/sysroot
done
