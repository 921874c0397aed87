//! The sequential executor: everything on the calling thread, in the graph's static order.

use std::sync::Arc;
use std::time::Instant;

use brisk_graph::{
    Error, Executor, Failure, FailurePolicy, Graph, NodeId, Report, RunContext, RunOutput, Skipped,
    Value,
};

use crate::task::run_node;
use brisk_graph::ComputeResources;

/// Runs a graph on the calling thread in its static order (like Dask's `scheduler="sync"`):
/// breakpoints, prints and stack traces work as in ordinary code.
///
/// It frees each intermediate result as soon as its last consumer has run, catches panicking
/// tasks and turns them into [`Error::Panic`], and stops at the first error (fail-fast) or,
/// under [`FailurePolicy::KeepGoing`], runs everything that does not depend on a failure.
///
/// ```
/// use brisk_exec::SequentialExecutor;
/// use brisk_graph::{lit, pure};
///
/// let x = pure("double", |v: i64| 2 * v, (lit(21),));
/// assert_eq!(x.compute_with(&SequentialExecutor).unwrap(), 42);
///
/// let bad = pure("boom", |v: i64| -> i64 { panic!("no {v}") }, (1,));
/// let err = bad.compute_with(&SequentialExecutor).unwrap_err();
/// assert!(err.to_string().contains("boom"));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SequentialExecutor;

impl Executor for SequentialExecutor {
    fn execute(&self, graph: &Arc<Graph>, ctx: &RunContext) -> Result<RunOutput, Error> {
        let started = crate::task::call_hooks(ctx, "on_start", |h| h.on_start(graph));
        let guards = ComputeResources::new(graph);
        // Task hooks run on this thread: one that panics stops the compute with an error,
        // and the resources opened so far are still closed.
        let result = started
            .and_then(|()| crate::task::no_panic("a task hook", || run(graph, ctx, &guards)));
        // A close error replaces a successful result; a task's error is never replaced.
        let result = match (result, guards.finish()) {
            (Ok(_), Some(close)) => Err(close),
            (r, _) => r,
        };
        let finished = crate::task::call_hooks(ctx, "on_finish", |h| {
            h.on_finish(graph, result.as_ref().err());
        });
        match (result, finished) {
            (Ok(_), Err(e)) => Err(e),
            (r, _) => r,
        }
    }
}

fn run(graph: &Graph, ctx: &RunContext, guards: &ComputeResources) -> Result<RunOutput, Error> {
    let t0 = Instant::now();
    let n = graph.len();
    let mut values: Vec<Option<Value>> = vec![None; n];
    let mut pending: Vec<u32> = NodeId::all(n)
        .map(|i| graph.dependents(i).len() as u32)
        .collect();
    let mut is_output = vec![false; n];
    for &o in graph.outputs() {
        is_output[o.index()] = true;
    }
    // Keep-going bookkeeping: for each node, the failed node that blocks it.
    let keep_going = ctx.policy == FailurePolicy::KeepGoing;
    let mut blocked_by: Vec<Option<NodeId>> = if keep_going {
        vec![None; n]
    } else {
        Vec::new()
    };
    let mut report = Report::default();

    for id in graph.in_order() {
        if ctx.cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let deps = graph.dependencies(id);
        if keep_going && let Some(cause) = deps.iter().find_map(|&d| blocked_by[d.index()]) {
            blocked_by[id.index()] = Some(cause);
            report.skipped.push(Skipped::new(
                graph.key(id).clone(),
                graph.key(cause).clone(),
            ));
            release_deps(graph, ctx, id, &mut values, &mut pending, &is_output);
            guards.after(id);
            continue;
        }
        let mut inputs = Vec::with_capacity(deps.len());
        for &d in deps {
            let v = values[d.index()]
                .as_ref()
                .expect("dependencies run before dependents in the static order");
            inputs.push(Arc::clone(v));
        }
        release_deps(graph, ctx, id, &mut values, &mut pending, &is_output);
        match run_node(graph, ctx, guards, id, inputs, 0, t0) {
            Ok(v) => values[id.index()] = Some(v),
            Err(e) if keep_going => {
                blocked_by[id.index()] = Some(id);
                let node = graph.node(id);
                report
                    .failed
                    .push(Failure::new(node.key().clone(), node.name().to_owned(), e));
            }
            Err(e) => return Err(e),
        }
    }
    let outputs = graph
        .outputs()
        .iter()
        .map(|&o| values[o.index()].clone())
        .collect();
    Ok(RunOutput::new(outputs, report))
}

/// Counts one consumer of each dependency of `id` as done and frees values nobody needs.
fn release_deps(
    graph: &Graph,
    ctx: &RunContext,
    id: NodeId,
    values: &mut [Option<Value>],
    pending: &mut [u32],
    is_output: &[bool],
) {
    for &d in graph.dependencies(id) {
        let i = d.index();
        pending[i] -= 1;
        if pending[i] == 0 && !is_output[i] && values[i].take().is_some() {
            for h in ctx.hooks.iter() {
                h.on_release(graph, d);
            }
        }
    }
}
