# frozen_string_literal: true

require "test_helper"

# The mixpanel-ruby consumer protocol: the exact type/message pairs of MIXPANEL.md.
class MixpanelConsumerTest < BulkheadTest::Test
  # /track takes only the last 5 days: a recent time, not a fixed date.
  NOW_MS = (Time.now.to_f * 1000).to_i
  EVENT = "{\"data\":{\"event\":\"Signed up\",\"properties\":{\"distinct_id\":\"u1\",\"token\":\"tok\",\"time\":#{NOW_MS}," \
          '"mp_lib":"ruby","$lib_version":"2.3.1","plan":"pro"}}}'
  PROFILE = '{"data":{"$token":"tok","$time":1795739207818,"$distinct_id":"u1","$set":{"$name":"x"}}}'
  GROUP = '{"data":{"$token":"tok","$time":1795739207818,"$group_key":"company","$group_id":"acme",' \
          '"$set":{"size":5}}}'
  IMPORT = '{"data":{"event":"Old","properties":{"distinct_id":"u1","token":"tok","time":1500000000,' \
           '"mp_lib":"ruby","$lib_version":"2.3.1"}},"api_key":"apikey"}'

  def consumer
    Bulkhead::MixpanelConsumer.new(client)
  end

  def test_single_messages_arrive_intact
    c = consumer
    assert_equal true, c.send!(:event, EVENT)
    assert_equal true, c.send!(:profile_update, PROFILE)
    assert_equal true, c.send!(:group_update, GROUP)
    assert c.flush
    ev = @mock.events.find { |e| e["event"] == "Signed up" }
    props = ev["properties"]
    JSON.parse(EVENT)["data"]["properties"].each { |k, v| assert_equal v, props[k], k }
    refute_nil props["$insert_id"] # added when missing
    updates = @mock.updates
    assert_includes updates, JSON.parse(PROFILE)["data"]
    assert_includes updates, JSON.parse(GROUP)["data"]
    paths = @mock.requests.map { |r| r["path"] }.sort
    assert_equal %w[/engage /groups /track], paths
  end

  def test_tracker_block_form
    c = consumer
    block = proc { |type, message| c.send!(type, message) } # as Mixpanel::Tracker.new(TOKEN) { ... }
    assert block.call(:event, EVENT)
    assert c.to_proc.call(:profile_update, PROFILE)
    assert c.flush
    assert_equal 1, @mock.stats["events"]
    assert_equal 1, @mock.stats["updates"]
  end

  def test_arrays_from_a_buffered_consumer
    c = consumer
    events = Array.new(3) do |i|
      { "event" => "E#{i}", "properties" => { "distinct_id" => "u#{i}", "token" => "tok", "time" => NOW_MS,
                                               "$insert_id" => "id-#{i}" } }
    end
    assert c.send!(:event, JSON.generate({ "data" => events }))
    profiles = Array.new(2) { |i| { "$token" => "tok", "$distinct_id" => "p#{i}", "$set" => { "n" => i } } }
    assert c.send!(:profile_update, JSON.generate({ "data" => profiles }))
    assert c.flush
    got = @mock.events.sort_by { |e| e["event"] }
    assert_equal events, got
    assert_equal 2, @mock.updates.size
  end

  def test_import_with_api_key_goes_to_import_with_basic_auth
    c = consumer
    assert c.send!(:import, IMPORT)
    assert c.flush(timeout: 10)
    req = @mock.requests.find { |r| r["path"] == "/import" }
    refute_nil req, "no /import request: #{@mock.requests.inspect}"
    assert_equal "apikey", req["auth_username"]
    ev = @mock.events.first
    assert_equal "Old", ev["event"]
    assert_equal 1_500_000_000, ev["properties"]["time"]
  end

  def test_never_raises_on_full_queue_or_closed_client_only_on_malformed_input
    @mock.down("hang")
    c = Bulkhead::MixpanelConsumer.new(client(queue_capacity: 1, max_retries: 0))
    assert_raises(ArgumentError) { c.send!(:event, "{not json") }
    assert_raises(ArgumentError) { c.send!(:no_such_type, EVENT) }
    results = Array.new(5) { c.send!(:event, EVENT) }
    assert_includes results, false
    # A full guard refuses before it reads the input: the cheap path, never an exception.
    assert_equal false, c.send!(:event, "{not json")
    c.client.close(timeout: 0.1)
    assert_equal false, c.send!(:event, EVENT)
    c.flush(timeout: 0.1) # does not raise on a closed client
  end

  def test_builds_its_own_client_from_keywords
    c = Bulkhead::MixpanelConsumer.new(token: "tok", **client_options)
    @clients << c.client
    assert c.send!(:event, EVENT)
    assert c.flush
    assert_equal 1, @mock.stats["events"]
  end
end
