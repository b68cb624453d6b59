package gem

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/vmbuild/vmbuild/errs"
)

const richGemfile = `# frozen_string_literal: true
source 'https://rubygems.org'
ruby file: '.ruby-version'
git_source(:gh) { |repo| "https://github.com/#{repo}.git" }
git_source(:corp) do |repo|
  if repo.include?("/")
    "https://git.corp/#{repo}.git"
  else
    "https://git.corp/x/#{repo}.git"
  end
end

=begin
gem 'commented-out'
=end

gem 'rails', '~> 8.1.0'
gem("puma", ">= 6", "< 8")
gem 'pg', ['~> 1.5']
gem 'bootsnap', require: false
gem 'idn-ruby', :require => 'idn'
gem 'tzinfo-data', platforms: %i[windows jruby]
gem 'ffi', platforms: [:mri, :ruby_33], force_ruby_platform: true
gem 'webpush', github: 'mastodon/webpush', ref: '9631ac63'
gem 'pr-gem', github: 'https://github.com/org/repo/pull/42'
gem 'mine', gh: 'me/mine', branch: 'main'
gem 'corp-gem', corp: 'corp-gem', tag: 'v1'
gem 'raw-git', git: 'https://example.com/raw.git', submodules: true, glob: '*.gemspec'
gem 'local', path: './engines/local/'
gem 'scoped', source: 'https://gems.example.com'
gem 'dev', group: :development
gem 'multi', groups: [:development, :test],
  require: false

group :pam, optional: true do
  gem 'pam'
end

group :development, :test do
  gem 'rspec'
  platforms :mri do
    gem 'debug'
  end
  group 'ci' do
    gem 'ci-only'
  end
end

source 'https://gems.example.com' do
  gem 'private-a'
  group :production do
    gem 'private-b'
  end
end

git 'https://example.com/mono.git', branch: 'stable' do
  gem 'mono-a'
  gem 'mono-b', '0.1'
end

path 'vendor/gems' do
  gem 'vendored'
end

github 'rails/rails', branch: 'main' do
  gem 'activesupport'
end

gemspec path: 'lib/thing', development_group: :dev_tools
gem 'last'; gem 'last2'
__END__
anything here is ignored: if ENV['X']
`

func TestParseGemfileRich(t *testing.T) {
	gf, err := ParseGemfile("Gemfile", []byte(richGemfile))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(gf.Sources, " ") != "https://rubygems.org/" {
		t.Errorf("sources = %v", gf.Sources)
	}
	if strings.Join(gf.Ruby, " ") != "file: .ruby-version" {
		t.Errorf("ruby = %v", gf.Ruby)
	}
	if strings.Join(gf.GitSources, " ") != "gh corp" {
		t.Errorf("git sources = %v", gf.GitSources)
	}
	if strings.Join(gf.OptionalGroups, " ") != "pam" {
		t.Errorf("optional groups = %v", gf.OptionalGroups)
	}
	if len(gf.Gemspecs) != 1 || gf.Gemspecs[0] != (GemspecDirective{Path: "lib/thing", DevelopmentGroup: "dev_tools", Line: 69}) {
		t.Errorf("gemspecs = %+v", gf.Gemspecs)
	}
	byName := map[string]*GemfileDep{}
	var names []string
	for _, d := range gf.Deps {
		byName[d.Name] = d
		names = append(names, d.Name)
	}
	want := "rails puma pg bootsnap idn-ruby tzinfo-data ffi webpush pr-gem mine corp-gem raw-git local scoped dev multi pam rspec debug ci-only private-a private-b mono-a mono-b vendored activesupport last last2"
	if strings.Join(names, " ") != want {
		t.Fatalf("gems = %v\nwant   %v", names, want)
	}
	check := func(name, field, got, want string) {
		t.Helper()
		if got != want {
			t.Errorf("%s %s = %q, want %q", name, field, got, want)
		}
	}
	check("rails", "req", byName["rails"].Req.String(), "~> 8.1.0")
	check("rails", "line", strconv.Itoa(byName["rails"].Line), "17")
	check("rails", "groups", strings.Join(byName["rails"].Groups, ","), "default")
	check("puma", "req", byName["puma"].Req.String(), "< 8, >= 6")
	check("pg", "req", byName["pg"].Req.String(), "~> 1.5")
	check("tzinfo-data", "platforms", strings.Join(byName["tzinfo-data"].Platforms, ","), "windows,jruby")
	check("ffi", "platforms", strings.Join(byName["ffi"].Platforms, ","), "mri,ruby_33")
	if !byName["ffi"].ForceRubyPlatform {
		t.Error("ffi: force_ruby_platform not set")
	}
	wp := byName["webpush"].Source
	check("webpush", "source", wp.String(), "git https://github.com/mastodon/webpush.git")
	check("webpush", "ref", wp.Ref, "9631ac63")
	pr := byName["pr-gem"].Source
	check("pr-gem", "url", pr.URL, "https://github.com/org/repo.git")
	check("pr-gem", "ref", pr.Ref, "refs/pull/42/head")
	check("mine", "source", byName["mine"].Source.String(), "gh: me/mine")
	check("mine", "branch", byName["mine"].Source.Branch, "main")
	check("corp-gem", "tag", byName["corp-gem"].Source.Tag, "v1")
	raw := byName["raw-git"].Source
	if raw.URL != "https://example.com/raw.git" || !raw.Submodules || raw.Glob != "*.gemspec" {
		t.Errorf("raw-git source = %+v", raw)
	}
	check("local", "source", byName["local"].Source.String(), "path engines/local")
	check("scoped", "source", byName["scoped"].Source.String(), "rubygems repository https://gems.example.com/")
	check("dev", "groups", strings.Join(byName["dev"].Groups, ","), "development")
	check("multi", "groups", strings.Join(byName["multi"].Groups, ","), "development,test")
	check("pam", "groups", strings.Join(byName["pam"].Groups, ","), "pam")
	check("debug", "groups", strings.Join(byName["debug"].Groups, ","), "development,test")
	check("debug", "platforms", strings.Join(byName["debug"].Platforms, ","), "mri")
	check("ci-only", "groups", strings.Join(byName["ci-only"].Groups, ","), "development,test,ci")
	check("private-a", "source", byName["private-a"].Source.String(), "rubygems repository https://gems.example.com/")
	check("private-b", "groups", strings.Join(byName["private-b"].Groups, ","), "production")
	check("mono-b", "source", byName["mono-b"].Source.String(), "git https://example.com/mono.git")
	check("mono-b", "branch", byName["mono-b"].Source.Branch, "stable")
	check("mono-b", "req", byName["mono-b"].Req.String(), "= 0.1")
	check("vendored", "source", byName["vendored"].Source.String(), "path vendor/gems")
	check("activesupport", "source", byName["activesupport"].Source.String(), "git https://github.com/rails/rails.git")
	check("last2", "line", strconv.Itoa(byName["last2"].Line), "70")
	if byName["last"].Source != nil {
		t.Errorf("last: source %v after blocks closed", byName["last"].Source)
	}
}

func TestParseGemfileRefusals(t *testing.T) {
	for _, c := range []struct {
		name, src string
		line      int
		gem, msg  string
	}{
		{"modifier if", "source 'https://rubygems.org'\ngem 'a'\ngem 'b' if ENV['B']\n", 3, "", "conditional `if`"},
		{"if block", "source 'https://rubygems.org'\nif RUBY_VERSION >= '3'\n  gem 'a'\nend\n", 2, "", "conditional `if`"},
		{"unless modifier", "gem 'a' unless false\n", 1, "", "conditional `unless`"},
		{"case", "case x\nwhen 1 then gem 'a'\nend\n", 1, "", "conditional `case`"},
		{"interpolation", "v = '1'\n", 1, "", "variables and method calls"},
		{"interpolated requirement", "gem 'a', \"~> #{V}\"\n", 1, "a", "string interpolation"},
		{"ENV value", "gem 'a', path: ENV['A_PATH']\n", 1, "a", "`ENV` cannot be evaluated"},
		{"constant statement", "Bundler.settings\n", 1, "", "`Bundler` cannot be evaluated"},
		{"method chain", "gem 'a'\nfoo.bar\n", 2, "", "variables and method calls"},
		{"eval_gemfile expression", "eval_gemfile File.join('a', 'b')\n", 1, "", "`File` cannot be evaluated"},
		{"eval_gemfile without tree", "eval_gemfile 'Gemfile.local'\n", 1, "", "no tree"},
		{"install_if", "install_if -> { true } do\n  gem 'a'\nend\n", 1, "", "install_if"},
		{"install_if option", "gem 'a', install_if: true\n", 1, "a", "install_if"},
		{"env", "env 'CI' do\n  gem 'a'\nend\n", 1, "", "`env`"},
		{"plugin", "plugin 'bundler-multilock'\n", 1, "", "plugins are not supported"},
		{"require", "require 'json'\n", 1, "", "`require` is not part of the Gemfile DSL"},
		{"unknown option", "\ngem 'a', requires: false\n", 2, "a", "unknown option requires:"},
		{"invalid platform", "gem 'a', platforms: :linux\n", 1, "a", "`linux` is not a valid platform"},
		{"branch without git", "gem 'a', branch: 'main'\n", 1, "a", "only allowed for gems with a git source"},
		{"symbol source", "source :rubygems\n", 1, "", "no longer allowed"},
		{"plugin source", "source 'https://x', type: 'git' do\nend\n", 1, "", "plugin sources"},
		{"group without block", "group :test\n", 1, "", "needs a block"},
		{"missing end", "group :test do\n  gem 'a'\n", 3, "", "missing `end`"},
		{"stray end", "gem 'a'\nend\n", 2, "", "unexpected `end`"},
		{"unterminated string", "gem 'a\n", 1, "", "unterminated string"},
		{"symbol gem name", "gem :a\n", 1, "", "needs a name"},
		{"lambda", "gem 'a', require: -> { 1 }\n", 1, "a", "lambda"},
		{"splat", "gem 'a', *OPTS\n", 1, "a", "splat"},
		{"global path", "path 'vendor'\n", 1, "", "global path source"},
		{"heredoc", "gem 'a', <<~EOS\n", 1, "a", "unexpected `<<`"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseGemfile("sub/Gemfile", []byte(c.src))
			var ie *InputError
			if !errors.As(err, &ie) {
				t.Fatalf("err = %v, want *InputError", err)
			}
			if ie.File != "sub/Gemfile" || ie.Line != c.line || ie.Gem != c.gem || !strings.Contains(ie.Msg, c.msg) {
				t.Errorf("err = %q, want line %d gem %q msg ~ %q", err, c.line, c.gem, c.msg)
			}
			if !errors.Is(err, errs.ErrDependency) {
				t.Error("not ErrDependency")
			}
		})
	}
}

func TestLoadGemfileEvalGemfile(t *testing.T) {
	fsys := fstest.MapFS{
		"app/Gemfile":             {Data: []byte("source 'https://rubygems.org'\ngroup :test do\n  eval_gemfile 'gemfiles/test.rb'\nend\ngem 'a'\n")},
		"app/gemfiles/test.rb":    {Data: []byte("gem 'rspec'\neval_gemfile 'more.rb'\n")},
		"app/gemfiles/more.rb":    {Data: []byte("gem 'capybara'\n")},
		"app/Gemfile.escape":      {Data: []byte("eval_gemfile '../../etc/Gemfile'\n")},
		"app/Gemfile.missing":     {Data: []byte("gem 'a'\neval_gemfile 'nope.rb'\n")},
		"app/Gemfile.bad-include": {Data: []byte("eval_gemfile 'gemfiles/bad.rb'\n")},
		"app/gemfiles/bad.rb":     {Data: []byte("gem 'a'\n\ngem 'b' if x\n")},
	}
	gf, err := LoadGemfile(fsys, "app/Gemfile")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range gf.Deps {
		got = append(got, d.Name+"@"+d.File+":"+strconv.Itoa(d.Line)+"["+strings.Join(d.Groups, ",")+"]")
	}
	want := "rspec@app/gemfiles/test.rb:1[test] capybara@app/gemfiles/more.rb:1[test] a@app/Gemfile:5[default]"
	if strings.Join(got, " ") != want {
		t.Errorf("deps = %v\nwant   %v", got, want)
	}
	if len(gf.Files) != 3 {
		t.Errorf("files = %v", gf.Files)
	}
	for name, want := range map[string]string{
		"app/Gemfile.escape":      "app/Gemfile.escape:1: eval_gemfile \"../../etc/Gemfile\": the path leaves the tree",
		"app/Gemfile.missing":     "app/Gemfile.missing:2: eval_gemfile \"nope.rb\"",
		"app/Gemfile.bad-include": "app/gemfiles/bad.rb:3: conditional `if`",
	} {
		_, err := LoadGemfile(fsys, name)
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("LoadGemfile(%s) = %v, want prefix %q", name, err, want)
		}
	}
	if _, err := LoadGemfile(fsys, "app/NoGemfile"); !errors.Is(err, errs.ErrDependency) {
		t.Errorf("missing Gemfile: %v", err)
	}
}
