//! Running one node: cache loads, retries, panics, hooks and saves — the same on every executor.

use brisk_graph::ComputeResources;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use brisk_graph::{
    CacheAction, Checkpoint, Error, Graph, NodeId, RunContext, TaskEnd, TaskStatus, Value,
};

/// Calls the hooks around one attempt of a task. Reads the clock only when hooks are attached,
/// so an executor without hooks pays nothing for them.
struct Attempt<'a> {
    graph: &'a Graph,
    ctx: &'a RunContext,
    id: NodeId,
    worker: usize,
    t0: Instant,
    start: Option<Instant>,
    number: u32,
}

impl<'a> Attempt<'a> {
    fn begin(
        graph: &'a Graph,
        ctx: &'a RunContext,
        id: NodeId,
        worker: usize,
        t0: Instant,
        number: u32,
    ) -> Self {
        let start = if ctx.hooks.is_empty() {
            None
        } else {
            for h in ctx.hooks.iter() {
                h.on_task_start(graph, id, worker);
            }
            Some(Instant::now())
        };
        Self {
            graph,
            ctx,
            id,
            worker,
            t0,
            start,
            number,
        }
    }

    fn end(&self, status: TaskStatus<'_>) {
        let Some(start) = self.start else {
            return;
        };
        let event = TaskEnd::new(
            self.id,
            self.worker,
            start.saturating_duration_since(self.t0),
            start.elapsed(),
            self.number,
            status,
        );
        for h in self.ctx.hooks.iter() {
            h.on_task_end(self.graph, &event);
        }
    }

    /// Reports the outcome and passes it on.
    fn finish(&self, result: Result<Value, Error>, loaded: bool) -> Result<Value, Error> {
        match &result {
            Ok(v) if loaded => self.end(TaskStatus::Loaded(v)),
            Ok(v) => self.end(TaskStatus::Computed(v)),
            Err(e) => self.end(TaskStatus::Failed(e)),
        }
        result
    }
}

/// Runs node `id` on `deps` (the values of its distinct dependencies, in order) and returns its
/// value, calling the hooks around each attempt. `t0` is the start of the compute.
pub(crate) fn run_node(
    graph: &Graph,
    ctx: &RunContext,
    guards: &ComputeResources,
    id: NodeId,
    deps: Vec<Value>,
    worker: usize,
    t0: Instant,
) -> Result<Value, Error> {
    // The common case: a task that runs once, with nothing to open, load, save or report.
    if ctx.hooks.is_empty() && ctx.cache.is_none() && guards.is_empty() {
        let node = graph.node(id);
        if !node.is_loaded() && node.annotations().retries == 0 && node.build_error().is_none() {
            return run_once(graph, id, deps, 1);
        }
    }
    // A loaded node reads nothing: only nodes that run open what they need.
    let guarded = !graph.node(id).is_loaded();
    let result = if guarded && let Err(e) = guards.before(id) {
        let attempt = Attempt::begin(graph, ctx, id, worker, t0, 1);
        attempt.finish(Err(e), false)
    } else {
        run_unguarded(graph, ctx, id, deps, worker, t0)
    };
    guards.after(id);
    result
}

fn run_unguarded(
    graph: &Graph,
    ctx: &RunContext,
    id: NodeId,
    deps: Vec<Value>,
    worker: usize,
    t0: Instant,
) -> Result<Value, Error> {
    let node = graph.node(id);
    if let Some(e) = node.build_error() {
        let attempt = Attempt::begin(graph, ctx, id, worker, t0, 1);
        let err = Error::Tokenize {
            key: node.key().clone(),
            name: node.name().to_owned(),
            source: e.clone(),
        };
        return attempt.finish(Err(err), false);
    }
    if node.is_loaded() {
        let attempt = Attempt::begin(graph, ctx, id, worker, t0, 1);
        return attempt.finish(ctx.load_checkpoint(node), true);
    }
    // Single-flight: a cache shared with a concurrent compute may hand over the value that
    // compute just produced for the same key.
    let flight = match (ctx.cache.as_deref(), Checkpoint::of(node)) {
        (Some(cache), Some(entry)) => match cache.begin(&entry) {
            Ok(Some(v)) => {
                let attempt = Attempt::begin(graph, ctx, id, worker, t0, 1);
                return attempt.finish(Ok(v), true);
            }
            Ok(None) => Some((cache, entry)),
            Err(source) => {
                let attempt = Attempt::begin(graph, ctx, id, worker, t0, 1);
                let err = Error::Cache {
                    key: node.key().clone(),
                    name: node.name().to_owned(),
                    action: CacheAction::Load,
                    source,
                };
                return attempt.finish(Err(err), false);
            }
        },
        _ => None,
    };
    let result = run_attempts(graph, ctx, id, deps, worker, t0);
    if let (Some((cache, entry)), Err(_)) = (flight, &result) {
        cache.abandon(&entry);
    }
    result
}

/// Runs a node's task, retrying as its annotations allow, and saves a checkpointed result.
fn run_attempts(
    graph: &Graph,
    ctx: &RunContext,
    id: NodeId,
    deps: Vec<Value>,
    worker: usize,
    t0: Instant,
) -> Result<Value, Error> {
    let node = graph.node(id);
    let retries = node.annotations().retries;
    let mut number = 1;
    let mut deps = Some(deps);
    loop {
        // Keep a copy of the inputs only if another attempt may need them.
        let args = if number <= retries {
            deps.clone()
        } else {
            deps.take()
        }
        .expect("inputs are kept until the last attempt takes them");
        let attempt = Attempt::begin(graph, ctx, id, worker, t0, number);
        let result = run_once(graph, id, args, number)
            .and_then(|v| ctx.save_checkpoint(node, &v).map(|()| v));
        let retry = matches!(result, Err(Error::Task { .. } | Error::Panic { .. }))
            && number <= retries
            && !ctx.cancel.is_cancelled();
        let result = attempt.finish(result, false);
        if !retry {
            return result;
        }
        number += 1;
    }
}

/// One attempt (number `number`) of node `id`'s task on `args`: a failure or a panic becomes
/// the error that names the task.
fn run_once(graph: &Graph, id: NodeId, args: Vec<Value>, number: u32) -> Result<Value, Error> {
    match catch_unwind(AssertUnwindSafe(|| graph.run_task(id, args))) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => {
            let node = graph.node(id);
            Err(Error::Task {
                key: node.key().clone(),
                name: node.name().to_owned(),
                attempts: number,
                source,
            })
        }
        Err(payload) => {
            let node = graph.node(id);
            Err(Error::Panic {
                key: node.key().clone(),
                name: node.name().to_owned(),
                message: panic_message(payload.as_ref()),
            })
        }
    }
}

pub(crate) use brisk_graph::panic_message;

/// Calls `call` on every hook of `ctx` (hook method `event`); a panicking hook is an error,
/// never a panic through the compute. Every hook is called even when one panics.
pub(crate) fn call_hooks(
    ctx: &RunContext,
    event: &'static str,
    call: impl Fn(&dyn brisk_graph::Hooks),
) -> Result<(), Error> {
    let mut first = None;
    for h in ctx.hooks.iter() {
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| call(h.as_ref()))) {
            first.get_or_insert(Error::HookPanicked {
                event,
                message: panic_message(payload.as_ref()),
            });
        }
    }
    first.map_or(Ok(()), Err)
}

/// Runs `f`, turning a panic (of a hook called on this thread) into an error.
pub(crate) fn no_panic<T>(
    event: &'static str,
    f: impl FnOnce() -> Result<T, Error>,
) -> Result<T, Error> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        Err(Error::HookPanicked {
            event,
            message: panic_message(payload.as_ref()),
        })
    })
}
