# shellcheck shell=bash
# proc.sh: process and port helpers shared by the stack scripts (sourced, not run).
# The caller defines log() and STOP_DEADLINE_S.

# Prints a free TCP port on 127.0.0.1: $1 when it is a port and still free, else a new one.
pick_port() {
    python3 - "${1:-0}" <<'PY'
import socket, sys
want = int(sys.argv[1]) if sys.argv[1].isdigit() else 0
for port in (want, 0) if want else (0,):
    s = socket.socket()
    # As the servers themselves do: a port whose old connections linger in TIME_WAIT is
    # free for a new listener, so a restart keeps its port.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    print(s.getsockname()[1])
    s.close()
    break
PY
}

# True when pid $1 exists and is not a zombie.
alive() {
    local state
    [[ -n "$1" && -r "/proc/$1/stat" ]] || return 1
    state=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [[ -n "$state" && "$state" != Z ]]
}

# Prints the pids of live processes whose command line contains $1 (never this shell's).
pids_with() {
    local p cmdline
    for p in /proc/[0-9]*; do
        p=${p#/proc/}
        [[ "$p" != "$$" && "$p" != "$BASHPID" ]] || continue
        cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline") || continue
        if [[ "$cmdline" == *"$1"* ]] && alive "$p"; then
            echo "$p"
        fi
    done
}

# True when pid $1 is alive and its command line contains $2.
pid_has() {
    alive "$1" && tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline" | grep -qF "$2"
}

# True when something listens on 127.0.0.1:$1.
listening() {
    [[ -n "$1" ]] && [[ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]]
}

# stop_marked MARKER PID PORT...: stops our server: SIGTERM to the pid (when it is ours) and
# to any live process whose command line contains MARKER (a lost pid file, or a tool of
# ours), SIGKILL after STOP_DEADLINE_S, then checks that none remains and that the ports no
# longer listen. Returns 1 when something survived; 2 when nothing was running.
stop_marked() {
    local marker=$1 pid=$2 deadline pids p
    shift 2
    pids=$(
        if pid_has "$pid" "$marker"; then echo "$pid"; fi
        pids_with "$marker"
    )
    pids=$(echo "$pids" | sort -un | sed '/^$/d')
    if [[ -n "$pids" ]]; then
        for p in $pids; do
            kill -TERM "$p" 2>/dev/null || true
        done
        deadline=$((SECONDS + STOP_DEADLINE_S))
        for p in $pids; do
            while alive "$p" && ((SECONDS < deadline)); do
                sleep 0.1
            done
            if alive "$p"; then
                log "pid $p still running after ${STOP_DEADLINE_S}s: SIGKILL"
                kill -KILL "$p" 2>/dev/null || true
            fi
        done
        deadline=$((SECONDS + 10))
        for p in $pids; do
            while alive "$p" && ((SECONDS < deadline)); do
                sleep 0.1
            done
        done
    fi
    if [[ -n "$(pids_with "$marker")" ]]; then
        log "still running after stop: $(pids_with "$marker" | tr '\n' ' ')"
        return 1
    fi
    for p in "$@"; do
        deadline=$((SECONDS + 10))
        while listening "$p" && ((SECONDS < deadline)); do
            sleep 0.1
        done
        if listening "$p"; then
            log "port $p still listens after stop"
            return 1
        fi
    done
    [[ -n "$pids" ]] || return 2
}
