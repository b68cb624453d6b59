// Package redact is vmbuild's one place for keeping credentials out of
// what it records and prints: URLs published in provenance, annotations
// and lock files ([URL]), URLs in build arguments ([Value]), any text that
// may carry a URL, such as a git or registry error ([Text]), and the check
// that refuses credentials where a recipe names a URL ([Credentials]).
package redact

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// URL returns a git remote URL safe to publish:
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
func URL(raw string) (string, error) {
	if raw == "" {
		return "", fmt.Errorf("empty URL")
	}
	if strings.ContainsAny(raw, " \t\r\n") {
		return "", fmt.Errorf("URL %q contains white space", forError(raw))
	}
	if user, host, path, ok := SplitSCP(raw); ok {
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
		return "", fmt.Errorf("parsing URL %q: malformed URL", forError(raw))
	}
	if u.Opaque != "" || u.Host == "" && u.Scheme != "file" {
		return "", fmt.Errorf("URL %q has no host", forError(raw))
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

// SplitSCP splits git's scp-like syntax [user@]host:path. It is scp-like
// when there is no "://" and a ':' comes before any '/'.
func SplitSCP(s string) (user, host, path string, ok bool) {
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

var (
	urlInText = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://[^\s"'<>]+`)
	secretKey = regexp.MustCompile(`(?i)(token|secret|passw|pwd|auth|key|sig|credential|session|code|jwt|bearer|^x-amz-|^x-goog-)`)
)

// Value removes credentials from URLs inside a free-form value (a
// build arg): user info and query parameters whose names look like
// secrets are removed, and so is a fragment that carries parameters.
// Other text is kept as is.
func Value(v string) string {
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

// forError shortens a URL for an error message without credentials.
func forError(s string) string {
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

// Text removes credentials from every URL in free text (a git or registry
// error, a progress title): the user info, whatever it holds, and the
// query and fragment, which become "…". Other text is kept.
func Text(s string) string {
	return urlInText.ReplaceAllStringFunc(s, func(m string) string {
		u, err := url.Parse(m)
		if err != nil {
			return forError(m)
		}
		u.User = nil
		q := u.RawQuery != "" || u.ForceQuery || u.Fragment != ""
		u.RawQuery, u.ForceQuery = "", false
		u.Fragment, u.RawFragment = "", ""
		if q {
			return u.String() + "…"
		}
		return u.String()
	})
}

// Credentials reports what in a URL can carry a credential, or "" if
// nothing does: a password or a user name on http(s) and git:// (GitHub
// and GitLab take a token as the user name), a query string or a
// fragment. An ssh user name (git@host:path, ssh://git@host/…) is an
// account name, not a secret, and is allowed; an ssh password is not.
func Credentials(raw string) string {
	if user, _, _, ok := SplitSCP(raw); ok {
		if strings.Contains(user, ":") {
			return "a password in the user info"
		}
		return ""
	}
	if !strings.Contains(raw, "://") {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	var found []string
	if u.User != nil {
		_, hasPass := u.User.Password()
		switch scheme := strings.ToLower(u.Scheme); {
		case hasPass:
			found = append(found, "a password in the user info")
		case scheme != "ssh" && scheme != "git+ssh" && u.User.Username() != "":
			found = append(found, "a user name (which can be a token)")
		}
	}
	if u.RawQuery != "" || u.ForceQuery {
		found = append(found, "a query string")
	}
	if u.Fragment != "" {
		found = append(found, "a fragment")
	}
	return strings.Join(found, " and ")
}
