#!/usr/bin/env bash
# The usual hand-written worker loop that piecework replaces, as people write it for a shared folder:
# shuffle the inputs, skip any that has an output, claim with mkdir, run into a temp file, publish
# with mv, drop the claim. Run several copies at once (on one or many hosts) for several lanes.
#
#   bash-loop.sh JOB -- COMMAND [ARGS…]
#
# JOB holds chunks/ (one input per file); out/, locks/ and tmp/ are made as needed. The chunk is
# the command's stdin and its stdout the output, as with `piecework work JOB -- COMMAND`.
set -u
if [ "$#" -lt 3 ] || [ "$2" != "--" ]; then
  echo "usage: $0 JOB -- COMMAND [ARGS...]" >&2
  exit 2
fi
job=$1
shift 2
mkdir -p "$job/out" "$job/locks" "$job/tmp"
host=$(hostname)

while IFS= read -r name; do
  [ -e "$job/out/$name" ] && continue
  mkdir "$job/locks/$name" 2>/dev/null || continue
  tmp="$job/tmp/$name.$host.$$"
  if "$@" < "$job/chunks/$name" > "$tmp"; then
    mv -f "$tmp" "$job/out/$name"
  else
    rm -f "$tmp"
  fi
  rmdir "$job/locks/$name"
done < <(find "$job/chunks" -mindepth 1 -maxdepth 1 -type f -printf '%f\n' | shuf)
