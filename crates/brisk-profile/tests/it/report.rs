//! `Report`, DOT colouring and the Graphviz helper.

use std::sync::Arc;
use std::time::Duration;

use brisk_exec::ThreadedExecutor;
use brisk_graph::{ComputeOptions, Delayed, DotOptions, Graph, TaskSpec};
use brisk_profile::{
    CacheProfiler, GraphvizError, Profiler, Report, ResourceProfiler, duration_fill, svg, svg_with,
};

fn pipeline() -> Delayed<u64> {
    let load = TaskSpec::new("load <chunk>").pure();
    let parts: Delayed<Vec<u64>> = (0..12u64)
        .map(|i| {
            load.call(
                |i: u64| {
                    std::thread::sleep(Duration::from_millis(5));
                    i
                },
                (i,),
            )
        })
        .collect();
    TaskSpec::new("reduce").call(|v: Vec<u64>| v.iter().sum::<u64>(), (parts,))
}

#[test]
fn report_shows_every_worker_task_and_profile() {
    let (tasks, resources, cache) = (
        Arc::new(Profiler::new()),
        Arc::new(ResourceProfiler::every(Duration::from_millis(5))),
        Arc::new(CacheProfiler::new()),
    );
    let opts = ComputeOptions::new()
        .hook(tasks.clone())
        .hook(resources.clone())
        .hook(cache.clone());
    pipeline()
        .compute_with_options(&ThreadedExecutor::new(2).unwrap(), &opts)
        .unwrap();
    let html = Report::new("My <pipeline>")
        .tasks(&tasks)
        .resources(&resources)
        .cache(&cache)
        .to_html();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<title>My &lt;pipeline&gt; — Brisk profile</title>"));
    assert!(html.contains(">worker 0<") && html.contains(">worker 1<"));
    // Names are escaped everywhere, one box per task run with its key in the hover text.
    assert!(!html.contains("load <chunk>"));
    assert!(html.contains("load &lt;chunk&gt;"));
    let boxes = html.matches("class=\"t\"").count();
    assert!(boxes >= 12, "{boxes} boxes");
    for r in tasks.records() {
        if r.end - r.start >= Duration::from_millis(5) {
            let key = r.key.to_string().replace('<', "&lt;").replace('>', "&gt;");
            assert!(html.contains(&key), "key {key} missing");
        }
    }
    for section in [
        "Tasks per worker",
        "CPU",
        "Memory",
        "Results held",
        "Per task name",
    ] {
        assert!(html.contains(&format!("<h2>{section}</h2>")), "{section}");
    }
    assert!(html.contains("parallel efficiency"));
    // Self-contained: nothing is fetched.
    for external in ["src=\"http", "href=\"http", "src=\"//", "@import", "<link"] {
        assert!(!html.contains(external), "{external}");
    }
    let path = std::env::temp_dir().join(format!("brisk-report-{}.html", std::process::id()));
    Report::new("x").tasks(&tasks).write(&path).unwrap();
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("Per task name")
    );
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn many_tiny_tasks_stay_a_small_document() {
    let spec = TaskSpec::new("tiny").pure();
    let parts: Delayed<Vec<u64>> = (0..20_000u64)
        .map(|i| spec.call(|x: u64| x ^ 1, (i,)))
        .collect();
    let p = Arc::new(Profiler::new());
    let opts = ComputeOptions::new().hook(p.clone());
    parts
        .compute_with_options(&ThreadedExecutor::new(2).unwrap(), &opts)
        .unwrap();
    let html = Report::new("tiny").tasks(&p).to_html();
    let boxes = html.matches("<rect").count();
    assert!(boxes < 2 * 1100 + 10, "{boxes} rects");
    assert!(html.contains("short task(s)"));
}

#[test]
fn a_report_without_resource_samples_says_so() {
    let r = ResourceProfiler::new();
    let html = Report::new("empty").resources(&r).to_html();
    assert!(html.contains("no samples"));
}

#[test]
fn dot_is_coloured_by_measured_duration() {
    let fast = TaskSpec::new("fast").call(|x: u64| x, (1u64,));
    let slow = TaskSpec::new("slow").call(
        |x: u64| {
            std::thread::sleep(Duration::from_millis(30));
            x
        },
        (fast,),
    );
    let p = Arc::new(Profiler::new());
    let opts = ComputeOptions::new().hook(p.clone());
    slow.compute_with_options(&ThreadedExecutor::new(2).unwrap(), &opts)
        .unwrap();
    let graph = Graph::new([&slow]);
    let fill = duration_fill(&graph, &p);
    let color_of = |name: &str| {
        let id = brisk_graph::NodeId::all(graph.len())
            .find(|&i| graph.node(i).name() == name)
            .unwrap();
        fill[id.index()].clone().unwrap()
    };
    assert_eq!(color_of("slow"), "#bd0026");
    let fast_color = color_of("fast");
    assert!(
        fast_color.starts_with("#ff") || fast_color.starts_with("#fe"),
        "{fast_color}"
    );
    let dot = graph.to_dot(&DotOptions::default().fill(fill));
    assert!(dot.contains("fillcolor=\"#bd0026\""));

    // A graph that was never run has no colours.
    let other = TaskSpec::new("never").call(|x: u64| x, (9u64,));
    let g2 = Graph::new([&other]);
    assert!(duration_fill(&g2, &p).iter().all(Option::is_none));
}

#[test]
fn missing_graphviz_is_a_clear_error() {
    let err = svg_with("brisk-no-such-graphviz", "digraph { a -> b }").unwrap_err();
    assert!(matches!(err, GraphvizError::NotInstalled { .. }));
    let msg = err.to_string();
    assert!(msg.contains("brisk-no-such-graphviz") && msg.contains("apt install graphviz"));
}

/// CI installs Graphviz, so there this renders for real; elsewhere it checks the error.
#[test]
fn svg_renders_with_graphviz_when_installed() {
    let d = pipeline();
    let dot = Graph::new([&d]).to_dot(&DotOptions::default().color_by_order());
    match svg(&dot) {
        Ok(s) => {
            assert!(s.contains("<svg"));
            assert!(s.contains("reduce"));
            let bad = svg("digraph { this is not dot").unwrap_err();
            assert!(matches!(bad, GraphvizError::Failed { .. }), "{bad}");
        }
        Err(GraphvizError::NotInstalled { .. }) => {
            assert!(
                std::env::var_os("BRISK_REQUIRE_GRAPHVIZ").is_none(),
                "BRISK_REQUIRE_GRAPHVIZ is set but Graphviz `dot` is not installed"
            );
        }
        Err(e) => panic!("{e}"),
    }
}
