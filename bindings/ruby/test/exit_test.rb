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
