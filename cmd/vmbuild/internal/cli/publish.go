package cli

import (
	"context"
	"fmt"

	"github.com/spf13/pflag"

	"github.com/vmbuild/vmbuild/build"
	"github.com/vmbuild/vmbuild/errs"
)

type signFlags struct {
	key       string
	noSign    bool
	builderID string
}

func (s *signFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&s.key, "key", "", "cosign private key to sign the image and its provenance (password from $COSIGN_PASSWORD or a prompt)")
	fs.BoolVar(&s.noSign, "no-sign", false, "push without signature or provenance (not recommended)")
	fs.StringVar(&s.builderID, "builder-id", "", "builder.id recorded in the provenance (default: see docs/buildtype-v1.md)")
}

func (s *signFlags) requireForPush() error {
	if s.key == "" && !s.noSign {
		return fmt.Errorf("%w: --push publishes a signed image: give --key cosign.key (make one with `vmbuild keygen`), or --no-sign", errs.ErrUsage)
	}
	return nil
}

func (s *signFlags) validate() error {
	if s.key != "" && s.noSign {
		return fmt.Errorf("%w: --key and --no-sign contradict each other", errs.ErrUsage)
	}
	return nil
}

// publishReport says what was published, for the metadata file.
type publishReport struct {
	Image       string   `json:"image"`
	Signed      bool     `json:"signed"`
	Attested    bool     `json:"attested"`
	Tags        []string `json:"tags,omitempty"`
	Signature   []string `json:"signatures,omitempty"`
	Attestation []string `json:"attestations,omitempty"`
}

func (a *app) publish(ctx context.Context, p *buildPlan, res *build.Result, s *signFlags) (*publishReport, error) {
	rep := &publishReport{Image: res.Digest.String()}
	if p.repo == "" {
		return rep, nil
	}
	rep.Image = p.repo + "@" + res.Digest.String()
	for _, t := range p.tags {
		if err := p.reg.Tag(ctx, p.repo, res.Digest, t); err != nil {
			return rep, fmt.Errorf("moving tag %s:%s: %w", p.repo, t, err)
		}
		rep.Tags = append(rep.Tags, p.repo+":"+t)
	}
	return rep, nil
}
