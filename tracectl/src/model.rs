//! One span model for every source: the local OTLP receiver, Jaeger's v1
//! `/api/traces` JSON and its v3 OTLP JSON.

use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

impl Kind {
    /// From the OTLP enum (`SPAN_KIND_*`, 0 and out-of-range values are internal).
    pub fn from_otlp(value: i64) -> Self {
        match value {
            2 => Self::Server,
            3 => Self::Client,
            4 => Self::Producer,
            5 => Self::Consumer,
            _ => Self::Internal,
        }
    }

    /// From Jaeger's `span.kind` tag.
    pub fn from_tag(value: &str) -> Self {
        match value {
            "server" => Self::Server,
            "client" => Self::Client,
            "producer" => Self::Producer,
            "consumer" => Self::Consumer,
            _ => Self::Internal,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Internal => "INTERNAL",
            Self::Server => "SERVER",
            Self::Client => "CLIENT",
            Self::Producer => "PRODUCER",
            Self::Consumer => "CONSUMER",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    /// Lower-case hex, 32 characters.
    pub trace_id: String,
    /// Lower-case hex, 16 characters.
    pub span_id: String,
    pub parent_id: Option<String>,
    pub service: String,
    pub name: String,
    pub kind: Kind,
    pub start_ns: u64,
    pub duration_ns: u64,
    /// `error.type` (or the status message) when the span's status is ERROR.
    pub error: Option<String>,
    /// (trace id, span id) of linked spans, including Jaeger FOLLOWS_FROM references.
    pub links: Vec<(String, String)>,
    pub events: Vec<String>,
    /// (event name, key, value) of every event attribute, for scans; the
    /// waterfall shows event names only.
    pub event_attributes: Vec<(String, String, String)>,
    pub attributes: BTreeMap<String, String>,
    /// Keys of `attributes` whose value arrived as an integer (OTLP
    /// `intValue`, a Jaeger `int64` tag), so checks can tell `200` from `"200"`.
    pub integers: BTreeSet<String>,
}

impl Span {
    /// A span of service `svc`, kind INTERNAL, with these ids, name and
    /// times and nothing else: what the unit tests build traces from.
    #[cfg(test)]
    pub(crate) fn sketch(
        id: &str,
        parent: Option<&str>,
        name: &str,
        start_ns: u64,
        duration_ns: u64,
    ) -> Span {
        Span {
            trace_id: "t".into(),
            span_id: id.into(),
            parent_id: parent.map(str::to_owned),
            service: "svc".into(),
            name: name.into(),
            kind: Kind::Internal,
            start_ns,
            duration_ns,
            error: None,
            links: vec![],
            events: vec![],
            event_attributes: Vec::new(),
            integers: Default::default(),
            attributes: Default::default(),
        }
    }

    pub fn end_ns(&self) -> u64 {
        self.start_ns.saturating_add(self.duration_ns)
    }

    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// The spans of one trace, arranged as a tree for display and checks.
#[derive(Debug, Clone)]
pub struct Trace {
    pub trace_id: String,
    pub spans: Vec<Span>,
    /// What is wrong with the trace as received: duplicate span ids,
    /// missing parents. [`crate::check::problems`] counts these.
    pub warnings: Vec<String>,
    /// What the backend said about its spans (Jaeger's warnings, such as its
    /// clock-skew adjuster's): shown, not counted as problems.
    pub notes: Vec<String>,
}

impl Trace {
    /// Groups `spans` by trace id; traces ordered by first start.
    pub fn group(spans: Vec<Span>) -> Vec<Trace> {
        let mut by_id: BTreeMap<String, Vec<Span>> = BTreeMap::new();
        for span in spans {
            by_id.entry(span.trace_id.clone()).or_default().push(span);
        }
        let mut traces: Vec<Trace> = by_id
            .into_iter()
            .map(|(trace_id, spans)| Trace::new(trace_id, spans))
            .collect();
        traces.sort_by_key(|t| t.start_ns());
        traces
    }

    pub fn new(trace_id: String, mut spans: Vec<Span>) -> Self {
        spans.sort_by(|a, b| a.start_ns.cmp(&b.start_ns).then(a.name.cmp(&b.name)));
        let mut warnings = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for span in &spans {
            if !seen.insert(span.span_id.clone()) {
                warnings.push(format!("duplicate span id {}", span.span_id));
            }
        }
        for span in &spans {
            if let Some(parent) = &span.parent_id
                && !spans.iter().any(|s| &s.span_id == parent)
            {
                warnings.push(format!(
                    "span {} ({}) has parent {parent}, not in this trace (yet)",
                    span.span_id, span.name
                ));
            }
        }
        Self {
            trace_id,
            spans,
            warnings,
            notes: Vec::new(),
        }
    }

    pub fn start_ns(&self) -> u64 {
        self.spans.iter().map(|s| s.start_ns).min().unwrap_or(0)
    }

    pub fn end_ns(&self) -> u64 {
        self.spans.iter().map(Span::end_ns).max().unwrap_or(0)
    }

    pub fn duration_ns(&self) -> u64 {
        self.end_ns().saturating_sub(self.start_ns())
    }

    pub fn services(&self) -> Vec<&str> {
        let mut services: Vec<&str> = self.spans.iter().map(|s| s.service.as_str()).collect();
        services.sort_unstable();
        services.dedup();
        services
    }

    pub fn by_id(&self, span_id: &str) -> Option<&Span> {
        self.spans.iter().find(|s| s.span_id == span_id)
    }

    pub fn parent_of(&self, span: &Span) -> Option<&Span> {
        span.parent_id.as_deref().and_then(|p| self.by_id(p))
    }

    /// Spans in display order (depth first, children by start time) with
    /// their depth. Spans whose parent is missing are shown as roots; each
    /// span appears once even when ids repeat or parents form a cycle.
    pub fn tree(&self) -> Vec<(usize, &Span)> {
        let mut out = Vec::with_capacity(self.spans.len());
        let mut shown = vec![false; self.spans.len()];
        let is_root = |s: &Span| self.parent_of(s).is_none();
        let mut stack: Vec<(usize, usize)> = self
            .spans
            .iter()
            .enumerate()
            .filter(|(_, s)| is_root(s))
            .map(|(i, _)| (i, 0))
            .rev()
            .collect();
        loop {
            while let Some((index, depth)) = stack.pop() {
                if shown[index] {
                    continue;
                }
                shown[index] = true;
                out.push((depth, &self.spans[index]));
                let id = &self.spans[index].span_id;
                let children: Vec<usize> = self
                    .spans
                    .iter()
                    .enumerate()
                    .filter(|(i, s)| !shown[*i] && s.parent_id.as_ref() == Some(id))
                    .map(|(i, _)| i)
                    .collect();
                stack.extend(children.into_iter().rev().map(|i| (i, depth + 1)));
            }
            // Whatever is left sits in a parent cycle: show it as a root.
            match shown.iter().position(|s| !s) {
                Some(index) => stack.push((index, 0)),
                None => break,
            }
        }
        out
    }
}
