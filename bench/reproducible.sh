#!/usr/bin/env bash
# What reproducible runs cost (bench/Pretrain.Bench.Reproducible): recipes/gpt-kjv-demo.yaml on 2 rank processes
# over a loopback TCP ring, on the fast path and with `reproducible:` at 2, 8 and 32 micro-shards, the
# configurations taking turns for ROUNDS rounds. Step time (median after warm-up), step phases, and the gradient
# allreduce's bytes and effective busBw, side by side. Replaces the "## Reproducible runs" section of
# docs/BENCHMARKS.md and leaves the other sections as they are. Run it on a quiet machine (load below 1).
# Usage: bench/reproducible.sh [ROUNDS] [STEPS]     (default 3 rounds of 40 measured steps)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
root=$repo
source "$repo/scripts/setup.sh"
ensure_kjv_text
build_if_needed
rounds=${1:-3}
steps=${2:-40}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date -u '+%Y-%m-%d %H:%M UTC')
"$repo/bench/Pretrain.Bench.Reproducible/bin/Release/net10.0/Pretrain.Bench.Reproducible" \
  --recipe "$repo/recipes/gpt-kjv-demo.yaml" --workers 2 --shards 0,2,8,32 --steps "$steps" --warmup 5 --rounds "$rounds" \
  > "$out/table.md" 2> >(tee "$out/progress.txt" >&2)
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

{
  echo "## Reproducible runs"
  echo
  echo "The cost of \`reproducible.enabled: true\` (README, *Reproducible runs*): \`recipes/gpt-kjv-demo.yaml\` (0.8 M parameters,"
  echo "global batch 32) trained by 2 rank processes over a loopback TCP ring, 1 torch thread each, on the fast path and"
  echo "with 2, 8 and 32 micro-shards (16, 4 and 1 sample per shard). The configurations take turns, $rounds rounds of"
  echo "$steps steps after 5 of warm-up each; medians over the rounds. Phases are ms per step on rank 0. *Allreduce* is"
  echo "the gradient sum: on the fast path the fp32 bucket allreduce, with the mode the max exchange, the conversions to"
  echo "and from 64-bit fixed point and the int64 allreduce (twice the bytes); effective busBw = bytes / that phase's time"
  echo "× 2(n−1)/n, so it includes waiting for the slower rank. *Checksums agree*: every round of a configuration ended"
  echo "with the same replica checksum."
  echo "Measured: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $started;"
  echo "load average $load_before before (nothing else running), $load_after after (the benchmark's own 2 ranks)."
  echo
  echo "Command: \`bench/reproducible.sh $rounds $steps\`"
  echo
  cat "$out/table.md"
  echo
  # The issue's goal: at most 15% slower steps for gpt-kjv-demo; say per shard count whether it holds and by how much not.
  awk -F'|' '/^\| reproducible/ { gsub(/ /, "", $4); r = $4; sub(/x$/, "", r); name = $2; gsub(/^ +| +$/, "", name)
      verdict = (r + 0 <= 1.15) ? "met" : sprintf("missed by %.2fx", r - 1.15)
      printf "%s%s: %sx (%s)", (n++ ? "; " : "Goal, steps at most 1.15x the fast path: "), name, r, verdict }
      END { if (n) print "." }' "$out/table.md"
  echo
  echo "Where the time goes: each micro-shard is a forward and backward of its own, so small shards run many small"
  echo "kernels (per-op overhead grows with the shard count, and so does the data phase, which loads each shard"
  echo "apart); the exact sum adds a pass over the gradient per shard held and twice the allreduce bytes. Choose the"
  echo "fewest shards that still allow the most workers the job will run on: \`shards\` bounds the world size."
} > "$out/section.md"

source "$repo/bench/doc-section.sh"
replace_section "$repo/docs/BENCHMARKS.md" "## Reproducible runs" "$out/section.md"
cat "$out/section.md"
