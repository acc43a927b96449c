# Sourced by the KV benchmarks (kv.sh, ha-failover.sh): ports, health waits, the wrk load (Lua scripts and the
# runner) and the seed secret. Expects $work (a scratch directory) and $duration (wrk's -d) to be set.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_health ADDR WHAT [CODE]: until ADDR's sys/health answers CODE (default 200: active).
wait_health() {
    local want=${3:-200} code
    for _ in $(seq 1 300); do
        code=$(curl -s -o /dev/null -w '%{http_code}' "$1/v1/sys/health" || true)
        [ "$code" = "$want" ] && return 0
        sleep 0.1
    done
    echo "$2 did not answer $want on sys/health at $1 (last: $code)" >&2
    return 1
}

# The wrk scripts: GET of one secret; POSTs cycling over 1000 keys (so writes also create versions).
write_wrk_scripts() {
    cat > "$work/get.lua" <<'LUA'
wrk.method = "GET"
wrk.headers["X-Vault-Token"] = os.getenv("BENCH_TOKEN")
LUA
    cat > "$work/put.lua" <<'LUA'
local n = 0
wrk.headers["X-Vault-Token"] = os.getenv("BENCH_TOKEN")
wrk.headers["Content-Type"] = "application/json"
request = function()
    n = n + 1
    local body = string.format('{"data":{"user":"svc-%d","password":"bench-pw-%d-xxxxxxxxxxxxxxxx"}}', n, n)
    return wrk.format("POST", string.format("/v1/secret/data/bench/w%d", n % 1000), nil, body)
end
LUA
}

# run_wrk ADDR TOKEN SCRIPT PATH -> "rps p99"
run_wrk() {
    local out
    out=$(BENCH_TOKEN=$2 wrk -t2 -c16 -d"$duration" --latency -s "$3" "$1$4")
    local non2xx
    non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
    if [ -n "$non2xx" ]; then
        echo "warning: $non2xx non-2xx responses on $1$4" >&2
    fi
    local rps p99
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
    echo "${rps:-0} ${p99:-?}"
}

# seed ADDR TOKEN: the secret the read benchmark reads.
seed() {
    curl -sf -H "X-Vault-Token: $2" -H 'Content-Type: application/json' -X POST \
        -d '{"data":{"user":"app","password":"bench-read-secret","url":"postgres://db:5432/app"}}' \
        "$1/v1/secret/data/bench/read" >/dev/null
}

ratio() { python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f'{a/b:.2f}x' if b else 'n/a')" "$1" "$2"; }
