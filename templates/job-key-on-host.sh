#!/bin/sh
# piecework job-key-on-host: run on a host over SSH by `piecework launch --hosts … --job-key` to
# keep the job's key there for its workers (sshfs's IdentityFile, or PIECEWORK_SSH_IDENTITY over
# SFTP): ${XDG_STATE_HOME:-~/.local/state}/piecework/job-keys/<id>, mode 0600 in a 0700 folder,
# written under a temp name and renamed. Never in the job folder, which every host and command
# of the job can read. The head accepts the key for SFTP only, and `launch JOB --delete` revokes
# it there: a copy left here then opens nothing.
#
# Rendered by src/remote/templates.ts: the values arrive as PW_* shell assignments inserted after
# this comment block, each single-quoted, so they are data and never code.
#   PW_KEY_NAME  the job's id (the file's name)
#   PW_KEY_TEXT  the private key (OpenSSH format)
#
# Output: `piecework-keys: file=PATH` (absolute) on stdout. Exit: 0 done, 2 bad values.

set -eu

name=${PW_KEY_NAME:?}
case $name in '' | *[!A-Za-z0-9]*)
  printf 'piecework-keys: error: PW_KEY_NAME must be letters and digits\n' >&2
  exit 2
  ;;
esac
umask 077
dir="${XDG_STATE_HOME:-$HOME/.local/state}/piecework/job-keys"
mkdir -p -- "$dir"
chmod 700 "$dir"
tmp="$dir/.$name.$$.tmp"
trap 'rm -f -- "$tmp"' EXIT
printf '%s' "${PW_KEY_TEXT:?}" >"$tmp"
chmod 600 "$tmp"
mv -f -- "$tmp" "$dir/$name"
trap - EXIT
printf 'piecework-keys: file=%s\n' "$dir/$name"
