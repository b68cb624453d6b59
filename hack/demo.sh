#!/bin/sh
# The demo (`make demo` runs it after deps, tools and build): creates the
# demo inputs (base image layout and upstream git repository, see
# hack/mkdemo), locks the recipe if it has no lock yet, and builds it into
# an OCI output. vmbuild starts and reuses its managed buildkitd itself.
#
#   DEMO_OUT      output of the build (default out/demo), given as oci:DEMO_OUT
#   DEMO_COMMITS  upstream commits to make (default 1). DEMO_COMMITS=2 adds a
#                 commit touching only app/javascript and moves the lock to
#                 it: the rebuild re-runs the assets layer, not the bundle.
#   VMBUILD       the vmbuild binary (default bin/vmbuild)
set -eu
cd "$(dirname "$0")/.."

DEMO_OUT=${DEMO_OUT:-out/demo}
DEMO_COMMITS=${DEMO_COMMITS:-1}
VMBUILD=${VMBUILD:-bin/vmbuild}
recipe=recipes/demo/demo.yaml

if [ ! -f "$recipe" ]; then
	echo "demo: $recipe is missing" >&2
	exit 1
fi
if [ ! -x "$VMBUILD" ]; then
	echo "demo: $VMBUILD is missing: run \`make build\`" >&2
	exit 1
fi

echo "==> demo inputs"
go run ./hack/mkdemo --commits "$DEMO_COMMITS"

# The lock lives beside the recipe as NAME.lock.json. It is made when
# missing, and moved to the new head (--update) when DEMO_COMMITS adds
# commits or when the commit it pins is no longer in the upstream.
name=$(sed -n 's/^name:[[:space:]]*["'\'']\{0,1\}\([a-z0-9._-]*\).*/\1/p' "$recipe" | head -n 1)
lock="recipes/demo/${name:-demo}.lock.json"
if [ ! -f "$lock" ]; then
	echo "==> $VMBUILD lock $recipe"
	"$VMBUILD" lock "$recipe"
else
	pinned=$(sed -n 's/.*"commit":[[:space:]]*"\([0-9a-f]\{40\}\)".*/\1/p' "$lock" | head -n 1)
	# The base image is made from this machine's busybox-static: another
	# Debian release gives another digest than the committed lock's.
	base=$(sed -n '/"base"/,/}/s/.*"digest":[[:space:]]*"\(sha256:[0-9a-f]*\)".*/\1/p' "$lock" | head -n 1)
	if ! grep -q "\"${base:-none}\"" recipes/demo/base/index.json 2>/dev/null; then
		echo "demo: this machine's busybox-static makes a base image other than the committed lock's; re-locking" >&2
		echo "==> $VMBUILD lock --update $recipe"
		"$VMBUILD" lock --update "$recipe"
	elif [ "$DEMO_COMMITS" != 1 ] || ! git --git-dir=recipes/demo/upstream.git cat-file -e "${pinned:-none}^{commit}" 2>/dev/null; then
		echo "==> $VMBUILD lock --update $recipe"
		"$VMBUILD" lock --update "$recipe"
	fi
fi

echo "==> $VMBUILD build $recipe --output oci:$DEMO_OUT"
mkdir -p "$(dirname "$DEMO_OUT")"
"$VMBUILD" build "$recipe" --output "oci:$DEMO_OUT"

# Report the digest from the output when it is an OCI layout directory.
if [ -f "$DEMO_OUT/index.json" ]; then
	digest=$(grep -o '"digest":"sha256:[0-9a-f]*"' "$DEMO_OUT/index.json" | head -n 1 | cut -d'"' -f4)
	echo "demo: image $digest in $DEMO_OUT"
fi
