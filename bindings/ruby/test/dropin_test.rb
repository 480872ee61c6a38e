# frozen_string_literal: true

require "test_helper"

# Drop-in parity with mixpanel-ruby. No gem registry is reachable here, so StandInTracker
# builds exactly the messages mixpanel-ruby's Tracker, People and Groups build (lib/mixpanel-ruby/
# events.rb, people.rb, groups.rb, tracker.rb at f9508392) and hands them to its block, as
# Mixpanel::Tracker.new(token) { |type, message| ... } does.
class DropinTest < BulkheadTest::Test
  MP_TOKEN = "mp-token"

  # mixpanel-ruby's message shapes, nothing else.
  class StandInTracker
    VERSION = "2.3.1"
    attr_reader :people, :groups

    # sync_consumer stands for the Mixpanel::Consumer.new that Tracker#alias makes itself.
    def initialize(token, sync_consumer: nil, &block)
      @token = token
      @sink = block
      @sync_consumer = sync_consumer
      @people = Updates.new(token, :profile_update, block) { |id| { "$distinct_id" => id } }
      @groups = Updates.new(token, :group_update, block) { |key, id| { "$group_key" => key, "$group_id" => id } }
    end

    def track(distinct_id, event, properties = {}, ip = nil)
      @sink.call(:event, { "data" => event_data(distinct_id, event, properties, ip) }.to_json)
    end

    def import(api_key, distinct_id, event, properties = {}, ip = nil)
      @sink.call(:import, { "data" => event_data(distinct_id, event, properties, ip), "api_key" => api_key }.to_json)
    end

    # "Alias requests are always sent synchronously, directly to the Mixpanel service,
    # regardless of how the tracker is configured."
    def alias(alias_id, real_id)
      data = { "event" => "$create_alias",
               "properties" => { "distinct_id" => real_id, "alias" => alias_id, "token" => @token } }
      @sync_consumer.call(:event, { "data" => data }.to_json)
    end

    private

    def event_data(distinct_id, event, properties, ip)
      properties = { "distinct_id" => distinct_id, "token" => @token, "time" => Time.now.to_i, "mp_lib" => "ruby",
                     "$lib_version" => VERSION }.merge(properties)
      properties["ip"] = ip if ip
      { "event" => event, "properties" => properties }
    end
  end

  # Mixpanel::People and Mixpanel::Groups: the same operations, different ids and type.
  class Updates
    def initialize(token, type, sink, &ids)
      @token = token
      @type = type
      @sink = sink
      @ids = ids
    end

    def set(*ids, properties) = op(ids, "$set", properties)
    def set_once(*ids, properties) = op(ids, "$set_once", properties)
    def increment(*ids, properties) = op(ids, "$add", properties)
    def plus_one(id, name) = increment(id, { name => 1 })
    def append(*ids, properties) = op(ids, "$append", properties)
    def union(*ids, properties) = op(ids, "$union", properties)
    def remove(*ids, properties) = op(ids, "$remove", properties)
    def unset(*ids, properties) = op(ids, "$unset", properties.is_a?(Array) ? properties : [properties])
    def track_charge(id, amount, properties = {}) = append(id, { "$transactions" => properties.merge("$amount" => amount) })
    def clear_charges(id) = unset(id, "$transactions")
    def delete_user(id) = op([id], "$delete", "")
    def delete_group(key, id) = op([key, id], "$delete", "")

    def update(message)
      data = { "$token" => @token, "$time" => (Time.now.to_f * 1000.0).to_i }.merge(message)
      @sink.call(@type, { "data" => data }.to_json)
    end

    private

    def op(ids, operation, value) = update(@ids.call(*ids).merge(operation => value))
  end

  OPERATIONS = %w[$set $set_once $add $append $union $remove $unset $delete].freeze

  def setup
    super
    @consumer = Bulkhead::MixpanelConsumer.new(**client_options) # no token, as mixpanel-ruby's consumers
    @clients << @consumer.client
    @tracker = StandInTracker.new(MP_TOKEN) { |type, message| @consumer.send!(type, message) }
  end

  def delivered(count = 1)
    assert @consumer.flush(timeout: 10)
    s = @consumer.client.stats
    assert_equal [count, count, 0, 0, 0], s.values_at(:enqueued, :sent, :rejected, :failed, :dropped_invalid), s.inspect
  end

  def only_request(path)
    reqs = @mock.requests
    assert_equal [path], reqs.map { |r| r["path"] }, reqs.inspect
    assert_equal [200, 1], reqs[0].values_at("status", "records")
    reqs[0]
  end

  def only_update
    updates = @mock.updates
    assert_equal 1, updates.size, updates.inspect
    updates[0]
  end

  PEOPLE = {
    set: [->(p) { p.set("u1", { "$name" => "Ann" }) }, "$set", { "$name" => "Ann" }],
    set_once: [->(p) { p.set_once("u1", { "first" => 1 }) }, "$set_once", { "first" => 1 }],
    increment: [->(p) { p.increment("u1", { "n" => -2 }) }, "$add", { "n" => -2 }],
    plus_one: [->(p) { p.plus_one("u1", "logins") }, "$add", { "logins" => 1 }],
    append: [->(p) { p.append("u1", { "items" => "x" }) }, "$append", { "items" => "x" }],
    union: [->(p) { p.union("u1", { "tags" => %w[a b] }) }, "$union", { "tags" => %w[a b] }],
    remove: [->(p) { p.remove("u1", { "items" => "x" }) }, "$remove", { "items" => "x" }],
    unset: [->(p) { p.unset("u1", "old") }, "$unset", ["old"]],
    track_charge: [->(p) { p.track_charge("u1", 9.5, { "sku" => "a" }) }, "$append",
                   { "$transactions" => { "sku" => "a", "$amount" => 9.5 } }],
    clear_charges: [->(p) { p.clear_charges("u1") }, "$unset", ["$transactions"]],
    delete_user: [->(p) { p.delete_user("u1") }, "$delete", ""],
    update: [->(p) { p.update({ "$distinct_id" => "u1", "$set" => { "x" => 1 } }) }, "$set", { "x" => 1 }]
  }.freeze

  PEOPLE.each do |name, (call, op, value)|
    define_method("test_people_#{name}") do
      call.call(@tracker.people)
      delivered
      u = only_update
      assert_equal [MP_TOKEN, "u1", value], u.values_at("$token", "$distinct_id", op)
      assert_equal [op], OPERATIONS & u.keys
      assert_kind_of Integer, u["$time"] # mixpanel-ruby's own $time (ms), untouched
      assert_nil only_request("/engage")["auth_username"]
    end
  end

  GROUPS = {
    set: [->(g) { g.set("company", "acme", { "size" => 5 }) }, "$set", { "size" => 5 }],
    set_once: [->(g) { g.set_once("company", "acme", { "since" => 2020 }) }, "$set_once", { "since" => 2020 }],
    union: [->(g) { g.union("company", "acme", { "tags" => ["a"] }) }, "$union", { "tags" => ["a"] }],
    remove: [->(g) { g.remove("company", "acme", { "tags" => "a" }) }, "$remove", { "tags" => "a" }],
    unset: [->(g) { g.unset("company", "acme", %w[old older]) }, "$unset", %w[old older]],
    delete_group: [->(g) { g.delete_group("company", "acme") }, "$delete", ""],
    update: [->(g) { g.update({ "$group_key" => "company", "$group_id" => "acme", "$add" => { "n" => 1 } }) },
             "$add", { "n" => 1 }]
  }.freeze

  GROUPS.each do |name, (call, op, value)|
    define_method("test_groups_#{name}") do
      call.call(@tracker.groups)
      delivered
      u = only_update
      assert_equal [MP_TOKEN, "company", "acme", value], u.values_at("$token", "$group_key", "$group_id", op)
      assert_equal [op], OPERATIONS & u.keys
      only_request("/groups")
    end
  end

  def test_track
    @tracker.track("u1", "Played", { "level" => 3, "tags" => ["a"] }, "1.2.3.4")
    delivered
    assert_equal 1, @mock.events.size
    e = @mock.events[0]
    p = e["properties"]
    assert_equal "Played", e["event"]
    assert_equal [MP_TOKEN, "u1", 3, ["a"], "1.2.3.4"], p.values_at("token", "distinct_id", "level", "tags", "ip")
    assert_equal %w[ruby 2.3.1], p.values_at("mp_lib", "$lib_version")
    assert_in_delta Time.now.to_i, p["time"], 600 # seconds, kept as sent
    refute_nil p["$insert_id"] # added by bulkhead: mixpanel-ruby sends none
    only_request("/track")
  end

  def test_import_with_and_without_api_key
    @tracker.import("the-key", "u1", "Long ago", { "time" => 1_500_000_000, "old" => true })
    delivered
    assert_equal [1_500_000_000, true], @mock.events[0]["properties"].values_at("time", "old")
    assert_equal "the-key", only_request("/import")["auth_username"]

    # mixpanel-ruby sends "api_key": null when given none: the message's own token is used.
    @mock.post("reset")
    @tracker.import(nil, "u1", "No key", { "time" => 1_500_000_000 })
    delivered(2)
    assert_equal MP_TOKEN, only_request("/import")["auth_username"]
  end

  def test_credentials_for_import
    creds = Struct.new(:username, :secret, :project_id).new("sa-user", "sa-secret", 12_345)
    consumer = Bulkhead::MixpanelConsumer.new(credentials: creds, **client_options)
    @clients << consumer.client
    tracker = StandInTracker.new(MP_TOKEN) { |type, message| consumer.send!(type, message) }
    tracker.import(nil, "u1", "SA import", { "time" => 1_500_000_000 })
    assert consumer.flush(timeout: 10)
    r = only_request("/import")
    assert_equal %w[sa-user sa-secret], r.values_at("auth_username", "auth_password")
    assert_includes r["query"], "project_id=12345"

    hash = Bulkhead::MixpanelConsumer.new(credentials: { username: "u", secret: "s", project_id: "1" },
                                          **client_options)
    @clients << hash.client
    assert_raises(ArgumentError) { Bulkhead::MixpanelConsumer.new(credentials: { username: "u" }, **client_options) }
    assert_raises(ArgumentError) { Bulkhead::MixpanelConsumer.new(hash.client, credentials: creds) }
  end

  def test_tracker_alias_bypasses_the_consumer_client_alias_does_not_block
    sync = []
    tracker = StandInTracker.new(MP_TOKEN, sync_consumer: ->(type, message) { sync << [type, JSON.parse(message)] }) do |t, m|
      @consumer.send!(t, m)
    end
    tracker.alias("new-id", "orig-id")
    assert_equal 0, @consumer.client.stats[:enqueued]
    assert_equal [[:event, { "data" => { "event" => "$create_alias",
                                         "properties" => { "distinct_id" => "orig-id", "alias" => "new-id",
                                                           "token" => MP_TOKEN } } }]], sync

    client = Bulkhead::Client.new(token: MP_TOKEN, **client_options)
    @clients << client
    assert_equal true, client.alias("new-id", "orig-id")
    assert client.flush(timeout: 10)
    assert_equal 1, @mock.events.size
    e = @mock.events[0]
    assert_equal "$create_alias", e["event"]
    assert_equal ["orig-id", "new-id", MP_TOKEN], e["properties"].values_at("distinct_id", "alias", "token")
    only_request("/track")
    assert_raises(ArgumentError) { client.alias("", "orig-id") }
  end

  def test_a_consumer_without_a_token_only_forwards
    [-> { @consumer.client.track("u", "e") }, -> { @consumer.client.alias("a", "b") },
     -> { @consumer.client.people_set("u", { "a" => 1 }) }].each do |call|
      error = assert_raises(ArgumentError) { call.call }
      assert_includes error.message, "token"
    end
    assert_raises(ArgumentError) { @consumer.send!(:event, '{"event":"no token","properties":{"distinct_id":"u"}}') }
    @tracker.track("u", "fine")
    assert @consumer.flush(timeout: 10)
    assert_equal [1, 1, 4], @consumer.client.stats.values_at(:enqueued, :sent, :dropped_invalid)
    assert_equal MP_TOKEN, @mock.events[0]["properties"]["token"]
  end

  def test_no_arguments_and_close
    consumer = Bulkhead::MixpanelConsumer.new # api.mixpanel.com; nothing is sent here
    assert_equal true, consumer.close(timeout: 1)
    assert_equal true, consumer.close(timeout: 1) # idempotent
    assert_equal false, consumer.send!(:event, '{"data":{"event":"e","properties":{"token":"t"}}}')
    assert_includes [true, false], consumer.flush(timeout: 0.1) # never raises
  end
end
