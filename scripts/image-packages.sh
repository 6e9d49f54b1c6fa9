#!/bin/sh
# Debian packages an image stage needs (see Dockerfile). Installs only what the base image lacks, so a base that
# already carries them (a local base made with debootstrap, built with --network=none) needs no network.
set -eu
case "${1:-}" in
  # BPF objects (clang, llvm, the libbpf and kernel UAPI headers), the node-gyp addon (make, g++, python3).
  build) packages="clang llvm libbpf-dev libelf-dev zlib1g-dev make g++ python3 pkg-config" ;;
  # The addon's shared libraries; ip(8) to find workloads' host-side interfaces. mount and nsenter are essential.
  runtime) packages="libbpf1 libelf1 zlib1g iproute2" ;;
  *) echo "usage: $0 build|runtime" >&2; exit 2 ;;
esac
missing=""
for package in $packages; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $package"
done
if [ -n "$missing" ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
  rm -rf /var/lib/apt/lists/*
fi
