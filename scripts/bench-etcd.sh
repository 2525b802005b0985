#!/usr/bin/env bash
# raftkv next to etcd on this machine: a local 3-node raftkv cluster and a
# local 3-member etcd cluster, the same closed-loop rounds against both,
# interleaved, in one run (`raftkv bench --etcd`).
#
#   scripts/bench-etcd.sh [raftkv bench flags, e.g. --reps 3 --secs 5 --plot docs/bench-server.svg]
#
# Installs Debian's etcd-server and protobuf-compiler when missing (root or
# sudo), keeps etcd's data in a temporary directory, and stops the members
# by pid when it ends, however it ends.
set -euo pipefail
cd "$(dirname "$0")/.."

need() {
    command -v "$1" >/dev/null 2>&1 && return
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get install -y -q "$2" >/dev/null
}
need etcd etcd-server
need protoc protobuf-compiler

cargo build --release -q -p raftkv --features etcd

dir=$(mktemp -d -t raftkv-bench-etcd-XXXXXX)
pids=()
stop() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$dir"
}
trap stop EXIT

# Free ports: three peer and three client ports, picked by the kernel.
mapfile -t ports < <(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(6)]
for s in socks:
    s.bind(("127.0.0.1", 0))
for s in socks:
    print(s.getsockname()[1])
PY
)
cluster=""
for i in 1 2 3; do
    cluster+="${cluster:+,}e$i=http://127.0.0.1:${ports[$((i - 1))]}"
done
urls=""
for i in 1 2 3; do
    peer=${ports[$((i - 1))]}
    client=${ports[$((i + 2))]}
    urls+="${urls:+,}http://127.0.0.1:$client"
    etcd --name "e$i" --data-dir "$dir/e$i" \
        --listen-peer-urls "http://127.0.0.1:$peer" \
        --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
        --listen-client-urls "http://127.0.0.1:$client" \
        --advertise-client-urls "http://127.0.0.1:$client" \
        --initial-cluster "$cluster" --initial-cluster-state new \
        --initial-cluster-token raftkv-bench >"$dir/e$i.log" 2>&1 &
    pids+=($!)
done
echo "etcd $(etcd --version | head -1 | awk '{print $3}') members at $urls (logs in $dir)"

./target/release/raftkv bench --etcd "$urls" "$@"
