# frozen_string_literal: true

require "test_helper"
require "tmpdir"

# The disk spool (spool_dir) through the Ruby binding: the real library over real HTTP
# against the mock, and real files. An outage longer than the queue loses nothing; a process
# killed with SIGKILL mid-outage leaves its events on disk and a new process delivers each
# exactly once. Waits are bounded (a hang fails the test); nothing asserts a duration.
class SpoolTest < BulkheadTest::Test
  LONG = 60

  def setup
    super
    @dir = Dir.mktmpdir("bulkhead-spool-test")
    @spool = File.join(@dir, "spool")
  end

  def teardown
    super
    FileUtils.remove_entry(@dir) if @dir && File.directory?(@dir)
  end

  # Quick timings, a small queue, a breaker that opens at the first failure, and a
  # fdatasync after every spool write (tests/spool.rs uses the same).
  def spool_options(**extra)
    { flush_interval_ms: 20, backoff_initial_ms: 5, backoff_max_ms: 20, max_retries: 1,
      retry_budget_ms: 300, circuit_failure_threshold: 1, circuit_cooldown_ms: 200,
      circuit_cooldown_max_ms: 400, queue_capacity: 100, batch_size: 50,
      spool_dir: @spool, spool_sync_interval_ms: 0 }.merge(extra)
  end

  def segments = Dir[File.join(@spool, "*.seg")].sort

  # Nothing in memory or in the hand-off to the spool's writer.
  def settled?(s) = s[:queue_len].zero? && s[:spool_pending].zero?

  def wait_until(what, timeout: LONG)
    assert eventually(timeout: timeout) { yield }, "gave up waiting for #{what}"
  end

  def assert_accounted(s)
    assert_equal s[:enqueued] + s[:replayed],
                 s[:sent] + s[:rejected] + s[:failed] + s[:spooled] + s[:queue_len] + s[:spool_pending],
                 "every event accounted for: #{s}"
  end

  # The mock holds exactly `n` events named `name`, each once.
  def assert_once_at_mock(name, n)
    m = @mock.stats
    assert_equal [n, 0], [m["events"], m["duplicates"]], m.inspect
    events = @mock.events
    ids = events.map { |e| e["properties"]["$insert_id"] }
    assert_equal n, ids.uniq.size, "an $insert_id arrived twice"
    keys = events.map { |e| [e["event"], e["properties"]["distinct_id"]] }
    assert_equal n, keys.uniq.size, "an event arrived twice under new $insert_ids"
    assert_equal({ name => n }, events.map { |e| e["event"] }.tally)
  end

  def test_an_outage_longer_than_the_queue_loses_nothing
    n = 3000 # thirty times what the queue holds
    @mock.down("refuse")
    c = client(**spool_options)
    refused = n.times.count { |i| !c.track("u#{i}", "Outage", { n: i }) }
    assert_equal 0, refused
    s = c.stats
    assert_equal [n, 0], s.values_at(:enqueued, :dropped_queue_full), s.inspect
    wait_until("the outage's events to reach the disk") { (s = c.stats)[:spooled].positive? && settled?(s) }
    refute_empty segments
    assert_equal 0, @mock.stats["events"]

    @mock.up
    wait_until("every event at the mock") { @mock.stats["events"] >= n }
    assert c.flush(timeout: LONG).delivered?, c.stats.inspect
    wait_until("the replay to finish") { (s = c.stats)[:spool_records].zero? && settled?(s) }
    assert_once_at_mock("Outage", n)
    s = c.stats
    assert_equal 0, s[:dropped_queue_full] + s[:failed] + s[:rejected], s.inspect
    assert_equal s[:spooled], s[:replayed], s.inspect
    assert_equal n, s[:sent], s.inspect
    assert_accounted(s)
    assert c.close(timeout: LONG)
    assert_accounted(c.stats)
    assert_empty segments, "replayed segments are removed"
  end

  # The child: tracks into the spool while the service refuses, waits until everything is
  # on disk, says so, then waits to be killed.
  KILLED_CHILD = <<~RUBY
    require "bulkhead"
    url, dir, n = ARGV[0], ARGV[1], Integer(ARGV[2])
    c = Bulkhead::Client.new(
      token: "tok", api_host: url, logger: nil, flush_interval_ms: 20, backoff_initial_ms: 5,
      backoff_max_ms: 20, max_retries: 1, retry_budget_ms: 300, request_timeout_ms: 2000,
      circuit_failure_threshold: 1, circuit_cooldown_ms: 60_000, circuit_cooldown_max_ms: 60_000,
      queue_capacity: 50, batch_size: 50, spool_dir: dir, spool_sync_interval_ms: 0
    )
    refused = n.times.count { |i| !c.track("k\#{i}", "Killed", { i: i }) }
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 60
    loop do
      s = c.stats
      break if s[:spooled] >= n && s[:queue_len].zero? && s[:spool_pending].zero?
      break if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
      sleep 0.01
    end
    s = c.stats
    $stdout.puts "SPOOLED \#{s[:spooled]} \#{s[:enqueued]} \#{refused} \#{s[:failed]}"
    $stdout.flush
    sleep 300 # killed long before
  RUBY

  def test_kill_9_mid_outage_then_a_new_process_delivers_every_event_once
    n = 2000
    @mock.down("refuse")
    lib = File.expand_path("../lib", __dir__)
    out_r, out_w = IO.pipe
    err_path = File.join(@dir, "child.err")
    pid = Process.spawn(RbConfig.ruby, "-I", lib, "-e", KILLED_CHILD, @mock.url, @spool, n.to_s,
                        out: out_w, err: err_path)
    out_w.close
    line = nil
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 90
    until line || Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
      line = out_r.gets if out_r.wait_readable(1)
      break if line.nil? && out_r.eof?
    end
    refute_nil line, "the child said nothing: #{File.read(err_path)}"
    spooled, enqueued, refused, failed = line.split.drop(1).map(&:to_i)
    assert_equal [n, n, 0, 0], [spooled, enqueued, refused, failed], line
    Process.kill("KILL", pid)
    _, status = Process.wait2(pid)
    pid = nil
    assert_equal "KILL", Signal.signame(status.termsig), status.inspect
    refute_empty segments

    @mock.up
    c = client(**spool_options)
    wait_until("the killed process's events at the mock") { @mock.stats["events"] >= n }
    wait_until("the spool to empty") { segments.empty? }
    assert c.flush(timeout: LONG).delivered?, c.stats.inspect
    assert_once_at_mock("Killed", n)
    s = c.stats
    assert_equal [n, n, 0], s.values_at(:replayed, :sent, :failed), s.inspect
    assert_accounted(s)
    assert c.close(timeout: LONG)
    assert_empty Dir.children(@spool), "the dead writer's lock file is removed too"
  ensure
    if pid
      begin
        Process.kill("KILL", pid)
        Process.wait(pid)
      rescue Errno::ESRCH, Errno::ECHILD
        nil
      end
    end
    out_r&.close
  end
end
