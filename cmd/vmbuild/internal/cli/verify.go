package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/registry"
	"github.com/vmbuild/vmbuild/verify"
)

func init() { extraCommands = append(extraCommands, (*app).verifyCommand) }

type verifyFlags struct {
	keys     []string
	policy   string
	noPolicy bool
	resolve  bool
	output   string
	timeout  time.Duration
	insecure []string
}

func (a *app) verifyCommand() *cobra.Command {
	f := &verifyFlags{}
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
			return a.runVerify(cmd, args[0], f)
		},
	}
	fs := cmd.Flags()
	fs.StringArrayVar(&f.keys, "key", nil, "trusted cosign public key (PEM); repeat for several keys")
	fs.StringVar(&f.policy, "policy", "", "policy file (YAML, see docs/verify.md)")
	fs.BoolVar(&f.noPolicy, "no-policy", false, "verify without a policy: signatures, provenance form and the default builder only")
	fs.BoolVar(&f.resolve, "resolve", false, "accept a tag: resolve it once and verify that digest (deploy the digest printed)")
	fs.StringVarP(&f.output, "output", "o", "text", "report format: text or json")
	fs.DurationVar(&f.timeout, "timeout", verify.DefaultTimeout, "total deadline for the verification")
	fs.StringSliceVar(&f.insecure, "insecure-registry", nil, "registry host:port reached over plain http (loopback registries always are)")
	return cmd
}

func (a *app) runVerify(cmd *cobra.Command, image string, f *verifyFlags) error {
	ctx := cmd.Context()
	switch {
	case f.output != "text" && f.output != "json":
		return fmt.Errorf("%w: --output must be text or json", errs.ErrUsage)
	case len(f.keys) == 0:
		return fmt.Errorf("%w: --key cosign.pub is required: an image is trusted only when signed by a key you trust", errs.ErrUsage)
	case f.policy != "" && f.noPolicy:
		return fmt.Errorf("%w: --policy and --no-policy contradict each other", errs.ErrUsage)
	case f.policy == "" && !f.noPolicy:
		return fmt.Errorf("%w: a policy is required (no policy, no trust): give --policy policy.yaml (see docs/verify.md), or --no-policy to check only signatures, provenance form and the default builder", errs.ErrUsage)
	case f.timeout <= 0:
		return fmt.Errorf("%w: --timeout must be positive", errs.ErrUsage)
	}
	var pems [][]byte
	for _, k := range f.keys {
		b, err := os.ReadFile(k)
		if err != nil {
			return withCode(2, fmt.Errorf("reading public key: %w: %w", errs.ErrKey, err))
		}
		pems = append(pems, b)
	}
	pol := verify.NoPolicy()
	if f.policy != "" {
		var err error
		if pol, err = verify.LoadPolicy(f.policy); err != nil {
			return withCode(2, err)
		}
	}
	ref, err := verify.ParseReference(image)
	if err != nil {
		return err
	}
	if ref.IsTag() && !f.resolve {
		where := ref.Repository
		if ref.Layout != "" {
			where = verify.LayoutPrefix + ref.Layout
		}
		return fmt.Errorf("%w: %s is a tag, and tags move: verify and deploy by digest (%s@sha256:…), or give --resolve to resolve the tag once and verify that digest", errs.ErrUsage, ref, where)
	}
	v, err := verify.New(
		verify.WithPublicKeyPEM(pems...),
		verify.WithRegistryOptions(registry.WithInsecure(f.insecure...)),
		verify.WithLogger(a.log),
		verify.WithTimeout(f.timeout),
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
		if f.output == "json" {
			enc := json.NewEncoder(a.stdout)
			enc.SetIndent("", "  ")
			if err := enc.Encode(rep); err != nil {
				return withCode(2, err)
			}
		} else if err := rep.WriteText(a.stdout); err != nil {
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
