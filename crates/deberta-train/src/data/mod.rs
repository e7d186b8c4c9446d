//! The training data formats (filled in by the data work).
