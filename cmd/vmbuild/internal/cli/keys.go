package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/internal/termsafe"
	"github.com/vmbuild/vmbuild/provenance"
	"github.com/vmbuild/vmbuild/registry"
	"github.com/vmbuild/vmbuild/sign"
	"github.com/vmbuild/vmbuild/verify"
)

func init() {
	extraCommands = append(extraCommands, (*app).keygenCommand, (*app).provenanceCommand)
}

// keygenJob is `vmbuild keygen`.
type keygenJob struct {
	prefix string
	force  bool
}

func (a *app) keygenCommand() *cobra.Command {
	j := &keygenJob{}
	cmd := &cobra.Command{
		Use:   "keygen",
		Short: "Write a cosign-compatible key pair (cosign.key, cosign.pub)",
		Long: `Write an ECDSA P-256 key pair in cosign's format: PREFIX.key, encrypted with a
password from $COSIGN_PASSWORD (or asked for twice on the terminal), and
PREFIX.pub. Keys made by "cosign generate-key-pair" work with vmbuild too.`,
		Args: usageArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error { return a.run(cmd.Context(), j) },
	}
	cmd.Flags().StringVar(&j.prefix, "output-key-prefix", "cosign", "file name prefix for the key pair")
	cmd.Flags().BoolVar(&j.force, "force", false, "overwrite existing key files")
	return cmd
}

func (j *keygenJob) run(ctx context.Context, a *app) error {
	pw, err := a.password(true)
	if err != nil {
		return err
	}
	priv, pub, err := sign.GenerateKeyPair(pw)
	if err != nil {
		return err
	}
	if err := writeFileNew(j.prefix+".key", priv, 0o600, j.force); err != nil {
		return err
	}
	if err := writeFileNew(j.prefix+".pub", pub, 0o644, j.force); err != nil {
		return err
	}
	fmt.Fprintf(a.stderr, "Private key written to %s.key\nPublic key written to %s.pub\n", j.prefix, j.prefix)
	return nil
}

// provenanceJob is `vmbuild provenance`.
type provenanceJob struct {
	image    verify.Reference
	key      string
	json     bool
	insecure []string
}

func (a *app) provenanceCommand() *cobra.Command {
	j := &provenanceJob{}
	var output string
	var resolve bool
	cmd := &cobra.Command{
		Use:   "provenance IMAGE",
		Short: "Fetch, verify and print an image's SLSA provenance",
		Long: `Fetch the image's SLSA v1 provenance attestations, verify each under --key, and
print the recorded build: upstream repository and commit, patches with their
digests, base image, builder and times. IMAGE is REPO@sha256:… or
oci:DIR@sha256:… (an OCI layout); a tag (REPO:TAG, oci:DIR:TAG) with --resolve.
For a full policy check before deploying use "vmbuild verify".`,
		Args: usageArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("%w: --output must be text or json", errs.ErrUsage)
			}
			if j.key == "" {
				return fmt.Errorf("%w: --key cosign.pub is required: unverified provenance proves nothing", errs.ErrUsage)
			}
			var err error
			if j.image, err = imageReference(args[0], resolve); err != nil {
				return err
			}
			j.json = output == "json"
			return a.run(cmd.Context(), j)
		},
	}
	cmd.Flags().StringVar(&j.key, "key", "", "cosign public key the provenance must be signed with")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	cmd.Flags().BoolVar(&resolve, "resolve", false, "accept a tag and resolve it to a digest once")
	cmd.Flags().StringSliceVar(&j.insecure, "insecure-registry", nil, "registry host:port reached over plain http (loopback registries always are)")
	return cmd
}

func (j *provenanceJob) run(ctx context.Context, a *app) error {
	kb, err := os.ReadFile(j.key)
	if err != nil {
		return fmt.Errorf("reading public key: %w: %w", errs.ErrKey, err)
	}
	v, err := verify.New(
		verify.WithPublicKeyPEM(kb),
		verify.WithRegistryOptions(registry.WithInsecure(j.insecure...)),
		verify.WithLogger(a.log),
		verify.WithTimeout(2*time.Minute),
	)
	if err != nil {
		return err
	}
	t, err := v.Resolve(ctx, j.image)
	if err != nil {
		return err
	}
	infos, err := v.Provenance(ctx, t)
	if err != nil {
		return err
	}
	if j.json {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(infos)
	}
	for _, in := range infos {
		printProvenance(a.stdout, t, in)
	}
	return nil
}

// printProvenance prints what the provenance records. It comes from the
// image's attestation: every field is escaped (termsafe).
func printProvenance(w io.Writer, t verify.Target, in *provenance.Info) {
	q := termsafe.Text
	fmt.Fprintf(w, "image:      %s (verified)\n", q(t.String()))
	fmt.Fprintf(w, "recipe:     %s (%s, sha256 %s)\n", q(in.Recipe.Name), q(in.Recipe.Path), q(in.Recipe.SHA256))
	fmt.Fprintf(w, "upstream:   %s @ %s\n", q(in.Upstream.URL), q(in.Upstream.Ref))
	fmt.Fprintf(w, "commit:     %s", q(in.Upstream.Commit))
	if !in.Upstream.CommitTime.IsZero() {
		fmt.Fprintf(w, " (%s)", in.Upstream.CommitTime.Format(time.RFC3339))
	}
	fmt.Fprintln(w)
	if len(in.Patches) == 0 {
		fmt.Fprintln(w, "patches:    none")
	} else {
		fmt.Fprintln(w, "patches:")
		for i, p := range in.Patches {
			fmt.Fprintf(w, "  %d. %s (%s) sha256:%s%s\n", i+1, q(p.Name), q(string(p.Kind)), q(p.SHA256), q(patchApplication(p)))
		}
	}
	switch {
	case in.Dockerfile != nil:
		fmt.Fprintf(w, "build:      dockerfile %s", q(in.Dockerfile.Path))
		if in.Dockerfile.Target != "" {
			fmt.Fprintf(w, " target %s", q(in.Dockerfile.Target))
		}
		fmt.Fprintln(w)
	case in.Native != nil:
		fmt.Fprintf(w, "build:      native layers %s\n", q(strings.Join(in.Native.Layers, ", ")))
	}
	if in.Base.Ref != "" {
		fmt.Fprintf(w, "base:       %s@%s\n", q(in.Base.Ref), q(in.Base.Digest))
	}
	if in.Frontend != nil {
		fmt.Fprintf(w, "frontend:   %s@%s\n", q(in.Frontend.Ref), q(in.Frontend.Digest))
	}
	for _, im := range in.Images {
		fmt.Fprintf(w, "image dep:  %s@%s\n", q(im.Ref), q(im.Digest))
	}
	if d := in.Debian; d != nil {
		fmt.Fprintf(w, "base:       Debian %s (%s) from %s, InRelease sha256:%s signed by %s", d.Suite, strings.Join(d.Components, ","), d.Mirror, d.InReleaseSHA256, d.SignedBy)
		if d.AllowExpired {
			fmt.Fprint(w, ", accepted past Valid-Until")
		}
		fmt.Fprintln(w)
	}
	if len(in.Packages) > 0 {
		perLayer := map[string]int{}
		var order []string
		for _, p := range in.Packages {
			where := "base"
			if p.Layer != "" {
				where = "layer " + p.Layer
			}
			if perLayer[where] == 0 {
				order = append(order, where)
			}
			perLayer[where]++
		}
		var parts []string
		for _, o := range order {
			parts = append(parts, fmt.Sprintf("%d in %s", perLayer[o], o))
		}
		fmt.Fprintf(w, "packages:   %d pinned (%s)\n", len(in.Packages), strings.Join(parts, ", "))
	}
	switch {
	case in.NonHermetic == nil:
		fmt.Fprintln(w, "hermetic:   not recorded")
	case len(in.NonHermetic) == 0:
		fmt.Fprintln(w, "hermetic:   yes (no step had network, nothing was downloaded unpinned)")
	default:
		fmt.Fprintln(w, "hermetic:   no")
		for _, a := range in.NonHermetic {
			fmt.Fprintf(w, "  - %s\n", q(a.String()))
		}
	}
	fmt.Fprintf(w, "builder:    %s (BuildKit %s)\n", q(in.BuilderID), q(in.BuildKitVersion))
	if !in.StartedOn.IsZero() {
		fmt.Fprintf(w, "built:      %s → %s (%s)\n", in.StartedOn.Format(time.RFC3339), in.FinishedOn.Format(time.RFC3339), in.FinishedOn.Sub(in.StartedOn).Round(time.Millisecond))
	}
	fmt.Fprintf(w, "invocation: %s\n\n", q(in.InvocationID))
}

// patchApplication describes a patch's recorded outcome and lenient
// options, e.g. " applied (offset, fuzz 2)".
func patchApplication(p provenance.Patch) string {
	if p.Outcome == "" && p.Options == nil {
		return ""
	}
	out := " " + p.Outcome
	if out == " " {
		out = " outcome not recorded"
	}
	if o := p.Options; o != nil {
		var opts []string
		if o.Offset {
			opts = append(opts, "offset")
		}
		if o.Fuzz > 0 {
			opts = append(opts, fmt.Sprintf("fuzz %d", o.Fuzz))
		}
		if o.Optional {
			opts = append(opts, "optional")
		}
		if len(opts) > 0 {
			out += " (" + strings.Join(opts, ", ") + ")"
		}
	}
	return out
}
