//! One module per subcommand.

pub mod bench;
pub mod choice;
pub mod classify;
pub mod convert;
pub mod fill_mask;
pub mod forward;
pub mod ner;
pub mod qa;
pub mod serve;
pub mod task_common;
pub mod tokenize;
pub mod zero_shot;
