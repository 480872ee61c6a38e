# frozen_string_literal: true

# Source gem install: builds libbulkhead with cargo from the crate packaged beside this file
# (ext/bulkhead/crate) and puts it in lib/bulkhead/native/, where lib/bulkhead/native.rb
# looks for it. Then writes a Makefile with nothing left to do, as rubygems expects.
#
#   gem install bulkhead-X.gem -- --use-system-library   skip the build; load the libbulkhead
#                                                         installed by `make install` instead
#   CARGO=/path/to/cargo, CARGO_TARGET_DIR=...            as for cargo (a build cache to reuse)

require "fileutils"
require "rbconfig"
require "tmpdir"
require_relative "../../lib/bulkhead/version"

def write_noop_makefile
  File.write("Makefile", "all:\n\t@:\ninstall:\n\t@:\nclean:\n\t@:\n")
end

def find_executable_on_path(name)
  return name if name.include?(File::SEPARATOR) && File.executable?(name)

  ENV.fetch("PATH", "").split(File::PATH_SEPARATOR).each do |dir|
    path = File.join(dir, name)
    return path if File.file?(path) && File.executable?(path)
  end
  nil
end

if ARGV.include?("--use-system-library")
  puts "bulkhead: --use-system-library: not building; libbulkhead must be on the system library path"
  write_noop_makefile
  exit 0
end

crate = File.join(__dir__, "crate")
dest = File.expand_path("../../lib/bulkhead/native", __dir__)
lib_file = RbConfig::CONFIG["host_os"].match?(/darwin/) ? "libbulkhead.dylib" : "libbulkhead.so"
cargo = find_executable_on_path(ENV.fetch("CARGO", "cargo"))

unless cargo
  abort <<~MSG

    bulkhead: cannot build the native library: Rust's `cargo` was not found on PATH.
    Either
      - install Rust (https://rustup.rs, or your distribution's `cargo` package, 1.80 or newer)
        and install this gem again;
      - install the prebuilt platform gem (bulkhead-#{Bulkhead::VERSION}-<platform>.gem);
      - or install libbulkhead with `make install` from the repository and install this gem
        with: gem install bulkhead -- --use-system-library
  MSG
end

target_dir = ENV["CARGO_TARGET_DIR"]
own_target = target_dir.nil? || target_dir.empty?
target_dir = Dir.mktmpdir("bulkhead-cargo") if own_target
begin
  cmd = [cargo, "build", "--release", "--locked", "--lib",
         "--manifest-path", File.join(crate, "Cargo.toml"), "--target-dir", target_dir]
  puts "bulkhead: building the native library: #{cmd.join(' ')}"
  system(*cmd) or abort "bulkhead: `cargo build` failed (see its output above)"
  built = File.join(target_dir, "release", lib_file)
  abort "bulkhead: cargo built no #{built}" unless File.file?(built)
  FileUtils.mkdir_p(dest)
  FileUtils.cp(built, File.join(dest, lib_file))
  puts "bulkhead: installed #{File.join(dest, lib_file)}"
ensure
  FileUtils.rm_rf(target_dir) if own_target
end
write_noop_makefile
