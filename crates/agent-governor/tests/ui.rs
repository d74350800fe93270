//! Compile-fail tests: `#[govern]` misuse is a compile error that points
//! at the user's code.

#[test]
fn govern_misuse_is_a_compile_error() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
