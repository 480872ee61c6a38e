# frozen_string_literal: true

require_relative "prefork_app"
run PreforkApp
