# Sourced by the bench scripts: replace_section DOC HEADING FILE puts FILE (which starts with the line
# HEADING) in place of DOC's section of that heading (from it to the next "## "), at the end of DOC.
replace_section() {
  local doc=$1 heading=$2 section=$3
  mkdir -p "$(dirname "$doc")"
  [ -f "$doc" ] || echo "# Benchmarks" > "$doc"
  awk -v h="$heading" '/^## / { skip = ($0 == h) } !skip' "$doc" | sed -e :a -e '/^\n*$/{$d;N;ba' -e '}' > "$doc.rest"
  { cat "$doc.rest"; echo; cat "$section"; } > "$doc"
  rm -f "$doc.rest"
}
