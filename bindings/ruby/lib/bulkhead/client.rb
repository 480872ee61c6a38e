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

    attr_reader :logger

    # token: the Mixpanel project token. config: any core config key as a keyword
    # (api_host:, queue_capacity:, flush_interval_ms:, ...; see README).
    # on_error: a callable given each new delivery error (a Hash) from the thread calling
    # flush, close or stats. logger: where new delivery errors are logged at warn
    # (default a Logger on stderr at warn; nil to silence).
    def initialize(token:, on_error: nil, logger: :default, **config)
      config = config.transform_keys(&:to_s).transform_values { |v| v.is_a?(Symbol) ? v.to_s : v }
      json = JSON.generate(config.merge("token" => token))
      out = FFI::MemoryPointer.new(:pointer)
      status = Native.bulkhead_client_new(json, json.bytesize, out)
      raise Native.error_for(status) unless status == Native::OK

      @ptr = FFI::AutoPointer.new(out.read_pointer, Native.method(:bulkhead_client_free))
      @on_error = on_error
      @logger = logger == :default ? Logger.new($stderr, level: Logger::WARN, progname: "bulkhead") : logger
      Bulkhead.register_exit_hook
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
    # keep running). true when all of it was resolved, false when the deadline passed first.
    def flush(timeout: 2.0)
      status = Native.bulkhead_client_flush(@ptr, millis(timeout))
      report_errors
      finished?(status)
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

    def inspect
      "#<#{self.class.name} queue_size=#{queue_size}>"
    end

    private

    def queued(status)
      return true if status == Native::OK
      return false if status == Native::QUEUE_FULL

      raise Native.error_for(status)
    end

    def finished?(status)
      return true if status == Native::OK
      return false if status == Native::TIMEOUT

      raise Native.error_for(status)
    end

    # Runs the block with (buf, len, written), growing buf until the JSON array fits.
    def read_errors
      len = ERRORS_BUFFER
      written = FFI::MemoryPointer.new(:size_t)
      loop do
        buf = FFI::MemoryPointer.new(:char, len)
        status = yield(buf, len, written)
        case status
        when Native::OK
          text = buf.read_string(written.read(:size_t)).force_encoding(Encoding::UTF_8)
          return JSON.parse(text, symbolize_names: true)
        when Native::BUFFER_TOO_SMALL
          len = [written.read(:size_t), len * 2].max
        else
          raise Native.error_for(status)
        end
      end
    end

    # Passes new delivery errors to on_error and the logger, on the calling Ruby thread.
    def report_errors
      return if @on_error.nil? && @logger.nil?

      # The library keeps which errors were handed out (per process: a forked child starts fresh).
      fresh = read_errors { |buf, len, written| Native.bulkhead_client_take_errors(@ptr, buf, len, written) }
      fresh.each do |error|
        @logger&.warn("delivery error on #{error[:endpoint]}: #{error[:message]} " \
                      "(#{error[:events]} events, #{error[:outcome]}, http #{error[:http_status].inspect})")
        @on_error&.call(error)
      end
    rescue StandardError => e
      # Reporting must never break the caller's flush/close/stats.
      @logger&.warn("error reporting failed: #{e.class}: #{e.message}")
    end

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
end
