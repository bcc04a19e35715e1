#!/usr/bin/env bash
# Builds the real OFX hosts the integration tests render through (tests/real_hosts.rs) into
# .hosts/ of this checkout (ignored by git), from the sources in ../shared/hosts/: MLT's `melt`
# with its openfx module (a few minutes), and a headless Natron 2.5 NatronRenderer (about a
# minute). A host already built there is reused. Debian 12, as root (installs apt packages).
#
#   usage: .ci/hosts.sh          env: VDIFF_HOSTS_SRC (default ../shared/hosts), VDIFF_HOSTS_DIR
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
src="${VDIFF_HOSTS_SRC:-$root/../shared/hosts}"
dest="${VDIFF_HOSTS_DIR:-$root/.hosts}"
[ -x "$src/build-melt.sh" ] || [ -f "$src/build-melt.sh" ] || {
    echo "no host sources at $src (set VDIFF_HOSTS_SRC)" >&2; exit 1; }
mkdir -p "$dest"
bash "$src/build-melt.sh" "$dest/mlt"
if [ ! -x "$dest/natron/natron-ofx-render" ]; then
    bash "$src/install-natron.sh" "$dest/natron"
fi
echo "real hosts: $dest/mlt/melt, $dest/natron/natron-ofx-render"
