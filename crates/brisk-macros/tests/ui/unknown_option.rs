#[brisk_macros::task(cache)]
fn double(x: i32) -> i32 {
    2 * x
}

fn main() {}
