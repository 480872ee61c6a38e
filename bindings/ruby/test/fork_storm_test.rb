# frozen_string_literal: true

require "test_helper"
require "tmpdir"

# Fork storm: 200 forks one after another, then 20 children alive at once, while parent
# threads track through a slow and failing mock, make and close clients, and call
# Bulkhead.shutdown.
#
# Each child tracks a few events (on its own client, or on the client it inherited),
# flushes, closes and leaves through exit, so the gem's at_exit hook runs as in a real
# host; a child still alive after the watchdog is killed and fails the test. Afterwards
# every event of every client, parent's and children's, is at the mock at most once, and each
# client's counters account for all of its events.
class ForkStormTest < BulkheadTest::Test
  SEQUENTIAL_FORKS = 200
  CONCURRENT_FORKS = 20
  EVENTS_PER_CHILD = 5
  CHILD_WATCHDOG = 30
  # What the fault injector serves, in turn, every FAULT_EVERY seconds.
  FAULTS = ["status=503", "kind=reject", "kind=drop", "status=500&retry_after=0"].freeze
  FAULT_EVERY = 0.05
  SHUTDOWN_EVERY = 0.4

  # One client's events: how many it was asked to track, and its counters once closed.
  Ledger = Struct.new(:distinct_id, :tracked, :stats)

  def setup
    super
    skip "fork not available" unless Process.respond_to?(:fork)
    @dir = Dir.mktmpdir("bulkhead-fork-storm")
    @stop = false
    @ledgers = Queue.new
    @problems = Queue.new
    @serial = 0
    @serial_lock = Mutex.new
    @shared = nil # [distinct_id, client] that odd children use
  end

  def teardown
    FileUtils.rm_rf(@dir) if @dir
    super
  end

  def test_fork_storm_every_event_once_or_counted
    @mock.post("latency", "ms=5")
    outcomes = Hash.new(0)
    started = now
    threads = [Thread.new { tracker(0) }, Thread.new { tracker(1) }, Thread.new { churner },
               Thread.new { shutter }, Thread.new { fault_injector }]
    begin
      sleep 0.2
      SEQUENTIAL_FORKS.times do |i|
        $stdout.flush
        pid = fork { child_main(i, nil) }
        outcomes[wait_child(pid, now + CHILD_WATCHDOG)] += 1
      end
      sequential_s = now - started

      # Together: each child says it is ready, then waits until the parent closes `go`.
      ready_r, ready_w = IO.pipe
      go_r, go_w = IO.pipe
      $stdout.flush
      pids = (SEQUENTIAL_FORKS...(SEQUENTIAL_FORKS + CONCURRENT_FORKS)).map do |i|
        fork do
          go_w.close
          ready_r.close
          ready_w.write(".")
          ready_w.close
          child_main(i, go_r)
        end
      end
      ready_w.close
      go_r.close
      ready = 0
      deadline = now + CHILD_WATCHDOG
      while ready < CONCURRENT_FORKS && now < deadline
        next unless ready_r.wait_readable(0.1)

        got = ready_r.read_nonblock(64, exception: false)
        break if got.nil?

        ready += got.size if got.is_a?(String)
      end
      ready_r.close
      go_w.close
      deadline = now + CHILD_WATCHDOG
      pids.each { |pid| outcomes[wait_child(pid, deadline)] += 1 }
    ensure
      @stop = true
      threads.each { |t| assert t.join(30), "a parent thread is stuck" }
    end
    # What the parent threads left open (a last shutdown may not have come).
    Bulkhead.shutdown(timeout: 5)
    elapsed = now - started

    errors = Dir[File.join(@dir, "*.error")].map { |f| File.read(f) }
    assert @problems.empty?, -> { @problems.pop }
    assert_equal({ "ok" => SEQUENTIAL_FORKS + CONCURRENT_FORKS }, outcomes, errors.first(3).join)
    assert_equal CONCURRENT_FORKS, ready, "children alive together"
    children = Dir[File.join(@dir, "child-*.json")].map { |f| JSON.parse(File.read(f)) }
    assert_equal SEQUENTIAL_FORKS + CONCURRENT_FORKS, children.size
    children.each { |c| assert_equal EVENTS_PER_CHILD, c["tracked"], c }
    ledgers = []
    ledgers << @ledgers.pop until @ledgers.empty?
    ledgers += children.map { |c| Ledger.new(c["distinct_id"], c["tracked"], c["stats"].transform_keys(&:to_sym)) }

    @mock.post("clear_faults")
    events = @mock.events
    assert_equal 0, @mock.stats["duplicates"]
    ids = events.map { |e| e["properties"]["$insert_id"] }.tally
    assert_empty ids.select { |_, n| n > 1 }, "an event arrived twice"
    at_mock = events.map { |e| e["properties"]["distinct_id"] }.tally
    known = ledgers.to_h { |l| [l.distinct_id, l] }
    assert_equal ledgers.size, known.size
    assert_empty at_mock.keys - known.keys, "events of no client reached the mock"
    # Each event at the mock is one its client was asked to track.
    strays = ids.keys.reject do |id|
      who, n = id.rpartition("-").values_at(0, 2)
      Integer(n) < known.fetch(who).tracked
    end
    assert_empty strays, "events at the mock that their client was not asked to track"

    tracked = delivered = lost = abandoned_but_arrived = 0
    ledgers.each do |l|
      s = l.stats
      dropped = s[:dropped_queue_full] + s[:dropped_too_large] + s[:dropped_invalid]
      assert_equal l.tracked, s[:enqueued] + dropped, [l.distinct_id, s]
      assert_equal s[:enqueued], s[:sent] + s[:rejected] + s[:failed] + s[:queue_len], [l.distinct_id, s]
      assert_equal 0, s[:queue_len], [l.distinct_id, s]
      # An event is at the mock or counted lost. A request abandoned by a close or shutdown
      # deadline may still have reached the mock: counted failed (dropped_shutdown) and there.
      arrived = at_mock.fetch(l.distinct_id, 0)
      assert_includes s[:sent]..(s[:sent] + s[:dropped_shutdown]), arrived, [l.distinct_id, s]
      tracked += l.tracked
      delivered += arrived
      lost += dropped + s[:rejected] + s[:failed]
      abandoned_but_arrived += arrived - s[:sent]
    end
    inherited = children.count { |c| c["inherited"] }
    puts format("\nfork storm: %d sequential forks in %.1f s, then %d alive together; %.1f s in all; " \
                "%d children used the inherited client; %d clients tracked %d events: %d at the mock, " \
                "%d counted lost (%d of them abandoned at a deadline but arrived)",
                SEQUENTIAL_FORKS, sequential_s, CONCURRENT_FORKS, elapsed, inherited, ledgers.size,
                tracked, delivered, lost, abandoned_but_arrived)
  end

  private

  def now = Process.clock_gettime(Process::CLOCK_MONOTONIC)

  def new_client(prefix)
    serial = @serial_lock.synchronize { @serial += 1 }
    ["#{prefix}-#{serial}", client(queue_capacity: 2000)]
  end

  # Closes the client (a shutdown may have already) and keeps its final counters.
  def settle(distinct_id, client, tracked)
    client.close(timeout: 2)
    @ledgers << Ledger.new(distinct_id, tracked, client.stats)
  end

  # false when a shutdown closed the client under us (that event was not taken).
  def track(distinct_id, client, n)
    client.track(distinct_id, "parent", { "$insert_id" => "#{distinct_id}-#{n}" })
    true
  rescue Bulkhead::ClosedError
    false
  end

  def guarded
    yield
  rescue Exception => e # rubocop:disable Lint/RescueException
    @problems << "#{e.class}: #{e.message}\n#{e.backtrace.join("\n")}"
  end

  def tracker(index)
    guarded do
      until @stop
        distinct_id, c = new_client("tracker#{index}")
        @shared = [distinct_id, c] if index.zero?
        tracked = 0
        while !@stop && track(distinct_id, c, tracked)
          tracked += 1
          sleep 0.005 if (tracked % 20).zero?
        end
        settle(distinct_id, c, tracked)
      end
    end
  end

  def churner
    guarded do
      until @stop
        distinct_id, c = new_client("churn")
        tracked = track(distinct_id, c, 0) ? 1 : 0
        c.close(timeout: 0.01) # an event may still be pending: counted, not waited for
        settle(distinct_id, c, tracked)
        # Not faster: every client alive at fork() is finalized again by each child's exit
        # (the helper keeps them until teardown).
        sleep 0.1
      end
    end
  end

  def shutter
    guarded do
      until @stop
        sleep SHUTDOWN_EVERY
        Bulkhead.shutdown(timeout: 0.02)
      end
    end
  end

  def fault_injector
    guarded do
      n = 0
      until @stop
        sleep FAULT_EVERY
        @mock.post("fault", FAULTS[n % FAULTS.size])
        n += 1
      end
    end
  end

  # In the forked child: leaves through exit (the gem's at_exit hook runs), never returns.
  def child_main(index, go)
    code = 1
    begin
      go&.read(1) # EOF when the parent releases every waiting child at once
      distinct_id = "child-#{index}"
      c = nil
      inherited = false
      c, inherited = [@shared[1], true] if index.odd? && @shared
      tracked = 0
      while tracked < EVENTS_PER_CHILD
        c ||= Bulkhead::Client.new(token: TOKEN, **client_options)
        begin
          c.track(distinct_id, "child", { "$insert_id" => "#{distinct_id}-#{tracked}" })
          tracked += 1
        rescue Bulkhead::ClosedError
          # A parent's shutdown closed the inherited client just before fork().
          raise unless inherited && tracked.zero?

          c = nil
          inherited = false
        end
      end
      flushed = c.flush(timeout: 10)
      closed = c.close(timeout: 5)
      report = { distinct_id: distinct_id, tracked: tracked, inherited: inherited,
                 flush: flushed.status, closed: closed, stats: c.stats }
      File.write(File.join(@dir, "#{distinct_id}.json"), JSON.generate(report))
      code = 0
    rescue Exception => e # rubocop:disable Lint/RescueException
      File.write(File.join(@dir, "child-#{index}.error"), "#{e.class}: #{e.message}\n#{e.backtrace.join("\n")}")
    end
    exit(code)
  end

  # "ok", "failed" or "hung" (killed at the deadline).
  def wait_child(pid, deadline)
    loop do
      _, status = Process.wait2(pid, Process::WNOHANG)
      return status.success? ? "ok" : "failed" if status

      if now > deadline
        Process.kill("KILL", pid)
        Process.wait(pid)
        return "hung"
      end
      sleep 0.002
    end
  end
end
