//! Where a request's time goes: its critical path, and the critical-path
//! time per operation summed over many requests.
//!
//! The critical path is the chain of work the request waited on, the same
//! walk as Jaeger UI's critical path: from the end of a span, step back to
//! the child that finished last; the time between that child's end and the
//! current point is the span's own time on the path; continue inside the
//! child, then from the child's start with the children that finished
//! before it; what is left before the first of them is the span's own time
//! again. Children are clipped to their parent's time (a Kafka consumer
//! that runs after the request answered is not on the request's path), and
//! a child that overlaps a later one on the path is not on it. The segments
//! of one request add up to its duration exactly.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::model::Trace;

/// A stretch of time during which the request waited on `span`'s own work
/// (none of its children on the path ran then).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Index into [`Trace::spans`].
    pub span: usize,
    pub start_ns: u64,
    pub end_ns: u64,
}

/// The critical path of the request that `root` (an index into
/// [`Trace::spans`]) served, latest segment first.
pub fn path(trace: &Trace, root: usize) -> Vec<Segment> {
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); trace.spans.len()];
    let index: BTreeMap<&str, usize> = trace
        .spans
        .iter()
        .enumerate()
        .map(|(i, s)| (s.span_id.as_str(), i))
        .collect();
    for (i, span) in trace.spans.iter().enumerate() {
        if let Some(&parent) = span.parent_id.as_deref().and_then(|p| index.get(p))
            && parent != i
        {
            children[parent].push(i);
        }
    }
    let mut on_path = vec![false; trace.spans.len()];
    let mut out = Vec::new();
    let root_span = &trace.spans[root];
    walk(
        trace,
        &children,
        &mut on_path,
        root,
        root_span.start_ns,
        root_span.end_ns(),
        &mut out,
    );
    out
}

/// Appends the segments of `span`, clipped to `[from, to]`.
fn walk(
    trace: &Trace,
    children: &[Vec<usize>],
    on_path: &mut [bool],
    span: usize,
    from: u64,
    to: u64,
    out: &mut Vec<Segment>,
) {
    // A parent cycle (a broken trace) must not loop forever.
    if std::mem::replace(&mut on_path[span], true) {
        return;
    }
    let mut clipped: Vec<(usize, u64, u64)> = children[span]
        .iter()
        .filter(|&&c| !on_path[c])
        .map(|&c| {
            let child = &trace.spans[c];
            (c, child.start_ns.max(from), child.end_ns().min(to))
        })
        .filter(|&(_, start, end)| start < end)
        .collect();
    clipped.sort_by(|a, b| b.2.cmp(&a.2).then(a.1.cmp(&b.1)));
    let mut now = to;
    // Ends only decrease down the list, and so does `now`: a child passed
    // over once (it ended after `now`) can never be on the path later.
    for (child, start, end) in clipped {
        if end > now {
            continue;
        }
        if end < now {
            out.push(Segment {
                span,
                start_ns: end,
                end_ns: now,
            });
        }
        walk(trace, children, on_path, child, start, end, out);
        now = start;
    }
    if from < now {
        out.push(Segment {
            span,
            start_ns: from,
            end_ns: now,
        });
    }
}

/// Each span's own time on the critical path of the request `root` served,
/// in nanoseconds, by index into [`Trace::spans`] (0 off the path).
pub fn time_per_span(trace: &Trace, root: usize) -> Vec<u64> {
    let mut time = vec![0; trace.spans.len()];
    for segment in path(trace, root) {
        time[segment.span] += segment.end_ns - segment.start_ns;
    }
    time
}

/// The request a trace shows for `service`: its topmost span (the trace's
/// root for the service that received the request; a service further down
/// gets its own server span). `None` when `service` has no span in it.
pub fn request_of(trace: &Trace, service: &str) -> Option<usize> {
    let (_, top) = trace
        .tree()
        .into_iter()
        .filter(|(_, s)| s.service == service)
        .min_by_key(|(depth, _)| *depth)?;
    trace.spans.iter().position(|s| std::ptr::eq(s, top))
}

/// One operation's critical-path time over many requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub service: String,
    pub name: String,
    pub time_ns: u64,
    /// In how many of the requests it was on the path.
    pub requests: usize,
}

/// Critical-path time per operation over a set of requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Most time first.
    pub operations: Vec<Operation>,
    /// The requests' durations added up (= the operations' times added up).
    pub total_ns: u64,
    /// The requests' durations, slowest first.
    pub requests_ns: Vec<u64>,
}

/// Sums the critical path of each `(trace, request span index)`.
pub fn summarize(requests: &[(Trace, usize)]) -> Summary {
    let mut by_operation: BTreeMap<(String, String), (u64, usize)> = BTreeMap::new();
    let mut summary = Summary::default();
    for (trace, root) in requests {
        summary.requests_ns.push(trace.spans[*root].duration_ns);
        let mut seen_here = std::collections::BTreeSet::new();
        for (span, time) in trace.spans.iter().zip(time_per_span(trace, *root)) {
            if time == 0 {
                continue;
            }
            let key = (span.service.clone(), span.name.clone());
            let entry = by_operation.entry(key.clone()).or_default();
            entry.0 += time;
            if seen_here.insert(key) {
                entry.1 += 1;
            }
            summary.total_ns += time;
        }
    }
    summary.requests_ns.sort_unstable_by(|a, b| b.cmp(a));
    summary.operations = by_operation
        .into_iter()
        .map(|((service, name), (time_ns, requests))| Operation {
            service,
            name,
            time_ns,
            requests,
        })
        .collect();
    summary
        .operations
        .sort_by(|a, b| b.time_ns.cmp(&a.time_ns).then(a.name.cmp(&b.name)));
    summary
}

impl Operation {
    /// Its share of `summary`'s total time, in `[0, 1]`.
    pub fn share(&self, summary: &Summary) -> f64 {
        self.time_ns as f64 / summary.total_ns.max(1) as f64
    }
}

/// Width of the bar column of [`render`].
pub const BAR_WIDTH: usize = 30;

/// The top `top` operations as a table with a bar per share; plain text.
pub fn render(summary: &Summary, top: usize) -> String {
    let mut out = String::new();
    let ms = |ns: u64| ns as f64 / 1e6;
    let n = summary.requests_ns.len();
    if n == 0 {
        return out;
    }
    let _ = writeln!(
        out,
        "{n} requests, {:.1} ms on the critical path in all (slowest {:.1} ms, median {:.1} ms)",
        ms(summary.total_ns),
        ms(summary.requests_ns[0]),
        ms(summary.requests_ns[n / 2]),
    );
    let rows: Vec<&Operation> = summary.operations.iter().take(top).collect();
    let label = |o: &Operation| format!("{}  {}", o.service, o.name);
    let width = rows
        .iter()
        .map(|o| label(o).chars().count())
        .max()
        .unwrap_or(9)
        .clamp(9, 60);
    let _ = writeln!(
        out,
        "{:<width$}  {:>12}  {:>10}  {:>6}  share",
        "operation", "on the path", "per request", "in"
    );
    for o in rows {
        let share = o.share(summary);
        let bar = (share * BAR_WIDTH as f64).round() as usize;
        let mut name = label(o);
        if name.chars().count() > width {
            name = name.chars().take(width - 1).collect::<String>() + "…";
        }
        let _ = writeln!(
            out,
            "{name:<width$}  {:>9.1} ms  {:>8.1} ms  {:>6}  {:>5.1}% {}",
            ms(o.time_ns),
            ms(o.time_ns) / n as f64,
            format!("{}/{n}", o.requests),
            share * 100.0,
            "█".repeat(bar.max(usize::from(o.time_ns > 0 && bar == 0))),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Span;

    const MS: u64 = 1_000_000;

    fn span(id: &str, parent: Option<&str>, name: &str, start_ms: u64, ms: u64) -> Span {
        Span::sketch(id, parent, name, start_ms * MS, ms * MS)
    }

    fn times(trace: &Trace) -> BTreeMap<String, u64> {
        let root = trace
            .spans
            .iter()
            .position(|s| s.parent_id.is_none())
            .unwrap();
        trace
            .spans
            .iter()
            .zip(time_per_span(trace, root))
            .filter(|(_, t)| *t > 0)
            .map(|(s, t)| (s.name.clone(), t / MS))
            .collect()
    }

    #[test]
    fn sequential_children_are_each_on_the_path_with_the_gaps_as_the_parents_own_time() {
        // root 0..100: a 10..40, b 50..90 (b's child c 60..80).
        let trace = Trace::new(
            "t".into(),
            vec![
                span("r", None, "root", 0, 100),
                span("a", Some("r"), "a", 10, 30),
                span("b", Some("r"), "b", 50, 40),
                span("c", Some("b"), "c", 60, 20),
            ],
        );
        let t = times(&trace);
        assert_eq!(t["root"], 10 + 10 + 10); // 0..10, 40..50, 90..100
        assert_eq!(t["a"], 30);
        assert_eq!(t["b"], 20);
        assert_eq!(t["c"], 20);
        assert_eq!(t.values().sum::<u64>(), 100, "the path covers the request");
    }

    #[test]
    fn of_two_parallel_children_only_the_one_that_finished_last_is_waited_on() {
        // fast 10..30 and slow 10..80 run at once.
        let trace = Trace::new(
            "t".into(),
            vec![
                span("r", None, "root", 0, 100),
                span("f", Some("r"), "fast", 10, 20),
                span("s", Some("r"), "slow", 10, 70),
            ],
        );
        let t = times(&trace);
        assert_eq!(t.get("fast"), None);
        assert_eq!(t["slow"], 70);
        assert_eq!(t["root"], 30);
    }

    #[test]
    fn work_after_the_request_answered_is_clipped_away() {
        // A consumer span (child of the producer) runs long after the root.
        let trace = Trace::new(
            "t".into(),
            vec![
                span("r", None, "root", 0, 50),
                span("p", Some("r"), "send", 20, 10),
                span("c", Some("p"), "process", 2000, 15),
                span("o", Some("p"), "overflow", 25, 100),
            ],
        );
        let t = times(&trace);
        assert_eq!(t.get("process"), None);
        // overflow is clipped to the producer's end (30) and fills 25..30.
        assert_eq!(t["overflow"], 5);
        assert_eq!(t["send"], 5);
        assert_eq!(t.values().sum::<u64>(), 50);
    }

    #[test]
    fn a_parent_cycle_ends() {
        let trace = Trace::new(
            "t".into(),
            vec![
                span("a", Some("b"), "one", 0, 10),
                span("b", Some("a"), "two", 1, 5),
            ],
        );
        let total: u64 = time_per_span(&trace, 0).iter().sum();
        assert_eq!(total, 10 * MS);
    }

    #[test]
    fn the_summary_ranks_operations_by_time_on_the_path_and_shares_add_up() {
        let slow = |id: &str| {
            Trace::new(
                id.into(),
                vec![
                    span("r", None, "root", 0, 400),
                    span("d", Some("r"), "delay", 50, 300),
                    span("q", Some("r"), "query", 360, 20),
                ],
            )
        };
        let requests: Vec<(Trace, usize)> = ["t1", "t2"]
            .iter()
            .map(|id| {
                let trace = slow(id);
                let root = trace.spans.iter().position(|s| s.name == "root").unwrap();
                (trace, root)
            })
            .collect();
        let summary = summarize(&requests);
        assert_eq!(summary.total_ns, 800 * MS);
        let first = &summary.operations[0];
        assert_eq!(
            (first.name.as_str(), first.time_ns, first.requests),
            ("delay", 600 * MS, 2)
        );
        assert!((first.share(&summary) - 0.75).abs() < 1e-9);
        let shares: f64 = summary.operations.iter().map(|o| o.share(&summary)).sum();
        assert!((shares - 1.0).abs() < 1e-9);
        let text = render(&summary, 10);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("2 requests, 800.0 ms"), "{text}");
        assert!(lines[2].starts_with("svc  delay"), "{text}");
        assert!(lines[2].contains("75.0%"), "{text}");
        assert!(
            lines[2].ends_with(&"█".repeat(BAR_WIDTH * 3 / 4 + 1)),
            "{text}"
        );
    }

    #[test]
    fn the_request_of_a_service_is_its_topmost_span() {
        let mut inner = span("u", Some("r"), "GET /users/{id}", 10, 20);
        inner.service = "user-service".into();
        let trace = Trace::new("t".into(), vec![span("r", None, "root", 0, 50), inner]);
        assert_eq!(trace.spans[request_of(&trace, "svc").unwrap()].name, "root");
        assert_eq!(
            trace.spans[request_of(&trace, "user-service").unwrap()].name,
            "GET /users/{id}"
        );
        assert_eq!(request_of(&trace, "nobody"), None);
    }
}
