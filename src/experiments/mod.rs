//! Experiments: the paper's synthetic study (Appendix B.5), its 2-D landscape
//! (Appendix B.4, Figure 3), Example 1, and the forgetting comparison of
//! fine-tuning methods on the Llama model.

pub mod example1;
pub mod forgetting;
pub mod landscape;
pub mod synthetic;
