#[brisk_macros::task]
fn identity<T: Clone>(x: T) -> T {
    x
}

fn main() {}
