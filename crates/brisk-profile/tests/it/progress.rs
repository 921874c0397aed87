//! `ProgressBar`: counts, open totals, drawing.

use std::sync::Arc;
use std::time::Duration;

use brisk_exec::ThreadedExecutor;
use brisk_graph::{ComputeOptions, Delayed, Graph, TaskSpec};
use brisk_profile::ProgressBar;
use indicatif::{InMemoryTerm, ProgressDrawTarget};

fn work(n: u64) -> Delayed<u64> {
    let spec = TaskSpec::new("inc").pure();
    let parts: Delayed<Vec<u64>> = (0..n).map(|i| spec.call(|x: u64| x + 1, (i,))).collect();
    TaskSpec::new("sum").call(|v: Vec<u64>| v.iter().sum::<u64>(), (parts,))
}

#[test]
fn counts_every_task_of_every_compute() {
    let bar = Arc::new(ProgressBar::hidden());
    let opts = ComputeOptions::new().hook(bar.clone());
    let d = work(50);
    let tasks = Graph::new([&d]).len() as u64;
    let exec = ThreadedExecutor::new(2).unwrap();
    assert_eq!(d.compute_with_options(&exec, &opts).unwrap(), 1275);
    assert_eq!((bar.done(), bar.known()), (tasks, tasks));
    assert_eq!(bar.message(), format!("{tasks}/{tasks} tasks"));
    // A second compute adds to the total.
    work(10).compute_with_options(&exec, &opts).unwrap();
    let more = Graph::new([&work(10)]).len() as u64;
    assert_eq!((bar.done(), bar.known()), (tasks + more, tasks + more));
}

#[test]
fn open_totals_show_done_over_known() {
    let bar = ProgressBar::hidden();
    bar.set_open(true);
    bar.add_known(7);
    assert!(bar.is_open());
    assert_eq!(bar.message(), "0/7 tasks (open)");
    bar.set_open(false);
    assert_eq!(bar.message(), "0/7 tasks");
}

#[test]
fn failed_compute_leaves_the_bar_short() {
    let bar = Arc::new(ProgressBar::hidden());
    let opts = ComputeOptions::new().hook(bar.clone());
    let bad = TaskSpec::new("bad").try_call(
        |x: u64| -> Result<u64, std::io::Error> { Err(std::io::Error::other(format!("no {x}"))) },
        (1u64,),
    );
    assert!(
        bad.compute_with_options(&ThreadedExecutor::new(2).unwrap(), &opts)
            .is_err()
    );
    assert!(bar.done() < bar.known());
}

#[test]
fn draws_done_and_total_on_a_terminal() {
    let term = InMemoryTerm::new(4, 120);
    let bar = Arc::new(ProgressBar::with_target(ProgressDrawTarget::term_like(
        Box::new(term.clone()),
    )));
    let opts = ComputeOptions::new().hook(bar.clone());
    let d = work(20);
    let tasks = Graph::new([&d]).len();
    d.compute_with_options(&ThreadedExecutor::new(2).unwrap(), &opts)
        .unwrap();
    std::thread::sleep(Duration::from_millis(10));
    let screen = term.contents();
    assert!(
        screen.contains(&format!("{tasks}/{tasks} tasks")),
        "{screen:?}"
    );
    assert!(screen.contains("100%"), "{screen:?}");
}
