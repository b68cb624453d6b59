package sign

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/errs"
)

// Format is a publication format.
type Format uint8

const (
	// FormatLegacy is cosign's tag scheme (.sig and .att tags).
	FormatLegacy Format = 1 << iota
	// FormatBundle is a Sigstore bundle v0.3 in an OCI 1.1 referrer.
	FormatBundle
	// FormatAll is both.
	FormatAll = FormatLegacy | FormatBundle
	// FormatDefault is what is published when no format is chosen:
	// cosign's tag scheme, which the standard offline key-based commands
	// of both cosign v2 and v3 verify (`cosign verify --key K
	// --insecure-ignore-tlog IMAGE`). With a bundle referrer present,
	// cosign v2.6 takes the bundle path and then needs a Sigstore trusted
	// root, so FormatAll and FormatBundle are opt-in.
	FormatDefault = FormatLegacy
)

func (f Format) String() string {
	switch f {
	case FormatLegacy:
		return "legacy"
	case FormatBundle:
		return "bundle"
	case FormatAll:
		return "legacy+bundle"
	}
	return fmt.Sprintf("Format(%d)", uint8(f))
}

// Limits bound what is read back from a registry or layout.
type Limits struct {
	MaxEntries          int   // signatures, and attestations, per image; default 100
	MaxAttestationBytes int64 // an attestation or bundle blob; default 16 MiB
	MaxSignatureBytes   int64 // a simple-signing payload blob; default 1 MiB
	MaxManifestBytes    int64 // a manifest or index.json; default 4 MiB
}

// DefaultLimits returns the limits used by this package.
func DefaultLimits() Limits {
	return Limits{MaxEntries: 100, MaxAttestationBytes: 16 << 20, MaxSignatureBytes: 1 << 20, MaxManifestBytes: 4 << 20}
}

func entriesLimit(what string, max, got int) error {
	return &errs.LimitError{Limit: fmt.Sprintf("%s per image (%d)", what, max), Got: fmt.Sprint(got)}
}

// layer is a signature or attestation layer with its content.
type layer struct {
	desc ocispec.Descriptor
	data []byte
}

func simpleSigningLayer(payload, sig []byte) layer {
	return layer{
		desc: ocispec.Descriptor{
			MediaType:   SimpleSigningMediaType,
			Digest:      digest.FromBytes(payload),
			Size:        int64(len(payload)),
			Annotations: map[string]string{SignatureAnnotation: base64.StdEncoding.EncodeToString(sig)},
		},
		data: payload,
	}
}

func attestationLayer(envelope []byte, predicateType string) layer {
	return layer{
		desc: ocispec.Descriptor{
			MediaType:   DSSEMediaType,
			Digest:      digest.FromBytes(envelope),
			Size:        int64(len(envelope)),
			Annotations: map[string]string{PredicateTypeAnnotation: predicateType, SignatureAnnotation: ""},
		},
		data: envelope,
	}
}

// sigConfig is the image config cosign (go-containerregistry's
// empty.Image + mutate.Append) writes for .sig and .att images; fields in
// its order.
type sigConfig struct {
	Architecture string       `json:"architecture"`
	Created      string       `json:"created"`
	History      []sigHistory `json:"history,omitempty"`
	OS           string       `json:"os"`
	RootFS       sigRootFS    `json:"rootfs"`
	Config       struct{}     `json:"config"`
}

type sigHistory struct {
	Created string `json:"created"`
}

type sigRootFS struct {
	Type    string   `json:"type"`
	DiffIDs []string `json:"diff_ids"`
}

const zeroTime = "0001-01-01T00:00:00Z"

// sigImage builds the config and manifest of a cosign signature or
// attestation image with the given layers (uncompressed, so diff id =
// digest).
func sigImage(layers []ocispec.Descriptor) (config, manifest []byte, err error) {
	cfg := sigConfig{Created: zeroTime, RootFS: sigRootFS{Type: "layers", DiffIDs: []string{}}}
	for _, l := range layers {
		cfg.History = append(cfg.History, sigHistory{Created: zeroTime})
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.Digest.String())
	}
	config, err = json.Marshal(cfg)
	if err != nil {
		return nil, nil, err
	}
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.Descriptor{MediaType: SignatureConfigType, Digest: digest.FromBytes(config), Size: int64(len(config))},
		Layers:    layers,
	}
	if m.Layers == nil {
		m.Layers = []ocispec.Descriptor{}
	}
	manifest, err = json.Marshal(m)
	return config, manifest, err
}

var emptyJSON = []byte("{}")

// bundleReferrer builds the referrer manifest cosign v3 writes for a
// bundle (WriteAttestationNewBundleFormat): empty config carrying the
// artifact type, one bundle layer, subject, and annotations.
func bundleReferrer(subject ocispec.Descriptor, bundle []byte, predicateType string, created time.Time) ([]byte, ocispec.Descriptor, error) {
	layerDesc := ocispec.Descriptor{MediaType: BundleMediaType, Digest: digest.FromBytes(bundle), Size: int64(len(bundle))}
	m := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: BundleMediaType,
		Config: ocispec.Descriptor{
			MediaType:    EmptyConfigMediaType,
			ArtifactType: BundleMediaType,
			Digest:       digest.FromBytes(emptyJSON),
			Size:         int64(len(emptyJSON)),
		},
		Layers:  []ocispec.Descriptor{layerDesc},
		Subject: &ocispec.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size},
		Annotations: map[string]string{
			CreatedAnnotation:             created.UTC().Format(time.RFC3339),
			BundleContentAnnotation:       "dsse-envelope",
			BundlePredicateTypeAnnotation: predicateType,
		},
	}
	b, err := json.Marshal(m)
	return b, layerDesc, err
}

// parseManifest parses an image manifest.
func parseManifest(b []byte) (*ocispec.Manifest, error) {
	var m ocispec.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("parsing manifest: %w", err)
	}
	if m.SchemaVersion != 2 {
		return nil, fmt.Errorf("parsing manifest: schemaVersion %d", m.SchemaVersion)
	}
	for i, l := range m.Layers {
		if err := l.Digest.Validate(); err != nil {
			return nil, fmt.Errorf("parsing manifest: layers[%d]: %w", i, err)
		}
		if l.Size < 0 {
			return nil, fmt.Errorf("parsing manifest: layers[%d]: negative size", i)
		}
	}
	return &m, nil
}
