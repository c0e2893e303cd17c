/**
 * The fork server: a shell per lane that starts the lane's commands, so that each start forks a
 * process of a few MB instead of the ~100 MB worker (a fork's cost grows with the parent's memory:
 * issue 11). Kept here as text, not in templates/, because it must travel inside the single
 * bundled file that `launch` copies to hosts.
 *
 * Wiring (set up by fork-server.ts): fd 0 requests, one a line; fd 3 replies; fd 4 the lane's
 * stderr file; fd 1 and 2 /dev/null, so that nothing the shell itself says lands in a chunk's
 * stderr. A request is `run` followed by words that shell-words.ts quoted (never anything else):
 *   STDIN STDOUT FILE  IN OUT NAME FILE FILES JOB ATTEMPT  CGROUP  ARGV0 ARGS...
 * CGROUP, when not empty, is a cgroup.procs file the child writes 0 into (= itself) before it
 * execs the command: the command and all it starts live in the lane's cgroup from the first
 * instruction, and the worker's event loop does not wait on the cgroup's write lock.
 * bash reads each request as an 8-digit byte count and that many bytes of the line (ASCII only).
 * STDIN and STDOUT are paths; the worker passes /proc/WORKER/fd/N for files it opened ahead.
 * STDOUT is opened with `1<>`, not `>`: the worker's file is new and empty, and a truncation by
 * `>` makes ext4 write the file out when it is closed (it takes it for a file being replaced), so
 * that a chunk's output cost a disk write and its removal waited for it.
 * Replies: `R MODE` once ready, `E MESSAGE` if it cannot serve, then per request `P PID` as soon as
 * the command's process exists (its process group is the pid) and `X STATUS` when it ended
 * (128+N for a signal, as the shell reports it).
 *
 * Each command must lead its own process group, so that --timeout and stopping reach its whole
 * tree. bash gives that with job control (`set -m` works without a terminal) and no extra exec:
 * preferred. A plain POSIX sh (dash) cannot do job control without a terminal, and its background
 * jobs would start with SIGINT ignored, so there the command runs in a foreground subshell that
 * learns its own pid from /proc/self and execs through setsid(1) — one exec more per command.
 */
export const FORK_SERVER_SCRIPT = `
# shellcheck disable=SC2034 # used by the requests: shell-words.ts writes a newline as "$nl"
nl='
'
wd=$PWD
if [ -n "$BASH_VERSION" ] && set -m 2>/dev/null; then
  mode=bash
elif command -v setsid >/dev/null 2>&1 && [ -d /proc/self ]; then
  mode=setsid
else
  echo "E neither bash nor setsid(1) is here to give each command its own process group" >&3
  exit 3
fi
run() {
  i=$1 o=$2 f=$3
  export PIECEWORK_IN="$4" PIECEWORK_OUT="$5" PIECEWORK_NAME="$6" PIECEWORK_FILE="$7" PIECEWORK_FILES="$8" PIECEWORK_JOB="$9" PIECEWORK_ATTEMPT="\${10}"
  cg=\${11} a0=\${12}
  shift 12
  if [ "$mode" = bash ]; then
    # bash has set the child's process group before $! is known: a kill of -PID cannot miss it.
    # shellcheck disable=SC3038 # bash only: this branch runs in bash
    # Errors of the cgroup write go nowhere: a command outside it still has its process group.
    ( [ -z "$cg" ] || echo 0 2>/dev/null >"$cg"; exec -a "$a0" "$f" "$@") 2>&4 <"$i" 1<>"$o" 3>&- 4>&- &
    echo "P $!" >&3
    wait "$!"
  else
    (
      cd -P /proc/self && pid=\${PWD#/proc/} && cd "$wd" || exit 125
      echo "P $pid" >&3
      [ -z "$cg" ] || echo 0 2>/dev/null >"$cg"
      exec setsid "$f" "$@" 2>&4 <"$i" 1<>"$o" 3>&- 4>&-
    )
  fi
  echo "X $?" >&3
}
echo "R $mode" >&3
if [ "$mode" = bash ]; then
  # Counted requests (shell-words.ts countedRequest): two reads each, not one per byte.
  # shellcheck disable=SC3045,SC3052 # bash only: this branch runs in bash
  while read -r -N 8 n && read -r -N "$((10#$n))" line; do
    eval "run $line"
  done
else
  while IFS= read -r line; do
    eval "run $line"
  done
fi
`;
