#!/usr/bin/env bash
# A one-node SLURM cluster on this machine (Debian's slurm-wlm with munge), to run the workflow through
# workflow/profiles/slurm end to end without a real cluster. Run as root; daemons are started by hand (no systemd).
#
#   workflow/profiles/slurm/single-node-cluster.sh start   # install if missing, write slurm.conf, start, wait
#   workflow/profiles/slurm/single-node-cluster.sh stop    # stop the daemons this script started
#
# Cluster `onmerge-local` (tests/test_slurm_profile.py runs its live test only there). Partition `debug` (the
# default) is this host with the CPUs and memory `slurmd -C` measures and no GPUs. Partition `paper` is a GPU node
# that never starts: a paper preset's jobs sent there are accepted and wait, so `scontrol show job` shows how SLURM
# reads their flags (GPUs, CPUs per GPU, memory, time) without running anything.
# There is no slurmdbd (accounting_storage/none): `sacct` exits with "Slurm accounting storage is disabled", so the
# executor plugin must poll with `--slurm-status-command squeue`, and squeue keeps finished jobs for MinJobAge, which
# the plugin wants at least three status intervals (3 x 40 s by default). Finished jobs are logged with the resources
# they were given (jobcomp/filetxt) to /var/log/slurm/jobcomp.log.
# No cgroups (a VM or container rarely delegates them): processes are tracked through /proc, memory is not enforced.
# `start` leaves running daemons alone; `stop` first to apply a changed slurm.conf.
set -euo pipefail

PARTITION=debug
PAPER_PARTITION=paper
PAPER_NODE=gpu8
CONF_DIR=/etc/slurm
LOG_DIR=/var/log/slurm
JOBCOMP_LOG="$LOG_DIR/jobcomp.log"
MIN_JOB_AGE_SECONDS=3600

die() {
    echo "single-node-cluster: $*" >&2
    exit 1
}

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
        return
    fi
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slurm-wlm munge
}

start_munge() {
    if munge -n </dev/null >/dev/null 2>&1; then
        return  # a munged already answers
    fi
    [[ -s /etc/munge/munge.key ]] || mungekey --create --keyfile /etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
    runuser -u munge -- /usr/sbin/munged
    munge -n </dev/null | unmunge >/dev/null || die "munged started but does not decode its own credential"
}

write_config() {
    local host node_line
    host="$(hostname -s)"
    # `slurmd -C` prints this host's node definition (CPUs, sockets, cores, threads, RealMemory); its first line only.
    node_line="$(slurmd -C | head -n 1)"
    [[ "$node_line" == NodeName=* ]] || die "slurmd -C did not describe this node: $node_line"
    install -d -o slurm -g slurm -m 0755 "$LOG_DIR" /var/spool/slurmctld
    install -d -o root -g root -m 0755 /var/spool/slurmd
    cat >"$CONF_DIR/slurm.conf" <<EOF
# Written by workflow/profiles/slurm/single-node-cluster.sh: one node, this host, no GPUs, no accounting database.
ClusterName=onmerge-local
SlurmctldHost=$host
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$JOBCOMP_LOG
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MinJobAge=$MIN_JOB_AGE_SECONDS
ReturnToService=2
GresTypes=gpu
$node_line State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
# A paper-size GPU node that never starts (its address is unroutable): a paper preset's jobs submitted to partition
# $PAPER_PARTITION are accepted and wait, so scontrol show job shows how SLURM reads their flags; nothing runs.
NodeName=$PAPER_NODE NodeAddr=192.0.2.1 CPUs=128 RealMemory=1000000 Gres=gpu:8 State=DOWN
PartitionName=$PAPER_PARTITION Nodes=$PAPER_NODE MaxTime=INFINITE State=UP
EOF
}

start_slurm() {
    pgrep -x slurmctld >/dev/null || slurmctld
    pgrep -x slurmd >/dev/null || slurmd
    local host
    host="$(hostname -s)"
    for _ in $(seq 30); do
        if [[ "$(sinfo --noheader --nodes "$host" --format %t 2>/dev/null)" =~ ^(idle|mix|alloc) ]]; then
            sinfo
            echo "single-node-cluster: up; finished jobs are logged to $JOBCOMP_LOG"
            return
        fi
        sleep 1
    done
    sinfo --long --Node || true
    die "node $host did not become idle in 30 s; see $LOG_DIR/slurmctld.log and $LOG_DIR/slurmd.log"
}

stop_slurm() {
    local daemon pid
    for daemon in slurmd slurmctld; do
        pid="$(cat "/run/$daemon.pid" 2>/dev/null || true)"
        [[ -n "$pid" ]] && kill "$pid" 2>/dev/null && echo "single-node-cluster: stopped $daemon ($pid)"
    done
    return 0
}

[[ "$(id -u)" == 0 ]] || die "run as root (installs packages and starts daemons)"
case "${1:-start}" in
    start)
        install_packages
        start_munge
        pgrep -x slurmctld >/dev/null || write_config
        start_slurm
        ;;
    stop) stop_slurm ;;
    *) die "usage: $0 [start|stop]" ;;
esac
