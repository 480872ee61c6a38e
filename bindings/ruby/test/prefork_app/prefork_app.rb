# frozen_string_literal: true

# Rack app served by puma in cluster mode with preload_app! (test/prefork_test.rb).
#
# The Bulkhead client is made when the app loads, so the puma master owns it, with events
# still queued, before it forks the workers: each worker must start over with its own empty
# queue and counters, and the master's events must be delivered by the master only.
#
# Environment: PREFORK_MOCK_URL (the mock ingestion server), PREFORK_STATS_DIR (where each
# process writes its counters when it exits).

require "bulkhead"
require "json"
require "rack"

module PreforkApp
  MASTER_EVENTS = 5
  MASTER_PID = Process.pid

  CLIENT = Bulkhead::Client.new(
    token: "prefork", api_host: ENV.fetch("PREFORK_MOCK_URL"), logger: nil,
    flush_interval_ms: 50, connect_timeout_ms: 500,
    # A hung request gives up after 1 s and is retried; enough retries to ride out the
    # test's outage, so most events are delivered rather than counted failed.
    request_timeout_ms: 1000, backoff_initial_ms: 20, backoff_max_ms: 300,
    max_retries: 100, retry_budget_ms: 60_000, shutdown_timeout_ms: 2000
  )

  # Requests tracked (whatever track answered), by process: a forked worker starts at 0,
  # as the library's counters do.
  @tracked = Hash.new(0)
  @lock = Mutex.new

  class << self
    def count_tracked
      @lock.synchronize { @tracked[Process.pid] += 1 }
    end

    def call(env)
      insert_id = Rack::Utils.parse_query(env["QUERY_STRING"].to_s)["id"]
      return [200, { "content-type" => "text/plain" }, ["ok"]] unless env["PATH_INFO"] == "/track" && insert_id

      pid = Process.pid
      queued = CLIENT.track("worker-#{pid}", "request", { "$insert_id" => insert_id, "pid" => pid })
      count_tracked
      body = JSON.generate({ insert_id: insert_id, queued: queued, pid: pid })
      [200, { "content-type" => "application/json", "content-length" => body.bytesize.to_s }, [body]]
    end

    # Closes the client (bounded by shutdown_timeout_ms) and writes this process's counters.
    def dump_stats(role)
      closed = CLIENT.close
      report = { role: role, pid: Process.pid, tracked: @lock.synchronize { @tracked[Process.pid] },
                 close_ok: closed, stats: CLIENT.stats }
      path = File.join(ENV.fetch("PREFORK_STATS_DIR"), "#{role}-#{Process.pid}.json")
      File.write("#{path}.tmp", JSON.generate(report))
      File.rename("#{path}.tmp", path)
    end
  end

  MASTER_EVENTS.times do |i|
    CLIENT.track("master", "master boot", { "$insert_id" => "master-#{i}" })
    count_tracked
  end

  # Workers inherit this hook and leave through exit too: only the master writes here
  # (workers write in on_worker_shutdown).
  at_exit { dump_stats("master") if Process.pid == MASTER_PID }
end
