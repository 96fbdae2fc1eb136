# The Ruby twin of the benchmarks' Rust NoopHandler: returns a constant, so what is left of
# a call is the way to Ruby and back.
class Noop < Tasker::StepHandler
  def call(_step)
    { "ok" => true }
  end
end

Tasker.register_handler("noop", Noop)
