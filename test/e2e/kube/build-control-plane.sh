#!/usr/bin/env bash
# Builds a real kube-apiserver (k8s.io/kubernetes) and etcd (go.etcd.io/etcd/server/v3) from their Go
# modules and caches the binaries outside the repository, keyed by version, so a machine builds once:
#   $EG_KUBE_CACHE/kubernetes-<version>/kube-apiserver   $EG_KUBE_CACHE/etcd-<version>/etcd
# Usage: build-control-plane.sh [--print-dir] [kube-apiserver] [etcd] [kubelet]   (default: kube-apiserver etcd)
# k8s.io/kubernetes requires its staging modules (k8s.io/api, ...) at v0.0.0 and replaces them with
# ./staging paths; a dependent module ignores those replaces, so the wrapper module pins each one to the
# published v0.<minor>.<patch> release read from that same go.mod.
set -euo pipefail

KUBE_VERSION="${EG_KUBE_VERSION:-v1.35.4}"
ETCD_VERSION="${EG_ETCD_VERSION:-v3.6.16}"
CACHE="${EG_KUBE_CACHE:-/var/cache/egressguard/kube}"
KUBE_DIR="$CACHE/kubernetes-$KUBE_VERSION"
ETCD_DIR="$CACHE/etcd-$ETCD_VERSION"

if [ "${1:-}" = "--print-dir" ]; then
  echo "$KUBE_DIR $ETCD_DIR"
  exit 0
fi
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(kube-apiserver etcd)

export GOFLAGS="-trimpath -buildvcs=false -mod=mod"
export CGO_ENABLED=0
mkdir -p "$CACHE"
# One build at a time per cache: parallel test setups wait for the first instead of building twice.
exec 9>"$CACHE/.build.lock"
flock 9

log() { echo "build-control-plane: $*" >&2; }
need_go() { command -v go >/dev/null || { log "Go is needed to build $1 (the Go toolchain and the Go module proxy)"; exit 1; }; }

staging_version() { # v1.35.4 -> v0.35.4
  local v="${KUBE_VERSION#v1.}"
  echo "v0.$v"
}

# Writes a wrapper module in $1 that requires k8s.io/kubernetes with every staging module pinned.
kube_module() {
  local dir="$1" gomod staging
  staging="$(staging_version)"
  mkdir -p "$dir"
  gomod="$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/^\s*"GoMod": "\(.*\)",\?$/\1/p')"
  [ -f "$gomod" ] || { log "no go.mod for k8s.io/kubernetes@$KUBE_VERSION"; exit 1; }
  {
    echo "module egressguard.test/kube-control-plane"
    echo
    echo "go $(sed -n 's/^go \([0-9.]*\)$/\1/p' "$gomod")"
    echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo
    echo "replace ("
    sed -n 's#^\s*\(k8s\.io/[a-z0-9-]*\) => \./staging/src/k8s\.io/[a-z0-9-]*$#\1#p' "$gomod" |
      while read -r module; do echo "	$module => $module $staging"; done
    echo ")"
  } >"$dir/go.mod"
  grep -q "k8s.io/api => " "$dir/go.mod" || { log "found no staging replaces in $gomod"; exit 1; }
  cat >"$dir/tools.go" <<'GO'
//go:build tools

// Only here so that `go mod tidy` keeps the commands' dependencies.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO
}

build_kube() {
  local name="$1" work="$CACHE/build/kubernetes-$KUBE_VERSION" minor
  [ -x "$KUBE_DIR/$name" ] && { log "$KUBE_DIR/$name is cached"; return; }
  need_go "$name"
  kube_module "$work"
  minor="${KUBE_VERSION#v1.}"
  minor="${minor%%.*}"
  local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION"
  log "building $name $KUBE_VERSION in $work"
  local start=$SECONDS
  (cd "$work" && go mod tidy >/dev/null && go build -ldflags "$ldflags" -o "$work/$name.new" "k8s.io/kubernetes/cmd/$name")
  mkdir -p "$KUBE_DIR"
  mv "$work/$name.new" "$KUBE_DIR/$name"
  log "built $KUBE_DIR/$name in $((SECONDS - start)) s"
}

build_etcd() {
  local work="$CACHE/build/etcd-$ETCD_VERSION"
  [ -x "$ETCD_DIR/etcd" ] && { log "$ETCD_DIR/etcd is cached"; return; }
  need_go etcd
  mkdir -p "$work"
  cat >"$work/go.mod" <<MOD
module egressguard.test/etcd

go 1.24

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
MOD
  # etcd's own main (server/main.go) is this call; building it from a wrapper avoids the server
  # module's local replace directives, which `go install module@version` refuses.
  cat >"$work/main.go" <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  log "building etcd $ETCD_VERSION in $work"
  local start=$SECONDS
  (cd "$work" && go mod tidy >/dev/null && go build -ldflags "-s -w" -o "$work/etcd.new" .)
  mkdir -p "$ETCD_DIR"
  mv "$work/etcd.new" "$ETCD_DIR/etcd"
  log "built $ETCD_DIR/etcd in $((SECONDS - start)) s"
}

for target in "${targets[@]}"; do
  case "$target" in
    kube-apiserver | kubelet) build_kube "$target" ;;
    etcd) build_etcd ;;
    *) log "unknown target $target (kube-apiserver, etcd, kubelet)"; exit 2 ;;
  esac
done
