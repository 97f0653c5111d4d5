#!/bin/sh
# Install the benchmark peers when missing: task-spooler, nq, hyperfine (Debian), mprocs (npm,
# into bench/.peers, never committed). A peer that cannot be installed is reported as "missing"
# by run.py; this script says which ones failed and exits 0 anyway.
set -u
here=$(cd "$(dirname "$0")" && pwd)
need_apt=""
command -v tsp >/dev/null 2>&1 || command -v ts >/dev/null 2>&1 || need_apt="$need_apt task-spooler"
command -v nq >/dev/null 2>&1 || need_apt="$need_apt nq"
command -v hyperfine >/dev/null 2>&1 || need_apt="$need_apt hyperfine"
command -v tmux >/dev/null 2>&1 || need_apt="$need_apt tmux"
if [ -n "$need_apt" ]; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "setup: apt-get install$need_apt"
    $sudo apt-get install -y $need_apt || { $sudo apt-get update && $sudo apt-get install -y $need_apt; } \
        || echo "setup: could not install$need_apt (reported as missing)"
fi
if ! ls "$here"/.peers/node_modules/mprocs/mprocs-*/mprocs >/dev/null 2>&1; then
    if command -v npm >/dev/null 2>&1; then
        mkdir -p "$here/.peers"
        echo "setup: npm install mprocs into bench/.peers"
        npm install --no-audit --no-fund --prefix "$here/.peers" mprocs \
            || echo "setup: npm install mprocs failed (reported as missing)"
    else
        echo "setup: npm not found: mprocs is reported as missing"
    fi
fi
for tool in tsp nq hyperfine tmux; do
    command -v $tool >/dev/null 2>&1 && echo "setup: $tool ok" || echo "setup: $tool MISSING"
done
ls "$here"/.peers/node_modules/mprocs/mprocs-*/mprocs >/dev/null 2>&1 \
    && echo "setup: mprocs ok" || echo "setup: mprocs MISSING"
exit 0
