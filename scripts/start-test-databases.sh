#!/usr/bin/env bash
# Make sure the PostgreSQL and MariaDB servers the test suite uses are up and have a `test`
# database. Idempotent: a server that already answers is left alone. No Docker.
#
# A server that is not installed (or will not start) is reported and skipped, so that the SQLite
# tests still run on a laptop without it; with CI=true the script exits 1 instead, because CI
# must exercise every backend.
set -euo pipefail

PG_HOST=127.0.0.1
PG_PORT=5432
MYSQL_HOST=127.0.0.1
MYSQL_PORT=3306
TEST_DB="test"
WAIT_SECONDS=30

problems=0

say() { printf 'start-test-databases: %s\n' "$*"; }

# A server that is missing or broken: fatal in CI, a warning elsewhere.
problem() {
    say "$*"
    problems=$((problems + 1))
}

# Run a command as root: directly when we are root, through passwordless sudo otherwise.
as_root() {
    if [[ ${EUID} -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        say "need root to run: $* (not root, and no passwordless sudo)"
        return 1
    fi
}

# wait_for NAME CHECK-COMMAND...: poll until the check succeeds or WAIT_SECONDS have passed.
wait_for() {
    local name=$1
    shift
    local i
    for ((i = 0; i < WAIT_SECONDS; i++)); do
        if "$@" >/dev/null 2>&1; then
            say "${name}: answering after ${i}s"
            return 0
        fi
        sleep 1
    done
    return 1
}

# --- PostgreSQL ---------------------------------------------------------------------------

pg_answers() { pg_isready -q -h "${PG_HOST}" -p "${PG_PORT}"; }

# The Debian clusters (VERSION NAME) listening on PG_PORT, or every `main` cluster as fallback.
pg_clusters() {
    if command -v pg_lsclusters >/dev/null 2>&1; then
        pg_lsclusters --no-header | awk -v port="${PG_PORT}" '$3 == port { print $1, $2 }'
    elif [[ -d /etc/postgresql ]]; then
        local version
        for version in /etc/postgresql/*/main; do
            [[ -d ${version} ]] && printf '%s main\n' "$(basename "$(dirname "${version}")")"
        done
    fi
}

pg_start() {
    local clusters version cluster
    clusters=$(pg_clusters)
    if [[ -z ${clusters} ]]; then
        say "PostgreSQL: no cluster configured for port ${PG_PORT} (see pg_lsclusters)"
        return 1
    fi
    while read -r version cluster; do
        say "PostgreSQL: starting cluster ${version}/${cluster}"
        as_root pg_ctlcluster --skip-systemctl-redirect "${version}" "${cluster}" start || true
    done <<<"${clusters}"
    wait_for PostgreSQL pg_answers
}

pg_psql() {
    PGCONNECT_TIMEOUT=5 psql -X -q -w -v ON_ERROR_STOP=1 -h "${PG_HOST}" -p "${PG_PORT}" \
        -U postgres -d postgres "$@"
}

pg_ensure_database() {
    local exists
    if ! exists=$(pg_psql -tAc "SELECT 1 FROM pg_database WHERE datname = '${TEST_DB}'"); then
        problem "PostgreSQL: cannot connect as user postgres (error above)"
        return
    fi
    if [[ ${exists} == 1 ]]; then
        say "PostgreSQL: database ${TEST_DB} exists"
    elif pg_psql -c "CREATE DATABASE ${TEST_DB}"; then
        say "PostgreSQL: created database ${TEST_DB}"
    else
        problem "PostgreSQL: could not create database ${TEST_DB}"
    fi
}

setup_postgresql() {
    if ! command -v pg_isready >/dev/null 2>&1 || ! command -v psql >/dev/null 2>&1; then
        problem "PostgreSQL: not installed (no pg_isready/psql); its tests will be skipped." \
            "Install it with: apt-get install postgresql"
        return
    fi
    if pg_answers; then
        say "PostgreSQL: already running at ${PG_HOST}:${PG_PORT}"
    elif ! command -v pg_ctlcluster >/dev/null 2>&1; then
        problem "PostgreSQL: not answering at ${PG_HOST}:${PG_PORT} and no server installed" \
            "(no pg_ctlcluster); its tests will be skipped. Install: apt-get install postgresql"
        return
    elif ! pg_start; then
        problem "PostgreSQL: not answering at ${PG_HOST}:${PG_PORT} and could not be started" \
            "(waited up to ${WAIT_SECONDS}s); see /var/log/postgresql/ for why"
        return
    fi
    pg_ensure_database
}

# --- MariaDB ------------------------------------------------------------------------------

first_command() {
    local name
    for name in "$@"; do
        if command -v "${name}" >/dev/null 2>&1; then
            command -v "${name}"
            return 0
        fi
    done
    return 1
}

mysql_answers() {
    "${MYSQL_ADMIN}" -h"${MYSQL_HOST}" -P"${MYSQL_PORT}" -uroot --connect-timeout=3 ping
}

mysql_start() {
    local server=$1
    say "MariaDB: starting ${server}"
    as_root mkdir -p /run/mysqld || return 1
    as_root chown mysql:mysql /run/mysqld || return 1
    as_root start-stop-daemon --start --oknodo --background --exec "${server}" || return 1
    wait_for MariaDB mysql_answers
}

mysql_sql() {
    "${MYSQL_CLIENT}" -h"${MYSQL_HOST}" -P"${MYSQL_PORT}" -uroot --connect-timeout=5 \
        --batch --skip-column-names -e "$1"
}

mysql_ensure_database() {
    local exists
    if ! exists=$(mysql_sql "SELECT 1 FROM information_schema.SCHEMATA
                             WHERE SCHEMA_NAME = '${TEST_DB}'"); then
        problem "MariaDB: cannot connect as root with no password (error above)"
        return
    fi
    if [[ ${exists} == 1 ]]; then
        say "MariaDB: database ${TEST_DB} exists"
    elif mysql_sql "CREATE DATABASE IF NOT EXISTS ${TEST_DB}
                    CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"; then
        say "MariaDB: created database ${TEST_DB} (utf8mb4, utf8mb4_bin)"
    else
        problem "MariaDB: could not create database ${TEST_DB}"
    fi
}

setup_mariadb() {
    local server
    if ! MYSQL_ADMIN=$(first_command mariadb-admin mysqladmin) ||
        ! MYSQL_CLIENT=$(first_command mariadb mysql); then
        problem "MariaDB: not installed (no mariadb-admin/mariadb client); its tests will be" \
            "skipped. Install it with: apt-get install mariadb-server"
        return
    fi
    if mysql_answers >/dev/null 2>&1; then
        say "MariaDB: already running at ${MYSQL_HOST}:${MYSQL_PORT}"
    elif ! server=$(first_command mariadbd mysqld /usr/sbin/mariadbd /usr/sbin/mysqld); then
        problem "MariaDB: not answering at ${MYSQL_HOST}:${MYSQL_PORT} and no server installed" \
            "(no mariadbd); its tests will be skipped. Install: apt-get install mariadb-server"
        return
    elif ! mysql_start "${server}"; then
        problem "MariaDB: not answering at ${MYSQL_HOST}:${MYSQL_PORT} and could not be started" \
            "(waited up to ${WAIT_SECONDS}s); run ${server} in the foreground to see why"
        return
    fi
    mysql_ensure_database
}

# --- main -----------------------------------------------------------------------------------

setup_postgresql
setup_mariadb

if ((problems > 0)); then
    if [[ ${CI:-} == true ]]; then
        say "${problems} problem(s) above; CI=true, so every backend is required: failing"
        exit 1
    fi
    say "${problems} problem(s) above; the affected backends' tests will be skipped"
fi
exit 0
