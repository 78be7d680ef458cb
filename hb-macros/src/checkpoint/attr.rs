//! `#[checkpoint(...)]` on the type (`version`, `migrate_from`, `crate`) and on fields (`done`,
//! `total`), parsed with `parse_nested_meta`.

use quote::{ToTokens, quote};
use syn::meta::ParseNestedMeta;
use syn::{Attribute, Expr, ExprLit, Lit, LitStr, Path, Token, Type};

use crate::ctxt::Ctxt;
use crate::meta::{KeyList, crate_path, skip_value};

const CONTAINER_KEYS: &[&str] = &["version", "migrate_from", "crate"];
const CONTAINER_RENAMED: &[(&str, &str)] = &[
    ("v", "`version`"),
    ("ver", "`version`"),
    ("schema_version", "`version`"),
    ("migrate", "`migrate_from`"),
    ("from", "`migrate_from`"),
    ("previous", "`migrate_from`"),
    ("upgrade_from", "`migrate_from`"),
    (
        "migrate_from_version",
        "`migrate_from` (it takes the old type)",
    ),
    ("krate", "`crate`"),
];

const FIELD_KEYS: &[&str] = &["done", "total"];
const FIELD_RENAMED: &[(&str, &str)] = &[
    ("completed", "`done`"),
    ("processed", "`done`"),
    ("progress", "`done`"),
    ("current", "`done`"),
    ("position", "`done`"),
    ("offset", "`done`"),
    ("next", "`done`"),
    ("count", "`done` (or `total`)"),
    ("len", "`total`"),
    ("size", "`total`"),
    ("of", "`total`"),
    ("expected", "`total`"),
];

/// A value as written, with its key (for spans).
#[derive(Debug, Clone)]
pub(crate) struct Keyed<T> {
    pub(crate) key: Path,
    pub(crate) value: T,
}

/// The type's `#[checkpoint(...)]`.
#[derive(Debug, Default)]
pub(crate) struct ContainerAttrs {
    pub(crate) version: Option<Keyed<u32>>,
    pub(crate) migrate_from: Option<Keyed<Type>>,
    pub(crate) krate: Option<Keyed<Path>>,
}

/// A field's progress marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Marker {
    Done,
    Total,
}

/// A marker with the attribute it came from (for "duplicate" spans).
#[derive(Debug, Clone)]
pub(crate) struct FieldMarker {
    pub(crate) marker: Marker,
    pub(crate) attr: Attribute,
}

/// The `#[checkpoint(...)]` attributes of `attrs`, each checked to have a list.
fn checkpoint_attrs<'a>(
    cx: &'a Ctxt,
    attrs: &'a [Attribute],
) -> impl Iterator<Item = &'a Attribute> {
    attrs
        .iter()
        .filter(|attr| attr.path().is_ident("checkpoint"))
        .filter(move |attr| match attr.meta.require_list() {
            Ok(_) => true,
            Err(_) => {
                cx.error_spanned_by(
                    attr,
                    "expected `#[checkpoint(...)]`, e.g. #[checkpoint(version = 2)] on the type \
                     or #[checkpoint(done)] on a field",
                );
                false
            }
        })
}

impl ContainerAttrs {
    pub(crate) fn parse(cx: &Ctxt, attrs: &[Attribute]) -> Self {
        let mut parsed = ContainerAttrs::default();
        let mut keys = KeyList::new(
            cx,
            "#[checkpoint] option",
            "#[checkpoint] option",
            CONTAINER_KEYS.to_vec(),
            CONTAINER_RENAMED,
        );
        for attr in checkpoint_attrs(cx, attrs) {
            let result = attr.parse_nested_meta(|meta| parsed.parse_key(cx, &mut keys, &meta));
            if let Err(e) = result {
                cx.syn_error(e);
            }
        }
        parsed
    }

    fn parse_key(
        &mut self,
        cx: &Ctxt,
        keys: &mut KeyList,
        meta: &ParseNestedMeta,
    ) -> syn::Result<()> {
        let misplaced = |key: &str| {
            FIELD_KEYS.contains(&key).then(|| {
                let counts = if key == "done" {
                    "finished items"
                } else {
                    "all items"
                };
                format!("`{key}` marks a field: put #[checkpoint({key})] on the field that counts {counts}")
            })
        };
        let Some(key) = keys.read(meta, misplaced)? else {
            return Ok(());
        };
        let first = key.first;
        if !meta.input.peek(Token![=]) {
            skip_value(meta)?;
            let example = match key.name.as_str() {
                "version" => "version = 2",
                "migrate_from" => "migrate_from = ProgressV1",
                _ => "crate = \"my_crate::hb\"",
            };
            cx.error_spanned_by(&meta.path, format!("expected `{example}`"));
            return Ok(());
        }
        let value = meta.value()?;
        let key_path = meta.path.clone();
        match key.name.as_str() {
            "version" => {
                let expr: Expr = value.parse()?;
                let parsed = match &expr {
                    Expr::Lit(ExprLit {
                        lit: Lit::Int(int), ..
                    }) => int.base10_parse::<u32>().ok(),
                    _ => None,
                };
                match parsed {
                    Some(0) => cx.error_spanned_by(
                        &expr,
                        "checkpoint versions start at 1 (a type without `version` is version 1)",
                    ),
                    Some(v) if first => {
                        self.version = Some(Keyed {
                            key: key_path,
                            value: v,
                        })
                    }
                    Some(_) => {}
                    None => cx.error_spanned_by(
                        &expr,
                        "`version` takes a whole number of at least 1, e.g. version = 2",
                    ),
                }
            }
            "migrate_from" => {
                if value.peek(LitStr) {
                    let lit: LitStr = value.parse()?;
                    cx.error_spanned_by(
                        &lit,
                        format!(
                            "`migrate_from` takes the old type itself, without quotes: \
                             migrate_from = {}",
                            lit.value()
                        ),
                    );
                    return Ok(());
                }
                let ty: Type = value.parse()?;
                if first {
                    self.migrate_from = Some(Keyed {
                        key: key_path,
                        value: ty,
                    });
                }
            }
            _ => {
                let expr: Expr = value.parse()?;
                if let Some(path) = crate_path(cx, &expr)
                    && first
                {
                    self.krate = Some(Keyed {
                        key: key_path,
                        value: path,
                    });
                }
            }
        }
        Ok(())
    }

    /// The path of the runtime crate.
    pub(crate) fn krate(&self) -> proc_macro2::TokenStream {
        match &self.krate {
            Some(k) => k.value.to_token_stream(),
            None => quote!(::hb_runtime),
        }
    }
}

/// The progress markers on one field, recording misuse in `cx`.
pub(crate) fn field_markers(cx: &Ctxt, attrs: &[Attribute]) -> Vec<FieldMarker> {
    let mut markers: Vec<FieldMarker> = Vec::new();
    let mut keys = KeyList::new(
        cx,
        "field marker",
        "field marker",
        FIELD_KEYS.to_vec(),
        FIELD_RENAMED,
    );
    for attr in checkpoint_attrs(cx, attrs) {
        let result = attr.parse_nested_meta(|meta| {
            let misplaced = |key: &str| {
                CONTAINER_KEYS.contains(&key).then(|| {
                    format!("`{key}` goes on the type: #[checkpoint({key} = ..)] above the struct")
                })
            };
            let Some(key) = keys.read(&meta, misplaced)? else {
                return Ok(());
            };
            if !key.first {
                // Reported by `keys`.
                return skip_value(&meta);
            }
            let key = key.name;
            let marker = if key == "done" {
                Marker::Done
            } else {
                Marker::Total
            };
            if !meta.input.is_empty() && !meta.input.peek(Token![,]) {
                skip_value(&meta)?;
                cx.error_spanned_by(
                    &meta.path,
                    format!("`{key}` takes no value: #[checkpoint({key})]"),
                );
                return Ok(());
            }
            if !markers.is_empty() {
                cx.error_spanned_by(
                    &meta.path,
                    "a field counts either the items done or the total, not both",
                );
            } else {
                markers.push(FieldMarker {
                    marker,
                    attr: attr.clone(),
                });
            }
            Ok(())
        });
        if let Err(e) = result {
            cx.syn_error(e);
        }
    }
    markers
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    fn errors(cx: Ctxt) -> Vec<String> {
        match cx.check() {
            Ok(()) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn container_options() {
        let cx = Ctxt::new();
        let attrs: Vec<Attribute> = vec![
            parse_quote!(#[checkpoint(version = 3, migrate_from = v2::Progress)]),
            parse_quote!(#[checkpoint(crate = "my::hb")]),
            parse_quote!(#[serde(default)]),
        ];
        let parsed = ContainerAttrs::parse(&cx, &attrs);
        assert!(errors(cx).is_empty());
        assert_eq!(parsed.version.unwrap().value, 3);
        let old = parsed.migrate_from.unwrap().value;
        assert_eq!(quote!(#old).to_string(), "v2 :: Progress");
        assert_eq!(parsed.krate.unwrap().value.segments.len(), 2);
    }

    #[test]
    fn container_mistakes() {
        let cx = Ctxt::new();
        let attrs: Vec<Attribute> = vec![
            parse_quote!(#[checkpoint(version = 0, migrate = Old, done, version = 2)]),
            parse_quote!(#[checkpoint(migrate_from = "Old", version = "2")]),
            parse_quote!(#[checkpoint]),
        ];
        ContainerAttrs::parse(&cx, &attrs);
        let errors = errors(cx);
        assert_eq!(errors.len(), 8, "{errors:#?}");
        assert!(errors[0].starts_with("checkpoint versions start at 1"));
        assert!(errors[1].contains("did you mean `migrate_from`"));
        assert!(errors[1].contains("expected one of: `version`, `migrate_from`, `crate`"));
        assert!(errors[2].starts_with("`done` marks a field"));
        assert!(errors[3].starts_with("duplicate #[checkpoint] option `version`"));
        assert!(errors[4].contains("without quotes: migrate_from = Old"));
        assert!(errors[5].starts_with("duplicate #[checkpoint] option `version`"));
        assert!(errors[6].starts_with("`version` takes a whole number"));
        assert!(errors[7].starts_with("expected `#[checkpoint(...)]`"));
    }

    #[test]
    fn field_markers_and_mistakes() {
        let cx = Ctxt::new();
        let done = field_markers(&cx, &[parse_quote!(#[checkpoint(done)])]);
        assert_eq!(done[0].marker, Marker::Done);
        let mixed = field_markers(
            &cx,
            &[parse_quote!(#[checkpoint(done, total, done = 1, version = 2, progress)])],
        );
        assert_eq!(mixed.len(), 1);
        let errors = errors(cx);
        assert_eq!(errors.len(), 4, "{errors:#?}");
        assert!(errors[0].contains("either the items done or the total"));
        assert!(errors[1].starts_with("duplicate field marker `done`"));
        assert!(errors[2].starts_with("`version` goes on the type"));
        assert!(errors[3].contains("did you mean `done`"));
    }
}
