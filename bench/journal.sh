#!/usr/bin/env bash
# Coordinator recovery from its SQLite journal (bench/Pretrain.Bench.Journal): a job of one worker journals EVENTS
# committed steps through the real job actor, then a new coordinator process takes the job up from the same journal,
# three times, without snapshots and with a snapshot every 1000 events (PRETRAIN_SNAPSHOT_EVERY). The acceptance: a
# job with 100,000 journaled events recovers in under 5 s. Replaces the "## Journal recovery" section of
# docs/BENCHMARKS.md and leaves the other sections as they are.
# Usage: bench/journal.sh [EVENTS]        (default 100000)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
events=${1:-100000}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

started=$(date -u '+%Y-%m-%d %H:%M UTC')
# Progress goes to stderr; stdout is the table (anything `dotnet run` prints before it is dropped).
(cd "$repo" && dotnet run -c Release --project bench/Pretrain.Bench.Journal -- "$events") > "$out/run.txt"
awk '/^\| events /{ p = 1 } p' "$out/run.txt" > "$out/table.md"

{
  echo "## Journal recovery"
  echo
  echo "A restarted coordinator takes its job up from the SQLite journal (\`journal.db\`): from \`CoordinatorHost.StartAsync\`"
  echo "(the node joining itself as seed, then the job actor's recovery) to the job actor's first answer holding the journaled"
  echo "last step. The job has one worker (a local actor) and world size 1; its journal holds the job, the worker, the"
  echo "generation and $events \`StepCommitted\` events, written through the job actor from rank 0's progress reports. Each"
  echo "phase (writing, every restart) is a process of its own, as a restarted coordinator is: cold JIT, the snapshot"
  echo "interval (\`PRETRAIN_SNAPSHOT_EVERY\`, 0 = never) read afresh. Three restarts per interval, median kept;"
  echo "*node start* is the part before the job actor exists. MB = 10^6 bytes of \`journal.db*\` after the writes."
  echo "Measured: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $started"
  echo "(a shared machine: compare within this table). Run it quiet (load below 1, nothing building); the load at the"
  echo "end is the benchmark's own journaling. The default is a snapshot every 1,000 events."
  echo
  echo "Command: \`bench/journal.sh $events\`"
  echo
  cat "$out/table.md"
} > "$out/section.md"

source "$repo/bench/doc-section.sh"
replace_section "$repo/docs/BENCHMARKS.md" "## Journal recovery" "$out/section.md"
cat "$out/section.md"
