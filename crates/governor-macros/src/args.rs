//! Parsing `#[govern(key = value, ...)]`.

use syn::ext::IdentExt;
use syn::parse::ParseStream;
use syn::{Expr, ExprArray, Ident, LitBool, LitStr, Path, Token};

/// The attribute's arguments.
#[derive(Default)]
pub(crate) struct GovernArgs {
    pub(crate) policies: Option<Expr>,
    pub(crate) pre: Option<ExprArray>,
    pub(crate) post: Option<ExprArray>,
    pub(crate) capture_state: Option<LitBool>,
    pub(crate) governor: Option<Expr>,
    pub(crate) store: Option<Expr>,
    pub(crate) name: Option<LitStr>,
    pub(crate) context: Option<Expr>,
    pub(crate) on_state_saved: Option<Expr>,
    pub(crate) methods: Option<(Ident, Vec<LitStr>)>,
    pub(crate) krate: Option<Path>,
    pub(crate) resumable: Option<LitBool>,
    pub(crate) display: Option<Expr>,
}

const KEYS: &str = "policies, pre, post, capture_state, governor, store, name, context, on_state_saved, methods, resumable, display, crate";

impl GovernArgs {
    pub(crate) fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut args = GovernArgs::default();
        while !input.is_empty() {
            let key = Ident::parse_any(input)?;
            input.parse::<Token![=]>()?;
            let dup = || syn::Error::new(key.span(), format!("`{key}` is given twice"));
            match key.to_string().as_str() {
                "policies" => set(&mut args.policies, input.parse()?, dup)?,
                "pre" => set(&mut args.pre, input.parse()?, dup)?,
                "post" => set(&mut args.post, input.parse()?, dup)?,
                "capture_state" => set(&mut args.capture_state, input.parse()?, dup)?,
                "governor" => set(&mut args.governor, input.parse()?, dup)?,
                "store" => set(&mut args.store, input.parse()?, dup)?,
                "name" => set(&mut args.name, input.parse()?, dup)?,
                "context" => set(&mut args.context, input.parse()?, dup)?,
                "on_state_saved" => set(&mut args.on_state_saved, input.parse()?, dup)?,
                "crate" => set(&mut args.krate, input.parse()?, dup)?,
                "resumable" => set(&mut args.resumable, input.parse()?, dup)?,
                "display" => set(&mut args.display, input.parse()?, dup)?,
                "methods" => {
                    let list: ExprArray = input.parse()?;
                    let names = list
                        .elems
                        .iter()
                        .map(|e| match e {
                            Expr::Lit(syn::ExprLit {
                                lit: syn::Lit::Str(s),
                                ..
                            }) => Ok(s.clone()),
                            other => Err(syn::Error::new_spanned(
                                other,
                                "`methods` lists method names as strings",
                            )),
                        })
                        .collect::<syn::Result<Vec<_>>>()?;
                    set(&mut args.methods, (key.clone(), names), dup)?;
                }
                other => {
                    return Err(syn::Error::new(
                        key.span(),
                        format!("unknown `#[govern]` argument `{other}` (expected one of: {KEYS})"),
                    ));
                }
            }
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        if args.governor.is_some() && args.store.is_some() {
            return Err(input.error("give either `governor` or `store`, not both"));
        }
        Ok(args)
    }
}

fn set<T>(slot: &mut Option<T>, value: T, dup: impl FnOnce() -> syn::Error) -> syn::Result<()> {
    if slot.is_some() {
        return Err(dup());
    }
    *slot = Some(value);
    Ok(())
}
