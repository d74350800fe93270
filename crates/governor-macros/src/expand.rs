//! Code generation for `#[govern]`.

use proc_macro2::TokenStream;
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{
    Attribute, Block, Expr, FnArg, GenericArgument, ImplItem, Item, ItemImpl, LitBool, Pat,
    PathArguments, ReturnType, Signature, Type, Visibility,
};

use crate::args::GovernArgs;

pub(crate) fn expand(args: &GovernArgs, item: TokenStream) -> syn::Result<TokenStream> {
    match syn::parse2::<Item>(item)? {
        Item::Fn(f) => {
            if let Some((key, _)) = &args.methods {
                return Err(syn::Error::new(
                    key.span(),
                    "`methods` only applies to `impl` blocks",
                ));
            }
            let name = args
                .name
                .as_ref()
                .map_or_else(|| f.sig.ident.to_string(), |n| n.value());
            expand_fn(args, &f.attrs, &f.vis, &f.sig, &f.block, &name, false)
        }
        Item::Impl(imp) => expand_impl(args, imp),
        other => Err(syn::Error::new_spanned(
            other,
            "`#[govern]` applies to an `async fn` or an `impl` block",
        )),
    }
}

fn expand_impl(args: &GovernArgs, mut imp: ItemImpl) -> syn::Result<TokenStream> {
    let type_name = match &*imp.self_ty {
        Type::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()),
        _ => None,
    }
    .ok_or_else(|| {
        syn::Error::new_spanned(&imp.self_ty, "`#[govern]` needs an `impl` of a named type")
    })?;
    let prefix = args.name.as_ref().map_or(type_name, |n| n.value());
    let wanted = args.methods.as_ref().map(|(_, names)| names);
    if let Some(names) = wanted {
        for n in names {
            let found = imp
                .items
                .iter()
                .any(|i| matches!(i, ImplItem::Fn(f) if f.sig.ident == n.value()));
            if !found {
                return Err(syn::Error::new(
                    n.span(),
                    format!("no method `{}` in this impl", n.value()),
                ));
            }
        }
    }
    let mut items = Vec::with_capacity(imp.items.len());
    for item in std::mem::take(&mut imp.items) {
        let ImplItem::Fn(f) = item else {
            items.push(item);
            continue;
        };
        let selected = match wanted {
            Some(names) => names.iter().any(|n| f.sig.ident == n.value()),
            None => matches!(f.vis, Visibility::Public(_)) && f.sig.asyncness.is_some(),
        };
        if !selected {
            items.push(ImplItem::Fn(f));
            continue;
        }
        let name = format!("{prefix}.{}", f.sig.ident);
        let tokens = expand_fn(args, &f.attrs, &f.vis, &f.sig, &f.block, &name, true)?;
        items.push(ImplItem::Verbatim(tokens));
    }
    imp.items = items;
    Ok(imp.into_token_stream())
}

/// How the function's declared return type is handled.
enum Returns {
    /// `Result<T, E>`: kept as declared.
    Result(Type),
    /// Anything else: becomes `Result<T, GovernError>`.
    Plain(Type),
}

fn returns(sig: &Signature) -> Returns {
    let ty: Type = match &sig.output {
        ReturnType::Default => syn::parse_quote!(()),
        ReturnType::Type(_, ty) => (**ty).clone(),
    };
    let is_result = match &ty {
        Type::Path(p) => p.path.segments.last().is_some_and(|s| {
            s.ident == "Result"
                && matches!(&s.arguments, PathArguments::AngleBracketed(a)
                    if a.args.iter().any(|g| matches!(g, GenericArgument::Type(_))))
        }),
        _ => false,
    };
    if is_result {
        Returns::Result(ty)
    } else {
        Returns::Plain(ty)
    }
}

fn contains_impl_trait(ty: &Type) -> bool {
    ty.to_token_stream()
        .into_iter()
        .any(|t| t.to_string() == "impl")
}

fn expand_fn(
    args: &GovernArgs,
    attrs: &[Attribute],
    vis: &Visibility,
    sig: &Signature,
    block_orig: &Block,
    action_name: &str,
    in_impl: bool,
) -> syn::Result<TokenStream> {
    if sig.asyncness.is_none() {
        return Err(syn::Error::new(
            sig.fn_token.span,
            "`#[govern]` needs an `async fn`",
        ));
    }
    let krate = args
        .krate
        .as_ref()
        .map_or_else(|| quote!(::agent_governor), ToTokens::to_token_stream);
    let p = quote!(#krate::__private);

    let mut binds = Vec::new();
    let mut params = Vec::new();
    let mut bind_self = quote!();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(_) => {
                bind_self = quote! {
                    let __gov_args = {
                        #[allow(unused_imports)]
                        use #p::{RecordOpaque as _, RecordSerialize as _};
                        (&&#p::Rec(&*self)).bind_self(__gov_args)
                    };
                };
            }
            FnArg::Typed(pt) => match &*pt.pat {
                Pat::Ident(id) => {
                    let ident = &id.ident;
                    let name = ident.to_string();
                    let name = name.strip_prefix("r#").unwrap_or(&name);
                    binds.push(quote_spanned!(pt.ty.span()=> .arg(#name, &#ident)));
                    params.push((id.clone(), (*pt.ty).clone()));
                }
                other => {
                    return Err(syn::Error::new_spanned(
                        other,
                        "`#[govern]` binds arguments by name: use a plain parameter name, not a pattern",
                    ));
                }
            },
        }
    }

    let name = action_name;
    let gov = match (&args.governor, &args.store) {
        (Some(g), _) => quote!(let __b = __b.governor(#p::governor(#g));),
        (_, Some(s)) => quote!(let __b = __b.governor(#p::store_governor(#s)?);),
        _ => quote!(),
    };
    let policies = match &args.policies {
        Some(Expr::Array(list)) => {
            let items = list
                .elems
                .iter()
                .map(|e| quote_spanned!(e.span()=> #p::policy(#e)?));
            quote!(let __b = __b.policies([#(#items),*]);)
        }
        Some(other) => quote!(let __b = __b.policies(#p::policies(#other)?);),
        None => quote!(),
    };
    let pre = args
        .pre
        .iter()
        .flat_map(|a| a.elems.iter())
        .map(|h| quote!(let __b = __b.pre(#h);));
    let post = args
        .post
        .iter()
        .flat_map(|a| a.elems.iter())
        .map(|h| quote!(let __b = __b.post(#h);));
    let capture = args
        .capture_state
        .as_ref()
        .map(|b| quote!(let __b = __b.capture_state(#b);));
    let saved = args
        .on_state_saved
        .as_ref()
        .map(|f| quote!(let __b = __b.on_state_saved(#f);));
    let display = args
        .display
        .as_ref()
        .map(|d| quote!(let __b = __b.display(#d);));
    let context = args
        .context
        .as_ref()
        .map(|c| quote!(.maybe_principal(#p::caller(#c))));

    // A free function whose arguments are owned, named types is resumable:
    // its body moves into a sibling function that both the call and a
    // resume worker run.
    let wanted = args.resumable.as_ref().is_none_or(LitBool::value);
    let resumable = wanted
        && !in_impl
        && sig.generics.params.is_empty()
        && params.iter().all(|(_, t)| owned(t));
    let body_fn = format_ident!("__governor_body_{}", sig.ident);
    let inner_block: Block = if resumable {
        let idents = params.iter().map(|(id, _)| &id.ident);
        syn::parse_quote!({ #body_fn(#(#idents),*).await })
    } else {
        block_orig.clone()
    };
    let block = &inner_block;
    let (output_ty, body) = match returns(sig) {
        Returns::Result(ty) => {
            let body = if contains_impl_trait(&ty) {
                quote!(async move #block)
            } else {
                quote!(#p::typed::<#ty, _>(async move #block))
            };
            (ty, body)
        }
        Returns::Plain(ty) => {
            let inner = if contains_impl_trait(&ty) {
                quote!(async move #block)
            } else {
                quote!(#p::typed::<#ty, _>(async move #block))
            };
            let body = quote!(async move {
                ::core::result::Result::Ok::<#ty, #p::GovernError>(#inner.await)
            });
            (
                syn::parse_quote!(::core::result::Result<#ty, #p::GovernError>),
                body,
            )
        }
    };
    let mut new_sig = sig.clone();
    new_sig.output = syn::parse_quote!(-> #output_ty);
    if resumable {
        // The wrapper only records and forwards its arguments.
        for input in &mut new_sig.inputs {
            if let FnArg::Typed(pt) = input
                && let Pat::Ident(id) = &mut *pt.pat
            {
                id.mutability = None;
            }
        }
    }
    // The action is built once, in a sibling function, so policy
    // expressions cannot see (or be shadowed by) the call's arguments.
    let helper = format_ident!("__governor_action_{}", sig.ident);
    let helper_path = if in_impl {
        quote!(Self::#helper)
    } else {
        quote!(#helper)
    };

    let (resume, registration, body_item) = if resumable {
        resume_parts(&p, sig, block_orig, &params, &body, name)
    } else {
        (quote!(), quote!(), quote!())
    };

    Ok(quote! {
        #body_item
        #registration

        #[doc(hidden)]
        #[allow(non_snake_case, clippy::needless_question_mark)]
        fn #helper() -> ::core::result::Result<&'static #p::Action, #p::GovernError> {
            static CELL: ::std::sync::OnceLock<#p::Action> = ::std::sync::OnceLock::new();
            #p::action(&CELL, || {
                let __b = #p::builder(#name);
                #gov
                #policies
                #(#pre)*
                #(#post)*
                #capture
                #saved
                #display
                #resume
                __b.build()
            })
        }

        #(#attrs)*
        #vis #new_sig {
            let __gov_action = match #helper_path() {
                ::core::result::Result::Ok(a) => a,
                ::core::result::Result::Err(e) => return ::core::result::Result::Err(::core::convert::From::from(e)),
            };
            let __gov_args = __gov_action.args() #(#binds)*;
            #bind_self
            let __gov_call = #p::Call::new(__gov_args) #context;
            __gov_action
                .run_with(
                    __gov_call,
                    move || #body,
                    |__gov_out| {
                        #[allow(unused_imports)]
                        use #p::{RecordOpaque as _, RecordSerialize as _};
                        (&&#p::Rec(__gov_out)).record_output()
                    },
                    |__gov_err| {
                        #[allow(unused_imports)]
                        use #p::{RecordDebug as _, RecordDisplay as _};
                        (&&#p::Rec(__gov_err)).record_error()
                    },
                )
                .await
        }
    })
}

/// Whether a parameter type can be restored from stored arguments: no
/// borrowed or `impl` types (whether it is `Deserialize` is decided when
/// the action is built).
fn owned(ty: &Type) -> bool {
    let text = ty.to_token_stream().to_string();
    !text.contains('&')
        && !text.contains('\'')
        && !text
            .split(|c: char| !c.is_alphanumeric() && c != '_')
            .any(|word| matches!(word, "impl" | "dyn" | "Self"))
}

/// The parts that make a free `#[govern]` function resumable: the body as
/// its own function, the resume handler given to the builder, and the
/// link-time registration by name.
fn resume_parts(
    p: &TokenStream,
    sig: &Signature,
    block: &Block,
    params: &[(syn::PatIdent, Type)],
    body: &TokenStream,
    name: &str,
) -> (TokenStream, TokenStream, TokenStream) {
    let helper = format_ident!("__governor_action_{}", sig.ident);
    let body_fn = format_ident!("__governor_body_{}", sig.ident);
    let mut body_sig = sig.clone();
    body_sig.ident = body_fn.clone();
    // Every argument is recorded, so none is unused (as before the body
    // moved here).
    let idents = params.iter().map(|(id, _)| &id.ident);
    let body_item = quote! {
        #[doc(hidden)]
        #[allow(non_snake_case, clippy::too_many_arguments)]
        #body_sig {
            let _ = (#(&#idents,)*);
            #block
        }
    };
    let restores = params.iter().map(|(id, ty)| {
        let ident = &id.ident;
        let key = ident.to_string();
        let key = key.strip_prefix("r#").unwrap_or(&key).to_owned();
        quote! {
            let #ident: #ty = match (&&#p::Restore::<#ty>::new()).restore(&mut __gov_in, #key) {
                ::core::result::Result::Ok(v) => v,
                ::core::result::Result::Err(e) => return #p::resume_failed(e),
            };
        }
    });
    let checks = params
        .iter()
        .map(|(_, ty)| quote!(&& (&&#p::Restore::<#ty>::new()).restorable()));
    let resume = quote! {
        #[allow(unused_imports)]
        use #p::{RestoreNone as _, RestoreSerde as _};
        let __b = if true #(#checks)* {
            #p::resume_with(__b, |mut __gov_in: #p::Value| {
                #[allow(unused_imports)]
                use #p::{
                    RecordDebug as _, RecordDisplay as _, RecordOpaque as _, RecordSerialize as _,
                    RestoreNone as _, RestoreSerde as _,
                };
                #(#restores)*
                let __gov_body = async move {
                    match #body.await {
                        ::core::result::Result::Ok(__gov_out) => {
                            #p::resumed_output((&&#p::Rec(&__gov_out)).record_output())
                        }
                        ::core::result::Result::Err(__gov_err) => {
                            ::core::result::Result::Err((&&#p::Rec(&__gov_err)).record_error())
                        }
                    }
                };
                #p::resumable_body_must_be_send_or_use_resumable_false(__gov_body)
            })
        } else {
            __b
        };
    };
    let registration = quote! {
        #p::inventory::submit! {
            #p::Registration {
                name: #name,
                init: || #helper().map(|_| ()),
            }
        }
    };
    (resume, registration, body_item)
}
