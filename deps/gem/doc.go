// Package gem resolves a Gemfile.lock (with its Gemfile) to the gems a
// build step installs, pinned: name, version, platform, URL, sha256.
//
// Resolve reads both files from a tree (an fs.FS), never runs Ruby and
// never touches the network:
//
//  1. ParseLockfile reads every section (GIT, GEM, PATH, PLUGIN SOURCE,
//     PLATFORMS, DEPENDENCIES, CHECKSUMS, RUBY VERSION, BUNDLED WITH);
//     a line it cannot read is an error naming file and line.
//  2. LoadGemfile reads the Gemfile's DSL (see Gemfile for what is
//     understood and what is refused): the lockfile does not record
//     groups, so they come from there.
//  3. The Gemfile is compared with DEPENDENCIES as `bundle install
//     --frozen` does (*MismatchError lists every difference).
//  4. The groups to install are Bundler's requested_groups: every group
//     less without and the optional groups, plus with (∩ only).
//  5. From the Gemfile's gems in those groups (and for the target
//     platform: Gemfile platforms such as :jruby or :windows drop a gem),
//     the closure follows the locked specs' dependency lines. For each
//     gem name the locked variant is chosen as Bundler does: those whose
//     platform matches the target (Gem::Platform#===; "ruby" always), the
//     exact platform if locked, else the most specific; only "ruby" ones
//     with force_ruby_platform.
//  6. Each rubygems gem gets URL = remote (or its mirror, from options,
//     the tree's .bundle/config or BUNDLE_MIRROR__… in the env passed
//     in) + "gems/NAME-VERSION[-PLATFORM].gem", Path = the vendor/cache
//     file name, and SHA256 from CHECKSUMS when the lockfile has it.
//     GIT gems are returned by commit (GitGem); PATH gems are an error
//     unless WithPathGems allows those inside the tree.
//
// Set.Pin then downloads, once, the gems without a sha256 (or all, to
// check CHECKSUMS at lock time) with a deps.Fetcher, and validates every
// pin.
//
// For the per-gem install, Set.Order gives the install steps in
// dependency order (a dependency cycle is one step), each with the
// transitive runtime dependencies whose installs must be present when it
// runs; Set.Layers groups independent steps.
//
// What the installing step must do (verified by this package's
// integration test against the host's Ruby 3.1 and Bundler 2.3):
//
//   - All at once: put every pinned .gem file, by Package.Path, in
//     vendor/cache beside the Gemfile, each GIT gem's tree at its
//     Revision (files only, no .git needed) in
//     vendor/cache/<GitGem.CacheDir()>, and run `bundle install --local`
//     with BUNDLE_FROZEN=true, BUNDLE_WITHOUT / BUNDLE_WITH as resolved,
//     BUNDLE_PATH set, BUNDLE_FORCE_RUBY_PLATFORM=true if it was used, and
//     BUNDLE_IGNORE_CONFIG=1 (or no .bundle/config in the tree: Bundler
//     ranks it above the environment).
//   - Per gem: for each Step in Order, with the installs of Step.Deps
//     present in the same directory D, run
//     `gem install --local --ignore-dependencies --no-document
//     --install-dir D NAME-VERSION[-PLATFORM].gem` with GEM_HOME=D and
//     GEM_PATH=D. A native extension needs ruby.h (ruby-dev), a C
//     toolchain (cc, make) and, when its extconf.rb requires a gem, that
//     gem installed in D (the test's C extension does not compile
//     without it). A GIT gem is not a .gem: its tree goes to
//     D/bundler/gems/<GitGem.CacheDir()>. With BUNDLE_PATH=P, Bundler's
//     D is P/ruby/<RbConfig ruby_version> ("3.1.0"); `bundle install
//     --local` there then uses every gem ("Using …", nothing installed).
package gem
