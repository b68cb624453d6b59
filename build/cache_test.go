package build

import (
	"maps"
	"testing"

	"github.com/moby/buildkit/client"
)

func TestCacheExportDefaults(t *testing.T) {
	in := []client.CacheOptionsEntry{
		{Type: "registry", Attrs: map[string]string{"ref": "r/c:cache"}},
		{Type: "registry", Attrs: map[string]string{"ref": "r/c:min", "mode": "min"}},
		{Type: "local", Attrs: map[string]string{"dest": "/tmp/c"}},
	}
	got := cacheExports(in)
	want := []map[string]string{
		{"ref": "r/c:cache", "mode": "max", "image-manifest": "true", "oci-mediatypes": "true"},
		{"ref": "r/c:min", "mode": "min", "image-manifest": "true", "oci-mediatypes": "true"},
		{"dest": "/tmp/c"},
	}
	for i := range want {
		if !maps.Equal(got[i].Attrs, want[i]) || got[i].Type != in[i].Type {
			t.Errorf("export %d: %v, want %v", i, got[i], want[i])
		}
	}
	if len(in[0].Attrs) != 1 {
		t.Errorf("the caller's entry was modified: %v", in[0].Attrs)
	}
}
