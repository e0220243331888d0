#!/usr/bin/env bash
# The GPU benchmark, one command on a CUDA machine:
#     benchmarks/gpu.sh [OUT_DIR]        (default benchmarks/results/gpu)
# Throughput (s/eval, GFLOP/s, fraction of the matmul peak, peak memory) at 512 and 1024 px in
# fp32 and bf16, in both memory layouts and compiled; then time to quality at 512 and 1024 px
# (the paper's recipe in fp32 against the defaults, the defaults forced to fp32, and the
# defaults compiled, its first compile included), one run after the other so that peak memory is per run.
# Needs torch with CUDA and the gatys package's dependencies; the images default to the paper's
# pair beside the checkout and fall back to the bundled data (GATYS_CONTENT / GATYS_STYLE to
# choose); the backbone defaults to the bundled caffe weights (GATYS_BACKBONE=FILE for a
# state dict exported with `gatys weights --export FILE`).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/results/gpu}
python=${PYTHON:-python3}
content=${GATYS_CONTENT:-../shared/paper/tubingen.jpg}
style=${GATYS_STYLE:-../shared/paper/starry_night.jpg}
[ -f "$content" ] || content=data/content/palace.jpg
[ -f "$style" ] || style=data/style/starry_night.jpg
inputs=(--device cuda --content "$content" --style "$style" --backbone "${GATYS_BACKBONE:-vgg19-caffe}")
mkdir -p "$out"
export PYTHONUNBUFFERED=1
"$python" -c 'import torch; assert torch.cuda.is_available(), "no CUDA device"; print(torch.cuda.get_device_name(), torch.__version__)'
for layout in nhwc nchw; do
    "$python" benchmarks/throughput.py "${inputs[@]}" --sizes 512 1024 --layout "$layout" \
        --out "$out/throughput_$layout.csv"
done
"$python" benchmarks/throughput.py "${inputs[@]}" --sizes 512 1024 --compile --out "$out/throughput_compiled.csv"
"$python" benchmarks/time_to_quality.py "${inputs[@]}" --sizes 512 1024 --sequential --variant fp32:precision=fp32 \
    --variant compiled:compile=on --out "$out" --tag time_to_quality
echo "results in $out"
