# frozen_string_literal: true

require_relative "lib/bulkhead/version"

# Two gems come from this file (`make gems` stages and builds both under target/gems/):
#
# - the platform gem (BULKHEAD_GEM_PLATFORM=1): bundles the built libbulkhead.so as
#   lib/bulkhead/native/libbulkhead.so, tagged with this machine's Gem::Platform
#   (e.g. x86_64-linux);
# - the source gem (default): ships the crate under ext/bulkhead/crate/, and
#   ext/bulkhead/extconf.rb builds it with cargo at install time into lib/bulkhead/native/.
#
# lib/bulkhead/native.rb loads BULKHEAD_LIB if set, else that bundled copy, else the system's.
Gem::Specification.new do |spec|
  spec.name = "bulkhead"
  spec.version = Bulkhead::VERSION
  spec.summary = "Never-blocking, bounded, pooled Mixpanel event sender (Ruby binding of libbulkhead)"
  spec.description = "Bulkhead queues analytics events in-process and sends them from a native " \
                     "background pool with a queue-size guard, bounded retries, fork and exit safety. " \
                     "Includes a drop-in consumer for mixpanel-ruby."
  spec.authors = ["the bulkhead authors"]
  spec.license = "MIT OR Apache-2.0"
  spec.required_ruby_version = ">= 3.1"

  spec.files = Dir["lib/**/*.rb", "README.md", "LICENSE-*", "bench/*.rb"]
  if ENV["BULKHEAD_GEM_PLATFORM"] == "1"
    native = Dir["lib/bulkhead/native/libbulkhead.{so,dylib}"]
    raise "bulkhead.gemspec: no lib/bulkhead/native/libbulkhead.so to bundle (use `make gems`)" if native.empty?

    spec.platform = Gem::Platform.local
    spec.files += native
  else
    crate = Dir["ext/bulkhead/crate/**/*"].select { |f| File.file?(f) }.reject { |f| f.include?("/target/") }
    raise "bulkhead.gemspec: no crate under ext/bulkhead/crate (use `make gems`)" if crate.empty?

    spec.files += ["ext/bulkhead/extconf.rb"] + crate
    spec.extensions = ["ext/bulkhead/extconf.rb"]
  end
  spec.require_paths = ["lib"]

  spec.add_dependency "ffi", ">= 1.15", "< 2"
  spec.add_development_dependency "minitest", ">= 5.15"
end
