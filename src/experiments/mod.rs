//! Experiments: the forgetting comparison of fine-tuning methods.

pub mod forgetting;
