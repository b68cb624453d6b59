package gen

import (
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"sort"
	"strings"
)

// rng is splitmix64: tiny, and fixed forever (math/rand's streams are not
// promised to stay the same across Go releases).
type rng struct{ s uint64 }

func newRNG(seed string, n int) *rng {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s/%d", seed, n)
	return &rng{s: h.Sum64()}
}

func (r *rng) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

func (r *rng) intn(n int) int { return int(r.next() % uint64(n)) }

func (r *rng) word() string { return words[r.intn(len(words))] }

func (r *rng) words(n int) string {
	ws := make([]string, n)
	for i := range ws {
		ws[i] = r.word()
	}
	return strings.Join(ws, " ")
}

func capitalize(s string) string { return strings.ToUpper(s[:1]) + s[1:] }

func camel(s string) string {
	var b strings.Builder
	up := true
	for _, c := range s {
		if c == '_' || c == '-' || c == '/' || c == '.' {
			up = true
			continue
		}
		if up && c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		up = false
		b.WriteRune(c)
	}
	return b.String()
}

var words = strings.Fields(`account status reply boost favourite bookmark timeline notification
follow mention hashtag media attachment poll option filter list conversation
direct public local federated instance domain block mute report appeal
moderation admin setting preference profile avatar header field note
language translation content warning sensitive spoiler visibility edit
history quote card preview embed link server relay webhook rule announcement
reaction emoji picker compose search result trend tag explore suggestion
onboarding interaction policy request approval session token scope
application credential device subscription push alert digest queue worker
delivery inbox outbox activity actor object collection signature key`)

// dep is a gem or an npm package with its version.
type dep struct {
	name, version string
}

var gemNames = strings.Fields(`rails pg makara pghero dotenv puma sidekiq sidekiq-scheduler
sidekiq-unique-jobs redis hiredis-client devise devise-two-factor doorkeeper
omniauth omniauth-saml pundit rack-attack rack-cors aws-sdk-s3 fog-openstack
kaminari http httplog idn-ruby addressable nokogiri oj ox parslet
premailer-rails json-ld webauthn rqrcode sanitize simple_form
strong_migrations twitter-text chewy blurhash`)

var packageNames = strings.Fields(`@babel/runtime @formatjs/intl-pluralrules @github/webauthn-json
@rails/ujs @react-spring/web @reduxjs/toolkit @use-gesture/react
abortcontroller-polyfill arrow-key-navigation autoprefixer axios blurhash
classnames cocoon-js-vanilla color-blend core-js cross-env detect-passive-events
emoji-mart escape-html exif-js fuzzysort history hoist-non-react-statics
http-link-header idb immutable intl-messageformat js-yaml lande lodash marky
path-complete-extname postcss prop-types punycode react react-dom react-helmet
react-immutable-proptypes react-immutable-pure-component react-intl
react-overlays react-redux react-redux-loading-bar react-router-dom
react-select react-sparklines react-textarea-autosize react-toggle redux-immutable
requestidlecallback reselect sass stacktrace-js stringz substring-trie
tesseract.js use-debounce vite workbox-window`)

func version(name string, majorMax int) string {
	r := newRNG("version/"+name, 0)
	return fmt.Sprintf("%d.%d.%d", 1+r.intn(majorMax), r.intn(20), r.intn(12))
}

func gemList() []dep {
	out := make([]dep, len(gemNames))
	for i, n := range gemNames {
		out[i] = dep{n, version(n, 8)}
	}
	for i := range out {
		switch out[i].name {
		case "rails":
			out[i].version = "8.0.2"
		case BumpedGem:
			out[i].version = "6.6.0"
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

func packageList() []dep {
	out := make([]dep, len(packageNames))
	for i, n := range packageNames {
		out[i] = dep{n, version(n, 18)}
	}
	for i := range out {
		switch out[i].name {
		case "react", "react-dom":
			out[i].version = "18.3.1"
		case BumpedPackage:
			out[i].version = "1.8.3"
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

func constraint(v string) string {
	parts := strings.Split(v, ".")
	return parts[0] + "." + parts[1]
}

func gemfile(gems []dep) string {
	var b strings.Builder
	b.WriteString("# frozen_string_literal: true\n\nsource 'https://rubygems.org'\nruby '>= 3.2.0', '< 3.5.0'\n\n")
	for _, g := range gems {
		fmt.Fprintf(&b, "gem '%s', '~> %s'\n", g.name, constraint(g.version))
	}
	return b.String()
}

func gemfileLock(gems []dep) string {
	var b strings.Builder
	b.WriteString("GEM\n  remote: https://rubygems.org/\n  specs:\n")
	for _, g := range gems {
		fmt.Fprintf(&b, "    %s (%s)\n", g.name, g.version)
	}
	b.WriteString("\nPLATFORMS\n  ruby\n  x86_64-linux\n\nDEPENDENCIES\n")
	for _, g := range gems {
		fmt.Fprintf(&b, "  %s (~> %s)\n", g.name, constraint(g.version))
	}
	b.WriteString("\nRUBY VERSION\n   ruby 3.4.1p0\n\nBUNDLED WITH\n   2.6.2\n")
	return b.String()
}

func packageJSON(pkgs []dep) string {
	var b strings.Builder
	b.WriteString("{\n  \"name\": \"@mastodon/mastodon\",\n  \"license\": \"AGPL-3.0-or-later\",\n  \"packageManager\": \"yarn@4.5.3\",\n  \"engines\": {\n    \"node\": \">=18\"\n  },\n  \"private\": true,\n  \"dependencies\": {\n")
	for i, p := range pkgs {
		comma := ","
		if i == len(pkgs)-1 {
			comma = ""
		}
		fmt.Fprintf(&b, "    %q: \"^%s\"%s\n", p.name, constraint(p.version)+".0", comma)
	}
	b.WriteString("  }\n}\n")
	return b.String()
}

func yarnLock(pkgs []dep) string {
	var b strings.Builder
	b.WriteString("# This file is generated by running \"yarn install\" inside your project.\n# Manual changes might be lost - proceed with caution!\n\n__metadata:\n  version: 8\n  cachekey: 10c0\n")
	for _, p := range pkgs {
		sum := sha512.Sum512([]byte(p.name + "@" + p.version))
		fmt.Fprintf(&b, "\n\"%s@npm:^%s.0\":\n  version: %s\n  resolution: \"%s@npm:%s\"\n  checksum: 10c0/%s\n  languageName: node\n  linkType: hard\n",
			p.name, constraint(p.version), p.version, p.name, p.version, hex.EncodeToString(sum[:]))
	}
	return b.String()
}

var jsComponents = strings.Fields(`status status_content status_action_bar account avatar
display_name relative_timestamp media_gallery poll button icon_button
dropdown_menu modal_root column column_header load_more scrollable_list
hashtag short_number permalink attachment_list autosuggest_textarea
autosuggest_input error_boundary loading_indicator missing_indicator
navigation_portal picture_in_picture_placeholder radio_button regeneration_indicator
setting_text spoiler_button status_list account_list domain verified_badge
edited_timestamp gifv animated_number admin_trends server_banner`)

var jsFeatures = strings.Fields(`compose home_timeline public_timeline community_timeline
notifications account_timeline status hashtag_timeline bookmarked_statuses
favourited_statuses lists list_timeline direct_timeline explore search
follow_requests blocks mutes domain_blocks pinned_statuses followers following
reblogs favourites getting_started keyboard_shortcuts onboarding about
privacy_policy report filters interaction_modal picture_in_picture video audio
ui emoji alt_text_modal closed_registrations_modal`)

var jsReducers = strings.Fields(`accounts statuses timelines notifications compose
relationships lists search settings media_attachments polls filters
conversations trends markers announcements`)

var styleFiles = strings.Fields(`variables mixins basics components forms accounts
statuses admin rtl emoji_picker`)

var locales = strings.Fields(`en fr de es ja pt-BR it nl pl ru zh-CN ko sv cs uk ca eu gl fi da`)

var models = strings.Fields(`account status media_attachment notification follow
favourite bookmark mention tag poll list conversation domain_block report
user session_activation web_push_subscription custom_emoji preview_card
status_edit account_note filter announcement relay instance webhook
appeal rule ip_block email_domain_block`)

var controllers = strings.Fields(`application home statuses accounts tags media
follower_accounts following_accounts settings/preferences settings/profiles
auth/sessions auth/registrations api/v1/statuses api/v1/accounts
api/v1/timelines/home api/v1/notifications admin/accounts admin/reports
well_known/webfinger activitypub/inboxes`)

var services = strings.Fields(`post_status fan_out_on_write follow unfollow
reblog favourite process_mentions fetch_link_card resolve_account
batched_remove_status`)

func jsComponent(name string, n int) string {
	r := newRNG("js/"+name, n)
	comp := camel(name[strings.LastIndex(name, "/")+1:])
	var b strings.Builder
	fmt.Fprintf(&b, "// Mastodon-shaped benchmark source: %s\nimport PropTypes from 'prop-types';\nimport { PureComponent } from 'react';\n\n", name)
	b.WriteString("import { defineMessages, injectIntl } from 'react-intl';\n\nimport ImmutablePropTypes from 'react-immutable-proptypes';\n\n")
	b.WriteString("const messages = defineMessages({\n")
	nm := 4 + r.intn(10)
	for i := 0; i < nm; i++ {
		w := r.word()
		fmt.Fprintf(&b, "  %s%d: { id: '%s.%s', defaultMessage: '%s' },\n", w, i, strings.ReplaceAll(name, "/", "."), w, capitalize(r.words(3+r.intn(6))))
	}
	b.WriteString("});\n\n")
	fmt.Fprintf(&b, "class %s extends PureComponent {\n\n  static propTypes = {\n", comp)
	np := 3 + r.intn(6)
	for i := 0; i < np; i++ {
		fmt.Fprintf(&b, "    %s: %s,\n", r.word(), []string{"PropTypes.func", "PropTypes.bool", "ImmutablePropTypes.map", "PropTypes.string.isRequired", "ImmutablePropTypes.list"}[r.intn(5)])
	}
	b.WriteString("    intl: PropTypes.object.isRequired,\n  };\n\n")
	nh := 3 + r.intn(9)
	for i := 0; i < nh; i++ {
		a, c := r.word(), r.word()
		fmt.Fprintf(&b, "  handle%s%d = (e) => {\n    const { %s, %s } = this.props;\n\n    if (e && e.button !== 0) {\n      return;\n    }\n\n    // %s\n    this.props.on%s(%s.get('%s'), %s);\n  };\n\n",
			camel(a), i, a, c, r.words(8), camel(c), a, r.word(), c)
	}
	b.WriteString("  render () {\n    const { intl } = this.props;\n\n    return (\n")
	fmt.Fprintf(&b, "      <div className='%s'>\n", strings.ReplaceAll(name, "/", "__"))
	nr := 2 + r.intn(6)
	for i := 0; i < nr; i++ {
		w := r.word()
		fmt.Fprintf(&b, "        <span className='%s__%s' title={intl.formatMessage(messages.%s0 || messages.%s)}>{this.props.%s}</span>\n", comp, w, w, w, w)
	}
	fmt.Fprintf(&b, "      </div>\n    );\n  }\n\n}\n\nexport default injectIntl(%s);\n", comp)
	return b.String()
}

func jsModule(name string, n int) string {
	r := newRNG("jsmod/"+name, n)
	var b strings.Builder
	fmt.Fprintf(&b, "// Mastodon-shaped benchmark source: %s\nimport { Map as ImmutableMap, List as ImmutableList, fromJS } from 'immutable';\n\n", name)
	nc := 4 + r.intn(8)
	for i := 0; i < nc; i++ {
		fmt.Fprintf(&b, "export const %s_%s_%d = '%s_%s_%d';\n", strings.ToUpper(r.word()), strings.ToUpper(r.word()), i, strings.ToUpper(r.word()), strings.ToUpper(r.word()), i)
	}
	b.WriteString("\nconst initialState = ImmutableMap({\n")
	for i := 0; i < 3+r.intn(4); i++ {
		fmt.Fprintf(&b, "  %s: ImmutableList(),\n", r.word())
	}
	b.WriteString("});\n\n")
	nf := 3 + r.intn(8)
	for i := 0; i < nf; i++ {
		a, c := r.word(), r.word()
		fmt.Fprintf(&b, "export function %s%s%d(state = initialState, action) {\n  switch (action.type) {\n  case '%s':\n    return state.update('%s', list => list.push(fromJS(action.%s)));\n  case '%s':\n    return state.set('%s', ImmutableList());\n  default:\n    return state;\n  }\n}\n\n",
			a, camel(c), i, strings.ToUpper(a), c, a, strings.ToUpper(c), r.word())
	}
	return b.String()
}

func jsEntrypoint() string {
	var b strings.Builder
	b.WriteString("// Mastodon-shaped benchmark source: entrypoints/application\nimport './public-path';\nimport main from 'mastodon/main';\n\n")
	for _, c := range jsComponents[:10] {
		fmt.Fprintf(&b, "import './../mastodon/components/%s';\n", c)
	}
	b.WriteString("\nmain();\n")
	return b.String()
}

func scss(name string, n int) string {
	r := newRNG("scss/"+name, n)
	var b strings.Builder
	fmt.Fprintf(&b, "// Mastodon-shaped benchmark styles: %s\n", name)
	for i := 0; i < 10+r.intn(25); i++ {
		fmt.Fprintf(&b, ".%s__%s {\n  color: #%06x;\n  padding: %dpx %dpx;\n  border-radius: %dpx;\n}\n\n", r.word(), r.word(), r.intn(1<<24), r.intn(20), r.intn(20), r.intn(8))
	}
	return b.String()
}

func localeYML(lang string, n int) string {
	r := newRNG("locale/"+lang, n)
	var b strings.Builder
	fmt.Fprintf(&b, "---\n%s:\n", lang)
	for _, sec := range []string{"about", "accounts", "admin", "application_mailer", "auth", "filters", "notifications", "settings", "statuses"} {
		fmt.Fprintf(&b, "  %s:\n", sec)
		for i := 0; i < 6+r.intn(10); i++ {
			fmt.Fprintf(&b, "    %s_%d: \"%s\"\n", r.word(), i, capitalize(r.words(3+r.intn(9))))
		}
	}
	return b.String()
}

func rubyClass(name, parent string, n int) string {
	r := newRNG("rb/"+name, n)
	class := camel(name)
	var b strings.Builder
	fmt.Fprintf(&b, "# frozen_string_literal: true\n\nclass %s < %s\n", class, parent)
	for i := 0; i < 2+r.intn(4); i++ {
		fmt.Fprintf(&b, "  include %s\n", camel(r.word()+"_"+r.word()))
	}
	b.WriteString("\n")
	for i := 0; i < 3+r.intn(8); i++ {
		a, c := r.word(), r.word()
		fmt.Fprintf(&b, "  def %s_%s%d\n    return if %s.nil?\n\n    %s.where(%s: %s).limit(%d)\n  end\n\n", a, c, i, a, camel(c), r.word(), a, 1+r.intn(80))
	}
	fmt.Fprintf(&b, "  def edited_at\n    @edited_at\n  end\nend\n")
	return b.String()
}

const dockerignore = `.git
.env*
node_modules
public/packs
public/assets
tmp
log
`

const webpackerYML = `# Asset compiler settings (read by the stand-in bin/rails assets:precompile)
default: &default
  source_path: app/javascript
  public_root_path: public
  public_output_path: packs

production:
  <<: *default
`

const readme = `# Mastodon-shaped benchmark application

Generated by vmbuild's bench/internal/gen. bin/bundle, bin/yarn and
bin/rails are stand-ins for bundler, yarn and the Rails asset compiler: they
do deterministic CPU work proportional to their inputs and write
deterministic outputs (/usr/local/bundle, node_modules, public/packs).
`

// Dockerfile is the upstream's own Dockerfile, shaped like Mastodon's
// official one: the gems from Gemfile*, then the whole tree (COPY . .) and
// yarn install and assets:precompile on it, then the final stage with the
// sources, the compiled assets and the gems. Its yarn and precompile steps
// depend on every file of the tree, so they re-run on every commit.
// (bin/bundle is copied next to Gemfile*: upstream's bundler comes with its
// Ruby base image, the stand-in with the repository.)
const Dockerfile = `# Mastodon-shaped benchmark upstream (generated by vmbuild bench/internal/gen).
# Shaped like Mastodon's official Dockerfile.
ARG BASE_IMAGE=busybox:latest

FROM ${BASE_IMAGE} AS base
ENV RAILS_ENV="production" \
    NODE_ENV="production" \
    BUNDLE_PATH="/usr/local/bundle"
WORKDIR /opt/mastodon

FROM base AS bundler
COPY Gemfile* .ruby-version ./
COPY bin/bundle bin/
RUN sh bin/bundle install

FROM base AS precompiler
COPY . .
COPY --from=bundler /usr/local/bundle/ /usr/local/bundle/
RUN sh bin/yarn install
RUN sh bin/rails assets:precompile

FROM base AS mastodon
COPY . .
COPY --from=precompiler /opt/mastodon/public/packs /opt/mastodon/public/packs
COPY --from=bundler /usr/local/bundle/ /usr/local/bundle/
EXPOSE 3000
CMD ["sh"]
`

// TunedDockerfile is the hand-tuned Dockerfile the benchmark builds
// alongside (it is not part of the upstream repository): each stage copies
// only its inputs, so each RUN re-runs only when its inputs change, and the
// final stage copies with --link, so that its layers do not depend on one
// another.
const TunedDockerfile = `# Hand-tuned Dockerfile for the Mastodon-shaped benchmark upstream
# (vmbuild bench/internal/gen): each stage copies only its inputs.
ARG BASE_IMAGE=busybox:latest

FROM ${BASE_IMAGE} AS base
ENV RAILS_ENV="production" \
    NODE_ENV="production" \
    BUNDLE_PATH="/usr/local/bundle"
WORKDIR /opt/mastodon

FROM base AS bundler
COPY Gemfile Gemfile.lock ./
COPY bin/bundle bin/
RUN sh bin/bundle install

FROM base AS yarn
COPY package.json yarn.lock ./
COPY bin/yarn bin/
RUN sh bin/yarn install

FROM base AS precompiler
COPY app/javascript app/javascript
COPY config/locales config/locales
COPY config/webpacker.yml config/
COPY bin/rails bin/
COPY --from=bundler /usr/local/bundle/ /usr/local/bundle/
COPY --from=yarn /opt/mastodon/node_modules node_modules
RUN sh bin/rails assets:precompile

FROM base AS mastodon
COPY --link . .
COPY --link --from=precompiler /opt/mastodon/public/packs public/packs
COPY --link --from=bundler /usr/local/bundle/ /usr/local/bundle/
EXPOSE 3000
CMD ["sh"]
`

// TunedDockerfileName is the file name the harness gives TunedDockerfile.
const TunedDockerfileName = "Dockerfile.tuned"

// NativeRecipe is the vmbuild recipe with native layers and precise
// inputs. gitURL is the upstream (git://…/mastodon.git), base the busybox
// base image by digest.
func NativeRecipe(name, gitURL, base string) string {
	return fmt.Sprintf(`# vmbuild benchmark: native layers with precise inputs (bench/internal/gen).
apiVersion: vmbuild/v1
name: %s
upstream:
  git: %s
  ref: main
base: %s
platform: linux/amd64
build:
  layers:
    - name: bundle
      inputs: [Gemfile, Gemfile.lock, bin/bundle]
      run: sh bin/bundle install
      outputs: [/usr/local/bundle]
    - name: yarn
      inputs: [package.json, yarn.lock, bin/yarn]
      run: sh bin/yarn install
      outputs: [/opt/mastodon/node_modules]
    - name: assets
      inputs: ["app/javascript/**", "config/locales/**", config/webpacker.yml, bin/rails]
      needs: [bundle, yarn]
      run: sh bin/rails assets:precompile
      outputs: [/opt/mastodon/public/packs]
image:
  workdir: /opt/mastodon
  env:
    RAILS_ENV: production
    NODE_ENV: production
    BUNDLE_PATH: /usr/local/bundle
  cmd: [sh]
  expose: [3000]
`, name, gitURL, base)
}

// DockerfileRecipe is the vmbuild recipe that builds upstream's Dockerfile.
func DockerfileRecipe(name, gitURL, base string) string {
	return fmt.Sprintf(`# vmbuild benchmark: upstream's Dockerfile (bench/internal/gen).
apiVersion: vmbuild/v1
name: %s
upstream:
  git: %s
  ref: main
platform: linux/amd64
build:
  dockerfile:
    path: Dockerfile
    target: mastodon
    args:
      BASE_IMAGE: %s
`, name, gitURL, base)
}
