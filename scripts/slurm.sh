#!/usr/bin/env bash
# A real single-host Slurm cluster (Debian's slurm-wlm + munge; slurmctld and slurmd on this host),
# for the sweep tests and for trying `reproexec sweep --executor slurm` on one machine. Idempotent:
# a running cluster is left alone; a slurm.conf that this script did not write is never replaced.
#
# Accounting: no slurmdbd (it needs a MySQL/MariaDB server). `sacct` reads finished jobs from the
# job-completion file instead (`JobCompType=jobcomp/filetxt`, read with `sacct --completion`), and
# pending/running jobs come from `squeue`; reproexec asks both (see reproexec/sweep/slurm.py).
set -euo pipefail
conf=/etc/slurm/slurm.conf
marker="# written by reproexec scripts/slurm.sh"
log_dir=/var/log/slurm
node=$(hostname -s)

ready() {
  scontrol ping 2>/dev/null | grep -q "is UP" || return 1
  sinfo -h -n "$node" -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated|completing)'
}

if command -v scontrol >/dev/null 2>&1 && ready; then
  echo "slurm: already running"; exit 0
fi

if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
  echo "slurm: installing slurm-wlm and munge (Debian)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi

mkdir -p /etc/slurm "$log_dir" /var/spool/slurmctld /var/spool/slurmd
if [ -f "$conf" ] && ! grep -qF "$marker" "$conf"; then
  echo "slurm: $conf was not written by reproexec; using it as it is"
else
  # One node = this host, with what slurmd sees of it; CR_Core: memory is checked, not consumed,
  # so a job without --mem does not take the whole node.
  hw=$(slurmd -C | head -n 1 | sed -e 's/^NodeName=[^ ]* //' -e 's/ UpTime=.*//')
  cat >"$conf.tmp" <<EOF
$marker
ClusterName=reproexec
SlurmctldHost=$node
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=$log_dir/slurmctld.log
SlurmdLogFile=$log_dir/slurmd.log
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$log_dir/jobcomp.log
JobAcctGatherType=jobacct_gather/none
ReturnToService=2
NodeName=$node $hw State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  mv "$conf.tmp" "$conf"
fi

# munge: one key per cluster (here: per machine), owned by the munge user.
if [ ! -s /etc/munge/munge.key ]; then
  mungekey --create --keyfile=/etc/munge/munge.key
fi
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
mkdir -p /run/munge && chown munge:munge /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  echo "slurm: starting munged"
  runuser -u munge -- /usr/sbin/munged
fi

if ! scontrol ping 2>/dev/null | grep -q "is UP"; then
  echo "slurm: starting slurmctld (log: $log_dir/slurmctld.log)"
  slurmctld
fi
if [ ! -f /run/slurmd.pid ] || ! kill -0 "$(cat /run/slurmd.pid)" 2>/dev/null; then
  echo "slurm: starting slurmd (log: $log_dir/slurmd.log)"
  slurmd
fi

for _ in $(seq 1 60); do
  if ready; then echo "slurm: ready (node $node, partition debug)"; exit 0; fi
  # A node left down by an earlier unclean stop comes back once it answers.
  if sinfo -h -n "$node" -o %T 2>/dev/null | grep -qE '^(down|drain)'; then
    scontrol update NodeName="$node" State=RESUME >/dev/null 2>&1 || true
  fi
  sleep 1
done
echo "slurm: the cluster did not become ready within 60 s" >&2
sinfo >&2 || true
tail -n 20 "$log_dir/slurmctld.log" "$log_dir/slurmd.log" >&2 || true
exit 1
