//! One module per subcommand.

pub mod bench;
pub mod choice;
pub mod classify;
pub mod convert;
pub mod fill_mask;
pub mod forward;
pub mod kernel_env;
pub mod ner;
pub mod qa;
pub mod task_common;
pub mod tokenize;
pub mod zero_shot;
