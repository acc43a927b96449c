#!/usr/bin/env bash
# KV v2 reads and writes: leakstop (SQLite storage, file audit device ON, release build) vs OpenBao (raft storage),
# in one run, with wrk (2 threads, 16 connections).
#
#   bench/kv.sh                  (env: DURATION=10s, BAO_BIN, LEAKSTOP=<path to a release leakstop>)
#
# Both servers run on loopback one after the other (never at once: the machine has 2 cores shared with wrk).
# Each is measured on GET secret/data/bench/read (one 3-field secret) and POST secret/data/bench/w<N> (N cycles
# over 1000 keys, so writes also create versions). Prints requests/s, p99 latency, the leakstop/OpenBao ratios and
# leakstop's peak RSS. Target: leakstop >= 3x OpenBao on reads and on writes.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
leakstop=${LEAKSTOP:-$target/release/leakstop}
bao=${BAO_BIN:-$root/.venv/bin/bao}
duration=${DURATION:-10s}
command -v wrk >/dev/null || { echo "wrk not found: install the Debian package wrk" >&2; exit 2; }
command -v curl >/dev/null || { echo "curl not found: install the Debian package curl" >&2; exit 2; }
[ -x "$bao" ] || { echo "OpenBao not found at $bao: run tests/setup.sh or set BAO_BIN" >&2; exit 2; }
if [ ! -x "$leakstop" ]; then
    echo "building leakstop (release) ..." >&2
    (cd "$root" && cargo build --release --locked -p leakstop >&2)
fi

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# shellcheck source=bench/kv-lib.sh
. "$root/bench/kv-lib.sh"
write_wrk_scripts

# --- OpenBao, raft storage ------------------------------------------------------------------------------------------
bport=$(free_port); cport=$(free_port)
mkdir -p "$work/bao/raft"
cat > "$work/bao/config.hcl" <<EOF
storage "raft" {
  path    = "$work/bao/raft"
  node_id = "bench"
}
listener "tcp" {
  address     = "127.0.0.1:$bport"
  tls_disable = true
}
disable_mlock = true
api_addr      = "http://127.0.0.1:$bport"
cluster_addr  = "http://127.0.0.1:$cport"
EOF
"$bao" server -config="$work/bao/config.hcl" >"$work/bao/server.log" 2>&1 &
bao_pid=$!; pids+=("$bao_pid")
export BAO_ADDR="http://127.0.0.1:$bport" VAULT_ADDR="http://127.0.0.1:$bport"
for _ in $(seq 1 100); do curl -s "$BAO_ADDR/v1/sys/seal-status" >/dev/null && break; sleep 0.1; done
init=$("$bao" operator init -key-shares=1 -key-threshold=1 -format=json)
unseal_key=$(echo "$init" | python3 -c 'import json,sys; print(json.load(sys.stdin)["unseal_keys_b64"][0])')
bao_token=$(echo "$init" | python3 -c 'import json,sys; print(json.load(sys.stdin)["root_token"])')
"$bao" operator unseal "$unseal_key" >/dev/null
wait_health "$BAO_ADDR" "OpenBao"
BAO_TOKEN=$bao_token "$bao" secrets enable -path=secret kv-v2 >/dev/null
# kv-v2 upgrades its storage layout in the background after mounting; wait until a write goes through.
for _ in $(seq 1 100); do seed "$BAO_ADDR" "$bao_token" && break; sleep 0.2; done
read -r bao_get bao_get_p99 < <(run_wrk "$BAO_ADDR" "$bao_token" "$work/get.lua" /v1/secret/data/bench/read)
read -r bao_put bao_put_p99 < <(run_wrk "$BAO_ADDR" "$bao_token" "$work/put.lua" /v1/secret/data/bench/w0)
kill "$bao_pid"; wait "$bao_pid" 2>/dev/null || true
echo "OpenBao: $bao_get reads/s, $bao_put writes/s" >&2

# --- leakstop, SQLite storage, audit on -----------------------------------------------------------------------------
lport=$(free_port)
mkdir -p "$work/ls"
cat > "$work/ls/config.toml" <<EOF
listen_address = "127.0.0.1:$lport"
tls_disable = true

[storage]
type = "sqlite"
path = "$work/ls/leakstop.db"

[seal]
type = "shamir"

[[audit]]
path = "file"
type = "file"
file_path = "$work/ls/audit.log"
EOF
"$leakstop" server --config "$work/ls/config.toml" >"$work/ls/server.log" 2>&1 &
ls_pid=$!; pids+=("$ls_pid")
export LEAKSTOP_ADDR="http://127.0.0.1:$lport"
for _ in $(seq 1 100); do curl -s "$LEAKSTOP_ADDR/v1/sys/seal-status" >/dev/null && break; sleep 0.1; done
init=$(curl -sf -H 'Content-Type: application/json' -X PUT -d '{"secret_shares":1,"secret_threshold":1}' "$LEAKSTOP_ADDR/v1/sys/init") ||
    { echo "leakstop init failed; server log:" >&2; tail -20 "$work/ls/server.log" >&2; exit 1; }
ls_key=$(echo "$init" | python3 -c 'import json,sys; print(json.load(sys.stdin)["keys_base64"][0])')
ls_token=$(echo "$init" | python3 -c 'import json,sys; print(json.load(sys.stdin)["root_token"])')
curl -sf -H 'Content-Type: application/json' -X PUT -d "{\"key\":\"$ls_key\"}" "$LEAKSTOP_ADDR/v1/sys/unseal" >/dev/null
wait_health "$LEAKSTOP_ADDR" "leakstop"
# secret/ may already be mounted (as in dev mode); enabling it again is then refused, which is fine.
curl -s -H "X-Vault-Token: $ls_token" -X POST -d '{"type":"kv","options":{"version":"2"}}' \
    "$LEAKSTOP_ADDR/v1/sys/mounts/secret" >/dev/null || true
# The audit device: also enabled through the API in case the config did not declare it.
curl -s -H "X-Vault-Token: $ls_token" -X PUT -d "{\"type\":\"file\",\"options\":{\"file_path\":\"$work/ls/audit.log\"}}" \
    "$LEAKSTOP_ADDR/v1/sys/audit/file" >/dev/null || true
curl -sf -H "X-Vault-Token: $ls_token" "$LEAKSTOP_ADDR/v1/sys/audit" | grep -q '"file/"' ||
    { echo "leakstop: audit device is not enabled; refusing to measure without audit" >&2; exit 1; }
seed "$LEAKSTOP_ADDR" "$ls_token"
read -r ls_get ls_get_p99 < <(run_wrk "$LEAKSTOP_ADDR" "$ls_token" "$work/get.lua" /v1/secret/data/bench/read)
read -r ls_put ls_put_p99 < <(run_wrk "$LEAKSTOP_ADDR" "$ls_token" "$work/put.lua" /v1/secret/data/bench/w0)
ls_rss=$(awk '/VmHWM/ {print $2 " " $3}' "/proc/$ls_pid/status")
audit_lines=$(wc -l < "$work/ls/audit.log")
# The chain is keyed: the server hands the key and its pins to a sudo token (LEAKSTOP_ADDR is set above).
LEAKSTOP_TOKEN="$ls_token" "$leakstop" audit verify "$work/ls/audit.log" >/dev/null \
    || echo "warning: audit chain did not verify" >&2
kill "$ls_pid"; wait "$ls_pid" 2>/dev/null || true

printf '\nKV v2, wrk -t2 -c16 -d%s (requests/s, p99 latency)\n' "$duration"
printf '%-34s %12s %10s %12s %10s\n' "server" "reads/s" "p99" "writes/s" "p99"
printf '%-34s %12s %10s %12s %10s\n' "OpenBao 2.7.2 (raft)" "$bao_get" "$bao_get_p99" "$bao_put" "$bao_put_p99"
printf '%-34s %12s %10s %12s %10s\n' "leakstop (sqlite, audit on)" "$ls_get" "$ls_get_p99" "$ls_put" "$ls_put_p99"
printf 'ratio leakstop/OpenBao: reads %s, writes %s (target >= 3x)\n' "$(ratio "$ls_get" "$bao_get")" "$(ratio "$ls_put" "$bao_put")"
printf 'leakstop peak RSS: %s; audit log lines written: %s\n' "$ls_rss" "$audit_lines"
