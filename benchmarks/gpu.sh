#!/usr/bin/env bash
# The GPU figures in one prepared script, for a machine with an NVIDIA GPU and jax[cuda]:
#   1. sweep throughput: 64 small runs (4 schedules x 4 peak lrs x 4 seeds) vmapped in one
#      program against the same runs trained one after another (MLP and CNN);
#   2. bf16 / bf16 + stochastic rounding / bf16 + Kahan step time against float32, with the
#      persistent bytes per parameter of each mode, and their accuracy;
#   3. curve-fit throughput against a per-curve SciPy loop;
#   4. laws.fit (the Multi-Power Law, first call and later calls) against the paper's algorithm.
# Every result file is written under OUT (default benchmarks/results/gpu) next to device.txt,
# which names the device (nvidia-smi and jax.devices()).
#
# Usage: bash benchmarks/gpu.sh [OUT]        (about 10 minutes on one GPU)
#        SMALL=1 bash benchmarks/gpu.sh OUT  (the same code path in a few minutes, e.g. on a CPU)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/results/gpu}
mkdir -p "$out/bf16"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null \
    || echo "no nvidia-smi"
  python -c "import jax; print(jax.devices(), jax.__version__)"
} > "$out/device.txt"
cat "$out/device.txt"
if [ "${SMALL:-0}" = 1 ]; then
  steps=20; cnn_steps=10; budgets="mlp=60 cnn1d=40"; timing=20; curves=500; scipy=20
  law_budgets="300"
else
  steps=300; cnn_steps=200; budgets="mlp=3000 cnn1d=1200"; timing=300; curves=10000; scipy=300
  law_budgets="1000 3000"
fi
grid=(--schedules linear,rex,cosine,constant --lrs 1e-3,3e-3,1e-2,3e-2 --seeds 0,1,2,3
      --devices "" --processes "" --repeats 2)
python benchmarks/sweep_throughput.py --model mlp --steps "$steps" "${grid[@]}" --out "$out"
python benchmarks/sweep_throughput.py --model cnn1d --steps "$cnn_steps" "${grid[@]}" --out "$out"
python benchmarks/bf16/run.py --budgets $budgets --seeds 0 1 2 --timing-steps "$timing" \
  --timing-rounds 3 --out "$out/bf16"
python benchmarks/curve_fits.py --curves "$curves" --steps 400 --scipy-curves "$scipy" \
  --repeats 3 --out "$out"
# shellcheck disable=SC2086
python benchmarks/laws_fit.py --budgets $law_budgets --repeats 2 --out "$out"
echo "wrote $out"
