#!/usr/bin/env bash
# The floor for a loop over a shared folder: `cat in > out` per file, no skip, no claim, no temp
# file. Several copies split the files statically (copy K of N takes every N-th file from K), so
# they never need to coordinate — and so cannot resume, rebalance or survive a lost copy.
#
#   bare-loop.sh JOB K N -- COMMAND [ARGS…]     (K counts from 0)
set -u
if [ "$#" -lt 5 ] || [ "$4" != "--" ]; then
  echo "usage: $0 JOB K N -- COMMAND [ARGS...]" >&2
  exit 2
fi
job=$1
k=$2
n=$3
shift 4
mkdir -p "$job/out"
i=0
for file in "$job"/chunks/*; do
  if [ $((i % n)) -eq "$k" ]; then
    "$@" < "$file" > "$job/out/${file##*/}"
  fi
  i=$((i + 1))
done
