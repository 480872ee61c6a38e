# frozen_string_literal: true

require_relative "lib/bulkhead/version"

Gem::Specification.new do |spec|
  spec.name = "bulkhead"
  spec.version = Bulkhead::VERSION
  spec.summary = "Never-blocking, bounded, pooled Mixpanel event sender (Ruby binding of libbulkhead)"
  spec.description = "Bulkhead queues analytics events in-process and sends them from a native " \
                     "background pool with a queue-size guard, bounded retries, fork and exit safety. " \
                     "Includes a drop-in consumer for mixpanel-ruby."
  spec.authors = ["bulkhead contributors"]
  spec.license = "MIT"
  spec.required_ruby_version = ">= 3.1"

  # The native library is found at runtime (BULKHEAD_LIB, a copy packaged under
  # lib/bulkhead/native/, the repository build, or the system path).
  spec.files = Dir["lib/**/*.rb", "lib/bulkhead/native/*", "README.md", "bench/*.rb"]
  spec.require_paths = ["lib"]

  spec.add_dependency "ffi", ">= 1.15", "< 2"
  spec.add_development_dependency "minitest", ">= 5.15"
end
