# frozen_string_literal: true

# puma cluster settings and hooks for test/prefork_test.rb.
workers Integer(ENV.fetch("PREFORK_WORKERS"))
threads 2, 2
preload_app!
bind "tcp://127.0.0.1:#{ENV.fetch("PREFORK_PORT")}"
quiet
# Longer than anything the test does: a worker killed by puma would lose its counters.
worker_timeout 120
worker_shutdown_timeout 60

# After the worker stopped serving: close the client and write this worker's counters.
on_worker_shutdown { PreforkApp.dump_stats("worker") }
