#!/usr/bin/env bash
# Shard reading (bench/Pretrain.Bench.Shards) against `cat` over the same bytes, and image preparation
# throughput, on the real Fashion-MNIST; replaces the "## Shard reading" section of docs/BENCHMARKS.md
# and keeps every other section. Both readers run from a warm page cache: nothing is dropped.
# Usage: bench/shards.sh [REPEATS]        (default 5 timed passes each, best kept, after a warm-up pass)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
repeats=${1:-5}
input=/usr/share/datasets/fashion-mnist
if [ ! -d "$input" ]; then
  apt-get install -y dataset-fashion-mnist >/dev/null 2>&1 \
    || { apt-get update >/dev/null && apt-get install -y dataset-fashion-mnist >/dev/null; }
fi

dotnet build "$repo/bench/Pretrain.Bench.Shards/Pretrain.Bench.Shards.csproj" -c Release -v quiet -nologo >/dev/null
bench="$repo/bench/Pretrain.Bench.Shards/bin/Release/net10.0/Pretrain.Bench.Shards.dll"
section=$(mktemp)
{
  echo "## Shard reading"
  echo
  echo "Memory-mapped shard reads (\`Data/Shards\`) against \`cat\` of the same files into \`/dev/null\`, in the same run,"
  echo "both from a warm page cache (nothing dropped: the shards were just written)."
  echo "Measured: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(date -u '+%Y-%m-%d %H:%M UTC'),"
  echo "load average $(cut -d' ' -f1-3 /proc/loadavg) (other engineers were building on this machine: figures are noisy)."
  echo
  echo "Command: \`bench/shards.sh $repeats\`"
  echo
  dotnet "$bench" --input "$input" --repeats "$repeats"
} > "$section"

doc="$repo/docs/BENCHMARKS.md"
source "$repo/bench/doc-section.sh"
replace_section "$doc" "## Shard reading" "$section"
rm -f "$section"
sed -n '/^## Shard reading/,$p' "$doc"
