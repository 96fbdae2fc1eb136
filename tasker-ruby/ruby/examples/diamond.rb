# The diamond fixture workflow (diamond_pattern, namespace diamond_workflow) in Ruby:
# start = n², b = c = start², end = (b·c)². Results are identical to the Rust handlers.

class DiamondStart < Tasker::StepHandler
  def call(step)
    n = step.task_context["even_number"]
    raise Tasker::PermanentError, "even_number must be an even integer, got #{n.inspect}" unless n.is_a?(Integer) && n.even?

    { "value" => n**2 }
  end
end

class DiamondBranch < Tasker::StepHandler
  def call(step)
    { "value" => step.dependency_results.fetch("diamond_start").fetch("value")**2 }
  end
end

class DiamondEnd < Tasker::StepHandler
  def call(step)
    b = step.dependency_results.fetch("diamond_branch_b").fetch("value")
    c = step.dependency_results.fetch("diamond_branch_c").fetch("value")
    { "value" => (b * c)**2 }
  end
end

Tasker.register_handler("diamond_start", DiamondStart)
Tasker.register_handler("diamond_branch_b", DiamondBranch)
Tasker.register_handler("diamond_branch_c", DiamondBranch)
Tasker.register_handler("diamond_end", DiamondEnd)
