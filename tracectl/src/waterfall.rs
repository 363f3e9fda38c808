//! A trace as a terminal waterfall: one line per span with its start offset,
//! duration, its own time on the request's critical path (blank when the
//! request did not wait on it; [`crate::critical`]), service, kind and name
//! (indented by depth) and a bar on a shared time axis. Errors and Kafka hops
//! are marked at the end of the line.

use std::fmt::Write as _;

use crate::model::{Kind, Trace};

/// Width of the timeline column in characters.
pub const BAR_WIDTH: usize = 40;

fn millis(ns: u64) -> String {
    let ms = ns as f64 / 1e6;
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

fn bar(start: u64, duration: u64, trace_start: u64, trace_duration: u64) -> String {
    let total = trace_duration.max(1) as f64;
    let from = (((start.saturating_sub(trace_start)) as f64 / total) * BAR_WIDTH as f64) as usize;
    let from = from.min(BAR_WIDTH - 1);
    let len = ((duration as f64 / total) * BAR_WIDTH as f64).round() as usize;
    let len = len.clamp(1, BAR_WIDTH - from);
    format!(
        "{}{}{}",
        " ".repeat(from),
        "█".repeat(len),
        " ".repeat(BAR_WIDTH - from - len)
    )
}

/// Renders `trace`; plain text, no colour codes, so it reads the same in a
/// terminal, a log file or an issue comment.
pub fn render(trace: &Trace) -> String {
    let start = trace.start_ns();
    let duration = trace.duration_ns();
    let errors = trace.spans.iter().filter(|s| s.error.is_some()).count();
    let tree = trace.tree();
    let critical = tree
        .first()
        .and_then(|(_, root)| trace.spans.iter().position(|s| std::ptr::eq(s, *root)))
        .map(|root| crate::critical::time_per_span(trace, root))
        .unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "trace {}  {} spans  {} services  {}{}",
        trace.trace_id,
        trace.spans.len(),
        trace.services().len(),
        millis(duration),
        if errors > 0 {
            format!("  {errors} with errors")
        } else {
            String::new()
        }
    );
    let name_width = tree
        .iter()
        .map(|(depth, s)| depth * 2 + s.name.chars().count())
        .max()
        .unwrap_or(0)
        .min(60);
    let service_width = trace
        .services()
        .iter()
        .map(|s| s.chars().count())
        .max()
        .unwrap_or(7);
    let _ = writeln!(
        out,
        "{:>9} {:>9} {:>9}  {:<service_width$}  {:<8}  {:<name_width$}  |{:<BAR_WIDTH$}|",
        "start", "duration", "critical", "service", "kind", "span", "timeline"
    );
    for (depth, span) in tree {
        let on_path = trace
            .spans
            .iter()
            .position(|s| std::ptr::eq(s, span))
            .and_then(|i| critical.get(i).copied())
            .filter(|ns| *ns > 0)
            .map(millis)
            .unwrap_or_default();
        let mut name = format!("{}{}", "  ".repeat(depth), span.name);
        if name.chars().count() > name_width {
            name = name.chars().take(name_width - 1).collect::<String>() + "…";
        }
        let mut notes = Vec::new();
        if let Some(error) = &span.error {
            notes.push(format!("✗ {error}"));
        }
        match span.kind {
            Kind::Producer => {
                if let Some(topic) = span.attr("messaging.destination.name") {
                    notes.push(format!("→ kafka {topic}"));
                }
            }
            Kind::Consumer => {
                let linked = span
                    .links
                    .iter()
                    .filter(|(t, _)| t == &trace.trace_id)
                    .count();
                let topic = span.attr("messaging.destination.name").unwrap_or("?");
                notes.push(if linked > 0 {
                    format!("← kafka {topic} (linked to producer)")
                } else {
                    format!("← kafka {topic}")
                });
            }
            _ => {}
        }
        if span.parent_id.is_none() && !span.links.is_empty() && span.kind == Kind::Server {
            notes.push("↖ linked to caller's trace".into());
        }
        let _ = writeln!(
            out,
            "{:>9} {:>9} {:>9}  {:<service_width$}  {:<8}  {:<name_width$}  |{}|{}",
            millis(span.start_ns.saturating_sub(start)),
            millis(span.duration_ns),
            on_path,
            span.service,
            span.kind.label(),
            name,
            bar(span.start_ns, span.duration_ns, start, duration),
            if notes.is_empty() {
                String::new()
            } else {
                format!(" {}", notes.join("  "))
            }
        );
    }
    for warning in &trace.warnings {
        let _ = writeln!(out, "  warning: {warning}");
    }
    for note in &trace.notes {
        let _ = writeln!(out, "  backend note: {note}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Span;

    fn span(id: &str, parent: Option<&str>, name: &str, start: u64, dur: u64) -> Span {
        Span::sketch(id, parent, name, start, dur)
    }

    #[test]
    fn children_are_indented_under_their_parent_and_bars_follow_time() {
        let mut child = span("b", Some("a"), "child", 50_000_000, 50_000_000);
        child.error = Some("timeout".into());
        let trace = Trace::new(
            "t".into(),
            vec![child, span("a", None, "root", 0, 100_000_000)],
        );
        let text = render(&trace);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("trace t  2 spans  1 services  100 ms  1 with errors"));
        assert!(lines[2].contains("root") && lines[2].contains(&"█".repeat(BAR_WIDTH)));
        assert!(lines[3].contains("  child"), "{}", lines[3]);
        assert!(lines[3].contains("✗ timeout"));
        // The root waited 50 ms on itself, then 50 ms on its child.
        assert!(lines[1].contains("critical"), "{}", lines[1]);
        assert!(lines[2].contains("100 ms   50.0 ms  svc"), "{}", lines[2]);
        assert!(
            lines[3].contains("50.0 ms   50.0 ms   50.0 ms  svc"),
            "{}",
            lines[3]
        );
        let bar_start = lines[3].find('|').unwrap();
        let bar: String = lines[3][bar_start + 1..].chars().take(BAR_WIDTH).collect();
        assert_eq!(bar.chars().position(|c| c == '█'), Some(BAR_WIDTH / 2));
    }

    #[test]
    fn cycles_and_orphans_are_each_shown_once() {
        let trace = Trace::new(
            "t".into(),
            vec![
                span("a", Some("b"), "one", 0, 1),
                span("b", Some("a"), "two", 1, 1),
                span("c", Some("missing"), "orphan", 2, 1),
            ],
        );
        assert_eq!(trace.tree().len(), 3);
        assert!(trace.warnings.iter().any(|w| w.contains("missing")));
        assert_eq!(render(&trace).lines().count(), 2 + 3 + 1);
    }
}
