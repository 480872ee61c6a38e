# frozen_string_literal: true

require "socket"
require "stringio"
require_relative "test_helper"

# Behaviour a host expects: log lines on the host's Logger from Ruby threads, test mode,
# honest flush results, metrics text, http_status nil when there was no response.
class HostTest < BulkheadTest::Test
  def closed_port
    s = TCPServer.new("127.0.0.1", 0)
    port = s.addr[1]
    s.close
    port
  end

  def test_test_mode_keeps_events_and_sends_nothing
    c = client(test_mode: true, test_mode_capacity: 2)
    assert c.track("u1", "Signed up", { plan: "pro" })
    assert c.people_set("u1", { name: "A" })
    refute c.track("u1", "over the cap")
    events = c.test_events
    assert_equal %w[events people], events.map { |e| e[:endpoint] }
    assert_equal "Signed up", events[0][:data][:event]
    assert_equal "pro", events[0][:data][:properties][:plan]
    c.clear_test_events
    assert_equal [], c.test_events
    assert c.flush(timeout: 5).delivered?
    assert_equal 0, @mock.stats["requests"]
    assert_raises(Bulkhead::InvalidArgumentError) { client.test_events }
  end

  # Issue 10: properties go through Oj when it is installed (make test installs ruby-oj),
  # with the json gem's result, and the json gem's errors for what Oj would write differently.
  def test_oj_when_installed_writes_what_the_json_gem_writes
    skip "Oj is not installed" unless Bulkhead::Client::OJ_OPTIONS
    with_to_json = Object.new
    def with_to_json.to_json(*args) = { "custom" => 1 }.to_json(*args)
    plain = Object.new
    def plain.to_s = "plain!"
    samples = [
      { "s" => "é\u2028</script>\"\\\n\t\u0001", :sym => :val, 1 => 2, nil => nil, true => false },
      { "i" => 2**70, "n" => -(2**63), "f" => [1.0, 1e20, 1.5e-7, 0.1 + 0.2, -0.0] },
      { "t" => Time.at(0, 123_456, :usec).utc, "r" => Rational(1, 3), "c" => with_to_json, "p" => plain },
      { "nested" => { "a" => [1, { "b" => [nil] }] }, "empty" => {}, "ea" => [] }
    ]
    c = client(test_mode: true)
    samples.each do |value|
      fast = c.send(:to_json, value)
      assert_equal JSON.parse(JSON.generate(value)), JSON.parse(fast)
    end
    [Float::NAN, Float::INFINITY, -Float::INFINITY].each do |bad|
      assert_raises(Bulkhead::InvalidJSONError) { c.track("u", "e", { "x" => [bad] }) }
    end
    assert_raises(Bulkhead::InvalidJSONError) do
      c.track("u", "e", { "x" => "\xff".dup.force_encoding(Encoding::UTF_8) })
    end
    assert c.track("u", "kept", { "plan" => "pro", "n" => 3 })
    assert_equal({ "plan" => "pro", "n" => 3 },
                 c.test_events.last[:data][:properties].slice(:plan, :n).transform_keys(&:to_s))
  end

  def test_flush_result_says_delivered_incomplete_or_timed_out
    c = client(max_retries: 0)
    assert c.track("u", "ok")
    assert_equal :delivered, c.flush(timeout: 5).status
    lost = client(max_retries: 0, api_host: "http://127.0.0.1:#{closed_port}")
    lost.track("u", "lost")
    r = lost.flush(timeout: 5)
    assert r.incomplete?
    assert_equal [1, 0], [r.failed, r.rejected]
    assert lost.flush(timeout: 5).delivered?, "each failure is reported once"
    err = lost.errors.last
    assert_nil err[:http_status], "no response: nil, as in Python"
    assert_match(/could not connect to 127\.0\.0\.1:\d+/, err[:message])
  end

  def test_log_lines_reach_the_logger
    out = StringIO.new
    logger = Logger.new(out, level: Logger::INFO)
    @mock.down("hang")
    c = client(queue_capacity: 1, request_timeout_ms: 60_000, logger: logger)
    assert c.track("u", "held")
    refute c.track("u", "dropped")
    refute c.track("u", "dropped again") # sees the hint, logs the warning
    assert_equal 1, out.string.scan("queue full").size, out.string
    c.close(timeout: 0)
    assert_includes out.string, "1 undelivered events were abandoned"
    @mock.up
  end

  def test_metrics_text_and_stats
    c = client(name: "rb")
    c.track("u", "e")
    assert c.flush(timeout: 5).delivered?
    text = c.metrics_text
    assert_includes text, "# TYPE bulkhead_sent_total counter"
    assert_includes text, 'bulkhead_sent_total{client="rb"} 1'
    assert_equal 0, c.stats[:errors_overwritten]
  end
end
