#!/usr/bin/env bash
# Reproduces docs/performance_512.jpg: the paper's recipe (baseline) beside the defaults at
# 512 px, both from one run of the time-to-quality benchmark, labelled with their times.
# Usage: docs/performance_sheet.sh [RESULTS_DIR]   (default benchmarks/results; run
#        `python benchmarks/time_to_quality.py --sizes 512` first: it writes the images and CSV)
set -euo pipefail
results=${1:-benchmarks/results}
paper=${PAPER:-../shared/paper}
field() {  # field RUN: "<run>: <seconds> s, <precision>"; field title: the comparison
    "${PYTHON:-python3}" - "$results/time_to_quality.csv" "$1" <<'PY'
import sys, pandas as pd
t = pd.read_csv(sys.argv[1])
t = t[t["size"] == 512].set_index("run")
if sys.argv[2] == "title":
    d, b = t.loc["defaults"], t.loc["baseline"]
    if d.ratio_to_baseline == d.ratio_to_baseline:  # reached it (not NaN)
        print(f"512 px, 2 CPU cores: defaults reach the baseline's loss in {d.ratio_to_baseline:.2f} of its time")
    else:
        print(f"512 px: defaults at {d.quality_vs_baseline:.4f} x the baseline's loss in {d.seconds / b.seconds:.2f} of its time")
else:
    r = t.loc[sys.argv[2]]
    print(f"{sys.argv[2]}: {r.seconds:.0f} s, {r.precision}")
PY
}
gatys sheet -o docs/performance_512.jpg --cell 480 --title "$(field title)" \
    --corner tubingen "$paper/tubingen.jpg" \
    --col "$(field baseline)" --col "$(field defaults)" \
    --row starry_night "$paper/starry_night.jpg" \
    "$results/time_to_quality_512_baseline.png" "$results/time_to_quality_512_defaults.png"
