# frozen_string_literal: true

module Bulkhead
  VERSION = "0.1.0"
end
