// Package deb pins and unpacks Debian packages for a base image made by
// extraction alone (apko / rules_distroless style): no dpkg, no apt, no
// maintainer scripts, so the result is a pure function of the pins.
//
// # Lock time
//
//	ix, err := deb.Open(ctx, deb.Source{Suite: "sid", Arch: "amd64"}, deb.WithCacheDir(dir))
//	res, err := deb.Resolve(ctx, ix, []deb.Request{{Name: "nodejs"}, {Name: "ca-certificates"}}, deb.ResolveOptions{})
//	pins, err := ix.Pins(res)  // []deps.Package, sorted, URL = mirror/pool/…
//	rec := ix.Record()         // what the lock keeps about the index
//
// Open fetches dists/SUITE/InRelease, verifies its clearsigned signature
// against the keyring (default /usr/share/keyrings/debian-archive-keyring.gpg)
// and parses only the signed text. It refuses an index whose Valid-Until
// has passed unless Source.AllowExpired (apt's
// Acquire::Check-Valid-Until=false) — sid's index on a mirror that stopped
// syncing, or any snapshot, needs it; the Release then says Expired and
// the Record AllowedExpired. Each component's Packages file (xz, else gz,
// else plain; by-hash when the Release offers it) is checked against the
// InRelease's size and SHA256 before it is parsed. With a cache directory
// the verified, decompressed Packages file is kept by its sha256, so
// locking again against an unchanged index downloads only the InRelease.
//
// Resolve computes the Depends + Pre-Depends closure (see Resolve for the
// rules), deterministically; errors name the dependency chain:
//
//	nodejs → libnode137 → libicu78 (>= 78.1-1~): no such package in sid/main amd64
//	postfix=3.10.13-0+deb13u1 conflicts exim4-daemon-light=4.98.2-1+deb13u5 (mail-transport-agent); postfix=… comes from postfix, exim4-daemon-light=… from exim4 → exim4-daemon-light
//
// The pins' URLs point into the mirror's pool/, which drops superseded
// versions (within days for sid): a lock meant to build later should use
// a snapshot mirror (SnapshotMirror) for its Source.
//
// # Build time
//
// BuildKit fetches each pin by URL and sha256. Inside the build a static
// helper (pure Go, no cgo) unpacks them in pin order into one root and
// then applies the effects below:
//
//	for _, p := range pins {
//		_, err := deb.ExtractFile(ctx, "/debs/"+path.Base(p.Path), "/rootfs",
//			deb.ExtractOptions{SHA256: p.SHA256, Package: p.ID(), URL: p.URL})
//		…collect Contents.Alternatives…
//	}
//	deb.MergedUsr("/rootfs", arch)
//	deb.ApplyAlternatives("/rootfs", alternatives)
//	deb.UpdateCACertificates("/rootfs")          // if ca-certificates is in
//	deb.WriteAccounts("/rootfs", deb.Accounts{…})
//	deb.SetTimezone("/rootfs", "Etc/UTC")         // only if tzdata is in
//
// # What extraction alone does not give, and what supplies it
//
// Checked by running node (sid: nodejs + ca-certificates, 37 packages)
// and ruby + bundle (trixie: ruby + bundler, 29 packages) from a root made
// this way, in a chroot:
//
//   - merged /usr: every package installs under /usr, but the ELF
//     interpreter is /lib64/ld-linux-x86-64.so.2 (amd64) or /lib/ld-linux-
//     aarch64.so.1 (arm64). base-files ships the links (bin, sbin, lib,
//     and lib64 on amd64, loong64, ppc64el); closures rarely include it, so
//     call MergedUsr, which is a no-op where base-files made them.
//   - ld.so.cache: not needed. Debian's loader searches the multiarch
//     directories (/usr/lib/x86_64-linux-gnu) by default; libc6's postinst
//     (ldconfig) can be skipped.
//   - CA bundle: ca-certificates ships /usr/share/ca-certificates/mozilla/*.crt
//     but not /etc/ca-certificates.conf nor /etc/ssl/certs/ca-certificates.crt:
//     its postinst writes both (via debconf and update-ca-certificates).
//     UpdateCACertificates does the same, plus the .pem and OpenSSL
//     subject-hash links, so both OpenSSL's CAfile and CApath work. The
//     openssl package (a dependency of ca-certificates) ships
//     /usr/lib/ssl/{cert.pem,certs} → /etc/ssl, OpenSSL's default paths:
//     Ruby's OpenSSL::X509::Store#set_default_paths and node
//     --use-openssl-ca use them. Node's own TLS uses its built-in roots
//     by default and needs none of this.
//   - accounts: no package ships /etc/passwd or /etc/group (base-passwd's
//     postinst copies its master files; shadow's makes /etc/shadow).
//     WriteAccounts writes all four from base-passwd's masters when it is
//     unpacked, else root and nobody/nogroup, plus the declared users.
//     Ruby's Etc.getpwuid and `node -e os.userInfo()` need the entry for
//     the uid the image runs as.
//   - alternatives: nodejs's postinst registers /usr/bin/js → nodejs with
//     update-alternatives; Extract reports such literal commands
//     (Contents.Alternatives) and ApplyAlternatives makes the links. Ruby
//     in trixie ships /usr/bin/ruby, gem and bundle as plain files or
//     symlinks and needs none.
//   - tzdata: its postinst points /etc/localtime at
//     /usr/share/zoneinfo/Etc/UTC by default (and no longer writes
//     /etc/timezone); SetTimezone does that. Without tzdata there is no
//     /etc/localtime and glibc, Node and Ruby use UTC.
//   - /dev, /proc, /etc/hosts, /etc/resolv.conf: the container runtime's
//     (bundler opens /dev/null). Extract refuses device nodes.
//   - the rest of the maintainer scripts found in these closures do
//     nothing an unpacked, never-upgraded image needs: debconf
//     registration (ca-certificates, debconf), libc6's service-restart
//     check and ldconfig, node-undici's dpkg-maintscript-helper
//     dir_to_symlink (the new layout is already what the .deb ships),
//     openssl's /usr/lib/ssl link (shipped by the package itself), ruby's
//     removal of old alternatives.
//
// Maintainer scripts are never run, and the Essential set is not added
// by default (ResolveOptions.Essential): an image that needs a shell,
// coreutils or dpkg asks for them.
package deb
