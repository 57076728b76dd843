# Sourced by the benchmarks: note_load waits (at most 5 minutes) for the 1-minute load average to fall below 1 — the
# benchmark's own build leaves it high — then records it as the measurement starts ($load_before, $started), with a
# warning on stderr when it is still not below 1: the figures are only valid on a quiet machine.
note_load() {
  local waited=0
  while awk '{ exit !($1 >= 1) }' /proc/loadavg && [ $waited -lt 300 ]; do sleep 10; waited=$((waited + 10)); done
  load_before=$(cut -d' ' -f1-3 /proc/loadavg)
  echo "load average before: $load_before (1, 5, 15 min; the figures are only valid below 1)" >&2
  if awk -v l="${load_before%% *}" 'BEGIN { exit !(l >= 1) }'; then
    echo "warning: the 1-minute load average is ${load_before%% *}, not below 1: the figures will be noisy" >&2
  fi
  started=$(date -u '+%Y-%m-%d %H:%M UTC')
}
