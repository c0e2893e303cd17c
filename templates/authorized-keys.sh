#!/bin/sh
# piecework authorized-keys: run on the head over SSH, as the head's user, by `piecework launch`
# to add a job's key to that user's authorized_keys, or (`launch --delete`) to remove it again.
# A job key is accepted for SFTP only:
#   restrict,command="internal-sftp" ssh-ed25519 AAAA… piecework-job-<id>
# `restrict` turns off the shell's extras (pty, forwarding, agent, X11, ~/.ssh/rc) and the forced
# command serves files and nothing else: `ssh head CMD` gets "This service allows sftp
# connections only".
#
# The file is never edited in place: the new content is written to a temp file in the same
# folder (mode 0600), which is renamed over the old one, so sshd sees the old file or the new one,
# never half of one. Every other line is copied unchanged. A job's lines are those whose last
# field is exactly PW_KEY_COMMENT. Racy, as any read-modify-write of this file: an edit made by
# someone else between our read and our rename is lost (ssh-copy-id only appends instead).
#
# Rendered by src/remote/templates.ts: the values arrive as PW_* shell assignments inserted after
# this comment block, each single-quoted, so they are data and never code.
#   PW_KEY_ACTION       add | remove
#   PW_KEY_COMMENT      piecework-job-<id>: the comment that marks the job's lines
#   PW_KEY_LINE         add: the whole line (options, key type, key, comment)
#   PW_AUTHORIZED_KEYS  the file (default ~/.ssh/authorized_keys; ~/.ssh is made 0700 if missing)
#
# Output: lines `piecework-keys: key=value` on stdout: file=PATH (the file edited), result=added
# (the line was added, replacing other lines of the job), present (already there, nothing
# written), removed (the job's lines were removed), absent (none were there, nothing written),
# lines=N (the job's lines found before).
# Exit: 0 done, 1 the file could not be written, 2 bad values.

set -eu

say() { printf 'piecework-keys: %s\n' "$*"; }
bad() {
  printf 'piecework-keys: error: %s\n' "$1" >&2
  exit 2
}

action=${PW_KEY_ACTION:?}
comment=${PW_KEY_COMMENT:?}
line=${PW_KEY_LINE:-}
case $comment in piecework-job-*) ;; *) bad "PW_KEY_COMMENT must start with piecework-job-" ;; esac
case $comment in *[!A-Za-z0-9_-]*) bad "PW_KEY_COMMENT has unexpected characters" ;; esac
case $action in
  add)
    [ -n "$line" ] || bad "PW_KEY_LINE is needed to add a key"
    case $line in *"$comment") ;; *) bad "PW_KEY_LINE must end with PW_KEY_COMMENT" ;; esac
    case $line in *'
'*) bad "PW_KEY_LINE must be one line" ;; esac
    ;;
  remove) ;;
  *) bad "PW_KEY_ACTION must be add or remove, not $action" ;;
esac

file=${PW_AUTHORIZED_KEYS:-$HOME/.ssh/authorized_keys}
# A symlinked authorized_keys (kept with dotfiles) is edited where it points; the link stays.
if [ -L "$file" ]; then
  file=$(readlink -f -- "$file")
fi
say "file=$file"
dir=$(dirname -- "$file")
umask 077

if [ ! -e "$file" ]; then
  if [ "$action" = remove ]; then
    say lines=0
    say result=absent
    exit 0
  fi
  # umask 077: every folder made here is 0700, as sshd's StrictModes wants ~/.ssh.
  [ -d "$dir" ] || mkdir -p -- "$dir"
fi

found=0
if [ -e "$file" ]; then found=$(awk -v c="$comment" '$NF == c { n++ } END { print n + 0 }' "$file"); fi
say "lines=$found"
if [ "$action" = add ] && [ "$found" -eq 1 ] && [ "$(awk -v c="$comment" '$NF == c' "$file")" = "$line" ]; then
  say result=present
  exit 0
fi
if [ "$action" = remove ] && [ "$found" -eq 0 ]; then
  say result=absent
  exit 0
fi

tmp="$dir/.authorized_keys.piecework.$$"
trap 'rm -f -- "$tmp"' EXIT
if [ -e "$file" ]; then
  awk -v c="$comment" '$NF != c' "$file" >"$tmp"
else
  : >"$tmp"
fi
if [ "$action" = add ]; then
  printf '%s\n' "$line" >>"$tmp"
fi
chmod 600 "$tmp"
mv -f -- "$tmp" "$file"
trap - EXIT
if [ "$action" = add ]; then say result=added; else say result=removed; fi
