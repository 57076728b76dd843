#!/usr/bin/env bash
# What our training loop costs over a bare TorchSharp loop (bench/Pretrain.Bench.StepOverhead): per recipe, the same
# model, global batches, loss and optimizer stepped by the plainest loop and by our Trainer on one worker, each run a
# fresh process with 1 torch thread (the bare loop once on glibc's default heap and once on the heap pretrain keeps),
# taking turns for ROUNDS rounds. Median step time after warm-up, the
# step phases, and the CPU time each process spends in user mode and in the kernel over the measured steps
# (/proc/self/stat), for the byte-level GPT demo, the SimCLR demo and the GPT on cl100k_base tokens, with the KJV's
# compact vocabulary and with the whole one (bench/recipes). Replaces the "## Step overhead" section of docs/BENCHMARKS.md and leaves the
# other sections as they are. The figures are only valid on a quiet machine (load average below 1, nothing building).
# About 30 minutes on 2 cores with the defaults.
# Usage: bench/step-overhead.sh [ROUNDS] [STEPS]     (default 3 rounds of 30 measured steps after 5 of warm-up)
#        bench/step-overhead.sh --help
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,12p' "$0" | cut -c3-; exit 0 ;; esac
name=step-overhead.sh
source "$(dirname "$0")/Shared/rounds.sh"
recipes=(recipes/gpt-kjv-demo recipes/simclr-fashion-mnist recipes/gpt-kjv-bpe bench/recipes/gpt-kjv-cl100k-full)

prepare_once "$repo/data/fashion-mnist" fashion-mnist --validation-fraction 0
prepare_once "$repo/data/kjv-cl100k" text --input "$repo/data/kjv.txt" --tokenizer cl100k_base --compact-vocabulary --validation-fraction 0.02
prepare_once "$repo/data/kjv-cl100k-full" text --input "$repo/data/kjv.txt" --tokenizer cl100k_base --validation-fraction 0.02
vocabulary=$(jq -r '.tokenizer.compact.vocabularySize // empty' "$repo/data/kjv-cl100k/index.json" 2>/dev/null || true)

note_load
# Each child run is bounded (30 min) by the benchmark itself; this bounds the whole.
timeout 4h "$repo/bench/Pretrain.Bench.StepOverhead/bin/Release/net10.0/Pretrain.Bench.StepOverhead" \
  --recipes "$(for r in "${recipes[@]}"; do printf '%s,' "$repo/$r.yaml"; done)" --steps "$steps" --warmup 5 --rounds "$rounds" \
  --clock-ticks "$(getconf CLK_TCK 2>/dev/null || echo 100)" \
  > "$out/table.md" 2> >(tee "$out/progress.txt" >&2)
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

{
  echo "## Step overhead"
  echo
  echo "What our training loop costs over the plainest TorchSharp loop, on one worker. Per recipe, the same model, the same"
  echo "global batches (the ids our sampler draws for steps 0, 1, 2, …), the same loss and the same optimizer class are"
  echo "stepped by a bare loop of forward, backward, clip (when the recipe clips), optimizer step and zeroing the gradients"
  echo "(in place, as our Trainer does), and by our \`Trainer\` with one rank (\`SingleRank\`: the collectives are the"
  echo "identity, everything else runs: data path, gradient buckets, non-finite check, gradient norm, metrics, sample"
  echo "digest). The bare loop has **no data loading**: its batches are read, and SimCLR's two views augmented, into"
  echo "tensors before the clock starts, so our whole data path counts as overhead. Its SimCLR uses torch's BatchNorm2d,"
  echo "ours the recipe's global batch norm, which on one worker computes the same through its own ops. The bare loop runs"
  echo "twice: on glibc's default C heap, as a plain TorchSharp program does, and on the heap \`pretrain\` keeps"
  echo "(\`Worker/Host/NativeHeap.cs\`: freed memory stays in the process instead of being faulted in again next step, 12 µs"
  echo "a page on these VMs); *vs bare* compares with the second, so it is the loop's own cost. Each run is a"
  echo "fresh process with 1 torch thread; bare and ours take turns (the order flips every round), $rounds rounds of $steps"
  echo "steps after 5 of warm-up; medians over the rounds. A step is timed from the end of one to the end of the next"
  echo "(for ours, between the loop's progress reports, so its per-step bookkeeping is inside). Phases are ms per step;"
  echo "the bare loop's *optimizer* is everything after backward (clip, update, zeroing, freeing the step's tensors);"
  echo "*other* = mean step − the phases, the loop's own time outside them. *User* and *kernel* are the process's CPU"
  echo "time over the measured steps (\`/proc/self/stat\` utime and stime, all threads) over their wall time; *minor"
  echo "faults* (minflt) count first touches of freshly mapped memory, such as new tensors that malloc maps afresh."
  echo "\`gpt-kjv-bpe\` is the GPT on cl100k_base tokens with the compact vocabulary of the KJV${vocabulary:+ ($vocabulary ids)},"
  echo "the largest of the shipped recipes; \`gpt-kjv-cl100k-full\` (\`bench/recipes\`) is the same GPT with cl100k's whole"
  echo "vocabulary, 100,281 ids, so its embedding and logits are those of a GPT-4-sized vocabulary: the heaviest memory traffic"
  echo "per step we measure, about 3x that of the 34,553-token corpus the issue's kernel-time figure came from."
  echo "Measured: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $started;"
  echo "load average $load_before before (1, 5, 15 min; valid below 1), $load_after after (the benchmark's own runs)."
  echo
  echo "Command: \`bench/step-overhead.sh $rounds $steps\`"
  echo
  cat "$out/table.md"
} > "$out/section.md"

source "$repo/bench/doc-section.sh"
replace_section "$repo/docs/BENCHMARKS.md" "## Step overhead" "$out/section.md"
cat "$out/section.md"
