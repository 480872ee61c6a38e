# frozen_string_literal: true

# The real parts of a run: redis-server, the project's mock ingestion server and a Sidekiq
# process, each on 127.0.0.1, started with a deadline and stopped (TERM, then KILL) by #stop_all,
# which the runner calls from an ensure block.

require "json"
require "net/http"
require "redis"
require "rbconfig"
require "socket"
require "timeout"

# Sidekiq 6.4 calls sadd for its return value only; keeps the output free of redis-rb 4.8 warnings.
Redis.sadd_returns_boolean = false

module Story
  def self.monotonic = Process.clock_gettime(Process::CLOCK_MONOTONIC)

  # Polls the block until it is truthy; raises after `seconds`.
  def self.wait_until(what, seconds, interval: 0.05)
    deadline = monotonic + seconds
    until (value = yield)
      raise "timed out after #{seconds}s waiting for #{what}" if monotonic > deadline

      sleep interval
    end
    value
  end

  # The mock's control endpoints (see mock/src/lib.rs).
  class Mock
    attr_reader :url

    def initialize(url)
      @url = url
      @uri = URI(url)
    end

    def get(name) = JSON.parse(http { |h| h.get("/_mock/#{name}") }.body)

    def post(name, query = nil)
      res = http { |h| h.post("/_mock/#{name}#{query ? "?#{query}" : ""}", "") }
      raise "mock control #{name} failed: #{res.code} #{res.body}" unless res.code == "200"
    end

    private

    def http(&block)
      Net::HTTP.start(@uri.host, @uri.port, open_timeout: 5, read_timeout: 30, &block)
    end
  end

  # Starts and stops the processes of one run; every log goes to dir.
  class Parts
    attr_reader :redis_url, :mock

    def initialize(dir)
      @dir = dir
      @pids = {}
      @mock_stdin = nil
    end

    def start_redis
      3.times do
        port = free_port
        pid = spawn_logged("redis", "redis-server", "--port", port.to_s, "--bind", "127.0.0.1", "--save", "",
                           "--appendonly", "no", "--dir", @dir, "--daemonize", "no")
        url = "redis://127.0.0.1:#{port}/0"
        # Another process may have taken the port between free_port and the bind: try another.
        up = Story.wait_until("redis on port #{port}", 10) { exited?(pid) ? :exited : ping(url) }
        if up == :exited
          @pids.delete("redis")
          next
        end
        return @redis_url = url
      end
      raise "redis-server did not start (see #{@dir}/redis.log)"
    end

    def start_mock(bin)
      raise "bulkhead-mock not found at #{bin}" unless File.executable?(bin)

      # --exit-on-stdin-eof: the mock also ends if the runner dies.
      reader, @mock_stdin = IO.pipe
      out_r, out_w = IO.pipe
      pid = Process.spawn(bin, "--port", "0", "--exit-on-stdin-eof", in: reader, out: out_w,
                                                                   err: File.join(@dir, "mock.log"))
      @pids["mock"] = pid
      reader.close
      out_w.close
      line = Timeout.timeout(30) { out_r.gets }
      out_r.close
      raise "bulkhead-mock printed no URL" unless line&.start_with?("http://127.0.0.1:")

      @mock = Mock.new(line.strip)
    end

    # sidekiq -r app.rb, on the queues crucial then mixpanel (strict order: crucial first).
    def start_sidekiq(env, lib:, concurrency:)
      app = File.expand_path("app.rb", __dir__)
      argv = [RbConfig.ruby, "-I", lib, sidekiq_bin, "-r", app, "-c", concurrency.to_s,
              "-q", "crucial", "-q", "mixpanel", "-t", "10"]
      pid = spawn_logged("sidekiq", *argv, env: env.merge("REDIS_URL" => @redis_url))
      redis = Redis.new(url: @redis_url, timeout: 5)
      Story.wait_until("sidekiq to register in redis (see #{@dir}/sidekiq.log)", 60, interval: 0.1) do
        raise "sidekiq exited at start (see #{@dir}/sidekiq.log)" if exited?(pid)

        redis.scard("processes").positive?
      end
    ensure
      redis&.close
    end

    # TERM, wait up to `seconds`, then KILL.
    def stop(name, seconds)
      pid = @pids.delete(name) or return
      signal("TERM", pid)
      deadline = Story.monotonic + seconds
      sleep 0.05 until exited?(pid) || Story.monotonic > deadline
      return if exited?(pid)

      warn "story: #{name} did not stop within #{seconds}s; killing it"
      signal("KILL", pid)
      Process.wait(pid)
    rescue Errno::ECHILD
      nil
    end

    def stop_all
      @mock_stdin&.close unless @mock_stdin&.closed?
      %w[sidekiq mock redis].each { |name| stop(name, name == "sidekiq" ? 30 : 5) }
    end

    private

    def spawn_logged(name, *argv, env: {})
      log = File.join(@dir, "#{name}.log")
      @pids[name] = Process.spawn(env, *argv, in: File::NULL, out: log, err: [:child, :out])
    end

    def exited?(pid)
      !Process.wait(pid, Process::WNOHANG).nil?
    rescue Errno::ECHILD
      true
    end

    def signal(sig, pid)
      Process.kill(sig, pid)
    rescue Errno::ESRCH
      nil
    end

    def ping(url)
      redis = Redis.new(url: url, timeout: 1)
      redis.ping == "PONG"
    rescue Redis::BaseConnectionError
      false
    ensure
      redis&.close
    end

    def free_port
      server = TCPServer.new("127.0.0.1", 0)
      server.addr[1]
    ensure
      server&.close
    end

    def sidekiq_bin
      Gem.bin_path("sidekiq", "sidekiq")
    rescue Gem::Exception
      "/usr/bin/sidekiq"
    end
  end
end
