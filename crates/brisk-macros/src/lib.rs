//! `#[task]`: turns a plain function into a lazy Brisk task.
//!
//! ```
//! use brisk_macros::task;
//! use brisk_exec::Compute;
//!
//! /// Doubles a number.
//! #[task]
//! fn double(x: i64) -> i64 {
//!     2 * x
//! }
//!
//! let a = double(21);            // nothing runs yet: `a` is a `Delayed<i64>`
//! let b = double(a.clone());     // arguments are values or lazy values of the parameter type
//! assert!(a.key().to_string().starts_with("double/"));
//! assert_eq!(a.key(), double(21).key()); // pure: equal inputs, equal keys
//! assert_eq!(b.compute().unwrap(), 84);
//! ```
//!
//! What the attribute generates, for `fn f(a: A, b: &B) -> R`:
//!
//! - `fn f(a: impl IntoArg<A>, b: impl IntoArg<B>) -> Delayed<R>` with the same visibility;
//!   each argument is a value (tokenized into the key) or a `Delayed` (whose key is chained).
//!   A `&B` parameter takes a `B` (the body borrows it); `&[T]` takes a `Vec<T>` and `&str` a
//!   `String`.
//! - A function returning `Result<T, E>` (the last path segment is `Result`) becomes a fallible
//!   task returning `Delayed<T>`; an `Err` fails the compute, naming the task's key.
//! - The task is **pure** (content-addressed). Its task name is the function's path
//!   (`module_path!()::f`), its key prefix the bare name `f`, and its key covers the version
//!   given with `version = "…"` and a BLAKE3 hash of the function's normalized source tokens:
//!   editing the body or signature changes its keys (and so invalidates its checkpoints), while
//!   reformatting or editing comments and doc comments does not.
//! - The task is registered by its name in `brisk_graph::registry`.
//! - Its `TaskSpec` is built once, on the first call, and shared by every call (the options
//!   are literals and paths, so they cannot differ between calls).
//!
//! Key options: `#[task(key_prefix = "double-")]` (or `key_prefix = path::to::f` with
//! `f(&str) -> impl Into<String>` given the bare name), `#[task(hasher = path::to::f)]` (a
//! custom key from the arguments, see `TaskSpec::hasher`), `#[task(exclude(handle))]` (an
//! argument that does not enter the key), `#[task(uses = [helper, ...])]` (the key also covers
//! the source of these functions, each marked `#[helper]`: a task's own source hash does not
//! see the code it calls).
//!
//! Options: `#[task(version = "2")]`, `#[task(save)]` (checkpointable: the result type must be
//! `Serialize + DeserializeOwned`), `#[task(impure)]` (fresh key per call), `#[task(retries = 3)]`,
//! `#[task(crate = path)]` (where `brisk-graph` is, when it cannot be found from `Cargo.toml`).
//!
//! Generic, `async`, `const`, `unsafe` and `extern` functions, methods (`self`), parameters
//! that are patterns, `impl Trait` or `&mut` types, and more than 8 parameters are rejected
//! with a compile error that says so.
#![forbid(unsafe_code)]

use proc_macro::TokenStream;
use proc_macro2::{Delimiter, Span, TokenStream as TokenStream2, TokenTree};
use quote::{ToTokens, format_ident, quote};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{FnArg, GenericArgument, ItemFn, Pat, PathArguments, ReturnType, Token, Type};

/// Turns a function into a lazy, content-addressed, registered task. See the crate docs.
#[proc_macro_attribute]
pub fn task(attr: TokenStream, item: TokenStream) -> TokenStream {
    match expand(attr.into(), item.into()) {
        Ok(ts) => ts.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

#[derive(Default)]
struct Options {
    version: Option<syn::LitStr>,
    save: bool,
    impure: bool,
    retries: Option<syn::LitInt>,
    krate: Option<syn::Path>,
    key_prefix: Option<KeyPrefix>,
    hasher: Option<syn::Path>,
    exclude: Vec<syn::Ident>,
    uses: Vec<syn::Path>,
}

enum KeyPrefix {
    Text(syn::LitStr),
    Func(syn::Path),
}

enum Opt {
    KeyPrefix(KeyPrefix),
    Hasher(syn::Path),
    Exclude(Vec<syn::Ident>),
    Version(syn::LitStr),
    Save,
    Impure,
    Retries(syn::LitInt),
    Crate(syn::Path),
    Uses(Vec<syn::Path>),
}

impl Parse for Opt {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.peek(Token![crate]) {
            input.parse::<Token![crate]>()?;
            input.parse::<Token![=]>()?;
            return Ok(Self::Crate(input.parse()?));
        }
        let ident: syn::Ident = input.parse()?;
        match ident.to_string().as_str() {
            "version" => {
                input.parse::<Token![=]>()?;
                Ok(Self::Version(input.parse()?))
            }
            "save" => Ok(Self::Save),
            "key_prefix" => {
                input.parse::<Token![=]>()?;
                if input.peek(syn::LitStr) {
                    Ok(Self::KeyPrefix(KeyPrefix::Text(input.parse()?)))
                } else {
                    Ok(Self::KeyPrefix(KeyPrefix::Func(input.parse()?)))
                }
            }
            "hasher" => {
                input.parse::<Token![=]>()?;
                Ok(Self::Hasher(input.parse()?))
            }
            "exclude" => {
                let content;
                syn::parenthesized!(content in input);
                let names = Punctuated::<syn::Ident, Token![,]>::parse_terminated(&content)?;
                Ok(Self::Exclude(names.into_iter().collect()))
            }
            "impure" => Ok(Self::Impure),
            "pure" => Err(syn::Error::new(
                ident.span(),
                "tasks are pure by default; remove `pure` (or use `impure`)",
            )),
            "retries" => {
                input.parse::<Token![=]>()?;
                Ok(Self::Retries(input.parse()?))
            }
            "uses" => {
                input.parse::<Token![=]>()?;
                let content;
                syn::bracketed!(content in input);
                let paths = Punctuated::<syn::Path, Token![,]>::parse_terminated(&content)?;
                Ok(Self::Uses(paths.into_iter().collect()))
            }
            other => Err(syn::Error::new(
                ident.span(),
                format!(
                    "unknown #[task] option `{other}`; expected `version = \"...\"`, `save`, \
                     `impure`, `retries = N`, `key_prefix = \"...\"` (or a function of the \
                     name), `hasher = path`, `exclude(arg, ...)`, `uses = [helper, ...]` or \
                     `crate = path`"
                ),
            )),
        }
    }
}

fn parse_options(attr: TokenStream2) -> syn::Result<Options> {
    let parsed = syn::parse::Parser::parse2(Punctuated::<Opt, Token![,]>::parse_terminated, attr)?;
    let mut o = Options::default();
    for opt in parsed {
        match opt {
            Opt::Version(v) => o.version = Some(v),
            Opt::Save => o.save = true,
            Opt::Impure => o.impure = true,
            Opt::Retries(r) => o.retries = Some(r),
            Opt::Crate(p) => o.krate = Some(p),
            Opt::KeyPrefix(k) => o.key_prefix = Some(k),
            Opt::Hasher(h) => o.hasher = Some(h),
            Opt::Exclude(e) => o.exclude.extend(e),
            Opt::Uses(u) => o.uses.extend(u),
        }
    }
    if o.save && o.impure {
        return Err(syn::Error::new(
            Span::call_site(),
            "`save` needs a pure task: an impure task's key changes on every call, so its \
             checkpoint could never be found again",
        ));
    }
    Ok(o)
}

/// Where `brisk-graph` is, as seen from the crate being compiled.
fn graph_path(opts: &Options) -> syn::Result<TokenStream2> {
    use proc_macro_crate::{FoundCrate, crate_name};
    if let Some(p) = &opts.krate {
        return Ok(p.to_token_stream());
    }
    match crate_name("brisk-graph") {
        Ok(FoundCrate::Itself) => return Ok(quote!(::brisk_graph)),
        Ok(FoundCrate::Name(n)) => {
            let id = format_ident!("{}", n);
            return Ok(quote!(::#id));
        }
        Err(_) => {}
    }
    match crate_name("brisk") {
        Ok(FoundCrate::Itself) => Ok(quote!(::brisk::graph)),
        Ok(FoundCrate::Name(n)) => {
            let id = format_ident!("{}", n);
            Ok(quote!(::#id::graph))
        }
        Err(_) => Err(syn::Error::new(
            Span::call_site(),
            "#[task] needs `brisk` or `brisk-graph` as a dependency (or `#[task(crate = path)]`)",
        )),
    }
}

/// `path::to::helper` → `path::to::__brisk_source_helper`, the function `#[helper]` generates.
fn helper_source_fn(path: &syn::Path) -> syn::Path {
    let mut p = path.clone();
    if let Some(last) = p.segments.last_mut() {
        last.ident = format_ident!("__brisk_source_{}", last.ident);
        last.arguments = PathArguments::None;
    }
    p
}

/// Marks a function that `#[task(uses = [...])]` functions call, so that their keys cover
/// its source: editing its body or signature changes the keys of every task that declares it
/// (comments and formatting do not). `#[helper(uses = [other])]` covers the helpers it calls
/// in turn. The function itself is left as it is.
///
/// ```
/// use brisk_macros::{helper, task};
///
/// #[helper]
/// fn calibrate(x: f64) -> f64 {
///     x * 1.02 - 0.5
/// }
///
/// #[task(uses = [calibrate])]
/// fn energy(raw: f64) -> f64 {
///     calibrate(raw) * 2.0
/// }
///
/// assert!(energy(3.0).key().to_string().starts_with("energy/"));
/// ```
#[proc_macro_attribute]
pub fn helper(attr: TokenStream, item: TokenStream) -> TokenStream {
    match expand_helper(attr.into(), item.into()) {
        Ok(ts) => ts.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn expand_helper(attr: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    let opts = parse_options(attr)?;
    if opts.version.is_some()
        || opts.save
        || opts.impure
        || opts.retries.is_some()
        || opts.key_prefix.is_some()
        || opts.hasher.is_some()
        || !opts.exclude.is_empty()
    {
        return Err(syn::Error::new(
            Span::call_site(),
            "#[helper] takes only `uses = [...]` (and `crate = path`)",
        ));
    }
    let func: ItemFn = syn::parse2(item)?;
    let hash = source_hash(&func);
    let vis = &func.vis;
    let source_fn = format_ident!("__brisk_source_{}", func.sig.ident);
    let body = if opts.uses.is_empty() {
        quote!([#(#hash),*])
    } else {
        let g = graph_path(&opts)?;
        let used = opts.uses.iter().map(|p| {
            let f = helper_source_fn(p);
            quote!(#f())
        });
        quote!(#g::__private::combine_sources([#(#hash),*], &[#(#used),*]))
    };
    Ok(quote! {
        #func

        /// The source hash of the helper (and the helpers it uses), for `#[task(uses = ...)]`.
        #[doc(hidden)]
        #vis fn #source_fn() -> [u8; 16] {
            #body
        }
    })
}

/// BLAKE3 over the function's tokens in a canonical form: identifiers, punctuation (with its
/// spacing), literals as written and group delimiters. Whitespace and comments are not tokens;
/// doc comments (`#[doc]` attributes) are skipped.
fn source_hash(func: &ItemFn) -> [u8; 16] {
    let mut h = blake3::Hasher::new();
    h.update(b"brisk.task-source.v1");
    for attr in &func.attrs {
        if !attr.path().is_ident("doc") {
            feed(&mut h, attr.to_token_stream());
        }
    }
    feed(&mut h, func.vis.to_token_stream());
    feed(&mut h, func.sig.to_token_stream());
    feed(&mut h, func.block.to_token_stream());
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.finalize().as_bytes()[..16]);
    out
}

fn feed(h: &mut blake3::Hasher, ts: TokenStream2) {
    for tt in ts {
        match tt {
            TokenTree::Ident(i) => {
                let s = i.to_string();
                h.update(b"i");
                h.update(&(s.len() as u64).to_le_bytes());
                h.update(s.as_bytes());
            }
            TokenTree::Punct(p) => {
                h.update(b"p");
                let mut buf = [0u8; 4];
                h.update(p.as_char().encode_utf8(&mut buf).as_bytes());
                h.update(if p.spacing() == proc_macro2::Spacing::Joint {
                    b"j"
                } else {
                    b"a"
                });
            }
            TokenTree::Literal(l) => {
                let s = l.to_string();
                h.update(b"l");
                h.update(&(s.len() as u64).to_le_bytes());
                h.update(s.as_bytes());
            }
            TokenTree::Group(g) => {
                h.update(match g.delimiter() {
                    Delimiter::Parenthesis => b"(",
                    Delimiter::Brace => b"{",
                    Delimiter::Bracket => b"[",
                    Delimiter::None => b"_",
                });
                feed(h, g.stream());
                h.update(b"e");
            }
        }
    }
}

struct Param {
    ident: syn::Ident,
    /// The type the task receives (the referent for `&T` parameters).
    owned: Type,
    by_ref: bool,
}

fn check_signature(func: &ItemFn) -> syn::Result<Vec<Param>> {
    let sig = &func.sig;
    let reject = |span: Span, what: &str| {
        Err(syn::Error::new(
            span,
            format!("#[task] does not support {what}"),
        ))
    };
    if let Some(t) = &sig.asyncness {
        return reject(t.span(), "async functions");
    }
    if let Some(t) = &sig.constness {
        return reject(t.span(), "const functions");
    }
    if let Some(t) = &sig.unsafety {
        return reject(t.span(), "unsafe functions");
    }
    if let Some(t) = &sig.abi {
        return reject(t.span(), "extern functions");
    }
    if let Some(t) = &sig.variadic {
        return reject(t.span(), "variadic functions");
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return reject(
            sig.generics.span(),
            "generic functions: task keys and the task registry need one concrete signature",
        );
    }
    if let ReturnType::Type(_, ty) = &sig.output
        && matches!(**ty, Type::ImplTrait(_))
    {
        return reject(ty.span(), "`impl Trait` return types");
    }
    if sig.inputs.len() > 8 {
        return reject(sig.inputs.span(), "more than 8 parameters");
    }
    let mut params = Vec::new();
    for arg in &sig.inputs {
        let pt = match arg {
            FnArg::Receiver(r) => return reject(r.span(), "methods (`self` parameters)"),
            FnArg::Typed(pt) => pt,
        };
        let ident = match &*pt.pat {
            Pat::Ident(pi) if pi.subpat.is_none() && pi.by_ref.is_none() => pi.ident.clone(),
            other => {
                return reject(
                    other.span(),
                    "patterns as parameters; bind the argument to a name and destructure it in \
                     the body",
                );
            }
        };
        let (owned, by_ref) = match &*pt.ty {
            Type::ImplTrait(t) => return reject(t.span(), "`impl Trait` parameters"),
            Type::Reference(r) if r.mutability.is_some() => {
                return reject(
                    r.span(),
                    "`&mut` parameters: tasks must not mutate their inputs",
                );
            }
            Type::Reference(r) => (owned_referent(&r.elem), true),
            t => (t.clone(), false),
        };
        params.push(Param {
            ident,
            owned,
            by_ref,
        });
    }
    Ok(params)
}

/// The owned type a `&T` parameter is computed as: `&[T]` → `Vec<T>`, `&str` → `String`,
/// `&T` → `T` otherwise.
fn owned_referent(elem: &Type) -> Type {
    match elem {
        Type::Slice(s) => {
            let t = &s.elem;
            syn::parse_quote!(::std::vec::Vec<#t>)
        }
        Type::Path(p) if p.qself.is_none() && p.path.is_ident("str") => {
            syn::parse_quote!(::std::string::String)
        }
        other => other.clone(),
    }
}

/// For `Result<T, …>` (last segment named `Result`), `Some(T)`.
fn result_ok_type(ty: &Type) -> syn::Result<Option<Type>> {
    let Type::Path(tp) = ty else {
        return Ok(None);
    };
    let Some(last) = tp.path.segments.last() else {
        return Ok(None);
    };
    if last.ident != "Result" {
        return Ok(None);
    }
    if let PathArguments::AngleBracketed(args) = &last.arguments
        && let Some(GenericArgument::Type(t)) = args.args.first()
    {
        return Ok(Some(t.clone()));
    }
    Err(syn::Error::new(
        ty.span(),
        "#[task] cannot see the `Ok` type of this `Result`; write it as `Result<T, E>` or \
         `Result<T>`",
    ))
}

fn expand(attr: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    let opts = parse_options(attr)?;
    let func: ItemFn = syn::parse2(item)?;
    let params = check_signature(&func)?;
    let g = graph_path(&opts)?;
    let hash = source_hash(&func);
    let hash_bytes: Vec<_> = hash.iter().map(|b| quote!(#b)).collect();

    let name = &func.sig.ident;
    let name_str = name.to_string();
    let vis = &func.vis;
    let outer_attrs: Vec<_> = func
        .attrs
        .iter()
        .filter(|a| {
            a.path().is_ident("doc")
                || a.path().is_ident("allow")
                || a.path().is_ident("deprecated")
        })
        .collect();
    let body_attrs: Vec<_> = func
        .attrs
        .iter()
        .filter(|a| !a.path().is_ident("doc") && !a.path().is_ident("deprecated"))
        .collect();

    let ret_ty: Type = match &func.sig.output {
        ReturnType::Default => syn::parse_quote!(()),
        ReturnType::Type(_, t) => (**t).clone(),
    };
    let ok_ty = result_ok_type(&ret_ty)?;
    let value_ty = ok_ty.clone().unwrap_or_else(|| ret_ty.clone());

    // The body lives at module level so the registry's invoker can call it too.
    let inner = format_ident!("__brisk_task_body_{}", func.sig.ident);
    let mut inner_sig = func.sig.clone();
    inner_sig.ident = inner.clone();
    let block = &func.block;

    let outer_params = params.iter().map(|p| {
        let id = &p.ident;
        let ty = &p.owned;
        quote!(#id: impl #g::IntoArg<#ty>)
    });
    let closure_params = params.iter().map(|p| {
        let id = &p.ident;
        let ty = &p.owned;
        quote!(#id: #ty)
    });
    let call_args = params.iter().map(|p| {
        let id = &p.ident;
        if p.by_ref { quote!(&#id) } else { quote!(#id) }
    });
    let arg_idents = params.iter().map(|p| &p.ident);
    let arity = params.len();

    let version_expr = match &opts.version {
        Some(v) => quote!(.version(#v)),
        None => quote!(),
    };
    let version_opt = match &opts.version {
        Some(v) => quote!(::core::option::Option::Some(#v)),
        None => quote!(::core::option::Option::None),
    };
    let purity = if opts.impure {
        quote!(.impure())
    } else {
        quote!(.pure())
    };
    let retries = match &opts.retries {
        Some(r) => quote!(.retries(#r)),
        None => quote!(),
    };
    let call = if ok_ty.is_some() {
        quote!(try_call)
    } else {
        quote!(call)
    };
    for ex in &opts.exclude {
        if !params.iter().any(|p| p.ident == *ex) {
            let names: Vec<String> = params.iter().map(|p| p.ident.to_string()).collect();
            return Err(syn::Error::new(
                ex.span(),
                format!("`exclude({ex})`: `{name_str}` has no parameter `{ex}` (it has {names:?})"),
            ));
        }
    }
    let arg_names = params.iter().map(|p| p.ident.to_string());
    let excludes = opts.exclude.iter().map(|e| {
        let e = e.to_string();
        quote!(.exclude(#e))
    });
    let key_prefix = match &opts.key_prefix {
        None => quote!(.key_prefix(#name_str)),
        Some(KeyPrefix::Text(t)) => quote!(.key_prefix(#t)),
        Some(KeyPrefix::Func(f)) => quote!(.key_prefix(::std::string::String::from(#f(#name_str)))),
    };
    let hasher = match &opts.hasher {
        Some(h) => quote!(.hasher(#h)),
        None => quote!(),
    };
    // The key covers the helpers the task declares it uses (their source hashes, combined at
    // run time); without `uses` the source hash is the function's own, as before.
    let source_expr = if opts.uses.is_empty() {
        quote!([#(#hash_bytes),*])
    } else {
        let used = opts.uses.iter().map(|p| {
            let f = helper_source_fn(p);
            quote!(#f())
        });
        quote!(#g::__private::combine_sources([#(#hash_bytes),*], &[#(#used),*]))
    };
    let task_source_fn = format_ident!("__brisk_task_source_{}", func.sig.ident);
    let save = opts.save;
    let checkpoint = if save {
        quote!(.checkpointed::<#value_ty>())
    } else {
        quote!()
    };

    let owned_tys: Vec<&Type> = params.iter().map(|p| &p.owned).collect();
    let closure_params2 = closure_params.clone();
    let call_args2 = call_args.clone();
    let into_value = if ok_ty.is_some() {
        quote!(let r = r.map_err(::core::convert::Into::<#g::BoxError>::into)?;)
    } else {
        quote!()
    };

    // Types that borrow (`&'static str`) cannot be decoded from a store; the probe cannot
    // reject them (lifetime errors are not candidate rejections), so they are left out here.
    let borrows = |t: &Type| {
        let text = quote!(#t).to_string();
        text.contains('&') || text.contains('\'')
    };
    let invoker_fn = if borrows(&value_ty) || owned_tys.iter().any(|t| borrows(t)) {
        quote! {
            fn invoker() -> ::core::option::Option<#g::registry::Invoker> {
                let _ = call;
                ::core::option::Option::None
            }
        }
    } else {
        quote! {
            fn invoker() -> ::core::option::Option<#g::registry::Invoker> {
                #[allow(unused_imports, reason = "one of the two probe traits applies")]
                use #g::registry::__probe::{NoSerde as _, Probe, Serde as _};
                ::core::option::Option::Some(#g::registry::Invoker::new(
                    ::std::vec![#((&Probe::<#owned_tys>::new()).spec()?),*],
                    (&Probe::<#value_ty>::new()).spec()?,
                    call,
                ))
            }
        }
    };

    Ok(quote! {
        #(#body_attrs)*
        #[doc(hidden)]
        #[allow(clippy::needless_pass_by_value, reason = "the task body as written")]
        #[allow(clippy::too_many_arguments, reason = "the task's own signature")]
        #inner_sig #block

        #(#outer_attrs)*
        #[allow(clippy::too_many_arguments, reason = "mirrors the task's own signature")]
        #vis fn #name(#(#outer_params),*) -> #g::Delayed<#value_ty> {
            // Built on the first call (every option is a literal or a path), shared by all.
            static SPEC: ::std::sync::LazyLock<#g::TaskSpec> = ::std::sync::LazyLock::new(|| {
                #g::TaskSpec::new(::core::concat!(::core::module_path!(), "::", #name_str))
                    #key_prefix
                    .arg_names(&[#(#arg_names),*])
                    #(#excludes)*
                    #hasher
                    #purity
                    #version_expr
                    .source_hash(#source_expr)
                    #retries
                    #checkpoint
            });
            SPEC.#call(|#(#closure_params),*| #inner(#(#call_args),*), (#(#arg_idents,)*))
        }

        /// The source hash this task's keys cover (its own, with its helpers').
        #[doc(hidden)]
        #[allow(dead_code, reason = "for tests and tools")]
        #vis fn #task_source_fn() -> [u8; 16] {
            #source_expr
        }

        const _: () = {
            fn call(args: ::std::vec::Vec<#g::Value>) -> ::core::result::Result<#g::Value, #g::BoxError> {
                let f = |#(#closure_params2),*| #inner(#(#call_args2),*);
                let r = <_ as #g::TaskFn<(#(#owned_tys,)*)>>::call_erased(&f, args)?;
                #into_value
                ::core::result::Result::Ok(::std::sync::Arc::new(r) as #g::Value)
            }

            #invoker_fn

            #g::__private::inventory::submit! {
                #g::registry::TaskEntry::new(
                    ::core::concat!(::core::module_path!(), "::", #name_str),
                    #name_str,
                    #version_opt,
                    [#(#hash),*],
                    #arity,
                    #save,
                    invoker,
                )
            }
        };
    })
}
