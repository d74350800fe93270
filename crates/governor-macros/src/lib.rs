//! The `#[govern]` attribute. Use it through the `agent-governor` facade,
//! whose documentation describes every argument.

use proc_macro::TokenStream;

mod args;
mod expand;

/// Governs an `async fn`, or the selected async methods of an `impl`
/// block: every call is recorded, checked against policies, possibly
/// parked for approval, and audited. See `agent_governor::govern`.
#[proc_macro_attribute]
pub fn govern(attr: TokenStream, item: TokenStream) -> TokenStream {
    let args = match syn::parse::Parser::parse(args::GovernArgs::parse, attr) {
        Ok(a) => a,
        Err(e) => return e.to_compile_error().into(),
    };
    match expand::expand(&args, item.into()) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}
