# The linear and diamond fixture workflows in Ruby, with results identical to the Rust
# example handlers. Every step squares a number:
#   linear (mathematical_sequence, namespace linear_workflow): step 1 squares the task's
#     even_number, each later step its parent's value, so step 4 holds n**16;
#   diamond (diamond_pattern, namespace diamond_workflow): start = n**2, both branches
#     square start, end = (b * c)**2.

# Squares the task's even_number: the first step of both workflows.
class SquareInput < Tasker::StepHandler
  def call(step)
    n = step.task_context["even_number"]
    raise Tasker::PermanentError, "even_number must be an even integer, got #{n.inspect}" unless n.is_a?(Integer) && n.even?

    { "value" => n**2 }
  end
end

# Squares the value of the parent step named in the subclass.
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

class DiamondBranch < SquareParent
  parent "diamond_start"
end

# Squares the product of both branches: the join sees both results or fails.
class DiamondEnd < Tasker::StepHandler
  def call(step)
    b = step.dependency_results.fetch("diamond_branch_b").fetch("value")
    c = step.dependency_results.fetch("diamond_branch_c").fetch("value")
    { "value" => (b * c)**2 }
  end
end

Tasker.register_handler("linear_step_1", SquareInput)
Tasker.register_handler("linear_step_2", LinearStep2)
Tasker.register_handler("linear_step_3", LinearStep3)
Tasker.register_handler("linear_step_4", LinearStep4)
Tasker.register_handler("diamond_start", SquareInput)
Tasker.register_handler("diamond_branch_b", DiamondBranch)
Tasker.register_handler("diamond_branch_c", DiamondBranch)
Tasker.register_handler("diamond_end", DiamondEnd)
