#!/bin/sh
#SBATCH --requeue
#SBATCH --open-mode=append
# piecework worker as one task of a Slurm job array. Submitted by
# `piecework launch --provider slurm` as `sbatch --array=1-N --job-name=pw-JOB --output=… FILE`
# (the per-launch options go on the sbatch command line; only fixed directives live here).
# --requeue: a preempted or failed-node task comes back; chunks it held go stale and are
# claimed again (the job folder, not Slurm, keeps track of what is done).
#
# Values (rendered by src/remote/templates.ts as single-quoted assignments below this block):
#   PW_BOOTSTRAP   the rendered templates/bootstrap.sh (PW_ACTION=run, no mount: the cluster's
#                  shared file system is the shared folder)

set -eu

# One lane per CPU Slurm gave this task (sbatch --cpus-per-task, from launch -j).
PW_LANES=${SLURM_CPUS_PER_TASK:-1}
export PW_LANES
printf 'piecework-slurm: task %s of array job %s on %s, %s lanes\n' \
  "${SLURM_ARRAY_TASK_ID:-?}" "${SLURM_ARRAY_JOB_ID:-?}" "$(uname -n)" "$PW_LANES" >&2
exec sh -c "${PW_BOOTSTRAP:?}"
