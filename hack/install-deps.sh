#!/usr/bin/env bash
# Installs the Debian packages the local cluster, the tests and the demo need (root; Debian).
# Fast when everything is there: one dpkg query, no apt-get update.
#   runc + containernetworking-plugins: containerd's runtime and the CNI bridge/host-local/loopback
#   busybox-static: the test image; gcc + libc6-dev: the static pause binary
#   iproute2: `ip`; util-linux: flock; iptables: what kubelet-adjacent tooling expects to find
#   debian-archive-keyring + ca-certificates: the private apt configuration fetching etcd/containerd
#   python3-venv + make: `make venv`. Go and Python 3.11 come with the machine.
#   buildah + mmdebstrap: `make image` without Docker (a Debian base from packages, the Dockerfile
#   built on it by buildah; its uidmap dependency comes along, root needs no subuid setup)
#   ethtool: the root tests read offload features with `ethtool -k`, as a user would
set -euo pipefail
packages=(runc containernetworking-plugins busybox-static iproute2 iptables ca-certificates
  gcc libc6-dev util-linux debian-archive-keyring python3-venv make buildah mmdebstrap ethtool)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi
if [[ $(id -u) != 0 ]]; then
  echo "install-deps: missing Debian packages (${missing[*]}); run as root" >&2
  exit 1
fi
echo "[install-deps] installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
