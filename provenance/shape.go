package provenance

import (
	"encoding/json"
	"fmt"
	"slices"

	"google.golang.org/protobuf/types/known/structpb"
)

// The keys of build type v1's parameters are defined here, once: the
// strict parser reads objects against these shapes (an unknown or a
// missing key is an error), and UnknownParameters names the keys of
// externalParameters they do not define. A new parameter is one line in
// a table below, and the code that reads and writes its value.

// shape is the key structure of one JSON value.
type shape struct {
	fields []field // an object with these keys
	elem   *shape  // a list of values of this shape
	free   bool    // an object with free-form keys (build args)
}

// field is one key of an object.
type field struct {
	name     string
	required bool
	shape    *shape // nil: a scalar
}

func object(fields ...field) *shape        { return &shape{fields: fields} }
func listOf(s *shape) *shape               { return &shape{elem: s} }
func required(name string, s *shape) field { return field{name: name, required: true, shape: s} }
func optional(name string, s *shape) field { return field{name: name, shape: s} }

// freeObject is an object whose keys are data (build args).
var freeObject = &shape{free: true}

var (
	// externalShape is buildDefinition.externalParameters. In mode
	// dockerfile, build has exactly mode and dockerfile; in mode native,
	// exactly mode and layers (checked by the parser).
	externalShape = object(
		required("recipe", object(required("name", nil), required("path", nil), required("sha256", nil))),
		required("upstream", object(required("repository", nil), required("ref", nil))),
		required("patches", listOf(patchShape)),
		required("build", object(
			required("mode", nil),
			optional("dockerfile", object(required("path", nil), required("target", nil), required("args", freeObject))),
			optional("layers", nil),
		)),
		// base is absent unless the base was assembled from Debian
		// packages (packages.go).
		optional("base", debianShape),
	)
	// patchShape is one entry of externalParameters.patches. options and
	// outcome are absent in statements written before vmbuild recorded
	// them.
	patchShape = object(
		required("name", nil), required("kind", nil), required("sha256", nil),
		optional("options", object(required("offset", nil), required("fuzz", nil), required("optional", nil))),
		optional("outcome", nil),
	)
	// internalShape is buildDefinition.internalParameters. nonHermetic is
	// absent in statements written before vmbuild recorded it.
	internalShape = object(
		required("buildkitVersion", nil),
		required("llbDigest", nil),
		optional("nonHermetic", listOf(accessShape)),
	)
	// accessShape is one entry of internalParameters.nonHermetic: which
	// keys a kind has is checked by the parser.
	accessShape = object(required("kind", nil), optional("step", nil), optional("network", nil), optional("uri", nil))
	// commitTimeShape is the source dependency's annotations.
	commitTimeShape = object(required("commitTime", nil))
)

// sub returns the shape of key name of an object shape.
func (s *shape) sub(name string) *shape {
	for _, f := range s.fields {
		if f.name == name {
			return f.shape
		}
	}
	panic("provenance: no key " + name + " in shape") // a bug in this package
}

// names lists the keys of an object shape, for messages.
func (s *shape) names() []string {
	var out []string
	for _, f := range s.fields {
		out = append(out, f.name)
	}
	return out
}

// readObject checks that v is an object with only the keys s defines and
// every key s requires (plus the keys in also, which the caller requires
// beyond s).
func readObject(path string, v *structpb.Value, s *shape, also ...string) (map[string]*structpb.Value, error) {
	st := v.GetStructValue()
	if st == nil {
		return nil, fmt.Errorf("%s: want an object", path)
	}
	m := st.GetFields()
	for _, k := range sortedKeys(m) {
		if !slices.Contains(s.names(), k) {
			return nil, fmt.Errorf("%s: unknown key %q", path, k)
		}
	}
	for _, f := range s.fields {
		if _, ok := m[f.name]; !ok && (f.required || slices.Contains(also, f.name)) {
			return nil, fmt.Errorf("%s: missing key %q", path, f.name)
		}
	}
	return m, nil
}

// UnknownParameters lists the keys of an externalParameters object (raw
// JSON), at any depth, that build type v1 does not define, as quoted
// dotted paths ("externalParameters.build.network"); at most max (0: 10).
// Type and presence errors are left to the strict parse.
func UnknownParameters(raw json.RawMessage, max int) []string {
	if max <= 0 {
		max = 10
	}
	var out []string
	var walk func(path string, raw json.RawMessage, s *shape)
	walk = func(path string, raw json.RawMessage, s *shape) {
		if s == nil || s.free || len(out) >= max {
			return
		}
		if s.elem != nil {
			var l []json.RawMessage
			if json.Unmarshal(raw, &l) != nil {
				return
			}
			for i, e := range l {
				walk(fmt.Sprintf("%s[%d]", path, i), e, s.elem)
			}
			return
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(raw, &m) != nil {
			return
		}
		for _, k := range sortedKeys(m) {
			if len(out) >= max {
				return
			}
			i := slices.IndexFunc(s.fields, func(f field) bool { return f.name == k })
			if i < 0 {
				out = append(out, fmt.Sprintf("%q", clip(path+"."+k)))
				continue
			}
			walk(path+"."+k, m[k], s.fields[i].shape)
		}
	}
	if raw != nil {
		walk("externalParameters", raw, externalShape)
	}
	return out
}
