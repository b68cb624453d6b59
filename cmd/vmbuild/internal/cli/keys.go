package cli

import (
	"context"
	"crypto"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"

	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/provenance"
	"github.com/vmbuild/vmbuild/registry"
	"github.com/vmbuild/vmbuild/sign"
	"github.com/vmbuild/vmbuild/store"
)

func init() {
	extraCommands = append(extraCommands, (*app).keygenCommand, (*app).provenanceCommand)
}

func (a *app) keygenCommand() *cobra.Command {
	var prefix string
	var force bool
	cmd := &cobra.Command{
		Use:   "keygen",
		Short: "Write a cosign-compatible key pair (cosign.key, cosign.pub)",
		Long: `Write an ECDSA P-256 key pair in cosign's format: PREFIX.key, encrypted with a
password from $COSIGN_PASSWORD (or asked for twice on the terminal), and
PREFIX.pub. Keys made by "cosign generate-key-pair" work with vmbuild too.`,
		Args: usageArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			pw, err := a.password(true)
			if err != nil {
				return err
			}
			priv, pub, err := sign.GenerateKeyPair(pw)
			if err != nil {
				return err
			}
			if err := writeFileNew(prefix+".key", priv, 0o600, force); err != nil {
				return err
			}
			if err := writeFileNew(prefix+".pub", pub, 0o644, force); err != nil {
				return err
			}
			fmt.Fprintf(a.stderr, "Private key written to %s.key\nPublic key written to %s.pub\n", prefix, prefix)
			return nil
		},
	}
	cmd.Flags().StringVar(&prefix, "output-key-prefix", "cosign", "file name prefix for the key pair")
	cmd.Flags().BoolVar(&force, "force", false, "overwrite existing key files")
	return cmd
}

// imageTarget is a registry image or an image in an OCI layout.
type imageTarget struct {
	layout string // OCI layout dir, when the image is there
	repo   string
	digest digest.Digest
}

// parseImageTarget accepts REPO@sha256:…, and oci:DIR@sha256:… for a
// layout. With resolve, a tag is resolved once (registry only).
func parseImageTarget(ctx context.Context, ref string, reg *registry.Client, resolve bool) (imageTarget, error) {
	if rest, ok := strings.CutPrefix(ref, "oci:"); ok {
		dir, d, found := strings.Cut(rest, "@")
		if !found {
			return imageTarget{}, fmt.Errorf("%w: %q: give the image digest: oci:DIR@sha256:…", errs.ErrUsage, ref)
		}
		dg, err := digest.Parse(d)
		if err != nil {
			return imageTarget{}, fmt.Errorf("%w: %q: %v", errs.ErrUsage, ref, err)
		}
		return imageTarget{layout: dir, digest: dg}, nil
	}
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return imageTarget{}, fmt.Errorf("%w: %q is not an image reference: %v", errs.ErrUsage, ref, err)
	}
	if d, ok := named.(reference.Digested); ok {
		return imageTarget{repo: reference.TrimNamed(named).String(), digest: d.Digest()}, nil
	}
	if !resolve {
		return imageTarget{}, fmt.Errorf("%w: %q is a tag, and tags move: give REPO@sha256:… (or --resolve to resolve the tag once and use that digest)", errs.ErrUsage, ref)
	}
	desc, err := reg.Resolve(ctx, reference.TagNameOnly(named).String())
	if err != nil {
		return imageTarget{}, err
	}
	return imageTarget{repo: reference.TrimNamed(named).String(), digest: desc.Digest}, nil
}

func (t imageTarget) String() string {
	if t.layout != "" {
		return "oci:" + t.layout + "@" + t.digest.String()
	}
	return t.repo + "@" + t.digest.String()
}

func (a *app) provenanceCommand() *cobra.Command {
	var keyPath, output string
	var conn connFlags
	var resolve bool
	cmd := &cobra.Command{
		Use:   "provenance IMAGE",
		Short: "Fetch, verify and print an image's SLSA provenance",
		Long: `Fetch the image's SLSA v1 provenance attestations, verify each under --key, and
print the recorded build: upstream repository and commit, patches with their
digests, base image, builder and times. IMAGE is REPO@sha256:… or
oci:DIR@sha256:… (an OCI layout). For a full policy check before deploying use
"vmbuild verify".`,
		Args: usageArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
			defer cancel()
			if output != "text" && output != "json" {
				return fmt.Errorf("%w: --output must be text or json", errs.ErrUsage)
			}
			if keyPath == "" {
				return fmt.Errorf("%w: --key cosign.pub is required: unverified provenance proves nothing", errs.ErrUsage)
			}
			kb, err := os.ReadFile(keyPath)
			if err != nil {
				return fmt.Errorf("reading public key: %w: %w", errs.ErrKey, err)
			}
			pub, err := sign.LoadPublicKey(kb)
			if err != nil {
				return err
			}
			reg := conn.registryClient(a)
			t, err := parseImageTarget(ctx, args[0], reg, resolve)
			if err != nil {
				return err
			}
			infos, err := verifiedProvenance(ctx, reg, t, pub)
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(infos)
			}
			for _, in := range infos {
				printProvenance(a, t, in)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&keyPath, "key", "", "cosign public key the provenance must be signed with")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	cmd.Flags().BoolVar(&resolve, "resolve", false, "accept a tag and resolve it to a digest once")
	cmd.Flags().StringSliceVar(&conn.insecure, "insecure-registry", nil, "registry host:port reached over plain http (loopback registries always are)")
	return cmd
}

// verifiedProvenance returns the SLSA provenance statements about t that
// verify under pub and name t's digest as their subject.
func verifiedProvenance(ctx context.Context, reg *registry.Client, t imageTarget, pub crypto.PublicKey) ([]*provenance.Info, error) {
	var st store.Store
	var err error
	if t.layout != "" {
		var l *store.Layout
		if l, err = store.OpenLayout(ctx, t.layout); err == nil {
			_, err = l.Resolve(ctx, t.digest.String())
		}
		st = l
	} else {
		st, err = store.NewRegistry(reg, t.repo)
	}
	if err != nil {
		return nil, err
	}
	atts, err := sign.FetchAttestations(ctx, st, t.digest)
	if err != nil {
		return nil, err
	}
	var out []*provenance.Info
	var reasons []string
	seen := map[string]bool{}
	for _, at := range atts {
		pt, payload, err := sign.VerifyDSSE(pub, at.Envelope)
		if err != nil {
			reasons = append(reasons, err.Error())
			continue
		}
		// The one attestation reader, as vmbuild verify reads them (cosign
		// v2's in-toto v0.1 statements too).
		rd, err := provenance.Read(pt, payload, t.digest)
		if err != nil {
			reasons = append(reasons, err.Error())
			continue
		}
		if seen[string(payload)] {
			continue // the same statement in both formats
		}
		seen[string(payload)] = true
		out = append(out, rd.Info)
	}
	if len(out) == 0 {
		if len(reasons) == 0 {
			reasons = append(reasons, "no attestations found")
		}
		sort.Strings(reasons)
		return nil, &errs.VerificationError{Check: "provenance", Reason: fmt.Sprintf("no verified SLSA provenance for %s: %s", t, strings.Join(reasons, "; "))}
	}
	return out, nil
}

func printProvenance(a *app, t imageTarget, in *provenance.Info) {
	w := a.stdout
	fmt.Fprintf(w, "image:      %s (verified)\n", t)
	fmt.Fprintf(w, "recipe:     %s (%s, sha256 %s)\n", in.Recipe.Name, in.Recipe.Path, in.Recipe.SHA256)
	fmt.Fprintf(w, "upstream:   %s @ %s\n", in.Upstream.URL, in.Upstream.Ref)
	fmt.Fprintf(w, "commit:     %s", in.Upstream.Commit)
	if !in.Upstream.CommitTime.IsZero() {
		fmt.Fprintf(w, " (%s)", in.Upstream.CommitTime.Format(time.RFC3339))
	}
	fmt.Fprintln(w)
	if len(in.Patches) == 0 {
		fmt.Fprintln(w, "patches:    none")
	} else {
		fmt.Fprintln(w, "patches:")
		for i, p := range in.Patches {
			fmt.Fprintf(w, "  %d. %s (%s) sha256:%s%s\n", i+1, p.Name, p.Kind, p.SHA256, patchApplication(p))
		}
	}
	switch {
	case in.Dockerfile != nil:
		fmt.Fprintf(w, "build:      dockerfile %s", in.Dockerfile.Path)
		if in.Dockerfile.Target != "" {
			fmt.Fprintf(w, " target %s", in.Dockerfile.Target)
		}
		fmt.Fprintln(w)
	case in.Native != nil:
		fmt.Fprintf(w, "build:      native layers %s\n", strings.Join(in.Native.Layers, ", "))
	}
	if in.Base.Ref != "" {
		fmt.Fprintf(w, "base:       %s@%s\n", in.Base.Ref, in.Base.Digest)
	}
	if in.Frontend != nil {
		fmt.Fprintf(w, "frontend:   %s@%s\n", in.Frontend.Ref, in.Frontend.Digest)
	}
	for _, im := range in.Images {
		fmt.Fprintf(w, "image dep:  %s@%s\n", im.Ref, im.Digest)
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
			fmt.Fprintf(w, "  - %s\n", a)
		}
	}
	fmt.Fprintf(w, "builder:    %s (BuildKit %s)\n", in.BuilderID, in.BuildKitVersion)
	if !in.StartedOn.IsZero() {
		fmt.Fprintf(w, "built:      %s → %s (%s)\n", in.StartedOn.Format(time.RFC3339), in.FinishedOn.Format(time.RFC3339), in.FinishedOn.Sub(in.StartedOn).Round(time.Millisecond))
	}
	fmt.Fprintf(w, "invocation: %s\n\n", in.InvocationID)
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
