#!/usr/bin/env bash
# Training on a Slurm cluster (GPU nodes).
#   GPUS=16 bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [args]
#
# Preemption: on SIGTERM (Slurm preempting or cancelling the job) or SIGUSR1,
# tools/train.py finishes the running step, saves a checkpoint and exits with
# status 75. Inside an sbatch job this script then requeues the job, and the
# requeued job resumes if its command has --resume. In the sbatch script:
#
#   #SBATCH --requeue
#   #SBATCH --signal=USR1@180    # SIGUSR1 to the training processes 3 min
#                                # before the time limit (no "B:": the batch
#                                # shell is not the one that saves)
#   GPUS=16 bash tools/slurm_train.sh PARTITION JOB CONFIG WORK_DIR \
#       --resume --allow-no-checkpoint
#
# The save has to fit in the time Slurm leaves before SIGKILL: the
# partition's GraceTime after SIGTERM, or the lead time of --signal.
set -x
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-8}
SRUN_ARGS=${SRUN_ARGS:-""}
PY_ARGS=${@:5}
EXIT_PREEMPTED=75

# Slurm signals this shell too; without a trap, SIGTERM would end it before
# srun returns and nothing would requeue the job.
trap 'echo "slurm_train.sh: SIGTERM; waiting for training to save" >&2' TERM

PYTHONPATH="$(dirname "$0")/..":$PYTHONPATH \
srun -p "${PARTITION}" \
    --job-name="${JOB_NAME}" \
    --gres=gpu:"${GPUS_PER_NODE}" \
    --ntasks="${GPUS}" \
    --ntasks-per-node="${GPUS_PER_NODE}" \
    --cpus-per-task="${CPUS_PER_TASK}" \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS} \
    python -u tools/train.py "${CONFIG}" --work-dir="${WORK_DIR}" \
    --launcher="slurm" ${PY_ARGS}
status=$?

if [ "$status" -eq "$EXIT_PREEMPTED" ]; then
    if [ -n "${SLURM_JOB_ID:-}" ]; then
        scontrol requeue "${SLURM_JOB_ID}"
    else
        echo "slurm_train.sh: training was stopped by a signal after saving" \
             "a checkpoint; run the same command with --resume to" \
             "continue" >&2
    fi
fi
exit "$status"
