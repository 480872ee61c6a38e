# frozen_string_literal: true

module Bulkhead
  # Mixed into every exception this gem raises, so `rescue Bulkhead::Error` catches them all
  # while invalid input still is an ArgumentError.
  module Error
    # The bulkhead_status code (Integer) the library returned.
    attr_accessor :status
  end

  # Invalid input: bad arguments, unknown config keys or operations (BULKHEAD_STATUS_INVALID_ARGUMENT).
  class InvalidArgumentError < ::ArgumentError
    include Error
  end

  # A string that is not valid UTF-8.
  class InvalidUTF8Error < InvalidArgumentError; end

  # JSON that does not parse or has the wrong shape.
  class InvalidJSONError < InvalidArgumentError; end

  # An event above `max_event_bytes` (counted in stats[:dropped_too_large]).
  class TooLargeError < InvalidArgumentError; end

  # The client (or the library, after shutdown) is closed.
  class ClosedError < StandardError
    include Error
  end

  # A bug caught at the library boundary, or an internal failure (the process is unharmed).
  class InternalError < StandardError
    include Error
  end
end
