# frozen_string_literal: true

require "test_helper"

class LoadingTest < Minitest::Test
  LIB = File.expand_path("../lib", __dir__)

  def test_bad_override_gives_a_clear_load_error
    out = IO.popen({ "BULKHEAD_LIB" => "/nonexistent/libbulkhead.so" },
                   [RbConfig.ruby, "-I", LIB, "-e", 'begin; require "bulkhead"; rescue LoadError => e; puts e.message; end'],
                   err: %i[child out], &:read)
    assert_includes out, "BULKHEAD_LIB"
    assert_includes out, "/nonexistent/libbulkhead.so"
  end

  def test_loaded_library_reports_its_version
    assert_match(/\A\d+\.\d+\.\d+/, Bulkhead.library_version)
    refute_nil Bulkhead::Native::LIBRARY_PATH
  end
end
