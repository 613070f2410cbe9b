#!/usr/bin/env bash
# Fails if a Lambda binary needs a glibc newer than the provided.al2023 runtime's (2.34).
set -euo pipefail
MAX="${GLIBC_MAX:-2.34}"
status=0
for binary in "$@"; do
  needed=$(objdump -T "$binary" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1)
  if [ "$(printf '%s\n%s\n' "$needed" "$MAX" | sort -V | tail -n 1)" != "$MAX" ]; then
    echo "!! $binary needs glibc $needed; the AL2023 runtime has $MAX" >&2
    status=1
  else
    echo "ok $binary: glibc $needed <= $MAX, $(du -h "$binary" | cut -f1)"
  fi
done
exit $status
