#!/usr/bin/env bash
# GNU parallel as people use it for a folder of inputs, with a job log (what --resume needs):
# one job per file, the file on stdin, stdout into out/NAME.
#
#   parallel.sh JOB LANES JOBLOG -- COMMAND [ARGS…]
set -u
if [ "$#" -lt 5 ] || [ "$4" != "--" ]; then
  echo "usage: $0 JOB LANES JOBLOG -- COMMAND [ARGS...]" >&2
  exit 2
fi
job=$1
lanes=$2
joblog=$3
shift 4
mkdir -p "$job/out"
cd "$job" || exit 1
# parallel quotes the command's words itself; '<' and '>' are passed unquoted as redirections.
find chunks -mindepth 1 -maxdepth 1 -type f -printf '%f\n' |
  parallel --will-cite -j "$lanes" --joblog "$joblog" "$@" '<' chunks/{} '>' out/{}
