#!/usr/bin/env bash
# Builds the pretrain image from k8s/image/Containerfile with buildah (chroot isolation: what works in
# unprivileged sandboxes and CI runners without a container engine daemon), then runs `pretrain --help` in it.
#
#   k8s/image/build.sh                       # bases built here from Debian packages (no registry needed)
#   SDK_IMAGE=mcr.microsoft.com/dotnet/sdk:10.0 BASE_IMAGE=mcr.microsoft.com/dotnet/runtime-deps:10.0 k8s/image/build.sh
#   TAG=registry.example.com/team/pretrain:v1 k8s/image/build.sh && podman push registry.example.com/team/pretrain:v1
#
# Without SDK_IMAGE/BASE_IMAGE it makes two local bases once (kept for the next build): a Debian 12 root from
# debootstrap imported with `podman import` (localhost/pretrain-runtime-base), and the same with this machine's
# .NET SDK copied in (localhost/pretrain-sdk-base). The host's NuGet cache is mounted into the build so restore
# takes what is there. Prints the image name on its last line.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
root=$repo
source "$repo/scripts/setup.sh"
tag=${TAG:-localhost/pretrain:latest}   # the manifests say `pretrain`: set images: (k8s/README.md) to what you push
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
command -v buildah >/dev/null && command -v podman >/dev/null && command -v debootstrap >/dev/null \
  || ensure_packages podman buildah debootstrap

runtime_base() {
  local name=localhost/pretrain-runtime-base
  if ! podman image exists "$name"; then
    local dir; dir=$(mktemp -d "${TMPDIR:-/tmp}/pretrain-rootfs.XXXXXX")
    log "debootstrap: a Debian 12 root for $name (a few minutes, once)"
    debootstrap --variant=minbase --include=ca-certificates,libicu72,libssl3,zlib1g,libstdc++6,libgomp1 bookworm "$dir" "$mirror" >&2
    # apt inside the image uses the same mirror; no stale lists, no caches.
    echo "deb $mirror bookworm main" > "$dir/etc/apt/sources.list"
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
    tar -C "$dir" -c . | podman import - "$name" >&2
    rm -rf "$dir"
  fi
  echo "$name"
}

sdk_base() {
  local name=localhost/pretrain-sdk-base
  if ! podman image exists "$name"; then
    local dotnet; dotnet=$(dirname "$(readlink -f "$(command -v dotnet)")")
    log "$name: $(runtime_base) with the .NET SDK of this machine ($dotnet)"
    local c; c=$(buildah from "$(runtime_base)")
    buildah copy "$c" "$dotnet" /usr/share/dotnet >&2
    buildah run --isolation chroot "$c" -- ln -sf /usr/share/dotnet/dotnet /usr/bin/dotnet
    buildah config --env DOTNET_CLI_TELEMETRY_OPTOUT=1 --env DOTNET_NOLOGO=1 "$c"
    # Restore reaches NuGet the way this machine does: its extra CAs (a TLS-inspecting egress proxy) and its
    # certificate revocation mode. The build stage only; nothing of it reaches the runtime image.
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
      buildah copy "$c" /usr/local/share/ca-certificates /usr/local/share/ca-certificates >&2
      buildah run --isolation chroot "$c" -- update-ca-certificates >&2
    fi
    [ -z "${NUGET_CERT_REVOCATION_MODE:-}" ] || buildah config --env NUGET_CERT_REVOCATION_MODE="$NUGET_CERT_REVOCATION_MODE" "$c"
    buildah commit --rm "$c" "$name" >&2
  fi
  echo "$name"
}

sdk=${SDK_IMAGE:-$(sdk_base)}
base=${BASE_IMAGE:-$(runtime_base)}
mkdir -p "$HOME/.nuget/packages"
log "buildah bud: $tag (SDK_IMAGE=$sdk, BASE_IMAGE=$base)"
buildah bud --isolation chroot --layers=false -f "$repo/k8s/image/Containerfile" \
  --build-arg SDK_IMAGE="$sdk" --build-arg BASE_IMAGE="$base" \
  --volume "$HOME/.nuget/packages:/root/.nuget/packages" -t "$tag" "$repo" >&2

# The entrypoint runs inside the image, as its own user.
c=$(buildah from "$tag")
trap 'buildah rm "$c" >/dev/null 2>&1 || true' EXIT
buildah run --isolation chroot "$c" -- /opt/pretrain/pretrain --help >&2
echo "$tag"
