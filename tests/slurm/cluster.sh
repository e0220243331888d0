#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine for the tests (root, no systemd).
#   cluster.sh install      apt-get the daemons (skips what is installed)
#   cluster.sh start DIR    write DIR/slurm.conf, start munged, slurmctld, slurmd; wait for idle
#   cluster.sh stop DIR     stop what `start` started, by PID (slurmd first)
# The configuration goes to /etc/slurm/slurm.conf (where job steps look for it), marked as
# ours; a configuration that is not ours is never overwritten.
set -euo pipefail
cmd=${1:?install|start|stop}
dir=${2:-}

wait_for() {  # wait_for SECONDS COMMAND...
    local deadline=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

case "$cmd" in
install)
    if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null \
        || ! command -v munged >/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
    fi
    ;;
start)
    [ -n "$dir" ] || { echo "usage: $0 start DIR" >&2; exit 2; }
    mkdir -p "$dir"/{state,spool,log}
    host=$(hostname -s)
    getent hosts "$host" >/dev/null || echo "127.0.0.1 $host" >>/etc/hosts
    cpus=$(nproc)
    mem=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
    mem=$((mem * 9 / 10))
    conf=/etc/slurm/slurm.conf
    if [ -s "$conf" ] && ! grep -q "^# gatys test cluster" "$conf"; then
        echo "$conf exists and is not the gatys test cluster's; not touching it" >&2
        exit 3
    fi
    mkdir -p /etc/slurm
    cat >"$conf" <<CONF
# gatys test cluster (tests/slurm/cluster.sh); state in $dir
ClusterName=gatystest
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldPort=$((6817 + RANDOM % 500 * 2))
SlurmdPort=$((7818 + RANDOM % 500 * 2))
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
MinJobAge=300
ReturnToService=2
MailProg=/bin/true
GresTypes=gpu
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
    # Two fake GPUs so GPU requests schedule (a job sees CUDA_VISIBLE_DEVICES=0 or 1).
    printf 'NodeName=%s Name=gpu File=%s\n' "$host" /dev/null "$host" /dev/zero >/etc/slurm/gres.conf
    if [ ! -s /etc/munge/munge.key ]; then
        mungekey -c -f -k /etc/munge/munge.key
        chown munge:munge /etc/munge/munge.key
    fi
    if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        mkdir -p /run/munge && chown munge:munge /run/munge
        runuser -u munge -- /usr/sbin/munged
        echo started >"$dir/munged.started"
        wait_for 10 sh -c 'munge -n | unmunge'
    fi
    /usr/sbin/slurmctld
    wait_for 20 scontrol ping
    /usr/sbin/slurmd
    wait_for 30 sh -c '[ "$(sinfo -h -o %t)" = idle ]' || { tail -20 "$dir"/log/*.log >&2; exit 1; }
    ;;
stop)
    [ -n "$dir" ] || { echo "usage: $0 stop DIR" >&2; exit 2; }
    for daemon in slurmd slurmctld; do
        pidfile="$dir/$daemon.pid"
        if [ -s "$pidfile" ]; then
            pid=$(cat "$pidfile")
            kill "$pid" 2>/dev/null || true
            wait_for 15 sh -c "! kill -0 $pid" || kill -9 "$pid" 2>/dev/null || true
        fi
    done
    if [ -f "$dir/munged.started" ] && [ -s /run/munge/munged.pid ]; then
        kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true
    fi
    ;;
*)
    echo "usage: $0 install|start DIR|stop DIR" >&2
    exit 2
    ;;
esac
