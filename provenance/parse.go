package provenance

import (
	"fmt"
	"slices"
	"time"

	slsa "github.com/in-toto/attestation/go/predicates/provenance/v1"
	intoto "github.com/in-toto/attestation/go/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/internal/redact"
)

// MaxStatementBytes bounds the statement Parse accepts.
const MaxStatementBytes = 16 << 20

// Parse reads a statement written by [New] back into an Info, strictly:
// the statement type, predicate type and build type must be vmbuild's;
// unknown fields anywhere in the statement, unknown keys in
// externalParameters and internalParameters, missing fields, and
// resolvedDependencies that disagree with externalParameters are errors.
// Every refusal is an *errs.VerificationError (check "provenance") naming
// the field.
func Parse(data []byte) (*Info, error) {
	info, err := parse(data)
	if err != nil {
		return nil, &errs.VerificationError{Check: "provenance", Reason: err.Error()}
	}
	return info, nil
}

func parse(data []byte) (*Info, error) {
	if len(data) > MaxStatementBytes {
		return nil, fmt.Errorf("statement is %d bytes, more than %d", len(data), MaxStatementBytes)
	}
	var st intoto.Statement
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("parsing statement: %v", err)
	}
	if st.GetType() != intoto.StatementTypeUri {
		return nil, fmt.Errorf("_type is %q, want %q", st.GetType(), intoto.StatementTypeUri)
	}
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("statement: %v", err)
	}
	if st.GetPredicateType() != PredicateType {
		return nil, fmt.Errorf("predicateType is %q, want %q", st.GetPredicateType(), PredicateType)
	}
	info := &Info{}
	if len(st.GetSubject()) != 1 {
		return nil, fmt.Errorf("subject has %d entries, want 1", len(st.GetSubject()))
	}
	sub := st.GetSubject()[0]
	if err := onlyDigest("subject[0]", sub.GetDigest(), "sha256", hex64.MatchString); err != nil {
		return nil, err
	}
	if sub.GetName() == "" {
		return nil, fmt.Errorf("subject[0].name is empty")
	}
	if sub.GetUri() != "" || len(sub.GetContent()) > 0 || sub.GetDownloadLocation() != "" || sub.GetMediaType() != "" || sub.GetAnnotations() != nil {
		return nil, fmt.Errorf("subject[0] has fields other than name and digest")
	}
	info.Subject = Subject{Name: sub.GetName(), Digest: "sha256:" + sub.GetDigest()["sha256"]}

	predJSON, err := protojson.Marshal(st.GetPredicate())
	if err != nil {
		return nil, fmt.Errorf("predicate: %v", err)
	}
	var prov slsa.Provenance
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(predJSON, &prov); err != nil {
		return nil, fmt.Errorf("predicate: %v", err)
	}
	if err := prov.Validate(); err != nil {
		return nil, fmt.Errorf("predicate: %v", err)
	}
	bd := prov.GetBuildDefinition()
	if bd.GetBuildType() != BuildType {
		return nil, fmt.Errorf("buildDefinition.buildType is %q, want %q", bd.GetBuildType(), BuildType)
	}
	if err := parseExternal(bd.GetExternalParameters(), info); err != nil {
		return nil, err
	}
	if err := parseInternal(bd.GetInternalParameters(), info); err != nil {
		return nil, err
	}
	if err := parseDeps(bd.GetResolvedDependencies(), info); err != nil {
		return nil, err
	}
	rd := prov.GetRunDetails()
	if len(rd.GetByproducts()) > 0 {
		return nil, fmt.Errorf("runDetails.byproducts is not part of buildType v1")
	}
	b := rd.GetBuilder()
	if len(b.GetVersion()) > 0 || len(b.GetBuilderDependencies()) > 0 {
		return nil, fmt.Errorf("runDetails.builder has fields other than id")
	}
	info.BuilderID = b.GetId()
	if md := rd.GetMetadata(); md != nil {
		info.InvocationID = md.GetInvocationId()
		if md.GetStartedOn() != nil {
			info.StartedOn = md.GetStartedOn().AsTime().UTC()
		}
		if md.GetFinishedOn() != nil {
			info.FinishedOn = md.GetFinishedOn().AsTime().UTC()
		}
	}
	if !info.StartedOn.IsZero() && !info.FinishedOn.IsZero() && info.FinishedOn.Before(info.StartedOn) {
		return nil, fmt.Errorf("runDetails.metadata.finishedOn is before startedOn")
	}
	return info, nil
}

func str(path string, v *structpb.Value) (string, error) {
	sv, ok := v.GetKind().(*structpb.Value_StringValue)
	if !ok {
		return "", fmt.Errorf("%s: want a string", path)
	}
	return sv.StringValue, nil
}

func nonEmpty(path string, v *structpb.Value) (string, error) {
	s, err := str(path, v)
	if err == nil && s == "" {
		err = fmt.Errorf("%s: is empty", path)
	}
	return s, err
}

func list(path string, v *structpb.Value) ([]*structpb.Value, error) {
	lv, ok := v.GetKind().(*structpb.Value_ListValue)
	if !ok {
		return nil, fmt.Errorf("%s: want a list", path)
	}
	return lv.ListValue.GetValues(), nil
}

func parseExternal(ext *structpb.Struct, info *Info) error {
	const p = "externalParameters"
	top, err := readObject(p, structpb.NewStructValue(ext), externalShape)
	if err != nil {
		return err
	}
	rec, err := readObject(p+".recipe", top["recipe"], externalShape.sub("recipe"))
	if err != nil {
		return err
	}
	if info.Recipe.Name, err = nonEmpty(p+".recipe.name", rec["name"]); err != nil {
		return err
	}
	if info.Recipe.Path, err = nonEmpty(p+".recipe.path", rec["path"]); err != nil {
		return err
	}
	if info.Recipe.SHA256, err = str(p+".recipe.sha256", rec["sha256"]); err != nil {
		return err
	}
	if !hex64.MatchString(info.Recipe.SHA256) {
		return fmt.Errorf("%s.recipe.sha256: not 64 lowercase hex", p)
	}

	up, err := readObject(p+".upstream", top["upstream"], externalShape.sub("upstream"))
	if err != nil {
		return err
	}
	if info.Upstream.URL, err = nonEmpty(p+".upstream.repository", up["repository"]); err != nil {
		return err
	}
	if clean, err := redact.URL(info.Upstream.URL); err != nil || clean != info.Upstream.URL {
		return fmt.Errorf("%s.upstream.repository: not a sanitized URL", p)
	}
	if info.Upstream.Ref, err = str(p+".upstream.ref", up["ref"]); err != nil {
		return err
	}

	patches, err := list(p+".patches", top["patches"])
	if err != nil {
		return err
	}
	info.Patches = make([]Patch, 0, len(patches))
	seen := map[string]bool{}
	for i, pv := range patches {
		pp := fmt.Sprintf("%s.patches[%d]", p, i)
		pm, err := readObject(pp, pv, patchShape)
		if err != nil {
			return err
		}
		var pt Patch
		if pt.Name, err = nonEmpty(pp+".name", pm["name"]); err != nil {
			return err
		}
		if seen[pt.Name] {
			return fmt.Errorf("%s.name: patch %q appears twice", pp, pt.Name)
		}
		seen[pt.Name] = true
		if pt.Kind, err = str(pp+".kind", pm["kind"]); err != nil {
			return err
		}
		if pt.Kind != PatchKindDiff && pt.Kind != PatchKindScript {
			return fmt.Errorf("%s.kind: %q is not %q or %q", pp, pt.Kind, PatchKindDiff, PatchKindScript)
		}
		if pt.SHA256, err = str(pp+".sha256", pm["sha256"]); err != nil {
			return err
		}
		if !hex64.MatchString(pt.SHA256) {
			return fmt.Errorf("%s.sha256: not 64 lowercase hex", pp)
		}
		if err := parsePatchApplication(pp, pm, &pt); err != nil {
			return err
		}
		info.Patches = append(info.Patches, pt)
	}

	if v, ok := top["base"]; ok {
		if err := parseDebianExternal(p+".base", v, info); err != nil {
			return err
		}
	}

	buildShape := externalShape.sub("build")
	bs := top["build"].GetStructValue()
	if bs == nil {
		return fmt.Errorf("%s.build: want an object", p)
	}
	mode, err := str(p+".build.mode", bs.GetFields()["mode"])
	if err != nil {
		return err
	}
	switch mode {
	case ModeDockerfile:
		bm, err := readObject(p+".build", top["build"], buildShape, "dockerfile")
		if err != nil {
			return err
		}
		if _, ok := bm["layers"]; ok {
			return fmt.Errorf("%s.build: unknown key %q in mode %q", p, "layers", mode)
		}
		df, err := readObject(p+".build.dockerfile", bm["dockerfile"], buildShape.sub("dockerfile"))
		if err != nil {
			return err
		}
		d := &Dockerfile{}
		if d.Path, err = nonEmpty(p+".build.dockerfile.path", df["path"]); err != nil {
			return err
		}
		if d.Target, err = str(p+".build.dockerfile.target", df["target"]); err != nil {
			return err
		}
		as := df["args"].GetStructValue()
		if as == nil {
			return fmt.Errorf("%s.build.dockerfile.args: want an object", p)
		}
		d.Args = map[string]string{}
		for _, k := range sortedKeys(as.GetFields()) {
			if k == "" {
				return fmt.Errorf("%s.build.dockerfile.args: empty name", p)
			}
			if d.Args[k], err = str(p+".build.dockerfile.args."+k, as.GetFields()[k]); err != nil {
				return err
			}
		}
		info.Dockerfile = d
	case ModeNative:
		bm, err := readObject(p+".build", top["build"], buildShape, "layers")
		if err != nil {
			return err
		}
		if _, ok := bm["dockerfile"]; ok {
			return fmt.Errorf("%s.build: unknown key %q in mode %q", p, "dockerfile", mode)
		}
		ls, err := list(p+".build.layers", bm["layers"])
		if err != nil {
			return err
		}
		if len(ls) == 0 {
			return fmt.Errorf("%s.build.layers: is empty", p)
		}
		n := &Native{Layers: make([]string, 0, len(ls))}
		for i, lv := range ls {
			l, err := nonEmpty(fmt.Sprintf("%s.build.layers[%d]", p, i), lv)
			if err != nil {
				return err
			}
			n.Layers = append(n.Layers, l)
		}
		info.Native = n
	default:
		return fmt.Errorf("%s.build.mode: %q is not %q or %q", p, mode, ModeDockerfile, ModeNative)
	}
	return nil
}

func parseInternal(in *structpb.Struct, info *Info) error {
	const p = "internalParameters"
	if in == nil {
		return fmt.Errorf("%s: missing", p)
	}
	m, err := readObject(p, structpb.NewStructValue(in), internalShape)
	if err != nil {
		return err
	}
	if info.BuildKitVersion, err = nonEmpty(p+".buildkitVersion", m["buildkitVersion"]); err != nil {
		return err
	}
	if info.LLBDigest, err = str(p+".llbDigest", m["llbDigest"]); err != nil {
		return err
	}
	if !digestRe.MatchString(info.LLBDigest) {
		return fmt.Errorf("%s.llbDigest: %q is not a digest", p, info.LLBDigest)
	}
	if v, ok := m["nonHermetic"]; ok {
		l, err := list(p+".nonHermetic", v)
		if err != nil {
			return err
		}
		info.NonHermetic = make([]Access, 0, len(l))
		for i, av := range l {
			ap := fmt.Sprintf("%s.nonHermetic[%d]", p, i)
			am, err := readObject(ap, av, accessShape)
			if err != nil {
				return err
			}
			var a Access
			for _, kv := range []struct {
				key string
				dst *string
			}{{"kind", &a.Kind}, {"step", &a.Step}, {"network", &a.Network}, {"uri", &a.URI}} {
				if v, ok := am[kv.key]; ok {
					if *kv.dst, err = nonEmpty(ap+"."+kv.key, v); err != nil {
						return err
					}
				}
			}
			if err := checkAccess(a); err != nil {
				return fmt.Errorf("%s: %v", ap, err)
			}
			info.NonHermetic = append(info.NonHermetic, a)
		}
	}
	return nil
}

// parsePatchApplication reads a patch's options and outcome, when
// recorded.
func parsePatchApplication(pp string, pm map[string]*structpb.Value, pt *Patch) error {
	if v, ok := pm["options"]; ok {
		om, err := readObject(pp+".options", v, patchShape.sub("options"))
		if err != nil {
			return err
		}
		o := &PatchOptions{}
		if o.Offset, err = boolean(pp+".options.offset", om["offset"]); err != nil {
			return err
		}
		if o.Optional, err = boolean(pp+".options.optional", om["optional"]); err != nil {
			return err
		}
		if o.Fuzz, err = smallInt(pp+".options.fuzz", om["fuzz"]); err != nil {
			return err
		}
		pt.Options = o
	}
	if v, ok := pm["outcome"]; ok {
		var err error
		if pt.Outcome, err = nonEmpty(pp+".outcome", v); err != nil {
			return err
		}
	}
	if err := checkPatchApplication(*pt); err != nil {
		return fmt.Errorf("%s: %v", pp, err)
	}
	return nil
}

func boolean(path string, v *structpb.Value) (bool, error) {
	bv, ok := v.GetKind().(*structpb.Value_BoolValue)
	if !ok {
		return false, fmt.Errorf("%s: want true or false", path)
	}
	return bv.BoolValue, nil
}

// smallInt reads a number that is a small non-negative integer.
func smallInt(path string, v *structpb.Value) (int, error) {
	nv, ok := v.GetKind().(*structpb.Value_NumberValue)
	if !ok {
		return 0, fmt.Errorf("%s: want a number", path)
	}
	n := nv.NumberValue
	if n < 0 || n > 1000 || n != float64(int(n)) {
		return 0, fmt.Errorf("%s: %v is not a small whole number", path, n)
	}
	return int(n), nil
}

// onlyDigest checks that a digest set holds exactly one algorithm.
func onlyDigest(path string, d map[string]string, alg string, valid func(string) bool) error {
	if len(d) != 1 {
		return fmt.Errorf("%s.digest: want exactly {%q: …}", path, alg)
	}
	v, ok := d[alg]
	if !ok {
		return fmt.Errorf("%s.digest: want %q", path, alg)
	}
	if !valid(v) {
		return fmt.Errorf("%s.digest.%s: malformed", path, alg)
	}
	return nil
}

func parseDeps(deps []*intoto.ResourceDescriptor, info *Info) error {
	const p = "resolvedDependencies"
	if len(deps) < 1+len(info.Patches) {
		return fmt.Errorf("%s: %d entries, want at least %d (source, [base,] [frontend,] [images…,] [packages…,] one per patch)", p, len(deps), 1+len(info.Patches))
	}
	for i, d := range deps {
		switch d.GetName() {
		case DepDebianIndex, DepBasePackage, DepPackage, DepTool:
			if i < len(deps)-len(info.Patches) {
				continue // their own fields, read below
			}
		}
		if len(d.GetContent()) > 0 || d.GetDownloadLocation() != "" || d.GetMediaType() != "" {
			return fmt.Errorf("%s[%d]: unexpected content, downloadLocation or mediaType", p, i)
		}
		if i > 0 && d.GetAnnotations() != nil {
			return fmt.Errorf("%s[%d]: unexpected annotations", p, i)
		}
	}

	src := deps[0]
	if src.GetName() != DepSource {
		return fmt.Errorf("%s[0].name: %q, want %q", p, src.GetName(), DepSource)
	}
	if err := onlyDigest(p+"[0]", src.GetDigest(), "gitCommit", gitSHA.MatchString); err != nil {
		return err
	}
	info.Upstream.Commit = src.GetDigest()["gitCommit"]
	if want := GitURI(info.Upstream.URL, info.Upstream.Ref); src.GetUri() != want {
		return fmt.Errorf("%s[0].uri: %q does not match externalParameters.upstream (%q)", p, src.GetUri(), want)
	}
	if ann := src.GetAnnotations(); ann != nil {
		m, err := readObject(p+"[0].annotations", structpb.NewStructValue(ann), commitTimeShape)
		if err != nil {
			return err
		}
		ct, err := str(p+"[0].annotations.commitTime", m["commitTime"])
		if err != nil {
			return err
		}
		t, err := time.Parse(time.RFC3339, ct)
		if err != nil || t.Format(time.RFC3339) != ct || t.Location() != time.UTC {
			return fmt.Errorf("%s[0].annotations.commitTime: %q is not an RFC 3339 UTC time", p, ct)
		}
		info.Upstream.CommitTime = t.UTC()
	}

	image := func(i int, name string) (Image, error) {
		d := deps[i]
		if d.GetName() != name {
			return Image{}, fmt.Errorf("%s[%d].name: %q, want %q", p, i, d.GetName(), name)
		}
		if err := onlyDigest(fmt.Sprintf("%s[%d]", p, i), d.GetDigest(), "sha256", hex64.MatchString); err != nil {
			return Image{}, err
		}
		ref, err := refFromPURL(d.GetUri())
		if err != nil {
			return Image{}, fmt.Errorf("%s[%d].uri: %v", p, i, err)
		}
		return Image{Ref: ref, Digest: "sha256:" + d.GetDigest()["sha256"]}, nil
	}
	// Then, in this order: an optional base, an optional frontend, the
	// Dockerfile's images, and one entry per patch.
	next := 1
	nPatches := len(info.Patches)
	if next < len(deps)-nPatches && deps[next].GetName() == DepBase {
		b, err := image(next, DepBase)
		if err != nil {
			return err
		}
		info.Base = b
		next++
	}
	if info.Debian != nil {
		if info.Base.Ref != "" {
			return fmt.Errorf("%s: both a base image and a Debian base (externalParameters.base)", p)
		}
		if next >= len(deps)-nPatches || deps[next].GetName() != DepDebianIndex {
			return fmt.Errorf("%s[%d]: want the %q entry of externalParameters.base.debian", p, next, DepDebianIndex)
		}
		if err := parseDebianIndex(fmt.Sprintf("%s[%d]", p, next), deps[next], info); err != nil {
			return err
		}
		next++
		for next < len(deps)-nPatches && deps[next].GetName() == DepBasePackage {
			pk, err := parsePackageDep(fmt.Sprintf("%s[%d]", p, next), deps[next])
			if err != nil {
				return err
			}
			info.Packages = append(info.Packages, pk)
			next++
		}
	}
	if next < len(deps)-nPatches && deps[next].GetName() == DepFrontend {
		fe, err := image(next, DepFrontend)
		if err != nil {
			return err
		}
		info.Frontend = &fe
		next++
	}
	for next < len(deps)-nPatches && deps[next].GetName() == DepImage {
		im, err := image(next, DepImage)
		if err != nil {
			return err
		}
		info.Images = append(info.Images, im)
		next++
	}
	for next < len(deps)-nPatches && (deps[next].GetName() == DepPackage || deps[next].GetName() == DepTool) {
		dp := fmt.Sprintf("%s[%d]", p, next)
		pk, err := parsePackageDep(dp, deps[next])
		if err != nil {
			return err
		}
		if info.Native == nil || !slices.Contains(info.Native.Layers, pk.Layer) {
			return fmt.Errorf("%s.annotations.layer: %q is not one of externalParameters.build.layers", dp, pk.Layer)
		}
		info.Packages = append(info.Packages, pk)
		next++
	}
	if next < len(deps)-nPatches {
		switch n := deps[next].GetName(); n {
		case DepDebianIndex, DepBasePackage:
			return fmt.Errorf("%s[%d]: a %q entry, but externalParameters has no base.debian", p, next, n)
		}
	}
	if len(deps)-next != nPatches {
		return fmt.Errorf("%s: %d entries, want %d (source, [base | debian-index, base-package…,] [frontend,] [images…,] [package…,] one per patch)", p, len(deps), next+nPatches)
	}
	if info.Native != nil && info.Base.Ref == "" && info.Debian == nil {
		return fmt.Errorf("%s: a native build has no base image", p)
	}
	for i, pt := range info.Patches {
		d := deps[next+i]
		dp := fmt.Sprintf("%s[%d]", p, next+i)
		if d.GetName() != pt.Name {
			return fmt.Errorf("%s.name: %q, want patch %q (externalParameters.patches[%d])", dp, d.GetName(), pt.Name, i)
		}
		if d.GetUri() != "" {
			return fmt.Errorf("%s.uri: a patch has no uri", dp)
		}
		if err := onlyDigest(dp, d.GetDigest(), "sha256", hex64.MatchString); err != nil {
			return err
		}
		if d.GetDigest()["sha256"] != pt.SHA256 {
			return fmt.Errorf("%s.digest.sha256: does not match externalParameters.patches[%d].sha256", dp, i)
		}
	}
	return nil
}
