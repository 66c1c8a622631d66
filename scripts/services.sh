#!/usr/bin/env bash
# Native development services for pantau: Kafka (KRaft, from Maven Central
# jars), PostgreSQL 15 and Mosquitto, all running as plain processes with their
# state under one folder. No containers, no systemd.
#
#   scripts/services.sh install|up|down|status [kafka] [postgres] [mosquitto]
#   scripts/services.sh reload mosquitto   (its users and ACL, after the registry changed)
#
# PANTAU_KAFKA_SASL_PORT and PANTAU_KAFKA_SASL_USERS ("name:password ...") give the broker a
# second listener, SASL_PLAINTEXT with SCRAM-SHA-512 users, for tests of the clients'
# credentials (scripts/lib/kafka.sh); `pantau services up` never sets them.
#
# `pantau services up|down|status` calls this script; keep the interface
# (commands, service names, environment variables, exit codes) stable.
# Exit codes: 0 ok, 1 failure, 2 usage error, 3 `status` found a service stopped.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

# Resolved through symlinks: the repo root is wherever the real script lives.
SCRIPT_PATH=$(realpath -- "${BASH_SOURCE[0]}")
SCRIPT_DIR=$(dirname "$SCRIPT_PATH")
REPO_ROOT=$(dirname "$SCRIPT_DIR")
# Absolute and canonical: the path ends up in the services' command lines,
# which is how we recognise our own processes later.
STATE_DIR=$(realpath -m -- "${PANTAU_STATE_DIR:-$REPO_ROOT/.pantau}")

# shellcheck source=lib/common.sh
source "$SCRIPT_DIR/lib/common.sh"
# shellcheck source=lib/kafka.sh
source "$SCRIPT_DIR/lib/kafka.sh"
# shellcheck source=lib/postgres.sh
source "$SCRIPT_DIR/lib/postgres.sh"
# shellcheck source=lib/mosquitto.sh
source "$SCRIPT_DIR/lib/mosquitto.sh"

ALL_SERVICES=(kafka postgres mosquitto)

usage() {
    cat >&2 <<EOF
usage: $(basename "$0") install|up|down|status|reload [SERVICE...]
services: ${ALL_SERVICES[*]} (default: all)
state dir: $STATE_DIR (PANTAU_STATE_DIR)
kafka with a SCRAM listener: PANTAU_KAFKA_SASL_PORT=PORT PANTAU_KAFKA_SASL_USERS="name:password ..."
EOF
    exit 2
}

status_line() {
    local name=$1 state=$2 pid=$3 addr=$4 data=$5 log=$6
    printf '%-10s %-8s %-10s %-16s data %s   log %s\n' \
        "$name" "$state" "${pid:+pid $pid}" "$addr" "$data" "$log"
}

# Service name -> function prefix.
fn_prefix() {
    case $1 in
        kafka) echo kafka ;;
        postgres) echo pg ;;
        mosquitto) echo mq ;;
    esac
}

# `up` and `down` from two terminals (or the CLI and a human) must not race on
# the same pid files and data dirs. fd 9 holds the lock; every daemon we start
# closes it, so the lock is released when this script exits.
take_lock() {
    mkdir -p "$STATE_DIR"
    exec 9>"$STATE_DIR/.services.lock"
    if ! flock -n 9; then
        say "waiting for another scripts/services.sh run on $STATE_DIR to finish"
        flock -w 300 9 || die "another scripts/services.sh run still holds $STATE_DIR/.services.lock after 300 s"
    fi
}

main() {
    [[ $# -ge 1 ]] || usage
    local command=$1 svc rc=0
    shift
    local services=("$@")
    [[ ${#services[@]} -gt 0 ]] || services=("${ALL_SERVICES[@]}")
    for svc in "${services[@]}"; do
        [[ -n $(fn_prefix "$svc") ]] || {
            say "error: unknown service '$svc' (known: ${ALL_SERVICES[*]})"
            usage
        }
    done

    case $command in
        install)
            take_lock
            for svc in "${services[@]}"; do "$(fn_prefix "$svc")_install"; done
            ;;
        up)
            take_lock
            for svc in "${services[@]}"; do "$(fn_prefix "$svc")_up"; done
            ;;
        down)
            take_lock
            # Reverse of the start order: tear the stack down from the top.
            local i
            for ((i = ${#services[@]} - 1; i >= 0; i--)); do
                "$(fn_prefix "${services[i]}")_down"
            done
            ;;
        reload)
            # Only the MQTT broker has something to reload: its users and ACL.
            take_lock
            for svc in "${services[@]}"; do
                [[ $svc == mosquitto ]] || die "reload: only mosquitto can reload"
                mq_reload
            done
            ;;
        status)
            for svc in "${services[@]}"; do
                "$(fn_prefix "$svc")_status" || rc=3
            done
            return "$rc"
            ;;
        -h | --help | help) usage ;;
        *)
            say "error: unknown command '$command'"
            usage
            ;;
    esac
}

# Turn Ctrl-C and kill into a normal exit so the EXIT trap removes the
# temporary apt guards even then.
trap cleanup_temp_root_files EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
main "$@"
