#!/usr/bin/env bash
# Builds or fetches every binary the local cluster runs, into a cache OUTSIDE the checkout.
#   MULTINET_CACHE (default ~/.cache/multinet) holds:
#     k8s-<version>/   kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kubectl
#     k8s-mod-<version>/  the Go module a non-default version is built from (generated, tidied)
#     debs/            etcd, containerd (Debian forky, private apt config), extracted trees
#     bin/             links to the default version's binaries; bin-<version>/ for another
# A warm cache makes this a few stat() calls. Versions: hack/k8s/versions.env; K8S_VERSION=1.3x.y
# builds and links another Kubernetes release (any the Go module proxy serves).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=k8s/versions.env
source "$here/k8s/versions.env"
default_version=$KUBERNETES_VERSION
if [[ -n ${K8S_VERSION:-} ]]; then
  KUBERNETES_VERSION=v${K8S_VERSION#v}
  if ! [[ $KUBERNETES_VERSION =~ ^v1\.[0-9]+\.[0-9]+$ ]]; then
    printf '[build-binaries] K8S_VERSION=%s: expected a release like 1.36.3\n' "$K8S_VERSION" >&2
    exit 2
  fi
fi
cache=${MULTINET_CACHE:-$HOME/.cache/multinet}
mkdir -p "$cache"
say() { printf '[build-binaries] %s\n' "$*" >&2; }
bin_dir() {
  if [[ $KUBERNETES_VERSION == "$default_version" ]]; then echo "$cache/bin"; else echo "$cache/bin-$KUBERNETES_VERSION"; fi
}

module_dir() {
  # The default version builds from the checked-in module (hack/k8s, go.sum committed). Another
  # version gets a module generated from the same tools.go: k8s.io/kubernetes at that version and
  # a replace for each of ITS staging modules (the list differs between releases), tidied once.
  if [[ $KUBERNETES_VERSION == "$default_version" ]]; then
    echo "$here/k8s"
    return
  fi
  local dir="$cache/k8s-mod-$KUBERNETES_VERSION"
  if [[ ! -f $dir/.tidy ]]; then
    say "kubernetes $KUBERNETES_VERSION: generating its Go module in $dir" >&2
    mkdir -p "$dir"
    local modfile staging="v0.${KUBERNETES_VERSION#v1.}"
    modfile=$(cd "$dir" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" |
      sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
    [[ -f $modfile ]] || { say "k8s.io/kubernetes@$KUBERNETES_VERSION: not served by the module proxy"; exit 1; }
    cp "$here/k8s/tools.go" "$dir/"
    {
      printf 'module multinet.dev/hack/k8s\n\ngo %s\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' \
        "$(go env GOVERSION | sed 's/^go//; s/^\([0-9]*\.[0-9]*\).*/\1.0/')" "$KUBERNETES_VERSION"
      awk -v v="$staging" '$2 == "=>" && $3 ~ /^\.\/staging\// {printf "\t%s => %s %s\n", $1, $1, v}' "$modfile"
      printf ')\n'
    } >"$dir/go.mod"
    (cd "$dir" && go mod tidy >&2)
    touch "$dir/.tidy"
  fi
  echo "$dir"
}

build_kubernetes() {
  local out="$cache/k8s-$KUBERNETES_VERSION"
  local stamp="$out/.complete"
  if [[ -f $stamp ]]; then
    say "kubernetes $KUBERNETES_VERSION: cached in $out"
    return
  fi
  mkdir -p "$out"
  local minor=${KUBERNETES_VERSION#v1.}; minor=${minor%%.*}
  local date; date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  local ld=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date"
  done
  say "kubernetes $KUBERNETES_VERSION: building 5 commands (cold: tens of minutes on 2 cores; go -v shows progress)"
  local start=$SECONDS
  local module; module=$(module_dir)
  (
    cd "$module"
    export GOFLAGS=-mod=mod CGO_ENABLED=0
    go build -v -trimpath -ldflags "$ld" -o "$out/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kubectl \
      2>&1 | awk '{n++; if (n % 200 == 0) printf "[build-binaries]   %d packages compiled, last %s\n", n, $0 > "/dev/stderr"}'
    exit "${PIPESTATUS[0]}"
  )
  say "kubernetes built in $((SECONDS - start)) s"
  touch "$stamp"
}

fetch_debian() {
  # A private apt configuration: our own sources list, lists and archive cache. The system's
  # /etc/apt stays untouched; packages are extracted, never installed.
  local apt="$cache/apt"
  local root="$cache/debs/root"
  local stamp="$cache/debs/.complete-$ETCD_DEBIAN_VERSION-$CONTAINERD_DEBIAN_VERSION"
  if [[ -f $stamp ]]; then
    say "etcd $ETCD_DEBIAN_VERSION, containerd $CONTAINERD_DEBIAN_VERSION: cached in $root"
    return
  fi
  say "fetching etcd and containerd from Debian $DEBIAN_EXTRA_SUITE through a private apt configuration"
  mkdir -p "$apt/lists/partial" "$apt/archives/partial" "$apt/etc/preferences.d" "$root"
  local mirror
  mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
  mirror=${mirror:-$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null)}
  cat >"$apt/sources.list" <<SRC
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $DEBIAN_EXTRA_SUITE main
SRC
  local opts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o "Dir::Etc::SourceParts=-"
    -o "Dir::Etc::Preferences=$apt/etc/preferences" -o "Dir::Etc::PreferencesParts=$apt/etc/preferences.d"
    -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache::Archives=$apt/archives"
    -o "Dir::State::status=/dev/null" -o "APT::Architecture=amd64" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root"
    -o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false")
  apt-get "${opts[@]}" update >&2
  (cd "$apt/archives" && apt-get "${opts[@]}" download \
    "etcd-server=$ETCD_DEBIAN_VERSION*" "containerd=$CONTAINERD_DEBIAN_VERSION" >&2)
  for deb in "$apt"/archives/*.deb; do
    dpkg-deb -x "$deb" "$root"
  done
  touch "$stamp"
}

link_binaries() {
  local k8s="$cache/k8s-$KUBERNETES_VERSION" debs="$cache/debs/root/usr/bin" bin; bin=$(bin_dir)
  mkdir -p "$bin"
  for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl; do
    ln -sfn "$k8s/$b" "$bin/$b"
  done
  for b in etcd containerd ctr containerd-shim-runc-v2; do
    ln -sfn "$debs/$b" "$bin/$b"
  done
  local missing=()
  for b in "$bin"/*; do [[ -x $b ]] || missing+=("$b"); done
  if ((${#missing[@]})); then
    say "missing after the build: ${missing[*]}"
    exit 1
  fi
  local got; got=$("$bin/kubelet" --version 2>/dev/null || true)
  if [[ $got != "Kubernetes $KUBERNETES_VERSION" ]]; then
    say "kubelet reports '$got', expected 'Kubernetes $KUBERNETES_VERSION' (version ldflags?)"
    exit 1
  fi
  say "binaries ready in $bin"
}

check_prerequisites() {
  # Installed by .ci/run from Debian; the Go toolchain and gcc come with the machine.
  local need=(go gcc runc busybox ip) missing=()
  for c in "${need[@]}"; do command -v "$c" >/dev/null || missing+=("$c"); done
  [[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/loopback ]] ||
    missing+=("/usr/lib/cni/{bridge,host-local,loopback} (containernetworking-plugins)")
  if ((${#missing[@]})); then
    say "missing prerequisites: ${missing[*]} (see .ci/run for the packages)"
    exit 1
  fi
}

main() {
  check_prerequisites
  # One build at a time per cache: parallel `make test` runs wait here instead of racing.
  exec 9>"$cache/.build.lock"
  flock 9
  case "${1:-all}" in
    kubernetes) build_kubernetes ;;
    debian) fetch_debian ;;
    all) fetch_debian; build_kubernetes; link_binaries ;;
    *) say "usage: $0 [all|kubernetes|debian]"; exit 2 ;;
  esac
}
main "$@"
