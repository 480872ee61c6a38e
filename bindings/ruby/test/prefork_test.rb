# frozen_string_literal: true

require "test_helper"
require "securerandom"
require "set"
require "socket"
require "tmpdir"

# puma in cluster mode with preload_app!, 3 workers, a Bulkhead client made in the master
# before it forks.
#
# Several client threads drive requests (each tracks one event with the request's own
# $insert_id) while the mock ingestion server is up, refusing, hanging, and up again. Then,
# with the mock hanging, the server gets SIGTERM and must stop within a deadline. Each process
# (master and workers) closes its client and writes its counters on exit; the test checks that
# every event of a 200 answer reached the mock exactly once or is counted lost by its process,
# and that the accounting invariant holds in every process.
#
# Requests/s and latency p50/p99 per phase are printed, and written to the file named by
# BULKHEAD_PREFORK_REPORT when set. They are not asserted.
class PreforkTest < BulkheadTest::Test
  APP_DIR = File.expand_path("prefork_app", __dir__)
  WORKERS = 3
  LOAD_THREADS = 6
  # Phase name, what the mock is told when it starts, how long it lasts (s).
  PHASES = [
    ["before", "up", nil, 4.0],
    ["down: refuse", "down", "mode=refuse", 3.0],
    ["down: hang", "down", "mode=hang", 3.0],
    ["after", "up", nil, 4.0]
  ].freeze
  SHUTDOWN_DEADLINE = 30 # SIGTERM to exit, mock hanging (clients close within 2 s)
  BOOT_DEADLINE = 30
  MASTER_EVENTS = 5 # PreforkApp::MASTER_EVENTS

  # status: the HTTP status, 0 when the request failed, -1 when the answer was another's.
  Sample = Struct.new(:phase, :latency, :status, :insert_id)

  def setup
    super
    begin
      @puma = Gem.bin_path("puma", "puma")
      require "rack"
    rescue Gem::Exception, LoadError => e
      skip "puma or rack is not installed (make deps-ruby installs Debian's puma): #{e.message}"
    end
    skip "fork not available" unless Process.respond_to?(:fork)
    @dir = Dir.mktmpdir("bulkhead-prefork")
  end

  def teardown
    if @server_pid
      begin
        Process.kill("KILL", -@server_pid)
        Process.wait(@server_pid)
      rescue Errno::ESRCH, Errno::ECHILD
        nil
      end
    end
    FileUtils.rm_rf(@dir) if @dir
    super
  end

  def test_puma_cluster_preload_outage_accounting_and_shutdown
    port = free_port
    stats_dir = File.join(@dir, "stats")
    Dir.mkdir(stats_dir)
    log = File.join(@dir, "puma.log")
    env = { "PREFORK_MOCK_URL" => @mock.url, "PREFORK_STATS_DIR" => stats_dir,
            "PREFORK_PORT" => port.to_s, "PREFORK_WORKERS" => WORKERS.to_s }
    lib = File.expand_path("../lib", __dir__)
    @server_pid = Process.spawn(env, RbConfig.ruby, "-I", lib, @puma, "-C", File.join(APP_DIR, "puma.rb"),
                                File.join(APP_DIR, "config.ru"),
                                chdir: APP_DIR, out: log, err: log, pgroup: true)
    wait_until_serving(port, log)

    samples, durations = drive_load(port)
    ok_ids = samples.select { |s| s.status == 200 }.map(&:insert_id).to_set
    # Deliveries still retrying after the outage: wait for them (a watchdog, not asserted).
    eventually(timeout: 30) { @mock.stats["events"] >= ok_ids.size + MASTER_EVENTS }

    # Events still pending when the server is told to stop, the service hanging: the
    # workers' close deadline bounds the exit and counts them failed.
    @mock.down("hang")
    final = Net::HTTP.start("127.0.0.1", port, read_timeout: 10) { |h| Array.new(40) { request(h, "final") } }
    sleep 0.3 # let them reach a sender and hang there
    shutdown_s = stop_server
    server_log = File.read(log)

    text = report(samples, durations)
    text += "\n  shutdown with the mock hanging: #{shutdown_s ? shutdown_s.round(2) : "none (killed)"} s"
    puts "\n#{text}"
    File.write(ENV["BULKHEAD_PREFORK_REPORT"], "#{text}\n") if ENV["BULKHEAD_PREFORK_REPORT"]

    assert shutdown_s, "puma did not stop within #{SHUTDOWN_DEADLINE} s:\n#{server_log}"
    failed_requests = (samples + final).reject { |s| s.status == 200 }
    assert_empty failed_requests.map(&:status).tally, "requests without their 200 (track must not block)"
    ok_ids.merge(final.map(&:insert_id))

    reports = Dir[File.join(stats_dir, "*.json")].map { |f| JSON.parse(File.read(f)) }
    roles = reports.map { |r| r["role"] }.tally
    assert_equal({ "master" => 1, "worker" => WORKERS }, roles, server_log)
    @mock.up
    events = @mock.events
    assert_equal 0, @mock.stats["duplicates"]
    seen = events.map { |e| e["properties"]["$insert_id"] }.tally
    assert_empty seen.select { |_, n| n > 1 }, "an event arrived twice"
    master_ids = Array.new(MASTER_EVENTS) { |i| "master-#{i}" }.to_set
    assert_empty seen.keys.to_set - ok_ids - master_ids, "the mock got events no request tracked"
    sent_by = events.map { |e| e["properties"]["distinct_id"] }.tally

    lost = reports.sum do |r|
      s = r["stats"]
      who = "#{r["role"]} #{r["pid"]}"
      dropped = s["dropped_queue_full"] + s["dropped_too_large"] + s["dropped_invalid"]
      assert_equal r["tracked"], s["enqueued"] + dropped, who
      assert_equal s["enqueued"], s["sent"] + s["rejected"] + s["failed"] + s["queue_len"], who
      assert_equal 0, s["queue_len"], who
      name = r["role"] == "master" ? "master" : "worker-#{r["pid"]}"
      assert_equal s["sent"], sent_by.fetch(name, 0), "#{who}: events at the mock vs counted sent"
      dropped + s["rejected"] + s["failed"]
    end
    assert_equal ok_ids.size + MASTER_EVENTS, reports.sum { |r| r["tracked"] }
    # Every tracked event is at the mock once, or counted lost by the process that tracked it.
    assert_equal lost, (ok_ids | master_ids).size - seen.size
    puts "  #{ok_ids.size} requests answered 200; #{seen.size} events at the mock (master's included), " \
         "#{lost} counted lost by #{reports.size} processes"
  end

  private

  def free_port
    s = TCPServer.new("127.0.0.1", 0)
    s.addr[1]
  ensure
    s&.close
  end

  def wait_until_serving(port, log)
    deadline = now + BOOT_DEADLINE
    while now < deadline
      flunk "puma exited at boot:\n#{File.read(log)}" if Process.wait(@server_pid, Process::WNOHANG)
      begin
        return if Net::HTTP.get_response(URI("http://127.0.0.1:#{port}/")).code == "200"
      rescue SystemCallError, IOError, Net::ReadTimeout
        sleep 0.1
      end
    end
    flunk "puma did not answer within the boot deadline:\n#{File.read(log)}"
  end

  # Client threads sending GET /track?id=<uuid> over keep-alive connections, through PHASES.
  def drive_load(port)
    phase = PHASES.first[0]
    stop = false
    threads = Array.new(LOAD_THREADS) do
      Thread.new do
        mine = []
        Net::HTTP.start("127.0.0.1", port, read_timeout: 10, open_timeout: 10) do |h|
          mine << request(h, phase) until stop
        end
        mine
      end
    end
    durations = {}
    PHASES.each do |name, command, query, seconds|
      @mock.post(command, query)
      phase = name
      started = now
      sleep seconds
      durations[name] = now - started
    end
    stop = true
    samples = threads.flat_map { |t| t.join(30) ? t.value : flunk("a load thread is stuck") }
    [samples, durations]
  end

  def request(http, phase)
    insert_id = SecureRandom.hex(16)
    started = now
    status = begin
      res = http.get("/track?id=#{insert_id}")
      # A 200 for some other request's event is not a 200 for this one.
      res.code == "200" && JSON.parse(res.body)["insert_id"] != insert_id ? -1 : res.code.to_i
    rescue SystemCallError, IOError, Net::ReadTimeout
      0
    end
    Sample.new(phase, now - started, status, insert_id)
  end

  def stop_server
    started = now
    Process.kill("TERM", @server_pid)
    deadline = started + SHUTDOWN_DEADLINE
    until Process.wait(@server_pid, Process::WNOHANG)
      return nil if now > deadline # teardown kills it

      sleep 0.05
    end
    @server_pid = nil
    now - started
  end

  def report(samples, durations)
    lines = ["puma cluster, preload_app!, #{WORKERS} workers x 2 threads, #{LOAD_THREADS} client threads"]
    PHASES.each do |name, *|
      lat = samples.select { |s| s.phase == name }.map(&:latency).sort
      next if lat.empty?

      lines << format("  %-13s %8.0f req/s   p50 %6.2f ms   p99 %6.2f ms", name, lat.size / durations[name],
                      pct(lat, 0.50) * 1000, pct(lat, 0.99) * 1000)
    end
    lines.join("\n")
  end

  def pct(sorted, p) = sorted[[sorted.size - 1, (p * sorted.size).to_i].min]

  def now = Process.clock_gettime(Process::CLOCK_MONOTONIC)
end
