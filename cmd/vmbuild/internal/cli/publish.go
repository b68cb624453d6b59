package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/vmbuild/vmbuild/build"
	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/lock"
	"github.com/vmbuild/vmbuild/publish"
	"github.com/vmbuild/vmbuild/recipe"
	"github.com/vmbuild/vmbuild/sign"
	"github.com/vmbuild/vmbuild/store"
)

type signFlags struct {
	key       string
	noSign    bool
	builderID string
	format    string
}

func (s *signFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&s.key, "key", "", "cosign private key to sign the image and its provenance (password from $COSIGN_PASSWORD or a prompt)")
	fs.BoolVar(&s.noSign, "no-sign", false, "push without signature or provenance (not recommended)")
	fs.StringVar(&s.builderID, "builder-id", "", "builder.id recorded in the provenance (default "+defaultBuilderID+")")
	fs.StringVar(&s.format, "signature-format", "legacy", "where signatures go: legacy (cosign's .sig/.att tags, which cosign v2 and v3 verify offline with --key alone), bundle (OCI 1.1 referrers with Sigstore bundles; cosign v2 then needs --trusted-root), all (both)")
}

const defaultBuilderID = "https://github.com/vmbuild/vmbuild/builders/local@v1"

// validate checks the signing flags, for a push when push, and returns
// the signature formats.
func (s *signFlags) validate(push bool) (sign.Format, error) {
	if push && s.key == "" && !s.noSign {
		return 0, fmt.Errorf("%w: --push publishes a signed image: give --key cosign.key (make one with `vmbuild keygen`), or --no-sign", errs.ErrUsage)
	}
	if s.key != "" && s.noSign {
		return 0, fmt.Errorf("%w: --key and --no-sign contradict each other", errs.ErrUsage)
	}
	return s.formats()
}

func (s *signFlags) formats() (sign.Format, error) {
	switch s.format {
	case "legacy", "":
		return sign.FormatLegacy, nil
	case "all":
		return sign.FormatAll, nil
	case "bundle":
		return sign.FormatBundle, nil
	}
	return 0, fmt.Errorf("%w: --signature-format must be all, legacy or bundle, not %q", errs.ErrUsage, s.format)
}

// password reads the key password from COSIGN_PASSWORD (as cosign does), or
// prompts on the terminal.
func (a *app) password(confirm bool) ([]byte, error) {
	if pw, ok := os.LookupEnv("COSIGN_PASSWORD"); ok {
		return []byte(pw), nil
	}
	f, ok := a.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, fmt.Errorf("%w: no password: set COSIGN_PASSWORD (it may be empty) or run on a terminal", errs.ErrKey)
	}
	fmt.Fprint(a.stderr, "Enter password for private key: ")
	pw, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(a.stderr)
	if err != nil {
		return nil, fmt.Errorf("reading password: %w", err)
	}
	if confirm {
		fmt.Fprint(a.stderr, "Enter password for private key again: ")
		pw2, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(a.stderr)
		if err != nil {
			return nil, fmt.Errorf("reading password: %w", err)
		}
		if string(pw) != string(pw2) {
			return nil, fmt.Errorf("%w: the passwords differ", errs.ErrKey)
		}
	}
	return pw, nil
}

func (a *app) loadSigner(path string) (*sign.Signer, error) {
	return a.loadSignerAsync(path).Load()
}

// loadSignerAsync reads the key file and the password now (so a missing
// file or password fails before building) and hands decryption to
// sign.LoadKeyAsync. The key stays in this process: BuildKit never sees
// it.
func (a *app) loadSignerAsync(path string) *sign.PendingKey {
	b, err := os.ReadFile(path)
	if err != nil {
		return sign.FailedKey(fmt.Errorf("reading signing key: %w: %w", errs.ErrKey, err))
	}
	pw, err := a.password(false)
	if err != nil {
		return sign.FailedKey(err)
	}
	return sign.LoadKeyAsync(path, b, pw, keyCacheDir(), a.log.Debug)
}

func keyCacheDir() string { return filepath.Join(cacheDir(), "keys") }

// publishReport says what was published, for the metadata file.
type publishReport struct {
	Image     string          `json:"image"`
	Signed    bool            `json:"signed"`
	Attested  bool            `json:"attested"`
	SBOM      bool            `json:"sbom,omitempty"`
	Tags      []string        `json:"tags,omitempty"`
	Artifacts []sign.Artifact `json:"artifacts,omitempty"`
}

// publish signs, attests and tags the image, pushed to st (nil for an
// OCI layout: then the image is signed in the layout ociDir when a key is
// given). The signing key is read here, after the build: it never
// reaches BuildKit.
func (j *buildJob) publish(ctx context.Context, a *app, st store.Store, ociDir string, r *recipe.Recipe, l *lock.Lock, res *build.Result, signer *sign.PendingKey) (*publishReport, error) {
	rep := &publishReport{Image: res.Digest.String()}
	if st != nil {
		rep.Image = st.String() + "@" + res.Digest.String()
	}
	if j.sign.key == "" && !j.sign.noSign {
		return rep, nil // an unsigned OCI layout
	}
	var err error
	if st == nil {
		if st, err = store.OpenLayout(ctx, ociDir, store.WithLayoutLogger(a.log)); err != nil {
			return rep, err
		}
	}
	opts := publish.Options{BuilderID: j.sign.builderID, Formats: j.formats, Logger: a.log}
	if !j.sign.noSign {
		if signer == nil {
			signer = a.loadSignerAsync(j.sign.key)
		}
		opts.LoadSigner, opts.PublicKey = signer.Load, signer.Public
	}
	var tags []string
	if j.out.repo != "" {
		tags = []string{j.out.tag}
	}
	pr, err := publish.New(opts).Publish(ctx, st, tags, r, l, res)
	if err == nil && j.out.repo == "" {
		a.log.Info("signed and attested in the OCI layout", "dir", ociDir)
	}
	if pr != nil {
		rep.Signed = len(pr.Signature.Artifacts) > 0
		rep.Attested = len(pr.Attestation.Artifacts) > 0
		rep.Tags = pr.Tags
		rep.Artifacts = append(append(rep.Artifacts, pr.Signature.Artifacts...), pr.Attestation.Artifacts...)
		if pr.SBOM != nil {
			rep.SBOM = len(pr.SBOM.Artifacts) > 0
			rep.Artifacts = append(rep.Artifacts, pr.SBOM.Artifacts...)
		}
	}
	return rep, err
}

func writeFileNew(path string, data []byte, mode os.FileMode, force bool) error {
	flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if !force {
		flags |= os.O_EXCL
	}
	f, err := os.OpenFile(path, flags, mode)
	if err != nil {
		if os.IsExist(err) {
			return fmt.Errorf("%w: %s exists (use --force to overwrite)", errs.ErrUsage, path)
		}
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
