# frozen_string_literal: true

require "test_helper"

# A process that queued lots of events for a dead service still exits: the at_exit hook
# calls bulkhead_shutdown with the configured deadline (default 2 s).
class ExitTest < BulkheadTest::Test
  SCRIPT = <<~RUBY
    require "bulkhead"
    c = Bulkhead::Client.new(token: "tok", api_host: ARGV[0], flush_interval_ms: 50, logger: nil)
    ok = 0
    10_000.times { |i| ok += 1 if c.track("u", "event", { i: i }) }
    $stdout.puts ok
    $stdout.flush
  RUBY

  def test_process_exits_with_a_dead_service
    @mock.down("hang")
    lib = File.expand_path("../lib", __dir__)
    out_r, out_w = IO.pipe
    pid = Process.spawn(RbConfig.ruby, "-I", lib, "-e", SCRIPT, @mock.url, out: out_w)
    out_w.close
    status = wait_with_timeout(pid, 2 + 20)
    assert status, "the process did not exit within shutdown deadline + 20 s"
    assert status.success?, status.inspect
    assert_equal "10000", out_r.read.strip
  ensure
    out_r&.close
  end

  # Bulkhead.shutdown (and the exit hook) report for every client while the garbage
  # collector finalizes dropped ones. It used to walk a WeakMap of clients, which can yield
  # one whose native handle is already freed: a segfault within seconds. In a child process,
  # so that a crash fails this test instead of the suite.
  CHURN = <<~RUBY
    require "bulkhead"
    stop = false
    churn = Thread.new do
      until stop
        c = Bulkhead::Client.new(token: "t", api_host: ARGV[0], logger: nil)
        begin
          c.track("u", "e")
          c.close(timeout: 0.001)
          c.stats
        rescue Bulkhead::ClosedError
          nil # a shutdown closed it first
        end
      end
    end
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 8
    rounds = 0
    while Process.clock_gettime(Process::CLOCK_MONOTONIC) < deadline
      Bulkhead.shutdown(timeout: 0.01)
      rounds += 1
    end
    stop = true
    churn.join
    GC.start
    live = ObjectSpace.each_object(Bulkhead::Client).count
    reporters = Bulkhead.instance_variable_get(:@reporters).size
    $stdout.puts "rounds=\#{rounds} live=\#{live} reporters=\#{reporters}"
  RUBY

  def test_shutdown_while_clients_are_collected_never_crashes
    @mock.down("hang")
    lib = File.expand_path("../lib", __dir__)
    out_r, out_w = IO.pipe
    pid = Process.spawn(RbConfig.ruby, "-I", lib, "-e", CHURN, @mock.url, out: out_w, err: File::NULL)
    out_w.close
    status = wait_with_timeout(pid, 8 + 30)
    assert status, "the process did not finish"
    assert status.success?, "the process died: #{status.inspect}"
    line = out_r.read
    live = line[/live=(\d+)/, 1].to_i
    reporters = line[/reporters=(\d+)/, 1].to_i
    assert_operator line[/rounds=(\d+)/, 1].to_i, :>, 0, line
    # Collected clients leave the registry: it holds no more than what is alive.
    assert_operator reporters, :<=, live, line
  ensure
    out_r&.close
  end

  private

  def wait_with_timeout(pid, seconds)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + seconds
    loop do
      _, status = Process.wait2(pid, Process::WNOHANG)
      return status if status
      break if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

      sleep 0.05
    end
    Process.kill("KILL", pid)
    Process.wait(pid)
    nil
  end
end
