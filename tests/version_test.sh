#!/usr/bin/env bash
# Checks a binary's version output (common/build_info.h); CTest runs it per binary.
#   version_test.sh BINARY NAME VERSION        # BINARY --version
#   version_test.sh BINARY lemoctl VERSION json  # lemoctl version -o json (no server needed)
set -euo pipefail
bin=$1 name=$2 version=$3 mode=${4:-flag}
revision='([0-9a-f]{12}(-dirty)?|unknown)'
if [ "$mode" = json ]; then
  # An unroutable server: the verb must not try to reach it.
  out=$("$bin" version -o json --server 192.0.2.1:1)
  want="^\{\"clientVersion\": \{\"version\": \"$version\", \"revision\": \"$revision\"\}\}$"
else
  out=$("$bin" --version)
  want="^$name $version \(commit $revision\)$"
fi
echo "$out"
if ! grep -Eq "$want" <<<"$out"; then
  echo "version_test: want a line matching $want" >&2
  exit 1
fi
