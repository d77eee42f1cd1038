#!/usr/bin/env bash
# Build kube-apiserver and kube-controller-manager from Debian's `kubernetes`
# source package (1.20.x) into "$1/bin", offline (the source vendors its
# dependencies). Used by scripts/check-chart; the result is cached there, so
# this runs once per machine (about 10 minutes on 2 cores). Adds a deb-src
# entry for the running suite when there is none (apt-get source needs one).
set -euo pipefail

cache=${1:?usage: build-kube.sh CACHE_DIR}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin="$cache/bin"
src="$cache/kubernetes-src"
mkdir -p "$bin" "$src"

# Bump when the recipe changes, so that cached binaries are rebuilt.
recipe="kubernetes-1.20 debian-src go-1.19 reflect2-go1.18-hiter"
if [[ -x "$bin/kube-apiserver" && -x "$bin/kube-controller-manager" &&
  "$(cat "$bin/.kube-build" 2>/dev/null)" == "$recipe" ]]; then
  exit 0
fi

log() { printf '[build-kube] %s\n' "$*" >&2; }

apt_updated=
apt_update() {
  if [[ -z $apt_updated ]]; then
    timeout 10m apt-get update -qq
    apt_updated=1
  fi
}

# 1. deb-src entries for this suite (apt-get source needs them).
. /etc/os-release
suite=${VERSION_CODENAME:?unknown Debian suite}
has_src() {
  grep -rqsE '^(deb-src[[:space:]]|Types:.*deb-src)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null
}
if ! has_src; then
  log "adding deb-src entries for $suite"
  cat > /etc/apt/sources.list.d/alert-broadcaster-src.sources <<SRC
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $suite
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  apt_updated=
fi

# 2. Toolchain: Debian's Go 1.19 (what Debian builds this package with), rsync
#    (used by the kubernetes Makefile) and dpkg-dev (apt-get source).
need=()
[[ -x /usr/lib/go-1.19/bin/go ]] || need+=(golang-1.19-go)
command -v rsync >/dev/null || need+=(rsync)
command -v dpkg-source >/dev/null || need+=(dpkg-dev)
if ((${#need[@]})); then
  log "installing ${need[*]}"
  apt_update
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# 3. Source.
tree=$(find "$src" -mindepth 1 -maxdepth 1 -type d -name 'kubernetes-*' | head -n1)
if [[ -z $tree ]]; then
  log "fetching Debian source package kubernetes"
  apt_update
  (cd "$src" && timeout 15m apt-get source -qq kubernetes >/dev/null)
  tree=$(find "$src" -mindepth 1 -maxdepth 1 -type d -name 'kubernetes-*' | head -n1)
fi
[[ -n $tree ]] || { log "no kubernetes source tree in $src"; exit 1; }

# 4. Make the vendored reflect2 work with Go >= 1.18 (see the patch header).
patchfile="$here/kubernetes-1.20-reflect2-go1.18.patch"
if patch -d "$tree" -p1 --dry-run -N -s <"$patchfile" >/dev/null 2>&1; then
  log "patching vendored reflect2 for Go 1.18+"
  patch -d "$tree" -p1 -N -s <"$patchfile"
elif ! patch -d "$tree" -p1 --dry-run -R -s <"$patchfile" >/dev/null 2>&1; then
  log "cannot apply $patchfile"
  exit 1
fi
log "building in $tree (nice, 2 jobs)"

# 5. Build, offline, gently.
export PATH=/usr/lib/go-1.19/bin:$PATH
# Kubernetes 1.20 builds in GOPATH mode from vendor/ (hack/lib/init.sh sets
# GO111MODULE=off); GOFLAGS must stay empty (hack/lib/golang.sh folds it
# into -tags). GOMAXPROCS=2 caps go's parallel jobs (-p) at 2.
unset GOFLAGS GO111MODULE
export GOTOOLCHAIN=local GOPROXY=off CGO_ENABLED=0
export GOCACHE="$cache/go-build" GOMAXPROCS=2
cd "$tree"
nice -n 10 make -j1 WHAT="cmd/kube-apiserver cmd/kube-controller-manager" >&2
out="$tree/_output/bin"
install -m 0755 "$out/kube-apiserver" "$out/kube-controller-manager" "$bin/"
echo "$recipe" >"$bin/.kube-build"
log "built $("$bin/kube-apiserver" --version)"
