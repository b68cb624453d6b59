package build_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/vmbuild/vmbuild/build"
	"github.com/vmbuild/vmbuild/internal/fixture"
	"github.com/vmbuild/vmbuild/lock"
)

// TestDockerfileNonHermetic: the steps of a Dockerfile build that had
// network access and the downloads nothing pins are read from the LLB
// the frontend made, and recorded in the result (for the provenance);
// pinned downloads and steps without network are not.
func TestDockerfileNonHermetic(t *testing.T) {
	e := fixture.Start(t)
	ctx := context.Background()
	c := connect(t, e)
	files := map[string]string{"/tool.txt": "a tool\n", "/pinned.txt": "pinned\n"}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(body))
	}))
	defer srv.Close()

	up := e.NewUpstream(t, "nonhermetic")
	base := strings.SplitN(e.Base, "@", 2)[0] + ":latest"
	up.Write("Dockerfile", `FROM `+base+`
ADD `+srv.URL+`/tool.txt?token=secret /tool.txt
ADD --checksum=`+digest.FromString(files["/pinned.txt"]).String()+` `+srv.URL+`/pinned.txt /pinned.txt
RUN --network=none cat /tool.txt > /none.txt
RUN cat /pinned.txt > /sandbox.txt # https://user:hunter2@example.com/
`)
	up.Commit("dockerfile", fixture.T0.Add(time.Minute))
	path := e.WriteRecipe(t, `apiVersion: vmbuild/v1
name: app
upstream: {git: %GIT%, ref: main}
build:
  dockerfile: {}
`, up.URL, nil)
	r, l := e.Lock(t, path, lock.Options{})
	res, err := build.Build(ctx, r, l, opts(e, c, build.Output{OCIDir: filepath.Join(t.TempDir(), "oci")}))
	if err != nil {
		t.Fatal(err)
	}
	want := []build.Access{
		{Kind: build.AccessHTTP, URL: srv.URL + "/tool.txt"},
		{Kind: build.AccessNetwork, Step: "[5/5] RUN cat /pinned.txt > /sandbox.txt # https://example.com/", Network: build.NetworkSandbox},
	}
	if !reflect.DeepEqual(res.NonHermetic, want) {
		t.Fatalf("nonHermetic =\n%+v\nwant\n%+v", res.NonHermetic, want)
	}

	// The fixture's native recipe runs every step without network.
	native := e.WriteRecipe(t, fixture.NativeRecipe, up.URL, fixture.Patches())
	r, l = e.Lock(t, native, lock.Options{})
	res, err = build.Build(ctx, r, l, opts(e, c, build.Output{OCIDir: filepath.Join(t.TempDir(), "oci")}))
	if err != nil {
		t.Fatal(err)
	}
	if res.NonHermetic == nil || len(res.NonHermetic) != 0 {
		t.Fatalf("native nonHermetic = %+v, want none", res.NonHermetic)
	}
}
