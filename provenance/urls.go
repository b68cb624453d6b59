package provenance

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// SanitizeURL returns a git remote URL safe to publish:
//
//   - http(s), git and every other scheme: user info removed entirely (a
//     user name alone can be a token: GitHub accepts https://<token>@…);
//   - ssh and git+ssh: the user name is kept (it is an account name such
//     as "git", needed to fetch, never a secret), a password is removed;
//   - scp-like remotes (user@host:path) keep the user name, anything after
//     a ':' in it is removed;
//   - the query string and the fragment are removed: git remotes do not
//     need them and they are where access tokens ride.
//
// Paths without a scheme are returned unchanged. An unparseable URL is an
// error rather than being recorded as is.
func SanitizeURL(raw string) (string, error) {
	if raw == "" {
		return "", fmt.Errorf("empty URL")
	}
	if strings.ContainsAny(raw, " \t\r\n") {
		return "", fmt.Errorf("URL %q contains white space", redactForError(raw))
	}
	if user, host, path, ok := scpLike(raw); ok {
		if i := strings.IndexByte(user, ':'); i >= 0 {
			user = user[:i]
		}
		if user != "" {
			return user + "@" + host + ":" + path, nil
		}
		return host + ":" + path, nil
	}
	if !strings.Contains(raw, "://") {
		return raw, nil // a local path
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("parsing URL %q: malformed URL", redactForError(raw))
	}
	if u.Opaque != "" || u.Host == "" && u.Scheme != "file" {
		return "", fmt.Errorf("URL %q has no host", redactForError(raw))
	}
	switch strings.ToLower(u.Scheme) {
	case "ssh", "git+ssh":
		if u.User != nil && u.User.Username() != "" {
			u.User = url.User(u.User.Username())
		} else {
			u.User = nil
		}
	default:
		u.User = nil
	}
	u.RawQuery, u.ForceQuery = "", false
	u.Fragment, u.RawFragment = "", ""
	return u.String(), nil
}

// scpLike splits git's scp-like syntax [user@]host:path. It is scp-like
// when there is no "://" and a ':' comes before any '/'.
func scpLike(s string) (user, host, path string, ok bool) {
	if strings.Contains(s, "://") {
		return "", "", "", false
	}
	colon := strings.IndexByte(s, ':')
	slash := strings.IndexByte(s, '/')
	if colon <= 0 || (slash >= 0 && slash < colon) {
		return "", "", "", false
	}
	hostPart := s[:colon]
	path = s[colon+1:]
	if at := strings.LastIndexByte(hostPart, '@'); at >= 0 {
		user, hostPart = hostPart[:at], hostPart[at+1:]
	} else if at := strings.LastIndexByte(s, '@'); at > colon {
		// user:password@host:path: the first ':' was inside the user info.
		rest := s[at+1:]
		c2 := strings.IndexByte(rest, ':')
		if c2 <= 0 {
			return "", "", "", false
		}
		return s[:at], rest[:c2], rest[c2+1:], true
	}
	if hostPart == "" || path == "" {
		return "", "", "", false
	}
	// A single letter before ':' is a Windows drive, not a host.
	if len(hostPart) == 1 && user == "" {
		return "", "", "", false
	}
	return user, hostPart, path, true
}

// GitURI renders a (sanitized) git remote and ref as a SLSA/SPDX download
// location: "git+<url>@<ref>". scp-like remotes become ssh:// URLs;
// git:// URLs and URLs already prefixed with "git+" are not prefixed again.
// An empty ref leaves out "@<ref>".
func GitURI(repo, ref string) string {
	u := repo
	if user, host, path, ok := scpLike(repo); ok {
		if user != "" {
			user += "@"
		}
		u = "ssh://" + user + host + "/" + strings.TrimPrefix(path, "/")
	}
	if !strings.HasPrefix(u, "git+") && !strings.HasPrefix(u, "git://") {
		u = "git+" + u
	}
	if ref != "" {
		u += "@" + ref
	}
	return u
}

var (
	urlInText = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://[^\s"'<>]+`)
	secretKey = regexp.MustCompile(`(?i)(token|secret|passw|pwd|auth|key|sig|credential|session|code|jwt|bearer|^x-amz-|^x-goog-)`)
)

// RedactValue removes credentials from URLs inside a free-form value (a
// build arg): user info and query parameters whose names look like
// secrets are removed, and so is a fragment that carries parameters.
// Other text is kept as is.
func RedactValue(v string) string {
	return urlInText.ReplaceAllStringFunc(v, func(s string) string {
		u, err := url.Parse(s)
		if err != nil {
			return "REDACTED"
		}
		changed := false
		if u.User != nil {
			u.User = nil
			changed = true
		}
		if u.RawQuery != "" {
			q, err := url.ParseQuery(u.RawQuery)
			if err != nil {
				u.RawQuery = ""
				changed = true
			} else {
				for k := range q {
					if secretKey.MatchString(k) {
						q.Del(k)
						changed = true
					}
				}
				if changed {
					u.RawQuery = q.Encode()
				}
			}
		}
		if strings.Contains(u.Fragment, "=") {
			u.Fragment, u.RawFragment = "", ""
			changed = true
		}
		if !changed {
			return s
		}
		return u.String()
	})
}

// redactForError shortens a URL for an error message without credentials.
func redactForError(s string) string {
	if i := strings.Index(s, "://"); i >= 0 {
		rest := s[i+3:]
		if at := strings.IndexByte(rest, '@'); at >= 0 {
			if sl := strings.IndexByte(rest, '/'); sl < 0 || at < sl {
				s = s[:i+3] + "REDACTED@" + rest[at+1:]
			}
		}
	}
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s = s[:i] + "…"
	}
	return s
}
