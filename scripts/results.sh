#!/usr/bin/env bash
# Runs the method recipes end to end on this machine and writes docs/RESULTS.md from their summary.json
# files: SimCLR, MoCo, BYOL and MAE (linear probe beside raw pixels, kNN) after the demo-length recipes and, with
# --long, after the longer ones; GPT validation loss, bits per byte and MFU; BERT masked-token accuracy.
#
# Usage: scripts/results.sh [--long] [--only NAME[,NAME...]]
#   (the demo-length runs take about 25 minutes on 2 cores; --long adds about 85)
#   --only runs just the named rows (simclr-demo moco byol mae gpt-demo gpt-bpe bert simclr-long moco-long simclr-best gpt) and keeps
#   every other row, and the Notes section, as docs/RESULTS.md has them: each row's command names the
#   dated run directory it came from.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
long=0; only=""
while [ $# -gt 0 ]; do
  case $1 in
    --long) long=1 ;;
    --only) only=",${2:?--only needs a comma-separated list of run names},"; shift ;;
    -h|--help) sed -n '2,10p' "$0" | cut -c3-; exit 0 ;;
    *) echo "results.sh: unknown argument '$1' (expected --long or --only NAMES)" >&2; exit 2 ;;
  esac
  shift
done
runs="runs/results-$(date +%Y%m%d-%H%M%S)"   # relative, as the commands in RESULTS.md read
doc=docs/RESULTS.md
declare -A row=()

# Waits (at most 5 minutes) for the 1-minute load average to fall below 1 — the previous row's workers leave it high —
# and prints it: each row's wall time states the load it started under, and is only meaningful below 1.
settle() {
  local waited=0
  while awk '{ exit !($1 >= 1) }' /proc/loadavg && [ $waited -lt 300 ]; do sleep 10; waited=$((waited + 10)); done
  cut -d' ' -f1 /proc/loadavg
}
value() { jq -r "$2 // \"n/a\"" "$1/summary.json"; }
pct() { awk -v v="$1" 'BEGIN { if (v == "n/a") print "n/a"; else printf "%.2f%%", 100 * v }'; }
num() { awk -v v="$1" 'BEGIN { if (v == "n/a") print "n/a"; else printf "%.4f", v }'; }
wanted() { [ -z "$only" ] || [[ $only == *",$1,"* ]]; }
previous() { [ -f "$doc" ] && grep -m1 -F "| $1 | " "$doc" || true; }   # the row as RESULTS.md has it

vision() { # name recipe
  local name=$1 recipe=$2 dir="$runs/$1"
  wanted "$name" || return 0
  local cmd="./pretrain local --recipe $recipe --workers 2 --run-dir $dir && ./pretrain eval --run-dir $dir"
  [ "$name" = "simclr-demo" ] && cmd="./pretrain demo --run-dir $dir"
  echo "== $name: $cmd" >&2
  local start load
  load=$(settle); start=$SECONDS
  if ! eval "$cmd" >&2; then echo "results.sh: $name failed; docs/RESULTS.md keeps its previous row" >&2; failed+=("$name"); return; fi
  local wall=$((SECONDS - start))
  row[$name]="| $name | \`$cmd\` | $(value "$dir" .steps) | $(num "$(value "$dir" .first_loss)") → $(num "$(value "$dir" .final_loss)") | $(pct "$(value "$dir" .eval.linear_probe_accuracy)") | $(pct "$(value "$dir" .eval.raw_pixel_probe_accuracy)") | $(pct "$(value "$dir" .eval.knn_accuracy)") | ${wall} s (load $load) |"
  write_doc
}

text() { # name recipe
  local name=$1 recipe=$2 dir="$runs/$1"
  wanted "$name" || return 0
  local cmd="./pretrain local --recipe $recipe --workers 2 --run-dir $dir"
  echo "== $name: $cmd" >&2
  local start load
  load=$(settle); start=$SECONDS
  if ! eval "$cmd" >&2; then echo "results.sh: $name failed; docs/RESULTS.md keeps its previous row" >&2; failed+=("$name"); return; fi
  local wall=$((SECONDS - start))
  row[$name]="| $name | \`$cmd\` | $(value "$dir" .steps) | $(num "$(value "$dir" .first_loss)") → $(num "$(value "$dir" .final_loss)") | $(num "$(value "$dir" .eval.val_loss)") | $(num "$(value "$dir" .eval.bits_per_byte)") | $(pct "$(value "$dir" .eval.masked_accuracy)") | $(pct "$(value "$dir" .mfu)") | ${wall} s (load $load) |"
  write_doc
}

vision_rows=(simclr-demo moco byol mae); text_rows=(gpt-demo gpt-bpe bert)
if [ $long = 1 ] || [ -n "$only" ]; then vision_rows+=(simclr-long moco-long simclr-best); text_rows+=(gpt); fi
for name in "${vision_rows[@]}" "${text_rows[@]}"; do row[$name]=$(previous "$name"); done
notes=$( [ -f "$doc" ] && sed -n '/^## Notes$/,$p' "$doc" || true)
failed=()

write_doc() { # the whole document, rewritten after every run so that a later failure loses nothing
  {
    echo "# Results"
    echo
    echo "Written by \`scripts/results.sh\` on this machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), no accelerator."
    echo "Each row's command names the run directory it came from, stamped with the time it started."
    echo "Every run uses 2 local worker processes (1 torch thread each). Wall time includes start-up and evaluation; beside it, the 1-minute load average as the row started (rows without it predate that)."
    echo
    echo "## Vision: Fashion-MNIST test set (10,000 images)"
    echo
    echo "Linear probe = a linear classifier trained on frozen features of the 60,000 training images (Adam, 10 epochs,"
    echo "standardized features), tested on the test set; the same probe on raw pixels is the baseline. kNN = the online"
    echo "monitor's weighted vote (k = 200, T = 0.07) of the test features among the training features."
    echo
    echo "| run | command | steps | loss first → last | linear probe | raw pixels | kNN | wall |"
    echo "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: |"
    for name in "${vision_rows[@]}"; do [ -n "${row[$name]}" ] && echo "${row[$name]}"; done
    echo
    echo "## Text: the King James Bible, held-out tail"
    echo
    echo "GPT on bytes: next-byte loss on the last 2% of the text (Revelation), bits per byte = loss / ln 2. GPT on BPE"
    echo "(gpt-bpe): cl100k_base tokens prepared by \`pretrain prepare text\`, one held-out document of 66; bits per byte ="
    echo "loss per token / ln 2 / the validation text's UTF-8 bytes per token. BERT: masked-token accuracy on the held-out"
    echo "tail with BERT's 15% / 80-10-10 masking. MFU = model FLOPs (6N + 12·L·H·Q·T per token) over the matmul peak"
    echo "measured on the same machine with the same threads."
    echo
    echo "| run | command | steps | loss first → last | val loss | bits/byte | masked acc. | MFU | wall |"
    echo "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |"
    for name in "${text_rows[@]}"; do [ -n "${row[$name]}" ] && echo "${row[$name]}"; done
    if [ -n "$notes" ]; then echo; echo "$notes"; fi
  } > "$doc.tmp"
  mv "$doc.tmp" "$doc"
}

mkdir -p "$runs"
./pretrain --help >/dev/null   # installs and builds once, outside the timings
vision simclr-demo recipes/simclr-fashion-mnist.yaml
vision moco recipes/moco-fashion-mnist.yaml
vision byol recipes/byol-fashion-mnist.yaml
vision mae recipes/mae-fashion-mnist.yaml
text gpt-demo recipes/gpt-kjv-demo.yaml
text gpt-bpe recipes/gpt-kjv-bpe.yaml
text bert recipes/bert-kjv.yaml
if [ $long = 1 ] || [ -n "$only" ]; then
  vision simclr-long recipes/simclr-fashion-mnist-long.yaml
  vision moco-long recipes/moco-fashion-mnist-long.yaml
  vision simclr-best recipes/simclr-fashion-mnist-best.yaml
  text gpt recipes/gpt-kjv.yaml
fi
echo "wrote $doc (runs in $runs)" >&2
if [ ${#failed[@]} -gt 0 ]; then echo "results.sh: failed: ${failed[*]}" >&2; exit 1; fi
