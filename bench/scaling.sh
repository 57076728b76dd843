#!/usr/bin/env bash
# Data-parallel scaling (bench/Pretrain.Bench.Scaling): the GPT and SimCLR demo recipes trained by 1, 2 and 4 rank
# processes over our ring (shared-memory links, as workers of one host use by default) and Trainer, 1 torch thread each, the same global
# batch whatever the world size, the world sizes taking turns for ROUNDS rounds. Samples/s over the measured steps,
# speed-up over 1 worker, scaling efficiency and the step phases of rank 0. Replaces the "## Scaling" section of
# docs/BENCHMARKS.md and leaves the other sections as they are. The figures are only valid on a quiet machine (load
# average below 1, nothing building). About 20 minutes on 2 cores with the defaults.
# Usage: bench/scaling.sh [ROUNDS] [STEPS]     (default 3 rounds of 30 measured steps after 5 of warm-up)
#        bench/scaling.sh --help
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,9p' "$0" | cut -c3-; exit 0 ;; esac
name=scaling.sh
source "$(dirname "$0")/Shared/rounds.sh"
recipes=(gpt-kjv-demo simclr-fashion-mnist)
workers=1,2,4

prepare_once "$repo/data/fashion-mnist" fashion-mnist --validation-fraction 0   # SimCLR reads prepared shards

note_load
# Every wait inside is bounded (30 min per run of ranks) by the benchmark itself; this bounds the whole.
timeout 4h "$repo/bench/Pretrain.Bench.Scaling/bin/Release/net10.0/Pretrain.Bench.Scaling" \
  --recipes "$(for r in "${recipes[@]}"; do printf '%s,' "$repo/recipes/$r.yaml"; done)" --workers "$workers" \
  --steps "$steps" --warmup 5 --rounds "$rounds" \
  > "$out/table.md" 2> >(tee "$out/progress.txt" >&2)
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
cores=$(nproc)

{
  echo "## Scaling"
  echo
  echo "Samples per second of data-parallel training as workers are added: \`recipes/gpt-kjv-demo.yaml\` (global batch 32)"
  echo "and \`recipes/simclr-fashion-mnist.yaml\` (global batch 256, global batch norm and NT-Xent over all workers) trained"
  echo "by 1, 2 and 4 rank processes over our ring — \`RingCommunicator\`, whose links go through shared memory between ranks of"
  echo "one host as \`--transport auto\` (the default) makes them, and \`Trainer\`, with the C heap kept as \`pretrain\` keeps it —"
  echo "without the coordinator, which no step waits for — with 1 torch thread each. The global batch stays the same, so"
  echo "each worker computes 1/N of it (strong scaling). Samples/s = global batch × measured steps / their wall time on"
  echo "rank 0; speed-up is over 1 worker, efficiency = speed-up / workers. Phases are ms per step on rank 0; *allreduce*"
  echo "includes waiting for the slowest rank. The world sizes take turns, $rounds rounds of $steps steps after 5 of warm-up"
  echo "each; medians over the rounds."
  if [ "$cores" -lt 4 ]; then
    echo "This machine has $cores cores, so with 1 torch thread per worker **4 workers oversubscribe it** ($((4 / cores)) ranks per"
    echo "core, and each rank's ring threads on top). The scheduler then parks a rank while its peers wait for it in every"
    echo "collective (SimCLR's global batch norm adds one per layer each way), so the 4-worker rows measure the oversubscription"
    echo "more than the ring: what running more workers than cores on one machine costs, not how the ring scales."
  else
    echo "This machine has $cores cores: every rank has a core of its own."
  fi
  echo "Measured: $cores cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $started;"
  echo "load average $load_before before (1, 5, 15 min; valid below 1), $load_after after (the benchmark's own ranks)."
  echo
  echo "Command: \`bench/scaling.sh $rounds $steps\`"
  echo
  cat "$out/table.md"
} > "$out/section.md"

source "$repo/bench/doc-section.sh"
replace_section "$repo/docs/BENCHMARKS.md" "## Scaling" "$out/section.md"
cat "$out/section.md"
