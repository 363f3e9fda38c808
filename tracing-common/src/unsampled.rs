//! Keeps the spans of unsampled traces away from the OpenTelemetry layer.
//!
//! The `tracing` bridge builds an OpenTelemetry span for every `tracing` span
//! it sees (a builder, its attributes, the sampler's call, the parent's
//! context) and only then learns that the SDK will drop it: an unsampled span
//! costs about three quarters of a sampled one. Here the sampling decision is
//! made once, where a trace enters the service ([`crate::spans::set_parent`]:
//! the server layer, the Kafka consumer, the outbox relay's publish, any span
//! given a parent from outside), with the configured sampler and its
//! parent-based semantics. A span the sampler drops keeps its context (trace
//! id, a span id of its own, the sampled flag off, the `tracestate`) and is
//! marked; every span opened below it is marked too and never reaches the
//! OpenTelemetry layer: no builder, no attributes, no sampler call.
//!
//! What the marked spans still need is their trace context, for propagation
//! (an unsampled request passes its trace id on with the flag off, so every
//! service downstream drops it too) and for log lines. [`context_of`] answers
//! that: for a marked span, the context of the unsampled span it is below; for
//! any other span, the bridge's context. Inject with it, never with
//! `OpenTelemetrySpanExt::context`, which knows nothing of the marked spans and
//! would return an empty context for them (a downstream service would then
//! start a new trace, which its ratio may sample: a split trace).
//!
//! Where the sampler's answer is known without asking it, the entry span
//! itself is spared the bridge too ([`KnownDrops`], [`crate::spans::with_parent`]):
//! under a parent-based sampler an unsampled parent means an unsampled span,
//! so a request that arrives with the flag off gets its context (the trace id
//! it came with, a span id of its own) and nothing else.
//!
//! This is what tracing-opentelemetry#15 asks for, done at entry points
//! instead of with a per-layer filter, which cannot see a span's remote parent
//! when it decides (the mistake apollographql/router#3103 and #4544 describe).

use std::any::TypeId;
use std::cell::RefCell;

use opentelemetry::Context;
use opentelemetry::trace::{SpanContext, TraceContextExt, TraceFlags, TraceState};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};
use tracing::span::{Attributes, Id, Record};
use tracing::{Dispatch, Event, Metadata, Subscriber};
use tracing_subscriber::layer::{self, Layer};
use tracing_subscriber::registry::{ExtensionsMut, LookupSpan, SpanRef};

/// On every span at or below an unsampled one (a zero-sized marker: setting it
/// allocates nothing).
struct Unsampled;

/// On the span where the sampler said no: its context.
struct UnsampledAt(Context);

/// Which entry spans the configured sampler drops whatever their name and
/// attributes, so that no OpenTelemetry span need be built to ask it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KnownDrops {
    /// An entry whose parent is valid and unsampled (parent-based samplers).
    pub unsampled_parent: bool,
    /// An entry without a parent (`always_off`, `parentbased_always_off`).
    pub root: bool,
}

impl KnownDrops {
    /// Nothing is known: every entry goes through the sampler.
    pub const NONE: Self = Self {
        unsampled_parent: false,
        root: false,
    };

    /// What `sampler` is known to drop. Samplers that are not parent-based
    /// (`always_on`, `traceidratio`, `jaeger_remote`) decide an unsampled
    /// parent's child by other means, so they are always asked.
    pub fn of(sampler: &crate::config::SamplerConfig) -> Self {
        use crate::config::SamplerConfig as S;
        match sampler {
            S::AlwaysOff | S::ParentBasedAlwaysOff => Self {
                unsampled_parent: true,
                root: true,
            },
            S::ParentBasedAlwaysOn | S::ParentBasedTraceIdRatio(_) => Self {
                unsampled_parent: true,
                root: false,
            },
            S::JaegerRemote(remote) => Self {
                unsampled_parent: remote.parent_based,
                root: false,
            },
            _ => Self::NONE,
        }
    }

    fn drops(self, parent: &Context) -> bool {
        let span = parent.span();
        let sc = span.span_context();
        if sc.is_valid() {
            self.unsampled_parent && !sc.is_sampled()
        } else {
            self.root
        }
    }
}

/// Wraps the OpenTelemetry layer (see the module documentation). Creating,
/// recording on and following from a marked span, and events inside one,
/// stop here; entering and leaving any span stop here (see `on_enter`): a
/// span ends when it closes.
#[derive(Debug)]
pub struct SkipUnsampled<L> {
    inner: L,
    access: Access,
    known: KnownDrops,
}

thread_local! {
    /// The parent of the entry span being opened by [`open_entry`] on this
    /// thread, until the layer takes it.
    static ENTRY: RefCell<Option<Context>> = const { RefCell::new(None) };
    /// Whether the layer marked that entry span without the bridge.
    static ENTRY_MARKED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Opens the span `make` returns as an entry with parent `parent`: if the
/// layer knows the sampler drops it ([`SkipUnsampled::knowing`]), the span is
/// marked with its own unsampled context and never reaches the bridge, and
/// this returns `true`; otherwise the caller sets the parent (and so decides).
pub(crate) fn open_entry(
    parent: &Context,
    make: impl FnOnce() -> tracing::Span,
) -> (tracing::Span, bool) {
    ENTRY.with(|e| *e.borrow_mut() = Some(parent.clone()));
    ENTRY_MARKED.with(|m| m.set(false));
    let span = make();
    ENTRY.with(|e| e.borrow_mut().take());
    (span, ENTRY_MARKED.with(|m| m.replace(false)))
}

/// The context of an unsampled span below `parent`: the trace id it came
/// with (a new one for a root), a span id of its own, the flag off, the
/// `tracestate` kept, as the SDK gives a span its sampler drops.
fn unsampled_child(parent: &Context) -> Context {
    let ids = RandomIdGenerator::default();
    let sc = parent.span().span_context().clone();
    let (trace_id, state) = if sc.is_valid() {
        (sc.trace_id(), sc.trace_state().clone())
    } else {
        (ids.new_trace_id(), TraceState::default())
    };
    parent.with_remote_span_context(SpanContext::new(
        trace_id,
        ids.new_span_id(),
        TraceFlags::default(),
        false,
        state,
    ))
}

/// Reaches the marks through the subscriber without knowing its type, the way
/// the bridge's own `OpenTelemetrySpanExt` reaches its data.
#[derive(Debug, Clone, Copy)]
struct Access {
    mark: fn(&Dispatch, &Id, Context),
    adopt: fn(&Dispatch, &Id, Context),
    context: fn(&Dispatch, &Id) -> Option<Context>,
}

impl<L> SkipUnsampled<L> {
    /// `inner` must need nothing when a span is entered or left (see
    /// `on_enter`).
    pub(crate) fn new<S>(inner: L) -> Self
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
        L: Layer<S>,
    {
        Self {
            inner,
            access: Access {
                mark: mark::<S>,
                adopt: adopt::<S>,
                context: unsampled_context::<S>,
            },
            known: KnownDrops::NONE,
        }
    }

    /// Entry spans the sampler is known to drop are marked without asking it
    /// (see [`KnownDrops::of`]). Without this, every entry is asked.
    pub fn knowing(mut self, known: KnownDrops) -> Self {
        self.known = known;
        self
    }
}

fn mark<S>(dispatch: &Dispatch, id: &Id, cx: Context)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    with_extensions::<S>(dispatch, id, |extensions| {
        extensions.replace(Unsampled);
        extensions.replace(UnsampledAt(cx));
    });
}

/// A span marked because it was opened below an unsampled one takes `cx`
/// (the unsampled context it was given, with its baggage) as its own.
fn adopt<S>(dispatch: &Dispatch, id: &Id, cx: Context)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    with_extensions::<S>(dispatch, id, |extensions| {
        if extensions.get_mut::<Unsampled>().is_some()
            && extensions.get_mut::<UnsampledAt>().is_none()
        {
            extensions.insert(UnsampledAt(cx));
        }
    });
}

fn with_extensions<S>(dispatch: &Dispatch, id: &Id, f: impl FnOnce(&mut ExtensionsMut<'_>))
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    if let Some(span) = dispatch
        .downcast_ref::<S>()
        .and_then(|subscriber| subscriber.span(id))
    {
        f(&mut span.extensions_mut());
    }
}

fn unsampled_context<S>(dispatch: &Dispatch, id: &Id) -> Option<Context>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let subscriber = dispatch.downcast_ref::<S>()?;
    let span = subscriber.span(id)?;
    span.extensions().get::<Unsampled>()?;
    // Marked: the nearest span at or above it where the sampler said no.
    span.scope()
        .find_map(|s| s.extensions().get::<UnsampledAt>().map(|at| at.0.clone()))
}

fn is_marked<S>(span: &SpanRef<'_, S>) -> bool
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    span.extensions().get::<Unsampled>().is_some()
}

impl<S, L> Layer<S> for SkipUnsampled<L>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    L: Layer<S>,
{
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        self.inner.on_register_dispatch(subscriber);
    }

    fn on_layer(&mut self, subscriber: &mut S) {
        self.inner.on_layer(subscriber);
    }

    fn register_callsite(
        &self,
        metadata: &'static Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        self.inner.register_callsite(metadata)
    }

    fn enabled(&self, metadata: &Metadata<'_>, ctx: layer::Context<'_, S>) -> bool {
        self.inner.enabled(metadata, ctx)
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: layer::Context<'_, S>) {
        if self.known != KnownDrops::NONE
            && let Some(parent) = ENTRY.with(|e| e.borrow_mut().take())
            && self.known.drops(&parent)
        {
            if let Some(span) = ctx.span(id) {
                let mut extensions = span.extensions_mut();
                extensions.insert(Unsampled);
                extensions.insert(UnsampledAt(unsampled_child(&parent)));
                ENTRY_MARKED.with(|m| m.set(true));
            }
            return;
        }
        let below_unsampled = if attrs.is_contextual() {
            ctx.lookup_current().as_ref().is_some_and(is_marked)
        } else {
            attrs
                .parent()
                .and_then(|p| ctx.span(p))
                .as_ref()
                .is_some_and(is_marked)
        };
        if below_unsampled {
            if let Some(span) = ctx.span(id) {
                span.extensions_mut().insert(Unsampled);
            }
            return;
        }
        self.inner.on_new_span(attrs, id, ctx);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: layer::Context<'_, S>) {
        if !ctx.span(id).as_ref().is_some_and(is_marked) {
            self.inner.on_record(id, values, ctx);
        }
    }

    fn on_follows_from(&self, id: &Id, follows: &Id, ctx: layer::Context<'_, S>) {
        if !ctx.span(id).as_ref().is_some_and(is_marked) {
            self.inner.on_follows_from(id, follows, ctx);
        }
    }

    fn event_enabled(&self, event: &Event<'_>, ctx: layer::Context<'_, S>) -> bool {
        self.inner.event_enabled(event, ctx)
    }

    fn on_event(&self, event: &Event<'_>, ctx: layer::Context<'_, S>) {
        // An event more verbose than anything the wrapped layer's filter
        // enables (another layer wanted it) is passed on without looking
        // its span up: the filter drops it.
        if self
            .inner
            .max_level_hint()
            .is_some_and(|max| *event.metadata().level() > max)
        {
            self.inner.on_event(event, ctx);
            return;
        }
        if !ctx.event_span(event).as_ref().is_some_and(is_marked) {
            self.inner.on_event(event, ctx);
        }
    }

    // Entering and leaving are not passed on; they happen on every poll of
    // every span. With context activation and busy/idle timings off (see
    // [`crate::telemetry::otel_layer`]), the bridge does nothing on entering
    // but its filter's span lookup, and on leaving it only looks the span up
    // again, takes its extensions' lock and, for a span it tracks, reads the
    // clock: it takes a span's last exit as its end. Without it a span ends
    // when it closes, as an OpenTelemetry span ends when `end` is called;
    // this stack's spans close as their work ends (an instrumented future
    // is dropped when it completes, a guard's span at the end of its scope).
    // Closing is passed on unchecked: a check would cost a lookup, and the
    // bridge does nothing for a span without its data (a marked span below
    // the entry has none; the entry's unsampled span ends as a no-op).
    fn on_enter(&self, _id: &Id, _ctx: layer::Context<'_, S>) {}

    fn on_exit(&self, _id: &Id, _ctx: layer::Context<'_, S>) {}

    fn on_close(&self, id: Id, ctx: layer::Context<'_, S>) {
        self.inner.on_close(id, ctx);
    }

    fn on_id_change(&self, old: &Id, new: &Id, ctx: layer::Context<'_, S>) {
        self.inner.on_id_change(old, new, ctx);
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        self.inner.max_level_hint()
    }

    // One of the workspace's two `unsafe` blocks (the other is
    // `logging::WithoutEnterExit`'s), and the pattern every wrapping layer
    // of tracing-subscriber has (`Layered`, `Filtered`, `Option<L>`): the
    // bridge's span methods (`set_parent`, `context`, `set_attribute`) find
    // its data by downcasting the subscriber, so the wrapper must answer for
    // the wrapped layer. The pointers returned point at `self` or its fields,
    // and have the type whose `TypeId` was asked for.
    #[allow(unsafe_code)]
    unsafe fn downcast_raw(&self, id: TypeId) -> Option<*const ()> {
        if id == TypeId::of::<Self>() {
            Some(self as *const Self as *const ())
        } else if id == TypeId::of::<Access>() {
            Some(&self.access as *const Access as *const ())
        } else {
            // SAFETY: forwarded to the wrapped layer, which keeps the same
            // contract for its own type ids.
            unsafe { self.inner.downcast_raw(id) }
        }
    }
}

/// The context to propagate from `span` and to read its ids from: for a span
/// at or below an unsampled one, that span's context (sampled flag off); for
/// any other, the OpenTelemetry layer's context of `span`. Empty without an
/// OpenTelemetry layer.
pub fn context_of(span: &tracing::Span) -> Context {
    if let Some(cx) = marked_context(span) {
        return cx;
    }
    tracing_opentelemetry::OpenTelemetrySpanExt::context(span)
}

/// [`context_of`] the current span (looked up by id: no `Span` handle is
/// cloned and dropped for it).
pub fn current_context() -> Context {
    tracing::dispatcher::get_default(|dispatch| {
        dispatch
            .current_span()
            .id()
            .and_then(|id| context_by_id(id, dispatch))
            .unwrap_or_default()
    })
}

/// [`context_of`] for a span known by id, in `dispatch`: `None` where there is
/// no trace context (no OpenTelemetry layer, or a span it filtered out).
pub fn context_by_id(id: &Id, dispatch: &Dispatch) -> Option<Context> {
    dispatch
        .downcast_ref::<Access>()
        .and_then(|access| (access.context)(dispatch, id))
        .or_else(|| tracing_opentelemetry::get_otel_context(id, dispatch))
}

/// The context of the unsampled span `span` is at or below, if it is marked.
fn marked_context(span: &tracing::Span) -> Option<Context> {
    span.with_subscriber(|(id, dispatch)| {
        dispatch
            .downcast_ref::<Access>()
            .and_then(|access| (access.context)(dispatch, id))
    })
    .flatten()
}

/// Makes the sampling decision for `span`, whose parent context has just been
/// set: the bridge starts the span (the sampler runs with the parent, the
/// span's name, kind and attributes); if it is not sampled, `span` is marked
/// and nothing below it reaches the OpenTelemetry layer. A span already
/// marked (opened below an unsampled one) takes `parent`, an unsampled
/// context, as what it propagates: the same trace with baggage added, say.
/// Does nothing without an OpenTelemetry layer.
pub(crate) fn decide(span: &tracing::Span, parent: Context) {
    span.with_subscriber(|(id, dispatch)| {
        let Some(access) = dispatch.downcast_ref::<Access>() else {
            return;
        };
        if (access.context)(dispatch, id).is_some() {
            if parent.span().span_context().is_valid() {
                (access.adopt)(dispatch, id, parent);
            }
            return;
        }
        let cx = tracing_opentelemetry::get_otel_context(id, dispatch);
        if let Some(cx) = cx
            && cx.span().span_context().is_valid()
            && !cx.span().span_context().is_sampled()
        {
            (access.mark)(dispatch, id, cx);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceFlags, TraceId, TraceState, TracerProvider as _,
    };
    use opentelemetry_sdk::trace::{InMemorySpanExporter, Sampler, SdkTracerProvider};
    use tracing_subscriber::layer::SubscriberExt;

    fn provider(exporter: &InMemorySpanExporter) -> SdkTracerProvider {
        SdkTracerProvider::builder()
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
            .with_simple_exporter(exporter.clone())
            .build()
    }

    fn remote(flags: TraceFlags) -> Context {
        Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            flags,
            true,
            TraceState::default(),
        ))
    }

    /// Whether the bridge holds data for `span` (built, or building, an
    /// OpenTelemetry span for it).
    fn bridged(span: &tracing::Span) -> bool {
        span.with_subscriber(|(id, dispatch)| {
            tracing_opentelemetry::get_otel_context(id, dispatch).is_some()
        })
        .unwrap_or(false)
    }

    /// Three levels below an entry span given `parent`; returns the context
    /// each level would propagate, then whether the bridge saw the entry, the
    /// child and the grandchild.
    fn entry_and_children(parent: Context) -> (Vec<Context>, [bool; 3]) {
        let entry = tracing::info_span!("entry", otel.kind = "server");
        crate::spans::set_parent(&entry, parent);
        let _e = entry.enter();
        let child = tracing::info_span!("child", n = 1_i64);
        let _c = child.enter();
        tracing::info!("an event");
        let grandchild = tracing::info_span!(parent: &child, "grandchild");
        grandchild.record("n", 2_i64);
        let seen = [bridged(&entry), bridged(&child), bridged(&grandchild)];
        let contexts = vec![
            context_of(&entry),
            context_of(&child),
            context_of(&grandchild),
            current_context(),
        ];
        (contexts, seen)
    }

    /// [`entry_and_children`] under the stack's OpenTelemetry layer.
    fn through_the_stack(
        provider: &SdkTracerProvider,
        parent: Context,
    ) -> (Vec<Context>, [bool; 3]) {
        let subscriber = tracing_subscriber::registry()
            .with(crate::telemetry::otel_layer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || entry_and_children(parent))
    }

    /// An entry opened with [`crate::spans::with_parent`] under a layer that
    /// knows `known`, a child given the entry's context plus baggage (as
    /// order-service gives its business spans), and a grandchild; returns the
    /// contexts of the three, and whether the bridge saw each.
    fn entry_knowing(
        provider: &SdkTracerProvider,
        known: KnownDrops,
        parent: Context,
    ) -> (Vec<Context>, [bool; 3]) {
        use opentelemetry::baggage::BaggageExt as _;
        let subscriber = tracing_subscriber::registry()
            .with(crate::telemetry::otel_layer(provider.tracer("test")).knowing(known));
        tracing::subscriber::with_default(subscriber, || {
            let entry = crate::spans::with_parent(parent, || {
                tracing::info_span!("entry", otel.kind = "server")
            });
            let _e = entry.enter();
            let with_baggage = context_of(&entry)
                .with_baggage(vec![opentelemetry::KeyValue::new("order.id", "o-1")]);
            let child = tracing::info_span!("child");
            crate::spans::set_parent(&child, with_baggage);
            let grandchild = tracing::info_span!(parent: &child, "grandchild");
            let seen = [bridged(&entry), bridged(&child), bridged(&grandchild)];
            (
                vec![
                    context_of(&entry),
                    context_of(&child),
                    context_of(&grandchild),
                ],
                seen,
            )
        })
    }

    fn order_id(cx: &Context) -> Option<String> {
        use opentelemetry::baggage::BaggageExt as _;
        cx.baggage().get("order.id").map(|v| v.to_string())
    }

    const PARENT_BASED: KnownDrops = KnownDrops {
        unsampled_parent: true,
        root: false,
    };

    #[test]
    fn a_known_drop_gives_the_entry_its_context_without_the_bridge() {
        let exporter = InMemorySpanExporter::default();
        let provider = provider(&exporter);
        let parent = remote(TraceFlags::default());
        let (contexts, seen) = entry_knowing(&provider, PARENT_BASED, parent.clone());
        provider.force_flush().unwrap();
        assert!(exporter.get_finished_spans().unwrap().is_empty());
        assert_eq!(seen, [false, false, false], "not even the entry was built");
        let entry = contexts[0].span().span_context().clone();
        let incoming = parent.span().span_context().clone();
        assert_eq!(entry.trace_id(), incoming.trace_id());
        assert_ne!(entry.span_id(), incoming.span_id(), "a span id of its own");
        assert!(entry.is_valid() && !entry.is_sampled() && !entry.is_remote());
        assert_eq!(entry.trace_state(), incoming.trace_state());
        // The child propagates the context it was given, baggage included,
        // and passes it on to the grandchild.
        for cx in &contexts[1..] {
            assert_eq!(cx.span().span_context(), &entry);
            assert_eq!(order_id(cx).as_deref(), Some("o-1"));
        }
    }

    #[test]
    fn below_an_unsampled_entry_the_sampler_decides_it_a_child_keeps_the_baggage_it_was_given() {
        let exporter = InMemorySpanExporter::default();
        let provider = provider(&exporter);
        let (contexts, seen) =
            entry_knowing(&provider, KnownDrops::NONE, remote(TraceFlags::default()));
        assert_eq!(seen, [true, false, false], "the sampler was asked");
        for cx in &contexts[1..] {
            assert_eq!(cx.span().span_context(), contexts[0].span().span_context());
            assert_eq!(order_id(cx).as_deref(), Some("o-1"));
        }
    }

    #[test]
    fn roots_and_sampled_parents_still_ask_a_parent_based_sampler() {
        let exporter = InMemorySpanExporter::default();
        let provider = provider(&exporter);
        for parent in [Context::new(), remote(TraceFlags::SAMPLED)] {
            let (contexts, seen) = entry_knowing(&provider, PARENT_BASED, parent);
            assert_eq!(seen, [true, true, true]);
            assert!(contexts[0].span().span_context().is_sampled());
        }
        provider.force_flush().unwrap();
        assert_eq!(exporter.get_finished_spans().unwrap().len(), 6);
    }

    #[test]
    fn always_off_marks_roots_too_with_a_new_trace_id() {
        let exporter = InMemorySpanExporter::default();
        let provider = provider(&exporter);
        let known = KnownDrops::of(&crate::config::SamplerConfig::AlwaysOff);
        let (contexts, seen) = entry_knowing(&provider, known, Context::new());
        assert_eq!(seen, [false, false, false]);
        let entry = contexts[0].span().span_context().clone();
        assert!(entry.is_valid() && !entry.is_sampled());
        provider.force_flush().unwrap();
        assert!(exporter.get_finished_spans().unwrap().is_empty());
    }

    #[test]
    fn only_parent_based_samplers_and_always_off_have_known_drops() {
        use crate::config::SamplerConfig as S;
        let of = |s: S| {
            let k = KnownDrops::of(&s);
            (k.unsampled_parent, k.root)
        };
        assert_eq!(of(S::AlwaysOn), (false, false));
        assert_eq!(of(S::TraceIdRatio(0.5)), (false, false));
        assert_eq!(of(S::AlwaysOff), (true, true));
        assert_eq!(of(S::ParentBasedAlwaysOn), (true, false));
        assert_eq!(of(S::ParentBasedTraceIdRatio(0.1)), (true, false));
        assert_eq!(of(S::ParentBasedAlwaysOff), (true, true));
    }

    #[test]
    fn below_an_unsampled_parent_nothing_is_built_and_the_trace_id_is_passed_on() {
        let exporter = InMemorySpanExporter::default();
        let provider = provider(&exporter);
        let (contexts, seen) = through_the_stack(&provider, remote(TraceFlags::default()));
        provider.force_flush().unwrap();
        assert!(exporter.get_finished_spans().unwrap().is_empty());
        // The entry span was started (the sampler ran on it); nothing below it
        // reached the bridge.
        assert_eq!(seen, [true, false, false]);
        let entry = contexts[0].span().span_context().clone();
        assert_eq!(
            entry.trace_id(),
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
        );
        assert_ne!(
            entry.span_id(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap()
        );
        assert!(!entry.is_sampled());
        assert!(!entry.is_remote());
        for cx in &contexts[1..] {
            assert_eq!(
                cx.span().span_context(),
                &entry,
                "below the entry: its context"
            );
        }
    }

    #[test]
    fn below_a_sampled_parent_every_span_is_exported_with_its_own_context() {
        let exporter = InMemorySpanExporter::default();
        let provider = provider(&exporter);
        let (contexts, seen) = through_the_stack(&provider, remote(TraceFlags::SAMPLED));
        assert_eq!(seen, [true, true, true]);
        provider.force_flush().unwrap();
        let spans = exporter.get_finished_spans().unwrap();
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
        assert_eq!(names, ["grandchild", "child", "entry"]);
        let by_name = |n: &str| spans.iter().find(|s| s.name == n).unwrap();
        assert_eq!(
            by_name("entry").parent_span_id,
            SpanId::from_hex("00f067aa0ba902b7").unwrap()
        );
        assert_eq!(
            by_name("child").parent_span_id,
            by_name("entry").span_context.span_id()
        );
        assert_eq!(
            by_name("grandchild").parent_span_id,
            by_name("child").span_context.span_id()
        );
        assert_eq!(by_name("child").events.len(), 1);
        assert_eq!(
            contexts[1].span().span_context(),
            &by_name("child").span_context
        );
        assert_eq!(
            contexts[2].span().span_context(),
            &by_name("grandchild").span_context
        );
    }

    #[test]
    fn a_span_ends_when_it_closes_not_at_its_last_exit() {
        let exporter = InMemorySpanExporter::default();
        let provider = provider(&exporter);
        let subscriber = tracing_subscriber::registry()
            .with(crate::telemetry::otel_layer(provider.tracer("test")));
        let after_exit = tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("held");
            span.in_scope(|| {});
            let after_exit = std::time::SystemTime::now();
            // Bounded: the clock moves on within microseconds.
            for _ in 0..1_000_000 {
                if std::time::SystemTime::now() > after_exit {
                    break;
                }
            }
            drop(span);
            after_exit
        });
        provider.force_flush().unwrap();
        let spans = exporter.get_finished_spans().unwrap();
        assert_eq!(spans.len(), 1);
        assert!(
            spans[0].end_time > after_exit,
            "the end is the close ({:?}), after the exit ({after_exit:?})",
            spans[0].end_time
        );
    }

    #[test]
    fn a_root_the_sampler_drops_is_marked_too() {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOff)))
            .with_simple_exporter(exporter.clone())
            .build();
        let (contexts, seen) = through_the_stack(&provider, Context::new());
        assert_eq!(seen, [true, false, false]);
        provider.force_flush().unwrap();
        assert!(exporter.get_finished_spans().unwrap().is_empty());
        let entry = contexts[0].span().span_context().clone();
        assert!(entry.is_valid() && !entry.is_sampled());
        assert_eq!(contexts[3].span().span_context(), &entry);
    }

    #[test]
    fn without_an_opentelemetry_layer_the_context_is_empty() {
        let subscriber = tracing_subscriber::registry();
        let (contexts, _) = tracing::subscriber::with_default(subscriber, || {
            entry_and_children(remote(TraceFlags::default()))
        });
        for cx in contexts {
            assert!(!cx.span().span_context().is_valid());
        }
    }
}
