//! The kubernetes target, as far as it goes yet: a group rendered as the
//! Kubernetes objects it becomes ([`objects`]), pure functions of the typed
//! model and the shared rendered configuration. Applying them, observing
//! the pods (through exec on the API server) and converging are not
//! written yet, so this is not a `GroupTarget` yet: a plan with
//! `target = "kubernetes"` validates and then says so (see `ha/mod.rs`).

pub mod objects;

pub use objects::render;
