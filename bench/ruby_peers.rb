# frozen_string_literal: true

# Ruby side by side, against the project's mock with 5 ms latency:
#
#   Bulkhead::Client#track
#   a Tracker stand-in + Bulkhead::MixpanelConsumer#send!   (the drop-in consumer)
#   a Tracker stand-in + a stand-in of mixpanel-ruby's synchronous Mixpanel::Consumer
#     (Net::HTTP POST of each event on the caller's thread, a new connection each time)
#
# mixpanel-ruby is not installable here (no gem registry), so its Tracker#track (build the
# event: token, distinct_id, time, mp_lib, $lib_version, $insert_id, then {"data": ...}.to_json)
# and Consumer#send! (base64 form POST with Net::HTTP) are re-written below, as close to
# mixpanel-ruby 2.3 as a few lines get.
#
#   ruby -Ibindings/ruby/lib bench/ruby_peers.rb MOCK_BINARY EVENTS SYNC_EVENTS > ruby.json
#
# Prints one JSON object: per client, host µs per call p50/p99/p99.9 and the process CPU per
# event (CLOCK_PROCESS_CPUTIME_ID, every thread, until the mock holds every event).

require "base64"
require "json"
require "net/http"
require "securerandom"
require "bulkhead"

mock_bin = ARGV.fetch(0)
events = Integer(ARGV[1] || 20_000)
sync_events = Integer(ARGV[2] || 1_000)
LATENCY_MS = 5
TOKEN = "bench-token"
PROPS = { "plan" => "pro", "country" => "NZ", "age" => 37, "score" => 12.5, "beta" => true,
          "referrer" => "https://example.com/landing", "campaign" => "spring-sale", "items" => 3,
          "currency" => "NZD", "device" => "desktop" }.freeze

mock = IO.popen([mock_bin, "--port", "0", "--no-store", "--exit-on-stdin-eof"], "r+")
URL = mock.gets.strip
MOCK_URI = URI(URL)

def control(path, get: false)
  Net::HTTP.start(MOCK_URI.host, MOCK_URI.port, read_timeout: 60) do |http|
    req = get ? Net::HTTP::Get.new("/_mock/#{path}") : Net::HTTP::Post.new("/_mock/#{path}")
    JSON.parse(http.request(req).body)
  end
end

def mock_events
  control("stats", get: true)["events"]
end

# mixpanel-ruby's Tracker#track, as a stand-in: the message it hands its consumer.
def tracker_message(distinct_id, event, properties)
  props = { "token" => TOKEN, "distinct_id" => distinct_id, "time" => (Time.now.to_f * 1000).to_i,
            "mp_lib" => "ruby", "$lib_version" => "2.3.0", "$insert_id" => SecureRandom.hex(16) }
  { "data" => { "event" => event, "properties" => props.merge(properties) } }.to_json
end

# mixpanel-ruby's synchronous Consumer#send!, as a stand-in: one form POST per message, on a
# new Net::HTTP connection, answered {"status":1} when accepted.
def sync_consumer_send(message)
  data = JSON.parse(message)["data"]
  form = { "data" => Base64.strict_encode64([data].to_json), "verbose" => "1" }
  req = Net::HTTP::Post.new("/track")
  req.set_form_data(form)
  res = Net::HTTP.new(MOCK_URI.host, MOCK_URI.port).request(req)
  raise "sync consumer: #{res.code} #{res.body}" unless res.code == "200" && JSON.parse(res.body)["status"] == 1
end

def cpu_s
  Process.clock_gettime(Process::CLOCK_PROCESS_CPUTIME_ID)
end

def measure(name, count, flush)
  base = mock_events
  GC.start
  cpu0 = cpu_s
  us = Array.new(count)
  count.times do |i|
    t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC, :nanosecond)
    yield i
    us[i] = (Process.clock_gettime(Process::CLOCK_MONOTONIC, :nanosecond) - t0) / 1000.0
  end
  flush.call
  got = control("wait_events?n=#{base + count}&timeout_ms=60000", get: true)["events"] - base
  cpu = cpu_s - cpu0
  us.sort!
  at = ->(q) { us[[us.size - 1, (q * us.size).to_i].min] }
  { "client" => name, "events" => count, "delivered" => got, "p50" => at.(0.5), "p99" => at.(0.99),
    "p999" => at.(0.999), "cpu_us_per_event" => cpu * 1e6 / count }
end

control("latency?ms=#{LATENCY_MS}")
out = { "latency_ms" => LATENCY_MS, "ruby" => RUBY_VERSION, "clients" => [] }

client = Bulkhead::Client.new(token: TOKEN, api_host: URL, logger: nil)
1000.times { |i| client.track("u#{i}", "warm", PROPS) } # warm up
client.flush(timeout: 30)
out["clients"] << measure("Bulkhead::Client#track", events, -> { client.flush(timeout: 60) }) do |i|
  client.track("u#{i % 1000}", "Bench", PROPS)
end
client.close

consumer = Bulkhead::MixpanelConsumer.new(api_host: URL, logger: nil)
out["clients"] << measure("Tracker + Bulkhead::MixpanelConsumer", events, -> { consumer.flush(timeout: 60) }) do |i|
  consumer.send!(:event, tracker_message("u#{i % 1000}", "Bench", PROPS))
end
consumer.close

out["clients"] << measure("Tracker + synchronous Consumer (stand-in)", sync_events, -> {}) do |i|
  sync_consumer_send(tracker_message("u#{i % 1000}", "Bench", PROPS))
end

puts JSON.generate(out)
mock.close
