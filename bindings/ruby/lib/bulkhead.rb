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
  # Each open client's Reporter, by the client's object id; a Client's finalizer removes
  # its entry. Strong references to reporters (and through them to native handles), not a
  # WeakMap of clients: iterating a WeakMap may yield a client the garbage collector is
  # finalizing, whose native handle is already freed.
  @reporters = {}

  class << self
    # Flushes and stops every client within `timeout` seconds (default: the largest
    # shutdown_timeout_ms of the open clients, 2 s if none). Called at exit.
    # What was abandoned is logged to each client's logger, on this thread.
    def shutdown(timeout: nil)
      ms = timeout.nil? ? Native::TIMEOUT_CONFIGURED : Native.millis(timeout)
      ok = Native.bulkhead_shutdown(ms) == Native::OK
      report_all
      ok
    end

    def register_reporter(client, reporter) # :nodoc:
      key = client.object_id
      @reporters[key] = reporter
      ObjectSpace.define_finalizer(client, unregister(key))
    end

    # A proc that holds only the key, not the client (which would then never be collected).
    def unregister(key) # :nodoc:
      proc { @reporters.delete(key) }
    end

    def report_all # :nodoc:
      # A snapshot: a finalizer may drop entries meanwhile; what it holds stays valid.
      @reporters.values.each(&:report)
    rescue StandardError
      nil
    end

    # The native library's version.
    def library_version
      Native.bulkhead_version
    end

    # Registered lazily by the first Client, so the hook runs before handlers registered
    # earlier (at_exit runs in reverse order), e.g. a test runner that runs in at_exit.
    # The library picks the deadline: the largest shutdown_timeout_ms of the open clients.
    def register_exit_hook # :nodoc:
      @exit_lock.synchronize do
        unless @exit_hook
          @exit_hook = true
          at_exit do
            Native.bulkhead_shutdown(Native::TIMEOUT_CONFIGURED)
            report_all
          end
        end
      end
    end
  end
end
