#!/usr/bin/env bash
# Elastic training figures, all from real `pretrain local` runs on this machine, in one run:
#  - recovery: SIGKILL one of 3 workers of the tiny GPT after its step-10 checkpoint; time from the kill to
#    the first step the survivors commit (polled from the terminal output), and summary.json's
#    max_recovery_seconds (failure detected -> first step); against the torchrun way, a restart of the whole
#    job with --resume (time from launch to its first step, plus the steps since the checkpoint that it redoes);
#  - checkpoints: rank 0's blocking time per save (snapshot copy, and waiting for the previous write) against
#    the time the write itself takes on its own thread, for the byte-level GPT of recipes/gpt-kjv.yaml (2.7 M
#    parameters, ~33 MB of state with AdamW's moments).
# Replaces the "## Elastic training" section of docs/BENCHMARKS.md and leaves the other sections as they are.
# Usage: bench/elastic.sh [REPEAT]     (default 3 kills)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
root=$repo
source "$repo/scripts/setup.sh"
ensure_kjv_text
build_if_needed
repeat=${1:-3}
work=$(mktemp -d "${TMPDIR:-/tmp}/pretrain-bench-elastic.XXXXXX")
trap 'rm -rf "$work"' EXIT
cli="$repo/Cli/bin/Release/net10.0/pretrain"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

tiny="$work/tiny.yaml"
sed -e "s#^steps: 30 #steps: 60 #" -e "s#\.\./data/kjv.txt#$repo/data/kjv.txt#" "$repo/recipes/gpt-kjv-tiny.yaml" > "$tiny"
now() { date +%s.%N; }
wait_for() { # FILE-or-DIR TEST PATTERN: poll every 10 ms, at most 120 s
  for _ in $(seq 12000); do
    case "$1" in dir) [ -d "$2" ] && return 0 ;; text) grep -q "$3" "$2" 2>/dev/null && return 0 ;; esac
    sleep 0.01
  done
  echo "bench/elastic.sh: timed out waiting for $2 $3" >&2; exit 1
}
json() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }

rows=()
for i in $(seq "$repeat"); do
  run="$work/kill-$i"
  "$cli" local --recipe "$tiny" --workers 3 --max-restarts 0 --run-dir "$run" --metrics-port -1 --worker-metrics-port -1 > "$run.out" 2>&1 &
  launcher=$!
  wait_for dir "$run/checkpoints/step-00000010"
  pid=$(grep -o "worker-1 started (pid [0-9]*" "$run.out" | grep -o "[0-9]*$")
  killed=$(now); kill -9 "$pid"
  wait_for text "$run.out" "committed step"
  recovered=$(now)
  wait "$launcher"
  rows+=("$(awk -v a="$killed" -v b="$recovered" 'BEGIN { printf "%.2f", b - a }') $(json "$run/summary.json" max_recovery_seconds) $(json "$run/summary.json" status) $(grep -o 'from step [0-9]*' "$run.out" | head -1 | grep -o '[0-9]*$')")
done

# The torchrun way: the whole job restarts from its newest checkpoint (step 10 of every 10), redoing the steps after it.
restart="$work/restart"
"$cli" local --recipe "$tiny" --workers 3 --max-steps 15 --run-dir "$restart" --metrics-port -1 --worker-metrics-port -1 > "$restart.first" 2>&1
rm -rf "$restart/checkpoints/step-00000015"     # as if killed at step 15: the newest checkpoint is step 10
launched=$(now)
"$cli" local --recipe "$tiny" --workers 3 --max-steps 16 --resume --run-dir "$restart" --metrics-port -1 --worker-metrics-port -1 > "$restart.out" 2>&1 &
launcher=$!
wait_for text "$restart.out" "step 1[1-9]/"
resumed=$(now)
wait "$launcher"
resume_seconds=$(awk -v a="$launched" -v b="$resumed" 'BEGIN { printf "%.2f", b - a }')

# Checkpoint blocking on the larger GPT: 2 workers, a checkpoint every 10 steps, 40 steps.
big="$work/gpt.yaml"
sed -e "s#\.\./data/kjv.txt#$repo/data/kjv.txt#" -e "s#^\(  every: \)[0-9]*#\110#" "$repo/recipes/gpt-kjv.yaml" > "$big"
"$cli" local --recipe "$big" --workers 2 --max-steps 40 --verbose --run-dir "$work/big" --metrics-port -1 --worker-metrics-port -1 > "$work/big.out" 2>&1
checkpoint_lines=$(grep -ho "written in [0-9]* ms (training blocked [0-9.]* ms)" "$work"/big/logs/worker-*.log)
state_mb=$(du -sm "$work/big/checkpoints/step-00000040" | cut -f1)
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

section=$(python3 - "$repeat" "$resume_seconds" "$state_mb" "$load_before" "$load_after" "$(date -u '+%Y-%m-%d %H:%M UTC')" "$checkpoint_lines" "${rows[@]}" <<'PY'
import re, statistics, sys
repeat, resume, state_mb, before, after, when, lines = sys.argv[1:8]
rows = [r.split() for r in sys.argv[8:]]
out = ["## Elastic training", "",
       "Recovery from a lost worker and the cost of a checkpoint to training, from real `pretrain local` runs.",
       f"Measured: 2 cores, {when}, load average {before} before the runs, {after} after them (the runs load both cores themselves; nothing else ran).", "",
       f"Command: `bench/elastic.sh {repeat}`", "",
       "SIGKILL of one of 3 workers of `recipes/gpt-kjv-tiny.yaml` (60 steps) after its step-10 checkpoint. *Kill → first step*:",
       "from the kill to the first step the survivors commit, read off the terminal; *detected → first step*: summary.json's",
       "`max_recovery_seconds`. The torchrun way restarts the whole job from its newest checkpoint: *restart → first step* is",
       "`pretrain local --resume` from launch to its first step, and it then redoes the steps after the checkpoint.", "",
       "| kill | kill → first step (s) | detected → first step (s) | status | regrouped from step |", "| --- | --- | --- | --- | --- |"]
for i, (kill, detected, status, step) in enumerate(rows, 1):
    out.append(f"| {i} | {kill} | {float(detected):.2f} | {status} | {step} |")
kills = [float(r[0]) for r in rows]
out += ["", f"Median kill → first step {statistics.median(kills):.2f} s against {resume} s for a restart from the checkpoint "
        f"({statistics.median(kills) / float(resume):.2f}x), which also loses up to `checkpoint.every` steps; elastic recovery redoes at most the step in flight.", ""]
pairs = [(int(a), float(b)) for a, b in re.findall(r"written in (\d+) ms \(training blocked ([0-9.]+) ms\)", lines)]
if pairs:
    writes, blocks = [p[0] for p in pairs], [p[1] for p in pairs]
    out += ["Checkpoints of `recipes/gpt-kjv.yaml` (2.7 M parameters; " + f"{state_mb} MB on disk per checkpoint), 2 workers, every 10 of 40 steps:",
            "rank 0's training thread blocks only for the snapshot copy (and for a previous write still in flight); writing,",
            "fsyncing and hashing run on another thread while training goes on.", "",
            "| saves | write on its own thread, median (ms) | rank 0 blocked per save, median (ms) | max blocked (ms) | blocked / write |",
            "| --- | --- | --- | --- | --- |",
            f"| {len(pairs)} | {statistics.median(writes):.0f} | {statistics.median(blocks):.1f} | {max(blocks):.1f} | {statistics.median(blocks) / max(statistics.median(writes), 1):.3f}x |", ""]
print("\n".join(out))
PY
)
python3 - "$repo/docs/BENCHMARKS.md" "$section" <<'PY'
import re, sys
path, section = sys.argv[1], sys.argv[2].rstrip() + "\n"
text = open(path).read()
pattern = re.compile(r"## Elastic training\n.*?(?=\n## |\Z)", re.S)
text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section
open(path, "w").write(text)
PY
echo "$section"
