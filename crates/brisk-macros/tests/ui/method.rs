struct S;

impl S {
    #[brisk_macros::task]
    fn get(&self) -> i32 {
        1
    }
}

fn main() {}
