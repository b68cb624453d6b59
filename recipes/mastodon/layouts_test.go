package mastodon_test

// Synthetic Mastodon source trees, in the two layouts the hiredis patches
// meet: v4.1.2 (hiredis 0.6 through redis-rb 4) and current main
// (hiredis-client through redis-client 0.30). They are small, but the lines
// the patches touch are the lines issue 7 records verbatim from upstream;
// the rest is filler shaped like upstream's files, enough for a Gemfile and
// its lockfile to be consistent with each other.
//
// They live in Go strings rather than testdata files so that dependency
// bots and scanners do not take them for this repository's own Gemfile,
// lockfile or Dockerfiles.

// layout412 is Mastodon v4.1.2 (commit 3d8bd093b919…).
var layout412 = map[string]string{
	"Gemfile": `# frozen_string_literal: true

source 'https://rubygems.org'
ruby '>= 2.7.0', '< 3.3.0'

gem 'pkg-config', '~> 1.5'
gem 'puma', '~> 6.1'

gem 'dotenv-rails', '~> 2.8'
gem 'pg', '~> 1.4'

gem 'fast_blank', '~> 1.0'
gem 'fastimage'
gem 'hiredis', '~> 0.6'
gem 'htmlentities', '~> 4.3'
gem 'redis', '~> 4.5', require: ['redis', 'redis/connection/hiredis']
gem 'redis-namespace', '~> 1.10'
gem 'sidekiq', '~> 6.5'
`,
	"Gemfile.lock": `GEM
  remote: https://rubygems.org/
  specs:
    connection_pool (2.3.0)
    dotenv (2.8.1)
    dotenv-rails (2.8.1)
      dotenv (= 2.8.1)
    fast_blank (1.0.1)
    fastimage (2.2.6)
    hiredis (0.6.3)
    htmlentities (4.3.4)
    nio4r (2.5.8)
    pg (1.4.6)
    pkg-config (1.5.1)
    puma (6.1.1)
      nio4r (~> 2.0)
    rack (2.2.6.4)
    redis (4.8.1)
    redis-namespace (1.10.0)
      redis (>= 4)
    sidekiq (6.5.8)
      connection_pool (>= 2.2.5, < 3)
      rack (~> 2.0)
      redis (>= 4.5.0, < 5)

PLATFORMS
  ruby

DEPENDENCIES
  dotenv-rails (~> 2.8)
  fast_blank (~> 1.0)
  fastimage
  hiredis (~> 0.6)
  htmlentities (~> 4.3)
  pg (~> 1.4)
  pkg-config (~> 1.5)
  puma (~> 6.1)
  redis (~> 4.5)
  redis-namespace (~> 1.10)
  sidekiq (~> 6.5)

RUBY VERSION
   ruby 3.0.6p216

BUNDLED WITH
   2.4.10
`,
	"lib/mastodon/redis_config.rb": `# frozen_string_literal: true

def setup_redis_env_url(prefix = nil, defaults = true)
  prefix = "#{prefix.to_s.upcase}_" unless prefix.nil?
  prefix = '' if prefix.nil?

  return if ENV["#{prefix}REDIS_URL"].present?

  password = ENV.fetch("#{prefix}REDIS_PASSWORD") { '' if defaults }
  host     = ENV.fetch("#{prefix}REDIS_HOST") { 'localhost' if defaults }
  port     = ENV.fetch("#{prefix}REDIS_PORT") { 6379 if defaults }
  db       = ENV.fetch("#{prefix}REDIS_DB") { 0 if defaults }

  ENV["#{prefix}REDIS_URL"] = begin
    if [password, host, port, db].all?(&:nil?)
      ENV['REDIS_URL']
    else
      Addressable::URI.parse("redis://#{host}:#{port}/#{db}").tap do |uri|
        uri.password = password if password.present?
      end.normalize.to_str
    end
  end
end

setup_redis_env_url
setup_redis_env_url(:cache, false)
setup_redis_env_url(:sidekiq, false)

namespace         = ENV.fetch('REDIS_NAMESPACE', nil)
cache_namespace   = namespace ? namespace + '_cache' : 'cache'
sidekiq_namespace = namespace

REDIS_CACHE_PARAMS = {
  driver: :hiredis,
  url: ENV['CACHE_REDIS_URL'],
  expires_in: 10.minutes,
  namespace: cache_namespace,
  pool_size: Sidekiq.server? ? Sidekiq[:concurrency] : Integer(ENV['MAX_THREADS'] || 5),
  pool_timeout: 5,
  connect_timeout: 5,
}.freeze

REDIS_SIDEKIQ_PARAMS = {
  driver: :hiredis,
  url: ENV['SIDEKIQ_REDIS_URL'],
  namespace: sidekiq_namespace,
}.freeze
`,
	"app/lib/redis_configuration.rb": `# frozen_string_literal: true

class RedisConfiguration
  class << self
    def establish_pool(new_pool_size)
      @pool&.shutdown(&:close)
      @pool = ConnectionPool.new(size: new_pool_size) { new.connection }
    end

    delegate :with, to: :pool

    def pool
      @pool ||= establish_pool(pool_size)
    end

    def pool_size
      if Sidekiq.server?
        Sidekiq[:concurrency]
      else
        ENV['MAX_THREADS'] || 5
      end
    end
  end

  def connection
    if namespace?
      Redis::Namespace.new(namespace, redis: raw_connection)
    else
      raw_connection
    end
  end

  def namespace?
    namespace.present?
  end

  def namespace
    ENV.fetch('REDIS_NAMESPACE', nil)
  end

  def url
    ENV['REDIS_URL']
  end

  private

  def raw_connection
    Redis.new(url: url, driver: :hiredis)
  end
end
`,
	"lib/tasks/mastodon.rake": `# frozen_string_literal: true

require 'tty-prompt'

namespace :mastodon do
  desc 'Configure the instance for production use'
  task :setup do
    prompt = TTY::Prompt.new
    env    = {}

    begin
      loop do
        env['REDIS_HOST'] = prompt.ask('Redis host:') do |q|
          q.required true
          q.default 'localhost'
          q.modify :strip
        end

        env['REDIS_PORT'] = prompt.ask('Redis port:') do |q|
          q.required true
          q.default 6379
          q.convert :int
        end

        redis_options = {
          host: env['REDIS_HOST'],
          port: env['REDIS_PORT'],
          password: env['REDIS_PASSWORD'],
          driver: :hiredis,
        }

        begin
          redis = Redis.new(redis_options)
          redis.ping
          prompt.ok 'Redis configuration works! 🎆'
          break
        rescue StandardError => e
          prompt.error 'Redis connection could not be established with this configuration, try again.'
          prompt.error e.message
          break unless prompt.yes?('Try again?')
        end
      end
    rescue TTY::Reader::InputInterrupt
      prompt.ok 'Aborting. Bye!'
    end
  end
end
`,
	// Two stages; the runtime is node:16.19-bullseye-slim with Ruby copied
	// in; the last stage runs rails assets:precompile.
	"Dockerfile": `# syntax=docker/dockerfile:1.4
# This needs to be bullseye-slim because the Ruby image is built on bullseye-slim
ARG NODE_VERSION="16.19-bullseye-slim"

FROM ghcr.io/moritzheiber/ruby-jemalloc:3.0.6-slim as ruby
FROM node:${NODE_VERSION} as build

COPY --link --from=ruby /opt/ruby /opt/ruby

ENV DEBIAN_FRONTEND="noninteractive" \
    PATH="${PATH}:/opt/ruby/bin"

WORKDIR /opt/mastodon
COPY Gemfile* package.json yarn.lock /opt/mastodon/

RUN bundle config set --local deployment 'true' && \
    bundle config set --local without 'development test' && \
    bundle install -j"$(nproc)" && \
    yarn install --pure-lockfile --network-timeout 600000

FROM node:${NODE_VERSION}

COPY --link --from=ruby /opt/ruby /opt/ruby
COPY --chown=mastodon:mastodon . /opt/mastodon
COPY --chown=mastodon:mastodon --from=build /opt/mastodon /opt/mastodon

ENV RAILS_ENV="production" \
    NODE_ENV="production" \
    PATH="${PATH}:/opt/ruby/bin:/opt/mastodon/bin"

USER mastodon
WORKDIR /opt/mastodon

RUN OTP_SECRET=precompile_placeholder SECRET_KEY_BASE=precompile_placeholder rails assets:precompile && \
    yarn cache clean

ENTRYPOINT ["/usr/bin/tini", "--"]
EXPOSE 3000 4000
`,
	"package.json": `{
  "name": "@mastodon/mastodon",
  "license": "AGPL-3.0-or-later",
  "private": true
}
`,
	"yarn.lock":          "# THIS IS AN AUTOGENERATED FILE. DO NOT EDIT THIS FILE DIRECTLY.\n# yarn lockfile v1\n",
	"streaming/index.js": "// @ts-check\n'use strict';\n",
}

// layoutMain is Mastodon main at 2f40549d41d7… (2026-08-21, 4.7.0):
// hiredis-client instead of hiredis, redis-rb 5, the driver chosen by
// REDIS_DRIVER in lib/mastodon/redis_configuration.rb, and
// lib/mastodon/redis_config.rb and app/lib/redis_configuration.rb gone.
var layoutMain = map[string]string{
	"Gemfile": `# frozen_string_literal: true

source 'https://rubygems.org'
ruby '>= 3.2.0', '< 3.5.0'

gem 'propshaft'
gem 'puma', '~> 7.0'

gem 'dotenv'
gem 'pg', '~> 1.6'

gem 'fast_blank', '~> 1.0'
gem 'fastimage'
gem 'hiredis-client'
gem 'htmlentities', '~> 4.3'
gem 'redis', '~> 5'
gem 'sidekiq', '~> 7.3'
`,
	"Gemfile.lock": `GEM
  remote: https://rubygems.org/
  specs:
    base64 (0.3.0)
    connection_pool (2.5.3)
    dotenv (3.1.8)
    fast_blank (1.0.1)
    fastimage (2.4.0)
    hiredis-client (0.30.1)
      redis-client (= 0.30.1)
    htmlentities (4.3.4)
    logger (1.7.0)
    nio4r (2.7.4)
    pg (1.6.1)
    propshaft (1.2.1)
      rack
    puma (7.0.3)
      nio4r (~> 2.0)
    rack (3.2.0)
    redis (5.4.1)
      redis-client (>= 0.22.0)
    redis-client (0.30.1)
      connection_pool
    sidekiq (7.3.9)
      base64
      connection_pool (>= 2.3.0)
      logger
      rack (>= 2.2.4)
      redis-client (>= 0.22.2)

PLATFORMS
  ruby

DEPENDENCIES
  dotenv
  fast_blank (~> 1.0)
  fastimage
  hiredis-client
  htmlentities (~> 4.3)
  pg (~> 1.6)
  propshaft
  puma (~> 7.0)
  redis (~> 5)
  sidekiq (~> 7.3)

RUBY VERSION
   ruby 3.4.5p51

BUNDLED WITH
   2.7.1
`,
	"lib/mastodon/redis_configuration.rb": `# frozen_string_literal: true

class Mastodon::RedisConfiguration
  DEFAULTS = {
    host: 'localhost',
    port: 6379,
    db: 0,
  }.freeze

  def base
    @base ||= setup_config(prefix: nil, defaults: DEFAULTS)
  end

  def sidekiq
    @sidekiq ||= setup_config(prefix: 'SIDEKIQ_')
  end

  def cache
    @cache ||= setup_config(prefix: 'CACHE_')
      .merge({
        namespace: 'cache',
        expires_in: 10.minutes,
        connect_timeout: 5,
      })
  end

  private

  def driver
    ENV['REDIS_DRIVER'] == 'ruby' ? :ruby : :hiredis
  end

  def setup_config(prefix: nil, defaults: {})
    prefix = "#{prefix}REDIS_"

    url      = ENV.fetch("#{prefix}URL", nil)
    user     = ENV.fetch("#{prefix}USER", nil)
    password = ENV.fetch("#{prefix}PASSWORD", nil)
    host     = ENV.fetch("#{prefix}HOST", defaults[:host])
    port     = ENV.fetch("#{prefix}PORT", defaults[:port])
    db       = ENV.fetch("#{prefix}DB", defaults[:db])

    return { url:, driver: } if url

    url = construct_uri(host, port, db, user, password)

    if url.present?
      { url:, driver: }
    else
      base
    end
  end
end
`,
	"lib/tasks/mastodon.rake": `# frozen_string_literal: true

require 'tty-prompt'

namespace :mastodon do
  desc 'Configure the instance for production use'
  task :setup do
    prompt = TTY::Prompt.new
    env    = {}

    # When the application code gets loaded, it runs ` + "`lib/mastodon/redis_configuration.rb`" + `.
    ENV.delete('REDIS_URL')
    ENV.delete('CACHE_REDIS_URL')
    ENV.delete('SIDEKIQ_REDIS_URL')

    begin
      loop do
        env['REDIS_HOST'] = prompt.ask('Redis host:') do |q|
          q.required true
          q.default 'localhost'
          q.modify :strip
        end

        env['REDIS_PORT'] = prompt.ask('Redis port:') do |q|
          q.required true
          q.default 6379
          q.convert :int
        end

        env['REDIS_PASSWORD'] = prompt.ask('Redis password:') do |q|
          q.required false
          q.default nil
          q.modify :strip
        end

        redis_options = {
          host: env['REDIS_HOST'],
          port: env['REDIS_PORT'],
          password: env['REDIS_PASSWORD'],
          driver: :hiredis,
        }

        begin
          redis = Redis.new(redis_options)
          redis.ping
          prompt.ok 'Redis configuration works! 🎆'
          break
        rescue StandardError => e
          prompt.error 'Redis connection could not be established with this configuration, try again.'
          prompt.error e.message
          break unless prompt.yes?('Try again?')
        end
      end
    rescue TTY::Reader::InputInterrupt
      prompt.ok 'Aborting. Bye!'
    end
  end
end
`,
	// Shaped like main's: a # syntax= line, the version ARGs, base images
	// by tag only, several stages and the final target mastodon.
	"Dockerfile": `# syntax=docker/dockerfile:1.18

# This file is designed for production server deployment, not local development work

ARG TARGETPLATFORM=${TARGETPLATFORM}
ARG BUILDPLATFORM=${BUILDPLATFORM}

# Ruby image to use for base image, change with [--build-arg RUBY_VERSION="3.4.x"]
ARG RUBY_VERSION="3.4.5"
# Node.js version to use in base image, change with [--build-arg NODE_MAJOR_VERSION="22"]
ARG NODE_MAJOR_VERSION="22"
# Debian image to use for base image, change with [--build-arg DEBIAN_VERSION="bookworm"]
ARG DEBIAN_VERSION="bookworm"
FROM docker.io/node:${NODE_MAJOR_VERSION}-${DEBIAN_VERSION}-slim AS node
FROM docker.io/ruby:${RUBY_VERSION}-slim-${DEBIAN_VERSION} AS ruby

# Resulting version string is vX.X.X-MASTODON_VERSION_PRERELEASE+MASTODON_VERSION_METADATA
ARG MASTODON_VERSION_PRERELEASE=""
ARG MASTODON_VERSION_METADATA=""
# Will be available as Mastodon::Version.source_commit
ARG SOURCE_COMMIT=""

ENV \
  MASTODON_VERSION_PRERELEASE="${MASTODON_VERSION_PRERELEASE}" \
  MASTODON_VERSION_METADATA="${MASTODON_VERSION_METADATA}" \
  SOURCE_COMMIT="${SOURCE_COMMIT}" \
  RAILS_ENV="production" \
  NODE_ENV="production"

SHELL ["/bin/bash", "-o", "pipefail", "-o", "errexit", "-c"]

ARG TARGETPLATFORM

RUN \
  --mount=type=cache,id=apt-cache-${TARGETPLATFORM},target=/var/cache/apt,sharing=locked \
  --mount=type=cache,id=apt-lib-${TARGETPLATFORM},target=/var/lib/apt,sharing=locked \
  apt-get update; \
  apt-get install -y --no-install-recommends libjemalloc2 tini tzdata;

WORKDIR /opt/mastodon

FROM ruby AS build

COPY --from=node /usr/local/bin /usr/local/bin
COPY --from=node /usr/local/lib /usr/local/lib

RUN apt-get install -y --no-install-recommends build-essential git libpq-dev libyaml-dev

FROM build AS bundler

COPY Gemfile* /opt/mastodon/

RUN \
  --mount=type=cache,id=gem-cache-${TARGETPLATFORM},target=/usr/local/bundle/cache/,sharing=locked \
  bundle config set --global frozen "true"; \
  bundle config set --local without "development test"; \
  bundle install -j"$(nproc)";

FROM build AS yarn

COPY package.json yarn.lock .yarnrc.yml /opt/mastodon/
COPY streaming/package.json /opt/mastodon/streaming/

RUN yarn workspaces focus --production @mastodon/mastodon;

FROM build AS precompiler

COPY . /opt/mastodon/
COPY --from=yarn /opt/mastodon /opt/mastodon/
COPY --from=bundler /opt/mastodon /opt/mastodon/
COPY --from=bundler /usr/local/bundle/ /usr/local/bundle/

RUN SECRET_KEY_BASE_DUMMY=1 bundle exec rails assets:precompile; rm -fr /opt/mastodon/tmp;

FROM ruby AS mastodon

COPY . /opt/mastodon/
COPY --from=precompiler /opt/mastodon/public/packs /opt/mastodon/public/packs
COPY --from=precompiler /opt/mastodon/public/assets /opt/mastodon/public/assets
COPY --from=bundler /usr/local/bundle/ /usr/local/bundle/

USER mastodon
EXPOSE 3000
ENTRYPOINT ["/usr/bin/tini", "--"]
`,
	// Built with the repository root as context: it copies the root
	// package.json, yarn.lock and .yarnrc.yml, and ./streaming.
	"streaming/Dockerfile": `# syntax=docker/dockerfile:1.18

ARG TARGETPLATFORM=${TARGETPLATFORM}
ARG BUILDPLATFORM=${BUILDPLATFORM}
ARG BASE_REGISTRY="docker.io"

# Node version to use in base image, change with [--build-arg NODE_MAJOR_VERSION="22"]
ARG NODE_MAJOR_VERSION="22"
# Debian image to use for base image, change with [--build-arg DEBIAN_VERSION="bookworm"]
ARG DEBIAN_VERSION="bookworm"
FROM ${BASE_REGISTRY}/node:${NODE_MAJOR_VERSION}-${DEBIAN_VERSION}-slim AS streaming

ARG MASTODON_VERSION_PRERELEASE=""
ARG MASTODON_VERSION_METADATA=""

ENV \
  MASTODON_VERSION_PRERELEASE="${MASTODON_VERSION_PRERELEASE}" \
  MASTODON_VERSION_METADATA="${MASTODON_VERSION_METADATA}" \
  NODE_ENV="production" \
  PORT=4000

WORKDIR /opt/mastodon

COPY package.json yarn.lock .yarnrc.yml /opt/mastodon/
COPY ./streaming /opt/mastodon/streaming

RUN yarn workspaces focus --production @mastodon/streaming;

USER mastodon
EXPOSE 4000
CMD [ "node", "./streaming/index.js" ]
`,
	"package.json": `{
  "name": "@mastodon/mastodon",
  "license": "AGPL-3.0-or-later",
  "private": true,
  "workspaces": [".", "streaming"]
}
`,
	"yarn.lock":   "# This file is generated by running \"yarn install\" inside your project.\n__metadata:\n  version: 8\n",
	".yarnrc.yml": "nodeLinker: node-modules\n",
	"streaming/package.json": `{
  "name": "@mastodon/streaming",
  "license": "AGPL-3.0-or-later",
  "private": true
}
`,
	"streaming/index.js": "// @ts-check\n\nimport fs from 'node:fs';\n",
}
