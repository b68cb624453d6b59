// Package registry is a small OCI distribution client built on containerd's
// remotes (host configuration, docker authorizer, blob fetcher and pusher).
//
// Everything read from a registry is untrusted: manifests and blobs are read
// through size limits and their sha256 is checked against the digest that
// was asked for, so a registry that lies about content is an error, not a
// silent substitution.
//
// Defaults (see the With* options):
//   - plain HTTP for loopback hosts (localhost, 127.0.0.0/8, ::1) and for
//     hosts given to [WithInsecure]; HTTPS with system roots otherwise;
//   - credentials from the Docker config file (DOCKER_CONFIG or ~/.docker),
//     or from the directory given to [WithDockerConfigDir], through
//     containerd's docker authorizer (basic and bearer token flows);
//   - 4 attempts for transient failures (5xx, 429, connection reset, EOF,
//     connection refused to a host that answered before) with exponential
//     backoff from 200ms, capped at 5s. Requests without a body or with an
//     in-memory body are retried by the transport; blob uploads are retried
//     as a whole when their reader can seek. Blob transfers go through
//     containerd's fetcher and pusher, which may add their own bounded
//     retries on top;
//   - limits from [DefaultLimits];
//   - a silent logger.
//
// Why not oras-go (oras.land/oras-go/v2 registry/remote), evaluated for
// issue #16 with v2.7.0: a spike replacing manifests, tags, referrers
// (with the fallback tag schema) and paging by remote.Repository, behind
// the same limits and retry transport, cut manifest.go and referrers.go
// from 607 to 147 lines plus a 243-line adapter, at 41 KB and one module
// more in bin/vmbuild; but six hostile-registry tests here and two in
// verify failed, for reasons of design rather than of the adapter: a
// manifest without Content-Length (chunked) is refused outright ("unknown
// response Content-Length") where it must be read within the limit; a
// HEAD without Docker-Content-Digest fails a tag's resolution where it
// must fall back to GET; an oversized manifest by digest is reported as a
// digest mismatch, not as the manifest size limit; and removing a
// referrer deletes the manifest (DELETE), which registries with deletion
// disabled (the distribution registry's default) refuse, where the
// fallback index must simply drop the entry. Keeping the limits would
// mean keeping most of this code beside oras, so the client stays as it
// is: containerd's remotes for blobs and auth, this package's own
// requests for manifests, tags and referrers.
package registry

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/log"
	"github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/config/configfile"
	"github.com/sirupsen/logrus"
)

// Limits bound what the client reads from a registry. Zero fields take the
// defaults of [DefaultLimits].
type Limits struct {
	// MaxManifestBytes bounds a manifest or index body. Default 4 MiB.
	MaxManifestBytes int64
	// MaxBlobBytes bounds FetchBlob when the caller passes limit <= 0.
	// Default 64 MiB.
	MaxBlobBytes int64
	// MaxIndexBytes bounds a referrers index (API response or fallback tag).
	// Default 4 MiB.
	MaxIndexBytes int64
	// MaxReferrers bounds the number of descriptors Referrers returns before
	// filtering, across all pages. Default 1000.
	MaxReferrers int
	// MaxTags bounds ListTags. Default 10000.
	MaxTags int
}

// DefaultLimits returns the limits used when none are given.
func DefaultLimits() Limits {
	return Limits{
		MaxManifestBytes: 4 << 20,
		MaxBlobBytes:     64 << 20,
		MaxIndexBytes:    4 << 20,
		MaxReferrers:     1000,
		MaxTags:          10000,
	}
}

// WithDefaults returns l with its zero fields set to their defaults.
func (l Limits) WithDefaults() Limits {
	d := DefaultLimits()
	if l.MaxManifestBytes <= 0 {
		l.MaxManifestBytes = d.MaxManifestBytes
	}
	if l.MaxBlobBytes <= 0 {
		l.MaxBlobBytes = d.MaxBlobBytes
	}
	if l.MaxIndexBytes <= 0 {
		l.MaxIndexBytes = d.MaxIndexBytes
	}
	if l.MaxReferrers <= 0 {
		l.MaxReferrers = d.MaxReferrers
	}
	if l.MaxTags <= 0 {
		l.MaxTags = d.MaxTags
	}
	return l
}

// Client talks to OCI registries. It is safe for concurrent use.
type Client struct {
	log        *slog.Logger
	httpClient *http.Client
	userAgent  string
	insecure   map[string]bool
	limits     Limits
	attempts   int
	backoff    time.Duration
	maxBackoff time.Duration

	configDir  string // "" means the default Docker config location
	configOnce sync.Once
	configFile *configfile.ConfigFile

	authorizer docker.Authorizer
	hosts      docker.RegistryHosts
	seen       sync.Map // host -> true once a connection succeeded
	logEntry   *logrus.Entry
}

// Option configures a Client.
type Option func(*Client)

// WithInsecure makes the client use plain HTTP for the given hosts
// ("host" or "host:port"), in addition to loopback hosts.
func WithInsecure(hosts ...string) Option {
	return func(c *Client) {
		for _, h := range hosts {
			c.insecure[h] = true
		}
	}
}

// WithDockerConfigDir reads credentials from config.json in dir instead of
// the default Docker config location.
func WithDockerConfigDir(dir string) Option {
	return func(c *Client) { c.configDir = dir }
}

// WithLogger sets the logger (debug messages for requests and retries).
func WithLogger(l *slog.Logger) Option {
	return func(c *Client) {
		if l != nil {
			c.log = l
		}
	}
}

// WithRetry sets the number of attempts (>= 1) for transient failures and
// the first backoff; each later backoff doubles, capped at 5s (or at
// baseBackoff if that is larger).
func WithRetry(attempts int, baseBackoff time.Duration) Option {
	return func(c *Client) {
		if attempts >= 1 {
			c.attempts = attempts
		}
		if baseBackoff >= 0 {
			c.backoff = baseBackoff
		}
	}
}

// WithLimits sets read limits; zero fields keep their defaults.
func WithLimits(l Limits) Option {
	return func(c *Client) { c.limits = l.WithDefaults() }
}

// WithHTTPClient sets the HTTP client whose transport is used (it is
// wrapped with the retry logic). Default: a client with
// containerd's default transport.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) {
		if hc != nil {
			c.httpClient = hc
		}
	}
}

// WithUserAgent sets the User-Agent header. Default "vmbuild".
func WithUserAgent(ua string) Option {
	return func(c *Client) {
		if ua != "" {
			c.userAgent = ua
		}
	}
}

// New returns a Client configured by opts.
func New(opts ...Option) *Client {
	c := &Client{
		log:        slog.New(slog.DiscardHandler),
		userAgent:  "vmbuild",
		insecure:   map[string]bool{},
		limits:     DefaultLimits(),
		attempts:   4,
		backoff:    200 * time.Millisecond,
		maxBackoff: 5 * time.Second,
	}
	for _, o := range opts {
		o(c)
	}
	if c.backoff > c.maxBackoff {
		c.maxBackoff = c.backoff
	}
	base := c.httpClient
	if base == nil {
		base = &http.Client{Transport: docker.DefaultHTTPTransport(nil)}
	}
	rt := base.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	hc := *base
	hc.Transport = &retryTransport{c: c, next: rt}
	c.httpClient = &hc

	ll := logrus.New()
	ll.SetOutput(io.Discard)
	ll.SetLevel(logrus.DebugLevel)
	ll.AddHook(slogHook{c.log})
	c.logEntry = logrus.NewEntry(ll)

	header := http.Header{}
	header.Set("User-Agent", c.userAgent)
	c.authorizer = docker.NewDockerAuthorizer(
		docker.WithAuthClient(c.httpClient),
		docker.WithAuthHeader(header),
		docker.WithAuthCreds(c.credentials),
	)
	c.hosts = docker.ConfigureDefaultRegistries(
		docker.WithPlainHTTP(c.plainHTTP),
		docker.WithAuthorizer(c.authorizer),
		docker.WithClient(c.httpClient),
	)
	return c
}

func (c *Client) plainHTTP(host string) (bool, error) {
	if c.insecure[host] {
		return true, nil
	}
	if h, _, err := net.SplitHostPort(host); err == nil && c.insecure[h] {
		return true, nil
	}
	ok, err := docker.MatchLocalhost(host)
	if err != nil {
		return false, nil
	}
	return ok, nil
}

// credentials maps an auth host to Docker config credentials. Docker Hub's
// token host and registry host map to the legacy index key.
func (c *Client) credentials(host string) (string, string, error) {
	c.configOnce.Do(func() {
		if c.configDir != "" {
			cf, err := config.Load(c.configDir)
			if err != nil {
				c.log.Debug("reading docker config", "dir", c.configDir, "err", err)
			}
			c.configFile = cf
			return
		}
		c.configFile = config.LoadDefaultConfigFile(io.Discard)
	})
	if c.configFile == nil {
		return "", "", nil
	}
	key := host
	switch host {
	case "registry-1.docker.io", "docker.io", "index.docker.io", "auth.docker.io":
		key = "https://index.docker.io/v1/"
	}
	ac, err := c.configFile.GetAuthConfig(key)
	if err != nil {
		return "", "", fmt.Errorf("reading credentials for %s: %w", host, err)
	}
	if ac.IdentityToken != "" {
		return "", ac.IdentityToken, nil
	}
	return ac.Username, ac.Password, nil
}

// ctxLogger routes containerd's logrus output to our slog logger at debug
// level so that the library never prints to stderr.
func (c *Client) ctx(ctx context.Context) context.Context {
	return log.WithLogger(ctx, c.logEntry)
}

type slogHook struct{ l *slog.Logger }

func (h slogHook) Levels() []logrus.Level { return logrus.AllLevels }

func (h slogHook) Fire(e *logrus.Entry) error {
	if !h.l.Enabled(context.Background(), slog.LevelDebug) {
		return nil
	}
	attrs := make([]any, 0, 2*len(e.Data))
	for k, v := range e.Data {
		attrs = append(attrs, k, v)
	}
	h.l.Debug("containerd: "+strings.TrimSpace(e.Message), attrs...)
	return nil
}
