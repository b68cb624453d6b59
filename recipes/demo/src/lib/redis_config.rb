REDIS_OPTIONS = { url: ENV['REDIS_URL'], driver: :hiredis }
