#[brisk_macros::task(save, impure)]
fn double(x: i32) -> i32 {
    2 * x
}

fn main() {}
