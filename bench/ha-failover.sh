#!/usr/bin/env bash
# High availability on PostgreSQL: leakstop vs OpenBao, two nodes each over the same PostgreSQL (one database per
# product), one product at a time.
#
#   bench/ha-failover.sh        (env: RUNS=5, DURATION=10s, BAO_BIN, LEAKSTOP=<path to a release leakstop>)
#
# 1. Failover: a client writes KV v2 secrets one after the other through the standby (which forwards them to the
#    active node); after 1 s of that load the active node is killed with SIGKILL, and the time from the kill to the
#    first successful write through the survivor is measured. The killed node is started again and unsealed (it
#    comes back as the standby) and the next run kills the other node. RUNS runs each; median, min and max.
# 2. Throughput on PostgreSQL: KV v2 reads and writes against the active node with wrk (kv-lib.sh's load, as in
#    kv.sh), a file audit device enabled on both.
#
# PostgreSQL (initdb into a temporary directory, loopback port, default durability settings) is started by the
# script. OpenBao uses `storage "postgresql"` with `ha_enabled = "true"` and the `vault_kv_store` /
# `vault_ha_locks` tables created as its documentation describes; leakstop creates its own tables.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
leakstop=${LEAKSTOP:-$target/release/leakstop}
bao=${BAO_BIN:-$root/.venv/bin/bao}
duration=${DURATION:-10s}
runs=${RUNS:-5}
command -v wrk >/dev/null || { echo "wrk not found: install the Debian package wrk" >&2; exit 2; }
command -v curl >/dev/null || { echo "curl not found: install the Debian package curl" >&2; exit 2; }
[ -x "$bao" ] || { echo "OpenBao not found at $bao: run tests/setup.sh or set BAO_BIN" >&2; exit 2; }
pgbin=$(dirname "$(command -v initdb 2>/dev/null || ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -1)")
[ -x "$pgbin/initdb" ] && [ -x "$pgbin/pg_ctl" ] ||
    { echo "PostgreSQL server binaries not found: install the Debian package postgresql" >&2; exit 2; }
psql=$pgbin/psql
[ -x "$psql" ] || psql=$(command -v psql) || { echo "psql not found" >&2; exit 2; }
if [ ! -x "$leakstop" ]; then
    echo "building leakstop (release) ..." >&2
    (cd "$root" && cargo build --release --locked -p leakstop >&2)
fi

work=$(mktemp -d)
chmod 755 "$work"
declare -A pid addr
pg_started=
cleanup() {
    for p in "${pid[@]}"; do kill -9 "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    [ -n "$pg_started" ] && pg pg_ctl stop -m immediate -w -D "$work/pg/data" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

# shellcheck source=bench/kv-lib.sh
. "$root/bench/kv-lib.sh"
write_wrk_scripts

# --- PostgreSQL ----------------------------------------------------------------------------------------------------
# PostgreSQL refuses to run as root: as root, the cluster belongs to the `postgres` user.
pg() {
    local tool=$1; shift
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$pgbin/$tool" "$@"; else "$pgbin/$tool" "$@"; fi
}
pgpw=bench-pg-pw
pgport=$(free_port)
mkdir -p "$work/pg"
echo "$pgpw" > "$work/pg/pw"
[ "$(id -u)" = 0 ] && chown -R postgres: "$work/pg"
pg initdb -D "$work/pg/data" -U postgres --pwfile="$work/pg/pw" --auth-host=scram-sha-256 --auth-local=trust \
    -E UTF8 >/dev/null
pg pg_ctl start -w -D "$work/pg/data" -l "$work/pg/data/server.log" \
    -o "-p $pgport -c listen_addresses=127.0.0.1 -k $work/pg/data" >/dev/null
pg_started=1
sql() { # database, statements
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$psql" -q -v ON_ERROR_STOP=1 -h "$work/pg/data" -p "$pgport" -U postgres -d "$1" -c "$2"
    else
        "$psql" -q -v ON_ERROR_STOP=1 -h "$work/pg/data" -p "$pgport" -U postgres -d "$1" -c "$2"
    fi
}
sql postgres "CREATE DATABASE leakstop"
sql postgres "CREATE DATABASE openbao"
# OpenBao's tables, as its PostgreSQL storage documentation gives them.
sql openbao "CREATE TABLE vault_kv_store (parent_path TEXT COLLATE \"C\" NOT NULL, path TEXT COLLATE \"C\",
    key TEXT COLLATE \"C\", value BYTEA, CONSTRAINT pkey PRIMARY KEY (path, key));
    CREATE INDEX parent_path_idx ON vault_kv_store (parent_path);
    CREATE TABLE vault_ha_locks (ha_key TEXT COLLATE \"C\" NOT NULL, ha_identity TEXT COLLATE \"C\" NOT NULL,
    ha_value TEXT COLLATE \"C\", valid_until TIMESTAMP WITH TIME ZONE NOT NULL, CONSTRAINT ha_key PRIMARY KEY (ha_key));"
pg_url() { echo "postgres://postgres:$pgpw@127.0.0.1:$pgport/$1?sslmode=disable"; }

# --- nodes ---------------------------------------------------------------------------------------------------------
# configure PRODUCT N: writes node N's config and sets addr[PRODUCT$N].
configure() {
    local port; port=$(free_port)
    addr[$1$2]="http://127.0.0.1:$port"
    mkdir -p "$work/$1$2"
    if [ "$1" = ls ]; then
        cat > "$work/$1$2/config" <<CFG
listen_address = "127.0.0.1:$port"
tls_disable = true
api_addr = "http://127.0.0.1:$port"
audit_file_dir = "$work"

[storage]
type = "postgresql"
connection_url = "$(pg_url leakstop)"
ha_enabled = true

[seal]
type = "shamir"
CFG
    else
        local cport; cport=$(free_port)
        cat > "$work/$1$2/config" <<CFG
storage "postgresql" {
  connection_url = "$(pg_url openbao)"
  table          = "vault_kv_store"
  ha_enabled     = "true"
  ha_table       = "vault_ha_locks"
}
listener "tcp" {
  address         = "127.0.0.1:$port"
  cluster_address = "127.0.0.1:$cport"
  tls_disable     = true
}
disable_mlock = true
# OpenBao 2 enables audit devices through the API only when allowed (the throughput part enables one).
unsafe_allow_api_audit_creation = true
api_addr      = "http://127.0.0.1:$port"
cluster_addr  = "https://127.0.0.1:$cport"
CFG
    fi
}

# start PRODUCT N: start node N and wait until it answers.
start() {
    if [ "$1" = ls ]; then
        "$leakstop" server --config "$work/$1$2/config" >>"$work/$1$2/log" 2>&1 &
    else
        "$bao" server -config="$work/$1$2/config" >>"$work/$1$2/log" 2>&1 &
    fi
    pid[$1$2]=$!
    for _ in $(seq 1 300); do curl -s "${addr[$1$2]}/v1/sys/seal-status" >/dev/null && return 0; sleep 0.1; done
    echo "$1 node $2 did not start; log:" >&2; tail -20 "$work/$1$2/log" >&2; exit 1
}

unseal() { # PRODUCT N
    curl -sS --fail-with-body -H "Content-Type: application/json" -X PUT -d "{\"key\":\"$unseal_key\"}" "${addr[$1$2]}/v1/sys/unseal" >/dev/null
}

active_of() { # PRODUCT -> the node number answering 200 on sys/health
    for n in 1 2; do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "${addr[$1$n]}/v1/sys/health" || true)" = 200 ] && { echo "$n"; return; }
    done
    echo 0
}

# The failover probe: writes through the survivor one at a time; after 1 s kills the active node; prints the ms
# from the kill to the first successful write.
cat > "$work/probe.py" <<'PY'
import http.client, json, os, signal, sys, time
url, token, victim, tag = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
host, port = url.removeprefix("http://").split(":")
conn = None
def write(i):
    global conn
    try:
        if conn is None:
            conn = http.client.HTTPConnection(host, int(port), timeout=5)
        conn.request("POST", f"/v1/secret/data/failover/{tag}-{i}", body=json.dumps({"data": {"i": i}}),
                     headers={"X-Vault-Token": token, "Content-Type": "application/json"})
        r = conn.getresponse(); r.read()
        return 200 <= r.status < 300
    except (OSError, http.client.HTTPException):
        conn = None
        return False
i, ok_before, start = 0, 0, time.monotonic()
while time.monotonic() - start < 1.0:
    ok_before += write(i); i += 1
if ok_before == 0:
    sys.exit("no write succeeded through the standby before the kill")
os.kill(victim, signal.SIGKILL)
killed = time.monotonic()
while time.monotonic() - killed < 120:
    i += 1
    if write(i):
        print(f"{(time.monotonic() - killed) * 1000:.0f}")
        sys.exit(0)
sys.exit("no successful write within 120 s of the kill")
PY

# bench PRODUCT NAME: set up two nodes, RUNS failovers, then the throughput of the active node.
bench() {
    local p=$1 name=$2
    configure "$p" 1; configure "$p" 2
    start "$p" 1
    local init
    init=$(curl -sS --fail-with-body -H "Content-Type: application/json" -X PUT -d '{"secret_shares":1,"secret_threshold":1}' "${addr[${p}1]}/v1/sys/init") ||
        { echo "$name: init failed" >&2; tail -20 "$work/${p}1/log" >&2; exit 1; }
    unseal_key=$(echo "$init" | python3 -c 'import json,sys; print(json.load(sys.stdin)["keys_base64"][0])')
    token=$(echo "$init" | python3 -c 'import json,sys; print(json.load(sys.stdin)["root_token"])')
    unseal "$p" 1
    wait_health "${addr[${p}1]}" "$name node 1"
    curl -sf -H "X-Vault-Token: $token" -X POST -d '{"type":"kv","options":{"version":"2"}}' \
        "${addr[${p}1]}/v1/sys/mounts/secret" >/dev/null
    # kv-v2 may upgrade its storage layout in the background after mounting; wait until a write goes through.
    for _ in $(seq 1 100); do seed "${addr[${p}1]}" "$token" && break; sleep 0.2; done
    start "$p" 2; unseal "$p" 2
    wait_health "${addr[${p}2]}" "$name node 2 (standby)" 429
    local times=()
    for r in $(seq 1 "$runs"); do
        local a s ms
        a=$(active_of "$p"); [ "$a" != 0 ] || { echo "$name: no active node" >&2; exit 1; }
        s=$((3 - a))
        # The standby must be forwarding already (its first forwarded write sets up the path to the active node).
        for _ in $(seq 1 100); do seed "${addr[$p$s]}" "$token" && break; sleep 0.1; done
        ms=$(python3 "$work/probe.py" "${addr[$p$s]}" "$token" "${pid[$p$a]}" "r$r")
        wait "${pid[$p$a]}" 2>/dev/null || true
        times+=("$ms")
        echo "$name failover run $r: ${ms} ms (node $a killed, node $s took over) [load $(cut -d' ' -f1 /proc/loadavg)]" >&2
        start "$p" "$a"; unseal "$p" "$a"
        wait_health "${addr[$p$a]}" "$name node $a (back as standby)" 429
    done
    local stats
    stats=$(python3 -c 'import statistics,sys; v=[int(x) for x in sys.argv[1:]]; print(f"{statistics.median(v):.0f} {min(v)} {max(v)}")' "${times[@]}")
    read -r med lo hi <<<"$stats"
    eval "${p}_fail_med=$med ${p}_fail_min=$lo ${p}_fail_max=$hi"
    # Throughput against the active node, with a file audit device.
    local a; a=$(active_of "$p")
    curl -sS --fail-with-body -H "X-Vault-Token: $token" -X PUT -d "{\"type\":\"file\",\"options\":{\"file_path\":\"$work/$p-audit.log\"}}" \
        "${addr[$p$a]}/v1/sys/audit/file" >/dev/null
    seed "${addr[$p$a]}" "$token"
    local get get99 put put99
    read -r get get99 < <(run_wrk "${addr[$p$a]}" "$token" "$work/get.lua" /v1/secret/data/bench/read)
    read -r put put99 < <(run_wrk "${addr[$p$a]}" "$token" "$work/put.lua" /v1/secret/data/bench/w0)
    eval "${p}_get=$get ${p}_get99=$get99 ${p}_put=$put ${p}_put99=$put99"
    echo "$name: failover median $med ms; $get reads/s, $put writes/s" >&2
    for n in 1 2; do kill -9 "${pid[$p$n]}" 2>/dev/null || true; wait "${pid[$p$n]}" 2>/dev/null || true; unset "pid[$p$n]"; done
}

bench bao "OpenBao"
bench ls "leakstop"

printf '\nFailover (SIGKILL of the active node -> first successful KV v2 write through the survivor), %s runs, ms\n' "$runs"
printf '%-34s %10s %10s %10s\n' "server" "median" "min" "max"
printf '%-34s %10s %10s %10s\n' "OpenBao 2.7.2 (postgresql, HA)" "$bao_fail_med" "$bao_fail_min" "$bao_fail_max"
printf '%-34s %10s %10s %10s\n' "leakstop (postgresql, HA)" "$ls_fail_med" "$ls_fail_min" "$ls_fail_max"
printf '\nKV v2 on PostgreSQL, active node, audit on, wrk -t2 -c16 -d%s (requests/s, p99 latency)\n' "$duration"
printf '%-34s %12s %10s %12s %10s\n' "server" "reads/s" "p99" "writes/s" "p99"
printf '%-34s %12s %10s %12s %10s\n' "OpenBao 2.7.2 (postgresql, HA)" "$bao_get" "$bao_get99" "$bao_put" "$bao_put99"
printf '%-34s %12s %10s %12s %10s\n' "leakstop (postgresql, HA)" "$ls_get" "$ls_get99" "$ls_put" "$ls_put99"
printf 'ratio leakstop/OpenBao: reads %s, writes %s; failover median %s\n' "$(ratio "$ls_get" "$bao_get")" \
    "$(ratio "$ls_put" "$bao_put")" "$(ratio "$bao_fail_med" "$ls_fail_med")"
