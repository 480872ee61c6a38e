# frozen_string_literal: true

module Bulkhead
  # A drop-in consumer for mixpanel-ruby's Tracker:
  #
  #   consumer = Bulkhead::MixpanelConsumer.new
  #   tracker = Mixpanel::Tracker.new(TOKEN) { |type, message| consumer.send!(type, message) }
  #
  # Like mixpanel-ruby's own consumers it needs no token: every message the Tracker builds
  # carries its own. Without `token:` its client has none either and only forwards such
  # messages: `consumer.client.track`, `people_set`, `alias`... raise ArgumentError. Give
  # `token:` to use them too.
  #
  # The message string goes to the library untouched (it unwraps the "data" envelope, arrays
  # and "api_key"). send! never raises on delivery trouble, a full queue or a closed client:
  # it returns false. Malformed input raises ArgumentError.
  #
  # Tracker#alias never reaches a consumer: mixpanel-ruby sends it with a new synchronous
  # Mixpanel::Consumer, whatever block the Tracker was given. Use Bulkhead::Client#alias.
  class MixpanelConsumer
    attr_reader :client

    # Either wrap an existing client (`MixpanelConsumer.new(client)`) or give the client's
    # keywords (`MixpanelConsumer.new(api_host: ..., token: ...)`, all optional).
    # credentials: /import service-account credentials, a Mixpanel::ServiceAccountCredentials
    # (anything answering username, secret, project_id) or a Hash with those keys.
    def initialize(client = nil, credentials: nil, **config)
      if client && (credentials || !config.empty?)
        raise ArgumentError, "give a Bulkhead::Client or client keywords, not both"
      end

      config = config.merge(service_account(credentials)) { |_key, given, _from_credentials| given } if credentials
      # token: nil asks the library for a client without a token of its own.
      @client = client || Client.new(token: config.delete(:token), **config)
    end

    # type: :event, :profile_update, :group_update or :import. message: the JSON string.
    def send!(type, message)
      @client.send_message(type.to_s, message)
    rescue ClosedError
      false
    end

    # Waits (at most `timeout` seconds) for what was queued to be delivered; true if every
    # event was (mixpanel-ruby's consumers answer a boolean too). The client's own `flush`
    # returns the full FlushResult.
    def flush(timeout: 2.0)
      @client.flush(timeout: timeout).delivered?
    rescue ClosedError
      false
    end

    # Delivers what is queued (at most `timeout` seconds; default the client's
    # shutdown_timeout_ms), then closes the client. Idempotent; true when all was resolved.
    def close(timeout: nil)
      @client.close(timeout: timeout)
    rescue ClosedError
      false
    end

    # A proc to pass as mixpanel-ruby's Tracker block: Mixpanel::Tracker.new(TOKEN, &consumer).
    def to_proc
      method(:send!).to_proc
    end

    private

    def service_account(credentials)
      fetch = lambda do |name|
        value = credentials.is_a?(Hash) ? credentials[name] || credentials[name.to_s] : credentials.public_send(name)
        raise ArgumentError, "credentials need a #{name}" if value.nil? || value.to_s.empty?

        value.to_s
      end
      { service_account_username: fetch.call(:username), service_account_secret: fetch.call(:secret),
        project_id: fetch.call(:project_id) }
    end
  end
end
