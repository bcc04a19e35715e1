#!/usr/bin/env bash
# Cuts a training set (`vdiff prepare`'s DIR/train: folders of PNG frames) down to small tiles,
# so that footage from every sequence fits in the few tens of megabytes that can be sent to a GPU
# machine: from each sequence, TILES tiles of SIZE x SIZE pixels over FRAMES consecutive frames,
# at positions and start frames drawn from a hash of the sequence's name and the tile's index
# (the same input gives the same tiles). Writes OUT/<sequence>-<i>/%04d.png, lossless.
#
# Usage: benches/gpu/tiles.sh TRAIN_DIR OUT [SIZE=96] [FRAMES=9] [TILES=1]   (needs ffmpeg)
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,8p' "$0"; exit 2; }
src=$1 out=$2 size=${3:-96} frames=${4:-9} tiles=${5:-1}
mkdir -p "$out"
# hash TEXT: a number from the text (first 8 hex digits of its SHA-256).
hash() { printf '%s' "$1" | sha256sum | cut -c1-8 | { read -r h; echo $(( 16#$h )); }; }
for dir in "$src"/*/; do
    name=$(basename "$dir")
    n=$(find "$dir" -maxdepth 1 -name '*.png' | wc -l)
    [ "$n" -ge "$frames" ] || continue
    first=$(find "$dir" -maxdepth 1 -name '*.png' | sort | head -n 1)
    # shellcheck disable=SC2046
    read -r w h < <(ffprobe -v error -select_streams v:0 -show_entries stream=width,height \
        -of csv=p=0 "$first" | tr , ' ')
    [ "$w" -ge "$size" ] && [ "$h" -ge "$size" ] || continue
    start=$(basename "$first" .png)
    for i in $(seq 0 $(( tiles - 1 ))); do
        r=$(hash "$name/$i")
        t=$(( r % (n - frames + 1) ))
        x=$(( (r / 7) % (w - size + 1) ))
        y=$(( (r / 13) % (h - size + 1) ))
        dest="$out/$name-$i"
        mkdir -p "$dest"
        ffmpeg -nostdin -hide_banner -loglevel error -y -start_number $(( 10#$start + t )) \
            -i "$dir/%04d.png" -frames:v "$frames" -vf "crop=$size:$size:$x:$y" \
            -start_number 0 "$dest/%04d.png"
    done
done
echo "$(find "$out" -name '*.png' | wc -l) frames in $(find "$out" -mindepth 1 -maxdepth 1 -type d | wc -l) tiles under $out"
