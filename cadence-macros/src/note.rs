//! `#[note]`: a function over `&mut S` becomes a `const` `Note<S>` (NOTE-1, NOTE-2, NOTE-6,
//! NOTE-8).
//!
//! The function itself moves, unchanged, into a block inside the const's initializer, next to a
//! small adapter with the exact signature of `cadence_core::note::AsyncFnPtr<S>` (or
//! `BlockingFnPtr<S>`). The adapter boxes the call into a `NoteFuture`, which is
//! `Send`: that coercion is where a non-`Send` future is reported, at the user's function.

use std::time::Duration;

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Attribute, Expr, ExprLit, FnArg, Ident, ItemFn, Lit, LitStr, Token, Type};

/// The option keys, in the order error messages list them.
const KEYS: &str = "name, retry, timeout, deadline, crate";

/// The shapes a `#[note]` function may have, for error messages.
const SHAPES: &str = "`(score: &mut S)` or `(score: &mut S, cx: &NoteContext<'_>)`";

/// Expands `#[note(attr)] item`. Never fails: problems become `compile_error!`s.
pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();

    let options = match syn::parse2::<RawOptions>(attr) {
        Ok(raw) => Options::check(raw, &mut errors),
        Err(e) => {
            errors.push(e);
            Options::default()
        }
    };

    let func = match syn::parse2::<ItemFn>(item.clone()) {
        Ok(func) => func,
        Err(_) => {
            errors.push(syn::Error::new(
                Span::call_site(),
                format!(
                    "#[note] applies to functions: an `async fn` (or a plain `fn` for a \
                     blocking note) taking {SHAPES}"
                ),
            ));
            // Keep the item so that nothing else breaks because of it.
            let errors = errors.into_compile_errors();
            return quote! { #errors #item };
        }
    };

    let shape = check_signature(&func, &mut errors);
    let errors = errors.into_compile_errors();
    match shape {
        // Option errors alone still produce the const (with those options left out), so uses of
        // the note do not pile further errors on top.
        Some(shape) => {
            let note = generate(func, shape, &options);
            quote! { #errors #note }
        }
        // The function is still compiled, out of the way, so that its body's own errors show up
        // now and its imports do not look unused. A `self` receiver cannot compile outside an
        // impl, so that one is dropped.
        None if !matches!(func.sig.inputs.first(), Some(FnArg::Receiver(_))) => {
            let ItemFn { sig, block, .. } = func;
            quote! {
                #errors
                const _: () = {
                    #[allow(dead_code, unused)]
                    #sig #block
                };
            }
        }
        None => errors,
    }
}

/// Accumulates errors so that one expansion reports all of them.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, e: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
    }

    fn into_compile_errors(self) -> TokenStream {
        self.0.map(|e| e.to_compile_error()).unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------

/// `key`, `key = value` or `key(...)`, before any checking.
struct RawOption {
    /// Any identifier, keywords included (`crate`).
    key: Ident,
    value: RawValue,
}

enum RawValue {
    None,
    Expr(Expr),
    /// `key(...)`: never valid, kept for a precise error.
    List(proc_macro2::Group),
}

impl Parse for RawOption {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let key = Ident::parse_any(input).map_err(|e| {
            syn::Error::new(
                e.span(),
                format!("expected a #[note] option, one of: {KEYS} (e.g. `retry = 3`)"),
            )
        })?;
        let value = if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            RawValue::Expr(input.parse()?)
        } else if input.peek(syn::token::Paren)
            || input.peek(syn::token::Bracket)
            || input.peek(syn::token::Brace)
        {
            RawValue::List(input.parse()?)
        } else {
            RawValue::None
        };
        Ok(RawOption { key, value })
    }
}

struct RawOptions(Punctuated<RawOption, Token![,]>);

impl Parse for RawOptions {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        Punctuated::parse_terminated(input).map(RawOptions)
    }
}

/// The checked options.
#[derive(Default)]
struct Options {
    name: Option<String>,
    retry: Option<u32>,
    timeout: Option<Duration>,
    deadline: Option<Duration>,
    krate: Option<syn::Path>,
}

impl Options {
    fn check(raw: RawOptions, errors: &mut Errors) -> Options {
        let mut out = Options::default();
        let mut seen: Vec<String> = Vec::new();
        for opt in raw.0 {
            let key = opt.key.unraw().to_string();
            let whole = option_span(&opt);
            if !KEYS.split(", ").any(|k| k == key) {
                errors.push(syn::Error::new(
                    opt.key.span(),
                    format!("unknown #[note] option `{key}`; expected one of: {KEYS}"),
                ));
                continue;
            }
            if seen.contains(&key) {
                errors.push(syn::Error::new_spanned(
                    whole,
                    format!("duplicate #[note] option `{key}`; set each option at most once"),
                ));
                continue;
            }
            seen.push(key.clone());
            let value = match opt.value {
                RawValue::Expr(e) => e,
                RawValue::None => {
                    errors.push(syn::Error::new(
                        opt.key.span(),
                        format!("#[note] option `{key}` needs a value: {}", example(&key)),
                    ));
                    continue;
                }
                RawValue::List(g) => {
                    errors.push(syn::Error::new_spanned(
                        quote!(#g),
                        format!(
                            "#[note] option `{key}` is written with `=`: {}",
                            example(&key)
                        ),
                    ));
                    continue;
                }
            };
            let checked = match key.as_str() {
                "name" => check_name(&value).map(|n| out.name = Some(n)),
                "retry" => check_retry(&value).map(|n| out.retry = Some(n)),
                "timeout" => check_duration("timeout", &value).map(|d| out.timeout = Some(d)),
                "deadline" => check_duration("deadline", &value).map(|d| out.deadline = Some(d)),
                "crate" => check_crate(&value).map(|p| out.krate = Some(p)),
                _ => unreachable!("keys are checked above"),
            };
            if let Err(e) = checked {
                errors.push(e);
            }
        }
        out
    }
}

/// The tokens of a whole option, for spans covering `key = value`.
fn option_span(opt: &RawOption) -> TokenStream {
    let key = &opt.key;
    match &opt.value {
        RawValue::None => quote!(#key),
        RawValue::Expr(e) => quote!(#key = #e),
        RawValue::List(g) => quote!(#key #g),
    }
}

fn example(key: &str) -> &'static str {
    match key {
        "name" => "`name = \"charge\"`",
        "retry" => "`retry = 3`",
        "timeout" => "`timeout = \"5s\"`",
        "deadline" => "`deadline = \"2m\"`",
        _ => "`crate = \"::my_reexport::cadence_core\"`",
    }
}

fn string_literal<'a>(key: &str, value: &'a Expr) -> syn::Result<&'a LitStr> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Ok(s),
        _ => Err(syn::Error::new_spanned(
            value,
            format!(
                "#[note] option `{key}` expects a string literal: {}",
                example(key)
            ),
        )),
    }
}

/// NOTE-2 and GEN-1: a non-empty name without `/` or control characters.
fn check_name(value: &Expr) -> syn::Result<String> {
    let lit = string_literal("name", value)?;
    let name = lit.value();
    let problem = if name.is_empty() {
        Some("must not be empty")
    } else if name.contains('/') {
        Some("must not contain `/` (it separates path segments)")
    } else if name.chars().any(char::is_control) {
        Some("must not contain control characters")
    } else {
        None
    };
    match problem {
        Some(p) => Err(syn::Error::new(
            lit.span(),
            format!("#[note] option `name` {p}"),
        )),
        None => Ok(name),
    }
}

fn check_retry(value: &Expr) -> syn::Result<u32> {
    let lit = match value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) => i,
        _ => {
            return Err(syn::Error::new_spanned(
                value,
                "#[note] option `retry` expects an integer literal, the number of attempts: \
                 `retry = 3`",
            ));
        }
    };
    let n: u32 = lit.base10_parse().map_err(|e| {
        syn::Error::new(
            lit.span(),
            format!("#[note] option `retry` expects a whole number of attempts (u32): {e}"),
        )
    })?;
    if n == 0 {
        return Err(syn::Error::new(
            lit.span(),
            "#[note] option `retry` must be at least 1: it counts attempts, the first included",
        ));
    }
    Ok(n)
}

fn check_duration(key: &str, value: &Expr) -> syn::Result<Duration> {
    let lit = string_literal(key, value)?;
    let d = humantime::parse_duration(&lit.value()).map_err(|e| {
        syn::Error::new(
            lit.span(),
            format!(
                "#[note] option `{key}` expects a duration such as \"250ms\", \"5s\" or \
                 \"2m\": {e}"
            ),
        )
    })?;
    if d.is_zero() {
        return Err(syn::Error::new(
            lit.span(),
            format!("#[note] option `{key}` must be greater than zero"),
        ));
    }
    Ok(d)
}

fn check_crate(value: &Expr) -> syn::Result<syn::Path> {
    let lit = string_literal("crate", value)?;
    lit.parse_with(syn::Path::parse_mod_style).map_err(|e| {
        syn::Error::new(
            lit.span(),
            format!(
                "#[note] option `crate` expects a path to cadence_core, such as \
                 \"::my_reexport::cadence_core\": {e}"
            ),
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Signature
// ---------------------------------------------------------------------------------------------

/// What the generated code needs to know about a valid signature.
struct Shape {
    /// `S`, the pointee of the first parameter.
    score: Type,
    /// Whether the function takes the context.
    context: bool,
}

/// Checks the function against NOTE-1; `None` if the const cannot be generated.
fn check_signature(func: &ItemFn, errors: &mut Errors) -> Option<Shape> {
    let sig = &func.sig;
    let mut ok = true;
    let mut fail = |e: syn::Error| {
        errors.push(e);
        ok = false;
    };

    if let Some(c) = &sig.constness {
        fail(syn::Error::new(
            c.span,
            "#[note] cannot be used on a `const fn`; remove `const`",
        ));
    }
    if let Some(u) = &sig.unsafety {
        fail(syn::Error::new(
            u.span,
            "#[note] cannot be used on an `unsafe fn`: the engine calls notes as safe \
             functions; use an `unsafe` block inside instead",
        ));
    }
    if let Some(abi) = &sig.abi {
        fail(syn::Error::new_spanned(
            abi,
            "#[note] cannot be used on an `extern` fn; remove the ABI",
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        let tokens = match &sig.generics.where_clause {
            Some(w) if sig.generics.params.is_empty() => w.to_token_stream(),
            _ => sig.generics.to_token_stream(),
        };
        fail(syn::Error::new_spanned(
            tokens,
            "#[note] functions cannot be generic: the note is a `const` item, and const items \
             can't be generic; use note::from_fn for generic notes",
        ));
    }
    if let Some(v) = &sig.variadic {
        fail(syn::Error::new_spanned(
            v,
            format!("#[note] functions cannot be variadic; a note takes {SHAPES}"),
        ));
    }

    let mut params = sig.inputs.iter();
    let mut score = None;
    match params.next() {
        None => fail(syn::Error::new(
            sig.paren_token.span.join(),
            format!("a #[note] function takes the score: {SHAPES}; this one takes nothing"),
        )),
        Some(FnArg::Receiver(r)) => fail(syn::Error::new_spanned(
            r,
            format!(
                "a #[note] function cannot take `self`: it becomes a `const` value; take the \
                 score instead: {SHAPES}"
            ),
        )),
        Some(FnArg::Typed(p)) => match &*p.ty {
            Type::Reference(r) if r.mutability.is_some() => {
                if let Type::ImplTrait(t) = &*r.elem {
                    fail(syn::Error::new_spanned(
                        t,
                        "#[note] functions cannot be generic: `impl Trait` in a parameter is a \
                         generic parameter, and the note is a `const` item; use note::from_fn \
                         for generic notes",
                    ))
                } else {
                    score = Some((*r.elem).clone());
                }
            }
            other => fail(syn::Error::new_spanned(
                other,
                format!(
                    "the first parameter of a #[note] function must be the score as `&mut S`; \
                     a note takes {SHAPES}"
                ),
            )),
        },
    }

    let mut context = false;
    if let Some(second) = params.next() {
        context = true;
        let is_shared_ref = match second {
            FnArg::Typed(p) => matches!(&*p.ty, Type::Reference(r) if r.mutability.is_none()),
            FnArg::Receiver(_) => false,
        };
        if !is_shared_ref {
            let ty: &dyn ToTokens = match second {
                FnArg::Typed(p) => &p.ty,
                FnArg::Receiver(r) => r,
            };
            fail(syn::Error::new_spanned(
                ty,
                format!(
                    "the second parameter of a #[note] function must be the context as \
                     `&NoteContext<'_>`; a note takes {SHAPES}"
                ),
            ));
        }
    }

    let extra: Vec<&FnArg> = params.collect();
    if let (Some(first), Some(last)) = (extra.first(), extra.last()) {
        fail(syn::Error::new_spanned(
            quote!(#first #last),
            format!(
                "a #[note] function takes at most two parameters, {SHAPES}; this one takes {}",
                sig.inputs.len()
            ),
        ));
    }

    match (ok, score) {
        (true, Some(score)) => Some(Shape { score, context }),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Code generation
// ---------------------------------------------------------------------------------------------

/// Whether an attribute belongs on the generated const (docs, cfg, lint levels, deprecation)
/// rather than on the function, which keeps everything else (`#[tracing::instrument]`,
/// `#[inline]`, ...).
fn is_const_attr(attr: &Attribute) -> bool {
    const CONST_ATTRS: &[&str] = &[
        "doc",
        "cfg",
        "cfg_attr",
        "allow",
        "warn",
        "deny",
        "forbid",
        "expect",
        "deprecated",
    ];
    attr.path()
        .get_ident()
        .is_some_and(|i| CONST_ATTRS.iter().any(|a| i == a))
}

/// `tokens` with every span set to `span`, so an error about them points there.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tt| {
            if let TokenTree::Group(g) = &tt {
                let mut inner = proc_macro2::Group::new(g.delimiter(), respan(g.stream(), span));
                inner.set_span(span);
                tt = TokenTree::Group(inner);
            } else {
                tt.set_span(span);
            }
            tt
        })
        .collect()
}

fn generate(func: ItemFn, shape: Shape, options: &Options) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = func;
    let (const_attrs, fn_attrs): (Vec<Attribute>, Vec<Attribute>) =
        attrs.into_iter().partition(is_const_attr);

    let krate = options
        .krate
        .as_ref()
        .map(ToTokens::to_token_stream)
        .unwrap_or_else(|| quote!(::cadence_core));
    let ident = &sig.ident;
    let name = options
        .name
        .clone()
        .unwrap_or_else(|| ident.unraw().to_string());
    let score = &shape.score;
    let blocking = sig.asyncness.is_none();

    // Errors about the return type (not `Result<(), E>`/`Result<Control, E>`) point at it.
    let output_span = match &sig.output {
        syn::ReturnType::Type(_, ty) => ty.span(),
        syn::ReturnType::Default => ident.span(),
    };
    let into_result = {
        let krate = respan(krate.clone(), output_span);
        quote_spanned!(output_span=> #krate::note::IntoNoteResult::into_note_result)
    };

    let score_arg = format_ident!("__cadence_score");
    let cx_arg = format_ident!("__cadence_cx");
    let (cx_param, call_args) = if shape.context {
        (quote!(#cx_arg), quote!(#score_arg, #cx_arg))
    } else {
        (quote!(_), quote!(#score_arg))
    };

    let inner_fn = quote! {
        #(#fn_attrs)*
        #sig #block
    };

    let (adapter, constructor) = if blocking {
        let adapter = quote! {
            fn __cadence_note_call(
                #score_arg: &mut #score,
                #cx_param: &#krate::NoteContext<'_>,
            ) -> #krate::note::NoteResult {
                #inner_fn
                #into_result(#ident(#call_args))
            }
        };
        // `S: Default + Clone` (NOTE-6) bounds this constructor: point its errors at the score.
        let span = score.span();
        let krate_at = respan(krate.clone(), span);
        (
            adapter,
            quote_spanned!(span=> #krate_at::Note::__from_macro_blocking),
        )
    } else {
        // The coercion to `NoteFuture` is the `Send` check; point its error at the function.
        let span = ident.span();
        let boxed = quote_spanned! {span=>
            ::std::boxed::Box::pin(async move { #into_result(#ident(#call_args).await) })
        };
        let adapter = quote! {
            fn __cadence_note_call<'__cadence>(
                #score_arg: &'__cadence mut #score,
                #cx_param: &'__cadence #krate::NoteContext<'__cadence>,
            ) -> #krate::note::NoteFuture<'__cadence> {
                #inner_fn
                #boxed
            }
        };
        (adapter, quote!(#krate::Note::__from_macro))
    };

    let mut calls = Vec::new();
    if let Some(n) = options.retry {
        calls.push(quote!(.__macro_retry(#n)));
    }
    for (method, d) in [
        ("__macro_timeout", options.timeout),
        ("__macro_deadline", options.deadline),
    ] {
        if let Some(d) = d {
            let method = Ident::new(method, Span::call_site());
            let (secs, nanos) = (d.as_secs(), d.subsec_nanos());
            calls.push(quote!(.#method(::core::time::Duration::new(#secs, #nanos))));
        }
    }
    let (config_fn, config) = if calls.is_empty() {
        (quote!(), quote!(::core::option::Option::None))
    } else {
        let policies = quote!(#krate::policy::Policies<#score>);
        (
            quote! {
                fn __cadence_note_policies() -> #policies {
                    #krate::policy::Policies::<#score>::NONE #(#calls)*
                }
            },
            quote! {
                ::core::option::Option::Some(__cadence_note_policies as fn() -> #policies)
            },
        )
    };

    quote! {
        #(#const_attrs)*
        #[allow(non_upper_case_globals)]
        #vis const #ident: #krate::Note<#score> = {
            #adapter
            #config_fn
            #constructor(#name, __cadence_note_call, #config)
        };
    }
}
