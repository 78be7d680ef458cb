//! What a `#[derive(Checkpoint)]` type says: its version, its migration source and the fields
//! that count progress.

use syn::{Data, DeriveInput, Fields, Generics, Ident, Index, Member, Type};

use super::attr::{ContainerAttrs, FieldMarker, Marker, field_markers};
use crate::ctxt::Ctxt;

/// A field marked `#[checkpoint(done)]` or `#[checkpoint(total)]`.
#[derive(Debug, Clone)]
pub(crate) struct ProgressField {
    pub(crate) member: Member,
    pub(crate) ty: Type,
}

#[derive(Debug)]
pub(crate) struct CheckpointType {
    pub(crate) ident: Ident,
    pub(crate) generics: Generics,
    pub(crate) attrs: ContainerAttrs,
    pub(crate) done: Option<ProgressField>,
    pub(crate) total: Option<ProgressField>,
}

impl CheckpointType {
    pub(crate) fn from_derive(cx: &Ctxt, input: DeriveInput) -> Self {
        let attrs = ContainerAttrs::parse(cx, &input.attrs);
        let mut done: Option<(ProgressField, FieldMarker)> = None;
        let mut total: Option<(ProgressField, FieldMarker)> = None;
        match &input.data {
            Data::Struct(data) => {
                for (index, field) in data.fields.iter().enumerate() {
                    let member = match &field.ident {
                        Some(ident) => Member::Named(ident.clone()),
                        None => Member::Unnamed(Index::from(index)),
                    };
                    for marker in field_markers(cx, &field.attrs) {
                        let slot = match marker.marker {
                            Marker::Done => &mut done,
                            Marker::Total => &mut total,
                        };
                        let word = match marker.marker {
                            Marker::Done => "done",
                            Marker::Total => "total",
                        };
                        if let Some((first, _)) = slot {
                            let first = match &first.member {
                                Member::Named(ident) => format!("`{ident}`"),
                                Member::Unnamed(index) => format!("field {}", index.index),
                            };
                            cx.error_spanned_by(
                                &marker.attr,
                                format!(
                                    "only one field may be #[checkpoint({word})]; {first} \
                                     already is"
                                ),
                            );
                        } else {
                            let field = ProgressField {
                                member: member.clone(),
                                ty: field.ty.clone(),
                            };
                            *slot = Some((field, marker));
                        }
                    }
                }
            }
            Data::Enum(data) => {
                for variant in &data.variants {
                    for attr in variant
                        .attrs
                        .iter()
                        .filter(|a| a.path().is_ident("checkpoint"))
                    {
                        cx.error_spanned_by(
                            attr,
                            "#[checkpoint(..)] on an enum goes on the enum itself, not on a \
                             variant",
                        );
                    }
                    let fields = match &variant.fields {
                        Fields::Named(f) => f.named.iter().collect(),
                        Fields::Unnamed(f) => f.unnamed.iter().collect(),
                        Fields::Unit => Vec::new(),
                    };
                    for field in fields {
                        for attr in field
                            .attrs
                            .iter()
                            .filter(|a| a.path().is_ident("checkpoint"))
                        {
                            cx.error_spanned_by(
                                attr,
                                "progress markers go on struct fields; an enum checkpoint has \
                                 no done/total progress",
                            );
                        }
                    }
                }
            }
            Data::Union(data) => {
                cx.error_spanned_by(
                    data.union_token,
                    "a checkpoint is serialised with serde: use a struct or an enum, not a union",
                );
            }
        }
        if let (Some((_, marker)), None) = (&total, &done) {
            cx.error_spanned_by(
                &marker.attr,
                "#[checkpoint(total)] needs a #[checkpoint(done)] field: progress is items done \
                 out of the total",
            );
        }
        if let Some(old) = &attrs.migrate_from {
            let version = attrs.version.as_ref().map_or(1, |v| v.value);
            if version < 2 {
                let (key, ty) = (&old.key, &old.value);
                cx.error_spanned_by(
                    quote::quote!(#key = #ty),
                    format!(
                        "a type with `migrate_from` needs a version above the old type's; add \
                         `version = {}` (or higher) to this #[checkpoint(..)]",
                        version + 1
                    ),
                );
            }
            if let Type::Path(p) = &old.value
                && p.qself.is_none()
                && p.path.is_ident(&input.ident)
            {
                cx.error_spanned_by(&old.value, "a type cannot migrate from itself");
            }
        }
        CheckpointType {
            ident: input.ident,
            generics: input.generics,
            attrs,
            done: done.map(|(f, _)| f),
            total: total.map(|(f, _)| f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    fn analyse(input: DeriveInput) -> (CheckpointType, Vec<String>) {
        let cx = Ctxt::new();
        let model = CheckpointType::from_derive(&cx, input);
        let errors = match cx.check() {
            Ok(()) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        };
        (model, errors)
    }

    #[test]
    fn finds_progress_fields() {
        let (model, errors) = analyse(parse_quote! {
            struct P(#[checkpoint(total)] u64, String, #[checkpoint(done)] u32);
        });
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(model.done.unwrap().member, Member::Unnamed(Index::from(2)));
        assert_eq!(model.total.unwrap().member, Member::Unnamed(Index::from(0)));
    }

    #[test]
    fn marker_rules() {
        let (_, errors) = analyse(parse_quote! {
            struct P {
                #[checkpoint(done)] a: u64,
                #[checkpoint(done)] b: u64,
                #[checkpoint(total)] c: u64,
                #[checkpoint(total)] d: u64,
            }
        });
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert_eq!(
            errors[0],
            "only one field may be #[checkpoint(done)]; `a` already is"
        );
        assert_eq!(
            errors[1],
            "only one field may be #[checkpoint(total)]; `c` already is"
        );

        let (_, errors) = analyse(parse_quote!(
            struct P {
                #[checkpoint(total)]
                t: u64,
            }
        ));
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("needs a #[checkpoint(done)] field"));
    }

    #[test]
    fn enums_and_unions() {
        let (_, errors) = analyse(parse_quote! {
            enum E { #[checkpoint(done)] A { #[checkpoint(done)] n: u64 }, B(u8) }
        });
        assert_eq!(errors.len(), 2, "{errors:#?}");
        let (_, errors) = analyse(parse_quote!(union U { a: u64 }));
        assert_eq!(errors.len(), 1);
    }

    #[test]
    fn migrations_need_a_higher_version() {
        let (_, errors) = analyse(parse_quote! {
            #[checkpoint(migrate_from = Old)] struct P;
        });
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("add `version = 2`"), "{errors:?}");
        let (_, errors) = analyse(parse_quote! {
            #[checkpoint(version = 2, migrate_from = P)] struct P;
        });
        assert_eq!(errors, ["a type cannot migrate from itself"]);
    }
}
