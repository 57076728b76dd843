#!/usr/bin/env bash
# Our ring allreduce (bench/Pretrain.Bench.Allreduce, rank processes on one host) over TCP loopback and over shared
# memory, against OpenMPI over TCP loopback and over shared memory, in the same run, since this 2-core machine is
# shared and every figure is noisy. Replaces the "## Allreduce (fp32 sum), loopback" section of docs/BENCHMARKS.md and
# leaves the other sections as they are. Also measures loopback TCP itself (iperf3, one stream) in the same run.
# A single run moves single cells by ±30% on this machine (one run put OpenMPI at 1.39 GB/s and us at 1.06 where the next
# minute gave 1.30 and 1.25), so the whole comparison runs ROUNDS times, ours and OpenMPI taking turns within each round,
# and the table gives the median of the rounds for each side and the range of the per-round ratios.
# Usage: bench/allreduce.sh [ITERS] [ROUNDS]   (default 50 timed iterations per size, after at least 1 s of warm-up; 5 rounds)
set -euo pipefail
export LC_ALL=C   # join and sort must agree on the order of the keys
repo=$(cd "$(dirname "$0")/.." && pwd)
iters=${1:-50}
rounds=${2:-5}
sizes=(1048576 16777216 67108864)
mpi="$repo/../shared/bench/mpi-allreduce/run.sh"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

if ! command -v mpicc >/dev/null || ! command -v mpirun >/dev/null || ! command -v iperf3 >/dev/null || ! command -v jq >/dev/null; then
  apt-get install -y openmpi-bin libopenmpi-dev iperf3 jq >/dev/null 2>&1 \
    || { apt-get update >/dev/null && apt-get install -y openmpi-bin libopenmpi-dev iperf3 jq >/dev/null; }
fi
# OpenMPI runs with the C-heap settings our processes give themselves (Worker/Host/NativeHeap.cs): without them its
# allreduce above 32 MiB mallocs a fresh temporary buffer per call, and on these VMs faulting that in (12 µs a page)
# takes most of the call (64 MiB, 2 ranks: 220 ms instead of 28) — a reference that slow would flatter us.
export GLIBC_TUNABLES=glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647:glibc.malloc.top_pad=67108864

dotnet build "$repo/bench/Pretrain.Bench.Allreduce/Pretrain.Bench.Allreduce.csproj" -c Release -v quiet -nologo >/dev/null
bench="$repo/bench/Pretrain.Bench.Allreduce/bin/Release/net10.0/Pretrain.Bench.Allreduce.dll"
source "$repo/bench/Shared/load.sh"
note_load

# Loopback TCP's own bandwidth: one iperf3 stream for 5 s (sender and receiver share the 2 cores, as two ranks do).
port=$((20000 + RANDOM % 20000))
iperf3 --server --one-off --port "$port" >/dev/null 2>&1 &
sleep 1
loopback=$(iperf3 --client 127.0.0.1 --port "$port" --time 5 --json | jq '.end.sum_received.bits_per_second / 8e9')
wait || true
echo "loopback TCP (iperf3, one stream): $loopback GB/s" >&2

for round in $(seq 1 "$rounds"); do
  for n in 2 4; do
    for transport in tcp auto; do
      echo "round $round: ours ($transport), $n ranks" >&2
      dotnet "$bench" --ranks "$n" --iters "$iters" --transport "$transport" "${sizes[@]}" | sed "s/^/round=$round /" | tee -a "$out/ours.txt" >&2
    done
    echo "round $round: OpenMPI, $n ranks" >&2
    bash "$mpi" "$n" "$iters" "${sizes[@]}" | sed "s/^/round=$round /" | tee -a "$out/mpi.txt" >&2
  done
done

# "round ranks bytes busBw" of one transport: ours names it on each line (transport=tcp|shm), OpenMPI in a "# transport=" line.
ours() { awk -v want="$2" '$NF == "transport=" want { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } print v["round"], v["ranks"], v["bytes"], v["busbw_GBps"] }' "$1"; }
mpi() { awk -v want="$2" '$2 == "#" { t = substr($3, 11) } $2 ~ /^ranks=/ && t == want { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } print v["round"], v["ranks"], v["bytes"], v["busbw_GBps"] }' "$1"; }
ours "$out/ours.txt" tcp > "$out/ours-tcp.tsv"
ours "$out/ours.txt" shm > "$out/ours-shm.tsv"
mpi "$out/mpi.txt" tcp-loopback > "$out/mpi-tcp.tsv"
mpi "$out/mpi.txt" shared-memory > "$out/mpi-shm.tsv"
# "ranks_bytes value" lines -> "ranks_bytes median" (mawk has no asort: sort does the ordering).
median() { sort -k1,1 -k2,2g | awk '{ v[$1, ++c[$1]] = $2 } END { for (k in c) { m = c[k]; print k, (m % 2 ? v[k, (m + 1) / 2] : (v[k, m / 2] + v[k, m / 2 + 1]) / 2) } }' | sort; }
# Per "ranks_bytes": the median busBw over the rounds of each side, and the lowest and highest per-round ratio ours/OpenMPI.
summary() {
  join -j1 <(awk '{ print $1"_"$2"_"$3, $4 }' "$1" | sort) <(awk '{ print $1"_"$2"_"$3, $4 }' "$2" | sort) \
    | awk '{ split($1, k, "_"); print k[2]"_"k[3], $2, $3, ($3 > 0 ? $2 / $3 : 0) }' > "$3.rounds"
  join <(awk '{ print $1, $2 }' "$3.rounds" | median) <(awk '{ print $1, $3 }' "$3.rounds" | median) \
    | join - <(awk '{ print $1, $4 }' "$3.rounds" | sort -k1,1 -k2,2g \
                 | awk '{ if (!($1 in lo)) lo[$1] = $2; hi[$1] = $2 } END { for (k in lo) print k, lo[k], hi[k] }' | sort)
}
summary "$out/ours-tcp.tsv" "$out/mpi-tcp.tsv" "$out/tcp" > "$out/tcp.tsv"
summary "$out/ours-shm.tsv" "$out/mpi-shm.tsv" "$out/shm" > "$out/shm.tsv"

{
  echo "## Allreduce (fp32 sum), loopback"
  echo
  echo "busBw = size / time x 2(n-1)/n (the nccl-tests definition), GB/s; in each of $rounds rounds the mean of $iters iterations after"
  echo "warm-up (ours: at least 30 calls and 1 s, so .NET has compiled the hot path fully; OpenMPI: one call). Ours and"
  echo "OpenMPI take turns within each round; the table gives each side's median over the rounds, the ratio of the medians,"
  echo "and in brackets the lowest and highest ratio of a single round (one run alone moves a cell by ±30% here)."
  echo "Ours is the ring of \`Worker/Collectives\` between rank processes on one host, once with \`--transport tcp\` (every link"
  echo "TCP loopback; each call one poll(2) loop on the calling thread, which blocks for it as the worker's collectives thread"
  echo "does, its sockets out of .NET's socket engine: \`RingCommunicator.Pump.cs\`) and once with \`--transport auto\` (every link a shared-memory ring, \`SharedRing\`: 4 MiB, 128 KiB"
  echo "segments; each call one loop over both rings on the calling thread, 20 µs spin, then poll(2) on the doorbells that"
  echo "come over the links' TCP connections: \`RingCommunicator.SharedLoop.cs\`); OpenMPI is \`../shared/bench/mpi-allreduce\` over"
  echo "TCP loopback (\`--mca btl tcp,self\`) and shared memory (its default), with the same C-heap settings as our processes"
  echo "(\`GLIBC_TUNABLES\`, see \`Worker/Host/NativeHeap.cs\`): without them its calls above 32 MiB fault in a fresh temporary"
  echo "buffer each time, 12 µs a page on these VMs, and take 8x longer."
  echo "Measured in the same run: $(nproc) cores, $started, load average $load_before at the start"
  echo "(figures are noisy on a shared machine: compare within a row)."
  echo
  echo "Command: \`bench/allreduce.sh $iters $rounds\`"
  echo
  echo "| ranks | size | ours TCP | OpenMPI TCP | ours / OpenMPI TCP | ours shm | OpenMPI shm | ours / OpenMPI shm |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
  join -j1 "$out/tcp.tsv" "$out/shm.tsv" \
    | awk '{ split($1, k, "_"); print k[1], k[2], $2, $3, $4, $5, $6, $7, $8, $9 }' | sort -n -k1,1 -k2,2 \
    | awk '{ printf "| %d | %d MiB | %.2f | %.2f | %.2fx (%.2f-%.2f) | %.2f | %.2f | %.2fx (%.2f-%.2f) |\n",
             $1, $2 / 1048576, $3, $4, ($4 > 0 ? $3 / $4 : 0), $5, $6, $7, $8, ($8 > 0 ? $7 / $8 : 0), $9, $10 }'
  echo
  echo "Loopback TCP, one iperf3 stream in the same run: $(printf '%.2f' "$loopback") GB/s. Ours over TCP at 64 MiB with 2 ranks moves"
  echo "$(awk -v l="$loopback" '$1 == "2_67108864" { printf "%.0f%%", 100 * $2 / l }' "$out/tcp.tsv") of that per link (median of the rounds; the goal is 85%; each rank sends and receives at"
  echo "once, where iperf3's stream only sends)."
} > "$out/section.md"

source "$repo/bench/doc-section.sh"
replace_section "$repo/docs/BENCHMARKS.md" "## Allreduce (fp32 sum), loopback" "$out/section.md"
cat "$out/section.md"
