# frozen_string_literal: true

require_relative "bulkhead/version"
require_relative "bulkhead/errors"
require_relative "bulkhead/native"
require_relative "bulkhead/client"
require_relative "bulkhead/mixpanel_consumer"

# Ruby binding of libbulkhead: a never-blocking, bounded, pooled sender for Mixpanel events.
module Bulkhead
  @exit_lock = Mutex.new
  @exit_hook = false
  @shutdown_timeout_ms = Client::DEFAULT_SHUTDOWN_TIMEOUT_MS

  class << self
    # The deadline (ms) of the exit-time shutdown: the largest shutdown_timeout_ms of the
    # clients made so far (2000 by default).
    attr_reader :shutdown_timeout_ms

    # Flushes and stops every client within `timeout` seconds. Called at exit.
    def shutdown(timeout: shutdown_timeout_ms / 1000.0)
      Native.bulkhead_shutdown((timeout * 1000).round.clamp(0, 0xFFFF_FFFF)) == Native::OK
    end

    # The native library's version.
    def library_version
      Native.bulkhead_version
    end

    # Registered lazily by the first Client, so the hook runs before handlers registered
    # earlier (at_exit runs in reverse order), e.g. a test runner that runs in at_exit.
    def register_exit_hook(timeout_ms) # :nodoc:
      @exit_lock.synchronize do
        @shutdown_timeout_ms = [@shutdown_timeout_ms, timeout_ms].max
        unless @exit_hook
          @exit_hook = true
          at_exit { Native.bulkhead_shutdown(@shutdown_timeout_ms.clamp(0, 0xFFFF_FFFF)) }
        end
      end
    end
  end
end
