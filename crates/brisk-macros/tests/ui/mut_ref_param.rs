#[brisk_macros::task]
fn push(v: &mut Vec<i32>) -> usize {
    v.push(1);
    v.len()
}

fn main() {}
