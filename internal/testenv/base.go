package testenv

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/vmbuild/vmbuild/internal/baseimage"
)

// Base is a base image pushed to a test registry.
type Base struct {
	// Ref is HOST/repo@sha256:…, what recipes and llb.Image should use.
	Ref string
	// Tag is HOST/repo:latest, pointing at the same manifest.
	Tag string
	// Digest is the manifest digest.
	Digest digest.Digest
	// Image holds the blobs and descriptors.
	Image *baseimage.Image
}

var defaultBase struct {
	once sync.Once
	img  *baseimage.Image
	err  error
}

// PushBase builds a busybox base image with internal/baseimage (opts;
// ExtraFiles make distinct images) and pushes it to reg as repo:latest.
func PushBase(t testing.TB, reg *Registry, repo string, opts baseimage.Options) Base {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var img *baseimage.Image
	var err error
	if opts.BusyboxPath == "" && opts.Platform == nil && opts.ExtraFiles == nil && opts.Applets == nil {
		defaultBase.once.Do(func() { defaultBase.img, defaultBase.err = baseimage.Build(ctx, baseimage.Options{}) })
		img, err = defaultBase.img, defaultBase.err
	} else {
		img, err = baseimage.Build(ctx, opts)
	}
	if err != nil {
		skipOrFail(t, "testenv: building busybox base image: %v", err)
	}
	tag := reg.Ref(repo) + ":latest"
	if err := baseimage.Push(ctx, img, tag, true); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return Base{Ref: reg.Ref(repo) + "@" + img.Digest().String(), Tag: tag, Digest: img.Digest(), Image: img}
}

// BusyboxBase pushes the default busybox base image to reg as repo:latest
// and returns its digest reference HOST/repo@sha256:….
func BusyboxBase(t testing.TB, reg *Registry, repo string) string {
	t.Helper()
	return PushBase(t, reg, repo, baseimage.Options{}).Ref
}
