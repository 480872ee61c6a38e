# frozen_string_literal: true

require "test_helper"

# The queue-size guard and the bounded flush, against a mock that never answers.
class GuardTest < BulkheadTest::Test
  def test_full_queue_returns_false_and_counts_exactly
    @mock.down("hang")
    c = client(queue_capacity: 4, batch_size: 1, pool_size: 1, request_timeout_ms: 30_000, max_retries: 0)
    results = Array.new(100) { |i| c.track("u", "e#{i}") }
    dropped = results.count(false)
    assert_operator dropped, :>, 0
    assert_equal 100, results.count(true) + dropped
    s = c.stats
    assert_equal dropped, s[:dropped_queue_full]
    assert_equal results.count(true), s[:enqueued]
  end

  def test_flush_times_out_and_releases_the_gvl
    @mock.down("hang")
    c = client(request_timeout_ms: 30_000)
    c.track("u", "stuck")
    # A thread inside a GVL-free native call shows status "sleep"; the spinner counts the
    # iterations it ran while the flushing thread was in that state.
    flusher = Thread.current
    during = 0
    running = true
    started = Queue.new
    spinner = Thread.new do
      started << true
      while running
        during += 1 if flusher.status == "sleep"
        Thread.pass
      end
    end
    started.pop
    during = 0
    result = c.flush(timeout: 0.5)
    running = false
    spinner.join
    assert result.timed_out?
    assert_operator during, :>, 0, "another Ruby thread ran while flush waited"
    assert_equal 1, c.queue_size
  end
end
