#!/usr/bin/env bash
# The credentials action: OIDC login, then each listed secret masked and exported.
# Order matters: a value is masked (`::add-mask::`) before anything else could print it, and nothing here echoes
# a value; `set -x` is never used. Inputs arrive as INPUT_* variables (see action.yml).
set -euo pipefail

fail() { echo "::error title=leakstop credentials::$*"; exit 2; }
[ -n "${INPUT_URL:-}" ] || fail "input 'url' is required"
[ -n "${INPUT_ROLE:-}" ] || fail "input 'role' is required"
[ -n "${INPUT_SECRETS:-}" ] || fail "input 'secrets' is required"

export LEAKSTOP_ADDR="$INPUT_URL"
token=$(leakstop login --oidc --role "$INPUT_ROLE" --mount "${INPUT_MOUNT:-jwt}" \
    --audience "${INPUT_AUDIENCE:-leakstop}" --address "$INPUT_URL") || fail "OIDC login to $INPUT_URL as role $INPUT_ROLE failed (see above)"
printf '::add-mask::%s\n' "$token"
export LEAKSTOP_TOKEN="$token"

accessor=$(leakstop read auth/token/lookup-self --field accessor 2>/dev/null || true)
[ -z "$accessor" ] || echo "token-accessor=$accessor" >> "${GITHUB_OUTPUT:-/dev/null}"

export_flag=--env
case "${INPUT_EXPORT_ENV:-true}" in
    false|no|0) export_flag=--output ;;
esac

n=0
while IFS= read -r line || [ -n "$line" ]; do
    line="${line%%#*}"
    [ -n "${line//[[:space:]]/}" ] || continue
    spec="${line%%|*}"
    name="${line#*|}"
    [ "$spec" != "$line" ] || fail "secrets line '$line' has no '| NAME' part (format: PATH FIELD | NAME)"
    name="${name//[[:space:]]/}"
    read -r path field extra <<< "$spec"
    [ -n "${path:-}" ] && [ -n "${field:-}" ] && [ -z "${extra:-}" ] \
        || fail "secrets line '$line' must be 'PATH FIELD | NAME'"
    # The value goes straight from `leakstop read` into `github-action export`, which masks it first.
    leakstop read "$path" --field "$field" | leakstop github-action export "$export_flag" "$name" \
        || fail "could not fetch $path field $field for $name"
    n=$((n + 1))
done <<< "$INPUT_SECRETS"
echo "leakstop: fetched $n secret(s) from $INPUT_URL as role $INPUT_ROLE"
