# frozen_string_literal: true

require "digest"

module Story
  # The crucial job's CPU work: a fixed number of SHA-256 rounds (a few ms).
  def self.work(seed, rounds)
    rounds.times.reduce(seed.to_s) { |digest, _| Digest::SHA256.digest(digest) }
  end
end
