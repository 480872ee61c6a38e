# frozen_string_literal: true

module Bulkhead
  # A drop-in consumer for mixpanel-ruby's Tracker:
  #
  #   consumer = Bulkhead::MixpanelConsumer.new(token: TOKEN)
  #   tracker = Mixpanel::Tracker.new(TOKEN) { |type, message| consumer.send!(type, message) }
  #
  # The message string goes to the library untouched (it unwraps the "data" envelope, arrays
  # and "api_key"). send! never raises on delivery trouble, a full queue or a closed client:
  # it returns false. Malformed input raises ArgumentError.
  class MixpanelConsumer
    attr_reader :client

    # Either wrap an existing client (`MixpanelConsumer.new(client)`) or give the client's
    # keywords (`MixpanelConsumer.new(token: ..., api_host: ...)`).
    def initialize(client = nil, **config)
      raise ArgumentError, "give a Bulkhead::Client or client keywords, not both" if client && !config.empty?

      @client = client || Client.new(**config)
    end

    # type: :event, :profile_update, :group_update or :import. message: the JSON string.
    def send!(type, message)
      @client.send_message(type.to_s, message)
    rescue ClosedError
      false
    end

    # Waits (at most `timeout` seconds) for what was queued to be delivered; true if it was.
    def flush(timeout: 2.0)
      @client.flush(timeout: timeout)
    rescue ClosedError
      false
    end

    # A proc to pass as mixpanel-ruby's Tracker block: Mixpanel::Tracker.new(TOKEN, &consumer).
    def to_proc
      method(:send!).to_proc
    end
  end
end
