#!/usr/bin/env bash
# Reproduces docs/paper_styles_512.jpg: Tübingen in the four styles of the paper's Figure 3,
# stylized by `gatys stylize` with its defaults at 512 px (left), beside the reference Lua
# implementation's published outputs (right; 512 px, 1000 L-BFGS iterations, max pooling).
# Usage: docs/paper_sheet.sh [PAPER_DIR] [WORK_DIR]   (PAPER_DIR defaults to ../shared/paper)
set -euo pipefail
paper=${1:-../shared/paper}
work=${2:-results/paper}
mkdir -p "$work"
rows=()
for pair in starry_night:starry shipwreck:shipwreck the_scream:scream seated-nude:seated_nude; do
    style=${pair%%:*}
    name=${pair##*:}
    out="$work/tubingen_$name.png"
    [ -s "$out" ] || gatys stylize "$paper/tubingen.jpg" "$paper/$style.jpg" -o "$out" --size 512 \
        --losses "$work/tubingen_$name.csv" --quiet
    rows+=(--row "$style" "$paper/$style.jpg" "$out" "$paper/reference-outputs/tubingen_$name.png")
done
gatys sheet -o docs/paper_styles_512.jpg --cell 320 --title "Tübingen x the paper's styles, 512 px" \
    --corner tubingen "$paper/tubingen.jpg" \
    --col "gatys stylize (defaults)" --col "reference: neural-style (Lua)" "${rows[@]}"
