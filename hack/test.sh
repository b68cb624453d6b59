#!/bin/sh
# What `make test` runs after deps, tools and build:
#   0. the demo inputs (hack/mkdemo), when recipes/demo/src exists;
#   1. a buildkitd shared by all test binaries (hack/testsvc, through package
#      buildkit's managed-daemon code), exported as VMBUILD_TEST_BUILDKIT_ADDR;
#   2. go mod tidy -diff (go.mod and go.sum say exactly what the code
#      imports), then VMBUILD_INTEGRATION=1 go test -count=1 -timeout 30m ./...
#   3. hack/fuzz.sh (every Fuzz* target for FUZZTIME, default 5s);
#   4. bench/run --quick, if bench/run exists.
# Every stage runs even when an earlier one failed; the script fails if any
# did. Registries and git daemons are per test (testenv starts them in
# ~40ms). Everything runs under one temporary directory (TMPDIR for the
# tests) that is swept of daemons and removed at the end, even on failure
# or interrupt.
set -eu
cd "$(dirname "$0")/.."
root=$(pwd)

base=$(mktemp -d /tmp/vmbuild-test.XXXXXX)
svc="$base/testsvc"
cleanup() {
	status=$?
	trap - EXIT INT TERM
	if [ -x "$svc" ]; then
		"$svc" sweep "$base" || true
	fi
	rm -rf --one-file-system "$base" 2>/dev/null || true
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s; }
t0=$(now)
go build -o "$svc" ./hack/testsvc
mkdir -p "$base/tmp"
# mktemp -d makes $base 0700: services the tests run as another user
# (PostgreSQL as postgres) must traverse it to reach their directories.
chmod 0755 "$base" "$base/tmp"
addr=$("$svc" start -state "$base/bk" -buildkitd "$root/bin/buildkitd")
echo "test: shared buildkitd at $addr ($(( $(now) - t0 ))s)"

export VMBUILD_TEST_BUILDKIT_ADDR="$addr"
export VMBUILD_INTEGRATION=1
export TMPDIR="$base/tmp"

failed=""
stage() {
	name=$1
	shift
	s=$(now)
	echo "==> $name"
	if "$@"; then
		echo "<== $name: ok ($(( $(now) - s ))s)"
	else
		echo "<== $name: FAILED ($(( $(now) - s ))s)"
		failed="$failed [$name]"
	fi
}

# Tests of the demo recipe find its inputs in place.
if [ -d recipes/demo/src ]; then
	stage "demo inputs" go run ./hack/mkdemo
fi
stage "go mod tidy" go mod tidy -diff
stage "go test" go test -count=1 -timeout 30m ./...
stage "fuzz" hack/fuzz.sh
if [ -f bench/run ] && [ -x bench/run ]; then
	stage "bench" bench/run --quick
elif [ -d bench/run ]; then
	stage "bench" go run ./bench/run --quick
fi

echo "test: total $(( $(now) - t0 ))s"
if [ -n "$failed" ]; then
	echo "test: FAILED:$failed" >&2
	exit 1
fi
