# shellcheck shell=bash
# Shared helpers for scripts/services.sh. Sourced, never executed.

say() { printf '%s\n' "$*" >&2; }

die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# Start failures are only debuggable with the service's own words, so show them.
die_with_log() {
    local log=$1
    shift
    printf 'error: %s\n' "$*" >&2
    if [[ -s $log ]]; then
        printf -- '--- last 30 lines of %s ---\n' "$log" >&2
        tail -n 30 "$log" >&2
        printf -- '--- end of %s ---\n' "$log" >&2
    fi
    exit 1
}

is_root() { [[ $EUID -eq 0 ]]; }

# Installing packages is the only step that needs root. A developer running as
# themselves gets sudo if it works without a password prompt, otherwise a clear
# instruction instead of a hanging prompt inside `pantau services up`.
as_root() {
    if is_root; then
        "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        die "root is needed to run '$*'; run 'sudo $SCRIPT_PATH install' once, then retry"
    fi
}

# Files and folders we create outside the state dir for the duration of one
# run (the apt guards). Removed on every exit path, including failures and Ctrl-C.
TEMP_ROOT_FILES=()
cleanup_temp_root_files() {
    local i f
    # Newest first, so a file goes before the folder we made for it.
    for ((i = ${#TEMP_ROOT_FILES[@]} - 1; i >= 0; i--)); do
        f=${TEMP_ROOT_FILES[i]}
        if [[ -d $f ]]; then
            as_root rmdir --ignore-fail-on-non-empty -- "$f" || true
        else
            as_root rm -f -- "$f" || true
        fi
    done
    TEMP_ROOT_FILES=()
}

APT_UPDATED=0
# apt-get install without side effects on the machine's services: package
# maintainer scripts ask invoke-rc.d before starting a daemon, and invoke-rc.d
# obeys /usr/sbin/policy-rc.d. Exit code 101 there means "do not start". We only
# add that guard when the machine has none, and take it away again afterwards.
apt_install() {
    local pkgs=("$@") log="$STATE_DIR/logs/apt.log"
    command -v apt-get >/dev/null 2>&1 ||
        die "apt-get not found; install ${pkgs[*]} by hand (this script knows Debian packages only)"
    mkdir -p "$STATE_DIR/logs"

    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        TEMP_ROOT_FILES+=(/usr/sbin/policy-rc.d)
        as_root sh -c 'printf "#!/bin/sh\n# temporary, from pantau scripts/services.sh\nexit 101\n" >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d'
    fi

    if [[ $APT_UPDATED -eq 0 ]]; then
        say "apt: apt-get update (log: $log)"
        if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$log" 2>&1; then
            cleanup_temp_root_files
            die_with_log "$log" "apt-get update failed"
        fi
        APT_UPDATED=1
    fi
    say "apt: installing ${pkgs[*]}"
    if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${pkgs[@]}" >>"$log" 2>&1; then
        cleanup_temp_root_files
        die_with_log "$log" "apt-get install ${pkgs[*]} failed"
    fi
    cleanup_temp_root_files
}

# --- processes -----------------------------------------------------------------

cmdline_of() {
    [[ -r /proc/$1/cmdline ]] || return 1
    tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null
}

# A pid only counts as ours when the process is alive and its command line
# names our own config or data path: pids get reused, and a pid file that
# outlived its process must never lead us to signal a stranger.
pid_is_ours() {
    local pid=$1 needle=$2 cmd
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    cmd=$(cmdline_of "$pid") || return 1
    [[ $cmd == *"$needle"* ]]
}

read_pid_file() {
    local f=$1 pid
    [[ -f $f ]] || return 1
    read -r pid <"$f" || true
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    printf '%s\n' "$pid"
}

# SIGTERM, wait, and only then SIGKILL: the services flush state on TERM
# (Kafka's controlled shutdown, Mosquitto's persistence file).
stop_pid() {
    local name=$1 pid=$2 grace=$3 waited=0
    kill -TERM "$pid" 2>/dev/null || return 0
    while kill -0 "$pid" 2>/dev/null; do
        if ((waited >= grace * 10)); then
            say "$name: still running after ${grace}s, sending SIGKILL to pid $pid"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
            break
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
}

# --- ports ---------------------------------------------------------------------

# What a log gained since byte `offset`. The status is always 0: grep -q closes the
# pipe at its first match, and under pipefail tail's SIGPIPE would otherwise turn
# "found it" into a failure whenever much was logged after the match.
log_since() {
    tail -c +"$1" "$2" 2>/dev/null || true
}

port_accepts() {
    local port=$1 host=${2:-localhost}
    # A child bash, so that timeout can bound a connect that hangs.
    # shellcheck disable=SC2016  # expanded by the child shell, on purpose
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$host" "$port" 2>/dev/null
}

# Who listens on a TCP port, read from /proc so that neither ss nor lsof has to
# be installed. Prints "pid<TAB>command line" per owner, or "?<TAB>..." when the
# socket belongs to a process we are not allowed to inspect.
port_listeners() {
    local port=$1 hex inodes inode fd pid
    printf -v hex '%04X' "$port"
    # Column 4 "0A" is TCP_LISTEN; column 2 ends in the port in hex.
    inodes=$(awk -v suffix=":$hex" '$4 == "0A" && substr($2, length($2) - 4) == suffix { print $10 }' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null | sort -u)
    [[ -n $inodes ]] || return 1
    for inode in $inodes; do
        fd=$(find /proc/[0-9]*/fd -lname "socket:\[$inode\]" -print -quit 2>/dev/null || true)
        if [[ -n $fd ]]; then
            pid=${fd#/proc/}
            pid=${pid%%/*}
            printf '%s\t%s\n' "$pid" "$(cmdline_of "$pid" || echo '?')"
        else
            printf '?\t(a process this user cannot inspect)\n'
        fi
    done | sort -u
    return 0
}

# Finds our daemon even when its pid file is gone (someone cleaned run/ by
# hand), by asking which process listens on its port. Without this, `up`
# would report our own service as a stranger holding the port.
our_pid() {
    local pid_file=$1 needle=$2 port=$3 pid owners
    if pid=$(read_pid_file "$pid_file") && pid_is_ours "$pid" "$needle"; then
        printf '%s\n' "$pid"
        return 0
    fi
    owners=$(port_listeners "$port") || return 1
    pid=${owners%%$'\t'*}
    pid_is_ours "$pid" "$needle" || return 1
    printf '%s\n' "$pid"
}

# Rewrites a pid file only when it says something else, so that an idempotent
# `up` leaves the files alone.
remember_pid() {
    local pid_file=$1 pid=$2 old
    old=$(read_pid_file "$pid_file" 2>/dev/null) || old=""
    [[ $old == "$pid" ]] || printf '%s\n' "$pid" >"$pid_file"
}

# Called only once we know our own instance is not running, so any listener is
# someone else's: a system daemon from the Debian package, another checkout, ...
ensure_port_free() {
    local name=$1 port=$2 env_var=$3 owners first pid cmd hint=""
    owners=$(port_listeners "$port") || return 0
    first=${owners%%$'\n'*}
    pid=${first%%$'\t'*}
    cmd=${first#*$'\t'}
    cmd=${cmd% }
    case $cmd in
        *mosquitto\ -c\ /etc/mosquitto/* | */mosquitto | */mosquitto\ -d)
            hint=" (the system mosquitto daemon from the Debian package; stop it with 'service mosquitto stop')" ;;
        *mosquitto\ -c\ *) hint=" (a mosquitto started from another config, maybe another checkout's state dir)" ;;
        *postgres*/var/lib/postgresql/* | *postgres*config_file=/etc/postgresql/*)
            hint=" (a Debian-managed PostgreSQL cluster; see pg_lsclusters)" ;;
        *postgres\ -D\ *) hint=" (another PostgreSQL server, maybe another checkout's state dir)" ;;
        *kafka.Kafka*) hint=" (a Kafka broker with another config, maybe another checkout's state dir)" ;;
    esac
    die "$name: port $port is already in use by pid $pid: $cmd$hint; stop it or set $env_var to a free port"
}

# Services that drop privileges need every ancestor of their files to be
# searchable, otherwise they fail with a confusing "permission denied" later.
check_traversable_for() {
    local user=$1 path=$2 dir
    dir=$path
    while [[ $dir != / && -n $dir ]]; do
        if [[ -e $dir ]] && ! runuser -u "$user" -- test -x "$dir" 2>/dev/null; then
            die "user '$user' cannot enter $dir (needed for $path); make it traversable (chmod o+x) or set PANTAU_STATE_DIR elsewhere"
        fi
        dir=$(dirname "$dir")
    done
}

# Pre-create a file that a dropped-privilege daemon will append to.
owned_file() {
    local user=$1 file=$2
    [[ -e $file ]] || : >"$file"
    if is_root && [[ -n $user ]]; then
        chown "$user:" "$file"
    fi
}
