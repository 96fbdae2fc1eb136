# The linear fixture workflow (mathematical_sequence, namespace linear_workflow) in Ruby:
# step 1 squares the task's even_number, each later step squares its parent's value.
# Results are identical to the Rust example handlers: {"value" => n**16} after step 4.

class LinearStart < Tasker::StepHandler
  def call(step)
    n = step.task_context["even_number"]
    raise Tasker::PermanentError, "even_number must be an even integer, got #{n.inspect}" unless n.is_a?(Integer) && n.even?

    { "value" => n**2 }
  end
end

# Squares the value of the parent named in the subclass.
class SquareParent < Tasker::StepHandler
  def self.parent(name = nil)
    name ? @parent = name : @parent
  end

  def call(step)
    { "value" => step.dependency_results.fetch(self.class.parent).fetch("value")**2 }
  end
end

class LinearStep2 < SquareParent
  parent "linear_step_1"
end

class LinearStep3 < SquareParent
  parent "linear_step_2"
end

class LinearStep4 < SquareParent
  parent "linear_step_3"
end

Tasker.register_handler("linear_step_1", LinearStart)
Tasker.register_handler("linear_step_2", LinearStep2)
Tasker.register_handler("linear_step_3", LinearStep3)
Tasker.register_handler("linear_step_4", LinearStep4)
