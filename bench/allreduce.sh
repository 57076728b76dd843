#!/usr/bin/env bash
# Our ring allreduce (bench/Pretrain.Bench.Allreduce, rank processes on loopback) against OpenMPI over
# TCP loopback and over shared memory, in the same run, since this 2-core machine is shared and every
# figure is noisy. Writes docs/BENCHMARKS.md.
# Usage: bench/allreduce.sh [ITERS]        (default 10 timed iterations per size, after warm-up)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
iters=${1:-10}
sizes=(1048576 16777216 67108864)
mpi="$repo/../shared/bench/mpi-allreduce/run.sh"
out=$(mktemp -d)

if ! command -v mpicc >/dev/null || ! command -v mpirun >/dev/null; then
  apt-get install -y openmpi-bin libopenmpi-dev >/dev/null 2>&1 \
    || { apt-get update >/dev/null && apt-get install -y openmpi-bin libopenmpi-dev >/dev/null; }
fi

dotnet build "$repo/bench/Pretrain.Bench.Allreduce/Pretrain.Bench.Allreduce.csproj" -c Release -v quiet -nologo >/dev/null
bench="$repo/bench/Pretrain.Bench.Allreduce/bin/Release/net10.0/Pretrain.Bench.Allreduce.dll"

for n in 2 4; do
  echo "ours, $n ranks" >&2
  dotnet "$bench" --ranks "$n" --iters "$iters" "${sizes[@]}" | tee -a "$out/ours.txt" >&2
  echo "OpenMPI, $n ranks" >&2
  bash "$mpi" "$n" "$iters" "${sizes[@]}" | tee -a "$out/mpi.txt" >&2
done

# key "ranks bytes" -> busBw, per source
busbw() { awk -v want="$2" '/^# transport=/ { t = substr($2, 11) } /^ranks=/ {
    split($1, r, "="); split($2, b, "="); split($5, w, "=");
    if (want == "" || t == want) print r[2], b[2], w[2] }' "$1"; }
busbw "$out/ours.txt" "" > "$out/ours.tsv"
busbw "$out/mpi.txt" tcp-loopback > "$out/tcp.tsv"
busbw "$out/mpi.txt" shared-memory > "$out/shm.tsv"

{
  echo "# Benchmarks"
  echo
  echo "## Allreduce (fp32 sum), loopback"
  echo
  echo "busBw = size / time x 2(n-1)/n (the nccl-tests definition), GB/s; mean of $iters iterations after warm-up."
  echo "Ours is the TCP ring of \`Worker/Collectives\` between rank processes; OpenMPI is"
  echo "\`../shared/bench/mpi-allreduce\` over TCP loopback (\`--mca btl tcp,self\`) and shared memory."
  echo "Measured in the same run: $(nproc) cores, $(date -u '+%Y-%m-%d %H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "(other engineers were building on this machine: figures are noisy, compare within a row)."
  echo
  echo "Command: \`bench/allreduce.sh $iters\`"
  echo
  echo "| ranks | size | ours | OpenMPI TCP | ours / TCP | OpenMPI shm | ours / shm |"
  echo "| --- | --- | --- | --- | --- | --- | --- |"
  join -j1 <(awk '{print $1"_"$2, $3}' "$out/ours.tsv" | sort) <(awk '{print $1"_"$2, $3}' "$out/tcp.tsv" | sort) \
    | join -j1 - <(awk '{print $1"_"$2, $3}' "$out/shm.tsv" | sort) \
    | awk '{ split($1, k, "_"); printf "%d %d %s %s %s\n", k[1], k[2], $2, $3, $4 }' | sort -n -k1,1 -k2,2 \
    | awk '{
             printf "| %d | %d MiB | %.2f | %.2f | %.2fx | %.2f | %.2fx |\n", $1, $2 / 1048576, $3, $4, ($4 > 0 ? $3 / $4 : 0), $5, ($5 > 0 ? $3 / $5 : 0) }'
} > "$out/BENCHMARKS.md"
mkdir -p "$repo/docs"
cp "$out/BENCHMARKS.md" "$repo/docs/BENCHMARKS.md"
cat "$repo/docs/BENCHMARKS.md"
rm -rf "$out"
