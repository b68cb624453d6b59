package build

import (
	"maps"

	"github.com/moby/buildkit/client"
)

// registryCacheDefaults are the attributes a registry cache export gets
// unless it sets them: every step's cache (mode=max), in an OCI image
// manifest, so that several builders, and registries that refuse
// BuildKit's own cache manifest list, can share it.
var registryCacheDefaults = map[string]string{"mode": "max", "image-manifest": "true", "oci-mediatypes": "true"}

// cacheExports returns exports with the registry defaults filled in; the
// caller's entries are not modified.
func cacheExports(exports []client.CacheOptionsEntry) []client.CacheOptionsEntry {
	out := make([]client.CacheOptionsEntry, len(exports))
	for i, e := range exports {
		e.Attrs = maps.Clone(e.Attrs)
		if e.Type == "registry" {
			if e.Attrs == nil {
				e.Attrs = map[string]string{}
			}
			for k, v := range registryCacheDefaults {
				if _, ok := e.Attrs[k]; !ok {
					e.Attrs[k] = v
				}
			}
		}
		out[i] = e
	}
	return out
}
