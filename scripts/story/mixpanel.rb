# frozen_string_literal: true

# mixpanel-ruby's Tracker#track, Consumer and BufferedConsumer, as the app of the story uses
# them. No gem registry is reachable here to install mixpanel-ruby, so these follow its source
# (lib/mixpanel-ruby/events.rb, tracker.rb, consumer.rb at f9508392) line for line in what
# matters to the story: the message shapes, one synchronous Net::HTTP POST per send with 10 s
# timeouts, and a buffer that flushes synchronously every 50 messages and keeps what failed.

require "base64"
require "json"
require "net/http"

module Mixpanel
  class MixpanelError < StandardError; end
  class ConnectionError < MixpanelError; end
  class ServerError < MixpanelError; end

  # Tracker#track: builds the message and hands it to the block (the consumer).
  class Tracker
    VERSION = "2.3.1"

    def initialize(token, &block)
      @token = token
      @sink = block
    end

    def track(distinct_id, event, properties = {})
      properties = { "distinct_id" => distinct_id, "token" => @token, "time" => Time.now.to_i, "mp_lib" => "ruby",
                     "$lib_version" => VERSION }.merge(properties)
      @sink.call(:event, { "data" => { "event" => event, "properties" => properties } }.to_json)
    end
  end

  # One POST per message, on the caller's thread, form body data=base64(json)&verbose=1.
  class Consumer
    def initialize(events_endpoint)
      @events_endpoint = events_endpoint
    end

    def send!(type, message)
      raise MixpanelError, "this story's consumer sends events only, not #{type}" unless type.to_sym == :event

      decoded_message = JSON.parse(message)
      data = Base64.encode64(decoded_message["data"].to_json).gsub("\n", "")
      form_data = { "data" => data, "verbose" => 1 }
      begin
        response_code, response_body = request(@events_endpoint, form_data)
      rescue StandardError => e
        raise ConnectionError, "Could not connect to Mixpanel, with error \"#{e.message}\"."
      end

      result = {}
      if response_code.to_i == 200
        begin
          result = JSON.parse(response_body.to_s)
        rescue JSON::ParserError
          raise ServerError, "Could not interpret Mixpanel server response: '#{response_body}'"
        end
      end
      return if result["status"] == 1

      raise ServerError, "Could not write to Mixpanel, server responded with #{response_code} returning: '#{response_body}'"
    end

    private

    def request(endpoint, form_data)
      uri = URI(endpoint)
      request = Net::HTTP::Post.new(uri.request_uri)
      request.set_form_data(form_data)
      client = Net::HTTP.new(uri.host, uri.port)
      client.use_ssl = uri.scheme == "https"
      client.open_timeout = 10
      client.continue_timeout = 10
      client.read_timeout = 10
      client.ssl_timeout = 10
      response = client.request(request)
      [response.code, response.body]
    end
  end

  # Buffers up to 50 messages, then sends them as one array through a Consumer, synchronously.
  # A failed flush keeps the unsent messages and raises; the next send! tries them all again.
  class BufferedConsumer
    MAX_LENGTH = 50

    def initialize(events_endpoint)
      @max_length = MAX_LENGTH
      @buffer = []
      @sink = Consumer.new(events_endpoint).method(:send!)
    end

    def send!(type, message)
      raise MixpanelError, "this story's consumer buffers events only, not #{type}" unless type.to_sym == :event

      @buffer << message
      flush if @buffer.length >= @max_length
    end

    def flush
      sent_messages = 0
      begin
        @buffer.each_slice(@max_length) do |chunk|
          data = chunk.map { |message| JSON.parse(message)["data"] }
          @sink.call(:event, { "data" => data }.to_json)
          sent_messages += chunk.length
        end
      rescue StandardError
        @buffer.slice!(0, sent_messages)
        raise
      end
      @buffer = []
    end

    # Messages waiting in the buffer (not part of mixpanel-ruby: the story's accounting).
    def buffered = @buffer.dup
  end
end
