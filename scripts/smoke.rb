# frozen_string_literal: true

# Smoke test of an installed bulkhead gem, run from outside the repository:
#   ruby smoke.rb MOCK_BINARY EXPECTED_LIBRARY_PREFIX
# Loads the gem with no BULKHEAD_LIB, checks the library came from EXPECTED_LIBRARY_PREFIX
# (the throw-away GEM_HOME), tracks three events to the mock and checks they arrived.
require "bulkhead"
require "json"
require "net/http"

mock_bin, prefix = ARGV
abort "usage: smoke.rb MOCK_BINARY EXPECTED_LIBRARY_PREFIX" unless mock_bin && prefix
abort "BULKHEAD_LIB is set; the smoke test must load the installed copy" if ENV["BULKHEAD_LIB"]

path = Bulkhead::Native::LIBRARY_PATH
abort "library loaded from #{path}, not from under #{prefix}" unless File.expand_path(path).start_with?(File.expand_path(prefix))

io = IO.popen([mock_bin, "--port", "0", "--exit-on-stdin-eof"], "r+")
begin
  url = io.gets&.strip
  abort "bulkhead-mock printed no URL" unless url&.start_with?("http://127.0.0.1:")

  client = Bulkhead::Client.new(token: "tok", api_host: url, flush_interval_ms: 50, logger: nil)
  3.times { |i| client.track("u#{i}", "Smoke", { "n" => i }) or abort "track refused" }
  abort "flush timed out" unless client.flush(timeout: 10)
  stats = client.stats
  abort "stats: #{stats.inspect}" unless stats[:enqueued] == 3 && stats[:sent] == 3
  client.close(timeout: 2)
  got = JSON.parse(Net::HTTP.get(URI("#{url}/_mock/stats")))
  abort "mock stats: #{got.inspect}" unless got["events"] == 3
  puts "ruby smoke ok: #{Bulkhead.library_version} from #{path}"
ensure
  Process.kill("TERM", io.pid) rescue nil # rubocop:disable Style/RescueModifier
  io.close
end
