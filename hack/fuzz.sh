#!/bin/sh
# Runs every Fuzz* target of the module for a short while (FUZZTIME, default
# 5s) each: part of `make test`. Targets are found with
# `go test -list '^Fuzz' ./...`; each runs alone in its package, since
# `go test -fuzz` takes one target of one package at a time. A finding is
# written to the package's testdata/fuzz/ by go test and fails this script.
set -eu
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-5s}

list=$(mktemp)
trap 'rm -f "$list"' EXIT
if ! go test -list '^Fuzz' ./... >"$list" 2>&1; then
	cat "$list" >&2
	echo "fuzz: listing fuzz targets failed" >&2
	exit 1
fi
# Output: the names of one package's targets, then "ok  <pkg>  <time>".
targets=$(awk '
	/^Fuzz/ { names[n++] = $1; next }
	/^ok[ \t]/ { for (i = 0; i < n; i++) print $2, names[i]; n = 0; next }
	{ n = 0 }
' "$list")

if [ -z "$targets" ]; then
	echo "fuzz: no fuzz targets"
	exit 0
fi
failed=""
count=0
echo "$targets" | {
	while read -r pkg name; do
		count=$((count + 1))
		echo "fuzz: $pkg $name ($FUZZTIME)"
		if ! go test -run='^$' -fuzz="^${name}\$" -fuzztime="$FUZZTIME" "$pkg"; then
			failed="$failed $pkg.$name"
		fi
	done
	if [ -n "$failed" ]; then
		echo "fuzz: FAILED:$failed" >&2
		exit 1
	fi
	echo "fuzz: $count targets passed"
}
