// Package errs is vmbuild's single catalogue of sentinel errors.
//
// Library packages wrap these with context ("resolving base image: %w") so
// that callers can classify a failure with errors.Is without parsing
// messages. The CLI maps classes to exit codes:
//
//   - verification failures (see [VerificationError]) exit 1 from `vmbuild verify`;
//   - everything else that is the user's input, configuration or transport
//     exits 2 from verify, and 1 from the other commands.
package errs

import (
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrInvalidRecipe: the recipe file does not parse or validate.
	ErrInvalidRecipe = errors.New("invalid recipe")
	// ErrInvalidLock: the lock file does not parse or validate.
	ErrInvalidLock = errors.New("invalid lock file")
	// ErrLockMissing: no lock file exists beside the recipe.
	ErrLockMissing = errors.New("lock file missing")
	// ErrLockStale: an input changed since the lock was written.
	ErrLockStale = errors.New("lock file is stale")
	// ErrGit: a git remote could not be reached or a ref does not exist.
	ErrGit = errors.New("git source error")
	// ErrImageResolve: an image reference could not be resolved.
	ErrImageResolve = errors.New("cannot resolve image")
	// ErrBuildKitUnavailable: buildkitd cannot be reached or started.
	ErrBuildKitUnavailable = errors.New("buildkit unavailable")
	// ErrMissingTool: a required program (buildkitd, runc, git) is not installed.
	ErrMissingTool = errors.New("required program not found")
	// ErrBuildFailed: a build step failed.
	ErrBuildFailed = errors.New("build failed")
	// ErrPatchFailed: a patch did not apply (hunk, script) or made no change.
	ErrPatchFailed = errors.New("patch failed")
	// ErrUnsafePatch: a patch tried to write outside the source tree.
	ErrUnsafePatch = errors.New("unsafe patch")
	// ErrRegistry: a registry request failed (transport, auth, 5xx).
	ErrRegistry = errors.New("registry error")
	// ErrNotFound: a registry or OCI layout object (manifest, tag, blob)
	// does not exist.
	ErrNotFound = errors.New("not found")
	// ErrLayout: an OCI image layout is malformed: a file that is not a
	// regular file, content that does not match its digest, an index.json
	// or oci-layout file that does not parse.
	ErrLayout = errors.New("OCI layout error")
	// ErrLimitExceeded: a size, count or time limit was hit while reading
	// untrusted data.
	ErrLimitExceeded = errors.New("limit exceeded")
	// ErrKey: a signing or verification key could not be loaded.
	ErrKey = errors.New("key error")
	// ErrInvalidPolicy: a verification policy does not parse or validate.
	ErrInvalidPolicy = errors.New("invalid policy")
	// ErrPublish: publishing (push, sign, attest, tag) did not complete.
	ErrPublish = errors.New("publish incomplete")
	// ErrLocked: another vmbuild process holds the lock on this recipe.
	ErrLocked = errors.New("recipe is locked by another process")
	// ErrNotReproducible: `build --check` found a different digest.
	ErrNotReproducible = errors.New("build is not reproducible")
	// ErrUsage: a command was called with arguments that make no sense.
	ErrUsage = errors.New("usage error")
	// ErrDependency: a dependency lockfile or package index cannot be
	// resolved to pinned downloads (unknown package, no URL, unsupported
	// source, a lockfile that does not match its manifest).
	ErrDependency = errors.New("dependency error")
	// ErrHashMismatch: a download's content is not what its pin says.
	ErrHashMismatch = errors.New("hash mismatch")
)

// VerificationError reports that an artifact was refused: the signature,
// attestation or policy did not hold. It is distinct from transport and
// configuration errors: a VerificationError means "do not deploy", any other
// error means "could not decide".
type VerificationError struct {
	Check  string // the check that failed, e.g. "signature", "builder"
	Reason string // human readable reason
	Err    error  // optional underlying cause
}

func (e *VerificationError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("verification failed: %s: %s: %v", e.Check, e.Reason, e.Err)
	}
	return fmt.Sprintf("verification failed: %s: %s", e.Check, e.Reason)
}

func (e *VerificationError) Unwrap() error { return e.Err }

// IsVerification reports whether err is (or wraps) a VerificationError.
func IsVerification(err error) bool {
	var ve *VerificationError
	return errors.As(err, &ve)
}

// LimitError names the limit that untrusted input exceeded.
type LimitError struct {
	Limit string // e.g. "manifest size (4 MiB)"
	Got   string // what was seen, if known
}

func (e *LimitError) Error() string {
	if e.Got != "" {
		return fmt.Sprintf("limit exceeded: %s: %s", e.Limit, e.Got)
	}
	return "limit exceeded: " + e.Limit
}

func (e *LimitError) Is(target error) bool { return target == ErrLimitExceeded }

// Summarize joins distinct reasons for a message: at most three, each
// repeated one counted ("bad signature (×2); wrong key; and 2 more").
func Summarize(reasons []string) string {
	var uniq []string
	seen := map[string]int{}
	for _, r := range reasons {
		if _, ok := seen[r]; !ok {
			uniq = append(uniq, r)
		}
		seen[r]++
	}
	var parts []string
	for i, r := range uniq {
		if i == 3 {
			parts = append(parts, fmt.Sprintf("and %d more", len(uniq)-3))
			break
		}
		if seen[r] > 1 {
			r = fmt.Sprintf("%s (×%d)", r, seen[r])
		}
		parts = append(parts, r)
	}
	return strings.Join(parts, "; ")
}
