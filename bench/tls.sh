#!/usr/bin/env bash
# What the opt-in TLS data plane costs (issue 14): our ring allreduce between rank processes on loopback, plain TCP and
# mutual TLS (bench/Pretrain.Bench.Allreduce --tls: AES-GCM on every byte, a TLS handshake per connection), taking turns
# in the same run, ROUNDS rounds; the median busBw of each is kept. Replaces the "## TLS data plane" section of
# docs/BENCHMARKS.md and leaves the other sections as they are. Run it on a quiet machine (load below 1, nothing building).
# Usage: bench/tls.sh [ITERS] [ROUNDS]        (default 10 timed iterations per size, 3 rounds)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
iters=${1:-10}
rounds=${2:-3}
sizes=(1048576 16777216 67108864)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

dotnet build "$repo/bench/Pretrain.Bench.Allreduce/Pretrain.Bench.Allreduce.csproj" -c Release -v quiet -nologo >/dev/null
bench="$repo/bench/Pretrain.Bench.Allreduce/bin/Release/net10.0/Pretrain.Bench.Allreduce.dll"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date -u '+%Y-%m-%d %H:%M UTC')

for round in $(seq "$rounds"); do
  for mode in plain tls; do
    echo "round $round, $mode" >&2
    # plain: TCP (--transport tcp), not the shared memory that ranks of one host would otherwise use
    dotnet "$bench" --ranks 2,4 --iters "$iters" $([ "$mode" = tls ] && echo --tls || echo --transport tcp) "${sizes[@]}" | tee -a "$out/$mode.txt" >&2
  done
done

# "ranks bytes" -> median busBw over the rounds
median() { awk '/^ranks=/ { split($1, r, "="); split($2, b, "="); split($5, w, "="); print r[2], b[2], w[2] }' "$1" \
  | sort -k1,1n -k2,2n -k3,3g | awk '{ k = $1" "$2; v[k] = v[k] " " $3; n[k]++ }
      END { for (k in v) { split(substr(v[k], 2), a, " "); print k, a[int((n[k] + 1) / 2)] } }' | sort -k1,1n -k2,2n; }
median "$out/plain.txt" > "$out/plain.tsv"
median "$out/tls.txt" > "$out/tls.tsv"

{
  echo "## TLS data plane"
  echo
  echo "The ring allreduce (fp32 sum) between rank processes on loopback, plain TCP against mutual TLS (\`pretrain coordinator"
  echo "--tls-data-plane\`, \`pretrain local --tls\`: SslStream, TLS 1.3 with AES-GCM on these machines, certificates of the job"
  echo "CA). busBw in GB/s, the median of $rounds rounds that take turns (plain, TLS, plain, ...), $iters iterations each after warm-up."
  echo "Measured: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $started, load average"
  echo "$load_before at the start (1, 5 and 15 minutes; nothing else running). Both sides encrypt and decrypt every byte on"
  echo "the same two cores that reduce, and SslStream seals at most 16 KiB per TLS record (one AES-GCM call and one copy"
  echo "each, 32 per 512 KiB segment), so TLS costs most where the plain ring is fastest; with more cores per rank and a"
  echo "real network between hosts, the share is smaller. Use it where the network is not trusted."
  echo
  echo "Command: \`bench/tls.sh $iters $rounds\`"
  echo
  echo "| ranks | size | plain | TLS | TLS / plain |"
  echo "| --- | --- | --- | --- | --- |"
  join -j1 <(awk '{print $1"_"$2, $3}' "$out/plain.tsv" | sort) <(awk '{print $1"_"$2, $3}' "$out/tls.tsv" | sort) \
    | awk '{ split($1, k, "_"); printf "%d %d %s %s\n", k[1], k[2], $2, $3 }' | sort -n -k1,1 -k2,2 \
    | awk '{ printf "| %d | %d MiB | %.2f | %.2f | %.2fx |\n", $1, $2 / 1048576, $3, $4, ($3 > 0 ? $4 / $3 : 0) }'
} > "$out/section.md"

source "$repo/bench/doc-section.sh"
replace_section "$repo/docs/BENCHMARKS.md" "## TLS data plane" "$out/section.md"
cat "$out/section.md"
