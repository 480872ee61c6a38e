# frozen_string_literal: true

require "minitest/autorun"
require "json"
require "net/http"
require "rbconfig"
require "stringio"
require "timeout"
require "bulkhead"

module BulkheadTest
  GEM_ROOT = File.expand_path("..", __dir__)
  MOCK_BIN = ENV.fetch("BULKHEAD_MOCK") { File.expand_path("../../target/release/bulkhead-mock", GEM_ROOT) }

  # The project's mock ingestion server (mock/), one process on 127.0.0.1, port 0.
  class MockServer
    attr_reader :url, :pid

    def initialize(*args)
      raise "bulkhead-mock not found at #{MOCK_BIN} (set BULKHEAD_MOCK)" unless File.executable?(MOCK_BIN)

      # --exit-on-stdin-eof: the mock also ends if this test process dies.
      @io = IO.popen([MOCK_BIN, "--port", "0", "--exit-on-stdin-eof", *args], "r+")
      @pid = @io.pid
      line = Timeout.timeout(30) { @io.gets }
      raise "bulkhead-mock printed no URL" unless line&.start_with?("http://127.0.0.1:")

      @url = line.strip
      @uri = URI(@url)
    end

    def stop
      return unless @pid

      begin
        Process.kill("TERM", @pid)
        deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 5
        until Process.wait(@pid, Process::WNOHANG)
          if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
            Process.kill("KILL", @pid)
            Process.wait(@pid)
            break
          end
          sleep 0.01
        end
      rescue Errno::ESRCH, Errno::ECHILD
        nil
      end
      @io.close unless @io.closed?
      @pid = nil
    end

    def get(name)
      JSON.parse(http { |h| h.get("/_mock/#{name}") }.body)
    end

    def post(name, query = nil)
      res = http { |h| h.post("/_mock/#{name}#{query ? "?#{query}" : ""}", "") }
      raise "mock control #{name} failed: #{res.code} #{res.body}" unless res.code == "200"
    end

    def stats = get("stats")
    def events = get("events")
    def updates = get("updates")
    def requests = get("requests")
    def down(mode) = post("down", "mode=#{mode}")
    def up = post("up")

    private

    def http(&block)
      Net::HTTP.start(@uri.host, @uri.port, open_timeout: 10, read_timeout: 30, &block)
    end
  end

  # Starts a mock per test, makes clients against it, closes and stops everything afterwards.
  class Test < Minitest::Test
    TOKEN = "tok"

    def setup
      @mock = MockServer.new
      @clients = []
    end

    def teardown
      @clients.each { |c| c.close(timeout: 0.2) rescue nil } # rubocop:disable Style/RescueModifier
      @mock&.stop
    end

    def client(**opts)
      c = Bulkhead::Client.new(token: TOKEN, **client_options, **opts)
      @clients << c
      c
    end

    def client_options
      { api_host: @mock.url, flush_interval_ms: 50, backoff_initial_ms: 10, backoff_max_ms: 100,
        request_timeout_ms: 2000, logger: nil }
    end

    # Polls until the block is truthy; generous, for "it happened at all" only.
    def eventually(timeout: 15)
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
      loop do
        value = yield
        return value if value
        return false if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

        sleep 0.02
      end
    end

    def wait_for_events(n)
      assert eventually { @mock.stats["events"] >= n }, "mock received #{@mock.stats["events"]} of #{n} events"
    end

    def wait_for_updates(n)
      assert eventually { @mock.stats["updates"] >= n }, "mock received #{@mock.stats["updates"]} of #{n} updates"
    end
  end
end
