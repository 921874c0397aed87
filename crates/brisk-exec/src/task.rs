//! Running one node: cache loads, retries, panics, hooks and saves — the same on every executor.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use brisk_graph::{
    BoxError, CacheAction, Checkpoint, Error, Graph, RunContext, TaskEnd, TaskStatus, Value,
};

/// Runs node `id` on `deps` (the values of its distinct dependencies, in order) and returns its
/// value, calling the hooks around each attempt. `t0` is the start of the compute.
pub(crate) fn run_node(
    graph: &Graph,
    ctx: &RunContext,
    id: usize,
    deps: Vec<Value>,
    worker: usize,
    t0: Instant,
) -> Result<Value, Error> {
    let node = graph.node(id);
    if let Some(e) = node.build_error() {
        let err = Error::Tokenize {
            key: node.key().clone(),
            name: node.name().to_owned(),
            source: e.clone(),
        };
        report(graph, ctx, id, worker, t0, Instant::now(), 1, &err);
        return Err(err);
    }
    if node.is_loaded() {
        let start = Instant::now();
        for h in ctx.hooks.iter() {
            h.on_task_start(graph, id, worker);
        }
        let result = load(graph, ctx, id);
        match &result {
            Ok(v) => report_status(graph, ctx, id, worker, t0, start, 1, TaskStatus::Loaded(v)),
            Err(e) => report(graph, ctx, id, worker, t0, start, 1, e),
        }
        return result;
    }
    let retries = node.annotations().retries;
    let mut attempt = 1;
    let mut deps = Some(deps);
    loop {
        // Keep a copy of the inputs only if another attempt may need them.
        let args = if attempt <= retries {
            deps.clone().expect("inputs are kept while attempts remain")
        } else {
            deps.take().expect("the last attempt takes the inputs")
        };
        let start = Instant::now();
        for h in ctx.hooks.iter() {
            h.on_task_start(graph, id, worker);
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| graph.run_task(id, args)));
        let result = match outcome {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(source)) => Err(task_error(graph, id, attempt, source)),
            Err(payload) => Err(Error::Panic {
                key: node.key().clone(),
                name: node.name().to_owned(),
                message: panic_message(payload.as_ref()),
            }),
        };
        match result {
            Ok(value) => {
                let saved = save(graph, ctx, id, &value);
                match &saved {
                    Ok(()) => report_status(
                        graph,
                        ctx,
                        id,
                        worker,
                        t0,
                        start,
                        attempt,
                        TaskStatus::Computed(&value),
                    ),
                    Err(e) => report(graph, ctx, id, worker, t0, start, attempt, e),
                }
                return saved.map(|()| value);
            }
            Err(e) => {
                report(graph, ctx, id, worker, t0, start, attempt, &e);
                if attempt > retries || ctx.cancel.is_cancelled() {
                    return Err(e);
                }
                attempt += 1;
            }
        }
    }
}

fn task_error(graph: &Graph, id: usize, attempts: u32, source: BoxError) -> Error {
    let node = graph.node(id);
    Error::Task {
        key: node.key().clone(),
        name: node.name().to_owned(),
        attempts,
        source,
    }
}

fn load(graph: &Graph, ctx: &RunContext, id: usize) -> Result<Value, Error> {
    let node = graph.node(id);
    let cache_err = |source: BoxError| Error::Cache {
        key: node.key().clone(),
        name: node.name().to_owned(),
        action: CacheAction::Load,
        source,
    };
    let (Some(cache), Some(entry)) = (ctx.cache.as_deref(), Checkpoint::of(node)) else {
        return Err(cache_err(
            "node is marked as loaded but the compute has no cache".into(),
        ));
    };
    cache.load(&entry).map_err(cache_err)
}

fn save(graph: &Graph, ctx: &RunContext, id: usize, value: &Value) -> Result<(), Error> {
    let node = graph.node(id);
    let (Some(cache), Some(entry)) = (ctx.cache.as_deref(), Checkpoint::of(node)) else {
        return Ok(());
    };
    cache.save(&entry, value).map_err(|source| Error::Cache {
        key: node.key().clone(),
        name: node.name().to_owned(),
        action: CacheAction::Save,
        source,
    })
}

#[allow(
    clippy::too_many_arguments,
    reason = "one private call site shape, all plain data"
)]
fn report_status(
    graph: &Graph,
    ctx: &RunContext,
    id: usize,
    worker: usize,
    t0: Instant,
    start: Instant,
    attempt: u32,
    status: TaskStatus<'_>,
) {
    if ctx.hooks.is_empty() {
        return;
    }
    let event = TaskEnd::new(
        id,
        worker,
        start.saturating_duration_since(t0),
        start.elapsed(),
        attempt,
        status,
    );
    for h in ctx.hooks.iter() {
        h.on_task_end(graph, &event);
    }
}

#[allow(
    clippy::too_many_arguments,
    reason = "one private call site shape, all plain data"
)]
fn report(
    graph: &Graph,
    ctx: &RunContext,
    id: usize,
    worker: usize,
    t0: Instant,
    start: Instant,
    attempt: u32,
    error: &Error,
) {
    let status = TaskStatus::Failed(error);
    report_status(graph, ctx, id, worker, t0, start, attempt, status);
}

/// The text of a panic payload (`&str` or `String`), or a placeholder.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
