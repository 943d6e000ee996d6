#!/usr/bin/env bash
# Builds kubernetes-sigs/dranet's node binary (the DRA + NRI driver "dra.net") from its Go module,
# for bench/dranet.py, into a cache OUTSIDE the checkout, and prints the binary's path:
#   ${MULTINET_CACHE:-~/.cache/multinet}/dranet-<version>/dranet       the binary (reused when present)
#   ${MULTINET_CACHE:-~/.cache/multinet}/dranet-<version>/mod/         a one-line Go module requiring
#                                                                     sigs.k8s.io/dranet@<version>
# The module has no replace directives, so the build list is dranet's own go.mod. It says
# `go 1.26.0`, which the machine's Go (1.26.x) builds; a release needing a newer Go builds with
# GOTOOLCHAIN=go1.27.3 set in the environment (the go command fetches that toolchain itself).
# CGO_ENABLED=0 as dranet's own Dockerfile builds it. Usage: hack/dranet-build.sh [version]
set -euo pipefail
version=${1:-${DRANET_VERSION:-v1.4.0}}
cache=${MULTINET_CACHE:-$HOME/.cache/multinet}
dir="$cache/dranet-$version"
out="$dir/dranet"
say() { printf '[dranet-build] %s\n' "$*" >&2; }
if [[ -x $out ]]; then
  say "dranet $version: cached in $out"
  echo "$out"
  exit 0
fi
mkdir -p "$dir/mod"
cd "$dir/mod"
if [[ ! -f go.mod ]]; then
  godir=$(GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/dranet@$version" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [[ -d $godir ]] || { say "sigs.k8s.io/dranet@$version: not served by the Go module proxy"; exit 1; }
  want=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$godir/go.mod")
  say "dranet $version: module in $godir (go $want; this machine has $(go env GOVERSION))"
  printf 'module multinet.dev/hack/dranet\n\ngo %s\n\nrequire sigs.k8s.io/dranet %s\n' "$want" "$version" >go.mod
fi
say "dranet $version: building sigs.k8s.io/dranet/cmd/dranet (cold: a few minutes on 2 cores)"
start=$SECONDS
GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -o "$out.tmp" sigs.k8s.io/dranet/cmd/dranet
mv "$out.tmp" "$out"
say "dranet $version built in $((SECONDS - start)) s: $out"
echo "$out"
