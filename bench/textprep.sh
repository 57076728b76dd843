#!/usr/bin/env bash
# Text preparation throughput (bench/Pretrain.Bench.TextPrep: scan, tokenize, write shards, index) for the
# byte and cl100k_base tokenizers on the King James Bible, against `wc -w` over the same file in the
# same run (the machine is shared, so only figures from one run compare). Replaces the
# "## Text preparation" section of docs/BENCHMARKS.md and leaves the other sections as they are.
# Usage: bench/textprep.sh [REPEAT]        (default 3 timed runs per tokenizer after a warm-up; best kept)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
repeat=${1:-3}
kjv="$repo/data/kjv.txt"
out=$(mktemp -d)

if [ ! -s "$kjv" ]; then
  command -v bible >/dev/null || { apt-get update >/dev/null && apt-get install -y bible-kjv >/dev/null; }
  mkdir -p "$repo/data"
  bible "Gen1:1-Rev22:21" > "$kjv.tmp" && mv "$kjv.tmp" "$kjv"
fi

dotnet build "$repo/bench/Pretrain.Bench.TextPrep/Pretrain.Bench.TextPrep.csproj" -c Release -v quiet -nologo >/dev/null
bench="$repo/bench/Pretrain.Bench.TextPrep/bin/Release/net10.0/Pretrain.Bench.TextPrep.dll"

# wc -w: best of the same number of runs, file already in the page cache.
cat "$kjv" > /dev/null
wc_best=
for _ in $(seq "$repeat"); do
  start=$(date +%s.%N); wc -w "$kjv" > /dev/null; end=$(date +%s.%N)
  wc_best=$(awk -v a="$start" -v b="$end" -v best="$wc_best" 'BEGIN { t = b - a; print (best == "" || t < best) ? t : best }')
done
bytes=$(stat -c %s "$kjv")
dotnet "$bench" "$kjv" --repeat "$repeat" byte cl100k_base | tee "$out/ours.txt" >&2

{
  echo "## Text preparation"
  echo
  echo "The King James Bible (\`data/kjv.txt\`, $bytes bytes of UTF-8, from \`bible \"Gen1:1-Rev22:21\"\`) prepared"
  echo "whole: corpus scan, tokenize, write uint16/int32 token shards, verify them and write \`index.json\` and"
  echo "\`vocabulary.json\` (compaction on, 1% validation), every task in turn on one thread; best of $repeat"
  echo "runs after a warm-up. \`wc -w\` reads the same file in the same run as a floor for \"just read the"
  echo "text\". MB = 10^6 bytes of input text."
  echo "Measured: $(nproc) cores, $(date -u '+%Y-%m-%d %H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "(a shared machine: compare within this table)."
  echo
  echo "Command: \`bench/textprep.sh $repeat\`"
  echo
  echo "| what | seconds | MB/s | tokens | tokens/s | shard bytes | tasks | compact vocabulary |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
  awk -v s="$wc_best" -v n="$bytes" 'BEGIN { printf "| `wc -w` | %.3f | %.1f | | | | | |\n", s, n / 1e6 / s }'
  awk '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
         printf "| prepare, %s | %.3f | %.2f | %d | %.2fM | %d | %d | %d |\n", v["tokenizer"], v["seconds"], v["mb_per_s"],
           v["tokens"], v["tokens"] / v["seconds"] / 1e6, v["shard_bytes"], v["tasks"], v["compact_vocabulary"] }' "$out/ours.txt"
} > "$out/section.md"

source "$repo/bench/doc-section.sh"
replace_section "$repo/docs/BENCHMARKS.md" "## Text preparation" "$out/section.md"
cat "$out/section.md"
rm -rf "$out"
