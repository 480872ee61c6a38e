# frozen_string_literal: true

require "test_helper"

class ClientTest < BulkheadTest::Test
  def test_track_wire_shape
    c = client
    assert_equal true, c.track("u1", "Signed up", { plan: "pro", "n" => 3 })
    assert c.flush(timeout: 10)
    events = @mock.events
    assert_equal 1, events.size
    ev = events.first
    assert_equal "Signed up", ev["event"]
    props = ev["properties"]
    assert_equal "tok", props["token"]
    assert_equal "u1", props["distinct_id"]
    assert_equal "pro", props["plan"]
    assert_equal 3, props["n"]
    assert_kind_of Integer, props["time"]
    assert_match(/\A[0-9A-Za-z-]{1,36}\z/, props["$insert_id"])
    req = @mock.requests.find { |r| r["path"] == "/track" }
    assert_equal "application/x-www-form-urlencoded", req["content_type"]
  end

  def test_track_without_properties_and_caller_wins
    c = client
    assert c.track("u2", "Plain")
    recent = (Time.now.to_f * 1000).to_i - 60_000 # /track takes only the last 5 days
    assert c.track("u3", "Custom", { "time" => recent, "$insert_id" => "my-id-1" })
    assert c.flush(timeout: 10)
    by_name = @mock.events.to_h { |e| [e["event"], e["properties"]] }
    assert_equal "u2", by_name["Plain"]["distinct_id"]
    assert_equal recent, by_name["Custom"]["time"]
    assert_equal "my-id-1", by_name["Custom"]["$insert_id"]
  end

  def test_import_wire_shape_with_time_conversion
    c = client
    assert c.import("u1", "Old", Time.at(1_500_000_000, 123, :millisecond), { x: 1 })
    assert c.import("u1", "Older", 1_400_000_000.5)
    assert c.flush(timeout: 10)
    by_name = @mock.events.to_h { |e| [e["event"], e["properties"]] }
    assert_equal 1_500_000_000_123, by_name["Old"]["time"]
    assert_equal 1, by_name["Old"]["x"]
    assert_equal 1_400_000_000_500, by_name["Older"]["time"]
    imports = @mock.requests.select { |r| r["path"] == "/import" }
    refute_empty imports
    assert_includes imports.first["query"], "strict=1"
    assert_equal "tok", imports.first["auth_username"] # the token when no other credentials
  end

  def test_people_wire_shapes
    c = client
    assert c.people_set("u1", { "$name" => "x" })
    assert c.people_set_once("u1", { first: 1 })
    assert c.people_increment("u1", { logins: 2 })
    assert c.people_append("u1", { list: "a" })
    assert c.people_union("u1", { tags: %w[a b] })
    assert c.people_remove("u1", { tags: "a" })
    assert c.people_unset("u1", %w[old other])
    assert c.people_delete("u1")
    assert c.flush(timeout: 10)
    updates = @mock.updates
    assert_equal 8, updates.size
    updates.each do |u|
      assert_equal "tok", u["$token"]
      assert_equal "u1", u["$distinct_id"]
    end
    ops = updates.to_h { |u| [(u.keys & %w[$set $set_once $add $append $union $remove $unset $delete]).first, u] }
    assert_equal({ "$name" => "x" }, ops["$set"]["$set"])
    assert_equal({ "first" => 1 }, ops["$set_once"]["$set_once"])
    assert_equal({ "logins" => 2 }, ops["$add"]["$add"])
    assert_equal({ "list" => "a" }, ops["$append"]["$append"])
    assert_equal({ "tags" => %w[a b] }, ops["$union"]["$union"])
    assert_equal({ "tags" => "a" }, ops["$remove"]["$remove"])
    assert_equal %w[old other], ops["$unset"]["$unset"]
    assert ops.key?("$delete")
    assert(@mock.requests.all? { |r| r["path"] == "/engage" })
  end

  def test_group_wire_shapes
    c = client
    assert c.group_set("company", "acme", { size: 5 })
    assert c.group_set_once("company", "acme", { founded: 1999 })
    assert c.group_union("company", "acme", { tags: ["x"] })
    assert c.group_remove("company", "acme", { tags: "x" })
    assert c.group_unset("company", "acme", ["size"])
    assert c.group_delete("company", "acme")
    assert c.flush(timeout: 10)
    updates = @mock.updates
    assert_equal 6, updates.size
    updates.each do |u|
      assert_equal "tok", u["$token"]
      assert_equal "company", u["$group_key"]
      assert_equal "acme", u["$group_id"]
    end
    set = updates.find { |u| u.key?("$set") }
    assert_equal({ "size" => 5 }, set["$set"])
    assert(@mock.requests.all? { |r| r["path"] == "/groups" })
  end

  def test_stats_and_queue_size
    c = client
    3.times { |i| c.track("u", "e#{i}") }
    assert c.flush(timeout: 10)
    s = c.stats
    expected = %i[enqueued dropped_queue_full dropped_too_large dropped_invalid dropped_shutdown sent
                  rejected failed retries requests bytes_sent queue_len queue_bytes in_flight circuit_state
                  errors_overwritten spooled replayed spool_expired spool_corrupt dropped_spool_full
                  dropped_spool_error spool_pending spool_bytes spool_records]
    assert_equal expected.sort, s.keys.sort
    assert_equal 3, s[:enqueued]
    assert_equal 3, s[:sent]
    assert_equal :closed, s[:circuit_state]
    assert_equal 0, c.queue_size
  end

  def test_invalid_input_raises_argument_error_with_library_message
    c = client
    e = assert_raises(ArgumentError) { c.people("u1", "$bogus", { a: 1 }) }
    assert_kind_of Bulkhead::Error, e
    refute_empty e.message.sub("bulkhead:", "").strip
    assert_raises(ArgumentError) { c.track("u1", "e", "not a hash") }
    assert_raises(ArgumentError) { c.send_message("events", "{not json") }
    assert_raises(ArgumentError) { c.track("u", "e", { "x" => "\xff".b }) }
    e = assert_raises(ArgumentError) { Bulkhead::Client.new(token: "t", api_host: @mock.url, no_such_key: 1, logger: nil) }
    assert_includes e.message, "no_such_key"
    big = client(max_event_bytes: 100)
    assert_raises(Bulkhead::TooLargeError) { big.track("u", "e", { blob: "x" * 500 }) }
    assert_equal 1, big.stats[:dropped_too_large]
  end

  def test_close_is_idempotent_and_then_raises_closed
    c = client
    c.track("u", "e")
    assert_equal true, c.close(timeout: 10)
    assert_equal true, c.close(timeout: 1)
    assert_raises(Bulkhead::ClosedError) { c.track("u", "e") }
    assert_kind_of Bulkhead::Error, (begin
      c.track("u", "e")
    rescue Bulkhead::Error => e
      e
    end)
    assert_equal 1, @mock.stats["events"]
  end

  def test_delivery_errors_reach_on_error_and_logger_from_the_calling_thread
    seen = []
    threads = []
    log = StringIO.new
    c = client(max_retries: 0, on_error: ->(err) { seen << err; threads << Thread.current },
               logger: Logger.new(log))
    @mock.post("fault", "status=400&count=1")
    c.track("u", "rejected one")
    c.flush(timeout: 10)
    assert eventually { c.stats[:rejected] == 1 }
    refute_empty seen
    assert(threads.all? { |t| t == Thread.current })
    err = seen.first
    assert_equal "/track", err[:endpoint]
    assert_equal 400, err[:http_status]
    assert_kind_of Integer, err[:seq]
    assert_includes log.string, "delivery error"
    count = seen.size
    c.stats
    c.flush(timeout: 1)
    assert_equal count, seen.size, "errors already reported are not passed again"
    assert_equal seen.map { |e| e[:seq] }, c.errors.map { |e| e[:seq] }
  end
end
