# frozen_string_literal: true

require "ffi"

module Bulkhead
  # The raw C ABI of libbulkhead (include/bulkhead.h), attached with the ffi gem.
  # Functions that may wait are attached with `blocking: true` so the GVL is released.
  module Native
    extend FFI::Library

    GEM_ROOT = File.expand_path("../..", __dir__)
    LIB_FILE = "libbulkhead.#{FFI::Platform::LIBSUFFIX}"
    # `make install` installs libbulkhead.so.<major> (the SONAME) and the libbulkhead.so link.
    SONAME_MAJOR = 0

    # Where the library is looked for, in order: [description, name-or-path].
    def self.candidates
      list = []
      list << ["packaged copy", File.join(__dir__, "native", LIB_FILE)]
      %w[release debug].each do |profile|
        list << ["repository build (#{profile})", File.expand_path("../../target/#{profile}/#{LIB_FILE}", GEM_ROOT)]
      end
      # The runtime name (SONAME) first: a system without the -dev link still has it.
      list << ["system library path", "libbulkhead.so.#{SONAME_MAJOR}"] if FFI::Platform::LIBSUFFIX == "so"
      list << ["system library path", "bulkhead"]
      list
    end

    def self.load_library
      override = ENV["BULKHEAD_LIB"]
      if override && !override.empty?
        begin
          ffi_lib override
          return override
        rescue LoadError => e
          raise LoadError, "bulkhead: cannot load BULKHEAD_LIB=#{override.inspect}: #{e.message}"
        end
      end
      tried = []
      candidates.each do |what, lib|
        if lib.include?(File::SEPARATOR) && !File.exist?(lib)
          tried << "#{what} #{lib} (not found)"
          next
        end
        begin
          ffi_lib lib
          return lib
        rescue LoadError => e
          tried << "#{what} #{lib} (#{e.message.lines.first&.strip})"
        end
      end
      raise LoadError, "bulkhead: cannot find the native library #{LIB_FILE}; set BULKHEAD_LIB " \
                       "to its path. Tried: BULKHEAD_LIB (unset); #{tried.join('; ')}"
    end

    LIBRARY_PATH = load_library

    STATUS = %i[ok queue_full invalid_argument invalid_utf8 invalid_json too_large closed
                timeout buffer_too_small panic internal incomplete].freeze
    STATUS.each_with_index { |name, i| const_set(name.upcase, i) }

    # bulkhead_stats
    class Stats < FFI::Struct
      layout :enqueued, :uint64,
             :dropped_queue_full, :uint64,
             :dropped_too_large, :uint64,
             :dropped_invalid, :uint64,
             :dropped_shutdown, :uint64,
             :sent, :uint64,
             :rejected, :uint64,
             :failed, :uint64,
             :retries, :uint64,
             :requests, :uint64,
             :bytes_sent, :uint64,
             :queue_len, :uint64,
             :queue_bytes, :uint64,
             :in_flight, :uint64,
             :circuit_state, :uint32,
             :errors_overwritten, :uint64,
             # The disk spool (spool_dir), appended in this order.
             :spooled, :uint64,
             :replayed, :uint64,
             :spool_expired, :uint64,
             :spool_corrupt, :uint64,
             :dropped_spool_full, :uint64,
             :dropped_spool_error, :uint64,
             :spool_pending, :uint64,
             :spool_bytes, :uint64,
             :spool_records, :uint64
    end

    # bulkhead_flush_result
    class FlushResultStruct < FFI::Struct
      layout :failed, :uint64, :rejected, :uint64
    end

    # Strings are passed as :pointer (a Ruby String or nil) with an explicit length.
    attach_function :bulkhead_client_new, %i[pointer size_t pointer], :int
    attach_function :bulkhead_client_free, [:pointer], :void, blocking: true
    attach_function :bulkhead_track, %i[pointer pointer size_t pointer size_t pointer size_t], :int
    attach_function :bulkhead_import,
                    %i[pointer pointer size_t pointer size_t int64 pointer size_t], :int
    attach_function :bulkhead_people, %i[pointer pointer size_t pointer size_t pointer size_t], :int
    attach_function :bulkhead_group,
                    %i[pointer pointer size_t pointer size_t pointer size_t pointer size_t], :int
    attach_function :bulkhead_send, %i[pointer pointer size_t pointer size_t], :int
    attach_function :bulkhead_send_with_credentials,
                    %i[pointer pointer size_t pointer size_t pointer size_t pointer size_t], :int
    attach_function :bulkhead_client_flush, %i[pointer uint32], :int, blocking: true
    attach_function :bulkhead_client_close, %i[pointer uint32], :int, blocking: true
    attach_function :bulkhead_shutdown, [:uint32], :int, blocking: true
    attach_function :bulkhead_client_stats, %i[pointer pointer], :int
    attach_function :bulkhead_client_queue_len, [:pointer], :uint64
    attach_function :bulkhead_client_errors, %i[pointer uint64 pointer size_t pointer], :int
    attach_function :bulkhead_client_take_errors, %i[pointer pointer size_t pointer], :int
    attach_function :bulkhead_client_flush_ex, %i[pointer uint32 pointer], :int, blocking: true
    attach_function :bulkhead_client_log_hint, [:pointer], :pointer
    attach_function :bulkhead_client_take_log, %i[pointer pointer size_t pointer], :int
    attach_function :bulkhead_client_test_events, %i[pointer pointer size_t pointer], :int
    attach_function :bulkhead_client_test_clear, [:pointer], :int
    attach_function :bulkhead_client_metrics, %i[pointer pointer size_t pointer], :int
    attach_function :bulkhead_last_error, %i[pointer size_t pointer], :int
    attach_function :bulkhead_status_str, [:uint32], :string
    attach_function :bulkhead_version, [], :string

    # The text of the last failing call on this thread.
    def self.last_error
      buf = FFI::MemoryPointer.new(:char, 1024)
      written = FFI::MemoryPointer.new(:size_t)
      bulkhead_last_error(buf, buf.size, written)
      buf.read_string(written.read(:size_t).clamp(0, buf.size - 1)).force_encoding(Encoding::UTF_8)
    end

    ERROR_CLASSES = {
      INVALID_ARGUMENT => InvalidArgumentError,
      INVALID_UTF8 => InvalidUTF8Error,
      INVALID_JSON => InvalidJSONError,
      TOO_LARGE => TooLargeError,
      CLOSED => ClosedError,
    }.freeze

    # The exception for a failing status, carrying the library's message.
    # bulkhead_client_close/bulkhead_shutdown: "use the configured shutdown_timeout_ms".
    TIMEOUT_CONFIGURED = 0xFFFF_FFFF

    # Seconds to the library's milliseconds, below TIMEOUT_CONFIGURED.
    def self.millis(seconds)
      (seconds * 1000).round.clamp(0, TIMEOUT_CONFIGURED - 1)
    end

    def self.error_for(status)
      message = last_error
      message = bulkhead_status_str(status) if message.empty?
      error = ERROR_CLASSES.fetch(status, InternalError).new("bulkhead: #{message}")
      error.status = status
      error
    end
  end
end
