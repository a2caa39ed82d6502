//! Arguments of `#[workflow(..)]` and `#[activity(..)]`: only `name = "..."` for now.

use syn::parse::{Parse, ParseStream};
use syn::{LitStr, Token};

/// Parsed attribute arguments.
#[derive(Default)]
pub struct Args {
    /// `name = "..."`: the registered name, overriding the function's name.
    pub name: Option<LitStr>,
}

impl Parse for Args {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut args = Args::default();
        let mut errors: Option<syn::Error> = None;
        let mut push = |e: syn::Error| match &mut errors {
            Some(all) => all.combine(e),
            None => errors = Some(e),
        };
        while !input.is_empty() {
            let key: syn::Ident = input.parse()?;
            if key == "name" {
                input.parse::<Token![=]>()?;
                let value: syn::Expr = input.parse()?;
                match value {
                    syn::Expr::Lit(syn::ExprLit {
                        lit: syn::Lit::Str(s),
                        ..
                    }) => {
                        let text = s.value();
                        if args.name.is_some() {
                            push(syn::Error::new(
                                key.span(),
                                "`name` is given twice; keep one",
                            ));
                        } else if text.trim().is_empty() || text.chars().any(char::is_whitespace) {
                            push(syn::Error::new(
                                s.span(),
                                "`name` must be a non-empty string without spaces, e.g. `name = \"charge-card\"`",
                            ));
                        } else {
                            args.name = Some(s);
                        }
                    }
                    other => push(syn::Error::new_spanned(
                        other,
                        "`name` takes a string literal, e.g. `name = \"charge-card\"`",
                    )),
                }
            } else {
                push(syn::Error::new(
                    key.span(),
                    format!("unknown argument `{key}`; the only argument is `name = \"...\"`"),
                ));
                // Skip the rest of this argument so that later ones are still checked.
                while !input.is_empty() && !input.peek(Token![,]) {
                    input.parse::<proc_macro2::TokenTree>()?;
                }
            }
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        match errors {
            Some(e) => Err(e),
            None => Ok(args),
        }
    }
}
