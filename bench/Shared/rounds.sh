# Sourced by the benchmarks that take turns over ROUNDS rounds of STEPS measured steps (bench/scaling.sh,
# bench/step-overhead.sh), after `set -euo pipefail` and with $name set: parses those two arguments, installs and
# builds what is missing, and gives them a scratch folder ($out), the CLI ($cli), prepare_once, and the load check.
rounds=${1:-3}
steps=${2:-30}
[[ $rounds =~ ^[1-9][0-9]*$ && $steps =~ ^[1-9][0-9]*$ ]] || { echo "$name: ROUNDS and STEPS are positive integers; see --help" >&2; exit 2; }
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
root=$repo
source "$repo/scripts/setup.sh"
ensure_kjv_text
ensure_packages dataset-fashion-mnist
build_if_needed
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cli="$repo/Cli/bin/Release/net10.0/pretrain"

# A prepared folder a recipe reads, made once as `pretrain local` would make it on first use.
prepare_once() { # FOLDER PREPARE-ARGUMENTS...
  local folder=$1; shift
  [ -s "$folder/index.json" ] && return 0
  log "preparing $folder"
  timeout 1800 "$cli" prepare "$@" --output "$folder" >&2
}

source "$repo/bench/Shared/load.sh"
