//! Experiments: the paper's synthetic study (Appendix B.5), its 2-D landscape
//! (Appendix B.4, Figure 3), and the forgetting experiments on the Llama model.

pub mod example1;
pub mod landscape;
pub mod synthetic;
