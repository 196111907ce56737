//! `Trace`: optional per-layer shapes, timings and captured activations of a forward pass, for
//! `summary`, the benchmark and filter visualisation; off, it costs nothing.

use std::time::Instant;

use candle_core::Tensor;

/// Records each layer's output shape during a forward pass, for `perception_train summary`.
/// Off (the default for inference and training), `record` does nothing.
#[derive(Debug, Default)]
pub struct Trace {
    rows: Option<Vec<TraceRow>>,
    /// Module path of the sub-network being traced (`backbone` inside PoseNet).
    scope: Vec<String>,
    /// A layer whose output to keep (with its graph: filter visualisation differentiates it).
    capture: Option<(String, Option<Tensor>)>,
    /// Wall time of each layer: since the previous record (CPU ops run synchronously, so this
    /// is the layer's own time there; on CUDA it is launch time only).
    timing: Option<(Instant, Vec<(String, f64)>)>,
}

/// One layer: its display name, the module paths whose parameters it owns, its output shape.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceRow {
    pub name: String,
    pub modules: Vec<String>,
    pub shape: Vec<usize>,
}

impl Trace {
    pub fn off() -> Self {
        Self::default()
    }

    pub fn on() -> Self {
        Self {
            rows: Some(Vec::new()),
            ..Self::default()
        }
    }

    /// Records nothing but keeps the output of the layer named `layer` (as the rows of
    /// [`Trace::on`] name it), for [`Trace::captured`].
    pub fn capture(layer: &str) -> Self {
        Self {
            rows: None,
            scope: Vec::new(),
            capture: Some((layer.to_string(), None)),
            timing: None,
        }
    }

    /// Records each layer's wall time, from now on (for `perception_train bench --layers`).
    pub fn timed() -> Self {
        Self {
            timing: Some((Instant::now(), Vec::new())),
            ..Self::default()
        }
    }

    /// (layer, milliseconds) in execution order; empty unless [`Trace::timed`].
    pub fn layer_times_ms(&self) -> &[(String, f64)] {
        self.timing.as_ref().map_or(&[], |(_, rows)| rows)
    }

    /// The captured layer's output of the last forward pass, if that layer ran.
    pub fn captured(&self) -> Option<&Tensor> {
        self.capture.as_ref().and_then(|(_, t)| t.as_ref())
    }

    /// Names recorded until the matching [`Trace::exit`] are inside module `name`.
    pub fn enter(&mut self, name: &str) {
        self.scope.push(name.to_string());
    }

    pub fn exit(&mut self) {
        self.scope.pop();
    }

    fn scoped(&self, name: &str) -> String {
        self.scope
            .iter()
            .map(String::as_str)
            .chain([name])
            .collect::<Vec<_>>()
            .join(".")
    }

    /// Notes that the layer `name` (its PyTorch module path) produced `x`.
    pub fn record(&mut self, name: impl Into<String>, x: &Tensor) {
        let name = name.into();
        self.record_modules(&name, &[name.clone()], x);
    }

    /// Like [`Trace::record`] for a layer made of several modules (a convolution and the
    /// batch norm beside it).
    pub fn record_modules(&mut self, name: &str, modules: &[String], x: &Tensor) {
        if self.timing.is_some() {
            let scoped = self.scoped(name);
            if let Some((last, rows)) = &mut self.timing {
                let now = Instant::now();
                rows.push((scoped, (now - *last).as_secs_f64() * 1000.0));
                *last = now;
            }
        }
        if self.capture.is_some() {
            let scoped = self.scoped(name);
            if let Some((layer, slot)) = &mut self.capture {
                if *layer == scoped {
                    *slot = Some(x.clone());
                }
            }
        }
        if self.rows.is_none() {
            return;
        }
        let row = TraceRow {
            name: self.scoped(name),
            modules: modules.iter().map(|m| self.scoped(m)).collect(),
            shape: x.dims().to_vec(),
        };
        if let Some(rows) = &mut self.rows {
            rows.push(row);
        }
    }

    /// The layers in execution order; empty when off.
    pub fn rows(&self) -> &[TraceRow] {
        self.rows.as_deref().unwrap_or(&[])
    }
}
