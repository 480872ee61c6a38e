# frozen_string_literal: true

# Per-call cost of Bulkhead::Client#track on the caller's thread (the hot path: validate,
# frame, push to the in-process queue). The events go to a local mock when BULKHEAD_MOCK
# is set, else to a closed loopback port (the queue then drains by failing, which the hot
# path does not wait for).
#
#   cd bindings/ruby && ruby -Ilib bench/track_bench.rb [N]
#
# mixpanel-ruby's synchronous consumer would be the comparison; it is not installed here
# (no gem registry), so that part is skipped.

require "bulkhead"

n = Integer(ARGV[0] || 200_000)
mock_io = nil
host =
  if (bin = ENV["BULKHEAD_MOCK"]) && File.executable?(bin)
    mock_io = IO.popen([bin, "--port", "0", "--no-store", "--exit-on-stdin-eof"], "r+")
    mock_io.gets.strip
  else
    "http://127.0.0.1:9" # discard port: nothing listens
  end

client = Bulkhead::Client.new(token: "bench", api_host: host, queue_capacity: n * 4, queue_max_bytes: 1 << 30,
                              max_retries: 0, logger: nil)
props = { "plan" => "pro", "n" => 1, "tags" => %w[a b] }

def measure(label, n)
  GC.start
  t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  n.times { |i| yield i }
  dt = Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0
  printf("%-34s %9d calls  %8.3f us/call  %10.0f calls/s\n", label, n, dt * 1e6 / n, n / dt)
end

measure("warm-up", 10_000) { |i| client.track("u#{i}", "warm", props) }
measure("(JSON.generate of the properties)", n) { JSON.generate(props) }
measure("Client#track (3 properties)", n) { |i| client.track("u", "Signed up", props) }
measure("Client#track (no properties)", n) { |i| client.track("u", "Signed up") }
consumer = Bulkhead::MixpanelConsumer.new(client)
msg = JSON.generate({ "data" => { "event" => "Signed up",
                                  "properties" => { "distinct_id" => "u", "token" => "bench", "plan" => "pro" } } })
measure("MixpanelConsumer#send! (:event)", n) { consumer.send!(:event, msg) }
puts "mixpanel-ruby: not installed (no gem registry); comparison skipped"
s = client.stats
puts "stats: enqueued=#{s[:enqueued]} dropped_queue_full=#{s[:dropped_queue_full]} sent=#{s[:sent]}"
client.close(timeout: 2)
if mock_io
  Process.kill("TERM", mock_io.pid)
  Process.wait(mock_io.pid)
end
