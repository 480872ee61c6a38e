# frozen_string_literal: true

# The app of the story, loaded by the `sidekiq` CLI (-r). Its crucial job does a fixed amount
# of CPU work and tracks an analytics event through mixpanel-ruby's Tracker; STORY_MODE picks
# what the tracker's block does with the message, the only line that differs between the runs:
#
#   sync      Mixpanel::Consumer#send!: a POST to the service inside the job
#   seed      the seed's remedy: a MixpanelJob on the "mixpanel" Sidekiq queue unless that queue
#             holds STORY_GUARD jobs or more; the job sends through a ConnectionPool of five
#             50-event Mixpanel::BufferedConsumers
#   bulkhead  Bulkhead::MixpanelConsumer#send!: one client for the process, queue_capacity
#             STORY_GUARD (the same bound as the seed's guard)
#
# What the runner (run.rb) reads back: Redis lists story:done ("id enqueued_at done_at"),
# story:failed and story:dropped (event ids), and the JSON file STORY_RESULT written at exit.

require "connection_pool"
require "json"
require "sidekiq"
require "sidekiq/api"
require_relative "mixpanel"
require_relative "work"

# Sidekiq 6.4 calls sadd for its return value only; keeps its log free of redis-rb 4.8 warnings.
Redis.sadd_returns_boolean = false

module Story
  MODE = ENV.fetch("STORY_MODE")
  TRACK_URL = "#{ENV.fetch("STORY_MOCK_URL")}/track".freeze
  GUARD = Integer(ENV.fetch("STORY_GUARD"))
  HASH_ROUNDS = Integer(ENV.fetch("STORY_HASH_ROUNDS"))
  RESULT_PATH = ENV.fetch("STORY_RESULT")
  # How long the exit flush may wait for the service (bulkhead's flush, the seed's buffers).
  EXIT_FLUSH_SECONDS = 10
  TOKEN = "story-token"

  def self.record(list, value)
    Sidekiq.redis { |r| r.rpush(list, value) }
  end

  # The event id the app puts in $insert_id, read back from a message for the accounting.
  def self.event_id(message)
    JSON.parse(message).dig("data", "properties", "$insert_id")
  end

  case MODE
  when "sync"
    CONSUMER = Mixpanel::Consumer.new(TRACK_URL)
    TRACKER = Mixpanel::Tracker.new(TOKEN) { |type, message| CONSUMER.send!(type, message) }
  when "seed"
    BUFFERS = [] # every BufferedConsumer the pool made, flushed at exit
    BUFFERS_LOCK = Mutex.new
    POOL = ConnectionPool.new(size: 5) do
      consumer = Mixpanel::BufferedConsumer.new(TRACK_URL)
      BUFFERS_LOCK.synchronize { BUFFERS << consumer }
      consumer
    end
    TRACKER = Mixpanel::Tracker.new(TOKEN) do |type, message|
      if Sidekiq::Queue.new("mixpanel").size < GUARD
        MixpanelJob.perform_async(type.to_s, message)
      else
        record("story:dropped", event_id(message))
      end
    end
  when "bulkhead"
    require "bulkhead"
    CONSUMER = Bulkhead::MixpanelConsumer.new(api_host: ENV.fetch("STORY_MOCK_URL"), queue_capacity: GUARD)
    TRACKER = Mixpanel::Tracker.new(TOKEN) { |type, message| CONSUMER.send!(type, message) }
  else
    raise ArgumentError, "STORY_MODE must be sync, seed or bulkhead, not #{MODE.inspect}"
  end

  # What only this process knows, for the runner's accounting, once Sidekiq has stopped.
  def self.write_result
    result =
      case MODE
      when "bulkhead"
        flushed = CONSUMER.flush(timeout: EXIT_FLUSH_SECONDS)
        { "flushed" => flushed, "stats" => CONSUMER.client.stats }
      when "seed"
        errors = BUFFERS.sum do |consumer|
          consumer.flush
          0
        rescue Mixpanel::MixpanelError
          1
        end
        { "flush_errors" => errors, "buffered" => BUFFERS.flat_map(&:buffered).map { |m| event_id(m) } }
      else
        {}
      end
    File.write(RESULT_PATH, JSON.generate(result))
  end
end

at_exit { Story.write_result }

class CrucialJob
  include Sidekiq::Job
  sidekiq_options queue: "crucial"

  def perform(id, enqueued_at)
    digest = Story.work(id, Story::HASH_ROUNDS)
    begin
      Story::TRACKER.track("user-#{id % 100}", "Crucial job done",
                           { "$insert_id" => "job-#{id}", "digest" => digest.unpack1("H8") })
    rescue Mixpanel::MixpanelError
      # Analytics must not fail the crucial job (and its retry would redo the work).
      Story.record("story:failed", "job-#{id}")
    end
    Story.record("story:done", "#{id} #{enqueued_at} #{Time.now.to_f}")
  end
end

# The seed's analytics job: raises when the service is down, so Sidekiq retries it later.
class MixpanelJob
  include Sidekiq::Job
  sidekiq_options queue: "mixpanel"

  def perform(type, message)
    Story::POOL.with { |consumer| consumer.send!(type.to_sym, message) }
  end
end
