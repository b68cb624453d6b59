// Package buildkit connects vmbuild to BuildKit: to any buildkitd named by
// an address (unix, tcp with TLS, or one of BuildKit's connection helpers),
// or to a local buildkitd that vmbuild starts and manages itself.
package buildkit

import (
	"context"
	"fmt"
	"time"

	"github.com/moby/buildkit/client"
	// Connection helpers register URL schemes with the BuildKit client:
	// docker-container://, kube-pod://, podman-container://,
	// nerdctl-container:// and ssh://.
	_ "github.com/moby/buildkit/client/connhelper/dockercontainer"
	_ "github.com/moby/buildkit/client/connhelper/kubepod"
	_ "github.com/moby/buildkit/client/connhelper/nerdctlcontainer"
	_ "github.com/moby/buildkit/client/connhelper/podmancontainer"
	_ "github.com/moby/buildkit/client/connhelper/ssh"

	"github.com/vmbuild/vmbuild/errs"
)

// TLS names the client certificate material for a tcp:// buildkitd, as
// buildctl's --tlscacert, --tlscert, --tlskey and --tlsservername do.
type TLS struct {
	CACert     string
	Cert       string
	Key        string
	ServerName string
}

// ConnectOptions says how to reach BuildKit.
type ConnectOptions struct {
	// Addr is a buildkitd address. Empty means the managed local daemon
	// (see StartDaemon). The CLI fills it from --addr or BUILDKIT_HOST.
	Addr string
	// TLS material for tcp:// addresses.
	TLS TLS
	// Daemon configures the managed daemon used when no address is given.
	Daemon DaemonOptions
	// Timeout bounds the time to reach the daemon (default 20s).
	Timeout time.Duration
}

// Conn is a live BuildKit connection.
type Conn struct {
	Client *client.Client
	// Addr is the address actually used.
	Addr string
	// Managed reports whether vmbuild manages this daemon.
	Managed bool
	// Version is buildkitd's version as it reports it.
	Version string
}

// Close releases the connection (a managed daemon keeps running for reuse).
func (c *Conn) Close() error { return c.Client.Close() }

// ResolveAddr returns the address that Connect would use, and whether it is
// the managed daemon.
func ResolveAddr(opts ConnectOptions) (addr string, managed bool) {
	if opts.Addr != "" {
		return opts.Addr, false
	}
	return opts.Daemon.withDefaults().SocketAddr(), true
}

// Connect reaches BuildKit. With no address it
// starts the managed daemon if it is not already running.
func Connect(ctx context.Context, opts ConnectOptions) (*Conn, error) {
	addr, managed := ResolveAddr(opts)
	if managed {
		d, err := StartDaemon(ctx, opts.Daemon)
		if err != nil {
			return nil, err
		}
		addr = d.Addr
	}
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = 20 * time.Second
	}
	var copts []client.ClientOpt
	if opts.TLS.CACert != "" || opts.TLS.ServerName != "" {
		copts = append(copts, client.WithServerConfig(opts.TLS.ServerName, opts.TLS.CACert))
	}
	if opts.TLS.Cert != "" || opts.TLS.Key != "" {
		copts = append(copts, client.WithCredentials(opts.TLS.Cert, opts.TLS.Key))
	}
	c, err := client.New(ctx, addr, copts...)
	if err != nil {
		return nil, fmt.Errorf("connecting to buildkitd at %s: %w: %w", addr, errs.ErrBuildKitUnavailable, err)
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	info, err := c.Info(pctx)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("connecting to buildkitd at %s: %w: %w (is it running? give --addr or BUILDKIT_HOST, or leave both empty to use vmbuild's managed daemon)", addr, errs.ErrBuildKitUnavailable, err)
	}
	return &Conn{Client: c, Addr: addr, Managed: managed, Version: info.BuildkitVersion.Version}, nil
}
