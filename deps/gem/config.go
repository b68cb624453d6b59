package gem

import (
	"fmt"
	"net/url"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/vmbuild/vmbuild/deps"
)

// Bundler settings, as `bundle config` names them ("without",
// "mirror.https://rubygems.org/"). Three layers, in Bundler's order of
// precedence: the caller's options, the tree's .bundle/config (Bundler's
// "local" config), then the BUNDLE_* environment the caller passes.
// Credentials (host keys such as BUNDLE_GEMS__EXAMPLE__COM) are never
// read.

// settingKeys are the settings Resolve uses; everything else is ignored.
func usedSetting(k string) bool {
	switch k {
	case "without", "with", "only", "force_ruby_platform":
		return true
	}
	return strings.HasPrefix(k, "mirror.")
}

// settingFromEnvKey turns "BUNDLE_MIRROR__HTTPS://RUBYGEMS__ORG/" into
// "mirror.https://rubygems.org/" (Bundler::Settings#all).
func settingFromEnvKey(k string) (string, bool) {
	rest, ok := strings.CutPrefix(k, "BUNDLE_")
	if !ok {
		return "", false
	}
	rest = strings.ReplaceAll(rest, "___", "-")
	rest = strings.ReplaceAll(rest, "__", ".")
	return strings.ToLower(rest), true
}

// parseBundleConfig reads a .bundle/config file (YAML, keys as
// BUNDLE_*; hand-written keys with dots are accepted as Bundler accepts
// them) into settings.
func parseBundleConfig(file string, data []byte) (map[string]string, error) {
	var raw map[string]any
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, inputErr(file, 0, "", "cannot parse Bundler config: %v", err)
	}
	out := map[string]string{}
	for k, v := range raw {
		if strings.HasPrefix(k, "#") {
			continue
		}
		// load_config: a URL key gets a trailing slash, dots become "__"
		lk := strings.ToLower(k)
		if (strings.Contains(lk, "http:") || strings.Contains(lk, "https:")) && !strings.HasSuffix(k, "/") && !strings.HasSuffix(lk, "__fallback_timeout") && !strings.HasSuffix(lk, ".fallback_timeout") {
			k += "/"
		}
		k = strings.ReplaceAll(k, ".", "__")
		s, ok := settingFromEnvKey(k)
		if !ok || !usedSetting(s) {
			continue
		}
		switch v := v.(type) {
		case string:
			out[s] = v
		case bool:
			out[s] = fmt.Sprint(v)
		case []any:
			parts := make([]string, len(v))
			for i, e := range v {
				parts[i] = fmt.Sprint(e)
			}
			out[s] = strings.Join(parts, ":")
		default:
			out[s] = fmt.Sprint(v)
		}
	}
	return out, nil
}

// settingsFromEnv picks the BUNDLE_* variables Resolve uses.
func settingsFromEnv(env map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range env {
		if s, ok := settingFromEnvKey(k); ok && usedSetting(s) {
			out[s] = v
		}
	}
	return out
}

// groupList is Bundler's to_array: "a:b" or "a b".
func groupList(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool { return r == ':' || r == ' ' })
}

// mirrors maps remotes to mirrors as Bundler::Settings::Mirrors does:
// "mirror.all" for every remote, else the remote's normalized URL, else
// its host. Fallback timeouts (use the mirror only if it answers) are
// ignored: a lock must not depend on what answered.
type mirrors struct {
	all    string
	byKey  map[string]string
	source map[string]string // mirror key → where it came from, for messages
}

func newMirrors(settings map[string]string, origin func(key string) string) (*mirrors, error) {
	m := &mirrors{byKey: map[string]string{}, source: map[string]string{}}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		rest, ok := strings.CutPrefix(k, "mirror.")
		if !ok || strings.HasSuffix(rest, ".fallback_timeout") {
			continue
		}
		rest = strings.TrimSuffix(rest, "/")
		val := normalizeRemote(settings[k])
		u, err := url.Parse(val)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("Bundler setting %s (%s): mirror %q is not an http(s) URL", k, origin(k), deps.RedactURL(val))
		}
		if u.User != nil {
			return nil, fmt.Errorf("Bundler setting %s (%s): mirror URL carries credentials; give them to the fetcher instead", k, origin(k))
		}
		if rest == "all" {
			m.all = val
			m.source["all"] = origin(k)
			continue
		}
		key := strings.ToLower(rest)
		if strings.Contains(key, "://") {
			key = normalizeRemote(key)
		}
		m.byKey[key] = val
		m.source[key] = origin(k)
	}
	return m, nil
}

// For returns the URL to download from for a lockfile remote, and
// whether a mirror applied.
func (m *mirrors) For(remote string) (string, bool) {
	if m.all != "" {
		return m.all, true
	}
	r := strings.ToLower(normalizeRemote(remote))
	if v, ok := m.byKey[r]; ok {
		return v, true
	}
	if u, err := url.Parse(r); err == nil {
		if v, ok := m.byKey[u.Host]; ok {
			return v, true
		}
	}
	return normalizeRemote(remote), false
}
