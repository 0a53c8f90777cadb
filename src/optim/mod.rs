//! Optimizer algebra: `Optimizer<Filter, Base>` (see SPEC.md section 2).

pub mod select;

pub use select::{selection_count, Cut, TopK};
