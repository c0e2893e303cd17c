#!/usr/bin/env bash
# xargs -P: the leanest common way to run a command per file with N lanes (a small sh per file
# for the redirections). No log, no resume, no skip.
#
#   xargs.sh JOB LANES -- COMMAND [ARGS…]
set -u
if [ "$#" -lt 4 ] || [ "$3" != "--" ]; then
  echo "usage: $0 JOB LANES -- COMMAND [ARGS...]" >&2
  exit 2
fi
job=$1
lanes=$2
shift 3
mkdir -p "$job/out"
cd "$job" || exit 1
# -I puts the name first: sh -c SCRIPT sh NAME COMMAND… (one file per sh, as the redirections need).
# shellcheck disable=SC2016 # expanded by the inner sh, not here
find chunks -mindepth 1 -maxdepth 1 -type f -printf '%f\n' |
  xargs -d '\n' -P "$lanes" -I{} sh -c 'name=$1; shift; exec "$@" < "chunks/$name" > "out/$name"' sh {} "$@"
