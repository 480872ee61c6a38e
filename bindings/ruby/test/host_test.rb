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
