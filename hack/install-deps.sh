#!/bin/sh
# Installs the system packages vmbuild's build, demo and tests need, with
# apt-get (Debian 12 / Ubuntu), as root. Installs only what is missing, runs
# `apt-get update` only when a package is unknown to the local lists (or an
# install fails on stale lists), and prints nothing when all is present.
#
#   runc            buildkitd's OCI worker runs steps with it
#   busybox-static  the demo/test base image is built from /bin/busybox
#   git             git daemon for tests, BuildKit's git source, demo upstream
#   ca-certificates TLS to registries and the Go module proxy
#   make            `make deps|tools|build|demo|test`
#
# and for the tests only (hack/install-deps.sh --test, as `make test` runs
# it):
#   ruby            gem build: the hermetic Bundler test's gems
#   bundler ruby-dev build-essential
#                   deps/gem proves its sets with real Bundler on the host,
#                   gems with C extensions included
#   redis-server    the Mastodon streaming end-to-end test's Redis
#   postgresql      and its PostgreSQL (initdb, postgres, psql)
#   nodejs npm      deps/npm and deps/yarn prove their sets with real
#                   npm and Yarn on the host
set -eu

missing=""
pkg_installed() {
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}
command -v runc >/dev/null 2>&1 || pkg_installed runc || missing="$missing runc"
# A dynamic busybox (package "busybox") cannot run in the base image.
pkg_installed busybox-static || missing="$missing busybox-static"
command -v git >/dev/null 2>&1 || missing="$missing git"
pkg_installed ca-certificates || [ -s /etc/ssl/certs/ca-certificates.crt ] || missing="$missing ca-certificates"
command -v make >/dev/null 2>&1 || missing="$missing make"
if [ "${1:-}" = "--test" ]; then
	command -v gem >/dev/null 2>&1 || missing="$missing ruby"
	command -v bundle >/dev/null 2>&1 || missing="$missing bundler"
	pkg_installed ruby-dev || missing="$missing ruby-dev"
	{ command -v gcc >/dev/null 2>&1 && command -v g++ >/dev/null 2>&1; } || missing="$missing build-essential"
	command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$missing postgresql"
	command -v psql >/dev/null 2>&1 || missing="$missing postgresql-client"
	command -v node >/dev/null 2>&1 || missing="$missing nodejs"
	command -v npm >/dev/null 2>&1 || missing="$missing npm"
fi

[ -z "$missing" ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
	echo "install-deps: missing:$missing; this script knows only apt-get (Debian/Ubuntu): install them with your package manager" >&2
	exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		SUDO="sudo"
	else
		echo "install-deps: missing:$missing; run as root (or install sudo)" >&2
		exit 1
	fi
fi

echo "install-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT

update() {
	$SUDO apt-get update -qq >>"$log" 2>&1 || { cat "$log" >&2; echo "install-deps: apt-get update failed" >&2; exit 1; }
}
install() {
	# shellcheck disable=SC2086
	$SUDO apt-get install -y -qq --no-install-recommends $missing >>"$log" 2>&1
}

for p in $missing; do
	if ! apt-cache show "$p" >/dev/null 2>&1; then
		update
		break
	fi
done
if ! install; then
	# Stale package lists (404s) are the usual cause: refresh once.
	update
	install || { cat "$log" >&2; echo "install-deps: apt-get install$missing failed" >&2; exit 1; }
fi
