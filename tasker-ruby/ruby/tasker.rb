# The Ruby side of Tasker's step-handler contract, loaded into the embedded VM before any
# handler file. Handlers subclass Tasker::StepHandler, define call(step) and register
# themselves with Tasker.register_handler(name, klass).
module Tasker
  # Raised by a handler when no retry can succeed: the step fails for good.
  class PermanentError < StandardError; end

  # What a handler receives: the task's context, its ancestors' results by step name, the
  # step's own name, attempt (1 for the first run) and configuration from the template.
  Step = Struct.new(:task_context, :dependency_results, :step_name, :attempt, :step_config,
                    keyword_init: true)

  class StepHandler
    def call(_step)
      raise NotImplementedError, "#{self.class} must define call(step)"
    end
  end

  @loads = Hash.new { |hash, key| hash[key] = {} }
  @loading = nil

  class << self
    # Registers klass under the template's handler name, for the files being loaded.
    def register_handler(name, klass)
      unless klass.is_a?(Class) && klass <= StepHandler
        raise ArgumentError, "register_handler(#{name.inspect}, #{klass.inspect}): the handler must be a subclass of Tasker::StepHandler"
      end
      raise "Tasker.register_handler is only called while a handler file loads" unless @loading

      @loading[name.to_s] = klass
    end

    # Loads one file into load `load_id`. Returns [names registered, nil, nil], or
    # [nil, line, message] when the file does not load.
    def load_file(load_id, path)
      @loading = @loads[load_id]
      before = @loading.keys
      Kernel.load(path, false)
      [@loading.keys - before, nil, nil]
    rescue SyntaxError => e
      line = e.message[/#{Regexp.escape(path)}:(\d+)/, 1]&.to_i
      [nil, line, summary(e).sub("#{path}:#{line}: ", "")]
    rescue Exception => e # rubocop:disable Lint/RescueException -- a file must never end the VM
      location = (e.backtrace_locations || []).find { |l| l.absolute_path == path || l.path == path }
      [nil, location&.lineno, summary(e)]
    ensure
      @loading = nil
    end

    # Runs one step. Returns ["ok", result, nil], or [kind, message, backtrace] with kind
    # "permanent" or "retryable".
    def run_step(load_id, name, task_context, dependency_results, step_name, attempt, step_config)
      klass = @loads[load_id][name]
      return ["permanent", "no Ruby handler named `#{name}` is registered", nil] unless klass

      step = Step.new(task_context: task_context, dependency_results: dependency_results,
                      step_name: step_name, attempt: attempt, step_config: step_config)
      ["ok", klass.new.call(step), nil]
    rescue PermanentError => e
      ["permanent", e.message, handler_frames(e)]
    rescue Exception => e # rubocop:disable Lint/RescueException -- a handler must never end the VM
      ["retryable", summary(e), handler_frames(e)]
    end

    private

    # The class and the first line of the message (a syntax error adds the source line).
    def summary(error)
      "#{error.class}: #{error.message.lines.first&.chomp}"
    end

    # The backtrace down to the handler's call, without this file's frames.
    def handler_frames(error)
      (error.backtrace || []).take_while { |frame| !frame.include?("`run_step'") }
    end
  end
end
