package registry

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseRef(t *testing.T) {
	d := "sha256:" + strings.Repeat("a", 64)
	for _, tc := range []struct {
		in                        string
		domain, path, tag, digest string
	}{
		{"alpine", "docker.io", "library/alpine", "latest", ""},
		{"alpine:3.20", "docker.io", "library/alpine", "3.20", ""},
		{"user/app@" + d, "docker.io", "user/app", "", d},
		{"localhost:5000/x/y:tag", "localhost:5000", "x/y", "tag", ""},
		{"127.0.0.1:36789/repo@" + d, "127.0.0.1:36789", "repo", "", d},
		{"ghcr.io/o/r:t@" + d, "ghcr.io", "o/r", "t", d},
	} {
		p, err := parseRef(tc.in)
		if err != nil {
			t.Fatalf("parseRef(%q): %v", tc.in, err)
		}
		if p.repo.domain != tc.domain || p.repo.path != tc.path || p.tag != tc.tag || p.digest != tc.digest {
			t.Errorf("parseRef(%q) = %+v", tc.in, p)
		}
	}
	for _, bad := range []string{"", "case/UPPER", "x@sha256:zz", "a b"} {
		if _, err := parseRef(bad); err == nil {
			t.Errorf("parseRef(%q) accepted", bad)
		}
	}
	if _, err := parseRepo("x/y:tag"); err == nil {
		t.Error("parseRepo accepted a tag")
	}
}

func TestPlainHTTPHosts(t *testing.T) {
	c := New(WithInsecure("registry.internal:5000", "other.internal"))
	for host, want := range map[string]bool{
		"localhost:5000":         true,
		"127.0.0.1:1234":         true,
		"127.9.9.9":              true,
		"[::1]:5000":             true,
		"registry.internal:5000": true,
		"other.internal:443":     true,
		"registry.internal:5001": false,
		"ghcr.io":                false,
		"docker.io":              false,
	} {
		got, _ := c.plainHTTP(host)
		if got != want {
			t.Errorf("plainHTTP(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestBackoffBounded(t *testing.T) {
	c := New(WithRetry(10, time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.sleep(ctx, 3); !errors.Is(err, context.Canceled) {
		t.Fatalf("sleep on cancelled ctx: %v", err)
	}
	if got := FormatBytes(4 << 20); got != "4 MiB" {
		t.Fatalf("FormatBytes = %q", got)
	}
}
