# frozen_string_literal: true

# What the runs mean: per-phase throughput and latency, the events' accounting, the checks,
# and the report (Markdown table and a hand-written SVG chart).

require "etc"
require "set"
require_relative "work"

module Story
  # Figures of one run (the Hash Run#call returns).
  class Figures
    attr_reader :run

    def initialize(run)
      @run = run
    end

    def mode = run["mode"]
    def phase(name) = run["phases"].find { |p| p["name"] == name }

    # Crucial jobs finished per second inside [from, to).
    def throughput(from, to)
      run["done"].count { |_, _, finished| finished >= from && finished < to } / (to - from)
    end

    # Latencies (s) of the jobs enqueued inside [from, to), and how many of them never finished.
    def latencies(from, to)
      enqueued = run["done"].select { |_, enq, _| enq >= from && enq < to }
      [enqueued.map { |_, enq, finished| finished - enq }.sort, enqueued.size]
    end

    def phase_rows
      run["phases"].map do |p|
        lat, = latencies(p["start"], p["end"])
        depth = run["samples"].select { |t, _, _| t >= p["start"] && t < p["end"] }.map { |_, c, _| c }.max || 0
        { "name" => p["name"], "start" => p["start"], "end" => p["end"], "throughput" => throughput(p["start"], p["end"]),
          "p50" => Story.percentile(lat, 0.50), "p99" => Story.percentile(lat, 0.99), "depth" => depth }
      end
    end

    def healthy_throughput = throughput(phase("healthy")["start"], phase("healthy")["end"])
    def outage_throughput = throughput(phase("refuse")["start"], phase("hang")["end"])

    # Every tracked event is delivered, dropped, failed, rejected or pending; the rest is
    # unaccounted (lost without a count). Delivered: unique $insert_ids the mock stored.
    def accounting
      tracked = run["done"].to_set { |id, _, _| "job-#{id}" }
      delivered = tracked & run["delivered_ids"].to_set
      row = { "tracked" => tracked.size, "delivered" => delivered.size,
              "duplicates" => run["mock_stats"]["duplicates"], "dropped" => {}, "failed" => 0, "rejected" => 0,
              "pending" => 0 }
      case mode
      when "sync"
        row["failed"] = (run["failed_ids"].to_set - delivered).size
      when "seed"
        pending = (run["waiting_ids"].to_set | run["app"].fetch("buffered").to_set) - delivered
        row["dropped"] = { "guard" => (run["dropped_ids"].to_set - delivered).size }
        row["pending"] = pending.size
        row["failed"] = (run["dead_ids"].to_set - delivered - pending).size
      when "bulkhead"
        s = run["app"].fetch("stats")
        row["dropped"] = { "queue_full" => s["dropped_queue_full"], "too_large" => s["dropped_too_large"],
                           "invalid" => s["dropped_invalid"] }
        row.merge!("failed" => s["failed"], "rejected" => s["rejected"], "pending" => s["queue_len"])
      end
      row["unaccounted"] = row["tracked"] - row["delivered"] - row["dropped"].values.sum - row["failed"] -
                           row["rejected"] - row["pending"]
      row["missing_window"] = missing_window(delivered)
      row
    end

    # When the jobs whose events were not delivered finished (their track call): first, last.
    def missing_window(delivered)
      times = run["done"].reject { |id, _, _| delivered.include?("job-#{id}") }.map(&:last)
      times.empty? ? nil : times.minmax
    end

    # Crucial jobs finished in each 1 s bin, from 0.
    def throughput_series
      bins = Hash.new(0)
      run["done"].each { |_, _, finished| bins[finished.floor] += 1 }
      last = run["samples"].map(&:first).max.to_i
      (0..last).map { |s| [s + 0.5, bins[s]] }
    end
  end

  def self.percentile(sorted, q)
    return nil if sorted.empty?

    sorted[((sorted.size - 1) * q).round]
  end

  # The report of all runs: checks, Markdown, SVG.
  class Report
    COLORS = { "sync" => "#d62728", "seed" => "#ff7f0e", "bulkhead" => "#2ca02c" }.freeze
    LABELS = { "sync" => "(a) sync Consumer in the job", "seed" => "(b) seed: guard + BufferedConsumer jobs",
               "bulkhead" => "(c) bulkhead" }.freeze

    def initialize(runs, opts, command)
      @figures = runs.map { |r| Figures.new(r) }
      @opts = opts
      @command = command
    end

    def self.summary_line(run)
      f = Figures.new(run)
      a = f.accounting
      format("story: %-8s healthy %.1f jobs/s, outage %.1f jobs/s; events tracked %d delivered %d dropped %d " \
             "failed %d pending %d unaccounted %d%s", f.mode, f.healthy_throughput, f.outage_throughput, a["tracked"],
             a["delivered"], a["dropped"].values.sum, a["failed"], a["pending"], a["unaccounted"],
             run["drained"] ? "" : " (NOT drained)")
    end

    # [description, passed] for bulkhead's run. The timing check is the only one that depends
    # on the machine's speed: within 10 % for make story, at least half for make test-story.
    def checks
      f = @figures.find { |x| x.mode == "bulkhead" }
      a = f.accounting
      s = f.run["app"]["stats"]
      healthy = f.healthy_throughput
      outage = f.outage_throughput
      ratio = outage / healthy
      timing = if @opts.test
                 ["crucial throughput during the outage >= 50 % of healthy (#{pct(ratio)})", ratio >= 0.5]
               else
                 ["crucial throughput during the outage within 10 % of healthy (#{pct(ratio)})", (ratio - 1).abs <= 0.10]
               end
      phases_ran = Story::PHASES.all? { |name| (p = f.phase(name)) && f.throughput(p["start"], p["end"]).positive? }
      [
        timing,
        ["every event accounted for (unaccounted #{a["unaccounted"]})", a["unaccounted"].zero?],
        ["mock's unique insert_ids == bulkhead's sent (#{a["delivered"]} == #{s["sent"]}), no duplicates " \
         "(#{a["duplicates"]})", a["delivered"] == s["sent"] && a["duplicates"].zero? &&
           f.run["mock_stats"]["events"] == s["sent"]],
        ["tracked == enqueued + dropped (#{a["tracked"]} == #{s["enqueued"]} + #{a["dropped"].values.sum})",
         a["tracked"] == s["enqueued"] + a["dropped"].values.sum],
        ["all phases ran, crucial jobs finished in each, all crucial jobs finished", phases_ran && f.run["drained"]],
        ["the outage reached bulkhead (retries #{s["retries"]})", s["retries"].positive?]
      ]
    end

    def pass? = checks.all? { |_, ok| ok }

    # The README's Reliability row (scripts/reliability.py): one line per run of the story.
    def reliability_row
      d = @opts.durations
      runs = @figures.map do |f|
        a = f.accounting
        format("%s: outage %s of healthy, %d tracked, %d delivered, %d duplicates, %d dropped, %d failed, " \
               "%d pending, %d unaccounted", LABELS[f.mode], pct(f.outage_throughput / f.healthy_throughput),
               a["tracked"], a["delivered"], a["duplicates"], a["dropped"].values.sum, a["failed"], a["pending"],
               a["unaccounted"])
      end
      "| the story: a Sidekiq app (real Redis and Sidekiq) tracking from its crucial jobs while the service " \
        "refuses, then hangs | #{d.values.map { |v| v.to_s.delete_suffix(".0") }.join(" / ")} s healthy / refusing / hanging / back, " \
        "#{@opts.rate} crucial jobs/s | `make story` | #{pass? ? "PASS" : "FAIL"}: #{runs.join("; ")} |\n"
    end

    def checks_text
      checks.map { |text, ok| "#{ok ? "PASS" : "FAIL"}: bulkhead: #{text}" }.join("\n")
    end

    def markdown
      d = @opts.durations
      lines = []
      lines << "# The story, with real parts: an analytics outage under a Sidekiq app"
      lines << ""
      lines << "Generated by `make story` (`scripts/story/run.rb`); do not edit by hand."
      lines << ""
      lines << "- Date: #{Time.now.utc.strftime("%Y-%m-%d %H:%M UTC")}"
      lines << "- Machine: #{machine}"
      lines << "- Command: `#{@command}`"
      lines << "- Phases (s): healthy #{d["healthy"]}, refuse #{d["refuse"]} (mock `down?mode=refuse`), hang " \
               "#{d["hang"]} (`down?mode=hang`), back #{d["back"]} (`up`); then the queues drain (at most " \
               "#{@opts.drain_seconds} s)"
      lines << "- Load: #{@opts.rate} crucial jobs/s enqueued for the whole run, each #{@opts.hash_rounds} SHA-256 " \
               "rounds (#{format("%.1f", work_ms)} ms here) and one tracked event; Sidekiq #{Sidekiq::VERSION}, " \
               "#{@opts.concurrency} threads, queues `crucial` then `mixpanel` (strict order, crucial first)"
      lines << "- Runs: (a) `Mixpanel::Consumer#send!` inside the job (a POST per event, 10 s timeouts); (b) the " \
               "seed: a `MixpanelJob` on the `mixpanel` queue unless it holds #{@opts.guard} jobs, sent through a " \
               "`ConnectionPool` of five 50-event `BufferedConsumer`s (a failed send raises: Sidekiq retries the " \
               "job); (c) `Bulkhead::MixpanelConsumer`, one client per process, `queue_capacity: #{@opts.guard}`"
      lines << ""
      lines << "## Summary"
      lines << ""
      @figures.each { |f| lines << "- #{summary(f)}" }
      lines << ""
      lines << "## Crucial jobs"
      lines << ""
      lines << "Throughput: jobs finished per second inside the phase. Latency: finish − enqueue of the jobs " \
               "enqueued in the phase. Depth: the most jobs waiting in `queue:crucial` (LLEN every 250 ms)."
      lines << ""
      lines << "| run | phase | window (s) | finished/s | p50 latency (ms) | p99 latency (ms) | max depth |"
      lines << "|---|---|---|---:|---:|---:|---:|"
      @figures.each do |f|
        f.phase_rows.each do |r|
          lines << "| #{f.mode} | #{r["name"]} | #{format("%.1f–%.1f", r["start"], r["end"])} | " \
                   "#{format("%.1f", r["throughput"])} | #{ms(r["p50"])} | #{ms(r["p99"])} | #{r["depth"]} |"
        end
        lines << "| #{f.mode} | **outage** (refuse+hang) | | **#{format("%.1f", f.outage_throughput)}** " \
                 "(#{pct(f.outage_throughput / f.healthy_throughput)} of healthy) | | | |"
      end
      lines << ""
      lines << "## Analytics events"
      lines << ""
      lines << "Delivered: unique `$insert_id`s the mock stored; duplicates: copies it received again. " \
               "Unaccounted = tracked − delivered − dropped − failed − rejected − pending. The last column: " \
               "when the first and the last event that was not delivered were tracked (outage: " \
               "#{format("%.1f–%.1f", @figures.first.phase("refuse")["start"], @figures.first.phase("hang")["end"])} s)."
      lines << ""
      lines << "| run | tracked | delivered | duplicates | dropped | failed | rejected | pending | unaccounted | " \
               "not delivered, tracked at (s) |"
      lines << "|---|---:|---:|---:|---|---:|---:|---:|---:|---|"
      @figures.each do |f|
        a = f.accounting
        dropped = a["dropped"].empty? ? "0" : a["dropped"].map { |k, v| "#{v} (#{k})" }.join(", ")
        lines << "| #{f.mode} | #{a["tracked"]} | #{a["delivered"]} | #{a["duplicates"]} | #{dropped} | " \
                 "#{a["failed"]} | #{a["rejected"]} | #{a["pending"]} | #{a["unaccounted"]} | " \
                 "#{a["missing_window"] ? format("%.1f–%.1f", *a["missing_window"]) : "–"} |"
      end
      lines << ""
      lines << "## Checks (bulkhead)"
      lines << ""
      checks.each { |text, ok| lines << "- #{ok ? "PASS" : "FAIL"}: #{text}" }
      lines << ""
      lines << "![queue depth and throughput over time](story.svg)"
      lines << ""
      lines.join("\n")
    end

    # Two panels over time: crucial queue depth (the seed's mixpanel queue dashed) and crucial
    # jobs finished per second; one line per run; refuse and hang shaded.
    def svg
      width = 960
      panel_h = 260
      left = 70
      right = 20
      top = 50
      gap = 70
      plot_w = width - left - right
      height = top + (2 * panel_h) + gap + 60
      t_max = @figures.flat_map { |f| f.run["samples"].map(&:first) }.max.ceil
      x = ->(t) { left + (t / t_max.to_f * plot_w) }
      out = []
      out << %(<svg xmlns="http://www.w3.org/2000/svg" width="#{width}" height="#{height}" ) +
             %(font-family="sans-serif" font-size="12">)
      out << %(<rect width="#{width}" height="#{height}" fill="white"/>)
      out << %(<text x="#{left}" y="20" font-size="15" font-weight="bold">Crucial Sidekiq jobs while the ) +
             %(analytics service is down (#{@opts.rate} jobs/s enqueued)</text>)
      legend_x = left
      @figures.each do |f|
        out << %(<line x1="#{legend_x}" y1="36" x2="#{legend_x + 20}" y2="36" stroke="#{COLORS[f.mode]}" ) +
               %(stroke-width="2.5"/>)
        out << %(<text x="#{legend_x + 25}" y="40">#{LABELS[f.mode]}</text>)
        legend_x += 300
      end
      depth_series = @figures.map { |f| [f, f.run["samples"].map { |t, c, _| [t, c] }] }
      mixpanel_series = @figures.select { |f| f.mode == "seed" }.map { |f| [f, f.run["samples"].map { |t, _, m| [t, m] }] }
      throughput_series = @figures.map { |f| [f, f.throughput_series] }
      panels = [
        ["Jobs waiting in queue:crucial (seed's queue:mixpanel dashed)", depth_series + mixpanel_series,
         mixpanel_series.map(&:last)],
        ["Crucial jobs finished per second (1 s bins)", throughput_series, []]
      ]
      panels.each_with_index do |(title, series, dashed), i|
        y0 = top + (i * (panel_h + gap)) + 20
        y_max = nice_max(series.flat_map { |_, pts| pts.map(&:last) }.max || 1)
        y = ->(v) { y0 + panel_h - (v / y_max.to_f * panel_h) }
        out << %(<text x="#{left}" y="#{y0 - 8}" font-weight="bold">#{title}</text>)
        shade(out, x, y0, panel_h)
        axes(out, x, y, t_max, y_max, y0, panel_h, plot_w, left)
        series.each do |f, pts|
          path = pts.map { |t, v| format("%.1f,%.1f", x.call(t), y.call(v)) }.join(" ")
          dash = dashed.any? { |d| d.equal?(pts) } ? %( stroke-dasharray="6,4") : ""
          out << %(<polyline fill="none" stroke="#{COLORS[f.mode]}" stroke-width="1.8"#{dash} points="#{path}"/>)
        end
      end
      out << %(<text x="#{left + (plot_w / 2)}" y="#{height - 15}" text-anchor="middle">seconds since the start ) +
             %(of the run (shaded: refusing, then hanging)</text>)
      out << "</svg>"
      out.join("\n") << "\n"
    end

    private

    # One sentence per run, from its figures.
    def summary(f)
      rows = f.phase_rows.to_h { |r| [r["name"], r] }
      outage_p99 = [rows["refuse"]["p99"], rows["hang"]["p99"]].compact.max
      a = f.accounting
      "#{LABELS[f.mode]}: during the outage crucial jobs finished at #{pct(f.outage_throughput / f.healthy_throughput)} " \
        "of the healthy rate, the jobs enqueued then waited up to #{ms(outage_p99)} ms (p99; healthy " \
        "#{ms(rows["healthy"]["p99"])} ms), queue:crucial peaked at #{f.phase_rows.map { |r| r["depth"] }.max} jobs; " \
        "#{a["delivered"]} of #{a["tracked"]} events delivered, #{a["dropped"].values.sum} dropped, #{a["failed"]} " \
        "failed, #{a["pending"]} pending, #{a["unaccounted"]} unaccounted."
    end

    def shade(out, x, y0, panel_h)
      phases = @figures.first.run["phases"]
      { "refuse" => "#fde0dd", "hang" => "#fa9fb5" }.each do |name, fill|
        p = phases.find { |ph| ph["name"] == name }
        out << %(<rect x="#{format("%.1f", x.call(p["start"]))}" y="#{y0}" ) +
               %(width="#{format("%.1f", x.call(p["end"]) - x.call(p["start"]))}" height="#{panel_h}" ) +
               %(fill="#{fill}" fill-opacity="0.6"/>)
        out << %(<text x="#{format("%.1f", x.call(p["start"]) + 3)}" y="#{y0 + 14}" fill="#7a0177">#{name}</text>)
      end
    end

    def axes(out, x, y, t_max, y_max, y0, panel_h, plot_w, left)
      step = tick_step(y_max)
      0.step(y_max, step) do |v|
        out << %(<line x1="#{left}" y1="#{format("%.1f", y.call(v))}" x2="#{left + plot_w}" ) +
               %(y2="#{format("%.1f", y.call(v))}" stroke="#ddd"/>)
        out << %(<text x="#{left - 6}" y="#{format("%.1f", y.call(v) + 4)}" text-anchor="end">#{v}</text>)
      end
      out << %(<line x1="#{left}" y1="#{y0 + panel_h}" x2="#{left + plot_w}" y2="#{y0 + panel_h}" stroke="black"/>)
      out << %(<line x1="#{left}" y1="#{y0}" x2="#{left}" y2="#{y0 + panel_h}" stroke="black"/>)
      t_step = t_max > 60 ? 10 : 5
      0.step(t_max, t_step) do |t|
        out << %(<text x="#{format("%.1f", x.call(t))}" y="#{y0 + panel_h + 16}" text-anchor="middle">#{t}</text>)
      end
    end

    # 1, 2 or 5 times a power of ten, about a fifth of v.
    def tick_step(v)
      raw = v / 5.0
      mag = 10**Math.log10(raw).floor
      [1, 2, 5, 10].map { |m| m * mag }.find { |s| s >= raw }.then { |s| s >= 1 ? s.to_i : s }
    end

    def nice_max(v)
      v = 1 if v <= 0
      step = tick_step(v)
      (v / step.to_f).ceil * step
    end

    def ms(seconds) = seconds.nil? ? "–" : (seconds * 1000).round.to_s
    def pct(ratio) = "#{(ratio * 100).round} %"

    def machine
      cpu = File.read("/proc/cpuinfo")[/^model name\s*:\s*(.+)$/, 1] rescue "unknown CPU" # rubocop:disable Style/RescueModifier
      redis = `redis-server --version`[/v=(\S+)/, 1]
      "#{cpu}, #{Etc.nprocessors} cores (shared), #{RUBY_DESCRIPTION.split(" [").first}, Redis #{redis}, " \
        "#{`uname -sr`.strip}"
    end

    # The crucial job's CPU work, timed here (median of 20).
    def work_ms
      times = Array.new(20) do
        t = Story.monotonic
        Story.work(0, @opts.hash_rounds)
        Story.monotonic - t
      end
      times.sort[10] * 1000
    end
  end
end
