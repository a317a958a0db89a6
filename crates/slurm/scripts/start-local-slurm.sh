#!/usr/bin/env bash
# Starts a one-host Slurm (slurmctld + slurmd + MUNGE) on this machine for Switchyard's
# integration tests. Idempotent: running it again with Slurm up only checks that the node is
# usable. Needs root and Debian's packages (`apt-get install -y slurm-wlm munge`, 22.05 on
# bookworm); INSTALL=1 installs them when they are missing.
#
# Writes /etc/slurm/slurm.conf (only when absent or written by this script), one node named
# after this host with this machine's CPUs and memory, one partition `debug` (default), no
# accounting. Exits non-zero with a message when Slurm cannot be started.
set -euo pipefail

say() { echo "start-local-slurm: $*"; }
die() { echo "start-local-slurm: ERROR: $*" >&2; exit 1; }

if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
  if [ "${INSTALL:-0}" = 1 ]; then
    say "installing slurm-wlm and munge from the distribution"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq slurm-wlm munge >/dev/null
  else
    die "slurmctld/munged not installed (apt-get install -y slurm-wlm munge, or INSTALL=1)"
  fi
fi
[ "$(id -u)" = 0 ] || die "must run as root (slurmd starts jobs as their users)"

HOST="$(hostname -s)"
CPUS="$(nproc)"
MEM_MB="$(awk '/MemTotal/ {print int($2/1024*0.9)}' /proc/meminfo)"
CONF=/etc/slurm/slurm.conf
MARK="# written by switchyard start-local-slurm.sh"

# MUNGE: a key, then the daemon.
if [ ! -s /etc/munge/munge.key ]; then
  say "creating /etc/munge/munge.key"
  mkdir -p /etc/munge
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
mkdir -p /run/munge /var/lib/munge /var/log/munge
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 0700 /etc/munge /var/lib/munge /var/log/munge
chmod 0400 /etc/munge/munge.key
chmod 0755 /run/munge
if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
  say "starting munged"
  if id munge >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged --force || die "munged did not start"
  else
    /usr/sbin/munged --force || die "munged did not start"
  fi
  for _ in $(seq 1 20); do munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.25; done
  munge -n </dev/null | unmunge >/dev/null 2>&1 || die "munged does not answer"
else
  say "munged already running"
fi

# The key of JSON Web Tokens (AuthAltTypes=auth/jwt), for slurmrestd's clients: made once.
JWT_KEY=/etc/slurm/jwt_hs256.key
if [ ! -s "$JWT_KEY" ]; then
  say "creating $JWT_KEY"
  mkdir -p /etc/slurm
  dd if=/dev/urandom bs=32 count=1 of="$JWT_KEY" status=none
fi
chmod 0600 "$JWT_KEY"

# Configuration.
if [ ! -f "$CONF" ] || head -1 "$CONF" | grep -qF "$MARK"; then
  say "writing $CONF (node $HOST, $CPUS CPUs, ${MEM_MB} MB)"
  mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/slurm
  cat >"$CONF.new" <<CONFEOF
$MARK
ClusterName=switchyard-local
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthAltTypes=auth/jwt
AuthAltParameters=jwt_key=$JWT_KEY
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmdSpoolDir=/var/spool/slurmd
StateSaveLocation=/var/spool/slurmctld
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=300
MaxJobCount=100000
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
Waittime=0
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,max_rpc_cnt=0
NodeName=$HOST NodeAddr=127.0.0.1 NodeHostname=$HOST CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONFEOF
  CHANGED=0
  if [ -f "$CONF" ] && cmp -s "$CONF" "$CONF.new"; then rm -f "$CONF.new"; else mv "$CONF.new" "$CONF"; CHANGED=1; fi
  # Debian's packages ship no cgroup.conf; linuxproc/task none need none.
else
  say "$CONF exists and was not written by this script; using it as it is"
fi

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

if running /run/slurm/slurmctld.pid && [ "${CHANGED:-0}" = 1 ]; then
  # Authentication plugins are loaded at start: a reconfigure is not enough.
  say "configuration changed: restarting slurmctld"
  kill "$(cat /run/slurm/slurmctld.pid)" || true
  for _ in $(seq 1 50); do running /run/slurm/slurmctld.pid || break; sleep 0.2; done
fi
if running /run/slurm/slurmctld.pid; then
  say "slurmctld already running"
else
  say "starting slurmctld"
  /usr/sbin/slurmctld -i || die "slurmctld did not start; see /var/log/slurm/slurmctld.log"
fi
if running /run/slurm/slurmd.pid; then
  say "slurmd already running"
else
  say "starting slurmd"
  /usr/sbin/slurmd || die "slurmd did not start; see /var/log/slurm/slurmd.log"
fi

say "waiting for node $HOST to be idle"
for i in $(seq 1 60); do
  state="$(sinfo -h -n "$HOST" -o '%T' 2>/dev/null | head -1 || true)"
  case "$state" in
    idle|mixed|allocated) break ;;
    down*|drain*|fail*)
      say "node is $state; resuming it"
      scontrol update nodename="$HOST" state=resume 2>/dev/null || true ;;
  esac
  sleep 1
done
state="$(sinfo -h -n "$HOST" -o '%T' 2>/dev/null | head -1 || true)"
case "$state" in
  idle|mixed|allocated) ;;
  *) tail -20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
     die "node $HOST is '${state:-not reported}' after 60 s; Slurm is not usable" ;;
esac
sinfo
say "Slurm is up: node $HOST is $state"

# slurmrestd (optional: Debian's package `slurmrestd`), for the REST client's live test. It
# refuses to run as root or SlurmUser, so it runs as nobody; clients authenticate with a JWT
# (`scontrol token`). A failure here is reported, not fatal: the REST test then skips.
REST_ADDR=127.0.0.1:6820
if command -v slurmrestd >/dev/null 2>&1; then
  if running /run/slurm/slurmrestd.pid; then
    say "slurmrestd already running on $REST_ADDR"
  else
    say "starting slurmrestd on $REST_ADDR"
    # From /: a daemon whose working directory is later deleted (a test's scratch dir, a
    # removed checkout) fails every submission with "getcwd failed".
    pushd / >/dev/null
    SLURM_JWT=daemon setsid nohup /usr/sbin/slurmrestd -a rest_auth/jwt -s openapi/v0.0.38 \
      -u nobody -g nogroup "$REST_ADDR" >/var/log/slurm/slurmrestd.log 2>&1 </dev/null &
    echo $! >/run/slurm/slurmrestd.pid
    popd >/dev/null
    for _ in $(seq 1 25); do
      token="$(scontrol token username=root lifespan=60 2>/dev/null | sed -n 's/^SLURM_JWT=//p')"
      if [ -n "$token" ] && curl -sf -H "X-SLURM-USER-NAME: root" -H "X-SLURM-USER-TOKEN: $token" \
          "http://$REST_ADDR/slurm/v0.0.38/ping" >/dev/null 2>&1; then
        say "slurmrestd answers on $REST_ADDR"
        break
      fi
      sleep 0.2
    done
    running /run/slurm/slurmrestd.pid || { say "WARNING: slurmrestd did not start:"; tail -5 /var/log/slurm/slurmrestd.log || true; }
  fi
else
  say "slurmrestd not installed (apt-get install slurmrestd); the REST client's live test will skip"
fi
