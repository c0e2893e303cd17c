#!/bin/sh
# piecework bootstrap: run on a host (over SSH by `piecework launch`, or by a cloud startup
# script) to find node, mount the shared folder if asked, check the job, and start a worker.
#
# Rendered by src/remote/templates.ts: the values arrive as PW_* shell assignments inserted after
# this comment block, each single-quoted, so they are data and never code.
#   PW_ACTION          check | start | run   (check: node, mount, job; start: and start a detached
#                      worker, print its pid; run: and run the worker in the foreground)
#   PW_JOB             the job folder as this host sees it, or its sftp:// address (PW_VIA=sftp)
#   PW_VIA             sftp: the worker reaches the job over SFTP; nothing is mounted, no FUSE
#   PW_SFTP_IDENTITY   with sftp: key file on this host for the head (PIECEWORK_SSH_IDENTITY)
#   PW_SFTP_KNOWN_HOSTS_LINES  with sftp: the head's known_hosts lines, from the launcher
#                      (written to a file the worker checks: PIECEWORK_KNOWN_HOSTS)
#   PW_TOOL_SFTP_LOGIN with sftp, where launch cannot copy the CLI itself (cloud instances, Slurm
#   PW_TOOL_SFTP_PORT  nodes): [user@]host and port of the head, and the CLI's path there
#   PW_TOOL_SFTP_PATH  (absolute, beside the job); fetched into PW_TOOL when it is missing,
#                      with OpenSSH's sftp client, the workers' key and the head's known_hosts
#   PW_JOB_MARKER      its job.json (a dropped mount is not an empty job)
#   PW_LOG_DIR         the job's logs/ folder
#   PW_TOOL            the bundled piecework CLI (piecework.mjs) on this host
#   PW_COMMAND         the user's command, as shell-quoted words (from src/remote/quote.ts)
#   PW_LANES           worker lanes (-j); empty: one per CPU
#   PW_NODE            a node binary to prefer (optional)
#   PW_NODE_MIN        oldest usable node, major.minor
#   PW_MOUNT_SOURCE    [user@]head:/path to mount with sshfs (optional), at PW_MOUNT_AT
#   PW_MOUNT_PORT      the head's SSH port
#   PW_MOUNT_IDENTITY  key file on this host for sshfs (default: this host's own keys and agent)
#   PW_MOUNT_KNOWN_HOSTS_LINES  the head's known_hosts lines, from the launcher: checked in
#                      addition to ~/.ssh/known_hosts
#   PW_MOUNT_STRICT    yes | accept-new (StrictHostKeyChecking for the head; never "no")
#   PW_MOUNT_OPTIONS   sshfs cache options (default: dir_cache=no, see DEPENDENCIES.md)
#   PW_GRACE           seconds a started worker must stay up to count as started
#   PW_CWD             the command's working directory on this host (default: where this runs;
#                      with sftp, the home folder)
#   PW_ENV             NAME=value words, shell-quoted: exported for the worker and its commands
#   PW_WORK_OPTIONS    options for `piecework work` (e.g. --warm), shell-quoted words
#   PW_WHEN_DONE       what to do when `run` ends: poweroff (cloud: stop paying once this worker
#                      has no more work), or delete-gce (ask Compute Engine to delete this
#                      instance, which powering off alone would keep, disk billed; power off if
#                      the instance's service account may not)
#
# Output: lines `piecework-bootstrap: key=value` on stdout for the launcher; errors on stderr.
# The worker's output goes to the job's logs/launch-HOST-PID.log and, so that it survives a
# dropped mount, to ${XDG_STATE_HOME:-~/.local/state}/piecework/logs/JOB-launch-HOST-PID.log on
# the host; both end with `piecework-worker: exit=N`.
# Exit: 0 ok, 2 bad values, 10 no usable node, 11 mount failed, 12 no job, 13 worker died at
# start, 14 piecework CLI missing, 15 a required program is missing, 16 no working directory.

set -eu

say() { printf 'piecework-bootstrap: %s\n' "$*"; }
fail() {
  status=$1
  shift
  printf 'piecework-bootstrap: error: %s\n' "$*" >&2
  exit "$status"
}

action=${PW_ACTION:-start}
case $action in
  check | start | run) ;;
  *) fail 2 "PW_ACTION must be check, start or run, not '$action'" ;;
esac
job=${PW_JOB:?}
marker=${PW_JOB_MARKER:?}
log_dir=${PW_LOG_DIR:?}
node_min=${PW_NODE_MIN:-20.19}

# --- node ------------------------------------------------------------------------------------
# A non-interactive SSH session has a short PATH: also look where nvm, volta and tarballs put it.
node_ok() {
  version=$("$1" --version 2>/dev/null) || return 1
  version=${version#v}
  major=${version%%.*}
  rest=${version#*.}
  minor=${rest%%.*}
  need_major=${node_min%%.*}
  need_minor=${node_min#*.}
  case $major$minor in *[!0-9]* | '') return 1 ;; esac
  [ "$major" -gt "$need_major" ] || { [ "$major" -eq "$need_major" ] && [ "$minor" -ge "$need_minor" ]; }
}

node=
seen=
for candidate in "${PW_NODE:-}" "$(command -v node 2>/dev/null || true)" \
  "$HOME"/.nvm/versions/node/v*/bin/node "$HOME/.volta/bin/node" "$HOME/.local/bin/node" \
  /usr/local/bin/node /opt/node/bin/node /usr/bin/node /usr/bin/nodejs; do
  if [ -z "$candidate" ] || [ ! -x "$candidate" ]; then continue; fi
  if node_ok "$candidate"; then
    node=$candidate
    break
  fi
  seen="$seen $candidate ($("$candidate" --version 2>/dev/null || echo '?'))"
done
if [ -z "$node" ]; then
  if [ -n "$seen" ]; then
    fail 10 "node >= $node_min is needed; found only:$seen"
  fi
  fail 10 "node >= $node_min is needed and none was found (install Node.js $node_min or newer, e.g. the distro's nodejs package or a tarball from nodejs.org)"
fi
say "node=$node"
say "node_version=$("$node" --version)"

# --- the shared folder -------------------------------------------------------------------------
# /proc/mounts escapes spaces in mount points as \040.
# The head's known_hosts lines, in a file of the user's cache: its path on stdout. Written aside
# and renamed: several launches (or hosts sharing a home folder, or workers starting at once) may
# write it together, and ssh must never read it half-written.
write_known_hosts() {
  cache=${XDG_CACHE_HOME:-$HOME/.cache}/piecework
  mkdir -p "$cache"
  printf '%s\n' "$2" >"$cache/known_hosts.$1.$$"
  mv -f "$cache/known_hosts.$1.$$" "$cache/known_hosts.$1"
  printf '%s\n' "$cache/known_hosts.$1"
}

mounted_at() {
  awk -v m="$1" '{ gsub(/\\040/, " ", $2) } $2 == m { found = 1 } END { exit !found }' /proc/mounts
}

# sshfs hides ssh's own messages ("Host key verification failed."), so when a mount fails, ask
# ssh once, with the same options, what is wrong.
diagnose_head() {
  login=${PW_MOUNT_SOURCE%:*}
  user=
  case $login in *@*)
    user=${login%%@*}@
    login=${login#*@}
    ;;
  esac
  login=$(printf '%s' "$login" | tr -d '[]')
  set -- -p "${PW_MOUNT_PORT:-22}" -o BatchMode=yes -o ConnectTimeout=20 -o "StrictHostKeyChecking=${PW_MOUNT_STRICT:-yes}"
  if [ -n "${PW_MOUNT_IDENTITY:-}" ]; then set -- "$@" -o "IdentityFile=$PW_MOUNT_IDENTITY"; fi
  if [ -n "$known" ]; then set -- "$@" -o "UserKnownHostsFile=~/.ssh/known_hosts $known"; fi
  ssh "$@" "$user$login" exit </dev/null 2>&1 | tail -n 3
}

unmount_dead() {
  fusermount3 -u -z "$1" 2>/dev/null || fusermount -u -z "$1" 2>/dev/null || umount -l "$1" 2>/dev/null || true
}

if [ -n "${PW_MOUNT_SOURCE:-}" ]; then
  at=${PW_MOUNT_AT:-}
  [ -n "$at" ] || fail 2 "PW_MOUNT_SOURCE is set but PW_MOUNT_AT (where to mount it) is not"
  if mounted_at "$at" && ls "$at" >/dev/null 2>&1; then
    say "mount=already $at"
  else
    if mounted_at "$at"; then
      # Listed but not answering (ENOTCONN): the sshfs process died; clear it and mount again.
      unmount_dead "$at"
    fi
    command -v sshfs >/dev/null 2>&1 || fail 15 "sshfs is not installed on $(uname -n) (apt-get install sshfs, or dnf install fuse-sshfs)"
    mkdir -p "$at" 2>/dev/null || fail 11 "cannot create the mount point $at"
    # No network timeout by default: keep-alives end a dead connection, reconnect brings it back.
    # BatchMode: never wait for a password prompt no one will answer.
    opts="reconnect,ServerAliveInterval=15,ServerAliveCountMax=3,ConnectTimeout=20,BatchMode=yes"
    opts="$opts,StrictHostKeyChecking=${PW_MOUNT_STRICT:-yes}"
    opts="$opts,${PW_MOUNT_OPTIONS:-dir_cache=no}"
    if [ -n "${PW_MOUNT_IDENTITY:-}" ]; then
      case $PW_MOUNT_IDENTITY in *,*) fail 2 "an sshfs -o path cannot contain a comma: $PW_MOUNT_IDENTITY" ;; esac
      opts="$opts,IdentityFile=$PW_MOUNT_IDENTITY"
    fi
    known=
    if [ -n "${PW_MOUNT_KNOWN_HOSTS_LINES:-}" ]; then
      known=$(write_known_hosts mount "$PW_MOUNT_KNOWN_HOSTS_LINES")
      case $known in *,*) fail 2 "an sshfs -o path cannot contain a comma: $known" ;; esac
      # ssh reads every file listed; the user's own file still counts.
      opts="$opts,UserKnownHostsFile=~/.ssh/known_hosts $known"
    fi
    errors=$(mktemp)
    attempt=1
    # The head's sshd drops bursts of new connections (MaxStartups): retry with back-off.
    # setsid: sshfs and its ssh child leave this session, so they outlive the SSH connection.
    until setsid sshfs -p "${PW_MOUNT_PORT:-22}" -o "$opts" "$PW_MOUNT_SOURCE" "$at" </dev/null >"$errors" 2>&1; do
      # A refused key or login does not get better by waiting: only dropped connections are retried.
      why=$(diagnose_head)
      case $why in
        *'Host key verification failed'* | *'Permission denied'* | *'Could not resolve hostname'* | *'Connection refused'* | *'No route to host'*)
          printf '%s\n' "$why" >&2
          rm -f "$errors"
          fail 11 "could not mount $PW_MOUNT_SOURCE at $at: $(printf '%s\n' "$why" | tail -n 1)"
          ;;
      esac
      if [ "$attempt" -ge 4 ]; then
        cat "$errors" >&2
        rm -f "$errors"
        fail 11 "could not mount $PW_MOUNT_SOURCE at $at"
      fi
      sleep $((attempt * attempt + $$ % 3))
      attempt=$((attempt + 1))
    done
    rm -f "$errors"
    say "mount=new $at"
  fi
fi

# --- the job ---------------------------------------------------------------------------------
via=${PW_VIA:-}
case $via in '' | sftp) ;; *) fail 2 "PW_VIA must be sftp or empty, not '$via'" ;; esac
if [ "$via" = sftp ]; then
  [ -z "${PW_MOUNT_SOURCE:-}" ] || fail 2 "PW_VIA=sftp and PW_MOUNT_SOURCE do not go together"
  case $job in sftp://*) ;; *) fail 2 "with PW_VIA=sftp, PW_JOB must be an sftp:// address, not '$job'" ;; esac
  if [ -n "${PW_SFTP_IDENTITY:-}" ]; then
    PIECEWORK_SSH_IDENTITY=$PW_SFTP_IDENTITY
    export PIECEWORK_SSH_IDENTITY
  fi
  if [ -n "${PW_SFTP_KNOWN_HOSTS_LINES:-}" ]; then
    PIECEWORK_KNOWN_HOSTS=$(write_known_hosts sftp "$PW_SFTP_KNOWN_HOSTS_LINES")
    export PIECEWORK_KNOWN_HOSTS
  fi
  # The job is checked by the worker itself (it needs node and the CLI): see below.
  say "job=$job"
elif [ -f "$marker" ]; then
  say "job=$job"
else
  fail 12 "no piecework job at $job ($marker is missing: wrong path, or the shared folder is not mounted)"
fi
# The user's command runs here: relative paths in it (./score.sh) mean the same on every host.
if [ -n "${PW_CWD:-}" ]; then
  cd "$PW_CWD" 2>/dev/null || fail 16 "the working directory $PW_CWD does not exist on $(uname -n) (give launch --cwd DIR as the hosts see it)"
  say "cwd=$PW_CWD"
elif [ "$via" = sftp ]; then
  # No shared folder to run in: the home folder, on every kind of host alike (an SSH session
  # starts there; a Slurm task would start where sbatch ran, a cloud instance's service in /).
  cd "$HOME" 2>/dev/null || fail 16 "the home folder $HOME does not exist on $(uname -n) (give launch --cwd DIR)"
fi
if [ "$action" = check ]; then
  exit 0
fi

# --- the worker ------------------------------------------------------------------------------
# Cloud instances and Slurm nodes, which launch does not log in to, fetch the CLI from the head
# (launch put it there): OpenSSH's sftp client, with the workers' key and the head's
# known_hosts, which the head's SFTP-only job key allows. Under a temp name, then renamed: tasks
# sharing a home folder may fetch at once, and none may run half a file.
fetch_tool() {
  command -v sftp >/dev/null 2>&1 || fail 15 "the OpenSSH sftp client is not installed on $(uname -n) (openssh-client): it fetches piecework from the head"
  [ -n "${PW_TOOL_SFTP_LOGIN:-}" ] || fail 2 "PW_TOOL_SFTP_PATH is set but PW_TOOL_SFTP_LOGIN (the head) is not"
  from="$PW_TOOL_SFTP_LOGIN:$PW_TOOL_SFTP_PATH"
  case $PW_TOOL_SFTP_PATH$tool in *'"'* | *\\*) fail 2 "sftp's batch mode cannot take a path with a quote or backslash: $from, $tool" ;; esac
  mkdir -p "$(dirname "$tool")" || fail 14 "cannot create $(dirname "$tool")"
  part=$tool.$(uname -n | tr -c 'A-Za-z0-9._\n-' '_').$$.part
  set -- -b - -P "${PW_TOOL_SFTP_PORT:-22}" -o BatchMode=yes -o ConnectTimeout=20 -o StrictHostKeyChecking=yes
  if [ -n "${PW_SFTP_IDENTITY:-}" ]; then set -- "$@" -o "IdentityFile=$PW_SFTP_IDENTITY" -o IdentitiesOnly=yes; fi
  if [ -n "${PIECEWORK_KNOWN_HOSTS:-}" ]; then set -- "$@" -o "UserKnownHostsFile=$PIECEWORK_KNOWN_HOSTS"; fi
  errors=$(mktemp)
  attempt=1
  # The head's sshd drops bursts of new connections (MaxStartups): retry with back-off.
  until printf 'get "%s" "%s"\n' "$PW_TOOL_SFTP_PATH" "$part" | sftp "$@" "$PW_TOOL_SFTP_LOGIN" >"$errors" 2>&1; do
    # What cannot change by retrying, wherever ssh says it (its last line is often only
    # "Connection closed"); else the last line.
    fatal='Host key verification failed|Permission denied|not found|No such file|Could not resolve hostname|not accessible'
    why=$(grep -v '^sftp>' "$errors" | grep -E -m 1 "$fatal") && attempt=4 || why=$(grep -v '^sftp>' "$errors" | tail -n 1)
    if [ "$attempt" -ge 4 ]; then
      cat "$errors" >&2
      rm -f "$errors" "$part"
      fail 14 "cannot fetch piecework from the head ($from): $why"
    fi
    sleep $((attempt * attempt + $$ % 3))
    attempt=$((attempt + 1))
  done
  rm -f "$errors"
  mv -f "$part" "$tool"
  say "tool=fetched $from"
}

tool=${PW_TOOL:-}
[ -n "$tool" ] || fail 2 "PW_TOOL (the piecework CLI on this host) is not set"
case $tool in /*) ;; *) tool=$HOME/$tool ;; esac
if [ ! -f "$tool" ] && [ -n "${PW_TOOL_SFTP_PATH:-}" ]; then fetch_tool; fi
[ -f "$tool" ] || fail 14 "the piecework CLI is missing at $tool"
if [ "$via" = sftp ]; then
  # Reach the job once as the worker will (key, host key, job.json): a wrong key or path is
  # reported here, not in a detached worker's log.
  if ! why=$("$node" "$tool" status "$job" --json 2>&1 >/dev/null); then
    printf '%s\n' "$why" >&2
    fail 12 "cannot reach the job $job over SFTP from $(uname -n): $(printf '%s\n' "$why" | grep -m1 '^piecework:' || printf '%s\n' "$why" | tail -n 1)"
  fi
fi
command -v setsid >/dev/null 2>&1 || fail 15 "setsid is not installed on $(uname -n) (util-linux)"
lanes=${PW_LANES:-}
if [ -z "$lanes" ]; then
  lanes=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
fi
case $lanes in '' | *[!0-9]*) fail 2 "PW_LANES must be a number, not '$lanes'" ;; esac

# Environment for the worker and its commands: NAME=value words quoted by the launcher.
eval "set -- ${PW_ENV:-}"
for assignment in "$@"; do
  case ${assignment%%=*} in '' | [0-9]* | *[!A-Za-z0-9_]*) fail 2 "not a NAME=value environment setting: $assignment" ;; esac
  export "${assignment?}"
done

# The user's command: words quoted by the launcher, so eval only undoes that quoting. The
# worker's own options (PW_WORK_OPTIONS) go before the `--` that starts it.
eval "set -- ${PW_COMMAND:-}"
[ "$#" -gt 0 ] || fail 2 "no command to run"
eval "set -- ${PW_WORK_OPTIONS:-} -- \"\$@\""

host=$(uname -n | tr -c 'A-Za-z0-9._\n-' '_')
if [ "$via" = sftp ]; then
  # The job's logs/ is not a folder here: the worker's output stays on this host (the worker
  # still writes its own log into the job over SFTP).
  log=/dev/null
else
  mkdir -p "$log_dir"
  log=$log_dir/launch-$host-$$.log
fi

# A second copy of the worker's output on this host's own disk: when the shared folder drops,
# the worker's last words ("the mount looks gone") cannot reach the job's logs/, but reach this.
state_dir=${XDG_STATE_HOME:-$HOME/.local/state}/piecework
mkdir -p "$state_dir/logs" || fail 2 "cannot create $state_dir/logs"
job_name=$(basename "${job%/}" | tr -c 'A-Za-z0-9._\n-' '_')
local_log=$state_dir/logs/$job_name-launch-$host-$$.log
fifo=$state_dir/logs/.$job_name-$$.fifo
pid_file=$state_dir/logs/.$job_name-$$.pid
rm -f "$fifo" "$pid_file"
command -v mkfifo >/dev/null 2>&1 || fail 15 "mkfifo is not installed on $(uname -n) (coreutils)"
mkfifo "$fifo"

# The worker runs the one-file bundle, an ES module: libuv's thread pool is sized before its code
# runs, so here, as bin/piecework does locally (4 threads queue a worker's mount calls).
UV_THREADPOOL_SIZE=${UV_THREADPOOL_SIZE:-16}
export UV_THREADPOOL_SIZE

# The supervisor: runs the worker in a session of its own (setsid) with its output on a pipe
# that tee copies to the job's log and to the local one (tee keeps writing to the local one
# when the shared one fails), writes the worker's pid, waits, and ends both logs with
# `piecework-worker: exit=N`. Arguments: FIFO JOB_LOG LOCAL_LOG|- PID_FILE WORKER-ARGV…
# (LOCAL_LOG "-": tee's copy goes to the supervisor's stdout instead).
# shellcheck disable=SC2016
supervise='
fifo=$1 log=$2 local_log=$3 pid_file=$4
shift 4
if [ "$local_log" = - ]; then
  tee -a "$log" <"$fifo" &
else
  tee -a "$log" <"$fifo" >>"$local_log" 2>&1 &
fi
tee_pid=$!
exec 3>"$fifo"
setsid "$@" >&3 2>&3 3>&- </dev/null &
worker=$!
printf "%s\n" "$worker" >"$pid_file"
status=0
wait "$worker" || status=$?
printf "piecework-worker: exit=%s\n" "$status" >&3
exec 3>&-
wait "$tee_pid" || true
rm -f "$fifo"
exit "$status"
'

# Compute Engine keeps an instance that powers itself off (TERMINATED, its disk billed): ask the
# API to delete this one, with the token of the instance's service account from the metadata
# server. Works when that account has the compute scope and may delete instances; otherwise
# `launch --wait` or `launch --delete` removes it.
delete_this_gce_instance() {
  command -v curl >/dev/null 2>&1 || return 1
  md=http://metadata.google.internal/computeMetadata/v1
  token=$(curl -sf -H 'Metadata-Flavor: Google' "$md/instance/service-accounts/default/token" | sed -n 's/.*"access_token" *: *"\([^"]*\)".*/\1/p')
  [ -n "$token" ] || return 1
  project=$(curl -sf -H 'Metadata-Flavor: Google' "$md/project/project-id") || return 1
  zone=$(curl -sf -H 'Metadata-Flavor: Google' "$md/instance/zone") || return 1
  name=$(curl -sf -H 'Metadata-Flavor: Google' "$md/instance/name") || return 1
  say "deleting this instance ($name)"
  curl -sf -X DELETE -H "Authorization: Bearer $token" \
    "https://compute.googleapis.com/compute/v1/projects/$project/zones/${zone##*/}/instances/$name" >/dev/null
}

if [ "$action" = run ]; then
  say "lanes=$lanes"
  say "log=$log"
  status=0
  sh -c "$supervise" sh "$fifo" "$log" - /dev/null "$node" "$tool" work "$job" -j "$lanes" "$@" >&2 || status=$?
  rm -f "$pid_file"
  say "exit=$status"
  case ${PW_WHEN_DONE:-} in
    delete-gce)
      delete_this_gce_instance || say "could not delete this instance (its service account needs the compute scope); powering off"
      shutdown -h now || poweroff || true
      ;;
    poweroff) shutdown -h now || poweroff || true ;;
  esac
  exit "$status"
fi

# Detached: a new session (setsid), immune to hangup (nohup), no terminal, no inherited stdio —
# the one form seen to survive the end of the SSH session.
setsid nohup sh -c "$supervise" sh "$fifo" "$log" "$local_log" "$pid_file" "$node" "$tool" work "$job" -j "$lanes" "$@" >/dev/null 2>&1 </dev/null &

# A zombie still answers kill -0, so read the process state.
alive() {
  [ -r "/proc/$1/stat" ] || return 1
  state=$(sed 's/.*) //' "/proc/$1/stat" | cut -c1)
  [ "$state" != Z ] && [ "$state" != X ]
}

waited=0
until [ -s "$pid_file" ]; do
  waited=$((waited + 1))
  [ "$waited" -le 100 ] || fail 13 "the worker did not start within 10 s (log: $local_log)"
  sleep 0.1 2>/dev/null || sleep 1
done
pid=$(cat "$pid_file")
rm -f "$pid_file"

sleep "${PW_GRACE:-2}"
if ! alive "$pid"; then
  # It may simply be done already (a small job, or nothing left to do): the supervisor writes
  # its exit status once it has reaped it.
  status=
  waited=0
  while [ -z "$status" ] && [ "$waited" -lt 30 ]; do
    status=$(sed -n 's/^piecework-worker: exit=\([0-9]*\)$/\1/p' "$local_log" 2>/dev/null | tail -n 1)
    [ -n "$status" ] || sleep 0.1 2>/dev/null || sleep 1
    waited=$((waited + 1))
  done
  if [ "$status" != 0 ]; then
    tail -n 20 "$local_log" >&2 || true
    fail 13 "the worker exited at once (log: $local_log${status:+, exit status $status})"
  fi
  say "exit=0"
fi
say "pid=$pid"
say "lanes=$lanes"
if [ "$via" = sftp ]; then say "log=$local_log"; else say "log=$log"; fi
say "local_log=$local_log"
