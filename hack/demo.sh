#!/bin/sh
# The demo (`make demo` runs it after deps, the demo's tools and build): the
# main job end to end, offline, on this machine.
#
#   1. demo inputs: the base image layout and upstream git repository
#      (hack/mkdemo), and the lock (made or moved only when needed);
#   2. a distribution registry on a loopback port the kernel picks
#      (bin/registry; stopped and its storage removed when the demo ends,
#      also on failure or Ctrl-C);
#   3. a demo key pair (vmbuild keygen), kept in DEMO_OUT for re-runs;
#   4. vmbuild build --push --key: build, push by digest, sign, attest, tag;
#   5. a verify policy naming what was reviewed (the locked commit, the
#      recipe's patches and its sha256, the base image), then vmbuild verify
#      with it and the public key; and a policy naming another commit, which
#      verify must refuse;
#   6. what was published: the registry's tags, and the verified provenance
#      (vmbuild provenance).
#
# vmbuild starts and reuses its managed buildkitd itself (`vmbuild daemon
# stop` stops it). Re-running the demo is safe: it starts a fresh registry
# and reuses the inputs, the lock, the key and BuildKit's cache.
#
#   DEMO_OUT      the demo's files (default out/demo): cosign.key, cosign.pub,
#                 the key's password (cosign.password, mode 0600), policy.yaml,
#                 build.json (vmbuild build --metadata-file)
#   DEMO_COMMITS  upstream commits to make (default 1). DEMO_COMMITS=2 adds a
#                 commit touching only app/javascript and moves the lock to
#                 it: the rebuild re-runs the assets layer, not the bundle.
#   VMBUILD       the vmbuild binary (default bin/vmbuild)
#   REGISTRY      the distribution registry binary (default bin/registry)
set -eu
cd "$(dirname "$0")/.."
root=$(pwd)

DEMO_OUT=${DEMO_OUT:-out/demo}
DEMO_COMMITS=${DEMO_COMMITS:-1}
VMBUILD=${VMBUILD:-bin/vmbuild}
REGISTRY=${REGISTRY:-bin/registry}
recipe=recipes/demo/demo.yaml

fail() {
	echo "demo: FAILED: $*" >&2
	exit 1
}
phase() {
	echo
	echo "==> $*"
}

[ -f "$recipe" ] || fail "$recipe is missing"
[ -x "$VMBUILD" ] || fail "$VMBUILD is missing: run \`make build\` (or \`make demo\`)"
[ -x "$REGISTRY" ] || fail "$REGISTRY is missing: run \`make demo-tools\` (or \`make demo\`)"
[ -x bin/buildkitd ] || command -v buildkitd >/dev/null 2>&1 || fail "bin/buildkitd is missing: run \`make demo-tools\` (or \`make demo\`)"

mkdir -p "$DEMO_OUT"
out=$(cd "$DEMO_OUT" && pwd)
regdir="$out/registry"
regpid=""
cleanup() {
	status=$?
	trap - EXIT INT TERM
	if [ -n "$regpid" ]; then
		kill "$regpid" 2>/dev/null || true
		wait "$regpid" 2>/dev/null || true
	fi
	rm -rf "$regdir"
	if [ "$status" -ne 0 ]; then
		echo "demo: stopped with exit status $status; the loopback registry is stopped and removed" >&2
	fi
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

t0=$(date +%s)

# --- 1. inputs and lock ---------------------------------------------------
phase "demo inputs: base image layout and upstream git repository (go run ./hack/mkdemo)"
go run ./hack/mkdemo --commits "$DEMO_COMMITS" || fail "making the demo inputs (hack/mkdemo)"

# The lock lives beside the recipe as NAME.lock.json. It is made when
# missing, and moved to the new head (--update) when DEMO_COMMITS adds
# commits or when the commit it pins is no longer in the upstream.
name=$(sed -n 's/^name:[[:space:]]*["'\'']\{0,1\}\([a-z0-9._-]*\).*/\1/p' "$recipe" | head -n 1)
name=${name:-demo}
lock="recipes/demo/$name.lock.json"
lockfield() { # the first "KEY": "VALUE" in the lock (section SECTION, if given)
	if [ -n "${2:-}" ]; then
		sed -n "/\"$2\"/,/}/s/.*\"$1\":[[:space:]]*\"\([^\"]*\)\".*/\1/p" "$lock" | head -n 1
	else
		sed -n "s/.*\"$1\":[[:space:]]*\"\([^\"]*\)\".*/\1/p" "$lock" | head -n 1
	fi
}
if [ ! -f "$lock" ]; then
	phase "lock: pin the commit, base image and patches ($VMBUILD lock $recipe)"
	"$VMBUILD" lock "$recipe" || fail "vmbuild lock"
else
	pinned=$(lockfield commit upstream)
	# The base image is made from this machine's busybox-static: another
	# Debian release gives another digest than the committed lock's.
	base=$(lockfield digest base)
	if ! grep -q "\"${base:-none}\"" recipes/demo/base/index.json 2>/dev/null; then
		phase "lock: this machine's busybox-static makes another base image than the committed lock's; re-locking ($VMBUILD lock --update $recipe)"
		"$VMBUILD" lock --update "$recipe" || fail "vmbuild lock --update"
	elif [ "$DEMO_COMMITS" != 1 ] || ! git --git-dir=recipes/demo/upstream.git cat-file -e "${pinned:-none}^{commit}" 2>/dev/null; then
		phase "lock: move the lock to the upstream's head ($VMBUILD lock --update $recipe)"
		"$VMBUILD" lock --update "$recipe" || fail "vmbuild lock --update"
	else
		phase "lock: $lock is up to date (commit $pinned)"
	fi
fi
commit=$(lockfield commit upstream)
base=$(lockfield digest base)
source=$(lockfield url upstream)
[ -n "$commit" ] && [ -n "$base" ] && [ -n "$source" ] || fail "could not read the commit, base digest and upstream from $lock"

# --- 2. loopback registry -------------------------------------------------
# Port 0: the kernel picks a free port, and the registry logs it
# ("listening on 127.0.0.1:PORT"), so no other process can take it first.
rm -rf "$regdir"
mkdir -p "$regdir/data"
cat >"$regdir/config.yml" <<EOF
version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $regdir/data
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:0
EOF
# OpenTelemetry is on by default in distribution v3 and nothing listens for it.
OTEL_TRACES_EXPORTER=none OTEL_SDK_DISABLED=true "$REGISTRY" serve "$regdir/config.yml" >"$regdir/registry.log" 2>&1 &
regpid=$!
host=""
i=0
while [ -z "$host" ]; do
	host=$(sed -n 's/.*listening on \(127\.0\.0\.1:[0-9][0-9]*\).*/\1/p' "$regdir/registry.log" | head -n 1)
	[ -n "$host" ] && break
	if ! kill -0 "$regpid" 2>/dev/null; then
		tail -n 15 "$regdir/registry.log" >&2
		fail "the registry ($REGISTRY) exited at start; its log is above"
	fi
	i=$((i + 1))
	[ "$i" -lt 300 ] || { tail -n 15 "$regdir/registry.log" >&2; fail "the registry did not start listening within 30s"; }
	sleep 0.1
done
repo="$host/demo"
phase "loopback registry: $REGISTRY on $host (pid $regpid; stopped and removed when the demo ends)"

# --- 3. key pair ----------------------------------------------------------
# vmbuild reads the key's password from COSIGN_PASSWORD, as cosign does
# (docs/signing.md). The demo's password is random, kept beside the key
# (mode 0600), set only in the environment of the vmbuild commands that
# need it, and never printed.
key="$DEMO_OUT/cosign.key"
pub="$DEMO_OUT/cosign.pub"
pwfile="$DEMO_OUT/cosign.password"
if [ -s "$key" ] && [ -s "$pub" ] && [ -f "$pwfile" ]; then
	phase "key pair: reusing $key and $pub (password in $pwfile)"
else
	phase "key pair: $VMBUILD keygen → $key, $pub (a random password in $pwfile, mode 0600)"
	(umask 077 && od -An -tx1 -N24 /dev/urandom | tr -d ' \n' >"$pwfile")
	COSIGN_PASSWORD=$(cat "$pwfile") "$VMBUILD" keygen --output-key-prefix "$DEMO_OUT/cosign" --force ||
		fail "vmbuild keygen"
fi

# --- 4. build, push, sign, attest -----------------------------------------
phase "build, push, sign, attest: $VMBUILD build $recipe --push $repo:latest --key $key"
digest=$(COSIGN_PASSWORD=$(cat "$pwfile") "$VMBUILD" build "$recipe" --push "$repo:latest" --key "$key" \
	--metadata-file "$DEMO_OUT/build.json") || fail "vmbuild build --push (its error is above)"
case "$digest" in
sha256:*) ;;
*) fail "vmbuild build printed no digest (got \"$digest\")" ;;
esac
image="$repo@$digest"

# --- 5. verify ------------------------------------------------------------
# The policy says what was reviewed: the upstream and the locked commit,
# each patch file the recipe names (its sha256, computed here from the
# file), the recipe file's sha256, the base image in the lock, no Dockerfile
# frontend image, strictly applied patches, and a hermetic build.
policy="$DEMO_OUT/policy.yaml"
{
	echo "# The demo's verify policy (hack/demo.sh writes it; docs/verify.md)."
	echo "apiVersion: vmbuild/v1"
	echo "kind: VerifyPolicy"
	echo "source: \"$source\""
	echo "commits:"
	echo "  - $commit"
	echo "patches:"
	sed -n 's/^[[:space:]]*-[[:space:]]*\(file\|script\):[[:space:]]*\([^[:space:]#]*\).*/\2/p' "$recipe" | while read -r p; do
		[ -f "recipes/demo/$p" ] || fail "$recipe names patch $p, which is missing"
		echo "  - name: $(basename "$p")"
		echo "    sha256: $(sha256sum "recipes/demo/$p" | cut -d' ' -f1)"
	done
	echo "baseImages:"
	echo "  - $base"
	echo "recipes:"
	echo "  - $(sha256sum "$recipe" | cut -d' ' -f1)"
	echo "frontends: []"
	echo "strictPatches: true"
	echo "hermetic: true"
} >"$policy"
phase "verify: $VMBUILD verify $image --key $pub --policy $policy"
sed -n '/^apiVersion/,$s/^/    /p' "$policy"
echo
"$VMBUILD" verify "$image" --key "$pub" --policy "$policy" ||
	fail "vmbuild verify did not verify the image it just published (exit $?): the report is above; the policy is $policy"

# The same policy with another commit: verify must refuse (exit 1).
other="$DEMO_OUT/policy-other-commit.yaml"
sed "s/^  - $commit\$/  - 0000000000000000000000000000000000000000/" "$policy" >"$other"
phase "verify refuses an image whose commit the policy does not name: $VMBUILD verify $image --key $pub --policy $other"
set +e
"$VMBUILD" verify "$image" --key "$pub" --policy "$other" >"$out/refused.txt" 2>&1
code=$?
set -e
grep -E '^(FAIL|NOT VERIFIED|UNDECIDED)' "$out/refused.txt" || true
rm -f "$out/refused.txt"
[ "$code" -eq 1 ] || fail "vmbuild verify should refuse (exit 1) a policy naming another commit; it exited $code"
echo "refused as expected (exit 1)"

# --- 6. what was published ------------------------------------------------
phase "published to $repo"
echo "image        $image"
hex=${digest#sha256:}
# The registry's tag list (busybox wget: busybox-static is a demo dependency).
tags=$(busybox wget -q -O - "http://$host/v2/demo/tags/list" 2>/dev/null | sed -n 's/.*"tags":\[\([^]]*\)\].*/\1/p' | tr -d '"' | tr ',' ' ')
for t in $tags; do
	case "$t" in
	"sha256-$hex.sig") echo "signature    $repo:$t (cosign's simple-signing payload over the digest)" ;;
	"sha256-$hex.att") echo "attestation  $repo:$t (SLSA v1 provenance in a signed DSSE envelope)" ;;
	*) echo "tag          $repo:$t → $(busybox wget -q -O /dev/null -S --header 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$host/v2/demo/manifests/$t" 2>&1 | sed -n 's/.*[Dd]ocker-[Cc]ontent-[Dd]igest: *\(sha256:[0-9a-f]*\).*/\1/p' | head -n 1)" ;;
	esac
done
echo "public key   $pub"
echo "metadata     $DEMO_OUT/build.json (vmbuild build --metadata-file)"
phase "provenance: $VMBUILD provenance $image --key $pub"
"$VMBUILD" provenance "$image" --key "$pub" || fail "vmbuild provenance"

echo "demo: OK in $(($(date +%s) - t0))s: $image is signed, attested and verified."
echo "demo: the loopback registry stops now; vmbuild's managed buildkitd keeps running for the next build (\`$VMBUILD daemon stop\` stops it)."
