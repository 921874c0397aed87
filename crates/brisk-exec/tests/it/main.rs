//! Integration tests of brisk-exec's executors.

mod sync;
