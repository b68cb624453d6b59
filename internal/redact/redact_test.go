package redact

import (
	"strings"
	"testing"
)

func TestURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"https://user:ghp_secret@github.com/x/y.git", "https://github.com/x/y.git"},
		{"https://ghp_tokenonly@github.com/x/y.git", "https://github.com/x/y.git"},
		{"https://oauth2:glpat-tok@gitlab.example.com/g/p.git", "https://gitlab.example.com/g/p.git"},
		{"https://gitlab.example.com/g/p.git?private_token=tok&x=1#access_token=tok", "https://gitlab.example.com/g/p.git"},
		{"http://u:p@127.0.0.1:8080/r.git", "http://127.0.0.1:8080/r.git"},
		{"ssh://git@github.com/x/y.git", "ssh://git@github.com/x/y.git"},
		{"ssh://git:sshpass@github.com:22/x/y.git", "ssh://git@github.com:22/x/y.git"},
		{"git+ssh://deploy:pw@host/x.git", "git+ssh://deploy@host/x.git"},
		{"git://127.0.0.1/x.git", "git://127.0.0.1/x.git"},
		{"git://user:pw@127.0.0.1/x.git", "git://127.0.0.1/x.git"},
		{"git@github.com:x/y.git", "git@github.com:x/y.git"},
		{"git:scppass@github.com:x/y.git", "git@github.com:x/y.git"},
		{"/srv/git/x.git", "/srv/git/x.git"},
	} {
		got, err := URL(tc.in)
		if err != nil {
			t.Errorf("URL(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("URL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	for _, bad := range []string{"https://user:pw@exa mple.com/x", "https://%zz@host/x", ""} {
		_, err := URL(bad)
		if err == nil {
			t.Errorf("URL(%q) accepted", bad)
		} else if strings.Contains(err.Error(), "pw") || strings.Contains(err.Error(), "%zz") {
			t.Errorf("URL(%q) error echoes the credential: %v", bad, err)
		}
	}
}

func TestValue(t *testing.T) {
	if got := Value("a https://u:p@h/x?sig=1&keep=2 b"); got != "a https://h/x?keep=2 b" {
		t.Errorf("Value = %q", got)
	}
}

func TestText(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		// Every '@' of the user info goes, not only up to the first.
		{"git ls-remote https://user:p@ss-SECRET@host.example/app.git failed", "git ls-remote https://host.example/app.git failed"},
		{"fetching https://host/app.git?private_token=SECRET: 404", "fetching https://host/app.git… 404"},
		{"GET https://reg.example/v2/x/blobs/uploads/abc?_state=SECRET&digest=sha256:1", "GET https://reg.example/v2/x/blobs/uploads/abc…"},
		{"ssh://git@github.com/x/y.git", "ssh://github.com/x/y.git"},
		{"no url here", "no url here"},
	} {
		if got := Text(tc.in); got != tc.want {
			t.Errorf("Text(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if strings.Contains(Text(tc.in), "SECRET") {
			t.Errorf("Text(%q) keeps the secret", tc.in)
		}
	}
}

func TestCredentials(t *testing.T) {
	for in, want := range map[string]string{
		"https://github.com/mastodon/mastodon.git":   "",
		"git@github.com:mastodon/mastodon.git":       "",
		"ssh://git@github.com/mastodon/mastodon.git": "",
		"git://127.0.0.1/x.git":                      "",
		"./upstream.git":                             "",
		"https://host/app.git?private_token=SECRET":  "a query string",
		"https://user:p@ss-SECRET@host/app.git":      "a password in the user info",
		"https://ghp_token@github.com/x/y.git":       "a user name (which can be a token)",
		"ssh://git:pw@github.com/x/y.git":            "a password in the user info",
		"git:pw@github.com:x/y.git":                  "a password in the user info",
		"https://host/app.git#access_token=SECRET":   "a fragment",
		"http://u:p@127.0.0.1:8080/r.git?x=1":        "a password in the user info and a query string",
	} {
		if got := Credentials(in); got != want {
			t.Errorf("Credentials(%q) = %q, want %q", in, got, want)
		}
	}
}
