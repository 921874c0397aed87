#[derive(Clone)]
struct Opaque;

#[brisk_macros::task(save)]
fn make(x: i32) -> Opaque {
    let _ = x;
    Opaque
}

fn main() {}
