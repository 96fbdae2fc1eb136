//! The Ruby handler contract, run in a real embedded Ruby VM: results, permanent and
//! retryable failures with their backtraces, files that do not load, and a slow Ruby
//! handler beside Rust work.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tasker_ruby::{examples_dir, load, RubyError, RubyHandlers};
use tasker_worker::{HandlerRegistry, StepContext, StepError};

/// A directory holding the given files.
fn handler_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary directory");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("writing a handler file");
    }
    dir
}

fn step(name: &str, task_context: Value, dependencies: &[(&str, Value)]) -> StepContext {
    StepContext {
        task_uuid: uuid::Uuid::nil(),
        workflow_step_uuid: uuid::Uuid::nil(),
        step_name: name.to_owned(),
        attempt: 1,
        task_context,
        step_config: json!({}),
        dependency_results: dependencies
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect::<HashMap<_, _>>(),
    }
}

async fn run(
    registry: &HandlerRegistry,
    handler: &str,
    step: &StepContext,
) -> Result<Value, StepError> {
    registry
        .get(handler)
        .unwrap_or_else(|| panic!("`{handler}` is registered"))
        .call(step)
        .await
}

fn registry_of(handlers: &RubyHandlers) -> HandlerRegistry {
    let mut registry = HandlerRegistry::new();
    handlers.register_into(&mut registry);
    registry
}

#[tokio::test]
async fn the_ruby_examples_compute_what_the_rust_handlers_compute() {
    let handlers = load(&examples_dir()).await.expect("the examples load");
    assert_eq!(
        handlers.names(),
        [
            "diamond_branch_b",
            "diamond_branch_c",
            "diamond_end",
            "diamond_start",
            "linear_step_1",
            "linear_step_2",
            "linear_step_3",
            "linear_step_4"
        ]
    );
    let ruby = registry_of(&handlers);
    let mut rust = HandlerRegistry::new();
    tasker_worker::examples::register_examples(&mut rust);
    let context = json!({"even_number": 6});
    for registry in [&ruby, &rust] {
        let mut value = run(
            registry,
            "linear_step_1",
            &step("linear_step_1", context.clone(), &[]),
        )
        .await
        .expect("step 1");
        for k in 2..=4 {
            let parent = format!("linear_step_{}", k - 1);
            let name = format!("linear_step_{k}");
            value = run(
                registry,
                &name,
                &step(&name, context.clone(), &[(&parent, value)]),
            )
            .await
            .expect("a later step");
        }
        assert_eq!(value, json!({"value": 2_821_109_907_456_i64}), "6^16");
        let start = run(
            registry,
            "diamond_start",
            &step("diamond_start", context.clone(), &[]),
        )
        .await
        .unwrap();
        let branch = run(
            registry,
            "diamond_branch_b",
            &step("b", context.clone(), &[("diamond_start", start)]),
        )
        .await
        .unwrap();
        let end = run(
            registry,
            "diamond_end",
            &step(
                "end",
                context.clone(),
                &[
                    ("diamond_branch_b", branch.clone()),
                    ("diamond_branch_c", branch),
                ],
            ),
        )
        .await
        .unwrap();
        assert_eq!(end, json!({"value": 2_821_109_907_456_i64}));
    }
    let odd = run(
        &ruby,
        "linear_step_1",
        &step("linear_step_1", json!({"even_number": 5}), &[]),
    )
    .await
    .unwrap_err();
    assert!(
        !odd.retryable,
        "an odd number is a permanent failure, as in Rust"
    );
}

const FAILING: &str = r#"
class Refuses < Tasker::StepHandler
  def call(step)
    raise Tasker::PermanentError, "the account #{step.task_context["account"]} is closed"
  end
end

class Flaky < Tasker::StepHandler
  def call(step)
    helper(step.attempt)
  end

  def helper(attempt)
    raise IOError, "connection reset on attempt #{attempt}"
  end
end

class Opaque < Tasker::StepHandler
  def call(_step)
    Object.new
  end
end

Tasker.register_handler("refuses", Refuses)
Tasker.register_handler("flaky", Flaky)
Tasker.register_handler("opaque", Opaque)
"#;

#[tokio::test]
async fn failures_are_permanent_or_retryable_with_the_ruby_backtrace() {
    let dir = handler_dir(&[("failing.rb", FAILING)]);
    let registry = registry_of(&load(dir.path()).await.expect("loads"));

    let refused = run(&registry, "refuses", &step("s", json!({"account": 7}), &[]))
        .await
        .unwrap_err();
    assert!(!refused.retryable);
    assert_eq!(refused.message, "the account 7 is closed");

    let flaky = run(&registry, "flaky", &step("s", json!({}), &[]))
        .await
        .unwrap_err();
    assert!(flaky.retryable);
    assert_eq!(flaky.message, "IOError: connection reset on attempt 1");
    let backtrace = flaky.details.as_ref().expect("details")["backtrace"]
        .as_array()
        .expect("a backtrace")
        .clone();
    assert!(
        backtrace[0]
            .as_str()
            .unwrap()
            .contains("failing.rb:14:in `helper'"),
        "{backtrace:?}"
    );
    assert!(backtrace[1]
        .as_str()
        .unwrap()
        .contains("failing.rb:10:in `call'"));

    let opaque = run(&registry, "opaque", &step("s", json!({}), &[]))
        .await
        .unwrap_err();
    assert!(!opaque.retryable);
    assert!(
        opaque.message.contains("returned a value JSON cannot hold"),
        "{}",
        opaque.message
    );
}

#[tokio::test]
async fn a_file_that_does_not_load_is_named_with_its_line() {
    let syntax = handler_dir(&[
        ("a_good.rb", "x = 1\n"),
        ("b_broken.rb", "def broken(\n  1 +\n"),
    ]);
    let err = load(syntax.path()).await.unwrap_err();
    let RubyError::Load { file, line, .. } = &err else {
        panic!("{err}")
    };
    assert!(file.ends_with("b_broken.rb"));
    assert_eq!(*line, Some(2));
    assert!(
        err.to_string().contains("b_broken.rb:2: SyntaxError"),
        "{err}"
    );

    let constant = handler_dir(&[("missing.rb", "\n\nclass X < Tasker::Nope\nend\n")]);
    let err = load(constant.path()).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("missing.rb:3: NameError: uninitialized constant Tasker::Nope"),
        "{err}"
    );

    let empty = handler_dir(&[("README.md", "no handlers")]);
    assert!(matches!(
        load(empty.path()).await,
        Err(RubyError::NoFiles { .. })
    ));
    assert!(matches!(
        load(Path::new("/nonexistent/handlers")).await,
        Err(RubyError::ReadDir { .. })
    ));
}

#[tokio::test]
async fn two_loads_keep_their_own_handlers() {
    let one = handler_dir(&[("h.rb", "class A < Tasker::StepHandler\n  def call(_) = { \"from\" => \"one\" }\nend\nTasker.register_handler(\"same\", A)\n")]);
    let two = handler_dir(&[("h.rb", "class B < Tasker::StepHandler\n  def call(_) = { \"from\" => \"two\" }\nend\nTasker.register_handler(\"same\", B)\n")]);
    let first = registry_of(&load(one.path()).await.unwrap());
    let second = registry_of(&load(two.path()).await.unwrap());
    let s = step("s", json!({}), &[]);
    assert_eq!(
        run(&first, "same", &s).await.unwrap(),
        json!({"from": "one"})
    );
    assert_eq!(
        run(&second, "same", &s).await.unwrap(),
        json!({"from": "two"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_ruby_handler_does_not_hold_up_rust_work() {
    let dir = handler_dir(&[("slow.rb", "class Slow < Tasker::StepHandler\n  def call(_)\n    sleep 1\n    { \"slept\" => true }\n  end\nend\nTasker.register_handler(\"slow\", Slow)\n")]);
    let registry = registry_of(&load(dir.path()).await.unwrap());
    let started = Instant::now();
    let slow =
        tokio::spawn(async move { run(&registry, "slow", &step("s", json!({}), &[])).await });
    // Rust work on the runtime meanwhile: timer ticks keep arriving on time.
    let mut ticks = 0;
    while !slow.is_finished() {
        tokio::time::sleep(Duration::from_millis(10)).await;
        ticks += 1;
    }
    assert_eq!(slow.await.unwrap().unwrap(), json!({"slept": true}));
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(
        ticks >= 50,
        "the runtime kept running while Ruby slept: {ticks} ticks"
    );
}

#[tokio::test]
async fn starting_ruby_leaves_the_terminating_signals_at_their_default() {
    load(&examples_dir()).await.expect("the examples load");
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let caught = status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .expect("SigCgt");
    // a Ctrl-C or SIGTERM still ends a process that does not handle them itself
    assert_eq!(caught & (1 << (2 - 1)), 0, "SIGINT is caught: {caught:x}");
    assert_eq!(caught & (1 << (15 - 1)), 0, "SIGTERM is caught: {caught:x}");
}
