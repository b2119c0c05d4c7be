#!/usr/bin/env bash
# A three-node MariaDB Galera cluster on loopback ports of this machine, for the Galera tests
# and benchmark. No Docker: three `mariadbd` processes, each with its own defaults file and
# data directory under one scratch folder.
#
#     bash scripts/start-galera.sh            start the cluster (idempotent) and wait until it
#                                             has three members, every one Synced
#     bash scripts/start-galera.sh --node N   (re)start node N (1-3) alone; it joins the running
#                                             cluster by state transfer (IST, else SST)
#     bash scripts/start-galera.sh --status   print each node's state; exit 0 when all synced
#     bash scripts/start-galera.sh --stop     stop every node and remove the scratch folder
#
# Nodes listen for clients on 127.0.0.1:3307, 3308 and 3309 (PROVSTORE_GALERA_PORT: the
# first), as user `provstore` without a password: a throwaway test cluster on loopback only.
# The scratch folder is PROVSTORE_GALERA_DIR (default /tmp/provstore-galera). When no node is
# running the cluster is bootstrapped afresh: its data is for tests, never kept.
#
# Needs the Debian packages mariadb-server, galera-4 and mariadb-backup (state transfer uses
# mariabackup); installs the missing ones when run as root. Memory is kept small (64 MiB
# buffer pool, 32 MiB gcache) so the cluster fits beside the other test servers. Tables without
# a primary key are refused (innodb_force_primary_key): Galera needs one to replicate rows.
set -euo pipefail

DIR=${PROVSTORE_GALERA_DIR:-/tmp/provstore-galera}
FIRST_PORT=${PROVSTORE_GALERA_PORT:-3307}
WAIT_SECONDS=${PROVSTORE_GALERA_WAIT:-180}
NODES=(1 2 3)
PROVIDER=/usr/lib/galera/libgalera_smm.so

say() { printf 'start-galera: %s\n' "$*"; }
die() {
    say "$*"
    exit 1
}

client_port() { echo $((FIRST_PORT + $1 - 1)); }
group_port() { echo $((4567 + ($1 - 1) * 10)); }
ist_port() { echo $((4568 + ($1 - 1) * 10)); }
sst_port() { echo $((4444 + ($1 - 1) * 10)); }
node_dir() { echo "${DIR}/node$1"; }
socket() { echo "$(node_dir "$1")/mysqld.sock"; }
pid_file() { echo "$(node_dir "$1")/mariadbd.pid"; }

ensure_packages() {
    local missing=()
    command -v mariadbd >/dev/null 2>&1 || [[ -x /usr/sbin/mariadbd ]] || missing+=(mariadb-server)
    [[ -e ${PROVIDER} ]] || missing+=(galera-4)
    command -v mariabackup >/dev/null 2>&1 || missing+=(mariadb-backup)
    command -v rsync >/dev/null 2>&1 || missing+=(rsync) # the SST scripts check for it
    ((${#missing[@]} == 0)) && return 0
    if [[ ${EUID} -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        die "missing ${missing[*]}; install them (apt-get install ${missing[*]}) and run again"
    fi
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 ||
        { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq "${missing[@]}" >/dev/null; } ||
        die "could not install ${missing[*]}"
}

server() {
    if command -v mariadbd >/dev/null 2>&1; then command -v mariadbd; else echo /usr/sbin/mariadbd; fi
}

# The client through the node's socket, as the account mariadb-install-db made for the user
# running this script (root, or the non-root user the servers then run as): unix_socket
# authentication, no password.
node_sql() {
    local node=$1
    shift
    mariadb --no-defaults -u"$(id -un)" --socket="$(socket "${node}")" --connect-timeout=3 \
        --batch --skip-column-names "$@"
}

node_running() {
    local pid
    [[ -f $(pid_file "$1") ]] || return 1
    pid=$(cat "$(pid_file "$1")" 2>/dev/null) || return 1
    [[ -n ${pid} ]] && kill -0 "${pid}" 2>/dev/null
}

# "SIZE STATE" of a node, or nothing when it does not answer.
node_state() {
    node_sql "$1" -e "SELECT
        (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS
          WHERE VARIABLE_NAME = 'wsrep_cluster_size'),
        (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS
          WHERE VARIABLE_NAME = 'wsrep_local_state_comment')" 2>/dev/null | tr '\t' ' '
}

all_synced() {
    local node state
    for node in "${NODES[@]}"; do
        state=$(node_state "${node}") || return 1
        [[ ${state} == "3 Synced" ]] || return 1
    done
}

write_config() {
    local node=$1 dir addresses="" other user_line=""
    dir=$(node_dir "${node}")
    for other in "${NODES[@]}"; do
        addresses+="${addresses:+,}127.0.0.1:$(group_port "${other}")"
    done
    [[ ${EUID} -eq 0 ]] && user_line="user = mysql"
    cat >"${dir}/my.cnf" <<EOF
[mysqld]
${user_line}
datadir = ${dir}/data
socket = $(socket "${node}")
pid-file = $(pid_file "${node}")
log-error = ${dir}/error.log
port = $(client_port "${node}")
bind-address = 127.0.0.1
skip-name-resolve
character-set-server = utf8mb4
collation-server = utf8mb4_bin
default-storage-engine = InnoDB
binlog_format = ROW
innodb_autoinc_lock_mode = 2
innodb_buffer_pool_size = 64M
innodb_log_file_size = 48M
innodb_flush_log_at_trx_commit = 1
innodb_force_primary_key = ON
performance_schema = OFF
max_connections = 200
wsrep_on = ON
wsrep_provider = ${PROVIDER}
wsrep_cluster_name = provstore_test
wsrep_cluster_address = gcomm://${addresses}
wsrep_node_name = node${node}
wsrep_node_address = 127.0.0.1:$(group_port "${node}")
wsrep_node_incoming_address = 127.0.0.1:$(client_port "${node}")
wsrep_provider_options = "gmcast.listen_addr=tcp://127.0.0.1:$(group_port "${node}");ist.recv_addr=127.0.0.1:$(ist_port "${node}");gcache.size=32M;evs.suspect_timeout=PT3S;evs.inactive_timeout=PT6S;pc.wait_prim_timeout=PT30S"
wsrep_sst_method = mariabackup
wsrep_sst_receive_address = 127.0.0.1:$(sst_port "${node}")
wsrep_slave_threads = 2

[sst]
sockopt = ",reuseaddr"

[mariabackup]
socket = $(socket "${node}")
EOF
}

prepare_node() {
    local node=$1 dir
    dir=$(node_dir "${node}")
    mkdir -p "${dir}/data"
    write_config "${node}"
    if [[ ! -d ${dir}/data/mysql ]]; then
        mariadb-install-db --defaults-file="${dir}/my.cnf" --skip-test-db \
            --auth-root-authentication-method=socket >"${dir}/install.log" 2>&1 ||
            die "node${node}: mariadb-install-db failed (see ${dir}/install.log)"
    fi
    [[ ${EUID} -eq 0 ]] && chown -R mysql:mysql "${dir}"
    return 0
}

launch() {
    local node=$1
    shift
    say "node${node}: starting on 127.0.0.1:$(client_port "${node}") $*"
    setsid "$(server)" --defaults-file="$(node_dir "${node}")/my.cnf" "$@" \
        </dev/null >>"$(node_dir "${node}")/console.log" 2>&1 &
}

wait_until() {
    local what=$1 i
    shift
    for ((i = 0; i < WAIT_SECONDS; i++)); do
        if "$@"; then
            say "${what} after ${i}s"
            return 0
        fi
        sleep 1
    done
    return 1
}

node_answers() { [[ -n $(node_state "$1") ]]; }
node_synced() { [[ $(node_state "$1") == *" Synced" ]]; }

grant_test_user() {
    # Replicated to the joiners by state transfer and by Galera itself.
    node_sql 1 -e "CREATE USER IF NOT EXISTS 'provstore'@'127.0.0.1';
                   GRANT ALL PRIVILEGES ON *.* TO 'provstore'@'127.0.0.1';"
    if [[ ${EUID} -eq 0 ]]; then
        # The servers run as mysql; mariabackup (state transfer) connects as that OS user.
        node_sql 1 -e "CREATE USER IF NOT EXISTS 'mysql'@'localhost' IDENTIFIED VIA unix_socket;
                       GRANT RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR, SLAVE MONITOR
                           ON *.* TO 'mysql'@'localhost';"
    fi
}

# The position a node's InnoDB holds (uuid:seqno), found by `mariadbd --wsrep-recover`: after
# a crash (kill -9) grastate.dat says seqno -1, and a node started without its position asks
# for a full state snapshot (SST) instead of the missing write sets only (IST).
recovered_position() {
    local node=$1 log
    log="$(node_dir "${node}")/recover.log"
    [[ -f $(node_dir "${node}")/data/grastate.dat ]] || return 0
    "$(server)" --defaults-file="$(node_dir "${node}")/my.cnf" --wsrep-recover \
        --log-error="${log}" >/dev/null 2>&1 || return 0
    sed -n 's/.*WSREP: Recovered position: *\([0-9a-f-]*:-\{0,1\}[0-9]*\).*/\1/p' "${log}" | tail -1
}

start_node() {
    local node=$1 position
    if node_running "${node}"; then
        say "node${node}: already running"
        return 0
    fi
    prepare_node "${node}"
    position=$(recovered_position "${node}")
    if [[ -n ${position} && ${position} != *:-1 ]]; then
        [[ ${EUID} -eq 0 ]] && chown -R mysql:mysql "$(node_dir "${node}")"
        launch "${node}" --wsrep-start-position="${position}"
    else
        launch "${node}"
    fi
    wait_until "node${node}: synced" node_synced "${node}" ||
        die "node${node}: not synced after ${WAIT_SECONDS}s; see $(node_dir "${node}")/error.log"
}

start_cluster() {
    local node running=()
    ensure_packages
    for node in "${NODES[@]}"; do
        node_running "${node}" && running+=("${node}")
    done
    if ((${#running[@]} == 0)); then
        rm -rf "${DIR}"
        mkdir -p "${DIR}"
        [[ ${EUID} -eq 0 ]] && chown mysql:mysql "${DIR}"
        prepare_node 1
        launch 1 --wsrep-new-cluster
        wait_until "node1: bootstrapped" node_synced 1 ||
            die "node1: did not bootstrap in ${WAIT_SECONDS}s; see $(node_dir 1)/error.log"
        grant_test_user
    fi
    for node in "${NODES[@]}"; do
        start_node "${node}"
    done
    wait_until "cluster: 3 nodes, all Synced" all_synced ||
        die "the cluster did not reach 3 synced nodes in ${WAIT_SECONDS}s: $(show_status)"
}

show_status() {
    local node
    for node in "${NODES[@]}"; do
        printf 'node%s 127.0.0.1:%s %s\n' "${node}" "$(client_port "${node}")" \
            "$(node_state "${node}" || true)"
    done
}

stop_cluster() {
    local node pid i
    for node in 3 2 1; do
        node_running "${node}" || continue
        pid=$(cat "$(pid_file "${node}")")
        say "node${node}: stopping (pid ${pid})"
        kill "${pid}" 2>/dev/null || true
        for ((i = 0; i < 60; i++)); do
            kill -0 "${pid}" 2>/dev/null || break
            sleep 1
        done
        kill -9 "${pid}" 2>/dev/null || true
    done
    rm -rf "${DIR}"
    say "stopped; removed ${DIR}"
}

case "${1:-}" in
"") start_cluster ;;
--stop) stop_cluster ;;
--status)
    show_status
    all_synced
    ;;
--node)
    [[ ${2:-} =~ ^[123]$ ]] || die "--node takes 1, 2 or 3"
    ensure_packages
    start_node "$2"
    ;;
*) die "usage: $0 [--stop | --status | --node N]" ;;
esac
