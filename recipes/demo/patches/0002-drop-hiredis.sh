# Drop the hiredis driver so the app can reach a managed Redis over TLS
# (the operator's original sed edits, as a script patch).
sed -i "/gem 'hiredis', '~> 0.6'/d" ./Gemfile
sed -i '/hiredis/d' ./Gemfile.lock
sed -i 's/, driver: :hiredis//g' ./lib/redis_config.rb
