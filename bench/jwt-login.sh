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

# One RSA key; one token valid for an hour, shaped like a GitHub Actions ID token.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/key.pem" 2>/dev/null
openssl pkey -in "$work/key.pem" -pubout -out "$work/pub.pem"
jwt=$(python3 - "$work/key.pem" <<'PY'
import base64, json, subprocess, sys, time
b = lambda x: base64.urlsafe_b64encode(x).rstrip(b"=").decode()
now = int(time.time())
h = b(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "bench"}).encode())
p = b(json.dumps({"iss": "https://token.actions.githubusercontent.com", "aud": "leakstop", "sub": "repo:octo/app:ref:refs/heads/main",
                  "repository": "octo/app", "repository_id": "1296269", "ref": "refs/heads/main",
                  "iat": now, "nbf": now - 5, "exp": now + 3600}).encode())
sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", sys.argv[1]], input=f"{h}.{p}".encode(), capture_output=True, check=True).stdout
print(f"{h}.{p}.{b(sig)}")
PY
)
python3 - "$work/pub.pem" "$jwt" > "$work/bodies.json" <<'PY'
import json, sys
pub = open(sys.argv[1]).read()
print(json.dumps({
  "config": {"jwt_validation_pubkeys": [pub], "bound_issuer": "https://token.actions.githubusercontent.com"},
  "role": {"role_type": "jwt", "user_claim": "repository", "bound_audiences": ["leakstop"],
           "bound_claims": {"repository_id": "1296269"}, "token_policies": ["ci"], "token_ttl": "10m"},
  "policy": {"policy": "path \"secret/data/ci/*\" { capabilities = [\"read\"] }"},
  "login": {"role": "bench", "jwt": sys.argv[2]},
}))
PY
body() { python3 -c "import json,sys; print(json.dumps(json.load(open('$work/bodies.json'))[sys.argv[1]]))" "$1"; }
body login > "$work/login.json"
cat > "$work/login.lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("$work/login.json"); wrk.body = f:read("*a"); f:close()
