# frozen_string_literal: true

# The story with real parts: an analytics service goes down and a Sidekiq app's crucial jobs
# keep (or do not keep) their pace. For each run (sync, seed, bulkhead; see app.rb) it starts
# redis-server, the mock ingestion server and `sidekiq`, enqueues crucial jobs at a fixed rate
# while the mock is healthy, refusing, hanging, then healthy again, samples the queue depth,
# and accounts for every analytics event. Writes story.md and story.svg to --out and prints
# PASS/FAIL for bulkhead's checks (exit status 1 on FAIL).
#
#   ruby -I bindings/ruby/lib scripts/story/run.rb --mock target/release/bulkhead-mock --out bench
#   (with BULKHEAD_LIB=target/release/libbulkhead.so; `make story` and `make test-story` do this)

require "fileutils"
require "optparse"
require "sidekiq"
require "tmpdir"
require_relative "parts"
require_relative "report"

module Story
  PHASES = %w[healthy refuse hang back].freeze
  # The mock's state during each phase: a control endpoint and its query.
  PHASE_CONTROL = { "healthy" => ["up"], "refuse" => ["down", "mode=refuse"], "hang" => ["down", "mode=hang"],
                    "back" => ["up"] }.freeze
  SAMPLE_SECONDS = 0.25

  Options = Struct.new(:out, :row, :mock_bin, :lib, :runs, :durations, :rate, :concurrency, :guard, :hash_rounds,
                       :drain_seconds, :test, keyword_init: true)

  def self.parse(argv)
    opts = Options.new(out: nil, mock_bin: nil, lib: File.expand_path("../../bindings/ruby/lib", __dir__),
                       runs: %w[sync seed bulkhead], durations: { "healthy" => 20, "refuse" => 10, "hang" => 15,
                                                                  "back" => 20 },
                       rate: 40, concurrency: 5, guard: 500, hash_rounds: 1000, drain_seconds: 60, test: false)
    OptionParser.new do |o|
      o.on("--out DIR", "where story.md and story.svg go") { |v| opts.out = v }
      o.on("--row FILE", "write the README's Reliability row there") { |v| opts.row = v }
      o.on("--mock PATH", "the bulkhead-mock binary") { |v| opts.mock_bin = v }
      o.on("--lib DIR", "the Ruby binding's lib directory") { |v| opts.lib = v }
      o.on("--runs LIST", Array, "sync,seed,bulkhead") { |v| opts.runs = v }
      o.on("--phases LIST", Array, "seconds: healthy,refuse,hang,back") do |v|
        opts.durations = PHASES.zip(v.map { |s| Float(s) }).to_h
      end
      o.on("--rate N", Float, "crucial jobs enqueued per second") { |v| opts.rate = v }
      o.on("--concurrency N", Integer, "Sidekiq threads") { |v| opts.concurrency = v }
      o.on("--guard N", Integer, "the seed's queue-size guard and bulkhead's queue_capacity") { |v| opts.guard = v }
      o.on("--hash-rounds N", Integer, "SHA-256 rounds per crucial job") { |v| opts.hash_rounds = v }
      o.on("--drain N", Float, "most seconds to wait for the queues after the last phase") { |v| opts.drain_seconds = v }
      o.on("--test", "make test-story: the loose checks (see report.rb)") { opts.test = true }
    end.parse!(argv)
    raise OptionParser::MissingArgument, "--out and --mock" unless opts.out && opts.mock_bin
    raise OptionParser::InvalidArgument, "--runs must include bulkhead" unless opts.runs.include?("bulkhead")
    raise OptionParser::InvalidArgument, "--phases needs four numbers" unless opts.durations.size == 4

    opts
  end

  # One run: parts up, the phases with driver and sampler, drain, parts down, the accounting.
  class Run
    def initialize(mode, opts, dir)
      @mode = mode
      @opts = opts
      @dir = dir
      @parts = Parts.new(dir)
    end

    def call
      @parts.start_redis
      @parts.start_mock(@opts.mock_bin)
      @parts.start_sidekiq(app_env, lib: @opts.lib, concurrency: @opts.concurrency)
      @redis = Redis.new(url: @parts.redis_url, timeout: 5)
      timeline = play
      # Stops Sidekiq first so its at_exit writes the result; the mock and Redis stay up to be read.
      @parts.stop("sidekiq", 30)
      collect(timeline)
    ensure
      @redis&.close
      @parts.stop_all
    end

    private

    def app_env
      { "STORY_MODE" => @mode, "STORY_MOCK_URL" => @parts.mock.url, "STORY_GUARD" => @opts.guard.to_s,
        "STORY_HASH_ROUNDS" => @opts.hash_rounds.to_s, "STORY_RESULT" => result_path }
    end

    def result_path = File.join(@dir, "result.json")

    def play
      t0 = Time.now.to_f
      stop = false
      pushed = 0
      samples = []
      sampler = Thread.new { sample(t0, samples) { stop == :all } }
      driver = Thread.new { pushed = drive { stop } }
      begin
        phases = PHASES.map do |name|
          @parts.mock.post(*PHASE_CONTROL.fetch(name))
          start = Time.now.to_f - t0
          sleep @opts.durations.fetch(name)
          { "name" => name, "start" => start, "end" => Time.now.to_f - t0 }
        end
        stop = true
        raise "the driver did not stop" unless driver.join(10)

        drained = drain(pushed)
      ensure
        stop = :all
        raise "the driver or the sampler did not stop" unless driver.join(10) && sampler.join(10)
      end
      { "t0" => t0, "phases" => phases, "samples" => samples, "pushed" => pushed, "drained" => drained }
    end

    # Enqueues CrucialJob at the fixed rate (catching up if it fell behind) until the block is
    # true; each carries its id and its enqueue time. Returns how many it enqueued.
    def drive
      client = Sidekiq::Client.new(ConnectionPool.new(size: 1) { Redis.new(url: @parts.redis_url, timeout: 5) })
      start = Story.monotonic
      id = 0
      until yield
        wait = start + (id / @opts.rate) - Story.monotonic
        sleep wait if wait.positive?
        client.push("class" => "CrucialJob", "queue" => "crucial", "args" => [id, Time.now.to_f])
        id += 1
      end
      id
    end

    # Samples the queues' depths (LLEN) every SAMPLE_SECONDS until the block is true.
    def sample(t0, samples)
      redis = Redis.new(url: @parts.redis_url, timeout: 5)
      until yield
        crucial, mixpanel = redis.pipelined { |p| [p.llen("queue:crucial"), p.llen("queue:mixpanel")] }
        samples << [Time.now.to_f - t0, crucial, mixpanel]
        sleep SAMPLE_SECONDS
      end
    ensure
      redis&.close
    end

    # Waits (at most drain_seconds) for every crucial job to finish and the seed's analytics
    # queue to empty. Returns whether they did.
    def drain(pushed)
      Story.wait_until("the queues to drain", @opts.drain_seconds, interval: 0.25) do
        @redis.llen("story:done") >= pushed && @redis.llen("queue:mixpanel").zero?
      end
      true
    rescue RuntimeError => e
      warn "story: #{@mode}: #{e.message}"
      false
    end

    def collect(timeline)
      done = @redis.lrange("story:done", 0, -1).map do |line|
        id, enqueued, finished = line.split
        [Integer(id), Float(enqueued) - timeline["t0"], Float(finished) - timeline["t0"]]
      end
      mock_events = @parts.mock.get("events")
      # Seed: analytics jobs still waiting in Redis (queued, to be retried) or dead.
      waiting = @redis.lrange("queue:mixpanel", 0, -1) + @redis.zrange("retry", 0, -1) + @redis.zrange("schedule", 0, -1)
      timeline.merge(
        "mode" => @mode, "done" => done,
        "failed_ids" => @redis.lrange("story:failed", 0, -1),
        "dropped_ids" => @redis.lrange("story:dropped", 0, -1),
        "waiting_ids" => waiting.map { |job| Story.job_event_id(job) },
        "dead_ids" => @redis.zrange("dead", 0, -1).map { |job| Story.job_event_id(job) },
        "delivered_ids" => mock_events.map { |e| e.dig("properties", "$insert_id") },
        "mock_stats" => @parts.mock.get("stats"),
        "app" => File.exist?(result_path) ? JSON.parse(File.read(result_path)) : nil
      )
    end
  end

  # A Sidekiq job's JSON (a MixpanelJob: args [type, message]) to its event's id.
  def self.job_event_id(job_json)
    JSON.parse(JSON.parse(job_json)["args"][1]).dig("data", "properties", "$insert_id")
  end

  def self.main(argv)
    opts = parse(argv)
    # A watchdog: whatever hangs, the process ends (the ensure blocks stop the parts).
    budget = opts.runs.size * (opts.durations.values.sum + opts.drain_seconds + 120)
    main_thread = Thread.current
    Thread.new do
      sleep budget
      main_thread.raise(Interrupt, "story: the watchdog's #{budget.round} s ran out")
    end
    %w[INT TERM].each { |sig| trap(sig) { main_thread.raise(Interrupt, "story: SIG#{sig}") } }

    FileUtils.mkdir_p(opts.out)
    command = "ruby scripts/story/run.rb #{argv_for_report(opts)}"
    runs = Dir.mktmpdir("bulkhead-story-") do |tmp|
      opts.runs.map do |mode|
        dir = File.join(tmp, mode)
        FileUtils.mkdir_p(dir)
        puts "story: #{mode}: #{opts.durations.map { |k, v| "#{k} #{v}s" }.join(", ")} at #{opts.rate} jobs/s"
        run = Run.new(mode, opts, dir).call
        puts Report.summary_line(run)
        run
      rescue StandardError
        # The parts' logs die with the temp dir: show their ends.
        Dir.glob(File.join(dir, "*.log")).each do |log|
          warn "--- #{File.basename(log)} (last lines)", File.readlines(log).last(15).join
        end
        raise
      end
    end
    report = Report.new(runs, opts, command)
    File.write(File.join(opts.out, "story.md"), report.markdown)
    File.write(File.join(opts.out, "story.svg"), report.svg)
    File.write(opts.row, report.reliability_row) if opts.row
    puts report.checks_text
    puts "story: wrote #{File.join(opts.out, "story.md")} and story.svg"
    exit(report.pass? ? 0 : 1)
  rescue Interrupt => e
    warn e.message
    exit 130
  end

  def self.argv_for_report(opts)
    ["--runs #{opts.runs.join(",")}", "--phases #{opts.durations.values.map { |v| v.to_s.delete_suffix(".0") }.join(",")}",
     "--rate #{opts.rate.to_s.delete_suffix(".0")}", "--concurrency #{opts.concurrency}", "--guard #{opts.guard}",
     "--hash-rounds #{opts.hash_rounds}", (opts.test ? "--test" : nil)].compact.join(" ")
  end
end

Story.main(ARGV) if $PROGRAM_NAME == __FILE__
