#!/bin/sh
# piecework stop-workers: run on a host (over SSH by `piecework stop JOB --hosts … --now`) to end
# the workers of one job there at once: SIGTERM first (a worker stops its commands, releases its
# claims, writes its last heartbeat and exits), then SIGKILL to whatever is left of them and of
# the commands they started once the grace period is over.
#
# A worker is a process whose argv reads `… <…/piecework[.mjs|.js]> work JOB …`. It belongs to
# this job when JOB (made absolute with the process's working folder) is PW_JOB, or when
# JOB/job.json carries PW_JOB_ID (the same job mounted elsewhere on this host). Only processes
# in this shell's network namespace are considered: on a real host that is all of them; on a
# test bed of namespace "hosts" sharing one kernel it keeps each host to its own.
#
# Rendered by src/remote/templates.ts: the values arrive as PW_* shell assignments inserted after
# this comment block, each single-quoted, so they are data and never code.
#   PW_JOB      the job folder as this host sees it
#   PW_JOB_ID   the job's id from job.json (optional)
#   PW_GRACE    seconds between SIGTERM and SIGKILL (default 10)
#
# Output: lines `piecework-stop: key=value` on stdout: found=PIDS (workers of the job),
# exited=PIDS (ended within the grace), killed=PIDS (workers and their commands SIGKILLed).
# Exit: 0 done (also when no worker was found), 2 bad values.

set -eu

say() { printf 'piecework-stop: %s\n' "$*"; }

job=${PW_JOB:?}
[ "$job" = / ] || job=${job%/}
job_id=${PW_JOB_ID:-}
grace=${PW_GRACE:-10}
case $grace in '' | *[!0-9]*)
  printf 'piecework-stop: error: PW_GRACE must be whole seconds, not %s\n' "$grace" >&2
  exit 2
  ;;
esac
case $job_id in *[!A-Za-z0-9_-]*)
  printf 'piecework-stop: error: PW_JOB_ID has unexpected characters\n' >&2
  exit 2
  ;;
esac

self=$$
my_net=$(readlink "/proc/$self/ns/net" 2>/dev/null || echo none)

# The job folder argument of a piecework worker's argv (one word a line), or nothing.
worker_job() {
  tr '\0' '\n' <"/proc/$1/cmdline" 2>/dev/null | awk '
    NR == 1 { next }
    stage == 0 && /^-/ { next }
    stage == 0 { if ($0 ~ /(^|\/)piecework(\.m?js)?$/) { stage = 1; next } exit }
    stage == 1 { if ($0 == "work") { stage = 2; next } exit }
    stage == 2 && (/^-/ || /^[0-9]+$/) { next }
    stage == 2 { print; exit }'
}

# Whether a job folder (as a worker names it) holds this job's job.json. A hung mount must not
# hang the stop: the read gets a few seconds.
checked_paths=
matching_paths=
has_job_id() {
  [ -n "$job_id" ] || return 1
  case " $checked_paths " in *" $1 "*)
    case " $matching_paths " in *" $1 "*) return 0 ;; esac
    return 1
    ;;
  esac
  checked_paths="$checked_paths $1"
  if timeout 5 cat "$1/job.json" 2>/dev/null | grep -q "\"id\": *\"$job_id\""; then
    matching_paths="$matching_paths $1"
    return 0
  fi
  return 1
}

alive() {
  [ -r "/proc/$1/stat" ] || return 1
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

found=
for dir in /proc/[0-9]*; do
  pid=${dir#/proc/}
  [ "$pid" != "$self" ] || continue
  grep -qs piecework "$dir/cmdline" || continue
  [ "$(readlink "$dir/ns/net" 2>/dev/null || echo gone)" = "$my_net" ] || continue
  path=$(worker_job "$pid")
  [ -n "$path" ] || continue
  case $path in /* | sftp://*) ;; *) path=$(readlink "$dir/cwd" 2>/dev/null || echo /nonexistent)/$path ;; esac
  [ "$path" = / ] || path=${path%/}
  if [ "$path" = "$job" ] || has_job_id "$path"; then
    found="$found $pid"
  fi
done
found=${found# }
say "found=$found"
if [ -z "$found" ]; then
  say "exited="
  say "killed="
  exit 0
fi

# Everything below the workers, listed before they go (their commands are re-parented then).
family=$(
  for stat in /proc/[0-9]*/stat; do
    { read -r line; } 2>/dev/null <"$stat" || continue
    pid=${stat#/proc/}
    pid=${pid%/stat}
    rest=${line##*) }
    # rest: state ppid …
    ppid=${rest#* }
    ppid=${ppid%% *}
    printf '%s %s\n' "$pid" "$ppid"
  done | awk -v roots="$found" '
    BEGIN { n = split(roots, r, " "); for (i = 1; i <= n; i++) keep[r[i]] = 1 }
    { parent[$1] = $2 }
    END {
      do {
        grew = 0
        for (p in parent) if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; grew = 1 }
      } while (grew)
      for (p in keep) printf "%s ", p
    }'
)

for pid in $found; do kill -TERM "$pid" 2>/dev/null || true; done

waited=0
while :; do
  left=
  for pid in $found; do
    if alive "$pid"; then left="$left $pid"; fi
  done
  [ -n "$left" ] || break
  [ "$waited" -lt "$((grace * 10))" ] || break
  sleep 0.1 2>/dev/null || sleep 1
  waited=$((waited + 1))
done

exited=
for pid in $found; do
  case " $left " in *" $pid "*) ;; *) exited="$exited $pid" ;; esac
done
killed=
for pid in $family; do
  if alive "$pid" && kill -KILL "$pid" 2>/dev/null; then killed="$killed $pid"; fi
done
say "exited=${exited# }"
say "killed=${killed# }"
