//! `#[derive(Score)]`: field-level change detection and merging for parallel groups (PAR-1,
//! PAR-2, PAR-3).

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Error, Fields, LitStr, Path, Type};

#[derive(Clone, Copy, PartialEq)]
enum Class {
    Value,
    Sequence,
    Map,
    Set,
}

struct FieldSpec {
    ident: syn::Ident,
    span: proc_macro2::Span,
    name: String,
    class: Class,
}

/// The last path segment's name of a type (`Vec` for `std::vec::Vec<T>`).
fn last_segment(ty: &Type) -> Option<String> {
    match ty {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last().map(|s| s.ident.to_string()),
        Type::Group(g) => last_segment(&g.elem),
        Type::Paren(p) => last_segment(&p.elem),
        _ => None,
    }
}

fn class_by_type(ty: &Type) -> Class {
    match last_segment(ty).as_deref() {
        Some("Vec" | "VecDeque") => Class::Sequence,
        Some("HashMap" | "BTreeMap") => Class::Map,
        Some("HashSet" | "BTreeSet") => Class::Set,
        _ => Class::Value,
    }
}

/// Parses `#[score(skip)]`, `#[score(merge = "…")]` and `#[score(crate = "…")]`.
#[derive(Default)]
struct Attrs {
    skip: bool,
    merge: Option<Class>,
    krate: Option<Path>,
}

fn parse_attrs(attrs: &[syn::Attribute], on_struct: bool) -> syn::Result<Attrs> {
    let mut out = Attrs::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("score")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("skip") && !on_struct {
                out.skip = true;
                Ok(())
            } else if meta.path.is_ident("merge") && !on_struct {
                let lit: LitStr = meta.value()?.parse()?;
                out.merge = Some(match lit.value().as_str() {
                    "value" => Class::Value,
                    "sequence" => Class::Sequence,
                    "map" => Class::Map,
                    "set" => Class::Set,
                    other => {
                        return Err(Error::new(
                            lit.span(),
                            format!(
                                "unknown merge class `{other}`; expected one of: value, sequence, map, set"
                            ),
                        ));
                    }
                });
                Ok(())
            } else if meta.path.is_ident("crate") && on_struct {
                let lit: LitStr = meta.value()?.parse()?;
                out.krate = Some(lit.parse()?);
                Ok(())
            } else {
                let name = meta
                    .path
                    .get_ident()
                    .map(ToString::to_string)
                    .unwrap_or_else(|| "?".into());
                let expected = if on_struct {
                    "crate"
                } else {
                    "skip, merge"
                };
                Err(meta.error(format!(
                    "unknown #[score] option `{name}` here; expected one of: {expected}"
                )))
            }
        })?;
    }
    Ok(out)
}

pub(crate) fn derive(input: DeriveInput) -> syn::Result<TokenStream> {
    let struct_attrs = parse_attrs(&input.attrs, true)?;
    let krate = struct_attrs
        .krate
        .map(|p| quote!(#p))
        .unwrap_or_else(|| quote!(::cadence_core));
    let named = match &input.data {
        Data::Struct(s) => match &s.fields {
            Fields::Named(n) => n,
            other => {
                return Err(Error::new(
                    other.span(),
                    "#[derive(Score)] needs a struct with named fields (PAR-1); tuple and unit structs have no field names to merge by",
                ));
            }
        },
        Data::Enum(e) => {
            return Err(Error::new(
                e.enum_token.span,
                "#[derive(Score)] works on structs with named fields, not enums (PAR-1); wrap the enum in a struct field",
            ));
        }
        Data::Union(u) => {
            return Err(Error::new(
                u.union_token.span,
                "#[derive(Score)] works on structs with named fields, not unions (PAR-1)",
            ));
        }
    };
    let mut fields = Vec::new();
    for f in &named.named {
        let attrs = parse_attrs(&f.attrs, false)?;
        let is_shared = last_segment(&f.ty).as_deref() == Some("Shared");
        if attrs.skip || is_shared {
            continue;
        }
        let ident = f
            .ident
            .clone()
            .ok_or_else(|| Error::new(f.span(), "unnamed field"))?;
        let name = ident.to_string();
        let name = name.strip_prefix("r#").unwrap_or(&name).to_owned();
        fields.push(FieldSpec {
            span: f.ty.span(),
            class: attrs.merge.unwrap_or_else(|| class_by_type(&f.ty)),
            ident,
            name,
        });
    }

    let ty = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let field_consts = fields.iter().map(|f| {
        let name = &f.name;
        let class = match f.class {
            Class::Value => format_ident!("Value"),
            Class::Sequence => format_ident!("Sequence"),
            Class::Map => format_ident!("Map"),
            Class::Set => format_ident!("Set"),
        };
        quote!(#krate::score::Field::new(#name, #krate::score::FieldClass::#class))
    });
    let eq_arms = fields.iter().enumerate().map(|(i, f)| {
        let id = &f.ident;
        quote_spanned!(f.span=> #i => ::core::cmp::PartialEq::eq(&self.#id, &other.#id),)
    });
    let take_arms = fields.iter().enumerate().map(|(i, f)| {
        let id = &f.ident;
        quote!(#i => ::core::mem::swap(&mut self.#id, &mut from.#id),)
    });
    let smart_arms = fields.iter().enumerate().filter_map(|(i, f)| {
        let id = &f.ident;
        let tr = match f.class {
            Class::Value => return None,
            Class::Sequence => quote!(#krate::score::SequenceMerge),
            Class::Map => quote!(#krate::score::MapMerge),
            Class::Set => quote!(#krate::score::SetMerge),
        };
        Some(quote! {
            #i => {
                let parts: ::std::vec::Vec<_> = results.iter().map(|r| &r.#id).collect();
                #tr::smart_merge(&mut self.#id, &snapshot.#id, &parts)
            }
        })
    });
    let count = fields.len();
    Ok(quote! {
        impl #impl_generics #krate::score::Score for #ty #ty_generics #where_clause {
            const FIELDS: &'static [#krate::score::Field] = &[#(#field_consts),*];

            #[allow(unused_variables)]
            fn field_eq(&self, other: &Self, index: usize) -> bool {
                match index {
                    #(#eq_arms)*
                    _ => true,
                }
            }

            #[allow(unused_variables)]
            fn take_field(&mut self, from: &mut Self, index: usize) {
                match index {
                    #(#take_arms)*
                    _ => {}
                }
            }

            #[allow(unused_variables)]
            fn smart_merge_field(
                &mut self,
                index: usize,
                snapshot: &Self,
                results: &[&Self],
            ) -> ::core::result::Result<(), ::std::vec::Vec<usize>> {
                let _ = #count;
                match index {
                    #(#smart_arms)*
                    _ => ::core::result::Result::Ok(()),
                }
            }
        }
    })
}
