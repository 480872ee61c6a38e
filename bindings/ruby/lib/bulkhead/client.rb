# frozen_string_literal: true

require "json"
require "logger"

module Bulkhead
  # A bulkhead client: a bounded in-process queue drained by a pool of background senders.
  # Every queueing method returns at once: true when queued, false when the queue-size guard
  # dropped the event. Thread-safe; fork-safe (a child gets a fresh queue).
  class Client
    CIRCUIT_STATES = %i[closed open half_open].freeze
    ERRORS_BUFFER = 8192
    LOG_LEVELS = { "error" => Logger::ERROR, "warn" => Logger::WARN, "info" => Logger::INFO,
                   "debug" => Logger::DEBUG }.freeze

    # What #flush found. status: :delivered (every event resolved since the previous flush
    # was delivered), :incomplete (finished; `failed` events failed and `rejected` were
    # rejected since the previous flush, each reported by one flush) or :timed_out (the
    # deadline passed first; the counts go to the next flush). Always truthy: ask
    # #delivered?.
    FlushResult = Struct.new(:status, :failed, :rejected) do
      def delivered? = status == :delivered
      def incomplete? = status == :incomplete
      def timed_out? = status == :timed_out
    end

    # Oj (Debian's ruby-oj, or the gem `oj`), when installed, writes properties as JSON about
    # twice as fast as the json gem, with the same result in its compat mode; what it refuses
    # or writes as invalid UTF-8 goes to JSON.generate, whose errors are the reference.
    OJ_OPTIONS =
      begin
        require "oj"
        { mode: :compat, nan: :raise }.freeze
      rescue LoadError
        nil
      end

    attr_reader :logger

    # token: the Mixpanel project token. config: any core config key as a keyword, e.g.
    # api_host:, region: (:us, :eu, :in), proxy:, tls_system_roots:, queue_capacity:,
    # queue_max_bytes:, pool_size:, batch_size:, batch_max_bytes:, flush_interval_ms:,
    # connect_timeout_ms:, request_timeout_ms:, max_retries:, backoff_initial_ms:,
    # backoff_max_ms:, retry_budget_ms:, circuit_failure_threshold:, circuit_cooldown_ms:,
    # circuit_cooldown_max_ms:, gzip:, max_event_bytes:, shutdown_timeout_ms:,
    # service_account_username:, service_account_secret:, project_id:, api_secret:,
    # max_recent_errors:, log_level: (the library's own stderr lines; default :off here,
    # since they reach `logger`), test_mode:, test_mode_capacity:, name: (the metrics
    # label), spool_dir: (a disk spool for what the queue cannot hold, failed deliveries and
    # events pending at close, replayed when the service is back; off when unset),
    # spool_max_bytes:, spool_max_age_ms:, spool_sync_interval_ms:. The README's
    # configuration table says what each does.
    # on_error: a callable given each new delivery error (a Hash) from the thread calling
    # flush, close, stats or (when the library signals new records) a queueing method.
    # logger: where delivery errors and the library's log lines (the first queue-full
    # drop, events abandoned at close or exit, ...) go, on those same Ruby threads
    # (default a Logger on stderr at warn; nil to silence).
    def initialize(token:, on_error: nil, logger: :default, **config)
      config = config.transform_keys(&:to_s).transform_values { |v| v.is_a?(Symbol) ? v.to_s : v }
      config["log_level"] ||= "off"
      json = JSON.generate(config.merge("token" => token))
      out = FFI::MemoryPointer.new(:pointer)
      status = Native.bulkhead_client_new(json, json.bytesize, out)
      raise Native.error_for(status) unless status == Native::OK

      @ptr = FFI::AutoPointer.new(out.read_pointer, Native.method(:bulkhead_client_free))
      # Non-zero while log lines or delivery errors wait: a memory read per call.
      @hint = Native.bulkhead_client_log_hint(@ptr)
      @on_error = on_error
      @logger = logger == :default ? Logger.new($stderr, level: Logger::WARN, progname: "bulkhead") : logger
      @reporter = Reporter.new(@ptr, @logger, @on_error)
      Bulkhead.register_exit_hook
      Bulkhead.register_reporter(self, @reporter)
    end

    # Queues an event for /track. properties: a Hash (merged into the event's properties).
    def track(distinct_id, event, properties = {})
      d = utf8(distinct_id)
      e = utf8(event)
      p = properties_json(properties)
      queued Native.bulkhead_track(@ptr, d, d.bytesize, e, e.bytesize, p, p ? p.bytesize : 0)
    end

    # Queues an event for /import. time: a Time or a number of seconds since the epoch.
    def import(distinct_id, event, time, properties = {})
      d = utf8(distinct_id)
      e = utf8(event)
      p = properties_json(properties)
      queued Native.bulkhead_import(@ptr, d, d.bytesize, e, e.bytesize, time_ms(time), p, p ? p.bytesize : 0)
    end

    # Queues $create_alias for /track: alias_id becomes another id of distinct_id. The
    # non-blocking replacement for mixpanel-ruby's Tracker#alias, which always sends its own
    # synchronous request, whatever the Tracker's block.
    def alias(alias_id, distinct_id)
      raise ArgumentError, "alias needs a non-empty alias_id and distinct_id" if alias_id.to_s.empty? || distinct_id.to_s.empty?

      track(distinct_id, "$create_alias", { "alias" => alias_id })
    end

    def people_set(distinct_id, properties) = people(distinct_id, "$set", properties)
    def people_set_once(distinct_id, properties) = people(distinct_id, "$set_once", properties)
    def people_increment(distinct_id, properties) = people(distinct_id, "$add", properties)
    def people_append(distinct_id, properties) = people(distinct_id, "$append", properties)
    def people_union(distinct_id, properties) = people(distinct_id, "$union", properties)
    def people_remove(distinct_id, properties) = people(distinct_id, "$remove", properties)
    def people_unset(distinct_id, property_names) = people(distinct_id, "$unset", Array(property_names))
    def people_delete(distinct_id) = people(distinct_id, "$delete", nil)

    def group_set(group_key, group_id, properties) = group(group_key, group_id, "$set", properties)
    def group_set_once(group_key, group_id, properties) = group(group_key, group_id, "$set_once", properties)
    def group_union(group_key, group_id, properties) = group(group_key, group_id, "$union", properties)
    def group_remove(group_key, group_id, properties) = group(group_key, group_id, "$remove", properties)
    def group_unset(group_key, group_id, names) = group(group_key, group_id, "$unset", Array(names))
    def group_delete(group_key, group_id) = group(group_key, group_id, "$delete", nil)

    # A user profile update: operation is "$set", "$add", ... value a Hash (Array for $unset).
    def people(distinct_id, operation, value)
      d = utf8(distinct_id)
      o = utf8(operation)
      v = value.nil? ? nil : to_json(value)
      queued Native.bulkhead_people(@ptr, d, d.bytesize, o, o.bytesize, v, v ? v.bytesize : 0)
    end

    # A group profile update; operations as for #people.
    def group(group_key, group_id, operation, value)
      k = utf8(group_key)
      i = utf8(group_id)
      o = utf8(operation)
      v = value.nil? ? nil : to_json(value)
      queued Native.bulkhead_group(@ptr, k, k.bytesize, i, i.bytesize, o, o.bytesize, v, v ? v.bytesize : 0)
    end

    # Queues messages built by another SDK, untouched. endpoint: events, people, groups,
    # imports (or mixpanel-ruby's event, profile_update, group_update, import). message: a
    # JSON string (one message, an array, or a {"data": ..., "api_key": ...} envelope).
    def send_message(endpoint, message, api_key: nil, api_secret: nil)
      ep = utf8(endpoint)
      m = message.is_a?(String) ? utf8(message) : to_json(message)
      status =
        if api_key || api_secret
          k = api_key && utf8(api_key)
          s = api_secret && utf8(api_secret)
          Native.bulkhead_send_with_credentials(@ptr, ep, ep.bytesize, m, m.bytesize,
                                                k, k ? k.bytesize : 0, s, s ? s.bytesize : 0)
        else
          Native.bulkhead_send(@ptr, ep, ep.bytesize, m, m.bytesize)
        end
      queued status
    end

    # Sends everything queued so far and waits at most `timeout` seconds (other Ruby threads
    # keep running). Returns a FlushResult: :delivered, :incomplete (with counts) or
    # :timed_out.
    def flush(timeout: 2.0)
      out = Native::FlushResultStruct.new
      status = Native.bulkhead_client_flush_ex(@ptr, millis(timeout), out.pointer)
      report_errors
      case status
      when Native::OK then FlushResult.new(:delivered, 0, 0)
      when Native::INCOMPLETE then FlushResult.new(:incomplete, out[:failed], out[:rejected])
      when Native::TIMEOUT then FlushResult.new(:timed_out, 0, 0)
      else raise Native.error_for(status)
      end
    end

    # Flushes for at most `timeout` seconds (default: the configured shutdown_timeout_ms), then
    # stops the client; what is still pending is counted as failed. Idempotent.
    # true when everything was resolved in time.
    def close(timeout: nil)
      ms = timeout.nil? ? Native::TIMEOUT_CONFIGURED : millis(timeout)
      status = Native.bulkhead_client_close(@ptr, ms)
      report_errors
      finished?(status)
    end

    # A snapshot of the counters, with symbol keys; circuit_state is :closed, :open or :half_open.
    # When no call is running: enqueued + replayed == sent + rejected + failed + spooled +
    # queue_len + spool_pending (the spool's keys, :spooled, :replayed, :spool_expired,
    # :spool_corrupt, :dropped_spool_full, :dropped_spool_error (both in :failed),
    # :spool_pending, :spool_bytes and :spool_records, stay 0 without spool_dir).
    def stats
      raw = Native::Stats.new
      status = Native.bulkhead_client_stats(@ptr, raw.pointer)
      raise Native.error_for(status) unless status == Native::OK

      report_errors
      hash = raw.members.to_h { |name| [name, raw[name]] }
      hash[:circuit_state] = CIRCUIT_STATES.fetch(hash[:circuit_state], hash[:circuit_state])
      hash
    end

    # Events accepted and not yet resolved.
    def queue_size
      Native.bulkhead_client_queue_len(@ptr)
    end

    # The recent delivery errors (oldest first), as Hashes with symbol keys:
    # :seq, :time_ms, :endpoint, :http_status, :events, :outcome, :message.
    def errors(after_seq: 0)
      read_errors { |buf, len, written| Native.bulkhead_client_errors(@ptr, after_seq, buf, len, written) }
    end

    # In test_mode: the events kept so far, oldest first, as Hashes
    # {endpoint: "events"|"people"|"groups"|"imports", data: {...}} (data exactly as it
    # would have been sent). InvalidArgumentError when not in test_mode.
    def test_events
      read_errors { |buf, len, written| Native.bulkhead_client_test_events(@ptr, buf, len, written) }
    end

    # In test_mode: forgets the events kept so far.
    def clear_test_events
      status = Native.bulkhead_client_test_clear(@ptr)
      raise Native.error_for(status) unless status == Native::OK

      nil
    end

    # The counters and gauges in the Prometheus text format (0.0.4).
    def metrics_text
      read_text { |buf, len, written| Native.bulkhead_client_metrics(@ptr, buf, len, written) }
    end

    # Hands waiting log lines and delivery errors to the logger and on_error (also called
    # by Bulkhead.shutdown at exit).
    def report_errors
      @reporter.report
    end

    def inspect
      "#<#{self.class.name} queue_size=#{queue_size}>"
    end

    private

    def queued(status)
      report_errors if @hint.read_uint64 != 0
      return true if status == Native::OK
      return false if status == Native::QUEUE_FULL

      raise Native.error_for(status)
    end

    def finished?(status)
      return true if status == Native::OK
      return false if status == Native::TIMEOUT

      raise Native.error_for(status)
    end

    def read_errors(&block) = Reporter.read_errors(&block)
    def read_text(&block) = Reporter.read_text(&block)

    def utf8(value)
      s = value.to_s
      enc = s.encoding
      return s if enc == Encoding::UTF_8 || enc == Encoding::BINARY || enc == Encoding::US_ASCII

      s.encode(Encoding::UTF_8)
    rescue EncodingError => e
      raise InvalidUTF8Error, "bulkhead: #{e.message}"
    end

    def properties_json(properties)
      return nil if properties.nil? || (properties.respond_to?(:empty?) && properties.empty?)
      raise InvalidArgumentError, "bulkhead: properties must be a Hash" unless properties.is_a?(Hash)

      to_json(properties)
    end

    def to_json(value)
      if OJ_OPTIONS
        begin
          out = Oj.dump(value, OJ_OPTIONS)
          return out if out.valid_encoding?
        rescue StandardError
          # What Oj refuses (NaN, ...): the json gem has the last word, with its own error.
        end
      end
      JSON.generate(value)
    rescue JSON::GeneratorError, EncodingError => e
      raise InvalidJSONError, "bulkhead: cannot encode as JSON: #{e.message}"
    end

    def time_ms(time)
      case time
      when Time then (time.to_r * 1000).round
      when Numeric then (time.to_r * 1000).round
      else raise InvalidArgumentError, "bulkhead: time must be a Time or seconds since the epoch"
      end
    end

    def millis(seconds)
      raise InvalidArgumentError, "bulkhead: timeout must be a number of seconds" unless seconds.is_a?(Numeric)

      Native.millis(seconds)
    end
  end

  # What a client hands to its logger and on_error: the library's log lines and delivery
  # errors. Kept apart from the Client so that Bulkhead.shutdown can report for every client
  # at exit through a strong reference to its native handle (never to a Client the garbage
  # collector may be finalizing). The registry drops it when its Client is collected.
  class Reporter
    def initialize(ptr, logger, on_error)
      @ptr = ptr
      @logger = logger
      @on_error = on_error
    end

    # Hands waiting log lines and delivery errors to the logger and on_error.
    def report
      notes = Reporter.read_errors { |buf, len, written| Native.bulkhead_client_take_log(@ptr, buf, len, written) }
      notes.each { |n| @logger&.add(Client::LOG_LEVELS.fetch(n[:level], Logger::WARN), n[:message]) }
      report_delivery_errors
    rescue StandardError => e
      @logger&.warn("error reporting failed: #{e.class}: #{e.message}")
    end

    def self.read_errors(&block)
      JSON.parse(read_text(&block), symbolize_names: true)
    end

    # Runs the block with (buf, len, written), growing buf until the text fits.
    def self.read_text
      len = Client::ERRORS_BUFFER
      written = FFI::MemoryPointer.new(:size_t)
      loop do
        buf = FFI::MemoryPointer.new(:char, len)
        status = yield(buf, len, written)
        case status
        when Native::OK
          return buf.read_string(written.read(:size_t)).force_encoding(Encoding::UTF_8)
        when Native::BUFFER_TOO_SMALL
          len = [written.read(:size_t), len * 2].max
        else
          raise Native.error_for(status)
        end
      end
    end

    private

    # Passes new delivery errors to on_error and the logger, on the calling Ruby thread.
    def report_delivery_errors
      return if @on_error.nil? && @logger.nil?

      # The library keeps which errors were handed out (per process: a forked child starts fresh).
      fresh = Reporter.read_errors { |buf, len, written| Native.bulkhead_client_take_errors(@ptr, buf, len, written) }
      fresh.each do |error|
        @logger&.warn("delivery error on #{error[:endpoint]}: #{error[:message]} " \
                      "(#{error[:events]} events, #{error[:outcome]}, http #{error[:http_status].inspect})")
        @on_error&.call(error)
      end
    rescue StandardError => e
      # Reporting must never break the caller's flush/close/stats.
      @logger&.warn("error reporting failed: #{e.class}: #{e.message}")
    end
  end
end
