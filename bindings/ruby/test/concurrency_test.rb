# frozen_string_literal: true

require "test_helper"

class ConcurrencyTest < BulkheadTest::Test
  THREADS = 8
  PER_THREAD = 500

  def test_threads_tracking_concurrently_add_up
    c = client
    results = Array.new(THREADS) do |t|
      Thread.new { Array.new(PER_THREAD) { |i| c.track("t#{t}", "e", { i: i }) } }
    end.flat_map(&:value)
    total = THREADS * PER_THREAD
    assert_equal total, results.count(true)
    assert c.flush(timeout: 30)
    s = c.stats
    assert_equal total, s[:enqueued]
    assert_equal total, s[:sent]
    assert_equal total, @mock.stats["events"]
    assert_equal 0, @mock.stats["duplicates"]
  end

  def test_forked_child_tracks_and_flushes_exactly_once
    skip "fork not available" unless Process.respond_to?(:fork)
    c = client
    assert c.track("parent", "before fork")
    pid = Process.fork do
      ok = c.track("child", "in child") && c.flush(timeout: 15)
      exit!(ok ? 0 : 1)
    end
    assert c.track("parent", "after fork")
    assert c.flush(timeout: 15)
    _, status = Process.wait2(pid)
    assert status.success?, "child failed: #{status.inspect}"
    wait_for_events(3)
    names = @mock.events.map { |e| e["event"] }.sort
    assert_equal ["after fork", "before fork", "in child"], names
    assert_equal 3, @mock.stats["events"]
    assert_equal 0, @mock.stats["duplicates"]
    assert_equal 2, c.stats[:enqueued]
  end

  def test_fork_while_parent_is_sending_under_load
    skip "fork not available" unless Process.respond_to?(:fork)
    c = client(batch_size: 50)
    1000.times { |i| c.track("parent", "p", { i: i }) }
    pid = Process.fork do
      ok = Array.new(100) { |i| c.track("child", "c", { i: i }) }.all? && c.flush(timeout: 15)
      exit!(ok ? 0 : 1)
    end
    assert c.flush(timeout: 30)
    _, status = Process.wait2(pid)
    assert status.success?, "child failed: #{status.inspect}"
    wait_for_events(1100)
    names = @mock.events.map { |e| e["event"] }.tally
    assert_equal({ "p" => 1000, "c" => 100 }, names)
    assert_equal 0, @mock.stats["duplicates"]
    assert_equal 1000, c.stats[:sent]
  end
end
