#!/usr/bin/env bash
# Runs every test. On a fresh Debian/Ubuntu machine it first installs what the tests use: the .NET
# SDK's packages (NuGet restore), Debian's prometheus (scrape tests), postgresql (journal tests),
# bible-kjv (training data), and starts a throwaway PostgreSQL on a free local port.
#
#   ./test.sh                 all tests but the long soak/chaos ones (about 21 minutes on 2 cores)
#   ./test.sh --long          also the long ones (trait Category=Long), and 100,000 inputs per fuzz test instead of 10,000
#   ./test.sh --filter EXPR   only the tests dotnet test's --filter selects
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$root/scripts/setup.sh"

filter="Category!=Long"
while [ $# -gt 0 ]; do
  case "$1" in
    --long) filter=""; export PRETRAIN_FUZZ_COUNT=${PRETRAIN_FUZZ_COUNT:-100000} ;;
    --filter) filter="$2"; shift ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "test.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

ensure_dotnet
ensure_packages prometheus postgresql bible-kjv dataset-fashion-mnist
ensure_kjv_text
ensure_kustomize || log "kustomize is missing: the manifest tests will fail naming it"

# The tests' temporary files (run directories, recipes, shards: about 0.7 GB a run) go under one directory of this run,
# removed when every test passed and kept, and named, when one failed.
run_tmp=$(mktemp -d "${TMPDIR:-/tmp}/pretrain-test-run.XXXXXX")
chmod 755 "$run_tmp"   # PostgreSQL runs as its own user and must reach its data directory in here
export TMPDIR="$run_tmp"

pg_dir=""
if [ -z "${PRETRAIN_TEST_POSTGRES:-}" ]; then
  pg_dir=$(mktemp -d "${TMPDIR:-/tmp}/pretrain-postgres.XXXXXX")
  PRETRAIN_TEST_POSTGRES=$("$root/scripts/postgres-start.sh" "$pg_dir")
  export PRETRAIN_TEST_POSTGRES
fi
cleanup() {
  { [ -n "$pg_dir" ] && "$root/scripts/postgres-stop.sh" "$pg_dir" >/dev/null 2>&1; } || true
  if [ "${status:-1}" -eq 0 ]; then rm -rf "$run_tmp"; else log "the tests' temporary files are kept in $run_tmp"; fi
}
trap cleanup EXIT

build_if_needed

results="$root/.artifacts/test-results"
rm -rf "$results"
set +e
# --blame-hang-timeout: a test that hangs is killed and named rather than stalling CI.
dotnet test "$root/Tests/Pretrain.Tests.csproj" -c Release --no-build --nologo \
  ${filter:+--filter "$filter"} --blame-hang-timeout 8m \
  --logger "console;verbosity=normal" --logger "trx;LogFileName=results.trx" --results-directory "$results"
status=$?
set -e

# The closing line CI reads: "N passed, N failed, N skipped".
trx=$(find "$results" -name '*.trx' | head -1)
if [ -n "$trx" ]; then
  counters=$(grep -o '<Counters [^>]*>' "$trx")
  get() { echo "$counters" | sed -n "s/.* $1=\"\([0-9]*\)\".*/\1/p"; }
  total=$(get total); passed=$(get passed); failed=$(get failed)
  skipped=$(( ${total:-0} - ${passed:-0} - ${failed:-0} ))
  # CI shows only the tail of the output: name each failed test and the start of its message here.
  perl -0ne '
    while (/<UnitTestResult\s[^>]*?testName="([^"]*)"[^>]*?outcome="Failed"[^>]*>(.*?)<\/UnitTestResult>/gs) {
      my ($name, $body) = ($1, $2);
      my ($msg) = $body =~ /<Message>(.*?)<\/Message>/s;
      $msg = defined $msg ? substr($msg, 0, 1500) : "(no message)";
      $msg =~ s/&quot;/"/g; $msg =~ s/&apos;/\x27/g; $msg =~ s/&lt;/</g; $msg =~ s/&gt;/>/g; $msg =~ s/&amp;/&/g;
      $msg =~ s/\n/\n    /g;
      print "FAILED $name\n    $msg\n";
    }' "$trx"
  echo "${passed:-0} passed, ${failed:-0} failed, ${skipped} skipped"
else
  echo "0 passed, 1 failed"
  [ $status -eq 0 ] && status=1
fi
exit $status
