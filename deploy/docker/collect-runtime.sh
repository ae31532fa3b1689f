#!/usr/bin/env bash
# Copies what the given binaries need at run time into DEST (an image's /opt/lemo): the binaries
# into DEST/bin and every shared library they load, except the C runtime the base image has, into
# DEST/lib. The runtime stages of the Dockerfile copy DEST whole, so they need no -dev packages
# and no distribution-specific library package names.
#
#   deploy/docker/collect-runtime.sh /opt/lemo build/bin/lemo-coordinator build/bin/lemoctl
#
# Extra library directories to copy whole (libraries that are dlopen()ed, so ldd cannot see
# them, e.g. cuDNN's engine libraries in the torch wheel): LEMO_EXTRA_LIB_DIRS="dir1 dir2".
set -euo pipefail
dest=$1
shift
mkdir -p "$dest/bin" "$dest/lib"
# Provided by every glibc base image; copying them would shadow the image's own.
skip='^(linux-vdso|ld-linux|libc|libm|libdl|libpthread|librt|libresolv|libutil|libgcc_s|libstdc\+\+)\.so'
for bin in "$@"; do
  install -m 0755 "$bin" "$dest/bin/"
  strip --strip-unneeded "$dest/bin/$(basename "$bin")"
  # "libfoo.so.1 => /path/libfoo.so.1 (0x...)"; a "not found" stops the build here.
  if ldd "$bin" | grep -q 'not found'; then
    ldd "$bin" | grep 'not found' >&2
    exit 1
  fi
  ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' | while read -r name path; do
    [[ $name =~ $skip ]] && continue
    cp -L "$path" "$dest/lib/$name"
  done
done
for dir in ${LEMO_EXTRA_LIB_DIRS:-}; do
  cp -L "$dir"/*.so* "$dest/lib/" 2>/dev/null || true
done
echo "collected $(ls "$dest/bin" | wc -l) binaries and $(ls "$dest/lib" | wc -l) libraries into $dest" >&2
