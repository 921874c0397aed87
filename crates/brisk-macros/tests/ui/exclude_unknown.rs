#[brisk_macros::task(exclude(hndle))]
fn read(x: i32, handle: String) -> i32 {
    let _ = handle;
    x
}

fn main() {}
