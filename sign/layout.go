package sign

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/registry"
)

// index.json "kind" annotations of cosign's OCI layout (pkg/oci/layout).
const (
	KindAnnotation  = "kind"
	KindImage       = "dev.cosignproject.cosign/image"
	KindImageIndex  = "dev.cosignproject.cosign/imageIndex"
	KindSignatures  = "dev.cosignproject.cosign/sigs"
	KindAttestation = "dev.cosignproject.cosign/atts"
)

// maxScannedBlobs bounds how many blob files a layout scan for referrers
// looks at.
const maxScannedBlobs = 100000

// ociLayout is an OCI image layout directory.
//
// Blobs are written directly (temporary file, then rename) rather than
// through containerd's local content store: that store probes fs-verity by
// writing into the directory and logs a warning through containerd's
// global logger on file systems without it, which a library must not do.
type ociLayout struct {
	dir string
	lim Limits
	idx ocispec.Index
}

func openLayout(dir string, lim Limits) (*ociLayout, error) {
	b, err := registry.ReadFileLimited(filepath.Join(dir, ocispec.ImageLayoutFile), 1<<10, "oci-layout")
	if err != nil {
		return nil, fmt.Errorf("reading OCI layout %s: %w", dir, err)
	}
	var lf ocispec.ImageLayout
	if err := json.Unmarshal(b, &lf); err != nil || lf.Version == "" {
		return nil, fmt.Errorf("reading OCI layout %s: %s is not an oci-layout file", dir, ocispec.ImageLayoutFile)
	}
	ib, err := registry.ReadFileLimited(filepath.Join(dir, ocispec.ImageIndexFile), lim.MaxManifestBytes, "index.json")
	if err != nil {
		return nil, fmt.Errorf("reading OCI layout %s: %w", dir, err)
	}
	l := &ociLayout{dir: dir, lim: lim}
	if err := json.Unmarshal(ib, &l.idx); err != nil {
		return nil, fmt.Errorf("reading OCI layout %s: parsing index.json: %w", dir, err)
	}
	return l, nil
}

func (l *ociLayout) blobPath(d digest.Digest) string {
	return filepath.Join(l.dir, ocispec.ImageBlobsDir, string(d.Algorithm()), d.Encoded())
}

// readBlob reads a blob within limit and checks its digest.
func (l *ociLayout) readBlob(d digest.Digest, limit int64, what string) ([]byte, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	b, err := registry.ReadFileLimited(l.blobPath(d), limit, what)
	if err != nil {
		return nil, fmt.Errorf("reading blob %s: %w", d, err)
	}
	if d.Algorithm().FromBytes(b) != d {
		return nil, fmt.Errorf("blob %s does not match its digest", d)
	}
	return b, nil
}

// writeBlob writes a blob unless a file with its digest is there already.
func (l *ociLayout) writeBlob(_ context.Context, desc ocispec.Descriptor, data []byte) error {
	if desc.Digest.Algorithm().FromBytes(data) != desc.Digest || int64(len(data)) != desc.Size {
		return fmt.Errorf("writing blob %s: content does not match the descriptor", desc.Digest)
	}
	p := l.blobPath(desc.Digest)
	if st, err := os.Stat(p); err == nil && st.Size() == desc.Size {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("writing blob %s: %w", desc.Digest, err)
	}
	if err := writeFileAtomic(p, data, 0o444); err != nil {
		return fmt.Errorf("writing blob %s: %w", desc.Digest, err)
	}
	return nil
}

// writeFileAtomic writes data to a temporary file beside path, syncs it
// and renames it over path.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), mode); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func (l *ociLayout) writeIndex() error {
	b, err := json.Marshal(l.idx)
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(l.dir, ocispec.ImageIndexFile), b, 0o644)
}

// entry returns the index of the index.json entry with digest d, or -1.
func (l *ociLayout) entry(d digest.Digest) int {
	for i, m := range l.idx.Manifests {
		if m.Digest == d {
			return i
		}
	}
	return -1
}

func (l *ociLayout) entryByKind(kind string) int {
	for i, m := range l.idx.Manifests {
		if m.Annotations[KindAnnotation] == kind {
			return i
		}
	}
	return -1
}

// sigImageLayers reads the layers of the signature image at index entry i.
func (l *ociLayout) sigImageLayers(i int, what string, limit int64) ([]layer, error) {
	if i < 0 {
		return nil, nil
	}
	b, err := l.readBlob(l.idx.Manifests[i].Digest, l.lim.MaxManifestBytes, "manifest")
	if err != nil {
		return nil, err
	}
	m, err := parseManifest(b)
	if err != nil {
		return nil, err
	}
	if len(m.Layers) > l.lim.MaxEntries {
		return nil, entriesLimit(what, l.lim.MaxEntries, len(m.Layers))
	}
	out := make([]layer, 0, len(m.Layers))
	for _, d := range m.Layers {
		if d.Size > limit {
			return nil, renameLimit(&errs.LimitError{Got: fmt.Sprintf("%d bytes", d.Size)}, d.MediaType, limit)
		}
		data, err := l.readBlob(d.Digest, limit, "blob")
		if err != nil {
			return nil, renameLimit(err, d.MediaType, limit)
		}
		out = append(out, layer{desc: d, data: data})
	}
	return out, nil
}

// layoutBundle is a bundle referrer found in a layout.
type layoutBundle struct {
	manifest digest.Digest
	layer    digest.Digest
	fetchedBundle
}

// bundles finds bundle referrers of subject: index.json entries and, as
// cosign v3 does, manifests anywhere in blobs/ (bounded scan of small
// JSON files).
func (l *ociLayout) bundles(subject digest.Digest) ([]layoutBundle, error) {
	cands := map[digest.Digest]bool{}
	for _, m := range l.idx.Manifests {
		if m.ArtifactType == BundleMediaType {
			cands[m.Digest] = true
		}
	}
	dir := filepath.Join(l.dir, ocispec.ImageBlobsDir, string(digest.SHA256))
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	for i, e := range ents {
		if i >= maxScannedBlobs {
			break
		}
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() || info.Size() > l.lim.MaxManifestBytes || info.Size() < 2 {
			continue
		}
		d := digest.NewDigestFromEncoded(digest.SHA256, e.Name())
		if d.Validate() != nil || cands[d] {
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		head := make([]byte, 1)
		_, rerr := f.Read(head)
		f.Close()
		if rerr == nil && head[0] == '{' {
			cands[d] = false // to be parsed
		}
	}
	keys := make([]digest.Digest, 0, len(cands))
	for d := range cands {
		keys = append(keys, d)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	var out []layoutBundle
	for _, d := range keys {
		b, err := l.readBlob(d, l.lim.MaxManifestBytes, "manifest")
		if err != nil {
			continue
		}
		m, err := parseManifest(b)
		if err != nil || m.Subject == nil || m.Subject.Digest != subject || len(m.Layers) != 1 || m.Layers[0].MediaType != BundleMediaType {
			continue
		}
		if len(out) >= 2*l.lim.MaxEntries {
			return nil, entriesLimit("bundles", 2*l.lim.MaxEntries, len(out)+1)
		}
		if m.Layers[0].Size > l.lim.MaxAttestationBytes {
			return nil, renameLimit(&errs.LimitError{}, BundleMediaType, l.lim.MaxAttestationBytes)
		}
		data, err := l.readBlob(m.Layers[0].Digest, l.lim.MaxAttestationBytes, "attestation")
		if err != nil {
			var le *errs.LimitError
			if errors.As(err, &le) {
				return nil, renameLimit(err, BundleMediaType, l.lim.MaxAttestationBytes)
			}
			continue
		}
		fb, err := bundleContent(data)
		if err != nil {
			continue
		}
		out = append(out, layoutBundle{manifest: d, layer: m.Layers[0].Digest, fetchedBundle: *fb})
	}
	return out, nil
}

// SignLayout signs the image imageDigest in the OCI layout dir (written
// by BuildKit's oci exporter: index.json already lists the image) and, when
// statement is not nil, attests it, in the layout format cosign reads with
// `cosign verify --local-image` and `cosign verify-attestation
// --local-image`:
//
//   - legacy: the image's index.json entry is annotated kind
//     dev.cosignproject.cosign/image (or imageIndex), and the signature and
//     attestation images are added as entries of kind .../sigs and .../atts;
//   - bundle: referrer manifests with a Sigstore bundle, subject the image,
//     added to index.json with their artifactType (cosign v3 finds them by
//     their subject).
//
// It is idempotent like Publisher: the same signature is not added twice,
// an attestation of the same predicate type by the same key is replaced,
// and blobs only the replaced artifacts used are deleted. Options:
// WithFormats, WithClock, WithLogger. Concurrent writers to one layout are
// not supported.
func SignLayout(ctx context.Context, dir string, imageDigest digest.Digest, s *Signer, statement []byte, opts ...PublisherOption) (Result, error) {
	p := NewPublisher(nil, opts...)
	res := Result{Subject: imageDigest}
	var si *statementInfo
	if statement != nil {
		var err error
		if si, err = parseStatement(statement); err != nil {
			return res, fmt.Errorf("signing layout %s: %w", dir, err)
		}
		if !si.covers(imageDigest) {
			return res, fmt.Errorf("signing layout %s: the statement's subject does not name %s: %w", dir, imageDigest, errs.ErrUsage)
		}
	}
	l, err := openLayout(dir, p.limits)
	if err != nil {
		return res, err
	}
	i := l.entry(imageDigest)
	if i < 0 {
		return res, fmt.Errorf("signing layout %s: image %s is not in index.json", dir, imageDigest)
	}
	subject := l.idx.Manifests[i]
	kind := KindImage
	if images.IsIndexType(subject.MediaType) {
		kind = KindImageIndex
	}
	for j, m := range l.idx.Manifests {
		if j != i && m.Digest != imageDigest && (m.Annotations[KindAnnotation] == KindImage || m.Annotations[KindAnnotation] == KindImageIndex) {
			return res, fmt.Errorf("signing layout %s: index.json already marks %s as the signed image", dir, m.Digest)
		}
	}
	if subject.Annotations == nil {
		subject.Annotations = map[string]string{}
	}
	subject.Annotations[KindAnnotation] = kind
	l.idx.Manifests[i] = subject

	candidates := map[digest.Digest]bool{} // blobs that may have become garbage
	loc := func(what string) string { return filepath.Join(dir, what) }

	if p.formats&FormatLegacy != 0 {
		a, err := l.signLegacy(ctx, s, subject.Digest, layoutIdentity(p.identity, subject), candidates)
		if err != nil {
			return res, fmt.Errorf("signing layout %s: %w", dir, err)
		}
		a.Location = loc(ocispec.ImageIndexFile)
		res.Artifacts = append(res.Artifacts, a)
		if si != nil {
			a, err := l.attestLegacy(ctx, s, si.PredicateType, statement, candidates)
			if err != nil {
				return res, fmt.Errorf("attesting in layout %s: %w", dir, err)
			}
			a.Location = loc(ocispec.ImageIndexFile)
			res.Artifacts = append(res.Artifacts, a)
		}
	}
	if p.formats&FormatBundle != 0 {
		st, err := signStatement(subject.Digest)
		if err != nil {
			return res, err
		}
		a, err := l.publishBundle(ctx, p, s, subject, "signature", CosignSignPredicateType, st, candidates)
		if err != nil {
			return res, fmt.Errorf("signing layout %s: %w", dir, err)
		}
		res.Artifacts = append(res.Artifacts, a)
		if si != nil {
			a, err := l.publishBundle(ctx, p, s, subject, "attestation", si.PredicateType, statement, candidates)
			if err != nil {
				return res, fmt.Errorf("attesting in layout %s: %w", dir, err)
			}
			res.Artifacts = append(res.Artifacts, a)
		}
	}
	if err := l.writeIndex(); err != nil {
		return res, fmt.Errorf("writing %s: %w", filepath.Join(dir, ocispec.ImageIndexFile), err)
	}
	if err := l.collect(ctx, candidates, p.log); err != nil {
		return res, fmt.Errorf("removing replaced blobs in %s: %w", dir, err)
	}
	return res, nil
}

// layoutIdentity is the docker-reference a layout signature claims: the
// WithIdentity option, else the image name BuildKit's exporter recorded
// (io.containerd.image.name or a full org.opencontainers.image.ref.name),
// else empty (`cosign verify` checks only the digest).
func layoutIdentity(opt string, subject ocispec.Descriptor) string {
	if opt != "" {
		return opt
	}
	for _, k := range []string{images.AnnotationImageName, ocispec.AnnotationRefName} {
		if v := subject.Annotations[k]; v != "" {
			named, err := reference.ParseNormalizedNamed(v)
			if err != nil {
				continue
			}
			if r, err := DockerReference(reference.TrimNamed(named).String()); err == nil {
				return r
			}
		}
	}
	return ""
}

// putSigImage writes a signature image and points the kind entry at it.
func (l *ociLayout) putSigImage(ctx context.Context, kind string, layers []layer, candidates map[digest.Digest]bool) (digest.Digest, error) {
	descs := make([]ocispec.Descriptor, 0, len(layers))
	for _, ly := range layers {
		if err := l.writeBlob(ctx, ly.desc, ly.data); err != nil {
			return "", err
		}
		descs = append(descs, ly.desc)
	}
	cfg, man, err := sigImage(descs)
	if err != nil {
		return "", err
	}
	if err := l.writeBlob(ctx, ocispec.Descriptor{MediaType: SignatureConfigType, Digest: digest.FromBytes(cfg), Size: int64(len(cfg))}, cfg); err != nil {
		return "", err
	}
	md := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(man), Size: int64(len(man))}
	if err := l.writeBlob(ctx, md, man); err != nil {
		return "", err
	}
	md.Annotations = map[string]string{KindAnnotation: kind}
	if i := l.entryByKind(kind); i >= 0 {
		l.markOld(l.idx.Manifests[i].Digest, candidates)
		l.idx.Manifests[i] = md
	} else {
		l.idx.Manifests = append(l.idx.Manifests, md)
	}
	return md.Digest, nil
}

// markOld adds a manifest, its config and layers to the garbage candidates.
func (l *ociLayout) markOld(d digest.Digest, candidates map[digest.Digest]bool) {
	candidates[d] = true
	b, err := l.readBlob(d, l.lim.MaxManifestBytes, "manifest")
	if err != nil {
		return
	}
	m, err := parseManifest(b)
	if err != nil {
		return
	}
	candidates[m.Config.Digest] = true
	for _, ly := range m.Layers {
		candidates[ly.Digest] = true
	}
}

func (l *ociLayout) signLegacy(ctx context.Context, s *Signer, d digest.Digest, identity string, candidates map[digest.Digest]bool) (Artifact, error) {
	i := l.entryByKind(KindSignatures)
	existing, err := l.sigImageLayers(i, "signatures", l.lim.MaxSignatureBytes)
	if err != nil {
		return Artifact{}, err
	}
	payload, err := SimpleSigningPayload(identity, d)
	if err != nil {
		return Artifact{}, err
	}
	if dupLayoutSignature(existing, s.Public(), d) {
		return Artifact{Kind: "signature", Format: FormatLegacy, Action: Unchanged, Digest: l.idx.Manifests[i].Digest}, nil
	}
	sig, err := s.Sign(payload)
	if err != nil {
		return Artifact{}, err
	}
	md, err := l.putSigImage(ctx, KindSignatures, append(existing, simpleSigningLayer(payload, sig)), candidates)
	if err != nil {
		return Artifact{}, err
	}
	return Artifact{Kind: "signature", Format: FormatLegacy, Action: Added, Digest: md}, nil
}

// dupLayoutSignature reports whether a signature by pub for d is there
// (whatever docker-reference it claims).
func dupLayoutSignature(layers []layer, pub any, d digest.Digest) bool {
	for _, ly := range layers {
		if ly.desc.MediaType != SimpleSigningMediaType {
			continue
		}
		sig, err := b64(ly.desc.Annotations[SignatureAnnotation])
		if err != nil {
			continue
		}
		if _, err := VerifySimpleSigning(pub, ly.data, sig, d); err == nil {
			return true
		}
	}
	return false
}

func (l *ociLayout) attestLegacy(ctx context.Context, s *Signer, predicateType string, statement []byte, candidates map[digest.Digest]bool) (Artifact, error) {
	i := l.entryByKind(KindAttestation)
	existing, err := l.sigImageLayers(i, "attestations", l.lim.MaxAttestationBytes)
	if err != nil {
		return Artifact{}, err
	}
	kept, replaced, unchanged := replaceAttestation(existing, s.Public(), predicateType, statement)
	if unchanged && !replaced {
		return Artifact{Kind: "attestation", Format: FormatLegacy, Action: Unchanged, Digest: l.idx.Manifests[i].Digest}, nil
	}
	if unchanged {
		kept = dedupeStatement(kept, s.Public(), predicateType, statement)
	} else {
		env, err := SignDSSE(s, InTotoPayloadType, statement)
		if err != nil {
			return Artifact{}, err
		}
		kept = append(kept, attestationLayer(env, predicateType))
	}
	md, err := l.putSigImage(ctx, KindAttestation, kept, candidates)
	if err != nil {
		return Artifact{}, err
	}
	action := Added
	if replaced {
		action = Replaced
	}
	return Artifact{Kind: "attestation", Format: FormatLegacy, Action: action, Digest: md}, nil
}

func (l *ociLayout) publishBundle(ctx context.Context, p *Publisher, s *Signer, subject ocispec.Descriptor, kind, predicateType string, statement []byte, candidates map[digest.Digest]bool) (Artifact, error) {
	found, err := l.bundles(subject.Digest)
	if err != nil {
		return Artifact{}, err
	}
	var keep digest.Digest
	var stale []layoutBundle
	for _, b := range found {
		if b.predicateType != predicateType {
			continue
		}
		_, payload, err := VerifyDSSE(s.Public(), b.envelope)
		if err != nil {
			continue
		}
		if keep == "" && bytes.Equal(payload, statement) {
			keep = b.manifest
			continue
		}
		stale = append(stale, b)
	}
	action := Added
	if keep != "" {
		action = Unchanged
		if l.entry(keep) < 0 {
			// Found by the scan only: list it.
			st, err := os.Stat(l.blobPath(keep))
			if err != nil {
				return Artifact{}, err
			}
			l.idx.Manifests = append(l.idx.Manifests, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: BundleMediaType, Digest: keep, Size: st.Size()})
		}
	} else {
		bundle, err := NewBundle(s, InTotoPayloadType, statement)
		if err != nil {
			return Artifact{}, err
		}
		man, layerDesc, err := bundleReferrer(subject, bundle, predicateType, p.now())
		if err != nil {
			return Artifact{}, err
		}
		if err := l.writeBlob(ctx, layerDesc, bundle); err != nil {
			return Artifact{}, err
		}
		if err := l.writeBlob(ctx, ocispec.Descriptor{MediaType: EmptyConfigMediaType, Digest: digest.FromBytes(emptyJSON), Size: 2}, emptyJSON); err != nil {
			return Artifact{}, err
		}
		md := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: BundleMediaType, Digest: digest.FromBytes(man), Size: int64(len(man))}
		if err := l.writeBlob(ctx, md, man); err != nil {
			return Artifact{}, err
		}
		l.idx.Manifests = append(l.idx.Manifests, md)
		keep = md.Digest
	}
	for _, b := range stale {
		if j := l.entry(b.manifest); j >= 0 {
			l.idx.Manifests = append(l.idx.Manifests[:j], l.idx.Manifests[j+1:]...)
		}
		candidates[b.manifest] = true
		candidates[b.layer] = true
		action = Replaced
	}
	return Artifact{Kind: kind, Format: FormatBundle, Action: action, Location: l.blobPath(keep), Digest: keep}, nil
}

// collect deletes the candidate blobs that nothing in index.json reaches
// any more.
func (l *ociLayout) collect(ctx context.Context, candidates map[digest.Digest]bool, log *slog.Logger) error {
	if len(candidates) == 0 {
		return nil
	}
	reach := map[digest.Digest]bool{}
	var walk func(d ocispec.Descriptor, depth int)
	walk = func(d ocispec.Descriptor, depth int) {
		if reach[d.Digest] || depth > 8 {
			return
		}
		reach[d.Digest] = true
		if !images.IsManifestType(d.MediaType) && !images.IsIndexType(d.MediaType) {
			return
		}
		b, err := l.readBlob(d.Digest, l.lim.MaxManifestBytes, "manifest")
		if err != nil {
			return
		}
		var m struct {
			Config    *ocispec.Descriptor  `json:"config"`
			Layers    []ocispec.Descriptor `json:"layers"`
			Manifests []ocispec.Descriptor `json:"manifests"`
		}
		if json.Unmarshal(b, &m) != nil {
			return
		}
		if m.Config != nil {
			reach[m.Config.Digest] = true
		}
		for _, ly := range m.Layers {
			reach[ly.Digest] = true
		}
		for _, c := range m.Manifests {
			walk(c, depth+1)
		}
	}
	for _, m := range l.idx.Manifests {
		walk(m, 0)
	}
	for d := range candidates {
		if reach[d] || d.Validate() != nil {
			continue
		}
		if err := os.Remove(l.blobPath(d)); err != nil && !errors.Is(err, os.ErrNotExist) {
			log.Debug("cannot delete replaced blob", "digest", d, "err", err)
		}
	}
	return nil
}

// FetchLayoutSignatures reads the signatures of image d from the OCI layout
// dir: the cosign sigs image and bundle referrers, within DefaultLimits.
// Nothing is verified.
func FetchLayoutSignatures(ctx context.Context, dir string, d digest.Digest) ([]Signature, error) {
	a, err := layoutAttached(dir, d, true, false)
	if err != nil {
		return nil, err
	}
	return a.sigs, nil
}

// FetchLayoutAttestations reads the attestations (DSSE envelopes) of
// image d from the OCI layout dir, within DefaultLimits. Nothing is
// verified.
func FetchLayoutAttestations(ctx context.Context, dir string, d digest.Digest) ([]Attestation, error) {
	a, err := layoutAttached(dir, d, false, true)
	if err != nil {
		return nil, err
	}
	return a.atts, nil
}

func layoutAttached(dir string, d digest.Digest, wantSigs, wantAtts bool) (*attached, error) {
	lim := DefaultLimits()
	l, err := openLayout(dir, lim)
	if err != nil {
		return nil, err
	}
	if l.entry(d) < 0 {
		return nil, fmt.Errorf("reading layout %s: image %s is not in index.json: %w", dir, d, errs.ErrNotFound)
	}
	out := &attached{}
	if wantSigs {
		layers, err := l.sigImageLayers(l.entryByKind(KindSignatures), "signatures", lim.MaxSignatureBytes)
		if err != nil {
			return nil, fmt.Errorf("reading signatures in %s: %w", dir, err)
		}
		for i, ly := range layers {
			if ly.desc.MediaType != SimpleSigningMediaType {
				continue
			}
			sig, err := b64(ly.desc.Annotations[SignatureAnnotation])
			if err != nil {
				continue
			}
			out.sigs = append(out.sigs, Signature{Format: FormatLegacy, Payload: ly.data, Signature: sig, Source: fmt.Sprintf("%s sigs layer %d", dir, i)})
		}
	}
	if wantAtts {
		layers, err := l.sigImageLayers(l.entryByKind(KindAttestation), "attestations", lim.MaxAttestationBytes)
		if err != nil {
			return nil, fmt.Errorf("reading attestations in %s: %w", dir, err)
		}
		for i, ly := range layers {
			if ly.desc.MediaType != DSSEMediaType {
				continue
			}
			out.atts = append(out.atts, Attestation{Format: FormatLegacy, Envelope: ly.data, PredicateType: ly.desc.Annotations[PredicateTypeAnnotation], Source: fmt.Sprintf("%s atts layer %d", dir, i)})
		}
	}
	bs, err := l.bundles(d)
	if err != nil {
		return nil, fmt.Errorf("reading bundles in %s: %w", dir, err)
	}
	for _, b := range bs {
		src := l.blobPath(b.manifest)
		if b.predicateType == CosignSignPredicateType {
			if wantSigs {
				out.sigs = append(out.sigs, Signature{Format: FormatBundle, Envelope: b.envelope, Source: src})
			}
		} else if wantAtts {
			out.atts = append(out.atts, Attestation{Format: FormatBundle, Envelope: b.envelope, PredicateType: b.predicateType, Source: src})
		}
	}
	if len(out.sigs) > lim.MaxEntries {
		return nil, entriesLimit("signatures", lim.MaxEntries, len(out.sigs))
	}
	if len(out.atts) > lim.MaxEntries {
		return nil, entriesLimit("attestations", lim.MaxEntries, len(out.atts))
	}
	return out, nil
}
