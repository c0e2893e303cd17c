#!/bin/sh
# piecework user data for an Amazon EC2 spot instance, passed with
# `aws ec2 run-instances … --user-data file://FILE`. cloud-init runs it as root at first boot; its
# output is in /var/log/cloud-init-output.log. The instance is started with
# `--instance-initiated-shutdown-behavior terminate`, so powering off when the job is done ends
# the billing.
#
# It installs what is missing (sshfs, or with --via sftp OpenSSH's sftp client; node from the
# distro, which must be >= PW_NODE_MIN — use a Debian 13 AMI, whose nodejs is 20.19, or an image
# with node installed), writes the key sshfs (or the SFTP worker) needs to reach the head, then
# hands over to the rendered bootstrap (mount or fetch the CLI over SFTP, check the job, run the
# worker, power off when done).
#
# Values (rendered by src/remote/templates.ts as single-quoted assignments below this block):
#   PW_BOOTSTRAP               the rendered templates/bootstrap.sh (PW_ACTION=run)
#   PW_NODE_MIN                oldest usable node, major.minor
#   PW_NEEDS_SSHFS             1 when the bootstrap mounts the shared folder
#   PW_NEEDS_SFTP              1 when the workers reach the job over SFTP (launch --via sftp):
#                              the bootstrap fetches the CLI from the head with `sftp`
#   PW_MOUNT_KEY               private key for the head (optional; a dedicated key, please):
#                              sshfs's, or the SFTP worker's; the bootstrap is rendered with
#                              PW_MOUNT_IDENTITY (or PW_SFTP_IDENTITY) =$PW_STATE_DIR/mount_key
#   PW_STATE_DIR               where the key and the bootstrap are written

set -eu

state=${PW_STATE_DIR:-/var/lib/piecework}
node_min=${PW_NODE_MIN:-20.19}

say() { printf 'piecework-startup: %s\n' "$*" >&2; }
fail() {
  say "error: $*"
  exit 1
}

install_packages() {
  if command -v apt-get >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get update -q || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
  elif command -v dnf >/dev/null 2>&1; then
    dnf install -y "$@"
  elif command -v yum >/dev/null 2>&1; then
    yum install -y "$@"
  else
    fail "no apt-get, dnf or yum to install $*"
  fi
}

node_ok() {
  version=$(node --version 2>/dev/null) || return 1
  version=${version#v}
  major=${version%%.*}
  rest=${version#*.}
  minor=${rest%%.*}
  case $major$minor in *[!0-9]* | '') return 1 ;; esac
  [ "$major" -gt "${node_min%%.*}" ] || { [ "$major" -eq "${node_min%%.*}" ] && [ "$minor" -ge "${node_min#*.}" ]; }
}

if [ "${PW_NEEDS_SSHFS:-0}" = 1 ] && ! command -v sshfs >/dev/null 2>&1; then
  say "installing sshfs"
  install_packages sshfs || install_packages fuse-sshfs || fail "cannot install sshfs"
fi
if [ "${PW_NEEDS_SFTP:-0}" = 1 ] && ! command -v sftp >/dev/null 2>&1; then
  say "installing the OpenSSH client"
  install_packages openssh-client || install_packages openssh-clients || fail "cannot install the OpenSSH client (sftp)"
fi
if ! node_ok; then
  say "installing the distro's nodejs"
  install_packages nodejs || fail "cannot install nodejs"
  node_ok || fail "node >= $node_min is needed but this image's nodejs is $(node --version 2>/dev/null || echo missing); use an image with a newer distro (e.g. debian-13) or one with node installed"
fi

mkdir -p "$state"
chmod 700 "$state"
if [ -n "${PW_MOUNT_KEY:-}" ]; then
  (umask 077 && printf '%s\n' "$PW_MOUNT_KEY" >"$state/mount_key")
fi
printf '%s\n' "${PW_BOOTSTRAP:?}" >"$state/bootstrap.sh"

# Leave the startup unit: a transient service of its own when systemd runs this machine (its
# log: journalctl -u piecework-worker), else a detached session. (Installed is not enough:
# systemd-run fails in a container whose init is not systemd; /run/systemd/system is the test
# sd_booted() makes.)
if [ -d /run/systemd/system ] && command -v systemd-run >/dev/null 2>&1; then
  if systemctl is-active --quiet piecework-worker; then
    say "worker already running"
    exit 0
  fi
  systemctl reset-failed piecework-worker 2>/dev/null || true
  systemd-run --unit=piecework-worker --collect sh "$state/bootstrap.sh"
else
  setsid nohup sh "$state/bootstrap.sh" >>/var/log/piecework-worker.log 2>&1 </dev/null &
fi
say "worker started"
