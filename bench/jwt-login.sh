#!/usr/bin/env bash
# JWT logins per second: leakstop (SQLite storage, file audit device ON, release build) vs OpenBao (raft storage),
# in one run, with wrk (2 threads, 16 connections) POSTing auth/jwt/login with a valid RS256 token.
#
#   bench/jwt-login.sh            (env: DURATION=10s, BAO_BIN, LEAKSTOP=<path to a release leakstop>)
#
# Both servers verify against the same static public key (jwt_validation_pubkeys), the same role (bound audience and
# claims, one policy, 10m TTL), and mint a real token per login. Target: leakstop >= 3x OpenBao.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
leakstop=${LEAKSTOP:-$target/release/leakstop}
bao=${BAO_BIN:-$root/.venv/bin/bao}
duration=${DURATION:-10s}
for t in wrk curl openssl python3; do
    command -v $t >/dev/null || { echo "$t not found (Debian packages wrk, curl, openssl, python3)" >&2; exit 2; }
done
[ -x "$bao" ] || { echo "OpenBao not found at $bao: run tests/setup.sh or set BAO_BIN" >&2; exit 2; }
[ -x "$leakstop" ] || (cd "$root" && cargo build --release --locked -p leakstop >&2)

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# One RSA key; one token valid for an hour, shaped like a GitHub Actions ID token; the request bodies.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/key.pem" 2>/dev/null
openssl pkey -in "$work/key.pem" -pubout -out "$work/pub.pem"
python3 - "$work" <<'PY'
import base64, json, os, subprocess, sys, time
work = sys.argv[1]
b = lambda x: base64.urlsafe_b64encode(x).rstrip(b"=").decode()
now = int(time.time())
h = b(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "bench"}).encode())
p = b(json.dumps({"iss": "https://token.actions.githubusercontent.com", "aud": "leakstop",
                  "sub": "repo:octo/app:ref:refs/heads/main", "repository": "octo/app", "repository_id": "1296269",
                  "ref": "refs/heads/main", "iat": now, "nbf": now - 5, "exp": now + 3600}).encode())
sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", os.path.join(work, "key.pem")],
                     input=f"{h}.{p}".encode(), capture_output=True, check=True).stdout
bodies = {
    "config": {"jwt_validation_pubkeys": [open(os.path.join(work, "pub.pem")).read()],
               "bound_issuer": "https://token.actions.githubusercontent.com"},
    "role": {"role_type": "jwt", "user_claim": "repository", "bound_audiences": ["leakstop"],
             "bound_claims": {"repository_id": "1296269"}, "token_policies": ["ci"], "token_ttl": "10m"},
    "policy": {"policy": 'path "secret/data/ci/*" { capabilities = ["read"] }'},
    "login": {"role": "bench", "jwt": f"{h}.{p}.{b(sig)}"},
}
for name, body in bodies.items():
    with open(os.path.join(work, name + ".json"), "w") as f:
        json.dump(body, f)
with open(os.path.join(work, "login.lua"), "w") as f:
    f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n')
    f.write(f'local f = io.open("{work}/login.json"); wrk.body = f:read("*a"); f:close()\n')
PY

configure() { # addr token
    curl -sf -H "X-Vault-Token: $2" -X POST -d '{"type":"jwt"}' "$1/v1/sys/auth/jwt" >/dev/null
    curl -sf -H "X-Vault-Token: $2" -X POST -d @"$work/config.json" "$1/v1/auth/jwt/config" >/dev/null
    curl -sf -H "X-Vault-Token: $2" -X PUT -d @"$work/policy.json" "$1/v1/sys/policies/acl/ci" >/dev/null
    curl -sf -H "X-Vault-Token: $2" -X POST -d @"$work/role.json" "$1/v1/auth/jwt/role/bench" >/dev/null
    curl -sf -H 'Content-Type: application/json' -X POST -d @"$work/login.json" "$1/v1/auth/jwt/login" | grep -q client_token ||
        { echo "a test login against $1 failed" >&2; return 1; }
}
run_wrk() { # url -> "rps p99"
    local out
    out=$(wrk -t2 -c16 -d"$duration" --latency -s "$work/login.lua" "$1")
    echo "$out" | awk '/Non-2xx/ {print "warning: " $0 > "/dev/stderr"}'
    echo "$(echo "$out" | awk '/Requests\/sec/ {print $2}') $(echo "$out" | awk '$1 == "99%" {print $2}')"
}

# --- OpenBao, raft ---------------------------------------------------------------------------------------------------
bport=$(free_port); cport=$(free_port); mkdir -p "$work/bao/raft"
printf 'storage "raft" {\n  path = "%s"\n  node_id = "bench"\n}\nlistener "tcp" {\n  address = "127.0.0.1:%s"\n  tls_disable = true\n}\ndisable_mlock = true\napi_addr = "http://127.0.0.1:%s"\ncluster_addr = "http://127.0.0.1:%s"\n' \
    "$work/bao/raft" "$bport" "$bport" "$cport" > "$work/bao/config.hcl"
"$bao" server -config="$work/bao/config.hcl" >"$work/bao/server.log" 2>&1 &
bao_pid=$!; pids+=("$bao_pid")
export BAO_ADDR="http://127.0.0.1:$bport"
for _ in $(seq 1 100); do curl -s "$BAO_ADDR/v1/sys/seal-status" >/dev/null && break; sleep 0.1; done
init=$("$bao" operator init -key-shares=1 -key-threshold=1 -format=json)
"$bao" operator unseal "$(echo "$init" | python3 -c 'import json,sys; print(json.load(sys.stdin)["unseal_keys_b64"][0])')" >/dev/null
bao_token=$(echo "$init" | python3 -c 'import json,sys; print(json.load(sys.stdin)["root_token"])')
for _ in $(seq 1 100); do [ "$(curl -s -o /dev/null -w '%{http_code}' "$BAO_ADDR/v1/sys/health")" = 200 ] && break; sleep 0.1; done
configure "$BAO_ADDR" "$bao_token"
read -r bao_rps bao_p99 < <(run_wrk "$BAO_ADDR/v1/auth/jwt/login")
kill "$bao_pid"; wait "$bao_pid" 2>/dev/null || true

# --- leakstop, SQLite, audit on --------------------------------------------------------------------------------------
lport=$(free_port); mkdir -p "$work/ls"
printf 'listen_address = "127.0.0.1:%s"\ntls_disable = true\n[storage]\ntype = "sqlite"\npath = "%s"\n[seal]\ntype = "shamir"\n[[audit]]\npath = "file"\nfile_path = "%s"\n' \
    "$lport" "$work/ls/leakstop.db" "$work/ls/audit.log" > "$work/ls/config.toml"
"$leakstop" server --config "$work/ls/config.toml" >"$work/ls/server.log" 2>&1 &
ls_pid=$!; pids+=("$ls_pid")
addr="http://127.0.0.1:$lport"
for _ in $(seq 1 100); do curl -s "$addr/v1/sys/seal-status" >/dev/null && break; sleep 0.1; done
init=$(curl -sf -H 'Content-Type: application/json' -X PUT -d '{"secret_shares":1,"secret_threshold":1}' "$addr/v1/sys/init")
key=$(echo "$init" | python3 -c 'import json,sys; print(json.load(sys.stdin)["keys_base64"][0])')
curl -sf -H 'Content-Type: application/json' -X PUT -d "{\"key\":\"$key\"}" "$addr/v1/sys/unseal" >/dev/null
ls_token=$(echo "$init" | python3 -c 'import json,sys; print(json.load(sys.stdin)["root_token"])')
curl -sf -H "X-Vault-Token: $ls_token" "$addr/v1/sys/audit" | grep -q '"file/"' || { echo "leakstop audit not enabled" >&2; exit 1; }
configure "$addr" "$ls_token"
read -r ls_rps ls_p99 < <(run_wrk "$addr/v1/auth/jwt/login")
ls_rss=$(awk '/VmHWM/ {print $2 " " $3}' "/proc/$ls_pid/status")
lines=$(wc -l < "$work/ls/audit.log")
kill "$ls_pid"; wait "$ls_pid" 2>/dev/null || true

printf '\nJWT logins, wrk -t2 -c16 -d%s\n' "$duration"
printf '%-32s %12s %10s\n' server "logins/s" p99
printf '%-32s %12s %10s\n' "OpenBao 2.7.2 (raft)" "$bao_rps" "$bao_p99"
printf '%-32s %12s %10s\n' "leakstop (sqlite, audit on)" "$ls_rps" "$ls_p99"
python3 -c "import sys; a,b=map(float,sys.argv[1:]); print(f'ratio leakstop/OpenBao: {a/b:.2f}x (target >= 3x)')" "$ls_rps" "$bao_rps"
echo "leakstop peak RSS: $ls_rss; audit lines: $lines"
