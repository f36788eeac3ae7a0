#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for testing the SLURM executor against the real thing.
#
#   sudo tests/slurm/local_slurm.sh start                # munged + slurmctld + slurmd; sacct does not work
#   sudo tests/slurm/local_slurm.sh start --accounting   # also MariaDB + slurmdbd, so sacct works
#   sudo tests/slurm/local_slurm.sh stop [--purge]       # stop what `start` started (--purge: and its state)
#   tests/slurm/local_slurm.sh status                    # up or not, and with or without accounting
#
# Debian/Ubuntu only (SLURM, munge and MariaDB come from the distribution's packages, installed on first
# use unless SLURM_SKIP_APT=1), run as root. Everything listens on 127.0.0.1 only. `start` is idempotent
# and switches between the two accounting modes in place (a few seconds: slurmctld and slurmd restart,
# slurmdbd is left running for the next switch back). No cgroups (proctrack/linuxproc, task/none), so it
# also works in containers.
#
# Two settings differ from SLURM's defaults, both so that tests need not wait:
#   AuthInfo=cred_expire   SLURM holds a requeued job this long (default 120 s) before it may start again
#   sched_interval         the main scheduler's period (default 60 s; jobs are also scheduled on submit)
#
# Environment: SLURM_LOCAL_ROOT (state, logs, PID files; default /var/lib/slurm-local),
#   SLURM_PARTITION (default debug), SLURM_CPUS (default: what slurmd -C sees),
#   SLURM_REQUEUE_DELAY_S (cred_expire, default 5), SLURM_SKIP_APT=1 (never call apt-get).
set -euo pipefail

ROOT=${SLURM_LOCAL_ROOT:-/var/lib/slurm-local}
PIDS=$ROOT/pids
LOGS=$ROOT/logs
CONF=/etc/slurm/slurm.conf
DBD_CONF=/etc/slurm/slurmdbd.conf
MARK="# written by tests/slurm/local_slurm.sh"
HOST=$(hostname -s)
T0=$(date +%s)

say() { echo "[local_slurm $(($(date +%s) - T0))s] $*"; }
fail() { echo "local_slurm: error: $*" >&2; exit 1; }
need_root() { [ "$(id -u)" = 0 ] || fail "run as root (sudo $0 $*)"; }

# ---- daemons are tracked by PID file, and a PID counts only while /proc says it is still that program
running() {  # running NAME: the daemon NAME (also its /proc comm) that this script started is alive
  local pid
  pid=$(cat "$PIDS/$1.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ]
}
wait_running() {  # wait_running NAME SECONDS
  local i
  for ((i = 0; i < $2 * 10; i++)); do running "$1" && return 0; sleep 0.1; done
  return 1
}
fresh_files() {  # fresh_files NAME USER: a PID file and a log the daemon can write after dropping to USER
  install -o "$2" -m 0644 /dev/null "$PIDS/$1.pid"
  [ -e "$LOGS/$1.log" ] || install -o "$2" -m 0640 /dev/null "$LOGS/$1.log"
}
halt() {  # halt NAME: SIGTERM, then SIGKILL after 30 s
  local pid i
  running "$1" || { rm -f "$PIDS/$1.pid"; return 0; }
  pid=$(cat "$PIDS/$1.pid")
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do running "$1" || break; sleep 0.1; done
  if running "$1"; then say "$1 ignored SIGTERM for 30 s: SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; sleep 0.5; fi
  rm -f "$PIDS/$1.pid"
  say "stopped $1"
}
launch() {  # launch NAME USER COMMAND...: start a daemon that writes its own PID file
  local name=$1 user=$2; shift 2
  fresh_files "$name" "$user"
  say "starting $name"
  "$@" || fail "$name did not start: $(tail -n 5 "$LOGS/$name.log" 2>/dev/null)"
  wait_running "$name" 30 || fail "$name did not start: $(tail -n 5 "$LOGS/$name.log" 2>/dev/null)"
}

install_packages() {
  local wanted=(munge slurmctld slurmd slurm-client) missing=() p
  [ "$1" = 1 ] && wanted+=(slurmdbd mariadb-server)
  for p in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} = 0 ] && return 0
  command -v apt-get >/dev/null || fail "missing ${missing[*]}, and no apt-get to install them with"
  [ "${SLURM_SKIP_APT:-0}" = 1 ] && fail "missing packages: ${missing[*]} (SLURM_SKIP_APT=1)"
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Containers have no init system: the packages' own services stay down and this script runs the daemons.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$LOGS/apt.log" 2>&1 \
    || fail "apt-get install failed: $(tail -n 5 "$LOGS/apt.log")"
}

start_munge() {
  install -d -o munge -g munge -m 0700 /etc/munge /var/log/munge
  install -d -o munge -g munge -m 0711 /var/lib/munge
  install -d -o munge -g munge -m 0755 /run/munge
  if [ ! -s /etc/munge/munge.key ]; then
    say "creating a munge key"
    mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
      || head -c 1024 /dev/urandom >/etc/munge/munge.key
  fi
  chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
  running munged || launch munged munge runuser -u munge -- /usr/sbin/munged \
    --pid-file="$PIDS/munged.pid" --log-file="$LOGS/munged.log"
  munge -n | unmunge >/dev/null || fail "munge cannot decode its own credential"
}

start_slurmdbd() {
  install -d -o mysql -g mysql -m 0755 /run/mysqld "$ROOT/mysql"
  if [ ! -d "$ROOT/mysql/mysql" ]; then
    say "creating a MariaDB data directory in $ROOT/mysql"
    mariadb-install-db --user=mysql --datadir="$ROOT/mysql" --auth-root-authentication-method=socket \
      --skip-test-db >"$LOGS/mariadb-install.log" 2>&1 || fail "mariadb-install-db failed: see $LOGS"
  fi
  if ! running mariadbd; then
    fresh_files mariadbd mysql
    say "starting mariadbd (unix socket only)"
    setsid /usr/sbin/mariadbd --user=mysql --datadir="$ROOT/mysql" --socket=/run/mysqld/mysqld.sock \
      --skip-networking --pid-file="$PIDS/mariadbd.pid" --log-error="$LOGS/mariadbd.log" \
      </dev/null >/dev/null 2>&1 &
    wait_running mariadbd 30 || fail "mariadbd did not start: $(tail -n 5 "$LOGS/mariadbd.log")"
  fi
  local i
  for ((i = 0; i < 100; i++)); do mariadb -e 'select 1' >/dev/null 2>&1 && break; sleep 0.1; done
  # slurmdbd logs in with a password; the database accepts connections on its unix socket only.
  mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
              CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'local-test-only';
              GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';" || fail "cannot create the slurm database"
  cat >"$DBD_CONF" <<EOF
$MARK
AuthType=auth/munge
DbdHost=$HOST
DbdAddr=127.0.0.1
SlurmUser=slurm
LogFile=$LOGS/slurmdbd.log
PidFile=$PIDS/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=slurm_acct_db
StorageUser=slurm
StoragePass=local-test-only
EOF
  chown slurm:slurm "$DBD_CONF" && chmod 0600 "$DBD_CONF"
  running slurmdbd || launch slurmdbd slurm /usr/sbin/slurmdbd
}

slurm_conf() {  # slurm_conf ACCOUNTING: the whole slurm.conf on stdout
  local cpus mem
  read -r cpus mem < <(/usr/sbin/slurmd -C | head -n 1 | tr ' ' '\n' |
    awk -F= '$1 == "CPUs" {c = $2} $1 == "RealMemory" {m = $2} END {print c, m}')
  cpus=${SLURM_CPUS:-$cpus}
  cat <<EOF
$MARK
ClusterName=local
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
AuthInfo=cred_expire=${SLURM_REQUEUE_DELAY_S:-5}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
JobRequeue=1
ReturnToService=2
StateSaveLocation=$ROOT/slurmctld
SlurmdSpoolDir=$ROOT/slurmd
SlurmctldPidFile=$PIDS/slurmctld.pid
SlurmdPidFile=$PIDS/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
EOF
  if [ "$1" = 1 ]; then
    echo "AccountingStorageType=accounting_storage/slurmdbd"
    echo "AccountingStorageHost=$HOST"
  else
    echo "AccountingStorageType=accounting_storage/none"
  fi
  echo "NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$((mem * 95 / 100)) State=UNKNOWN"
  echo "PartitionName=${SLURM_PARTITION:-debug} Nodes=$HOST Default=YES MaxTime=INFINITE State=UP"
}

register_accounts() {
  local i
  for ((i = 0; i < 30; i++)); do
    sacctmgr -n list cluster format=cluster 2>/dev/null | grep -qw local && break
    sacctmgr -i add cluster local >/dev/null 2>&1 || true
    sleep 1
  done
  sacctmgr -i add account default Cluster=local >/dev/null 2>&1 || true
  for u in root ${SUDO_USER:-}; do sacctmgr -i add user "$u" Account=default >/dev/null 2>&1 || true; done
}

cmd_start() {
  local accounting=0
  case "${1:-}" in
    --accounting) accounting=1 ;;
    "" | --no-accounting) ;;
    *) fail "unknown option $1 (start takes --accounting or --no-accounting)" ;;
  esac
  need_root start
  mkdir -p "$PIDS" "$LOGS"
  install_packages "$accounting"
  if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
    fail "$CONF was not written by this script; not replacing a SLURM configuration that may be in use"
  fi
  start_munge
  [ "$accounting" = 1 ] && start_slurmdbd
  install -d -o slurm -g slurm -m 0755 "$ROOT/slurmctld"
  install -d -m 0755 "$ROOT/slurmd"
  local conf
  conf=$(slurm_conf "$accounting")
  if [ "$(cat "$CONF" 2>/dev/null)" != "$conf" ]; then
    mkdir -p /etc/slurm
    printf '%s\n' "$conf" >"$CONF"
    chmod 0644 "$CONF"
    # Plugins (accounting) change only on a restart; job state survives it in StateSaveLocation.
    halt slurmd
    halt slurmctld
  fi
  running slurmctld || launch slurmctld slurm /usr/sbin/slurmctld
  [ "$accounting" = 1 ] && register_accounts
  running slurmd || launch slurmd root /usr/sbin/slurmd
  local i state=""
  for ((i = 0; i < 60; i++)); do
    state=$(sinfo -h -n "$HOST" -o '%T' 2>/dev/null | head -n 1 || true)
    case "$state" in
      idle* | mixed* | allocated*) break ;;
      down* | drain*) scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true ;;
    esac
    sleep 0.5
  done
  [ "$(timeout 60 srun -N1 -n1 -t 1 hostname 2>&1)" = "$(hostname)" ] \
    || fail "node $HOST is ${state:-unknown} and srun hostname does not work; logs in $LOGS"
  say "ready: one node ($HOST, ${state}), accounting $([ "$accounting" = 1 ] && echo on || echo off)"
}

cmd_stop() {
  need_root stop
  # Jobs first: without slurmd their processes would run on until they end by themselves.
  local jobs
  if running slurmctld && jobs=$(timeout 10 squeue -h -o %A 2>/dev/null | sort -u) && [ -n "$jobs" ]; then
    # shellcheck disable=SC2086
    { timeout 10 scancel --full --signal=KILL $jobs; timeout 10 scancel $jobs; } >/dev/null 2>&1 || true
  fi
  local name
  for name in slurmd slurmctld slurmdbd mariadbd munged; do halt "$name"; done
  if [ "${1:-}" = --purge ]; then
    rm -rf "$ROOT"
    [ -f "$CONF" ] && grep -qF "$MARK" "$CONF" && rm -f "$CONF"
    [ -f "$DBD_CONF" ] && grep -qF "$MARK" "$DBD_CONF" && rm -f "$DBD_CONF"
    say "removed $ROOT and the configuration files"
  fi
}

cmd_status() {
  if ! running slurmctld || ! running slurmd; then echo "down"; return 1; fi
  if grep -q "accounting_storage/slurmdbd" "$CONF"; then echo "up, accounting on"; else echo "up, accounting off"; fi
}

case "${1:-}" in
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  status) cmd_status ;;
  *) echo "usage: $0 start [--accounting] | stop [--purge] | status" >&2; exit 2 ;;
esac
