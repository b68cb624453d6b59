package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/registry"
	"github.com/vmbuild/vmbuild/verify"
)

func init() { extraCommands = append(extraCommands, (*app).verifyCommand) }

// verifyJob is `vmbuild verify`.
type verifyJob struct {
	image verify.Reference
	keys  []string
	// policy is the policy file; "" is --no-policy.
	policy   string
	json     bool
	timeout  time.Duration
	insecure []string
}

func (a *app) verifyCommand() *cobra.Command {
	j := &verifyJob{}
	var output string
	var noPolicy, resolve bool
	cmd := &cobra.Command{
		Use:   "verify IMAGE --key cosign.pub --policy policy.yaml",
		Short: "Verify an image's signature and SLSA provenance against a policy before deploying it",
		Long: `Verify that IMAGE is signed by a trusted key over exactly its digest and carries
a signed SLSA v1 provenance attestation, in vmbuild's build type, that the
policy accepts: source repository, upstream commit (listed, or published in a
track history), the exact patch set, base image digests and trusted builders.
Every check is printed as PASS, FAIL or SKIP with its reason.

IMAGE is pinned by digest:
  REPO@sha256:…          an image in a registry
  oci:DIR@sha256:…       an image in an OCI image layout (vmbuild build --output oci:DIR)
A tag (REPO:TAG, oci:DIR:TAG) is refused unless --resolve is given: then it is
resolved once, and the digest printed is the one to deploy.

A policy is required: --policy FILE (format: docs/verify.md), or --no-policy
to check only the signatures, the provenance's form and the default builder.

Exit status: 0 verified; 1 verification failed (do not deploy); 2 usage,
configuration, network or registry error, or a limit exceeded (nothing was
decided: do not deploy either).`,
		Args: usageArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case output != "text" && output != "json":
				return fmt.Errorf("%w: --output must be text or json", errs.ErrUsage)
			case len(j.keys) == 0:
				return fmt.Errorf("%w: --key cosign.pub is required: an image is trusted only when signed by a key you trust", errs.ErrUsage)
			case j.policy != "" && noPolicy:
				return fmt.Errorf("%w: --policy and --no-policy contradict each other", errs.ErrUsage)
			case j.policy == "" && !noPolicy:
				return fmt.Errorf("%w: a policy is required (no policy, no trust): give --policy policy.yaml (see docs/verify.md), or --no-policy to check only signatures, provenance form and the default builder", errs.ErrUsage)
			case j.timeout <= 0:
				return fmt.Errorf("%w: --timeout must be positive", errs.ErrUsage)
			}
			var err error
			if j.image, err = imageReference(args[0], resolve); err != nil {
				return err
			}
			j.json = output == "json"
			return a.run(cmd.Context(), j)
		},
	}
	fs := cmd.Flags()
	fs.StringArrayVar(&j.keys, "key", nil, "trusted cosign public key (PEM); repeat for several keys")
	fs.StringVar(&j.policy, "policy", "", "policy file (YAML, see docs/verify.md)")
	fs.BoolVar(&noPolicy, "no-policy", false, "verify without a policy: signatures, provenance form and the default builder only")
	fs.BoolVar(&resolve, "resolve", false, "accept a tag: resolve it once and verify that digest (deploy the digest printed)")
	fs.StringVarP(&output, "output", "o", "text", "report format: text or json")
	fs.DurationVar(&j.timeout, "timeout", verify.DefaultTimeout, "total deadline for the verification, e.g. 2m")
	fs.StringSliceVar(&j.insecure, "insecure-registry", nil, "registry host:port reached over plain http (loopback registries always are)")
	return cmd
}

// imageReference parses IMAGE (verify.ParseReference): pinned by
// digest, or a tag only when resolve (--resolve) allows it.
func imageReference(image string, resolve bool) (verify.Reference, error) {
	ref, err := verify.ParseReference(image)
	if err != nil {
		return ref, err
	}
	if ref.IsTag() && !resolve {
		where := ref.Repository
		if ref.Layout != "" {
			where = verify.LayoutPrefix + ref.Layout
		}
		return ref, fmt.Errorf("%w: %s is a tag, and tags move: give the digest (%s@sha256:…), or --resolve to resolve the tag once and use that digest", errs.ErrUsage, ref, where)
	}
	return ref, nil
}

func (j *verifyJob) run(ctx context.Context, a *app) error {
	var pems [][]byte
	for _, k := range j.keys {
		b, err := os.ReadFile(k)
		if err != nil {
			return withCode(2, fmt.Errorf("reading public key: %w: %w", errs.ErrKey, err))
		}
		pems = append(pems, b)
	}
	pol := verify.NoPolicy()
	if j.policy != "" {
		var err error
		if pol, err = verify.LoadPolicy(j.policy); err != nil {
			return withCode(2, err)
		}
	}
	ref := j.image
	v, err := verify.New(
		verify.WithPublicKeyPEM(pems...),
		verify.WithRegistryOptions(registry.WithInsecure(j.insecure...)),
		verify.WithLogger(a.log),
		verify.WithTimeout(j.timeout),
	)
	if err != nil {
		return withCode(2, err)
	}
	t, err := v.Resolve(ctx, ref)
	if err != nil {
		return withCode(2, err)
	}
	if ref.IsTag() {
		fmt.Fprintf(a.stderr, "resolved %s to %s: deploy by this digest, not by the tag\n", ref, t)
	}
	rep, verr := v.Verify(ctx, t, pol)
	if rep != nil {
		if ref.IsTag() {
			rep.ResolvedFrom = ref.String()
		}
		if err := j.print(a, rep); err != nil {
			return withCode(2, err)
		}
	}
	switch {
	case verr == nil:
		return nil
	case errs.IsVerification(verr):
		return withCode(1, verr)
	case errors.Is(verr, errs.ErrUsage):
		return verr
	}
	return withCode(2, verr)
}

// print writes the report; the text's lines quote the image's attestations
// and the registry: escaped.
func (j *verifyJob) print(a *app, rep *verify.Report) error {
	if j.json {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	var b strings.Builder
	if err := rep.WriteText(&b); err != nil {
		return err
	}
	_, err := io.WriteString(a.stdout, safeLines(b.String()))
	return err
}
